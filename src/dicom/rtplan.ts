/** What a case records of its RTPLAN: the prescription doses of its targets and the number of fractions. */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';

import { parseDicom } from './parse.js';

export interface PlanPrescription {
  /** target name → total prescribed dose (Gy) */
  prescriptionGy: Record<string, number>;
  fractions?: number;
  label?: string;
  notes: string[];
}

/**
 * Reads Dose Reference Sequence target prescriptions (Target Prescription Dose, total Gy) and the first fraction
 * group's Number of Fractions Planned. A dose reference that names an ROI is keyed by `nameOf(ROI name)` (the
 * channel it was stored under), else by its description.
 */
export async function readPlan(path: string, roiNames: ReadonlyMap<number, string>, nameOf: (roi: string) => string): Promise<PlanPrescription> {
  const name = relative(process.cwd(), path) || path;
  const object = parseDicom(name, new Uint8Array(await readFile(path)));
  const prescriptionGy: Record<string, number> = {};
  const notes: string[] = [];
  object.sequence('x300a0010').forEach((reference, index) => {
    const dose = reference.number('x300a0026', 'Target Prescription Dose');
    if (dose === undefined) return;
    const roi = reference.number('x30060084', 'Referenced ROI Number');
    const roiName = roi !== undefined ? roiNames.get(roi) : undefined;
    const key = roiName ? nameOf(roiName) : (reference.text('x300a0016') ?? `dose_reference_${reference.number('x300a0012', 'Dose Reference Number') ?? index + 1}`);
    prescriptionGy[key] = Math.max(dose, prescriptionGy[key] ?? 0);
  });
  const fractions = object.sequence('x300a0070')[0]?.number('x300a0078', 'Number of Fractions Planned');
  if (Object.keys(prescriptionGy).length === 0) notes.push(`the RTPLAN ${name} states no Target Prescription Dose (300A,0026); the prescriptions are the site profile's`);
  return { prescriptionGy, fractions, label: object.text('x300a0002'), notes };
}
