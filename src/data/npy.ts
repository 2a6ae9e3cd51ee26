/**
 * NumPy `.npy` files (format versions 1, 2 and 3), C order, as NumPy documents them
 * (numpy.lib.format). Numeric arrays are returned as TypedArray views of the input when the data is aligned,
 * otherwise as one copy; big-endian data is byte-swapped into a copy; float16 becomes Float32Array.
 */
import { invalidInput } from '../errors.js';

export type NumericDtype = 'bool' | 'uint8' | 'int8' | 'int16' | 'int32' | 'int64' | 'float16' | 'float32' | 'float64';
export type NpyNumericData = Uint8Array | Int8Array | Int16Array | Int32Array | BigInt64Array | Float32Array | Float64Array;

/** A parsed array. `object` arrays (pickled, e.g. the predecessor's `metadata`) keep their pickle bytes. */
export type NpyArray =
  | { dtype: NumericDtype; shape: number[]; data: NpyNumericData }
  | { dtype: 'str'; shape: number[]; data: string[] }
  | { dtype: 'object'; shape: number[]; pickle: Uint8Array };

/** What `encodeNpy` accepts: float16 is read-only (Node 20 has no Float16Array). */
export type WritableNpyArray =
  | { dtype: Exclude<NumericDtype, 'float16'>; shape: number[]; data: NpyNumericData }
  | { dtype: 'str'; shape: number[]; data: string[] };

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

interface NumericKind {
  dtype: NumericDtype;
  itemSize: number;
  make: (buffer: ArrayBufferLike, byteOffset: number, length: number) => NpyNumericData;
}

const NUMERIC_KINDS: Record<string, NumericKind> = {
  b1: { dtype: 'bool', itemSize: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
  u1: { dtype: 'uint8', itemSize: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
  i1: { dtype: 'int8', itemSize: 1, make: (b, o, n) => new Int8Array(b, o, n) },
  i2: { dtype: 'int16', itemSize: 2, make: (b, o, n) => new Int16Array(b, o, n) },
  i4: { dtype: 'int32', itemSize: 4, make: (b, o, n) => new Int32Array(b, o, n) },
  i8: { dtype: 'int64', itemSize: 8, make: (b, o, n) => new BigInt64Array(b, o, n) },
  f2: { dtype: 'float16', itemSize: 2, make: (b, o, n) => new Uint16Array(b, o, n) as unknown as NpyNumericData },
  f4: { dtype: 'float32', itemSize: 4, make: (b, o, n) => new Float32Array(b, o, n) },
  f8: { dtype: 'float64', itemSize: 8, make: (b, o, n) => new Float64Array(b, o, n) },
};

const DESCR_OF: Record<Exclude<NumericDtype, 'float16'>, string> = {
  bool: '|b1',
  uint8: '|u1',
  int8: '|i1',
  int16: '<i2',
  int32: '<i4',
  int64: '<i8',
  float32: '<f4',
  float64: '<f8',
};

export interface NpyHeader {
  descr: string;
  fortranOrder: boolean;
  shape: number[];
  /** Byte offset of the data from the start of the .npy bytes. */
  dataOffset: number;
}

/** NumPy reads headers of at most 10000 bytes (numpy.lib.format's max_header_size); a longer one is damage. */
export const MAX_NPY_HEADER_BYTES = 10000;
/** The preamble and the longest header: enough bytes to read any header before the data is allocated. */
export const NPY_PREAMBLE_BYTES = 12 + MAX_NPY_HEADER_BYTES;

/** Reads the magic, version and header dict. `label` names the array in errors ("case.npz: 'ct'"). */
export function parseNpyHeader(bytes: Uint8Array, label: string): NpyHeader {
  if (bytes.length < 10 || MAGIC.some((value, i) => bytes[i] !== value)) {
    throw invalidInput(`${label} is not a NumPy .npy array: expected the magic string \\x93NUMPY, found ${describeStart(bytes)}`);
  }
  const major = bytes[6]!;
  let headerLength: number;
  let headerStart: number;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major === 1) {
    headerLength = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw invalidInput(`${label} is truncated: expected a .npy header, found ${bytes.length} bytes`);
    headerLength = view.getUint32(8, true);
    headerStart = 12;
  } else {
    throw invalidInput(`${label} has .npy format version ${major}.${bytes[7]}, expected version 1, 2 or 3`);
  }
  if (headerLength > MAX_NPY_HEADER_BYTES) {
    throw invalidInput(`${label} has a ${headerLength}-byte .npy header: expected at most ${MAX_NPY_HEADER_BYTES} bytes, as NumPy reads (the file is damaged)`);
  }
  const dataOffset = headerStart + headerLength;
  if (dataOffset > bytes.length) {
    throw invalidInput(`${label} is truncated: expected a ${headerLength}-byte .npy header, found ${bytes.length - headerStart} bytes`);
  }
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, dataOffset));
  const descrMatch = /'descr'\s*:\s*'([^']*)'/.exec(header);
  if (!descrMatch) {
    const found = /'descr'\s*:\s*(\[[^\]]*\]?)/.exec(header)?.[1] ?? header;
    throw invalidInput(`${label} has a structured or unreadable dtype: expected a plain dtype such as '<f4', found ${shown(found)}`);
  }
  const fortranMatch = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeMatch = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!fortranMatch || !shapeMatch) throw invalidInput(`${label} has an unreadable .npy header: expected descr, fortran_order and shape, found ${shown(header)}`);
  const shape = shapeMatch[1]!
    .split(',')
    .map((part) => part.trim().replace(/L$/, ''))
    .filter((part) => part.length > 0)
    .map(Number);
  if (shape.some((size) => !Number.isSafeInteger(size) || size < 0)) {
    throw invalidInput(`${label} has an unreadable shape: expected non-negative integers, found ${shown(`(${shapeMatch[1]})`)}`);
  }
  if (shape.length > 32) throw invalidInput(`${label} has ${shape.length} dimensions: expected at most 32, as NumPy allows`);
  if (!Number.isSafeInteger(shape.reduce((a, b) => a * b, 1))) {
    throw invalidInput(`${label} has shape (${shape.join(', ')}), whose element count is beyond any file: the header is damaged`);
  }
  return { descr: descrMatch[1]!, fortranOrder: fortranMatch[1] === 'True', shape, dataOffset };
}

