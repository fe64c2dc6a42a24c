/* linalg.c: the float64 linear algebra of the scorecard: symmetric
 * eigenvalues (LAPACKE dsyevd), the kernel quadratic form
 * tr(Y^T G^-1 Y) and the solve G^-1 Y, by Cholesky with the jitter rule
 * of metrics.md §3.2.
 *
 * Pure functions working on copies; any thread may call them. */
#include "config.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"

int ae_sym_eigvals(const double *A, int n, double *w) {
  if (!A || !w || n < 1) return AE_EINVAL;
  size_t nn = (size_t)n * (size_t)n;
  for (size_t e = 0; e < nn; e++)
    if (!isfinite(A[e])) return AE_EINVAL;
  double *copy = malloc(sizeof(double) * nn);
  if (!copy) return AE_ENOMEM;
  memcpy(copy, A, sizeof(double) * nn);
  lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', n, copy, n, w);
  free(copy);
  if (info == LAPACK_WORK_MEMORY_ERROR) return AE_ENOMEM;
  return info == 0 ? 0 : AE_EINTERNAL;
}

/* Cholesky of G + jitter I into L (lower); 0 or the LAPACK info. */
static lapack_int cholesky(const double *G, int n, double jitter, double *L) {
  memcpy(L, G, sizeof(double) * (size_t)n * (size_t)n);
  for (int i = 0; i < n; i++)
    L[(size_t)i * n + i] += jitter;
  return LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, L, n);
}

/* Cholesky of G (n x n, finite) into L with the jitter rule of
 * metrics.md §3.2: none first, then eps * tr(G)/n with eps = 1e-10
 * doubling up to 1e-4.  *used gets the jitter.  0, or the last LAPACK
 * info (> 0: still indefinite). */
static lapack_int cholesky_jittered(const double *G, int n, double trace,
                                    double *L, double *used) {
  *used = 0.0;
  lapack_int info = cholesky(G, n, 0.0, L);
  for (double eps = 1e-10; info > 0; eps = fmin(2.0 * eps, 1e-4)) {
    *used = eps * trace / n;
    info = cholesky(G, n, *used, L);
    if (eps == 1e-4) break;
  }
  return info;
}

int ae_kernel_solve(const double *G, int n, const double *Y, int C, double *X,
                    double *jitter) {
  if (!G || !Y || !X || n < 1 || C < 1) return AE_EINVAL;
  if (jitter) *jitter = 0.0;
  size_t nn = (size_t)n * (size_t)n;
  double trace = 0.0;
  for (size_t e = 0; e < nn; e++)
    if (!isfinite(G[e])) return AE_EINVAL;
  for (int i = 0; i < n; i++)
    trace += G[(size_t)i * n + i];
  if (!(trace > 0)) return AE_EINVAL;
  double *L = malloc(sizeof(double) * nn);
  if (!L) return AE_ENOMEM;
  double used = 0.0;
  lapack_int info = cholesky_jittered(G, n, trace, L, &used);
  int rc = info > 0 ? AE_EINVAL : info < 0 ? AE_EINTERNAL : 0;
  if (!rc) {
    /* X = L^-T L^-1 Y. */
    memcpy(X, Y, sizeof(double) * (size_t)n * (size_t)C);
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans,
                CblasNonUnit, n, C, 1.0, L, n, X, C);
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit,
                n, C, 1.0, L, n, X, C);
    if (jitter) *jitter = used;
  }
  free(L);
  return rc;
}

int ae_kernel_quadratic(const double *G, int n, const double *Y, int C,
                        double *q, double *jitter) {
  if (!G || !Y || !q || n < 1 || C < 1) return AE_EINVAL;
  if (jitter) *jitter = 0.0;
  *q = NAN;
  size_t nn = (size_t)n * (size_t)n;
  double trace = 0.0;
  for (size_t e = 0; e < nn; e++)
    if (!isfinite(G[e])) return AE_EINVAL;
  for (int i = 0; i < n; i++)
    trace += G[(size_t)i * n + i];
  if (!(trace > 0)) return AE_EINVAL;
  double *L = malloc(sizeof(double) * nn);
  double *Z = malloc(sizeof(double) * (size_t)n * (size_t)C);
  if (!L || !Z) {
    free(L);
    free(Z);
    return AE_ENOMEM;
  }
  /* No jitter first, then eps * tr(G)/N with eps = 1e-10 doubling while
   * eps <= 1e-4. */
  double used = 0.0;
  lapack_int info = cholesky_jittered(G, n, trace, L, &used);
  int rc = 0;
  if (info > 0) {
    rc = AE_EINVAL; /* still indefinite */
  } else if (info < 0) {
    rc = AE_EINTERNAL;
  } else {
    memcpy(Z, Y, sizeof(double) * (size_t)n * (size_t)C);
    /* Z = L^-1 Y; q = ||Z||_F^2 = tr(Y^T G^-1 Y). */
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans,
                CblasNonUnit, n, C, 1.0, L, n, Z, C);
    double sum = 0.0;
    for (size_t e = 0; e < (size_t)n * (size_t)C; e++)
      sum += Z[e] * Z[e];
    *q = sum;
    if (jitter) *jitter = used;
  }
  free(L);
  free(Z);
  return rc;
}
