#!/usr/bin/python3
"""darts_torch.py: DARTS' evaluation network (NetworkCIFAR) in PyTorch,
written from quark0/darts (cnn/model.py, cnn/operations.py) independently of
archeval's C lowering (api/lower.c), to hold its parameter counts to.

The skeleton: stem conv3x3 (no bias) to 3C + BN; `layers` cells, the ones
at layers//3 and 2*layers//3 reduction cells with doubled channels; each
cell preprocesses its two inputs (ReLUConvBN 1x1, or FactorizedReduce for
the first when the previous cell reduced), runs 4 nodes of 2 ops each
(stride 2 on the cell inputs in a reduction cell) and concatenates
`concat`; global average pool; linear.  No auxiliary head, no drop path
(parameter-free).  BatchNorm is affine throughout (the evaluation network's
affine=True).  Ops: sep_conv = twice (ReLU, depthwise kxk, pointwise, BN);
dil_conv = ReLU, depthwise kxk dilation 2, pointwise, BN; pools 3x3 pad 1
(avg without counting the padding); skip_connect = identity, or
FactorizedReduce at stride 2; none = zero.

    darts_torch.py SPEC.json   prints the parameter count of each spec (a
    JSON list of {"normal": [[op, input] x 8], "normal_concat": [...],
    "reduce": [...], "reduce_concat": [...], optional "channels" (36),
    "layers" (20), "num_classes" (10)}).
"""
import json
import sys

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    def __init__(self, cin, cout, k, stride, pad):
        super().__init__(nn.ReLU(), nn.Conv2d(cin, cout, k, stride, pad,
                                              bias=False), nn.BatchNorm2d(cout))


class FactorizedReduce(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(cin, cout // 2, 1, 2, 0, bias=False)
        self.conv_2 = nn.Conv2d(cin, cout // 2, 1, 2, 0, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x),
                                  self.conv_2(x[:, :, 1:, 1:])], 1))


def dw_pw(c, k, stride, pad, dilation):
    return [nn.ReLU(),
            nn.Conv2d(c, c, k, stride, pad, dilation, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)]


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


def make_op(name, c, stride):
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    k = 3 if name.endswith("3x3") else 5
    if name.startswith("sep_conv"):
        return nn.Sequential(*dw_pw(c, k, stride, k // 2, 1),
                             *dw_pw(c, k, 1, k // 2, 1))
    if name.startswith("dil_conv"):
        return nn.Sequential(*dw_pw(c, k, stride, k - 1, 2))
    raise ValueError("unknown op " + name)


class Cell(nn.Module):
    def __init__(self, pairs, concat, cpp, cp, c, reduction, reduction_prev):
        super().__init__()
        self.pre0 = (FactorizedReduce(cpp, c) if reduction_prev
                     else ReLUConvBN(cpp, c, 1, 1, 0))
        self.pre1 = ReLUConvBN(cp, c, 1, 1, 0)
        self.pairs, self.concat = pairs, list(concat)
        self.ops = nn.ModuleList(
            make_op(op, c, 2 if reduction and idx < 2 else 1)
            for op, idx in pairs)

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(4):
            a, b = self.pairs[2 * i][1], self.pairs[2 * i + 1][1]
            states.append(self.ops[2 * i](states[a]) +
                          self.ops[2 * i + 1](states[b]))
        return torch.cat([states[i] for i in self.concat], 1)


class NetworkCIFAR(nn.Module):
    def __init__(self, geno, c=36, layers=20, num_classes=10):
        super().__init__()
        cc = 3 * c
        self.stem = nn.Sequential(nn.Conv2d(3, cc, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cc))
        cpp, cp, cc = cc, cc, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in [layers // 3, 2 * layers // 3]
            if reduction:
                cc *= 2
            kind = "reduce" if reduction else "normal"
            concat = geno.get(kind + "_concat", [2, 3, 4, 5])
            self.cells.append(Cell(geno[kind], concat, cpp, cp, cc, reduction,
                                   reduction_prev))
            reduction_prev = reduction
            cpp, cp = cp, len(concat) * cc
        self.classifier = nn.Linear(cp, num_classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(s1.mean((2, 3)))


def count(spec):
    net = NetworkCIFAR(spec, spec.get("channels", 36), spec.get("layers", 20),
                       spec.get("num_classes", 10))
    return sum(p.numel() for p in net.parameters())


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        for spec in json.load(f):
            print(count(spec))
