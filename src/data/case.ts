/**
 * Case files (data.md): format 1 (`vmat-native-1`) and the predecessor's versions 2.2, 2.3 and 2.4, loaded into one
 * in-memory shape ([Z,Y,X], HU, Gy) and checked fully on the way in. `saveCase` always writes format 1.
 */
import { basename } from 'node:path';

import { invalidInput } from '../errors.js';
import { readNpz } from './npz.js';
import { writeNpz } from './npz.js';
import type { NpyArray, WritableNpyArray } from './npy.js';
import { dicomFileMessage, isDicomFile } from './foreign.js';
import { unpickle } from './pickle.js';
import { CANONICAL_STRUCTURES, sameStructurePair, structureNameProblem } from './structures.js';
import { loadSiteProfile, shippedSites } from '../sites/profile.js';

export interface CaseData {
  caseId: string;
  /** "vmat-native-1" | "predecessor-2.2" | "predecessor-2.3" | "predecessor-2.4" */
  format: string;
  /** [z, y, x] */
  shape: [number, number, number];
  /** (z, y, x) in mm */
  spacingMm: [number, number, number];
  /** Patient position (mm; DICOM patient axes in the order z, y, x) of voxel [0,0,0]'s centre; absent: unknown */
  originMm?: [number, number, number];
  /** [3,3] row-major: row a is array axis a's unit vector in patient (z, y, x) components; absent: the identity */
  direction?: number[];
  /** HU, [Z,Y,X] C order */
  ct: Int16Array | Float32Array;
  /** Gy, [Z,Y,X] */
  dose?: Float32Array;
  /** [S,Z,Y,X], 0/1, in the order of `structures` */
  masks: Uint8Array;
  structures: string[];
  /** the 13-slot constraint vector (data.md) */
  constraints: Float32Array;
  /** [Z,Y,X] 0/1 body mask */
  body?: Uint8Array;
  /** [S,Z,Y,X] cached signed distance channels (negative inside, ÷50, empty structure → 0) */
  masksSdf?: Float32Array;
  /** metadata_json (format 1) or the unpickled dict (predecessor) */
  metadata: Record<string, unknown>;
}

export interface LoadCaseOptions {
  /** (z, y, x) mm, used where the file holds no spacing (some predecessor files). */
  spacingMm?: [number, number, number];
}

export interface SaveCaseOptions {
  overwrite?: boolean;
  /** deflate the entries (default true) */
  compress?: boolean;
  /** zlib level of the deflated entries (default 6; 1 is several times faster on large masks, files a few % larger) */
  compressionLevel?: number;
}

/** One problem of one file, as a full sentence naming the file, the key, what was expected and what was found. */
export interface CaseProblem {
  file: string;
  key: string;
  message: string;
  /** the settings the message names (e.g. spacingMm), for the CLI to add their flags */
  settings?: string[];
}

export const FORMAT_1 = 'vmat-native-1';
/** Voxel spacings outside this range (mm) are not a patient's: 1e300 would overflow every volume, 1e-300 vanish. */
export const SPACING_RANGE_MM: readonly [number, number] = [0.001, 100];
/** metadata_json nested deeper than this is refused (whoever writes it out again would overflow the stack). */
const MAX_METADATA_DEPTH = 64;

/** Why `values` is not a voxel spacing (3 finite millimetre values within SPACING_RANGE_MM), or undefined. */
export function spacingProblem(values: readonly unknown[]): string | undefined {
  const [low, high] = SPACING_RANGE_MM;
  if (values.length === 3 && values.every((value) => typeof value === 'number' && value >= low && value <= high)) return undefined;
  return `expected 3 millimetre values from ${low} to ${high}, found [${values.join(', ')}]`;
}
const CONSTRAINT_SLOTS = 13;
const FORMAT_1_KEYS = ['ct', 'dose', 'masks', 'structures', 'spacing_mm', 'origin_mm', 'direction', 'constraints', 'body', 'masks_sdf', 'metadata_json'];
const PREDECESSOR_KEYS = ['ct', 'dose', 'masks', 'masks_sdf', 'constraints', 'metadata'];

