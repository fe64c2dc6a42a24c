#!/bin/sh
# demo.sh: the README's first command.  Installs the dependencies, builds,
# starts archevald on 127.0.0.1:8000 (host backend, the CIFAR-10 sample
# registered as "cifar10"), scores the example architectures through it
# with the archeval CLI, runs a short NAS search with the Python client,
# and leaves the service running (its PID is in build/archevald.pid).
set -eu
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
scripts/deps.sh
scripts/build.sh
port=${ARCHEVAL_PORT:-8000}
server="http://127.0.0.1:$port"
if [ -f build/archevald.pid ] && kill -0 "$(cat build/archevald.pid)" 2>/dev/null; then
  kill "$(cat build/archevald.pid)"; sleep 1
fi
datasets=""
if [ -d "$top/../shared/data/cifar10" ]; then
  datasets="--dataset cifar10=$top/../shared/data/cifar10"
fi
# shellcheck disable=SC2086
build/server/archevald --http-port "$port" --state-dir build/archeval-state \
  $datasets >build/archevald.log 2>&1 &
echo $! >build/archevald.pid
echo "archevald started (pid $(cat build/archevald.pid)), log in build/archevald.log"
i=0
until curl -fs "$server/v1/health/ready" >/dev/null; do
  i=$((i + 1)); [ $i -lt 600 ] || { echo "archevald did not become ready"; exit 1; }
  sleep 0.2
done
echo "ready: $(curl -s "$server/v1")"
export ARCHEVAL_SERVER="$server"
for f in tests/data/examples/*.json; do
  case "$f" in *cifar10*) [ -n "$datasets" ] || continue ;; esac
  echo "== $f"
  build/clients/archeval submit --wait "$f"
done
echo "== a short NAS-Bench-201 search (random search, then regularised evolution)"
PYTHONPATH=clients/python python3 clients/python/examples/nas_search.py \
  --server "$server" --quick --budget 12
echo
echo "archevald is still running at $server (stop it: kill \$(cat build/archevald.pid))"
