/**
 * The run folder (spec/training.md) as one module: its layout (layout.ts), the type of each file (files.ts), and a
 * typed reader (read.ts) and writer (write.ts) for each. The trainer writes through it; evaluation, figures, report
 * and compare read through it; tests fabricate runs through its writers.
 */
export * from './layout.js';
export * from './files.js';
export * from './read.js';
export * from './write.js';
export * from './fingerprints.js';
