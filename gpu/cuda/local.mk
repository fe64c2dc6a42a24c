# gpu/cuda/local.mk: the CUDA backend, built when configure found nvcc
# (--with-cuda): the executor (gpu/cuda/*.cu), its C API (cuda_core.h for C
# and CUDA, cuda_net.h for the engine), the parity test against the host
# executor and the NTK benchmark.  Without a GPU the test exits 77 and
# the benchmark says so.
if HAVE_CUDA
gpu_libaeengine_a_SOURCES += gpu/cuda/device.cu gpu/cuda/context.cu \
	gpu/cuda/net.cu gpu/cuda/ntk.cu gpu/cuda/jet.cu gpu/cuda/cuda_glue.c \
	gpu/cuda/cuda_executor.c gpu/cuda/cuda_core.h gpu/cuda/cuda_net.h gpu/cuda/cuda_internal.h \
	gpu/cuda/cuda_kernels.cuh
NVCCFLAGS = -O3 -arch=$(CUDA_ARCH) -std=c++17 -I$(top_srcdir) \
	-I$(top_builddir) \
	-Xcompiler -fPIC,-Wall,-Wextra,-Werror -Werror all-warnings
.cu.o:
	$(AM_V_GEN)$(NVCC) $(NVCCFLAGS) -c -o $@ $<
# automake tracks no dependencies of .cu files: name the headers.
AE_CUDA_DEPS = $(srcdir)/gpu/cuda/cuda_core.h \
	$(srcdir)/gpu/cuda/cuda_internal.h $(srcdir)/gpu/cuda/cuda_kernels.cuh \
	$(srcdir)/gpu/philox.h $(srcdir)/gpu/activation.h $(srcdir)/gpu/plan.h $(srcdir)/api/arch.h $(srcdir)/api/status.h
gpu/cuda/context.$(OBJEXT) gpu/cuda/net.$(OBJEXT) gpu/cuda/ntk.$(OBJEXT) \
gpu/cuda/jet.$(OBJEXT): $(AE_CUDA_DEPS)

check_PROGRAMS += tests/unit/test_cuda_parity
TESTS += tests/unit/test_cuda_parity
tests_unit_test_cuda_parity_SOURCES = tests/unit/test_cuda_parity.c
tests_unit_test_cuda_parity_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_cuda_parity_LDADD = $(TEST_LIBS) $(CUDA_LIBS) -lstdc++

# The error model: runs without a GPU.
check_PROGRAMS += tests/unit/test_cuda_errors
TESTS += tests/unit/test_cuda_errors
tests_unit_test_cuda_errors_SOURCES = tests/unit/test_cuda_errors.c
tests_unit_test_cuda_errors_CFLAGS = $(TEST_CFLAGS) $(CUDA_CFLAGS)
tests_unit_test_cuda_errors_LDADD = $(TEST_LIBS) $(CUDA_LIBS) -lstdc++

EXTRA_PROGRAMS += tests/bench/bench_cuda
AE_BENCHES += tests/bench/bench_cuda
tests_bench_bench_cuda_SOURCES = tests/bench/bench_cuda.c
tests_bench_bench_cuda_CFLAGS = $(AM_CFLAGS) -O2
tests_bench_bench_cuda_LDADD = $(ENGINE_LIBS)
endif
EXTRA_DIST += gpu/cuda/device.cu gpu/cuda/context.cu gpu/cuda/net.cu \
	gpu/cuda/ntk.cu gpu/cuda/jet.cu gpu/cuda/cuda_glue.c \
	gpu/cuda/cuda_executor.c gpu/cuda/cuda_core.h \
	gpu/cuda/cuda_net.h gpu/cuda/cuda_internal.h gpu/cuda/cuda_kernels.cuh \
	tests/unit/test_cuda_parity.c tests/unit/test_cuda_errors.c \
	tests/bench/bench_cuda.c gpu/cuda/gpu-run.sh gpu/cuda/valgrind.supp
