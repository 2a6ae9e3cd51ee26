import type { NativeTrainSettings } from '../train/native-settings.js';

/**
 * The shape of the compiled addon (binding/*.cc). Each binding module adds its functions here; TypeScript code
 * reaches the addon only through `loadNative()` and the wrappers in `src/native/call.ts`.
 */

export type NativeTypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Int32Array
  | BigInt64Array;

/** A tensor handed over from native code without a copy. */
export interface NativeTensor<T extends NativeTypedArray = NativeTypedArray> {
  data: T;
  shape: number[];
}

/** Options every long native call accepts (binding/promise_worker.h). */
export interface NativeCallOptions {
  onProgress?: (json: string) => void;
  cancel?: NativeCancelToken;
  threads?: number;
}

export interface NativeCancelToken {
  cancel(): void;
  readonly cancelled: boolean;
}

export interface NativeRuntimeInfo {
  libtorchVersion: string;
  cudaCompiled: boolean;
  torchCudaCompiled: boolean;
  cudaAvailable: boolean;
  cudaVersion: string;
  cudnnAvailable: boolean;
  cudnnVersion: number;
  threads: number;
  interopThreads: number;
  parallelInfo: string;
  /** c10d backends built in for data-parallel training: [], ['gloo'] or ['gloo', 'nccl']. */
  distributedBackends: string[];
  devices: { index: number; name: string; totalMemoryBytes: number; computeCapability: string }[];
}

/** One parameter tensor of the network (binding/model.cc). */
export interface NativeLayerSummary {
  name: string;
  shape: number[];
  parameters: number;
}

export interface NativeModelSummary {
  parameters: number;
  layers: NativeLayerSummary[];
}

/** binding/gamma.cc's result (src/eval/gamma.ts adds the settings used). */
export interface NativeGammaResult {
  /** Γ per reference voxel, the reference's shape; NaN where not evaluated */
  gamma: Float32Array;
  /** 100 · #(Γ ≤ 1) / #evaluated; NaN when no point was evaluated */
  passRatePct: number;
  nEvaluated: number;
  nPassed: number;
  meanGamma: number;
  medianGamma: number;
  normalisationGy: number;
  cutoffGy: number;
  /** where it ran: "cpu" or "cuda:N" */
  device: string;
  seconds: number;
}

/** A grid in patient coordinates: voxel (k, j, i) at origin + k·steps[0] + j·steps[1] + i·steps[2] (mm). */
export interface NativeGridPlacement {
  origin: [number, number, number];
  steps: [[number, number, number], [number, number, number], [number, number, number]];
}

/** How the synthetic cohort generator planned a case (metadata_json.plan). */
export interface NativeSynthPlan {
  beams: number;
  attenuationPerMm: number;
  penumbraSigmaMm: number;
  optimiserIterations: number;
  /** rectum and bladder outside the targets: at most this dose (Gy), with this weight relative to the targets' */
  oarLimitGy: number;
  oarWeight: number;
  /** (z, y, x) mm from the first voxel's centre */
  isocentreMm: [number, number, number];
}

