#!/usr/bin/env bash
# Benchmarks, each section independent and each against its peer in the same run (BENCHMARKS.md records results).
#   bash scripts/bench.sh            every section
#   bash scripts/bench.sh data       one section
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive
sections=("$@")
run_section() { [[ ${#sections[@]} -eq 0 ]] || [[ " ${sections[*]} " == *" $1 "* ]]; }

# ------------------------------------------------------------------ data: distance maps and case loading
# 8 signed distance maps of a 128x300x300 case at (2.5,1,1) mm vs scipy.ndimage.distance_transform_edt; loading the
# ≈530 MB case file vs numpy.load. Needs /usr/bin/python3 with NumPy and SciPy; about a minute.
if run_section data; then
  echo "== data: distance maps and case loading (bench/data.bench.mjs)"
  node bench/data.bench.mjs
fi

# ------------------------------------------------------------------ train: patch pipeline and sliding-window prediction
# Patches of 9 x 128^3 per second from cached 9 x 96 x 128 x 128 cases (2 loader threads, target >= 10/s), and
# sliding-window prediction on the CPU (base 16, 64 x 128 x 128, patch 64, overlap 0.5) vs the same windows through the
# PyTorch reference (bench/sliding_window_peer.py), same thread count. About a minute.
if run_section train; then
  threads="${VMAT_BENCH_THREADS:-2}"
  echo "== train: patch pipeline (native/bench/bench_train.cpp)"
  ./build/bench_train patches 4 40 2 128
  echo "== train: sliding-window prediction, ${threads} threads: vmat-native, then the PyTorch reference"
  OMP_NUM_THREADS="$threads" ./build/bench_train sliding-window 16 64 128 128 64 2 3
  OMP_NUM_THREADS="$threads" /usr/bin/python3 bench/sliding_window_peer.py 16 64 128 128 64 2 3
fi
