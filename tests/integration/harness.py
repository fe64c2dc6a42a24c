"""harness.py: what every integration test shares (not a test itself).

Daemon starts a real $AE_BUILDDIR/server/archevald on a free loopback port
with the given flags (--backend host and --host-workers 2 unless told
otherwise; a --state-dir in its temporary folder, or --no-store), waits
until a health endpoint answers 200, and stops it with SIGTERM (stop()
returns the exit status), SIGKILL (kill()) or both (restart() on the same
port and state dir).  With AE_VALGRIND=1 (or valgrind=True) the daemon
runs under valgrind --leak-check=full and its exit status is valgrind's.
With AE_KEEP_LOGS=DIR each daemon's log is copied into DIR at cleanup
(TEST-NAME-PID.log), to read after a failure whose temporary folder is gone.
call() is a small http.client wrapper that returns a Response (status,
headers, body, parsed json).

Two styles of test use it:
- unittest modules end with `h.main()`, which runs their cases;
- script tests count assertions with check() (section() turns an
  exception into one failure) and end with finish().
Both print "N passed, M failed" last and exit 1 on a failure; a test exits
77 (skipped) when the daemon was not built (require_daemon(), main()).
Python 3 stdlib only.  The counters are shared under a lock, so client
threads may call check().
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
import threading
import time
import traceback
import unittest

BUILDDIR = os.environ.get("AE_BUILDDIR") or os.getcwd()
SRCDIR = os.environ.get("AE_SRCDIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
DAEMON = os.path.join(BUILDDIR, "server", "archevald")
CLI = os.path.join(BUILDDIR, "clients", "archeval")
PYTHON_CLIENT_DIR = os.path.join(SRCDIR, "clients", "python")
READY_TIMEOUT_S = float(os.environ.get(
    "AE_READY_TIMEOUT_S", os.environ.get("AE_READY_TIMEOUT", "180")))
VALGRIND_ERROR = 99
# True in the sanitizer build's run (configure --enable-sanitizers sets
# AE_SANITIZERS=1 for make check): ASan/UBSan make the engine several times
# slower and RSS no longer the job's, so tests shrink their heavy jobs and
# skip their RSS bars under it.
SANITIZERS = os.environ.get("AE_SANITIZERS") == "1"
TERMINAL = ("succeeded", "failed", "cancelled")

# A small job: topology only, milliseconds.
SMALL_JOB = {"architecture": {"type": "mlp_dag", "dag": "2_21_112"},
             "metrics": ["topology"]}
# A small seeded job with kernels (a second at most on the host backend).
SMALL = {
    "architecture": {"type": "mlp_dag", "dag": "2_21_112", "width": 32},
    "data": {"batch_size": 8},
    "seed": 7,
    "metrics": ["topology", "convergence"],
}
# Slow jobs: the full all-conv nb201 network's empirical NTK at batch 64
# with 16 weight draws (~1-3 s each on a 2-core host, more under ASan),
# long enough to be caught queued or running.  The engine checks for a
# cancel between draws, so a cancel and the drain at SIGTERM stay quick.
_NB201_CONV = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
               "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
LONG_JOB = {"architecture": {"type": "nb201", "cell": _NB201_CONV},
            "data": {"batch_size": 64},
            "settings": {"ntk": {"repeats": 16}},
            "metrics": ["convergence", "generalization"]}
SLOW = {"architecture": {"type": "nb201", "cell": _NB201_CONV},
        "data": {"batch_size": 64},
        "metrics": ["convergence"],
        "settings": {"ntk": {"repeats": 16}},
        "seed": 1}


# ---- the check counter -----------------------------------------------------

_started = time.monotonic()
_lock = threading.Lock()
_counts = {"passed": 0, "failed": 0}


def cpu_class():
    """The CPU class whose float32 kernels run here, for tests that pin
    exact numbers: "avx512" when the CPU has AVX-512F (archeval then sets
    OpenBLAS's SkylakeX kernels and takes its AVX-512 paths, as
    gpu/host/cpu_class.c and blas_env.c decide), "avx2" with AVX2
    (Haswell kernels, archeval's AVX2 paths), else "other".  A CPU with
    AVX-512F runs as "avx2" under AE_CPU_CLASS=avx2, as the daemon does
    (it inherits the variable); $AE_GOLDEN_CPU_CLASS overrides both."""
    forced = os.environ.get("AE_GOLDEN_CPU_CLASS")
    if forced:
        return forced
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    if "avx2" not in flags or "fma" not in flags:
        return "other"
    if "avx512f" in flags and os.environ.get("AE_CPU_CLASS") != "avx2":
        return "avx512"
    return "avx2"


def log(message):
    print("[%6.1fs] %s" % (time.monotonic() - _started, message), flush=True)


def check(condition, what, detail=None):
    """Counts one assertion; prints it, and detail when it failed."""
    with _lock:
        _counts["passed" if condition else "failed"] += 1
    if condition:
        log("ok: " + what)
    else:
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


def failures():
    with _lock:
        return _counts["failed"]


def finish(passed=0, failed=0):
    """Prints "N passed, M failed" (the checks plus the given counts) and
    exits, 1 when anything failed."""
    with _lock:
        passed += _counts["passed"]
        failed += _counts["failed"]
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


def skip(reason):
    print("skipped: " + reason, flush=True)
    print("0 passed, 0 failed", flush=True)
    sys.exit(77)


def require_daemon():
    if not os.access(DAEMON, os.X_OK):
        skip("no daemon binary at %s" % DAEMON)


def main():
    """Runs the calling module's unittest cases (and any checks they
    counted); prints "N passed, M failed"; 77 without a daemon."""
    require_daemon()
    suite = unittest.defaultTestLoader.loadTestsFromModule(
        sys.modules["__main__"])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(
        suite)
    bad = len(result.failures) + len(result.errors)
    finish(result.testsRun - bad, bad)


def write_json(directory, name, value):
    """Writes value (a string as is, else as JSON) to directory/name."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        if isinstance(value, str):
            f.write(value)
        else:
            json.dump(value, f)
    return path


