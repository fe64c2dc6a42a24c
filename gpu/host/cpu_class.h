/* cpu_class.h: the instruction-set class the host engine runs as.
 *
 * The host engine's float32 numbers depend on the kernels it picks by the
 * CPU's features (docs/operations.md): archeval's AVX-512 paths and
 * OpenBLAS's SkylakeX kernels with AVX-512F, its AVX2 paths and
 * OpenBLAS's Haswell kernels with AVX2.  The golden corpus keeps one
 * expected set per class.  AE_CPU_CLASS=avx2 in the environment makes a
 * CPU with AVX-512F run as the avx2 class: the engine's AVX-512 paths off
 * and OPENBLAS_CORETYPE=Haswell (gpu/host/blas_env.c), so that one
 * AVX-512 machine computes, and checks, both classes' numbers.  Any
 * other value, or a class above the CPU's, changes nothing.
 *
 * Process-wide, read once (pthread_once); any thread. */
#ifndef AE_CPU_CLASS_H
#define AE_CPU_CLASS_H

typedef enum {
  AE_CPU_CLASS_OTHER = 0, /* neither: the portable paths */
  AE_CPU_CLASS_AVX2 = 1,  /* AVX2 and FMA */
  AE_CPU_CLASS_AVX512 = 2 /* AVX-512F (and AVX2 and FMA) */
} ae_cpu_class;

/* The class this process runs as: the CPU's (x86-64 with GCC; else
 * AE_CPU_CLASS_OTHER), lowered to avx2 when AE_CPU_CLASS says "avx2". */
ae_cpu_class ae_cpu_class_get(void);

/* The value of AE_CPU_CLASS when it is set to something this file does
 * not know (only "avx2" is), which therefore changed nothing; else NULL.
 * For the caller to warn about. */
const char *ae_cpu_class_unknown_cap(void);

/* "avx512", "avx2" or "other": the class's name, as the golden corpus and
 * its tests name it. */
const char *ae_cpu_class_name(ae_cpu_class c);

#endif
