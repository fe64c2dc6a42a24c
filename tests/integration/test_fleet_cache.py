"""test_fleet_cache.py: the result cache under --fleet (issue 15): two
archevald replicas sharing one PostgreSQL store, on the cluster
tests/pg_cluster.sh starts (test_fleet_cache_pg.sh runs this).

Checks, with replicas A and B (one host worker each):
- a job is computed by whichever replica claims it (its log says so);
  the same request submitted to the other replica then finishes at once,
  succeeded, "cached": true, without started_at, with the identical
  result, reads the same on both replicas, and is claimed by nobody;
- the same request submitted to the replica that computed it is cached
  too, and so is one that differs only in client_ref and priority (not
  in the key);
- the same request with another seed is not cached: it is claimed and
  computed;
- in a batch on the other replica, the item already computed is cached
  and the new one computed;
- a result computed by either replica fills the shared cache: the new
  seed's job, submitted again to both, is cached on both;
- two identical new requests sent to A and B at once both succeed with
  the same result (timings aside);
- identical jobs in flight are shared across replicas as on one daemon
  (test_study_cache.py's test_in_flight): study members added on B
  identical to a slow job accepted by A and claimed by either wait,
  queued and claimed by nobody, and end cached with its result; a
  waiting member cancelled ends at once; when the leader is cancelled the
  oldest waiting member is claimed and computes, the next one waits for
  it and takes its result; a batch's duplicate waits for its first item;
  a plain job identical to one in flight computes on its own; no job is
  claimed twice.

Environment: AE_BUILDDIR, AE_TEST_PG_URL (skips, 77, without it).  Prints
"N passed, M failed" last; python3 stdlib only.
"""

import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

check = h.check
PG_URL = os.environ.get("AE_TEST_PG_URL")


def replica(name):
    return h.Daemon("--store", PG_URL, "--fleet", "--replica-id", name,
                    "--lease-secs", "2", host_workers=1, name=name)


def claimed(d, jid):
    return re.search(r"job %s claimed by replica " % re.escape(jid),
                     d.log_text()) is not None


