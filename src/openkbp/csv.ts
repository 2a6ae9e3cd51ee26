/**
 * Readers of the OpenKBP CSV files: the sparse `flat_index,value` volumes (a `,data` header, then one row per
 * nonzero voxel; a mask's rows have an empty value) and `voxel_dimensions.csv` (three sizes in mm). Every problem is
 * one sentence naming the file and line, what was found and what was expected.
 */
import { invalidInput } from '../errors.js';
import { OPENKBP_VOXELS } from './layout.js';

export interface SparseValues {
  indices: Int32Array;
  values: Float64Array;
}

function shown(line: string): string {
  const text = line.length > 60 ? `${line.slice(0, 57)}...` : line;
  return `'${text}'`;
}

/** Calls `row(lineNumber, line)` for each line after the header, skipping blank lines (as pandas does). */
function forEachRow(text: string, file: string, row: (lineNumber: number, line: string) => void): void {
  let start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let lineNumber = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    let line = text.slice(start, end);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    lineNumber++;
    start = end + 1;
    if (lineNumber === 1) {
      if (line.replace(/\s/g, '') !== ',data') throw invalidInput(`${file} starts with ${shown(line)}: expected the OpenKBP header ',data'`);
      continue;
    }
    if (line.trim() !== '') row(lineNumber, line);
  }
  if (lineNumber === 0) throw invalidInput(`${file} is empty: expected the OpenKBP header ',data' and one row per voxel`);
}

/** The flat index before the comma of `line`, checked to lie on the 128³ grid. */
function flatIndex(file: string, lineNumber: number, line: string, comma: number): number {
  const text = line.slice(0, comma).trim();
  const index = /^\d{1,8}$/.test(text) ? Number(text) : NaN;
  if (!(index < OPENKBP_VOXELS)) {
    throw invalidInput(`${file} line ${lineNumber} is ${shown(line)}: expected a flat index from 0 to ${OPENKBP_VOXELS - 1} (the 128³ grid) before the comma`);
  }
  return index;
}

/**
 * A sparse volume of values (dose.csv, ct.csv). `check` may refuse a value with the end of a sentence ("expected a
 * dose ≥ 0 Gy"). An index given twice is refused: the file is corrupt, and the challenge's loader would silently keep
 * the last.
 */
export function parseSparseValues(text: string, file: string, check?: (value: number) => string | undefined): SparseValues {
  const indices: number[] = [];
  const values: number[] = [];
  const seenOn = new Int32Array(OPENKBP_VOXELS);
  forEachRow(text, file, (lineNumber, line) => {
    const comma = line.indexOf(',');
    if (comma < 0 || line.indexOf(',', comma + 1) >= 0) throw invalidInput(`${file} line ${lineNumber} is ${shown(line)}: expected two columns, flat_index,value`);
    const index = flatIndex(file, lineNumber, line, comma);
    const valueText = line.slice(comma + 1).trim();
    const value = valueText === '' ? NaN : Number(valueText);
    if (!Number.isFinite(value)) throw invalidInput(`${file} line ${lineNumber} is ${shown(line)}: expected a finite number after the comma`);
    const problem = check?.(value);
    if (problem) throw invalidInput(`${file} line ${lineNumber} is ${shown(line)}: ${problem}`);
    if (seenOn[index]) throw invalidInput(`${file} line ${lineNumber} gives the flat index ${index} again (first on line ${seenOn[index]}): expected each voxel once`);
    seenOn[index] = lineNumber;
    indices.push(index);
    values.push(value);
  });
  return { indices: Int32Array.from(indices), values: Float64Array.from(values) };
}

/** A sparse mask (a structure, possible_dose_mask.csv): the flat indices of its voxels. */
export function parseSparseMask(text: string, file: string): Int32Array {
  const indices: number[] = [];
  forEachRow(text, file, (lineNumber, line) => {
    const comma = line.indexOf(',');
    if (comma < 0 || line.slice(comma + 1).trim() !== '') {
      throw invalidInput(`${file} line ${lineNumber} is ${shown(line)}: expected 'flat_index,' (a mask's rows have no value)`);
    }
    indices.push(flatIndex(file, lineNumber, line, comma));
  });
  return Int32Array.from(indices);
}

/** voxel_dimensions.csv: three positive sizes in mm along the grid's axes (i, j, k), one per line as np.savetxt writes them. */
export function parseVoxelDimensions(text: string, file: string): [number, number, number] {
  const fields = text.replace(/^\ufeff/, '').trim().split(/[\s,]+/).filter((field) => field !== '');
  const values = fields.map(Number);
  if (values.length !== 3 || values.some((value) => !(Number.isFinite(value) && value > 0 && value < 100))) {
    throw invalidInput(`${file} holds ${shown(fields.join(' '))}: expected 3 voxel sizes in mm, each above 0 and below 100 (row, column, slice)`);
  }
  return values as [number, number, number];
}
