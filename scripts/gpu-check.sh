#!/usr/bin/env bash
# One call on the GPU machine (no npm, no network): build with plain CMake against the local PyTorch's libtorch
# (CUDA), then, most important first: `vmat-native info`, the native tests (CUDA kernels against the CPU), the native
# GPU benchmark, the PyTorch peer side by side, gamma CPU vs CUDA, and a short end-to-end synth -> train (cuda) ->
# evaluate. Logs and JSON go to $OUT; a table of ratios is printed last.
#
# Prepare here first: `bash scripts/gpu-prepare.sh` (Node binary, production node_modules, GoogleTest, the peer
# scripts into .gpu/) and `npm run build:ts`. Then, with the device tool: carry [".gpu", "dist"], command
# `bash scripts/gpu-check.sh` (~275 s on an H200; `VMAT_GPU_CHECK_COMPILE=1 bash scripts/gpu-check.sh` also times
# the peer under torch.compile, about 80 s more; VMAT_GPU_CHECK_STUDY=1 adds the full-size study, see that step).
# VMAT_BUILD_DIR and VMAT_SKIP_BUILD allow a dry run elsewhere.
set -uo pipefail
cd "$(dirname "$0")/.."
# The device tool brings back at most 8 files from $OUT: logs are written to a work folder and packed into
# $OUT/gpu-check.tgz at every phase, so that a run cut short still returns what it did.
RESULTS="${OUT:-/tmp/vmat-gpu-out}"
OUT=/tmp/vmat-gpu-work
build="${VMAT_BUILD_DIR:-build}"
mkdir -p "$OUT" "$RESULTS"
log() { printf '[gpu-check %s] %s\n' "$(date +%T)" "$*"; tar -czf "$RESULTS/gpu-check.tgz" -C "$OUT" . 2>/dev/null; }
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=passive PATH="/usr/local/cuda/bin:$PATH"
export VMAT_NATIVE_ADDON="$PWD/$build/vmat_native.node"
cpus=$(nproc)

source .gpu/unpack-node.sh >/dev/null
[[ -e node_modules ]] || python3 -c "import tarfile; tarfile.open('.gpu/node_modules.tar.xz').extractall('.')"
mkdir -p /tmp/gtest && dpkg -x .gpu/libgtest-dev_*.deb /tmp/gtest
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

if [[ -z "${VMAT_SKIP_BUILD:-}" ]]; then
  log "configure + build (plain cmake, torch $(python3 -c 'import torch;print(torch.__version__)'), $cpus jobs)"
  prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  cmake -S . -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DGTest_DIR=/tmp/gtest/usr/lib/x86_64-linux-gnu/cmake/GTest > "$OUT/cmake.log" 2>&1 || { tail -40 "$OUT/cmake.log"; exit 1; }
  grep -E "^-- vmat" "$OUT/cmake.log"
  # Only what this script runs: the addon, the native tests, the two benchmarks.
  targets=(vmat_native bench_gpu bench_gamma bench_distributed)
  for test in native/tests/test_*.cpp; do targets+=("$(basename "$test" .cpp)"); done
  cmake --build "$build" --parallel "$cpus" --target "${targets[@]}" > "$OUT/build.log" 2>&1 ||
    { grep -E "error|FAILED" -A4 "$OUT/build.log" | head -80; log "build failed"; exit 1; }
  log "built"
fi

node dist/cli/main.js info | tee "$OUT/info.txt"
node dist/cli/main.js info --json > "$OUT/info.json"

log "native tests"
ctest --test-dir "$build" --output-on-failure --timeout 240 -j4 > "$OUT/ctest.log" 2>&1
grep -E "tests passed|Passed|Failed|Skipped|\*\*\*" "$OUT/ctest.log" | tail -16
grep -E "SKIPPED|FAILED|Failure" -A3 "$OUT/ctest.log" | head -30

log "native GPU benchmark"
"./$build/bench_gpu" --json "$OUT/native.json" 2>&1 | tee "$OUT/bench_gpu.log"

# VMAT_GPU_CHECK_COMPILE=1 adds the peer's torch.compile step (about 60 s of compiling on top).
if [[ "${VMAT_GPU_CHECK_COMPILE:-0}" == 1 ]]; then peer_flags=(--compile) peer_limit=320; else peer_flags=() peer_limit=200; fi
log "PyTorch peer (eager${peer_flags:+ and torch.compile})"
(cd .gpu/peer && OUT="$OUT" timeout "$peer_limit" python3 pytorch_peer_bench.py "${peer_flags[@]}" > "$OUT/peer.log" 2>&1)
grep -E "^\{\"(train|sobel|sliding)" "$OUT/peer.log"

