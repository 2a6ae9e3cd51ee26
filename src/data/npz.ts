/**
 * NumPy `.npz` files: a zip of `.npy` entries, stored or deflated (np.savez / np.savez_compressed), zip64 included.
 *
 * Reading goes entry by entry straight from the file: a stored entry is read once into a buffer laid out so that its
 * data is aligned (then the returned TypedArray is a view of it, no further copy); a deflated entry is read once and
 * inflated (fflate) into one buffer of its known size. CRC-32 is checked as NumPy's zipfile does.
 *
 * Writing is deterministic (fixed 1980-01-01 timestamps, fixed entry order, fixed deflate level, Node's zlib), so the
 * same arrays give a byte-identical file, and atomic (a temporary file renamed into place).
 */
import { open, type FileHandle } from 'node:fs/promises';
import * as zlib from 'node:zlib';

import { inflateSync } from 'fflate';

import { invalidInput, VmatError } from '../errors.js';
import { openAtomic } from '../io/atomic.js';
import { loadNative } from '../native/loader.js';
import { encodeNpy, parseNpy, type NpyArray, type WritableNpyArray } from './npy.js';

const LOCAL_SIGNATURE = 0x04034b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const END_SIGNATURE = 0x06054b50;
const ZIP64_END_SIGNATURE = 0x06064b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const MAX_IO_CHUNK = 1 << 30; // fs read/write calls take at most 2 GiB
const DEFLATE_LEVEL = 6; // zlib's default, as np.savez_compressed uses

const crc32: ((data: Uint8Array, value?: number) => number) | undefined = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

