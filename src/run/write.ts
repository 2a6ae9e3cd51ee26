/**
 * Typed writers of the run-folder files, each file written whole through src/io/atomic.ts (a reader or a killed
 * process sees the old file or the new one). The one exception is log.jsonl, which is appended line by line: a
 * whole-file rewrite per event would be quadratic, and an append cannot lose the lines before it (readLog leaves out
 * an incomplete last line).
 *
 * The writers replace what is there: whether a user's file may be replaced (`--overwrite`) is decided by the caller
 * before anything is written.
 */
import { realpathSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';

import { flattenEvaluation } from '../eval/evaluate.js';
import { invalidInput } from '../errors.js';
import { removeStaleTemporaries, writeFileAtomic } from '../io/atomic.js';
import type { TrainEvent } from '../train/events.js';
import type {
  CaseEvaluationFile,
  EnvironmentFile,
  EvaluationSummaryFile,
  LoggedTrainEvent,
  InputsFile,
  MetricsRow,
  SplitFile,
  TestCasesFile,
  TrainingConfigFile,
  TrainingSummaryFile,
} from './files.js';
import { evaluationPaths, LOSS_TERM_COLUMNS, METRICS_COLUMNS, RUN_FILES, runPaths, TENSORBOARD_FILE_PREFIX } from './layout.js';

/** JSON as the run files hold it (NaN and ±Infinity have no JSON spelling: JSON.stringify writes them as null). */
export const runJson = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

const replace = (path: string, text: string) => writeFileAtomic(path, text, { overwrite: true });

/** The folder and its checkpoints/ folder. */
export async function createRunFolder(runDir: string): Promise<void> {
  await mkdir(runPaths(runDir).checkpoints, { recursive: true });
}

const real = (path: string) => {
  try {
    return realpathSync.native(path);
  } catch {
    return resolve(path);
  }
};
const inside = (path: string, folder: string) => path === folder || path.startsWith(folder.endsWith(sep) ? folder : folder + sep);

/**
 * Removes what vmat-native writes into a run folder (the entries of RUN_FILES) and nothing else: a user's files
 * beside them stay. When an entry to be removed holds one of `keep` (the data folder being trained on), nothing is
 * removed and the error names both.
 */
export async function removeRunFiles(runDir: string, keep: readonly string[] = []): Promise<void> {
  const entries = Object.values(RUN_FILES).map((name) => join(runDir, name));
  for (const kept of keep.map(real)) {
    const holder = entries.find((entry) => inside(kept, real(entry)));
    if (holder) {
      throw invalidInput(
        `${runDir} cannot be overwritten: its ${relative(runDir, holder)} holds ${kept}, an input of this run, which overwrite would delete; move it out or choose another expName`,
        { settings: ['overwrite', 'expName'] },
      );
    }
  }
  for (const entry of entries) await rm(entry, { recursive: true, force: true });
  for (const name of await readdir(runDir)) if (name.startsWith(TENSORBOARD_FILE_PREFIX)) await rm(join(runDir, name), { force: true });
  await removeStaleTemporaries(runDir);
}

export const writeTrainingConfig = (runDir: string, file: TrainingConfigFile) => replace(runPaths(runDir).trainingConfig, runJson(file));
export const writeSplit = (runDir: string, file: SplitFile) => replace(runPaths(runDir).split, runJson(file));
export const writeTestCases = (runDir: string, file: TestCasesFile) => replace(runPaths(runDir).testCases, runJson(file));
export const writeEnvironment = (runDir: string, file: EnvironmentFile) => replace(runPaths(runDir).environment, runJson(file));
export const writeInputs = (runDir: string, file: InputsFile) => replace(runPaths(runDir).inputs, runJson(file));
export const writeTrainingSummary = (runDir: string, file: TrainingSummaryFile) => replace(runPaths(runDir).summary, runJson(file));

/** One metrics.csv line of these columns: numbers as JavaScript prints them, NaN (or a column the row lacks) as an empty cell. */
function metricsLine(row: MetricsRow, columns: readonly string[]): string {
  const values = row as Record<string, number | undefined>;
  return columns.map((column) => (values[column] === undefined || Number.isNaN(values[column]) ? '' : String(values[column]))).join(',');
}

/** metrics.csv with these rows (none: the header only), of METRICS_COLUMNS or the given columns (metricsColumns). */
export async function writeMetrics(runDir: string, rows: MetricsRow[], columns: readonly string[] = METRICS_COLUMNS): Promise<void> {
  await replace(runPaths(runDir).metrics, [columns.join(','), ...rows.map((row) => metricsLine(row, columns))].map((line) => `${line}\n`).join(''));
}

/**
 * Adds one epoch's row to metrics.csv in the columns of its header (the rows before it are kept as they are). A row
 * with a loss-term column the header lacks (a run resumed with another term on) adds the column, empty before.
 */
export async function appendMetricsRow(runDir: string, row: MetricsRow): Promise<void> {
  const path = runPaths(runDir).metrics;
  const text = await readFile(path, 'utf8');
  const lines = text.split('\n').filter((line) => line.length > 0);
  const header = (lines[0] ?? METRICS_COLUMNS.join(',')).split(',');
  const added = (Object.keys(LOSS_TERM_COLUMNS) as (keyof typeof LOSS_TERM_COLUMNS)[]).filter((column) => row[column] !== undefined && !header.includes(column));
  if (added.length === 0) {
    await replace(path, `${text}${metricsLine(row, header)}\n`);
    return;
  }
  const at = header.indexOf('train_neg') + 1 || header.length;
  const columns = [...header.slice(0, at), ...added, ...header.slice(at)];
  const old = lines.slice(1).map((line) => {
    const cells = line.split(',');
    return columns.map((column) => (header.includes(column) ? cells[header.indexOf(column)] ?? '' : '')).join(',');
  });
  await replace(path, [columns.join(','), ...old, metricsLine(row, columns)].map((line) => `${line}\n`).join(''));
}

/** Drops the rows of epochs >= `firstEpoch` (on resume they are computed again). */
export async function truncateMetrics(runDir: string, firstEpoch: number): Promise<void> {
  const path = runPaths(runDir).metrics;
  const lines = (await readFile(path, 'utf8')).split('\n').filter((line) => line.length > 0);
  const kept = [lines[0], ...lines.slice(1).filter((line) => Number(line.split(',')[0]) < firstEpoch)];
  await replace(path, `${kept.join('\n')}\n`);
}

/**
 * Appends one event to log.jsonl, stamped with the time it was written (`time`, ISO 8601 UTC, first on the line).
 * Logs written before the stamp existed have none; readers treat it as optional.
 */
export async function appendLogEvent(runDir: string, event: TrainEvent, now: Date = new Date()): Promise<void> {
  const line: LoggedTrainEvent = { time: now.toISOString(), ...event };
  await appendFile(runPaths(runDir).log, `${JSON.stringify(line)}\n`);
}

function csvCell(value: unknown): string {
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  const text = String(value ?? '');
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** cases.csv: one row per case, one column per metric (the flat keys of summary.json). */
export function casesCsv(evaluations: CaseEvaluationFile[]): string {
  const flat = evaluations.map(flattenEvaluation);
  const columns: string[] = [];
  for (const row of flat) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  const lines = [['case_id', ...columns].map(csvCell).join(',')];
  flat.forEach((row, i) => lines.push([evaluations[i]!.case_id, ...columns.map((key) => row[key])].map(csvCell).join(',')));
  return `${lines.join('\n')}\n`;
}

/** evaluation/<case>.json */
export async function writeCaseEvaluation(evaluationDir: string, evaluation: CaseEvaluationFile): Promise<void> {
  await mkdir(evaluationDir, { recursive: true });
  await replace(evaluationPaths(evaluationDir).caseFile(evaluation.case_id), runJson(evaluation));
}

/** evaluation/cases.csv */
export async function writeCasesCsv(evaluationDir: string, evaluations: CaseEvaluationFile[]): Promise<void> {
  await mkdir(evaluationDir, { recursive: true });
  await replace(evaluationPaths(evaluationDir).cases, casesCsv(evaluations));
}

/** evaluation/summary.json */
export async function writeEvaluationSummary(evaluationDir: string, file: EvaluationSummaryFile): Promise<void> {
  await mkdir(evaluationDir, { recursive: true });
  await replace(evaluationPaths(evaluationDir).summary, runJson(file));
}
