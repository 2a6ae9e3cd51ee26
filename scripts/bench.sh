#!/usr/bin/env bash
# Benchmarks: each section (bench/<section>.sh) runs vmat-native and its peer side by side in the same run, on the
# same machine, and prints the ratio. Run after scripts/setup.sh (build/ holds the bench_* executables).
# BENCHMARKS.md records the results with machine and date.
#   bash scripts/bench.sh                 every section
#   bash scripts/bench.sh data gamma      some sections
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export VMAT_BENCH_THREADS="${VMAT_BENCH_THREADS:-$(nproc)}"
sections=("$@")
if [[ ${#sections[@]} -eq 0 ]]; then
  for file in bench/*.sh; do sections+=("$(basename "$file" .sh)"); done
fi
for section in "${sections[@]}"; do
  [[ -f "bench/$section.sh" ]] || { echo "bench: no section '$section' (bench/*.sh: $(cd bench && ls *.sh | sed 's/\.sh$//' | tr '\n' ' '))" >&2; exit 1; }
  echo "== $section ($(date -u +%F), $(lscpu | sed -n 's/^Model name: *//p'), ${VMAT_BENCH_THREADS} threads)"
  bash "bench/$section.sh"
done
