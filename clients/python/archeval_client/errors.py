"""Typed errors of the archeval client.

Every error answer of the service is an RFC 9457 problem+json object; the
client raises the subclass of ArchevalError that matches its HTTP status,
carrying the whole problem.  A failed job raises JobFailed with the job's
"error" problem, a cancelled one JobCancelled.
"""


class ArchevalError(Exception):
    """Base of every archeval client error.

    Attributes: status (HTTP status, or None when no answer came), code
    (the problem's "code", e.g. "invalid_request"), problem (the whole
    problem dict, may be empty), errors (the list of {"pointer", "detail"}
    field errors).
    """

    def __init__(self, message, status=None, problem=None):
        self.problem = dict(problem or {})
        if status is None:
            status = self.problem.get("status")
        self.status = status
        self.code = self.problem.get("code")
        self.errors = list(self.problem.get("errors") or [])
        details = "".join(
            "\n  %s: %s" % (e.get("pointer") or "(body)", e.get("detail"))
            for e in self.errors if isinstance(e, dict))
        super().__init__(message + details)


class InvalidJSON(ArchevalError):
    """400 invalid_json: the body did not parse."""


class NotFound(ArchevalError):
    """404 not_found: unknown route, job (or expired) or dataset."""


class MethodNotAllowed(ArchevalError):
    """405 method_not_allowed."""


class Conflict(ArchevalError):
    """409 job_terminal / job_not_terminal: illegal cancel or delete."""


class BodyTooLarge(ArchevalError):
    """413 body_too_large: the server's answer, or raised before sending
    when the body is over the server's advertised limits.max_body_bytes
    (or when the server closed the connection during such an upload)."""


class UnsupportedMediaType(ArchevalError):
    """415 unsupported_media_type."""


class InvalidRequest(ArchevalError):
    """422 invalid_request or idempotency_key_mismatch; .errors names the
    offending fields by JSON pointer."""


class QueueFull(ArchevalError):
    """429 queue_full, still after the client's retries."""


class ServerError(ArchevalError):
    """500 internal, or another 5xx."""


class Unavailable(ArchevalError):
    """503 draining / not_ready still after the retries, or no answer at
    all (connection refused, reset, timed out): then status is None."""


class JobFailed(ArchevalError):
    """A job ended in state "failed"; .problem is the job's error, .job the
    job resource."""

    def __init__(self, message, job):
        self.job = job
        problem = job.get("error") if isinstance(job, dict) else None
        super().__init__(message, None, problem)


class JobCancelled(ArchevalError):
    """A job ended in state "cancelled"; .job is the job resource."""

    def __init__(self, message, job):
        self.job = job
        super().__init__(message, None, None)


class WaitTimeout(ArchevalError):
    """Job.wait(timeout=...) elapsed before the job finished."""


ERROR_FOR_STATUS = {
    400: InvalidJSON,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: BodyTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: QueueFull,
    503: Unavailable,
}


def error_for(status, problem, what):
    """The exception for an error answer (status, problem dict)."""
    cls = ERROR_FOR_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ArchevalError
    problem = dict(problem or {})
    problem.setdefault("status", status)
    detail = problem.get("detail") or problem.get("title") or ""
    code = problem.get("code") or ""
    message = "%s: %d %s%s" % (what, status, code,
                               (": " + detail) if detail else "")
    return cls(message, status, problem)
