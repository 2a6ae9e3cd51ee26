/**
 * An RTSTRUCT's ROIs as masks on the CT grid: names mapped onto the site's channels, closed planar contours
 * rasterised natively (even-odd, voxel centres; native/include/vmat/rasterise.h), the body from the External ROI.
 *
 * Contours and CT slices: each CT slice takes the contours of the contour plane nearest to it (within half a slice
 * spacing); where a structure was contoured on more planes than the CT has slices, the other planes are not used
 * (and counted in a note), and a plane between two slices is used by the nearer one.
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';

import { structureKey } from '../data/structures.js';
import { invalidInput } from '../errors.js';
import { callNative, type CallOptions } from '../native/call.js';
import { loadNative } from '../native/loader.js';
import { channelNames, structureMatcher, type SiteProfile } from '../sites/profile.js';
import type { PatientGrid } from './geometry.js';
import { parseDicom, type DicomObject } from './parse.js';

export interface StructureSetMasks {
  /** stored names, in order: the site's channels that are present, then the ROIs kept under their own names */
  names: string[];
  /** [S, Z, Y, X] 0/1 */
  masks: Uint8Array;
  body?: Uint8Array;
  /** ROI name → stored name, 'body', or why it was not imported */
  mapping: { roi: string; to: string }[];
  /** ROI number → ROI name (the plan's dose references name ROIs by number) */
  roiNames: Map<number, string>;
  label?: string;
  /** bad or doubtful input: each one sentence */
  problems: string[];
  notes: string[];
  object: DicomObject;
}

interface Roi {
  number: number;
  name: string;
  frame?: string;
  type?: string;
  /** closed planar contours in patient coordinates, flat x,y,z */
  contours: Float64Array[];
  open: number;
  points: number;
  short: number;
}

const shown = (path: string) => relative(process.cwd(), path) || path;

/** How far (in voxels along the slice axis) a contour's points may stray from one plane. */
const PLANARITY_VOXELS = 0.05;

function readRois(object: DicomObject): Roi[] {
  const contoursByRoi = new Map<number, DicomObject>();
  for (const item of object.sequence('x30060039')) {
    const number = item.number('x30060084', 'Referenced ROI Number');
    if (number !== undefined) contoursByRoi.set(number, item);
  }
  const types = new Map<number, string>();
  for (const item of object.sequence('x30060080')) {
    const number = item.number('x30060084', 'Referenced ROI Number');
    const type = item.string('x300600a4');
    if (number !== undefined && type) types.set(number, type.toUpperCase());
  }
  return object.sequence('x30060020').map((item, index) => {
    const number = item.number('x30060022', 'ROI Number') ?? index;
    const roi: Roi = { number, name: item.text('x30060026') ?? `ROI_${number}`, frame: item.string('x30060024'), type: types.get(number), contours: [], open: 0, points: 0, short: 0 };
    for (const contour of contoursByRoi.get(number)?.sequence('x30060040') ?? []) {
      const type = contour.string('x30060042') ?? 'CLOSED_PLANAR';
      if (type === 'POINT') {
        roi.points++;
        continue;
      }
      if (type !== 'CLOSED_PLANAR') {
        roi.open++;
        continue;
      }
      const data = contour.numbers('x30060050', `Contour Data of ROI '${roi.name}'`);
      if (!data || data.length < 9 || data.length % 3 !== 0) {
        roi.short++;
        continue;
      }
      roi.contours.push(Float64Array.from(data));
    }
    return roi;
  });
}

/**
 * Reads a structure set and rasterises its ROIs on `grid` (the CT's, same frame of reference). `structureMap` is
 * the user's ROI name → channel (or 'body') table.
 */
