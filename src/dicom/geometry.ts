/**
 * Voxel grids in DICOM patient coordinates (LPS: x to the patient's left, y posterior, z superior; mm), and the
 * axis flips and swaps that move a volume between two placements of the same voxels.
 */
import { invalidInput } from '../errors.js';

export type Vec3 = [number, number, number];

/**
 * Voxel (k, j, i) of a [K, J, I] array has its centre at originLps + k·spacing[0]·axes[0] + j·spacing[1]·axes[1]
 * + i·spacing[2]·axes[2]; the axes are orthonormal, in LPS components (x, y, z).
 */
export interface PatientGrid {
  shape: [number, number, number];
  spacingMm: Vec3;
  originLps: Vec3;
  axesLps: [Vec3, Vec3, Vec3];
}

export const dot = (a: Vec3, b: Vec3): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a: Vec3, b: Vec3): Vec3 => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
export const sub = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const scale = (a: Vec3, s: number): Vec3 => [a[0] * s, a[1] * s, a[2] * s];
const add = (a: Vec3, b: Vec3): Vec3 => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
export const norm = (a: Vec3): number => Math.sqrt(dot(a, a));

/** The patient position of a (possibly fractional) voxel index. */
function positionOf(grid: PatientGrid, index: Vec3): Vec3 {
  let p = grid.originLps;
  for (let a = 0; a < 3; a++) p = add(p, scale(grid.axesLps[a]!, index[a]! * grid.spacingMm[a]!));
  return p;
}

/** The grid as the native resampler takes it: origin and one step vector (spacing included) per array axis. */
export function placementOf(grid: PatientGrid): { origin: Vec3; steps: [Vec3, Vec3, Vec3] } {
  return { origin: grid.originLps, steps: [0, 1, 2].map((a) => scale(grid.axesLps[a]!, grid.spacingMm[a]!)) as [Vec3, Vec3, Vec3] };
}

/**
 * The format 1 keys of a grid: `origin_mm` is voxel [0,0,0]'s position and `direction` row a the unit vector of
 * array axis a, both in the order (z, y, x) of the patient axes, like every other triple of a case file.
 */
export function caseGeometry(grid: PatientGrid): { originMm: Vec3; direction: number[] } {
  const zyx = (v: Vec3): Vec3 => [v[2] + 0, v[1] + 0, v[0] + 0]; // + 0 turns the -0 of flipped axes into 0
  return { originMm: zyx(grid.originLps), direction: grid.axesLps.flatMap((axis) => zyx(axis)) };
}

/** The inverse of caseGeometry: a case's grid in patient coordinates (identity axes when it has no direction). */
export function gridOfCase(data: { shape: [number, number, number]; spacingMm: Vec3; originMm?: Vec3; direction?: number[] }): PatientGrid {
  const origin = data.originMm ?? [0, 0, 0];
  const d = data.direction ?? [1, 0, 0, 0, 1, 0, 0, 0, 1];
  const axis = (row: number): Vec3 => [d[row * 3 + 2]!, d[row * 3 + 1]!, d[row * 3]!];
  return { shape: data.shape, spacingMm: data.spacingMm, originLps: [origin[2], origin[1], origin[0]], axesLps: [axis(0), axis(1), axis(2)] };
}

/** Target axis t reads source axis `from`, reversed when `flip`. */
export interface AxisMap {
  from: number;
  flip: boolean;
}

const AXIS_TOLERANCE = 1e-4;

/**
 * How to read a volume whose axes are `fromAxes` so that its axes become `toAxes`, when the two differ only by axis
 * swaps and flips; undefined otherwise.
 */
export function axisMapping(fromAxes: readonly Vec3[], toAxes: readonly Vec3[]): AxisMap[] | undefined {
  const maps: AxisMap[] = [];
  for (const target of toAxes) {
    const from = fromAxes.findIndex((axis) => Math.abs(Math.abs(dot(axis, target)) - 1) < AXIS_TOLERANCE);
    if (from < 0) return undefined;
    maps.push({ from, flip: dot(fromAxes[from]!, target) < 0 });
  }
  return new Set(maps.map((m) => m.from)).size === 3 ? maps : undefined;
}

