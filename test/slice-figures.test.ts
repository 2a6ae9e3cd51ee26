import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';

import { constraintMarkers, dvhSpec, gammaByStructure, gammaHistogramSpec, lossComponentsSpec } from '../src/figures/charts.js';
import { renderVegaLite } from '../src/figures/render.js';
import { colourTable, ctGrey, doseSlicesFigure, isolinePath, orientationLetters, scaleBarMm, type Slice } from '../src/figures/slices.js';
import type { CaseEvaluation, RunFolder } from '../src/report/run-folder.js';

/**
 * A synthetic case whose geometry is known: a Gaussian dose (σ = 12 mm, 70 Gy peak) centred in a 40 × 40 axial
 * grid of 2 mm voxels, a CT body ellipse (0 HU) in air (−1000 HU), a box-shaped rectum, and a prediction that is
 * the reference + 3.5 Gy, + 7 Gy (10 % of 70 Gy) and + 14 Gy in three bands of columns.
 */
const SHAPE: [number, number, number] = [9, 40, 40];
const SPACING: [number, number, number] = [2, 2, 2];
const CENTRE: [number, number, number] = [4, 20, 20];
const SIGMA_MM = 12;
const RECTUM = { y0: 30, y1: 34, x0: 16, x1: 24 }; // voxels [y0, y1) × [x0, x1)
const BANDS = [
  { x0: 26, x1: 30, add: 3.5 },
  { x0: 30, x1: 34, add: 7 },
  { x0: 34, x1: 40, add: 14 },
];

function syntheticCase() {
  const [nz, ny, nx] = SHAPE;
  const n = nz * ny * nx;
  const reference = new Float32Array(n);
  const prediction = new Float32Array(n);
  const ct = new Int16Array(n);
  const rectum = new Uint8Array(n);
  for (let z = 0, i = 0; z < nz; z++)
    for (let y = 0; y < ny; y++)
      for (let x = 0; x < nx; x++, i++) {
        const r = Math.hypot((z - CENTRE[0]) * SPACING[0], (y - CENTRE[1]) * SPACING[1], (x - CENTRE[2]) * SPACING[2]);
        reference[i] = 70 * Math.exp(-(r * r) / (2 * SIGMA_MM * SIGMA_MM));
        const band = BANDS.find((b) => x >= b.x0 && x < b.x1 && y >= 2 && y < 10);
        prediction[i] = reference[i]! + (band ? band.add : 0);
        ct[i] = Math.hypot((y - 20) / 25, (x - 20) / 25) <= 1 ? 0 : -1000;
        rectum[i] = y >= RECTUM.y0 && y < RECTUM.y1 && x >= RECTUM.x0 && x < RECTUM.x1 ? 1 : 0;
      }
  return { reference, prediction, ct, rectum };
}

/** The panels of a slice figure in its PNG (2×): Vega's root translation plus each image mark's. */
function panelsOf(svg: string): { x: number; y: number; width: number; height: number }[] {
  const root = /<g fill="none" stroke-miterlimit="\d+" transform="translate\(([\d.]+),([\d.]+)\)">/.exec(svg)!;
  const [rx, ry] = [Number(root[1]), Number(root[2])];
  return [...svg.matchAll(/<image [^>]*transform="translate\(([\d.]+),([\d.]+)\)" width="([\d.]+)" height="([\d.]+)"/g)].map((m) => ({
    x: 2 * (rx + Number(m[1])),
    y: 2 * (ry + Number(m[2])),
    width: 2 * Number(m[3]),
    height: 2 * Number(m[4]),
  }));
}

function pixel(png: PNG, x: number, y: number): [number, number, number] {
  const o = (Math.round(y) * png.width + Math.round(x)) * 4;
  return [png.data[o]!, png.data[o + 1]!, png.data[o + 2]!];
}
const near = (a: number[], b: number[], tolerance: number) => a.every((v, k) => Math.abs(v - b[k]!) <= tolerance);
/** Whether any pixel within `radius` of (x, y) is within `tolerance` of `colour`. */
function anyNear(png: PNG, x: number, y: number, colour: number[], tolerance: number, radius = 2): boolean {
  for (let dy = -radius; dy <= radius; dy++) for (let dx = -radius; dx <= radius; dx++) if (near(pixel(png, x + dx, y + dy), colour, tolerance)) return true;
  return false;
}

