/**
 * NumPy's legacy `RandomState` generator (MT19937), bit for bit, for the dataset split (data.md): seeding by
 * `init_genrand` (integer seeds) or `init_by_array` (array seeds), `random_interval` and the legacy in-place
 * shuffle behind `RandomState.permutation`.
 */
import { invalidInput } from '../errors.js';

const N = 624;
const M = 397;

export class MT19937 {
  private readonly key = new Uint32Array(N);
  private pos = N;

  /** RandomState(seed): an integer in [0, 2^32) seeds by init_genrand, an array of them by init_by_array. */
  constructor(seed: number | readonly number[]) {
    if (typeof seed === 'number') {
      if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw invalidInput(`the seed must be an integer between 0 and 2**32 - 1, got ${seed}`);
      this.initGenrand(seed);
    } else {
      if (seed.some((value) => !Number.isInteger(value) || value < 0 || value > 0xffffffff)) {
        throw invalidInput(`the seed array must hold integers between 0 and 2**32 - 1, got [${seed.join(', ')}]`);
      }
      this.initByArray(seed);
    }
  }

  private initGenrand(seed: number): void {
    const key = this.key;
    key[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const previous = key[i - 1]! ^ (key[i - 1]! >>> 30);
      key[i] = (Math.imul(1812433253, previous) + i) >>> 0;
    }
    this.pos = N;
  }

  private initByArray(init: readonly number[]): void {
    const key = this.key;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    const length = init.length;
    for (let k = Math.max(N, length); k > 0; k--) {
      const previous = key[i - 1]! ^ (key[i - 1]! >>> 30);
      key[i] = ((key[i]! ^ Math.imul(previous, 1664525)) + init[j]! + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        key[0] = key[N - 1]!;
        i = 1;
      }
      if (j >= length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const previous = key[i - 1]! ^ (key[i - 1]! >>> 30);
      key[i] = ((key[i]! ^ Math.imul(previous, 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        key[0] = key[N - 1]!;
        i = 1;
      }
    }
    key[0] = 0x80000000; // MSB is 1, assuring a non-zero initial array
    this.pos = N;
  }

  private generate(): void {
    const key = this.key;
    const twist = (a: number, b: number, c: number) => {
      const y = (a & 0x80000000) | (b & 0x7fffffff);
      return (c ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
    };
    let i = 0;
    for (; i < N - M; i++) key[i] = twist(key[i]!, key[i + 1]!, key[i + M]!);
    for (; i < N - 1; i++) key[i] = twist(key[i]!, key[i + 1]!, key[i + M - N]!);
    key[N - 1] = twist(key[N - 1]!, key[0]!, key[M - 1]!);
    this.pos = 0;
  }

  /** genrand_int32: the next tempered 32-bit output. */
  nextUint32(): number {
    if (this.pos === N) this.generate();
    let y = this.key[this.pos++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** NumPy's random_interval(max): uniform in [0, max] by masked rejection (max < 2^32 here). */
  interval(max: number): number {
    if (max === 0) return 0;
    let mask = max;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    mask >>>= 0;
    for (;;) {
      const value = (this.nextUint32() & mask) >>> 0;
      if (value <= max) return value;
    }
  }

  /** RandomState.shuffle on a 1-d array (the legacy Fisher–Yates from the end). */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i >= 1; i--) {
      const j = this.interval(i);
      const held = items[j]!;
      items[j] = items[i]!;
      items[i] = held;
    }
    return items;
  }

  /** RandomState.permutation(n). */
  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }
}
