import { spawnSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

import { type CaseValue, differenceSentence, pairedDifference, percentile, seedSpread, studyStatistics } from '../src/study/stats.js';

const hasScipy = spawnSync('/usr/bin/python3', ['-c', 'import numpy, scipy.stats'], { encoding: 'utf8' }).status === 0;

function python(script: string, input: unknown): unknown {
  const run = spawnSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(input), encoding: 'utf8' });
  if (run.status !== 0) throw new Error(run.stderr);
  return JSON.parse(run.stdout);
}

// The README's bootstrap written from its description with NumPy: RandomState(seed), per replicate randint for the
// seeds then the cases, cells weighted by the product of the draw counts, np.percentile, the dual p-value.
const NUMPY_BOOTSTRAP = `
import json, sys
import numpy as np
job = json.load(sys.stdin)
seeds = sorted({p["seed"] for p in job["pairs"]})
cases = sorted({p["caseId"] for p in job["pairs"]})
D = np.zeros((len(seeds), len(cases))); present = np.zeros_like(D)
for p in job["pairs"]:
    D[seeds.index(p["seed"]), cases.index(p["caseId"])] = p["d"]
    present[seeds.index(p["seed"]), cases.index(p["caseId"])] = 1
rs = np.random.RandomState(job["seed"])
stats = []
for _ in range(job["resamples"]):
    ws = np.bincount(rs.randint(0, len(seeds), size=len(seeds)), minlength=len(seeds))
    wc = np.bincount(rs.randint(0, len(cases), size=len(cases)), minlength=len(cases))
    W = np.outer(ws, wc) * present
    if W.sum() > 0:
        stats.append((W * D).sum() / W.sum())
stats = np.array(stats)
tail = 100 * (1 - job["confidence"]) / 2
p = min(1.0, 2 * (min((stats <= 0).sum(), (stats >= 0).sum()) + 1) / (len(stats) + 1))
print(json.dumps({"difference": float(D[present == 1].mean()), "ci": [float(np.percentile(stats, tail)), float(np.percentile(stats, 100 - tail))],
                  "p": p, "used": len(stats)}))
`;

/** Deterministic, not-too-regular values: a case effect, a seed effect, an arm effect and noise. */
function cohort(seeds: number[], cases: number, armEffect: number, noise = 1): { baseline: CaseValue[]; arm: CaseValue[] } {
  const baseline: CaseValue[] = [];
  const arm: CaseValue[] = [];
  for (const seed of seeds) {
    for (let c = 0; c < cases; c++) {
      const caseId = `case_${String(c).padStart(3, '0')}`;
      const common = 30 + 8 * Math.sin(1.7 * c) + 0.5 * Math.cos(seed);
      baseline.push({ seed, caseId, value: common + noise * Math.sin(12.9898 * c + 78.233 * seed) });
      arm.push({ seed, caseId, value: common + armEffect + noise * Math.cos(4.1414 * c + 3.3 * seed + 1) });
    }
  }
  return { baseline, arm };
}

function pairsOf(baseline: CaseValue[], arm: CaseValue[]) {
  const base = new Map(baseline.map((v) => [`${v.seed}/${v.caseId}`, v.value]));
  return arm.filter((v) => base.has(`${v.seed}/${v.caseId}`)).map((v) => ({ seed: v.seed, caseId: v.caseId, d: v.value - base.get(`${v.seed}/${v.caseId}`)! }));
}

describe('seedSpread', () => {
  it.skipIf(!hasScipy)('gives the mean and sample SD of the per-seed means, as NumPy', () => {
    const { arm } = cohort([42, 123, 456], 7, 1.5);
    arm.pop(); // one seed with a case fewer: per-seed means, not the grand mean
    const ours = seedSpread(arm);
    const theirs = python(`
import json, sys
import numpy as np
values = json.load(sys.stdin)
seeds = sorted({v["seed"] for v in values})
means = np.array([np.mean([v["value"] for v in values if v["seed"] == s]) for s in seeds])
print(json.dumps({"mean": means.mean(), "sd": means.std(ddof=1), "min": means.min(), "max": means.max(), "per": means.tolist()}))`, arm) as Record<string, number & number[]>;
    expect(ours.mean).toBeCloseTo(theirs.mean, 12);
    expect(ours.sd!).toBeCloseTo(theirs.sd, 12);
    expect(ours.min).toBeCloseTo(theirs.min, 12);
    expect(ours.max).toBeCloseTo(theirs.max, 12);
    expect(ours.perSeed.map((s) => s.mean)).toEqual(theirs.per.map((x: number) => expect.closeTo(x, 12)));
    expect(ours.perSeed.map((s) => s.cases)).toEqual([7, 7, 6]);
  });

  it('has no SD with one seed and refuses bad values', () => {
    expect(seedSpread([{ seed: 1, caseId: 'a', value: 2 }, { seed: 1, caseId: 'b', value: 4 }])).toMatchObject({ mean: 3, sd: null });
    expect(() => seedSpread([])).toThrow(/no values/);
    expect(() => seedSpread([{ seed: 1, caseId: 'a', value: Number.NaN }])).toThrow(/case a, seed 1 has the value NaN; expected a finite number/);
    expect(() => seedSpread([{ seed: 1, caseId: 'a', value: 1 }, { seed: 1, caseId: 'a', value: 2 }])).toThrow(/case a has two values for seed 1/);
  });
});

