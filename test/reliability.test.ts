/**
 * Hostile files, flags and resources (issues 13 "Files" and 18 "Hangs and unbounded resources", "Silently wrong
 * numbers"): each class of failure found by the campaigns, as a file or a command that used to crash, hang, take
 * gigabytes or give a wrong number, and now gives one sentence and exit 1 (README "Reliability: what is guaranteed").
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { parseTrainConfig } from '../src/config/schema.js';
import { checkCase, loadCase } from '../src/data/case.js';
import { encodeNpy, parseNpy, type WritableNpyArray } from '../src/data/npy.js';
import { readNpz } from '../src/data/npz.js';
import { MAX_EXPANDED_BYTES, unpickle } from '../src/data/pickle.js';
import { CANONICAL_STRUCTURES, mapStructures } from '../src/data/structures.js';
import { isUserError, userMessage } from '../src/errors.js';
import { buildProgram } from '../src/cli/program.js';
import { gammaIndex } from '../src/eval/gamma.js';
import { modelSummary, saveInitialWeights } from '../src/model.js';
import { checkpointModel, predictFiles } from '../src/predict/predict.js';
import { cliPath, runCli, tempDir } from './helpers.js';
import {
  caseArrays,
  caseZip,
  GRID,
  laughsPickle,
  npyBytes,
  op,
  pickleOf,
  predecessorZip,
  rawNpy,
  withSafetensorsMetadata,
  withTensorValue,
  zipOf,
} from './hostile.js';

let dir: string;
const file = (name: string, bytes: Uint8Array | string) => {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
};
/** One line on stderr, exit 1: the contract for bad input. */
function expectOneSentence(result: { status: number; stderr: string }, pattern: RegExp) {
  expect(result.status, result.stderr).toBe(1);
  const lines = result.stderr.trim().split('\n');
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^vmat-native: /);
  expect(lines[0]).toMatch(pattern);
}

beforeAll(() => {
  dir = tempDir('vmat-reliability-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('zip structure: sizes checked against the file before anything is allocated', () => {
  it('refuses zip64 records that claim gigabytes for a small member (it used to abort the process)', async () => {
    const claiming = (gib: number) => file(`zip64_${gib}g.npz`, zipOf(caseArrays().map(([key, array], i) => ({ name: `${key}.npy`, data: npyBytes(array), claimSize: i === 0 ? gib * 2 ** 30 : undefined }))));
    expectOneSentence(runCli(['inspect', claiming(5)]), /zip64_5g\.npz is a damaged zip: its zip64 size of 'ct\.npy' \(5368709120\) is beyond any size/);
    await expect(loadCase(claiming(16))).rejects.toThrow(/zip64_16g\.npz is a damaged zip: its zip64 size of 'ct\.npy' \(17179869184\)/);
  });

  it('refuses 20 000 directory entries sharing one member at once (it used to inflate it until killed)', async () => {
    const member = npyBytes({ dtype: 'float32', shape: [32, 32, 32], data: new Float32Array(32 ** 3) });
    const sameName = zipOf([{ name: 'ct.npy', data: member, method: 8 }, ...Array.from({ length: 19_999 }, () => ({ name: 'ct.npy', data: member, method: 8 as const, offsetOf: 0 }))]);
    const otherNames = zipOf([{ name: 'ct.npy', data: member, method: 8 }, ...Array.from({ length: 19_999 }, (_, i) => ({ name: `m${i}.npy`, data: member, method: 8 as const, offsetOf: 0 }))]);
    const same = runCli(['validate', file('same_name.npz', sameName)], { timeoutMs: 60_000 });
    expect(same.stdout).toMatch(/same_name\.npz is a damaged zip: it holds two entries named 'ct\.npy'/);
    expect(same.status).toBe(1);
    await expect(loadCase(file('shared_member.npz', otherNames))).rejects.toThrow(/shared_member\.npz is a damaged zip: entries 'ct\.npy' and 'm0\.npy' overlap/);
  });

  it('refuses a stored member whose sizes disagree and a deflated one that claims more than deflate expands', async () => {
    const ct = npyBytes(caseArrays()[0]![1]);
    await expect(readNpz(file('stored.npz', zipOf([{ name: 'ct.npy', data: ct, claimSize: ct.length + 1 }])))).rejects.toThrow(/stored entry 'ct\.npy' claims \d+ bytes but holds \d+/);
    await expect(readNpz(file('ratio.npz', zipOf([{ name: 'ct.npy', data: ct, method: 8, claimSize: 2 ** 31 }])))).rejects.toThrow(/more than deflate can expand \(1032x\)/);
  });

  it('checks the shape a header declares against its entry before allocating the entry', async () => {
    // 4000³ float32 declared, a few bytes held: refused from the header, as inflated from the entry's first bytes.
    const claim = rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (4000, 4000, 4000), }", new Uint8Array(64));
    for (const method of [0, 8] as const) {
      await expect(readNpz(file(`declared${method}.npz`, zipOf([{ name: 'ct.npy', data: claim, method }])))).rejects.toThrow(
        /'ct' is truncated: its header declares shape \(4000, 4000, 4000\) of '<f4', 256000000000 bytes of data, but the entry holds 64/,
      );
    }
  });

  it('refuses a file whose arrays exceed the memory ceiling, naming the file', async () => {
    const path = file('ceiling.npz', caseZip(caseArrays()));
    await expect(readNpz(path, { maxBytes: 1000 })).rejects.toThrow(new RegExp(`${path} declares [0-9]+ bytes of arrays, more than the 1000 bytes one file may take`));
    expect((await readNpz(path)).size).toBe(7);
  });
});

