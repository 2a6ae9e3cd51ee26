/**
 * After training several runs (`sweep`, `demo`): the comparison table, every run's figures and report, and the
 * comparison bars, from the run folders alone.
 */
import { join } from 'node:path';

import { writeFileAtomicSync } from '../io/atomic.js';
import { buildComparisonFigure, buildRunFigures, writeFigures } from '../figures/index.js';
import { compareRuns, writeComparison, type Comparison } from './compare.js';
import { reportHtml } from './html.js';
import { runPaths } from '../run/index.js';
import { readRunFolder } from './run-folder.js';

export interface PublishedRuns {
  comparison: Comparison;
  comparisonFiles: { markdown: string; csv: string; figure: string };
  reports: string[];
  figureDirs: string[];
  skipped: string[];
}

export async function publishRuns(runDirs: string[], options: { comparisonDir: string; overwrite: boolean }): Promise<PublishedRuns> {
  const runs = runDirs.map((dir) => readRunFolder(dir));
  const comparison = compareRuns(runs);
  const { markdown, csv } = writeComparison(options.comparisonDir, comparison, options.overwrite);
  const comparisonFigure = await buildComparisonFigure(runs);
  writeFigures(options.comparisonDir, [comparisonFigure]);
  const reports: string[] = [];
  const figureDirs: string[] = [];
  const skipped: string[] = [];
  for (const run of runs) {
    const { figures, skipped: notDrawn } = await buildRunFigures(run);
    const figureDir = runPaths(run.dir).figures;
    writeFigures(figureDir, [...figures, comparisonFigure]);
    figureDirs.push(figureDir);
    const report = runPaths(run.dir).report;
    writeFileAtomicSync(report, reportHtml({ run, figures: [...figures, comparisonFigure], skipped: notDrawn, comparison }));
    reports.push(report);
    skipped.push(...notDrawn.map((reason) => `${run.name}: ${reason}`));
  }
  return { comparison, comparisonFiles: { markdown, csv, figure: join(options.comparisonDir, 'comparison.png') }, reports, figureDirs, skipped };
}
