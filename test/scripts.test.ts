import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { repoRoot } from './helpers.js';

describe('shell scripts', () => {
  // gpu-check.sh runs only on a lent GPU machine: a syntax error there costs device time, so it is caught here.
  it('every script in scripts/ and bench/ parses (bash -n)', () => {
    const scripts = ['scripts', 'bench'].flatMap((dir) => readdirSync(join(repoRoot, dir)).filter((name) => name.endsWith('.sh')).map((name) => join(dir, name)));
    expect(scripts).toContain(join('scripts', 'gpu-check.sh'));
    const broken = scripts.filter((script) => spawnSync('bash', ['-n', join(repoRoot, script)]).status !== 0);
    expect(broken).toEqual([]);
  });
});
