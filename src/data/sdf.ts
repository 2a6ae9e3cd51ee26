/** The native case-data kernels (binding/data.cc) with AbortSignal, progress and error codes wired. */
import { invalidInput } from '../errors.js';
import { callNative, type CallOptions } from '../native/call.js';
import { loadNative } from '../native/loader.js';

export interface DistanceProgress {
  structure: number;
  of: number;
}

/**
 * Signed distance maps of `masks` [S,Z,Y,X] (0/1): mm to the surface, negative inside, clipped to ±clipMm (default
 * 50) and divided by it; an empty structure gives 0. Runs natively off the event loop; the masks are not copied.
 */
export async function signedDistanceMaps(
  masks: Uint8Array,
  shape: [number, number, number, number],
  spacingMm: [number, number, number],
  options: CallOptions<DistanceProgress> & { clipMm?: number } = {},
): Promise<Float32Array> {
  const count = shape.reduce((a, b) => a * b, 1);
  if (masks.length !== count) throw invalidInput(`masks hold ${masks.length} values, expected ${count} for shape [${shape.join(',')}]`);
  const result = await callNative<{ data: Float32Array }, DistanceProgress>(
    (native) => loadNative().data.signedDistanceMaps(masks, shape, spacingMm, { ...native, clipMm: options.clipMm }),
    options,
  );
  return result.data;
}

/** Body mask of a CT in HU [Z,Y,X]: above -500 HU, largest connected component, holes filled. */
export async function deriveBodyMask(ct: Int16Array | Float32Array, shape: [number, number, number], options: { signal?: AbortSignal; threads?: number } = {}): Promise<Uint8Array> {
  const count = shape.reduce((a, b) => a * b, 1);
  if (ct.length !== count) throw invalidInput(`ct holds ${ct.length} values, expected ${count} for shape [${shape.join(',')}]`);
  const result = await callNative<{ data: Uint8Array }>((native) => loadNative().data.deriveBodyMask(ct, shape, native), options);
  return result.data;
}
