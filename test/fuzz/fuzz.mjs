/**
 * A seeded mutation fuzzer of the readers of user files: case files (.npz: zip, .npy, pickled metadata), .npy
 * volumes, pickles, safetensors checkpoint metadata and training configs (`--config`).
 *
 * Each mutated input is read in a child process (the built readers in dist/) that runs inputs one after another and
 * reports each on stdout; the parent watches it: an input still running after `timeoutMs` is a hang (the child is
 * killed), a child that dies is a crash, a peak RSS more than `memoryMb` above the child's start is unbounded memory
 * (and the child's address space is capped by `ulimit -v`, so an allocation without bound fails instead of
 * swapping). An input passes when the reader returns (a file it accepts) or throws a VmatError VMAT_INVALID_INPUT
 * whose message is one line (a sentence naming the file) — anything else is a failure, reported with the target,
 * index and seed that reproduce it:
 *
 *   node test/fuzz/fuzz.mjs --inputs 20000 --seed 7                # a run (bench/fuzz.sh)
 *   node test/fuzz/fuzz.mjs --repro case:123 --seed 7 --out x.npz  # write one input out
 *
 * Seeds are the repository's fixtures (NumPy-written case files, .npy files and pickles) and small checkpoint and
 * config files written here.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const fixtures = join(root, 'test', 'fixtures');

export const TARGETS = ['case', 'npy', 'pickle', 'safetensors', 'config', 'run'];

// ---------------------------------------------------------------- seeds

function safetensorsSeed() {
  const tensors = { 'head.bias': [1], 'head.weight': [1, 8, 1, 1, 1], 'cond.0.bias': [4] };
  const header = {
    __metadata__: {
      config: JSON.stringify({ architecture: 'BaselineUNet3D', in_channels: 9, base_channels: 8, cond_dim: 13, embed_dim: 256 }),
      format_version: '1',
      structures: JSON.stringify(['PTV70', 'PTV56', 'Prostate', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel']),
      normalisation_dose_gy: '70',
    },
  };
  let offset = 0;
  for (const [name, shape] of Object.entries(tensors)) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const out = new Uint8Array(8 + text.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(new TextEncoder().encode(text), 8);
  return out;
}

function configSeed() {
  const config = {
    dataDir: 'data',
    expName: 'fuzz',
    epochs: 3,
    batchSize: 2,
    patchSize: 32,
    patchesPerVolume: 2,
    lr: 0.0001,
    betas: [0.9, 0.999],
    structures: ['PTV70', 'PTV56', 'Rectum'],
    useGradientLoss: true,
    gradientLossWeight: 0.1,
    device: 'cpu',
    threads: 1,
    overlap: 0.5,
  };
  return new TextEncoder().encode(JSON.stringify(config, null, 1));
}

/** A run folder's training_config.json (with a resume recorded) and inputs.json, as `train` writes them. */
function runSeeds() {
  const settings = JSON.parse(new TextDecoder().decode(configSeed()));
  const config = {
    settings: { ...settings, epochs: 7 },
    dataDir: '/data',
    splitSizes: { train: 4, val: 1, test: 1 },
    parameters: 1234567,
    device: 'cpu',
    precision: 'fp32',
    resumes: [{ at: '2026-12-02T18:00:00.000Z', startEpoch: 4, startStep: 0, from: 'previous', changes: { epochs: { from: 3, to: 7 } } }],
  };
  const inputs = {
    dataDir: '/data',
    files: ['train', 'val', 'test'].map((role, i) => ({ file: `case_00${i}.npz`, role, bytes: 4096 + i, mtimeMs: 1764698400000.5, sha256: 'ab'.repeat(32) })),
  };
  return [config, inputs].map((value) => new TextEncoder().encode(JSON.stringify(value, null, 2)));
}

/** The seed files of each target, as bytes. */
export function seeds() {
  const files = (dir, pattern) =>
    readdirSync(join(fixtures, dir))
      .filter((name) => pattern.test(name))
      .sort()
      .map((name) => new Uint8Array(readFileSync(join(fixtures, dir, name))));
  return {
    case: files('cases', /\.npz$/),
    npy: files('npy', /\.npy$/),
    pickle: files('npy', /\.pkl$/),
    safetensors: [safetensorsSeed()],
    config: [configSeed()],
    run: runSeeds(),
    sabotage: [new Uint8Array(1)],
  };
}

