#!/usr/bin/python3
"""test_ranking_reference.py: holds tests/ref/torch_ranking.py to values
known in closed form, one or more hand networks per metric of ranking.md
§1-4 (each value derived by hand in the comment above its assertion), and
runs the reference end to end on a dump folder written here.  Stdlib and
torch; exits 77 where torch is missing.  TAP-free: prints one line per case
and "N passed, M failed"."""
import json
import math
import os
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print("test_ranking_reference: skipped, PyTorch missing (%s)" % e)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_ranking as tr  # noqa: E402
from ae_torch_net import Net  # noqa: E402

F64 = torch.float64
TOL = 1e-12
results = []


def check(name, got, want, tol=TOL):
    if isinstance(want, (bool, str, list)) or want is None or got is None:
        ok = got == want
    else:
        ok = got == want or abs(got - want) <= tol * max(1.0, abs(want))
    results.append(ok)
    print("%s %s: got %r, want %r" % ("ok  " if ok else "FAIL", name, got,
                                      want))


def node(op, inputs, shape, **kw):
    d = {"op": op, "inputs": inputs, "shape": shape, "out": 0, "kernel": 0,
         "stride": 1, "padding": 0, "count_include_pad": 1, "bias": False,
         "act": "", "slope": 0.01, "init_gain": 1.0}
    d.update(kw)
    return d


def head(nodes, src, classes=2, bias=False):
    """GAP -> linear(classes) after node src; returns the output index."""
    nodes.append(node("global_avg_pool", [src], [nodes[src]["shape"][0]]))
    nodes.append(node("linear", [len(nodes) - 1], [classes], out=classes,
                      bias=bias))
    return len(nodes) - 1


def make(nodes, output, weights, batch=1, **extra):
    g = {"nodes": nodes, "output": output, "batch": batch}
    g.update(extra)
    return Net(g, np.asarray(weights, dtype=np.float32))


def pattern_input(patterns, b=16):
    """x (b x 1 x 1 x U): unit u of sample s is positive iff bit s of
    patterns[u] is set (magnitudes vary so nothing is 0)."""
    x = torch.empty(b, 1, 1, len(patterns), dtype=F64)
    for s in range(b):
        for u, p in enumerate(patterns):
            x[s, 0, 0, u] = (0.5 + u) * (1 if (p >> s) & 1 else -1)
    return x


def test_activation_patterns():
    # input 1x1x6 -> conv1x1 (2 out) -> relu -> GAP -> linear.  Units: 2
    # channels x 6 positions = 12.  Draw A: both channels = x, so 6 units
    # twice with patterns {00FF, 0F0F, FFFF, 0001} = 4 distinct.  Draw B:
    # channels x and -x: the 4 and their complements {FF00, F0F0, 0000,
    # FFFE} = 8.  Mean 6; saturated iff 6 > 0.9 * min(12, 2^16) = 10.8: no.
    pats = [0x00FF, 0x00FF, 0x0F0F, 0xFFFF, 0x0001, 0x0F0F]
    x = pattern_input(pats)
    nodes = [node("input", [], [1, 1, 6]),
             node("conv", [0], [2, 1, 6], out=2, kernel=1),
             node("act", [1], [2, 1, 6], act="relu")]
    out = head(nodes, 2)
    lin = [0.0] * 4
    a = make(nodes, out, [1, 1] + lin, 16)
    b = make(nodes, out, [1, -1] + lin, 16)
    mean, units, sat, counts = tr.activation_patterns([a, b], x)
    check("activation_patterns draw A", counts[0], 4)
    check("activation_patterns draw B", counts[1], 8)
    check("activation_patterns mean", mean, 6.0)
    check("activation_patterns units", units, 12)
    check("activation_patterns saturated", sat, False)
    # Six distinct patterns whose complements are new: 12 > 10.8.
    x2 = pattern_input([0x0003, 0x000C, 0x0030, 0x00C0, 0x0300, 0x0C00])
    mean, units, sat, _ = tr.activation_patterns([b], x2)
    check("activation_patterns all distinct", mean, 12.0)
    check("activation_patterns saturated", sat, True)
    # Only the first 16 samples count: 4 more samples change nothing.
    x3 = torch.cat([x, -x[:4]])
    check("activation_patterns first 16 samples",
          tr.activation_patterns([a], x3)[0], 4.0)


