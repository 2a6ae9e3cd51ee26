/**
 * The one place that loads the compiled addon. On failure it throws a single VmatError naming what failed
 * (addon missing, libtorch missing, ABI mismatch, wrong Node version) and the command that fixes it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { VmatError } from '../errors.js';
import type { NativeAddon } from './addon.js';

const MIN_NODE_MAJOR = 20;
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where the addon is looked for: VMAT_NATIVE_ADDON, then cmake-js's build folder. */
export function addonCandidates(): string[] {
  const fromEnv = process.env.VMAT_NATIVE_ADDON;
  if (fromEnv) return [resolve(fromEnv)];
  return [join(packageRoot, 'build', 'vmat_native.node'), join(packageRoot, 'build', 'Release', 'vmat_native.node')];
}

let cached: { addon: NativeAddon; path: string } | undefined;

export function loadNative(): NativeAddon {
  return loadNativeWithPath().addon;
}

export function loadNativeWithPath(): { addon: NativeAddon; path: string } {
  if (cached) return cached;
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  if (nodeMajor < MIN_NODE_MAJOR) {
    throw loadError(
      `Node.js ${process.versions.node} is too old: vmat-native needs Node.js ${MIN_NODE_MAJOR} or newer`,
      'install Node.js 20 or 22 (e.g. from your distribution or nodejs.org) and run `npm run setup` again',
    );
  }
  const candidates = addonCandidates();
  const path = candidates.find((candidate) => existsSync(candidate));
  if (!path) {
    throw loadError(
      `the native addon is not built (looked for ${candidates.join(' and ')})`,
      'run `npm run setup` (or `npm run build:native` if libtorch is already installed)',
    );
  }
  const require = createRequire(import.meta.url);
  try {
    cached = { addon: require(path) as NativeAddon, path };
    return cached;
  } catch (error) {
    throw explainLoadFailure(path, error);
  }
}

function explainLoadFailure(path: string, error: unknown): VmatError {
  const message = error instanceof Error ? error.message : String(error);
  const missingLibrary = /lib([A-Za-z0-9_]+)\.so[^:]*: cannot open shared object file/.exec(message);
  if (missingLibrary) {
    const library = `lib${missingLibrary[1]}.so`;
    const isTorch = /^lib(torch|c10|torch_cpu|torch_cuda|c10_cuda|shm)/.test(library);
    return loadError(
      isTorch
        ? `libtorch was not found when loading ${path} (${library} is missing)`
        : `a library the addon needs is missing when loading ${path} (${library})`,
      isTorch
        ? 'install it with `sudo apt-get install libtorch-dev` (Debian/Ubuntu), or set LIBTORCH to an unpacked libtorch and run `npm run build:native`'
        : 'install the package that provides it, then run `npm run build:native`',
      error,
    );
  }
  if (/undefined symbol/.test(message)) {
    const symbol = /undefined symbol: (\S+)/.exec(message)?.[1] ?? 'unknown';
    return loadError(
      `the addon at ${path} does not match the libtorch it loaded (undefined symbol ${symbol}: a different libtorch version or C++ ABI than it was built against)`,
      'rebuild it against the libtorch you run with: `npm run build:native` (set LIBTORCH or Torch_DIR to choose one)',
      error,
    );
  }
  if (/NODE_MODULE_VERSION|was compiled against a different Node\.js version|napi/i.test(message)) {
    return loadError(
      `the addon at ${path} was built for another Node.js than ${process.versions.node}`,
      'rebuild it with this Node.js: `npm run build:native`',
      error,
    );
  }
  if (/invalid ELF header|wrong ELF class|file too short/.test(message)) {
    return loadError(
      `the addon at ${path} is not a loadable library for this machine (${message.split('\n')[0]})`,
      'rebuild it on this machine: `npm run build:native`',
      error,
    );
  }
  return loadError(`the addon at ${path} failed to load: ${message.split('\n')[0].replace(/\.+$/, '')}`, 'rebuild it: `npm run build:native`', error);
}

function loadError(what: string, fix: string, cause?: unknown): VmatError {
  return new VmatError('VMAT_ADDON_LOAD', `Cannot load vmat-native's native addon: ${what}. Fix: ${fix}.`, { cause });
}
