/* test_analytic_linalg.c: symmetric eigenvalues and the kernel quadratic
 * form with its jitter rule (metrics.md §3.2, §6 Arora H-infinity).
 * Single-threaded test program; it owns everything it allocates. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"

#define ck_near(x, y, tol)                                                     \
  do {                                                                         \
    double x_ = (x), y_ = (y);                                                 \
    ck_assert_msg(fabs(x_ - y_) <= (tol), "%s = %.15g, want %.15g (tol %g)",   \
                  #x, x_, y_, (double)(tol));                                  \
  } while (0)

START_TEST(eigenvalues) {
  const double A[4] = {2, 1, 1, 2};
  double w[3];
  ck_assert_int_eq(ae_sym_eigvals(A, 2, w, NULL), 0);
  ck_near(w[0], 1, 1e-14);
  ck_near(w[1], 3, 1e-14);
  /* The tridiagonal [-1 2 -1] of order 3: 2 - sqrt(2), 2, 2 + sqrt(2). */
  const double B[9] = {2, -1, 0, -1, 2, -1, 0, -1, 2};
  ck_assert_int_eq(ae_sym_eigvals(B, 3, w, NULL), 0);
  ck_near(w[0], 2 - sqrt(2), 1e-14);
  ck_near(w[1], 2, 1e-14);
  ck_near(w[2], 2 + sqrt(2), 1e-14);
  const double bad[4] = {1, NAN, NAN, 1};
  ck_assert_int_eq(ae_sym_eigvals(bad, 2, w, NULL), AE_EINVAL);
}
END_TEST

/* metrics.md §6: Arora H-infinity at rho = 0.6. */
START_TEST(arora_h_infinity) {
  double rho = 0.6;
  double off = rho * (M_PI - acos(rho)) / (2 * M_PI);
  ck_near(off, 0.2114498294, 1e-10);
  ck_near(off, rho * ae_dual_dd((ae_activation){AE_ACT_RELU, 0}, 1, 1, rho),
          1e-15);
  const double H[4] = {0.5, off, off, 0.5};
  const double y[2] = {1, -1};
  double q, jitter;
  ck_assert_int_eq(ae_kernel_quadratic(H, 2, y, 1, &q, &jitter, NULL), 0);
  ck_near(jitter, 0, 0);
  ck_near(q, 6.9312036652, 1e-9);
  ck_near(sqrt(2 * q / 2), 2.6327179236, 1e-9);
}
END_TEST

/* A singular PSD Gram needs the first jitter, eps = 1e-10 of tr/N. */
START_TEST(singular_needs_jitter) {
  const double G[4] = {1, 1, 1, 1};
  const double y_null[2] = {1, -1}, y_range[2] = {1, 1};
  double q, jitter;
  ck_assert_int_eq(ae_kernel_quadratic(G, 2, y_null, 1, &q, &jitter, NULL), 0);
  ck_near(jitter, 1e-10, 1e-25);
  /* (1, -1) is the null eigenvector: q = 2 / jitter. */
  ck_near(q / (2 / 1e-10), 1, 1e-5);
  ck_assert_int_eq(ae_kernel_quadratic(G, 2, y_range, 1, &q, &jitter, NULL), 0);
  ck_near(q, 2 / (2 + 1e-10), 1e-5);
}
END_TEST

/* Indefinite matrices (beyond the largest jitter) are rejected. */
START_TEST(indefinite_rejected) {
  const double G[4] = {1, 2, 2, 1};
  const double y[2] = {1, 0};
  double q, jitter;
  ck_assert_int_eq(ae_kernel_quadratic(G, 2, y, 1, &q, &jitter, NULL),
                   AE_EINVAL);
  ck_assert(isnan(q));
  const double zero[4] = {0, 0, 0, 0};
  ck_assert_int_eq(ae_kernel_quadratic(zero, 2, y, 1, &q, &jitter, NULL),
                   AE_EINVAL);
}
END_TEST

/* Several columns: tr(Y^T G^-1 Y) is the sum over columns. */
START_TEST(multi_column) {
  const double G[9] = {4, 1, 0.5, 1, 3, 0.2, 0.5, 0.2, 2};
  const double Y[6] = {1, -0.5, 0.25, 2, -1, 0.5};
  const double c0[3] = {1, 0.25, -1}, c1[3] = {-0.5, 2, 0.5};
  double q, q0, q1, jitter;
  ck_assert_int_eq(ae_kernel_quadratic(G, 3, Y, 2, &q, &jitter, NULL), 0);
  ck_assert_int_eq(ae_kernel_quadratic(G, 3, c0, 1, &q0, &jitter, NULL), 0);
  ck_assert_int_eq(ae_kernel_quadratic(G, 3, c1, 1, &q1, &jitter, NULL), 0);
  ck_near(q, q0 + q1, 1e-13);
  /* Against the explicit inverse (adjugate over determinant). */
  double inv[9], det = 0;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      int r0 = (j + 1) % 3, r1 = (j + 2) % 3, k0 = (i + 1) % 3,
          k1 = (i + 2) % 3;
      inv[i * 3 + j] =
          G[r0 * 3 + k0] * G[r1 * 3 + k1] - G[r0 * 3 + k1] * G[r1 * 3 + k0];
    }
  for (int j = 0; j < 3; j++)
    det += G[j] * inv[j * 3];
  double want = 0;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      want += c0[i] * inv[i * 3 + j] / det * c0[j];
  ck_near(q0, want, 1e-13);
}
END_TEST

static Suite *linalg_suite(void) {
  Suite *s = suite_create("analytic_linalg");
  TCase *tc = tcase_create("linalg");
  tcase_add_test(tc, eigenvalues);
  tcase_add_test(tc, arora_h_infinity);
  tcase_add_test(tc, singular_needs_jitter);
  tcase_add_test(tc, indefinite_rejected);
  tcase_add_test(tc, multi_column);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(linalg_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
