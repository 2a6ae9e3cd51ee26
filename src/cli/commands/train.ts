import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

import cliProgress from 'cli-progress';
import type { Command } from 'commander';

import { TRAIN_FIELDS, flagOf, parseFlagValue, type TrainField } from '../../config/schema.js';
import { invalidInput } from '../../errors.js';
import { DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS, distributedFromEnv } from '../../train/distributed.js';
import { LAUNCHED_RANK_VARIABLE, launchLocalRanks } from '../launch.js';
import { Trainer, type TrainEvent } from '../../train/trainer.js';
import { note, printJson } from '../output.js';

function placeholder(field: TrainField): string {
  const kind = TRAIN_FIELDS[field].kind;
  if (kind === 'boolean') return ' [bool]';
  if (kind === 'list') return ' <names>';
  if (kind === 'numberPair') return ' <b1,b2>';
  if (kind === 'string') return ' <value>';
  return ' <n>';
}

function defaultText(field: TrainField): string {
  const parsed = TRAIN_FIELDS[field].schema.safeParse(undefined);
  if (!parsed.success || parsed.data === undefined) return '';
  const value = parsed.data as unknown;
  return ` (default: ${Array.isArray(value) ? value.join(',') : String(value)})`;
}

/** The schema's words for what a value may be, where they say more than the placeholder (not for flags and folders). */
function allowedText(field: TrainField): string {
  const { kind, allowed } = TRAIN_FIELDS[field];
  return kind === 'boolean' || allowed.startsWith('a folder') ? '' : `; ${allowed}`;
}

async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw invalidInput(`cannot read the config file ${path}`);
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch {
    throw invalidInput(`the config file ${path} is not a JSON object of settings (the fields of fit(), e.g. {"epochs": 100})`);
  }
}

const format = (value: number | null | undefined, digits: number) => (value === null || value === undefined ? '-' : value.toFixed(digits));

/**
 * A progress bar per epoch on a TTY, one line per epoch otherwise (stderr; stdout keeps the result). `interrupt`
 * prints a line of its own: the bar is ended first and drawn no more, so that its redraws cannot overwrite it.
 */
export function progressPrinter(tty: boolean, stream: NodeJS.WritableStream = process.stderr) {
  let bar: cliProgress.SingleBar | undefined;
  let interrupted = false;
  const line = (message: string) => stream.write(`${message}\n`);
  const endBar = () => {
    bar?.stop();
    bar = undefined;
  };
  return {
    onEvent(event: TrainEvent) {
      if (event.type === 'load') {
        for (const warning of event.warnings) line(`warning: ${event.case}: ${warning}`);
      } else if (event.type === 'start') {
        line(`training on ${event.device} (${event.precision}), ${event.parameters.toLocaleString('en-US')} parameters, ${event.trainCases} training and ${event.valCases} validation cases, ${event.stepsPerEpoch} steps per epoch${event.startEpoch > 1 || event.startStep > 0 ? `, resuming at epoch ${event.startEpoch} step ${event.startStep + 1}` : ''}`);
      } else if (event.type === 'step' && tty && !interrupted) {
        if (!bar) {
          bar = new cliProgress.SingleBar(
            { format: 'epoch {epoch} |{bar}| {value}/{total} loss {loss} {vps} vox/s ETA {eta_formatted}', stream, hideCursor: true, etaBuffer: 20 },
            cliProgress.Presets.shades_classic,
          );
          bar.start(event.steps, event.step - 1, { epoch: `${event.epoch}/${event.epochs}`, loss: '-', vps: '-' });
        }
        bar.update(event.step, { epoch: `${event.epoch}/${event.epochs}`, loss: event.loss.toFixed(4), vps: Math.round(event.voxelsPerSecond).toLocaleString('en-US') });
      } else if (event.type === 'validate' && tty && !interrupted) {
        endBar();
        stream.write(`\rvalidating ${event.index}/${event.of} (${event.case}, whole volume)\x1b[K`);
      } else if (event.type === 'epoch') {
        endBar();
        if (tty) stream.write('\r\x1b[K');
        line(
          `epoch ${event.epoch}/${event.epochs}  lr ${event.lr.toExponential(2)}  train_loss ${format(event.trainLoss, 4)}  val_loss ${format(event.valLoss, 4)}  ` +
            `val_mae ${format(event.valMaeGy, 3)} Gy  ptv70 ${format(event.valMaePtv70Gy, 3)} Gy  ${format(event.epochSeconds, 1)} s${event.improved ? '  (best)' : ''}`,
        );
      }
    },
    /** A message that must stay readable (a signal): on a line of its own, with no bar drawn after it. */
    interrupt(message: string) {
      interrupted = true;
      endBar();
      if (tty) stream.write('\r\x1b[K');
      line(message);
    },
    stop() {
      endBar();
    },
  };
}

