#!/usr/bin/env python3
"""test_http_scorecard.py: real scorecards, all four groups, through the
daemon, for an nb201 cell and an mlp_dag; the same request twice gives the
same numbers (provenance timings aside).  Prints "N passed, M failed".
"""

import json
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

GROUPS = ("topology", "expressivity", "convergence", "generalization")
SETTINGS = {"linear_regions": {"samples": 300, "repeats": 1},
            "curvature": {"points": 16, "repeats": 1}}

NB201 = {"architecture": {
    "type": "nb201", "channels": 8, "cells_per_stage": 1,
    "cell": "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|"
            "+|skip_connect~0|none~1|nor_conv_1x1~2|"},
    "data": {"batch_size": 16}, "seed": 3, "settings": SETTINGS}
MLP = {"architecture": {"type": "mlp_dag", "dag": "2_21_112", "width": 64},
       "data": {"batch_size": 16}, "seed": 4, "settings": SETTINGS}


def without_timings(result):
    r = json.loads(json.dumps(result))
    r["provenance"].pop("timings_s", None)
    return r


class Scorecard(h.DaemonCase):

    def score(self, request):
        r = self.d.submit(request)
        self.assertEqual(r.status, 202, r.body)
        done = self.d.wait(r.json["id"], timeout=300)
        self.assertEqual(done["state"], "succeeded", done.get("error"))
        return done["result"]

    def check_card(self, result, request):
        for group in GROUPS:
            self.assertIn(group, result, result.get("warnings"))
        prov = result["provenance"]
        self.assertEqual(prov["backend"], "host")
        self.assertEqual(prov["seed"], request["seed"])
        self.assertEqual(prov["batch_size"], 16)
        self.assertGreater(result["topology"]["params"], 0)
        self.assertGreaterEqual(result["topology"]["paths"], 1)
        lam_max = result["convergence"]["ntk_lambda_max"]
        self.assertTrue(lam_max is None or (math.isfinite(lam_max)
                                            and lam_max > 0))
        self.assertIsInstance(result["warnings"], list)

    def test_nb201(self):
        first = self.score(NB201)
        self.check_card(first, NB201)
        self.assertEqual(first["provenance"]["analytic_mode"], "topological")
        self.assertEqual(without_timings(self.score(NB201)),
                         without_timings(first))

    def test_mlp_dag(self):
        first = self.score(MLP)
        self.check_card(first, MLP)
        self.assertEqual(first["provenance"]["analytic_mode"], "exact")
        self.assertEqual(without_timings(self.score(MLP)),
                         without_timings(first))


if __name__ == "__main__":
    h.main()
