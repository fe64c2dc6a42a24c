#!/usr/bin/env python3
"""soak.py: archevald under a steady load for AE_SOAK_SECS (600) seconds.

Starts a real archevald (2 host workers, job store on, --job-ttl-secs 30 so
finished jobs expire as fast as they arrive), runs 8 client threads that
submit small jobs, long-poll them and read the listing at a steady rate,
and samples the daemon's resident memory (VmRSS) and open file descriptors
every 15 s.  At the end it prints the samples and checks that both are
flat: over the second half, RSS moves by less than 10 % (or 16 MiB) and the
fd count by at most 4.  Not part of `make check` (it takes 10 minutes);
results go by hand into tests/bench/RESULTS.md.  Prints "N passed, M failed".
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import harness as h  # noqa: E402

SECS = float(os.environ.get("AE_SOAK_SECS", "600"))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    d = h.Daemon("--job-ttl-secs", "30", "--log-level", "warn", store=True)
    d.start()
    stop = threading.Event()
    counts = {"submitted": 0, "finished": 0, "errors": 0}
    lock = threading.Lock()

    def client(index):
        k = 0
        while not stop.is_set():
            job = {"architecture": {"type": "mlp_dag", "dag": "2_21_112",
                                    "width": 32},
                   "data": {"batch_size": 8, "input_shape": [64]},
                   "metrics": ["topology", "convergence"],
                   "seed": index * 1000000 + k}
            k += 1
            try:
                r = d.submit(job, timeout=30)
                if r.status != 202:
                    raise RuntimeError(r.status)
                done = d.wait(r.json["id"], timeout=60)
                d.call("GET", "/v1/jobs?page_size=20")
                with lock:
                    counts["submitted"] += 1
                    counts["finished"] += done["state"] == "succeeded"
            except Exception:  # noqa: BLE001 - counted and reported
                with lock:
                    counts["errors"] += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    samples = []
    start = time.monotonic()
    while time.monotonic() - start < SECS:
        t = time.monotonic() - start
        samples.append((t, rss_kib(d.proc.pid),
                        len(os.listdir("/proc/%d/fd" % d.proc.pid)),
                        counts["submitted"]))
        time.sleep(15)
    stop.set()
    for t in threads:
        t.join()
    status = d.stop()
    d.cleanup()

    print("%8s %10s %5s %10s" % ("t (s)", "RSS (KiB)", "fds", "jobs"))
    for t, rss, fds, jobs in samples:
        print("%8.0f %10d %5d %10d" % (t, rss, fds, jobs))
    print("jobs: %(submitted)d submitted, %(finished)d succeeded, "
          "%(errors)d errors" % counts)
    half = [s for s in samples if s[0] >= SECS / 2]
    rss = [s[1] for s in half]
    fds = [s[2] for s in half]
    checks = [
        ("exit status 0 after SIGTERM", status == 0),
        ("no client errors", counts["errors"] == 0),
        ("every job succeeded", counts["finished"] == counts["submitted"]),
        ("RSS flat over the second half (%d..%d KiB)" % (min(rss), max(rss)),
         max(rss) - min(rss) < max(0.10 * min(rss), 16 * 1024)),
        ("fd count flat over the second half (%d..%d)" % (min(fds), max(fds)),
         max(fds) - min(fds) <= 4),
    ]
    failed = 0
    for name, ok in checks:
        print("%s: %s" % ("ok" if ok else "FAIL", name))
        failed += not ok
    print("%d passed, %d failed" % (len(checks) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
