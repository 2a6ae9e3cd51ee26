/**
 * `exportRtDose`: a case's dose (a prediction, usually) as a DICOM RTDOSE in the frame of reference and study of
 * the CT it was imported from, on the case's grid, so that a TPS or 3D Slicer shows it beside the clinical dose.
 */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

import type { CaseData } from '../data/case.js';
import { invalidInput } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { VERSION } from '../version.js';
import { readCtSeries } from './ct.js';
import { axisMapping, cross, dot, gridOfCase, isIdentityMap, mappedGrid, remapVolume, type PatientGrid, type Vec3 } from './geometry.js';
import { STUDY_ATTRIBUTE_TAGS, studyAttributes, type StudyAttributes } from './parse.js';
import { groupCases, scanFolder, SOP_CLASS, type CtFile } from './scan.js';
import { decimalString, newUid, part10Chunks, type DicomElement } from './write.js';

export interface ExportRtDoseOptions {
  /** the .dcm file to write */
  out: string;
  /**
   * The DICOM folder of the case's CT: patient and study attributes, frame of reference and grid are taken from
   * its CT series (the one the case was imported from, or its only one). Default: what the case recorded at import.
   */
  reference?: string;
  overwrite?: boolean;
  /** Series Description (default: "vmat-native predicted dose") */
  seriesDescription?: string;
}

export interface ExportedRtDose {
  path: string;
  sopInstanceUid: string;
  seriesInstanceUid: string;
  studyInstanceUid: string;
  frameOfReferenceUid: string;
  maxGy: number;
  doseGridScaling: number;
}

/** Patient, study and frame of reference of the dose, and the CT axes it is written in. */
interface Identity {
  attributes: StudyAttributes;
  studyInstanceUid: string;
  frameOfReferenceUid: string;
  planUid?: string;
  structureSetUid?: string;
  acquisitionAxes?: Vec3[];
  grid: PatientGrid;
}

const text = (value: unknown): string => (typeof value === 'string' ? value : '');

function identityFromMetadata(data: CaseData): Identity {
  const m = data.metadata;
  const dicom = (m.dicom ?? {}) as Record<string, unknown>;
  const frame = text(m.frame_of_reference_uid);
  const study = text(m.study_instance_uid);
  if (!frame || !study || !data.originMm) {
    throw invalidInput(
      `the case ${data.caseId} records no DICOM study, frame of reference and origin (it was not imported with \`import dicom\`): give reference, the DICOM folder of its CT (--reference DIR)`,
    );
  }
  const axes = dicom.acquisition_axes_lps;
  const attributes = Object.fromEntries(Object.keys(STUDY_ATTRIBUTE_TAGS).map((key) => [key, text(dicom[key])])) as StudyAttributes;
  return {
    attributes,
    studyInstanceUid: study,
    frameOfReferenceUid: frame,
    planUid: text(dicom.plan_sop_instance_uid) || undefined,
    structureSetUid: text(dicom.structure_set_sop_instance_uid) || undefined,
    acquisitionAxes: Array.isArray(axes) && axes.length === 3 ? (axes as Vec3[]) : undefined,
    grid: gridOfCase(data),
  };
}

async function identityFromReference(data: CaseData, reference: string): Promise<Identity> {
  if (!existsSync(reference)) throw invalidInput(`the reference folder ${reference} does not exist`);
  const scan = await scanFolder(resolve(reference));
  const cts = scan.files.filter((f): f is CtFile => f.kind === 'ct');
  const series = new Map<string, CtFile[]>();
  for (const file of cts) series.set(file.seriesInstanceUid, [...(series.get(file.seriesInstanceUid) ?? []), file]);
  const recorded = text(((data.metadata.dicom ?? {}) as Record<string, unknown>).ct_series_instance_uid);
  let files = recorded ? series.get(recorded) : undefined;
  if (!files) {
    if (series.size !== 1) {
      throw invalidInput(
        `the reference folder ${reference} holds ${series.size} CT series${recorded ? `, none of them the case's (${recorded})` : ''}: expected the CT series the case was made from`,
      );
    }
    files = [...series.values()][0]!;
  }
  const ct = await readCtSeries(files);
  const frame = text(data.metadata.frame_of_reference_uid);
  if (frame && frame !== files[0]!.frameOfReferenceUid) {
    throw invalidInput(`the case ${data.caseId} is in frame of reference ${frame}, but the reference CT series is in ${files[0]!.frameOfReferenceUid}`);
  }
  const sameShape = ct.grid.shape.every((n, a) => n === data.shape[a]) && ct.grid.spacingMm.every((s, a) => Math.abs(s - data.spacingMm[a]!) <= 1e-3);
  if (!sameShape) {
    throw invalidInput(
      `the case ${data.caseId} is on a grid of [${data.shape.join(',')}] voxels at (${data.spacingMm.join(', ')}) mm, but the reference CT is [${ct.grid.shape.join(',')}] at (${ct.grid.spacingMm.map((s) => Number(s.toFixed(4))).join(', ')}) mm`,
    );
  }
  if (data.originMm) {
    const own = gridOfCase(data);
    const offset = Math.hypot(...own.originLps.map((v, i) => v - ct.grid.originLps[i]!));
    const turned = own.axesLps.some((axis, i) => dot(axis, ct.grid.axesLps[i]!) < 1 - 1e-6);
    if (offset > 1e-3 || turned) throw invalidInput(`the case ${data.caseId}'s grid is not where the reference CT is (origins ${offset.toFixed(3)} mm apart${turned ? ', axes turned' : ''})`);
  }
  const plan = groupCases(scan.files).cases.find((c) => c.ct[0]!.seriesInstanceUid === files[0]!.seriesInstanceUid && c.plan)?.plan;
  return {
    attributes: studyAttributes(ct.first),
    studyInstanceUid: files[0]!.studyInstanceUid,
    frameOfReferenceUid: files[0]!.frameOfReferenceUid,
    planUid: text(((data.metadata.dicom ?? {}) as Record<string, unknown>).plan_sop_instance_uid) || plan?.sopInstanceUid,
    acquisitionAxes: ct.acquisitionAxes,
    grid: ct.grid,
  };
}

