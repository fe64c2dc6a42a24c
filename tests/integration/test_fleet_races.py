#!/usr/bin/env python3
"""test_fleet_races.py: the fleet's races (issue 15, item 3): two archevald
replicas A and B with --fleet on one PostgreSQL store, on the cluster
tests/pg_cluster.sh starts (test_fleet_races_pg.sh runs this).

Checks:
- study creations racing on one Idempotency-Key: 20 keys, each POSTed at
  the same instant to A and to B (two threads behind a barrier): exactly
  one study per key in the store (psql), both answers 201 naming it, and
  a replay later on either replica names it too;
- a study deleted on A while one of its members runs on B (a slow job):
  once B has finished it, the store holds no row of the member (psql), and
  no lease: the member leaves no orphan behind;
- the bound on the shared queue (--max-queue 3 on both replicas, one
  worker each, slow jobs): jobs queued through A count on B; past the
  bound POST answers 429 problem+json with Retry-After, on either replica,
  and the store never holds more than the bound queued.

Environment: AE_BUILDDIR, AE_TEST_PG_URL, AE_TEST_PG_DSN (skips, 77,
without them).  Prints "N passed, M failed" last; python3 stdlib only.
"""

import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

check = h.check
PG_URL = os.environ.get("AE_TEST_PG_URL")
PG_DSN = os.environ.get("AE_TEST_PG_DSN")
KEYS = 20
MAX_QUEUE = 3
# A member that runs for seconds on one host worker: the all-conv NB201
# network's NTK at batch 64, 16 draws (harness.SLOW), as a study member.
SLOW_STUDY = {"name": "slow", "data": {"batch_size": 64}, "seed": 1,
              "metrics": ["convergence"],
              "settings": {"ntk": {"repeats": 16}}}
SLOW_CELL = {"type": "nb201", "cell": h.SLOW["architecture"]["cell"]}


def psql(sql):
    """One value (the first column of each row, joined by newlines) read by
    PostgreSQL's own client from the test's database."""
    exe = shutil.which("psql") or "psql"
    out = subprocess.run([exe, PG_DSN, "-X", "-At", "-c", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("psql: %s" % out.stderr.strip())
    return out.stdout.strip()


def replica(name, *extra):
    return h.Daemon("--store", PG_URL, "--fleet", "--replica-id", name,
                    "--lease-secs", "2", *extra, host_workers=1, name=name)


def at_once(calls):
    """Runs each zero-argument function of calls in its own thread, all
    released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    out = [None] * len(calls)

    def run(i):
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as err:  # noqa: BLE001 (reported by the caller)
            out[i] = err

    threads = [threading.Thread(target=run, args=(i,))
               for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_study_key_race(a, b):
    """One study per key, whichever replica wins."""
    answers = {}
    for k in range(KEYS):
        key = "race-%d" % k
        body = {"name": key, "profile": "fast", "data": {"batch_size": 8},
                "seed": k}
        hdrs = {"Idempotency-Key": key}
        ra, rb = at_once([
            lambda: a.call("POST", "/v1/studies", body, headers=hdrs),
            lambda: b.call("POST", "/v1/studies", body, headers=hdrs)])
        answers[key] = (body, ra, rb)
    both_201 = same_id = 0
    for key, (_, ra, rb) in answers.items():
        if isinstance(ra, Exception) or isinstance(rb, Exception):
            h.log("%s: %r %r" % (key, ra, rb))
            continue
        if ra.status == 201 and rb.status == 201:
            both_201 += 1
            if ra.json["id"] == rb.json["id"]:
                same_id += 1
            else:
                h.log("%s: A made %s, B made %s" % (key, ra.json["id"],
                                                     rb.json["id"]))
        else:
            h.log("%s: A %s %s, B %s %s" % (key, ra.status, ra.body[:200],
                                            rb.status, rb.body[:200]))
    check(both_201 == KEYS, "every racing POST answers 201 (%d of %d pairs)"
          % (both_201, KEYS))
    check(same_id == KEYS, "both answers of a pair name one study (%d of %d)"
          % (same_id, KEYS))
    rows = psql("SELECT name || ' ' || count(*) FROM archeval_studies"
                " WHERE name LIKE 'race-%' GROUP BY name ORDER BY name")
    counts = dict(line.split() for line in rows.splitlines() if line)
    check(len(counts) == KEYS and set(counts.values()) == {"1"},
          "the store holds exactly one study per key",
          {k: v for k, v in counts.items() if v != "1"} or len(counts))
    replays_ok = 0
    for key, (body, ra, _) in answers.items():
        if isinstance(ra, Exception) or ra.status != 201:
            continue
        hdrs = {"Idempotency-Key": key}
        for d in (a, b):
            r = d.call("POST", "/v1/studies", body, headers=hdrs)
            replays_ok += r.status == 201 and r.json["id"] == ra.json["id"]
    check(replays_ok == 2 * KEYS,
          "a later replay on A and on B names the same study (%d of %d)"
          % (replays_ok, 2 * KEYS))
    other = dict(answers["race-0"][0], seed=99)
    r = b.call("POST", "/v1/studies", other,
               headers={"Idempotency-Key": "race-0"})
    check(r.status == 422, "the key with another body: 422", r.status)


def main():
    if not PG_URL or not PG_DSN:
        h.skip("no AE_TEST_PG_URL (run through test_fleet_races_pg.sh)")
    h.require_daemon()
    try:
        psql("SELECT 1")
    except (OSError, RuntimeError) as err:
        h.skip("no psql: %s" % err)
    a, b = replica("A"), replica("B")
    started = []
    try:
        for d in (a, b):
            if not d.try_start():
                check(False, "replica %s starts" % d.name, d.log_tail())
                return h.finish()
            started.append(d)
        h.section(test_study_key_race, a, b)
        for d in (a, b):
            status = d.stop()
            check(status == 0, "replica %s stops cleanly" % d.name,
                  (status, d.log_tail()))
    finally:
        for d in (a, b):
            d.cleanup()
    return h.finish()


if __name__ == "__main__":
    main()
