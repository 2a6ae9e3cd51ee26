/**
 * TensorBoard event files (`fit({ tensorboard: true })`, `train --tensorboard`), so a run can be watched live with
 * `tensorboard --logdir <log-dir>`. Written without TensorFlow: the file is TFRecord framing (length, masked CRC-32C
 * of the length, payload, masked CRC-32C of the payload; little-endian) around `tensorflow.Event` protocol buffers,
 * the first holding `file_version: "brain.Event:2"`, the rest a `Summary` of scalar values (`simple_value`), as
 * TensorFlow's and tensorboardX's writers do. The file lies in the run folder itself, so TensorBoard names the run
 * after it.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

import type { TrainEvent } from '../train/events.js';
import { TENSORBOARD_FILE_PREFIX } from './layout.js';

// ---------------------------------------------------------------- CRC-32C (Castagnoli), as TFRecord uses it

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 bits and add a constant (so a CRC of CRCs is not degenerate). */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: uint64 length, masked CRC of those 8 bytes, the payload, masked CRC of the payload. */
export function tfRecord(payload: Uint8Array): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(payload.length), 0);
  header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc32c(payload), 0);
  return Buffer.concat([header, payload, footer]);
}

// ---------------------------------------------------------------- the few protocol-buffer fields needed

function varint(value: number | bigint): Buffer {
  let v = BigInt(value);
  if (v < 0n) v += 1n << 64n; // int64 two's complement, as protobuf encodes negative int64
  const bytes: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    bytes.push(byte);
  } while (v > 0n);
  return Buffer.from(bytes);
}

const key = (field: number, wireType: number) => varint((field << 3) | wireType);
const lengthDelimited = (field: number, bytes: Uint8Array) => Buffer.concat([key(field, 2), varint(bytes.length), bytes]);

function double(field: number, value: number): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeDoubleLE(value, 0);
  return Buffer.concat([key(field, 1), bytes]);
}

function float(field: number, value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeFloatLE(value, 0);
  return Buffer.concat([key(field, 5), bytes]);
}

export interface Scalar {
  tag: string;
  value: number;
}

/**
 * A serialised `tensorflow.Event` (event.proto: wall_time = 1 double, step = 2 int64, file_version = 3 string,
 * summary = 5) whose Summary (summary.proto: repeated Value value = 1; Value: tag = 1, simple_value = 2 float) holds
 * the scalars.
 */
export function eventProto(event: { wallTime: number; step?: number; fileVersion?: string; scalars?: Scalar[] }): Buffer {
  const parts = [double(1, event.wallTime)];
  if (event.step !== undefined && event.step !== 0) parts.push(key(2, 0), varint(event.step));
  if (event.fileVersion !== undefined) parts.push(lengthDelimited(3, Buffer.from(event.fileVersion, 'utf8')));
  if (event.scalars) {
    const values = event.scalars.map((s) => lengthDelimited(1, Buffer.concat([lengthDelimited(1, Buffer.from(s.tag, 'utf8')), float(2, s.value)])));
    parts.push(lengthDelimited(5, Buffer.concat(values)));
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------- the run's event file

/** The scalars of a training event and the global step they belong to (none for events without numbers). */
export function trainEventScalars(event: TrainEvent, options: { gradientLoss: boolean }): { step: number; scalars: Scalar[] } | null {
  const finite = (scalars: Scalar[]) => scalars.filter((s) => Number.isFinite(s.value));
  if (event.type === 'step') {
    // One global step count across epochs, so the per-step curve runs on.
    return { step: (event.epoch - 1) * event.steps + event.step, scalars: finite([{ tag: 'step/loss', value: event.loss }, { tag: 'step/lr', value: event.lr }, { tag: 'step/voxels_per_second', value: event.voxelsPerSecond }]) };
  }
  if (event.type === 'epoch') {
    return {
      step: event.epoch,
      scalars: finite([
        { tag: 'loss/train', value: event.trainLoss },
        { tag: 'loss/val', value: event.valLoss },
        { tag: 'loss/train_mse', value: event.trainMse },
        // Without the gradient loss its term is not trained on: no flat line of zeros.
        ...(options.gradientLoss ? [{ tag: 'loss/train_gradient', value: event.trainGrad }] : []),
        { tag: 'loss/train_negative_dose', value: event.trainNeg },
        { tag: 'val_mae_gy/body', value: event.valMaeGy },
        ...(event.valMaePtv70Gy === null ? [] : [{ tag: 'val_mae_gy/ptv70', value: event.valMaePtv70Gy }]),
        { tag: 'epoch/lr', value: event.lr },
        { tag: 'epoch/seconds', value: event.epochSeconds },
        { tag: 'epoch/voxels_per_second', value: event.voxelsPerSecond },
        { tag: 'epoch/data_wait_fraction', value: event.dataWaitFraction },
      ]),
    };
  }
  return null;
}

let filesOpened = 0;

/** Appends the scalars of training events to one `events.out.tfevents.<seconds>.<host>…` file in the run folder. */
export class TensorBoardLog {
  readonly path: string;
  private readonly gradientLoss: boolean;

  constructor(runDir: string, options: { gradientLoss: boolean; now?: Date }) {
    const now = options.now ?? new Date();
    // A resumed run adds a file; TensorBoard reads a folder's event files in the order of their names.
    this.path = join(runDir, `${TENSORBOARD_FILE_PREFIX}${Math.floor(now.getTime() / 1000)}.${os.hostname().replace(/[^A-Za-z0-9.-]/g, '_')}.${process.pid}.${filesOpened++}`);
    this.gradientLoss = options.gradientLoss;
    writeFileSync(this.path, tfRecord(eventProto({ wallTime: now.getTime() / 1000, fileVersion: 'brain.Event:2' })), { flag: 'wx' });
  }

  /** Writes the event's scalars, if it has any (appended at once, so TensorBoard shows them while training runs). */
  write(event: TrainEvent, now: Date = new Date()): void {
    const entry = trainEventScalars(event, { gradientLoss: this.gradientLoss });
    if (!entry || entry.scalars.length === 0) return;
    appendFileSync(this.path, tfRecord(eventProto({ wallTime: now.getTime() / 1000, step: entry.step, scalars: entry.scalars })));
  }
}
