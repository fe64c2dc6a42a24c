"""make_seeds.py OUTDIR: writes the seed corpus of tests/fuzz/fuzz_onnx:
tiny torch exports (a few channels at 1x3x6x6, so each file is a few KB)
that between them use every op the importer maps, including the shape
arithmetic of x.view(x.size(0), -1), plus a copy of a few of Debian's ONNX
node tests.  Run by hand when the importer learns an op; the corpus is
committed."""
import os
import shutil
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

warnings.filterwarnings("ignore")


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Conv2d(c, 2, 1)
        self.fc2 = nn.Conv2d(2, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class Mobile(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4)
        self.se = SE(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = F.relu6(self.bn(self.a(x)))
        x = F.hardswish(self.dw(x))
        x = self.se(x)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(F.dropout(x.view(x.size(0), -1), 0.2, self.training))


class Dense(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 1)
        self.b = nn.Conv2d(5, 2, 3, padding=1)
        self.w = nn.Parameter(torch.randn(2 * 4 * 4, 3))

    def forward(self, x):
        y = torch.cat([x, F.leaky_relu(self.a(x), 0.1)], 1)
        y = torch.sigmoid(self.b(y)) + torch.tanh(self.b(y))
        y = F.max_pool2d(y, 3, 2, ceil_mode=True)
        y = F.avg_pool2d(y, 2, 1, padding=1, count_include_pad=True)
        return torch.matmul(torch.flatten(y, 1), self.w)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, model in (("mobile", Mobile()), ("dense", Dense())):
        for training in (True, False):
            model.train(training)
            mode = (torch.onnx.TrainingMode.TRAINING if training
                    else torch.onnx.TrainingMode.EVAL)
            path = os.path.join(out, f"{name}_{'train' if training else 'eval'}.onnx")
            torch.onnx.export(model, torch.randn(2, 3, 6, 6), path,
                              training=mode, opset_version=14,
                              do_constant_folding=not training)
    node = "/usr/share/libonnx-testdata/data/node"
    for t in ("test_maxpool_2d_ceil", "test_averagepool_2d_pads",
              "test_globalaveragepool", "test_flatten_axis1",
              "test_conv_with_strides_padding", "test_clip_example"):
        src = os.path.join(node, t, "model.onnx")
        if os.path.exists(src):
            shutil.copy(src, os.path.join(out, t + ".onnx"))


if __name__ == "__main__":
    main()
