/* blas_env.h: picks OpenBLAS's kernels for this CPU before the program
 * does anything else.
 *
 * OpenBLAS 0.3.21 chooses its kernels when it loads; on a virtual CPU it
 * does not recognise (this project's development VM among them) it falls
 * back to its Prescott (SSE3) kernels, 2-4x slower.  And after every call
 * it runs on several threads, its idle threads spin for about a tenth of
 * a second: with two BLAS threads on two cores they take the core that
 * the NTK's and the forward's own helper thread (net_parts.c) needs (the
 * NB201 ResNet cell's NTK with two threads: 0.34 s spinning, 0.26 s
 * not).  Both can only be set through the environment before the library
 * loads, so the program sets OPENBLAS_CORETYPE and
 * OPENBLAS_THREAD_TIMEOUT and executes itself again.
 *
 * Call it first thing in main, before any thread exists.  Process-wide
 * (environment, exec); no data of its own. */
#ifndef AE_BLAS_ENV_H
#define AE_BLAS_ENV_H

/* Sets OPENBLAS_CORETYPE, when unset, from the class the process runs as
 * (gpu/host/cpu_class.h; avx512: SkylakeX, avx2: Haswell; else nothing;
 * not with AE_NO_CORETYPE=1) and
 * OPENBLAS_THREAD_TIMEOUT, when unset, to 4 (idle BLAS threads sleep at
 * once), and re-executes /proc/self/exe with argv once when it set either
 * (AE_BLAS_REEXECED=1 in the environment guards against loops).  Does
 * nothing under valgrind.  Returns only when it did not re-execute: 0, or
 * AE_EIO when the exec failed (the program then goes on with OpenBLAS's
 * own choices). */
int ae_blas_tune_and_reexec(int argc, char **argv);

#endif
