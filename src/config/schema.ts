/**
 * The training configuration: ONE table of fields from which the zod schema, the defaults, the `train` CLI flags,
 * `fit()`'s validation and `training_config.json` are all derived (spec/training.md, spec/cli.md).
 */
import { z } from 'zod';

import { sameStructurePair, structureKey, structureNameProblem } from '../data/structures.js';
import { invalidInput } from '../errors.js';
import { channelNames, DEFAULT_SITE, resolveSiteProfile } from '../sites/profile.js';


type FlagKind = 'string' | 'number' | 'integer' | 'boolean' | 'list' | 'numberPair';

interface Field {
  schema: z.ZodType;
  kind: FlagKind;
  /** What is allowed, in words: used in error messages and --help. */
  allowed: string;
  help: string;
  /** Required fields have no default. */
  required?: boolean;
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const positive = z.number().positive().finite();
const nonNegative = z.number().min(0).finite();
const fraction = z.number().min(0).lt(1);

/** The widest network the core builds (BaselineUNet3D at b = 256 has 655 million parameters, 2.6 GB). */
export const MAX_BASE_CHANNELS = 256;
/** Input channels are 1 CT + one per structure; the core takes at most 256. */
export const MAX_STRUCTURES = 255;
/** Beyond any prescription: the model's output is multiplied by it, and 1e300 would make every dose Infinity. */
export const MAX_NORMALISATION_DOSE_GY = 1000;
/** A bound whatever the machine: the native call path refuses more than 4 threads per CPU core besides. */
export const MAX_THREADS = 1024;

export const TRAIN_FIELDS = {
  dataDir: { schema: z.string().min(1), kind: 'string', allowed: 'a folder of case files', help: 'folder of case files (*.npz)', required: true },
  expName: {
    schema: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/),
    kind: 'string',
    allowed: 'a name of letters, digits, ".", "_" and "-"',
    help: 'experiment name: the run folder is <log-dir>/<exp-name>',
    required: true,
  },
  logDir: { schema: z.string().min(1).default('runs'), kind: 'string', allowed: 'a folder', help: 'parent folder of run folders' },
  epochs: { schema: int(1).default(200), kind: 'integer', allowed: 'an integer >= 1', help: 'maximum number of epochs' },
  // Upper bounds: what one batch can hold (a 512³ patch of 9 channels is 4.8 GB of input alone), so that a typo
  // is refused at once instead of failing minutes later on an allocation.
  batchSize: { schema: int(1, 1024).default(2), kind: 'integer', allowed: 'an integer from 1 to 1024', help: 'patches per optimizer step' },
  patchSize: {
    schema: int(16, 512).refine((v) => v % 16 === 0).default(128),
    kind: 'integer',
    allowed: 'a multiple of 16 from 16 to 512',
    help: 'edge of the cubic training and sliding-window patch, voxels',
  },
  patchesPerVolume: { schema: int(1, 10000).default(4), kind: 'integer', allowed: 'an integer from 1 to 10000', help: 'patches drawn per training case per epoch' },
  lr: { schema: positive.default(1e-4), kind: 'number', allowed: 'a number > 0', help: 'AdamW learning rate (start of the cosine schedule)' },
  weightDecay: { schema: nonNegative.default(0.01), kind: 'number', allowed: 'a number >= 0', help: 'AdamW weight decay' },
  betas: {
    schema: z.tuple([fraction, fraction]).default([0.9, 0.999]),
    kind: 'numberPair',
    allowed: 'two numbers in [0, 1), e.g. 0.9,0.999',
    help: 'AdamW betas',
  },
  minLr: { schema: nonNegative.default(1e-6), kind: 'number', allowed: 'a number >= 0', help: 'learning rate at the end of the cosine schedule' },
  gradClip: { schema: nonNegative.default(1.0), kind: 'number', allowed: 'a number >= 0 (0 turns clipping off)', help: 'gradient clipping, global L2 norm' },
  precision: {
    schema: z.enum(['auto', 'fp32', 'bf16', 'fp16']).default('auto'),
    kind: 'string',
    allowed: 'auto, fp32, bf16 or fp16',
    help: 'auto: bf16 autocast on CUDA (fp16 with loss scaling before sm_80), fp32 on CPU',
  },
  patience: { schema: int(1).default(50), kind: 'integer', allowed: 'an integer >= 1', help: 'early stopping: epochs without a better validation MAE' },
  seed: { schema: int(0).max(2 ** 31 - 1).default(42), kind: 'integer', allowed: 'an integer in [0, 2^31)', help: 'seed of the split, weights, sampling and augmentation' },
  baseChannels: {
    schema: int(8, MAX_BASE_CHANNELS).refine((v) => v % 8 === 0).default(48),
    kind: 'integer',
    allowed: `a multiple of 8 (GroupNorm has 8 groups) from 8 to ${MAX_BASE_CHANNELS}`,
    help: 'width of the first U-Net level',
  },
  site: {
    schema: z.string().min(1).max(4096).default(DEFAULT_SITE),
    kind: 'string',
    allowed: 'a shipped site profile (prostate-sib, head-neck) or the path of a profile .json file',
    help: 'site profile: structure channels, left-right pairs, conditioning vector, constraint table',
  },
  // Filled in from the site profile's channels when not given (parseTrainConfig).
  structures: {
    schema: z
      .array(z.string().refine((name) => !structureNameProblem(name)))
      .min(1)
      .max(MAX_STRUCTURES)
      .refine((names) => !sameStructurePair(names)),
    kind: 'list',
    allowed: `a comma-separated list of 1 to ${MAX_STRUCTURES} distinct structure names (compared ignoring case, spaces, '_' and '-')`,
    help: "structure channels of the model, in order (default: the site profile's, matched through its aliases)",
  },
  useGradientLoss: { schema: z.boolean().default(false), kind: 'boolean', allowed: 'true or false', help: 'add the Sobel gradient loss' },
  gradientLossWeight: { schema: nonNegative.default(0.1), kind: 'number', allowed: 'a number >= 0', help: 'weight of the gradient loss' },
  negativePenaltyWeight: { schema: nonNegative.default(0.1), kind: 'number', allowed: 'a number >= 0', help: 'weight of the negative-dose penalty' },
  // The later loss terms (README "Losses"); each is off unless its use* setting is on.
  useVggLoss: { schema: z.boolean().default(false), kind: 'boolean', allowed: 'true or false', help: 'add the 2.5D VGG16 perceptual loss (needs --vgg-weights)' },
  vggLossWeight: { schema: nonNegative.default(0.001), kind: 'number', allowed: 'a number >= 0', help: 'weight of the VGG perceptual loss' },
  vggSliceStride: { schema: int(1, 1024).default(8), kind: 'integer', allowed: 'an integer from 1 to 1024', help: 'the VGG loss uses every n-th slice of each orientation' },
  vggWeights: {
    schema: z.string().default(''),
    kind: 'string',
    allowed: 'a VGG16 safetensors file (scripts/convert-vgg16.py writes it from torchvision\'s weights)',
    help: 'VGG16 weights for the VGG loss, a safetensors file from scripts/convert-vgg16.py',
  },
  useStructureWeighted: { schema: z.boolean().default(false), kind: 'boolean', allowed: 'true or false', help: 'add the structure-weighted MSE' },
  structureWeightedWeight: { schema: nonNegative.default(1.0), kind: 'number', allowed: 'a number >= 0', help: 'weight of the structure-weighted MSE' },
  structureTargetWeight: { schema: nonNegative.default(2.0), kind: 'number', allowed: 'a number >= 0', help: 'structure-weighted MSE: voxel weight inside a target' },
  structureBoundaryWeight: { schema: nonNegative.default(1.5), kind: 'number', allowed: 'a number >= 0', help: 'structure-weighted MSE: voxel weight near the surface of a boundary structure' },
  structureBackgroundWeight: { schema: nonNegative.default(0.5), kind: 'number', allowed: 'a number >= 0', help: 'structure-weighted MSE: voxel weight elsewhere' },
  structureBoundaryWidthMm: {
    schema: z.number().gt(0).lt(50).default(5),
    kind: 'number',
    allowed: 'a number of mm above 0 and below 50 (the distance maps are clipped at 50 mm)',
    help: 'structure-weighted MSE: width of the boundary band, mm',
  },
  useAsymmetricPtv: { schema: z.boolean().default(false), kind: 'boolean', allowed: 'true or false', help: 'add the asymmetric PTV under-dose penalty' },
  asymmetricPtvWeight: { schema: nonNegative.default(1.0), kind: 'number', allowed: 'a number >= 0', help: 'weight of the asymmetric PTV penalty' },
  asymmetricUnderdoseWeight: { schema: nonNegative.default(3.0), kind: 'number', allowed: 'a number >= 0', help: 'asymmetric PTV penalty: weight of under-dose (prediction below the plan)' },
  asymmetricOverdoseWeight: { schema: nonNegative.default(1.0), kind: 'number', allowed: 'a number >= 0', help: 'asymmetric PTV penalty: weight of over-dose' },
  useDvhLoss: { schema: z.boolean().default(false), kind: 'boolean', allowed: 'true or false', help: 'add the differentiable DVH loss' },
  dvhLossWeight: { schema: nonNegative.default(0.1), kind: 'number', allowed: 'a number >= 0', help: 'weight of the DVH loss' },
  dvhBins: { schema: int(1, 1000).default(60), kind: 'integer', allowed: 'an integer from 1 to 1000', help: 'DVH loss: number of dose thresholds' },
  dvhMaxDose: {
    schema: positive.max(100).default(1.2),
    kind: 'number',
    allowed: 'a number above 0, at most 100 (in units of the normalisation dose)',
    help: 'DVH loss: highest threshold, in units of the normalisation dose',
  },
  targetStructures: {
    schema: z.array(z.string().min(1)).max(MAX_STRUCTURES).default([]),
    kind: 'list',
    allowed: 'a comma-separated list of names among the structures (empty: those named PTV…)',
    help: 'targets of the structure-weighted MSE and the asymmetric PTV penalty (empty: the structures named PTV…)',
  },
  boundaryStructures: {
    schema: z.array(z.string().min(1)).max(MAX_STRUCTURES).default([]),
    kind: 'list',
    allowed: 'a comma-separated list of names among the structures (empty: every structure that is not a target)',
    help: 'organs at risk whose surface band the structure-weighted MSE weights (empty: every structure that is not a target)',
  },
  dvhStructures: {
    schema: z.array(z.string().min(1)).max(MAX_STRUCTURES).default([]),
    kind: 'list',
    allowed: 'a comma-separated list of names among the structures (empty: all of them)',
    help: 'structures whose DVHs the DVH loss compares (empty: all of them)',
  },
  valSplit: { schema: fraction.default(0.1), kind: 'number', allowed: 'a fraction in [0, 1)', help: 'fraction of cases for validation (at least 1)' },
  testSplit: { schema: fraction.default(0.1), kind: 'number', allowed: 'a fraction in [0, 1)', help: 'fraction of cases held out for testing' },
  normalisationDoseGy: {
    schema: positive.max(MAX_NORMALISATION_DOSE_GY).default(70),
    kind: 'number',
    allowed: `a number of Gy above 0, at most ${MAX_NORMALISATION_DOSE_GY}`,
    help: 'the model sees dose / this',
  },
  device: {
    schema: z.string().regex(/^(auto|cpu|cuda(:\d+)?)$/).default('auto'),
    kind: 'string',
    allowed: 'auto, cpu, cuda or cuda:N',
    help: 'where to train',
  },
  threads: {
    schema: int(0, MAX_THREADS).default(0),
    kind: 'integer',
    allowed: `an integer from 0 to ${MAX_THREADS} (0: libtorch default; the native core also refuses more than 4 per CPU core)`,
    help: 'CPU threads of libtorch',
  },
  numWorkers: { schema: int(1).max(64).default(2), kind: 'integer', allowed: 'an integer in [1, 64]', help: 'patch loader threads' },
  swBatch: { schema: int(1, 1024).default(2), kind: 'integer', allowed: 'an integer from 1 to 1024', help: 'sliding-window patches per forward pass (validation)' },
  overlap: { schema: z.number().min(0).max(0.9).default(0.5), kind: 'number', allowed: 'a fraction in [0, 0.9]', help: 'sliding-window overlap (validation)' },
  tensorboard: {
    schema: z.boolean().default(false),
    kind: 'boolean',
    allowed: 'true or false',
    help: 'also write TensorBoard event files into the run folder (watch with: tensorboard --logdir <log-dir>)',
  },
} satisfies Record<string, Field>;

