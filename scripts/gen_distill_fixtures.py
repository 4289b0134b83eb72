#!/usr/bin/python3
"""Reference fixtures for tests/test_distill.c (the distillers of lib/distill).

Run by hand with Debian's PyTorch and numpy (not by the tests):

    /usr/bin/python3 scripts/gen_distill_fixtures.py

Each loss below is written here from its paper (see the method's file in lib/distill for
the formula and sources); autograd gives the gradients. Inputs are drawn in float32 (so C
reads exactly the same numbers); losses and gradients are computed in float64.

tests/fixtures/distill/<case>/
    options.txt   one "key value" line per method parameter (all given explicitly)
    s_emb.npy     (B, d_s) float32   student embedding (raw, not normalised; not sp_tap)
    t_emb.npy     (B, d_t) float32   teacher embedding (not sp_tap)
    w_s.npy       (C, d_s) float32   student class centres      (kd only)
    w_t.npy       (C, d_t) float32   teacher class centres      (kd only)
    s_tap.npy     (B, c, h, w) float32  student feature tap     (sp_tap only)
    t_tap.npy     (B, c, h, w) float32  teacher feature tap     (sp_tap only)
    loss.npy      () float64          the loss
    d_s_emb.npy   (B, d_s) float64    dloss/d s_emb             (when the loss reads it)
    d_w_s.npy     (C, d_s) float64    dloss/d w_s               (kd)
    d_s_tap.npy   (B, c, h, w) float64  dloss/d s_tap           (sp_tap)
Sizes: B = 8, d_s = 16, d_t = 24 (16 for l2/cosine, which need equal sizes), C = 10.
The method of a case is the part of its name before the first '_'.
"""
import math
import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                    "distill")
B, DS, DT, C = 8, 16, 24, 10


def pdist(x):
    """Pairwise Euclidean distances from the Gram matrix, squared values clamped at 1e-12
    before the root, diagonal exactly 0 (as lib/distill/ops.c computes them)."""
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.t()).clamp(min=1e-12)
    eye = torch.eye(len(x), dtype=torch.bool)
    return torch.where(eye, torch.zeros_like(d2), d2.sqrt())


def kd_loss(x, o):
    T, s = o["T"], o["s"]
    zs = s * F.normalize(x["s_emb"], dim=1) @ F.normalize(x["w_s"], dim=1).t()
    zt = s * F.normalize(x["t_emb"], dim=1) @ F.normalize(x["w_t"], dim=1).t()
    # Hinton et al.: T^2 * KL(p_teacher || p_student) of the softened distributions
    return T * T * F.kl_div(F.log_softmax(zs / T, dim=1), F.softmax(zt / T, dim=1),
                            reduction="batchmean")


def darkrank_loss(x, o):
    alpha, beta, k = o["alpha"], o["beta"], int(o["list_length"])
    ds = pdist(F.normalize(x["s_emb"], dim=1))
    dt = pdist(F.normalize(x["t_emb"], dim=1))
    b = len(ds)
    k = min(k, b - 1)
    # the teacher's k nearest neighbours of each anchor (the anchor itself excluded)
    masked = dt + torch.diag(torch.full((b,), float("inf"), dtype=dt.dtype))
    order = torch.sort(masked, dim=1, stable=True)[1][:, :k]
    sigma = -alpha * ds.gather(1, order).pow(beta)
    # ListMLE: log P = sum_m sigma_m - log sum_{l>=m} exp(sigma_l)
    suffix_lse = torch.logcumsumexp(sigma.flip(1), dim=1).flip(1)
    return -(sigma - suffix_lse).sum(1).mean()


def sp_gram(f):
    f = f.reshape(len(f), -1)
    return F.normalize(f @ f.t(), p=2, dim=1)


def sp_loss(x, o):
    fs = x["s_tap"] if "s_tap" in x else x["s_emb"]
    ft = x["t_tap"] if "t_tap" in x else x["t_emb"]
    b = len(fs)
    return ((sp_gram(fs) - sp_gram(ft)) ** 2).sum() / (b * b)


def cc_matrix(f, gamma, order):
    f = F.normalize(f, dim=1)
    sim = f @ f.t()
    return sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * sim ** p
               for p in range(order + 1))


def cckd_loss(x, o):
    g, p = o["gamma"], int(o["order"])
    return F.mse_loss(cc_matrix(x["s_emb"], g, p), cc_matrix(x["t_emb"], g, p))


def rkd_angles(x):
    v = x.unsqueeze(0) - x.unsqueeze(1)  # v[a, j] = x_j - x_a
    n = v.norm(dim=2, keepdim=True)
    # rows j = a are zero vectors: divide them by 1 so their (cancelling) gradient is finite
    eye = torch.eye(len(x), dtype=torch.bool).unsqueeze(2)
    e = v / torch.where(eye, torch.ones_like(n), n)
    return torch.bmm(e, e.transpose(1, 2))


