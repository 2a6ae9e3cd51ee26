import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { repoRoot, tempDir } from './helpers.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = join(repoRoot, 'scripts', 'convert-vgg16.py');
const hasTorch = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

function convert(...args: string[]) {
  const run = spawnSync(PYTHON, [SCRIPT, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** The value of flat element k of state-dict tensor i: exact in float64 in both NumPy/PyTorch and JavaScript. */
const pattern = (k: number, i: number) => (((k * 7919 + i * 104729) % 2001) - 1000) / 1000;

/**
 * State dicts with torchvision's names and shapes, saved with torch.save in one Python process (its start costs
 * seconds): vgg16 (features.0.weight in float64, the rest float32, plus a classifier tensor), vgg16_bn, vgg19.
 */
function saveStateDicts(dir: string): void {
  const script = `
import os, sys, torch
cfg = {"vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
       "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]}
for variant in ("vgg16", "vgg16_bn", "vgg19"):
    bn = variant == "vgg16_bn"
    state, index, channels = {}, 0, 3
    for v in cfg["vgg19" if variant == "vgg19" else "vgg16"]:
        if v == "M":
            index += 1
            continue
        for part, shape in (("weight", (v, channels, 3, 3)), ("bias", (v,))):
            i = len(state)
            n = torch.Size(shape).numel()
            value = (((torch.arange(n, dtype=torch.float64) * 7919 + i * 104729) % 2001) - 1000) / 1000
            state[f"features.{index}.{part}"] = value.reshape(shape) if (index, part) == (0, "weight") else value.reshape(shape).float()
        if bn:
            state[f"features.{index + 1}.running_mean"] = torch.zeros(v)
        index += 3 if bn else 2
        channels = v
    state["classifier.6.bias"] = torch.zeros(1000)
    torch.save(state, os.path.join(sys.argv[1], variant + ".pth"))
`;
  const run = spawnSync(PYTHON, ['-c', script, dir], { encoding: 'utf8' });
  expect(run.stderr).toBe('');
}

function readHeader(path: string): Record<string, { dtype: string; shape: number[]; data_offsets: number[] }> & { __metadata__: Record<string, string> } {
  const bytes = readFileSync(path);
  const length = Number(bytes.readBigUInt64LE(0));
  return JSON.parse(bytes.subarray(8, 8 + length).toString('utf8'));
}

describe('scripts/convert-vgg16.py', () => {
  it.skipIf(!hasTorch)('writes the 13 convolutions of VGG16 under torchvision\'s names as float32, and says what is wrong with bad input', () => {
    const dir = tempDir();
    saveStateDicts(dir);
    const target = join(dir, 'out.safetensors');

    const missing = convert(join(dir, 'nope.pth'), target);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^convert-vgg16: .*nope\.pth does not exist: expected torchvision's vgg16 weights/);
    const text = join(dir, 'notes.pth');
    writeFileSync(text, 'not a checkpoint');
    const garbage = convert(text, target);
    expect(garbage.status).toBe(1);
    expect(garbage.stderr).toMatch(/notes\.pth cannot be read as a PyTorch state dict .*: expected the \.pth file of torchvision's vgg16 weights/);
    expect(convert(join(dir, 'vgg16_bn.pth'), target).stderr).toMatch(/is not torchvision's vgg16: .*\(batch-norm tensors: this looks like vgg16_bn/);
    expect(convert(join(dir, 'vgg19.pth'), target).stderr).toMatch(/is not torchvision's vgg16: .*this looks like vgg19/);
    expect(existsSync(target)).toBe(false);

    writeFileSync(target, 'mine');
    const refused = convert(join(dir, 'vgg16.pth'), target);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/out\.safetensors exists: pass --overwrite to replace it/);
    expect(readFileSync(target, 'utf8')).toBe('mine');

    const run = convert(join(dir, 'vgg16.pth'), target, '--overwrite');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/wrote .*out\.safetensors: 26 tensors of VGG16's features \(float32\)/);
    const header = readHeader(target);
    const { __metadata__: metadata, ...tensors } = header;
    expect(Object.keys(tensors)).toHaveLength(26);
    expect(tensors['features.0.weight']).toMatchObject({ dtype: 'F32', shape: [64, 3, 3, 3] });
    expect(tensors['features.28.bias']).toMatchObject({ dtype: 'F32', shape: [512] });
    expect(tensors['classifier.6.bias']).toBeUndefined();
    expect(metadata).toMatchObject({ format: 'vmat-native-vgg16-features', format_version: '1', source: 'vgg16.pth' });
    expect(metadata.source_sha256).toMatch(/^[0-9a-f]{64}$/);
    // The values: the state dict's, rounded to float32 (features.0.weight was float64), at their offsets.
    const bytes = readFileSync(target);
    const data = 8 + Number(bytes.readBigUInt64LE(0));
    for (const [name, index] of [['features.0.weight', 0], ['features.7.bias', 7], ['features.28.bias', 25]] as const) {
      const [begin, end] = tensors[name]!.data_offsets as [number, number];
      const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset + data + begin, bytes.byteOffset + data + end));
      expect(Array.from(values)).toEqual(Array.from(values, (_, k) => Math.fround(pattern(k, index))));
    }
  });
});
