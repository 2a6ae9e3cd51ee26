/**
 * `vmat-native demo`: the whole job on the built-in synthetic cohort, end to end: synth → a baseline run and a
 * gradient-loss run → evaluation of the test cases → comparison → figures → reports, then where to look.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import type { TrainConfigInput } from '../config/schema.js';
import { synthesizeCohort } from '../data/synth.js';
import { abortError, invalidInput } from '../errors.js';
import { evaluateRun, evaluationProgressLine } from '../eval/run.js';
import { comparisonText } from '../report/compare.js';
import { publishRuns, type PublishedRuns } from '../report/publish.js';
import { Trainer, type TrainEvent } from '../train/trainer.js';

export interface DemoSettings {
  cases: number;
  shape: [number, number, number];
  spacingMm: [number, number, number];
  /** Training settings shared by both runs (the rest are the schema's defaults, i.e. the seed's). */
  train: Partial<TrainConfigInput>;
  gradientLossWeight: number;
}

/**
 * `--quick` fits a 2-core CPU in a few minutes: a small cohort at coarse spacing (the same anatomy in fewer voxels),
 * a narrow network, 32³ patches and few epochs. Without it: the seed's full-size settings (a GPU's work).
 */
export const DEMO_SETTINGS: { quick: DemoSettings; full: DemoSettings } = {
  quick: {
    cases: 12,
    shape: [32, 64, 64],
    spacingMm: [5, 4, 4],
    train: { epochs: 30, patchSize: 32, baseChannels: 8, patchesPerVolume: 2, testSplit: 0.2, lr: 2e-3, minLr: 1e-5, swBatch: 4 },
    gradientLossWeight: 0.1,
  },
  full: {
    cases: 23,
    shape: [96, 128, 128],
    spacingMm: [2.5, 2, 2],
    train: { epochs: 200 },
    gradientLossWeight: 0.1,
  },
};

export interface DemoOptions {
  out: string;
  quick: boolean;
  overwrite: boolean;
  /** One line of progress (stderr in the CLI). */
  log: (line: string) => void;
  signal?: AbortSignal;
}

export interface DemoResult {
  out: string;
  dataDir: string;
  runDirs: string[];
  published: PublishedRuns;
  stageSeconds: Record<string, number>;
  seconds: number;
}

export const DEMO_RUN_NAMES = ['baseline', 'grad_loss_0.1'] as const;

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const settings = options.quick ? DEMO_SETTINGS.quick : DEMO_SETTINGS.full;
  const out = resolve(options.out);
  const dataDir = join(out, 'data');
  const logDir = join(out, 'runs');
  const runDirs = DEMO_RUN_NAMES.map((name) => join(logDir, name));
  if (!options.overwrite) {
    const existing = [...runDirs, join(out, 'comparison.md'), join(out, 'comparison.csv')].filter((path) => existsSync(path));
    if (existing.length > 0) throw invalidInput(`${existing[0]} already exists: set overwrite to replace the demo's runs, or choose another out folder`, { settings: ['overwrite', 'out'] });
  }
  const started = performance.now();
  const stageSeconds: Record<string, number> = {};
  const stage = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const result = await work();
    stageSeconds[name] = (performance.now() - t0) / 1000;
    return result;
  };

  options.log(`[1/5] synthetic cohort: ${settings.cases} cases of ${settings.shape.join('×')} voxels (${settings.spacingMm.join(' × ')} mm) into ${dataDir}`);
  await stage('synth', () =>
    synthesizeCohort(dataDir, {
      cases: settings.cases,
      shape: settings.shape,
      spacingMm: settings.spacingMm,
      overwrite: options.overwrite,
      signal: options.signal,
      onProgress: (event) => options.log(`      ${event.caseId}  PTV70 D95 ${event.ptv70D95.toFixed(1)} Gy, Dmax ${event.ptv70Dmax.toFixed(1)} Gy  (${event.done}/${event.cases})`),
    }),
  );

  const trainer = new Trainer();
  for (const [index, name] of DEMO_RUN_NAMES.entries()) {
    const gradient = name !== 'baseline';
    options.log(`[${2 + index}/5] training ${name}${gradient ? ` (gradient loss, weight ${settings.gradientLossWeight})` : ' (MSE only)'}`);
    const result = await stage(`train ${name}`, () =>
      trainer.fit(
        { ...settings.train, dataDir, logDir, expName: name, useGradientLoss: gradient, gradientLossWeight: settings.gradientLossWeight },
        { overwrite: options.overwrite, onProgress: (event: TrainEvent) => logEpoch(name, event, options.log) },
      ),
    );
    if (result.stopReason === 'aborted') throw abortError(`the demo was interrupted while training ${name}`, options.signal);
  }

  options.log('[4/5] evaluating the test cases of both runs (prediction, MAE, DVH, constraints, gamma)');
  for (const dir of runDirs) {
    await stage(`evaluate ${dir}`, () =>
      evaluateRun(dir, { device: 'auto', overwrite: options.overwrite, onProgress: (event) => options.log(`      ${evaluationProgressLine(event)}`) }),
    );
  }

  options.log('[5/5] comparison, figures and reports');
  const published = await stage('publish', () => publishRuns(runDirs, { comparisonDir: out, overwrite: options.overwrite }));
  return { out, dataDir, runDirs, published, stageSeconds, seconds: (performance.now() - started) / 1000 };
}

function logEpoch(name: string, event: TrainEvent, log: (line: string) => void): void {
  if (event.type !== 'epoch') return;
  const ptv = event.valMaePtv70Gy === null ? '' : `, PTV70 ${event.valMaePtv70Gy.toFixed(2)} Gy`;
  log(`      ${name} epoch ${event.epoch}/${event.epochs}: loss ${event.trainLoss.toFixed(4)}, val MAE ${event.valMaeGy.toFixed(2)} Gy${ptv} (${event.epochSeconds.toFixed(1)} s)${event.improved ? ' best' : ''}`);
}

/** The closing summary: the table and where to look. */
export function demoSummary(result: DemoResult): string {
  const { published } = result;
  return [
    '',
    comparisonText(published.comparison),
    '',
    `Done in ${result.seconds.toFixed(0)} s. Where to look:`,
    `  reports      ${published.reports.join('\n               ')}`,
    `  figures      ${published.figureDirs.join('\n               ')}`,
    `  comparison   ${published.comparisonFiles.markdown}, ${published.comparisonFiles.csv}, ${published.comparisonFiles.figure}`,
    `  data         ${result.dataDir} (the synthetic cohort)`,
    `Open a report in a browser (it is one self-contained file), e.g. file://${published.reports[published.reports.length - 1]}`,
    '',
  ].join('\n');
}
