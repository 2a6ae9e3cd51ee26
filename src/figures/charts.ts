/** The chart figures of training.md (1, 2, 4, 5) as Vega-Lite specifications, built from run folders. */
import type { TopLevelSpec } from 'vega-lite';

import { headlineTestMetrics, type CaseEvaluation, type RunFolder } from '../report/run-folder.js';

const finite = (value: number) => Number.isFinite(value);

/** (1) Training and validation loss, and validation MAE with the best epoch marked. */
export function trainingCurvesSpec(run: RunFolder): TopLevelSpec {
  const losses = run.metrics.flatMap((row) => [
    ...(finite(row.train_loss) ? [{ epoch: row.epoch, value: row.train_loss, series: 'training loss' }] : []),
    ...(finite(row.val_loss) ? [{ epoch: row.epoch, value: row.val_loss, series: 'validation loss' }] : []),
  ]);
  const maes = run.metrics.flatMap((row) => [
    ...(finite(row.val_mae_gy) ? [{ epoch: row.epoch, value: row.val_mae_gy, series: 'body' }] : []),
    ...(finite(row.val_mae_ptv70_gy) ? [{ epoch: row.epoch, value: row.val_mae_ptv70_gy, series: 'PTV70' }] : []),
  ]);
  const best = [{ epoch: run.summary.bestEpoch, value: run.summary.bestValMaeGy, label: `best epoch ${run.summary.bestEpoch}: ${run.summary.bestValMaeGy.toFixed(2)} Gy` }];
  const epochAxis = { field: 'epoch', type: 'quantitative', title: 'Epoch', axis: { tickMinStep: 1, format: 'd' } } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `Training curves: ${run.name}` },
    hconcat: [
      {
        width: 360,
        height: 240,
        data: { values: losses },
        mark: { type: 'line', point: losses.length <= 60 },
        encoding: {
          x: epochAxis,
          y: { field: 'value', type: 'quantitative', title: 'Loss (normalised dose units)', scale: { zero: false, padding: 8 } },
          color: { field: 'series', type: 'nominal', title: null, scale: { domain: ['training loss', 'validation loss'], range: ['#1f77b4', '#d62728'] }, legend: { orient: 'bottom', direction: 'horizontal', titleOrient: 'left' } },
        },
      },
      {
        width: 360,
        height: 240,
        layer: [
          {
            data: { values: maes },
            mark: { type: 'line', point: maes.length <= 120 },
            encoding: {
              x: epochAxis,
              y: { field: 'value', type: 'quantitative', title: 'Validation MAE (Gy)', scale: { zero: false, padding: 8 } },
              color: { field: 'series', type: 'nominal', title: 'region', scale: { domain: ['body', 'PTV70'], range: ['#2ca02c', '#9467bd'] }, legend: { orient: 'bottom', direction: 'horizontal', titleOrient: 'left' } },
            },
          },
          {
            data: { values: best },
            mark: { type: 'rule', strokeDash: [4, 3], color: '#555' },
            encoding: { x: { field: 'epoch', type: 'quantitative' } },
          },
          {
            data: { values: best },
            mark: { type: 'point', shape: 'diamond', size: 120, filled: true, color: '#111' },
            encoding: { x: { field: 'epoch', type: 'quantitative' }, y: { field: 'value', type: 'quantitative' } },
          },
          {
            data: { values: best },
            mark: { type: 'text', align: 'center', baseline: 'bottom', dy: -4, fontSize: 12, color: '#111' },
            encoding: { x: { field: 'epoch', type: 'quantitative' }, y: { value: 0 }, text: { field: 'label' } },
          },
        ],
      },
    ],
    resolve: { scale: { color: 'independent' } },
  } as TopLevelSpec;
}

