#!/bin/sh
# test_studies_pg.sh: the study API test (test_studies.py) with archevald
# on the PostgreSQL store, in a throwaway cluster that tests/pg_cluster.sh
# starts and removes.  Skips (77) without PostgreSQL's binaries or in a
# build without libpq.
set -eu
srcdir=${AE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${AE_BUILDDIR:-.}
if ! "$builddir/server/archevald" --help 2>/dev/null | grep -q -- '--store='; then
  echo "archevald has no --store: skipped"
  exit 77
fi
AE_STUDIES_ON_PG=1
AE_STUDY_CELLS=${AE_STUDY_CELLS:-16}
export AE_STUDIES_ON_PG AE_STUDY_CELLS
exec "$srcdir/tests/pg_cluster.sh" run "${PYTHON3:-python3}" \
  "$srcdir/tests/integration/test_studies.py"
