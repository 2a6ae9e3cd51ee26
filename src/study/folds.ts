/**
 * k-fold cross-validation splits (README "Study statistics"), so that a small cohort uses every case for testing.
 *
 * The rule, per seed: the cases sorted by file name are put in the order of NumPy's
 * `RandomState(seed).permutation(n)` (the same permutation as the plain split, data.md); the k test folds are
 * `numpy.array_split(permutation, k)` (consecutive runs, the first n mod k folds one case longer); fold f's
 * validation cases are the n_val cases that follow its test fold in the permutation, wrapping around to the start,
 * with n_val = max(1, floor(n · valSplit)) as in the plain split; its training cases are the rest, in permutation
 * order. So every case is tested exactly once, and validation cases come from the training folds.
 */
import { invalidInput } from '../errors.js';
import { noCaseFilesError } from '../data/foreign.js';
import { MT19937 } from '../data/mt19937.js';
import { type DatasetSplit, listCaseFiles } from '../data/split.js';

export interface FoldOptions {
  folds: number;
  valSplit?: number;
  seed?: number;
}

export interface FoldIndices {
  /** 0-based */
  fold: number;
  train: number[];
  val: number[];
  test: number[];
}

export interface FoldSplit extends DatasetSplit {
  fold: number;
  folds: number;
}

/** The k folds of `count` sorted items. */
export function kFoldIndices(count: number, options: FoldOptions): FoldIndices[] {
  const { folds } = options;
  const valSplit = options.valSplit ?? 0.1;
  const seed = options.seed ?? 42;
  if (!Number.isInteger(folds) || folds < 2) throw invalidInput(`folds must be an integer >= 2, got ${folds}`);
  if (!(valSplit >= 0 && valSplit < 1)) throw invalidInput(`the val split must be a fraction in [0, 1), got ${valSplit}`);
  if (folds > count) throw invalidInput(`${folds} folds need at least ${folds} cases, got ${count}`);
  const nVal = Math.max(1, Math.floor(count * valSplit));
  const longestTest = Math.ceil(count / folds);
  if (count - longestTest - nVal < 1) {
    throw invalidInput(`${folds} folds of ${count} cases leave no training case: expected at least ${longestTest + nVal + 1} cases for ${longestTest} test and ${nVal} validation case${nVal === 1 ? '' : 's'} per fold`);
  }
  const order = new MT19937(seed).permutation(count);
  const base = Math.floor(count / folds);
  const longer = count % folds;
  const result: FoldIndices[] = [];
  let start = 0;
  for (let fold = 0; fold < folds; fold++) {
    const end = start + base + (fold < longer ? 1 : 0);
    const rest = [...order.slice(end), ...order.slice(0, start)];
    result.push({ fold, test: order.slice(start, end), val: rest.slice(0, nVal), train: rest.slice(nVal) });
    start = end;
  }
  return result;
}

/** The k folds of a dataset folder's case files (sorted by name), as splitDataset gives the plain split. */
export async function kFoldDataset(dir: string, options: FoldOptions): Promise<FoldSplit[]> {
  const files = await listCaseFiles(dir);
  if (files.length === 0) throw noCaseFilesError(`${dir} holds no case files: expected *.npz files`, dir);
  const ids = (names: string[]) => names.map((name) => name.replace(/\.npz$/i, ''));
  return kFoldIndices(files.length, options).map((part) => {
    const pick = (indices: number[]) => indices.map((i) => files[i]!);
    const chosen = { train: pick(part.train), val: pick(part.val), test: pick(part.test) };
    return { fold: part.fold, folds: options.folds, train: ids(chosen.train), val: ids(chosen.val), test: ids(chosen.test), seed: options.seed ?? 42, files: chosen };
  });
}
