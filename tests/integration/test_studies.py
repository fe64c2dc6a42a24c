#!/usr/bin/env python3
"""test_studies.py: the study resource of api.md "Studies" (issue 13).

Against a real archevald with a SQLite store: create (201, Location,
Idempotency-Key, every validation error naming its field), list (newest
first, paginated), add architectures (all or nothing, idempotent, each
member a job with "study"), counts and progress, the ranking (members,
per-metric ranks, combined and aspect ranks, Pareto front) equal to what
`archeval rank --json` computes offline from the same job resources, its
pages and its csv / jsonl exports, the selection bound, members kept past
the job TTL, a SIGKILL in the middle of a study (no member lost, every
member finishes), and delete (the study and its jobs).

Environment: AE_BUILDDIR; AE_STUDY_CELLS (48) NB201 cells in the ranked
study; AE_STUDIES_ON_PG=1 (tests/integration/test_studies_pg.sh) runs the
daemon on the PostgreSQL store at $AE_TEST_PG_URL.  Exit 77 without the daemon or the CLI.  Prints "N passed, M
failed" last; python3 stdlib only.
"""

import http.client
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CELLS = int(os.environ.get("AE_STUDY_CELLS", "48"))
PG_URL = (os.environ.get("AE_TEST_PG_URL")
          if os.environ.get("AE_STUDIES_ON_PG") == "1" else None)
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
       "avg_pool_3x3")
STUDY = {"name": "nb201-small",
         "metrics": ["topology", "expressivity", "convergence",
                     "generalization"],
         "data": {"batch_size": 8}, "seed": 5}
check = h.check


def cells(n, offset=7):
    """n distinct cells spread over the space (no all-none ones)."""
    out = []
    for k, ops in enumerate(itertools.product(OPS, repeat=6)):
        if k % 31 == offset % 31 and "nor_conv_3x3" in ops:
            out.append({"type": "nb201", "channels": 4,
                        "cells_per_stage": 1,
                        "cell": "|%s~0|+|%s~0|%s~1|+|%s~0|%s~1|%s~2|" % ops})
        if len(out) == n:
            break
    return out


