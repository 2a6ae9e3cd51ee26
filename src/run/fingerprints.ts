/**
 * What the case files of a run were when it started (inputs.json): size, modification time and SHA-256 of each.
 * A resume compares them, so that a run never continues on data other than what its first epochs saw.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

import type { DatasetSplit } from '../data/split.js';
import type { InputFingerprint, InputsFile } from './files.js';

async function sha256(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { signal })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The fingerprints of every file of the split (train, val and test), read from dataDir. */
export async function fingerprintInputs(dataDir: string, split: DatasetSplit, signal?: AbortSignal): Promise<InputsFile> {
  const files: InputFingerprint[] = [];
  for (const role of ['train', 'val', 'test'] as const) {
    for (const file of split.files[role]) {
      const path = join(dataDir, file);
      const info = await stat(path);
      files.push({ file, role, bytes: info.size, mtimeMs: info.mtimeMs, sha256: await sha256(path, signal) });
    }
  }
  return { dataDir, files };
}

export interface ChangedInput {
  fingerprint: InputFingerprint;
  /** what differs, in words: "missing", "1234 → 1240 bytes", "the same size, other content" */
  change: string;
}

/**
 * The recorded files that are not as recorded now. The content decides: a file touched (another mtime) with the
 * same bytes is unchanged.
 */
export async function changedInputs(dataDir: string, recorded: InputsFile, signal?: AbortSignal): Promise<ChangedInput[]> {
  const changed: ChangedInput[] = [];
  for (const fingerprint of recorded.files) {
    const path = join(dataDir, fingerprint.file);
    const info = await stat(path).catch(() => null);
    if (!info || !info.isFile()) changed.push({ fingerprint, change: 'it is missing' });
    else if (info.size !== fingerprint.bytes) changed.push({ fingerprint, change: `${fingerprint.bytes} → ${info.size} bytes` });
    else if ((await sha256(path, signal)) !== fingerprint.sha256) {
      changed.push({ fingerprint, change: `same size, other content (modified ${new Date(info.mtimeMs).toISOString()})` });
    }
  }
  return changed;
}
