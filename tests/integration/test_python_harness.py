"""test_python_harness.py: what the client tests share (not a test itself).

Daemon starts a real archevald from $AE_BUILDDIR/server/archevald on a free
loopback port (--backend host, --host-workers 2 unless told otherwise),
waits until /v1/health/ready answers 200, and stops it with SIGTERM,
expecting exit status 0 after the drain.  Checks counts assertions;
finish() prints the "N passed, M failed" line and exits; skip() exits 77
(only when the daemon binary does not exist).  Standard library only; the
tests are single-threaded, except for the subprocesses they start.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

BUILDDIR = os.environ.get("AE_BUILDDIR") or os.getcwd()
SRCDIR = os.environ.get("AE_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DAEMON = os.path.join(BUILDDIR, "server", "archevald")
CLI = os.path.join(BUILDDIR, "clients", "archeval")
PYTHON_CLIENT_DIR = os.path.join(SRCDIR, "clients", "python")
READY_TIMEOUT_S = float(os.environ.get("AE_READY_TIMEOUT", "180"))

# A small, fast job (seconds at most on the host backend).
SMALL = {
    "architecture": {"type": "mlp_dag", "dag": "2_21_112", "width": 32},
    "data": {"batch_size": 8},
    "seed": 7,
    "metrics": ["topology", "convergence"],
}

# A slow job: the full NB201 network's empirical NTK at batch 64, 16 weight
# draws (~1-3 s each on the host backend, more under ASan), long enough to be
# caught queued or running; the engine checks for a cancel between draws,
# so cancelling it and the drain at SIGTERM stay quick.
SLOW = {
    "architecture": {"type": "nb201",
                     "cell": "|nor_conv_3x3~0|+|nor_conv_3x3~0|"
                             "nor_conv_3x3~1|+|nor_conv_3x3~0|"
                             "nor_conv_3x3~1|nor_conv_3x3~2|"},
    "data": {"batch_size": 64},
    "metrics": ["convergence"],
    "settings": {"ntk": {"repeats": 16}},
    "seed": 1,
}

_started = time.monotonic()
_counts = {"passed": 0, "failed": 0}


def log(message):
    print("[%6.1fs] %s" % (time.monotonic() - _started, message), flush=True)


def check(condition, what, detail=None):
    """Counts one assertion; prints it, and detail when it failed."""
    if condition:
        _counts["passed"] += 1
        log("ok: " + what)
    else:
        _counts["failed"] += 1
        log("FAIL: " + what)
        if detail:
            print("      " + str(detail).replace("\n", "\n      ")[:3000],
                  flush=True)
    return bool(condition)


def section(fn, *args):
    """Runs one group of checks; an exception counts as one failure (with
    its traceback) instead of ending the test.  Returns fn's value."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 (any bug in the code under test)
        check(False, "%s raised" % fn.__name__, traceback.format_exc())
        return None


def finish():
    print("%d passed, %d failed" % (_counts["passed"], _counts["failed"]),
          flush=True)
    sys.exit(1 if _counts["failed"] else 0)


def skip(reason):
    print("skipped: " + reason, flush=True)
    print("0 passed, 0 failed", flush=True)
    sys.exit(77)


def require_daemon():
    if not os.access(DAEMON, os.X_OK):
        skip("no daemon binary at %s" % DAEMON)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(port, path, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class Daemon:
    """One archevald on a free port, in a temporary working directory."""

    def __init__(self, *extra_args, host_workers=2):
        self.extra_args = list(extra_args)
        self.host_workers = host_workers
        self.workdir = tempfile.mkdtemp(prefix="ae-clients-")
        self.log_path = os.path.join(self.workdir, "archevald.log")
        self.proc = None
        self.port = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        """Starts and waits until ready; False (with the log) if not."""
        for _ in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as logfile:
                self.proc = subprocess.Popen(
                    [DAEMON, "--http-address", "127.0.0.1",
                     "--http-port", str(self.port), "--backend", "host",
                     "--host-workers", str(self.host_workers), "--no-store"]
                    + self.extra_args,
                    cwd=self.workdir, stdin=subprocess.DEVNULL,
                    stdout=logfile, stderr=subprocess.STDOUT)
            if self._wait_ready():
                log("archevald ready on %s" % self.url)
                return True
            self.kill()
        print(self.log_tail(), flush=True)
        return False

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if http_status(self.port, "/v1/health/ready") == 200:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self):
        """SIGTERM; returns the exit status (None if it had to be
        killed after 45 s)."""
        if not self.proc:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            return "\n".join(text.splitlines()[-lines:])
        except OSError:
            return ""


def write_json(directory, name, value):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        if isinstance(value, str):
            f.write(value)
        else:
            json.dump(value, f)
    return path
