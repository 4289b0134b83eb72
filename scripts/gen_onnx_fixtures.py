#!/usr/bin/python3
"""ONNX import fixtures for tests/test_onnx.c, made with PyTorch's own exporter
(torch.onnx.export, PyTorch 1.13), the way face models reach facekd in practice.

    /usr/bin/python3 scripts/gen_onnx_fixtures.py      # writes tests/fixtures/onnx/

input.safetensors        "input" (3, 3, 112, 112): facekd's normalised input
                         (x - 127.5) / 127.5, fp16-exact values stored as F16.
<name>.onnx              the exported model (seeded random weights, eval mode).
<name>.ref.safetensors   "output" (3, F): PyTorch's float32 output of the model on that
                         batch (for ops_* on the pixels x * 127.5 + 127.5, since that graph
                         normalises by itself); metadata: input name, opset.

Models
  iresnet_op11   narrow IResNet as arcface_torch's torch2onnx.py exports it: input "data",
                 opset 11, dynamic batch, torch.flatten -> Flatten.
  iresnet_zoo13  the model zoo layout (w600k_r50.onnx): input "input.1", output an
                 embedding; flattened with x.view(x.size(0), -1), so the graph holds
                 PyTorch's Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain; opset 13.
  mbf_op11, mbf_op13   narrow MobileFaceNet ("mbf"), input "data".
  ops_op9, ops_op17    a small net that normalises its own input (Sub, Mul), with Relu,
                 LeakyRelu, a one-slope PRelu, a BatchNormalization that cannot fold
                 (after Add), a per-channel Mul/Add, GlobalAveragePool, MatMul + Add,
                 Gemm and Div; ops_op9 is exported with a static batch of 1, so its
                 Reshape target is the constant (1, -1) (insightface's known exporter
                 failure), ops_op17 with a dynamic batch.
  typed_op11     mbf_op11 with every initializer rewritten from raw_data to the typed
                 float_data / int64_data fields (needs the onnx Python package).
  handmade_op12  built node by node with onnx.helper for what PyTorch does not emit:
                 Identity, Dropout with a ratio input, Constant value_float, a float16
                 and a double initializer, Conv auto_pad SAME_UPPER, constant − value,
                 Shape/Gather/Unsqueeze(attribute axes)/Concat/Cast feeding Reshape,
                 Squeeze of a constant, a per-feature Mul on 2-D values, Gemm with
                 transB 0, alpha and beta, an unfoldable 2-D BatchNormalization, PRelu
                 on 2-D values, Div. Reference computed with torch.nn.functional.
"""
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arcface_models  # noqa: E402
import safetensors_py  # noqa: E402
from gen_model_fixtures import f16, randomize  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "onnx")


