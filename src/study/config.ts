/**
 * The settings of a study (README "Studies"): the arms (training choices) compared, the training seeds, the optional
 * k-fold cross-validation, the shared training settings, the metrics and the bootstrap. A study file
 * (`study --study FILE`, or `runStudy(config)`) holds the same fields; the study folder's study.json is the resolved
 * form, which can be given again as a study file.
 *
 * Arm grammar (`--arms a,b,c`, or the strings of a study file's `arms`):
 *   arm      := preset | name '{' override (';' override)* '}'
 *   preset   := 'baseline' | 'grad_loss_' W | 'vgg_loss_' W | 'structure_weighted_' W | 'asymmetric_ptv_' W | 'dvh_loss_' W
 *   override := setting '=' value        (a training setting, camelCase or its flag's kebab-case, with its flag's value)
 * A preset with overrides (`grad_loss_0.1{patience=20}`) starts from the preset. Commas inside braces belong to the
 * arm (`s{structures=PTV70,Rectum}`). A study file may also give an arm as { "name": ..., "settings": {...} }.
 */
import { z } from 'zod';

import { parseFlagValue, parseTrainConfig, TRAIN_FIELDS, type TrainConfig, type TrainField } from '../config/schema.js';
import { invalidInput } from '../errors.js';
import type { StudyMetric } from './stats.js';

export interface StudyArm {
  /** Names the arm's run folders (`<name>_s<seed>`), so letters, digits, '.', '_' and '-'. */
  name: string;
  /** What the sentences call it, e.g. "gradient loss 0.1". */
  label: string;
  /** The settings the arm changes against the shared ones. */
  settings: Record<string, unknown>;
}

/** A study as runStudy and the CLI take it; the training settings are those of fit() (dataDir and expName there). */
export interface StudyConfigInput {
  /** The arms in order; the first is the baseline of every difference. At least two. */
  arms: Array<string | { name: string; label?: string; settings?: Record<string, unknown> }>;
  /** The training seeds: a count n (seeds s, s + 1, …, s + n − 1 from the training seed s, default 42) or a list. */
  seeds?: number | number[];
  /** k-fold cross-validation with k folds (every case tested once per seed); absent: the plain split. */
  folds?: number;
  /** The shared training settings (fit()'s fields); dataDir and expName are required; the study is in logDir/expName. */
  train: Record<string, unknown>;
  /** Flat evaluation keys (cases.csv's columns) to compare; default: DEFAULT_STUDY_METRICS. */
  metrics?: string[];
  bootstrap?: { resamples?: number; seed?: number; confidence?: number };
}

export interface StudyConfig {
  arms: StudyArm[];
  seeds: number[];
  /** 0: the plain split (from the first seed, kept for every seed) */
  folds: number;
  train: Record<string, unknown>;
  /** The shared settings validated, defaults filled in. */
  shared: TrainConfig;
  metrics: StudyMetric[];
  bootstrap: { resamples: number; seed: number; confidence: number };
}

/** What the study decides itself for each run, so that arms cannot change it (the pairing needs one split). */
const STUDY_OWNED: TrainField[] = ['dataDir', 'logDir', 'expName', 'seed', 'valSplit', 'testSplit'];

/** The metrics compared by default: the gamma pass rates (full 3D) and the dose errors. */
export const DEFAULT_STUDY_METRICS: StudyMetric[] = [
  { name: 'gamma.3%/3mm.pass_rate_pct', label: 'gamma 3%/3 mm', unit: 'pp', decimals: 1 },
  { name: 'gamma.2%/2mm.pass_rate_pct', label: 'gamma 2%/2 mm', unit: 'pp', decimals: 1 },
  { name: 'gamma.3%/3mm_ptv.pass_rate_pct', label: 'gamma 3%/3 mm in the PTVs', unit: 'pp', decimals: 1 },
  { name: 'mae_gy.body', label: 'MAE in the body', unit: 'Gy', decimals: 2 },
  { name: 'mae_gy.PTV70', label: 'MAE in PTV70', unit: 'Gy', decimals: 2 },
];

