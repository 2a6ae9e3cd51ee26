"""The PyTorch peer of native/bench/bench_train_step.cpp: the same CPU training step with reference/unet_ref.py
(forward, MSE + 0.1 Sobel (conv3d form) + 0.1 negative penalty, backward, clip 1.0, AdamW lr 1e-4 wd 0.01).

    /usr/bin/python3 bench/peer_train_step.py --base 8 --size 32 --batch 2 --steps 5 --warmup 2 --threads 2
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from unet_ref import BaselineUNet3D, sobel_kernels, total_loss  # noqa: E402

parser = argparse.ArgumentParser()
for name, default in (("base", 8), ("size", 32), ("batch", 2), ("steps", 5), ("warmup", 2), ("threads", 2)):
    parser.add_argument(f"--{name}", type=int, default=default)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

model = BaselineUNet3D(in_ch=9, base=args.base)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, betas=(0.9, 0.999))
x = torch.randn(args.batch, 9, args.size, args.size, args.size)
c = torch.randn(args.batch, 13)
target = torch.rand(args.batch, 1, args.size, args.size, args.size)
k = sobel_kernels("cpu", torch.float32)


def step():
    optimizer.zero_grad()
    loss = total_loss(model(x, c), target, k)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


for _ in range(args.warmup):
    step()
times = []
for _ in range(args.steps):
    start = time.perf_counter()
    step()
    times.append((time.perf_counter() - start) * 1000)
print(json.dumps({"what": "train_step", "impl": "pytorch", "torch": torch.__version__, "base": args.base, "size": args.size,
                  "batch": args.batch, "threads": args.threads, "steps": args.steps,
                  "median_ms": round(statistics.median(times), 2)}))
