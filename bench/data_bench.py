#!/usr/bin/env python3
"""The NumPy/SciPy side of bench/data.bench.mjs (run with /usr/bin/python3).

    data_bench.py make PATH      writes the benchmark case (128x300x300 at (2.5,1,1) mm, 8 structures), stored
    data_bench.py sdf PATH       times scipy.ndimage.distance_transform_edt making the 8 signed distance maps
    data_bench.py load PATH      times numpy.load of every array of the case file
Prints one JSON line with the seconds.
"""
import json
import sys
import time

import numpy as np
from scipy.ndimage import distance_transform_edt

SHAPE = (128, 300, 300)
SPACING = (2.5, 1.0, 1.0)
NAMES = ['PTV70', 'PTV56', 'Prostate', 'Rectum', 'Bladder', 'Femur_L', 'Femur_R', 'Bowel']


def masks():
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    zc, yc, xc = 64 * SPACING[0], 150.0, 150.0
    Z, Y, X = z * SPACING[0], y * 1.0, x * 1.0

    def ellipsoid(cz, cy, cx, rz, ry, rx):
        return ((Z - cz) / rz) ** 2 + ((Y - cy) / ry) ** 2 + ((X - cx) / rx) ** 2 <= 1

    m = np.zeros((8,) + SHAPE, np.uint8)
    m[2] = ellipsoid(zc, yc, xc, 20, 18, 22)                      # prostate
    m[0] = ellipsoid(zc, yc, xc, 27, 25, 29)                      # PTV70
    m[1] = m[0] | ellipsoid(zc + 20, yc - 10, xc, 25, 20, 35)     # PTV56
    m[3] = ellipsoid(zc, yc + 35, xc, 60, 14, 14)                 # rectum
    m[4] = ellipsoid(zc + 35, yc - 40, xc, 30, 35, 40)            # bladder
    m[5] = ellipsoid(zc + 10, yc, xc + 90, 50, 25, 25)            # femoral heads
    m[6] = ellipsoid(zc + 10, yc, xc - 90, 50, 25, 25)
    m[7] = ellipsoid(zc + 110, yc - 30, xc, 80, 60, 110) & ~m[4].astype(bool)  # bowel: a large region
    return m


def scipy_sdf(m):
    out = np.zeros(m.shape, np.float32)
    for s in range(m.shape[0]):
        inside = m[s].astype(bool)
        if inside.any():
            signed = distance_transform_edt(~inside, sampling=SPACING) - distance_transform_edt(inside, sampling=SPACING)
            out[s] = np.clip(signed, -50, 50) / 50
    return out


def main():
    command, path = sys.argv[1], sys.argv[2]
    if command == 'make':
        m = masks()
        rng = np.random.RandomState(0)
        ct = rng.randint(-100, 100, size=SHAPE).astype(np.int16)
        dose = rng.rand(*SHAPE).astype(np.float32) * 70
        np.savez(path, ct=ct, dose=dose, masks=m, structures=np.array(NAMES), spacing_mm=np.array(SPACING),
                 constraints=np.ones(13, np.float32), masks_sdf=scipy_sdf(m),
                 metadata_json=np.array(json.dumps({'case_id': 'bench', 'format_version': 1})))
        print(json.dumps({'made': path}))
    elif command == 'sdf':
        m = np.load(path)['masks']
        start = time.perf_counter()
        scipy_sdf(m)
        print(json.dumps({'seconds': time.perf_counter() - start}))
    elif command == 'load':
        start = time.perf_counter()
        with np.load(path) as f:
            arrays = {key: f[key] for key in f.files}
        seconds = time.perf_counter() - start
        print(json.dumps({'seconds': seconds, 'bytes': int(sum(a.nbytes for a in arrays.values()))}))


if __name__ == '__main__':
    main()
