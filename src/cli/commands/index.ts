import type { Command } from 'commander';

import { register as compare } from './compare.js';
import { register as demo } from './demo.js';
import { register as evaluate } from './evaluate.js';
import { register as exportCommand } from './export.js';
import { register as figures } from './figures.js';
import { register as gamma } from './gamma.js';
import { register as importData } from './import.js';
import { register as info } from './info.js';
import { register as inspect } from './inspect.js';
import { register as model } from './model.js';
import { register as predict } from './predict.js';
import { register as report } from './report.js';
import { register as split } from './split.js';
import { register as study } from './study.js';
import { register as sweep } from './sweep.js';
import { register as synth } from './synth.js';
import { register as train } from './train.js';
import { register as validate } from './validate.js';

/** Every command, in the order `--help` lists them: the whole job, set-up, data, model, training, evaluation, reports. */
export const commands: ((program: Command) => void)[] = [
  demo,
  info,
  synth,
  importData,
  validate,
  inspect,
  split,
  model,
  train,
  sweep,
  study,
  predict,
  evaluate,
  gamma,
  exportCommand,
  figures,
  report,
  compare,
];
