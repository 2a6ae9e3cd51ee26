/** The six figures of training.md, made from run folders (`vmat-native figures`, and inlined by `report`). */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { gammaIndex } from '../eval/gamma.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import { caseVolumePaths, type CaseEvaluation, type RunFolder } from '../report/run-folder.js';
import { caseFileStem, evaluationPaths, runPaths } from '../run/index.js';
import { loadCase } from '../data/case.js';
import { comparisonSpec, dvhSpec, gammaByStructure, gammaHistogramSpec, lossComponentsSpec, structureColours, trainingCurvesSpec } from './charts.js';
import { renderVegaLite, type RenderedFigure } from './render.js';
import { doseSlicesFigure, gammaSlicesFigure, maskCentre } from './slices.js';
import { readDoseCase } from './volumes.js';

export interface NamedFigure {
  /** File stem: `<name>.png` and `<name>.svg`. */
  name: string;
  caption: string;
  figure: RenderedFigure;
}

export interface RunFigures {
  figures: NamedFigure[];
  /** Figures that could not be made, with the reason (e.g. no evaluation yet). */
  skipped: string[];
}

/**
 * The prescription the isodose lines, the difference scale and the DVH marker refer to: the highest target
 * prescription the case records (metadata prescription_gy), else the run's normalisation dose (70 Gy by default).
 */
export function prescriptionGyOf(metadata: Record<string, unknown>, run: RunFolder): number {
  const recorded = metadata['prescription_gy'];
  if (recorded && typeof recorded === 'object') {
    const values = Object.values(recorded).filter((v): v is number => typeof v === 'number' && v > 0 && Number.isFinite(v));
    if (values.length > 0) return Math.max(...values);
  }
  const normalisation = run.config.normalisationDoseGy;
  return typeof normalisation === 'number' && normalisation > 0 ? normalisation : 70;
}

/** The test case the slice and DVH figures show: the one asked for, else the first evaluated. */
function chooseCase(run: RunFolder, caseId: string | undefined): CaseEvaluation | undefined {
  const cases = run.evaluation?.cases ?? [];
  if (caseId === undefined) return cases[0];
  return cases.find((c) => c.caseId === caseId);
}

