import { invalidInput } from '../errors.js';

/** Printing rules shared by the commands: `--json` prints one JSON document on stdout and nothing else there. */

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Human-readable lines; with --json these go to stderr so that stdout stays one JSON document. */
export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Parses a comma-separated list of numbers ("96,128,128"), naming the flag when it is wrong. */
export function parseNumberList(flag: string, text: string, length?: number): number[] {
  const values = text.split(',').map((part) => Number(part.trim()));
  if (values.some((value) => !Number.isFinite(value)) || (length !== undefined && values.length !== length)) {
    const expected = length === undefined ? 'a comma-separated list of numbers' : `${length} comma-separated numbers`;
    throw invalidInput(`${flag} must be ${expected}, got '${text}'`);
  }
  return values;
}
