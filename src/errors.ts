/**
 * Errors the user can act on carry a code and a one-sentence message; the CLI prints the message and exits 1.
 * Anything else is an internal failure (exit 2).
 */
export type VmatErrorCode =
  | 'VMAT_INVALID_INPUT'
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
]);

export class VmatError extends Error {
  readonly code: VmatErrorCode;

  constructor(code: VmatErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VmatError';
    this.code = code;
  }
}

/** A user error: bad input, a bad flag, a file that is not what it should be. */
export function invalidInput(message: string, options?: { cause?: unknown }): VmatError {
  return new VmatError('VMAT_INVALID_INPUT', message, options);
}

export function isUserError(error: unknown): error is Error & { code: string } {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && USER_ERROR_CODES.has(code)) return true;
  // File-system errors on paths the user named (ENOENT, EACCES, EEXIST, ...).
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) && 'path' in error;
}
