/* test_analytic_dual.c: the dual activation kernels against the tables of
 * metrics.md §6, the slow adaptive reference, and erf's closed form.
 * Single-threaded test program; it owns everything it allocates. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "gpu/analytic/analytic.h"
#include "gpu/analytic/analytic_internal.h"

static ae_activation act(ae_act_fn fn) {
  ae_activation a = {fn, 0.01};
  return a;
}

static ae_activation leaky(double slope) {
  ae_activation a = {AE_ACT_LEAKY_RELU, slope};
  return a;
}

#define ck_near(x, y, tol)                                                     \
  do {                                                                         \
    double x_ = (x), y_ = (y);                                                 \
    ck_assert_msg(fabs(x_ - y_) <= (tol), "%s = %.15g, want %.15g (tol %g)",   \
                  #x, x_, y_, (double)(tol));                                  \
  } while (0)

/* metrics.md §6, (q1, q2, c) = (1, 1, 0.6). */
START_TEST(table_rho_06) {
  struct {
    ae_activation a;
    double ss, dd, tol;
  } rows[] = {
      {act(AE_ACT_RELU), 0.3387737839, 0.3524163823, 1e-9},
      {leaky(0.01), 0.3380321856, 0.3554032963, 1e-9},
      {leaky(0.2), 0.3368152217, 0.4255464847, 1e-9},
      {act(AE_ACT_ERF), 0.2619797609, 0.4630727454, 1e-9},
      {act(AE_ACT_TANH), 0.225222153527, 0.393587798095, 1e-11},
      {act(AE_ACT_SIGMOID), 0.275758266206, 0.043416431898, 1e-11},
      {act(AE_ACT_SWISH), 0.215038781843, 0.325137737329, 1e-11},
      {act(AE_ACT_GELU), 0.262515861972, 0.362295781911, 1e-11},
  };
  for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
    ck_near(ae_dual_ss(rows[k].a, 1, 1, 0.6), rows[k].ss, rows[k].tol);
    ck_near(ae_dual_dd(rows[k].a, 1, 1, 0.6), rows[k].dd, rows[k].tol);
  }
}
END_TEST

/* metrics.md §6, (1, 2, 0.5) and rho = 0. */
START_TEST(table_unequal_variance) {
  ck_near(ae_dual_ss(act(AE_ACT_RELU), 1, 2, 0.5), 0.3642988817, 1e-9);
  ck_near(ae_dual_dd(act(AE_ACT_RELU), 1, 2, 0.5), 0.3075133640, 1e-9);
  ck_near(ae_dual_ss(act(AE_ACT_ERF), 1, 2, 0.5), 0.1662579715, 1e-9);
  ck_near(ae_dual_dd(act(AE_ACT_ERF), 1, 2, 0.5), 0.3402875820, 1e-9);
  ck_near(ae_dual_ss(leaky(0.2), 1, 2, 0.5), 0.3331512843, 1e-9);
  ck_near(ae_dual_dd(leaky(0.2), 1, 2, 0.5), 0.3968085530, 1e-9);
  ck_near(ae_dual_ss(act(AE_ACT_RELU), 1, 1, 0), 0.1591549431, 1e-9);
  ck_near(ae_dual_dd(act(AE_ACT_RELU), 1, 1, 0), 0.25, 1e-15);
  ck_near(ae_dual_ss(act(AE_ACT_IDENTITY), 2, 3, 0.7), 0.7, 0);
  ck_near(ae_dual_dd(act(AE_ACT_IDENTITY), 2, 3, 0.7), 1.0, 0);
}
END_TEST

