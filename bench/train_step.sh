# One CPU training step of ours vs the PyTorch reference (Debian python3-torch) doing the same step, same threads.
set -euo pipefail
threads="$VMAT_BENCH_THREADS"
# Ours and the peer alternate for two rounds; each reports the median step of its run and the best round counts,
# so that load from other processes on a shared machine hits both alike.
for config in "8 32 2 5 2" "16 64 2 3 1"; do
  read -r base size batch steps warmup <<<"$config"
  ours_runs=() peer_runs=()
  for round in 1 2; do
    ours_runs+=("$(build/bench_train_step --base "$base" --size "$size" --batch "$batch" --steps "$steps" --warmup "$warmup" --threads "$threads")")
    peer_runs+=("$(/usr/bin/python3 bench/peer_train_step.py --base "$base" --size "$size" --batch "$batch" --steps "$steps" --warmup "$warmup" --threads "$threads")")
  done
  printf '%s\n' "${ours_runs[@]}" "${peer_runs[@]}"
  node -e '
    const rows = process.argv.slice(1).join("\n").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const best = (rows, key) => Math.min(...rows.map((r) => r[key]));
    const ours = rows.filter((r) => r.what === "train_step" && r.impl === "vmat-native");
    const peer = rows.filter((r) => r.what === "train_step" && r.impl === "pytorch");
    const sobel = rows.filter((r) => r.what === "sobel_fwd_bwd");
    const o = best(ours, "median_ms"), p = best(peer, "median_ms");
    const f = best(sobel, "fused_ms"), c = best(sobel, "conv3d_ms");
    console.log(`base ${ours[0].base}, ${ours[0].batch}x${ours[0].size}^3: vmat-native ${o} ms, PyTorch ${peer[0].torch} ${p} ms, ratio ${(o / p).toFixed(2)}`);
    console.log(`Sobel loss fwd+bwd ${sobel[0].batch}x${sobel[0].size}^3: fused ${f} ms, conv3d form ${c} ms, ratio ${(f / c).toFixed(3)}`);
  ' "${ours_runs[@]}" "${peer_runs[@]}"
done
