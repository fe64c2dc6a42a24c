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
	tests/integration/test_golden.py
# The clients' suites are registered in clients/local.mk, the store's in
# server/store.mk.

# The documentation: every relative link of README.md and docs/ resolves,
# and docs/operations.md lists the flags of archevald --help.
TESTS += tests/check_links.py
EXTRA_DIST += tests/check_links.py docs/api.md docs/scorecard.md \
	docs/operations.md

EXTRA_DIST += tests/integration/harness.py \
	tests/integration/test_http_api.py tests/integration/test_http_load.py \
	tests/integration/test_http_scorecard.py \
	tests/integration/test_http_valgrind.py \
	tests/integration/test_golden.py tests/data/golden \
	tests/summary.sh tests/bench/run-http-bench.sh
