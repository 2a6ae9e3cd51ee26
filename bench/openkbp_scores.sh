# The OpenKBP importer and scores against the challenge's own code (ababier/open-kbp) on 10 real test patients: the
# case files voxel by voxel against its DataLoader, then every dose error, DVH metric and both scores against its
# DoseEvaluator (to 1e-4 Gy). Set OPENKBP_DIR to a copy of the repository (bench/openkbp_extract.py writes one from
# a fetched snapshot); without it the section says so and is skipped. Needs /usr/bin/python3 with NumPy, SciPy,
# pandas, more-itertools and tqdm (scripts/setup.sh --test installs them). About two minutes.
set -euo pipefail
node bench/openkbp_scores.bench.mjs --patients "${OPENKBP_PATIENTS:-10}"
