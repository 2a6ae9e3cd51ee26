/**
 * The npm package as a user gets it: `npm pack`, then `npm install vmat-native-<v>.tgz` in a scratch project, the
 * CLI through npx and the library from a TypeScript file type-checked against the shipped types. The tarball here
 * carries the addon of this checkout as its prebuilt addon (what a release ships), so the install step takes the
 * prebuilt path; the source-build path (minutes) runs where VMAT_TEST_SOURCE_BUILD=1 (its own CI job).
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { saveInitialWeights } from '../src/model.js';
import { repoRoot, tempDir } from './helpers.js';

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

const PY = '/usr/bin/python3'; // Debian's Python with python3-torch, and no safetensors package
const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
const typesNodeVersion = (JSON.parse(readFileSync(join(repoRoot, 'node_modules', '@types', 'node', 'package.json'), 'utf8')) as { version: string }).version;

function run(command: string, args: string[], options: SpawnSyncOptions = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 900_000, ...options, env: { ...process.env, OMP_WAIT_POLICY: 'passive', ...options.env } });
  return { status: result.status ?? -1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
}

function mustRun(command: string, args: string[], options: SpawnSyncOptions = {}) {
  const result = run(command, args, options);
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  return result;
}

const scratch: string[] = [];

/** A scratch project (package.json only) with the tarball and @types/node installed; returns it and the install time. */
function scratchProject(tarball: string, timeoutMs = 900_000): { dir: string; seconds: number; log: string } {
  const dir = tempDir('vmat-scratch-');
  scratch.push(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
  const started = Date.now();
  const result = mustRun('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', tarball, `@types/node@${typesNodeVersion}`], { cwd: dir, timeout: timeoutMs });
  return { dir, seconds: (Date.now() - started) / 1000, log: result.stdout + result.stderr };
}

let work: string;
let packed: Packed;
let plainTarball: string;
let project: { dir: string; seconds: number; log: string };

