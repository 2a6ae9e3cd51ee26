/**
 * A physicist's view of one case: a slice of the CT (soft-tissue window) with a dose colour wash, structure
 * contours, a labelled colour bar in Gy, orientation letters and a 5 cm scale bar, at the physical aspect of the
 * voxel spacing. The slice is rasterised with pngjs; the annotations are SVG, drawn by resvg.
 *
 * Orientation (DICOM LPS, x towards the patient's left, y posterior, z superior), radiological display:
 * axial: anterior at the top, the patient's left on the right; coronal: superior at the top, left on the right;
 * sagittal: superior at the top, anterior on the left.
 */
import { Resvg } from '@resvg/resvg-js';
import { PNG } from 'pngjs';

import type { CaseData } from '../data/case.js';
import { FONT_FAMILY, FONT_FILES } from './fonts.js';

export type CasePlane = 'axial' | 'coronal' | 'sagittal';

export interface CaseSliceOptions {
  plane?: CasePlane;
  /** Slice index along the plane's normal axis; default: through the centre of PTV70 (or the volume's centre). */
  index?: number;
  /** Doses below this are not washed (default 20% of the colour bar's top). */
  washFromGy?: number;
  /** Top of the colour bar (default: 75 Gy, or the case's maximum dose rounded up to 5 Gy if higher). */
  maxGy?: number;
  /** Screen pixels per millimetre (default 2.5). */
  pixelsPerMm?: number;
  title?: string;
}


/** Contour colours by structure name (case-insensitive); others cycle through SPARE_COLOURS. */
const STRUCTURE_COLOURS: Record<string, string> = {
  ptv70: '#ff1f1f',
  ptv56: '#ff9f1a',
  prostate: '#00e5ff',
  rectum: '#b5651d',
  bladder: '#ffe81a',
  femur_l: '#3ddc3d',
  femur_r: '#2f8cff',
  bowel: '#ff66cc',
};
const SPARE_COLOURS = ['#ffffff', '#9b59b6', '#1abc9c', '#e67e22'];

const SOFT_TISSUE_WINDOW_HU = { low: -160, high: 240 };
const WASH_OPACITY = 0.5;

/** The "turbo"-like rainbow a treatment planning system uses for dose washes: blue (low) to red (high). */
export function doseColour(fraction: number): [number, number, number] {
  const stops: [number, [number, number, number]][] = [
    [0, [48, 18, 160]],
    [0.15, [40, 100, 240]],
    [0.35, [30, 200, 220]],
    [0.5, [60, 230, 100]],
    [0.65, [200, 240, 40]],
    [0.8, [255, 170, 20]],
    [0.92, [240, 60, 20]],
    [1, [150, 10, 10]],
  ];
  const f = Math.min(1, Math.max(0, fraction));
  for (let i = 1; i < stops.length; i++) {
    const [f1, c1] = stops[i]!;
    const [f0, c0] = stops[i - 1]!;
    if (f <= f1) {
      const t = (f - f0) / (f1 - f0);
      return [0, 1, 2].map((k) => Math.round(c0[k]! + t * (c1[k]! - c0[k]!))) as [number, number, number];
    }
  }
  return stops[stops.length - 1]![1];
}

interface Plane {
  rows: number;
  cols: number;
  rowMm: number;
  colMm: number;
  /** voxel index of (row, col) */
  voxel: (row: number, col: number) => number;
  index: number;
  axisName: string;
  /** orientation letters: top, bottom, left, right */
  letters: [string, string, string, string];
}

function planeOf(data: CaseData, plane: CasePlane, index: number): Plane {
  const [nz, ny, nx] = data.shape;
  const [dz, dy, dx] = data.spacingMm;
  if (plane === 'axial') {
    return { rows: ny, cols: nx, rowMm: dy, colMm: dx, voxel: (r, c) => (index * ny + r) * nx + c, index, axisName: 'z', letters: ['A', 'P', 'R', 'L'] };
  }
  if (plane === 'coronal') {
    return { rows: nz, cols: nx, rowMm: dz, colMm: dx, voxel: (r, c) => ((nz - 1 - r) * ny + index) * nx + c, index, axisName: 'y', letters: ['S', 'I', 'R', 'L'] };
  }
  return { rows: nz, cols: ny, rowMm: dz, colMm: dy, voxel: (r, c) => ((nz - 1 - r) * ny + c) * nx + index, index, axisName: 'x', letters: ['S', 'I', 'A', 'P'] };
}

