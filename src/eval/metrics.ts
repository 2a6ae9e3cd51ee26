/**
 * Voxel-wise dose errors, the clinical constraint table of the site profile, and mask dilation in millimetres: the parts of
 * an evaluation that are not gamma (training.md, "Evaluation").
 */
import type { CaseData } from '../data/case.js';
import { structureKey } from '../data/structures.js';
import { doseMetrics } from '../metrics/dvh.js';
import { DEFAULT_SITE, loadSiteProfile, structureMatcher, type SiteProfile } from '../sites/profile.js';

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
  /** e.g. "Rectum V50", "Rectum Dmax", "Bowel V45cc" (`constraintLabel` gives the clinician's "Rectum V50Gy < 50 %") */
  name: string;
  structure: string;
  /** "fraction" (Vx in %), "Gy" (Dmax, Dmean, Dx), "cc" (Vx in cc) */
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

/** A number as a limit is written: at most 2 decimals, no trailing zeros (0.35 · 100 → "35"). */
const limitText = (value: number) => String(+value.toFixed(2));

/** A row as clinicians write it: "Rectum V50Gy < 50 %", "Rectum Dmax < 75 Gy", "Bowel V45Gy < 195 cc". */
export function constraintLabel(check: Pick<ConstraintCheck, 'name' | 'structure' | 'unit' | 'limit'>): string {
  const metric = check.name.startsWith(`${check.structure} `) ? check.name.slice(check.structure.length + 1) : check.name;
  switch (check.unit) {
    case 'fraction':
      return `${check.structure} ${metric}Gy < ${limitText(check.limit * 100)} %`;
    case 'cc':
      return `${check.structure} ${metric.replace(/cc$/, 'Gy')} < ${limitText(check.limit)} cc`;
    default:
      return `${check.structure} ${metric} < ${limitText(check.limit)} Gy`;
  }
}

/**
 * The limits in force for a case: its conditioning vector when its metadata says it holds limits of this site
 * (`constraints_mode: "limits"`, the site's length), else the defaults of the profile's slots (a vector of achieved
 * values is no limit). `rxGy` converts dose slots to Gy (data.md: "/ Rx"): the case's prescription of the
 * profile's first target, else the profile's normalisation dose.
 */
export function constraintLimits(ref: CaseData, profile: SiteProfile = loadSiteProfile(DEFAULT_SITE)): { vector: number[]; source: 'case' | 'defaults'; rxGy: number } {
  const match = structureMatcher(profile);
  const prescription = (ref.metadata['prescription_gy'] ?? {}) as Record<string, unknown>;
  const first = profile.targets[0]!.structure;
  const recorded = Object.entries(prescription).find(([name, value]) => typeof value === 'number' && (name === first || match(name) === first));
  const rx = recorded ? (recorded[1] as number) : profile.normalisationDoseGy;
  if (ref.metadata['constraints_mode'] === 'limits' && ref.constraints.length === profile.conditioning.length) {
    return { vector: Array.from(ref.constraints), source: 'case', rxGy: rx };
  }
  return { vector: profile.conditioning.map((slot) => slot.default), source: 'defaults', rxGy: rx };
}

/** The dose at which the hottest `voxels` of a structure start (the values sorted ascending). */
const hottest = (sorted: Float32Array, voxels: number) => sorted[sorted.length - Math.min(sorted.length, Math.max(1, voxels))]!;

/**
 * The constraint table of the site profile (prostate-sib: data.md's) for the reference and the predicted dose, both
 * judged on the reference's masks (matched through the profile's aliases).
 */
export function constraintTable(ref: CaseData, refDose: Float32Array, predDose: Float32Array, profile: SiteProfile = loadSiteProfile(DEFAULT_SITE)): ConstraintCheck[] {
  const { vector, rxGy } = constraintLimits(ref, profile);
  const voxelCc = (ref.spacingMm[0] * ref.spacingMm[1] * ref.spacingMm[2]) / 1000;
  const match = structureMatcher(profile);
  const slotIndex = new Map(profile.conditioning.map((slot, i) => [slot.name, i]));
  const maskOf = (structure: string) => {
    const index = ref.structures.findIndex((s) => structureKey(s) === structureKey(structure) || match(s) === structure);
    if (index < 0) return undefined;
    const voxels = ref.shape[0] * ref.shape[1] * ref.shape[2];
    return ref.masks.subarray(index * voxels, (index + 1) * voxels);
  };
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
  const sortedIn = (dose: Float32Array, mask: Uint8Array) => {
    const values: number[] = [];
    for (let i = 0; i < mask.length; i++) if (mask[i]) values.push(dose[i]!);
    return Float32Array.from(values).sort();
  };
  return profile.constraints.map((row): ConstraintCheck => {
    const slot = row.slot === undefined ? undefined : profile.conditioning[slotIndex.get(row.slot)!]!;
    // A row with a slot takes its limit from the vector in force (the profile checks that the slot's default is the row's limit).
    const fromVector = slot ? vector[slotIndex.get(slot.name)!]! : undefined;
    const volume = /^V(.+)Gy$/.exec(row.metric);
    let levelGy = volume ? Number(volume[1]) : NaN;
    // A cc slot may take its dose level from a doseLevel slot (bowel V45 cc: bowel_dose_level · Rx).
    if (slot?.kind === 'volumeCc' && slot.doseSlot !== undefined) levelGy = vector[slotIndex.get(slot.doseSlot)!]! * rxGy;
    const unit: ConstraintCheck['unit'] = row.unit === '%' ? 'fraction' : row.unit;
    const limit =
      fromVector === undefined
        ? row.unit === '%' ? row.limit / 100 : row.limit
        : slot!.kind === 'volumeCc' ? fromVector * slot!.scaleCc : unit === 'Gy' ? fromVector * rxGy : fromVector;
    const name = `${row.structure} ${volume ? `V${+levelGy.toFixed(2)}${row.unit === 'cc' ? 'cc' : ''}` : row.metric}`;
    const value = (dose: Float32Array, mask: Uint8Array): number => {
      if (volume) return row.unit === 'cc' ? fractionAtLeast(dose, mask, levelGy).cc : fractionAtLeast(dose, mask, levelGy).fraction;
      if (row.metric === 'Dmax' || row.metric === 'Dmean') return doseMetrics(dose, mask, voxelCc)[row.metric];
      const sorted = sortedIn(dose, mask);
      const percent = /^D(.+)%$/.exec(row.metric);
      if (percent) return hottest(sorted, Math.ceil((Number(percent[1]) / 100) * sorted.length - 1e-9));
      return hottest(sorted, Math.ceil(Number(row.metric.slice(1, -2)) / voxelCc - 1e-9)); // D<x>cc
    };
    const mask = maskOf(row.structure);
    if (!mask || !mask.some((v) => v !== 0)) {
      return { name, structure: row.structure, unit, limit, ref: null, pred: null, refPass: null, predPass: null, note: `${row.structure} is not in the case` };
    }
    const refValue = value(refDose, mask);
    const predValue = value(predDose, mask);
    return { name, structure: row.structure, unit, limit, ref: refValue, pred: predValue, refPass: refValue <= limit + 1e-9, predPass: predValue <= limit + 1e-9 };
  });
}
