"""test_fleet.py: two archevald replicas sharing one PostgreSQL store's
queue (--fleet, issue 15), on the cluster tests/pg_cluster.sh starts
(test_fleet_pg.sh runs this).

Checks, with replicas A and B (one host worker each, --lease-secs 2):
- jobs accepted by A while one replica's worker is busy are run by the
  other, and every job is readable from both with the same JSON; a long poll on B wakes when a
  job run by A ends (the fallback poll of the store);
- a listing on either replica shows the jobs of both, newest first;
- an Idempotency-Key used on A and replayed on B returns A's job; one
  sent to A and B at the same moment makes one job (the loser answers
  with the winner's job, or 409 while the winner's insert is in flight);
- a long poll on the replica that does not run a job wakes soon after the
  job ends (the store's notification; median printed, under 0.25 s);
- a cancel asked on B reaches the job running on A (A's heartbeat reads
  the flag): the job ends cancelled;
- a replica SIGKILLed mid-job: its lease expires and the other replica runs
  the job again (its log says "attempt 2"), to success;
- a queued job cancelled on a replica that does not hold it is cancelled;
- a job that ends while PostgreSQL is stopped keeps its lease: when the
  server is back its replica writes the kept end, and the other replica
  never runs it (it was given back to the queue and run twice before);
- a replica SIGKILLed mid-job: see above.

Environment: AE_BUILDDIR, AE_TEST_PG_URL (skips, 77, without it),
AE_TEST_PG_STOP and AE_TEST_PG_START (tests/pg_cluster.sh sets them; the
outage check is skipped without them).  Under the sanitizer build
(AE_SANITIZERS=1) the medium job is a batch of 16 with one NTK repeat:
the batch of 32 with two took over a minute there, five times over.  A
check that needs a worker busy throughout (the spread, the queued cancel)
runs a long job and cancels it at the end, so that no check depends on
the host's speed; a wait for "running" polls without wait_ms.
Prints
"N passed, M failed" last; python3 stdlib only.
"""

import copy
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

check = h.check
PG_URL = os.environ.get("AE_TEST_PG_URL")
PG_STOP = os.environ.get("AE_TEST_PG_STOP")
PG_START = os.environ.get("AE_TEST_PG_START")
# A few seconds of work (batch 64, two NTK draws: 3.4 s on the 2-core Zen
# 4 VM; at batch 32 it took 1.7 s there, and the PostgreSQL stop of the
# outage check came within 0.6 s of its end): long enough to be caught
# running, killed, or to outlast a stop of the store; short enough to run
# to its end within the checks' timeouts.  A worker that must stay busy
# for a whole check runs long_job instead.
MEDIUM = copy.deepcopy(h.SLOW)
MEDIUM["settings"]["ntk"]["repeats"] = 1 if h.SANITIZERS else 2
MEDIUM["data"]["batch_size"] = 16 if h.SANITIZERS else 64


def medium(seed):
    """MEDIUM under a seed of its own: the fleet's result cache would
    answer a request computed before at once (test_fleet_cache.py)."""
    return dict(MEDIUM, seed=seed)


def long_job(seed):
    """A job that keeps a worker busy for as long as a check needs it
    (harness.SLOW, tens of seconds): cancelled once the check is done, so
    that no check depends on how fast the host runs it."""
    return dict(h.SLOW, seed=seed)


def replica(name):
    return h.Daemon("--store", PG_URL, "--fleet", "--replica-id", name,
                    "--lease-secs", "2", host_workers=1, name=name)


def claims(d):
    """job id -> the attempts this replica claimed it at."""
    out = {}
    for m in re.finditer(r"job (j_\w+) claimed by replica \S+ \(attempt (\d+)\)",
                         d.log_text()):
        out.setdefault(m.group(1), []).append(int(m.group(2)))
    return out


def wait_state(d, jid, states, timeout=120):
    """The job once its state is one of states.  A wait for a terminal
    state long-polls; a wait for "running" asks every 20 ms without
    wait_ms (a long poll holds its answer until the job ends, and so can
    miss a short run entirely), and fails at once, saying so, when the job
    ended before it was seen running."""
    terminal = any(s in h.TERMINAL for s in states)
    query = "?wait_ms=1000" if terminal else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = d.call("GET", "/v1/jobs/%s%s" % (jid, query))
        if r.status == 200 and r.json["state"] in states:
            return r.json
        if r.status == 200 and r.json["state"] in h.TERMINAL:
            raise AssertionError("job %s ended %s before it was seen %s"
                                 % (jid, r.json["state"], states))
        time.sleep(0.05 if terminal else 0.02)
    raise AssertionError("job %s never %s" % (jid, states))


