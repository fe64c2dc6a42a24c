#!/usr/bin/env python3
"""test_restart.py: archevald keeps every acknowledged job across SIGKILL.

The acceptance test of issue 6 (durable job store).  It starts archevald on
a temporary --state-dir and a free loopback port; 32 client threads submit
2,000 small seeded jobs (mlp_dag, metrics topology + convergence, batch 8,
width 32, distinct seeds), each with its own Idempotency-Key, and record
every id that got a 202.  Meanwhile the daemon is killed with SIGKILL at
random moments (twice during the submissions, once while the queue drains)
and restarted on the same state dir; clients retry connection errors with
the same key, so a POST whose answer was lost returns the same job.  At the
end every acknowledged id must be succeeded, listed exactly once (no job
created twice), still there after one more kill and restart, and its
result must equal (provenance timings aside) the result of the same request
in a fresh daemon that was never killed.

Environment: AE_BUILDDIR (the build tree), AE_RESTART_JOBS (2000),
AE_RESTART_CLIENTS (32), AE_RESTART_KILLS (3), AE_RESTART_SEED (random),
AE_RESTART_WORKERS (2).  Exit 77 (skipped) when the daemon is missing or has
no --state-dir.  Prints "N passed, M failed" last; python3 stdlib only.
Threads: the client threads share the bookkeeping below under one lock.
"""

import datetime
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

JOBS = int(os.environ.get("AE_RESTART_JOBS", "2000"))
CLIENTS = int(os.environ.get("AE_RESTART_CLIENTS", "32"))
KILLS = int(os.environ.get("AE_RESTART_KILLS", "3"))
WORKERS = int(os.environ.get("AE_RESTART_WORKERS", "2"))
SEED = int(os.environ.get("AE_RESTART_SEED", str(random.randrange(1 << 30))))
TERMINAL = ("succeeded", "failed", "cancelled")
DAGS = ("2_22_222", "2_21_112", "2_02_122", "1_22_212", "2_12_221")
RUN_DEADLINE_S = 600
STALL_S = 60  # give up waiting when no job finishes for this long

log = h.log
check = h.check


