#!/usr/bin/env bash
# Installs what is missing and builds everything: system packages (libtorch, compilers), npm packages, the native
# addon and the TypeScript. A second run finds everything in place and only checks it.
#   bash scripts/setup.sh          what running vmat-native needs
#   bash scripts/setup.sh --test   also what the tests need (GoogleTest, NumPy/SciPy/PyTorch/torchvision references, Chromium,
#                                  plastimatch, dcmtk, pydicom and dicompyler-core for DICOM)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test_deps=0
[[ "${1:-}" == "--test" ]] && want_test_deps=1

say() { printf '[setup] %s\n' "$*" >&2; }
fail() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ Node.js
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
(( node_major >= 20 )) || fail "Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none)); install it from your distribution or nodejs.org"

# ------------------------------------------------------------------ system packages
# The same search as the build's (scripts/install.mjs): LIBTORCH, Torch_DIR, a Python with torch, Debian's libtorch-dev.
libtorch_found() { node scripts/install.mjs libtorch >/dev/null 2>&1; }

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
command -v ninja >/dev/null || missing+=(ninja-build)
libtorch_found || missing+=(libtorch-dev)
# Debian's libtorch-dev has c10d's headers but not gloo's, which ProcessGroupGloo.hpp includes: without them the build
# leaves data-parallel training out.
if dpkg -s libtorch-dev >/dev/null 2>&1 || [[ " ${missing[*]} " == *" libtorch-dev "* ]]; then
  [[ -f /usr/include/gloo/context.h ]] || missing+=(libgloo-dev)
fi
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)  # the figures' font
if (( want_test_deps )); then
  [[ -f /usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake || -n "$(compgen -G '/usr/lib/*/cmake/GTest/GTestConfig.cmake')" ]] || missing+=(libgtest-dev)
  /usr/bin/python3 -c 'import numpy, scipy' 2>/dev/null || missing+=(python3-numpy python3-scipy)
  /usr/bin/python3 -c 'import torch' 2>/dev/null || missing+=(python3-torch)
  # the OpenKBP challenge's own evaluation code, the peer of bench/openkbp_scores.sh
  /usr/bin/python3 -c 'import pandas, more_itertools, tqdm' 2>/dev/null || missing+=(python3-pandas python3-more-itertools python3-tqdm)
  /usr/bin/python3 -c 'import torchvision' 2>/dev/null || missing+=(python3-torchvision)  # the VGG16 loss reference
  command -v chromium >/dev/null || missing+=(chromium)
  # DICOM-RT references of test/dicom.test.ts: plastimatch writes and rasterises the fixtures, dcmtk re-encodes them,
  # pydicom and dicompyler-core read them.
  command -v plastimatch >/dev/null || missing+=(plastimatch)
  command -v dcmconv >/dev/null || missing+=(dcmtk)
  /usr/bin/python3 -c 'import pydicom' 2>/dev/null || missing+=(python3-pydicom)
  /usr/bin/python3 -c 'import dicompylercore' 2>/dev/null || missing+=(python3-dicompylercore)
fi

if (( ${#missing[@]} )); then
  if [[ -f /etc/debian_version && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    say "installing with apt-get: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    fail "missing: ${missing[*]}. On Debian/Ubuntu: sudo apt-get install ${missing[*]}. Elsewhere install libtorch (pip install torch, or unpack libtorch and set LIBTORCH=/path/to/libtorch), CMake >= 3.18 and a C++17 compiler, then run this again"
  fi
fi
libtorch_found || { node scripts/install.mjs libtorch >/dev/null; exit 1; }  # prints why, in one sentence

# ------------------------------------------------------------------ npm packages
# npm ci where there is a lock file (a checkout), npm install otherwise; again only when the lock or package.json changed.
if [[ -f package-lock.json ]]; then deps_file=package-lock.json; npm_install=(npm ci); else deps_file=package.json; npm_install=(npm install); fi
deps_hash=$(sha256sum "$deps_file" | cut -d' ' -f1)
if [[ ! -f node_modules/.vmat-lock-hash || "$(cat node_modules/.vmat-lock-hash)" != "$deps_hash" ]]; then
  say "installing npm packages"
  "${npm_install[@]}" --no-audit --no-fund --loglevel=error
  echo "$deps_hash" > node_modules/.vmat-lock-hash
fi

# ------------------------------------------------------------------ build
say "building the native addon (build/; reconfigured when what was found changed)"
bash scripts/build-native.sh > build-native.log 2>&1 || { tail -40 build-native.log >&2; fail "the native build failed; the full log is in build-native.log"; }
say "building the TypeScript (dist/)"
npx --no-install tsc -p tsconfig.json
chmod +x dist/cli/main.js
say "ready: $(node dist/cli/main.js info --json | node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(`vmat-native ${r.vmatNativeVersion}, libtorch ${r.libtorchVersion}, ${r.devices.length?r.devices.map(d=>d.name).join(", "):"CPU"}`)')"
