/**
 * A case volume as NIfTI-1 (.nii or .nii.gz) with its affine (sform and qform, RAS+ as NIfTI defines world space),
 * for MONAI and nnU-Net. The voxel order needs no copy: NIfTI's first index (i, fastest) is the case's x.
 */
import { gzipSync } from 'node:zlib';

import type { CaseData } from '../data/case.js';
import { invalidInput } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { gridOfCase, type Vec3 } from './geometry.js';

export interface ExportNiftiOptions {
  /** .nii or .nii.gz */
  out: string;
  /** which volume: the dose in Gy (default) or the CT in HU */
  volume?: 'dose' | 'ct';
  overwrite?: boolean;
}

const NIFTI_FLOAT32 = 16;
const NIFTI_INT16 = 4;

/**
 * The quaternion (b, c, d) and qfac of a rotation matrix with columns `r` (nifti1_io's mat44_to_quatern for an
 * orthonormal matrix): a matrix of determinant -1 has its third column negated and qfac -1.
 */
function quaternion(columns: [Vec3, Vec3, Vec3]): { b: number; c: number; d: number; qfac: number } {
  const [x, y, z] = columns;
  const det = x[0] * (y[1] * z[2] - y[2] * z[1]) - y[0] * (x[1] * z[2] - x[2] * z[1]) + z[0] * (x[1] * y[2] - x[2] * y[1]);
  const qfac = det < 0 ? -1 : 1;
  const r = [
    [x[0], y[0], qfac * z[0]],
    [x[1], y[1], qfac * z[1]],
    [x[2], y[2], qfac * z[2]],
  ];
  const trace = r[0]![0]! + r[1]![1]! + r[2]![2]! + 1;
  let a: number, b: number, c: number, d: number;
  if (trace > 0.5) {
    a = 0.5 * Math.sqrt(trace);
    b = (0.25 * (r[2]![1]! - r[1]![2]!)) / a;
    c = (0.25 * (r[0]![2]! - r[2]![0]!)) / a;
    d = (0.25 * (r[1]![0]! - r[0]![1]!)) / a;
  } else {
    const xd = 1 + r[0]![0]! - (r[1]![1]! + r[2]![2]!);
    const yd = 1 + r[1]![1]! - (r[0]![0]! + r[2]![2]!);
    const zd = 1 + r[2]![2]! - (r[0]![0]! + r[1]![1]!);
    if (xd > 1) {
      b = 0.5 * Math.sqrt(xd);
      c = (0.25 * (r[0]![1]! + r[1]![0]!)) / b;
      d = (0.25 * (r[0]![2]! + r[2]![0]!)) / b;
      a = (0.25 * (r[2]![1]! - r[1]![2]!)) / b;
    } else if (yd > 1) {
      c = 0.5 * Math.sqrt(yd);
      b = (0.25 * (r[0]![1]! + r[1]![0]!)) / c;
      d = (0.25 * (r[1]![2]! + r[2]![1]!)) / c;
      a = (0.25 * (r[0]![2]! - r[2]![0]!)) / c;
    } else {
      d = 0.5 * Math.sqrt(zd);
      b = (0.25 * (r[0]![2]! + r[2]![0]!)) / d;
      c = (0.25 * (r[1]![2]! + r[2]![1]!)) / d;
      a = (0.25 * (r[1]![0]! - r[0]![1]!)) / d;
    }
    if (a < 0) (b = -b), (c = -c), (d = -d);
  }
  return { b, c, d, qfac };
}

/** The NIfTI-1 header (348 bytes) and the 4-byte empty extension flag, for a volume on the case's grid. */
function header(data: CaseData, datatype: number, bitpix: number, description: string): Uint8Array {
  const grid = gridOfCase(data);
  const [Z, Y, X] = data.shape;
  const [sz, sy, sx] = data.spacingMm;
  // LPS → RAS: x and y change sign.
  const ras = (v: Vec3): Vec3 => [-v[0], -v[1], v[2]];
  const columns: [Vec3, Vec3, Vec3] = [ras(grid.axesLps[2]), ras(grid.axesLps[1]), ras(grid.axesLps[0])];
  const origin = ras(grid.originLps);
  const out = new Uint8Array(352);
  const view = new DataView(out.buffer);
  view.setInt32(0, 348, true);
  [3, X, Y, Z, 1, 1, 1, 1].forEach((n, i) => view.setInt16(40 + 2 * i, n, true));
  view.setInt16(70, datatype, true);
  view.setInt16(72, bitpix, true);
  const q = quaternion(columns);
  [q.qfac, sx, sy, sz, 1, 1, 1, 1].forEach((v, i) => view.setFloat32(76 + 4 * i, v, true));
  view.setFloat32(108, 352, true); // vox_offset
  view.setFloat32(112, 1, true); // scl_slope
  view.setFloat32(116, 0, true); // scl_inter
  out[123] = 2; // xyzt_units: mm
  new TextEncoder().encodeInto(description.slice(0, 79), out.subarray(148, 228));
  view.setInt16(252, 1, true); // qform_code: scanner anatomical
  view.setInt16(254, 1, true); // sform_code
  [q.b, q.c, q.d, origin[0], origin[1], origin[2]].forEach((v, i) => view.setFloat32(256 + 4 * i, v, true));
  const spacing = [sx, sy, sz];
  for (let row = 0; row < 3; row++) {
    for (let column = 0; column < 3; column++) view.setFloat32(280 + 16 * row + 4 * column, columns[column]![row]! * spacing[column]!, true);
    view.setFloat32(280 + 16 * row + 12, origin[row]!, true);
  }
  out.set([0x6e, 0x2b, 0x31, 0x00], 344); // "n+1\0": header and data in one file
  return out;
}

/** Writes the dose (float32, Gy) or the CT (int16 or float32, HU) of a case as NIfTI-1. */
export async function exportNifti(data: CaseData, options: ExportNiftiOptions): Promise<{ path: string }> {
  const volume = options.volume ?? 'dose';
  if (!/\.nii(\.gz)?$/i.test(options.out)) throw invalidInput(`out must name a .nii or .nii.gz file, got '${options.out}'`);
  let bytes: Uint8Array;
  let head: Uint8Array;
  if (volume === 'dose') {
    if (!data.dose) throw invalidInput(`the case ${data.caseId} holds no dose to export`);
    head = header(data, NIFTI_FLOAT32, 32, `${data.caseId} dose (Gy), vmat-native`);
    bytes = new Uint8Array(data.dose.buffer, data.dose.byteOffset, data.dose.byteLength);
  } else {
    const int16 = data.ct instanceof Int16Array;
    head = header(data, int16 ? NIFTI_INT16 : NIFTI_FLOAT32, int16 ? 16 : 32, `${data.caseId} CT (HU), vmat-native`);
    bytes = new Uint8Array(data.ct.buffer, data.ct.byteOffset, data.ct.byteLength);
  }
  const file = options.out.toLowerCase().endsWith('.gz') ? [gzipSync(Buffer.concat([head, bytes]), { level: 6 })] : [head, bytes];
  await writeFileAtomic(options.out, file, { overwrite: options.overwrite });
  return { path: options.out };
}
