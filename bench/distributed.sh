# Data-parallel training over Gloo on 127.0.0.1 (native/bench/bench_distributed.cpp): training steps per second of
# one process against 2 ranks on this machine, each run on the same random cases (base 16, patch 32, 9 channels,
# fp32 on the CPU, 24 steps, the first 2 not timed), the machine's threads shared out between the ranks:
#  - the same global batch of 2 (1 process of batch 2, 2 ranks of batch 1): what distribution costs per step;
#  - the same batch per process (1 process of batch 2, 2 ranks of batch 2): patches per second, weak scaling.
# With 2 cores, 2 ranks can at best match 1 process of 2 threads: this measures the overhead (all-reduce of every
# gradient, split validation), not a speed-up, which needs more cores or GPUs. About a minute on 2 cores.
set -euo pipefail
threads="${VMAT_BENCH_THREADS:-2}"
per_rank=$(( threads / 2 > 0 ? threads / 2 : 1 ))
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
two_ranks() {  # batch per rank
  local port; port="$(free_port)"
  OMP_NUM_THREADS="$per_rank" build/bench_distributed 2 1 "$port" "$1" &
  local other=$!
  OMP_NUM_THREADS="$per_rank" build/bench_distributed 2 0 "$port" "$1"
  wait "$other"
}
one="$(OMP_NUM_THREADS="$threads" build/bench_distributed 1 0 0 2)"
two_same_global="$(two_ranks 1)"
two_same_local="$(two_ranks 2)"
printf '%s\n' "$one" "$two_same_global" "$two_same_local"
node -e '
  const [one, global, local] = process.argv.slice(1).map((l) => JSON.parse(l));
  const f = (r) => `${r.steps_per_second.toFixed(3)} steps/s, ${r.patches_per_second.toFixed(2)} patches/s`;
  console.log(`1 process, batch 2, ${one.threads_per_rank} threads:        ${f(one)}`);
  console.log(`2 ranks, batch 1 each, ${global.threads_per_rank} thread(s) each: ${f(global)}  (steps/s ${(global.steps_per_second / one.steps_per_second).toFixed(2)}x of 1 process)`);
  console.log(`2 ranks, batch 2 each, ${local.threads_per_rank} thread(s) each: ${f(local)}  (patches/s ${(local.patches_per_second / one.patches_per_second).toFixed(2)}x of 1 process)`);
' "$one" "$two_same_global" "$two_same_local"
