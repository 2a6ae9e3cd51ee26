/**
 * `fit()`: the run folder (spec/training.md, written through src/run/), the split, the cases loaded into memory, and
 * the native training engine (native/src/trainer.cpp) running off the event loop with its events written to
 * log.jsonl and metrics.csv.
 */
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { readdir, rename, rm, rmdir } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';

import { lossChannels, parseTrainConfig, TRAIN_FIELDS, type TrainConfig, type TrainConfigInput, type TrainField } from '../config/schema.js';
import { loadCase, type CaseData } from '../data/case.js';
import { buildModelInput } from '../data/inputs.js';
import { splitDataset, type DatasetSplit } from '../data/split.js';
import { mapStructures } from '../data/structures.js';
import { invalidInput, isAbortError, VmatError, type VmatErrorCode } from '../errors.js';
import { removeStaleTemporaries } from '../io/atomic.js';
import { readCheckpointMetadata } from '../model.js';
import type { NativeTrainCase } from '../native/addon.js';
import { callNative } from '../native/call.js';
import { loadNative } from '../native/loader.js';
import {
  appendLogEvent,
  appendMetricsRow,
  changedInputs,
  CHECKPOINT_FILES,
  CHECKPOINT_PAIR_KEY,
  createRunFolder,
  fingerprintInputs,
  readInputs,
  readSplit,
  readTrainingConfig,
  removeRunFiles,
  RUN_FILES,
  runPaths,
  metricsColumns,
  truncateMetrics,
  writeEnvironment,
  writeInputs,
  writeMetrics,
  writeSplit,
  writeTestCases,
  writeTrainingConfig,
  writeTrainingSummary,
  type EnvironmentFile,
  type FinishedSummary,
  type GitState,
  type InputsFile,
  type MetricsRow,
  type ResumeRecord,
  type TrainingConfigFile,
} from '../run/index.js';
import { TensorBoardLog } from '../run/tensorboard.js';
import { runtimeReport } from '../runtime.js';
import { caseConditioning } from '../sites/conditioning.js';
import { channelNamesOfCase, DEFAULT_SITE, isDefaultProfile, leftRightChannelPairs, resolveSiteProfile, structureMatcher, type SiteProfile } from '../sites/profile.js';
import { VERSION } from '../version.js';
import type { EpochEvent, StopReason, TrainEvent } from './events.js';
import { resolveDistributed, type DistributedOptions } from './distributed.js';
import { nativeTrainSettings } from './native-settings.js';
import { checkVggWeights } from './vgg-weights.js';

export type * from './events.js';
export type { DistributedOptions } from './distributed.js';

export interface FitOptions {
  onProgress?: (event: TrainEvent) => void;
  /** A sentence about the run that is not an error (a patch larger than the volumes, a resume from previous). */
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
  /**
   * Continue the run folder from checkpoints/last: its training_config.json (data folder included) and split are
   * reused; only the settings of RESUMABLE_SETTINGS may differ, and each change is recorded.
   */
  resume?: boolean;
  /** Replace an existing run folder: the files vmat-native wrote there, nothing else. */
  overwrite?: boolean;
  /** The split to train with (a study's k-fold split, or its split kept across seeds) instead of the settings' own. */
  split?: DatasetSplit;
  /**
   * This process's rank of a data-parallel run (every rank calls fit() with the same config; see distributedFromEnv).
   * Rank 0 writes the run folder and sends the events; the other ranks write nothing and send no events.
   */
  distributed?: DistributedOptions;
}

/** What `fit()` takes to resume: the run folder's name (expName, logDir) and any settings that may change. */
export type ResumeConfigInput = Partial<TrainConfigInput> & { expName: string };

/**
 * The settings a resume may change: they decide how long training goes on and where it runs, not what an epoch
 * computes (the lr of the epochs after a change of epochs follows the new schedule; metrics.csv records each
 * epoch's). Each change is recorded in training_config.json's `resumes`.
 */
export const RESUMABLE_SETTINGS: readonly TrainField[] = ['epochs', 'patience', 'device', 'threads', 'numWorkers', 'swBatch'];

/** What a run ended with (training_summary.json holds it, with the time it finished). */
export type FitResult = Omit<FinishedSummary, 'finishedAt'>;

/** How a value is shown in a message about settings. */
function shown(value: unknown): string {
  if (Array.isArray(value)) return value.join(',');
  return typeof value === 'string' ? `'${value}'` : String(value);
}

