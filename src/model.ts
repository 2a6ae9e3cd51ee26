/**
 * The network (spec/model.md): BaselineUNet3D's parameter table, initial weights written as a checkpoint, and the
 * metadata of a checkpoint. The network itself runs in the native core.
 */
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';

import { MAX_BASE_CHANNELS, MAX_STRUCTURES } from './config/schema.js';
import { invalidInput, VmatError, type VmatErrorCode } from './errors.js';
import { callNative } from './native/call.js';
import { loadNative } from './native/loader.js';

export interface ModelConfig {
  architecture: string;
  inChannels: number;
  baseChannels: number;
  condDim: number;
  embedDim: number;
}

export interface LayerSummary {
  /** PyTorch's parameter name, e.g. `enc.0.conv1.weight`. */
  name: string;
  shape: number[];
  parameters: number;
}

export interface ModelSummary {
  parameters: number;
  layers: LayerSummary[];
}

export interface ModelShapeOptions {
  /** 1 CT + structure channels; 9 by default (10 with PTV50.4). */
  inChannels?: number;
  /** Base width b (a multiple of 8); 48 by default. */
  baseChannels?: number;
}

function shapeOf(options: ModelShapeOptions): { inChannels: number; baseChannels: number } {
  const inChannels = options.inChannels ?? 9;
  const baseChannels = options.baseChannels ?? 48;
  if (!Number.isInteger(inChannels) || inChannels < 1 || inChannels > MAX_STRUCTURES + 1) {
    throw invalidInput(`inChannels must be an integer from 1 to ${MAX_STRUCTURES + 1} (1 CT + one per structure), got ${inChannels}`);
  }
  if (!Number.isInteger(baseChannels) || baseChannels < 8 || baseChannels % 8 !== 0 || baseChannels > MAX_BASE_CHANNELS) {
    throw invalidInput(`baseChannels must be a multiple of 8 (GroupNorm has 8 groups) from 8 to ${MAX_BASE_CHANNELS}, got ${baseChannels}`);
  }
  return { inChannels, baseChannels };
}

/** The parameter table of BaselineUNet3D for these widths (23,732,801 parameters at 9 inputs, base 48), worked out
 * without building the network. */
export function modelSummary(options: ModelShapeOptions = {}): ModelSummary {
  const { inChannels, baseChannels } = shapeOf(options);
  return loadNative().modelSummary(inChannels, baseChannels);
}

/** Parses the model config JSON stored in a checkpoint's metadata (`config`). */
export function parseModelConfig(json: string): ModelConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(json) as Record<string, unknown>;
  } catch {
    throw invalidInput('the checkpoint metadata "config" is not valid JSON');
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidInput('the checkpoint metadata "config" is not a JSON object');
  const int = (key: string): number => {
    const value = raw[key];
    if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidInput(`the checkpoint config has no integer "${key}"`);
    return value;
  };
  return {
    architecture: String(raw.architecture ?? ''),
    inChannels: int('in_channels'),
    baseChannels: int('base_channels'),
    condDim: int('cond_dim'),
    embedDim: int('embed_dim'),
  };
}

export interface SaveInitialWeightsOptions extends ModelShapeOptions {
  /** Seed of libtorch's generator for PyTorch's default initialisation; 0 by default. */
  seed?: number;
  /** Replace an existing file (refused otherwise). */
  overwrite?: boolean;
  signal?: AbortSignal;
}

/** Writes freshly initialised weights as a vmat-native checkpoint (safetensors). */
export async function saveInitialWeights(
  path: string,
  options: SaveInitialWeightsOptions = {},
): Promise<{ path: string; parameters: number; config: ModelConfig }> {
  const { inChannels, baseChannels } = shapeOf(options);
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw invalidInput(`the seed must be a non-negative integer, got ${seed}`);
  if (!path.endsWith('.safetensors')) throw invalidInput(`the checkpoint file name must end in .safetensors, got ${path}`);
  if (existsSync(path) && !options.overwrite) throw invalidInput(`${path} already exists; set overwrite to replace it`, { settings: ['overwrite'] });
  // The weights and the initialisation's temporaries: checked before the network is built, not found out by it.
  const { parameters } = modelSummary({ inChannels, baseChannels });
  const needed = parameters * 4 * 2;
  if (needed > totalmem()) {
    throw new VmatError(
      'VMAT_OUT_OF_MEMORY',
      `a base-${baseChannels} network has ${parameters.toLocaleString('en-US')} parameters and needs about ${(needed / 2 ** 30).toFixed(1)} GiB to build, more than this machine's ${(totalmem() / 2 ** 30).toFixed(1)} GiB: use a smaller baseChannels`,
    );
  }
  const native = loadNative();
  const result = await callNative((callOptions) => native.saveInitialWeights(path, inChannels, baseChannels, seed, callOptions), {
    signal: options.signal,
  });
  return { path: result.path, parameters: result.parameters, config: parseModelConfig(result.config) };
}

export interface CheckpointMetadata {
  /** Every `__metadata__` entry, as stored. */
  metadata: Record<string, string>;
  /** The model config, when the file is a vmat-native checkpoint. */
  config?: ModelConfig;
  formatVersion?: string;
}

/** The metadata of a safetensors checkpoint, reading only its header. */
export function readCheckpointMetadata(path: string): CheckpointMetadata {
  let metadata: Record<string, string>;
  try {
    metadata = loadNative().readCheckpointMetadata(path);
  } catch (error) {
    // The addon's errors carry the code; the library throws VmatError, as its asynchronous calls do.
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('VMAT_')) throw new VmatError(code as VmatErrorCode, (error as Error).message, { cause: error });
    throw error;
  }
  return {
    metadata,
    config: metadata.config === undefined ? undefined : parseModelConfig(metadata.config),
    formatVersion: metadata.format_version,
  };
}
