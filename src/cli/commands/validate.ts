import type { Command } from 'commander';

import { invalidInput } from '../../errors.js';
import { validateDataset } from '../../data/validate.js';
import { note, parseNumberList, printJson } from '../output.js';

export function register(program: Command): void {
  program
    .command('validate')
    .description('check every case file of a folder (or one file): one line per problem; exit 1 if any')
    .argument('<dir>', 'folder of case files (*.npz), or one case file')
    .option('--spacing <z,y,x>', 'voxel spacing in mm for predecessor files that do not record it')
    .option('--json', 'print one JSON document: { files, problems: [{ file, key, message }] }')
    .action(async (dir: string, options: { spacing?: string; json?: boolean }) => {
      const spacingMm = options.spacing ? (parseNumberList('--spacing', options.spacing, 3) as [number, number, number]) : undefined;
      // Problems are printed as they are found; a progress line on a terminal only, on stderr.
      const showProgress = process.stderr.isTTY === true;
      const report = await validateDataset(dir, {
        spacingMm,
        onFile: (file, problems, index, total) => {
          if (showProgress) process.stderr.write('\r\x1b[K');
          if (!options.json) for (const problem of problems) process.stdout.write(`${problem.message}\n`);
          if (showProgress) process.stderr.write(`checked ${index + 1}/${total} ${file}`);
        },
      });
      if (showProgress) process.stderr.write('\r\x1b[K');
      const badFiles = new Set(report.problems.map((problem) => problem.file)).size;
      const summary = `${report.files.length} case file${report.files.length === 1 ? '' : 's'} checked`;
      if (options.json) printJson({ files: report.files.length, badFiles, problems: report.problems });
      if (report.problems.length > 0) {
        // A user error: the CLI prints this sentence and exits 1.
        throw invalidInput(`${summary}: ${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} in ${badFiles} file${badFiles === 1 ? '' : 's'}`);
      }
      if (!options.json) note(`${summary}: no problems`);
    });
}
