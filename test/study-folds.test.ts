import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { splitIndices } from '../src/data/split.js';
import { kFoldDataset, kFoldIndices } from '../src/study/folds.js';
import { tempDir } from './helpers.js';

const hasNumpy = spawnSync('/usr/bin/python3', ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;

// The README's rule written with NumPy: RandomState(seed).permutation(n), numpy.array_split into k test folds, the
// validation cases following each test fold in the permutation (wrapping), the training cases the rest.
const NUMPY_FOLDS = `
import json, sys
import numpy as np
out = []
for job in json.load(sys.stdin):
    n, k, seed, val_split = job["n"], job["k"], job["seed"], job["val_split"]
    perm = np.random.RandomState(seed).permutation(n)
    n_val = max(1, int(np.floor(n * val_split)))
    folds, start = [], 0
    for test in np.array_split(perm, k):
        end = start + len(test)
        rest = np.concatenate([perm[end:], perm[:start]])
        folds.append({"test": test.tolist(), "val": rest[:n_val].tolist(), "train": rest[n_val:].tolist()})
        start = end
    out.append(folds)
print(json.dumps(out))
`;

describe('kFoldIndices', () => {
  const jobs = [
    { n: 23, k: 5, seed: 42, val_split: 0.1 },
    { n: 10, k: 5, seed: 0, val_split: 0.1 },
    { n: 17, k: 3, seed: 7, val_split: 0.25 },
    { n: 74, k: 5, seed: 123, val_split: 0.1 },
    { n: 6, k: 2, seed: 456, val_split: 0 },
  ];

  it.skipIf(!hasNumpy)('follows its rule as NumPy computes it', () => {
    const run = spawnSync('/usr/bin/python3', ['-c', NUMPY_FOLDS], { input: JSON.stringify(jobs), encoding: 'utf8' });
    expect(run.stderr).toBe('');
    const theirs = JSON.parse(run.stdout) as Array<Array<{ test: number[]; val: number[]; train: number[] }>>;
    jobs.forEach((job, i) => {
      const ours = kFoldIndices(job.n, { folds: job.k, seed: job.seed, valSplit: job.val_split });
      expect(ours.map(({ test, val, train }) => ({ test, val, train }))).toEqual(theirs[i]);
      expect(ours.map((f) => f.fold)).toEqual(Array.from({ length: job.k }, (_, f) => f));
    });
  });

  it('tests every case exactly once, keeps the parts apart, and orders the cases as the plain split does', () => {
    for (const job of jobs) {
      const folds = kFoldIndices(job.n, { folds: job.k, seed: job.seed, valSplit: job.val_split });
      const tested = folds.flatMap((f) => f.test).sort((a, b) => a - b);
      expect(tested).toEqual(Array.from({ length: job.n }, (_, i) => i));
      for (const fold of folds) {
        expect(new Set([...fold.train, ...fold.val, ...fold.test]).size).toBe(job.n);
        expect(fold.val).toHaveLength(Math.max(1, Math.floor(job.n * job.val_split)));
      }
      // The permutation is the plain split's: its order is fold 0's test, then fold 1's, ...
      const plain = splitIndices(job.n, { valSplit: 0.1, testSplit: 0, seed: job.seed });
      expect(folds.flatMap((f) => f.test)).toEqual([...plain.train, ...plain.val]);
    }
  });

  it('is the same for the same seed and differs for another', () => {
    expect(kFoldIndices(20, { folds: 5, seed: 3 })).toEqual(kFoldIndices(20, { folds: 5, seed: 3 }));
    expect(kFoldIndices(20, { folds: 5, seed: 3 })[0]!.test).not.toEqual(kFoldIndices(20, { folds: 5, seed: 4 })[0]!.test);
  });

  it('refuses impossible fold counts with a sentence', () => {
    expect(() => kFoldIndices(10, { folds: 1 })).toThrow(/folds must be an integer >= 2, got 1/);
    expect(() => kFoldIndices(10, { folds: 2.5 })).toThrow(/folds must be an integer >= 2, got 2.5/);
    expect(() => kFoldIndices(4, { folds: 5 })).toThrow(/5 folds need at least 5 cases, got 4/);
    expect(() => kFoldIndices(3, { folds: 2 })).toThrow(/2 folds of 3 cases leave no training case: expected at least 4 cases for 2 test and 1 validation case per fold/);
    expect(() => kFoldIndices(10, { folds: 5, valSplit: 1 })).toThrow(/val split must be a fraction in \[0, 1\), got 1/);
  });
});

describe('kFoldDataset', () => {
  it('splits a folder of case files by sorted name', async () => {
    const dir = tempDir();
    const names = Array.from({ length: 11 }, (_, i) => `case_${String(i).padStart(2, '0')}`);
    for (const name of [...names].reverse()) writeFileSync(join(dir, `${name}.npz`), '');
    writeFileSync(join(dir, 'notes.txt'), '');
    const folds = await kFoldDataset(dir, { folds: 4, seed: 9 });
    const indices = kFoldIndices(11, { folds: 4, seed: 9 });
    expect(folds).toHaveLength(4);
    folds.forEach((fold, f) => {
      expect(fold).toMatchObject({ fold: f, folds: 4, seed: 9 });
      expect(fold.test).toEqual(indices[f]!.test.map((i) => names[i]));
      expect(fold.val).toEqual(indices[f]!.val.map((i) => names[i]));
      expect(fold.files.train).toEqual(fold.train.map((id) => `${id}.npz`));
    });
    await expect(kFoldDataset(tempDir(), { folds: 2 })).rejects.toThrow(/holds no case files/);
  });
});