export async function buildRunFigures(run: RunFolder, options: { caseId?: string } = {}): Promise<RunFigures> {
  const figures: NamedFigure[] = [];
  const skipped: string[] = [];
  if (run.metrics.length === 0) {
    skipped.push('training curves and loss components: metrics.csv has no epochs yet');
  } else {
    figures.push({
      name: 'training_curves',
      caption: `Training and validation loss, and validation MAE (body and PTV70) per epoch; the best epoch (${run.summary.bestEpoch}) is marked.`,
      figure: await renderVegaLite(trainingCurvesSpec(run)),
    });
    figures.push({
      name: 'loss_components',
      caption: 'Training loss and its components per epoch (MSE, gradient loss, negative-dose penalty).',
      figure: await renderVegaLite(lossComponentsSpec(run)),
    });
  }
  const evaluation = chooseCase(run, options.caseId);
  if (!run.evaluation || run.evaluation.cases.length === 0) {
    skipped.push(`dose slices, DVH and gamma maps: ${run.name} has no evaluation (run 'vmat-native evaluate ${run.dir}')`);
    return { figures, skipped };
  }
  if (!evaluation) {
    skipped.push(`dose slices, DVH and gamma maps: case ${options.caseId} is not among the evaluated cases (${run.evaluation.cases.map((c) => c.caseId).join(', ')})`);
    return { figures, skipped };
  }
  const id = evaluation.caseId;
  const paths = caseVolumePaths(run, id);
  let referenceMetadata: Record<string, unknown> = {};
  if (paths.reference && paths.prediction) {
    const reference = await loadCase(paths.reference);
    referenceMetadata = reference.metadata;
    const prediction = await readDoseCase(paths.prediction);
    if (!reference.dose) {
      skipped.push(`dose slices and gamma map of ${id}: its reference case file ${paths.reference} holds no dose`);
    } else if (prediction.dose.length !== reference.dose.length) {
      skipped.push(`dose slices of ${id}: the prediction grid [${prediction.shape}] differs from the reference [${reference.shape}]`);
    } else {
      const voxels = reference.shape[0] * reference.shape[1] * reference.shape[2];
      const colours = structureColours(reference.structures);
      const structures = reference.structures.map((name, s) => ({ name, mask: reference.masks.subarray(s * voxels, (s + 1) * voxels), colour: colours[s]! }));
      const ptvMask = structures.find((s) => s.name.toUpperCase() === 'PTV70')?.mask;
      const centre = maskCentre(reference.shape, ptvMask);
      const centreLabel = ptvMask ? 'the PTV70 centre' : 'the volume centre';
      const rx = prescriptionGyOf(reference.metadata, run);
      figures.push({
        name: `dose_slices_${caseFileStem(id)}`,
        caption:
          `Reference, predicted and difference dose of ${id}: axial, coronal and sagittal planes through ${centreLabel} (voxel ${centre.join(', ')}), drawn to scale from the voxel spacing (${reference.spacingMm.join(' × ')} mm), ` +
          `over the CT, with the structures' contours and the 95, 50 and 20 % isodose lines of a ${Number(rx.toFixed(2))} Gy prescription; the difference is scaled to ±10 % of it. Letters: patient directions (R/L, A/P, S/I)${reference.direction ? ' from the case\'s direction matrix' : ''}.`,
        figure: await doseSlicesFigure({
          caseId: id, runName: run.name, shape: reference.shape, spacingMm: reference.spacingMm, centre, centreLabel, reference: reference.dose, prediction: prediction.dose,
          ct: reference.ct, structures, prescriptionGy: rx, direction: reference.direction,
        }),
      });
      // The evaluation keeps only Γ statistics; the map of the case shown is computed again with the same settings.
      const gamma = await gammaIndex(
        { data: reference.dose, shape: reference.shape, spacingMm: reference.spacingMm },
        { data: prediction.dose, shape: prediction.shape, spacingMm: prediction.spacingMm },
        { dosePercent: 3, dtaMm: 3, cutoffPercent: 10 },
      );
      figures.push({
        name: `gamma_${caseFileStem(id)}`,
        caption: `Gamma index (3%/3 mm, global, 10% cutoff) of ${id} through ${centreLabel}; Γ ≤ 1 passes. Pass rate over the whole volume ${gamma.passRatePct.toFixed(1)}%.`,
        figure: await gammaSlicesFigure({ caseId: id, runName: run.name, shape: reference.shape, spacingMm: reference.spacingMm, centre, gamma: gamma.gamma, criterion: '3%/3 mm', ptvMask }),
      });
      const byStructure = gammaByStructure(gamma.gamma, structures);
      figures.push({
        name: `gamma_histogram_${caseFileStem(id)}`,
        caption: `Distribution of Γ (3%/3 mm) over the points above the 10% cutoff of ${id}, and the pass rate (Γ ≤ 1) over the evaluated points inside each structure.`,
        figure: await renderVegaLite(gammaHistogramSpec(run.name, id, '3%/3 mm', byStructure)),
      });
    }
  } else {
    skipped.push(`dose slices and gamma map of ${id}: ${paths.reference ? '' : `its reference case file (from test_cases.json) is missing${paths.prediction ? '' : '; '}`}${paths.prediction ? '' : `${evaluationPaths(runPaths(run.dir).evaluation).predictionFile(id)} is missing`}`);
  }
  const rxOfEvaluation = prescriptionGyOf(referenceMetadata, run);
  if (evaluation.dvh.some((d) => d.curve)) {
    figures.push({
      name: `dvh_${caseFileStem(id)}`,
      caption: `Cumulative DVHs of ${id}: reference solid, prediction dashed, one colour per structure; the prescription (${Number(rxOfEvaluation.toFixed(2))} Gy) as a vertical line, and the constraint limits of the evaluation as triangles (the curve must pass below; a Dmax limit sits on the dose axis).`,
      figure: await renderVegaLite(dvhSpec(run.name, evaluation, rxOfEvaluation)),
    });
  } else {
    skipped.push(`DVH of ${id}: the evaluation holds no DVH curves`);
  }
  return { figures, skipped };
}

export async function buildComparisonFigure(runs: RunFolder[]): Promise<NamedFigure> {
  return {
    name: 'comparison',
    caption: `Validation MAE at the best epoch, test MAE and 3%/3 mm gamma pass rate (mean ± sd over test cases) of ${runs.map((r) => r.name).join(', ')}.`,
    figure: await renderVegaLite(comparisonSpec(runs)),
  };
}

/** Writes `<name>.png` and `<name>.svg` for each figure; returns the paths written. */
export function writeFigures(dir: string, figures: NamedFigure[]): string[] {
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const { name, figure } of figures) {
    const png = join(dir, `${name}.png`);
    const svg = join(dir, `${name}.svg`);
    writeFileAtomicSync(png, figure.png);
    writeFileAtomicSync(svg, figure.svg);
    written.push(png, svg);
  }
  return written;
}
