import type { Command } from 'commander';

import { register as dicom } from './import-dicom.js';

/** `import <format> …`: a parent command; each format registers its own subcommand. */
export function register(program: Command): void {
  const command = program.command('import').description('convert data from other formats into format 1 case files');
  dicom(command);
}
