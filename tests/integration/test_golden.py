#!/usr/bin/env python3
"""test_golden.py: the golden corpus; every recorded scorecard is
bit-identical on the code as it is now.

tests/data/golden/requests/NAME.json holds a job request (the body of
POST /v1/jobs) and tests/data/golden/expected/NAME.json the `result` the
daemon gave for it when the corpus was recorded (tests/data/golden/
record.py).  This test starts one archevald as harness.Daemon does
(a temporary store, the host backend), registers the CIFAR-10 sample as
`cifar10` when $AE_SHARED_DATA/cifar10 exists, submits every request in one
POST /v1/jobs:batch, waits for each job and compares its result with the
expected file.

The comparison is on the exact text of every number as the daemon prints
it (shortest round-trip reals, "1.0" for a whole real, integers without a
point): the JSON is read with every number kept as its text, so 0.1 and
0.10000000000000001, or 2 and 2.0, differ.  Object keys are compared as
sets (each key's value compared), arrays element by element.  On a
mismatch the test prints the first differing JSON pointer and both values.

Excluded before recording and before comparing (the only volatile fields;
found by recording the corpus twice, in two daemons, and diffing):
  /provenance/timings_s   wall-clock seconds per group and in total; they
                          change on every run.
Nothing else varies between runs, workers (host:0 and host:1 report the
same "backend": "host") or daemons; provenance.engine_version and
provenance.backend are kept, so a change of either fails the test and must
be a deliberate re-recording.

One OpenBLAS thread per worker, on every machine.  The daemon gives each
host worker cores/host_workers OpenBLAS threads, and the eigenvalues
(ntk_lambda_*, nngp_lambda_min, ntk_analytic_lambda_min, hence
ntk_condition and rate; more rarely curvature and the generalization
bounds) change in the last digits with that count: on this
2-core host, --host-workers 1 (2 BLAS threads) changes 56 of the 59
results, while --host-workers 2 and 3 (1 thread) give the same bits.  So
the daemon runs with --host-workers max(2, online cores), which is the
harness's default of 2 on a 2-core host and 1 BLAS thread anywhere.

One expected set per CPU class.  The float32 numbers are those of the
kernels the CPU runs: with AVX-512F, OpenBLAS's SkylakeX kernels and
archeval's AVX-512 paths (Winograd's 3 x 3 and direct convolutions, the
NTK's Gram kernel);
with AVX2 only, OpenBLAS's Haswell kernels, im2col + sgemm and dsyrk (the
3 x 3 convolutions by Winograd's F(2x2, 3x3) give the same values in
both).  The two sets differ in 699 numbers (723 before those
convolutions were shared, 2026-12-07): by float32 round-off
(ntk_condition and zico up to 6e-5 relative), and entirely in the
near-zero eigenvalues of rank-deficient kernels (duplicated inputs, an
all-`none` cell) and the bounds computed from them.  So
expected/ holds the `avx512` class and expected-avx2/ the `avx2` class,
and the test compares with the set of the class it runs on
(harness.cpu_class(); AE_GOLDEN_CPU_CLASS overrides it).  A CPU with
AVX-512F runs as the avx2 class under AE_CPU_CLASS=avx2 (the daemon's
AVX-512 paths off, OpenBLAS's Haswell kernels; gpu/host/cpu_class.h) and
then gives the avx2 set bit for bit (measured on a Zen 4 against the set
recorded on a Zen 2; since the Winograd convolutions, 2026-12-07, the
avx2 set is recorded that way on a Zen 4, not yet re-checked on an
AVX2-only CPU): test_golden_avx2.sh runs this test so on such a CPU, so
one machine checks both sets.  A class with no
recorded set (a CPU without AVX2, another architecture) skips the whole
test, saying so: record one there with record.py.  Within a class other
library builds (OpenBLAS, libm) may still round otherwise: re-record
(record.py --force) on a new one.

Requests whose data set is missing here are skipped, not failed: cifar10
needs $AE_SHARED_DATA/cifar10, fashion-mnist needs Debian's
dataset-fashion-mnist (the daemon lists what it found in GET /v1/datasets).
Prints "N passed, M failed" (and the skipped count) last; exit 77 when
the daemon was not built.
"""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