const sameValue = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Where a resume continues from: a checkpoint whose weights and state are one pair. */
interface ResumePoint {
  from: ResumeRecord['from'];
  /** the weights file; '' when there is none (training begins again) */
  path: string;
}

/** The training state beside a checkpoint's weights. */
const stateOf = (weights: string) => weights.replace(/\.safetensors$/, CHECKPOINT_FILES.stateSuffix);

/** Both files there and their pair tokens equal (files without a token predate it and count as a pair). */
function wholePair(weights: string): boolean {
  const state = stateOf(weights);
  if (!existsSync(weights) || !existsSync(state)) return false;
  try {
    return readCheckpointMetadata(weights).metadata[CHECKPOINT_PAIR_KEY] === readCheckpointMetadata(state).metadata[CHECKPOINT_PAIR_KEY];
  } catch {
    return false;
  }
}

/** The metrics.csv row of an epoch. */
function metricsRow(event: EpochEvent): MetricsRow {
  return {
    epoch: event.epoch,
    lr: event.lr,
    train_loss: event.trainLoss,
    train_mse: event.trainMse,
    train_grad: event.trainGrad,
    train_neg: event.trainNeg,
    ...(event.trainVgg !== undefined ? { train_vgg: event.trainVgg } : {}),
    ...(event.trainStructureWeighted !== undefined ? { train_structure_weighted: event.trainStructureWeighted } : {}),
    ...(event.trainAsymmetricPtv !== undefined ? { train_asymmetric_ptv: event.trainAsymmetricPtv } : {}),
    ...(event.trainDvh !== undefined ? { train_dvh: event.trainDvh } : {}),
    val_loss: event.valLoss,
    val_mae_gy: event.valMaeGy,
    val_mae_ptv70_gy: event.valMaePtv70Gy ?? Number.NaN,
    epoch_seconds: event.epochSeconds,
    voxels_per_second: event.voxelsPerSecond,
  };
}

/** The git commit (and dirty flag) of the folder, where it is a git work tree. */
function gitState(dir: string): GitState | null {
  try {
    const run = (args: string[]) => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
    const commit = run(['rev-parse', 'HEAD']);
    return { commit, dirty: run(['status', '--porcelain', '--untracked-files=no']).length > 0 };
  } catch {
    return null;
  }
}

