import type { Command } from 'commander';

import { invalidInput } from '../../errors.js';
import { expandInputs, predictFiles } from '../../predict/predict.js';
import { deviceOption } from '../options.js';
import { note, printJson } from '../output.js';

function integer(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw invalidInput(`${flag} must be an integer >= ${min}, got '${text}'`);
  return value;
}

export function register(program: Command): void {
  program
    .command('predict')
    .description('sliding-window dose prediction with a checkpoint; writes <case>_pred.npz (format 1) per input')
    .requiredOption('--checkpoint <file>', 'a .safetensors checkpoint written by `train` (or `model --save`)')
    .requiredOption('--input <path>', 'a case file or a folder of case files')
    .requiredOption('--output-dir <dir>', 'where the <case>_pred.npz files go')
    .option('--patch-size <n>', 'sliding-window patch edge, a multiple of 16', '128')
    .option('--overlap <f>', 'overlap of neighbouring windows', '0.5')
    .option('--sw-batch <n>', 'windows per network call', '2')
    .addOption(deviceOption('where the network runs'))
    .option('--threads <n>', 'CPU threads of libtorch (0: its default)', '0')
    .option('--constraint <slot=value...>', "override a conditioning slot of the checkpoint's site (a name like rectum_v70, or an index); repeatable")
    .option('--dicom-out <dir>', 'also write each prediction as an RTDOSE <case>_pred.dcm here (cases made by `import dicom`)')
    .option('--keep-outside-body', 'keep the predicted dose outside the body / possible-dose mask (by default it is set to 0 there)')
    .option('--overwrite', 'replace existing prediction files')
    .option('--json', 'print the written files as one JSON document')
    .action(async (flags: Record<string, string | string[] | boolean | undefined>) => {
      const constraints: Record<string, number> = {};
      for (const item of (flags.constraint as string[] | undefined) ?? []) {
        const match = /^([^=]+)=(.+)$/.exec(item);
        const value = match ? Number(match[2]) : NaN;
        if (!match || !Number.isFinite(value)) throw invalidInput(`--constraint must be slot=value (e.g. rectum_v70=0.15), got '${item}'`);
        constraints[match[1]!.trim()] = value;
      }
      const overlap = Number(flags.overlap);
      if (!(overlap >= 0 && overlap <= 0.9)) throw invalidInput(`--overlap must be a fraction in [0, 0.9], got '${flags.overlap}'`);
      const threads = integer('--threads', String(flags.threads), 0);
      const inputs = await expandInputs(String(flags.input));
      const outputs = await predictFiles(String(flags.checkpoint), inputs, String(flags.outputDir), {
        patchSize: integer('--patch-size', String(flags.patchSize), 16),
        overlap,
        swBatch: integer('--sw-batch', String(flags.swBatch), 1),
        device: String(flags.device),
        threads: threads || undefined,
        constraints,
        keepOutsideBody: flags.keepOutsideBody === true,
        overwrite: flags.overwrite === true,
        dicomOut: flags.dicomOut === undefined ? undefined : String(flags.dicomOut),
        onCase: (event) => note(`[${event.index}/${event.of}] ${event.case} → ${event.output}${event.dicom ? ` and ${event.dicom}` : ''} (${event.seconds.toFixed(1)} s)`),
      });
      if (flags.json) printJson({ outputs });
      else process.stdout.write(`wrote ${outputs.length} prediction${outputs.length === 1 ? '' : 's'} to ${String(flags.outputDir)}\n`);
    });
}
