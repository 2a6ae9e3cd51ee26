/**
 * `runStudy(config)`: trains every arm × seed (× fold), evaluates every test case of every run (full 3D gamma, dose
 * errors: evaluateRun), and compares the arms (stats.ts): per metric the mean and spread over seeds, the paired
 * difference against the first arm with its bootstrap interval over cases and seeds, and one sentence. The study
 * folder `<logDir>/<expName>/`:
 *
 *   study.json      the resolved study (a study file: `study --study study.json` runs it again)
 *   runs/           one run folder per arm, seed and fold: <arm>_s<seed>[_f<fold>] (spec/training.md)
 *   records.csv     one row per arm, seed and test case: the metrics compared
 *   summary.json    the statistics, the sentences, the runs and the machine
 *   summary.md      the same for people
 *   report.html     the report with its figures (report.ts)
 *
 * Resumable: a run that finished (training_summary.json) and was evaluated is kept; a run stopped part-way resumes
 * from its last checkpoint; a run folder trained with other settings is refused, naming it, unless overwrite.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import { join, relative, resolve } from 'node:path';

import { parseTrainConfig, TRAIN_FIELDS, type TrainConfig, type TrainField } from '../config/schema.js';
import { splitDataset, type DatasetSplit } from '../data/split.js';
import { abortError, invalidInput } from '../errors.js';
import { flattenEvaluation } from '../eval/evaluate.js';
import { evaluateRun, type EvaluationProgress } from '../eval/run.js';
import { writeFileAtomic } from '../io/atomic.js';
import { evaluationPaths, readCaseEvaluation, readEvaluationSummary, readSplit, readTestCases, readTrainingConfig, readTrainingSummary, runPaths } from '../run/index.js';
import { runtimeReport } from '../runtime.js';
import { Trainer, type TrainEvent } from '../train/trainer.js';
import { VERSION } from '../version.js';
import { parseStudyConfig, studyFile, type StudyArm, type StudyConfig, type StudyConfigInput, type StudyFile } from './config.js';
import { kFoldDataset } from './folds.js';
import { studyReportHtml } from './report.js';
import { studyStatistics, type StudyRecord, type StudyStatistics } from './stats.js';

export interface StudyRunId {
  arm: string;
  seed: number;
  /** 1-based fold; null for the plain split */
  fold: number | null;
}

export type StudyProgress =
  | (StudyRunId & { type: 'run'; index: number; of: number; runDir: string; action: 'train' | 'resume' | 'kept' })
  | (StudyRunId & { type: 'train'; event: TrainEvent })
  | (StudyRunId & { type: 'evaluate'; event: EvaluationProgress })
  | { type: 'statistics'; records: number }
  | { type: 'done'; studyDir: string };

export interface StudyOptions {
  onProgress?: (event: StudyProgress) => void;
  signal?: AbortSignal;
  /** Replace the study folder (all its runs) instead of continuing it. */
  overwrite?: boolean;
}

export interface StudyRunSummary extends StudyRunId {
  runDir: string;
  bestEpoch: number;
  bestValMaeGy: number | null;
  epochsRun: number;
  stopReason: string;
  trainingSeconds: number | null;
  testCases: string[];
}

export interface StudySummary {
  study: StudyFile;
  createdAt: string;
  vmatNativeVersion: string;
  machine: { cpu: string; cores: number; os: string; device: string; threads: number };
  design: { arms: number; seeds: number; folds: number; cases: number };
  runs: StudyRunSummary[];
  statistics: StudyStatistics;
  /** one per later arm and metric: "gradient loss 0.1: +1.2 pp gamma 3%/3 mm, 95 % CI ..." */
  sentences: string[];
  /** metrics of the study that no test case has (e.g. MAE in PTV70 without a PTV70) */
  skippedMetrics: string[];
}

export interface StudyResult {
  studyDir: string;
  summary: StudySummary;
  records: StudyRecord[];
  files: { study: string; records: string; summary: string; markdown: string; report: string };
}

export const STUDY_FILES = { study: 'study.json', runs: 'runs', records: 'records.csv', summary: 'summary.json', markdown: 'summary.md', report: 'report.html' } as const;

/** Settings that change how fast a run is, not what it learns: a kept run may differ in them. */
const SPEED_ONLY: TrainField[] = ['device', 'threads', 'numWorkers'];

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
const write = (path: string, text: string) => writeFileAtomic(path, text, { overwrite: true });

