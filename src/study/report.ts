/**
 * The study's report.html: the sentences, a table per metric, and per metric one figure (each seed's mean per arm
 * with the mean ± sd over seeds; each later arm's paired difference with its bootstrap interval), plus the paired
 * differences per test case of the first metric. Self-contained as the run report is (src/report/html.ts: the same
 * styles, tables and inlined figures; charts drawn by src/figures/render.ts).
 */
import type { TopLevelSpec } from 'vega-lite';

import type { NamedFigure } from '../figures/index.js';
import { renderVegaLite } from '../figures/render.js';
import { escapeHtml, figureHtml, STYLE, table } from '../report/html.js';
import type { StudySummary } from './run.js';
import type { StudyRecord, StudyStatistics } from './stats.js';

type MetricStatistics = StudyStatistics['metrics'][number];

const unitText = (unit: string) => (unit === 'pp' ? '%' : unit);

/** Per-seed means per arm (points), the mean over seeds (tick) ± sd (rule); beside it the differences with their CIs. */
export function metricSpec(m: MetricStatistics, confidence: number): TopLevelSpec {
  const arms = m.arms.map((a) => a.arm);
  const unit = unitText(m.metric.unit);
  const seeds = m.arms.flatMap((a) => a.spread.perSeed.map((s) => ({ arm: a.arm, seed: String(s.seed), value: s.mean })));
  const centres = m.arms.map((a) => ({ arm: a.arm, mean: a.spread.mean, low: a.spread.mean - (a.spread.sd ?? 0), high: a.spread.mean + (a.spread.sd ?? 0) }));
  const diffs = m.arms.flatMap((a) =>
    a.difference ? [{ arm: a.arm, difference: a.difference.difference, low: a.difference.ci?.[0] ?? a.difference.difference, high: a.difference.ci?.[1] ?? a.difference.difference }] : [],
  );
  const armAxis = { field: 'arm', type: 'nominal', title: null, sort: arms, axis: { labelAngle: -20, labelLimit: 180 } } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: m.metric.label, subtitle: `left: each seed's mean over the test cases, and the mean ± sd over seeds; right: paired difference against ${arms[0]}, ${Math.round(confidence * 100)} % bootstrap CI over cases and seeds`, subtitleFontSize: 11, subtitleColor: '#444' },
    hconcat: [
      {
        width: Math.max(160, 70 * arms.length),
        height: 220,
        layer: [
          { data: { values: centres }, mark: { type: 'rule', color: '#333' }, encoding: { x: armAxis, y: { field: 'low', type: 'quantitative' }, y2: { field: 'high' } } },
          { data: { values: centres }, mark: { type: 'tick', color: '#111', thickness: 2, size: 26 }, encoding: { x: armAxis, y: { field: 'mean', type: 'quantitative' } } },
          {
            data: { values: seeds },
            mark: { type: 'point', filled: true, size: 55, opacity: 0.85 },
            encoding: {
              x: armAxis,
              xOffset: { field: 'seed', type: 'nominal' },
              y: { field: 'value', type: 'quantitative', title: `${m.metric.label}${unit ? ` (${unit})` : ''}`, scale: { zero: false, padding: 10 } },
              color: { field: 'seed', type: 'nominal', title: 'seed', scale: { scheme: 'tableau10' } },
            },
          },
        ],
      },
      {
        width: 260,
        height: Math.max(60, 40 * diffs.length),
        layer: [
          { data: { values: [{ zero: 0 }] }, mark: { type: 'rule', strokeDash: [4, 3], color: '#777' }, encoding: { x: { field: 'zero', type: 'quantitative' } } },
          {
            data: { values: diffs },
            mark: { type: 'rule', strokeWidth: 2, color: '#1f77b4' },
            encoding: {
              y: { field: 'arm', type: 'nominal', title: null, sort: arms },
              x: { field: 'low', type: 'quantitative', title: `Δ vs ${arms[0]}${m.metric.unit ? ` (${m.metric.unit})` : ''}` },
              x2: { field: 'high' },
            },
          },
          { data: { values: diffs }, mark: { type: 'point', filled: true, size: 80, color: '#1f77b4' }, encoding: { y: { field: 'arm', type: 'nominal', sort: arms }, x: { field: 'difference', type: 'quantitative' } } },
        ],
      },
    ],
    resolve: { scale: { color: 'independent', y: 'independent' } },
  } as TopLevelSpec;
}