def test_pattern_kernel_logdet():
    # B = 2 samples, input 1x1x3 -> relu -> tanh -> identity act -> GAP ->
    # linear.  Codes per unit (sample 0, sample 1): (1,1), (1,0), (0,0).
    # K_ii = 3 units; K_01 = units whose codes agree = 2.  K = [[3,2],[2,3]],
    # det 5.  tanh and the identity activation have no units.
    x = torch.tensor([[[[1.0, 2.0, -1.0]]], [[[3.0, -2.0, -4.0]]]], dtype=F64)
    nodes = [node("input", [], [1, 1, 3]),
             node("act", [0], [1, 1, 3], act="relu"),
             node("act", [1], [1, 1, 3], act="tanh"),
             node("act", [2], [1, 1, 3], act="identity")]
    out = head(nodes, 3)
    net = make(nodes, out, [0.0] * 2, 2)
    ld, K = tr.pattern_kernel_logdet(net, x)
    check("pattern_kernel_logdet K_01", float(K[0, 1]), 2.0)
    check("pattern_kernel_logdet", ld, math.log(5.0))
    # leaky_relu units count as well: a second one doubles K, det 4 * 5.
    nodes2 = [node("input", [], [1, 1, 3]),
              node("act", [0], [1, 1, 3], act="relu"),
              node("act", [1], [1, 1, 3], act="leaky_relu", slope=0.1)]
    out2 = head(nodes2, 2)
    ld2, _ = tr.pattern_kernel_logdet(make(nodes2, out2, [0.0] * 2, 2), x)
    check("pattern_kernel_logdet leaky_relu", ld2, math.log(20.0))
    # Every unit agrees on both samples: K = [[3,3],[3,3]] is singular.
    xs = torch.tensor([[[[1.0, 2.0, -1.0]]], [[[3.0, 2.0, -4.0]]]], dtype=F64)
    check("pattern_kernel_logdet singular",
          tr.pattern_kernel_logdet(net, xs)[0], None)


def test_feature_isotropy():
    # One sample of 2 x 2 x 2.  Block 0 = identity act of x with channels
    # a = (1,-1,1,-1), b = (1,1,-1,-1): centred, orthogonal, covariance
    # I; p = (1/2, 1/2); H0 = -log(1/2 + 1e-8).  Block 1 = conv1x1 with
    # both rows (1, 0): both channels a, covariance [[1,1],[1,1]],
    # eigenvalues (0, 2), p = (0, 1), H1 = -log(1 + 1e-8).
    x = torch.tensor([[[[1, -1], [1, -1]], [[1, 1], [-1, -1]]]], dtype=F64)
    nodes = [node("input", [], [2, 2, 2]),
             node("act", [0], [2, 2, 2], act="identity"),
             node("conv", [1], [2, 2, 2], out=2, kernel=1)]
    out = head(nodes, 2)
    net = make(nodes, out, [1, 0, 1, 0] + [0.0] * 4, 1, blocks=[1, 2])
    warn = []
    iso, prog, hs = tr.feature_isotropy(net, x, [1, 2], warn)
    h0, h1 = -math.log(0.5 + 1e-8), -math.log(1 + 1e-8)
    check("feature_isotropy H0", hs[0], h0)
    check("feature_isotropy H1", hs[1], h1)
    check("feature_isotropy", iso, h0 + h1)
    check("feature_progressivity", prog, h1 - h0)
    check("block_outputs from graph.json", tr.block_outputs(net, []), [1, 2])
    # A zero block output: covariance trace 0, null with a warning.
    zero = make(nodes, out, [0.0] * 8, 1)
    check("feature_isotropy zero block",
          tr.feature_isotropy(zero, x, [1, 2], warn)[0], None)


