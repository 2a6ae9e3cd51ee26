import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadCase, type CaseData } from '../src/data/case.js';
import { buildModelInput, normaliseCt } from '../src/data/inputs.js';
import { deriveBodyMask, signedDistanceMaps } from '../src/data/sdf.js';
import { CANONICAL_STRUCTURES } from '../src/data/structures.js';
import { doseMetrics, dvhCurve } from '../src/metrics/dvh.js';
import { repoRoot, runCli } from './helpers.js';

const cases = join(repoRoot, 'test', 'fixtures', 'cases');

/** The SciPy reference of native/tests/data/make_sdf_fixture.py, read here too: the binding must give the same. */
function scipyFixture() {
  const bytes = readFileSync(join(repoRoot, 'native', 'tests', 'data', 'sdf_fixture.bin'));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = [0, 1, 2, 3].map((i) => Number(view.getBigInt64(i * 8, true))) as [number, number, number, number];
  const params = [0, 1, 2, 3].map((i) => view.getFloat64(32 + i * 8, true));
  const count = dims.reduce((a, b) => a * b, 1);
  const masks = new Uint8Array(bytes.subarray(64, 64 + count));
  const expected = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 64 + count, bytes.byteOffset + 64 + count + count * 4));
  return { dims, spacing: params.slice(0, 3) as [number, number, number], clip: params[3]!, masks, expected };
}