/** The paired difference per test case and seed of one metric (arm − first arm), one panel per later arm. */
export function perCaseSpec(m: MetricStatistics, records: readonly StudyRecord[]): TopLevelSpec {
  const [baseline, ...others] = m.arms.map((a) => a.arm);
  const base = new Map(records.filter((r) => r.arm === baseline && r.metric === m.metric.name).map((r) => [`${r.seed}\u0000${r.caseId}`, r.value]));
  const values = records
    .filter((r) => others.includes(r.arm) && r.metric === m.metric.name && base.has(`${r.seed}\u0000${r.caseId}`))
    .map((r) => ({ arm: r.arm, case: r.caseId, seed: String(r.seed), difference: r.value - base.get(`${r.seed}\u0000${r.caseId}`)! }));
  const cases = [...new Set(values.map((v) => v.case))].sort();
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${m.metric.label}: paired difference per test case`, subtitle: `arm − ${baseline} for each case and seed; a hard case is hard in every seed`, subtitleFontSize: 11, subtitleColor: '#444' },
    data: { values },
    facet: { row: { field: 'arm', type: 'nominal', title: null, sort: others } },
    spec: {
      width: Math.max(240, 28 * cases.length),
      height: 160,
      layer: [
        { mark: { type: 'rule', color: '#777', strokeDash: [4, 3] }, encoding: { y: { datum: 0 } } },
        {
          mark: { type: 'point', filled: true, size: 50 },
          encoding: {
            x: { field: 'case', type: 'nominal', title: 'test case', sort: cases, axis: { labelAngle: -40 } },
            y: { field: 'difference', type: 'quantitative', title: `Δ${m.metric.unit ? ` (${m.metric.unit})` : ''}` },
            color: { field: 'seed', type: 'nominal', title: 'seed', scale: { scheme: 'tableau10' } },
          },
        },
      ],
    },
  } as TopLevelSpec;
}

export async function studyFigures(summary: StudySummary, records: readonly StudyRecord[]): Promise<NamedFigure[]> {
  const figures: NamedFigure[] = [];
  for (const m of summary.statistics.metrics) {
    figures.push({
      name: `study_${m.metric.name.replace(/[^A-Za-z0-9]+/g, '_')}`,
      caption: `${m.metric.label}: each seed's mean over its test cases per arm, with the mean ± sd over seeds; and each arm's paired difference against ${summary.statistics.arms[0]} with its bootstrap interval.`,
      figure: await renderVegaLite(metricSpec(m, summary.study.bootstrap.confidence)),
    });
  }
  const first = summary.statistics.metrics[0];
  if (first && first.arms.length > 1) {
    figures.push({ name: 'study_per_case', caption: `${first.metric.label}: the paired difference of every test case and seed.`, figure: await renderVegaLite(perCaseSpec(first, records)) });
  }
  return figures;
}

const fixed = (value: number | null | undefined, digits: number) => (value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits));

export async function studyReportHtml(summary: StudySummary, records: readonly StudyRecord[]): Promise<string> {
  const figures = await studyFigures(summary, records);
  const { statistics, design, machine } = summary;
  const confidence = Math.round(summary.study.bootstrap.confidence * 100);
  const metricTables = statistics.metrics
    .map((m, i) => {
      const d = m.metric.decimals ?? 1;
      const rows = m.arms.map((a) => [
        a.arm,
        fixed(a.spread.mean, d + 1),
        fixed(a.spread.sd, d + 1),
        `${fixed(a.spread.min, d)} – ${fixed(a.spread.max, d)}`,
        a.difference ? fixed(a.difference.difference, d + 1) : '',
        a.difference?.ci ? `${fixed(a.difference.ci[0], d + 1)} to ${fixed(a.difference.ci[1], d + 1)}` : '',
        a.difference?.p != null ? fixed(a.difference.p, 3) : '',
      ]);
      const unit = unitText(m.metric.unit);
      return `<h3>${escapeHtml(m.metric.label)}${unit ? ` (${escapeHtml(unit)})` : ''}</h3>
${table(['arm', 'mean over seeds', 'sd over seeds', 'seed means, min – max', `Δ vs ${statistics.arms[0]}`, `${confidence} % CI`, 'p'], rows)}
${figureHtml(figures[i]!)}`;
    })
    .join('\n');
  const runRows = summary.runs.map((r) => [r.runDir, r.arm, r.seed, r.fold ?? '–', r.bestEpoch, fixed(r.bestValMaeGy, 3), r.epochsRun, r.stopReason, fixed(r.trainingSeconds, 0), r.testCases.join(', ')]);
  const armRows = summary.study.arms.map((a) => [a.name, a.label, JSON.stringify(a.settings)]);
  const perCase = figures.find((f) => f.name === 'study_per_case');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vmat-native study: ${escapeHtml(statistics.arms.join(' vs '))}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Study: ${escapeHtml(statistics.arms.join(' vs '))}</h1>
<p class="meta">${design.arms} arms × ${design.seeds} seeds${design.folds > 0 ? ` × ${design.folds} folds` : ''}, ${design.cases} test cases. ${escapeHtml(machine.cpu)} (${machine.cores} cores), ${escapeHtml(machine.device)}, ${escapeHtml(machine.os)}. Generated ${escapeHtml(summary.createdAt)} by vmat-native ${escapeHtml(summary.vmatNativeVersion)}.</p>

<h2 id="answer">The answer</h2>
<ul>${summary.sentences.map((s) => `<li>${escapeHtml(s)}</li>`).join('\n')}</ul>
<p class="meta">Each difference is the mean over the (seed, test case) pairs of arm − ${escapeHtml(statistics.arms[0]!)}; the interval is a percentile bootstrap that resamples cases and seeds (both, independently), so a case counts once however many seeds test it. With fewer than about ten test cases read it as a description of these cases, not a guarantee.</p>
${summary.skippedMetrics.length ? `<p class="skipped">Not compared (no test case has them): ${summary.skippedMetrics.map(escapeHtml).join(', ')}.</p>` : ''}

<h2 id="metrics">Per metric</h2>
${metricTables}
${perCase ? `<h2 id="cases">Per test case</h2>\n${figureHtml(perCase)}` : ''}

<h2 id="arms">Arms</h2>
${table(['arm', 'label', 'settings changed'], armRows, { numericFrom: 3 })}

<h2 id="runs">Runs</h2>
${table(['run folder', 'arm', 'seed', 'fold', 'best epoch', 'best val MAE (Gy)', 'epochs', 'stop', 'training s', 'test cases'], runRows, { numericFrom: 2 })}

<h2 id="settings">Shared training settings</h2>
${table(['setting', 'value'], Object.entries(summary.study.train).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]), { numericFrom: 2, className: 'kv' })}
</body>
</html>
`;
}
