#!/bin/sh
# test_fleet_races_pg.sh: test_fleet_races.py (the races of two
# archevald replicas sharing one PostgreSQL store with --fleet) in a
# throwaway cluster that tests/pg_cluster.sh starts and removes.  Skips (77) without PostgreSQL's
# binaries or in a build without libpq.
set -eu
srcdir=${AE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${AE_BUILDDIR:-.}
if ! "$builddir/server/archevald" --help 2>/dev/null | grep -q -- '--fleet'; then
  echo "archevald has no --fleet: skipped"
  exit 77
fi
exec "$srcdir/tests/pg_cluster.sh" run "${PYTHON3:-python3}" \
  "$srcdir/tests/integration/test_fleet_races.py"
