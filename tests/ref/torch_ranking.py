#!/usr/bin/python3
"""torch_ranking.py: an independent PyTorch reference for the ranking metrics
of ranking.md §1-4, the yardstick the C engine's implementation is held to.

Given a network (archeval's lowered graph and its weights, as ae_torch_net
reads them), its inputs and the seed's random tensors (taken from the dump,
never drawn here), computes:
  expressivity.activation_patterns (+ _units, _saturated)   §1, SWAP
  expressivity.pattern_kernel_logdet                          §1, NASWOT
  expressivity.feature_isotropy, .feature_progressivity       §1, AZ-NAS
  convergence.feature_corr_lambda_min (+ _mean)               §2, MeCo
  convergence.jacobian_trainability                           §2, AZ-NAS
  generalization.kernel_regression_val_mse / _val_acc (given Theta)  §3
  proxies.synflow, grad_norm, snip, jacob_cov, zico           §4
The forward and backward passes run in float64 by default (the weights and
inputs are the dump's float32 values, promoted), so the reference compares
with the engine's float64 twin; --float32 runs them in float32.  Every
reduction that the spec puts in float64 (eigenvalues, Cholesky, synflow, K,
M) is float64 either way.  Usage and the dump format: tests/ref/README.md.

Choices where ranking.md leaves room (each follows the named paper's code):
- "ReLU-family"/"piecewise-linear unit" (activation_patterns,
  pattern_kernel_logdet): act nodes whose function is piecewise linear
  with kinks: relu and leaky_relu (kink 0), relu6 (0 and 6), hardswish and
  hardsigmoid (-3 and 3).  The identity activation has no kink, so it has
  no units (SWAP and NASWOT hook ReLU modules only).  A unit is one
  element of the activation's per-sample output (every channel and
  position); each of its kinks gives one binary code, input > kink (for
  relu and leaky_relu the same as output > 0), and every such kink-bit
  counts as a unit.
- activation_patterns: the distinct patterns are counted over the union of
  all units of all activations (SWAP concatenates every layer's units), on
  the first min(16, B) samples; each repeat is its own weight file.
- feature_corr_lambda_min: "the first sample alone" is a forward pass of a
  batch of that one sample, so BatchNorm uses that sample's statistics over
  H x W (MeCo's code feeds single samples).  The 4-D nodes are every node
  of per-sample rank 3 except the input, zero nodes and identity nodes
  (every identity of the lowered graph is an alias of its input; the tensor
  it aliases is counted once, at its own node).  A channel has zero
  variance when its centred sum of squares over H x W is exactly 0 (in the
  pass's dtype); its row and column of the correlation matrix are 0,
  diagonal included (MeCo zeroes the NaNs of torch.corrcoef).
- feature_isotropy: the covariance is divided by B*H*W (AZ-NAS; p does not
  depend on it).  A block output whose covariance has trace 0 makes p 0/0:
  the metric is null with a warning.
- jacobian_trainability: g_in = the vector-Jacobian product of F_l with
  respect to F_{l-1} through the one forward pass (autograd.grad, as AZ-NAS),
  i.e. every path from F_{l-1} to F_l; for the sequential skeletons of
  nb201/nb101/darts this is block l alone.  A block output that is the same
  tensor as the previous one (an identity cell) has g_in = g_out: -inf.  A
  block output not connected to the previous one (a zero cell, or one
  downstream of it) has g_in = 0, sigma = 0, score 2 - 1e6.  Pixel-unshuffle
  by the factor H_in / H_out (torch's channel order c*r*r + i*r + j; sigma
  does not depend on the channel order).
- kernel regression: the jitter is eps * tr(Theta_TT) / n_T, first none, then
  eps = 1e-10 doubling, capped at 1e-4 (gpu/analytic/linalg.c's rule);
  argmax ties go to the lowest class index.
- jacob_cov: J is the gradient of the sum of the whole batch's logits with
  respect to the batch (NASWOT v1's y.backward(ones)): with train-mode BN a
  sample's row includes the other samples' paths through the statistics.
  np.corrcoef's rows; a constant row makes the metric NaN (null).
- grad_norm, snip, zico, synflow: "conv and linear weights" are the weight
  tensors of conv and linear nodes, not their biases (zero-cost-nas and
  ZiCo read layer.weight.grad).  CE is the mean over the batch.
- zico: a layer whose sum is 0 (no weight with non-zero deviation, or every
  mean 0) adds nothing, as ZiCo's code does (it skips log 0); the
  deviation's zero test is exact.
- synflow: BN nodes removed, every parameter (weights, linear biases) made
  absolute, float64 whatever --float32 says, input one all-ones sample.
Non-finite values are reported as null with a warning, never as numbers.

Exit status: 0 when every value of every cell's expected.json (the C
engine's values, when the dump has one) is within the tolerance, 1 when one
is not, 77 when torch or the dump is missing.
"""
import json
import math
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    print("torch_ranking: PyTorch missing (%s)" % e)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ae_torch_net import Net, read_f32  # noqa: E402