/** Loads and checks a case file; throws VMAT_INVALID_INPUT naming the first problem. */
export async function loadCase(path: string, options: LoadCaseOptions = {}): Promise<CaseData> {
  const { data, problems } = await readCase(path, options);
  if (problems.length > 0) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''}; \`vmat-native validate\` lists them all)` : '';
    throw invalidInput(`${problems[0]!.message}${more}`, { settings: problems[0]!.settings });
  }
  return data!;
}

/** Every problem of a case file (empty when it loads). */
export async function checkCase(path: string, options: LoadCaseOptions = {}): Promise<CaseProblem[]> {
  return (await readCase(path, options)).problems;
}

async function readCase(path: string, options: LoadCaseOptions): Promise<{ data?: CaseData; problems: CaseProblem[] }> {
  let arrays: Map<string, NpyArray>;
  try {
    arrays = await readNpz(path, { keys: [...new Set([...FORMAT_1_KEYS, ...PREDECESSOR_KEYS])] });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ENOENT') throw invalidInput(`${path} does not exist: expected a case file (.npz)`);
    if (code === 'VMAT_INVALID_INPUT') return { problems: [{ file: path, key: '', message: isDicomFile(path) ? dicomFileMessage(path) : (error as Error).message }] };
    if (code && /^E[A-Z]+$/.test(code)) return { problems: [{ file: path, key: '', message: `${path} cannot be read: ${(error as Error).message}` }] };
    throw error;
  }
  const checker = new Checker(path, arrays);
  const data = arrays.has('metadata') ? readPredecessor(checker, options) : readFormat1(checker, options);
  return checker.problems.length > 0 ? { problems: checker.problems } : { data, problems: [] };
}

type Numeric = Extract<NpyArray, { data: unknown }> & { dtype: Exclude<NpyArray['dtype'], 'str' | 'object'> };

/** Collects problems instead of stopping at the first, so that `validate` can list them all. */
class Checker {
  readonly problems: CaseProblem[] = [];
  constructor(
    readonly file: string,
    readonly arrays: Map<string, NpyArray>,
  ) {}

  report(key: string, what: string, expected: string, found: string, settings?: string[]): undefined {
    this.problems.push({ file: this.file, key, message: `${this.file}: '${key}' ${what}: expected ${expected}, found ${found}`, ...(settings && { settings }) });
    return undefined;
  }

  /** A numeric array of one of `dtypes` whose shape matches `shape` (-1 = any size); undefined after a problem. */
  numeric(key: string, dtypes: string[], shape: number[] | undefined, shapeText: string, required = true): Numeric | undefined {
    const array = this.arrays.get(key);
    if (!array) return required ? this.report(key, 'is missing', `an array of ${dtypes.join(' or ')} ${shapeText}`, 'no such key') : undefined;
    if (!dtypes.includes(array.dtype)) return this.report(key, 'has the wrong dtype', dtypes.join(' or '), describeDtype(array));
    if (shape && (array.shape.length !== shape.length || array.shape.some((size, i) => shape[i]! >= 0 && size !== shape[i]))) {
      return this.report(key, 'has the wrong shape', shapeText, `[${array.shape.join(',')}]`);
    }
    return array as Numeric;
  }

  /** A volume with at least one voxel along every axis (a [0,32,32] volume holds no patient). */
  nonEmpty<T extends Numeric>(key: string, array: T | undefined): T | undefined {
    if (array && array.shape.some((size) => size === 0)) return this.report(key, 'has an empty axis', 'at least 1 voxel along each axis', `[${array.shape.join(',')}]`);
    return array;
  }