function defaultIndex(data: CaseData, plane: CasePlane): number {
  const [nz, ny, nx] = data.shape;
  const voxels = nz * ny * nx;
  const channel = data.structures.findIndex((name) => name.toLowerCase() === 'ptv70');
  const axis = plane === 'axial' ? 0 : plane === 'coronal' ? 1 : 2;
  const size = data.shape[axis];
  if (channel < 0) return Math.floor(size / 2);
  const mask = data.masks.subarray(channel * voxels, (channel + 1) * voxels);
  let sum = 0;
  let count = 0;
  for (let i = 0; i < voxels; i++) {
    if (!mask[i]) continue;
    const coordinate = axis === 0 ? Math.floor(i / (ny * nx)) : axis === 1 ? Math.floor(i / nx) % ny : i % nx;
    sum += coordinate;
    count++;
  }
  return count === 0 ? Math.floor(size / 2) : Math.round(sum / count);
}

/** Outline of a mask on the plane as an SVG path along pixel edges (in screen pixels). */
function contourPath(mask: Uint8Array, p: Plane, sx: number, sy: number): string {
  const inside = (r: number, c: number) => r >= 0 && c >= 0 && r < p.rows && c < p.cols && mask[p.voxel(r, c)] === 1;
  const parts: string[] = [];
  const f = (v: number) => Number(v.toFixed(2));
  for (let r = 0; r < p.rows; r++) {
    for (let c = 0; c < p.cols; c++) {
      if (!inside(r, c)) continue;
      const x0 = f(c * sx);
      const x1 = f((c + 1) * sx);
      const y0 = f(r * sy);
      const y1 = f((r + 1) * sy);
      if (!inside(r - 1, c)) parts.push(`M${x0} ${y0}H${x1}`);
      if (!inside(r + 1, c)) parts.push(`M${x0} ${y1}H${x1}`);
      if (!inside(r, c - 1)) parts.push(`M${x0} ${y0}V${y1}`);
      if (!inside(r, c + 1)) parts.push(`M${x1} ${y0}V${y1}`);
    }
  }
  return parts.join('');
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Renders one slice of a case as a PNG (see the module comment for what is drawn). */
export function renderCaseSlicePng(data: CaseData, options: CaseSliceOptions = {}): Buffer {
  const plane = options.plane ?? 'axial';
  const axis = plane === 'axial' ? 0 : plane === 'coronal' ? 1 : 2;
  const index = options.index ?? defaultIndex(data, plane);
  if (!Number.isInteger(index) || index < 0 || index >= data.shape[axis]) {
    throw new RangeError(`${plane} slice index must be an integer from 0 to ${data.shape[axis] - 1}, got ${index}`);
  }
  const p = planeOf(data, plane, index);
  const [nz, ny, nx] = data.shape;
  const voxels = nz * ny * nx;
  let doseMax = 0;
  if (data.dose) for (let i = 0; i < voxels; i++) doseMax = Math.max(doseMax, data.dose[i]!);
  const maxGy = options.maxGy ?? Math.max(75, Math.ceil(doseMax / 5) * 5);
  const washFromGy = options.washFromGy ?? 0.2 * maxGy;

  // Raster: CT in the soft-tissue window, dose washed over it.
  const raster = new PNG({ width: p.cols, height: p.rows });
  const { low, high } = SOFT_TISSUE_WINDOW_HU;
  for (let r = 0; r < p.rows; r++) {
    for (let c = 0; c < p.cols; c++) {
      const v = p.voxel(r, c);
      const grey = Math.round(255 * Math.min(1, Math.max(0, (data.ct[v]! - low) / (high - low))));
      let rgb: [number, number, number] = [grey, grey, grey];
      const dose = data.dose ? data.dose[v]! : 0;
      if (dose >= washFromGy) {
        const colour = doseColour(dose / maxGy);
        rgb = [0, 1, 2].map((k) => Math.round((1 - WASH_OPACITY) * rgb[k]! + WASH_OPACITY * colour[k]!)) as [number, number, number];
      }
      const o = (r * p.cols + c) * 4;
      raster.data[o] = rgb[0];
      raster.data[o + 1] = rgb[1];
      raster.data[o + 2] = rgb[2];
      raster.data[o + 3] = 255;
    }
  }
  const rasterPng = PNG.sync.write(raster).toString('base64');

  const ppm = options.pixelsPerMm ?? 2.5;
  const sx = p.colMm * ppm;
  const sy = p.rowMm * ppm;
  const imageW = p.cols * sx;
  const imageH = p.rows * sy;
  const margin = 16;
  const titleH = 34;
  const barW = 22;
  const legendX = margin + imageW + 28;
  const width = legendX + 190;
  const top = titleH;
  const barTop = top + 22;
  const barH = Math.min(imageH - 40, 300);
  const legendBottom = barTop + barH + 44 + 18 * data.structures.length + 16;
  const height = Math.max(top + imageH + 24, legendBottom);
  const svg: string[] = [];
  svg.push(`<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${Math.ceil(width)}" height="${Math.ceil(height)}" font-family="${FONT_FAMILY}">`);
  svg.push(`<rect width="100%" height="100%" fill="white"/>`);
  const title = options.title ?? `${data.caseId}: ${plane} slice ${p.axisName} = ${index}${options.index === undefined ? ' (PTV70 centre)' : ''}`;
  svg.push(`<text x="${margin}" y="22" font-size="16" font-weight="bold" fill="#111">${escapeXml(title)}</text>`);
  svg.push(`<g transform="translate(${margin} ${top})">`);
  svg.push(`<image width="${imageW}" height="${imageH}" preserveAspectRatio="none" xlink:href="data:image/png;base64,${rasterPng}"/>`);
  // Contours.
  const legend: { name: string; colour: string }[] = [];
  data.structures.forEach((name, s) => {
    const mask = data.masks.subarray(s * voxels, (s + 1) * voxels);
    const colour = STRUCTURE_COLOURS[name.toLowerCase()] ?? SPARE_COLOURS[s % SPARE_COLOURS.length]!;
    legend.push({ name, colour });
    const path = contourPath(mask, p, sx, sy);
    if (path) svg.push(`<path d="${path}" fill="none" stroke="${colour}" stroke-width="2" stroke-linecap="square"/>`);
  });
  // Orientation letters and a 5 cm scale bar.
  const letter = (x: number, y: number, text: string, anchor: string) =>
    `<text x="${x}" y="${y}" font-size="15" font-weight="bold" fill="white" stroke="black" stroke-width="0.6" text-anchor="${anchor}">${text}</text>`;
  const [tl, bl, ll, rl] = p.letters;
  svg.push(letter(imageW / 2, 18, tl, 'middle'), letter(imageW / 2, imageH - 8, bl, 'middle'), letter(8, imageH / 2 + 5, ll, 'start'), letter(imageW - 8, imageH / 2 + 5, rl, 'end'));
  const bar = 50 * ppm;
  svg.push(`<rect x="${imageW - bar - 12}" y="${imageH - 20}" width="${bar}" height="4" fill="white" stroke="black" stroke-width="0.5"/>`);
  svg.push(`<text x="${imageW - bar / 2 - 12}" y="${imageH - 26}" font-size="12" fill="white" stroke="black" stroke-width="0.4" text-anchor="middle">5 cm</text>`);
  svg.push(`</g>`);

  // Colour bar in Gy.
  svg.push(`<text x="${legendX}" y="${top + 10}" font-size="13" fill="#111">Dose (Gy)</text>`);
  const steps = 60;
  for (let i = 0; i < steps; i++) {
    const [r, g, b] = doseColour(1 - (i + 0.5) / steps);
    svg.push(`<rect x="${legendX}" y="${(barTop + (i * barH) / steps).toFixed(2)}" width="${barW}" height="${(barH / steps + 0.6).toFixed(2)}" fill="rgb(${r},${g},${b})"/>`);
  }
  svg.push(`<rect x="${legendX}" y="${barTop}" width="${barW}" height="${barH}" fill="none" stroke="#333" stroke-width="0.8"/>`);
  for (let gy = 0; gy <= maxGy + 1e-9; gy += 10) {
    const y = barTop + barH * (1 - gy / maxGy);
    svg.push(`<line x1="${legendX + barW}" x2="${legendX + barW + 5}" y1="${y}" y2="${y}" stroke="#333"/>`);
    svg.push(`<text x="${legendX + barW + 8}" y="${y + 4}" font-size="12" fill="#222">${gy}</text>`);
  }
  const washY = barTop + barH * (1 - washFromGy / maxGy);
  svg.push(`<line x1="${legendX - 4}" x2="${legendX + barW}" y1="${washY}" y2="${washY}" stroke="#000" stroke-dasharray="3 2"/>`);
  svg.push(`<text x="${legendX}" y="${barTop + barH + 18}" font-size="11" fill="#555">wash from ${washFromGy.toFixed(0)} Gy</text>`);
  // Structure legend.
  let ly = barTop + barH + 44;
  svg.push(`<text x="${legendX}" y="${ly - 6}" font-size="13" fill="#111">Structures</text>`);
  for (const { name, colour } of legend) {
    ly += 18;
    svg.push(`<line x1="${legendX}" x2="${legendX + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${colour}" stroke-width="3"/>`);
    svg.push(`<text x="${legendX + 30}" y="${ly}" font-size="12" fill="#222">${escapeXml(name)}</text>`);
  }
  svg.push(`<text x="${margin}" y="${top + imageH + 16}" font-size="11" fill="#555">CT window ${low} to ${high} HU; voxel ${data.spacingMm.join(' x ')} mm (z, y, x)</text>`);
  svg.push(`</svg>`);

  const resvg = new Resvg(svg.join('\n'), {
    background: 'white',
    font: { loadSystemFonts: FONT_FILES.length === 0, fontFiles: FONT_FILES, defaultFontFamily: FONT_FAMILY },
  });
  return resvg.render().asPng();
}
