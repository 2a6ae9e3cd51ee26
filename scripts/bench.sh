#!/usr/bin/env bash
# Benchmarks, each section independent and each against its peer in the same run (BENCHMARKS.md records results).
#   bash scripts/bench.sh            every section
#   bash scripts/bench.sh data       one section (data, train, gamma)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive
sections=("$@")
run_section() { [[ ${#sections[@]} -eq 0 ]] || [[ " ${sections[*]} " == *" $1 "* ]] || [[ " ${sections[*]} " == *" all "* ]]; }

# ------------------------------------------------------------------ data: distance maps and case loading
# 8 signed distance maps of a 128x300x300 case at (2.5,1,1) mm vs scipy.ndimage.distance_transform_edt; loading the
# ≈530 MB case file vs numpy.load. Needs /usr/bin/python3 with NumPy and SciPy; about a minute.
if run_section data; then
  echo "== data: distance maps and case loading (bench/data.bench.mjs)"
  node bench/data.bench.mjs
fi

# ------------------------------------------------------------------ train: patch pipeline and sliding window vs the PyTorch reference
if run_section train; then
  threads="${VMAT_BENCH_THREADS:-2}"
  echo "## train: patch pipeline (9 x 128^3 patches from cached 9 x 96 x 128 x 128 cases, 2 loader threads)"
  ./build/bench_train patches 4 40 2 128
  echo "## train: sliding-window prediction on the CPU, ${threads} threads (base 16, 64 x 128 x 128, patch 64, overlap 0.5)"
  OMP_NUM_THREADS="$threads" ./build/bench_train sliding-window 16 64 128 128 64 2 3
  OMP_NUM_THREADS="$threads" /usr/bin/python3 bench/sliding_window_peer.py 16 64 128 128 64 2 3
fi

# ------------------------------------------------------------------ gamma: vmat-native vs pymedphys on the same pair
# 128³ at 2.5 mm, 3%/3 mm, 10 % cutoff, 2 threads: `vmat-native gamma` against pymedphys' gamma_shell on the same
# arrays (both pass rates, the speed-up). pymedphys is not a dependency: set PYMEDPHYS_SRC to a folder holding the
# pymedphys package (a checkout's lib/); without it only vmat-native runs and the report says so. pymedphys takes
# minutes here. Then the native CPU timing of both criteria (and, on a CUDA build, CUDA against CPU: --check-cuda).
if run_section gamma; then
  threads="${VMAT_BENCH_THREADS:-2}"
  echo "== gamma: vmat-native vs pymedphys, 128^3 at 2.5 mm, 3%/3 mm, ${threads} threads (bench/gamma_peer.py)"
  /usr/bin/python3 bench/gamma_peer.py --size 128 --spacing 2.5 --threads "$threads"
  echo "== gamma: native CPU${VMAT_BENCH_CUDA:+ and CUDA}, 3%/3 mm and 2%/2 mm (build/bench_gamma)"
  ./build/bench_gamma --size 128 --threads "$threads" --repeat 3 ${VMAT_BENCH_CUDA:+--check-cuda}
fi
