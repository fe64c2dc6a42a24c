#!/usr/bin/env python3
"""test_python_nas.py: the example NAS controller end to end.

Starts archevald (host backend, 2 workers) on a free loopback port and runs
clients/python/examples/nas_search.py --budget 6 --batch 3 --population 4
--quick against it: random search for the first population, then one
batch of regularised evolution, every architecture a member of one study
that the server ranks; the best so far it prints never gets worse.  Checks that it exits 0, reports both
phases, prints the ranked table with six rows whose rank sums are sorted
and equal the sum of their three ranks, that every row has real scores
(no null linear_regions / ntk_condition / gap_bound), and that the Pareto
front is printed and non-empty; --plot prints a message (or writes the
file) rather than failing.  Also unit-checks the controller's pure parts
(cell strings, mutation, the study's ranks turned to 1 = best).  Prints
"N passed, M failed"; exit 77 when the daemon binary does not exist.
"""

import os
import random
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

EXAMPLE = os.path.join(h.PYTHON_CLIENT_DIR, "examples", "nas_search.py")
sys.path.insert(0, os.path.dirname(EXAMPLE))
import nas_search  # noqa: E402

ROW_RE = re.compile(r"^\s+(\d+)\s+(\|\S+\|)\s+(\S+)\s+(\S+)\s+(\S+)\s+"
                    r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def test_pure_parts():
    ops = ("nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3",
           "none", "nor_conv_3x3")
    h.check(nas_search.cell_string(ops) ==
            "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+"
            "|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
            "cell_string follows the NB201 format (metrics.md 5.1)")
    h.check(not nas_search.has_path(("none",) * 6) and
            nas_search.has_path(("none", "none", "none", "skip_connect",
                                 "none", "none")),
            "has_path: all-none has no path, a 0->3 skip has one")
    rng = random.Random(3)
    parent = ops
    diffs = set()
    for _ in range(50):
        child = nas_search.mutate(parent, rng)
        diffs.add(sum(a != b for a, b in zip(parent, child)))
    h.check(diffs == {1}, "mutate changes exactly one edge's op")

    class Member:
        def __init__(self, job):
            self.job = job

    history = [Member("j_a"), Member("j_b"), Member("j_gone")]
    ranking = {"n": 2, "rank": {"components": [
        {"metric": "m.x"}, {"metric": "m.y"}, {"metric": "m.z"}]},
        "members": [
            {"job": "j_b", "rank": 1, "pareto": True,
             "ranks": {"m.x": 2, "m.y": 2, "m.z": 1.5}},
            {"job": "j_a", "rank": 2, "pareto": False,
             "ranks": {"m.x": 1, "m.y": 1, "m.z": 1.5}}]}
    nas_search.apply_ranking(history, ranking)
    a, b, gone = history
    h.check(b.ranks == (1, 1, 1.5) and a.ranks == (2, 2, 1.5) and
            b.rank_sum == 3.5 and b.pareto and not a.pareto and
            b.position == 1 and gone.position == 3,
            "apply_ranking turns the study's ranks to 1 = best; a failed "
            "member ranks last")


def test_end_to_end(d, tmp):
    plot = os.path.join(tmp, "front.png")
    proc = subprocess.run(
        [sys.executable, EXAMPLE, "--server", d.url, "--budget", "6",
         "--batch", "3", "--population", "4", "--quick",
         "--job-timeout", "600", "--plot", plot],
        capture_output=True, text=True, timeout=900)
    out = proc.stdout
    print(out, flush=True)
    h.check(proc.returncode == 0, "nas_search.py exits 0", proc.stderr)
    h.check("random" in out and "evolution" in out,
            "both phases ran (random search, then evolution)", out)
    rows = [ROW_RE.match(line) for line in out.splitlines()]
    rows = [m for m in rows if m]
    h.check(len(rows) == 6, "the ranked table has 6 rows", out)
    sums = [float(m.group(9)) for m in rows]
    h.check(sums == sorted(sums) and all(
        abs(float(m.group(6)) + float(m.group(7)) + float(m.group(8)) -
            float(m.group(9))) < 1e-6 for m in rows),
        "rows are sorted by the sum of their three ranks")
    h.check(all("null" not in (m.group(3), m.group(4), m.group(5))
                for m in rows),
            "every row has linear_regions, ntk_condition and gap_bound")
    front = re.search(r"Pareto front .*: (\d+) architecture", out)
    h.check(front and int(front.group(1)) >= 1,
            "the Pareto front is printed and non-empty")
    h.check(re.search(r"^study s_", out, re.M), "the search uses a study")
    beats = [int(x) for x in re.findall(r"beats (\d+)\)", out)]
    h.check(len(beats) >= 2 and beats == sorted(beats),
            "the printed best so far never gets worse", beats)
    h.check("Selection bound" in out, "the selection bound is printed")
    h.check(os.path.exists(plot) or "matplotlib is not importable" in out,
            "--plot writes the file or says matplotlib is missing")


def main():
    h.section(test_pure_parts)
    h.require_daemon()
    tmp = tempfile.mkdtemp(prefix="ae-test-nas-")
    d = h.Daemon(store=False)
    if not h.check(d.try_start(), "archevald starts and becomes ready",
                   d.log_tail()):
        h.finish()
    try:
        h.section(test_end_to_end, d, tmp)
    finally:
        status = d.stop()
        h.check(status == 0, "archevald exits 0 on SIGTERM", d.log_tail())
        d.cleanup()
    h.finish()


if __name__ == "__main__":
    main()
