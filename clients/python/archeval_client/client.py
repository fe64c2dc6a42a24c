"""The archeval HTTP client (standard library only).

Client talks to one archevald (api.md); Job is a handle on one job
resource.  Every POST carries an Idempotency-Key (a uuid4 unless given), so
retrying a POST never creates a second job.  429 and 503 answers are retried
after their Retry-After, connection errors after an exponential back-off, at
most `retries` times; then the typed error of errors.py is raised.

A Client holds no connection state between calls and may be used from
several threads; a Job is a plain snapshot refreshed by its methods.
"""

import email.utils
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from .errors import (ArchevalError, JobCancelled, JobFailed, Unavailable,
                     WaitTimeout, error_for)

DEFAULT_SERVER = "http://127.0.0.1:8000"
LONG_POLL_MAX_MS = 30000
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
REQUEST_FIELDS = ("data", "seed", "metrics", "settings", "priority",
                  "timeout_ms", "client_ref")


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

    def __init__(self, url=None, timeout=60.0, retries=5,
                 retry_max_wait=60.0):
        url = url or os.environ.get("ARCHEVAL_SERVER") or DEFAULT_SERVER
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.retry_max_wait = retry_max_wait
        self.retries_done = 0  # total retries so far, for callers' logs

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

    def request(self, method, path, body=None, idempotency_key=None,
                timeout=None, query=None):
        """Sends one API request (with the retries) and returns the parsed
        JSON answer (None for an empty body).  body is a JSON value, or
        bytes sent as they are.  Raises the typed error of
        errors.py for an error answer."""
        url = self.url + path
        if query:
            query = {k: v for k, v in query.items() if v is not None}
            if query:
                url += "?" + urllib.parse.urlencode(query)
        data = None
        headers = {"Accept": "application/json"}
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)  # sent as is (already JSON text)
            headers["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        what = "%s %s" % (method, path)
        attempt = 0
        while True:
            req = urllib.request.Request(url, data=data, headers=headers,
                                         method=method)
            try:
                with urllib.request.urlopen(
                        req, timeout=timeout or self.timeout) as answer:
                    payload = answer.read()
                return json.loads(payload) if payload.strip() else None
            except urllib.error.HTTPError as err:
                payload = err.read()
                status = err.code
                if status in (429, 503) and attempt < self.retries:
                    wait = self._retry_wait(err.headers, attempt)
                    err.close()
                    attempt += 1
                    self.retries_done += 1
                    time.sleep(wait)
                    continue
                err.close()
                try:
                    problem = json.loads(payload) if payload else {}
                except ValueError:
                    problem = {"detail": payload[:300].decode("utf-8",
                                                              "replace")}
                if not isinstance(problem, dict):
                    problem = {}
                raise error_for(status, problem, what) from None
            except (urllib.error.URLError, ConnectionError, socket.timeout,
                    TimeoutError) as err:
                if attempt < self.retries:
                    wait = self._retry_wait(None, attempt)
                    attempt += 1
                    self.retries_done += 1
                    time.sleep(wait)
                    continue
                reason = getattr(err, "reason", err)
                raise Unavailable("%s: no answer from %s: %s"
                                  % (what, self.url, reason)) from None

    # -- jobs ---------------------------------------------------------------

    def submit(self, architecture, idempotency_key=None, **settings):
        """Submits one job for `architecture` (scorecard.md 1.1) and returns
        its Job.  settings: data, seed, metrics, settings, priority,
        timeout_ms, client_ref (api.md)."""
        unknown = sorted(set(settings) - set(REQUEST_FIELDS))
        if unknown:
            raise TypeError("submit() got unknown settings: %s"
                            % ", ".join(unknown))
        request = {"architecture": architecture}
        request.update({k: v for k, v in settings.items() if v is not None})
        return self.submit_request(request, idempotency_key)

    def submit_request(self, request, idempotency_key=None):
        """Submits a whole request dict (api.md) and returns its Job."""
        answer = self.request("POST", "/v1/jobs", request, idempotency_key)
        return Job(self, answer)

    def submit_batch(self, requests, idempotency_key=None):
        """Submits request dicts as one batch (all or nothing) and returns
        their Jobs in order.  A bad item raises InvalidRequest whose
        errors point at /jobs/K/..."""
        answer = self.request("POST", "/v1/jobs:batch",
                              {"jobs": list(requests)}, idempotency_key)
        return [Job(self, job) for job in answer["jobs"]]

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

    def list(self, state=None, page_size=None):
        """Iterates over the jobs (newest first), following the pages."""
        token = None
        while True:
            page = self.request("GET", "/v1/jobs", query={
                "state": state, "page_size": page_size, "page_token": token})
            for job in page.get("jobs", []):
                yield Job(self, job)
            token = page.get("next_page_token")
            if not token:
                return

    def wait_all(self, jobs, timeout=None, poll_ms=1000):
        """Waits until every Job in jobs has finished (without raising for
        failed ones) and returns the list.  WaitTimeout on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = [job for job in jobs if not job.done]
        while pending:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout("%d of %d jobs unfinished after %.1f s"
                                  % (len(pending), len(jobs), timeout))
            wait_ms = LONG_POLL_MAX_MS if len(pending) == 1 else poll_ms
            if deadline is not None:
                left = deadline - time.monotonic()
                wait_ms = min(wait_ms, max(1, int(left * 1000)))
            pending[0].refresh(wait_ms)
            for job in pending[1:]:
                if not job.done:
                    job.refresh()
            pending = [job for job in pending if not job.done]
        return list(jobs)

    # -- service -----------------------------------------------------------

    def info(self):
        """GET /v1: name, version, backends, datasets, limits."""
        return self.request("GET", "/v1")

    def datasets(self):
        """The datasets the server knows (GET /v1/datasets)."""
        return self.request("GET", "/v1/datasets")["datasets"]

    def ready(self):
        """True when GET /v1/health/ready answers 200 (no retries)."""
        req = urllib.request.Request(self.url + "/v1/health/ready")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as answer:
                return answer.status == 200
        except (urllib.error.URLError, ConnectionError, socket.timeout,
                TimeoutError):
            return False


def _quote(job_id):
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("a job id is a non-empty string")
    return urllib.parse.quote(job_id, safe="")


__all__ = ["Client", "Job", "ArchevalError", "DEFAULT_SERVER"]
