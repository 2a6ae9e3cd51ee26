import type { Command } from 'commander';

import { invalidInput } from '../../errors.js';
import { modelSummary, saveInitialWeights } from '../../model.js';
import { note, printJson } from '../output.js';

function integerFlag(flag: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) throw invalidInput(`${flag} must be a non-negative integer, got '${text}'`);
  return value;
}

export function register(program: Command): void {
  program
    .command('model')
    .description('the network (BaselineUNet3D): its layers and parameter count; --save writes initial weights')
    .option('--in-channels <n>', 'input channels: 1 CT + structures (9, or 10 with PTV50.4)', '9')
    .option('--base-channels <n>', 'base width b (a multiple of 8)', '48')
    .option('--save <file>', 'write freshly initialised weights to FILE.safetensors')
    .option('--seed <n>', 'seed of the initialisation (with --save)', '0')
    .option('--overwrite', 'replace an existing --save file')
    .option('--json', 'print one JSON document')
    .action(
      async (options: { inChannels: string; baseChannels: string; save?: string; seed: string; overwrite?: boolean; json?: boolean }) => {
        const inChannels = integerFlag('--in-channels', options.inChannels);
        const baseChannels = integerFlag('--base-channels', options.baseChannels);
        const summary = modelSummary({ inChannels, baseChannels });
        const saved = options.save
          ? await saveInitialWeights(options.save, {
              inChannels,
              baseChannels,
              seed: integerFlag('--seed', options.seed),
              overwrite: options.overwrite,
            })
          : undefined;
        if (options.json) {
          printJson(saved ? { ...summary, saved: { path: saved.path, seed: integerFlag('--seed', options.seed) } } : summary);
          return;
        }
        const nameWidth = Math.max(...summary.layers.map((layer) => layer.name.length), 'parameter'.length);
        const shapeWidth = Math.max(...summary.layers.map((layer) => layer.shape.join('x').length), 'shape'.length);
        const lines = [
          `BaselineUNet3D  in_channels ${inChannels}  base_channels ${baseChannels}  cond_dim 13  embed_dim 256`,
          `${'parameter'.padEnd(nameWidth)}  ${'shape'.padEnd(shapeWidth)}  ${'count'.padStart(11)}`,
          ...summary.layers.map(
            (layer) =>
              `${layer.name.padEnd(nameWidth)}  ${layer.shape.join('x').padEnd(shapeWidth)}  ${layer.parameters.toLocaleString('en-US').padStart(11)}`,
          ),
          `total: ${summary.parameters.toLocaleString('en-US')} parameters in ${summary.layers.length} tensors`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
        if (saved) note(`wrote initial weights (seed ${options.seed}) to ${saved.path}`);
      },
    );
}
