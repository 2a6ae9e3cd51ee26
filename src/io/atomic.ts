/**
 * The one way vmat-native writes a file: into a temporary file in the same folder, flushed to disk, then renamed
 * (or hard-linked, when an existing file must not be replaced) into place. A reader, or a process killed at any
 * moment, sees either the old file or the complete new one, never a part.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { access, link, open, readdir, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { invalidInput } from '../errors.js';

export interface AtomicWriteOptions {
  /** Replace an existing file; without it an existing file is an error naming it. */
  overwrite?: boolean;
}

/** Largest single write (Node's fs.write limit is 2 GiB). */
const MAX_IO_CHUNK = 1 << 30;

/** `.name.<pid>.<random>.tmp`: the writer's pid lets a later run tell a dead writer's leftovers from a live one's. */
const TEMPORARY = /^\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp$/;

function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** A file being written: `write` chunks in order, then `commit` puts it in place, or `abort` removes it. */
export interface AtomicFile {
  readonly path: string;
  write(chunk: Uint8Array): Promise<void>;
  /** Bytes written so far. */
  readonly position: number;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export async function openAtomic(path: string, options: AtomicWriteOptions = {}): Promise<AtomicFile> {
  const temp = temporaryPath(path);
  let file: FileHandle | undefined = await open(temp, 'wx');
  let position = 0;
  const close = async () => {
    const handle = file;
    file = undefined;
    await handle?.close();
  };
  return {
    path,
    get position() {
      return position;
    },
    async write(chunk: Uint8Array) {
      if (!file) throw new Error(`${path}: write after commit or abort`);
      for (let done = 0; done < chunk.length; ) {
        const { bytesWritten } = await file.write(chunk, done, Math.min(MAX_IO_CHUNK, chunk.length - done), position);
        done += bytesWritten;
        position += bytesWritten;
      }
    },
    async commit() {
      try {
        await file?.sync();
        await close();
        await placeFile(temp, path, options.overwrite === true);
      } catch (error) {
        await close().catch(() => undefined);
        await unlink(temp).catch(() => undefined);
        throw error;
      }
    },
    async abort() {
      await close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
    },
  };
}

/** Writes text or bytes atomically. */
export async function writeFileAtomic(path: string, data: string | Uint8Array | readonly Uint8Array[], options: AtomicWriteOptions = {}): Promise<void> {
  const chunks = typeof data === 'string' ? [new TextEncoder().encode(data)] : data instanceof Uint8Array ? [data] : data;
  const file = await openAtomic(path, options);
  try {
    for (const chunk of chunks) await file.write(chunk);
  } catch (error) {
    await file.abort();
    throw error;
  }
  await file.commit();
}

/** writeFileAtomic for synchronous callers (figures, reports): always replaces the file. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const temp = temporaryPath(path);
  const fd = openSync(temp, 'wx');
  try {
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, Math.min(MAX_IO_CHUNK, bytes.length - done));
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temp);
    throw error;
  }
  closeSync(fd);
  try {
    renameSync(temp, path);
  } catch (error) {
    unlinkSync(temp);
    throw error;
  }
}

async function placeFile(temp: string, path: string, overwrite: boolean): Promise<void> {
  if (overwrite) {
    await rename(temp, path);
    return;
  }
  // link() fails if the name exists: no check-then-write race with another writer. File systems without hard links
  // fall back to a check, then rename().
  const exists = () => invalidInput(`${path} already exists: expected a new file name, or pass overwrite to replace it`);
  try {
    await link(temp, path);
    await unlink(temp);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw exists();
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw error;
    if (await access(path).then(() => true, () => false)) throw exists();
    await rename(temp, path);
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files (and run folders being set up) that writers killed before their commit left in `dir`
 * (those of live processes are kept); returns the names removed. A missing folder has none.
 */
export async function removeStaleTemporaries(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const match = TEMPORARY.exec(name);
    if (!match || processAlive(Number(match[2]))) continue;
    // A folder of that name is a run folder being set up when its writer died (src/train/trainer.ts).
    await unlink(join(dir, name))
      .catch((error: NodeJS.ErrnoException) => (error.code === 'EISDIR' || error.code === 'EPERM' ? rm(join(dir, name), { recursive: true }) : Promise.reject(error)))
      .then(
        () => removed.push(name),
        () => undefined,
      );
  }
  return removed;
}
