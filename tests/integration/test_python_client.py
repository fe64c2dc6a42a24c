#!/usr/bin/env python3
"""test_python_client.py: the archeval_client package against a real
archevald.

Starts archevald (host backend, 2 workers, --max-body-bytes 65536) on a free
loopback port and exercises Client and Job: submit / submit_request /
submit_batch, get, Job.wait (long poll) and Job.result, Job.cancel, cancel,
delete, list across pages (page_size 2) and by state, the automatic
Idempotency-Key (an explicit key gives the same job twice), and every typed
error with its status, code, problem and field errors: InvalidJSON 400,
BodyTooLarge 413, InvalidRequest 422, NotFound 404, Conflict 409,
JobFailed, JobCancelled, WaitTimeout, and Unavailable when nothing
listens.  Issue 17: a 13 MB body raises BodyTooLarge at once (checked
against GET /v1's limits before sending; without them the server's own 413
arrives before the upload through Expect: 100-continue; with stale limits
and no Expect the reset is still BodyTooLarge, never retried); submit_batch
splits over --max-batch 4 (each chunk idempotent, pointers over the whole
list); list(client_ref=...) filters on the server; wait_all(progress=True)
prints the rate and the time left; a NaN/Infinity from json.dumps gets a
400 naming its field; a graph whose output width contradicts the data's
classes gets a 422 at /architecture/output.  A second daemon with --max-queue 1 and one worker shows QueueFull
with retries=0 and the retry after 429 (it succeeds once the queue has
room).  Issue 12's as_graph=: submit({"type": "onnx", ...}, as_graph=True)
and submit_model(path, as_graph=True) on the committed eval-mode NB-201
export (nb201/eval_all_skip.onnx) send "as_graph": true and get the
imported graph's scorecard (the folded params, no note), without it the
native nb201 request's (the note); as_graph=True with another architecture
is a ValueError before anything is sent; with torch, submit_torch(...,
as_graph=True) on a small NB-201 module likewise (skipped without torch).
Also checks the package's pyproject.toml.  Prints "N passed, M
failed"; exit 77 when the daemon binary does not exist.  The main thread
drives everything; one helper thread submits during the 429 test.
"""

import io
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

sys.path.insert(0, h.PYTHON_CLIENT_DIR)
import archeval_client as ac  # noqa: E402


def expect_error(cls, fn, what, status=None, code=None):
    """Checks that fn() raises cls (with status and code); returns it."""
    try:
        fn()
    except ac.ArchevalError as err:
        ok = isinstance(err, cls) and (status is None or
                                       err.status == status) and \
            (code is None or err.code == code)
        h.check(ok, what, "%s status=%s code=%s: %s"
                % (type(err).__name__, err.status, err.code, err))
        return err
    h.check(False, what, "no error raised")
    return None


def test_pyproject():
    path = os.path.join(h.PYTHON_CLIENT_DIR, "pyproject.toml")
    try:
        import tomllib
    except ImportError:
        h.log("tomllib missing (Python < 3.11): pyproject not parsed")
        return
    with open(path, "rb") as f:
        meta = tomllib.load(f)
    project = meta.get("project", {})
    h.check(project.get("dependencies") == [] and
            meta["build-system"]["build-backend"] == "setuptools.build_meta"
            and "archeval_client" in meta["tool"]["setuptools"]["packages"],
            "pyproject.toml: setuptools, no dependencies, the package")


