import type { Command } from 'commander';

import { SYNTH_DEFAULTS, synthesizeCohort } from '../../data/synth.js';
import { invalidInput } from '../../errors.js';
import { parseNumberList } from '../output.js';

function integer(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isInteger(value)) throw invalidInput(`${flag} must be an integer, got '${text}'`);
  return value;
}

export function register(program: Command): void {
  program
    .command('synth')
    .description('write a deterministic synthetic prostate SIB cohort (CT, structures, VMAT-like dose) as case files')
    .requiredOption('--out <dir>', 'folder for the case files synth_000.npz, synth_001.npz, ...')
    .option('--cases <n>', 'number of cases', String(SYNTH_DEFAULTS.cases))
    .option('--seed <n>', 'cohort seed (same seed, same bytes)', String(SYNTH_DEFAULTS.seed))
    .option('--shape <z,y,x>', 'voxels per axis, each a multiple of 16', SYNTH_DEFAULTS.shape.join(','))
    .option('--spacing <z,y,x>', 'voxel size in mm', SYNTH_DEFAULTS.spacingMm.join(','))
    .option('--overwrite', 'replace existing case files')
    .action(async (options: { out: string; cases: string; seed: string; shape: string; spacing: string; overwrite?: boolean }) => {
      const shape = parseNumberList('--shape', options.shape, 3) as [number, number, number];
      const spacingMm = parseNumberList('--spacing', options.spacing, 3) as [number, number, number];
      const cases = integer('--cases', options.cases);
      const seed = integer('--seed', options.seed);
      const result = await synthesizeCohort(options.out, {
        cases,
        seed,
        shape,
        spacingMm,
        overwrite: options.overwrite,
        onProgress: (event) => {
          const done = `${String(event.done).padStart(String(event.cases).length)}/${event.cases}`;
          process.stdout.write(
            `${done}  ${event.path}  D95(PTV70) ${event.ptv70D95.toFixed(1)} Gy  Dmax(PTV70) ${event.ptv70Dmax.toFixed(1)} Gy  D95(PTV56) ${event.ptv56D95.toFixed(1)} Gy  ${event.seconds.toFixed(1)} s\n`,
          );
        },
      });
      process.stdout.write(`wrote ${result.files.length} cases to ${result.outDir} in ${result.seconds.toFixed(1)} s (seed ${seed}, shape ${shape.join('x')}, spacing ${spacingMm.join('x')} mm)\n`);
    });
}
