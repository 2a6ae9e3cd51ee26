#!/usr/bin/env bash
# Benchmarks, one independent section each: `bash scripts/bench.sh [section]` (all sections without an argument).
# Keep runs short (tens of seconds). Record figures with machine and date in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
section="${1:-all}"
export OMP_WAIT_POLICY=passive

# --- train: patch pipeline throughput and sliding-window prediction vs the PyTorch reference (same windows, same threads)
if [[ "$section" == all || "$section" == train ]]; then
  threads="${VMAT_BENCH_THREADS:-2}"
  echo "## train: patch pipeline (9 x 128^3 patches from cached 9 x 96 x 128 x 128 cases, 2 loader threads)"
  ./build/bench_train patches 4 40 2 128
  echo "## train: sliding-window prediction on the CPU, ${threads} threads (base 16, 64 x 128 x 128, patch 64, overlap 0.5)"
  OMP_NUM_THREADS="$threads" ./build/bench_train sliding-window 16 64 128 128 64 2 3
  OMP_NUM_THREADS="$threads" /usr/bin/python3 bench/sliding_window_peer.py 16 64 128 128 64 2 3
fi
