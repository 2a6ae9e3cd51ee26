"""Deterministic weights and inputs shared by make_unet_fixture.py and check_unet_against_reference.py.

The same formulas are written in C++ in native/tests/test_unet.cpp (deterministic_weights), so that a fixture made
by the PyTorch reference can be checked without Python.
"""
import json
import struct

import torch


def deterministic_(model):
    """Parameter i (in named_parameters order) := a smooth pattern of its flat index, scaled like PyTorch's init."""
    with torch.no_grad():
        for i, (name, p) in enumerate(model.named_parameters()):
            k = torch.arange(p.numel(), dtype=torch.float32)
            pattern = torch.sin(0.37 * k + 1.3 * i)
            if p.dim() >= 2:
                value = pattern / (p.numel() // p.shape[0]) ** 0.5
            elif ".norm" in name and name.endswith("weight"):
                value = 1.0 + 0.1 * pattern
            else:
                value = 0.1 * pattern
            p.copy_(value.reshape(p.shape))


def deterministic_inputs(batch, in_ch, size, cond=13):
    k = torch.arange(batch * in_ch * size ** 3, dtype=torch.float32)
    x = torch.sin(0.05 * k).reshape(batch, in_ch, size, size, size)
    c = torch.cos(0.3 * torch.arange(batch * cond, dtype=torch.float32)).reshape(batch, cond)
    return x, c


DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "I64": (torch.int64, 8), "I32": (torch.int32, 4)}


def read_safetensors(path):
    """A minimal reader (struct + json), independent of the `safetensors` package and of vmat-native."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    metadata = header.pop("__metadata__", {})
    data = blob[8 + n :]
    tensors = {}
    for name, info in header.items():
        dtype, _ = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        raw = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
