#!/usr/bin/env python3
"""test_cnn_ops.py: a graph using every operator of real CNNs
(tests/data/cnn_ops_graph.json: max_pool with padding, dilation-free and
ceil_mode windows, concat, a squeeze-and-excitation mul with a (C,1,1)
scale, pad, a depthwise dilated conv, a grouped conv, relu6, hardswish,
hardsigmoid) scored end to end through the daemon: a full scorecard of all
four groups, the parameter and multiply-add counts worked out by hand, the
empirical NTK's eigenvalues finite and positive, the curvature computed,
the linear regions absent with a warning (hardswish is not piecewise
linear) and counted once it is replaced by relu6, the analytic kernels
absent with a warning (a conv graph), and the same request twice gives the
same numbers.  A request
naming the ranking metrics gets them all.  Prints "N passed, M failed".
"""

import json
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "..", "data", "cnn_ops_graph.json")) as f:
    GRAPH = json.load(f)

# By hand: stem 3*8*9, depthwise 8*1*9, grouped (8/2)*2*2*8, excitation
# 16*16, fc 16*10 + 10, three BNs of 8 channels (gamma and beta).
PARAMS = 3 * 8 * 9 + 8 * 9 + 4 * 4 * 8 + 16 * 16 + 170 + 3 * 16
# Multiply-adds at 16x16 (the stem has stride 2 on 32x32): stem 27 per
# output, depthwise 9, grouped 16, excitation 16 at 1x1, fc (16 + 1) * 10.
MACS = 27 * 8 * 256 + 9 * 8 * 256 + 16 * 8 * 256 + 16 * 16 + 17 * 10

SETTINGS = {"linear_regions": {"samples": 200, "repeats": 1},
            "curvature": {"points": 16, "repeats": 1}}
REQUEST = {"architecture": GRAPH,
           "data": {"dataset": "synthetic", "input_shape": [3, 32, 32],
                    "batch_size": 16, "num_classes": 10},
           "seed": 5, "settings": SETTINGS}
RANKING = ["expressivity.activation_patterns",
           "expressivity.pattern_kernel_logdet",
           "expressivity.feature_isotropy",
           "convergence.jacobian_trainability",
           "convergence.feature_corr_lambda_min", "proxies.synflow",
           "proxies.grad_norm", "proxies.snip", "proxies.jacob_cov",
           "proxies.zico"]


def without_timings(result):
    r = json.loads(json.dumps(result))
    r["provenance"].pop("timings_s", None)
    return r


def finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


class CnnOps(h.DaemonCase):

    def score(self, request):
        r = self.d.submit(request)
        self.assertEqual(r.status, 202, r.body)
        done = self.d.wait(r.json["id"], timeout=600)
        self.assertEqual(done["state"], "succeeded", done.get("error"))
        return done["result"]

    def test_full_scorecard(self):
        first = self.score(REQUEST)
        for group in ("topology", "expressivity", "convergence",
                      "generalization"):
            self.assertIn(group, first, first.get("warnings"))
        topo = first["topology"]
        self.assertEqual(topo["params"], PARAMS)
        if "macs" in topo:
            self.assertEqual(topo["macs"], MACS)
        self.assertEqual(topo["flops"], 2 * MACS)
        self.assertGreaterEqual(topo["paths"], 4)  # concat, SE and pad paths
        conv = first["convergence"]
        self.assertTrue(finite(conv["ntk_lambda_max"]), conv)
        self.assertGreater(conv["ntk_lambda_max"], 0)
        self.assertTrue(finite(conv["ntk_lambda_min"]), conv)
        self.assertGreaterEqual(conv["ntk_lambda_min"], 0)
        self.assertIsNone(conv["nngp_lambda_min"])
        warnings = " ".join(first["warnings"])
        self.assertIn("nngp_lambda_min", warnings)
        self.assertNotIn("not supported", warnings)
        expr = first["expressivity"]
        self.assertTrue(finite(expr["curvature"]), expr)
        # hardswish is not piecewise linear: no linear regions, said.
        self.assertIsNone(expr["linear_regions"])
        self.assertIn("uses hardswish", warnings)
        self.assertEqual(first["provenance"]["backend"], "host")
        self.assertEqual(without_timings(self.score(REQUEST)),
                         without_timings(first))

    def test_linear_regions_piecewise(self):
        """With relu6 for hardswish the net is piecewise linear (relu6,
        hardsigmoid, relu, max-pools): its sign patterns count regions."""
        graph = json.loads(json.dumps(GRAPH))
        for node in graph["nodes"]:
            if node.get("fn") == "hardswish":
                node["fn"] = "relu6"
        req = dict(REQUEST, architecture=graph,
                   metrics=["expressivity"])
        expr = self.score(req)["expressivity"]
        self.assertTrue(finite(expr["linear_regions"]), expr)
        self.assertGreater(expr["linear_regions"], 1, expr)

    def test_ranking_metrics(self):
        req = dict(REQUEST, metrics=RANKING)
        result = self.score(req)
        for name in RANKING:
            group, metric = name.split(".")
            self.assertIn(group, result, name)
            value = result[group].get(metric)
            self.assertTrue(finite(value), "%s = %r (%s)" % (
                name, value, result.get("warnings")))


if __name__ == "__main__":
    h.main()