  /** Structure names that are text (structureNameProblem) and name each structure once. */
  structureNames(key: string, names: string[]): string[] | undefined {
    for (const [index, name] of names.entries()) {
      const problem = structureNameProblem(name);
      if (problem) return this.report(key, `holds an unusable structure name at index ${index}`, 'printable names of 1 to 128 characters', problem);
    }
    const pair = sameStructurePair(names);
    if (pair) {
      const same = names[pair[0]] === names[pair[1]] ? 'the same name' : "names that differ only in case, spaces, '_' or '-'";
      return this.report(key, 'names one structure twice', 'each structure once (rename or merge them)', `'${names[pair[0]]}' (index ${pair[0]}) and '${names[pair[1]]}' (index ${pair[1]}), ${same}`);
    }
    return names;
  }

  finite(key: string, data: ArrayLike<number>, nonNegative = false): boolean {
    const at = data instanceof Float32Array ? firstNonFiniteFloat32(data) : firstNonFinite(data);
    if (at >= 0) {
      this.report(key, 'holds a value that is not finite', 'finite numbers', `${data[at]} at flat index ${at}`);
      return false;
    }
    if (nonNegative) {
      for (let i = 0; i < data.length; i++) {
        if (data[i]! < 0) {
          this.report(key, 'holds a negative dose', 'doses ≥ 0 Gy', `${data[i]} at flat index ${i}`);
          return false;
        }
      }
    }
    return true;
  }

  binary(key: string, data: Uint8Array): boolean {
    // Four voxels at a time where aligned: any byte above 1 has a bit of 0xFE set.
    let start = 0;
    if (data.byteOffset % 4 === 0) {
      const words = new Uint32Array(data.buffer, data.byteOffset, data.length >> 2);
      let w = 0;
      while (w < words.length && (words[w]! & 0xfefefefe) === 0) w++;
      start = w * 4;
    }
    for (let i = start; i < data.length; i++) {
      if (data[i]! > 1) {
        this.report(key, 'is not a 0/1 mask', 'values 0 or 1', `${data[i]} at flat index ${i}`);
        return false;
      }
    }
    return true;
  }

  spacing(key: string, values: number[] | undefined, fallback: [number, number, number] | undefined, what: string): [number, number, number] | undefined {
    if (!values) {
      if (fallback) return this.spacing('spacingMm', fallback, undefined, what);
      return this.report(key, 'is missing', `${what}, or the spacingMm setting (z,y,x) to supply it`, 'no spacing in the file', ['spacingMm']);
    }
    if (spacingProblem(values)) {
      const [low, high] = SPACING_RANGE_MM;
      return this.report(key, 'is not a valid voxel spacing', `3 millimetre values from ${low} to ${high}`, `[${values.join(', ')}]`);
    }
    return values as [number, number, number];
  }
}

/** Index of the first NaN or ±Infinity, or -1: the exponent bits of a float32 are all ones only for those. */
function firstNonFiniteFloat32(data: Float32Array): number {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0x7f800000) === 0x7f800000) return i;
  return -1;
}

function firstNonFinite(data: ArrayLike<number>): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return i;
  return -1;
}

function describeDtype(array: NpyArray): string {
  return array.dtype === 'str' ? 'unicode strings' : array.dtype === 'object' ? 'pickled objects' : array.dtype;
}

/**
 * The length of a format 1 case's constraint vector: the 13 slots of data.md, or, when its metadata names a shipped
 * site profile (`site`), that profile's conditioning vector; undefined (any length) for a site of the user's own.
 */
function constraintSlotsOf(metadata: Record<string, unknown>): number | undefined {
  const site = metadata.site;
  if (site === undefined) return CONSTRAINT_SLOTS;
  return typeof site === 'string' && shippedSites().includes(site) ? loadSiteProfile(site).conditioning.length : undefined;
}

