import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { loadCase, saveCase, type CaseData } from '../src/data/case.js';
import { encodeNpy } from '../src/data/npy.js';
import { parseSparseMask, parseSparseValues, parseVoxelDimensions } from '../src/openkbp/csv.js';
import { readOpenKbpPatient } from '../src/openkbp/import.js';
import { caseIndexOf, OPENKBP_OARS, OPENKBP_TARGETS } from '../src/openkbp/layout.js';
import { openKbpCaseScores, percentileLinear, summariseOpenKbp, type OpenKbpCaseScores } from '../src/openkbp/scores.js';
import { conditioningFor } from '../src/sites/conditioning.js';
import { channelNames, loadSiteProfile } from '../src/sites/profile.js';
import { repoRoot, runCli, tempDir } from './helpers.js';
import { random, tinyCase } from './train-cases.js';

const N = 128;
const flat = (i: number, j: number, k: number) => (i * N + j) * N + k;

interface PatientSpec {
  dims: [number, number, number];
  seed: number;
  /** Mandible as a single voxel: smaller than 0.1 cc */
  tinyMandible?: boolean;
  omit?: string[];
  /** replace a file's text */
  replace?: Record<string, string>;
}

/**
 * One patient in the OpenKBP CSV format, on its own (i, j, k) grid: i anterior → posterior, j right → left, k
 * superior → inferior. An ellipsoid body, a CT of HU + 1000 (one 16-bit value above 4095), a dose peaking in the
 * PTV70, organs in anatomical places, an empty Esophagus file, no Larynx, and a Brain.csv the profile does not know.
 */
function writePatient(dir: string, spec: PatientSpec): void {
  mkdirSync(dir, { recursive: true });
  const rand = random(spec.seed);
  const c = [64 + Math.round(rand() * 4), 64 + Math.round(rand() * 4), 60 + Math.round(rand() * 4)];
  const body: number[] = [];
  const ct: string[] = [];
  const dose: string[] = [];
  const structures: Record<string, number[]> = { PTV70: [], PTV63: [], PTV56: [], Brainstem: [], SpinalCord: [], RightParotid: [], LeftParotid: [], Mandible: [], Brain: [] };
  const within = (i: number, j: number, k: number, centre: number[], r: number) => Math.hypot(i - centre[0]!, j - centre[1]!, k - centre[2]!) <= r;
  for (let i = c[0]! - 22; i <= c[0]! + 22; i++) {
    for (let j = c[1]! - 26; j <= c[1]! + 26; j++) {
      for (let k = c[2]! - 32; k <= c[2]! + 32; k++) {
        const inside = ((i - c[0]!) / 21) ** 2 + ((j - c[1]!) / 25) ** 2 + ((k - c[2]!) / 31) ** 2 <= 1;
        if (!inside) continue;
        const f = flat(i, j, k);
        body.push(f);
        const r = Math.hypot(i - c[0]!, j - c[1]!, k - c[2]!);
        const value = (70 * Math.exp(-((r / 11) ** 2)) + 4 + 3 * rand()).toFixed(3);
        dose.push(`${f},${value}`);
        const bone = within(i, j, k, [c[0]! - 14, c[1]!, c[2]!], 4);
        ct.push(`${f},${bone ? 2200 : 1000 + Math.round(30 + 20 * rand())}.0`);
        if (r <= 5) structures.PTV70!.push(f);
        else if (r <= 8 && j < c[1]!) structures.PTV63!.push(f);
        else if (r <= 11) structures.PTV56!.push(f);
        if (within(i, j, k, [c[0]! + 2, c[1]!, c[2]! - 24], 2.5)) structures.Brainstem!.push(f);
        if (Math.hypot(i - c[0]! - 12, j - c[1]!) <= 1.5 && k > c[2]! - 18 && k < c[2]! + 25) structures.SpinalCord!.push(f);
        if (within(i, j, k, [c[0]!, c[1]! - 14, c[2]! - 8], 3.5)) structures.RightParotid!.push(f);
        if (within(i, j, k, [c[0]!, c[1]! + 14, c[2]! - 8], 3.5)) structures.LeftParotid!.push(f);
        if (spec.tinyMandible ? i === c[0]! - 14 && j === c[1]! && k === c[2]! : bone) structures.Mandible!.push(f);
        if (within(i, j, k, [c[0]!, c[1]!, c[2]! - 28], 3)) structures.Brain!.push(f);
      }
    }
  }
  ct[0] = `${ct[0]!.split(',')[0]},5000.0`;
  const files: Record<string, string> = {
    'voxel_dimensions.csv': `${spec.dims.map((d) => d.toExponential(18)).join('\n')}\n`,
    'possible_dose_mask.csv': `,data\n${body.map((f) => `${f},`).join('\n')}\n`,
    'ct.csv': `,data\n${ct.join('\n')}\n`,
    'dose.csv': `,data\n${dose.join('\n')}\n`,
    'Esophagus.csv': ',data\n',
  };
  for (const [name, indices] of Object.entries(structures)) files[`${name}.csv`] = `,data\n${indices.map((f) => `${f},`).join('\n')}\n`;
  Object.assign(files, spec.replace ?? {});
  for (const [name, text] of Object.entries(files)) if (!spec.omit?.includes(name)) writeFileSync(join(dir, name), text);
}

