/**
 * `import openkbp`: the OpenKBP challenge's CSV patient folders (layout.ts) to format 1 case files, under the
 * head-neck site profile. A patient without one of the required files (the repository snapshot lacks some large
 * ct.csv and dose.csv blobs) is listed as incomplete and skipped; a patient with a bad file fails with one sentence
 * and the others are still imported. The challenge's train/validation/test split is kept as sub-folders and in each
 * case's metadata (`openkbp_split`).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

import { FORMAT_1, saveCase, type CaseData } from '../data/case.js';
import { invalidInput, isUserError, VmatError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { conditioningFor } from '../sites/conditioning.js';
import { channelNames, loadSiteProfile, structureMatcher } from '../sites/profile.js';
import { parseSparseMask, parseSparseValues, parseVoxelDimensions } from './csv.js';
import {
  caseIndexOf,
  caseSpacingOf,
  OPENKBP_AXES_NOTE,
  OPENKBP_CT_OFFSET,
  OPENKBP_FRACTIONS,
  OPENKBP_GRID,
  OPENKBP_PRESCRIPTION_GY,
  OPENKBP_REQUIRED_FILES,
  OPENKBP_SITE,
  OPENKBP_VOXELS,
} from './layout.js';

export interface OpenKbpPatient {
  /** the folder name, e.g. pt_1 */
  id: string;
  dir: string;
  /** train, validation or test (from the challenge's train-pats, validation-pats, test-pats), when known */
  split?: string;
}

export interface OpenKbpPatientResult extends OpenKbpPatient {
  status: 'imported' | 'incomplete' | 'failed';
  /** the case file written */
  file?: string;
  /** the structures of the case, in the profile's channel order */
  structures?: string[];
  /** CSV files that name no structure of the profile, left out */
  ignored?: string[];
  /** required files that the patient lacks (incomplete) */
  missing?: string[];
  /** the one-sentence reason (failed) */
  error?: string;
  seconds: number;
}

export interface ImportOpenKbpOptions {
  /** the output folder; a whole data set goes into its train/, validation/ and test/ sub-folders */
  out: string;
  /** replace existing case files */
  overwrite?: boolean;
  /** deflate the case files (default true) */
  compress?: boolean;
  signal?: AbortSignal;
  /** called after each patient, with its index (1-based) and the number of patients */
  onPatient?: (result: OpenKbpPatientResult, index: number, of: number) => void;
}

export interface OpenKbpImportResult {
  out: string;
  patients: OpenKbpPatientResult[];
  imported: number;
  incomplete: number;
  failed: number;
  seconds: number;
  /** the listing written beside the cases (openkbp_import.json) */
  listing: string;
}

const SPLIT_ORDER = ['train', 'validation', 'test'];
export const OPENKBP_LISTING = 'openkbp_import.json';

const byNaturalName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

/** Sub-folders by name, following symbolic links (a hand-picked set of patients may be links to them). */
function subfolders(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => !entry.name.startsWith('.') && (entry.isDirectory() || (entry.isSymbolicLink() && statSync(join(dir, entry.name), { throwIfNoEntry: false })?.isDirectory())))
    .map((entry) => entry.name)
    .sort(byNaturalName);
}

function isPatientFolder(dir: string): boolean {
  return /^pt_\d+$/i.test(basename(dir)) || OPENKBP_REQUIRED_FILES.some((file) => existsSync(join(dir, file)));
}

/** train-pats → train; another folder keeps its name. */
function splitName(folder: string): string {
  return folder.replace(/-pats$/i, '');
}

/**
 * The patient folders under `src`: a patient folder itself, a folder of them (a split, e.g. train-pats), a folder
 * of splits, or the open-kbp repository (its provided-data folder). `layout` says whether the cases go into split
 * sub-folders.
 */
