/**
 * Recognises the files users try first in place of case files (a DICOM-RT export, OpenKBP's CSV patient folders),
 * so that "holds no case files" says which import converts them.
 */
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { invalidInput, type VmatError } from '../errors.js';

const DICOM_HINT = 'convert a DICOM-RT export to case files with import dicom first (`vmat-native import dicom SRC --out DIR`)';
const OPENKBP_HINT = 'convert OpenKBP patient folders to case files with import openkbp first (`vmat-native import openkbp SRC --out DIR`)';

/** A DICOM Part 10 file has "DICM" after a 128-byte preamble; some exports omit both, so the extension counts too. */
export function isDicomFile(path: string): boolean {
  if (/\.dcm$/i.test(path)) return true;
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const magic = Buffer.alloc(4);
    return readSync(fd, magic, 0, 4, 128) === 4 && magic.toString('latin1') === 'DICM';
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** What a folder holds instead of case files, looking a few levels down (bounded: exports can hold 10⁵ files). */
function foreignContent(dir: string): 'dicom' | 'openkbp' | undefined {
  let budget = 2000;
  const visit = (folder: string, depth: number): 'dicom' | 'openkbp' | undefined => {
    let names: string[];
    try {
      names = readdirSync(folder).sort();
    } catch {
      return undefined;
    }
    if (names.includes('ct.csv') || names.includes('dose.csv') || names.includes('possible_dose_mask.csv')) return 'openkbp';
    const folders: string[] = [];
    for (const name of names) {
      if (--budget < 0) return undefined;
      const path = join(folder, name);
      let isFolder = false;
      try {
        isFolder = statSync(path).isDirectory();
      } catch {
        continue;
      }
      if (isFolder) folders.push(path);
      else if (isDicomFile(path)) return 'dicom';
    }
    if (depth === 0) return undefined;
    for (const sub of folders) {
      const found = visit(sub, depth - 1);
      if (found) return found;
    }
    return undefined;
  };
  return visit(dir, 3);
}

/** The refusal of a folder without case files, with the import that converts what it holds, where one does. */
export function noCaseFilesError(message: string, dir: string): VmatError {
  const found = foreignContent(dir);
  const hint = found === 'dicom' ? `; it holds DICOM files: ${DICOM_HINT}` : found === 'openkbp' ? `; it holds OpenKBP patient folders: ${OPENKBP_HINT}` : '';
  return invalidInput(`${message}${hint}`);
}

/** The sentence for a DICOM file given where a case file was expected. */
export function dicomFileMessage(path: string): string {
  return `${path} is a DICOM file, not a case file (.npz): ${DICOM_HINT}`;
}
