#!/usr/bin/env python3
"""test_fleet_accept.py: a fleet of archevald replicas on one PostgreSQL store.

The acceptance test of issue 15.  Run through test_fleet_accept_pg.sh, inside a
throwaway cluster of tests/pg_cluster.sh ($AE_TEST_PG_URL, and the
commands that stop and start its server).  It starts REPLICAS daemons on
the one database (--replica-id r0, r1, ...) and checks:

1. Load with chaos: CLIENTS threads submit JOBS small seeded jobs (an
   mlp_dag, topology + convergence, width 16, batch 8, distinct seeds),
   each to a random replica with its own Idempotency-Key, retrying a lost
   answer, a 503 or a 429 on another replica with the same key, and read
   one in four back from another replica.  Meanwhile replica r1 is
   SIGKILLed and restarted twice, and PostgreSQL is stopped for
   AE_FLEET_OUTAGE_S (10) seconds: every replica must turn not ready
   (503 store_unavailable) during the outage and ready again after it.
   At the end every acknowledged job is succeeded on every replica, listed
   exactly once, no job was created that no client acknowledged, no job
   was completed twice (the daemons' logs, all starts, counted: "job ID
   succeeded"), and the results of COMPARE jobs picked at random equal,
   timings aside, those of a daemon without a store that was never killed.
2. Idempotency races: 8 threads post one body with one key to all
   replicas at once: one job.  Batches: a batch answered on one replica is
   visible whole on the others at once; a batch with one bad member makes
   no job on any; a keyed batch raced on all replicas makes one set.
3. Long polls: a job (of a few hundred ms) submitted on one replica, its
   long poll (wait_ms) on another from a random moment of its run: the
   median delay from its finished_at to the poll's answer is at most
   100 ms (printed).

While the store refuses a second daemon (a build before the fleet's
leases: "in use by another process"), the checks run with one replica and
say so; they need no change once replicas share the queue.

Environment: AE_BUILDDIR, AE_TEST_PG_URL, AE_TEST_PG_STOP, AE_TEST_PG_START
(from pg_cluster.sh), AE_FLEET_JOBS (3000; 600 under AE_SANITIZERS),
AE_FLEET_CLIENTS (32), AE_FLEET_REPLICAS (3), AE_FLEET_COMPARE (200),
AE_FLEET_OUTAGE_S (10), AE_FLEET_SEED (random).  Exit 77 (skipped) when the
daemon is missing or has no --store, or without a cluster.  Prints
"N passed, M failed" last; python3 stdlib only.  Threads: the client
threads share the bookkeeping under one lock.
"""

import collections
import datetime
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

JOBS = int(os.environ.get("AE_FLEET_JOBS", "600" if h.SANITIZERS else "3000"))
CLIENTS = int(os.environ.get("AE_FLEET_CLIENTS", "32"))
REPLICAS = int(os.environ.get("AE_FLEET_REPLICAS", "3"))
COMPARE = int(os.environ.get("AE_FLEET_COMPARE", "200"))
OUTAGE_S = float(os.environ.get("AE_FLEET_OUTAGE_S", "10"))
SEED = int(os.environ.get("AE_FLEET_SEED", str(random.randrange(1 << 30))))
PG_URL = os.environ.get("AE_TEST_PG_URL")
PG_STOP = os.environ.get("AE_TEST_PG_STOP")
PG_START = os.environ.get("AE_TEST_PG_START")
TERMINAL = ("succeeded", "failed", "cancelled")
DAGS = ("2_22_222", "2_21_112", "2_02_122", "1_22_212", "2_12_221")
RUN_DEADLINE_S = 900
STALL_S = 90  # give up waiting when no job finishes for this long
NOT_READY_WITHIN_S = 3.0  # the sweep pings every 0.5 s
READY_AGAIN_WITHIN_S = 15.0  # the store's back-off is at most 5 s

log = h.log
check = h.check


def daemon_has_flag(flag):
    try:
        out = subprocess.run([h.DAEMON, "--help"], capture_output=True,
                             text=True, timeout=30).stdout
    except OSError:
        return False
    return re.search(r"^\s+%s\b" % re.escape(flag), out, re.M) is not None


