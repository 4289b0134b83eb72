#!/usr/bin/python3
"""Writes the fuzz seed corpora: tests/fuzz/corpus/<parser>/ (run by hand, then commit).

Small valid files for each parser, plus a few near-misses, so libFuzzer starts from
inputs that reach deep into each format. Needs numpy and PIL (Debian's python3).
"""
import io
import os
import pickle
import struct
import subprocess
import json

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus")


def put(parser, name, data):
    d = os.path.join(ROOT, parser)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def tiny_image(mode, fmt, w=8, h=6):
    rng = np.random.default_rng(len(mode) * 7 + w)
    bands = {"RGB": 3, "RGBA": 4, "L": None, "LA": 2, "P": None, "I;16": None}[mode]
    if mode == "P":
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB").convert("P")
    elif mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif bands is None:
        img = Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L")
    else:
        img = Image.fromarray(rng.integers(0, 255, (h, w, bands), dtype=np.uint8), mode)
    out = io.BytesIO()
    kwargs = {"quality": 80} if fmt == "JPEG" else {}
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def images():
    put("image", "rgb.jpg", tiny_image("RGB", "JPEG"))
    put("image", "grey.jpg", tiny_image("L", "JPEG"))
    out = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(out, "JPEG", progressive=True)
    put("image", "progressive.jpg", out.getvalue())
    for mode in ("RGB", "RGBA", "L", "LA", "P", "I;16"):
        put("image", "%s.png" % mode.replace(";", "").lower(), tiny_image(mode, "PNG"))