// ---------------------------------------------------------------- mutations

/** mulberry32: small, fast, and the same stream on every platform. */
function stream(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, below: (n) => Math.floor(next() * n) };
}

const INTERESTING = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0xffffffff, 2 ** 32, 2 ** 40, 2 ** 53, 2 ** 63, 2 ** 64 - 1];
const TOKENS = ['0', '-1', '1e300', '-1e300', '1e-300', 'NaN', 'Infinity', '99999999999999999999', '10000000000', '[', ']', '{', '}', '(', ')', ',', ':', '"', "'", 'null', 'true', '"__proto__"', '\\u0000', '\\ud800', "'descr': '|O', ", "'shape': (10000000000,), ", "'<U0'", ''];
const ZIP_FIELDS = [
  [0x02014b50, [10, 16, 20, 24, 28, 30, 32, 42], 46],
  [0x04034b50, [8, 14, 18, 22, 26, 28], 30],
  [0x06054b50, [8, 10, 12, 16, 20], 22],
];

function writeLe(bytes, at, value, width) {
  let v = BigInt(Math.floor(value)) & ((1n << BigInt(8 * width)) - 1n);
  for (let i = 0; i < width && at + i < bytes.length; i++) {
    bytes[at + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** Offsets of the zip records in `bytes` (signatures of central, local and end records). */
function zipRecords(bytes) {
  const found = [];
  for (let i = 0; i + 4 <= bytes.length; i++) {
    if (bytes[i] !== 0x50 || bytes[i + 1] !== 0x4b) continue;
    const signature = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    for (const [known, fields] of ZIP_FIELDS) if (signature >>> 0 === known) found.push({ at: i, fields });
  }
  return found;
}

/** One mutated input: 1 to 4 steps of byte, integer, text, zip-field, splice, duplicate and truncate mutations. */
export function mutate(target, seedFiles, runSeed, index) {
  const random = stream(Math.imul(runSeed ^ 0x9e3779b9, 2654435761) + index * 7919 + TARGETS.indexOf(target) * 104729);
  const source = seedFiles[random.below(seedFiles.length)];
  let bytes = source.slice();
  const steps = 1 + random.below(4);
  for (let step = 0; step < steps; step++) {
    if (bytes.length === 0) bytes = source.slice(0, 1 + random.below(source.length));
    const at = random.below(bytes.length);
    switch (random.below(target === 'case' ? 12 : 10)) {
      case 0:
        bytes[at] ^= 1 << random.below(8);
        break;
      case 1:
        bytes[at] = INTERESTING[random.below(9)] & 0xff;
        break;
      case 2:
        writeLe(bytes, at, INTERESTING[random.below(INTERESTING.length)], [2, 4, 8][random.below(3)]);
        break;
      case 3: {
        // A zip field (sizes, offsets, counts, name lengths) set to an interesting value: the reader's decisions.
        const records = target === 'case' ? zipRecords(bytes) : [];
        if (records.length === 0) break;
        const record = records[random.below(records.length)];
        const field = record.fields[random.below(record.fields.length)];
        writeLe(bytes, record.at + field, INTERESTING[random.below(INTERESTING.length)], field >= 20 && field !== 28 && field !== 30 && field !== 32 ? 4 : 2);
        break;
      }
      case 4: {
        const token = new TextEncoder().encode(TOKENS[random.below(TOKENS.length)]);
        const out = new Uint8Array(bytes.length + token.length);
        out.set(bytes.subarray(0, at));
        out.set(token, at);
        out.set(bytes.subarray(at), at + token.length);
        bytes = out;
        break;
      }
      case 5: {
        // A run of digits (a shape, an offset, a width in a config) replaced by an interesting number.
        let start = at;
        while (start < bytes.length && !(bytes[start] >= 0x30 && bytes[start] <= 0x39)) start++;
        let end = start;
        while (end < bytes.length && bytes[end] >= 0x30 && bytes[end] <= 0x39) end++;
        if (start >= bytes.length) break;
        const number = new TextEncoder().encode(String(INTERESTING[random.below(INTERESTING.length)]));
        bytes = Uint8Array.from([...bytes.subarray(0, start), ...number, ...bytes.subarray(end)]);
        break;
      }
      case 6: {
        const length = 1 + random.below(64);
        bytes = Uint8Array.from([...bytes.subarray(0, at), ...bytes.subarray(Math.min(bytes.length, at + length))]);
        break;
      }
      case 7: {
        // A chunk copied elsewhere (a member, a record, a pickle frame repeated).
        const from = random.below(bytes.length);
        const chunk = bytes.slice(from, from + 1 + random.below(256));
        bytes = Uint8Array.from([...bytes.subarray(0, at), ...chunk, ...bytes.subarray(at)]);
        break;
      }
      case 8: {
        const other = seedFiles[random.below(seedFiles.length)];
        const from = random.below(other.length);
        bytes = Uint8Array.from([...bytes.subarray(0, at), ...other.subarray(from, from + 1 + random.below(512))]);
        break;
      }
      case 10:
      case 11:
        mutateStoredMember(bytes, random);
        break;
      default:
        bytes = bytes.slice(0, at);
    }
  }
  return bytes;
}

/**
 * Changes bytes inside one stored member of a zip (its .npy header or data, a pickle) and writes the member's new
 * CRC-32 into its local and central headers, so that the change gets past the zip's checks to the readers behind.
 */
function mutateStoredMember(bytes, random) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const members = zipRecords(bytes).filter(({ at, fields }) => fields.length === 8 && at + 46 <= bytes.length && view.getUint16(at + 10, true) === 0);
  if (members.length === 0) return;
  const central = members[random.below(members.length)].at;
  const local = view.getUint32(central + 42, true);
  if (local + 30 > bytes.length || view.getUint32(local, true) !== 0x04034b50) return;
  const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
  const size = view.getUint32(central + 20, true);
  if (size === 0 || start + size > bytes.length) return;
  // The first bytes (the .npy header, where the shape and dtype are) more often than the data.
  const span = random.below(2) === 0 ? Math.min(size, 128) : size;
  for (let n = 1 + random.below(3); n > 0; n--) {
    const at = start + random.below(span);
    if (random.below(2) === 0) bytes[at] ^= 1 << random.below(8);
    else bytes[at] = TOKENS[random.below(TOKENS.length)].charCodeAt(0) || 0;
  }
  const crc = crc32(bytes.subarray(start, start + size)) >>> 0;
  view.setUint32(central + 16, crc, true);
  view.setUint32(local + 14, crc, true);
}

// ---------------------------------------------------------------- the child: read inputs, report each

const EXTENSION = { case: '.npz', npy: '.npy', pickle: '.pkl', safetensors: '.safetensors', config: '.json', run: '.json', sabotage: '.bin' };

async function readers() {
  const dist = (path) => import(join(root, 'dist', path));
  const [{ checkCase, loadCase }, { parseNpy }, { unpickle }, { readCheckpointMetadata }, { checkpointModel }, { trainConfigFromFlags }, { parseTrainConfig }, run] =
    await Promise.all([
      dist('data/case.js'),
      dist('data/npy.js'),
      dist('data/pickle.js'),
      dist('model.js'),
      dist('predict/predict.js'),
      dist('cli/commands/train.js'),
      dist('config/schema.js'),
      dist('run/index.js'),
    ]);
  const bigint = (_, value) => (typeof value === 'bigint' ? value.toString() : value);
  return {
    async case(path) {
      const problems = await checkCase(path);
      for (const problem of problems) requireSentence(problem.message);
      if (problems.length > 0) return 'refused';
      JSON.stringify((await loadCase(path)).metadata, bigint); // as saveCase writes it out
    },
    async npy(path) {
      parseNpy(new Uint8Array(readFileSync(path)), path);
    },
    async pickle(path) {
      JSON.stringify(unpickle(new Uint8Array(readFileSync(path)), path), bigint);
    },
    async safetensors(path) {
      readCheckpointMetadata(path);
      checkpointModel(path);
    },
    async config(path) {
      parseTrainConfig(await trainConfigFromFlags({ config: path }));
    },
    // What `train --resume` reads first: training_config.json (settings, resumes) or inputs.json (fingerprints).
    async run(path) {
      const dir = `${path}.run`;
      mkdirSync(dir, { recursive: true });
      const bytes = readFileSync(path);
      const inputs = bytes.includes('"files"');
      writeFileSync(join(dir, inputs ? 'inputs.json' : 'training_config.json'), bytes);
      try {
        if (inputs) run.readInputs(dir);
        else run.readTrainingConfig(dir);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    // A reader that misbehaves on purpose, by input index: the test of the watchdog itself.
    async sabotage(path, index) {
      const kind = index % 5;
      if (kind === 1) for (;;);
      if (kind === 2) process.abort();
      if (kind === 3) Buffer.alloc(768 << 20, 1);
      if (kind === 4) throw new TypeError('a reader bug');
    },
  };
}

function requireSentence(message) {
  if (typeof message !== 'string' || message.length === 0 || message.length > 1000 || message.includes('\n')) {
    throw Object.assign(new Error(`not a one-line sentence: ${JSON.stringify(String(message).slice(0, 200))}`), { notASentence: true });
  }
}

/** The tasks of one child: every (target, index) pair, dealt round-robin to `jobs` children, after `skip` done. */
function tasksOf({ inputs, targets, jobs, job, skip }) {
  const tasks = [];
  for (let index = 0; index < inputs; index++) for (const target of targets) tasks.push([target, index]);
  return tasks.filter((_, i) => i % jobs === job).slice(skip);
}

async function child(options) {
  const read = await readers();
  const all = seeds();
  const dir = mkdtempSync(join(tmpdir(), 'vmat-fuzz-'));
  const startRss = process.resourceUsage().maxRSS;
  const say = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);
  try {
    for (const [target, index] of tasksOf(options)) {
      const path = join(dir, `input${EXTENSION[target]}`);
      writeFileSync(path, mutate(target, all[target], options.seed, index));
      say({ start: [target, index] });
      let outcome;
      let detail;
      try {
        outcome = (await read[target](path, index)) === 'refused' ? 'refused' : 'accepted';
      } catch (error) {
        const code = error?.code;
        if (error?.name === 'VmatError' && code === 'VMAT_INVALID_INPUT') {
          try {
            requireSentence(error.message);
            outcome = 'refused';
          } catch (sentence) {
            outcome = 'failed';
            detail = sentence.message;
          }
        } else {
          outcome = 'failed';
          detail = `${error?.name ?? typeof error}${code ? ` [${code}]` : ''}: ${String(error?.message ?? error).slice(0, 300)}`;
        }
      }
      const grownMb = (process.resourceUsage().maxRSS - startRss) / 1024;
      if (grownMb > options.memoryMb) {
        outcome = 'failed';
        detail = `peak memory grew by ${Math.round(grownMb)} MB (limit ${options.memoryMb} MB)${detail ? `; ${detail}` : ''}`;
      }
      say({ done: [target, index], outcome, detail });
      // The peak is the process's: a fresh child measures the next input from a fresh start.
      if (grownMb > options.memoryMb) break;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- the parent: run children, watch them

/**
 * Fuzzes `inputs` mutated files per target (round-robin over `targets`) with `jobs` children. Resolves to
 * `{ counts: { target: { accepted, refused } }, failures: [{ target, index, kind, detail }] }`.
 */
export async function runFuzz({ inputs = 600, seed = 1, targets = TARGETS, jobs = 2, timeoutMs = 10_000, memoryMb = 512, addressSpaceMb = 4096 } = {}) {
  const counts = Object.fromEntries(targets.map((target) => [target, { accepted: 0, refused: 0 }]));
  const failures = [];
  await Promise.all(Array.from({ length: jobs }, (_, job) => watch(job)));
  return { counts, failures };

  async function watch(job) {
    const total = tasksOf({ inputs, targets, jobs, job, skip: 0 }).length;
    for (let skip = 0; skip < total; ) skip += await runChild({ inputs, targets, jobs, job, skip, seed, memoryMb });
  }

  /** Runs a child over its tasks until it ends or misbehaves; returns how many tasks it disposed of. */
  function runChild(options) {
    const share = tasksOf(options);
    return new Promise((resolveChild) => {
      const command = `ulimit -v ${addressSpaceMb * 1024} && exec "${process.execPath}" --max-old-space-size=${Math.min(1024, addressSpaceMb / 2)} "${fileURLToPath(import.meta.url)}" --child '${JSON.stringify(options)}'`;
      const proc = spawn('bash', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_WAIT_POLICY: 'passive', OMP_NUM_THREADS: '1' } });
      let disposed = 0;
      let current;
      let timer;
      let buffer = '';
      let stderr = '';
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          failures.push({ target: current[0], index: current[1], kind: 'hang', detail: `still running after ${timeoutMs} ms` });
          disposed += 1;
          current = undefined;
          proc.kill('SIGKILL');
        }, timeoutMs);
      };
      proc.stdout.on('data', (chunk) => {
        buffer += chunk;
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const record = JSON.parse(buffer.slice(0, newline));
          buffer = buffer.slice(newline + 1);
          if (record.start) {
            current = record.start;
            arm();
          } else if (record.done) {
            clearTimeout(timer);
            current = undefined;
            disposed += 1;
            const [target, index] = record.done;
            if (record.outcome === 'failed') failures.push({ target, index, kind: 'error', detail: record.detail });
            else counts[target][record.outcome] += 1;
          }
        }
      });
      proc.stderr.on('data', (chunk) => {
        stderr = (stderr + chunk).slice(-2000);
      });
      proc.on('close', (code, signal) => {
        clearTimeout(timer);
        if (current) {
          failures.push({ target: current[0], index: current[1], kind: 'crash', detail: `the reader's process ended (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').slice(-3).join(' | ')}` });
          disposed += 1;
        } else if (disposed === 0) {
          failures.push({ target: share[0][0], index: share[0][1], kind: 'crash', detail: `the fuzz child did not start (${signal ?? `exit ${code}`}): ${stderr.trim().slice(-500)}` });
          disposed = share.length;
        }
        resolveChild(disposed);
      });
    });
  }
}

