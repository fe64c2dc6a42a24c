#!/usr/bin/env python3
"""test_cli.py: the archeval CLI's server commands against a real archevald.

Starts archevald (host backend, 2 workers, --max-body-bytes 65536) on a free
loopback port and drives $AE_BUILDDIR/clients/archeval: submit (one job,
--wait, a JSON array batch, a {"jobs":[...]} batch, stdin, idempotency
keys), get, wait (one and several, progress line, --timeout), cancel,
delete, list (paging with --page-size, --state, --json, the table), and
that every error surfaces as the exit status documented in cli.h and
--help: 400/413/422/409 -> 3, 404 -> 6, unreachable -> 4, bad usage -> 2,
failed or cancelled job -> 1, timeout -> 5.  A second daemon with
--max-queue 1 and one worker shows the retry after 429: with --retries 0
the CLI exits 4, with retries it waits out Retry-After and succeeds once
the queue has room.  Issue 17: list --client-ref (the server's filter),
wait --progress (jobs per second and the time left; not without it off a
terminal), and the parser's answers through the CLI (a NaN named by its
pointer, a graph output that contradicts num_classes).  Prints "N passed,
M failed"; exit 77 when the daemon binary does not exist.  Single-threaded (subprocesses aside).
Under the sanitizer build (AE_SANITIZERS=1) the jobs that wait --progress
watches take 2 NTK repeats instead of 8 (still seconds each there).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def cli(args, server=None, stdin=None, timeout=300):
    """Runs archeval; returns (exit status, stdout, stderr)."""
    env = dict(os.environ)
    env.pop("ARCHEVAL_SERVER", None)
    if server:
        env["ARCHEVAL_SERVER"] = server
    proc = subprocess.run([h.CLI] + args, input=stdin, capture_output=True,
                          text=True, env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def submit_ids(path, server):
    code, out, err = cli(["submit", path], server)
    ids = out.split()
    return code, ids, err


def test_basics(d, tmp):
    url = d.url
    code, out, _ = cli(["--help"])
    h.check(code == 0 and "Exit status" in out and "6  unknown job" in out,
            "--help documents the exit statuses", out)
    code, _, err = cli(["frobnicate"])
    h.check(code == 2, "unknown command exits 2", err)
    code, _, err = cli(["wait"], url)
    h.check(code == 2, "wait without ids exits 2", err)
    code, _, err = cli(["list", "--page-size", "zero"], url)
    h.check(code == 2, "bad --page-size exits 2", err)

    code, out, err = cli(["info"], url)
    info = json.loads(out) if code == 0 else {}
    h.check(code == 0 and info.get("api") == "v1", "info prints GET /v1",
            err)

    small = h.write_json(tmp, "small.json", h.SMALL)
    code, ids, err = submit_ids(small, url)
    h.check(code == 0 and len(ids) == 1 and ID_RE.match(ids[0]),
            "submit prints one job id", err)
    job_id = ids[0] if ids else "x"

    code, out, err = cli(["wait", job_id, "--timeout", "300"], url)
    result = json.loads(out) if code == 0 else {}
    h.check(code == 0 and "topology" in result and "convergence" in result,
            "wait prints the result JSON", err)
    h.check(result.get("topology", {}).get("paths") is not None,
            "the result has topology.paths", out[:500])

    code, out, err = cli(["get", job_id], url)
    job = json.loads(out) if code == 0 else {}
    h.check(code == 0 and job.get("id") == job_id and
            job.get("state") == "succeeded", "get prints the job", err)

    # --server on the command line beats $ARCHEVAL_SERVER.
    code, out, err = cli(["--server", url, "get", job_id],
                         "http://127.0.0.1:9")
    h.check(code == 0 and json.loads(out).get("id") == job_id,
            "global --server overrides $ARCHEVAL_SERVER", err)
    code, out, err = cli(["get", "--server=" + url, job_id],
                         "http://127.0.0.1:9")
    h.check(code == 0, "the subcommand's --server= works too", err)

    # submit --wait, from stdin.
    code, out, err = cli(["submit", "--wait", "-"], url,
                         stdin=json.dumps(dict(h.SMALL, seed=8)))
    result = json.loads(out) if code == 0 else {}
    h.check(code == 0 and "convergence" in result,
            "submit --wait - reads stdin and prints the result", err)
    return job_id


def test_batch_and_list(d, tmp):
    url = d.url
    batch = [dict(h.SMALL, seed=20 + i, client_ref="cli-batch-%d" % i)
             for i in range(3)]
    path = h.write_json(tmp, "batch.json", batch)
    code, ids, err = submit_ids(path, url)
    h.check(code == 0 and len(ids) == 3 and len(set(ids)) == 3,
            "a JSON array is one batch; three ids printed", err)
    code, out, err = cli(["wait", "--timeout", "300"] + ids, url)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    h.check(code == 0 and sorted(j["id"] for j in lines) == sorted(ids),
            "wait on several prints one job per line", out + err)
    h.check("3/3 finished (3 succeeded, 0 failed)" in err,
            "wait on several prints the progress line", err)

    wrapped = h.write_json(tmp, "wrapped.json", {"jobs": [
        dict(h.SMALL, seed=30), dict(h.SMALL, seed=31)]})
    code, out, err = cli(["submit", "--wait", wrapped], url)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    h.check(code == 0 and len(lines) == 2 and
            all(j["state"] == "succeeded" for j in lines),
            '{"jobs":[...]} is a batch; submit --wait prints both', err)

    bad_batch = h.write_json(tmp, "bad_batch.json", [
        h.SMALL, dict(h.SMALL, bogus_key=1)])
    code, out, err = cli(["submit", bad_batch], url)
    h.check(code == 3 and "/jobs/1" in err,
            "a bad batch item exits 3 and names /jobs/1", err)

    code, out, err = cli(["list", "--json", "--page-size", "2"], url)
    listed = [json.loads(line) for line in out.splitlines() if line.strip()]
    listed_ids = [j["id"] for j in listed]
    h.check(code == 0 and set(ids) <= set(listed_ids) and
            len(listed_ids) == len(set(listed_ids)) and len(listed) >= 7,
            "list --page-size 2 follows every page (%d jobs)" % len(listed),
            err)
    code, out, err = cli(["list", "--json", "--state", "succeeded"], url)
    states = {json.loads(line)["state"] for line in out.splitlines()
              if line.strip()}
    h.check(code == 0 and states == {"succeeded"},
            "list --state succeeded lists only succeeded jobs", out + err)
    code, out, err = cli(["list"], url)
    h.check(code == 0 and out.startswith("ID") and ids[0] in out and
            "cli-batch-0" in out, "list prints a table", out[:400] + err)
    code, out, err = cli(["list", "--state", "no_such_state"], url)
    h.check(code == 3, "list --state bogus exits 3 (422)", err)


def test_idempotency(d, tmp):
    url = d.url
    path = h.write_json(tmp, "idem.json", dict(h.SMALL, seed=40))
    other = h.write_json(tmp, "idem2.json", dict(h.SMALL, seed=41))
    key = "cli-test-key-%d" % os.getpid()
    c1, out1, e1 = cli(["submit", "--idempotency-key", key, path], url)
    c2, out2, e2 = cli(["submit", "--idempotency-key", key, path], url)
    h.check(c1 == 0 and c2 == 0 and out1 == out2 and out1.strip(),
            "the same key and body give the same job", e1 + e2)
    c3, _, e3 = cli(["submit", "--idempotency-key", key, other], url)
    h.check(c3 == 3 and "idempotency_key_mismatch" in e3,
            "the same key with another body exits 3", e3)


def test_errors(d, tmp):
    url = d.url
    bad_json = h.write_json(tmp, "bad.json", '{"architecture": {')
    code, _, err = cli(["submit", bad_json], url)
    h.check(code == 3 and "invalid_json" in err,
            "unparsable JSON: 400 invalid_json, exit 3", err)
    unknown = h.write_json(tmp, "unknown.json", dict(h.SMALL, colour="red"))
    code, _, err = cli(["submit", unknown], url)
    h.check(code == 3 and "invalid_request" in err and "/colour" in err,
            "unknown key: 422 with its pointer on stderr, exit 3", err)
    bad_cell = h.write_json(tmp, "cell.json", {
        "architecture": {"type": "nb201", "cell": "|conv_9x9~0|"}})
    code, _, err = cli(["submit", bad_cell], url)
    h.check(code == 3 and "/architecture" in err,
            "bad cell: 422 pointing into /architecture, exit 3", err)
    big = dict(h.SMALL, client_ref="x" * 100000)
    code, _, err = cli(["submit", h.write_json(tmp, "big.json", big)], url)
    h.check(code == 3 and "body_too_large" in err,
            "a body over --max-body-bytes: 413, exit 3", err)
    code, _, err = cli(["get", "j_doesnotexist"], url)
    h.check(code == 6 and "not_found" in err, "unknown job: 404, exit 6",
            err)
    code, _, err = cli(["wait", "j_doesnotexist"], url)
    h.check(code == 6, "wait on an unknown job exits 6", err)
    code, _, err = cli(["get", "../v1"], url)
    h.check(code == 2, "a malformed id is a usage error", err)
    code, _, err = cli(["get", "--retries", "1", "j_x"],
                       "http://127.0.0.1:%d" % h.free_port())
    h.check(code == 4 and "no answer" in err,
            "an unreachable server exits 4 after the retries", err)
    code, _, err = cli(["submit", os.path.join(tmp, "missing.json")], url)
    h.check(code == 1, "an unreadable file exits 1", err)


def test_issue17(d, tmp):
    url = d.url
    # Jobs of about a second each, so that they finish while wait runs.
    medium = {"architecture": {"type": "nb201", "cell": h.SLOW[
        "architecture"]["cell"], "channels": 8, "cells_per_stage": 1},
        "data": {"batch_size": 32}, "metrics": ["convergence"],
        "settings": {"ntk": {"repeats": 2 if h.SANITIZERS else 8}}}
    batch = [dict(medium, seed=70 + i, client_ref="cli-ref-%d" % (i % 2))
             for i in range(6)]
    code, ids, err = submit_ids(h.write_json(tmp, "refs.json", batch), url)
    h.check(code == 0 and len(ids) == 6, "six jobs with two client_refs",
            err)
    code, out, err = cli(["wait", "--progress", "--timeout", "300"] + ids,
                         url)
    lines = [line for line in err.splitlines() if " finished (" in line]
    h.check(code == 0 and lines and
            lines[-1].startswith("6/6 finished (6 succeeded, 0 failed)"),
            "wait --progress: the progress lines end at 6/6", err)
    h.check(any(re.search(r"; [0-9.e+-]+ jobs/s", line) for line in lines),
            "wait --progress: jobs per second once jobs finish", err)
    h.check(all("about" not in line or line.endswith(" left")
                for line in lines), "the time left closes the line", err)
    code, out, err = cli(["wait", "--timeout", "300"] + ids, url)
    h.check(code == 0 and "jobs/s" not in err,
            "without --progress, off a terminal: no rate", err)

    # Needs the server's ?client_ref= filter (branch server).
    code, out, err = cli(["list", "--json", "--client-ref", "cli-ref-1",
                          "--page-size", "2"], url)
    listed = [json.loads(line) for line in out.splitlines() if line.strip()]
    h.check(code == 0 and sorted(j["id"] for j in listed) ==
            sorted(ids[1::2]),
            "list --client-ref lists exactly that client_ref's jobs",
            out + err)
    code, _, err = cli(["list", "--client-ref", "x" * 300], url)
    h.check(code == 2, "a --client-ref over 256 bytes is a usage error", err)

    nan = h.write_json(tmp, "nan.json",
                       '{"seed": 1, "settings": {"eta": NaN},\n'
                       ' "architecture": {"type": "mlp_dag", "dag": "2"}}')
    code, _, err = cli(["submit", nan], url)
    h.check(code == 3 and "invalid_json" in err and
            "/settings/eta: NaN is not JSON" in err and
            "JSON has no NaN or Infinity" in err,
            "a NaN literal: 400 naming /settings/eta, exit 3", err)
    graph = h.write_json(tmp, "graph5.json", {
        "architecture": {"type": "graph", "output": "fc", "nodes": [
            {"id": "f", "op": "flatten", "inputs": ["input"]},
            {"id": "fc", "op": "linear", "inputs": ["f"], "out": 5}]},
        "data": {"input_shape": [4], "num_classes": 10}})
    code, _, err = cli(["submit", graph], url)
    h.check(code == 3 and "/architecture/output" in err and "5 units" in err,
            "a 5-unit output against 10 classes: 422 at "
            "/architecture/output, exit 3", err)


def test_cancel_delete_timeout(d, tmp, finished_id):
    url = d.url
    code, _, err = cli(["cancel", finished_id], url)
    h.check(code == 3 and "job_terminal" in err,
            "cancel on a succeeded job: 409 job_terminal, exit 3", err)

    # Two blockers keep both workers busy, so the third job is queued (or
    # just started) for a few seconds even on a fast machine.
    slow = h.write_json(tmp, "slow.json", [dict(h.SLOW, seed=s)
                                           for s in (101, 102, 103)])
    code, ids, err = submit_ids(slow, url)
    h.check(code == 0 and len(ids) == 3, "three slow jobs submitted", err)
    slow_id = ids[-1] if ids else "x"
    start = time.monotonic()
    code, _, err = cli(["wait", "--timeout", "0.5", slow_id], url)
    elapsed = time.monotonic() - start
    h.check(code == 5 and elapsed < 10,
            "wait --timeout 0.5 on a slow job exits 5 (%.1f s)" % elapsed,
            err)
    code, _, err = cli(["delete", slow_id], url)
    h.check(code == 3 and "job_not_terminal" in err,
            "delete of an unfinished job: 409, exit 3", err)
    code, out, err = cli(["cancel", slow_id], url)
    job = json.loads(out) if code == 0 else {}
    h.check(code == 0 and (job.get("state") == "cancelled" or
                           job.get("cancel_requested") is True),
            "cancel prints the job, cancelled or cancel_requested", err)
    code, out, err = cli(["wait", "--timeout", "120", slow_id], url)
    h.check(code == 1 and "cancelled" in err,
            "wait on a cancelled job exits 1", out + err)
    code, out, err = cli(["cancel"] + ids[:-1], url)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    h.check(code in (0, 3) and len(lines) + err.count("job_terminal") == 2,
            "cancel of several prints one job per line", out + err)

    # A job whose deadline passes fails (deadline_exceeded): exit 1.
    doomed = h.write_json(tmp, "doomed.json", dict(h.SLOW, timeout_ms=200))
    code, out, err = cli(["submit", "--wait", "--timeout", "120", doomed],
                         url)
    h.check(code == 1 and "failed" in err,
            "submit --wait on a job that fails exits 1", out + err)

    code, _, err = cli(["delete", finished_id], url)
    h.check(code == 0, "delete of a finished job exits 0", err)
    code, _, err = cli(["get", finished_id], url)
    h.check(code == 6, "a deleted job is gone (exit 6)", err)


def test_retry_after_429(tmp):
    d = h.Daemon("--max-queue", "1", host_workers=1, store=False)
    if not h.check(d.try_start(), "a daemon with --max-queue 1 starts"):
        return
    url = d.url
    try:
        slow = h.write_json(tmp, "slow429.json", h.SLOW)
        accepted, full = [], False
        for _ in range(4):
            code, out, err = cli(["submit", "--retries", "0", slow], url)
            ids = out.split()
            if code == 0:
                accepted += ids
                continue
            full = code == 4 and "queue_full" in err
            break
        # A 429 can also come from a job a worker has just taken but whose
        # start the loop has not seen yet: settle, and refill if needed.
        for _ in range(10):
            time.sleep(0.5)
            code, out, err = cli(["submit", "--retries", "0", slow], url)
            if code == 0:
                accepted += out.split()
                continue
            full = code == 4 and "queue_full" in err
            break
        h.check(full and accepted,
                "a full queue: 429 queue_full, exit 4 (after %d accepted)"
                % len(accepted), err)
        code, _, err = cli(["submit", "--retries", "0", slow], url)
        h.check(code == 4 and "429" in err and "retrying" not in err,
                "--retries 0 does not retry a 429", err)

        # Retries in the background; free the queue once it has retried.
        small = h.write_json(tmp, "small429.json", h.SMALL)
        env = dict(os.environ, ARCHEVAL_SERVER=url)
        errlog = os.path.join(tmp, "retry.err")
        with open(errlog, "w") as errf:
            proc = subprocess.Popen([h.CLI, "submit", "--retries", "30",
                                     small], env=env,
                                    stdout=subprocess.PIPE, stderr=errf,
                                    text=True)
        deadline = time.monotonic() + 30
        retried = False
        while time.monotonic() < deadline and proc.poll() is None:
            with open(errlog) as f:
                if "answered 429; retrying" in f.read():
                    retried = True
                    break
            time.sleep(0.1)
        h.check(retried, "the CLI retries after a 429 with Retry-After")
        for job_id in accepted:
            cli(["cancel", job_id], url)
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        with open(errlog) as f:
            err = f.read()
        h.check(proc.returncode == 0 and ID_RE.match(out.strip() or "-"),
                "the retried submission is accepted once there is room",
                "exit %s, out %r, err %s" % (proc.returncode, out, err))
    finally:
        status = d.stop()
        h.check(status == 0, "the --max-queue 1 daemon exits 0 on SIGTERM",
                d.log_tail())
        d.cleanup()


MLP_REQ = {"architecture": {"type": "mlp_dag", "dag": "2_21_112",
                            "width": 16},
           "data": {"batch_size": 6, "input_shape": [12]},
           "settings": {"linear_regions": {"samples": 100, "repeats": 1},
                        "curvature": {"points": 16, "repeats": 1}},
           "metrics": ["convergence"]}


def test_profile_flags(d, tmp):
    """score --profile/--metrics replace each request's selection; a
    profile renders exactly its metrics; the daemon takes "profile"."""
    path = os.path.join(tmp, "sel.json")
    with open(path, "w") as f:
        json.dump([MLP_REQ, dict(MLP_REQ, profile="all")], f)
    code, out, err = cli(["score", "--help"])
    h.check(code == 0 and "--profile P" in out and "--metrics LIST" in out,
            "score --help documents --profile and --metrics", out)
    code, out, err = cli(["score", "--profile", "fast", path])
    lines = [json.loads(x) for x in out.splitlines()]
    h.check(code == 0 and len(lines) == 2, "score --profile fast", err)
    for res in (x.get("result", {}) for x in lines):
        h.check(sorted(res.get("expressivity", {})) ==
                ["activation_patterns", "activation_patterns_saturated",
                 "activation_patterns_units"] and
                sorted(res.get("convergence", {})) ==
                ["feature_corr_lambda_min", "feature_corr_lambda_min_mean"]
                and "generalization" not in res and "proxies" not in res
                and res.get("topology", {}).get("macs") ==
                res.get("topology", {}).get("flops", 0) / 2,
                "fast: topology and the two fast components only, no NTK",
                json.dumps(res)[:600])
    code, out, err = cli(["score", "--profile", "fast", "--metrics",
                          "expressivity.curvature,generalization", path])
    res = json.loads(out.splitlines()[0]).get("result", {}) if out else {}
    h.check(code == 0 and "curvature" in res.get("expressivity", {}) and
            "linear_regions" not in res.get("expressivity", {}) and
            "kernel_complexity" in res.get("generalization", {}) and
            "ntk_lambda_min" not in res.get("convergence", {}),
            "--profile and --metrics combine as a union", out[:600] + err)
    code, out, err = cli(["score", "--metrics", "topology.params", path])
    res = json.loads(out.splitlines()[1]).get("result", {}) if out else {}
    h.check(code == 0 and sorted(res) == ["provenance", "topology",
                                          "warnings"]
            and sorted(res["topology"]) == ["params"],
            "--metrics alone replaces the request's profile", out[:600])
    code, _, err = cli(["score", "--profile", "quick", path])
    h.check(code == 2 and "fast, rank, full or all" in err,
            "a bad --profile exits 2 naming the profiles", err)
    code, _, err = cli(["score", "--metrics", "topology,convergence.x", path])
    h.check(code == 2 and "convergence.x" in err,
            "a bad --metrics name exits 2 naming it", err)
    bad = os.path.join(tmp, "badprofile.json")
    with open(bad, "w") as f:
        json.dump(dict(MLP_REQ, profile="quick"), f)
    code, _, err = cli(["score", bad])
    h.check(code == 3 and "/profile" in err, "a bad profile in a request is "
            "a 422 naming /profile", err)
    fast = os.path.join(tmp, "fast.json")
    with open(fast, "w") as f:
        json.dump(dict(MLP_REQ, profile="fast", metrics=["topology.flops"]),
                  f)
    code, ids, err = submit_ids(fast, d.url)
    if ids:
        code, _, err = cli(["wait"] + ids, d.url)
    h.check(code == 0 and len(ids) == 1, "submit a fast-profile job and wait",
            err)
    code, out, err = cli(["get"] + ids[:1], d.url)
    job = json.loads(out) if code == 0 and out.strip().startswith("{") \
        else {}
    req = job.get("request", {})
    res = job.get("result", {})
    h.check(req.get("profile") == "fast" and
            "topology.macs" in req.get("metrics", []) and
            "convergence.ntk_lambda_min" not in req.get("metrics", []),
            "the normalised request shows the profile and the metric list",
            json.dumps(req)[:600])
    h.check("ntk_lambda_min" not in res.get("convergence", {}),
            "the daemon computes no NTK for fast", json.dumps(res)[:600])


def main():
    h.require_daemon()
    if not os.access(h.CLI, os.X_OK):
        h.check(False, "the CLI exists at %s" % h.CLI)
        h.finish()
    tmp = tempfile.mkdtemp(prefix="ae-test-cli-")
    d = h.Daemon("--max-body-bytes", "65536", store=False)
    if not h.check(d.try_start(), "archevald starts and becomes ready",
                   d.log_tail()):
        h.finish()
    try:
        job_id = h.section(test_basics, d, tmp) or "j_missing"
        h.section(test_batch_and_list, d, tmp)
        h.section(test_idempotency, d, tmp)
        h.section(test_errors, d, tmp)
        h.section(test_issue17, d, tmp)
        h.section(test_profile_flags, d, tmp)
        h.section(test_cancel_delete_timeout, d, tmp, job_id)
    finally:
        status = d.stop()
        h.check(status == 0, "archevald exits 0 on SIGTERM", d.log_tail())
        d.cleanup()
    h.section(test_retry_after_429, tmp)
    h.finish()


if __name__ == "__main__":
    main()
