import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadCase } from '../src/data/case.js';
import { splitDataset } from '../src/data/split.js';
import { validateDataset } from '../src/data/validate.js';
import { runCli, tempDir } from './helpers.js';

/** A DICOM Part 10 header: a 128-byte preamble, "DICM", then a group 2 element; enough to be recognised. */
const dicomBytes = () => Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), Buffer.from([2, 0, 0, 0, 0x55, 0x4c, 4, 0, 0, 0, 0, 0])]);

describe('files that are not case files yet', () => {
  it('names import dicom for a DICOM file given as a case, with or without the .dcm extension', async () => {
    const dir = tempDir('vmat-foreign-');
    for (const name of ['CT.1.2.840.dcm', 'RS_no_extension']) {
      const path = join(dir, name);
      writeFileSync(path, dicomBytes());
      await expect(loadCase(path)).rejects.toThrow(new RegExp(`${name.replaceAll('.', '\\.')} is a DICOM file, not a case file \\(\\.npz\\): convert a DICOM-RT export to case files with import dicom first`));
    }
    const result = runCli(['inspect', join(dir, 'CT.1.2.840.dcm')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/is a DICOM file, not a case file \(\.npz\): .*`vmat-native import dicom SRC --out DIR`/);
  });

  it('names import dicom for a folder of DICOM series (a few levels down) in train, validate and split', async () => {
    const dir = tempDir('vmat-foreign-');
    mkdirSync(join(dir, 'patient1', 'study', 'CT'), { recursive: true });
    writeFileSync(join(dir, 'patient1', 'study', 'CT', 'IM0001'), dicomBytes());
    const hint = /holds no case files: expected \*\.npz files; it holds DICOM files: convert a DICOM-RT export to case files with import dicom first/;
    await expect(splitDataset(dir)).rejects.toThrow(hint);
    await expect(validateDataset(dir)).rejects.toThrow(hint);
    const train = runCli(['train', '--data-dir', dir, '--exp-name', 'e', '--log-dir', join(dir, 'runs'), '--epochs', '1']);
    expect(train.status).toBe(1);
    expect(train.stderr).toMatch(hint);
  });

  it('names import openkbp for OpenKBP patient folders, and says nothing more for an empty folder', async () => {
    const dir = tempDir('vmat-foreign-');
    mkdirSync(join(dir, 'pt_1'));
    writeFileSync(join(dir, 'pt_1', 'ct.csv'), ',data\n0,1\n');
    await expect(splitDataset(dir)).rejects.toThrow(/; it holds OpenKBP patient folders: convert OpenKBP patient folders to case files with import openkbp first/);
    const empty = tempDir('vmat-foreign-');
    await expect(splitDataset(empty)).rejects.toThrow(/holds no case files: expected \*\.npz files$/);
  });
});
