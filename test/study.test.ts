import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { flattenEvaluation } from '../src/eval/evaluate.js';
import { parseArm, parseStudyConfig, splitArms } from '../src/study/config.js';
import { runStudy, type StudyProgress } from '../src/study/run.js';
import { runCli, tempDir } from './helpers.js';
import { writeTinyCohort } from './train-cases.js';

const tiny = { epochs: 1, patchSize: 16, baseChannels: 8, batchSize: 2, patchesPerVolume: 1, device: 'cpu', threads: 1, numWorkers: 1, swBatch: 4, testSplit: 0.34 };

describe('study arms and study files', () => {
  it('reads presets, explicit settings and presets with overrides', () => {
    expect(parseArm('baseline')).toEqual({ name: 'baseline', label: 'baseline', settings: {} });
    expect(parseArm('grad_loss_0.1')).toEqual({ name: 'grad_loss_0.1', label: 'gradient loss 0.1', settings: { useGradientLoss: true, gradientLossWeight: 0.1 } });
    expect(parseArm('dvh_loss_0.05').settings).toEqual({ useDvhLoss: true, dvhLossWeight: 0.05 });
    expect(parseArm('low_lr{lr=5e-5;patch-size=32}')).toEqual({ name: 'low_lr', label: 'low_lr', settings: { lr: 5e-5, patchSize: 32 } });
    expect(parseArm('grad_loss_0.2{patience=7}').settings).toEqual({ useGradientLoss: true, gradientLossWeight: 0.2, patience: 7 });
    expect(splitArms('baseline, s{structures=PTV70,Rectum;epochs=3},grad_loss_0.1')).toEqual(['baseline', 's{structures=PTV70,Rectum;epochs=3}', 'grad_loss_0.1']);
    expect(parseArm('s{structures=PTV70,Rectum}').settings).toEqual({ structures: ['PTV70', 'Rectum'] });
  });

  it('refuses bad arms and study fields in one sentence naming them', () => {
    expect(() => parseArm('gradient')).toThrow("unknown arm 'gradient': expected a preset (baseline, grad_loss_<weight>");
    expect(() => parseArm('grad_loss_x')).toThrow("the arm 'grad_loss_x' has no weight");
    expect(() => parseArm('a{lr}')).toThrow("has 'lr' without a value");
    expect(() => parseArm('a{learningRate=1}')).toThrow("sets 'learningRate', which is not a training setting");
    expect(() => parseArm('a{seed=3}')).toThrow('sets seed, which the study sets for every arm');
    expect(() => parseArm('a{lr=abc}')).toThrow("invalid training setting lr: got 'abc'");
    const train = { dataDir: '/nowhere', expName: 'e' };
    expect(() => parseStudyConfig({ arms: ['baseline'], train })).toThrow('a study compares at least two arms');
    expect(() => parseStudyConfig({ arms: ['baseline', 'baseline'], train })).toThrow("the arm 'baseline' is named twice");
    expect(() => parseStudyConfig({ arms: ['baseline', 'grad_loss_0.1'], train, seeds: 0 })).toThrow('invalid study field seeds: got 0');
    expect(() => parseStudyConfig({ arms: ['baseline', 'grad_loss_0.1'], train, folds: 1 })).toThrow('invalid study field folds: got 1');
    expect(() => parseStudyConfig({ arms: ['baseline', 'grad_loss_0.1'], train, seed: 3 })).toThrow("unknown study field 'seed'");
    expect(() => parseStudyConfig({ arms: 'baseline', train })).toThrow('invalid study field arms: expected a list of arms');
    expect(() => parseStudyConfig({ arms: ['baseline', 'grad_loss_0.1'], train: { expName: 'e' } })).toThrow('training setting dataDir is required');
    expect(() => parseStudyConfig({ arms: ['baseline', { name: 'x', settings: { epochs: 0 } }], train })).toThrow('invalid training setting epochs: got 0');
    const config = parseStudyConfig({ arms: ['baseline', 'grad_loss_0.1'], train: { ...train, seed: 7 }, seeds: 3 });
    expect(config.seeds).toEqual([7, 8, 9]);
  });
});

