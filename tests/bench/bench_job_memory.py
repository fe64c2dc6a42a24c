#!/usr/bin/env python3
"""bench_job_memory.py: RSS held per queued and per finished job (issue 14).

Usage: bench_job_memory.py ARCHEVALD [N_SMALL] [N_LARGE]
       bench_job_memory.py --budget ARCHEVALD BUDGET_MIB

Starts ARCHEVALD (--no-store, --backend host) twice: with --host-workers
0 (nothing runs: every job stays queued) and with one worker (every job
finishes).  Each time it POSTs N_SMALL small jobs (mlp_dag, topology;
default 2000) and N_LARGE jobs with about 7.5 MB of inline inputs
(default 5), and reports the daemon's RSS growth per job of each kind
(VmRSS from /proc after each set; finished: after every job finished).
Not part of make check: a measurement, printed as a Markdown table row.

With --budget: one daemon with --max-jobs-memory=BUDGET_MIB MiB and no
worker gets 50 POSTs of 7.5 MB jobs, then up to 100,000 small ones; it
prints how many were accepted, how many got 429 (and their Retry-After),
and the RSS after each set.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import http.client

MiB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    data = body if isinstance(body, bytes) or body is None else \
        json.dumps(body).encode()
    c.request(method, path, body=data,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.status, r.read()
    c.close()
    return out


SMALL = {"architecture": {"type": "mlp_dag", "dag": "2_21_112"},
         "metrics": ["topology"]}


def large(i, samples=700, width=784):
    x = [[((i * 7 + k * 13 + s) % 1000) / 1000.0 + 0.123456789
          for k in range(width)] for s in range(samples)]
    return json.dumps({"architecture": {"type": "mlp_dag", "dag": "2_21_112"},
                       "metrics": ["topology"],
                       "data": {"input_shape": [width], "inputs": x,
                                "labels": [s % 10 for s in range(samples)]}
                       }).encode()


def wait_ready(port, proc):
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit("the daemon exited")
        try:
            if call(port, "GET", "/v1/health/live")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("the daemon did not become ready")


def wait_all_finished(port, n):
    while True:
        st, body = call(port, "GET", "/v1/jobs?state=queued&page_size=1")
        q = json.loads(body)["jobs"]
        st, body = call(port, "GET", "/v1/jobs?state=running&page_size=1")
        r = json.loads(body)["jobs"]
        if not q and not r:
            return
        time.sleep(0.2)


def measure(daemon, workers, n_small, bodies):
    port = free_port()
    work = tempfile.mkdtemp(prefix="ae-bench-mem-")
    log = open(os.path.join(work, "log"), "wb")
    usage = subprocess.run([daemon, "--help"], capture_output=True).stdout
    budget = ["--max-jobs-memory=16GiB"] if b"max-jobs-memory" in usage else []
    proc = subprocess.Popen(
        [daemon, "--http-port", str(port), "--backend", "host",
         "--host-workers", str(workers), "--no-store",
         "--max-queue", str(n_small + len(bodies) + 10)] + budget,
        stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        wait_ready(port, proc)
        call(port, "POST", "/v1/jobs", SMALL)  # first-use costs
        if workers:
            wait_all_finished(port, 1)
        time.sleep(0.5)
        r0 = rss(proc.pid)
        for _ in range(n_small):
            st, body = call(port, "POST", "/v1/jobs", SMALL)
            assert st == 202, body[:200]
        if workers:
            wait_all_finished(port, n_small)
        time.sleep(0.5)
        r1 = rss(proc.pid)
        for b in bodies:
            st, body = call(port, "POST", "/v1/jobs", b)
            assert st == 202, body[:200]
        if workers:
            wait_all_finished(port, len(bodies))
        time.sleep(0.5)
        r2 = rss(proc.pid)
        return (r1 - r0) / n_small, (r2 - r1) / len(bodies)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def budget_run(daemon, budget_mib):
    port = free_port()
    work = tempfile.mkdtemp(prefix="ae-bench-mem-")
    log = open(os.path.join(work, "log"), "wb")
    proc = subprocess.Popen(
        [daemon, "--http-port", str(port), "--backend", "host",
         "--host-workers", "0", "--no-store", "--max-queue", "200000",
         "--max-jobs-memory=%dMiB" % budget_mib],
        stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        wait_ready(port, proc)
        r0 = rss(proc.pid)
        print("start: RSS %.1f MiB, budget %d MiB" % (r0 / MiB, budget_mib))
        body = large(0)
        for name, bodies in (("7.5 MB", [body] * 50),
                             ("small", [json.dumps(SMALL).encode()] * 100000)):
            ok = refused = 0
            t0 = time.time()
            for b in bodies:
                st, out = call(port, "POST", "/v1/jobs", b)
                if st == 202:
                    ok += 1
                elif st == 429:
                    refused += 1
                    if refused == 1:
                        print("  first 429: %s" % out[:160].decode())
                    if name == "small" and refused >= 1000:
                        break
                else:
                    raise SystemExit("POST: %d %s" % (st, out[:200]))
            print("%s: %d accepted, %d refused (429) in %.1f s; RSS %.1f MiB"
                  % (name, ok, refused, time.time() - t0,
                     rss(proc.pid) / MiB))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main():
    if sys.argv[1] == "--budget":
        budget_run(os.path.abspath(sys.argv[2]), int(sys.argv[3]))
        return
    daemon = os.path.abspath(sys.argv[1])
    n_small = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    n_large = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    bodies = [large(i) for i in range(n_large)]
    print("large body: %.2f MiB" % (len(bodies[0]) / MiB))
    q_small, q_large = measure(daemon, 0, n_small, bodies)
    f_small, f_large = measure(daemon, 1, n_small, bodies)
    print("| queued small | queued 7.5 MB | finished small | finished 7.5 MB |")
    print("| %.1f KiB | %.1f MiB | %.1f KiB | %.1f MiB |"
          % (q_small / 1024, q_large / MiB, f_small / 1024, f_large / MiB))


if __name__ == "__main__":
    main()
