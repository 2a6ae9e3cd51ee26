/**
 * DICOM-RT import and export against independent references: fixtures made at test time by plastimatch (CT,
 * RTSTRUCT, RTDOSE and its own rasterisation), dcmtk (transfer syntaxes, JPEG), pydicom (RTPLAN, turned series,
 * bad inputs, reading our RTDOSE back), SciPy (trilinear dose) and dicompyler-core (DVHs). test/dicom-fixtures.py
 * builds them.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { loadCase, saveCase, checkCase, type CaseData } from '../src/data/case.js';
import { readNpz } from '../src/data/npz.js';
import { parseNpy } from '../src/data/npy.js';
import { synthesizeCohort } from '../src/data/synth.js';
import { exportRtDose } from '../src/dicom/export.js';
import { importDicom } from '../src/dicom/import.js';
import { gammaIndex } from '../src/eval/gamma.js';
import { repoRoot, runCli, tempDir } from './helpers.js';

const python = '/usr/bin/python3';
const tools =
  spawnSync(python, ['-c', 'import pydicom, dicompylercore, scipy'], { encoding: 'utf8' }).status === 0 &&
  spawnSync('plastimatch', ['--version'], { encoding: 'utf8' }).status === 0 &&
  spawnSync('dcmconv', ['--version'], { encoding: 'utf8' }).status === 0;

interface Fixtures {
  sets: Record<string, string>;
  variants: Record<string, string>;
  orient: Record<string, string>;
  relative: string;
  beams: string;
  bad: Record<string, string>;
  dvh: Record<string, Record<string, { mean_gy: number; max_gy: number; volume_cc: number; d95_gy: number }>>;
}

let root: string;
let fixtures: Fixtures;
let synthDir: string;
let p1: CaseData;

/** Python one-off with the arguments after the script; returns stdout, failing the test on an error. */
function py(script: string, ...args: string[]): string {
  const run = spawnSync(python, ['-c', script, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (run.status !== 0) throw new Error(`python failed: ${run.stderr}`);
  return run.stdout;
}

const voxelsOf = (data: CaseData) => data.shape[0] * data.shape[1] * data.shape[2];
const maskOf = (data: CaseData, name: string) => {
  const index = data.structures.indexOf(name);
  if (index < 0) throw new Error(`no structure ${name} in ${data.caseId} (${data.structures.join(', ')})`);
  return data.masks.subarray(index * voxelsOf(data), (index + 1) * voxelsOf(data));
};
const count = (mask: Uint8Array) => mask.reduce((total, v) => total + v, 0);
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
};

const imported = new Map<string, CaseData>();

/** The one case of a fixture folder (imported once per folder; the tests do not change it). */
async function importOne(src: string): Promise<CaseData> {
  if (!imported.has(src)) {
    const out = tempDir('vmat-dicom-imp-');
    const result = await importDicom(src, { out, threads: 1 });
    expect(result.failed, JSON.stringify(result.failed)).toEqual([]);
    expect(result.cases).toHaveLength(1);
    imported.set(src, await loadCase(result.cases[0]!.path));
  }
  return imported.get(src)!;
}

beforeAll(async () => {
  if (!tools) return;
  root = tempDir('vmat-dicom-');
  synthDir = join(root, 'synth');
  await synthesizeCohort(synthDir, { cases: 3, shape: [48, 64, 64], spacingMm: [3, 4, 4] });
  const run = spawnSync(python, [join(repoRoot, 'test', 'dicom-fixtures.py'), join(root, 'fx'), ...readdirSync(synthDir).sort().map((f) => join(synthDir, f))], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (run.status !== 0) throw new Error(`dicom-fixtures.py failed: ${run.stderr}${run.stdout}`);
  fixtures = JSON.parse(readFileSync(join(root, 'fx', 'fixtures.json'), 'utf8')) as Fixtures;
  for (const group of [fixtures.sets, fixtures.variants, fixtures.orient, fixtures.bad]) for (const key of Object.keys(group)) group[key] = join(root, group[key]!.replace(/^.*?fx\//, 'fx/'));
  fixtures.relative = join(root, 'fx', 'relative');
  fixtures.beams = join(root, 'fx', 'beams');
  p1 = await importOne(fixtures.sets.P1!);
}, 400_000);

describe.skipIf(!tools)('import dicom: a plastimatch CT + RTSTRUCT + RTDOSE (+ RTPLAN) set', () => {
  it('gives the CT in HU, the masks of plastimatch\'s own rasterisation, the dose, the placement and the plan', async () => {
    const synth = await loadCase(join(synthDir, 'synth_000.npz'));
    expect(p1.shape).toEqual(synth.shape);
    expect(p1.spacingMm).toEqual([3, 4, 4]);
    expect(Array.from(p1.ct)).toEqual(Array.from(synth.ct));
    expect(maxAbsDiff(p1.dose!, synth.dose!)).toBeLessThan(1e-4); // plastimatch stores 32-bit integers
    expect(p1.originMm).toEqual([-40, -128.5, -124.75]);
    expect(p1.direction).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    // ROI names as a TPS spells them, mapped onto the site's channels; the rest kept under their own names.
    expect(p1.structures).toEqual(['PTV70', 'PTV56', 'Prostate', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel', 'Couch']);
    expect(p1.metadata.structure_map).toMatchObject({ PTV_70: 'PTV70', RECTUM: 'Rectum', Femur_Head_L: 'Femur_L', 'Femoral Head R': 'Femur_R', BODY: 'body', Couch: 'Couch' });

    const reference = await readNpz(join(root, 'fx', 'ref', 'P1_masks.npz'));
    const voxelCc = (3 * 4 * 4) / 1000;
    const roiOf: Record<string, string> = { PTV70: 'PTV_70', Prostate: 'CTV_Prostate', Rectum: 'RECTUM', Femur_L: 'Femur_Head_L', Femur_R: 'Femoral Head R', Bowel: 'Bowel_Bag' };
    let compared = 0;
    for (const name of p1.structures) {
      const theirs = reference.get(roiOf[name] ?? name)!.data as Uint8Array;
      const ours = maskOf(p1, name);
      const cc = count(theirs) * voxelCc;
      if (cc > 5) {
        expect(Math.abs(count(ours) - count(theirs)) / count(theirs), name).toBeLessThan(0.02);
        compared++;
      }
      // Same inside rule (voxel centres, half-open edges): the same voxels, not only the same volume.
      expect(maxAbsDiff(ours, theirs), name).toBe(0);
      if (name !== 'Couch') expect(maxAbsDiff(ours, maskOf(synth, name)), name).toBe(0);
    }
    expect(compared).toBeGreaterThanOrEqual(7);
    expect(maxAbsDiff(p1.body!, reference.get('BODY')!.data as Uint8Array)).toBe(0);

    expect(p1.metadata).toMatchObject({ source: 'dicom', prescription_gy: { PTV70: 72, PTV56: 57.6 }, prescription_source: 'rtplan', fractions: 32, constraints_mode: 'achieved' });
    expect(p1.constraints[0]).toBeCloseTo(72 / 70, 5);
    expect(typeof p1.metadata.frame_of_reference_uid).toBe('string');
    expect((p1.metadata.dicom as Record<string, unknown>).patient_id).toBe('P1');
  });

  it('gives DVHs equal to dicompyler-core\'s from the same RTSTRUCT and RTDOSE', () => {
    const ours: Record<string, string> = { PTV_70: 'PTV70', PTV56: 'PTV56', CTV_Prostate: 'Prostate', RECTUM: 'Rectum', Bladder: 'Bladder', Femur_Head_L: 'Femur_L', 'Femoral Head R': 'Femur_R' };
    for (const [roi, theirs] of Object.entries(fixtures.dvh.P1!)) {
      if (!ours[roi]) continue;
      const mask = maskOf(p1, ours[roi]);
      let sum = 0;
      let n = 0;
      let max = 0;
      for (let i = 0; i < mask.length; i++) {
        if (!mask[i]) continue;
        sum += p1.dose![i]!;
        max = Math.max(max, p1.dose![i]!);
        n++;
      }
      expect(Math.abs(n * 0.048 - theirs.volume_cc) / theirs.volume_cc, roi).toBeLessThan(0.02);
      expect(Math.abs(sum / n - theirs.mean_gy), roi).toBeLessThan(0.01 * 75);
      expect(Math.abs(max - theirs.max_gy), roi).toBeLessThan(0.05);
    }
  });

  it('resamples a dose on a coarser, offset grid trilinearly in patient coordinates and reports the body it does not cover', async () => {
    const out = tempDir('vmat-dicom-p2-');
    const result = await importDicom(fixtures.sets.P2!, { out, threads: 1 });
    const p2 = await loadCase(result.cases[0]!.path);
    const reference = parseNpy(readFileSync(join(root, 'fx', 'ref', 'P2_dose_on_ct.npy'))).data as Float32Array;
    let inside = 0;
    let maxInside = 0;
    for (let i = 0; i < reference.length; i++) {
      if (Number.isNaN(reference[i]!)) {
        expect(p2.dose![i]).toBe(0);
      } else {
        inside++;
        maxInside = Math.max(maxInside, Math.abs(p2.dose![i]! - reference[i]!));
      }
    }
    expect(inside / reference.length).toBeGreaterThan(0.3);
    expect(inside / reference.length).toBeLessThan(0.9);
    expect(maxInside).toBeLessThan(1e-3);
    expect(result.cases[0]!.notes.join(' ')).toMatch(/the dose grid does not cover \d+\.\d % of the body/);
    expect(result.cases[0]!.dose!.bodyCoveredPct).toBeLessThan(100);
    // No RTPLAN: the site's prescriptions, said so.
    expect(p2.metadata).toMatchObject({ prescription_gy: { PTV70: 70, PTV56: 56 }, prescription_source: 'site profile prostate-sib', fractions: 28 });
  });

  it('reads implicit VR little endian, explicit VR big endian, deflated and bare data sets into the same case', async () => {
    for (const [name, folder] of Object.entries(fixtures.variants)) {
      const variant = await importOne(folder);
      expect(Array.from(variant.ct), name).toEqual(Array.from(p1.ct));
      expect(maxAbsDiff(variant.masks, p1.masks), name).toBe(0);
      expect(maxAbsDiff(variant.dose!, p1.dose!), name).toBe(0);
      expect(variant.originMm, name).toEqual(p1.originMm);
    }
  });

  it('stores prone and feet-first series head-up in patient axes, and an oblique one with its direction', async () => {
    for (const name of ['hfp', 'ffs']) {
      const turned = await importOne(fixtures.orient[name]!);
      expect(Array.from(turned.ct), name).toEqual(Array.from(p1.ct));
      expect(maxAbsDiff(turned.masks, p1.masks), name).toBe(0);
      expect(maxAbsDiff(turned.dose!, p1.dose!), name).toBeLessThan(1e-5);
      expect(turned.originMm, name).toEqual(p1.originMm);
      expect(turned.direction, name).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
      expect((turned.metadata.dicom as Record<string, unknown>).acquisition_orientation).toBe(name === 'hfp' ? '+z -y -x' : '-z +y -x');
    }
    const oblique = await importOne(fixtures.orient.oblique!);
    expect(Array.from(oblique.ct)).toEqual(Array.from(p1.ct));
    expect(maxAbsDiff(oblique.masks, p1.masks)).toBe(0);
    expect(maxAbsDiff(oblique.dose!, p1.dose!)).toBeLessThan(1e-4);
    const [c, s] = [Math.cos(Math.PI / 6), Math.sin(Math.PI / 6)];
    // Rows: the array axes z, y (the column direction, turned by 30°) and x (the row direction), as (z, y, x).
    const want = [1, 0, 0, 0, c, -s, 0, s, c];
    oblique.direction!.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 6));
    const [z, y, x] = p1.originMm!;
    [z, s * x + c * y, c * x - s * y].forEach((v, i) => expect(oblique.originMm![i]).toBeCloseTo(v, 4));
    // Gamma between the two placements of one patient: the grids are compared along their shared (turned) axes.
    const same = await gammaIndex(
      { data: oblique.dose!, shape: oblique.shape, spacingMm: oblique.spacingMm, originMm: oblique.originMm, direction: oblique.direction },
      { data: oblique.dose!, shape: oblique.shape, spacingMm: oblique.spacingMm, originMm: oblique.originMm, direction: oblique.direction },
      { device: 'cpu' },
      { threads: 1 },
    );
    expect(same.passRatePct).toBe(100);
    await expect(
      gammaIndex({ data: p1.dose!, shape: p1.shape, spacingMm: p1.spacingMm, originMm: p1.originMm, direction: p1.direction }, { data: oblique.dose!, shape: oblique.shape, spacingMm: oblique.spacingMm, originMm: oblique.originMm, direction: oblique.direction }),
    ).rejects.toThrow(/different axes \(direction\)/);
  });

  it('refuses a RELATIVE dose without a prescription and scales it with one', async () => {
    const out = tempDir('vmat-dicom-rel-');
    const refused = await importDicom(fixtures.relative, { out });
    expect(refused.cases).toHaveLength(0);
    expect(refused.failed[0]!.reason).toMatch(/RELATIVE units; give the dose in Gy that 1\.0 stands for as prescriptionGy/);
    const scaled = await importDicom(fixtures.relative, { out, prescriptionGy: 70 });
    const data = await loadCase(scaled.cases[0]!.path);
    expect(maxAbsDiff(data.dose!, p1.dose!)).toBeLessThan(1e-4);
  });

  it('adds up the BEAM doses of one plan', async () => {
    const result = await importDicom(fixtures.beams, { out: tempDir('vmat-dicom-beams-') });
    expect(result.cases[0]!.dose).toMatchObject({ files: 2, summationType: 'BEAM (added up)' });
    expect(maxAbsDiff((await loadCase(result.cases[0]!.path)).dose!, p1.dose!)).toBeLessThan(1e-4);
  });

  it('maps ROIs with a user structure map over the aliases, and refuses a map onto an unknown channel', async () => {
    const out = tempDir('vmat-dicom-map-');
    const result = await importDicom(fixtures.sets.P1!, { out, structureMap: { Couch: 'Femur_L' } });
    const data = await loadCase(result.cases[0]!.path);
    expect(data.structures).toContain('Femur_Head_L');
    expect(maxAbsDiff(maskOf(data, 'Femur_L'), maskOf(p1, 'Couch'))).toBe(0);
    expect(result.cases[0]!.notes.join(' ')).toMatch(/ROIs 'Couch' and 'Femur_Head_L' both match Femur_L: 'Couch' is used/);
    await expect(importDicom(fixtures.sets.P1!, { out, structureMap: { Couch: 'Table' } })).rejects.toThrow(/sends 'Couch' to 'Table', which is not a structure of the site prostate-sib/);
  });

  it('imports under another site profile: its channels, its conditioning vector', async () => {
    const result = await importDicom(fixtures.sets.P1!, { out: tempDir('vmat-dicom-hn-'), site: 'head-neck' });
    const data = await loadCase(result.cases[0]!.path);
    expect(data.structures.slice(0, 2)).toEqual(['PTV70', 'PTV56']);
    expect(data.structures).toContain('RECTUM'); // not a head and neck structure: kept under its own name
    expect(data.constraints).toHaveLength(10);
    expect(data.metadata).toMatchObject({ site: 'head-neck', prescription_gy: { PTV70: 72, PTV56: 57.6 } });
    // The summary line says where a prescription or fraction count came from, as the file records it.
    expect(result.cases[0]!.prescriptionSource).toBe(data.metadata.prescription_source);
    expect(['rtplan', 'site profile head-neck']).toContain(result.cases[0]!.fractionsSource);
  });
});

describe.skipIf(!tools)('vmat-native import dicom: bad input', () => {
  it('gives one sentence per bad file or case, exit 1, and still imports the other cases', () => {
    const out = tempDir('vmat-dicom-bad-');
    const result = runCli(['import', 'dicom', join(root, 'fx', 'bad'), '--out', out, '--threads', '1']);
    expect(result.status).toBe(1);
    const text = result.stdout;
    const expected: [string, RegExp][] = [
      ['P_MISSING', /P_MISSING {2}not imported: CT series \S+ is not evenly spaced: 6\.00 mm between \S+image0009\S+ and \S+image0011\S+ where the other slices are 3\.00 mm apart \(1 slice missing\)/],
      ['P_DUPLICATE', /P_DUPLICATE {2}not imported: CT series \S+ has two slices at the same position \(-10\.00 mm along the slice normal\): \S+ and \S+image_duplicate\.dcm/],
      ['P_MIXED', /P_MIXED {2}not imported: CT series \S+ mixes slices of different geometry: .* has 64×64 pixels of 4×4 mm.* has 64×64 pixels of 8×8 mm/],
      ['P_TILT', /P_TILT {2}not imported: CT series \S+ is sheared \(a gantry tilt/],
      ['P_JPEG', /P_JPEG {2}not imported: \S+: the CT image's pixel data is JPEG Lossless \(transfer syntax 1\.2\.840\.10008\.1\.2\.4\.70\), which vmat-native does not decode/],
      ['P_RELATIVE', /P_RELATIVE {2}not imported: \S+: the RTDOSE is in RELATIVE units/],
      ['P_STUDY', /the structure set \S+P_STUDY\S+ \(study \S+\) references CT series \S+, which is not in the folder/],
      ['P_DOSE_ONLY', /the RTDOSE \S+P_DOSE_ONLY\S+ has no CT series with a structure set in its frame of reference/],
      ['notes.dcm', /notes\.dcm is not a DICOM file \(no DICM marker at byte 128 and no data set at its start\)/],
      ['P_ROIS short', /problem: \S+: ROI 'RECTUM' has 1 contour with fewer than 3 points, left out/],
      ['P_ROIS empty', /problem: \S+: ROI 'Marker_Empty' has no closed contours; it is not imported/],
      ['P_ROIS frame', /problem: \S+: ROI 'Bladder_MR' is drawn in frame of reference \S+, not the CT's \(\S+\); it is not imported/],
      ['P_ROIS beyond', /problem: \S+: ROI 'RECTUM' has contours on 1 plane beyond the CT's first or last slice, left out/],
      ['P_ROIS between', /note: ROI 'RECTUM': 1 contour plane between CT slices not used \(each slice takes the plane nearest to it\)/],
    ];
    for (const [name, pattern] of expected) expect(text, name).toMatch(pattern);
    expect(result.stderr).toMatch(/imported 2 cases into .*, 6 not imported, .*; 14 problems \(listed above\)/);
    expect(readdirSync(out).sort()).toEqual(['P_GOOD.npz', 'P_ROIS.npz']);
    expect(result.stderr).not.toMatch(/internal error|at .*\.js:\d+/);
  });

  it('refuses a missing folder, an existing case file without --overwrite, and a folder without CT and structures', async () => {
    expect(runCli(['import', 'dicom', join(root, 'nowhere'), '--out', tempDir()]).stderr).toMatch(/the DICOM folder \S+nowhere does not exist/);
    const out = tempDir('vmat-dicom-twice-');
    expect((await importDicom(fixtures.sets.P1!, { out })).cases).toHaveLength(1);
    const again = runCli(['import', 'dicom', fixtures.sets.P1!, '--out', out]);
    expect(again.status).toBe(1);
    expect(again.stdout).toMatch(/P1 {2}not imported: \S+P1\.npz already exists; set overwrite \(--overwrite\)/);
    expect((await importDicom(fixtures.sets.P1!, { out, overwrite: true })).cases).toHaveLength(1);
    const empty = tempDir('vmat-dicom-empty-');
    const none = runCli(['import', 'dicom', empty, '--out', tempDir()]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/holds no CT series with a structure set/);
    const map = join(tempDir(), 'map.json');
    writeFileSync(map, '{"PTV_70": 7}');
    expect(runCli(['import', 'dicom', fixtures.sets.P1!, '--out', tempDir(), '--structure-map', map]).stderr).toMatch(/must be a JSON object of ROI name → channel name/);
  });
});

describe.skipIf(!tools)('export dicom and nifti', () => {
  it('writes an RTDOSE that pydicom reads as the same dose (0.1 % of the maximum) on the same grid, study and frame of reference', async () => {
    const out = join(tempDir('vmat-dicom-export-'), 'dose.dcm');
    const written = await exportRtDose(p1, { out });
    expect(written.frameOfReferenceUid).toBe(p1.metadata.frame_of_reference_uid);
    const read = JSON.parse(
      py(
        `import pydicom, json, sys, numpy as np
d = pydicom.dcmread(sys.argv[1])
a = d.pixel_array.astype(np.float64) * float(d.DoseGridScaling)
np.save(sys.argv[1] + '.npy', a.astype(np.float32))
print(json.dumps({'shape': list(a.shape), 'ipp': [float(v) for v in d.ImagePositionPatient], 'iop': [float(v) for v in d.ImageOrientationPatient],
  'spacing': [float(v) for v in d.PixelSpacing], 'gfov': [float(v) for v in d.GridFrameOffsetVector], 'for': d.FrameOfReferenceUID, 'study': d.StudyInstanceUID,
  'patient': d.PatientID, 'units': d.DoseUnits, 'modality': d.Modality, 'sop': d.SOPClassUID, 'ts': d.file_meta.TransferSyntaxUID}))`,
        out,
      ),
    ) as Record<string, unknown>;
    expect(read).toMatchObject({ shape: p1.shape, ipp: [-124.75, -128.5, -40], iop: [1, 0, 0, 0, 1, 0], spacing: [4, 4], for: p1.metadata.frame_of_reference_uid, study: p1.metadata.study_instance_uid, patient: 'P1', units: 'GY', modality: 'RTDOSE', sop: '1.2.840.10008.5.1.4.1.1.481.2', ts: '1.2.840.10008.1.2.1' });
    expect((read.gfov as number[]).slice(0, 3)).toEqual([0, 3, 6]);
    const dose = parseNpy(readFileSync(`${out}.npy`)).data as Float32Array;
    const max = p1.dose!.reduce((a, b) => Math.max(a, b), 0);
    expect(maxAbsDiff(dose, p1.dose!)).toBeLessThan(0.001 * max);
    // dcmtk reads it too.
    expect(spawnSync('dcmdump', [out], { encoding: 'utf8' }).status).toBe(0);
  });

  it('writes the dose in the CT\'s own axes: re-imported with its CT, every orientation gives the dose back', async () => {
    for (const name of ['hfp', 'ffs', 'oblique']) {
      const turned = await importOne(fixtures.orient[name]!);
      const folder = join(tempDir('vmat-dicom-reimport-'), name);
      cpSync(fixtures.orient[name]!, folder, { recursive: true });
      for (const file of readdirSync(folder)) if (file.startsWith('dose')) rmSync(join(folder, file));
      rmSync(join(folder, 'plan.dcm'));
      const out = join(folder, 'ours.dcm');
      await exportRtDose({ ...turned, dose: p1.dose }, { out });
      const again = await importOne(folder);
      expect(maxAbsDiff(again.dose!, p1.dose!), name).toBeLessThan(1e-4);
    }
  });

  it('places a case that was not imported from DICOM with --reference, and refuses without it', async () => {
    const plain: CaseData = { ...p1, originMm: undefined, direction: undefined, metadata: { case_id: 'P1' } };
    await expect(exportRtDose(plain, { out: join(tempDir(), 'x.dcm') })).rejects.toThrow(/records no DICOM study, frame of reference and origin .* give reference, the DICOM folder of its CT/);
    const out = join(tempDir(), 'placed.dcm');
    const written = await exportRtDose(plain, { out, reference: fixtures.sets.P1! });
    expect(written.frameOfReferenceUid).toBe(p1.metadata.frame_of_reference_uid);
    await expect(exportRtDose(plain, { out })).rejects.toThrow(/already exists/);
    const wrongGrid: CaseData = { ...plain, spacingMm: [2, 4, 4] };
    await expect(exportRtDose(wrongGrid, { out: join(tempDir(), 'y.dcm'), reference: fixtures.sets.P1! })).rejects.toThrow(/is on a grid of \[48,64,64\] voxels at \(2, 4, 4\) mm, but the reference CT is/);
  });

  it('writes NIfTI whose affine ITK (plastimatch) reads as the DICOM CT\'s own geometry', async () => {
    const dir = tempDir('vmat-dicom-nifti-');
    const read = (mha: string) =>
      JSON.parse(
        py(
          `import sys, json, numpy as np
raw = open(sys.argv[1], 'rb').read()
marker = b'ElementDataFile = LOCAL'
head = dict(line.split(' = ', 1) for line in raw[:raw.index(marker)].decode().strip().split('\\n'))
kind = {'MET_SHORT': np.int16, 'MET_FLOAT': np.float32}[head['ElementType']]
voxels = np.frombuffer(raw[raw.index(marker) + len(marker) + 1:], kind).astype(float)
print(json.dumps({k: [float(v) for v in head[k].split()] for k in ('Offset', 'TransformMatrix', 'ElementSpacing', 'DimSize')} | {'sum': float(voxels.sum()), 'voxels': voxels[::97].tolist()}))`,
          mha,
        ),
      ) as { Offset: number[]; TransformMatrix: number[]; ElementSpacing: number[]; DimSize: number[]; voxels: number[] };
    const itk = (...args: string[]) => expect(spawnSync('plastimatch', args, { encoding: 'utf8' }).status).toBe(0);
    for (const name of ['oblique', 'hfp']) {
      const data = await importOne(fixtures.orient[name]!);
      const path = join(dir, `${name}.npz`);
      await saveCase(path, data);
      const nifti = join(dir, `${name}.nii.gz`);
      const result = runCli(['export', 'nifti', path, '--out', nifti, '--volume', 'ct']);
      expect(result.status, result.stderr).toBe(0);
      // ITK reads the DICOM series into its own geometry (the acquisition's axes); resampled (nearest) onto the
      // NIfTI's grid it must give the same voxels, which holds only if the NIfTI affine places them right.
      const ctOnly = join(dir, `${name}_ct`);
      cpSync(fixtures.orient[name]!, ctOnly, { recursive: true });
      for (const file of readdirSync(ctOnly)) if (!file.startsWith('image')) rmSync(join(ctOnly, file));
      itk('convert', '--input', ctOnly, '--output-img', join(dir, `${name}_dicom.mha`));
      itk('convert', '--input', nifti, '--output-img', join(dir, `${name}_nifti.mha`));
      itk('resample', '--input', join(dir, `${name}_dicom.mha`), '--fixed', nifti, '--interpolation', 'nn', '--output', join(dir, `${name}_onto.mha`));
      const [ours, onto, dicom] = [read(join(dir, `${name}_nifti.mha`)), read(join(dir, `${name}_onto.mha`)), read(join(dir, `${name}_dicom.mha`))];
      expect(ours.voxels, name).toEqual(onto.voxels);
      expect(ours.voxels.some((v) => v > 0), name).toBe(true);
      if (name === 'oblique') {
        // Stored in the acquisition's axes: the very same geometry as ITK's reading of the DICOM.
        ours.Offset.forEach((v, i) => expect(v).toBeCloseTo(dicom.Offset[i]!, 3));
        ours.TransformMatrix.forEach((v, i) => expect(v).toBeCloseTo(dicom.TransformMatrix[i]!, 4));
        expect(ours.DimSize).toEqual(dicom.DimSize);
      }
    }
  });
});

describe.skipIf(!tools)('format 1 placement keys', () => {
  it('keeps origin_mm and direction through save and load, and reports a direction that is not a rotation', async () => {
    const dir = tempDir('vmat-dicom-keys-');
    const path = join(dir, 'c.npz');
    await saveCase(path, p1);
    const back = await loadCase(path);
    expect(back.originMm).toEqual(p1.originMm);
    expect(back.direction).toEqual(p1.direction);
    const bad = join(dir, 'bad.npz');
    copyFileSync(path, bad);
    py(
      `import numpy as np, sys
f = dict(np.load(sys.argv[1]))
f['direction'] = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 1]], float)
np.savez(sys.argv[1], **f)`,
      bad,
    );
    const problems = await checkCase(bad);
    expect(problems.map((p) => p.message).join(' ')).toMatch(/'direction' is not a rotation: expected rows of unit length at right angles \(to 1e-3\), found row 1 of length 2\.0000/);
    await expect(saveCase(join(dir, 'x.npz'), { ...p1, direction: [1, 0, 0, 0, 1, 0, 0, 0, 2] })).rejects.toThrow(/direction must be rows of unit length/);
  });

  it('gamma uses the origins: a dose shifted in patient coordinates by whole voxels passes as the same dose; grids apart are refused', async () => {
    const [Z, Y, X] = p1.shape;
    const shifted = new Float32Array(p1.dose!.length);
    // The same dose one slice later in the array, with the origin one slice earlier: the same patient positions.
    for (let z = 0; z + 1 < Z; z++) shifted.set(p1.dose!.subarray(z * Y * X, (z + 1) * Y * X), (z + 1) * Y * X);
    const ref = { data: p1.dose!, shape: p1.shape, spacingMm: p1.spacingMm, originMm: p1.originMm, frameOfReferenceUid: 'a' };
    const moved = { ...ref, data: shifted, originMm: [p1.originMm![0] - 3, p1.originMm![1], p1.originMm![2]] as [number, number, number] };
    const result = await gammaIndex(ref, moved, { device: 'cpu' }, { threads: 1 });
    expect(result.passRatePct).toBe(100);
    expect(result.meanGamma).toBe(0);
    await expect(gammaIndex(ref, { ...moved, originMm: [1000, 0, 0] })).rejects.toThrow(/do not overlap: along z the reference spans -40\.0 to 101\.0 mm, the evaluated dose 1000\.0 to 1141\.0 mm/);
    await expect(gammaIndex(ref, { ...moved, frameOfReferenceUid: 'b' })).rejects.toThrow(/different frames of reference \(a and b\)/);
  });
});

describe.skipIf(!tools)('the whole job on imported DICOM: import → train → predict --dicom-out → evaluate → export', () => {
  it('runs as a user would and writes an RTDOSE of the prediction that pydicom reads back', () => {
    const work = tempDir('vmat-dicom-job-');
    const data = join(work, 'cases');
    const imported = runCli(['import', 'dicom', join(root, 'fx', 'set'), '--out', data, '--threads', '1']);
    expect(imported.status, imported.stderr).toBe(0);
    expect(readdirSync(data).sort()).toEqual(['P1.npz', 'P2.npz', 'P3.npz']);
    const trained = runCli(
      ['train', '--data-dir', data, '--exp-name', 'dicom', '--log-dir', join(work, 'runs'), '--epochs', '1', '--patch-size', '32', '--base-channels', '8', '--patches-per-volume', '1', '--device', 'cpu', '--threads', '1', '--json'],
      { timeoutMs: 300_000 },
    );
    expect(trained.status, trained.stderr).toBe(0);
    const checkpoint = (JSON.parse(trained.stdout) as { bestCheckpoint: string }).bestCheckpoint;
    const predicted = runCli(['predict', '--checkpoint', checkpoint, '--input', join(data, 'P1.npz'), '--output-dir', join(work, 'pred'), '--dicom-out', join(work, 'dicom'), '--patch-size', '32', '--device', 'cpu', '--threads', '1']);
    expect(predicted.status, predicted.stderr).toBe(0);
    const prediction = join(work, 'pred', 'P1_pred.npz');
    const evaluated = runCli(['evaluate', '--pred', prediction, '--ref', join(data, 'P1.npz'), '--device', 'cpu', '--threads', '1', '--json']);
    expect(evaluated.status, evaluated.stderr).toBe(0);
    expect(evaluated.stdout).toMatch(/"mae_gy"/);
    const rtdose = join(work, 'export.dcm');
    const exported = runCli(['export', 'dicom', prediction, '--out', rtdose, '--reference', fixtures.sets.P1!]);
    expect(exported.status, exported.stderr).toBe(0);
    const check = py(
      `import pydicom, numpy as np, sys
pred = np.load(sys.argv[1])['dose']
for path in sys.argv[2:]:
    d = pydicom.dcmread(path)
    a = d.pixel_array * float(d.DoseGridScaling)
    assert a.shape == pred.shape, (a.shape, pred.shape)
    print(float(np.abs(a - pred).max() / pred.max()))`,
      prediction,
      rtdose,
      join(work, 'dicom', 'P1_pred.dcm'),
    );
    for (const line of check.trim().split('\n')) expect(Number(line)).toBeLessThan(0.001);
    expect(existsSync(join(work, 'dicom', 'P1_pred.dcm'))).toBe(true);
  });
});
