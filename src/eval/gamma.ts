/**
 * The 3D gamma index (spec/gamma.md), computed natively off the event loop: pymedphys' definition and sampling.
 */
import { z } from 'zod';

import type { CaseData } from '../data/case.js';
import { invalidInput } from '../errors.js';
import type { NativeGammaResult } from '../native/addon.js';
import { callNative, type CallOptions } from '../native/call.js';
import { loadNative } from '../native/loader.js';

/** A dose on its grid: voxel (i, j, k) sits at originMm + (i, j, k) · spacingMm, axes [z, y, x]. */
export interface DoseVolume {
  data: Float32Array;
  shape: [number, number, number];
  spacingMm: [number, number, number];
  /** default (0, 0, 0) */
  originMm?: [number, number, number];
  /** [3,3] row-major, rows the array axes in patient (z, y, x) components (format 1 `direction`); default identity */
  direction?: number[];
  /** DICOM frame of reference: two doses in different frames are not compared */
  frameOfReferenceUid?: string;
}

const IDENTITY = [1, 0, 0, 0, 1, 0, 0, 0, 1];

/**
 * The two grids' origins along their shared axes. Origins and directions count only when both volumes carry them
 * (otherwise both start at 0, as grids without a placement always did); different frames of reference, different
 * axes, or grids that do not overlap are refused.
 */
export function sharedPlacement(ref: DoseVolume, evalDose: DoseVolume): { refOrigin: [number, number, number]; evalOrigin: [number, number, number] } {
  if (ref.frameOfReferenceUid && evalDose.frameOfReferenceUid && ref.frameOfReferenceUid !== evalDose.frameOfReferenceUid) {
    throw invalidInput(`the reference and evaluated doses are in different frames of reference (${ref.frameOfReferenceUid} and ${evalDose.frameOfReferenceUid}): their positions cannot be compared`);
  }
  if (!ref.originMm || !evalDose.originMm) return { refOrigin: [0, 0, 0], evalOrigin: [0, 0, 0] };
  const refAxes = ref.direction ?? IDENTITY;
  const evalAxes = evalDose.direction ?? IDENTITY;
  if (refAxes.some((v, i) => Math.abs(v - evalAxes[i]!) > 1e-4)) {
    throw invalidInput('the reference and evaluated doses lie on grids with different axes (direction): resample one onto the other first');
  }
  const along = (origin: [number, number, number]) =>
    [0, 1, 2].map((a) => refAxes[3 * a]! * origin[0] + refAxes[3 * a + 1]! * origin[1] + refAxes[3 * a + 2]! * origin[2]) as [number, number, number];
  const refOrigin = along(ref.originMm);
  const evalOrigin = along(evalDose.originMm);
  for (let a = 0; a < 3; a++) {
    const refEnd = refOrigin[a]! + (ref.shape[a]! - 1) * ref.spacingMm[a]!;
    const evalEnd = evalOrigin[a]! + (evalDose.shape[a]! - 1) * evalDose.spacingMm[a]!;
    if (Math.max(refOrigin[a]!, evalOrigin[a]!) > Math.min(refEnd, evalEnd) + 1e-6) {
      const axis = ['z', 'y', 'x'][a];
      throw invalidInput(
        `the reference and evaluated dose grids do not overlap: along ${axis} the reference spans ${refOrigin[a]!.toFixed(1)} to ${refEnd.toFixed(1)} mm, the evaluated dose ${evalOrigin[a]!.toFixed(1)} to ${evalEnd.toFixed(1)} mm`,
      );
    }
  }
  return { refOrigin, evalOrigin };
}

const settingsSchema = z
  .object({
    dosePercent: z.number().positive().finite().default(3),
    dtaMm: z.number().positive().finite().default(3),
    cutoffPercent: z.number().min(0).max(100).default(10),
    /** Gy; default the maximum of the reference */
    normGy: z.number().positive().finite().optional(),
    local: z.boolean().default(false),
    interpFraction: z.number().min(1).finite().default(10),
    maxGamma: z.number().positive().finite().default(2),
    /** "auto" | "cpu" | "cuda" | "cuda:N" */
    device: z.string().default('auto'),
  })
  .strict();

