import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { appendLogEvent, readLog, runPaths } from '../src/run/index.js';
import { crc32c, TensorBoardLog } from '../src/run/tensorboard.js';
import type { EpochEvent, StepEvent } from '../src/train/events.js';
import { tempDir } from './helpers.js';

const READER = join(import.meta.dirname, 'fixtures', 'tfevents_reader.py');
const readEvents = (path: string) => spawnSync('python3', [READER, path], { encoding: 'utf8' });

const epochEvent = (epoch: number, valMaeGy: number): EpochEvent => ({
  type: 'epoch', epoch, epochs: 2, lr: 1e-4 / epoch, trainLoss: 0.5 / epoch, trainMse: 0.4 / epoch, trainGrad: 0, trainNeg: 0.01, valLoss: 0.6 / epoch,
  valMaeGy, valMaePtv70Gy: null, epochSeconds: 3.5, voxelsPerSecond: 1e5, dataWaitFraction: 0.25, improved: true, bestEpoch: epoch, bestValMaeGy: valMaeGy,
});
const stepEvent = (epoch: number, step: number, loss: number): StepEvent => ({ type: 'step', epoch, epochs: 2, step, steps: 4, loss, lr: 1e-4, voxelsPerSecond: 2e5, etaSeconds: 1 });

describe('TensorBoard event files', () => {
  it('computes CRC-32C as specified (check value of "123456789")', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it('writes TFRecord-framed Event protobufs that an independent reader reads back', () => {
    const dir = tempDir('vmat-tb-');
    const log = new TensorBoardLog(dir, { gradientLoss: false, now: new Date('2026-12-02T18:00:00Z') });
    expect(readdirSync(dir)).toEqual([log.path.slice(dir.length + 1)]);
    expect(log.path).toMatch(/events\.out\.tfevents\.1796234400\./);
    log.write({ type: 'validate', epoch: 1, case: 'c', index: 1, of: 1 }); // no numbers: nothing written
    log.write(stepEvent(1, 3, 0.75), new Date('2026-12-02T18:00:01Z'));
    log.write(stepEvent(2, 1, 0.5), new Date('2026-12-02T18:00:02Z'));
    log.write(epochEvent(1, 3.25), new Date('2026-12-02T18:00:03Z'));
    log.write(epochEvent(2, 2.125), new Date('2026-12-02T18:00:04Z'));
    const result = readEvents(log.path);
    expect(result.stderr).toBe('');
    const events = JSON.parse(result.stdout) as { wall_time: number; step: number; file_version?: string; scalars?: Record<string, number> }[];
    expect(events).toHaveLength(5);
    expect(events[0]).toEqual({ wall_time: 1796234400, step: 0, file_version: 'brain.Event:2' });
    // Per-step loss on one global step count: epoch 2 step 1 of 4 is step 5.
    expect(events[1]!.step).toBe(3);
    expect(events[2]!.step).toBe(5);
    expect(events[2]!.wall_time).toBe(1796234402);
    expect(events[2]!.scalars!['step/loss']).toBe(0.5);
    const epoch2 = events[4]!;
    expect(epoch2.step).toBe(2);
    expect(epoch2.scalars!['val_mae_gy/body']).toBe(2.125);
    expect(epoch2.scalars!['loss/train']).toBeCloseTo(0.25, 6);
    expect(epoch2.scalars!['epoch/data_wait_fraction']).toBe(0.25);
    // Gradient loss off: no gradient curve; no PTV70 in validation: no PTV70 curve.
    expect(Object.keys(epoch2.scalars!)).not.toContain('loss/train_gradient');
    expect(Object.keys(epoch2.scalars!)).not.toContain('val_mae_gy/ptv70');
  });

  it('includes the gradient term when the gradient loss is on', () => {
    const dir = tempDir('vmat-tb-');
    const log = new TensorBoardLog(dir, { gradientLoss: true });
    log.write({ ...epochEvent(1, 3), trainGrad: 0.125, valMaePtv70Gy: 4.5 });
    const events = JSON.parse(readEvents(log.path).stdout);
    expect(events[1].scalars['loss/train_gradient']).toBe(0.125);
    expect(events[1].scalars['val_mae_gy/ptv70']).toBe(4.5);
  });
});

describe('log.jsonl', () => {
  it('stamps every event with the time it was written (ISO 8601 UTC) and still reads logs without stamps', async () => {
    const dir = tempDir('vmat-log-');
    await appendLogEvent(dir, { type: 'load', case: 'a', index: 1, of: 1, warnings: [] }, new Date('2026-12-02T18:30:00.250Z'));
    await appendLogEvent(dir, stepEvent(1, 1, 0.5));
    const { appendFileSync, readFileSync } = await import('node:fs');
    appendFileSync(runPaths(dir).log, `${JSON.stringify({ type: 'load', case: 'old', index: 1, of: 1, warnings: [] })}\n`);
    const lines = readFileSync(runPaths(dir).log, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('{"time":"2026-12-02T18:30:00.250Z","type":"load","case":"a","index":1,"of":1,"warnings":[]}');
    const events = readLog(dir);
    expect(events).toHaveLength(3);
    expect(events[1]!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Math.abs(Date.parse(events[1]!.time!) - Date.now())).toBeLessThan(60_000);
    expect(events[2]).toEqual({ type: 'load', case: 'old', index: 1, of: 1, warnings: [] });
  });
});