/**
 * The data bytes the header declares, or undefined for object arrays (pickled, of no fixed size). Readers compare it
 * with what the file holds before they allocate anything.
 */
export function npyDataBytes(header: NpyHeader, label: string): number | undefined {
  const code = header.descr.slice(1);
  if (code === 'O') return undefined;
  const count = header.shape.reduce((a, b) => a * b, 1);
  return count * itemSizeOf(header.descr, label);
}

function itemSizeOf(descr: string, label: string): number {
  const code = descr.slice(1);
  if (!'<>|='.includes(descr[0] ?? '')) throw invalidInput(`${label} has an unknown dtype: expected a dtype such as '<f4', found '${shown(descr)}'`);
  if (code.startsWith('U')) {
    const chars = Number(code.slice(1));
    // NumPy never writes '<U0' (it stores empty strings as '<U1'): a zero item size is damage, and would let a
    // tiny file declare any number of elements.
    if (!/^\d+$/.test(code.slice(1)) || !Number.isSafeInteger(chars) || chars < 1) {
      throw invalidInput(`${label} has an unknown dtype: expected '<U<n>' with n >= 1, found '${shown(descr)}'`);
    }
    return chars * 4;
  }
  const kind = NUMERIC_KINDS[code];
  if (!kind) {
    throw invalidInput(`${label} has dtype '${shown(descr)}', which is not supported: expected one of bool, uint8, int8, int16, int32, int64, float16, float32, float64 or unicode`);
  }
  return kind.itemSize;
}

/**
 * Parses a whole .npy file held in `bytes`. Numeric data is a view of `bytes` when its offset is aligned to the
 * element size (and little-endian), otherwise one copy.
 */
