/**
 * Prediction (spec/training.md "Prediction"): a checkpoint's network over whole volumes by sliding window, natively
 * and off the event loop. The model settings (channels, structures, normalisation dose) come from the checkpoint.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

import { MAX_NORMALISATION_DOSE_GY } from '../config/schema.js';
import { loadCase, saveCase, type CaseData } from '../data/case.js';
import { buildModelInput } from '../data/inputs.js';
import { exportRtDose } from '../dicom/export.js';
import { listCaseFiles } from '../data/split.js';
import { CANONICAL_STRUCTURES } from '../data/structures.js';
import { invalidInput, VmatError } from '../errors.js';
import { noCaseFilesError } from '../data/foreign.js';
import { removeStaleTemporaries } from '../io/atomic.js';
import { readCheckpointMetadata } from '../model.js';
import { callNative } from '../native/call.js';
import { caseConditioning } from '../sites/conditioning.js';
import { caseSiteName, channelNamesOfCase, DEFAULT_SITE, isDefaultProfile, loadSiteProfile, parseSiteProfile, structureMatcher, type SiteProfile } from '../sites/profile.js';
import { loadNative } from '../native/loader.js';
import { EVALUATION_FILES } from '../run/layout.js';

/** The 13 constraint slots of data.md, by name (`--constraint rectum_v70=0.15`). */
export const CONSTRAINT_SLOTS = [
  'ptv70_rx',
  'ptv56_rx',
  'ptv50_4_rx',
  'rectum_v50',
  'rectum_v60',
  'rectum_v70',
  'rectum_dmax',
  'bladder_v65',
  'bladder_v70',
  'bladder_v75',
  'femoral_heads_v50',
  'bowel_v45_cc',
  'bowel_dose_level',
] as const;

export interface PredictOptions {
  /** Sliding-window patch edge (a multiple of 16); 128 by default. */
  patchSize?: number;
  overlap?: number;
  /** Windows per network call. */
  swBatch?: number;
  device?: string;
  /** Overrides of conditioning slots of the checkpoint's site by name (rectum_v70) or index ("5"). */
  constraints?: Record<string, number>;
  threads?: number;
  signal?: AbortSignal;
  /**
   * Keep the network's dose outside the body (the case's body / possible-dose mask, else the one derived from the
   * CT). By default it is set to 0 there: no dose is planned outside the patient, and the OpenKBP dose score
   * counts every Gy of it.
   */
  keepOutsideBody?: boolean;
}

export interface CheckpointModel {
  inChannels: number;
  baseChannels: number;
  structures: string[];
  normalisationDoseGy: number;
  /** the site profile the model was trained under (metadata `site_profile`; without it, the default site) */
  site: SiteProfile;
}

/** The slot index of a name (rectum_v70, Rectum-V70) or an index, in the site's conditioning vector (default prostate-sib's 13). */
export function constraintSlot(name: string, site: SiteProfile = loadSiteProfile(DEFAULT_SITE)): number {
  const slots = site.conditioning.map((slot) => slot.name);
  const key = name.toLowerCase().replace(/[\s.-]/g, '_');
  if (/^\d+$/.test(key)) {
    const index = Number(key);
    if (index < slots.length) return index;
  }
  const index = slots.indexOf(key);
  if (index < 0) throw invalidInput(`unknown constraint slot '${name}' of the site ${site.name}: expected an index 0-${slots.length - 1} or one of ${slots.join(', ')}`);
  return index;
}