def safetensors_bytes(tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name, arr, dtype in tensors:
        raw = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def safetensors():
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    put("safetensors", "f32.safetensors", safetensors_bytes([("w", a, "F32")], {"architecture": "mbf", "step": "4"}))
    put("safetensors", "mixed.safetensors", safetensors_bytes([
        ("a.weight", np.ones((2, 2, 1, 1), "<f8"), "F64"),
        ("optim.step", np.array(3, "<i8"), "I64"),
        ("h", np.arange(4, dtype="<f2"), "F16"),
        ("b", np.arange(4, dtype="<u2"), "BF16"),
        ("e", np.zeros((0, 3), "<f4"), "F32")]))
    put("safetensors", "empty.safetensors", safetensors_bytes([]))


def npys():
    for name, arr in [("f4", np.arange(6, dtype="<f4").reshape(2, 3)), ("f8", np.linspace(0, 1, 5)),
                      ("i4", np.arange(3, dtype="<i4")), ("i8", np.arange(4, dtype="<i8").reshape(2, 1, 2)),
                      ("scalar", np.array(2.5, "<f4")), ("fortran", np.asfortranarray(np.ones((2, 3), "<f4"))),
                      ("big_endian", np.arange(3, dtype=">f4"))]:
        out = io.BytesIO()
        np.save(out, arr)
        put("npy", name + ".npy", out.getvalue())
    out = io.BytesIO()
    np.lib.format.write_array(out, np.arange(4, dtype="<f4"), version=(2, 0))
    put("npy", "v2.npy", out.getvalue())


def verbin():
    imgs = [tiny_image("RGB", "JPEG", 6, 6), tiny_image("L", "PNG", 6, 6)] * 2
    data = (imgs, [True, False])
    for proto in (2, 3, 4, 5):
        put("verbin", "proto%d.bin" % proto, pickle.dumps(data, protocol=proto))
    # Python 2's protocol 2 wrote byte strings as BINSTRING/SHORT_BINSTRING.
    py2 = b"\x80\x02]q\x00(" + b"".join(b"T" + struct.pack("<I", len(i)) + i for i in imgs[:2]) + b"e]q\x01(\x88\x89e\x86."
    put("verbin", "py2.bin", py2)


def rec_record(payload, cflag=0):
    return struct.pack("<II", 0xced7230a, cflag << 29 | len(payload)) + payload + b"\0" * (-len(payload) % 4)


def ir_header(flag, label, id_, extra=()):
    return struct.pack("<IfQQ", flag, label, id_, 0) + b"".join(struct.pack("<f", x) for x in extra)


def recordio_input(records):
    rec, idx = b"", ""
    for key, payload in records:
        idx += "%d\t%d\n" % (key, len(rec))
        rec += rec_record(payload)
    idx = idx.encode()
    return struct.pack("<H", len(idx)) + idx + rec


def recordio():
    img = tiny_image("RGB", "JPEG", 4, 4)
    plain = [(1, ir_header(0, 0, 1) + img), (2, ir_header(0, 1, 2) + img)]
    put("recordio", "plain.bin", recordio_input(plain))
    header = [(0, ir_header(2, 0, 0, (3, 5)))] + plain + [(3, ir_header(2, 0, 3, (1, 2))), (4, ir_header(2, 0, 4, (2, 3)))]
    put("recordio", "insightface.bin", recordio_input(header))
    multi = [(1, ir_header(2, 0, 1, (7, 1)) + img)]
    put("recordio", "multilabel.bin", recordio_input(multi))
    # A record split where the magic occurs in its data: start + end parts.
    data = ir_header(0, 0, 1) + b"ab" + struct.pack("<I", 0xced7230a) + b"cd"
    first, second = data[:26], data[30:]
    rec = rec_record(first, 1) + rec_record(second, 3)
    idx = b"1\t0\n"
    put("recordio", "split.bin", struct.pack("<H", len(idx)) + idx + rec)


RECIPES = {
    "quickstart.yaml": """name: quick
seed: 3
steps: 20
batch_size: 8
checkpoint_every: 2
eval_every: 0
data:
  source: synth
  synth: {identities: 10, images_per_identity: 10}
  eval:
    - {name: lfw, synth: synth-lfw}
model: {arch: mbf, embedding_size: 32, width: 8}
head: {loss: arcface, s: 64, m2: 0.5}
optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
schedule: {type: step, milestones: [5, 10], gamma: 0.1}
""",
    "recordio.yaml": """epochs: 2
data:
  source: recordio
  path: /data/ms1m/train.rec
  sampler: {kind: pk, p: 4, k: 2}
  eval:
    - name: lfw
      bin: /data/lfw.bin
    - {name: pairs, pairs: pairs.txt, root: imgs}
batch_size: 8
optimizer: {type: adamw, lr: 0.001, betas: [0.9, 0.99], eps: 1.0e-8}
schedule: {type: cosine, warmup_epochs: 1}
""",
    "distill.yaml": """steps: 10
teacher: {model: teacher.safetensors, arch: iresnet50, cache: true}
distill:
  - {method: kd, weight: 1.0, T: 4}
  - {method: rkd, distance_weight: 25, angle_weight: 50}
  - method: fitnet
    student_tap: stage2
    teacher_tap: stage3
""",
    "anchors.yaml": """base: &b {identities: 4, images_per_identity: 2}
data:
  synth: *b
""",
    "bad_key.yaml": "optimizer:\n  lr: 0.1\n  lr_typo: 3\n",
    "flow.yaml": "{steps: 1, model: {arch: resnet18}, head: {loss: cosface, m3: 0.35}}\n",
}


def recipes():
    for name, text in RECIPES.items():
        put("recipe", name, text)
    # YAML, NUL, then --set assignments separated by NUL.
    sets = ["optimizer.lr=0.05", "data.eval[0].name=x", "head.loss=cosface", "model={arch: resnet18}"]
    put("recipe", "with_sets.bin", RECIPES["quickstart.yaml"] + "\0" + "\0".join(sets))


def pairs():
    # Identities A and B with images 1..9 exist under the target's root.
    put("pairs", "lfw.txt", "2\t1\nA\t1\t2\nA\t3\tB\t4\nB\t5\t9\nB\t1\tA\t7\n")
    put("pairs", "count.txt", "1\nA 1 2\n")


def checkpoint():
    """The checkpoint target writes its own seed (a checkpoint of its network)."""
    target = os.path.join(ROOT, "..", "..", "..", "build-fuzz", "fuzz_checkpoint")
    if not os.path.exists(target):
        print("build-fuzz/fuzz_checkpoint missing (make fuzz-build): checkpoint seed not written")
        return
    d = os.path.join(ROOT, "checkpoint")
    os.makedirs(d, exist_ok=True)
    env = dict(os.environ, FUZZ_WRITE_SEED=os.path.join(d, "sgd.safetensors"))
    subprocess.run([target, "-runs=1"], env=env, check=True, capture_output=True)


if __name__ == "__main__":
    images()
    safetensors()
    npys()
    verbin()
    recordio()
    recipes()
    pairs()
    checkpoint()
