/* bench_rate.h: this core's single-thread GEMM rates, the yardstick the
 * NB201 benchmarks (bench_ranking, bench_cells) hold their arithmetic
 * to.  Pure functions of the machine; call from one thread. */
#ifndef AE_BENCH_RATE_H
#define AE_BENCH_RATE_H

/* GFLOP/s (2 per multiply-add) of C = A B at n^3 on the calling thread,
 * in float32 (cblas_sgemm) or float64 (cblas_dgemm): the best of 5 runs
 * after a warm-up, by process CPU time.  0 when the buffers could not be
 * allocated. */
double ae_bench_sgemm_gflops(int n);
double ae_bench_dgemm_gflops(int n);

#endif