def rkd_loss(x, o):
    s, t = x["s_emb"], x["t_emb"].detach()
    if o["normalize"] == "true":
        s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    td = pdist(t)
    td = td / td[td > 0].mean()
    sd = pdist(s)
    sd = sd / sd[sd > 0].mean()
    loss_d = F.smooth_l1_loss(sd, td)
    loss_a = F.smooth_l1_loss(rkd_angles(s), rkd_angles(t))
    return o["distance_weight"] * loss_d + o["angle_weight"] * loss_a


def l2_loss(x, o):
    s, t = x["s_emb"], x["t_emb"]
    if o["normalize"] == "true":
        s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    return F.mse_loss(s, t)


def cosine_loss(x, o):
    return (1.0 - (F.normalize(x["s_emb"], dim=1) * F.normalize(x["t_emb"], dim=1)).sum(1)).mean()


LOSSES = {"kd": kd_loss, "darkrank": darkrank_loss, "sp": sp_loss, "cckd": cckd_loss,
          "rkd": rkd_loss, "l2": l2_loss, "cosine": cosine_loss}

# case name -> (options, dict of extra input kinds). Every parameter is written out.
CASES = {
    "kd": ({"T": 4.0, "s": 64.0}, {"centres"}),
    "kd_t1": ({"T": 1.0, "s": 16.0}, {"centres"}),
    "darkrank": ({"alpha": 3.0, "beta": 3.0, "list_length": 3}, set()),
    "darkrank_long": ({"alpha": 2.0, "beta": 2.0, "list_length": 7}, set()),
    "sp": ({}, set()),
    "sp_tap": ({"tap": "stage3"}, {"taps"}),
    "cckd": ({"gamma": 0.4, "order": 2}, set()),
    "cckd_order4": ({"gamma": 0.8, "order": 4}, set()),
    "rkd": ({"distance_weight": 25.0, "angle_weight": 50.0, "normalize": "true"}, set()),
    "rkd_raw": ({"distance_weight": 1.0, "angle_weight": 2.0, "normalize": "false"}, set()),
    # an unrelated student with one far-out sample: distance ratios differ by more than 1,
    # which reaches smooth L1's linear part
    "rkd_outlier": ({"distance_weight": 25.0, "angle_weight": 50.0, "normalize": "false"},
                    {"outlier"}),
    "l2": ({"normalize": "true"}, {"equal"}),
    "l2_raw": ({"normalize": "false"}, {"equal"}),
    "cosine": ({}, {"equal"}),
}


def make_inputs(case, kinds):
    g = torch.Generator().manual_seed(sum(map(ord, case)))
    dt = DS if "equal" in kinds else DT

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float32))

    # raw embeddings with uneven norms; the student loosely follows the teacher so the
    # relational terms are neither trivial nor saturated
    if "taps" in kinds:
        return {"s_tap": rand(B, 4, 3, 3), "t_tap": rand(B, 6, 2, 3)}
    t_emb = rand(B, dt, scale=2.0)
    proj = rand(dt, DS, scale=1.0 / math.sqrt(dt))
    s_emb = t_emb @ proj + rand(B, DS, scale=0.5)
    if "outlier" in kinds:
        s_emb = rand(B, DS)
        s_emb[0] *= 10.0
    x = {"t_emb": t_emb, "s_emb": s_emb.float()}
    if "centres" in kinds:
        x["w_s"] = rand(C, DS)
        x["w_t"] = rand(C, dt)
    return x


def write_case(case, opts, kinds):
    method = case.split("_")[0]
    out = os.path.join(ROOT, case)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    x32 = make_inputs(case, kinds)
    x = {}
    for name, v in x32.items():
        np.save(os.path.join(out, name + ".npy"), v.numpy())
        x[name] = v.double().requires_grad_(name in ("s_emb", "w_s", "s_tap"))
    with open(os.path.join(out, "options.txt"), "w") as f:
        for key, value in opts.items():
            f.write("%s %s\n" % (key, value))
    loss = LOSSES[method](x, opts)
    loss.backward()
    np.save(os.path.join(out, "loss.npy"), np.array(loss.item(), dtype=np.float64))
    for name in ("s_emb", "w_s", "s_tap"):
        if name in x:
            np.save(os.path.join(out, "d_" + name + ".npy"), x[name].grad.numpy())
    print("%-14s loss %.10g" % (case, loss.item()))


def main():
    torch.set_printoptions(precision=10)
    for case, (opts, kinds) in CASES.items():
        write_case(case, opts, kinds)


if __name__ == "__main__":
    main()
