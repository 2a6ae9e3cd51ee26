#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh needs on the GPU machine (which has no Node.js, npm or network) in .gpu/
# (git-ignored): the Node.js binary, the production node_modules, GoogleTest's package, and the PyTorch peer scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${VMAT_SHARED:-../shared}"
rm -rf .gpu/app && mkdir -p .gpu/app .gpu/peer
bash "$shared/gpu/pack-node.sh" >/dev/null
cp package.json package-lock.json .gpu/app/
# cmake-js is not needed there (plain cmake builds the addon); sources maps, typings and docs are not needed to run.
(cd .gpu/app && node -e 'const f="package.json",p=JSON.parse(require("fs").readFileSync(f));delete p.dependencies["cmake-js"];require("fs").writeFileSync(f,JSON.stringify(p))' \
  && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error \
  && find node_modules \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.md' \) -delete)
# Packed: the carried tree has a 64 MiB limit.
tar -cJf .gpu/node_modules.tar.xz -C .gpu/app node_modules && rm -rf .gpu/app
[[ -f .gpu/libgtest-dev_*.deb ]] 2>/dev/null || (cd .gpu && apt-get download libgtest-dev >/dev/null 2>&1)
cp "$shared/reference/unet_ref.py" "$shared/reference/pytorch_peer_bench.py" .gpu/peer/
du -sh .gpu
