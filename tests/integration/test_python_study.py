#!/usr/bin/env python3
"""test_python_study.py: the Python client's studies against archevald.

Client.create_study (fields checked, an unknown field a TypeError, a
rejected body an InvalidRequest naming the field), Client.study and
Client.studies, Study.add (chunked over limits.max_batch with one
Idempotency-Key per chunk; a bad architecture an InvalidRequest, nothing
added), Study.wait(progress=True) (the bar reaches 100%), Study.ranking
(every member, pages joined, equal to the server's one-page answer),
Study.to_csv / to_jsonl (the rows of the ranking), Study.delete (then
NotFound).

Environment: AE_BUILDDIR.  Exit 77 without the daemon.  Prints "N passed,
M failed" last.
"""

import io
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

sys.path.insert(0, h.PYTHON_CLIENT_DIR)
import archeval_client as ac  # noqa: E402

check = h.check
DAGS = ("2_22_222", "2_21_112", "2_02_122", "1_22_212", "2_12_221", "1",
        "2_22")


def run(d):
    client = ac.Client(d.url)
    try:
        client.create_study("x", colour="red")
        check(False, "an unknown field raises TypeError")
    except TypeError:
        check(True, "an unknown field raises TypeError")
    try:
        client.create_study("x", data={"batch_size": 1})
        check(False, "a bad data raises InvalidRequest")
    except ac.InvalidRequest as err:
        check(any(e.get("pointer") == "/data/batch_size"
                  for e in err.errors), "InvalidRequest names the field",
              err.errors)
    study = client.create_study("py", data={"batch_size": 8},
                                metrics=["topology", "convergence"], seed=2)
    check(isinstance(study, ac.Study) and study.id.startswith("s_") and
          study.progress == 0, "create_study returns a Study", study.data)
    check(client.study(study.id).name == "py", "Client.study")
    check([s.id for s in client.studies()] == [study.id], "Client.studies")
    archs = [{"type": "mlp_dag", "dag": g, "width": 32} for g in DAGS]
    try:
        study.add(archs[:2] + [{"type": "mlp_dag", "dag": "9"}])
        check(False, "a bad architecture raises")
    except ac.InvalidRequest as err:
        check(any(e.get("pointer", "").startswith("/architectures/2")
                  for e in err.errors), "InvalidRequest names the index")
    check(study.refresh().data["members"] == 0, "nothing was added")
    jobs = study.add(archs, client_refs=["r%d" % i for i in range(len(DAGS))])
    check(len(jobs) == len(DAGS) and all(j.data["study"] == study.id
                                         for j in jobs),
          "add returns one Job per architecture, in the study", len(jobs))
    out = io.StringIO()
    study.wait(timeout=300, progress=True, stream=out)
    check(study.done and study.counts["succeeded"] == len(DAGS),
          "wait: every member succeeded", study.counts)
    check("100%" in out.getvalue() and "[###" in out.getvalue(),
          "wait(progress=True) draws the bar to 100%", out.getvalue()[-200:])
    whole = d.call("GET", "/v1/studies/%s/ranking" % study.id).json
    paged = study.ranking(page_size=2)
    check(paged["members"] == whole["members"] and
          paged["pareto_front"] == whole["pareto_front"] and
          paged["selection_bound"] == whole["selection_bound"],
          "ranking joins the pages into the server's ranking")
    path = os.path.join(tempfile.mkdtemp(prefix="ae-pystudy-"), "s.csv")
    text = study.to_csv(path)
    rows = text.splitlines()
    check(len(rows) == len(DAGS) + 1 and open(path).read() == text and
          [r.split(",")[1].strip('"') for r in rows[1:]] ==
          [m["job"] for m in whole["members"]],
          "to_csv: a header and the members in rank order")
    check(len(study.to_jsonl().splitlines()) == len(DAGS), "to_jsonl")
    small = ac.Client(d.url)
    small._limits = dict(client.limits(), max_batch=3)
    other = small.create_study("chunks", data={"batch_size": 8},
                               metrics=["topology"])
    got = other.add(archs, idempotency_key="k")
    again = other.add(archs, idempotency_key="k")
    check(len(got) == len(DAGS) and [j.id for j in got] ==
          [j.id for j in again], "add chunks by max_batch, idempotently")
    study.delete()
    try:
        study.refresh()
        check(False, "a deleted study is NotFound")
    except ac.NotFound:
        check(True, "a deleted study is NotFound")


def main():
    h.require_daemon()
    d = h.Daemon()
    if not d.try_start():
        check(False, "daemon starts")
        return h.finish()
    try:
        h.section(run, d)
        status = d.stop()
        check(status == 0, "the daemon stops cleanly", status)
    finally:
        d.cleanup()
    return h.finish()


if __name__ == "__main__":
    main()
