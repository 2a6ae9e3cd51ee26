/**
 * The OpenKBP challenge's scores, as its evaluation code computes them (ababier/open-kbp,
 * provided_code/dose_evaluation_class.py), checked against that code by bench/openkbp_scores.sh:
 *
 * - dose error of a patient: Σ|reference − prediction| over *every* voxel of the grid, divided by the number of
 *   voxels of the possible-dose mask. Dose outside the mask is not left out (the reference has none there): an
 *   unmasked prediction is charged for all of it.
 * - DVH metrics, on the reference's structure masks for both doses: D0.1cc and the mean of each organ at risk, D99,
 *   D95 and D1 of each target. D0.1cc is the (100 − 100·v/n)th percentile of the n structure voxels' doses with
 *   v = max(1, round(100 mm³ / voxel volume)) (NumPy rounds halves to even); Dx is the (100 − x)th percentile;
 *   percentiles interpolate linearly between the sorted doses as np.percentile does. A structure that the
 *   reference lacks or whose mask is empty has no metrics (NaN in the challenge's table).
 * - dose score: the mean of the patients' dose errors; DVH score: the mean of |reference − prediction| over every
 *   (patient, structure, metric) that exists, pooled, not a mean of per-patient means.
 */
import type { CaseData } from '../data/case.js';
import { loadSiteProfile, structureMatcher } from '../sites/profile.js';
import { OPENKBP_OARS, OPENKBP_SITE, OPENKBP_TARGETS } from './layout.js';

export const OPENKBP_OAR_METRICS = ['D_0.1_cc', 'mean'] as const;
export const OPENKBP_TARGET_METRICS = ['D_99', 'D_95', 'D_1'] as const;
export type OpenKbpMetric = (typeof OPENKBP_OAR_METRICS)[number] | (typeof OPENKBP_TARGET_METRICS)[number];

export interface OpenKbpMetricValue {
  ref: number;
  pred: number;
  abs_error: number;
}

export interface OpenKbpCaseScores {
  /** the challenge's dose error of this patient, Gy */
  dose_error_gy: number;
  /** mean |reference − prediction| over this patient's DVH metrics, Gy (the patient's share of the DVH score) */
  dvh_error_gy: number;
  /** voxels of the possible-dose mask (the dose error's denominator) */
  possible_dose_voxels: number;
  /** per structure present in the reference, per metric */
  dvh: Record<string, Partial<Record<OpenKbpMetric, OpenKbpMetricValue>>>;
  /** the challenge's structures that the reference lacks or has empty (no metrics, as in the challenge) */
  missing: string[];
}

export interface OpenKbpSummary {
  /** mean of the patients' dose errors, Gy */
  dose_score_gy: number;
  /** mean absolute DVH metric difference over every (patient, structure, metric), Gy */
  dvh_score_gy: number;
  n_cases: number;
  n_dvh_metrics: number;
}

