#!/bin/sh
# test_fleet_accept_pg.sh: the fleet's acceptance test (test_fleet_accept.py):
# three archevald replicas on one PostgreSQL store in a throwaway cluster that
# tests/pg_cluster.sh starts and removes (and stops for 10 s mid-test).
# 3,000 jobs (600 under the sanitizers; AE_FLEET_JOBS to change).  Skips
# (77) without PostgreSQL's binaries or in a build without libpq.
set -eu
srcdir=${AE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${AE_BUILDDIR:-.}
if ! "$builddir/server/archevald" --help 2>/dev/null | grep -q -- '--store='; then
  echo "archevald has no --store: skipped"
  exit 77
fi
exec "$srcdir/tests/pg_cluster.sh" run "${PYTHON3:-python3}" \
  "$srcdir/tests/integration/test_fleet_accept.py"
