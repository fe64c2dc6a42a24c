#!/usr/bin/env python3
"""record.py: (re)records the golden corpus's expected results.

Usage: AE_BUILDDIR=BUILD [AE_SHARED_DATA=DIR] python3 record.py [--force]
           [NAME...]

For every request in requests/ (or only the NAMEs given) it starts
archevald as tests/integration/test_golden.py does (harness.Daemon
with one OpenBLAS thread per worker, a temporary store, the CIFAR-10
sample from $AE_SHARED_DATA/cifar10 registered as `cifar10`), submits the
corpus in one batch, and does it all again in a second daemon.  Every job
must succeed and both runs must agree to the last digit once the volatile
fields are removed (test_golden.VOLATILE); only then is each result
written to the expected set of this machine's CPU class
(harness.cpu_class(): expected/ for AVX-512, expected-avx2/ for AVX2;
pretty-printed, numbers exactly as the daemon printed them).  A machine
with AVX-512 records both: once as it is, once with AE_CPU_CLASS=avx2 in
the environment (the daemon then runs as the avx2 class,
gpu/host/cpu_class.h; its avx2 numbers were found bit for bit those of
two AVX2-only CPUs, Zen 2 and Zen 3, before the Winograd convolutions;
not re-checked on one since).

Regenerating the corpus is a deliberate act: an existing expected file is
never overwritten without --force, and every data set a request names must
be available (no silent gaps).  Exit status 0 when written, 1 otherwise.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
import harness as h  # noqa: E402
import test_golden as g  # noqa: E402


def one_run(names):
    """Results of the named requests in a fresh daemon, volatile fields
    removed; raises on a failed job or a missing data set."""
    with g.start_daemon() as daemon:
        have = g.available_datasets(daemon)
        missing = sorted({g.dataset_of(g.load_request(n)) for n in names}
                         - have)
        if missing:
            raise SystemExit("data set(s) not available: %s" %
                             ", ".join(missing))
        jobs = g.run_corpus(daemon, names)
        status = daemon.stop()
        if status != 0:
            raise SystemExit("archevald exit status %r\n%s" % (
                status, daemon.log_tail()))
    results = {}
    for name in names:
        job = jobs[name]
        if job["state"] != "succeeded":
            raise SystemExit("%s: %s %s" % (name, job["state"],
                                            g.show(job.get("error"))))
        results[name] = g.strip_volatile(job["result"])
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--force", action="store_true",
                    help="overwrite existing expected files")
    ap.add_argument("names", nargs="*", help="requests to record "
                    "(default: all of requests/)")
    args = ap.parse_args()
    if not os.access(h.DAEMON, os.X_OK):
        raise SystemExit("no archevald at %s (set AE_BUILDDIR)" % h.DAEMON)
    names = args.names or g.corpus_names()
    unknown = [n for n in names if n not in g.corpus_names()]
    if unknown:
        raise SystemExit("no such request: %s" % ", ".join(unknown))
    existing = [n for n in names if os.path.exists(
        os.path.join(g.EXPECTED_DIR, n + ".json"))]
    if existing and not args.force:
        raise SystemExit("%d expected file(s) exist (e.g. %s); regenerating "
                         "is deliberate: pass --force" % (
                             len(existing), existing[0]))
    first = one_run(names)
    second = one_run(names)
    unstable = []
    for name in names:
        diff = g.first_difference(first[name], second[name])
        if diff:
            unstable.append("%s at %s: %s vs %s" % (
                name, diff[0], g.show(diff[1]), g.show(diff[2])))
    if unstable:
        raise SystemExit("two runs differ (a volatile field?):\n  " +
                         "\n  ".join(unstable))
    os.makedirs(g.EXPECTED_DIR, exist_ok=True)
    for name in names:
        with open(os.path.join(g.EXPECTED_DIR, name + ".json"), "w") as f:
            f.write(g.dumps_exact(first[name]) + "\n")
    print("recorded %d result(s) in %s" % (len(names), g.EXPECTED_DIR))


if __name__ == "__main__":
    main()
