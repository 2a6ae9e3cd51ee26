#!/usr/bin/env bash
# On the GPU machine: times the fused Sobel loss (forward + backward, 2 x 128^3, checked against the conv3d form)
# for three tile shapes of native/src/sobel_loss.cu, in one call: 32x8x4 (x, y, z; the default), 16x8x8, and the
# first version's 8x8x8 (`git show cc09af1:native/src/sobel_loss.cu`, carried as .gpu-sobel/sobel_loss_8cube.cu).
# Prints one JSON line per variant.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
configure() {
  cmake -S . -B build -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CUDA_ARCHITECTURES=90 -DVMAT_BUILD_ADDON=OFF \
    -DVMAT_BUILD_TESTS=OFF -DCMAKE_CUDA_FLAGS="$1" > /tmp/cmake.log 2>&1 || { tail -20 /tmp/cmake.log; exit 1; }
}
run() {
  cmake --build build --parallel "$(nproc)" --target bench_gpu > /tmp/build.log 2>&1 || { grep -A4 error /tmp/build.log | head -40; exit 1; }
  printf '%s ' "$1"; ./build/bench_gpu --only sobel | tail -1
}
configure "" && run "32x8x4"
configure "-DVMAT_SOBEL_TILE_X=16 -DVMAT_SOBEL_TILE_Z=8" && run "16x8x8"
cp .gpu-sobel/sobel_loss_8cube.cu native/src/sobel_loss.cu && configure "" && run "8x8x8"