def test_feature_corr_lambda_min():
    # Channels a = (1,2,3,4), b = (1,3,2,4) over H*W = 4 positions:
    # centred (-1.5,-.5,.5,1.5), (-1.5,.5,-.5,1.5); dot 4, norms^2 5:
    # rho = 0.8, lambda_min = 1 - 0.8 = 0.2.  Nodes: the identity act (a
    # 4-D node), BN (4-D; an affine map per channel keeps rho), an identity
    # (an alias, not counted): 2 x 0.2.  Sample 1: b = (2,1,1,2), centred
    # (.5,-.5,-.5,.5), dot 0: rho 0, lambda_min 1; 2 x 1.  Mean (0.4+2)/2.
    x = torch.tensor([[[[1, 2, 3, 4]], [[1, 3, 2, 4]]],
                      [[[1, 2, 3, 4]], [[2, 1, 1, 2]]]], dtype=F64)
    nodes = [node("input", [], [2, 1, 4]),
             node("act", [0], [2, 1, 4], act="identity"),
             node("batch_norm", [1], [2, 1, 4]),
             node("identity", [2], [2, 1, 4])]
    out = head(nodes, 3)
    net = make(nodes, out, [1, 1, 0, 0] + [0.0] * 4, 2)
    check("4-D nodes (the identity is an alias)", tr.four_d_nodes(net), [1, 2])
    v0, mean, per = tr.feature_corr_lambda_min(net, x, samples=2)
    check("feature_corr_lambda_min", v0, 0.4)
    check("feature_corr_lambda_min sample 1", per[1], 2.0)
    check("feature_corr_lambda_min_mean", mean, 1.2)
    # A zero-variance channel is a zero row and column: [[1,0],[0,0]],
    # lambda_min 0 (BN of a constant channel is 0, also zero variance).
    xc = torch.tensor([[[[1, 2, 3, 4]], [[5, 5, 5, 5]]]], dtype=F64)
    check("feature_corr_lambda_min zero variance",
          tr.feature_corr_lambda_min(net, xc, samples=1)[0], 0.0)
    # Three one-hot channels over 4 positions: centred e_i - 1/4, variance
    # 3/16 * 4 = .75, covariance -.25: rho = -1/3 for every pair; the
    # matrix (4/3) I - (1/3) J has eigenvalues 4/3, 4/3 and 4/3 - 1.
    eye = torch.eye(3, 4, dtype=F64).reshape(3, 1, 4)
    check("corr_lambda_min, three channels at rho -1/3",
          tr.corr_lambda_min(eye), 1.0 / 3)


