/* linalg.c: the float64 linear algebra of the scorecard: symmetric
 * eigenvalues (what LAPACKE dsyevd computes) or the smallest alone (by
 * bisection on the same tridiagonal), the kernel quadratic form
 * tr(Y^T G^-1 Y) and the solve G^-1 Y, by Cholesky with the jitter rule
 * of metrics.md §3.2.
 *
 * The eigenvalues of a large matrix take seconds, so above
 * AE_EIG_BLOCKED_MIN this file drives dsyevd's steps itself (the scaling,
 * dsytrd's blocked Householder reduction column by column with the very
 * BLAS/LAPACK calls dsytrd and dlatrd make, in the same order, then
 * dsterf) and passes the caller's ae_job_control checkpoint after every
 * column: the values are bit-identical to the plain call (tested by
 * test_analytic_blocked), and a deadline or a cancel stops the work
 * within one matrix-vector product.  Likewise from AE_CHOL_BLOCKED_MIN up
 * the Cholesky factorisation is a right-looking blocked one (dpotrf on
 * the diagonal blocks, dtrsm, then dgemm/dsyrk on strips of the trailing
 * matrix) with a checkpoint after every strip; below it, one dpotrf.
 *
 * Pure functions working on copies; any thread may call them.  The
 * job control is read, never written. */
#include "config.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/analytic/analytic_internal.h"

/* Fortran BLAS/LAPACK entry points that lapack.h does not declare (the
 * trailing size_t arguments are gfortran's hidden string lengths). */
extern int ilaenv_(const int *ispec, const char *name, const char *opts,
                   const int *n1, const int *n2, const int *n3, const int *n4,
                   size_t name_len, size_t opts_len);
extern void dsytd2_(const char *uplo, const int *n, double *a, const int *lda,
                    double *d, double *e, double *tau, int *info,
                    size_t uplo_len);
extern void dsyr2k_(const char *uplo, const char *trans, const int *n,
                    const int *k, const double *alpha, const double *a,
                    const int *lda, const double *b, const int *ldb,
                    const double *beta, double *c, const int *ldc,
                    size_t uplo_len, size_t trans_len);
extern void dsymv_(const char *uplo, const int *n, const double *alpha,
                   const double *a, const int *lda, const double *x,
                   const int *incx, const double *beta, double *y,
                   const int *incy, size_t uplo_len);
extern void dgemv_(const char *trans, const int *m, const int *n,
                   const double *alpha, const double *a, const int *lda,
                   const double *x, const int *incx, const double *beta,
                   double *y, const int *incy, size_t trans_len);
extern void dscal_(const int *n, const double *alpha, double *x,
                   const int *incx);
extern double ddot_(const int *n, const double *x, const int *incx,
                    const double *y, const int *incy);
extern void daxpy_(const int *n, const double *alpha, const double *x,
                   const int *incx, double *y, const int *incy);

/* Column-major element (i, j), 1-based as in the LAPACK sources. */
#define CM(a, ld, i, j) ((a)[((size_t)(i)-1) + ((size_t)(j)-1) * (size_t)(ld)])

static const int ione = 1;
static const double one = 1.0, mone = -1.0, zero = 0.0;

/* dlatrd with UPLO = 'U' (reference LAPACK 3.x): reduce the last nb
 * columns of the n x n upper triangle of a, building W (n x nb, ldw) for
 * the trailing update.  The same calls in the same order as the Fortran,
 * so the same bits; a checkpoint after every column. */
