/**
 * The statistics of a study: arms (training choices) × seeds × test cases, one value per metric (README "Study
 * statistics"). Per arm and metric, the mean and spread over seeds; per arm, the paired difference against the first
 * arm with a two-way bootstrap confidence interval over cases and seeds, a two-sided p-value and one plain sentence.
 *
 * The bootstrap: test cases and seeds are crossed (every case is evaluated for every seed: k-fold cross-validation,
 * or a test set fixed across training seeds), so a hard case is hard in every seed. Resampling cases within each seed
 * would count one case tested in 3 seeds as 3 independent cases and make the interval too narrow. So each replicate
 * draws the cases and, independently, the seeds with replacement (the pigeonhole bootstrap of Owen, 2007, "The
 * pigeonhole bootstrap", Ann. Appl. Stat. 1:386), and takes the mean paired difference over the drawn (seed, case)
 * cells, each cell weighted by how often its seed and its case were drawn (cells without a value are left out).
 * The interval is the percentile interval of the replicates (NumPy's linear percentile); the p-value is its dual,
 * 2 · min(#{Δ* ≤ 0}, #{Δ* ≥ 0}) + 1 over the replicates + 1 (at most 1). A difference is called significant when
 * the interval excludes 0. Draws come from NumPy's legacy RandomState (MT19937, `randint`), so NumPy with the same
 * seed reproduces every replicate.
 */
import { invalidInput } from '../errors.js';
import { MT19937 } from '../data/mt19937.js';

/** One metric value of one test case, for one seed of one arm. */
export interface CaseValue {
  seed: number;
  caseId: string;
  value: number;
}

/** A metric value of the study, as `study` collects them. */
export interface StudyRecord extends CaseValue {
  arm: string;
  metric: string;
}

export interface SeedSpread {
  /** the mean over seeds of each seed's mean over its test cases */
  mean: number;
  /** the sample standard deviation (n − 1) of the per-seed means; null with one seed */
  sd: number | null;
  min: number;
  max: number;
  perSeed: Array<{ seed: number; mean: number; cases: number }>;
}

export interface BootstrapOptions {
  /** number of bootstrap replicates (default 10000) */
  resamples?: number;
  /** the seed of the bootstrap's RandomState (default 0) */
  seed?: number;
  /** confidence level of the interval (default 0.95) */
  confidence?: number;
}

export interface PairedDifference {
  /** mean over the (seed, case) pairs of arm − baseline */
  difference: number;
  /** the percentile interval; null with fewer than 2 cases (no interval can be drawn) */
  ci: [number, number] | null;
  confidence: number;
  /** two-sided bootstrap p-value; null without an interval */
  p: number | null;
  /** the interval excludes 0; null without an interval */
  significant: boolean | null;
  cases: number;
  seeds: number;
  pairs: number;
  /** replicates drawn, and those without any (seed, case) cell holding a value (left out) */
  resamples: number;
  emptyResamples: number;
  bootstrapSeed: number;
}

export interface MetricDescription {
  /** what the sentence calls the metric, e.g. "gamma 3%/3 mm" */
  label: string;
  /** the unit of a difference, e.g. "pp" (percentage points) for a pass rate in %, "Gy" for an MAE */
  unit: string;
  /** decimals in the sentence (default 1) */
  decimals?: number;
}

export interface StudyMetric extends MetricDescription {
  /** the metric's name in the records */
  name: string;
}

export interface StudyStatistics {
  /** the arms in order; the first is the baseline of every difference */
  arms: string[];
  metrics: Array<{
    metric: StudyMetric;
    arms: Array<{ arm: string; spread: SeedSpread; difference: PairedDifference | null; sentence: string | null }>;
  }>;
}

function checkValues(values: readonly CaseValue[], what: string): void {
  for (const { seed, caseId, value } of values) {
    if (!Number.isFinite(value)) throw invalidInput(`${what}: case ${caseId}, seed ${seed} has the value ${value}; expected a finite number`);
    if (!Number.isInteger(seed)) throw invalidInput(`${what}: seed ${seed} of case ${caseId} is not an integer`);
  }
}

