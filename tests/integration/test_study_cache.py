#!/usr/bin/env python3
"""test_study_cache.py: the result cache and dedup of issue 13, on NB201.

All 15,625 NAS-Bench-201 cell strings go into one study (topology metrics,
a tiny network so that each job takes milliseconds); the daemon must
compute only one job per distinct canonical network, the others finishing
as cached, and the number of distinct networks must equal the count of
an enumeration written here, independently of api/canon.c: each cell is
turned into an expression over parameter instances (zero propagation,
skips inlined, sums as multisets, parameter-free ops on one value shared,
convs each their own instance), and the canonical form is the smallest
serialisation over every renaming of instances that look alike (a brute
force over the permutations of each tie group, not colour refinement).
A second identical study must then be served entirely from the cache, and
so must the same study after a SIGKILL and restart (the cache is in the
store).

Environment: AE_BUILDDIR; AE_CACHE_CELLS=N runs only the first N cells
(the count is then checked on those).  Under the sanitizer build
(AE_SANITIZERS=1) every seventh cell runs (2,233, every op on every
edge; the same checks on those) and the in-flight jobs are smaller
(batches of 32 and 16, one NTK repeat instead of three and two): there
this test took four of CI's minutes, mostly those jobs.  The plain build
runs it all.  Exit 77 without the daemon.
Prints "N passed, M failed" last; python3 stdlib only.
"""

import http.client
import itertools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
       "avg_pool_3x3")
CELLS = int(os.environ.get("AE_CACHE_CELLS", "15625"))
STRIDE = 7 if h.SANITIZERS else 1
BATCH = 256
# The daemon's --max-batch default is 256 architectures per request.
ARCH_EXTRA = {"channels": 4, "cells_per_stage": 1}


def all_cells():
    """The 15,625 cell strings in NAS-Bench-201's order of edges."""
    for ops in itertools.product(OPS, repeat=6):
        yield ("|%s~0|+|%s~0|%s~1|+|%s~0|%s~1|%s~2|" % ops), ops


# ---- the independent enumeration ------------------------------------------

def cell_expression(ops):
    """The output value of a cell: None (identically zero) or a sorted
    tuple of atoms with repeats; an atom is "x" (the input) or an
    instance index into the returned list of (op, input value, shared)."""
    edges = {1: [(0, ops[0])], 2: [(0, ops[1]), (1, ops[2])],
             3: [(0, ops[3]), (1, ops[4]), (2, ops[5])]}
    instances = []
    pooled = {}  # (op, value) -> instance: parameter-free ops share
    values = {0: ("x",)}
    for node in (1, 2, 3):
        atoms = []
        for src, op in edges[node]:
            value = values[src]
            if op == "none" or value is None:
                continue
            if op == "skip_connect":
                atoms.extend(value)
                continue
            if op == "avg_pool_3x3":
                key = (op, value)
                if key not in pooled:
                    pooled[key] = len(instances)
                    instances.append((op, value, True))
                atoms.append(pooled[key])
                continue
            atoms.append(len(instances))
            instances.append((op, value, False))
        values[node] = tuple(sorted(atoms, key=str)) if atoms else None
    return values[3], instances


def serialise(value, instances, labels):
    parts = []
    for atom in value:
        if atom == "x":
            parts.append("x")
            continue
        op, src, _ = instances[atom]
        parts.append("%s@%s(%s)" % (op, labels.get(atom, ""),
                                    serialise(src, instances, labels)))
    return "+".join(sorted(parts))


def canonical(ops):
    value, instances = cell_expression(ops)
    if value is None:
        return "degenerate"
    # Instances reachable from the output.
    reach, stack = set(), [value]
    while stack:
        for atom in stack.pop():
            if atom != "x" and atom not in reach:
                reach.add(atom)
                stack.append(instances[atom][1])
    # Convs that look alike (same label-free expression) may be renamed
    # among themselves: try every renaming, keep the smallest form.
    free = {}
    for k in reach:
        if not instances[k][2]:
            plain = "%s(%s)" % (instances[k][0],
                                serialise(instances[k][1], instances, {}))
            free.setdefault(plain, []).append(k)
    groups = [sorted(g) for g in free.values() if len(g) > 1]
    best = None
    for perms in itertools.product(
            *[itertools.permutations(g) for g in groups]):
        labels = {}
        for perm in perms:
            for index, k in enumerate(perm):
                labels[k] = str(index)
        form = serialise(value, instances, labels)
        if best is None or form < best:
            best = form
    return best


# ---- the daemon ------------------------------------------------------------