/** What a checkpoint's metadata says about the model; a file that is not a vmat-native BaselineUNet3D is refused. */
export function checkpointModel(checkpoint: string): CheckpointModel {
  if (!existsSync(checkpoint)) throw invalidInput(`the checkpoint ${checkpoint} does not exist`);
  let read: ReturnType<typeof readCheckpointMetadata>;
  try {
    read = readCheckpointMetadata(checkpoint);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw invalidInput(`the checkpoint ${checkpoint} cannot be read: ${message.replace(/\.$/, '')}`, { cause: error });
  }
  const { config, metadata } = read;
  if (!config || config.architecture !== 'BaselineUNet3D') {
    throw invalidInput(
      `${checkpoint} is not a vmat-native BaselineUNet3D checkpoint (its metadata has ${config ? `architecture '${config.architecture}'` : 'no model config'})`,
    );
  }
  let structures: string[] = CANONICAL_STRUCTURES.slice();
  if (metadata.structures !== undefined) {
    try {
      structures = JSON.parse(metadata.structures) as string[];
    } catch {
      throw invalidInput(`the checkpoint ${checkpoint} has unreadable "structures" metadata`);
    }
  }
  if (!Array.isArray(structures) || !structures.every((name) => typeof name === 'string') || structures.length + 1 !== config.inChannels) {
    throw invalidInput(
      `the checkpoint ${checkpoint} takes ${config.inChannels} input channels but names ${Array.isArray(structures) ? structures.length : 0} structures (expected 1 CT + one per structure)`,
    );
  }
  const normalisationDoseGy = metadata.normalisation_dose_gy === undefined ? 70 : Number(metadata.normalisation_dose_gy);
  // The network's output is multiplied by it: 1e300 or Infinity would turn every dose into Infinity.
  if (!(normalisationDoseGy > 0 && normalisationDoseGy <= MAX_NORMALISATION_DOSE_GY)) {
    throw invalidInput(
      `the checkpoint ${checkpoint} has a normalisation dose of '${String(metadata.normalisation_dose_gy).slice(0, 40)}': expected a number of Gy above 0, at most ${MAX_NORMALISATION_DOSE_GY}`,
    );
  }
  let site: SiteProfile;
  try {
    site = metadata.site_profile === undefined ? loadSiteProfile(DEFAULT_SITE) : parseSiteProfile(JSON.parse(metadata.site_profile), `in the checkpoint ${checkpoint}`);
  } catch (error) {
    if (error instanceof VmatError) throw error;
    throw invalidInput(`the checkpoint ${checkpoint} has unreadable "site_profile" metadata`);
  }
  return { inChannels: config.inChannels, baseChannels: config.baseChannels, structures, normalisationDoseGy, site };
}

/** Predicts the dose of a case (Gy, [Z,Y,X]); returns the case with `dose` (0 outside the body unless `keepOutsideBody`) and `body` filled in. */
export async function predictCase(checkpoint: string, data: CaseData, options: PredictOptions = {}): Promise<CaseData> {
  const model = checkpointModel(checkpoint);
  const patchSize = options.patchSize ?? 128;
  if (!Number.isInteger(patchSize) || patchSize < 16 || patchSize % 16 !== 0) throw invalidInput(`patchSize must be a multiple of 16, got ${patchSize}`, { settings: ['patchSize'] });
  const overlap = options.overlap ?? 0.5;
  if (!(overlap >= 0 && overlap <= 0.9)) throw invalidInput(`overlap must be a fraction in [0, 0.9], got ${overlap}`, { settings: ['overlap'] });
  const swBatch = options.swBatch ?? 2;
  if (!Number.isInteger(swBatch) || swBatch < 1) throw invalidInput(`swBatch must be an integer >= 1, got ${swBatch}`, { settings: ['swBatch'] });
  // The checkpoint's site: its conditioning vector, and the case's structures matched through its aliases.
  const constraints = Float32Array.from(caseConditioning(model.site, data));
  for (const [name, value] of Object.entries(options.constraints ?? {})) {
    if (!Number.isFinite(value)) throw invalidInput(`constraint ${name} must be a number, got ${value}`);
    constraints[constraintSlot(name, model.site)] = value;
  }
  const match = structureMatcher(model.site);
  const channels = model.structures.map((name) => (match(name) === null || match(name) === 'body' ? name : match(name)!));
  const matched = { ...data, structures: channelNamesOfCase(model.site, data.structures) };
  const { input, body } = await buildModelInput(matched, channels, { signal: options.signal, threads: options.threads });
  const [z, y, x] = data.shape;
  const native = loadNative();
  const dose = await callNative(
    (callOptions) =>
      native.predictDose(
        checkpoint,
        input,
        [model.inChannels, z, y, x],
        constraints,
        { patchSize, overlap, swBatch, device: options.device ?? 'auto', normalisationDoseGy: model.normalisationDoseGy },
        callOptions,
      ),
    { signal: options.signal, threads: options.threads, settings: ['patchSize', 'overlap', 'swBatch'] },
  );
  const notFinite = dose.data.findIndex((value) => !Number.isFinite(value));
  if (notFinite >= 0) {
    throw new VmatError(
      'VMAT_NOT_FINITE',
      `the prediction of ${data.caseId} with ${checkpoint} holds ${dose.data[notFinite]} Gy at flat index ${notFinite}: the checkpoint gives no usable dose (nothing was written)`,
    );
  }
  if (!options.keepOutsideBody) for (let i = 0; i < body.length; i++) if (!body[i]) dose.data[i] = 0;
  return {
    ...data,
    dose: dose.data,
    constraints,
    body,
    metadata: {
      ...data.metadata,
      predicted_from_checkpoint: resolve(checkpoint),
      prediction_patch_size: patchSize,
      prediction_overlap: overlap,
      prediction_outside_body: options.keepOutsideBody ? 'kept' : 'zeroed',
      // evaluate judges the prediction under the model's site (absent: the default site)
      ...(isDefaultProfile(model.site) ? {} : { prediction_site_profile: model.site }),
      // the constraint vector is the model's site's
      ...(caseSiteName(data.metadata) === model.site.name ? {} : { site: model.site.name }),
    },
  };
}