/** A metric named by its evaluation key: the default's words where it is one, else the key itself. */
export function studyMetric(name: string): StudyMetric {
  const known = DEFAULT_STUDY_METRICS.find((m) => m.name === name);
  if (known) return known;
  const unit = name.startsWith('gamma.') && name.endsWith('pass_rate_pct') ? 'pp' : name.includes('_gy') ? 'Gy' : '';
  return { name, label: name, unit, decimals: unit === 'Gy' ? 2 : unit === 'pp' ? 1 : 3 };
}

const ARM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const PRESETS: { prefix: string; label: string; settings: (weight: number) => Record<string, unknown> }[] = [
  { prefix: 'grad_loss_', label: 'gradient loss', settings: (w) => ({ useGradientLoss: true, gradientLossWeight: w }) },
  { prefix: 'vgg_loss_', label: 'VGG loss', settings: (w) => ({ useVggLoss: true, vggLossWeight: w }) },
  { prefix: 'structure_weighted_', label: 'structure-weighted MSE', settings: (w) => ({ useStructureWeighted: true, structureWeightedWeight: w }) },
  { prefix: 'asymmetric_ptv_', label: 'asymmetric PTV penalty', settings: (w) => ({ useAsymmetricPtv: true, asymmetricPtvWeight: w }) },
  { prefix: 'dvh_loss_', label: 'DVH loss', settings: (w) => ({ useDvhLoss: true, dvhLossWeight: w }) },
];

export const PRESET_NAMES = ['baseline', ...PRESETS.map((p) => `${p.prefix}<weight>`)];

function preset(name: string): { label: string; settings: Record<string, unknown> } | undefined {
  if (name === 'baseline') return { label: 'baseline', settings: {} };
  for (const p of PRESETS) {
    if (!name.startsWith(p.prefix)) continue;
    const text = name.slice(p.prefix.length);
    const weight = Number(text);
    if (text === '' || !Number.isFinite(weight) || weight < 0) {
      throw invalidInput(`the arm '${name}' has no weight: expected ${p.prefix}<a number >= 0>, e.g. ${p.prefix}0.1`, { settings: ['arms'] });
    }
    return { label: `${p.label} ${text}`, settings: p.settings(weight) };
  }
  return undefined;
}

/** `gradientLossWeight` or `gradient-loss-weight` → the schema's field name. */
function settingName(key: string, arm: string): TrainField {
  const camel = key.trim().replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  if (!(camel in TRAIN_FIELDS)) throw invalidInput(`the arm '${arm}' sets '${key.trim()}', which is not a training setting (e.g. gradientLossWeight or gradient-loss-weight)`, { settings: ['arms'] });
  return camel as TrainField;
}

function checkOwned(settings: Record<string, unknown>, arm: string): void {
  const owned = Object.keys(settings).find((key) => STUDY_OWNED.includes(key as TrainField));
  if (owned) throw invalidInput(`the arm '${arm}' sets ${owned}, which the study sets for every arm (the arms are compared on the same cases and seeds)`, { settings: ['arms'] });
}

/** One arm of `--arms` (or a study file's string). */
export function parseArm(text: string): StudyArm {
  const spec = text.trim();
  const brace = spec.indexOf('{');
  const name = brace < 0 ? spec : spec.slice(0, brace);
  if (!ARM_NAME.test(name)) throw invalidInput(`the arm '${spec}' needs a name of letters, digits, '.', '_' and '-' (e.g. baseline, grad_loss_0.1 or lr_low{lr=5e-5})`, { settings: ['arms'] });
  const base = preset(name);
  const settings: Record<string, unknown> = { ...(base?.settings ?? {}) };
  if (brace >= 0) {
    if (!spec.endsWith('}')) throw invalidInput(`the arm '${spec}' opens '{' without closing it: expected name{setting=value;...}`, { settings: ['arms'] });
    const body = spec.slice(brace + 1, -1);
    for (const part of body.split(';').filter((p) => p.trim() !== '')) {
      const eq = part.indexOf('=');
      if (eq < 0) throw invalidInput(`the arm '${spec}' has '${part.trim()}' without a value: expected setting=value`, { settings: ['arms'] });
      const field = settingName(part.slice(0, eq), name);
      settings[field] = parseFlagValue(field, part.slice(eq + 1).trim());
    }
  } else if (!base) {
    throw invalidInput(`unknown arm '${name}': expected a preset (${PRESET_NAMES.join(', ')}) or explicit settings, name{setting=value;...}`, { settings: ['arms'] });
  }
  checkOwned(settings, name);
  return { name, label: base && brace < 0 ? base.label : name, settings };
}

