import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native-heavy files share 2 cores with libtorch's OpenMP pool: run files one at a time (toolchain.md).
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    env: { OMP_WAIT_POLICY: 'passive' },
  },
});