F64 = torch.float64
# Each piecewise-linear activation's kinks (PyTorch's definitions).
KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "relu6": (0.0, 6.0),
         "hardswish": (-3.0, 3.0), "hardsigmoid": (-3.0, 3.0)}


def finite_or_none(v, name, warnings):
    """v as a float, or None with a warning when it is not finite."""
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):
        warnings.append("%s: not finite (%r)" % (name, v))
        return None
    return v


# ---- the network's structure -------------------------------------------

def pl_units(net):
    """The act nodes whose function is piecewise linear."""
    return [k for k, nd in enumerate(net.nodes)
            if nd["op"] == "act" and nd["act"] in KINKS]


def kink_codes(net, acts, k, b):
    """The binary codes (b x units, one column block per kink) of act node
    k: its input > the kink."""
    nd = net.nodes[k]
    z = acts[nd["inputs"][0]].reshape(b, -1)
    return torch.cat([z > t for t in KINKS[nd["act"]]], dim=1)


def four_d_nodes(net):
    """The 4-D nodes of ranking.md §0, each tensor once: per-sample rank 3,
    not the input, not a zero node, not an identity (an alias)."""
    return [k for k, nd in enumerate(net.nodes)
            if len(nd["shape"]) == 3 and
            nd["op"] not in ("input", "zero", "identity")]


def nb201_layout_blocks(net, cells_per_stage=5):
    """Block outputs of a full nb201 net from its layout when graph.json has
    no "blocks": stem conv, stem BN, then 3 stages of cells_per_stage cells
    of n nodes each with a 9-node reduction block before stages 1 and 2,
    and a 4-node head.  Checks what it assumes; None when it does not fit."""
    nodes = net.nodes
    n_cell = (len(nodes) - 1 - 2 - 2 * 9 - 4) / (3 * cells_per_stage)
    if n_cell != int(n_cell) or n_cell < 1:
        return None
    n_cell = int(n_cell)
    if nodes[1]["op"] != "conv" or nodes[2]["op"] != "batch_norm":
        return None
    blocks, at = [2], 3
    for stage in range(3):
        if stage:
            at += 9
            if nodes[at - 1]["op"] != "add":
                return None
            blocks.append(at - 1)
        for _ in range(cells_per_stage):
            at += n_cell
            blocks.append(at - 1)
    if at + 4 != len(nodes) or nodes[-1]["op"] != "linear":
        return None
    return blocks


def graph_rule_blocks(net):
    """ranking.md §0 for graph/onnx: every add (or concat) with two or more
    live inputs (not zero nodes), plus the first and last 4-D node, in
    topological order."""
    four = four_d_nodes(net)
    if not four:
        return []
    picked = {four[0], four[-1]}
    for k, nd in enumerate(net.nodes):
        if nd["op"] in ("add", "concat") and len(nd["shape"]) == 3:
            live = [i for i in nd["inputs"] if net.nodes[i]["op"] != "zero"]
            if len(live) >= 2:
                picked.add(k)
    return sorted(picked)


def block_outputs(net, warnings):
    """graph.json's "blocks" when present; else the nb201 layout; else the
    graph rule (with a warning)."""
    if "blocks" in net.graph:
        return list(net.graph["blocks"])
    kind = net.graph.get("type")
    if kind in (None, "nb201"):
        b = nb201_layout_blocks(net, net.graph.get("cells_per_stage", 5))
        if b is not None:
            if kind is None:
                warnings.append("blocks: taken from the nb201 layout "
                                "(graph.json has no \"blocks\")")
            return b
    warnings.append("blocks: graph.json has no \"blocks\"; the graph rule "
                    "of ranking.md §0")
    return graph_rule_blocks(net)


