#!/usr/bin/env python3
"""A clinical-size DICOM-RT set for bench/dicom.sh, written by plastimatch: a 150-slice 512x512 CT (0.98 x 0.98 x
3 mm), an RTSTRUCT of 20 ROIs (a body outline and 19 organs and targets, some with holes) and a dose on a 2.5 mm
grid. Made once into OUT (kept between runs).

    dicom_fixture.py OUT
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np

# The MetaImage writer of the tests' fixtures.
_spec = importlib.util.spec_from_file_location('dicom_fixtures', os.path.join(os.path.dirname(__file__), '..', 'test', 'dicom-fixtures.py'))
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
write_mha = fixtures.write_mha


def main():
    out = sys.argv[1]
    if os.path.exists(f'{out}/done'):
        return
    os.makedirs(f'{out}/mha', exist_ok=True)
    Z, Y, X = 150, 512, 512
    spacing = (0.9765625, 0.9765625, 3.0)  # x, y, z
    origin = (-249.51171875, -249.51171875, -223.5)
    z, y, x = np.meshgrid(origin[2] + np.arange(Z) * spacing[2], origin[1] + np.arange(Y) * spacing[1],
                          origin[0] + np.arange(X) * spacing[0], indexing='ij', sparse=True)
    body = ((x / 190.0) ** 2 + ((y - 10) / 120.0) ** 2 <= 1) & (np.abs(z) <= 215)
    ct = np.where(body, 40, -1000).astype(np.int16)
    rng = np.random.default_rng(7)
    masks = [body]
    for i in range(19):
        centre = (rng.uniform(-120, 120), rng.uniform(-60, 70), rng.uniform(-150, 150))
        radii = (rng.uniform(12, 45), rng.uniform(10, 35), rng.uniform(15, 60))
        inside = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((z - centre[2]) / radii[2]) ** 2
        mask = (inside <= 1) & body
        if i % 4 == 0:
            mask &= inside > 0.3  # a shell: contours with holes
        masks.append(mask)
        ct[mask] = 20 + 10 * i
    names = ['BODY'] + [f'ROI_{i:02d}' for i in range(1, 20)]
    ss = np.zeros((Z, Y, X), np.uint32)
    for i, mask in enumerate(masks):
        ss |= mask.astype(np.uint32) << np.uint32(i)
    write_mha(f'{out}/mha/ct.mha', ct, origin, spacing, 'MET_SHORT')
    write_mha(f'{out}/mha/ss.mha', ss, origin, spacing, 'MET_UINT')
    with open(f'{out}/mha/ss.txt', 'w') as f:
        for i, name in enumerate(names):
            f.write(f'{i}|255 0 0|{name}\n')
    # A dose on a 2.5 mm grid over the body: a smooth bump around the centre.
    dspacing = (2.5, 2.5, 2.5)
    dorigin = (-200.0, -120.0, -220.0)
    dz, dy, dx = np.meshgrid(dorigin[2] + np.arange(176) * 2.5, dorigin[1] + np.arange(104) * 2.5, dorigin[0] + np.arange(160) * 2.5, indexing='ij', sparse=True)
    dose = (70 * np.exp(-(dx ** 2 + dy ** 2) / (2 * 60.0 ** 2) - dz ** 2 / (2 * 90.0 ** 2))).astype(np.float32)
    write_mha(f'{out}/mha/dose.mha', dose, dorigin, dspacing, 'MET_FLOAT')
    subprocess.run(['plastimatch', 'convert', '--input', f'{out}/mha/ct.mha', '--input-ss-img', f'{out}/mha/ss.mha',
                    '--input-ss-list', f'{out}/mha/ss.txt', '--input-dose-img', f'{out}/mha/dose.mha',
                    '--output-dicom', f'{out}/dicom', '--patient-id', 'BENCH'], check=True, stdout=subprocess.DEVNULL)
    open(f'{out}/done', 'w').close()


if __name__ == '__main__':
    main()