log "gamma, CPU ($cpus threads) vs CUDA"
timeout 120 "./$build/bench_gamma" --size 128 --threads "$cpus" --repeat 3 --check-cuda 2>&1 | tee "$OUT/bench_gamma.log"

# Patch 128 as in the issue's table, so that the data-wait fraction is measured at the size that loads the loader most.
log "end to end: synth -> train (cuda, base 48, patch 128) -> evaluate RUN"
rm -rf /tmp/e2e && mkdir -p /tmp/e2e
node dist/cli/main.js synth --out /tmp/e2e/data --cases 8 --shape 128,160,160 2>&1 | tail -1
timeout 150 node dist/cli/main.js train --exp-name gpu_smoke --data-dir /tmp/e2e/data --log-dir /tmp/e2e/runs \
  --epochs 3 --patch-size 128 --device cuda --use-gradient-loss 2>&1 | tail -5
cp /tmp/e2e/runs/gpu_smoke/metrics.csv "$OUT/e2e_metrics.csv" 2>/dev/null
grep '"type":"epoch"' /tmp/e2e/runs/gpu_smoke/log.jsonl > "$OUT/e2e_epochs.jsonl" 2>/dev/null
timeout 90 node dist/cli/main.js evaluate /tmp/e2e/runs/gpu_smoke --device cuda --json > "$OUT/e2e_eval.json" 2> "$OUT/e2e_eval.err"
tail -2 "$OUT/e2e_eval.err"

# Prepared, not yet run on a GPU: the full-size OpenKBP benchmark (bench/openkbp.bench.mjs at 128³ with the seed
# network, all complete training and validation patients, all test patients). It needs the challenge's data on the
# GPU machine (OPENKBP_DIR: a copy of ababier/open-kbp; 2.2 GB of CSVs, more than the device tool carries), and far
# more than one call's 10 minutes for the issue's 200 epochs: OPENKBP_EPOCHS sets how many fit.
if [[ -n "${OPENKBP_DIR:-}" && -d "${OPENKBP_DIR}/provided-data" ]]; then
  log "OpenKBP full size: 128³, width 48, patch 128, ${OPENKBP_EPOCHS:-200} epochs (cuda)"
  OPENKBP_FACTOR=1 OPENKBP_WIDTH=48 OPENKBP_PATCH=128 OPENKBP_TRAIN=0 OPENKBP_VAL=0 OPENKBP_TEST=0 OPENKBP_LR=1e-4 \
    OPENKBP_EPOCHS="${OPENKBP_EPOCHS:-200}" OPENKBP_DEVICE=cuda timeout "${OPENKBP_TIMEOUT:-540}" \
    node bench/openkbp.bench.mjs 2>&1 | tee "$OUT/openkbp.log" | tail -20
fi

# VMAT_GPU_CHECK_STUDY=1: the seed's question at full size (README "Is the gradient loss real?"): the 23-case cohort
# at 96x128x128, base 48, patch 128, baseline vs gradient loss 0.1, 3 seeds, 5 folds (30 runs), full 3D gamma on
# every test case. VMAT_GPU_STUDY_EPOCHS (default 30) sets the epochs of each run; the seed trained 200 epochs, which
# takes hours, more than one device session. Resumable: the same command continues a study cut short.
if [[ "${VMAT_GPU_CHECK_STUDY:-0}" == 1 ]]; then
  log "study: baseline vs grad_loss_0.1, 3 seeds x 5 folds, full size"
  [[ -d /tmp/study/data ]] || node dist/cli/main.js synth --out /tmp/study/data --cases 23 --shape 96,128,128 2>&1 | tail -1
  timeout "${VMAT_GPU_STUDY_LIMIT_S:-3000}" node dist/cli/main.js study --arms baseline,grad_loss_0.1 --seeds 3 --folds 5 \
    --data-dir /tmp/study/data --exp-name gpu_study --log-dir /tmp/study/runs --device cuda \
    --epochs "${VMAT_GPU_STUDY_EPOCHS:-30}" --patch-size 128 --base-channels 48 > "$OUT/study.txt" 2> "$OUT/study.err"
  cp /tmp/study/runs/gpu_study/summary.json /tmp/study/runs/gpu_study/summary.md /tmp/study/runs/gpu_study/records.csv "$OUT/" 2>/dev/null
  cat "$OUT/study.txt"; tail -3 "$OUT/study.err"
