/**
 * The layout of a run folder (spec/training.md): every file and folder name, in one place. The trainer writes it,
 * evaluation adds evaluation/, figures and report add figures/ and report.html; all of them find their paths here.
 *
 * RUN/
 *   training_config.json     every setting used, the data folder, split sizes, parameter count, device, precision
 *   split.json               train/val/test case ids and files, seed
 *   test_cases.json          {test_cases, test_files, seed}
 *   environment.json         versions, device, threads, git state of the data and code folders, start time
 *   inputs.json              size, modification time and SHA-256 of each case file of the split (checked on resume)
 *   metrics.csv              one row per epoch (METRICS_COLUMNS)
 *   training_summary.json    best epoch, best val MAE, epochs run, stop reason, time (or the error that stopped it)
 *   log.jsonl                one training event per line, each with its time (ISO 8601 UTC)
 *   events.out.tfevents.*    with the tensorboard setting: TensorBoard event files (src/run/tensorboard.ts)
 *   checkpoints/             last.safetensors, previous.safetensors (the last before it),
 *                            best-epoch=012-val_mae_gy=3.670.safetensors, each + .state.safetensors
 *   evaluation/              <case>.json, cases.csv, summary.json, predictions/<case>_pred.npz
 *   figures/                 <figure>.png and .svg
 *   report.html
 */
import { join } from 'node:path';

import { invalidInput } from '../errors.js';

export const RUN_FILES = {
  trainingConfig: 'training_config.json',
  split: 'split.json',
  testCases: 'test_cases.json',
  environment: 'environment.json',
  inputs: 'inputs.json',
  metrics: 'metrics.csv',
  summary: 'training_summary.json',
  log: 'log.jsonl',
  checkpoints: 'checkpoints',
  evaluation: 'evaluation',
  figures: 'figures',
  report: 'report.html',
} as const;

/** The names of the TensorBoard event files vmat-native writes into a run folder begin so (tensorboard.ts). */
export const TENSORBOARD_FILE_PREFIX = 'events.out.tfevents.';

/** The columns of metrics.csv, in the order training.md lists them. */
export const METRICS_COLUMNS = [
  'epoch',
  'lr',
  'train_loss',
  'train_mse',
  'train_grad',
  'train_neg',
  'val_loss',
  'val_mae_gy',
  'val_mae_ptv70_gy',
  'epoch_seconds',
  'voxels_per_second',
] as const;
export type MetricColumn = (typeof METRICS_COLUMNS)[number];

/**
 * The columns of the later loss terms (README "Losses"), each only in the runs that train with the term: a run
 * without them writes the metrics.csv it wrote before they existed. They follow train_neg.
 */
export const LOSS_TERM_COLUMNS = {
  train_vgg: 'useVggLoss',
  train_structure_weighted: 'useStructureWeighted',
  train_asymmetric_ptv: 'useAsymmetricPtv',
  train_dvh: 'useDvhLoss',
} as const;
export type LossTermColumn = keyof typeof LOSS_TERM_COLUMNS;

/** The columns of a run's metrics.csv: METRICS_COLUMNS with the loss-term columns of the terms that are on. */
export function metricsColumns(settings: Partial<Record<(typeof LOSS_TERM_COLUMNS)[LossTermColumn], unknown>>): string[] {
  const extra = (Object.keys(LOSS_TERM_COLUMNS) as LossTermColumn[]).filter((column) => settings[LOSS_TERM_COLUMNS[column]] === true);
  const at = METRICS_COLUMNS.indexOf('train_neg') + 1;
  return [...METRICS_COLUMNS.slice(0, at), ...extra, ...METRICS_COLUMNS.slice(at)];
}

/**
 * checkpoints/: the native engine writes them (native/src/trainer.cpp, best_checkpoint_name), with these names.
 * Each checkpoint has its training state beside it (`<name>.state.safetensors`) for an exact resume.
 */
export const CHECKPOINT_FILES = {
  last: 'last.safetensors',
  /** the pair last held before its latest save: resume falls back to it when last's pair is not whole */
  previous: 'previous.safetensors',
  stateSuffix: '.state.safetensors',
  /** best-epoch=012-val_mae_gy=3.670.safetensors: the epoch and the validation MAE (Gy, 3 decimals) */
  best: /^best-epoch=(\d+)-val_mae_gy=(\d+(?:\.\d+)?)\.safetensors$/,
} as const;

