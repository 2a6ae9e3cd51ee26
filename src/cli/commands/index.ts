import type { Command } from 'commander';

import { register as info } from './info.js';

/** Every command, in the order `--help` lists them. */
export const commands: ((program: Command) => void)[] = [info];
import { register as validate } from './validate.js';
import { register as inspect } from './inspect.js';
import { register as split } from './split.js';
commands.push(validate, inspect, split);
import { register as synth } from './synth.js';
commands.push(synth);
