import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Option } from 'commander';
import { describe, expect, it } from 'vitest';

import { signedDistanceMaps } from '../src/data/sdf.js';
import { AbortError, invalidInput, isAbortError } from '../src/errors.js';
import { gammaIndex } from '../src/eval/gamma.js';
import { saveInitialWeights } from '../src/model.js';
import { callNative } from '../src/native/call.js';
import { addonCandidates, loadNative } from '../src/native/loader.js';
import { runSelfcheck } from '../src/native/selfcheck.js';
import { buildProgram, normaliseFlagSpelling, withFlagNames } from '../src/cli/program.js';
import { Trainer } from '../src/train/trainer.js';
import { repoRoot, runCli, tempDir } from './helpers.js';

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
    expect(result.stderr).toMatch(/no addon was built or prebuilt for linux-x64/);
    expect(result.stderr).toMatch(/npm run setup/); // a checkout; an installed package says `npm rebuild vmat-native` (package.test.ts)
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

describe('the addon loader', () => {
  it('prefers the addon the install step recorded, then a source build, then the prebuilt addons for this platform', () => {
    const root = tempDir();
    const prebuilds = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(prebuilds, { recursive: true });
    for (const name of ['vmat_native.napi.libtorch-2.5.1-cuda-precxx11.node', 'vmat_native.napi.libtorch-1.13.0-cpu-cxx11.node', 'README']) writeFileSync(join(prebuilds, name), '');
    mkdirSync(join(root, 'build'));
    const recorded = join(prebuilds, 'vmat_native.napi.libtorch-2.5.1-cuda-precxx11.node');
    writeFileSync(join(root, 'build', 'install.json'), JSON.stringify({ addon: 'prebuilds/linux-x64/vmat_native.napi.libtorch-2.5.1-cuda-precxx11.node'.replace('linux-x64', `${process.platform}-${process.arch}`) }));
    expect(addonCandidates(root)).toEqual([
      recorded,
      join(root, 'build', 'vmat_native.node'),
      join(root, 'build', 'Release', 'vmat_native.node'),
      join(prebuilds, 'vmat_native.napi.libtorch-1.13.0-cpu-cxx11.node'),
    ]);
  });

  it('falls back to the next addon when the recorded one does not load, naming what failed', () => {
    const root = tempDir();
    const prebuilds = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(prebuilds, { recursive: true });
    writeFileSync(join(prebuilds, 'vmat_native.napi.libtorch-0.0.0-cpu-cxx11.node'), 'not an ELF file');
    copyFileSync(join(repoRoot, 'build', 'vmat_native.node'), join(prebuilds, 'vmat_native.napi.libtorch-9.9.9-cpu-cxx11.node'));
    mkdirSync(join(root, 'build'));
    writeFileSync(join(root, 'build', 'install.json'), JSON.stringify({ addon: 'prebuilds/' + `${process.platform}-${process.arch}` + '/vmat_native.napi.libtorch-0.0.0-cpu-cxx11.node' }));
    const loader = join(repoRoot, 'dist', 'native', 'loader.js');
    const code = `const { loadAddon } = await import(${JSON.stringify(loader)}); console.log(loadAddon(${JSON.stringify(root)}).path);`;
    const loaded = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(loaded.stdout.trim()).toBe(join(prebuilds, 'vmat_native.napi.libtorch-9.9.9-cpu-cxx11.node'));
    rmSync(join(prebuilds, 'vmat_native.napi.libtorch-9.9.9-cpu-cxx11.node'));
    const failed = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(failed.status).not.toBe(0);
    expect(failed.stderr).toMatch(/libtorch-0\.0\.0-cpu-cxx11\.node is not a loadable library for this machine/);
    expect(failed.stderr).toMatch(/npm rebuild vmat-native/); // no scripts/setup.sh there: an installed package
  });
});

