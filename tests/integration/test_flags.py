#!/usr/bin/env python3
"""test_flags.py: archevald's flags are one table (server/options.c); this
checks what that table promises.

- README.md's "### Flags" block is exactly `archevald --help` (names,
  metavars, defaults, help), so the documentation cannot drift.
- Every flag of --help shows its default, except the actions (--healthcheck,
  --help, --version).
- The defaults --help shows are the ones in effect: a daemon started with
  none of the limit flags advertises them under GET /v1 "limits".
- The bounds are today's: each integer flag accepts its smallest and
  largest value and refuses one past either (exit 2, naming the flag);
  sizes and choices likewise.  A value that parses is seen through
  --healthcheck against a closed port (exit 1, not 2), so no daemon starts.
Prints "N passed, M failed" last.
"""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ACTIONS = {"healthcheck", "help", "version"}

# name: (smallest, largest) accepted; one past either is refused.
INTEGER_BOUNDS = {
    "http-port": (0, 65535),
    "workers-per-gpu": (1, 64),
    "host-workers": (0, 1024),
    "worker-nice": (0, 19),
    "worker-keep-ms": (0, 3600000),
    "max-queue": (0, 100000000),
    "max-batch": (1, 1000000),
    "default-timeout-ms": (1, 1 << 40),
    "job-ttl-secs": (0, 1 << 32),
    "drain-timeout-secs": (0, 86400),
    "connection-timeout-secs": (0, 86400),
    "max-connections": (1, 1000000),
    "max-connections-per-ip": (0, 1000000),
}

