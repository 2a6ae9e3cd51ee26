import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const repoRoot = resolve(import.meta.dirname, '..');
export const cliPath = join(repoRoot, 'dist', 'cli', 'main.js');

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI as a user would (`node dist/cli/main.js …`). */
export function runCli(args: string[], options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): CliResult {
  const result = spawnSync(process.execPath, [cliPath, ...args], {
    cwd: options.cwd ?? repoRoot,
    env: { ...process.env, OMP_WAIT_POLICY: 'passive', ...options.env },
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 120_000,
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

export function tempDir(prefix = 'vmat-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
