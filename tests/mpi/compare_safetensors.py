#!/usr/bin/env python3
"""Compares the F32 tensors of two safetensors files (standard library only).

usage: compare_safetensors.py A B TOL [--show]
The figure compared with TOL is the relative L2 distance over every tensor together,
||a - b|| / ||b||; --show prints it per tensor too. Exits 1 when a tensor name or shape
differs or the figure exceeds TOL."""
import json
import math
import struct
import sys
from array import array


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        begin, end = t["data_offsets"]
        a = array("f")
        a.frombytes(data[begin:end])
        if sys.byteorder != "little":
            a.byteswap()
        out[name] = (tuple(t["shape"]), a)
    return out


def main():
    a, b, tol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
    show = "--show" in sys.argv
    if sorted(a) != sorted(b):
        print("tensor names differ:", sorted(set(a) ^ set(b)))
        return 1
    diff2 = ref2 = 0.0
    for name in sorted(a):
        (sa, ta), (sb, tb) = a[name], b[name]
        if sa != sb:
            print(f"{name}: shape {sa} vs {sb}")
            return 1
        d2 = sum((x - y) ** 2 for x, y in zip(ta, tb))
        r2 = sum(y * y for y in tb)
        diff2 += d2
        ref2 += r2
        if show:
            print(f"{name:50s} relative L2 {math.sqrt(d2 / r2) if r2 else math.sqrt(d2):.3e}")
    rel = math.sqrt(diff2 / ref2) if ref2 else math.sqrt(diff2)
    print(f"{len(a)} tensors; relative L2 distance {rel:.3e}; tolerance {tol:g}")
    return 0 if rel <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
