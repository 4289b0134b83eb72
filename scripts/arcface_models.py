"""PyTorch re-implementation of arcface_torch's IResNet and MobileFaceNet ("mbf").

Used only by scripts/ to make test fixtures and to check converter output; facekd itself
is C. Module names (and so state_dict keys) follow arcface_torch's backbones exactly.
Two knobs beyond arcface_torch make narrow test variants: `width` (the base width, 64 in
arcface_torch: IResNet stage widths width·{1,2,4,8}; MobileFaceNet's fixed 64/128/256/512
constants become width·{1,2,4,8}) and the per-stage block counts.
"""
import torch
from torch import nn

IRESNET_LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    # bn1 -> conv1 -> bn2 -> prelu -> conv2(stride) -> bn3, + identity/downsample
    def __init__(self, cin, cout, stride, downsample):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(nn.Module):
    def __init__(self, layers, num_features=512, width=64, dropout=0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        cin = width
        for i, n in enumerate(layers):
            cout = width << i
            blocks = []
            for b in range(n):
                stride = 2 if b == 0 else 1
                ds = None
                if b == 0 and (stride != 1 or cin != cout):
                    ds = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(cout, eps=1e-5))
                blocks.append(IBasicBlock(cin, cout, stride, ds))
                cin = cout
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(cin * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


class ConvBlock(nn.Module):  # conv -> BN -> PReLU, as layers.0/1/2
    def __init__(self, cin, cout, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.PReLU(cout))

    def forward(self, x):
        return self.layers(x)


class LinearBlock(nn.Module):  # conv -> BN
    def __init__(self, cin, cout, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.layers(x)


class DepthWise(nn.Module):
    def __init__(self, cin, cout, residual, stride, groups):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, groups),
            ConvBlock(groups, groups, 3, stride, 1, groups=groups),
            LinearBlock(groups, cout))

    def forward(self, x):
        y = self.layers(x)
        return x + y if self.residual else y


class Residual(nn.Module):
    def __init__(self, c, n, groups):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(c, c, True, 1, groups) for _ in range(n)])

    def forward(self, x):
        return self.layers(x)


class GDC(nn.Module):
    def __init__(self, channels, num_features):
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(channels, channels, 7, 1, 0, groups=channels),
            nn.Flatten(),
            nn.Linear(channels, num_features, bias=False),
            nn.BatchNorm1d(num_features))

    def forward(self, x):
        return self.layers(x)


class MobileFaceNet(nn.Module):
    def __init__(self, num_features=512, blocks=(1, 4, 6, 2), scale=2, width=64):
        super().__init__()
        w = width
        c1, c2 = w * scale, 2 * w * scale
        self.layers = nn.ModuleList()
        self.layers.append(ConvBlock(3, c1, 3, 2, 1))
        if blocks[0] == 1:
            self.layers.append(ConvBlock(c1, c1, 3, 1, 1, groups=w))
        else:
            self.layers.append(Residual(c1, blocks[0], 2 * w))
        self.layers.extend([
            DepthWise(c1, c1, False, 2, 2 * w),
            Residual(c1, blocks[1], 2 * w),
            DepthWise(c1, c2, False, 2, 4 * w),
            Residual(c2, blocks[2], 4 * w),
            DepthWise(c2, c2, False, 2, 8 * w),
            Residual(c2, blocks[3], 4 * w),
        ])
        self.conv_sep = ConvBlock(c2, 8 * w)
        self.features = GDC(8 * w, num_features)

    def forward(self, x):
        for f in self.layers:
            x = f(x)
        return self.features(self.conv_sep(x))


def build(arch, num_features=512, width=64, blocks=None):
    if arch in IRESNET_LAYERS:
        return IResNet(blocks or IRESNET_LAYERS[arch], num_features, width)
    if arch == "mbf":
        return MobileFaceNet(num_features, blocks or (1, 4, 6, 2), 2, width)
    if arch == "mbf_large":
        return MobileFaceNet(num_features, blocks or (2, 8, 12, 4), 4, width)
    raise ValueError("unknown architecture %r" % arch)


if __name__ == "__main__":
    for name in list(IRESNET_LAYERS) + ["mbf", "mbf_large"]:
        m = build(name)
        n = sum(p.numel() for p in m.parameters())
        print(name, n, len(m.state_dict()))