/** A second signal this soon after the first is the same one forwarded again (a wrapper, the process group). */
export const REPEATED_SIGNAL_MS = 2000;

export type StopSignal = 'SIGINT' | 'SIGTERM';
export const SIGNAL_EXIT: Record<StopSignal, number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * What `train` does on SIGINT and SIGTERM (Ctrl-C; what SLURM, Docker and Kubernetes send): the first one stops the
 * run after its step (`stop`), which saves checkpoints/last; a repeat within REPEATED_SIGNAL_MS is the same signal
 * delivered twice (`timeout --foreground` forwards Ctrl-C that the terminal also delivers) and is ignored; one
 * later `exit`s at once with 128 + the signal's number.
 */
export function signalHandler(actions: { stop: (signal: StopSignal) => void; exit: (signal: StopSignal, code: number) => void; now?: () => number }) {
  const now = actions.now ?? Date.now;
  let first: { signal: StopSignal; at: number } | undefined;
  return {
    handle(signal: StopSignal) {
      if (!first) {
        first = { signal, at: now() };
        actions.stop(signal);
      } else if (now() - first.at >= REPEATED_SIGNAL_MS) {
        actions.exit(signal, SIGNAL_EXIT[signal]);
      }
    },
    /** the signal that stopped the run, if one did */
    get stoppedBy(): StopSignal | undefined {
      return first?.signal;
    },
  };
}

/** One flag per training setting (the schema's table), with its help and default; shared by `train` and `sweep`. */
export function addTrainFlags(command: Command, options: { except?: TrainField[] } = {}): Command {
  for (const [field, spec] of Object.entries(TRAIN_FIELDS) as [TrainField, (typeof TRAIN_FIELDS)[TrainField]][]) {
    if (options.except?.includes(field)) continue;
    command.option(`${flagOf(field)}${placeholder(field)}`, `${spec.help}${allowedText(field)}${defaultText(field)}${'required' in spec && spec.required ? ' (required, here or in --config)' : ''}`);
  }
  return command;
}

/** The settings given by `--config FILE` and the flags (flags win), not yet validated. */
export async function trainConfigFromFlags(flags: Record<string, unknown>): Promise<Record<string, unknown>> {
  const fromFile = typeof flags.config === 'string' ? await readConfigFile(flags.config) : {};
  const fromFlags: Record<string, unknown> = {};
  for (const field of Object.keys(TRAIN_FIELDS) as TrainField[]) {
    const raw = flags[field];
    if (raw === undefined) continue;
    fromFlags[field] = raw === true ? true : parseFlagValue(field, String(raw));
  }
  return { ...fromFile, ...fromFlags };
}

/** A launcher flag's number: `what` says what is allowed (whole, >= minimum; or any positive number). */
function flagNumber(flag: string, raw: unknown, minimum: number, whole = true): number {
  const value = Number(raw);
  const ok = typeof raw === 'string' && raw.trim() !== '' && Number.isFinite(value) && (whole ? Number.isInteger(value) && value >= minimum : value > minimum);
  if (!ok) throw invalidInput(`${flag} is ${JSON.stringify(raw)}: expected ${whole ? `a whole number >= ${minimum}` : `a number > ${minimum}`}`);
  return value;
}

