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
import { totalmem } from 'node:os';
import * as zlib from 'node:zlib';

import { Inflate, inflateSync } from 'fflate';

import { invalidInput, VmatError } from '../errors.js';
import { openAtomic } from '../io/atomic.js';
import { loadNative } from '../native/loader.js';
import { encodeNpy, NPY_PREAMBLE_BYTES, npyDataBytes, parseNpy, parseNpyHeader, type NpyArray, type NpyHeader, type WritableNpyArray } from './npy.js';

const LOCAL_SIGNATURE = 0x04034b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const END_SIGNATURE = 0x06054b50;
const ZIP64_END_SIGNATURE = 0x06064b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const MAX_IO_CHUNK = 1 << 30; // fs read/write calls take at most 2 GiB
const DEFLATE_LEVEL = 6; // zlib's default, as np.savez_compressed uses
/** The writer has no zip64: an entry, and the offset of the last one, stay below 4 GiB. */
export const MAX_NPZ_ENTRY_BYTES = 0xfffffffe;

const crc32: ((data: Uint8Array, value?: number) => number) | undefined = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

interface CentralEntry {
  name: string;
  nameLength: number;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
  /** Where the next entry (or the central directory) starts: this entry's bytes must end before it. */
  limit: number;
}

/** Deflate's best ratio: a 258-byte match coded in 2 bits. An entry claiming more per compressed byte is damage. */
const MAX_DEFLATE_RATIO = 1032;

export interface ReadNpzOptions {
  /** Read only these keys (entry names without `.npy`); others are skipped without being read. */
  keys?: readonly string[];
  /**
   * The most bytes the arrays read may take in memory. A file whose entries declare more is refused, naming it,
   * before anything is allocated. Default: half of this machine's memory (`defaultReadCeiling()`).
   */
  maxBytes?: number;
}

/** Half of this machine's memory: the most one file's arrays may take by default. */
export function defaultReadCeiling(): number {
  return Math.floor(totalmem() / 2);
}

/**
 * Reads every `.npy` entry of an .npz file into a map keyed by name (without `.npy`). Every size is checked against
 * the file (entries within it, not overlapping, not inflating beyond what deflate can), against the array shape its
 * header declares, and against `maxBytes`, before memory is allocated for it.
 */
export async function readNpz(path: string, options: ReadNpzOptions = {}): Promise<Map<string, NpyArray>> {
  const file = await openNpz(path);
  try {
    const entries = await readCentralDirectory(file, (await file.stat()).size, path);
    const wanted = entries.filter((entry) => entry.name.endsWith('.npy') && (!options.keys || options.keys.includes(entry.name.slice(0, -4))));
    const needed = wanted.reduce((total, entry) => total + entry.size, 0);
    const ceiling = options.maxBytes ?? defaultReadCeiling();
    if (needed > ceiling) {
      throw invalidInput(
        `${path} declares ${formatBytes(needed)} of arrays, more than the ${formatBytes(ceiling)} one file may take${options.maxBytes === undefined ? ' (half of this machine\'s memory)' : ''}: the file is damaged, or too large for this machine`,
      );
    }
    const arrays = new Map<string, NpyArray>();
    for (const entry of wanted) {
      const key = entry.name.slice(0, -4);
      arrays.set(key, await readEntry(file, entry, `${path}: '${key}'`));
    }
    return arrays;
  } finally {
    await file.close();
  }
}

/** The entry names of an .npz file (without `.npy`), in file order. */
export async function listNpz(path: string): Promise<string[]> {
  const file = await openNpz(path);
  try {
    const entries = await readCentralDirectory(file, (await file.stat()).size, path);
    return entries.filter((entry) => entry.name.endsWith('.npy')).map((entry) => entry.name.slice(0, -4));
  } finally {
    await file.close();
  }
}

async function openNpz(path: string): Promise<FileHandle> {
  const file = await open(path, 'r');
  const info = await file.stat();
  if (!info.isFile()) {
    await file.close();
    throw invalidInput(`${path} is ${info.isDirectory() ? 'a folder' : 'not a regular file'}: expected an .npz file`);
  }
  return file;
}

