# Import of a clinical-size DICOM-RT set (150-slice 512x512 CT, RTSTRUCT of 20 ROIs, RTDOSE on its own 2.5 mm grid;
# made once by plastimatch into VMAT_BENCH_DICOM_DIR): `vmat-native import dicom` (scan, CT, rasterisation, dose
# resampling, conditioning, the case file written) against plastimatch doing the same conversion (CT, structures
# rasterised, dose resampled onto the CT, compressed nrrd files), side by side. Wall and CPU seconds of each; the
# issue's target is the whole import under 10 s on 2 cores.
set -euo pipefail
work="${VMAT_BENCH_DICOM_DIR:-${TMPDIR:-/tmp}/vmat-bench-dicom}"
/usr/bin/python3 bench/dicom_fixture.py "$work"
# "wall cpu" of a command, its output discarded; a failure stops the benchmark.
timed() {
  local log
  log=$(mktemp)
  /usr/bin/time -f '%e %U %S' -o "$log" "$@" >/dev/null 2>&1 || { echo "bench: $1 failed (run it by hand to see why)" >&2; exit 1; }
  awk '{ printf "%.2f %.2f", $1, $2 + $3 }' "$log"
  rm -f "$log"
}
read -r ours ours_cpu <<<"$(timed node dist/cli/main.js import dicom "$work/dicom" --out "$work/cases" --overwrite --threads "$VMAT_BENCH_THREADS")"
rm -rf "$work/plastimatch" && mkdir -p "$work/plastimatch"
read -r peer peer_cpu <<<"$(timed plastimatch convert --input "$work/dicom" --output-img "$work/plastimatch/ct.nrrd" \
  --output-ss-img "$work/plastimatch/ss.nrrd" --output-dose-img "$work/plastimatch/dose.nrrd" --resize-dose)"
printf '%-78s %7s %7s\n' '' 'wall s' 'cpu s'
printf '%-78s %7.2f %7.2f\n' "vmat-native import dicom (case file: $(du -m "$work/cases/BENCH.npz" | cut -f1) MB)" "$ours" "$ours_cpu"
printf '%-78s %7.2f %7.2f\n' "plastimatch convert (CT, structures, dose on the CT: $(du -cm "$work"/plastimatch/*.nrrd | tail -1 | cut -f1) MB of nrrd)" "$peer" "$peer_cpu"
printf 'ratio (plastimatch / vmat-native): wall %.2f, cpu %.2f\n' "$(echo "$peer / $ours" | bc -l)" "$(echo "$peer_cpu / $ours_cpu" | bc -l)"
