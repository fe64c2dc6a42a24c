# gpu/analytic/local.mk: build fragment (included by Makefile.am).
# The analytic side of the engine: dual kernels, the infinite-width DAG
# recursion, path statistics, bounds and float64 linear algebra.
gpu_libaeengine_a_SOURCES += gpu/analytic/analytic.h \
	gpu/analytic/analytic_internal.h gpu/analytic/dual.c \
	gpu/analytic/kernels.c gpu/analytic/paths.c gpu/analytic/bounds.c \
	gpu/analytic/linalg.c

# Unit tests (tests/unit/test_analytic_*.c).
ANALYTIC_TESTS = tests/unit/test_analytic_dual \
	tests/unit/test_analytic_kernels tests/unit/test_analytic_paths \
	tests/unit/test_analytic_linalg tests/unit/test_analytic_blocked
check_PROGRAMS += $(ANALYTIC_TESTS)
TESTS += $(ANALYTIC_TESTS)
tests_unit_test_analytic_dual_SOURCES = tests/unit/test_analytic_dual.c
tests_unit_test_analytic_dual_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_analytic_dual_LDADD = $(TEST_LIBS)
tests_unit_test_analytic_kernels_SOURCES = tests/unit/test_analytic_kernels.c
tests_unit_test_analytic_kernels_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_analytic_kernels_LDADD = $(TEST_LIBS)
tests_unit_test_analytic_paths_SOURCES = tests/unit/test_analytic_paths.c
tests_unit_test_analytic_paths_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_analytic_paths_LDADD = $(TEST_LIBS)
tests_unit_test_analytic_linalg_SOURCES = tests/unit/test_analytic_linalg.c
tests_unit_test_analytic_linalg_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_analytic_linalg_LDADD = $(TEST_LIBS)

tests_unit_test_analytic_blocked_SOURCES = tests/unit/test_analytic_blocked.c
tests_unit_test_analytic_blocked_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_analytic_blocked_LDADD = $(TEST_LIBS)

# make bench: how late a deadline fires inside the eigensolve (numbers in
# tests/bench/RESULTS.md).
EXTRA_PROGRAMS += tests/bench/bench_eig_deadline
AE_BENCHES += tests/bench/bench_eig_deadline
tests_bench_bench_eig_deadline_SOURCES = tests/bench/bench_eig_deadline.c
tests_bench_bench_eig_deadline_CFLAGS = $(AM_CFLAGS) -O2
tests_bench_bench_eig_deadline_LDADD = $(ENGINE_LIBS)
