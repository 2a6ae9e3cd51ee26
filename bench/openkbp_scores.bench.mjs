// The OpenKBP importer and scores against the challenge's own code, side by side on real patients:
//   1. `vmat-native import openkbp` of the first N complete test patients, checked voxel by voxel against the
//      challenge's DataLoader under the documented axis order and CT offset (bench/openkbp_peer.py loader-check);
//   2. a deterministic imperfect prediction per patient, made by the peer in the challenge's frame (its submission
//      CSV, and the same dose as a case file), scored by `vmat-native evaluate` and by the challenge's DoseEvaluator:
//      every patient's dose error, every DVH metric of both doses, the dose and DVH scores must agree to 1e-4 Gy.
// Usage: OPENKBP_DIR=/path/to/open-kbp node bench/openkbp_scores.bench.mjs [--patients N]
//   (needs `npx tsc -p .`, the addon, and /usr/bin/python3 with NumPy, SciPy, pandas, more-itertools and tqdm)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const root = resolve(import.meta.dirname, '..');
const { loadCase, saveCase, parseNpy, openKbpCaseScores, summariseOpenKbp } = await import(join(root, 'dist', 'index.js'));
const TOLERANCE_GY = 1e-4;
const countFlag = process.argv.indexOf('--patients');
const count = countFlag > 0 ? Number(process.argv[countFlag + 1]) : 10;
const openkbp = process.env.OPENKBP_DIR;
if (!openkbp || !existsSync(join(openkbp, 'provided_code')) || !existsSync(join(openkbp, 'provided-data'))) {
  console.log(`skipped: set OPENKBP_DIR to a copy of ababier/open-kbp (provided_code/ and provided-data/; bench/openkbp_extract.py writes one from a fetched snapshot)${openkbp ? ` — ${openkbp} is not one` : ''}`);
  process.exit(0);
}

const required = ['ct.csv', 'dose.csv', 'possible_dose_mask.csv', 'voxel_dimensions.csv'];
const testDir = join(openkbp, 'provided-data', 'test-pats');
const patients = readdirSync(testDir)
  .filter((name) => required.every((file) => existsSync(join(testDir, name, file))))
  .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
  .slice(0, count);
const named = patients.map((id) => `test-pats/${id}`);

function run(command, args, what) {
  const started = performance.now();
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, OMP_WAIT_POLICY: 'passive' } });
  if (result.status !== 0) throw new Error(`${what} failed (exit ${result.status}): ${result.stderr.trim().split('\n').slice(-5).join(' | ')}`);
  return { stdout: result.stdout, seconds: (performance.now() - started) / 1000 };
}
const peer = (...args) => run('/usr/bin/python3', [join(root, 'bench', 'openkbp_peer.py'), ...args], `openkbp_peer.py ${args[0]}`);
const cli = (...args) => run(process.execPath, [join(root, 'dist', 'cli', 'main.js'), ...args], `vmat-native ${args[0]}`);