export class Trainer {
  /** Trains one run; resolves when it stops (max epochs, early stop, abort). To resume, expName (and logDir) suffice. */
  async fit(config: TrainConfigInput | ResumeConfigInput, options: FitOptions = {}): Promise<FitResult> {
    const started = Date.now();
    if (options.resume && options.overwrite) throw invalidInput('resume and overwrite exclude each other: continue the run or replace it', { settings: ['resume', 'overwrite'] });
    // Everything that can refuse the run is checked, and every case loaded, before anything is written: a run
    // that cannot start leaves no run folder (and replaces none).
    const distributed = resolveDistributed(options.distributed);
    // Rank 0 writes the run folder and sends the events; the other ranks read what they need and write nothing.
    const writer = distributed.rank === 0;
    const warn = (message: string) => {
      if (writer) options.onWarning?.(message);
    };
    const plan = options.resume ? await this.planResume(config, warn, options.signal) : await this.planFresh(config as TrainConfigInput, options.overwrite === true, options.split, writer);
    const { runDir, settings, split } = plan;
    // A weights file that is missing or not VGG16 is refused at once.
    if (settings.useVggLoss) checkVggWeights(settings.vggWeights);
    this.checkDevice(settings);
    // A bad site profile is refused here, before anything is written. A resumed run keeps the profile it recorded
    // (a run that records none is of the default site).
    const profile = plan.resume ? (plan.resume.previous.siteProfile ?? resolveSiteProfile(DEFAULT_SITE)) : resolveSiteProfile(settings.site);
    const emit = this.eventSink(runDir, settings, plan.resume, writer ? options.onProgress : undefined, writer);

    const load = async (ids: string[], files: string[]) => {
      const cases: NativeTrainCase[] = [];
      for (let i = 0; i < files.length; i++) {
        if (options.signal?.aborted) break;
        // An abort while a case loads stops the run as one during training does: fit resolves, stop reason aborted.
        const item = await this.loadTrainingCase(join(settings.dataDir, files[i]!), settings, options.signal, profile).catch((error: unknown) => {
          if (isAbortError(error)) return undefined;
          throw error;
        });
        if (!item) break;
        void emit({ type: 'load', case: ids[i]!, index: i + 1, of: files.length, warnings: item.warnings });
        cases.push(item.case);
      }
      return cases;
    };
    const train = await load(split.train, split.files.train);
    const val = await load(split.val, split.files.val);
    const patchWarning = this.patchWarning(settings.patchSize, [...train, ...val]);
    if (patchWarning && !options.signal?.aborted) warn(patchWarning);
    const inputs = plan.resume || !writer || options.signal?.aborted ? undefined : await fingerprintInputs(resolve(settings.dataDir), split, options.signal).catch((error: unknown) => {
      if (isAbortError(error) || options.signal?.aborted) return undefined;
      throw error;
    });
    if (options.signal?.aborted) {
      // Stopped before training started: nothing was written (a resumed run is as it was).
      return { runDir, ...this.abortedBeforeStart(), bestCheckpoint: null, seconds: (Date.now() - started) / 1000 };
    }

    const createdFolder = !existsSync(runDir);
    if (writer && plan.resume) {
      if (plan.resume.point.note) warn(plan.resume.point.note);
      await this.cleanTemporaries(runDir);
    } else if (writer) {
      await this.writeRunFolder(runDir, settings, split, inputs!, profile);
    }
    emit.open();

    // The x flip of the patch sampler swaps the profile's left and right structures' channels.
    const leftRightPairs = leftRightChannelPairs(profile, settings.structures);
    let summary: FitResult;
    try {
      const result = await callNative<NativeFitResult, TrainEvent>(
        (native) =>
          loadNative().trainModel(
            { train, val },
            nativeTrainSettings({ ...settings, vggWeights: settings.vggWeights && resolve(settings.vggWeights) }, {
              ...lossChannels(settings),
              // The profile's conditioning vector (caseConditioning gives every case one of this length).
              condDim: profile.conditioning.length,
              leftRightPairs,
              checkpointDir: runPaths(runDir).checkpoints,
              resume: Boolean(plan.resume?.point.path),
              resumeFrom: plan.resume?.point.path ?? '',
              checkpointMetadata: this.checkpointMetadata(settings, profile),
              distributed,
            }),
            native,
          ),
        { onProgress: (event) => void emit(event), signal: options.signal, threads: settings.threads || undefined, abort: 'result', settings: Object.keys(TRAIN_FIELDS) },
      );
      await emit.flush();
      summary = {
        runDir,
        bestCheckpoint: result.bestCheckpoint,
        bestEpoch: result.bestEpoch,
        bestValMaeGy: result.bestValMaeGy,
        epochsRun: result.epochsRun,
        stopReason: result.stopReason,
        seconds: (Date.now() - started) / 1000,
      };
    } catch (error) {
      await emit.flush().catch(() => undefined);
      if (writer && !emit.started() && !plan.resume) {
        // The engine refused to start (a setting only it checks): the folder this call wrote goes again.
        await removeRunFiles(runDir).catch(() => undefined);
        if (createdFolder) await rmdir(runDir).catch(() => undefined);
        throw error;
      }
      if (writer && error instanceof VmatError && (error.code === 'VMAT_NOT_FINITE' || error.code === 'VMAT_OUT_OF_MEMORY')) {
        await writeTrainingSummary(runDir, {
          stopReason: error.code === 'VMAT_NOT_FINITE' ? 'not_finite' : 'out_of_memory',
          error: error.message,
          seconds: (Date.now() - started) / 1000,
        });
      }
      throw error;
    }
    if (writer) await writeTrainingSummary(runDir, { ...summary, finishedAt: new Date().toISOString() });
    return summary;
  }

