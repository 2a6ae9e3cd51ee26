/**
 * Site profiles wired into train, predict and evaluate: a tiny head-and-neck cohort (the OpenKBP structure set, some
 * under aliases, in another order), left-right symmetric so that the parotid pair the flip swaps can be checked.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { saveCase, type CaseData } from '../src/data/case.js';
import { evaluatePredictions, evaluateRun } from '../src/eval/run.js';
import { constraintLabel } from '../src/eval/metrics.js';
import type { NativeTrainCase } from '../src/native/addon.js';
import { loadNative } from '../src/native/loader.js';
import { checkpointModel, predictCase } from '../src/predict/predict.js';
import { readTrainingConfig } from '../src/run/index.js';
import { conditioningFor } from '../src/sites/conditioning.js';
import { channelNames, loadSiteProfile } from '../src/sites/profile.js';
import { Trainer } from '../src/train/trainer.js';
import { runCli, tempDir } from './helpers.js';
import { random, writeTinyCohort } from './train-cases.js';

const base = { epochs: 1, patchSize: 16, baseChannels: 8, batchSize: 2, patchesPerVolume: 1, device: 'cpu', threads: 1, numWorkers: 1, swBatch: 2 };
const SHAPE: [number, number, number] = [16, 24, 24];
// Case names: aliases of the profile's channels for four of them, and not in the profile's order.
const NAMES = ['Mandible', 'PTV70', 'PTV63', 'PTV56', 'Brain_Stem', 'Spinal_Cord', 'Parotid_R', 'Parotid_L', 'Esophagus', 'Larynx'];

/** A head-and-neck case that is mirror-symmetric in x (x ↔ 23 − x) but for the side-specific targets. */
function headNeckCase(index: number): CaseData {
  const [z, y, x] = SHAPE;
  const voxels = z * y * x;
  const rand = random(500 + index);
  const cz = 8 + Math.round(rand() * 2 - 1);
  const cy = 12 + Math.round(rand() * 2 - 1);
  // [z, y, x offset from the midline 11.5, radius]; parotids at ±6.5 (right on the low-x side)
  const spheres: Record<string, [number, number, number, number]> = {
    Mandible: [cz - 5, cy - 6, 0, 2.5],
    PTV70: [cz, cy, -3.5, 3],
    PTV63: [cz, cy, 3.5, 3],
    PTV56: [cz, cy, 0, 6],
    Brain_Stem: [cz + 5, cy + 3, 0, 2],
    Spinal_Cord: [cz - 3, cy + 6, 0, 1.5],
    Parotid_R: [cz + 2, cy, -6.5, 2.5],
    Parotid_L: [cz + 2, cy, 6.5, 2.5],
    Esophagus: [cz - 5, cy + 4, 0, 1.5],
    Larynx: [cz - 4, cy - 2, 0, 2],
  };
  const ct = new Int16Array(voxels).fill(-1000);
  const dose = new Float32Array(voxels);
  const body = new Uint8Array(voxels);
  const masks = new Uint8Array(NAMES.length * voxels);
  for (let k = 0; k < z; k++)
    for (let j = 0; j < y; j++)
      for (let i = 0; i < x; i++) {
        const v = (k * y + j) * x + i;
        const inside = ((j - 11.5) / 11) ** 2 + ((i - 11.5) / 11.5) ** 2 < 1;
        if (!inside) continue;
        body[v] = 1;
        ct[v] = 30;
        NAMES.forEach((name, s) => {
          const [sz, sy, sx, r] = spheres[name]!;
          if (Math.hypot(k - sz, j - sy, i - 11.5 - sx) <= r) masks[s * voxels + v] = 1;
        });
        dose[v] = 70 * Math.exp(-((Math.hypot(k - cz, j - cy, i - 11.5) / 7) ** 2)) + 2 * rand();
      }
  const data: CaseData = {
    caseId: `pt_${index + 1}`,
    format: 'vmat-native-1',
    shape: SHAPE,
    spacingMm: [2.5, 3.9, 3.9],
    ct,
    dose,
    masks,
    structures: NAMES,
    constraints: new Float32Array(0),
    body,
    metadata: { source: 'openkbp', patient_id: `pt_${index + 1}`, site: 'head-neck', prescription_gy: { PTV70: 70, PTV63: 63, PTV56: 56 }, fractions: 35 },
  };
  const conditioning = conditioningFor(loadSiteProfile('head-neck'), data);
  return { ...data, constraints: conditioning.vector, metadata: { ...data.metadata, constraints_mode: conditioning.mode } };
}

