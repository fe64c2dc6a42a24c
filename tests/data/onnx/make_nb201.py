"""make_nb201.py OUTDIR: the small NAS-Bench-201 exports test_onnx_nb201
reads (committed under tests/data/onnx/nb201/, with OUTDIR/manifest.json
saying what each file is).  The networks are export_models.py's NB201Net
(NAS-Bench-201's skeleton: stem conv+BN, 3 stages of N cells, residual
reductions, BN-ReLU-GAP-linear head), exported by torch.onnx.export in
training mode (opset 14, batch 2) at small C and N so the files stay small;
the "eval_*" files are exported in eval mode (model.eval(),
TrainingMode.EVAL, constant folding on: torch folds every BN that follows
a conv into the conv, which gets a bias; the head's BN, after an add,
stays a BatchNormalization node), with "bn_folded" and the folded graph's
parameter count ("graph_params") in the manifest beside PyTorch's
("params", BN included); the "miss_*" files are near-misses the matcher
must not recognise (a reduction to 3C instead of 2C, a ReLU after the
stem's BN, stages of different depths, cells that differ, the last also
exported in eval mode, and a graph partly folded: stage 2's ReLU-conv-BN
edges and reduction as ReLU-conv with a bias and no BN, the rest with BN).
torch is needed only here, never
when the tests run.  Run by hand with Debian's python3 (python3-torch):
    /usr/bin/python3 tests/data/onnx/make_nb201.py tests/data/onnx/nb201"""
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_models as em  # noqa: E402  (exits 77 without torch)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

warnings.filterwarnings("ignore")

# name: (cell, C, N, classes, input (C, H, W)); recognised as nb201.
MATCHES = {
    "mixed": (em.NB201_CELL, 4, 2, 10, (3, 32, 32)),
    "all_skip": ("|skip_connect~0|+|skip_connect~0|skip_connect~1|"
                 "+|skip_connect~0|skip_connect~1|skip_connect~2|",
                 4, 2, 5, (3, 16, 16)),
    "nones": ("|none~0|+|nor_conv_3x3~0|none~1|"
              "+|skip_connect~0|none~1|avg_pool_3x3~2|", 6, 1, 100,
              (3, 16, 16)),
    "pools": ("|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|"
              "+|nor_conv_3x3~0|skip_connect~1|nor_conv_1x1~2|", 4, 3, 10,
              (3, 24, 24)),
    "convs": ("|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
              "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|", 4, 1, 10,
              (1, 16, 16)),
    "skip_last": ("|nor_conv_3x3~0|+|none~0|none~1|"
                  "+|none~0|none~1|skip_connect~2|", 4, 1, 10,
                  (3, 16, 16)),
}

# name: (cell, C, N, classes, input); exported in eval mode (BN folded).
EVAL_MATCHES = {
    "eval_mixed": (em.NB201_CELL, 4, 2, 10, (3, 32, 32)),
    "eval_all_skip": (MATCHES["all_skip"][0], 4, 1, 5, (3, 16, 16)),
    "eval_nones": (MATCHES["nones"][0], 6, 1, 100, (3, 16, 16)),
    "eval_convs": (MATCHES["convs"][0], 4, 1, 10, (3, 16, 16)),
}

CELL = em.NB201_CELL


class Wider(em.NB201Net):
    """The reductions go to 3C: not NAS-Bench-201's channel doubling."""

    def __init__(self, genotype, c, n, classes):
        nn.Module.__init__(self)
        layers = [nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)]
        for stage in range(3):
            if stage:
                layers.append(em.ResBlock(c, 3 * c))
                c *= 3
            layers += [em.Cell(genotype, c) for _ in range(n)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c, classes))


def stem_relu():
    """An extra ReLU after the stem's BN."""
    net = em.NB201Net(CELL, 4, 1, 10)
    net.body[1] = nn.Sequential(net.body[1], nn.ReLU())
    return net


