/** vmat-native's library surface. */
export { VERSION } from './version.js';
export { VmatError, isUserError } from './errors.js';
export { runtimeReport, type RuntimeReport } from './runtime.js';
export { loadNative } from './native/loader.js';
export { loadCase, saveCase, checkCase, type CaseData, type CaseProblem, type LoadCaseOptions, type SaveCaseOptions } from './data/case.js';
export { readNpz, writeNpz, listNpz } from './data/npz.js';
export { parseNpy, encodeNpy, type NpyArray, type WritableNpyArray } from './data/npy.js';
export { CANONICAL_STRUCTURES, mapStructures, structureKey } from './data/structures.js';
