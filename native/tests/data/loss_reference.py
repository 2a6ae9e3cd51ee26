"""PyTorch reference of the training losses (README "Losses"), for native/tests/test_losses.cpp.

    python3 loss_reference.py make-vgg16 OUT.pth SEED
        torchvision's VGG16 `features` with random weights and biases, saved as a state dict (features.* names).
    python3 loss_reference.py check IN.safetensors OUT.safetensors [VGG16.pth]
        IN holds `pred`, `target`, `input` and, in its metadata, `config` (JSON: the LossConfig fields and `step`).
        OUT gets each term's value (`<term>`) and its gradient w.r.t. pred (`<term>.grad`), and `total`.

The formulas are written here from the README, in plain PyTorch autograd, independently of vmat-native's code; the
VGG16 is torchvision's own (torchvision.models.vgg), loaded from the .pth, not from vmat-native's converted file.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_fixture_common import read_safetensors, write_safetensors  # noqa: E402

torch.set_num_threads(1)
SDF_CLIP_MM = 50.0


def vgg16_features():
    from torchvision.models import vgg
    return vgg.make_layers(vgg.cfgs["D"], batch_norm=False)  # the `features` of torchvision.models.vgg16()


def make_vgg16(path, seed):
    torch.manual_seed(seed)
    features = vgg16_features()
    with torch.no_grad():
        for module in features:
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                module.bias.normal_(0.0, 0.1)  # torchvision starts biases at 0; random ones test their use
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)


def mask_any(inp, channels, test):
    return torch.stack([test(inp[:, c]) for c in channels], 0).any(0).unsqueeze(1)


def sobel_kernels():
    d = torch.tensor([-1.0, 0.0, 1.0])
    s = torch.tensor([1.0, 2.0, 1.0])
    kz = d[:, None, None] * s[None, :, None] * s[None, None, :]
    ky = s[:, None, None] * d[None, :, None] * s[None, None, :]
    kx = s[:, None, None] * s[None, :, None] * d[None, None, :]
    return torch.stack([kz, ky, kx]).unsqueeze(1) / 32.0


def gradient_loss(p, t):
    k = sobel_kernels()
    return F.l1_loss(F.conv3d(p, k, padding=1), F.conv3d(t, k, padding=1))


def vgg_loss(p, t, features, stride, step):
    blocks = [features[0:4], features[4:9], features[9:16]]  # relu1_2, relu2_2, relu3_3
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def images(v, axis, idx):
        if axis == 2:
            s = v[:, 0, idx, :, :]                     # [B, n, H, W]
        elif axis == 3:
            s = v[:, 0, :, idx, :].permute(0, 2, 1, 3)  # [B, n, D, W]
        else:
            s = v[:, 0, :, :, idx].permute(0, 3, 1, 2)  # [B, n, D, H]
        s = s.reshape(-1, 1, s.shape[2], s.shape[3]).repeat(1, 3, 1, 1)
        return (s - mean) / std

    def feats(x):
        out = []
        for block in blocks:
            x = block(x)
            out.append(x)
        return out

    total, terms = 0.0, 0
    for axis in (2, 3, 4):
        size = p.shape[axis]
        idx = list(range((step % stride) % size, size, stride))
        for a, b in zip(feats(images(p, axis, idx)), feats(images(t, axis, idx))):
            total = total + (a - b).abs().mean()
            terms += 1
    return total / terms


def structure_weighted(p, t, inp, c):
    w = torch.full_like(p, c["structure_background_weight"])
    if c["boundary_channels"]:
        width = c["structure_boundary_width_mm"] / SDF_CLIP_MM
        near = mask_any(inp, c["boundary_channels"], lambda s: (s.abs() > 0) & (s.abs() < width))
        w = torch.where(near, torch.full_like(w, c["structure_boundary_weight"]), w)
    if c["target_channels"]:
        inside = mask_any(inp, c["target_channels"], lambda s: s < 0)
        w = torch.where(inside, torch.full_like(w, c["structure_target_weight"]), w)
    return (w * (p - t) ** 2).mean()


def asymmetric(p, t, inp, c):
    inside = mask_any(inp, c["target_channels"], lambda s: s < 0)
    e = p - t
    w = torch.where(e < 0, torch.full_like(e, c["asymmetric_underdose_weight"]), torch.full_like(e, c["asymmetric_overdose_weight"]))
    n = int(inside.sum())
    return (w * e ** 2)[inside].sum() / n if n else torch.zeros(())


def dvh(p, t, inp, c):
    bins, top = c["dvh_bins"], c["dvh_max_dose"]
    width = top / bins
    d = torch.arange(1, bins + 1, dtype=torch.float32) * width
    losses = []
    for b in range(p.shape[0]):
        for ch in c["dvh_channels"]:
            m = inp[b, ch] < 0
            if not bool(m.any()):
                continue
            vp = torch.sigmoid((p[b, 0][m][:, None] - d[None, :]) / width).mean(0)
            vt = torch.sigmoid((t[b, 0][m][:, None] - d[None, :]) / width).mean(0)
            losses.append(((vp - vt) ** 2).mean())
    return torch.stack(losses).mean() if losses else torch.zeros(())


def check(in_path, out_path, vgg_path):
    tensors, metadata = read_safetensors(in_path)
    c = json.loads(metadata["config"])
    t, inp = tensors["target"], tensors["input"]
    features = None
    if c["use_vgg_loss"]:
        features = vgg16_features()
        state = torch.load(vgg_path, map_location="cpu")
        features.load_state_dict({k[len("features."):]: v for k, v in state.items()}, strict=True)
        for parameter in features.parameters():
            parameter.requires_grad_(False)

    terms = {
        "mse": lambda p: ((p - t) ** 2).mean(),
        "neg": lambda p: torch.relu(-p).mean(),
        "grad": lambda p: gradient_loss(p, t),
        "vgg": lambda p: vgg_loss(p, t, features, c["vgg_slice_stride"], c["step"]),
        "structure_weighted": lambda p: structure_weighted(p, t, inp, c),
        "asymmetric_ptv": lambda p: asymmetric(p, t, inp, c),
        "dvh": lambda p: dvh(p, t, inp, c),
    }
    on = {"mse": True, "neg": True, "grad": c["use_gradient_loss"], "vgg": c["use_vgg_loss"],
          "structure_weighted": c["use_structure_weighted"], "asymmetric_ptv": c["use_asymmetric_ptv"], "dvh": c["use_dvh_loss"]}
    weight = {"mse": 1.0, "neg": c["negative_penalty_weight"], "grad": c["gradient_loss_weight"], "vgg": c["vgg_loss_weight"],
              "structure_weighted": c["structure_weighted_weight"], "asymmetric_ptv": c["asymmetric_ptv_weight"],
              "dvh": c["dvh_loss_weight"]}
    out = {}
    total = 0.0
    for name, term in terms.items():
        if not on[name]:
            continue
        p = tensors["pred"].clone().requires_grad_(True)
        value = term(p)
        (grad,) = torch.autograd.grad(value, p, allow_unused=True)
        out[name] = value.detach().reshape(1)
        out[name + ".grad"] = grad if grad is not None else torch.zeros_like(p)
        total = total + weight[name] * value.detach()
    out["total"] = torch.as_tensor(total).reshape(1)
    write_safetensors(out_path, out)


if __name__ == "__main__":
    if sys.argv[1] == "make-vgg16":
        make_vgg16(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
