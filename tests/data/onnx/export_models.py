"""export_models.py OUTDIR: the ONNX models test_onnx checks, exported by
torch.onnx.export (training mode, opset 14, batch 2 at 3x32x32) into OUTDIR,
with OUTDIR/manifest.json: {name: {"params": PyTorch's parameter count,
"classes": output features, "file": ...}}.  Exits 77 when torch or
torchvision cannot be imported (the test then skips).

The models: torchvision's ResNet-18, MobileNetV2, MobileNetV3-small,
DenseNet-121 and SqueezeNet 1.1 (weights=None); an NB-201 cell network as
NAS-Bench-201 defines it (stem, 3 stages of cells, residual reductions,
BN-ReLU-GAP-linear head); a small net ending in Softmax (an op the importer
refuses); and a conv-BN-ReLU net exported in eval mode, where torch folds
the BN into the conv."""
import json
import os
import sys
import time
import warnings

try:
    import torch
    import torch.nn as nn
    import torchvision
except Exception as e:  # noqa: BLE001 - any import failure means skip
    print(f"torch/torchvision unavailable: {e}")
    sys.exit(77)

warnings.filterwarnings("ignore")

NB201_CELL = ("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|"
              "+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
NB201_C, NB201_N, NB201_CLASSES = 8, 2, 10


class ReLUConvBN(nn.Module):
    def __init__(self, cin, cout, k, stride, pad):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(inplace=False),
                                nn.Conv2d(cin, cout, k, stride, pad,
                                          bias=False),
                                nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.op(x)


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def nb201_op(name, c):
    return {"none": lambda: Zero(),
            "skip_connect": lambda: nn.Identity(),
            "nor_conv_1x1": lambda: ReLUConvBN(c, c, 1, 1, 0),
            "nor_conv_3x3": lambda: ReLUConvBN(c, c, 3, 1, 1),
            "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1,
                                                 count_include_pad=False),
            }[name]()


class Cell(nn.Module):
    def __init__(self, genotype, c):
        super().__init__()
        nodes = [n.strip("|").split("|") for n in genotype.split("+")]
        self.edges = nn.ModuleList()
        self.src = []
        for dst, node in enumerate(nodes, 1):
            for edge in node:
                op, src = edge.split("~")
                self.edges.append(nb201_op(op, c))
                self.src.append((int(src), dst))

    def forward(self, x):
        nodes = [x]
        k = 0
        for dst in range(1, 4):
            terms = []
            while k < len(self.src) and self.src[k][1] == dst:
                terms.append(self.edges[k](nodes[self.src[k][0]]))
                k += 1
            nodes.append(sum(terms[1:], terms[0]))
        return nodes[3]


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.a = ReLUConvBN(cin, cout, 3, 2, 1)
        self.b = ReLUConvBN(cout, cout, 3, 1, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2, 0),
                                      nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        return self.b(self.a(x)) + self.shortcut(x)


class NB201Net(nn.Module):
    def __init__(self, genotype, c, n, classes):
        super().__init__()
        layers = [nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)]
        for stage in range(3):
            if stage:
                layers.append(ResBlock(c, 2 * c))
                c *= 2
            layers += [Cell(genotype, c) for _ in range(n)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c, classes))

    def forward(self, x):
        return self.head(self.body(x))


def softmax_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 30 * 30, 10), nn.Softmax(dim=1))


def folded_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False),
                         nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def main():
    out = sys.argv[1]
    tv = torchvision.models
    models = {
        "resnet18": (lambda: tv.resnet18(weights=None), True),
        "mobilenet_v2": (lambda: tv.mobilenet_v2(weights=None), True),
        "mobilenet_v3_small": (lambda: tv.mobilenet_v3_small(weights=None),
                               True),
        "densenet121": (lambda: tv.densenet121(weights=None), True),
        "squeezenet1_1": (lambda: tv.squeezenet1_1(weights=None), True),
        "nb201": (lambda: NB201Net(NB201_CELL, NB201_C, NB201_N,
                                   NB201_CLASSES), True),
        "softmax": (softmax_net, True),
        "folded": (folded_net, False),
    }
    only = sys.argv[2:]
    manifest = {"nb201": {"cell": NB201_CELL, "channels": NB201_C,
                          "cells_per_stage": NB201_N}}
    t0 = time.time()
    done = 0
    for name, (make, training) in models.items():
        if only and name not in only:
            continue
        torch.manual_seed(0)
        model = make()
        model.train(training)
        x = torch.randn(2, 3, 32, 32)
        path = os.path.join(out, name + ".onnx")
        mode = (torch.onnx.TrainingMode.TRAINING if training
                else torch.onnx.TrainingMode.EVAL)
        torch.onnx.export(model, x, path, training=mode, opset_version=14,
                          do_constant_folding=not training)
        entry = manifest.setdefault(name, {})
        entry["file"] = path
        entry["params"] = sum(p.numel() for p in model.parameters())
        entry["classes"] = int(model(x).shape[1])
        done += 1
    manifest["export_seconds"] = time.time() - t0
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"exported {done} models in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
