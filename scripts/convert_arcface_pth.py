#!/usr/bin/python3
"""Convert an insightface arcface_torch backbone checkpoint (backbone.pth, a plain
state_dict) to a facekd safetensors model.

    /usr/bin/python3 scripts/convert_arcface_pth.py --arch r50 backbone.pth --out r50.safetensors

Checks every key and shape against the named architecture (scripts/arcface_models.py, the
same layers facekd builds), drops num_batches_tracked, strips a DistributedDataParallel
"module." prefix, writes fp32 tensors and the metadata facekd reads (architecture,
embedding_size, producer). Needs PyTorch (Debian python3-torch) to read the pickle.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arcface_models  # noqa: E402
import safetensors_py  # noqa: E402

# arcface_torch's get_model names → facekd's architecture names.
ALIASES = {"r18": "iresnet18", "r34": "iresnet34", "r50": "iresnet50", "r100": "iresnet100",
           "resnet18": "iresnet18", "mobilefacenet": "mbf"}


def load_state_dict(path):
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise SystemExit("%s: not a state_dict of tensors" % path)
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def convert(src, arch, out):
    arch = ALIASES.get(arch, arch)
    sd = {k: v for k, v in load_state_dict(src).items() if not k.endswith("num_batches_tracked")}
    emb_key = "fc.weight" if arch.startswith("iresnet") else "features.layers.2.weight"
    if emb_key not in sd:
        raise SystemExit("%s: no tensor '%s': not an arcface_torch %s" % (src, emb_key, arch))
    num_features = sd[emb_key].shape[0]
    try:
        ref = arcface_models.build(arch, num_features=num_features).state_dict()
    except ValueError as e:
        raise SystemExit("%s: %s" % (src, e))
    ref = {k: v for k, v in ref.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in ref if k not in sd]
    extra = [k for k in sd if k not in ref]
    if missing or extra:
        raise SystemExit("%s: keys differ from %s: missing %s, unexpected %s" % (src, arch, missing[:5], extra[:5]))
    for k, v in ref.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise SystemExit("%s: tensor '%s' has shape %s, %s needs %s" %
                             (src, k, tuple(sd[k].shape), arch, tuple(v.shape)))
    tensors = [(k, sd[k].detach().float().cpu().numpy().astype(np.float32)) for k in ref]
    for k, a in tensors:
        if not np.isfinite(a).all():
            raise SystemExit("%s: tensor '%s' has non-finite values" % (src, k))
    safetensors_py.write(out, tensors, {
        "architecture": arch,
        "embedding_size": str(num_features),
        "producer": "convert_arcface_pth.py from %s" % os.path.basename(src),
    })
    print("%s: %d tensors, %d parameters and buffers, %s embedding %d -> %s" %
          (src, len(tensors), sum(a.size for _, a in tensors), arch, num_features, out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pth", help="arcface_torch backbone.pth (state_dict)")
    p.add_argument("--arch", required=True, help="iresnet18/34/50/100 (r18..r100), mbf, mbf_large")
    p.add_argument("--out", required=True, help="output .safetensors")
    a = p.parse_args()
    convert(a.pth, a.arch, a.out)


if __name__ == "__main__":
    main()
