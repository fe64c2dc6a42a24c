#!/bin/sh
# test_store_pg.sh: the store's unit tests (tests/unit/test_store) on
# PostgreSQL, in a throwaway cluster that tests/pg_cluster.sh starts and
# removes.  Skips (77) without the server's binaries or in a build
# without libpq (the test binary says so).
set -eu
srcdir=${AE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${AE_BUILDDIR:-.}
exec "$srcdir/tests/pg_cluster.sh" run \
  "$builddir/tests/unit/test_store" postgresql