  /**
   * Loads one case for training or validation: the model input (the case's structures matched onto the channels
   * through the profile's aliases), the dose, body and PTV70 masks, the profile's conditioning vector.
   */
  protected async loadTrainingCase(
    path: string,
    settings: TrainConfig,
    signal: AbortSignal | undefined,
    profile: SiteProfile,
  ): Promise<{ case: NativeTrainCase; warnings: string[] }> {
    const loaded: CaseData = await loadCase(path);
    if (!loaded.dose) throw invalidInput(`${path} has no dose: training and validation cases need one`);
    const match = structureMatcher(profile);
    const data = { ...loaded, structures: channelNamesOfCase(profile, loaded.structures) };
    const channels = settings.structures.map((name) => (match(name) === null || match(name) === 'body' ? name : match(name)!));
    const { input, body, warnings } = await buildModelInput(data, channels, { signal, threads: settings.threads || undefined });
    const [z, y, x] = data.shape;
    const voxels = z * y * x;
    const ptvIndex = mapStructures(data.structures, ['PTV70']).indices[0]!;
    return {
      case: {
        id: data.caseId,
        input,
        shape: [1 + settings.structures.length, z, y, x],
        dose: loaded.dose,
        body,
        ptv70: ptvIndex >= 0 ? data.masks.subarray(ptvIndex * voxels, (ptvIndex + 1) * voxels) : undefined,
        constraints: caseConditioning(profile, loaded),
      },
      warnings,
    };
  }

  /**
   * What every checkpoint of the run carries besides the model config, so that `predict` needs nothing else; the
   * site profile unless it is the default (a checkpoint without one is of the default site, as before profiles).
   */
  protected checkpointMetadata(settings: TrainConfig, profile: SiteProfile): Record<string, string> {
    return {
      structures: JSON.stringify(settings.structures),
      normalisation_dose_gy: String(settings.normalisationDoseGy),
      patch_size: String(settings.patchSize),
      exp_name: settings.expName,
      vmat_native_version: VERSION,
      ...(isDefaultProfile(profile) ? {} : { site_profile: JSON.stringify(profile) }),
    };
  }

  /** Aborted while the cases were loading: the native engine never started, nothing was trained. */
  private abortedBeforeStart(): Omit<NativeFitResult, 'parameters' | 'bestCheckpoint'> {
    return { stopReason: 'aborted', epochsRun: 0, bestEpoch: 0, bestValMaeGy: null };
  }