function python(args: string[]): unknown {
  const run = spawnSync('/usr/bin/python3', [join(repoRoot, 'test/fixtures/openkbp_reference.py'), ...args], { encoding: 'utf8', maxBuffer: 16 << 20 });
  expect(run.stderr).toBe('');
  return JSON.parse(run.stdout);
}

let root: string;
let out: string;
let imported: ReturnType<typeof runCli>;

beforeAll(() => {
  root = join(tempDir('vmat-openkbp-'), 'open-kbp');
  const data = join(root, 'provided-data');
  writePatient(join(data, 'train-pats', 'pt_1'), { dims: [3.906, 3.906, 2.5], seed: 1 });
  // 40 mm³ voxels: 100/40 = 2.5, which NumPy rounds to 2 (half to even)
  writePatient(join(data, 'train-pats', 'pt_2'), { dims: [4, 4, 2.5], seed: 2, tinyMandible: true });
  writePatient(join(data, 'validation-pats', 'pt_3'), { dims: [3.5, 3.5, 2], seed: 3, omit: ['PTV63.csv'] });
  writePatient(join(data, 'test-pats', 'pt_4'), { dims: [3.906, 3.906, 2.5], seed: 4, omit: ['ct.csv'] });
  writePatient(join(data, 'test-pats', 'pt_5'), { dims: [3.906, 3.906, 2.5], seed: 5, replace: { 'dose.csv': ',data\n100,1.5\n12x,2.0\n' } });
  out = join(tempDir('vmat-openkbp-out-'), 'cases');
  imported = runCli(['import', 'openkbp', root, '--out', out]);
});

