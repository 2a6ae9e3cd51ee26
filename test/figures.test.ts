import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { PNG } from 'pngjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { fabricateRun, type FabricatedRun } from './fixtures/fabricate-run.js';
import { runCli, tempDir } from './helpers.js';

describe('vmat-native figures', () => {
  const root = tempDir('vmat-figures-');
  let baseline: FabricatedRun, gradient: FabricatedRun;
  beforeAll(async () => {
    baseline = await fabricateRun(root, 'baseline', { scale: 1.1 });
    gradient = await fabricateRun(root, 'grad_loss_0.1', { scale: 1.04, gradientWeight: 0.1, bestEpoch: 7 });
  });

  it('writes the six figures as PNG and SVG from run folders', () => {
    const result = runCli(['figures', baseline.dir, gradient.dir]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const dir = join(baseline.dir, 'figures');
    const names = ['training_curves', 'loss_components', 'comparison', 'dose_slices_case_0002', 'dvh_case_0002', 'gamma_case_0002', 'gamma_histogram_case_0002'];
    for (const name of names) {
      const png = PNG.sync.read(readFileSync(join(dir, `${name}.png`)));
      expect(png.width, name).toBeGreaterThan(400);
      expect(png.width, name).toBeLessThan(4000);
      expect(png.height, name).toBeGreaterThan(200);
      expect(png.height, name).toBeLessThan(4000);
      const svg = readFileSync(join(dir, `${name}.svg`), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
    }
    expect(readdirSync(join(gradient.dir, 'figures')).filter((f) => f.endsWith('.png')).length).toBe(6);
    process.stderr.write(`figures in ${dir}\n`);
  });

  it('labels axes with units and marks the best epoch', () => {
    const dir = join(baseline.dir, 'figures');
    const curves = readFileSync(join(dir, 'training_curves.svg'), 'utf8');
    expect(curves).toContain('Epoch');
    expect(curves).toContain('MAE (Gy)');
    expect(curves).toContain(`best epoch ${baseline.bestEpoch}: ${baseline.bestValMaeGy.toFixed(2)} Gy`);
    const dvh = readFileSync(join(dir, 'dvh_case_0002.svg'), 'utf8');
    expect(dvh).toContain('Dose (Gy)');
    expect(dvh).toContain('Volume (%)');
    for (const structure of ['PTV70', 'Rectum', 'Bladder']) expect(dvh).toContain(structure);
    const slices = readFileSync(join(dir, 'dose_slices_case_0002.svg'), 'utf8');
    expect(slices).toContain('Dose (Gy)');
    expect(slices).toContain('Difference (Gy)');
    // ±10 % of the run's 70 Gy (the fixture records no prescription), isodoses and contours in the legend.
    expect(slices).toContain('values from −7 to 7');
    expect(slices).toContain('50 % (35 Gy)');
    for (const structure of ['PTV70', 'Rectum', 'Bladder']) expect(slices).toContain(`>${structure}<`);
    const histogram = readFileSync(join(dir, 'gamma_histogram_case_0002.svg'), 'utf8');
    expect(histogram).toContain('Pass rate 3%/3 mm (%)');
    expect(histogram).toMatch(/\d+\.\d % \(n = \d+\)/);
    expect(slices).toContain('Sagittal');
    const comparison = readFileSync(join(dir, 'comparison.svg'), 'utf8');
    expect(comparison).toContain('grad_loss_0.1');
    expect(comparison).toContain('Gamma pass rate 3%/3 mm (%)');
  });

  it('draws the slices to scale: panel aspect follows the voxel spacing', () => {
    const slices = readFileSync(join(baseline.dir, 'figures', 'dose_slices_case_0002.svg'), 'utf8');
    const images = [...slices.matchAll(/<image[^>]*width="([\d.]+)"[^>]*height="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(images.length).toBe(9);
    // Fixture: shape [16, 32, 24], spacing [3, 2, 2] mm: axial 48 × 64 mm, coronal 48 × 48, sagittal 64 × 48 (w × h).
    const [axial, coronal, sagittal] = [images[0], images[3], images[6]];
    expect(axial[0] / axial[1]).toBeCloseTo(48 / 64, 1);
    expect(coronal[0] / coronal[1]).toBeCloseTo(1, 1);
    expect(sagittal[0] / sagittal[1]).toBeCloseTo(64 / 48, 1);
  });

  it('says which figures it could not draw for a run without evaluation', async () => {
    const bare = await fabricateRun(root, 'bare', { evaluate: false });
    const result = runCli(['figures', bare.dir]);
    expect(result.status).toBe(0);
    expect(result.stderr).toContain('has no evaluation');
    expect(existsSync(join(bare.dir, 'figures', 'training_curves.png'))).toBe(true);
  });

  it('rejects a folder that is not a run, exit 1', () => {
    const result = runCli(['figures', join(root, 'nope')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('does not exist');
  });
});
