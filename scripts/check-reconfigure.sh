#!/usr/bin/env bash
# Checks the README's two commands on a machine that gets GoogleTest only at the test set-up (issue 13): a build
# configured while GoogleTest was missing must pick it up on the next build, and the test command must fail, not
# pass, while there are no native tests. GoogleTest is hidden by a private mount namespace (needs root and
# `unshare`); the builds go to a scratch folder, so build/ is left alone. About two minutes with ccache.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "$(id -u)" == 0 ]] && unshare -m true 2>/dev/null || { echo "check-reconfigure: needs root and unshare -m" >&2; exit 2; }
scratch=$(mktemp -d /tmp/vmat-reconfigure.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export VMAT_BUILD_DIR="$scratch/build"
hide=()
for dir in /usr/include/gtest /usr/include/gmock /usr/lib/*/cmake/GTest /usr/lib/cmake/GTest /usr/local/include/gtest /usr/local/lib/cmake/GTest; do
  [[ -d "$dir" ]] && hide+=("$dir")
done
(( ${#hide[@]} )) || { echo "check-reconfigure: GoogleTest is not installed here, nothing to hide" >&2; exit 2; }
count_tests() { ctest --test-dir "$VMAT_BUILD_DIR" -N | sed -n 's/^Total Tests: //p'; }

echo "1. build with GoogleTest hidden (${hide[*]})"
unshare -m bash -c 'for d in "$@"; do mount -t tmpfs none "$d"; done; bash scripts/build-native.sh' _ "${hide[@]}" > "$scratch/build1.log" 2>&1 ||
  { tail -30 "$scratch/build1.log"; exit 1; }
grep -q "GoogleTest not found" "$scratch/build1.log" || { echo "FAIL: the first build found GoogleTest although it was hidden"; exit 1; }
echo "   native tests: $(count_tests)"
if bash scripts/test.sh > "$scratch/test1.log" 2>&1; then echo "FAIL: the test command passed with no native tests"; exit 1; fi
grep -q "no native tests" "$scratch/test1.log" || { cat "$scratch/test1.log"; echo "FAIL: the test command did not say why it failed"; exit 1; }
echo "   the test command fails: $(grep -o 'no native tests.*' "$scratch/test1.log" | head -1)"

echo "2. build again with GoogleTest visible (as after setup.sh --test installed it)"
bash scripts/build-native.sh > "$scratch/build2.log" 2>&1 || { tail -30 "$scratch/build2.log"; exit 1; }
tests=$(count_tests)
echo "   native tests: $tests"
(( tests > 0 )) || { echo "FAIL: the second build did not pick up GoogleTest"; exit 1; }
ctest --test-dir "$VMAT_BUILD_DIR" --no-tests=error -R test_runtime --output-on-failure > "$scratch/ctest2.log" 2>&1 || { cat "$scratch/ctest2.log"; exit 1; }
echo "PASS: reconfigured after GoogleTest appeared ($tests native tests); no tests is a failure"
