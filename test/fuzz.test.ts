/**
 * The fuzzer in CI (test/fuzz/fuzz.mjs): a few thousand mutated case files, .npy volumes, pickles, checkpoint
 * headers and configs, each read by the built readers in a watched child process. bench/fuzz.sh runs many more.
 */
import { describe, expect, it } from 'vitest';

import { runFuzz, TARGETS } from './fuzz/fuzz.mjs';

describe('fuzzing the file readers', () => {
  it('reads 600 mutated files per reader with no crash, hang or unbounded memory, refusing bad ones with one sentence', async () => {
    const { counts, failures } = (await runFuzz({ inputs: 600, seed: 20240601, jobs: 2 })) as {
      counts: Record<string, { accepted: number; refused: number }>;
      failures: { target: string; index: number; kind: string; detail: string }[];
    };
    const report = failures.map((f) => `${f.kind} ${f.target}:${f.index} ${f.detail} (node test/fuzz/fuzz.mjs --repro ${f.target}:${f.index} --seed 20240601)`);
    expect(report).toEqual([]);
    for (const target of TARGETS) {
      // Not vacuous: the mutations are both refused (they reach the checks) and sometimes still readable.
      expect(counts[target]!.refused, target).toBeGreaterThan(300);
      expect(counts[target]!.accepted, target).toBeGreaterThan(0);
      expect(counts[target]!.accepted + counts[target]!.refused, target).toBe(600);
    }
  }, 300_000);
});

describe('the fuzzer itself', () => {
  it('catches a reader that hangs, crashes, takes unbounded memory or throws something other than a refusal', async () => {
    const { failures } = (await runFuzz({ inputs: 10, seed: 1, targets: ['sabotage'], jobs: 1, timeoutMs: 3000, memoryMb: 256 })) as {
      failures: { index: number; kind: string; detail: string }[];
    };
    const byIndex = Object.fromEntries(failures.map((f) => [f.index, f]));
    for (const index of [1, 6]) expect(byIndex[index]?.kind, `input ${index}`).toBe('hang');
    for (const index of [2, 7]) expect(byIndex[index]?.kind, `input ${index}`).toBe('crash');
    for (const index of [3, 8]) expect(byIndex[index]?.detail, `input ${index}`).toMatch(/peak memory grew/);
    for (const index of [4, 9]) expect(byIndex[index]?.detail, `input ${index}`).toMatch(/TypeError: a reader bug/);
    expect(failures).toHaveLength(8);
  }, 120_000);
});
