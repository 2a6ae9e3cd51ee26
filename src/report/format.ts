/**
 * How the report and the figures write evaluation numbers for a physicist: each flat metric key of cases.csv and
 * summary.json as a label with its unit (V-values in %, doses in Gy), mean ± sd with n, and the constraint limits
 * as criteria ("V50Gy ≤ 50 %").
 */
import type { ConstraintRow } from './run-folder.js';

export interface MetricInfo {
  /** table group: "Dose error", "Gamma", "DVH", "Constraints", "OpenKBP" */
  group: string;
  /** e.g. "MAE, body", "Γ pass rate 3%/3 mm", "D95%" */
  label: string;
  unit: string;
  /** stored value × factor = shown value (fractions shown in %) */
  factor: number;
  digits: number;
  /** DVH metrics: the structure and whether the value is the reference's or the prediction's */
  structure?: string;
  side?: 'ref' | 'pred';
  /** DVH metrics: the metric's own key (D95, V50, Dmean, …) */
  metric?: string;
}

const GAMMA_CRITERIA: Record<string, string> = { '3%/3mm': '3%/3 mm', '2%/2mm': '2%/2 mm', '3%/3mm_ptv': '3%/3 mm, PTVs + 5 mm' };
const GAMMA_STATS: Record<string, [string, string, number]> = {
  pass_rate_pct: ['Γ pass rate', '%', 1],
  mean_gamma: ['mean Γ', '', 2],
  median_gamma: ['median Γ', '', 2],
  n_evaluated: ['points evaluated', '', 0],
};

/** A DVH metric's label, unit, factor and digits: Dx% and doses in Gy, V-values (fractions) in %, volume in cc. */
export function dvhMetricInfo(metric: string): { label: string; unit: string; factor: number; digits: number } {
  if (metric === 'volumeCc') return { label: 'volume', unit: 'cc', factor: 1, digits: 1 };
  const v = /^V(\d+(?:\.\d+)?)$/.exec(metric);
  if (v) return { label: `V${v[1]}Gy`, unit: '%', factor: 100, digits: 1 };
  if (/^D\d+(?:\.\d+)?$/.test(metric)) return { label: `${metric}%`, unit: 'Gy', factor: 1, digits: 2 };
  return { label: metric, unit: 'Gy', factor: 1, digits: 2 };
}

/** The label and unit of a flat metric key (mae_gy.body, gamma.3%/3mm.pass_rate_pct, dvh.ref.Rectum.V50, …). */
export function metricInfo(key: string): MetricInfo {
  const parts = key.split('.');
  const [head] = parts;
  if ((head === 'mae_gy' || head === 'rmse_gy') && parts.length === 2) {
    return { group: 'Dose error', label: `${head === 'mae_gy' ? 'MAE' : 'RMSE'}, ${parts[1] === 'all' ? 'whole volume' : parts[1]}`, unit: 'Gy', factor: 1, digits: 3 };
  }
  if (head === 'gamma' && parts.length === 3 && GAMMA_STATS[parts[2]!]) {
    const [label, unit, digits] = GAMMA_STATS[parts[2]!]!;
    return { group: 'Gamma', label: `${label} ${GAMMA_CRITERIA[parts[1]!] ?? parts[1]}`, unit, factor: 1, digits };
  }
  if (head === 'dvh' && parts.length >= 4 && (parts[1] === 'ref' || parts[1] === 'pred')) {
    // Structure names may hold dots; the metric is the last part ("D0.03cc" is split too: rejoin it).
    const metricStart = parts[parts.length - 2] === 'D0' ? parts.length - 2 : parts.length - 1;
    const metric = parts.slice(metricStart).join('.');
    const structure = parts.slice(2, metricStart).join('.');
    const info = dvhMetricInfo(metric);
    return { group: 'DVH', ...info, label: `${structure} ${info.label} (${parts[1] === 'ref' ? 'reference' : 'prediction'})`, structure, side: parts[1], metric };
  }
  if (head === 'constraints' && parts.length >= 3) {
    const suffix = parts[parts.length - 1]!;
    const name = parts.slice(1, -1).join('.');
    const side = suffix.startsWith('ref') ? 'reference' : 'prediction';
    if (suffix.endsWith('_pass')) return { group: 'Constraints', label: `${name}: ${side} meets the limit (1 yes, 0 no)`, unit: '', factor: 1, digits: 0 };
    // The unit is not in the key: a Vx in cc says so in its name, another Vx is a fraction, the rest are doses.
    const unit = /V\d+(?:\.\d+)?(?:Gy)?cc$/.test(name) ? 'cc' : /V\d+(?:\.\d+)?(?:Gy)?$/.test(name) ? '%' : 'Gy';
    return { group: 'Constraints', label: `${name.replace(/V(\d+(?:\.\d+)?)(?:Gy)?(cc)?$/, 'V$1Gy')} (${side})`, unit, factor: unit === '%' ? 100 : 1, digits: unit === 'Gy' ? 2 : 1 };
  }
  if (head === 'openkbp') return { group: 'OpenKBP', label: `OpenKBP ${parts.slice(1).join('.').replaceAll('_', ' ')}`, unit: 'Gy', factor: 1, digits: 3 };
  return { group: 'Other', label: key, unit: '', factor: 1, digits: 3 };
}

