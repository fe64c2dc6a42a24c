#!/usr/bin/env python3
"""test_http_cells.py: the nb101 and darts architecture types end to end
through the daemon (issue 12, item 2): small networks of each score a full
scorecard, the normalised request shows the cell in its normal form, and
bad cells get a 422 naming the field.

The cells: an nb101 chain cell in one stack (stem, conv3x3 vertex, head:
parameters counted by hand below) and a darts genotype of pools and skips
in one reduction cell; NAS-Bench-101's Inception-like cell in two stacks
(max-pool, concat), a cell with a truncated vertex (slice), and DARTS-V2
at C = 4 in 1 layer (max-pool, concat) and in 3 (depthwise and dilated
convs, FactorizedReduce's shifted slice).  Prints "N passed, M failed".
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

GROUPS = ("topology", "expressivity", "convergence", "generalization")
SETTINGS = {"linear_regions": {"samples": 200, "repeats": 1},
            "curvature": {"points": 8, "repeats": 1}}
DATA = {"dataset": "synthetic", "input_shape": [3, 16, 16], "batch_size": 8}

CHAIN = {"type": "nb101", "stem_channels": 8, "stacks": 1,
         "cells_per_stack": 1,
         "matrix": [[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]],
         "ops": ["input", "conv3x3-bn-relu", "maxpool3x3", "output"]}
# Vertex 2 is on no input-output path: pruned.  Stem conv 3*3*3*8 + BN 16;
# the input's 1x1 projection into vertex 1, 8*8 + 16; vertex 1's conv
# 3*3*8*8 + 16; dense 8*10 + 10.
CHAIN_PARAMS = 216 + 16 + 64 + 16 + 576 + 16 + 80 + 10

POOLS = {"type": "darts", "channels": 4, "layers": 1, "genotype": {
    "normal": [["skip_connect", 0]] * 8,
    "reduce": [["avg_pool_3x3", 0], ["avg_pool_3x3", 1],
               ["skip_connect", 2], ["avg_pool_3x3", 1],
               ["skip_connect", 3], ["none", 2],
               ["skip_connect", 4], ["skip_connect", 2]],
    "reduce_concat": [5]}}

INCEPTION = {"type": "nb101", "stem_channels": 8, "stacks": 2,
             "cells_per_stack": 1,
             "matrix": [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1],
                        [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
                        [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                        [0, 0, 0, 0, 0, 0, 0]],
             "ops": ["input", "conv1x1-bn-relu", "conv3x3-bn-relu",
                     "conv3x3-bn-relu", "conv3x3-bn-relu", "maxpool3x3",
                     "output"]}

DARTS_V2 = {"type": "darts", "channels": 4, "layers": 1, "genotype": (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")}


def job(arch, seed=1):
    return {"architecture": arch, "data": DATA, "seed": seed,
            "settings": SETTINGS}


class Cells(h.DaemonCase):

    def score(self, arch):
        r = self.d.submit(job(arch))
        self.assertEqual(r.status, 202, r.body)
        done = self.d.wait(r.json["id"], timeout=600)
        self.assertEqual(done["state"], "succeeded", done.get("error"))
        result = done["result"]
        for group in GROUPS:
            self.assertIn(group, result, result.get("warnings"))
        self.assertGreater(result["convergence"]["ntk_lambda_max"], 0)
        return done

    def test_nb101_chain(self):
        done = self.score(CHAIN)
        self.assertEqual(done["result"]["topology"]["params"], CHAIN_PARAMS)
        arch = done["request"]["architecture"]
        self.assertEqual(arch["matrix"], [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
        self.assertEqual(arch["ops"], ["input", "conv3x3-bn-relu", "output"])

    def test_darts_pools(self):
        done = self.score(POOLS)
        # One reduction cell at 2C = 8: preprocessing 12*8 + 16 twice,
        # the parameter-free cell, a linear 8*10 + 10.
        self.assertEqual(done["result"]["topology"]["params"],
                         (3 * 3 * 3 * 12 + 24) + 2 * (12 * 8 + 16) + 90)
        geno = done["request"]["architecture"]["genotype"]
        self.assertEqual(geno["reduce_concat"], [5])
        self.assertEqual(geno["normal_concat"], [2, 3, 4, 5])

    def test_nb101_inception(self):
        self.score(INCEPTION)

    def test_nb101_truncation(self):
        # 5 channels split 2, 2, 1 among the vertices feeding the output:
        # vertex 1 is cut to vertex 3's one channel (a slice).
        arch = {"type": "nb101", "stem_channels": 5, "stacks": 2,
                "cells_per_stack": 1,
                "matrix": [[0, 1, 1, 0, 0], [0, 0, 0, 1, 1],
                           [0, 0, 0, 0, 1], [0, 0, 0, 0, 1],
                           [0, 0, 0, 0, 0]],
                "ops": ["input", "conv3x3-bn-relu", "maxpool3x3",
                        "conv1x1-bn-relu", "output"]}
        self.score(arch)

    def test_darts_v2(self):
        # One (reduction) cell: max-pools, skips and the concat.
        done = self.score(DARTS_V2)
        geno = done["request"]["architecture"]["genotype"]
        self.assertEqual(geno["normal"][7], ["dil_conv_3x3", 2])
        self.assertEqual(done["result"]["topology"]["params"],
                         (3 * 3 * 3 * 12 + 24) + 2 * (12 * 8 + 16) +
                         (32 * 10 + 10))

    def test_darts_v2_three_layers(self):
        # Normal cells too (separable and dilated convs) and
        # FactorizedReduce after the reductions (its shifted slice).
        self.score(dict(DARTS_V2, layers=3))

    def test_bad_cells(self):
        bad = dict(CHAIN, matrix=[[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0],
                                  [0, 0, 0, 0]])
        r = self.d.submit(job(bad))
        self.assertEqual(r.status, 422, r.body)
        self.assertIn("/architecture/matrix/1/0",
                      [e["pointer"] for e in r.json["errors"]])
        bad = dict(POOLS, genotype=dict(POOLS["genotype"],
                                        reduce=[["sep_conv_9x9", 0]] * 8))
        r = self.d.submit(job(bad))
        self.assertEqual(r.status, 422, r.body)
        self.assertIn("/architecture/genotype/reduce/0",
                      [e["pointer"] for e in r.json["errors"]])
        # Images only.
        r = self.d.submit({"architecture": CHAIN,
                           "data": {"input_shape": [64], "batch_size": 8}})
        self.assertEqual(r.status, 422, r.body)


if __name__ == "__main__":
    h.main()
