#!/usr/bin/env bash
# The test command: native tests (ctest) then TypeScript tests (vitest). Run after scripts/setup.sh --test
# (`npm test` does that first through its pretest hook). No native tests found is a failure, not a pass: it means
# the build was configured without GoogleTest.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive
build_dir="${VMAT_BUILD_DIR:-build}"
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error || {
  status=$?
  [[ -n "$(ctest --test-dir "$build_dir" -N 2>/dev/null | grep -E '^ *Test +#')" ]] ||
    printf '[test] error: no native tests in %s: it was built without GoogleTest; run `bash scripts/setup.sh --test` (installs libgtest-dev and reconfigures)\n' "$build_dir" >&2
  exit "$status"
}
npx --no-install vitest run