export interface NativeAddon {
  addonVersion: string;
  CancelToken: new () => NativeCancelToken;
  info(): NativeRuntimeInfo;
  /** "auto" | "cpu" | "cuda" | "cuda:N" → the device that will be used; throws VMAT_INVALID_INPUT. */
  resolveDevice(requested: string): string;
  selfcheck: {
    scaleInPlace(array: Float32Array, factor: number): void;
    arange(n: number): NativeTensor<Float32Array>;
    sumAsync(
      array: Float32Array,
      steps: number,
      stepMs: number,
      options: NativeCallOptions,
    ): Promise<{ sum: number; stepsDone: number; cancelled: boolean }>;
  };
  /** binding/gamma.cc: the 3D gamma index; shapes/spacings/origins are [z, y, x]. */
  gamma(
    ref: Float32Array,
    refShape: number[],
    refSpacing: number[],
    refOrigin: number[],
    evalDose: Float32Array,
    evalShape: number[],
    evalSpacing: number[],
    evalOrigin: number[],
    settings: {
      dosePercent: number;
      dtaMm: number;
      cutoffPercent: number;
      normGy?: number;
      local: boolean;
      interpFraction: number;
      maxGamma: number;
      device?: string;
    },
    options: NativeCallOptions,
  ): Promise<NativeGammaResult>;
  /** binding/data.cc: case-data kernels (signed distance maps, body mask). */
  data: {
    signedDistanceMaps(
      masks: Uint8Array,
      shape: number[],
      spacingMm: number[],
      options: NativeCallOptions & { clipMm?: number },
    ): Promise<NativeTensor<Float32Array>>;
    deriveBodyMask(ct: Int16Array | Float32Array, shape: number[], options: NativeCallOptions): Promise<NativeTensor<Uint8Array>>;
    /** An ArrayBuffer on huge-page-advised memory (fast to fill from a file). */
    allocateBuffer(bytes: number): ArrayBuffer;
  };
  /** binding/dicom.cc: DICOM-RT kernels (native/include/vmat/rasterise.h, resample.h). */
  dicom: {
    /** Masks [structures, Z, Y, X] of polygons given in voxel index units (x = column, y = row) on their slices, and the voxels inside per structure. */
    rasterisePolygons(
      points: Float64Array,
      offsets: Int32Array,
      slices: Int32Array,
      labels: Int32Array,
      structures: number,
      shape: number[],
      options: NativeCallOptions,
    ): Promise<NativeTensor<Uint8Array> & { voxels: number[] }>;
    /** `source` on one placed grid, trilinearly at the voxel centres of another; `outside` beyond the source. */
    resampleTrilinear(
      source: Float32Array,
      sourceShape: number[],
      sourcePlacement: NativeGridPlacement,
      targetShape: number[],
      targetPlacement: NativeGridPlacement,
      outside: number,
      options: NativeCallOptions,
    ): Promise<NativeTensor<Float32Array>>;
  };
  /** BaselineUNet3D parameter table; throws VMAT_INVALID_INPUT for bad widths. */
  modelSummary(inChannels: number, baseChannels: number): NativeModelSummary;
  /** Seeds libtorch, builds the network with PyTorch's default init and writes it as a checkpoint (overwrites). */
  saveInitialWeights(
    path: string,
    inChannels: number,
    baseChannels: number,
    seed: number,
    options: NativeCallOptions,
  ): Promise<{ path: string; parameters: number; config: string }>;
  /** The `__metadata__` map of a safetensors file (reads the header only). */
  readCheckpointMetadata(path: string): Record<string, string>;
  /** binding/synth.cc: one synthetic prostate SIB case (native/include/vmat/synth.h). */
  synthCase(seed: number, index: number, shape: number[], spacingMm: number[], options: NativeCallOptions): Promise<NativeSynthCase>;
  /** Changes whenever the same (seed, index, shape, spacing) would give different bytes. */
  synthGeneratorVersion: string;
}

/** A synthetic case as the native generator returns it (arrays shared with native memory, [Z,Y,X] C order). */
export interface NativeSynthCase {
  caseId: string;
  ct: Int16Array;
  dose: Float32Array;
  /** [8,Z,Y,X] in the order of `structures` */
  masks: Uint8Array;
  body: Uint8Array;
  structures: string[];
  constraints: Float32Array;
  shape: [number, number, number];
  spacingMm: [number, number, number];
  plan: NativeSynthPlan;
}

/** One case for the training engine (binding/train.cc); the arrays are viewed, not copied. */
export interface NativeTrainCase {
  id: string;
  /** [C, Z, Y, X]: normalised CT + SDF channels */
  input: Float32Array;
  shape: [number, number, number, number];
  /** Gy */
  dose: Float32Array;
  body?: Uint8Array;
  ptv70?: Uint8Array;
  /** the conditioning vector: condDim values */
  constraints: Float32Array;
}

/** The sliding window of binding/train.cc's predictDose. */
export interface NativePredictSettings {
  patchSize: number;
  overlap: number;
  swBatch: number;
  device: string;
  normalisationDoseGy: number;
}

export interface NativeTrainAddon {
  trainModel(
    cases: { train: NativeTrainCase[]; val: NativeTrainCase[] },
    /** every key required, no other allowed (binding/settings.h) */
    settings: NativeTrainSettings,
    options: NativeCallOptions,
  ): Promise<{
    stopReason: 'max_epochs' | 'early_stop' | 'aborted';
    epochsRun: number;
    bestEpoch: number;
    bestValMaeGy: number | null;
    bestCheckpoint: string | null;
    parameters: number;
  }>;
  /** Sliding-window dose (Gy) [Z, Y, X] of a model input [C, Z, Y, X] with a checkpoint. */
  predictDose(
    checkpoint: string,
    input: Float32Array,
    shape: [number, number, number, number],
    constraints: Float32Array,
    /** every key required, no other allowed (binding/settings.h) */
    settings: NativePredictSettings,
    options: NativeCallOptions,
  ): Promise<NativeTensor<Float32Array>>;
}
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface NativeAddon extends NativeTrainAddon {}
