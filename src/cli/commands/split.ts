import type { Command } from 'commander';

import { invalidInput } from '../../errors.js';
import { splitDataset } from '../../data/split.js';
import { printJson } from '../output.js';

function fraction(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !(value >= 0 && value < 1)) throw invalidInput(`${flag} must be a fraction in [0, 1), got ${text}`);
  return value;
}

export function register(program: Command): void {
  program
    .command('split')
    .description("print the train/validation/test split of a folder of case files (NumPy RandomState's permutation, as the predecessor)")
    .argument('<dir>', 'folder of case files (*.npz)')
    .option('--val-split <fraction>', 'fraction of cases for validation', '0.1')
    .option('--test-split <fraction>', 'fraction of cases held out for testing (0: none)', '0.1')
    .option('--seed <n>', 'seed of the permutation', '42')
    .option('--json', 'print one JSON document: { train, val, test, seed }')
    .action(async (dir: string, options: { valSplit: string; testSplit: string; seed: string; json?: boolean }) => {
      const seed = Number(options.seed);
      if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw invalidInput(`--seed must be an integer between 0 and 4294967295, got ${options.seed}`);
      const split = await splitDataset(dir, { valSplit: fraction('--val-split', options.valSplit), testSplit: fraction('--test-split', options.testSplit), seed });
      if (options.json) {
        printJson({ train: split.train, val: split.val, test: split.test, seed: split.seed });
        return;
      }
      const line = (name: string, ids: string[]) => `${name.padEnd(6)}${String(ids.length).padStart(4)}  ${ids.join(' ')}`;
      process.stdout.write(`${[line('train', split.train), line('val', split.val), line('test', split.test), `seed  ${String(split.seed).padStart(5)}`].join('\n')}\n`);
    });
}
