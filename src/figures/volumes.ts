/**
 * The volumes behind the slice figures: dose (reference and prediction), masks and the gamma map, read from the
 * run's case files (`.npz`, format 1 of spec/data.md) and `.npy` volumes.
 */
import { readFileSync } from 'node:fs';

import { unzipSync } from 'fflate';

import { invalidInput } from '../errors.js';

export interface NpyArray {
  shape: number[];
  /** Numbers as float32/float64 (numeric dtypes) or strings (unicode dtype). */
  data: Float32Array | Float64Array | Uint8Array | Int16Array | string[];
}

export function parseNpy(bytes: Uint8Array, where: string): NpyArray {
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== 'NUMPY') throw invalidInput(`${where} is not a NumPy .npy array`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder('latin1').decode(bytes.subarray(headerStart, headerStart + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw invalidInput(`${where} has an unreadable .npy header`);
  if (fortran) throw invalidInput(`${where} is in Fortran order; expected C order`);
  const shape = shapeText
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const start = headerStart + headerLength;
  const body = bytes.slice(start);
  const typed = <T>(make: (buffer: ArrayBuffer, length: number) => T, size: number): T => {
    if (body.byteLength < count * size) throw invalidInput(`${where} is truncated: expected ${count} values`);
    return make(body.buffer, count);
  };
  switch (descr) {
    case '<f4':
      return { shape, data: typed((b, n) => new Float32Array(b, 0, n), 4) };
    case '<f8':
      return { shape, data: typed((b, n) => new Float64Array(b, 0, n), 8) };
    case '<i2':
      return { shape, data: typed((b, n) => new Int16Array(b, 0, n), 2) };
    case '|u1':
    case '|b1':
      return { shape, data: typed((b, n) => new Uint8Array(b, 0, n), 1) };
    case '<f2': {
      const halves = typed((b, n) => new Uint16Array(b, 0, n), 2);
      return { shape, data: Float32Array.from(halves, halfToFloat) };
    }
    default: {
      const unicode = /^<U(\d+)$/.exec(descr);
      if (!unicode) throw invalidInput(`${where} has dtype ${descr}; expected float32, float64, int16, uint8 or unicode`);
      const width = Number(unicode[1]);
      const codes = typed((b, n) => new Uint32Array(b, 0, n * width), 4 * width);
      const strings: string[] = [];
      for (let i = 0; i < count; i++) {
        const chars = Array.from(codes.subarray(i * width, (i + 1) * width)).filter((c) => c !== 0);
        strings.push(String.fromCodePoint(...chars));
      }
      return { shape, data: strings };
    }
  }
}

function halfToFloat(half: number): number {
  const sign = half & 0x8000 ? -1 : 1;
  const exponent = (half >> 10) & 0x1f;
  const fraction = half & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? Number.NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

export function readNpy(path: string): NpyArray {
  return parseNpy(new Uint8Array(readFileSync(path)), path);
}

export function readNpz(path: string): Map<string, NpyArray> {
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(new Uint8Array(readFileSync(path)));
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') throw invalidInput(`${path} does not exist`);
    throw invalidInput(`${path} is not a readable .npz (zip) file`);
  }
  const arrays = new Map<string, NpyArray>();
  for (const [name, bytes] of Object.entries(entries)) {
    if (name.endsWith('.npy')) arrays.set(name.slice(0, -4), parseNpy(bytes, `${path}:${name}`));
  }
  return arrays;
}

/** A dose grid with what the slice figures need. */
export interface DoseVolume {
  shape: [number, number, number];
  spacingMm: [number, number, number];
  dose: Float32Array;
  structures: string[];
  /** Structure masks, one per structure name, [Z,Y,X] each. */
  masks: Uint8Array[];
}

function toFloat32(array: NpyArray): Float32Array {
  if (Array.isArray(array.data)) throw invalidInput('expected a numeric array');
  return array.data instanceof Float32Array ? array.data : Float32Array.from(array.data);
}

/** Reads the dose, spacing, structure names and masks of a format-1 case file. */
export function readDoseCase(path: string): DoseVolume {
  const arrays = readNpz(path);
  const need = (key: string) => {
    const array = arrays.get(key);
    if (!array) throw invalidInput(`${path} has no '${key}' array`);
    return array;
  };
  const dose = need('dose');
  if (dose.shape.length !== 3) throw invalidInput(`${path}: 'dose' must be [Z,Y,X], found shape [${dose.shape.join(',')}]`);
  const spacing = Array.from(toFloat32(need('spacing_mm')));
  const shape = dose.shape as [number, number, number];
  const structures = arrays.get('structures');
  const masks = arrays.get('masks');
  const names = structures && Array.isArray(structures.data) ? structures.data : [];
  const maskList: Uint8Array[] = [];
  if (masks && !Array.isArray(masks.data)) {
    const voxels = shape[0] * shape[1] * shape[2];
    const data = masks.data instanceof Uint8Array ? masks.data : Uint8Array.from(masks.data);
    for (let s = 0; s < names.length; s++) maskList.push(data.subarray(s * voxels, (s + 1) * voxels));
  }
  return { shape, spacingMm: spacing as [number, number, number], dose: toFloat32(dose), structures: names, masks: maskList };
}

export function readGammaVolume(path: string, shape: readonly number[]): Float32Array {
  const array = readNpy(path);
  if (array.shape.join(',') !== shape.join(',')) {
    throw invalidInput(`${path}: the gamma volume has shape [${array.shape.join(',')}], expected the dose grid [${shape.join(',')}]`);
  }
  return toFloat32(array);
}
