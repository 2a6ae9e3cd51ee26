/**
 * `RUN/report.html`: one self-contained page (figures inlined as PNG data URLs, styles inline, no script, no
 * network) that a person opens from disk: configuration, reproducibility record, split, curves, evaluation tables
 * and figures.
 */
import type { NamedFigure } from '../figures/index.js';
import { VERSION } from '../version.js';
import { comparisonCells, COMPARISON_HEADER, formatDuration, type Comparison } from './compare.js';
import { constraintCriterion, dvhMetricInfo, formatMeanSd, metricInfo } from './format.js';
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

/** A headline number over the test cases: mean ± sd, or for one case its value, saying n = 1 (it has no sd). */
function headlineCard(label: string, mean: number | null, sd: number | null, n: number, digits: number, unit: string): [string, string] {
  if (mean === null) return [label, 'not evaluated'];
  if (n === 1 || sd === null) return [`${label}, n = ${n} (no sd)`, `${fixed(mean, digits)} ${unit}`];
  return [`${label}, mean ± sd over ${n} cases`, `${fixed(mean, digits)} ± ${fixed(sd, digits)} ${unit}`];
}

const passText = (pass: boolean | null) => (pass === null ? '–' : pass ? 'pass' : 'FAIL');

/** Mean, sample sd and n of the finite values. */
function stats(values: number[]): { mean: number; sd: number; n: number } {
  const finite = values.filter((v) => Number.isFinite(v));
  const n = finite.length;
  const mean = n ? finite.reduce((a, b) => a + b, 0) / n : Number.NaN;
  const sd = n > 1 ? Math.sqrt(finite.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : Number.NaN;
  return { mean, sd, n };
}

/** A summary table cell: mean ± sd; under a heading that says n = 1 (one case in all), the value alone. */
function summaryCell(mean: number, sd: number, n: number, digits: number, cases: number): string {
  return n === 1 && cases === 1 ? fixed(mean, digits) : formatMeanSd(mean, sd, n, digits);
}

const isTarget = (structure: string) => /^(PTV|CTV|GTV)/i.test(structure);
/** The DVH metrics a physicist reads first: coverage and hot spot for targets, mean and near-maximum for organs. */
const CLINICAL_DVH = { target: ['D98', 'D95', 'D50', 'D2', 'Dmean'], organ: ['Dmean', 'D2', 'D0.03cc'] };

/** One DVH metric's rows over the cases: reference, prediction and their difference (mean ± sd), in the metric's unit. */
function dvhSummaryRow(cases: CaseEvaluation[], structure: string, metric: string): string[] | null {
  const info = dvhMetricInfo(metric);
  const pairs = cases.flatMap((c) => {
    const d = c.dvh.find((item) => item.structure === structure);
    const ref = d?.reference[metric];
    const pred = d?.prediction[metric];
    return ref !== undefined && pred !== undefined && Number.isFinite(ref) && Number.isFinite(pred) ? [[ref * info.factor, pred * info.factor]] : [];
  });
  if (pairs.length === 0) return null;
  const [ref, pred, diff] = [stats(pairs.map((p) => p[0]!)), stats(pairs.map((p) => p[1]!)), stats(pairs.map((p) => p[1]! - p[0]!))];
  const show = (s: { mean: number; sd: number; n: number }) => summaryCell(s.mean, s.sd, s.n, info.digits, cases.length);
  return [structure, info.label, show(ref), show(pred), show(diff), info.unit];
}

/** The evaluation summary: dose error and gamma, DVH metrics, constraints, each a table of mean ± sd with units. */
function summarySection(evaluation: NonNullable<RunFolder['evaluation']>): string {
  const n = evaluation.cases.length;
  const rows = Object.entries(evaluation.summary)
    .map(([key, value]) => ({ key, info: metricInfo(key), ...value }))
    .filter((row) => row.info.group === 'Dose error' || row.info.group === 'Gamma' || row.info.group === 'OpenKBP');
  const errorRows = rows.map((row) => [row.info.label, summaryCell(row.mean * row.info.factor, row.sd * row.info.factor, row.n, row.info.digits, n), row.info.unit]);
  const structures = [...new Set(evaluation.cases.flatMap((c) => c.dvh.map((d) => d.structure)))];
  const allMetrics = [...new Set(evaluation.cases.flatMap((c) => c.dvh.flatMap((d) => Object.keys(d.reference))))];
  const clinical = structures.flatMap((structure) => (isTarget(structure) ? CLINICAL_DVH.target : CLINICAL_DVH.organ).map((metric) => dvhSummaryRow(evaluation.cases, structure, metric))).filter((row): row is string[] => row !== null);
  const every = structures.flatMap((structure) => allMetrics.map((metric) => dvhSummaryRow(evaluation.cases, structure, metric))).filter((row): row is string[] => row !== null);
  const dvhHeader = ['structure', 'metric', 'reference', 'prediction', 'prediction − reference', 'unit'];
  const constraintRows = new Map<string, { criterion: ReturnType<typeof constraintCriterion>; ref: number[]; pred: number[]; refPass: number; predPass: number; judged: number }>();
  for (const c of evaluation.cases) {
    for (const row of c.constraints) {
      const key = `${row.structure}\u0000${row.name}`;
      if (!constraintRows.has(key)) constraintRows.set(key, { criterion: constraintCriterion(row), ref: [], pred: [], refPass: 0, predPass: 0, judged: 0 });
      const item = constraintRows.get(key)!;
      if (row.reference !== null) item.ref.push(row.reference);
      if (row.prediction !== null) item.pred.push(row.prediction);
      if (row.referencePass !== null && row.predictionPass !== null) {
        item.judged++;
        if (row.referencePass) item.refPass++;
        if (row.predictionPass) item.predPass++;
      }
    }
  }
  const factor = (unit: string) => (unit === '%' ? 100 : 1);
  const constraintTableRows = [...constraintRows.values()].map(({ criterion, ref, pred, refPass, predPass, judged }) => {
    const [r, p] = [stats(ref.map((v) => v * factor(criterion.unit))), stats(pred.map((v) => v * factor(criterion.unit)))];
    const digits = criterion.unit === 'Gy' ? 2 : 1;
    return [
      criterion.structure,
      criterion.text,
      `${summaryCell(r.mean, r.sd, r.n, digits, n)} ${r.n ? criterion.unit : ''}`.trim(),
      `${summaryCell(p.mean, p.sd, p.n, digits, n)} ${p.n ? criterion.unit : ''}`.trim(),
      judged ? `${refPass} of ${judged}` : 'not judged',
      judged ? `${predPass} of ${judged}` : 'not judged',
    ];
  });
  return `<h3>Mean ± sd over ${n} test case${n === 1 ? '' : 's'}${n === 1 ? ' (n = 1: no sd)' : ''}</h3>
${errorRows.length ? table(['metric', 'mean ± sd', 'unit'], errorRows, { className: 'summary' }) : '<p>No summary.json.</p>'}
<h4>DVH metrics (clinical subset)</h4>
${clinical.length ? table(dvhHeader, clinical, { numericFrom: 2, className: 'summary' }) : '<p>No DVH metrics in this evaluation.</p>'}
${every.length > clinical.length ? `<details><summary>All ${every.length} DVH metrics (V-values in % of the structure's volume)</summary>${table(dvhHeader, every, { numericFrom: 2 })}</details>` : ''}
<h4>Clinical constraints</h4>
${constraintTableRows.length ? table(['structure', 'limit', 'reference', 'prediction', 'reference meets it', 'prediction meets it'], constraintTableRows, { numericFrom: 2, className: 'summary' }) : '<p>No constraint table in this evaluation.</p>'}`;
}

/** The per-case table: a few clinical columns, every metric of cases.csv behind a toggle (one row per metric). */
function perCaseSection(evaluation: NonNullable<RunFolder['evaluation']>): string {
  const cases = evaluation.cases;
  if (cases.length === 0) return '<p>No case evaluations (evaluation/&lt;case&gt;.json).</p>';
  // The PTVs by prescription, highest first (PTV70 before PTV56).
  const level = (key: string) => Number(/(\d+(?:\.\d+)?)/.exec(key)?.[1] ?? 0);
  const ptv = [...new Set(cases.flatMap((c) => Object.keys(c.metrics)))].filter((key) => /^mae_gy\.PTV/i.test(key)).sort((a, b) => level(b) - level(a) || a.localeCompare(b));
  const keys = ['mae_gy.body', ...ptv, 'gamma.3%/3mm.pass_rate_pct', 'gamma.2%/2mm.pass_rate_pct', 'gamma.3%/3mm_ptv.pass_rate_pct'];
  const header = ['case', ...keys.map((key) => `${metricInfo(key).label} (${metricInfo(key).unit})`), 'constraints met: reference', 'prediction'];
  const rows = cases.map((c) => {
    const judged = c.constraints.filter((row) => row.referencePass !== null && row.predictionPass !== null);
    const met = (side: 'referencePass' | 'predictionPass') => (judged.length ? `${judged.filter((row) => row[side]).length} of ${judged.length}` : '–');
    return [c.caseId, ...keys.map((key) => fixed(c.metrics[key], metricInfo(key).digits)), met('referencePass'), met('predictionPass')];
  });
  // Every metric: cases.csv's columns as rows (readable labels, V in %), the cases as columns.
  const csv = evaluation.casesTable;
  let all = '';
  if (csv && csv.header[0] === 'case_id') {
    const columns = csv.header.slice(1);
    const body = columns.map((key, c) => {
      const info = metricInfo(key);
      return [info.label, info.unit, ...csv.rows.map((row) => {
        const cell = row[c + 1] ?? '';
        return cell !== '' && Number.isFinite(Number(cell)) ? fixed(Number(cell) * info.factor, info.digits) : cell || '–';
      })];
    });
    all = `<details class="all-metrics"><summary>All ${columns.length} metrics per case (cases.csv, one row per metric)</summary>
${table(['metric', 'unit', ...csv.rows.map((row) => row[0] ?? '')], body, { numericFrom: 2 })}
</details>`;
  }
  return `${table(header, rows, { className: 'cases' })}\n${all}`;
}

function caseSection(evaluation: CaseEvaluation): string {
  const dvhRows = evaluation.dvh.flatMap((d) => {
    const keys = [...new Set([...Object.keys(d.reference), ...Object.keys(d.prediction)])];
    return keys.map((key) => {
      const info = dvhMetricInfo(key);
      const [ref, pred] = [d.reference[key], d.prediction[key]];
      return [d.structure, info.label, fixed(ref === undefined ? null : ref * info.factor, info.digits), fixed(pred === undefined ? null : pred * info.factor, info.digits), fixed(ref === undefined || pred === undefined ? null : (pred - ref) * info.factor, info.digits), info.unit];
    });
  });
  const constraintRows = evaluation.constraints.map((c) => {
    const criterion = constraintCriterion(c);
    return [criterion.structure, criterion.text, criterion.show(c.reference), passText(c.referencePass), criterion.show(c.prediction), passText(c.predictionPass), c.note ?? ''];
  });
  return `<details><summary>${escapeHtml(evaluation.caseId)}: DVH metrics and constraints</summary>
${dvhRows.length ? table(['structure', 'metric', 'reference', 'prediction', 'prediction − reference', 'unit'], dvhRows, { numericFrom: 2 }) : '<p>No DVH metrics in this evaluation.</p>'}
${constraintRows.length ? `<h4>Clinical constraints</h4>${table(['structure', 'limit', 'reference', '', 'prediction', '', 'note'], constraintRows, { numericFrom: 2 })}` : '<p>No constraint table in this evaluation.</p>'}
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
    headlineCard('test MAE (body)', test.maeGy, test.maeSdGy, test.n, 3, 'Gy'),
    headlineCard('gamma 3%/3 mm', test.gammaPct, test.gammaSdPct, test.n, 1, '%'),
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
${evaluation ? `${summarySection(evaluation)}
<h3>Per case</h3>
${perCaseSection(evaluation)}
<h3>DVH metrics and clinical constraints per case</h3>
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
