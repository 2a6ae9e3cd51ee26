/**
 * Hostile files for the reliability tests and the fuzzer: valid seeds written by the project's own writers, and
 * zips built field by field so that a test can make any field lie (sizes, offsets, names, zip64 records).
 */
import { crc32, deflateRawSync } from 'node:zlib';

import { encodeNpy, type WritableNpyArray } from '../src/data/npy.js';
import { CANONICAL_STRUCTURES } from '../src/data/structures.js';

export function npyBytes(array: WritableNpyArray): Uint8Array {
  return Buffer.concat(encodeNpy(array));
}

/** A .npy file whose header is written as given (any descr and shape), followed by `data`. */
export function rawNpy(header: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  let dict = header;
  dict += ' '.repeat((64 - ((10 + dict.length + 1) % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + dict.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, dict.length, true);
  for (let i = 0; i < dict.length; i++) out[10 + i] = dict.charCodeAt(i);
  out.set(data, 10 + dict.length);
  return out;
}

export interface ZipEntry {
  name: string;
  data: Uint8Array;
  /** 0 stored, 8 deflated (default 0) */
  method?: 0 | 8;
  /** Central-directory fields that lie: the uncompressed size (written through a zip64 extra field when above
   * 32 bits), and the local header offset (to point several entries at one member). */
  claimSize?: number;
  offsetOf?: number;
}

const encodings = new WeakMap<Uint8Array, Map<number, { body: Uint8Array; crc: number }>>();

/** An entry's stored or deflated bytes and CRC, once per data (20 000 entries may share one member). */
function encoded(data: Uint8Array, method: number): { body: Uint8Array; crc: number } {
  const byMethod = encodings.get(data) ?? new Map<number, { body: Uint8Array; crc: number }>();
  encodings.set(data, byMethod);
  let found = byMethod.get(method);
  if (!found) {
    found = { body: method === 8 ? new Uint8Array(deflateRawSync(data)) : data, crc: crc32(data) >>> 0 };
    byMethod.set(method, found);
  }
  return found;
}

/** A zip built field by field: each entry's local header and data, then the central directory, then the end record. */
export function zipOf(entries: ZipEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  const offsets: number[] = [];
  let at = 0;
  for (const entry of entries) {
    const name = new TextEncoder().encode(entry.name);
    const method = entry.method ?? 0;
    const { body, crc } = encoded(entry.data, method);
    let offset: number;
    if (entry.offsetOf === undefined) {
      offset = at;
      const local = new DataView(new ArrayBuffer(30));
      local.setUint32(0, 0x04034b50, true);
      local.setUint16(4, 20, true);
      local.setUint16(8, method, true);
      local.setUint32(14, crc, true);
      local.setUint32(18, body.length, true);
      local.setUint32(22, entry.data.length, true);
      local.setUint16(26, name.length, true);
      parts.push(new Uint8Array(local.buffer), name, body);
      at += 30 + name.length + body.length;
    } else {
      offset = offsets[entry.offsetOf]!;
    }
    offsets.push(offset);
    const size = entry.claimSize ?? entry.data.length;
    const zip64 = size > 0xfffffffe;
    const extra = new DataView(new ArrayBuffer(zip64 ? 12 : 0));
    if (zip64) {
      extra.setUint16(0, 1, true);
      extra.setUint16(2, 8, true);
      extra.setBigUint64(4, BigInt(size), true);
    }
    const record = new DataView(new ArrayBuffer(46));
    record.setUint32(0, 0x02014b50, true);
    record.setUint16(4, 45, true);
    record.setUint16(6, 45, true);
    record.setUint16(10, method, true);
    record.setUint32(16, crc, true);
    record.setUint32(20, body.length, true);
    record.setUint32(24, zip64 ? 0xffffffff : size, true);
    record.setUint16(28, name.length, true);
    record.setUint16(30, extra.byteLength, true);
    record.setUint32(42, offset, true);
    central.push(new Uint8Array(record.buffer), name, new Uint8Array(extra.buffer));
  }
  const directorySize = central.reduce((total, part) => total + part.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, Math.min(entries.length, 0xffff), true);
  end.setUint16(10, Math.min(entries.length, 0xffff), true);
  end.setUint32(12, directorySize, true);
  end.setUint32(16, at, true);
  return Buffer.concat([...parts, ...central, new Uint8Array(end.buffer)]);
}

export const GRID: [number, number, number] = [4, 6, 8];

/** The arrays of a small valid format 1 case (4×6×8 voxels, the 8 canonical structures), each overridable. */
export function caseArrays(overrides: Record<string, WritableNpyArray | null> = {}): [string, WritableNpyArray][] {
  const voxels = GRID[0] * GRID[1] * GRID[2];
  const masks = new Uint8Array(8 * voxels);
  for (let s = 0; s < 8; s++) for (let i = 0; i < voxels; i += 3 + s) masks[s * voxels + i] = 1;
  const arrays: Record<string, WritableNpyArray> = {
    ct: { dtype: 'int16', shape: [...GRID], data: Int16Array.from({ length: voxels }, (_, i) => (i % 7) * 40 - 100) },
    dose: { dtype: 'float32', shape: [...GRID], data: Float32Array.from({ length: voxels }, (_, i) => (i % 11) * 6.5) },
    masks: { dtype: 'uint8', shape: [8, ...GRID], data: masks },
    structures: { dtype: 'str', shape: [8], data: [...CANONICAL_STRUCTURES] },
    spacing_mm: { dtype: 'float64', shape: [3], data: Float64Array.from([2.5, 2, 2]) },
    constraints: { dtype: 'float32', shape: [13], data: new Float32Array(13).fill(0.5) },
    metadata_json: { dtype: 'str', shape: [], data: [JSON.stringify({ case_id: 'hostile', format_version: 1 })] },
  };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === null) delete arrays[key];
    else arrays[key] = value;
  }
  return Object.entries(arrays);
}