def test_jacobian_trainability():
    # Block 0 = the identity act of x (2 channels, 2 x 2, one sample),
    # block 1 = conv1x1 W.  g_in = g_out W per position, so
    # M = W^T (g_out^T g_out) / 4; with the orthogonal Rademacher columns
    # (1,-1,1,-1), (1,1,-1,-1): g_out^T g_out = 4 I and M = W^T.  W =
    # [[3,4],[0,0]]: sigma = 5, score -5 - 1/(5 + 1e-6) + 2.
    x = torch.zeros(1, 2, 2, 2, dtype=F64)
    g = torch.tensor([[[[1, -1], [1, -1]], [[1, 1], [-1, -1]]]],
                     dtype=torch.float32).reshape(-1)
    nodes = [node("input", [], [2, 2, 2]),
             node("act", [0], [2, 2, 2], act="identity"),
             node("conv", [1], [2, 2, 2], out=2, kernel=1)]
    out = head(nodes, 2)
    net = make(nodes, out, [3, 4, 0, 0] + [0.0] * 4, 1)
    warn = []
    score, _ = tr.jacobian_trainability(net, x, [1, 2], g, warn)
    check("jacobian_trainability sigma 5", score, -5 - 1 / (5 + 1e-6) + 2)
    net = make(nodes, out, [2, 0, 0, 0.5] + [0.0] * 4, 1)
    score, _ = tr.jacobian_trainability(net, x, [1, 2], g, warn)
    check("jacobian_trainability sigma 2", score, -2 - 1 / (2 + 1e-6) + 2)
    # An identity block: g_in = g_out, -inf, null with a warning.
    nodes_id = [node("input", [], [2, 2, 2]),
                node("act", [0], [2, 2, 2], act="identity"),
                node("identity", [1], [2, 2, 2])]
    out = head(nodes_id, 2)
    net = make(nodes_id, out, [0.0] * 4, 1)
    warn = []
    score, scores = tr.jacobian_trainability(net, x, [1, 2], g, warn)
    check("jacobian_trainability identity block", score, None)
    check("jacobian_trainability identity is -inf", scores[0], -math.inf)
    # Resolution halves: a 2x2 average pool of a 1-channel 2 x 2 map, two
    # samples, g_out = (1, -1).  g_in = g_out / 4 at the 4 positions,
    # unshuffled to 4 channels: M = (1/4,1/4,1/4,1/4)^T, sigma 1/2.
    nodes_p = [node("input", [], [1, 2, 2]),
               node("act", [0], [1, 2, 2], act="identity"),
               node("avg_pool", [1], [1, 1, 1], kernel=2, stride=2)]
    out = head(nodes_p, 2)
    net = make(nodes_p, out, [0.0] * 2, 2)
    score, _ = tr.jacobian_trainability(
        net, torch.zeros(2, 1, 2, 2, dtype=F64), [1, 2],
        torch.tensor([1.0, -1.0]), [])
    check("jacobian_trainability pixel-unshuffle", score,
          -0.5 - 1 / (0.5 + 1e-6) + 2)
    # A zero cell: nothing flows back, sigma 0, score 2 - 1e6.
    nodes_z = [node("input", [], [2, 2, 2]),
               node("act", [0], [2, 2, 2], act="identity"),
               node("zero", [1], [2, 2, 2])]
    out = head(nodes_z, 2)
    net = make(nodes_z, out, [0.0] * 4, 1)
    score, _ = tr.jacobian_trainability(net, x, [1, 2], g, [])
    check("jacobian_trainability zero block", score, 2 - 1e6)


def test_kernel_regression():
    # B = 4: n_T = 3, n_V = 1, 2 classes, labels (0,1,1,0), centred one-hot
    # rows (.5,-.5) / (-.5,.5).  Theta_TT = I: alpha = Y_T; Theta_VT =
    # (.75,.25,0): P = .75(.5,-.5) + .25(-.5,.5) = (.25,-.25) against
    # Y_V = (.5,-.5): mse ((.25)^2 + (.25)^2) / 2 = 0.0625; argmax 0 =
    # label 0: accuracy 1.
    theta = torch.eye(4, dtype=F64)
    theta[3, 0] = theta[0, 3] = 0.75
    theta[3, 1] = theta[1, 3] = 0.25
    labels = torch.tensor([0, 1, 1, 0])
    mse, acc, jitter = tr.kernel_regression(theta, labels, 2)
    check("kernel_regression_val_mse", mse, 0.0625)
    check("kernel_regression_val_acc", acc, 1.0)
    check("kernel_regression no jitter", jitter, 0.0)
    # Label 1 for the validation sample: Y_V = (-.5,.5), P unchanged:
    # mse ((.75)^2 + (.75)^2) / 2, accuracy 0.
    mse, acc, _ = tr.kernel_regression(theta, torch.tensor([0, 1, 1, 1]), 2)
    check("kernel_regression_val_mse wrong", mse, 0.5625)
    check("kernel_regression_val_acc wrong", acc, 0.0)
    # Theta_TT of rank 1 (all ones): the jitter rule adds eps tr / n_T with
    # eps from 1e-10 (tr / n_T = 1 here).
    ones = torch.ones(4, 4, dtype=F64)
    mse, acc, jitter = tr.kernel_regression(ones, labels, 2)
    check("kernel_regression jitter used", jitter is not None and
          1e-10 <= jitter <= 1e-4, True)


