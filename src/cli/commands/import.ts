import type { Command } from 'commander';

import { register as dicom } from './import-dicom.js';
import { register as openkbp } from './import-openkbp.js';

/** `import <format>`: data from other formats to case files; each format's subcommand lives in import-<format>.ts. */
export function register(program: Command): void {
  const command = program.command('import').description('convert data from other formats into case files (format 1)');
  dicom(command);
  openkbp(command);
}