export const IDENTITY_MAP: AxisMap[] = [
  { from: 0, flip: false },
  { from: 1, flip: false },
  { from: 2, flip: false },
];

export const isIdentityMap = (maps: readonly AxisMap[]): boolean => maps.every((m, t) => m.from === t && !m.flip);

/** The grid of the same voxels read through `maps`. */
export function mappedGrid(grid: PatientGrid, maps: readonly AxisMap[]): PatientGrid {
  const corner: Vec3 = [0, 0, 0];
  for (const m of maps) if (m.flip) corner[m.from] = grid.shape[m.from]! - 1;
  return {
    shape: maps.map((m) => grid.shape[m.from]!) as [number, number, number],
    spacingMm: maps.map((m) => grid.spacingMm[m.from]!) as Vec3,
    originLps: positionOf(grid, corner),
    axesLps: maps.map((m) => scale(grid.axesLps[m.from]!, m.flip ? -1 : 1)) as [Vec3, Vec3, Vec3],
  };
}

type Volume = Int16Array | Float32Array | Uint8Array;

/** A copy of `data` ([channels, ...shape]) read through `maps` (each channel alike). */
export function remapVolume<T extends Volume>(data: T, shape: readonly number[], maps: readonly AxisMap[], channels = 1): T {
  const strides = [shape[1]! * shape[2]!, shape[2]!, 1];
  const out = new (data.constructor as new (n: number) => T)(data.length);
  const size = maps.map((m) => shape[m.from]!);
  const step = maps.map((m) => (m.flip ? -strides[m.from]! : strides[m.from]!));
  const start = maps.reduce((total, m) => total + (m.flip ? (shape[m.from]! - 1) * strides[m.from]! : 0), 0);
  const volume = shape[0]! * shape[1]! * shape[2]!;
  let at = 0;
  for (let c = 0; c < channels; c++) {
    const base = c * volume + start;
    for (let a = 0; a < size[0]!; a++) {
      for (let b = 0; b < size[1]!; b++) {
        let from = base + a * step[0]! + b * step[1]!;
        for (let e = 0; e < size[2]!; e++, from += step[2]!) out[at++] = data[from]!;
      }
    }
  }
  return out;
}

/** Checks an ImageOrientationPatient pair of direction cosines: two unit vectors at right angles. */
export function orientationAxes(values: number[] | undefined, path: string, what: string): { row: Vec3; column: Vec3 } {
  if (!values || values.length !== 6) throw invalidInput(`${path}: the ${what} has no valid Image Orientation (Patient) (0020,0037): expected 6 direction cosines`);
  const row: Vec3 = [values[0]!, values[1]!, values[2]!];
  const column: Vec3 = [values[3]!, values[4]!, values[5]!];
  if (Math.abs(norm(row) - 1) > 1e-3 || Math.abs(norm(column) - 1) > 1e-3 || Math.abs(dot(row, column)) > 1e-3) {
    throw invalidInput(`${path}: the ${what}'s Image Orientation (Patient) [${values.join(', ')}] is not two perpendicular unit vectors`);
  }
  // Renormalised, so that the rounding of the stored cosines does not tilt the grid.
  const unit = (v: Vec3) => scale(v, 1 / norm(v));
  const r = unit(row);
  const c = unit(sub(column, scale(r, dot(column, r))));
  return { row: r, column: c };
}

/** Patient position names for the common orientations of an axial series (messages and metadata). */
export function describeAxes(axes: readonly Vec3[]): string {
  const names = ['x', 'y', 'z'];
  return axes
    .map((axis) => {
      const main = axis.reduce((best, value, i) => (Math.abs(value) > Math.abs(axis[best]!) ? i : best), 0);
      return Math.abs(Math.abs(axis[main]!) - 1) < AXIS_TOLERANCE ? `${axis[main]! < 0 ? '-' : '+'}${names[main]}` : `(${axis.map((v) => v.toFixed(3)).join(', ')})`;
    })
    .join(' ');
}