describe('dose slice figure', async () => {
  const { reference, prediction, ct, rectum } = syntheticCase();
  const figure = await doseSlicesFigure({
    caseId: 'synthetic', runName: 'test', shape: SHAPE, spacingMm: SPACING, centre: CENTRE, centreLabel: 'the centre', reference, prediction, ct,
    structures: [{ name: 'Rectum', mask: rectum, colour: '#1f77b4' }], prescriptionGy: 70,
  });
  const png = PNG.sync.read(figure.png);
  const panels = panelsOf(figure.svg);
  // Axial reference, prediction, difference are the first row; 80 × 80 mm drawn square.
  const [axialRef, , axialDiff] = panels;
  const voxelPx = axialRef!.width / 40;
  const at = (panel: { x: number; y: number }, row: number, col: number) => [panel.x + (col + 0.5) * voxelPx, panel.y + (row + 0.5) * voxelPx] as const;

  it('lays out nine panels at the physical aspect', () => {
    expect(panels).toHaveLength(9);
    expect(axialRef!.width).toBeCloseTo(axialRef!.height, 0);
  });

  it('draws the CT under the dose: air black, soft tissue grey where the dose is below the wash', () => {
    expect(pixel(png, ...at(axialRef!, 0, 0))).toEqual([0, 0, 0]);
    const grey = ctGrey(0);
    // Inside the body 36 mm from the centre, 0.8 Gy: below the wash (10 % of 70 Gy), the CT alone.
    expect(pixel(png, ...at(axialRef!, 16, 2))).toEqual([grey, grey, grey]);
    // At the centre the dose is washed over it: not grey.
    const centre = pixel(png, ...at(axialRef!, 20, 20));
    expect(new Set(centre).size).toBeGreaterThan(1);
  });

  it('outlines the structure where its voxels end', () => {
    const blue = [0x1f, 0x77, 0xb4];
    // The rectum's top edge is the line between voxel rows 29 and 30; its left edge the column line at x = 16.
    const topY = axialRef!.y + RECTUM.y0 * voxelPx;
    const leftX = axialRef!.x + RECTUM.x0 * voxelPx;
    for (const col of [17, 19, 21, 23]) expect(anyNear(png, axialRef!.x + (col + 0.5) * voxelPx, topY, blue, 40), `top edge at column ${col}`).toBe(true);
    for (const row of [31, 32]) expect(anyNear(png, leftX, axialRef!.y + (row + 0.5) * voxelPx, blue, 40), `left edge at row ${row}`).toBe(true);
    // Not inside it, nor elsewhere in the body.
    expect(anyNear(png, axialRef!.x + 20 * voxelPx, axialRef!.y + 32 * voxelPx, blue, 40, 1)).toBe(false);
    expect(anyNear(png, ...at(axialRef!, 12, 12), blue, 40, 1)).toBe(false);
  });

  it('draws the 50 % isodose line where the dose is 35 Gy', () => {
    // 70 exp(−r²/2σ²) = 35 at r = σ √(2 ln 2) from the centre of voxel (20, 20).
    const radiusPx = ((SIGMA_MM * Math.sqrt(2 * Math.log(2))) / SPACING[1]) * voxelPx;
    const [cx, cy] = at(axialRef!, 20, 20);
    let onLine = 0;
    let offLine = 0;
    const angles = Array.from({ length: 16 }, (_, k) => (k * Math.PI) / 8 + 0.1);
    for (const angle of angles) {
      if (anyNear(png, cx + radiusPx * Math.cos(angle), cy + radiusPx * Math.sin(angle), [0, 0, 0], 60, 2)) onLine++;
      // Half-way to the line: inside the washed dose, no black line.
      if (anyNear(png, cx + 0.6 * radiusPx * Math.cos(angle), cy + 0.6 * radiusPx * Math.sin(angle), [0, 0, 0], 60, 1)) offLine++;
    }
    // The line is dashed (6 on, 2 off): most sample points find it.
    expect(onLine).toBeGreaterThanOrEqual(11);
    expect(offLine).toBe(0);
  });

  it('scales the difference to ±10 % of the prescription, saturating beyond', () => {
    expect(figure.svg).toContain('values from −7 to 7');
    const table = colourTable('redblue', true);
    const blend = (index: number) => table[index]!.map((c) => Math.round(0.15 * ctGrey(0) + 0.85 * c));
    const plus7 = pixel(png, ...at(axialDiff!, 5, 31));
    const plus14 = pixel(png, ...at(axialDiff!, 5, 37));
    const plus3 = pixel(png, ...at(axialDiff!, 5, 27));
    expect(near(plus7, blend(255), 2)).toBe(true);
    expect(plus14).toEqual(plus7);
    // +3.5 Gy is half-way up the positive half of the bar.
    expect(near(plus3, blend(Math.round(0.75 * 255)), 2)).toBe(true);
  });

  it('labels orientation letters and a scale bar in mm', () => {
    expect(orientationLetters('axial')).toEqual(['A', 'P', 'R', 'L']);
    expect(orientationLetters('coronal')).toEqual(['S', 'I', 'R', 'L']);
    expect(orientationLetters('sagittal')).toEqual(['S', 'I', 'A', 'P']);
    // A case stored with x running to the patient's right and z towards the feet.
    const flipped = [-1, 0, 0, 0, 1, 0, 0, 0, -1];
    expect(orientationLetters('axial', flipped)).toEqual(['A', 'P', 'L', 'R']);
    expect(orientationLetters('coronal', flipped)).toEqual(['I', 'S', 'L', 'R']);
    for (const letter of ['>A<', '>P<', '>R<', '>L<', '>S<', '>I<']) expect(figure.svg).toContain(letter);
    expect(scaleBarMm(80)).toBe(20);
    expect(scaleBarMm(300)).toBe(100);
    expect(figure.svg).toContain('>20 mm<');
    expect(figure.svg).toContain('95 % (66.5 Gy)');
  });
});

