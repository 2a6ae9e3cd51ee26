/**
 * The CLI: one file per command under ./commands, each exporting `register(program)`.
 * Exit codes (spec/cli.md): 0 success, 1 user error (one sentence, no stack unless --verbose), 2 internal failure.
 */
import { Command, CommanderError, Help, type Option } from 'commander';

import { invalidInput, isUserError, userMessage, VmatError } from '../errors.js';
import { VERSION } from '../version.js';
import { commands } from './commands/index.js';

export function buildProgram(): Command {
  const program = new Command('vmat-native')
    .description('Radiotherapy dose prediction: train, predict and evaluate 3D dose models on a native libtorch core.')
    .version(VERSION, '-V, --version')
    .option('--verbose', 'print stack traces and extra diagnostics')
    .showSuggestionAfterError(true)
    .showHelpAfterError('(run `vmat-native --help` for the list of commands)')
    .exitOverride()
    // Before the commands are added: subcommands copy the help settings of their parent when created.
    .configureHelp({ optionDescription: describeOption });
  for (const register of commands) register(program);
  program.commands.forEach((command) => command.exitOverride());
  program.hook('preAction', (_, command) => refuseEmptyValues(command));
  return program;
}

/** Commander's description (with its "choices:" and "default:" notes), and "(required)" on a required option. */
function describeOption(this: Help, option: Option): string {
  const description = Help.prototype.optionDescription.call(this, option);
  return option.mandatory ? `${description} (required)` : description;
}

/**
 * `--threads ''` (an unset shell variable) must not read as 0 or as a default: an empty (or blank) value is refused
 * for every option and argument of every command, before the command runs.
 */
function refuseEmptyValues(command: Command): void {
  for (const option of command.options) {
    const value: unknown = command.getOptionValue(option.attributeName());
    if (isBlank(value) || (Array.isArray(value) && value.some(isBlank))) {
      throw invalidInput(`${option.long ?? option.flags} was given an empty value: give it one, as in ${option.flags.replace(/^-\w, /, '')}`);
    }
  }
  command.registeredArguments.forEach((argument, index) => {
    const value: unknown = command.processedArgs[index];
    if (isBlank(value) || (Array.isArray(value) && value.some(isBlank))) throw invalidInput(`the argument <${argument.name()}> is empty: expected ${argument.description || 'a value'}`);
  });
}

function isBlank(value: unknown): boolean {
  return typeof value === 'string' && value.trim() === '';
}

let stdoutGuarded = false;

/** A full disk or a closed pipe on stdout (`--json > file`) ends the command with a sentence, not a stack. */
function guardStdout(): void {
  if (stdoutGuarded) return;
  stdoutGuarded = true;
  process.stdout.on('error', (error: Error & { code?: string }) => {
    if (error.code === 'EPIPE') return; // the reader went away (`| head`): nothing left to say
    process.stderr.write(`vmat-native: ${isUserError(error) ? userMessage(error, 'cannot write the output') : `cannot write the output: ${error.message}`}\n`);
    process.exitCode = 1;
  });
}

/**
 * Accepts the seed's snake_case spellings (`--exp_name`, `--data_dir`) for the kebab-case flags, so that its
 * notebook's commands run as written.
 */
export function normaliseFlagSpelling(argv: string[]): string[] {
  return argv.map((token) => {
    if (!token.startsWith('--') || token === '--') return token;
    const eq = token.indexOf('=');
    const name = eq < 0 ? token : token.slice(0, eq);
    const rest = eq < 0 ? '' : token.slice(eq);
    return name.replaceAll('_', '-') + rest;
  });
}

/** Flags whose name is not the kebab-case of the library setting they set. */
const FLAG_OF_SETTING: Readonly<Record<string, string>> = { spacingMm: '--spacing', normGy: '--norm' };

/** The message with the flag of each setting it names, where the command has that flag: "patchSize (--patch-size)". */
export function withFlagNames(error: Error, command: Command | undefined): string {
  if (!(error instanceof VmatError) || !command) return error.message;
  let message = error.message;
  for (const setting of error.settings) {
    const option =
      command.options.find((candidate) => candidate.attributeName() === setting) ??
      command.options.find((candidate) => candidate.long !== undefined && candidate.long === FLAG_OF_SETTING[setting]);
    if (option?.long) message = message.replace(new RegExp(`\\b${setting}\\b`), `${setting} (${option.long})`);
  }
  return message;
}

export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  const args = normaliseFlagSpelling(argv);
  const verbose = args.includes('--verbose');
  let running: Command | undefined;
  program.hook('preAction', (_program, command) => {
    running = command;
  });
  guardStdout();
  try {
    await program.parseAsync(args, { from: 'user' });
    // A command may report failure without throwing (e.g. a failed self-check) by setting process.exitCode.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and version exit through here with code 0; commander has already printed its message.
      return error.exitCode === 0 ? 0 : 1;
    }
    if (isUserError(error)) {
      process.stderr.write(`vmat-native: ${error instanceof VmatError ? withFlagNames(error, running) : userMessage(error)}\n`);
      if (verbose && error.stack) process.stderr.write(`${error.stack}\n`);
      return 1;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`vmat-native: internal error: ${message}\n`);
    if (error instanceof Error && error.stack) {
      process.stderr.write(verbose ? `${error.stack}\n` : 'Run again with --verbose for the stack trace, and report it.\n');
    }
    return 2;
  }
}
