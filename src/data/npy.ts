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
  const dataOffset = headerStart + headerLength;
  if (dataOffset > bytes.length) {
    throw invalidInput(`${label} is truncated: expected a ${headerLength}-byte .npy header, found ${bytes.length - headerStart} bytes`);
  }
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, dataOffset));
  const descrMatch = /'descr'\s*:\s*'([^']*)'/.exec(header);
  if (!descrMatch) {
    const found = /'descr'\s*:\s*(\[[^\]]*\]?)/.exec(header)?.[1] ?? header.trim();
    throw invalidInput(`${label} has a structured or unreadable dtype: expected a plain dtype such as '<f4', found ${found}`);
  }
  const fortranMatch = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeMatch = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!fortranMatch || !shapeMatch) throw invalidInput(`${label} has an unreadable .npy header: expected descr, fortran_order and shape, found ${header.trim()}`);
  const shape = shapeMatch[1]!
    .split(',')
    .map((part) => part.trim().replace(/L$/, ''))
    .filter((part) => part.length > 0)
    .map(Number);
  if (shape.some((size) => !Number.isInteger(size) || size < 0)) {
    throw invalidInput(`${label} has an unreadable shape: expected non-negative integers, found (${shapeMatch[1]})`);
  }
  return { descr: descrMatch[1]!, fortranOrder: fortranMatch[1] === 'True', shape, dataOffset };
}

/**
 * Parses a whole .npy file held in `bytes`. Numeric data is a view of `bytes` when its offset is aligned to the
 * element size (and little-endian), otherwise one copy.
 */
export function parseNpy(bytes: Uint8Array, label = 'array'): NpyArray {
  const header = parseNpyHeader(bytes, label);
  const { descr, shape, dataOffset } = header;
  const count = shape.reduce((a, b) => a * b, 1);
  const order = descr[0]!;
  const code = descr.slice(1);
  if (code === 'O') {
    return { dtype: 'object', shape, pickle: bytes.subarray(dataOffset) };
  }
  if (header.fortranOrder && shape.filter((size) => size > 1).length > 1) {
    throw invalidInput(`${label} is stored in Fortran order: expected C order (save it with numpy.ascontiguousarray), found fortran_order=True`);
  }
  if (!'<>|='.includes(order)) throw invalidInput(`${label} has an unknown dtype: expected a dtype such as '<f4', found '${descr}'`);
  const bigEndian = order === '>';
  if (code.startsWith('U')) {
    const chars = Number(code.slice(1));
    if (!Number.isInteger(chars) || chars < 0) throw invalidInput(`${label} has an unknown dtype: expected '<U<n>', found '${descr}'`);
    requireLength(bytes, dataOffset, count * chars * 4, label);
    return { dtype: 'str', shape, data: decodeUtf32(bytes.subarray(dataOffset), count, chars, bigEndian) };
  }
  const kind = NUMERIC_KINDS[code];
  if (!kind) {
    throw invalidInput(`${label} has dtype '${descr}', which is not supported: expected one of bool, uint8, int8, int16, int32, int64, float16, float32, float64 or unicode`);
  }
  const byteLength = count * kind.itemSize;
  requireLength(bytes, dataOffset, byteLength, label);
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

function decodeUtf32(bytes: Uint8Array, count: number, chars: number, bigEndian: boolean): string[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let text = '';
    for (let c = 0; c < chars; c++) {
      const point = view.getUint32((i * chars + c) * 4, !bigEndian);
      if (point === 0) break; // NumPy pads with NULs
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

/**
 * Encodes an array as .npy (version 1.0, header padded to 64 bytes as NumPy does). Returns the header and the data
 * as separate chunks so that large arrays are written without being copied.
 */
export function encodeNpy(array: WritableNpyArray, label = 'array'): Uint8Array[] {
  const count = array.shape.reduce((a, b) => a * b, 1);
  if (array.data.length !== count) {
    throw invalidInput(`${label} holds ${array.data.length} values, expected ${count} for shape [${array.shape.join(',')}]`);
  }
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