let dataDir: string;
let logDir: string;
let runDir: string;
let trainInputs: NativeTrainCase[];
let nativeSettings: Record<string, unknown>;
let loadWarnings: string[];

beforeAll(async () => {
  dataDir = tempDir('vmat-hn-data-');
  for (let i = 0; i < 6; i++) await saveCase(join(dataDir, `pt_${i + 1}.npz`), headNeckCase(i));
  logDir = tempDir('vmat-hn-runs-');
  const native = loadNative();
  const spy = vi.spyOn(native, 'trainModel');
  loadWarnings = [];
  const result = await new Trainer().fit(
    { ...base, dataDir, expName: 'hn', logDir, site: 'head-neck' },
    { onProgress: (event) => event.type === 'load' && loadWarnings.push(...event.warnings) },
  );
  runDir = result.runDir;
  const [cases, settings] = spy.mock.calls[0]!;
  trainInputs = cases.train;
  nativeSettings = settings as unknown as Record<string, unknown>;
  spy.mockRestore();
});

afterEach(() => vi.restoreAllMocks());

describe('train --site head-neck', () => {
  it('uses all ten structures (aliases matched), the 10-slot conditioning and the parotid pair', () => {
    const profile = loadSiteProfile('head-neck');
    expect(loadWarnings).toEqual([]);
    expect(nativeSettings).toMatchObject({ inChannels: 11, condDim: 10, leftRightPairs: [[7, 6]] });
    const config = readTrainingConfig(runDir);
    expect(config.settings.structures).toEqual(channelNames(profile));
    expect(config.settings.site).toBe('head-neck');
    expect(config.siteProfile).toEqual(profile);
    const voxels = SHAPE[0] * SHAPE[1] * SHAPE[2];
    for (const item of trainInputs) {
      expect(item.shape).toEqual([11, ...SHAPE]);
      expect(item.constraints).toHaveLength(10);
      // Every structure channel holds a distance map (negative inside its structure), none is the zeros of a missing one.
      for (let c = 1; c <= 10; c++) expect(item.input.subarray(c * voxels, (c + 1) * voxels).some((v) => v < 0)).toBe(true);
    }
  });

  it('passes the flip the pair of channels that are each other’s mirror image: the parotids', () => {
    const [a, b] = (nativeSettings.leftRightPairs as [number, number][])[0]!;
    const [z, y, x] = SHAPE;
    const voxels = z * y * x;
    const item = trainInputs[0]!;
    const channel = (c: number) => item.input.subarray(c * voxels, (c + 1) * voxels);
    const mirrored = (c: number) => {
      const out = new Float32Array(voxels);
      const src = channel(c);
      for (let k = 0; k < z; k++) for (let j = 0; j < y; j++) for (let i = 0; i < x; i++) out[(k * y + j) * x + i] = src[(k * y + j) * x + (x - 1 - i)]!;
      return out;
    };
    const maxDifference = (p: Float32Array, q: Float32Array) => p.reduce((m, v, i) => Math.max(m, Math.abs(v - q[i]!)), 0);
    // The flipped left parotid is the right one (and not itself: the pair is a real swap).
    expect(maxDifference(mirrored(a), channel(b))).toBeLessThan(1e-5);
    expect(maxDifference(mirrored(a), channel(a))).toBeGreaterThan(0.1);
    // The profile names the pair by channel: LeftParotid (channel 7) and RightParotid (channel 6).
    expect([channelNames(loadSiteProfile('head-neck'))[a - 1], channelNames(loadSiteProfile('head-neck'))[b - 1]]).toEqual(['LeftParotid', 'RightParotid']);
  });

  it('records the profile in the checkpoints; predict uses it (conditioning, slot names)', async () => {
    const config = readTrainingConfig(runDir);
    const checkpoint = join(runDir, 'checkpoints', 'last.safetensors');
    expect(checkpointModel(checkpoint).site).toEqual(config.siteProfile);
    const data = headNeckCase(0);
    const predicted = await predictCase(checkpoint, data, { patchSize: 16, device: 'cpu', threads: 1, constraints: { parotid_l_mean: 0.25 } });
    expect(predicted.constraints).toHaveLength(10);
    expect(predicted.constraints[6]).toBeCloseTo(0.25, 7);
    expect(Array.from(predicted.constraints.subarray(0, 6))).toEqual(Array.from(data.constraints.subarray(0, 6)));
    expect((predicted.metadata.prediction_site_profile as { name: string }).name).toBe('head-neck');
    await expect(predictCase(checkpoint, data, { patchSize: 16, device: 'cpu', constraints: { rectum_v70: 0.1 } })).rejects.toThrow(
      /unknown constraint slot 'rectum_v70' of the site head-neck: expected an index 0-9 or one of ptv70_rx/,
    );
  });

  it('keeps the site on resume and refuses another one', async () => {
    await expect(new Trainer().fit({ dataDir, expName: 'hn', logDir, site: 'prostate-sib' }, { resume: true })).rejects.toThrow(
      /cannot resume .* with other settings than it was trained with: site 'head-neck' → 'prostate-sib'/,
    );
  });

  it("evaluates a run and its predictions under the model's site, and plain evaluate takes --site", async () => {
    const result = await evaluateRun(runDir, { device: 'cpu', threads: 1 });
    const rows = result.cases[0]!.constraints;
    expect(rows.map((row) => row.name)).toEqual([
      'Brainstem Dmax', 'SpinalCord Dmax', 'RightParotid Dmean', 'LeftParotid Dmean', 'Esophagus Dmean', 'Larynx Dmean', 'Mandible Dmax',
    ]);
    expect(rows.every((row) => row.ref !== null)).toBe(true); // matched through the aliases (Brain_Stem, Parotid_L, …)
    expect(rows.map(constraintLabel)).toContain('Brainstem Dmax < 54 Gy');
    await expect(evaluateRun(runDir, { device: 'cpu', site: 'prostate-sib', overwrite: true })).rejects.toThrow(/trained under the site head-neck: a run is evaluated under its own site/);
    // Plain evaluate of those predictions: the model's site recorded in them, or the one given.
    const out = tempDir('vmat-hn-eval-');
    const plain = await evaluatePredictions(result.predictionsDir, dataDir, join(out, 'a'), { device: 'cpu', threads: 1 });
    expect(plain.cases[0]!.constraints.map((row) => row.name)).toEqual(rows.map((row) => row.name));
    const prostate = await evaluatePredictions(result.predictionsDir, dataDir, join(out, 'b'), { device: 'cpu', threads: 1, site: 'prostate-sib' });
    expect(prostate.cases[0]!.constraints[0]).toMatchObject({ name: 'Rectum V50', note: 'Rectum is not in the case' });
    // The CLI prints the table as clinicians write it, with how many cases meet each row.
    const cli = runCli(['evaluate', '--pred', result.predictionsDir, '--ref', dataDir, '--out', join(out, 'c'), '--device', 'cpu', '--threads', '1']);
    expect(cli.status).toBe(0);
    expect(cli.stdout).toMatch(/^Brainstem Dmax < 54 Gy +\d\/1 met +\d\/1 met$/m);
    expect(cli.stdout).toMatch(/^Mandible Dmax < 73\.5 Gy /m);
  });
});

