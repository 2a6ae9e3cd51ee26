/** vmat-native's library surface. */
export { VERSION } from './version.js';
export { VmatError, isUserError } from './errors.js';
export { runtimeReport, type RuntimeReport } from './runtime.js';
export { loadNative } from './native/loader.js';
export { modelSummary, saveInitialWeights, readCheckpointMetadata, parseModelConfig, type ModelConfig, type ModelSummary, type LayerSummary, type CheckpointMetadata } from './model.js';
