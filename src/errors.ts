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

/**
 * System errors that are the user's conditions (a full disk, a folder given as a file, a missing permission), with
 * their cause and remedy in words.
 */
const SYSTEM_CAUSES: Readonly<Record<string, string>> = {
  ENOSPC: 'the disk is full (ENOSPC): free some space or write elsewhere',
  EDQUOT: 'the disk quota is used up (EDQUOT): free some space or write elsewhere',
  EFBIG: 'the file is larger than this file system or `ulimit -f` allows (EFBIG)',
  EISDIR: 'a folder was given where a file is expected (EISDIR)',
  ENOTDIR: 'a file was given where a folder is expected (ENOTDIR)',
  ENOENT: 'no such file or folder (ENOENT)',
  EACCES: 'permission denied (EACCES)',
  EPERM: 'operation not permitted (EPERM)',
  EROFS: 'the file system is read-only (EROFS): write elsewhere',
  EEXIST: 'it already exists (EEXIST)',
  ENAMETOOLONG: 'the path is too long (ENAMETOOLONG)',
  EMFILE: 'too many open files (EMFILE): raise the limit with `ulimit -n`',
  ENFILE: 'too many open files on this system (ENFILE)',
  EIO: 'the device reported an input/output error (EIO): check the disk',
  ENXIO: 'no such device (ENXIO)',
  ELOOP: 'too many symbolic links (ELOOP)',
};

/** Conditions of the machine rather than of a path: Node reports them on a read or write, without the path. */
const CONDITIONS_WITHOUT_PATH: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EISDIR', 'ENOTDIR', 'EROFS', 'EIO', 'EMFILE', 'ENFILE']);

const SYSCALL_VERBS: Readonly<Record<string, string>> = { scandir: 'list', lstat: 'stat', copyfile: 'copy', fsync: 'write', close: 'write' };

export function isUserError(error: unknown): error is Error & { code: string } {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  if (USER_ERROR_CODES.has(code) || CONDITIONS_WITHOUT_PATH.has(code)) return true;
  // Other file-system errors on paths the user named.
  return /^E[A-Z]+$/.test(code) && 'path' in error;
}

/**
 * The one sentence a user reads for an error `isUserError` accepts: its message, or for a system error what could
 * not be done (`action`, by default from the system call and path) and the cause.
 */
export function userMessage(error: Error & { code: string }, action?: string): string {
  const cause = SYSTEM_CAUSES[error.code];
  if (error instanceof VmatError || !cause) return error.message;
  const { path, syscall } = error as { path?: unknown; syscall?: unknown };
  const verb = typeof syscall === 'string' ? (SYSCALL_VERBS[syscall] ?? syscall) : 'go on';
  return `${action ?? `cannot ${verb}${typeof path === 'string' ? ` ${path}` : ''}`}: ${cause}`;
}
