/**
 * The scan of a DICOM folder: every file's identity (kind, patient, study, series, frame of reference and the
 * references between RT objects), read without pixel data; then the grouping of those files into cases, one per
 * (CT series, RTSTRUCT, RTDOSE) set, with a reason for every file left out.
 */
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';

import { VmatError } from '../errors.js';
import { looksLikeDicom, parseDicom, type DicomObject } from './parse.js';

export const SOP_CLASS = {
  ct: '1.2.840.10008.5.1.4.1.1.2',
  enhancedCt: '1.2.840.10008.5.1.4.1.1.2.1',
  rtDose: '1.2.840.10008.5.1.4.1.1.481.2',
  rtStruct: '1.2.840.10008.5.1.4.1.1.481.3',
  rtPlan: '1.2.840.10008.5.1.4.1.1.481.5',
  rtIonPlan: '1.2.840.10008.5.1.4.1.1.481.8',
  directory: '1.2.840.10008.1.3.10',
} as const;

interface Identity {
  path: string;
  sopInstanceUid: string;
  patientId: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  studyDate: string;
}

export interface CtFile extends Identity {
  kind: 'ct';
  frameOfReferenceUid: string;
}

export interface StructureSetFile extends Identity {
  kind: 'rtstruct';
  /** the frames of reference and CT series its ROIs are drawn on */
  referencedFrames: string[];
  referencedSeries: string[];
}

export interface DoseFile extends Identity {
  kind: 'rtdose';
  frameOfReferenceUid: string;
  summationType: string;
  referencedPlan?: string;
}

export interface PlanFile extends Identity {
  kind: 'rtplan';
  frameOfReferenceUid?: string;
  referencedStructureSet?: string;
}

export type ScannedFile = CtFile | StructureSetFile | DoseFile | PlanFile;

/** A file or object left out, and why, as one sentence. */
export interface Skipped {
  path: string;
  reason: string;
}

export interface ScanResult {
  files: ScannedFile[];
  /** files that are not DICOM or not readable: problems */
  problems: Skipped[];
  /** DICOM files that are not used by design (other modalities, the DICOMDIR index): not problems */
  skipped: Skipped[];
}

export interface ScanProgress {
  phase: 'scan';
  done: number;
  total: number;
}

