/** The addon's plumbing, checked end to end from JavaScript (`vmat-native info --check`, and the tests). */
import { callNative } from './call.js';
import { loadNative } from './loader.js';

export interface SelfcheckResult {
  ok: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
}

export async function runSelfcheck(): Promise<SelfcheckResult> {
  const native = loadNative();
  const checks: SelfcheckResult['checks'] = [];

  const shared = new Float32Array([1, 2, 3]);
  native.selfcheck.scaleInPlace(shared, 2);
  checks.push({ name: 'tensor view of a TypedArray', ok: shared.join() === '2,4,6', detail: shared.join() });

  const handed = native.selfcheck.arange(4);
  checks.push({ name: 'tensor handed to JS', ok: handed.data.join() === '0,1,2,3', detail: handed.data.join() });

  const events: number[] = [];
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const result = await callNative<{ sum: number; stepsDone: number }, { step: number }>(
    (options) => native.selfcheck.sumAsync(new Float32Array([1, 2, 3]), 4, 10, options),
    { onProgress: (event) => events.push(event.step) },
  );
  clearInterval(timer);
  checks.push({ name: 'promise off the event loop', ok: result.sum === 24 && ticks > 0, detail: `sum ${result.sum}, ${ticks} timer ticks meanwhile` });
  checks.push({ name: 'ordered progress events', ok: events.join() === '1,2,3,4', detail: events.join() });

  const controller = new AbortController();
  const cancelled = callNative<{ stepsDone: number; cancelled: boolean }>(
    (options) => native.selfcheck.sumAsync(new Float32Array([1]), 1000, 5, options),
    { signal: controller.signal, abort: 'result' },
  );
  setTimeout(() => controller.abort(), 20);
  const stopped = await cancelled;
  checks.push({ name: 'cancellation', ok: stopped.cancelled && stopped.stepsDone < 1000, detail: `stopped after ${stopped.stepsDone} steps` });

  const code = await callNative(() => native.selfcheck.sumAsync(new Float32Array([1]), -1, 0, {})).then(
    () => 'resolved',
    (error: { code?: string }) => error.code ?? 'no code',
  );
  checks.push({ name: 'error codes', ok: code === 'VMAT_INVALID_INPUT', detail: code });

  return { ok: checks.every((check) => check.ok), checks };
}
