/**
 * A CT series as one volume in HU: slices sorted along their normal, spacing checked, Rescale Slope/Intercept
 * applied, and the volume stored head-up in patient axes (LPS) when the series is axial, whatever the patient's
 * position (head or feet first, supine or prone); other series keep their own axes, recorded in `direction`.
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';

import { invalidInput } from '../errors.js';
import { axisMapping, cross, dot, IDENTITY_MAP, isIdentityMap, mappedGrid, norm, orientationAxes, remapVolume, sub, type AxisMap, type PatientGrid, type Vec3 } from './geometry.js';
import { decodePixels, parseDicom, type DicomObject } from './parse.js';
import type { CtFile } from './scan.js';

export interface CtVolume {
  /** HU, [Z,Y,X] on `grid` */
  hu: Int16Array;
  grid: PatientGrid;
  /** the series' own axes (slice normal, column direction, row direction), to write a dose back in them */
  acquisitionAxes: [Vec3, Vec3, Vec3];
  /** the files in slice order */
  files: string[];
  /** one sentence each: things the user may want to know, not problems */
  notes: string[];
  /** the first slice's attributes (patient, study, equipment) */
  first: DicomObject;
}

const shown = (path: string) => relative(process.cwd(), path) || path;
const CANONICAL_AXES: Vec3[] = [
  [0, 0, 1],
  [0, 1, 0],
  [1, 0, 0],
];

interface Slice {
  file: CtFile;
  object: DicomObject;
  position: Vec3;
  /** along the slice normal, mm */
  along: number;
}

function sameNumbers(a: number[] | undefined, b: number[] | undefined, tolerance: number): boolean {
  return !!a && !!b && a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) <= tolerance);
}

