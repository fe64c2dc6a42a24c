# tests/fleet.mk: the tests and benchmark of running a fleet of archevald
# replicas on one PostgreSQL store (issue 15, operations): the store's
# series in /metrics, the fleet's acceptance test and the accept
# benchmark.  Included by Makefile.am after server/store.mk.

# The store's series of /metrics (latency per call, health, leases,
# replica id).
check_PROGRAMS += server/test_metrics
TESTS += server/test_metrics
server_test_metrics_SOURCES = server/test_metrics.c server/metrics.c \
	server/metrics.h server/route.c server/route.h
server_test_metrics_CFLAGS = $(TEST_CFLAGS)
server_test_metrics_LDADD = $(CHECK_LIBS)

# The acceptance test of issue 15: three replicas on one PostgreSQL in a
# throwaway cluster (tests/pg_cluster.sh), 32 clients, 3,000 jobs (600
# under the sanitizers), a replica SIGKILLed twice, PostgreSQL stopped
# for 10 s; idempotency and batch races, long polls across replicas.
# About 2 minutes on 2 cores.  Skips (77) without PostgreSQL's binaries.
TESTS += tests/integration/test_fleet_accept_pg.sh
EXTRA_DIST += tests/integration/test_fleet_accept_pg.sh \
	tests/integration/test_fleet_accept.py

# The result cache under --fleet: a job computed on one replica is
# answered cached by the other; another seed is computed; a batch mixes
# both; identical jobs in flight shared across the replicas (followers
# wait, take the leader's result, or compute when it is cancelled).
# About 60 s on 2 cores.  Skips (77) without PostgreSQL's binaries.
TESTS += tests/integration/test_fleet_cache_pg.sh
EXTRA_DIST += tests/integration/test_fleet_cache_pg.sh \
	tests/integration/test_fleet_cache.py

# The fleet's deploy kit (checked by tests/integration/test_deploy.sh,
# registered in clients/local.mk, through check_deploy_fleet.py).
EXTRA_DIST += tests/integration/check_deploy_fleet.py \
	deploy/compose.fleet.yaml deploy/k8s/fleet/kustomization.yaml \
	deploy/k8s/fleet/archevald.yaml deploy/k8s/fleet/secret.yaml \
	deploy/k8s/fleet/postgres.yaml

# make bench (Makefile.am): accepted jobs per second and accept latency,
# SQLite vs PostgreSQL, 1 and 3 replicas (tests/bench/RESULTS.md, "Fleet").
EXTRA_DIST += tests/bench/run-fleet-bench.sh tests/bench/bench_fleet.py