static int latrd_upper(int n, int nb, double *a, int lda, double *e,
                       double *tau, double *w, int ldw,
                       const ae_job_control *ctl) {
  for (int i = n; i >= n - nb + 1; i--) {
    int iw = i - n + nb;
    int nmi = n - i, im1 = i - 1;
    if (i < n) {
      /* Update A(1:i, i). */
      dgemv_("N", &i, &nmi, &mone, &CM(a, lda, 1, i + 1), &lda,
             &CM(w, ldw, i, iw + 1), &ldw, &one, &CM(a, lda, 1, i), &ione, 1);
      dgemv_("N", &i, &nmi, &mone, &CM(w, ldw, 1, iw + 1), &ldw,
             &CM(a, lda, i, i + 1), &lda, &one, &CM(a, lda, 1, i), &ione, 1);
    }
    if (i > 1) {
      /* The reflector H(i) that annihilates A(1:i-2, i). */
      LAPACK_dlarfg(&im1, &CM(a, lda, i - 1, i), &CM(a, lda, 1, i), &ione,
                    &tau[i - 2]);
      e[i - 2] = CM(a, lda, i - 1, i);
      CM(a, lda, i - 1, i) = 1.0;
      /* W(1:i-1, iw). */
      dsymv_("U", &im1, &one, a, &lda, &CM(a, lda, 1, i), &ione, &zero,
             &CM(w, ldw, 1, iw), &ione, 1);
      if (i < n) {
        dgemv_("T", &im1, &nmi, &one, &CM(w, ldw, 1, iw + 1), &ldw,
               &CM(a, lda, 1, i), &ione, &zero, &CM(w, ldw, i + 1, iw), &ione,
               1);
        dgemv_("N", &im1, &nmi, &mone, &CM(a, lda, 1, i + 1), &lda,
               &CM(w, ldw, i + 1, iw), &ione, &one, &CM(w, ldw, 1, iw), &ione,
               1);
        dgemv_("T", &im1, &nmi, &one, &CM(a, lda, 1, i + 1), &lda,
               &CM(a, lda, 1, i), &ione, &zero, &CM(w, ldw, i + 1, iw), &ione,
               1);
        dgemv_("N", &im1, &nmi, &mone, &CM(w, ldw, 1, iw + 1), &ldw,
               &CM(w, ldw, i + 1, iw), &ione, &one, &CM(w, ldw, 1, iw), &ione,
               1);
      }
      dscal_(&im1, &tau[i - 2], &CM(w, ldw, 1, iw), &ione);
      double alpha =
          -0.5 * tau[i - 2] *
          ddot_(&im1, &CM(w, ldw, 1, iw), &ione, &CM(a, lda, 1, i), &ione);
      daxpy_(&im1, &alpha, &CM(a, lda, 1, i), &ione, &CM(w, ldw, 1, iw), &ione);
    }
    int rc = ae_job_checkpoint(ctl);
    if (rc) return rc;
  }
  return 0;
}

/* dsytrd with UPLO = 'U' and the block size dsyevd's workspace gives it
 * (ilaenv's, with LWORK = n * nb): a (n x n column-major, upper) becomes
 * the tridiagonal d, e.  work: n * ilaenv(1, "DSYTRD") doubles. */
static int sytrd_upper(int n, double *a, double *d, double *e, double *tau,
                       double *work, const ae_job_control *ctl) {
  const int m1 = -1, ispec1 = 1, ispec3 = 3;
  int lda = n, ldwork = n;
  int nb = ilaenv_(&ispec1, "DSYTRD", "U", &n, &m1, &m1, &m1, 6, 1);
  int nx = n;
  if (nb > 1 && nb < n) {
    int x = ilaenv_(&ispec3, "DSYTRD", "U", &n, &m1, &m1, &m1, 6, 1);
    nx = nb > x ? nb : x;
    if (nx >= n) nx = n;
  } else {
    nb = 1;
  }
  int kk = n - ((n - nx + nb - 1) / nb) * nb;
  for (int i = n - nb + 1; i >= kk + 1; i -= nb) {
    int rc = latrd_upper(i + nb - 1, nb, a, lda, e, tau, work, ldwork, ctl);
    if (rc) return rc;
    int im1 = i - 1;
    dsyr2k_("U", "N", &im1, &nb, &mone, &CM(a, lda, 1, i), &lda, work, &ldwork,
            &one, a, &lda, 1, 1);
    for (int j = i; j <= i + nb - 1; j++) {
      CM(a, lda, j - 1, j) = e[j - 2];
      d[j - 1] = CM(a, lda, j, j);
    }
    rc = ae_job_checkpoint(ctl);
    if (rc) return rc;
  }
  int info = 0;
  dsytd2_("U", &kk, a, &lda, d, e, tau, &info, 1);
  return info == 0 ? 0 : AE_EINTERNAL;
}