export function register(program: Command): void {
  const command = program
    .command('train')
    .description('train the dose model on a folder of case files (spec/training.md); every setting is a flag')
    .option('--config <file>', 'JSON file of settings (the fields of fit()); flags override it')
    .option('--resume', 'continue <log-dir>/<exp-name> from checkpoints/last with its settings, data folder and split (no --data-dir needed); only --epochs, --patience, --device, --threads, --num-workers and --sw-batch may change, and each change is recorded')
    .option('--overwrite', 'replace an existing run folder: the files vmat-native wrote there, nothing else')
    .option('--json', 'print the result as one JSON document')
    .option('--nproc-per-node <n>', 'data-parallel training: start n ranks on this machine (one per GPU; Gloo on the CPU, NCCL on CUDA)')
    .option('--nnodes <n>', 'data parallel over n machines, each started with the same command and its --node-rank (default: 1)')
    .option('--node-rank <r>', "this machine's index, 0 … nnodes - 1 (default: 0)")
    .option('--master-addr <host>', 'host of node 0, where the ranks meet (default: 127.0.0.1; needed with --nnodes > 1)')
    .option('--master-port <port>', 'port on node 0 (default: a free one on one machine, 29500 with more)')
    .option('--dist-timeout <seconds>', `data parallel: a rank that does not answer within this ends the run, named (default: ${DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS})`);
  addTrainFlags(command);
  command.action(async (flags: Record<string, unknown>) => {
    const config = (await trainConfigFromFlags(flags)) as Parameters<Trainer['fit']>[0];
    const timeoutSeconds = flags.distTimeout === undefined ? DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS : flagNumber('--dist-timeout', flags.distTimeout, 0, false);
    const launched = process.env[LAUNCHED_RANK_VARIABLE] === '1';
    if (!launched && flags.nprocPerNode !== undefined) {
      process.exitCode = await launchLocalRanks({
        nprocPerNode: flagNumber('--nproc-per-node', flags.nprocPerNode, 1),
        nnodes: flags.nnodes === undefined ? 1 : flagNumber('--nnodes', flags.nnodes, 1),
        nodeRank: flags.nodeRank === undefined ? 0 : flagNumber('--node-rank', flags.nodeRank, 0),
        masterAddr: typeof flags.masterAddr === 'string' ? flags.masterAddr : undefined,
        masterPort: flags.masterPort === undefined ? undefined : flagNumber('--master-port', flags.masterPort, 1),
        timeoutSeconds,
        args: [...process.execArgv, ...process.argv.slice(1)],
        note,
      });
      return;
    }
    if (!launched && [flags.nnodes, flags.nodeRank, flags.masterAddr, flags.masterPort].some((value) => value !== undefined)) {
      throw invalidInput('--nnodes, --node-rank, --master-addr and --master-port go with --nproc-per-node (under torchrun or SLURM their variables say it)');
    }
    // Started by the launcher above, by torchrun or by SLURM: this process is one rank.
    const distributed = distributedFromEnv(process.env, timeoutSeconds);

    const controller = new AbortController();
    const printer = progressPrinter(Boolean(process.stderr.isTTY) && !flags.json);
    const signals = signalHandler({
      stop: (signal) => {
        printer.interrupt(`${signal}: stopping after this step and saving checkpoints/last (the same signal again, ${REPEATED_SIGNAL_MS / 1000} s or more from now, exits at once)`);
        controller.abort();
      },
      exit: (signal, code) => {
        printer.interrupt(`${signal} again: exiting now without saving this step (checkpoints/last keeps the last saved one)`);
        process.exit(code);
      },
    });
    const onSigint = () => signals.handle('SIGINT');
    const onSigterm = () => signals.handle('SIGTERM');
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    try {
      const result = await new Trainer().fit(config, {
        signal: controller.signal,
        resume: flags.resume === true,
        overwrite: flags.overwrite === true,
        distributed,
        onProgress: (event) => printer.onEvent(event),
        onWarning: (message) => note(`warning: ${message}`),
      });
      printer.stop();
      // Stopped by SIGTERM: 143, so that a scheduler does not count the run as complete; Ctrl-C: 0 (the user's stop).
      const first = signals.stoppedBy;
      if (first === 'SIGTERM') process.exitCode = SIGNAL_EXIT.SIGTERM;
      if (flags.json) {
        printJson(result);
        return;
      }
      const written = existsSync(result.runDir);
      const stopped = result.stopReason === 'aborted' ? `stopped (${first ?? 'aborted'})` : result.stopReason === 'early_stop' ? 'stopped early' : 'done';
      process.stdout.write(
        `${stopped} after ${result.epochsRun} epoch${result.epochsRun === 1 ? '' : 's'} in ${result.seconds.toFixed(1)} s\n` +
          `best epoch   ${result.bestEpoch || '-'}  (val MAE ${format(result.bestValMaeGy, 3)} Gy)\n` +
          `checkpoint   ${result.bestCheckpoint ?? '-'}\n` +
          `run folder   ${written ? result.runDir : '- (stopped before training began: nothing was written)'}\n` +
          (result.stopReason === 'aborted' && written ? `continue     vmat-native train --resume --exp-name ${basename(result.runDir)} --log-dir ${dirname(result.runDir)}\n` : ''),
      );
    } finally {
      printer.stop();
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
    }
  });
}
