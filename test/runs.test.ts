/**
 * Runs that start, stop, resume and are replaced without losing or mixing anything (issues 13 "Runs" and 18 "Data
 * lost"): nothing written before a run can start, resume settings and input fingerprints, checkpoint pairs,
 * overwrite of a folder that holds the data, signals, the progress bar, case ids as file names.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';

import { beforeAll, describe, expect, it } from 'vitest';

import { progressPrinter, signalHandler } from '../src/cli/commands/train.js';
import { loadCase, saveCase } from '../src/data/case.js';
import { evaluatePredictions } from '../src/eval/run.js';
import { readCheckpointMetadata } from '../src/model.js';
import { predictFiles } from '../src/predict/predict.js';
import { caseFileStem, readLog, readMetrics, readTrainingConfig } from '../src/run/index.js';
import { runtimeReport } from '../src/runtime.js';
import { Trainer } from '../src/train/trainer.js';
import { cliPath, runCli, tempDir } from './helpers.js';
import { random, tinyCase, writeTinyCohort } from './train-cases.js';

const base = { epochs: 1, patchSize: 16, baseChannels: 8, batchSize: 2, patchesPerVolume: 1, device: 'cpu', threads: 1, numWorkers: 1, swBatch: 2, testSplit: 0.2 };

let dataDir: string;
beforeAll(async () => {
  dataDir = tempDir('vmat-runs-data-');
  await writeTinyCohort(dataDir, 5);
});

const metricsRows = (runDir: string) => readFileSync(join(runDir, 'metrics.csv'), 'utf8').trim().split('\n').length - 1;

describe('a run that cannot start writes nothing', () => {
  it('an empty data folder leaves no run folder, so the corrected retry is not refused as existing', async () => {
    const logDir = tempDir('vmat-runs-');
    const empty = tempDir('vmat-empty-');
    await expect(new Trainer().fit({ ...base, dataDir: empty, expName: 'retry', logDir })).rejects.toThrow(/holds no case files/);
    expect(existsSync(join(logDir, 'retry'))).toBe(false);
    await expect(new Trainer().fit({ ...base, dataDir, expName: 'retry', logDir })).resolves.toMatchObject({ stopReason: 'max_epochs' });
  });

  it('--device cuda without a GPU leaves no run folder (CLI)', () => {
    const logDir = tempDir('vmat-runs-');
    const args = ['train', '--exp-name', 'gpu', '--data-dir', dataDir, '--log-dir', logDir, '--epochs', '1', '--patch-size', '16', '--base-channels', '8', '--patches-per-volume', '1', '--threads', '1'];
    if (runtimeReport().cuda.available) return; // a machine with a GPU would train
    const refused = runCli([...args, '--device', 'cuda']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/no CUDA device is available/);
    expect(existsSync(join(logDir, 'gpu'))).toBe(false);
  });

  it('an abort while the cases load writes nothing', async () => {
    const logDir = tempDir('vmat-runs-');
    const controller = new AbortController();
    const result = await new Trainer().fit({ ...base, dataDir, expName: 'early', logDir }, { signal: controller.signal, onProgress: (e) => e.type === 'load' && controller.abort() });
    expect(result).toMatchObject({ stopReason: 'aborted', epochsRun: 0 });
    expect(existsSync(join(logDir, 'early'))).toBe(false);
  });

  it('warns in one sentence when the patch is far larger than the volumes', async () => {
    const logDir = tempDir('vmat-runs-');
    const controller = new AbortController();
    const warnings: string[] = [];
    // Stopped at the warning: the point is the sentence, not a 64³ epoch.
    await new Trainer().fit(
      { ...base, patchSize: 64, dataDir, expName: 'patch', logDir },
      { signal: controller.signal, onWarning: (message) => (warnings.push(message), controller.abort()) },
    );
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^the patch size 64 is larger than the training volumes \(the largest is 16×24×24 voxels\).* 28× .*: patchSize 32 covers every volume/);
    expect(warnings[0]!.split('. ')).toHaveLength(1);
  });
});

describe('resume', () => {
  it('refuses settings that differ, naming each (old → new); records the ones that may change; needs no data folder', async () => {
    const logDir = tempDir('vmat-runs-');
    const runDir = join(logDir, 'r');
    await new Trainer().fit({ ...base, dataDir, expName: 'r', logDir });
    const before = readFileSync(join(runDir, 'training_config.json'), 'utf8');
    await expect(new Trainer().fit({ expName: 'r', logDir, epochs: 2, lr: 0.01, batchSize: 1 }, { resume: true })).rejects.toThrow(
      /cannot resume .* with other settings than it was trained with: lr 0\.0001 → 0\.01, batchSize 2 → 1; only epochs, patience, device/,
    );
    expect(readFileSync(join(runDir, 'training_config.json'), 'utf8')).toBe(before);
    // The same values again are no change; a moved data folder is one.
    await expect(new Trainer().fit({ expName: 'r', logDir, lr: 1e-4, dataDir: tempDir() }, { resume: true })).rejects.toThrow(/dataDir '.*' → '.*'/);

    const resumed = await new Trainer().fit({ expName: 'r', logDir, epochs: 2, lr: 1e-4 }, { resume: true });
    expect(resumed).toMatchObject({ stopReason: 'max_epochs', epochsRun: 2 });
    const config = readTrainingConfig(runDir);
    expect(config.settings.epochs).toBe(2);
    expect(config.resumes).toEqual([{ at: expect.any(String), startEpoch: 2, startStep: 0, from: 'last', changes: { epochs: { from: 1, to: 2 } } }]);
    expect(metricsRows(runDir)).toBe(2);
  });

  it('the CLI resumes without --data-dir and maps the refused settings to flags', async () => {
    const logDir = tempDir('vmat-runs-');
    await new Trainer().fit({ ...base, dataDir, expName: 'c', logDir });
    const refused = runCli(['train', '--resume', '--exp-name', 'c', '--log-dir', logDir, '--epochs', '7', '--lr', '0.01']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/lr \(--lr\) 0\.0001 → 0\.01; only epochs/);
  });

  it('refuses a training case file that changed since the run started, naming it; a touched file is not a change', async () => {
    const logDir = tempDir('vmat-runs-');
    const data = tempDir('vmat-runs-data-');
    await writeTinyCohort(data, 5);
    const runDir = join(logDir, 'f');
    await new Trainer().fit({ ...base, dataDir: data, expName: 'f', logDir });
    const inputs = JSON.parse(readFileSync(join(runDir, 'inputs.json'), 'utf8'));
    const trainFile = inputs.files.find((f: { role: string }) => f.role === 'train').file as string;
    expect(inputs.files).toHaveLength(5);
    expect(inputs.files[0]).toMatchObject({ bytes: expect.any(Number), mtimeMs: expect.any(Number), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });

    utimesSync(join(data, trainFile), new Date(), new Date(Date.now() + 5000));
    await expect(new Trainer().fit({ expName: 'f', logDir, epochs: 2 }, { resume: true })).resolves.toMatchObject({ epochsRun: 2 });

    await saveCase(join(data, trainFile), tinyCase(99, [16, 24, 24]), { overwrite: true });
    await expect(new Trainer().fit({ expName: 'f', logDir, epochs: 3 }, { resume: true })).rejects.toThrow(
      new RegExp(`the training case file .*${trainFile} changed since the run started \\(`),
    );
  });

  it('detects a weights/state pair from two saves and falls back to the previous whole pair, saying so', async () => {
    const logDir = tempDir('vmat-runs-');
    const runDir = join(logDir, 'p');
    const checkpoints = join(runDir, 'checkpoints');
    await new Trainer().fit({ ...base, epochs: 2, dataDir, expName: 'p', logDir });
    const token = (name: string) => readCheckpointMetadata(join(checkpoints, name)).metadata.checkpoint_pair;
    expect(token('last.safetensors')).toBe(token('last.state.safetensors'));
    expect(token('previous.safetensors')).toBe(token('previous.state.safetensors'));
    expect(token('previous.safetensors')).not.toBe(token('last.safetensors'));
    // A kill between the two renames of a save: the state of epoch 2 beside the weights of epoch 1.
    copyFileSync(join(checkpoints, 'previous.safetensors'), join(checkpoints, 'last.safetensors'));
    const warnings: string[] = [];
    const resumed = await new Trainer().fit({ expName: 'p', logDir, epochs: 3 }, { resume: true, onWarning: (m) => warnings.push(m) });
    expect(warnings.join('\n')).toMatch(/checkpoints\/last\.safetensors and last\.state\.safetensors are not one pair .*: resuming from checkpoints\/previous\.safetensors, the save before them \(epoch 2, step 1\)/);
    expect(resumed).toMatchObject({ stopReason: 'max_epochs', epochsRun: 3 });
    expect(readTrainingConfig(runDir).resumes?.[0]).toMatchObject({ from: 'previous', startEpoch: 2 });
    expect(metricsRows(runDir)).toBe(3);
  });
});

describe('temporaries of killed writers', () => {
  it('predict removes what a killed predict left in its output folder; a resumed train those in the run folder', async () => {
    const logDir = tempDir('vmat-runs-');
    const runDir = join(logDir, 't');
    await new Trainer().fit({ ...base, dataDir, expName: 't', logDir });
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    const out = tempDir('vmat-pred-');
    const left = [join(out, `.case_000_pred.npz.${dead}.0123abcd.tmp`), join(runDir, `.metrics.csv.${dead}.89abcdef.tmp`), join(runDir, 'checkpoints', `.last.safetensors.${dead}.00ff00ff.tmp`)];
    for (const path of left) writeFileSync(path, 'partial');
    await predictFiles(join(runDir, 'checkpoints', 'last.safetensors'), [join(dataDir, 'case_000.npz')], out, { patchSize: 16, device: 'cpu', threads: 1 });
    expect(readdirSync(out)).toEqual(['case_000_pred.npz']);
    await new Trainer().fit({ expName: 't', logDir }, { resume: true });
    for (const path of left) expect(existsSync(path), path).toBe(false);
    // A run folder whose set-up was killed, beside the one a new run sets up.
    const staging = join(logDir, `.u.${dead}.0badf00d.tmp`);
    mkdirSync(join(staging, 'checkpoints'), { recursive: true });
    await new Trainer().fit({ ...base, dataDir, expName: 'u', logDir });
    expect(readdirSync(logDir).sort()).toEqual(['t', 'u']);
  });
});

describe('resume before the first checkpoint', () => {
  it('a run stopped before any checkpoint begins again at epoch 1, saying so', async () => {
    const logDir = tempDir('vmat-runs-');
    const runDir = join(logDir, 'n');
    await new Trainer().fit({ ...base, dataDir, expName: 'n', logDir });
    rmSync(join(runDir, 'checkpoints'), { recursive: true });
    const warnings: string[] = [];
    await expect(new Trainer().fit({ expName: 'n', logDir }, { resume: true, onWarning: (m) => warnings.push(m) })).resolves.toMatchObject({ epochsRun: 1 });
    expect(warnings).toEqual([expect.stringMatching(/has no checkpoint yet .*: training begins again at epoch 1/)]);
    expect(metricsRows(runDir)).toBe(1);
    expect(readTrainingConfig(runDir).resumes?.[0]).toMatchObject({ from: 'none', startEpoch: 1 });
  });
});

describe('overwrite replaces only what vmat-native wrote', () => {
  it('keeps a data folder inside the run folder and the user’s files; refuses when a tool folder holds the data', async () => {
    const logDir = tempDir('vmat-runs-');
    const runDir = join(logDir, 'o');
    await new Trainer().fit({ ...base, dataDir, expName: 'o', logDir });
    const inner = join(runDir, 'data');
    mkdirSync(inner);
    for (const name of readdirSync(dataDir)) copyFileSync(join(dataDir, name), join(inner, name));
    writeFileSync(join(runDir, 'notes.txt'), 'mine');
    await new Trainer().fit({ ...base, dataDir: inner, expName: 'o', logDir }, { overwrite: true });
    expect(readdirSync(inner).sort()).toEqual(readdirSync(dataDir).sort());
    expect(readFileSync(join(runDir, 'notes.txt'), 'utf8')).toBe('mine');
    expect(readTrainingConfig(runDir).dataDir).toBe(inner);

    const held = join(runDir, 'evaluation', 'cases');
    mkdirSync(held, { recursive: true });
    for (const name of readdirSync(dataDir)) copyFileSync(join(dataDir, name), join(held, name));
    await expect(new Trainer().fit({ ...base, dataDir: held, expName: 'o', logDir }, { overwrite: true })).rejects.toThrow(/cannot be overwritten: its evaluation holds .*evaluation\/cases, an input of this run/);
    expect(readdirSync(held).sort()).toEqual(readdirSync(dataDir).sort());
    expect(existsSync(join(runDir, 'checkpoints', 'last.safetensors'))).toBe(true);
  });
});

describe('signals and the progress bar', () => {
  it('a repeat of the signal within 2 s is ignored; one later exits at once with 128 + its number', () => {
    let clock = 0;
    const seen: string[] = [];
    const handler = signalHandler({ stop: (s) => seen.push(`stop ${s}`), exit: (s, code) => seen.push(`exit ${s} ${code}`), now: () => clock });
    handler.handle('SIGINT');
    clock = 5;
    handler.handle('SIGINT');
    clock = 1999;
    handler.handle('SIGTERM');
    expect(seen).toEqual(['stop SIGINT']);
    clock = 2500;
    handler.handle('SIGTERM');
    expect(seen).toEqual(['stop SIGINT', 'exit SIGTERM 143']);
    expect(handler.stoppedBy).toBe('SIGINT');
  });

  it('the interrupt message gets a line of its own, and no bar is drawn over it', () => {
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 100 });
    let output = '';
    stream.on('data', (chunk) => (output += chunk));
    const printer = progressPrinter(true, stream as unknown as NodeJS.WritableStream);
    const step = (n: number) => printer.onEvent({ type: 'step', epoch: 1, epochs: 2, step: n, steps: 10, loss: 0.5, lr: 1e-4, voxelsPerSecond: 1000, etaSeconds: 5 });
    step(1);
    step(2);
    printer.interrupt('SIGINT: stopping after this step');
    step(3);
    printer.stop();
    const at = output.indexOf('SIGINT: stopping after this step');
    expect(at).toBeGreaterThan(0);
    // Cleared line before it, a newline right after it, and nothing of the bar after it.
    expect(output.slice(at - 4, at)).toBe('\r\x1b[K');
    expect(output.slice(at).replace(/\x1b\[\?25h/g, '')).toBe('SIGINT: stopping after this step\n');
  });
});

describe('case ids never become paths unsanitised', () => {
  it('escapes path separators, hidden names and the tool’s own names, injectively', () => {
    expect(caseFileStem('case_001')).toBe('case_001');
    expect(caseFileStem('../x')).toBe('%2E.%2Fx');
    expect(caseFileStem('a/b')).toBe('a%2Fb');
    expect(caseFileStem('a%2Fb')).toBe('a%252Fb');
    expect(caseFileStem('summary')).toBe('%73ummary');
    expect(caseFileStem('Summary')).toBe('%53ummary');
    expect(caseFileStem('.hidden')).toBe('%2Ehidden');
    expect(caseFileStem('Müller 1')).toBe('M%C3%BCller 1');
    expect(() => caseFileStem('')).toThrow(/cannot name a file/);
    expect(() => caseFileStem('x'.repeat(300))).toThrow(/cannot name a file/);
  });

  it('gives 5000 seeded random ids stems that differ where the ids do, none a path, hidden or the tool’s', () => {
    const rand = random(42);
    const alphabet = ['a', 'Z', '0', '.', '/', '\\', '%', ' ', '_', '-', '\u0000', '\n', 'é', '😀', 'summary', 'cases', '..'];
    const stems = new Map<string, string>();
    for (let i = 0; i < 5000; i++) {
      const id = Array.from({ length: 1 + Math.floor(rand() * 8) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
      const stem = caseFileStem(id);
      expect(stem).toMatch(/^[A-Za-z0-9_\-+=@%][A-Za-z0-9_\-+=@%. ]*$/);
      expect(['summary', 'cases', 'predictions', 'report', 'index']).not.toContain(stem.toLowerCase());
      const other = stems.get(stem);
      if (other !== undefined) expect(other, stem).toBe(id);
      stems.set(stem, id);
    }
    expect(stems.size).toBeGreaterThan(3000);
  });

  it('evaluate writes a case named ../x inside --out and a case named summary beside summary.json', async () => {
    const dir = tempDir('vmat-ids-');
    const [pred, ref, out] = ['pred', 'ref', 'out'].map((name) => join(dir, name));
    mkdirSync(pred);
    mkdirSync(ref);
    const escaping = { ...tinyCase(1, [16, 24, 24]), caseId: '../x' };
    await saveCase(join(pred, 'p_pred.npz'), escaping);
    await saveCase(join(ref, 'r.npz'), escaping);
    const summaryCase = { ...tinyCase(2, [16, 24, 24]), caseId: 'summary' };
    await saveCase(join(pred, 'summary_pred.npz'), summaryCase);
    await saveCase(join(ref, 'summary.npz'), summaryCase);
    const result = await evaluatePredictions(pred, ref, out, { threads: 1, device: 'cpu' });
    expect(result.cases.map((c) => c.case_id).sort()).toEqual(['../x', 'summary']);
    expect(existsSync(join(dir, 'x.json'))).toBe(false);
    expect(readdirSync(out).sort()).toEqual(['%2E.%2Fx.json', '%73ummary.json', 'cases.csv', 'summary.json']);
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).n_cases).toBe(2);
    expect(JSON.parse(readFileSync(join(out, '%73ummary.json'), 'utf8')).case_id).toBe('summary');
  });
});

/** The CLI as a child process; `onStderr` sees the growing stderr and may signal the child. */
function spawnCli(args: string[], onStderr: (stderr: string, child: ChildProcess) => void = () => undefined) {
  const child = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, OMP_WAIT_POLICY: 'passive' } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => {
    stderr += chunk;
    onStderr(stderr, child);
  });
  const done = new Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolveExit) =>
    child.on('close', (status, signal) => resolveExit({ status, signal, stdout, stderr })),
  );
  return { child, done };
}