/** NumPy's np.round: halves to even. */
function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const difference = value - floor;
  if (difference !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** np.percentile(values, q) with its default linear method, on `sorted` (ascending). */
export function percentileLinear(sorted: Float64Array, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const virtual = (q / 100) * (n - 1);
  if (virtual >= n - 1) return sorted[n - 1]!;
  if (virtual <= 0) return sorted[0]!;
  const below = Math.floor(virtual);
  const t = virtual - below;
  const a = sorted[below]!;
  const b = sorted[below + 1]!;
  // NumPy's _lerp: from the nearer end, so that t = 1 gives b exactly.
  return t >= 0.5 ? b - (b - a) * (1 - t) : a + (b - a) * t;
}

/** The doses of `dose` at the voxels of `mask`, sorted ascending, and their mean. */
function structureDoses(dose: Float32Array, mask: Uint8Array, count: number): { sorted: Float64Array; mean: number } {
  const values = new Float64Array(count);
  let sum = 0;
  for (let i = 0, j = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    values[j++] = dose[i]!;
    sum += dose[i]!;
  }
  return { sorted: values.sort(), mean: sum / count };
}

function metricValue(metric: OpenKbpMetric, doses: { sorted: Float64Array; mean: number }, voxelsInTenthCc: number): number {
  const n = doses.sorted.length;
  switch (metric) {
    case 'D_0.1_cc':
      // The challenge's percentile is negative for a structure under 0.1 cc, where NumPy raises; its minimum is used.
      return percentileLinear(doses.sorted, Math.max(0, 100 - (voxelsInTenthCc / n) * 100));
    case 'mean':
      return doses.mean;
    case 'D_99':
      return percentileLinear(doses.sorted, 1);
    case 'D_95':
      return percentileLinear(doses.sorted, 5);
    case 'D_1':
      return percentileLinear(doses.sorted, 99);
  }
}

/**
 * The challenge's per-patient figures of `predDose` against `ref` (its dose and structures, matched onto the
 * challenge's names through the head-neck profile's aliases), with `possibleDose` as the possible-dose mask
 * (the reference's body).
 */
export function openKbpCaseScores(predDose: Float32Array, ref: CaseData, possibleDose: Uint8Array): OpenKbpCaseScores {
  const refDose = ref.dose;
  if (!refDose) throw new RangeError(`the reference case ${ref.caseId} holds no dose`);
  const voxels = refDose.length;
  if (predDose.length !== voxels || possibleDose.length !== voxels) {
    throw new RangeError(`the OpenKBP scores need volumes of one size, got ${predDose.length}, ${voxels} and ${possibleDose.length}`);
  }
  let absolute = 0;
  let maskVoxels = 0;
  for (let i = 0; i < voxels; i++) {
    absolute += Math.abs(refDose[i]! - predDose[i]!);
    if (possibleDose[i]) maskVoxels++;
  }

  // np.prod(voxel_dimensions) multiplies the file's order (row, column, slice) = (y, x, z).
  const voxelMm3 = ref.spacingMm[1] * ref.spacingMm[2] * ref.spacingMm[0];
  const voxelsInTenthCc = Math.max(1, roundHalfEven(100 / voxelMm3));
  const match = structureMatcher(loadSiteProfile(OPENKBP_SITE));
  const dvh: OpenKbpCaseScores['dvh'] = {};
  const missing: string[] = [];
  let errorSum = 0;
  let errorCount = 0;
  const rois: [string, readonly OpenKbpMetric[]][] = [
    ...OPENKBP_OARS.map((roi) => [roi, OPENKBP_OAR_METRICS] as [string, readonly OpenKbpMetric[]]),
    ...OPENKBP_TARGETS.map((roi) => [roi, OPENKBP_TARGET_METRICS] as [string, readonly OpenKbpMetric[]]),
  ];
  for (const [roi, metrics] of rois) {
    // The first of the case's structures that is this ROI (by name or alias); several would be a union in no case.
    const index = ref.structures.findIndex((name) => (match(name) ?? name) === roi);
    const mask = index < 0 ? undefined : ref.masks.subarray(index * voxels, (index + 1) * voxels);
    let count = 0;
    if (mask) for (let i = 0; i < voxels; i++) if (mask[i]) count++;
    if (!mask || count === 0) {
      missing.push(roi);
      continue;
    }
    const refDoses = structureDoses(refDose, mask, count);
    const predDoses = structureDoses(predDose, mask, count);
    dvh[roi] = {};
    for (const metric of metrics) {
      const refValue = metricValue(metric, refDoses, voxelsInTenthCc);
      const predValue = metricValue(metric, predDoses, voxelsInTenthCc);
      const absError = Math.abs(refValue - predValue);
      dvh[roi]![metric] = { ref: refValue, pred: predValue, abs_error: absError };
      errorSum += absError;
      errorCount++;
    }
  }
  return {
    dose_error_gy: maskVoxels === 0 ? NaN : absolute / maskVoxels,
    dvh_error_gy: errorCount === 0 ? NaN : errorSum / errorCount,
    possible_dose_voxels: maskVoxels,
    dvh,
    missing,
  };
}

/** The challenge's dose and DVH scores over the cases (NaN values left out, as np.nanmean does). */
export function summariseOpenKbp(cases: readonly OpenKbpCaseScores[]): OpenKbpSummary {
  const doseErrors = cases.map((c) => c.dose_error_gy).filter((value) => Number.isFinite(value));
  let dvhSum = 0;
  let dvhCount = 0;
  for (const scores of cases) {
    for (const metrics of Object.values(scores.dvh)) {
      for (const value of Object.values(metrics)) {
        dvhSum += value.abs_error;
        dvhCount++;
      }
    }
  }
  return {
    dose_score_gy: doseErrors.length === 0 ? NaN : doseErrors.reduce((a, b) => a + b, 0) / doseErrors.length,
    dvh_score_gy: dvhCount === 0 ? NaN : dvhSum / dvhCount,
    n_cases: cases.length,
    n_dvh_metrics: dvhCount,
  };
}

/** Whether a case came from the OpenKBP importer (its metadata's `source`). */
export function isOpenKbpCase(data: CaseData): boolean {
  return data.metadata['source'] === 'openkbp';
}
