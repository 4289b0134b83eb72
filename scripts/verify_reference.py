#!/usr/bin/python3
"""Reference numbers for lib/eval/verify.c (run by hand: /usr/bin/python3 scripts/verify_reference.py).

An independent numpy re-implementation of insightface's verification protocol
(recognition/arcface_torch/eval/verification.py: calculate_roc, calculate_accuracy,
calculate_val with scipy interp1d 'slinear', sklearn KFold(shuffle=False)) written from
the protocol, plus facekd's ROC statistics (TAR@FAR, EER, AUC by Mann-Whitney, XNorm).
sklearn and scipy are not installed under /usr/bin/python3, so KFold's contiguous split
and interp1d's degree-1 B-spline are written out here.

Writes tests/fixtures/eval/<case>.txt: one line per field, "name v1 v2 ...", floats with
enough digits to round-trip (%.17g for doubles; %.9g for float32 embeddings and for
distances generated with 9 significant digits).
"""
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "eval")
FARS = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


def kfold(n, n_splits):
    """sklearn KFold(n_splits, shuffle=False): contiguous test folds, first n % k get one more."""
    sizes = np.full(n_splits, n // n_splits, dtype=np.int64)
    sizes[: n % n_splits] += 1
    idx = np.arange(n)
    start = 0
    for s in sizes:
        test = idx[start:start + s]
        train = np.concatenate([idx[:start], idx[start + s:]])
        yield train, test
        start += s


def accuracy_at(threshold, dist, same):
    pred = dist < threshold
    tp = np.sum(pred & same)
    tn = np.sum(~pred & ~same)
    return float(tp + tn) / dist.size


def val_far_at(threshold, dist, same):
    pred = dist < threshold
    return float(np.sum(pred & same)) / float(np.sum(same)), float(np.sum(pred & ~same)) / float(np.sum(~same))


def slinear(xs, ys, x):
    """scipy interp1d(xs, ys, kind='slinear')(x) for sorted xs with repeats: a degree-1
    B-spline with knots [xs0, xs..., xs_-1] and coefficients ys, evaluated by de Boor."""
    t = np.r_[xs[0], xs, xs[-1]]
    n = len(xs)
    l = int(np.searchsorted(t, x, side="right")) - 1
    l = min(max(l, 1), n - 1)
    xa, xb = t[l], t[l + 1]
    if xb == xa:
        return 0.0
    w = 1.0 / (xb - xa)
    return ys[l - 1] * (w * (xb - x)) + ys[l] * (w * (x - xa))


def protocol(dist, same, n_folds=10):
    thresholds = np.arange(0, 4, 0.01)
    out = {"fold_begin": [], "fold_end": [], "fold_threshold": [], "fold_accuracy": [], "val_threshold": []}
    vals, fars = [], []
    for train, test in kfold(len(dist), n_folds):
        acc_train = np.array([accuracy_at(t, dist[train], same[train]) for t in thresholds])
        best = int(np.argmax(acc_train))
        out["fold_begin"].append(int(test[0]))
        out["fold_end"].append(int(test[-1]) + 1)
        out["fold_threshold"].append(thresholds[best])
        out["fold_accuracy"].append(accuracy_at(thresholds[best], dist[test], same[test]))
    vthr = np.arange(0, 4, 0.001)
    for train, test in kfold(len(dist), n_folds):
        far_train = np.array([val_far_at(t, dist[train], same[train])[1] for t in vthr])
        thr = slinear(far_train, vthr, 1e-3) if far_train.max() >= 1e-3 else 0.0
        v, f = val_far_at(thr, dist[test], same[test])
        out["val_threshold"].append(thr)
        vals.append(v)
        fars.append(f)
    acc = np.array(out["fold_accuracy"])
    out["accuracy_mean"] = [np.mean(acc)]
    out["accuracy_std"] = [np.std(acc)]
    out["val_mean"] = [np.mean(vals)]
    out["val_std"] = [np.std(vals)]
    out["val_far_mean"] = [np.mean(fars)]
    return out


def roc_stats(score, same):
    pos, neg = score[same], score[~same]
    out = {"tar": [], "tar_threshold": [], "tar_far": []}
    neg_desc = np.sort(neg)[::-1]
    for far in FARS:
        k = np.floor(far * len(neg) + 1e-9)
        if k < 1:
            out["tar"].append(np.nan)
            out["tar_threshold"].append(np.nan)
            out["tar_far"].append(np.nan)
            continue
        k = int(k)
        # accept s >= t: lowest t with at most k negatives at or above it
        if k >= len(neg):
            t = score.min()
        else:
            t = score[score > neg_desc[k]].min()
        out["tar"].append(np.mean(pos >= t))
        out["tar_threshold"].append(t)
        out["tar_far"].append(np.mean(neg >= t))
    # AUC by Mann-Whitney with mid-ranks (independent of the trapezoid walk in C)
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s_sorted = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and s_sorted[j + 1] == s_sorted[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    n_pos, n_neg = len(pos), len(neg)
    out["auc"] = [(ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)]
    # EER: ROC points at distinct scores (descending), linear crossing of FAR and 1 - TPR
    uniq = np.unique(score)[::-1]
    ta = np.r_[0, [np.sum(pos >= u) for u in uniq]]
    fa = np.r_[0, [np.sum(neg >= u) for u in uniq]]
    tpr, far = ta / n_pos, fa / n_neg
    thr = np.r_[np.inf, uniq]
    diff = far - (1 - tpr)
    # first point with FAR >= FNR, decided on integer counts so exact ties are exact
    i = int(np.argmax(fa * n_pos >= (n_pos - ta) * n_neg))
    a = -diff[i - 1] / (diff[i] - diff[i - 1])
    out["eer"] = [far[i - 1] + a * (far[i] - far[i - 1])]
    out["eer_threshold"] = [thr[i]]
    return out


def write_case(name, note, same, emb=None, dist=None):
    same = np.asarray(same, dtype=bool)
    fields = [("n_pairs", [len(same)], "%d"), ("issame", same.astype(int), "%d")]
    if emb is not None:
        emb = emb.astype(np.float32)
        e = emb.astype(np.float64)
        e = e / np.sqrt(np.einsum("ij,ij->i", e, e))[:, None]
        dist = np.sum(np.square(e[0::2] - e[1::2]), 1)
        fields += [("dim", [emb.shape[1]], "%d"), ("emb", emb.ravel(), "%.9g"),
                   ("xnorm", [np.mean(np.linalg.norm(emb.astype(np.float64), axis=1))], "%.17g")]
    short = all(float("%.9g" % v) == v for v in dist)
    fields.append(("dist", dist, "%.9g" if short else "%.17g"))
    res = protocol(dist, same)
    res.update(roc_stats(1.0 - 0.5 * dist, same))
    for k in ("fold_begin", "fold_end"):
        fields.append((k, res.pop(k), "%d"))
    for k, v in res.items():
        fields.append((k, v, "%.17g"))
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".txt")
    with open(path, "w") as f:
        f.write("# facekd eval fixture: %s\n# written by scripts/verify_reference.py\n" % note)
        for key, values, fmt in fields:
            f.write(key + " " + " ".join(fmt % v for v in values) + "\n")
    acc = res["accuracy_mean"][0]
    print("%s: N=%d accuracy %.4f +- %.4f, tar %s, auc %.5f, eer %.4f" % (
        name, len(same), acc, res["accuracy_std"][0], res["tar"], res["auc"][0], res["eer"][0]))


def nine_digits(x):
    """Values that print exactly in 9 significant digits (smaller fixture files)."""
    return np.array([float("%.9g" % v) for v in x])


def identity_pairs(rng, n, d, noise):
    """2n embeddings: same pairs share an identity centre, different pairs do not."""
    same = rng.random(n) < 0.5
    centres = rng.standard_normal((2 * n, d))
    emb = np.empty((2 * n, d))
    for i in range(n):
        a = centres[2 * i]
        b = a if same[i] else centres[2 * i + 1]
        emb[2 * i] = a + noise * rng.standard_normal(d)
        emb[2 * i + 1] = b + noise * rng.standard_normal(d)
    # raw embeddings with varying norms, as a network gives
    emb *= (5 + 20 * rng.random(2 * n))[:, None]
    return same, emb


def main():
    rng = np.random.default_rng(20261123)
    same, emb = identity_pairs(rng, 600, 8, 0.7)
    write_case("even_600", "600 pairs, d=8, folds of 60", same, emb=emb)
    same, emb = identity_pairs(rng, 601, 8, 0.7)
    write_case("uneven_601", "601 pairs, d=8, first fold holds 61", same, emb=emb)
    # distances exactly on the threshold grid (k * 0.01): exercises dist < t (strict),
    # equal training accuracies (first argmax) and tied scores in the ROC
    same = rng.random(397) < 0.5
    k = np.where(same, rng.integers(20, 200, 397), rng.integers(120, 360, 397))
    write_case("ties_397", "397 pairs, distances on the 0.01 grid", same, dist=k * 0.01)
    # many negatives so TAR is defined down to FAR 1e-4 (1e-5 and 1e-6 are skipped)
    n = 12000
    same = np.zeros(n, dtype=bool)
    same[rng.choice(n, 1000, replace=False)] = True
    cos = np.where(same, rng.normal(0.55, 0.15, n), rng.normal(0.0, 0.12, n)).clip(-1, 1)
    dist = nine_digits(2.0 - 2.0 * cos)
    write_case("many_12000", "12000 pairs, 11000 negatives, distances only", same, dist=dist)
    # every fold holds 1000 negatives, so each training FAR is k / 9000 and FAR = 1e-3
    # is hit exactly (9 / 9000 == 1e-3 in double): interp1d's rule on a run of equal FAR
    # values (the last threshold of the run) decides the VAL threshold
    same = np.zeros(11000, dtype=bool)
    for f in range(10):
        same[f * 1100 + rng.choice(1100, 100, replace=False)] = True
    dist = np.where(same, rng.normal(0.9, 0.3, 11000), rng.normal(1.9, 0.25, 11000)).clip(0, 4)
    write_case("val_exact_11000", "11000 pairs, 1000 negatives per fold: FAR 1e-3 reached exactly", same,
               dist=nine_digits(dist))


if __name__ == "__main__":
    main()
