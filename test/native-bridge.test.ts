import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { describe, expect, it } from 'vitest';

import { parseTrainConfig } from '../src/config/schema.js';
import { loadNative } from '../src/native/loader.js';
import { SINGLE_PROCESS } from '../src/train/distributed.js';
import { NATIVE_TRAIN_FIELDS, nativeTrainSettings, type NativeTrainSettings } from '../src/train/native-settings.js';
import { repoRoot } from './helpers.js';

/** The engine's settings of a tiny run, built as fit() builds them. */
function settings(): NativeTrainSettings {
  const config = parseTrainConfig({ dataDir: 'data', expName: 'bridge', device: 'cpu', patchSize: 16, baseChannels: 8 });
  return nativeTrainSettings(config, { condDim: 13, leftRightPairs: [[6, 7]], checkpointDir: '/nonexistent/checkpoints', resume: false, resumeFrom: '', checkpointMetadata: { structures: '[]' }, targetChannels: [1, 2], boundaryChannels: [3], dvhChannels: [1, 2, 3], distributed: SINGLE_PROCESS });
}

function tinyCase(constraints = 13) {
  const voxels = 16 * 16 * 16;
  return { id: 'case_a', input: new Float32Array(9 * voxels), shape: [9, 16, 16, 16] as [number, number, number, number], dose: new Float32Array(voxels), constraints: new Float32Array(constraints) };
}

/** The error of a settings object the bridge refuses (it refuses before any work starts). */
function refusal(value: Record<string, unknown>, cases = { train: [tinyCase()], val: [tinyCase()] }): { code?: string; message: string } {
  try {
    void loadNative().trainModel(cases, value as unknown as NativeTrainSettings, {}).catch(() => undefined);
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error('the bridge accepted the settings');
}

describe('the typed settings bridge (binding/settings.h)', () => {
  it('sends exactly the schema fields the engine reads, with the run\'s own', () => {
    expect(Object.keys(settings()).sort()).toEqual([...NATIVE_TRAIN_FIELDS, 'condDim', 'leftRightPairs', 'checkpointDir', 'resume', 'resumeFrom', 'checkpointMetadata', 'targetChannels', 'boundaryChannels', 'dvhChannels', 'distributed'].sort());
  });

  it('refuses a missing key, naming it', () => {
    const { epochs: _epochs, ...rest } = settings();
    const error = refusal(rest);
    expect(error.code).toBe('VMAT_INVALID_INPUT');
    expect(error.message).toBe("the training setting 'epochs' is missing");
  });

  it('refuses a misspelt key, naming it, even where the right one is there too', () => {
    const error = refusal({ ...settings(), pacthSize: 32 });
    expect(error.code).toBe('VMAT_INVALID_INPUT');
    expect(error.message).toMatch(/^unknown training setting 'pacthSize' \(the native side reads: .*patchSize/);
  });

  it('refuses a wrongly typed key, naming it and what was expected', () => {
    expect(refusal({ ...settings(), epochs: '2' }).message).toBe("the training setting 'epochs' must be a whole number, got a string");
    expect(refusal({ ...settings(), epochs: 2.5 }).message).toBe("the training setting 'epochs' must be a whole number, got 2.5");
    expect(refusal({ ...settings(), useGradientLoss: 1 }).message).toBe("the training setting 'useGradientLoss' must be true or false, got a number");
    expect(refusal({ ...settings(), betas: [0.9] }).message).toMatch(/^the training setting 'betas' must be an array of 2 finite numbers/);
    expect(refusal({ ...settings(), leftRightPairs: [[6]] }).message).toMatch(/^the training setting 'leftRightPairs' must be an array of \[a, b\] pairs/);
    expect(refusal({ ...settings(), checkpointMetadata: { structures: 3 } }).message).toMatch(/'checkpointMetadata' must be an object of strings \(its entry 'structures' is a number\)/);
    expect(refusal({ ...settings(), seed: -1 }).message).toBe("the training setting 'seed' must be a whole number >= 0, got -1");
    expect(refusal({ ...settings(), dvhChannels: [1, 'PTV70'] }).message).toBe("the training setting 'dvhChannels' must be an array of whole numbers");
    expect(refusal({ ...settings(), distributed: { ...SINGLE_PROCESS, wordSize: 2 } }).message).toMatch(/^unknown distributed setting 'wordSize'/);
    expect(refusal({ ...settings(), distributed: { ...SINGLE_PROCESS, rank: -1 } }).message).toBe("the distributed setting 'rank' must be a whole number >= 0, got -1");
  });

  it('refuses a case whose conditioning vector is not condDim long, and an unknown case field', () => {
    expect(refusal({ ...settings() }, { train: [tinyCase(12)], val: [tinyCase()] }).message).toBe('case_a.constraints holds 12 values but its shape needs 13');
    expect(refusal({ ...settings() }, { train: [{ ...tinyCase(), ptv: new Uint8Array(16 ** 3) } as ReturnType<typeof tinyCase>], val: [tinyCase()] }).message).toMatch(
      /^unknown training case field 'ptv'/,
    );
  });

  it('refuses a missing or unknown prediction setting, naming it', () => {
    const native = loadNative();
    const call = (value: Record<string, unknown>) => () =>
      void native.predictDose('/nonexistent.safetensors', new Float32Array(9 * 16 ** 3), [9, 16, 16, 16], new Float32Array(13), value as never, {}).catch(() => undefined);
    const good = { patchSize: 16, overlap: 0.5, swBatch: 1, device: 'cpu', normalisationDoseGy: 70 };
    const { overlap: _overlap, ...missing } = good;
    expect(call(missing)).toThrow("the prediction setting 'overlap' is missing");
    expect(call({ ...good, swbatch: 2 })).toThrow(/^unknown prediction setting 'swbatch'/);
    expect(call({ ...good, device: 0 })).toThrow("the prediction setting 'device' must be a string, got a number");
  });

  it('refuses the arguments of every native call without crashing the process later (it crashed at exit)', () => {
    // A refusal thrown from a worker's constructor freed it while its thread-safe function still pointed at it.
    const loader = pathToFileURL(join(repoRoot, 'dist', 'native', 'loader.js')).href;
    const script = `
      const { loadNative } = await import(${JSON.stringify(loader)});
      const native = loadNative();
      const refused = [];
      const attempt = (name, call) => { try { void call().catch(() => undefined); } catch (error) { refused.push(name); } };
      attempt('trainModel', () => native.trainModel({ train: 1 }, {}, {}));
      attempt('predictDose', () => native.predictDose(1, new Float32Array(1), [1], new Float32Array(1), {}, {}));
      attempt('synthCase', () => native.synthCase('a', 0, [8, 8, 8], [1, 1, 1], {}));
      attempt('signedDistanceMaps', () => native.data.signedDistanceMaps(new Uint8Array(1), [2, 2, 2], [1, 1, 1], {}));
      attempt('deriveBodyMask', () => native.data.deriveBodyMask(new Float32Array(1), [2, 2, 2], {}));
      console.log(refused.join(','));`;
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('trainModel,predictDose,synthCase,signedDistanceMaps,deriveBodyMask');
    expect(result.status).toBe(0);
  });
});

