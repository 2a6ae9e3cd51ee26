import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import type { Command } from 'commander';

import { invalidInput } from '../../errors.js';
import type { CaseEvaluation } from '../../eval/evaluate.js';
import { constraintLabel } from '../../eval/metrics.js';
import { evaluatePredictions, evaluateRun, evaluationProgressLine, type EvaluationProgress, type EvaluationResult } from '../../eval/run.js';
import { RUN_FILES } from '../../run/index.js';
import { deviceOption } from '../options.js';
import { note } from '../output.js';

export interface EvaluateFlags {
  pred?: string;
  ref?: string;
  out?: string;
  device: string;
  threads?: string;
  overwrite?: boolean;
  json?: boolean;
  openkbp?: boolean;
  site?: string;
}

/** NaN has no JSON spelling: it is written as null. */
function toJson(value: unknown): string {
  return `${JSON.stringify(value, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`;
}

/** What `--json` prints for a case: everything but the DVH curves (they are in `<case>.json`). */
function caseSummary(evaluation: CaseEvaluation): Omit<CaseEvaluation, 'dvh_curves'> {
  const { dvh_curves: _curves, ...rest } = evaluation;
  return rest;
}

function printResult(result: EvaluationResult, json: boolean | undefined): void {
  const { cases, summary, openkbp, outDir } = result;
  if (json) {
    process.stdout.write(toJson({ cases: cases.map(caseSummary), summary, ...(openkbp ? { openkbp } : {}), out: outDir }));
    return;
  }
  const mean = (key: string) => summary[key]?.mean ?? NaN;
  const sd = (key: string) => summary[key]?.sd ?? NaN;
  const pm = (key: string, digits: number) => `${mean(key).toFixed(digits)}${cases.length > 1 ? ` ± ${sd(key).toFixed(digits)}` : ''}`;
  const lines = [
    `cases            ${cases.length}`,
    `MAE body         ${pm('mae_gy.body', 3)} Gy`,
    `gamma 3%/3mm     ${pm('gamma.3%/3mm.pass_rate_pct', 2)} %`,
    `gamma 2%/2mm     ${pm('gamma.2%/2mm.pass_rate_pct', 2)} %`,
    `gamma 3%/3mm PTV ${pm('gamma.3%/3mm_ptv.pass_rate_pct', 2)} %`,
    ...constraintLines(cases),
    ...(openkbp ? [`OpenKBP dose score ${openkbp.dose_score_gy.toFixed(4)} Gy`, `OpenKBP DVH score  ${openkbp.dvh_score_gy.toFixed(4)} Gy`] : []),
    `written to       ${outDir}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** The constraint table as clinicians write it, with how many cases meet each row (reference, prediction). */
function constraintLines(cases: CaseEvaluation[]): string[] {
  const rows = new Map<string, { label: string; ref: [number, number]; pred: [number, number] }>();
  for (const evaluation of cases) {
    for (const check of evaluation.constraints) {
      const row = rows.get(check.name) ?? { label: constraintLabel(check), ref: [0, 0], pred: [0, 0] };
      if (check.refPass !== null) row.ref = [row.ref[0] + (check.refPass ? 1 : 0), row.ref[1] + 1];
      if (check.predPass !== null) row.pred = [row.pred[0] + (check.predPass ? 1 : 0), row.pred[1] + 1];
      rows.set(check.name, row);
    }
  }
  if (rows.size === 0) return [];
  const width = Math.max(16, ...[...rows.values()].map((row) => row.label.length));
  const met = ([n, of]: [number, number]) => (of === 0 ? 'not in any case' : `${n}/${of} met`);
  return [
    `${'constraint'.padEnd(width)}  reference        prediction`,
    ...[...rows.values()].map((row) => `${row.label.padEnd(width)}  ${met(row.ref).padEnd(15)}  ${met(row.pred)}`),
  ];
}

export function register(program: Command): void {
  program
    .command('evaluate')
    .description('evaluate predicted doses against reference plans (MAE/RMSE, DVH metrics and curves, constraints, gamma); with RUN, predict its test cases first')
    .argument('[run]', `a run folder: predict its test cases with its best checkpoint, then evaluate into RUN/${RUN_FILES.evaluation}`)
    .option('--pred <path>', 'a prediction case file (<case>_pred.npz) or a folder of them')
    .option('--ref <path>', 'the reference case file or a folder of case files (cases pair by case id)')
    .option('--out <dir>', `output folder (default: ${RUN_FILES.evaluation}/ next to the predictions, or RUN/${RUN_FILES.evaluation})`)
    .addOption(deviceOption('where gamma (and prediction) run'))
    .option('--threads <n>', 'CPU threads (default: all cores)')
    .option('--overwrite', 'replace existing evaluation files')
    .option('--json', 'print one JSON document')
    .option('--openkbp', "also the OpenKBP challenge's dose and DVH scores (automatic for cases imported from OpenKBP)")
    .option('--site <name|file>', "site profile of the constraint table (default: the model's, which predict records, else the one the reference records, else prostate-sib); a run uses its own")
    .action(async (run: string | undefined, flags: EvaluateFlags) => {
      const threads = flags.threads === undefined ? undefined : Number(flags.threads);
      if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw invalidInput(`--threads must be a whole number >= 1, got '${flags.threads}'`);
      const options = { device: flags.device, threads, overwrite: flags.overwrite, openkbp: flags.openkbp, site: flags.site, onProgress: (event: EvaluationProgress) => note(evaluationProgressLine(event)) };
      if (run !== undefined) {
        if (flags.pred || flags.ref) throw invalidInput('give either RUN or --pred and --ref, not both');
        printResult(await evaluateRun(run, { ...options, out: flags.out }), flags.json);
        return;
      }
      if (!flags.pred || !flags.ref) throw invalidInput('evaluate needs --pred and --ref (case files or folders), or a run folder');
      const predIsFolder = existsSync(flags.pred) && statSync(flags.pred).isDirectory();
      const outDir = resolve(flags.out ?? (predIsFolder ? join(flags.pred, RUN_FILES.evaluation) : join(dirname(flags.pred), RUN_FILES.evaluation)));
      printResult(await evaluatePredictions(flags.pred, flags.ref, outDir, options), flags.json);
    });
}
