#!/usr/bin/python3
"""test_cells_torch.py: archeval's nb101 and darts lowerings held to the
PyTorch references (tests/ref/nb101_torch.py, darts_torch.py, written from
nasbench's model_builder.py and DARTS' model.py independently of the C
code) and both held to the published counts (issue 12, item 2).

1. Every cell of tests/data/cells/published.json: the reference's
   parameter count matches the published count at its stated precision.
2. The same cells and random ones (40 random NAS-Bench-101 cells, valid
   after pruning; 12 random DARTS genotypes at small C and depth, `none`
   ops and partial concats included): tests/ref/cell_params (archeval's
   lowering) gives exactly the reference's count, and exactly the MACs
   the reference's forward pass performs (counted by hooks on its convs
   and linears on a 32x32 image), which holds every stride, padding and
   channel split of the lowering to the reference's.

Exits 77 where torch is missing; prints one line per comparison and
"N passed, M failed"."""
import json
import os
import random
import subprocess
import sys

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover
    print("test_cells_torch: skipped, PyTorch missing (%s)" % e)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import darts_torch  # noqa: E402
import nb101_torch  # noqa: E402

SRC = os.environ.get("AE_SRCDIR", os.path.join(HERE, "../.."))
NB101_OPS = ["conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"]
DARTS_OPS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
             "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


def find_helper():
    build = os.environ.get("AE_BUILDDIR")
    cands = [os.path.join(build, "tests/ref/cell_params")] if build else []
    cands.append(os.path.join(HERE, "../../build/tests/ref/cell_params"))
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    return None


def matches(count, published, precision):
    if precision == "exact":
        return count == published
    if precision == "truncated_0.01M":
        return count // 10000 * 10000 == published
    if precision == "rounded_0.1M":
        return round(count / 1e5) * 100000 == published
    raise ValueError(precision)


def random_nb101(rng):
    """A random cell that stays valid after pruning, at most 9 edges."""
    while True:
        n = rng.randint(3, 7)
        m = [[0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                m[i][j] = int(rng.random() < 0.35)
        if sum(map(sum, m)) > 9:
            continue
        ops = ["input"] + [rng.choice(NB101_OPS) for _ in range(n - 2)] + \
              ["output"]
        pruned = nb101_torch.prune(m, ops)
        if pruned is None or pruned[0].sum() > 9:
            continue
        return {"type": "nb101", "matrix": m, "ops": ops,
                "stem_channels": rng.choice([8, 16, 128]),
                "stacks": rng.randint(1, 3),
                "cells_per_stack": rng.randint(1, 2)}


def random_darts(rng):
    def cell():
        return [[rng.choice(DARTS_OPS), rng.randint(0, k // 2 + 1)]
                for k in range(8)]

    def concat():
        return sorted(rng.sample([2, 3, 4, 5], rng.randint(1, 4)))
    return {"type": "darts", "channels": rng.choice([4, 6, 8]),
            "layers": rng.randint(1, 8),
            "genotype": {"normal": cell(), "normal_concat": concat(),
                         "reduce": cell(), "reduce_concat": concat()}}


def torch_net(arch):
    if arch["type"] == "nb101":
        return nb101_torch.Network(
            arch["matrix"], arch["ops"], arch.get("stem_channels", 128),
            arch.get("stacks", 3), arch.get("cells_per_stack", 3))
    return darts_torch.NetworkCIFAR(arch["genotype"],
                                    arch.get("channels", 36),
                                    arch.get("layers", 20))


def torch_count(arch):
    return sum(p.numel() for p in torch_net(arch).parameters())


def torch_macs(arch):
    """Runs the reference on one CIFAR-shaped image (its shapes must agree)
    and counts multiply-accumulates as docs/scorecard.md does: a conv
    k*k*c_in/groups per output element, a linear in*out plus out for its
    bias; None unless the output is 10 logits."""
    total = [0]

    def conv_hook(m, inputs, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        total[0] += k * m.in_channels // m.groups * out.numel()

    def linear_hook(m, inputs, out):
        total[0] += (m.in_features + (m.bias is not None)) * m.out_features

    net = torch_net(arch).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(linear_hook)
    with torch.no_grad():
        y = net(torch.randn(1, 3, 32, 32))
    return total[0] if tuple(y.shape) == (1, 10) else None


def main():
    passed = failed = 0

    def record(ok, what):
        nonlocal passed, failed
        print(("ok   " if ok else "FAIL ") + what)
        if ok:
            passed += 1
        else:
            failed += 1

    with open(os.path.join(SRC, "tests/data/cells/published.json")) as f:
        doc = json.load(f)
    archs = []
    for kind in ("nb101", "darts"):
        for cell in doc[kind]:
            if kind == "nb101":
                arch = {"type": "nb101", "matrix": cell["matrix"],
                        "ops": cell["ops"]}
            else:
                arch = {"type": "darts", "genotype": cell["genotype"]}
            n = torch_count(arch)
            record(matches(n, cell["published"], cell["precision"]),
                   "%s %s: torch %d, published %d (%s)" % (
                       kind, cell["name"], n, cell["published"],
                       cell["precision"]))
            archs.append((cell["name"], arch))
    rng = random.Random(12)
    for k in range(40):
        archs.append(("random nb101 %d" % k, random_nb101(rng)))
    for k in range(12):
        archs.append(("random darts %d" % k, random_darts(rng)))

    helper = find_helper()
    if not helper:
        print("test_cells_torch: tests/ref/cell_params is not built")
        return 1
    text = "".join(json.dumps(a) + "\n" for _, a in archs)
    out = subprocess.run([helper], input=text, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    if len(out) != len(archs):
        record(False, "cell_params answered %d lines for %d architectures"
               % (len(out), len(archs)))
    for (name, arch), line in zip(archs, out):
        n = torch_count(arch)
        if line.startswith("error"):
            record(False, "%s: archeval refused it: %s (%s)"
                   % (name, line, json.dumps(arch)))
            continue
        ours, our_macs = (int(v) for v in line.split())
        record(ours == n, "%s: archeval %d, torch %d" % (name, ours, n))
        macs = torch_macs(arch)
        record(our_macs == macs, "%s: MACs archeval %d, torch %s"
               % (name, our_macs, macs))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
