import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';

import { synthesizeCase } from '../src/data/synth.js';
import { doseColour, renderCaseSlicePng } from '../src/figures/case-slice.js';

describe('renderCaseSlicePng', () => {
  it('draws a slice at the physical aspect of the spacing, with the dose wash, and checks the index', async () => {
    const data = await synthesizeCase(0, { seed: 3, shape: [32, 32, 64], spacingMm: [5, 8, 4] });
    const axial = PNG.sync.read(renderCaseSlicePng(data, { plane: 'axial', pixelsPerMm: 1 }));
    // 32 rows x 8 mm and 64 columns x 4 mm: a square 256 x 256 px image at (16, 34), legend 28 px to its right.
    expect(axial.width).toBe(16 + 256 + 28 + 190);
    const grey = (x: number, y: number) => axial.data[(y * axial.width + x) * 4]!;
    expect(grey(16 + 2, 34 + 253)).toBeLessThan(40); // air in the image's bottom-left corner
    expect(grey(16 + 2, 34 + 260)).toBe(255); // below the image
    expect(grey(16 + 258, 34 + 200)).toBe(255); // right of the image
    const red = doseColour(70 / 75);
    let washed = 0;
    for (let i = 0; i < axial.data.length; i += 4) {
      const [r, g, b] = [axial.data[i]!, axial.data[i + 1]!, axial.data[i + 2]!];
      if (r > 150 && r > g + 60 && r > b + 60 && Math.abs(r - red[0]) < 160) washed++;
    }
    expect(washed).toBeGreaterThan(100);
    const sagittal = PNG.sync.read(renderCaseSlicePng(data, { plane: 'sagittal', index: 10, pixelsPerMm: 1 }));
    expect(sagittal.height).toBeGreaterThanOrEqual(32 * 5);
    expect(() => renderCaseSlicePng(data, { plane: 'coronal', index: 32 })).toThrow(/coronal slice index must be an integer from 0 to 31, got 32/);
  });
});
