/* bench_rate.c: single-thread SGEMM and DGEMM rates (bench_rate.h).
 * Stateless; each call owns its buffers. */
#include "tests/bench/bench_rate.h"

#include <cblas.h>
#include <stdlib.h>
#include <time.h>

#include "gpu/philox.h"

static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Operands of Philox normals (stream 0xbe4c); float64 or float32. */
static double gemm_gflops(int n, int dbl) {
  size_t e = (size_t)n * (size_t)n, unit = dbl ? sizeof(double) : sizeof(float);
  void *a = malloc(e * unit), *b = malloc(e * unit), *c = malloc(e * unit);
  double best = 0;
  if (a && b && c) {
    for (size_t i = 0; i < e; i++) {
      double u = ae_philox_normal(1, 0xbe4cu, 1, i);
      double v = ae_philox_normal(1, 0xbe4cu, 2, i);
      if (dbl) {
        ((double *)a)[i] = u;
        ((double *)b)[i] = v;
      } else {
        ((float *)a)[i] = (float)u;
        ((float *)b)[i] = (float)v;
      }
    }
    for (int t = 0; t < 6; t++) {
      double c0 = cpu_seconds();
      if (dbl)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a,
                    n, b, n, 0.0, c, n);
      else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a,
                    n, b, n, 0.0f, c, n);
      double s = cpu_seconds() - c0;
      double rate = s > 0 ? 2.0 * n * n * (double)n / s / 1e9 : 0;
      if (t && rate > best) best = rate;
    }
  }
  free(a);
  free(b);
  free(c);
  return best;
}

double ae_bench_sgemm_gflops(int n) {
  return gemm_gflops(n, 0);
}

double ae_bench_dgemm_gflops(int n) {
  return gemm_gflops(n, 1);
}
