/**
 * Voxel-wise dose errors, the clinical constraint table of data.md, and mask dilation in millimetres: the parts of
 * an evaluation that are not gamma (training.md, "Evaluation").
 */
import type { CaseData } from '../data/case.js';
import { structureKey } from '../data/structures.js';
import { doseMetrics } from '../metrics/dvh.js';

export interface DoseError {
  maeGy: number;
  rmseGy: number;
  voxels: number;
}

/** Mean absolute and root-mean-square error (Gy) of `pred` against `ref` over `mask` (all voxels when absent). */
export function doseError(pred: Float32Array, ref: Float32Array, mask?: Uint8Array): DoseError {
  if (pred.length !== ref.length || (mask && mask.length !== ref.length)) {
    throw new RangeError(`dose error needs arrays of one length, got ${pred.length}, ${ref.length}${mask ? `, ${mask.length}` : ''}`);
  }
  let absolute = 0;
  let squared = 0;
  let voxels = 0;
  for (let i = 0; i < ref.length; i++) {
    if (mask && !mask[i]) continue;
    const difference = pred[i]! - ref[i]!;
    absolute += Math.abs(difference);
    squared += difference * difference;
    voxels++;
  }
  return voxels === 0 ? { maeGy: NaN, rmseGy: NaN, voxels } : { maeGy: absolute / voxels, rmseGy: Math.sqrt(squared / voxels), voxels };
}

/**
 * `mask` grown by every voxel whose centre lies within `radiusMm` of a mask voxel's centre (a Euclidean ball in
 * millimetres, so anisotropic spacing is respected).
 */
export function dilateMask(mask: Uint8Array, shape: [number, number, number], spacingMm: [number, number, number], radiusMm: number): Uint8Array {
  const [nz, ny, nx] = shape;
  const out = Uint8Array.from(mask, (v) => (v ? 1 : 0));
  if (!(radiusMm > 0)) return out;
  const reach = spacingMm.map((s) => Math.floor(radiusMm / s + 1e-9));
  const offsets: [number, number, number][] = [];
  for (let dz = -reach[0]!; dz <= reach[0]!; dz++)
    for (let dy = -reach[1]!; dy <= reach[1]!; dy++)
      for (let dx = -reach[2]!; dx <= reach[2]!; dx++) {
        const d2 = (dz * spacingMm[0]) ** 2 + (dy * spacingMm[1]) ** 2 + (dx * spacingMm[2]) ** 2;
        if (d2 <= radiusMm * radiusMm + 1e-9) offsets.push([dz, dy, dx]);
      }
  const inside = (z: number, y: number, x: number) => z >= 0 && y >= 0 && x >= 0 && z < nz && y < ny && x < nx;
  for (let z = 0; z < nz; z++)
    for (let y = 0; y < ny; y++)
      for (let x = 0; x < nx; x++) {
        const i = (z * ny + y) * nx + x;
        if (!mask[i]) continue;
        // Only voxels on the surface can reach beyond the mask.
        const surface =
          !inside(z - 1, y, x) || !mask[i - ny * nx] || !inside(z + 1, y, x) || !mask[i + ny * nx] ||
          !inside(z, y - 1, x) || !mask[i - nx] || !inside(z, y + 1, x) || !mask[i + nx] ||
          !inside(z, y, x - 1) || !mask[i - 1] || !inside(z, y, x + 1) || !mask[i + 1];
        if (!surface) continue;
        for (const [dz, dy, dx] of offsets) {
          if (inside(z + dz, y + dy, x + dx)) out[((z + dz) * ny + y + dy) * nx + x + dx] = 1;
        }
      }
  return out;
}

/** The mask of structure `name` (matched as data.md says), or undefined when the case has none. */
export function structureMask(data: CaseData, name: string): Uint8Array | undefined {
  const index = data.structures.findIndex((s) => structureKey(s) === structureKey(name));
  if (index < 0) return undefined;
  const voxels = data.shape[0] * data.shape[1] * data.shape[2];
  return data.masks.subarray(index * voxels, (index + 1) * voxels);
}

