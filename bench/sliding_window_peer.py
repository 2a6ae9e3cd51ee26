"""Peer of `bench_train sliding-window`: the same sliding window (positions, Gaussian sigma = patch/4 floored at 1e-3,
batching, x normalisation dose, clamp) with the PyTorch reference network (reference/unet_ref.py), eager, no grad.

usage: /usr/bin/python3 bench/sliding_window_peer.py [base=16] [z=64] [y=128] [x=128] [patch=64] [sw_batch=2] [repeats=3]
"""
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from unet_ref import BaselineUNet3D  # noqa: E402


def starts(size, patch, overlap):
    max_step = max(1.0, math.floor(patch * (1 - overlap)))
    count = 1 if size == patch else math.ceil((size - patch) / max_step) + 1
    if count == 1:
        return [0]
    step = (size - patch) / (count - 1)
    return [int(round(i * step)) for i in range(count)]


def gaussian(patch):
    sigma = patch / 4.0
    axis = torch.exp(-((torch.arange(patch, dtype=torch.float64) - (patch - 1) / 2) ** 2) / (2 * sigma * sigma))
    w = axis[:, None, None] * axis[None, :, None] * axis[None, None, :]
    return (w / w.max()).clamp(min=1e-3).float()


def sliding_window(model, volume, c, patch, sw_batch, overlap=0.5):
    _, z, y, x = volume.shape
    w = gaussian(patch)
    total = torch.zeros(z, y, x)
    norm = torch.zeros(z, y, x)
    corners = [(a, b, d) for a in starts(z, patch, overlap) for b in starts(y, patch, overlap) for d in starts(x, patch, overlap)]
    for i in range(0, len(corners), sw_batch):
        chunk = corners[i : i + sw_batch]
        batch = torch.stack([volume[:, a : a + patch, b : b + patch, d : d + patch] for a, b, d in chunk])
        out = model(batch, c.expand(len(chunk), -1))
        for k, (a, b, d) in enumerate(chunk):
            total[a : a + patch, b : b + patch, d : d + patch] += out[k, 0] * w
            norm[a : a + patch, b : b + patch, d : d + patch] += w
    return (total / norm * 70.0).clamp(min=0)


def main():
    args = [int(a) for a in sys.argv[1:]] + [None] * 7
    base, z, y, x, patch, sw_batch, repeats = [a if a is not None else d for a, d in zip(args[:7], (16, 64, 128, 128, 64, 2, 3))]
    torch.manual_seed(0)
    model = BaselineUNet3D(in_ch=9, base=base).eval()
    volume = torch.rand(9, z, y, x)
    c = torch.rand(1, 13)
    with torch.no_grad():
        sliding_window(model, volume, c, patch, sw_batch)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            dose = sliding_window(model, volume, c, patch, sw_batch)
            print(json.dumps({"bench": "sliding_window", "impl": "pytorch-reference", "torch": torch.__version__, "threads": torch.get_num_threads(),
                              "base": base, "shape": [z, y, x], "patch": patch, "sw_batch": sw_batch,
                              "seconds": round(time.perf_counter() - start, 3), "checksum": round(float(dose.mean()), 4)}))


if __name__ == "__main__":
    main()
