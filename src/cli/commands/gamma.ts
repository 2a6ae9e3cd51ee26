import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

import type { Command } from 'commander';

import { loadCase, spacingProblem } from '../../data/case.js';
import { encodeNpy, parseNpy } from '../../data/npy.js';
import { defaultReadCeiling } from '../../data/npz.js';
import { invalidInput } from '../../errors.js';
import { doseVolumeOf, gammaIndex, type DoseVolume, type GammaResult } from '../../eval/gamma.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { deviceOption } from '../options.js';
import { note, parseNumberList, printJson } from '../output.js';

interface GammaOptions {
  dose: string;
  dta: string;
  cutoff: string;
  norm?: string;
  local?: boolean;
  interpFraction: string;
  maxGamma: string;
  spacing?: string;
  device: string;
  threads?: string;
  out?: string;
  overwrite?: boolean;
  json?: boolean;
}

function parseNumber(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw invalidInput(`${flag} must be a number, got '${text}'`);
  return value;
}

/** A dose volume from a case file (dose and spacing from it) or a 3D .npy (spacing from --spacing). */
export async function loadDoseVolume(path: string, spacing: [number, number, number] | undefined, role: string): Promise<DoseVolume> {
  if (!existsSync(path)) throw invalidInput(`the ${role} ${path} does not exist: expected a case file (.npz) or a .npy volume`);
  const info = statSync(path);
  if (!info.isFile()) throw invalidInput(`the ${role} ${path} is a folder: expected a case file (.npz) or a .npy volume`);
  if (path.toLowerCase().endsWith('.npy')) {
    if (!spacing) throw invalidInput(`the ${role} ${path} is a .npy volume, which holds no spacing: give --spacing z,y,x (mm)`);
    if (info.size > defaultReadCeiling()) throw invalidInput(`the ${role} ${path} is ${info.size} bytes, more than the half of this machine's memory one file may take`);
    const array = parseNpy(new Uint8Array(await readFile(path)), path);
    if (array.dtype !== 'float32' && array.dtype !== 'float64' && array.dtype !== 'float16') {
      throw invalidInput(`${path} must hold a float dose in Gy, found dtype ${array.dtype}`);
    }
    if (array.shape.length !== 3) throw invalidInput(`${path} must be a 3D volume [z, y, x], found shape [${array.shape.join(', ')}]`);
    const data = array.data instanceof Float32Array ? array.data : Float32Array.from(array.data as Float64Array);
    return { data, shape: array.shape as [number, number, number], spacingMm: spacing };
  }
  const data = await loadCase(path);
  if (!data.dose) throw invalidInput(`the ${role} case ${path} holds no dose`);
  return doseVolumeOf(data, data.dose);
}

/** Writes a float32 .npy atomically; an existing file only with `overwrite`. */
export async function writeNpyFile(path: string, data: Float32Array, shape: number[], overwrite: boolean): Promise<void> {
  if (!existsSync(dirname(path) || '.')) throw invalidInput(`cannot write ${path}: the folder ${dirname(path)} does not exist`);
  if (!overwrite && existsSync(path)) throw invalidInput(`${path} already exists: choose another name or pass --overwrite`);
  await writeFileAtomic(path, encodeNpy({ dtype: 'float32', shape, data }, path), { overwrite });
}

/** The --json document of `gamma` (spec/gamma.md). */
export function gammaJson(result: GammaResult) {
  return {
    pass_rate_pct: result.passRatePct,
    n_evaluated: result.nEvaluated,
    n_passed: result.nPassed,
    mean_gamma: result.meanGamma,
    median_gamma: result.medianGamma,
    settings: {
      dose_percent: result.settings.dosePercent,
      dta_mm: result.settings.dtaMm,
      cutoff_percent: result.settings.cutoffPercent,
      norm_gy: result.normalisationGy,
      cutoff_gy: result.cutoffGy,
      local: result.settings.local,
      interp_fraction: result.settings.interpFraction,
      max_gamma: result.settings.maxGamma,
      device: result.device,
    },
    seconds: result.seconds,
  };
}

