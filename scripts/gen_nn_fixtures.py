#!/usr/bin/python3
"""Writes PyTorch reference fixtures for the nn engine (tests/test_nn_torch.c).

Run by hand with Debian's PyTorch:  /usr/bin/python3 scripts/gen_nn_fixtures.py
Each case is one safetensors file under tests/fixtures/nn/<case>.safetensors holding
  x            the input (N, C, H, W)
  r            fixed random weights of the loss L = sum(r * y)
  y            the training-mode output
  dx           dL/dx
  <param>      every parameter and buffer before the step, by state_dict name
  grad.<param> dL/d<param> for trainable parameters
  after.<buf>  running statistics after the one training forward
  y_eval       the output in eval mode after that step (running statistics)
All F32, little endian.
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "nn")


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Block(nn.Module):
    """conv(s2) -> bn -> prelu -> depthwise conv -> bn, + residual, flatten, linear, bn1d."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-5, momentum=0.1)
        self.prelu = nn.PReLU(8)
        self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=1e-5, momentum=0.1)
        self.fc = nn.Linear(8 * 4 * 4, 6, bias=False)
        self.features = nn.BatchNorm1d(6, eps=1e-5, momentum=0.1)

    def forward(self, x):
        a = self.prelu(self.bn1(self.conv1(x)))
        s = a + self.bn2(self.dw(a))
        return self.features(self.fc(torch.flatten(s, 1)))


def case(name, model, xshape, prefix=""):
    """Runs one training step of `model` on a random x and writes the fixture."""
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    # Parameters and running statistics away from PyTorch's defaults.
    with torch.no_grad():
        for pname, p in list(model.named_parameters()) + list(model.named_buffers()):
            if pname.endswith("num_batches_tracked"):
                continue
            if pname.endswith("running_var"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            else:
                p.copy_(torch.rand(p.shape, generator=gen) * 1.6 - 0.8)
    x = (torch.rand(xshape, generator=gen) * 2 - 1).requires_grad_(True)
    model.train()
    out = {"x": x}
    for pname, p in list(model.named_parameters()) + list(model.named_buffers()):
        if not pname.endswith("num_batches_tracked"):
            out[prefix_strip(pname, prefix)] = p.detach().clone()
    y = model(x)
    r = torch.rand(y.shape, generator=gen) * 2 - 1
    (y * r).sum().backward()
    out.update({"r": r, "y": y, "dx": x.grad})
    for pname, p in model.named_parameters():
        out["grad." + prefix_strip(pname, prefix)] = p.grad
    for pname, b in model.named_buffers():
        if not pname.endswith("num_batches_tracked"):
            out["after." + prefix_strip(pname, prefix)] = b.detach().clone()
    model.eval()
    with torch.no_grad():
        out["y_eval"] = model(x)
    path = os.path.join(OUT, name + ".safetensors")
    write_safetensors(path, out)
    print(path, os.path.getsize(path), "bytes")


def prefix_strip(name, prefix):
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    case("conv_s2_bias", Wrap("conv", nn.Conv2d(3, 6, 3, 2, 1, bias=True)), (2, 3, 7, 7))
    case("conv_groups2", Wrap("conv", nn.Conv2d(4, 6, 3, 1, 1, groups=2, bias=False)), (2, 4, 6, 6))
    case("conv_depthwise", Wrap("conv", nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False)), (2, 8, 7, 7))
    # MobileFaceNet's global depthwise conv (kernel = the whole map): facekd's own
    # backward-weights pass (lib/nn/conv_global_dw.c) for multiples of 16 channels.
    case("conv_gdc", Wrap("conv", nn.Conv2d(32, 32, 7, 1, 0, groups=32, bias=False)), (3, 32, 7, 7))
    case("bn2d", Wrap("bn", nn.BatchNorm2d(5, eps=1e-5, momentum=0.1)), (4, 5, 3, 3))
    case("bn1d", Wrap("bn", nn.BatchNorm1d(6, eps=1e-3, momentum=0.3), flatten=True), (8, 6, 1, 1))
    case("prelu", Wrap("prelu", nn.PReLU(4)), (2, 4, 5, 5))
    case("linear_bias", Wrap("fc", nn.Linear(12, 5, bias=True), flatten=True), (3, 3, 2, 2))
    case("linear_nobias", Wrap("fc", nn.Linear(12, 5, bias=False), flatten=True), (3, 3, 2, 2))
    case("block", Block(), (4, 3, 8, 8))
    case("iresnet_block", IBlock(4, 8), (4, 4, 6, 6))


class IBlock(nn.Module):
    """arcface_torch's IBasicBlock with a stride-2 downsample, then flatten, fc, features
    (tests/support/nn_nets.c builds the same)."""

    def __init__(self, cin, c):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5, momentum=0.1)
        self.conv1 = nn.Conv2d(cin, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
        self.prelu = nn.PReLU(c)
        self.conv2 = nn.Conv2d(c, c, 3, 2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
        self.down = nn.Conv2d(cin, c, 1, 2, 0, bias=False)
        self.down_bn = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
        self.fc = nn.Linear(c * 3 * 3, 6, bias=True)
        self.features = nn.BatchNorm1d(6, eps=1e-5, momentum=0.1)

    def forward(self, x):
        a = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        s = a + self.down_bn(self.down(x))
        return self.features(self.fc(torch.flatten(s, 1)))


class Wrap(nn.Module):
    """One op under a fixed state_dict name (e.g. conv.weight)."""

    def __init__(self, name, mod, flatten=False):
        super().__init__()
        self.add_module(name, mod)
        self.name, self.flatten = name, flatten

    def forward(self, x):
        if self.flatten:
            x = torch.flatten(x, 1)
        return getattr(self, self.name)(x)


if __name__ == "__main__":
    main()
