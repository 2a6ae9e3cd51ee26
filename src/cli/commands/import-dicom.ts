import { readFile } from 'node:fs/promises';

import type { Command } from 'commander';

import { importDicom, type FailedCase, type ImportedCase } from '../../dicom/import.js';
import { mappingText, parseStructureMap } from '../../dicom/rtstruct.js';
import { invalidInput } from '../../errors.js';
import { note, printJson } from '../output.js';
import { withFlagNames } from '../program.js';

interface ImportDicomFlags {
  out: string;
  site: string;
  structureMap?: string;
  prescriptionGy?: string;
  overwrite?: boolean;
  threads?: string;
  json?: boolean;
}

async function readStructureMap(path: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw invalidInput(`cannot read the structure map ${path}`);
  }
  try {
    return parseStructureMap(JSON.parse(text), path);
  } catch (error) {
    if (error instanceof SyntaxError) throw invalidInput(`the structure map ${path} is not valid JSON: ${error.message}`);
    throw error;
  }
}

const mm = (values: readonly number[]) => values.map((v) => Number(v.toFixed(3))).join(' × ');

/** Says where a prescription or fraction count that no RTPLAN gave came from (the site profile's defaults). */
function provenance(event: ImportedCase): string {
  const defaults = [
    ...(event.prescriptionSource !== 'rtplan' && Object.keys(event.prescriptionGy).length > 0 ? ['prescription'] : []),
    ...(event.fractionsSource !== 'rtplan' && event.fractions ? ['fractions'] : []),
  ];
  return defaults.length === 0 ? '' : ` (${defaults.join(' and ')} from the ${event.fractionsSource !== 'rtplan' ? event.fractionsSource : event.prescriptionSource}: no RTPLAN gave ${defaults.length > 1 ? 'them' : 'it'})`;
}

function caseLines(event: ImportedCase | FailedCase, command: Command): string[] {
  if (event.status === 'failed') return [`${event.caseId}  not imported: ${withFlagNames(invalidInput(event.reason, { settings: event.settings }), command)}`];
  const [z, y, x] = event.shape;
  const dose = event.dose
    ? `dose ${event.dose.summationType}${event.dose.files > 1 ? ` of ${event.dose.files} files` : ''}, max ${event.dose.maxGy.toFixed(2)} Gy`
    : 'no dose (for prediction only)';
  const rx = Object.entries(event.prescriptionGy).map(([name, gy]) => `${name} ${gy} Gy`).join(', ');
  return [
    `${event.caseId}  ${event.ctFiles} CT slices, ${z}×${y}×${x} voxels (z, y, x) of ${mm(event.spacingMm)} mm, ${event.structures.length} structures, body ${event.body}, ${dose}; ` +
      `${rx || 'no prescription'}${event.fractions ? ` in ${event.fractions} fractions` : ''}${provenance(event)} → ${event.path}`,
    `    ROIs: ${mappingText(event.mapping)}`,
    ...event.notes.map((text) => `    note: ${text}`),
    ...event.problems.map((text) => `    problem: ${text}`),
  ];
}

export function register(parent: Command): void {
  parent
    .command('dicom')
    .description('import DICOM-RT (CT series + RTSTRUCT [+ RTDOSE, RTPLAN]) from a folder: one case file per set, in patient coordinates')
    .argument('<src>', 'folder searched recursively for DICOM files (any layout, any file names)')
    .requiredOption('--out <dir>', 'folder for the case files <PatientID>.npz (created if needed)')
    .option('--site <name|file.json>', 'site profile: structure channels, ROI name aliases, conditioning', 'prostate-sib')
    .option('--structure-map <map.json>', 'JSON object of ROI name → channel name (or "body"), over the profile\'s aliases')
    .option('--prescription-gy <gy>', 'the dose in Gy that a RELATIVE RTDOSE value of 1.0 stands for')
    .option('--overwrite', 'replace existing case files')
    .option('--threads <n>', 'CPU threads of the native kernels (default: all cores)')
    .option('--json', 'print one JSON document: { cases, failed, problems, skipped }')
    .action(async (src: string, flags: ImportDicomFlags, command: Command) => {
      const structureMap = flags.structureMap ? await readStructureMap(flags.structureMap) : undefined;
      const prescriptionGy = flags.prescriptionGy === undefined ? undefined : Number(flags.prescriptionGy);
      if (prescriptionGy !== undefined && !(Number.isFinite(prescriptionGy) && prescriptionGy > 0)) {
        throw invalidInput(`--prescription-gy must be a positive number of Gy, got '${flags.prescriptionGy}'`);
      }
      const threads = flags.threads === undefined ? undefined : Number(flags.threads);
      if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw invalidInput(`--threads must be a whole number >= 1, got '${flags.threads}'`);
      const tty = process.stderr.isTTY === true;
      const result = await importDicom(src, {
        out: flags.out,
        site: flags.site,
        structureMap,
        prescriptionGy,
        overwrite: flags.overwrite === true,
        threads,
        onProgress: tty ? (event) => process.stderr.write(`\rscanning ${event.done}/${event.total} files\x1b[K`) : undefined,
        onCase: (event) => {
          if (tty) process.stderr.write('\r\x1b[K');
          if (!flags.json) process.stdout.write(`${caseLines(event, command).join('\n')}\n`);
        },
      });
      if (tty) process.stderr.write('\r\x1b[K');
      const caseProblems = result.cases.reduce((total, c) => total + c.problems.length, 0);
      const problems = result.problems.length + caseProblems + result.failed.length;
      if (flags.json) {
        printJson(result);
      } else {
        if (result.skipped.length > 0) process.stdout.write(`skipped (not needed):\n${result.skipped.map((text) => `  ${text}`).join('\n')}\n`);
        if (result.problems.length > 0) process.stdout.write(`problems:\n${result.problems.map((text) => `  ${text}`).join('\n')}\n`);
      }
      const summary =
        `imported ${result.cases.length} case${result.cases.length === 1 ? '' : 's'} into ${flags.out}` +
        (result.failed.length ? `, ${result.failed.length} not imported` : '') +
        (result.skipped.length ? `, ${result.skipped.length} file${result.skipped.length === 1 ? '' : 's'} or series skipped` : '');
      if (result.cases.length === 0 && result.failed.length === 0 && result.problems.length === 0) {
        throw invalidInput(`${src} holds no CT series with a structure set: expected DICOM CT images and an RTSTRUCT (and optionally RTDOSE, RTPLAN)`);
      }
      if (problems > 0) throw invalidInput(`${summary}; ${problems} problem${problems === 1 ? '' : 's'} (listed above)`);
      note(summary);
    });
}
