import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { loadNative } from '../src/native/loader.js';
import { distributedFromEnv, firstSlurmHost, resolveDistributed } from '../src/train/distributed.js';
import { cliPath, repoRoot, runCli, tempDir } from './helpers.js';
import { writeTinyCohort } from './train-cases.js';

const hasC10d = () => loadNative().info().distributedBackends.includes('gloo');

/** The float32 tensors of a safetensors file, read here from the format (8-byte header length, JSON header, bytes). */
function readF32Tensors(path: string): Map<string, Float32Array> {
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const tensors = new Map<string, Float32Array>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__' || entry.dtype !== 'F32') continue;
    const [start, end] = entry.data_offsets;
    const data = bytes.subarray(8 + headerLength + start, 8 + headerLength + end);
    tensors.set(name, new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
  }
  return tensors;
}

/** The processes whose parent is `pid` (from /proc/N/stat: the field after the command's closing parenthesis). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry));
    } catch {
      // the process ended meanwhile
    }
  }
  return children;
}

describe('which rank this process is', () => {
  it("reads torchrun's variables", () => {
    expect(distributedFromEnv({ RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1', MASTER_ADDR: 'node7', MASTER_PORT: '29501' }, 5)).toEqual({
      worldSize: 4,
      rank: 3,
      localRank: 1,
      masterAddr: 'node7',
      masterPort: 29501,
      timeoutSeconds: 5,
    });
    expect(distributedFromEnv({})).toBeUndefined();
  });

  it("reads SLURM's, taking rank 0's host from the node list", () => {
    const env = { SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_NODELIST: 'gpu[03-06,09],cpu1' };
    expect(distributedFromEnv(env)).toMatchObject({ worldSize: 8, rank: 5, localRank: 1, masterAddr: 'gpu03', masterPort: 29500 });
    expect(distributedFromEnv({ ...env, MASTER_ADDR: 'head', MASTER_PORT: '40000' })).toMatchObject({ masterAddr: 'head', masterPort: 40000 });
    expect(distributedFromEnv({ SLURM_PROCID: '0', SLURM_NTASKS: '1' })).toBeUndefined();
    expect(firstSlurmHost('node01')).toBe('node01');
    expect(firstSlurmHost('a-b[7,9-12]')).toBe('a-b7');
  });

  it('refuses bad values, naming the variable or the field', () => {
    expect(() => distributedFromEnv({ RANK: 'one', WORLD_SIZE: '2' })).toThrow('the environment variable RANK is "one": expected a whole number >= 0');
    expect(() => resolveDistributed({ worldSize: 2, rank: 2 })).toThrow('distributed.rank is 2: expected a whole number from 0 to worldSize - 1 (1)');
    expect(() => resolveDistributed({ worldSize: 2, rank: 0, masterPort: 70000 })).toThrow('distributed.masterPort is 70000: expected a port from 1 to 65535');
    expect(() => resolveDistributed({ worldSize: 2, rank: 0, timeoutSeconds: 0 })).toThrow('distributed.timeoutSeconds is 0: expected a number of seconds > 0');
    expect(resolveDistributed({ worldSize: 2, rank: 1 })).toEqual({ worldSize: 2, rank: 1, localRank: 1, masterAddr: '127.0.0.1', masterPort: 29500, timeoutSeconds: 60 });
  });

  it('refuses launcher flags without --nproc-per-node, and bad ones', () => {
    const result = runCli(['train', '--data-dir', 'nowhere', '--nnodes', '2']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/--nnodes, --node-rank, --master-addr and --master-port go with --nproc-per-node/);
    expect(runCli(['train', '--data-dir', 'nowhere', '--nproc-per-node', '0']).stderr).toMatch(/--nproc-per-node is "0": expected a whole number >= 1/);
    expect(runCli(['train', '--data-dir', 'nowhere', '--nproc-per-node', '2', '--nnodes', '2']).stderr).toMatch(/--master-addr is needed with --nnodes > 1/);
  });
});

describe.runIf(hasC10d())('data-parallel training over Gloo on 127.0.0.1 (vmat-native train --nproc-per-node 2)', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = tempDir('vmat-dist-data-');
    await writeTinyCohort(dataDir, 6);
  });
  const flags = ['--epochs', '1', '--patch-size', '16', '--base-channels', '8', '--patches-per-volume', '1', '--device', 'cpu', '--num-workers', '1', '--sw-batch', '2'];

  // AdamW's moments are sums of the gradients: equal to float32 rounding (the weights themselves carry AdamW's
  // m / sqrt(v) of rounding-level gradients, about lr either way, as test_distributed.cpp explains and bounds).
  it('gives 2 ranks of batch 1 the AdamW moments of one process of batch 2; only rank 0 writes', () => {
    const logDir = tempDir('vmat-dist-runs-');
    const single = runCli(['train', '--data-dir', dataDir, '--log-dir', logDir, '--exp-name', 'single', '--batch-size', '2', '--threads', '1', ...flags]);
    expect(single.status, single.stderr).toBe(0);
    const parallel = runCli(['train', '--data-dir', dataDir, '--log-dir', logDir, '--exp-name', 'parallel', '--batch-size', '1', '--nproc-per-node', '2', ...flags]);
    expect(parallel.status, parallel.stderr).toBe(0);
    expect(parallel.stdout.match(/^run folder/gm)).toHaveLength(1);  // rank 0's result only

    const log = (name: string) => readFileSync(join(logDir, name, 'log.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const starts = log('parallel').filter((event) => event.type === 'start');
    expect(starts).toHaveLength(1);
    expect(starts[0]!.stepsPerEpoch).toBe(log('single').find((event) => event.type === 'start')!.stepsPerEpoch);
    expect(starts[0]!.stepsPerEpoch).toBe(2);  // 4 training cases of 1 patch, in steps of 2

    const a = readF32Tensors(join(logDir, 'single', 'checkpoints', 'last.state.safetensors'));
    const b = readF32Tensors(join(logDir, 'parallel', 'checkpoints', 'last.state.safetensors'));
    expect([...b.keys()]).toEqual([...a.keys()]);
    let worst = 0;
    for (const [name, weights] of a) {
      const other = b.get(name)!;
      for (let i = 0; i < weights.length; i++) worst = Math.max(worst, Math.abs(weights[i]! - other[i]!));
    }
    expect(a.size).toBeGreaterThan(10);
    expect(worst).toBeLessThan(1e-7);
    // The same epoch row, the timing columns aside (validation split over the ranks, sums reduced).
    const row = (name: string) => readFileSync(join(logDir, name, 'metrics.csv'), 'utf8').trim().split('\n')[1]!.split(',').slice(0, 9).map(Number);
    const [x, y] = [row('single'), row('parallel')];
    x.forEach((value, i) => expect(y[i]!).toBeCloseTo(value, 4));
    expect(readdirSync(join(logDir, 'parallel', 'checkpoints')).sort()).toEqual(readdirSync(join(logDir, 'single', 'checkpoints')).sort());
  }, 120_000);

  it('ends the run cleanly, naming the rank, when a rank is killed', async () => {
    const logDir = tempDir('vmat-dist-kill-');
    const args = [cliPath, 'train', '--data-dir', dataDir, '--log-dir', logDir, '--exp-name', 'killed', '--batch-size', '1', '--nproc-per-node', '2', '--dist-timeout', '3', ...flags, '--epochs', '200'];
    const launcher = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, OMP_WAIT_POLICY: 'passive' } });
    let stderr = '';
    let killed = false;
    const started = Date.now();
    launcher.stdout.resume();
    launcher.stderr.setEncoding('utf8');
    launcher.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      if (killed || !/training on cpu/.test(stderr)) return;
      // Rank 1: the launcher's child whose environment says RANK=1.
      const environment = (pid: number) => {
        try {
          return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
        } catch {
          return [];
        }
      };
      const rankOne = childrenOf(launcher.pid!).find((pid) => environment(pid).includes('RANK=1'));
      if (rankOne) {
        process.kill(rankOne, 'SIGKILL');
        killed = true;
      }
    });
    const code = await new Promise<number | null>((resolveExit) => launcher.once('exit', (status) => resolveExit(status)));
    expect(killed).toBe(true);
    expect(code).toBe(1);
    expect(stderr).toMatch(/rank 1 of 2 \(pid \d+\) was killed by SIGKILL/);
    expect(stderr).toMatch(/rank 1 of 2 stopped answering during the (gradient all-reduce of epoch \d+, step \d+|validation reduction of epoch \d+) \(it exited or hangs; rank 0 waited up to 3 s/);
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 90_000);
});
