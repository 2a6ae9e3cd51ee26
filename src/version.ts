import { readFileSync } from 'node:fs';

/** vmat-native's version, from its package.json (one source of truth for the CLI, run folders and reports). */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
