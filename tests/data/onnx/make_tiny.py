"""make_tiny.py OUTDIR: the two small ONNX files test_models.py uploads
without torch (committed as tests/data/onnx/tiny_train.onnx and
tiny_eval.onnx): conv(3->4, 3x3) - BN - ReLU - conv(4->8, 3x3, stride 2) -
BN - ReLU - GAP - linear(8->10) at 3x8x8, exported with opset 14 in
training mode (BN kept) and in eval mode (torch folds BN into the convs,
which the importer accepts with a warning).  Run by hand with Debian's
python3 (torch) when they must change."""
import os
import sys
import warnings

import torch
import torch.nn as nn

warnings.filterwarnings("ignore")


def tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False),
                         nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    model = tiny()
    for training in (True, False):
        model.train(training)
        mode = (torch.onnx.TrainingMode.TRAINING if training
                else torch.onnx.TrainingMode.EVAL)
        path = os.path.join(
            out, "tiny_%s.onnx" % ("train" if training else "eval"))
        torch.onnx.export(model, torch.randn(2, 3, 8, 8), path,
                          training=mode, opset_version=14,
                          do_constant_folding=not training)
    print(sum(p.numel() for p in model.parameters()), "parameters")


if __name__ == "__main__":
    main()
