# The fuzzers at soak length (CI runs 600 inputs per reader and a few thousand native inputs): the TypeScript readers
# (case files, .npy, pickles, checkpoint metadata, configs) in watched child processes, then the native safetensors
# and checkpoint readers in forked children. Any crash, hang, unbounded memory or refusal without a sentence fails the
# run and prints the command that writes the input out. VMAT_FUZZ_INPUTS (default 20000 per reader) and
# VMAT_FUZZ_SEED (default: today's date) choose the run.
set -euo pipefail
inputs="${VMAT_FUZZ_INPUTS:-20000}"
seed="${VMAT_FUZZ_SEED:-$(date -u +%Y%m%d)}"
node test/fuzz/fuzz.mjs --inputs "$inputs" --seed "$seed" --jobs "$VMAT_BENCH_THREADS"
started=$(date +%s)
VMAT_FUZZ_INPUTS="$inputs" VMAT_FUZZ_SEED="$seed" ./build/test_safetensors --gtest_filter='SafetensorsFuzz.*' --gtest_brief=1
echo "native: 2 x $inputs mutated headers and $inputs mutated checkpoints in $(( $(date +%s) - started )) s, seed $seed"
