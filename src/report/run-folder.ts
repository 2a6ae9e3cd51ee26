/**
 * Reads a run folder (spec/training.md) and its evaluation (`RUN/evaluation/`) into one object for the figures,
 * the report and the comparison table. Everything shown to the user is computed from these files.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';

import { invalidInput } from '../errors.js';
import { METRICS_COLUMNS } from '../train/trainer.js';

/** The columns of metrics.csv, in the order training.md lists them (the trainer writes them). */
export const METRIC_COLUMNS = METRICS_COLUMNS;
export type MetricColumn = (typeof METRIC_COLUMNS)[number];
export type EpochRow = Record<MetricColumn, number>;

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
  limit: number | null;
  unit: string;
  reference: number | null;
  prediction: number | null;
  referencePass: boolean | null;
  predictionPass: boolean | null;
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
  casesTable: { header: string[]; rows: string[][] } | null;
  /** evaluation/summary.json: mean and sd over cases of every metric. */
  summary: Record<string, { mean: number; sd: number }>;
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
  config: Record<string, unknown>;
  environment: Record<string, unknown> | null;
  split: { train: string[]; val: string[]; test: string[] } | null;
  testCases: { testCases: string[]; testFiles: string[]; seed: number | null } | null;
  metrics: EpochRow[];
  /** From training_summary.json; where the run has none yet (still training), derived from metrics.csv. */
  summary: RunSummary;
  summaryFromFile: boolean;
  evaluation: RunEvaluation | null;
}

