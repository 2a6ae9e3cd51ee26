import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { loadCase } from '../src/data/case.js';
import { buildModelInput } from '../src/data/inputs.js';
import { encodeNpy, parseNpy } from '../src/data/npy.js';
import { predictCase } from '../src/predict/predict.js';
import { Trainer } from '../src/train/trainer.js';
import { cliPath, repoRoot, runCli, tempDir } from './helpers.js';
import { tinyCase, writeTinyCohort } from './train-cases.js';

let dataDir: string;
let checkpoint: string;
let logDir: string;

beforeAll(async () => {
  dataDir = tempDir('vmat-predict-data-');
  await writeTinyCohort(dataDir, 5);
  logDir = tempDir('vmat-predict-runs-');
  const result = await new Trainer().fit({
    dataDir,
    logDir,
    expName: 'p',
    epochs: 1,
    patchSize: 16,
    baseChannels: 8,
    patchesPerVolume: 1,
    device: 'cpu',
    threads: 1,
  });
  checkpoint = result.bestCheckpoint!;
});

function writeNpy(path: string, array: Parameters<typeof encodeNpy>[0]): void {
  writeFileSync(path, Buffer.concat(encodeNpy(array)));
}

describe('predictCase', () => {
  it('on a one-window volume equals the PyTorch reference network (best checkpoint) × normalisation dose, clamped at 0', async () => {
    const data = tinyCase(7, [32, 32, 32]);
    const predicted = await predictCase(checkpoint, data, { patchSize: 32, device: 'cpu', threads: 1, keepOutsideBody: true });
    expect(predicted.dose).toHaveLength(32 ** 3);

    const dir = tempDir('vmat-predict-ref-');
    const { input } = await buildModelInput(data);
    writeNpy(join(dir, 'input.npy'), { dtype: 'float32', shape: [9, 32, 32, 32], data: input });
    writeNpy(join(dir, 'constraints.npy'), { dtype: 'float32', shape: [13], data: data.constraints });
    const run = spawnSync('/usr/bin/python3', [join(repoRoot, 'test/fixtures/reference_predict.py'), checkpoint, join(dir, 'input.npy'), join(dir, 'constraints.npy'), join(dir, 'out.npy')], {
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    expect(run.stderr).toBe('');
    const reference = parseNpy(readFileSync(join(dir, 'out.npy'))).data as Float32Array;
    let maxDiff = 0;
    let zeros = 0;
    for (let i = 0; i < reference.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(reference[i]! - predicted.dose![i]!));
      if (predicted.dose![i] === 0) zeros++;
    }
    expect(maxDiff).toBeLessThan(1e-3); // Gy, float32 rounding of two implementations
    expect(Math.min(...predicted.dose!)).toBeGreaterThanOrEqual(0);
    expect(zeros + Math.max(...reference)).toBeGreaterThan(0);

    // By default the dose outside the body is 0, and inside it is the network's.
    const zeroed = await predictCase(checkpoint, data, { patchSize: 32, device: 'cpu', threads: 1 });
    let outside = 0;
    data.body!.forEach((inBody, i) => {
      expect(zeroed.dose![i]).toBe(inBody ? predicted.dose![i] : 0);
      if (!inBody && predicted.dose![i]! > 0) outside++;
    });
    expect(outside).toBeGreaterThan(0); // the network did put dose outside the body
    expect([zeroed.metadata.prediction_outside_body, predicted.metadata.prediction_outside_body]).toEqual(['zeroed', 'kept']);
  });

  it('overrides constraint slots by name and changes the prediction', async () => {
    const data = tinyCase(3, [16, 24, 24]);
    const plain = await predictCase(checkpoint, data, { patchSize: 16, device: 'cpu', threads: 1 });
    const changed = await predictCase(checkpoint, data, { patchSize: 16, device: 'cpu', threads: 1, constraints: { rectum_v70: 0.9, '12': 0.1 } });
    expect(changed.constraints[5]).toBeCloseTo(0.9);
    expect(changed.constraints[12]).toBeCloseTo(0.1);
    expect(Array.from(changed.dose!)).not.toEqual(Array.from(plain.dose!));
    await expect(predictCase(checkpoint, data, { constraints: { rectum_v99: 1 } })).rejects.toThrow(/unknown constraint slot 'rectum_v99'/);
  });
});

describe('vmat-native predict', () => {
  it('writes a loadable format-1 <case>_pred.npz with the input spacing, structures and masks', async () => {
    const out = tempDir('vmat-pred-out-');
    const input = join(dataDir, 'case_001.npz');
    const result = runCli(['predict', '--checkpoint', checkpoint, '--input', input, '--output_dir', out, '--patch_size', '16', '--device', 'cpu', '--threads', '1', '--constraint', 'rectum_v70=0.15']);
    expect(result.stderr + result.stdout).toMatch(/wrote 1 prediction/);
    expect(result.status).toBe(0);
    const written = await loadCase(join(out, 'case_001_pred.npz'));
    const original = await loadCase(input);
    expect(written.format).toBe('vmat-native-1');
    expect(written.spacingMm).toEqual(original.spacingMm);
    expect(written.structures).toEqual(original.structures);
    expect(Buffer.from(written.masks).equals(Buffer.from(original.masks))).toBe(true);
    expect(written.dose).toHaveLength(original.dose!.length);
    expect(written.constraints[5]).toBeCloseTo(0.15);
    expect(written.dose!.every((gy, i) => gy === 0 || original.body![i] === 1)).toBe(true);
    expect(written.metadata.prediction_outside_body).toBe('zeroed');

    const again = runCli(['predict', '--checkpoint', checkpoint, '--input', input, '--output-dir', out, '--patch-size', '16', '--device', 'cpu']);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already exists; set overwrite \(--overwrite\)/);
    const kept = runCli(['predict', '--checkpoint', checkpoint, '--input', input, '--output-dir', out, '--patch-size', '16', '--device', 'cpu', '--threads', '1', '--keep-outside-body', '--overwrite']);
    expect(kept.status).toBe(0);
    expect((await loadCase(join(out, 'case_001_pred.npz'))).metadata.prediction_outside_body).toBe('kept');
  });

  it('refuses an unreadable checkpoint or one of another architecture with one sentence, exit 1', () => {
    const dir = tempDir('vmat-pred-bad-');
    const bogus = join(dir, 'bogus.safetensors');
    writeFileSync(bogus, 'not a checkpoint');
    const bad = runCli(['predict', '--checkpoint', bogus, '--input', join(dataDir, 'case_000.npz'), '--output-dir', dir]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/checkpoint .*bogus\.safetensors cannot be read/);
    const header = Buffer.from(JSON.stringify({ __metadata__: { config: JSON.stringify({ architecture: 'ResNet50', in_channels: 9, base_channels: 48, cond_dim: 13, embed_dim: 256 }) } }));
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    const other = join(dir, 'other.safetensors');
    writeFileSync(other, Buffer.concat([length, header]));
    const wrong = runCli(['predict', '--checkpoint', other, '--input', join(dataDir, 'case_000.npz'), '--output-dir', dir]);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/not a vmat-native BaselineUNet3D checkpoint/);
    expect(existsSync(join(dir, 'case_000_pred.npz'))).toBe(false);
  });
});