interface PlannedRun extends StudyRunId {
  armConfig: StudyArm;
  expName: string;
  runDir: string;
  settings: TrainConfig;
  split: DatasetSplit;
}

function runName(arm: string, seed: number, fold: number | null): string {
  return `${arm}_s${seed}${fold === null ? '' : `_f${fold}`}`;
}

/** The first setting in which a kept run differs from what the study asks for, or null. */
function settingDifference(saved: Record<string, unknown>, wanted: TrainConfig): string | null {
  for (const key of Object.keys(TRAIN_FIELDS) as TrainField[]) {
    if (SPEED_ONLY.includes(key)) continue;
    let a: unknown = saved[key];
    let b: unknown = wanted[key];
    if (key === 'dataDir' || key === 'logDir' || (key === 'vggWeights' && a && b)) {
      a = resolve(String(a));
      b = resolve(String(b));
    }
    if (JSON.stringify(a) !== JSON.stringify(b)) return `${key} ${JSON.stringify(a)}, the study's ${JSON.stringify(b)}`;
  }
  return null;
}

async function prepareStudyFolder(studyDir: string, overwrite: boolean): Promise<void> {
  if (!existsSync(studyDir)) {
    await mkdir(join(studyDir, STUDY_FILES.runs), { recursive: true });
    return;
  }
  const entries = await readdir(studyDir);
  if (entries.length > 0 && !entries.includes(STUDY_FILES.study)) {
    throw invalidInput(`${studyDir} exists and is not a study folder (no ${STUDY_FILES.study}): it is not used; choose another expName or logDir`, { settings: ['expName', 'logDir'] });
  }
  if (overwrite) await rm(studyDir, { recursive: true, force: true });
  await mkdir(join(studyDir, STUDY_FILES.runs), { recursive: true });
}

async function planRuns(config: StudyConfig, studyDir: string): Promise<PlannedRun[]> {
  const shared = config.shared;
  // One split for every arm and seed (the pairing needs it): the k folds, or the plain split, both from the
  // training settings' seed.
  const splits: { fold: number | null; split: DatasetSplit }[] =
    config.folds > 0
      ? (await kFoldDataset(shared.dataDir, { folds: config.folds, valSplit: shared.valSplit, seed: shared.seed })).map((split) => ({ fold: split.fold + 1, split }))
      : [{ fold: null, split: await splitDataset(shared.dataDir, { valSplit: shared.valSplit, testSplit: shared.testSplit, seed: shared.seed }) }];
  const logDir = join(studyDir, STUDY_FILES.runs);
  const runs: PlannedRun[] = [];
  // Seed by seed, fold by fold, every arm: an interrupted study has complete comparisons for what it finished.
  for (const seed of config.seeds) {
    for (const { fold, split } of splits) {
      for (const arm of config.arms) {
        const expName = runName(arm.name, seed, fold);
        const settings = parseTrainConfig({ ...config.train, ...arm.settings, seed, expName, logDir });
        runs.push({ arm: arm.name, seed, fold, armConfig: arm, expName, runDir: join(logDir, expName), settings, split });
      }
    }
  }
  return runs;
}

/** What to do with a run folder: train it, resume it, or keep it (finished); refuses one trained otherwise. */
function runAction(run: PlannedRun): 'train' | 'resume' | 'kept' {
  const paths = runPaths(run.runDir);
  if (!existsSync(paths.trainingConfig)) return 'train';
  const saved = readTrainingConfig(run.runDir).settings as Record<string, unknown>;
  const difference = settingDifference(saved, run.settings);
  if (difference) {
    throw invalidInput(`the run ${run.runDir} was trained with other settings (${difference}): set overwrite to train the study again, or choose another expName`, { settings: ['overwrite', 'expName'] });
  }
  const split = readSplit(run.runDir);
  if (split && JSON.stringify(split.test) !== JSON.stringify(run.split.test)) {
    throw invalidInput(`the run ${run.runDir} was tested on other cases (${split.test.join(', ')}) than the study's (${run.split.test.join(', ')}): set overwrite to train the study again`, { settings: ['overwrite'] });
  }
  const summary = readTrainingSummary(run.runDir);
  if (summary && (summary.stopReason === 'max_epochs' || summary.stopReason === 'early_stop')) return 'kept';
  return existsSync(join(paths.checkpoints, 'last.safetensors')) ? 'resume' : 'train';
}

