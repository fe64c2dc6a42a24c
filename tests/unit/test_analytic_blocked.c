/* test_analytic_blocked.c: the interruptible eigenvalue path of
 * gpu/analytic/linalg.c.  ae_sym_eigvals_blocked (dsyevd's steps driven
 * column by column) must give the very bits LAPACKE_dsyevd gives, at
 * every size around dsytrd's block and crossover and under dsyevd's
 * scaling, with one BLAS thread (the engine's) and with two;
 * ae_sym_eigval_min (the same reduction, then bisection for the smallest
 * alone) must agree with dsyevd's smallest to a few ulp of |A|; and a
 * checkpoint that fires (cancel, past deadline, deadline mid-reduction)
 * must stop it, and the Cholesky solves, with the checkpoint's error and
 * nothing leaked (the ASan build checks that).  The blocked Cholesky
 * (ae_cholesky_lower from AE_CHOL_BLOCKED_MIN up) must match dpotrf's
 * factor and its info, leave the upper triangle alone, and stop inside
 * the factorisation when a deadline passes there.
 * Single-threaded test program; it owns everything it allocates. */
#include "config.h"

#include <cblas.h>
#include <check.h>
#include <lapacke.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/analytic/analytic_internal.h"
#include "gpu/groups/features.h"
#include "gpu/job_control.h"

/* OpenBLAS's thread control (not declared by every cblas.h). */
extern void openblas_set_num_threads(int num_threads);

static uint64_t rng_state;

static double uniform(void) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng_state >> 11) * 0x1.0p-53;
}

/* A random symmetric n x n matrix scaled by `scale`; SPD (B B^T / n + I)
 * when spd is set. */
static double *random_sym(int n, int spd, double scale) {
  double *A = malloc(sizeof(double) * (size_t)n * n);
  ck_assert_ptr_nonnull(A);
  if (!spd) {
    for (int i = 0; i < n; i++)
      for (int j = 0; j <= i; j++)
        A[(size_t)i * n + j] = A[(size_t)j * n + i] =
            scale * (2.0 * uniform() - 1.0);
    return A;
  }
  double *B = malloc(sizeof(double) * (size_t)n * n);
  ck_assert_ptr_nonnull(B);
  for (size_t e = 0; e < (size_t)n * n; e++)
    B[e] = 2.0 * uniform() - 1.0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j <= i; j++) {
      double s = 0.0;
      for (int k = 0; k < n; k++)
        s += B[(size_t)i * n + k] * B[(size_t)j * n + k];
      A[(size_t)i * n + j] = A[(size_t)j * n + i] =
          scale * (s / n + (i == j ? 1.0 : 0.0));
    }
  free(B);
  return A;
}

static void plain_eigvals(const double *A, int n, double *w) {
  double *copy = malloc(sizeof(double) * (size_t)n * n);
  ck_assert_ptr_nonnull(copy);
  memcpy(copy, A, sizeof(double) * (size_t)n * n);
  ck_assert_int_eq(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', n, copy, n, w),
                   0);
  free(copy);
}

static void check_identical(int n, int spd, double scale) {
  double *A = random_sym(n, spd, scale);
  double *want = malloc(sizeof(double) * n), *got = malloc(sizeof(double) * n);
  ck_assert_ptr_nonnull(want);
  ck_assert_ptr_nonnull(got);
  plain_eigvals(A, n, want);
  ck_assert_int_eq(ae_sym_eigvals_blocked(A, n, got, NULL), 0);
  ck_assert_msg(memcmp(want, got, sizeof(double) * n) == 0,
                "n = %d spd = %d scale = %g: blocked eigenvalues differ from "
                "LAPACKE_dsyevd",
                n, spd, scale);
  /* The public entry (blocked from AE_EIG_BLOCKED_MIN up), with a
   * checkpoint that never fires. */
  atomic_int off = 0;
  ae_job_control ctl = {&off, 0};
  memset(got, 0, sizeof(double) * n);
  ck_assert_int_eq(ae_sym_eigvals(A, n, got, &ctl), 0);
  ck_assert_msg(memcmp(want, got, sizeof(double) * n) == 0,
                "n = %d: ae_sym_eigvals differs from LAPACKE_dsyevd", n);
  free(A);
  free(want);
  free(got);
}

static const int sizes[] = {2,   3,   5,   31,  32,  33,  63,  64,  65, 100,
                            127, 200, 255, 256, 257, 300, 383, 512, 700};

