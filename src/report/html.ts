/**
 * `RUN/report.html`: one self-contained page (figures inlined as PNG data URLs, styles inline, no script, no
 * network) that a person opens from disk: configuration, reproducibility record, split, curves, evaluation tables
 * and figures.
 */
import type { NamedFigure } from '../figures/index.js';
import { VERSION } from '../version.js';
import { comparisonCells, COMPARISON_HEADER, formatDuration, type Comparison } from './compare.js';
import { headlineTestMetrics, METRIC_COLUMNS, type CaseEvaluation, type RunFolder } from './run-folder.js';

export function escapeHtml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

function formatValue(value: unknown): string {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : Number.isFinite(value) ? String(Number(value.toPrecision(6))) : String(value);
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

export function table(header: string[], rows: unknown[][], options: { numericFrom?: number; className?: string } = {}): string {
  const numericFrom = options.numericFrom ?? 1;
  const th = header.map((h, c) => `<th${c >= numericFrom ? ' class="num"' : ''}>${escapeHtml(h)}</th>`).join('');
  const body = rows
    .map((row) => `<tr>${row.map((cell, c) => `<td${c >= numericFrom ? ' class="num"' : ''}>${escapeHtml(formatValue(cell))}</td>`).join('')}</tr>`)
    .join('\n');
  // A wide table (cases.csv has a column per metric) scrolls inside the page instead of widening it.
  return `<div class="table-wrap"><table${options.className ? ` class="${options.className}"` : ''}><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table></div>`;
}

/** Nested objects as dotted keys (codeGit.commit, splitSizes.train), so each value gets its own row. */
function flatEntries(object: Record<string, unknown>, prefix = ''): [string, unknown][] {
  return Object.entries(object).flatMap(([key, value]) =>
    value && typeof value === 'object' && !Array.isArray(value) ? flatEntries(value as Record<string, unknown>, `${prefix}${key}.`) : [[`${prefix}${key}`, value] as [string, unknown]],
  );
}

function keyValueTable(object: Record<string, unknown>): string {
  return table(['setting', 'value'], flatEntries(object), { numericFrom: 2, className: 'kv' });
}

export function figureHtml(figure: NamedFigure): string {
  const { png, width, height } = figure.figure;
  // The PNG is drawn at 2×; show it at its CSS size so text matches the page.
  return `<figure id="fig-${escapeHtml(figure.name)}"><img alt="${escapeHtml(figure.caption)}" src="data:image/png;base64,${png.toString('base64')}" width="${Math.round(width / 2)}" height="${Math.round(height / 2)}"><figcaption>${escapeHtml(figure.caption)}</figcaption></figure>`;
}

const fixed = (value: number | null | undefined, digits: number) => (value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits));

function caseSection(evaluation: CaseEvaluation): string {
  const dvhRows = evaluation.dvh.flatMap((d) => {
    const keys = [...new Set([...Object.keys(d.reference), ...Object.keys(d.prediction)])];
    return keys.map((key) => [d.structure, key, fixed(d.reference[key], 3), fixed(d.prediction[key], 3), fixed(d.prediction[key] - d.reference[key], 3)]);
  });
  const passText = (pass: boolean | null) => (pass === null ? '–' : pass ? 'pass' : 'FAIL');
  const constraintRows = evaluation.constraints.map((c) => [c.name, c.limit === null ? '–' : `${formatValue(c.limit)}${c.unit ? ` ${c.unit}` : ''}`, fixed(c.reference, 3), passText(c.referencePass), fixed(c.prediction, 3), passText(c.predictionPass)]);
  return `<details><summary>${escapeHtml(evaluation.caseId)}: DVH metrics and constraints</summary>
${dvhRows.length ? table(['structure', 'metric', 'reference', 'prediction', 'prediction − reference'], dvhRows, { numericFrom: 2 }) : '<p>No DVH metrics in this evaluation.</p>'}
${constraintRows.length ? `<h4>Clinical constraints</h4>${table(['constraint', 'limit', 'reference', '', 'prediction', ''], constraintRows, { numericFrom: 2 })}` : '<p>No constraint table in this evaluation.</p>'}
</details>`;
}

export const STYLE = `
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1a1a1a; max-width: 1180px; margin: 2rem auto; padding: 0 1.5rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.25rem; border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2.2rem; }
h3 { font-size: 1.05rem; } h4 { font-size: 0.95rem; margin: 0.8rem 0 0.3rem; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
.table-wrap { overflow-x: auto; max-width: 100%; }
th, td { border-bottom: 1px solid #e2e2e2; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv td:first-child { font-family: "DejaVu Sans Mono", monospace; white-space: nowrap; }
table.kv td:last-child { word-break: break-all; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.9rem; min-width: 9rem; }
.card b { display: block; font-size: 1.25rem; } .card span { color: #555; font-size: 0.8rem; }
figure { margin: 1rem 0 1.8rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #444; max-width: 60rem; }
details { margin: 0.4rem 0; } summary { cursor: pointer; font-weight: 600; }
.ids { font-family: "DejaVu Sans Mono", monospace; font-size: 0.8rem; word-break: break-all; }
.skipped { color: #8a5a00; font-size: 0.85rem; }
`;

export interface ReportInput {
  run: RunFolder;
  figures: NamedFigure[];
  skipped: string[];
  /** The runs this one was trained alongside (sweep, demo), shown as a table with the comparison figure. */
  comparison?: Comparison;
  generatedAt?: Date;
}

