/**
 * `importDicom`: a folder of DICOM-RT exports (CT series, RTSTRUCT, RTDOSE, RTPLAN, in any layout) into format 1
 * case files in patient coordinates, one per (CT series, RTSTRUCT, RTDOSE) set. A bad file or case is reported in
 * one sentence and the others are still imported.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';

import { saveCase, type CaseData } from '../data/case.js';
import { deriveBodyMask } from '../data/sdf.js';
import { invalidInput, isUserError, VmatError } from '../errors.js';
import { conditioningFor } from '../sites/conditioning.js';
import { loadSiteProfile, structureMatcher } from '../sites/profile.js';
import { readCtSeries } from './ct.js';
import { caseGeometry, describeAxes, type Vec3 } from './geometry.js';
import { readDoseGrid, resampleDose } from './rtdose.js';
import { readPlan } from './rtplan.js';
import { studyAttributes } from './parse.js';
import { readStructureSet } from './rtstruct.js';
import { groupCases, scanFolder, type CaseFiles, type ScanProgress } from './scan.js';

export interface ImportDicomOptions {
  /** the folder the case files are written to (created if needed) */
  out: string;
  /** a shipped site profile name or a profile .json (default prostate-sib): channels, aliases, conditioning */
  site?: string;
  /** ROI name → channel name (or "body"), over the profile's aliases */
  structureMap?: Record<string, string>;
  /** replace existing case files */
  overwrite?: boolean;
  /** Gy that a RELATIVE RTDOSE value of 1.0 stands for */
  prescriptionGy?: number;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (event: ScanProgress) => void;
  /** called as each case is written or refused */
  onCase?: (event: ImportedCase | FailedCase) => void;
}

export interface ImportedCase {
  status: 'imported';
  caseId: string;
  path: string;
  patientId: string;
  ctFiles: number;
  shape: [number, number, number];
  spacingMm: [number, number, number];
  /** ROI name → stored name, 'body', or why it was not imported */
  mapping: { roi: string; to: string }[];
  structures: string[];
  body: 'from the RTSTRUCT' | 'derived from the CT';
  /** undefined for a case without a dose (for prediction) */
  dose?: { files: number; summationType: string; maxGy: number; bodyCoveredPct: number };
  prescriptionGy: Record<string, number>;
  fractions?: number;
  /** where the prescription and fractions came from: 'rtplan', or the site profile's defaults ('site profile NAME') */
  prescriptionSource: string;
  fractionsSource: string;
  problems: string[];
  notes: string[];
}

export interface FailedCase {
  status: 'failed';
  caseId: string;
  patientId: string;
  /** the case's structure set, which names it */
  structureSet: string;
  reason: string;
  /** the settings the reason names (so that the CLI can add their flags) */
  settings: string[];
}

export interface ImportDicomResult {
  cases: ImportedCase[];
  failed: FailedCase[];
  /** files or objects that could not be used (not DICOM, unreadable, unmatched): one sentence each */
  problems: string[];
  /** files left out by design (other modalities, CT series without structures, ...): one sentence each */
  skipped: string[];
}

/** A file-name-safe case id from a patient id. */
function caseIdBase(patientId: string): string {
  const safe = patientId.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+|_+$/g, '');
  return safe || 'case';
}

const shown = (path: string) => relative(process.cwd(), path) || path;