def chain_net(batch=1):
    # input 1x1x2 -> linear W1 (3x2, no bias) -> BN (gamma 5, beta 7) ->
    # relu -> linear W2 (1x3... two classes: rows (2,-1,.5) and (0,0,0)).
    nodes = [node("input", [], [1, 1, 2]),
             node("linear", [0], [3], out=3),
             node("batch_norm", [1], [3]),
             node("act", [2], [3], act="relu"),
             node("linear", [3], [2], out=2)]
    w1 = [1, -2, 3, 0.5, -1, 1]
    bn = [5, 5, 5, 7, 7, 7]
    w2 = [2, -1, 0.5, 0, 0, 0]
    return make(nodes, 4, w1 + bn + w2, batch)


def test_synflow():
    # BN removed, |W1| 1 = (3, 3.5, 2), R = 2*3 + 1*3.5 + .5*2 = 10.5.  For a
    # linear chain sum |w dR/dw| over each layer is R: synflow = 2R = 21.
    check("synflow", tr.synflow(chain_net()), 21.0)


def hand_linear(w):
    nodes = [node("input", [], [1, 1, 3]), node("linear", [0], [2], out=2)]
    return make(nodes, 1, w, 1)


def test_grad_norm_snip_zico():
    # Linear 2x3 on x = (1,2,0) with W x = (0,0) (W = [[1,-.5,9],[2,-1,9]]):
    # softmax (.5,.5), label 0: dCE/dW = (-.5,.5)^T (1,2,0) =
    # [[-.5,-1,0],[.5,1,0]]; Frobenius norm sqrt(2.5); snip = .5 + .5 + 0
    # + 1 + 1 + 0 = 3.
    net = hand_linear([1, -0.5, 9, 2, -1, 9])
    x1 = torch.tensor([[[[1.0, 2.0, 0.0]]]], dtype=F64)
    g1 = tr.ce_weight_grads(net, x1, torch.tensor([0]))
    check("grad_norm", tr.grad_norm(g1), math.sqrt(2.5))
    check("snip", tr.snip(g1), 3.0)
    # zico with W = 0 (softmax (.5,.5)): batch 1 x = (1,2,0), label 0:
    # g1 = [[-.5,-1,0],[.5,1,0]]; batch 2 x = (3,-1,0), label 1:
    # g2 = (.5,-.5)^T (3,-1,0) = [[1.5,-.5,0],[-1.5,.5,0]].  Per weight
    # mean |g| / std: (1/1) + (.75/.25) + (1/1) + (.75/.25) = 8; the third
    # column has std 0 and is left out.  zico = log 8.
    net0 = hand_linear([0.0] * 6)
    g1 = tr.ce_weight_grads(net0, x1, torch.tensor([0]))
    g2 = tr.ce_weight_grads(net0, torch.tensor([[[[3.0, -1.0, 0.0]]]],
                                               dtype=F64), torch.tensor([1]))
    check("zico", tr.zico(g1, g2), math.log(8.0))
    # Two equal batches: every std is 0, the layer adds nothing.
    check("zico no deviation", tr.zico(g1, g1), 0.0)