describe('runStudy', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = tempDir('vmat-study-data-');
    await writeTinyCohort(dataDir, 6);
  });

  it('trains every arm × seed, evaluates every test case and compares the arms; a second run keeps every run', async () => {
    const logDir = tempDir('vmat-study-');
    // Two metrics keep the figures (rendered at every call) few.
    const metrics = ['gamma.3%/3mm.pass_rate_pct', 'mae_gy.body'];
    const study = { arms: ['baseline', 'grad_loss_0.1'], seeds: 2, train: { ...tiny, dataDir, expName: 'tiny', logDir }, metrics, bootstrap: { resamples: 500 } };
    const events: StudyProgress[] = [];
    const result = await runStudy(study, { onProgress: (e) => events.push(e) });
    const studyDir = join(logDir, 'tiny');
    expect(result.studyDir).toBe(studyDir);
    expect(readdirSync(join(studyDir, 'runs')).sort()).toEqual(['baseline_s42', 'baseline_s43', 'grad_loss_0.1_s42', 'grad_loss_0.1_s43']);
    expect(events.filter((e) => e.type === 'run').map((e) => (e.type === 'run' ? e.action : ''))).toEqual(['train', 'train', 'train', 'train']);

    // Every run tests the same cases; the arms differ only in the gradient loss, the seeds in the seed.
    const tests = new Set<string>();
    for (const name of readdirSync(join(studyDir, 'runs'))) {
      const runDir = join(studyDir, 'runs', name);
      const settings = JSON.parse(readFileSync(join(runDir, 'training_config.json'), 'utf8')).settings;
      expect(settings.useGradientLoss).toBe(name.startsWith('grad'));
      expect(settings.seed).toBe(name.endsWith('s42') ? 42 : 43);
      tests.add(JSON.stringify(JSON.parse(readFileSync(join(runDir, 'test_cases.json'), 'utf8')).test_cases));
    }
    expect(tests.size).toBe(1);
    const testCases = JSON.parse([...tests][0]!) as string[];
    expect(testCases.length).toBe(2);

    // The difference of the 3D gamma pass rate is the mean of arm − baseline over the runs' own evaluation files.
    const gammaKey = 'gamma.3%/3mm.pass_rate_pct';
    const value = (run: string, id: string) => flattenEvaluation(JSON.parse(readFileSync(join(studyDir, 'runs', run, 'evaluation', `${id}.json`), 'utf8')))[gammaKey]!;
    const diffs = [42, 43].flatMap((seed) => testCases.map((id) => value(`grad_loss_0.1_s${seed}`, id) - value(`baseline_s${seed}`, id)));
    const gamma = result.summary.statistics.metrics.find((m) => m.metric.name === gammaKey)!;
    expect(gamma.arms[1]!.difference!.difference).toBeCloseTo(diffs.reduce((a, b) => a + b, 0) / diffs.length, 10);
    expect(gamma.arms[1]!.difference!.pairs).toBe(4);
    expect(gamma.arms[0]!.spread.perSeed.map((s) => s.seed)).toEqual([42, 43]);
    const sentence = gamma.arms[1]!.sentence!;
    expect(sentence).toMatch(/^gradient loss 0\.1: [+−]?\d+\.\d pp gamma 3%\/3 mm, 95 % CI .* (not )?significant at n = 2 cases × 2 seeds \(p/);
    expect(result.summary.sentences).toContain(sentence);

    const records = readFileSync(join(studyDir, 'records.csv'), 'utf8').trim().split('\n');
    expect(records[0]).toBe('arm,seed,fold,case,gamma.3%/3mm.pass_rate_pct,mae_gy.body');
    expect(records.length).toBe(1 + 2 * 2 * 2);
    const html = readFileSync(join(studyDir, 'report.html'), 'utf8');
    expect(html).toContain(sentence.replaceAll('&', '&amp;'));
    expect((html.match(/<img /g) ?? []).length).toBe(result.summary.statistics.metrics.length + 1);
    expect(readFileSync(join(studyDir, 'summary.md'), 'utf8')).toContain(sentence);
    expect(JSON.parse(readFileSync(join(studyDir, 'study.json'), 'utf8')).seeds).toEqual([42, 43]);

    // Again: every run is kept, nothing is trained, the same figures come out.
    const again: StudyProgress[] = [];
    const second = await runStudy(study, { onProgress: (e) => again.push(e) });
    expect(again.filter((e) => e.type === 'run').every((e) => e.type === 'run' && e.action === 'kept')).toBe(true);
    expect(again.some((e) => e.type === 'train' || e.type === 'evaluate')).toBe(false);
    expect(second.summary.statistics).toEqual(result.summary.statistics);

    // A study that asks the runs for other settings refuses them, naming the run and the setting.
    await expect(runStudy({ ...study, train: { ...study.train, epochs: 2 } })).rejects.toThrow(/baseline_s42 was trained with other settings \(epochs 1, the study's 2\)/);

    // A run stopped part-way (no training summary, no evaluation) is trained again; the others are kept.
    const redo = join(studyDir, 'runs', 'baseline_s43');
    for (const name of ['training_summary.json', join('evaluation', 'summary.json')]) rmSync(join(redo, name));
    const third: StudyProgress[] = [];
    await runStudy(study, { onProgress: (e) => third.push(e) });
    expect(third.filter((e) => e.type === 'run').map((e) => (e.type === 'run' ? `${e.arm}_s${e.seed}:${e.action}` : ''))).toEqual([
      'baseline_s42:kept',
      'grad_loss_0.1_s42:kept',
      'baseline_s43:resume',
      'grad_loss_0.1_s43:kept',
    ]);
  });

  it('runs k-fold cross-validation from the command line: every case tested once per seed', () => {
    const logDir = tempDir('vmat-study-cli-');
    const args = ['study', '--arms', 'baseline,grad_loss_0.1', '--seeds', '1', '--folds', '2', '--data-dir', dataDir, '--exp-name', 'folds', '--log-dir', logDir,
      '--epochs', '1', '--patch-size', '16', '--base-channels', '8', '--patches-per-volume', '1', '--threads', '1', '--num-workers', '1', '--resamples', '200'];
    const result = runCli(args, { timeoutMs: 240_000 });
    expect(result.stderr).not.toContain('internal error');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^gradient loss 0\.1: .* gamma 3%\/3 mm, 95 % CI .* at n = 6 cases × 1 seed/m);
    const studyDir = join(logDir, 'folds');
    expect(readdirSync(join(studyDir, 'runs')).sort()).toEqual(['baseline_s42_f1', 'baseline_s42_f2', 'grad_loss_0.1_s42_f1', 'grad_loss_0.1_s42_f2']);
    const [header, ...records] = readFileSync(join(studyDir, 'records.csv'), 'utf8').trim().split('\n');
    expect(header).toBe('arm,seed,fold,case,gamma.3%/3mm.pass_rate_pct,gamma.2%/2mm.pass_rate_pct,gamma.3%/3mm_ptv.pass_rate_pct,mae_gy.body,mae_gy.PTV70');
    const baselineCases = records.filter((line) => line.startsWith('baseline,')).map((line) => line.split(',')[3]);
    expect(baselineCases.sort()).toEqual(['case_000', 'case_001', 'case_002', 'case_003', 'case_004', 'case_005']);
    expect(existsSync(join(studyDir, 'report.html'))).toBe(true);

    const bad = runCli(['study', '--arms', 'baseline,gradient', '--data-dir', dataDir, '--exp-name', 'x', '--log-dir', logDir]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("unknown arm 'gradient'");
  });
});
