#!/usr/bin/env python3
"""test_models.py: ONNX models served (api.md "Models", issue 12 items 3-4)
against a real archevald.

Without torch (the committed tests/data/onnx/tiny_*.onnx, 510 parameters):
POST /v1/models answers 201 with the description (id = "sha256:" + the
file's SHA-256, Location, inputs, outputs, op census, lowered nodes and
params), 200 with the same description for the same bytes, GET gives it
back; the eval-mode export (BN folded into the convs) is accepted with a
warning saying so; 415 for another Content-Type, 422 for an empty body,
for bytes that are not ONNX and for an op the importer does not map
(naming the node), 413 over --max-model-bytes (which GET /v1 advertises);
405 and 404 on the model routes.  A job {"type": "onnx", "model": id}
succeeds, echoes that architecture, and its scorecard and canonical key
equal those of the same graph sent as a "graph" architecture (what
`archeval onnx-lower` prints); an unknown or malformed id is a 422 at
/architecture/model.  DELETE is a 409 while a queued job names the model,
204 once none does, then 404.  The model survives a restart (SQLite store)
and a --no-store daemon keeps models in memory.  `archeval score
MODEL.onnx` scores it offline with the daemon's numbers.  The committed
NB-201 export (tests/data/onnx/nb201/mixed.onnx) is described with
"recognized" (also by onnx-lower), and its job's scorecard equals the
native nb201 request's (same seed) but for the note saying so, with the
native's canonical key but a cache entry of its own; "as_graph": true
scores its graph (another key, no note); data with other classes than the
model's output is a 422.  The committed eval-mode export of the same
network (nb201/eval_mixed.onnx, BN folded into the convs) is recognised
too ("bn_folded": true, the graph's params the folded ones) and scored as
the same native request, bit for bit, its note saying the export was in
eval mode and was scored with BatchNorm; it never shares the training
export's cached result (the note differs), and "as_graph" scores its
folded graph (the folded params).

With torch and torchvision (Debian's python3-torch*): the Python client's
export_onnx / upload_model / submit_torch; torchvision's ResNet-18,
MobileNetV2, MobileNetV3-small, DenseNet-121 and SqueezeNet 1.1
(weights=None, exported in training mode at 3x32x32) each upload with
PyTorch's parameter count and get a scorecard; the NB201 network of
tests/data/onnx/export_models.py is recognised and scored as the native
nb201 request (below), and with "as_graph" exactly like its imported
graph; the same network exported in eval mode is recognised with
"bn_folded" and scored as the same native request; a SIGTERM during a 46 MB upload's import answers it (503 or
201) and the daemon exits 0.  Without torch that part is reported as skipped.  Prints "N
passed, M failed"; 77 without the daemon.
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

sys.path.insert(0, h.PYTHON_CLIENT_DIR)
import archeval_client as ac  # noqa: E402

ONNX_DIR = os.path.join(h.SRCDIR, "tests", "data", "onnx")
ONNX = {"Content-Type": "application/onnx"}


def read(name):
    with open(os.path.join(ONNX_DIR, name), "rb") as f:
        return f.read()


TINY = read("tiny_train.onnx")
TINY_EVAL = read("tiny_eval.onnx")
TINY_ID = "sha256:" + hashlib.sha256(TINY).hexdigest()
FAST = {"profile": "fast", "seed": 3, "data": {"batch_size": 8}}
SMALL_SETTINGS = {"linear_regions": {"samples": 100, "repeats": 1},
                  "curvature": {"points": 16, "repeats": 1},
                  "activation_patterns": {"repeats": 1}}


def upload(d, data, headers=ONNX):
    return d.call("POST", "/v1/models", raw=data, headers=headers)


def onnx_job(model_id, **extra):
    job = {"architecture": {"type": "onnx", "model": model_id}}
    job.update(FAST)
    job.update(extra)
    return job


def run_job(d, job):
    r = d.call("POST", "/v1/jobs", job)
    if r.status != 202:
        raise AssertionError("submit: %d %s" % (r.status, r.body[:500]))
    return d.wait(r.json["id"], timeout=300)


def test_upload(d):
    r = upload(d, TINY)
    h.check(r.status == 201, "POST /v1/models: 201", r.body[:500])
    m = r.json or {}
    h.check(m.get("id") == TINY_ID, "the id is sha256 of the bytes",
            m.get("id"))
    h.check(r.header("Location") == "/v1/models/" + TINY_ID,
            "Location names the model", r.header("Location"))
    h.check(m.get("bytes") == len(TINY), "bytes", m.get("bytes"))
    h.check(m.get("inputs") and m["inputs"][0]["shape"] == [2, 3, 8, 8],
            "inputs with their shapes", m.get("inputs"))
    h.check(m.get("outputs") and m["outputs"][0]["shape"] == [2, 10],
            "outputs with their shapes", m.get("outputs"))
    ops = m.get("ops", {})
    h.check(ops.get("Conv") == 2 and ops.get("BatchNormalization") == 2 and
            ops.get("Gemm") == 1, "the op census", ops)
    h.check(m.get("params") == 510, "params: PyTorch's 510", m.get("params"))
    h.check(m.get("nodes") == 9, "the lowered graph's nodes", m.get("nodes"))
    h.check(m.get("warnings") == [], "no warning for a training export",
            m.get("warnings"))
    again = upload(d, TINY, {"Content-Type": "application/octet-stream"})
    h.check(again.status == 200 and again.json == m,
            "the same bytes again: 200, the same description",
            again.body[:300])
    got = d.call("GET", "/v1/models/" + TINY_ID)
    h.check(got.status == 200 and got.json == m, "GET gives it back",
            got.body[:300])
    folded = upload(d, TINY_EVAL)
    warnings = (folded.json or {}).get("warnings", [])
    h.check(folded.status == 201 and
            any("folded" in w for w in warnings) and
            folded.json.get("params") == 498,
            "an eval-mode export (BN folded): accepted with a warning",
            folded.body[:600])


def test_upload_errors(d):
    r = upload(d, TINY, {"Content-Type": "application/json"})
    h.check(r.status == 415 and r.json["code"] == "unsupported_media_type",
            "415 for application/json", r.body[:300])
    r = upload(d, TINY, {})
    h.check(r.status == 415, "415 without a Content-Type", r.body[:300])
    r = upload(d, b"")
    h.check(r.status == 422, "422 for an empty body", r.body[:300])
    r = upload(d, b"\x08\x07garbage, not a protobuf" * 10)
    h.check(r.status == 422 and r.json["status"] == 422,
            "422 for bytes that are not ONNX", r.body[:300])
    bad = TINY.replace(b"Relu", b"Relx")
    r = upload(d, bad)
    errors = (r.json or {}).get("errors", [])
    h.check(r.status == 422 and r.json["code"] == "unsupported" and
            errors and errors[0]["pointer"].startswith("/nodes/") and
            "Relx" in errors[0]["detail"],
            "422 unsupported naming the node and its op", r.body[:600])
    r = d.call("GET", "/v1/models")
    h.check(r.status == 405 and r.header("Allow") == "POST",
            "GET /v1/models: 405, Allow: POST", r.body[:300])
    r = d.call("PUT", "/v1/models/" + TINY_ID)
    h.check(r.status == 405 and "DELETE" in r.header("Allow"),
            "PUT /v1/models/{id}: 405", r.body[:300])
    r = d.call("GET", "/v1/models/sha256:" + "0" * 64)
    h.check(r.status == 404 and r.json["code"] == "not_found",
            "an unknown model: 404", r.body[:300])
    r = d.call("GET", "/v1/models/nonsense")
    h.check(r.status == 404, "a malformed id: 404", r.body[:300])


def test_jobs(d, workdir):
    job = run_job(d, onnx_job(TINY_ID))
    h.check(job["state"] == "succeeded", "an onnx job succeeds",
            json.dumps(job)[:800])
    h.check(job["request"]["architecture"] ==
            {"type": "onnx", "model": TINY_ID},
            "the job echoes the model it names", job["request"])
    h.check(job["request"]["data"]["input_shape"] == [3, 8, 8] and
            job["request"]["data"]["num_classes"] == 10,
            "the data default to the model's input shape and classes",
            job["request"]["data"])
    path = os.path.join(workdir, "tiny.onnx")
    with open(path, "wb") as f:
        f.write(TINY)
    lowered = json.loads(subprocess.run(
        [h.CLI, "onnx-lower", "--compact", path], check=True,
        capture_output=True).stdout)
    graph_job = dict(FAST)
    graph_job["architecture"] = lowered["architecture"]
    graph_job["data"] = {"batch_size": 8, "input_shape": [3, 8, 8],
                         "num_classes": 10}
    graph = run_job(d, graph_job)
    strip = ("provenance",)
    same = {k: v for k, v in job["result"].items() if k not in strip} == \
        {k: v for k, v in graph["result"].items() if k not in strip}
    h.check(same, "its scorecard equals the same graph's as a \"graph\"",
            "%s\n%s" % (json.dumps(job["result"])[:800],
                        json.dumps(graph["result"])[:800]))
    h.check(job["canonical"] == graph["canonical"],
            "and its canonical key", (job["canonical"], graph["canonical"]))
    offline = subprocess.run(
        [h.CLI, "score", "--profile", "fast", "--seed", "3", path],
        capture_output=True)
    line = json.loads(offline.stdout or b"{}")
    result = line.get("result", {})
    h.check(offline.returncode == 0 and
            result.get("topology", {}).get("params") == 510.0,
            "archeval score MODEL.onnx scores it offline",
            offline.stderr[-600:])
    r = d.call("POST", "/v1/jobs", onnx_job("sha256:" + "1" * 64))
    errors = (r.json or {}).get("errors", [])
    h.check(r.status == 422 and errors and
            errors[0]["pointer"] == "/architecture/model",
            "an unknown model: 422 at /architecture/model", r.body[:400])
    r = d.call("POST", "/v1/jobs", onnx_job("TINY"))
    errors = (r.json or {}).get("errors", [])
    h.check(r.status == 422 and errors and
            errors[0]["pointer"] == "/architecture/model",
            "a malformed model id: 422 at /architecture/model", r.body[:400])


def test_delete(d):
    # One worker busy with slow jobs: the onnx job stays queued.
    slow = []
    for seed in (101, 102):
        job = dict(h.SLOW)
        job["seed"] = seed
        slow.append(d.submit(job).json["id"])
    # A seed of its own: not answered from the result cache.
    r = d.call("POST", "/v1/jobs", onnx_job(TINY_ID, seed=103))
    queued = r.json["id"]
    r = d.call("DELETE", "/v1/models/" + TINY_ID)
    h.check(r.status == 409 and r.json["code"] == "model_in_use" and
            queued in r.json.get("detail", ""),
            "DELETE while a queued job names it: 409", r.body[:400])
    for job_id in slow + [queued]:
        d.call("POST", "/v1/jobs/%s:cancel" % job_id)
    for job_id in slow + [queued]:
        d.wait(job_id)
    r = d.call("DELETE", "/v1/models/" + TINY_ID)
    h.check(r.status == 204, "DELETE once no job uses it: 204",
            r.body[:300])
    r = d.call("GET", "/v1/models/" + TINY_ID)
    h.check(r.status == 404, "then GET: 404", r.body[:300])
    r = d.call("DELETE", "/v1/models/" + TINY_ID)
    h.check(r.status == 404, "and DELETE: 404", r.body[:300])


def test_restart(d):
    r = upload(d, TINY)
    h.check(r.status == 201, "uploaded again after its deletion: 201",
            r.body[:300])
    h.check(d.restart(), "the daemon restarts on its store")
    r = d.call("GET", "/v1/models/" + TINY_ID)
    h.check(r.status == 200 and r.json["params"] == 510,
            "the model survived the restart", r.body[:300])
    job = run_job(d, onnx_job(TINY_ID))
    h.check(job["state"] == "succeeded", "and a job on it succeeds",
            json.dumps(job)[:500])


def test_limits_and_memory():
    limit = len(TINY_EVAL) + 10
    with h.Daemon("--max-model-bytes", str(limit), store=False,
                  host_workers=1, name="small") as d:
        info = d.call("GET", "/v1").json
        h.check(info["limits"].get("max_model_bytes") == limit,
                "GET /v1 advertises max_model_bytes",
                info["limits"])
        r = upload(d, TINY)
        h.check(r.status == 413 and r.json["code"] == "body_too_large",
                "413 over --max-model-bytes", r.body[:300])
        r = upload(d, TINY_EVAL)
        h.check(r.status == 201, "--no-store: a model under the limit: 201",
                r.body[:300])
        r = d.call("GET", "/v1/models/" + r.json["id"])
        h.check(r.status == 200, "--no-store keeps it in memory",
                r.body[:300])
        job = run_job(d, onnx_job(r.json["id"]))
        h.check(job["state"] == "succeeded", "and scores it",
                json.dumps(job)[:500])


# ---- with torch ----------------------------------------------------------

def torch_modules():
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any failure means absent
        return None, err
    return (torch, torchvision), None


def load_export_models():
    spec = importlib.util.spec_from_file_location(
        "export_models", os.path.join(ONNX_DIR, "export_models.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_client(d, torch):
    client = ac.Client(d.url)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 5))
    model.eval()
    data = ac.export_onnx(model, (3, 8, 8))
    h.check(not model.training, "export_onnx puts the module's mode back")
    described = client.upload_model(data)
    h.check(described["params"] == sum(p.numel() for p in model.parameters())
            and described["ops"].get("BatchNormalization") == 1,
            "export_onnx exports in training mode (BN kept), upload_model",
            described)
    job = client.submit_torch(model, (3, 8, 8), profile="fast", seed=1,
                              data={"batch_size": 4})
    result = job.wait(timeout=300)
    h.check(result["topology"]["params"] == described["params"] and
            job.data["request"]["architecture"]["model"] == described["id"],
            "submit_torch: export, upload and a scorecard", job.data)
    expect = None
    try:
        client.submit({"type": "onnx", "model": "sha256:" + "2" * 64})
    except ac.InvalidRequest as err:
        expect = err
    h.check(expect is not None, "an unknown model raises InvalidRequest")


def test_torchvision(d, tv):
    client = ac.Client(d.url)
    names = ("resnet18", "mobilenet_v2", "mobilenet_v3_small",
             "densenet121", "squeezenet1_1")
    for name in names:
        t0 = time.monotonic()
        model = getattr(tv.models, name)(weights=None)
        params = sum(p.numel() for p in model.parameters())
        try:
            described = client.upload_model(
                ac.export_onnx(model, (3, 32, 32)))
        except ac.ArchevalError as err:
            h.check(False, "%s uploads" % name, err)
            continue
        h.check(described["params"] == params,
                "%s: params %d equal PyTorch's" % (name, params),
                described["params"])
        # Every metric (profile "full"), with the sampled ones at small
        # settings: a 2-core host scores the five in a few minutes.
        job = client.submit({"type": "onnx", "model": described["id"]},
                            profile="full", seed=0,
                            data={"batch_size": 4}, settings=SMALL_SETTINGS)
        try:
            result = job.wait(timeout=600)
        except ac.ArchevalError as err:
            h.check(False, "%s gets a full scorecard" % name, err)
            continue
        groups = [g for g in ("topology", "expressivity", "convergence",
                              "generalization") if result.get(g)]
        h.check(len(groups) == 4 and
                result["topology"]["params"] == params,
                "%s: a full scorecard (%.0f s)" % (name,
                                                   time.monotonic() - t0),
                "groups %s; %s" % (groups, json.dumps(result)[:1500]))


def nb201_settings(seed=5):
    return {"profile": "fast", "seed": seed, "data": {"batch_size": 8}}


EVAL_NOTE = ("exported in eval mode (BatchNorm folded into the convs) and "
             "was scored as the native nb201 request, the NAS-Bench-201 "
             "cell with BatchNorm")


def check_scored_as_native(d, model_id, cell, channels, cells, what,
                           seed=5, graph_params=None):
    """A recognised NB-201 model's job: the native request's scorecard
    plus the note; "as_graph": true scores the graph (another cache key).
    graph_params: an eval-mode export's (folded) graph params, whose note
    says eval mode; None: a training export, the native's params."""
    settings = nb201_settings(seed)
    onnx = run_job(d, dict(settings, architecture={"type": "onnx",
                                                   "model": model_id}))
    native = run_job(d, dict(settings, architecture={
        "type": "nb201", "cell": cell, "channels": channels,
        "cells_per_stage": cells}))
    h.check(onnx["state"] == "succeeded" and native["state"] == "succeeded",
            "%s: the onnx job and the native nb201 job succeed" % what,
            (json.dumps(onnx)[:600], json.dumps(native)[:600]))
    notes = [w for w in onnx["result"]["warnings"]
             if w.startswith("architecture: model " + model_id)]
    h.check(len(notes) == 1 and "scored as the native nb201" in notes[0] and
            cell in notes[0] and
            (EVAL_NOTE in notes[0]) == (graph_params is not None),
            "%s: the scorecard says it was scored as nb201%s" %
            (what, " (an eval-mode export)" if graph_params else ""),
            onnx["result"]["warnings"])
    strip = ("provenance",)
    mine = {k: v for k, v in onnx["result"].items() if k not in strip}
    mine["warnings"] = [w for w in mine["warnings"] if w not in notes]
    theirs = {k: v for k, v in native["result"].items() if k not in strip}
    h.check(mine == theirs,
            "%s: the scorecard equals the native nb201 request's" % what,
            "%s\n%s" % (json.dumps(mine)[:1500], json.dumps(theirs)[:1500]))
    h.check(onnx["canonical"] == native["canonical"] and
            not native["cached"],
            "%s: the native's canonical key, but not its cache entry" % what,
            (onnx["canonical"], native["canonical"], native["cached"]))
    again = run_job(d, dict(settings, architecture={"type": "onnx",
                                                    "model": model_id}))
    h.check(again["cached"] and again["result"]["warnings"] ==
            onnx["result"]["warnings"],
            "%s: the same job again comes from the cache, note and all"
            % what, json.dumps(again)[:600])
    graph = run_job(d, dict(settings, architecture={
        "type": "onnx", "model": model_id, "as_graph": True}))
    h.check(graph["state"] == "succeeded" and not graph["cached"] and
            graph["request"]["architecture"] ==
            {"type": "onnx", "model": model_id, "as_graph": True} and
            graph["canonical"] != onnx["canonical"] and
            not any(w.startswith("architecture:")
                    for w in graph["result"]["warnings"]) and
            graph["result"]["topology"]["params"] ==
            (native["result"]["topology"]["params"] if graph_params is None
             else graph_params),
            "%s: \"as_graph\": true scores the imported graph (its own "
            "canonical and cache keys, no note, %s)" %
            (what, "the same params" if graph_params is None
             else "the folded graph's params"),
            json.dumps(graph)[:800])
    return graph


