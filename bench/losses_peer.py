"""The PyTorch peer of native/bench/bench_losses.cpp: each loss term (forward + backward w.r.t. the prediction) in the
reference formulas of native/tests/data/loss_reference.py (torchvision's VGG16 features, random weights), same sizes
and structures, same threads.

    /usr/bin/python3 bench/losses_peer.py --size 32 --batch 2 --repeat 5 --threads 2
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "native", "tests", "data"))
import loss_reference as ref  # noqa: E402

parser = argparse.ArgumentParser()
for name, default in (("size", 32), ("batch", 2), ("repeat", 5), ("threads", 2)):
    parser.add_argument(f"--{name}", type=int, default=default)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
n, batch = args.size, args.batch


def sphere_sdf(cz, cy, cx, radius):
    axis = torch.arange(n, dtype=torch.float32)
    r = ((axis.view(n, 1, 1) - cz) ** 2 + (axis.view(1, n, 1) - cy) ** 2 + (axis.view(1, 1, n) - cx) ** 2).sqrt()
    return ((r - radius) * 2.0 / ref.SDF_CLIP_MM).clamp(-1, 1)


spheres = [(0.5, 0.5, 0.5, 0.15), (0.5, 0.5, 0.5, 0.25), (0.5, 0.5, 0.5, 0.1), (0.5, 0.8, 0.5, 0.12), (0.5, 0.2, 0.5, 0.15),
           (0.5, 0.5, 0.1, 0.1), (0.5, 0.5, 0.9, 0.1), (0.2, 0.3, 0.5, 0.2)]
inp = torch.zeros(batch, 9, n, n, n)
inp[:, 0] = torch.rand(batch, n, n, n)
for s, (z, y, x, r) in enumerate(spheres):
    inp[:, s + 1] = sphere_sdf(z * n, y * n, x * n, r * n)
target = torch.rand(batch, 1, n, n, n) * 1.1
pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
features = ref.vgg16_features()
for parameter in features.parameters():
    parameter.requires_grad_(False)
config = {"structure_background_weight": 0.5, "structure_boundary_weight": 1.5, "structure_target_weight": 2.0,
          "structure_boundary_width_mm": 5.0, "asymmetric_underdose_weight": 3.0, "asymmetric_overdose_weight": 1.0,
          "dvh_bins": 60, "dvh_max_dose": 1.2, "target_channels": [1, 2], "boundary_channels": [3, 4, 5, 6, 7, 8],
          "dvh_channels": [1, 2, 3, 4, 5, 6, 7, 8]}
terms = {
    "mse_neg": lambda: ((pred - target) ** 2).mean() + 0.1 * torch.relu(-pred).mean(),
    "sobel": lambda: ref.gradient_loss(pred, target),
    "vgg": lambda: ref.vgg_loss(pred, target, features, 8, 0),
    "structure_weighted": lambda: ref.structure_weighted(pred, target, inp, config),
    "asymmetric_ptv": lambda: ref.asymmetric(pred, target, inp, config),
    "dvh": lambda: ref.dvh(pred, target, inp, config),
}
for name, term in terms.items():
    def run():
        pred.grad = None
        term().backward()
    run()
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    print(json.dumps({"what": name, "impl": "pytorch", "torch": torch.__version__, "size": n, "batch": batch,
                      "threads": args.threads, "median_ms": round(statistics.median(times), 3)}), flush=True)