describe('pairedDifference', () => {
  it.skipIf(!hasScipy)('reproduces the two-way bootstrap written with NumPy, replicate for replicate', () => {
    for (const [seeds, cases, effect, bootstrapSeed, confidence] of [
      [[42, 123, 456], 7, 0.8, 0, 0.95],
      [[1, 2], 12, -0.3, 17, 0.9],
      [[5, 6, 7, 8, 9], 3, 2.0, 3, 0.95],
    ] as const) {
      const { baseline, arm } = cohort([...seeds], cases, effect);
      const ours = pairedDifference(baseline, arm, { resamples: 2000, seed: bootstrapSeed, confidence });
      const theirs = python(NUMPY_BOOTSTRAP, { pairs: pairsOf(baseline, arm), seed: bootstrapSeed, resamples: 2000, confidence }) as { difference: number; ci: number[]; p: number; used: number };
      expect(ours.difference).toBeCloseTo(theirs.difference, 12);
      expect(ours.ci![0]).toBeCloseTo(theirs.ci[0]!, 12);
      expect(ours.ci![1]).toBeCloseTo(theirs.ci[1]!, 12);
      expect(ours.p).toBeCloseTo(theirs.p, 12);
      expect(ours.resamples - ours.emptyResamples).toBe(theirs.used);
      expect(ours).toMatchObject({ cases, seeds: seeds.length, pairs: cases * seeds.length, confidence });
    }
  });

  it.skipIf(!hasScipy)('leaves out missing cells as the NumPy bootstrap does', () => {
    const { baseline, arm } = cohort([3, 4], 4, 0.5);
    const sparse = arm.filter((v, i) => i % 3 !== 1); // cases missing in some seeds: some replicates draw no cell
    const ours = pairedDifference(baseline, sparse, { resamples: 1000, seed: 5 });
    const theirs = python(NUMPY_BOOTSTRAP, { pairs: pairsOf(baseline, sparse), seed: 5, resamples: 1000, confidence: 0.95 }) as { ci: number[]; p: number; used: number };
    expect(ours.ci![0]).toBeCloseTo(theirs.ci[0]!, 12);
    expect(ours.ci![1]).toBeCloseTo(theirs.ci[1]!, 12);
    expect(ours.p).toBeCloseTo(theirs.p, 12);
    expect(ours.emptyResamples).toBe(1000 - theirs.used);
    expect(ours.pairs).toBe(sparse.length);
  });

  it.skipIf(!hasScipy)('with one seed is SciPy\'s percentile bootstrap of the mean case difference', () => {
    const { baseline, arm } = cohort([42], 9, 0.7);
    const ours = pairedDifference(baseline, arm, { resamples: 3000, seed: 11 });
    const theirs = python(`
import json, sys
import numpy as np
from scipy import stats
d = np.array([p["d"] for p in sorted(json.load(sys.stdin), key=lambda p: p["caseId"])])
r = stats.bootstrap((d,), np.mean, n_resamples=3000, method="percentile", confidence_level=0.95, random_state=np.random.RandomState(11))
print(json.dumps([r.confidence_interval.low, r.confidence_interval.high]))`, pairsOf(baseline, arm)) as number[];
    expect(ours.ci![0]).toBeCloseTo(theirs[0]!, 12);
    expect(ours.ci![1]).toBeCloseTo(theirs[1]!, 12);
  });

  it('finds a clear effect, and none where the arms are the same', () => {
    const clear = cohort([1, 2, 3], 10, 3, 0.5);
    const found = pairedDifference(clear.baseline, clear.arm, { resamples: 1000 });
    expect(found.significant).toBe(true);
    expect(found.ci![0]).toBeGreaterThan(0);
    expect(found.p!).toBeLessThan(0.01);
    const same = pairedDifference(clear.baseline, clear.baseline, { resamples: 1000 });
    expect(same).toMatchObject({ difference: 0, ci: [0, 0], p: 1, significant: false });
  });

  it('draws no interval from one case, and refuses what it cannot pair', () => {
    const one = pairedDifference([{ seed: 1, caseId: 'a', value: 1 }, { seed: 2, caseId: 'a', value: 2 }],
      [{ seed: 1, caseId: 'a', value: 2 }, { seed: 2, caseId: 'a', value: 2.5 }]);
    expect(one).toMatchObject({ difference: 0.75, ci: null, p: null, significant: null, cases: 1, seeds: 2 });
    expect(() => pairedDifference([{ seed: 1, caseId: 'a', value: 1 }], [{ seed: 2, caseId: 'a', value: 1 }])).toThrow(/share no \(seed, test case\) pair/);
    expect(() => pairedDifference([], [], { resamples: 10 })).toThrow(/resamples must be an integer >= 100, got 10/);
    expect(() => pairedDifference([], [], { confidence: 95 })).toThrow(/confidence must be between 0 and 1, got 95/);
  });

  it('takes NumPy\'s linear percentile', () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4], 2.5)).toBeCloseTo(1.075, 12);
    expect(percentile([7], 97.5)).toBe(7);
  });
});

