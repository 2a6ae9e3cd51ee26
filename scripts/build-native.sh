#!/usr/bin/env bash
# Builds the native core, its tests, the benchmarks and the Node addon with cmake-js into build/ ($VMAT_BUILD_DIR).
# Extra arguments go to cmake-js (e.g. --CDVMAT_CUDA=OFF). Set VMAT_BUILD_JOBS to limit parallel compile jobs.
# It configures every time (a package installed since, such as GoogleTest, is found) and afresh when the tools,
# libtorch or options changed (scripts/install.mjs build).
set -euo pipefail
cd "$(dirname "$0")/.."
exec node scripts/install.mjs build "$@"
