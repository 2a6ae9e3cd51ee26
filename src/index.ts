/** vmat-native's library surface. */
export { VERSION } from './version.js';
export { VmatError, AbortError, isAbortError, isUserError } from './errors.js';
export { runtimeReport, type RuntimeReport } from './runtime.js';
export { loadNative } from './native/loader.js';
export { loadCase, saveCase, checkCase, type CaseData, type CaseProblem, type LoadCaseOptions, type SaveCaseOptions } from './data/case.js';
export { readNpz, writeNpz, listNpz } from './data/npz.js';
export { parseNpy, encodeNpy, type NpyArray, type WritableNpyArray } from './data/npy.js';
export { CANONICAL_STRUCTURES, mapStructures, structureKey } from './data/structures.js';
export { splitDataset, splitIndices, listCaseFiles, type DatasetSplit, type SplitOptions } from './data/split.js';
export { MT19937 } from './data/mt19937.js';
export { buildModelInput, normaliseCt, type ModelInput } from './data/inputs.js';
export { signedDistanceMaps, deriveBodyMask } from './data/sdf.js';
export { validateDataset, type ValidationReport } from './data/validate.js';
export { doseMetrics, dvhCurve, type DoseMetrics, type DvhCurve } from './metrics/dvh.js';
export { modelSummary, saveInitialWeights, readCheckpointMetadata, parseModelConfig, type ModelConfig, type ModelSummary, type LayerSummary, type CheckpointMetadata } from './model.js';
export { Trainer, RESUMABLE_SETTINGS, type FitOptions, type FitResult, type ResumeConfigInput, type TrainEvent, type StopReason } from './train/trainer.js';
export { distributedFromEnv, firstSlurmHost, resolveDistributed, type DistributedOptions } from './train/distributed.js';
export { nativeTrainSettings, NATIVE_TRAIN_FIELDS, type NativeTrainSettings, type NativeRunSettings } from './train/native-settings.js';
export { parseTrainConfig, trainConfigSchema, TRAIN_FIELDS, type TrainConfig, type TrainConfigInput } from './config/schema.js';
export { predictCase, predictFiles, checkpointModel, constraintSlot, CONSTRAINT_SLOTS, type PredictOptions } from './predict/predict.js';
export { importDicom, type ImportDicomOptions, type ImportDicomResult, type ImportedCase, type FailedCase } from './dicom/import.js';
export { exportRtDose, type ExportRtDoseOptions, type ExportedRtDose } from './dicom/export.js';
export { exportNifti, type ExportNiftiOptions } from './dicom/nifti.js';
export { gammaIndex, resolveGammaSettings, doseVolumeOf, type DoseVolume, type GammaSettings, type GammaResult, type GammaProgress } from './eval/gamma.js';
export { evaluateCase, evaluationSite, gammaStats, summariseEvaluations, summariseOpenKbpEvaluations, type CaseEvaluation, type EvaluateOptions, type GammaStats } from './eval/evaluate.js';
export {
  importOpenKbp,
  readOpenKbpPatient,
  findOpenKbpPatients,
  missingOpenKbpFiles,
  type ImportOpenKbpOptions,
  type OpenKbpImportResult,
  type OpenKbpPatient,
  type OpenKbpPatientResult,
} from './openkbp/import.js';
export { openKbpCaseScores, summariseOpenKbp, isOpenKbpCase, type OpenKbpCaseScores, type OpenKbpSummary, type OpenKbpMetric } from './openkbp/scores.js';
export { OPENKBP_CT_OFFSET, OPENKBP_OARS, OPENKBP_TARGETS, caseIndexOf as openKbpCaseIndex } from './openkbp/layout.js';
export { doseError, dilateMask, constraintTable, constraintLimits, constraintLabel, type ConstraintCheck } from './eval/metrics.js';
export {
  loadSiteProfile,
  parseSiteProfile,
  shippedSites,
  channelNames,
  defaultConditioning,
  structureMatcher,
  leftRightChannelPairs,
  DEFAULT_SITE,
  type SiteProfile,
  type ConditioningSlot,
  type ConstraintSpec,
} from './sites/profile.js';
export { achievedConditioning, caseConditioning, conditioningFor } from './sites/conditioning.js';
export {
  evaluateRun,
  evaluatePredictions,
  pairCases,
  evaluationProgressLine,
  type EvaluationProgress,
  type EvaluatePredictionsOptions,
  type EvaluationResult,
  type RunEvaluationResult,
  type CasePair,
} from './eval/run.js';
export * as runFolder from './run/index.js';
export {
  runPaths,
  evaluationPaths,
  RUN_FILES,
  METRICS_COLUMNS,
  CHECKPOINT_FILES,
  EVALUATION_FILES,
  caseFileStem,
  type RunPaths,
  type EvaluationPaths,
  type TrainingConfigFile,
  type SplitFile,
  type TestCasesFile,
  type EnvironmentFile,
  type MetricsRow,
  type TrainingSummaryFile,
  type EvaluationSummaryFile,
  type CaseEvaluationFile,
  type InputsFile,
  type ResumeRecord,
} from './run/index.js';
export {
  synthesizeCase,
  synthesizeCohort,
  synthGeneratorVersion,
  SYNTH_DEFAULTS,
  type SynthCaseOptions,
  type SynthCohortOptions,
  type SynthCohortResult,
  type SynthPlan,
  type SynthProgress,
} from './data/synth.js';
export { renderCaseSlicePng, doseColour, type CasePlane, type CaseSliceOptions } from './figures/case-slice.js';
export { runStudy, STUDY_FILES, type StudyOptions, type StudyProgress, type StudyResult, type StudySummary, type StudyRunSummary } from './study/run.js';
export { parseStudyConfig, parseArm, splitArms, DEFAULT_STUDY_METRICS, type StudyConfig, type StudyConfigInput, type StudyArm, type StudyFile } from './study/config.js';
export { seedSpread, pairedDifference, differenceSentence, studyStatistics, type StudyRecord, type StudyStatistics, type PairedDifference, type SeedSpread, type StudyMetric } from './study/stats.js';
export { kFoldIndices, kFoldDataset, type FoldSplit } from './study/folds.js';
