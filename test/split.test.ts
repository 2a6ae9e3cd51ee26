import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { MT19937 } from '../src/data/mt19937.js';
import { splitDataset, splitIndices } from '../src/data/split.js';
import { repoRoot, runCli, tempDir } from './helpers.js';

const numpy = JSON.parse(readFileSync(join(repoRoot, 'test', 'fixtures', 'split_numpy.json'), 'utf8'));

describe('MT19937 as NumPy RandomState', () => {
  for (const { seed, first, at_1299 } of numpy.uint32) {
    it(`gives NumPy's raw outputs for seed ${JSON.stringify(seed)}`, () => {
      const rng = new MT19937(seed);
      const values = Array.from({ length: 1300 }, () => rng.nextUint32());
      expect(values.slice(0, 8)).toEqual(first);
      expect(values[1299]).toBe(at_1299);
    });
  }
  it('gives NumPy permutations for several n and seeds', () => {
    for (const { seed, n, perm } of numpy.permutations) expect(new MT19937(seed).permutation(n)).toEqual(perm);
  });
  it('refuses seeds outside [0, 2^32)', () => {
    expect(() => new MT19937(-1)).toThrow(/between 0 and 2\*\*32 - 1/);
    expect(() => new MT19937(2 ** 32)).toThrow(/between 0 and 2\*\*32 - 1/);
  });
});

describe('splitDataset', () => {
  it('splits as the predecessor did', () => {
    for (const s of numpy.splits) {
      expect(splitIndices(s.n, { valSplit: s.val_split, testSplit: s.test_split, seed: s.seed })).toEqual({ train: s.train, val: s.val, test: s.test });
    }
  });

  it('splits a folder of case files by sorted name, and the CLI prints it', async () => {
    const dir = tempDir();
    const names = Array.from({ length: 23 }, (_, i) => `case_${String(i).padStart(3, '0')}`);
    for (const name of [...names].reverse()) writeFileSync(join(dir, `${name}.npz`), '');
    writeFileSync(join(dir, 'notes.txt'), '');
    mkdirSync(join(dir, 'sub'));
    const split = await splitDataset(dir);
    const reference = numpy.splits.find((s: { n: number; seed: number }) => s.n === 23 && s.seed === 42);
    expect(split.train).toEqual(reference.train.map((i: number) => names[i]));
    expect(split.val).toEqual(reference.val.map((i: number) => names[i]));
    expect(split.test).toEqual(reference.test.map((i: number) => names[i]));
    expect(split.files.test).toEqual(split.test.map((id) => `${id}.npz`));
    expect(split.seed).toBe(42);

    const result = runCli(['split', dir, '--json']);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ train: split.train, val: split.val, test: split.test, seed: 42 });
    const other = runCli(['split', dir, '--val_split', '0.2', '--test-split', '0', '--seed', '7', '--json']);
    expect(JSON.parse(other.stdout)).toMatchObject({ test: [], seed: 7 });
    expect(JSON.parse(other.stdout).val).toHaveLength(4);
  });

  it('rejects bad folders and fractions with a sentence', () => {
    const dir = tempDir();
    expect(runCli(['split', join(dir, 'nope')]).stderr).toMatch(/nope does not exist: expected a folder of case files/);
    expect(runCli(['split', dir]).stderr).toMatch(/holds no case files/);
    writeFileSync(join(dir, 'a.npz'), '');
    writeFileSync(join(dir, 'b.npz'), '');
    const tooFew = runCli(['split', dir]);
    expect(tooFew.status).toBe(1);
    expect(tooFew.stderr).toMatch(/a split of 2 cases leaves no training case/);
    expect(runCli(['split', dir, '--val-split', '1.5']).stderr).toMatch(/--val-split must be a fraction in \[0, 1\), got 1.5/);
  });
});
