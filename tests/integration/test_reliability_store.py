#!/usr/bin/env python3
"""test_reliability_store.py: a store that tells the truth (issue 14 items
3 and 8), with tests/fault/libaefault.so preloaded into the daemon.

For each of ENOSPC, EIO and EROFS, with clients submitting and deleting
the whole time: while the store's writes fail, no POST gets a 202 and no
DELETE a 204 that the store did not make durable (POST answers 507 on a
full disk, else 503; DELETE likewise, the job kept); /v1/health/ready turns 503
store_unavailable within a second and back to 200 within a second or two
of the writes succeeding again, by itself.  After a restart without
faults, every job acknowledged (202) is there and every job whose DELETE
got 204 is gone.
Prints "N passed, M failed" last.
"""

import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SHIM = os.path.join(h.BUILDDIR, "tests", "fault", "libaefault.so")


def wait_for(predicate, timeout):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    return None


class Load:
    """Clients submitting small jobs and deleting finished ones."""

    def __init__(self, d):
        self.d = d
        self.acked = set()      # 202
        self.deleted = set()    # 204
        self.refused = {}       # status -> count
        self.bad = []           # answers no fault may give
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run) for _ in range(3)]

    def note(self, status):
        with self.lock:
            self.refused[status] = self.refused.get(status, 0) + 1

    def run(self):
        mine = []
        while not self.stop.is_set():
            try:
                r = self.d.submit(timeout=20)
            except OSError as e:
                self.bad.append("POST: %r" % e)
                continue
            if r.status == 202:
                with self.lock:
                    self.acked.add(r.json["id"])
                mine.append(r.json["id"])
            elif r.status in (503, 507):
                self.note(r.status)
                if r.json["code"] not in ("store_unavailable",
                                          "insufficient_storage"):
                    self.bad.append("POST %d %s" % (r.status, r.json))
            else:
                self.bad.append("POST %d %r" % (r.status, r.body[:200]))
            if len(mine) > 2:
                victim = mine[0]
                r = self.d.call("DELETE", "/v1/jobs/" + victim, timeout=20)
                if r.status == 204:
                    mine.pop(0)
                    with self.lock:
                        self.deleted.add(victim)
                elif r.status in (503, 507):
                    self.note("DELETE %d" % r.status)
                    if self.d.call("GET", "/v1/jobs/" + victim).status != 200:
                        self.bad.append("DELETE 503 but the job is gone")
                elif r.status != 409:  # 409: not finished yet
                    self.bad.append("DELETE %d" % r.status)
            time.sleep(0.01)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        return False


class StoreFaults(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(SHIM):
            self.skipTest("tests/fault/libaefault.so not built")

    def run_fault(self, errno_name):
        d = h.Daemon(host_workers=1)
        control = os.path.join(d.workdir, "fault")
        state = os.path.join(d.workdir, "state")
        env = {"LD_PRELOAD": SHIM, "AE_FAULT_FILE": control,
               "AE_FAULT_DIR": os.path.realpath(d.workdir) + "/state",
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
               ":verify_asan_link_order=0"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            d.start()
            before = [d.submit().json["id"] for _ in range(5)]
            for i in before:
                d.wait(i)
            with Load(d) as load:
                time.sleep(1.0)
                with open(control, "w") as f:
                    f.write(errno_name)
                t_down = wait_for(lambda: d.call(
                    "GET", "/v1/health/ready").status == 503, 5)
                self.assertIsNotNone(t_down, "ready stayed 200")
                self.assertLess(t_down, 1.0)
                r = d.call("GET", "/v1/health/ready")
                if r.status == 503:
                    self.assertEqual(r.json["code"], "store_unavailable")
                time.sleep(1.5)  # the clients keep trying under the fault
                r = d.submit()
                self.assertIn(r.status, (503, 507), r.body)
                if errno_name == "ENOSPC":
                    self.assertEqual(r.status, 507)
                with open(control, "w") as f:
                    f.write("")
                t_up = wait_for(lambda: d.call(
                    "GET", "/v1/health/ready").status == 200, 5)
                self.assertIsNotNone(t_up, "ready did not come back")
                self.assertLess(t_up, 2.0)
                time.sleep(1.0)
            self.assertEqual(load.bad, [])
            self.assertTrue(load.refused, "the fault refused nothing")
            self.assertEqual(d.submit().status, 202)
            self.assertEqual(d.stop(), 0, d.log_tail())
            for k in env:
                os.environ.pop(k, None)
            d.start()  # no shim: what the store holds
            for job_id in set(before) | load.acked - load.deleted:
                r = d.call("GET", "/v1/jobs/" + job_id)
                self.assertEqual(r.status, 200, "acknowledged %s lost" %
                                 job_id)
            for job_id in load.deleted:
                self.assertEqual(d.call("GET", "/v1/jobs/" + job_id).status,
                                 404, "deleted %s came back" % job_id)
            self.assertEqual(d.stop(), 0)
            print("%s: %d acked, %d deleted, refused %s, ready down in "
                  "%.2f s, up in %.2f s" % (errno_name, len(load.acked),
                                            len(load.deleted), load.refused,
                                            t_down, t_up))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            d.cleanup()

    def test_enospc(self):
        self.run_fault("ENOSPC")

    def test_eio(self):
        self.run_fault("EIO")

    def test_erofs(self):
        self.run_fault("EROFS")


if __name__ == "__main__":
    h.main()
