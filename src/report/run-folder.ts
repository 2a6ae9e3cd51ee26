/**
 * A run folder and its evaluation as the figures, the report and the comparison table see them, read through the
 * run-folder module (src/run/). Everything shown to the user is computed from these files.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, isAbsolute, resolve } from 'node:path';

import { invalidInput } from '../errors.js';
import {
  caseFileStem,
  evaluationPaths,
  listCaseEvaluations,
  METRICS_COLUMNS,
  readCaseEvaluation as readCaseEvaluationFile,
  readCasesCsv,
  readEnvironment,
  readEvaluationSummary,
  readMetrics,
  readSplit,
  readTestCases,
  readTrainingConfig,
  readTrainingSummary,
  runPaths,
  type CsvTable,
  type EnvironmentFile,
  type MetricColumn,
  type MetricsRow,
} from '../run/index.js';

/** The columns of metrics.csv, in the order training.md lists them (the trainer writes them). */
export const METRIC_COLUMNS = METRICS_COLUMNS;
export type { MetricColumn };
export type EpochRow = MetricsRow;

export interface DvhCurve {
  doseGy: number[];
  referenceVolumePct: number[];
  predictionVolumePct: number[];
}

export interface StructureDvh {
  structure: string;
  /** DVH metrics (Dmean, Dmax, D0.03cc, D2%, …, V40Gy …) of the reference and the prediction. */
  reference: Record<string, number>;
  prediction: Record<string, number>;
  curve: DvhCurve | null;
}

export interface ConstraintRow {
  name: string;
  structure: string;
  limit: number | null;
  unit: string;
  reference: number | null;
  prediction: number | null;
  referencePass: boolean | null;
  predictionPass: boolean | null;
  /** why there are no values (e.g. the structure is not in the case) */
  note?: string;
}

export interface CaseEvaluation {
  caseId: string;
  metrics: Record<string, number>;
  dvh: StructureDvh[];
  constraints: ConstraintRow[];
}

export interface RunEvaluation {
  cases: CaseEvaluation[];
  /** evaluation/cases.csv as read: header and rows of cells. */
  casesTable: CsvTable | null;
  /** evaluation/summary.json: mean, sd and n over cases of every metric. */
  summary: Record<string, { mean: number; sd: number; n: number }>;
}

export interface RunSummary {
  bestEpoch: number;
  bestValMaeGy: number;
  epochsRun: number;
  stopReason: string;
  seconds: number;
}

export interface RunFolder {
  dir: string;
  name: string;
  /** training_config.json's settings beside what the run derived (split sizes, parameter count, device) */
  config: Record<string, unknown>;
  environment: EnvironmentFile | null;
  split: { train: string[]; val: string[]; test: string[] } | null;
  testCases: { testCases: string[]; testFiles: string[]; seed: number | null } | null;
  metrics: EpochRow[];
  /** From training_summary.json; where the run has none yet (still training), derived from metrics.csv. */
  summary: RunSummary;
  summaryFromFile: boolean;
  evaluation: RunEvaluation | null;
}

function summaryFromMetrics(metrics: EpochRow[]): RunSummary {
  let best: EpochRow | undefined;
  for (const row of metrics) if (Number.isFinite(row.val_mae_gy) && (!best || row.val_mae_gy < best.val_mae_gy)) best = row;
  return {
    bestEpoch: best?.epoch ?? Number.NaN,
    bestValMaeGy: best?.val_mae_gy ?? Number.NaN,
    epochsRun: metrics.length,
    stopReason: 'unknown (no training_summary.json)',
    seconds: metrics.reduce((sum, row) => sum + (Number.isFinite(row.epoch_seconds) ? row.epoch_seconds : 0), 0),
  };
}

function readSummary(runDir: string, metrics: EpochRow[]): { summary: RunSummary; fromFile: boolean } {
  const file = readTrainingSummary(runDir);
  const derived = summaryFromMetrics(metrics);
  if (!file) return { summary: derived, fromFile: false };
  // A run that an error stopped has no best epoch of its own: that part comes from metrics.csv.
  if (!('runDir' in file)) return { fromFile: true, summary: { ...derived, stopReason: file.stopReason, seconds: file.seconds } };
  return {
    fromFile: true,
    summary: {
      bestEpoch: file.bestEpoch > 0 ? file.bestEpoch : derived.bestEpoch,
      bestValMaeGy: file.bestValMaeGy ?? derived.bestValMaeGy,
      epochsRun: file.epochsRun,
      stopReason: file.stopReason,
      seconds: file.seconds,
    },
  };
}

function numberRecord(value: unknown): Record<string, number> {
  const record: Record<string, number> = {};
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, item] of Object.entries(value)) if (typeof item === 'number') record[key] = item;
  }
  return record;
}

/** Every number of a nested object as flat "a.b.c" keys (as in cases.csv and summary.json). */
function flattenNumbers(value: unknown, prefix: string, into: Record<string, number>): Record<string, number> {
  if (typeof value === 'number') into[prefix] = value;
  else if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, item] of Object.entries(value)) flattenNumbers(item, prefix ? `${prefix}.${key}` : key, into);
  }
  return into;
}

/** At most this many points per DVH curve in the figures (the files hold 0.1 Gy bins). */
const DVH_FIGURE_POINTS = 400;

