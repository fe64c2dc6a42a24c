#!/usr/bin/env python3
"""test_cli_models.py: the archeval CLI's model commands (issue 12) against
a real archevald, and an uploaded model's import warnings in its jobs'
results.

The ONNX files are the committed tiny_train.onnx / tiny_eval.onnx
(tests/data/onnx/make_tiny.py; the eval export has its BN folded into the
convs, which the importer accepts with a warning), each given a doc_string
by the test (a protobuf field appended to the ModelProto: the same graph,
other bytes, so a fresh id every run), so no torch is needed.

- `model upload FILE` prints the description whose id is "sha256:" + the
  file's SHA-256 (params 510); again: the same description; `--id` prints
  only the ids, one per line; the folded model's warning goes to stderr;
  a file that is not ONNX exits 3, a missing file 1.
- `model get ID` prints the same description; `model delete ID` exits 0,
  then get and delete exit 6; a malformed id and an unknown subcommand
  exit 2.
- `submit --model FILE.onnx [REQUEST]` uploads and submits
  {"type": "onnx", "model": id}: with --wait it prints the result; without
  a request file it submits the defaults; a batch file gives one job per
  request; a request that names an architecture exits 2 before uploading.
- The folded model's jobs report the warning as "architecture.model: ...",
  online (submit --model) and offline (`archeval score MODEL.onnx`); the
  training export's jobs have no such warning; the same graph submitted as
  a "graph" architecture does not take the folded model's cached result
  (no model warning), while resubmitting the folded model is a cache hit
  that keeps it.
- `--as-graph` (issue 12), on the committed eval-mode NB-201 export
  nb201/eval_all_skip.onnx (given a doc_string too): `submit --model FILE`
  scores it as the native nb201 request (PyTorch's params, BN included,
  the note saying eval mode), `submit --model FILE --as-graph` as its
  imported graph (the request says "as_graph": true; the folded graph's
  params, no note, another canonical key), for every request of a batch;
  offline, `archeval score FILE` and `score --as-graph FILE` give the
  daemon's numbers for each; --as-graph without --model, or with a JSON
  request for score, exits 2.

Prints "N passed, M failed"; 77 without the daemon."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ONNX_DIR = os.path.join(h.SRCDIR, "tests", "data", "onnx")
FAST = {"profile": "fast", "seed": 3, "data": {"batch_size": 8}}


def with_doc_string(data, text):
    """The ModelProto with a doc_string (field 6, length-delimited)
    appended: protobuf takes the last value of a field, so the model is
    the same with other bytes."""
    raw = text.encode()
    assert len(raw) < 128  # a one-byte varint length
    return data + bytes([(6 << 3) | 2, len(raw)]) + raw


def model_file(tmp, name, nonce, tag="m"):
    with open(os.path.join(ONNX_DIR, name), "rb") as f:
        data = with_doc_string(f.read(), "test_cli_models %s %s" % (nonce,
                                                                   tag))
    path = os.path.join(tmp, tag + "-" + name)
    with open(path, "wb") as f:
        f.write(data)
    return path, "sha256:" + hashlib.sha256(data).hexdigest()


def cli(args, server, stdin=None, timeout=300):
    env = dict(os.environ)
    env["ARCHEVAL_SERVER"] = server
    proc = subprocess.run([h.CLI] + args, input=stdin, capture_output=True,
                          text=True, env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def model_warnings(result):
    return [w for w in result.get("warnings", [])
            if w.startswith("architecture.model: ")]


def test_upload_get_delete(d, tmp, train, train_id, folded, folded_id):
    url = d.url
    code, out, err = cli(["model", "--help"], url)
    h.check(code == 0 and "model upload" in out and "submit --model" in out,
            "model --help", out + err)
    code, _, err = cli(["model", "frobnicate"], url)
    h.check(code == 2, "an unknown model command exits 2", err)
    code, _, err = cli(["model", "get", "sha256:abc"], url)
    h.check(code == 2 and "not a model id" in err,
            "a malformed id exits 2", err)

    code, out, err = cli(["model", "upload", train], url)
    desc = json.loads(out) if code == 0 else {}
    h.check(code == 0 and desc.get("id") == train_id,
            "model upload prints the description; its id is the file's "
            "SHA-256", (code, out[:300], err))
    h.check(desc.get("params") == 510 and desc.get("warnings") == [],
            "the description: PyTorch's 510 parameters, no warning", desc)
    h.check("warning" not in err, "no warning on stderr", err)
    code, out2, err = cli(["model", "upload", train], url)
    h.check(code == 0 and json.loads(out2) == desc,
            "uploading it again: the same description", (code, err))

    code, out, err = cli(["model", "upload", "--id", train, folded], url)
    h.check(code == 0 and out.split() == [train_id, folded_id],
            "--id prints only the ids, one per line", (code, out, err))
    h.check("folded" in err and folded in err,
            "the folded model's warning on stderr, naming the file", err)

    code, out, err = cli(["model", "get", train_id], url)
    h.check(code == 0 and json.loads(out) == desc,
            "model get prints the same description", (code, err))

    junk = h.write_json(tmp, "junk.onnx", "this is not an ONNX file")
    code, _, err = cli(["model", "upload", junk], url)
    h.check(code == 3 and "422" in err, "a file that is not ONNX exits 3",
            (code, err))
    code, _, err = cli(["model", "upload", os.path.join(tmp, "nope.onnx")],
                       url)
    h.check(code == 1 and "cannot read" in err, "a missing file exits 1",
            (code, err))

    # A model of its own to delete (the others serve the jobs below).
    other, other_id = model_file(tmp, "tiny_train.onnx", "x", "delete-me")
    code, out, err = cli(["model", "upload", "--id", other], url)
    h.check(code == 0 and out.strip() == other_id, "another upload",
            (code, out, err))
    code, out, err = cli(["model", "delete", other_id], url)
    h.check(code == 0 and out == "", "model delete exits 0, prints nothing",
            (code, out, err))
    code, _, err = cli(["model", "get", other_id], url)
    h.check(code == 6, "model get after the delete exits 6", (code, err))
    code, _, err = cli(["model", "delete", other_id], url)
    h.check(code == 6, "model delete again exits 6", (code, err))


def test_submit_model(d, tmp, train, train_id, folded, folded_id):
    url = d.url
    req = h.write_json(tmp, "fast.json", FAST)
    code, out, err = cli(["submit", "--model", train, "--wait", req], url)
    result = json.loads(out) if code == 0 else {}
    h.check(code == 0 and result.get("topology", {}).get("params") == 510.0,
            "submit --model --wait prints the model's result",
            (code, out[:300], err))
    h.check(model_warnings(result) == [],
            "the training export's result has no model warning",
            result.get("warnings"))
    h.check(train_id in err, "submit --model says what it uploaded", err)

    code, out, err = cli(["submit", "--model", folded, "--wait", req], url)
    result = json.loads(out) if code == 0 else {}
    warned = model_warnings(result)
    h.check(code == 0 and len(warned) == 1 and "folded" in warned[0],
            "the folded model's result: \"architecture.model: ...\" says "
            "BN was folded", (code, result.get("warnings"), err))
    h.check(result.get("topology", {}).get("params") == 498.0,
            "the folded model's params (BN as conv biases)",
            result.get("topology"))
    code, out, err = cli(["submit", "--model", folded, "--wait", "--full",
                          req], url)
    job = json.loads(out) if code == 0 else {}
    h.check(code == 0 and job.get("cached") is True and
            model_warnings(job.get("result", {})) == warned,
            "resubmitted: a cache hit that keeps the warning",
            (code, out[:600], err))
    h.check(job.get("request", {}).get("architecture") ==
            {"type": "onnx", "model": folded_id},
            "the job names the uploaded model", job.get("request"))

    # The same graph as a "graph" architecture: its own result, no model
    # warning (the cache key holds the model's warnings).
    lowered = json.loads(subprocess.run(
        [h.CLI, "onnx-lower", "--compact", folded], check=True,
        capture_output=True).stdout)
    graph_job = dict(FAST)
    graph_job["architecture"] = lowered["architecture"]
    graph_job["data"] = {"batch_size": 8, "input_shape": [3, 8, 8],
                         "num_classes": 10}
    gpath = h.write_json(tmp, "graph.json", graph_job)
    code, out, err = cli(["submit", "--wait", "--full", gpath], url)
    gjob = json.loads(out) if code == 0 else {}
    h.check(code == 0 and gjob.get("canonical") == job.get("canonical"),
            "the graph form has the model's canonical key",
            (code, gjob.get("canonical"), job.get("canonical"), err))
    h.check(gjob.get("cached") is False and
            model_warnings(gjob.get("result", {})) == [],
            "but not its cached result: no model warning",
            (gjob.get("cached"), gjob.get("result", {}).get("warnings")))
    strip = ("provenance", "warnings")
    h.check({k: v for k, v in gjob.get("result", {}).items()
             if k not in strip} ==
            {k: v for k, v in job.get("result", {}).items()
             if k not in strip},
            "and the same numbers")

    # Offline: the same warning.
    offline = subprocess.run(
        [h.CLI, "score", "--profile", "fast", "--seed", "3", folded],
        capture_output=True, text=True)
    line = json.loads(offline.stdout or "{}")
    h.check(offline.returncode == 0 and
            model_warnings(line.get("result", {})) == warned,
            "archeval score MODEL.onnx reports the same warning",
            (offline.returncode, offline.stdout[:400], offline.stderr[-400:]))

    # No request file: the defaults; a batch: one job per request.
    code, out, err = cli(["submit", "--model", train], url)
    h.check(code == 0 and len(out.split()) == 1,
            "submit --model without a request file prints one job id",
            (code, out, err))
    ids = out.split()
    if ids:
        r = d.call("GET", "/v1/jobs/" + ids[0])
        h.check(r.status == 200 and r.json["request"]["architecture"] ==
                {"type": "onnx", "model": train_id},
                "that job names the model", r.body[:400])
        code, _, err = cli(["cancel", ids[0]], url)
    batch = h.write_json(tmp, "batch.json",
                         [dict(FAST, seed=s) for s in (5, 6)])
    code, out, err = cli(["submit", "--model", train, "--wait", batch], url)
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    h.check(code == 0 and len(lines) == 2 and
            all(j["state"] == "succeeded" and
                j["request"]["architecture"]["model"] == train_id
                for j in lines),
            "a batch file: one job per request, each naming the model",
            (code, out[:600], err))
    with_arch = h.write_json(tmp, "arch.json", dict(
        FAST, architecture={"type": "mlp_dag", "dag": "2_21_112"}))
    fresh, fresh_id = model_file(tmp, "tiny_eval.onnx", "x", "never-uploaded")
    code, _, err = cli(["submit", "--model", fresh, with_arch], url)
    h.check(code == 2 and "architecture" in err,
            "a request with an architecture and --model exits 2", err)
    r = d.call("GET", "/v1/models/" + fresh_id)
    h.check(r.status == 404, "and uploads nothing", r.status)
    code, _, err = cli(["submit", "--model",
                        os.path.join(tmp, "junk.onnx"), req], url)
    h.check(code == 3, "submit --model with a file that is not ONNX exits 3",
            (code, err))


def nb201_file(tmp, name, nonce):
    """A committed NB-201 export given a doc_string: (path, id, its
    manifest entry)."""
    with open(os.path.join(ONNX_DIR, "nb201", "manifest.json")) as f:
        entry = json.load(f)[name]
    with open(os.path.join(ONNX_DIR, "nb201", name + ".onnx"), "rb") as f:
        data = with_doc_string(f.read(), "test_cli_models %s" % nonce)
    path = os.path.join(tmp, name + ".onnx")
    with open(path, "wb") as f:
        f.write(data)
    return path, "sha256:" + hashlib.sha256(data).hexdigest(), entry


def numbers(result):
    return {k: v for k, v in result.items()
            if k not in ("provenance", "warnings")}


def test_as_graph(d, tmp, nonce):
    url = d.url
    path, model_id, e = nb201_file(tmp, "eval_all_skip", nonce)
    # The request `archeval score MODEL.onnx --profile fast --seed 3`
    # makes offline (the data's defaults), so the numbers compare.
    req = h.write_json(tmp, "fast-as-graph.json",
                       {"profile": "fast", "seed": 3})
    code, out, err = cli(["submit", "--model", path, "--wait", "--full", req],
                         url)
    native = json.loads(out) if code == 0 else {}
    notes = [w for w in native.get("result", {}).get("warnings", [])
             if w.startswith("architecture: model " + model_id)]
    h.check(code == 0 and native["request"]["architecture"] ==
            {"type": "onnx", "model": model_id} and
            native["result"]["topology"]["params"] == e["params"] and
            len(notes) == 1 and "eval mode" in notes[0],
            "submit --model: an eval-mode NB-201 export scored as the native "
            "nb201 request (PyTorch's params, the note)",
            (code, out[:600], err))
    code, out, err = cli(["submit", "--model", path, "--as-graph", "--wait",
                          "--full", req], url)
    graph = json.loads(out) if code == 0 else {}
    h.check(code == 0 and graph["request"]["architecture"] ==
            {"type": "onnx", "model": model_id, "as_graph": True} and
            graph["result"]["topology"]["params"] == e["graph_params"] and
            not any(w.startswith("architecture:")
                    for w in graph["result"]["warnings"]) and
            graph["canonical"] != native.get("canonical"),
            "submit --model --as-graph: scored as its imported graph "
            "(\"as_graph\": true, the folded params, no note, its own "
            "canonical key)", (code, out[:600], err))
    batch = h.write_json(tmp, "batch-as-graph.json",
                         [dict(FAST, seed=s) for s in (7, 8)])
    code, out, err = cli(["submit", "--model", path, "--as-graph", "--wait",
                          batch], url)
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    h.check(code == 0 and len(lines) == 2 and
            all(j["request"]["architecture"] ==
                {"type": "onnx", "model": model_id, "as_graph": True}
                for j in lines),
            "submit --model --as-graph with a batch: every job as_graph",
            (code, out[:600], err))
    code, _, err = cli(["submit", "--as-graph", req], url)
    h.check(code == 2 and "--model" in err,
            "submit --as-graph without --model exits 2", (code, err))

    # Offline: the daemon's numbers, either way.
    for flags, online, what in (([], native, "score MODEL.onnx"),
                                (["--as-graph"], graph,
                                 "score --as-graph MODEL.onnx")):
        run = subprocess.run(
            [h.CLI, "score", "--profile", "fast", "--seed", "3"] + flags +
            [path], capture_output=True, text=True)
        line = json.loads(run.stdout or "{}").get("result", {})
        h.check(run.returncode == 0 and online and
                numbers(line) == numbers(online["result"]) and
                line.get("warnings") == online["result"]["warnings"],
                "offline %s: the daemon's scorecard" % what,
                (run.returncode, run.stdout[:400], run.stderr[-400:]))
    run = subprocess.run([h.CLI, "score", "--as-graph", req],
                         capture_output=True, text=True)
    h.check(run.returncode == 2 and "--as-graph" in run.stderr,
            "score --as-graph with a JSON request exits 2",
            (run.returncode, run.stderr))


def main():
    h.require_daemon()
    if not os.access(h.CLI, os.X_OK):
        h.check(False, "the CLI exists at %s" % h.CLI)
        h.finish()
    tmp = tempfile.mkdtemp(prefix="ae-test-cli-models-")
    nonce = "%d-%s" % (os.getpid(), os.urandom(4).hex())
    train, train_id = model_file(tmp, "tiny_train.onnx", nonce)
    folded, folded_id = model_file(tmp, "tiny_eval.onnx", nonce)
    d = h.Daemon()
    if not h.check(d.try_start(), "archevald starts and becomes ready",
                   d.log_tail()):
        h.finish()
    try:
        h.section(test_upload_get_delete, d, tmp, train, train_id, folded,
                  folded_id)
        h.section(test_submit_model, d, tmp, train, train_id, folded,
                  folded_id)
        h.section(test_as_graph, d, tmp, nonce)
    finally:
        status = d.stop()
        h.check(status == 0, "archevald exits 0 on SIGTERM", d.log_tail())
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    h.finish()


if __name__ == "__main__":
    main()
