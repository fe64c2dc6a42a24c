#!/bin/sh
# demo.sh: the README's first command.  Installs the dependencies, builds,
# starts archevald on 127.0.0.1:8000 (host backend), scores the example
# architectures through it with the archeval CLI, runs a short NAS search
# with the Python client, and leaves the service running (its PID is in
# build/archevald.pid).
#
# Data: CIFAR-10 when there is some (the folder $ARCHEVAL_CIFAR10 names,
# e.g. a cifar-10-batches-bin, or else the sample in ../shared/data/cifar10
# beside a checkout), registered as "cifar10"; otherwise the CIFAR-10
# example runs on synthetic 3x32x32 data.  Fashion-MNIST is registered too
# when Debian's dataset-fashion-mnist is installed.  The script says which.
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
cifar=""
if [ -n "${ARCHEVAL_CIFAR10:-}" ]; then
  cifar=$ARCHEVAL_CIFAR10
  echo "data: CIFAR-10 from $cifar (ARCHEVAL_CIFAR10), registered as cifar10"
elif [ -d "$top/../shared/data/cifar10" ]; then
  cifar=$(cd "$top/../shared/data/cifar10" && pwd)
  echo "data: the CIFAR-10 sample in $cifar, registered as cifar10"
else
  echo "data: no CIFAR-10 here (no ../shared/data/cifar10, ARCHEVAL_CIFAR10"
  echo "      unset): the examples run on synthetic data.  README.md, 'Data"
  echo "      sets', says how to get CIFAR-10 and register it."
fi
if [ -n "$cifar" ]; then
  set -- --dataset "cifar10=$cifar"
else
  set --
fi
build/server/archevald --http-port "$port" --state-dir build/archeval-state \
  "$@" >build/archevald.log 2>&1 &
echo $! >build/archevald.pid
echo "archevald started (pid $(cat build/archevald.pid)), log in build/archevald.log"
i=0
until curl -fs "$server/v1/health/ready" >/dev/null; do
  if ! kill -0 "$(cat build/archevald.pid)" 2>/dev/null; then
    echo "archevald exited:"; tail -5 build/archevald.log; exit 1
  fi
  i=$((i + 1)); [ $i -lt 600 ] || { echo "archevald did not become ready"; exit 1; }
  sleep 0.2
done
echo "ready: $(curl -s "$server/v1")"
echo "datasets the daemon knows (GET /v1/datasets):"
curl -s "$server/v1/datasets" | python3 -c '
import json, sys
for d in json.load(sys.stdin)["datasets"]:
    if d.get("size") is None:
        print("  %s: drawn from the seed, any shape" % d["name"])
    else:
        print("  %s: %s, %s split, %d samples of %s, %d classes" % (
            d["name"], d.get("format"), d.get("split"), d["size"],
            "x".join(str(k) for k in d["shape"]), d["num_classes"]))'
export ARCHEVAL_SERVER="$server"
for f in tests/data/examples/*.json; do
  if grep -q '"dataset": "cifar10"' "$f" && [ -z "$cifar" ]; then
    echo "== $f (data: synthetic 3x32x32 instead of cifar10)"
    synthetic='"dataset": "synthetic", "input_shape": [3, 32, 32]'
    sed "s/\"dataset\": \"cifar10\"/$synthetic/" "$f" >build/demo-synthetic.json
    build/clients/archeval submit --wait build/demo-synthetic.json
  else
    used=$(grep -o '"dataset": *"[^"]*"' "$f" | head -1 | sed 's/.*: *//')
    echo "== $f (data: ${used:-\"synthetic\"})"
    build/clients/archeval submit --wait "$f"
  fi
done
echo "== a short NAS-Bench-201 search (random search, then regularised"
echo "   evolution; synthetic data)"
PYTHONPATH=clients/python python3 clients/python/examples/nas_search.py \
  --server "$server" --quick --budget 12
echo
echo "archevald is still running at $server (stop it: kill \$(cat build/archevald.pid))"