def make_study(d, name):
    r = d.call("POST", "/v1/studies",
               {"name": name, "metrics": ["topology"],
                "data": {"batch_size": 8}, "seed": 11})
    h.check(r.status == 201, "%s created" % name, r.body[:300])
    return r.json["id"]


def add_all(d, study, cells):
    jobs = []
    for start in range(0, len(cells), BATCH):
        archs = [dict(ARCH_EXTRA, type="nb201", cell=c)
                 for c in cells[start:start + BATCH]]
        for attempt in range(100):
            r = d.call("POST", "/v1/studies/%s/architectures" % study,
                       {"architectures": archs},
                       headers={"Idempotency-Key": "add-%d" % start},
                       timeout=120)
            if r.status != 429:
                break
            time.sleep(0.5)
        if r.status != 202:
            h.check(False, "batch at %d added" % start, r.body[:300])
            return jobs
        jobs.extend(r.json["jobs"])
    return jobs


def wait_done(d, study, timeout=900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = d.call("GET", "/v1/studies/%s" % study)
        if r.status == 200 and r.json["progress"] >= 1.0:
            return r.json
        time.sleep(0.5)
    return d.call("GET", "/v1/studies/%s" % study).json


def members(d, study):
    """The ranking's members, from the jsonl export (read raw: the
    harness would parse the whole body as one JSON value)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=300)
    try:
        conn.request("GET", "/v1/studies/%s/ranking?format=jsonl" % study)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    h.check(resp.status == 200, "ranking export answers", body[:300])
    return [json.loads(line) for line in body.decode().splitlines() if line]


def test_in_flight(d):
    """A study member identical to a job still running waits for it:
    cancelled while it waits it ends at once; when the running one is
    cancelled, the next waiting one computes instead (not cached); then
    the same request is a cache hit.  Two identical plain jobs submitted
    together both compute; one submitted after the first succeeded is
    served from the cache."""
    slow = dict(h.SLOW, seed=99,
                settings={"ntk": {"repeats": 1 if h.SANITIZERS else 3}})
    if h.SANITIZERS:
        slow["data"] = {"batch_size": 32}
    lead = d.submit(slow).json
    study = d.call("POST", "/v1/studies", {
        "name": "in-flight", "data": slow["data"], "seed": slow["seed"],
        "metrics": slow["metrics"], "settings": slow["settings"]}).json
    added = d.call("POST", "/v1/studies/%s/architectures" % study["id"],
                   {"architectures": [slow["architecture"]] * 2}).json
    twin, third = added["jobs"]
    h.check(twin["state"] == "queued" and not twin["cached"] and
            twin["queue_position"] is None and
            twin["canonical"] == lead["canonical"],
            "an identical study member waits, queued", twin)
    r = d.call("POST", "/v1/jobs/%s:cancel" % third["id"])
    h.check(r.status == 200 and r.json["state"] == "cancelled",
            "a waiting job cancels at once", r.body[:200])
    d.call("POST", "/v1/jobs/%s:cancel" % lead["id"])
    h.check(d.wait(lead["id"])["state"] == "cancelled", "the leader cancelled")
    done = d.wait(twin["id"], timeout=300)
    h.check(done["state"] == "succeeded" and not done["cached"] and
            done["started_at"], "the waiting job computed instead", done)
    again = d.submit(slow).json
    h.check(again["state"] == "succeeded" and again["cached"],
            "then the same request is a cache hit", again["state"])
    plain = dict(h.LONG_JOB, seed=5,
                 settings={"ntk": {"repeats": 1 if h.SANITIZERS else 2}})
    if h.SANITIZERS:
        plain["data"] = {"batch_size": 16}
    first = d.submit(plain).json
    second = d.submit(plain).json
    h.check(second["state"] == "queued" and
            second["queue_position"] is not None and not second["cached"],
            "two identical plain jobs at once: both queued to compute")
    a, b = d.wait(first["id"], timeout=300), d.wait(second["id"], timeout=300)
    h.check(a["state"] == b["state"] == "succeeded" and
            not a["cached"] and not b["cached"], "both computed")
    third = d.submit(plain).json
    h.check(third["state"] == "succeeded" and third["cached"] and
            third["result"] == a["result"],
            "a later identical job is served from the cache")


def test_num_classes_spelling(d):
    """An architecture that writes the data's own class count is the one
    that leaves it out: the same canonical key, so a cache hit; another
    count is another request, computed."""
    for arch in ({"type": "mlp_dag", "dag": "2_21_112", "width": 32},
                 {"type": "nb201", "channels": 4, "cells_per_stage": 1,
                  "cell": "|nor_conv_1x1~0|+|skip_connect~0|none~1|"
                          "+|none~0|none~1|skip_connect~2|"}):
        base = {"data": {"batch_size": 8}, "seed": 23,
                "metrics": ["topology", "convergence"]}
        first = d.wait(d.submit(dict(base, architecture=arch)).json["id"],
                       timeout=300)
        h.check(first["state"] == "succeeded", "%s computed" % arch["type"],
                first)
        same = d.submit(dict(base, architecture=dict(arch, num_classes=10)))
        h.check(same.json["state"] == "succeeded" and same.json["cached"] and
                same.json["canonical"] == first["canonical"] and
                same.json["result"] == first["result"],
                "%s: num_classes 10 written out is a cache hit" % arch["type"],
                same.body[:300])
        # On synthetic data the architecture's count is the data's: the
        # canonical form (relative to the data) is the same, the request
        # (7 classes of data) is not.
        other = d.submit(dict(base, architecture=dict(arch, num_classes=7)))
        done = d.wait(other.json["id"], timeout=300)
        h.check(not other.json["cached"] and done["state"] == "succeeded" and
                not done["cached"] and done["result"] != first["result"],
                "%s: num_classes 7 is computed, not a cache hit" %
                arch["type"], other.body[:300])


def main():
    h.require_daemon()
    listed = list(all_cells())[::STRIDE][:CELLS]
    cells = [c for c, _ in listed]
    t0 = time.monotonic()
    forms = {}
    for cell, ops in listed:
        forms[cell] = canonical(ops)
    distinct = len(set(forms.values()))
    h.log("independent enumeration: %d cells, %d distinct networks "
          "(%.1f s)" % (len(cells), distinct, time.monotonic() - t0))
    if CELLS == 15625 and STRIDE == 1:
        h.check(distinct == 5260, "the enumeration finds 5,260 networks",
                distinct)

    d = h.Daemon("--max-queue", "100000")
    if not d.try_start():
        h.check(False, "daemon starts")
        return h.finish()
    try:
        h.section(test_in_flight, d)
        h.section(test_num_classes_spelling, d)
        study = make_study(d, "nb201-all")
        t0 = time.monotonic()
        jobs = add_all(d, study, cells)
        h.check(len(jobs) == len(cells), "every cell is a member",
                (len(jobs), len(cells)))
        state = wait_done(d, study)
        h.log("study done in %.1f s: %s" % (time.monotonic() - t0,
                                              state["counts"]))
        counts = state["counts"]
        h.check(counts["succeeded"] == len(cells), "every member succeeded",
                counts)
        computed = counts["succeeded"] - counts["cached"]
        h.check(computed == distinct,
                "only the distinct canonical networks were computed",
                (computed, distinct))
        rows = members(d, study)
        keys = {}
        for row in rows:
            keys.setdefault(row["canonical"], set()).add(
                forms[row["architecture"]["cell"]])
        h.check(len(keys) == distinct, "as many canonical keys as networks",
                (len(keys), distinct))
        h.check(all(len(v) == 1 for v in keys.values()),
                "no canonical key joins two networks of the enumeration")
        # The same numbers for every member of one network.
        by_key = {}
        for row in rows:
            by_key.setdefault(row["canonical"], set()).add(
                repr(sorted(row["metrics"].items())))
        h.check(all(len(v) == 1 for v in by_key.values()),
                "members of one network have one result")

        second = make_study(d, "nb201-again")
        add_all(d, second, cells[:2000])
        state = wait_done(d, second)
        h.check(state["counts"]["cached"] == min(2000, len(cells)),
                "a second identical study is served from the cache",
                state["counts"])

        # The cache is in the store: it survives SIGKILL.
        h.check(d.restart(), "daemon restarts after SIGKILL")
        third = make_study(d, "nb201-after-restart")
        add_all(d, third, cells[:500])
        state = wait_done(d, third)
        h.check(state["counts"]["cached"] == min(500, len(cells)),
                "after a restart the cache still serves", state["counts"])
        r = d.call("GET", "/v1/studies/%s" % study)
        h.check(r.status == 200 and r.json["members"] == len(cells),
                "the first study kept every member across the restart",
                r.json and r.json.get("members"))
        status = d.stop()
        h.check(status == 0, "the daemon stops cleanly (no sanitizer report)",
              (status, d.log_tail()))
    finally:
        d.cleanup()
    return h.finish()


if __name__ == "__main__":
    main()
