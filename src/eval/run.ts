/**
 * Evaluation of predictions as a library call: `evaluatePredictions` pairs prediction files with reference cases and
 * writes `<case>.json`, `cases.csv` and `summary.json` (through the run-folder module); `evaluateRun` first predicts
 * a run's test cases with its best checkpoint, then evaluates them into RUN/evaluation. Both return the results and
 * report progress through `onProgress`; neither prints.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import { loadCase, type CaseData } from '../data/case.js';
import { invalidInput } from '../errors.js';
import { removeStaleTemporaries } from '../io/atomic.js';
import { predictFiles } from '../predict/predict.js';
import { DEFAULT_SITE, resolveSiteProfile, type SiteProfile } from '../sites/profile.js';
import {
  evaluationPaths,
  listCheckpoints,
  readTestCases,
  readTrainingConfig,
  readTrainingSummary,
  RUN_FILES,
  runPaths,
  writeCaseEvaluation,
  writeCasesCsv,
  writeEvaluationSummary,
} from '../run/index.js';
import { noCaseFilesError } from '../data/foreign.js';
import type { OpenKbpSummary } from '../openkbp/scores.js';
import { evaluateCase, summariseEvaluations, summariseOpenKbpEvaluations, type CaseEvaluation, type MetricSummary } from './evaluate.js';

export type EvaluationProgress =
  /** evaluateRun: prediction of the test cases starts */
  | { type: 'predict'; checkpoint: string; cases: number }
  | { type: 'predicted'; case: string; index: number; of: number; seconds: number }
  /** reference cases without a prediction (left out) */
  | { type: 'unpredicted'; files: string[] }
  | { type: 'evaluated'; case: string; index: number; of: number; maeBodyGy: number; gamma3mmPassPct: number };

export interface EvaluatePredictionsOptions {
  /** "auto" | "cpu" | "cuda" | "cuda:N": gamma (and, for a run, prediction) */
  device?: string;
  threads?: number;
  /** Replace existing evaluation (and prediction) files; without it they are an error naming the first. */
  overwrite?: boolean;
  /** Also the OpenKBP challenge's dose and DVH scores (automatic for cases imported from OpenKBP). */
  openkbp?: boolean;
  /**
   * The site profile of the constraint table (a shipped name, a .json path or a profile): by default each
   * prediction's model's site, else the one its reference records; evaluateRun takes the run's and refuses another.
   */
  site?: string | SiteProfile;
  signal?: AbortSignal;
  onProgress?: (event: EvaluationProgress) => void;
}

export interface EvaluationResult {
  /** the evaluation folder written */
  outDir: string;
  cases: CaseEvaluation[];
  /** mean, sd and n over the cases of every flat metric key (summary.json's metrics) */
  summary: Record<string, MetricSummary>;
  /** the OpenKBP dose and DVH scores, where any case has the OpenKBP figures */
  openkbp?: OpenKbpSummary;
  /** reference files that had no prediction */
  unpredicted: string[];
}

export interface RunEvaluationResult extends EvaluationResult {
  checkpoint: string;
  predictionsDir: string;
}

export interface CasePair {
  caseId: string;
  predFile: string;
  refFile: string;
}

function caseFiles(path: string, role: string): string[] {
  if (!existsSync(path)) throw invalidInput(`the ${role} ${path} does not exist: expected a case file (.npz) or a folder of them`);
  if (statSync(path).isDirectory()) {
    const files = readdirSync(path)
      .filter((name) => name.toLowerCase().endsWith('.npz') && !name.startsWith('.'))
      .sort()
      .map((name) => join(path, name));
    if (files.length === 0) throw noCaseFilesError(`the ${role} folder ${path} holds no case files (*.npz)`, path);
    return files;
  }
  return [path];
}

