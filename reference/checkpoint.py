"""Reads vmat-native checkpoints in PyTorch with the standard library alone: no `safetensors` package needed.

A checkpoint is a safetensors file (an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the bytes), with metadata "config" (the model config as JSON) and "format_version" "1".

    import sys; sys.path.insert(0, "node_modules/vmat-native/reference")
    from checkpoint import load_checkpoint, load_model
    weights, metadata = load_checkpoint("best.safetensors")  # {name: torch.Tensor}, {key: str}
    model = load_model("best.safetensors")                   # unet_ref.BaselineUNet3D, weights loaded strictly, eval()

A file that is not a well-formed safetensors file (a header that runs past the end, byte ranges that overlap, leave
gaps or do not match the shape) raises ValueError naming the file and the problem.
"""
import json
import math
import os
import sys

import torch

DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
MAX_HEADER_BYTES = 100 * 2**20  # the safetensors format's own limit
CHECKPOINT_FORMAT_VERSION = "1"


def load_checkpoint(path):
    """Returns ({tensor name: torch.Tensor}, {metadata key: str}) of a safetensors file."""
    if sys.byteorder != "little":
        raise ValueError(f"{path}: safetensors data is little-endian; this reader does not byte-swap")
    with open(path, "rb") as f:
        data = f.read()

    def bad(problem):
        return ValueError(f"{path} is not a valid safetensors file: {problem}")

    if len(data) < 8:
        raise bad(f"it has {len(data)} bytes, fewer than the 8 of the header length")
    length = int.from_bytes(data[:8], "little")
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        raise bad(f"the header claims {length} bytes but the file has {len(data) - 8} after the length")
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise bad(f"the header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("__metadata__ is not an object of strings")
    body = memoryview(data)[8 + length :]

    tensors, ranges = {}, []
    for name, info in header.items():
        if not isinstance(info, dict) or info.get("dtype") not in DTYPES:
            raise bad(f"tensor {name!r} has no known dtype (expected one of {', '.join(DTYPES)})")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise bad(f"tensor {name!r} has shape {shape!r}, expected a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(n, int) for n in offsets)):
            raise bad(f"tensor {name!r} has data_offsets {offsets!r}, expected [begin, end]")
        begin, end = offsets
        dtype, itemsize = DTYPES[info["dtype"]]
        if not 0 <= begin <= end <= len(body):
            raise bad(f"tensor {name!r} spans bytes {begin}..{end} of a {len(body)}-byte data section")
        if end - begin != math.prod(shape) * itemsize:
            raise bad(f"tensor {name!r} has {end - begin} bytes, but shape {shape} of {info['dtype']} needs {math.prod(shape) * itemsize}")
        ranges.append((begin, end, name))
        if end == begin:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            # bytearray: a writable copy, so the tensor owns its memory and torch does not warn
            tensors[name] = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype).reshape(shape)
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            raise bad(f"tensor {name!r} starts at byte {begin}, but the previous one ends at {position} (overlapping or gapped data)")
        position = end
    if position != len(body):
        raise bad(f"the tensors cover {position} of the {len(body)} data bytes")
    return tensors, metadata


def load_model(path):
    """The checkpoint's network as unet_ref.BaselineUNet3D (names matched strictly), in eval mode."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from unet_ref import EMBED, BaselineUNet3D

    tensors, metadata = load_checkpoint(path)
    if "config" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a vmat-native checkpoint (its metadata has no \"config\")")
    if metadata.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format version {metadata.get('format_version')!r}; this reader knows {CHECKPOINT_FORMAT_VERSION!r}")
    config = json.loads(metadata["config"])
    if config.get("architecture") != "BaselineUNet3D" or config.get("embed_dim", EMBED) != EMBED:
        raise ValueError(f"{path} holds a {config.get('architecture')} with embed_dim {config.get('embed_dim')}; unet_ref.py builds BaselineUNet3D with embed_dim {EMBED}")
    model = BaselineUNet3D(in_ch=config["in_channels"], cond=config["cond_dim"], base=config["base_channels"])
    model.load_state_dict(tensors, strict=True)
    return model.eval()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 checkpoint.py CHECKPOINT.safetensors   (prints the config and the tensor table)")
    weights, meta = load_checkpoint(sys.argv[1])
    print(json.dumps(meta, indent=2))
    for key, tensor in weights.items():
        print(f"{key:24} {str(list(tensor.shape)):20} {tensor.dtype}")