/** How deeply a parsed JSON value nests, walked without recursion (it may nest deeper than the stack allows). */
function depthOf(value: unknown): number {
  let deepest = 0;
  const pending: [unknown, number][] = [[value, 1]];
  while (pending.length > 0) {
    const [item, depth] = pending.pop()!;
    if (item === null || typeof item !== 'object') continue;
    deepest = Math.max(deepest, depth);
    if (deepest > MAX_METADATA_DEPTH) return deepest;
    for (const child of Object.values(item)) pending.push([child, depth + 1]);
  }
  return deepest;
}

function caseIdFromPath(path: string): string {
  return basename(path).replace(/\.npz$/i, '');
}

function readFormat1(checker: Checker, options: LoadCaseOptions): CaseData | undefined {
  const ct = checker.nonEmpty('ct', checker.numeric('ct', ['int16', 'float32'], [-1, -1, -1], '[Z,Y,X]'));
  const shape = ct ? (ct.shape as [number, number, number]) : undefined;
  const grid = shape ?? [-1, -1, -1];
  const gridText = shape ? `[${shape.join(',')}] (the CT grid)` : '[Z,Y,X]';
  if (ct?.dtype === 'float32') checker.finite('ct', ct.data as Float32Array);

  const dose = checker.numeric('dose', ['float32'], grid, gridText, false);
  if (dose) checker.finite('dose', dose.data as Float32Array, true);

  const masks = checker.numeric('masks', ['uint8', 'bool'], [-1, ...grid], shape ? `[S,${shape.join(',')}] (S structures on the CT grid)` : '[S,Z,Y,X]');
  if (masks) checker.binary('masks', masks.data as Uint8Array);
  const structureCount = masks?.shape[0];

  const structures = checker.arrays.get('structures');
  let names: string[] | undefined;
  if (!structures) checker.report('structures', 'is missing', 'unicode names [S]', 'no such key');
  else if (structures.dtype !== 'str' || structures.shape.length !== 1) checker.report('structures', 'has the wrong type', 'unicode names [S]', `${describeDtype(structures)} [${structures.shape.join(',')}]`);
  else if (structureCount !== undefined && structures.data.length !== structureCount) checker.report('structures', 'does not match masks', `${structureCount} names (one per mask)`, `${structures.data.length}`);
  else names = checker.structureNames('structures', structures.data);

  const spacingArray = checker.numeric('spacing_mm', ['float64', 'float32', 'int64', 'int32'], [3], '[3] (z,y,x)', !options.spacingMm);
  const spacing = checker.spacing('spacing_mm', spacingArray ? Array.from(spacingArray.data as ArrayLike<number>, Number) : undefined, options.spacingMm, 'spacing_mm (z,y,x) in mm');

  const placement = readPlacement(checker);

  // Its length ([13], or the conditioning vector of the site the metadata names) is checked below, with the metadata.
  const constraintsArray = checker.numeric('constraints', ['float32', 'float64'], [-1], `[${CONSTRAINT_SLOTS}]`);
  const constraints = constraintsArray ? Float32Array.from(constraintsArray.data as ArrayLike<number>) : undefined;
  if (constraints) checker.finite('constraints', constraints);

  const body = checker.numeric('body', ['uint8', 'bool'], grid, gridText, false);
  if (body) checker.binary('body', body.data as Uint8Array);
  // The masks_sdf cache is checked where it is used (buildModelInput), which recomputes the maps if it is invalid.
  const masksSdf = checker.numeric('masks_sdf', ['float16', 'float32'], masks ? masks.shape : [-1, ...grid], '[S,Z,Y,X] like masks', false);

  let metadata: Record<string, unknown> = {};
  const metadataJson = checker.arrays.get('metadata_json');
  if (metadataJson) {
    if (metadataJson.dtype !== 'str' || metadataJson.shape.length !== 0) {
      checker.report('metadata_json', 'has the wrong type', 'a 0-d unicode string holding a JSON object', `${describeDtype(metadataJson)} [${metadataJson.shape.join(',')}]`);
    } else {
      try {
        const parsed: unknown = JSON.parse(metadataJson.data[0]!);
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) checker.report('metadata_json', 'is not a JSON object', 'a JSON object', String(JSON.stringify(parsed)).slice(0, 40));
        else if (depthOf(parsed) > MAX_METADATA_DEPTH) checker.report('metadata_json', 'is nested too deeply', `at most ${MAX_METADATA_DEPTH} levels`, 'more');
        else metadata = parsed as Record<string, unknown>;
      } catch (error) {
        checker.report('metadata_json', 'is not valid JSON', 'a JSON object', (error as Error).message);
      }
    }
  }
  const slots = constraintSlotsOf(metadata);
  if (constraints && (slots === undefined ? constraints.length === 0 : constraints.length !== slots)) {
    checker.report('constraints', 'has the wrong shape', slots === undefined ? '[C] with C ≥ 1' : `[${slots}]${metadata.site === undefined ? '' : ` (the conditioning vector of the site ${String(metadata.site)})`}`, `[${constraints.length}]`);
  }
  if (checker.problems.length > 0 || !ct || !masks || !names || !spacing || !constraints) return undefined;
  return {
    caseId: typeof metadata.case_id === 'string' ? metadata.case_id : caseIdFromPath(checker.file),
    format: FORMAT_1,
    shape: shape!,
    spacingMm: spacing,
    ...placement,
    ct: ct.data as Int16Array | Float32Array,
    dose: dose?.data as Float32Array | undefined,
    masks: masks.data as Uint8Array,
    structures: names,
    constraints,
    body: body?.data as Uint8Array | undefined,
    masksSdf: masksSdf?.data as Float32Array | undefined,
    metadata,
  };
}

