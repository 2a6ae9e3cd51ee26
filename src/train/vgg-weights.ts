/**
 * The check of a VGG16 weights file before training starts (the native core checks it again when it loads it): a
 * safetensors file holding torchvision's tensors features.{0,2,5,7,10,12,14}.weight|bias with VGG16's shapes, as
 * scripts/convert-vgg16.py writes them. Reads the header only.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

import { invalidInput } from '../errors.js';

/** VGG16's convolutions up to relu3_3: torchvision's features index, output and input channels. */
const VGG16_CONVS: [number, number, number][] = [
  [0, 64, 3],
  [2, 64, 64],
  [5, 128, 64],
  [7, 128, 128],
  [10, 256, 128],
  [12, 256, 256],
  [14, 256, 256],
];
const FLOAT_DTYPES = new Set(['F16', 'BF16', 'F32', 'F64']);
/** The header of a VGG16 file is a few kB; this bounds what a hostile length field can make us read. */
const MAX_HEADER_BYTES = 16 * 1024 * 1024;

const expected = "expected torchvision's VGG16 weights as scripts/convert-vgg16.py writes them";

export function checkVggWeights(path: string): void {
  const settings = ['vggWeights'];
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    throw invalidInput(`the VGG16 weights file vggWeights '${path}' cannot be read: ${expected}`, { settings });
  }
  let header: Record<string, { dtype?: unknown; shape?: unknown }>;
  try {
    const size = fstatSync(fd).size;
    const notSafetensors = () => invalidInput(`the VGG16 weights file vggWeights '${path}' is not a safetensors file: ${expected}`, { settings });
    if (size < 8) throw notSafetensors();
    const prefix = Buffer.alloc(8);
    readSync(fd, prefix, 0, 8, 0);
    const length = Number(prefix.readBigUInt64LE(0));
    if (length < 2 || length > Math.min(size - 8, MAX_HEADER_BYTES)) throw notSafetensors();
    const text = Buffer.alloc(length);
    readSync(fd, text, 0, length, 8);
    try {
      header = JSON.parse(text.toString('utf8')) as typeof header;
    } catch {
      throw notSafetensors();
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) throw notSafetensors();
  } finally {
    closeSync(fd);
  }
  for (const [index, out, inChannels] of VGG16_CONVS) {
    for (const [part, shape] of [
      ['weight', [out, inChannels, 3, 3]],
      ['bias', [out]],
    ] as const) {
      const name = `features.${index}.${part}`;
      const entry = header[name];
      if (!entry || typeof entry !== 'object') throw invalidInput(`the weights file vggWeights '${path}' is not VGG16: it has no tensor ${name}; ${expected}`, { settings });
      const given = Array.isArray(entry.shape) ? entry.shape : [];
      if (given.length !== shape.length || given.some((n, i) => n !== shape[i])) {
        throw invalidInput(`the weights file vggWeights '${path}' is not VGG16: ${name} has shape [${given.join(', ')}], VGG16's is [${shape.join(', ')}]; ${expected}`, { settings });
      }
      if (!FLOAT_DTYPES.has(String(entry.dtype))) {
        throw invalidInput(`the weights file vggWeights '${path}' is not VGG16: ${name} is ${String(entry.dtype)}, expected floating point; ${expected}`, { settings });
      }
    }
  }
}
