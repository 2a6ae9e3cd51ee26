/**
 * The synthetic prostate SIB cohort (cli.md "The synthetic cohort"): made natively (binding/synth.cc), deterministic
 * per (seed, index), written as format 1 case files. Every command works on it without patient data.
 */
import { existsSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import { abortError, invalidInput, isAbortError, VmatError } from '../errors.js';
import { doseMetrics } from '../metrics/dvh.js';
import type { NativeSynthPlan } from '../native/addon.js';
import { callNative } from '../native/call.js';
import { loadNative } from '../native/loader.js';
import { saveCase, FORMAT_1, type CaseData } from './case.js';
import { MAX_NPZ_ENTRY_BYTES } from './npz.js';

export const SYNTH_DEFAULTS = {
  cases: 23,
  seed: 42,
  shape: [96, 128, 128] as [number, number, number],
  spacingMm: [2.5, 2, 2] as [number, number, number],
};

/** Peak memory of making and writing one case, per voxel: 35 bytes measured at 96x192x192 (CT, dose, masks, body,
 * the generator's work arrays and the deflated file), rounded up. */
const SYNTH_BYTES_PER_VOXEL = 40;

export const SYNTH_PRESCRIPTION_GY = { PTV70: 70, PTV56: 56 };
export const SYNTH_FRACTIONS = 28;

export interface SynthCaseOptions {
  seed?: number;
  /** [z, y, x], each a multiple of 16 from 16 to 1024 (the model's four poolings divide it) */
  shape?: [number, number, number];
  /** (z, y, x) mm, each in (0, 20] */
  spacingMm?: [number, number, number];
  threads?: number;
  signal?: AbortSignal;
}

/** How the generator planned the case (metadata_json.plan). */
export type SynthPlan = NativeSynthPlan;

export interface SynthProgress {
  /** 1-based position in the cohort */
  done: number;
  cases: number;
  caseId: string;
  path: string;
  seconds: number;
  /** D95 and Dmax of PTV70, D95 of PTV56 (Gy) */
  ptv70D95: number;
  ptv70Dmax: number;
  ptv56D95: number;
}

export interface SynthCohortOptions extends SynthCaseOptions {
  cases?: number;
  /** replace existing case files; without it, any existing file stops the run before anything is written */
  overwrite?: boolean;
  onProgress?: (event: SynthProgress) => void;
}

export interface SynthCohortResult {
  outDir: string;
  files: string[];
  seconds: number;
}

export function synthGeneratorVersion(): string {
  return loadNative().synthGeneratorVersion;
}

/** Checks the options once, naming the field, the value and what is allowed. */
export function resolveSynthOptions(options: SynthCohortOptions = {}): Required<Pick<SynthCohortOptions, 'cases' | 'seed' | 'shape' | 'spacingMm'>> {
  const cases = options.cases ?? SYNTH_DEFAULTS.cases;
  const seed = options.seed ?? SYNTH_DEFAULTS.seed;
  const shape = options.shape ?? SYNTH_DEFAULTS.shape;
  const spacingMm = options.spacingMm ?? SYNTH_DEFAULTS.spacingMm;
  if (!Number.isInteger(cases) || cases < 1 || cases > 1000) throw invalidInput(`cases must be an integer from 1 to 1000, got ${cases}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw invalidInput(`seed must be a non-negative integer below 2^53, got ${seed}`);
  if (shape.length !== 3 || !shape.every((n) => Number.isInteger(n) && n >= 16 && n <= 1024 && n % 16 === 0)) {
    throw invalidInput(`shape must be 3 sizes z,y,x, each a multiple of 16 from 16 to 1024, got ${shape.join(',')}`);
  }
  if (spacingMm.length !== 3 || !spacingMm.every((s) => Number.isFinite(s) && s > 0 && s <= 20)) {
    throw invalidInput(`spacing must be 3 values z,y,x in millimetres, each above 0 and at most 20, got ${spacingMm.join(',')}`);
  }
  // Refused before anything is made: a 1024³ case would otherwise fail after gigabytes, naming nothing.
  const voxels = shape[0] * shape[1] * shape[2];
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  if (8 * voxels > MAX_NPZ_ENTRY_BYTES) {
    throw invalidInput(`shape ${shape.join('x')} makes masks of ${gib(8 * voxels)} (8 structures x ${voxels.toLocaleString('en-US')} voxels), more than the 4 GiB one entry of a case file holds: choose a smaller shape`);
  }
  if (voxels * SYNTH_BYTES_PER_VOXEL > totalmem()) {
    throw new VmatError('VMAT_OUT_OF_MEMORY', `making a ${shape.join('x')} synthetic case needs about ${gib(voxels * SYNTH_BYTES_PER_VOXEL)} of memory, more than this machine's ${gib(totalmem())}: choose a smaller shape`);
  }
  return { cases, seed, shape, spacingMm };
}

export function synthCaseId(index: number): string {
  return `synth_${String(index).padStart(3, '0')}`;
}

/** Makes case `index` of the cohort `seed` in memory, as a format 1 case with its metadata. */
export async function synthesizeCase(index: number, options: SynthCaseOptions = {}): Promise<CaseData & { plan: SynthPlan }> {
  const { seed, shape, spacingMm } = resolveSynthOptions(options);
  if (!Number.isInteger(index) || index < 0 || index > 99999) throw invalidInput(`case index must be an integer from 0 to 99999, got ${index}`);
  const native = loadNative();
  const made = await callNative((callOptions) => native.synthCase(seed, index, shape, spacingMm, callOptions), {
    threads: options.threads,
    signal: options.signal,
  });
  return {
    caseId: made.caseId,
    format: FORMAT_1,
    shape: [made.shape[0], made.shape[1], made.shape[2]],
    spacingMm: [made.spacingMm[0], made.spacingMm[1], made.spacingMm[2]],
    ct: made.ct,
    dose: made.dose,
    masks: made.masks,
    structures: made.structures,
    constraints: made.constraints,
    body: made.body,
    plan: made.plan,
    metadata: {
      case_id: made.caseId,
      format_version: 1,
      prescription_gy: SYNTH_PRESCRIPTION_GY,
      fractions: SYNTH_FRACTIONS,
      source: 'vmat-native synth',
      constraints_mode: 'achieved',
      seed,
      index,
      generator_version: native.synthGeneratorVersion,
      plan: made.plan,
    },
  };
}

/**
 * Writes `cases` synthetic case files `synth_000.npz`… into `outDir` (created if needed). Without `overwrite`, an
 * existing file stops the run before anything is written. Same options → byte-identical files.
 */
export async function synthesizeCohort(outDir: string, options: SynthCohortOptions = {}): Promise<SynthCohortResult> {
  const resolved = resolveSynthOptions(options);
  if (existsSync(outDir) && !statSync(outDir).isDirectory()) throw invalidInput(`${outDir} is a file: expected a folder for the case files`);
  const files = Array.from({ length: resolved.cases }, (_, index) => join(outDir, `${synthCaseId(index)}.npz`));
  if (!options.overwrite) {
    const existing = files.filter((file) => existsSync(file));
    if (existing.length > 0) {
      throw invalidInput(
        `${existing[0]} already exists${existing.length > 1 ? ` (and ${existing.length - 1} more case files)` : ''}: set overwrite to replace them, or choose another folder`,
        { settings: ['overwrite'] },
      );
    }
  }
  await mkdir(outDir, { recursive: true });
  const started = performance.now();
  const make = (index: number) => {
    const pending = synthesizeCase(index, { ...options, ...resolved });
    pending.catch(() => undefined); // awaited below; this only keeps an early exit from leaving it unhandled
    return pending;
  };
  // The next case is generated natively (off the event loop) while this one is compressed and written.
  let next = make(0);
  const cancelled = (index: number) => abortError(`synth was cancelled after ${index} of ${resolved.cases} cases`, options.signal);
  for (let index = 0; index < resolved.cases; index++) {
    const caseStarted = performance.now();
    if (options.signal?.aborted) throw cancelled(index);
    const data = await next.catch((error: unknown) => {
      throw isAbortError(error) ? cancelled(index) : error;
    });
    if (index + 1 < resolved.cases) next = make(index + 1);
    if (options.signal?.aborted) throw cancelled(index);
    await saveCase(files[index]!, data, { overwrite: options.overwrite });
    if (options.onProgress) {
      const voxels = data.shape[0] * data.shape[1] * data.shape[2];
      const voxelCc = (data.spacingMm[0] * data.spacingMm[1] * data.spacingMm[2]) / 1000;
      const ptv70 = doseMetrics(data.dose!, data.masks.subarray(0, voxels), voxelCc);
      const ptv56 = doseMetrics(data.dose!, data.masks.subarray(voxels, 2 * voxels), voxelCc);
      options.onProgress({
        done: index + 1,
        cases: resolved.cases,
        caseId: data.caseId,
        path: files[index]!,
        seconds: (performance.now() - caseStarted) / 1000,
        ptv70D95: ptv70.D95,
        ptv70Dmax: ptv70.Dmax,
        ptv56D95: ptv56.D95,
      });
    }
  }
  return { outDir, files, seconds: (performance.now() - started) / 1000 };
}
