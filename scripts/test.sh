#!/usr/bin/env bash
# The test command: native tests (ctest) then TypeScript tests (vitest). Run after scripts/setup.sh --test
# (`npm test` does that first through its pretest hook).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive
ctest --test-dir build --output-on-failure
npx --no-install vitest run
