#!/usr/bin/env bash
# One call on the GPU machine (no npm, no network): build with plain CMake against the local PyTorch's libtorch
# (CUDA), run the native tests, `vmat-native info`, the native GPU benchmark and the PyTorch peer side by side, and a
# short end-to-end train/predict/gamma on the synthetic cohort. Logs and JSON go to $OUT; a table of ratios is printed
# last.
#
# Prepare here first (see BENCHMARKS.md, "GPU"): `bash scripts/gpu-prepare.sh` (node binary, production
# node_modules, GoogleTest, the peer scripts into .gpu/), and `npm run build:ts`. Then, with the device tool:
#   carry [".gpu", "dist"], command "bash scripts/gpu-check.sh"
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/vmat-gpu-out}"
mkdir -p "$OUT"
log() { printf '[gpu-check %s] %s\n' "$(date +%T)" "$*"; }
export PYTHONUNBUFFERED=1

source .gpu/unpack-node.sh >/dev/null
[[ -e node_modules ]] || python3 -c "import tarfile; tarfile.open('.gpu/node_modules.tar.xz').extractall('.')"
mkdir -p /tmp/gtest && dpkg -x .gpu/libgtest-dev_*.deb /tmp/gtest
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"

log "configure + build (plain cmake, libtorch $(python3 -c 'import torch;print(torch.__version__)'))"
prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
cmake -S . -B build -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DGTest_DIR=/tmp/gtest/usr/lib/x86_64-linux-gnu/cmake/GTest > "$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
grep -E "^-- vmat" "$OUT/cmake.log"
cmake --build build --parallel 16 > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" -A3 "$OUT/build.log" | head -60; exit 1; }
log "built"

node dist/cli/main.js info | tee "$OUT/info.txt"
node dist/cli/main.js info --json > "$OUT/info.json"

log "native tests"
OMP_WAIT_POLICY=passive ctest --test-dir build --output-on-failure --timeout 300 > "$OUT/ctest.log" 2>&1
tail -4 "$OUT/ctest.log"; grep -E "Failed|\*\*\*" "$OUT/ctest.log" | head

log "native GPU benchmark"
./build/bench_gpu --json "$OUT/native.json" 2>&1 | tee "$OUT/bench_gpu.log"
if [[ -x build/bench_gamma ]]; then
  log "gamma, CPU vs CUDA"
  ./build/bench_gamma --check-cuda 2>&1 | tee "$OUT/bench_gamma.log"
fi

log "PyTorch peer (eager)"
(cd .gpu/peer && OUT="$OUT" timeout 240 python3 pytorch_peer_bench.py > "$OUT/peer.log" 2>&1); tail -8 "$OUT/peer.log"

log "end to end: synth -> train (cuda) -> predict -> gamma"
rm -rf /tmp/e2e && mkdir -p /tmp/e2e
node dist/cli/main.js synth --out /tmp/e2e/data --cases 10 --shape 96,128,128 2>&1 | tail -2
node dist/cli/main.js train --exp-name gpu_smoke --data-dir /tmp/e2e/data --log-dir /tmp/e2e/runs --epochs 3 \
  --patch-size 64 --batch-size 2 --device cuda --use-gradient-loss 2>&1 | tail -6
cp /tmp/e2e/runs/gpu_smoke/metrics.csv "$OUT/e2e_metrics.csv" 2>/dev/null
cp /tmp/e2e/runs/gpu_smoke/log.jsonl "$OUT/e2e_log.jsonl" 2>/dev/null
node dist/cli/main.js evaluate /tmp/e2e/runs/gpu_smoke --json > "$OUT/e2e_eval.json" 2> "$OUT/e2e_eval.err"; tail -3 "$OUT/e2e_eval.err"

log "table"
python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        data = json.load(open(os.path.join(out, name)))
    except Exception:
        return {}
    return {d.get("name"): d for d in data} if isinstance(data, list) else data
ours, peer = load("native.json"), load("anchor.json")
rows = []
def row(label, o, p, unit):
    ratio = f"{o / p:.2f}" if (o and p) else "-"
    rows.append(f"| {label} | {o if o is not None else '-'} {unit} | {p if p is not None else '-'} {unit} | {ratio} |")
g = lambda d, k, f: (d.get(k) or {}).get(f)
row("train step fp32/TF32 (unfused)", g(ours, "train_step_fp32_tf32conv_unfused", "ms_per_step"), g(peer, "train_step_fp32_tf32conv", "ms_per_step"), "ms")
row("train step bf16 (unfused)", g(ours, "train_step_bf16_unfused", "ms_per_step"), g(peer, "train_step_bf16_autocast", "ms_per_step"), "ms")
row("train step bf16 (fused norm_act)", g(ours, "train_step_bf16_fused", "ms_per_step"), g(peer, "train_step_bf16_autocast", "ms_per_step"), "ms")
row("peak memory bf16 (unfused)", g(ours, "train_step_bf16_unfused", "peak_gib"), g(peer, "train_step_bf16_autocast", "peak_gib"), "GiB")
row("peak memory bf16 (fused)", g(ours, "train_step_bf16_fused", "peak_gib"), g(peer, "train_step_bf16_autocast", "peak_gib"), "GiB")
row("Sobel loss fwd+bwd 2x128^3", g(ours, "sobel_loss_fwd_bwd_2x128^3", "fused_ms"), g(peer, "sobel_loss_fwd_bwd_2x128^3", "ms"), "ms")
sw = [v["ms"] for k, v in ours.items() if k and k.startswith("sliding_window_160x256x256_bf16_b") and "ms" in v]
row("sliding window 160x256x256 (best sw-batch)", min(sw) if sw else None, g(peer, "sliding_window_160x256x256_bf16", "ms"), "ms")
print("| measure | vmat-native | PyTorch eager | ratio |\n|---|---|---|---|")
print("\n".join(rows))
EOF
