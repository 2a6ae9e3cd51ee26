/** Structure names: the model's canonical channel order and the name matching of data.md. */
import { invalidInput } from '../errors.js';

export const CANONICAL_STRUCTURES: readonly string[] = ['PTV70', 'PTV56', 'Prostate', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel'];

/** The matching key of a name: lower case, without `_`, `-` and spaces ("Femur_L" ≡ "femur l" ≡ "FEMUR-L"). */
export function structureKey(name: string): string {
  return name.toLowerCase().replace(/[_\-\s]/g, '');
}

export function sameStructure(a: string, b: string): boolean {
  return structureKey(a) === structureKey(b);
}

/** Longer names than any contouring system writes are damage, not names. */
export const MAX_STRUCTURE_NAME_LENGTH = 128;

/**
 * Why `name` cannot be a structure name (empty, longer than MAX_STRUCTURE_NAME_LENGTH, or holding control
 * characters, which would break every one-line message and table that shows it), or undefined when it can.
 */
export function structureNameProblem(name: string): string | undefined {
  if (name.trim().length === 0) return 'an empty name';
  if ([...name].length > MAX_STRUCTURE_NAME_LENGTH) return `a name of ${[...name].length} characters (at most ${MAX_STRUCTURE_NAME_LENGTH})`;
  const control = /[\u0000-\u001f\u007f-\u009f]/.exec(name);
  if (control) return `a name holding the control character U+${control[0].codePointAt(0)!.toString(16).padStart(4, '0')}`;
  return undefined;
}

/**
 * The first two names that are the same structure (equal, or equal once `structureKey` ignores case, spaces, `_`
 * and `-`, e.g. `PTV70` and `ptv-70`), as their indices; undefined when every name is distinct.
 */
export function sameStructurePair(names: readonly string[]): [number, number] | undefined {
  const byKey = new Map<string, number>();
  for (const [index, name] of names.entries()) {
    const first = byKey.get(structureKey(name));
    if (first !== undefined) return [first, index];
    byKey.set(structureKey(name), index);
  }
  return undefined;
}

export interface StructureMapping {
  /** For each channel, the index of the case's structure that fills it, or -1 when the case has none. */
  indices: number[];
  /** One sentence per channel without a structure. */
  warnings: string[];
}

/**
 * Maps a case's structure names onto the channel list (e.g. CANONICAL_STRUCTURES). Two names of one structure (in
 * the case, or in the channels) are refused: which one fills the channel would be a guess.
 */
export function mapStructures(names: readonly string[], channels: readonly string[] = CANONICAL_STRUCTURES): StructureMapping {
  for (const [list, what] of [
    [names, 'the case'],
    [channels, 'the structure channels'],
  ] as const) {
    const pair = sameStructurePair(list);
    if (pair) throw invalidInput(`${what} name${what === 'the case' ? 's' : ''} '${list[pair[0]]}' and '${list[pair[1]]}', which are the same structure (names are compared ignoring case, spaces, '_' and '-'): expected each structure once`);
  }
  const byKey = new Map<string, number>();
  names.forEach((name, index) => byKey.set(structureKey(name), index));
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
