/**
 * The model's input volume for a case (data.md "Model input channels"): the normalised CT, then one signed distance
 * channel per structure of the channel list, taken from the case's `masks_sdf` cache when it is valid, otherwise
 * computed natively.
 */
import type { CaseData } from './case.js';
import { deriveBodyMask, signedDistanceMaps } from './sdf.js';
import { CANONICAL_STRUCTURES, mapStructures } from './structures.js';

export interface ModelInput {
  /** [1 + C, Z, Y, X]: CT clip(HU, -1000, 3000) / 4000 + 0.5, then the C distance channels */
  input: Float32Array;
  /** [Z, Y, X] body mask: the case's, or derived from the CT */
  body: Uint8Array;
  /** one sentence per missing structure or ignored SDF cache */
  warnings: string[];
}

export function normaliseCt(hu: number): number {
  return Math.min(Math.max(hu, -1000), 3000) / 4000 + 0.5;
}

export async function buildModelInput(
  data: CaseData,
  channels: readonly string[] = CANONICAL_STRUCTURES,
  options: { signal?: AbortSignal; threads?: number } = {},
): Promise<ModelInput> {
  const [z, y, x] = data.shape;
  const voxels = z * y * x;
  const { indices, warnings } = mapStructures(data.structures, channels);
  const input = new Float32Array((1 + channels.length) * voxels);
  for (let i = 0; i < voxels; i++) input[i] = normaliseCt(data.ct[i]!);

  const present = indices.filter((index) => index >= 0);
  const cacheProblem = data.masksSdf ? sdfCacheProblem(data, present) : 'absent';
  if (data.masksSdf && cacheProblem) warnings.push(`the case's masks_sdf cache is not used (${cacheProblem}); the distance maps are computed instead`);
  let source: Float32Array | undefined;
  let sourceIndex: (structure: number) => number = (structure) => structure;
  if (present.length > 0) {
    if (!cacheProblem) {
      source = data.masksSdf;
    } else {
      // Compute only the structures the channels use, in the order of `present`.
      const wanted = [...new Set(present)];
      const everyStructure = wanted.length === data.structures.length && wanted.every((index, i) => index === i);
      const masks = everyStructure ? data.masks : gather(data.masks, wanted, voxels);
      source = await signedDistanceMaps(masks, [wanted.length, z, y, x], data.spacingMm, options);
      sourceIndex = (structure) => wanted.indexOf(structure);
    }
  }
  indices.forEach((structure, channel) => {
    if (structure < 0 || !source) return; // zeros: a missing structure
    const from = sourceIndex(structure) * voxels;
    input.set(source.subarray(from, from + voxels), (1 + channel) * voxels);
  });
  const body = data.body ?? (await deriveBodyMask(data.ct, data.shape, options));
  return { input, body, warnings };
}

function gather(masks: Uint8Array, structures: number[], voxels: number): Uint8Array {
  const out = new Uint8Array(structures.length * voxels);
  structures.forEach((structure, i) => out.set(masks.subarray(structure * voxels, (structure + 1) * voxels), i * voxels));
  return out;
}

/**
 * Why a masks_sdf cache cannot stand in for the computed maps, or undefined when it can: each used channel must be
 * finite, within [-1, 1], ≤ 0 inside the structure and ≥ 0 outside it, and 0 everywhere for an empty structure.
 */
function sdfCacheProblem(data: CaseData, structures: number[]): string | undefined {
  const sdf = data.masksSdf!;
  const voxels = data.shape[0] * data.shape[1] * data.shape[2];
  if (sdf.length !== data.structures.length * voxels) return `it holds ${sdf.length} values, expected ${data.structures.length * voxels}`;
  for (const s of new Set(structures)) {
    const offset = s * voxels;
    const empty = !data.masks.subarray(offset, offset + voxels).some((v) => v !== 0);
    for (let i = offset; i < offset + voxels; i++) {
      const value = sdf[i]!;
      if (!(value >= -1 && value <= 1)) return `${data.structures[s]} has the value ${value}, expected values in [-1, 1]`;
      if (empty ? value !== 0 : data.masks[i] ? value > 0 : value < 0) {
        return `${data.structures[s]} has the value ${value} ${empty ? 'for an empty structure, expected 0' : data.masks[i] ? 'inside the structure, expected ≤ 0' : 'outside the structure, expected ≥ 0'}`;
      }
    }
  }
  return undefined;
}