/* Chen's f-iterates h^d(0.6) with h = 2 E[relu relu] at unit variance. */
START_TEST(relu_iterates) {
  const double want[5] = {0.6, 0.6775475678, 0.7334337858, 0.7753124348,
                          0.8076478252};
  double r = 0.6;
  for (int d = 0; d < 5; d++) {
    ck_near(r, want[d], 1e-9);
    r = 2.0 * ae_dual_ss(act(AE_ACT_RELU), 1, 1, r);
  }
  double h0 = 2.0 * ae_dual_ss(act(AE_ACT_RELU), 1, 1, 0.0);
  ck_near(h0, 0.3183098862, 1e-9);
  ck_near(2.0 * ae_dual_ss(act(AE_ACT_RELU), 1, 1, h0), 0.4937310902, 1e-9);
}
END_TEST

static const double grid_q[] = {0.01, 1, 4, 16, 64, 256};
static const double grid_rho[] = {-0.9, 0, 0.5, 0.99, 1 - 1e-6};
#define N_Q (sizeof(grid_q) / sizeof(grid_q[0]))
#define N_RHO (sizeof(grid_rho) / sizeof(grid_rho[0]))

/* Smooth activations: the fast rule against nested adaptive quadrature,
 * to 1e-9 (relative where the value exceeds 1: swish and gelu grow). */
START_TEST(smooth_against_reference) {
  const ae_act_fn fns[] = {AE_ACT_TANH, AE_ACT_SIGMOID, AE_ACT_SWISH,
                           AE_ACT_GELU};
  ae_activation a = act(fns[_i]);
  for (size_t i = 0; i < N_Q; i++)
    for (size_t j = 0; j < N_RHO; j++) {
      double q = grid_q[i], c = grid_rho[j] * q;
      double ref = ae_dual_ss_reference(a, q, q, c);
      ck_near(ae_dual_ss(a, q, q, c), ref, 1e-9 * fmax(1.0, fabs(ref)));
      ref = ae_dual_dd_reference(a, q, q, c);
      ck_near(ae_dual_dd(a, q, q, c), ref, 1e-9 * fmax(1.0, fabs(ref)));
    }
  /* Unequal variances, as skip edges produce. */
  double q1 = 37.6, q2 = 1.0, c = 0.8 * sqrt(q1 * q2);
  double ref = ae_dual_ss_reference(a, q1, q2, c);
  ck_near(ae_dual_ss(a, q1, q2, c), ref, 1e-9 * fmax(1.0, fabs(ref)));
  ref = ae_dual_dd_reference(a, q2, q1, -c);
  ck_near(ae_dual_dd(a, q2, q1, -c), ref, 1e-9 * fmax(1.0, fabs(ref)));
}
END_TEST

/* erf has a closed form at every variance: the generic quadrature path
 * must reproduce it. */
START_TEST(erf_quadrature_matches_closed_form) {
  ae_activation a = act(AE_ACT_ERF);
  for (size_t i = 0; i < N_Q; i++)
    for (size_t j = 0; j < N_RHO; j++) {
      double q = grid_q[i], c = grid_rho[j] * q;
      ck_near(ae_dual_quadrature(a, 0, q, q, c), ae_dual_ss(a, q, q, c), 1e-9);
      ck_near(ae_dual_quadrature(a, 1, q, q, c), ae_dual_dd(a, q, q, c), 1e-9);
    }
  /* Far beyond the recursion's usual variances, and very unequal ones. */
  const double far[][3] = {
      {1e4, 1e4, 5e3}, {1e6, 1e6, -9e5}, {1e6, 1e-6, 0.3}, {1e-12, 1, 0}};
  for (size_t k = 0; k < 4; k++)
    for (int deriv = 0; deriv < 2; deriv++) {
      double q1 = far[k][0], q2 = far[k][1], c = far[k][2];
      double want = deriv ? ae_dual_dd(a, q1, q2, c) : ae_dual_ss(a, q1, q2, c);
      ck_near(ae_dual_quadrature(a, deriv, q1, q2, c), want, 1e-9);
    }
  ck_near(ae_dual_quadrature(a, 0, 3.0, 40.0, 5.0),
          ae_dual_ss(a, 3.0, 40.0, 5.0), 1e-9);
  ck_near(ae_dual_quadrature(a, 1, 3.0, 40.0, -5.0),
          ae_dual_dd(a, 3.0, 40.0, -5.0), 1e-9);
}
END_TEST

