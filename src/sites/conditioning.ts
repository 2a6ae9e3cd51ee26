/**
 * The conditioning (FiLM) vector of a case under a site profile: the plan's achieved values when the case holds its
 * planned dose (as the synthetic cohort records them, `constraints_mode: "achieved"`), else the profile's defaults
 * (`constraints_mode: "limits"`). Slot semantics are documented on `ConditioningSlot` in profile.ts.
 */
import type { CaseData } from '../data/case.js';
import { caseSiteName, defaultConditioning, structureMatcher, type ConditioningSlot, type SiteProfile } from './profile.js';

export interface Conditioning {
  vector: Float32Array;
  mode: 'achieved' | 'limits';
}

/** The union of the case's masks that the profile matches onto any of `names` (channel names), or null if none. */
function unionMask(profile: SiteProfile, data: CaseData, names: readonly string[]): Uint8Array | null {
  const match = structureMatcher(profile);
  const voxels = data.shape[0] * data.shape[1] * data.shape[2];
  let union: Uint8Array | null = null;
  data.structures.forEach((structure, index) => {
    const channel = match(structure) ?? structure;
    if (!names.includes(channel)) return;
    union ??= new Uint8Array(voxels);
    const mask = data.masks.subarray(index * voxels, (index + 1) * voxels);
    for (let i = 0; i < voxels; i++) union[i]! |= mask[i]!;
  });
  return union;
}

function prescriptionGy(profile: SiteProfile, data: CaseData, target: string): number {
  const recorded = (data.metadata['prescription_gy'] ?? {}) as Record<string, unknown>;
  for (const [name, value] of Object.entries(recorded)) {
    if (typeof value === 'number' && structureMatcher(profile)(name) === target) return value;
  }
  return profile.targets.find((t) => t.structure === target)?.prescriptionGy ?? 0;
}

/** The plan's value of every slot, computed from the case's dose and masks. */
export function achievedConditioning(profile: SiteProfile, data: CaseData & { dose: Float32Array }): Float32Array {
  const norm = profile.normalisationDoseGy;
  const voxelCc = (data.spacingMm[0] * data.spacingMm[1] * data.spacingMm[2]) / 1000;
  const dose = data.dose;
  const slotByName = new Map(profile.conditioning.map((slot) => [slot.name, slot]));
  const value = (slot: ConditioningSlot): number => {
    if (slot.kind === 'doseLevel') return slot.default;
    const mask = unionMask(profile, data, slot.structures);
    const present = mask !== null && mask.some((v) => v !== 0);
    if (slot.kind === 'prescription') return present ? prescriptionGy(profile, data, slot.structures[0]!) / norm : 0;
    if (!present) return 0; // a measured value of a structure the case has not got
    let n = 0;
    let hit = 0;
    let max = 0;
    let sum = 0;
    const level =
      slot.kind === 'volumeFraction'
        ? slot.doseGy
        : slot.kind === 'volumeCc'
          ? (slot.doseGy ?? slotByName.get(slot.doseSlot!)!.default * norm)
          : Infinity;
    for (let i = 0; i < mask.length; i++) {
      if (!mask[i]) continue;
      const d = dose[i]!;
      n++;
      if (d >= level) hit++;
      if (d > max) max = d;
      sum += d;
    }
    switch (slot.kind) {
      case 'volumeFraction':
        return hit / n;
      case 'volumeCc':
        return (hit * voxelCc) / slot.scaleCc;
      case 'maxDose':
        return max / norm;
      case 'meanDose':
        return sum / n / norm;
    }
  };
  return Float32Array.from(profile.conditioning.map(value));
}

/** Achieved values when the case has a dose, else the profile's defaults. */
export function conditioningFor(profile: SiteProfile, data: CaseData): Conditioning {
  if (data.dose) return { vector: achievedConditioning(profile, data as CaseData & { dose: Float32Array }), mode: 'achieved' };
  return { vector: defaultConditioning(profile), mode: 'limits' };
}

/**
 * The conditioning vector a model of the profile is trained on or predicts with for a case: the case's own vector
 * when it records this site (as the case source wrote it, achieved or limits) and has the profile's length, else
 * the one computed from the case under the profile (`conditioningFor`).
 */
export function caseConditioning(profile: SiteProfile, data: CaseData): Float32Array {
  if (caseSiteName(data.metadata) === profile.name && data.constraints.length === profile.conditioning.length) return data.constraints;
  return conditioningFor(profile, data).vector;
}
