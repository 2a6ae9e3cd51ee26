/**
 * Typed readers of the run-folder files. A required file that is missing, or a file that does not hold what its
 * writer writes, is one sentence naming the file, the entry and what was expected. Optional files read as null.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import type { z } from 'zod';

import { parseTrainConfig } from '../config/schema.js';
import { parseSiteProfile } from '../sites/profile.js';
import { invalidInput, VmatError } from '../errors.js';
import {
  caseEvaluationFileSchema,
  environmentFileSchema,
  evaluationSummaryFileSchema,
  inputsFileSchema,
  splitFileSchema,
  testCasesFileSchema,
  trainingConfigFileSchema,
  trainingSummaryFileSchema,
  type CaseEvaluationFile,
  type EnvironmentFile,
  type EvaluationSummaryFile,
  type LoggedTrainEvent,
  type InputsFile,
  type MetricsRow,
  type SplitFile,
  type TestCasesFile,
  type TrainingConfigFile,
  type TrainingSummaryFile,
} from './files.js';
import { CHECKPOINT_FILES, EVALUATION_FILES, evaluationPaths, LOSS_TERM_COLUMNS, METRICS_COLUMNS, runPaths } from './layout.js';

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw invalidInput(`${what} is missing: expected the file ${path}`);
  }
}

function readJson(path: string, what: string): unknown {
  const text = readText(path, what);
  try {
    return JSON.parse(text);
  } catch (error) {
    // JSON.parse quotes the text around the fault: on one line, control characters escaped, at most 120 characters.
    const reason = (error as Error).message.replace(/[\u0000-\u001f\u007f]/g, (c) => (c === '\n' ? '\\n' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
    throw invalidInput(`${path} is not valid JSON (${reason.length > 120 ? `${reason.slice(0, 117)}...` : reason})`);
  }
}

/** Checks `value` against a file's schema; the first problem becomes one sentence. */
function parseFile<T extends z.ZodTypeAny>(schema: T, value: unknown, path: string): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const where = issue.path.length > 0 ? `'${issue.path.join('.')}'` : 'its content';
  throw invalidInput(`${path} is not as vmat-native writes it: ${where}: ${issue.message.charAt(0).toLowerCase()}${issue.message.slice(1)}`);
}

const optional = <T>(path: string, read: () => T): T | null => (existsSync(path) ? read() : null);

/** training_config.json (required); its settings are checked by the schema of `fit()`. */
export function readTrainingConfig(runDir: string): TrainingConfigFile {
  const path = runPaths(runDir).trainingConfig;
  const file = parseFile(trainingConfigFileSchema, readJson(path, `training_config.json of ${runDir}`), path);
  try {
    const { siteProfile, ...rest } = file;
    return { ...rest, ...(siteProfile ? { siteProfile: parseSiteProfile(siteProfile, 'siteProfile') } : {}), settings: parseTrainConfig(file.settings) };
  } catch (error) {
    if (error instanceof VmatError) throw invalidInput(`${path}: ${error.message}`);
    throw error;
  }
}

export function readSplit(runDir: string): SplitFile | null {
  const path = runPaths(runDir).split;
  return optional(path, () => parseFile(splitFileSchema, readJson(path, 'split.json'), path));
}

export function readTestCases(runDir: string): TestCasesFile | null {
  const path = runPaths(runDir).testCases;
  return optional(path, () => parseFile(testCasesFileSchema, readJson(path, 'test_cases.json'), path));
}

export function readEnvironment(runDir: string): EnvironmentFile | null {
  const path = runPaths(runDir).environment;
  return optional(path, () => parseFile(environmentFileSchema, readJson(path, 'environment.json'), path));
}

/** inputs.json (null in runs started before it was written). */
export function readInputs(runDir: string): InputsFile | null {
  const path = runPaths(runDir).inputs;
  return optional(path, () => parseFile(inputsFileSchema, readJson(path, 'inputs.json'), path));
}

export function readTrainingSummary(runDir: string): TrainingSummaryFile | null {
  const path = runPaths(runDir).summary;
  return optional(path, () => parseFile(trainingSummaryFileSchema, readJson(path, 'training_summary.json'), path));
}

