/**
 * Site profiles: everything vmat-native knows about one treatment site and protocol, in one JSON data file
 * (`sites/<name>.json`, or a user's own file): the structure channels in order with their aliases, the left-right
 * pairs that the x flip swaps, the targets and their prescriptions, the conditioning (FiLM) vector, and the
 * constraint table of `evaluate`. `prostate-sib` is the default and reproduces the behaviour before profiles.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import { z } from 'zod';

import { structureKey } from '../data/structures.js';
import { invalidInput, VmatError } from '../errors.js';

/** The folder of the shipped profiles (`sites/` at the package root). */
export const SITES_DIR = resolve(import.meta.dirname, '..', '..', 'sites');
export const DEFAULT_SITE = 'prostate-sib';

const name = z.string().min(1).max(64);
const finite = z.number().finite();

/**
 * One slot of the conditioning vector. Values are in the model's units: fractions of a volume, doses divided by the
 * profile's normalisation dose, volumes in cc divided by `scaleCc`. A plan's *achieved* value of a slot is computed
 * from its dose as `kind` says (over the union of `structures`); `default` is the slot's value when there is no plan
 * (a limit, or the protocol's prescription).
 * - prescription: the target's prescription / normalisation dose (0 when the case has no such target)
 * - volumeFraction: the fraction of the structures' volume receiving at least `doseGy`
 * - volumeCc: the volume in cc receiving at least `doseGy` (or the dose of the doseLevel slot `doseSlot`), / scaleCc
 * - maxDose, meanDose: the structures' maximum or mean dose / normalisation dose
 * - doseLevel: a dose level / normalisation dose that parameterises another slot (a constant of the protocol)
 */
const conditioningSlotSchema = z.discriminatedUnion('kind', [
  z.strictObject({ name, kind: z.literal('prescription'), structures: z.array(name).length(1), default: finite.min(0) }),
  z.strictObject({ name, kind: z.literal('volumeFraction'), structures: z.array(name).min(1), doseGy: finite.positive(), default: finite.min(0).max(1) }),
  z.strictObject({
    name,
    kind: z.literal('volumeCc'),
    structures: z.array(name).min(1),
    doseGy: finite.positive().optional(),
    doseSlot: name.optional(),
    scaleCc: finite.positive(),
    default: finite.min(0),
  }),
  z.strictObject({ name, kind: z.literal('maxDose'), structures: z.array(name).min(1), default: finite.min(0) }),
  z.strictObject({ name, kind: z.literal('meanDose'), structures: z.array(name).min(1), default: finite.min(0) }),
  z.strictObject({ name, kind: z.literal('doseLevel'), default: finite.min(0) }),
]);

/**
 * One row of the constraint table: "<structure> <metric> < <limit> <unit>", e.g. "Rectum V50Gy < 50 %",
 * "Rectum Dmax < 75 Gy", "Bowel V45Gy < 195 cc". Metrics: V<dose>Gy (unit % or cc), Dmax, Dmean, D<x>% and D<x>cc
 * (unit Gy). With `slot`, a case whose constraint vector holds limits (`constraints_mode: "limits"`) sets the limit
 * from that slot instead (converted to `unit`).
 */
const constraintSchema = z.strictObject({
  structure: name,
  metric: z.string().regex(/^(V\d+(\.\d+)?Gy|Dmax|Dmean|D\d+(\.\d+)?%|D\d+(\.\d+)?cc)$/),
  limit: finite.min(0),
  unit: z.enum(['%', 'Gy', 'cc']),
  slot: name.optional(),
});

export const siteProfileSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/),
  description: z.string().max(500).default(''),
  fractions: z.number().int().min(1).max(100),
  normalisationDoseGy: finite.positive().max(200),
  structures: z.array(z.strictObject({ name, aliases: z.array(name).max(100).default([]) })).min(1).max(64),
  body: z.strictObject({ aliases: z.array(name).max(100) }).default({ aliases: [] }),
  leftRightPairs: z.array(z.tuple([name, name])).max(32).default([]),
  targets: z.array(z.strictObject({ structure: name, prescriptionGy: finite.positive().max(200) })).min(1).max(16),
  conditioning: z.array(conditioningSlotSchema).min(1).max(256),
  constraints: z.array(constraintSchema).max(256).default([]),
});

