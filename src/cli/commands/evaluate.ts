import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

import type { Command } from 'commander';

import { readFile } from 'node:fs/promises';

import { loadCase, type CaseData } from '../../data/case.js';
import { invalidInput } from '../../errors.js';
import { evaluateCase, flattenEvaluation, summariseEvaluations, type CaseEvaluation } from '../../eval/evaluate.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { predictFiles } from '../../predict/predict.js';
import { deviceOption } from '../options.js';
import { note } from '../output.js';

export interface EvaluateFlags {
  pred?: string;
  ref?: string;
  out?: string;
  device: string;
  threads?: string;
  overwrite?: boolean;
  json?: boolean;
}

function caseFiles(path: string, role: string): string[] {
  if (!existsSync(path)) throw invalidInput(`the ${role} ${path} does not exist: expected a case file (.npz) or a folder of them`);
  if (statSync(path).isDirectory()) {
    const files = readdirSync(path)
      .filter((name) => name.toLowerCase().endsWith('.npz') && !name.startsWith('.'))
      .sort()
      .map((name) => join(path, name));
    if (files.length === 0) throw invalidInput(`the ${role} folder ${path} holds no case files (*.npz)`);
    return files;
  }
  return [path];
}

/** `<case>_pred.npz` and `<case>.npz` both name case `<case>`. */
function stemOf(file: string): string {
  return basename(file).replace(/\.npz$/i, '').replace(/_pred$/, '');
}

export interface CasePair {
  caseId: string;
  predFile: string;
  refFile: string;
}

/**
 * Pairs prediction files with reference files by case id: the file name (`<case>_pred.npz` ↔ `<case>.npz`), else
 * the case_id in the files' metadata. Every prediction must find its reference.
 */
export async function pairCases(predPath: string, refPath: string): Promise<{ pairs: CasePair[]; unpredicted: string[] }> {
  const predFiles = caseFiles(predPath, 'predictions');
  const refFiles = caseFiles(refPath, 'references').filter((file) => !predFiles.includes(file));
  const refByStem = new Map(refFiles.map((file) => [stemOf(file), file]));
  let refById: Map<string, string> | undefined;
  const pairs: CasePair[] = [];
  for (const predFile of predFiles) {
    let refFile = refByStem.get(stemOf(predFile));
    let caseId = stemOf(predFile);
    if (!refFile) {
      caseId = (await loadCase(predFile)).caseId;
      refFile = refByStem.get(caseId);
      if (!refFile) {
        refById ??= new Map(await Promise.all(refFiles.map(async (file) => [(await loadCase(file)).caseId, file] as [string, string])));
        refFile = refById.get(caseId);
      }
    }
    if (!refFile && refFiles.length === 1 && predFiles.length === 1) {
      const refId = (await loadCase(refFiles[0]!)).caseId;
      throw invalidInput(`the prediction ${predFile} is case '${caseId}' but the reference ${refFiles[0]} is case '${refId}': expected the same case`);
    }
    if (!refFile) throw invalidInput(`no reference case for the prediction ${predFile} (case '${caseId}') in ${refPath}`);
    if (pairs.some((pair) => pair.refFile === refFile)) throw invalidInput(`two predictions pair with the reference ${refFile}: expected one prediction per case`);
    pairs.push({ caseId, predFile, refFile });
  }
  const paired = new Set(pairs.map((pair) => pair.refFile));
  return { pairs, unpredicted: refFiles.filter((file) => !paired.has(file)) };
}

