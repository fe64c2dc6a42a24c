#!/usr/bin/env python3
"""test_reliability_signals.py: signals and limits (issue 14 item 6) and
log-safe escaping (item 7).

- SIGHUP with --log-file reopens the file: after a rotation (rename) the
  daemon writes to a new file at the path; with the log on stderr, SIGHUP
  is logged and the daemon keeps serving.
- SIGPIPE is ignored: with its stderr a pipe whose reader has exited, the
  daemon still answers requests (which each write a log line).
- --max-connections is lowered, with a warning, to what RLIMIT_NOFILE
  leaves; a limit too small for the daemon itself stops the start.
- The connection over --max-connections-per-ip gets a 429 problem+json,
  not a TCP reset.
- A URL with %0a cannot forge a log line, in text and JSON formats.
Prints "N passed, M failed" last.
"""

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class LogFile(unittest.TestCase):
    def test_sighup_reopens_after_rotation(self):
        d = h.Daemon("--no-store")
        path = os.path.join(d.workdir, "daemon.log")
        d.extra += ["--log-file", path]
        with d:
            self.assertEqual(d.call("GET", "/v1/health/live").status, 200)
            self.assertTrue(wait_for(lambda: "/v1/health/live" in read(path)))
            os.rename(path, path + ".1")
            d.signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: os.path.exists(path)),
                            "SIGHUP did not reopen the log file")
            self.assertEqual(d.call("GET", "/v1/datasets").status, 200)
            self.assertTrue(wait_for(lambda: "/v1/datasets" in read(path)))
            self.assertNotIn("/v1/datasets", read(path + ".1"))
            self.assertIn("reopened", read(path))
            self.assertEqual(d.stop(), 0)

    def test_sighup_with_stderr_is_ignored(self):
        with h.Daemon("--no-store") as d:
            d.signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: "SIGHUP" in d.log_text()))
            self.assertEqual(d.call("GET", "/v1/health/live").status, 200)
            self.assertIsNone(d.proc.poll())
            self.assertEqual(d.stop(), 0)

    def test_unwritable_log_file_stops_start(self):
        d = h.Daemon("--no-store", "--log-file",
                     "/nonexistent-dir/archevald.log")
        try:
            d.port = h.free_port()
            p = subprocess.run(d.command(), capture_output=True, timeout=60)
            self.assertEqual(p.returncode, 1)
            self.assertIn(b"--log-file", p.stderr)
        finally:
            d.cleanup()


class ClosedLogPipe(unittest.TestCase):
    def test_daemon_survives_a_reader_that_left(self):
        d = h.Daemon("--no-store")
        d.port = h.free_port()
        reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL)
        proc = subprocess.Popen(d.command(), cwd=d.workdir,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=reader.stdin)
        reader.stdin.close()  # only the daemon holds the write end now
        d.proc = proc
        try:
            self.assertTrue(d.wait_ready(), "did not start")
            reader.wait(timeout=30)  # read one byte and left
            for _ in range(20):  # each writes a log line into the pipe
                self.assertEqual(d.call("GET", "/v1/health/live").status,
                                 200)
            self.assertIsNone(proc.poll(), "the daemon ended on EPIPE")
            self.assertEqual(d.call("GET", "/v1").status, 200)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=60), 0)
        finally:
            d.cleanup()


def limit_files(n):
    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return apply


class FileLimit(unittest.TestCase):
    def run_with_limit(self, n, *extra, wait=True):
        d = h.Daemon("--no-store", "--max-connections", "1024", *extra)
        d.port = h.free_port()
        log = open(d.log_path, "ab")
        d.proc = subprocess.Popen(d.command(), cwd=d.workdir,
                                  stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT,
                                  preexec_fn=limit_files(n))
        log.close()
        return d

    def test_max_connections_lowered_to_the_file_limit(self):
        d = self.run_with_limit(256)
        try:
            self.assertTrue(d.wait_ready(), d.log_tail())
            self.assertRegex(d.log_text(),
                             r"--max-connections 1024 lowered to \d+")
            n = int(d.log_text().split("lowered to ")[1].split(":")[0])
            self.assertLess(n, 256 - 48)
            self.assertGreater(n, 0)
            self.assertEqual(d.call("GET", "/v1/health/live").status, 200)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()

    def test_a_limit_with_no_room_stops_the_start(self):
        d = self.run_with_limit(40)
        try:
            self.assertEqual(d.proc.wait(timeout=60), 1)
            self.assertIn("raise ulimit -n", d.log_text())
        finally:
            d.cleanup()


class PerAddressLimit(unittest.TestCase):
    def test_connection_over_the_limit_gets_429(self):
        with h.Daemon("--no-store", "--max-connections-per-ip", "2") as d:
            held = [socket.create_connection(("127.0.0.1", d.port))
                    for _ in range(2)]
            try:
                time.sleep(0.3)  # both accepted
                r = d.call("GET", "/v1/health/live")
                self.assertEqual(r.status, 429)
                self.assertEqual(r.header("Content-Type"),
                                 "application/problem+json")
                self.assertEqual(r.json["code"], "too_many_connections")
                self.assertEqual(r.header("Retry-After"), "1")
            finally:
                for s in held:
                    s.close()
            self.assertTrue(wait_for(
                lambda: d.call("GET", "/v1/health/live").status == 200))
            self.assertEqual(d.stop(), 0)


FORGED = "/v1/jobs/x%0a2026-01-01T00:00:00.000Z%20info%20FORGED%0d"


class LogEscaping(unittest.TestCase):
    def test_text_lines_cannot_be_forged(self):
        with h.Daemon("--no-store") as d:
            self.assertEqual(d.call("GET", FORGED).status, 404)
            self.assertEqual(d.stop(), 0)
            lines = d.log_text().splitlines()
            self.assertFalse([l for l in lines if "FORGED" in l and
                              not l.split(" ")[2].startswith("request_id=")],
                             "a forged line:\n" + d.log_tail())
            hit = [l for l in lines if "FORGED" in l]
            self.assertEqual(len(hit), 1, d.log_tail())
            self.assertIn("\\x0a", hit[0])
            self.assertIn("\\x0d", hit[0])

    def test_json_lines_stay_one_object_each(self):
        with h.Daemon("--no-store", "--log-format", "json") as d:
            self.assertEqual(d.call("GET", FORGED + "%ff").status, 404)
            self.assertEqual(d.stop(), 0)
            found = 0
            for line in d.log_text().splitlines():
                if not line.startswith("{"):
                    continue  # MHD's own messages, if any
                obj = json.loads(line)
                if "FORGED" in obj.get("path", ""):
                    found += 1
                    self.assertNotIn("\n", obj["path"])
                    self.assertIn("\\xff", obj["path"])
            self.assertEqual(found, 1, d.log_tail())


if __name__ == "__main__":
    h.main()