def upload_committed(d, name, bn_folded):
    """Uploads tests/data/onnx/nb201/NAME.onnx: its manifest entry, its
    bytes, the upload's answer, the recognized description expected, and
    the path of a copy in the daemon's workdir (for the CLI)."""
    man = json.loads(read(os.path.join("nb201", "manifest.json")))
    e = man[name]
    data = read(os.path.join("nb201", name + ".onnx"))
    r = upload(d, data)
    want = {"type": "nb201", "arch": e["cell"], "cell": e["cell"],
            "channels": e["channels"], "cells_per_stage": e["cells_per_stage"],
            "num_classes": e["num_classes"], "input_shape": e["input_shape"],
            "bn_folded": bn_folded}
    path = os.path.join(d.workdir, name + ".onnx")
    with open(path, "wb") as f:
        f.write(data)
    return e, data, r, want, path


def onnx_lower(path):
    """`archeval onnx-lower --compact PATH`, parsed."""
    return json.loads(subprocess.run(
        [h.CLI, "onnx-lower", "--compact", path], check=True,
        capture_output=True).stdout)


def test_nb201_committed(d):
    """The committed NB-201 export (tests/data/onnx/nb201/mixed.onnx, no
    torch needed): recognised on upload, scored as the native request."""
    e, data, r, want, path = upload_committed(d, "mixed", False)
    m = r.json or {}
    h.check(r.status in (200, 201) and m.get("recognized") == want,
            "an NB-201 export's description: recognized", r.body[:800])
    h.check(m.get("params") == e["params"], "its params: PyTorch's",
            m.get("params"))
    tiny = d.call("GET", "/v1/models/" + TINY_ID)
    h.check(tiny.status == 200 and "recognized" in tiny.json and
            tiny.json["recognized"] is None,
            "another model's description: recognized null", tiny.body[:300])
    lowered = onnx_lower(path)
    h.check(lowered.get("recognized") == want,
            "archeval onnx-lower prints recognized", lowered.get("recognized"))
    check_scored_as_native(d, m["id"], e["cell"], e["channels"],
                           e["cells_per_stage"], "the committed NB-201 export")
    bad = onnx_job(m["id"], data={"batch_size": 8, "num_classes": 5})
    r = d.call("POST", "/v1/jobs", bad)
    errors = (r.json or {}).get("errors", [])
    h.check(r.status == 422 and errors and
            errors[0]["pointer"] == "/architecture/model",
            "data with other classes than the model's output: 422",
            r.body[:400])
    r = d.call("POST", "/v1/jobs", onnx_job(m["id"], architecture={
        "type": "onnx", "model": m["id"], "as_graph": "yes"}))
    errors = (r.json or {}).get("errors", [])
    h.check(r.status == 422 and errors and
            errors[0]["pointer"] == "/architecture/as_graph",
            "as_graph must be a boolean: 422", r.body[:400])


