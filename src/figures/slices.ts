/**
 * Slice figures (3: reference / prediction / difference; 6: gamma map) through the PTV70 centre, axial, coronal
 * and sagittal. The slices are rasterised here (pngjs) at their physical aspect (from the spacing) and laid out
 * with Vega, which draws the titles and the labelled colour bars.
 */
import { PNG } from 'pngjs';
import * as vega from 'vega';

import { FONT_FAMILY } from './fonts.js';
import { renderVega, type RenderedFigure } from './render.js';

export type Shape3 = readonly [number, number, number];
export type View = 'axial' | 'coronal' | 'sagittal';
export const VIEWS: View[] = ['axial', 'coronal', 'sagittal'];

/** Centre of mass (voxel indices, rounded) of a mask; the volume centre where the mask is empty or absent. */
export function maskCentre(shape: Shape3, mask: Uint8Array | undefined): [number, number, number] {
  const [nz, ny, nx] = shape;
  let count = 0;
  let sz = 0;
  let sy = 0;
  let sx = 0;
  if (mask) {
    for (let z = 0, i = 0; z < nz; z++)
      for (let y = 0; y < ny; y++)
        for (let x = 0; x < nx; x++, i++)
          if (mask[i]) {
            count++;
            sz += z;
            sy += y;
            sx += x;
          }
  }
  if (count === 0) return [Math.floor(nz / 2), Math.floor(ny / 2), Math.floor(nx / 2)];
  return [Math.round(sz / count), Math.round(sy / count), Math.round(sx / count)];
}

export interface Slice {
  /** Row-major values, rows × cols, row 0 drawn at the top. */
  values: Float32Array;
  rows: number;
  cols: number;
  /** Physical size of a pixel (mm) along rows and columns. */
  rowMm: number;
  colMm: number;
  label: string;
}

/**
 * Extracts a plane through `centre`. Axial: rows y (anterior at the top), columns x. Coronal and sagittal: rows z
 * with the highest slice index at the top (superior up for z increasing towards the head), columns x or y.
 */
export function extractSlice(volume: ArrayLike<number>, shape: Shape3, spacingMm: Shape3, centre: Shape3, view: View): Slice {
  const [nz, ny, nx] = shape;
  const [dz, dy, dx] = spacingMm;
  const [cz, cy, cx] = centre;
  const at = (z: number, y: number, x: number) => volume[(z * ny + y) * nx + x];
  if (view === 'axial') {
    const values = new Float32Array(ny * nx);
    for (let y = 0; y < ny; y++) for (let x = 0; x < nx; x++) values[y * nx + x] = at(cz, y, x);
    return { values, rows: ny, cols: nx, rowMm: dy, colMm: dx, label: `Axial (z = ${cz})` };
  }
  if (view === 'coronal') {
    const values = new Float32Array(nz * nx);
    for (let z = 0; z < nz; z++) for (let x = 0; x < nx; x++) values[(nz - 1 - z) * nx + x] = at(z, cy, x);
    return { values, rows: nz, cols: nx, rowMm: dz, colMm: dx, label: `Coronal (y = ${cy})` };
  }
  const values = new Float32Array(nz * ny);
  for (let z = 0; z < nz; z++) for (let y = 0; y < ny; y++) values[(nz - 1 - z) * ny + y] = at(z, y, cx);
  return { values, rows: nz, cols: ny, rowMm: dz, colMm: dy, label: `Sagittal (x = ${cx})` };
}

type Rgb = [number, number, number];

function parseColour(text: string): Rgb {
  const hex = /^#([0-9a-f]{6})$/i.exec(text);
  if (hex) {
    const n = parseInt(hex[1], 16);
    return [n >> 16, (n >> 8) & 255, n & 255];
  }
  const rgb = /rgb\((\d+),\s*(\d+),\s*(\d+)\)/.exec(text);
  if (rgb) return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
  throw new Error(`unexpected colour '${text}' from vega's scheme`);
}