describe('native distance maps and body mask', () => {
  it('match SciPy through the binding, with progress per structure', async () => {
    const { dims, spacing, clip, masks, expected } = scipyFixture();
    const events: unknown[] = [];
    const sdf = await signedDistanceMaps(masks, dims, spacing, { clipMm: clip, onProgress: (e) => events.push(e) });
    let worst = 0;
    for (let i = 0; i < sdf.length; i++) worst = Math.max(worst, Math.abs(sdf[i]! - expected[i]!));
    expect(worst).toBeLessThan(1e-5);
    expect(events).toEqual([1, 2, 3, 4].map((structure) => ({ structure, of: 4 })));
  });

  it('rejects mismatched shapes and honours an aborted signal', async () => {
    await expect(signedDistanceMaps(new Uint8Array(10), [1, 2, 2, 2], [1, 1, 1])).rejects.toThrow(/masks hold 10 values, expected 8/);
    await expect(signedDistanceMaps(new Uint8Array(8), [1, 2, 2, 2], [1, -1, 1])).rejects.toMatchObject({ code: 'VMAT_INVALID_INPUT' });
    const masks = new Uint8Array(8 * 16 * 16 * 16).fill(1, 0, 100);
    await expect(signedDistanceMaps(masks, [8, 16, 16, 16], [1, 1, 1], { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
  });

  it('derives a body mask from the CT', async () => {
    const data = await loadCase(join(cases, 'format1_stored.npz'));
    const body = await deriveBodyMask(data.ct, data.shape);
    expect(Array.from(body)).toEqual(Array.from(data.body!));
  });
});

describe('buildModelInput', () => {
  it('gives the normalised CT and the SDF channels in canonical order', async () => {
    const data = await loadCase(join(cases, 'format1_stored.npz'));
    const { input, body, warnings } = await buildModelInput(data);
    const voxels = 960;
    expect(input.length).toBe(9 * voxels);
    expect(input[5]).toBeCloseTo(normaliseCt(data.ct[5]!), 6);
    expect(normaliseCt(-2000)).toBe(0.25);
    expect(normaliseCt(5000)).toBe(1.25);
    const direct = await signedDistanceMaps(data.masks, [8, 8, 10, 12], data.spacingMm);
    expect(Array.from(input.subarray(voxels))).toEqual(Array.from(direct));
    expect(body).toBe(data.body);
    expect(warnings).toEqual([]);
  });

  it('maps other names, fills missing structures with zeros and warns, and uses a valid masks_sdf cache', async () => {
    const data = await loadCase(join(cases, 'format1_compressed.npz'));
    const { input, warnings } = await buildModelInput(data);
    const voxels = 960;
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toMatch(/structure Femur_L is not in the case/);
    for (let c = 6; c <= 8; c++) expect(input.subarray(c * voxels, (c + 1) * voxels).every((v) => v === 0)).toBe(true);
    // channel 1 (PTV70) comes from the float16 cache: equal to the cache, and within float16 rounding of the native maps
    expect(Array.from(input.subarray(voxels, 2 * voxels))).toEqual(Array.from(data.masksSdf!.subarray(0, voxels)));
    const native = await signedDistanceMaps(data.masks.subarray(0, voxels), [1, 8, 10, 12], data.spacingMm);
    native.forEach((value, i) => expect(Math.abs(value - input[voxels + i]!)).toBeLessThan(1e-3));
  });

  it('ignores an inconsistent cache with a warning and computes the maps', async () => {
    const data = await loadCase(join(cases, 'format1_compressed.npz'));
    const broken: CaseData = { ...data, masksSdf: data.masksSdf!.map((v) => -v) };
    const { input, warnings } = await buildModelInput(broken, ['PTV70']);
    expect(warnings[0]).toMatch(/masks_sdf cache is not used \(ptv 70 has the value .* (inside|outside) the structure/);
    const native = await signedDistanceMaps(data.masks.subarray(0, 960), [1, 8, 10, 12], data.spacingMm);
    expect(Array.from(input.subarray(960))).toEqual(Array.from(native));
  });

  it('accepts a custom channel list (predecessor v2.4 with PTV50.4)', async () => {
    const data = await loadCase(join(cases, 'pred_v24.npz'));
    const { input, warnings } = await buildModelInput(data, [...CANONICAL_STRUCTURES, 'PTV50.4']);
    expect(input.length).toBe(10 * 960);
    expect(warnings).toEqual([]);
  });
});

describe('dose metrics', () => {
  it('are exact on a uniform dose', () => {
    const dose = new Float32Array(1000).fill(60);
    const mask = new Uint8Array(1000).fill(1, 0, 400);
    const m = doseMetrics(dose, mask, 0.01);
    expect(m.volumeCc).toBeCloseTo(4, 10);
    for (const key of ['Dmean', 'Dmax', 'D0.03cc', 'D2', 'D50', 'D95', 'D98'] as const) expect(m[key]).toBe(60);
    expect([m.V40, m.V45, m.V50, m.V55, m.V60, m.V65, m.V70, m.V75]).toEqual([1, 1, 1, 1, 1, 0, 0, 0]);
  });

  it('are exact on a linear ramp 0..99 Gy', () => {
    const dose = Float32Array.from({ length: 100 }, (_, i) => 99 - i);
    const mask = new Uint8Array(100).fill(1);
    const m = doseMetrics(dose, mask, 0.01);
    expect(m.Dmean).toBeCloseTo(49.5, 10);
    expect(m.Dmax).toBe(99);
    expect(m.D2).toBe(98); // hottest 2 voxels: 99, 98
    expect(m.D50).toBe(50);
    expect(m.D95).toBe(5);
    expect(m.D98).toBe(2);
    expect(m['D0.03cc']).toBe(97); // 3 voxels of 0.01 cc
    expect(m.V40).toBeCloseTo(0.6, 12);
    expect(m.V75).toBeCloseTo(0.25, 12);
  });

  it('gives NaN for an empty structure', () => {
    const m = doseMetrics(new Float32Array(4), new Uint8Array(4), 1);
    expect(m.volumeCc).toBe(0);
    expect(m.D95).toBeNaN();
  });

  it('gives a cumulative DVH', () => {
    const dose = Float32Array.from({ length: 100 }, (_, i) => i / 10); // 0 .. 9.9 Gy
    const curve = dvhCurve(dose, new Uint8Array(100).fill(1), 1);
    expect(Array.from(curve.doseGy)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    curve.volumeFraction.forEach((fraction, b) => expect(fraction).toBeCloseTo(1 - b / 10, 12));
  });
});

describe('inspect and validate commands', () => {
  it('inspect --json reports the case', () => {
    const result = runCli(['inspect', join(cases, 'pred_v23.npz'), '--json']);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ case_id: 'pred_v23', format: 'predecessor-2.3', shape: [8, 10, 12], spacing_mm: [2.5, 1.5, 1] });
    expect(report.structures).toEqual(CANONICAL_STRUCTURES);
    expect(report.volumes_cc.Bowel).toBe(0);
    expect(report.volumes_cc.PTV70).toBeGreaterThan(0);
    expect(report.dose_gy.max).toBeGreaterThan(60);
    expect(report.constraints).toHaveLength(13);
    const noDose = JSON.parse(runCli(['inspect', join(cases, 'format1_compressed.npz'), '--json']).stdout);
    expect(noDose.dose_gy).toBeUndefined();
  });

  it('inspect names the problem of a bad file and of a missing spacing', () => {
    const bad = runCli(['inspect', join(repoRoot, 'test', 'fixtures', 'bad', 'dose_negative.npz')]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/'dose' holds a negative dose/);
    const missing = runCli(['inspect', join(cases, 'pred_no_spacing.npz')]);
    expect(missing.status).toBe(1);
    expect(runCli(['inspect', join(cases, 'pred_no_spacing.npz'), '--spacing', '3,2,1', '--json']).stdout).toMatch(/"spacing_mm": \[\s*3,\s*2,\s*1\s*\]/);
  });

  it('validate lists every problem of every file and exits 1', () => {
    const result = runCli(['validate', join(repoRoot, 'test', 'fixtures', 'bad')]);
    expect(result.status).toBe(1);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(17);
    expect(lines.filter((line) => line.includes('several_problems.npz'))).toHaveLength(3);
    expect(result.stderr).toMatch(/15 case files checked: 17 problems in 15 files/);
    const good = runCli(['validate', cases, '--spacing', '2.5,1.5,1']);
    expect(good.status).toBe(0);
    expect(good.stdout).toBe('');
  });
});