function pairKey(seed: number, caseId: string): string {
  return `${seed}\u0000${caseId}`;
}

function byKey(values: readonly CaseValue[], what: string): Map<string, CaseValue> {
  const map = new Map<string, CaseValue>();
  for (const item of values) {
    const key = pairKey(item.seed, item.caseId);
    if (map.has(key)) throw invalidInput(`${what}: case ${item.caseId} has two values for seed ${item.seed}; expected one per case and seed`);
    map.set(key, item);
  }
  return map;
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The mean and spread over seeds of one arm's values of one metric. */
export function seedSpread(values: readonly CaseValue[], what = 'the values'): SeedSpread {
  if (values.length === 0) throw invalidInput(`${what}: no values; expected at least one test case`);
  checkValues(values, what);
  byKey(values, what);
  const bySeed = new Map<number, number[]>();
  for (const { seed, value } of values) bySeed.set(seed, [...(bySeed.get(seed) ?? []), value]);
  const perSeed = [...bySeed.entries()].sort(([a], [b]) => a - b).map(([seed, xs]) => ({ seed, mean: mean(xs), cases: xs.length }));
  const means = perSeed.map((s) => s.mean);
  const centre = mean(means);
  const sd = means.length > 1 ? Math.sqrt(means.reduce((a, m) => a + (m - centre) ** 2, 0) / (means.length - 1)) : null;
  return { mean: centre, sd, min: Math.min(...means), max: Math.max(...means), perSeed };
}

/** NumPy's default (linear) percentile of sorted values, q in [0, 100]. */
export function percentile(sorted: readonly number[], q: number): number {
  const h = ((sorted.length - 1) * q) / 100;
  const low = Math.floor(h);
  const high = Math.min(low + 1, sorted.length - 1);
  return sorted[low]! + (h - low) * (sorted[high]! - sorted[low]!);
}

/** The paired difference arm − baseline over the (seed, case) pairs both hold, with its bootstrap interval. */
export function pairedDifference(baseline: readonly CaseValue[], arm: readonly CaseValue[], options: BootstrapOptions = {}): PairedDifference {
  const resamples = options.resamples ?? 10000;
  const bootstrapSeed = options.seed ?? 0;
  const confidence = options.confidence ?? 0.95;
  if (!Number.isInteger(resamples) || resamples < 100) throw invalidInput(`resamples must be an integer >= 100, got ${resamples}`);
  if (!(confidence > 0 && confidence < 1)) throw invalidInput(`confidence must be between 0 and 1, got ${confidence}`);
  checkValues(baseline, 'the baseline');
  checkValues(arm, 'the arm');
  const base = byKey(baseline, 'the baseline');
  const pairs: Array<{ seed: number; caseId: string; d: number }> = [];
  for (const [key, item] of byKey(arm, 'the arm')) {
    const reference = base.get(key);
    if (reference) pairs.push({ seed: item.seed, caseId: item.caseId, d: item.value - reference.value });
  }
  if (pairs.length === 0) throw invalidInput('the arm and the baseline share no (seed, test case) pair: expected both evaluated on the same cases and seeds');

  const seeds = [...new Set(pairs.map((p) => p.seed))].sort((a, b) => a - b);
  const cases = [...new Set(pairs.map((p) => p.caseId))].sort();
  const seedIndex = new Map(seeds.map((s, i) => [s, i]));
  const caseIndex = new Map(cases.map((c, i) => [c, i]));
  const cells = pairs.map((p) => ({ s: seedIndex.get(p.seed)!, c: caseIndex.get(p.caseId)!, d: p.d }));
  const difference = mean(pairs.map((p) => p.d));
  const result = { difference, confidence, cases: cases.length, seeds: seeds.length, pairs: pairs.length, resamples, bootstrapSeed };
  if (cases.length < 2) return { ...result, ci: null, p: null, significant: null, emptyResamples: 0 };

  const rng = new MT19937(bootstrapSeed);
  const seedWeights = new Float64Array(seeds.length);
  const caseWeights = new Float64Array(cases.length);
  const replicates: number[] = [];
  for (let r = 0; r < resamples; r++) {
    seedWeights.fill(0);
    caseWeights.fill(0);
    for (let i = 0; i < seeds.length; i++) seedWeights[rng.interval(seeds.length - 1)]! += 1;
    for (let j = 0; j < cases.length; j++) caseWeights[rng.interval(cases.length - 1)]! += 1;
    let sum = 0;
    let weight = 0;
    for (const { s, c, d } of cells) {
      const w = seedWeights[s]! * caseWeights[c]!;
      sum += w * d;
      weight += w;
    }
    if (weight > 0) replicates.push(sum / weight);
  }
  replicates.sort((a, b) => a - b);
  const tail = (100 * (1 - confidence)) / 2;
  const ci: [number, number] = [percentile(replicates, tail), percentile(replicates, 100 - tail)];
  const below = replicates.filter((x) => x <= 0).length;
  const above = replicates.filter((x) => x >= 0).length;
  const p = Math.min(1, (2 * (Math.min(below, above) + 1)) / (replicates.length + 1));
  return { ...result, ci, p, significant: ci[0] > 0 || ci[1] < 0, emptyResamples: resamples - replicates.length };
}

function signed(value: number, decimals: number): string {
  const text = Math.abs(value).toFixed(decimals);
  if (Number(text) === 0) return text;
  return `${value > 0 ? '+' : '\u2212'}${text}`;
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function pText(p: number): string {
  if (p < 0.001) return 'p < 0.001';
  return `p = ${p < 0.01 ? p.toFixed(3) : p.toFixed(2)}`;
}

/**
 * "gradient loss: +1.2 pp gamma 3%/3 mm, 95 % CI −0.8 to +3.1, not significant at n = 6 cases × 3 seeds (p = 0.23)"
 */
export function differenceSentence(armLabel: string, metric: MetricDescription, d: PairedDifference): string {
  const decimals = metric.decimals ?? 1;
  const amount = `${signed(d.difference, decimals)}${metric.unit ? ` ${metric.unit}` : ''} ${metric.label}`;
  const n = d.pairs === d.cases * d.seeds
    ? `n = ${count(d.cases, 'case')} × ${count(d.seeds, 'seed')}`
    : `n = ${d.pairs} case-seed pairs (${count(d.cases, 'case')}, ${count(d.seeds, 'seed')})`;
  if (!d.ci) return `${armLabel}: ${amount}, no confidence interval with ${count(d.cases, 'test case')} (${n})`;
  const level = `${Math.round(d.confidence * 1000) / 10} % CI`;
  return `${armLabel}: ${amount}, ${level} ${signed(d.ci[0], decimals)} to ${signed(d.ci[1], decimals)}, ${d.significant ? 'significant' : 'not significant'} at ${n} (${pText(d.p!)})`;
}

/**
 * Every metric of a study: the spread of each arm over seeds, and each later arm's paired difference against the
 * first arm, with its sentence. Every comparison uses the same bootstrap seed, so the same resampled cases and seeds.
 */
export function studyStatistics(
  records: readonly StudyRecord[],
  arms: readonly string[],
  metrics: readonly StudyMetric[],
  options: BootstrapOptions & { armLabels?: Record<string, string> } = {},
): StudyStatistics {
  if (arms.length === 0) throw invalidInput('a study needs at least one arm');
  if (new Set(arms).size !== arms.length) throw invalidInput(`the arms must differ, got ${arms.join(', ')}`);
  return {
    arms: [...arms],
    metrics: metrics.map((metric) => {
      const of = (arm: string) => records.filter((r) => r.arm === arm && r.metric === metric.name);
      const baseline = of(arms[0]!);
      return {
        metric,
        arms: arms.map((arm, index) => {
          const values = of(arm);
          const spread = seedSpread(values, `${metric.name} of arm ${arm}`);
          if (index === 0) return { arm, spread, difference: null, sentence: null };
          const difference = pairedDifference(baseline, values, options);
          return { arm, spread, difference, sentence: differenceSentence(options.armLabels?.[arm] ?? arm, metric, difference) };
        }),
      };
    }),
  };
}
