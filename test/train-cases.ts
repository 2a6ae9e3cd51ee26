/** Tiny prostate-like cases for the training tests: spheres for the structures, a dose that follows the targets. */
import { join } from 'node:path';

import { saveCase, type CaseData } from '../src/data/case.js';

const STRUCTURES = ['PTV70', 'PTV56', 'Prostate', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel'];

/** A small deterministic generator (mulberry32), so that the cases are the same on every machine. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function tinyCase(index: number, shape: [number, number, number]): CaseData {
  const [z, y, x] = shape;
  const voxels = z * y * x;
  const rand = random(1000 + index);
  const centre = [z / 2 + (rand() - 0.5) * 4, y / 2 + (rand() - 0.5) * 4, x / 2 + (rand() - 0.5) * 4];
  // [dz, dy, dx, radius] of each structure, relative to the centre
  const spheres: [number, number, number, number][] = [
    [0, 0, 0, 5],
    [0, 0, 0, 7],
    [0, 0, 0, 3.5],
    [0, 5, 0, 2.5],
    [0, -5, 0, 3.5],
    [0, 0, 9, 3],
    [0, 0, -9, 3],
    [4, -4, 0, 3],
  ];
  const ct = new Int16Array(voxels);
  const dose = new Float32Array(voxels);
  const body = new Uint8Array(voxels);
  const masks = new Uint8Array(STRUCTURES.length * voxels);
  for (let k = 0; k < z; k++) {
    for (let j = 0; j < y; j++) {
      for (let i = 0; i < x; i++) {
        const v = (k * y + j) * x + i;
        const dy = (j - y / 2) / (y * 0.45);
        const dx = (i - x / 2) / (x * 0.48);
        const inside = dy * dy + dx * dx < 1;
        body[v] = inside ? 1 : 0;
        ct[v] = inside ? Math.round(20 + (rand() - 0.5) * 40) : -1000;
        const r = Math.hypot(k - centre[0]!, j - centre[1]!, i - centre[2]!);
        spheres.forEach(([sz, sy, sx, radius], s) => {
          if (Math.hypot(k - centre[0]! - sz, j - centre[1]! - sy, i - centre[2]! - sx) <= radius) masks[s * voxels + v] = 1;
        });
        if (masks[5 * voxels + v] || masks[6 * voxels + v]) ct[v] = 700;
        dose[v] = inside ? 72 * Math.exp(-((r / 7) ** 4)) + 3 * rand() : 0;
      }
    }
  }
  return {
    caseId: `case_${String(index).padStart(3, '0')}`,
    format: 'vmat-native-1',
    shape,
    spacingMm: [2.5, 2, 2],
    ct,
    dose,
    masks,
    structures: STRUCTURES,
    constraints: Float32Array.from([1, 0.8, 0, 0.5, 0.35, 0.2, 75 / 70, 0.5, 0.35, 0.25, 0.1, 195 / 500, 45 / 70]),
    body,
    metadata: { prescription_gy: { PTV70: 70, PTV56: 56 }, fractions: 35, source: 'test' },
  };
}

export async function writeTinyCohort(dir: string, count: number, shape: [number, number, number] = [16, 24, 24]): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const path = join(dir, `case_${String(i).padStart(3, '0')}.npz`);
    await saveCase(path, tinyCase(i, shape));
    paths.push(path);
  }
  return paths;
}