/** The run's evaluation is there for every test case (summary.json is written last). */
function evaluated(run: PlannedRun): boolean {
  const dir = runPaths(run.runDir).evaluation;
  if (!readEvaluationSummary(dir)) return false;
  return run.split.test.every((id) => existsSync(evaluationPaths(dir).caseFile(id)));
}

function csvCell(value: string | number): string {
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function recordsCsv(records: StudyRecord[], metrics: string[], runs: PlannedRun[]): string {
  const foldOf = new Map<string, number | null>(runs.flatMap((run) => run.split.test.map((id) => [`${run.arm}\u0000${run.seed}\u0000${id}`, run.fold] as const)));
  const rows = new Map<string, { arm: string; seed: number; caseId: string; values: Map<string, number> }>();
  for (const r of records) {
    const key = `${r.arm}\u0000${r.seed}\u0000${r.caseId}`;
    if (!rows.has(key)) rows.set(key, { arm: r.arm, seed: r.seed, caseId: r.caseId, values: new Map() });
    rows.get(key)!.values.set(r.metric, r.value);
  }
  const lines = [['arm', 'seed', 'fold', 'case', ...metrics].map(csvCell).join(',')];
  for (const [key, row] of rows) {
    lines.push([row.arm, row.seed, foldOf.get(key) ?? '', row.caseId, ...metrics.map((m) => (row.values.has(m) ? row.values.get(m)! : ''))].map(csvCell).join(','));
  }
  return `${lines.join('\n')}\n`;
}

function formatNumber(value: number | null | undefined, decimals: number): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(decimals);
}

export function summaryMarkdown(summary: StudySummary): string {
  const { statistics, design } = summary;
  const lines = [
    `# Study: ${statistics.arms.join(' vs ')}`,
    '',
    `${design.arms} arms × ${design.seeds} seeds${design.folds > 0 ? ` × ${design.folds} folds` : ''}, ${design.cases} test cases; ${summary.machine.cpu}, ${summary.machine.device}, ${summary.createdAt}, vmat-native ${summary.vmatNativeVersion}.`,
    '',
    ...summary.sentences.map((s) => `- ${s}`),
    '',
  ];
  for (const { metric, arms } of statistics.metrics) {
    const d = metric.decimals ?? 1;
    const unit = metric.unit === 'pp' ? '%' : metric.unit;
    lines.push(`## ${metric.label}${unit ? ` (${unit})` : ''}`, '', `| arm | mean over seeds | sd over seeds | seed means, min–max | Δ vs ${statistics.arms[0]} | ${Math.round(summary.study.bootstrap.confidence * 100)} % CI | p |`, '|---|---:|---:|---:|---:|---:|---:|');
    for (const a of arms) {
      const diff = a.difference;
      lines.push(
        `| ${a.arm} | ${formatNumber(a.spread.mean, d + 1)} | ${formatNumber(a.spread.sd, d + 1)} | ${formatNumber(a.spread.min, d)}–${formatNumber(a.spread.max, d)} | ${diff ? formatNumber(diff.difference, d + 1) : ''} | ${diff?.ci ? `${formatNumber(diff.ci[0], d + 1)} to ${formatNumber(diff.ci[1], d + 1)}` : ''} | ${diff?.p != null ? formatNumber(diff.p, 3) : ''} |`,
      );
    }
    lines.push('');
  }
  if (summary.skippedMetrics.length > 0) lines.push(`Not compared (no test case has them): ${summary.skippedMetrics.join(', ')}.`, '');
  return `${lines.join('\n')}`;
}