def test_nb201_eval_committed(d):
    """The committed eval-mode export (nb201/eval_mixed.onnx: mixed.onnx's
    network with BN folded into the convs): recognised, scored as the
    native request with BN, bit for bit, with its own note and cache."""
    e, data, r, want, path = upload_committed(d, "eval_mixed", True)
    m = r.json or {}
    h.check(r.status in (200, 201) and m.get("recognized") == want,
            "an eval-mode NB-201 export's description: recognized, "
            "bn_folded", r.body[:800])
    h.check(m.get("params") == e["graph_params"] and
            e["graph_params"] < e["params"],
            "its params: the folded graph's (conv biases for BNs)",
            (m.get("params"), e))
    lowered = onnx_lower(path)
    h.check(lowered.get("recognized") == want,
            "archeval onnx-lower prints it recognized, bn_folded",
            lowered.get("recognized"))
    # A seed of its own: the native job is computed afresh here.
    check_scored_as_native(d, m["id"], e["cell"], e["channels"],
                           e["cells_per_stage"], "the eval-mode NB-201 export",
                           seed=6, graph_params=e["graph_params"])
    # The training export's job (test_nb201_committed, seed 5) is cached:
    # the eval export's job with that seed has the same numbers but is
    # not that cache entry (its note differs).
    train_id = "sha256:" + hashlib.sha256(
        read(os.path.join("nb201", "mixed.onnx"))).hexdigest()
    job = dict(nb201_settings(), architecture={"type": "onnx",
                                               "model": train_id})
    trained = run_job(d, job)
    folded = run_job(d, dict(job, architecture={"type": "onnx",
                                                "model": m["id"]}))
    notes = [w for w in folded["result"]["warnings"]
             if w.startswith("architecture: model " + m["id"])]
    h.check(trained["cached"] and not folded["cached"] and len(notes) == 1 and
            EVAL_NOTE in notes[0] and
            folded["canonical"] == trained["canonical"],
            "the eval export does not take the training export's cached "
            "result (same canonical key, its own note)",
            (trained["cached"], folded["cached"], folded["result"]["warnings"]))
    strip = ("provenance", "warnings")
    h.check({k: v for k, v in folded["result"].items() if k not in strip} ==
            {k: v for k, v in trained["result"].items() if k not in strip},
            "the eval and training exports' scorecards: the same numbers")