describe('the default site and bad profiles', () => {
  it('records no site for prostate-sib, as before profiles', async () => {
    const prostateData = tempDir('vmat-pr-data-');
    await writeTinyCohort(prostateData, 4);
    const result = await new Trainer().fit({ ...base, dataDir: prostateData, expName: 'pr', logDir: tempDir('vmat-pr-runs-') });
    const text = readFileSync(join(result.runDir, 'training_config.json'), 'utf8');
    expect(text).not.toMatch(/"site/);
    expect(readTrainingConfig(result.runDir).settings.site).toBe('prostate-sib');
    expect(checkpointModel(join(result.runDir, 'checkpoints', 'last.safetensors')).site.name).toBe('prostate-sib');
  });

  it('refuses a bad profile file or an unknown site in one sentence naming it', () => {
    const dir = tempDir('vmat-site-');
    const profile = JSON.parse(JSON.stringify(loadSiteProfile('head-neck'))) as Record<string, unknown>;
    const bad = join(dir, 'my-site.json');
    writeFileSync(bad, JSON.stringify({ ...profile, leftRightPairs: [['LeftParotid', 'Parotid_Left']] }));
    const run = runCli(['train', '--data-dir', dataDir, '--exp-name', 'x', '--log-dir', dir, '--site', bad]);
    expect(run.status).toBe(1);
    const message = run.stderr.trim();
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toContain(`the site profile ${bad} is not valid: leftRightPairs[0] names Parotid_Left, which is not one of its structures`);
    const unknown = runCli(['train', '--data-dir', dataDir, '--exp-name', 'x', '--log-dir', dir, '--site', 'lung']);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/unknown site \(--site\) 'lung': expected one of head-neck, prostate-sib, or the path of a profile \.json file/);
  });
});