function csvCell(value: unknown): string {
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  const text = String(value ?? '');
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** cases.csv: one row per case, one column per metric (the flat keys of summary.json). */
export function casesCsv(evaluations: CaseEvaluation[]): string {
  const flat = evaluations.map(flattenEvaluation);
  const columns: string[] = [];
  for (const row of flat) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  const lines = [['case_id', ...columns].map(csvCell).join(',')];
  flat.forEach((row, i) => lines.push([evaluations[i]!.case_id, ...columns.map((key) => row[key])].map(csvCell).join(',')));
  return `${lines.join('\n')}\n`;
}

/** NaN has no JSON spelling: it is written as null. */
function toJson(value: unknown): string {
  return `${JSON.stringify(value, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`;
}

const writeAtomically = (path: string, text: string) => writeFileAtomic(path, text, { overwrite: true });

/** What `--json` prints for a case: everything but the DVH curves (they are in `<case>.json`). */
function caseSummary(evaluation: CaseEvaluation): Omit<CaseEvaluation, 'dvh_curves'> {
  const { dvh_curves: _curves, ...rest } = evaluation;
  return rest;
}

/** Evaluates the predictions at predPath against refPath into outDir; prints the report; returns the evaluations. */
async function evaluateInto(
  predPath: string,
  refPath: string,
  outDir: string,
  flags: EvaluateFlags,
  threads: number | undefined,
  { reportUnpredicted = true } = {},
): Promise<void> {
  const { pairs, unpredicted } = await pairCases(predPath, refPath);
  const outputs = [...pairs.map((pair) => join(outDir, `${pair.caseId}.json`)), join(outDir, 'cases.csv'), join(outDir, 'summary.json')];
  const existing = outputs.filter((file) => existsSync(file));
  if (existing.length > 0 && !flags.overwrite) {
    throw invalidInput(`${existing[0]} already exists${existing.length > 1 ? ` (and ${existing.length - 1} more)` : ''}: choose another --out or pass --overwrite`);
  }
  if (reportUnpredicted && unpredicted.length > 0) note(`${unpredicted.length} reference case(s) have no prediction and are left out`);

  // Everything is computed before anything is written, so that a bad pair leaves no half-written folder.
  const evaluations: CaseEvaluation[] = [];
  for (const [index, pair] of pairs.entries()) {
    const [pred, ref]: CaseData[] = await Promise.all([loadCase(pair.predFile), loadCase(pair.refFile)]);
    const evaluation = await evaluateCase(pred, ref, { threads, device: flags.device });
    evaluation.case_id = pair.caseId;
    evaluations.push(evaluation);
    const g = evaluation.gamma['3%/3mm'];
    note(`[${index + 1}/${pairs.length}] ${pair.caseId}: MAE body ${evaluation.mae_gy['body']!.toFixed(3)} Gy, gamma 3%/3mm ${g.pass_rate_pct.toFixed(2)} %`);
  }
  const summary = summariseEvaluations(evaluations);

  await mkdir(outDir, { recursive: true });
  for (const evaluation of evaluations) await writeAtomically(join(outDir, `${evaluation.case_id}.json`), toJson(evaluation));
  await writeAtomically(join(outDir, 'cases.csv'), casesCsv(evaluations));
  await writeAtomically(join(outDir, 'summary.json'), toJson({ n_cases: evaluations.length, metrics: summary }));

  if (flags.json) {
    process.stdout.write(toJson({ cases: evaluations.map(caseSummary), summary, out: outDir }));
    return;
  }
  const mean = (key: string) => summary[key]?.mean ?? NaN;
  const sd = (key: string) => summary[key]?.sd ?? NaN;
  const pm = (key: string, digits: number) => `${mean(key).toFixed(digits)}${evaluations.length > 1 ? ` ± ${sd(key).toFixed(digits)}` : ''}`;
  const lines = [
    `cases            ${evaluations.length}`,
    `MAE body         ${pm('mae_gy.body', 3)} Gy`,
    `gamma 3%/3mm     ${pm('gamma.3%/3mm.pass_rate_pct', 2)} %`,
    `gamma 2%/2mm     ${pm('gamma.2%/2mm.pass_rate_pct', 2)} %`,
    `gamma 3%/3mm PTV ${pm('gamma.3%/3mm_ptv.pass_rate_pct', 2)} %`,
    `written to       ${outDir}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw invalidInput(`cannot read ${what} ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** `evaluate RUN`: predicts the run's test cases with its best checkpoint, then evaluates them into RUN/evaluation. */
export async function evaluateRun(run: string, flags: EvaluateFlags, threads: number | undefined): Promise<void> {
  const configPath = join(run, 'training_config.json');
  const testPath = join(run, 'test_cases.json');
  if (!existsSync(configPath) || !existsSync(testPath)) {
    throw invalidInput(`${run} is not a run folder: expected training_config.json and test_cases.json in it (from vmat-native train)`);
  }
  const config = await readJson(configPath, 'the run config');
  const dataDir = typeof config['dataDir'] === 'string' ? config['dataDir'] : undefined;
  if (!dataDir || !existsSync(dataDir)) throw invalidInput(`the run's data folder ${dataDir ?? '(none in training_config.json)'} does not exist`);
  const testFiles = (await readJson(testPath, 'the test split'))['test_files'];
  if (!Array.isArray(testFiles) || testFiles.length === 0) throw invalidInput(`${run} has no test cases (test_cases.json lists none): nothing to evaluate`);
  const summaryPath = join(run, 'training_summary.json');
  let checkpoint = existsSync(summaryPath) ? (await readJson(summaryPath, 'the training summary'))['bestCheckpoint'] : undefined;
  if (typeof checkpoint !== 'string' || !existsSync(checkpoint)) {
    const folder = join(run, 'checkpoints');
    // Without the summary (a run stopped before writing it), the lowest validation MAE in the file names decides.
    const maeOf = (name: string) => Number(/val_mae_gy=([0-9.]+)\.safetensors$/.exec(name)?.[1] ?? Infinity);
    const best = existsSync(folder)
      ? readdirSync(folder)
          .filter((name) => name.startsWith('best') && name.endsWith('.safetensors') && !name.endsWith('.state.safetensors'))
          .sort((a, b) => maeOf(a) - maeOf(b))
      : [];
    if (best.length === 0) throw invalidInput(`${run} has no best checkpoint (checkpoints/best*.safetensors): train it first`);
    checkpoint = join(folder, best[0]!);
  }
  const outDir = resolve(flags.out ?? join(run, 'evaluation'));
  const predDir = join(outDir, 'predictions');
  const inputs = (testFiles as string[]).map((name) => join(dataDir, name));
  note(`predicting ${inputs.length} test case(s) with ${checkpoint}`);
  await predictFiles(checkpoint as string, inputs, predDir, {
    // The run's own window: a model trained on small patches predicts differently through a much larger one.
    patchSize: typeof (config['settings'] as Record<string, unknown> | undefined)?.['patchSize'] === 'number' ? ((config['settings'] as Record<string, unknown>)['patchSize'] as number) : undefined,
    overwrite: flags.overwrite,
    device: flags.device,
    threads,
    onCase: (event) => note(`[${event.index}/${event.of}] predicted ${event.case} in ${event.seconds.toFixed(1)} s`),
  });
  // The data folder also holds the training and validation cases, which have no prediction here by design.
  await evaluateInto(predDir, dataDir, outDir, flags, threads, { reportUnpredicted: false });
}

export function register(program: Command): void {
  program
    .command('evaluate')
    .description('evaluate predicted doses against reference plans (MAE/RMSE, DVH metrics and curves, constraints, gamma); with RUN, predict its test cases first')
    .argument('[run]', "a run folder: predict its test cases with its best checkpoint, then evaluate into RUN/evaluation")
    .option('--pred <path>', 'a prediction case file (<case>_pred.npz) or a folder of them')
    .option('--ref <path>', 'the reference case file or a folder of case files (cases pair by case id)')
    .option('--out <dir>', 'output folder (default: evaluation/ next to the predictions, or RUN/evaluation)')
    .addOption(deviceOption('where gamma (and prediction) run'))
    .option('--threads <n>', 'CPU threads (default: all cores)')
    .option('--overwrite', 'replace existing evaluation files')
    .option('--json', 'print one JSON document')
    .action(async (run: string | undefined, flags: EvaluateFlags) => {
      const threads = flags.threads === undefined ? undefined : Number(flags.threads);
      if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw invalidInput(`--threads must be a whole number >= 1, got '${flags.threads}'`);
      if (run !== undefined) {
        if (flags.pred || flags.ref) throw invalidInput('give either RUN or --pred and --ref, not both');
        await evaluateRun(run, flags, threads);
        return;
      }
      if (!flags.pred || !flags.ref) throw invalidInput('evaluate needs --pred and --ref (case files or folders), or a run folder');
      const predIsFolder = existsSync(flags.pred) && statSync(flags.pred).isDirectory();
      const outDir = resolve(flags.out ?? (predIsFolder ? join(flags.pred, 'evaluation') : join(dirname(flags.pred), 'evaluation')));
      await evaluateInto(flags.pred, flags.ref, outDir, flags, threads);
    });
}
