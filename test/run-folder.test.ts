import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it, vi } from 'vitest';

import { loadCase, saveCase } from '../src/data/case.js';
import { evaluatePredictions, type EvaluationProgress } from '../src/eval/run.js';
import {
  appendLogEvent,
  appendMetricsRow,
  createRunFolder,
  evaluationPaths,
  listCheckpoints,
  readCaseEvaluation,
  readLog,
  readMetrics,
  readSplit,
  readTrainingConfig,
  readTrainingSummary,
  runPaths,
  truncateMetrics,
  writeMetrics,
  writeTrainingSummary,
  type MetricsRow,
} from '../src/run/index.js';
import { fabricateRun } from './fixtures/fabricate-run.js';
import { tempDir } from './helpers.js';

const row = (epoch: number, ptv: number): MetricsRow => ({
  epoch,
  lr: 1e-4 / epoch,
  train_loss: 0.5 / epoch,
  train_mse: 0.4 / epoch,
  train_grad: 0,
  train_neg: 1e-7,
  val_loss: 0.3,
  val_mae_gy: 4 + 1 / epoch,
  val_mae_ptv70_gy: ptv,
  epoch_seconds: 1.5,
  voxels_per_second: 123456.789,
});

describe('the run-folder module (src/run)', () => {
  it('writes metrics.csv as the trainer always did and reads it back, NaN as an empty cell', async () => {
    const dir = tempDir('vmat-run-');
    await createRunFolder(dir);
    expect(existsSync(runPaths(dir).checkpoints)).toBe(true);
    await writeMetrics(dir, []);
    await appendMetricsRow(dir, row(1, Number.NaN));
    await appendMetricsRow(dir, row(2, 3.25));
    await appendMetricsRow(dir, row(3, 3));
    expect(readFileSync(runPaths(dir).metrics, 'utf8').split('\n')[1]).toBe('1,0.0001,0.5,0.4,0,1e-7,0.3,5,,1.5,123456.789');
    await truncateMetrics(dir, 3);
    const rows = readMetrics(dir);
    expect(rows).toHaveLength(2);
    expect(rows[0]!.val_mae_ptv70_gy).toBeNaN();
    expect(rows[1]).toEqual(row(2, 3.25));
  });

  it('reads the log without an incomplete last line (a process killed while appending)', async () => {
    const dir = tempDir('vmat-run-');
    await appendLogEvent(dir, { type: 'load', case: 'a', index: 1, of: 1, warnings: [] });
    appendFileSync(runPaths(dir).log, '{"type":"st');
    expect(readLog(dir)).toEqual([{ time: expect.any(String), type: 'load', case: 'a', index: 1, of: 1, warnings: [] }]);
  });

  it('lists the checkpoints, the lowest validation MAE first', async () => {
    const dir = tempDir('vmat-run-');
    await createRunFolder(dir);
    for (const name of ['best-epoch=003-val_mae_gy=4.100.safetensors', 'best-epoch=012-val_mae_gy=3.670.safetensors', 'best-epoch=012-val_mae_gy=3.670.state.safetensors', 'last.safetensors']) {
      writeFileSync(join(runPaths(dir).checkpoints, name), '');
    }
    const { last, best } = listCheckpoints(dir);
    expect(last).toBe(runPaths(dir).lastCheckpoint);
    expect(best.map((b) => [b.epoch, b.valMaeGy])).toEqual([
      [12, 3.67],
      [3, 4.1],
    ]);
  });

  it('refuses a file that does not hold what its writer writes, naming the file and the entry', async () => {
    const root = tempDir('vmat-run-');
    const run = await fabricateRun(root, 'typed', { evaluate: false });
    expect(readTrainingConfig(run.dir).settings.patchSize).toBe(32);
    expect(readSplit(run.dir)!.files.test).toEqual(['case_0005.npz', 'case_0002.npz']);

    // Another program's spelling is refused instead of guessed.
    writeFileSync(runPaths(run.dir).summary, JSON.stringify({ best_epoch: 3, epochs_run: 4, stop_reason: 'max_epochs', seconds: 1 }));
    expect(() => readTrainingSummary(run.dir)).toThrow(`${runPaths(run.dir).summary} is not as vmat-native writes it`);
    await writeTrainingSummary(run.dir, { stopReason: 'not_finite', error: 'the loss became NaN', seconds: 2 });
    expect(readTrainingSummary(run.dir)).toEqual({ stopReason: 'not_finite', error: 'the loss became NaN', seconds: 2 });

    const config = JSON.parse(readFileSync(runPaths(run.dir).trainingConfig, 'utf8'));
    writeFileSync(runPaths(run.dir).trainingConfig, JSON.stringify({ ...config, settings: { ...config.settings, epochz: 3 } }));
    expect(() => readTrainingConfig(run.dir)).toThrow(`${runPaths(run.dir).trainingConfig}: unknown training setting 'epochz'`);
    writeFileSync(runPaths(run.dir).trainingConfig, JSON.stringify({ ...config, dataDir: 3 }));
    expect(() => readTrainingConfig(run.dir)).toThrow(/training_config\.json is not as vmat-native writes it: 'dataDir': /);
    rmSync(runPaths(run.dir).trainingConfig);
    expect(() => readTrainingConfig(run.dir)).toThrow(/training_config\.json of .* is missing: expected the file/);
  });
});

describe('evaluatePredictions (src/eval/run.ts)', () => {
  it('returns the evaluations, reports progress through the callback, writes the evaluation files and prints nothing', async () => {
    const root = tempDir('vmat-eval-');
    await fabricateRun(root, 'evaluated', { evaluate: true });
    const refDir = join(root, 'evaluated_data');
    const predDir = join(root, 'predictions');
    mkdirSync(predDir);
    for (const caseId of ['case_0002', 'case_0005']) {
      const reference = await loadCase(join(refDir, `${caseId}.npz`));
      await saveCase(join(predDir, `${caseId}_pred.npz`), { ...reference, dose: reference.dose!.map((d) => d * 1.05) });
    }
    const out = join(root, 'again');
    const events: EvaluationProgress[] = [];
    const stdout = vi.spyOn(process.stdout, 'write');
    const stderr = vi.spyOn(process.stderr, 'write');
    try {
      const result = await evaluatePredictions(predDir, refDir, out, { device: 'cpu', threads: 1, onProgress: (event) => events.push(event) });
      expect(stdout).not.toHaveBeenCalled();
      expect(stderr).not.toHaveBeenCalled();
      expect(result.outDir).toBe(out);
      expect(result.cases.map((c) => c.case_id)).toEqual(['case_0002', 'case_0005']);
      expect(events.map((e) => e.type)).toEqual(['evaluated', 'evaluated']);
      expect(result.summary['mae_gy.body']!.n).toBe(2);
      // What was written reads back as what was returned.
      const paths = evaluationPaths(out);
      expect(readCaseEvaluation(paths.caseFile('case_0002')).mae_gy).toEqual(result.cases[0]!.mae_gy);
      expect(existsSync(paths.cases) && existsSync(paths.summary)).toBe(true);
      await expect(evaluatePredictions(predDir, refDir, out, { device: 'cpu' })).rejects.toThrow(/already exists .*: choose another out folder or set overwrite/);
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
  });
});