export function reportHtml({ run, figures, skipped, comparison, generatedAt = new Date() }: ReportInput): string {
  const test = headlineTestMetrics(run);
  const figure = (name: string) => figures.filter((f) => f.name === name || f.name.startsWith(`${name}_`)).map(figureHtml).join('\n');
  const cards = [
    ['best validation MAE', `${fixed(run.summary.bestValMaeGy, 3)} Gy`],
    ['best epoch', `${run.summary.bestEpoch} of ${run.summary.epochsRun}`],
    ['test MAE (body)', test.maeGy === null ? 'not evaluated' : `${fixed(test.maeGy, 3)} ± ${fixed(test.maeSdGy, 3)} Gy`],
    ['gamma 3%/3 mm', test.gammaPct === null ? 'not evaluated' : `${fixed(test.gammaPct, 1)} ± ${fixed(test.gammaSdPct, 1)} %`],
    ['training time', formatDuration(run.summary.seconds)],
    ['stop reason', run.summary.stopReason],
  ]
    .map(([label, value]) => `<div class="card"><span>${escapeHtml(label)}</span><b>${escapeHtml(value)}</b></div>`)
    .join('');
  const environment = run.environment;
  const seed = run.config.seed ?? run.testCases?.seed ?? null;
  const splitRows = run.split
    ? (['train', 'val', 'test'] as const).map((part) => [part, run.split![part].length, run.split![part].join(', ')])
    : [];
  const evaluation = run.evaluation;
  const summaryRows = evaluation ? Object.entries(evaluation.summary).map(([key, { mean, sd }]) => [key, fixed(mean, 4), fixed(sd, 4)]) : [];
  const casesTable = evaluation?.casesTable
    ? table(evaluation.casesTable.header, evaluation.casesTable.rows.map((row) => row.map((cell) => (cell !== '' && Number.isFinite(Number(cell)) ? fixed(Number(cell), 3) : cell))))
    : evaluation && evaluation.cases.length > 0
      ? (() => {
          const keys = [...new Set(evaluation.cases.flatMap((c) => Object.keys(c.metrics)))];
          return table(['case', ...keys], evaluation.cases.map((c) => [c.caseId, ...keys.map((k) => fixed(c.metrics[k], 3))]));
        })()
      : '';
  const epochRows = run.metrics.map((row) => METRIC_COLUMNS.map((column) => (column === 'epoch' ? row.epoch : column === 'lr' ? row.lr.toExponential(3) : fixed(row[column], column === 'voxels_per_second' || column === 'epoch_seconds' ? 1 : 5))));
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vmat-native report: ${escapeHtml(run.name)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Training report: ${escapeHtml(run.name)}</h1>
<p class="meta">Run folder <span class="ids">${escapeHtml(run.dir)}</span>. Generated ${escapeHtml(generatedAt.toISOString())} by vmat-native ${escapeHtml(VERSION)}.</p>
<div class="cards">${cards}</div>
${skipped.length ? `<p class="skipped">Not shown: ${skipped.map(escapeHtml).join('; ')}.</p>` : ''}

${comparison ? `<h2 id="comparison">Comparison with the other runs</h2>
${table(COMPARISON_HEADER, comparison.rows.map(comparisonCells))}
<p class="meta">Δ: change against ${escapeHtml(comparison.baseline)}; test metrics are mean ± sd over the test cases.</p>
${figure('comparison')}` : ''}

<h2 id="curves">Training curves</h2>
${figure('training_curves')}
${figure('loss_components')}
<details><summary>Metrics per epoch (metrics.csv)</summary>
${table([...METRIC_COLUMNS], epochRows)}
</details>

<h2 id="evaluation">Evaluation on the test cases</h2>
${evaluation ? `<h3>Mean ± sd over ${evaluation.cases.length} test case(s) (summary.json)</h3>
${summaryRows.length ? table(['metric', 'mean', 'sd'], summaryRows) : '<p>No summary.json.</p>'}
<h3>Per case (cases.csv)</h3>
${casesTable}
<h3>DVH metrics and clinical constraints</h3>
${evaluation.cases.map(caseSection).join('\n')}` : `<p>This run has no evaluation yet: run <code>vmat-native evaluate ${escapeHtml(run.dir)}</code>.</p>`}
${figure('dose_slices')}
${figure('dvh')}
${figure('gamma')}

<h2 id="configuration">Configuration (training_config.json)</h2>
${keyValueTable(run.config)}

<h2 id="reproducibility">Reproducibility record</h2>
<p>Seed ${escapeHtml(formatValue(seed))} (split, weights, sampling, augmentation). ${run.summaryFromFile ? '' : 'No training_summary.json: the run did not finish; the summary above is derived from metrics.csv.'}</p>
${environment ? keyValueTable(environment) : '<p>No environment.json in this run folder.</p>'}

<h2 id="split">Split (split.json)</h2>
${splitRows.length ? table(['part', 'cases', 'case ids'], splitRows, { numericFrom: 3 }) : '<p>No split.json in this run folder.</p>'}
${run.testCases ? `<p>test_cases.json: ${run.testCases.testCases.length} case(s), seed ${escapeHtml(formatValue(run.testCases.seed))}; files:</p><p class="ids">${run.testCases.testFiles.map(escapeHtml).join('<br>')}</p>` : ''}
</body>
</html>
`;
}