# ---- HTTP ------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Response:
    """One answer: status, headers, body (bytes) and json (parsed when the
    Content-Type says JSON, else None)."""

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
    """One request on a fresh connection; raises on connection errors.
    body: a JSON value (sent as application/json), or raw bytes via
    raw=."""
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


# ---- the daemon ------------------------------------------------------------

class Daemon:
    """One archevald on a free loopback port; a context manager.

    extra: more flags.  store: a --state-dir (state_dir, default a folder in
    the daemon's temporary workdir) or, when false, --no-store.  store_sync:
    the --store-sync value (None: the daemon's default).  backend: the
    --backend value (None: the daemon's default).  ready_path: what start()
    waits for.  workdir/name: where the log (NAME.log) goes; a workdir made
    here is removed by cleanup()."""

    def __init__(self, *extra, host_workers=2, store=True, state_dir=None,
                 store_sync="normal", backend="host", valgrind=None,
                 ready_path="/v1/health/ready", workdir=None,
                 name="archevald"):
        self.extra = list(extra)
        self.host_workers = host_workers
        self.store = store
        self.store_sync = store_sync
        self.backend = backend
        if valgrind is None:
            valgrind = os.environ.get("AE_VALGRIND") == "1"
        self.valgrind = valgrind
        self.ready_path = ready_path
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="ae-test-")
        self.state_dir = state_dir or os.path.join(self.workdir, "state")
        self.name = name
        self.log_path = os.path.join(self.workdir, name + ".log")
        self.proc = None
        self.port = None
        self.starts = 0

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def command(self):
        cmd = [DAEMON, "--http-address", "127.0.0.1",
               "--http-port", str(self.port)]
        if self.backend:
            cmd += ["--backend", self.backend]
        if self.host_workers is not None:
            cmd += ["--host-workers", str(self.host_workers)]
        if self.store:
            cmd += ["--state-dir", self.state_dir]
            if self.store_sync:
                cmd += ["--store-sync", self.store_sync]
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

    def spawn(self):
        """Starts the process on self.port (a free one when None) and
        returns at once."""
        if self.port is None:
            self.port = free_port()
        self.starts += 1
        with open(self.log_path, "ab") as logfile:
            logfile.write(b"\n=== start %d on port %d\n"
                          % (self.starts, self.port))
            logfile.flush()
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, stdin=subprocess.DEVNULL,
                stdout=logfile, stderr=subprocess.STDOUT)
        return self

    def start(self, wait_ready=True, timeout=None, attempts=3):
        """Starts and waits until ready_path answers 200; returns self.
        Keeps the port it had (a restart), then tries fresh ones (the
        old one may still be taken).  RuntimeError with the log's tail
        when it never becomes ready."""
        for attempt in range(attempts):
            self.spawn()
            if not wait_ready or self.wait_ready(timeout):
                return self
            self.kill()
            self.port = None
            log("%s: start attempt %d failed; trying another port"
                % (self.name, attempt + 1))
        raise RuntimeError("archevald did not start:\n" + self.log_tail())

    def try_start(self, **kw):
        """start() for script tests: True, or False with the log printed."""
        try:
            self.start(**kw)
            log("%s ready on %s" % (self.name, self.url))
            return True
        except RuntimeError as err:
            print(err, flush=True)
            return False

    def restart(self, **kw):
        """SIGKILL, then start again on the same port and state dir."""
        self.kill()
        return self.try_start(**kw)

    def wait_ready(self, timeout=None):
        if timeout is None:
            timeout = READY_TIMEOUT_S * (3 if self.valgrind else 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if call(self.port, "GET", self.ready_path,
                        timeout=5).status == 200:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
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
        keep = os.environ.get("AE_KEEP_LOGS")
        if keep:  # a directory: each daemon's log copied there, to read later
            try:
                os.makedirs(keep, exist_ok=True)
                shutil.copy(self.log_path, os.path.join(
                    keep, "%s-%s-%d.log" % (os.path.basename(sys.argv[0]),
                                            self.name, os.getpid())))
            except OSError:
                pass
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False


class DaemonCase(unittest.TestCase):
    """A unittest case whose tests share one daemon, cls.d, made by
    new_daemon() (override it for flags); the class fails at its end when
    the daemon did not exit 0."""

    @classmethod
    def new_daemon(cls):
        return Daemon()

    @classmethod
    def setUpClass(cls):
        cls.d = cls.new_daemon().start()

    @classmethod
    def tearDownClass(cls):
        status = cls.d.stop()
        log = cls.d.log_tail()
        cls.d.cleanup()
        if status != 0:
            raise AssertionError("exit status %r\n%s" % (status, log))
