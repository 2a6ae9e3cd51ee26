#!/usr/bin/env node
/**
 * vmat-native's native build driver and install step (plain Node, no npm packages needed before cmake-js).
 *
 *   node scripts/install.mjs                 npm's install hook (`npm rebuild vmat-native` runs it again): load a
 *                                            prebuilt addon for this platform and libtorch when one is shipped and
 *                                            loads, else build only the addon from source against the libtorch found
 *   node scripts/install.mjs --from-source   the same without prebuilt addons (also `npm install --build-from-source`)
 *   node scripts/install.mjs build [ARGS]    build into $VMAT_BUILD_DIR (default build/) what CMake's defaults give
 *                                            (in a checkout: addon, native tests and benchmarks); ARGS go to cmake-js
 *   node scripts/install.mjs libtorch        print the libtorch found as JSON, or why none was (exit 1)
 *   node scripts/install.mjs prebuild [DIR]  copy build/vmat_native.node to DIR/prebuilds/<platform>-<arch>/ (DIR:
 *                                            the package), named after the libtorch flavour it was built against
 *
 * In a source checkout (scripts/setup.sh present) the install hook builds nothing: `npm run setup` does.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MIN_NODE_MAJOR = 20;
const MIN_CMAKE = [3, 18];
export const PLATFORM = `${process.platform}-${process.arch}`;
/** Written by the install step; the addon loader (src/native/loader.ts) loads the addon it names first. */
export const INSTALL_RECORD = join('build', 'install.json');

const say = (line) => process.stderr.write(`[vmat-native] ${line}\n`);

export class InstallError extends Error {}

export const isCheckout = (dir = root) => existsSync(join(dir, 'scripts', 'setup.sh'));

const LIBTORCH_HELP =
  `install one and run ${isCheckout() ? '`npm run setup` again' : '`npm rebuild vmat-native` in your project'}: ` +
  '`sudo apt-get install libtorch-dev` (Debian/Ubuntu), or `pip install torch` (found through python3), or unpack a ' +
  'libtorch zip from pytorch.org and set LIBTORCH=/path/to/libtorch (or Torch_DIR=/path/to/libtorch/share/cmake/Torch)';

// ------------------------------------------------------------------------------------------------ libtorch

/**
 * The libtorch to build against, in the order CMakeLists.txt also uses: LIBTORCH, Torch_DIR, a Python that has torch,
 * the system's (Debian's libtorch-dev). A LIBTORCH or Torch_DIR that does not hold a libtorch is an error, not skipped.
 */
export function findLibtorch(env = process.env, { systemLibDirs = defaultSystemLibDirs(), pythons = ['python3', 'python'] } = {}) {
  if (env.LIBTORCH) {
    const torchDir = join(env.LIBTORCH, 'share', 'cmake', 'Torch');
    if (!existsSync(join(torchDir, 'TorchConfig.cmake'))) {
      throw new InstallError(`LIBTORCH=${env.LIBTORCH} is not a libtorch folder (it has no share/cmake/Torch/TorchConfig.cmake); point it at an unpacked libtorch, the folder that holds lib/ and share/`);
    }
    return describeLibtorch(torchDir, 'LIBTORCH');
  }
  if (env.Torch_DIR) {
    if (!existsSync(join(env.Torch_DIR, 'TorchConfig.cmake'))) {
      throw new InstallError(`Torch_DIR=${env.Torch_DIR} holds no TorchConfig.cmake; point it at libtorch's share/cmake/Torch folder`);
    }
    return describeLibtorch(env.Torch_DIR, 'Torch_DIR');
  }
  for (const python of pythons) {
    // Debian's python3-torch reports a cmake prefix that does not exist; the isdir check skips it.
    const code = "import os,torch;p=os.path.join(torch.utils.cmake_prefix_path,'Torch');print(p if os.path.isfile(os.path.join(p,'TorchConfig.cmake')) else '')";
    const result = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'ignore'] });
    const torchDir = result.status === 0 ? result.stdout.trim() : '';
    if (torchDir) return describeLibtorch(torchDir, `${python} (torch ${torchDir})`);
  }
  for (const libDir of systemLibDirs) {
    const torchDir = join(libDir, 'cmake', 'Torch');
    if (existsSync(join(torchDir, 'TorchConfig.cmake'))) return describeLibtorch(torchDir, 'system');
  }
  throw new InstallError(`vmat-native needs libtorch and none was found (looked at LIBTORCH, Torch_DIR, ${pythons.join('/')}'s torch and ${systemLibDirs.map((d) => join(d, 'cmake', 'Torch')).join(', ')}); ${LIBTORCH_HELP}`);
}

