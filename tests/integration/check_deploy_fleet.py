#!/usr/bin/env python3
"""check_deploy_fleet.py: consistency checks of the fleet's deploy kit.

Run by test_deploy.sh with a Python that has PyYAML (Debian's python3-yaml;
yamllint needs it too).  Where yamllint checks the syntax, this checks
that the pieces agree with each other and with the daemon:

- deploy/compose.fleet.yaml: a PostgreSQL service with a pg_isready health
  check; two or more archevald services that wait for it to be healthy,
  take the store's URL from the environment (host, user and database those
  of the PostgreSQL service, the password the same variable), share its
  queue (--fleet), have
  distinct --replica-id values, host ports and GPUs, no --state-dir, and a
  stop_grace_period above their --drain-timeout-secs.
- deploy/k8s/fleet/: the kustomization lists existing files; the
  Deployment has two or more replicas with --fleet, reads
  ARCHEVAL_STORE_URL from a key
  of the Secret that secret.yaml defines, defines every $(VAR) its args
  use, probes /v1/health/live and /v1/health/ready, never surges (one GPU
  per pod), and outlasts its drain; the Secret's URL points at the
  PostgreSQL Service with the password of its own "password" key, which
  the StatefulSet uses; every Service selects the labels of a pod
  template, by a port the container names.
- Every flag given to archevald in deploy/ (compose files, manifests) is a
  flag of `archevald --help` (when the daemon is built: argv[1]).

Prints "ok: ..." or "FAIL: ..." per check and "N passed, M failed" last;
exits 1 on a failure, 77 without PyYAML.
"""

import os
import re
import subprocess
import sys
import urllib.parse

try:
    import yaml
except ImportError:
    print("skipped: no PyYAML (apt-get install python3-yaml)")
    print("0 passed, 0 failed")
    sys.exit(77)

