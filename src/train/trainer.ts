/**
 * `fit()`: the run folder (spec/training.md, written through src/run/), the split, the cases loaded into memory, and
 * the native training engine (native/src/trainer.cpp) running off the event loop with its events written to
 * log.jsonl and metrics.csv.
 */
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { join, resolve } from 'node:path';

import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from '../config/schema.js';
import { loadCase, type CaseData } from '../data/case.js';
import { buildModelInput } from '../data/inputs.js';
import { splitDataset, type DatasetSplit } from '../data/split.js';
import { mapStructures, structureKey } from '../data/structures.js';
import { invalidInput, isAbortError, VmatError } from '../errors.js';
import type { NativeTrainCase } from '../native/addon.js';
import { callNative } from '../native/call.js';
import { loadNative } from '../native/loader.js';
import { CONSTRAINT_SLOTS } from '../predict/predict.js';
import {
  appendLogEvent,
  appendMetricsRow,
  createRunFolder,
  readSplit,
  readTrainingConfig,
  RUN_FILES,
  runPaths,
  truncateMetrics,
  writeEnvironment,
  writeMetrics,
  writeSplit,
  writeTestCases,
  writeTrainingConfig,
  writeTrainingSummary,
  type EnvironmentFile,
  type FinishedSummary,
  type GitState,
  type MetricsRow,
  type TrainingConfigFile,
} from '../run/index.js';
import { runtimeReport } from '../runtime.js';
import { VERSION } from '../version.js';
import type { EpochEvent, StopReason, TrainEvent } from './events.js';
import { resolveDistributed, type DistributedOptions } from './distributed.js';
import { nativeTrainSettings } from './native-settings.js';

export type * from './events.js';
export type { DistributedOptions } from './distributed.js';

export interface FitOptions {
  onProgress?: (event: TrainEvent) => void;
  signal?: AbortSignal;
  /** Continue the run folder from checkpoints/last (its training_config.json and split are reused). */
  resume?: boolean;
  /** Replace an existing run folder. */
  overwrite?: boolean;
  /**
   * This process's rank of a data-parallel run (every rank calls fit() with the same config; see distributedFromEnv).
   * Rank 0 writes the run folder and sends the events; the other ranks write nothing and send no events.
   */
  distributed?: DistributedOptions;
}

/** What a run ended with (training_summary.json holds it, with the time it finished). */
export type FitResult = Omit<FinishedSummary, 'finishedAt'>;

