# tests/local.mk: the integration tests (Python 3 stdlib, run against a real
# archevald on a free loopback port, all through tests/integration/harness.py)
# and how automake runs them.  Unit tests are registered by each component's
# own fragment.
TEST_EXTENSIONS = .py .sh
PY_LOG_COMPILER = $(PYTHON3)
SH_LOG_COMPILER = $(SHELL)

# The daemon's HTTP suite (server/).
TESTS += tests/integration/test_http_api.py \
	tests/integration/test_http_load.py \
	tests/integration/test_http_scorecard.py \
	tests/integration/test_http_valgrind.py \
	tests/integration/test_golden.py \
	tests/integration/test_golden_avx2.sh \
	tests/integration/test_cnn_ops.py \
	tests/integration/test_models.py \
	tests/integration/test_deadline_linalg.py
# The clients' suites are registered in clients/local.mk, the store's in
# server/store.mk.

# The documentation: every relative link of README.md and docs/ resolves,
# and docs/operations.md lists the flags of archevald --help.
TESTS += tests/check_links.py
EXTRA_DIST += tests/check_links.py docs/api.md docs/scorecard.md \
	docs/operations.md

EXTRA_DIST += tests/integration/harness.py tests/integration/test_models.py \
	tests/integration/test_http_api.py tests/integration/test_http_load.py \
	tests/integration/test_http_scorecard.py \
	tests/integration/test_http_valgrind.py \
	tests/integration/test_golden.py tests/data/golden \
	tests/integration/test_golden_avx2.sh \
	tests/integration/test_cnn_ops.py \
	tests/integration/test_deadline_linalg.py \
	tests/summary.sh tests/bench/run-http-bench.sh

# The PyTorch reference of the ranking metrics (ranking.md §1-4) held to
# hand cases; skips (77) where $(PYTHON3) has no torch.
TESTS += tests/ref/test_ranking_reference.py
EXTRA_DIST += tests/ref/README.md tests/ref/ae_torch_net.py \
	tests/ref/torch_ranking.py tests/ref/test_ranking_reference.py \
	tests/bench/torch_ntk.py

# The engine's ranking metrics held to the PyTorch reference on NB201 cells:
# dump_ranking writes a dump per cell (the engine's values in expected.json),
# test_ranking_torch.sh runs torch_ranking.py on them (77 without torch).
check_PROGRAMS += tests/ref/dump_ranking
TESTS += tests/ref/test_ranking_torch.py
EXTRA_DIST += tests/ref/test_ranking_torch.py tests/data/cnn_ops_graph.json
tests_ref_dump_ranking_SOURCES = tests/ref/dump_ranking.c
tests_ref_dump_ranking_CFLAGS = $(AM_CFLAGS) -O2
tests_ref_dump_ranking_LDADD = $(ENGINE_LIBS)

# make bench: seconds per architecture of each ranking metric and profile
# on random NB201 cells (10 by default; bench_ranking --cells 50 for
# tests/bench/RESULTS.md).
EXTRA_PROGRAMS += tests/bench/bench_ranking
AE_BENCHES += tests/bench/bench_ranking
tests_bench_bench_ranking_SOURCES = tests/bench/bench_ranking.c \
	tests/bench/bench_rate.c tests/bench/bench_rate.h
tests_bench_bench_ranking_CFLAGS = $(AM_CFLAGS) -O2
tests_bench_bench_ranking_LDADD = $(ENGINE_LIBS)

# nb101 and darts end to end (api/arch_cells.c, the lowerings in
# api/lower.c).
TESTS += tests/integration/test_http_cells.py
EXTRA_DIST += tests/integration/test_http_cells.py
