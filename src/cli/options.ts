/** Options that several commands declare the same way, so that --help lists their choices the same way. */
import { InvalidArgumentError, Option } from 'commander';

import { TRAIN_FIELDS } from '../config/schema.js';

/**
 * `--device`: --help lists the choices (commander's "choices:" note; cuda:N stands for any device index) and a
 * value outside them is refused before anything runs.
 */
export function deviceOption(description: string): Option {
  const option = new Option('--device <device>', description).default('auto').argParser((value: string) => {
    if (!TRAIN_FIELDS.device.schema.safeParse(value).success) throw new InvalidArgumentError(`expected ${TRAIN_FIELDS.device.allowed} (N a device index).`);
    return value;
  });
  // Set after argParser: commander's .choices() would also refuse cuda:1, cuda:2, ...
  option.argChoices = ['auto', 'cpu', 'cuda', 'cuda:N'];
  return option;
}