/* The block size sytrd_upper works with (its workspace is n times it). */
static int sytrd_block(int n) {
  const int m1 = -1, ispec1 = 1;
  int nb = ilaenv_(&ispec1, "DSYTRD", "U", &n, &m1, &m1, &m1, 6, 1);
  return nb > 1 ? nb : 1;
}

/* dsyevd's first steps on A (row-major n x n, upper triangle read, n >=
 * 2): the column-major copy LAPACKE's row-major call makes, the scaling of
 * a matrix whose largest entry is tiny or huge (*sigma: its factor, 1.0
 * when none), and dsytrd's reduction driven column by column: d (n) and e
 * (n - 1) the tridiagonal of sigma * A. */
static int reduce_to_tridiagonal(const double *A, int n, double *d, double *e,
                                 double *sigma, const ae_job_control *ctl) {
  size_t nn = (size_t)n * (size_t)n;
  int nb = sytrd_block(n);
  double *a = malloc(sizeof(double) * nn);
  double *tau = malloc(sizeof(double) * (size_t)n);
  double *work = malloc(sizeof(double) * (size_t)n * (size_t)nb);
  int rc = 0;
  *sigma = 1.0;
  if (!a || !tau || !work) rc = AE_ENOMEM;
  if (!rc) {
    for (int j = 0; j < n; j++)
      for (int i = 0; i <= j; i++)
        a[(size_t)i + (size_t)j * n] = A[(size_t)i * n + j];
    double safmin = LAPACK_dlamch("S"), eps = LAPACK_dlamch("P");
    double smlnum = safmin / eps, bignum = 1.0 / smlnum;
    double rmin = sqrt(smlnum), rmax = sqrt(bignum);
    double anrm = LAPACK_dlansy("M", "U", &n, a, &n, work);
    if (anrm > 0.0 && anrm < rmin)
      *sigma = rmin / anrm;
    else if (anrm > rmax)
      *sigma = rmax / anrm;
    if (*sigma != 1.0) {
      const int kzero = 0;
      int info = 0;
      LAPACK_dlascl("U", &kzero, &kzero, &one, sigma, &n, &n, a, &n, &info);
      if (info) rc = AE_EINTERNAL;
    }
    if (!rc) rc = sytrd_upper(n, a, d, e, tau, work, ctl);
    if (!rc) rc = ae_job_checkpoint(ctl);
  }
  free(a);
  free(tau);
  free(work);
  return rc;
}

int ae_sym_eigvals_blocked(const double *A, int n, double *w,
                           const ae_job_control *ctl) {
  if (!A || !w || n < 2) return AE_EINVAL;
  double *e = malloc(sizeof(double) * (size_t)n);
  if (!e) return AE_ENOMEM;
  double sigma;
  int rc = reduce_to_tridiagonal(A, n, w, e, &sigma, ctl);
  if (!rc) {
    int info = 0;
    LAPACK_dsterf(&n, w, e, &info);
    if (info) rc = AE_EINTERNAL;
  }
  if (!rc && sigma != 1.0) {
    double inv = 1.0 / sigma;
    dscal_(&n, &inv, w, &ione);
  }
  free(e);
  return rc;
}

/* What both public eigenvalue entries check first: every entry of the
 * n x n A finite (else AE_EINVAL), then the checkpoint. */
static int eig_entry(const double *A, int n, const ae_job_control *ctl) {
  size_t nn = (size_t)n * (size_t)n;
  for (size_t k = 0; k < nn; k++)
    if (!isfinite(A[k])) return AE_EINVAL;
  return ae_job_checkpoint(ctl);
}