# Replicas share the store's queue with --fleet, under the default lease
# (10 s), shorter than what the outage below needs to ride out on leases
# alone: after the store returns, a replica re-queues others' expired
# leases only once its own heartbeats have succeeded for a heartbeat period
# plus the reconnect back-off, so every live replica renews its own first
# and no job runs twice (checked below).  A SIGKILLed replica restarts
# under its own id and re-queues its jobs at once.
LEASE_S = int(os.environ.get("AE_FLEET_LEASE_S", "10"))
FLEET_FLAGS = ["--fleet", "--lease-secs", str(LEASE_S)] \
    if daemon_has_flag("--fleet") else []


def request_body(index):
    """The index-th job: small, seeded, distinct (no two share a result
    cache key)."""
    return {
        "architecture": {"type": "mlp_dag", "dag": DAGS[index % len(DAGS)],
                         "width": 16},
        "data": {"batch_size": 8},
        "seed": SEED % 100000 * 10 + index * 7919,
        "metrics": ["topology", "convergence"],
        "client_ref": "fleet-%d" % index,
    }


def rfc3339_seconds(text):
    """Unix seconds of an RFC 3339 time, or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(
            text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def comparable(result):
    """A result without what may differ between runs: timings."""
    if not isinstance(result, dict):
        return result
    copy = json.loads(json.dumps(result))
    provenance = copy.get("provenance")
    if isinstance(provenance, dict):
        provenance.pop("timings_s", None)
    return copy


def http_call(daemon, method, path, body=None, headers=None, timeout=15.0):
    """(status, parsed JSON or None); raises on connection errors."""
    r = h.call(daemon.port, method, path, body, headers=headers,
               timeout=timeout)
    return r.status, r.json


# ---- the fleet ---------------------------------------------------------------

class Fleet:
    """REPLICAS daemons on the one store; replicas[i] is --replica-id ri."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.replicas = []
        self.single = False  # the store refused a second daemon

    def new_replica(self, i):
        return h.Daemon("--store", PG_URL, *FLEET_FLAGS,
                        "--replica-id", "r%d" % i,
                        "--log-level", "debug",
                        "--max-queue", str(max(4096, 2 * JOBS)),
                        host_workers=1, store_sync=None, backend="host",
                        workdir=self.workdir, name="r%d" % i)

    def start(self):
        for i in range(REPLICAS):
            d = self.new_replica(i)
            if d.try_start(timeout=30.0, attempts=2):
                self.replicas.append(d)
                continue
            if i == 0 and "built without PostgreSQL" in d.log_text():
                d.kill()
                h.skip("archevald was built without PostgreSQL")
            if i > 0 and "in use by another process" in d.log_text():
                self.single = True
                log("the store refuses a second daemon (no leases in this "
                    "build): the checks run on ONE replica")
                d.kill()
                return True
            d.kill()
            return False
        return True

    def pick(self, rng, avoid=None):
        choices = [d for d in self.replicas if d is not avoid] \
            or self.replicas
        return rng.choice(choices)

    def logs(self):
        return [d.log_text() for d in self.replicas]

    def cleanup(self):
        for d in self.replicas:
            d.cleanup()


def completions(fleet):
    """id -> how many times a replica logged it succeeded (every start of
    every replica: the logs are appended to)."""
    counts = collections.Counter()
    pattern = re.compile(r"\bjob (j_[0-9a-z]+) succeeded\b")
    for text in fleet.logs():
        counts.update(pattern.findall(text))
    return counts


# ---- 1. load with kills and an outage ---------------------------------------