const now = () => {
  const iso = new Date().toISOString();
  return { date: iso.slice(0, 10).replace(/-/g, ''), time: iso.slice(11, 19).replace(/:/g, '') };
};

/** Writes `data.dose` as an RTDOSE (Gy, uint32 with a Dose Grid Scaling of max / (2³² − 1)). */
export async function exportRtDose(data: CaseData, options: ExportRtDoseOptions): Promise<ExportedRtDose> {
  if (!data.dose) throw invalidInput(`the case ${data.caseId} holds no dose to export`);
  if (!options.out) throw invalidInput('out must name the .dcm file to write');
  if (!existsSync(dirname(resolve(options.out)))) throw invalidInput(`cannot write ${options.out}: the folder ${dirname(options.out)} does not exist`);
  if (!options.overwrite && existsSync(options.out)) throw invalidInput(`${options.out} already exists: choose another name or set overwrite to replace it`, { settings: ['overwrite'] });
  let max = 0;
  for (let i = 0; i < data.dose.length; i++) {
    const value = data.dose[i]!;
    if (!(value >= 0) || !Number.isFinite(value)) throw invalidInput(`the case ${data.caseId}'s dose holds ${value} Gy at flat index ${i}: expected finite doses >= 0`);
    if (value > max) max = value;
  }
  const identity = options.reference ? await identityFromReference(data, options.reference) : identityFromMetadata(data);

  // Written in the CT's own axes when they are a flip or swap of the case's, so that the dose lies like the images.
  const maps = identity.acquisitionAxes ? axisMapping(identity.grid.axesLps, identity.acquisitionAxes) : undefined;
  const grid = maps && !isIdentityMap(maps) ? mappedGrid(identity.grid, maps) : identity.grid;
  const dose = maps && !isIdentityMap(maps) ? remapVolume(data.dose, data.shape, maps) : data.dose;
  const [frames, rows, columns] = grid.shape;
  const row = grid.axesLps[2];
  const column = grid.axesLps[1];
  // Frame offsets run along row × column; a grid whose slice axis points the other way gets negative offsets.
  const sense = Math.sign(dot(cross(row, column), grid.axesLps[0])) || 1;

  // The scaling is stored as a decimal string of 16 characters: the dose is quantised with the value a reader
  // will use, rounded up so that the maximum still fits in 32 bits.
  let scaling = max > 0 ? Number(decimalString(max / 0xffffffff)) : 1;
  if (max / scaling > 0xffffffff) scaling = Number(decimalString((max / 0xffffffff) * (1 + 1e-8)));
  const pixels = new Uint32Array(dose.length);
  for (let i = 0; i < dose.length; i++) pixels[i] = Math.round(dose[i]! / scaling);

  const sopInstanceUid = newUid();
  const seriesInstanceUid = newUid();
  const a = identity.attributes;
  const created = now();
  const cosines = [...row, ...column].map((v) => decimalString(Math.abs(v) < 1e-12 ? 0 : v));
  const elements: DicomElement[] = [
    { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 192' },
    { tag: 0x00080012, vr: 'DA', value: created.date },
    { tag: 0x00080013, vr: 'TM', value: created.time },
    { tag: 0x00080016, vr: 'UI', value: SOP_CLASS.rtDose },
    { tag: 0x00080018, vr: 'UI', value: sopInstanceUid },
    { tag: 0x00080020, vr: 'DA', value: a.study_date },
    { tag: 0x00080023, vr: 'DA', value: created.date },
    { tag: 0x00080030, vr: 'TM', value: a.study_time },
    { tag: 0x00080033, vr: 'TM', value: created.time },
    { tag: 0x00080050, vr: 'SH', value: a.accession_number },
    { tag: 0x00080060, vr: 'CS', value: 'RTDOSE' },
    { tag: 0x00080070, vr: 'LO', value: 'vmat-native' },
    { tag: 0x00080090, vr: 'PN', value: a.referring_physician_name },
    { tag: 0x00081030, vr: 'LO', value: a.study_description },
    { tag: 0x0008103e, vr: 'LO', value: (options.seriesDescription ?? 'vmat-native predicted dose').slice(0, 64) },
    { tag: 0x00100010, vr: 'PN', value: a.patient_name },
    { tag: 0x00100020, vr: 'LO', value: a.patient_id },
    { tag: 0x00100030, vr: 'DA', value: a.patient_birth_date },
    { tag: 0x00100040, vr: 'CS', value: a.patient_sex },
    { tag: 0x00181020, vr: 'LO', value: `vmat-native ${VERSION}` },
    { tag: 0x00180050, vr: 'DS', value: decimalString(grid.spacingMm[0]) },
    { tag: 0x0020000d, vr: 'UI', value: identity.studyInstanceUid },
    { tag: 0x0020000e, vr: 'UI', value: seriesInstanceUid },
    { tag: 0x00200010, vr: 'SH', value: a.study_id },
    { tag: 0x00200011, vr: 'IS', value: '' },
    { tag: 0x00200013, vr: 'IS', value: '1' },
    { tag: 0x00200032, vr: 'DS', value: grid.originLps.map(decimalString) },
    { tag: 0x00200037, vr: 'DS', value: cosines },
    { tag: 0x00200052, vr: 'UI', value: identity.frameOfReferenceUid },
    { tag: 0x00201040, vr: 'LO', value: '' },
    { tag: 0x00280002, vr: 'US', value: 1 },
    { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME2' },
    { tag: 0x00280008, vr: 'IS', value: String(frames) },
    { tag: 0x00280009, vr: 'AT', value: 0x3004000c },
    { tag: 0x00280010, vr: 'US', value: rows },
    { tag: 0x00280011, vr: 'US', value: columns },
    { tag: 0x00280030, vr: 'DS', value: [decimalString(grid.spacingMm[1]), decimalString(grid.spacingMm[2])] },
    { tag: 0x00280100, vr: 'US', value: 32 },
    { tag: 0x00280101, vr: 'US', value: 32 },
    { tag: 0x00280102, vr: 'US', value: 31 },
    { tag: 0x00280103, vr: 'US', value: 0 },
    { tag: 0x30040002, vr: 'CS', value: 'GY' },
    { tag: 0x30040004, vr: 'CS', value: 'PHYSICAL' },
    { tag: 0x30040006, vr: 'LO', value: `predicted by vmat-native ${VERSION}`.slice(0, 64) },
    { tag: 0x3004000a, vr: 'CS', value: 'PLAN' },
    { tag: 0x3004000c, vr: 'DS', value: Array.from({ length: frames }, (_, k) => decimalString(sense * k * grid.spacingMm[0])) },
    { tag: 0x3004000e, vr: 'DS', value: decimalString(scaling) },
    { tag: 0x7fe00010, vr: 'OW', value: new Uint8Array(pixels.buffer) },
  ];
  if (identity.planUid) {
    elements.push({ tag: 0x300c0002, vr: 'SQ', value: [[{ tag: 0x00081150, vr: 'UI', value: SOP_CLASS.rtPlan }, { tag: 0x00081155, vr: 'UI', value: identity.planUid }]] });
  }
  if (identity.structureSetUid) {
    elements.push({ tag: 0x300c0060, vr: 'SQ', value: [[{ tag: 0x00081150, vr: 'UI', value: SOP_CLASS.rtStruct }, { tag: 0x00081155, vr: 'UI', value: identity.structureSetUid }]] });
  }
  await writeFileAtomic(options.out, part10Chunks(SOP_CLASS.rtDose, sopInstanceUid, elements, `VMATNATIVE_${VERSION}`), { overwrite: options.overwrite });
  return {
    path: options.out,
    sopInstanceUid,
    seriesInstanceUid,
    studyInstanceUid: identity.studyInstanceUid,
    frameOfReferenceUid: identity.frameOfReferenceUid,
    maxGy: max,
    doseGridScaling: scaling,
  };
}
