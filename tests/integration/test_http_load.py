#!/usr/bin/env python3
"""test_http_load.py: archevald under concurrent load and a drain.

64 client threads submit and poll 1,000 small jobs: every accepted job
reaches a terminal state exactly once, none is lost or duplicated (ids,
the listing, and the /metrics counters agree).  Then SIGTERM during load:
new jobs get 503, in-flight ones finish or are stopped, the exit status is
0, and after a restart on the same --state-dir every accepted job is there
and terminal.  Environment: AE_LOAD_JOBS (1000), AE_LOAD_CLIENTS (64).
Prints "N passed, M failed" last.
"""

import http.client
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

JOBS = int(os.environ.get("AE_LOAD_JOBS", "1000"))
CLIENTS = int(os.environ.get("AE_LOAD_CLIENTS", "64"))


def job(seed):
    return {"architecture": {"type": "mlp_dag", "dag": "2_21_112",
                             "width": 16},
            "metrics": ["topology"], "seed": seed}


def metric(text, pattern):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if re.match(pattern, line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def list_all(d):
    ids, token = [], None
    while True:
        path = "/v1/jobs?page_size=1000"
        if token:
            path += "&page_token=" + token
        r = d.call("GET", path)
        assert r.status == 200, r.body
        ids += [(j["id"], j["state"]) for j in r.json["jobs"]]
        token = r.json["next_page_token"]
        if not token:
            return ids


class Load(unittest.TestCase):
    def test_concurrent_clients(self):
        with h.Daemon("--max-queue", "100000",
                      "--max-connections-per-ip", "512",
                      "--log-level", "warn") as d:
            accepted, finals, errors = [], {}, []
            lock = threading.Lock()
            per_client = [JOBS // CLIENTS + (1 if i < JOBS % CLIENTS else 0)
                          for i in range(CLIENTS)]

            def client(index):
                mine = []
                try:
                    for k in range(per_client[index]):
                        r = d.submit(job(index * 10000 + k))
                        if r.status != 202:
                            raise AssertionError("POST %d %r" %
                                                 (r.status, r.body[:200]))
                        mine.append(r.json["id"])
                    for job_id in mine:
                        final = d.wait(job_id, timeout=300)
                        with lock:
                            if job_id in finals:
                                errors.append("twice: " + job_id)
                            finals[job_id] = final["state"]
                except (AssertionError, OSError,
                        http.client.HTTPException) as e:
                    with lock:
                        errors.append(repr(e))
                with lock:
                    accepted.extend(mine)

            threads = [threading.Thread(target=client, args=(i,))
                       for i in range(CLIENTS)]
            start = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print("%d jobs through %d clients in %.1f s" %
                  (len(accepted), CLIENTS, time.monotonic() - start))
            self.assertEqual(errors, [])
            self.assertEqual(len(accepted), JOBS)
            self.assertEqual(len(set(accepted)), JOBS)
            self.assertEqual(set(finals), set(accepted))
            self.assertTrue(all(s == "succeeded" for s in finals.values()))
            listed = list_all(d)
            self.assertEqual(len(listed), JOBS)
            self.assertEqual(set(i for i, _ in listed), set(accepted))
            text = d.call("GET", "/metrics").body.decode()
            self.assertEqual(metric(text, r"archeval_jobs_submitted_total "),
                             JOBS)
            self.assertEqual(metric(text, r"archeval_jobs_finished_total\{"),
                             JOBS)
            self.assertEqual(metric(
                text, r'archeval_jobs_finished_total\{state="succeeded"'),
                JOBS)
            self.assertEqual(metric(text, r"archeval_jobs_queued "), 0)
            self.assertEqual(metric(
                text, r'archeval_http_requests_total\{route="/v1/jobs",'
                      r'code="202"\}'), JOBS)
            self.assertEqual(metric(text, r"archeval_job_queue_seconds_count"),
                             JOBS)
            self.assertEqual(d.stop(), 0, d.log_tail())

    def test_sigterm_during_load(self):
        d = h.Daemon("--max-queue", "100000", "--drain-timeout-secs", "3",
                     "--max-connections-per-ip", "512", "--log-level", "warn")
        try:
            d.start()
            accepted, refused, errors = [], [], []
            lock = threading.Lock()
            stop = threading.Event()

            def client(index):
                k = 0
                while not stop.is_set():
                    body = job(index * 100000 + k)
                    if k % 5 == 0:  # some heavier jobs
                        body["metrics"] = ["topology", "convergence"]
                        body["data"] = {"batch_size": 16}
                    k += 1
                    try:
                        r = d.submit(body, timeout=30)
                    except (OSError, http.client.HTTPException):
                        return  # the daemon has closed its socket
                    with lock:
                        if r.status == 202:
                            accepted.append(r.json["id"])
                        elif r.status == 503:
                            refused.append(r.json["code"])
                            return
                        else:
                            errors.append(r.status)
                            return

            threads = [threading.Thread(target=client, args=(i,))
                       for i in range(16)]
            for t in threads:
                t.start()
            time.sleep(1.5)
            d.signal()
            start = time.monotonic()
            status = d.proc.wait(timeout=60)
            elapsed = time.monotonic() - start
            stop.set()
            for t in threads:
                t.join()
            print("%d accepted before the drain, %d refused, exit %d after "
                  "%.1f s" % (len(accepted), len(refused), status, elapsed))
            self.assertEqual(status, 0, d.log_tail())
            self.assertEqual(errors, [])
            self.assertGreater(len(accepted), 0)
            self.assertTrue(all(c == "draining" for c in refused), refused)
            self.assertLess(elapsed, 3 + 5 + 5)
            # Restart on the same store: the drain kept every job it
            # stopped (no client cancelled any), so every accepted job
            # runs to success after the restart.
            d.start()
            deadline = time.monotonic() + 120
            while True:
                listed = dict(list_all(d))
                if all(s in ("succeeded", "failed", "cancelled")
                       for s in listed.values()) or \
                        time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual(set(listed), set(accepted))
            self.assertEqual(set(listed.values()), {"succeeded"},
                             set(listed.values()))
            self.assertEqual(d.stop(), 0, d.log_tail())
        finally:
            d.cleanup()


if __name__ == "__main__":
    h.main()