/** `<case>_pred.npz` and `<case>.npz` both name case `<case>`. */
function stemOf(file: string): string {
  return basename(file).replace(/\.npz$/i, '').replace(/_pred$/, '');
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

/** Evaluates the predictions at predPath (a file or folder) against the references at refPath into outDir. */
export async function evaluatePredictions(predPath: string, refPath: string, outDir: string, options: EvaluatePredictionsOptions = {}): Promise<EvaluationResult> {
  const site = options.site === undefined ? undefined : resolveSiteProfile(options.site);
  const { pairs, unpredicted } = await pairCases(predPath, refPath);
  const paths = evaluationPaths(resolve(outDir));
  const outputs = [...pairs.map((pair) => paths.caseFile(pair.caseId)), paths.cases, paths.summary];
  const existing = outputs.filter((file) => existsSync(file));
  if (existing.length > 0 && !options.overwrite) {
    throw invalidInput(`${existing[0]} already exists${existing.length > 1 ? ` (and ${existing.length - 1} more)` : ''}: choose another out folder or set overwrite`, { settings: ['out', 'overwrite'] });
  }
  if (unpredicted.length > 0) options.onProgress?.({ type: 'unpredicted', files: unpredicted });
  // What an earlier evaluation, killed before its renames, left there.
  await removeStaleTemporaries(paths.dir);

  // Everything is computed before anything is written, so that a bad pair leaves no half-written folder.
  const cases: CaseEvaluation[] = [];
  for (const [index, pair] of pairs.entries()) {
    const [pred, ref]: CaseData[] = await Promise.all([loadCase(pair.predFile), loadCase(pair.refFile)]);
    const evaluation = await evaluateCase(pred, ref, { threads: options.threads, device: options.device, signal: options.signal, openkbp: options.openkbp, site });
    evaluation.case_id = pair.caseId;
    cases.push(evaluation);
    options.onProgress?.({
      type: 'evaluated',
      case: pair.caseId,
      index: index + 1,
      of: pairs.length,
      maeBodyGy: evaluation.mae_gy['body']!,
      gamma3mmPassPct: evaluation.gamma['3%/3mm'].pass_rate_pct,
    });
  }
  const summary = summariseEvaluations(cases);
  const openkbp = summariseOpenKbpEvaluations(cases);
  for (const evaluation of cases) await writeCaseEvaluation(paths.dir, evaluation);
  await writeCasesCsv(paths.dir, cases);
  await writeEvaluationSummary(paths.dir, { n_cases: cases.length, metrics: summary, ...(openkbp ? { openkbp } : {}) });
  return { outDir: paths.dir, cases, summary, ...(openkbp ? { openkbp } : {}), unpredicted };
}

/** The checkpoint a run's test cases are predicted with: training_summary.json's best, else the best by file name. */
function bestCheckpointOf(runDir: string): string {
  const summary = readTrainingSummary(runDir);
  if (summary && 'bestCheckpoint' in summary && summary.bestCheckpoint && existsSync(summary.bestCheckpoint)) return summary.bestCheckpoint;
  // Without the summary (a run stopped before writing it), the lowest validation MAE in the file names decides.
  const best = listCheckpoints(runDir).best[0];
  if (!best) throw invalidInput(`${runDir} has no best checkpoint (${RUN_FILES.checkpoints}/best*.safetensors): train it first`);
  return best.path;
}

/** Predicts a run's test cases with its best checkpoint, then evaluates them into RUN/evaluation (or `out`). */
export async function evaluateRun(runDir: string, options: EvaluatePredictionsOptions & { out?: string } = {}): Promise<RunEvaluationResult> {
  const paths = runPaths(runDir);
  if (!existsSync(paths.trainingConfig) || !existsSync(paths.testCases)) {
    throw invalidInput(`${runDir} is not a run folder: expected ${RUN_FILES.trainingConfig} and ${RUN_FILES.testCases} in it (from vmat-native train)`);
  }
  const config = readTrainingConfig(runDir);
  // The run's own site (the one it was trained under: absent, the default); another one is refused.
  const site = config.siteProfile ?? resolveSiteProfile(DEFAULT_SITE);
  if (options.site !== undefined && JSON.stringify(resolveSiteProfile(options.site)) !== JSON.stringify(site)) {
    throw invalidInput(`${runDir} was trained under the site ${site.name}: a run is evaluated under its own site, so leave site out`, { settings: ['site'] });
  }
  if (!existsSync(config.dataDir)) throw invalidInput(`the run's data folder ${config.dataDir} does not exist`);
  const testFiles = readTestCases(runDir)!.test_files;
  if (testFiles.length === 0) throw invalidInput(`${runDir} has no test cases (${RUN_FILES.testCases} lists none): nothing to evaluate`);
  const checkpoint = bestCheckpointOf(runDir);
  const outDir = resolve(options.out ?? paths.evaluation);
  const predictionsDir = evaluationPaths(outDir).predictions;
  const inputs = testFiles.map((name) => join(config.dataDir, name));
  options.onProgress?.({ type: 'predict', checkpoint, cases: inputs.length });
  await predictFiles(checkpoint, inputs, predictionsDir, {
    // The run's own window: a model trained on small patches predicts differently through a much larger one.
    patchSize: config.settings.patchSize,
    overwrite: options.overwrite,
    device: options.device,
    threads: options.threads,
    signal: options.signal,
    onCase: (event) => options.onProgress?.({ type: 'predicted', case: event.case, index: event.index, of: event.of, seconds: event.seconds }),
  });
  // The data folder also holds the training and validation cases, which have no prediction here by design.
  const result = await evaluatePredictions(predictionsDir, config.dataDir, outDir, { ...options, site, onProgress: (event) => event.type !== 'unpredicted' && options.onProgress?.(event) });
  return { ...result, checkpoint, predictionsDir };
}

/** One line of text for a progress event (what the CLI, demo and sweep print). */
export function evaluationProgressLine(event: EvaluationProgress): string {
  switch (event.type) {
    case 'predict':
      return `predicting ${event.cases} test case(s) with ${event.checkpoint}`;
    case 'predicted':
      return `[${event.index}/${event.of}] predicted ${event.case} in ${event.seconds.toFixed(1)} s`;
    case 'unpredicted':
      return `${event.files.length} reference case(s) have no prediction and are left out`;
    case 'evaluated':
      return `[${event.index}/${event.of}] ${event.case}: MAE body ${event.maeBodyGy.toFixed(3)} Gy, gamma 3%/3mm ${event.gamma3mmPassPct.toFixed(2)} %`;
  }
}
