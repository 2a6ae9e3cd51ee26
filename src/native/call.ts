/**
 * Runs a long native call: wires an AbortSignal to a native CancelToken, parses progress events, and turns a
 * native rejection into a VmatError that carries the caller's stack (native stacks end at the event loop).
 *
 * Aborting (one rule for every call, README "Cancelling a call"): a call whose signal is already aborted does not
 * start, and a call whose signal aborts before it settles rejects with an AbortError (name 'AbortError', code
 * 'ABORT_ERR', cause signal.reason), whether the native side stopped early or had already finished. A call whose
 * native result reports the stop itself (training: stop reason 'aborted', after saving `last`) passes
 * `abort: 'result'` and resolves with that result instead.
 */
import { abortError, VmatError, type VmatErrorCode } from '../errors.js';
import type { NativeCallOptions } from './addon.js';
import { loadNative } from './loader.js';

export interface CallOptions<Event> {
  onProgress?: (event: Event) => void;
  signal?: AbortSignal;
  threads?: number;
  /**
   * The settings of this call: a native message that names one (as a whole word, "try a smaller patchSize") carries
   * it in VmatError.settings, so that the CLI adds its flag as it does for messages of the TypeScript layer.
   */
  settings?: readonly string[];
}

export async function callNative<Result, Event = unknown>(
  start: (options: NativeCallOptions) => Promise<Result>,
  options: CallOptions<Event> & { abort?: 'reject' | 'result' } = {},
): Promise<Result> {
  const callerStack = new Error().stack ?? '';
  const { signal, onProgress } = options;
  const rejectOnAbort = options.abort !== 'result';
  if (rejectOnAbort && signal?.aborted) throw abortError('the call was aborted before it started', signal);
  const native = loadNative();
  const cancel = new native.CancelToken();
  const onAbort = () => cancel.cancel();
  if (signal?.aborted) cancel.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  let progressError: unknown;
  try {
    const result = await start({
      cancel,
      threads: options.threads,
      onProgress: onProgress
        ? (json: string) => {
            try {
              onProgress(JSON.parse(json) as Event);
            } catch (error) {
              // A throwing callback must not tear down the native worker; it is re-thrown after the call.
              progressError ??= error;
            }
          }
        : undefined,
    });
    if (progressError) throw progressError;
    if (rejectOnAbort && signal?.aborted) throw abortError('the call was aborted (its result is discarded)', signal);
    return result;
  } catch (error) {
    throw withCallerStack(error, callerStack, rejectOnAbort ? signal : undefined, options.settings ?? []);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function withCallerStack(error: unknown, callerStack: string, signal: AbortSignal | undefined, settings: readonly string[]): unknown {
  if (!(error instanceof Error)) return error;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('VMAT_') || error instanceof VmatError) return error;
  const named = settings.filter((setting) => new RegExp(`\\b${setting}\\b`).test(error.message));
  const wrapped =
    code === 'VMAT_CANCELLED' && signal ? abortError(error.message, signal) : new VmatError(code as VmatErrorCode, error.message, { settings: named });
  wrapped.stack = `${wrapped.name} [${wrapped.code}]: ${error.message}\n${callerStack.split('\n').slice(2).join('\n')}`;
  return wrapped;
}