/** The optional patient placement of a format 1 grid: origin_mm [3] and direction [3,3] (orthonormal rows). */
function readPlacement(checker: Checker): Pick<CaseData, 'originMm' | 'direction'> {
  const origin = checker.numeric('origin_mm', ['float64', 'float32'], [3], '[3] (z,y,x) in mm', false);
  const direction = checker.numeric('direction', ['float64', 'float32'], [3, 3], '[3,3] (rows: the axes z, y, x)', false);
  const originMm = origin ? (Array.from(origin.data as ArrayLike<number>, Number) as [number, number, number]) : undefined;
  const rows = direction ? Array.from(direction.data as ArrayLike<number>, Number) : undefined;
  if (originMm && !checker.finite('origin_mm', originMm)) return {};
  if (rows) {
    if (!checker.finite('direction', rows)) return {};
    const problem = orthonormalProblem(rows);
    if (problem) {
      checker.report('direction', 'is not a rotation', 'rows of unit length at right angles (to 1e-3)', problem);
      return {};
    }
  }
  return { ...(originMm ? { originMm } : {}), ...(rows ? { direction: rows } : {}) };
}

/** Why 9 row-major values are not an orthonormal [3,3] matrix, or undefined when they are. */
function orthonormalProblem(rows: readonly number[]): string | undefined {
  for (let a = 0; a < 3; a++) {
    for (let b = a; b < 3; b++) {
      const product = rows[a * 3]! * rows[b * 3]! + rows[a * 3 + 1]! * rows[b * 3 + 1]! + rows[a * 3 + 2]! * rows[b * 3 + 2]!;
      if (Math.abs(product - (a === b ? 1 : 0)) > 1e-3) return a === b ? `row ${a} of length ${Math.sqrt(product).toFixed(4)}` : `rows ${a} and ${b} with dot product ${product.toFixed(4)}`;
    }
  }
  return undefined;
}

