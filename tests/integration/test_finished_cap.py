"""test_finished_cap.py: the cap on finished jobs kept in memory (issue 14,
--max-finished-jobs) and the jobs served from the store past it (issue 15
item 1).

A daemon with --max-finished-jobs 3 runs 10 small jobs (one with an
Idempotency-Key, a batch of two with another, some with a client_ref) to
their end, so that 7 of them are dropped from memory (the debug log says
which).  Then, for every job: GET answers exactly the JSON the long poll
answered when the job ended in memory; a listing pages through all of
them newest first with no job twice, and the state and client_ref filters
hold; replaying the Idempotency-Keys returns the same jobs (no new one);
cancel of a dropped succeeded job is 409; DELETE of a dropped job is 204
and it is gone (404, not listed); an unknown id is 404.  After a restart
the same answers come back (the store is read back up to the cap).

Environment: AE_BUILDDIR; AE_CAP_ON_PG=1 (test_finished_cap_pg.sh) runs
the daemon on the PostgreSQL store at $AE_TEST_PG_URL.  Prints "N passed,
M failed" last; python3 stdlib only.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

check = h.check
PG_URL = (os.environ.get("AE_TEST_PG_URL")
          if os.environ.get("AE_CAP_ON_PG") == "1" else None)
CAP = 3


def job(ref=None, seed=1):
    body = dict(h.SMALL_JOB)
    body["seed"] = seed
    if ref:
        body["client_ref"] = ref
    return body


def listing(d, query=""):
    """Every job of the listing, paging by 3; the ids in order."""
    ids, token, pages = [], None, 0
    while True:
        path = "/v1/jobs?page_size=3" + query
        if token:
            path += "&page_token=" + token
        r = d.call("GET", path)
        if r.status != 200:
            raise AssertionError("GET %s: %d %s" % (path, r.status, r.body))
        ids += [j["id"] for j in r.json["jobs"]]
        token = r.json["next_page_token"]
        pages += 1
        if not token or pages > 20:
            return ids


def dropped_ids(d):
    return {line.split("job ")[1].split(":")[0]
            for line in d.log_text().splitlines()
            if "dropped from memory" in line}


def run(d, state):
    """Submits the jobs, waits for them; fills state."""
    ends = {}
    order = []
    r = d.submit(job("a", 1), headers={"Idempotency-Key": "cap-one"})
    check(r.status == 202, "POST with a key: 202", r.body)
    order.append(r.json["id"])
    r = d.call("POST", "/v1/jobs:batch",
               {"jobs": [job("b", 2), job("b", 3)]},
               headers={"Idempotency-Key": "cap-batch"})
    check(r.status == 202, "batch with a key: 202", r.body)
    order += [j["id"] for j in r.json["jobs"]]
    for i in range(7):
        r = d.submit(job("a" if i % 2 else None, 10 + i))
        check(r.status == 202, "POST %d: 202" % i, r.body)
        order.append(r.json["id"])
    for jid in order:
        ends[jid] = d.wait(jid)
    state["ends"] = ends
    state["order"] = order


def check_served(d, state, when):
    ends, order = state["ends"], state["order"]
    # The sweep drops the oldest finished past the cap within ~200 ms.
    time.sleep(0.6)
    for jid in order:
        r = d.call("GET", "/v1/jobs/" + jid)
        check(r.status == 200 and r.json == ends[jid],
              "%s: GET %s as it ended" % (when, jid),
              "%d %s\nwanted %s" % (r.status, r.body, ends[jid]))
    r = d.call("GET", "/v1/jobs/%s?wait_ms=2000" % order[0])
    check(r.status == 200 and r.json == ends[order[0]],
          "%s: a long poll on a dropped finished job answers at once" % when)
    newest_first = list(reversed(order))
    got = listing(d)
    check(got == newest_first, "%s: the listing pages through all jobs, "
          "newest first" % when, "%s\nwanted %s" % (got, newest_first))
    want_a = [j for j in newest_first
              if ends[j]["request"].get("client_ref") == "a"]
    got = listing(d, "&client_ref=a")
    check(got == want_a, "%s: client_ref filter" % when,
          "%s\nwanted %s" % (got, want_a))
    got = listing(d, "&state=succeeded")
    check(got == [j for j in newest_first
                  if ends[j]["state"] == "succeeded"],
          "%s: state filter" % when, got)
    check(listing(d, "&state=running") == [], "%s: no running job" % when)
    r = d.submit(job("a", 1), headers={"Idempotency-Key": "cap-one"})
    check(r.status == 202 and r.json["id"] == order[0],
          "%s: a replayed Idempotency-Key returns the dropped job" % when,
          r.body)
    r = d.call("POST", "/v1/jobs:batch",
               {"jobs": [job("b", 2), job("b", 3)]},
               headers={"Idempotency-Key": "cap-batch"})
    check(r.status == 202
          and [j["id"] for j in r.json["jobs"]] == order[1:3],
          "%s: a replayed batch key returns the dropped jobs" % when, r.body)
    r = d.submit(job("a", 99), headers={"Idempotency-Key": "cap-one"})
    check(r.status == 422, "%s: the key with another body is 422" % when,
          r.body)
    check(listing(d) == newest_first, "%s: the replays made no job" % when)
    r = d.call("POST", "/v1/jobs/%s:cancel" % order[0])
    check(r.status == 409, "%s: cancel of a dropped succeeded job: 409"
          % when, r.body)
    r = d.call("GET", "/v1/jobs/j_doesnotexist")
    check(r.status == 404, "%s: an unknown id is 404" % when)


def check_delete(d, state):
    order = state["order"]
    victim = order[3]
    r = d.call("DELETE", "/v1/jobs/" + victim)
    check(r.status == 204, "DELETE of a dropped job: 204", r.body)
    r = d.call("GET", "/v1/jobs/" + victim)
    check(r.status == 404, "the deleted job is gone (404)", r.body)
    r = d.call("DELETE", "/v1/jobs/" + victim)
    check(r.status == 404, "a second DELETE: 404", r.body)
    order.remove(victim)
    del state["ends"][victim]
    check(listing(d) == list(reversed(order)), "the listing lost it only")


def main():
    h.require_daemon()
    extra = ["--max-finished-jobs", str(CAP), "--log-level", "debug"]
    if PG_URL:
        extra += ["--store", PG_URL]
    d = h.Daemon(*extra)
    state = {}
    try:
        if not d.try_start():
            h.finish(0, 1)
        h.section(run, d, state)
        if "order" in state:
            h.section(check_served, d, state, "first run")
            gone = dropped_ids(d)
            check(len(gone) >= len(state["order"]) - CAP,
                  "at least %d jobs were dropped from memory (%d)"
                  % (len(state["order"]) - CAP, len(gone)))
            h.section(check_delete, d, state)
            check(d.stop() == 0, "SIGTERM: exit 0")
            if d.try_start():
                h.section(check_served, d, state, "after a restart")
                check("finished ones left in the store" in d.log_text(),
                      "the load says how many it left in the store")
    finally:
        d.cleanup()
    h.finish()


if __name__ == "__main__":
    main()