def test_jobs(client):
    job = client.submit(h.SMALL["architecture"], data=h.SMALL["data"],
                        seed=h.SMALL["seed"], metrics=h.SMALL["metrics"],
                        client_ref="py-1")
    h.check(isinstance(job, ac.Job) and job.id and
            job.state in ("queued", "running", "succeeded"),
            "submit returns a Job (%s)" % job)
    result = job.wait(timeout=300)
    h.check(job.state == "succeeded" and result is job.result and
            "convergence" in result and "topology" in result,
            "Job.wait long-polls to the result")
    h.check(job.data.get("client_ref") == "py-1",
            "client_ref is echoed back")
    again = client.get(job.id)
    h.check(again.id == job.id and again.result == job.result,
            "get returns the same job and result")

    # The same request and seed: the bit-identical result.
    twin = client.submit_request(dict(h.SMALL)).wait(timeout=300)
    t1 = dict(result.get("topology", {}))
    t2 = dict(twin.get("topology", {}))
    h.check(t1 == t2 and result.get("convergence") ==
            twin.get("convergence"),
            "the same request + seed gives the same scores")

    jobs = client.submit_batch([dict(h.SMALL, seed=50 + i,
                                     client_ref="py-batch-%d" % i)
                                for i in range(3)])
    h.check(len(jobs) == 3 and len({j.id for j in jobs}) == 3,
            "submit_batch returns one Job per request, in order")
    client.wait_all(jobs, timeout=300)
    h.check(all(j.state == "succeeded" for j in jobs) and
            [j.data.get("client_ref") for j in jobs] ==
            ["py-batch-0", "py-batch-1", "py-batch-2"],
            "wait_all: the batch succeeded, in order")

    listed = list(client.list(page_size=2))
    ids = [j.id for j in listed]
    h.check(len(ids) == len(set(ids)) and
            {job.id, jobs[0].id, jobs[2].id} <= set(ids) and len(ids) >= 5,
            "list iterates across pages of 2 (%d jobs)" % len(ids))
    succeeded = list(client.list(state="succeeded"))
    h.check(succeeded and all(j.state == "succeeded" for j in succeeded),
            "list(state='succeeded') filters")

    key = "py-key-%d" % os.getpid()
    a = client.submit_request(dict(h.SMALL, seed=60), idempotency_key=key)
    b = client.submit_request(dict(h.SMALL, seed=60), idempotency_key=key)
    h.check(a.id == b.id, "the same Idempotency-Key and body: one job")
    expect_error(ac.InvalidRequest,
                 lambda: client.submit_request(dict(h.SMALL, seed=61),
                                               idempotency_key=key),
                 "the same key with another body: InvalidRequest "
                 "idempotency_key_mismatch", 422,
                 "idempotency_key_mismatch")
    c = client.submit_request(dict(h.SMALL, seed=60))
    h.check(c.id != a.id, "without a key each submit is a new job")

    client.delete(job.id)
    expect_error(ac.NotFound, lambda: client.get(job.id),
                 "a deleted job: NotFound", 404, "not_found")
    return jobs[0]


def test_errors(client, finished):
    err = expect_error(ac.InvalidRequest,
                       lambda: client.submit({"type": "nb201",
                                              "cell": "|conv_9x9~0|"}),
                       "a bad cell: InvalidRequest 422", 422,
                       "invalid_request")
    h.check(err is not None and err.errors and
            any(e.get("pointer", "").startswith("/architecture")
                for e in err.errors) and err.problem.get("status") == 422,
            ".errors points into /architecture; .problem is the problem")
    err = expect_error(ac.InvalidRequest,
                       lambda: client.submit_request(dict(h.SMALL,
                                                          colour="red")),
                       "an unknown key: InvalidRequest", 422)
    h.check(err is not None and any(e.get("pointer") == "/colour"
                                    for e in err.errors),
            "the unknown key's pointer is /colour")
    err = expect_error(ac.InvalidRequest,
                       lambda: client.submit_batch([h.SMALL,
                                                    dict(h.SMALL, x=1)]),
                       "a bad batch item: InvalidRequest", 422)
    h.check(err is not None and any(e.get("pointer", "").startswith(
        "/jobs/1") for e in err.errors), "batch errors point at /jobs/1")
    with_typo = []
    try:
        client.submit(h.SMALL["architecture"], sed=3)
    except TypeError:
        with_typo.append(1)
    h.check(with_typo, "submit(**settings) rejects an unknown setting")
    expect_error(ac.BodyTooLarge,
                 lambda: client.submit_request(dict(h.SMALL,
                                                    client_ref="x" * 100000)),
                 "a body over --max-body-bytes: BodyTooLarge", 413,
                 "body_too_large")
    expect_error(ac.InvalidJSON,
                 lambda: client.request("POST", "/v1/jobs",
                                        b'{"architecture": '),
                 "unparsable JSON: InvalidJSON", 400, "invalid_json")
    expect_error(ac.NotFound, lambda: client.get("j_doesnotexist"),
                 "an unknown job: NotFound", 404, "not_found")
    expect_error(ac.NotFound, lambda: client.cancel("j_doesnotexist"),
                 "cancel of an unknown job: NotFound", 404)
    expect_error(ac.Conflict, lambda: finished.cancel(),
                 "cancel of a succeeded job: Conflict job_terminal", 409,
                 "job_terminal")
    nobody = ac.Client("http://127.0.0.1:%d" % h.free_port(), retries=1,
                       timeout=5)
    err = expect_error(ac.Unavailable, nobody.info,
                       "nothing listening: Unavailable after the retries")
    h.check(err is not None and err.status is None and
            nobody.retries_done == 1,
            "connection errors are retried (retries=1)")
    h.check(issubclass(ac.QueueFull, ac.ArchevalError) and
            issubclass(ac.JobFailed, ac.ArchevalError),
            "every error derives from ArchevalError")


