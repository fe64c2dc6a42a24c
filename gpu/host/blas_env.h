/* blas_env.h: picks OpenBLAS's kernels for this CPU before the program
 * does anything else.
 *
 * OpenBLAS 0.3.21 chooses its kernels when it loads; on a virtual CPU it
 * does not recognise (this project's development VM among them) it falls
 * back to its Prescott (SSE3) kernels, 2-4x slower.  The choice can only
 * be made through the environment before the library loads, so the
 * program sets OPENBLAS_CORETYPE and executes itself again.
 *
 * Call it first thing in main, before any thread exists.  Process-wide
 * (environment, exec); no data of its own. */
#ifndef AE_BLAS_ENV_H
#define AE_BLAS_ENV_H

/* When OPENBLAS_CORETYPE is unset, sets it from the CPU's features
 * (AVX-512F: SkylakeX, AVX2: Haswell; else nothing) and re-executes
 * /proc/self/exe with argv once (AE_BLAS_REEXECED=1 in the environment
 * guards against loops).  Does nothing with AE_NO_CORETYPE=1, under
 * valgrind, or when OPENBLAS_CORETYPE is already set.  Returns only when
 * it did not re-execute: 0, or AE_EIO when the exec failed (the program
 * then goes on with OpenBLAS's own choice). */
int ae_blas_tune_and_reexec(int argc, char **argv);

#endif
