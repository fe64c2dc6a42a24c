#!/usr/bin/env python3
"""test_fleet_studies.py: studies under --fleet (issue 15): two archevald
replicas A and B sharing one PostgreSQL store, on the cluster
tests/pg_cluster.sh starts (test_fleet_studies_pg.sh runs this).

Checks:
- a study created on A is read on B (same resource), and one created on
  B is listed on A, newest first;
- 12 NB201 cells (profile fast, small data) added on B run on the fleet's
  workers; polling A sees every member end (progress 1.0, counts from the
  store, whichever replica ran them), and both replicas ran some;
- an Idempotency-Key replayed on A for an add sent to B returns B's jobs;
- the ranking read on A equals the one read on B, and equals
  `archeval rank --json` computed offline on the members' job resources;
- a member added later (on A) makes the ranking on B grow (no stale
  ranking kept by a replica);
- a delete on B is seen on A (404 for the study and its members, gone
  from the listing).
- a study deleted on B right after 8 members were added on A: its queued
  members are cancelled in the store, running ones on either replica are
  asked to stop; every member ends or is gone.

Environment: AE_BUILDDIR, AE_TEST_PG_URL (skips, 77, without it).  Prints
"N passed, M failed" last; python3 stdlib only.
"""

import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

check = h.check
PG_URL = os.environ.get("AE_TEST_PG_URL")
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
       "avg_pool_3x3")
STUDY = {"name": "fleet-nb201", "profile": "fast",
         "data": {"batch_size": 8}, "seed": 5}


def cells(n, offset=7):
    """n distinct NB201 cells spread over the space, distinct networks
    too (no "none" edge: every edge kept, no two cells of one canonical
    form, so that no member waits for an identical one)."""
    out = []
    for k, ops in enumerate(itertools.product(OPS, repeat=6)):
        if k % 31 == offset % 31 and "nor_conv_3x3" in ops and \
                "none" not in ops:
            out.append({"type": "nb201", "channels": 4,
                        "cells_per_stage": 1,
                        "cell": "|%s~0|+|%s~0|%s~1|+|%s~0|%s~1|%s~2|" % ops})
        if len(out) == n:
            break
    return out


def replica(name):
    return h.Daemon("--store", PG_URL, "--fleet", "--replica-id", name,
                    "--lease-secs", "2", host_workers=1, name=name)


def claimed(d):
    return set(re.findall(r"job (j_\w+) claimed by replica", d.log_text()))


def wait_study(d, sid, n, timeout=600):
    deadline = time.monotonic() + timeout
    r = None
    while time.monotonic() < deadline:
        r = d.call("GET", "/v1/studies/%s" % sid)
        if (r.status == 200 and r.json["members"] == n
                and r.json["progress"] >= 1.0):
            return r.json
        time.sleep(0.3)
    return r.json if r else None