BIG_BODY_BYTES = 13 << 20  # the 13 MB of issue 17


def test_large_bodies(client, url):
    big = dict(h.SMALL, client_ref="x" * BIG_BODY_BYTES)
    h.check(client.limits().get("max_body_bytes") == 65536,
            "Client.limits() reads GET /v1's limits")

    def timed(who, what):
        before = who.retries_done
        t0 = time.monotonic()
        err = expect_error(ac.BodyTooLarge, lambda: who.submit_request(big),
                           what, 413, "body_too_large")
        elapsed = time.monotonic() - t0
        h.check(err is not None and elapsed < 10 and
                who.retries_done == before,
                "... at once (%.2f s) and without retries" % elapsed)
        return err

    err = timed(client, "a 13 MB body: BodyTooLarge, checked before sending")
    h.check(err is not None and "not sent" in str(err) and
            err.problem.get("status") == 413,
            "the problem says the body was not sent", err)
    # Without the limits the server answers 413 to the headers alone.
    blind = ac.Client(url, retries=5)
    blind.limits = lambda refresh=False: {}
    err = timed(blind, "without the limits: the server's 413 before the "
                "upload (Expect: 100-continue)")
    h.check(err is not None and "65536" in str(err) and
            "not sent" not in str(err), "the 413 is the server's own", err)
    # A large body within the limits goes after the server's 100 Continue.
    inline = {"architecture": {"type": "mlp_dag", "dag": "2", "width": 8},
              "data": {"inputs": [[(i * 7919 % 1000) / 997.0 + k
                                   for i in range(600)] for k in range(2)]},
              "metrics": ["topology"]}
    size = len(json.dumps(inline))
    job = client.submit_request(inline)
    h.check(ac.client.LARGE_BODY_BYTES <= size < 65536 and
            job.wait(timeout=300)["topology"]["params"] > 0,
            "a %d-byte body within the limits is sent and scored" % size)
    # Stale limits and no Expect: the body is sent, the server refuses it
    # (a reset, or its 413), and the client reports the 413.
    stale = ac.Client(url, retries=5)
    stale.limits()
    stale._limits = dict(stale._limits, max_body_bytes=1 << 40)
    stale.expect_continue = False
    timed(stale, "stale limits, no Expect: BodyTooLarge, not Unavailable")