export function findOpenKbpPatients(src: string): { patients: OpenKbpPatient[]; layout: 'splits' | 'flat' } {
  const root = resolve(src);
  if (!existsSync(root)) throw invalidInput(`the OpenKBP source ${src} does not exist: expected a folder of OpenKBP patients`);
  if (!statSync(root).isDirectory()) throw invalidInput(`the OpenKBP source ${src} is a file: expected a folder of OpenKBP patients (pt_* folders of CSV files)`);
  if (isPatientFolder(root)) return { patients: [{ id: basename(root), dir: root }], layout: 'flat' };
  const children = subfolders(root);
  const patientsIn = (dir: string, split?: string): OpenKbpPatient[] =>
    subfolders(dir)
      .map((name) => join(dir, name))
      .filter(isPatientFolder)
      .map((patientDir) => ({ id: basename(patientDir), dir: patientDir, ...(split ? { split } : {}) }));
  const direct = patientsIn(root, /-pats$/i.test(basename(root)) ? splitName(basename(root)) : undefined);
  if (direct.length > 0) return { patients: direct, layout: 'flat' };
  if (children.includes('provided-data')) return findOpenKbpPatients(join(root, 'provided-data'));
  const splits = children
    .map((name) => ({ split: splitName(name), patients: patientsIn(join(root, name), splitName(name)) }))
    .filter((entry) => entry.patients.length > 0)
    .sort((a, b) => {
      const rank = (split: string) => (SPLIT_ORDER.includes(split) ? SPLIT_ORDER.indexOf(split) : SPLIT_ORDER.length);
      return rank(a.split) - rank(b.split) || byNaturalName(a.split, b.split);
    });
  if (splits.length === 0) {
    throw invalidInput(
      `${src} holds no OpenKBP patients: expected pt_* folders of CSV files (ct.csv, dose.csv, possible_dose_mask.csv, voxel_dimensions.csv, structures), a folder of them such as train-pats, or the open-kbp repository`,
    );
  }
  return { patients: splits.flatMap((entry) => entry.patients), layout: 'splits' };
}