const dir = mkdtempSync(join(os.tmpdir(), 'vmat-bench-openkbp-'));
try {
  // 1. import, and the case files against the challenge's loader
  const src = join(dir, 'test-pats');
  mkdirSync(src);
  for (const id of patients) symlinkSync(join(testDir, id), join(src, id));
  const cases = join(dir, 'cases');
  const imported = cli('import', 'openkbp', src, '--out', cases, '--json');
  console.log(`import openkbp: ${patients.length} test patients (${patients[0]} … ${patients.at(-1)}) in ${imported.seconds.toFixed(1)} s`);
  const check = JSON.parse(peer('loader-check', openkbp, cases, ...named).stdout);
  const d = check.max_differences;
  const loaderOk = d.ct_hu === 0 && d.mask_voxels === 0 && d.body_voxels === 0 && d.spacing_mm === 0 && d.dose_gy < 1e-5;
  console.log(
    `against the challenge's DataLoader: max |CT difference| ${d.ct_hu} HU, |dose| ${d.dose_gy.toExponential(1)} Gy (float32), mask voxels differing ${d.mask_voxels}, ` +
      `possible-dose/body ${d.body_voxels}, spacing ${d.spacing_mm} mm: ${loaderOk ? 'identical' : 'DIFFERENT'}`,
  );

  // 2. the same predictions scored by both
  const predCsv = join(dir, 'pred_csv');
  const predNpy = join(dir, 'pred_npy');
  peer('predictions', openkbp, predCsv, predNpy, ...named);
  const predDir = join(dir, 'pred');
  mkdirSync(predDir);
  for (const id of patients) {
    const ref = await loadCase(join(cases, `${id}.npz`));
    const dose = parseNpy(readFileSync(join(predNpy, `${id}.npy`))).data;
    await saveCase(join(predDir, `${id}_pred.npz`), { ...ref, dose });
  }
  const ours = cli('evaluate', '--pred', predDir, '--ref', cases, '--out', join(dir, 'evaluation'), '--json', '--threads', process.env.VMAT_BENCH_THREADS ?? String(os.availableParallelism()));
  const ourResult = JSON.parse(ours.stdout);
  const theirs = peer('evaluate', openkbp, predCsv, ...named);
  const theirResult = JSON.parse(theirs.stdout);
  // The scores alone, in this process, for the time beside the challenge's (each loading its own files).
  const scoringStarted = performance.now();
  const inProcess = [];
  for (const id of patients) {
    const [ref, pred] = await Promise.all([loadCase(join(cases, `${id}.npz`)), loadCase(join(predDir, `${id}_pred.npz`))]);
    inProcess.push(openKbpCaseScores(pred.dose, ref, ref.body));
  }
  const scoringSeconds = (performance.now() - scoringStarted) / 1000;
  const inProcessSummary = summariseOpenKbp(inProcess);

  let worst = 0;
  const differ = (a, b) => {
    const difference = Math.abs(a - b);
    if (!(difference <= worst)) worst = Number.isNaN(difference) ? Infinity : difference;
  };
  let metrics = 0;
  let setsDiffer = 0;
  console.log('patient   dose error (vmat-native / challenge; odd patients carry stray dose outside the mask)   DVH metrics   max |metric difference|');
  for (const evaluation of ourResult.cases) {
    const id = evaluation.case_id;
    const scores = evaluation.openkbp;
    const before = worst;
    worst = 0;
    differ(scores.dose_error_gy, theirResult.dose_errors[id]);
    const ourKeys = [];
    for (const [roi, values] of Object.entries(scores.dvh)) {
      for (const [metric, value] of Object.entries(values)) {
        ourKeys.push(`${roi}/${metric}`);
        differ(value.ref, theirResult.reference[id]?.[roi]?.[metric]);
        differ(value.pred, theirResult.prediction[id]?.[roi]?.[metric]);
      }
    }
    const theirKeys = Object.entries(theirResult.reference[id] ?? {}).flatMap(([roi, values]) => Object.keys(values).map((m) => `${roi}/${m}`));
    if (ourKeys.sort().join() !== theirKeys.sort().join()) setsDiffer++;
    metrics += ourKeys.length;
    console.log(`${id.padEnd(9)} ${scores.dose_error_gy.toFixed(6)} / ${theirResult.dose_errors[id].toFixed(6)} Gy           ${String(ourKeys.length).padStart(2)}            ${worst.toExponential(2)} Gy`);
    worst = Math.max(before, worst);
  }
  const summary = ourResult.openkbp;
  differ(summary.dose_score_gy, theirResult.dose_score);
  differ(summary.dvh_score_gy, theirResult.dvh_score);
  differ(inProcessSummary.dose_score_gy, theirResult.dose_score);
  differ(inProcessSummary.dvh_score_gy, theirResult.dvh_score);
  console.log(`dose score: vmat-native ${summary.dose_score_gy.toFixed(6)} Gy, challenge ${theirResult.dose_score.toFixed(6)} Gy`);
  console.log(`DVH score:  vmat-native ${summary.dvh_score_gy.toFixed(6)} Gy, challenge ${theirResult.dvh_score.toFixed(6)} Gy (${metrics} metrics)`);
  console.log(
    `scoring ${patients.length} patients: vmat-native ${scoringSeconds.toFixed(2)} s (loading the case files + openKbpCaseScores), the challenge's DoseEvaluator ${theirResult.seconds.toFixed(2)} s ` +
      `(loading its CSVs + its scores): ${(theirResult.seconds / scoringSeconds).toFixed(1)}x; the whole \`vmat-native evaluate\` (MAE, DVH, constraints, two gamma criteria, these scores) took ${ours.seconds.toFixed(0)} s`,
  );
  const ok = loaderOk && setsDiffer === 0 && worst <= TOLERANCE_GY;
  console.log(`${ok ? 'AGREE' : 'DISAGREE'}: largest difference ${worst.toExponential(2)} Gy (tolerance ${TOLERANCE_GY} Gy)${setsDiffer ? `; ${setsDiffer} patients with different metric sets` : ''}`);
  if (!ok) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