def test_progress_line():
    class FakeJob:
        def __init__(self, state):
            self.state = state

        @property
        def done(self):
            return self.state in ("succeeded", "failed", "cancelled")

    out = io.StringIO()
    meter = ac.client._Progress(4, out)
    jobs = [FakeJob("succeeded"), FakeJob("queued"), FakeJob("running"),
            FakeJob("queued")]
    meter.update(jobs, changed=True)
    meter.started -= 10.0  # the first sweep was 10 s ago
    jobs[1].state, jobs[2].state = "succeeded", "failed"
    meter.update(jobs, changed=True)
    jobs[3].state = "cancelled"
    meter.update(jobs, changed=True)
    lines = out.getvalue().splitlines()
    h.check(lines[0] == "1/4 finished (1 succeeded, 0 failed)",
            "the first sweep's line has no rate", lines)
    h.check(lines[1] == "3/4 finished (2 succeeded, 1 failed); 0.2 jobs/s, "
            "about 5 s left",
            "the rate counts jobs finished after the first sweep; the time "
            "left follows", lines)
    h.check(len(lines) == 3 and lines[2].startswith(
        "4/4 finished (2 succeeded, 1 failed, 1 cancelled); ") and
        "left" not in lines[2], "the last line: no time left", lines)


def test_batches_and_filters(client):
    h.check(client.limits().get("max_batch") == 4,
            "the daemon advertises max_batch 4")
    requests = [dict(h.SMALL, seed=300 + i, client_ref="py-split-%d" % i)
                for i in range(10)]
    key = "py-split-%d" % os.getpid()
    jobs = client.submit_batch(requests, idempotency_key=key)
    h.check([j.data.get("client_ref") for j in jobs] ==
            [r["client_ref"] for r in requests] and
            len({j.id for j in jobs}) == 10,
            "submit_batch of 10 over max_batch 4: 10 jobs, in order")
    again = client.submit_batch(requests, idempotency_key=key)
    h.check([j.id for j in again] == [j.id for j in jobs],
            "the same key again: the same jobs (each chunk idempotent)")
    bad = requests[:9] + [dict(h.SMALL, bogus=1)]
    err = expect_error(ac.InvalidRequest, lambda: client.submit_batch(bad),
                       "a bad item in the third chunk: InvalidRequest", 422)
    h.check(err is not None and
            any(e.get("pointer", "").startswith("/jobs/9/") for e in
                err.errors) and "/jobs/9/" in str(err) and
            len(getattr(err, "submitted", [])) == 8,
            "its pointer counts over the whole list (/jobs/9); .submitted "
            "holds the 8 jobs of the chunks before", err)

    out = io.StringIO()
    client.wait_all(jobs, timeout=300, progress=True, stream=out)
    lines = out.getvalue().splitlines()
    h.check(lines and lines[-1].startswith(
        "10/10 finished (10 succeeded, 0 failed)"),
        "wait_all(progress=True) ends with 10/10 finished", lines)
    h.check(len(lines) == 1 or any("jobs/s" in line for line in lines[1:]),
            "after the first sweep the lines carry jobs/s", lines)

    # Needs the server's ?client_ref= filter (branch server).
    listed = [j.id for j in client.list(client_ref="py-split-9")]
    h.check(listed == [jobs[9].id],
            "list(client_ref=...) lists only that client_ref's job", listed)
    listed = list(client.list(client_ref="py-split-0", page_size=1))
    h.check(len(listed) == 2 and all(j.data.get("client_ref") ==
                                     "py-split-0" for j in listed),
            "... across pages (two jobs: the batch and the bad batch's)",
            [j.id for j in listed])