describe('case contents', () => {
  it('refuses structure names that are not text with one sentence (they used to be internal errors, exit 2)', () => {
    const names = npyBytes({ dtype: 'str', shape: [8], data: [...CANONICAL_STRUCTURES] });
    // Code point 0x110000 (beyond Unicode) as the first character of the first name ('<U8': 8 x 8 x 4 data bytes).
    new DataView(names.buffer, names.byteOffset).setUint32(names.length - 8 * 8 * 4, 0x110000, true);
    const zip = zipOf([...caseArrays({ structures: null }).map(([key, array]) => ({ name: `${key}.npy`, data: npyBytes(array) })), { name: 'structures.npy', data: names }]);
    expectOneSentence(runCli(['inspect', file('bad_text.npz', zip)]), /bad_text\.npz: 'structures' holds text that is not valid Unicode: expected characters, found code point 0x110000 in string 0/);
  });

  it('refuses names with control characters, empty names, and lone surrogates', async () => {
    const names = (first: string) => caseZip(caseArrays({ structures: { dtype: 'str', shape: [8], data: [first, 'PTV56', 'Prostate', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel'] } }));
    expect((await checkCase(file('control.npz', names('PTV\n70'))))[0]!.message).toMatch(/unusable structure name at index 0: expected printable names of 1 to 128 characters, found a name holding the control character U\+000a/);
    expect((await checkCase(file('empty.npz', names(' '))))[0]!.message).toMatch(/found an empty name/);
    expect(() => encodeNpy({ dtype: 'str', shape: [1], data: ['\ud800'] })).toThrow(/not valid Unicode \(a lone surrogate\)/);
  });

  it('refuses two names of one structure, naming both (the empty one used to win silently)', async () => {
    const list = (second: string) => ({ dtype: 'str' as const, shape: [8], data: ['PTV70', second, 'Prostate', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel'] });
    const same = await checkCase(file('dup.npz', caseZip(caseArrays({ structures: list('PTV70') }))));
    expect(same[0]!.message).toMatch(/'structures' names one structure twice: expected each structure once \(rename or merge them\), found 'PTV70' \(index 0\) and 'PTV70' \(index 1\), the same name/);
    const spelled = await checkCase(file('dup_key.npz', caseZip(caseArrays({ structures: list('ptv-70') }))));
    expect(spelled[0]!.message).toMatch(/found 'PTV70' \(index 0\) and 'ptv-70' \(index 1\), names that differ only in case, spaces, '_' or '-'/);
    expect(() => mapStructures(['PTV70', 'ptv 70'])).toThrow(/the case names 'PTV70' and 'ptv 70', which are the same structure/);
    expect(() => parseTrainConfig({ dataDir: 'd', expName: 'e', structures: ['Rectum', 'rectum'] })).toThrow(/invalid training setting structures/);
  });

  it('refuses zero-sized volumes and spacings no patient has', async () => {
    const empty = caseArrays({
      ct: { dtype: 'int16', shape: [0, GRID[1], GRID[2]], data: new Int16Array(0) },
      dose: null,
      masks: { dtype: 'uint8', shape: [8, 0, GRID[1], GRID[2]], data: new Uint8Array(0) },
    });
    expect((await checkCase(file('zero.npz', caseZip(empty))))[0]!.message).toMatch(/'ct' has an empty axis: expected at least 1 voxel along each axis, found \[0,6,8\]/);
    for (const spacing of [1e300, 1e-300, Infinity]) {
      const problems = await checkCase(file('spacing.npz', caseZip(caseArrays({ spacing_mm: { dtype: 'float64', shape: [3], data: Float64Array.from([spacing, 2, 2]) } }))));
      expect(problems[0]!.message).toMatch(/'spacing_mm' is not a valid voxel spacing: expected 3 millimetre values from 0.001 to 100/);
    }
  });

  it('refuses metadata_json nested deeper than any writer nests it', async () => {
    const deep = caseArrays({ metadata_json: { dtype: 'str', shape: [], data: [`{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`] } });
    expect((await checkCase(file('deep.npz', caseZip(deep))))[0]!.message).toMatch(/'metadata_json' is nested too deeply: expected at most 64 levels/);
  });
});

describe('arrays and pickles whose headers lie', () => {
  it('refuses object and zero-width string arrays claiming 10^10 elements (a 59 KB file used to exhaust the heap)', () => {
    expect(() => parseNpy(rawNpy("{'descr': '|O', 'fortran_order': False, 'shape': (10000000000,), }", new Uint8Array(59_000)), 'obj.npy')).toThrow(
      /obj\.npy is an object array of 10000000000 elements held in 59000 bytes of pickle/,
    );
    const u0 = file('u0.npy', rawNpy("{'descr': '<U0', 'fortran_order': False, 'shape': (10000000000,), }"));
    expectOneSentence(runCli(['gamma', u0, u0, '--spacing', '1,1,1']), /u0\.npy has an unknown dtype: expected '<U<n>' with n >= 1, found '<U0'/);
  });

  it('decodes a long pickled integer in linear time, and refuses one longer than any metadata holds', async () => {
    // 2^8000 + 1 and -(2^700) as Python pickles them, compared with Python's own digits.
    const python = spawnSync('/usr/bin/python3', ['-c', 'import pickle,sys; sys.stdout.buffer.write(pickle.dumps({"a": 2**8000 + 1, "b": -(2**700), "c": 2**63}, protocol=2))']);
    const value = unpickle(new Uint8Array(python.stdout), 'ints') as Record<string, bigint>;
    expect(value.a).toBe(2n ** 8000n + 1n);
    expect(value.b).toBe(-(2n ** 700n));
    expect(value.c).toBe(2n ** 63n);
    expect(() => unpickle(pickleOf(op.proto, op.long4(new Uint8Array(2048).fill(7)), op.stop), 'long')).toThrow(/an integer of 2048 bytes is longer than the 1024 bytes read/);
    // A 4 MiB integer took minutes (quadratic): read in a child process, so that a hang fails the test.
    const path = file('bigint.npz', predecessorZip(pickleOf(op.proto, op.emptyDict, op.shortUnicode('n'), op.long4(new Uint8Array(4 << 20).fill(7)), op.setitem, op.stop)));
    expectOneSentence(runCli(['inspect', path], { timeoutMs: 60_000 }), /'metadata' in .*bigint\.npz is not a readable pickle: an integer of 4194304 bytes/);
  });

  it(`refuses a "billion laughs" pickle: metadata that would expand beyond ${MAX_EXPANDED_BYTES >> 20} MiB`, async () => {
    const laughs = pickleOf(op.proto, op.emptyDict, op.shortUnicode('script_version'), op.shortUnicode('2.3'), op.setitem, op.shortUnicode('x'), laughsPickle(), op.setitem, op.stop);
    await expect(loadCase(file('laughs.npz', predecessorZip(laughs)))).rejects.toThrow(/'metadata' in .*laughs\.npz expands to more than 64 MiB of data once its shared references are written out/);
    // Shared references that stay small are fine (a list used twice).
    const twice = pickleOf(op.proto, op.emptyList, op.binput(0), op.mark, op.binint1(5), op.appends, op.emptyList, op.mark, op.binget(0), op.binget(0), op.appends, op.stop);
    expect(unpickle(twice, 'twice')).toEqual([[5], [5]]);
  });

  it('refuses pickled arrays whose shape disagrees with their data, and lists that contain themselves', () => {
    const python = (code: string) => new Uint8Array(spawnSync('/usr/bin/python3', ['-c', `import pickle,sys,numpy as np; sys.stdout.buffer.write(pickle.dumps(${code}, protocol=2))`]).stdout);
    const objects = python("np.array([{'a': 1}, 2, 3], dtype=object)");
    // The shape tuple (3,) is BININT1 3, TUPLE1: claim 2^31-1 elements instead.
    const at = objects.findIndex((byte, i) => byte === 0x4b && objects[i + 1] === 3 && objects[i + 2] === 0x85);
    const claim = Uint8Array.from([...objects.subarray(0, at), 0x4a, 0xff, 0xff, 0xff, 0x7f, ...objects.subarray(at + 2)]);
    expect(() => unpickle(claim, 'claim')).toThrow(/claim holds a NumPy object array of shape \(2147483647\) with 3 elements, expected 2147483647/);
    const selfish = pickleOf(op.proto, op.emptyList, op.binput(0), op.binget(0), [0x61], op.stop); // l = []; l.append(l)
    expect(() => unpickle(selfish, 'selfish')).toThrow(/contains itself/);
  });
});

describe('checkpoints', () => {
  let checkpoint: string;
  const input = () => {
    const path = join(dir, 'case_for_predict.npz');
    if (!existsSync(path)) writeFileSync(path, caseZip(caseArrays()));
    return path;
  };
  beforeAll(async () => {
    checkpoint = (await saveInitialWeights(join(dir, 'base8.safetensors'), { baseChannels: 8, seed: 1 })).path;
  });

  it('refuses weights holding NaN or Inf instead of writing NaN predictions with exit 0', async () => {
    const withValue = (name: string, value: number) => file(`${name}.safetensors`, withTensorValue(new Uint8Array(readFileSync(checkpoint)), 'head.bias', value));
    const out = join(dir, 'out_nan');
    expectOneSentence(
      runCli(['predict', '--checkpoint', withValue('nan', NaN), '--input', input(), '--output-dir', out, '--patch-size', '16', '--threads', '1']),
      /nan\.safetensors: tensor "head\.bias" holds 1 value that is NaN or infinite .*use an earlier checkpoint/,
    );
    expect(existsSync(join(out, 'case_for_predict_pred.npz'))).toBe(false);
    await expect(predictFiles(withValue('inf', -Infinity), [input()], join(dir, 'out_inf'), { patchSize: 16 })).rejects.toThrow(/inf\.safetensors: tensor "head\.bias" holds 1 value that is NaN or infinite/);
    expect(existsSync(join(dir, 'out_inf', 'case_for_predict_pred.npz'))).toBe(false);
  });

  it('refuses a normalisation dose of 1e300 or Infinity', () => {
    for (const dose of ['1e300', 'Infinity', '-70']) {
      const bad = file('norm.safetensors', withSafetensorsMetadata(new Uint8Array(readFileSync(checkpoint)), (metadata) => (metadata.normalisation_dose_gy = dose)));
      expect(() => checkpointModel(bad)).toThrow(new RegExp(`has a normalisation dose of '${dose}': expected a number of Gy above 0, at most 1000`));
    }
  });

  it('checks a config claiming a wider network against the tensors before building it (3 MB used to allocate 11 GB)', () => {
    const wide = file(
      'wide.safetensors',
      withSafetensorsMetadata(new Uint8Array(readFileSync(checkpoint)), (metadata) => {
        metadata.config = JSON.stringify({ ...JSON.parse(metadata.config!), base_channels: 256, embed_dim: 4096 });
      }),
    );
    // Under a 3 GB address space: building the claimed network (2.6 GB of weights and more) could not even start.
    const result = spawnSync('bash', ['-c', `ulimit -v 3000000 && exec "${process.execPath}" "${cliPath}" predict --checkpoint "${wide}" --input "${input()}" --output-dir "${join(dir, 'out_wide')}" --patch-size 16`], { encoding: 'utf8', env: { ...process.env, OMP_WAIT_POLICY: 'passive' } });
    expectOneSentence({ status: result.status ?? -1, stderr: result.stderr }, /wide\.safetensors does not match a 9-input, base-256 BaselineUNet3D: tensor "cond\.0\.weight" has shape \[256, 13\], expected \[4096, 13\]/);
  });

  it('reports running out of memory with the cause and a remedy (it used to be an internal error, exit 2)', () => {
    // A 512³ window of 9 channels is 4.8 GB: more than a 3 GB address space allows.
    const result = spawnSync('bash', ['-c', `ulimit -v 3000000 && exec "${process.execPath}" "${cliPath}" predict --checkpoint "${checkpoint}" --input "${input()}" --output-dir "${join(dir, 'out_oom')}" --patch-size 512`], { encoding: 'utf8', env: { ...process.env, OMP_WAIT_POLICY: 'passive' } });
    expectOneSentence({ status: result.status ?? -1, stderr: result.stderr }, /out of host memory while predicting \(an allocation of \d+ bytes failed\): use a smaller patchSize \(--patch-size\) or swBatch \(--sw-batch\)/);
  });

  it('refuses a folder given as the checkpoint, naming it as a folder', () => {
    const folder = join(dir, 'folder.safetensors');
    mkdirSync(folder, { recursive: true });
    expect(() => checkpointModel(folder)).toThrow(/folder\.safetensors is a folder: expected a \.safetensors file/);
  });
});

describe('flags and settings that allocate or hang', () => {
  it('refuses --threads 100000 at once (the thread pool set-up used to hang), in every command', () => {
    const dose = file('dose.npy', npyBytes({ dtype: 'float32', shape: [4, 4, 4], data: new Float32Array(64).fill(10) }));
    expectOneSentence(runCli(['gamma', dose, dose, '--spacing', '1,1,1', '--threads', '100000'], { timeoutMs: 60_000 }), /threads must be a whole number from 0 to \d+ \(4 per CPU core; this machine has \d+\), got 100000/);
    expect(() => parseTrainConfig({ dataDir: 'd', expName: 'e', threads: 100000 })).toThrow(/invalid training setting threads: got 100000, expected an integer from 0 to 1024/);
  });

  it('prints the table of a wide network without building it, and refuses an absurd width with one sentence', () => {
    expectOneSentence(runCli(['model', '--base-channels', '1000000']), /baseChannels must be a multiple of 8 \(GroupNorm has 8 groups\) from 8 to 256, got 1000000/);
    expect(modelSummary({ baseChannels: 256 }).parameters).toBe(654_973_697);
  });

  it('refuses a deeply nested --config with one short sentence (it used to overflow the stack, exit 2)', () => {
    const config = file('deep.json', `{"dataDir":"d","expName":"e","epochs":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    const result = runCli(['train', '--config', config]);
    expectOneSentence(result, /invalid training setting epochs \(--epochs\): got an array nested too deeply to show, expected an integer >= 1/);
    expect(result.stderr.length).toBeLessThan(300);
  });

  it('refuses synth --shape 1024,1024,1024 before making anything (it used to fail after 6 GB, naming nothing)', () => {
    const out = join(dir, 'synth_big');
    expectOneSentence(runCli(['synth', '--out', out, '--shape', '1024,1024,1024']), /shape 1024x1024x1024 makes masks of 8\.0 GiB .*more than the 4 GiB one entry of a case file holds: choose a smaller shape/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a synthetic case larger than this machine can make', async () => {
    vi.resetModules();
    vi.doMock('node:os', async (original) => ({ ...(await original<typeof import('node:os')>()), totalmem: () => 2 ** 30 }));
    const { resolveSynthOptions } = await import('../src/data/synth.js');
    expect(() => resolveSynthOptions({ shape: [512, 512, 256] })).toThrow(/making a 512x512x256 synthetic case needs about 2\.5 GiB of memory, more than this machine's 1\.0 GiB: choose a smaller shape/);
    vi.doUnmock('node:os');
    vi.resetModules();
  });

  it("refuses empty flag values in every command (--overlap '' used to read as 0)", async () => {
    expectOneSentence(runCli(['predict', '--checkpoint', 'x.safetensors', '--input', 'x.npz', '--output-dir', dir, '--overlap', '']), /--overlap was given an empty value: give it one, as in --overlap <f>/);
    // Every command goes through the same check before its action runs: in process, nothing runs.
    const commands: [string[], RegExp][] = [
      [['gamma', 'a.npy', 'b.npy', '--spacing', '1,1,1', '--threads', ''], /--threads was given an empty value/],
      [['split', dir, '--seed', ' '], /--seed was given an empty value/],
      [['synth', '--out', join(dir, 'never'), '--seed', ''], /--seed was given an empty value/],
      [['train', '--data-dir', dir, '--exp-name', 'e', '--seed', ''], /--seed was given an empty value/],
      [['predict', '--checkpoint', 'x', '--input', 'x', '--output-dir', dir, '--constraint', 'rectum_v70=0.1', '--constraint', ''], /--constraint was given an empty value/],
      [['inspect', ''], /the argument <case> is empty/],
    ];
    for (const [args, message] of commands) await expect(buildProgram().parseAsync(args, { from: 'user' })).rejects.toThrow(message);
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });
});

describe('gamma', () => {
  it('refuses negative doses and a cutoff that leaves no point (a NaN pass rate used to exit 0)', async () => {
    const volume = (data: Float32Array) => ({ data, shape: [4, 4, 4] as [number, number, number], spacingMm: [1, 1, 1] as [number, number, number] });
    const dose = volume(Float32Array.from({ length: 64 }, (_, i) => i));
    await expect(gammaIndex(volume(new Float32Array(64).fill(-1)), dose)).rejects.toThrow(/the reference dose holds -1 Gy at flat index 0: expected finite doses >= 0 Gy/);
    await expect(gammaIndex(dose, volume(new Float32Array(64).fill(NaN)))).rejects.toThrow(/the evaluated dose holds NaN Gy at flat index 0/);
    await expect(gammaIndex(dose, dose, { cutoffPercent: 1000 })).rejects.toThrow(/gamma setting cutoffPercent = 1000 is invalid/);
    const path = file('dose_g.npy', npyBytes({ dtype: 'float32', shape: [4, 4, 4], data: dose.data }));
    expectOneSentence(runCli(['gamma', path, path, '--spacing', '1,1,1', '--cutoff', '100', '--norm', '500']), /no point of the reference reaches the cutoff of 500\.0 Gy .*lower --cutoff or --norm/);
  });
});

describe('file-system conditions are user errors with a sentence', () => {
  it('says the disk is full when --json goes to a full device (it used to print a stack)', () => {
    const result = spawnSync('bash', ['-c', `exec "${process.execPath}" "${cliPath}" model --base-channels 8 --json > /dev/full`], { encoding: 'utf8' });
    expectOneSentence({ status: result.status ?? -1, stderr: result.stderr }, /cannot write the output: the disk is full \(ENOSPC\): free some space or write elsewhere/);
  });

  it('classifies ENOSPC and EISDIR as user errors even without a path (they used to be exit 2)', () => {
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    expect(isUserError(full)).toBe(true);
    expect(userMessage(full)).toBe('cannot write: the disk is full (ENOSPC): free some space or write elsewhere');
    const folder = Object.assign(new Error('EISDIR: illegal operation on a directory, read'), { code: 'EISDIR', syscall: 'read' });
    expect(isUserError(folder)).toBe(true);
    const folderNpy = join(dir, 'folder.npy');
    mkdirSync(folderNpy, { recursive: true });
    expectOneSentence(runCli(['gamma', folderNpy, folderNpy, '--spacing', '1,1,1']), /the reference .*folder\.npy is a folder: expected a case file \(\.npz\) or a \.npy volume/);
  });

  // Needs a file system that fills up: a 64 KiB tmpfs, where mounting is allowed (root in a container).
  const mountPoint = mkdtempSync(join(tmpdir(), 'vmat-full-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mountPoint]).status === 0;
  afterAll(() => {
    if (mounted) spawnSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });
  it.skipIf(!mounted)('says the disk is full when a file written fills it', () => {
    const dose = file('dose_big.npy', npyBytes({ dtype: 'float32', shape: [32, 32, 32], data: new Float32Array(32 ** 3).fill(10) }));
    const result = runCli(['gamma', dose, dose, '--spacing', '2,2,2', '--out', join(mountPoint, 'gamma.npy'), '--threads', '1']);
    expectOneSentence(result, /the disk is full \(ENOSPC\)/);
  });
});

describe('encodeNpy validates its input (issue 14)', () => {
  it('refuses data of another class than its dtype, bad shapes and non-strings', () => {
    const cases: [unknown, RegExp][] = [
      [{ dtype: 'float32', shape: [2], data: new Float64Array(2) }, /has dtype float32: expected its data to be a Float32Array, found a Float64Array/],
      [{ dtype: 'int16', shape: [-1], data: new Int16Array(0) }, /has shape \[-1\]: expected a list of at most 32 non-negative integers/],
      [{ dtype: 'uint8', shape: [3], data: new Uint8Array(2) }, /holds 2 values, expected 3 for shape \[3\]/],
      [{ dtype: 'str', shape: [1], data: [7] }, /has dtype str: expected its data to be an array of strings/],
      [{ dtype: 'complex64', shape: [1], data: new Float32Array(2) }, /has dtype 'complex64': expected one of/],
    ];
    for (const [array, message] of cases) expect(() => encodeNpy(array as WritableNpyArray, 'x')).toThrow(message);
  });
});