GOLDEN_DIR = os.path.join(h.SRCDIR, "tests", "data", "golden")
REQUEST_DIR = os.path.join(GOLDEN_DIR, "requests")
# The expected set of each CPU class (see the header).
CLASS_DIRS = {"avx512": "expected", "avx2": "expected-avx2"}
CPU_CLASS = h.cpu_class()
EXPECTED_DIR = os.path.join(
    GOLDEN_DIR, CLASS_DIRS.get(CPU_CLASS, "expected-" + CPU_CLASS))
SHARED_DATA = os.environ.get(
    "AE_SHARED_DATA", os.path.join(h.SRCDIR, "..", "shared", "data"))
CIFAR = os.path.join(SHARED_DATA, "cifar10")
# Result fields removed before recording and comparing (see the header).
VOLATILE = (("provenance", "timings_s"),)
JOB_TIMEOUT_S = float(os.environ.get("AE_GOLDEN_TIMEOUT_S", "900"))


class Number(str):
    """A JSON number kept as the exact text the daemon printed."""


def loads_exact(text):
    """Parses JSON keeping every number as a Number (its text) and every
    object's key order."""
    return json.loads(text, parse_float=Number, parse_int=Number,
                      parse_constant=Number)


def dumps_exact(value, indent=0):
    """Pretty-prints a value read by loads_exact, numbers as their text."""
    pad = " " * (indent + 1)
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ["%s%s: %s" % (pad, json.dumps(k), dumps_exact(v, indent + 1))
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        if all(not isinstance(v, (dict, list)) for v in value):
            return "[" + ", ".join(dumps_exact(v) for v in value) + "]"
        items = [pad + dumps_exact(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(value)


def strip_volatile(result):
    """Removes the volatile fields from a result (in place); the result."""
    for path in VOLATILE:
        node = result
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return result


def first_difference(expected, got, pointer=""):
    """(pointer, expected, got) of the first difference, or None."""
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in list(expected) + [k for k in got if k not in expected]:
            sub = pointer + "/" + key.replace("~", "~0").replace("/", "~1")
            if key not in got:
                return (sub, expected[key], "(absent)")
            if key not in expected:
                return (sub, "(absent)", got[key])
            diff = first_difference(expected[key], got[key], sub)
            if diff:
                return diff
        return None
    if isinstance(expected, list) and isinstance(got, list):
        for i, (e, g) in enumerate(zip(expected, got)):
            diff = first_difference(e, g, "%s/%d" % (pointer, i))
            if diff:
                return diff
        if len(expected) != len(got):
            n = min(len(expected), len(got))
            return ("%s/%d" % (pointer, n),
                    expected[n] if n < len(expected) else "(absent)",
                    got[n] if n < len(got) else "(absent)")
        return None
    if (type(expected) is not type(got)) or expected != got:
        return (pointer or "/", expected, got)
    return None


def show(value):
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, str) and value in ("(absent)",):
        return value
    return dumps_exact(value) if isinstance(value, (dict, list)) else \
        json.dumps(value)


def corpus_names():
    return sorted(f[:-5] for f in os.listdir(REQUEST_DIR)
                  if f.endswith(".json"))


def load_request(name):
    with open(os.path.join(REQUEST_DIR, name + ".json")) as f:
        return json.load(f)


def dataset_of(request):
    data = request.get("data") or {}
    if "inputs" in data:
        return "inline"
    return data.get("dataset", "synthetic")


def host_workers():
    """Workers such that each gets one OpenBLAS thread (see the header)."""
    try:
        cores = os.sysconf("SC_NPROCESSORS_ONLN")
    except (ValueError, OSError):
        cores = 1
    return max(2, cores)


def start_daemon():
    """A daemon as the corpus was recorded with; the caller cleans up."""
    return h.Daemon(*daemon_args(), host_workers=host_workers())


def daemon_args():
    """The daemon's extra flags: the CIFAR-10 sample when it is here."""
    return ["--dataset", "cifar10=" + CIFAR] if os.path.isdir(CIFAR) else []


def available_datasets(daemon):
    r = daemon.call("GET", "/v1/datasets")
    if r.status != 200:
        raise AssertionError("GET /v1/datasets: %d %r" % (r.status, r.body))
    return {d["name"] for d in r.json["datasets"]} | {"inline", "synthetic"}


def run_corpus(daemon, names):
    """Submits the named requests in one batch; {name: (state, raw job
    text)} once every job is terminal."""
    body = {"jobs": [load_request(n) for n in names]}
    r = daemon.call("POST", "/v1/jobs:batch", body, timeout=120)
    if r.status != 202:
        raise AssertionError("POST /v1/jobs:batch: %d %s" % (
            r.status, r.body.decode("utf-8", "replace")))
    ids = [job["id"] for job in r.json["jobs"]]
    out = {}
    deadline = time.monotonic() + JOB_TIMEOUT_S
    for name, job_id in zip(names, ids):
        while True:
            if time.monotonic() > deadline:
                raise AssertionError("job %s (%s) did not finish" % (
                    job_id, name))
            g = daemon.call("GET", "/v1/jobs/%s?wait_ms=5000" % job_id)
            if g.status != 200:
                raise AssertionError("GET %s: %d" % (job_id, g.status))
            job = loads_exact(g.body.decode("utf-8"))
            if job["state"] in h.TERMINAL:
                out[name] = job
                break
    return out


class Golden(unittest.TestCase):
    """One test per corpus entry, added below; the corpus runs once."""

    jobs = None
    datasets = None

    @classmethod
    def setUpClass(cls):
        cls.d = start_daemon().start()
        cls.datasets = available_datasets(cls.d)
        names = [n for n in corpus_names()
                 if dataset_of(load_request(n)) in cls.datasets]
        started = time.monotonic()
        cls.jobs = run_corpus(cls.d, names)
        print("golden: %d jobs in %.1f s" % (
            len(names), time.monotonic() - started), flush=True)

    @classmethod
    def tearDownClass(cls):
        status = cls.d.stop()
        log = cls.d.log_tail()
        cls.d.cleanup()
        if status != 0:
            raise AssertionError("exit status %r\n%s" % (status, log))

    def test_daemon_runs_as_the_class(self):
        """The daemon's start line names the class compared with (unless
        AE_GOLDEN_CPU_CLASS forces the comparison)."""
        if os.environ.get("AE_GOLDEN_CPU_CLASS"):
            self.skipTest("AE_GOLDEN_CPU_CLASS set")
        self.assertIn("(host kernels: the %s class)" % CPU_CLASS,
                      self.d.log_text())

    def check(self, name):
        dataset = dataset_of(load_request(name))
        if dataset not in self.datasets:
            self.skipTest("data set %s not available here" % dataset)
        path = os.path.join(EXPECTED_DIR, name + ".json")
        self.assertTrue(os.path.exists(path), "no expected file " + path)
        with open(path) as f:
            expected = loads_exact(f.read())
        job = self.jobs[name]
        self.assertEqual(job["state"], "succeeded",
                         "%s: %s" % (name, show(job.get("error"))))
        got = strip_volatile(job["result"])
        diff = first_difference(expected, got)
        if diff:
            self.fail("%s differs at %s: expected %s, got %s" % (
                name, diff[0], show(diff[1]), show(diff[2])))


def add_tests():
    for name in corpus_names():
        def test(self, name=name):
            self.check(name)
        setattr(Golden, "test_" + name.replace("-", "_"), test)


add_tests()


class CorpusShape(unittest.TestCase):
    """The corpus itself: every request has its expected file and back."""

    def test_pairs(self):
        requests = set(corpus_names())
        self.assertGreaterEqual(len(requests), 40)
        for cls, folder in sorted(CLASS_DIRS.items()):
            expected = {f[:-5] for f in
                        os.listdir(os.path.join(GOLDEN_DIR, folder))
                        if f.endswith(".json")}
            self.assertEqual(requests, expected, "class " + cls)


def main():
    """Like harness.main, and the skipped count after the failures."""
    if not os.access(h.DAEMON, os.X_OK):
        print("archevald not built at %s: skipped" % h.DAEMON)
        print("0 passed, 0 failed")
        sys.exit(77)
    if not os.path.isdir(EXPECTED_DIR):
        print("no golden corpus recorded for CPU class %s (%s): skipped; "
              "record one with tests/data/golden/record.py" % (
                  CPU_CLASS, EXPECTED_DIR))
        print("0 passed, 0 failed")
        sys.exit(77)
    print("CPU class %s: comparing with %s" % (
        CPU_CLASS, os.path.relpath(EXPECTED_DIR, h.SRCDIR)), flush=True)
    suite = unittest.defaultTestLoader.loadTestsFromModule(
        sys.modules["__main__"])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(
        suite)
    bad = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    print("%d passed, %d failed, %d skipped" % (
        result.testsRun - bad - skipped, bad, skipped), flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