START_TEST(bit_identical_one_thread) {
  openblas_set_num_threads(1);
  rng_state = 12345;
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    check_identical(sizes[k], 0, 1.0);
    check_identical(sizes[k], 1, 1.0);
  }
}
END_TEST

START_TEST(bit_identical_two_threads) {
  openblas_set_num_threads(2);
  rng_state = 999;
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
    check_identical(sizes[k], k % 2, 1.0);
  openblas_set_num_threads(1);
}
END_TEST

/* dsyevd scales a matrix whose largest entry is below sqrt(smlnum) or
 * above sqrt(bignum); the blocked path must scale (and unscale) alike. */
START_TEST(bit_identical_scaled) {
  openblas_set_num_threads(1);
  rng_state = 7;
  check_identical(40, 0, 1e-160);
  check_identical(300, 1, 1e-160);
  check_identical(40, 0, 1e160);
  check_identical(300, 0, 1e160);
}
END_TEST

/* ae_sym_eigval_min against dsyevd's smallest eigenvalue: within
 * 8 n ulp of |A|_1 (both are accurate to about ulp * |T|_1), and nowhere
 * near the second smallest (the matrices have distinct eigenvalues). */
static void check_min(const double *A, int n) {
  double *want = malloc(sizeof(double) * n);
  ck_assert_ptr_nonnull(want);
  plain_eigvals(A, n, want);
  double norm1 = 0.0;
  for (int j = 0; j < n; j++) {
    double col = 0.0;
    for (int i = 0; i < n; i++)
      col += fabs(A[(size_t)i * n + j]);
    norm1 = col > norm1 ? col : norm1;
  }
  double got = NAN;
  ck_assert_int_eq(ae_sym_eigval_min(A, n, &got, NULL), 0);
  double tol = 8.0 * n * 0x1.0p-52 * norm1;
  ck_assert_msg(fabs(got - want[0]) <= tol,
                "n = %d: smallest eigenvalue %.17g, dsyevd's %.17g (tol %g)", n,
                got, want[0], tol);
  if (n > 1 && want[1] - want[0] > 4.0 * tol)
    ck_assert_double_lt(got, want[1] - tol);
  free(want);
}

START_TEST(eigval_min_agrees_with_dsyevd) {
  openblas_set_num_threads(1);
  rng_state = 2026;
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
    for (int spd = 0; spd < 2; spd++) {
      double *A = random_sym(sizes[k], spd, 1.0);
      check_min(A, sizes[k]);
      free(A);
    }
  /* dsyevd's scaling, both ways. */
  for (int e = -1; e <= 1; e += 2) {
    double *A = random_sym(40, 0, e < 0 ? 1e-160 : 1e160);
    check_min(A, 40);
    free(A);
  }
  /* A rank-deficient correlation matrix (64 channels over 16 positions,
   * feature_corr_lambda_min's case at a stage-3 node): its smallest
   * eigenvalue is round-off about zero. */
  int n = 64, hw = 16;
  double *Z = malloc(sizeof(double) * (size_t)n * hw);
  double *C = malloc(sizeof(double) * (size_t)n * n);
  ck_assert_ptr_nonnull(Z);
  ck_assert_ptr_nonnull(C);
  for (int i = 0; i < n; i++) {
    double mean = 0.0, ss = 0.0;
    for (int k = 0; k < hw; k++)
      mean += (Z[(size_t)i * hw + k] = uniform());
    mean /= hw;
    for (int k = 0; k < hw; k++) {
      Z[(size_t)i * hw + k] -= mean;
      ss += Z[(size_t)i * hw + k] * Z[(size_t)i * hw + k];
    }
    for (int k = 0; k < hw; k++)
      Z[(size_t)i * hw + k] /= sqrt(ss);
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hw, 1.0, Z, hw, Z,
              hw, 0.0, C, n);
  check_min(C, n);
  /* A diagonal matrix: exact. */
  memset(C, 0, sizeof(double) * (size_t)n * n);
  for (int i = 0; i < n; i++)
    C[(size_t)i * n + i] = (double)((i * 37) % n) - 20.5;
  double got = 0.0;
  ck_assert_int_eq(ae_sym_eigval_min(C, n, &got, NULL), 0);
  ck_assert_double_eq(got, -20.5);
  /* n = 1, a non-finite entry, the checkpoint. */
  double one_by_one = -3.25;
  ck_assert_int_eq(ae_sym_eigval_min(&one_by_one, 1, &got, NULL), 0);
  ck_assert_double_eq(got, -3.25);
  C[5] = NAN;
  ck_assert_int_eq(ae_sym_eigval_min(C, n, &got, NULL), AE_EINVAL);
  C[5] = 0.0;
  atomic_int cancel = 1;
  ae_job_control cancelled = {&cancel, 0};
  ck_assert_int_eq(ae_sym_eigval_min(C, n, &got, &cancelled), AE_ECANCELLED);
  free(Z);
  free(C);
}
END_TEST

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

