/** The chart figures of training.md (1, 2, 4, 5) as Vega-Lite specifications, built from run folders. */
import type { TopLevelSpec } from 'vega-lite';

import { constraintCriterion } from '../report/format.js';
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

/** Whether the run trained with the gradient loss (a weight of 0 trains without it). */
export function gradientLossOn(run: RunFolder): boolean {
  return run.config.useGradientLoss !== false && run.config.gradientLossWeight !== 0;
}

/** How the total is made of the (unweighted) components, with the run's weights. */
function lossFormula(run: RunFolder): string {
  const weight = (key: string) => (typeof run.config[key] === 'number' ? String(run.config[key]) : 'w');
  const gradient = gradientLossOn(run) ? ` + ${weight('gradientLossWeight')} · gradient` : '';
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
  // Without the gradient loss its term is not trained on: it gets no (flat) curve; the later terms appear where the
  // run trained with them.
  const later: [keyof RunFolder['metrics'][number], string, string][] = [
    ['train_vgg', 'VGG perceptual', '#9467bd'],
    ['train_structure_weighted', 'structure-weighted MSE', '#8c564b'],
    ['train_asymmetric_ptv', 'asymmetric PTV', '#e377c2'],
    ['train_dvh', 'DVH', '#17becf'],
  ];
  const components: [keyof RunFolder['metrics'][number], string, string][] = [
    ...(
      [
        ['train_loss', 'total', '#111111'],
        ['train_mse', 'MSE', '#1f77b4'],
        ['train_grad', 'gradient', '#ff7f0e'],
        ['train_neg', 'negative-dose penalty', '#2ca02c'],
      ] as [keyof RunFolder['metrics'][number], string, string][]
    ).filter(([key]) => key !== 'train_grad' || gradientLossOn(run)),
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
        scale: { domain: components.map(([, label]) => label), range: components.map(([, , colour]) => colour) },
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

/** Points where a constraint limits a DVH: (dose, volume %) for V-criteria (cc converted with the volume), Dmax on the dose axis. */
export function constraintMarkers(evaluation: CaseEvaluation): { structure: string; dose: number; volume: number; label: string }[] {
  const markers: { structure: string; dose: number; volume: number; label: string }[] = [];
  for (const row of evaluation.constraints) {
    const criterion = constraintCriterion(row);
    if (criterion.limit === null) continue;
    const label = `${criterion.structure} ${criterion.text}`;
    if (criterion.unit === '%' && criterion.doseGy !== undefined) markers.push({ structure: criterion.structure, dose: criterion.doseGy, volume: criterion.limit, label });
    else if (criterion.unit === 'cc' && criterion.doseGy !== undefined) {
      const volumeCc = evaluation.dvh.find((d) => d.structure === criterion.structure)?.reference.volumeCc;
      if (volumeCc && volumeCc > 0 && criterion.limit <= volumeCc) markers.push({ structure: criterion.structure, dose: criterion.doseGy, volume: (100 * criterion.limit) / volumeCc, label });
    } else if (criterion.unit === 'Gy' && criterion.metric === 'Dmax') markers.push({ structure: criterion.structure, dose: criterion.limit, volume: 0, label });
  }
  return markers;
}

/**
 * (5) DVH curves of one case: reference solid, prediction dashed, one colour per structure; the prescription as a
 * vertical rule, the constraint limits as downward triangles in the structure's colour.
 */
export function dvhSpec(runName: string, evaluation: CaseEvaluation, prescriptionGy: number): TopLevelSpec {
  const structures = evaluation.dvh.filter((d) => d.curve).map((d) => d.structure);
  const values = evaluation.dvh.flatMap((d) =>
    d.curve
      ? d.curve.doseGy.flatMap((dose, i) => [
          { structure: d.structure, dose, volume: d.curve!.referenceVolumePct[i], source: 'reference' },
          { structure: d.structure, dose, volume: d.curve!.predictionVolumePct[i], source: 'prediction' },
        ])
      : [],
  );
  const markers = constraintMarkers(evaluation).filter((m) => structures.includes(m.structure));
  const colour = { field: 'structure', type: 'nominal', title: 'structure', scale: { domain: structures, range: structureColours(structures) } } as const;
  const rx = [{ dose: prescriptionGy, label: `Rx ${Number(prescriptionGy.toFixed(2))} Gy` }];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `Dose–volume histograms: ${evaluation.caseId} (${runName})`,
      subtitle: markers.length ? 'triangles: constraint limits (the DVH must pass below); vertical line: prescription' : 'vertical line: prescription',
      subtitleFontSize: 12,
      subtitleColor: '#444',
    },
    width: 520,
    height: 320,
    layer: [
      {
        data: { values },
        mark: { type: 'line', strokeWidth: 1.8, interpolate: 'linear' },
        encoding: {
          x: { field: 'dose', type: 'quantitative', title: 'Dose (Gy)' },
          y: { field: 'volume', type: 'quantitative', title: 'Volume (%)', scale: { domain: [0, 100] } },
          color: colour,
          strokeDash: {
            field: 'source',
            type: 'nominal',
            title: 'dose',
            scale: { domain: ['reference', 'prediction'], range: [[1, 0], [6, 4]] },
            legend: { symbolStrokeColor: '#333', symbolType: 'stroke', symbolSize: 400 },
          },
          detail: { field: 'source' },
        },
      },
      { data: { values: rx }, mark: { type: 'rule', color: '#555', strokeDash: [2, 2] }, encoding: { x: { field: 'dose', type: 'quantitative' } } },
      {
        data: { values: rx },
        mark: { type: 'text', align: 'left', dx: 3, baseline: 'top', fontSize: 11, color: '#333' },
        encoding: { x: { field: 'dose', type: 'quantitative' }, y: { value: 2 }, text: { field: 'label' } },
      },
      ...(markers.length
        ? [
            {
              data: { values: markers },
              mark: { type: 'point', shape: 'triangle-down', size: 110, filled: true, stroke: '#111', strokeWidth: 0.8, opacity: 1 },
              encoding: {
                x: { field: 'dose', type: 'quantitative' },
                y: { field: 'volume', type: 'quantitative' },
                color: colour,
                tooltip: { field: 'label' },
              },
            },
          ]
        : []),
    ],
  } as TopLevelSpec;
}