def runner_of(a, b, jid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in (a, b):
            if claimed(d, jid):
                return d
        time.sleep(0.05)
    raise AssertionError("nobody claimed %s" % jid)


def comparable(result):
    """A result without what differs between two computations: timings."""
    copy = json.loads(json.dumps(result))
    if isinstance(copy.get("provenance"), dict):
        copy["provenance"].pop("timings_s", None)
    return copy


def job(seed):
    return dict(h.SMALL, seed=seed)


def check_cached(d, r, first, what):
    """r: the 202 of a submission to d expected to be a cache hit of the
    job first (its end)."""
    ok = r.status == 202 and r.json["state"] == "succeeded" \
        and r.json["cached"] is True and r.json["started_at"] is None
    check(ok, "%s: 202 succeeded, cached, never started" % what, r.body)
    if not ok:
        return None
    jid = r.json["id"]
    got = d.call("GET", "/v1/jobs/" + jid).json
    check(got["result"] == first["result"],
          "%s: the identical result" % what)
    return jid


def test_cache_across(a, b):
    seed = int(time.time()) % 100000 * 10  # a key no earlier run stored
    first_id = a.submit(job(seed)).json["id"]
    runner = runner_of(a, b, first_id)
    other = b if runner is a else a
    first = other.wait(first_id)
    check(first["state"] == "succeeded" and first["cached"] is False,
          "the first job was computed (on %s)" % runner.name, first)
    # Its end is visible: the result is in the cache already (stored
    # before the end), whichever replica is asked, without any retry.
    r = other.submit(job(seed))
    jid = check_cached(other, r, first,
                       "the same request on the other replica (%s)"
                       % other.name)
    if jid:
        ra = a.call("GET", "/v1/jobs/" + jid)
        rb = b.call("GET", "/v1/jobs/" + jid)
        check(ra.status == rb.status == 200 and ra.json == rb.json,
              "the cached job reads the same on both replicas")
        time.sleep(0.5)  # a claim would be logged within 250 ms
        check(not claimed(a, jid) and not claimed(b, jid),
              "the cached job was claimed by no replica")
    r = runner.submit(job(seed))
    check_cached(runner, r, first,
                 "the same request on the replica that computed it")
    r = other.submit(dict(job(seed), client_ref="other-ref", priority=3))
    check_cached(other, r, first, "the same request with another client_ref "
                 "and priority")

    # Another seed: another key, computed.
    r = other.submit(job(seed + 1))
    check(r.status == 202 and r.json["state"] in ("queued", "running")
          and r.json["cached"] is False,
          "another seed is not cached (%s)" % r.json.get("state"), r.body)
    new_id = r.json["id"]
    new = other.wait(new_id)
    check(new["state"] == "succeeded" and new["cached"] is False
          and new["started_at"] is not None,
          "another seed is computed")
    check(claimed(a, new_id) or claimed(b, new_id),
          "another seed's job was claimed")
    check(new["result"] != first["result"],
          "another seed gives another result")
    # Whoever computed it, its result is now cached for both.
    for d in (a, b):
        check_cached(d, d.submit(job(seed + 1)), new,
                     "the second seed on %s" % d.name)

    # A batch on the other replica: the computed item cached, a new one
    # computed.
    r = other.call("POST", "/v1/jobs:batch",
                   {"jobs": [job(seed), job(seed + 2)]})
    check(r.status == 202 and len(r.json.get("jobs", [])) == 2,
          "a batch of a cached request and a new one: 202", r.body)
    if r.status == 202:
        j0, j1 = r.json["jobs"]
        check(j0["state"] == "succeeded" and j0["cached"] is True,
              "the batch's known item is cached", j0)
        check(j1["cached"] is False, "the batch's new item is not", j1)
        end = other.wait(j1["id"])
        check(end["state"] == "succeeded" and not end["cached"],
              "the batch's new item is computed", end)


def test_in_flight(a, b):
    # The same new plain request sent to both replicas at once: a plain
    # job identical to one in flight computes on its own (as on one
    # daemon), unless the first is cached already; identical results.
    seed = int(time.time()) % 100000 * 10 + 5
    ids = [None, None]

    def send(i, d):
        ids[i] = d.submit(job(seed)).json["id"]
    threads = [threading.Thread(target=send, args=(i, d))
               for i, d in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ends = [a.wait(jid) for jid in ids]
    check(all(e["state"] == "succeeded" for e in ends),
          "two identical requests at once both succeed")
    check(comparable(ends[0]["result"]) == comparable(ends[1]["result"]),
          "with the same result (timings aside)",
          [e["result"] for e in ends])
    computed = [e for e in ends if not e["cached"]]
    check(len(computed) >= 1, "at least one was computed (%d cached)"
          % (2 - len(computed)))


def claims(d, jid):
    return len(re.findall(r"job %s claimed by replica " % re.escape(jid),
                          d.log_text()))


def add_members(d, name, request, count):
    study = d.call("POST", "/v1/studies", {
        "name": name, "data": request["data"], "seed": request["seed"],
        "metrics": request["metrics"],
        "settings": request["settings"]}).json
    r = d.call("POST", "/v1/studies/%s/architectures" % study["id"],
               {"architectures": [request["architecture"]] * count})
    check(r.status == 202 or r.status == 200,
          "%s: %d members added" % (name, count), r.body[:300])
    return r.json["jobs"]


def check_waiting(a, b, jobs, what):
    time.sleep(1.0)  # a claim would be logged within 250 ms
    for j in jobs:
        got = b.call("GET", "/v1/jobs/" + j["id"]).json
        check(got["state"] == "queued" and not got["cached"] and
              got["started_at"] is None,
              "%s: waits, queued (%s)" % (what, got["state"]), got)
        check(not claimed(a, j["id"]) and not claimed(b, j["id"]),
              "%s: claimed by no replica while it waits" % what)


def test_share_in_flight(a, b):
    base = int(time.time()) % 100000 * 10 + 7
    slow = dict(h.SLOW, seed=base, settings={"ntk": {"repeats": 6}})
    # The leader succeeds: the waiting members take its result.
    lead = a.submit(slow).json
    runner_of(a, b, lead["id"])
    twin, other = add_members(b, "share-ok", slow, 2)
    check(twin["state"] == "queued" and not twin["cached"] and
          twin["canonical"] == lead["canonical"],
          "a study member identical to a job in flight: queued", twin)
    check_waiting(a, b, [twin, other], "an identical member on B")
    plain = b.submit(slow).json
    end = b.wait(lead["id"], timeout=600)
    check(end["state"] == "succeeded" and not end["cached"],
          "the leader computed", end["state"])
    for j in (twin, other):
        done = b.wait(j["id"], timeout=60)
        check(done["state"] == "succeeded" and done["cached"] is True and
              done["started_at"] is None and
              done["result"] == end["result"],
              "a waiting member ends cached with the leader's result", done)
        check(a.call("GET", "/v1/jobs/" + j["id"]).json == done,
              "and reads the same on A")
        check(claims(a, j["id"]) + claims(b, j["id"]) == 0,
              "and was never claimed")
    done = a.wait(plain["id"], timeout=600)
    check(done["state"] == "succeeded" and done["started_at"] and
          claims(a, plain["id"]) + claims(b, plain["id"]) == 1,
          "a plain job identical to one in flight computed on its own",
          done)

    # The leader cancelled: the oldest waiting member computes, the next
    # waits for it; a waiting member cancelled ends at once.
    slow2 = dict(slow, seed=base + 1)
    lead2 = a.submit(slow2).json
    runner_of(a, b, lead2["id"])
    first, second, third = add_members(b, "share-cancel", slow2, 3)
    check_waiting(a, b, [first, second, third], "a member behind a leader "
                  "to be cancelled")
    r = a.call("POST", "/v1/jobs/%s:cancel" % third["id"])
    check(r.status == 200 and r.json["state"] == "cancelled",
          "a waiting member cancels at once (from A)", r.body[:200])
    a.call("POST", "/v1/jobs/%s:cancel" % lead2["id"])
    check(a.wait(lead2["id"], timeout=120)["state"] == "cancelled",
          "the leader cancelled")
    done1 = b.wait(first["id"], timeout=600)
    check(done1["state"] == "succeeded" and not done1["cached"] and
          done1["started_at"], "the oldest waiting member computed", done1)
    done2 = b.wait(second["id"], timeout=60)
    check(done2["state"] == "succeeded" and done2["cached"] is True and
          done2["started_at"] is None and
          done2["result"] == done1["result"],
          "the next one waited for it and took its result", done2)
    check(b.wait(third["id"])["state"] == "cancelled",
          "the cancelled member stays cancelled")
    counts = [claims(a, j["id"]) + claims(b, j["id"])
              for j in (lead2, first, second, third)]
    check(counts == [1, 1, 0, 0], "claims per job: leader 1, the member "
          "that computed 1, the others 0", counts)

    # A batch's duplicate (plain) waits for its first item.
    small = job(base + 2)
    r = b.call("POST", "/v1/jobs:batch", {"jobs": [small, small]})
    check(r.status == 202, "a batch of two identical new jobs: 202", r.body)
    if r.status == 202:
        j0, j1 = r.json["jobs"]
        e0, e1 = b.wait(j0["id"]), b.wait(j1["id"])
        check(e0["state"] == e1["state"] == "succeeded" and
              not e0["cached"] and e1["cached"] is True and
              e1["result"] == e0["result"],
              "the first computed, the duplicate cached", (e0, e1))
        check(claims(a, j1["id"]) + claims(b, j1["id"]) == 0,
              "the duplicate was never claimed")


def main():
    h.require_daemon()
    if not PG_URL:
        h.skip("no AE_TEST_PG_URL (run through test_fleet_cache_pg.sh)")
    a, b = replica("ca"), replica("cb")
    try:
        if not (a.try_start() and b.try_start()):
            h.finish(0, 1)
        for test in (test_cache_across, test_in_flight,
                     test_share_in_flight):
            h.section(test, a, b)
        for d in (a, b):
            check(d.stop() == 0, "%s: SIGTERM, exit 0" % d.name)
        if h.failures():
            for d in (a, b):
                print("---- %s\n%s" % (d.name, d.log_tail(60)))
    finally:
        a.cleanup()
        b.cleanup()
    h.finish()


if __name__ == "__main__":
    main()
