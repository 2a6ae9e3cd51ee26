/** Dose-volume metrics of one structure (shared by inspect, evaluate and the reports). */

export const V_LEVELS_GY = [40, 45, 50, 55, 60, 65, 70, 75] as const;

export interface DoseMetrics {
  volumeCc: number;
  Dmean: number;
  Dmax: number;
  'D0.03cc': number;
  D2: number;
  D50: number;
  D95: number;
  D98: number;
  V40: number;
  V45: number;
  V50: number;
  V55: number;
  V60: number;
  V65: number;
  V70: number;
  V75: number;
}

/**
 * Metrics of `dose` (Gy) over the voxels where `mask` is nonzero. Dx is the smallest dose received by the hottest
 * x% of the structure's voxels (the hottest ceil(x% · n)); D0.03cc the same for the hottest 0.03 cc; Vx the fraction
 * of the structure receiving at least x Gy. An empty structure gives volume 0 and NaN elsewhere.
 */
export function doseMetrics(dose: Float32Array, mask: Uint8Array, voxelVolumeCc: number): DoseMetrics {
  if (dose.length !== mask.length) throw new RangeError(`dose holds ${dose.length} values but the mask ${mask.length}`);
  let count = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) count++;
  const values = new Float32Array(count);
  let sum = 0;
  for (let i = 0, j = 0; i < mask.length; i++) {
    if (mask[i]) {
      values[j++] = dose[i]!;
      sum += dose[i]!;
    }
  }
  values.sort(); // ascending
  const hottest = (voxels: number) => (count === 0 ? NaN : values[count - Math.min(count, Math.max(1, voxels))]!);
  const dx = (percent: number) => hottest(Math.ceil((percent / 100) * count - 1e-9));
  const vx = (gy: number) => {
    if (count === 0) return NaN;
    let lo = 0;
    let hi = count; // first index with value >= gy
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (values[mid]! >= gy) hi = mid;
      else lo = mid + 1;
    }
    return (count - lo) / count;
  };
  return {
    volumeCc: count * voxelVolumeCc,
    Dmean: count === 0 ? NaN : sum / count,
    Dmax: count === 0 ? NaN : values[count - 1]!,
    'D0.03cc': hottest(Math.ceil(0.03 / voxelVolumeCc - 1e-9)),
    D2: dx(2),
    D50: dx(50),
    D95: dx(95),
    D98: dx(98),
    V40: vx(40),
    V45: vx(45),
    V50: vx(50),
    V55: vx(55),
    V60: vx(60),
    V65: vx(65),
    V70: vx(70),
    V75: vx(75),
  };
}

export interface DvhCurve {
  /** bin lower edges, Gy: 0, bin, 2·bin, … up to the structure's maximum dose */
  doseGy: Float64Array;
  /** fraction of the structure receiving at least doseGy[i] */
  volumeFraction: Float64Array;
}

/** Cumulative DVH of the structure `mask` with `binGy` wide bins. */
export function dvhCurve(dose: Float32Array, mask: Uint8Array, binGy = 0.1): DvhCurve {
  if (dose.length !== mask.length) throw new RangeError(`dose holds ${dose.length} values but the mask ${mask.length}`);
  if (!(binGy > 0)) throw new RangeError(`binGy must be positive, got ${binGy}`);
  let max = 0;
  let count = 0;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) {
      count++;
      if (dose[i]! > max) max = dose[i]!;
    }
  }
  const bins = Math.floor(max / binGy) + 1;
  const histogram = new Float64Array(bins);
  for (let i = 0; i < mask.length; i++) if (mask[i]) histogram[Math.min(bins - 1, Math.max(0, Math.floor(dose[i]! / binGy)))]! += 1;
  const doseGy = new Float64Array(bins);
  const volumeFraction = new Float64Array(bins);
  let atLeast = 0;
  for (let b = bins - 1; b >= 0; b--) {
    atLeast += histogram[b]!;
    doseGy[b] = b * binGy;
    volumeFraction[b] = count === 0 ? 0 : atLeast / count;
  }
  return { doseGy, volumeFraction };
}
