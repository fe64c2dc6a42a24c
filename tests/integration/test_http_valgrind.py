#!/usr/bin/env python3
"""test_http_valgrind.py: archevald under valgrind (--leak-check=full,
definite leaks and memory errors are failures) through a representative
session: jobs, a batch, long polls, errors, idempotency, cancel, delete,
metrics, and a drain with jobs still queued; the exit status must be 0.
Exit 77 (skipped) without valgrind.  Prints "N passed, M failed".
"""

import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Valgrind(unittest.TestCase):
    def test_session_without_leaks(self):
        # --backend host: no CUDA device probe (the CUDA runtime's dlopen
        # trips valgrind false positives in ld.so, and there is nothing to
        # check on the GPU path under valgrind).
        d = h.Daemon("--backend", "host", "--max-batch", "8", host_workers=1,
                     valgrind=True)
        try:
            # Under valgrind the warm-up is slow: /v1/health/ready answers
            # 503 not_ready meanwhile, and jobs are accepted and wait.
            d.start(wait_ready=False)
            early, not_ready = None, []
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                self.assertIsNone(d.proc.poll(), d.log_tail())
                try:
                    r = d.call("GET", "/v1/health/ready", timeout=10)
                except OSError:
                    time.sleep(0.2)
                    continue
                if r.status == 200:
                    break
                self.assertEqual(r.status, 503)
                self.assertTrue(r.header("Retry-After"))
                not_ready.append(r.json["code"])
                if early is None:
                    early = d.submit({"seed": 9, **h.SMALL_JOB})
                    self.assertEqual(early.status, 202)
                time.sleep(0.1)
            self.assertEqual(r.status, 200)
            print("%d not-ready answers before ready" % len(not_ready))
            self.assertTrue(all(c == "not_ready" for c in not_ready))
            if early is not None:
                self.assertEqual(d.wait(early.json["id"])["state"],
                                 "succeeded")
            r = d.submit()
            self.assertEqual(r.status, 202)
            self.assertEqual(d.wait(r.json["id"])["state"], "succeeded")
            first = r.json["id"]
            r = d.call("POST", "/v1/jobs:batch",
                       {"jobs": [h.SMALL_JOB, h.SMALL_JOB]},
                       headers={"Idempotency-Key": "vg-batch"})
            self.assertEqual(r.status, 202)
            r = d.call("POST", "/v1/jobs:batch",
                       {"jobs": [h.SMALL_JOB, h.SMALL_JOB]},
                       headers={"Idempotency-Key": "vg-batch"})
            self.assertEqual(r.status, 202)
            r = d.submit(headers={"Idempotency-Key": "vg"})
            self.assertEqual(d.submit(headers={"Idempotency-Key": "vg"})
                             .json["id"], r.json["id"])
            self.assertEqual(d.submit({"seed": 1, **h.SMALL_JOB},
                                      headers={"Idempotency-Key": "vg"})
                             .status, 422)
            self.assertEqual(d.call("GET", "/v1/jobs/%s?wait_ms=3000"
                                    % r.json["id"]).status, 200)
            self.assertEqual(d.submit({"bogus": 1}).status, 422)
            self.assertEqual(d.call("POST", "/v1/jobs", raw=b"{",
                                    headers={"Content-Type":
                                             "application/json"}).status, 400)
            self.assertEqual(d.call("POST", "/v1/jobs:batch",
                                    {"jobs": [h.SMALL_JOB, {"x": 1}]}).status,
                             422)
            self.assertEqual(d.call("GET", "/nowhere").status, 404)
            self.assertEqual(d.call("DELETE", "/metrics").status, 405)
            self.assertEqual(d.call("GET", "/metrics").status, 200)
            self.assertEqual(d.call("GET", "/v1").status, 200)
            self.assertEqual(d.call("GET", "/v1/datasets").status, 200)
            self.assertEqual(d.call("GET", "/v1/jobs?page_size=2").status, 200)
            self.assertEqual(d.call("POST", "/v1/jobs/%s:cancel" % first)
                             .status, 409)
            self.assertEqual(d.call("DELETE", "/v1/jobs/" + first).status,
                             204)
            # Leave work queued (and a long poll hanging) for the drain,
            # and cancel a job before it ends: a small job can finish
            # before its cancel arrives (409), so more are submitted, each
            # cancelled at once, until one cancel lands (200).
            ids = [d.submit({"seed": s, **h.SMALL_JOB}).json["id"]
                   for s in range(6)]
            statuses = []
            for s in range(6, 30):
                cancel = d.call("POST", "/v1/jobs/%s:cancel" % ids[-1])
                statuses.append(cancel.status)
                self.assertIn(cancel.status, (200, 409))
                if cancel.status == 200:
                    break
                ids.append(d.submit({"seed": s, **h.SMALL_JOB}).json["id"])
            self.assertEqual(statuses[-1], 200, statuses)
            d.signal()
            start = time.monotonic()
            status = d.proc.wait(timeout=120)
            print("valgrind exit %d after %.1f s" %
                  (status, time.monotonic() - start))
            self.assertEqual(status, 0, "\n".join(
                l for l in d.log_text().splitlines()
                if l.startswith("==") or " info " not in l)[-8000:])
        finally:
            d.cleanup()


if __name__ == "__main__":
    if h.SANITIZERS:
        print("a sanitizer build: valgrind cannot run it; skipped")
        sys.exit(77)
    if not shutil.which("valgrind"):
        print("valgrind not installed: skipped")
        print("0 passed, 0 failed")
        sys.exit(77)
    h.main()
