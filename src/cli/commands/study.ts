import { readFile } from 'node:fs/promises';

import type { Command } from 'commander';

import { invalidInput, isAbortError } from '../../errors.js';
import { evaluationProgressLine } from '../../eval/run.js';
import { splitArms, type StudyConfigInput } from '../../study/config.js';
import { runStudy, type StudyProgress } from '../../study/run.js';
import { note, printJson } from '../output.js';
import { addTrainFlags, progressPrinter, trainConfigFromFlags } from './train.js';

async function readStudyFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw invalidInput(`cannot read the study file ${path}`);
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch {
    throw invalidInput(`the study file ${path} is not a JSON object (fields arms, seeds, folds, train, metrics, bootstrap)`);
  }
}

function integerFlag(text: unknown, flag: string, allowed: string): number {
  const value = Number(text);
  if (String(text).trim() === '' || !Number.isInteger(value)) throw invalidInput(`${flag} must be ${allowed}, got '${String(text)}'`);
  return value;
}

export function register(program: Command): void {
  const command = program
    .command('study')
    .description('compare training choices properly: trains every arm × seed (× fold), evaluates every test case with full 3D gamma, and reports per metric the mean and spread over seeds and the paired difference against the first arm with a bootstrap CI over cases and seeds (README "Studies")')
    .option('--arms <list>', 'comma-separated arms, the first the baseline: baseline, grad_loss_<w>, vgg_loss_<w>, structure_weighted_<w>, asymmetric_ptv_<w>, dvh_loss_<w>, or name{setting=value;...}')
    .option('--seeds <n|list>', 'number of training seeds (from --seed on; default 3) or a comma-separated list')
    .option('--folds <k>', 'k-fold cross-validation: every case is tested once per seed (default: the plain split)')
    .option('--study <file>', 'study file (JSON: arms, seeds, folds, train, metrics, bootstrap); flags override it')
    .option('--metrics <keys>', 'comma-separated evaluation keys to compare (default: gamma 3%/3 mm, 2%/2 mm, 3%/3 mm in the PTVs, MAE body and PTV70)')
    .option('--resamples <n>', 'bootstrap replicates (default 10000)')
    .option('--bootstrap-seed <n>', 'seed of the bootstrap (default 0)')
    .option('--config <file>', 'JSON file of training settings (the fields of fit()); flags override it')
    .option('--overwrite', 'replace the study folder and all its runs (without it, finished runs are kept and the rest continues)')
    .option('--json', 'print summary.json on stdout');
  addTrainFlags(command);
  command.action(async (flags: Record<string, unknown>) => {
    const file = typeof flags.study === 'string' ? await readStudyFile(flags.study) : {};
    const fromFile = (file.train ?? {}) as Record<string, unknown>;
    const train = { ...(typeof fromFile === 'object' && fromFile !== null && !Array.isArray(fromFile) ? fromFile : {}), ...(await trainConfigFromFlags(flags)) };
    const input: Record<string, unknown> = { ...file, train };
    if (typeof flags.arms === 'string') input.arms = splitArms(flags.arms);
    if (input.arms === undefined) throw invalidInput('the study needs arms: --arms baseline,grad_loss_0.1 (or "arms" in the --study file)');
    if (typeof flags.seeds === 'string') {
      const parts = flags.seeds.split(',').map((p) => p.trim());
      input.seeds = parts.length === 1 ? integerFlag(parts[0], '--seeds', 'a number of seeds or a comma-separated list of seeds') : parts.map((p) => integerFlag(p, '--seeds', 'a comma-separated list of integer seeds'));
    }
    if (flags.folds !== undefined) input.folds = integerFlag(flags.folds, '--folds', 'an integer >= 2');
    if (typeof flags.metrics === 'string') input.metrics = flags.metrics.split(',').map((m) => m.trim()).filter((m) => m !== '');
    const bootstrap = { ...((file.bootstrap as Record<string, unknown> | undefined) ?? {}) };
    if (flags.resamples !== undefined) bootstrap.resamples = integerFlag(flags.resamples, '--resamples', 'an integer >= 100');
    if (flags.bootstrapSeed !== undefined) bootstrap.seed = integerFlag(flags.bootstrapSeed, '--bootstrap-seed', 'an integer >= 0');
    if (Object.keys(bootstrap).length > 0) input.bootstrap = bootstrap;

    const controller = new AbortController();
    const onSigint = () => {
      note('\nstopping after this step (the current run saves checkpoints/last; run the same command again to continue)');
      controller.abort();
    };
    process.on('SIGINT', onSigint);
    const printer = progressPrinter(Boolean(process.stderr.isTTY) && !flags.json);
    const onProgress = (event: StudyProgress) => {
      if (event.type === 'run') {
        printer.stop();
        const what = event.action === 'kept' ? 'kept (finished before)' : event.action === 'resume' ? 'resuming' : 'training';
        note(`run ${event.index}/${event.of}: ${event.arm}, seed ${event.seed}${event.fold === null ? '' : `, fold ${event.fold}`}: ${what}`);
      } else if (event.type === 'train') printer.onEvent(event.event);
      else if (event.type === 'evaluate') note(`  ${evaluationProgressLine(event.event)}`);
    };
    try {
      const result = await runStudy(input as unknown as StudyConfigInput, { signal: controller.signal, overwrite: flags.overwrite === true, onProgress });
      printer.stop();
      if (flags.json) {
        printJson(result.summary);
        return;
      }
      process.stdout.write(`${result.summary.sentences.join('\n')}\n\n`);
      process.stdout.write(`summary  ${result.files.summary}, ${result.files.markdown}\nrecords  ${result.files.records}\nreport   ${result.files.report}\n`);
    } catch (error) {
      if (isAbortError(error)) throw invalidInput(error.message);
      throw error;
    } finally {
      printer.stop();
      process.off('SIGINT', onSigint);
    }
  });
}