export type TrainField = keyof typeof TRAIN_FIELDS;

export const trainConfigSchema = z.object(
  Object.fromEntries(Object.entries(TRAIN_FIELDS).map(([key, field]) => [key, field.schema])) as {
    [K in TrainField]: (typeof TRAIN_FIELDS)[K]['schema'];
  },
);

/** Every setting, defaults filled in; `inChannels` is derived (1 CT channel + one per structure). */
export type TrainConfig = z.output<typeof trainConfigSchema> & { inChannels: number };
/** What `fit()` and `--config` accept: any subset of the fields, with dataDir and expName required. */
export type TrainConfigInput = Partial<z.input<typeof trainConfigSchema>> & { dataDir: string; expName: string };

/** kebab-case flag of a field (`patchSize` → `--patch-size`). */
export function flagOf(field: string): string {
  return `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** A value as a message shows it: at most 80 characters, whatever it is (a config file may nest 100 000 deep). */
function describeValue(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = `'${value}'`;
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = Array.isArray(value) ? 'an array nested too deeply to show' : typeof value === 'object' && value ? 'an object nested too deeply to show' : typeof value;
    }
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Validates and fills in defaults; an invalid or unknown field is one sentence naming it, the value and what is allowed. */
export function parseTrainConfig(input: unknown): TrainConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw invalidInput(`the training configuration must be an object of settings, got ${describeValue(input)}`);
  }
  const known = new Set(Object.keys(TRAIN_FIELDS));
  for (const key of Object.keys(input)) {
    if (key === 'inChannels') continue; // derived; present in a saved training_config.json
    if (!known.has(key)) {
      throw invalidInput(`unknown training setting ${describeValue(key)}; known settings: ${[...known].join(', ')}`);
    }
  }
  const given = input as Record<string, unknown>;
  // The channels default to the site profile's (prostate-sib: data.md's 8 structures).
  const record =
    given.structures === undefined && (given.site === undefined || typeof given.site === 'string')
      ? { ...given, structures: channelNames(resolveSiteProfile(given.site as string | undefined)) }
      : given;
  for (const [key, field] of Object.entries(TRAIN_FIELDS) as [TrainField, Field][]) {
    const value = record[key];
    if (value === undefined && (field as Field).required) {
      throw invalidInput(`training setting ${key} is required: ${field.allowed}`, { settings: [key] });
    }
    const result = field.schema.safeParse(value);
    if (!result.success) {
      throw invalidInput(`invalid training setting ${key}: got ${describeValue(value)}, expected ${field.allowed}`, { settings: [key] });
    }
  }
  const parsed = trainConfigSchema.parse(record) as z.output<typeof trainConfigSchema>;
  if (record.inChannels !== undefined && record.inChannels !== 1 + parsed.structures.length) {
    throw invalidInput(
      `invalid training setting inChannels: got ${describeValue(record.inChannels)}, but it is derived as 1 + the number of structures (${1 + parsed.structures.length})`,
    );
  }
  if (parsed.minLr > parsed.lr) {
    throw invalidInput(`invalid training setting minLr: got ${parsed.minLr}, expected a number <= lr (${parsed.lr})`, { settings: ['minLr', 'lr'] });
  }
  if (parsed.useVggLoss && parsed.vggWeights === '') {
    throw invalidInput(
      "useVggLoss needs vggWeights: a VGG16 safetensors file, which scripts/convert-vgg16.py writes from torchvision's vgg16 weights",
      { settings: ['useVggLoss', 'vggWeights'] },
    );
  }
  for (const key of ['targetStructures', 'boundaryStructures', 'dvhStructures'] as const) {
    const unknown = parsed[key].find((name) => !parsed.structures.some((s) => structureKey(s) === structureKey(name)));
    if (unknown !== undefined) {
      throw invalidInput(`invalid training setting ${key}: '${unknown}' is not one of the structures (${parsed.structures.join(', ')})`, { settings: [key, 'structures'] });
    }
  }
  return { ...parsed, inChannels: 1 + parsed.structures.length };
}

/**
 * The model-input channels (0 is the CT, structure i is channel 1 + i) of the structure loss terms: the targets (the
 * structures named PTV… unless targetStructures names them), the boundary structures (the others, unless named) and
 * the DVH structures (all, unless named).
 */
export function lossChannels(config: TrainConfig): { targetChannels: number[]; boundaryChannels: number[]; dvhChannels: number[] } {
  const channelsOf = (names: string[]) => names.map((name) => 1 + config.structures.findIndex((s) => structureKey(s) === structureKey(name)));
  const all = config.structures.map((_, i) => 1 + i);
  const targets = config.targetStructures.length > 0 ? channelsOf(config.targetStructures) : all.filter((c) => structureKey(config.structures[c - 1]!).startsWith('ptv'));
  return {
    targetChannels: targets,
    boundaryChannels: config.boundaryStructures.length > 0 ? channelsOf(config.boundaryStructures) : all.filter((c) => !targets.includes(c)),
    dvhChannels: config.dvhStructures.length > 0 ? channelsOf(config.dvhStructures) : all,
  };
}

/** Parses a flag's text into a field's value (numbers, booleans, lists); the schema then checks the range. */
export function parseFlagValue(field: TrainField, text: string): unknown {
  const kind = TRAIN_FIELDS[field].kind as FlagKind;
  const bad = () => invalidInput(`invalid training setting ${field}: got '${text}', expected ${TRAIN_FIELDS[field].allowed}`, { settings: [field] });
  switch (kind) {
    case 'number':
    case 'integer': {
      const value = Number(text);
      if (text.trim() === '' || !Number.isFinite(value)) throw bad();
      return value;
    }
    case 'boolean':
      if (/^(true|1|yes)$/i.test(text)) return true;
      if (/^(false|0|no)$/i.test(text)) return false;
      throw bad();
    case 'list':
      return text.split(',').map((part) => part.trim()).filter((part) => part.length > 0);
    case 'numberPair': {
      const values = text.split(',').map((part) => Number(part.trim()));
      if (values.length !== 2 || values.some((v) => !Number.isFinite(v))) throw bad();
      return values;
    }
    default:
      return text;
  }
}