/** `--arms` text: arms separated by commas outside braces. */
export function splitArms(text: string): string[] {
  const arms: string[] = [];
  let depth = 0;
  let current = '';
  for (const c of text) {
    if (c === '{') depth++;
    if (c === '}') depth = Math.max(0, depth - 1);
    if (c === ',' && depth === 0) {
      arms.push(current);
      current = '';
    } else current += c;
  }
  arms.push(current);
  return arms.map((a) => a.trim()).filter((a) => a !== '');
}

const fileSchema = z
  .object({
    arms: z.array(z.union([z.string(), z.object({ name: z.string(), label: z.string().optional(), settings: z.record(z.string(), z.unknown()).optional() }).strict()])),
    seeds: z.union([z.number(), z.array(z.number())]).optional(),
    folds: z.number().optional(),
    train: z.record(z.string(), z.unknown()),
    metrics: z.array(z.string()).optional(),
    bootstrap: z.object({ resamples: z.number().optional(), seed: z.number().optional(), confidence: z.number().optional() }).strict().optional(),
  })
  .strict();

const STUDY_FIELDS = ['arms', 'seeds', 'folds', 'train', 'metrics', 'bootstrap'];

/** Validates a study (a study file's content or runStudy's argument); each problem is one sentence naming the field. */
export function parseStudyConfig(input: unknown): StudyConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalidInput('the study must be an object with arms, seeds and train (a JSON object in a study file)');
  const unknownKey = Object.keys(input).find((key) => !STUDY_FIELDS.includes(key));
  if (unknownKey !== undefined) throw invalidInput(`unknown study field '${unknownKey}'; the fields are ${STUDY_FIELDS.join(', ')}`, { settings: [unknownKey] });
  const parsed = fileSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.') || 'the study';
    const what: Record<string, string> = {
      arms: 'a list of arms (strings such as "baseline" or "grad_loss_0.1", or {"name", "settings"} objects)',
      seeds: 'a number of seeds or a list of seeds',
      folds: 'a number of folds',
      train: 'an object of training settings (the fields of fit())',
      metrics: 'a list of evaluation keys (e.g. "gamma.3%/3mm.pass_rate_pct")',
      bootstrap: 'an object with resamples, seed and confidence',
    };
    throw invalidInput(`invalid study field ${field}: expected ${what[String(issue.path[0])] ?? issue.message}`, { settings: [String(issue.path[0] ?? 'study')] });
  }
  const file = parsed.data;

  const shared = parseTrainConfig(file.train);
  const arms = file.arms.map((arm) => {
    if (typeof arm === 'string') return parseArm(arm);
    if (!ARM_NAME.test(arm.name)) throw invalidInput(`the arm name '${arm.name}' must be letters, digits, '.', '_' and '-'`, { settings: ['arms'] });
    const settings = arm.settings ?? {};
    for (const key of Object.keys(settings)) settingName(key, arm.name);
    checkOwned(settings, arm.name);
    return { name: arm.name, label: arm.label ?? arm.name, settings };
  });
  if (arms.length < 2) throw invalidInput(`a study compares at least two arms (the first is the baseline), got ${arms.length}`, { settings: ['arms'] });
  const names = arms.map((a) => a.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw invalidInput(`the arm '${twice}' is named twice: each arm needs its own name`, { settings: ['arms'] });
  for (const arm of arms) parseTrainConfig({ ...file.train, ...arm.settings }); // each arm's settings are valid

  const seedsField = file.seeds ?? 3;
  let seeds: number[];
  if (typeof seedsField === 'number') {
    if (!Number.isInteger(seedsField) || seedsField < 1 || seedsField > 1000) throw invalidInput(`invalid study field seeds: got ${seedsField}, expected a number of seeds from 1 to 1000 or a list of seeds`, { settings: ['seeds'] });
    seeds = Array.from({ length: seedsField }, (_, i) => shared.seed + i);
  } else {
    seeds = seedsField;
    if (seeds.length === 0) throw invalidInput('invalid study field seeds: the list is empty, expected at least one seed', { settings: ['seeds'] });
  }
  for (const seed of seeds) {
    if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 31) throw invalidInput(`invalid study field seeds: ${seed} is not an integer in [0, 2^31)`, { settings: ['seeds'] });
  }
  if (new Set(seeds).size !== seeds.length) throw invalidInput(`invalid study field seeds: a seed is listed twice (${seeds.join(', ')})`, { settings: ['seeds'] });

  const folds = file.folds ?? 0;
  if (folds !== 0 && (!Number.isInteger(folds) || folds < 2 || folds > 100)) throw invalidInput(`invalid study field folds: got ${folds}, expected an integer from 2 to 100 (or none for the plain split)`, { settings: ['folds'] });
  if (folds === 0 && shared.testSplit === 0) throw invalidInput('the study has no test cases: testSplit is 0; set testSplit above 0 or use folds', { settings: ['testSplit', 'folds'] });

  const metricNames = file.metrics ?? DEFAULT_STUDY_METRICS.map((m) => m.name);
  if (metricNames.length === 0) throw invalidInput('invalid study field metrics: the list is empty, expected at least one evaluation key', { settings: ['metrics'] });
  const bootstrap = { resamples: file.bootstrap?.resamples ?? 10000, seed: file.bootstrap?.seed ?? 0, confidence: file.bootstrap?.confidence ?? 0.95 };
  if (!Number.isInteger(bootstrap.resamples) || bootstrap.resamples < 100 || bootstrap.resamples > 1_000_000) throw invalidInput(`invalid study field bootstrap.resamples: got ${bootstrap.resamples}, expected an integer from 100 to 1000000`, { settings: ['resamples'] });
  if (!Number.isInteger(bootstrap.seed) || bootstrap.seed < 0 || bootstrap.seed >= 2 ** 32) throw invalidInput(`invalid study field bootstrap.seed: got ${bootstrap.seed}, expected an integer in [0, 2^32)`, { settings: ['bootstrapSeed'] });
  if (!(bootstrap.confidence > 0 && bootstrap.confidence < 1)) throw invalidInput(`invalid study field bootstrap.confidence: got ${bootstrap.confidence}, expected a fraction between 0 and 1`, { settings: ['confidence'] });
  return { arms, seeds, folds, train: file.train, shared, metrics: metricNames.map(studyMetric), bootstrap };
}

/** study.json: the study file form of a resolved study; given back to parseStudyConfig it gives the same study. */
export interface StudyFile {
  arms: { name: string; label: string; settings: Record<string, unknown> }[];
  seeds: number[];
  folds?: number;
  train: Record<string, unknown>;
  metrics: string[];
  bootstrap: { resamples: number; seed: number; confidence: number };
}

/** The study file form of a resolved study (study.json). */
export function studyFile(config: StudyConfig): StudyFile {
  return {
    arms: config.arms.map((arm) => ({ name: arm.name, label: arm.label, settings: arm.settings })),
    seeds: config.seeds,
    ...(config.folds > 0 ? { folds: config.folds } : {}),
    train: config.train,
    metrics: config.metrics.map((m) => m.name),
    bootstrap: config.bootstrap,
  };
}
