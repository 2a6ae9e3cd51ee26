/** Checks every case file of a dataset folder and reports every problem (data.md "Bad input"). */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

import { invalidInput } from '../errors.js';
import { noCaseFilesError } from './foreign.js';
import { checkCase, type CaseProblem, type LoadCaseOptions } from './case.js';
import { listCaseFiles } from './split.js';

export interface ValidationReport {
  /** the files checked, in order */
  files: string[];
  /** every problem of every file */
  problems: CaseProblem[];
}

/** Validates a folder of case files (or one case file); `onFile` is called after each file with its problems. */
export async function validateDataset(
  target: string,
  options: LoadCaseOptions & { onFile?: (file: string, problems: CaseProblem[], index: number, total: number) => void } = {},
): Promise<ValidationReport> {
  const info = await stat(target).catch(() => {
    throw invalidInput(`${target} does not exist: expected a folder of case files (*.npz) or one case file`);
  });
  const files = info.isDirectory() ? (await listCaseFiles(target)).map((name) => join(target, name)) : [target];
  if (files.length === 0) throw noCaseFilesError(`${target} holds no case files: expected *.npz files`, target);
  const problems: CaseProblem[] = [];
  for (const [index, file] of files.entries()) {
    const found = await checkCase(file, { spacingMm: options.spacingMm });
    problems.push(...found);
    options.onFile?.(file, found, index, files.length);
  }
  return { files, problems };
}