class ZooIResNet(nn.Module):
    """arcface_torch's IResNet with the flatten written as a view on the batch size."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        n = self.net
        x = n.prelu(n.bn1(n.conv1(x)))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        x = n.bn2(x)
        x = x.view(x.size(0), -1)
        return n.features(n.fc(n.dropout(x)))


class OpsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.bn3 = nn.BatchNorm2d(8)
        self.prelu = nn.PReLU()  # one slope for every channel
        self.conv3 = nn.Conv2d(8, 16, 1, stride=2, padding=0, groups=2, bias=True)
        self.scale = nn.Parameter(torch.rand(16, 1, 1) + 0.5)
        self.shift = nn.Parameter(torch.randn(16, 1, 1) * 0.1)
        self.mat = nn.Parameter(torch.randn(16, 12) / 4)
        self.mat_bias = nn.Parameter(torch.randn(12) * 0.1)
        self.gemm = nn.Linear(12, 10)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        x = (x - 127.5) * 0.0078125
        y = torch.relu(self.conv1(x))
        x = self.bn3(y + self.bn2(self.conv2(y)))
        x = nn.functional.leaky_relu(x, 0.1)
        x = self.prelu(self.conv3(x))
        x = x * self.scale + self.shift
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        x = x.view(x.size(0), -1)
        x = torch.matmul(x, self.mat) + self.mat_bias
        x = self.drop(self.gemm(x))
        return x / 2.0


def export(model, name, opset, input_name, dynamic, x_in):
    path = os.path.join(OUT, name + ".onnx")
    dummy = x_in[:1].float()
    axes = {input_name: {0: "None"}, "output": {0: "None"}} if dynamic else None
    torch.onnx.export(model, dummy, path, input_names=[input_name], output_names=["output"],
                      opset_version=opset, keep_initializers_as_inputs=False, dynamic_axes=axes,
                      do_constant_folding=True)
    return path


def write_ref(name, model, x_model, opset, input_name):
    with torch.no_grad():
        out = model(x_model.float()).numpy().astype(np.float32)
    safetensors_py.write(os.path.join(OUT, name + ".ref.safetensors"), [("output", out)],
                         {"input": input_name, "opset": str(opset),
                          "producer": "scripts/gen_onnx_fixtures.py (PyTorch %s, float32)" % torch.__version__})
    size = os.path.getsize(os.path.join(OUT, name + ".onnx"))
    print("%s: output %s, |out| %.3g, %d bytes" % (name, out.shape, np.abs(out).max(), size))


def typed_copy(src, dst):
    import onnx
    from onnx import numpy_helper
    m = onnx.load(src)
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        t.ClearField("raw_data")
        if a.dtype == np.float32:
            t.float_data.extend(a.ravel().tolist())
        elif a.dtype == np.int64:
            t.int64_data.extend(a.ravel().tolist())
        else:
            raise ValueError("%s: dtype %s" % (t.name, a.dtype))
    onnx.save(m, dst)


def handmade(x):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(12)
    w1 = (rng.standard_normal((4, 3, 3, 3)) / 5).astype(np.float16)
    b1 = rng.standard_normal(4) * 0.1
    w2 = (rng.standard_normal((8, 4, 3, 3)) / 6).astype(np.float32)
    sq = (rng.random((1, 8)) + 0.5).astype(np.float32)
    gb = (rng.standard_normal((8, 6)) / 3).astype(np.float32)
    gc = (rng.standard_normal(6) * 0.1).astype(np.float32)
    bn = [(rng.random(6) + 0.5), rng.standard_normal(6) * 0.1, rng.standard_normal(6) * 0.1, rng.random(6) + 0.5]
    bn = [a.astype(np.float32) for a in bn]
    slope = (rng.random(6) * 0.3).astype(np.float32)

    w2_t = helper.make_tensor("w2", TensorProto.FLOAT, w2.shape, w2.ravel().tolist())  # typed float_data
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1.astype(np.float64), "b1"), w2_t,
             numpy_helper.from_array(np.array(0.5, np.float32), "ratio"), numpy_helper.from_array(sq, "sq"),
             numpy_helper.from_array(gb, "gb"), numpy_helper.from_array(gc, "gc"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(4.0, np.float32), "four"), numpy_helper.from_array(slope, "slope")]
    inits += [numpy_helper.from_array(a, n) for a, n in zip(bn, ["bn_s", "bn_b", "bn_m", "bn_v"])]
    N = helper.make_node
    nodes = [
        N("Identity", ["x"], ["x1"]),
        N("Conv", ["x1", "w1", "b1"], ["c1"], auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        N("Dropout", ["c1", "ratio"], ["d1"]),
        N("LeakyRelu", ["d1"], ["l1"], alpha=0.2),
        N("Conv", ["l1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        N("Constant", [], ["half"], value_float=0.5),
        N("Sub", ["half", "c2"], ["s1"]),
        N("GlobalAveragePool", ["s1"], ["g"]),
        N("Shape", ["g"], ["gs"]),
        N("Gather", ["gs", "zero"], ["n0"]),
        N("Unsqueeze", ["n0"], ["n1"], axes=[0]),
        N("Concat", ["n1", "minus1"], ["shape_i"], axis=0),
        N("Cast", ["shape_i"], ["shape"], to=TensorProto.INT64),
        N("Reshape", ["g", "shape"], ["r"]),
        N("Squeeze", ["sq"], ["sq1"], axes=[0]),
        N("Mul", ["r", "sq1"], ["m"]),
        N("Gemm", ["m", "gb", "gc"], ["gm"], alpha=0.5, beta=2.0, transB=0),
        N("BatchNormalization", ["gm", "bn_s", "bn_b", "bn_m", "bn_v"], ["b"], epsilon=1e-3),
        N("Add", ["gm", "b"], ["a"]),
        N("Div", ["a", "four"], ["dv"]),
        N("PRelu", ["dv", "slope"], ["output"]),
    ]
    graph = helper.make_graph(nodes, "handmade",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], producer_name="gen_onnx_fixtures")
    model.ir_version = 7
    import onnx
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, "handmade_op12.onnx"))

    F = torch.nn.functional
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    xx = x.double()
    c1 = F.conv2d(xx, t(w1.astype(np.float32)), t(b1.astype(np.float32)), padding=1)
    l1 = F.leaky_relu(c1, 0.2)
    c2 = F.conv2d(l1, t(w2), stride=2, padding=1)
    g = (0.5 - c2).mean(dim=(2, 3))
    m = g * t(sq[0])
    gm = 0.5 * m @ t(gb) + 2.0 * t(gc)
    b = (gm - t(bn[2])) / torch.sqrt(t(bn[3]) + 1e-3) * t(bn[0]) + t(bn[1])
    dv = (gm + b) / 4.0
    out = torch.where(dv > 0, dv, dv * t(slope))
    safetensors_py.write(os.path.join(OUT, "handmade_op12.ref.safetensors"), [("output", out.numpy().astype(np.float32))],
                         {"input": "x", "opset": "12", "producer": "scripts/gen_onnx_fixtures.py (torch float64)"})
    print("handmade_op12: output %s, |out| %.3g" % (tuple(out.shape), out.abs().max()))


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(20261124)
    x = f16(torch.rand((3, 3, 112, 112), generator=gen) * 2 - 1)
    safetensors_py.write(os.path.join(OUT, "input.safetensors"), [("input", x.numpy().astype(np.float16))],
                         {"producer": "scripts/gen_onnx_fixtures.py"})
    pixels = x * 127.5 + 127.5

    def model(arch, seed, width=8, blocks=(1, 1, 1, 1), nf=16):
        m = arcface_models.build(arch, num_features=nf, width=width, blocks=blocks).double()
        with torch.no_grad():
            randomize(m, torch.Generator().manual_seed(seed))
        return m.float().eval()

    iresnet = model("iresnet18", 11, width=4)
    export(iresnet, "iresnet_op11", 11, "data", True, x)
    write_ref("iresnet_op11", iresnet, x, 11, "data")

    zoo = ZooIResNet(model("iresnet18", 13, width=4, nf=32)).eval()
    export(zoo, "iresnet_zoo13", 13, "input.1", True, x)
    write_ref("iresnet_zoo13", zoo, x, 13, "input.1")

    for opset in (11, 13):
        mbf = model("mbf", opset)
        export(mbf, "mbf_op%d" % opset, opset, "data", True, x)
        write_ref("mbf_op%d" % opset, mbf, x, opset, "data")

    for opset, dynamic in ((9, False), (17, True)):
        torch.manual_seed(opset)
        ops = OpsNet()
        with torch.no_grad():
            randomize(ops, torch.Generator().manual_seed(opset))
            ops.prelu.weight.fill_(0.2)
        ops.eval()
        name = "ops_op%d" % opset
        export(ops, name, opset, "data", dynamic, pixels)
        write_ref(name, ops, pixels, opset, "data")

    typed_copy(os.path.join(OUT, "mbf_op11.onnx"), os.path.join(OUT, "typed_op11.onnx"))
    print("typed_op11: %d bytes (reference: mbf_op11.ref.safetensors)" %
          os.path.getsize(os.path.join(OUT, "typed_op11.onnx")))
    handmade(x)


if __name__ == "__main__":
    main()