int ae_sym_eigval_min(const double *A, int n, double *lambda_min,
                      const ae_job_control *ctl) {
  if (!A || !lambda_min || n < 1) return AE_EINVAL;
  int rc = eig_entry(A, n, ctl);
  if (rc) return rc;
  if (n == 1) {
    *lambda_min = A[0];
    return AE_OK;
  }
  /* d, e, dstebz's w, then its iblock and isplit. */
  double *d = malloc(sizeof(double) * (size_t)n * 3);
  lapack_int *blocks = malloc(sizeof(lapack_int) * (size_t)n * 2);
  if (!d || !blocks) rc = AE_ENOMEM;
  double sigma = 1.0;
  if (!rc) rc = reduce_to_tridiagonal(A, n, d, d + n, &sigma, ctl);
  if (!rc) {
    double *w = d + 2 * (size_t)n;
    lapack_int m = 0, nsplit = 0;
    /* The first eigenvalue by bisection to an absolute tolerance of
     * ulp * |T|_1 (abstol 0), the accuracy of dsterf's. */
    lapack_int info = LAPACKE_dstebz('I', 'E', n, 0.0, 0.0, 1, 1, 0.0, d, d + n,
                                     &m, &nsplit, w, blocks, blocks + n);
    if (info == LAPACK_WORK_MEMORY_ERROR)
      rc = AE_ENOMEM;
    else if (info != 0 || m != 1)
      rc = AE_EINTERNAL;
    else
      *lambda_min = sigma != 1.0 ? w[0] * (1.0 / sigma) : w[0];
  }
  free(d);
  free(blocks);
  return rc;
}

int ae_sym_eigvals(const double *A, int n, double *w,
                   const ae_job_control *ctl) {
  if (!A || !w || n < 1) return AE_EINVAL;
  int rc = eig_entry(A, n, ctl);
  if (rc) return rc;
  size_t nn = (size_t)n * (size_t)n;
  if (n >= AE_EIG_BLOCKED_MIN) return ae_sym_eigvals_blocked(A, n, w, ctl);
  double *copy = malloc(sizeof(double) * nn);
  if (!copy) return AE_ENOMEM;
  memcpy(copy, A, sizeof(double) * nn);
  lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', n, copy, n, w);
  free(copy);
  if (info == LAPACK_WORK_MEMORY_ERROR) return AE_ENOMEM;
  return info == 0 ? 0 : AE_EINTERNAL;
}

/* The blocked Cholesky's diagonal blocks (columns per step) and the rows
 * of the trailing update between two checkpoints: at n = 4096 one step is
 * at most 2 * 1024 * 4096 * 256 flops (about 50 ms on one core). */
#define CHOL_BLOCK 256
#define CHOL_STRIP 1024

/* The reference: LAPACK's dpotrf in one uninterrupted call. */
static int cholesky_plain(double *A, int n, int *info) {
  lapack_int r = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, A, n);
  if (r < 0) return r == LAPACK_WORK_MEMORY_ERROR ? AE_ENOMEM : AE_EINTERNAL;
  *info = (int)r;
  return AE_OK;
}

/* Right-looking blocked Cholesky, A = L L^T in place (row-major, lower
 * triangle; the upper one is not touched).  Per block column k: dpotrf of
 * the diagonal block, the panel below it by a triangular solve, and the
 * trailing lower triangle updated in strips of CHOL_STRIP rows (dgemm left
 * of the strip's diagonal block, dsyrk on it), a checkpoint after each. */
