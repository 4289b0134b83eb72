#!/usr/bin/python3
"""PyTorch references for lib/heads, written from the papers (not from facekd's C code).

Run by hand with Debian's PyTorch (1.13):  /usr/bin/python3 scripts/gen_heads_fixtures.py
Writes tests/fixtures/heads/<case>.safetensors: the inputs, the loss and every gradient,
all float64 (labels int64), and in __metadata__ the recipe keys of the case (preset plus
overrides) so the C test builds its parameters the way a recipe does.

Margin head (ArcFace paper, eq. 4 and the combined margin of section 2.4):
  true class s·r·(ψ(θ) − m3), other classes s·r·cos θ, r = (w_norm?1:‖W_j‖)(x_norm?1:‖x‖)
  L-Softmax / SphereFace ψ = (−1)^k cos(mθ) − 2k;  ArcFace ψ = cos(θ + m) with
  insightface's fallback cos θ − m·sin m once θ + m passes π.
Metric losses: DeepID2 contrastive, FaceNet triplet (batch-all / batch-hard / semi-hard),
center loss (Wen et al. 2016).
"""
import json
import math
import os
import struct

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "heads")


def write_safetensors(path, tensors, meta):
    header, blobs, offset = {"__metadata__": {k: str(v) for k, v in meta.items()}}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        if a.dtype == np.int64:
            dtype = "I64"
        else:
            a, dtype = a.astype("<f8"), "F64"
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


PRESETS = {  # s, m1, m2, m3, w_norm, x_norm, bias, intra, inter
    "softmax": (1, 1, 0, 0, False, False, True, 0, 0),
    "l-softmax": (1, 4, 0, 0, False, False, False, 0, 0),
    "sphereface": (1, 4, 0, 0, True, False, False, 0, 0),
    "norm-softmax": (64, 1, 0, 0, True, True, False, 0, 0),
    "cosface": (64, 1, 0, 0.35, True, True, False, 0, 0),
    "arcface": (64, 1, 0.5, 0, True, True, False, 0, 0),
    "combined": (64, 1, 0.3, 0.2, True, True, False, 0, 0),
    "intra-loss": (64, 1, 0, 0, True, True, False, 1, 0),
    "inter-loss": (64, 1, 0, 0, True, True, False, 0, 1),
}
KEYS = ("s", "m1", "m2", "m3", "w_norm", "x_norm", "bias", "intra", "inter")


def margin_loss(cfg, W, b, x, y, m2vec):
    s, m1, m2, m3 = cfg["s"], cfg["m1"], cfg["m2"], cfg["m3"]
    B = x.shape[0]
    rows = torch.arange(B)
    wn, xn = W.norm(dim=1), x.norm(dim=1)
    cos = ((x @ W.t()) / (xn[:, None] * wn[None, :])).clamp(-1, 1)
    r = (torch.ones_like(wn) if cfg["w_norm"] else wn)[None, :] * (torch.ones_like(xn) if cfg["x_norm"] else xn)[:, None]
    cy = cos[rows, y]
    theta = torch.acos(cy)
    m2 = m2vec if m2vec is not None else torch.full((B,), float(m2))
    if m1 == 1:
        phi = torch.cos(theta + m2)
        if cfg.get("easy_margin", False):
            psi = torch.where(cy > 0, phi, cy)
        else:
            psi = torch.where(cy > -torch.cos(m2), phi, cy - m2 * torch.sin(m2))
        psi = torch.where(m2 > 0, psi, cy)
    elif m2.abs().max() == 0 and m1 == int(m1):
        k = torch.clamp(torch.floor(m1 * theta.detach() / math.pi), 0, m1 - 1)
        psi = (-1.0) ** k * torch.cos(m1 * theta) - 2 * k
    else:
        psi = torch.cos(m1 * theta + m2)
    lam = cfg.get("sphere_lambda", 0)
    if lam > 0:  # SphereFace's annealing: blend the plain cosine back in
        psi = (lam * cy + psi) / (1 + lam)
    if cfg.get("straight_through", False):  # arcface_torch edits the logit under no_grad
        psi = cy + (psi - cy).detach()
    target = s * r[rows, y] * (psi - m3)
    onehot = torch.zeros_like(cos, dtype=torch.bool)
    onehot[rows, y] = True
    logits = torch.where(onehot, target[:, None].expand_as(cos), s * r * cos)
    if cfg["bias"]:
        logits = logits + b[None, :]
    loss = torch.nn.functional.cross_entropy(logits, y)
    if cfg["intra"] > 0:
        loss = loss + cfg["intra"] * theta.mean() / math.pi
    if cfg["inter"] > 0:
        Wh = W / wn[:, None]
        cc = (Wh[y] @ Wh.t()).clamp(-1, 1)
        ang = torch.acos(torch.where(onehot, torch.zeros_like(cc), cc))
        ang = torch.where(onehot, torch.zeros_like(ang), ang)
        loss = loss - cfg["inter"] * ang.sum() / (B * (W.shape[0] - 1)) / math.pi
    return loss