  /** A device that is not there is refused before anything is written (the engine would refuse it later). */
  private checkDevice(settings: TrainConfig): void {
    try {
      const device = loadNative().resolveDevice(settings.device);
      if (device === 'cpu' && (settings.precision === 'bf16' || settings.precision === 'fp16')) {
        throw invalidInput(`precision ${settings.precision} needs a CUDA device, and the run would train on the CPU (device ${settings.device}): use precision fp32 or auto`, {
          settings: ['precision', 'device'],
        });
      }
    } catch (error) {
      if (error instanceof VmatError) throw error;
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'string' && code.startsWith('VMAT_')) throw new VmatError(code as VmatErrorCode, (error as Error).message, { cause: error, settings: ['device'] });
      throw error;
    }
  }

  /**
   * One sentence when the patch is far larger than the training volumes: the sampler pads each patch to its size,
   * so a 128³ patch on 32×48×48 volumes computes 28 times what the data holds. Training goes on as asked.
   */
  protected patchWarning(patch: number, cases: NativeTrainCase[]): string | undefined {
    if (cases.length === 0) return undefined;
    const largest = cases.map((item) => item.shape.slice(1) as number[]).reduce((a, b) => (b.reduce((x, y) => x * y) > a.reduce((x, y) => x * y) ? b : a));
    const used = largest.reduce((product, edge) => product * Math.min(edge, patch), 1);
    const factor = patch ** 3 / used;
    const fits = Math.min(patch, Math.ceil(Math.max(...cases.flatMap((item) => item.shape.slice(1) as number[])) / 16) * 16);
    if (factor < 2 || fits >= patch) return undefined;
    return (
      `the patch size ${patch} is larger than the training volumes (the largest is ${largest.join('×')} voxels), so every patch is mostly padding and ` +
      `each step computes ${factor.toFixed(factor < 10 ? 1 : 0)}× what the volume holds: patchSize ${fits} covers every volume and trains on the same voxels far faster`
    );
  }

  /** The settings and split of a new run, checked; refuses a folder that exists (without overwrite) before writing. */
  private async planFresh(config: TrainConfigInput, overwrite: boolean, given: DatasetSplit | undefined, writer: boolean): Promise<RunPlan> {
    const settings = parseTrainConfig(config);
    const runDir = resolve(settings.logDir, settings.expName);
    // The other ranks of a data-parallel run write nothing: rank 0 may have made the folder already.
    if (writer && existsSync(runDir)) {
      if (!overwrite) {
        throw invalidInput(`the run folder ${runDir} already exists: set resume to continue it or overwrite to replace it (or choose another expName)`, { settings: ['resume', 'overwrite', 'expName'] });
      }
      const entries = await readdir(runDir);
      if (entries.length > 0 && !entries.includes(RUN_FILES.trainingConfig)) {
        throw invalidInput(`${runDir} exists and is not a run folder (no ${RUN_FILES.trainingConfig}): it is not replaced; choose another expName or logDir`, { settings: ['expName', 'logDir'] });
      }
    }
    // A study's fold gives its own split; otherwise the settings' fractions and seed make it.
    const split = given ?? (await splitDataset(settings.dataDir, { valSplit: settings.valSplit, testSplit: settings.testSplit, seed: settings.seed }));
    if (split.train.length === 0 || split.val.length === 0) {
      throw invalidInput(
        `${settings.dataDir} holds ${split.train.length + split.val.length + split.test.length} case file(s), which give ${split.train.length} training and ${split.val.length} validation case(s): training needs at least one of each (lower testSplit or add cases)`,
        { settings: ['valSplit', 'testSplit'] },
      );
    }
    return { runDir, settings, split };
  }

  /**
   * The settings of a resumed run: the saved ones, with the given ones that may change (RESUMABLE_SETTINGS) on top;
   * any other setting that differs is refused, naming each (old → new). The case files must be as recorded.
   */
  private async planResume(config: ResumeConfigInput, warn: (message: string) => void, signal?: AbortSignal): Promise<RunPlan> {
    const given: Partial<Record<TrainField, unknown>> = {};
    for (const [key, value] of Object.entries(config)) {
      if (value === undefined || key === 'inChannels') continue;
      if (!(key in TRAIN_FIELDS)) parseTrainConfig({ dataDir: '.', expName: 'x', [key]: value }); // its sentence naming the setting
      const parsed = TRAIN_FIELDS[key as TrainField].schema.safeParse(value);
      if (!parsed.success) parseTrainConfig({ dataDir: '.', expName: 'x', [key]: value }); // its sentence
      given[key as TrainField] = parsed.success ? parsed.data : value;
    }
    if (typeof given.expName !== 'string') throw invalidInput('resume needs expName (and logDir, unless it is runs): the run folder to continue', { settings: ['expName', 'logDir'] });
    const runDir = resolve(typeof given.logDir === 'string' ? given.logDir : 'runs', given.expName);
    if (!existsSync(runPaths(runDir).trainingConfig)) throw invalidInput(`cannot resume ${runDir}: it has no ${RUN_FILES.trainingConfig} (start it without resume)`, { settings: ['resume'] });
    const saved = readTrainingConfig(runDir);
    const split = readSplit(runDir);
    if (!split) throw invalidInput(`cannot resume ${runDir}: it has no ${RUN_FILES.split} (it was stopped before training began): start it again with overwrite`, { settings: ['resume', 'overwrite'] });

    const changes: ResumeRecord['changes'] = {};
    const refused: TrainField[] = [];
    for (const [field, value] of Object.entries(given) as [TrainField, unknown][]) {
      if (field === 'logDir' || field === 'expName') continue; // they name the folder, found above
      // The default site is not written (a run that records none is of it).
      const old = field === 'dataDir' ? saved.dataDir : field === 'site' ? (saved.settings.site ?? DEFAULT_SITE) : saved.settings[field];
      const now = field === 'dataDir' ? resolve(String(value)) : value;
      if (sameValue(old, now)) continue;
      if (RESUMABLE_SETTINGS.includes(field)) changes[field] = { from: old, to: now };
      else refused.push(field);
    }
    if (refused.length > 0) {
      const list = refused.map((field) => `${field} ${shown(field === 'dataDir' ? saved.dataDir : saved.settings[field])} → ${shown(field === 'dataDir' ? resolve(String(given.dataDir)) : given[field])}`);
      throw invalidInput(
        `cannot resume ${runDir} with other settings than it was trained with: ${list.join(', ')}; only ${RESUMABLE_SETTINGS.join(', ')} may change on resume (each change is recorded), so leave the others out or start a new run (another expName)`,
        { settings: refused },
      );
    }
    const settings = parseTrainConfig({ ...saved.settings, ...Object.fromEntries(Object.entries(changes).map(([field, change]) => [field, change.to])), inChannels: undefined });
    settings.dataDir = saved.dataDir;

    const recorded = readInputs(runDir);
    if (!recorded) {
      warn(`${runDir} records no fingerprints of its case files (${RUN_FILES.inputs}; it was started by an earlier version): whether they changed since cannot be checked`);
    } else {
      // An abort while hashing checks nothing more: the run stops before it starts (fit sees the signal next).
      const changed = await changedInputs(saved.dataDir, recorded, signal).catch((error: unknown) => {
        if (isAbortError(error) || signal?.aborted) return [];
        throw error;
      });
      const used = changed.filter((item) => item.fingerprint.role !== 'test');
      if (used.length > 0) {
        throw invalidInput(
          `cannot resume ${runDir}: the ${used[0]!.fingerprint.role === 'train' ? 'training' : 'validation'} case file ${join(saved.dataDir, used[0]!.fingerprint.file)} changed since the run started (${used[0]!.change})` +
            `${used.length > 1 ? `, and ${used.length - 1} more` : ''}; the epochs so far were trained on the recorded files: restore them, or start a new run`,
        );
      }
      for (const item of changed) warn(`the test case file ${join(saved.dataDir, item.fingerprint.file)} changed since the run started (${item.change}): an evaluation of the run will use the changed file`);
    }
    return { runDir, settings, split, resume: { point: this.resumePoint(runDir), changes, previous: saved } };
  }

  /** checkpoints/last when its weights and state are one pair, else previous (saying so), else a new beginning. */
  private resumePoint(runDir: string): ResumePoint & { note?: string } {
    const paths = runPaths(runDir);
    const previous = join(paths.checkpoints, CHECKPOINT_FILES.previous);
    if (wholePair(paths.lastCheckpoint)) return { from: 'last', path: paths.lastCheckpoint };
    const lastThere = existsSync(paths.lastCheckpoint) || existsSync(stateOf(paths.lastCheckpoint));
    if (wholePair(previous)) {
      const state = readCheckpointMetadata(stateOf(previous)).metadata;
      return {
        from: 'previous',
        path: previous,
        note: `${relative(runDir, paths.lastCheckpoint)} and ${basename(stateOf(paths.lastCheckpoint))} are ${lastThere ? 'not one pair (the process was stopped between writing them)' : 'missing'}: resuming from ${relative(runDir, previous)}, the save before them (epoch ${Number(state.epoch ?? 0) + 1}, step ${Number(state.step ?? 0) + 1})`,
      };
    }
    if (lastThere) {
      throw invalidInput(`cannot resume ${runDir}: ${relative(runDir, paths.lastCheckpoint)} and its state are not one pair, and there is no whole ${CHECKPOINT_FILES.previous} to fall back to: start the run again with overwrite`, {
        settings: ['overwrite'],
      });
    }
    return { from: 'none', path: '', note: `${runDir} has no checkpoint yet (it was stopped during its first epoch): training begins again at epoch 1` };
  }

  /**
   * Writes the files of a new run. A new folder is written beside its name and renamed into place, so that a kill
   * leaves the whole folder or none; with overwrite, only the files vmat-native wrote there are replaced, and
   * training_config.json comes first (it marks the folder as a run folder, which overwrite may replace again).
   */
  private async writeRunFolder(runDir: string, settings: TrainConfig, split: DatasetSplit, inputs: InputsFile, profile: SiteProfile): Promise<void> {
    const replacing = existsSync(runDir);
    if (replacing) await removeRunFiles(runDir, [settings.dataDir]);
    const dir = replacing ? runDir : join(dirname(runDir), `.${basename(runDir)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    if (!replacing) await removeStaleTemporaries(dirname(runDir));
    await createRunFolder(dir);
    try {
      await this.writeConfig(dir, settings, {
        splitSizes: { train: split.train.length, val: split.val.length, test: split.test.length },
        ...(isDefaultProfile(profile) ? {} : { siteProfile: profile }),
      });
      await writeMetrics(dir, [], metricsColumns(settings));
      await writeEnvironment(dir, this.environment(settings));
      await writeSplit(dir, split);
      await writeTestCases(dir, { test_cases: split.test, test_files: split.files.test, seed: split.seed });
      await writeInputs(dir, inputs);
      if (!replacing) await rename(dir, runDir);
    } catch (error) {
      if (!replacing) await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** What writers killed before their rename left in the run folder. */
  private async cleanTemporaries(runDir: string): Promise<void> {
    const paths = runPaths(runDir);
    for (const dir of [paths.dir, paths.checkpoints, paths.evaluation, paths.predictions, paths.figures]) await removeStaleTemporaries(dir);
  }

  /** training_config.json: the settings, with what was derived before (split sizes, parameters) kept and `extra` on top. */
  private async writeConfig(runDir: string, settings: TrainConfig, extra: Partial<TrainingConfigFile>): Promise<void> {
    const previous = existsSync(runPaths(runDir).trainingConfig) ? readTrainingConfig(runDir) : undefined;
    const { settings: _settings, ...rest } = previous ?? {};
    // The default site is not written (a run that records none is of it), so its files are those before profiles.
    const { site, ...withoutSite } = settings;
    const written = (site === DEFAULT_SITE ? withoutSite : settings) as TrainConfig;
    await writeTrainingConfig(runDir, { ...rest, ...extra, settings: written, dataDir: resolve(settings.dataDir) });
  }

  private environment(settings: TrainConfig): EnvironmentFile {
    const runtime = runtimeReport();
    return {
      startedAt: new Date().toISOString(),
      vmatNativeVersion: VERSION,
      libtorch: runtime.libtorchVersion,
      cuda: runtime.cuda.version,
      cudaAvailable: runtime.cuda.available,
      cudnn: runtime.cudnn.version,
      device: settings.device,
      deviceName:
        settings.device === 'cpu' || runtime.devices.length === 0
          ? `CPU (${os.cpus()[0]?.model ?? 'unknown'})`
          : runtime.devices[Number(settings.device.split(':')[1] ?? 0)]?.name ?? runtime.devices[0]!.name,
      threads: settings.threads || runtime.threads.libtorch,
      cpuCores: runtime.threads.cpuCores,
      os: runtime.platform,
      node: runtime.node,
      addonPath: runtime.addonPath,
      dataGit: gitState(resolve(settings.dataDir)),
      codeGit: gitState(resolve(import.meta.dirname, '..', '..')),
    };
  }

  /**
   * Writes every event to log.jsonl (and epochs to metrics.csv) in order, then hands it to the caller. Events that
   * come before the run folder exists (loading) wait until `open()`.
   */
  private eventSink(runDir: string, settings: TrainConfig, resume: RunPlan['resume'], onProgress: ((event: TrainEvent) => void) | undefined, writes: boolean) {
    let open!: () => void;
    let opened = false;
    let started = false;
    let chain = new Promise<void>((resolveOpen) => (open = resolveOpen));
    let failure: unknown;
    // The event file is created with the first event written, once the run folder exists.
    let tensorboard: TensorBoardLog | undefined;
    const write = async (event: TrainEvent) => {
      if (!writes) return;
      await appendLogEvent(runDir, event);
      if (settings.tensorboard) (tensorboard ??= new TensorBoardLog(runDir, { gradientLoss: settings.useGradientLoss })).write(event);
      if (event.type === 'start') {
        const resumes = resume
          ? [...(resume.previous.resumes ?? []), { at: new Date().toISOString(), startEpoch: event.startEpoch, startStep: event.startStep, from: resume.point.from, changes: resume.changes }]
          : undefined;
        await this.writeConfig(runDir, settings, { parameters: event.parameters, device: event.device, precision: event.precision, ...(resumes ? { resumes } : {}) });
        // On resume, rows of epochs that the checkpoint does not include are dropped (they are computed again).
        await truncateMetrics(runDir, event.startEpoch);
      }
      if (event.type === 'epoch') await appendMetricsRow(runDir, metricsRow(event));
    };
    const sink = (event: TrainEvent) => {
      if (event.type === 'start') started = true;
      chain = chain.then(() => write(event)).catch((error) => void (failure ??= error));
      onProgress?.(event);
      return chain;
    };
    sink.open = () => {
      opened = true;
      open();
    };
    sink.started = () => started;
    sink.flush = async () => {
      if (!opened) return;
      await chain;
      if (failure) throw failure;
    };
    return sink;
  }
}

/** What a run will be, decided before anything is written. */
interface RunPlan {
  runDir: string;
  settings: TrainConfig;
  split: DatasetSplit;
  resume?: { point: ResumePoint & { note?: string }; changes: ResumeRecord['changes']; previous: TrainingConfigFile };
}

interface NativeFitResult {
  stopReason: StopReason;
  epochsRun: number;
  bestEpoch: number;
  bestValMaeGy: number | null;
  bestCheckpoint: string | null;
  parameters: number;
}
