#!/usr/bin/python3
"""Reference fixtures for tests/test_models.c: narrow IResNet and MobileFaceNet, same
layers and names as arcface_torch (scripts/arcface_models.py), with seeded random
weights and running statistics.

    /usr/bin/python3 scripts/gen_model_fixtures.py     # writes tests/fixtures/models/

input.safetensors         "input" (2, 3, 112, 112), fp16-exact values stored as F16.
                          The models run on a batch of 4: these 2 images and their
                          horizontal mirrors (x[..., ::-1]). A batch of 2 would make the
                          train-mode BatchNorm1d at the end degenerate (with 2 samples
                          every normalised value is ±1 and its backward is a cancellation
                          of nearly equal numbers, fp32 noise amplified ~1e4).
<model>.safetensors       the model's state_dict (F16; num_batches_tracked as I64, which
                          the loader must skip) plus, under "ref.", computed in float64:
  ref.eval.embedding      (4, F) eval mode (running statistics)
  ref.train.embedding     (4, F) train mode (batch statistics), forward right after eval
  ref.train.stage4_0      train-mode stage4 tap of image 0
  ref.r                   (4, F) upstream gradient: L = sum(r * train embedding)
  ref.grad.input0         (1, 3, 112, 112) dL/dinput of image 0 (not in every file)
  ref.grad.<param>        dL/dparam for a few parameters (not fc.bias or bn2.bias: the
                          train-mode BatchNorm1d after fc makes their gradient exactly 0)
  ref.after.<buffer>      running statistics after the one train forward (momentum 0.1)
Metadata as facekd writes it (architecture, embedding_size, width, blocks, producer), so
fkd_model_open builds the same narrow graph.
Weights and the input are rounded to fp16 first so F16 storage loses nothing.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arcface_models  # noqa: E402
import safetensors_py  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")

MODELS = [
    # name, arch, width, blocks, num_features, grads to record, buffers to record, input grad?
    ("iresnet_narrow", "iresnet18", 8, (1, 2, 1, 1), 8,
     ["conv1.weight", "prelu.weight", "layer1.0.conv1.weight", "layer2.1.prelu.weight", "layer3.0.downsample.0.weight",
      "layer4.0.bn3.weight", "layer1.0.bn1.bias", "bn2.weight", "fc.weight", "features.bias"],
     ["bn1.running_mean", "layer2.1.bn2.running_var", "features.running_mean", "features.running_var"], True),
    ("mbf_narrow", "mbf", 8, (1, 2, 1, 1), 16,
     ["layers.0.layers.0.weight", "layers.1.layers.0.weight", "layers.3.layers.1.layers.1.layers.0.weight",
      "layers.4.layers.2.layers.1.weight", "conv_sep.layers.2.weight", "features.layers.0.layers.0.weight",
      "features.layers.2.weight", "features.layers.3.weight"],
     ["layers.1.layers.1.running_mean", "conv_sep.layers.1.running_var", "features.layers.3.running_var"], True),
    # mbf_large's shape (scale 4, a Residual as layers.1 since blocks[0] > 1); no input
    # gradient, to stay small.
    ("mbf_large_narrow", "mbf_large", 4, (2, 1, 1, 1), 16,
     ["layers.0.layers.0.weight", "layers.1.layers.0.layers.1.layers.0.weight",
      "layers.1.layers.1.layers.2.layers.1.weight", "layers.7.layers.0.layers.0.layers.2.weight",
      "features.layers.2.weight"],
     ["layers.1.layers.1.layers.1.layers.1.running_var", "features.layers.3.running_mean"], False),
]


def f16(t):
    return t.half().double()


def randomize(model, gen):
    """Weights ~ N(0, 1/fan_in) keep activations O(1) through eval-mode BN; BN and PReLU
    away from their initial values so a swapped scale/shift or slope shows up."""
    def rand(shape, lo, hi):
        return f16(torch.rand(shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo)

    def randn(shape, std):
        return f16(torch.randn(shape, generator=gen, dtype=torch.float64) * std)

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.weight.copy_(randn(m.weight.shape, 1 / np.sqrt(m.weight[0].numel())))
            if m.bias is not None:
                m.bias.copy_(randn(m.bias.shape, 0.1))
        elif isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.weight.copy_(rand(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(randn(m.bias.shape, 0.1))
            m.running_mean.copy_(randn(m.running_mean.shape, 0.2))
            m.running_var.copy_(rand(m.running_var.shape, 0.5, 1.5))
        elif isinstance(m, torch.nn.PReLU):
            m.weight.copy_(rand(m.weight.shape, 0.05, 0.35))
    if hasattr(model, "fc"):  # arcface_torch: features.weight frozen at 1
        model.features.weight.fill_(1.0)


def generate(x, name, arch, width, blocks, nf, grads, buffers, input_grad):
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    model = arcface_models.build(arch, num_features=nf, width=width, blocks=blocks).double()
    with torch.no_grad():
        randomize(model, gen)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    model.eval()
    with torch.no_grad():
        eval_emb = model(x)

    model.train()
    stage4 = {}
    last = model.layer4 if arch.startswith("iresnet") else model.conv_sep
    # (a forward hook's return value would replace the output: update() returns None)
    hook = last.register_forward_hook(lambda m, i, o: stage4.update(v=o.detach().clone()))
    xg = x.clone().requires_grad_(True)
    emb = model(xg)
    hook.remove()
    r = f16(torch.randn(emb.shape, generator=gen, dtype=torch.float64))
    (emb * r).sum().backward()
    params = dict(model.named_parameters())
    after = model.state_dict()

    tensors = []
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            tensors.append((k, v.numpy().astype(np.int64)))
        else:
            tensors.append((k, v.numpy().astype(np.float16)))
    f32 = lambda t: t.detach().numpy().astype(np.float32)  # noqa: E731
    tensors += [("ref.eval.embedding", f32(eval_emb)), ("ref.train.embedding", f32(emb)),
                ("ref.train.stage4_0", f32(stage4["v"][:1])), ("ref.r", f32(r))]
    if input_grad:
        tensors.append(("ref.grad.input0", f32(xg.grad[:1])))
    tensors += [("ref.grad." + g, f32(params[g].grad)) for g in grads]
    tensors += [("ref.after." + b, f32(after[b])) for b in buffers]
    meta = {"architecture": arch, "embedding_size": str(nf),
            "width": str(width), "blocks": ",".join(map(str, blocks)),
            "producer": "scripts/gen_model_fixtures.py (PyTorch %s, float64)" % torch.__version__}
    path = os.path.join(OUT, name + ".safetensors")
    safetensors_py.write(path, tensors, meta)
    n = sum(p.numel() for p in model.parameters())
    print("%s: %d parameters, %d bytes, |eval emb| %.3g, |train emb| %.3g" %
          (path, n, os.path.getsize(path), eval_emb.abs().max(), emb.abs().max()))


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(20261123)
    x = f16(torch.rand((2, 3, 112, 112), generator=gen) * 2 - 1)
    safetensors_py.write(os.path.join(OUT, "input.safetensors"), [("input", x.numpy().astype(np.float16))],
                         {"producer": "scripts/gen_model_fixtures.py"})
    batch = torch.cat([x, x.flip(3)])
    for m in MODELS:
        generate(batch, *m)


if __name__ == "__main__":
    main()
