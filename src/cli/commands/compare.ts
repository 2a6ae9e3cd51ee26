import { resolve } from 'node:path';

import type { Command } from 'commander';

import { invalidInput } from '../../errors.js';
import { compareRuns, comparisonText, writeComparison } from '../../report/compare.js';
import { readRunFolder } from '../../report/run-folder.js';
import { note, printJson } from '../output.js';

export function register(program: Command): void {
  program
    .command('compare')
    .description('side-by-side table of runs (val MAE, test MAE, gamma, training time, best epoch, change in % against the first), printed and written as comparison.md and comparison.csv')
    .argument('<runs...>', 'run folders; the first is the baseline of the changes')
    .option('--out <dir>', 'folder for comparison.md and comparison.csv', '.')
    .option('--overwrite', 'replace comparison.md / comparison.csv where they exist')
    .option('--json', 'print one JSON document')
    .action((runPaths: string[], options: { out: string; overwrite?: boolean; json?: boolean }) => {
      if (runPaths.length < 2) throw invalidInput(`compare needs at least two run folders, got ${runPaths.length}`);
      const comparison = compareRuns(runPaths.map((path) => readRunFolder(path)));
      const written = writeComparison(resolve(options.out), comparison, options.overwrite ?? false);
      if (options.json) {
        printJson({ ...comparison, files: written });
        return;
      }
      process.stdout.write(`${comparisonText(comparison)}\n`);
      note(`wrote ${written.markdown} and ${written.csv}`);
    });
}
