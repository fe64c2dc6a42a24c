"""ae_torch_net.py: archeval's lowered graph as a PyTorch network.

The one network builder of the PyTorch references (tests/bench/torch_ntk.py,
tests/ref/torch_ranking.py).  It reads what the C engine dumps: graph.json
(the lowered graph: per node op, inputs, per-sample shape, out, kernel,
stride, padding, count_include_pad, bias, act, slope, init_gain, and where
present groups, dilation, ceil_mode, pads; "output", "batch") and weights.bin (float32, node order; per node its weight, linear
bias, BN gamma, BN beta, each when the node has it) and runs the very same
network.  A Net can also be built from a graph dict and a flat float32
array, which is how the hand cases of the tests build theirs.

Net.forward(params, x, stats) is the NTK protocol of torch_ntk.py, kept
exactly as it was.  Net.run() is the general pass the ranking metrics use:
every node's output, BatchNorm with the batch's statistics (differentiable:
PyTorch's .train()) or removed (synflow), any dtype.

An identity node returns its input tensor itself (an alias), so a tensor
reached through identities is one tensor, as in the C engine.

Needs torch and numpy; the importer handles their absence.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F


def act(fn, slope, z):
    if fn == "relu":
        return F.relu(z)
    if fn == "leaky_relu":
        return F.leaky_relu(z, slope)
    if fn == "tanh":
        return torch.tanh(z)
    if fn == "sigmoid":
        return torch.sigmoid(z)
    if fn == "swish":
        return z * torch.sigmoid(z)
    if fn == "gelu":
        return F.gelu(z)
    if fn == "erf":
        return torch.erf(z)
    if fn == "identity":
        return z
    if fn == "relu6":
        return F.relu6(z)
    if fn == "hardswish":
        return F.hardswish(z)
    if fn == "hardsigmoid":
        # F.hardsigmoid's backward multiplies by 1/6 rounded to float32
        # even in float64 (PyTorch's kernel: one_sixth(1.0f / 6.0f)), a
        # 3e-8 relative bias; the same function with an exact derivative
        # (clamp's gradient differs only at the kinks).
        return torch.clamp(z + 3.0, 0.0, 6.0) / 6.0
    raise ValueError(fn)


def parameter_free_op(nd, xs):
    """The output of a node without parameters (act, pools, add, identity,
    flatten, zero, max_pool, concat, mul, pad) from its inputs xs;
    ValueError for any other op."""
    op = nd["op"]
    if op == "act":
        return act(nd["act"], nd["slope"], xs[0])
    if op == "avg_pool":
        return F.avg_pool2d(xs[0], nd["kernel"], nd["stride"], nd["padding"],
                            count_include_pad=bool(nd["count_include_pad"]))
    if op == "global_avg_pool":
        return xs[0].mean((2, 3))
    if op == "add":
        y = xs[0]
        for t in xs[1:]:
            y = y + t
        return y
    if op == "identity":
        return xs[0]
    if op == "flatten":
        return xs[0].reshape(xs[0].shape[0], -1)
    if op == "zero":
        return torch.zeros_like(xs[0])
    if op == "max_pool":
        return F.max_pool2d(xs[0], nd["kernel"], nd["stride"], nd["padding"],
                            dilation=nd.get("dilation", 1),
                            ceil_mode=bool(nd.get("ceil_mode", 0)))
    if op == "concat":
        return torch.cat(xs, dim=1)
    if op == "mul":
        y = xs[0]
        for t in xs[1:]:
            y = y * t
        return y
    if op == "pad":
        top, left, bottom, right = nd["pads"]
        return F.pad(xs[0], (left, right, top, bottom))
    raise ValueError(op)


def conv(nd, x, w):
    """A conv node (groups and dilation when graph.json has them)."""
    return F.conv2d(x, w, stride=nd["stride"], padding=nd["padding"],
                    dilation=nd.get("dilation", 1), groups=nd.get("groups", 1))


def read_f32(path, shape=None):
    """A raw little-endian float32 file as a torch tensor (optionally
    reshaped)."""
    t = torch.from_numpy(np.fromfile(path, dtype=np.float32))
    return t.reshape(shape) if shape is not None else t


class Net:
    """Runs archeval's lowered graph (graph.json) with its weights."""

    def __init__(self, folder_or_graph, weights=None):
        """Net(folder[, weights_path]): the folder's graph.json and its
        weights.bin (or the file named).  Net(graph, weights): a graph dict
        and a flat float32 array."""
        if isinstance(folder_or_graph, str):
            with open(os.path.join(folder_or_graph, "graph.json")) as f:
                g = json.load(f)
            if weights is None:
                weights = os.path.join(folder_or_graph, "weights.bin")
        else:
            g = folder_or_graph
        self.graph = g
        self.nodes, self.output = g["nodes"], g["output"]
        if isinstance(weights, str):
            raw = np.fromfile(weights, dtype=np.float32)
        else:
            raw = np.asarray(weights, dtype=np.float32).reshape(-1)
        self.trainable, self.beta = {}, {}
        pos = 0

        def take(shape):
            nonlocal pos
            n = int(np.prod(shape))
            t = torch.from_numpy(raw[pos:pos + n].copy()).reshape(shape)
            pos += n
            return t

        for k, nd in enumerate(self.nodes):
            src = self.nodes[nd["inputs"][0]] if nd["inputs"] else None
            if nd["op"] == "linear":
                fan = int(np.prod(src["shape"]))
                self.trainable["w%d" % k] = take((nd["out"], fan))
                if nd["bias"]:
                    self.trainable["b%d" % k] = take((nd["out"],))
            elif nd["op"] == "conv":
                kk = nd["kernel"]
                self.trainable["w%d" % k] = take(
                    (nd["out"], src["shape"][0] // nd.get("groups", 1), kk,
                     kk))
            elif nd["op"] == "batch_norm":
                c = nd["shape"][0]
                self.trainable["g%d" % k] = take((c,))
                self.beta[k] = take((c,))
        assert pos == raw.size, "weights.bin does not match graph.json"
        # canon[k]: the node whose tensor node k's output is (identity
        # nodes are aliases of their input).
        self.canon = []
        for k, nd in enumerate(self.nodes):
            self.canon.append(self.canon[nd["inputs"][0]]
                              if nd["op"] == "identity" else k)

    def forward(self, params, x, stats=None):
        """x has a batch dim.  stats None: BN uses (and records) the batch's
        statistics; else the given per-node (mean, invstd) are constants."""
        acts, record = [], {}
        for k, nd in enumerate(self.nodes):
            op = nd["op"]
            xs = [acts[i] for i in nd["inputs"]]
            if op == "input":
                y = x
            elif op == "linear":
                y = F.linear(xs[0].reshape(xs[0].shape[0], -1),
                             params["w%d" % k], params.get("b%d" % k))
            elif op == "conv":
                y = conv(nd, xs[0], params["w%d" % k])
            elif op == "batch_norm":
                z = xs[0]
                dims = (0, 2, 3) if z.dim() == 4 else (0,)
                view = (1, -1, 1, 1) if z.dim() == 4 else (1, -1)
                if stats is None:
                    mean = z.mean(dims)
                    var = z.var(dims, unbiased=False)
                    inv = torch.rsqrt(var + 1e-5)
                    record[k] = (mean.detach(), inv.detach())
                else:
                    mean, inv = stats[k]
                y = ((z - mean.reshape(view)) * inv.reshape(view) *
                     params["g%d" % k].reshape(view) +
                     self.beta[k].reshape(view))
            else:
                y = parameter_free_op(nd, xs)
            acts.append(y)
        return acts[self.output], record

    def params(self, dtype=torch.float64, absolute=False, grad=False):
        """The trainable tensors and the BN betas as fresh leaves of dtype
        (absolute values when asked), keyed as forward() keys them; betas
        under "beta<k>".  grad: the conv/linear weights and linear biases
        require grad (BN gammas and betas never do)."""
        out = {}
        for name, t in self.trainable.items():
            u = t.to(dtype)
            if absolute:
                u = u.abs()
            u = u.clone()
            if grad and name[0] in "wb":
                u.requires_grad_(True)
            out[name] = u
        for k, t in self.beta.items():
            u = t.to(dtype)
            out["beta%d" % k] = (u.abs() if absolute else u).clone()
        return out

    def run(self, params, x, bn=True):
        """Every node's output (a list in node order) for the batch x.
        bn True: BatchNorm normalises with the batch's statistics (biased
        variance, eps 1e-5) and the backward differentiates through them
        (train mode); bn False: BatchNorm nodes are identities.  params as
        params() makes them."""
        acts = []
        for k, nd in enumerate(self.nodes):
            op = nd["op"]
            xs = [acts[i] for i in nd["inputs"]]
            if op == "batch_norm":
                if not bn:
                    y = xs[0]
                else:
                    z = xs[0]
                    dims = (0, 2, 3) if z.dim() == 4 else (0,)
                    view = (1, -1, 1, 1) if z.dim() == 4 else (1, -1)
                    mean = z.mean(dims)
                    var = z.var(dims, unbiased=False)
                    y = ((z - mean.reshape(view)) *
                         torch.rsqrt(var + 1e-5).reshape(view) *
                         params["g%d" % k].reshape(view) +
                         params["beta%d" % k].reshape(view))
            elif op == "input":
                y = x
            elif op == "linear":
                y = F.linear(xs[0].reshape(xs[0].shape[0], -1),
                             params["w%d" % k], params.get("b%d" % k))
            elif op == "conv":
                y = conv(nd, xs[0], params["w%d" % k])
            else:
                y = parameter_free_op(nd, xs)
            acts.append(y)
        return acts

    def weight_layers(self):
        """Indices of the conv and linear nodes (the layers of the peer
        proxies), in node order."""
        return [k for k, nd in enumerate(self.nodes)
                if nd["op"] in ("conv", "linear")]
