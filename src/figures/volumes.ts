/**
 * The volumes behind the slice figures: dose (reference and prediction) and masks. Prediction files
 * (`<case>_pred.npz`) hold dose, spacing, structures and masks but no CT, so only those keys are read here, with the
 * project's npz/npy readers (src/data).
 */
import { invalidInput } from '../errors.js';
import type { NpyArray } from '../data/npy.js';
import { readNpz } from '../data/npz.js';

/** A dose grid with what the slice figures need. */
export interface DoseVolume {
  shape: [number, number, number];
  spacingMm: [number, number, number];
  dose: Float32Array;
  structures: string[];
  /** Structure masks, one per structure name, [Z,Y,X] each. */
  masks: Uint8Array[];
}

function numeric(array: NpyArray | undefined, path: string, key: string): Float32Array | Uint8Array | Float64Array {
  if (!array) throw invalidInput(`${path} has no '${key}' array`);
  if (array.dtype === 'str' || array.dtype === 'object' || array.data instanceof BigInt64Array) {
    throw invalidInput(`${path}: '${key}' must be numeric, found dtype ${array.dtype}`);
  }
  if (array.data instanceof Float32Array || array.data instanceof Uint8Array || array.data instanceof Float64Array) return array.data;
  return Float32Array.from(array.data);
}

/** Reads the dose, spacing, structure names and masks of a format-1 case or prediction file. */
export async function readDoseCase(path: string): Promise<DoseVolume> {
  const arrays = await readNpz(path, { keys: ['dose', 'spacing_mm', 'structures', 'masks'] });
  const doseArray = arrays.get('dose');
  const dose = numeric(doseArray, path, 'dose');
  if (doseArray!.shape.length !== 3) throw invalidInput(`${path}: 'dose' must be [Z,Y,X], found shape [${doseArray!.shape.join(',')}]`);
  const shape = doseArray!.shape as [number, number, number];
  const spacing = Array.from(numeric(arrays.get('spacing_mm'), path, 'spacing_mm'));
  if (spacing.length !== 3 || spacing.some((s) => !(s > 0))) throw invalidInput(`${path}: 'spacing_mm' must be 3 positive values (z, y, x), found [${spacing.join(',')}]`);
  const structuresArray = arrays.get('structures');
  const structures = structuresArray?.dtype === 'str' ? structuresArray.data : [];
  const masks: Uint8Array[] = [];
  const maskArray = arrays.get('masks');
  if (maskArray && structures.length > 0) {
    const data = numeric(maskArray, path, 'masks');
    const voxels = shape[0] * shape[1] * shape[2];
    if (data.length !== structures.length * voxels) throw invalidInput(`${path}: 'masks' must be [${structures.length},${shape.join(',')}], found [${maskArray.shape.join(',')}]`);
    const bytes = data instanceof Uint8Array ? data : Uint8Array.from(data);
    for (let s = 0; s < structures.length; s++) masks.push(bytes.subarray(s * voxels, (s + 1) * voxels));
  }
  return { shape, spacingMm: spacing as [number, number, number], dose: dose instanceof Float32Array ? dose : Float32Array.from(dose), structures, masks };
}
