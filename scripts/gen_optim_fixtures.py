#!/usr/bin/python3
"""Reference fixtures for tests/test_optim.c, tests/test_schedule.c and tests/test_npy.c.

Run by hand with Debian's PyTorch and numpy (not by the tests):

    /usr/bin/python3 scripts/gen_optim_fixtures.py

Writes .npy files (facekd's own lib/io/npy reads them back, so the optimizer tests also
exercise the reader):

tests/fixtures/optim/<case>/
    w<i>.npy        (STEPS + 1, *shape_i) float32  parameter i before each step and after the last
    g<i>.npy        (STEPS, *shape_i)     float32  gradient of parameter i fed at each step
    lr.npy          (STEPS,)              float64  learning rate of each step
    <slot><i>.npy   (*shape_i)            float32  optimizer state after the last step
                                                   (slot: momentum_buffer, exp_avg, exp_avg_sq)
  Cases (parameters p0 (4, 3), p1 (5,) "bn weight", p2 (2, 3, 2, 2) "head"):
    sgd            torch.optim.SGD momentum 0.9, weight decay 5e-4 on all
    sgd_nesterov   momentum 0.9, nesterov, weight decay 5e-4 except p1 (decay 0)
    sgd_plain      momentum 0, weight decay 5e-4 on all
    adamw          torch.optim.AdamW betas (0.9, 0.999), eps 1e-8, weight decay 0.1 on all
    adamw_nodecay_p1  same with weight decay 0.05 except p1 (decay 0)

tests/fixtures/optim/schedule_<name>.npy  (N,) float64, the lr used by optimizer update k:
    poly           arcface_torch PolyScheduler formula, base 0.1, warmup 10, total 100, power 2
    poly_nowarmup  same, warmup 0
    multistep      torch MultiStepLR, base 0.1, milestones [30, 60, 80], gamma 0.1
    cosine         torch CosineAnnealingLR, base 0.1, T_max 50, eta_min 1e-4
    cosine_warmup  torch LambdaLR: linear warm-up 0 -> 0.1 over 10, then cosine to 0 at 60

tests/fixtures/npy/   np.save / np.lib.format outputs (see NPY_CASES below).
"""
import math
import os

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
STEPS = 5
SHAPES = [(4, 3), (5,), (2, 3, 2, 2)]


def save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, array)


def optimizer_case(name, make_optimizer, decay_p1, slots):
    """Runs STEPS updates on three parameters with fixed gradients and lr values."""
    torch.manual_seed(1234)
    params = [torch.nn.Parameter(torch.randn(s, dtype=torch.float32)) for s in SHAPES]
    grads = [torch.randn((STEPS,) + s, dtype=torch.float32) for s in SHAPES]
    # A decaying lr sequence like a schedule would give; changes every step.
    lrs = [0.1 * (1.0 - k / 10.0) ** 2 for k in range(STEPS)]
    groups = [
        {"params": [params[0]]},
        {"params": [params[1]]} if decay_p1 else {"params": [params[1]], "weight_decay": 0.0},
        {"params": [params[2]]},
    ]
    opt = make_optimizer(groups)
    history = [[p.detach().clone()] for p in params]
    for k in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = lrs[k]
        for p, g in zip(params, grads):
            p.grad = g[k].clone()
        opt.step()
        for h, p in zip(history, params):
            h.append(p.detach().clone())
    out = os.path.join(ROOT, "optim", name)
    for i, p in enumerate(params):
        save(os.path.join(out, "w%d.npy" % i), torch.stack(history[i]).numpy())
        save(os.path.join(out, "g%d.npy" % i), grads[i].numpy())
        for slot in slots:
            save(os.path.join(out, "%s%d.npy" % (slot, i)), opt.state[p][slot].numpy())
    save(os.path.join(out, "lr.npy"), np.array(lrs, dtype=np.float64))


def optimizer_fixtures():
    sgd = lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
    sgd_nesterov = lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sgd_plain = lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.0, weight_decay=5e-4)
    adamw = lambda groups: torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    adamw05 = lambda groups: torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    optimizer_case("sgd", sgd, True, ["momentum_buffer"])
    optimizer_case("sgd_nesterov", sgd_nesterov, False, ["momentum_buffer"])
    optimizer_case("sgd_plain", sgd_plain, True, [])
    optimizer_case("adamw", adamw, True, ["exp_avg", "exp_avg_sq"])
    optimizer_case("adamw_nodecay_p1", adamw05, False, ["exp_avg", "exp_avg_sq"])