// ---------------------------------------------------------------- command line

async function main(argv) {
  const flag = (name, fallback) => {
    const at = argv.indexOf(name);
    return at >= 0 ? argv[at + 1] : fallback;
  };
  if (argv[0] === '--child') return child(JSON.parse(argv[1]));
  const seed = Number(flag('--seed', '1'));
  const repro = flag('--repro');
  if (repro) {
    const [target, index] = repro.split(':');
    const out = flag('--out', `fuzz-${target}-${index}${EXTENSION[target]}`);
    mkdirSync(dirname(resolve(out)), { recursive: true });
    writeFileSync(out, mutate(target, seeds()[target], seed, Number(index)));
    process.stdout.write(`${out}\n`);
    return;
  }
  const inputs = Number(flag('--inputs', '2000'));
  const jobs = Number(flag('--jobs', '2'));
  const targets = flag('--targets', TARGETS.join(',')).split(',');
  const started = performance.now();
  const { counts, failures } = await runFuzz({ inputs, seed, jobs, targets });
  const seconds = (performance.now() - started) / 1000;
  for (const [target, count] of Object.entries(counts)) {
    process.stdout.write(`${target.padEnd(12)} ${String(count.accepted + count.refused).padStart(7)} inputs: ${count.accepted} accepted, ${count.refused} refused with a sentence\n`);
  }
  const total = inputs * targets.length;
  process.stdout.write(`${total} inputs in ${seconds.toFixed(1)} s (${Math.round(total / seconds)} per second, ${jobs} processes), seed ${seed}: ${failures.length} failures\n`);
  const kinds = new Map();
  for (const failure of failures) kinds.set(`${failure.target} ${failure.kind}`, (kinds.get(`${failure.target} ${failure.kind}`) ?? 0) + 1);
  for (const [kind, count] of kinds) process.stdout.write(`  ${String(count).padStart(6)} x ${kind}\n`);
  for (const failure of failures.slice(0, 20)) {
    process.stdout.write(`  ${failure.kind} ${failure.target}:${failure.index}: ${failure.detail}  (node test/fuzz/fuzz.mjs --repro ${failure.target}:${failure.index} --seed ${seed})\n`);
  }
  process.exitCode = failures.length > 0 ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main(process.argv.slice(2));