/** How the total is made of the (unweighted) components, with the run's weights. */
function lossFormula(run: RunFolder): string {
  const weight = (key: string) => (typeof run.config[key] === 'number' ? String(run.config[key]) : 'w');
  const gradient = run.config.useGradientLoss === false ? '' : ` + ${weight('gradientLossWeight')} · gradient`;
  const later = (
    [
      ['useVggLoss', 'vggLossWeight', 'VGG'],
      ['useStructureWeighted', 'structureWeightedWeight', 'structure-weighted'],
      ['useAsymmetricPtv', 'asymmetricPtvWeight', 'asymmetric PTV'],
      ['useDvhLoss', 'dvhLossWeight', 'DVH'],
    ] as const
  )
    .filter(([on]) => run.config[on] === true)
    .map(([, w, name]) => ` + ${weight(w)} · ${name}`)
    .join('');
  return `total = MSE${gradient} + ${weight('negativePenaltyWeight')} · negative-dose penalty${later} (components unweighted)`;
}

/** (4) Loss components per epoch (total, MSE, gradient, negative-dose penalty). */
export function lossComponentsSpec(run: RunFolder): TopLevelSpec {
  const later: [keyof RunFolder['metrics'][number], string][] = [
    ['train_vgg', 'VGG perceptual'],
    ['train_structure_weighted', 'structure-weighted MSE'],
    ['train_asymmetric_ptv', 'asymmetric PTV'],
    ['train_dvh', 'DVH'],
  ];
  const components: [keyof RunFolder['metrics'][number], string][] = [
    ['train_loss', 'total'],
    ['train_mse', 'MSE'],
    ['train_grad', 'gradient'],
    ['train_neg', 'negative-dose penalty'],
    // the later terms where the run trained with them
    ...later.filter(([key]) => run.metrics.some((row) => row[key] !== undefined)),
  ];
  const values = run.metrics.flatMap((row) =>
    components.filter(([key]) => finite(row[key] ?? NaN)).map(([key, label]) => ({ epoch: row.epoch, value: row[key], component: label })),
  );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `Training loss components: ${run.name}`,
      subtitle: lossFormula(run),
      subtitleFontSize: 12,
      subtitleColor: '#444',
    },
    width: 520,
    height: 280,
    data: { values },
    mark: { type: 'line', point: run.metrics.length <= 60 },
    encoding: {
      x: { field: 'epoch', type: 'quantitative', title: 'Epoch', axis: { tickMinStep: 1, format: 'd' } },
      y: { field: 'value', type: 'quantitative', title: 'Loss term (normalised dose units)' },
      color: {
        field: 'component',
        type: 'nominal',
        title: 'component',
        scale: { domain: components.map(([, label]) => label), range: ['#111111', '#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf'].slice(0, components.length) },
      },
    },
  } as TopLevelSpec;
}

