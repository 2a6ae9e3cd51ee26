import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadCase } from '../src/data/case.js';
import { synthesizeCase, synthesizeCohort } from '../src/data/synth.js';
import { runCli, tempDir } from './helpers.js';

const tiny = ['--cases', '3', '--shape', '32,48,48'];

describe('vmat-native synth', () => {
  const out = tempDir('vmat-synth-');
  const first = runCli(['synth', '--out', out, ...tiny]);

  it('writes format 1 case files with a progress line per case', async () => {
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout.match(/^\d\/3 .*synth_00\d\.npz .*D95\(PTV70\)/gm)).toHaveLength(3);
    expect(readdirSync(out).sort()).toEqual(['synth_000.npz', 'synth_001.npz', 'synth_002.npz']);
    const data = await loadCase(join(out, 'synth_001.npz'));
    expect(data.caseId).toBe('synth_001');
    expect(data.shape).toEqual([32, 48, 48]);
    expect(data.spacingMm).toEqual([2.5, 2, 2]);
    expect(data.ct).toBeInstanceOf(Int16Array);
    expect(data.structures).toEqual(['PTV70', 'PTV56', 'Prostate', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel']);
    expect(data.body).toBeDefined();
    expect(data.metadata).toMatchObject({
      case_id: 'synth_001',
      format_version: 1,
      prescription_gy: { PTV70: 70, PTV56: 56 },
      fractions: 28,
      source: 'vmat-native synth',
      constraints_mode: 'achieved',
      seed: 42,
    });
    expect(typeof data.metadata.generator_version).toBe('string');
    expect(Array.from(data.constraints.subarray(0, 3))).toEqual([1, Math.fround(0.8), 0]);
    const voxels = 32 * 48 * 48;
    let ptv70 = 0;
    for (let i = 0; i < voxels; i++) {
      ptv70 += data.masks[i]!;
      if (data.masks[i]) expect(data.masks[voxels + i]).toBe(1);
    }
    expect(ptv70).toBeGreaterThan(50);
  });

  it('writes byte-identical files for the same seed, different ones for another seed', () => {
    const again = tempDir('vmat-synth-');
    expect(runCli(['synth', '--out', again, ...tiny]).status).toBe(0);
    for (const name of readdirSync(out)) expect(readFileSync(join(again, name)).equals(readFileSync(join(out, name))), name).toBe(true);
    const other = tempDir('vmat-synth-');
    expect(runCli(['synth', '--out', other, ...tiny, '--seed', '7']).status).toBe(0);
    expect(readFileSync(join(other, 'synth_000.npz')).equals(readFileSync(join(out, 'synth_000.npz')))).toBe(false);
  });

  it('refuses to overwrite existing case files without --overwrite, touching nothing', () => {
    const before = readdirSync(out).map((name) => [name, statSync(join(out, name)).mtimeMs, readFileSync(join(out, name))] as const);
    const refused = runCli(['synth', '--out', out, '--cases', '4', '--shape', '32,48,48', '--seed', '5']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/synth_000\.npz already exists.*--overwrite/);
    expect(readdirSync(out).sort()).toEqual(before.map(([name]) => name));
    for (const [name, mtime, bytes] of before) {
      expect(statSync(join(out, name)).mtimeMs).toBe(mtime);
      expect(readFileSync(join(out, name)).equals(bytes)).toBe(true);
    }
    const replaced = runCli(['synth', '--out', out, '--cases', '1', '--shape', '32,48,48', '--seed', '5', '--overwrite']);
    expect(replaced.status, replaced.stderr).toBe(0);
    expect(readFileSync(join(out, 'synth_000.npz')).equals(before[0]![2])).toBe(false);
  });

  it('rejects an output path that is a file', () => {
    const file = join(tempDir('vmat-synth-'), 'not-a-folder');
    writeFileSync(file, 'x');
    const result = runCli(['synth', '--out', file, '--cases', '1']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/not-a-folder is a file: expected a folder for the case files/);
  });

  it.each([
    [['--shape', '30,48,48'], /shape must be 3 sizes z,y,x, each a multiple of 16/],
    [['--shape', '32,48'], /--shape must be 3 comma-separated numbers/],
    [['--cases', '0'], /cases must be an integer from 1 to 1000, got 0/],
    [['--cases', '-3'], /cases must be an integer from 1 to 1000, got -3/],
    [['--seed', 'abc'], /--seed must be an integer, got 'abc'/],
    [['--spacing', '2.5,0,2'], /spacing must be 3 values z,y,x in millimetres/],
  ])('rejects %j with one sentence, exit 1', (flags, message) => {
    const result = runCli(['synth', '--out', tempDir('vmat-synth-'), ...flags]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(message);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('synthesizeCase', () => {
  it('returns the case in memory with its plan, deterministic per (seed, index)', async () => {
    const a = await synthesizeCase(2, { seed: 9, shape: [16, 32, 32], spacingMm: [5, 4, 4] });
    const b = await synthesizeCase(2, { seed: 9, shape: [16, 32, 32], spacingMm: [5, 4, 4] });
    expect(a.caseId).toBe('synth_002');
    expect(a.plan.beams).toBeGreaterThanOrEqual(36);
    expect(Buffer.from(a.dose!.buffer, a.dose!.byteOffset, a.dose!.byteLength).equals(Buffer.from(b.dose!.buffer, b.dose!.byteOffset, b.dose!.byteLength))).toBe(true);
    await expect(synthesizeCase(-1)).rejects.toThrow(/case index must be an integer from 0 to 99999/);
  });

  it('stops a cohort when its signal aborts, leaving only complete files', async () => {
    const out = tempDir('vmat-synth-');
    const controller = new AbortController();
    const run = synthesizeCohort(out, {
      cases: 4,
      shape: [16, 32, 32],
      spacingMm: [5, 4, 4],
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', message: 'synth was cancelled after 1 of 4 cases' });
    expect(readdirSync(out)).toEqual(['synth_000.npz']);
  });
});
