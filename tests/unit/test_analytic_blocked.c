/* test_analytic_blocked.c: the interruptible eigenvalue path of
 * gpu/analytic/linalg.c.  ae_sym_eigvals_blocked (dsyevd's steps driven
 * column by column) must give the very bits LAPACKE_dsyevd gives, at
 * every size around dsytrd's block and crossover and under dsyevd's
 * scaling, with one BLAS thread (the engine's) and with two; and a
 * checkpoint that fires (cancel, past deadline, deadline mid-reduction)
 * must stop it, and the Cholesky solves, with the checkpoint's error and
 * nothing leaked (the ASan build checks that).
 * Single-threaded test program; it owns everything it allocates. */
#include "config.h"

#include <check.h>
#include <lapacke.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/analytic/analytic_internal.h"
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

static Suite *blocked_suite(void) {
  Suite *s = suite_create("analytic_blocked");
  TCase *tc = tcase_create("blocked");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, bit_identical_one_thread);
  tcase_add_test(tc, bit_identical_two_threads);
  tcase_add_test(tc, bit_identical_scaled);
  tcase_add_test(tc, checkpoint_fires);
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