def uneven():
    """Stages of 1, 2 and 1 cells."""
    net = em.NB201Net(CELL, 4, 1, 10)
    layers = list(net.body)
    layers.insert(4, em.Cell(CELL, 8))
    net.body = nn.Sequential(*layers)
    return net


def mixed_cells():
    """The second stage's cell differs from the others."""
    net = em.NB201Net(CELL, 4, 1, 10)
    net.body[4] = em.Cell("|nor_conv_1x1~0|+|nor_conv_1x1~0|skip_connect~1|"
                          "+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|", 8)
    return net


def fold_by_hand(module):
    """Each ReLU-conv-BN under module as ReLU-conv with a bias and no BN:
    what an eval-mode export makes of it, here in a training-mode one."""
    for m in module.modules():
        if isinstance(m, em.ReLUConvBN):
            conv = m.op[1]
            m.op = nn.Sequential(
                nn.ReLU(), nn.Conv2d(conv.in_channels, conv.out_channels,
                                     conv.kernel_size, conv.stride,
                                     conv.padding, bias=True))


def partly_folded():
    """Stage 2 (its reduction and cells) folded, the rest with BN."""
    net = em.NB201Net(CELL, 4, 1, 10)
    fold_by_hand(net.body[3])
    fold_by_hand(net.body[4])
    return net


MISSES = {
    "miss_wider": lambda: Wider(CELL, 4, 1, 10),
    "miss_stem_relu": stem_relu,
    "miss_uneven": uneven,
    "miss_mixed_cells": mixed_cells,
    "miss_partly_folded": partly_folded,
}

# Near-misses exported in eval mode.
EVAL_MISSES = {
    "miss_eval_mixed_cells": mixed_cells,
}


def export(model, shape, path, training=True):
    torch.manual_seed(0)
    model.train(training)
    mode = (torch.onnx.TrainingMode.TRAINING if training
            else torch.onnx.TrainingMode.EVAL)
    torch.onnx.export(model, torch.randn(2, *shape), path, training=mode,
                      opset_version=14, do_constant_folding=not training)
    return sum(p.numel() for p in model.parameters())


def folded_params(model):
    """The parameters of model's eval-mode export: each BN that follows a
    conv (all but the head's) becomes the conv's bias, C values for its
    2C."""
    head_bn = model.head[0]
    return sum(p.numel() for p in model.parameters()) - sum(
        m.num_features for m in model.modules()
        if isinstance(m, nn.BatchNorm2d) and m is not head_bn)


def main():
    out = sys.argv[1]
    manifest = {}
    for name, (cell, c, n, classes, shape) in MATCHES.items():
        torch.manual_seed(0)
        net = em.NB201Net(cell, c, n, classes)
        if shape[0] != 3:
            net.body[0] = nn.Conv2d(shape[0], c, 3, 1, 1, bias=False)
        params = export(net, shape, os.path.join(out, name + ".onnx"))
        manifest[name] = {"cell": cell, "channels": c, "cells_per_stage": n,
                          "num_classes": classes, "input_shape": shape,
                          "params": params}
    for name, (cell, c, n, classes, shape) in EVAL_MATCHES.items():
        torch.manual_seed(0)
        net = em.NB201Net(cell, c, n, classes)
        params = export(net, shape, os.path.join(out, name + ".onnx"),
                        training=False)
        manifest[name] = {"cell": cell, "channels": c, "cells_per_stage": n,
                          "num_classes": classes, "input_shape": shape,
                          "params": params, "bn_folded": True,
                          "graph_params": folded_params(net)}
    for name, make in MISSES.items():
        torch.manual_seed(0)
        params = export(make(), (3, 16, 16), os.path.join(out, name + ".onnx"))
        manifest[name] = {"recognized": None, "params": params}
    for name, make in EVAL_MISSES.items():
        torch.manual_seed(0)
        params = export(make(), (3, 16, 16), os.path.join(out, name + ".onnx"),
                        training=False)
        manifest[name] = {"recognized": None, "params": params,
                          "bn_folded": True}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote %d models to %s" % (len(manifest), out))


if __name__ == "__main__":
    main()
