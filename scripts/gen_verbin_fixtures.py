#!/usr/bin/python3
"""Writes the verification-.bin fixtures of tests/test_verbin.c into tests/fixtures/verbin/.

Run by hand with Debian's /usr/bin/python3 (needs Pillow and numpy):
    /usr/bin/python3 scripts/gen_verbin_fixtures.py

Small sets hold 3 pairs of the six images img0..img5 (files written beside them), issame
[True, False, True]. "many" sets hold 700 pairs where image i is the same Python object
as image (i % 6), so the pickler writes BINGET for repeats, issame[i] = (i % 3 != 1).
Each file is checked with pickle.loads(..., encoding='bytes') before it is written.
"""
import io
import os
import pickle
import struct

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "verbin")


def make_images():
    """Six tiny faces-to-be: three PNGs (one under 256 bytes) and three JPEGs."""
    imgs = []
    for k in range(6):
        size = 4 if k == 0 else 16
        yy, xx = np.mgrid[0:size, 0:size]
        rgb = np.stack([(xx * 16 + k * 40) % 256, (yy * 16) % 256, np.full_like(xx, 30 * k)], -1).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG" if k % 2 == 0 else "JPEG", quality=90)
        imgs.append(buf.getvalue())
    return imgs


def put(memo_index):
    return b"q" + bytes([memo_index]) if memo_index < 256 else b"r" + struct.pack("<I", memo_index)


def get(memo_index):
    return b"h" + bytes([memo_index]) if memo_index < 256 else b"j" + struct.pack("<I", memo_index)


def python2_pickle(images, issame):
    """What Python 2's cPickle.dump(obj, f, protocol=2) writes for (list of str, list of
    bool): str as SHORT_BINSTRING/BINSTRING, BINPUT after every memoised object, BINGET
    for an object seen before, batches of 1000 list items between MARK and APPENDS."""
    out = bytearray(b"\x80\x02")
    memo = {}

    def lst(items, write_item):
        out.extend(b"]" + put(len(memo)))
        memo[("list", id(items))] = len(memo)
        for start in range(0, len(items), 1000):
            batch = items[start:start + 1000]
            if len(batch) > 1:
                out.extend(b"(")
            for it in batch:
                write_item(it)
            out.extend(b"e" if len(batch) > 1 else b"a")

    def write_str(s):
        if id(s) in memo:
            out.extend(get(memo[id(s)]))
            return
        out.extend((b"U" + bytes([len(s)])) if len(s) < 256 else (b"T" + struct.pack("<i", len(s))))
        out.extend(s)
        memo[id(s)] = len(memo)
        out.extend(put(memo[id(s)]))

    lst(images, write_str)
    lst(issame, lambda b: out.extend(b"\x88" if b else b"\x89"))
    out.extend(b"\x86" + put(len(memo)) + b".")
    return bytes(out)


def write(name, data, images, issame):
    got = pickle.loads(data, encoding="bytes")
    assert list(got[0]) == list(images) and [bool(x) for x in got[1]] == list(issame), name
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    imgs = make_images()
    for k, b in enumerate(imgs):
        with open(os.path.join(OUT, f"img{k}.{'png' if k % 2 == 0 else 'jpg'}"), "wb") as f:
            f.write(b)
    small, same = list(imgs), [True, False, True]
    many = [imgs[i % 6] for i in range(1400)]
    many_same = [i % 3 != 1 for i in range(700)]

    write("py2_proto2.bin", python2_pickle(small, same), small, same)
    write("py2_proto2_many.bin", python2_pickle(many, many_same), many, many_same)
    for proto in (2, 3, 4, 5):  # Python 3's own pickler; protocol 2 uses _codecs.encode
        write(f"py3_proto{proto}.bin", pickle.dumps((small, same), protocol=proto), small, same)
    write("py3_proto4_many.bin", pickle.dumps((many, many_same), protocol=4), many, many_same)

    arrays = [np.frombuffer(b, dtype=np.uint8) for b in small]
    for proto in (2, 4):
        with open(os.path.join(OUT, f"numpy_proto{proto}.bin"), "wb") as f:
            pickle.dump((arrays, same), f, protocol=proto)
    with open(os.path.join(OUT, "bad_opcode.bin"), "wb") as f:  # a dict: EMPTY_DICT '}' at offset 2
        pickle.dump(({"a": 1}, same), f, protocol=2)


if __name__ == "__main__":
    main()