class ArcfacePoly(torch.optim.lr_scheduler._LRScheduler):
    """The formula of arcface_torch's PolyScheduler (lr_scheduler.py): linear warm-up from
    0 to base_lr over warmup_steps, then base_lr * (1 - (t - warmup) / (max - warmup))^2."""

    def __init__(self, optimizer, base_lr, max_steps, warmup_steps, power=2):
        self.base_lr_value = base_lr
        self.max_steps = max_steps
        self.warmup_steps = warmup_steps
        self.power = power
        super().__init__(optimizer, -1)

    def get_lr(self):
        t = self.last_epoch
        if t < self.warmup_steps:
            lr = self.base_lr_value * t / self.warmup_steps
        else:
            lr = self.base_lr_value * (1 - (t - self.warmup_steps) / (self.max_steps - self.warmup_steps)) ** self.power
        return [lr for _ in self.optimizer.param_groups]


def lr_sequence(make_scheduler, n):
    """lr used by optimizer update k = 0..n-1 (the scheduler steps after each update)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs, dtype=np.float64)


def schedule_fixtures():
    out = os.path.join(ROOT, "optim")
    save(os.path.join(out, "schedule_poly.npy"), lr_sequence(lambda o: ArcfacePoly(o, 0.1, 100, 10), 100))
    save(os.path.join(out, "schedule_poly_nowarmup.npy"), lr_sequence(lambda o: ArcfacePoly(o, 0.1, 100, 0), 100))
    save(os.path.join(out, "schedule_multistep.npy"),
         lr_sequence(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [30, 60, 80], gamma=0.1), 100))
    save(os.path.join(out, "schedule_cosine.npy"),
         lr_sequence(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50, eta_min=1e-4), 51))

    def warm_cosine(t):
        return t / 10 if t < 10 else 0.5 * (1 + math.cos(math.pi * (t - 10) / 50))

    save(os.path.join(out, "schedule_cosine_warmup.npy"),
         lr_sequence(lambda o: torch.optim.lr_scheduler.LambdaLR(o, warm_cosine), 61))


def npy_fixtures():
    out = os.path.join(ROOT, "npy")
    os.makedirs(out, exist_ok=True)
    base = np.arange(24, dtype=np.float64).reshape(2, 3, 4) * 0.25 - 3.0  # exact in float32
    np.save(os.path.join(out, "f4_2x3x4.npy"), base.astype("<f4"))
    np.save(os.path.join(out, "f8_2x3x4.npy"), base.astype("<f8"))
    np.save(os.path.join(out, "f4_6.npy"), base.reshape(-1)[:6].astype("<f4"))
    np.save(os.path.join(out, "f4_scalar.npy"), np.array(2.5, dtype="<f4"))
    np.save(os.path.join(out, "f4_empty_0x3.npy"), np.zeros((0, 3), dtype="<f4"))
    np.save(os.path.join(out, "i8_labels.npy"), np.array([0, 7, -1, 2**40, 3], dtype="<i8"))
    np.save(os.path.join(out, "i4_labels.npy"), np.array([0, 7, -1, 2**30, 3], dtype="<i4"))
    for version in [(2, 0), (3, 0)]:
        with open(os.path.join(out, "f4_2x3x4_v%d.npy" % version[0]), "wb") as f:
            np.lib.format.write_array(f, base.astype("<f4"), version=version)
    # Refused inputs: Fortran order, big-endian, half precision, unsigned bytes.
    np.save(os.path.join(out, "bad_fortran.npy"), np.asfortranarray(base[0].astype("<f4")))
    np.save(os.path.join(out, "bad_bigendian.npy"), base.astype(">f4"))
    np.save(os.path.join(out, "bad_f2.npy"), base.astype("<f2"))
    np.save(os.path.join(out, "bad_u1.npy"), np.arange(4, dtype=np.uint8))


if __name__ == "__main__":
    optimizer_fixtures()
    schedule_fixtures()
    npy_fixtures()
    print("fixtures written under", os.path.normpath(ROOT))
