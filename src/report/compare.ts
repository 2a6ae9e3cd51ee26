/** The side-by-side comparison of runs (`vmat-native compare`): computed from the run folders' files only. */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { invalidInput } from '../errors.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import { headlineTestMetrics, type RunFolder } from './run-folder.js';

export interface ComparisonRow {
  run: string;
  dir: string;
  valMaeGy: number;
  testMaeGy: number | null;
  testMaeSdGy: number | null;
  gammaPassPct: number | null;
  gammaPassSdPct: number | null;
  trainingSeconds: number;
  bestEpoch: number;
  epochsRun: number;
  stopReason: string;
  /** Relative change against the first run, in percent (null for the first run or where a value is missing). */
  changePct: { valMae: number | null; testMae: number | null; gammaPass: number | null };
}

export interface Comparison {
  baseline: string;
  rows: ComparisonRow[];
}

function changePct(value: number | null, reference: number | null): number | null {
  if (value === null || reference === null || !Number.isFinite(value) || !Number.isFinite(reference) || reference === 0) return null;
  return (100 * (value - reference)) / reference;
}

export function compareRuns(runs: RunFolder[]): Comparison {
  const base = runs[0];
  const baseTest = headlineTestMetrics(base);
  const rows = runs.map((run): ComparisonRow => {
    const test = headlineTestMetrics(run);
    return {
      run: run.name,
      dir: run.dir,
      valMaeGy: run.summary.bestValMaeGy,
      testMaeGy: test.maeGy,
      testMaeSdGy: test.maeSdGy,
      gammaPassPct: test.gammaPct,
      gammaPassSdPct: test.gammaSdPct,
      trainingSeconds: run.summary.seconds,
      bestEpoch: run.summary.bestEpoch,
      epochsRun: run.summary.epochsRun,
      stopReason: run.summary.stopReason,
      changePct:
        run === base
          ? { valMae: null, testMae: null, gammaPass: null }
          : {
              valMae: changePct(run.summary.bestValMaeGy, base.summary.bestValMaeGy),
              testMae: changePct(test.maeGy, baseTest.maeGy),
              gammaPass: changePct(test.gammaPct, baseTest.gammaPct),
            },
    };
  });
  return { baseline: base.name, rows };
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '–';
  if (seconds < 60) return `${seconds.toFixed(0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

const fixed = (value: number | null, digits: number) => (value === null || !Number.isFinite(value) ? '–' : value.toFixed(digits));
const signed = (value: number | null) => (value === null ? '–' : `${value >= 0 ? '+' : ''}${value.toFixed(1)}%`);
const withSd = (mean: number | null, sd: number | null, digits: number) =>
  mean === null ? '–' : sd === null || !Number.isFinite(sd) ? fixed(mean, digits) : `${fixed(mean, digits)} ± ${fixed(sd, digits)}`;

export const COMPARISON_HEADER = ['run', 'val MAE (Gy)', 'Δ val', 'test MAE (Gy)', 'Δ test', 'gamma 3%/3 mm (%)', 'Δ gamma', 'training time', 'best epoch', 'epochs'];

export function comparisonCells(row: ComparisonRow): string[] {
  return [
    row.run,
    fixed(row.valMaeGy, 3),
    signed(row.changePct.valMae),
    withSd(row.testMaeGy, row.testMaeSdGy, 3),
    signed(row.changePct.testMae),
    withSd(row.gammaPassPct, row.gammaPassSdPct, 1),
    signed(row.changePct.gammaPass),
    formatDuration(row.trainingSeconds),
    String(row.bestEpoch),
    String(row.epochsRun),
  ];
}

/** A plain-text table for the terminal. */
export function comparisonText(comparison: Comparison): string {
  const table = [COMPARISON_HEADER, ...comparison.rows.map(comparisonCells)];
  const widths = COMPARISON_HEADER.map((_, c) => Math.max(...table.map((row) => row[c].length)));
  const line = (row: string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
  return [line(COMPARISON_HEADER), widths.map((w) => '-'.repeat(w)).join('  '), ...table.slice(1).map(line), '', `Δ: change against ${comparison.baseline}; test metrics are mean ± sd over the test cases.`].join('\n');
}

export function comparisonMarkdown(comparison: Comparison): string {
  const rows = comparison.rows.map(comparisonCells);
  return [
    `| ${COMPARISON_HEADER.join(' | ')} |`,
    `|${COMPARISON_HEADER.map((_, c) => (c === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((row) => `| ${row.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`),
    '',
    `Δ: change against ${comparison.baseline}; test metrics are mean ± sd over the test cases.`,
    '',
  ].join('\n');
}

const CSV_HEADER = ['run', 'val_mae_gy', 'val_mae_change_pct', 'test_mae_gy', 'test_mae_sd_gy', 'test_mae_change_pct', 'gamma_3pct_3mm_pass_pct', 'gamma_pass_sd_pct', 'gamma_pass_change_pct', 'training_seconds', 'best_epoch', 'epochs_run', 'stop_reason', 'run_dir'];

function csvCell(value: string | number | null): string {
  if (value === null) return '';
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function comparisonCsv(comparison: Comparison): string {
  const rows = comparison.rows.map((row) =>
    [row.run, row.valMaeGy, row.changePct.valMae, row.testMaeGy, row.testMaeSdGy, row.changePct.testMae, row.gammaPassPct, row.gammaPassSdPct, row.changePct.gammaPass, row.trainingSeconds, row.bestEpoch, row.epochsRun, row.stopReason, row.dir]
      .map(csvCell)
      .join(','),
  );
  return `${[CSV_HEADER.join(','), ...rows].join('\n')}\n`;
}

/** Writes comparison.md and comparison.csv into `dir`; an existing file is an error unless `overwrite`. */
export function writeComparison(dir: string, comparison: Comparison, overwrite: boolean): { markdown: string; csv: string } {
  const markdown = join(dir, 'comparison.md');
  const csv = join(dir, 'comparison.csv');
  if (!overwrite) {
    for (const path of [markdown, csv]) {
      if (existsSync(path)) throw invalidInput(`${path} already exists; set overwrite to replace it, or choose another folder`, { settings: ['overwrite'] });
    }
  }
  mkdirSync(dir, { recursive: true });
  writeFileAtomicSync(markdown, comparisonMarkdown(comparison));
  writeFileAtomicSync(csv, comparisonCsv(comparison));
  return { markdown, csv };
}
