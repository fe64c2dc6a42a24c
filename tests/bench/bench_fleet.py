#!/usr/bin/env python3
"""bench_fleet.py: accepted jobs per second and the accept latency of
archevald on SQLite and on PostgreSQL, with 1 and 3 replicas (issue 15).

Run through run-fleet-bench.sh (make bench), inside a throwaway cluster of
tests/pg_cluster.sh started with AE_PG_DURABLE=1 (fsync on, as SQLite's
--store-sync full).  For each setup it starts the daemons (host backend,
one worker each, --log-level warn, a queue that never fills), then runs
one wrk per replica at the same time, CONNECTIONS connections in all for
SECS seconds, each POST /v1/jobs a topology-only mlp_dag job with its own
seed (a Lua counter: no two share a result-cache key).  It reports:

- accepted jobs/s: the rise of archeval_jobs_submitted_total over all
  replicas (the daemons' own count of 202s) divided by the run's length;
- p50 / p99 accept latency: wrk's, per replica (the worst replica's p99);
- CPU ms per accepted job: the daemons' user + system time, and the
  PostgreSQL server's (the postmaster and its children), from /proc,
  which is what a shared 2-core machine can measure fairly;
- the store's mean insert time (archeval_store_call_duration_seconds,
  op="insert"): the commit each 202 waits for;
- the store's mean cache call time (op="cache"): the result cache's lookup
  each submission makes first (every job has its own seed: all miss), on
  every store, with --fleet too.

Setups: sqlite x1 (--store-sync full), postgresql x1 and x3 (with --fleet
when the daemon has it: jobs wait in the store's shared queue).  The
3-replica run is reported as not run when the store refuses a second
daemon (a build without the fleet's leases).  Environment: AE_BUILDDIR,
AE_TEST_PG_URL, AE_TEST_PG_DIR, AE_BENCH_SECS (10), AE_BENCH_CONNECTIONS
(32).  Exit 77 without wrk or a cluster.  Prints one table; its numbers go
by hand into tests/bench/RESULTS.md, section "Fleet".
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import harness as h  # noqa: E402

SECS = int(os.environ.get("AE_BENCH_SECS", "10"))
CONNECTIONS = int(os.environ.get("AE_BENCH_CONNECTIONS", "32"))
PG_URL = os.environ.get("AE_TEST_PG_URL")
PG_DIR = os.environ.get("AE_TEST_PG_DIR")
TICKS = os.sysconf("SC_CLK_TCK")

LUA = """
counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local body = '{"architecture":{"type":"mlp_dag","dag":"2_21_112"},' ..
    '"metrics":["topology"],"seed":' .. (SEED * 1000000 + counter) .. '}'
  return wrk.format(nil, nil, nil, body)