def cancel_and_wait(d, ids):
    """Cancels the jobs (finished ones answer 409) and waits for their
    ends."""
    for jid in ids:
        d.call("POST", "/v1/jobs/%s:cancel" % jid)
    for jid in ids:
        wait_state(d, jid, h.TERMINAL)


def runner_of(a, b, jid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in (a, b):
            if jid in claims(d):
                return d
        time.sleep(0.05)
    raise AssertionError("nobody claimed %s" % jid)


def test_spread(a, b):
    busy = a.submit(long_job(101)).json["id"]
    busy_runner = runner_of(a, b, busy)
    idle = b if busy_runner is a else a
    ids = [a.submit(dict(h.SMALL_JOB, seed=i)).json["id"] for i in range(4)]
    ends = {}
    t0 = time.monotonic()
    for jid in ids:
        ends[jid] = b.wait(jid)  # long polls on B, whoever runs it
    log_wait = time.monotonic() - t0
    check(all(e["state"] == "succeeded" for e in ends.values()),
          "every job accepted by A succeeded (%.1f s)" % log_wait)
    ran_idle = [j for j in ids if j in claims(idle)]
    check(len(ran_idle) == 4,
          "the replica without the long job (%s) ran the 4 jobs A accepted "
          "meanwhile (%d)" % (idle.name, len(ran_idle)))
    for jid in ids:
        ra, rb = a.call("GET", "/v1/jobs/" + jid), b.call("GET",
                                                           "/v1/jobs/" + jid)
        check(ra.status == 200 and ra.json == rb.json == ends[jid],
              "%s reads the same on A and B" % jid)
    cancel_and_wait(a, [busy])
    for d in (a, b):
        r = d.call("GET", "/v1/jobs?page_size=100")
        got = [j["id"] for j in r.json["jobs"]]
        check(got[:5] == list(reversed(ids)) + [busy],
              "%s lists the fleet's jobs newest first" % d.name, got)
    r = a.submit(dict(h.SMALL_JOB, seed=77),
                 headers={"Idempotency-Key": "fleet-key"})
    r2 = b.submit(dict(h.SMALL_JOB, seed=77),
                  headers={"Idempotency-Key": "fleet-key"})
    check(r.status == 202 and r2.status == 202
          and r.json["id"] == r2.json["id"],
          "a key used on A and replayed on B returns A's job", r2.body)


def test_idempotency_race(a, b):
    # The same key sent to both replicas at once, 8 times: one job each.
    import threading
    for round_ in range(8):
        key = "race-%d" % round_
        answers = [None, None]

        def send(i, d):
            answers[i] = d.submit(dict(h.SMALL_JOB, seed=900 + round_),
                                  headers={"Idempotency-Key": key})
        threads = [threading.Thread(target=send, args=(i, d))
                   for i, d in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = [r for r in answers if r.status == 202]
        ids = {r.json["id"] for r in ok}
        others = [r.status for r in answers if r.status != 202]
        check(len(ids) == 1 and all(s == 409 for s in others),
              "key %s sent to A and B at once: one job (%s)"
              % (key, [r.status for r in answers]),
              [r.body for r in answers])
    r = a.call("GET", "/v1/jobs?page_size=1000")
    keys = [j["request"].get("seed") for j in r.json["jobs"]]
    check(all(keys.count(900 + i) == 1 for i in range(8)),
          "the store holds one job per raced key")


def rfc3339_s(text):
    import datetime
    return datetime.datetime.fromisoformat(
        text.replace("Z", "+00:00")).timestamp()


def test_wake_latency(a, b):
    # A job accepted on A; a long poll on the replica that does not run it
    # wakes when it ends there: the time from its finished_at to the
    # answer, over the jobs that ran on the other replica.
    lags = []
    for i in range(10):
        jid = a.submit(dict(h.SMALL, seed=300 + i)).json["id"]
        runner = runner_of(a, b, jid)
        other = b if runner is a else a
        r = other.call("GET", "/v1/jobs/%s?wait_ms=30000" % jid)
        woke = time.time()
        if r.json["state"] != "succeeded" or r.json["started_at"] is None:
            continue
        lag = woke - rfc3339_s(r.json["finished_at"])
        if lag >= 0.0:
            lags.append(lag)
    lags.sort()
    median = lags[len(lags) // 2] if lags else None
    h.log("long poll wake-up across replicas: %s s (median of %d)"
          % (median and round(median, 4), len(lags)))
    check(median is not None and median < 0.25,
          "a long poll wakes soon after the job ends on the other replica "
          "(median %s s; issue 15 asks 0.1 s)" % (median and round(median, 4)))


def test_cancel_across(a, b):
    jid = a.submit(h.SLOW).json["id"]
    d = runner_of(a, b, jid)
    other = b if d is a else a
    wait_state(other, jid, ("running",))
    t0 = time.monotonic()
    r = other.call("POST", "/v1/jobs/%s:cancel" % jid)
    check(r.status == 200 and r.json["cancel_requested"],
          "cancel on the other replica: 200, cancel_requested", r.body)
    end = wait_state(other, jid, h.TERMINAL, timeout=60)
    check(end["state"] == "cancelled",
          "the running job ended cancelled (%.1f s after the cancel)"
          % (time.monotonic() - t0), end)
    check(d.call("GET", "/v1/jobs/" + jid).json == end,
          "its replica shows the same end")


def test_queued_cancel(a, b):
    # Both workers busy: the next job waits in the shared queue.
    busy = [a.submit(long_job(102)).json["id"],
            b.submit(long_job(103)).json["id"]]
    for jid in busy:
        wait_state(a, jid, ("running",))
    jid = a.submit(dict(h.SMALL_JOB, seed=500)).json["id"]
    r = b.call("POST", "/v1/jobs/%s:cancel" % jid)
    check(r.status == 200 and r.json["state"] == "cancelled",
          "a queued job cancelled on B (accepted on A) is cancelled", r.body)
    check(a.call("GET", "/v1/jobs/" + jid).json["state"] == "cancelled",
          "A sees it cancelled")
    cancel_and_wait(a, busy)


def wait_for(what, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    raise AssertionError("never: " + what)


def test_end_during_outage(a, b):
    """After the outage, whether the replica's heartbeat or its store ping
    answers first is a race; the bug needed the heartbeat first, so the
    outage is run three times."""
    if not (PG_STOP and PG_START):
        print("no AE_TEST_PG_STOP / AE_TEST_PG_START: outage check skipped")
        return
    for seed in (105, 106, 107):
        end_during_outage(a, b, seed)


def end_during_outage(a, b, seed):
    jid = a.submit(medium(seed)).json["id"]
    d = runner_of(a, b, jid)
    other = b if d is a else a
    wait_state(d, jid, ("running",))
    check(subprocess.call(PG_STOP, shell=True) == 0, "PostgreSQL stopped")
    try:
        # The job ends on d while the store is away: its end is kept.
        wait_for("d keeps the end of %s" % jid,
                 lambda: re.search(r"store: finish %s: " % jid, d.log_text()),
                 timeout=120)
    finally:
        check(subprocess.call(PG_START, shell=True) == 0,
              "PostgreSQL started again")
    end = wait_state(other, jid, h.TERMINAL, timeout=60)
    check(end["state"] == "succeeded", "the job ended during the outage "
          "is succeeded in the store", end["state"])
    check(a.wait_ready(60) and b.wait_ready(60), "both replicas ready again")
    time.sleep(1.0)  # a few of the other replica's claim rounds
    check(jid not in claims(other),
          "the other replica never claimed it", claims(other).get(jid))
    check(claims(d).get(jid) == [1], "its replica claimed it once",
          claims(d).get(jid))
    check("job %s: leased here but not held" % jid not in d.log_text(),
          "its replica did not give it back to the queue")


def test_sigkill(a, b):
    jid = a.submit(medium(104)).json["id"]
    d = runner_of(a, b, jid)
    other = b if d is a else a
    wait_state(other, jid, ("running",))
    d.kill()
    log_t0 = time.monotonic()
    end = wait_state(other, jid, h.TERMINAL, timeout=120)
    check(end["state"] == "succeeded",
          "the killed replica's job ran again elsewhere to success "
          "(%.1f s)" % (time.monotonic() - log_t0), end)
    check(claims(other).get(jid) == [2],
          "the other replica claimed it at attempt 2", claims(other).get(jid))
    check(d.try_start(), "the killed replica starts again")


def main():
    h.require_daemon()
    if not PG_URL:
        h.skip("no AE_TEST_PG_URL (run through test_fleet_pg.sh)")
    a, b = replica("ra"), replica("rb")
    try:
        if not (a.try_start() and b.try_start()):
            h.finish(0, 1)
        for test in (test_spread, test_idempotency_race, test_wake_latency,
                     test_cancel_across, test_queued_cancel,
                     test_end_during_outage, test_sigkill):
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