def test_parser_answers(client):
    err = expect_error(
        ac.InvalidJSON,
        lambda: client.submit_request(dict(h.SMALL,
                                           settings={"eta": float("inf")})),
        "json.dumps's Infinity: InvalidJSON 400", 400, "invalid_json")
    h.check(err is not None and
            [e.get("pointer") for e in err.errors] == ["/settings/eta"] and
            "JSON has no NaN or Infinity" in str(err),
            "... naming /settings/eta; JSON has no NaN or Infinity", err)
    err = expect_error(
        ac.InvalidJSON,
        lambda: client.request("POST", "/v1/jobs:batch", (
            '{"jobs": [{"architecture": {"type": "mlp_dag", "dag": "2"}}, '
            '{"architecture": {"type": "mlp_dag", "dag": "2"}, '
            '"data": {"inputs": [[1, NaN], [2, 3]]}}]}').encode()),
        "a NaN in a batch: InvalidJSON 400", 400, "invalid_json")
    h.check(err is not None and [e.get("pointer") for e in err.errors] ==
            ["/jobs/1/data/inputs/0/1"], "... naming /jobs/1/data/inputs/0/1",
            err)
    graph = {"type": "graph", "output": "fc", "nodes": [
        {"id": "f", "op": "flatten", "inputs": ["input"]},
        {"id": "fc", "op": "linear", "inputs": ["f"], "out": 5}]}
    err = expect_error(
        ac.InvalidRequest,
        lambda: client.submit(graph, data={"input_shape": [4],
                                           "num_classes": 10}),
        "a 5-unit output against num_classes 10: InvalidRequest", 422)
    h.check(err is not None and [e.get("pointer") for e in err.errors] ==
            ["/architecture/output"] and "5 units" in str(err),
            "... at /architecture/output, with the width", err)
    job = client.submit(graph, data={"input_shape": [4], "batch_size": 8},
                        metrics=["topology"])
    h.check(job.data["request"]["data"]["num_classes"] == 5,
            "synthetic data without num_classes follows the output's width")
    job.wait(timeout=300)


def test_profiles(client):
    """profile= and metrics= reach the request; the job renders exactly
    the selection; bad names are refused."""
    mlp = {"type": "mlp_dag", "dag": "2_21_112", "width": 16}
    data = {"batch_size": 6, "input_shape": [12]}
    job = client.submit(mlp, data=data, profile="fast",
                        metrics="topology.params, expressivity.curvature")
    req = job.data["request"]
    h.check(req.get("profile") == "fast" and
            "expressivity.curvature" in req.get("metrics", []) and
            "convergence.feature_corr_lambda_min" in req.get("metrics", []),
            "profile= and a comma-separated metrics= make a union",
            json.dumps(req)[:400])
    result = job.wait(timeout=300)
    h.check("curvature" in result.get("expressivity", {}) and
            "ntk_lambda_min" not in result.get("convergence", {}) and
            "linear_regions" not in result.get("expressivity", {}),
            "the result holds the selection and nothing else",
            json.dumps(result)[:400])
    try:
        client.submit(mlp, data=data, profile="quick")
        h.check(False, "profile='quick' raises ValueError")
    except ValueError as err:
        h.check("fast, rank, full, all" in str(err),
                "profile='quick' raises ValueError naming the profiles")
    err = expect_error(
        ac.InvalidRequest,
        lambda: client.submit(mlp, data=data, metrics=["topology",
                                                       "convergence.nope"]),
        "an unknown metric: InvalidRequest", 422)
    h.check(err is not None and [e.get("pointer") for e in err.errors] ==
            ["/metrics/1"], "... pointing at /metrics/1", err)


