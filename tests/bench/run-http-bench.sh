#!/bin/sh
# run-http-bench.sh BUILDDIR: archevald's HTTP throughput with wrk.
#
# Starts BUILDDIR/server/archevald on a free loopback port (host backend,
# --log-level warn, a large --max-queue), then runs wrk with 64
# connections and 2 threads for AE_BENCH_SECS (10) seconds each:
#   1. GET /v1/jobs/{id} on a finished job (the cached job body);
#   2. POST /v1/jobs, a topology-only mlp_dag job (wrk Lua script), with
#      the job store at --store-sync normal;
#   3. the same POST with --no-store (the HTTP + validation path alone),
#      at 64 connections and at 4 (latency when not saturated).
# Prints wrk's report (--latency: p50/p90/p99) for each.  The numbers go by
# hand into tests/bench/RESULTS.md, section "HTTP".  Exit 77 without wrk.
set -u
builddir=${1:-.}
daemon="$builddir/server/archevald"
secs=${AE_BENCH_SECS:-10}
command -v wrk >/dev/null 2>&1 || { echo "wrk not installed: skipped"; exit 77; }
[ -x "$daemon" ] || { echo "no $daemon"; exit 1; }
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  port=$(free_port)
  "$daemon" --http-port "$port" --backend host --log-level warn \
    --max-queue 100000000 --max-connections 4096 \
    --max-connections-per-ip 4096 "$@" >>"$work/daemon.log" 2>&1 &
  pid=$!
  i=0
  until curl -sf "http://127.0.0.1:$port/v1/health/ready" >/dev/null; do
    i=$((i + 1))
    [ $i -gt 600 ] && { echo "daemon not ready"; tail "$work/daemon.log"; exit 1; }
    sleep 0.1
  done
}

stop() {
  kill -TERM "$pid" && wait "$pid"
  echo "daemon exit status $?"
  pid=
}

body='{"architecture":{"type":"mlp_dag","dag":"2_21_112"},"metrics":["topology"]}'
cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
EOF

echo "== archevald HTTP benchmark: $(nproc) cores, wrk -t2 -c64 -d${secs}s"
start --state-dir "$work/state" --store-sync normal
id=$(curl -sf -H 'Content-Type: application/json' -d "$body" \
  "http://127.0.0.1:$port/v1/jobs" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf "http://127.0.0.1:$port/v1/jobs/$id?wait_ms=10000" >/dev/null
echo "== GET /v1/jobs/{id} (finished job)"
wrk -t2 -c64 -d"${secs}s" --latency "http://127.0.0.1:$port/v1/jobs/$id"
echo "== POST /v1/jobs (store: WAL, synchronous=NORMAL)"
wrk -t2 -c64 -d"${secs}s" --latency -s "$work/post.lua" \
  "http://127.0.0.1:$port/v1/jobs"
stop
start --no-store
echo "== POST /v1/jobs (--no-store)"
wrk -t2 -c64 -d"${secs}s" --latency -s "$work/post.lua" \
  "http://127.0.0.1:$port/v1/jobs"
echo "== POST /v1/jobs (--no-store, 4 connections: latency unsaturated)"
wrk -t2 -c4 -d"${secs}s" --latency -s "$work/post.lua" \
  "http://127.0.0.1:$port/v1/jobs"
stop
