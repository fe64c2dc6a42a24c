# server/store.mk: the job store's tests (owned by the store work; the
# store itself, server/store_sqlite.c, is built into archevald by
# server/local.mk).  Included by Makefile.am after server/local.mk.

# Unit tests of the SQLite store: round trips, batches, transitions,
# expiry, reopen, a second opener, a writer killed by SIGKILL mid-loop.
check_PROGRAMS += tests/unit/test_store
TESTS += tests/unit/test_store
tests_unit_test_store_SOURCES = tests/unit/test_store.c \
	server/store_sqlite.c server/store.h
tests_unit_test_store_CFLAGS = $(TEST_CFLAGS) $(SQLITE_CFLAGS)
tests_unit_test_store_LDADD = $(TEST_LIBS) $(SQLITE_LIBS)

# The acceptance test of issue 6: SIGKILL archevald while 32 clients
# submit 2,000 jobs, restart, compare with a run without kills (about a
# minute on 2 cores; AE_RESTART_JOBS=N for a quick run).  Skips (77)
# without the daemon.
TESTS += tests/integration/test_restart.py
EXTRA_DIST += tests/integration/test_restart.py
