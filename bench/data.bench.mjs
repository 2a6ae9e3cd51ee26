// Case-data benchmarks, each against its NumPy/SciPy peer run in the same process tree, one after the other:
//   1. 8 signed distance maps of a 128x300x300 case at (2.5, 1, 1) mm: native vs scipy.ndimage.distance_transform_edt
//   2. loading that case file (≈ 530 MB, stored), median of 5 alternating runs: readNpz (arrays only) and loadCase
//      (arrays + full validation + conversion) vs numpy.load of every array
// Usage: node bench/data.bench.mjs [--threads N]   (needs `npx tsc -p .`, the addon, and /usr/bin/python3 with SciPy)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const root = resolve(import.meta.dirname, '..');
const { loadCase, readNpz, signedDistanceMaps } = await import(join(root, 'dist', 'index.js'));
const threadsFlag = process.argv.indexOf('--threads');
const threads = threadsFlag > 0 ? Number(process.argv[threadsFlag + 1]) : undefined;

function python(...args) {
  const run = spawnSync('/usr/bin/python3', [join(root, 'bench', 'data_bench.py'), ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (run.status !== 0) throw new Error(`data_bench.py ${args[0]} failed: ${run.stderr}`);
  return JSON.parse(run.stdout.trim().split('\n').at(-1));
}

const dir = mkdtempSync(join(os.tmpdir(), 'vmat-bench-data-'));
const path = join(dir, 'bench_case.npz');
try {
  process.stderr.write('making the 128x300x300 case with NumPy/SciPy...\n');
  python('make', path);

  // 1. distance maps
  const data = await loadCase(path);
  const shape = [8, ...data.shape];
  let start = performance.now();
  const sdf = await signedDistanceMaps(data.masks, shape, data.spacingMm, { threads });
  const nativeSdf = (performance.now() - start) / 1000;
  let worst = 0;
  for (let i = 0; i < sdf.length; i++) worst = Math.max(worst, Math.abs(sdf[i] - data.masksSdf[i]));
  const scipySdf = python('sdf', path).seconds;

  // 2. loading: alternating runs (the page cache is warm for both: the file was just written and read), medians
  const numpyRuns = [];
  const readRuns = [];
  const loadRuns = [];
  let fileBytes = 0;
  for (let run = 0; run < 5; run++) {
    const numpyLoad = python('load', path);
    numpyRuns.push(numpyLoad.seconds);
    fileBytes = numpyLoad.bytes;
    start = performance.now();
    await readNpz(path);
    readRuns.push((performance.now() - start) / 1000);
    start = performance.now();
    await loadCase(path);
    loadRuns.push((performance.now() - start) / 1000);
  }
  const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
  const numpySeconds = median(numpyRuns);
  const readSeconds = median(readRuns);
  const loadSeconds = median(loadRuns);

  const report = {
    machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, load average ${os.loadavg()[0].toFixed(1)}`,
    date: new Date().toISOString(),
    threads: threads ?? 'libtorch default',
    sdf: { nativeSeconds: nativeSdf, scipySeconds: scipySdf, speedup: scipySdf / nativeSdf, maxAbsDifference: worst },
    load: {
      arrayBytes: fileBytes,
      numpyLoadSeconds: numpySeconds,
      readNpzSeconds: readSeconds,
      loadCaseSeconds: loadSeconds,
      readNpzSpeedup: numpySeconds / readSeconds,
      loadCaseSpeedup: numpySeconds / loadSeconds,
      runs: { numpy: numpyRuns, readNpz: readRuns, loadCase: loadRuns },
    },
  };
  console.log(JSON.stringify(report, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
