import type { Command } from 'commander';

import { register as info } from './info.js';
import { register as gamma } from './gamma.js';

/** Every command, in the order `--help` lists them. */
export const commands: ((program: Command) => void)[] = [info, gamma];
