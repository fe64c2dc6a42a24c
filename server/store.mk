# server/store.mk: the job store (owned by the store work).  archevald's
# own sources are listed in server/local.mk; the store's front end and
# the PostgreSQL backend are appended here, so that the store can grow
# without touching the daemon's fragment.  Included by Makefile.am after
# server/local.mk.

server_archevald_SOURCES += server/store.c server/job_fetch.c \
	server/job_fetch.h server/fleet.c server/fleet.h
if HAVE_LIBPQ
server_archevald_SOURCES += server/store_pg.c
server_archevald_CFLAGS += $(LIBPQ_CFLAGS)
server_archevald_LDADD += $(LIBPQ_LIBS)
endif

# Unit tests of the store: round trips, batches, transitions, expiry,
# reopen, a second opener, a writer killed by SIGKILL mid-loop, latency,
# the URL's resolution.  Run as is, on SQLite; tests/unit/test_store_pg.sh
# runs the same tests on PostgreSQL in a throwaway cluster
# (tests/pg_cluster.sh; skips, 77, without the server's binaries or a
# build with libpq), plus a server stopped and restarted mid-test.
check_PROGRAMS += tests/unit/test_store
TESTS += tests/unit/test_store tests/unit/test_store_pg.sh
tests_unit_test_store_SOURCES = tests/unit/test_store.c \
	server/store.c server/store_sqlite.c server/store.h
tests_unit_test_store_CFLAGS = $(TEST_CFLAGS) $(SQLITE_CFLAGS)
tests_unit_test_store_LDADD = $(TEST_LIBS) $(SQLITE_LIBS)
if HAVE_LIBPQ
tests_unit_test_store_SOURCES += server/store_pg.c
tests_unit_test_store_CFLAGS += $(LIBPQ_CFLAGS)
tests_unit_test_store_LDADD += $(LIBPQ_LIBS)
endif
EXTRA_DIST += tests/unit/test_store_pg.sh tests/pg_cluster.sh

# The acceptance test of issue 6: SIGKILL archevald while 32 clients
# submit 2,000 jobs, restart, compare with a run without kills (about a
# minute on 2 cores; AE_RESTART_JOBS=N for a quick run).  Skips (77)
# without the daemon.
TESTS += tests/integration/test_restart.py tests/integration/test_restart_pg.sh
EXTRA_DIST += tests/integration/test_restart.py tests/integration/test_restart_pg.sh

# The cap on finished jobs in memory (--max-finished-jobs, issue 14) and
# the jobs served from the store past it (GET, listings, idempotent
# replays, cancel, DELETE, a restart), on SQLite and on PostgreSQL.
TESTS += tests/integration/test_finished_cap.py \
	tests/integration/test_finished_cap_pg.sh
EXTRA_DIST += tests/integration/test_finished_cap.py \
	tests/integration/test_finished_cap_pg.sh

# The fleet (--fleet, issue 15): two replicas on one PostgreSQL store:
# jobs spread, readable from both, long polls across, idempotency keys,
# cancels across (running and queued), a SIGKILLed replica's job run again
# at attempt 2.  About two minutes on 2 cores.
TESTS += tests/integration/test_fleet_pg.sh
EXTRA_DIST += tests/integration/test_fleet.py tests/integration/test_fleet_pg.sh
# Studies under --fleet: created, extended, ranked and deleted from either
# of two replicas (issue 15).
TESTS += tests/integration/test_fleet_studies_pg.sh
EXTRA_DIST += tests/integration/test_fleet_studies.py \
	tests/integration/test_fleet_studies_pg.sh
# The fleet's races (issue 15): study creations on one Idempotency-Key at
# once on two replicas, a study deleted while a member runs elsewhere, the
# bound on the shared queue (--max-queue) across replicas.
TESTS += tests/integration/test_fleet_races_pg.sh
EXTRA_DIST += tests/integration/test_fleet_races.py \
	tests/integration/test_fleet_races_pg.sh