export function parseNpy(bytes: Uint8Array, label = 'array'): NpyArray {
  const header = parseNpyHeader(bytes, label);
  const { descr, shape, dataOffset } = header;
  const count = shape.reduce((a, b) => a * b, 1);
  const code = descr.slice(1);
  if (code === 'O') {
    const pickle = bytes.subarray(dataOffset);
    // Every pickled element takes at least one byte: a header that claims more elements than that is damage.
    if (count > pickle.length) throw invalidInput(`${label} is an object array of ${count} elements held in ${pickle.length} bytes of pickle: the header is damaged`);
    return { dtype: 'object', shape, pickle };
  }
  if (header.fortranOrder && shape.filter((size) => size > 1).length > 1) {
    throw invalidInput(`${label} is stored in Fortran order: expected C order (save it with numpy.ascontiguousarray), found fortran_order=True`);
  }
  const itemSize = itemSizeOf(descr, label);
  const bigEndian = descr[0] === '>';
  const byteLength = count * itemSize;
  requireLength(bytes, dataOffset, byteLength, label);
  if (code.startsWith('U')) {
    return { dtype: 'str', shape, data: decodeUtf32(bytes.subarray(dataOffset), count, itemSize / 4, bigEndian, label) };
  }
  const kind = NUMERIC_KINDS[code]!;
  const absolute = bytes.byteOffset + dataOffset;
  let raw: Uint8Array;
  if (bigEndian && kind.itemSize > 1) {
    raw = byteSwapped(bytes.subarray(dataOffset, dataOffset + byteLength), kind.itemSize);
  } else if (absolute % kind.itemSize === 0) {
    raw = bytes.subarray(dataOffset, dataOffset + byteLength);
  } else {
    raw = bytes.slice(dataOffset, dataOffset + byteLength);
  }
  const typed = kind.make(raw.buffer, raw.byteOffset, count);
  if (kind.dtype === 'float16') return { dtype: 'float16', shape, data: halfToFloat(typed as unknown as Uint16Array) };
  return { dtype: kind.dtype, shape, data: typed };
}

/** Header text as an error message shows it: one line, control characters escaped, at most 80 characters. */
function shown(text: string): string {
  const line = JSON.stringify(text.trim()).slice(1, -1);
  return line.length > 80 ? `${line.slice(0, 77)}...` : line;
}

function requireLength(bytes: Uint8Array, dataOffset: number, byteLength: number, label: string): void {
  if (bytes.length - dataOffset < byteLength) {
    throw invalidInput(`${label} is truncated: expected ${byteLength} bytes of data, found ${bytes.length - dataOffset}`);
  }
}

function describeStart(bytes: Uint8Array): string {
  if (bytes.length === 0) return 'an empty file';
  return `bytes ${Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(' ')}`;
}

function byteSwapped(bytes: Uint8Array, itemSize: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += itemSize) {
    for (let j = 0; j < itemSize; j++) out[i + j] = bytes[i + itemSize - 1 - j]!;
  }
  return out;
}

function decodeUtf32(bytes: Uint8Array, count: number, chars: number, bigEndian: boolean, label: string): string[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let text = '';
    for (let c = 0; c < chars; c++) {
      const point = view.getUint32((i * chars + c) * 4, !bigEndian);
      if (point === 0) break; // NumPy pads with NULs
      if (point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff)) {
        throw invalidInput(`${label} holds text that is not valid Unicode: expected characters, found code point 0x${point.toString(16)} in string ${i}`);
      }
      text += String.fromCodePoint(point);
    }
    out.push(text);
  }
  return out;
}

let halfTable: Float32Array | undefined;

/** IEEE 754 half → single, through a 65536-entry table (exact for every half value). */
export function halfToFloat(half: Uint16Array): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exponent = (h >> 10) & 0x1f;
      const mantissa = h & 0x3ff;
      if (exponent === 0) halfTable[h] = sign * mantissa * 2 ** -24;
      else if (exponent === 31) halfTable[h] = mantissa ? NaN : sign * Infinity;
      else halfTable[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
    }
  }
  const out = new Float32Array(half.length);
  for (let i = 0; i < half.length; i++) out[i] = halfTable[half[i]!]!;
  return out;
}

/** The NumPy dtype name of a TypedArray, for writing. */
export function dtypeOf(data: NpyNumericData): Exclude<NumericDtype, 'float16' | 'bool'> {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int8Array) return 'int8';
  return 'uint8';
}