/**
 * The key metadata entry that the weights and the state of one checkpoint share (native/src/trainer.cpp writes the
 * same random token into both): a pair from two different saves is not whole.
 */
export const CHECKPOINT_PAIR_KEY = 'checkpoint_pair';

/** Names the tool's own files take in a folder of per-case files; a case id never becomes one of them. */
const RESERVED_STEMS = new Set(['summary', 'cases', 'predictions', 'report', 'index']);

/**
 * The file-name stem of a case id: the id itself where it is made of letters, digits, '_', '-', '+', '=', '@' and
 * (not first) '.' and ' '; every other byte as %XX (UTF-8, '%' itself too), and the first letter of a name the tool uses
 * for its own files (`summary`, any case) as %XX. Different ids give different stems, and none is a path (`../x`
 * is `%2E.%2Fx`), a hidden file or one of the tool's files. Case ids become file names only through this.
 */
export function caseFileStem(caseId: string): string {
  let stem = '';
  for (const byte of new TextEncoder().encode(caseId)) {
    const char = String.fromCharCode(byte);
    const plain = byte < 0x80 && (/[A-Za-z0-9_\-+=@]/.test(char) || ((char === '.' || char === ' ') && stem.length > 0));
    stem += plain ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (RESERVED_STEMS.has(stem.toLowerCase())) stem = `%${stem.charCodeAt(0).toString(16).toUpperCase()}${stem.slice(1)}`;
  // NAME_MAX is 255 bytes; ids this long are refused rather than cut (two could then share a name).
  if (stem.length === 0 || stem.length > 200) {
    throw invalidInput(
      `the case id '${JSON.stringify(caseId.slice(0, 60)).slice(1, -1)}${caseId.length > 60 ? '...' : ''}' cannot name a file: expected 1 to 200 bytes, other characters than letters, digits, ' ', '.', '_', '-', '+', '=' and '@' counting 3 each`,
    );
  }
  return stem;
}

/** evaluation/ (also any folder `evaluate --pred --ref --out` writes to). */
export const EVALUATION_FILES = {
  cases: 'cases.csv',
  summary: 'summary.json',
  predictions: 'predictions',
  caseFile: (caseId: string) => `${caseFileStem(caseId)}.json`,
  predictionFile: (caseId: string) => `${caseFileStem(caseId)}_pred.npz`,
} as const;

export interface RunPaths {
  dir: string;
  trainingConfig: string;
  split: string;
  testCases: string;
  environment: string;
  inputs: string;
  metrics: string;
  summary: string;
  log: string;
  checkpoints: string;
  lastCheckpoint: string;
  evaluation: string;
  predictions: string;
  figures: string;
  report: string;
}

/** Every path of the run folder `dir`. */
export function runPaths(dir: string): RunPaths {
  const evaluation = join(dir, RUN_FILES.evaluation);
  return {
    dir,
    trainingConfig: join(dir, RUN_FILES.trainingConfig),
    split: join(dir, RUN_FILES.split),
    testCases: join(dir, RUN_FILES.testCases),
    environment: join(dir, RUN_FILES.environment),
    inputs: join(dir, RUN_FILES.inputs),
    metrics: join(dir, RUN_FILES.metrics),
    summary: join(dir, RUN_FILES.summary),
    log: join(dir, RUN_FILES.log),
    checkpoints: join(dir, RUN_FILES.checkpoints),
    lastCheckpoint: join(dir, RUN_FILES.checkpoints, CHECKPOINT_FILES.last),
    evaluation,
    predictions: join(evaluation, EVALUATION_FILES.predictions),
    figures: join(dir, RUN_FILES.figures),
    report: join(dir, RUN_FILES.report),
  };
}

export interface EvaluationPaths {
  dir: string;
  cases: string;
  summary: string;
  predictions: string;
  caseFile(caseId: string): string;
  predictionFile(caseId: string): string;
}

/** The paths of an evaluation folder (RUN/evaluation, or another `--out`). */
export function evaluationPaths(dir: string): EvaluationPaths {
  return {
    dir,
    cases: join(dir, EVALUATION_FILES.cases),
    summary: join(dir, EVALUATION_FILES.summary),
    predictions: join(dir, EVALUATION_FILES.predictions),
    caseFile: (caseId) => join(dir, EVALUATION_FILES.caseFile(caseId)),
    predictionFile: (caseId) => join(dir, EVALUATION_FILES.predictions, EVALUATION_FILES.predictionFile(caseId)),
  };
}