def test_nb201(d, torch):
    em = load_export_models()
    client = ac.Client(d.url)
    torch.manual_seed(0)
    net = em.NB201Net(em.NB201_CELL, em.NB201_C, em.NB201_N,
                      em.NB201_CLASSES)
    described = client.upload_model(ac.export_onnx(net, (3, 32, 32)))
    h.check(described.get("recognized", {}).get("arch") == em.NB201_CELL,
            "NB201 export (torch): recognized", described.get("recognized"))
    h.check(described["params"] ==
            sum(p.numel() for p in net.parameters()),
            "NB201 export: params equal PyTorch's", described["params"])
    graph = check_scored_as_native(d, described["id"], em.NB201_CELL,
                                   em.NB201_C, em.NB201_N,
                                   "NB201 export (torch)")
    # As a graph it is exactly the scorecard of its imported graph.
    path = os.path.join(d.workdir, "nb201.onnx")
    with open(path, "wb") as f:
        f.write(ac.export_onnx(net, (3, 32, 32)))
    lowered = json.loads(subprocess.run(
        [h.CLI, "onnx-lower", "--compact", path], check=True,
        capture_output=True).stdout)
    plain = client.submit(lowered["architecture"],
                          **dict(nb201_settings(),
                                 data={"batch_size": 8,
                                       "input_shape": [3, 32, 32],
                                       "num_classes": 10}))
    plain = plain.wait(timeout=300)
    h.check({k: v for k, v in graph["result"].items() if k != "provenance"} ==
            {k: v for k, v in plain.items() if k != "provenance"},
            "NB201 export as_graph: the scorecard of its imported graph",
            (graph["result"], plain))
    # Exported in eval mode (torch folds each conv's BN into it): the same
    # network recognised, scored as the same native request.
    net.eval()
    path = os.path.join(d.workdir, "nb201_eval.onnx")
    torch.onnx.export(net, torch.randn(2, 3, 32, 32), path,
                      training=torch.onnx.TrainingMode.EVAL,
                      opset_version=14, do_constant_folding=True)
    with open(path, "rb") as f:
        folded = client.upload_model(f.read())
    h.check(folded.get("recognized", {}).get("arch") == em.NB201_CELL and
            folded["recognized"].get("bn_folded") is True and
            "BatchNormalization" in folded["ops"] and
            folded["ops"]["BatchNormalization"] == 1,
            "NB201 export (torch, eval mode): recognized, bn_folded (the "
            "head's BN alone left)", (folded.get("recognized"),
                                      folded.get("ops")))
    native = client.submit({"type": "nb201", "cell": em.NB201_CELL,
                            "channels": em.NB201_C,
                            "cells_per_stage": em.NB201_N},
                           **nb201_settings()).wait(timeout=300)
    mine = client.submit({"type": "onnx", "model": folded["id"]},
                         **nb201_settings()).wait(timeout=300)
    strip = ("provenance", "warnings")
    h.check({k: v for k, v in mine.items() if k not in strip} ==
            {k: v for k, v in native.items() if k not in strip} and
            any(EVAL_NOTE in w for w in mine["warnings"]),
            "NB201 export (torch, eval mode): the native request's "
            "scorecard, the note saying eval mode",
            (mine.get("warnings"), json.dumps(mine)[:800]))


