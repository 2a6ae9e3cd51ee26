import type { Command } from 'commander';

import { loadCase } from '../../data/case.js';
import { deriveBodyMask } from '../../data/sdf.js';
import { structureKey } from '../../data/structures.js';
import { doseMetrics } from '../../metrics/dvh.js';
import { parseNumberList, printJson } from '../output.js';

const round = (value: number, digits = 3) => Number(value.toFixed(digits));

export function register(program: Command): void {
  program
    .command('inspect')
    .description('shape, spacing, structures with volumes in cc, dose statistics, constraint vector and format of a case file')
    .argument('<case>', 'case file (.npz): format 1 or the predecessor 2.2-2.4')
    .option('--spacing <z,y,x>', 'voxel spacing in mm for predecessor files that do not record it')
    .option('--json', 'print one JSON document')
    .action(async (path: string, options: { spacing?: string; json?: boolean }) => {
      const spacingMm = options.spacing ? (parseNumberList('--spacing', options.spacing, 3) as [number, number, number]) : undefined;
      const data = await loadCase(path, { spacingMm });
      const voxels = data.shape[0] * data.shape[1] * data.shape[2];
      const voxelCc = (data.spacingMm[0] * data.spacingMm[1] * data.spacingMm[2]) / 1000;
      const volumes: Record<string, number> = {};
      data.structures.forEach((name, s) => {
        let count = 0;
        const mask = data.masks.subarray(s * voxels, (s + 1) * voxels);
        for (let i = 0; i < voxels; i++) count += mask[i]!;
        volumes[name] = round(count * voxelCc);
      });
      let dose: { max: number; mean: number; d95_ptv70: number | null } | undefined;
      if (data.dose) {
        const body = data.body ?? (await deriveBodyMask(data.ct, data.shape));
        const inBody = doseMetrics(data.dose, body, voxelCc);
        const ptv70 = data.structures.findIndex((name) => structureKey(name) === 'ptv70');
        const d95 = ptv70 < 0 ? null : doseMetrics(data.dose, data.masks.subarray(ptv70 * voxels, (ptv70 + 1) * voxels), voxelCc).D95;
        let max = 0;
        for (let i = 0; i < voxels; i++) if (data.dose[i]! > max) max = data.dose[i]!;
        dose = { max: round(max), mean: round(inBody.Dmean), d95_ptv70: d95 === null || Number.isNaN(d95) ? null : round(d95) };
      }
      const report = {
        case_id: data.caseId,
        format: data.format,
        shape: data.shape,
        spacing_mm: data.spacingMm,
        structures: data.structures,
        volumes_cc: volumes,
        ...(dose ? { dose_gy: dose } : {}),
        constraints: Array.from(data.constraints, (value) => round(value, 4)),
      };
      if (options.json) {
        printJson(report);
        return;
      }
      const width = Math.max(...data.structures.map((name) => name.length));
      const lines = [
        `case         ${data.caseId}`,
        `format       ${data.format}`,
        `shape        ${data.shape.join(' × ')} (z, y, x)`,
        `spacing      ${data.spacingMm.join(' × ')} mm (z, y, x)`,
        `body         ${data.body ? 'in the file' : 'derived from the CT (> -500 HU)'}`,
        'structures',
        ...data.structures.map((name) => `  ${name.padEnd(width)}  ${volumes[name]!.toFixed(1).padStart(9)} cc`),
        dose
          ? `dose         max ${dose.max.toFixed(2)} Gy, mean in body ${dose.mean.toFixed(2)} Gy, D95(PTV70) ${dose.d95_ptv70 === null ? 'n/a' : `${dose.d95_ptv70.toFixed(2)} Gy`}`
          : 'dose         none in the file',
        `constraints  ${report.constraints.join(', ')}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
