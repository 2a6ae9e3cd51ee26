/** Train/validation/test split of a dataset folder, bit for bit as the predecessor did it (data.md). */
import { readdir } from 'node:fs/promises';

import { invalidInput } from '../errors.js';
import { noCaseFilesError } from './foreign.js';
import { MT19937 } from './mt19937.js';

export interface SplitOptions {
  valSplit?: number;
  testSplit?: number;
  seed?: number;
}

export interface DatasetSplit {
  /** case ids (file names without .npz) */
  train: string[];
  val: string[];
  test: string[];
  seed: number;
  /** the file names of each part */
  files: { train: string[]; val: string[]; test: string[] };
}

/** The case files of a dataset folder (`*.npz`), sorted by name. */
export async function listCaseFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ENOENT') throw invalidInput(`${dir} does not exist: expected a folder of case files (*.npz)`);
    if (code === 'ENOTDIR') throw invalidInput(`${dir} is not a folder: expected a folder of case files (*.npz)`);
    throw error;
  }
  return names.filter((name) => name.toLowerCase().endsWith('.npz')).sort();
}

/** The split of `count` sorted items: sizes from the fractions, order from RandomState(seed).permutation(count). */
export function splitIndices(count: number, options: SplitOptions = {}): { train: number[]; val: number[]; test: number[] } {
  const valSplit = options.valSplit ?? 0.1;
  const testSplit = options.testSplit ?? 0.1;
  const seed = options.seed ?? 42;
  for (const [name, value] of [['val split', valSplit], ['test split', testSplit]] as const) {
    if (!(value >= 0 && value < 1)) throw invalidInput(`the ${name} must be a fraction in [0, 1), got ${value}`);
  }
  const nTest = testSplit === 0 ? 0 : Math.max(1, Math.floor(count * testSplit));
  const nVal = Math.max(1, Math.floor(count * valSplit));
  const nTrain = count - nVal - nTest;
  if (nTrain < 1) {
    throw invalidInput(`a split of ${count} case${count === 1 ? '' : 's'} leaves no training case: expected at least ${nVal + nTest + 1} cases for ${nVal} validation and ${nTest} test case${nTest === 1 ? '' : 's'}`);
  }
  const order = new MT19937(seed).permutation(count);
  return { train: order.slice(0, nTrain), val: order.slice(nTrain, nTrain + nVal), test: order.slice(nTrain + nVal) };
}

export async function splitDataset(dir: string, options: SplitOptions = {}): Promise<DatasetSplit> {
  const files = await listCaseFiles(dir);
  if (files.length === 0) throw noCaseFilesError(`${dir} holds no case files: expected *.npz files`, dir);
  const parts = splitIndices(files.length, options);
  const pick = (indices: number[]) => indices.map((i) => files[i]!);
  const ids = (names: string[]) => names.map((name) => name.replace(/\.npz$/i, ''));
  const chosen = { train: pick(parts.train), val: pick(parts.val), test: pick(parts.test) };
  return { train: ids(chosen.train), val: ids(chosen.val), test: ids(chosen.test), seed: options.seed ?? 42, files: chosen };
}
