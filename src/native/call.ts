/**
 * Runs a long native call: wires an AbortSignal to a native CancelToken, parses progress events, and turns a
 * native rejection into a VmatError that carries the caller's stack (native stacks end at the event loop).
 */
import { VmatError, type VmatErrorCode } from '../errors.js';
import type { NativeCallOptions } from './addon.js';
import { loadNative } from './loader.js';

export interface CallOptions<Event> {
  onProgress?: (event: Event) => void;
  signal?: AbortSignal;
  threads?: number;
}

export async function callNative<Result, Event = unknown>(
  start: (options: NativeCallOptions) => Promise<Result>,
  options: CallOptions<Event> = {},
): Promise<Result> {
  const callerStack = new Error().stack ?? '';
  const native = loadNative();
  const cancel = new native.CancelToken();
  const onAbort = () => cancel.cancel();
  if (options.signal?.aborted) cancel.cancel();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const { onProgress } = options;
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
    return result;
  } catch (error) {
    throw withCallerStack(error, callerStack);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}

function withCallerStack(error: unknown, callerStack: string): unknown {
  if (!(error instanceof Error)) return error;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('VMAT_') || error instanceof VmatError) return error;
  const wrapped = new VmatError(code as VmatErrorCode, error.message);
  wrapped.stack = `${wrapped.name} [${code}]: ${error.message}\n${callerStack.split('\n').slice(2).join('\n')}`;
  return wrapped;
}
