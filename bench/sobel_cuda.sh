# The fused Sobel loss vs the conv3d form on the GPU (needs a CUDA build and device).
set -euo pipefail
build/bench_sobel_cuda