describe('import openkbp', () => {
  it('converts every complete patient, keeps the split, lists the incomplete ones and fails the bad one with one sentence', () => {
    expect(imported.status).toBe(1); // pt_5 failed; the others are imported all the same
    const lines = imported.stderr.trim().split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^\[1\/5\] train\/pt_1: 9 structures → .*train\/pt_1\.npz \(\d+\.\d s\); ignored Brain\.csv$/);
    expect(lines[3]).toBe('[4/5] test/pt_4: skipped, incomplete (no ct.csv)');
    expect(lines[4]).toMatch(/^\[5\/5\] test\/pt_5: failed: \S*test-pats\/pt_5\/dose\.csv line 3 is '12x,2\.0': expected a flat index from 0 to 2097151 \(the 128³ grid\) before the comma$/);
    expect(imported.stdout).toMatch(/^imported 3 of 5 patients \(train 2, validation 1\) into .* in \d+\.\d s\nskipped 1 incomplete: pt_4\nfailed 1 \(the reasons are above and in .*openkbp_import\.json\)\n$/);
    expect(['train/pt_1.npz', 'train/pt_2.npz', 'validation/pt_3.npz'].every((file) => existsSync(join(out, file)))).toBe(true);
    expect(existsSync(join(out, 'test'))).toBe(false);
    const listing = JSON.parse(readFileSync(join(out, 'openkbp_import.json'), 'utf8'));
    expect(listing.patients.map((p: { id: string; status: string; split: string }) => `${p.split}/${p.id} ${p.status}`)).toEqual([
      'train/pt_1 imported', 'train/pt_2 imported', 'validation/pt_3 imported', 'test/pt_4 incomplete', 'test/pt_5 failed',
    ]);
  });

  it("writes format 1 cases equal to the CSVs under the documented axis order, CT offset and spacing (NumPy's np.put reading)", async () => {
    for (const [split, id] of [['train', 'pt_1'], ['train', 'pt_2'], ['validation', 'pt_3']]) {
      const patient = join(root, 'provided-data', `${split}-pats`, id!);
      const differences = python(['arrays', patient, join(out, split!, `${id}.npz`)]);
      expect(differences).toEqual({ ct_dtype: 'int16', ct: 0, dose: expect.any(Number), body: 0, masks: 0, spacing: 0 });
      expect((differences as { dose: number }).dose).toBeLessThan(1e-5); // float32
    }
    // The anatomy lands where DICOM puts it: the left parotid at larger x, the brainstem at larger z (toward the head).
    const data = await loadCase(join(out, 'train', 'pt_1.npz'));
    const centroid = (name: string, axis: 0 | 1 | 2) => {
      const voxels = N ** 3;
      const mask = data.masks.subarray(data.structures.indexOf(name) * voxels, (data.structures.indexOf(name) + 1) * voxels);
      let sum = 0;
      let n = 0;
      mask.forEach((m, v) => m && ((sum += axis === 0 ? Math.floor(v / N / N) : axis === 1 ? Math.floor(v / N) % N : v % N), n++));
      return sum / n;
    };
    expect(centroid('LeftParotid', 2)).toBeGreaterThan(centroid('RightParotid', 2) + 20);
    expect(centroid('Brainstem', 0)).toBeGreaterThan(centroid('SpinalCord', 0));
    expect(caseIndexOf(flat(1, 2, 3))).toBe(((127 - 3) * N + 1) * N + 2);
  });

  it('records the head-neck site, prescriptions, split and the plan’s achieved conditioning vector', async () => {
    const data = await loadCase(join(out, 'train', 'pt_1.npz'));
    expect(data.metadata).toMatchObject({
      source: 'openkbp', patient_id: 'pt_1', openkbp_split: 'train', site: 'head-neck', fractions: 35,
      prescription_gy: { PTV70: 70, PTV63: 63, PTV56: 56 }, constraints_mode: 'achieved',
    });
    const profile = loadSiteProfile('head-neck');
    expect(data.structures).toEqual(channelNames(profile).filter((name) => name !== 'Larynx'));
    expect(Array.from(data.constraints)).toEqual(Array.from(conditioningFor(profile, data).vector));
    expect(data.constraints).toHaveLength(10);
    expect(data.constraints[7]).toBe(0); // the Esophagus file is empty
    expect(data.constraints[3]).toBeGreaterThan(0);
  });

  it("checks a case's constraint vector against the site its metadata names", async () => {
    const dir = tempDir('vmat-openkbp-site-');
    const base = tinyCase(0, [8, 8, 8]);
    await expect(saveCase(join(dir, 'a.npz'), { ...base, metadata: { ...base.metadata, site: 'head-neck' } })).rejects.toThrow(/constraints must be 10 values, found 13/);
    await saveCase(join(dir, 'b.npz'), { ...base, constraints: new Float32Array(10), metadata: { ...base.metadata, site: 'head-neck' } });
    expect((await loadCase(join(dir, 'b.npz'))).constraints).toHaveLength(10);
    await saveCase(join(dir, 'c.npz'), { ...base, constraints: new Float32Array(4), metadata: { ...base.metadata, site: 'my-clinic.json' } });
    expect((await loadCase(join(dir, 'c.npz'))).constraints).toHaveLength(4);
    // A file claiming head-neck but holding 13 values (written by hand here) names the site in its error.
    const { readNpz, writeNpz } = await import('../src/data/npz.js');
    const arrays = await readNpz(join(dir, 'b.npz'));
    arrays.set('constraints', { dtype: 'float32', shape: [13], data: new Float32Array(13) });
    await writeNpz(join(dir, 'd.npz'), [...arrays] as Parameters<typeof writeNpz>[1]);
    await expect(loadCase(join(dir, 'd.npz'))).rejects.toThrow(/'constraints' has the wrong shape: expected \[10\] \(the conditioning vector of the site head-neck\), found \[13\]/);
  });

  it('refuses to overwrite without --overwrite, and replaces with it', () => {
    const again = runCli(['import', 'openkbp', join(root, 'provided-data', 'train-pats', 'pt_1'), '--out', join(out, 'train')]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/pt_1\.npz already exists: choose another output folder, or set overwrite \(--overwrite\) to replace them/);
    const replaced = runCli(['import', 'openkbp', join(root, 'provided-data', 'train-pats', 'pt_1'), '--out', join(out, 'train'), '--overwrite', '--json']);
    expect(replaced.status).toBe(0);
    expect(JSON.parse(replaced.stdout)).toMatchObject({ imported: 1, incomplete: 0, failed: 0 });
  });

  it('says what is wrong with a bad file in one sentence', async () => {
    const bad = (text: string) => () => parseSparseValues(text, 'dose.csv', (gy) => (gy < 0 ? 'expected a dose ≥ 0 Gy' : undefined));
    expect(bad('index,value\n1,2\n')).toThrow(/^dose\.csv starts with 'index,value': expected the OpenKBP header ',data'$/);
    expect(bad(',data\n2097152,1.0\n')).toThrow(/^dose\.csv line 2 is '2097152,1\.0': expected a flat index from 0 to 2097151/);
    expect(bad(',data\n5,abc\n')).toThrow(/^dose\.csv line 2 is '5,abc': expected a finite number after the comma$/);
    expect(bad(',data\n5,1,2\n')).toThrow(/expected two columns, flat_index,value$/);
    expect(bad(',data\n5,-1\n')).toThrow(/^dose\.csv line 2 is '5,-1': expected a dose ≥ 0 Gy$/);
    expect(bad(',data\n5,1\n\n7,2\r\n5,3\n')).toThrow(/^dose\.csv line 5 gives the flat index 5 again \(first on line 2\): expected each voxel once$/);
    expect(bad('')).toThrow(/dose\.csv is empty/);
    expect(Array.from(parseSparseValues(',data\r\n5,1.5\r\n\r\n7,2\r\n', 'x').values)).toEqual([1.5, 2]);
    expect(() => parseSparseMask(',data\n3,1\n', 'PTV70.csv')).toThrow(/^PTV70\.csv line 2 is '3,1': expected 'flat_index,' \(a mask's rows have no value\)$/);
    for (const text of ['3.9\n3.9\n', '3.9\n0\n2.5\n', '3.9\nabc\n2.5\n', '3.9\n3.9\n2.5\n1\n']) {
      expect(() => parseVoxelDimensions(text, 'voxel_dimensions.csv')).toThrow(/^voxel_dimensions\.csv holds '.*': expected 3 voxel sizes in mm, each above 0 and below 100 \(row, column, slice\)$/);
    }
    expect(parseVoxelDimensions('3.906000000000000139e+00 3.906e+00 2.5e+00', 'v')).toEqual([3.906, 3.906, 2.5]);

    const dir = join(tempDir('vmat-openkbp-alias-'), 'pt_9');
    writePatient(dir, { dims: [3.906, 3.906, 2.5], seed: 9, omit: ['LeftParotid.csv'], replace: { 'Parotid_L.csv': ',data\n1000,\n' } });
    const { data, ignored } = await readOpenKbpPatient(dir);
    expect(data.structures).toContain('LeftParotid'); // an alias of the head-neck profile
    expect(ignored).toEqual(['Brain.csv']);
    writeFileSync(join(dir, 'LeftParotid.csv'), ',data\n1001,\n');
    await expect(readOpenKbpPatient(dir)).rejects.toThrow(/has both LeftParotid\.csv and Parotid_L\.csv, which name the same structure LeftParotid/);
    const missing = runCli(['import', 'openkbp', join(root, 'nowhere'), '--out', out]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^vmat-native: the OpenKBP source .*nowhere does not exist: expected a folder of OpenKBP patients\n$/);
  });
});

describe('OpenKBP scores', () => {
  it("equal the challenge's formulas computed with NumPy from the CSVs (dose error over all voxels, DVH metrics, pooled scores)", async () => {
    const predDir = tempDir('vmat-openkbp-pred-');
    const scores: Record<string, OpenKbpCaseScores> = {};
    const patients: string[] = [];
    for (const [split, id] of [['train', 'pt_1'], ['train', 'pt_2'], ['validation', 'pt_3']] as const) {
      const ref = await loadCase(join(out, split, `${id}.npz`));
      // An imperfect prediction with stray dose outside the possible-dose mask, which the dose error counts.
      const pred = Float32Array.from(ref.dose!, (d, v) => (ref.body![v] ? d * 0.93 + 2 * Math.sin(v / 5000) : v % 977 === 0 ? 1.5 : 0));
      writeFileSync(join(predDir, `${id}.npy`), Buffer.concat(encodeNpy({ dtype: 'float32', shape: [N, N, N], data: pred })));
      scores[id] = openKbpCaseScores(pred, ref, ref.body!);
      patients.push(join(root, 'provided-data', `${split}-pats`, id));
    }
    const expected = python(['scores', predDir, ...patients]) as {
      patients: Record<string, { dose_error: number; tenth_cc_voxels: number; dvh: Record<string, Record<string, { ref: number; pred: number }>> }>;
      dose_score: number;
      dvh_score: number;
    };
    expect(expected.patients.pt_2!.tenth_cc_voxels).toBe(2);
    for (const [id, ours] of Object.entries(scores)) {
      const theirs = expected.patients[id]!;
      expect(ours.dose_error_gy).toBeGreaterThan(0.5);
      expect(Math.abs(ours.dose_error_gy - theirs.dose_error)).toBeLessThan(1e-4);
      expect(Object.keys(ours.dvh).sort()).toEqual(Object.keys(theirs.dvh).sort());
      expect(ours.missing.sort()).toEqual(id === 'pt_3' ? ['Esophagus', 'Larynx', 'PTV63'] : ['Esophagus', 'Larynx']);
      for (const [roi, metrics] of Object.entries(theirs.dvh)) {
        expect(Object.keys(ours.dvh[roi]!).sort()).toEqual(Object.keys(metrics).sort());
        for (const [metric, value] of Object.entries(metrics)) {
          const mine = ours.dvh[roi]![metric as keyof (typeof ours.dvh)[string]]!;
          expect(Math.abs(mine.ref - value.ref)).toBeLessThan(1e-4);
          expect(Math.abs(mine.pred - value.pred)).toBeLessThan(1e-4);
          expect(mine.abs_error).toBe(Math.abs(mine.ref - mine.pred));
        }
      }
    }
    const summary = summariseOpenKbp(Object.values(scores));
    expect(Math.abs(summary.dose_score_gy - expected.dose_score)).toBeLessThan(1e-4);
    expect(Math.abs(summary.dvh_score_gy - expected.dvh_score)).toBeLessThan(1e-4);
    expect(summary).toMatchObject({ n_cases: 3, n_dvh_metrics: 2 * 19 + 16 });
    // Pooled over every metric; pt_3 has fewer (no PTV63), so a mean of the patients' means would differ.
    const meanOfMeans = Object.values(scores).reduce((a, s) => a + s.dvh_error_gy, 0) / 3;
    expect(Math.abs(summary.dvh_score_gy - meanOfMeans)).toBeGreaterThan(1e-3);
  });

  it('interpolates percentiles as np.percentile does', () => {
    const sorted = Float64Array.from([1, 2, 4, 8, 16]);
    expect(percentileLinear(sorted, 0)).toBe(1);
    expect(percentileLinear(sorted, 100)).toBe(16);
    expect(percentileLinear(sorted, 50)).toBe(4);
    expect(percentileLinear(sorted, 99)).toBeCloseTo(16 - 0.04 * 8, 12);
    expect(percentileLinear(sorted, 1)).toBeCloseTo(1.04, 12);
    expect(percentileLinear(Float64Array.from([3]), 99)).toBe(3);
    expect(OPENKBP_OARS).toHaveLength(7);
    expect(OPENKBP_TARGETS).toEqual(['PTV56', 'PTV63', 'PTV70']);
  });

  it('appear in evaluate for cases imported from OpenKBP and with --openkbp, and nowhere else', async () => {
    const dir = tempDir('vmat-openkbp-eval-');
    const write = async (id: string, data: CaseData, pred: boolean) => saveCase(join(dir, pred ? 'pred' : 'ref', `${id}${pred ? '_pred' : ''}.npz`), data);
    mkdirSync(join(dir, 'pred'));
    mkdirSync(join(dir, 'ref'));
    const cases: CaseData[] = [];
    for (const [n, source] of [[1, 'openkbp'], [2, 'test']] as const) {
      const ref = tinyCase(n, [16, 24, 24]);
      ref.metadata = { ...ref.metadata, source };
      const pred = { ...ref, dose: Float32Array.from(ref.dose!, (d, v) => d * 0.9 + (ref.body![v] ? 0 : 0.5)) };
      await write(ref.caseId, ref, false);
      await write(ref.caseId, pred, true);
      cases.push(ref, pred);
    }
    const evaluate = (...flags: string[]) => {
      const result = runCli(['evaluate', '--pred', join(dir, 'pred'), '--ref', join(dir, 'ref'), '--out', join(dir, `out${flags.join('')}`), '--threads', '1', ...flags]);
      expect(result.stderr).not.toMatch(/error/);
      expect(result.status).toBe(0);
      return result.stdout;
    };
    const auto = JSON.parse(evaluate('--json'));
    expect(auto.cases.map((c: { openkbp?: unknown }) => c.openkbp !== undefined)).toEqual([true, false]);
    const first = openKbpCaseScores(cases[1]!.dose!, cases[0]!, cases[0]!.body!);
    expect(auto.cases[0].openkbp.dose_error_gy).toBeCloseTo(first.dose_error_gy, 10);
    expect(auto.openkbp).toEqual(summariseOpenKbp([first]));
    const flagged = evaluate('--openkbp');
    const both = summariseOpenKbp([first, openKbpCaseScores(cases[3]!.dose!, cases[2]!, cases[2]!.body!)]);
    expect(flagged).toContain(`OpenKBP dose score ${both.dose_score_gy.toFixed(4)} Gy\nOpenKBP DVH score  ${both.dvh_score_gy.toFixed(4)} Gy\n`);
    const summary = JSON.parse(readFileSync(join(dir, 'out--openkbp', 'summary.json'), 'utf8'));
    expect(summary.openkbp).toEqual(both);
    expect(readFileSync(join(dir, 'out--openkbp', 'cases.csv'), 'utf8').split('\n')[0]).toContain('openkbp.dose_error_gy,openkbp.dvh_error_gy');
  });
});
