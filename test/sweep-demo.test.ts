import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { runCli, tempDir } from './helpers.js';

describe('vmat-native sweep', () => {
  it('trains one run per weight through Trainer.fit, evaluates them and compares them', () => {
    const root = tempDir('vmat-sweep-');
    const data = join(root, 'data');
    expect(runCli(['synth', '--out', data, '--cases', '5', '--shape', '16,32,32', '--spacing', '5,4,4']).status).toBe(0);
    const logDir = join(root, 'runs');
    const args = ['sweep', '--gradient-loss-weight', '0,0.1', '--data-dir', data, '--exp-name', 'tiny', '--log-dir', logDir,
      '--epochs', '1', '--patch-size', '16', '--base-channels', '8', '--patches-per-volume', '1', '--test-split', '0.2', '--threads', '1'];
    const result = runCli(args, { timeoutMs: 240_000 });
    expect(result.stderr).not.toContain('internal error');
    expect(result.status).toBe(0);
    for (const [name, weight] of [['tiny_w0', 0], ['tiny_w0.1', 0.1]] as const) {
      const config = JSON.parse(readFileSync(join(logDir, name, 'training_config.json'), 'utf8')).settings;
      expect(config.gradientLossWeight).toBe(weight);
      expect(config.useGradientLoss).toBe(weight > 0);
      expect(existsSync(join(logDir, name, 'evaluation', 'summary.json'))).toBe(true);
      expect(existsSync(join(logDir, name, 'report.html'))).toBe(true);
      expect(existsSync(join(logDir, name, 'figures', 'dose_slices_' + JSON.parse(readFileSync(join(logDir, name, 'test_cases.json'), 'utf8')).test_cases[0] + '.png'))).toBe(true);
    }
    const markdown = readFileSync(join(logDir, 'tiny_sweep', 'comparison.md'), 'utf8');
    expect(markdown).toContain('| tiny_w0 |');
    expect(markdown).toContain('| tiny_w0.1 |');
    expect(result.stdout).toContain('Δ test');

    // A second sweep over the same names refuses before training anything.
    const again = runCli(args);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('already exists');
  });

  it('names a bad weight list, exit 1', () => {
    const result = runCli(['sweep', '--gradient-loss-weight', '0.1,abc', '--data-dir', '.', '--exp-name', 'x']);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('--gradient-loss-weight must be a comma-separated list of numbers');
  });
});

describe('vmat-native demo', () => {
  it("refuses to overwrite an existing folder's runs without --overwrite", () => {
    const out = tempDir('vmat-demo-');
    mkdirSync(join(out, 'runs', 'baseline'), { recursive: true });
    const result = runCli(['demo', '--quick', '--out', out]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`${join(out, 'runs', 'baseline')} already exists: set overwrite (--overwrite)`);
  });
});
