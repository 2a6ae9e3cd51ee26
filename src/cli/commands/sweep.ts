import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import type { Command } from 'commander';

import { parseTrainConfig, type TrainConfigInput } from '../../config/schema.js';
import { invalidInput } from '../../errors.js';
import { evaluateRun, evaluationProgressLine } from '../../eval/run.js';
import { comparisonText } from '../../report/compare.js';
import { publishRuns } from '../../report/publish.js';
import { Trainer } from '../../train/trainer.js';
import { note } from '../output.js';
import { addTrainFlags, progressPrinter, trainConfigFromFlags } from './train.js';

/** `0.05,0.1,0.2` → the values and the text each run is named with (`<exp>_w0.05`). */
export function parseWeightList(text: string): { value: number; label: string }[] {
  const parts = text.split(',').map((part) => part.trim());
  const weights = parts.map((label) => ({ value: Number(label), label }));
  if (parts.length === 0 || weights.some((w) => w.label === '' || !Number.isFinite(w.value) || w.value < 0)) {
    throw invalidInput(`--gradient-loss-weight must be a comma-separated list of numbers >= 0 (e.g. 0.05,0.1,0.2), got '${text}'`);
  }
  if (new Set(weights.map((w) => w.value)).size !== weights.length) throw invalidInput(`--gradient-loss-weight lists a value twice: '${text}'`);
  return weights;
}

export function register(program: Command): void {
  const command = program
    .command('sweep')
    .description('one training run per gradient-loss weight (named <exp-name>_w<value>; 0 trains without the gradient loss), each evaluated on its test cases, then the comparison, figures and reports')
    .requiredOption('--gradient-loss-weight <list>', 'comma-separated weights, e.g. 0.05,0.1,0.2')
    .option('--config <file>', 'JSON file of settings (the fields of fit()); flags override it')
    .option('--out <dir>', 'folder for comparison.md/.csv/.png (default: <log-dir>/<exp-name>_sweep)')
    .option('--overwrite', 'replace existing run folders and comparison files');
  addTrainFlags(command, { except: ['gradientLossWeight', 'useGradientLoss'] });
  command.action(async (flags: Record<string, unknown>) => {
    const weights = parseWeightList(String(flags.gradientLossWeight));
    const base = await trainConfigFromFlags({ ...flags, gradientLossWeight: undefined });
    // Validate the shared settings once, before any run starts.
    const checked = parseTrainConfig({ ...base, gradientLossWeight: weights[0]!.value });
    const overwrite = flags.overwrite === true;
    const out = resolve(typeof flags.out === 'string' ? flags.out : join(checked.logDir, `${checked.expName}_sweep`));
    if (!overwrite) {
      // Refuse before training anything rather than after the first runs.
      const taken = [...weights.map((w) => resolve(checked.logDir, `${checked.expName}_w${w.label}`)), join(out, 'comparison.md'), join(out, 'comparison.csv')].find((path) => existsSync(path));
      if (taken) throw invalidInput(`${taken} already exists: pass --overwrite to replace it, or choose another --exp-name or --out`);
    }

    const controller = new AbortController();
    const onSigint = () => {
      note('\nstopping after this step (the current run saves checkpoints/last)');
      controller.abort();
    };
    process.on('SIGINT', onSigint);
    const runDirs: string[] = [];
    try {
      for (const [index, weight] of weights.entries()) {
        const expName = `${checked.expName}_w${weight.label}`;
        note(`run ${index + 1}/${weights.length}: ${expName} (gradient-loss weight ${weight.value})`);
        const printer = progressPrinter(Boolean(process.stderr.isTTY));
        try {
          const result = await new Trainer().fit(
            { ...base, expName, useGradientLoss: weight.value > 0, gradientLossWeight: weight.value } as TrainConfigInput,
            { signal: controller.signal, overwrite, onProgress: (event) => printer.onEvent(event), onWarning: (message) => note(`warning: ${message}`) },
          );
          runDirs.push(result.runDir);
          if (result.stopReason === 'aborted') throw invalidInput(`the sweep was interrupted during ${expName}; its run folder can be resumed with 'vmat-native train --resume'`);
        } finally {
          printer.stop();
        }
        if (checked.testSplit > 0) {
          note(`evaluating the test cases of ${expName}`);
          const evaluated = await evaluateRun(runDirs[runDirs.length - 1]!, {
            device: checked.device,
            overwrite,
            threads: checked.threads || undefined,
            onProgress: (event) => note(evaluationProgressLine(event)),
          });
          note(`${expName}: test MAE body ${(evaluated.summary['mae_gy.body']?.mean ?? NaN).toFixed(3)} Gy over ${evaluated.cases.length} case(s), written to ${evaluated.outDir}`);
        }
      }
    } finally {
      process.off('SIGINT', onSigint);
    }
    const published = await publishRuns(runDirs, { comparisonDir: out, overwrite });
    process.stdout.write(`${comparisonText(published.comparison)}\n\n`);
    process.stdout.write(`comparison  ${published.comparisonFiles.markdown}, ${published.comparisonFiles.csv}, ${published.comparisonFiles.figure}\n`);
    process.stdout.write(`reports     ${published.reports.join('\n            ')}\n`);
  });
}
