#!/usr/bin/env python3
"""test_reliability_loop.py: the loop only routes (issue 14 item 5).

A daemon holds 60 queued jobs with about 200 KB of inline inputs each
(one long job keeps the single worker busy, so none finishes).  20 client
processes list them all in a loop for 5 s, while another POSTs jobs with
7.7 MB of inline inputs (their JSON is parsed, validated and rendered on
the thread pool, not on the loop), and a probe process asks
GET /v1/health/live every 20 ms on its own keep-alive connection.

What the daemon controls is asserted: its loop-stall meter (loop_watch.c:
the loop thread's CPU time per turn of the loop) must show no turn of
AE_LOOP_STALL_MS (50 ms, the issue's bar) or more over the whole run, and
no "loop stalled" warning.  The probe's latency is printed beside it; it
also counts the time the loop thread waits for a CPU among 20 clients that
saturate the 2 cores of the CI host (the OS scheduler's share, which the
daemon can only lower by its threads' priorities), so it is held only to
AE_LIVE_P99_MS (default 500 ms, half Kubernetes' liveness timeout; on a
quiet 2-core machine it measured 7-15 ms, tests/bench/RESULTS.md).  A GET of
one job renders its request once: later GETs are served from the cached
text.  Prints the measurements and "N passed, M failed" last.
"""

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

P99_MS = float(os.environ.get("AE_LIVE_P99_MS", "500"))
# Extra daemon flags, to measure the workers' priority (--worker-nice,
# --worker-sched; tests/bench/RESULTS.md).
EXTRA = os.environ.get("AE_LOOP_DAEMON_ARGS", "").split()
STALL_MS = 50  # AE_LOOP_STALL_MS in server/main.c
# Under ASan/UBSan every instruction costs several: the bar on the loop's
# turns is scaled, and the daemon's own 50 ms warning may fire.
TURN_BAR_MS = STALL_MS * (4 if h.SANITIZERS else 1)
N_JOBS = 60
N_CLIENTS = 20
SECONDS = 5

# The probe and the listers are processes of their own: threads of this
# one would wait for each other's GIL, and that wait would be measured.
PROBE = r'''
import json, socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.settimeout(30)
req = b"GET /v1/health/live HTTP/1.1\r\nHost: probe\r\n\r\n"
out, end = [], time.monotonic() + secs
while time.monotonic() < end:
    t0 = time.monotonic()
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("probe: connection closed")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 200"):
        raise SystemExit("probe: " + buf[:80].decode("latin-1"))
    out.append((time.monotonic() - t0) * 1e3)
    time.sleep(0.02)
print(json.dumps(out))
'''

LISTER = r'''
import http.client, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
n, size, end = 0, 0, time.monotonic() + secs
while time.monotonic() < end:
    c.request("GET", "/v1/jobs?page_size=1000")
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit("lister: status %d" % r.status)
    n, size = n + 1, len(body)
print(n, size)
'''

LOOP_SUMMARY = re.compile(
    r"loop: (\d+) turns, ([\d.]+) s of CPU in all; per turn p50 <= "
    r"([\d.]+) ms, p99 <= ([\d.]+) ms, max ([\d.]+) ms; (\d+) turns over")


def inline_job(i, samples=16):
    rows = [[((i * 7 + k * 13 + s) % 1000) / 1000.0 + 0.123456789
             for k in range(784)] for s in range(samples)]
    return {"architecture": {"type": "mlp_dag", "dag": "2_21_112"},
            "metrics": ["topology"],
            "data": {"input_shape": [784], "inputs": rows,
                     "labels": [s % 10 for s in range(samples)]}}


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


class LiveUnderListing(unittest.TestCase):
    def test_loop_never_stalls_while_20_clients_list(self):
        big = json.dumps(inline_job(1000, samples=700)).encode()
        with h.Daemon("--no-store", "--max-body-bytes", "16MiB", *EXTRA,
                      host_workers=1) as d:
            long_id = d.submit(h.LONG_JOB).json["id"]
            ids = []
            for i in range(N_JOBS):
                r = d.submit(inline_job(i))
                self.assertEqual(r.status, 202, r.body[:300])
                ids.append(r.json["id"])
            # One GET renders the request; the next ones reuse its text.
            t0 = time.monotonic()
            first = d.call("GET", "/v1/jobs/" + ids[0])
            t_first = time.monotonic() - t0
            t0 = time.monotonic()
            for _ in range(10):
                again = d.call("GET", "/v1/jobs/" + ids[0])
            t_again = (time.monotonic() - t0) / 10
            self.assertEqual(first.json["request"], again.json["request"])

            args = [str(d.port), str(SECONDS)]
            probe = subprocess.Popen([sys.executable, "-c", PROBE] + args,
                                     stdout=subprocess.PIPE, text=True)
            listers = [subprocess.Popen([sys.executable, "-c", LISTER] + args,
                                        stdout=subprocess.PIPE, text=True)
                       for _ in range(N_CLIENTS)]
            posted = []

            def poster():
                conn = http.client.HTTPConnection("127.0.0.1", d.port,
                                                  timeout=120)
                for _ in range(2):
                    t0 = time.monotonic()
                    conn.request("POST", "/v1/jobs", big,
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    posted.append((r.status, time.monotonic() - t0))
                conn.close()

            post_thread = threading.Thread(target=poster)
            post_thread.start()
            probe_out = probe.communicate(timeout=120)[0]
            self.assertEqual(probe.returncode, 0)
            lists = [p.communicate(timeout=120)[0].split()
                     for p in listers]
            post_thread.join(120)
            samples = json.loads(probe_out)
            d.call("POST", "/v1/jobs/%s:cancel" % long_id)
            self.assertEqual(d.stop(), 0)

            log = d.log_text()
            m = LOOP_SUMMARY.search(log)
            self.assertTrue(m, "no loop summary in the log")
            turns, cpu_s = int(m.group(1)), float(m.group(2))
            loop_p99, loop_max = float(m.group(4)), float(m.group(5))
            over = int(m.group(6))
            n_listed = sum(int(x[0]) for x in lists)
            page = max(int(x[1]) for x in lists)
            print("listing %d jobs (%.1f MB a page): %d listings by %d "
                  "clients in %d s; 7.7 MB POSTs: %s" %
                  (N_JOBS + 1, page / 1e6, n_listed, N_CLIENTS, SECONDS,
                   ", ".join("%d in %.0f ms" % (s, t * 1e3)
                             for s, t in posted)))
            print("loop (the daemon's own work): %d turns, %.2f s of CPU, "
                  "per turn p99 <= %.0f ms, max %.1f ms, %d over %d ms" %
                  (turns, cpu_s, loop_p99, loop_max, over, STALL_MS))
            print("daemon flags: %s" % (" ".join(EXTRA) or "(defaults)"))
            print("live probe (with the OS scheduler's share): p50 %.1f ms, "
                  "p99 %.1f ms, max %.1f ms (%d probes); GET one job: "
                  "first %.1f ms, then %.1f ms" %
                  (quantile(samples, 0.5), quantile(samples, 0.99),
                   max(samples), len(samples), t_first * 1e3,
                   t_again * 1e3))
            sys.stdout.flush()
            self.assertEqual([s for s, _ in posted], [202, 202])
            self.assertGreater(n_listed, N_CLIENTS)
            self.assertLess(loop_max, TURN_BAR_MS)
            if not h.SANITIZERS:
                self.assertEqual(over, 0)
                self.assertNotIn("loop stalled", log)
            self.assertLess(quantile(samples, 0.99), P99_MS)


if __name__ == "__main__":
    h.main()
