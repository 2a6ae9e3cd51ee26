#!/usr/bin/env bash
# Builds the native core, its tests and the Node addon with cmake-js into build/Release.
# Extra arguments go to cmake-js (e.g. --CDVMAT_CUDA=OFF). Set VMAT_BUILD_JOBS to limit parallel compile jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${VMAT_BUILD_JOBS:-$(nproc)}"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(--generator Ninja)
launcher=()  # ccache, where installed, makes rebuilds in other checkouts of the project nearly free
command -v ccache >/dev/null 2>&1 && launcher=(--CDCMAKE_CXX_COMPILER_LAUNCHER=ccache)
npx --no-install cmake-js build --out build "${generator[@]}" "${launcher[@]}" --parallel "$jobs" "$@"
