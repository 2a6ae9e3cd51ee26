import { join } from 'node:path';

import type { Command } from 'commander';

import { buildComparisonFigure, buildRunFigures, writeFigures } from '../../figures/index.js';
import { readRunFolder } from '../../report/run-folder.js';
import { runPaths } from '../../run/index.js';
import { note } from '../output.js';

export function register(program: Command): void {
  program
    .command('figures')
    .description('training curves, loss components, dose slices, DVHs, gamma maps (and comparison bars for several runs) as PNG and SVG into RUN/figures/')
    .argument('<runs...>', 'run folders (runs/<exp_name>); with several, the comparison figure goes into the first')
    .option('--case <id>', 'test case shown by the slice, DVH and gamma figures (default: the first evaluated)')
    .action(async (runDirs: string[], options: { case?: string }) => {
      const runs = runDirs.map((path) => readRunFolder(path));
      for (const run of runs) {
        const { figures, skipped } = await buildRunFigures(run, { caseId: options.case });
        const dir = runPaths(run.dir).figures;
        writeFigures(dir, figures);
        process.stdout.write(`${run.name}: ${figures.length} figure(s) in ${dir}: ${figures.map((f) => f.name).join(', ')}\n`);
        for (const reason of skipped) note(`  not drawn: ${reason}`);
      }
      if (runs.length > 1) {
        const dir = runPaths(runs[0].dir).figures;
        writeFigures(dir, [await buildComparisonFigure(runs)]);
        process.stdout.write(`comparison of ${runs.length} runs: ${join(dir, 'comparison.png')} (and .svg)\n`);
      }
    });
}
