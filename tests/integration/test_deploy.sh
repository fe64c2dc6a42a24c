#!/bin/sh
# test_deploy.sh: static checks of the deploy kit (deploy/).
#
# - systemd: `systemd-analyze verify` on deploy/systemd/archevald.service
#   must pass with no message at all (verify exits 0 on mere warnings, so
#   any output counts as a failure).  verify insists that ExecStart's
#   binary exists; when /usr/local/bin/archevald is not installed, the
#   check runs on a copy whose ExecStart points at an executable stand-in
#   (the built daemon, else /bin/true), which is said in the log.  Also
#   checks the settings the deployment relies on (Type=exec,
#   StateDirectory, Restart=on-failure, TimeoutStopSec above the 25 s
#   drain).
# - YAML: yamllint (with deploy/yamllint.yaml) on the compose file and the
#   Kubernetes manifests, plus greps for the GPU reservation, the probes
#   and terminationGracePeriodSeconds > 25.
# - Dockerfile: hadolint is not packaged in Debian, so a small shell check
#   of the required instructions instead: two stages (a CUDA devel image
#   that configures --with-cuda, a runtime image), USER 1000, EXPOSE 8000,
#   an exec-form ENTRYPOINT with --http-address 0.0.0.0, HEALTHCHECK with
#   archevald --healthcheck.
# - The fleet (issue 15): yamllint on deploy/compose.fleet.yaml and
#   deploy/k8s/fleet/*.yaml, then check_deploy_fleet.py (with a Python
#   that has PyYAML) holds the pieces to each other and every flag given
#   to archevald in deploy/ to `archevald --help`: the store's URL, its
#   Secret and the PostgreSQL service agree, replicas have distinct ids,
#   ports and GPUs, the probes and grace periods are right.
# - shellcheck on this script when available.
# Tools that are missing are reported as skipped checks (not failures);
# the whole test exits 77 only when none of them is available.  Prints
# "N passed, M failed" last.
set -u
src=${AE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${AE_BUILDDIR:-.}
deploy="$src/deploy"
passed=0
failed=0
ran_tool=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ae-test-deploy.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

ok() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
# check DESCRIPTION COMMAND...: one assertion; the output when it fails.
check() {
  what=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then
    ok "$what"
  else
    fail "$what"
    sed 's/^/    /' "$tmp/out"
  fi
}
# all_of FILE ERE...: FILE has a line matching each pattern.
all_of() {
  file=$1
  shift
  for pattern in "$@"; do
    if ! grep -Eq -- "$pattern" "$file"; then
      echo "no '$pattern' in $file"
      return 1
    fi
  done
}
# near FILE ANCHOR ERE: a line matching ERE within 3 lines after ANCHOR.
near() {
  grep -A3 -- "$2" "$1" | grep -Eq -- "$3"
}
# same_count FILE A B: as many lines matching A as matching B.
same_count() {
  test "$(grep -c -- "$2" "$1")" -eq "$(grep -c -- "$3" "$1")"
}
# none_of FILE ERE: no line of FILE matches ERE.
none_of() {
  ! grep -Eq -- "$2" "$1"
}
# starts_with_comment FILE...: each file has a comment in its 3 first lines.
starts_with_comment() {
  for f in "$@"; do
    sed -n '1,3p' "$f" | grep -q '^#' || { echo "$f"; return 1; }
  done
}

# ---- systemd -------------------------------------------------------------
unit="$deploy/systemd/archevald.service"
check "the unit file exists" test -f "$unit"
if command -v systemd-analyze >/dev/null 2>&1; then
  ran_tool=1
  verify_unit="$unit"
  if [ ! -x /usr/local/bin/archevald ]; then
    stand_in=/bin/true
    if [ -x "$build/server/archevald" ]; then
      stand_in=$(cd "$build/server" && pwd)/archevald
    fi
    echo "note: /usr/local/bin/archevald is not installed; verifying a copy" \
      "whose ExecStart runs $stand_in"
    verify_unit="$tmp/archevald.service"
    sed "s#/usr/local/bin/archevald#$stand_in#" "$unit" >"$verify_unit"
  fi
  if systemd-analyze verify "$verify_unit" >"$tmp/verify" 2>&1 &&
    [ ! -s "$tmp/verify" ]; then
    ok "systemd-analyze verify: no errors, no warnings"
  else
    fail "systemd-analyze verify"
    sed 's/^/    /' "$tmp/verify"
  fi
else
  echo "skipped: systemd-analyze is not installed"
fi
check "unit: Type=exec" all_of "$unit" '^Type=exec$'
check "unit: ExecStart runs /usr/local/bin/archevald" \
  all_of "$unit" '^ExecStart=/usr/local/bin/archevald '
check "unit: StateDirectory=archeval" all_of "$unit" '^StateDirectory=archeval$'
check "unit: DynamicUser or User" all_of "$unit" '^(DynamicUser=yes|User=)'
check "unit: Restart=on-failure" all_of "$unit" '^Restart=on-failure$'
check "unit: hardening (NoNewPrivileges, ProtectSystem=strict)" \
  all_of "$unit" '^NoNewPrivileges=yes' '^ProtectSystem=strict'
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s*$/\1/p' "$unit")
drain=$(sed -n 's/.*--drain-timeout-secs \([0-9]*\).*/\1/p' "$unit" |
  head -n 1)
check "unit: TimeoutStopSec ($stop) above the drain (${drain:-25})" \
  test "${stop:-0}" -gt "${drain:-25}"

# ---- YAML ----------------------------------------------------------------
compose="$deploy/compose.yaml"
k8s="$deploy/k8s"
if command -v yamllint >/dev/null 2>&1; then
  ran_tool=1
  for f in "$compose" "$k8s"/*.yaml "$deploy/compose.fleet.yaml" \
    "$k8s"/fleet/*.yaml; do
    check "yamllint $(basename "$f")" \
      yamllint -s -c "$deploy/yamllint.yaml" "$f"
  done
else
  echo "skipped: yamllint is not installed"
fi
check "compose: a GPU reservation (deploy.resources.reservations.devices)" \
  all_of "$compose" 'reservations:' 'devices:' 'capabilities: \[gpu\]'
check "compose: stop_grace_period above the drain" \
  all_of "$compose" 'stop_grace_period: (2[6-9]|[3-9][0-9])s'
check "k8s: an nvidia.com/gpu limit" \
  all_of "$k8s/deployment.yaml" 'nvidia.com/gpu: 1'
check "k8s: liveness on /v1/health/live" \
  near "$k8s/deployment.yaml" 'livenessProbe:' '/v1/health/live'
check "k8s: readiness on /v1/health/ready" \
  near "$k8s/deployment.yaml" 'readinessProbe:' '/v1/health/ready'
check "k8s: a startupProbe" all_of "$k8s/deployment.yaml" 'startupProbe:'
grace=$(sed -n 's/.*terminationGracePeriodSeconds: \([0-9]*\).*/\1/p' \
  "$k8s/deployment.yaml")
check "k8s: terminationGracePeriodSeconds ($grace) above 25" \
  test "${grace:-0}" -gt 25
check "k8s: a Service on port 8000" all_of "$k8s/service.yaml" 'port: 8000'

# ---- Dockerfile (a shell check: hadolint is not in Debian) ---------------
df="$deploy/Dockerfile"
check "Dockerfile: a CUDA devel build stage" \
  all_of "$df" '^FROM nvidia/cuda:.*-devel-.* AS build'
check "Dockerfile: a runtime stage" \
  all_of "$df" '^FROM nvidia/cuda:.*-runtime-.* AS runtime'
check "Dockerfile: configure --with-cuda" all_of "$df" 'configure --with-cuda'
check "Dockerfile: copies from the build stage" \
  all_of "$df" '^COPY --from=build '
check "Dockerfile: non-root uid 1000" all_of "$df" '^USER 1000'
check "Dockerfile: EXPOSE 8000" all_of "$df" '^EXPOSE 8000$'
check "Dockerfile: exec-form ENTRYPOINT with --http-address 0.0.0.0" \
  all_of "$df" \
  '^ENTRYPOINT \["[^"]*archevald", "--http-address", "0.0.0.0"\]'
check "Dockerfile: HEALTHCHECK runs archevald --healthcheck" \
  near "$df" '^HEALTHCHECK' \
  'CMD \["/usr/local/bin/archevald", "--healthcheck"\]'
check "Dockerfile: no shell-form ENTRYPOINT or CMD" \
  none_of "$df" '^(ENTRYPOINT|CMD) [^[]'
check "Dockerfile: apt lists removed in the same layer" \
  same_count "$df" 'rm -rf /var/lib/apt/lists' 'apt-get install'
check "every deploy file starts with a comment" \
  starts_with_comment "$df" "$compose" "$unit" "$k8s"/*.yaml \
  "$deploy/compose.fleet.yaml" "$k8s"/fleet/*.yaml

# ---- the fleet: the pieces agree (PyYAML) --------------------------------
yaml_python=""
for p in "${PYTHON3:-python3}" python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null
  then
    yaml_python=$p
    break
  fi
done
if [ -n "$yaml_python" ]; then
  ran_tool=1
  if AE_SRCDIR="$src" "$yaml_python" \
    "$src/tests/integration/check_deploy_fleet.py" \
    "$build/server/archevald" >"$tmp/fleet" 2>&1; then
    ok "the fleet's deploy kit is consistent ($(tail -n 1 "$tmp/fleet"))"
  else
    fail "the fleet's deploy kit is consistent"
    grep -v '^ok: ' "$tmp/fleet" | sed 's/^/    /'
  fi
else
  echo "skipped: no Python with PyYAML for check_deploy_fleet.py"
fi

if command -v shellcheck >/dev/null 2>&1; then
  ran_tool=1
  check "shellcheck test_deploy.sh" shellcheck -s sh "$0"
fi

if [ "$ran_tool" = 0 ]; then
  echo "skipped: none of systemd-analyze, yamllint, shellcheck is installed"
  echo "$passed passed, $failed failed"
  exit 77
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