/** Γ over the evaluated points (NaN: below the cutoff, not evaluated) inside each structure and overall. */
export interface GammaGroup {
  name: string;
  colour: string;
  values: Float32Array;
}

export function gammaByStructure(gamma: Float32Array, structures: { name: string; mask: Uint8Array; colour: string }[]): GammaGroup[] {
  const collect = (mask?: Uint8Array) => {
    const out: number[] = [];
    for (let i = 0; i < gamma.length; i++) if (!Number.isNaN(gamma[i]!) && (!mask || mask[i])) out.push(gamma[i]!);
    return Float32Array.from(out);
  };
  return [{ name: 'all above cutoff', colour: '#555555', values: collect() }, ...structures.map((s) => ({ name: s.name, colour: s.colour, values: collect(s.mask) }))];
}

const GAMMA_BIN = 0.1;
/** gamma.md's max_gamma: the search stops there and larger Γ are reported as 2. */
const GAMMA_MAX = 2;

/**
 * The Γ histogram (share of evaluated points per 0.1 bin; a last bar past 2 for the points at the search's cap,
 * Γ ≥ 2) beside the pass rate (Γ ≤ 1) per structure, with the number of evaluated points.
 */
export function gammaHistogramSpec(runName: string, caseId: string, criterion: string, groups: GammaGroup[]): TopLevelSpec {
  const all = groups[0]!.values;
  const bins = Array.from({ length: Math.round(GAMMA_MAX / GAMMA_BIN) + 1 }, (_, i) => ({ low: Number((i * GAMMA_BIN).toFixed(1)), high: Number(((i + 1) * GAMMA_BIN).toFixed(1)), count: 0 }));
  let capped = 0;
  for (const g of all) {
    if (g >= GAMMA_MAX) capped++;
    bins[Math.min(bins.length - 1, Math.floor(g / GAMMA_BIN))]!.count++;
  }
  const result = (high: number) => (high <= 1 + 1e-9 ? 'pass (Γ ≤ 1)' : high > GAMMA_MAX + 1e-9 ? `Γ ≥ ${GAMMA_MAX} (search cap)` : 'fail (Γ > 1)');
  const histogram = bins.map((b) => ({ ...b, pct: all.length ? (100 * b.count) / all.length : 0, result: result(b.high) }));
  const rates = groups.map((group) => {
    let passed = 0;
    for (const g of group.values) if (g <= 1) passed++;
    const n = group.values.length;
    return { name: group.name, colour: group.colour, n, rate: n ? (100 * passed) / n : null, at: n ? (100 * passed) / n : 0, label: n ? `${((100 * passed) / n).toFixed(1)} % (n = ${n})` : 'no point evaluated' };
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `Gamma ${criterion}: ${caseId} (${runName})`,
      subtitle: `${all.length} points evaluated (reference dose ≥ the cutoff); ${capped} at Γ ≥ ${GAMMA_MAX}, where the search stops (the last bar)`,
      subtitleFontSize: 12,
      subtitleColor: '#444',
    },
    hconcat: [
      {
        width: 300,
        height: 220,
        layer: [
          {
            data: { values: histogram },
            mark: { type: 'bar', stroke: 'white', strokeWidth: 0.5 },
            encoding: {
              x: { field: 'low', type: 'quantitative', bin: { binned: true, step: GAMMA_BIN }, title: 'Γ', scale: { domain: [0, GAMMA_MAX + GAMMA_BIN] } },
              x2: { field: 'high' },
              y: { field: 'pct', type: 'quantitative', title: 'Evaluated points (%)' },
              color: { field: 'result', type: 'nominal', title: null, scale: { domain: ['pass (Γ ≤ 1)', 'fail (Γ > 1)', `Γ ≥ ${GAMMA_MAX} (search cap)`], range: ['#4c78a8', '#f58518', '#b3541e'] }, legend: { orient: 'top-right' } },
            },
          },
          { data: { values: [{ g: 1 }] }, mark: { type: 'rule', color: '#111', strokeDash: [4, 3] }, encoding: { x: { field: 'g', type: 'quantitative' } } },
        ],
      },
      {
        width: 260,
        height: { step: 22 },
        data: { values: rates },
        layer: [
          {
            mark: { type: 'bar' },
            encoding: {
              y: { field: 'name', type: 'nominal', title: null, sort: rates.map((r) => r.name) },
              x: { field: 'rate', type: 'quantitative', title: `Pass rate ${criterion} (%)`, scale: { domain: [0, 100] } },
              color: { field: 'name', type: 'nominal', legend: null, scale: { domain: rates.map((r) => r.name), range: rates.map((r) => r.colour) } },
            },
          },
          {
            mark: { type: 'text', align: 'left', dx: 4, fontSize: 11, color: '#111' },
            encoding: { y: { field: 'name', type: 'nominal', sort: rates.map((r) => r.name) }, x: { field: 'at', type: 'quantitative' }, text: { field: 'label' } },
          },
        ],
      },
    ],
    resolve: { scale: { color: 'independent' } },
  } as TopLevelSpec;
}
