/**
 * Reading one DICOM file with dicom-parser: Part 10 files in implicit or explicit VR little endian, explicit VR big
 * endian or deflated explicit little endian, and bare data sets without the Part 10 preamble and meta header (their
 * encoding is recognised from the first element). Values are read by the VR the standard gives each tag, so that
 * implicit-VR files (which do not carry VRs) read the same as explicit ones.
 */
import { inflateRawSync } from 'node:zlib';

import dicomParser, { type DataSet, type Element } from 'dicom-parser';

import { invalidInput } from '../errors.js';

const IMPLICIT_LITTLE = '1.2.840.10008.1.2';
const EXPLICIT_LITTLE = '1.2.840.10008.1.2.1';
const DEFLATED_LITTLE = '1.2.840.10008.1.2.1.99';
const EXPLICIT_BIG = '1.2.840.10008.1.2.2';
const NATIVE_SYNTAXES = new Set([IMPLICIT_LITTLE, EXPLICIT_LITTLE, DEFLATED_LITTLE, EXPLICIT_BIG]);

/** Names of the compressed transfer syntaxes met most often, for the message that refuses them. */
const COMPRESSED_NAMES: [string, string][] = [
  ['1.2.840.10008.1.2.4.50', 'JPEG Baseline'],
  ['1.2.840.10008.1.2.4.51', 'JPEG Extended'],
  ['1.2.840.10008.1.2.4.57', 'JPEG Lossless'],
  ['1.2.840.10008.1.2.4.70', 'JPEG Lossless'],
  ['1.2.840.10008.1.2.4.80', 'JPEG-LS Lossless'],
  ['1.2.840.10008.1.2.4.81', 'JPEG-LS'],
  ['1.2.840.10008.1.2.4.90', 'JPEG 2000 Lossless'],
  ['1.2.840.10008.1.2.4.91', 'JPEG 2000'],
  ['1.2.840.10008.1.2.5', 'RLE Lossless'],
];

