/**
 * Evaluation of predicted doses against reference plans (training.md, "Evaluation"): dose errors, DVH metrics
 * and curves, the clinical constraint table, and gamma (3%/3 mm and 2%/2 mm global with a 10 % cutoff, and 3%/3 mm
 * over the PTVs dilated by 5 mm). The result objects use the snake_case keys of the JSON files they are written to.
 */
import type { CaseData } from '../data/case.js';
import { deriveBodyMask } from '../data/sdf.js';
import { structureKey } from '../data/structures.js';
import { invalidInput } from '../errors.js';
import { doseMetrics, dvhCurve, type DoseMetrics } from '../metrics/dvh.js';
import { isOpenKbpCase, openKbpCaseScores, summariseOpenKbp, type OpenKbpCaseScores, type OpenKbpSummary } from '../openkbp/scores.js';
import { caseSiteName, DEFAULT_SITE, loadSiteProfile, parseSiteProfile, shippedSites, type SiteProfile } from '../sites/profile.js';
import { doseVolumeOf, gammaIndex, sharedPlacement } from './gamma.js';
import { constraintTable, dilateMask, doseError, structureMask, type ConstraintCheck } from './metrics.js';

export interface GammaStats {
  pass_rate_pct: number;
  mean_gamma: number;
  median_gamma: number;
  n_evaluated: number;
}

export interface CaseEvaluation {
  case_id: string;
  /** keys: body, all, and each PTV of the reference (e.g. PTV70, PTV56) */
  mae_gy: Record<string, number>;
  rmse_gy: Record<string, number>;
  /** per structure of the reference, metrics of the reference dose and of the prediction */
  dvh: { ref: Record<string, DoseMetrics>; pred: Record<string, DoseMetrics> };
  /** cumulative DVHs: volume fraction receiving at least i · bin_gy */
  dvh_curves: Record<string, { bin_gy: number; ref: number[]; pred: number[] }>;
  constraints: ConstraintCheck[];
  gamma: { '3%/3mm': GammaStats; '2%/2mm': GammaStats; '3%/3mm_ptv': GammaStats };
  /** the OpenKBP challenge's figures (openkbp/scores.ts), for cases imported from OpenKBP or with `openkbp` */
  openkbp?: OpenKbpCaseScores;
}

export interface EvaluateOptions {
  threads?: number;
  signal?: AbortSignal;
  /** "auto" | "cpu" | "cuda" | "cuda:N" for gamma (default auto) */
  device?: string;
  /** Also the OpenKBP challenge's dose and DVH figures; automatic when the reference was imported from OpenKBP. */
  openkbp?: boolean;
  /** The site profile of the constraint table; by default `evaluationSite(pred, ref)`. */
  site?: SiteProfile;
}

/**
 * The site a prediction is judged under: the model's, which `predict` records in the prediction
 * (`prediction_site_profile`), else the shipped site the reference records (`site`), else the default site.
 */
export function evaluationSite(pred: CaseData, ref: CaseData): SiteProfile {
  const recorded = pred.metadata['prediction_site_profile'];
  if (recorded !== undefined) return parseSiteProfile(recorded, `recorded in the prediction of ${pred.caseId}`);
  const site = caseSiteName(ref.metadata);
  return loadSiteProfile(shippedSites().includes(site) ? site : DEFAULT_SITE);
}

const DVH_BIN_GY = 0.1;
const PTV_MARGIN_MM = 5;

/** Γ statistics over the points of `gamma` (NaN = not evaluated) that lie in `mask` (all when absent). */
export function gammaStats(gamma: Float32Array, mask?: Uint8Array): GammaStats {
  const values: number[] = [];
  let passed = 0;
  let sum = 0;
  for (let i = 0; i < gamma.length; i++) {
    const g = gamma[i]!;
    if (Number.isNaN(g) || (mask && !mask[i])) continue;
    values.push(g);
    sum += g;
    if (g <= 1) passed++;
  }
  if (values.length === 0) return { pass_rate_pct: NaN, mean_gamma: NaN, median_gamma: NaN, n_evaluated: 0 };
  values.sort((a, b) => a - b);
  const middle = values.length >> 1;
  const median = values.length % 2 ? values[middle]! : (values[middle - 1]! + values[middle]!) / 2;
  return { pass_rate_pct: (100 * passed) / values.length, mean_gamma: sum / values.length, median_gamma: median, n_evaluated: values.length };
}

