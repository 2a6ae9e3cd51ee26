/**
 * The settings object that crosses into the native training engine (binding/train.cc's TrainOptionsFrom), built
 * from the one schema (src/config/schema.ts) with its type declared once here. The binding requires every key with
 * its type and refuses any other, so TypeScript and C++ cannot drift apart silently.
 *
 * To add a setting the engine needs: the field in TRAIN_FIELDS (schema.ts), its key in NATIVE_TRAIN_FIELDS below,
 * the member in TrainerOptions (native/include/vmat/trainer.h) and one line in TrainOptionsFrom (binding/train.cc).
 */
import type { TrainConfig } from '../config/schema.js';
import type { NativeDistributedSettings } from './distributed.js';

/** The schema's settings the engine reads, by the schema's names. */
export const NATIVE_TRAIN_FIELDS = [
  'inChannels',
  'baseChannels',
  'epochs',
  'batchSize',
  'patchSize',
  'patchesPerVolume',
  'lr',
  'weightDecay',
  'betas',
  'minLr',
  'gradClip',
  'precision',
  'patience',
  'seed',
  'useGradientLoss',
  'gradientLossWeight',
  'negativePenaltyWeight',
  'useVggLoss',
  'vggLossWeight',
  'vggSliceStride',
  'vggWeights',
  'useStructureWeighted',
  'structureWeightedWeight',
  'structureTargetWeight',
  'structureBoundaryWeight',
  'structureBackgroundWeight',
  'structureBoundaryWidthMm',
  'useAsymmetricPtv',
  'asymmetricPtvWeight',
  'asymmetricUnderdoseWeight',
  'asymmetricOverdoseWeight',
  'useDvhLoss',
  'dvhLossWeight',
  'dvhBins',
  'dvhMaxDose',
  'normalisationDoseGy',
  'device',
  'numWorkers',
  'swBatch',
  'overlap',
] as const satisfies readonly (keyof TrainConfig)[];

/** What the run adds to the schema's settings. */
export interface NativeRunSettings {
  /** Length of every case's conditioning (constraint) vector: the model's FiLM input. */
  condDim: number;
  /** Pairs [a, b] of model input channels that the x flip of the patch sampler swaps (left and right structures). */
  leftRightPairs: [number, number][];
  /** RUN/checkpoints */
  checkpointDir: string;
  /** Continue from resumeFrom and its .state file. */
  resume: boolean;
  /** The checkpoint to resume from (checkpoints/last or previous.safetensors); '' for a new run. */
  resumeFrom: string;
  /** Written into every checkpoint's metadata (what `predict` needs besides the weights). */
  checkpointMetadata: Record<string, string>;
  /** Model-input channels of the structure loss terms (lossChannels in schema.ts). */
  targetChannels: number[];
  boundaryChannels: number[];
  dvhChannels: number[];
  /** This process's rank of a data-parallel run (worldSize 1: one process). */
  distributed: NativeDistributedSettings;
}

export type NativeTrainSettings = Pick<TrainConfig, (typeof NATIVE_TRAIN_FIELDS)[number]> & NativeRunSettings;

/** The engine's settings of a run: exactly the keys binding/train.cc reads. */
export function nativeTrainSettings(config: TrainConfig, run: NativeRunSettings): NativeTrainSettings {
  const picked = Object.fromEntries(NATIVE_TRAIN_FIELDS.map((key) => [key, config[key]])) as Pick<TrainConfig, (typeof NATIVE_TRAIN_FIELDS)[number]>;
  return { ...picked, ...run };
}