/** Every regular file under `dir` (hidden files and folders left out), sorted. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (folder: string) => {
    const entries = await readdir(folder, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() || (entry.isSymbolicLink() && (await stat(path).catch(() => undefined))?.isFile())) out.push(path);
    }
  };
  await walk(dir);
  return out;
}

async function readHead(path: string, bytes: number): Promise<Uint8Array> {
  const file = await open(path, 'r');
  try {
    const head = new Uint8Array(bytes);
    const { bytesRead } = await file.read(head, 0, bytes, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

const required = (object: DicomObject, tag: string, name: string, what: string): string => {
  const value = object.string(tag);
  if (!value) throw new VmatError('VMAT_INVALID_INPUT', `${object.path}: the ${what} has no ${name}`);
  return value;
};

function identityOf(object: DicomObject, what: string): Identity {
  return {
    path: object.path,
    sopInstanceUid: required(object, 'x00080018', 'SOP Instance UID (0008,0018)', what),
    patientId: object.text('x00100020') ?? '',
    studyInstanceUid: required(object, 'x0020000d', 'Study Instance UID (0020,000D)', what),
    seriesInstanceUid: required(object, 'x0020000e', 'Series Instance UID (0020,000E)', what),
    studyDate: object.string('x00080020') ?? '',
  };
}

/** What the scan needs of one parsed file, or the reason it is not used. */
function summarise(object: DicomObject): ScannedFile | { skip: string } {
  const sopClass = object.string('x00080016') ?? '';
  const modality = object.string('x00080060') ?? '';
  if (sopClass === SOP_CLASS.ct || (!sopClass && modality === 'CT')) {
    return { kind: 'ct', ...identityOf(object, 'CT image'), frameOfReferenceUid: required(object, 'x00200052', 'Frame of Reference UID (0020,0052)', 'CT image') };
  }
  if (sopClass === SOP_CLASS.rtStruct || (!sopClass && modality === 'RTSTRUCT')) {
    const frames = object.sequence('x30060010');
    return {
      kind: 'rtstruct',
      ...identityOf(object, 'structure set'),
      referencedFrames: [
        ...new Set([
          ...frames.map((f) => f.string('x00200052')).filter((uid): uid is string => !!uid),
          ...object.sequence('x30060020').map((roi) => roi.string('x30060024')).filter((uid): uid is string => !!uid),
        ]),
      ],
      referencedSeries: frames.flatMap((f) => f.sequence('x30060012').flatMap((study) => study.sequence('x30060014').map((s) => s.string('x0020000e') ?? ''))).filter(Boolean),
    };
  }
  if (sopClass === SOP_CLASS.rtDose || (!sopClass && modality === 'RTDOSE')) {
    return {
      kind: 'rtdose',
      ...identityOf(object, 'RTDOSE'),
      frameOfReferenceUid: required(object, 'x00200052', 'Frame of Reference UID (0020,0052)', 'RTDOSE'),
      summationType: object.string('x3004000a') ?? '',
      referencedPlan: object.sequence('x300c0002')[0]?.string('x00081155'),
    };
  }
  if (sopClass === SOP_CLASS.rtPlan || sopClass === SOP_CLASS.rtIonPlan || (!sopClass && modality === 'RTPLAN')) {
    return {
      kind: 'rtplan',
      ...identityOf(object, 'RTPLAN'),
      frameOfReferenceUid: object.string('x00200052'),
      referencedStructureSet: object.sequence('x300c0060')[0]?.string('x00081155'),
    };
  }
  if (sopClass === SOP_CLASS.directory) return { skip: 'a DICOMDIR index (the files are found by the scan itself)' };
  if (sopClass === SOP_CLASS.enhancedCt) return { skip: 'an Enhanced (multi-frame) CT image, which vmat-native does not read: export the CT as single-frame CT Image Storage' };
  return { skip: `a ${modality || 'DICOM'} object (SOP class ${sopClass || 'unknown'}), not used: cases are built from CT, RTSTRUCT, RTDOSE and RTPLAN` };
}

/** Reads every file under `dir` and sorts it into used files, problems and skipped files. */
export async function scanFolder(dir: string, onProgress?: (event: ScanProgress) => void): Promise<ScanResult> {
  const paths = await listFiles(dir);
  const result: ScanResult = { files: [], problems: [], skipped: [] };
  let lastReport = 0;
  for (let i = 0; i < paths.length; i++) {
    const path = paths[i]!;
    const shown = relative(process.cwd(), path) || path;
    try {
      if (!looksLikeDicom(await readHead(path, 132))) {
        result.problems.push({ path, reason: `${shown} is not a DICOM file (no DICM marker at byte 128 and no data set at its start)` });
        continue;
      }
      const object = parseDicom(shown, new Uint8Array(await readFile(path)), { untilPixelData: true });
      const summary = summarise(object);
      if ('skip' in summary) result.skipped.push({ path, reason: `${shown}: ${summary.skip}` });
      else result.files.push({ ...summary, path });
    } catch (error) {
      if (!(error instanceof Error) || !('code' in error)) throw error;
      result.problems.push({ path, reason: error instanceof VmatError ? error.message : `${shown} cannot be read: ${error.message}` });
    }
    if (onProgress && (Date.now() - lastReport > 200 || i === paths.length - 1)) {
      lastReport = Date.now();
      onProgress({ phase: 'scan', done: i + 1, total: paths.length });
    }
  }
  return result;
}

/** The files of one case: a CT series, the structure set drawn on it, the doses to add up (none, one, or a plan's beams) and the plan. */
export interface CaseFiles {
  patientId: string;
  ct: CtFile[];
  structureSet: StructureSetFile;
  doses: DoseFile[];
  plan?: PlanFile;
}

