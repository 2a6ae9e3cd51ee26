// The OpenKBP benchmark: train on the challenge's training patients under the head-neck site profile, predict its
// test patients, and score the predictions as the challenge does (dose score, DVH score), beside its published
// leaderboard. A reduced run by default (for a CPU): a subset of the patients, the grid downsampled by
// OPENKBP_FACTOR (2: 128³ → 64³), a small network, few epochs; the predictions are brought back to the 128³ grid
// (trilinear) and scored against the full-resolution references. OPENKBP_FACTOR=1 with the seed network is the
// full-size run (scripts/gpu-check.sh).
// Usage: OPENKBP_DIR=/path/to/open-kbp node bench/openkbp.bench.mjs   (after `npx tsc -p .` and the addon build)
// Settings (environment): OPENKBP_TRAIN, OPENKBP_VAL, OPENKBP_TEST (patients; 0 = all complete ones), OPENKBP_FACTOR,
// OPENKBP_EPOCHS, OPENKBP_WIDTH, OPENKBP_PATCH, OPENKBP_LR, OPENKBP_DEVICE, OPENKBP_WORK (kept when given).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const root = resolve(import.meta.dirname, '..');
const lib = await import(join(root, 'dist', 'index.js'));
const { readOpenKbpPatient, saveCase, loadCase, Trainer, predictCase, openKbpCaseScores, summariseOpenKbp, loadSiteProfile, defaultConditioning } = lib;

const env = (name, fallback) => (process.env[name] === undefined || process.env[name] === '' ? fallback : process.env[name]);
const openkbp = process.env.OPENKBP_DIR;
const data = openkbp && join(openkbp, 'provided-data');
if (!data || !existsSync(join(data, 'train-pats')) || !existsSync(join(data, 'test-pats'))) {
  console.log(`skipped: set OPENKBP_DIR to a copy of ababier/open-kbp (provided-data/train-pats, validation-pats, test-pats)${openkbp ? ` — ${openkbp} is not one` : ''}`);
  process.exit(0);
}
const settings = {
  train: Number(env('OPENKBP_TRAIN', 40)),
  val: Number(env('OPENKBP_VAL', 6)),
  test: Number(env('OPENKBP_TEST', 20)),
  factor: Number(env('OPENKBP_FACTOR', 2)),
  epochs: Number(env('OPENKBP_EPOCHS', 8)),
  width: Number(env('OPENKBP_WIDTH', 8)),
  patch: Number(env('OPENKBP_PATCH', 32)),
  lr: Number(env('OPENKBP_LR', 1e-3)),
  device: env('OPENKBP_DEVICE', 'cpu'),
  threads: Number(env('VMAT_BENCH_THREADS', os.cpus().length)),
};
if (![1, 2, 4].includes(settings.factor)) throw new Error(`OPENKBP_FACTOR must be 1, 2 or 4, got ${settings.factor}`);

const required = ['ct.csv', 'dose.csv', 'possible_dose_mask.csv', 'voxel_dimensions.csv'];
const patientsOf = (split, count) => {
  const dir = join(data, split);
  const all = readdirSync(dir)
    .filter((name) => required.every((file) => existsSync(join(dir, name, file))))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  return (count > 0 ? all.slice(0, count) : all).map((id) => join(dir, id));
};
const profile = loadSiteProfile('head-neck');
const N = 128;
const n = N / settings.factor;

/**
 * The conditioning vector without the plan (the test plans are what is predicted: their achieved DVH values would
 * leak the answer): the prescription of each target the patient has, the protocol's defaults elsewhere.
 */
function planFreeConditioning(caseData) {
  const vector = defaultConditioning(profile);
  profile.conditioning.forEach((slot, i) => {
    if (slot.kind !== 'prescription') return;
    const s = caseData.structures.indexOf(slot.structures[0]);
    const voxels = caseData.shape[0] * caseData.shape[1] * caseData.shape[2];
    const present = s >= 0 && caseData.masks.subarray(s * voxels, (s + 1) * voxels).some((v) => v !== 0);
    vector[i] = present ? profile.targets.find((t) => t.structure === slot.structures[0]).prescriptionGy / profile.normalisationDoseGy : 0;
  });
  return vector;
}

