"""http_harness.py: what the daemon's HTTP tests share (not a test itself).

Daemon starts a real $AE_BUILDDIR/server/archevald on a free loopback port
(with --host-workers 2 and a temporary --state-dir unless told otherwise),
waits for GET /v1/health/ready, and stop() sends SIGTERM and returns the
exit status.  With AE_VALGRIND=1 (or valgrind=True) the daemon runs under
valgrind --leak-check=full and its exit status is valgrind's.  call() is a
small http.client wrapper that returns (status, headers, body, parsed json).
main() runs a module's unittest cases and prints "N passed, M failed" last;
exit 77 (skipped) when the daemon was not built.  Python 3 stdlib only.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

BUILDDIR = os.environ.get("AE_BUILDDIR", os.getcwd())
SRCDIR = os.environ.get(
    "AE_SRCDIR", os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
DAEMON = os.path.join(BUILDDIR, "server", "archevald")
READY_TIMEOUT_S = float(os.environ.get("AE_READY_TIMEOUT_S", "120"))
VALGRIND_ERROR = 99

# A small job: topology only, milliseconds.
SMALL_JOB = {"architecture": {"type": "mlp_dag", "dag": "2_21_112"},
             "metrics": ["topology"]}
# A long job: the full all-conv nb201 network's kernel groups at batch 64
# with 16 weight draws of the NTK (~40 s on a 2-core host, longer under
# ASan).  The engine checks for a cancel between draws, so a cancelled
# running job stops within one draw (~2.5 s on the host).
LONG_JOB = {"architecture": {
    "type": "nb201",
    "cell": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"},
    "data": {"batch_size": 64},
    "settings": {"ntk": {"repeats": 16}},
    "metrics": ["convergence", "generalization"]}

TERMINAL = ("succeeded", "failed", "cancelled")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.json = None
        ctype = headers.get("Content-Type", "")
        if body and "json" in ctype:
            self.json = json.loads(body)

    def header(self, name):
        return self.headers.get(name)


def call(port, method, path, body=None, headers=None, timeout=60.0,
         raw=None):
    """One request on a fresh connection.  body: a JSON value (sent as
    application/json) or raw bytes via raw=."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        return Response(resp.status, resp.headers, payload)
    finally:
        conn.close()


class Daemon:
    """One archevald on a free port; use as a context manager."""

    def __init__(self, *extra, host_workers=2, store=True, valgrind=None):
        self.extra = list(extra)
        self.host_workers = host_workers
        self.store = store
        if valgrind is None:
            valgrind = os.environ.get("AE_VALGRIND") == "1"
        self.valgrind = valgrind
        self.workdir = tempfile.mkdtemp(prefix="ae-http-")
        self.log_path = os.path.join(self.workdir, "archevald.log")
        self.proc = None
        self.port = None

    def command(self):
        cmd = [DAEMON, "--http-address", "127.0.0.1",
               "--http-port", str(self.port), "--backend", "host",
               "--host-workers", str(self.host_workers)]
        if self.store:
            cmd += ["--state-dir", os.path.join(self.workdir, "state"),
                    "--store-sync", "normal"]
        else:
            cmd += ["--no-store"]
        cmd += self.extra
        if self.valgrind:
            # The suppressions cover one glibc loader false positive when
            # the CUDA runtime dlopen()s the driver (gpu/cuda/valgrind.supp).
            supp = os.path.join(SRCDIR, "gpu", "cuda", "valgrind.supp")
            cmd = ["valgrind", "-q", "--leak-check=full",
                   "--errors-for-leak-kinds=definite",
                   "--suppressions=" + supp,
                   "--error-exitcode=%d" % VALGRIND_ERROR] + cmd
        return cmd

    def start(self, wait_ready=True):
        for _ in range(3):
            self.port = free_port()
            logfile = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, stdin=subprocess.DEVNULL,
                stdout=logfile, stderr=subprocess.STDOUT)
            logfile.close()
            if not wait_ready or self.wait_ready():
                return self
            self.kill()
        raise RuntimeError("archevald did not start:\n" + self.log_tail())

    def wait_ready(self, timeout=READY_TIMEOUT_S * 3):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if call(self.port, "GET", "/v1/health/ready",
                        timeout=5).status == 200:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        return False

    def call(self, method, path, body=None, **kw):
        return call(self.port, method, path, body, **kw)

    def submit(self, job=None, **kw):
        return self.call("POST", "/v1/jobs", job or SMALL_JOB, **kw)

    def wait(self, job_id, timeout=120):
        """Polls (with wait_ms) until the job is terminal; the job."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.call("GET", "/v1/jobs/%s?wait_ms=5000" % job_id)
            if r.status != 200:
                raise AssertionError("GET %s: %d" % (job_id, r.status))
            if r.json["state"] in TERMINAL:
                return r.json
        raise AssertionError("job %s did not finish" % job_id)

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self, timeout=90):
        """SIGTERM and the exit status (None when it had to be killed)."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False


def main():
    """Runs the calling module's tests; prints "N passed, M failed"."""
    if not os.access(DAEMON, os.X_OK):
        print("archevald not built at %s: skipped" % DAEMON)
        print("0 passed, 0 failed")
        sys.exit(77)
    suite = unittest.defaultTestLoader.loadTestsFromModule(
        sys.modules["__main__"])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(
        suite)
    bad = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - bad, bad), flush=True)
    sys.exit(1 if bad else 0)
