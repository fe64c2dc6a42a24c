#!/usr/bin/env python3
"""test_reliability_drain.py: states that do not lie (issue 14 item 4).

SIGTERM with long polls open, on a daemon with a store: the queued jobs
and the running one that the drain stops stay in the store for the next
start, so every long poll is answered with state "queued" and
"draining": true, never "cancelled"; after the restart the same jobs run
(the small ones succeed, the long one starts running).  Without a store
the queued jobs really are cancelled and say so.
Prints "N passed, M failed" last.
"""

import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def wait_state(d, job_id, states, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = d.call("GET", "/v1/jobs/" + job_id)
        if r.status == 200 and r.json["state"] in states:
            return r.json
        time.sleep(0.1)
    raise AssertionError("job %s never in %s" % (job_id, states))


class DrainHandsOver(unittest.TestCase):
    def test_long_polls_see_queued_and_the_jobs_run_after_restart(self):
        d = h.Daemon("--drain-timeout-secs", "0", "--log-level", "debug", host_workers=1)
        try:
            d.start()
            long_id = d.submit(h.LONG_JOB).json["id"]
            wait_state(d, long_id, ("running",))
            small = [d.submit().json["id"] for _ in range(3)]
            ids = [long_id] + small
            answers = {}

            def poll(job_id):
                r = d.call("GET", "/v1/jobs/%s?wait_ms=30000" % job_id,
                           timeout=60)
                answers[job_id] = (r.status, r.json)

            threads = [threading.Thread(target=poll, args=(i,)) for i in ids]
            for t in threads:
                t.start()
            time.sleep(0.5)  # the polls are suspended
            d.signal(signal.SIGTERM)
            for t in threads:
                t.join(60)
            self.assertEqual(d.proc.wait(timeout=60), 0, d.log_tail())
            for job_id in ids:
                self.assertIn(job_id, answers, d.log_tail(30))
                status, job = answers[job_id]
                self.assertEqual(status, 200)
                self.assertEqual(job["state"], "queued",
                                 "%s told %s" % (job_id, job["state"]))
                self.assertIs(job.get("draining"), True)
                self.assertIsNone(job["queue_position"])

            d.start()  # the same state dir: the long job runs first again
            seen = wait_state(d, long_id, ("running", "succeeded"))
            self.assertNotIn("draining", seen)
            self.assertEqual(
                d.call("POST", "/v1/jobs/%s:cancel" % long_id).status, 200)
            for job_id in small:
                self.assertEqual(d.wait(job_id)["state"], "succeeded")
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()

    def test_without_a_store_queued_jobs_are_cancelled(self):
        d = h.Daemon("--drain-timeout-secs", "0", host_workers=1,
                     store=False)
        try:
            d.start()
            long_id = d.submit(h.LONG_JOB).json["id"]
            wait_state(d, long_id, ("running",))
            queued = d.submit().json["id"]
            answer = {}

            def poll():
                r = d.call("GET", "/v1/jobs/%s?wait_ms=30000" % queued,
                           timeout=60)
                answer["job"] = r.json

            t = threading.Thread(target=poll)
            t.start()
            time.sleep(0.5)
            d.signal(signal.SIGTERM)
            t.join(60)
            self.assertEqual(d.proc.wait(timeout=60), 0)
            self.assertEqual(answer["job"]["state"], "cancelled")
            self.assertNotIn("draining", answer["job"])
        finally:
            d.cleanup()


if __name__ == "__main__":
    h.main()