export type GammaSettings = z.input<typeof settingsSchema>;
export type ResolvedGammaSettings = z.output<typeof settingsSchema>;

export interface GammaResult extends NativeGammaResult {
  settings: ResolvedGammaSettings;
}

export interface GammaProgress {
  done: number;
  total: number;
}

/** Validates gamma settings once, naming the field, the value and what is allowed. */
export function resolveGammaSettings(settings: GammaSettings = {}): ResolvedGammaSettings {
  const parsed = settingsSchema.safeParse(settings);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.') || (issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : 'settings');
    const value = issue.path.length > 0 ? (settings as Record<string, unknown>)[String(issue.path[0])] : undefined;
    throw invalidInput(`gamma setting ${field}${value === undefined ? '' : ` = ${JSON.stringify(value)}`} is invalid: ${issue.message}`, { settings: [field] });
  }
  return parsed.data;
}

function checkVolume(volume: DoseVolume, what: string): void {
  const count = volume.shape.reduce((a, b) => a * b, 1);
  if (volume.shape.length !== 3 || !volume.shape.every((n) => Number.isInteger(n) && n > 0)) {
    throw invalidInput(`the ${what} dose's shape must be 3 positive integers [z, y, x], found [${volume.shape.join(', ')}]`);
  }
  if (!(volume.data instanceof Float32Array) || volume.data.length !== count) {
    throw invalidInput(`the ${what} dose must be a Float32Array of ${count} values ([${volume.shape.join(', ')}]), found ${volume.data?.length ?? 'none'}`);
  }
  if (volume.spacingMm.length !== 3 || !volume.spacingMm.every((s) => Number.isFinite(s) && s > 0)) {
    throw invalidInput(`the ${what} spacing must be 3 positive millimetre values (z, y, x), found [${volume.spacingMm.join(', ')}]`);
  }
  // A negative or non-finite dose has no gamma: the pass rate would be computed from nonsense.
  for (let i = 0; i < volume.data.length; i++) {
    const value = volume.data[i]!;
    if (!(value >= 0 && value < Infinity)) throw invalidInput(`the ${what} dose holds ${value} Gy at flat index ${i}: expected finite doses >= 0 Gy`);
  }
}

/**
 * Γ of `evalDose` against `ref` (the reference's points are evaluated; `evalDose` is interpolated). The grids
 * may differ; both are in mm with their own origins.
 */
export async function gammaIndex(
  ref: DoseVolume,
  evalDose: DoseVolume,
  settings: GammaSettings = {},
  options: CallOptions<GammaProgress> = {},
): Promise<GammaResult> {
  const resolved = resolveGammaSettings(settings);
  checkVolume(ref, 'reference');
  checkVolume(evalDose, 'evaluated');
  const { refOrigin, evalOrigin } = sharedPlacement(ref, evalDose);
  const native = loadNative();
  const result = await callNative<Omit<GammaResult, 'settings'>, GammaProgress>(
    (nativeOptions) =>
      native.gamma(
        ref.data,
        ref.shape,
        ref.spacingMm,
        refOrigin,
        evalDose.data,
        evalDose.shape,
        evalDose.spacingMm,
        evalOrigin,
        resolved,
        nativeOptions,
      ),
    { ...options, settings: ['normGy'] },
  );
  return { ...result, settings: resolved };
}

/** A dose on a case's grid, with the grid's placement and frame of reference (format 1 origin_mm, direction, metadata). */
export function doseVolumeOf(data: Pick<CaseData, 'shape' | 'spacingMm' | 'originMm' | 'direction' | 'metadata'>, dose: Float32Array): DoseVolume {
  const frame = data.metadata.frame_of_reference_uid;
  return {
    data: dose,
    shape: data.shape,
    spacingMm: data.spacingMm,
    originMm: data.originMm,
    direction: data.direction,
    frameOfReferenceUid: typeof frame === 'string' && frame !== '' ? frame : undefined,
  };
}