UNITS = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def run_daemon(*args):
    return subprocess.run([h.DAEMON] + list(args), capture_output=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def help_text():
    r = run_daemon("--help")
    assert r.returncode == 0, r
    return r.stdout.decode()


def readme_flags():
    """The code block under README.md's "### Flags"."""
    with open(os.path.join(h.SRCDIR, "README.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^### Flags\n(?:(?!^#).)*?^```\n(.*?)^```", text,
                  re.S | re.M)
    assert m, "README.md has no ### Flags code block"
    return m.group(1)


def flags_and_defaults(text):
    """{name: default or None} from a --help text (wrapped lines joined)."""
    entries, current = {}, None
    for line in text.splitlines():
        m = re.match(r"  --([a-z0-9-]+)", line)
        if m:
            current = m.group(1)
            entries[current] = line
        elif current and line.startswith(" " * 20):
            entries[current] += " " + line.strip()
    out = {}
    for name, entry in entries.items():
        d = re.search(r"\(default ([^()]*(?:\([^)]*\)[^()]*)*)\)", entry)
        out[name] = d.group(1) if d else None
    return out


def parse_size(text):
    m = re.fullmatch(r"(\d+)(KiB|MiB|GiB|)", text)
    assert m, text
    return int(m.group(1)) * UNITS[m.group(2)]


def parses(*flag_args):
    """The exit status of a --healthcheck run with these flags: 1 when they
    parsed (the healthcheck then fails on a closed port), 2 when not."""
    return run_daemon("--http-address", "127.0.0.1", "--http-port", "9",
                      *flag_args, "--healthcheck")


class Flags(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.help = help_text()
        cls.defaults = flags_and_defaults(cls.help)

    def test_readme_is_help(self):
        readme = readme_flags()
        if readme != self.help:
            import difflib
            diff = "".join(difflib.unified_diff(
                readme.splitlines(True), self.help.splitlines(True),
                "README.md ### Flags", "archevald --help"))
            self.fail("README's flag list differs from --help:\n" + diff)
        self.assertEqual(flags_and_defaults(readme), self.defaults)

    def test_every_flag_shows_its_default(self):
        self.assertGreater(len(self.defaults), 20)
        for name, default in self.defaults.items():
            if name in ACTIONS:
                self.assertIsNone(default, name)
            else:
                self.assertTrue(default, "--%s shows no default" % name)

    def test_defaults_in_effect(self):
        with h.Daemon() as d:
            r = d.call("GET", "/v1")
            self.assertEqual(r.status, 200)
            limits = r.json["limits"]
        self.assertEqual(limits["max_queue"], int(self.defaults["max-queue"]))
        self.assertEqual(limits["max_batch"], int(self.defaults["max-batch"]))
        self.assertEqual(limits["max_body_bytes"],
                         parse_size(self.defaults["max-body-bytes"]))
        self.assertEqual(limits["default_timeout_ms"],
                         int(self.defaults["default-timeout-ms"]))
        self.assertEqual(limits["job_ttl_secs"],
                         int(self.defaults["job-ttl-secs"]))

    def test_integer_bounds(self):
        # Every bound accepted (one run with all the lows, one with all the
        # highs: a value that did not parse exits 2) ...
        for end in (0, 1):
            args = ["--%s=%d" % (name, bounds[end])
                    for name, bounds in INTEGER_BOUNDS.items()]
            r = parses(*args)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
        # ... and one past either refused, naming the flag.
        for name, (low, high) in INTEGER_BOUNDS.items():
            self.assertIn(name, self.defaults)
            for value in (low - 1, high + 1):
                r = parses("--%s=%d" % (name, value))
                self.assertEqual(r.returncode, 2, (name, value))
                self.assertIn(b"--" + name.encode(), r.stderr)
        self.assertEqual(parses("--max-queue=12x").returncode, 2)

    def test_sizes_and_choices(self):
        good = ["--%s=%s" % (name, value)
                for name in ("max-body-bytes", "max-job-memory",
                             "max-jobs-memory")
                for value in ("1", "512KiB", "8M", "1G", "1024GiB")]
        for name, values in (("backend", ["auto", "host", "cuda"]),
                             ("log-format", ["text", "json"]),
                             ("log-level", ["debug", "info", "warn",
                                            "warning", "error"]),
                             ("store-sync", ["full", "normal"])):
            good += ["--%s=%s" % (name, value) for value in values]
        r = parses(*good)
        self.assertEqual(r.returncode, 1, r.stderr)
        for bad in ("0", "1025GiB", "8TB", "-1", ""):
            r = parses("--max-body-bytes=%s" % bad)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn(b"--max-body-bytes", r.stderr)
        self.assertEqual(parses("--max-job-memory=0").returncode, 2)
        self.assertEqual(parses("--max-jobs-memory=0").returncode, 2)
        for name, bad in (("backend", "gpu"), ("log-format", "xml"),
                          ("log-level", "loud"), ("store-sync", "off")):
            r = parses("--%s=%s" % (name, bad))
            self.assertEqual(r.returncode, 2, (name, bad))
            self.assertIn(b"--" + name.encode(), r.stderr)

    def test_unknown_flag_and_argument(self):
        self.assertEqual(parses("--no-such-flag").returncode, 2)
        self.assertEqual(parses("stray").returncode, 2)
        r = run_daemon("--version")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith(b"archevald "), r.stdout)

    def test_cpu_class_variable(self):
        """AE_CPU_CLASS is read from the environment, not a flag: a value
        other than avx2 is warned about and changes nothing (the start line
        names the CPU's own class)."""
        native = h.cpu_class() if not os.environ.get("AE_CPU_CLASS") else None
        saved = os.environ.get("AE_CPU_CLASS")
        os.environ["AE_CPU_CLASS"] = "avx3"
        try:
            d = h.Daemon(store=False).start()
            d.stop()
            log = d.log_text()
            d.cleanup()
        finally:
            if saved is None:
                del os.environ["AE_CPU_CLASS"]
            else:
                os.environ["AE_CPU_CLASS"] = saved
        self.assertIn("AE_CPU_CLASS=avx3: only avx2 is known; ignored", log)
        if native and not os.environ.get("AE_GOLDEN_CPU_CLASS"):
            self.assertIn("(host kernels: the %s class)" % native, log)


if __name__ == "__main__":
    h.main()