def test_cancel_fail_timeout(client):
    # Two blockers keep both workers busy, so this job is queued (or just
    # started) for a few seconds even on a fast machine.
    blockers = [client.submit_request(dict(h.SLOW, seed=s))
                for s in (201, 202)]
    slow = client.submit_request(dict(h.SLOW, seed=203))
    t0 = time.monotonic()
    expect_error(ac.WaitTimeout, lambda: slow.wait(timeout=0.5),
                 "Job.wait(timeout=0.5) on a slow job: WaitTimeout")
    h.check(time.monotonic() - t0 < 10, "WaitTimeout comes on time")
    expect_error(ac.Conflict, lambda: client.delete(slow.id),
                 "delete of an unfinished job: Conflict job_not_terminal",
                 409, "job_not_terminal")
    slow.cancel()
    h.check(slow.state == "cancelled" or
            slow.data.get("cancel_requested") is True,
            "Job.cancel: cancelled or cancel_requested")
    err = expect_error(ac.JobCancelled, lambda: slow.wait(timeout=120),
                       "Job.wait on a cancelled job: JobCancelled")
    h.check(err is not None and err.job.get("state") == "cancelled",
            "JobCancelled carries the job")
    h.check(slow.wait(timeout=1, raise_on_failure=False) is None,
            "raise_on_failure=False returns None")

    for job in blockers:
        try:
            job.cancel()
        except ac.Conflict:
            pass  # it had finished
    doomed = client.submit_request(dict(h.SLOW, timeout_ms=200))
    err = expect_error(ac.JobFailed, lambda: doomed.wait(timeout=120),
                       "a job past its timeout_ms: JobFailed")
    h.check(err is not None and err.code == "deadline_exceeded" and
            err.job.get("state") == "failed",
            "JobFailed carries the job's problem (deadline_exceeded)",
            err and err.problem)


def test_queue_full():
    d = h.Daemon("--max-queue", "1", host_workers=1, store=False)
    if not h.check(d.try_start(), "a daemon with --max-queue 1 starts"):
        return
    try:
        strict = ac.Client(d.url, retries=0)
        accepted, full = [], None
        for _ in range(4):
            try:
                accepted.append(strict.submit_request(dict(h.SLOW)))
            except ac.QueueFull as err:
                full = err
                break
        # A 429 can also come from a job a worker has just taken but whose
        # start the loop has not seen yet; count the queue as full only if
        # it still is once the workers have settled.
        for _ in range(10):
            time.sleep(0.5)
            try:
                accepted.append(strict.submit_request(dict(h.SLOW)))
            except ac.QueueFull as err:
                full = err
                break
        h.check(full is not None and full.status == 429 and
                full.code == "queue_full" and accepted,
                "a full queue with retries=0: QueueFull 429 queue_full")

        patient = ac.Client(d.url, retries=30, retry_max_wait=2)
        outcome = {}

        def submit_in_background():
            try:
                outcome["job"] = patient.submit_request(dict(h.SMALL))
            except ac.ArchevalError as err:
                outcome["error"] = err

        worker = threading.Thread(target=submit_in_background)
        worker.start()
        deadline = time.monotonic() + 30
        while patient.retries_done == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        h.check(patient.retries_done > 0,
                "the client retries a 429 after Retry-After")
        for job in accepted:
            try:
                job.cancel()
            except ac.Conflict:
                pass
        worker.join(timeout=180)
        h.check("job" in outcome,
                "the retried POST is accepted once there is room",
                outcome.get("error"))
        if "job" in outcome:
            h.check(outcome["job"].wait(timeout=300) is not None,
                    "and its job succeeds")
    finally:
        status = d.stop()
        h.check(status == 0, "the --max-queue 1 daemon exits 0 on SIGTERM",
                d.log_tail())
        d.cleanup()


def test_service(client):
    h.check(client.ready(), "Client.ready() is true")
    info = client.info()
    h.check(info.get("api") == "v1", "Client.info() is GET /v1")
    h.check(any(s.get("name") == "synthetic" for s in client.datasets()),
            "Client.datasets() lists synthetic")


