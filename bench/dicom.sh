# Import of a clinical-size DICOM-RT set (150-slice 512x512 CT, RTSTRUCT of 20 ROIs, RTDOSE on its own grid; made once
# by plastimatch into VMAT_BENCH_DICOM_DIR): `vmat-native import dicom` (scan, CT, rasterisation, dose resampling,
# conditioning, the case file written) against plastimatch rasterising the same RTSTRUCT onto the same CT, side by
# side. The issue's target: the whole import under 10 s on 2 cores.
set -euo pipefail
work="${VMAT_BENCH_DICOM_DIR:-${TMPDIR:-/tmp}/vmat-bench-dicom}"
/usr/bin/python3 bench/dicom_fixture.py "$work"
out="$work/cases"
seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N); echo "$end - $start" | bc; }
ours=$(seconds node dist/cli/main.js import dicom "$work/dicom" --out "$out" --overwrite --threads "$VMAT_BENCH_THREADS")
rtss=$(ls "$work"/dicom/rtss_*.dcm)
peer=$(seconds plastimatch convert --input "$rtss" --referenced-ct "$work/dicom" --output-ss-img "$work/plastimatch_ss.nrrd")
size=$(du -m "$out/BENCH.npz" | cut -f1)
printf 'vmat-native import dicom (CT + 20 ROIs + dose, %s MB case file written)  %6.2f s\n' "$size" "$ours"
printf 'plastimatch convert (rasterise the 20 ROIs only)                         %6.2f s\n' "$peer"
printf 'ratio (plastimatch / vmat-native)                                         %6.2f\n' "$(echo "$peer / $ours" | bc -l)"
