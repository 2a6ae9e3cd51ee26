#!/usr/bin/env python3
"""Converts torchvision's VGG16 weights into the file vmat-native's VGG perceptual loss reads (--vgg-weights).

    python3 scripts/convert-vgg16.py VGG16.pth OUT.safetensors [--overwrite]

VGG16.pth is torchvision's vgg16 state dict as torch.save wrote it: the file torchvision itself downloads
(~/.cache/torch/hub/checkpoints/vgg16-397923af.pth, for VGG16_Weights.IMAGENET1K_V1), or one you saved with
torch.save(torchvision.models.vgg16(weights=...).state_dict(), path). Nothing is downloaded here. The file is read
with torch.load(weights_only=True), so no code in it runs. Needs PyTorch >= 1.13 (not torchvision).

OUT holds the 13 convolutions of VGG16's `features` under torchvision's names, float32, shapes as torchvision's:
features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.weight ([out, in, 3, 3]) and .bias ([out]); the classifier is left
out. Its metadata: format "vmat-native-vgg16-features", format_version "1", source (the input's file name) and
source_sha256. The loss uses the first seven (up to relu3_3).
"""
import argparse
import hashlib
import json
import os
import struct
import sys
import tempfile

# VGG16's convolutions in torchvision's `features`: index -> (out channels, in channels).
CONVS = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
         17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512), 28: (512, 512)}
FORMAT = "vmat-native-vgg16-features"


class ConversionError(Exception):
    pass


def expected_shapes():
    shapes = {}
    for index, (out, inp) in CONVS.items():
        shapes[f"features.{index}.weight"] = [out, inp, 3, 3]
        shapes[f"features.{index}.bias"] = [out]
    return shapes


def load_state_dict(path, torch):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a zip or pickle error: say what was expected
        raise ConversionError(f"{path} cannot be read as a PyTorch state dict ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else 'no detail'}): expected the .pth file of "
                              "torchvision's vgg16 weights") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} holds no state dict (name -> tensor): expected torchvision's vgg16 weights")
    return state


def features_of(state, path, torch):
    shapes = expected_shapes()
    found = {name for name in state if name.startswith("features.")}
    missing = sorted(set(shapes) - found, key=lambda n: (int(n.split(".")[1]), n))
    extra = sorted(found - set(shapes))
    if missing or extra:
        hint = ""
        if any("running_mean" in name for name in extra):
            hint = " (batch-norm tensors: this looks like vgg16_bn, which the loss does not use)"
        elif any(int(name.split(".")[1]) > 28 for name in extra):
            hint = " (more convolutions than VGG16: this looks like vgg19)"
        detail = "; ".join(part for part in [
            f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}" if missing else "",
            f"unexpected {', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''}" if extra else ""] if part)
        raise ConversionError(f"{path} is not torchvision's vgg16: {detail}{hint}")
    tensors = {}
    for name, shape in shapes.items():
        tensor = state[name]
        if list(tensor.shape) != shape:
            raise ConversionError(f"{path}: {name} has shape {list(tensor.shape)}, VGG16's is {shape}")
        if not tensor.is_floating_point():
            raise ConversionError(f"{path}: {name} is not a floating-point tensor")
        tensor = tensor.detach().to(torch.float32).contiguous()
        if not bool(torch.isfinite(tensor).all()):
            raise ConversionError(f"{path}: {name} holds NaN or infinite values")
        tensors[name] = tensor
    return tensors


def safetensors_bytes(tensors, metadata):
    """The safetensors layout: 8-byte little-endian header length, the JSON header (padded to 8 bytes), the data."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors, key=lambda n: (int(n.split(".")[1]), n)):
        raw = tensors[name].numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_atomic(path, data):
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".convert-vgg16-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def convert(source, target, overwrite):
    if not os.path.isfile(source):
        raise ConversionError(f"{source} does not exist: expected torchvision's vgg16 weights (a .pth state dict)")
    if os.path.exists(target) and not overwrite:
        raise ConversionError(f"{target} exists: pass --overwrite to replace it")
    if not os.path.isdir(os.path.dirname(os.path.abspath(target))):
        raise ConversionError(f"the folder of {target} does not exist")
    try:
        import torch  # after the checks above, which need no PyTorch (its import takes seconds)
    except ImportError:
        raise ConversionError("PyTorch is not installed for this Python: install it (pip install torch, or Debian's "
                              "python3-torch) or run the script with a Python that has it") from None
    tensors = features_of(load_state_dict(source, torch), source, torch)
    with open(source, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    metadata = {"format": FORMAT, "format_version": "1", "source": os.path.basename(source), "source_sha256": digest}
    write_atomic(target, safetensors_bytes(tensors, metadata))
    return len(tensors)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="torchvision's vgg16 state dict (.pth)")
    parser.add_argument("target", help="the safetensors file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace TARGET if it exists")
    args = parser.parse_args(argv)
    try:
        count = convert(args.source, args.target, args.overwrite)
    except ConversionError as error:
        print(f"convert-vgg16: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.target}: {count} tensors of VGG16's features (float32)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