export interface ConstraintCheck {
  /** e.g. "Rectum V50", "Bowel V45cc" */
  name: string;
  structure: string;
  /** "fraction" (Vx), "Gy" (Dmax), "cc" (bowel) */
  unit: 'fraction' | 'Gy' | 'cc';
  /** the value must be at most this */
  limit: number;
  ref: number | null;
  pred: number | null;
  refPass: boolean | null;
  predPass: boolean | null;
  /** why ref/pred are null (structure absent) */
  note?: string;
}

const DEFAULT_CONSTRAINTS = [1.0, 0.8, 0, 0.5, 0.35, 0.2, 75 / 70, 0.5, 0.35, 0.25, 0.1, 195 / 500, 45 / 70];

/**
 * The limits in force for a case: its constraint vector when its metadata says it holds limits
 * (`constraints_mode: "limits"`), else the defaults of data.md (a vector of achieved values is no limit).
 */
export function constraintLimits(ref: CaseData): { vector: number[]; source: 'case' | 'defaults'; rxGy: number } {
  const prescription = ref.metadata['prescription_gy'] as Record<string, unknown> | undefined;
  const rx = typeof prescription?.['PTV70'] === 'number' ? (prescription['PTV70'] as number) : 70;
  if (ref.metadata['constraints_mode'] === 'limits' && ref.constraints.length === 13) {
    return { vector: Array.from(ref.constraints), source: 'case', rxGy: rx };
  }
  return { vector: DEFAULT_CONSTRAINTS, source: 'defaults', rxGy: rx };
}

/** The constraint table of data.md for the reference and the predicted dose (both judged on the reference's masks). */
export function constraintTable(ref: CaseData, refDose: Float32Array, predDose: Float32Array): ConstraintCheck[] {
  const { vector, rxGy } = constraintLimits(ref);
  const voxelCc = (ref.spacingMm[0] * ref.spacingMm[1] * ref.spacingMm[2]) / 1000;
  const fractionAtLeast = (dose: Float32Array, mask: Uint8Array, gy: number) => {
    let n = 0;
    let hit = 0;
    for (let i = 0; i < mask.length; i++) {
      if (!mask[i]) continue;
      n++;
      if (dose[i]! >= gy) hit++;
    }
    return { fraction: n === 0 ? NaN : hit / n, cc: hit * voxelCc, voxels: n };
  };
  const rows: ConstraintCheck[] = [];
  const add = (structure: string, name: string, unit: ConstraintCheck['unit'], limit: number, value: (dose: Float32Array, mask: Uint8Array) => number) => {
    const mask = structureMask(ref, structure);
    const empty = !mask || !mask.some((v) => v !== 0);
    if (empty) {
      rows.push({ name: `${structure} ${name}`, structure, unit, limit, ref: null, pred: null, refPass: null, predPass: null, note: `${structure} is not in the case` });
      return;
    }
    const refValue = value(refDose, mask);
    const predValue = value(predDose, mask);
    rows.push({ name: `${structure} ${name}`, structure, unit, limit, ref: refValue, pred: predValue, refPass: refValue <= limit + 1e-9, predPass: predValue <= limit + 1e-9 });
  };
  const vx = (gy: number) => (dose: Float32Array, mask: Uint8Array) => fractionAtLeast(dose, mask, gy).fraction;
  add('Rectum', 'V50', 'fraction', vector[3]!, vx(50));
  add('Rectum', 'V60', 'fraction', vector[4]!, vx(60));
  add('Rectum', 'V70', 'fraction', vector[5]!, vx(70));
  add('Rectum', 'Dmax', 'Gy', vector[6]! * rxGy, (dose, mask) => doseMetrics(dose, mask, voxelCc).Dmax);
  add('Bladder', 'V65', 'fraction', vector[7]!, vx(65));
  add('Bladder', 'V70', 'fraction', vector[8]!, vx(70));
  add('Bladder', 'V75', 'fraction', vector[9]!, vx(75));
  add('Femur_L', 'V50', 'fraction', vector[10]!, vx(50));
  add('Femur_R', 'V50', 'fraction', vector[10]!, vx(50));
  const bowelLevel = vector[12]! * rxGy;
  add('Bowel', `V${+bowelLevel.toFixed(2)}cc`, 'cc', vector[11]! * 500, (dose, mask) => fractionAtLeast(dose, mask, bowelLevel).cc);
  return rows;
}