describe('isodose lines', () => {
  it('follow the level set between voxel centres', () => {
    // A linear ramp along the columns: value = column index, so the level 2.5 lies half-way between columns 2 and 3.
    const slice: Slice = { values: Float32Array.from({ length: 6 * 5 }, (_, i) => i % 6), rows: 5, cols: 6, rowMm: 1, colMm: 1, label: '' };
    const path = isolinePath(slice, 2.5, 60, 50);
    const xs = [...path.matchAll(/[ML]([\d.]+),([\d.]+)/g)].map((m) => Number(m[1]));
    expect(xs.length).toBeGreaterThan(0);
    for (const x of xs) expect(x).toBeCloseTo(30, 6); // centre of column 2 at 25 px, of column 3 at 35 px
  });
});

const evaluation: CaseEvaluation = {
  caseId: 'c1',
  metrics: {},
  dvh: [
    { structure: 'PTV70', reference: { volumeCc: 100 }, prediction: { volumeCc: 100 }, curve: { doseGy: [0, 35, 70], referenceVolumePct: [100, 100, 50], predictionVolumePct: [100, 95, 40] } },
    { structure: 'Rectum', reference: { volumeCc: 80 }, prediction: { volumeCc: 80 }, curve: { doseGy: [0, 35, 70], referenceVolumePct: [100, 40, 5], predictionVolumePct: [100, 45, 6] } },
    { structure: 'Bowel', reference: { volumeCc: 400 }, prediction: { volumeCc: 400 }, curve: { doseGy: [0, 35, 70], referenceVolumePct: [100, 20, 0], predictionVolumePct: [100, 22, 0] } },
  ],
  constraints: [
    { name: 'Rectum V50', structure: 'Rectum', unit: 'fraction', limit: 0.5, reference: 0.3, prediction: 0.35, referencePass: true, predictionPass: true },
    { name: 'Rectum Dmax', structure: 'Rectum', unit: 'Gy', limit: 74.9, reference: 70, prediction: 71, referencePass: true, predictionPass: true },
    { name: 'Bowel V45cc', structure: 'Bowel', unit: 'cc', limit: 195, reference: 10, prediction: 12, referencePass: true, predictionPass: true },
    { name: 'Bladder V65', structure: 'Bladder', unit: 'fraction', limit: 0.5, reference: null, prediction: null, referencePass: null, predictionPass: null, note: 'Bladder is not in the case' },
  ],
};