/** `[..., Y, X, Z]` → `[..., Z, Y, X]`, with `map` applied to each value, into a new array of the same kind. */
function fromYXZ<T extends Float32Array | Uint8Array>(source: T, channels: number, y: number, x: number, z: number, map?: (value: number) => number): T {
  const out = new (source.constructor as new (n: number) => T)(source.length);
  const plane = y * x;
  const volume = plane * z;
  for (let c = 0; c < channels; c++) {
    const base = c * volume;
    let from = base;
    for (let yi = 0; yi < y; yi++) {
      for (let xi = 0; xi < x; xi++) {
        let to = base + yi * x + xi;
        if (map) for (let zi = 0; zi < z; zi++, to += plane) out[to] = map(source[from++]!);
        else for (let zi = 0; zi < z; zi++, to += plane) out[to] = source[from++]!;
      }
    }
  }
  return out;
}

const PREDECESSOR_VERSIONS = ['2.2', '2.3', '2.4'];

function readPredecessor(checker: Checker, options: LoadCaseOptions): CaseData | undefined {
  const metadataArray = checker.arrays.get('metadata')!;
  let metadata: Record<string, unknown> | undefined;
  if (metadataArray.dtype !== 'object') {
    checker.report('metadata', 'has the wrong type', 'a pickled dict (0-d object array)', describeDtype(metadataArray));
  } else {
    try {
      // A 0-d object array unpickles to its one item, the dict.
      const item = unpickle(metadataArray.pickle, `'metadata' in ${checker.file}`);
      if (item === null || typeof item !== 'object' || Array.isArray(item) || item instanceof Uint8Array) {
        checker.report('metadata', 'is not a dict', 'a pickled dict', Array.isArray(item) ? 'a list' : typeof item);
      } else {
        metadata = item as Record<string, unknown>;
      }
    } catch (error) {
      checker.problems.push({ file: checker.file, key: 'metadata', message: (error as Error).message });
    }
  }
  if (!metadata) return undefined;

  const ct = checker.nonEmpty('ct', checker.numeric('ct', ['float32'], [-1, -1, -1], '[Y,X,Z] (predecessor axis order)'));
  const dims = ct ? (ct.shape as [number, number, number]) : undefined; // [Y, X, Z]
  const grid = dims ?? [-1, -1, -1];
  const gridText = dims ? `[${dims.join(',')}] (the CT grid, [Y,X,Z])` : '[Y,X,Z]';
  if (ct) checker.finite('ct', ct.data as Float32Array);
  const dose = checker.numeric('dose', ['float32'], grid, gridText, false);
  if (dose) checker.finite('dose', dose.data as Float32Array, true);
  const masks = checker.numeric('masks', ['uint8', 'bool'], [-1, ...grid], dims ? `[S,${dims.join(',')}] ([S,Y,X,Z] on the CT grid)` : '[S,Y,X,Z]');
  if (masks) checker.binary('masks', masks.data as Uint8Array);
  // v2.4 keeps 8 distance channels beside its 9 masks: a cache of fewer channels than masks is accepted, not used.
  const masksSdf = checker.numeric('masks_sdf', ['float32', 'float16'], [-1, ...grid], '[S,Y,X,Z] like masks', false);
  if (masksSdf && masks && masksSdf.shape[0]! > masks.shape[0]!) {
    checker.report('masks_sdf', 'has more channels than masks', `at most ${masks.shape[0]} channels`, `${masksSdf.shape[0]}`);
  }
  const constraintsArray = checker.numeric('constraints', ['float32', 'float64'], [CONSTRAINT_SLOTS], `[${CONSTRAINT_SLOTS}]`);

  const channels = masks?.shape[0];
  const declared = String(metadata.script_version ?? '');
  const version =
    PREDECESSOR_VERSIONS.find((v) => declared === v || declared.startsWith(`${v}.`)) ??
    (channels === 9 ? '2.4' : metadata.voxel_spacing_mm !== undefined ? '2.3' : '2.2');
  let names: string[] | undefined;
  const listed = metadata.structure_channels;
  if (Array.isArray(listed) && listed.every((name) => typeof name === 'string') && listed.length === channels) names = checker.structureNames('metadata.structure_channels', listed as string[]);
  else if (channels === 8 || (channels === 9 && version === '2.4')) names = channels === 9 ? [...CANONICAL_STRUCTURES, 'PTV50.4'] : [...CANONICAL_STRUCTURES];
  else if (channels !== undefined) checker.report('masks', 'has an unexpected number of structure channels', `8 (9 with PTV50.4 in v2.4) or metadata.structure_channels naming each`, `${channels}`);

  // Spacing is stored (y, x, z) like the arrays.
  const stored = metadata.voxel_spacing_mm ?? metadata.target_spacing_mm;
  const storedKey = metadata.voxel_spacing_mm !== undefined ? 'metadata.voxel_spacing_mm' : 'metadata.target_spacing_mm';
  let spacing: [number, number, number] | undefined;
  if (stored === undefined || stored === null) {
    spacing = checker.spacing('metadata.voxel_spacing_mm', undefined, options.spacingMm, 'the voxel spacing (y,x,z) in metadata.voxel_spacing_mm or metadata.target_spacing_mm');
  } else if (!Array.isArray(stored) || stored.length !== 3) {
    checker.report(storedKey, 'is not a voxel spacing', '3 positive values (y,x,z) in mm', JSON.stringify(stored));
  } else {
    const yxz = checker.spacing(storedKey, stored.map(Number), undefined, '3 values (y,x,z)');
    if (yxz) spacing = [yxz[2], yxz[0], yxz[1]];
  }
  const normalisation = metadata.normalization_dose_gy === undefined ? 70 : Number(metadata.normalization_dose_gy);
  if (!(normalisation > 0 && Number.isFinite(normalisation))) {
    checker.report('metadata.normalization_dose_gy', 'is not a valid dose', 'a positive number of Gy', String(metadata.normalization_dose_gy));
  }

  if (checker.problems.length > 0 || !ct || !dims || !masks || !names || !spacing || !constraintsArray) return undefined;
  const [y, x, z] = dims;
  const sdf = masksSdf && masksSdf.shape[0] === channels ? fromYXZ(masksSdf.data as Float32Array, channels!, y, x, z) : undefined;
  const maskData = fromYXZ(masks.data as Uint8Array, channels!, y, x, z);
  if (sdf) {
    // v2.2 wrote +1 for an empty structure; the convention here (data.md) is 0.
    const volume = x * y * z;
    for (let c = 0; c < channels!; c++) {
      if (!maskData.subarray(c * volume, (c + 1) * volume).some((v) => v !== 0)) sdf.fill(0, c * volume, (c + 1) * volume);
    }
  }
  return {
    caseId: typeof metadata.case_id === 'string' ? metadata.case_id : caseIdFromPath(checker.file),
    format: `predecessor-${version}`,
    shape: [z, y, x],
    spacingMm: spacing,
    ct: fromYXZ(ct.data as Float32Array, 1, y, x, z, (value) => (value - 0.5) * 4000),
    dose: dose ? fromYXZ(dose.data as Float32Array, 1, y, x, z, (value) => value * normalisation) : undefined,
    masks: maskData,
    structures: names,
    constraints: Float32Array.from(constraintsArray.data as ArrayLike<number>),
    masksSdf: sdf,
    metadata,
  };
}