export async function importDicom(dir: string, options: ImportDicomOptions): Promise<ImportDicomResult> {
  if (!existsSync(dir)) throw invalidInput(`the DICOM folder ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw invalidInput(`${dir} is a file: expected a folder of DICOM files`);
  if (!options.out) throw invalidInput('out must name the folder for the case files');
  if (existsSync(options.out) && !statSync(options.out).isDirectory()) throw invalidInput(`out ${options.out} is a file: expected a folder`);
  if (options.prescriptionGy !== undefined && !(Number.isFinite(options.prescriptionGy) && options.prescriptionGy > 0)) {
    throw invalidInput(`prescriptionGy must be a positive number of Gy, got ${options.prescriptionGy}`);
  }
  const profile = loadSiteProfile(options.site);
  structureMatcher(profile, options.structureMap); // refuses a map onto unknown channels before any work

  const scan = await scanFolder(resolve(dir), options.onProgress);
  const grouping = groupCases(scan.files);
  const result: ImportDicomResult = {
    cases: [],
    failed: [],
    problems: [...scan.problems, ...grouping.problems].map((p) => p.reason),
    skipped: [...scan.skipped, ...grouping.skipped].map((s) => s.reason),
  };
  if (grouping.cases.length === 0) return result;
  await mkdir(options.out, { recursive: true });

  const counts = new Map<string, number>();
  for (const files of grouping.cases) counts.set(caseIdBase(files.patientId), (counts.get(caseIdBase(files.patientId)) ?? 0) + 1);
  const seen = new Map<string, number>();
  for (const files of grouping.cases) {
    options.signal?.throwIfAborted();
    const base = caseIdBase(files.patientId);
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    const caseId = counts.get(base)! > 1 ? `${base}_${n}` : base;
    let event: ImportedCase | FailedCase;
    try {
      event = await importCase(files, caseId, options);
      result.cases.push(event);
    } catch (error) {
      if (!isUserError(error)) throw error;
      event = { status: 'failed', caseId, patientId: files.patientId, structureSet: shown(files.structureSet.path), reason: error.message, settings: error instanceof VmatError ? [...error.settings] : [] };
      result.failed.push(event);
    }
    options.onCase?.(event);
  }
  return result;
}

async function importCase(files: CaseFiles, caseId: string, options: ImportDicomOptions): Promise<ImportedCase> {
  const path = join(options.out, `${caseId}.npz`);
  if (!options.overwrite && existsSync(path)) throw invalidInput(`${path} already exists; set overwrite to replace it`, { settings: ['overwrite'] });
  const profile = loadSiteProfile(options.site);
  const call = { threads: options.threads, signal: options.signal };
  const frame = files.ct[0]!.frameOfReferenceUid;

  const ct = await readCtSeries(files.ct);
  const structures = await readStructureSet(files.structureSet.path, ct.grid, frame, profile, options.structureMap ?? {}, call);
  const problems = [...structures.problems];
  const notes = [...ct.notes, ...structures.notes];
  const voxels = ct.hu.length;
  const body = structures.body ?? (await deriveBodyMask(ct.hu, ct.grid.shape, call));

  let dose: Float32Array | undefined;
  let doseSummary: ImportedCase['dose'];
  const doseObjects = [];
  for (const file of files.doses) {
    const grid = await readDoseGrid(file.path, { prescriptionGy: options.prescriptionGy });
    doseObjects.push(grid);
    const resampled = await resampleDose(grid, ct.grid, call);
    if (!dose) dose = resampled;
    else for (let i = 0; i < voxels; i++) dose[i] = dose[i]! + resampled[i]!;
  }
  if (dose) {
    let bodyVoxels = 0;
    let uncovered = 0;
    let max = 0;
    for (let i = 0; i < voxels; i++) {
      const value = dose[i]!;
      if (body[i]) bodyVoxels++;
      if (Number.isNaN(value)) {
        dose[i] = 0;
        if (body[i]) uncovered++;
      } else if (value > max) max = value;
    }
    const coveredPct = bodyVoxels > 0 ? (100 * (bodyVoxels - uncovered)) / bodyVoxels : 100;
    if (uncovered > 0) {
      notes.push(`the dose grid does not cover ${(100 - coveredPct).toFixed(1)} % of the body (${uncovered} voxels); the dose there is taken as 0 Gy`);
    }
    doseSummary = { files: files.doses.length, summationType: files.doses.length > 1 ? 'BEAM (added up)' : doseObjects[0]!.summationType, maxGy: max, bodyCoveredPct: coveredPct };
  }

  const match = structureMatcher(profile, options.structureMap);
  const storedName = (roi: string) => structures.mapping.find((m) => m.roi === roi)?.to.replace(/ \(kept\)$/, '') ?? match(roi) ?? roi;
  let prescriptionGy: Record<string, number> = {};
  let fractions: number | undefined;
  let fractionsSource = `site profile ${profile.name}`;
  let prescriptionSource = `site profile ${profile.name}`;
  let planLabel: string | undefined;
  if (files.plan) {
    const plan = await readPlan(files.plan.path, structures.roiNames, storedName);
    notes.push(...plan.notes);
    if (Object.keys(plan.prescriptionGy).length > 0) {
      prescriptionGy = plan.prescriptionGy;
      prescriptionSource = 'rtplan';
    }
    fractions = plan.fractions;
    if (fractions !== undefined) fractionsSource = 'rtplan';
    planLabel = plan.label;
  }
  if (prescriptionSource !== 'rtplan') {
    for (const target of profile.targets) if (structures.names.includes(target.structure)) prescriptionGy[target.structure] = target.prescriptionGy;
  }
  fractions ??= profile.fractions;

  const { originMm, direction } = caseGeometry(ct.grid);
  const first = ct.first;
  const metadata: Record<string, unknown> = {
    source: 'dicom',
    site: profile.name,
    prescription_gy: prescriptionGy,
    prescription_source: prescriptionSource,
    fractions,
    study_instance_uid: files.ct[0]!.studyInstanceUid,
    frame_of_reference_uid: frame,
    dicom: {
      ...studyAttributes(first),
      patient_position: first.string('x00185100') ?? '',
      ct_series_instance_uid: files.ct[0]!.seriesInstanceUid,
      ct_series_description: first.text('x0008103e') ?? '',
      ct_manufacturer: first.text('x00080070') ?? '',
      ct_files: files.ct.length,
      // the CT's own axes (slice normal, column and row directions, LPS), in which an exported dose is written
      acquisition_axes_lps: ct.acquisitionAxes,
      acquisition_orientation: describeAxes(ct.acquisitionAxes as Vec3[]),
      structure_set_sop_instance_uid: files.structureSet.sopInstanceUid,
      structure_set_label: structures.label ?? '',
      dose_sop_instance_uids: files.doses.map((d) => d.sopInstanceUid),
      dose_summation_type: doseSummary?.summationType ?? '',
      dose_type: doseObjects[0]?.type ?? '',
      plan_sop_instance_uid: files.plan?.sopInstanceUid ?? '',
      plan_label: planLabel ?? '',
    },
    // ROI name → the name it is stored under ('body' for the body mask), or why it was not imported
    structure_map: Object.fromEntries(structures.mapping.map(({ roi, to }) => [roi, to.replace(/ \(kept\)$/, '')])),
    ...(doseSummary ? { dose_body_coverage_pct: Math.round(doseSummary.bodyCoveredPct * 100) / 100 } : {}),
  };
  const data: CaseData = {
    caseId,
    format: 'vmat-native-1',
    shape: ct.grid.shape,
    spacingMm: ct.grid.spacingMm,
    originMm,
    direction,
    ct: ct.hu,
    dose,
    masks: structures.masks,
    structures: structures.names,
    constraints: new Float32Array(profile.conditioning.length),
    // A body derived from the CT is not stored: loading derives the same one.
    body: structures.body,
    metadata,
  };
  const conditioning = conditioningFor(profile, data);
  data.constraints = conditioning.vector;
  data.metadata.constraints_mode = conditioning.mode;
  // zlib level 1: a clinical case's masks are hundreds of MB of mostly zeros, which level 6 deflates 6x slower for a
  // file only about 5 % smaller.
  await saveCase(path, data, { overwrite: options.overwrite, compressionLevel: 1 });
  return {
    status: 'imported',
    caseId,
    path,
    patientId: files.patientId,
    ctFiles: files.ct.length,
    shape: ct.grid.shape,
    spacingMm: ct.grid.spacingMm,
    mapping: structures.mapping,
    structures: structures.names,
    body: structures.body ? 'from the RTSTRUCT' : 'derived from the CT',
    dose: doseSummary,
    prescriptionGy,
    fractions,
    prescriptionSource,
    fractionsSource,
    problems,
    notes,
  };
}