/** Reads, checks and assembles a CT series; every refusal is one sentence naming the files concerned. */
export async function readCtSeries(files: readonly CtFile[]): Promise<CtVolume> {
  const uid = files[0]!.seriesInstanceUid;
  if (files.length < 2) throw invalidInput(`CT series ${uid} has ${files.length} slice (${shown(files[0]!.path)}): expected a volume of at least 2 slices`);
  const slices: Slice[] = [];
  for (const file of files) {
    const object = parseDicom(shown(file.path), new Uint8Array(await readFile(file.path)));
    const position = object.numbers('x00200032', 'Image Position (Patient)');
    if (!position || position.length !== 3) throw invalidInput(`${shown(file.path)}: the CT image has no valid Image Position (Patient) (0020,0032): expected 3 numbers`);
    slices.push({ file, object, position: position as Vec3, along: 0 });
  }

  // One geometry for all slices: a series that mixes sizes, spacings or orientations is not one volume.
  const reference = slices[0]!;
  const describe = (slice: Slice) =>
    `${slice.object.uint16('x00280010')}×${slice.object.uint16('x00280011')} pixels of ${(slice.object.numbers('x00280030', 'Pixel Spacing') ?? []).join('×')} mm, orientation [${(slice.object.numbers('x00200037', 'Image Orientation (Patient)') ?? []).join(', ')}]`;
  for (const slice of slices) {
    const same =
      slice.object.uint16('x00280010') === reference.object.uint16('x00280010') &&
      slice.object.uint16('x00280011') === reference.object.uint16('x00280011') &&
      sameNumbers(slice.object.numbers('x00280030', 'Pixel Spacing'), reference.object.numbers('x00280030', 'Pixel Spacing'), 1e-4) &&
      sameNumbers(slice.object.numbers('x00200037', 'Image Orientation (Patient)'), reference.object.numbers('x00200037', 'Image Orientation (Patient)'), 1e-4) &&
      slice.file.frameOfReferenceUid === reference.file.frameOfReferenceUid;
    if (!same) {
      throw invalidInput(
        `CT series ${uid} mixes slices of different geometry: ${shown(reference.file.path)} has ${describe(reference)}${reference.file.frameOfReferenceUid === slice.file.frameOfReferenceUid ? '' : ` in frame of reference ${reference.file.frameOfReferenceUid}`}, ` +
          `${shown(slice.file.path)} has ${describe(slice)}${reference.file.frameOfReferenceUid === slice.file.frameOfReferenceUid ? '' : ` in ${slice.file.frameOfReferenceUid}`}`,
      );
    }
  }
  const rows = reference.object.uint16('x00280010');
  const columns = reference.object.uint16('x00280011');
  if (!rows || !columns) throw invalidInput(`${shown(reference.file.path)}: the CT image has no Rows (0028,0010) or Columns (0028,0011)`);
  const pixelSpacing = reference.object.numbers('x00280030', 'Pixel Spacing');
  if (!pixelSpacing || pixelSpacing.length !== 2 || !pixelSpacing.every((s) => s > 0)) {
    throw invalidInput(`${shown(reference.file.path)}: the CT image has no valid Pixel Spacing (0028,0030): expected 2 positive numbers (mm)`);
  }
  const { row, column } = orientationAxes(reference.object.numbers('x00200037', 'Image Orientation (Patient)'), shown(reference.file.path), 'CT image');
  const normal = cross(row, column);

  for (const slice of slices) slice.along = dot(slice.position, normal);
  slices.sort((a, b) => a.along - b.along);
  const steps = slices.slice(1).map((slice, i) => slice.along - slices[i]!.along);
  const sorted = [...steps].sort((a, b) => a - b);
  const spacing = sorted[sorted.length >> 1]!;
  const tolerance = Math.max(0.01, 0.01 * spacing);
  for (let i = 0; i < steps.length; i++) {
    const [a, b] = [slices[i]!, slices[i + 1]!];
    if (steps[i]! <= tolerance) {
      throw invalidInput(`CT series ${uid} has two slices at the same position (${a.along.toFixed(2)} mm along the slice normal): ${shown(a.file.path)} and ${shown(b.file.path)}`);
    }
  }
  if (!(spacing > tolerance)) throw invalidInput(`CT series ${uid} has no slice spacing: its slices lie on one plane`);
  for (let i = 0; i < steps.length; i++) {
    if (Math.abs(steps[i]! - spacing) > tolerance) {
      const [a, b] = [slices[i]!, slices[i + 1]!];
      const missing = Math.round(steps[i]! / spacing) - 1;
      throw invalidInput(
        `CT series ${uid} is not evenly spaced: ${steps[i]!.toFixed(2)} mm between ${shown(a.file.path)} and ${shown(b.file.path)} where the other slices are ${spacing.toFixed(2)} mm apart` +
          (missing >= 1 && Math.abs(steps[i]! - (missing + 1) * spacing) <= tolerance ? ` (${missing} slice${missing > 1 ? 's' : ''} missing)` : ''),
      );
    }
  }
  // Gantry tilt: the slices' corners do not line up along the normal.
  const drift = sub(sub(slices.at(-1)!.position, slices[0]!.position), normal.map((n) => n * (slices.at(-1)!.along - slices[0]!.along)) as Vec3);
  if (norm(drift) > Math.max(0.05, 0.01 * spacing)) {
    throw invalidInput(
      `CT series ${uid} is sheared (a gantry tilt: its slices move ${norm(drift).toFixed(2)} mm sideways from ${shown(slices[0]!.file.path)} to ${shown(slices.at(-1)!.file.path)}); resample it to an untilted volume first`,
    );
  }

  const acquisition: PatientGrid = {
    shape: [slices.length, rows, columns],
    spacingMm: [spacing, pixelSpacing[0]!, pixelSpacing[1]!],
    originLps: slices[0]!.position,
    axesLps: [normal, column, row],
  };
  const hu = new Int16Array(slices.length * rows * columns);
  const notes: string[] = [];
  let clipped = 0;
  for (let s = 0; s < slices.length; s++) clipped += readSliceHu(slices[s]!, rows * columns, hu.subarray(s * rows * columns, (s + 1) * rows * columns));
  if (clipped > 0) notes.push(`${clipped} CT voxels beyond the int16 range were clipped to -32768..32767 HU`);

  // Axial series are stored in the patient's axes (z up, y posterior, x left); others as acquired.
  let maps: AxisMap[] = IDENTITY_MAP;
  if (Math.abs(Math.abs(normal[2]) - 1) < 1e-4) {
    maps = axisMapping(acquisition.axesLps, CANONICAL_AXES) ?? IDENTITY_MAP;
  } else {
    notes.push(`the CT series is not axial (slice normal [${normal.map((v) => v.toFixed(3)).join(', ')}]); it is kept in its own axes, recorded in direction`);
  }
  const grid = mappedGrid(acquisition, maps);
  return {
    hu: isIdentityMap(maps) ? hu : remapVolume(hu, acquisition.shape, maps),
    grid,
    acquisitionAxes: acquisition.axesLps,
    files: slices.map((s) => s.file.path),
    notes,
    first: slices[0]!.object,
  };
}

/** Decodes one slice into HU (rounded, clipped to int16); returns the number of clipped voxels. */
function readSliceHu(slice: Slice, count: number, out: Int16Array): number {
  const { object } = slice;
  const path = shown(slice.file.path);
  if ((object.uint16('x00280002') ?? 1) !== 1) throw invalidInput(`${path}: the CT image has ${object.uint16('x00280002')} samples per pixel: expected 1 (greyscale)`);
  const bits = object.uint16('x00280100') ?? 16;
  const signed = object.uint16('x00280103') === 1;
  const pixels = decodePixels(object.pixelBytes('CT image'), bits, signed, count, 'CT image', path);
  const slope = object.number('x00281053', 'Rescale Slope') ?? 1;
  const intercept = object.number('x00281052', 'Rescale Intercept') ?? 0;
  let clipped = 0;
  if (slope === 1 && Number.isInteger(intercept)) {
    for (let i = 0; i < count; i++) {
      const value = pixels[i]! + intercept;
      out[i] = value < -32768 ? -32768 : value > 32767 ? 32767 : value;
      if (value < -32768 || value > 32767) clipped++;
    }
  } else {
    for (let i = 0; i < count; i++) {
      const value = Math.round(pixels[i]! * slope + intercept);
      out[i] = value < -32768 ? -32768 : value > 32767 ? 32767 : value;
      if (value < -32768 || value > 32767) clipped++;
    }
  }
  return clipped;
}
