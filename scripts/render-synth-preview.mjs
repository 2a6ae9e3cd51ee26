#!/usr/bin/env node
// Renders docs/synth_case.png (README): case 0 of the default synthetic cohort (seed 42, 96x128x128 at 2.5x2x2 mm),
// axial slice through the PTV70 centre, with contours and the dose wash. Needs the built package (npm run build).
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { synthesizeCase } from '../dist/data/synth.js';
import { renderCaseSlicePng } from '../dist/figures/case-slice.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2] ?? join(root, 'docs', 'synth_case.png');
const index = Number(process.argv[3] ?? 0);
const plane = process.argv[4] ?? 'axial';
const data = await synthesizeCase(index);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, renderCaseSlicePng(data, { plane }));
console.log(`wrote ${out} (${data.caseId}, ${plane} slice through the PTV70 centre)`);