function defaultSystemLibDirs() {
  const dirs = [];
  for (const base of ['/usr/lib', '/usr/local/lib', '/usr/lib64']) {
    dirs.push(base);
    try {
      for (const entry of readdirSync(base)) if (/-linux-gnu/.test(entry)) dirs.push(join(base, entry));
    } catch {
      // a prefix that does not exist here
    }
  }
  return dirs;
}

/** Version, CUDA and C++ ABI of the libtorch whose share/cmake/Torch is torchDir; `flavour` as CMakeLists.txt spells it. */
export function describeLibtorch(torchDir, source) {
  const version = /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(readText(join(torchDir, 'TorchConfigVersion.cmake')))?.[1] ?? 'unknown';
  const abi = /_GLIBCXX_USE_CXX11_ABI=0/.test(readText(join(torchDir, 'TorchConfig.cmake'))) ? 'precxx11' : 'cxx11';
  // share/cmake/Torch -> lib (zip, wheel); lib/<triplet>/cmake/Torch -> lib/<triplet> (Debian)
  const libDir = [resolve(torchDir, '..', '..', '..', 'lib'), resolve(torchDir, '..', '..')].find((dir) => hasLibrary(dir, 'torch_cpu')) ?? null;
  const cuda = libDir !== null && hasLibrary(libDir, 'torch_cuda');
  return { torchDir, libDir, source, version, cuda, abi, flavour: `${version}-${cuda ? 'cuda' : 'cpu'}-${abi}` };
}

function hasLibrary(dir, name) {
  try {
    return readdirSync(dir).some((file) => file.startsWith(`lib${name}.`) || file === `${name}.dll`);
  } catch {
    return false;
  }
}

