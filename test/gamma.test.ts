import { copyFileSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { saveCase, type CaseData } from '../src/data/case.js';
import { encodeNpy, parseNpy } from '../src/data/npy.js';
import { evaluateCase, gammaStats } from '../src/eval/evaluate.js';
import { gammaIndex } from '../src/eval/gamma.js';
import { constraintTable, dilateMask, doseError } from '../src/eval/metrics.js';
import { Trainer } from '../src/train/trainer.js';
import { runCli, tempDir } from './helpers.js';
import { writeTinyCohort } from './train-cases.js';

const SHAPE: [number, number, number] = [16, 20, 20];
const SPACING: [number, number, number] = [2.5, 2, 2];
const VOXELS = SHAPE[0] * SHAPE[1] * SHAPE[2];
const STRUCTURES = ['PTV70', 'PTV56', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel'];

/** A smooth plan-like dose: 70 Gy in a central ball falling off over a few mm. */
function planDose(scale = 1): Float32Array {
  const dose = new Float32Array(VOXELS);
  for (let z = 0; z < SHAPE[0]; z++)
    for (let y = 0; y < SHAPE[1]; y++)
      for (let x = 0; x < SHAPE[2]; x++) {
        const r = Math.hypot((z - 7.5) * SPACING[0], (y - 9.5) * SPACING[1], (x - 9.5) * SPACING[2]);
        dose[(z * SHAPE[1] + y) * SHAPE[2] + x] = (scale * 70) / (1 + Math.exp((r - 10) / 2.5));
      }
  return dose;
}

function box(z0: number, z1: number, y0: number, y1: number, x0: number, x1: number): Uint8Array {
  const mask = new Uint8Array(VOXELS);
  for (let z = z0; z < z1; z++) for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) mask[(z * SHAPE[1] + y) * SHAPE[2] + x] = 1;
  return mask;
}

function syntheticCase(caseId: string, dose: Float32Array): CaseData {
  const masks = new Uint8Array(STRUCTURES.length * VOXELS);
  const boxes = [box(5, 11, 7, 13, 7, 13), box(4, 12, 6, 14, 6, 14), box(5, 11, 13, 16, 8, 12), box(5, 11, 3, 7, 8, 12), box(4, 10, 8, 12, 1, 4), box(4, 10, 8, 12, 16, 19), box(12, 15, 2, 18, 2, 18)];
  boxes.forEach((mask, s) => masks.set(mask, s * VOXELS));
  return {
    caseId,
    format: 'vmat-native-1',
    shape: SHAPE,
    spacingMm: SPACING,
    ct: new Int16Array(VOXELS).fill(40),
    dose,
    masks,
    structures: STRUCTURES,
    constraints: new Float32Array(13),
    body: new Uint8Array(VOXELS).fill(1),
    metadata: { case_id: caseId },
  };
}

function writeNpy(path: string, data: Float32Array, shape: number[]): void {
  writeFileSync(path, Buffer.concat(encodeNpy({ dtype: 'float32', shape, data })));
}

describe('gammaIndex', () => {
  it('gives 100 % and Γ ≡ 0 for identical doses, NaN below the cutoff', async () => {
    const dose = planDose();
    const volume = { data: dose, shape: SHAPE, spacingMm: SPACING };
    const result = await gammaIndex(volume, volume, { device: 'cpu' });
    expect(result.passRatePct).toBe(100);
    const max = dose.reduce((a, b) => Math.max(a, b), 0);
    expect(result.normalisationGy).toBe(max);
    expect(result.nEvaluated).toBe(dose.filter((d) => d >= 0.1 * max).length);
    expect(result.gamma.length).toBe(VOXELS);
    expect(result.gamma.every((g, i) => (dose[i]! >= 0.1 * result.normalisationGy ? g === 0 : Number.isNaN(g)))).toBe(true);
    expect(result.settings).toMatchObject({ dosePercent: 3, dtaMm: 3, cutoffPercent: 10, interpFraction: 10, maxGamma: 2, local: false });
  });

  it('finds Γ = 1 at the maximum of a dose scaled by 3 % (3 %/3 mm)', async () => {
    // A 70 Gy plateau of about 5 mm radius around voxel (8, 10, 10): no nearby point of the scaled dose comes closer.
    const flat = new Float32Array(VOXELS);
    for (let z = 0; z < SHAPE[0]; z++)
      for (let y = 0; y < SHAPE[1]; y++)
        for (let x = 0; x < SHAPE[2]; x++) {
          const r = Math.hypot((z - 8) * SPACING[0], (y - 10) * SPACING[1], (x - 10) * SPACING[2]);
          flat[(z * SHAPE[1] + y) * SHAPE[2] + x] = Math.min(70, 80 / (1 + Math.exp((r - 10) / 2.5)));
        }
    const ref = { data: flat, shape: SHAPE, spacingMm: SPACING };
    const evaluated = { data: flat.map((d) => d * 1.03), shape: SHAPE, spacingMm: SPACING };
    const result = await gammaIndex(ref, evaluated);
    expect(result.gamma[(8 * SHAPE[1] + 10) * SHAPE[2] + 10]).toBeCloseTo(1, 4);
  });

  it('rejects bad settings naming the field', async () => {
    const volume = { data: planDose(), shape: SHAPE, spacingMm: SPACING };
    await expect(gammaIndex(volume, volume, { dtaMm: -1 })).rejects.toThrow(/dtaMm = -1/);
    await expect(gammaIndex(volume, volume, { dose: 3 } as never)).rejects.toThrow(/dose/);
    await expect(gammaIndex(volume, { ...volume, shape: [16, 20, 21] })).rejects.toThrow(/evaluated dose must be a Float32Array of 6720/);
  });
});

describe('evaluation metrics', () => {
  it('computes MAE and RMSE over a mask', () => {
    const ref = new Float32Array([1, 2, 3, 4]);
    const pred = new Float32Array([2, 2, 1, 4]);
    expect(doseError(pred, ref)).toEqual({ maeGy: 0.75, rmseGy: Math.sqrt(5 / 4), voxels: 4 });
    expect(doseError(pred, ref, new Uint8Array([1, 0, 1, 0]))).toEqual({ maeGy: 1.5, rmseGy: Math.sqrt(5 / 2), voxels: 2 });
  });

  it('dilates by millimetres, respecting anisotropic spacing', () => {
    const shape: [number, number, number] = [9, 9, 9];
    const mask = new Uint8Array(729);
    mask[(4 * 9 + 4) * 9 + 4] = 1;
    const grown = dilateMask(mask, shape, [5, 1, 2.5], 5);
    const at = (z: number, y: number, x: number) => grown[(z * 9 + y) * 9 + x];
    expect(at(5, 4, 4)).toBe(1); // 5 mm along z
    expect(at(6, 4, 4)).toBe(0);
    expect(at(4, 4, 6)).toBe(1); // 5 mm along x
    expect(at(4, 4, 7)).toBe(0);
    expect(at(4, 8, 4)).toBe(1); // 4 mm along y
    expect(at(4, 3, 6)).toBe(0); // hypot(1, 5) > 5
    // Count: every (dz, dy, dx) with (5dz)² + dy² + (2.5dx)² <= 25.
    let expected = 0;
    for (let dz = -1; dz <= 1; dz++) for (let dy = -4; dy <= 4; dy++) for (let dx = -2; dx <= 2; dx++) if ((5 * dz) ** 2 + dy ** 2 + (2.5 * dx) ** 2 <= 25) expected++;
    expect(grown.reduce((a, b) => a + b, 0)).toBe(expected);
  });

  it('summarises gamma inside a mask', () => {
    const gamma = new Float32Array([0.5, NaN, 1, 1.5]);
    expect(gammaStats(gamma)).toEqual({ pass_rate_pct: (100 * 2) / 3, mean_gamma: 1, median_gamma: 1, n_evaluated: 3 });
    expect(gammaStats(gamma, new Uint8Array([0, 1, 0, 1]))).toEqual({ pass_rate_pct: 0, mean_gamma: 1.5, median_gamma: 1.5, n_evaluated: 1 });
  });

  it('judges the constraint table against the data.md defaults', () => {
    const ref = syntheticCase('c', planDose());
    const hot = new Float32Array(VOXELS).fill(72);
    const rows = constraintTable(ref, planDose(), hot);
    expect(rows.map((r) => r.name)).toEqual([
      'Rectum V50', 'Rectum V60', 'Rectum V70', 'Rectum Dmax', 'Bladder V65', 'Bladder V70', 'Bladder V75', 'Femur_L V50', 'Femur_R V50', 'Bowel V45cc',
    ]);
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    expect(byName['Rectum V70']).toMatchObject({ limit: 0.2, pred: 1, predPass: false });
    expect(byName['Rectum Dmax']!.limit).toBeCloseTo(75, 9);
    expect(byName['Rectum Dmax']).toMatchObject({ pred: 72, predPass: true });
    expect(byName['Bladder V75']).toMatchObject({ pred: 0, predPass: true });
    // Bowel: 3 × 16 × 16 voxels of 0.01 cc receive >= 45 Gy in the prediction = 7.68 cc <= 195 cc.
    expect(byName['Bowel V45cc']!.pred).toBeCloseTo(7.68, 6);
    expect(byName['Bowel V45cc']!.limit).toBeCloseTo(195, 9);
  });

  it('evaluates a case: errors, DVH, constraints and gamma', async () => {
    const ref = syntheticCase('case_a', planDose());
    const pred = syntheticCase('case_a', planDose(1.02));
    const result = await evaluateCase(pred, ref, { device: 'cpu' });
    const expectedMae = planDose().reduce((a, d) => a + 0.02 * d, 0) / VOXELS;
    expect(result.mae_gy['all']).toBeCloseTo(expectedMae, 4);
    expect(result.mae_gy['body']).toBeCloseTo(expectedMae, 4);
    expect(Object.keys(result.mae_gy)).toEqual(['body', 'all', 'PTV70', 'PTV56']);
    expect(result.dvh.pred['PTV70']!.Dmax).toBeCloseTo(1.02 * result.dvh.ref['PTV70']!.Dmax, 3);
    expect(result.dvh_curves['Rectum']!.ref[0]).toBe(1);
    expect(result.gamma['3%/3mm'].pass_rate_pct).toBe(100);
    expect(result.gamma['3%/3mm_ptv'].n_evaluated).toBeGreaterThan(0);
    expect(result.gamma['3%/3mm_ptv'].n_evaluated).toBeLessThan(result.gamma['3%/3mm'].n_evaluated);
    expect(result.constraints).toHaveLength(10);
    await expect(evaluateCase({ ...pred, shape: [16, 20, 21] }, ref)).rejects.toThrow(/different grids/);
  });
});

describe('vmat-native gamma', () => {
  it('reads .npy volumes with --spacing and prints the JSON of gamma.md', () => {
    const dir = tempDir();
    writeNpy(join(dir, 'ref.npy'), planDose(), SHAPE);
    writeNpy(join(dir, 'eval.npy'), planDose(1.2), SHAPE);
    const out = join(dir, 'gamma.npy');
    const result = runCli(['gamma', join(dir, 'ref.npy'), join(dir, 'eval.npy'), '--spacing', '2.5,2,2', '--json', '--out', out]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const json = JSON.parse(result.stdout);
    expect(Object.keys(json)).toEqual(['pass_rate_pct', 'n_evaluated', 'n_passed', 'mean_gamma', 'median_gamma', 'settings', 'seconds']);
    expect(json.settings).toMatchObject({ dose_percent: 3, dta_mm: 3, cutoff_percent: 10, local: false, interp_fraction: 10, max_gamma: 2 });
    expect(json.pass_rate_pct).toBeLessThan(100);
    const gamma = parseNpy(new Uint8Array(readFileSync(out)));
    expect(gamma.dtype).toBe('float32');
    expect(gamma.shape).toEqual(SHAPE);
    const values = Array.from(gamma.data as Float32Array).filter((g) => !Number.isNaN(g));
    expect(values.length).toBe(json.n_evaluated);
    expect(values.filter((g) => g <= 1).length).toBe(json.n_passed);
    // --out never replaces a file without --overwrite
    const again = runCli(['gamma', join(dir, 'ref.npy'), join(dir, 'eval.npy'), '--spacing', '2.5,2,2', '--out', out]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
  });

  it('takes dose and spacing from case files, and honours --local, --dose, --dta', async () => {
    const dir = tempDir();
    await saveCase(join(dir, 'a.npz'), syntheticCase('a', planDose()));
    await saveCase(join(dir, 'b.npz'), syntheticCase('b', planDose(1.02)));
    const global = JSON.parse(runCli(['gamma', join(dir, 'a.npz'), join(dir, 'b.npz'), '--json']).stdout);
    const local = JSON.parse(runCli(['gamma', join(dir, 'a.npz'), join(dir, 'b.npz'), '--json', '--local', '--dose', '2', '--dta', '2']).stdout);
    expect(global.pass_rate_pct).toBe(100);
    expect(local.settings).toMatchObject({ local: true, dose_percent: 2, dta_mm: 2 });
    expect(local.mean_gamma).toBeGreaterThan(global.mean_gamma);
  });

  it('fails with one sentence on bad input', () => {
    const dir = tempDir();
    writeNpy(join(dir, 'ref.npy'), planDose(), SHAPE);
    const noSpacing = runCli(['gamma', join(dir, 'ref.npy'), join(dir, 'ref.npy')]);
    expect(noSpacing.status).toBe(1);
    expect(noSpacing.stderr).toMatch(/is a \.npy volume, which holds no spacing: give --spacing z,y,x/);
    const missing = runCli(['gamma', join(dir, 'nope.npz'), join(dir, 'ref.npy'), '--spacing', '2,2,2']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/nope\.npz does not exist/);
    const badDta = runCli(['gamma', join(dir, 'ref.npy'), join(dir, 'ref.npy'), '--spacing', '2,2,2', '--dta', '0']);
    expect(badDta.status).toBe(1);
    expect(badDta.stderr).toMatch(/dtaMm = 0/);
    // A native message names the setting; the CLI adds its flag.
    writeNpy(join(dir, 'zero.npy'), new Float32Array(SHAPE[0] * SHAPE[1] * SHAPE[2]), SHAPE);
    const zero = runCli(['gamma', join(dir, 'zero.npy'), join(dir, 'ref.npy'), '--spacing', '2,2,2']);
    expect(zero.status).toBe(1);
    expect(zero.stderr).toMatch(/the reference dose is zero everywhere, so the gamma has no normalisation; give one as normGy \(--norm\)/);
  });
});

describe('vmat-native evaluate', () => {
  async function cohort() {
    const dir = tempDir();
    const refs = join(dir, 'refs');
    const preds = join(dir, 'preds');
    for (const folder of [refs, preds]) await import('node:fs/promises').then((fs) => fs.mkdir(folder));
    for (const [id, scale] of [['case_0', 1.02], ['case_1', 0.97]] as const) {
      await saveCase(join(refs, `${id}.npz`), syntheticCase(id, planDose()));
      await saveCase(join(preds, `${id}_pred.npz`), syntheticCase(id, planDose(scale)));
    }
    return { dir, refs, preds };
  }

  it('pairs cases by id, writes per-case JSON, cases.csv and summary.json, and prints JSON', async () => {
    const { dir, refs, preds } = await cohort();
    const out = join(dir, 'eval');
    const result = runCli(['evaluate', '--pred', preds, '--ref', refs, '--out', out, '--json']);
    expect(result.status, result.stderr).toBe(0);
    const json = JSON.parse(result.stdout);
    expect(json.cases.map((c: { case_id: string }) => c.case_id)).toEqual(['case_0', 'case_1']);
    const first = json.cases[0];
    expect(Object.keys(first.mae_gy)).toEqual(['body', 'all', 'PTV70', 'PTV56']);
    expect(Object.keys(first.gamma)).toEqual(['3%/3mm', '2%/2mm', '3%/3mm_ptv']);
    expect(Object.keys(first.dvh.ref.PTV70)).toEqual(expect.arrayContaining(['Dmean', 'Dmax', 'D0.03cc', 'D2', 'D50', 'D95', 'D98', 'V40', 'V75']));
    expect(first.constraints).toHaveLength(10);
    expect(first.dvh_curves).toBeUndefined();
    expect(readdirSync(out).sort()).toEqual(['case_0.json', 'case_1.json', 'cases.csv', 'summary.json']);
    const perCase = JSON.parse(readFileSync(join(out, 'case_0.json'), 'utf8'));
    expect(perCase.dvh_curves.PTV70.bin_gy).toBe(0.1);
    const csv = readFileSync(join(out, 'cases.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(3);
    expect(csv[0]!.split(',')[0]).toBe('case_id');
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    const mae = json.cases.map((c: { mae_gy: { body: number } }) => c.mae_gy.body);
    expect(summary.metrics['mae_gy.body'].mean).toBeCloseTo((mae[0] + mae[1]) / 2, 9);
    expect(summary.metrics['mae_gy.body'].n).toBe(2);
    // existing results are kept unless --overwrite
    const again = runCli(['evaluate', '--pred', preds, '--ref', refs, '--out', out]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
    expect(runCli(['evaluate', '--pred', preds, '--ref', refs, '--out', out, '--overwrite']).status).toBe(0);
  });

  it('writes evaluation/ next to the predictions by default', async () => {
    const { refs, preds } = await cohort();
    const result = runCli(['evaluate', '--pred', join(preds, 'case_1_pred.npz'), '--ref', refs]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/gamma 3%\/3mm/);
    expect(existsSync(join(preds, 'evaluation', 'case_1.json'))).toBe(true);
  });

  it('refuses a missing case or different grids, writing nothing', async () => {
    const { dir, refs, preds } = await cohort();
    await saveCase(join(preds, 'case_9_pred.npz'), syntheticCase('case_9', planDose()));
    const out = join(dir, 'eval');
    const missing = runCli(['evaluate', '--pred', preds, '--ref', refs, '--out', out]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/no reference case for the prediction .*case_9_pred\.npz \(case 'case_9'\)/);
    expect(existsSync(out)).toBe(false);

    const other = syntheticCase('case_9', new Float32Array(16 * 20 * 10));
    await saveCase(join(refs, 'case_9.npz'), { ...other, shape: [16, 20, 10], ct: new Int16Array(3200), masks: new Uint8Array(7 * 3200), body: undefined });
    const grids = runCli(['evaluate', '--pred', preds, '--ref', refs, '--out', out]);
    expect(grids.status).toBe(1);
    expect(grids.stderr).toMatch(/case_9 are on different grids/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('vmat-native evaluate RUN', () => {
  it("predicts the run's test cases with its best checkpoint and evaluates them into RUN/evaluation", async () => {
    const dataDir = tempDir('vmat-eval-data-');
    await writeTinyCohort(dataDir, 5);
    const result = await new Trainer().fit({
      dataDir, logDir: tempDir('vmat-eval-runs-'), expName: 'e', epochs: 1, patchSize: 16, baseChannels: 8, patchesPerVolume: 1, device: 'cpu', threads: 1,
    });
    const run = result.runDir;
    const test = JSON.parse(readFileSync(join(run, 'test_cases.json'), 'utf8')) as { test_cases: string[] };
    const evaluated = runCli(['evaluate', run, '--json', '--device', 'cpu', '--threads', '1']);
    expect(evaluated.status, evaluated.stderr).toBe(0);
    const json = JSON.parse(evaluated.stdout);
    expect(json.cases.map((c: { case_id: string }) => c.case_id)).toEqual(test.test_cases);
    expect(json.out).toBe(join(run, 'evaluation'));
    expect(existsSync(join(run, 'evaluation', 'predictions', `${test.test_cases[0]}_pred.npz`))).toBe(true);
    expect(existsSync(join(run, 'evaluation', 'summary.json'))).toBe(true);
    expect(json.cases[0].mae_gy.body).toBeGreaterThan(0);
    const notRun = runCli(['evaluate', dataDir]);
    expect(notRun.status).toBe(1);
    expect(notRun.stderr).toMatch(/is not a run folder/);

    // Without training_summary.json the checkpoint with the lowest MAE in its name is used, never a state file.
    rmSync(join(run, 'training_summary.json'));
    const checkpoints = join(run, 'checkpoints');
    copyFileSync(result.bestCheckpoint, join(checkpoints, 'best-epoch=009-val_mae_gy=999.000.safetensors'));
    const fallback = runCli(['evaluate', run, '--overwrite', '--device', 'cpu', '--threads', '1']);
    expect(fallback.status, fallback.stderr).toBe(0);
    expect(fallback.stderr).toContain(`with ${result.bestCheckpoint}`);
  });
});