export function register(program: Command): void {
  program
    .command('gamma')
    .description('3D gamma index of EVAL against REF (case files, or .npy volumes with --spacing), as pymedphys computes it')
    .argument('<ref>', 'reference dose: a case file (.npz) or a .npy volume [z,y,x] in Gy')
    .argument('<eval>', 'evaluated dose: a case file (.npz) or a .npy volume [z,y,x] in Gy')
    .option('--dose <percent>', 'dose-difference criterion, % of the normalisation (or of the local dose with --local)', '3')
    .option('--dta <mm>', 'distance to agreement, mm', '3')
    .option('--cutoff <percent>', 'lower dose cutoff on the reference, % of the normalisation (inclusive)', '10')
    .option('--norm <gy>', 'normalisation dose in Gy (default: the maximum of the reference)')
    .option('--local', 'local gamma: the dose difference is relative to the reference dose at the point')
    .option('--interp-fraction <n>', 'search step = DTA / n', '10')
    .option('--max-gamma <g>', 'search up to DTA · g; larger gammas are reported as g', '2')
    .option('--spacing <z,y,x>', 'voxel size in mm of .npy inputs')
    .addOption(deviceOption('where the gamma search runs'))
    .option('--threads <n>', 'CPU threads (default: all cores)')
    .option('--out <file.npy>', 'also write the gamma volume (float32, NaN where not evaluated)')
    .option('--overwrite', 'replace an existing --out file')
    .option('--json', 'print one JSON document')
    .action(async (refPath: string, evalPath: string, options: GammaOptions) => {
      const spacing = options.spacing ? (parseNumberList('--spacing', options.spacing, 3) as [number, number, number]) : undefined;
      const spacingWrong = spacing && spacingProblem(spacing);
      if (spacingWrong) throw invalidInput(`--spacing is not a voxel spacing: ${spacingWrong}`);
      const threads = options.threads === undefined ? undefined : parseNumber('--threads', options.threads);
      if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw invalidInput(`--threads must be a whole number >= 1, got '${options.threads}'`);
      if (options.out && !options.out.toLowerCase().endsWith('.npy')) throw invalidInput(`--out must name a .npy file, got '${options.out}'`);
      if (options.out && !options.overwrite && existsSync(options.out)) throw invalidInput(`${options.out} already exists: choose another name or pass --overwrite`);
      const settings = {
        dosePercent: parseNumber('--dose', options.dose),
        dtaMm: parseNumber('--dta', options.dta),
        cutoffPercent: parseNumber('--cutoff', options.cutoff),
        normGy: options.norm === undefined ? undefined : parseNumber('--norm', options.norm),
        local: Boolean(options.local),
        interpFraction: parseNumber('--interp-fraction', options.interpFraction),
        maxGamma: parseNumber('--max-gamma', options.maxGamma),
        device: options.device,
      };
      const ref = await loadDoseVolume(refPath, spacing, 'reference');
      const evaluated = await loadDoseVolume(evalPath, spacing, 'evaluated dose');
      const result = await gammaIndex(ref, evaluated, settings, { threads });
      if (result.nEvaluated === 0) {
        // A pass rate of no points is not a number: say why instead of printing NaN.
        throw invalidInput(
          `no point of the reference reaches the cutoff of ${result.cutoffGy.toPrecision(4)} Gy (--cutoff ${settings.cutoffPercent}% of ${result.normalisationGy.toPrecision(4)} Gy), so there is no gamma to report: lower --cutoff or --norm`,
        );
      }
      if (options.out) await writeNpyFile(options.out, result.gamma, ref.shape, Boolean(options.overwrite));
      if (options.json) {
        printJson(gammaJson(result));
        return;
      }
      const s = result.settings;
      const lines = [
        `gamma ${s.dosePercent}%/${s.dtaMm} mm, ${s.local ? 'local' : 'global'}, cutoff ${s.cutoffPercent}% (${result.cutoffGy.toFixed(2)} Gy of ${result.normalisationGy.toFixed(2)} Gy)`,
        `pass rate     ${result.passRatePct.toFixed(2)} %  (${result.nPassed} of ${result.nEvaluated} points with Γ ≤ 1)`,
        `mean Γ        ${result.meanGamma.toFixed(4)}`,
        `median Γ      ${result.medianGamma.toFixed(4)}`,
        `time          ${result.seconds.toFixed(3)} s on ${result.device}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
      if (options.out) note(`wrote ${options.out}`);
    });
}