/** (2) Comparison bars across runs: validation MAE, test MAE (± sd over cases) and the 3%/3 mm gamma pass rate. */
export function comparisonSpec(runs: RunFolder[]): TopLevelSpec {
  const rows = runs.map((run) => ({ run: run.name, ...headlineTestMetrics(run), valMae: run.summary.bestValMaeGy }));
  const panel = (axisTitle: string, values: { run: string; value: number; sd: number | null }[], format: string) => ({
    width: Math.max(160, 60 * runs.length),
    height: 220,
    data: { values: values.map((v) => ({ ...v, low: v.sd === null ? v.value : v.value - v.sd, high: v.sd === null ? v.value : v.value + v.sd })) },
    layer: [
      {
        mark: { type: 'bar', width: { band: 0.7 } },
        encoding: {
          x: { field: 'run', type: 'nominal', title: null, sort: runs.map((r) => r.name), axis: { labelAngle: -30, labelLimit: 160 } },
          y: { field: 'value', type: 'quantitative', title: axisTitle },
          color: { field: 'run', type: 'nominal', legend: null, sort: runs.map((r) => r.name), scale: { scheme: 'tableau10' } },
        },
      },
      {
        mark: { type: 'rule', color: '#222' },
        encoding: { x: { field: 'run', type: 'nominal', sort: runs.map((r) => r.name) }, y: { field: 'low', type: 'quantitative' }, y2: { field: 'high' } },
      },
      {
        mark: { type: 'text', dy: -8, fontSize: 11, baseline: 'bottom' },
        encoding: { x: { field: 'run', type: 'nominal', sort: runs.map((r) => r.name) }, y: { field: 'high', type: 'quantitative' }, text: { field: 'value', format } },
      },
    ],
  });
  const panels = [
    panel('Validation MAE, best epoch (Gy)', rows.map((r) => ({ run: r.run, value: r.valMae, sd: null })), '.2f'),
  ];
  const withTest = rows.filter((r) => r.maeGy !== null);
  if (withTest.length > 0) {
    panels.push(panel('Test MAE, body (Gy)', withTest.map((r) => ({ run: r.run, value: r.maeGy!, sd: r.maeSdGy })), '.2f'));
  }
  const withGamma = rows.filter((r) => r.gammaPct !== null);
  if (withGamma.length > 0) {
    panels.push(panel('Gamma pass rate 3%/3 mm (%)', withGamma.map((r) => ({ run: r.run, value: r.gammaPct!, sd: r.gammaSdPct })), '.1f'));
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Comparison of runs', subtitle: 'test metrics: mean ± sd over the test cases', subtitleFontSize: 12, subtitleColor: '#444' },
    hconcat: panels,
  } as TopLevelSpec;
}

/** Structure colours that stay the same across figures (targets warm, organs at risk cool). */
export const STRUCTURE_COLOURS: Record<string, string> = {
  PTV70: '#d62728',
  PTV56: '#ff7f0e',
  Prostate: '#8c564b',
  Rectum: '#1f77b4',
  Bladder: '#bcbd22',
  Femur_L: '#2ca02c',
  Femur_R: '#17becf',
  Bowel: '#9467bd',
};
const EXTRA_COLOURS = ['#e377c2', '#7f7f7f', '#393b79', '#637939', '#8c6d31', '#843c39'];

export function structureColours(structures: string[]): string[] {
  let extra = 0;
  return structures.map((name) => STRUCTURE_COLOURS[name] ?? EXTRA_COLOURS[extra++ % EXTRA_COLOURS.length]);
}

/** (5) DVH curves of one case: reference solid, prediction dashed, one colour per structure. */
export function dvhSpec(runName: string, evaluation: CaseEvaluation): TopLevelSpec {
  const structures = evaluation.dvh.filter((d) => d.curve).map((d) => d.structure);
  const values = evaluation.dvh.flatMap((d) =>
    d.curve
      ? d.curve.doseGy.flatMap((dose, i) => [
          { structure: d.structure, dose, volume: d.curve!.referenceVolumePct[i], source: 'reference' },
          { structure: d.structure, dose, volume: d.curve!.predictionVolumePct[i], source: 'prediction' },
        ])
      : [],
  );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `Dose–volume histograms: ${evaluation.caseId} (${runName})` },
    width: 520,
    height: 320,
    data: { values },
    mark: { type: 'line', strokeWidth: 1.8, interpolate: 'linear' },
    encoding: {
      x: { field: 'dose', type: 'quantitative', title: 'Dose (Gy)' },
      y: { field: 'volume', type: 'quantitative', title: 'Volume (%)', scale: { domain: [0, 100] } },
      color: { field: 'structure', type: 'nominal', title: 'structure', scale: { domain: structures, range: structureColours(structures) } },
      strokeDash: {
        field: 'source',
        type: 'nominal',
        title: 'dose',
        scale: { domain: ['reference', 'prediction'], range: [[1, 0], [6, 4]] },
        legend: { symbolStrokeColor: '#333', symbolType: 'stroke', symbolSize: 400 },
      },
      detail: { field: 'source' },
    },
  } as TopLevelSpec;
}