# ---- §1 expressivity ---------------------------------------------------

def activation_patterns(probe_nets, x, dtype=F64):
    """(mean distinct sign patterns, units, saturated) over the probe's
    weight draws (a list of Nets, one per repeat), on x's first 16
    samples."""
    xb = x[:16].to(dtype)
    b = xb.shape[0]
    weights = torch.tensor([1 << i for i in range(b)], dtype=torch.int64)
    counts, units = [], None
    for net in probe_nets:
        with torch.no_grad():
            acts = net.run(net.params(dtype), xb)
        codes = []
        for k in pl_units(net):
            bits = kink_codes(net, acts, k, b).to(torch.int64)
            codes.append((bits * weights[:, None]).sum(0))
        allc = torch.cat(codes) if codes else torch.zeros(0, dtype=torch.int64)
        counts.append(int(torch.unique(allc).numel()))
        units = int(allc.numel())
    mean = sum(counts) / len(counts)
    return mean, units, bool(mean > 0.9 * min(units, 2 ** b)), counts


def pattern_kernel_logdet(net, x, dtype=F64):
    """log det K (Cholesky) and K; None when K is not positive definite."""
    b = x.shape[0]
    with torch.no_grad():
        acts = net.run(net.params(dtype), x.to(dtype))
    K = torch.zeros(b, b, dtype=F64)
    for k in pl_units(net):
        c = kink_codes(net, acts, k, b).to(F64)
        K += c @ c.T + (1 - c) @ (1 - c).T
    L, info = torch.linalg.cholesky_ex(K)
    if int(info) != 0:
        return None, K
    return float(2 * torch.log(torch.diagonal(L)).sum()), K


def block_entropy(f):
    """H of one block output f (B x C x H x W); None when its covariance
    has trace 0."""
    b, c, h, w = f.shape
    m = f.permute(0, 2, 3, 1).reshape(b * h * w, c).to(F64)
    m = m - m.mean(0, keepdim=True)
    cov = m.T @ m / m.shape[0]
    s = torch.linalg.eigvalsh(cov).clamp(min=0)
    if float(s.sum()) == 0:
        return None
    p = s / s.sum()
    return float(-(p * torch.log(p + 1e-8)).sum())


def feature_isotropy(net, gauss, blocks, warnings, dtype=F64):
    """(isotropy, progressivity, [H_l]) on the Gaussian inputs."""
    with torch.no_grad():
        acts = net.run(net.params(dtype), gauss.to(dtype))
    hs = []
    for k in blocks:
        h = block_entropy(acts[k])
        if h is None:
            warnings.append("feature_isotropy: block output %d has zero "
                            "covariance" % k)
            return None, None, hs
        hs.append(h)
    iso = sum(hs)
    prog = min(hs[i] - hs[i - 1] for i in range(1, len(hs))) \
        if len(hs) > 1 else None
    return iso, prog, hs


# ---- §2 convergence ----------------------------------------------------

def corr_lambda_min(x):
    """Smallest eigenvalue of the C x C Pearson correlation of one sample's
    C x H x W tensor over its positions (float64; a zero-variance channel
    is a zero row and column)."""
    c = x.shape[0]
    m = x.reshape(c, -1).to(F64)
    m = m - m.mean(1, keepdim=True)
    ss = (m * m).sum(1)
    live = ss != 0
    corr = torch.zeros(c, c, dtype=F64)
    if bool(live.any()):
        z = m[live] / torch.sqrt(ss[live])[:, None]
        idx = torch.nonzero(live).reshape(-1)
        corr[idx[:, None], idx[None, :]] = z @ z.T
    return float(torch.linalg.eigvalsh(corr)[0])


def feature_corr_lambda_min(net, x, samples=8, dtype=F64):
    """(value on sample 0, mean over the first `samples` samples, per
    sample values); each sample runs alone."""
    four = four_d_nodes(net)
    per = []
    params = net.params(dtype)
    for i in range(min(samples, x.shape[0])):
        with torch.no_grad():
            acts = net.run(params, x[i:i + 1].to(dtype))
        per.append(sum(corr_lambda_min(acts[k][0]) for k in four))
    return per[0], sum(per) / len(per), per


