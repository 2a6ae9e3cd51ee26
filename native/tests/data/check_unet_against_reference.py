"""Loads a vmat-native checkpoint into the PyTorch reference module by name and compares outputs.

    python3 check_unet_against_reference.py CHECKPOINT.safetensors IO.safetensors

IO holds `x`, `c` and vmat-native's `output` for them. Exit 0 when the reference gives the same output
(max abs difference <= 1e-4 relative to the output's scale), 1 otherwise; prints the figures.
"""
import json
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "..", "reference"))
from unet_fixture_common import read_safetensors  # noqa: E402
from unet_ref import BaselineUNet3D  # noqa: E402

torch.set_num_threads(1)
weights, metadata = read_safetensors(sys.argv[1])
config = json.loads(metadata["config"])
assert metadata["format_version"] == "1", metadata
model = BaselineUNet3D(in_ch=config["in_channels"], cond=config["cond_dim"], base=config["base_channels"]).eval()
model.load_state_dict(weights, strict=True)  # by name: fails on any missing, unexpected or mis-shaped tensor
io, _ = read_safetensors(sys.argv[2])
with torch.no_grad():
    reference = model(io["x"], io["c"])
ours = io["output"]
difference = (reference - ours).abs().max().item()
scale = reference.abs().max().item()
print(json.dumps({"max_abs_difference": difference, "output_scale": scale, "parameters": sum(p.numel() for p in model.parameters())}))
sys.exit(0 if reference.shape == ours.shape and difference <= 1e-4 * max(1.0, scale) else 1)
