/**
 * A small DICOM writer: Part 10 files in explicit VR little endian, defined lengths, UTF-8 text (ISO_IR 192). It
 * writes what `exportRtDose` needs (strings, US/UL/AT, OB/OW, sequences) and nothing more; pydicom and DCMTK
 * read its files back in the tests.
 */
import { randomUUID } from 'node:crypto';

export interface DicomElement {
  /** (group << 16) | element */
  tag: number;
  vr: string;
  value: string | readonly string[] | number | readonly number[] | Uint8Array | readonly DicomElement[][];
}

const LONG_LENGTH_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT']);
const STRING_VRS = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);
const encoder = new TextEncoder();

/** A new UID under the UUID-derived root 2.25 (PS3.5 B.2): unique without a registered organisation root. */
export function newUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

/** A decimal string (DS) of at most 16 characters, as precise as that allows. */
export function decimalString(value: number): string {
  if (!Number.isFinite(value)) throw new Error(`a DS value must be finite, got ${value}`);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
  for (let digits = 16; digits >= 1; digits--) {
    const text = String(Number(value.toPrecision(digits))).replace('e+', 'e');
    if (text.length <= 16) return text;
  }
  return value.toExponential(6);
}

function valueBytes(element: DicomElement): Uint8Array {
  const { vr, value } = element;
  if (vr === 'SQ') return sequenceBytes(value as readonly DicomElement[][]);
  if (value instanceof Uint8Array) return value.length % 2 ? concat([value, new Uint8Array(1)]) : value;
  if (STRING_VRS.has(vr)) {
    const text = Array.isArray(value) ? value.map(String).join('\\') : String(value);
    const bytes = encoder.encode(text);
    if (bytes.length % 2 === 0) return bytes;
    const padded = new Uint8Array(bytes.length + 1);
    padded.set(bytes);
    padded[bytes.length] = vr === 'UI' ? 0 : 0x20;
    return padded;
  }
  const numbers = (Array.isArray(value) ? value : [value]) as number[];
  if (vr === 'US' || vr === 'AT') {
    const out = new Uint8Array(numbers.length * (vr === 'AT' ? 4 : 2));
    const view = new DataView(out.buffer);
    numbers.forEach((n, i) => {
      if (vr === 'AT') {
        view.setUint16(i * 4, n >>> 16, true);
        view.setUint16(i * 4 + 2, n & 0xffff, true);
      } else {
        view.setUint16(i * 2, n, true);
      }
    });
    return out;
  }
  if (vr === 'UL') {
    const out = new Uint8Array(numbers.length * 4);
    numbers.forEach((n, i) => new DataView(out.buffer).setUint32(i * 4, n, true));
    return out;
  }
  throw new Error(`the DICOM writer has no encoding for VR ${vr}`);
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((total, chunk) => total + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

function header(tag: number, vr: string, length: number): Uint8Array {
  const long = LONG_LENGTH_VRS.has(vr);
  const out = new Uint8Array(long ? 12 : 8);
  const view = new DataView(out.buffer);
  view.setUint16(0, tag >>> 16, true);
  view.setUint16(2, tag & 0xffff, true);
  out[4] = vr.charCodeAt(0);
  out[5] = vr.charCodeAt(1);
  if (long) view.setUint32(8, length, true);
  else {
    if (length > 0xfffe) throw new Error(`the value of (${(tag >>> 16).toString(16)},${(tag & 0xffff).toString(16)}) is ${length} bytes: more than VR ${vr} can hold`);
    view.setUint16(6, length, true);
  }
  return out;
}

function sequenceBytes(items: readonly DicomElement[][]): Uint8Array {
  return concat(
    items.map((item) => {
      const body = concat(dataSetChunks(item));
      const start = new Uint8Array(8);
      const view = new DataView(start.buffer);
      view.setUint16(0, 0xfffe, true);
      view.setUint16(2, 0xe000, true);
      view.setUint32(4, body.length, true);
      return concat([start, body]);
    }),
  );
}

/** A data set's bytes, elements in tag order (as the standard requires). */
function dataSetChunks(elements: readonly DicomElement[]): Uint8Array[] {
  return [...elements]
    .sort((a, b) => a.tag - b.tag)
    .flatMap((element) => {
      const bytes = valueBytes(element);
      return [header(element.tag, element.vr, bytes.length), bytes];
    });
}

const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
/** This writer's implementation class UID (a fixed 2.25 UUID UID) and version name. */
const IMPLEMENTATION_CLASS_UID = '2.25.258466386466349131582305519384366431405';

/** A Part 10 file: preamble, DICM, the file meta group, then the data set. */
export function part10Chunks(sopClassUid: string, sopInstanceUid: string, elements: readonly DicomElement[], versionName: string): Uint8Array[] {
  const meta = concat(
    dataSetChunks([
      { tag: 0x00020001, vr: 'OB', value: new Uint8Array([0, 1]) },
      { tag: 0x00020002, vr: 'UI', value: sopClassUid },
      { tag: 0x00020003, vr: 'UI', value: sopInstanceUid },
      { tag: 0x00020010, vr: 'UI', value: EXPLICIT_VR_LITTLE_ENDIAN },
      { tag: 0x00020012, vr: 'UI', value: IMPLEMENTATION_CLASS_UID },
      { tag: 0x00020013, vr: 'SH', value: versionName.slice(0, 16) },
    ]),
  );
  const groupLength = concat([header(0x00020000, 'UL', 4), valueBytes({ tag: 0x00020000, vr: 'UL', value: meta.length })]);
  const preamble = new Uint8Array(132);
  preamble.set([0x44, 0x49, 0x43, 0x4d], 128);
  return [preamble, groupLength, meta, ...dataSetChunks(elements)];
}