/** The case on a grid coarser by `f`: CT and dose block means, structures by majority, the possible-dose mask by any. */
function downsample(c, f) {
  if (f === 1) return c;
  const [Z, Y, X] = c.shape;
  const [z, y, x] = [Z / f, Y / f, X / f];
  const voxels = z * y * x;
  const fine = Z * Y * X;
  const block = f * f * f;
  const ct = new Int16Array(voxels);
  const dose = new Float32Array(voxels);
  const body = new Uint8Array(voxels);
  const masks = new Uint8Array(c.structures.length * voxels);
  for (let k = 0; k < z; k++)
    for (let j = 0; j < y; j++)
      for (let i = 0; i < x; i++) {
        const v = (k * y + j) * x + i;
        let hu = 0;
        let gy = 0;
        let inBody = 0;
        const counts = new Uint8Array(c.structures.length);
        for (let a = 0; a < f; a++)
          for (let b = 0; b < f; b++)
            for (let d = 0; d < f; d++) {
              const u = ((k * f + a) * Y + j * f + b) * X + i * f + d;
              hu += c.ct[u];
              gy += c.dose[u];
              inBody |= c.body[u];
              for (let s = 0; s < counts.length; s++) counts[s] += c.masks[s * fine + u];
            }
        ct[v] = Math.round(hu / block);
        dose[v] = gy / block;
        body[v] = inBody;
        for (let s = 0; s < counts.length; s++) masks[s * voxels + v] = 2 * counts[s] >= block ? 1 : 0;
      }
  return { ...c, shape: [z, y, x], spacingMm: c.spacingMm.map((s) => s * f), ct, dose, body, masks, masksSdf: undefined };
}

/** A coarse dose back on the 128³ grid: trilinear between the coarse voxel centres (edge values beyond them). */
function upsample(coarse, f) {
  if (f === 1) return coarse;
  const out = new Float32Array(N * N * N);
  const at = (u) => {
    const c = Math.min(Math.max((u + 0.5) / f - 0.5, 0), n - 1);
    const lo = Math.min(Math.floor(c), n - 2);
    return [lo, c - lo];
  };
  const axis = Array.from({ length: N }, (_, u) => at(u));
  for (let k = 0; k < N; k++) {
    const [k0, wk] = axis[k];
    for (let j = 0; j < N; j++) {
      const [j0, wj] = axis[j];
      for (let i = 0; i < N; i++) {
        const [i0, wi] = axis[i];
        let value = 0;
        for (let a = 0; a < 2; a++)
          for (let b = 0; b < 2; b++)
            for (let d = 0; d < 2; d++) {
              const w = (a ? wk : 1 - wk) * (b ? wj : 1 - wj) * (d ? wi : 1 - wi);
              if (w !== 0) value += w * coarse[((k0 + a) * n + j0 + b) * n + i0 + d];
            }
        out[(k * N + j) * N + i] = value;
      }
    }
  }
  return out;
}

