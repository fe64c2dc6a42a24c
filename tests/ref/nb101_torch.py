#!/usr/bin/python3
"""nb101_torch.py: NAS-Bench-101's network in PyTorch, written from the
benchmark's own TensorFlow code (google-research/nasbench,
nasbench/lib/model_builder.py, base_ops.py, model_spec.py) independently of
archeval's C lowering (api/lower.c), to hold its parameter counts to.

The skeleton: stem conv3x3-bn-relu to 128 channels; 3 stacks of 3 cells;
before every stack but the first a 2x2 max-pool (stride 2, "same") and the
channels doubled; global average pool; dense (with bias).  A cell: the
matrix pruned of vertices not on an input-output path (ModelSpec._prune);
vertex channels from compute_vertex_channels; each interior vertex sums its
interior inputs (truncated to its channels) and a 1x1 conv-bn-relu
projection of the cell input when connected to it, then applies its op;
the output concatenates the vertices that feed it, plus a projection of
the input when the input feeds the output directly.  Convs have no bias;
BatchNorm has a scale and a shift (TF's defaults), so each counts 2 x C.

    nb101_torch.py SPEC.json   prints the parameter count of each spec
    (a JSON list of {"matrix", "ops", optional "stem_channels", "stacks",
    "cells_per_stack", "num_classes"}).
"""
import json
import sys

import numpy as np
import torch
from torch import nn


def prune(matrix, ops):
    """ModelSpec._prune: keep vertices reachable from the input and
    reaching the output; None when the output is unreachable."""
    m = np.array(matrix, dtype=int)
    n = m.shape[0]
    from_in, frontier = {0}, [0]
    while frontier:
        v = frontier.pop()
        for w in range(v + 1, n):
            if m[v, w] and w not in from_in:
                from_in.add(w)
                frontier.append(w)
    to_out, frontier = {n - 1}, [n - 1]
    while frontier:
        v = frontier.pop()
        for u in range(0, v):
            if m[u, v] and u not in to_out:
                to_out.add(u)
                frontier.append(u)
    if n - 1 not in from_in:
        return None
    keep = sorted(from_in & to_out)
    return m[np.ix_(keep, keep)], [ops[k] for k in keep]


def vertex_channels(cin, cout, m):
    n = m.shape[0]
    vc = [0] * n
    vc[0], vc[n - 1] = cin, cout
    if n == 2:
        return vc
    in_degree = np.sum(m[1:], axis=0)
    interior, correction = cout // in_degree[n - 1], cout % in_degree[n - 1]
    for v in range(1, n - 1):
        if m[v, n - 1]:
            vc[v] = interior
            if correction:
                vc[v] += 1
                correction -= 1
    for v in range(n - 3, 0, -1):
        if not m[v, n - 1]:
            for dst in range(v + 1, n - 1):
                if m[v, dst]:
                    vc[v] = max(vc[v], vc[dst])
    return vc


class ConvBnRelu(nn.Sequential):
    def __init__(self, cin, cout, k):
        super().__init__(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Cell(nn.Module):
    def __init__(self, m, ops, cin, cout):
        super().__init__()
        self.m, self.ops_names = m, ops
        n = m.shape[0]
        self.vc = vertex_channels(cin, cout, m)
        self.proj = nn.ModuleDict()
        self.ops = nn.ModuleDict()
        for t in range(1, n - 1):
            if m[0, t]:
                self.proj[str(t)] = ConvBnRelu(cin, self.vc[t], 1)
            if ops[t] == "conv3x3-bn-relu":
                self.ops[str(t)] = ConvBnRelu(self.vc[t], self.vc[t], 3)
            elif ops[t] == "conv1x1-bn-relu":
                self.ops[str(t)] = ConvBnRelu(self.vc[t], self.vc[t], 1)
            else:
                self.ops[str(t)] = nn.MaxPool2d(3, 1, 1)
        if m[0, n - 1]:
            self.proj[str(n - 1)] = ConvBnRelu(cin, cout, 1)

    def forward(self, x):
        m, n = self.m, self.m.shape[0]
        tensors, outs = [x], []
        for t in range(1, n - 1):
            ins = [tensors[s][:, :self.vc[t]] for s in range(1, t) if m[s, t]]
            if m[0, t]:
                ins.append(self.proj[str(t)](x))
            tensors.append(self.ops[str(t)](sum(ins)))
            if m[t, n - 1]:
                outs.append(tensors[t])
        if not outs:
            return self.proj[str(n - 1)](x)
        y = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
        if m[0, n - 1]:
            y = y + self.proj[str(n - 1)](x)
        return y


class Network(nn.Module):
    def __init__(self, matrix, ops, stem_channels=128, stacks=3,
                 cells_per_stack=3, num_classes=10):
        super().__init__()
        pruned = prune(matrix, ops)
        if pruned is None:
            raise ValueError("no path from input to output")
        m, ops = pruned
        layers = [ConvBnRelu(3, stem_channels, 3)]
        cin = c = stem_channels
        for stack in range(stacks):
            if stack > 0:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                c *= 2
            for _ in range(cells_per_stack):
                layers.append(Cell(m, ops, cin, c))
                cin = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


def count(spec):
    net = Network(spec["matrix"], spec["ops"],
                  spec.get("stem_channels", 128), spec.get("stacks", 3),
                  spec.get("cells_per_stack", 3), spec.get("num_classes", 10))
    return sum(p.numel() for p in net.parameters())


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        for spec in json.load(f):
            print(count(spec))
