import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { Trainer, type TrainEvent } from '../src/train/trainer.js';
import { tempDir } from './helpers.js';
import { writeTinyCohort } from './train-cases.js';

const base = { epochs: 2, patchSize: 16, baseChannels: 8, batchSize: 2, patchesPerVolume: 2, device: 'cpu', threads: 1, numWorkers: 2, swBatch: 2 };

let dataDir: string;
beforeAll(async () => {
  dataDir = tempDir('vmat-train-data-');
  await writeTinyCohort(dataDir, 5);
});

describe('Trainer.fit', () => {
  it('writes the run folder of training.md and keeps the event loop free', async () => {
    const logDir = tempDir('vmat-runs-');
    const events: TrainEvent[] = [];
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const result = await new Trainer().fit({ ...base, dataDir, expName: 'folder', logDir }, { onProgress: (e) => events.push(e) });
    clearInterval(timer);
    console.log(result, ticks);
    const runDir = join(logDir, 'folder');
    expect(result.runDir).toBe(runDir);
    expect(result.stopReason).toBe('max_epochs');
    expect(result.epochsRun).toBe(2);
    expect(ticks).toBeGreaterThan(10);
    for (const name of ['training_config.json', 'split.json', 'test_cases.json', 'environment.json', 'metrics.csv', 'training_summary.json', 'log.jsonl']) {
      expect(existsSync(join(runDir, name)), name).toBe(true);
    }
    console.log(readdirSync(join(runDir, 'checkpoints')));
    console.log(readFileSync(join(runDir, 'metrics.csv'), 'utf8'));
    console.log(readFileSync(join(runDir, 'training_config.json'), 'utf8'));
  });
});