def test_stop_during_upload(torch):
    """SIGTERM while a 46 MB model is imported: the upload answers (503
    draining, or 201 when the import won) and the daemon exits 0."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(16 * 32 * 32, 700),
        torch.nn.ReLU(), torch.nn.Linear(700, 10))
    data = ac.export_onnx(model, (3, 32, 32))
    for delay in (0.5, 0.9):
        with h.Daemon(host_workers=1, store=False, name="stop") as d:
            answer = {}

            def post():
                try:
                    answer["r"] = upload(d, data)
                except Exception as err:  # noqa: BLE001
                    answer["e"] = err
            thread = threading.Thread(target=post)
            thread.start()
            time.sleep(delay)
            status = d.stop()
            thread.join()
            r = answer.get("r")
            h.check(status == 0 and r is not None and r.status in (201, 503),
                    "SIGTERM %.1f s into a model upload: answered %s, exit %s"
                    % (delay, r.status if r else answer.get("e"), status),
                    d.log_tail(10))


def main():
    h.require_daemon()
    with h.Daemon(host_workers=1) as d:
        h.section(test_upload, d)
        h.section(test_upload_errors, d)
        h.section(test_jobs, d, d.workdir)
        h.section(test_delete, d)
        h.section(test_restart, d)
        h.section(test_nb201_committed, d)
        h.section(test_nb201_eval_committed, d)
        modules, why = torch_modules()
        if modules is None:
            h.log("skipped: the torch part (torch or torchvision cannot be "
                  "imported: %s)" % why)
        else:
            torch, tv = modules
            h.section(test_python_client, d, torch)
            h.section(test_nb201, d, torch)
            h.section(test_stop_during_upload, torch)
            if os.environ.get("AE_MODELS_TORCHVISION", "1") != "0":
                h.section(test_torchvision, d, tv)
    h.section(test_limits_and_memory)
    h.finish()


if __name__ == "__main__":
    main()
