#!/usr/bin/env bash
# Compiles every CUDA source of the core with nvcc (no GPU and no CUDA libtorch needed: the .cu files take raw
# pointers), so that compile errors never cost GPU time.
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
arch=${CUDA_ARCH:-sm_90}
status=0
for source in native/src/*.cu; do
  if "$nvcc" -std=c++17 -O3 -arch="$arch" --expt-relaxed-constexpr -Xptxas -v -I native/include -I native/src \
      -c "$source" -o "/tmp/$(basename "$source").o" > "/tmp/$(basename "$source").log" 2>&1; then
    echo "ok      $source ($(grep -c 'Compiling entry' "/tmp/$(basename "$source").log") kernels)"
  else
    echo "FAILED  $source"; cat "/tmp/$(basename "$source").log"; status=1
  fi
done
exit $status
