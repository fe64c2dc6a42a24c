# gpu/cuda/local.mk: the CUDA backend, built when configure found nvcc.
if HAVE_CUDA
gpu_libaeengine_a_SOURCES += gpu/cuda/device.cu
NVCCFLAGS = -O3 -arch=$(CUDA_ARCH) -std=c++17 -I$(top_srcdir) -I$(top_builddir) \
	-Xcompiler -fPIC,-Wall,-Wextra
.cu.o:
	$(AM_V_GEN)$(NVCC) $(NVCCFLAGS) -c -o $@ $<
endif
EXTRA_DIST += gpu/cuda/device.cu