const trainArgs = (logDir: string, expName: string, epochs: number) => [
  'train', '--exp-name', expName, '--data-dir', dataDir, '--log-dir', logDir, '--epochs', String(epochs), '--patch-size', '16', '--base-channels', '8',
  '--patches-per-volume', '1', '--device', 'cpu', '--threads', '1', '--num-workers', '1', '--test-split', '0.2',
];

describe('signals to a training (the CLI)', () => {
  it('SIGINT delivered twice at once (a forwarding wrapper) stops after the step, writes last, exit 0', async () => {
    const logDir = tempDir('vmat-runs-');
    let sent = false;
    const { done } = spawnCli(trainArgs(logDir, 'int2', 500), (stderr, child) => {
      if (!sent && /epoch 1\/500/.test(stderr)) {
        sent = true;
        child.kill('SIGINT');
        child.kill('SIGINT');
      }
    });
    const result = await done;
    expect(result.stderr).toMatch(/SIGINT: stopping after this step and saving checkpoints\/last/);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^stopped \(SIGINT\) after \d+ epochs?/);
    expect(result.stdout).toMatch(/continue {5}vmat-native train --resume --exp-name int2 --log-dir /);
    expect(existsSync(join(logDir, 'int2', 'checkpoints', 'last.safetensors'))).toBe(true);
    expect(JSON.parse(readFileSync(join(logDir, 'int2', 'training_summary.json'), 'utf8')).stopReason).toBe('aborted');
  });

  it('SIGTERM (SLURM, Docker, Kubernetes) stops the same way, exit 143', async () => {
    const logDir = tempDir('vmat-runs-');
    let sent = false;
    const { done } = spawnCli(trainArgs(logDir, 'term', 500), (stderr, child) => {
      if (!sent && /epoch 1\/500/.test(stderr)) {
        sent = true;
        child.kill('SIGTERM');
      }
    });
    const result = await done;
    expect(result.stderr).toMatch(/SIGTERM: stopping after this step/);
    expect(result.status).toBe(143);
    expect(result.stdout).toMatch(/^stopped \(SIGTERM\)/);
    expect(JSON.parse(readFileSync(join(logDir, 'term', 'training_summary.json'), 'utf8')).stopReason).toBe('aborted');
    expect(existsSync(join(logDir, 'term', 'checkpoints', 'last.state.safetensors'))).toBe(true);
  });
});