/** One `evaluation/<case>.json` as the figures and the report show it: flat metrics, DVH curves in %, thinned. */
export function readCaseEvaluation(path: string): CaseEvaluation {
  const file = readCaseEvaluationFile(path);
  const metrics: Record<string, number> = {};
  for (const key of ['mae_gy', 'rmse_gy', 'gamma'] as const) flattenNumbers(file[key], key, metrics);
  const structures = [...new Set([...Object.keys(file.dvh.ref), ...Object.keys(file.dvh_curves)])];
  const dvh: StructureDvh[] = structures.map((structure) => {
    let curve: DvhCurve | null = null;
    const item = file.dvh_curves[structure];
    if (item !== undefined) {
      const length = Math.max(item.ref.length, item.pred.length);
      const step = Math.max(1, Math.ceil(length / DVH_FIGURE_POINTS));
      curve = { doseGy: [], referenceVolumePct: [], predictionVolumePct: [] };
      // Past its last bin a cumulative DVH is 0.
      for (let i = 0; i < length; i += step) {
        curve.doseGy.push(i * item.bin_gy);
        curve.referenceVolumePct.push(100 * (item.ref[i] ?? 0));
        curve.predictionVolumePct.push(100 * (item.pred[i] ?? 0));
      }
    }
    return { structure, reference: numberRecord(file.dvh.ref[structure]), prediction: numberRecord(file.dvh.pred[structure]), curve };
  });
  const constraints: ConstraintRow[] = file.constraints.map((item) => ({
    name: item.name,
    structure: item.structure,
    limit: item.limit,
    unit: item.unit,
    reference: item.ref,
    prediction: item.pred,
    referencePass: item.refPass,
    predictionPass: item.predPass,
    ...(item.note ? { note: item.note } : {}),
  }));
  return { caseId: file.case_id, metrics, dvh, constraints };
}

function readEvaluation(runDir: string): RunEvaluation | null {
  const dir = runPaths(runDir).evaluation;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return null;
  const cases = listCaseEvaluations(dir).map(readCaseEvaluation);
  const summary: RunEvaluation['summary'] = {};
  for (const [key, { mean, sd, n }] of Object.entries(readEvaluationSummary(dir)?.metrics ?? {})) {
    if (Number.isFinite(mean)) summary[key] = { mean, sd, n };
  }
  return { cases, casesTable: readCasesCsv(dir), summary };
}

/** Reads a run folder; a folder that is not one is a user error naming what is missing. */
export function readRunFolder(path: string): RunFolder {
  const dir = resolve(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw invalidInput(`run folder ${path} does not exist: expected a folder written by 'vmat-native train'`);
  }
  const { settings, ...derived } = readTrainingConfig(dir);
  const config: Record<string, unknown> = { ...settings, ...derived };
  const metrics = readMetrics(dir);
  const { summary, fromFile } = readSummary(dir, metrics);
  const split = readSplit(dir);
  const testCases = readTestCases(dir);
  return {
    dir,
    name: settings.expName || basename(dir),
    config,
    environment: readEnvironment(dir),
    split: split && { train: split.train, val: split.val, test: split.test },
    testCases: testCases && { testCases: testCases.test_cases, testFiles: testCases.test_files, seed: testCases.seed },
    metrics,
    summary,
    summaryFromFile: fromFile,
    evaluation: readEvaluation(dir),
  };
}

/** The headline test metrics of a run's evaluation (mean over test cases), or null where it has none. */
export function headlineTestMetrics(run: RunFolder): { maeGy: number | null; maeSdGy: number | null; gammaPct: number | null; gammaSdPct: number | null; n: number } {
  const summary = run.evaluation?.summary ?? {};
  const cases = run.evaluation?.cases ?? [];
  const stat = (key: string) => {
    if (summary[key]) return summary[key];
    // Where summary.json is absent, the mean over the per-case files.
    const values = cases.map((c) => c.metrics[key]).filter((v): v is number => Number.isFinite(v));
    if (values.length === 0) return null;
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const sd = values.length > 1 ? Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1)) : Number.NaN;
    return { mean, sd, n: values.length };
  };
  const mae = stat(TEST_MAE_KEY);
  const gamma = stat(GAMMA_KEY);
  const sdOf = (stat: { sd: number; n: number } | null) => (stat && stat.n > 1 && Number.isFinite(stat.sd) ? stat.sd : null);
  return { maeGy: mae?.mean ?? null, maeSdGy: sdOf(mae), gammaPct: gamma?.mean ?? null, gammaSdPct: sdOf(gamma), n: mae?.n ?? 0 };
}

/** The evaluation metrics the comparison headlines: MAE over the body, and the 3%/3 mm gamma pass rate. */
export const TEST_MAE_KEY = 'mae_gy.body';
export const GAMMA_KEY = 'gamma.3%/3mm.pass_rate_pct';


/**
 * The reference case file (from test_cases.json, relative to the run's data folder) and the prediction
 * (`RUN/evaluation/predictions/<case>_pred.npz`) of an evaluated case; null where the file is not there.
 */
export function caseVolumePaths(run: RunFolder, caseId: string): { reference: string | null; prediction: string | null } {
  const dataDir = typeof run.config.dataDir === 'string' ? run.config.dataDir : '.';
  const index = run.testCases?.testCases.indexOf(caseId) ?? -1;
  const named = index >= 0 ? run.testCases?.testFiles[index] : undefined;
  const candidates = [named, `${caseFileStem(caseId)}.npz`].filter((file): file is string => typeof file === 'string');
  const reference = candidates.map((file) => (isAbsolute(file) ? file : resolve(dataDir, file))).find((path) => existsSync(path)) ?? null;
  const prediction = evaluationPaths(runPaths(run.dir).evaluation).predictionFile(caseId);
  return { reference, prediction: existsSync(prediction) ? prediction : null };
}
