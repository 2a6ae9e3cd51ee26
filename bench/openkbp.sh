# The OpenKBP benchmark (bench/openkbp.bench.mjs): train --site head-neck on the challenge's training patients, score
# its test patients with the challenge's dose and DVH scores, beside the published leaderboard. By default a reduced
# CPU run (about 15 minutes on 2 cores: 40 training + 6 validation patients on a 64³ grid, width 8, 8 epochs, 20 test
# patients scored at 128³); OPENKBP_FACTOR=1 OPENKBP_WIDTH=48 OPENKBP_PATCH=128 OPENKBP_TRAIN=0 … is the full size
# (scripts/gpu-check.sh). Set OPENKBP_DIR to a copy of ababier/open-kbp; without it the section is skipped.
set -euo pipefail
node bench/openkbp.bench.mjs
