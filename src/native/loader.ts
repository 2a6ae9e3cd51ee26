/**
 * The one place that loads the compiled addon. It tries, in order: VMAT_NATIVE_ADDON alone when set; else the addon
 * the install step chose (build/install.json, written by scripts/install.mjs), a source build in build/, and the
 * prebuilt addons for this platform (prebuilds/<platform>-<arch>/, prebuildify's layout). On failure it throws one
 * VmatError naming what failed (no addon, libtorch missing, another libtorch or C++ ABI, wrong Node version) and
 * the command that fixes it where the package is: `npm rebuild vmat-native` in a user's project, `npm run setup` in
 * a source checkout.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { VmatError } from '../errors.js';
import type { NativeAddon } from './addon.js';

const MIN_NODE_MAJOR = 20;
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const platform = `${process.platform}-${process.arch}`;

/** A source checkout has the set-up script; the npm package does not ship it. */
const isCheckout = (root: string) => existsSync(join(root, 'scripts', 'setup.sh'));

/** Where the addon is looked for, most wanted first; only files that exist are tried. */
export function addonCandidates(root = packageRoot): string[] {
  const fromEnv = process.env.VMAT_NATIVE_ADDON;
  if (fromEnv) return [resolve(fromEnv)];
  const chosen = installedAddon(root);
  const prebuildDir = join(root, 'prebuilds', platform);
  const prebuilt = existsSync(prebuildDir)
    ? readdirSync(prebuildDir)
        .filter((file) => file.endsWith('.node'))
        .sort()
        .map((file) => join(prebuildDir, file))
    : [];
  const all = [chosen, join(root, 'build', 'vmat_native.node'), join(root, 'build', 'Release', 'vmat_native.node'), ...prebuilt];
  return [...new Set(all.filter((path): path is string => path !== undefined))];
}

/** The addon recorded by the install step, if it recorded one. */
function installedAddon(root: string): string | undefined {
  try {
    const record = JSON.parse(readFileSync(join(root, 'build', 'install.json'), 'utf8')) as { addon?: unknown };
    return typeof record.addon === 'string' ? resolve(root, record.addon) : undefined;
  } catch {
    return undefined;
  }
}

let cached: { addon: NativeAddon; path: string } | undefined;

export function loadNative(): NativeAddon {
  return loadNativeWithPath().addon;
}

export function loadNativeWithPath(): { addon: NativeAddon; path: string } {
  if (cached) return cached;
  cached = loadAddon(packageRoot);
  return cached;
}

/** Loads the first candidate that loads; otherwise explains the failure of the most wanted one. */
export function loadAddon(root: string): { addon: NativeAddon; path: string } {
  const fixes = fixesFor(root);
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  if (nodeMajor < MIN_NODE_MAJOR) {
    throw loadError(
      `Node.js ${process.versions.node} is too old: vmat-native needs Node.js ${MIN_NODE_MAJOR} or newer`,
      `install Node.js 20 or 22 (from your distribution or nodejs.org), then ${fixes.rebuild}`,
    );
  }
  const looked = addonCandidates(root);
  const present = looked.filter((candidate) => existsSync(candidate));
  if (present.length === 0) {
    throw loadError(`no addon was built or prebuilt for ${platform} (looked for ${looked.map((path) => relative(process.cwd(), path) || path).join(', ')})`, fixes.build);
  }
  const require = createRequire(import.meta.url);
  const failures: { path: string; error: unknown }[] = [];
  for (const path of present) {
    try {
      return { addon: require(path) as NativeAddon, path };
    } catch (error) {
      failures.push({ path, error });
    }
  }
  const [first, ...others] = failures;
  const also = others.length ? ` (also tried ${others.map(({ path, error }) => `${path}: ${firstLine(error)}`).join('; ')})` : '';
  return explainLoadFailure(first!.path, first!.error, fixes, also);
}

interface Fixes {
  /** builds the addon from nothing */
  build: string;
  /** rebuilds it against what is installed now */
  rebuild: string;
}

function fixesFor(root: string): Fixes {
  if (isCheckout(root)) return { build: 'run `npm run setup` (or `npm run build:native` if libtorch is already installed)', rebuild: 'run `npm run build:native`' };
  return {
    build:
      'run `npm rebuild vmat-native` in your project: it finds libtorch (Debian\'s libtorch-dev, PyTorch\'s through python3, or LIBTORCH=/path/to/libtorch) and builds the addon, or says what is missing',
    rebuild: 'run `npm rebuild vmat-native` in your project',
  };
}

const firstLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0]!.replace(/\.+$/, '');

function explainLoadFailure(path: string, error: unknown, fixes: Fixes, also: string): never {
  // Without the path: a prebuilt addon's name holds "napi", which must not read as a Node-API mismatch.
  const message = (error instanceof Error ? error.message : String(error)).replaceAll(path, 'the addon');
  const detail = firstLine(message);
  const missingLibrary = /lib([A-Za-z0-9_]+)\.so[^:]*: cannot open shared object file/.exec(message);
  if (missingLibrary) {
    const library = `lib${missingLibrary[1]}.so`;
    const isTorch = /^lib(torch|c10|torch_cpu|torch_cuda|c10_cuda|shm)/.test(library);
    throw loadError(
      isTorch ? `libtorch was not found when loading ${path} (${library} is missing)${also}` : `a library the addon needs is missing when loading ${path} (${library})${also}`,
      isTorch
        ? `install libtorch (\`sudo apt-get install libtorch-dev\` on Debian/Ubuntu, \`pip install torch\`, or set LIBTORCH to an unpacked libtorch), then ${fixes.rebuild}`
        : `install the package that provides it, then ${fixes.rebuild}`,
      error,
    );
  }
  if (/undefined symbol/.test(message)) {
    const symbol = /undefined symbol: (\S+)/.exec(message)?.[1] ?? 'unknown';
    throw loadError(
      `the addon at ${path} does not match the libtorch it loaded (undefined symbol ${symbol}: a different libtorch version or C++ ABI than it was built against)${also}`,
      `rebuild it against the libtorch you run with: ${fixes.rebuild} (set LIBTORCH or Torch_DIR to choose one)`,
      error,
    );
  }
  if (/NODE_MODULE_VERSION|was compiled against a different Node\.js version|napi/i.test(message)) {
    throw loadError(`the addon at ${path} was built for another Node.js than ${process.versions.node}${also}`, `rebuild it with this Node.js: ${fixes.rebuild}`, error);
  }
  if (/invalid ELF header|wrong ELF class|file too short/.test(message)) {
    throw loadError(`the addon at ${path} is not a loadable library for this machine (${detail})${also}`, `rebuild it on this machine: ${fixes.rebuild}`, error);
  }
  throw loadError(`the addon at ${path} failed to load: ${detail}${also}`, `rebuild it: ${fixes.rebuild}`, error);
}

function loadError(what: string, fix: string, cause?: unknown): VmatError {
  return new VmatError('VMAT_ADDON_LOAD', `Cannot load vmat-native's native addon: ${what}. Fix: ${fix}.`, { cause });
}