const finite = (value: number | null | undefined): value is number => typeof value === 'number' && Number.isFinite(value);

/** A value in its unit's digits, or "–". */
export function formatNumber(value: number | null | undefined, digits: number): string {
  return finite(value) ? value.toFixed(digits) : '–';
}

/** "3.186 ± 0.046" over n ≥ 2 cases; "3.186 (n = 1)" for one case, which has no sd; "–" for none. */
export function formatMeanSd(mean: number | null | undefined, sd: number | null | undefined, n: number, digits: number): string {
  if (!finite(mean) || n === 0) return '–';
  if (n === 1 || !finite(sd)) return `${mean.toFixed(digits)} (n = ${n})`;
  return `${mean.toFixed(digits)} ± ${sd.toFixed(digits)}`;
}

export interface ConstraintCriterion {
  structure: string;
  /** "V50Gy", "Dmax", "V45Gy" (a volume in cc) */
  metric: string;
  /** "V50Gy ≤ 50 %", "Dmax ≤ 74.9 Gy", "V45Gy ≤ 195 cc" */
  text: string;
  unit: '%' | 'Gy' | 'cc';
  /** a value of the row in the criterion's unit */
  show: (value: number | null) => string;
  /** for V-criteria: the dose level (Gy) whose volume is limited */
  doseGy?: number;
  /** the limit in the criterion's unit */
  limit: number | null;
}

/** A constraint row (as evaluate writes it: a fraction, Gy or cc, the value at most the limit) as a criterion. */
export function constraintCriterion(row: Pick<ConstraintRow, 'name' | 'structure' | 'unit' | 'limit'>): ConstraintCriterion {
  const structure = row.structure || row.name.split(' ')[0]!;
  const rest = row.name.startsWith(`${structure} `) ? row.name.slice(structure.length + 1) : row.name;
  const level = /^V(\d+(?:\.\d+)?)(?:Gy)?(?:cc)?$/.exec(rest);
  const metric = level ? `V${level[1]}Gy` : rest;
  const doseGy = level ? Number(level[1]) : undefined;
  const unit = row.unit === 'fraction' ? '%' : row.unit === 'cc' ? 'cc' : 'Gy';
  const factor = row.unit === 'fraction' ? 100 : 1;
  const digits = unit === 'Gy' ? 2 : 1;
  const limit = row.limit === null ? null : row.limit * factor;
  const show = (value: number | null) => (finite(value) ? `${(value * factor).toFixed(digits)} ${unit}` : '–');
  const limitText = limit === null ? '–' : `${Number(limit.toFixed(digits))} ${unit}`;
  return { structure, metric, text: `${metric} ≤ ${limitText}`, unit, show, doseGy, limit };
}