export interface Grouping {
  cases: CaseFiles[];
  /** objects that cannot be used as given: problems */
  problems: Skipped[];
  /** objects left out by design: not problems */
  skipped: Skipped[];
}

const USABLE_SUMMATIONS = new Set(['PLAN', 'MULTI_PLAN']);

/**
 * Groups scanned files into cases: a structure set goes with the CT series it references (else the only CT series
 * of its frame of reference); each plan-level dose of its frame of reference that goes with it (through its plan's
 * structure set, or as the only structure set of the frame) makes one case; a plan's beam doses are added up when
 * the plan has no plan-level dose; a structure set without a dose makes a case for prediction only.
 */
export function groupCases(files: readonly ScannedFile[]): Grouping {
  const problems: Skipped[] = [];
  const skipped: Skipped[] = [];
  const shown = (path: string) => relative(process.cwd(), path) || path;
  const ctSeries = new Map<string, CtFile[]>();
  for (const file of files) if (file.kind === 'ct') ctSeries.set(file.seriesInstanceUid, [...(ctSeries.get(file.seriesInstanceUid) ?? []), file]);
  const structureSets = files.filter((f): f is StructureSetFile => f.kind === 'rtstruct');
  const doses = files.filter((f): f is DoseFile => f.kind === 'rtdose');
  const plans = new Map(files.filter((f): f is PlanFile => f.kind === 'rtplan').map((plan) => [plan.sopInstanceUid, plan]));

  const pairs: { ct: CtFile[]; structureSet: StructureSetFile }[] = [];
  for (const structureSet of structureSets) {
    const referenced = structureSet.referencedSeries.filter((uid) => ctSeries.has(uid));
    let ct: CtFile[] | undefined;
    if (referenced.length > 0) {
      ct = ctSeries.get(referenced[0]!);
    } else if (structureSet.referencedSeries.length > 0) {
      problems.push({
        path: structureSet.path,
        reason: `the structure set ${shown(structureSet.path)} (study ${structureSet.studyInstanceUid}) references CT series ${structureSet.referencedSeries[0]}, which is not in the folder`,
      });
      continue;
    } else {
      const candidates = [...ctSeries.values()].filter((series) => structureSet.referencedFrames.includes(series[0]!.frameOfReferenceUid));
      if (candidates.length !== 1) {
        problems.push({
          path: structureSet.path,
          reason: `the structure set ${shown(structureSet.path)} names no CT series, and ${candidates.length === 0 ? 'no' : candidates.length} CT series of the folder ${candidates.length === 1 ? 'is' : 'are'} in its frame of reference ${structureSet.referencedFrames[0] ?? '(none given)'}`,
        });
        continue;
      }
      ct = candidates[0];
    }
    const frame = ct![0]!.frameOfReferenceUid;
    if (structureSet.referencedFrames.length > 0 && !structureSet.referencedFrames.includes(frame)) {
      problems.push({ path: structureSet.path, reason: `the structure set ${shown(structureSet.path)} is drawn in frame of reference ${structureSet.referencedFrames[0]}, but the CT series it references is in ${frame}` });
      continue;
    }
    pairs.push({ ct: ct!, structureSet });
  }

  const cases: CaseFiles[] = [];
  const usedDoses = new Set<DoseFile>();
  for (const pair of pairs) {
    const frame = pair.ct[0]!.frameOfReferenceUid;
    const setsInFrame = pairs.filter((p) => p.ct[0]!.frameOfReferenceUid === frame);
    const belongs = (dose: DoseFile) => {
      if (dose.frameOfReferenceUid !== frame) return false;
      const plan = dose.referencedPlan ? plans.get(dose.referencedPlan) : undefined;
      if (plan?.referencedStructureSet && setsInFrame.some((p) => p.structureSet.sopInstanceUid === plan.referencedStructureSet)) {
        return plan.referencedStructureSet === pair.structureSet.sopInstanceUid;
      }
      return setsInFrame.length === 1;
    };
    const mine = doses.filter(belongs);
    const planOf = (dose: DoseFile) => (dose.referencedPlan ? plans.get(dose.referencedPlan) : undefined);
    const planLevel = mine.filter((dose) => USABLE_SUMMATIONS.has(dose.summationType));
    const beamsByPlan = new Map<string, DoseFile[]>();
    for (const dose of mine) {
      if (USABLE_SUMMATIONS.has(dose.summationType)) continue;
      usedDoses.add(dose);
      if (dose.summationType === 'BEAM' && dose.referencedPlan) {
        if (planLevel.some((p) => p.referencedPlan === dose.referencedPlan)) {
          skipped.push({ path: dose.path, reason: `${shown(dose.path)}: a beam dose of a plan whose plan dose is imported` });
        } else {
          beamsByPlan.set(dose.referencedPlan, [...(beamsByPlan.get(dose.referencedPlan) ?? []), dose]);
        }
      } else {
        problems.push({
          path: dose.path,
          reason: `the RTDOSE ${shown(dose.path)} has Dose Summation Type '${dose.summationType || '(none)'}'${dose.summationType === 'BEAM' ? ' and names no plan' : ''}: expected PLAN or MULTI_PLAN (or the BEAM doses of one plan, which are added up)`,
        });
      }
    }
    for (const dose of planLevel) {
      usedDoses.add(dose);
      cases.push({ patientId: pair.ct[0]!.patientId, ct: pair.ct, structureSet: pair.structureSet, doses: [dose], plan: planOf(dose) });
    }
    for (const [planUid, beams] of beamsByPlan) cases.push({ patientId: pair.ct[0]!.patientId, ct: pair.ct, structureSet: pair.structureSet, doses: beams, plan: plans.get(planUid) });
    if (planLevel.length === 0 && beamsByPlan.size === 0) cases.push({ patientId: pair.ct[0]!.patientId, ct: pair.ct, structureSet: pair.structureSet, doses: [], plan: undefined });
  }

  for (const dose of doses) {
    if (usedDoses.has(dose)) continue;
    const inFrame = pairs.filter((p) => p.ct[0]!.frameOfReferenceUid === dose.frameOfReferenceUid);
    problems.push({
      path: dose.path,
      reason:
        inFrame.length === 0
          ? `the RTDOSE ${shown(dose.path)} has no CT series with a structure set in its frame of reference ${dose.frameOfReferenceUid} in the folder`
          : `the RTDOSE ${shown(dose.path)} cannot be matched to one of the ${inFrame.length} structure sets of its frame of reference (its plan ${dose.referencedPlan ?? '(none named)'} ${dose.referencedPlan && plans.has(dose.referencedPlan) ? 'names none of them' : 'is not in the folder'})`,
    });
  }
  const pairedSeries = new Set(pairs.map((p) => p.ct));
  for (const [uid, series] of ctSeries) {
    if (!pairedSeries.has(series)) skipped.push({ path: series[0]!.path, reason: `CT series ${uid} (${series.length} files, e.g. ${shown(series[0]!.path)}) has no structure set in the folder` });
  }
  const usedPlans = new Set(cases.map((c) => c.plan));
  for (const plan of plans.values()) if (!usedPlans.has(plan)) skipped.push({ path: plan.path, reason: `${shown(plan.path)}: an RTPLAN that no imported dose refers to` });

  cases.sort((a, b) => caseOrder(a).localeCompare(caseOrder(b)));
  return { cases, problems, skipped };
}

function caseOrder(files: CaseFiles): string {
  return [files.patientId, files.ct[0]!.studyDate, files.ct[0]!.studyInstanceUid, files.ct[0]!.seriesInstanceUid, files.structureSet.sopInstanceUid, files.doses[0]?.sopInstanceUid ?? ''].join('\u0000');
}
