#!/usr/bin/python3
"""Writes a small face-sized corpus for `facekd bench` and for checking the RecordIO
reader against an independent writer: OUT/folder/<id>/<n>.jpg, OUT/train.rec + .idx in
insightface's layout (header record 0, images 1..N, identity records), and OUT/lfw.bin
(Python 3 pickle protocol 4). JPEG quality 95 like insightface's packing scripts.

    /usr/bin/python3 scripts/gen_rec_corpus.py OUT [identities] [images_per_identity]

The .rec framing is written here from the format description (magic 0xced7230a, length
word with the continuation flag in its top 3 bits, 4-byte padding, IRHeader "IfQQ"),
not with MXNet, so facekd reading it checks the reader against a second implementation.
"""
import io
import os
import pickle
import struct
import sys

import numpy as np
from PIL import Image

MAGIC = 0xCED7230A


def face(rng, ident, k):
    """A 112x112 RGB image: an identity-coloured ellipse on a gradient, plus noise."""
    yy, xx = np.mgrid[0:112, 0:112].astype(np.float32)
    base = np.stack([xx * 1.5, yy * 1.2, (xx + yy) * 0.8], -1)
    col = np.array([(ident * 53) % 200 + 40, (ident * 97) % 200 + 40, (ident * 29) % 200 + 40], np.float32)
    cx, cy = 56 + rng.normal(0, 3), 60 + rng.normal(0, 3)
    mask = ((xx - cx) / 30) ** 2 + ((yy - cy) / 40) ** 2 < 1
    img = np.where(mask[..., None], col, base) + rng.normal(0, 6, (112, 112, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def jpeg(img):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def record(payload):
    """One record; payloads containing an aligned magic word are split like MXNet does."""
    parts, start = [], 0
    for i in range(0, len(payload) // 4 * 4, 4):
        if struct.unpack_from("<I", payload, i)[0] == MAGIC:
            parts.append(payload[start:i])
            start = i + 4
    parts.append(payload[start:])
    out = b""
    for j, part in enumerate(parts):
        cflag = 0 if len(parts) == 1 else (1 if j == 0 else (3 if j == len(parts) - 1 else 2))
        out += struct.pack("<II", MAGIC, cflag << 29 | len(part)) + part + b"\0" * (-len(part) % 4)
    return out


def header(flag, label, id_, labels=()):
    return struct.pack("<IfQQ", flag, label, id_, 0) + b"".join(struct.pack("<f", v) for v in labels)


def main():
    out = sys.argv[1]
    n_ids = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    per = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    rng = np.random.default_rng(0)
    images = []  # (identity, jpeg bytes)
    for ident in range(n_ids):
        os.makedirs(os.path.join(out, "folder", f"id{ident:05d}"), exist_ok=True)
        for k in range(per):
            data = jpeg(face(rng, ident, k))
            with open(os.path.join(out, "folder", f"id{ident:05d}", f"{k:03d}.jpg"), "wb") as f:
                f.write(data)
            images.append((ident, data))
    n = len(images)
    with open(os.path.join(out, "train.rec"), "wb") as rec, open(os.path.join(out, "train.idx"), "w") as idx:
        def put(key, payload):
            idx.write(f"{key}\t{rec.tell()}\n")
            rec.write(record(payload))
        put(0, header(2, 0.0, 0, (n + 1, n + 1 + n_ids)))
        for key, (ident, data) in enumerate(images, start=1):
            put(key, header(0, float(ident), key) + data)
        for ident in range(n_ids):
            put(n + 1 + ident, header(2, 0.0, n + 1 + ident, (1 + ident * per, 1 + (ident + 1) * per)))
    bins, issame = [], []
    for p in range(min(300, n // 2)):
        a = images[(2 * p) % n]
        b = images[(2 * p + (1 if p % 2 == 0 else per + 1)) % n]
        bins += [a[1], b[1]]
        issame.append(a[0] == b[0])
    with open(os.path.join(out, "lfw.bin"), "wb") as f:
        pickle.dump((bins, issame), f, protocol=4)
    print(f"{out}: {n} images of {n_ids} identities, {len(issame)} pairs")


if __name__ == "__main__":
    main()