function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${bytes} bytes`;
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

/** A 64-bit zip field as a number, refusing values beyond the file (they could not be offsets or sizes in it). */
function zip64Field(value: bigint, size: number, fail: (why: string) => never, what: string): number {
  if (value > BigInt(Math.max(size, 0)) * BigInt(MAX_DEFLATE_RATIO)) fail(`its zip64 ${what} (${value}) is beyond any size this ${size}-byte file can hold`);
  return Number(value);
}

async function readCentralDirectory(file: FileHandle, size: number, path: string): Promise<CentralEntry[]> {
  const damaged = (why: string): never => {
    throw invalidInput(`${path} is a damaged zip: ${why}`);
  };
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
  // The directory lies before the end record (or before the zip64 end record).
  let directoryEnd = size - tailLength + end;
  if (end >= 20 && tailView.getUint32(end - 20, true) === ZIP64_LOCATOR_SIGNATURE) {
    const zip64EndOffset = tailView.getBigUint64(end - 20 + 8, true);
    if (zip64EndOffset + 56n > BigInt(directoryEnd - 20)) damaged(`expected a zip64 end-of-central-directory record before byte ${directoryEnd - 20}, found an offset of ${zip64EndOffset}`);
    directoryEnd = Number(zip64EndOffset);
    const record = new Uint8Array(56);
    await readAt(file, record, directoryEnd);
    const view = new DataView(record.buffer);
    if (view.getUint32(0, true) !== ZIP64_END_SIGNATURE) damaged(`expected a zip64 end-of-central-directory record at byte ${directoryEnd}, found none`);
    count = zip64Field(view.getBigUint64(32, true), size, damaged, 'entry count');
    directorySize = zip64Field(view.getBigUint64(40, true), size, damaged, 'directory size');
    directoryOffset = zip64Field(view.getBigUint64(48, true), size, damaged, 'directory offset');
  }
  if (directoryOffset + directorySize > directoryEnd) {
    throw invalidInput(`${path} is truncated: expected its zip central directory at bytes ${directoryOffset}..${directoryOffset + directorySize}, found a ${size}-byte file`);
  }
  // A central entry takes at least 46 bytes: a count beyond that is damage (and would otherwise drive the loop).
  if (count * 46 > directorySize) damaged(`expected at most ${Math.floor(directorySize / 46)} entries in its ${directorySize}-byte central directory, found a count of ${count}`);
  const directory = new Uint8Array(directorySize);
  await readAt(file, directory, directoryOffset);
  const view = new DataView(directory.buffer);
  const entries: CentralEntry[] = [];
  const names = new Set<string>();
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > directorySize || view.getUint32(at, true) !== CENTRAL_SIGNATURE) damaged(`expected ${count} central directory entries, found ${i}`);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    const extraStart = at + 46 + nameLength;
    const extraEnd = extraStart + extraLength;
    if (extraEnd + commentLength > directorySize) damaged(`central directory entry ${i} runs past the end of the directory`);
    const name = new TextDecoder().decode(directory.subarray(at + 46, extraStart));
    if (names.has(name)) damaged(`it holds two entries named '${name}'`);
    names.add(name);
    if (view.getUint16(at + 8, true) & 1) throw invalidInput(`${path}: '${name}' is encrypted: expected a plain zip entry (as NumPy writes)`);
    let compressedSize = view.getUint32(at + 20, true);
    let entrySize = view.getUint32(at + 24, true);
    let localOffset = view.getUint32(at + 42, true);
    // zip64 extra field: the 64-bit values, in this order, for those whose 32-bit field is saturated.
    for (let e = extraStart; e + 4 <= extraEnd; ) {
      const id = view.getUint16(e, true);
      const fieldEnd = e + 4 + view.getUint16(e + 2, true);
      if (fieldEnd > extraEnd) damaged(`the extra field of '${name}' runs past its entry`);
      if (id === 0x0001) {
        let p = e + 4;
        const next = (what: string): number => {
          if (p + 8 > fieldEnd) damaged(`the zip64 field of '${name}' has no ${what}`);
          p += 8;
          return zip64Field(view.getBigUint64(p - 8, true), size, damaged, `${what} of '${name}'`);
        };
        if (entrySize === 0xffffffff) entrySize = next('size');
        if (compressedSize === 0xffffffff) compressedSize = next('compressed size');
        if (localOffset === 0xffffffff) localOffset = next('offset');
      }
      e = fieldEnd;
    }
    const method = view.getUint16(at + 10, true);
    if (method === 0 && entrySize !== compressedSize) damaged(`stored entry '${name}' claims ${entrySize} bytes but holds ${compressedSize}`);
    if (method === 8 && entrySize > compressedSize * MAX_DEFLATE_RATIO) {
      damaged(`'${name}' claims ${entrySize} bytes from ${compressedSize} compressed bytes, more than deflate can expand (${MAX_DEFLATE_RATIO}x)`);
    }
    entries.push({ name, nameLength, method, crc: view.getUint32(at + 16, true), compressedSize, size: entrySize, localOffset, limit: directoryOffset });
    at = extraEnd + commentLength;
  }
  // Each entry's bytes (local header, name, data) must lie before the directory and apart from every other entry's:
  // a zip whose entries share bytes (a "zip bomb") is refused rather than inflated again and again.
  const byOffset = [...entries].sort((a, b) => a.localOffset - b.localOffset);
  byOffset.forEach((entry, i) => {
    const next = byOffset[i + 1];
    if (next) entry.limit = next.localOffset;
    const extent = entry.localOffset + 30 + entry.nameLength + entry.compressedSize;
    if (extent > entry.limit) {
      if (next) damaged(`entries '${entry.name}' and '${next.name}' overlap (a zip whose entries share data is refused)`);
      if (extent > size) throw invalidInput(`${path}: '${entry.name}' is truncated: expected ${entry.compressedSize} bytes at byte ${entry.localOffset + 30 + entry.nameLength}, found a ${size}-byte file`);
      damaged(`'${entry.name}' runs into the central directory`);
    }
  });
  return entries;
}

async function readEntry(file: FileHandle, entry: CentralEntry, label: string): Promise<NpyArray> {
  const local = new Uint8Array(30);
  if ((await readAt(file, local, entry.localOffset)) < 30 || new DataView(local.buffer).getUint32(0, true) !== LOCAL_SIGNATURE) {
    throw invalidInput(`${label} is damaged: expected a zip local header at byte ${entry.localOffset}, found none`);
  }
  const localView = new DataView(local.buffer);
  const start = entry.localOffset + 30 + localView.getUint16(26, true) + localView.getUint16(28, true);
  if (start + entry.compressedSize > entry.limit) {
    throw invalidInput(`${label} is damaged: its local header puts its ${entry.compressedSize} bytes at byte ${start}, past the start of the next entry (byte ${entry.limit})`);
  }
  let npy: Uint8Array;
  if (entry.method === 0) {
    // Read the .npy header first, then the whole entry at an offset that puts its data on a 64-byte boundary.
    const preamble = new Uint8Array(Math.min(NPY_PREAMBLE_BYTES, entry.size));
    await readAt(file, preamble, start);
    const header = checkDeclaredSize(parseNpyHeader(preamble, label), entry.size, label);
    const pad = (64 - (header.dataOffset % 64)) % 64;
    npy = new Uint8Array(allocate(pad + entry.size), pad, entry.size);
    await readAt(file, npy, start);
  } else if (entry.method === 8) {
    const compressed = new Uint8Array(entry.compressedSize);
    await readAt(file, compressed, start);
    const inflateError = (error: unknown) =>
      invalidInput(`${label} is damaged: expected deflate data, found data that does not inflate (${(error as Error).message})`);
    // The header comes from the first inflated bytes, so that the shape it declares is checked before the buffer
    // for the whole entry is allocated.
    let prefix: Uint8Array;
    try {
      prefix = inflatePrefix(compressed, Math.min(NPY_PREAMBLE_BYTES, entry.size));
    } catch (error) {
      throw inflateError(error);
    }
    checkDeclaredSize(parseNpyHeader(prefix, label), entry.size, label);
    try {
      npy = inflateSync(compressed, { out: new Uint8Array(allocate(entry.size)) });
    } catch (error) {
      throw inflateError(error);
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

/** The entry must hold the data its header declares (NumPy writes exactly that). */
function checkDeclaredSize(header: NpyHeader, entrySize: number, label: string): NpyHeader {
  const dataBytes = npyDataBytes(header, label);
  if (dataBytes !== undefined && header.dataOffset + dataBytes > entrySize) {
    throw invalidInput(
      `${label} is truncated: its header declares shape (${header.shape.join(', ')}) of '${header.descr}', ${dataBytes} bytes of data, but the entry holds ${Math.max(0, entrySize - header.dataOffset)}`,
    );
  }
  return header;
}

/** The first `length` bytes of a deflate stream, inflating no more than a few chunks past them. */
function inflatePrefix(compressed: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let have = 0;
  const inflater = new Inflate((chunk) => {
    if (have < length) out.set(chunk.subarray(0, length - have), have);
    have += chunk.length;
  });
  const step = 4096; // at most 4 MiB of output per push (deflate's ratio)
  for (let at = 0; at < compressed.length && have < length; at += step) {
    inflater.push(compressed.subarray(at, at + step), at + step >= compressed.length);
  }
  return out.subarray(0, Math.min(have, length));
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
      if (size > MAX_NPZ_ENTRY_BYTES || compressedSize > MAX_NPZ_ENTRY_BYTES || offset > MAX_NPZ_ENTRY_BYTES) {
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

