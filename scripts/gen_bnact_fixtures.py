#!/usr/bin/python3
"""Writes the PyTorch reference for batch norm followed by PReLU in TRAIN graphs
(tests/test_nn_bnact.c): tests/fixtures/nn/bnact.safetensors.

Run by hand with Debian's PyTorch:  /usr/bin/python3 scripts/gen_bnact_fixtures.py

The network (state_dict names as facekd's graph names them):
  conv1 3x3 16->32 pad 1 (no bias) -> bn BatchNorm2d(32, eps 1e-5, momentum 0.1)
  -> prelu PReLU(32) -> conv2 1x1 32->16 (bias)
on x (4, 16, 6, 6). Parameters, inputs and loss weights are drawn in float32 (so facekd
reads the very same numbers); the reference itself runs in float64 (model.double()), so
the stored results are float64 results rounded once to float32. The loss of step s is
L_s = sum(r_s * y_s): r_s is dL/dy.

Tensors (all F32, little endian):
  x, r                  step 1's input and dL/dy
  x2, r2                step 2's input and dL/dy
  <param>               every parameter and running statistic before step 1
  y, dx                 step 1 (training mode): output, dL/dx
  grad.<param>          step 1's gradients
  after.<buf>           running statistics after step 1's forward
  y2                    step 2's output
  dx2, grad2.<param>    gradients after step 2's backward added to step 1's (no zero_grad
                        in between: accumulation over two backward calls)
  after2.<buf>          running statistics after step 2's forward
  y_eval, dx_eval,      eval mode after the two steps (running statistics), on x with r,
  grad_eval.<param>     gradients from zero
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_py  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "nn")
N, CIN, C, HW, COUT = 4, 16, 32, 6, 16


class BnAct(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(CIN, C, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(C, eps=1e-5, momentum=0.1)
        self.prelu = nn.PReLU(C)
        self.conv2 = nn.Conv2d(C, COUT, 1, 1, 0, bias=True)

    def forward(self, x):
        return self.conv2(self.prelu(self.bn(self.conv1(x))))


def uniform(gen, shape, lo, hi):
    return torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo


def init(model, gen):
    """Parameters away from PyTorch's defaults (BN weight 1 / bias 0 and PReLU 0.25 hide
    mistakes): gamma of both signs, |gamma| in [0.5, 1.5]; beta in +-0.5; alpha in
    [0.1, 0.4]; running mean in +-0.3, running variance in [0.5, 1.5]; conv weights
    uniform with variance 1/fan_in."""
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            if name == "bn.weight":
                sign = torch.where(torch.rand(p.shape, generator=gen) < 0.3, -1.0, 1.0)
                v = sign * uniform(gen, p.shape, 0.5, 1.5)
            elif name == "bn.bias":
                v = uniform(gen, p.shape, -0.5, 0.5)
            elif name == "bn.running_mean":
                v = uniform(gen, p.shape, -0.3, 0.3)
            elif name == "bn.running_var":
                v = uniform(gen, p.shape, 0.5, 1.5)
            elif name == "prelu.weight":
                v = uniform(gen, p.shape, 0.1, 0.4)
            elif name.endswith(".bias"):
                v = uniform(gen, p.shape, -0.2, 0.2)
            else:
                bound = (3.0 / (p[0].numel())) ** 0.5
                v = uniform(gen, p.shape, -bound, bound)
            p.copy_(v.to(p.dtype))


def named_state(model):
    return [(n, t) for n, t in list(model.named_parameters()) + list(model.named_buffers())
            if not n.endswith("num_batches_tracked")]


def f32(t):
    return t.detach().to(torch.float32).numpy()


def main():
    gen = torch.Generator().manual_seed(2026)
    model = BnAct()
    init(model, gen)
    model = model.double()
    # Channel offsets so the batch mean (and the running mean's update) is not ~0.
    offset = torch.arange(CIN, dtype=torch.float32).remainder(3).mul(0.5).view(1, CIN, 1, 1)
    xs = [uniform(gen, (N, CIN, HW, HW), -1, 1) + offset for _ in range(2)]
    rs = [uniform(gen, (N, COUT, HW, HW), -1, 1) for _ in range(2)]

    out = [("x", f32(xs[0])), ("r", f32(rs[0])), ("x2", f32(xs[1])), ("r2", f32(rs[1]))]
    out += [(n, f32(t)) for n, t in named_state(model)]
    model.train()
    model.zero_grad()
    for s, (prefix, grad_prefix, after) in enumerate([("", "grad.", "after."), ("2", "grad2.", "after2.")]):
        x = xs[s].double().requires_grad_(True)
        y = model(x)
        out.append(("y" + prefix, f32(y)))
        out += [(after + n, f32(t)) for n, t in model.named_buffers() if not n.endswith("num_batches_tracked")]
        (y * rs[s].double()).sum().backward()  # parameter gradients accumulate over both
        if s == 0:
            dx_sum = x.grad.clone()
            out.append(("dx", f32(x.grad)))
        else:
            out.append(("dx2", f32(dx_sum + x.grad)))
        out += [(grad_prefix + n, f32(p.grad)) for n, p in model.named_parameters()]

    model.eval()
    model.zero_grad()
    x = xs[0].double().requires_grad_(True)
    y = model(x)
    (y * rs[0].double()).sum().backward()
    out += [("y_eval", f32(y)), ("dx_eval", f32(x.grad))]
    out += [("grad_eval." + n, f32(p.grad)) for n, p in model.named_parameters()]

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "bnact.safetensors")
    safetensors_py.write(path, out)
    z = model.bn(model.conv1(xs[0].double()))
    print(path, os.path.getsize(path), "bytes; eval-mode BN outputs below 0: %.0f %%" % (100 * (z < 0).double().mean()))


if __name__ == "__main__":
    main()