describe('the sentence', () => {
  const base = { confidence: 0.95, cases: 6, seeds: 3, pairs: 18, resamples: 10000, emptyResamples: 0, bootstrapSeed: 0 };
  const gamma = { label: 'gamma 3%/3 mm', unit: 'pp' };
  it('says what the issue asks, in its words', () => {
    expect(differenceSentence('gradient loss', gamma, { ...base, difference: 1.23, ci: [-0.84, 3.06], p: 0.2345, significant: false }))
      .toBe('gradient loss: +1.2 pp gamma 3%/3 mm, 95 % CI \u22120.8 to +3.1, not significant at n = 6 cases × 3 seeds (p = 0.23)');
    expect(differenceSentence('VGG', { label: 'MAE', unit: 'Gy', decimals: 2 }, { ...base, difference: -0.314, ci: [-0.52, -0.11], p: 0.0004, significant: true, pairs: 17 }))
      .toBe('VGG: \u22120.31 Gy MAE, 95 % CI \u22120.52 to \u22120.11, significant at n = 17 case-seed pairs (6 cases, 3 seeds) (p < 0.001)');
    expect(differenceSentence('x', gamma, { ...base, difference: -0.01, ci: [-0.04, 0.02], p: 0.004, significant: false, seeds: 1, pairs: 6, confidence: 0.9 }))
      .toBe('x: 0.0 pp gamma 3%/3 mm, 90 % CI 0.0 to 0.0, not significant at n = 6 cases × 1 seed (p = 0.004)');
    expect(differenceSentence('x', gamma, { ...base, difference: 2, ci: null, p: null, significant: null, cases: 1, pairs: 3 }))
      .toBe('x: +2.0 pp gamma 3%/3 mm, no confidence interval with 1 test case (n = 1 case × 3 seeds)');
  });
});

describe('studyStatistics', () => {
  it('gives every arm its spread and every later arm its difference and sentence', () => {
    const a = cohort([42, 123], 6, 0);
    const b = cohort([42, 123], 6, 2.5);
    const records = [
      ...a.baseline.map((v) => ({ ...v, arm: 'baseline', metric: 'gamma' })),
      ...b.arm.map((v) => ({ ...v, arm: 'grad_loss_0.1', metric: 'gamma' })),
      ...a.baseline.map((v) => ({ ...v, arm: 'baseline', metric: 'mae', value: v.value / 10 })),
      ...b.arm.map((v) => ({ ...v, arm: 'grad_loss_0.1', metric: 'mae', value: v.value / 10 })),
    ];
    const stats = studyStatistics(records, ['baseline', 'grad_loss_0.1'], [
      { name: 'gamma', label: 'gamma 3%/3 mm', unit: 'pp' },
      { name: 'mae', label: 'MAE', unit: 'Gy', decimals: 2 },
    ], { resamples: 500, armLabels: { 'grad_loss_0.1': 'gradient loss' } });
    expect(stats.arms).toEqual(['baseline', 'grad_loss_0.1']);
    const [gamma, mae] = stats.metrics;
    expect(gamma!.arms[0]).toMatchObject({ arm: 'baseline', difference: null, sentence: null });
    expect(gamma!.arms[1]!.difference!.difference).toBeCloseTo(pairedDifference(a.baseline, b.arm, { resamples: 500 }).difference, 12);
    expect(gamma!.arms[1]!.sentence).toMatch(/^gradient loss: \+\d\.\d pp gamma 3%\/3 mm, 95 % CI .* at n = 6 cases × 2 seeds \(p [<=] /);
    expect(mae!.arms[1]!.sentence).toMatch(/^gradient loss: \+0\.\d\d Gy MAE/);
    expect(mae!.arms[1]!.spread.mean).toBeCloseTo(seedSpread(b.arm).mean / 10, 12);
    expect(() => studyStatistics(records, ['baseline', 'baseline'], [])).toThrow(/the arms must differ/);
    expect(() => studyStatistics(records, ['baseline', 'other'], [{ name: 'gamma', label: 'g', unit: 'pp' }])).toThrow(/gamma of arm other: no values/);
  });
});
