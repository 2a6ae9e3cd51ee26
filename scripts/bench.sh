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