def test_as_graph(client):
    onnx_dir = os.path.join(h.SRCDIR, "tests", "data", "onnx")
    with open(os.path.join(onnx_dir, "nb201", "manifest.json")) as f:
        e = json.load(f)["eval_all_skip"]
    path = os.path.join(onnx_dir, "nb201", "eval_all_skip.onnx")
    model_id = client.upload_model(path)["id"]
    fast = {"profile": "fast", "seed": 4, "data": {"batch_size": 8}}

    def run(job):
        result = job.wait(timeout=300)
        return client.get(job.id).data["request"]["architecture"], result

    def notes(result):
        return [w for w in result["warnings"]
                if w.startswith("architecture: model ")]

    def same(a, b):
        return ({k: v for k, v in a.items() if k != "provenance"} ==
                {k: v for k, v in b.items() if k != "provenance"})

    arch, native = run(client.submit({"type": "onnx", "model": model_id},
                                     **fast))
    h.check(arch == {"type": "onnx", "model": model_id} and
            native["topology"]["params"] == e["params"] and
            len(notes(native)) == 1 and "eval mode" in notes(native)[0],
            "submit(onnx model): scored as the native nb201 request",
            (arch, native.get("warnings")))
    arch, graph = run(client.submit({"type": "onnx", "model": model_id},
                                    as_graph=True, **fast))
    h.check(arch == {"type": "onnx", "model": model_id, "as_graph": True} and
            graph["topology"]["params"] == e["graph_params"] and
            notes(graph) == [],
            "submit(..., as_graph=True): the imported graph's scorecard",
            (arch, graph["topology"], graph["warnings"]))
    arch, again = run(client.submit_model(path, as_graph=True, **fast))
    h.check(arch == {"type": "onnx", "model": model_id, "as_graph": True} and
            same(again, graph),
            "submit_model(path, as_graph=True): the same", arch)
    arch, plain = run(client.submit_model(path, **fast))
    h.check(arch == {"type": "onnx", "model": model_id} and
            same(plain, native),
            "submit_model(path): the native scorecard",
            arch)
    try:
        client.submit({"type": "mlp_dag", "dag": "2_21_112"}, as_graph=True)
        h.check(False, "as_graph=True with another architecture: "
                "ValueError", "nothing raised")
    except ValueError as err:
        h.check("onnx" in str(err), "as_graph=True with another "
                "architecture: ValueError", err)
    try:
        import torch  # noqa: PLC0415 - optional
        sys.path.insert(0, onnx_dir)
        import export_models as em  # noqa: PLC0415
    except Exception as err:  # noqa: BLE001 - any import failure: skip
        h.log("skipped: submit_torch(as_graph=True) (torch cannot be "
              "imported: %s)" % err)
        return
    torch.manual_seed(0)
    net = em.NB201Net(em.NB201_CELL, 4, 1, 10)
    params = sum(p.numel() for p in net.parameters())
    job = client.submit_torch(net, (3, 16, 16), as_graph=True, **fast)
    arch, graph = run(job)
    h.check(arch.get("as_graph") is True and notes(graph) == [] and
            graph["topology"]["params"] == params,
            "submit_torch(..., as_graph=True): the imported graph, "
            "PyTorch's params, no note", (arch, graph["warnings"]))
    arch, native = run(client.submit_torch(net, (3, 16, 16), **fast))
    h.check("as_graph" not in arch and len(notes(native)) == 1 and
            native["topology"]["params"] == params,
            "submit_torch(...): scored as the native nb201 request",
            (arch, native["warnings"]))


def main():
    h.require_daemon()
    h.section(test_pyproject)
    d = h.Daemon("--max-body-bytes", "65536", "--max-batch", "4",
                 store=False)
    if not h.check(d.try_start(), "archevald starts and becomes ready",
                   d.log_tail()):
        h.finish()
    try:
        os.environ["ARCHEVAL_SERVER"] = d.url
        client = ac.Client()
        h.check(client.url == d.url, "Client() reads $ARCHEVAL_SERVER")
        h.section(test_service, client)
        finished = h.section(test_jobs, client)
        h.section(test_errors, client, finished)
        h.section(test_large_bodies, client, d.url)
        h.section(test_progress_line)
        h.section(test_batches_and_filters, client)
        h.section(test_parser_answers, client)
        h.section(test_profiles, client)
        h.section(test_cancel_fail_timeout, client)
        h.section(test_as_graph, client)
    finally:
        status = d.stop()
        h.check(status == 0, "archevald exits 0 on SIGTERM", d.log_tail())
        d.cleanup()
    h.section(test_queue_full)
    h.finish()


if __name__ == "__main__":
    main()
