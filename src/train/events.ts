/**
 * The events of a training run: what `fit()`'s onProgress sees and log.jsonl holds, one per line. The native engine
 * (native/src/trainer.cpp) sends all but `load` as JSON.
 */
export type StopReason = 'max_epochs' | 'early_stop' | 'aborted';

export interface StartEvent {
  type: 'start';
  parameters: number;
  device: string;
  precision: string;
  stepsPerEpoch: number;
  trainCases: number;
  valCases: number;
  startEpoch: number;
  startStep: number;
}
export interface StepEvent {
  type: 'step';
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  loss: number;
  lr: number;
  voxelsPerSecond: number;
  etaSeconds: number;
}
export interface EpochEvent {
  type: 'epoch';
  epoch: number;
  epochs: number;
  lr: number;
  trainLoss: number;
  trainMse: number;
  trainGrad: number;
  trainNeg: number;
  /** The later loss terms (unweighted), present where the run trains with them. */
  trainVgg?: number;
  trainStructureWeighted?: number;
  trainAsymmetricPtv?: number;
  trainDvh?: number;
  valLoss: number;
  valMaeGy: number;
  valMaePtv70Gy: number | null;
  epochSeconds: number;
  voxelsPerSecond: number;
  /** Fraction of the training steps' time spent waiting for the patch loader (device idle for want of data). */
  dataWaitFraction: number;
  improved: boolean;
  bestEpoch: number;
  bestValMaeGy: number;
}
export interface CheckpointEvent {
  type: 'checkpoint';
  kind: 'best' | 'last';
  path: string;
  epoch: number;
  valMaeGy?: number;
  step?: number;
}
/** Validation of one whole case, after each epoch. */
export interface ValidateEvent {
  type: 'validate';
  epoch: number;
  case: string;
  index: number;
  of: number;
}
/** Loading progress (before the native engine starts). */
export interface LoadEvent {
  type: 'load';
  case: string;
  index: number;
  of: number;
  warnings: string[];
}
export type TrainEvent = LoadEvent | StartEvent | StepEvent | ValidateEvent | EpochEvent | CheckpointEvent;
