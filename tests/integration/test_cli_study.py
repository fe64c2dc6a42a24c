#!/usr/bin/env python3
"""test_cli_study.py: `archeval study ...` against a real archevald.

Every command (create, add with --watch, show, list, rank, export in csv
and jsonl, delete) and its errors: a rejected body (exit 3 with the field
named on stderr), an unknown study (exit 6), a bad command line (exit 2),
an unreachable server (exit 4).  The table of `study rank` is checked
against the server's ranking, and the export against the members.

Environment: AE_BUILDDIR.  Exit 77 without the daemon or the CLI.
Prints "N passed, M failed" last; python3 stdlib only.
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

check = h.check
DAGS = ("2_22_222", "2_21_112", "2_02_122", "1_22_212", "2_12_221", "1",
        "2_22", "1_11")


def cli(d, *args, stdin=None):
    env = dict(os.environ, ARCHEVAL_SERVER=d.url if d else
               "http://127.0.0.1:1")
    return subprocess.run([h.CLI, "study"] + list(args), input=stdin,
                          capture_output=True, text=True, timeout=300,
                          env=env)


def main():
    h.require_daemon()
    if not os.access(h.CLI, os.X_OK):
        h.skip("no CLI")
    work = tempfile.mkdtemp(prefix="ae-cli-study-")
    d = h.Daemon()
    if not d.try_start():
        check(False, "daemon starts")
        return h.finish()
    try:
        body = h.write_json(work, "study.json",
                            {"data": {"batch_size": 8},
                             "metrics": ["topology", "convergence"]})
        r = cli(d, "create", "--name", "cli", "--seed", "4", "--quiet", body)
        check(r.returncode == 0 and r.stdout.strip().startswith("s_"),
              "create --quiet prints the id", r.stderr)
        sid = r.stdout.strip()
        r = cli(d, "create", "--seed", "4", body)
        check(r.returncode == 3 and "/name" in r.stderr,
              "create without a name: exit 3 naming /name", r.stderr)
        r = cli(d, "create", "--name", "x", "--rank", "nope.metric", body)
        check(r.returncode == 3 and "/rank/components/0" in r.stderr,
              "create with an unknown component: exit 3", r.stderr)

        archs = "\n".join(json.dumps({"type": "mlp_dag", "dag": g,
                                      "width": 32}) for g in DAGS)
        r = cli(d, "add", "--batch", "3", "--watch", sid, "-", stdin=archs)
        ids = r.stdout.split()
        check(r.returncode == 0 and len(ids) == len(DAGS),
              "add --watch: one job id per architecture, in batches",
              (r.returncode, r.stderr[-300:]))
        check("100%" in r.stderr and "[####" in r.stderr,
              "add --watch draws the progress bar to 100%", r.stderr[-200:])
        r = cli(d, "add", sid, "-",
                stdin=json.dumps([{"type": "mlp_dag", "dag": "9_9"}]))
        check(r.returncode == 3 and "/architectures/0" in r.stderr,
              "add a bad architecture: exit 3 naming it", r.stderr)
        r = cli(d, "add", "s_nope", "-", stdin=archs)
        check(r.returncode == 6, "add to an unknown study: exit 6",
              r.returncode)

        r = cli(d, "show", sid)
        shown = json.loads(r.stdout) if r.returncode == 0 else {}
        check(shown.get("counts", {}).get("succeeded") == len(DAGS) and
              shown.get("progress") == 1.0, "show: counts and progress")
        r = cli(d, "show", "--watch", sid)
        check(r.returncode == 0 and "100%" in r.stderr, "show --watch")
        r = cli(d, "list")
        listed = json.loads(r.stdout)["studies"] if r.returncode == 0 else []
        check([s["id"] for s in listed] == [sid], "list")

        server = d.call("GET", "/v1/studies/%s/ranking" % sid).json
        r = cli(d, "rank", sid)
        rows = [line for line in r.stdout.splitlines()
                if line.strip() and line.split()[0][0].isdigit()
                and " j_" in line]
        check(r.returncode == 0 and len(rows) == len(DAGS),
              "rank: one row per member", r.stdout[-500:])
        check([[w for w in row.split() if w.startswith("j_")][0]
               for row in rows] == [m["job"] for m in server["members"]],
              "rank: rows in the server's order")
        front = {m["job"] for m in server["members"] if m["pareto"]}
        starred = {[w for w in row.split() if w.startswith("j_")][0]
                   for row in rows if row.split()[0].endswith("*")}
        check(starred == front, "rank: * marks the Pareto front")
        check("selection bound" in r.stdout, "rank: the selection bound")
        r = cli(d, "rank", "--json", sid)
        check(r.returncode == 0 and json.loads(r.stdout)["members"] ==
              server["members"], "rank --json is the server's ranking")

        r = cli(d, "export", sid)
        lines = r.stdout.splitlines()
        check(r.returncode == 0 and len(lines) == len(DAGS) + 1 and
              lines[0].startswith("rank,job"), "export: csv")
        r = cli(d, "export", "--format", "jsonl", sid)
        check(r.returncode == 0 and
              [json.loads(x)["job"] for x in r.stdout.splitlines()] ==
              [m["job"] for m in server["members"]], "export: jsonl")
        r = cli(d, "export", "--format", "xml", sid)
        check(r.returncode == 2, "export --format xml: exit 2")

        r = cli(d, "delete", sid)
        check(r.returncode == 0, "delete", r.stderr)
        r = cli(d, "show", sid)
        check(r.returncode == 6, "show a deleted study: exit 6",
              r.returncode)
        r = cli(d, "frobnicate")
        check(r.returncode == 2, "an unknown command: exit 2")
        r = cli(None, "list", "--retries", "0")
        check(r.returncode == 4, "no server: exit 4", r.returncode)
        status = d.stop()
        check(status == 0, "the daemon stops cleanly (no sanitizer report)",
              (status, d.log_tail()))
    finally:
        d.cleanup()
    return h.finish()


if __name__ == "__main__":
    main()
