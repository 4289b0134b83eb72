#!/usr/bin/python3
"""Reference fixtures for tests/test_distill2.c (shrinkteanet, triplet, margin, ekd, fitnet
in lib/distill).

Run by hand with Debian's PyTorch and numpy (not by the tests):

    /usr/bin/python3 scripts/gen_distill2_fixtures.py

Each loss is written here from its paper (the method's file in lib/distill gives the
formula and the sources); autograd gives the gradients. Inputs are drawn in float32 (so
C reads exactly the same numbers); losses and gradients are computed in float64.
Same layout as scripts/gen_distill_fixtures.py:

tests/fixtures/distill/<case>/
    options.txt     one "key value" line per method parameter
    s_emb.npy       (B, d_s) float32    student embedding (raw)           (embedding cases)
    t_emb.npy       (B, d_t) float32    teacher embedding
    s_tap.npy       (B, c_s, h, w) float32  student feature tap           (*_tap cases)
    t_tap.npy       (B, c_t, h, w) float32  teacher feature tap
    adapter_w.npy   (c_t, c_s, 1, 1) float32  adapter weight               (adapter cases)
    adapter_b.npy   (c_t) float32       adapter bias
    labels.npy      (B) int64                                            (triplet, margin, ekd)
    w_t.npy         (C, d_t) float32    teacher class centres            (margin)
    loss.npy        () float64          the loss                         ((steps) for ekd)
    d_s_emb.npy / d_s_tap.npy  float64  dloss/d(student input)           ((steps, ...) for ekd)
    d_adapter_w.npy, d_adapter_b.npy    dloss/d(adapter)                 (adapter cases)
    margins.npy     (B) float64         per-sample margins               (margin)
    s_thr.npy, t_thr.npy (steps, K) float64  running thresholds after each step (ekd)
EKD cases hold several steps: s_emb (steps, B, d_s), t_emb, labels (steps, B).
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


# ---- losses ------------------------------------------------------------------------------

def adapted(x):
    """The student side as compared: adapter(student) when the case has an adapter."""
    s = x["s_tap"] if "s_tap" in x else x["s_emb"]
    if "adapter_w" in x:
        s = F.conv2d(s if s.dim() == 4 else s[:, :, None, None], x["adapter_w"], x["adapter_b"])
    t = x["t_tap"] if "t_tap" in x else x["t_emb"]
    return s.reshape(len(s), -1), t.reshape(len(t), -1)


def shrinkteanet_loss(x, o):
    s, t = adapted(x)
    return (1.0 - F.cosine_similarity(s, t, dim=1, eps=1e-12)).mean()


def fitnet_loss(x, o):
    s, t = adapted(x)
    return F.mse_loss(s, t)


def sqdist(x):
    x = F.normalize(x, dim=1)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(2)


def triplet_loss(x, o):
    lo, hi = o["margin_min"], o["margin_max"]
    y = x["labels"]
    ds, dt = sqdist(x["s_emb"]), sqdist(x["t_emb"])
    b = len(y)
    same = y[:, None] == y[None, :]
    # delta over every (a, p, n): p a distinct positive of a, n a negative of a
    delta = (dt[:, None, :] - dt[:, :, None]).clamp(min=0)  # [a, p, n] = dt[a,n] - dt[a,p]
    valid = same[:, :, None] & ~torch.eye(b, dtype=torch.bool)[:, :, None] & ~same[:, None, :]
    dmax = delta[valid].max() if valid.any() else torch.tensor(0.0, dtype=torch.float64)
    margin = lo + (hi - lo) * (delta / dmax if dmax > 0 else torch.zeros_like(delta))
    terms = []
    with torch.no_grad():
        dsv = ds.detach()
    for a in range(b):
        for p in range(b):
            if p == a or not same[a, p]:
                continue
            best = None
            for n in range(b):
                if same[a, n]:
                    continue
                m = margin[a, p, n].item()
                closer = best is None or dsv[a, n] < dsv[a, best]
                if dsv[a, p] < dsv[a, n] < dsv[a, p] + m and closer:
                    best = n
            if best is not None:
                terms.append(ds[a, p] - ds[a, best] + margin[a, p, best])
    x["n_triplets"] = len(terms)
    return torch.stack(terms).mean() if terms else (x["s_emb"] * 0).sum()


def margin_loss(x, o):
    lo, hi, s = o["margin_min"], o["margin_max"], o["s"]
    y = x["labels"]
    w = F.normalize(x["w_t"], dim=1)
    ct = (F.normalize(x["t_emb"], dim=1) * w[y]).sum(1)
    top = ct.max()
    m = lo + (hi - lo) * (ct.clamp(min=0) / top if top > 0 else torch.zeros_like(ct))
    x["margins"] = m.detach()
    cos = F.normalize(x["s_emb"], dim=1) @ w.t()
    c = cos.gather(1, y[:, None])[:, 0]
    sin = (1.0 - c * c).clamp(min=1e-12).sqrt()
    phi = torch.where(c > torch.cos(math.pi - m), c * torch.cos(m) - sin * torch.sin(m),
                      c - m * torch.sin(math.pi - m))
    onehot = F.one_hot(y, cos.shape[1]).bool()
    logits = s * torch.where(onehot, phi[:, None], cos)
    return F.cross_entropy(logits, y)


class EkdRef:
    """Running thresholds and the rank loss, from the paper (see lib/distill/ekd.c)."""

    def __init__(self, o):
        self.fpr = [float(v) for v in o["fpr"].strip("[]").split(",")]
        self.o = o
        self.s_thr = torch.zeros(len(self.fpr), dtype=torch.float64)
        self.t_thr = torch.zeros(len(self.fpr), dtype=torch.float64)

    def soft_count(self, v, thr):
        e = (-(v[:, None] - thr[None, :]) / self.o["temperature"]).clamp(-50, 50)
        return (1.0 / (1.0 + torch.exp(e))).sum(1)

    def step(self, s_emb, t_emb, y):
        o = self.o
        b = len(y)
        iu = torch.triu_indices(b, b, 1)
        S = (F.normalize(s_emb, dim=1) @ F.normalize(s_emb, dim=1).t())[iu[0], iu[1]]
        with torch.no_grad():
            T = (F.normalize(t_emb, dim=1) @ F.normalize(t_emb, dim=1).t())[iu[0], iu[1]]
        pos = y[iu[0]] == y[iu[1]]
        s_neg, t_neg = S[~pos], T[~pos]
        order = torch.sort(s_neg.detach(), descending=True)[1]
        t_sorted = torch.sort(t_neg, descending=True)[0]
        n = len(s_neg)
        idx = [n // round(1.0 / f) for f in self.fpr]
        mu = o["momentum"]
        self.s_thr = (1 - mu) * self.s_thr + mu * s_neg.detach()[order][idx]
        self.t_thr = (1 - mu) * self.t_thr + mu * t_sorted[idx]
        hard = order[: int(o["top_k"])]

        def mse(a, b_):
            return ((self.soft_count(a, self.s_thr) - self.soft_count(b_, self.t_thr)) ** 2).mean()

        return (o["pos_weight"] * mse(S[pos], T[pos]) +
                o["neg_weight"] * mse(s_neg[hard], t_neg[hard]))


# ---- cases --------------------------------------------------------------------------------

def rand(g, *shape, scale=1.0):
    return scale * torch.randn(*shape, generator=g, dtype=torch.float32)


def identity_batch(g, y, ds, dt, noise_s, noise_t):
    """Embeddings clustered by identity (labels y): teacher = centre + noise, student = a
    projection of the teacher plus more noise."""
    centres = rand(g, int(y.max()) + 1, dt, scale=1.0)
    t = centres[y] + rand(g, len(y), dt, scale=noise_t)
    proj = rand(g, dt, ds, scale=1.0 / math.sqrt(dt))
    s = t @ proj + rand(g, len(y), ds, scale=noise_s)
    return s.float(), t.float(), y, centres


def feature_case(g, kinds, b=8):
    x = {}
    if "tap" in kinds:
        x["s_tap"] = rand(g, b, 4, 3, 3)
        x["t_tap"] = rand(g, b, 6, 3, 3) + 0.5
        cs, ct = 4, 6
    else:
        dt = 24 if "adapter" in kinds else 16
        x["t_emb"] = rand(g, b, dt, scale=2.0)
        x["s_emb"] = (x["t_emb"] @ rand(g, dt, 16, scale=1.0 / math.sqrt(dt)) +
                      rand(g, b, 16, scale=0.5)).float()
        cs, ct = 16, dt
    if "adapter" in kinds:
        bound = 1.0 / math.sqrt(cs)
        x["adapter_w"] = (torch.rand(ct, cs, 1, 1, generator=g) * 2 - 1) * bound
        x["adapter_b"] = (torch.rand(ct, generator=g) * 2 - 1) * bound
    return x


CASES = {
    "shrinkteanet": ({}, {"emb"}),
    "shrinkteanet_adapter": ({"adapter": "true"}, {"emb", "adapter"}),
    "shrinkteanet_tap": ({"tap": "stage3"}, {"tap", "adapter"}),
    "fitnet": ({}, {"emb"}),
    "fitnet_adapter": ({"adapter": "true"}, {"emb", "adapter"}),
    "fitnet_tap": ({"tap": "stage3"}, {"tap", "adapter"}),
    "triplet": ({"margin_min": 0.2, "margin_max": 0.5}, {"ids"}),
    "triplet_wide": ({"margin_min": 0.1, "margin_max": 1.0}, {"ids"}),
    "margin": ({"margin_min": 0.2, "margin_max": 0.5, "s": 64.0}, {"centres"}),
    "margin_s30": ({"margin_min": 0.1, "margin_max": 0.4, "s": 30.0}, {"centres"}),
    "ekd": ({"fpr": "[0.1, 0.01, 0.001, 0.0001, 0.00001, 0.000001]", "top_k": 40,
             "temperature": 0.01, "momentum": 0.01, "pos_weight": 0.02, "neg_weight": 0.01},
            {"steps"}),
    "ekd_fast": ({"fpr": "[0.5, 0.1, 0.05]", "top_k": 1000, "temperature": 0.05,
                  "momentum": 0.5, "pos_weight": 0.02, "neg_weight": 0.01}, {"steps"}),
}
STUDENT_INPUTS = ("s_emb", "s_tap", "adapter_w", "adapter_b")


def save(out, name, v):
    np.save(os.path.join(out, name + ".npy"), v)


def write_options(out, opts):
    with open(os.path.join(out, "options.txt"), "w") as f:
        for key, value in opts.items():
            f.write("%s %s\n" % (key, value))


def write_case(case, opts, kinds):
    method = case.split("_")[0]
    out = os.path.join(ROOT, case)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    write_options(out, opts)
    g = torch.Generator().manual_seed(sum(map(ord, case)) + 7)
    if "steps" in kinds:
        return write_ekd(out, case, opts, g)
    if method in ("shrinkteanet", "fitnet"):
        x32 = feature_case(g, kinds)
    elif method == "triplet":
        y = torch.arange(4).repeat_interleave(3)  # P x K = 4 x 3
        s, t, y, _ = identity_batch(g, y, 16, 24, 0.5, 0.6)
        x32 = {"s_emb": s, "t_emb": t, "labels": y}
    else:
        s, t, y, centres = identity_batch(g, torch.arange(5).repeat_interleave(2), 16, 16, 0.4,
                                          0.5)
        w = torch.cat([centres, rand(g, 5, 16)])  # 10 classes, 5 of them in the batch
        # two samples labelled with a class the teacher does not put them near: their
        # teacher cosine is small or negative (the margin's lower clamp)
        y = torch.tensor([0, 0, 1, 6, 2, 2, 3, 3, 4, 9])
        x32 = {"s_emb": s, "t_emb": t, "labels": y, "w_t": w.float()}
    x = {}
    for name, v in x32.items():
        save(out, name, v.numpy())
        x[name] = v if name == "labels" else v.double().requires_grad_(name in STUDENT_INPUTS)
    loss = {"shrinkteanet": shrinkteanet_loss, "fitnet": fitnet_loss, "triplet": triplet_loss,
            "margin": margin_loss}[method](x, opts)
    loss.backward()
    save(out, "loss", np.array(loss.item(), dtype=np.float64))
    for name in STUDENT_INPUTS:
        if name in x:
            save(out, "d_" + name, x[name].grad.numpy())
    if "margins" in x:
        save(out, "margins", x["margins"].numpy())
    extra = " (%d triplets)" % x["n_triplets"] if "n_triplets" in x else ""
    print("%-22s loss %.10g%s" % (case, loss.item(), extra))


def write_ekd(out, case, opts, g, steps=3):
    ref = EkdRef(opts)
    S, T, Y, losses, grads, s_thr, t_thr = [], [], [], [], [], [], []
    for k in range(steps):
        # 2 identities x 4 images, then 4 identities x 2 (the paper's mixed batches), b = 16
        y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]) + 10 * k
        s, t, y, _ = identity_batch(g, y, 16, 24, 0.6, 0.5)
        S.append(s), T.append(t), Y.append(y)
        sd = s.double().requires_grad_(True)
        loss = ref.step(sd, t.double(), y)
        loss.backward()
        losses.append(loss.item())
        grads.append(sd.grad.numpy())
        s_thr.append(ref.s_thr.numpy().copy())
        t_thr.append(ref.t_thr.numpy().copy())
    save(out, "s_emb", torch.stack(S).numpy())
    save(out, "t_emb", torch.stack(T).numpy())
    save(out, "labels", torch.stack(Y).numpy())
    save(out, "loss", np.array(losses, dtype=np.float64))
    save(out, "d_s_emb", np.stack(grads))
    save(out, "s_thr", np.stack(s_thr))
    save(out, "t_thr", np.stack(t_thr))
    print("%-22s losses %s" % (case, " ".join("%.10g" % v for v in losses)))


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    for name, (o, kinds) in CASES.items():
        write_case(name, o, kinds)
