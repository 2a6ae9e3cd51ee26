/**
 * `vmat-native train --nproc-per-node N`: starts this machine's N ranks as child processes of the same command, each
 * with the variables torchrun would set (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
 * shows rank 0's output and the others' errors, and stops them all when one fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import os from 'node:os';

import { invalidInput } from '../errors.js';
import { DEFAULT_MASTER_PORT } from '../train/distributed.js';

/** Set in the environment of the ranks the launcher starts, so that they train instead of launching again. */
export const LAUNCHED_RANK_VARIABLE = 'VMAT_LAUNCHED_RANK';

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  /** Default: 127.0.0.1 on one machine; required with more than one. */
  masterAddr?: string;
  /** Default: a free port on one machine, 29500 with more than one. */
  masterPort?: number;
  /** How long the others get to stop by themselves after a rank failed (they do within the distributed timeout). */
  timeoutSeconds: number;
  /** The command line to run as each rank (node's arguments, the script, its arguments). */
  args: string[];
  /** Where the launcher's own sentences go. */
  note: (line: string) => void;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Prefixes each complete line of a stream with `[rank N] ` (the last partial line when the stream ends). */
function prefixLines(stream: NodeJS.ReadableStream, prefix: string, write: (text: string) => void): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) write(`${prefix}${line}\n`);
  });
  stream.on('end', () => {
    if (pending) write(`${prefix}${pending}\n`);
  });
}

/** Runs the ranks of this machine; resolves with the exit code for the launcher: 0 when every rank succeeded. */
export async function launchLocalRanks(options: LaunchOptions): Promise<number> {
  const { nprocPerNode, nnodes, nodeRank } = options;
  const whole = (value: number, minimum: number) => Number.isInteger(value) && value >= minimum;
  if (!whole(nprocPerNode, 1)) throw invalidInput(`--nproc-per-node is ${nprocPerNode}: expected a whole number >= 1`);
  if (!whole(nnodes, 1)) throw invalidInput(`--nnodes is ${nnodes}: expected a whole number >= 1`);
  if (!whole(nodeRank, 0) || nodeRank >= nnodes) throw invalidInput(`--node-rank is ${nodeRank}: expected a whole number from 0 to --nnodes - 1 (${nnodes - 1})`);
  if (nnodes > 1 && !options.masterAddr) throw invalidInput('--master-addr is needed with --nnodes > 1: the host name or address of node 0, which every node reaches');
  const masterAddr = options.masterAddr ?? '127.0.0.1';
  const masterPort = options.masterPort ?? (nnodes > 1 ? DEFAULT_MASTER_PORT : await freePort());
  const worldSize = nnodes * nprocPerNode;
  // As torchrun: the CPU cores shared out between the ranks, unless the caller chose.
  const threads = String(Math.max(1, Math.floor(os.availableParallelism() / nprocPerNode)));

  const children: { rank: number; child: ChildProcess; done: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }[] = [];
  for (let local = 0; local < nprocPerNode; local++) {
    const rank = nodeRank * nprocPerNode + local;
    const child = spawn(process.execPath, options.args, {
      env: {
        ...process.env,
        OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? threads,
        RANK: String(rank),
        WORLD_SIZE: String(worldSize),
        LOCAL_RANK: String(local),
        LOCAL_WORLD_SIZE: String(nprocPerNode),
        MASTER_ADDR: masterAddr,
        MASTER_PORT: String(masterPort),
        [LAUNCHED_RANK_VARIABLE]: '1',
      },
      // Rank 0 shows progress and the result; the others' output would repeat it, so only their errors are shown.
      stdio: rank === 0 ? 'inherit' : ['ignore', 'ignore', 'pipe'],
    });
    if (rank !== 0) prefixLines(child.stderr!, `[rank ${rank}] `, (text) => process.stderr.write(text));
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
      child.once('exit', (code, signal) => resolveExit({ code, signal }));
      child.once('error', () => resolveExit({ code: 1, signal: null }));
    });
    children.push({ rank, child, done });
  }

  const forward = (signal: NodeJS.Signals) => () => {
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  // Ctrl-C reaches every rank from the terminal (they stop together at the next step); SIGTERM is passed on.
  const onSigint = () => {};
  const onSigterm = forward('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);

  let failed = false;
  let killTimer: NodeJS.Timeout | undefined;
  const killAll = forward('SIGKILL');
  try {
    const results = await Promise.all(
      children.map(async ({ rank, child, done }) => {
        const { code, signal } = await done;
        if (code !== 0) {
          const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
          if (!failed) options.note(`rank ${rank} of ${worldSize} (pid ${child.pid}) ${how}`);
          failed = true;
          // The others stop by themselves within the distributed timeout, naming the rank; past it they are killed.
          killTimer ??= setTimeout(killAll, (options.timeoutSeconds + 10) * 1000);
        }
        // Once rank 0 has ended after a failure, nothing more is said by the others.
        if (failed && rank === nodeRank * nprocPerNode && nodeRank === 0) killAll();
        return code === 0;
      }),
    );
    return results.every(Boolean) ? 0 : 1;
  } finally {
    if (killTimer) clearTimeout(killTimer);
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
  }
}