const keep = Boolean(process.env.OPENKBP_WORK);
const work = keep ? resolve(process.env.OPENKBP_WORK) : mkdtempSync(join(os.tmpdir(), 'vmat-bench-openkbp-train-'));
const started = performance.now();
const seconds = (from) => ((performance.now() - from) / 1000).toFixed(1);
try {
  const trainDir = join(work, `train-${n}`);
  const testDir = join(work, 'test-128');
  mkdirSync(trainDir, { recursive: true });
  mkdirSync(testDir, { recursive: true });
  const train = [...patientsOf('train-pats', settings.train), ...patientsOf('validation-pats', settings.val)];
  const test = patientsOf('test-pats', settings.test);
  console.log(
    `settings: ${train.length} training+validation patients (${settings.train || 'all'} train, ${settings.val || 'all'} validation), ${test.length} test; ` +
      `grid ${n}³ (factor ${settings.factor}), width ${settings.width}, patch ${settings.patch}, ${settings.epochs} epochs, lr ${settings.lr}, ${settings.device}, ${settings.threads} threads`,
  );

  // 1. import: the training patients on the coarse grid, the test patients at full size (the reference)
  let from = performance.now();
  for (const dir of [...train, ...test]) {
    const isTest = test.includes(dir);
    const id = dir.split('/').at(-1);
    const path = join(isTest ? testDir : trainDir, `${id}.npz`);
    if (existsSync(path)) continue;
    const { data: full } = await readOpenKbpPatient(dir);
    const conditioning = planFreeConditioning(full);
    const item = isTest ? full : downsample(full, settings.factor);
    await saveCase(path, { ...item, constraints: conditioning, metadata: { ...item.metadata, constraints_mode: 'limits' } });
  }
  console.log(`import openkbp (+ downsampling): ${train.length + test.length} patients in ${seconds(from)} s`);

  // 2. train under the head-neck profile (validation: 15 % of the training folder, for the best checkpoint)
  from = performance.now();
  const logDir = join(work, 'runs');
  const fit = await new Trainer().fit(
    {
      dataDir: trainDir,
      expName: 'openkbp',
      logDir,
      site: 'head-neck',
      epochs: settings.epochs,
      patchSize: settings.patch,
      baseChannels: settings.width,
      batchSize: 2,
      patchesPerVolume: 4,
      lr: settings.lr,
      minLr: settings.lr / 100,
      valSplit: 0.15,
      testSplit: 0,
      patience: settings.epochs,
      device: settings.device,
      threads: settings.threads,
      numWorkers: 2,
      useGradientLoss: true,
    },
    { overwrite: true, onProgress: (e) => e.type === 'epoch' && console.log(`  epoch ${e.epoch}/${e.epochs}  train_loss ${e.trainLoss.toFixed(4)}  val_mae ${e.valMaeGy.toFixed(3)} Gy  ${e.epochSeconds.toFixed(1)} s`) },
  );
  console.log(`train --site head-neck: ${fit.epochsRun} epochs in ${seconds(from)} s, best epoch ${fit.bestEpoch} (val MAE ${fit.bestValMaeGy.toFixed(3)} Gy on the ${n}³ grid)`);

  // 3. predict the test patients on the coarse grid, back to 128³, zero outside the possible-dose mask; score
  from = performance.now();
  const scores = [];
  const floor = [];
  for (const dir of test) {
    const id = dir.split('/').at(-1);
    const ref = await loadCase(join(testDir, `${id}.npz`));
    const coarse = downsample(ref, settings.factor);
    const predicted = await predictCase(fit.bestCheckpoint, { ...coarse, dose: undefined }, { patchSize: settings.patch, device: settings.device, threads: settings.threads });
    const onGrid = (dose) => {
      const full = upsample(dose, settings.factor);
      for (let i = 0; i < full.length; i++) if (!ref.body[i]) full[i] = 0;
      return full;
    };
    scores.push(openKbpCaseScores(onGrid(predicted.dose), ref, ref.body));
    // What the coarse grid alone costs: the reference dose itself, downsampled and brought back.
    floor.push(openKbpCaseScores(onGrid(coarse.dose), ref, ref.body));
  }
  const summary = summariseOpenKbp(scores);
  const resolution = summariseOpenKbp(floor);
  console.log(`predict + score ${test.length} test patients in ${seconds(from)} s`);
  console.log('');
  console.log(`| OpenKBP test patients (${test.length}) | dose score | DVH score |`);
  console.log('|---|---|---|');
  console.log(`| vmat-native, this run (${n}³, width ${settings.width}, ${fit.epochsRun} epochs, ${train.length} training patients) | ${summary.dose_score_gy.toFixed(3)} Gy | ${summary.dvh_score_gy.toFixed(3)} Gy |`);
  if (settings.factor > 1) {
    console.log(`| the reference dose through the ${n}³ grid (the floor of this resolution) | ${resolution.dose_score_gy.toFixed(3)} Gy | ${resolution.dvh_score_gy.toFixed(3)} Gy |`);
  }
  const leaderboard = [
    ['1. LSL AnHui University (winner)', 2.4294, 1.4776],
    ['2. SuperPod', 2.5635, 1.7045],
    ['3. team_overfitting', 2.6146, 1.5818],
    ['4. PTV - Prediction Team Vienna', 2.6497, 1.5393],
    ['5. DanNguyen', 2.6795, 1.5728],
    ['6. X-MEN', 2.7449, 1.7408],
    ['7. TW-UCSD RAIDT', 2.7477, 1.7055],
    ['8. xuang', 2.7528, 1.5559],
    ['9. DeepFried', 2.7785, 1.5515],
    ['10. MittyM', 2.8137, 1.5549],
  ];
  for (const [team, dose, dvh] of leaderboard) console.log(`| leaderboard ${team} (all 100 test patients, 128³) | ${dose.toFixed(4)} Gy | ${dvh.toFixed(4)} Gy |`);
  console.log('');
  console.log(`dose score / winner's: ${(summary.dose_score_gy / 2.4294).toFixed(2)}; total ${seconds(started)} s${keep ? `; work folder kept: ${work}` : ''}`);
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true });
}