def margin_case(name, preset, overrides, seed, B=6, C=7, d=8, m2vec=None, hard=False):
    g = torch.Generator().manual_seed(seed)
    cfg = dict(zip(KEYS, PRESETS[preset]))
    cfg.update(overrides)
    W = torch.randn(C, d, generator=g) * 0.5
    x = torch.randn(B, d, generator=g)
    y = torch.randint(0, C, (B,), generator=g)
    if hard:  # some samples nearly opposite their centre: θ + m passes π
        x[0] = -W[y[0]] * 2 + 0.05 * torch.randn(d, generator=g)
        x[1] = -W[y[1]] + 0.2 * torch.randn(d, generator=g)
    b = torch.randn(C, generator=g) * 0.1
    W.requires_grad_(True), x.requires_grad_(True), b.requires_grad_(True)
    loss = margin_loss(cfg, W, b, x, y, m2vec)
    loss.backward()
    tensors = {"W": W, "x": x, "labels": y, "loss": loss.reshape(1), "dx": x.grad, "dW": W.grad}
    if cfg["bias"]:
        tensors["b"], tensors["db"] = b, b.grad
    if m2vec is not None:
        tensors["m2"] = m2vec
    meta = {"preset": preset}
    meta.update({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in overrides.items()})
    write_safetensors(os.path.join(OUT, "margin_%s.safetensors" % name), tensors, meta)


def pair_dist(f):
    diff = f[:, None, :] - f[None, :, :]
    return (diff * diff).sum(-1)


def contrastive(f, y, margin):
    B = f.shape[0]
    loss, n = 0, 0
    for i in range(B):
        for j in range(i + 1, B):
            d = (f[i] - f[j]).norm()
            loss = loss + (0.5 * d * d if y[i] == y[j] else 0.5 * torch.clamp(margin - d, min=0) ** 2)
            n += 1
    return loss / n


def triplet(f, y, alpha, mining, normalize):
    if normalize:
        f = f / f.norm(dim=1, keepdim=True)
    D = pair_dist(f)
    B = f.shape[0]
    terms = []
    if mining == "all":
        for a in range(B):
            for p in range(B):
                if p == a or y[p] != y[a]:
                    continue
                for n in range(B):
                    if y[n] != y[a]:
                        terms.append(torch.clamp(D[a, p] - D[a, n] + alpha, min=0))
    elif mining == "hard":  # Hermans et al.: hardest positive, hardest negative per anchor
        for a in range(B):
            pos = [p for p in range(B) if p != a and y[p] == y[a]]
            neg = [n for n in range(B) if y[n] != y[a]]
            if pos and neg:
                hp = max(pos, key=lambda p: D[a, p].item())
                hn = min(neg, key=lambda n: D[a, n].item())
                terms.append(torch.clamp(D[a, hp] - D[a, hn] + alpha, min=0))
    else:  # FaceNet semi-hard: nearest negative farther than the positive, else the farthest
        for a in range(B):
            for p in range(B):
                if p == a or y[p] != y[a]:
                    continue
                neg = [n for n in range(B) if y[n] != y[a]]
                if not neg:
                    continue
                outside = [n for n in neg if D[a, n].item() > D[a, p].item()]
                n = min(outside, key=lambda n: D[a, n].item()) if outside else max(neg, key=lambda n: D[a, n].item())
                terms.append(torch.clamp(D[a, p] - D[a, n] + alpha, min=0))
    return torch.stack(terms).mean()


def center(f, y, centers, lam):
    return lam * 0.5 * ((f - centers[y]) ** 2).sum() / f.shape[0]


def center_update(f, y, centers, alpha):
    new = centers.clone()
    for j in range(centers.shape[0]):
        idx = (y == j).nonzero().flatten()
        if len(idx):
            delta = (centers[j] - f[idx]).sum(0) / (1 + len(idx))
            new[j] = centers[j] - alpha * delta
    return new


def metric_cases():
    g = torch.Generator().manual_seed(7)
    B, d, C = 8, 5, 4
    f = torch.randn(B, d, generator=g) * 0.6
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0])
    centers = torch.randn(C, d, generator=g) * 0.5
    out = {"f": f.clone(), "labels": y, "centers": centers}
    meta = {"contrastive.margin": 1.5, "triplet.margin": 0.2, "center.alpha": 0.5, "center.lambda": 0.003}

    def grad_of(fn):
        ff = f.clone().requires_grad_(True)
        loss = fn(ff)
        loss.backward()
        return loss.reshape(1), ff.grad

    out["contrastive_loss"], out["contrastive_df"] = grad_of(lambda ff: contrastive(ff, y, 1.5))
    for mining in ("all", "hard", "semi-hard"):
        for norm in (False, True):
            key = "triplet_%s_%s" % (mining.replace("-", ""), "norm" if norm else "raw")
            out[key + "_loss"], out[key + "_df"] = grad_of(lambda ff: triplet(ff, y, 0.2, mining, norm))
    out["center_loss"], out["center_df"] = grad_of(lambda ff: center(ff, y, centers, 0.003))
    out["center_updated"] = center_update(f, y, centers, 0.5)
    write_safetensors(os.path.join(OUT, "metric.safetensors"), out, meta)


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, preset in enumerate(PRESETS):
        margin_case(preset, preset, {}, 100 + i)
    margin_case("arcface_hard", "arcface", {}, 200, hard=True)
    margin_case("arcface_easy", "arcface", {"easy_margin": True}, 201, hard=True)
    margin_case("arcface_st", "arcface", {"straight_through": True}, 202, hard=True)
    margin_case("arcface_xraw", "arcface", {"x_norm": False, "s": 1.0}, 203)
    margin_case("arcface_m2", "arcface", {}, 204, m2vec=torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    margin_case("combined2", "combined", {"m1": 0.9, "m2": 0.4, "m3": 0.15}, 205)
    margin_case("cosface04", "cosface", {"m3": 0.4}, 206)
    margin_case("sphereface3", "sphereface", {"m1": 3}, 207)
    margin_case("sphereface_lambda", "sphereface", {"sphere_lambda": 5.0}, 208)
    metric_cases()


if __name__ == "__main__":
    main()
