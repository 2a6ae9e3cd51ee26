import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { parseTrainConfig } from '../src/config/schema.js';
import { Trainer, type TrainEvent } from '../src/train/trainer.js';
import { tempDir } from './helpers.js';
import { writeTinyCohort } from './train-cases.js';

const base = { epochs: 2, patchSize: 16, baseChannels: 8, batchSize: 2, patchesPerVolume: 2, device: 'cpu', threads: 1, numWorkers: 2, swBatch: 2 };

/** metrics.csv without the timing columns (epoch_seconds, voxels_per_second). */
function metricsWithoutTiming(runDir: string): string[][] {
  const lines = readFileSync(join(runDir, 'metrics.csv'), 'utf8').trim().split('\n');
  return lines.map((line) => line.split(',').slice(0, 9));
}

let dataDir: string;
beforeAll(async () => {
  dataDir = tempDir('vmat-train-data-');
  await writeTinyCohort(dataDir, 6);
});

describe('Trainer.fit', () => {
  it('writes the run folder of training.md, emits events and keeps the event loop free', async () => {
    const logDir = tempDir('vmat-runs-');
    const events: TrainEvent[] = [];
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const result = await new Trainer().fit({ ...base, dataDir, expName: 'folder', logDir, tensorboard: true }, { onProgress: (e) => events.push(e) });
    clearInterval(timer);
    const runDir = join(logDir, 'folder');
    expect(result).toMatchObject({ runDir, stopReason: 'max_epochs', epochsRun: 2 });
    expect(ticks).toBeGreaterThan(20);
    for (const name of ['training_config.json', 'split.json', 'test_cases.json', 'environment.json', 'metrics.csv', 'training_summary.json', 'log.jsonl']) {
      expect(existsSync(join(runDir, name)), name).toBe(true);
    }
    const config = JSON.parse(readFileSync(join(runDir, 'training_config.json'), 'utf8'));
    expect(config.settings).toMatchObject({ epochs: 2, patchSize: 16, baseChannels: 8, inChannels: 9, lr: 1e-4, seed: 42 });
    expect(config.splitSizes).toEqual({ train: 4, val: 1, test: 1 });
    expect(config.parameters).toBeGreaterThan(800_000);
    const testCases = JSON.parse(readFileSync(join(runDir, 'test_cases.json'), 'utf8'));
    expect(Object.keys(testCases).sort()).toEqual(['seed', 'test_cases', 'test_files']);
    const environment = JSON.parse(readFileSync(join(runDir, 'environment.json'), 'utf8'));
    expect(environment.libtorch).toMatch(/^\d+\.\d+/);
    expect(environment.node).toBe(process.versions.node);

    const metrics = readFileSync(join(runDir, 'metrics.csv'), 'utf8').trim().split('\n');
    expect(metrics[0]).toBe('epoch,lr,train_loss,train_mse,train_grad,train_neg,val_loss,val_mae_gy,val_mae_ptv70_gy,epoch_seconds,voxels_per_second');
    expect(metrics).toHaveLength(3);
    const [epoch1, epoch2] = metrics.slice(1).map((line) => line.split(',').map(Number));
    expect(epoch1![1]).toBeCloseTo(1e-4, 12); // cosine: lr at epoch 1 ...
    expect(epoch2![1]).toBeCloseTo(1e-6 + (1e-4 - 1e-6) / 2, 12); // ... and half-way at epoch 2 of 2
    for (const row of [epoch1!, epoch2!]) row.forEach((value) => expect(Number.isFinite(value)).toBe(true));

    const checkpoints = readdirSync(join(runDir, 'checkpoints')).sort();
    expect(checkpoints).toContain('last.safetensors');
    expect(checkpoints).toContain('last.state.safetensors');
    expect(checkpoints.filter((name) => /^best-epoch=\d{3}-val_mae_gy=\d+\.\d{3}\.safetensors$/.test(name)).length).toBeGreaterThanOrEqual(1);
    expect(result.bestCheckpoint).toMatch(new RegExp(`best-epoch=00${result.bestEpoch}-val_mae_gy=${result.bestValMaeGy!.toFixed(3)}\\.safetensors$`));

    const log = readFileSync(join(runDir, 'log.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    // Every line is the event with the time it was written (ISO 8601 UTC), in order.
    for (const line of log) expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(log.map((line) => Date.parse(line.time))).toEqual(log.map((line) => Date.parse(line.time)).sort((a, b) => a - b));
    expect(log.map(({ time: _time, ...event }) => event)).toEqual(JSON.parse(JSON.stringify(events)));
    // --tensorboard: one event file in the run folder, read back by an independent reader (test/fixtures).
    const eventFiles = readdirSync(runDir).filter((name) => name.startsWith('events.out.tfevents.'));
    expect(eventFiles).toHaveLength(1);
    const reader = spawnSync('python3', [join(import.meta.dirname, 'fixtures', 'tfevents_reader.py'), join(runDir, eventFiles[0]!)], { encoding: 'utf8' });
    expect(reader.stderr).toBe('');
    const tensorboard = JSON.parse(reader.stdout) as { step: number; scalars?: Record<string, number> }[];
    const epochs = tensorboard.filter((event) => event.scalars?.['val_mae_gy/body'] !== undefined);
    expect(epochs.map((event) => event.step)).toEqual([1, 2]);
    const epochEvents = events.filter((e) => e.type === 'epoch');
    epochs.forEach((event, i) => expect(event.scalars!['val_mae_gy/body']).toBeCloseTo(epochEvents[i]!.type === 'epoch' ? epochEvents[i]!.valMaeGy : NaN, 5));
    expect(tensorboard.filter((event) => event.scalars?.['step/loss'] !== undefined)).toHaveLength(2 * 4);
    expect(events.filter((e) => e.type === 'step')).toHaveLength(2 * 4); // 4 train cases × 2 patches / batch 2, 2 epochs
    const step = events.find((e) => e.type === 'step')!;
    expect(step).toMatchObject({ epoch: 1, step: 1, steps: 4 });
    expect(Object.keys(step)).toEqual(expect.arrayContaining(['loss', 'voxelsPerSecond', 'etaSeconds']));
    expect(events.filter((e) => e.type === 'validate')).toHaveLength(2); // 1 validation case, 2 epochs
    const epoch = events.find((e) => e.type === 'epoch')!;
    expect(epoch.type === 'epoch' && epoch.dataWaitFraction).toBeGreaterThanOrEqual(0);
    const summary = JSON.parse(readFileSync(join(runDir, 'training_summary.json'), 'utf8'));
    expect(summary).toMatchObject({ stopReason: 'max_epochs', epochsRun: 2, bestEpoch: result.bestEpoch });
  });

  it('is deterministic on the CPU, and a resumed run equals an uninterrupted one', async () => {
    const logDir = tempDir('vmat-runs-');
    const settings = { ...base, epochs: 3, dataDir, logDir, useGradientLoss: true };
    await new Trainer().fit({ ...settings, expName: 'a' });
    await new Trainer().fit({ ...settings, expName: 'b', numWorkers: 1 });
    const a = metricsWithoutTiming(join(logDir, 'a'));
    expect(a).toHaveLength(4);
    expect(metricsWithoutTiming(join(logDir, 'b'))).toEqual(a);

    // Abort in the middle of epoch 2, then resume.
    const controller = new AbortController();
    const aborted = await new Trainer().fit(
      { ...settings, expName: 'c' },
      { signal: controller.signal, onProgress: (e) => e.type === 'step' && e.epoch === 2 && controller.abort() },
    );
    expect(aborted.stopReason).toBe('aborted');
    expect(aborted.epochsRun).toBe(1);
    expect(metricsWithoutTiming(join(logDir, 'c'))).toEqual(a.slice(0, 2));
    expect(existsSync(join(logDir, 'c', 'checkpoints', 'last.safetensors'))).toBe(true);
    expect(existsSync(join(logDir, 'c', 'checkpoints', 'last.state.safetensors'))).toBe(true);
    expect(JSON.parse(readFileSync(join(logDir, 'c', 'training_summary.json'), 'utf8')).stopReason).toBe('aborted');
    const resumed = await new Trainer().fit({ dataDir, expName: 'c', logDir }, { resume: true });
    expect(resumed).toMatchObject({ stopReason: 'max_epochs', epochsRun: 3 });
    expect(metricsWithoutTiming(join(logDir, 'c'))).toEqual(a);
  });

  it('stops early after `patience` epochs without a better validation MAE', async () => {
    const logDir = tempDir('vmat-runs-');
    // lr 1e-12 leaves float32 weights unchanged, so the validation MAE never improves after epoch 1.
    const result = await new Trainer().fit({ ...base, dataDir, expName: 'patience', logDir, epochs: 6, patience: 2, lr: 1e-12, minLr: 0 });
    expect(result).toMatchObject({ stopReason: 'early_stop', epochsRun: 3, bestEpoch: 1 });
    expect(metricsWithoutTiming(join(logDir, 'patience'))).toHaveLength(4);
    const best = readdirSync(join(logDir, 'patience', 'checkpoints')).filter((name) => name.startsWith('best-'));
    expect(best.filter((name) => !name.includes('.state.')).length).toBeLessThanOrEqual(3);
    for (const name of best.filter((n) => !n.includes('.state.'))) expect(best).toContain(name.replace('.safetensors', '.state.safetensors'));
  });

  it('refuses an existing run folder without resume or overwrite, touching nothing', async () => {
    const logDir = tempDir('vmat-runs-');
    const runDir = join(logDir, 'taken');
    await mkdir(runDir);
    await writeFile(join(runDir, 'notes.txt'), 'mine');
    await expect(new Trainer().fit({ ...base, dataDir, expName: 'taken', logDir })).rejects.toThrow(/already exists: set resume .* or overwrite /);
    await expect(new Trainer().fit({ ...base, dataDir, expName: 'taken', logDir }, { overwrite: true })).rejects.toThrow(/is not a run folder/);
    expect(readdirSync(runDir)).toEqual(['notes.txt']);
  });

  it('stops with a clear message when the loss blows up (lr 1e12), keeping what was there', async () => {
    const logDir = tempDir('vmat-runs-');
    const run = new Trainer().fit({ ...base, dataDir, expName: 'nan', logDir, lr: 1e12, minLr: 0, gradClip: 0 });
    // The native message names settings, not flags; the CLI adds each setting's flag (withFlagNames).
    await expect(run).rejects.toMatchObject({ code: 'VMAT_NOT_FINITE', settings: expect.arrayContaining(['lr']) });
    await expect(run).rejects.toThrow(/loss became (NaN|infinite) at epoch \d+, step \d+ of \d+ \(learning rate [^)]+\).*Try a lower lr\b/);
    const summary = JSON.parse(readFileSync(join(logDir, 'nan', 'training_summary.json'), 'utf8'));
    expect(summary.stopReason).toBe('not_finite');
  });
});

describe('training configuration', () => {
  it('fills in the defaults of training.md', () => {
    const config = parseTrainConfig({ dataDir: 'd', expName: 'e' });
    expect(config).toMatchObject({
      epochs: 200,
      batchSize: 2,
      patchSize: 128,
      patchesPerVolume: 4,
      lr: 1e-4,
      weightDecay: 0.01,
      betas: [0.9, 0.999],
      minLr: 1e-6,
      gradClip: 1,
      precision: 'auto',
      patience: 50,
      seed: 42,
      baseChannels: 48,
      inChannels: 9,
      useGradientLoss: false,
      gradientLossWeight: 0.1,
      negativePenaltyWeight: 0.1,
      normalisationDoseGy: 70,
      logDir: 'runs',
      overlap: 0.5,
    });
  });

  it.each([
    [{ patchSize: 100 }, /patchSize: got 100, expected a multiple of 16/],
    [{ lr: -1 }, /lr: got -1, expected a number > 0/],
    [{ precision: 'fp8' }, /precision: got 'fp8', expected auto, fp32, bf16 or fp16/],
    [{ device: 'gpu' }, /device: got 'gpu', expected auto, cpu, cuda or cuda:N/],
    [{ baseChannels: 12 }, /baseChannels: got 12, expected a multiple of 8/],
    [{ epochs: 1.5 }, /epochs: got 1.5, expected an integer >= 1/],
    [{ batchSzie: 2 }, /unknown training setting 'batchSzie'/],
    [{ expName: undefined }, /expName is required/],
  ])('rejects %o with the field, the value and what is allowed', (patch, message) => {
    expect(() => parseTrainConfig({ dataDir: 'd', expName: 'e', ...patch })).toThrow(message);
  });
});