/** Splits one CSV line; quoted cells may hold commas and doubled quotes. */
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

export interface CsvTable {
  header: string[];
  rows: string[][];
}

function readCsv(path: string, what: string): CsvTable {
  const lines = readText(path, what)
    .split(/\r?\n/)
    .filter((line) => line.trim() !== '');
  if (lines.length === 0) throw invalidInput(`${path} is empty: expected a header line`);
  return { header: parseCsvLine(lines[0]!).map((h) => h.trim()), rows: lines.slice(1).map(parseCsvLine) };
}

/** metrics.csv (required): one row per epoch, NaN for empty cells. */
export function readMetrics(runDir: string): MetricsRow[] {
  const path = runPaths(runDir).metrics;
  if (!existsSync(path)) throw invalidInput(`metrics.csv is missing: expected the file ${path}`);
  const { header, rows } = readCsv(path, 'metrics.csv');
  const missing = METRICS_COLUMNS.filter((column) => !header.includes(column));
  if (missing.length > 0) {
    throw invalidInput(`${path} lacks the column(s) ${missing.join(', ')}; expected ${METRICS_COLUMNS.join(',')}`);
  }
  return rows.map((cells, rowIndex) => {
    const row = {} as MetricsRow;
    // The loss-term columns are read where the run has them.
    const present = (Object.keys(LOSS_TERM_COLUMNS) as (keyof typeof LOSS_TERM_COLUMNS)[]).filter((column) => header.includes(column));
    for (const column of [...METRICS_COLUMNS, ...present]) {
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

/** log.jsonl: the events in order (an incomplete last line, from a process killed while appending, is left out). */
export function readLog(runDir: string): LoggedTrainEvent[] {
  const path = runPaths(runDir).log;
  const lines = readText(path, 'log.jsonl').split('\n');
  const events: LoggedTrainEvent[] = [];
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    try {
      events.push(JSON.parse(line) as LoggedTrainEvent);
    } catch {
      if (index < lines.length - 1) throw invalidInput(`${path} line ${index + 1} is not a JSON event`);
    }
  });
  return events;
}

export interface BestCheckpointFile {
  path: string;
  epoch: number;
  valMaeGy: number;
}

/** checkpoints/: last (null when absent) and the best ones, lowest validation MAE first (by their names). */
export function listCheckpoints(runDir: string): { last: string | null; best: BestCheckpointFile[] } {
  const paths = runPaths(runDir);
  const names = existsSync(paths.checkpoints) ? readdirSync(paths.checkpoints) : [];
  const best = names
    .map((name) => ({ name, match: CHECKPOINT_FILES.best.exec(name) }))
    .filter((item): item is { name: string; match: RegExpExecArray } => item.match !== null)
    .map(({ name, match }) => ({ path: join(paths.checkpoints, name), epoch: Number(match[1]), valMaeGy: Number(match[2]) }))
    .sort((a, b) => a.valMaeGy - b.valMaeGy);
  return { last: existsSync(paths.lastCheckpoint) ? paths.lastCheckpoint : null, best };
}

/** One evaluation/<case>.json. */
export function readCaseEvaluation(path: string): CaseEvaluationFile {
  return parseFile(caseEvaluationFileSchema, readJson(path, 'a case evaluation'), path);
}

/** The <case>.json files of an evaluation folder, sorted by name. */
export function listCaseEvaluations(evaluationDir: string): string[] {
  if (!existsSync(evaluationDir) || !statSync(evaluationDir).isDirectory()) return [];
  return readdirSync(evaluationDir)
    .filter((name) => name.endsWith('.json') && name !== EVALUATION_FILES.summary)
    .sort()
    .map((name) => join(evaluationDir, name));
}

export function readEvaluationSummary(evaluationDir: string): EvaluationSummaryFile | null {
  const path = evaluationPaths(evaluationDir).summary;
  return optional(path, () => parseFile(evaluationSummaryFileSchema, readJson(path, 'evaluation/summary.json'), path));
}

/** evaluation/cases.csv as written: header and rows of cells. */
export function readCasesCsv(evaluationDir: string): CsvTable | null {
  const path = evaluationPaths(evaluationDir).cases;
  return optional(path, () => readCsv(path, 'evaluation/cases.csv'));
}