/* The closed forms of the piecewise-linear activations against the
 * reference quadrature (which splits at the kink). */
START_TEST(closed_forms_against_reference) {
  ae_activation acts[] = {act(AE_ACT_RELU), leaky(0.01), leaky(0.2),
                          act(AE_ACT_IDENTITY)};
  const double qs[][3] = {{1, 1, 0.6}, {4, 0.25, -0.3}, {16, 9, 11.0}};
  for (size_t k = 0; k < sizeof(acts) / sizeof(acts[0]); k++)
    for (size_t m = 0; m < 3; m++) {
      double q1 = qs[m][0], q2 = qs[m][1], c = qs[m][2];
      ck_near(ae_dual_ss(acts[k], q1, q2, c),
              ae_dual_ss_reference(acts[k], q1, q2, c), 1e-9);
      ck_near(ae_dual_dd(acts[k], q1, q2, c),
              ae_dual_dd_reference(acts[k], q1, q2, c), 1e-9);
    }
}
END_TEST

/* rho = +-1 and zero variances give numbers, never NaN. */
START_TEST(edge_cases_finite) {
  const ae_act_fn fns[] = {AE_ACT_RELU,    AE_ACT_LEAKY_RELU, AE_ACT_TANH,
                           AE_ACT_SIGMOID, AE_ACT_SWISH,      AE_ACT_GELU,
                           AE_ACT_ERF,     AE_ACT_IDENTITY};
  const double cases[][3] = {{1, 1, 1},      {1, 1, -1},     {4, 4, 4.0000001},
                             {0, 0, 0},      {0, 2, 0},      {2, 0, 0},
                             {1e-300, 1, 0}, {256, 256, 256}};
  for (size_t k = 0; k < sizeof(fns) / sizeof(fns[0]); k++)
    for (size_t m = 0; m < sizeof(cases) / sizeof(cases[0]); m++) {
      ae_activation a = act(fns[k]);
      double ss = ae_dual_ss(a, cases[m][0], cases[m][1], cases[m][2]);
      double dd = ae_dual_dd(a, cases[m][0], cases[m][1], cases[m][2]);
      ck_assert_msg(isfinite(ss) && isfinite(dd), "act %d case %zu: %g %g",
                    (int)fns[k], m, ss, dd);
    }
  /* rho = 1 is the second moment: sigmoid at q = 0 is sigmoid(0)^2. */
  ck_near(ae_dual_ss(act(AE_ACT_SIGMOID), 0, 0, 0), 0.25, 1e-15);
  ck_near(ae_dual_dd(act(AE_ACT_SIGMOID), 0, 0, 0), 1.0 / 16, 1e-15);
  /* E[relu(z)^2] = q/2 and E[tanh(z)^2] at rho -> 1 from below. */
  ck_near(ae_dual_ss(act(AE_ACT_RELU), 3, 3, 3), 1.5, 1e-14);
  ck_near(ae_dual_ss(act(AE_ACT_TANH), 2, 2, 2 * (1 - 1e-12)),
          ae_dual_ss(act(AE_ACT_TANH), 2, 2, 2), 1e-9);
  /* c_sigma: 2 for relu, 1 for identity, 2/(1+a^2) for leaky relu. */
  ck_near(ae_dual_c_sigma(act(AE_ACT_RELU)), 2.0, 1e-15);
  ck_near(ae_dual_c_sigma(act(AE_ACT_IDENTITY)), 1.0, 1e-15);
  ck_near(ae_dual_c_sigma(leaky(0.2)), 2.0 / 1.04, 1e-14);
  ck_near(1.0 / ae_dual_c_sigma(act(AE_ACT_TANH)),
          ae_dual_ss_reference(act(AE_ACT_TANH), 1, 1, 1), 1e-10);
  /* The kernels use the api's c_sigma: it must agree with the duals. */
  const ae_act_fn all[] = {AE_ACT_RELU,    AE_ACT_TANH, AE_ACT_SIGMOID,
                           AE_ACT_SWISH,   AE_ACT_GELU, AE_ACT_ERF,
                           AE_ACT_IDENTITY};
  for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
    ck_near(ae_analytic_c_sigma(act(all[k])) / ae_dual_c_sigma(act(all[k])),
            1.0, 1e-11);
}
END_TEST