/** Writes `data` as a format 1 case file (atomically; an existing file only with `overwrite`). */
export async function saveCase(path: string, data: CaseData, options: SaveCaseOptions = {}): Promise<void> {
  const [z, y, x] = data.shape;
  const voxels = z * y * x;
  const structures = data.structures.length;
  const check = (ok: boolean, key: string, expected: string, found: string) => {
    if (!ok) throw invalidInput(`cannot save ${path}: ${key} must be ${expected}, found ${found}`);
  };
  check(data.shape.every((size) => Number.isInteger(size) && size > 0), 'shape', '3 positive integers [z,y,x]', `[${data.shape.join(',')}]`);
  check(!spacingProblem(data.spacingMm), 'spacingMm', `3 millimetre values from ${SPACING_RANGE_MM[0]} to ${SPACING_RANGE_MM[1]}`, `[${data.spacingMm.join(',')}]`);
  check(data.ct.length === voxels, 'ct', `${voxels} values ([${data.shape.join(',')}])`, `${data.ct.length}`);
  check(data.masks.length === structures * voxels, 'masks', `${structures * voxels} values (${structures} structures × [${data.shape.join(',')}])`, `${data.masks.length}`);
  const slots = constraintSlotsOf(data.metadata);
  check(slots === undefined ? data.constraints.length > 0 : data.constraints.length === slots, 'constraints', slots === undefined ? 'at least 1 value' : `${slots} values`, `${data.constraints.length}`);
  const badName = data.structures.map(structureNameProblem).findIndex((problem) => problem !== undefined);
  check(badName < 0, `structures[${badName}]`, 'a printable name of 1 to 128 characters', `${structureNameProblem(data.structures[badName] ?? '')}`);
  const pair = sameStructurePair(data.structures);
  check(!pair, 'structures', 'each structure once', pair ? `'${data.structures[pair[0]]}' and '${data.structures[pair[1]]}'` : '');
  if (data.dose) check(data.dose.length === voxels, 'dose', `${voxels} values`, `${data.dose.length}`);
  if (data.body) check(data.body.length === voxels, 'body', `${voxels} values`, `${data.body.length}`);
  if (data.masksSdf) check(data.masksSdf.length === structures * voxels, 'masksSdf', `${structures * voxels} values`, `${data.masksSdf.length}`);
  if (data.originMm) check(data.originMm.length === 3 && data.originMm.every(Number.isFinite), 'originMm', '3 finite millimetre values (z,y,x)', `[${data.originMm.join(',')}]`);
  if (data.direction) {
    check(data.direction.length === 9 && data.direction.every(Number.isFinite), 'direction', '9 finite values ([3,3] row-major)', `${data.direction.length} values`);
    const problem = orthonormalProblem(data.direction);
    check(problem === undefined, 'direction', 'rows of unit length at right angles', problem ?? '');
  }

  const grid = [z, y, x];
  const arrays: [string, WritableNpyArray][] = [
    ['ct', data.ct instanceof Int16Array ? { dtype: 'int16', shape: grid, data: data.ct } : { dtype: 'float32', shape: grid, data: data.ct }],
  ];
  if (data.dose) arrays.push(['dose', { dtype: 'float32', shape: grid, data: data.dose }]);
  arrays.push(
    ['masks', { dtype: 'uint8', shape: [structures, ...grid], data: data.masks }],
    ['structures', { dtype: 'str', shape: [structures], data: data.structures }],
    ['spacing_mm', { dtype: 'float64', shape: [3], data: Float64Array.from(data.spacingMm) }],
  );
  if (data.originMm) arrays.push(['origin_mm', { dtype: 'float64', shape: [3], data: Float64Array.from(data.originMm) }]);
  if (data.direction) arrays.push(['direction', { dtype: 'float64', shape: [3, 3], data: Float64Array.from(data.direction) }]);
  arrays.push(
    ['constraints', { dtype: 'float32', shape: [data.constraints.length], data: data.constraints }],
  );
  if (data.body) arrays.push(['body', { dtype: 'uint8', shape: grid, data: data.body }]);
  if (data.masksSdf) arrays.push(['masks_sdf', { dtype: 'float32', shape: [structures, ...grid], data: data.masksSdf }]);
  const metadata = { ...data.metadata, case_id: data.caseId, format_version: 1 };
  const json = JSON.stringify(metadata, (_, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
  arrays.push(['metadata_json', { dtype: 'str', shape: [], data: [json] }]);
  await writeNpz(path, arrays, { compress: options.compress, level: options.compressionLevel, overwrite: options.overwrite });
}
