import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { fabricateRun, type FabricatedRun } from './fixtures/fabricate-run.js';
import { runCli, tempDir } from './helpers.js';

describe('vmat-native compare', () => {
  const root = tempDir('vmat-compare-');
  let baseline: FabricatedRun, gradient: FabricatedRun;
  beforeAll(async () => {
    baseline = await fabricateRun(root, 'baseline', { scale: 1.1, bestEpoch: 9 });
    gradient = await fabricateRun(root, 'grad_loss_0.1', { scale: 1.04, gradientWeight: 0.1, bestEpoch: 7, epochs: 10 });
  });

  it('computes the table from the run files, with changes in % against the first run', () => {
    const out = join(root, 'json');
    const result = runCli(['compare', baseline.dir, gradient.dir, '--json', '--out', out]);
    expect(result.status).toBe(0);
    const comparison = JSON.parse(result.stdout);
    expect(comparison.baseline).toBe('baseline');
    const [a, b] = comparison.rows;
    expect(a.valMaeGy).toBeCloseTo(baseline.bestValMaeGy, 10);
    expect(b.bestEpoch).toBe(7);
    expect(b.epochsRun).toBe(10);
    expect(b.trainingSeconds).toBe(gradient.seconds);
    expect(a.testMaeGy).toBeCloseTo(baseline.testMaeGy, 10);
    expect(b.gammaPassPct).toBeCloseTo(gradient.gammaPct, 10);
    expect(a.changePct.testMae).toBeNull();
    expect(b.changePct.testMae).toBeCloseTo((100 * (gradient.testMaeGy - baseline.testMaeGy)) / baseline.testMaeGy, 8);
    expect(b.changePct.gammaPass).toBeCloseTo((100 * (gradient.gammaPct - baseline.gammaPct)) / baseline.gammaPct, 8);
    expect(b.changePct.valMae).toBeCloseTo((100 * (gradient.bestValMaeGy - baseline.bestValMaeGy)) / baseline.bestValMaeGy, 8);
    // The predictions of the gradient run are closer: its test MAE is lower and its pass rate higher.
    expect(b.changePct.testMae).toBeLessThan(0);
    expect(b.changePct.gammaPass).toBeGreaterThan(0);
  });

  it('prints the table and writes comparison.md and comparison.csv, never overwriting without --overwrite', () => {
    const out = join(root, 'tables');
    const result = runCli(['compare', baseline.dir, gradient.dir, '--out', out]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('grad_loss_0.1');
    expect(result.stdout).toContain('Δ test');
    const markdown = readFileSync(join(out, 'comparison.md'), 'utf8');
    expect(markdown.split('\n')[0]).toMatch(/^\| run \| val MAE \(Gy\) \|/);
    expect(markdown).toContain(`| baseline | ${baseline.bestValMaeGy.toFixed(3)} |`);
    const csv = readFileSync(join(out, 'comparison.csv'), 'utf8').trim().split('\n');
    expect(csv.length).toBe(3);
    const header = csv[0].split(',');
    const row = csv[2].split(',');
    expect(Number(row[header.indexOf('test_mae_gy')])).toBeCloseTo(gradient.testMaeGy, 10);
    expect(row[header.indexOf('test_mae_change_pct')]).not.toBe('');

    writeFileSync(join(out, 'comparison.md'), 'mine\n');
    const again = runCli(['compare', baseline.dir, gradient.dir, '--out', out]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('already exists');
    expect(readFileSync(join(out, 'comparison.md'), 'utf8')).toBe('mine\n');
    expect(runCli(['compare', baseline.dir, gradient.dir, '--out', out, '--overwrite']).status).toBe(0);
    expect(readFileSync(join(out, 'comparison.md'), 'utf8')).toContain('grad_loss_0.1');
  });

  it('names what is wrong with bad input, exit 1', async () => {
    const one = runCli(['compare', baseline.dir, '--out', join(root, 'x')]);
    expect(one.status).toBe(1);
    expect(one.stderr).toContain('at least two run folders');
    const broken = await fabricateRun(root, 'broken', { evaluate: false });
    writeFileSync(join(broken.dir, 'metrics.csv'), 'epoch,lr\n1,0.1\n');
    const bad = runCli(['compare', baseline.dir, broken.dir, '--out', join(root, 'y')]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/metrics\.csv lacks the column\(s\) train_loss/);
    expect(existsSync(join(root, 'y', 'comparison.md'))).toBe(false);
  });
});

describe('publishing several runs (what sweep and demo do after training)', () => {
  it('writes the comparison, every run\'s figures and a report that holds the comparison table', async () => {
    const { publishRuns } = await import('../src/report/publish.js');
    const root = tempDir('vmat-publish-');
    const a = await fabricateRun(root, 'demo_w0', { scale: 1.1 });
    const b = await fabricateRun(root, 'demo_w0.1', { scale: 1.04, gradientWeight: 0.1 });
    const published = await publishRuns([a.dir, b.dir], { comparisonDir: root, overwrite: false });
    expect(published.comparison.rows.map((row) => row.run)).toEqual(['demo_w0', 'demo_w0.1']);
    expect(existsSync(join(root, 'comparison.md'))).toBe(true);
    expect(existsSync(join(root, 'comparison.png'))).toBe(true);
    for (const dir of [a.dir, b.dir]) {
      expect(existsSync(join(dir, 'figures', 'comparison.png'))).toBe(true);
      expect(existsSync(join(dir, 'figures', 'dose_slices_case_0002.png'))).toBe(true);
    }
    const html = readFileSync(published.reports[1], 'utf8');
    expect(html).toContain('Comparison with the other runs');
    expect(html).toContain('demo_w0</td>');
    await expect(publishRuns([a.dir, b.dir], { comparisonDir: root, overwrite: false })).rejects.toThrow(/already exists/);
  });
});