def test_studies(a, b, workdir):
    r = a.call("POST", "/v1/studies", STUDY)
    check(r.status == 201, "create on A: 201", r.body[:300])
    if r.status != 201:
        return
    sid = r.json["id"]
    gb = b.call("GET", "/v1/studies/%s" % sid)
    check(gb.status == 200 and gb.json == r.json,
          "B reads the study created on A", gb.body[:300])
    other = b.call("POST", "/v1/studies", dict(STUDY, name="on-b"))
    check(other.status == 201, "create on B: 201", other.body[:300])
    la = a.call("GET", "/v1/studies")
    got = [s["id"] for s in la.json["studies"]] if la.status == 200 else []
    check(got[:2] == [other.json["id"], sid],
          "A lists both studies, newest first", got)

    archs = cells(12)
    ra = b.call("POST", "/v1/studies/%s/architectures" % sid,
                {"architectures": archs},
                headers={"Idempotency-Key": "fleet-add"})
    check(ra.status == 202 and len(ra.json["jobs"]) == 12,
          "12 cells added on B: 202", ra.body[:300])
    if ra.status != 202:
        return
    job_ids = [j["id"] for j in ra.json["jobs"]]
    check(len({j["canonical"] for j in ra.json["jobs"]}) == 12,
          "12 distinct networks")
    check(all(j["study"] == sid for j in ra.json["jobs"]),
          "each member names the study")
    replay = a.call("POST", "/v1/studies/%s/architectures" % sid,
                    {"architectures": archs},
                    headers={"Idempotency-Key": "fleet-add"})
    check(replay.status == 202 and
          [j["id"] for j in replay.json["jobs"]] == job_ids,
          "the add's key replayed on A returns B's jobs", replay.body[:300])
    mismatch = a.call("POST", "/v1/studies/%s/architectures" % sid,
                      {"architectures": archs[:2]},
                      headers={"Idempotency-Key": "fleet-add"})
    check(mismatch.status == 422, "the key with another body on A: 422",
          mismatch.status)

    state = wait_study(a, sid, 12)
    check(state and state["counts"]["succeeded"] == 12
          and state["progress"] == 1.0,
          "A sees every member succeed (polling A)",
          state and state["counts"])
    ran_a, ran_b = claimed(a) & set(job_ids), claimed(b) & set(job_ids)
    h.log("members run on A: %d, on B: %d" % (len(ran_a), len(ran_b)))
    check(len(ran_a | ran_b) == 12 and ran_a and ran_b,
          "both replicas ran members (A %d, B %d)" % (len(ran_a), len(ran_b)))
    check(b.call("GET", "/v1/studies/%s" % sid).json == state,
          "B shows the same study as A")

    rka = a.call("GET", "/v1/studies/%s/ranking" % sid)
    rkb = b.call("GET", "/v1/studies/%s/ranking" % sid)
    check(rka.status == 200 and rka.json["n"] == 12,
          "ranking on A: every member", rka.body[:300])
    check(rkb.status == 200 and rka.json == rkb.json,
          "the ranking on A equals the ranking on B")
    csv_a = a.call("GET", "/v1/studies/%s/ranking?format=csv" % sid)
    csv_b = b.call("GET", "/v1/studies/%s/ranking?format=csv" % sid)
    check(csv_a.status == 200 and csv_a.body == csv_b.body,
          "the csv export is the same on A and B")
    members = rka.json.get("members", []) if rka.status == 200 else []
    check(sorted(m["job"] for m in members) == sorted(job_ids),
          "the ranking names every member's job")
    resources = [a.call("GET", "/v1/jobs/%s" % j).json for j in job_ids]
    path = h.write_json(workdir, "members.json", resources)
    out = subprocess.run([h.CLI, "rank", "--json", path],
                         capture_output=True, text=True, timeout=120)
    check(out.returncode == 0, "archeval rank runs", out.stderr[-300:])
    offline = json.loads(out.stdout) if out.returncode == 0 else {}
    by_job = {m["job"]: m for m in members}

    def offline_job(m):
        ident = m["id"]
        return job_ids[ident] if isinstance(ident, int) else ident

    same = len(offline.get("members", [])) == 12
    for m in offline.get("members", []):
        mine = by_job.get(offline_job(m))
        for field in ("score", "rank", "ranks", "aspect_ranks", "pareto"):
            if not mine or mine[field] != m[field]:
                same = False
                h.log("differs: %s %s %s" % (field, mine and mine[field],
                                             m[field]))
    check(same, "the fleet's ranking equals `archeval rank` offline "
          "(scores, ranks, aspect ranks, Pareto)")

    # One more member, added on A: B's ranking grows (nothing stale).
    more = a.call("POST", "/v1/studies/%s/architectures" % sid,
                  {"architectures": cells(1, offset=40)})
    check(more.status == 202, "a 13th member added on A", more.body[:300])
    state = wait_study(b, sid, 13)
    check(state and state["counts"]["succeeded"] == 13,
          "B sees the 13th member end", state and state["counts"])
    rkb = b.call("GET", "/v1/studies/%s/ranking" % sid)
    check(rkb.status == 200 and rkb.json["n"] == 13,
          "B's ranking has the 13th member", rkb.body[:200])
    check(a.call("GET", "/v1/studies/%s/ranking" % sid).json == rkb.json,
          "A's ranking equals B's again")

    # Delete on B, seen on A.
    d = b.call("DELETE", "/v1/studies/%s" % sid)
    check(d.status == 204, "delete on B: 204", d.status)
    check(a.call("GET", "/v1/studies/%s" % sid).status == 404,
          "A: the study is gone (404)")
    check(a.call("GET", "/v1/studies/%s/ranking" % sid).status == 404,
          "A: its ranking is gone (404)")
    check(a.call("POST", "/v1/studies/%s/architectures" % sid,
                 {"architectures": archs[:1]}).status == 404,
          "A: no adding to a deleted study (404)")
    # Whichever replica ran them (and holds them in memory).
    for rep in (a, b):
        gone = [rep.call("GET", "/v1/jobs/%s" % j).status for j in job_ids]
        check(gone == [404] * len(job_ids),
              "%s: its members are gone (404)" % rep.name, gone)
    la = a.call("GET", "/v1/studies")
    check(la.status == 200 and
          [s["id"] for s in la.json["studies"]] == [other.json["id"]],
          "A lists only the other study", la.body[:300])

    # A study deleted on B while its members are queued or running on
    # either replica: they are cancelled there (or end), none stays queued.
    oid = other.json["id"]
    r = a.call("POST", "/v1/studies/%s/architectures" % oid,
               {"architectures": cells(8, offset=11)})
    check(r.status == 202, "8 members added to the other study on A",
          r.body[:300])
    ids = [j["id"] for j in r.json["jobs"]] if r.status == 202 else []
    d = b.call("DELETE", "/v1/studies/%s" % oid)
    check(d.status == 204, "delete on B right away: 204", d.status)
    check(a.call("GET", "/v1/studies/%s" % oid).status == 404,
          "A: the other study is gone (404)")
    ends = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(ends) < len(ids):
        for jid in ids:
            if jid in ends:
                continue
            g = a.call("GET", "/v1/jobs/%s" % jid)
            if g.status == 404:
                ends[jid] = "gone"
            elif g.status == 200 and g.json["state"] in h.TERMINAL:
                ends[jid] = g.json["state"]
        time.sleep(0.2)
    h.log("members of the deleted study: %s"
          % sorted(ends.values()))
    check(len(ends) == len(ids),
          "every member of the deleted study is gone or ended", ends)


def main():
    if not PG_URL:
        h.skip("no AE_TEST_PG_URL (run through test_fleet_studies_pg.sh)")
    h.require_daemon()
    if not os.access(h.CLI, os.X_OK):
        h.skip("no CLI at %s" % h.CLI)
    a, b = replica("A"), replica("B")
    workdir = tempfile.mkdtemp(prefix="ae-fleet-studies-")
    started = []
    try:
        for d in (a, b):
            if not d.try_start():
                check(False, "replica %s starts" % d.name, d.log_tail())
                return h.finish()
            started.append(d)
        h.section(test_studies, a, b, workdir)
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
