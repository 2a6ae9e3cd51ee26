import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import type { CaseData } from '../src/data/case.js';
import { constraintLabel, constraintTable } from '../src/eval/metrics.js';
import { CONSTRAINT_SLOTS } from '../src/predict/predict.js';
import { synthesizeCase } from '../src/data/synth.js';
import { caseConditioning, conditioningFor } from '../src/sites/conditioning.js';
import { CANONICAL_STRUCTURES } from '../src/data/structures.js';
import { channelNames, channelNamesOfCase, defaultConditioning, leftRightChannelPairs, loadSiteProfile, parseSiteProfile, shippedSites, structureMatcher } from '../src/sites/profile.js';
import { tempDir } from './helpers.js';

describe('site profiles', () => {
  it('ships prostate-sib (the behaviour before profiles) and head-neck (the OpenKBP structure set)', () => {
    expect(shippedSites()).toEqual(['head-neck', 'prostate-sib']);
    const prostate = loadSiteProfile('prostate-sib');
    expect(channelNames(prostate)).toEqual([...CANONICAL_STRUCTURES]);
    expect(prostate.conditioning.map((slot) => slot.name)).toEqual([...CONSTRAINT_SLOTS]);
    expect(Array.from(defaultConditioning(prostate))).toEqual(
      Array.from(Float32Array.from([1.0, 0.8, 0, 0.5, 0.35, 0.2, 75 / 70, 0.5, 0.35, 0.25, 0.1, 195 / 500, 45 / 70])),
    );
    expect(prostate.leftRightPairs).toEqual([['Femur_L', 'Femur_R']]);
    const headNeck = loadSiteProfile('head-neck');
    expect(channelNames(headNeck)).toEqual(['PTV70', 'PTV63', 'PTV56', 'Brainstem', 'SpinalCord', 'RightParotid', 'LeftParotid', 'Esophagus', 'Larynx', 'Mandible']);
    expect(headNeck.targets.map((t) => t.prescriptionGy)).toEqual([70, 63, 56]);
    expect(headNeck.fractions).toBe(35);
    expect(headNeck.leftRightPairs).toEqual([['LeftParotid', 'RightParotid']]);
  });

  it('maps ROI names by name, alias and a user map, ignoring case, spaces, _ and -', () => {
    const match = structureMatcher(loadSiteProfile('prostate-sib'), { 'Rectum PRV': 'Rectum' });
    expect(['PTV_70', 'ptv-70', 'RECTUM', 'Femur_Head_L', 'femoral head right', 'BODY', 'External', 'rectum prv', 'Lens_L'].map(match)).toEqual([
      'PTV70', 'PTV70', 'Rectum', 'Femur_L', 'Femur_R', 'body', 'body', 'Rectum', null,
    ]);
    expect(() => structureMatcher(loadSiteProfile('prostate-sib'), { X: 'Lens' })).toThrow(/sends 'X' to 'Lens', which is not a structure of the site prostate-sib/);
  });

  it('refuses unknown names and bad profiles with one sentence', () => {
    expect(() => loadSiteProfile('lung')).toThrow(/unknown site 'lung': expected one of head-neck, prostate-sib/);
    const dir = tempDir();
    const write = (profile: unknown) => {
      const path = join(dir, `p${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(path, JSON.stringify(profile));
      return path;
    };
    const base = JSON.parse(JSON.stringify(loadSiteProfile('prostate-sib'))) as Record<string, unknown>;
    const custom = loadSiteProfile(write({ ...base, name: 'my-clinic' }));
    expect(custom.name).toBe('my-clinic');
    expect(() => loadSiteProfile(write({ ...base, fractions: 0 }))).toThrow(/is not valid: fractions: /);
    expect(() => loadSiteProfile(write({ ...base, leftRightPairs: [['Femur_L', 'Lens_R']] }))).toThrow(/leftRightPairs\[0\] names Lens_R, which is not one of its structures/);
    expect(() => loadSiteProfile(write({ ...base, body: { aliases: ['Rectum'] } }))).toThrow(/the name 'Rectum' belongs to both Rectum and the body/);
    expect(() => loadSiteProfile(write({ ...base, constraints: [{ structure: 'Rectum', metric: 'Dmax', limit: 75, unit: '%' }] }))).toThrow(/cannot be in %/);
    expect(() => loadSiteProfile(write({ ...base, extra: 1 }))).toThrow(/is not valid: /);
    const notJson = join(dir, 'broken.json');
    writeFileSync(notJson, '{');
    expect(() => loadSiteProfile(notJson)).toThrow(/is not valid JSON/);
    expect(() => parseSiteProfile([], 'x')).toThrow(/the site profile x is not valid/);
  });
});

describe('conditioning vectors', () => {
  it("computes a plan's achieved values as the native synthetic generator records them", async () => {
    const prostate = loadSiteProfile('prostate-sib');
    const data = await synthesizeCase(1, { seed: 5, shape: [32, 48, 48], spacingMm: [2.5, 2, 2] });
    const { vector, mode } = conditioningFor(prostate, data);
    expect(mode).toBe('achieved');
    expect(data.constraints[3]).toBeGreaterThan(0); // the rectum receives 50 Gy somewhere: the comparison means something
    expect(Array.from(vector)).toEqual(Array.from(data.constraints));
    const { vector: limits, mode: limitsMode } = conditioningFor(prostate, { ...data, dose: undefined });
    expect(limitsMode).toBe('limits');
    expect(Array.from(limits)).toEqual(Array.from(defaultConditioning(prostate)));
  });

  it('gives 0 for a structure or target the case has not got, and mean doses for head and neck', async () => {
    const data = await synthesizeCase(0, { seed: 5, shape: [16, 32, 32], spacingMm: [5, 4, 4] });
    const voxels = 16 * 32 * 32;
    const headNeck = loadSiteProfile('head-neck');
    // The synthetic prostate case seen through the head-and-neck profile: PTV70 and PTV56 only, no organs.
    const vector = conditioningFor(headNeck, data).vector;
    expect(Array.from(vector.subarray(0, 3))).toEqual(Array.from(Float32Array.from([1, 0, 0.8])));
    expect(Array.from(vector.subarray(3))).toEqual(new Array(7).fill(0));
    // A "Larynx" renamed from the rectum: its mean dose / 70.
    const rectum = data.structures.indexOf('Rectum');
    const mask = data.masks.subarray(rectum * voxels, (rectum + 1) * voxels);
    let sum = 0;
    let n = 0;
    mask.forEach((m, i) => m && ((sum += data.dose![i]!), n++));
    const renamed = { ...data, structures: data.structures.map((s) => (s === 'Rectum' ? 'Larynx_Glottic' : s)) };
    expect(conditioningFor(headNeck, renamed).vector[8]).toBeCloseTo(sum / n / 70, 6);
  });
});

describe('the constraint table of a site profile', () => {
  const shape: [number, number, number] = [4, 4, 4];
  const voxels = 64;
  /** One structure per name, each the whole grid; dose 0 … 63 Gy by flat index. */
  const caseOf = (structures: string[], metadata: Record<string, unknown> = {}, constraints = new Float32Array(0)): CaseData => ({
    caseId: 'c',
    format: 'vmat-native-1',
    shape,
    spacingMm: [10, 10, 10],
    ct: new Int16Array(voxels),
    dose: Float32Array.from({ length: voxels }, (_, i) => i),
    masks: new Uint8Array(structures.length * voxels).fill(1),
    structures,
    constraints,
    metadata,
  });
  const dose = Float32Array.from({ length: voxels }, (_, i) => i);

  it("gives prostate-sib's rows as clinicians write them, with the limits of data.md", () => {
    const rows = constraintTable(caseOf(['Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel']), dose, dose);
    expect(rows.map(constraintLabel)).toEqual([
      'Rectum V50Gy < 50 %', 'Rectum V60Gy < 35 %', 'Rectum V70Gy < 20 %', 'Rectum Dmax < 75 Gy', 'Bladder V65Gy < 50 %', 'Bladder V70Gy < 35 %',
      'Bladder V75Gy < 25 %', 'Femur_L V50Gy < 10 %', 'Femur_R V50Gy < 10 %', 'Bowel V45Gy < 195 cc',
    ]);
    expect(rows[0]).toMatchObject({ name: 'Rectum V50', unit: 'fraction', limit: 0.5, ref: 14 / 64, refPass: true });
    expect(rows[3]).toMatchObject({ name: 'Rectum Dmax', unit: 'Gy', limit: 75, pred: 63 });
    expect(rows[9]).toMatchObject({ name: 'Bowel V45cc', unit: 'cc', limit: 195, ref: 19 }); // 19 voxels of 1 cc at >= 45 Gy
  });

  it("takes the limits from a case's vector of limits, dose slots relative to its prescription", () => {
    const vector = Float32Array.from([1, 0.8, 0, 0.4, 0.3, 0.1, 1.05, 0.5, 0.35, 0.25, 0.05, 0.2, 0.5]);
    const ref = caseOf(['Rectum', 'Bowel'], { constraints_mode: 'limits', prescription_gy: { PTV_70Gy: 78 } }, vector);
    const rows = constraintTable(ref, dose, dose);
    const byName = Object.fromEntries(rows.map((row) => [row.name, row]));
    expect(byName['Rectum V50']!.limit).toBe(vector[3]);
    expect(byName['Rectum Dmax']!.limit).toBe(vector[6]! * 78);
    // The bowel's dose level is slot 12 · Rx: 0.5 · 78 = 39 Gy; its limit slot 11 · 500 cc.
    expect(byName['Bowel V39cc']).toMatchObject({ limit: vector[11]! * 500, ref: 25 });
    expect(constraintLabel(byName['Bowel V39cc']!)).toBe('Bowel V39Gy < 100 cc');
  });

  it('judges head-and-neck organs by their mean and maximum doses, through the aliases', () => {
    const rows = constraintTable(caseOf(['Brain_Stem', 'Parotid_L', 'Larynx']), dose, dose, loadSiteProfile('head-neck'));
    expect(rows.map(constraintLabel)).toEqual([
      'Brainstem Dmax < 54 Gy', 'SpinalCord Dmax < 45 Gy', 'RightParotid Dmean < 26 Gy', 'LeftParotid Dmean < 26 Gy', 'Esophagus Dmean < 34 Gy', 'Larynx Dmean < 44 Gy', 'Mandible Dmax < 73.5 Gy',
    ]);
    expect(rows[0]).toMatchObject({ ref: 63, refPass: false });
    expect(rows[1]).toMatchObject({ ref: null, note: 'SpinalCord is not in the case' });
    expect(rows[3]).toMatchObject({ ref: 31.5, refPass: false });
  });

  it('computes D<x>% and D<x>cc rows of a user profile, and refuses a row that contradicts its slot', () => {
    const base = JSON.parse(JSON.stringify(loadSiteProfile('head-neck'))) as Record<string, unknown>;
    const custom = parseSiteProfile(
      { ...base, name: 'hn-targets', constraints: [{ structure: 'PTV70', metric: 'D95%', limit: 60, unit: 'Gy' }, { structure: 'PTV70', metric: 'D2cc', limit: 70, unit: 'Gy' }] },
      'custom.json',
    );
    const rows = constraintTable(caseOf(['PTV70']), dose, dose, custom);
    // The hottest 95 % (61 of 64 voxels) start at 3 Gy; the hottest 2 cc (2 voxels) at 62 Gy.
    expect(rows.map((row) => [constraintLabel(row), row.ref])).toEqual([['PTV70 D95% < 60 Gy', 3], ['PTV70 D2cc < 70 Gy', 62]]);
    const constraints = (base.constraints as Record<string, unknown>[]).map((row, i) => (i === 0 ? { ...row, limit: 50 } : row));
    expect(() => parseSiteProfile({ ...base, constraints }, 'mine.json')).toThrow(
      /^the site profile mine.json is not valid: constraints\[0\] \(Brainstem Dmax < 50 Gy\) disagrees with the default of its slot brainstem_dmax \(54 Gy\)$/,
    );
  });
});

describe('a case under a site profile', () => {
  it("keeps the case's own vector of its site, and computes one under another site", async () => {
    const data = await synthesizeCase(2, { seed: 5, shape: [16, 32, 32], spacingMm: [5, 4, 4] });
    const prostate = loadSiteProfile('prostate-sib');
    const own = Float32Array.from(data.constraints, (v, i) => (i === 5 ? 0.123 : v)); // not what the dose gives
    expect(caseConditioning(prostate, { ...data, constraints: own })).toBe(own);
    const headNeck = loadSiteProfile('head-neck');
    expect(Array.from(caseConditioning(headNeck, data))).toEqual(Array.from(conditioningFor(headNeck, data).vector));
    expect(caseConditioning(headNeck, data)).toHaveLength(10);
  });

  it('maps left-right pairs onto the channels given, through the aliases; a missing side gives no pair', () => {
    const headNeck = loadSiteProfile('head-neck');
    expect(leftRightChannelPairs(loadSiteProfile('prostate-sib'), CANONICAL_STRUCTURES)).toEqual([[6, 7]]);
    expect(leftRightChannelPairs(headNeck, channelNames(headNeck))).toEqual([[7, 6]]);
    expect(leftRightChannelPairs(headNeck, ['Parotid_R', 'PTV70', 'parotid left'])).toEqual([[3, 1]]);
    expect(leftRightChannelPairs(headNeck, ['PTV70', 'LeftParotid'])).toEqual([]);
    expect(channelNamesOfCase(headNeck, ['Parotid_L', 'Cord', 'Lens'])).toEqual(['LeftParotid', 'SpinalCord', 'Lens']);
    expect(() => channelNamesOfCase(headNeck, ['Parotid_L', 'LeftParotid'])).toThrow(/'Parotid_L' and 'LeftParotid', which are both the structure LeftParotid of the site head-neck/);
  });
});