/** A 256-entry table of one of Vega's continuous schemes, so the pixels match the colour bar Vega draws. */
export function colourTable(scheme: string, reverse = false): Rgb[] {
  const interpolate = vega.scheme(scheme) as ((t: number) => string) | undefined;
  if (typeof interpolate !== 'function') throw new Error(`vega has no continuous scheme '${scheme}'`);
  return Array.from({ length: 256 }, (_, i) => parseColour(interpolate(reverse ? 1 - i / 255 : i / 255)));
}

export interface ColourScale {
  table: Rgb[];
  low: number;
  high: number;
  /** Colour of NaN (not evaluated). */
  missing: Rgb;
}

/** An outline drawn over a slice: the boundary of a mask (e.g. PTV70), in one colour. */
export interface SliceOutline {
  mask: Slice;
  colour: Rgb;
}

/**
 * Resamples a slice to `width` × `height` pixels (nearest voxel, so voxels stay sharp) and colours it; an outline
 * marks the pixels inside its mask that touch a pixel outside.
 */
export function slicePng(slice: Slice, width: number, height: number, scale: ColourScale, outline?: SliceOutline): Buffer {
  const png = new PNG({ width, height });
  const span = scale.high - scale.low || 1;
  const voxelOf = (px: number, py: number) =>
    Math.min(slice.rows - 1, Math.floor(((py + 0.5) / height) * slice.rows)) * slice.cols + Math.min(slice.cols - 1, Math.floor(((px + 0.5) / width) * slice.cols));
  const inside = (px: number, py: number) => px >= 0 && py >= 0 && px < width && py < height && outline!.mask.values[voxelOf(px, py)] > 0;
  for (let py = 0; py < height; py++) {
    for (let px = 0; px < width; px++) {
      const value = slice.values[voxelOf(px, py)];
      let colour = Number.isNaN(value)
        ? scale.missing
        : scale.table[Math.max(0, Math.min(255, Math.round(((value - scale.low) / span) * 255)))];
      if (outline && inside(px, py) && !(inside(px - 1, py) && inside(px + 1, py) && inside(px, py - 1) && inside(px, py + 1))) colour = outline.colour;
      const o = (py * width + px) * 4;
      png.data[o] = colour[0];
      png.data[o + 1] = colour[1];
      png.data[o + 2] = colour[2];
      png.data[o + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

export interface SliceLegend {
  scaleName: string;
  title: string;
  domain: number[];
  scheme: string;
  reverse?: boolean;
}

/**
 * Lays out a grid of slices (rows × columns); each panel keeps its physical aspect and all panels share one
 * mm-to-pixel factor, so the three views are to scale with each other.
 */
export async function renderSliceGrid(options: {
  title: string;
  rowLabels: string[];
  columnTitles: string[];
  cells: { slice: Slice; scale: ColourScale; outline?: SliceOutline }[][];
  legends: SliceLegend[];
  footnote?: string;
  panelMaxPx?: number;
}): Promise<RenderedFigure> {
  const { cells } = options;
  const maxMm = Math.max(...cells.flat().map(({ slice }) => Math.max(slice.cols * slice.colMm, slice.rows * slice.rowMm)));
  const pxPerMm = (options.panelMaxPx ?? 230) / maxMm;
  const size = (slice: Slice) => ({ width: Math.round(slice.cols * slice.colMm * pxPerMm), height: Math.round(slice.rows * slice.rowMm * pxPerMm) });
  const gap = 10;
  const rowLabelWidth = 26;
  const top = 24;
  const columnWidths = options.columnTitles.map((_, c) => Math.max(...cells.map((row) => size(row[c].slice).width)));
  const rowHeights = cells.map((row) => Math.max(...row.map((cell) => size(cell.slice).height)));
  const columnX = columnWidths.map((_, c) => rowLabelWidth + columnWidths.slice(0, c).reduce((a, b) => a + b + gap, 0));
  const text = (x: number, y: number, value: string, extra: Record<string, unknown> = {}): vega.Mark => ({
    type: 'text',
    encode: { enter: { x: { value: x }, y: { value: y }, text: { value }, fontSize: { value: 12 }, font: { value: FONT_FAMILY }, fill: { value: '#111' }, ...extra } },
  });
  const marks: vega.Mark[] = options.columnTitles.map((title, c) => text(columnX[c] + columnWidths[c] / 2, top - 8, title, { align: { value: 'center' }, fontSize: { value: 13 } }));
  let y = top;
  cells.forEach((row, r) => {
    marks.push(text(rowLabelWidth - 10, y + rowHeights[r] / 2, options.rowLabels[r], { angle: { value: -90 }, align: { value: 'center' }, baseline: { value: 'bottom' } }));
    row.forEach(({ slice, scale, outline }, c) => {
      const { width, height } = size(slice);
      // Rasterised at twice the drawn size so the PNG stays sharp at the figure's 2× export.
      const png = slicePng(slice, width * 2, height * 2, scale, outline);
      const x = columnX[c] + (columnWidths[c] - width) / 2;
      const yy = y + (rowHeights[r] - height) / 2;
      marks.push({
        type: 'image',
        encode: { enter: { x: { value: x }, y: { value: yy }, width: { value: width }, height: { value: height }, url: { value: `data:image/png;base64,${png.toString('base64')}` }, aspect: { value: false } } },
      });
      marks.push({ type: 'rect', encode: { enter: { x: { value: x }, y: { value: yy }, width: { value: width }, height: { value: height }, stroke: { value: '#333' }, strokeWidth: { value: 0.75 }, fill: { value: 'transparent' } } } });
    });
    y += rowHeights[r] + gap;
  });
  if (options.footnote) {
    marks.push(text(rowLabelWidth, y + 6, options.footnote, { baseline: { value: 'top' }, fontSize: { value: 11 }, fill: { value: '#444' } }));
    y += 20;
  }
  const legendLength = Math.min(220, Math.max(100, (y - top) / options.legends.length - 60));
  const spec: vega.Spec = {
    $schema: 'https://vega.github.io/schema/vega/v6.json',
    width: columnX[columnX.length - 1] + columnWidths[columnWidths.length - 1],
    height: y,
    padding: 12,
    autosize: 'pad',
    background: 'white',
    title: { text: options.title, anchor: 'start', fontSize: 14, font: FONT_FAMILY, offset: 4 },
    config: { legend: { titleFont: FONT_FAMILY, labelFont: FONT_FAMILY, labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal' }, title: { font: FONT_FAMILY } },
    scales: options.legends.map((legend) => ({
      name: legend.scaleName,
      type: 'linear',
      domain: legend.domain,
      range: { scheme: legend.scheme },
      reverse: legend.reverse ?? false,
      zero: false,
      nice: false,
    })),
    legends: options.legends.map((legend) => ({
      fill: legend.scaleName,
      type: 'gradient',
      title: legend.title,
      orient: 'right',
      direction: 'vertical',
      gradientLength: legendLength,
      gradientThickness: 14,
      titlePadding: 8,
      offset: 16,
    })),
    marks,
  };
  return renderVega(spec);
}

/** A round upper bound for a colour bar (so the ticks are readable): 1, 2, 5 × 10^k. */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

const GREY: Rgb = [217, 217, 217];
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];

/** (3) Reference / prediction / difference slices of one case through the PTV70 centre. */
export async function doseSlicesFigure(options: {
  caseId: string;
  runName: string;
  shape: Shape3;
  spacingMm: Shape3;
  centre: Shape3;
  reference: Float32Array;
  prediction: Float32Array;
  /** PTV70 mask, drawn as an outline. */
  ptvMask?: Uint8Array;
}): Promise<RenderedFigure> {
  const { reference, prediction } = options;
  const difference = new Float32Array(reference.length);
  let maxDose = 0;
  let maxDiff = 0;
  for (let i = 0; i < reference.length; i++) {
    difference[i] = prediction[i] - reference[i];
    maxDose = Math.max(maxDose, reference[i], prediction[i]);
    maxDiff = Math.max(maxDiff, Math.abs(difference[i]));
  }
  // Dose bars end at the next 10 Gy above the maximum (e.g. 80 Gy for a 75 Gy hot spot).
  const doseTop = maxDose > 20 ? Math.ceil(maxDose / 10) * 10 : niceCeiling(maxDose);
  const diffTop = niceCeiling(Math.max(maxDiff, 0.5));
  const doseScale: ColourScale = { table: colourTable('turbo'), low: 0, high: doseTop, missing: GREY };
  const diffScale: ColourScale = { table: colourTable('redblue', true), low: -diffTop, high: diffTop, missing: GREY };
  const columns = [
    { volume: reference, scale: doseScale, outlineColour: WHITE },
    { volume: prediction, scale: doseScale, outlineColour: WHITE },
    { volume: difference, scale: diffScale, outlineColour: BLACK },
  ];
  const cells = VIEWS.map((view) => {
    const ptv = options.ptvMask && extractSlice(options.ptvMask, options.shape, options.spacingMm, options.centre, view);
    return columns.map(({ volume, scale, outlineColour }) => ({
      slice: extractSlice(volume, options.shape, options.spacingMm, options.centre, view),
      scale,
      outline: ptv ? { mask: ptv, colour: outlineColour } : undefined,
    }));
  });
  return renderSliceGrid({
    title: `Dose: ${options.caseId} (${options.runName}), through the PTV70 centre`,
    rowLabels: cells.map((row) => row[0].slice.label),
    columnTitles: ['Reference', 'Prediction', 'Prediction − reference'],
    cells,
    footnote: options.ptvMask ? 'outline: PTV70 (white on dose, black on the difference)' : undefined,
    legends: [
      { scaleName: 'dose', title: 'Dose (Gy)', domain: [0, doseTop], scheme: 'turbo' },
      { scaleName: 'difference', title: 'Difference (Gy)', domain: [-diffTop, diffTop], scheme: 'redblue', reverse: true },
    ],
  });
}

/** (6) Gamma map slices of one case (NaN, below the dose cutoff, in grey). */
export async function gammaSlicesFigure(options: {
  caseId: string;
  runName: string;
  shape: Shape3;
  spacingMm: Shape3;
  centre: Shape3;
  gamma: Float32Array;
  criterion: string;
  ptvMask?: Uint8Array;
}): Promise<RenderedFigure> {
  const maxGamma = 2;
  const scale: ColourScale = { table: colourTable('blueorange'), low: 0, high: maxGamma, missing: GREY };
  let evaluated = 0;
  let passed = 0;
  for (const value of options.gamma) {
    if (Number.isNaN(value)) continue;
    evaluated++;
    if (value <= 1) passed++;
  }
  const rate = evaluated > 0 ? ((100 * passed) / evaluated).toFixed(1) : 'n/a';
  const row = VIEWS.map((view) => ({
    slice: extractSlice(options.gamma, options.shape, options.spacingMm, options.centre, view),
    scale,
    outline: options.ptvMask ? { mask: extractSlice(options.ptvMask, options.shape, options.spacingMm, options.centre, view), colour: BLACK } : undefined,
  }));
  return renderSliceGrid({
    title: `Gamma ${options.criterion}: ${options.caseId} (${options.runName}), pass rate ${rate}%`,
    rowLabels: [`Γ (${options.criterion})`],
    columnTitles: row.map((cell) => cell.slice.label),
    cells: [row],
    legends: [{ scaleName: 'gamma', title: 'Γ (≤ 1 passes)', domain: [0, maxGamma], scheme: 'blueorange' }],
    footnote: `grey: below the dose cutoff (not evaluated)${options.ptvMask ? '; black outline: PTV70' : ''}`,
    panelMaxPx: 220,
  });
}
