"""Makes unet_base8_reference.safetensors: the PyTorch reference network (reference/unet_ref.py, 9 inputs, base 8)
with deterministic weights, its deterministic input (batch 2, 16^3) and its output. test_unet.cpp builds the same
weights and input natively and compares outputs, so the check runs even where Python is absent.

    /usr/bin/python3 native/tests/data/make_unet_fixture.py
"""
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "..", "reference"))
from unet_fixture_common import deterministic_, deterministic_inputs, write_safetensors  # noqa: E402
from unet_ref import BaselineUNet3D  # noqa: E402

torch.set_num_threads(1)
model = BaselineUNet3D(in_ch=9, base=8).eval()
deterministic_(model)
x, c = deterministic_inputs(batch=2, in_ch=9, size=16)
with torch.no_grad():
    out = model(x, c)
write_safetensors(os.path.join(here, "unet_base8_reference.safetensors"), {"output": out},
                  {"made_by": "make_unet_fixture.py", "torch": torch.__version__})
print("output", tuple(out.shape), "mean", out.mean().item(), "std", out.std().item())
