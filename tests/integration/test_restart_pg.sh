#!/bin/sh
# test_restart_pg.sh: the kill-and-restart acceptance test (test_restart.py)
# with archevald on the PostgreSQL store, in a throwaway cluster that
# tests/pg_cluster.sh starts and removes.  400 jobs (AE_RESTART_JOBS to
# change).  Skips (77) without PostgreSQL's binaries or in a build without
# libpq.
set -eu
srcdir=${AE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${AE_BUILDDIR:-.}
if ! "$builddir/server/archevald" --help 2>/dev/null | grep -q -- '--store='; then
  echo "archevald has no --store: skipped"
  exit 77
fi
AE_RESTART_ON_PG=1
AE_RESTART_JOBS=${AE_RESTART_JOBS:-400}
export AE_RESTART_ON_PG AE_RESTART_JOBS
exec "$srcdir/tests/pg_cluster.sh" run "${PYTHON3:-python3}" \
  "$srcdir/tests/integration/test_restart.py"