function readJson(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw invalidInput(`${what} is missing: expected the file ${path}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalidInput(`${path} is not valid JSON (${(error as Error).message})`);
  }
}

function asObject(value: unknown, path: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidInput(`${path} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** The first of several spellings (snake_case as written by Python-era tools, camelCase by fit()) that is present. */
function pick(object: Record<string, unknown>, ...names: string[]): unknown {
  for (const name of names) if (object[name] !== undefined) return object[name];
  return undefined;
}

function finiteOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function stringList(value: unknown, path: string, key: string): string[] {
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
    throw invalidInput(`${path}: '${key}' must be a list of case ids`);
  }
  return value as string[];
}

/** Splits one CSV line; the files we read have no quoted commas except in quoted cells, which this handles. */
export function parseCsvLine(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (quoted) {
      if (char === '"' && line[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (char === '"') quoted = false;
      else cell += char;
    } else if (char === '"') quoted = true;
    else if (char === ',') {
      cells.push(cell);
      cell = '';
    } else cell += char;
  }
  cells.push(cell);
  return cells;
}

function readCsv(path: string): { header: string[]; rows: string[][] } {
  const lines = readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .filter((line) => line.trim() !== '');
  if (lines.length === 0) throw invalidInput(`${path} is empty: expected a header line`);
  return { header: parseCsvLine(lines[0]).map((h) => h.trim()), rows: lines.slice(1).map(parseCsvLine) };
}

export function readMetricsCsv(path: string): EpochRow[] {
  if (!existsSync(path)) throw invalidInput(`metrics.csv is missing: expected the file ${path}`);
  const { header, rows } = readCsv(path);
  const missing = METRIC_COLUMNS.filter((column) => !header.includes(column));
  if (missing.length > 0) {
    throw invalidInput(`${path} lacks the column(s) ${missing.join(', ')}; expected ${METRIC_COLUMNS.join(',')}`);
  }
  return rows.map((cells, rowIndex) => {
    const row = {} as EpochRow;
    for (const column of METRIC_COLUMNS) {
      const text = cells[header.indexOf(column)];
      const value = text === undefined || text.trim() === '' ? Number.NaN : Number(text);
      if (Number.isNaN(value) && text !== undefined && text.trim().toLowerCase() !== 'nan' && text.trim() !== '') {
        throw invalidInput(`${path} line ${rowIndex + 2}: ${column} is '${text}', expected a number`);
      }
      row[column] = value;
    }
    return row;
  });
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

function readSummary(path: string, metrics: EpochRow[]): { summary: RunSummary; fromFile: boolean } {
  if (!existsSync(path)) return { summary: summaryFromMetrics(metrics), fromFile: false };
  const object = asObject(readJson(path, 'training_summary.json'), path);
  const derived = summaryFromMetrics(metrics);
  const number = (value: unknown, fallback: number) => finiteOrNull(value) ?? fallback;
  return {
    fromFile: true,
    summary: {
      bestEpoch: number(pick(object, 'bestEpoch', 'best_epoch'), derived.bestEpoch),
      bestValMaeGy: number(pick(object, 'bestValMaeGy', 'best_val_mae_gy'), derived.bestValMaeGy),
      epochsRun: number(pick(object, 'epochsRun', 'epochs_run'), derived.epochsRun),
      stopReason: String(pick(object, 'stopReason', 'stop_reason') ?? derived.stopReason),
      seconds: number(pick(object, 'seconds', 'time_seconds', 'training_seconds', 'elapsed_seconds'), derived.seconds),
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

function numberList(value: unknown, where: string): number[] {
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'number')) {
    throw invalidInput(`${where} must be a list of numbers`);
  }
  return value as number[];
}

/** Every number of a nested object as flat "a.b.c" keys (as in cases.csv and summary.json). */
function flattenNumbers(value: unknown, prefix: string, into: Record<string, number>): Record<string, number> {
  if (typeof value === 'number') into[prefix] = value;
  else if (value === null && prefix) into[prefix] = Number.NaN; // NaN is written as null
  else if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, item] of Object.entries(value)) flattenNumbers(item, prefix ? `${prefix}.${key}` : key, into);
  }
  return into;
}

/** At most this many points per DVH curve in the figures (the files hold 0.1 Gy bins). */
const DVH_FIGURE_POINTS = 400;

/**
 * Reads one `evaluation/<case>.json` as `vmat-native evaluate` writes it: {case_id, mae_gy: {body, all, <PTV>…},
 * rmse_gy, gamma: {"3%/3mm": {pass_rate_pct, …}, …}, dvh: {ref: {<structure>: {Dmean, …}}, pred: {…}},
 * dvh_curves: {<structure>: {bin_gy, ref: [fraction], pred: [fraction]}}, constraints: [{name, unit, limit, ref,
 * pred, refPass, predPass}]}.
 */
export function readCaseEvaluation(path: string): CaseEvaluation {
  const object = asObject(readJson(path, 'a case evaluation'), path);
  const caseId = object.case_id;
  if (typeof caseId !== 'string') throw invalidInput(`${path} has no 'case_id' string`);
  const metrics: Record<string, number> = {};
  for (const key of ['mae_gy', 'rmse_gy', 'gamma']) flattenNumbers(object[key], key, metrics);

  const dvhObject = object.dvh === undefined ? { ref: {}, pred: {} } : asObject(object.dvh, `${path} 'dvh'`);
  const refMetrics = asObject(dvhObject.ref ?? {}, `${path} dvh.ref`);
  const predMetrics = asObject(dvhObject.pred ?? {}, `${path} dvh.pred`);
  const curves = object.dvh_curves === undefined ? {} : asObject(object.dvh_curves, `${path} 'dvh_curves'`);
  const structures = [...new Set([...Object.keys(refMetrics), ...Object.keys(curves)])];
  const dvh: StructureDvh[] = structures.map((structure) => {
    let curve: DvhCurve | null = null;
    if (curves[structure] !== undefined) {
      const where = `${path} dvh_curves.${structure}`;
      const item = asObject(curves[structure], where);
      const bin = finiteOrNull(item.bin_gy);
      const ref = numberList(item.ref, `${where}.ref`);
      const pred = numberList(item.pred, `${where}.pred`);
      if (bin === null || !(bin > 0)) throw invalidInput(`${where}.bin_gy must be a positive number of Gy`);
      const length = Math.max(ref.length, pred.length);
      const step = Math.max(1, Math.ceil(length / DVH_FIGURE_POINTS));
      curve = { doseGy: [], referenceVolumePct: [], predictionVolumePct: [] };
      // Past its last bin a cumulative DVH is 0.
      for (let i = 0; i < length; i += step) {
        curve.doseGy.push(i * bin);
        curve.referenceVolumePct.push(100 * (ref[i] ?? 0));
        curve.predictionVolumePct.push(100 * (pred[i] ?? 0));
      }
    }
    return { structure, reference: numberRecord(refMetrics[structure]), prediction: numberRecord(predMetrics[structure]), curve };
  });

  const constraintList = object.constraints ?? [];
  if (!Array.isArray(constraintList)) throw invalidInput(`${path}: 'constraints' must be a list`);
  const constraints: ConstraintRow[] = constraintList.map((entry, index) => {
    const item = asObject(entry, `${path} constraints[${index}]`);
    const bool = (value: unknown) => (typeof value === 'boolean' ? value : null);
    return {
      name: String(item.name ?? `constraint ${index + 1}`),
      limit: finiteOrNull(item.limit),
      unit: typeof item.unit === 'string' ? item.unit : '',
      reference: finiteOrNull(item.ref),
      prediction: finiteOrNull(item.pred),
      referencePass: bool(item.refPass),
      predictionPass: bool(item.predPass),
    };
  });
  return { caseId, metrics, dvh, constraints };
}

function readEvaluation(runDir: string): RunEvaluation | null {
  const dir = join(runDir, 'evaluation');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return null;
  const caseFiles = readdirSync(dir)
    .filter((name) => name.endsWith('.json') && name !== 'summary.json')
    .sort();
  const cases = caseFiles.map((name) => readCaseEvaluation(join(dir, name)));
  const casesCsv = join(dir, 'cases.csv');
  const summaryPath = join(dir, 'summary.json');
  const summary: RunEvaluation['summary'] = {};
  if (existsSync(summaryPath)) {
    const object = asObject(readJson(summaryPath, 'evaluation/summary.json'), summaryPath);
    const metrics = asObject(object.metrics ?? object, summaryPath);
    for (const [key, value] of Object.entries(metrics)) {
      if (value && typeof value === 'object') {
        const mean = finiteOrNull((value as Record<string, unknown>).mean);
        const sd = finiteOrNull(pick(value as Record<string, unknown>, 'sd', 'std'));
        if (mean !== null) summary[key] = { mean, sd: sd ?? Number.NaN };
      }
    }
  }
  return { cases, casesTable: existsSync(casesCsv) ? readCsv(casesCsv) : null, summary };
}

/** Reads a run folder; a folder that is not one is a user error naming what is missing. */
export function readRunFolder(path: string): RunFolder {
  const dir = resolve(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw invalidInput(`run folder ${path} does not exist: expected a folder written by 'vmat-native train'`);
  }
  const written = asObject(readJson(join(dir, 'training_config.json'), `training_config.json of ${path}`), join(dir, 'training_config.json'));
  // fit() writes the settings under "settings" beside what it derived (split sizes, parameter count, device).
  const { settings, ...derived } = written;
  const config = settings && typeof settings === 'object' && !Array.isArray(settings) ? { ...(settings as Record<string, unknown>), ...derived } : written;
  const metrics = readMetricsCsv(join(dir, 'metrics.csv'));
  const { summary, fromFile } = readSummary(join(dir, 'training_summary.json'), metrics);
  const environmentPath = join(dir, 'environment.json');
  const environment = existsSync(environmentPath) ? asObject(readJson(environmentPath, 'environment.json'), environmentPath) : null;
  const splitPath = join(dir, 'split.json');
  let split: RunFolder['split'] = null;
  if (existsSync(splitPath)) {
    const object = asObject(readJson(splitPath, 'split.json'), splitPath);
    split = {
      train: stringList(object.train, splitPath, 'train'),
      val: stringList(object.val, splitPath, 'val'),
      test: stringList(object.test, splitPath, 'test'),
    };
  }
  const testPath = join(dir, 'test_cases.json');
  let testCases: RunFolder['testCases'] = null;
  if (existsSync(testPath)) {
    const object = asObject(readJson(testPath, 'test_cases.json'), testPath);
    testCases = {
      testCases: stringList(pick(object, 'test_cases', 'testCases'), testPath, 'test_cases'),
      testFiles: stringList(pick(object, 'test_files', 'testFiles') ?? [], testPath, 'test_files'),
      seed: finiteOrNull(object.seed),
    };
  }
  const name = typeof pick(config, 'expName', 'exp_name') === 'string' ? String(pick(config, 'expName', 'exp_name')) : basename(dir);
  return { dir, name, config, environment, split, testCases, metrics, summary, summaryFromFile: fromFile, evaluation: readEvaluation(dir) };
}

/** The headline test metrics of a run's evaluation (mean over test cases), or null where it has none. */
export function headlineTestMetrics(run: RunFolder): { maeGy: number | null; maeSdGy: number | null; gammaPct: number | null; gammaSdPct: number | null } {
  const summary = run.evaluation?.summary ?? {};
  const cases = run.evaluation?.cases ?? [];
  const stat = (key: string) => {
    if (summary[key]) return summary[key];
    // Where summary.json is absent, the mean over the per-case files.
    const values = cases.map((c) => c.metrics[key]).filter((v): v is number => Number.isFinite(v));
    if (values.length === 0) return null;
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const sd = values.length > 1 ? Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1)) : 0;
    return { mean, sd };
  };
  const mae = stat(TEST_MAE_KEY);
  const gamma = stat(GAMMA_KEY);
  return { maeGy: mae?.mean ?? null, maeSdGy: mae?.sd ?? null, gammaPct: gamma?.mean ?? null, gammaSdPct: gamma?.sd ?? null };
}

