/**
 * Data-parallel training (native/src/distributed.cpp): which rank this process is, read from `fit()`'s `distributed`
 * option, from the variables `torchrun` sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or from SLURM's
 * (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODELIST), and the settings that cross into the engine.
 */
import { invalidInput } from '../errors.js';

/** One process of a data-parallel run. */
export interface DistributedOptions {
  /** Number of processes in the run (1: not distributed). */
  worldSize: number;
  /** This process's rank, 0 … worldSize − 1; rank 0 writes the run folder and sends the events. */
  rank: number;
  /** This process's index on its machine: its CUDA device (cuda:localRank). Default: rank. */
  localRank?: number;
  /** Host of rank 0, where the ranks meet. Default 127.0.0.1. */
  masterAddr?: string;
  /** Port rank 0 listens on. Default 29500 (torchrun's). */
  masterPort?: number;
  /** A rank that does not answer within this many seconds ends the run, named. Default 60. */
  timeoutSeconds?: number;
}

/** What the engine reads (binding/train.cc): every key, no defaults there. */
export interface NativeDistributedSettings {
  worldSize: number;
  rank: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
  timeoutSeconds: number;
}

export const DEFAULT_MASTER_PORT = 29500;
export const DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS = 60;

/** The settings of one process alone. */
export const SINGLE_PROCESS: NativeDistributedSettings = {
  worldSize: 1,
  rank: 0,
  localRank: 0,
  masterAddr: '',
  masterPort: 0,
  timeoutSeconds: DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS,
};

const wholeNumber = (value: unknown, minimum: number) => typeof value === 'number' && Number.isInteger(value) && value >= minimum;

/** Checks `fit()`'s `distributed` option and fills in its defaults; a bad value is refused naming the field. */
export function resolveDistributed(options: DistributedOptions | undefined): NativeDistributedSettings {
  if (options === undefined) return SINGLE_PROCESS;
  const refuse = (field: keyof DistributedOptions, expected: string, value: unknown) =>
    invalidInput(`distributed.${field} is ${JSON.stringify(value)}: expected ${expected}`, { settings: [`distributed.${field}`] });
  if (!wholeNumber(options.worldSize, 1)) throw refuse('worldSize', 'a whole number >= 1', options.worldSize);
  if (!wholeNumber(options.rank, 0) || options.rank >= options.worldSize) throw refuse('rank', `a whole number from 0 to worldSize - 1 (${options.worldSize - 1})`, options.rank);
  const localRank = options.localRank ?? options.rank;
  if (!wholeNumber(localRank, 0)) throw refuse('localRank', 'a whole number >= 0', options.localRank);
  const masterAddr = options.masterAddr ?? '127.0.0.1';
  if (typeof masterAddr !== 'string' || masterAddr.trim() === '') throw refuse('masterAddr', 'a host name or address', options.masterAddr);
  const masterPort = options.masterPort ?? DEFAULT_MASTER_PORT;
  if (!wholeNumber(masterPort, 1) || masterPort > 65535) throw refuse('masterPort', 'a port from 1 to 65535', options.masterPort);
  const timeoutSeconds = options.timeoutSeconds ?? DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS;
  if (typeof timeoutSeconds !== 'number' || !Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw refuse('timeoutSeconds', 'a number of seconds > 0', options.timeoutSeconds);
  if (options.worldSize === 1) return { ...SINGLE_PROCESS, timeoutSeconds };
  return { worldSize: options.worldSize, rank: options.rank, localRank, masterAddr, masterPort, timeoutSeconds };
}

/** The first host of a SLURM node list: "gpu[03-05,09],cpu1" → "gpu03". */
export function firstSlurmHost(nodeList: string): string {
  const first = nodeList.trim().match(/^[^,[]*(\[[^\]]*\])?/)?.[0] ?? '';
  const bracket = first.indexOf('[');
  if (bracket < 0) return first;
  const range = first.slice(bracket + 1, -1).split(',')[0]!.split('-')[0]!;
  return first.slice(0, bracket) + range;
}

/**
 * The rank of this process as `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or SLURM
 * (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR or the first host of SLURM_STEP_NODELIST / SLURM_NODELIST,
 * MASTER_PORT or 29500) set it; undefined when neither started it (or SLURM started one task).
 */
export function distributedFromEnv(env: NodeJS.ProcessEnv = process.env, timeoutSeconds?: number): DistributedOptions | undefined {
  const integer = (name: string, minimum: number): number => {
    const text = env[name] ?? '';
    const value = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
    if (!wholeNumber(value, minimum)) throw invalidInput(`the environment variable ${name} is ${JSON.stringify(text)}: expected a whole number >= ${minimum}`);
    return value;
  };
  const port = () => (env.MASTER_PORT !== undefined ? integer('MASTER_PORT', 1) : DEFAULT_MASTER_PORT);
  if (env.WORLD_SIZE !== undefined) {
    return {
      worldSize: integer('WORLD_SIZE', 1),
      rank: integer('RANK', 0),
      localRank: env.LOCAL_RANK !== undefined ? integer('LOCAL_RANK', 0) : undefined,
      masterAddr: env.MASTER_ADDR ?? '127.0.0.1',
      masterPort: port(),
      timeoutSeconds,
    };
  }
  if (env.SLURM_NTASKS !== undefined && env.SLURM_PROCID !== undefined) {
    const worldSize = integer('SLURM_NTASKS', 1);
    if (worldSize === 1) return undefined;
    const nodes = env.SLURM_STEP_NODELIST ?? env.SLURM_NODELIST ?? env.SLURM_JOB_NODELIST;
    const masterAddr = env.MASTER_ADDR ?? (nodes ? firstSlurmHost(nodes) : undefined);
    if (!masterAddr) throw invalidInput('SLURM started this task without SLURM_NODELIST or MASTER_ADDR: set MASTER_ADDR to the host of task 0');
    return {
      worldSize,
      rank: integer('SLURM_PROCID', 0),
      localRank: env.SLURM_LOCALID !== undefined ? integer('SLURM_LOCALID', 0) : undefined,
      masterAddr,
      masterPort: port(),
      timeoutSeconds,
    };
  }
  return undefined;
}
