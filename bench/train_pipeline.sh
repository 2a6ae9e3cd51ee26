# Training data path and sliding-window prediction (native/bench/bench_train.cpp):
#  - patches of 9 x 128^3 per second from 4 cached 9 x 96 x 128 x 128 cases, 2 loader threads (target >= 10/s);
#  - sliding-window prediction on the CPU (base 16, 64 x 128 x 128, patch 64, overlap 0.5, sw-batch 2) vs the same
#    windows, weights and stitching through the PyTorch reference (bench/sliding_window_peer.py), same threads.
# About a minute on 2 cores.
set -euo pipefail
threads="${VMAT_BENCH_THREADS:-2}"
build/bench_train patches 4 40 2 128
ours="$(OMP_NUM_THREADS="$threads" build/bench_train sliding-window 16 64 128 128 64 2 3)"
peer="$(OMP_NUM_THREADS="$threads" /usr/bin/python3 bench/sliding_window_peer.py 16 64 128 128 64 2 3)"
printf '%s\n' "$ours" "$peer"
node -e '
  const rows = process.argv[1].split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const o = median(rows.filter((r) => r.impl === "vmat-native").map((r) => r.seconds));
  const p = median(rows.filter((r) => r.impl === "pytorch-reference").map((r) => r.seconds));
  console.log(`sliding window: vmat-native ${o.toFixed(2)} s, PyTorch reference ${p.toFixed(2)} s, ${(p / o).toFixed(2)}x`);
' "$ours
$peer"
