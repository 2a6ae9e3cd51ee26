import type { Command } from 'commander';

import { demoSummary, runDemo } from '../../demo/demo.js';
import { note } from '../output.js';

export function register(program: Command): void {
  program
    .command('demo')
    .description('the whole job on the built-in synthetic cohort: synth → baseline and gradient-loss runs → evaluation of the test cases → comparison → figures → reports')
    .option('--out <dir>', 'folder for the cohort, the runs, the comparison and the reports', 'demo')
    .option('--quick', 'small cohort, small network, few epochs: a 2-core CPU in a few minutes (without it: the seed\'s full-size settings, a GPU\'s work)')
    .option('--overwrite', "replace the demo's existing cohort, runs and comparison in --out")
    .action(async (options: { out: string; quick?: boolean; overwrite?: boolean }) => {
      const controller = new AbortController();
      const onSigint = () => {
        note('\nstopping after this step');
        controller.abort();
      };
      process.on('SIGINT', onSigint);
      try {
        const result = await runDemo({ out: options.out, quick: options.quick === true, overwrite: options.overwrite === true, log: note, signal: controller.signal });
        process.stdout.write(demoSummary(result));
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