def raw_get(d, path):
    """GET without the harness's JSON parsing: (status, headers, text)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode()
    finally:
        conn.close()


def pointers(r):
    if not r.json:
        return []
    return [e.get("pointer") for e in r.json.get("errors", [])]


def wait_study(d, sid, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = d.call("GET", "/v1/studies/%s" % sid)
        if r.status == 200 and r.json["progress"] >= 1.0:
            return r.json
        time.sleep(0.3)
    return d.call("GET", "/v1/studies/%s" % sid).json


def test_create_and_list(d):
    r = d.call("POST", "/v1/studies", STUDY)
    check(r.status == 201, "create: 201", r.body[:300])
    sid = r.json["id"]
    check(r.header("Location") == "/v1/studies/%s" % sid, "create: Location")
    check(r.json["counts"]["queued"] == 0 and r.json["progress"] == 0,
          "create: an empty study")
    g = d.call("GET", "/v1/studies/%s" % sid)
    check(g.status == 200 and g.json["name"] == STUDY["name"], "get: 200")
    check(g.json["request"]["rank"] == "default", "rank defaults to default")

    bad = [({"metrics": ["topology"]}, "/name"),
           (dict(STUDY, colour="red"), "/colour"),
           (dict(STUDY, rank={"components": ["nope.metric"]}),
            "/rank/components/0"),
           (dict(STUDY, rank={"aggregate": "median"}), "/rank/aggregate"),
           (dict(STUDY, data={"batch_size": 1}), "/data/batch_size"),
           (dict(STUDY, seed=-1), "/seed"),
           (dict(STUDY, name=""), "/name")]
    for body, pointer in bad:
        r = d.call("POST", "/v1/studies", body)
        check(r.status == 422 and pointer in pointers(r),
              "create rejects %s" % pointer, (r.status, r.body[:300]))
    r = d.call("POST", "/v1/studies", {"name": "by profile"})
    check(r.status == 201 and r.json["request"]["profile"] == "rank" and
          "metrics" not in r.json["request"],
          "a study without metrics takes the profile rank", r.body[:300])
    if r.status == 201:
        d.call("DELETE", "/v1/studies/%s" % r.json["id"])
    r = d.call("POST", "/v1/studies", {"name": "p", "profile": "fastest"})
    check(r.status == 422 and "/profile" in pointers(r),
          "create rejects an unknown profile", r.status)
    r = d.call("POST", "/v1/studies", raw=b"{nope",
               headers={"Content-Type": "application/json"})
    check(r.status == 400, "create: bad JSON is 400", r.status)
    r = d.call("POST", "/v1/studies", raw=b"{}",
               headers={"Content-Type": "text/plain"})
    check(r.status == 415, "create: a non-JSON type is 415", r.status)
    r = d.call("PUT", "/v1/studies")
    check(r.status == 405 and "POST" in (r.header("Allow") or ""),
          "PUT /v1/studies is 405 with Allow", r.status)
    r = d.call("GET", "/v1/studies/s_nope")
    check(r.status == 404, "an unknown study is 404", r.status)

    key = {"Idempotency-Key": "create-once"}
    a = d.call("POST", "/v1/studies", dict(STUDY, name="idem"), headers=key)
    b = d.call("POST", "/v1/studies", dict(STUDY, name="idem"), headers=key)
    check(a.status == 201 and b.status == 201 and
          a.json["id"] == b.json["id"], "create is idempotent with a key")
    c = d.call("POST", "/v1/studies", dict(STUDY, name="other"), headers=key)
    check(c.status == 422 and c.json["code"] == "idempotency_key_mismatch",
          "a key reused with another body is 422", c.status)

    r = d.call("GET", "/v1/studies?page_size=1")
    check(r.status == 200 and len(r.json["studies"]) == 1 and
          r.json["studies"][0]["id"] == a.json["id"] and
          r.json["next_page_token"], "list: newest first, one per page")
    r2 = d.call("GET", "/v1/studies?page_size=1&page_token=" +
                r.json["next_page_token"])
    check(r2.status == 200 and r2.json["studies"][0]["id"] == sid,
          "list: the next page")
    r3 = d.call("GET", "/v1/studies?page_token=garbage")
    check(r3.status == 422, "list: a bad token is 422", r3.status)
    r4 = d.call("GET", "/v1/studies?page_size=0")
    check(r4.status == 422, "list: page_size 0 is 422", r4.status)
    return sid


def test_add(d, sid, archs):
    good = archs[:2]
    r = d.call("POST", "/v1/studies/%s/architectures" % sid,
               {"architectures": [good[0], {"type": "nb201",
                                            "cell": "|bogus~0|"}]})
    check(r.status == 422 and any(p.startswith("/architectures/1")
                                  for p in pointers(r)),
          "add: a bad architecture names its index", r.body[:300])
    check(d.call("GET", "/v1/studies/%s" % sid).json["members"] == 0,
          "add: all or nothing")
    r = d.call("POST", "/v1/studies/%s/architectures" % sid,
               {"architectures": good, "client_refs": ["a"]})
    check(r.status == 422 and "/client_refs" in pointers(r),
          "add: client_refs of the wrong length", r.status)
    r = d.call("POST", "/v1/studies/%s/architectures" % sid,
               {"architectures": []})
    check(r.status == 422 and "/architectures" in pointers(r),
          "add: an empty list", r.status)
    r = d.call("POST", "/v1/studies/s_nope/architectures",
               {"architectures": good})
    check(r.status == 404, "add: an unknown study is 404", r.status)
    key = {"Idempotency-Key": "add-1"}
    refs = ["ref-%d" % i for i in range(len(archs))]
    a = d.call("POST", "/v1/studies/%s/architectures" % sid,
               {"architectures": archs, "client_refs": refs}, headers=key)
    check(a.status == 202 and len(a.json["jobs"]) == len(archs),
          "add: 202 with one job per architecture", a.body[:300])
    b = d.call("POST", "/v1/studies/%s/architectures" % sid,
               {"architectures": archs, "client_refs": refs}, headers=key)
    check(b.status == 202 and [j["id"] for j in a.json["jobs"]] ==
          [j["id"] for j in b.json["jobs"]], "add: idempotent with a key")
    jobs = a.json["jobs"]
    check(all(j["study"] == sid for j in jobs), "each member names its study")
    check([j["client_ref"] for j in jobs] == refs, "client_refs are kept")
    check(all(j["request"]["seed"] == STUDY["seed"] and
              j["request"]["data"]["batch_size"] == 8 for j in jobs),
          "members take the study's seed and data")
    return [j["id"] for j in jobs]


def test_ranking(d, sid, job_ids, workdir):
    state = wait_study(d, sid)
    n = len(job_ids)
    check(state["counts"]["succeeded"] == n and state["progress"] == 1.0,
          "every member succeeded", state["counts"])
    r = d.call("GET", "/v1/studies/%s/ranking" % sid)
    check(r.status == 200 and r.json["n"] == n, "ranking: every member",
          r.body[:300])
    ranking = r.json
    members = ranking["members"]
    check([m["rank"] for m in members] == sorted(m["rank"] for m in members),
          "ranking: members in rank order")
    check(all(m["job"] in job_ids and m["architecture"]["type"] == "nb201"
              and m["canonical"] for m in members),
          "ranking: members name job, architecture, canonical key")
    aspects = set(members[0]["aspect_ranks"])
    check(aspects == {"expressivity", "convergence", "generalization",
                      "complexity"}, "ranking: the four aspect ranks",
          aspects)
    # Offline: `archeval rank --json` on the same job resources.
    resources = [d.call("GET", "/v1/jobs/%s" % j).json for j in job_ids]
    path = h.write_json(workdir, "members.json", resources)
    out = subprocess.run([h.CLI, "rank", "--json", path],
                         capture_output=True, text=True, timeout=120)
    check(out.returncode == 0, "archeval rank runs", out.stderr[-300:])
    offline = json.loads(out.stdout) if out.returncode == 0 else {}
    by_job = {m["job"]: m for m in members}

    def offline_job(m):
        ident = m["id"]
        return job_ids[ident] if isinstance(ident, int) else ident

    same = bool(offline.get("members"))
    for m in offline.get("members", []):
        mine = by_job.get(offline_job(m))
        if not mine:
            same = False
            break
        for field in ("score", "rank", "ranks", "aspect_ranks", "pareto"):
            if mine[field] != m[field]:
                same = False
                h.log("differs: %s %s %s" % (field, mine[field], m[field]))
    check(same, "ranking equals `archeval rank` offline (scores, ranks, "
          "aspect ranks, Pareto)")
    check(sorted(ranking["pareto_front"]) ==
          sorted(offline_job({"id": i}) for i in
                 offline.get("pareto_front", [])),
          "the Pareto front equals the offline front")
    check(ranking["rank"]["components"] ==
          offline.get("rank", {}).get("components"), "the same components")

    bound = ranking["selection_bound"]
    expect = math.sqrt((math.log(n) + math.log(2 / 0.05)) / (2 * 2))
    check(bound["n_candidates"] == n and bound["n_validation"] == 2 and
          abs(bound["gap"] - expect) < 1e-12 and
          abs(bound["excess_risk"] - 2 * expect) < 1e-12 and
          len(bound["assumptions"]) >= 3,
          "selection bound: sqrt((ln n + ln 2/delta) / 2 n_V), n_V = B/4",
          bound)

    pages, token = [], None
    while True:
        path = "/v1/studies/%s/ranking?page_size=7" % sid
        if token:
            path += "&page_token=" + token
        p = d.call("GET", path)
        pages.extend(p.json["members"])
        token = p.json["next_page_token"]
        if not token:
            break
    check([m["job"] for m in pages] == [m["job"] for m in members],
          "ranking pages join to the whole ranking")
    status, headers, text = raw_get(d, "/v1/studies/%s/ranking?format=csv"
                                    % sid)
    lines = text.splitlines()
    check(status == 200 and headers["Content-Type"].startswith("text/csv")
          and len(lines) == n + 1 and lines[0].startswith("rank,job,score"),
          "csv: a header and one row per member", (status, len(lines)))
    check(lines[1].split(",")[1].strip('"') == members[0]["job"],
          "csv: rows in rank order")
    status, headers, text = raw_get(
        d, "/v1/studies/%s/ranking?format=jsonl" % sid)
    rows = [json.loads(x) for x in text.splitlines()]
    check(status == 200 and [x["job"] for x in rows] ==
          [m["job"] for m in members], "jsonl: one member per line")
    r = d.call("GET", "/v1/studies/%s/ranking?format=xml" % sid)
    check(r.status == 422, "ranking: an unknown format is 422", r.status)


def test_restart_and_delete(d, sid, job_ids):
    # Members never expire (the daemon runs with --job-ttl-secs 1).
    plain = d.submit(h.SMALL_JOB).json["id"]
    d.wait(plain)
    time.sleep(2.5)
    check(d.call("GET", "/v1/jobs/%s" % plain).status == 404,
          "a plain job expired")
    check(all(d.call("GET", "/v1/jobs/%s" % j).status == 200
              for j in job_ids[:5]), "members are kept past the TTL")

    # SIGKILL while a second batch runs.
    more = cells(12, offset=40)
    r = d.call("POST", "/v1/studies/%s/architectures" % sid,
               {"architectures": more})
    check(r.status == 202, "a second batch is added", r.status)
    added = [j["id"] for j in r.json["jobs"]]
    time.sleep(0.3)
    check(d.restart(), "restart after SIGKILL mid-study")
    g = d.call("GET", "/v1/studies/%s" % sid)
    check(g.status == 200 and g.json["members"] == len(job_ids) + len(added),
          "no member lost across SIGKILL", g.json and g.json["members"])
    state = wait_study(d, sid)
    check(state["counts"]["succeeded"] == len(job_ids) + len(added),
          "every member finishes after the restart", state["counts"])
    r = d.call("GET", "/v1/studies/%s/ranking" % sid)
    check(r.status == 200 and r.json["n"] == len(job_ids) + len(added),
          "the ranking covers the members of both batches")

    r = d.call("DELETE", "/v1/studies/%s" % sid)
    check(r.status == 204, "delete: 204", r.status)
    check(d.call("GET", "/v1/studies/%s" % sid).status == 404,
          "a deleted study is 404")
    check(all(d.call("GET", "/v1/jobs/%s" % j).status == 404
              for j in job_ids + added), "its jobs are gone")
    check(d.call("DELETE", "/v1/studies/%s" % sid).status == 404,
          "delete twice: 404")
    check(d.restart(), "restart after the delete")
    check(d.call("GET", "/v1/studies/%s" % sid).status == 404 and
          d.call("GET", "/v1/jobs/%s" % job_ids[0]).status == 404,
          "the delete was durable")


def main():
    h.require_daemon()
    if not os.access(h.CLI, os.X_OK):
        h.skip("no CLI at %s" % h.CLI)
    flags = ["--job-ttl-secs", "1"]
    if PG_URL:
        flags += ["--store", PG_URL]
    d = h.Daemon(*flags)
    workdir = tempfile.mkdtemp(prefix="ae-studies-")
    if not d.try_start():
        check(False, "daemon starts")
        return h.finish()
    try:
        sid = h.section(test_create_and_list, d)
        if sid:
            job_ids = h.section(test_add, d, sid, cells(CELLS))
            if job_ids:
                h.section(test_ranking, d, sid, job_ids, workdir)
                h.section(test_restart_and_delete, d, sid, job_ids)
        status = d.stop()
        check(status == 0, "the daemon stops cleanly (no sanitizer report)",
              (status, d.log_tail()))
    finally:
        d.cleanup()
    return h.finish()


if __name__ == "__main__":
    main()