describe('vmat-native train', () => {
  it('trains with the seed notebook spelling and refuses the same run folder again', () => {
    const runs = tempDir('vmat-cli-runs-');
    const args = ['train', '--exp_name', 'cli', '--data_dir', dataDir, '--log_dir', runs, '--epochs', '1', '--patch_size', '16', '--base_channels', '8', '--patches_per_volume', '1', '--device', 'cpu', '--threads', '1', '--use_gradient_loss', '--gradient_loss_weight', '0.2'];
    const first = runCli(args);
    expect(first.stderr).toMatch(/epoch 1\/1 .*val_mae/);
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/best epoch\s+1/);
    const config = JSON.parse(readFileSync(join(runs, 'cli', 'training_config.json'), 'utf8'));
    expect(config.settings).toMatchObject({ useGradientLoss: true, gradientLossWeight: 0.2, patchSize: 16 });
    const second = runCli(args);
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(/already exists: set resume \(--resume\) to continue it or overwrite \(--overwrite\)/);
  });

  it('rejects a bad flag value naming the field, the value and what is allowed', () => {
    const result = runCli(['train', '--exp-name', 'x', '--data-dir', dataDir, '--patch-size', '100']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/invalid training setting patchSize \(--patch-size\): got 100, expected a multiple of 16/);
    const file = join(tempDir('vmat-cfg-'), 'c.json');
    writeFileSync(file, JSON.stringify({ dataDir, expName: 'x', precision: 'fp4' }));
    const fromFile = runCli(['train', '--config', file]);
    expect(fromFile.status).toBe(1);
    expect(fromFile.stderr).toMatch(/precision \(--precision\): got 'fp4'/);
  });

  it('stops cleanly on Ctrl-C (SIGINT): finishes the step, writes last, stop reason aborted, exit 0', async () => {
    const runs = tempDir('vmat-cli-sigint-');
    const child = spawn(process.execPath, [cliPath, 'train', '--exp-name', 'int', '--data-dir', dataDir, '--log-dir', runs, '--epochs', '200', '--patch-size', '16', '--base-channels', '8', '--device', 'cpu', '--threads', '1'], {
      env: { ...process.env, OMP_WAIT_POLICY: 'passive' },
    });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    const status = await new Promise<number | null>((resolveExit) => {
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
        if (/epoch 1\/200/.test(stderr) && !child.killed) child.kill('SIGINT');
      });
      child.on('exit', (code) => resolveExit(code));
    });
    expect(stderr).toMatch(/stopping after this step/);
    expect(status).toBe(0);
    expect(stdout).toMatch(/stopped \(SIGINT\)/);
    expect(existsSync(join(runs, 'int', 'checkpoints', 'last.safetensors'))).toBe(true);
    expect(JSON.parse(readFileSync(join(runs, 'int', 'training_summary.json'), 'utf8')).stopReason).toBe('aborted');
  });
});
