import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { runSelfcheck } from '../src/native/selfcheck.js';
import { normaliseFlagSpelling } from '../src/cli/program.js';
import { runCli, tempDir } from './helpers.js';

describe('addon plumbing', () => {
  it('passes its self-check: shared tensors, async promise, ordered progress, cancellation, error codes', async () => {
    const result = await runSelfcheck();
    for (const check of result.checks) expect(check.ok, `${check.name}: ${check.detail}`).toBe(true);
  });

  it('keeps a tensor handed to JS alive after other allocations and GC', async () => {
    const { loadNative } = await import('../src/native/loader.js');
    const tensor = loadNative().selfcheck.arange(100_000);
    const garbage = Array.from({ length: 50 }, () => new Float64Array(100_000));
    (globalThis as { gc?: () => void }).gc?.();
    expect(garbage.length).toBe(50);
    expect(tensor.data[99_999]).toBe(99_999);
    expect(tensor.data.reduce((a, b) => a + b, 0)).toBe((99_999 * 100_000) / 2);
  });
});

describe('vmat-native info', () => {
  it('reports versions as JSON', () => {
    const result = runCli(['info', '--json']);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.libtorchVersion).toMatch(/^\d+\.\d+/);
    expect(report.vmatNativeVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(report.addonPath).toMatch(/vmat_native\.node$/);
    expect(Array.isArray(report.devices)).toBe(true);
  });

  it('explains a missing addon and how to fix it, exit 1', () => {
    const result = runCli(['info'], { env: { VMAT_NATIVE_ADDON: '/nonexistent/vmat_native.node' } });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/native addon is not built/);
    expect(result.stderr).toMatch(/npm run setup/);
    expect(result.stderr).not.toMatch(/at .*\.js:\d+/);
  });

  it('explains an addon that is not a library', () => {
    const dir = tempDir();
    const fake = join(dir, 'vmat_native.node');
    writeFileSync(fake, 'not an ELF file');
    const result = runCli(['info'], { env: { VMAT_NATIVE_ADDON: fake } });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/not a loadable library|failed to load/);
    expect(result.stderr).toMatch(/npm run build:native/);
  });

  it('explains missing libtorch, exit 1', () => {
    // A real dynamic-loader failure: an addon linked against a libc10_*.so that is then removed.
    const dir = tempDir();
    writeFileSync(join(dir, 'stub.c'), 'int c10_stub(void) { return 1; }\n');
    writeFileSync(join(dir, 'addon.c'), 'extern int c10_stub(void); int use(void) { return c10_stub(); }\n');
    const gcc = (args: string[]) => expect(spawnSync('gcc', args, { cwd: dir }).status).toBe(0);
    gcc(['-shared', '-fPIC', '-o', 'libc10_vmat_test.so', 'stub.c']);
    gcc(['-shared', '-fPIC', '-o', 'vmat_native.node', 'addon.c', '-L.', '-lc10_vmat_test']);
    rmSync(join(dir, 'libc10_vmat_test.so'));
    const result = runCli(['info'], { env: { VMAT_NATIVE_ADDON: join(dir, 'vmat_native.node') } });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/libtorch was not found/);
    expect(result.stderr).toMatch(/apt-get install libtorch-dev|LIBTORCH/);
  });
});

describe('command line', () => {
  it('rejects an unknown command with a suggestion, exit 1', () => {
    const result = runCli(['nonsense']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/unknown command 'nonsense'/);
  });

  it('accepts the seed snake_case flag spellings', () => {
    expect(normaliseFlagSpelling(['train', '--exp_name', 'a_b', '--data_dir=x_y', '--use_gradient_loss'])).toEqual([
      'train',
      '--exp-name',
      'a_b',
      '--data-dir=x_y',
      '--use-gradient-loss',
    ]);
  });

  it('prints help for every command', () => {
    const result = runCli(['--help']);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/info/);
  });
});