START_TEST(checkpoint_fires) {
  openblas_set_num_threads(1);
  rng_state = 42;
  int n = 600;
  double *A = random_sym(n, 1, 1.0);
  double *w = malloc(sizeof(double) * n);
  ck_assert_ptr_nonnull(w);
  atomic_int cancel = 1;
  ae_job_control cancelled = {&cancel, 0};
  ae_job_control past = {NULL, 1}; /* 1 ns after boot: long gone */
  ck_assert_int_eq(ae_sym_eigvals(A, n, w, &cancelled), AE_ECANCELLED);
  ck_assert_int_eq(ae_sym_eigvals(A, n, w, &past), AE_EDEADLINE);
  /* Inside the reduction: the blocked path's own checkpoints. */
  ck_assert_int_eq(ae_sym_eigvals_blocked(A, n, w, &cancelled), AE_ECANCELLED);
  ck_assert_int_eq(ae_sym_eigvals_blocked(A, n, w, &past), AE_EDEADLINE);
  /* A deadline a tenth of the way through an uninterrupted run fires
   * mid-reduction, well before the run would have ended. */
  long long t0 = now_ns();
  ck_assert_int_eq(ae_sym_eigvals(A, n, w, NULL), 0);
  long long full = now_ns() - t0;
  t0 = now_ns();
  ae_job_control soon = {NULL, t0 + full / 10};
  ck_assert_int_eq(ae_sym_eigvals(A, n, w, &soon), AE_EDEADLINE);
  /* The Cholesky solves stop at their checkpoints too. */
  double *Y = malloc(sizeof(double) * n), *X = malloc(sizeof(double) * n);
  ck_assert_ptr_nonnull(Y);
  ck_assert_ptr_nonnull(X);
  for (int i = 0; i < n; i++)
    Y[i] = uniform();
  double q = 0, jitter = 0;
  ck_assert_int_eq(ae_kernel_quadratic(A, n, Y, 1, &q, &jitter, &past),
                   AE_EDEADLINE);
  ck_assert_int_eq(ae_kernel_solve(A, n, Y, 1, X, &jitter, &cancelled),
                   AE_ECANCELLED);
  atomic_int off = 0;
  ae_job_control never = {&off, 0};
  ck_assert_int_eq(ae_kernel_quadratic(A, n, Y, 1, &q, &jitter, &never), 0);
  ck_assert(q > 0);
  free(X);
  free(Y);
  free(A);
  free(w);
}
END_TEST

/* B B^T / n + I for a random n x n B, by BLAS (n in the thousands). */
static double *random_spd_blas(int n) {
  double *B = malloc(sizeof(double) * (size_t)n * n);
  double *A = malloc(sizeof(double) * (size_t)n * n);
  ck_assert_ptr_nonnull(B);
  ck_assert_ptr_nonnull(A);
  for (size_t e = 0; e < (size_t)n * n; e++)
    B[e] = 2.0 * uniform() - 1.0;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0 / n, B, n,
              B, n, 0.0, A, n);
  for (int i = 0; i < n; i++)
    A[(size_t)i * n + i] += 1.0;
  free(B);
  return A;
}

/* The blocked factor against dpotrf's, lower triangles, relative to the
 * largest entry; the upper triangle must still be A's. */
static void check_cholesky_matches(int n, int make_indefinite_at) {
  double *A = random_spd_blas(n);
  if (make_indefinite_at >= 0)
    A[(size_t)make_indefinite_at * n + make_indefinite_at] = -1.0;
  size_t bytes = sizeof(double) * (size_t)n * n;
  double *ref = malloc(bytes), *mine = malloc(bytes);
  ck_assert_ptr_nonnull(ref);
  ck_assert_ptr_nonnull(mine);
  memcpy(ref, A, bytes);
  memcpy(mine, A, bytes);
  lapack_int ref_info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, ref, n);
  int info = -7;
  ck_assert_int_eq(ae_cholesky_lower(mine, n, &info, NULL), 0);
  ck_assert_int_eq(info, (int)ref_info);
  if (make_indefinite_at >= 0) ck_assert_int_eq(info, make_indefinite_at + 1);
  double biggest = 0.0, worst = 0.0;
  int rows = info > 0 ? info - 1 : n; /* the factored leading rows */
  for (int i = 0; i < rows; i++)
    for (int j = 0; j <= i; j++) {
      double r = ref[(size_t)i * n + j];
      biggest = fmax(biggest, fabs(r));
      worst = fmax(worst, fabs(mine[(size_t)i * n + j] - r));
    }
  ck_assert_msg(worst <= 1e-12 * biggest, "n %d: |L - L_ref| %g of %g", n,
                worst, biggest);
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      ck_assert(mine[(size_t)i * n + j] == A[(size_t)i * n + j]);
  free(A);
  free(ref);
  free(mine);
}