/* Two activations (sums of activation outputs in graphs) and the means
 * against the adaptive reference. */
START_TEST(mixed_and_means_against_reference) {
  struct {
    ae_activation f, g;
  } pairs[] = {
      {act(AE_ACT_TANH), act(AE_ACT_GELU)},
      {act(AE_ACT_SIGMOID), act(AE_ACT_SWISH)},
      {act(AE_ACT_ERF), act(AE_ACT_TANH)},
      {act(AE_ACT_RELU), leaky(0.2)},
      {leaky(0.1), leaky(0.3)},
      {act(AE_ACT_GELU), act(AE_ACT_IDENTITY)},
      {act(AE_ACT_IDENTITY), act(AE_ACT_RELU)},
      {act(AE_ACT_TANH), act(AE_ACT_TANH)},
  };
  const double cases[][3] = {{1, 1, 0.6}, {16, 2, -3.0}, {0.3, 40, 3.3}};
  for (size_t k = 0; k < sizeof(pairs) / sizeof(pairs[0]); k++)
    for (size_t m = 0; m < 3; m++) {
      double q1 = cases[m][0], q2 = cases[m][1], c = cases[m][2], ss, dd;
      ck_assert_int_eq(
          ae_dual_mixed_pair(pairs[k].f, pairs[k].g, q1, q2, c, &ss, &dd), 0);
      double rs = ae_dual_mixed_reference(pairs[k].f, pairs[k].g, 0, q1, q2, c);
      double rd = ae_dual_mixed_reference(pairs[k].f, pairs[k].g, 1, q1, q2, c);
      ck_near(ss, rs, 1e-9 * fmax(1.0, fabs(rs)));
      ck_near(dd, rd, 1e-9 * fmax(1.0, fabs(rd)));
    }
  double ss, dd;
  ck_assert_int_ne(ae_dual_mixed_pair(act(AE_ACT_RELU), act(AE_ACT_TANH), 1, 1,
                                      0.5, &ss, &dd),
                   0);
  const ae_act_fn fns[] = {AE_ACT_RELU,    AE_ACT_LEAKY_RELU, AE_ACT_TANH,
                           AE_ACT_SIGMOID, AE_ACT_SWISH,      AE_ACT_GELU,
                           AE_ACT_ERF,     AE_ACT_IDENTITY};
  const double qs[] = {0.04, 1, 30, 300};
  for (size_t k = 0; k < sizeof(fns) / sizeof(fns[0]); k++)
    for (size_t m = 0; m < 4; m++) {
      double mean, dmean;
      ae_dual_mean(act(fns[k]), qs[m], &mean, &dmean);
      ck_near(mean, ae_dual_mean_reference(act(fns[k]), 0, qs[m]), 1e-10);
      ck_near(dmean, ae_dual_mean_reference(act(fns[k]), 1, qs[m]), 1e-10);
    }
}
END_TEST

static Suite *dual_suite(void) {
  Suite *s = suite_create("analytic_dual");
  TCase *tc = tcase_create("dual");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, table_rho_06);
  tcase_add_test(tc, table_unequal_variance);
  tcase_add_test(tc, relu_iterates);
  tcase_add_loop_test(tc, smooth_against_reference, 0, 4);
  tcase_add_test(tc, erf_quadrature_matches_closed_form);
  tcase_add_test(tc, closed_forms_against_reference);
  tcase_add_test(tc, edge_cases_finite);
  tcase_add_test(tc, mixed_and_means_against_reference);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(dual_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
