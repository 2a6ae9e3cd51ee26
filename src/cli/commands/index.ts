import type { Command } from 'commander';

import { register as info } from './info.js';
import { register as inspect } from './inspect.js';
import { register as model } from './model.js';
import { register as split } from './split.js';
import { register as validate } from './validate.js';

/** Every command, in the order `--help` lists them. */
export const commands: ((program: Command) => void)[] = [info, validate, inspect, split, model];