/** Trains and evaluates every arm × seed (× fold) of the study, then compares the arms; see the module comment. */
export async function runStudy(input: StudyConfigInput | StudyConfig, options: StudyOptions = {}): Promise<StudyResult> {
  const config = 'shared' in input ? input : parseStudyConfig(input);
  const studyDir = resolve(config.shared.logDir, config.shared.expName);
  await prepareStudyFolder(studyDir, options.overwrite === true);
  const runs = await planRuns(config, studyDir);
  const actions = runs.map(runAction); // every kept run is checked before anything trains
  await write(join(studyDir, STUDY_FILES.study), json(studyFile(config)));

  const records: StudyRecord[] = [];
  const summaries: StudyRunSummary[] = [];
  for (const [index, run] of runs.entries()) {
    if (options.signal?.aborted) throw abortError(`the study was stopped before ${run.expName}; run it again to continue (finished runs are kept)`, options.signal);
    const id: StudyRunId = { arm: run.arm, seed: run.seed, fold: run.fold };
    const action = actions[index]!;
    options.onProgress?.({ type: 'run', ...id, index: index + 1, of: runs.length, runDir: run.runDir, action });
    if (action !== 'kept') {
      const result = await new Trainer().fit(run.settings, {
        resume: action === 'resume',
        overwrite: action === 'train' && existsSync(run.runDir),
        split: run.split,
        signal: options.signal,
        onProgress: (event) => options.onProgress?.({ type: 'train', ...id, event }),
      });
      if (result.stopReason === 'aborted') throw abortError(`the study was stopped during ${run.expName}; run it again to continue (it resumes from its last checkpoint)`, options.signal);
    }
    if (action !== 'kept' || !evaluated(run)) {
      await evaluateRun(run.runDir, {
        device: run.settings.device,
        threads: run.settings.threads || undefined,
        overwrite: true,
        signal: options.signal,
        onProgress: (event) => options.onProgress?.({ type: 'evaluate', ...id, event }),
      });
    }
    const evaluationDir = runPaths(run.runDir).evaluation;
    for (const caseId of readTestCases(run.runDir)!.test_cases) {
      const flat = flattenEvaluation(readCaseEvaluation(evaluationPaths(evaluationDir).caseFile(caseId)));
      for (const metric of config.metrics) {
        const value = flat[metric.name];
        if (value !== undefined && Number.isFinite(value)) records.push({ arm: run.arm, seed: run.seed, caseId, metric: metric.name, value });
      }
    }
    const trained = readTrainingSummary(run.runDir);
    summaries.push({
      ...id,
      runDir: relative(studyDir, run.runDir),
      bestEpoch: trained && 'bestEpoch' in trained ? trained.bestEpoch : 0,
      bestValMaeGy: trained && 'bestValMaeGy' in trained ? trained.bestValMaeGy : null,
      epochsRun: trained && 'epochsRun' in trained ? trained.epochsRun : 0,
      stopReason: trained?.stopReason ?? 'unknown',
      trainingSeconds: trained?.seconds ?? null,
      testCases: run.split.test,
    });
  }

  options.onProgress?.({ type: 'statistics', records: records.length });
  const present = config.metrics.filter((m) => config.arms.every((arm) => records.some((r) => r.metric === m.name && r.arm === arm.name)));
  const skippedMetrics = config.metrics.filter((m) => !present.includes(m)).map((m) => m.name);
  if (present.length === 0) throw invalidInput(`no test case has any of the study's metrics (${config.metrics.map((m) => m.name).join(', ')}): expected evaluation keys such as gamma.3%/3mm.pass_rate_pct`, { settings: ['metrics'] });
  const statistics = studyStatistics(records, config.arms.map((a) => a.name), present, {
    ...config.bootstrap,
    armLabels: Object.fromEntries(config.arms.map((a) => [a.name, a.label])),
  });
  const runtime = runtimeReport();
  const device = config.shared.device === 'cpu' || runtime.devices.length === 0 ? 'CPU' : runtime.devices.map((d) => d.name).join(', ');
  const summary: StudySummary = {
    study: studyFile(config),
    createdAt: new Date().toISOString(),
    vmatNativeVersion: VERSION,
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown CPU', cores: runtime.threads.cpuCores, os: runtime.platform, device, threads: config.shared.threads || runtime.threads.libtorch },
    design: { arms: config.arms.length, seeds: config.seeds.length, folds: config.folds, cases: new Set(runs.flatMap((r) => r.split.test)).size },
    runs: summaries,
    statistics,
    sentences: statistics.metrics.flatMap((m) => m.arms.flatMap((a) => (a.sentence ? [a.sentence] : []))),
    skippedMetrics,
  };
  const files = {
    study: join(studyDir, STUDY_FILES.study),
    records: join(studyDir, STUDY_FILES.records),
    summary: join(studyDir, STUDY_FILES.summary),
    markdown: join(studyDir, STUDY_FILES.markdown),
    report: join(studyDir, STUDY_FILES.report),
  };
  await write(files.records, recordsCsv(records, config.metrics.map((m) => m.name), runs));
  await write(files.summary, json(summary));
  await write(files.markdown, summaryMarkdown(summary));
  await write(files.report, await studyReportHtml(summary, records));
  options.onProgress?.({ type: 'done', studyDir });
  return { studyDir, summary, records, files };
}
