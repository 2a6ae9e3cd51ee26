/**
 * The OpenKBP data layout, as the challenge's own loader reads it (ababier/open-kbp, provided_code/data_loader.py and
 * utils.py) and as its data description states it; checked against that loader on the real patients by
 * bench/openkbp_scores.sh.
 *
 * Grid: every volume is 128³, stored sparsely as `flat_index,value` rows; the loader `np.put`s them into a C-order
 * (128, 128, 128) array, so flat = (i·128 + j)·128 + k. On all 340 patients the first axis i runs anterior →
 * posterior (mandible before spinal cord), j runs from the patient's right to left (right parotid first) and k from
 * superior to inferior (brainstem before spinal cord); `voxel_dimensions.csv` holds the sizes along (i, j, k) in mm,
 * the third being the slice thickness (e.g. 3.906, 3.906, 2.5).
 *
 * Case files are [z, y, x] with z increasing toward the head, as DICOM patient coordinates and a DICOM import sorted
 * by slice position have it: z = 127 − k, y = i, x = j. The spacing (z, y, x) is (dk, di, dj).
 *
 * CT: the files hold CERR's scan values, HU + 1000 (CERR's CTOffset; air outside the patient is the absent 0, i.e.
 * −1000 HU). The challenge's code applies no offset at all: its loader hands these values to the network as they are.
 * The offset is also what the tissue says: over the training patients the median brainstem value is 1030 (30 HU),
 * spinal cord 1036, the soft-tissue peak 1046. So HU = value − 1000. The data description's advice to clip the
 * values to [0, 4095] is not applied (the model's own input clips at 3000 HU).
 */

export const OPENKBP_GRID = 128;
export const OPENKBP_VOXELS = OPENKBP_GRID ** 3;
/** HU = stored value − OPENKBP_CT_OFFSET. */
export const OPENKBP_CT_OFFSET = 1000;

/** The challenge's structures, in its loader's order (organs at risk, then targets). */
export const OPENKBP_OARS = ['Brainstem', 'SpinalCord', 'RightParotid', 'LeftParotid', 'Esophagus', 'Larynx', 'Mandible'] as const;
export const OPENKBP_TARGETS = ['PTV56', 'PTV63', 'PTV70'] as const;
export const OPENKBP_PRESCRIPTION_GY = { PTV70: 70, PTV63: 63, PTV56: 56 } as const;
export const OPENKBP_FRACTIONS = 35;
export const OPENKBP_SITE = 'head-neck';

/** The files every complete patient has besides its structure masks. */
export const OPENKBP_REQUIRED_FILES = ['ct.csv', 'dose.csv', 'possible_dose_mask.csv', 'voxel_dimensions.csv'] as const;

/** The case-file flat index ([z, y, x], z toward the head) of an OpenKBP flat index. */
export function caseIndexOf(openKbpIndex: number): number {
  const n = OPENKBP_GRID;
  const i = Math.floor(openKbpIndex / (n * n));
  const j = Math.floor(openKbpIndex / n) % n;
  const k = openKbpIndex % n;
  return ((n - 1 - k) * n + i) * n + j;
}

/** The case's spacing (z, y, x) from `voxel_dimensions.csv`'s (i, j, k). */
export function caseSpacingOf(voxelDimensions: readonly [number, number, number]): [number, number, number] {
  return [voxelDimensions[2], voxelDimensions[0], voxelDimensions[1]];
}

/** A short statement of the mapping, recorded in each imported case's metadata. */
export const OPENKBP_AXES_NOTE = 'case[z, y, x] = openkbp[i=y, j=x, k=127-z] (i anterior→posterior, j right→left, k superior→inferior); HU = value - 1000';