SRC = os.environ.get("AE_SRCDIR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEPLOY = os.path.join(SRC, "deploy")
FLEET = os.path.join(DEPLOY, "k8s", "fleet")
counts = {"passed": 0, "failed": 0}


def check(condition, what, detail=None):
    counts["passed" if condition else "failed"] += 1
    print(("ok: " if condition else "FAIL: ") + what)
    if not condition and detail is not None:
        print("    " + str(detail))
    return condition


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def flag_value(args, flag):
    """The value after FLAG in an argument list, or None."""
    for i, a in enumerate(args[:-1]):
        if a == flag:
            return args[i + 1]
    return None


def interpolate(text):
    """A compose value with each ${VAR...} replaced by "var-VAR"."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}",
                  lambda m: "var-" + m.group(1), str(text))


def daemon_flags(daemon):
    """The long flags `archevald --help` lists, or None without it."""
    if not daemon or not os.access(daemon, os.X_OK):
        return None
    out = subprocess.run([daemon, "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    return set(re.findall(r"^\s+(--[a-z0-9-]+)", out, re.M))


def check_flags(known, where, args):
    if known is None:
        return
    unknown = [a for a in args if isinstance(a, str)
               and a.startswith("--") and a not in known]
    check(not unknown, "%s: every flag is one of archevald --help" % where,
          unknown)


def compose_fleet(known):
    path = os.path.join(DEPLOY, "compose.fleet.yaml")
    (doc,) = load_all(path)
    services = doc.get("services", {})
    pg = services.get("postgres") or {}
    pg_env = pg.get("environment") or {}
    check("pg_isready" in str((pg.get("healthcheck") or {}).get("test")),
          "compose.fleet: PostgreSQL has a pg_isready health check")
    replicas = {k: v for k, v in services.items()
                if k.startswith("archevald")}
    check(len(replicas) >= 2, "compose.fleet: two or more replicas",
          sorted(replicas))
    ids, ports, gpus = [], [], []
    for name, s in sorted(replicas.items()):
        cmd = [str(a) for a in s.get("command") or []]
        check_flags(known, "compose.fleet %s" % name, cmd)
        ids.append(flag_value(cmd, "--replica-id"))
        ports.extend(str(p).rsplit(":", 1)[0] for p in s.get("ports") or [])
        for dev in (s.get("deploy", {}).get("resources", {})
                    .get("reservations", {}).get("devices") or []):
            gpus.extend(dev.get("device_ids") or [])
        check((s.get("depends_on") or {}).get("postgres", {})
              .get("condition") == "service_healthy",
              "compose.fleet %s: waits for PostgreSQL to be healthy" % name)
        check("--fleet" in cmd, "compose.fleet %s: --fleet (the shared "
              "queue)" % name)
        check("--state-dir" not in cmd and not s.get("volumes"),
              "compose.fleet %s: no state dir (the store is PostgreSQL)"
              % name)
        url = interpolate((s.get("environment") or {})
                          .get("ARCHEVAL_STORE_URL", "")).strip()
        parts = urllib.parse.urlsplit(url)
        check(parts.scheme == "postgresql" and parts.hostname == "postgres"
              and parts.username == pg_env.get("POSTGRES_USER")
              and parts.path.lstrip("/") == pg_env.get("POSTGRES_DB")
              and parts.password
              == interpolate(pg_env.get("POSTGRES_PASSWORD", "")),
              "compose.fleet %s: ARCHEVAL_STORE_URL names the postgres "
              "service, its user, database and password" % name, url)
        drain = int(flag_value(cmd, "--drain-timeout-secs") or 25)
        grace = int(str(s.get("stop_grace_period", "0s")).rstrip("s"))
        check(grace > drain, "compose.fleet %s: stop_grace_period (%d s) "
              "above the drain (%d s)" % (name, grace, drain))
    check(None not in ids and len(set(ids)) == len(ids),
          "compose.fleet: distinct --replica-id values", ids)
    check(len(set(ports)) == len(ports) == len(replicas),
          "compose.fleet: one host port per replica", ports)
    check(len(set(gpus)) == len(gpus) == len(replicas),
          "compose.fleet: one GPU per replica", gpus)


def k8s_fleet(known):
    kust = load_all(os.path.join(FLEET, "kustomization.yaml"))[0]
    files = kust.get("resources") or []
    check(files and all(os.path.isfile(os.path.join(FLEET, f))
                        for f in files),
          "k8s fleet: the kustomization's resources exist", files)
    docs = []
    for f in files:
        docs.extend(load_all(os.path.join(FLEET, f)))
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    services = by_kind.get("Service", [])
    (deploy,) = by_kind.get("Deployment", [None])
    (pg_set,) = by_kind.get("StatefulSet", [None])
    check(deploy is not None and pg_set is not None,
          "k8s fleet: a Deployment and a PostgreSQL StatefulSet")
    if deploy is None or pg_set is None:
        return
    spec = deploy["spec"]
    check(spec.get("replicas", 1) >= 2, "k8s fleet: two or more replicas",
          spec.get("replicas"))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    check(spec.get("strategy", {}).get("type") == "Recreate"
          or rolling.get("maxSurge") == 0,
          "k8s fleet: a rollout never adds a pod (one GPU each)")
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    args = [str(a) for a in c.get("args") or []]
    check_flags(known, "k8s fleet Deployment", args)
    env = {e["name"]: e for e in c.get("env") or []}
    used = set(re.findall(r"\$\(([A-Z_]+)\)", " ".join(args)))
    check(used <= set(env), "k8s fleet: every $(VAR) of the args is in env",
          sorted(used - set(env)))
    ref = (env.get("ARCHEVAL_STORE_URL", {}).get("valueFrom") or {}) \
        .get("secretKeyRef") or {}
    secret = secrets.get(ref.get("name"))
    data = (secret or {}).get("stringData") or {}
    check(secret is not None and ref.get("key") in data,
          "k8s fleet: ARCHEVAL_STORE_URL comes from a key of the Secret",
          ref)
    check("--state-dir" not in args, "k8s fleet: no state dir")
    check("--fleet" in args, "k8s fleet: --fleet (the shared queue)")
    probes = {p: (c.get(p) or {}).get("httpGet", {}).get("path")
              for p in ("livenessProbe", "readinessProbe", "startupProbe")}
    check(probes["livenessProbe"] == "/v1/health/live" and
          probes["readinessProbe"] == "/v1/health/ready",
          "k8s fleet: liveness on /v1/health/live, readiness on "
          "/v1/health/ready", probes)
    drain = int(flag_value(args, "--drain-timeout-secs") or 25)
    check(pod.get("terminationGracePeriodSeconds", 30) > drain,
          "k8s fleet: terminationGracePeriodSeconds above the drain")
    if secret is not None and ref.get("key") in data:
        url = urllib.parse.urlsplit(data[ref["key"]])
        pg_service = pg_set["spec"].get("serviceName")
        check(url.scheme == "postgresql" and url.hostname == pg_service,
              "k8s fleet: the store URL's host is the PostgreSQL Service "
              "(%s)" % pg_service, url.hostname)
        check(url.password == data.get("password"),
              "k8s fleet: the URL's password is the Secret's password key")
        (pg_c,) = pg_set["spec"]["template"]["spec"]["containers"]
        pg_env = {e["name"]: e for e in pg_c.get("env") or []}
        pw_ref = (pg_env.get("POSTGRES_PASSWORD", {}).get("valueFrom") or {}) \
            .get("secretKeyRef") or {}
        check(pw_ref == {"name": ref.get("name"), "key": "password"},
              "k8s fleet: PostgreSQL's password is the same Secret key",
              pw_ref)
        user = (pg_env.get("POSTGRES_USER") or {}).get("value")
        db = (pg_env.get("POSTGRES_DB") or {}).get("value")
        check(url.username == user and url.path.lstrip("/") == db,
              "k8s fleet: the URL's user and database are PostgreSQL's")
    names = {s["metadata"]["name"] for s in services}
    check(pg_set["spec"].get("serviceName") in names,
          "k8s fleet: the StatefulSet's serviceName is a Service")
    templates = [deploy["spec"]["template"], pg_set["spec"]["template"]]
    for s in services:
        selector = s["spec"].get("selector") or {}
        matched = [t for t in templates
                   if selector and all(t["metadata"]["labels"].get(k) == v
                                       for k, v in selector.items())]
        port_names = {p.get("name") for t in matched
                      for ct in t["spec"]["containers"]
                      for p in ct.get("ports") or []}
        targets = {p.get("targetPort") for p in s["spec"]["ports"]}
        check(len(matched) == 1 and targets <= port_names,
              "k8s fleet: Service %s selects one pod template, by a named "
              "port" % s["metadata"]["name"], (selector, targets))


def single_kit(known):
    """The one-replica kit's flags, also held to --help."""
    (doc,) = load_all(os.path.join(DEPLOY, "compose.yaml"))
    for name, s in doc.get("services", {}).items():
        check_flags(known, "compose %s" % name,
                    [str(a) for a in s.get("command") or []])
    for d in load_all(os.path.join(DEPLOY, "k8s", "deployment.yaml")):
        for c in d["spec"]["template"]["spec"]["containers"]:
            check_flags(known, "k8s Deployment",
                        [str(a) for a in c.get("args") or []])


def main():
    known = daemon_flags(sys.argv[1] if len(sys.argv) > 1 else None)
    if known is None:
        print("note: no built archevald: flags not checked against --help")
    for fn in (compose_fleet, k8s_fleet, single_kit):
        try:
            fn(known)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            check(False, "%s: the files have the expected shape" % fn.__name__,
                  repr(err))
    print("%d passed, %d failed" % (counts["passed"], counts["failed"]))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