static int cholesky_blocked(double *A, int n, int *info,
                            const ae_job_control *ctl) {
  for (int k = 0; k < n; k += CHOL_BLOCK) {
    int b = n - k < CHOL_BLOCK ? n - k : CHOL_BLOCK;
    double *a11 = A + (size_t)k * n + k;
    lapack_int r = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', b, a11, n);
    if (r < 0) return r == LAPACK_WORK_MEMORY_ERROR ? AE_ENOMEM : AE_EINTERNAL;
    if (r > 0) {
      *info = k + (int)r;
      return AE_OK;
    }
    int m = n - k - b;
    if (m == 0) break;
    double *a21 = A + (size_t)(k + b) * n + k;
    /* A21 := A21 L11^-T */
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit,
                m, b, 1.0, a11, n, a21, n);
    int rc = ae_job_checkpoint(ctl);
    if (rc) return rc;
    /* A22 -= A21 A21^T, lower triangle, strip by strip. */
    for (int s = 0; s < m; s += CHOL_STRIP) {
      int h = m - s < CHOL_STRIP ? m - s : CHOL_STRIP;
      double *strip = A + (size_t)(k + b + s) * n + (k + b);
      const double *rows = a21 + (size_t)s * n;
      if (s > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, h, s, b, -1.0,
                    rows, n, a21, n, 1.0, strip, n);
      cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, h, b, -1.0, rows, n,
                  1.0, strip + s, n);
      rc = ae_job_checkpoint(ctl);
      if (rc) return rc;
    }
  }
  *info = 0;
  return AE_OK;
}

int ae_cholesky_lower(double *A, int n, int *info, const ae_job_control *ctl) {
  if (!A || !info || n < 1) return AE_EINVAL;
  int rc = ae_job_checkpoint(ctl);
  if (rc) return rc;
  if (n < AE_CHOL_BLOCKED_MIN)
    rc = cholesky_plain(A, n, info);
  else
    rc = cholesky_blocked(A, n, info, ctl);
  return rc ? rc : ae_job_checkpoint(ctl);
}

/* Cholesky of G + jitter I into L (lower); 0 with *info (LAPACK's: > 0
 * when not positive definite), or an error (the checkpoint's among them). */
static int cholesky(const double *G, int n, double jitter, double *L,
                    lapack_int *info, const ae_job_control *ctl) {
  memcpy(L, G, sizeof(double) * (size_t)n * (size_t)n);
  for (int i = 0; i < n; i++)
    L[(size_t)i * n + i] += jitter;
  int factor_info = 0;
  int rc = ae_cholesky_lower(L, n, &factor_info, ctl);
  *info = factor_info;
  return rc;
}

/* Cholesky of G (n x n, finite) into L with the jitter rule of
 * metrics.md §3.2: none first, then eps * tr(G)/n with eps = 1e-10
 * doubling up to 1e-4.  *used gets the jitter.  *info: 0, or the last
 * LAPACK info (> 0: still indefinite).  Returns 0, or the checkpoint's
 * error passed before each factorisation. */
static int cholesky_jittered(const double *G, int n, double trace, double *L,
                             double *used, lapack_int *info,
                             const ae_job_control *ctl) {
  *used = 0.0;
  int rc = cholesky(G, n, 0.0, L, info, ctl);
  for (double eps = 1e-10; !rc && *info > 0; eps = fmin(2.0 * eps, 1e-4)) {
    *used = eps * trace / n;
    rc = cholesky(G, n, *used, L, info, ctl);
    if (eps == 1e-4) break;
  }
  return rc;
}

int ae_kernel_solve(const double *G, int n, const double *Y, int C, double *X,
                    double *jitter, const ae_job_control *ctl) {
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
  lapack_int info = 0;
  int rc = cholesky_jittered(G, n, trace, L, &used, &info, ctl);
  if (!rc) rc = info > 0 ? AE_EINVAL : info < 0 ? AE_EINTERNAL : 0;
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
                        double *q, double *jitter, const ae_job_control *ctl) {
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
  lapack_int info = 0;
  int rc = cholesky_jittered(G, n, trace, L, &used, &info, ctl);
  if (rc) {
    /* stopped: the job's deadline or cancel */
  } else if (info > 0) {
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