/** The required files a patient folder lacks. */
export function missingOpenKbpFiles(dir: string): string[] {
  return OPENKBP_REQUIRED_FILES.filter((file) => !existsSync(join(dir, file)));
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'latin1');
  } catch (error) {
    throw invalidInput(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** A sparse OpenKBP volume scattered onto the case grid. */
function scatter<T extends Float32Array | Int16Array | Uint8Array>(target: T, indices: Int32Array, value: (n: number) => number): T {
  for (let n = 0; n < indices.length; n++) target[caseIndexOf(indices[n]!)] = value(n);
  return target;
}

export interface ReadOpenKbpOptions {
  id?: string;
  split?: string;
}

/**
 * One OpenKBP patient folder as a format 1 case (not yet written): [z, y, x] on the 128³ grid, CT in HU, dose in
 * Gy, the possible-dose mask as the body, the structures under the head-neck profile's names, and the
 * conditioning vector of the plan's achieved values.
 */
export async function readOpenKbpPatient(dir: string, options: ReadOpenKbpOptions = {}): Promise<{ data: CaseData; ignored: string[] }> {
  const id = options.id ?? basename(resolve(dir));
  const missing = missingOpenKbpFiles(dir);
  if (missing.length > 0) throw invalidInput(`the OpenKBP patient ${dir} is incomplete: it has no ${missing.join(', ')}`);
  const at = (file: string) => join(dir, file);
  const spacingMm = caseSpacingOf(parseVoxelDimensions(await readText(at('voxel_dimensions.csv')), at('voxel_dimensions.csv')));

  const body = scatter(new Uint8Array(OPENKBP_VOXELS), parseSparseMask(await readText(at('possible_dose_mask.csv')), at('possible_dose_mask.csv')), () => 1);
  const dose = parseSparseValues(await readText(at('dose.csv')), at('dose.csv'), (gy) => (gy < 0 ? 'expected a dose ≥ 0 Gy' : undefined));
  const ctValues = parseSparseValues(await readText(at('ct.csv')), at('ct.csv'));
  // Whole HU within int16 (all of OpenKBP: the values are integers up to 32743) are kept as int16, anything else as float32.
  const integral = ctValues.values.every((v) => Number.isInteger(v) && v - OPENKBP_CT_OFFSET >= -32768 && v - OPENKBP_CT_OFFSET <= 32767);
  const ct = (integral ? new Int16Array(OPENKBP_VOXELS) : new Float32Array(OPENKBP_VOXELS)).fill(-OPENKBP_CT_OFFSET);
  scatter(ct, ctValues.indices, (n) => ctValues.values[n]! - OPENKBP_CT_OFFSET);

  const profile = loadSiteProfile(OPENKBP_SITE);
  const match = structureMatcher(profile);
  const files = new Map<string, string>();
  const ignored: string[] = [];
  const required = new Set<string>(OPENKBP_REQUIRED_FILES);
  for (const file of readdirSync(dir).filter((name) => name.toLowerCase().endsWith('.csv') && !required.has(name)).sort(byNaturalName)) {
    const channel = match(file.slice(0, -'.csv'.length));
    if (channel === null || channel === 'body') {
      ignored.push(file);
      continue;
    }
    const previous = files.get(channel);
    if (previous) throw invalidInput(`${dir} has both ${previous} and ${file}, which name the same structure ${channel}: expected one file per structure`);
    files.set(channel, file);
  }
  const structures = channelNames(profile).filter((name) => files.has(name));
  const masks = new Uint8Array(structures.length * OPENKBP_VOXELS);
  for (const [s, name] of structures.entries()) {
    const file = at(files.get(name)!);
    scatter(masks.subarray(s * OPENKBP_VOXELS, (s + 1) * OPENKBP_VOXELS), parseSparseMask(await readText(file), file), () => 1);
  }

  const data: CaseData = {
    caseId: id,
    format: FORMAT_1,
    shape: [OPENKBP_GRID, OPENKBP_GRID, OPENKBP_GRID],
    spacingMm,
    ct,
    dose: scatter(new Float32Array(OPENKBP_VOXELS), dose.indices, (n) => dose.values[n]!),
    masks,
    structures,
    constraints: new Float32Array(0),
    body,
    metadata: {
      source: 'openkbp',
      patient_id: id,
      ...(options.split ? { openkbp_split: options.split } : {}),
      site: OPENKBP_SITE,
      prescription_gy: { ...OPENKBP_PRESCRIPTION_GY },
      fractions: OPENKBP_FRACTIONS,
      openkbp_axes: OPENKBP_AXES_NOTE,
    },
  };
  const conditioning = conditioningFor(profile, data);
  data.constraints = conditioning.vector;
  data.metadata.constraints_mode = conditioning.mode;
  return { data, ignored };
}

/** Converts every OpenKBP patient under `src` into case files under `options.out`. */
export async function importOpenKbp(src: string, options: ImportOpenKbpOptions): Promise<OpenKbpImportResult> {
  if (typeof options?.out !== 'string' || options.out === '') throw invalidInput('importOpenKbp needs out: the folder to write the case files into');
  const started = Date.now();
  const out = resolve(options.out);
  const { patients, layout } = findOpenKbpPatients(src);
  const fileOf = (patient: OpenKbpPatient) => (layout === 'splits' && patient.split ? join(out, patient.split, `${patient.id}.npz`) : join(out, `${patient.id}.npz`));
  const seen = new Map<string, string>();
  for (const patient of patients) {
    const other = seen.get(fileOf(patient));
    if (other) throw invalidInput(`the OpenKBP patients ${other} and ${patient.dir} would both be written to ${fileOf(patient)}: expected distinct patient folder names`);
    seen.set(fileOf(patient), patient.dir);
  }
  const listing = join(out, OPENKBP_LISTING);
  if (!options.overwrite) {
    const existing = [...patients.map(fileOf), listing].filter((file) => existsSync(file));
    if (existing.length > 0) {
      throw invalidInput(`${existing[0]} already exists${existing.length > 1 ? ` (and ${existing.length - 1} more)` : ''}: choose another output folder, or set overwrite (--overwrite) to replace them`);
    }
  }

  const results: OpenKbpPatientResult[] = [];
  for (const [n, patient] of patients.entries()) {
    if (options.signal?.aborted) throw new VmatError('VMAT_CANCELLED', 'the OpenKBP import was cancelled');
    const patientStarted = Date.now();
    const seconds = () => (Date.now() - patientStarted) / 1000;
    const missing = missingOpenKbpFiles(patient.dir);
    let result: OpenKbpPatientResult;
    if (missing.length > 0) {
      result = { ...patient, status: 'incomplete', missing, seconds: seconds() };
    } else {
      try {
        const { data, ignored } = await readOpenKbpPatient(patient.dir, patient);
        const file = fileOf(patient);
        await mkdir(dirname(file), { recursive: true });
        await saveCase(file, data, { overwrite: options.overwrite, compress: options.compress });
        result = { ...patient, status: 'imported', file, structures: data.structures, ...(ignored.length ? { ignored } : {}), seconds: seconds() };
      } catch (error) {
        if (!isUserError(error)) throw error;
        result = { ...patient, status: 'failed', error: error.message, seconds: seconds() };
      }
    }
    results.push(result);
    options.onPatient?.(result, n + 1, patients.length);
  }

  const count = (status: OpenKbpPatientResult['status']) => results.filter((r) => r.status === status).length;
  const summary: OpenKbpImportResult = {
    out,
    patients: results,
    imported: count('imported'),
    incomplete: count('incomplete'),
    failed: count('failed'),
    seconds: (Date.now() - started) / 1000,
    listing,
  };
  await mkdir(out, { recursive: true });
  const listed = {
    source: resolve(src),
    site: OPENKBP_SITE,
    imported: summary.imported,
    incomplete: summary.incomplete,
    failed: summary.failed,
    patients: results.map(({ seconds: _seconds, file, ...rest }) => ({ ...rest, ...(file ? { file: file.slice(out.length + 1) } : {}) })),
  };
  await writeFileAtomic(listing, `${JSON.stringify(listed, null, 2)}\n`, { overwrite: true });
  return summary;
}