function sameGrid(pred: CaseData, ref: CaseData): boolean {
  const placed = !pred.originMm || !ref.originMm || pred.originMm.every((o, a) => Math.abs(o - ref.originMm![a]!) <= 1e-3);
  return placed && pred.shape.every((n, a) => n === ref.shape[a]) && pred.spacingMm.every((s, a) => Math.abs(s - ref.spacingMm[a]!) <= 1e-6 * Math.max(1, s));
}

const round = (values: Float64Array) => Array.from(values, (v) => Math.round(v * 1e6) / 1e6);

/**
 * Evaluates `pred.dose` against `ref.dose` on the reference's masks and body. Both cases must share one grid
 * (shape and spacing, and origin where both record one) and frame of reference; the reference must hold a dose.
 */
export async function evaluateCase(pred: CaseData, ref: CaseData, options: EvaluateOptions = {}): Promise<CaseEvaluation> {
  if (!ref.dose) throw invalidInput(`the reference case ${ref.caseId} holds no dose to evaluate against`);
  if (!pred.dose) throw invalidInput(`the prediction for case ${pred.caseId} holds no dose`);
  const refVolume = doseVolumeOf(ref, ref.dose);
  const predVolume = doseVolumeOf(pred, pred.dose);
  sharedPlacement(refVolume, predVolume); // different frames of reference or axes are refused
  if (!sameGrid(pred, ref)) {
    const at = (c: CaseData) => (c.originMm ? ` from (${c.originMm.join(', ')}) mm` : '');
    throw invalidInput(
      `the prediction and the reference of case ${ref.caseId} are on different grids: prediction [${pred.shape.join(',')}] at ` +
        `(${pred.spacingMm.join(', ')}) mm${at(pred)}, reference [${ref.shape.join(',')}] at (${ref.spacingMm.join(', ')}) mm${at(ref)}`,
    );
  }
  const refDose = ref.dose;
  const predDose = pred.dose;
  const voxelCc = (ref.spacingMm[0] * ref.spacingMm[1] * ref.spacingMm[2]) / 1000;
  const body = ref.body ?? (await deriveBodyMask(ref.ct, ref.shape, { threads: options.threads, signal: options.signal }));

  const ptvs = ref.structures.filter((name) => structureKey(name).startsWith('ptv'));
  const mae: Record<string, number> = {};
  const rmse: Record<string, number> = {};
  const regions: [string, Uint8Array | undefined][] = [['body', body], ['all', undefined], ...ptvs.map((name) => [name, structureMask(ref, name)] as [string, Uint8Array | undefined])];
  for (const [name, mask] of regions) {
    const error = doseError(predDose, refDose, mask);
    mae[name] = error.maeGy;
    rmse[name] = error.rmseGy;
  }

  const dvh: CaseEvaluation['dvh'] = { ref: {}, pred: {} };
  const curves: CaseEvaluation['dvh_curves'] = {};
  for (const name of ref.structures) {
    const mask = structureMask(ref, name)!;
    dvh.ref[name] = doseMetrics(refDose, mask, voxelCc);
    dvh.pred[name] = doseMetrics(predDose, mask, voxelCc);
    curves[name] = { bin_gy: DVH_BIN_GY, ref: round(dvhCurve(refDose, mask, DVH_BIN_GY).volumeFraction), pred: round(dvhCurve(predDose, mask, DVH_BIN_GY).volumeFraction) };
  }

  const call = { threads: options.threads, signal: options.signal };
  const device = options.device ?? 'auto';
  const gamma3 = await gammaIndex(refVolume, predVolume, { dosePercent: 3, dtaMm: 3, cutoffPercent: 10, device }, call);
  const gamma2 = await gammaIndex(refVolume, predVolume, { dosePercent: 2, dtaMm: 2, cutoffPercent: 10, device }, call);
  const voxels = ref.shape[0] * ref.shape[1] * ref.shape[2];
  const ptvUnion = new Uint8Array(voxels);
  for (const name of ptvs) {
    const mask = structureMask(ref, name)!;
    for (let i = 0; i < voxels; i++) if (mask[i]) ptvUnion[i] = 1;
  }
  const ptvRegion = dilateMask(ptvUnion, ref.shape, ref.spacingMm, PTV_MARGIN_MM);

  return {
    case_id: ref.caseId,
    mae_gy: mae,
    rmse_gy: rmse,
    dvh,
    dvh_curves: curves,
    constraints: constraintTable(ref, refDose, predDose, options.site ?? evaluationSite(pred, ref)),
    gamma: {
      '3%/3mm': gammaStats(gamma3.gamma),
      '2%/2mm': gammaStats(gamma2.gamma),
      '3%/3mm_ptv': gammaStats(gamma3.gamma, ptvRegion),
    },
    ...(options.openkbp || isOpenKbpCase(ref) ? { openkbp: openKbpCaseScores(predDose, ref, body) } : {}),
  };
}

