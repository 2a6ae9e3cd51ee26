/**
 * Errors the user can act on carry a code and a one-sentence message; the CLI prints the message and exits 1.
 * Anything else is an internal failure (exit 2).
 */
export type VmatErrorCode =
  | 'VMAT_INVALID_INPUT'
  /** the native layer's code for a cancelled call; callNative turns it into an AbortError */
  | 'VMAT_CANCELLED'
  | 'VMAT_OUT_OF_MEMORY'
  | 'VMAT_NOT_FINITE'
  | 'VMAT_IO'
  | 'VMAT_ADDON_LOAD'
  | 'VMAT_INTERNAL';

/** Codes that mean "the input or the environment is wrong", not "vmat-native is broken". */
const USER_ERROR_CODES: ReadonlySet<string> = new Set([
  'VMAT_INVALID_INPUT',
  'VMAT_CANCELLED',
  'VMAT_OUT_OF_MEMORY',
  'VMAT_NOT_FINITE',
  'VMAT_IO',
  'VMAT_ADDON_LOAD',
  'ABORT_ERR',
]);

export interface VmatErrorOptions {
  cause?: unknown;
  /**
   * The settings (camelCase names, as in the message) that the message names: library messages speak of settings,
   * and the CLI adds the flag of each where it prints the message ("patchSize (--patch-size)").
   */
  settings?: readonly string[];
}

export class VmatError extends Error {
  readonly code: VmatErrorCode;
  readonly settings: readonly string[];

  constructor(code: VmatErrorCode, message: string, options?: VmatErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VmatError';
    this.code = code;
    this.settings = options?.settings ?? [];
  }
}

/**
 * A call stopped by its AbortSignal, shaped as Node's own aborted calls are (fs, timers, events): name 'AbortError',
 * code 'ABORT_ERR', cause the signal's reason (an AbortSignal.timeout() gives a TimeoutError there).
 */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR';

  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
  }
}

/** The AbortError of `what` (e.g. "the gamma computation"), with the signal's reason as its cause. */
export function abortError(message: string, signal: AbortSignal | undefined): AbortError {
  return new AbortError(message, { cause: signal?.reason });
}

export function isAbortError(error: unknown): error is AbortError {
  return error instanceof Error && error.name === 'AbortError' && (error as { code?: unknown }).code === 'ABORT_ERR';
}

/** A user error: bad input, a bad setting, a file that is not what it should be. */
export function invalidInput(message: string, options?: VmatErrorOptions): VmatError {
  return new VmatError('VMAT_INVALID_INPUT', message, options);
}

export function isUserError(error: unknown): error is Error & { code: string } {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && USER_ERROR_CODES.has(code)) return true;
  // File-system errors on paths the user named (ENOENT, EACCES, EEXIST, ...).
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) && 'path' in error;
}