export interface PredictFilesOptions extends PredictOptions {
  overwrite?: boolean;
  /** also write each prediction as an RTDOSE `<case>_pred.dcm` here (cases imported with `import dicom`) */
  dicomOut?: string;
  onCase?: (event: { case: string; index: number; of: number; output: string; dicom?: string; seconds: number }) => void;
}

/** The case files of an input: a file, or every *.npz of a folder. */
export async function expandInputs(input: string): Promise<string[]> {
  if (!existsSync(input)) throw invalidInput(`the input ${input} does not exist: expected a case file or a folder of them`);
  if (statSync(input).isDirectory()) {
    const files = await listCaseFiles(input);
    if (files.length === 0) throw noCaseFilesError(`${input} holds no case files (*.npz)`, input);
    return files.map((name) => join(input, name));
  }
  return [input];
}

/**
 * Predicts every input and writes `<case>_pred.npz` (format 1: dose, spacing, placement, structures, masks, body,
 * ct, metadata) into `outDir`, and with `dicomOut` an RTDOSE `<case>_pred.dcm` there too. Each file appears whole or not at all; existing files are kept unless `overwrite`.
 */
export async function predictFiles(checkpoint: string, inputs: string[], outDir: string, options: PredictFilesOptions = {}): Promise<string[]> {
  checkpointModel(checkpoint);
  // The input's file name names the output (as a case id does: never a path, never one of the tool's own names).
  const outputs = inputs.map((input) => join(outDir, EVALUATION_FILES.predictionFile(basename(input).replace(/\.npz$/i, ''))));
  const dicomOutputs = options.dicomOut ? outputs.map((output) => join(options.dicomOut!, basename(output).replace(/\.npz$/, '.dcm'))) : [];
  if (!options.overwrite) {
    const existing = [...outputs, ...dicomOutputs].find((path) => existsSync(path));
    if (existing) throw invalidInput(`${existing} already exists; set overwrite to replace it`, { settings: ['overwrite'] });
  }
  await mkdir(outDir, { recursive: true });
  if (options.dicomOut) await mkdir(options.dicomOut, { recursive: true });
  // What an earlier predict, killed before its renames, left there.
  await removeStaleTemporaries(outDir);
  if (options.dicomOut) await removeStaleTemporaries(options.dicomOut);
  for (let i = 0; i < inputs.length; i++) {
    const started = Date.now();
    const data = await loadCase(inputs[i]!);
    if (options.dicomOut && typeof data.metadata.frame_of_reference_uid !== 'string') {
      throw invalidInput(`${inputs[i]} was not imported from DICOM (it records no frame of reference), so dicomOut cannot place its dose; export it with a reference CT folder instead (exportRtDose with reference)`, { settings: ['dicomOut'] });
    }
    const predicted = await predictCase(checkpoint, data, options);
    try {
      await saveCase(outputs[i]!, { ...predicted, masksSdf: undefined }, { overwrite: options.overwrite });
    } catch (error) {
      if (error instanceof VmatError) throw error;
      throw new VmatError('VMAT_IO', `cannot write ${outputs[i]}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    if (options.dicomOut) await exportRtDose(predicted, { out: dicomOutputs[i]!, overwrite: options.overwrite });
    options.onCase?.({ case: data.caseId, index: i + 1, of: inputs.length, output: outputs[i]!, dicom: dicomOutputs[i], seconds: (Date.now() - started) / 1000 });
  }
  return outputs;
}