def test_jacob_cov():
    # relu -> linear (2 classes, rows (1,2,3,4) and (0,0,0,0)) on two
    # samples: J_i = (1,2,3,4) masked by sample i's positive inputs.  x_0
    # all positive: J_0 = (1,2,3,4); x_1 = (1,1,-1,-1): J_1 = (1,2,0,0).
    # Centred (-1.5,-.5,.5,1.5), (.25,1.25,-.75,-.75): dot -2.5, norms^2 5
    # and 2.75, rho = -2.5/sqrt(13.75); eigenvalues 1 +- rho.
    nodes = [node("input", [], [1, 1, 4]),
             node("act", [0], [1, 1, 4], act="relu"),
             node("linear", [1], [2], out=2)]
    net = make(nodes, 2, [1, 2, 3, 4, 0, 0, 0, 0], 2)
    x = torch.tensor([[[[1.0, 1.0, 1.0, 1.0]]], [[[1.0, 1.0, -1.0, -1.0]]]],
                     dtype=F64)
    rho = -2.5 / math.sqrt(13.75)
    k = 1e-5
    want = -sum(math.log(v + k) + 1 / (v + k) for v in (1 - rho, 1 + rho))
    check("jacob_cov", tr.jacob_cov(net, x), want, 1e-12)


def test_dump_end_to_end():
    # The CLI on a dump folder written here (the format of README.md): the
    # jacob_cov net with labels, a second batch, Theta, Gaussian inputs,
    # Rademacher tensors and a probe; expected.json holds the hand values
    # of the cases above, so the comparison must pass.
    with tempfile.TemporaryDirectory() as d:
        nodes = [node("input", [], [2, 2, 2]),
                 node("act", [0], [2, 2, 2], act="identity"),
                 node("conv", [1], [2, 2, 2], out=2, kernel=1),
                 node("act", [2], [2, 2, 2], act="relu")]
        out = head(nodes, 3)
        g = {"nodes": nodes, "output": out, "batch": 4, "blocks": [1, 2]}
        w = np.array([3, 4, 0, 0, 1, 0, 0, 1], dtype=np.float32)
        with open(os.path.join(d, "graph.json"), "w") as f:
            json.dump(g, f)
        w.tofile(os.path.join(d, "weights.bin"))
        rng = np.random.default_rng(1)
        for name in ("x.bin", "x2.bin", "gauss.bin"):
            rng.standard_normal(32).astype(np.float32).tofile(
                os.path.join(d, name))
        np.array([0, 1, 1, 0], dtype=np.int32).tofile(os.path.join(d, "y.bin"))
        np.array([1, 0, 0, 1], dtype=np.int32).tofile(
            os.path.join(d, "y2.bin"))
        theta = np.eye(4)
        theta[3, 0] = theta[0, 3] = 0.75
        theta[3, 1] = theta[1, 3] = 0.25
        theta.tofile(os.path.join(d, "theta.bin"))
        # The Rademacher tensor of block 1: the orthogonal columns of the
        # trainability case on each of the 4 samples: M = W^T, sigma 5.
        rad = np.tile(np.array([1, -1, 1, -1, 1, 1, -1, -1], np.float32), 4)
        rad.tofile(os.path.join(d, "rademacher.bin"))
        os.mkdir(os.path.join(d, "probe"))
        with open(os.path.join(d, "probe", "graph.json"), "w") as f:
            json.dump(g, f)
        w.tofile(os.path.join(d, "probe", "weights.0.bin"))
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump({"convergence.jacobian_trainability":
                       -5 - 1 / (5 + 1e-6) + 2,
                       "generalization.kernel_regression_val_mse": 0.0625,
                       "generalization.kernel_regression_val_acc": 1.0}, f)
        m, warnings = tr.compute(d)
        want = {"expressivity.activation_patterns",
                "expressivity.activation_patterns_units",
                "expressivity.activation_patterns_saturated",
                "expressivity.pattern_kernel_logdet",
                "expressivity.feature_isotropy",
                "expressivity.feature_progressivity",
                "convergence.feature_corr_lambda_min",
                "convergence.feature_corr_lambda_min_mean",
                "convergence.jacobian_trainability",
                "generalization.kernel_regression_val_mse",
                "generalization.kernel_regression_val_acc",
                "proxies.synflow", "proxies.grad_norm", "proxies.snip",
                "proxies.jacob_cov", "proxies.zico"}
        check("dump: every metric present", sorted(want - set(m)), [])
        check("dump: jacobian_trainability", m.get(
            "convergence.jacobian_trainability"), -5 - 1 / (5 + 1e-6) + 2)
        check("dump: units (2 x 2 x 2 relu)",
              m.get("expressivity.activation_patterns_units"), 8)
        check("dump: CLI exit status", tr.main([d]), 0)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump({"generalization.kernel_regression_val_mse": 0.07}, f)
        check("dump: CLI catches a wrong value", tr.main([d]), 1)
        # Without the optional inputs the metrics are absent with warnings.
        for name in ("gauss.bin", "rademacher.bin", "x2.bin", "y2.bin"):
            os.remove(os.path.join(d, name))
        m, warnings = tr.compute(d)
        check("dump: no gauss.bin, no isotropy",
              "expressivity.feature_isotropy" in m, False)
        check("dump: no second batch, no zico", "proxies.zico" in m, False)
        check("dump: warnings say why", len(warnings) >= 2, True)


