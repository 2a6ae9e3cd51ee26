# Each training-loss term, forward + backward w.r.t. the prediction, at batch 2 x 32^3 (native/bench/bench_losses.cpp)
# against the same formulas in PyTorch (bench/losses_peer.py, torchvision's VGG16 features), same threads, and each
# term's cost as a share of one CPU training step (base 16) at that size. Ours and the peer alternate for two rounds
# and the best median of each counts, so that load from other processes hits both alike. About a minute on 2 cores.
set -euo pipefail
threads="$VMAT_BENCH_THREADS"
runs=()
for round in 1 2; do
  runs+=("$(build/bench_losses --size 32 --batch 2 --base 16 --repeat 5 --threads "$threads")")
  runs+=("$(/usr/bin/python3 bench/losses_peer.py --size 32 --batch 2 --repeat 5 --threads "$threads")")
done
printf '%s\n' "${runs[@]}"
node -e '
  const rows = process.argv.slice(1).join("\n").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const best = (impl, what) => Math.min(...rows.filter((r) => r.impl === impl && r.what === what).map((r) => r.median_ms));
  const step = rows.find((r) => r.what === "train_step");
  const stepMs = best("vmat-native", "train_step");
  console.log(`term                 vmat-native   PyTorch   ratio   share of a training step (base ${step.base}, ${step.batch}x${step.size}^3, ${stepMs.toFixed(0)} ms)`);
  for (const what of [...new Set(rows.filter((r) => r.impl === "pytorch").map((r) => r.what))]) {
    const ours = best("vmat-native", what), peer = best("pytorch", what);
    console.log(`${what.padEnd(20)} ${ours.toFixed(1).padStart(9)} ms ${peer.toFixed(1).padStart(7)} ms ${(ours / peer).toFixed(2).padStart(6)}   ${(100 * ours / stepMs).toFixed(1).padStart(5)} %`);
  }
' "${runs[@]}"
