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
  and the store never holds more than the bound queued; jobs that left
  the queue make room at once: a client that submits and waits, job after
  job, more than the bound within one of the replicas' 100 ms between
  reads of the count, is never refused;
- a listing across a run of jobs with one seq (two replicas numbering
  jobs in the same microsecond; made here by psql giving 6 jobs, 3 from
  each replica, one seq): page sizes 1, 2 and 4 on either replica list
  every job of the store exactly once, the run in descending id order.

Environment: AE_BUILDDIR, AE_TEST_PG_URL, AE_TEST_PG_DSN (skips, 77,
without them).  Prints "N passed, M failed" last; python3 stdlib only.
"""

import os
import shutil
import urllib.parse
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


def replica(name):
    return h.Daemon("--store", PG_URL, "--fleet", "--replica-id", name,
                    "--lease-secs", "2", "--max-queue", str(MAX_QUEUE),
                    host_workers=1, name=name)


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


def claimed_by(replicas, job_id):
    """The replica whose log says it claimed job_id, or None."""
    for d in replicas:
        if ("job %s claimed by replica" % job_id) in d.log_text():
            return d
    return None


def test_delete_while_running(a, b):
    """A member running on one replica, its study deleted on the other:
    its end leaves no row."""
    r = a.call("POST", "/v1/studies", SLOW_STUDY)
    check(r.status == 201, "slow study created on A", r.body[:300])
    if r.status != 201:
        return
    sid = r.json["id"]
    r = a.call("POST", "/v1/studies/%s/architectures" % sid,
               {"architectures": [SLOW_CELL]})
    check(r.status == 202, "a slow member added", r.body[:300])
    if r.status != 202:
        return
    jid = r.json["jobs"][0]["id"]
    runner = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        g = a.call("GET", "/v1/jobs/%s" % jid)
        runner = claimed_by((a, b), jid)
        if g.status == 200 and g.json["state"] == "running" and runner:
            break
        time.sleep(0.05)
    check(runner is not None, "the member runs on a replica", jid)
    if runner is None:
        return
    other = b if runner is a else a
    time.sleep(0.5)  # the sweep drops the submission's remote copy
    held_running = jobs_held(runner)
    h.log("member %s runs on %s; the study is deleted on %s"
          % (jid, runner.name, other.name))
    state = psql("SELECT state || ' ' || coalesce(owner, '-')"
                 " FROM archeval_jobs WHERE id = '%s'" % jid)
    check(state == "running %s" % runner.name,
          "the store has it running under %s's lease" % runner.name, state)
    d = other.call("DELETE", "/v1/studies/%s" % sid)
    check(d.status == 204, "delete on %s: 204" % other.name, d.status)
    # Wait for the runner to end it (the cancel reaches it at its next
    # heartbeat, or the job completes first).
    row = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        row = psql("SELECT state || ' ' || coalesce(study, '-')"
                   " FROM archeval_jobs WHERE id = '%s'" % jid)
        if row == "" or not row.startswith("running"):
            break
        time.sleep(0.1)
    time.sleep(0.5)  # any late write of its end
    row = psql("SELECT state || ' ' || coalesce(study, '-') || ' '"
               " || coalesce(lease_expires_ms::text, '-')"
               " FROM archeval_jobs WHERE id = '%s'" % jid)
    check(row == "", "after %s ended it, the store has no row of the member"
          % runner.name, row)
    left = psql("SELECT count(*) FROM archeval_jobs WHERE study = '%s'"
                % sid)
    check(left == "0", "no row names the deleted study", left)
    leases = psql("SELECT count(*) FROM archeval_jobs WHERE state ="
                  " 'running' OR lease_expires_ms IS NOT NULL")
    check(leases == "0", "no lease is left in the store", leases)
    for d in (a, b):
        g = d.call("GET", "/v1/jobs/%s" % jid)
        check(g.status == 404, "%s: the member is gone (404)" % d.name,
              g.status)
    metrics = runner.call("GET", "/metrics").body.decode()
    held = [line for line in metrics.splitlines()
            if line.startswith("archeval_store_leases_held")]
    check(held and held[0].split()[-1] == "0",
          "%s holds no lease (/metrics)" % runner.name, held)
    # Nor does the runner keep the member in memory: its end is in the
    # store, and its copy goes at the next sweep (200 ms).
    time.sleep(0.5)
    held_after = jobs_held(runner)
    check(held_after == held_running - 1,
          "%s holds no copy of the member (archeval_jobs_held %d, %d "
          "while it ran)" % (runner.name, held_after, held_running))


def jobs_held(d):
    """The jobs a replica holds in memory (/metrics archeval_jobs_held)."""
    for line in d.call("GET", "/metrics").body.decode().splitlines():
        if line.startswith("archeval_jobs_held "):
            return int(float(line.split()[-1]))
    return -1


def queued_in_store():
    return int(psql("SELECT count(*) FROM archeval_jobs"
                    " WHERE state = 'queued'"))


def is_queue_full(r):
    """A 429 queue_full problem+json with Retry-After that names the
    bound."""
    return (r.status == 429 and r.json is not None
            and r.json.get("type", "").endswith("queue_full")
            and "application/problem+json" in (r.header("Content-Type") or "")
            and (r.header("Retry-After") or "").isdigit()
            and ("limit is %d" % MAX_QUEUE in r.json.get("detail", "")
                 or "limit of %d" % MAX_QUEUE in r.json.get("detail", "")))


def test_queue_bound(a, b):
    """--max-queue 3 on both replicas: the bound holds across them."""
    ids = []
    # One long job per replica keeps both workers busy: nothing is claimed
    # from the queue meanwhile.
    for k, d in enumerate((a, b)):
        job = dict(h.SLOW, seed=100 + k)
        job["architecture"] = dict(h.SLOW["architecture"], channels=32)
        r = d.submit(job)
        check(r.status == 202, "a long job on %s" % d.name, r.body[:200])
        if r.status == 202:
            ids.append(r.json["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = psql("SELECT count(*) FROM archeval_jobs"
                       " WHERE state = 'running'")
        if running == "2":
            break
        time.sleep(0.05)
    check(running == "2", "both replicas run one long job", running)
    # Past the replicas' 100 ms between reads of the count: a count read
    # while the long jobs were still queued would hold them.
    time.sleep(0.3)
    # Fill the queue through A.
    accepted, full = 0, None
    for k in range(MAX_QUEUE + 3):
        r = a.submit(dict(h.SMALL, seed=200 + k))
        if r.status == 202:
            accepted += 1
            ids.append(r.json["id"])
        else:
            full = r
            break
    check(accepted == MAX_QUEUE, "A accepts %d queued jobs (%d)"
          % (MAX_QUEUE, accepted))
    check(full is not None and is_queue_full(full),
          "then A answers 429 queue_full with Retry-After naming the bound",
          full and (full.status, full.body[:300], dict(full.headers)))
    check(queued_in_store() == MAX_QUEUE, "the store holds %d queued"
          % MAX_QUEUE)
    time.sleep(0.3)  # past the replicas' 100 ms between reads
    # B accepted nothing yet: its 429 comes from the fleet's count.
    r = b.submit(dict(h.SMALL, seed=300))
    check(is_queue_full(r), "B answers 429 too (A's jobs count on B)",
          (r.status, r.body[:300]))
    if r.status == 202:
        ids.append(r.json["id"])
    if r.json:
        h.log("B: %s" % r.json.get("detail"))
    r = b.call("POST", "/v1/jobs:batch",
               {"jobs": [dict(h.SMALL, seed=301)]})
    check(is_queue_full(r), "a batch on B: 429", (r.status, r.body[:300]))
    # A queued job cancelled on B: room for one, on either replica.
    c = b.call("POST", "/v1/jobs/%s:cancel" % ids[2])
    check(c.status == 200, "a queued job cancelled on B", c.status)
    time.sleep(0.3)
    r = b.submit(dict(h.SMALL, seed=302))
    check(r.status == 202, "then B accepts one", (r.status, r.body[:200]))
    if r.status == 202:
        ids.append(r.json["id"])
    r = a.submit(dict(h.SMALL, seed=303))
    check(is_queue_full(r), "and A refuses the next (429)",
          (r.status, r.body[:200]))
    check(queued_in_store() <= MAX_QUEUE, "the store never held more than %d"
          " queued" % MAX_QUEUE)
    for jid in ids:
        a.call("POST", "/v1/jobs/%s:cancel" % jid)


def test_queue_room_serial(a, b):
    """Submit and wait, job after job: every one is accepted, however many
    fall within 100 ms (the count a replica adds to its last read must not
    refuse jobs once they have left the queue)."""
    accepted, refused, t0 = 0, None, time.monotonic()
    for k in range(3 * MAX_QUEUE):
        r = a.submit(dict(h.SMALL, seed=400 + k))
        if r.status != 202:
            refused = (k, r.status, r.body[:200])
            break
        accepted += 1
        a.wait(r.json["id"])
    check(refused is None, "A accepts %d jobs submitted one after another "
          "(%d in %.0f ms)" % (3 * MAX_QUEUE, accepted,
                               1000 * (time.monotonic() - t0)), refused)


def list_ids(d, page_size):
    """Every job id a replica lists, newest first, following
    next_page_token."""
    ids, token = [], None
    for _ in range(10000):
        path = "/v1/jobs?page_size=%d" % page_size
        if token:
            path += "&page_token=" + urllib.parse.quote(token)
        r = d.call("GET", path)
        if r.status != 200:
            raise AssertionError("GET %s: %d %s" % (path, r.status,
                                                    r.body[:200]))
        ids += [job["id"] for job in r.json["jobs"]]
        token = r.json["next_page_token"]
        if not token:
            break
    return ids


def test_listing_seq_ties(a, b):
    """Pages that end inside a run of one seq skip none of it."""
    tied = []
    for k in range(6):
        d = (a, b)[k % 2]
        r = d.submit(dict(h.SMALL, seed=500 + k))
        check(r.status == 202, "job %d accepted by %s" % (k, d.name),
              (r.status, r.body[:200]))
        if r.status != 202:
            return
        tied.append(r.json["id"])
        d.wait(r.json["id"])
    psql("UPDATE archeval_jobs SET seq = (SELECT max(seq) + 1"
         " FROM archeval_jobs) WHERE id IN (%s)"
         % ",".join("'%s'" % jid for jid in tied))
    stored = sorted(psql("SELECT id FROM archeval_jobs").split())
    run = sorted(tied, reverse=True)
    for d in (a, b):
        for size in (1, 2, 4):
            ids = list_ids(d, size)
            check(sorted(ids) == stored,
                  "%s, pages of %d: every stored job listed once (%d of %d)"
                  % (d.name, size, len(set(ids) & set(stored)), len(stored)),
                  (sorted(set(stored) - set(ids)), len(ids)))
            check(ids[:len(run)] == run,
                  "%s, pages of %d: the run of one seq first, by id"
                  % (d.name, size), (ids[:len(run)], run))


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
        h.section(test_delete_while_running, a, b)
        h.section(test_listing_seq_ties, a, b)
        h.section(test_queue_room_serial, a, b)
        h.section(test_queue_bound, a, b)
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