START_TEST(cholesky_blocked_matches_dpotrf) {
  openblas_set_num_threads(1);
  rng_state = 11;
  /* A partial last block and strip; exactly one block of blocks; below
   * the crossover (dpotrf itself, the same bits). */
  check_cholesky_matches(AE_CHOL_BLOCKED_MIN + 1300 % 256 + 21, -1);
  check_cholesky_matches(2 * AE_CHOL_BLOCKED_MIN, -1);
  check_cholesky_matches(AE_CHOL_BLOCKED_MIN - 1, -1);
  /* Not positive definite: dpotrf's info, in the first block, at a block's
   * edge and deep inside the trailing update. */
  check_cholesky_matches(AE_CHOL_BLOCKED_MIN + 100, 5);
  check_cholesky_matches(AE_CHOL_BLOCKED_MIN + 100, 256);
  check_cholesky_matches(AE_CHOL_BLOCKED_MIN + 100, AE_CHOL_BLOCKED_MIN + 3);
}
END_TEST

START_TEST(cholesky_deadline_inside) {
  openblas_set_num_threads(1);
  rng_state = 5;
  int n = 3000;
  double *A = random_spd_blas(n);
  size_t bytes = sizeof(double) * (size_t)n * n;
  double *L = malloc(bytes);
  ck_assert_ptr_nonnull(L);
  int info = 0;
  atomic_int cancel = 1;
  ae_job_control cancelled = {&cancel, 0};
  ae_job_control past = {NULL, 1};
  memcpy(L, A, bytes);
  ck_assert_int_eq(ae_cholesky_lower(L, n, &info, &cancelled), AE_ECANCELLED);
  ck_assert_int_eq(ae_cholesky_lower(L, n, &info, &past), AE_EDEADLINE);
  memcpy(L, A, bytes);
  long long t0 = now_ns();
  ck_assert_int_eq(ae_cholesky_lower(L, n, &info, NULL), 0);
  long long full = now_ns() - t0;
  ck_assert_int_eq(info, 0);
  /* A deadline a tenth of the way in stops it well before its end: one
   * uninterrupted dpotrf would run all the way and fail only after. */
  memcpy(L, A, bytes);
  t0 = now_ns();
  ae_job_control soon = {NULL, t0 + full / 10};
  ck_assert_int_eq(ae_cholesky_lower(L, n, &info, &soon), AE_EDEADLINE);
  long long stopped = now_ns() - t0;
  ck_assert_msg(stopped < full * 6 / 10, "stopped after %.1f ms of %.1f ms",
                stopped / 1e6, full / 1e6);
  /* The kernel solves go through it. */
  double *Y = malloc(sizeof(double) * n);
  ck_assert_ptr_nonnull(Y);
  for (int i = 0; i < n; i++)
    Y[i] = uniform();
  double q = 0, jitter = 0;
  ck_assert_int_eq(ae_kernel_quadratic(A, n, Y, 1, &q, &jitter, NULL), 0);
  ck_assert(q > 0);
  double logdet = 0;
  ck_assert_int_eq(ae_logdet_cholesky(A, n, &logdet, &past), AE_EDEADLINE);
  free(Y);
  free(L);
  free(A);
}
END_TEST

static Suite *blocked_suite(void) {
  Suite *s = suite_create("analytic_blocked");
  TCase *tc = tcase_create("blocked");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, bit_identical_one_thread);
  tcase_add_test(tc, bit_identical_two_threads);
  tcase_add_test(tc, bit_identical_scaled);
  tcase_add_test(tc, eigval_min_agrees_with_dsyevd);
  tcase_add_test(tc, checkpoint_fires);
  tcase_add_test(tc, cholesky_blocked_matches_dpotrf);
  tcase_add_test(tc, cholesky_deadline_inside);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(blocked_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
