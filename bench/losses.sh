# Each training-loss term, forward + backward w.r.t. the prediction, at batch 2 x 32^3 (native/bench/bench_losses.cpp)
# against the same formulas in PyTorch (bench/losses_peer.py, torchvision's VGG16 features), same threads, and each
# term's cost as a share of one CPU training step (base 16) at that size. About a minute on 2 cores.
set -euo pipefail
threads="$VMAT_BENCH_THREADS"
ours="$(build/bench_losses --size 32 --batch 2 --base 16 --repeat 5 --threads "$threads")"
peer="$(/usr/bin/python3 bench/losses_peer.py --size 32 --batch 2 --repeat 5 --threads "$threads")"
printf '%s\n' "$ours" "$peer"
node -e '
  const rows = process.argv[1].split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const pick = (impl, what) => rows.find((r) => r.impl === impl && r.what === what);
  const step = pick("vmat-native", "train_step");
  console.log(`term                  vmat-native   PyTorch   ratio   share of a step (base ${step.base}, ${step.batch}x${step.size}^3: ${step.median_ms.toFixed(0)} ms)`);
  for (const ours of rows.filter((r) => r.impl === "vmat-native" && r.what !== "train_step")) {
    const peer = pick("pytorch", ours.what);
    console.log(`${ours.what.padEnd(20)} ${ours.median_ms.toFixed(1).padStart(9)} ms ${peer.median_ms.toFixed(1).padStart(7)} ms ${(ours.median_ms / peer.median_ms).toFixed(2).padStart(6)}   ${(100 * ours.median_ms / step.median_ms).toFixed(1).padStart(5)} %`);
  }
' "$ours
$peer"
