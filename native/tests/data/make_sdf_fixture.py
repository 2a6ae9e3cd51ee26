#!/usr/bin/env python3
"""Reference signed distance maps from SciPy for native/tests/test_sdf.cpp.

    /usr/bin/python3 native/tests/data/make_sdf_fixture.py

Writes sdf_fixture.bin: int64 S, Z, Y, X; float64 spacing (z, y, x), clip_mm; uint8 masks [S,Z,Y,X];
float32 expected [S,Z,Y,X] = clip(edt(~m) - edt(m), -clip, clip) / clip with sampling=spacing (0 for an empty mask).
"""
import os

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter

S, Z, Y, X = 4, 12, 14, 16
SPACING = (2.5, 1.2, 0.8)
CLIP = 6.0  # small, so that the clipping is exercised inside this small volume

rng = np.random.RandomState(7)
masks = np.zeros((S, Z, Y, X), np.uint8)
for s in range(S - 1):
    noise = gaussian_filter(rng.standard_normal((Z, Y, X)), 1.5)
    masks[s] = noise > np.quantile(noise, 0.8 - 0.2 * s)  # irregular blobs of growing size
masks[S - 1] = 0  # an empty structure
expected = np.zeros(masks.shape, np.float32)
for s in range(S):
    m = masks[s].astype(bool)
    if m.any():
        signed = distance_transform_edt(~m, sampling=SPACING) - distance_transform_edt(m, sampling=SPACING)
        expected[s] = np.clip(signed, -CLIP, CLIP) / CLIP
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sdf_fixture.bin'), 'wb') as f:
    f.write(np.array([S, Z, Y, X], '<i8').tobytes())
    f.write(np.array([*SPACING, CLIP], '<f8').tobytes())
    f.write(masks.tobytes())
    f.write(expected.astype('<f4').tobytes())
