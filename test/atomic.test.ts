import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { openAtomic, removeStaleTemporaries, writeFileAtomic } from '../src/io/atomic.js';
import { tempDir } from './helpers.js';

describe('atomic writes', () => {
  it('writes a new file, refuses to replace one without overwrite, replaces it with overwrite', async () => {
    const dir = tempDir();
    const path = join(dir, 'a.json');
    await writeFileAtomic(path, 'one');
    expect(readFileSync(path, 'utf8')).toBe('one');
    await expect(writeFileAtomic(path, 'two')).rejects.toThrow(/a\.json already exists/);
    expect(readFileSync(path, 'utf8')).toBe('one');
    await writeFileAtomic(path, [new Uint8Array([116, 119]), new Uint8Array([111])], { overwrite: true });
    expect(readFileSync(path, 'utf8')).toBe('two');
    expect(readdirSync(dir)).toEqual(['a.json']);
  });

  it('leaves the old file in place until commit, and nothing behind on abort', async () => {
    const dir = tempDir();
    const path = join(dir, 'b.bin');
    writeFileSync(path, 'old');
    const file = await openAtomic(path, { overwrite: true });
    await file.write(new Uint8Array(1000));
    expect(readFileSync(path, 'utf8')).toBe('old');
    expect(file.position).toBe(1000);
    await file.abort();
    expect(readdirSync(dir)).toEqual(['b.bin']);
    expect(readFileSync(path, 'utf8')).toBe('old');
  });

  it("removes a dead writer's temporary files and keeps a live one's", async () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadName = `.case_pred.npz.${dead.stdout}.0123abcd.tmp`;
    const liveName = `.case_pred.npz.${process.pid}.89abcdef.tmp`;
    for (const name of [deadName, liveName, 'case.npz', '.hidden.tmp']) writeFileSync(join(dir, name), 'x');
    expect(await removeStaleTemporaries(dir)).toEqual([deadName]);
    expect(existsSync(join(dir, deadName))).toBe(false);
    expect(readdirSync(dir).sort()).toEqual([liveName, '.hidden.tmp', 'case.npz'].sort());
    expect(await removeStaleTemporaries(join(dir, 'missing'))).toEqual([]);
  });
});
