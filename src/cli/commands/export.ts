import type { Command } from 'commander';

import { loadCase } from '../../data/case.js';
import { exportRtDose } from '../../dicom/export.js';
import { exportNifti } from '../../dicom/nifti.js';
import { invalidInput } from '../../errors.js';
import { note, printJson } from '../output.js';

/** `export dicom` (an RTDOSE for a TPS or 3D Slicer) and `export nifti` (with the affine, for MONAI / nnU-Net). */
export function register(program: Command): void {
  const command = program.command('export').description('write a case\'s dose (a prediction) for other tools: a DICOM RTDOSE, or NIfTI');
  command
    .command('dicom')
    .description('write the dose of a case file (a prediction) as an RTDOSE in the frame of reference and study of its CT')
    .argument('<case>', 'a case file with a dose, e.g. <case>_pred.npz from `predict` on a case made by `import dicom`')
    .requiredOption('--out <file.dcm>', 'the RTDOSE file to write')
    .option('--reference <dir>', 'the DICOM folder of the case\'s CT (default: the study and frame of reference the case recorded at import)')
    .option('--series-description <text>', 'Series Description of the RTDOSE', 'vmat-native predicted dose')
    .option('--overwrite', 'replace an existing file')
    .option('--json', 'print one JSON document')
    .action(async (path: string, flags: { out: string; reference?: string; seriesDescription: string; overwrite?: boolean; json?: boolean }) => {
      if (!flags.out.toLowerCase().endsWith('.dcm')) throw invalidInput(`--out must name a .dcm file, got '${flags.out}'`);
      const data = await loadCase(path);
      const written = await exportRtDose(data, { out: flags.out, reference: flags.reference, overwrite: flags.overwrite, seriesDescription: flags.seriesDescription });
      if (flags.json) printJson(written);
      else note(`wrote ${written.path}: RTDOSE, max ${written.maxGy.toFixed(2)} Gy, study ${written.studyInstanceUid}, frame of reference ${written.frameOfReferenceUid}`);
    });
  command
    .command('nifti')
    .description('write the dose (or the CT) of a case file as NIfTI-1 with its affine (RAS+), for MONAI / nnU-Net')
    .argument('<case>', 'a case file, e.g. <case>_pred.npz from `predict`')
    .requiredOption('--out <file.nii.gz>', 'the .nii or .nii.gz file to write')
    .option('--volume <dose|ct>', 'the dose in Gy or the CT in HU', 'dose')
    .option('--overwrite', 'replace an existing file')
    .action(async (path: string, flags: { out: string; volume: string; overwrite?: boolean }) => {
      if (flags.volume !== 'dose' && flags.volume !== 'ct') throw invalidInput(`--volume must be dose or ct, got '${flags.volume}'`);
      const data = await loadCase(path);
      if (!data.originMm) note(`note: ${path} records no patient origin (it was not imported from DICOM): the affine places voxel 0 at the origin`);
      const written = await exportNifti(data, { out: flags.out, volume: flags.volume, overwrite: flags.overwrite });
      note(`wrote ${written.path}`);
    });
}
