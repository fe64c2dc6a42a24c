"""The archeval HTTP client (standard library only).

Client talks to one archevald (api.md) over http.client, one connection
per request, directly (no HTTP proxy); Job is a handle on one job resource.
Every POST carries an Idempotency-Key (a uuid4 unless given), so retrying a
POST never creates a second job.  429 and 503 answers are retried after
their Retry-After, connection errors after an exponential back-off, at most
`retries` times; then the typed error of errors.py is raised.

Large bodies: the server's advertised limits (GET /v1 "limits", fetched
once and cached) are checked before a body of LARGE_BODY_BYTES or more is
sent, so an oversized one raises BodyTooLarge (413 body_too_large) without
an upload; such a body is sent with "Expect: 100-continue" over plain HTTP,
so a server that refuses it answers before the upload; and a connection
reset while a body is sent is looked up against fresh limits: an oversized
body is the 413 it is, not a connection problem to retry.  submit_batch
splits a batch over limits.max_batch.

A Client may be used from several threads (the cached limits are the only
state it keeps); a Job is a plain snapshot refreshed by its methods.
"""

import email.utils
import hashlib
import http.client
import json
import os
import select
import socket
import sys
import time
import urllib.parse
import uuid

from .errors import (ArchevalError, BodyTooLarge, JobCancelled, JobFailed,
                     Unavailable, WaitTimeout, error_for)
from .study import Study, study_body

DEFAULT_SERVER = "http://127.0.0.1:8000"
LONG_POLL_MAX_MS = 30000
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
REQUEST_FIELDS = ("data", "seed", "profile", "metrics", "settings",
                  "priority", "timeout_ms", "client_ref")
PROFILES = ("fast", "rank", "full", "all")
# Bodies this large are checked against the server's limits and sent only
# after the server agreed (Expect: 100-continue).
LARGE_BODY_BYTES = 8192
# How long to wait for "100 Continue" before sending the body anyway (a
# server or proxy that ignores Expect).
CONTINUE_WAIT_S = 3.0
PROBLEM_TYPE_BASE = "https://archeval.dev/problems/"