function readText(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

// ------------------------------------------------------------------------------------------------ building

const found = (command, args = ['--version']) => {
  const result = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return result.status === 0 ? result.stdout : null;
};

/** The build tools, or an InstallError that says which one is missing and how to get it. */
function checkBuildTools() {
  const cmake = found('cmake');
  if (!cmake) throw new InstallError('building the addon needs CMake >= 3.18 and none is on PATH; install it (`sudo apt-get install cmake g++`, or `pip install cmake`) and run `npm rebuild vmat-native` in your project');
  const [major, minor] = (/cmake version (\d+)\.(\d+)/.exec(cmake) ?? []).slice(1).map(Number);
  if (major < MIN_CMAKE[0] || (major === MIN_CMAKE[0] && minor < MIN_CMAKE[1])) {
    throw new InstallError(`building the addon needs CMake >= ${MIN_CMAKE.join('.')} (found ${major}.${minor}); install a newer one (\`pip install cmake\`) and run \`npm rebuild vmat-native\``);
  }
  const compilers = process.env.CXX ? [process.env.CXX] : ['c++', 'g++', 'clang++'];
  if (!compilers.some((compiler) => found(compiler))) {
    throw new InstallError(`building the addon needs a C++17 compiler and none was found (${compilers.join(', ')}); install one (\`sudo apt-get install g++\`) and run \`npm rebuild vmat-native\``);
  }
}

/**
 * Configures and builds with cmake-js. Configure runs every time, so that a package installed since the last build
 * (GoogleTest by `setup.sh --test`) is searched for again; when the tool choices or options differ from the last
 * configure of this build folder, the configure starts afresh (a cached generator or Torch_DIR cannot change).
 */
export function buildNative({ buildDir = resolve(root, process.env.VMAT_BUILD_DIR || 'build'), addonOnly = false, libtorch, cmakeJsArgs = [], logFile } = {}) {
  const generator = found('ninja') ? ['--generator', 'Ninja'] : [];
  // ccache, where installed, makes rebuilds in other checkouts or build folders nearly free
  const launcher = found('ccache') ? ['--CDCMAKE_CXX_COMPILER_LAUNCHER=ccache'] : [];
  const options = [
    ...(libtorch ? [`--CDTorch_DIR=${libtorch.torchDir}`] : []),
    ...(addonOnly ? ['--CDVMAT_BUILD_TESTS=OFF', '--CDVMAT_BUILD_BENCH=OFF'] : []),
  ];
  // A libtorch translation unit takes about 1.2 GB to compile: no more jobs than the memory holds.
  const jobs = process.env.VMAT_BUILD_JOBS || String(Math.max(1, Math.min(os.availableParallelism(), Math.floor(os.totalmem() / 1.5e9))));
  const choices = {
    generator,
    launcher,
    options,
    cmakeJsArgs,
    compilers: ['CC', 'CXX', 'CUDACXX', 'CUDA_HOME'].map((name) => process.env[name] ?? ''),
    nvcc: found('nvcc') ? 'nvcc' : '',
  };
  const fingerprintPath = join(buildDir, 'vmat-configure.json');
  const fingerprint = JSON.stringify(choices);
  if (existsSync(join(buildDir, 'CMakeCache.txt')) && readText(fingerprintPath) !== fingerprint) {
    say(`the build tools or options changed since ${relative(process.cwd(), buildDir) || '.'} was configured: configuring afresh`);
    rmSync(join(buildDir, 'CMakeCache.txt'), { force: true });
    rmSync(join(buildDir, 'CMakeFiles'), { recursive: true, force: true });
  }
  const cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
  const common = ['--directory', root, '--out', buildDir, ...generator, ...launcher, ...options, ...cmakeJsArgs];
  mkdirSync(buildDir, { recursive: true });
  const log = logFile ? { fd: openSync(logFile, 'w') } : undefined;
  const run = (args) => {
    const result = spawnSync(process.execPath, [cmakeJs, ...args], { cwd: root, stdio: log ? ['ignore', log.fd, log.fd] : 'inherit' });
    if (result.status !== 0) {
      const tail = logFile ? `:\n${readText(logFile).split('\n').slice(-40).join('\n')}\n(the full log is ${logFile})` : '';
      throw new InstallError(`the native build failed (cmake-js ${args[0]})${tail}`);
    }
  };
  try {
    run(['configure', ...common]);
    writeFileSync(fingerprintPath, fingerprint);
    run(['build', ...common, '--parallel', jobs]);
  } finally {
    if (log) closeSync(log.fd);
  }
  return join(buildDir, 'vmat_native.node');
}

// ------------------------------------------------------------------------------------------------ prebuilt addons

export const prebuildName = (flavour) => `vmat_native.napi.libtorch-${flavour}.node`;

/**
 * Loads the addon in a child process (a crash or a missing library must not take down npm) and calls info();
 * returns null when it works, else the reason.
 */
export function testLoad(addonPath) {
  const code = 'const a = require(process.argv[1]); const i = a.info(); process.stdout.write(i.libtorchVersion)';
  const result = spawnSync(process.execPath, ['-e', code, addonPath], { encoding: 'utf8', timeout: 120_000 });
  if (result.status === 0) return null;
  const reason = (result.stderr || result.error?.message || `exit ${result.status}`).split('\n').find((line) => /Error|error/.test(line)) ?? result.stderr.trim();
  return reason.replace(/^\s*(Error: )?/, '').trim() || `exit ${result.status}`;
}

function writeRecord(addon, how, libtorch) {
  mkdirSync(join(root, 'build'), { recursive: true });
  const record = { addon: relative(root, addon), how, libtorch, platform: PLATFORM, node: process.versions.node, at: new Date().toISOString() };
  writeFileSync(join(root, INSTALL_RECORD), `${JSON.stringify(record, null, 2)}\n`);
}

export function install({ fromSource = false } = {}) {
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  if (nodeMajor < MIN_NODE_MAJOR) throw new InstallError(`vmat-native needs Node.js ${MIN_NODE_MAJOR} or newer (this is ${process.versions.node})`);
  const libtorch = findLibtorch();
  say(`libtorch ${libtorch.version} (${libtorch.cuda ? 'CUDA' : 'CPU'}, ${libtorch.abi} ABI) from ${libtorch.source}: ${libtorch.torchDir}`);
  if (!fromSource) {
    const prebuilt = join(root, 'prebuilds', PLATFORM, prebuildName(libtorch.flavour));
    if (existsSync(prebuilt)) {
      const problem = testLoad(prebuilt);
      if (!problem) {
        writeRecord(prebuilt, 'prebuilt', libtorch);
        say(`using the prebuilt addon ${relative(root, prebuilt)}`);
        return prebuilt;
      }
      say(`the prebuilt addon ${relative(root, prebuilt)} does not load here (${problem}); building from source`);
    } else {
      say(`no prebuilt addon for ${PLATFORM} and libtorch ${libtorch.flavour}; building the addon from source (a few minutes)`);
    }
  }
  checkBuildTools();
  const logFile = join(root, 'build', 'install.log');
  mkdirSync(dirname(logFile), { recursive: true });
  const started = Date.now();
  const addon = buildNative({ buildDir: join(root, 'build'), addonOnly: true, libtorch, logFile });
  const problem = testLoad(addon);
  if (problem) throw new InstallError(`the addon was built but does not load (${problem}); the build log is ${logFile}`);
  writeRecord(addon, 'source', libtorch);
  say(`built ${relative(root, addon)} in ${Math.round((Date.now() - started) / 1000)} s (log: ${relative(root, logFile)})`);
  return addon;
}

/** Copies the addon of buildDir into packageDir's prebuilds/ (a release's tarball, or a staged copy of one). */
export function prebuild(packageDir = root, buildDir = join(root, 'build')) {
  const flavourFile = join(buildDir, 'vmat_native.libtorch.json');
  const addon = join(buildDir, 'vmat_native.node');
  if (!existsSync(addon) || !existsSync(flavourFile)) throw new InstallError(`${relative(root, addon)} or its ${relative(root, flavourFile)} is missing: build first (npm run build:native)`);
  const { flavour } = JSON.parse(readFileSync(flavourFile, 'utf8'));
  const target = join(packageDir, 'prebuilds', PLATFORM, prebuildName(flavour));
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(addon, target);
  say(`${target} (${(statSync(target).size / 2 ** 20).toFixed(1)} MiB)`);
  return target;
}

// ------------------------------------------------------------------------------------------------ command line

function main(argv) {
  const [mode, ...rest] = argv;
  if (mode === 'libtorch') {
    process.stdout.write(`${JSON.stringify(findLibtorch(), null, 2)}\n`);
  } else if (mode === 'build') {
    const libtorch = findLibtorch();
    const addon = buildNative({ libtorch, cmakeJsArgs: rest });
    // In an installed package this replaces the addon the install step chose; a checkout has no record.
    if (!isCheckout()) writeRecord(addon, 'source', libtorch);
  } else if (mode === 'prebuild') {
    prebuild(rest[0] ? resolve(rest[0]) : root);
  } else if (mode === undefined || mode === '--from-source') {
    if (isCheckout()) {
      say('a source checkout: `npm run setup` builds the addon with its native tests (nothing to do here)');
      return;
    }
    install({ fromSource: mode === '--from-source' || /^(1|true)$/.test(process.env.npm_config_build_from_source ?? '') });
  } else {
    throw new InstallError(`unknown mode ${mode}: expected no argument, --from-source, build, libtorch or prebuild`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof InstallError)) throw error;
    say(`error: ${error.message}`);
    process.exit(1);
  }
}
