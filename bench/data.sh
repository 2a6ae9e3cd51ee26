# 8 signed distance maps of a 128x300x300 case at (2.5,1,1) mm vs scipy.ndimage.distance_transform_edt; loading the
# ≈530 MB case file vs numpy.load. Needs /usr/bin/python3 with NumPy and SciPy; about a minute.
set -euo pipefail
node bench/data.bench.mjs
