import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { modelSummary, readCheckpointMetadata, saveInitialWeights } from '../src/model.js';
import { runCli, tempDir } from './helpers.js';

describe('model summary', () => {
  it('has the spec parameter counts', () => {
    expect(modelSummary().parameters).toBe(23_732_801);
    expect(modelSummary({ inChannels: 10 }).parameters).toBe(23_734_145);
  });

  it('lists PyTorch parameter names and shapes', () => {
    const { layers, parameters } = modelSummary({ inChannels: 9, baseChannels: 8 });
    expect(layers[0]).toEqual({ name: 'cond.0.weight', shape: [256, 13], parameters: 3328 });
    expect(layers.map((layer) => layer.name)).toContain('dec.3.skip.bias');
    expect(layers.at(-1)).toEqual({ name: 'head.bias', shape: [1], parameters: 1 });
    expect(layers.reduce((sum, layer) => sum + layer.parameters, 0)).toBe(parameters);
  });

  it('rejects widths GroupNorm cannot take', () => {
    expect(() => modelSummary({ baseChannels: 12 })).toThrow(/multiple of 8/);
  });
});

describe('vmat-native model', () => {
  it('prints the table and the parameter count', () => {
    const result = runCli(['model']);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('enc.0.conv1.weight');
    expect(result.stdout).toContain('total: 23,732,801 parameters');
  });

  it('prints one JSON document with --json', () => {
    const result = runCli(['model', '--in-channels', '10', '--json']);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout) as { parameters: number; layers: { name: string }[] };
    expect(report.parameters).toBe(23_734_145);
    expect(report.layers[4].name).toBe('enc.0.conv1.weight');
  });

  it('saves initial weights as a checkpoint and refuses to overwrite without --overwrite', () => {
    const dir = tempDir();
    const file = join(dir, 'init.safetensors');
    const first = runCli(['model', '--base-channels', '8', '--save', file, '--seed', '3', '--json']);
    expect(first.status).toBe(0);
    expect(existsSync(file)).toBe(true);
    const { config, formatVersion, metadata } = readCheckpointMetadata(file);
    expect(config).toEqual({ architecture: 'BaselineUNet3D', inChannels: 9, baseChannels: 8, condDim: 13, embedDim: 256 });
    expect(formatVersion).toBe('1');
    expect(metadata.seed).toBe('3');
    // float32 weights plus a header: the file holds every parameter.
    expect(statSync(file).size).toBeGreaterThan(4 * modelSummary({ baseChannels: 8 }).parameters);

    const before = readFileSync(file);
    const refused = runCli(['model', '--base-channels', '8', '--save', file]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/already exists; set overwrite \(--overwrite\)/);
    expect(readFileSync(file).equals(before)).toBe(true);

    // Same seed, same weights; --overwrite replaces the file.
    const again = runCli(['model', '--base-channels', '8', '--save', file, '--seed', '3', '--overwrite']);
    expect(again.status).toBe(0);
    expect(readFileSync(file).equals(before)).toBe(true);
  });

  it('rejects bad flags with one sentence', () => {
    const bad = runCli(['model', '--base-channels', 'x']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--base-channels must be a non-negative integer/);
    const odd = runCli(['model', '--base-channels', '20']);
    expect(odd.status).toBe(1);
    expect(odd.stderr).toMatch(/multiple of 8/);
  });
});

describe('readCheckpointMetadata', () => {
  it('names the file that is not safetensors', () => {
    const file = join(tempDir(), 'notes.safetensors');
    writeFileSync(file, 'hello');
    expect(() => readCheckpointMetadata(file)).toThrow(/is not a valid safetensors file/);
    expect(() => readCheckpointMetadata(join(tempDir(), 'missing.safetensors'))).toThrow(/cannot read/);
  });

  it('is written by saveInitialWeights in-process', async () => {
    const file = join(tempDir(), 'w.safetensors');
    const saved = await saveInitialWeights(file, { baseChannels: 8, inChannels: 10, seed: 1 });
    expect(saved.parameters).toBe(modelSummary({ baseChannels: 8, inChannels: 10 }).parameters);
    expect(readCheckpointMetadata(file).config?.inChannels).toBe(10);
    await expect(saveInitialWeights(file, { baseChannels: 8 })).rejects.toThrow(/already exists/);
  });
});