def jacobian_trainability(net, gauss, blocks, rademacher, warnings,
                          dtype=F64):
    """Mean over consecutive block pairs of -sigma - 1/(sigma + 1e-6) + 2;
    None when a block is an identity.  rademacher: the flat g_out tensors,
    blocks 1..L-1 in order."""
    xg = gauss.to(dtype).clone().requires_grad_(True)
    acts = net.run(net.params(dtype), xg)
    scores, pos = [], 0
    for l in range(1, len(blocks)):
        f_in, f_out = acts[blocks[l - 1]], acts[blocks[l]]
        n = f_out.numel()
        if pos + n > rademacher.numel():
            raise ValueError("rademacher.bin is too short")
        g_out = rademacher[pos:pos + n].reshape(f_out.shape).to(dtype)
        pos += n
        if net.canon[blocks[l]] == net.canon[blocks[l - 1]]:
            g_in = g_out
        elif f_out.requires_grad and f_in.requires_grad:
            g_in = torch.autograd.grad(f_out, f_in, g_out, retain_graph=True,
                                       allow_unused=True)[0]
            if g_in is None:
                g_in = torch.zeros_like(f_in)
        else:
            g_in = torch.zeros_like(f_in)
        if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
            warnings.append("jacobian_trainability: block %d (node %d) is "
                            "an identity" % (l, blocks[l]))
            scores.append(-math.inf)
            continue
        bo, co, ho, wo = g_out.shape
        if g_in.shape[2] != ho:
            g_in = F.pixel_unshuffle(g_in, g_in.shape[2] // ho)
        ci = g_in.shape[1]
        gi = g_in.detach().permute(0, 2, 3, 1).reshape(-1, ci).to(F64)
        go = g_out.detach().permute(0, 2, 3, 1).reshape(-1, co).to(F64)
        m = gi.T @ go / (bo * ho * wo)
        sigma = float(torch.linalg.svdvals(m)[0])
        scores.append(-sigma - 1 / (sigma + 1e-6) + 2)
    if pos != rademacher.numel():
        raise ValueError("rademacher.bin does not match the blocks")
    if not scores:
        return None, scores
    if any(s == -math.inf for s in scores):
        return None, scores
    return sum(scores) / len(scores), scores


# ---- §3 generalization -------------------------------------------------

def cholesky_with_jitter(a):
    """L and the jitter of gpu/analytic/linalg.c's rule; (None, None) when
    still indefinite at 1e-4."""
    n = a.shape[0]
    trace = float(torch.trace(a))
    L, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return L, 0.0
    eps = 1e-10
    while True:
        used = eps * trace / n
        L, info = torch.linalg.cholesky_ex(a + used * torch.eye(n, dtype=F64))
        if int(info) == 0:
            return L, used
        if eps == 1e-4:
            return None, None
        eps = min(2 * eps, 1e-4)


def kernel_regression(theta, labels, classes):
    """(val_mse, val_acc, jitter) of the train/validation split."""
    b = theta.shape[0]
    theta = theta.to(F64)
    y = torch.zeros(b, classes, dtype=F64)
    y[torch.arange(b), labels.long()] = 1
    y -= 1.0 / classes
    nt = (3 * b) // 4
    L, jitter = cholesky_with_jitter(theta[:nt, :nt])
    if L is None:
        return None, None, None
    alpha = torch.cholesky_solve(y[:nt], L)
    p = theta[nt:, :nt] @ alpha
    mse = float(((p - y[nt:]) ** 2).mean())
    acc = float((p.argmax(1) == labels[nt:].long()).to(F64).mean())
    return mse, acc, jitter


# ---- §4 peer proxies ---------------------------------------------------

def ce_weight_grads(net, x, labels, dtype=F64):
    """{conv/linear node: (w, dCE/dw)} for mean CE on the batch, train BN."""
    params = net.params(dtype, grad=True)
    out = net.run(params, x.to(dtype))[net.output]
    loss = F.cross_entropy(out, labels.long())
    layers = net.weight_layers()
    ws = [params["w%d" % k] for k in layers]
    gs = torch.autograd.grad(loss, ws)
    return {k: (w.detach(), g) for k, w, g in zip(layers, ws, gs)}


def synflow(net):
    params = net.params(F64, absolute=True, grad=True)
    shape = net.nodes[0]["shape"]
    x = torch.ones([1] + list(shape), dtype=F64)
    r = net.run(params, x, bn=False)[net.output].sum()
    layers = net.weight_layers()
    ws = [params["w%d" % k] for k in layers]
    gs = torch.autograd.grad(r, ws)
    return float(sum((w * g).abs().sum() for w, g in zip(ws, gs)))


def grad_norm(grads):
    return float(sum(torch.linalg.norm(g.to(F64)) for _, g in grads.values()))


def snip(grads):
    return float(sum((w.to(F64) * g.to(F64)).abs().sum()
                     for w, g in grads.values()))


def jacob_cov(net, x, dtype=F64):
    xg = x.to(dtype).clone().requires_grad_(True)
    out = net.run(net.params(dtype), xg)[net.output]
    (j,) = torch.autograd.grad(out.sum(), xg)
    j = j.reshape(j.shape[0], -1).to(F64).numpy()
    corr = np.corrcoef(j)
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def zico(grads1, grads2):
    total = 0.0
    for k in grads1:
        g = torch.stack([grads1[k][1].reshape(-1).to(F64),
                         grads2[k][1].reshape(-1).to(F64)])
        std = g.std(0, unbiased=False)
        mean_abs = g.abs().mean(0)
        nz = std != 0
        s = float((mean_abs[nz] / std[nz]).sum())
        if s != 0:
            total += math.log(s)
    return total


# ---- the dump ----------------------------------------------------------

def compute(folder, dtype=F64, repeats=None, samples=8):
    """Every metric the dump folder has the inputs for: (metrics dict,
    warnings list).  A metric whose inputs are missing is absent with a
    warning."""
    warnings, m = [], {}
    net = Net(folder)
    g = net.graph
    shape = net.nodes[0]["shape"]
    batch = g["batch"]
    classes = g.get("classes", net.nodes[net.output]["out"])

    def have(name):
        return os.path.isfile(os.path.join(folder, name))

    def f32(name, shp):
        return read_f32(os.path.join(folder, name), shp)

    x = f32("x.bin", [batch] + shape)
    labels = None
    if have("y.bin"):
        labels = torch.from_numpy(np.fromfile(os.path.join(folder, "y.bin"),
                                              dtype=np.int32).astype(np.int64))
    blocks = block_outputs(net, warnings)

    # §1
    probe_dir = os.path.join(folder, "probe")
    if os.path.isfile(os.path.join(probe_dir, "graph.json")):
        r = 0
        probes = []
        while os.path.isfile(os.path.join(probe_dir, "weights.%d.bin" % r)) \
                and (repeats is None or r < repeats):
            probes.append(Net(probe_dir,
                              os.path.join(probe_dir, "weights.%d.bin" % r)))
            r += 1
        if probes:
            mean, units, sat, _ = activation_patterns(probes, x, dtype)
            m["expressivity.activation_patterns"] = mean
            m["expressivity.activation_patterns_units"] = units
            m["expressivity.activation_patterns_saturated"] = sat
        else:
            warnings.append("activation_patterns: no probe/weights.0.bin")
    else:
        warnings.append("activation_patterns: no probe/graph.json")
    ld, _ = pattern_kernel_logdet(net, x, dtype)
    if ld is None:
        warnings.append("pattern_kernel_logdet: K is singular")
    m["expressivity.pattern_kernel_logdet"] = ld
    if have("gauss.bin"):
        gauss = f32("gauss.bin", [batch] + shape)
        iso, prog, _ = feature_isotropy(net, gauss, blocks, warnings, dtype)
        m["expressivity.feature_isotropy"] = finite_or_none(
            iso, "feature_isotropy", warnings)
        m["expressivity.feature_progressivity"] = finite_or_none(
            prog, "feature_progressivity", warnings)
        if have("rademacher.bin"):
            rad = read_f32(os.path.join(folder, "rademacher.bin"))
            jt, _ = jacobian_trainability(net, gauss, blocks, rad, warnings,
                                          dtype)
            m["convergence.jacobian_trainability"] = finite_or_none(
                jt, "jacobian_trainability", warnings)
        else:
            warnings.append("jacobian_trainability: no rademacher.bin")
    else:
        warnings.append("feature_isotropy, jacobian_trainability: no "
                        "gauss.bin")
    # §2
    v0, mean, _ = feature_corr_lambda_min(net, x, samples, dtype)
    m["convergence.feature_corr_lambda_min"] = finite_or_none(
        v0, "feature_corr_lambda_min", warnings)
    m["convergence.feature_corr_lambda_min_mean"] = finite_or_none(
        mean, "feature_corr_lambda_min_mean", warnings)
    # §3
    if have("theta.bin") and labels is not None:
        theta = torch.from_numpy(np.fromfile(
            os.path.join(folder, "theta.bin"), dtype=np.float64)).reshape(
                batch, batch)
        mse, acc, jitter = kernel_regression(theta, labels, classes)
        if mse is None:
            warnings.append("kernel_regression: Theta_TT stays indefinite")
        m["generalization.kernel_regression_val_mse"] = finite_or_none(
            mse, "kernel_regression_val_mse", warnings)
        m["generalization.kernel_regression_val_acc"] = acc
    else:
        warnings.append("kernel_regression: needs theta.bin and y.bin")
    # §4
    m["proxies.synflow"] = finite_or_none(synflow(net), "synflow", warnings)
    m["proxies.jacob_cov"] = finite_or_none(jacob_cov(net, x, dtype),
                                            "jacob_cov", warnings)
    if labels is not None:
        grads = ce_weight_grads(net, x, labels, dtype)
        m["proxies.grad_norm"] = finite_or_none(grad_norm(grads),
                                                "grad_norm", warnings)
        m["proxies.snip"] = finite_or_none(snip(grads), "snip", warnings)
        if have("x2.bin") and have("y2.bin"):
            x2 = f32("x2.bin", [batch] + shape)
            y2 = torch.from_numpy(np.fromfile(
                os.path.join(folder, "y2.bin"), dtype=np.int32).astype(
                    np.int64))
            m["proxies.zico"] = finite_or_none(
                zico(grads, ce_weight_grads(net, x2, y2, dtype)), "zico",
                warnings)
        else:
            warnings.append("zico: needs x2.bin and y2.bin")
    else:
        warnings.append("grad_norm, snip, zico: no y.bin")
    return m, warnings


def compare(metrics, expected, rtol):
    """The names whose expected value differs from ours by more than rtol
    relative (absolute below 1), or whose presence differs."""
    bad = []
    for name, want in expected.items():
        got = metrics.get(name)
        if want is None or got is None or isinstance(want, bool):
            if want != got:
                bad.append(name)
            continue
        if abs(got - want) > rtol * max(1.0, abs(want)):
            bad.append(name)
    return bad


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(
        description="the ranking metrics of a dump, as the spec defines them")
    ap.add_argument("dump", help="a dump folder (graph.json ...) or a folder "
                    "of them")
    ap.add_argument("--float32", action="store_true",
                    help="run the passes in float32 (default float64)")
    ap.add_argument("--samples", type=int, default=8,
                    help="feature_corr_lambda_min_mean's samples (8)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="activation_patterns' weight draws (every "
                    "probe/weights.R.bin)")
    ap.add_argument("--rtol", type=float, default=1e-4,
                    help="tolerance against expected.json (1e-4)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if not os.path.isdir(a.dump):
        print("torch_ranking: %s: no such folder" % a.dump, file=sys.stderr)
        return 77
    torch.set_num_threads(a.threads)
    dtype = torch.float32 if a.float32 else F64
    if os.path.isfile(os.path.join(a.dump, "graph.json")):
        cells = [("", a.dump)]
    else:
        cells = [(t, os.path.join(a.dump, t))
                 for t in sorted(os.listdir(a.dump))
                 if os.path.isfile(os.path.join(a.dump, t, "graph.json"))]
    if not cells:
        print("torch_ranking: no graph.json under %s" % a.dump,
              file=sys.stderr)
        return 77
    failed = passed = 0
    for tag, folder in cells:
        metrics, warnings = compute(folder, dtype, a.repeats, a.samples)
        line = {"cell": tag, "metrics": metrics, "warnings": warnings}
        exp = os.path.join(folder, "expected.json")
        if os.path.isfile(exp):
            with open(exp) as f:
                bad = compare(metrics, json.load(f), a.rtol)
            line["mismatch"] = bad
            failed += bool(bad)
            passed += not bad
        print(json.dumps(line, sort_keys=True))
    if passed or failed:
        print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
