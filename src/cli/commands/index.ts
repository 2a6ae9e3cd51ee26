import type { Command } from 'commander';

import { register as info } from './info.js';
import { register as figures } from './figures.js';
import { register as compare } from './compare.js';
import { register as report } from './report.js';

/** Every command, in the order `--help` lists them. */
export const commands: ((program: Command) => void)[] = [info];
commands.push(figures);
commands.push(compare);
commands.push(report);
