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
listens.  A second daemon with --max-queue 1 and one worker shows QueueFull
with retries=0 and the retry after 429 (it succeeds once the queue has
room).  Also checks the package's pyproject.toml.  Prints "N passed, M
failed"; exit 77 when the daemon binary does not exist.  The main thread
drives everything; one helper thread submits during the 429 test.
"""

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


def main():
    h.require_daemon()
    h.section(test_pyproject)
    d = h.Daemon("--max-body-bytes", "65536", store=False)
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
        h.section(test_cancel_fail_timeout, client)
    finally:
        status = d.stop()
        h.check(status == 0, "archevald exits 0 on SIGTERM", d.log_tail())
        d.cleanup()
    h.section(test_queue_full)
    h.finish()


if __name__ == "__main__":
    main()
