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

/** How a slice is laid over a CT underlay: washed in with `alpha` where `shown(value)`, the CT alone elsewhere. */
export interface SliceWash {
  ct: Slice;
  alpha: number;
  shown: (value: number) => boolean;
}

/** The CT's soft-tissue window (HU) of the slice underlays. */
export const CT_WINDOW_HU = { low: -160, high: 240 } as const;

export function ctGrey(hu: number): number {
  return Math.round(255 * Math.min(1, Math.max(0, (hu - CT_WINDOW_HU.low) / (CT_WINDOW_HU.high - CT_WINDOW_HU.low))));
}

/**
 * Resamples a slice to `width` × `height` pixels (nearest voxel, so voxels stay sharp) and colours it, over the CT
 * where `wash` is given; an outline marks the pixels inside its mask that touch a pixel outside.
 */
export function slicePng(slice: Slice, width: number, height: number, scale: ColourScale, outline?: SliceOutline, wash?: SliceWash): Buffer {
  const png = new PNG({ width, height });
  const span = scale.high - scale.low || 1;
  const voxelOf = (px: number, py: number) =>
    Math.min(slice.rows - 1, Math.floor(((py + 0.5) / height) * slice.rows)) * slice.cols + Math.min(slice.cols - 1, Math.floor(((px + 0.5) / width) * slice.cols));
  const inside = (px: number, py: number) => px >= 0 && py >= 0 && px < width && py < height && outline!.mask.values[voxelOf(px, py)] > 0;
  for (let py = 0; py < height; py++) {
    for (let px = 0; px < width; px++) {
      const voxel = voxelOf(px, py);
      const value = slice.values[voxel];
      let colour = Number.isNaN(value)
        ? scale.missing
        : scale.table[Math.max(0, Math.min(255, Math.round(((value - scale.low) / span) * 255)))];
      if (wash) {
        const grey = ctGrey(wash.ct.values[voxel]);
        const a = !Number.isNaN(value) && wash.shown(value) ? wash.alpha : 0;
        colour = [0, 1, 2].map((k) => Math.round((1 - a) * grey + a * colour[k])) as Rgb;
      }
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

/**
 * The boundary of a mask on a slice as an SVG path along voxel edges, in a panel of `width` × `height` pixels
 * (a structure is a set of voxels: its outline is drawn where it is, without smoothing).
 */
export function maskContourPath(mask: Slice, width: number, height: number): string {
  const sx = width / mask.cols;
  const sy = height / mask.rows;
  const inside = (r: number, c: number) => r >= 0 && c >= 0 && r < mask.rows && c < mask.cols && mask.values[r * mask.cols + c] > 0;
  const f = (v: number) => Number(v.toFixed(2));
  const parts: string[] = [];
  for (let r = 0; r < mask.rows; r++)
    for (let c = 0; c < mask.cols; c++) {
      if (!inside(r, c)) continue;
      const [x0, x1, y0, y1] = [f(c * sx), f((c + 1) * sx), f(r * sy), f((r + 1) * sy)];
      if (!inside(r - 1, c)) parts.push(`M${x0},${y0}H${x1}`);
      if (!inside(r + 1, c)) parts.push(`M${x0},${y1}H${x1}`);
      if (!inside(r, c - 1)) parts.push(`M${x0},${y0}V${y1}`);
      if (!inside(r, c + 1)) parts.push(`M${x1},${y0}V${y1}`);
    }
  return parts.join('');
}

/**
 * An isodose line: the level set `value = level` of a slice by marching squares between voxel centres (linear
 * interpolation along the cell edges; a saddle is split by the cell's mean), as an SVG path in panel pixels.
 */
export function isolinePath(slice: Slice, level: number, width: number, height: number): string {
  const { rows, cols, values } = slice;
  const sx = width / cols;
  const sy = height / rows;
  const f = (v: number) => Number(v.toFixed(2));
  const parts: string[] = [];
  const at = (r: number, c: number) => values[r * cols + c];
  // Corner (r, c) is the centre of voxel (r, c); a crossing between two corners at the linear interpolation.
  const cross = (r0: number, c0: number, r1: number, c1: number): [number, number] => {
    const a = at(r0, c0);
    const b = at(r1, c1);
    const t = a === b ? 0.5 : (level - a) / (b - a);
    return [f((c0 + t * (c1 - c0) + 0.5) * sx), f((r0 + t * (r1 - r0) + 0.5) * sy)];
  };
  for (let r = 0; r + 1 < rows; r++)
    for (let c = 0; c + 1 < cols; c++) {
      const v = [at(r, c), at(r, c + 1), at(r + 1, c + 1), at(r + 1, c)];
      if (v.some((x) => Number.isNaN(x))) continue;
      const above = v.map((x) => x >= level);
      const index = (above[0] ? 8 : 0) | (above[1] ? 4 : 0) | (above[2] ? 2 : 0) | (above[3] ? 1 : 0);
      if (index === 0 || index === 15) continue;
      const top = () => cross(r, c, r, c + 1);
      const right = () => cross(r, c + 1, r + 1, c + 1);
      const bottom = () => cross(r + 1, c, r + 1, c + 1);
      const left = () => cross(r, c, r + 1, c);
      const segments: [[number, number], [number, number]][] = [];
      const centreAbove = (v[0] + v[1] + v[2] + v[3]) / 4 >= level;
      switch (index) {
        case 1: case 14: segments.push([left(), bottom()]); break;
        case 2: case 13: segments.push([bottom(), right()]); break;
        case 3: case 12: segments.push([left(), right()]); break;
        case 4: case 11: segments.push([top(), right()]); break;
        case 6: case 9: segments.push([top(), bottom()]); break;
        case 7: case 8: segments.push([left(), top()]); break;
        case 5: // top-right and bottom-left above
          if (centreAbove) segments.push([left(), top()], [bottom(), right()]);
          else segments.push([top(), right()], [left(), bottom()]);
          break;
        case 10: // top-left and bottom-right above
          if (centreAbove) segments.push([top(), right()], [left(), bottom()]);
          else segments.push([left(), top()], [bottom(), right()]);
          break;
      }
      for (const [[x0, y0], [x1, y1]] of segments) parts.push(`M${x0},${y0}L${x1},${y1}`);
    }
  return parts.join('');
}

type Direction = readonly number[];

/**
 * The patient direction (DICOM LPS letters) that a step along array axis `axis` points to, positive or negative:
 * the largest component of that axis's row of the case's direction matrix (identity when absent), whose components
 * are in patient (z, y, x) order: +x left, +y posterior, +z superior.
 */
function axisLetter(axis: 0 | 1 | 2, sign: 1 | -1, direction?: Direction): string {
  const row = direction ? [direction[axis * 3]!, direction[axis * 3 + 1]!, direction[axis * 3 + 2]!] : [0, 1, 2].map((k) => (k === axis ? 1 : 0));
  let best = 0;
  for (let k = 1; k < 3; k++) if (Math.abs(row[k]!) > Math.abs(row[best]!)) best = k;
  const positive = sign * row[best]! > 0;
  return [positive ? 'S' : 'I', positive ? 'P' : 'A', positive ? 'L' : 'R'][best]!;
}

/**
 * Orientation letters of a view as extractSlice lays it out (top, bottom, left, right): axial rows follow array y
 * and columns array x; coronal and sagittal rows run against array z (highest index at the top), columns x or y.
 */
export function orientationLetters(view: View, direction?: Direction): [string, string, string, string] {
  const [rowAxis, rowSign, colAxis]: [0 | 1 | 2, 1 | -1, 0 | 1 | 2] = view === 'axial' ? [1, 1, 2] : view === 'coronal' ? [0, -1, 2] : [0, -1, 1];
  return [axisLetter(rowAxis, (-rowSign) as 1 | -1, direction), axisLetter(rowAxis, rowSign, direction), axisLetter(colAxis, -1, direction), axisLetter(colAxis, 1, direction)];
}

/** A scale bar length (mm) of about a third of `spanMm`: 1, 2, 5 × 10^k. */
export function scaleBarMm(spanMm: number): number {
  const target = spanMm / 3;
  const power = 10 ** Math.floor(Math.log10(target));
  let best = power;
  for (const step of [1, 2, 5]) if (step * power <= target) best = step * power;
  return best;
}

/** Lines drawn over a panel: structure contours, isodose lines (of `isodoseSlice`), orientation letters, a scale bar. */
export interface PanelOverlay {
  contours: { mask: Slice; colour: string }[];
  isodoses: { levelGy: number; colour: string; dash: number[] }[];
  isodoseSlice?: Slice;
  letters?: [string, string, string, string];
  scaleBar?: boolean;
}

type SliceCell = { slice: Slice; scale: ColourScale; outline?: SliceOutline; wash?: SliceWash; overlay?: PanelOverlay };

/** The Vega marks of a panel's overlay, drawn at (x, y) over a panel of width × height pixels at pxPerMm. */
function overlayMarks(overlay: PanelOverlay, slice: Slice, x: number, y: number, width: number, height: number, pxPerMm: number): vega.Mark[] {
  const marks: vega.Mark[] = [];
  const path = (d: string, stroke: string, strokeWidth: number, dash?: number[]): vega.Mark => ({
    type: 'path',
    encode: { enter: { x: { value: x }, y: { value: y }, path: { value: d }, stroke: { value: stroke }, strokeWidth: { value: strokeWidth }, ...(dash && dash.length ? { strokeDash: { value: dash } } : {}), strokeCap: { value: 'square' } } },
  });
  for (const { mask, colour } of overlay.contours) {
    const d = maskContourPath(mask, width, height);
    if (d) marks.push(path(d, colour, 1.3));
  }
  for (const { levelGy, colour, dash } of overlay.isodoses) {
    const d = isolinePath(overlay.isodoseSlice ?? slice, levelGy, width, height);
    if (d) marks.push(path(d, colour, 1.1, dash));
  }
  const label = (lx: number, ly: number, text: string, align: string, baseline: string): vega.Mark => ({
    type: 'text',
    encode: {
      enter: {
        x: { value: lx }, y: { value: ly }, text: { value: text }, align: { value: align as vega.Align }, baseline: { value: baseline as vega.TextBaseline },
        font: { value: FONT_FAMILY }, fontSize: { value: 10 }, fontWeight: { value: 'bold' }, fill: { value: '#ffffff' }, stroke: { value: '#000000' }, strokeWidth: { value: 0.4 },
      },
    },
  });
  if (overlay.letters) {
    const [top, bottom, left, right] = overlay.letters;
    marks.push(label(x + width / 2, y + 2, top, 'center', 'top'), label(x + width / 2, y + height - 2, bottom, 'center', 'bottom'), label(x + 3, y + height / 2, left, 'left', 'middle'), label(x + width - 3, y + height / 2, right, 'right', 'middle'));
  }
  if (overlay.scaleBar) {
    const mm = scaleBarMm(slice.cols * slice.colMm);
    const length = mm * pxPerMm;
    const bx = x + 5;
    const by = y + height - 7;
    marks.push({ type: 'rect', encode: { enter: { x: { value: bx }, y: { value: by }, width: { value: length }, height: { value: 3 }, fill: { value: '#ffffff' }, stroke: { value: '#000000' }, strokeWidth: { value: 0.5 } } } });
    marks.push(label(bx + length / 2, by - 1, `${mm} mm`, 'center', 'bottom'));
  }
  return marks;
}

const LINE_LEGEND_COLUMNS = 5;

/** An ordinal legend of line styles (contours, isodose lines) below the panels. */
export interface LineLegend {
  name: string;
  title: string;
  entries: { label: string; colour: string; dash?: number[] }[];
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
  cells: SliceCell[][];
  legends: SliceLegend[];
  lineLegends?: LineLegend[];
  /** one or more lines of text below the panels (Vega sizes text by an estimate: keep lines short) */
  footnote?: string | string[];
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
    row.forEach(({ slice, scale, outline, wash, overlay }, c) => {
      const { width, height } = size(slice);
      // Rasterised at twice the drawn size so the PNG stays sharp at the figure's 2× export.
      const png = slicePng(slice, width * 2, height * 2, scale, outline, wash);
      const x = columnX[c] + (columnWidths[c] - width) / 2;
      const yy = y + (rowHeights[r] - height) / 2;
      marks.push({
        type: 'image',
        encode: { enter: { x: { value: x }, y: { value: yy }, width: { value: width }, height: { value: height }, url: { value: `data:image/png;base64,${png.toString('base64')}` }, aspect: { value: false } } },
      });
      if (overlay) marks.push(...overlayMarks(overlay, slice, x, yy, width, height, pxPerMm));
      marks.push({ type: 'rect', encode: { enter: { x: { value: x }, y: { value: yy }, width: { value: width }, height: { value: height }, stroke: { value: '#333' }, strokeWidth: { value: 0.75 }, fill: { value: 'transparent' } } } });
    });
    y += rowHeights[r] + gap;
  });
  for (const line of typeof options.footnote === 'string' ? [options.footnote] : options.footnote ?? []) {
    marks.push(text(rowLabelWidth, y + 6, line, { baseline: { value: 'top' }, fontSize: { value: 11 }, fill: { value: '#444' } }));
    y += 16;
  }
  if (options.footnote) y += 4;
  const legendLength = Math.min(220, Math.max(100, (y - top) / options.legends.length - 60));
  // Line legends stacked below the panels, LINE_LEGEND_COLUMNS entries a row (Vega lays bottom legends side by
  // side, which would widen the figure far beyond the panels).
  const lineLegends = (options.lineLegends ?? []).map((legend) => {
    const placed = { ...legend, y: y + 6 };
    y += 20 * Math.ceil(legend.entries.length / LINE_LEGEND_COLUMNS) + 6;
    return placed;
  });
  const spec: vega.Spec = {
    $schema: 'https://vega.github.io/schema/vega/v6.json',
    width: columnX[columnX.length - 1] + columnWidths[columnWidths.length - 1],
    height: y,
    padding: 12,
    autosize: 'pad',
    background: 'white',
    title: { text: options.title, anchor: 'start', fontSize: 14, font: FONT_FAMILY, offset: 4 },
    config: { legend: { titleFont: FONT_FAMILY, labelFont: FONT_FAMILY, labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal' }, title: { font: FONT_FAMILY } },
    scales: [
      ...options.legends.map((legend): vega.Scale => ({
        name: legend.scaleName,
        type: 'linear',
        domain: legend.domain,
        range: { scheme: legend.scheme },
        reverse: legend.reverse ?? false,
        zero: false,
        nice: false,
      })),
      ...lineLegends.flatMap((legend): vega.Scale[] => [
        { name: `${legend.name}_colour`, type: 'ordinal', domain: legend.entries.map((e) => e.label), range: legend.entries.map((e) => e.colour) },
        { name: `${legend.name}_dash`, type: 'ordinal', domain: legend.entries.map((e) => e.label), range: legend.entries.map((e) => e.dash ?? [1, 0]) as unknown as vega.RangeScheme },
      ]),
    ],
    legends: [
      ...options.legends.map((legend): vega.Legend => ({
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
      ...lineLegends.map((legend): vega.Legend => ({
        stroke: `${legend.name}_colour`,
        strokeDash: `${legend.name}_dash`,
        title: legend.title,
        orient: 'none',
        legendX: rowLabelWidth,
        legendY: legend.y,
        direction: 'horizontal',
        columns: LINE_LEGEND_COLUMNS,
        titleLimit: 90,
        titleAlign: 'left',
        symbolType: 'stroke',
        symbolSize: 260,
        symbolStrokeWidth: 2,
        titleOrient: 'left',
        labelLimit: 130,
        columnPadding: 12,
        rowPadding: 4,
        encode: { symbols: { update: { fill: { value: 'transparent' } } } },
      })),
    ],
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
const BLACK: Rgb = [0, 0, 0];

/** The isodose lines of the dose slices: 95, 50 and 20 % of the prescription. */
export const ISODOSE_LEVELS = [
  { percent: 95, colour: '#ff00ff', dash: [6, 2] },
  { percent: 50, colour: '#000000', dash: [6, 2] },
  { percent: 20, colour: '#000000', dash: [2, 2] },
] as const;
/** The dose wash starts at this fraction of the prescription (the gamma cutoff); below it the CT shows alone. */
export const WASH_FROM_FRACTION = 0.1;
const WASH_ALPHA = 0.6;
/** The difference map spans ± this fraction of the prescription (saturating beyond). */
export const DIFFERENCE_RANGE_FRACTION = 0.1;
/** Differences smaller than this fraction of the prescription show the CT. */
const DIFFERENCE_SHOWN_FRACTION = 0.01;

export interface SliceStructure {
  name: string;
  mask: Uint8Array;
  colour: string;
}

/**
 * (3) Reference / prediction / difference slices of one case through `centre`: the dose washed over the CT, the
 * structures' contours, isodose lines at 95/50/20 % of the prescription, orientation letters (from the case's
 * direction matrix) and a scale bar in mm; the difference on a fixed scale of ±10 % of the prescription.
 */
export async function doseSlicesFigure(options: {
  caseId: string;
  runName: string;
  shape: Shape3;
  spacingMm: Shape3;
  centre: Shape3;
  /** what the centre is, for the title (e.g. "the PTV70 centre") */
  centreLabel: string;
  reference: Float32Array;
  prediction: Float32Array;
  /** HU, the reference's CT (prediction files hold none; both share the grid) */
  ct?: ArrayLike<number>;
  structures: SliceStructure[];
  prescriptionGy: number;
  direction?: number[];
}): Promise<RenderedFigure> {
  const { reference, prediction, prescriptionGy: rx } = options;
  const difference = new Float32Array(reference.length);
  let maxDose = 0;
  for (let i = 0; i < reference.length; i++) {
    difference[i] = prediction[i] - reference[i];
    maxDose = Math.max(maxDose, reference[i], prediction[i]);
  }
  // Dose bars end at the next 10 Gy above the maximum (e.g. 80 Gy for a 75 Gy hot spot).
  const doseTop = maxDose > 20 ? Math.ceil(maxDose / 10) * 10 : niceCeiling(maxDose);
  const diffTop = Number((DIFFERENCE_RANGE_FRACTION * rx).toPrecision(6));
  const doseScale: ColourScale = { table: colourTable('turbo'), low: 0, high: doseTop, missing: GREY };
  const diffScale: ColourScale = { table: colourTable('redblue', true), low: -diffTop, high: diffTop, missing: GREY };
  const isodoses = ISODOSE_LEVELS.map((level) => ({ levelGy: (level.percent / 100) * rx, colour: level.colour, dash: [...level.dash] }));
  const columns = [
    { volume: reference, scale: doseScale, isodoses: true, shown: (v: number) => v >= WASH_FROM_FRACTION * rx, alpha: WASH_ALPHA },
    { volume: prediction, scale: doseScale, isodoses: true, shown: (v: number) => v >= WASH_FROM_FRACTION * rx, alpha: WASH_ALPHA },
    { volume: difference, scale: diffScale, isodoses: false, shown: (v: number) => Math.abs(v) >= DIFFERENCE_SHOWN_FRACTION * rx, alpha: 0.85 },
  ];
  const cut = (volume: ArrayLike<number>, view: View) => extractSlice(volume, options.shape, options.spacingMm, options.centre, view);
  const cells = VIEWS.map((view) => {
    const ct = options.ct && cut(options.ct, view);
    const contours = options.structures.map((s) => ({ mask: cut(s.mask, view), colour: s.colour }));
    const letters = orientationLetters(view, options.direction);
    return columns.map(({ volume, scale, isodoses: withIsodoses, shown, alpha }, c): SliceCell => ({
      slice: cut(volume, view),
      scale,
      wash: ct ? { ct, alpha, shown } : undefined,
      overlay: { contours, isodoses: withIsodoses ? isodoses : [], letters, scaleBar: c === 0 },
    }));
  });
  const gy = (value: number) => `${Number(value.toFixed(1))} Gy`;
  return renderSliceGrid({
    title: `Dose: ${options.caseId} (${options.runName}), through ${options.centreLabel}`,
    rowLabels: cells.map((row) => row[0].slice.label),
    columnTitles: ['Reference', 'Prediction', 'Prediction − reference'],
    cells,
    footnote: [
      ...(options.ct ? [`CT ${CT_WINDOW_HU.low} to ${CT_WINDOW_HU.high} HU under a dose wash from ${Math.round(100 * WASH_FROM_FRACTION)} % of the prescription (${gy(rx)})`] : []),
      `difference: ±${Math.round(100 * DIFFERENCE_RANGE_FRACTION)} % of the prescription (±${gy(diffTop)}), saturating beyond`,
    ],
    legends: [
      { scaleName: 'dose', title: 'Dose (Gy)', domain: [0, doseTop], scheme: 'turbo' },
      { scaleName: 'difference', title: 'Difference (Gy)', domain: [-diffTop, diffTop], scheme: 'redblue', reverse: true },
    ],
    lineLegends: [
      ...(options.structures.length ? [{ name: 'contours', title: 'Contours', entries: options.structures.map((s) => ({ label: s.name, colour: s.colour })) }] : []),
      { name: 'isodoses', title: 'Isodoses', entries: ISODOSE_LEVELS.map((level) => ({ label: `${level.percent} % (${gy((level.percent / 100) * rx)})`, colour: level.colour, dash: [...level.dash] })) },
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
