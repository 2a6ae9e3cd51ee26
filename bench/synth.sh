# `vmat-native synth` of the default cohort (23 cases of 96x128x128), wall and CPU time with 2 and 1 threads.
set -euo pipefail
synth_out="$(mktemp -d)"
for threads in 2 1; do
  start=$(date +%s.%N)
  cpu=$( { OMP_NUM_THREADS=$threads /usr/bin/time -f '%U %S' node dist/cli/main.js synth --out "$synth_out" --overwrite >/dev/null; } 2>&1 | tail -1)
  end=$(date +%s.%N)
  awk -v t="$threads" -v s="$start" -v e="$end" -v c="$cpu" 'BEGIN { split(c, u, " "); printf "threads %d: wall %.1f s, CPU %.1f s\n", t, e - s, u[1] + u[2] }'
done
rm -rf "$synth_out"
