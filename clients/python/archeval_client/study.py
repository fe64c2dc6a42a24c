"""Studies (api.md "Studies"): a population of architectures scored with
one data, profile, settings and seed, ranked together by the server.

    from archeval_client import Client
    study = Client().create_study("nb201-sample", metrics=["topology"])
    study.add([{"type": "nb201", "cell": cell} for cell in cells])
    study.wait(progress=True)
    best = study.ranking()["members"][0]

A Study is a snapshot of the study resource refreshed by its methods; it
holds no lock and may be used from one thread at a time.
"""

import sys
import time
import uuid

from .errors import WaitTimeout

STUDY_FIELDS = ("data", "profile", "settings", "seed", "metrics", "rank",
                "client_ref")
BAR_WIDTH = 30


class Study:
    """A handle on one study.  Attributes: id, data (the last study
    resource seen, a dict); properties name, counts, progress, done."""

    def __init__(self, client, data):
        self.client = client
        self.data = data
        self.id = data["id"]

    def __repr__(self):
        return "<Study %s %r %.0f%%>" % (self.id, self.name,
                                          100 * self.progress)

    @property
    def name(self):
        return self.data.get("name")

    @property
    def counts(self):
        return self.data.get("counts", {})

    @property
    def progress(self):
        return self.data.get("progress", 0.0)

    @property
    def done(self):
        return self.progress >= 1.0

    def _path(self, tail=""):
        return "/v1/studies/%s%s" % (self.id, tail)

    def refresh(self):
        """GET the study again; returns self."""
        self.data = self.client.request("GET", self._path())
        return self

    def add(self, architectures, client_refs=None, idempotency_key=None):
        """Adds architectures (dicts, scorecard.md 1.1) and returns their
        Jobs in order.  Sent in chunks of the server's limits.max_batch,
        chunk k with the Idempotency-Key "KEY.k" (KEY: the given key or a
        uuid4), each all or nothing: a bad architecture raises
        InvalidRequest naming /architectures/I (I counted in the chunk)."""
        from .client import Job
        architectures = list(architectures)
        if client_refs is not None:
            client_refs = list(client_refs)
            if len(client_refs) != len(architectures):
                raise ValueError("one client_ref per architecture")
        size = max(1, int(self.client.limits().get("max_batch", 256)))
        key = idempotency_key or str(uuid.uuid4())
        jobs = []
        for k, first in enumerate(range(0, len(architectures), size)):
            body = {"architectures": architectures[first:first + size]}
            if client_refs is not None:
                body["client_refs"] = client_refs[first:first + size]
            answer = self.client.request(
                "POST", self._path("/architectures"), body,
                "%s.%d" % (key, k))
            jobs.extend(Job(self.client, job) for job in answer["jobs"])
        return jobs

    def wait(self, timeout=None, poll_s=0.5, progress=False, stream=None):
        """Polls until every member has finished; returns self.
        WaitTimeout on timeout.  progress: a bar on stream (default
        sys.stderr, redrawn in place on a terminal, one line per change
        otherwise) with the counts by state and the cached ones."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out = stream if stream is not None else sys.stderr
        started = time.monotonic()
        last = None
        while True:
            self.refresh()
            if progress:
                line = _bar(self.data, time.monotonic() - started)
                if line != last:
                    tty = hasattr(out, "isatty") and out.isatty()
                    out.write(("\r" + line) if tty else line + "\n")
                    out.flush()
                    last = line
            if self.done:
                if progress and hasattr(out, "isatty") and out.isatty():
                    out.write("\n")
                return self
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout("study %s: %.0f%% after %.1f s"
                                  % (self.id, 100 * self.progress, timeout))
            time.sleep(poll_s)

    def ranking(self, page_size=None):
        """The ranking (api.md): members in rank order with their metrics,
        per-metric, combined and aspect ranks, the Pareto front and the
        selection bound.  Pages are joined."""
        ranking, token = None, None
        while True:
            page = self.client.request(
                "GET", self._path("/ranking"),
                query={"page_size": page_size, "page_token": token})
            if ranking is None:
                ranking = page
            else:
                ranking["members"].extend(page["members"])
            token = page.get("next_page_token")
            if not token:
                ranking["next_page_token"] = None
                return ranking

    def to_csv(self, path=None):
        """The export, one row per member (rank order); written to path
        when given.  Returns the text."""
        return self._export("csv", path)

    def to_jsonl(self, path=None):
        """The export as JSON lines, one member per line."""
        return self._export("jsonl", path)

    def _export(self, fmt, path):
        text = self.client.request("GET", self._path("/ranking"),
                                   query={"format": fmt},
                                   raw=True).decode("utf-8")
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def delete(self):
        """Deletes the study and its jobs."""
        self.client.request("DELETE", self._path())


def study_body(name, **fields):
    """The POST /v1/studies body; TypeError for an unknown field."""
    unknown = sorted(set(fields) - set(STUDY_FIELDS))
    if unknown:
        raise TypeError("create_study() got unknown fields: %s"
                        % ", ".join(unknown))
    body = {"name": name}
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def _bar(study, elapsed):
    counts = study.get("counts", {})
    progress = study.get("progress", 0.0)
    filled = int(round(progress * BAR_WIDTH))
    done = sum(counts.get(k, 0) for k in ("succeeded", "failed",
                                          "cancelled"))
    return ("[%s%s] %3.0f%% %d/%d done (%d cached, %d failed; %d running, "
            "%d queued) %.0f s" % (
                "#" * filled, "." * (BAR_WIDTH - filled), 100 * progress,
                done, study.get("members", 0), counts.get("cached", 0),
                counts.get("failed", 0), counts.get("running", 0),
                counts.get("queued", 0), elapsed))
