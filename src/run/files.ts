/**
 * The content of each run-folder file, as a type and as the schema its reader checks. Writers take these types;
 * readers return them (or refuse the file in one sentence naming it, the entry and what was expected).
 */
import { z } from 'zod';

import type { TrainConfig } from '../config/schema.js';
import type { DatasetSplit } from '../data/split.js';
import type { CaseEvaluation, MetricSummary } from '../eval/evaluate.js';
import { V_LEVELS_GY, type DoseMetrics } from '../metrics/dvh.js';
import type { OpenKbpSummary } from '../openkbp/scores.js';
import type { SiteProfile } from '../sites/profile.js';
import type { StopReason, TrainEvent } from '../train/events.js';
import type { LossTermColumn, MetricColumn } from './layout.js';

/** training_config.json: the settings used, beside what the run derived from them. */
export interface TrainingConfigFile {
  settings: TrainConfig;
  /** the data folder, absolute */
  dataDir: string;
  splitSizes?: { train: number; val: number; test: number };
  /** from the engine's start event */
  parameters?: number;
  device?: string;
  precision?: string;
  /** the run's site profile, resolved (absent: the default site, prostate-sib) */
  siteProfile?: SiteProfile;
  /** each resume, in order, with the settings it changed: `settings` holds the latest values */
  resumes?: ResumeRecord[];
}

/** One resume of a run: where it continued, from which checkpoint, and each setting it changed (old → new). */
export interface ResumeRecord {
  at: string;
  /** the 1-based epoch and the step within it where training continued */
  startEpoch: number;
  startStep: number;
  /** checkpoints/<from>.safetensors; 'none' where no checkpoint had been written (training began again) */
  from: 'last' | 'previous' | 'none';
  changes: Record<string, { from: unknown; to: unknown }>;
}

/** inputs.json: what each case file of the split was when the run started (resume refuses files that changed). */
export interface InputsFile {
  dataDir: string;
  files: InputFingerprint[];
}
export interface InputFingerprint {
  /** relative to dataDir, as split.json names it */
  file: string;
  role: 'train' | 'val' | 'test';
  bytes: number;
  mtimeMs: number;
  sha256: string;
}

/** split.json */
export type SplitFile = DatasetSplit;

/** test_cases.json (snake_case, as spec/training.md names it) */
export interface TestCasesFile {
  test_cases: string[];
  test_files: string[];
  seed: number;
}

export interface GitState {
  commit: string;
  dirty: boolean;
}

/** environment.json (a type alias, so that it is also a plain record of values) */
export type EnvironmentFile = {
  startedAt: string;
  vmatNativeVersion: string;
  libtorch: string;
  cuda: string | null;
  cudaAvailable: boolean;
  cudnn: string | null;
  device: string;
  deviceName: string;
  threads: number;
  cpuCores: number;
  os: string;
  node: string;
  addonPath: string;
  dataGit: GitState | null;
  codeGit: GitState | null;
};

/** One line of log.jsonl: the event, with the time it was written (ISO 8601 UTC; absent in older logs). */
export type LoggedTrainEvent = TrainEvent & { time?: string };

/** One row of metrics.csv; NaN where a cell is empty (no PTV70 in the validation cases). */
export type MetricsRow = Record<MetricColumn, number> & Partial<Record<LossTermColumn, number>>;

/** training_summary.json of a run that stopped by itself or was aborted. */
export interface FinishedSummary {
  runDir: string;
  bestCheckpoint: string | null;
  bestEpoch: number;
  bestValMaeGy: number | null;
  epochsRun: number;
  stopReason: StopReason;
  seconds: number;
  finishedAt: string;
}
/** training_summary.json of a run that an error stopped. */
export interface FailedSummary {
  stopReason: 'not_finite' | 'out_of_memory';
  error: string;
  seconds: number;
}
export type TrainingSummaryFile = FinishedSummary | FailedSummary;

/** evaluation/summary.json: mean, sample sd and count over the cases of every flat metric key. */
export interface EvaluationSummaryFile {
  n_cases: number;
  metrics: Record<string, MetricSummary>;
  /** the OpenKBP challenge's scores, where any case has them */
  openkbp?: OpenKbpSummary;
}

/** evaluation/<case>.json */
export type CaseEvaluationFile = CaseEvaluation;

// ---------------------------------------------------------------- the schemas the readers check

