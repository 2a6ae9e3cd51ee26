# 128³ at 2.5 mm, 3%/3 mm, 10 % cutoff: `vmat-native gamma` against pymedphys' gamma_shell on the same arrays (both
# pass rates, the speed-up). pymedphys is not a dependency: set PYMEDPHYS_SRC to a folder holding the pymedphys
# package (a checkout's lib/); without it only vmat-native runs and the report says so. pymedphys takes minutes here.
# Then the native CPU timing of both criteria (and, on a CUDA build, CUDA against CPU: VMAT_BENCH_CUDA=1).
set -euo pipefail
threads="$VMAT_BENCH_THREADS"
/usr/bin/python3 bench/gamma_peer.py --size 128 --spacing 2.5 --threads "$threads"
./build/bench_gamma --size 128 --threads "$threads" --repeat 3 ${VMAT_BENCH_CUDA:+--check-cuda}
