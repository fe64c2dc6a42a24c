/* bench_eig_deadline.c: how late a job's deadline fires inside the
 * float64 eigensolve (issue 14, item 7).  For each order n (arguments;
 * 1024 2048 by default) on a random symmetric matrix: the plain
 * LAPACKE_dsyevd call (what ae_sym_eigvals was, uninterruptible: a
 * deadline fired only after it), the interruptible ae_sym_eigvals (wall
 * and CPU seconds, and whether its eigenvalues are bit-identical), then
 * deadlines at 1/10, 3/10, ... 9/10 of that run: how long after each one
 * the call returned AE_EDEADLINE.  One BLAS thread, as the engine.
 * Single-threaded program; it owns everything it allocates. */
#include "config.h"

#include <lapacke.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"

/* OpenBLAS's thread control (not declared by every cblas.h). */
extern void openblas_set_num_threads(int num_threads);

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench(int n) {
  size_t nn = (size_t)n * (size_t)n;
  double *A = malloc(nn * sizeof *A), *copy = malloc(nn * sizeof *copy);
  double *want = malloc((size_t)n * sizeof *want);
  double *got = malloc((size_t)n * sizeof *got);
  int rc = A && copy && want && got ? AE_OK : AE_ENOMEM;
  if (rc) goto done;
  unsigned long long s = 1;
  for (int i = 0; i < n; i++)
    for (int j = 0; j <= i; j++) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      A[(size_t)i * n + j] = A[(size_t)j * n + i] =
          (double)(s >> 11) * 0x1.0p-53 - 0.5;
    }
  memcpy(copy, A, nn * sizeof *copy);
  double c0 = cpu_s();
  long long t0 = now_ns();
  if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', n, copy, n, want)) {
    rc = AE_EINTERNAL;
    goto done;
  }
  printf("n=%d plain LAPACKE_dsyevd: %.3f s wall, %.3f s cpu\n", n,
         (double)(now_ns() - t0) * 1e-9, cpu_s() - c0);
  c0 = cpu_s();
  t0 = now_ns();
  rc = ae_sym_eigvals(A, n, got, NULL);
  long long full = now_ns() - t0;
  if (rc) goto done;
  printf("n=%d ae_sym_eigvals: %.3f s wall, %.3f s cpu, bit-identical: %s\n", n,
         (double)full * 1e-9, cpu_s() - c0,
         memcmp(want, got, (size_t)n * sizeof *got) ? "NO" : "yes");
  double worst = 0.0;
  for (int k = 1; k <= 9; k += 2) {
    ae_job_control ctl = {NULL, now_ns() + full * k / 10};
    int r = ae_sym_eigvals(A, n, got, &ctl);
    double late_ms = (double)(now_ns() - ctl.deadline_ns) * 1e-6;
    if (r == AE_EDEADLINE) {
      printf("  deadline at %d/10: fired %.1f ms after it\n", k, late_ms);
      if (late_ms > worst) worst = late_ms;
    } else {
      printf("  deadline at %d/10: finished first (rc %d)\n", k, r);
    }
  }
  printf("n=%d worst: %.1f ms after the deadline\n", n, worst);
done:
  free(A);
  free(copy);
  free(want);
  free(got);
  return rc;
}

int main(int argc, char **argv) {
  openblas_set_num_threads(1);
  static const char *defaults[] = {"1024", "2048"};
  int count = argc > 1 ? argc - 1 : 2;
  for (int i = 0; i < count; i++) {
    int n = atoi(argc > 1 ? argv[i + 1] : defaults[i]);
    if (n < 2) {
      fprintf(stderr, "usage: bench_eig_deadline [N ...] (N >= 2)\n");
      return 2;
    }
    int rc = bench(n);
    if (rc) {
      fprintf(stderr, "n=%d: error %d\n", n, rc);
      return 1;
    }
  }
  return 0;
}
