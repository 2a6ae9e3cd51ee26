import type { Command } from 'commander';

import { importOpenKbp, type OpenKbpPatientResult } from '../../openkbp/import.js';
import { note, printJson } from '../output.js';

function patientLine(result: OpenKbpPatientResult, index: number, of: number): string {
  const name = result.split ? `${result.split}/${result.id}` : result.id;
  const head = `[${index}/${of}] ${name}`;
  switch (result.status) {
    case 'imported':
      return `${head}: ${result.structures!.length} structures → ${result.file} (${result.seconds.toFixed(1)} s)${result.ignored ? `; ignored ${result.ignored.join(', ')}` : ''}`;
    case 'incomplete':
      return `${head}: skipped, incomplete (no ${result.missing!.join(', ')})`;
    case 'failed':
      return `${head}: failed: ${result.error}`;
  }
}

/** `import openkbp SRC --out DIR`. */
export function register(importCommand: Command): void {
  importCommand
    .command('openkbp')
    .description("the OpenKBP challenge's CSV patient folders (head and neck, 128³) to case files under the head-neck site profile")
    .argument('<src>', 'a patient folder (pt_*), a folder of them (e.g. train-pats), or the open-kbp repository / its provided-data')
    .requiredOption('--out <dir>', 'output folder (a whole data set goes into train/, validation/ and test/ under it)')
    .option('--overwrite', 'replace existing case files')
    .option('--json', 'print the result as one JSON document')
    .action(async (src: string, flags: { out: string; overwrite?: boolean; json?: boolean }) => {
      const result = await importOpenKbp(src, {
        out: flags.out,
        overwrite: flags.overwrite === true,
        onPatient: (patient, index, of) => note(patientLine(patient, index, of)),
      });
      if (flags.json) {
        printJson(result);
      } else {
        const incomplete = result.patients.filter((p) => p.status === 'incomplete').map((p) => p.id);
        const splits = [...new Set(result.patients.filter((p) => p.status === 'imported').map((p) => p.split ?? ''))];
        const bySplit = splits.every((s) => s !== '')
          ? ` (${splits.map((s) => `${s} ${result.patients.filter((p) => p.status === 'imported' && p.split === s).length}`).join(', ')})`
          : '';
        const lines = [
          `imported ${result.imported} of ${result.patients.length} patient${result.patients.length === 1 ? '' : 's'}${bySplit} into ${result.out} in ${result.seconds.toFixed(1)} s`,
          `skipped ${result.incomplete} incomplete${incomplete.length ? `: ${incomplete.join(', ')}` : ''}`,
          `failed ${result.failed}${result.failed ? ` (the reasons are above and in ${result.listing})` : ''}`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      }
      // A patient with a bad file fails the command once the others are imported.
      if (result.failed > 0) process.exitCode = 1;
    });
}