const LATIN1 = new TextDecoder('latin1');
const UTF8 = new TextDecoder('utf-8');
const VRS = new Set('AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(' '));

/** The pixel data of a file as stored, before any scaling. */
export interface PixelBytes {
  bytes: Uint8Array;
  /**
   * Explicit VR big endian with VR OW: 16-bit words are byte-swapped, whatever Bits Allocated is (OW is a string of
   * 16-bit words; DCMTK writes 32-bit doses so). pydicom 2.3 instead reads such a dose as 32-bit big-endian values.
   */
  swapWords: boolean;
}

/** One parsed file, or one item of a sequence; getters return undefined for absent or empty values. */
export class DicomObject {
  constructor(
    readonly path: string,
    private readonly dataSet: DataSet,
    readonly transferSyntax: string,
    private readonly utf8: boolean,
  ) {}

  has(tag: string): boolean {
    const element = this.dataSet.elements[tag];
    return element !== undefined && (element.length > 0 || element.items !== undefined);
  }

  /** A code string or UID, without padding (the first value of a multi-valued element unless `whole`). */
  string(tag: string): string | undefined {
    const value = this.raw(tag);
    if (value === undefined) return undefined;
    const text = value.replace(/[\0 ]+$/, '').replace(/^ +/, '');
    return text === '' ? undefined : text;
  }

  /** Free text (names, descriptions) in the file's character set: UTF-8 for ISO_IR 192, else Latin-1. */
  text(tag: string): string | undefined {
    const element = this.dataSet.elements[tag];
    if (!element || element.length === 0) return undefined;
    const bytes = this.dataSet.byteArray.subarray(element.dataOffset, element.dataOffset + element.length);
    const text = (this.utf8 ? UTF8 : LATIN1).decode(bytes).replace(/[\0 ]+$/, '').replace(/^ +/, '');
    return text === '' ? undefined : text;
  }

  /** A decimal or integer string's values (DS, IS), checked to be finite numbers. */
  numbers(tag: string, what: string): number[] | undefined {
    const value = this.raw(tag);
    if (value === undefined) return undefined;
    const parts = value.replace(/[\0 ]+$/, '').split('\\');
    if (parts.length === 1 && parts[0]!.trim() === '') return undefined;
    const numbers = parts.map((part) => (part.trim() === '' ? NaN : Number(part)));
    const bad = numbers.findIndex((number) => !Number.isFinite(number));
    if (bad >= 0) throw invalidInput(`${this.path}: ${what} (${tagText(tag)}) holds '${parts[bad]}', which is not a number`);
    return numbers;
  }

  number(tag: string, what: string): number | undefined {
    return this.numbers(tag, what)?.[0];
  }

  /** An unsigned 16-bit value (US). */
  uint16(tag: string): number | undefined {
    return this.has(tag) ? this.dataSet.uint16(tag) : undefined;
  }

  /** The items of a sequence (empty when absent). */
  sequence(tag: string): DicomObject[] {
    const element = this.dataSet.elements[tag];
    return (element?.items ?? []).flatMap((item) => (item.dataSet ? [new DicomObject(this.path, item.dataSet, this.transferSyntax, this.utf8)] : []));
  }

  /** The pixel data, refused with one sentence when it is compressed. */
  pixelBytes(what: string): PixelBytes {
    const element: Element | undefined = this.dataSet.elements.x7fe00010;
    if (!element || element.length === 0) throw invalidInput(`${this.path}: the ${what} has no pixel data`);
    if (element.encapsulatedPixelData || !NATIVE_SYNTAXES.has(this.transferSyntax)) {
      const name = COMPRESSED_NAMES.find(([uid]) => uid === this.transferSyntax)?.[1] ?? 'compressed';
      throw invalidInput(
        `${this.path}: the ${what}'s pixel data is ${name} (transfer syntax ${this.transferSyntax}), which vmat-native does not decode; ` +
          `decompress it first (dcmtk: dcmdjpeg, dcmdrle or dcmconv +te; or gdcmconv --raw)`,
      );
    }
    const end = element.dataOffset + element.length;
    if (end > this.dataSet.byteArray.length) throw invalidInput(`${this.path}: the ${what}'s pixel data is truncated (${element.length} bytes declared, ${this.dataSet.byteArray.length - element.dataOffset} present)`);
    return { bytes: this.dataSet.byteArray.subarray(element.dataOffset, end), swapWords: this.transferSyntax === EXPLICIT_BIG && element.vr !== 'OB' };
  }

  private raw(tag: string): string | undefined {
    const element = this.dataSet.elements[tag];
    if (!element || element.length === 0) return undefined;
    return LATIN1.decode(this.dataSet.byteArray.subarray(element.dataOffset, element.dataOffset + element.length));
  }
}

/** (gggg,eeee) for messages. */
function tagText(tag: string): string {
  return `(${tag.slice(1, 5).toUpperCase()},${tag.slice(5, 9).toUpperCase()})`;
}

/**
 * The transfer syntax of a data set that starts at byte 0 (no preamble): its first element is a group 0008 (or
 * 0002) tag; explicit VR when bytes 4-5 are a VR; big endian when the group reads byte-swapped. Undefined when the
 * bytes do not start a data set.
 */
function sniffBareDataSet(bytes: Uint8Array): string | undefined {
  if (bytes.length < 8) return undefined;
  const littleGroup = bytes[0]! | (bytes[1]! << 8);
  const bigGroup = (bytes[0]! << 8) | bytes[1]!;
  const vr = String.fromCharCode(bytes[4]!, bytes[5]!);
  if (littleGroup === 0x0008 || littleGroup === 0x0002) return VRS.has(vr) ? EXPLICIT_LITTLE : IMPLICIT_LITTLE;
  if (bigGroup === 0x0008 && VRS.has(vr)) return EXPLICIT_BIG;
  return undefined;
}

function isPart10(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

/** Whether the bytes look like DICOM at all (a Part 10 marker, or a bare data set). */
export function looksLikeDicom(bytes: Uint8Array): boolean {
  return isPart10(bytes) || sniffBareDataSet(bytes) !== undefined;
}

export interface ParseOptions {
  /** Stop before the pixel data (the scan needs only the attributes). */
  untilPixelData?: boolean;
}

/** Parses a file's bytes; errors are one sentence naming the file. */
export function parseDicom(path: string, bytes: Uint8Array, options: ParseOptions = {}): DicomObject {
  const part10 = isPart10(bytes);
  const bare = part10 ? undefined : sniffBareDataSet(bytes);
  if (!part10 && !bare) throw invalidInput(`${path} is not a DICOM file (no DICM marker at byte 128 and no data set at its start)`);
  let dataSet: DataSet;
  try {
    // dicom-parser treats a bare data set as the transfer syntax given; for big endian, which it does not read
    // without a meta header, the data set is wrapped in one.
    const input = bare === EXPLICIT_BIG ? withMetaHeader(bytes, EXPLICIT_BIG) : bytes;
    dataSet = dicomParser.parseDicom(input, {
      ...(bare && bare !== EXPLICIT_BIG ? { TransferSyntaxUID: bare } : {}),
      ...(options.untilPixelData ? { untilTag: 'x7fe00010' } : {}),
      inflater,
    });
  } catch (error) {
    const reason = parserMessage(error);
    throw invalidInput(`${path} is not a readable DICOM file: ${reason}`);
  }
  const transferSyntax = (bare ?? dataSet.string('x00020010') ?? IMPLICIT_LITTLE).replace(/\0/g, '').trim();
  const charset = dataSet.string('x00080005') ?? '';
  return new DicomObject(path, dataSet, transferSyntax, /ISO_IR 192/.test(charset));
}

/** Deflated explicit VR little endian: the data set after the meta header, inflated (dicom-parser's own needs a Buffer). */
function inflater(bytes: Uint8Array, position: number): Uint8Array {
  const inflated = inflateRawSync(bytes.subarray(position));
  const whole = new Uint8Array(position + inflated.length);
  whole.set(bytes.subarray(0, position));
  whole.set(inflated, position);
  return whole;
}

function parserMessage(error: unknown): string {
  const inner = (error as { exception?: unknown })?.exception ?? error;
  const text = inner instanceof Error ? inner.message : String(inner);
  return text.replace(/^dicomParser\.[A-Za-z]+: /, '').replace(/\.$/, '');
}

/** A Part 10 preamble and a minimal meta header (transfer syntax only) in front of a bare data set. */
function withMetaHeader(bytes: Uint8Array, transferSyntax: string): Uint8Array {
  const uid = transferSyntax.length % 2 ? `${transferSyntax}\0` : transferSyntax;
  const element = new Uint8Array(8 + uid.length);
  const view = new DataView(element.buffer);
  view.setUint16(0, 0x0002, true);
  view.setUint16(2, 0x0010, true);
  element[4] = 0x55; // 'U'
  element[5] = 0x49; // 'I'
  view.setUint16(6, uid.length, true);
  for (let i = 0; i < uid.length; i++) element[8 + i] = uid.charCodeAt(i);
  const out = new Uint8Array(132 + element.length + bytes.length);
  out.set([0x44, 0x49, 0x43, 0x4d], 128);
  out.set(element, 132);
  out.set(bytes, 132 + element.length);
  return out;
}

/**
 * Pixel values as numbers: `bitsAllocated` 8, 16 or 32, signed per `pixelRepresentation` (1 = two's complement),
 * little endian after undoing the word swap of big-endian files.
 */
export function decodePixels(pixels: PixelBytes, bitsAllocated: number, signed: boolean, count: number, what: string, path: string): Int32Array | Uint32Array | Int16Array | Uint16Array | Uint8Array | Int8Array {
  const bytesPer = bitsAllocated / 8;
  if (![8, 16, 32].includes(bitsAllocated)) throw invalidInput(`${path}: the ${what} has ${bitsAllocated} bits allocated per pixel; expected 8, 16 or 32`);
  const needed = count * bytesPer;
  if (pixels.bytes.length < needed) throw invalidInput(`${path}: the ${what}'s pixel data holds ${pixels.bytes.length} bytes; its size needs ${needed}`);
  // A fresh, aligned copy: the file's buffer offset may be odd, and big-endian words are swapped in place.
  const copy = new Uint8Array(needed + (needed % 2));
  copy.set(pixels.bytes.subarray(0, needed));
  if (pixels.swapWords) {
    for (let i = 0; i + 1 < copy.length; i += 2) {
      const byte = copy[i]!;
      copy[i] = copy[i + 1]!;
      copy[i + 1] = byte;
    }
  }
  const buffer = copy.buffer;
  if (bitsAllocated === 8) return signed ? new Int8Array(buffer, 0, count) : new Uint8Array(buffer, 0, count);
  if (bitsAllocated === 16) return signed ? new Int16Array(buffer, 0, count) : new Uint16Array(buffer, 0, count);
  return signed ? new Int32Array(buffer, 0, count) : new Uint32Array(buffer, 0, count);
}

/** The patient and study attributes an RTDOSE repeats from its CT, by their `metadata_json.dicom` keys: tag, and
 * whether the value is free text (in the file's character set). */
export const STUDY_ATTRIBUTE_TAGS = {
  patient_name: ['x00100010', true],
  patient_id: ['x00100020', true],
  patient_birth_date: ['x00100030', false],
  patient_sex: ['x00100040', false],
  study_id: ['x00200010', true],
  study_date: ['x00080020', false],
  study_time: ['x00080030', false],
  study_description: ['x00081030', true],
  accession_number: ['x00080050', true],
  referring_physician_name: ['x00080090', true],
} as const;

export type StudyAttributes = Record<keyof typeof STUDY_ATTRIBUTE_TAGS, string>;

export function studyAttributes(object: DicomObject): StudyAttributes {
  return Object.fromEntries(
    Object.entries(STUDY_ATTRIBUTE_TAGS).map(([key, [tag, free]]) => [key, (free ? object.text(tag) : object.string(tag)) ?? '']),
  ) as StudyAttributes;
}