interface CentralEntry {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

export interface ReadNpzOptions {
  /** Read only these keys (entry names without `.npy`); others are skipped without being read. */
  keys?: readonly string[];
}

/** Reads every `.npy` entry of an .npz file into a map keyed by name (without `.npy`). */
export async function readNpz(path: string, options: ReadNpzOptions = {}): Promise<Map<string, NpyArray>> {
  const file = await open(path, 'r');
  try {
    const size = (await file.stat()).size;
    const entries = await readCentralDirectory(file, size, path);
    const wanted = options.keys ? new Set(options.keys) : undefined;
    const arrays = new Map<string, NpyArray>();
    for (const entry of entries) {
      if (!entry.name.endsWith('.npy')) continue;
      const key = entry.name.slice(0, -4);
      if (wanted && !wanted.has(key)) continue;
      arrays.set(key, await readEntry(file, size, entry, `${path}: '${key}'`));
    }
    return arrays;
  } finally {
    await file.close();
  }
}

/** The entry names of an .npz file (without `.npy`), in file order. */
export async function listNpz(path: string): Promise<string[]> {
  const file = await open(path, 'r');
  try {
    const entries = await readCentralDirectory(file, (await file.stat()).size, path);
    return entries.filter((entry) => entry.name.endsWith('.npy')).map((entry) => entry.name.slice(0, -4));
  } finally {
    await file.close();
  }
}

async function readAt(file: FileHandle, target: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await file.read(target, done, Math.min(MAX_IO_CHUNK, target.length - done), position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function readCentralDirectory(file: FileHandle, size: number, path: string): Promise<CentralEntry[]> {
  const tailLength = Math.min(size, 22 + 65535 + 20);
  const tail = new Uint8Array(tailLength);
  await readAt(file, tail, size - tailLength);
  const tailView = new DataView(tail.buffer);
  let end = -1;
  for (let i = tailLength - 22; i >= 0; i--) {
    if (tailView.getUint32(i, true) === END_SIGNATURE) {
      end = i;
      break;
    }
  }
  if (end < 0) {
    throw invalidInput(
      `${path} is not a complete .npz file: expected a zip end-of-central-directory record, found none (the file is truncated or not a zip; ${size} bytes)`,
    );
  }
  let count = tailView.getUint16(end + 10, true);
  let directorySize = tailView.getUint32(end + 12, true);
  let directoryOffset = tailView.getUint32(end + 16, true);
  if (end >= 20 && tailView.getUint32(end - 20, true) === ZIP64_LOCATOR_SIGNATURE) {
    const zip64EndOffset = Number(tailView.getBigUint64(end - 20 + 8, true));
    const record = new Uint8Array(56);
    await readAt(file, record, zip64EndOffset);
    const view = new DataView(record.buffer);
    if (view.getUint32(0, true) !== ZIP64_END_SIGNATURE) {
      throw invalidInput(`${path} is a damaged zip: expected a zip64 end-of-central-directory record at byte ${zip64EndOffset}, found none`);
    }
    count = Number(view.getBigUint64(32, true));
    directorySize = Number(view.getBigUint64(40, true));
    directoryOffset = Number(view.getBigUint64(48, true));
  }
  if (directoryOffset + directorySize > size) {
    throw invalidInput(`${path} is truncated: expected its zip central directory at bytes ${directoryOffset}..${directoryOffset + directorySize}, found a ${size}-byte file`);
  }
  const directory = new Uint8Array(directorySize);
  await readAt(file, directory, directoryOffset);
  const view = new DataView(directory.buffer);
  const entries: CentralEntry[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > directorySize || view.getUint32(at, true) !== CENTRAL_SIGNATURE) {
      throw invalidInput(`${path} is a damaged zip: expected ${count} central directory entries, found ${i}`);
    }
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    const name = new TextDecoder().decode(directory.subarray(at + 46, at + 46 + nameLength));
    let compressedSize = view.getUint32(at + 20, true);
    let entrySize = view.getUint32(at + 24, true);
    let localOffset = view.getUint32(at + 42, true);
    // zip64 extra field: the 64-bit values, in this order, for those whose 32-bit field is saturated.
    for (let e = at + 46 + nameLength; e + 4 <= at + 46 + nameLength + extraLength; ) {
      const id = view.getUint16(e, true);
      const length = view.getUint16(e + 2, true);
      if (id === 0x0001) {
        let p = e + 4;
        if (entrySize === 0xffffffff) (entrySize = Number(view.getBigUint64(p, true))), (p += 8);
        if (compressedSize === 0xffffffff) (compressedSize = Number(view.getBigUint64(p, true))), (p += 8);
        if (localOffset === 0xffffffff) localOffset = Number(view.getBigUint64(p, true));
      }
      e += 4 + length;
    }
    entries.push({ name, method: view.getUint16(at + 10, true), crc: view.getUint32(at + 16, true), compressedSize, size: entrySize, localOffset });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

async function readEntry(file: FileHandle, size: number, entry: CentralEntry, label: string): Promise<NpyArray> {
  const local = new Uint8Array(30);
  if ((await readAt(file, local, entry.localOffset)) < 30 || new DataView(local.buffer).getUint32(0, true) !== LOCAL_SIGNATURE) {
    throw invalidInput(`${label} is damaged: expected a zip local header at byte ${entry.localOffset}, found none`);
  }
  const localView = new DataView(local.buffer);
  const start = entry.localOffset + 30 + localView.getUint16(26, true) + localView.getUint16(28, true);
  if (start + entry.compressedSize > size) {
    throw invalidInput(`${label} is truncated: expected ${entry.compressedSize} bytes at byte ${start}, found a ${size}-byte file`);
  }
  let npy: Uint8Array;
  if (entry.method === 0) {
    // Read the .npy preamble first, then the whole entry at an offset that puts its data on a 64-byte boundary.
    const preamble = new Uint8Array(Math.min(12, entry.size));
    await readAt(file, preamble, start);
    const headerLength = preamble[6] === 1 ? new DataView(preamble.buffer).getUint16(8, true) : preamble.length >= 12 ? new DataView(preamble.buffer).getUint32(8, true) : 0;
    const dataOffset = (preamble[6] === 1 ? 10 : 12) + headerLength;
    const pad = (64 - (dataOffset % 64)) % 64;
    npy = new Uint8Array(allocate(pad + entry.size), pad, entry.size);
    await readAt(file, npy, start);
  } else if (entry.method === 8) {
    const compressed = new Uint8Array(entry.compressedSize);
    await readAt(file, compressed, start);
    try {
      npy = inflateSync(compressed, { out: new Uint8Array(allocate(entry.size)) });
    } catch (error) {
      throw invalidInput(`${label} is damaged: expected deflate data, found data that does not inflate (${(error as Error).message})`);
    }
    if (npy.length !== entry.size) throw invalidInput(`${label} is damaged: expected ${entry.size} bytes once inflated, found ${npy.length}`);
  } else {
    throw invalidInput(`${label} uses zip compression method ${entry.method}: expected stored (0) or deflated (8)`);
  }
  if (crc32) {
    const found = crc32(npy) >>> 0;
    if (found !== entry.crc) {
      throw invalidInput(`${label} is damaged: expected CRC-32 ${hex(entry.crc)}, found ${hex(found)}`);
    }
  }
  return parseNpy(npy, label);
}

const LARGE_BUFFER = 8 << 20;
let nativeAllocate: ((bytes: number) => ArrayBuffer) | null | undefined;

/**
 * A buffer for one entry. Large ones come from the addon (huge-page-advised memory, as NumPy allocates its large
 * arrays), which halves the time to fill them from a file; without the addon (reading files needs no libtorch), a
 * plain ArrayBuffer.
 */
function allocate(bytes: number): ArrayBuffer {
  if (bytes < LARGE_BUFFER) return new ArrayBuffer(bytes);
  if (nativeAllocate === undefined) {
    try {
      const data = loadNative().data;
      nativeAllocate = (size) => data.allocateBuffer(size);
    } catch {
      nativeAllocate = null;
    }
  }
  return nativeAllocate ? nativeAllocate(bytes) : new ArrayBuffer(bytes);
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

export interface WriteNpzOptions {
  /** Deflate the entries (np.savez_compressed); default true. */
  compress?: boolean;
  /** zlib level 1-9 of the deflated entries; default 6 (np.savez_compressed's) */
  level?: number;
  /** Replace an existing file; without it an existing file is an error. */
  overwrite?: boolean;
}

/**
 * Writes arrays (in the given order) as an .npz file, atomically: a temporary file in the same folder is renamed
 * into place, so a reader never sees a half-written file.
 */
export async function writeNpz(path: string, arrays: [string, WritableNpyArray][], options: WriteNpzOptions = {}): Promise<void> {
  const compress = options.compress ?? true;
  const file = await openAtomic(path, { overwrite: options.overwrite });
  try {
    const central: Uint8Array[] = [];
    if (!crc32) throw new VmatError('VMAT_INTERNAL', 'writing .npz files needs zlib.crc32 (Node.js 20.15 or newer)');
    // Every entry is deflated at once on zlib's thread pool, while this thread computes the CRCs.
    const entries = arrays.map(([key, array]) => {
      const chunks = encodeNpy(array, `'${key}'`);
      const body = compress ? deflateChunks(chunks, options.level ?? DEFLATE_LEVEL) : Promise.resolve(chunks);
      body.catch(() => undefined); // awaited below, in order; an early failure must not go unhandled meanwhile
      return { key, chunks, body };
    });
    for (const { key, chunks, body: pending } of entries) {
      const name = new TextEncoder().encode(`${key}.npy`);
      const size = chunks.reduce((total, chunk) => total + chunk.length, 0);
      let crc = 0;
      for (const chunk of chunks) crc = crc32(chunk, crc);
      const body = await pending;
      const compressedSize = body.reduce((total, chunk) => total + chunk.length, 0);
      const offset = file.position;
      if (size > 0xfffffffe || compressedSize > 0xfffffffe || offset > 0xfffffffe) {
        throw invalidInput(`'${key}' is too large for an .npz written by vmat-native: expected under 4 GiB per entry and per file, found ${size} bytes`);
      }
      const method = compress ? 8 : 0;
      await file.write(zipHeader(LOCAL_SIGNATURE, { name, method, crc, compressedSize, size, offset }));
      for (const chunk of body) await file.write(chunk);
      central.push(zipHeader(CENTRAL_SIGNATURE, { name, method, crc, compressedSize, size, offset }));
    }
    const directoryOffset = file.position;
    for (const record of central) await file.write(record);
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, END_SIGNATURE, true);
    end.setUint16(8, central.length, true);
    end.setUint16(10, central.length, true);
    end.setUint32(12, file.position - directoryOffset, true);
    end.setUint32(16, directoryOffset, true);
    await file.write(new Uint8Array(end.buffer));
  } catch (error) {
    await file.abort();
    throw error;
  }
  await file.commit();
}

/** Raw deflate by Node's zlib (native, several times faster than fflate's, on the libuv thread pool). */
async function deflateChunks(chunks: Uint8Array[], level: number): Promise<Uint8Array[]> {
  const deflater = zlib.createDeflateRaw({ level, chunkSize: 1 << 20 });
  const out: Uint8Array[] = [];
  deflater.on('data', (chunk: Buffer) => out.push(chunk));
  const done = new Promise<void>((resolve, reject) => {
    deflater.on('end', resolve);
    deflater.on('error', reject);
  });
  for (const chunk of chunks) deflater.write(chunk);
  deflater.end();
  await done;
  return out;
}

interface HeaderFields {
  name: Uint8Array;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  offset: number;
}

/** A local (30 bytes + name) or central (46 bytes + name) zip header with the fixed DOS time 1980-01-01 00:00. */
function zipHeader(signature: number, fields: HeaderFields): Uint8Array {
  const central = signature === CENTRAL_SIGNATURE;
  const fixed = central ? 46 : 30;
  const bytes = new Uint8Array(fixed + fields.name.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, signature, true);
  let at = 4;
  if (central) {
    view.setUint16(at, 20, true); // made by: version 2.0, MS-DOS attributes
    at += 2;
  }
  view.setUint16(at, 20, true); // version needed: 2.0 (deflate)
  view.setUint16(at + 2, 0, true); // flags
  view.setUint16(at + 4, fields.method, true);
  view.setUint16(at + 6, 0, true); // time 00:00:00
  view.setUint16(at + 8, (0 << 9) | (1 << 5) | 1, true); // date 1980-01-01
  view.setUint32(at + 10, fields.crc >>> 0, true);
  view.setUint32(at + 14, fields.compressedSize, true);
  view.setUint32(at + 18, fields.size, true);
  view.setUint16(at + 22, fields.name.length, true);
  view.setUint16(at + 24, 0, true); // extra length
  if (central) view.setUint32(42, fields.offset, true); // comment, disk, attributes stay 0
  bytes.set(fields.name, fixed);
  return bytes;
}

