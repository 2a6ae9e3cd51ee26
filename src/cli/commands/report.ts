import { writeFileAtomicSync } from '../../io/atomic.js';

import type { Command } from 'commander';

import { buildRunFigures } from '../../figures/index.js';
import { reportHtml } from '../../report/html.js';
import { readRunFolder } from '../../report/run-folder.js';
import { runPaths } from '../../run/index.js';
import { note } from '../output.js';

export function register(program: Command): void {
  program
    .command('report')
    .description('RUN/report.html: one self-contained page (configuration, reproducibility record, split, curves, tables, figures) that opens from disk')
    .argument('<run>', 'run folder (runs/<exp_name>)')
    .option('--case <id>', 'test case shown by the slice, DVH and gamma figures (default: the first evaluated)')
    .action(async (runPath: string, options: { case?: string }) => {
      const run = readRunFolder(runPath);
      const { figures, skipped } = await buildRunFigures(run, { caseId: options.case });
      const path = runPaths(run.dir).report;
      writeFileAtomicSync(path, reportHtml({ run, figures, skipped }));
      process.stdout.write(`${path}\n`);
      for (const reason of skipped) note(`  not shown: ${reason}`);
    });
}
