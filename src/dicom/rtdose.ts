/**
 * An RTDOSE on its own grid (Dose Grid Scaling, Grid Frame Offset Vector, its own origin, spacing and orientation),
 * and its trilinear resampling in patient coordinates onto the CT grid (natively; native/include/vmat/resample.h).
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';

import { invalidInput } from '../errors.js';
import { callNative, type CallOptions } from '../native/call.js';
import { loadNative } from '../native/loader.js';
import { cross, orientationAxes, placementOf, type PatientGrid, type Vec3 } from './geometry.js';
import { decodePixels, parseDicom, type DicomObject } from './parse.js';

export interface DoseGrid {
  /** Gy, [frames, rows, columns] on `grid` */
  gy: Float32Array;
  grid: PatientGrid;
  units: string;
  type: string;
  summationType: string;
  object: DicomObject;
}

const shown = (path: string) => relative(process.cwd(), path) || path;

export interface ReadDoseOptions {
  /** Gy that a RELATIVE dose of 1.0 stands for; without it a RELATIVE dose is refused. */
  prescriptionGy?: number;
}

/** Reads an RTDOSE into Gy on its own grid; every refusal is one sentence naming the file. */
export async function readDoseGrid(path: string, options: ReadDoseOptions = {}): Promise<DoseGrid> {
  const name = shown(path);
  const object = parseDicom(name, new Uint8Array(await readFile(path)));
  const units = (object.string('x30040002') ?? '').toUpperCase();
  const type = (object.string('x30040004') ?? '').toUpperCase();
  if (units !== 'GY' && units !== 'RELATIVE') throw invalidInput(`${name}: the RTDOSE has Dose Units '${units || '(none)'}': expected GY (or RELATIVE with prescriptionGy)`, { settings: ['prescriptionGy'] });
  if (units === 'RELATIVE' && options.prescriptionGy === undefined) {
    throw invalidInput(`${name}: the RTDOSE is in RELATIVE units; give the dose in Gy that 1.0 stands for as prescriptionGy`, { settings: ['prescriptionGy'] });
  }
  if (type === 'ERROR') throw invalidInput(`${name}: the RTDOSE has Dose Type ERROR (a dose difference), not a dose`);

  const rows = object.uint16('x00280010');
  const columns = object.uint16('x00280011');
  const frames = object.number('x00280008', 'Number of Frames') ?? 1;
  if (!rows || !columns || !(Number.isInteger(frames) && frames >= 1)) throw invalidInput(`${name}: the RTDOSE has no valid Rows, Columns and Number of Frames`);
  const position = object.numbers('x00200032', 'Image Position (Patient)');
  if (!position || position.length !== 3) throw invalidInput(`${name}: the RTDOSE has no valid Image Position (Patient) (0020,0032): expected 3 numbers`);
  const pixelSpacing = object.numbers('x00280030', 'Pixel Spacing');
  if (!pixelSpacing || pixelSpacing.length !== 2 || !pixelSpacing.every((s) => s > 0)) throw invalidInput(`${name}: the RTDOSE has no valid Pixel Spacing (0028,0030)`);
  const { row, column } = orientationAxes(object.numbers('x00200037', 'Image Orientation (Patient)'), name, 'RTDOSE');
  const normal = cross(row, column);

  // Frame offsets along the normal: relative to the first frame (first value 0), or, for an axial grid only,
  // the frames' z positions (first value = the z of Image Position).
  let offsets = object.numbers('x3004000c', 'Grid Frame Offset Vector') ?? (frames === 1 ? [0] : undefined);
  if (!offsets || offsets.length !== frames) throw invalidInput(`${name}: the RTDOSE's Grid Frame Offset Vector (3004,000C) has ${offsets?.length ?? 0} values for ${frames} frames`);
  if (offsets[0] !== 0) {
    const axial = Math.abs(normal[2] - 1) < 1e-4;
    if (!axial || Math.abs(offsets[0]! - position[2]!) > 1e-3) {
      throw invalidInput(`${name}: the RTDOSE's Grid Frame Offset Vector starts at ${offsets[0]}, neither 0 (offsets from the first frame) nor its z position ${position[2]}`);
    }
    offsets = offsets.map((o) => o - offsets![0]!);
  }
  let step = frames > 1 ? offsets[1]! - offsets[0]! : 1;
  if (step === 0) throw invalidInput(`${name}: the RTDOSE has two frames at the same offset`);
  for (let f = 1; f < frames; f++) {
    const here = offsets[f]! - offsets[f - 1]!;
    if (Math.abs(here - step) > Math.max(1e-3, 0.01 * Math.abs(step))) {
      throw invalidInput(`${name}: the RTDOSE's frames are not evenly spaced (offsets ${offsets[f - 1]} and ${offsets[f]} mm after a step of ${step} mm), which vmat-native does not resample`);
    }
  }
  if (frames > 1) step = (offsets[frames - 1]! - offsets[0]!) / (frames - 1);
  const grid: PatientGrid = {
    shape: [frames, rows, columns],
    spacingMm: [Math.abs(step), pixelSpacing[0]!, pixelSpacing[1]!],
    originLps: position as Vec3,
    axesLps: [step < 0 ? (normal.map((v) => -v) as Vec3) : normal, column, row],
  };

  const bits = object.uint16('x00280100') ?? 32;
  const signed = object.uint16('x00280103') === 1;
  const count = frames * rows * columns;
  const raw = decodePixels(object.pixelBytes('RTDOSE'), bits, signed, count, 'RTDOSE', name);
  const scaling = object.number('x3004000e', 'Dose Grid Scaling') ?? 1;
  if (!(scaling > 0)) throw invalidInput(`${name}: the RTDOSE's Dose Grid Scaling (3004,000E) is ${scaling}: expected a positive number`);
  const factor = scaling * (units === 'RELATIVE' ? options.prescriptionGy! : 1);
  const gy = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const value = raw[i]!;
    if (value < 0) throw invalidInput(`${name}: the RTDOSE holds a negative dose (${value * factor} Gy at voxel ${i}): expected doses >= 0`);
    gy[i] = value * factor;
  }
  return { gy, grid, units, type: type || 'PHYSICAL', summationType: (object.string('x3004000a') ?? '').toUpperCase(), object };
}

/** The dose at every voxel centre of `target` (trilinear in patient coordinates); NaN outside the dose grid. */
export async function resampleDose(dose: DoseGrid, target: PatientGrid, options: CallOptions<unknown> = {}): Promise<Float32Array> {
  const result = await callNative<{ data: Float32Array }>(
    (native) => loadNative().dicom.resampleTrilinear(dose.gy, [...dose.grid.shape], placementOf(dose.grid), [...target.shape], placementOf(target), NaN, native),
    options,
  );
  return result.data;
}