export async function readStructureSet(
  path: string,
  grid: PatientGrid,
  frameOfReferenceUid: string,
  profile: SiteProfile,
  structureMap: Record<string, string>,
  options: CallOptions<unknown> = {},
): Promise<StructureSetMasks> {
  const object = parseDicom(shown(path), new Uint8Array(await readFile(path)));
  const name = shown(path);
  const problems: string[] = [];
  const notes: string[] = [];
  const mapping: { roi: string; to: string }[] = [];
  const match = structureMatcher(profile, structureMap);
  const rois = readRois(object);

  // Which ROIs are imported, under which names.
  const usable: Roi[] = [];
  for (const roi of rois) {
    if (roi.frame && roi.frame !== frameOfReferenceUid) {
      problems.push(`${name}: ROI '${roi.name}' is drawn in frame of reference ${roi.frame}, not the CT's (${frameOfReferenceUid}); it is not imported`);
      mapping.push({ roi: roi.name, to: '(other frame of reference)' });
      continue;
    }
    if (roi.short > 0) problems.push(`${name}: ROI '${roi.name}' has ${roi.short} contour${roi.short > 1 ? 's' : ''} with fewer than 3 points, left out`);
    if (roi.open > 0) notes.push(`ROI '${roi.name}': ${roi.open} open contour${roi.open > 1 ? 's' : ''} left out (only closed contours enclose a volume)`);
    if (roi.contours.length === 0) {
      if (roi.points > 0 && roi.short === 0 && roi.open === 0) {
        mapping.push({ roi: roi.name, to: '(point, not imported)' });
      } else {
        problems.push(`${name}: ROI '${roi.name}' has no closed contours; it is not imported`);
        mapping.push({ roi: roi.name, to: '(empty, not imported)' });
      }
      continue;
    }
    usable.push(roi);
  }

  const channels = channelNames(profile);
  const userMapped = new Set(Object.keys(structureMap).map(structureKey));
  const bodyCandidates = usable.filter((roi) => roi.type === 'EXTERNAL' || match(roi.name) === 'body');
  const body =
    bodyCandidates.find((roi) => match(roi.name) === 'body' && userMapped.has(structureKey(roi.name))) ??
    bodyCandidates.find((roi) => roi.type === 'EXTERNAL' && match(roi.name) === 'body') ??
    bodyCandidates.find((roi) => roi.type === 'EXTERNAL') ??
    bodyCandidates[0];
  // Where several ROIs match one channel: the one the user's map names wins, then the one named like the channel,
  // then the first.
  const priority = (roi: Roi, channel: string) => (userMapped.has(structureKey(roi.name)) ? 2 : structureKey(roi.name) === structureKey(channel) ? 1 : 0);
  const byChannel = new Map<string, Roi>();
  for (const roi of usable) {
    const channel = match(roi.name);
    if (roi === body || channel === null || channel === 'body') continue;
    const previous = byChannel.get(channel);
    if (!previous || priority(roi, channel) > priority(previous, channel)) byChannel.set(channel, roi);
  }
  const stored: { roi: Roi; name: string; kept?: boolean }[] = [];
  for (const channel of channels) {
    const roi = byChannel.get(channel);
    if (roi) stored.push({ roi, name: channel });
  }
  const taken = new Set(stored.map((s) => structureKey(s.name)));
  for (const roi of usable) {
    if (roi === body || stored.some((s) => s.roi === roi)) continue;
    const channel = match(roi.name);
    if (channel !== null && channel !== 'body') notes.push(`ROIs '${byChannel.get(channel)!.name}' and '${roi.name}' both match ${channel}: '${byChannel.get(channel)!.name}' is used, '${roi.name}' is kept under its own name (choose with --structure-map)`);
    if (channel === 'body') notes.push(`ROIs '${body!.name}' and '${roi.name}' are both body outlines: '${body!.name}' is the body, '${roi.name}' is kept under its own name`);
    let own = roi.name;
    for (let n = 2; taken.has(structureKey(own)); n++) own = `${roi.name}_${n}`;
    taken.add(structureKey(own));
    stored.push({ roi, name: own, kept: true });
  }
  for (const roi of usable) {
    const entry = roi === body ? undefined : stored.find((s) => s.roi === roi)!;
    mapping.push({ roi: roi.name, to: !entry ? 'body' : entry.kept ? `${entry.name} (kept)` : entry.name });
  }

  // Polygons in voxel index units of the grid, each on the slice nearest its plane.
  const labelled = [...stored.map((s) => s.roi), ...(body ? [body] : [])];
  const [Z] = grid.shape;
  const polygons: Float64Array[] = [];
  const offsets: number[] = [0];
  const slices: number[] = [];
  const labels: number[] = [];
  // Patient position → voxel index: index_a = (p − origin) · axis_a / spacing_a.
  const [o0, o1, o2] = grid.originLps;
  const [ak, aj, ai] = grid.axesLps.map((axis, a) => axis.map((v) => v / grid.spacingMm[a]!));
  labelled.forEach((roi, label) => {
    const planes = new Map<number, { k: number; polygons: Float64Array[] }>();
    let skew = 0;
    for (const contour of roi.contours) {
      const polygon = new Float64Array((contour.length / 3) * 2);
      let kMin = Infinity;
      let kMax = -Infinity;
      for (let p = 0, q = 0; p < contour.length; p += 3, q += 2) {
        const x = contour[p]! - o0;
        const y = contour[p + 1]! - o1;
        const z = contour[p + 2]! - o2;
        const k = x * ak![0]! + y * ak![1]! + z * ak![2]!;
        if (k < kMin) kMin = k;
        if (k > kMax) kMax = k;
        polygon[q] = x * ai![0]! + y * ai![1]! + z * ai![2]!;
        polygon[q + 1] = x * aj![0]! + y * aj![1]! + z * aj![2]!;
      }
      if (kMax - kMin > PLANARITY_VOXELS) {
        skew++;
        continue;
      }
      const k = (kMin + kMax) / 2;
      const key = Math.round(k * 1000);
      if (!planes.has(key)) planes.set(key, { k, polygons: [] });
      planes.get(key)!.polygons.push(polygon);
    }
    if (skew > 0) problems.push(`${name}: ROI '${roi.name}' has ${skew} contour${skew > 1 ? 's' : ''} that do not lie in a CT slice plane, left out`);
    const nearest = new Map<number, { k: number; polygons: Float64Array[] }>();
    let outside = 0;
    let unused = 0;
    for (const plane of planes.values()) {
      const slice = Math.floor(plane.k + 0.5);
      if (slice < 0 || slice >= Z) {
        outside++;
        continue;
      }
      const current = nearest.get(slice);
      if (!current || Math.abs(plane.k - slice) < Math.abs(current.k - slice)) {
        if (current) unused++;
        nearest.set(slice, plane);
      } else {
        unused++;
      }
    }
    if (outside > 0) problems.push(`${name}: ROI '${roi.name}' has contours on ${outside} plane${outside > 1 ? 's' : ''} beyond the CT's first or last slice, left out`);
    if (unused > 0) notes.push(`ROI '${roi.name}': ${unused} contour plane${unused > 1 ? 's' : ''} between CT slices not used (each slice takes the plane nearest to it)`);
    for (const [slice, plane] of nearest) {
      for (const polygon of plane.polygons) {
        polygons.push(polygon);
        offsets.push(offsets.at(-1)! + polygon.length / 2);
        slices.push(slice);
        labels.push(label);
      }
    }
  });

  const xy = new Float64Array(offsets.at(-1)! * 2);
  polygons.forEach((polygon, p) => xy.set(polygon, offsets[p]! * 2));
  const shape = grid.shape;
  const voxels = shape[0] * shape[1] * shape[2];
  const result = await callNative<{ data: Uint8Array; voxels: number[] }>(
    (native) => loadNative().dicom.rasterisePolygons(xy, Int32Array.from(offsets), Int32Array.from(slices), Int32Array.from(labels), labelled.length, [...shape], native),
    options,
  );
  for (let s = 0; s < stored.length; s++) {
    if (result.voxels[s] === 0) {
      problems.push(`${name}: ROI '${stored[s]!.roi.name}' covers no voxel centre of the CT grid; it is kept as an empty structure`);
    }
  }
  if (!body) notes.push(`no External/BODY ROI: the body mask will be derived from the CT (above -500 HU)`);
  return {
    names: stored.map((s) => s.name),
    masks: result.data.subarray(0, stored.length * voxels),
    body: body ? result.data.subarray(stored.length * voxels, (stored.length + 1) * voxels) : undefined,
    mapping,
    roiNames: new Map(rois.map((roi) => [roi.number, roi.name])),
    label: object.text('x30060002'),
    problems,
    notes,
    object,
  };
}

/** The mapping as one line: "PTV_70 → PTV70, RECTUM → Rectum, BODY → body, Couch (kept)". */
export function mappingText(mapping: readonly { roi: string; to: string }[]): string {
  return mapping.map(({ roi, to }) => (to === `${roi} (kept)` ? `${roi} (kept)` : to.startsWith('(') ? `${roi} ${to}` : `${roi} → ${to}`)).join(', ');
}

/** Refuses a user's structure map that is not an object of strings. */
export function parseStructureMap(value: unknown, source: string): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw invalidInput(`the structure map ${source} must be a JSON object of ROI name → channel name (or "body"), e.g. {"PTV_High": "PTV70"}`);
  }
  return value as Record<string, string>;
}
