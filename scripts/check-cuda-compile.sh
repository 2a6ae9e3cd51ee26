#!/usr/bin/env bash
# Compile checks of the CUDA build where there is no GPU, so that compile errors never cost GPU time:
#  1. every CUDA source of the core with nvcc (the .cu files take raw pointers: no CUDA libtorch needed);
#  2. the C++ sources with CUDA code paths (VMAT_WITH_CUDA) checked for syntax and types against the CUDA headers
#     of the installed libtorch (Debian's CPU libtorch ships them; TORCH_INCLUDE overrides /usr/include).
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
arch=${CUDA_ARCH:-sm_90}
cuda_include=${CUDA_HOME:-/usr/local/cuda}/include
torch_include=${TORCH_INCLUDE:-/usr/include}
status=0
for source in native/src/*.cu; do
  if "$nvcc" -std=c++17 -O3 -arch="$arch" --expt-relaxed-constexpr -Xptxas -v -I native/include -I native/src \
      -c "$source" -o "/tmp/$(basename "$source").o" > "/tmp/$(basename "$source").log" 2>&1; then
    echo "ok      $source ($(grep -c 'Compiling entry' "/tmp/$(basename "$source").log") kernels)"
  else
    echo "FAILED  $source"; cat "/tmp/$(basename "$source").log"; status=1
  fi
done

# A CPU libtorch lacks the one header its build generates for CUDA (c10/cuda/impl/cuda_cmake_macros.h); an empty
# one stands in, which only matters for the C10_CUDA_BUILD_SHARED_LIBS export macros.
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
if [[ -d "$torch_include/c10/cuda" ]]; then
  [[ -f "$torch_include/c10/cuda/impl/cuda_cmake_macros.h" ]] || { mkdir -p "$stub/c10/cuda/impl"; : > "$stub/c10/cuda/impl/cuda_cmake_macros.h"; }
  for source in $(grep -l "VMAT_WITH_CUDA" native/src/*.cpp native/bench/*.cpp); do
    if g++ -std=c++17 -fsyntax-only -DVMAT_WITH_CUDA=1 -I native/include -I native/src -I "$torch_include" \
        -I "$torch_include/torch/csrc/api/include" -I "$stub" -I "$cuda_include" "$source" > "/tmp/$(basename "$source").log" 2>&1; then
      echo "ok      $source (C++ with CUDA paths, against $torch_include)"
    else
      echo "FAILED  $source (C++ with CUDA paths)"; grep -E "error" "/tmp/$(basename "$source").log" | head -20; status=1
    fi
  done
else
  echo "skipped the C++ CUDA-path check: no c10/cuda headers under $torch_include"
fi
exit $status