const DATA_CLASS_OF: Record<Exclude<NumericDtype, 'float16'>, { name: string; is: (data: unknown) => boolean }> = {
  bool: { name: 'Uint8Array', is: (data) => data instanceof Uint8Array },
  uint8: { name: 'Uint8Array', is: (data) => data instanceof Uint8Array },
  int8: { name: 'Int8Array', is: (data) => data instanceof Int8Array },
  int16: { name: 'Int16Array', is: (data) => data instanceof Int16Array },
  int32: { name: 'Int32Array', is: (data) => data instanceof Int32Array },
  int64: { name: 'BigInt64Array', is: (data) => data instanceof BigInt64Array },
  float32: { name: 'Float32Array', is: (data) => data instanceof Float32Array },
  float64: { name: 'Float64Array', is: (data) => data instanceof Float64Array },
};

/** What `encodeNpy` is given must describe itself truthfully: a known dtype, its array class, a shape that fits. */
function checkWritable(array: WritableNpyArray, label: string): void {
  const { dtype, shape, data } = array as { dtype: unknown; shape: unknown; data: unknown };
  if (!Array.isArray(shape) || shape.length > 32 || !shape.every((size) => Number.isSafeInteger(size) && (size as number) >= 0)) {
    throw invalidInput(`${label} has shape ${describe(shape)}: expected a list of at most 32 non-negative integers`);
  }
  const count = (shape as number[]).reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(count)) throw invalidInput(`${label} has shape [${shape.join(',')}], whose element count is too large for any file`);
  if (dtype === 'str') {
    if (!Array.isArray(data) || !data.every((text) => typeof text === 'string')) {
      throw invalidInput(`${label} has dtype str: expected its data to be an array of strings, found ${describe(data)}`);
    }
    const bad = (data as string[]).findIndex((text) => LONE_SURROGATE.test(text));
    if (bad >= 0) throw invalidInput(`${label} holds string ${bad}, which is not valid Unicode (a lone surrogate): expected text`);
  } else {
    const kind = DATA_CLASS_OF[dtype as keyof typeof DATA_CLASS_OF];
    if (!kind) throw invalidInput(`${label} has dtype ${describe(dtype)}: expected one of ${Object.keys(DATA_CLASS_OF).join(', ')} or str`);
    if (!kind.is(data)) throw invalidInput(`${label} has dtype ${dtype as string}: expected its data to be a ${kind.name}, found ${describe(data)}`);
  }
  if ((data as ArrayLike<unknown>).length !== count) {
    throw invalidInput(`${label} holds ${(data as ArrayLike<unknown>).length} values, expected ${count} for shape [${shape.join(',')}]`);
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (Array.isArray(value)) return value.length <= 8 ? `[${value.map((item) => (typeof item === 'string' ? `'${item.slice(0, 20)}'` : String(item))).join(',')}]` : `an array of ${value.length}`;
  return typeof value === 'string' ? `'${value.slice(0, 40)}'` : typeof value;
}

/**
 * Encodes an array as .npy (version 1.0, header padded to 64 bytes as NumPy does). Returns the header and the data
 * as separate chunks so that large arrays are written without being copied.
 */
export function encodeNpy(array: WritableNpyArray, label = 'array'): Uint8Array[] {
  checkWritable(array, label);
  const count = array.shape.reduce((a, b) => a * b, 1);
  let descr: string;
  let body: Uint8Array;
  if (array.dtype === 'str') {
    const chars = Math.max(1, ...array.data.map((text) => [...text].length));
    descr = `<U${chars}`;
    body = new Uint8Array(count * chars * 4);
    const view = new DataView(body.buffer);
    array.data.forEach((text, i) => {
      let c = 0;
      for (const char of text) view.setUint32((i * chars + c++) * 4, char.codePointAt(0)!, true);
    });
  } else {
    descr = DESCR_OF[array.dtype];
    body = new Uint8Array(array.data.buffer, array.data.byteOffset, array.data.byteLength);
  }
  const shapeText = array.shape.length === 1 ? `(${array.shape[0]},)` : `(${array.shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = 10 + dict.length + 1;
  dict += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const header = new Uint8Array(10 + dict.length);
  header.set(MAGIC);
  header[6] = 1;
  header[7] = 0;
  new DataView(header.buffer).setUint16(8, dict.length, true);
  for (let i = 0; i < dict.length; i++) header[10 + i] = dict.charCodeAt(i);
  return [header, body];
}