describe('aborting a call (one rule: an AbortError as in Node; fit resolves with stop reason aborted)', () => {
  const reason = new Error('the user pressed stop');
  const aborted = () => AbortSignal.abort(reason);
  const expectAbortError = (error: unknown) => {
    expect(error).toBeInstanceOf(AbortError);
    expect(error).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
    expect((error as Error).cause).toBe(reason);
    expect(isAbortError(error)).toBe(true);
  };

  it('does not start a call whose signal is already aborted', async () => {
    const masks = new Uint8Array(2 * 8 * 8 * 8).fill(1);
    const volume = { data: new Float32Array(8 * 8 * 8).fill(1), shape: [8, 8, 8] as [number, number, number], spacingMm: [1, 1, 1] as [number, number, number] };
    const dir = tempDir();
    const calls = [
      signedDistanceMaps(masks, [2, 8, 8, 8], [1, 1, 1], { signal: aborted() }),
      gammaIndex(volume, volume, {}, { signal: aborted() }),
      saveInitialWeights(join(dir, 'w.safetensors'), { baseChannels: 8, signal: aborted() }),
    ];
    for (const call of calls) expectAbortError(await call.then(() => 'resolved', (error: unknown) => error));
    expect(readdirSync(dir)).toEqual([]);
  });

  it('rejects a running native call that its signal stops, and one that finished after the abort', async () => {
    const size = 48;
    const ref = new Float32Array(size ** 3).map((_, i) => 10 + (i % 97) / 10);
    const evaluated = ref.map((value, i) => value * (1 + ((i % 13) - 6) / 100));
    const volume = (data: Float32Array) => ({ data, shape: [size, size, size] as [number, number, number], spacingMm: [2, 2, 2] as [number, number, number] });
    const controller = new AbortController();
    const running = gammaIndex(volume(ref), volume(evaluated), { dosePercent: 1, dtaMm: 1, maxGamma: 10 }, { threads: 1, signal: controller.signal, onProgress: () => controller.abort(reason) });
    expectAbortError(await running.then(() => 'resolved', (error: unknown) => error));
    // a native call that does not stop early: its result is dropped once the signal has aborted
    const late = new AbortController();
    const call = callNative((options) => loadNative().selfcheck.sumAsync(new Float32Array([1]), 3, 30, { ...options, cancel: undefined }), { signal: late.signal });
    setTimeout(() => late.abort(reason), 10);
    expectAbortError(await call.then(() => 'resolved', (error: unknown) => error));
  });

  it('lets fit() resolve with stop reason aborted when the signal aborts before training starts', async () => {
    const result = await new Trainer().fit({ dataDir: join(repoRoot, 'test', 'fixtures', 'cases'), expName: 'never', logDir: tempDir() }, { signal: aborted() }).then(
      (value) => value,
      (error: unknown) => error,
    );
    expect(result).toMatchObject({ stopReason: 'aborted', epochsRun: 0 });
  });
});

describe('library errors and CLI flags', () => {
  it('library messages name settings, never flags', () => {
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir)) {
        const path = join(dir, entry);
        if (statSync(path).isDirectory()) {
          if (entry !== 'cli') walk(path);
        } else if (path.endsWith('.ts')) {
          readFileSync(path, 'utf8')
            .split('\n')
            .forEach((line, index) => {
              if (/(invalidInput|new VmatError|abortError)\(/.test(line) && /[`'"][^`'"]*\s--[a-z]/.test(line)) offenders.push(`${path}:${index + 1}`);
            });
        }
      }
    };
    walk(join(repoRoot, 'src'));
    expect(offenders).toEqual([]);
  });

  it('the CLI adds the flag of each setting a message names, where the command has one', () => {
    const predict = buildProgram().commands.find((command) => command.name() === 'predict')!;
    const error = invalidInput('patchSize must be a multiple of 16, got 20; overwrite is not set; spacingMm missing', { settings: ['patchSize', 'overwrite', 'spacingMm'] });
    expect(withFlagNames(error, predict)).toBe('patchSize (--patch-size) must be a multiple of 16, got 20; overwrite (--overwrite) is not set; spacingMm missing');
    const gamma = buildProgram().commands.find((command) => command.name() === 'gamma')!;
    expect(withFlagNames(invalidInput('spacingMm is missing', { settings: ['spacingMm'] }), gamma)).toBe('spacingMm (--spacing) is missing');
    const file = join(tempDir(), 'init.safetensors');
    writeFileSync(file, '');
    const result = runCli(['model', '--base-channels', '8', '--save', file]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/already exists; set overwrite \(--overwrite\) to replace it/);
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

  it('marks required flags and lists choices in every command\'s --help', () => {
    const program = buildProgram();
    let required = 0;
    let devices = 0;
    for (const command of program.commands) {
      const help = command.helpInformation();
      const described = (option: Option) => help.slice(help.indexOf(option.flags)).split(/\n  -/)[0]!.replace(/\s+/g, ' ');
      for (const option of command.options) {
        if (option.mandatory) {
          required++;
          expect(described(option), `${command.name()} ${option.flags}`).toMatch(/\(required\)/);
        }
        if (option.long === '--device') {
          devices++;
          expect(described(option), `${command.name()} --device`).toMatch(/choices: "auto", "cpu", "cuda", "cuda:N"|auto, cpu, cuda or cuda:N/);
        }
      }
    }
    expect(required).toBeGreaterThanOrEqual(5); // predict (3), synth, sweep
    expect(devices).toBeGreaterThanOrEqual(5); // predict, gamma, evaluate, train, sweep
    const train = runCli(['train', '--help']).stdout.replace(/\s+/g, ' ');
    expect(train).toMatch(/--data-dir <value> folder of case files \(\*\.npz\) \(required, here or in --config\)/);
    expect(train).toMatch(/--precision <value> .*auto, fp32, bf16 or fp16/);
    const bad = runCli(['gamma', 'a.npz', 'b.npz', '--device', 'gpu']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/'--device <device>' argument 'gpu' is invalid\. expected auto, cpu, cuda or cuda:N/);
  });
});