def nb201_like(cell_nodes):
    """A graph with the layout nb201_layout_blocks reads: stem conv + BN,
    3 stages of 5 cells (cell_nodes identity nodes each, chained), the 9-node
    reduction blocks, the 4-node head.  Returns (nodes, expected blocks)."""
    nodes = [node("input", [], [1, 4, 4]),
             node("conv", [0], [1, 4, 4], out=1, kernel=1),
             node("batch_norm", [1], [1, 4, 4])]
    blocks = [2]
    for stage in range(3):
        if stage:
            x = len(nodes) - 1
            for op in ("act", "conv", "batch_norm", "act", "conv",
                       "batch_norm", "avg_pool", "conv"):
                nodes.append(node(op, [len(nodes) - 1], [1, 4, 4], out=1,
                                  kernel=1, act="relu"))
            nodes[-2]["inputs"] = [x]
            nodes.append(node("add", [len(nodes) - 3, len(nodes) - 1],
                              [1, 4, 4]))
            blocks.append(len(nodes) - 1)
        for _ in range(5):
            for _ in range(cell_nodes):
                nodes.append(node("identity", [len(nodes) - 1], [1, 4, 4]))
            blocks.append(len(nodes) - 1)
    nodes.append(node("batch_norm", [len(nodes) - 1], [1, 4, 4]))
    nodes.append(node("act", [len(nodes) - 1], [1, 4, 4], act="relu"))
    nodes.append(node("global_avg_pool", [len(nodes) - 1], [1]))
    nodes.append(node("linear", [len(nodes) - 1], [2], out=2))
    return nodes, blocks


def test_blocks():
    for n in (1, 3):
        nodes, blocks = nb201_like(n)
        nw = sum(1 for nd in nodes if nd["op"] == "conv")
        nbn = sum(1 for nd in nodes if nd["op"] == "batch_norm")
        net = make(nodes, len(nodes) - 1, [0.0] * (nw + 2 * nbn + 2))
        check("nb201 layout blocks, %d-node cells" % n,
              tr.nb201_layout_blocks(net), blocks)
        check("nb201: 17 + 1 block outputs", len(blocks), 18)
    # The graph rule: adds of two live inputs, first and last 4-D node.
    nodes = [node("input", [], [1, 2, 2]),
             node("act", [0], [1, 2, 2], act="relu"),
             node("zero", [1], [1, 2, 2]),
             node("add", [1, 2], [1, 2, 2]),
             node("act", [3], [1, 2, 2], act="relu"),
             node("add", [3, 4], [1, 2, 2]),
             node("act", [5], [1, 2, 2], act="relu")]
    out = head(nodes, 6)
    net = make(nodes, out, [0.0] * 2)
    check("graph rule blocks", tr.graph_rule_blocks(net), [1, 5, 6])


def main():
    torch.set_num_threads(1)
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
            except Exception as e:  # a crash is a failure, not an abort
                import traceback
                traceback.print_exc()
                check("%s runs" % name, repr(e), "no exception")
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
