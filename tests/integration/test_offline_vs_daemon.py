#!/usr/bin/env python3
"""test_offline_vs_daemon.py: the offline CLI (`archeval score`) and the
daemon give bit-identical scorecards for the same request and seed
(issue 17): nb201 on CIFAR-10 samples, mlp_dag on Fashion-MNIST, and a
graph, each scored by `archeval score` and by an archevald whose workers
may use several BLAS threads (one host worker on a multi-core machine).
Every number of the result must match exactly (timings aside).  A request
whose dataset is missing here is skipped.  Prints "N passed, M failed".
"""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CLI = h.CLI
SHARED = os.environ.get("AE_SHARED_DATA") or os.path.join(
    h.SRCDIR, "..", "shared", "data")
CIFAR10 = os.path.join(SHARED, "cifar10")
FASHION = os.environ.get("ARCHEVAL_FASHION_MNIST",
                         "/usr/share/datasets/fashion-mnist")

SETTINGS = {"linear_regions": {"samples": 500, "repeats": 2},
            "curvature": {"points": 32, "repeats": 2},
            "ntk": {"repeats": 2}}

REQUESTS = {
    "nb201_cifar10": ({"architecture": {
        "type": "nb201", "channels": 8, "cells_per_stage": 1,
        "cell": "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|"
                "+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"},
        "data": {"dataset": "cifar10", "batch_size": 48}, "seed": 11,
        "settings": SETTINGS}, "cifar10"),
    "mlp_dag_fashion_mnist": ({"architecture": {
        "type": "mlp_dag", "dag": "2_21_112", "width": 64},
        "data": {"dataset": "fashion-mnist", "batch_size": 64}, "seed": 5,
        "settings": SETTINGS}, "fashion-mnist"),
    "mlp_dag_synthetic": ({"architecture": {
        "type": "mlp_dag", "dag": "2_21_112", "width": 128,
        "activation": "tanh"},
        "data": {"batch_size": 96, "input_shape": [64]}, "seed": 2,
        "settings": SETTINGS}, None),
}


def graph_request():
    """The graph example of tests/data/examples, on CIFAR-10 samples."""
    path = os.path.join(h.SRCDIR, "tests", "data", "examples",
                        "graph_resnet.json")
    with open(path) as f:
        req = json.load(f)
    req["data"] = {"dataset": "cifar10", "batch_size": 32}
    req["seed"] = 9
    req["settings"] = SETTINGS
    return req


def dataset_available(name):
    if name is None:
        return True
    if name == "cifar10":
        return os.path.isdir(CIFAR10)
    return os.path.isdir(FASHION)


def without_timings(result):
    r = json.loads(json.dumps(result))
    r.get("provenance", {}).pop("timings_s", None)
    return json.dumps(r, sort_keys=True)


def dataset_flags():
    return (["--dataset", "cifar10=" + CIFAR10]
            if os.path.isdir(CIFAR10) else [])


class OfflineVsDaemon(h.DaemonCase):
    @classmethod
    def new_daemon(cls):
        if not os.access(CLI, os.X_OK):
            raise unittest.SkipTest("archeval not built")
        cls.requests = dict(REQUESTS)
        cls.requests["graph_cifar10"] = (graph_request(), "cifar10")
        # One host worker: on a machine with several cores it may use them
        # all for BLAS, where the CLI uses one thread.
        return h.Daemon(*dataset_flags(), host_workers=1)

    def offline(self, request):
        p = subprocess.run([CLI, "score"] + dataset_flags() + ["-"],
                           input=json.dumps(request).encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        line = json.loads(p.stdout.decode().splitlines()[0])
        self.assertIn("result", line, line)
        return line["result"]

    def daemon(self, request):
        r = self.d.submit(request)
        self.assertEqual(r.status, 202, r.body)
        done = self.d.wait(r.json["id"], timeout=600)
        self.assertEqual(done["state"], "succeeded", done.get("error"))
        return done["result"]

    def check(self, name):
        request, dataset = self.requests[name]
        if not dataset_available(dataset):
            self.skipTest("dataset %s not available here" % dataset)
        a = without_timings(self.offline(request))
        b = without_timings(self.daemon(request))
        self.assertEqual(a, b, "%s: offline and daemon differ" % name)

    def test_nb201_cifar10(self):
        self.check("nb201_cifar10")

    def test_mlp_dag_fashion_mnist(self):
        self.check("mlp_dag_fashion_mnist")

    def test_mlp_dag_synthetic(self):
        self.check("mlp_dag_synthetic")

    def test_graph_cifar10(self):
        self.check("graph_cifar10")


if __name__ == "__main__":
    h.main()