const count = z.number().int().min(0);
const ids = z.array(z.string());
/** NaN has no JSON spelling: the writers write it as null. */
const metric = z
  .number()
  .nullable()
  .transform((value) => value ?? Number.NaN);
const gitState = z.object({ commit: z.string(), dirty: z.boolean() }).nullable();

export const trainingConfigFileSchema = z.object({
  settings: z.record(z.string(), z.unknown()),
  dataDir: z.string(),
  splitSizes: z.object({ train: count, val: count, test: count }).optional(),
  parameters: count.optional(),
  device: z.string().optional(),
  precision: z.string().optional(),
  siteProfile: z.record(z.string(), z.unknown()).optional(),
  resumes: z
    .array(
      z.object({
        at: z.string(),
        startEpoch: count,
        startStep: count,
        from: z.enum(['last', 'previous', 'none']),
        changes: z.record(z.string(), z.object({ from: z.unknown(), to: z.unknown() })),
      }),
    )
    .optional(),
});

export const inputsFileSchema = z.object({
  dataDir: z.string(),
  files: z.array(
    z.object({ file: z.string(), role: z.enum(['train', 'val', 'test']), bytes: count, mtimeMs: z.number(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  ),
});

export const splitFileSchema = z.object({
  train: ids,
  val: ids,
  test: ids,
  seed: z.number(),
  files: z.object({ train: ids, val: ids, test: ids }),
});

export const testCasesFileSchema = z.object({ test_cases: ids, test_files: ids, seed: z.number() });

export const environmentFileSchema = z.object({
  startedAt: z.string(),
  vmatNativeVersion: z.string(),
  libtorch: z.string(),
  cuda: z.string().nullable(),
  cudaAvailable: z.boolean(),
  cudnn: z.string().nullable(),
  device: z.string(),
  deviceName: z.string(),
  threads: z.number(),
  cpuCores: z.number(),
  os: z.string(),
  node: z.string(),
  addonPath: z.string(),
  dataGit: gitState,
  codeGit: gitState,
});

export const trainingSummaryFileSchema = z.union([
  z.object({
    runDir: z.string(),
    bestCheckpoint: z.string().nullable(),
    bestEpoch: count,
    bestValMaeGy: z.number().nullable(),
    epochsRun: count,
    stopReason: z.enum(['max_epochs', 'early_stop', 'aborted']),
    seconds: z.number(),
    finishedAt: z.string(),
  }),
  z.object({ stopReason: z.enum(['not_finite', 'out_of_memory']), error: z.string(), seconds: z.number() }),
]);

const metricSummary = z.object({ mean: metric, sd: metric, n: count });
export const evaluationSummaryFileSchema = z.object({
  n_cases: count,
  metrics: z.record(z.string(), metricSummary),
  openkbp: z.object({ dose_score_gy: metric, dvh_score_gy: metric, n_cases: count, n_dvh_metrics: count }).optional(),
});

const doseMetrics = z.object(
  Object.fromEntries(
    ['volumeCc', 'Dmean', 'Dmax', 'D0.03cc', 'D2', 'D50', 'D95', 'D98', ...V_LEVELS_GY.map((level) => `V${level}`)].map((key) => [key, metric]),
  ) as Record<keyof DoseMetrics, typeof metric>,
);
const gammaStats = z.object({ pass_rate_pct: metric, mean_gamma: metric, median_gamma: metric, n_evaluated: metric });
export const caseEvaluationFileSchema = z
  .object({
    case_id: z.string(),
    mae_gy: z.record(z.string(), metric),
    rmse_gy: z.record(z.string(), metric),
    dvh: z.object({ ref: z.record(z.string(), doseMetrics), pred: z.record(z.string(), doseMetrics) }),
    dvh_curves: z.record(z.string(), z.object({ bin_gy: z.number().positive(), ref: z.array(z.number()), pred: z.array(z.number()) })),
    constraints: z.array(
      z.object({
        name: z.string(),
        structure: z.string(),
        unit: z.enum(['fraction', 'Gy', 'cc']),
        limit: z.number(),
        ref: z.number().nullable(),
        pred: z.number().nullable(),
        refPass: z.boolean().nullable(),
        predPass: z.boolean().nullable(),
        note: z.string().optional(),
      }),
    ),
    gamma: z.object({ '3%/3mm': gammaStats, '2%/2mm': gammaStats, '3%/3mm_ptv': gammaStats }),
  })
  // Evaluations may carry more than these (e.g. OpenKBP scores): kept, not refused.
  .passthrough();