export type SiteProfile = z.output<typeof siteProfileSchema>;
export type ConditioningSlot = SiteProfile['conditioning'][number];
export type ConstraintSpec = SiteProfile['constraints'][number];

/** The issue's path in the profile as text: conditioning[3].structures[0]. */
function pathText(path: readonly PropertyKey[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i === 0 ? '' : '.'}${String(part)}`)).join('') || 'the profile';
}

/** Checks a parsed profile object; `source` names it in errors (a file path or a name). */
export function parseSiteProfile(input: unknown, source: string): SiteProfile {
  const result = siteProfileSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw invalidInput(`the site profile ${source} is not valid: ${pathText(issue.path)}: ${issue.message}`);
  }
  const profile = result.data;
  const bad = (what: string) => invalidInput(`the site profile ${source} is not valid: ${what}`);

  // Channel names and aliases: no two channels (or the body) may claim the same name.
  const claimed = new Map<string, string>();
  const claim = (alias: string, owner: string) => {
    const key = structureKey(alias);
    const previous = claimed.get(key);
    if (previous !== undefined && previous !== owner) throw bad(`the name '${alias}' belongs to both ${previous} and ${owner}`);
    claimed.set(key, owner);
  };
  for (const structure of profile.structures) {
    if ([...claimed.values()].includes(structure.name)) throw bad(`the structure ${structure.name} is listed twice`);
    claim(structure.name, structure.name);
  }
  for (const structure of profile.structures) for (const alias of structure.aliases) claim(alias, structure.name);
  for (const alias of profile.body.aliases) claim(alias, 'the body');

  const channel = new Set(profile.structures.map((s) => s.name));
  const known = (structure: string, where: string) => {
    if (!channel.has(structure)) throw bad(`${where} names ${structure}, which is not one of its structures (${[...channel].join(', ')})`);
  };
  const paired = new Set<string>();
  profile.leftRightPairs.forEach(([left, right], i) => {
    known(left, `leftRightPairs[${i}]`);
    known(right, `leftRightPairs[${i}]`);
    if (left === right || paired.has(left) || paired.has(right)) throw bad(`leftRightPairs[${i}] pairs a structure that is already paired`);
    paired.add(left).add(right);
  });
  profile.targets.forEach((target, i) => known(target.structure, `targets[${i}]`));
  if (new Set(profile.targets.map((t) => t.structure)).size !== profile.targets.length) throw bad('a target is listed twice');

  const slots = new Map<string, ConditioningSlot>();
  profile.conditioning.forEach((slot, i) => {
    if (slots.has(slot.name)) throw bad(`the conditioning slot ${slot.name} is listed twice`);
    slots.set(slot.name, slot);
    // A prescription slot may name a target the protocol has not got (0 then, as ptv50_4_rx in prostate-sib).
    if (slot.kind !== 'doseLevel' && slot.kind !== 'prescription') slot.structures.forEach((s) => known(s, `conditioning[${i}] (${slot.name})`));
  });
  profile.conditioning.forEach((slot, i) => {
    if (slot.kind !== 'volumeCc') return;
    if ((slot.doseGy === undefined) === (slot.doseSlot === undefined)) throw bad(`conditioning[${i}] (${slot.name}) needs exactly one of doseGy and doseSlot`);
    if (slot.doseSlot !== undefined && slots.get(slot.doseSlot)?.kind !== 'doseLevel') {
      throw bad(`conditioning[${i}] (${slot.name}) takes its dose from ${slot.doseSlot}, which is not a doseLevel slot`);
    }
  });
  profile.constraints.forEach((row, i) => {
    known(row.structure, `constraints[${i}]`);
    const volume = row.metric.startsWith('V');
    if (volume ? row.unit === 'Gy' : row.unit !== 'Gy') throw bad(`constraints[${i}] (${row.structure} ${row.metric}) cannot be in ${row.unit}`);
    if (row.unit === '%' && row.limit > 100) throw bad(`constraints[${i}] (${row.structure} ${row.metric}) has a limit over 100 %`);
    if (row.slot !== undefined) {
      const slot = slots.get(row.slot);
      if (!slot) throw bad(`constraints[${i}] takes its limit from ${row.slot}, which is not a conditioning slot`);
      const compatible =
        (slot.kind === 'volumeFraction' && row.unit === '%') ||
        (slot.kind === 'volumeCc' && row.unit === 'cc') ||
        ((slot.kind === 'maxDose' || slot.kind === 'meanDose') && row.unit === 'Gy');
      if (!compatible) throw bad(`constraints[${i}] (${row.metric} in ${row.unit}) cannot take its limit from the ${slot.kind} slot ${row.slot}`);
      // Without a case's limits the table takes the slot's default: it must be the row's limit.
      const fromSlot = slot.kind === 'volumeCc' ? slot.default * slot.scaleCc : row.unit === 'Gy' ? slot.default * profile.normalisationDoseGy : slot.default * 100;
      if (Math.abs(fromSlot - row.limit) > 1e-6 * Math.max(1, row.limit)) {
        throw bad(`constraints[${i}] (${row.structure} ${row.metric} < ${row.limit} ${row.unit}) disagrees with the default of its slot ${row.slot} (${+fromSlot.toFixed(6)} ${row.unit})`);
      }
      if (slot.kind === 'volumeCc' && slot.doseSlot !== undefined) {
        const level = slots.get(slot.doseSlot)!.default * profile.normalisationDoseGy;
        const metricGy = Number(/^V(.+)Gy$/.exec(row.metric)?.[1]);
        if (Math.abs(level - metricGy) > 1e-6 * Math.max(1, metricGy)) throw bad(`constraints[${i}] (${row.structure} ${row.metric}) disagrees with the dose level of ${slot.doseSlot} (${+level.toFixed(6)} Gy)`);
      }
    }
  });
  return profile;
}

/** The names of the shipped profiles. */
export function shippedSites(): string[] {
  if (!existsSync(SITES_DIR)) return [];
  return readdirSync(SITES_DIR)
    .filter((file) => file.endsWith('.json'))
    .map((file) => basename(file, '.json'))
    .sort();
}

const cache = new Map<string, SiteProfile>();

/**
 * A profile by shipped name (`prostate-sib`, `head-neck`) or by the path of a JSON file. Errors are one sentence:
 * an unknown name lists the shipped ones.
 */
export function loadSiteProfile(site: string = DEFAULT_SITE): SiteProfile {
  const isPath = site.endsWith('.json') || site.includes('/') || site.includes('\\');
  const path = isPath ? resolve(site) : join(SITES_DIR, `${site}.json`);
  const cached = cache.get(path);
  if (cached) return cached;
  if (!existsSync(path)) {
    throw invalidInput(
      isPath
        ? `the site profile ${site} does not exist: expected a JSON file`
        : `unknown site '${site}': expected one of ${shippedSites().join(', ')}, or the path of a profile .json file`,
    );
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw invalidInput(`cannot read the site profile ${path}: ${(error as Error).message}`);
  }
  if (text.length > 1_000_000) throw invalidInput(`the site profile ${path} is ${text.length} bytes: expected a JSON file under 1 MB`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw invalidInput(`the site profile ${path} is not valid JSON: ${(error as Error).message}`);
  }
  const profile = parseSiteProfile(json, isPath ? path : site);
  if (!isPath && profile.name !== site) throw invalidInput(`the shipped site profile ${path} names itself '${profile.name}', not '${site}'`);
  cache.set(path, profile);
  return profile;
}

/** Channel names in order. */
export function channelNames(profile: SiteProfile): string[] {
  return profile.structures.map((s) => s.name);
}

/** The conditioning vector when no plan is known: every slot's default. */
export function defaultConditioning(profile: SiteProfile): Float32Array {
  return Float32Array.from(profile.conditioning.map((slot) => slot.default));
}

/**
 * Matches structure names (a case's, or a DICOM RTSTRUCT's ROI names) onto the profile's channels: exact names
 * first, then aliases, both compared by `structureKey` (case, spaces, `_` and `-` ignored); `extra` (a user's
 * `--structure-map`: ROI name → channel name) wins over both.
 */
export function structureMatcher(profile: SiteProfile, extra: Record<string, string> = {}): (name: string) => string | 'body' | null {
  const byKey = new Map<string, string | 'body'>();
  for (const alias of profile.body.aliases) byKey.set(structureKey(alias), 'body');
  for (const structure of profile.structures) for (const alias of structure.aliases) byKey.set(structureKey(alias), structure.name);
  for (const structure of profile.structures) byKey.set(structureKey(structure.name), structure.name);
  const channels = new Set(channelNames(profile));
  for (const [from, to] of Object.entries(extra)) {
    if (to !== 'body' && !channels.has(to)) {
      throw invalidInput(`the structure map sends '${from}' to '${to}', which is not a structure of the site ${profile.name} (${[...channels].join(', ')}) or 'body'`);
    }
    byKey.set(structureKey(from), to);
  }
  return (roi) => byKey.get(structureKey(roi)) ?? null;
}

/** Whether a profile is the shipped default (a run or checkpoint that records no profile is this one). */
export function isDefaultProfile(profile: SiteProfile): boolean {
  return JSON.stringify(profile) === JSON.stringify(loadSiteProfile(DEFAULT_SITE));
}

/**
 * The profile of a setting `site` (a shipped name or a .json path) or a profile object already resolved (a run's or
 * a checkpoint's record); errors name the setting.
 */
export function resolveSiteProfile(site: string | SiteProfile | undefined, source = 'the site'): SiteProfile {
  if (site === undefined) return loadSiteProfile(DEFAULT_SITE);
  try {
    return typeof site === 'string' ? loadSiteProfile(site) : parseSiteProfile(site, source);
  } catch (error) {
    // An unknown name speaks of the setting; a file's problems name the file.
    if (error instanceof VmatError && typeof site === 'string' && error.message.startsWith('unknown site')) throw invalidInput(error.message, { settings: ['site'], cause: error });
    throw error;
  }
}

/** The site a case file records (`metadata.site`); a case that records none is of the default site. */
export function caseSiteName(metadata: Record<string, unknown>): string {
  return typeof metadata.site === 'string' ? metadata.site : DEFAULT_SITE;
}

/**
 * A case's structure names as the profile's channel names (through its aliases), for `mapStructures`; a name the
 * profile does not know stays as it is. Two names that become one channel are refused, naming both.
 */
export function channelNamesOfCase(profile: SiteProfile, names: readonly string[]): string[] {
  const match = structureMatcher(profile);
  const mapped = names.map((name) => {
    const channel = match(name);
    return channel === null || channel === 'body' ? name : channel;
  });
  const byKey = new Map<string, number>();
  mapped.forEach((name, index) => {
    const first = byKey.get(structureKey(name));
    if (first !== undefined && structureKey(names[first]!) !== structureKey(names[index]!)) {
      throw invalidInput(`the case names '${names[first]}' and '${names[index]}', which are both the structure ${name} of the site ${profile.name}: expected each structure once`);
    }
    byKey.set(structureKey(name), index);
  });
  return mapped;
}

/**
 * The model input channels (1 + index in `channels`; channel 0 is the CT) that the x flip swaps: the profile's
 * left-right pairs of which both structures are channels.
 */
export function leftRightChannelPairs(profile: SiteProfile, channels: readonly string[]): [number, number][] {
  const match = structureMatcher(profile);
  const index = (name: string) => channels.findIndex((channel) => structureKey(match(channel) ?? channel) === structureKey(name));
  return profile.leftRightPairs.flatMap(([left, right]): [number, number][] => {
    const [a, b] = [index(left), index(right)];
    return a >= 0 && b >= 0 ? [[1 + a, 1 + b]] : [];
  });
}
