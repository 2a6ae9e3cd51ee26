import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { checkCase, loadCase, saveCase } from '../src/data/case.js';
import { parseNpy } from '../src/data/npy.js';
import { readNpz, writeNpz } from '../src/data/npz.js';
import { unpickle } from '../src/data/pickle.js';
import { CANONICAL_STRUCTURES, mapStructures } from '../src/data/structures.js';
import { repoRoot, tempDir } from './helpers.js';

const fixtures = join(repoRoot, 'test', 'fixtures');
const expected = JSON.parse(readFileSync(join(fixtures, 'expected.json'), 'utf8'));
const sum = (values: ArrayLike<number>) => Array.prototype.reduce.call(values, (a: number, b: number) => a + b, 0) as number;
const hasNumpy = spawnSync('/usr/bin/python3', ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;

describe('npy', () => {
  for (const [name, want] of Object.entries(expected.npy as Record<string, { shape: number[]; values: unknown[] }>)) {
    it(`reads ${name}.npy as NumPy wrote it`, () => {
      const array = parseNpy(new Uint8Array(readFileSync(join(fixtures, 'npy', `${name}.npy`))), name);
      expect(array.shape).toEqual(want.shape);
      const values = array.dtype === 'object' ? [] : Array.from(array.data as ArrayLike<unknown>, (v) => (typeof v === 'bigint' ? Number(v) : v));
      const wanted = want.values.map((v) => (v === null ? undefined : typeof v === 'boolean' ? Number(v) : v));
      expect(values.length).toBe(wanted.length);
      values.forEach((value, i) => {
        if (wanted[i] === undefined) expect(Number.isFinite(value as number)).toBe(false);
        else if (typeof value === 'number') expect(value).toBeCloseTo(wanted[i] as number, 5);
        else expect(value).toEqual(wanted[i]);
      });
    });
  }
  it('gives a view of the bytes when aligned, a copy when not', () => {
    const bytes = new Uint8Array(readFileSync(join(fixtures, 'npy', 'f4.npy')));
    const aligned = new Uint8Array(new ArrayBuffer(bytes.length), 0);
    aligned.set(bytes);
    const view = parseNpy(aligned);
    expect((view as { data: Float32Array }).data.buffer).toBe(aligned.buffer);
    const shifted = new Uint8Array(new ArrayBuffer(bytes.length + 1), 1);
    shifted.set(bytes);
    const copy = parseNpy(shifted);
    expect((copy as { data: Float32Array }).data.buffer).not.toBe(shifted.buffer);
    expect(Array.from((copy as { data: Float32Array }).data)).toEqual(Array.from((view as { data: Float32Array }).data));
  });
  it('refuses Fortran order and unsupported dtypes with a sentence', () => {
    expect(() => parseNpy(new Uint8Array(readFileSync(join(fixtures, 'npy', 'fortran.npy'))), 'fortran.npy')).toThrow(/fortran.npy is stored in Fortran order: expected C order/);
    expect(() => parseNpy(new Uint8Array(readFileSync(join(fixtures, 'npy', 'c8.npy'))), 'c8.npy')).toThrow(/c8.npy has dtype '<c8', which is not supported/);
    expect(() => parseNpy(new Uint8Array([1, 2, 3]), 'x.npy')).toThrow(/x.npy is not a NumPy .npy array/);
  });
});

describe('case files', () => {
  it('loads format 1 (stored) with every key', async () => {
    const data = await loadCase(join(fixtures, 'cases', 'format1_stored.npz'));
    expect(data.format).toBe('vmat-native-1');
    expect(data.caseId).toBe('case_a');
    expect(data.shape).toEqual([8, 10, 12]);
    expect(data.spacingMm).toEqual([2.5, 1.5, 1.0]);
    expect(data.ct).toBeInstanceOf(Int16Array);
    expect(sum(data.ct)).toBe(expected.format1_stored.ct_sum);
    expect(sum(data.dose!)).toBeCloseTo(expected.format1_stored.dose_sum, 2);
    expect(sum(data.body!)).toBe(expected.format1_stored.body_sum);
    expect(data.structures).toEqual(CANONICAL_STRUCTURES);
    for (let s = 0; s < 8; s++) expect(sum(data.masks.subarray(s * 960, (s + 1) * 960))).toBe(expected.format1_stored.mask_sums[s]);
    expect(data.constraints.length).toBe(13);
    expect(data.metadata).toMatchObject({ prescription_gy: { PTV70: 70, PTV56: 56 }, constraints_mode: 'limits' });
  });

  it('loads format 1 (deflated, float32 CT, float16 SDF cache, other name spellings)', async () => {
    const data = await loadCase(join(fixtures, 'cases', 'format1_compressed.npz'));
    expect(data.ct).toBeInstanceOf(Float32Array);
    expect(data.dose).toBeUndefined();
    expect(data.masksSdf).toBeInstanceOf(Float32Array);
    expect(data.masksSdf!.length).toBe(5 * 960);
    expect(mapStructures(data.structures).indices).toEqual([0, 1, 2, 3, 4, -1, -1, -1]);
  });

  for (const name of ['pred_v22', 'pred_v23', 'pred_v24', 'pred_v23_numpy2']) {
    it(`loads the predecessor's ${name}`, async () => {
      const want = expected[name];
      const data = await loadCase(join(fixtures, 'cases', `${name}.npz`));
      expect(data.format).toBe(want.format);
      expect(data.caseId).toBe(want.case_id);
      expect(data.shape).toEqual(want.shape);
      expect(data.spacingMm).toEqual(want.spacing_mm);
      expect(data.structures).toEqual(want.structures);
      expect(sum(data.ct)).toBeCloseTo(want.ct_sum, 0);
      expect(sum(data.dose!)).toBeCloseTo(want.dose_sum, 2);
      // [Z,Y,X] order: voxel (z=3, y=4, x=5) and mask voxel (s=2, z=4, y=4, x=6)
      expect(data.ct[3 * 120 + 4 * 12 + 5]).toBeCloseTo(want.ct_at_3_4_5, 2);
      expect(data.dose![3 * 120 + 4 * 12 + 5]).toBeCloseTo(want.dose_at_3_4_5, 4);
      expect(data.masks[2 * 960 + 4 * 120 + 4 * 12 + 6]).toBe(want.mask2_at_4_4_6);
      want.mask_sums.forEach((count: number, s: number) => expect(sum(data.masks.subarray(s * 960, (s + 1) * 960))).toBe(count));
      // SDF cache: transposed, and an empty structure is 0 (v2.2 wrote +1)
      if (want.sdf_cache_used) {
        want.sdf_sum_per_channel.forEach((total: number, s: number) => expect(sum(data.masksSdf!.subarray(s * 960, (s + 1) * 960))).toBeCloseTo(total, 3));
      } else {
        expect(data.masksSdf).toBeUndefined(); // v2.4: 8 distance channels for 9 masks
      }
      expect(data.metadata).toMatchObject({ n_beams: 2, flags: [true, null, 1.5], mlc_shape: [2, 60] });
    });
  }

  it('asks for --spacing where a predecessor file has none, and uses it', async () => {
    const path = join(fixtures, 'cases', 'pred_no_spacing.npz');
    await expect(loadCase(path)).rejects.toThrow(/pred_no_spacing.npz: 'metadata.voxel_spacing_mm' is missing: expected the voxel spacing \(y,x,z\) in metadata.voxel_spacing_mm or metadata.target_spacing_mm, or the spacingMm setting \(z,y,x\)/);
    const data = await loadCase(path, { spacingMm: [3, 2, 1] });
    expect(data.spacingMm).toEqual([3, 2, 1]);
  });

  it('refuses a pickle that would run code, naming the global, and runs nothing', async () => {
    const marker = '/tmp/vmat-native-pickle-was-executed';
    rmSync(marker, { force: true });
    await expect(loadCase(join(fixtures, 'bad', 'pickle_runs_code.npz'))).rejects.toThrow(/'metadata' in .*pickle_runs_code.npz refers to posix.system, which is not allowed/);
    expect(existsSync(marker)).toBe(false);
  });

  for (const protocol of [2, 3, 4, 5]) {
    it(`unpickles NumPy scalars and arrays, tuples, memo references and big ints (protocol ${protocol})`, () => {
      const bytes = new Uint8Array(readFileSync(join(fixtures, 'npy', `meta_protocol${protocol}.pkl`)));
      const plain = JSON.parse(
        JSON.stringify(unpickle(bytes, 'metadata'), (_, value) =>
          typeof value === 'bigint' ? { bigint: value.toString() } : value instanceof Uint8Array ? { bytes: Array.from(value) } : value,
        ),
      );
      expect(plain).toEqual(expected.pickle);
    });
  }

  it('reads a zip64 .npz (zip64 central directory fields and end record)', async () => {
    const arrays = await readNpz(join(fixtures, 'npy', 'zip64.npz'));
    expect(Array.from((arrays.get('a') as { data: Float32Array }).data)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect((arrays.get('b') as { data: string[] }).data).toEqual(['x', 'yz']);
  });

  it('refuses other globals and classes in pickles by name', () => {
    // protocol 2: GLOBAL 'os\nsystem', then a string, TUPLE1, REDUCE, STOP
    const op = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
    expect(() => unpickle(op('\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.'), 'metadata in case.npz')).toThrow('metadata in case.npz refers to os.system, which is not allowed');
    expect(() => unpickle(op('\x80\x02cbuiltins\neval\n.'), 'm')).toThrow(/refers to builtins.eval/);
    expect(unpickle(op('\x80\x02}q\x00(X\x01\x00\x00\x00aK\x05X\x01\x00\x00\x00b]q\x01(G?\xf8\x00\x00\x00\x00\x00\x00N\x88eu.'), 'm')).toEqual({ a: 5, b: [1.5, null, true] });
  });

  const bad: [string, RegExp][] = [
    ['truncated', /truncated.npz is not a complete .npz file/],
    ['not_a_zip', /not_a_zip.npz is not a complete .npz file/],
    ['ct_float64', /'ct' has the wrong dtype: expected int16 or float32, found float64/],
    ['ct_nan', /'ct' holds a value that is not finite: expected finite numbers, found NaN/],
    ['dose_inf', /'dose' holds a value that is not finite: expected finite numbers, found Infinity/],
    ['dose_negative', /'dose' holds a negative dose: expected doses ≥ 0 Gy, found -0.5/],
    ['dose_grid', /'dose' has the wrong shape: expected \[8,10,12\] \(the CT grid\), found \[8,10,11\]/],
    ['masks_not_binary', /'masks' is not a 0\/1 mask: expected values 0 or 1, found 2/],
    ['masks_shape', /'masks' has the wrong shape: expected \[S,8,10,12\]/],
    ['masks_missing', /'masks' is missing/],
    ['spacing_zero', /'spacing_mm' is not a valid voxel spacing: expected 3 millimetre values from 0.001 to 100, found \[2.5, 0, 1\]/],
    ['structures_count', /'structures' does not match masks: expected 8 names/],
    ['constraints_length', /'constraints' has the wrong shape: expected \[13\], found \[12\]/],
  ];
  for (const [name, message] of bad) {
    it(`rejects ${name} with one sentence`, async () => {
      await expect(loadCase(join(fixtures, 'bad', `${name}.npz`))).rejects.toMatchObject({ code: 'VMAT_INVALID_INPUT', message: expect.stringMatching(message) });
    });
  }

  it('lists every problem of a file', async () => {
    const problems = await checkCase(join(fixtures, 'bad', 'several_problems.npz'));
    expect(problems.map((p) => p.key)).toEqual(['ct', 'dose', 'spacing_mm']);
  });

  it('detects a corrupted deflated entry by its CRC or its deflate stream', async () => {
    const dir = tempDir();
    const bytes = readFileSync(join(fixtures, 'cases', 'format1_stored.npz'));
    bytes[3000] ^= 0xff; // inside the 'dose' data
    writeFileSync(join(dir, 'corrupt.npz'), bytes);
    await expect(loadCase(join(dir, 'corrupt.npz'))).rejects.toThrow(/is damaged: expected CRC-32/);
  });
});

describe('saveCase', () => {
  it('round-trips, writes byte-identical files, refuses to overwrite, and NumPy reads the result', async () => {
    const dir = tempDir();
    const data = await loadCase(join(fixtures, 'cases', 'pred_v24.npz'));
    const a = join(dir, 'a.npz');
    const b = join(dir, 'b.npz');
    await saveCase(a, data);
    await saveCase(b, data);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    await expect(saveCase(a, data)).rejects.toThrow(/a.npz already exists/);
    await saveCase(a, data, { overwrite: true, compress: false });
    expect(readdirSync(dir).sort()).toEqual(['a.npz', 'b.npz']); // no temporary files left
    const back = await loadCase(a);
    expect(back.format).toBe('vmat-native-1');
    expect(back.caseId).toBe('pred_v24');
    expect(Array.from(back.ct)).toEqual(Array.from(data.ct));
    expect(Array.from(back.dose!)).toEqual(Array.from(data.dose!));
    expect(Array.from(back.masks)).toEqual(Array.from(data.masks));
    expect(back.structures).toEqual(data.structures);
    expect(back.spacingMm).toEqual(data.spacingMm);
    if (hasNumpy) {
      const script = `import numpy as np, json, sys
for p in sys.argv[1:]:
    f = np.load(p)
    m = json.loads(str(f['metadata_json']))
    print(f['ct'].dtype, f['ct'].shape, f['masks'].shape, list(f['structures']), list(f['spacing_mm']), m['case_id'], m['format_version'], float(f['dose'].astype(np.float64).sum()))`;
      const run = spawnSync('/usr/bin/python3', ['-c', script, a, b], { encoding: 'utf8' });
      expect(run.stderr).toBe('');
      const lines = run.stdout.trim().split('\n');
      expect(lines[0]).toBe(lines[1]);
      expect(lines[0]).toMatch(/^float32 \(8, 10, 12\) \(9, 8, 10, 12\) \['PTV70', .*'PTV50.4'\] \[2.5, 1.5, 1.0\] pred_v24 1 /);
      expect(Number(lines[0]!.split(' ').at(-1))).toBeCloseTo(sum(data.dose!), 1);
    }
  });

  it('writes npz entries of every dtype that NumPy reads back', async () => {
    const dir = tempDir();
    const path = join(dir, 'x.npz');
    await writeNpz(path, [
      ['i2', { dtype: 'int16', shape: [2, 2], data: Int16Array.from([1, -2, 3, -4]) }],
      ['f8', { dtype: 'float64', shape: [], data: Float64Array.from([2.5]) }],
      ['s', { dtype: 'str', shape: [2], data: ['ab', 'ß😀'] }],
      ['b', { dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) }],
      ['i8', { dtype: 'int64', shape: [1], data: BigInt64Array.from([-(2n ** 40n)]) }],
    ]);
    const back = await readNpz(path);
    expect(Array.from((back.get('i2') as { data: Int16Array }).data)).toEqual([1, -2, 3, -4]);
    expect((back.get('s') as { data: string[] }).data).toEqual(['ab', 'ß😀']);
    if (hasNumpy) {
      const run = spawnSync('/usr/bin/python3', ['-c', 'import numpy as np,sys; f=np.load(sys.argv[1]); print([(k, f[k].dtype.str, f[k].tolist()) for k in f.files])', path], { encoding: 'utf8' });
      expect(run.stdout.trim()).toBe("[('i2', '<i2', [[1, -2], [3, -4]]), ('f8', '<f8', 2.5), ('s', '<U2', ['ab', 'ß😀']), ('b', '|b1', [True, False, True]), ('i8', '<i8', [-1099511627776])]");
    }
  });
});

describe('large entries', () => {
  it('reads entries over 8 MB (huge-page buffers from the addon), stored and deflated', async () => {
    const dir = tempDir();
    const values = Float32Array.from({ length: 3_000_000 }, (_, i) => (i % 1000) / 7);
    for (const compress of [false, true]) {
      const path = join(dir, `${compress}.npz`);
      await writeNpz(path, [['big', { dtype: 'float32', shape: [3, 1000, 1000], data: values }]], { compress });
      const big = (await readNpz(path)).get('big') as { data: Float32Array; shape: number[] };
      expect(big.shape).toEqual([3, 1000, 1000]);
      expect(big.data.byteOffset % 64).toBe(0);
      expect(big.data[2_999_999]).toBe(values[2_999_999]);
      expect(Buffer.from(big.data.buffer, big.data.byteOffset, big.data.byteLength).equals(Buffer.from(values.buffer))).toBe(true);
    }
  });
});

describe('structures', () => {
  it('matches names ignoring case, _, - and spaces, and warns for missing ones', () => {
    const { indices, warnings } = mapStructures(['femur l', 'PTV-70', 'BLADDER', 'rectum_'], CANONICAL_STRUCTURES);
    expect(indices).toEqual([1, -1, -1, 3, 2, 0, -1, -1]);
    expect(warnings).toHaveLength(4);
    expect(warnings[0]).toMatch(/structure PTV56 is not in the case/);
  });
});
