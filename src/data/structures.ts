/** Structure names: the model's canonical channel order and the name matching of data.md. */

export const CANONICAL_STRUCTURES: readonly string[] = ['PTV70', 'PTV56', 'Prostate', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel'];

/** The matching key of a name: lower case, without `_`, `-` and spaces ("Femur_L" ≡ "femur l" ≡ "FEMUR-L"). */
export function structureKey(name: string): string {
  return name.toLowerCase().replace(/[_\-\s]/g, '');
}

export function sameStructure(a: string, b: string): boolean {
  return structureKey(a) === structureKey(b);
}

export interface StructureMapping {
  /** For each channel, the index of the case's structure that fills it, or -1 when the case has none. */
  indices: number[];
  /** One sentence per channel without a structure. */
  warnings: string[];
}

/** Maps a case's structure names onto the channel list (e.g. CANONICAL_STRUCTURES). */
export function mapStructures(names: readonly string[], channels: readonly string[] = CANONICAL_STRUCTURES): StructureMapping {
  const byKey = new Map<string, number>();
  names.forEach((name, index) => {
    if (!byKey.has(structureKey(name))) byKey.set(structureKey(name), index);
  });
  const warnings: string[] = [];
  const indices = channels.map((channel) => {
    const index = byKey.get(structureKey(channel));
    if (index === undefined) {
      warnings.push(`structure ${channel} is not in the case (it has ${names.join(', ') || 'no structures'}); its channel is all zeros`);
      return -1;
    }
    return index;
  });
  return { indices, warnings };
}