/** The metrics.csv row of an epoch. */
function metricsRow(event: EpochEvent): MetricsRow {
  return {
    epoch: event.epoch,
    lr: event.lr,
    train_loss: event.trainLoss,
    train_mse: event.trainMse,
    train_grad: event.trainGrad,
    train_neg: event.trainNeg,
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
  /** Trains one run; resolves when it stops (max epochs, early stop, abort). */
  async fit(config: TrainConfigInput, options: FitOptions = {}): Promise<FitResult> {
    const started = Date.now();
    const given = parseTrainConfig(config);
    const distributed = resolveDistributed(options.distributed);
    const writer = distributed.rank === 0;
    const runDir = resolve(given.logDir, given.expName);
    const settings = writer ? await this.prepareRunFolder(runDir, given, config, options) : this.rankSettings(runDir, given, config, options);
    const split = writer ? await this.resolveSplit(runDir, settings, options.resume === true) : await this.rankSplit(runDir, settings, options.resume === true);
    const emit = writer ? this.eventSink(runDir, options.onProgress) : Object.assign(async () => {}, { flush: async () => {} });

    const load = async (ids: string[], files: string[]) => {
      const cases: NativeTrainCase[] = [];
      for (let i = 0; i < files.length; i++) {
        if (options.signal?.aborted) break;
        // An abort while a case loads stops the run as one during training does: fit resolves, stop reason aborted.
        const item = await this.loadTrainingCase(join(settings.dataDir, files[i]!), settings, options.signal).catch((error: unknown) => {
          if (isAbortError(error)) return undefined;
          throw error;
        });
        if (!item) break;
        await emit({ type: 'load', case: ids[i]!, index: i + 1, of: files.length, warnings: item.warnings });
        cases.push(item.case);
      }
      return cases;
    };
    const train = await load(split.train, split.files.train);
    const val = await load(split.val, split.files.val);

    // The x flip of the patch sampler swaps left and right structures' channels (channel 0 is the CT).
    const channel = (name: string) => settings.structures.findIndex((s) => structureKey(s) === structureKey(name));
    const [left, right] = [channel('Femur_L'), channel('Femur_R')];
    const leftRightPairs: [number, number][] = left >= 0 && right >= 0 ? [[1 + left, 1 + right]] : [];
    let summary: FitResult;
    try {
      const result = options.signal?.aborted
        ? this.abortedBeforeStart()
        : await callNative<NativeFitResult, TrainEvent>(
            (native) =>
              loadNative().trainModel(
                { train, val },
                nativeTrainSettings(settings, {
                  // data.md's constraint vector; a case whose vector has another length is refused, naming it.
                  condDim: CONSTRAINT_SLOTS.length,
                  leftRightPairs,
                  checkpointDir: runPaths(runDir).checkpoints,
                  resume: options.resume === true,
                  checkpointMetadata: this.checkpointMetadata(settings),
                  distributed,
                }),
                native,
              ),
            { onProgress: (event) => void emit(event), signal: options.signal, threads: settings.threads || undefined, abort: 'result' },
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
      await emit.flush();
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

  /** A rank other than 0 writes nothing: the settings rank 0 uses (on resume, the run folder's, read back). */
  private rankSettings(runDir: string, given: TrainConfig, input: TrainConfigInput, options: FitOptions): TrainConfig {
    if (!options.resume) return given;
    if (!existsSync(runPaths(runDir).trainingConfig)) throw invalidInput(`cannot resume ${runDir}: it has no ${RUN_FILES.trainingConfig} (start it without resume; every rank must see the run folder)`, { settings: ['resume'] });
    const explicit = Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined));
    return parseTrainConfig({ ...readTrainingConfig(runDir).settings, ...explicit, inChannels: undefined });
  }

  /** A rank other than 0: the split rank 0 writes (the same function of the data folder and seed), or reads back. */
  private async rankSplit(runDir: string, settings: TrainConfig, resume: boolean): Promise<DatasetSplit> {
    const saved = resume ? readSplit(runDir) : null;
    return saved ?? (await splitDataset(settings.dataDir, { valSplit: settings.valSplit, testSplit: settings.testSplit, seed: settings.seed }));
  }

  /** Loads one case for training or validation: the model input, the dose, body and PTV70 masks, the constraints. */
  protected async loadTrainingCase(path: string, settings: TrainConfig, signal?: AbortSignal): Promise<{ case: NativeTrainCase; warnings: string[] }> {
    const data: CaseData = await loadCase(path);
    if (!data.dose) throw invalidInput(`${path} has no dose: training and validation cases need one`);
    const { input, body, warnings } = await buildModelInput(data, settings.structures, { signal, threads: settings.threads || undefined });
    const [z, y, x] = data.shape;
    const voxels = z * y * x;
    const ptvIndex = mapStructures(data.structures, ['PTV70']).indices[0]!;
    return {
      case: {
        id: data.caseId,
        input,
        shape: [1 + settings.structures.length, z, y, x],
        dose: data.dose,
        body,
        ptv70: ptvIndex >= 0 ? data.masks.subarray(ptvIndex * voxels, (ptvIndex + 1) * voxels) : undefined,
        constraints: data.constraints,
      },
      warnings,
    };
  }

  /** What every checkpoint of the run carries besides the model config, so that `predict` needs nothing else. */
  protected checkpointMetadata(settings: TrainConfig): Record<string, string> {
    return {
      structures: JSON.stringify(settings.structures),
      normalisation_dose_gy: String(settings.normalisationDoseGy),
      patch_size: String(settings.patchSize),
      exp_name: settings.expName,
      vmat_native_version: VERSION,
    };
  }

  /** Aborted while the cases were loading: the native engine never started, nothing was trained. */
  private abortedBeforeStart(): NativeFitResult {
    return { stopReason: 'aborted', epochsRun: 0, bestEpoch: 0, bestValMaeGy: null, bestCheckpoint: null, parameters: 0 };
  }

  /** Creates (or checks, on resume) the run folder and returns the settings of the run. */
  private async prepareRunFolder(runDir: string, given: TrainConfig, input: TrainConfigInput, options: FitOptions): Promise<TrainConfig> {
    const exists = existsSync(runDir);
    if (options.resume && options.overwrite) throw invalidInput('resume and overwrite exclude each other: continue the run or replace it', { settings: ['resume', 'overwrite'] });
    if (options.resume) {
      if (!existsSync(runPaths(runDir).trainingConfig)) throw invalidInput(`cannot resume ${runDir}: it has no ${RUN_FILES.trainingConfig} (start it without resume)`, { settings: ['resume'] });
      const saved = readTrainingConfig(runDir);
      // The saved settings, with the fields the caller gave explicitly on top (e.g. more epochs, another device).
      const explicit = Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined));
      const settings = parseTrainConfig({ ...saved.settings, ...explicit, inChannels: undefined });
      await this.writeConfig(runDir, settings, {});
      return settings;
    }
    if (exists) {
      if (!options.overwrite) {
        throw invalidInput(`the run folder ${runDir} already exists: set resume to continue it or overwrite to replace it (or choose another expName)`, { settings: ['resume', 'overwrite', 'expName'] });
      }
      const entries = await readdir(runDir);
      if (entries.length > 0 && !entries.includes(RUN_FILES.trainingConfig)) {
        throw invalidInput(`${runDir} exists and is not a run folder (no ${RUN_FILES.trainingConfig}): it is not replaced; choose another expName or logDir`, { settings: ['expName', 'logDir'] });
      }
      await rm(runDir, { recursive: true, force: true });
    }
    await createRunFolder(runDir);
    await writeMetrics(runDir, []);
    await this.writeConfig(runDir, given, {});
    await writeEnvironment(runDir, this.environment(given));
    return given;
  }

  /** training_config.json: the settings, with what was derived before (split sizes, parameters) kept and `extra` on top. */
  private async writeConfig(runDir: string, settings: TrainConfig, extra: Partial<TrainingConfigFile>): Promise<void> {
    const previous = existsSync(runPaths(runDir).trainingConfig) ? readTrainingConfig(runDir) : undefined;
    const { settings: _settings, ...rest } = previous ?? {};
    await writeTrainingConfig(runDir, { ...rest, ...extra, settings, dataDir: resolve(settings.dataDir) });
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

  /** The split: computed and written on a fresh run, read back on resume (so the test cases never change). */
  private async resolveSplit(runDir: string, settings: TrainConfig, resume: boolean): Promise<DatasetSplit> {
    const saved = resume ? readSplit(runDir) : null;
    if (saved) return saved;
    const split = await splitDataset(settings.dataDir, { valSplit: settings.valSplit, testSplit: settings.testSplit, seed: settings.seed });
    await writeSplit(runDir, split);
    await writeTestCases(runDir, { test_cases: split.test, test_files: split.files.test, seed: split.seed });
    await this.writeConfig(runDir, settings, {
      splitSizes: { train: split.train.length, val: split.val.length, test: split.test.length },
    });
    return split;
  }

  /** Writes every event to log.jsonl (and epochs to metrics.csv) in order, then hands it to the caller. */
  private eventSink(runDir: string, onProgress?: (event: TrainEvent) => void) {
    let chain: Promise<void> = Promise.resolve();
    let failure: unknown;
    const write = async (event: TrainEvent) => {
      await appendLogEvent(runDir, event);
      if (event.type === 'start') {
        await this.writeConfig(runDir, readTrainingConfig(runDir).settings, { parameters: event.parameters, device: event.device, precision: event.precision });
        // On resume, rows of epochs that the checkpoint does not include are dropped (they are computed again).
        await truncateMetrics(runDir, event.startEpoch);
      }
      if (event.type === 'epoch') await appendMetricsRow(runDir, metricsRow(event));
    };
    const sink = (event: TrainEvent) => {
      chain = chain.then(() => write(event)).catch((error) => void (failure ??= error));
      onProgress?.(event);
      return chain;
    };
    sink.flush = async () => {
      await chain;
      if (failure) throw failure;
    };
    return sink;
  }
}

interface NativeFitResult {
  stopReason: StopReason;
  epochsRun: number;
  bestEpoch: number;
  bestValMaeGy: number | null;
  bestCheckpoint: string | null;
  parameters: number;
}
