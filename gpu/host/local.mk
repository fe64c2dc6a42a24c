# gpu/host/local.mk: the executors' shared planner and activation table
# (gpu/plan.[ch], gpu/activation.h), the host backend's network executor
# (gpu/host/), its float64 reference and graph builder, their unit tests
# and the NTK benchmark.
gpu_libaeengine_a_SOURCES += gpu/activation.h gpu/plan.c gpu/plan.h \
	gpu/host/net.c gpu/host/net.h \
	gpu/host/net_internal.h gpu/host/transpose8.h gpu/host/net_real.h gpu/host/net_kernels.c gpu/host/net_normals.c gpu/host/net_signs.c \
	gpu/host/net_kernels_typed.c gpu/host/net_conv_direct.c gpu/host/net_conv_wino.c gpu/host/net_gram.c gpu/host/net_cross.c gpu/host/net_parts.c gpu/host/net_ntk.c gpu/host/net_jet.c \
	gpu/host/net_ops.c gpu/host/net64_ops.c \
	gpu/host/net_patterns.c gpu/host/net64.c gpu/host/net64.h \
	gpu/host/net_grad.c gpu/host/net64_grad.c gpu/host/net_init.c \
	gpu/host/net64_ntk.c gpu/host/net64_kernels.c gpu/host/net64_jet.c gpu/host/reference.c gpu/host/reference.h \
	gpu/host/graph_build.c gpu/host/graph_build.h gpu/host/blas_env.c \
	gpu/host/blas_env.h gpu/host/cpu_class.c gpu/host/cpu_class.h \
	gpu/host/host_executor.c

check_PROGRAMS += tests/unit/test_plan tests/unit/test_net_ntk \
	tests/unit/test_net_expressivity tests/unit/test_net_conv_direct
TESTS += tests/unit/test_plan tests/unit/test_net_ntk \
	tests/unit/test_net_expressivity tests/unit/test_net_conv_direct
tests_unit_test_plan_SOURCES = tests/unit/test_plan.c
tests_unit_test_plan_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_plan_LDADD = $(TEST_LIBS)
tests_unit_test_net_ntk_SOURCES = tests/unit/test_net_ntk.c tests/unit/gemm_probe.h
tests_unit_test_net_ntk_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_net_ntk_LDADD = $(TEST_LIBS)
tests_unit_test_net_expressivity_SOURCES = tests/unit/test_net_expressivity.c
tests_unit_test_net_expressivity_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_net_expressivity_LDADD = $(TEST_LIBS)
tests_unit_test_net_conv_direct_SOURCES = tests/unit/test_net_conv_direct.c
tests_unit_test_net_conv_direct_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_net_conv_direct_LDADD = $(TEST_LIBS)

EXTRA_PROGRAMS += tests/bench/bench_ntk
AE_BENCHES += tests/bench/bench_ntk
tests_bench_bench_ntk_SOURCES = tests/bench/bench_ntk.c
tests_bench_bench_ntk_CFLAGS = $(AM_CFLAGS) -O2
tests_bench_bench_ntk_LDADD = $(ENGINE_LIBS)

# Reverse mode with train-mode BN and the weight schemes (issue 10).
check_PROGRAMS += tests/unit/test_net_grad
TESTS += tests/unit/test_net_grad
tests_unit_test_net_grad_SOURCES = tests/unit/test_net_grad.c tests/unit/gemm_probe.h
tests_unit_test_net_grad_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_net_grad_LDADD = $(TEST_LIBS)

EXTRA_PROGRAMS += tests/bench/bench_cells
AE_BENCHES += tests/bench/bench_cells
tests_bench_bench_cells_SOURCES = tests/bench/bench_cells.c \
	tests/bench/bench_rate.c tests/bench/bench_rate.h
tests_bench_bench_cells_CFLAGS = $(AM_CFLAGS) -O2
tests_bench_bench_cells_LDADD = $(ENGINE_LIBS)

# The operators of real CNNs (max_pool, concat, mul, pad, grouped and
# dilated conv, the hard activations; issue 12).
check_PROGRAMS += tests/unit/test_net_ops
TESTS += tests/unit/test_net_ops
tests_unit_test_net_ops_SOURCES = tests/unit/test_net_ops.c
tests_unit_test_net_ops_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_net_ops_LDADD = $(TEST_LIBS)