/** The numbers of an evaluation as flat "a.b.c" keys (the columns of cases.csv and the keys of summary.json). */
export function flattenEvaluation(evaluation: CaseEvaluation): Record<string, number> {
  const flat: Record<string, number> = {};
  for (const [region, value] of Object.entries(evaluation.mae_gy)) flat[`mae_gy.${region}`] = value;
  for (const [region, value] of Object.entries(evaluation.rmse_gy)) flat[`rmse_gy.${region}`] = value;
  for (const [criterion, stats] of Object.entries(evaluation.gamma)) {
    for (const [key, value] of Object.entries(stats)) flat[`gamma.${criterion}.${key}`] = value;
  }
  for (const side of ['ref', 'pred'] as const) {
    for (const [structure, metrics] of Object.entries(evaluation.dvh[side])) {
      for (const [key, value] of Object.entries(metrics)) flat[`dvh.${side}.${structure}.${key}`] = value;
    }
  }
  for (const check of evaluation.constraints) {
    if (check.ref !== null) flat[`constraints.${check.name}.ref`] = check.ref;
    if (check.pred !== null) flat[`constraints.${check.name}.pred`] = check.pred;
    if (check.refPass !== null) flat[`constraints.${check.name}.ref_pass`] = check.refPass ? 1 : 0;
    if (check.predPass !== null) flat[`constraints.${check.name}.pred_pass`] = check.predPass ? 1 : 0;
  }
  if (evaluation.openkbp) {
    flat['openkbp.dose_error_gy'] = evaluation.openkbp.dose_error_gy;
    flat['openkbp.dvh_error_gy'] = evaluation.openkbp.dvh_error_gy;
  }
  return flat;
}

/** The OpenKBP dose and DVH scores over the evaluations that have the OpenKBP figures, or undefined if none has. */
export function summariseOpenKbpEvaluations(evaluations: CaseEvaluation[]): OpenKbpSummary | undefined {
  const scored = evaluations.flatMap((evaluation) => (evaluation.openkbp ? [evaluation.openkbp] : []));
  return scored.length === 0 ? undefined : summariseOpenKbp(scored);
}

export interface MetricSummary {
  mean: number;
  sd: number;
  n: number;
}

/** Mean ± sample standard deviation over cases of every metric (NaN values left out). */
export function summariseEvaluations(evaluations: CaseEvaluation[]): Record<string, MetricSummary> {
  const columns = new Map<string, number[]>();
  for (const evaluation of evaluations) {
    for (const [key, value] of Object.entries(flattenEvaluation(evaluation))) {
      if (!columns.has(key)) columns.set(key, []);
      if (Number.isFinite(value)) columns.get(key)!.push(value);
    }
  }
  const summary: Record<string, MetricSummary> = {};
  for (const [key, values] of columns) {
    const n = values.length;
    const mean = n === 0 ? NaN : values.reduce((a, b) => a + b, 0) / n;
    const sd = n < 2 ? NaN : Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
    summary[key] = { mean, sd, n };
  }
  return summary;
}