/** The evaluation metrics the comparison headlines: MAE over the body, and the 3%/3 mm gamma pass rate. */
export const TEST_MAE_KEY = 'mae_gy.body';
export const GAMMA_KEY = 'gamma.3%/3mm.pass_rate_pct';

/** Where `evaluate RUN` writes the test cases' predictions. */
export const PREDICTIONS_DIR = join('evaluation', 'predictions');

/**
 * The reference case file (from test_cases.json, relative to the run's data folder) and the prediction
 * (`RUN/evaluation/predictions/<case>_pred.npz`) of an evaluated case; null where the file is not there.
 */
export function caseVolumePaths(run: RunFolder, caseId: string): { reference: string | null; prediction: string | null } {
  const dataDir = typeof run.config.dataDir === 'string' ? run.config.dataDir : '.';
  const index = run.testCases?.testCases.indexOf(caseId) ?? -1;
  const named = index >= 0 ? run.testCases?.testFiles[index] : undefined;
  const candidates = [named, `${caseId}.npz`].filter((file): file is string => typeof file === 'string');
  const reference = candidates.map((file) => (isAbsolute(file) ? file : resolve(dataDir, file))).find((path) => existsSync(path)) ?? null;
  const prediction = join(run.dir, PREDICTIONS_DIR, `${caseId}_pred.npz`);
  return { reference, prediction: existsSync(prediction) ? prediction : null };
}
