#!/bin/sh
# run-fleet-bench.sh BUILDDIR: bench_fleet.py (accepted jobs per second and
# accept latency, SQLite vs PostgreSQL, 1 and 3 replicas) in a throwaway
# PostgreSQL cluster with fsync on (AE_PG_DURABLE=1, like SQLite's
# --store-sync full).  Exit 77 without wrk or PostgreSQL's binaries.
set -eu
builddir=$(cd "${1:-.}" && pwd)
srcdir=$(cd "$(dirname "$0")/../.." && pwd)
AE_BUILDDIR=$builddir AE_PG_DURABLE=1 AE_PG_TIMEOUT=600
export AE_BUILDDIR AE_PG_DURABLE AE_PG_TIMEOUT
exec "$srcdir/tests/pg_cluster.sh" run "${PYTHON3:-python3}" \
  "$srcdir/tests/bench/bench_fleet.py"
