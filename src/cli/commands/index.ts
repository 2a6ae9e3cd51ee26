import type { Command } from 'commander';

import { register as info } from './info.js';
import { register as model } from './model.js';

/** Every command, in the order `--help` lists them. */
import { register as validate } from './validate.js';
import { register as inspect } from './inspect.js';
import { register as split } from './split.js';
import { register as figures } from './figures.js';
import { register as compare } from './compare.js';
import { register as report } from './report.js';
export const commands: ((program: Command) => void)[] = [info, model];
commands.push(validate, inspect, split);
commands.push(figures);
commands.push(compare);
commands.push(report);
