#!/bin/sh
# test_finished_cap_pg.sh: test_finished_cap.py (the cap on finished jobs
# in memory, the rest served from the store) with archevald on the
# PostgreSQL store, in a throwaway cluster that tests/pg_cluster.sh starts
# and removes.  Skips (77) without PostgreSQL's binaries or in a build
# without libpq.
set -eu
srcdir=${AE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${AE_BUILDDIR:-.}
if ! "$builddir/server/archevald" --help 2>/dev/null | grep -q -- '--store='; then
  echo "archevald has no --store: skipped"
  exit 77
fi
AE_CAP_ON_PG=1
export AE_CAP_ON_PG
exec "$srcdir/tests/pg_cluster.sh" run "${PYTHON3:-python3}" \
  "$srcdir/tests/integration/test_finished_cap.py"