class Book:
    """What the clients learnt, shared under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ids = {}          # index -> the id of its 202
        self.errors = []       # unexpected answers
        self.conflicts = []    # an index acknowledged with two ids
        self.read_back = [0, 0]  # [read from another replica, found]
        self.retries = 0
        self.acked = 0
        self.next_index = 0
        self.submitting = True

    def take(self):
        with self.lock:
            if self.next_index >= JOBS:
                return None
            index = self.next_index
            self.next_index += 1
            return index


def submit_worker(fleet, book, rng_seed, deadline):
    rng = random.Random(rng_seed)
    while True:
        index = book.take()
        if index is None:
            return
        body = request_body(index)
        headers = {"Idempotency-Key": "fleet-%d-%d" % (SEED, index)}
        while time.monotonic() < deadline:
            daemon = fleet.pick(rng)
            try:
                status, answer = http_call(daemon, "POST", "/v1/jobs", body,
                                           headers)
            except (OSError, http.client.HTTPException):
                # Killed or restarting: the same key makes a retry safe.
                with book.lock:
                    book.retries += 1
                time.sleep(0.02 + rng.random() * 0.1)
                continue
            if status in (429, 503):
                with book.lock:
                    book.retries += 1
                time.sleep(0.05 + rng.random() * 0.2)
                continue
            ok = status == 202 and isinstance(answer, dict) \
                and isinstance(answer.get("id"), str)
            with book.lock:
                if not ok:
                    book.errors.append((index, status, answer))
                elif book.ids.get(index, answer["id"]) != answer["id"]:
                    book.conflicts.append((index, book.ids[index],
                                           answer["id"]))
                else:
                    book.ids[index] = answer["id"]
                    book.acked += 1
            if ok and rng.random() < 0.25:
                read_back(fleet, book, rng, daemon, answer["id"])
            break


def read_back(fleet, book, rng, wrote_on, job_id):
    """A job just acknowledged by one replica, read on another."""
    other = fleet.pick(rng, avoid=wrote_on)
    try:
        status, _ = http_call(other, "GET", "/v1/jobs/" + job_id)
    except (OSError, http.client.HTTPException):
        return  # that replica is being killed
    if status == 503:
        return  # the store is stopped
    with book.lock:
        book.read_back[0] += 1
        book.read_back[1] += status == 200


def wait_acked(book, fraction, state):
    """Waits until FRACTION of the jobs are acknowledged (or the
    submissions ended)."""
    while not state["stop"]:
        with book.lock:
            if book.acked >= fraction * JOBS or not book.submitting:
                return
        time.sleep(0.01)


def ready_status(daemon):
    try:
        status, answer = http_call(daemon, "GET", "/v1/health/ready",
                                   timeout=5.0)
        return status, (answer or {}).get("code")
    except (OSError, http.client.HTTPException):
        return None, None


def outage(fleet, state):
    """Stops PostgreSQL for OUTAGE_S seconds; records when each replica
    turned not ready and ready again."""
    log("stopping PostgreSQL for %.0f s" % OUTAGE_S)
    if subprocess.call(PG_STOP, shell=True) != 0:
        state["outage_failed"] = "the server did not stop"
        return
    stopped = time.monotonic()
    not_ready = {}
    while time.monotonic() - stopped < OUTAGE_S:
        for d in fleet.replicas:
            if d.name not in not_ready:
                status, code = ready_status(d)
                if status == 503 and code == "store_unavailable":
                    not_ready[d.name] = time.monotonic() - stopped
        time.sleep(0.1)
    if subprocess.call(PG_START, shell=True) != 0:
        state["outage_failed"] = "the server did not start again"
        return
    started = time.monotonic()
    ready_again = {}
    while time.monotonic() - started < READY_AGAIN_WITHIN_S + 5:
        for d in fleet.replicas:
            if d.name not in ready_again and ready_status(d)[0] == 200:
                ready_again[d.name] = time.monotonic() - started
        if len(ready_again) == len(fleet.replicas):
            break
        time.sleep(0.1)
    state["not_ready"] = not_ready
    state["ready_again"] = ready_again
    log("outage: not ready after %s s; ready again after %s s" % (
        {k: round(v, 2) for k, v in sorted(not_ready.items())},
        {k: round(v, 2) for k, v in sorted(ready_again.items())}))


def chaos(fleet, book, state):
    """r1 SIGKILLed at a quarter of the jobs, PostgreSQL stopped at a half,
    r1 SIGKILLed again at three quarters; one after the other."""
    victim = fleet.replicas[1 % len(fleet.replicas)]
    rng = random.Random(SEED + 1)
    for fraction, event in ((0.25, "kill"), (0.5, "outage"), (0.75, "kill")):
        wait_acked(book, fraction, state)
        if state["stop"]:
            return
        if event == "outage":
            outage(fleet, state)
            continue
        time.sleep(rng.random() * 0.05)
        victim.kill()
        state["kills"] += 1
        log("SIGKILL %s (%d) at %d acknowledged" % (victim.name,
                                                    state["kills"],
                                                    book.acked))
        if not victim.try_start(timeout=30.0, attempts=5):
            state["restart_failed"] = True
            return


def wait_all(fleet, ids, deadline):
    """Waits (long polls on random replicas) until every id is terminal;
    returns id -> final job, and the ids a replica did not know."""
    final, missing = {}, []
    pending = list(ids)
    lock = threading.Lock()
    progress = [time.monotonic()]

    def going():
        now = time.monotonic()
        with lock:
            return now < deadline and now - progress[0] < STALL_S

    def waiter(seed):
        rng = random.Random(seed)
        while True:
            with lock:
                if not pending:
                    return
                job_id = pending.pop()
            while going():
                d = fleet.pick(rng)
                try:
                    status, job = http_call(
                        d, "GET", "/v1/jobs/%s?wait_ms=5000" % job_id,
                        timeout=20.0)
                except (OSError, http.client.HTTPException):
                    time.sleep(0.1)
                    continue
                if status == 200 and isinstance(job, dict) \
                        and job.get("state") in TERMINAL:
                    with lock:
                        final[job_id] = job
                        progress[0] = time.monotonic()
                    break
                if status not in (200, 503):
                    with lock:
                        missing.append((job_id, d.name, status))
                    break

    threads = [threading.Thread(target=waiter, args=(SEED + k,))
               for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return final, missing


def list_all(daemon):
    """Every job the daemon lists, following the page tokens; None on an
    error."""
    jobs, token = [], None
    for _ in range(10000):
        path = "/v1/jobs?page_size=1000"
        if token:
            path += "&page_token=" + token
        status, page = http_call(daemon, "GET", path, timeout=60.0)
        if status != 200 or not isinstance(page, dict):
            return None
        jobs.extend(page.get("jobs") or [])
        token = page.get("next_page_token")
        if not token:
            return jobs
    return None


def reference_results(indices, workdir):
    """index -> the result of its request in a daemon without a store."""
    results = {}
    with h.Daemon(host_workers=2, store=False, workdir=workdir,
                  name="reference") as ref:
        for index in indices:
            r = ref.submit(request_body(index))
            if r.status != 202:
                continue
            job = ref.wait(r.json["id"])
            results[index] = job.get("result")
    return results


def load_with_chaos(fleet, workdir):
    book = Book()
    state = {"stop": False, "kills": 0, "restart_failed": False}
    deadline = time.monotonic() + RUN_DEADLINE_S
    t0 = time.monotonic()
    clients = [threading.Thread(target=submit_worker,
                                args=(fleet, book, SEED * 1000 + k, deadline))
               for k in range(CLIENTS)]
    chaos_thread = threading.Thread(target=chaos, args=(fleet, book, state))
    for t in clients:
        t.start()
    chaos_thread.start()
    for t in clients:
        t.join()
    with book.lock:
        book.submitting = False
    chaos_thread.join()
    log("%d acknowledged in %.1f s (%d retries), %d kills" % (
        book.acked, time.monotonic() - t0, book.retries, state["kills"]))

    check(not book.errors, "every POST is answered 202 in the end",
          book.errors[:5])
    check(not book.conflicts, "a key retried on another replica answers "
          "the same job", book.conflicts[:5])
    check(len(book.ids) == JOBS, "every job is acknowledged",
          "%d of %d" % (len(book.ids), JOBS))
    check(state["kills"] == 2 and not state["restart_failed"],
          "r1 was SIGKILLed twice and restarted", state)
    check(not state.get("outage_failed"), "PostgreSQL stopped and started",
          state.get("outage_failed"))
    names = sorted(d.name for d in fleet.replicas)
    check(sorted(state.get("not_ready", {})) == names and
          max(state["not_ready"].values()) <= NOT_READY_WITHIN_S,
          "every replica turns not ready (store_unavailable) within %.0f s "
          "of the outage" % NOT_READY_WITHIN_S, state.get("not_ready"))
    check(sorted(state.get("ready_again", {})) == names and
          max(state["ready_again"].values()) <= READY_AGAIN_WITHIN_S,
          "every replica is ready again within %.0f s of the restart"
          % READY_AGAIN_WITHIN_S, state.get("ready_again"))
    if not fleet.single:
        check(book.read_back[0] > 0 and book.read_back[1] ==
              book.read_back[0], "a job acknowledged by one replica is "
              "found on another", book.read_back)

    ids = set(book.ids.values())
    final, missing = wait_all(fleet, ids, deadline)
    check(not missing, "every replica knows every acknowledged job",
          missing[:5])
    states = collections.Counter(j.get("state") for j in final.values())
    check(len(final) == len(ids) and states["succeeded"] == len(ids),
          "every acknowledged job succeeds", dict(states))

    counts = completions(fleet)
    twice = [i for i in ids if counts[i] > 1]
    check(not twice, "no job completes twice (counted in the logs)",
          [(i, counts[i]) for i in twice[:5]])
    log("completions in the logs: %d of %d jobs (a job whose replica died "
        "between its store write and its log line has none)" % (
            sum(1 for i in ids if counts[i] == 1), len(ids)))

    for d in fleet.replicas:
        listed = list_all(d)
        if listed is None:
            check(False, "%s lists the jobs" % d.name)
            continue
        seen = collections.Counter(j["id"] for j in listed)
        ours = [j for j in listed
                if str(j.get("client_ref", "")).startswith("fleet-")]
        check(all(seen[i] == 1 for i in ids) and len(ours) == len(ids),
              "%s lists every acknowledged job exactly once and no other"
              % d.name, "%d listed, %d acknowledged" % (len(ours), len(ids)))

    rng = random.Random(SEED + 2)
    sample = sorted(rng.sample(sorted(book.ids), min(COMPARE, len(book.ids))))
    reference = reference_results(sample, workdir)
    by_id = {j["id"]: j for j in final.values()}
    differ = [i for i in sample
              if comparable(by_id.get(book.ids[i], {}).get("result"))
              != comparable(reference.get(i))]
    check(len(reference) == len(sample) and not differ,
          "%d results equal those of a daemon without a store" % len(sample),
          differ[:5])


# ---- 2. idempotency and batch races ------------------------------------------

def race(fleet, n, method_path, body, key):
    """n threads post at once, thread k to replica k % replicas; the
    answers."""
    barrier = threading.Barrier(n)
    answers = [None] * n

    def one(k):
        d = fleet.replicas[k % len(fleet.replicas)]
        barrier.wait()
        try:
            answers[k] = http_call(d, "POST", method_path, body,
                                   {"Idempotency-Key": key})
        except (OSError, http.client.HTTPException) as err:
            answers[k] = (None, str(err))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def listed_with_ref(daemon, ref):
    status, page = http_call(daemon, "GET",
                             "/v1/jobs?page_size=1000&client_ref=" + ref)
    return [j["id"] for j in (page or {}).get("jobs", [])] \
        if status == 200 else None


def races(fleet):
    body = request_body(JOBS + 1)
    body["client_ref"] = "race-one"
    answers = race(fleet, 8, "/v1/jobs", body, "race-one-%d" % SEED)
    ids = {a[1].get("id") for a in answers
           if a[0] == 202 and isinstance(a[1], dict)}
    check(all(a[0] == 202 for a in answers) and len(ids) == 1,
          "8 racing POSTs with one key on %d replicas: one job"
          % len(fleet.replicas), [a[0] for a in answers])
    for d in fleet.replicas:
        check(listed_with_ref(d, "race-one") == sorted(ids),
              "%s lists that one job" % d.name)

    jobs = [request_body(JOBS + 10 + k) for k in range(10)]
    for k, j in enumerate(jobs):
        j["client_ref"] = "batch-ok"
    writer = fleet.replicas[0]
    status, answer = http_call(writer, "POST", "/v1/jobs:batch",
                               {"jobs": jobs})
    batch_ids = [j["id"] for j in (answer or {}).get("jobs", [])] \
        if status == 202 else []
    check(len(batch_ids) == 10, "a batch of 10 is accepted", status)
    for d in fleet.replicas:
        found = [http_call(d, "GET", "/v1/jobs/" + i)[0] for i in batch_ids]
        check(found == [200] * len(batch_ids),
              "%s finds every job of the batch at once" % d.name, found)

    bad = [request_body(JOBS + 30 + k) for k in range(10)]
    for j in bad:
        j["client_ref"] = "batch-bad"
    bad[7]["architecture"]["width"] = -1
    target = fleet.replicas[-1]
    status, answer = http_call(target, "POST", "/v1/jobs:batch", {"jobs": bad})
    check(status == 422, "a batch with one bad member is refused (422)",
          status)
    for d in fleet.replicas:
        check(listed_with_ref(d, "batch-bad") == [],
              "%s has no job of the refused batch" % d.name)

    keyed = [request_body(JOBS + 50 + k) for k in range(5)]
    for j in keyed:
        j["client_ref"] = "batch-race"
    key = "batch-race-%d" % SEED
    answers = race(fleet, 6, "/v1/jobs:batch", {"jobs": keyed}, key)
    sets = {tuple(j["id"] for j in a[1].get("jobs", []))
            for a in answers if a[0] == 202 and isinstance(a[1], dict)}
    # A replica that loses the race to another replica's commit answers
    # 409 idempotency_conflict (retry: the batch); never a second set.
    lost = [a for a in answers if a[0] == 409 and isinstance(a[1], dict)
            and a[1].get("code") == "idempotency_conflict"]
    check(len(sets) == 1 and len(lost) + sum(a[0] == 202 for a in answers)
          == len(answers),
          "6 racing keyed batches on %d replicas: one set of jobs (202), "
          "the losers 409 idempotency_conflict" % len(fleet.replicas),
          [a[0] for a in answers])
    for d in fleet.replicas:
        listed = listed_with_ref(d, "batch-race")
        check(listed is not None and sorted(listed) ==
              sorted(next(iter(sets), ())),
              "%s lists the 5 jobs of the raced batch, once" % d.name, listed)
        status, answer = http_call(d, "POST", "/v1/jobs:batch",
                                   {"jobs": keyed}, {"Idempotency-Key": key})
        again = tuple(j["id"] for j in (answer or {}).get("jobs", []))
        check(status == 202 and {again} == sets,
              "a retry of the raced batch on %s answers that set" % d.name,
              (status, again))


# ---- 3. long polls across replicas -------------------------------------------

def long_polls(fleet, rounds=15):
    rng = random.Random(SEED + 3)
    delays = []
    for k in range(rounds):
        writer = fleet.pick(rng)
        poller = fleet.pick(rng, avoid=writer)
        # A job of a few hundred milliseconds, polled from a random moment
        # of its run: a replica that reads the store on a timer wakes at a
        # random phase of it, as for real jobs (a job shorter than the
        # timer's period, polled at once, would always wait a whole one).
        body = request_body(JOBS + 100 + k)
        body["metrics"] = ["expressivity"]
        body["client_ref"] = "long-poll"
        status, answer = http_call(writer, "POST", "/v1/jobs", body)
        if status != 202:
            check(False, "a long-poll job is accepted", status)
            return
        time.sleep(rng.random() * 0.1)
        polled = time.time()
        status, job = http_call(poller, "GET",
                                "/v1/jobs/%s?wait_ms=20000" % answer["id"],
                                timeout=30.0)
        woke = time.time()
        finished = rfc3339_seconds((job or {}).get("finished_at"))
        if status != 200 or job.get("state") != "succeeded" \
                or finished is None:
            check(False, "a long poll on %s answers the job finished on "
                  "%s" % (poller.name, writer.name), (status, job))
            return
        if finished > polled:  # else it ended before the poll began
            delays.append(woke - finished)
    if len(delays) < rounds // 2:
        check(False, "long polls began before their jobs ended",
              "%d of %d" % (len(delays), rounds))
        return
    median = statistics.median(delays)
    log("long polls (submitted on one replica, polled on %s): median %.1f "
        "ms, max %.1f ms after finished_at, %d samples (finished_at has "
        "millisecond precision)" % (
            "another" if not fleet.single else "the same", median * 1000,
            max(delays) * 1000, len(delays)))
    check(median <= 0.100, "long polls wake within 100 ms (median) of "
          "completion", "%.1f ms" % (median * 1000))


# ---- main ------------------------------------------------------------------

def main():
    h.require_daemon()
    if not PG_URL or not PG_STOP or not PG_START:
        h.skip("no PostgreSQL cluster: run through test_fleet_accept_pg.sh")
    log("seed %d, %d jobs, %d clients, %d replicas" % (SEED, JOBS, CLIENTS,
                                                       REPLICAS))
    workdir = tempfile.mkdtemp(prefix="ae-fleet-")
    fleet = Fleet(workdir)
    try:
        if not fleet.start():
            check(False, "the replicas start on one store")
            return h.finish()
        h.section(races, fleet)
        h.section(long_polls, fleet)
        h.section(load_with_chaos, fleet, workdir)
        for d in fleet.replicas:
            status = d.stop()
            check(status == 0, "%s stops cleanly" % d.name, d.log_tail(5))
    finally:
        fleet.cleanup()
        if not h.failures():
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log("logs kept in " + workdir)
    return h.finish()


if __name__ == "__main__":
    sys.exit(main())