def request_body(index):
    """The index-th job: small, seeded, distinct."""
    return {
        "architecture": {"type": "mlp_dag", "dag": DAGS[index % len(DAGS)],
                         "width": 32},
        "data": {"batch_size": 8},
        "seed": 1000 + index,
        "metrics": ["topology", "convergence"],
        "client_ref": "restart-%d" % index,
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


# With AE_RESTART_ON_PG=1 (tests/integration/test_restart_pg.sh, inside a
# throwaway cluster of tests/pg_cluster.sh) the killed daemon and the
# second opener use the PostgreSQL store at $AE_TEST_PG_URL; the reference
# daemon stays on SQLite.
PG_URL = (os.environ.get("AE_TEST_PG_URL")
          if os.environ.get("AE_RESTART_ON_PG") == "1" else None)


def store_flags(name):
    return ["--store", PG_URL] if PG_URL and name != "reference" else []


def new_daemon(state_dir, workdir, name):
    """One archevald on a state dir, restartable on the same port (the
    daemon's default backend and store sync, as an operator runs it)."""
    return h.Daemon("--max-queue", str(max(4096, 2 * JOBS)),
                    *store_flags(name),
                    host_workers=WORKERS, state_dir=state_dir,
                    store_sync=None, backend=None,
                    ready_path="/v1/health/live", workdir=workdir, name=name)


def start(daemon):
    """Starts (or, after a kill, restarts) the daemon; False if it failed."""
    return daemon.try_start(timeout=30.0, attempts=5)


def http_call(port, method, path, body=None, headers=None, timeout=15.0):
    """One request on a fresh connection: (status, headers, parsed JSON or
    None); raises on connection errors."""
    r = h.call(port, method, path, body, headers=headers, timeout=timeout)
    return r.status, r.headers, r.json


class Book:
    """What the clients learnt, shared under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ids = {}           # index -> the id of its 202
        self.errors = []        # unexpected answers
        self.conflicts = []     # an index acknowledged with two ids
        self.retries = 0
        self.lost_then_found = 0  # a POST's answer lost, its job created
        self.acked = 0
        self.next_index = 0

    def take(self):
        with self.lock:
            if self.next_index >= JOBS:
                return None
            index = self.next_index
            self.next_index += 1
            return index


def submit_worker(daemon, book, key_prefix, rng_seed, deadline):
    rng = random.Random(rng_seed)
    while True:
        index = book.take()
        if index is None:
            return
        body = request_body(index)
        headers = {"Idempotency-Key": "%s-%d" % (key_prefix, index)}
        lost = False
        while time.monotonic() < deadline:
            attempt_at = time.time()
            try:
                status, _, answer = http_call(daemon.port, "POST", "/v1/jobs",
                                              body, headers)
            except (OSError, http.client.HTTPException):
                # Killed or restarting: the POST may or may not have been
                # accepted; the same key makes the retry safe.
                with book.lock:
                    book.retries += 1
                lost = True
                time.sleep(0.02 + rng.random() * 0.1)
                continue
            if status in (429, 503):
                with book.lock:
                    book.retries += 1
                time.sleep(0.05 + rng.random() * 0.2)
                continue
            with book.lock:
                if status == 202 and isinstance(answer, dict) \
                        and isinstance(answer.get("id"), str):
                    known = book.ids.get(index)
                    if known is not None and known != answer["id"]:
                        book.conflicts.append((index, known, answer["id"]))
                    else:
                        book.ids[index] = answer["id"]
                        book.acked += 1
                        created = rfc3339_seconds(answer.get("created_at"))
                        if lost and created is not None \
                                and created < attempt_at - 0.01:
                            book.lost_then_found += 1
                else:
                    book.errors.append((index, status, answer))
            break


def killer(daemon, book, kill_thresholds, rng, state):
    """Kills and restarts the daemon when the acknowledged count crosses
    each threshold, a random few milliseconds later."""
    for threshold in kill_thresholds:
        while True:
            with book.lock:
                done = book.acked >= threshold or book.next_index >= JOBS \
                    and book.acked + len(book.errors) >= JOBS
            if done or state["stop"]:
                break
            time.sleep(0.002)
        if state["stop"]:
            return
        time.sleep(rng.random() * 0.05)
        daemon.kill()
        state["kills"] += 1
        log("SIGKILL %d at %d acknowledged" % (state["kills"], book.acked))
        if not start(daemon):
            state["restart_failed"] = True
            return


def run_clients(daemon, book, key_prefix, seed, deadline):
    threads = [threading.Thread(target=submit_worker,
                                args=(daemon, book, key_prefix,
                                      seed * 1000 + k, deadline))
               for k in range(CLIENTS)]
    for t in threads:
        t.start()
    return threads


def wait_all(daemon, ids, deadline):
    """Waits for every id to be terminal; returns id -> final job."""
    final = {}
    pending = list(ids)
    lock = threading.Lock()
    missing = []
    progress = [time.monotonic()]

    def going():
        """False past the deadline or after STALL_S without a job done."""
        now = time.monotonic()
        with lock:
            return now < deadline and now - progress[0] < STALL_S

    def waiter():
        while True:
            with lock:
                if not pending:
                    return
                job_id = pending.pop()
            while going():
                try:
                    status, _, job = http_call(
                        daemon.port, "GET", "/v1/jobs/%s?wait_ms=5000" % job_id,
                        timeout=20.0)
                except (OSError, http.client.HTTPException):
                    time.sleep(0.1)
                    continue
                if status == 404:
                    with lock:
                        missing.append(job_id)
                    break
                if status == 200 and isinstance(job, dict) \
                        and job.get("state") in TERMINAL:
                    with lock:
                        final[job_id] = job
                        progress[0] = time.monotonic()
                    break
                if status not in (200, 503):
                    with lock:
                        missing.append(job_id)
                    break

    threads = [threading.Thread(target=waiter) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return final, missing


def list_all(daemon):
    """Every job the daemon lists, following the page tokens."""
    jobs = []
    token = None
    for _ in range(10000):
        path = "/v1/jobs?page_size=1000"
        if token:
            path += "&page_token=" + token
        status, _, page = http_call(daemon.port, "GET", path, timeout=30.0)
        if status != 200 or not isinstance(page, dict):
            return None
        jobs.extend(page.get("jobs") or [])
        token = page.get("next_page_token")
        if not token:
            return jobs
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


def main():
    h.require_daemon()
    try:
        helptext = subprocess.run([h.DAEMON, "--help"], capture_output=True,
                                  timeout=10).stdout.decode("utf-8",
                                                            "replace")
    except (OSError, subprocess.TimeoutExpired):
        h.skip("archevald --help failed")
    if "--state-dir" not in helptext:
        h.skip("archevald has no --state-dir")

    log("jobs %d, clients %d, kills %d, seed %d" % (JOBS, CLIENTS, KILLS,
                                                   SEED))
    rng = random.Random(SEED)
    workdir = tempfile.mkdtemp(prefix="ae_restart_")
    deadline = time.monotonic() + RUN_DEADLINE_S
    daemon = reference = None
    try:
        daemon = new_daemon(os.path.join(workdir, "state"), workdir,
                            "killed")
        if not check(start(daemon), "daemon starts on a fresh state dir"):
            log(daemon.log_tail())
            return
        # A second daemon on the same state dir must refuse to start.
        second = h.Daemon(*store_flags("second"), host_workers=1,
                          state_dir=daemon.state_dir,
                          store_sync=None, backend=None, workdir=workdir,
                          name="second").spawn()
        try:
            code = second.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
            second.kill()
        check(code not in (None, 0),
              "a second daemon on the same state dir exits (code %r)" % code)

        # Two kills during the submissions, the rest while the queue drains.
        during = min(KILLS, 2)
        thresholds = sorted(int(JOBS * rng.uniform(0.1 + 0.45 * k,
                                                   0.4 + 0.45 * k))
                            for k in range(during))
        book = Book()
        state = {"stop": False, "kills": 0, "restart_failed": False}
        kill_thread = threading.Thread(target=killer, args=(
            daemon, book, thresholds, rng, state))
        kill_thread.start()
        key_prefix = "restart-%d" % SEED
        clients = run_clients(daemon, book, key_prefix, SEED, deadline)
        for t in clients:
            t.join()
        state["stop"] = True
        kill_thread.join()
        for _ in range(KILLS - during):
            if state["restart_failed"]:
                break
            time.sleep(rng.uniform(0.05, 1.0))
            daemon.kill()
            state["kills"] += 1
            log("SIGKILL %d while the queue drains" % state["kills"])
            if not start(daemon):
                state["restart_failed"] = True
        log("submitted: %d acknowledged, %d retries, %d errors; %d POSTs "
            "lost their answer to a kill after the job was created"
            % (book.acked, book.retries, len(book.errors),
               book.lost_then_found))
        check(not state["restart_failed"], "daemon restarts after SIGKILL")
        if state["restart_failed"]:
            log(daemon.log_tail())
            return
        check(state["kills"] == KILLS,
              "%d of %d kills happened" % (state["kills"], KILLS))
        check(not book.errors, "every POST was answered 202 (first errors: %r)"
              % book.errors[:3])
        check(not book.conflicts,
              "a retried key returns the same job (conflicts: %r)"
              % book.conflicts[:3])
        check(len(book.ids) == JOBS,
              "every job acknowledged (%d of %d)" % (len(book.ids), JOBS))

        ids = set(book.ids.values())
        check(len(ids) == len(book.ids), "every acknowledged id is distinct")
        final, missing = wait_all(daemon, ids, deadline)
        check(not missing, "every acknowledged id exists after the kills "
              "(missing: %r)" % sorted(missing)[:3])
        check(len(final) == len(ids),
              "every acknowledged id is terminal (%d of %d)"
              % (len(final), len(ids)))
        states = {}
        for job in final.values():
            states[job.get("state")] = states.get(job.get("state"), 0) + 1
        check(states.get("succeeded", 0) == len(ids),
              "every job succeeded (states: %r)" % states)
        failures = [j for j in final.values() if j.get("state") == "failed"]
        if failures:
            log("first failure: %s" % json.dumps(failures[0])[:500])
        ok_requests = all(
            isinstance(final.get(book.ids[i]), dict)
            and (final[book.ids[i]].get("request") or {}).get("seed")
            == 1000 + i for i in book.ids)
        check(ok_requests, "each id carries its own request (seed)")

        listed = list_all(daemon)
        if check(listed is not None, "the job list can be read"):
            counts = {}
            for job in listed:
                counts[job.get("id")] = counts.get(job.get("id"), 0) + 1
            twice = [i for i, c in counts.items() if c > 1]
            extra = [i for i in counts if i not in ids]
            unlisted = [i for i in ids if i not in counts]
            check(not twice and not unlisted,
                  "each acknowledged job is listed exactly once "
                  "(twice %r, unlisted %r)" % (twice[:3], unlisted[:3]))
            check(not extra, "no job was created twice (%d extra: %r)"
                  % (len(extra), extra[:3]))
            check(all(j.get("state") in TERMINAL for j in listed),
                  "the list shows only terminal jobs")

        # One more kill with everything finished: results are served again,
        # unchanged, and nothing runs twice.
        daemon.kill()
        if check(start(daemon), "daemon restarts with every job finished"):
            same = 0
            for job_id, job in final.items():
                try:
                    status, _, again = http_call(daemon.port, "GET",
                                                 "/v1/jobs/" + job_id)
                except (OSError, http.client.HTTPException):
                    continue
                if status == 200 and isinstance(again, dict) \
                        and again.get("state") == job.get("state") \
                        and again.get("result") == job.get("result") \
                        and again.get("finished_at") == job.get("finished_at"):
                    same += 1
            check(same == len(final),
                  "finished jobs are served unchanged after a restart "
                  "(%d of %d)" % (same, len(final)))
        code = daemon.stop(timeout=40)
        check(code == 0, "daemon exits 0 on SIGTERM (got %r)" % code)

        # The reference: the same requests in a daemon never killed.
        reference = new_daemon(os.path.join(workdir, "reference"),
                               workdir, "reference")
        if not check(start(reference), "reference daemon starts"):
            log(reference.log_tail())
            return
        ref_book = Book()
        clients = run_clients(reference, ref_book, "reference-%d" % SEED,
                              SEED + 1, deadline)
        for t in clients:
            t.join()
        ref_final, ref_missing = wait_all(reference, set(
            ref_book.ids.values()), deadline)
        check(len(ref_book.ids) == JOBS and not ref_missing
              and len(ref_final) == JOBS,
              "reference run finished every job (%d)" % len(ref_final))
        mismatched = []
        for index, job_id in book.ids.items():
            ref_id = ref_book.ids.get(index)
            mine = final.get(job_id)
            theirs = ref_final.get(ref_id) if ref_id else None
            if not mine or not theirs or mine.get("state") != "succeeded" \
                    or comparable(mine.get("result")) \
                    != comparable(theirs.get("result")) \
                    or mine.get("request") != theirs.get("request"):
                mismatched.append(index)
        check(not mismatched,
              "every result equals the run without kills (%d differ, "
              "first %r)" % (len(mismatched), mismatched[:3]))
        if mismatched and mismatched[0] in book.ids:
            index = mismatched[0]
            log("killed run: %s" % json.dumps(
                final.get(book.ids[index]), sort_keys=True)[:800])
            log("reference:  %s" % json.dumps(
                ref_final.get(ref_book.ids.get(index)), sort_keys=True)[:800])
        check(reference.stop(timeout=40) == 0,
              "reference daemon exits 0 on SIGTERM")
        if h.failures():
            log("killed daemon log:\n" + daemon.log_tail())
    finally:
        for d in (daemon, reference):
            if d:
                d.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
    h.finish()