beforeAll(() => {
  work = tempDir('vmat-package-');
  const pack = mustRun('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: repoRoot });
  packed = (JSON.parse(pack.stdout) as Packed[])[0]!;
  plainTarball = join(work, packed.filename);
  // A release's tarball: the same files plus this checkout's addon under prebuilds/<platform>-<arch>/.
  const stage = join(work, 'stage');
  mkdirSync(stage);
  mustRun('tar', ['xzf', plainTarball, '-C', stage]);
  mustRun(process.execPath, [join(repoRoot, 'scripts', 'install.mjs'), 'prebuild', join(stage, 'package')], { cwd: repoRoot });
  const prebuiltTarball = join(work, `prebuilt-${packed.filename}`);
  mustRun('tar', ['czf', prebuiltTarball, '-C', stage, 'package']);
  project = scratchProject(prebuiltTarball);
  console.log(`package: ${packed.filename} ${(packed.size / 1000).toFixed(0)} kB packed, ${(packed.unpackedSize / 1000).toFixed(0)} kB unpacked, ${packed.files.length} files; scratch install with the prebuilt addon ${project.seconds.toFixed(1)} s`);
}, 900_000);

// Each scratch project holds its own node_modules (about 50 MB).
afterAll(() => {
  for (const dir of [work, ...scratch]) if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('holds what users need and nothing else', () => {
    const files = packed.files.map((file) => file.path);
    for (const needed of ['LICENSE', 'README.md', 'CHANGELOG.md', 'package.json', 'CMakeLists.txt', 'scripts/install.mjs', 'reference/unet_ref.py', 'reference/checkpoint.py', 'sites/prostate-sib.json', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'binding/addon.cc', 'native/src/unet.cpp', 'native/include/vmat/unet.h']) {
      expect(files, needed).toContain(needed);
    }
    const unwanted = files.filter((path) => /^native\/(tests|bench)\/|^test\/|^bench\/|tsbuildinfo|\.map$|^scripts\/(?!install\.mjs$)|^src\/|^build\/|^\.|package-lock/.test(path));
    expect(unwanted).toEqual([]);
    expect(readFileSync(join(repoRoot, 'LICENSE'), 'utf8')).toMatch(/^MIT License/);
    expect(JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).license).toBe('MIT');
  });

  it('installs into a scratch project with the prebuilt addon for this platform and libtorch, and its CLI runs', () => {
    const installed = join(project.dir, 'node_modules', 'vmat-native');
    const record = JSON.parse(readFileSync(join(installed, 'build', 'install.json'), 'utf8'));
    expect(record.how).toBe('prebuilt');
    expect(project.log).toMatch(/using the prebuilt addon prebuilds\//);
    // only the install record: nothing was compiled
    expect(readdirSync(join(installed, 'build'))).toEqual(['install.json']);
    const info = mustRun('npx', ['--no-install', 'vmat-native', 'info', '--json'], { cwd: project.dir });
    const report = JSON.parse(info.stdout);
    expect(report.addonPath).toBe(join(installed, record.addon));
    expect(report.addonPath).toMatch(/prebuilds\/linux-x64\/vmat_native\.napi\.libtorch-[\d.]+-(cpu|cuda)-(cxx11|precxx11)\.node$/);
    expect(report.libtorchVersion).toMatch(/^\d+\.\d+/);
    const help = mustRun('npx', ['--no-install', 'vmat-native', 'predict', '--help'], { cwd: project.dir });
    expect(help.stdout).toMatch(/--checkpoint <file> .*\(required\)/s);
  });

  it('runs a tiny fit() from a TypeScript file type-checked against the shipped types', () => {
    const dir = project.dir;
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out', types: ['node'] }, files: ['fit.ts'] }),
    );
    writeFileSync(
      join(dir, 'fit.ts'),
      `import { synthesizeCohort, Trainer, type FitResult, type TrainEvent } from 'vmat-native';

const data = 'data';
await synthesizeCohort(data, { cases: 4, shape: [16, 32, 32], spacingMm: [5, 4, 4] });
const epochs: number[] = [];
const result: FitResult = await new Trainer().fit(
  { dataDir: data, expName: 'tiny', logDir: 'runs', epochs: 1, patchSize: 16, baseChannels: 8, device: 'cpu', threads: 1, numWorkers: 1, valSplit: 0.25, testSplit: 0.25 },
  { onProgress: (event: TrainEvent) => { if (event.type === 'epoch') epochs.push(event.epoch); } },
);
console.log(JSON.stringify({ stopReason: result.stopReason, epochsRun: result.epochsRun, epochs, best: result.bestCheckpoint }));
`,
    );
    mustRun(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: dir });
    const out = JSON.parse(mustRun(process.execPath, [join('out', 'fit.js')], { cwd: dir }).stdout.trim().split('\n').pop()!);
    expect(out).toMatchObject({ stopReason: 'max_epochs', epochsRun: 1, epochs: [1] });
    expect(existsSync(resolve(dir, out.best))).toBe(true);

    // The types are checked, not `any`: a setting of the wrong type fails to compile.
    writeFileSync(join(dir, 'bad.ts'), `import { Trainer } from 'vmat-native';\nawait new Trainer().fit({ dataDir: 'data', expName: 'x', epochs: 'ten' });\n`);
    writeFileSync(join(dir, 'tsconfig.bad.json'), JSON.stringify({ extends: './tsconfig.json', files: ['bad.ts'], compilerOptions: { noEmit: true } }));
    const bad = run(process.execPath, [tsc, '-p', 'tsconfig.bad.json'], { cwd: dir });
    expect(bad.status).not.toBe(0);
    expect(bad.stdout).toMatch(/bad\.ts.*epochs.*string.*number|Type 'string' is not assignable to type 'number'/s);
  });

  it('tells a project without a usable addon to run `npm rebuild vmat-native`, not a script it does not have', () => {
    const installed = join(project.dir, 'node_modules', 'vmat-native');
    const moved = [join(installed, 'prebuilds'), join(installed, 'build', 'install.json')];
    for (const path of moved) renameSync(path, `${path}.off`);
    try {
      const result = run('npx', ['--no-install', 'vmat-native', 'info'], { cwd: project.dir });
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/no addon was built or prebuilt for linux-x64/);
      expect(result.stderr).toMatch(/npm rebuild vmat-native/);
      expect(result.stderr).not.toMatch(/npm run setup|build:native|at .*\.js:\d+/);
    } finally {
      for (const path of moved) renameSync(`${path}.off`, path);
    }
  });

  it('its install step says what to do when the libtorch it is pointed at is not one', () => {
    const script = join(project.dir, 'node_modules', 'vmat-native', 'scripts', 'install.mjs');
    const result = run(process.execPath, [script], { cwd: join(project.dir, 'node_modules', 'vmat-native'), env: { LIBTORCH: '/nonexistent/libtorch' } });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/LIBTORCH=\/nonexistent\/libtorch is not a libtorch folder .*point it at an unpacked libtorch/);
    expect(result.stderr).not.toMatch(/at .*\.mjs:\d+/);
  });

  it('finds libtorch in the documented order and names its flavour as the build does', async () => {
    const { describeLibtorch, findLibtorch } = await import('../scripts/install.mjs');
    // an unpacked libtorch zip with CUDA and the old C++ ABI, as pytorch.org ships them
    const zip = join(work, 'libtorch');
    mkdirSync(join(zip, 'share', 'cmake', 'Torch'), { recursive: true });
    mkdirSync(join(zip, 'lib'));
    writeFileSync(join(zip, 'share', 'cmake', 'Torch', 'TorchConfigVersion.cmake'), 'set(PACKAGE_VERSION "2.5.1")\n');
    writeFileSync(join(zip, 'share', 'cmake', 'Torch', 'TorchConfig.cmake'), 'set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")\n');
    for (const lib of ['libtorch_cpu.so', 'libtorch_cuda.so', 'libc10.so']) writeFileSync(join(zip, 'lib', lib), '');
    const none = { systemLibDirs: [join(work, 'no-such-lib')], pythons: [join(work, 'no-such-python')] };
    expect(findLibtorch({ LIBTORCH: zip, Torch_DIR: '/elsewhere' }, none)).toMatchObject({ source: 'LIBTORCH', version: '2.5.1', cuda: true, abi: 'precxx11', flavour: '2.5.1-cuda-precxx11', libDir: join(zip, 'lib') });
    expect(findLibtorch({ Torch_DIR: join(zip, 'share', 'cmake', 'Torch') }, none).source).toBe('Torch_DIR');
    expect(() => findLibtorch({}, none)).toThrow(/vmat-native needs libtorch and none was found .*sudo apt-get install libtorch-dev.*pip install torch.*LIBTORCH=/);
    // the build names the flavour of the libtorch it used the same way (CMakeLists.txt writes it beside the addon)
    const built = JSON.parse(readFileSync(join(repoRoot, 'build', 'vmat_native.libtorch.json'), 'utf8'));
    expect(describeLibtorch(built.torchDir, 'the build').flavour).toBe(built.flavour);
  });

  it('ships a checkpoint reader beside unet_ref.py that needs no safetensors package', async () => {
    const reference = join(project.dir, 'node_modules', 'vmat-native', 'reference');
    expect(run(PY, ['-c', 'import safetensors']).status).not.toBe(0); // the path under test has no safetensors
    const checkpoint = join(work, 'init.safetensors');
    await saveInitialWeights(checkpoint, { baseChannels: 8, seed: 3 });
    const hostile = join(work, 'hostile');
    mkdirSync(hostile);
    const bytes = readFileSync(checkpoint);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { data_offsets?: number[] }>;
    const withHeader = (edit: (h: typeof header) => void) => {
      const copy = structuredClone(header);
      edit(copy);
      const text = Buffer.from(JSON.stringify(copy));
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(text.length));
      return Buffer.concat([length, text, bytes.subarray(8 + headerLength)]);
    };
    writeFileSync(join(hostile, 'truncated.safetensors'), bytes.subarray(0, bytes.length - 100));
    writeFileSync(join(hostile, 'huge-header.safetensors'), Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), bytes.subarray(8)]));
    writeFileSync(join(hostile, 'overlap.safetensors'), withHeader((h) => void (h['head.bias']!.data_offsets = [0, 4])));
    writeFileSync(join(hostile, 'not-json.safetensors'), Buffer.concat([bytes.subarray(0, 8), Buffer.alloc(headerLength, 0x7b), bytes.subarray(8 + headerLength)]));
    const script = `
import json, sys
sys.path.insert(0, sys.argv[1])
from checkpoint import load_checkpoint, load_model
model = load_model(sys.argv[2])
weights, meta = load_checkpoint(sys.argv[2])
out = {"parameters": sum(p.numel() for p in model.parameters()), "tensors": len(weights), "config": json.loads(meta["config"]), "training": model.training, "refused": {}}
for name in sys.argv[3:]:
    try:
        load_checkpoint(name)
        out["refused"][name] = None
    except ValueError as error:
        out["refused"][name] = str(error)
print(json.dumps(out))
`;
    const names = ['truncated', 'huge-header', 'overlap', 'not-json'].map((name) => join(hostile, `${name}.safetensors`));
    const result = JSON.parse(mustRun(PY, ['-c', script, reference, checkpoint, ...names]).stdout);
    expect(result).toMatchObject({ parameters: 836_001, tensors: 112, training: false, config: { in_channels: 9, base_channels: 8 } });
    expect(result.refused[names[0]!]).toMatch(/truncated\.safetensors is not a valid safetensors file: tensor .* spans bytes .* of a \d+-byte data section|cover/);
    expect(result.refused[names[1]!]).toMatch(/the header claims \d+ bytes but the file has \d+/);
    expect(result.refused[names[2]!]).toMatch(/overlapping or gapped|has 4 bytes/);
    expect(result.refused[names[3]!]).toMatch(/the header is not JSON/);
  });

  it.runIf(process.env.VMAT_TEST_SOURCE_BUILD === '1')(
    'builds only the addon from source where no prebuilt addon fits (VMAT_TEST_SOURCE_BUILD=1)',
    () => {
      // about 5 min on 2 idle cores; much longer on a loaded machine
      const fromSource = scratchProject(plainTarball, 3_000_000);
      const installed = join(fromSource.dir, 'node_modules', 'vmat-native');
      console.log(`scratch install with a source build of the addon: ${fromSource.seconds.toFixed(0)} s`);
      expect(JSON.parse(readFileSync(join(installed, 'build', 'install.json'), 'utf8')).how).toBe('source');
      const built = readdirSync(join(installed, 'build'));
      expect(built).toContain('vmat_native.node');
      expect(built.filter((file) => /^(test|bench)_/.test(file))).toEqual([]);
      expect(readFileSync(join(installed, 'build', 'install.log'), 'utf8')).not.toMatch(/GoogleTest|gtest|bench_/);
      const report = JSON.parse(mustRun('npx', ['--no-install', 'vmat-native', 'info', '--json'], { cwd: fromSource.dir }).stdout);
      expect(report.addonPath).toBe(join(installed, 'build', 'vmat_native.node'));
    },
    3_600_000,
  );
});
