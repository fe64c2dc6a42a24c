#!/usr/bin/env python3
"""test_api_openapi.py: api/openapi.yaml is valid and says what api.md says.

Checks: yamllint (relaxed) passes; the document is a valid OpenAPI 3.1
description (when openapi_spec_validator is installed); every endpoint and
every error code of the api.md contract appears in it; every example
request in tests/data/requests/ validates against its JobRequest schema
(when jsonschema is installed).  Prints "N passed, M failed" last; exits 77
when PyYAML is missing.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

SRC = os.environ.get("AE_SRCDIR",
                     os.path.join(os.path.dirname(__file__), "..", ".."))
SPEC_DIR = os.path.join(os.environ.get("AE_SHARED_DATA",
                                       os.path.join(SRC, "..", "shared",
                                                    "data")), "..", "spec")
passed = failed = 0


def check(name, ok, why=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + why if why else ""))


try:
    import yaml
except ImportError:
    print("0 passed, 0 failed (PyYAML missing: skipped)")
    sys.exit(77)

path = os.path.join(SRC, "api", "openapi.yaml")
with open(path) as f:
    doc = yaml.safe_load(f)
check("openapi 3.1", str(doc.get("openapi", "")).startswith("3.1"))

if shutil.which("yamllint"):
    r = subprocess.run(["yamllint", "-d", "relaxed", path],
                       capture_output=True, text=True)
    check("yamllint relaxed", r.returncode == 0, r.stdout + r.stderr)

try:
    from openapi_spec_validator import validate
    try:
        validate(doc)
        check("openapi_spec_validator", True)
    except Exception as e:  # noqa: BLE001 - report any validation error
        check("openapi_spec_validator", False, str(e)[:300])
except ImportError:
    print("skip openapi_spec_validator (not installed)")

# Endpoints and error codes of the contract.
endpoints = [
    ("get", "/v1/health/live"), ("get", "/v1/health/ready"), ("get", "/v1"),
    ("get", "/metrics"), ("get", "/v1/datasets"), ("post", "/v1/jobs"),
    ("post", "/v1/jobs:batch"), ("get", "/v1/jobs/{id}"),
    ("get", "/v1/jobs"), ("post", "/v1/jobs/{id}:cancel"),
    ("delete", "/v1/jobs/{id}"),
]
api_md = os.path.join(SPEC_DIR, "api.md")
if os.path.exists(api_md):
    with open(api_md) as f:
        text = f.read()
    found = re.findall(r"`(GET|POST|DELETE) (/[^`?]*)", text)
    check("api.md lists endpoints", len(found) >= 10)
    for method, p in found:
        endpoints.append((method.lower(), p))
    codes = set(re.findall(r"\| \d{3} \| `([a-z_]+)`", text))
    codes |= set(re.findall(r"`(job_terminal|job_not_terminal|draining|"
                            r"not_ready)`", text))
else:
    codes = {"invalid_json", "body_too_large", "unsupported_media_type",
             "invalid_request", "idempotency_key_mismatch", "not_found",
             "method_not_allowed", "job_terminal", "job_not_terminal",
             "queue_full", "draining", "not_ready", "internal"}
# Endpoints of the contract that later issues build (studies: issue 13,
# models: issue 12).  They are reported, not hidden, and must not appear in
# openapi.yaml before the daemon serves them; remove an entry here when it
# lands.
NOT_YET_SERVED = set()
paths = doc.get("paths", {})
for method, p in sorted(set(endpoints)):
    served = p in paths and method in paths[p]
    if (method, p) in NOT_YET_SERVED:
        print("skip endpoint %s %s (not served yet)" % (method.upper(), p))
        check("openapi.yaml does not promise %s %s" % (method.upper(), p),
              not served)
        continue
    check("endpoint %s %s" % (method.upper(), p), served)
enum = set(doc["components"]["schemas"]["Problem"]["properties"]["code"]
           ["enum"])
for c in sorted(codes):
    check("problem code " + c, c in enum)

# The example requests validate against the schema.
try:
    import jsonschema
    schema = {"$ref": "#/components/schemas/JobRequest",
              "components": doc["components"]}
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted(glob.glob(os.path.join(SRC, "tests", "data", "requests",
                                          "*.json")))
    check("example requests present", len(files) >= 5)
    for fn in files:
        with open(fn) as f:
            body = json.load(f)
        errors = list(validator.iter_errors(body))
        check("schema accepts " + os.path.basename(fn), not errors,
              errors[0].message[:200] if errors else "")
    # A few corpus entries the schema alone must refuse too.
    for name in ["r04_unknown_top_key", "s05_metrics_empty",
                 "s13_priority_big", "m04_width_negative",
                 "s10_parameterization_bad"]:
        with open(os.path.join(SRC, "tests", "data", "bad_requests",
                               name + ".json")) as f:
            body = json.load(f)
        check("schema refuses " + name, not validator.is_valid(body))
except ImportError:
    print("skip schema validation (jsonschema not installed)")

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