end
"""


def cpu_seconds(pids):
    """User + system seconds of the live processes in pids."""
    total = 0.0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, IndexError, ValueError):
            pass
    return total


def postgres_pids():
    """The postmaster and its children (the backends), or []."""
    if not PG_DIR:
        return []
    try:
        with open(os.path.join(PG_DIR, "data", "postmaster.pid")) as f:
            master = int(f.readline())
    except (OSError, ValueError):
        return []
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == master:
                pids.append(int(entry))
    return pids


def metric(daemon, name):
    """The sum of every series of NAME in the daemon's /metrics."""
    text = h.call(daemon.port, "GET", "/metrics").body.decode()
    total = 0.0
    for line in text.splitlines():
        if re.match(re.escape(name) + r"(\{[^}]*\})? ", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wrk_ms(text, label):
    """A latency of wrk's report ("50%" -> ms), or None."""
    m = re.search(r"^\s+%s\s+([\d.]+)(us|ms|s)\b" % re.escape(label), text,
                  re.M)
    if not m:
        return None
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[
        m.group(2)]


def daemon_has_fleet():
    try:
        out = subprocess.run([h.DAEMON, "--help"], capture_output=True,
                             text=True, timeout=30).stdout
    except OSError:
        return False
    return re.search(r"^\s+--fleet\b", out, re.M) is not None


def start_replicas(kind, n, workdir):
    """n daemons on the store kind; None when the second is refused."""
    replicas = []
    for i in range(n):
        extra = ["--log-level", "warn", "--max-queue", "100000000",
                 "--max-connections", "4096", "--max-connections-per-ip",
                 "4096", "--replica-id", "b%d" % i]
        if kind == "postgresql":
            fleet = ["--fleet"] if daemon_has_fleet() else []
            d = h.Daemon("--store", PG_URL, *fleet, *extra, host_workers=1,
                         store_sync=None, workdir=workdir,
                         name="%s-%d-%d" % (kind, n, i))
        else:
            d = h.Daemon(*extra, host_workers=1, store_sync="full",
                         workdir=workdir, name="%s-%d-%d" % (kind, n, i))
        if not d.try_start(timeout=60.0, attempts=2):
            refused = "in use by another process" in d.log_text()
            d.cleanup()
            for r in replicas:
                r.cleanup()
            if refused:
                return None
            raise RuntimeError("%s replica %d did not start" % (kind, i))
        replicas.append(d)
    return replicas


def run_setup(kind, n, workdir):
    replicas = start_replicas(kind, n, workdir)
    if replicas is None:
        return None
    try:
        daemon_pids = [d.proc.pid for d in replicas]
        pg = postgres_pids() if kind == "postgresql" else []
        submitted0 = sum(metric(d, "archeval_jobs_submitted_total")
                         for d in replicas)
        cpu_d0, cpu_pg0 = cpu_seconds(daemon_pids), cpu_seconds(pg)
        procs = []
        for i, d in enumerate(replicas):
            script = os.path.join(workdir, "post-%d.lua" % i)
            with open(script, "w") as f:
                f.write(LUA.replace("SEED", str(1000 * n + i + 1)))
            conns = max(1, CONNECTIONS // n)
            procs.append(subprocess.Popen(
                ["wrk", "-t1", "-c%d" % conns, "-d%ds" % SECS, "--latency",
                 "-s", script, d.url + "/v1/jobs"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        t0 = time.monotonic()
        reports = [p.communicate()[0] for p in procs]
        elapsed = time.monotonic() - t0
        pg = postgres_pids() if kind == "postgresql" else []
        cpu_d = cpu_seconds(daemon_pids) - cpu_d0
        cpu_pg = cpu_seconds(pg) - cpu_pg0
        submitted = sum(metric(d, "archeval_jobs_submitted_total")
                        for d in replicas) - submitted0
        inserts = sum(metric(d, 'archeval_store_call_duration_seconds_count'
                             '{op="insert"}') for d in replicas) \
            if kind == "postgresql" else None
        insert_s = sum(metric(d, 'archeval_store_call_duration_seconds_sum'
                              '{op="insert"}') for d in replicas) \
            if kind == "postgresql" else None
        caches = sum(metric(d, 'archeval_store_call_duration_seconds_count'
                            '{op="cache"}') for d in replicas)
        cache_s = sum(metric(d, 'archeval_store_call_duration_seconds_sum'
                             '{op="cache"}') for d in replicas)
        non2xx = sum(int(m) for r in reports
                     for m in re.findall(r"Non-2xx or 3xx responses: (\d+)",
                                         r))
        p50 = [wrk_ms(r, "50%") for r in reports]
        p99 = [wrk_ms(r, "99%") for r in reports]
        if None in p50 or None in p99:
            raise RuntimeError("wrk's report:\n" + "\n".join(reports))
        return {
            "jobs_s": submitted / elapsed,
            "p50": max(p50), "p99": max(p99),
            "cpu_daemon_ms": 1000 * cpu_d / max(submitted, 1),
            "cpu_pg_ms": 1000 * cpu_pg / max(submitted, 1) if pg else None,
            "insert_ms": 1000 * insert_s / inserts if inserts else None,
            "cache_ms": 1000 * cache_s / caches if caches else None,
            "non2xx": non2xx, "accepted": int(submitted),
        }
    finally:
        for d in replicas:
            d.stop()
            d.cleanup()


def main():
    if not shutil.which("wrk"):
        h.skip("wrk is not installed")
    h.require_daemon()
    if not PG_URL:
        h.skip("no PostgreSQL cluster: run through run-fleet-bench.sh")
    workdir = tempfile.mkdtemp(prefix="ae-bench-fleet-")
    rows = []
    try:
        for kind, n in (("sqlite", 1), ("postgresql", 1), ("postgresql", 3)):
            h.log("%s x%d: %d connections, %d s" % (kind, n, CONNECTIONS,
                                                    SECS))
            rows.append((kind, n, run_setup(kind, n, workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n| store | replicas | accepted jobs/s | p50 ms | p99 ms | "
          "daemon CPU ms/job | PostgreSQL CPU ms/job | insert ms (mean) | "
          "cache lookup ms (mean) | non-2xx |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, n, r in rows:
        if r is None:
            print("| %s | %d | not run: the store refuses a second daemon "
                  "(no leases in this build) | | | | | | | |" % (kind, n))
            continue
        print("| %s | %d | %.0f | %.2f | %.2f | %.3f | %s | %s | %s | %d |" % (
            kind, n, r["jobs_s"], r["p50"], r["p99"], r["cpu_daemon_ms"],
            "%.3f" % r["cpu_pg_ms"] if r["cpu_pg_ms"] is not None else "-",
            "%.3f" % r["insert_ms"] if r["insert_ms"] is not None else "-",
            "%.3f" % r["cache_ms"] if r["cache_ms"] is not None else "-",
            r["non2xx"]))
    print("\n%d cores, load average %s, wrk %d connections in all for %d s "
          "per setup" % (os.cpu_count(), os.getloadavg()[0], CONNECTIONS,
                         SECS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
