"""PyTorch side of scripts/bench_compare.sh: the same measurement as `facekd bench --arch`
(median step after warm-up, images/s, peak resident memory) on scripts/arcface_models.py.

  /usr/bin/python3 scripts/bench_torch.py --arch mbf --mode train --precision bf16 \
      --batch 32 --threads 2 [--width 64] [--steps 10] [--warmup 3]
  /usr/bin/python3 scripts/bench_torch.py --arch mbf --export-onnx model.onnx

Prints one JSON object. Training step: forward, a fixed embedding gradient backward, SGD
(momentum 0.9, weight decay 5e-4, as facekd's defaults); the head and loss are not included,
as in facekd. bf16 runs under torch.autocast("cpu", dtype=torch.bfloat16) with fp32 master
weights; tensors are channels-last (oneDNN's fast layout in PyTorch).
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arcface_models  # noqa: E402

ALIASES = {"r18": "iresnet18", "r34": "iresnet34", "r50": "iresnet50", "r100": "iresnet100"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True)
    ap.add_argument("--mode", choices=["infer", "train"], default="infer")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--export-onnx", metavar="PATH")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = arcface_models.build(ALIASES.get(a.arch, a.arch), width=a.width)
    x = torch.rand(a.batch, 3, 112, 112) * 2 - 1
    if a.export_onnx:
        model.eval()
        torch.onnx.export(model, x, a.export_onnx, input_names=["input"], output_names=["embedding"],
                          opset_version=13)
        return
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    d_emb = torch.randn(a.batch, 512) * 1e-3
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    model.train(a.mode == "train")
    bf16 = a.precision == "bf16"

    def step():
        if a.mode == "infer":
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model(x)
            return
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            e = model(x)
        e.float().backward(d_emb)
        opt.step()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    print(json.dumps({
        "engine": "pytorch " + torch.__version__, "arch": a.arch, "width": a.width, "mode": a.mode,
        "precision": a.precision, "batch": a.batch, "threads": torch.get_num_threads(),
        "step_median_s": med, "step_min_s": times[0], "images_per_s": a.batch / med,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "load_after": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