class Job:
    """A snapshot of one job resource, with methods that refresh it.

    Attributes: id, data (the last job resource seen, a dict); properties
    state, result, error, done.
    """

    def __init__(self, client, data):
        self.client = client
        self.data = dict(data)
        self.id = self.data["id"]

    def __repr__(self):
        return "Job(%r, state=%r)" % (self.id, self.state)

    @property
    def state(self):
        return self.data.get("state")

    @property
    def done(self):
        return self.state in TERMINAL_STATES

    @property
    def result(self):
        """The scorecard (scorecard.md section 2) once succeeded, else None."""
        return self.data.get("result")

    @property
    def error(self):
        """The problem dict of a failed job, else None."""
        return self.data.get("error")

    def refresh(self, wait_ms=0):
        """Fetches the job again; with wait_ms > 0 the server holds the
        answer until the job finishes or wait_ms pass (at most 30000)."""
        self.data = self.client._get_job(self.id, wait_ms)
        return self

    def wait(self, timeout=None, raise_on_failure=True):
        """Long-polls until the job finishes and returns its result.

        timeout: seconds, None for no limit (WaitTimeout when it elapses).
        A failed job raises JobFailed and a cancelled one JobCancelled,
        unless raise_on_failure is false (then None is returned).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            wait_ms = LONG_POLL_MAX_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout("job %s still %s after %.1f s"
                                      % (self.id, self.state, timeout))
                wait_ms = min(wait_ms, max(1, int(left * 1000)))
            self.refresh(wait_ms)
        if raise_on_failure:
            self.raise_for_state()
        return self.result

    def raise_for_state(self):
        """Raises JobFailed / JobCancelled for a job that ended so."""
        if self.state == "failed":
            raise JobFailed("job %s failed" % self.id, self.data)
        if self.state == "cancelled":
            raise JobCancelled("job %s was cancelled" % self.id, self.data)

    def cancel(self):
        """Cancels the job (queued: at once; running: at the worker's next
        checkpoint, cancel_requested true).  Conflict when finished."""
        self.data = self.client._post_cancel(self.id)
        return self

    def delete(self):
        """Deletes the finished job (Conflict while it is not finished)."""
        self.client.delete(self.id)


class Client:
    """A client of one archevald.

    url: the server (default $ARCHEVAL_SERVER, else http://127.0.0.1:8000).
    timeout: seconds per HTTP request (a long poll gets its wait on top).
    retries: how many times 429/503 answers and connection errors are
    retried; retry_max_wait caps one wait, in seconds.
    """

    # Send bodies of LARGE_BODY_BYTES or more with "Expect: 100-continue"
    # (plain HTTP only).
    expect_continue = True

    def __init__(self, url=None, timeout=60.0, retries=5,
                 retry_max_wait=60.0):
        url = url or os.environ.get("ARCHEVAL_SERVER") or DEFAULT_SERVER
        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the server URL must be http(s)://HOST[:PORT], "
                             "not %r" % url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base_path = parts.path.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.retry_max_wait = retry_max_wait
        self.retries_done = 0  # total retries so far, for callers' logs
        self._limits = None  # GET /v1 "limits", once read

    def __repr__(self):
        return "Client(%r)" % self.url

    # -- transport ---------------------------------------------------------

    def _retry_wait(self, headers, attempt):
        value = headers.get("Retry-After") if headers is not None else None
        wait = None
        if value is not None:
            try:
                wait = float(value)
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(value)
                    wait = when.timestamp() - time.time()
                except (TypeError, ValueError):
                    wait = None
        if wait is None:
            wait = min(0.5 * (2 ** attempt), self.retry_max_wait)
        return max(0.0, min(wait, self.retry_max_wait))

    def _connection(self, timeout):
        cls = (http.client.HTTPSConnection if self._https
               else http.client.HTTPConnection)
        return cls(self._host, self._port, timeout=timeout)

    def _exchange(self, method, target, data, headers, timeout):
        """One request on a fresh connection: (status, headers, body
        bytes).  A large body over plain HTTP waits for the server's
        "100 Continue" and is not sent at all when the server answers
        first.  Raises OSError / http.client.HTTPException when the
        connection fails."""
        conn = self._connection(timeout)
        try:
            large = data is not None and len(data) >= LARGE_BODY_BYTES
            if large and self.expect_continue and not self._https:
                conn.putrequest(method, target, skip_accept_encoding=True)
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(data)))
                conn.putheader("Expect", "100-continue")
                conn.endheaders()
                if _await_continue(conn.sock, CONTINUE_WAIT_S):
                    conn.send(data)
            else:
                conn.request(method, target, body=data, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.headers, answer.read()
        finally:
            conn.close()

    def limits(self, refresh=False):
        """The server's advertised limits (the "limits" of GET /v1:
        max_body_bytes, max_batch, ...), read once and cached; {} when the
        server cannot tell (that is not cached)."""
        if self._limits is not None and not refresh:
            return self._limits
        try:
            status, _, payload = self._exchange(
                "GET", self._base_path + "/v1", None,
                {"Accept": "application/json"}, self.timeout)
            info = json.loads(payload) if status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            info = None
        limits = info.get("limits") if isinstance(info, dict) else None
        if not isinstance(limits, dict):
            return {}
        self._limits = limits
        return limits

    def _too_large(self, size, what, after_reset=False,
                   limit_name="max_body_bytes"):
        """BodyTooLarge when a body of size bytes is over the server's
        limit_name (max_body_bytes, or max_model_bytes for an ONNX upload:
        the problem a 413 body_too_large answer carries), else None.
        after_reset: the limits are read again, and the detail says the
        server closed the connection."""
        limit = self.limits(refresh=after_reset).get(limit_name)
        if not isinstance(limit, int) or size <= limit:
            return None
        detail = "The body is %d bytes, over the server's limit of %d bytes " \
                 "(limits.%s); " % (size, limit, limit_name)
        detail += ("the server closed the connection during the upload."
                   if after_reset else "it was not sent.")
        problem = {"type": PROBLEM_TYPE_BASE + "body_too_large",
                   "title": "Body too large", "status": 413,
                   "code": "body_too_large", "detail": detail}
        return error_for(413, problem, what)

    def request(self, method, path, body=None, idempotency_key=None,
                timeout=None, query=None, raw=False,
                content_type="application/json"):
        """Sends one API request (with the retries) and returns the parsed
        JSON answer (None for an empty body), or with raw the body's
        bytes.  body is a JSON value, or
        bytes sent as they are (as content_type).  Raises the typed error of
        errors.py for an error answer; BodyTooLarge, before sending, for
        a body over the server's limits.max_body_bytes (max_model_bytes
        for an ONNX file)."""
        target = self._base_path + path
        if query:
            query = {k: v for k, v in query.items() if v is not None}
            if query:
                target += "?" + urllib.parse.urlencode(query)
        data = None
        headers = {"Accept": "application/json"}
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)  # sent as is (JSON text, or a model)
            headers["Content-Type"] = content_type
        elif body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        what = "%s %s" % (method, path)
        limit_name = ("max_body_bytes" if content_type == "application/json"
                      else "max_model_bytes")
        if data is not None and len(data) >= LARGE_BODY_BYTES:
            refused = self._too_large(len(data), what, limit_name=limit_name)
            if refused:
                raise refused
        attempt = 0
        while True:
            try:
                status, answer_headers, payload = self._exchange(
                    method, target, data, headers, timeout or self.timeout)
            except (OSError, http.client.HTTPException) as err:
                # A server that refuses a body mid-upload closes the
                # connection: with fresh limits, that is the 413 it is.
                if data is not None and len(data) >= LARGE_BODY_BYTES:
                    refused = self._too_large(len(data), what,
                                              after_reset=True,
                                              limit_name=limit_name)
                    if refused:
                        raise refused from None
                if attempt < self.retries:
                    wait = self._retry_wait(None, attempt)
                    attempt += 1
                    self.retries_done += 1
                    time.sleep(wait)
                    continue
                raise Unavailable("%s: no answer from %s: %s"
                                  % (what, self.url, err)) from None
            if 200 <= status < 300:
                if raw:
                    return payload
                return json.loads(payload) if payload.strip() else None
            if status in (429, 503) and attempt < self.retries:
                wait = self._retry_wait(answer_headers, attempt)
                attempt += 1
                self.retries_done += 1
                time.sleep(wait)
                continue
            try:
                problem = json.loads(payload) if payload else {}
            except ValueError:
                problem = {"detail": payload[:300].decode("utf-8",
                                                          "replace")}
            if not isinstance(problem, dict):
                problem = {}
            raise error_for(status, problem, what)

    # -- jobs ---------------------------------------------------------------

    def submit(self, architecture, idempotency_key=None, as_graph=False,
               **settings):
        """Submits one job for `architecture` (scorecard.md 1.1) and returns
        its Job.  settings: data, seed, profile, metrics, settings,
        priority, timeout_ms, client_ref (api.md).  profile: "fast",
        "rank", "full" or "all"; metrics: group names or "group.field"
        metric names, a list or one comma-separated string; the job
        computes the union of both (neither: "full").  as_graph=True, for
        an uploaded model ({"type": "onnx", ...}), scores its imported
        graph even when it is a recognised NAS-Bench-201 network (api.md
        "Models"); any other architecture with it is a ValueError."""
        if as_graph:
            if not (isinstance(architecture, dict) and
                    architecture.get("type") == "onnx"):
                raise ValueError('as_graph applies to an uploaded model '
                                 '({"type": "onnx", "model": id}) only')
            architecture = dict(architecture, as_graph=True)
        unknown = sorted(set(settings) - set(REQUEST_FIELDS))
        if unknown:
            raise TypeError("submit() got unknown settings: %s"
                            % ", ".join(unknown))
        if settings.get("profile") not in (None,) + PROFILES:
            raise ValueError("profile must be one of %s, not %r"
                             % (", ".join(PROFILES), settings["profile"]))
        if isinstance(settings.get("metrics"), str):
            settings["metrics"] = [m.strip() for m in
                                   settings["metrics"].split(",")]
        request = {"architecture": architecture}
        request.update({k: v for k, v in settings.items() if v is not None})
        return self.submit_request(request, idempotency_key)

    def submit_request(self, request, idempotency_key=None):
        """Submits a whole request dict (api.md) and returns its Job."""
        answer = self.request("POST", "/v1/jobs", request, idempotency_key)
        return Job(self, answer)

    def submit_batch(self, requests, idempotency_key=None):
        """Submits request dicts as a batch and returns their Jobs in order.

        A batch over the server's limits.max_batch is sent in chunks of
        that size, chunk k with the Idempotency-Key "KEY.k" (KEY: the
        given key or a uuid4), so retrying the whole call with the same
        key never creates a job twice.  Each chunk is all or nothing: a bad
        item raises InvalidRequest whose errors point at /jobs/K/... (K
        counted over the whole list), and whose .submitted lists the Jobs
        of the chunks accepted before it."""
        requests = list(requests)
        size = self.limits().get("max_batch")
        if not isinstance(size, int) or size < 1 or len(requests) <= size:
            answer = self.request("POST", "/v1/jobs:batch",
                                  {"jobs": requests}, idempotency_key)
            return [Job(self, job) for job in answer["jobs"]]
        key = idempotency_key or str(uuid.uuid4())
        if len(key) > 200:  # the server takes keys of up to 255 characters
            key = hashlib.sha256(key.encode("utf-8")).hexdigest()
        jobs = []
        for chunk, first in enumerate(range(0, len(requests), size)):
            try:
                answer = self.request(
                    "POST", "/v1/jobs:batch",
                    {"jobs": requests[first:first + size]},
                    "%s.%d" % (key, chunk))
            except ArchevalError as err:
                if first and err.status is not None and err.errors:
                    problem = dict(err.problem)
                    problem["errors"] = _shift_batch_pointers(err.errors,
                                                              first)
                    shifted = error_for(err.status, problem,
                                        "POST /v1/jobs:batch")
                    shifted.submitted = list(jobs)
                    raise shifted from None
                err.submitted = list(jobs)
                raise
            jobs += [Job(self, job) for job in answer["jobs"]]
        return jobs

    def _get_job(self, job_id, wait_ms=0):
        wait_ms = int(min(max(wait_ms, 0), LONG_POLL_MAX_MS))
        query = {"wait_ms": wait_ms} if wait_ms else None
        return self.request("GET", "/v1/jobs/" + _quote(job_id),
                            timeout=self.timeout + wait_ms / 1000.0,
                            query=query)

    def _post_cancel(self, job_id):
        return self.request("POST", "/v1/jobs/%s:cancel" % _quote(job_id))

    def get(self, job_id):
        """The Job with this id (NotFound when unknown or expired)."""
        return Job(self, self._get_job(job_id))

    def cancel(self, job_id):
        """Cancels a job and returns it."""
        return Job(self, self._post_cancel(job_id))

    def delete(self, job_id):
        """Deletes a finished job."""
        self.request("DELETE", "/v1/jobs/" + _quote(job_id))

    def list(self, state=None, page_size=None, client_ref=None):
        """Iterates over the jobs (newest first), following the pages;
        state and client_ref filter on the server."""
        token = None
        while True:
            page = self.request("GET", "/v1/jobs", query={
                "state": state, "client_ref": client_ref,
                "page_size": page_size, "page_token": token})
            for job in page.get("jobs", []):
                yield Job(self, job)
            token = page.get("next_page_token")
            if not token:
                return

    def wait_all(self, jobs, timeout=None, poll_ms=1000, progress=False,
                 stream=None):
        """Waits until every Job in jobs has finished (without raising for
        failed ones) and returns the list.  WaitTimeout on timeout.

        progress: print a line on stream (default sys.stderr) each time
        jobs finish: how many, by state, the rate in jobs per second (of
        the jobs that finished after a first look at them all) and an
        estimate of the time left at that rate."""
        jobs = list(jobs)
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = [job for job in jobs if not job.done]
        meter = _Progress(len(jobs), stream) if progress else None
        while pending:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout("%d of %d jobs unfinished after %.1f s"
                                  % (len(pending), len(jobs), timeout))
            wait_ms = LONG_POLL_MAX_MS if len(pending) == 1 else poll_ms
            if meter and not meter.started:
                wait_ms = 0  # the first sweep only sees what is done
            if deadline is not None:
                left = deadline - time.monotonic()
                wait_ms = min(wait_ms, max(1, int(left * 1000)))
            pending[0].refresh(wait_ms)
            for job in pending[1:]:
                if not job.done:
                    job.refresh()
            still = [job for job in pending if not job.done]
            if meter:
                meter.update(jobs, changed=len(still) < len(pending))
            pending = still
        return jobs

    # -- studies -----------------------------------------------------------

    def create_study(self, name, idempotency_key=None, **fields):
        """Creates a study (api.md "Studies") and returns its Study.
        fields: data, profile, settings, seed, metrics, rank ("default",
        "fast" or {"components": [...], "aggregate": ...}), client_ref."""
        answer = self.request("POST", "/v1/studies",
                              study_body(name, **fields), idempotency_key)
        return Study(self, answer)

    def study(self, study_id):
        """The Study of that id (NotFound when there is none)."""
        return Study(self, self.request("GET", "/v1/studies/%s"
                                        % _quote(study_id)))

    def studies(self, page_size=None):
        """Yields every study, newest first (pages fetched as needed)."""
        token = None
        while True:
            page = self.request("GET", "/v1/studies", query={
                "page_size": page_size, "page_token": token})
            for data in page.get("studies", []):
                yield Study(self, data)
            token = page.get("next_page_token")
            if not token:
                return

    # -- service -----------------------------------------------------------

    # -- ONNX models (api.md "Models") ----------------------------------------

    def upload_model(self, model):
        """Uploads an ONNX model (POST /v1/models) and returns its
        description: {"id": "sha256:...", "bytes", "inputs", "outputs",
        "ops", "nodes", "params", ...}.  model: the file's bytes, or a path
        to it.  Uploading the same bytes again gives the same id."""
        if isinstance(model, (bytes, bytearray)):
            data = bytes(model)
        else:
            with open(os.fspath(model), "rb") as f:
                data = f.read()
        return self.request("POST", "/v1/models", data,
                            content_type="application/onnx")

    def get_model(self, model_id):
        """The description of an uploaded model (GET /v1/models/{id})."""
        return self.request("GET", "/v1/models/" + model_id)

    def delete_model(self, model_id):
        """Deletes an uploaded model (DELETE /v1/models/{id}); Conflict
        while a queued or running job uses it."""
        self.request("DELETE", "/v1/models/" + model_id)

    def submit_model(self, model, idempotency_key=None, as_graph=False,
                     **settings):
        """Uploads an ONNX model (bytes or a path) and submits a job for
        it; returns the Job.  as_graph=True scores its imported graph even
        when it is a recognised NAS-Bench-201 network; settings as for
        submit."""
        description = self.upload_model(model)
        return self.submit({"type": "onnx", "model": description["id"]},
                           idempotency_key=idempotency_key,
                           as_graph=as_graph, **settings)

    def submit_torch(self, model, input_shape, batch_size=2, opset=None,
                     idempotency_key=None, as_graph=False, **settings):
        """Exports a PyTorch module to ONNX (export_onnx: training mode,
        per-sample input_shape such as (3, 32, 32)), uploads it and
        submits a job for it; returns the Job.  The job's data default to
        synthetic inputs of that shape and the model's output width as the
        number of classes; as_graph=True scores the imported graph even
        when the module is a NAS-Bench-201 network (which is otherwise
        scored as the native nb201 request); settings (data, seed,
        profile, ...) as for submit.  Raises RuntimeError when torch
        cannot be imported."""
        from .models import export_onnx
        onnx = export_onnx(model, input_shape, batch_size=batch_size,
                           opset=opset)
        return self.submit_model(onnx, idempotency_key=idempotency_key,
                                 as_graph=as_graph, **settings)

    def info(self):
        """GET /v1: name, version, backends, datasets, limits."""
        info = self.request("GET", "/v1")
        if isinstance(info, dict) and isinstance(info.get("limits"), dict):
            self._limits = info["limits"]
        return info

    def datasets(self):
        """The datasets the server knows (GET /v1/datasets)."""
        return self.request("GET", "/v1/datasets")["datasets"]

    def ready(self):
        """True when GET /v1/health/ready answers 200 (no retries)."""
        try:
            status, _, _ = self._exchange(
                "GET", self._base_path + "/v1/health/ready", None, {},
                self.timeout)
            return status == 200
        except (OSError, http.client.HTTPException):
            return False


class _Progress:
    """The progress line of wait_all: finished/total, by state, then the
    rate of the jobs that finished since the first sweep (those done
    before it do not count) and the time left at that rate."""

    def __init__(self, total, stream):
        self.total = total
        self.stream = stream
        self.started = None  # time of the first sweep
        self.done_at_start = 0

    def update(self, jobs, changed):
        states = [job.state for job in jobs if job.done]
        done = len(states)
        now = time.monotonic()
        if self.started is None:
            self.started = now
            self.done_at_start = done
        if not changed:
            return
        line = "%d/%d finished (%d succeeded, %d failed" % (
            done, self.total, states.count("succeeded"),
            states.count("failed"))
        if states.count("cancelled"):
            line += ", %d cancelled" % states.count("cancelled")
        line += ")"
        elapsed = now - self.started
        if done > self.done_at_start and elapsed > 0:
            rate = (done - self.done_at_start) / elapsed
            line += "; %.3g jobs/s" % rate
            if done < self.total:
                line += ", about %s left" % _duration(
                    (self.total - done) / rate)
        stream = self.stream if self.stream is not None else sys.stderr
        print(line, file=stream, flush=True)


def _duration(seconds):
    """12 s, 3 min 20 s, 2 h 05 min."""
    seconds = int(round(seconds))
    if seconds < 60:
        return "%d s" % seconds
    if seconds < 3600:
        return "%d min %02d s" % (seconds // 60, seconds % 60)
    return "%d h %02d min" % (seconds // 3600, seconds % 3600 // 60)


def _await_continue(sock, wait_s):
    """After the headers of a request with "Expect: 100-continue": True
    when the body should be sent (the server said 100 Continue, which is
    consumed here, or said nothing within wait_s), False when a final
    answer came first (it stays to be read)."""
    readable, _, _ = select.select([sock], [], [], wait_s)
    if not readable:
        return True
    head = sock.recv(64, socket.MSG_PEEK)
    if not head:
        raise ConnectionResetError("the server closed the connection")
    if not head.startswith((b"HTTP/1.1 100", b"HTTP/1.0 100")):
        return False
    # Consume the interim answer up to its blank line.
    seen = b""
    while not seen.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionResetError("the server closed the connection")
        seen += byte
        if len(seen) > 8192:
            raise http.client.HTTPException("a malformed 100 Continue")
    return True


def _shift_batch_pointers(errors, first):
    """The field errors of a chunk that starts at item first, with their
    "/jobs/K..." pointers renumbered to name the item in the whole list."""
    shifted = []
    for item in errors:
        pointer = item.get("pointer") if isinstance(item, dict) else None
        if isinstance(pointer, str) and pointer.startswith("/jobs/"):
            index, slash, rest = pointer[len("/jobs/"):].partition("/")
            if index.isdigit():
                item = dict(item, pointer="/jobs/%d%s%s" % (
                    int(index) + first, slash, rest))
        shifted.append(item)
    return shifted


def _quote(job_id):
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("a job id is a non-empty string")
    return urllib.parse.quote(job_id, safe="")


__all__ = ["Client", "Job", "ArchevalError", "DEFAULT_SERVER"]