describe('DVH figure', () => {
  it('marks the prescription and the constraint limits', async () => {
    expect(constraintMarkers(evaluation)).toEqual([
      { structure: 'Rectum', dose: 50, volume: 50, label: 'Rectum V50Gy ≤ 50 %' },
      { structure: 'Rectum', dose: 74.9, volume: 0, label: 'Rectum Dmax ≤ 74.9 Gy' },
      { structure: 'Bowel', dose: 45, volume: 48.75, label: 'Bowel V45Gy ≤ 195 cc' },
      // Bladder V65 has a limit but no curve here; the figure leaves it out (it draws only structures with curves).
      { structure: 'Bladder', dose: 65, volume: 50, label: 'Bladder V65Gy ≤ 50 %' },
    ]);
    const figure = await renderVegaLite(dvhSpec('run', evaluation, 70));
    expect(figure.svg).toContain('Rx 70 Gy');
    expect(figure.svg).toContain('constraint limits');
    // Three triangles (Rectum V50, Rectum Dmax, Bowel V45cc), drawn at their limits; none for the absent bladder.
    const triangles = [...figure.svg.matchAll(/<path aria-label="dose: ([\d.]+); volume: ([\d.]+); structure: (\w+); label: [^"]*" role="graphics-symbol" aria-roledescription="point"/g)].map((m) => [m[3], Number(m[1]), Number(m[2])]);
    expect(triangles).toEqual([['Rectum', 50, 50], ['Rectum', 74.9, 0], ['Bowel', 45, 48.75]]);
  });
});

describe('gamma histogram', () => {
  it('gives the pass rate per structure over the evaluated points', async () => {
    const gamma = Float32Array.from([0.2, 0.5, 1.0, 1.5, NaN, 0.3, 2.5, 0.9]);
    const a = Uint8Array.from([1, 1, 1, 1, 1, 0, 0, 0]);
    const b = Uint8Array.from([0, 0, 0, 0, 1, 1, 1, 1]);
    const groups = gammaByStructure(gamma, [{ name: 'A', mask: a, colour: '#f00' }, { name: 'B', mask: b, colour: '#00f' }]);
    expect(groups.map((g) => [g.name, g.values.length])).toEqual([['all above cutoff', 7], ['A', 4], ['B', 3]]);
    const figure = await renderVegaLite(gammaHistogramSpec('run', 'c1', '3%/3 mm', groups));
    expect(figure.svg).toContain('75.0 % (n = 4)'); // A: 0.2, 0.5, 1.0 pass; 1.5 fails
    expect(figure.svg).toContain('66.7 % (n = 3)'); // B: 0.3, 0.9 pass; 2.5 fails
    expect(figure.svg).toContain('71.4 % (n = 7)');
    expect(figure.svg).toContain('1 at Γ ≥ 2, where the search stops');
  });
});

describe('loss components', () => {
  const run = (useGradientLoss: boolean) =>
    ({
      name: 'r',
      config: { useGradientLoss, gradientLossWeight: 0.1, negativePenaltyWeight: 0.1 },
      metrics: [1, 2].map((epoch) => ({ epoch, lr: 1e-4, train_loss: 1, train_mse: 0.9, train_grad: 0, train_neg: 0.1, val_loss: 1, val_mae_gy: 2, val_mae_ptv70_gy: 3, epoch_seconds: 1, voxels_per_second: 1 })),
    }) as unknown as RunFolder;
  const components = (r: RunFolder) => new Set(((lossComponentsSpec(r) as { data: { values: { component: string }[] } }).data.values).map((v) => v.component));

  it('draws no gradient curve when the gradient loss is off', () => {
    expect(components(run(false))).toEqual(new Set(['total', 'MSE', 'negative-dose penalty']));
    expect(components(run(true))).toEqual(new Set(['total', 'MSE', 'gradient', 'negative-dose penalty']));
  });
});