/** A case file's bytes from its arrays (stored, or deflated). */
export function caseZip(arrays: [string, WritableNpyArray][], method: 0 | 8 = 0): Uint8Array {
  return zipOf(arrays.map(([key, array]) => ({ name: `${key}.npy`, data: npyBytes(array), method })));
}

/** A predecessor case (v2.3 layout: [Y,X,Z], float32 CT in [0,1]) whose `metadata` entry is `pickle`. */
export function predecessorZip(pickle: Uint8Array): Uint8Array {
  const [y, x, z] = [6, 8, 4];
  const voxels = x * y * z;
  const entries: [string, Uint8Array][] = [
    ['ct', npyBytes({ dtype: 'float32', shape: [y, x, z], data: new Float32Array(voxels).fill(0.5) })],
    ['dose', npyBytes({ dtype: 'float32', shape: [y, x, z], data: new Float32Array(voxels).fill(0.5) })],
    ['masks', npyBytes({ dtype: 'uint8', shape: [8, y, x, z], data: new Uint8Array(8 * voxels) })],
    ['constraints', npyBytes({ dtype: 'float32', shape: [13], data: new Float32Array(13) })],
    ['metadata', rawNpy("{'descr': '|O', 'fortran_order': False, 'shape': (), }", pickle)],
  ];
  return zipOf(entries.map(([key, data]) => ({ name: `${key}.npy`, data })));
}

/** Pickle opcodes, for writing hostile pickles by hand (protocol 2). */
export const op = {
  proto: [0x80, 2],
  stop: [0x2e],
  mark: [0x28],
  emptyDict: [0x7d],
  emptyList: [0x5d],
  appends: [0x65],
  pop: [0x30],
  setitem: [0x73],
  setitems: [0x75],
  binput: (i: number) => [0x71, i],
  binget: (i: number) => [0x68, i],
  binint1: (v: number) => [0x4b, v],
  shortUnicode: (text: string) => {
    const bytes = new TextEncoder().encode(text);
    return [0x8c, bytes.length, ...bytes];
  },
  long4: (bytes: Uint8Array) => [0x8b, bytes.length & 0xff, (bytes.length >> 8) & 0xff, (bytes.length >> 16) & 0xff, bytes.length >>> 24, ...bytes],
};

export function pickleOf(...parts: (number[] | Uint8Array)[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((part) => [...part]));
}

/** {'script_version': '2.3', 'voxel_spacing_mm': ...} is not needed to reach the pickle: any dict around `value`. */
export function dictPickle(key: string, value: number[]): Uint8Array {
  return pickleOf(op.proto, op.emptyDict, op.shortUnicode(key), value, op.setitem, op.stop);
}

/**
 * A "billion laughs" pickle: list 0 holds one int; list k holds ten references to list k-1 (memo), so list 30 stands
 * for 10^30 values in a few hundred bytes.
 */
export function laughsPickle(levels = 30): number[] {
  const out: number[] = [...op.emptyList, ...op.binput(0), ...op.mark, ...op.binint1(1), ...op.appends];
  for (let level = 1; level <= levels; level++) {
    out.push(...op.pop, ...op.emptyList, ...op.binput(level), ...op.mark); // the memo keeps the level below
    for (let i = 0; i < 10; i++) out.push(...op.binget(level - 1));
    out.push(...op.appends);
  }
  return out;
}

/** Rewrites the `__metadata__` of a safetensors file (the tensors and their offsets stay as they were). */
export function withSafetensorsMetadata(file: Uint8Array, change: (metadata: Record<string, string>) => void): Uint8Array {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const length = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + length))) as Record<string, unknown> & { __metadata__: Record<string, string> };
  change(header.__metadata__);
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const out = new Uint8Array(8 + text.length + file.length - 8 - length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(new TextEncoder().encode(text), 8);
  out.set(file.subarray(8 + length), 8 + text.length);
  return out;
}

/** Replaces the first float32 of tensor `name` in a safetensors file by `value` (NaN, Infinity, ...). */
export function withTensorValue(file: Uint8Array, name: string, value: number): Uint8Array {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const length = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + length))) as Record<string, { data_offsets: [number, number] }>;
  const out = file.slice();
  new DataView(out.buffer).setFloat32(8 + length + header[name]!.data_offsets[0], value, true);
  return out;
}