fi

# Data parallel on NCCL (prepared, not yet run on a GPU): on one GPU the NCCL path as a world of one rank against
# the single-process trainer (NCCL refuses two ranks on one device); with 2 or more GPUs, 1 against 2 ranks at the
# seed's size (base 48, patch 128, batch 2 per rank, bf16), steps/s and patches/s.
log "data parallel: NCCL ($(python3 -c 'import json,sys;print(",".join(json.load(open(sys.argv[1])).get("distributedBackends",[])))' "$OUT/info.json"))"
timeout 120 "./$build/test_distributed" --gtest_filter='DataParallel.*' > "$OUT/distributed.log" 2>&1
grep -E "^\[ +(OK|FAILED|SKIPPED) +\]|PASSED|FAILED" "$OUT/distributed.log" | head -12
if (( $(nvidia-smi -L | wc -l) >= 2 )); then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  timeout 120 "./$build/bench_distributed" 1 0 0 2 48 128 20 cuda | tee "$OUT/nccl_bench.jsonl"
  timeout 120 "./$build/bench_distributed" 2 1 "$port" 2 48 128 20 cuda > /dev/null &
  timeout 120 "./$build/bench_distributed" 2 0 "$port" 2 48 128 20 cuda | tee -a "$OUT/nccl_bench.jsonl"
  wait
fi

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
def g(d, k, f):
    return (d.get(k) or {}).get(f)
rows = []
def row(label, o, p, unit):
    ratio = f"{o / p:.2f}" if (o and p) else "-"
    fmt = lambda v: "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
    rows.append(f"| {label} | {fmt(o)} {unit} | {fmt(p)} {unit} | {ratio} |")
row("train step fp32/TF32, unfused", g(ours, "train_step_fp32_tf32conv_unfused", "ms_per_step"), g(peer, "train_step_fp32_tf32conv", "ms_per_step"), "ms")
row("train step bf16, unfused", g(ours, "train_step_bf16_unfused", "ms_per_step"), g(peer, "train_step_bf16_autocast", "ms_per_step"), "ms")
row("train step bf16, fused norm_act", g(ours, "train_step_bf16_fused", "ms_per_step"), g(peer, "train_step_bf16_autocast", "ms_per_step"), "ms")
row("same, libtorch per-tensor AdamW + clip", g(ours, "train_step_bf16_fused_libtorch_adamw", "ms_per_step"), g(peer, "train_step_bf16_autocast", "ms_per_step"), "ms")
row("train step bf16 fused vs torch.compile", g(ours, "train_step_bf16_fused", "ms_per_step"), g(peer, "train_step_bf16_torch_compile", "ms_per_step"), "ms")
row("peak memory bf16, unfused", g(ours, "train_step_bf16_unfused", "peak_gib"), g(peer, "train_step_bf16_autocast", "peak_gib"), "GiB")
row("peak memory bf16, fused", g(ours, "train_step_bf16_fused", "peak_gib"), g(peer, "train_step_bf16_autocast", "peak_gib"), "GiB")
row("Sobel loss fwd+bwd 2x128^3", g(ours, "sobel_loss_fwd_bwd_2x128^3", "fused_ms"), g(peer, "sobel_loss_fwd_bwd_2x128^3", "ms"), "ms")
sw = [v["ms"] for k, v in ours.items() if k and k.startswith("sliding_window_160x256x256_bf16_b") and "ms" in v]
row("sliding window 160x256x256 (best sw-batch)", min(sw) if sw else None, g(peer, "sliding_window_160x256x256_bf16", "ms"), "ms")
print("| measure | vmat-native | PyTorch eager | ratio |\n|---|---|---|---|")
print("\n".join(rows))
sobel = sorted((v for k, v in ours.items() if k and k.startswith("sobel_loss_fwd_bwd_2x128^3")),
               key=lambda v: v.get("planes_per_thread", 0))
print("Sobel loss fwd+bwd 2x128^3 by planes per thread:",
      ", ".join(f'{v.get("planes_per_thread")}: {v.get("fused_ms", 0):.3f} ms check {v.get("check_ok")}' for v in sobel))
EOF
log "done"
