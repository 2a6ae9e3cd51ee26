import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { lossChannels, parseTrainConfig } from '../src/config/schema.js';
import { Trainer, type EpochEvent, type TrainEvent } from '../src/train/trainer.js';
import { runCli, tempDir } from './helpers.js';
import { writeTinyCohort } from './train-cases.js';

const base = { epochs: 1, patchSize: 16, baseChannels: 8, batchSize: 2, patchesPerVolume: 2, device: 'cpu', threads: 1, numWorkers: 1, swBatch: 4 };

/** VGG16's convolutions up to relu3_3 (torchvision's features index, out, in). */
const CONVS: [number, number, number][] = [
  [0, 64, 3],
  [2, 64, 64],
  [5, 128, 64],
  [7, 128, 128],
  [10, 256, 128],
  [12, 256, 256],
  [14, 256, 256],
];

/** A safetensors file of float32 tensors with small deterministic values (first `convs` VGG16 convolutions, or other shapes). */
function writeSafetensors(path: string, tensors: [string, number[]][]): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  const data: Float32Array[] = [];
  for (const [name, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = Float32Array.from({ length: n }, (_, k) => (((k * 7919 + name.length * 104729) % 2001) - 1000) / 1000 / Math.sqrt(n / shape[0]!));
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + 4 * n] };
    offset += 4 * n;
    data.push(values);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([prefix, Buffer.from(json), ...data.map((d) => Buffer.from(d.buffer))]));
}

const vggTensors = (): [string, number[]][] => CONVS.flatMap(([i, out, inC]) => [[`features.${i}.weight`, [out, inC, 3, 3]] as [string, number[]], [`features.${i}.bias`, [out]] as [string, number[]]]);

let dataDir: string;
let vgg: string;
beforeAll(async () => {
  dataDir = tempDir('vmat-losses-data-');
  await writeTinyCohort(dataDir, 5);
  vgg = join(tempDir('vmat-vgg-'), 'vgg16.safetensors');
  writeSafetensors(vgg, vggTensors());
});

function epochOf(events: TrainEvent[]): EpochEvent {
  return events.find((e): e is EpochEvent => e.type === 'epoch')!;
}

describe('the later loss terms in training', () => {
  it('derives the structure channels: PTVs are targets, the rest boundaries, all DVH', () => {
    const config = parseTrainConfig({ dataDir: 'd', expName: 'e' });
    expect(lossChannels(config)).toEqual({ targetChannels: [1, 2], boundaryChannels: [3, 4, 5, 6, 7, 8], dvhChannels: [1, 2, 3, 4, 5, 6, 7, 8] });
    const named = parseTrainConfig({ dataDir: 'd', expName: 'e', targetStructures: ['ptv70'], boundaryStructures: ['Rectum', 'Bladder'], dvhStructures: ['PTV70', 'Rectum'] });
    expect(lossChannels(named)).toEqual({ targetChannels: [1], boundaryChannels: [4, 5], dvhChannels: [1, 4] });
    expect(() => parseTrainConfig({ dataDir: 'd', expName: 'e', dvhStructures: ['Liver'] })).toThrow("invalid training setting dvhStructures: 'Liver' is not one of the structures");
  });

  it('trains with the structure-weighted MSE, asymmetric PTV and DVH terms, each in the total and in metrics.csv', async () => {
    const logDir = tempDir('vmat-losses-');
    const events: TrainEvent[] = [];
    const weights = { structureWeightedWeight: 0.7, asymmetricPtvWeight: 0.4, dvhLossWeight: 0.3 };
    await new Trainer().fit(
      { ...base, dataDir, logDir, expName: 'terms', useStructureWeighted: true, useAsymmetricPtv: true, useDvhLoss: true, ...weights },
      { onProgress: (e) => events.push(e) },
    );
    const epoch = epochOf(events);
    for (const key of ['trainStructureWeighted', 'trainAsymmetricPtv', 'trainDvh'] as const) expect(epoch[key], key).toBeGreaterThan(0);
    expect(epoch.trainVgg).toBeUndefined();
    // The mean of the step totals is the weighted sum of the mean terms.
    const total = epoch.trainMse + 0.1 * epoch.trainNeg + 0.7 * epoch.trainStructureWeighted! + 0.4 * epoch.trainAsymmetricPtv! + 0.3 * epoch.trainDvh!;
    expect(epoch.trainLoss).toBeCloseTo(total, 6);
    const [header, row] = readFileSync(join(logDir, 'terms', 'metrics.csv'), 'utf8').trim().split('\n').map((line) => line.split(','));
    expect(header).toEqual(['epoch', 'lr', 'train_loss', 'train_mse', 'train_grad', 'train_neg', 'train_structure_weighted', 'train_asymmetric_ptv', 'train_dvh', 'val_loss', 'val_mae_gy', 'val_mae_ptv70_gy', 'epoch_seconds', 'voxels_per_second']);
    expect(Number(row![header!.indexOf('train_dvh')])).toBeCloseTo(epoch.trainDvh!, 8);
  });

  it('trains with the VGG loss from a VGG16 safetensors file', async () => {
    const logDir = tempDir('vmat-losses-');
    const events: TrainEvent[] = [];
    await new Trainer().fit({ ...base, dataDir, logDir, expName: 'vgg', useVggLoss: true, vggWeights: vgg, vggLossWeight: 0.5, vggSliceStride: 4 }, { onProgress: (e) => events.push(e) });
    const epoch = epochOf(events);
    expect(epoch.trainVgg).toBeGreaterThan(0);
    expect(epoch.trainLoss).toBeCloseTo(epoch.trainMse + 0.1 * epoch.trainNeg + 0.5 * epoch.trainVgg!, 6);
    expect(readFileSync(join(logDir, 'vgg', 'metrics.csv'), 'utf8').split('\n')[0]).toContain(',train_neg,train_vgg,val_loss,');
  });

  it('refuses the VGG loss without weights, or with a file that is not VGG16, before making the run folder', () => {
    const logDir = tempDir('vmat-losses-');
    const common = ['train', '--data-dir', dataDir, '--log-dir', logDir, '--exp-name', 'bad', '--epochs', '1', '--patch-size', '16', '--base-channels', '8'];
    const without = runCli([...common, '--use-vgg-loss']);
    expect(without.status).toBe(1);
    expect(without.stderr.trim()).toBe("vmat-native: useVggLoss (--use-vgg-loss) needs vggWeights (--vgg-weights): a VGG16 safetensors file, which scripts/convert-vgg16.py writes from torchvision's vgg16 weights");
    const other = join(logDir, 'vgg19-like.safetensors');
    writeSafetensors(other, vggTensors().map(([name, shape]) => [name, name === 'features.5.weight' ? [128, 64, 1, 1] : shape]));
    const wrong = runCli([...common, '--use-vgg-loss', '--vgg-weights', other]);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toContain(`is not VGG16: features.5.weight has shape [128, 64, 1, 1], VGG16's is [128, 64, 3, 3]`);
    const missing = runCli([...common, '--use-vgg-loss', '--vgg-weights', join(logDir, 'none.safetensors')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('cannot be read');
    expect(existsSync(join(logDir, 'bad'))).toBe(false);
  });
});
