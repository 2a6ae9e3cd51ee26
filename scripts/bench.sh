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

# ------------------------------------------------------------------ synth: the default synthetic cohort
# `synth --cases 23 --shape 96,128,128` (the README's cohort) with 2 intra-op threads and with 1, wall and CPU time.
# Target: under a minute on 2 cores. About 1–2 minutes.
if run_section synth; then
  echo "== synth: 23 cases of 96x128x128 (vmat-native synth)"
  synth_out="$(mktemp -d)"
  for threads in 2 1; do
    start=$(date +%s.%N)
    cpu=$( { OMP_NUM_THREADS=$threads /usr/bin/time -f '%U %S' node dist/cli/main.js synth --out "$synth_out" --overwrite >/dev/null; } 2>&1 | tail -1)
    end=$(date +%s.%N)
    awk -v t="$threads" -v s="$start" -v e="$end" -v c="$cpu" 'BEGIN { split(c, u, " "); printf "threads %d: wall %.1f s, CPU %.1f s\n", t, e - s, u[1] + u[2] }'
  done
  rm -rf "$synth_out"
fi