/** A safetensors file is whole: its header parses and its data ends where the file does. */
function wholeSafetensors(path: string): boolean {
  const bytes = readFileSync(path);
  if (bytes.length < 8) return false;
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as Record<string, { data_offsets?: [number, number] }>;
  const end = Math.max(0, ...Object.values(header).map((entry) => entry.data_offsets?.[1] ?? 0));
  return bytes.length === 8 + length + end;
}

/** Every file vmat-native wrote in the folder parses; returns the temporaries found. */
function checkFolder(dir: string): string[] {
  const temporaries: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    if (entry.name.includes('.tmp')) temporaries.push(path);
    else if (entry.name.endsWith('.json')) expect(() => JSON.parse(readFileSync(path, 'utf8')), path).not.toThrow();
    else if (entry.name.endsWith('.safetensors')) expect(wholeSafetensors(path), path).toBe(true);
    else if (entry.name === 'metrics.csv') expect(() => readMetrics(dir), path).not.toThrow();
    else if (entry.name === 'log.jsonl') expect(() => readLog(dir), path).not.toThrow();
  }
  return temporaries;
}

describe('kill -9 at random moments', () => {
  it('a training killed again and again leaves whole files only, and resumes to the end', async () => {
    const logDir = tempDir('vmat-runs-');
    const runDir = join(logDir, 'k');
    const rand = random(20261202);
    for (let round = 0; round < 3; round++) {
      const resume = existsSync(join(runDir, 'training_config.json'));
      const args = resume ? ['train', '--resume', '--exp-name', 'k', '--log-dir', logDir] : trainArgs(logDir, 'k', 8);
      // Killed at a random moment of training (counted from its start line), checkpoint writes included.
      let timer: NodeJS.Timeout | undefined;
      const { done } = spawnCli(args, (stderr, child) => {
        if (!timer && /training on /.test(stderr)) timer = setTimeout(() => child.kill('SIGKILL'), rand() * 1200);
      });
      const result = await done;
      clearTimeout(timer);
      expect(result.stderr).not.toMatch(/internal error|Error:/);
      if (existsSync(runDir)) checkFolder(runDir);
      expect(readdirSync(logDir).filter((name) => !name.startsWith('.'))).toEqual(existsSync(runDir) ? ['k'] : []);
      if (result.status === 0) break;
    }
    const resume = existsSync(join(runDir, 'training_config.json'));
    const last = runCli(resume ? ['train', '--resume', '--exp-name', 'k', '--log-dir', logDir] : trainArgs(logDir, 'k', 8));
    expect(last.stderr).not.toMatch(/cannot resume/);
    expect(last.status).toBe(0);
    expect(checkFolder(runDir)).toEqual([]);
    expect(readMetrics(runDir).map((row) => row.epoch)).toEqual(Array.from({ length: 8 }, (_, i) => i + 1));

    // predict, killed while it writes its cases, then run again: whole files, and the temporaries cleaned.
    const out = join(tempDir('vmat-pred-'), 'out');
    const checkpoint = join(runDir, 'checkpoints', 'last.safetensors');
    const predictArgs = ['predict', '--checkpoint', checkpoint, '--input', dataDir, '--output-dir', out, '--patch-size', '16', '--device', 'cpu', '--threads', '1', '--overwrite'];
    for (let round = 0; round < 1; round++) {
      let timer: NodeJS.Timeout | undefined;
      const { done } = spawnCli(predictArgs, (stderr, child) => {
        if (!timer && /\[1\/5\]/.test(stderr)) timer = setTimeout(() => child.kill('SIGKILL'), rand() * 600);
      });
      await done;
      clearTimeout(timer);
      if (!existsSync(out)) continue;
      for (const name of readdirSync(out).filter((n) => n.endsWith('_pred.npz'))) await expect(loadCase(join(out, name)), name).resolves.toBeDefined();
    }
    const final = runCli(predictArgs);
    expect(final.status).toBe(0);
    expect(readdirSync(out).sort()).toEqual(readdirSync(dataDir).map((name) => name.replace(/\.npz$/, '_pred.npz')).sort());
  });
});
