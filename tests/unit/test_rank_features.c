/* test_rank_features.c: the forward-feature ranking metrics of ranking.md
 * §1-3 (gpu/groups/features.c) and the block outputs and probe of §0
 * (api/lower.c).  Hand cases with closed-form values: distinct 16-bit
 * codes; a 2- and 3-channel map with a known correlation matrix; the
 * entropy of a known covariance; a ReLU layer whose sign patterns are
 * enumerable (its patterns and its agreement kernel, det 12); relu6 and
 * hardsigmoid layers whose kink-bits (two per unit) are enumerable; kernel
 * regression on a 4 x 4 Theta by hand.  Then the block lists of nb201
 * (18 at N = 5, an identity cell), mlp_dag and graphs, the probe's shape
 * and parameter count, the float32 path against the float64 twin with a
 * measured tolerance, and the metrics through ae_engine_score held to the
 * same functions run by hand on the same weights and inputs.
 * Single-threaded; every test frees what it made. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/batch.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "gpu/groups/features.h"
#include "gpu/host/graph_build.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"

/* ---- pure pieces ---- */

START_TEST(distinct_u16_codes) {
  uint64_t bitmap[1024];
  uint16_t codes[] = {0, 5, 5, 65535, 0, 7, 64, 63};
  ck_assert_uint_eq(ae_count_distinct_u16(codes, 8, bitmap), 6);
  ck_assert_uint_eq(ae_count_distinct_u16(codes, 0, bitmap), 0);
  ck_assert_uint_eq(ae_count_distinct_u16(codes + 1, 2, bitmap), 1);
}
END_TEST

/* ae_corr_lambda_min_f32 (float32 rows in place, four channels' chains
 * side by side) leaves the very work values and eigenvalue of
 * ae_corr_lambda_min on the same rows in float64: channel counts not a
 * multiple of 4, constant and zero rows, one position. */
START_TEST(correlation_f32_matches_reference) {
  static const int cs[] = {1, 3, 4, 5, 8, 16, 18, 36};
  static const size_t hws[] = {1, 3, 64, 257};
  for (size_t a = 0; a < sizeof cs / sizeof cs[0]; a++)
    for (size_t b = 0; b < sizeof hws / sizeof hws[0]; b++) {
      int c = cs[a];
      size_t hw = hws[b], n = (size_t)c * hw, nw = n + (size_t)c * c + c;
      float *xf = malloc(n * sizeof *xf);
      double *xd = malloc(n * sizeof *xd);
      double *w1 = calloc(nw, sizeof *w1), *w2 = calloc(nw, sizeof *w2);
      ck_assert(xf && xd && w1 && w2);
      for (size_t e = 0; e < n; e++) {
        int row = (int)(e / hw);
        double v = ae_philox_normal(3, 0x00abc003u, (uint32_t)a, e);
        /* Row 1 constant, row 2 zero, the others ReLU-like. */
        xf[e] = row == 1 ? 0.75f : row == 2 ? 0.0f : (float)(v > 0 ? v : 0);
        xd[e] = (double)xf[e];
      }
      double v1 = 0, v2 = 0;
      ck_assert_int_eq(ae_corr_lambda_min_f32(xf, c, hw, w1, &v1), AE_OK);
      ck_assert_int_eq(ae_corr_lambda_min(xd, c, hw, w2, &v2), AE_OK);
      ck_assert_msg(memcmp(&v1, &v2, sizeof v1) == 0,
                    "c %d hw %zu: %.17g vs %.17g", c, hw, v1, v2);
      /* One position: every row constant, and the float32 path leaves
       * work alone (constant_rows_shortcut_matches_reference). */
      if (hw > 1)
        ck_assert_msg(memcmp(w1, w2, (n + (size_t)c * c) * sizeof *w1) == 0,
                      "c %d hw %zu: work differs", c, hw);
      free(xf);
      free(xd);
      free(w1);
      free(w2);
    }
}
END_TEST

/* Every channel constant (zeros of either sign, a value whose mean is not
 * a short binary fraction, one position): both paths skip the solve and
 * return +0, which is what the full computation gives: the rows' means
 * are exact, so the centred sums of products are all +0 (computed here
 * with ae_cross_means and ae_cross_sums as corr_lambda_min_rows does),
 * every row is zeroed, and the zero matrix's smallest eigenvalue by
 * ae_sym_eigval_min is +0, bit for bit; the work areas are untouched. */
START_TEST(constant_rows_shortcut_matches_reference) {
  static const float values[] = {0.0f, -0.0f, 0.1f, -3.3f, 1e-30f};
  static const size_t hws[] = {1, 7, 1024};
  for (size_t b = 0; b < sizeof hws / sizeof hws[0]; b++)
    for (int c = 1; c <= 9; c += 4) {
      size_t hw = hws[b], n = (size_t)c * hw, nw = n + (size_t)c * c + c;
      float *xf = malloc(n * sizeof *xf);
      double *xd = malloc(n * sizeof *xd);
      double *w1 = calloc(nw, sizeof *w1), *w2 = calloc(nw, sizeof *w2);
      double *mean = malloc((size_t)c * sizeof *mean);
      double *m = calloc((size_t)c * c, sizeof *m);
      ck_assert(xf && xd && w1 && w2 && mean && m);
      for (size_t e = 0; e < n; e++) {
        /* Row i holds one value; rows of -0 and +0 mixed within row 0. */
        size_t row = e / hw;
        xf[e] = row == 0 ? ((e & 1) ? -0.0f : 0.0f)
                         : values[row % (sizeof values / sizeof values[0])];
        xd[e] = (double)xf[e];
      }
      ae_cross_rows rows = {.x = xf, .row = hw, .rows = c};
      ae_cross_means(&rows, 1, hw, mean);
      for (int i = 0; i < c; i++)
        ck_assert(mean[i] == (double)xf[(size_t)i * hw]);
      rows.mean = mean;
      ck_assert_int_eq(ae_cross_sums(&rows, &rows, 1, hw, 1, m, (size_t)c),
                       AE_OK);
      for (size_t e = 0; e < (size_t)c * c; e++)
        ck_assert(m[e] == 0.0 && !signbit(m[e]));
      double solved = NAN;
      ck_assert_int_eq(ae_sym_eigval_min(m, c, &solved, NULL), AE_OK);
      double v1 = NAN, v2 = NAN;
      ck_assert_int_eq(ae_corr_lambda_min_f32(xf, c, hw, w1, &v1), AE_OK);
      ck_assert_int_eq(ae_corr_lambda_min(xd, c, hw, w2, &v2), AE_OK);
      ck_assert_msg(memcmp(&v1, &solved, sizeof v1) == 0 &&
                        memcmp(&v2, &solved, sizeof v2) == 0,
                    "c %d hw %zu: %.17g, %.17g vs solved %.17g", c, hw, v1, v2,
                    solved);
      /* Not computed: the work areas are untouched. */
      for (size_t e = 0; e < nw; e++)
        ck_assert(w1[e] == 0.0 && !signbit(w1[e]) && w2[e] == 0.0 &&
                  !signbit(w2[e]));
      free(xf);
      free(xd);
      free(w1);
      free(w2);
      free(mean);
      free(m);
    }
}
END_TEST

START_TEST(correlation_lambda_min_by_hand) {
  /* a = (1,2,3,4), b = (1,-1,1,-1): centred a.b = -2, |a| = sqrt 5,
   * |b| = 2, rho = -1/sqrt 5; the 2 x 2 correlation's eigenvalues are
   * 1 +- rho. */
  double x[3 * 4] = {1, 2, 3, 4, 1, -1, 1, -1, 7, 7, 7, 7};
  double work[3 * 4 + 9 + 3], v = NAN;
  ck_assert_int_eq(ae_corr_lambda_min(x, 2, 4, work, &v), AE_OK);
  ck_assert_double_eq_tol(v, 1.0 - 1.0 / sqrt(5.0), 1e-14);
  /* A constant channel is a zero row and column: eigenvalues 0, 1 +-
   * rho. */
  ck_assert_int_eq(ae_corr_lambda_min(x, 3, 4, work, &v), AE_OK);
  ck_assert_double_eq_tol(v, 0.0, 1e-14);
  /* b = 2a + 1: perfectly correlated, lambda_min 0; independent of
   * scale. */
  double y[2 * 4] = {1, 2, 3, 4, 3, 5, 7, 9};
  ck_assert_int_eq(ae_corr_lambda_min(y, 2, 4, work, &v), AE_OK);
  ck_assert_double_eq_tol(v, 0.0, 1e-14);
  /* One channel: its own correlation is 1. */
  ck_assert_int_eq(ae_corr_lambda_min(x, 1, 4, work, &v), AE_OK);
  ck_assert_double_eq_tol(v, 1.0, 1e-14);
}
END_TEST

START_TEST(channel_entropy_by_hand) {
  /* Two samples x 2 channels x 2 positions; channel 0 = +-1 and channel
   * 1 = +-2 in orthogonal patterns: covariance diag(1, 4), p = (.2, .8). */
  double f[8] = {1, -1, 2, 2, 1, -1, -2, -2};
  double work[6], h = NAN;
  ck_assert_int_eq(ae_channel_entropy(f, 2, 2, 2, work, &h), AE_OK);
  double want = -(0.2 * log(0.2 + 1e-8) + 0.8 * log(0.8 + 1e-8));
  ck_assert_double_eq_tol(h, want, 1e-14);
  /* Equal variances, a constant offset removed by the centring: log 2. */
  double g[8] = {6, 4, 6, 6, 6, 4, 4, 4};
  ck_assert_int_eq(ae_channel_entropy(g, 2, 2, 2, work, &h), AE_OK);
  ck_assert_double_eq_tol(h, -log(0.5 + 1e-8), 1e-14);
  /* Zero covariance: NaN. */
  double z[4] = {3, 3, 3, 3};
  ck_assert_int_eq(ae_channel_entropy(z, 1, 2, 2, work, &h), AE_OK);
  ck_assert(isnan(h));
  double hs[3] = {1.0, 3.0, 2.5}, iso, prog;
  ae_isotropy_progressivity(hs, 3, &iso, &prog);
  ck_assert_double_eq_tol(iso, 6.5, 1e-15);
  ck_assert_double_eq_tol(prog, -0.5, 1e-15);
  ae_isotropy_progressivity(hs, 1, &iso, &prog);
  ck_assert_double_eq_tol(iso, 1.0, 1e-15);
  ck_assert(isnan(prog));
}
END_TEST

START_TEST(logdet_by_hand) {
  double k[4] = {4, 2, 2, 3}, v = NAN; /* det 8 */
  ck_assert_int_eq(ae_logdet_cholesky(k, 2, &v, NULL), AE_OK);
  ck_assert_double_eq_tol(v, log(8.0), 1e-14);
  double s[4] = {1, 1, 1, 1};
  ck_assert_int_eq(ae_logdet_cholesky(s, 2, &v, NULL), AE_EINVAL);
}
END_TEST

START_TEST(kernel_regression_by_hand) {
  /* n = 4: train on 3, validate on 1.  Theta_TT = I, Theta_VT =
   * (.25, .25, 0).  Labels (0, 1, 1 | 0), 2 classes: Y rows +-(.5, -.5);
   * alpha = Y_T; P = .25 (Y0 + Y1) = (0, 0) exactly: a tie, argmax class
   * 0 (a hit); MSE = (.25 + .25) / 2. */
  double theta[16] = {1, 0, 0, .25, 0, 1, 0, .25, 0, 0, 1, 0, .25, .25, 0, 1};
  int labels[4] = {0, 1, 1, 0};
  double mse, acc, jitter;
  ck_assert_int_eq(
      ae_kernel_regression(theta, 4, labels, 2, &mse, &acc, &jitter, NULL),
      AE_OK);
  ck_assert_double_eq_tol(mse, 0.25, 1e-15);
  ck_assert_double_eq(acc, 1.0);
  ck_assert_double_eq(jitter, 0.0);
  /* Theta_VT = (.5, 0, 0): P = .5 Y0 = (.25, -.25); the label 1 is a miss
   * and MSE = (.75^2 + .75^2) / 2. */
  theta[3] = theta[12] = 0.5;
  theta[7] = theta[13] = 0.0;
  labels[3] = 1;
  ck_assert_int_eq(
      ae_kernel_regression(theta, 4, labels, 2, &mse, &acc, &jitter, NULL),
      AE_OK);
  ck_assert_double_eq_tol(mse, 0.75 * 0.75, 1e-15);
  ck_assert_double_eq(acc, 0.0);
  /* A rank-one Theta_TT takes a jitter and still solves. */
  double ones[16];
  for (int i = 0; i < 16; i++)
    ones[i] = 1.0;
  ck_assert_int_eq(
      ae_kernel_regression(ones, 4, labels, 2, &mse, &acc, &jitter, NULL),
      AE_OK);
  ck_assert(jitter > 0.0 && isfinite(mse));
  ck_assert_int_eq(
      ae_kernel_regression(ones, 1, labels, 2, &mse, &acc, &jitter, NULL),
      AE_EINVAL);
}
END_TEST

/* input[1] -> linear(4) with unit k on iff x > t_k, t = (-.5, 0, .5, 0)
 * (unit 3 repeats unit 1) -> relu. */
static ae_net *threshold_layer(ae_graph *g, int max_batch) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 1, 0, 0);
  int l = ae_gb_linear(g, x, 4, 1, 1.0);
  int r = ae_gb_act(g, l, AE_ACT_RELU, 0.0);
  ck_assert_int_eq(ae_gb_finish(g, r), 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(g, max_batch, &net), 0);
  ae_net_init_weights(net, 0, 0);
  size_t count;
  float *w = ae_net_param(net, l, AE_NET_WEIGHT, &count);
  ck_assert_uint_eq(count, 4);
  float *b = ae_net_param(net, l, AE_NET_BIAS, &count);
  const float t[4] = {-0.5f, 0.0f, 0.5f, 0.0f};
  for (int k = 0; k < 4; k++) {
    w[k] = 1.0f;
    b[k] = -t[k];
  }
  return net;
}

START_TEST(relu_patterns_enumerable) {
  ae_graph g;
  ae_net *net = threshold_layer(&g, 16);
  /* 16 points in (-1, 1): three distinct threshold patterns over 4
   * units (units 1 and 3 agree). */
  float xs[16];
  for (int i = 0; i < 16; i++)
    xs[i] = -0.9375f + 0.125f * (float)i;
  size_t distinct, units;
  ck_assert_int_eq(ae_features_pattern_count(net, xs, 16, &distinct, &units),
                   AE_OK);
  ck_assert_uint_eq(units, 4);
  ck_assert_uint_eq(distinct, 3);
  ck_assert_int_eq(ae_features_pattern_count(net, xs, 17, &distinct, &units),
                   AE_EINVAL);
  /* Four samples -1, -.25, .25, 1: codes over units 0,1,2 are 000, 100,
   * 110, 111 (unit 3 = unit 1).  Agreements: K_ij = 4 - Hamming. */
  float x4[4] = {-1.0f, -0.25f, 0.25f, 1.0f};
  double K[16];
  ck_assert_int_eq(ae_features_pattern_kernel(net, x4, 4, K, &units), AE_OK);
  const double want[16] = {4, 3, 1, 0, 3, 4, 2, 1, 1, 2, 4, 3, 0, 1, 3, 4};
  for (int i = 0; i < 16; i++)
    ck_assert_double_eq(K[i], want[i]);
  /* Without the repeated unit, K = 3 - |i - j|, det 12. */
  double k3[16];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++)
      k3[i * 4 + j] = 3 - abs(i - j);
  double ld;
  ck_assert_int_eq(ae_logdet_cholesky(k3, 4, &ld, NULL), AE_OK);
  ck_assert_double_eq_tol(ld, log(12.0), 1e-13);
  /* Two equal samples make K singular. */
  float same[2] = {0.25f, 0.25f};
  ck_assert_int_eq(ae_features_pattern_kernel(net, same, 2, K, &units), AE_OK);
  ck_assert_int_eq(ae_logdet_cholesky(K, 2, &ld, NULL), AE_EINVAL);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

/* input[1] -> linear(units) with z_k = w_k x + b_k -> fn. */
static ae_net *affine_layer(ae_graph *g, ae_act_fn fn, int units,
                            const float *wk, const float *bk) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 1, 0, 0);
  int l = ae_gb_linear(g, x, units, 1, 1.0);
  int a = ae_gb_act(g, l, fn, 0.0);
  ck_assert_int_eq(ae_gb_finish(g, a), 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(g, 8, &net), 0);
  ae_net_init_weights(net, 0, 0);
  size_t count;
  float *w = ae_net_param(net, l, AE_NET_WEIGHT, &count);
  ck_assert_uint_eq(count, (size_t)units);
  float *b = ae_net_param(net, l, AE_NET_BIAS, &count);
  for (int k = 0; k < units; k++) {
    w[k] = wk[k];
    b[k] = bk[k];
  }
  return net;
}

/* The agreement kernel against a count by hand over bitsets that cross
 * word boundaries: relu6 (kinks 0 and 6) on 70 units, so each sample's
 * bits run 0..69 and 70..139 over three words, and 8 samples (rows
 * compared four at a time and one by one). */
START_TEST(pattern_kernel_across_words) {
  enum { UNITS = 70, S = 8 };
  float wk[UNITS], bk[UNITS], x[S];
  for (int k = 0; k < UNITS; k++) {
    wk[k] = (float)(k % 7) - 3.0f;
    bk[k] = (float)(k % 5) - 2.0f;
  }
  for (int i = 0; i < S; i++)
    x[i] = -2.5f + 0.75f * (float)i;
  ae_graph g;
  ae_net *net = affine_layer(&g, (ae_act_fn)AE_ACT_RELU6, UNITS, wk, bk);
  double K[S * S];
  size_t units;
  ck_assert_int_eq(ae_features_pattern_kernel(net, x, S, K, &units), AE_OK);
  ck_assert_uint_eq(units, 2 * UNITS);
  const float *z = ae_net_activation(net, g.nodes[g.output].inputs[0]);
  ck_assert_ptr_nonnull(z);
  const float kinks[2] = {0.0f, 6.0f};
  int differing_pairs = 0;
  for (int i = 0; i < S; i++)
    for (int j = 0; j < S; j++) {
      int agree = 0;
      for (int q = 0; q < 2; q++)
        for (int u = 0; u < UNITS; u++)
          agree +=
              (z[i * UNITS + u] > kinks[q]) == (z[j * UNITS + u] > kinks[q]);
      ck_assert_double_eq(K[i * S + j], (double)agree);
      differing_pairs += agree < 2 * UNITS;
    }
  /* The inputs give the units different patterns (the count is not all
   * agreements). */
  ck_assert_int_gt(differing_pairs, S * (S - 1) / 2);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

START_TEST(hard_activation_kinks) {
  /* relu6 on z0 = x, z1 = x + 3 at x = -4, -1, 2, 4, 7 (z1 = -1, 2, 5,
   * 7, 10).  Kink 0: samples {2,3,4} and {1,2,3,4}; kink 6: {4} and
   * {3,4}: four kink-bits, four distinct codes.  relu on the same
   * inputs sees the kink 0 only: two units, two codes. */
  const float w2[2] = {1.0f, 1.0f}, b2[2] = {0.0f, 3.0f};
  float x5[5] = {-4.0f, -1.0f, 2.0f, 4.0f, 7.0f};
  size_t distinct, units;
  ae_graph g;
  ae_net *net = affine_layer(&g, AE_ACT_RELU, 2, w2, b2);
  ck_assert(ae_features_is_pattern_act(&g.nodes[g.output]));
  ck_assert_int_eq(ae_features_pattern_count(net, x5, 5, &distinct, &units),
                   AE_OK);
  ck_assert_uint_eq(units, 2);
  ck_assert_uint_eq(distinct, 2);
  ae_net_destroy(net);
  ae_gb_free(&g);
  net = affine_layer(&g, (ae_act_fn)AE_ACT_RELU6, 2, w2, b2);
  double kinks[2];
  ck_assert_int_eq(ae_features_pattern_kinks(&g.nodes[g.output], kinks), 2);
  ck_assert_double_eq(kinks[0], 0.0);
  ck_assert_double_eq(kinks[1], 6.0);
  ck_assert_int_eq(ae_features_pattern_count(net, x5, 5, &distinct, &units),
                   AE_OK);
  ck_assert_uint_eq(units, 4);
  ck_assert_uint_eq(distinct, 4);
  /* Each sample sets one more kink-bit than the one before (nested
   * patterns of 0..4 bits): K_ij = 4 - |i - j|. */
  double K[25];
  ck_assert_int_eq(ae_features_pattern_kernel(net, x5, 5, K, &units), AE_OK);
  ck_assert_uint_eq(units, 4);
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 5; j++)
      ck_assert_double_eq(K[i * 5 + j], 4 - abs(i - j));
  ae_net_destroy(net);
  ae_gb_free(&g);

  /* hardsigmoid (no unit before the kinks counted) on z0 = x, z1 = -x at
   * x = -4, 0, 4: kinks -3 and 3.  Bits (z0 > -3, z1 > -3, z0 > 3,
   * z1 > 3): 0101, 1100, 1010; codes over the samples 6, 3, 4, 1 (four
   * distinct).  K = 4 - Hamming = [4 2 0; 2 4 2; 0 2 4], det 32. */
  const float wh[2] = {1.0f, -1.0f}, bh[2] = {0.0f, 0.0f};
  float x3[3] = {-4.0f, 0.0f, 4.0f};
  net = affine_layer(&g, (ae_act_fn)AE_ACT_HARDSIGMOID, 2, wh, bh);
  ck_assert_int_eq(ae_features_pattern_kinks(&g.nodes[g.output], kinks), 2);
  ck_assert_int_eq(ae_features_pattern_count(net, x3, 3, &distinct, &units),
                   AE_OK);
  ck_assert_uint_eq(units, 4);
  ck_assert_uint_eq(distinct, 4);
  ck_assert_int_eq(ae_features_pattern_kernel(net, x3, 3, K, &units), AE_OK);
  const double want[9] = {4, 2, 0, 2, 4, 2, 0, 2, 4};
  for (int i = 0; i < 9; i++)
    ck_assert_double_eq(K[i], want[i]);
  double ld;
  ck_assert_int_eq(ae_logdet_cholesky(K, 3, &ld, NULL), AE_OK);
  ck_assert_double_eq_tol(ld, log(32.0), 1e-13);
  ae_net_destroy(net);
  ae_gb_free(&g);

  /* A smooth activation has no kinks and no units. */
  net = affine_layer(&g, AE_ACT_TANH, 2, wh, bh);
  ck_assert(!ae_features_is_pattern_act(&g.nodes[g.output]));
  ck_assert_int_eq(ae_features_pattern_count(net, x3, 3, &distinct, &units),
                   AE_OK);
  ck_assert_uint_eq(units, 0);
  ck_assert_uint_eq(distinct, 0);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

/* ---- block outputs and the probe ---- */

static ae_limits lim;

static void parse_arch(const char *text, ae_arch *a) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  ck_assert_ptr_nonnull(j);
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_arch_from_json(j, "/architecture", &lim, a, &p);
  if (rc && p.n_errors)
    fprintf(stderr, "%s: %s\n", p.errors[0].pointer, p.errors[0].detail);
  ck_assert_int_eq(rc, AE_OK);
  ae_problem_clear(&p);
  json_decref(j);
}

static void lower_arch(const ae_arch *a, int c, int h, int w, int probe,
                       ae_graph *g) {
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.input_shape[0] = c;
  o.input_shape[1] = h;
  o.input_shape[2] = w;
  o.input_rank = h ? 3 : 1;
  o.num_classes = 10;
  o.probe = probe;
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_arch_lower(a, &o, &lim, "/architecture", g, &p);
  if (rc && p.n_errors)
    fprintf(stderr, "%s: %s\n", p.errors[0].pointer, p.errors[0].detail);
  ck_assert_int_eq(rc, AE_OK);
  ae_problem_clear(&p);
}

#define ALL_CONV3                                                              \
  "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"          \
  "nor_conv_3x3~1|nor_conv_3x3~2|"
#define SKIP_CELL "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"

/* NB201's parameters for an all-conv3x3 cell (6 ReLU-conv-BN edges) at
 * stem width c, n cells per stage, 10 classes: stem, cells, the two
 * reduction blocks (conv a, conv b with BN; 1x1 shortcut conv), head. */
static double nb201_conv3_params(double c, int n) {
  double total = 3 * 9 * c + 2 * c;
  for (int s = 0; s < 3; s++) {
    double cs = c * (1 << s);
    if (s > 0) {
      double ci = cs / 2;
      total += ci * 9 * cs + 2 * cs + cs * 9 * cs + 2 * cs + ci * cs;
    }
    total += n * 6 * (cs * 9 * cs + 2 * cs);
  }
  double cl = 4 * c;
  return total + 2 * cl + cl * 10 + 10;
}

START_TEST(nb201_blocks_and_probe) {
  ae_arch a;
  parse_arch("{\"type\":\"nb201\",\"cell\":\"" ALL_CONV3 "\"}", &a);
  ae_graph g;
  lower_arch(&a, 3, 32, 32, AE_PROBE_NONE, &g);
  int *blocks, n;
  ck_assert_int_eq(ae_graph_block_outputs(&g, &blocks, &n), AE_OK);
  ck_assert_int_eq(n, 18);
  ck_assert_str_eq(g.nodes[blocks[0]].name, "stem/bn");
  ck_assert_str_eq(g.nodes[blocks[1]].name, "stage0/cell0/node3/add");
  ck_assert_str_eq(g.nodes[blocks[5]].name, "stage0/cell4/node3/add");
  ck_assert_str_eq(g.nodes[blocks[6]].name, "resblock1/add");
  ck_assert_str_eq(g.nodes[blocks[12]].name, "resblock2/add");
  ck_assert_str_eq(g.nodes[blocks[17]].name, "stage2/cell4/node3/add");
  for (int l = 1; l < n; l++)
    ck_assert_int_gt(blocks[l], blocks[l - 1]);
  ck_assert_double_eq(ae_graph_params(&g), nb201_conv3_params(16, 5));
  free(blocks);
  ae_graph_free(&g);
  /* The probe: stem width 3, one cell per stage, same blocks. */
  lower_arch(&a, 3, 32, 32, AE_PROBE_RANKING, &g);
  ck_assert_int_eq(ae_graph_block_outputs(&g, &blocks, &n), AE_OK);
  ck_assert_int_eq(n, 6);
  ck_assert_str_eq(g.nodes[blocks[5]].name, "stage2/cell0/node3/add");
  ck_assert_int_eq(g.nodes[blocks[0]].shape[0], 3);
  ck_assert_int_eq(g.nodes[blocks[5]].shape[0], 12);
  ck_assert_int_eq(g.nodes[blocks[5]].shape[1], 8);
  ck_assert_double_eq(ae_graph_params(&g), nb201_conv3_params(3, 1));
  free(blocks);
  ae_graph_free(&g);
  /* The linear-regions probe is unchanged: one C = 1 cell, no stem. */
  lower_arch(&a, 1, 3, 3, AE_PROBE_LINEAR_REGIONS, &g);
  ck_assert_str_eq(g.nodes[1].name, "cell0/edge0/relu");
  ae_graph_free(&g);
  ae_arch_free(&a);
  /* An identity cell's output is its identity node. */
  parse_arch("{\"type\":\"nb201\",\"cell\":\"" SKIP_CELL
             "\",\"cells_per_stage\":2}",
             &a);
  lower_arch(&a, 3, 16, 16, AE_PROBE_NONE, &g);
  ck_assert_int_eq(ae_graph_block_outputs(&g, &blocks, &n), AE_OK);
  ck_assert_int_eq(n, 9);
  ck_assert_int_eq(g.nodes[blocks[1]].op, AE_OP_IDENTITY);
  ck_assert_str_eq(g.nodes[blocks[1]].name, "stage0/cell0/edge3/skip");
  ck_assert_int_eq(g.nodes[blocks[1]].inputs[0], blocks[0]);
  free(blocks);
  ae_graph_free(&g);
  ae_arch_free(&a);
}
END_TEST

START_TEST(mlp_dag_and_graph_blocks) {
  ae_arch a;
  int *blocks, n;
  ae_graph g;
  parse_arch("{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\",\"width\":8}", &a);
  lower_arch(&a, 5, 0, 0, AE_PROBE_NONE, &g);
  ck_assert_int_eq(ae_graph_block_outputs(&g, &blocks, &n), AE_OK);
  ck_assert_int_eq(n, 2);
  ck_assert_str_eq(g.nodes[blocks[0]].name, "stem/linear");
  ck_assert_str_eq(g.nodes[blocks[1]].name, "node3/add");
  free(blocks);
  ae_graph_free(&g);
  ae_arch_free(&a);
  /* The graph rule: first and last 4-D node, every add with two live
   * inputs; not an add with one live input and a zero. */
  const char *graph =
      "{\"type\":\"graph\",\"output\":\"fc\",\"nodes\":["
      "{\"id\":\"c1\",\"op\":\"conv\",\"inputs\":[\"input\"],\"out\":4,"
      "\"kernel\":3,\"padding\":1},"
      "{\"id\":\"r1\",\"op\":\"act\",\"fn\":\"relu\",\"inputs\":[\"c1\"]},"
      "{\"id\":\"c2\",\"op\":\"conv\",\"inputs\":[\"r1\"],\"out\":4,"
      "\"kernel\":3,\"padding\":1},"
      "{\"id\":\"a1\",\"op\":\"add\",\"inputs\":[\"c1\",\"c2\"]},"
      "{\"id\":\"z\",\"op\":\"zero\",\"inputs\":[\"a1\"]},"
      "{\"id\":\"a2\",\"op\":\"add\",\"inputs\":[\"a1\",\"z\"]},"
      "{\"id\":\"r2\",\"op\":\"act\",\"fn\":\"relu\",\"inputs\":[\"a2\"]%s},"
      "{\"id\":\"gap\",\"op\":\"global_avg_pool\",\"inputs\":[\"r2\"]},"
      "{\"id\":\"fc\",\"op\":\"linear\",\"inputs\":[\"gap\"],\"out\":3}]}";
  char text[2048];
  snprintf(text, sizeof text, graph, "");
  parse_arch(text, &a);
  lower_arch(&a, 2, 6, 6, AE_PROBE_NONE, &g);
  ck_assert_int_eq(ae_graph_block_outputs(&g, &blocks, &n), AE_OK);
  ck_assert_int_eq(n, 3);
  ck_assert_str_eq(g.nodes[blocks[0]].name, "c1");
  ck_assert_str_eq(g.nodes[blocks[1]].name, "a1");
  ck_assert_str_eq(g.nodes[blocks[2]].name, "r2");
  free(blocks);
  ae_graph_free(&g);
  ae_arch_free(&a);
  /* The user's marks replace the rule. */
  snprintf(text, sizeof text, graph, ",\"block\":true");
  parse_arch(text, &a);
  lower_arch(&a, 2, 6, 6, AE_PROBE_NONE, &g);
  ck_assert_int_eq(ae_graph_block_outputs(&g, &blocks, &n), AE_OK);
  ck_assert_int_eq(n, 1);
  ck_assert_str_eq(g.nodes[blocks[0]].name, "r2");
  free(blocks);
  ae_graph_free(&g);
  ae_arch_free(&a);
  /* "block" must be a boolean, and is named when it is not. */
  snprintf(text, sizeof text, graph, ",\"block\":1");
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(ae_arch_from_json(j, "/architecture", &lim, &a, &p),
                   AE_EINVAL);
  ck_assert_str_eq(p.errors[0].pointer, "/architecture/nodes/6/block");
  ae_problem_clear(&p);
  json_decref(j);
}
END_TEST

/* ---- feature_corr_lambda_min's known nodes ---- */

/* A 4-D node's lambda_min computed in full from its float32 activation. */
static double node_lambda_min(ae_net *net, int k) {
  const ae_node *nd = &ae_net_graph(net)->nodes[k];
  int c = nd->shape[0];
  size_t hw = (size_t)nd->shape[1] * nd->shape[2];
  double *work = malloc(((size_t)c * hw + (size_t)c * c + c) * sizeof *work);
  ck_assert_ptr_nonnull(work);
  double v = NAN;
  ck_assert_int_eq(
      ae_corr_lambda_min_f32(ae_net_activation(net, k), c, hw, work, &v),
      AE_OK);
  free(work);
  return v;
}

/* The job's sum (ae_features_corr_lambda_min_fast) takes lambda_min = 0 at
 * nodes with no more positions than channels and a rescaling BN's from its
 * input, where the reference solves every node: each shortcut holds node
 * by node within float32's rounding, the two sums agree, and a BN with a
 * zero gamma (a constant channel: not a rescaling) is solved, which a
 * shortcut taken there would miss by its input's lambda_min. */
START_TEST(corr_known_nodes_within_rounding) {
  ae_arch a;
  parse_arch("{\"type\":\"nb201\",\"cell\":\"" ALL_CONV3
             "\",\"channels\":4,\"cells_per_stage\":1}",
             &a);
  ae_graph g;
  lower_arch(&a, 3, 16, 16, AE_PROBE_NONE, &g); /* stage 3: 16 ch, 4 x 4 */
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, 1, &net), 0);
  ae_net_init_weights(net, 7, 0);
  float x[3 * 16 * 16];
  for (size_t i = 0; i < sizeof x / sizeof *x; i++)
    x[i] = (float)ae_philox_normal(9, 2, 0, i);
  const double tol = 1e-5; /* float32 rounding of a node's activation */
  double ref, fast;
  int nodes_ref, nodes_fast;
  ck_assert_int_eq(ae_features_corr_lambda_min(net, x, &ref, &nodes_ref),
                   AE_OK);
  ck_assert_int_eq(ae_features_corr_lambda_min_fast(net, x, &fast, &nodes_fast),
                   AE_OK);
  ck_assert_int_eq(nodes_fast, nodes_ref);
  ck_assert_msg(fabs(fast - ref) <= tol * nodes_ref, "fast %.17g, ref %.17g",
                fast, ref);
  int singular = 0, rescaling = 0, probe_bn = -1;
  double probe_input = 0.0;
  for (int k = 0; k < g.n_nodes; k++) {
    const ae_node *nd = &g.nodes[k];
    if (!ae_features_is_4d_node(nd)) continue;
    double v = node_lambda_min(net, k);
    if ((size_t)nd->shape[1] * nd->shape[2] <= (size_t)nd->shape[0]) {
      ck_assert_msg(fabs(v) <= 1e-12, "node %d: %.3g", k, v);
      singular++;
    }
    if (nd->op == AE_OP_BATCH_NORM && ae_net_bn_rescales_channels(net, k) &&
        ae_features_is_4d_node(&g.nodes[nd->inputs[0]])) {
      double u = node_lambda_min(net, nd->inputs[0]);
      ck_assert_msg(fabs(v - u) <= tol, "BN node %d: %.17g, input %.17g", k, v,
                    u);
      rescaling++;
      if (u > probe_input) {
        probe_input = u;
        probe_bn = k;
      }
    }
  }
  ck_assert_int_gt(singular, 0);
  ck_assert_int_gt(rescaling, 0);
  /* A zero gamma: that channel of the BN is constant, a zero row of its
   * correlation, so its lambda_min is 0 and not its input's. */
  ck_assert_int_ge(probe_bn, 0);
  ck_assert(probe_input > 100 * tol * nodes_ref);
  size_t count;
  float *gamma = ae_net_param(net, probe_bn, AE_NET_GAMMA, &count);
  ck_assert(gamma && count > 0);
  gamma[0] = 0.0f;
  ck_assert_int_eq(ae_features_corr_lambda_min(net, x, &ref, &nodes_ref),
                   AE_OK);
  ck_assert(!ae_net_bn_rescales_channels(net, probe_bn));
  ck_assert(fabs(node_lambda_min(net, probe_bn)) <= 1e-12);
  ck_assert_int_eq(ae_features_corr_lambda_min_fast(net, x, &fast, &nodes_fast),
                   AE_OK);
  ck_assert_msg(fabs(fast - ref) <= tol * nodes_ref, "fast %.17g, ref %.17g",
                fast, ref);
  ae_net_destroy(net);
  ae_graph_free(&g);
  ae_arch_free(&a);
}
END_TEST

/* ---- float32 against the float64 twin ---- */

START_TEST(float32_against_float64_twin) {
  ae_arch a;
  parse_arch("{\"type\":\"nb201\",\"cell\":\"" ALL_CONV3
             "\",\"channels\":4,\"cells_per_stage\":1}",
             &a);
  ae_graph g;
  lower_arch(&a, 3, 8, 8, AE_PROBE_NONE, &g);
  enum { B = 8 };
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, B, &net), 0);
  ae_net_init_weights(net, 11, 0);
  float x[B * 3 * 8 * 8];
  for (size_t i = 0; i < sizeof x / sizeof *x; i++)
    x[i] = (float)ae_philox_normal(5, 1, 0, i);
  int *blocks, n;
  ck_assert_int_eq(ae_graph_block_outputs(&g, &blocks, &n), AE_OK);
  double h32[6], h64[6], c32, c64, k32[B * B], k64[B * B];
  int nodes32, nodes64;
  size_t d32, d64, u;
  for (int twin = 0; twin < 2; twin++) {
    ck_assert_int_eq(ae_net_set_double(net, twin), AE_OK);
    ck_assert_int_eq(
        ae_features_block_entropies(net, x, B, blocks, n, twin ? h64 : h32),
        AE_OK);
    ck_assert_int_eq(ae_features_corr_lambda_min(net, x, twin ? &c64 : &c32,
                                                 twin ? &nodes64 : &nodes32),
                     AE_OK);
    ck_assert_int_eq(
        ae_features_pattern_count(net, x, B, twin ? &d64 : &d32, &u), AE_OK);
    ck_assert_int_eq(
        ae_features_pattern_kernel(net, x, B, twin ? k64 : k32, &u), AE_OK);
  }
  /* Measured here: entropies within 3e-8 relative, lambda_min sums
   * within 1e-6; the tolerance leaves a margin.  Sign patterns may
   * differ where a unit sits within round-off of 0. */
  double worst = 0.0;
  for (int l = 0; l < n; l++) {
    double rel = fabs(h32[l] - h64[l]) / fabs(h64[l]);
    if (rel > worst) worst = rel;
  }
  double crel = fabs(c32 - c64) / fabs(c64);
  fprintf(stderr,
          "float32 vs float64: entropy %.2g, corr lambda_min %.2g "
          "relative; patterns %zu vs %zu\n",
          worst, crel, d32, d64);
  ck_assert(worst < 1e-5);
  ck_assert(crel < 1e-4);
  ck_assert_int_eq(nodes32, nodes64);
  ck_assert(labs((long)d32 - (long)d64) <= 1);
  for (int i = 0; i < B * B; i++)
    ck_assert(fabs(k32[i] - k64[i]) <= 2.0);
  free(blocks);
  ae_net_destroy(net);
  ae_graph_free(&g);
  ae_arch_free(&a);
}
END_TEST

/* ---- through the engine ---- */

static ae_dataset_registry reg;

/* An nb201 request on 8 inline 3x8x8 samples, labels 0/1 alternating
 * (with_labels) or none. */
static char *inline_request(int with_labels) {
  size_t cap = 1 << 16, len = 0;
  char *s = malloc(cap);
  ck_assert_ptr_nonnull(s);
  len += (size_t)snprintf(
      s + len, cap - len,
      "{\"architecture\":{\"type\":\"nb201\",\"cell\":\"" ALL_CONV3
      "\",\"channels\":4,\"cells_per_stage\":1,\"num_classes\":2},"
      "\"seed\":3,\"data\":{\"inputs\":[");
  for (int b = 0; b < 8; b++) {
    len += (size_t)snprintf(s + len, cap - len, "%s[", b ? "," : "");
    for (int c = 0; c < 3; c++) {
      len += (size_t)snprintf(s + len, cap - len, "%s[", c ? "," : "");
      for (int y = 0; y < 8; y++) {
        len += (size_t)snprintf(s + len, cap - len, "%s[", y ? "," : "");
        for (int x = 0; x < 8; x++)
          len += (size_t)snprintf(
              s + len, cap - len, "%s%.6f", x ? "," : "",
              ae_philox_normal(9, 2, 0,
                               (uint64_t)((b * 3 + c) * 64 + y * 8 + x)));
        len += (size_t)snprintf(s + len, cap - len, "]");
      }
      len += (size_t)snprintf(s + len, cap - len, "]");
    }
    len += (size_t)snprintf(s + len, cap - len, "]");
  }
  len += (size_t)snprintf(s + len, cap - len, "]%s}}",
                          with_labels ? ",\"labels\":[0,1,0,1,0,1,0,1]" : "");
  ck_assert_uint_lt(len, cap);
  return s;
}

static void parse_request(const char *text, ae_request *req) {
  ae_problem p = AE_PROBLEM_INIT;
  json_t *body = NULL;
  ae_catalog cat = ae_dataset_registry_catalog(&reg);
  int rc = ae_json_parse_body(text, strlen(text), &body, &p);
  if (!rc) rc = ae_request_parse(body, &cat, &lim, req, &p);
  if (rc && p.n_errors)
    fprintf(stderr, "%s: %s\n", p.errors[0].pointer, p.errors[0].detail);
  ck_assert_int_eq(rc, 0);
  json_decref(body);
  ae_problem_clear(&p);
}

static int has_warning(const ae_scorecard *sc, const char *prefix) {
  for (size_t i = 0; i < sc->n_warnings; i++)
    if (strncmp(sc->warnings[i], prefix, strlen(prefix)) == 0) return 1;
  return 0;
}

START_TEST(engine_metrics_match_the_functions) {
  ae_engine_config cfg = {AE_BACKEND_HOST, 0, 0};
  ae_engine *e = NULL;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_engine_open(&cfg, &e, &err), 0);
  char *text = inline_request(1);
  ae_request req;
  parse_request(text, &req);
  req.settings.ap_repeats = 3;
  req.settings.fc_samples = 4;
  memset(&req.selected, 0, sizeof req.selected);
  ae_metric_set_add(&req.selected, AE_M_ACTIVATION_PATTERNS);
  ae_metric_set_add(&req.selected, AE_M_PATTERN_KERNEL_LOGDET);
  ae_metric_set_add(&req.selected, AE_M_FEATURE_ISOTROPY);
  ae_metric_set_add(&req.selected, AE_M_FEATURE_CORR_LAMBDA_MIN);
  ae_metric_set_add(&req.selected, AE_M_KERNEL_REGRESSION_VAL_MSE);
  ae_scorecard sc;
  ck_assert_int_eq(ae_engine_score(e, &req, &reg, NULL, &sc, &err), 0);
  for (size_t i = 0; i < sc.n_warnings; i++)
    fprintf(stderr, "warning: %s\n", sc.warnings[i]);

  /* The same computations by hand on the same weights and inputs. */
  ae_batch batch;
  memset(&batch, 0, sizeof batch);
  ck_assert_int_eq(ae_batch_draw(&req, NULL, &batch, &err), 0);
  int n = batch.n;
  ck_assert_int_eq(n, 8);
  /* activation_patterns: the probe, 8 samples, draws 0..2. */
  ae_graph probe;
  lower_arch(&req.arch, 3, 8, 8, AE_PROBE_RANKING, &probe);
  ae_net *pn;
  ck_assert_int_eq(ae_net_create(&probe, n, &pn), 0);
  double sum = 0.0;
  size_t units = 0, relu_units = 0;
  double kinks[2];
  for (int r = 0; r < 3; r++) {
    ae_net_init_weights_scheme(pn, req.seed, (uint32_t)r, req.settings.init);
    size_t d;
    ck_assert_int_eq(ae_features_pattern_count(pn, batch.x_net, n, &d, &units),
                     AE_OK);
    sum += (double)d;
  }
  for (int k = 0; k < probe.n_nodes; k++)
    relu_units += (size_t)ae_features_pattern_kinks(&probe.nodes[k], kinks) *
                  probe.nodes[k].shape[0] * probe.nodes[k].shape[1] *
                  probe.nodes[k].shape[2];
  ck_assert_uint_eq(units, relu_units);
  ck_assert_double_eq(sc.expressivity.activation_patterns, sum / 3);
  ck_assert_double_eq(sc.expressivity.activation_patterns_units, (double)units);
  ck_assert_int_eq(sc.expressivity.activation_patterns_saturated,
                   sum / 3 > 0.9 * 256);
  ae_net_destroy(pn);
  ae_graph_free(&probe);

  /* The full net, weights of draw 0. */
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&req.net, n, &net), 0);
  ae_net_init_weights_scheme(net, req.seed, 0, req.settings.init);
  double K[64], ld;
  ck_assert_int_eq(ae_features_pattern_kernel(net, batch.x_net, n, K, &units),
                   AE_OK);
  ck_assert_int_eq(ae_logdet_cholesky(K, n, &ld, NULL), AE_OK);
  ck_assert_double_eq_tol(sc.expressivity.pattern_kernel_logdet, ld,
                          1e-12 * fabs(ld));
  /* Isotropy on the seed's Gaussian inputs. */
  int *blocks, nb;
  ck_assert_int_eq(ae_graph_block_outputs(&req.net, &blocks, &nb), AE_OK);
  ck_assert_int_eq(nb, 6);
  float *gauss = malloc((size_t)n * batch.dim * sizeof *gauss);
  for (size_t i = 0; i < (size_t)n * batch.dim; i++)
    gauss[i] = (float)ae_philox_normal(req.seed, AE_TID_GAUSS_INPUTS, 0, i);
  double h[6], iso, prog;
  ck_assert_int_eq(ae_features_block_entropies(net, gauss, n, blocks, nb, h),
                   AE_OK);
  ae_isotropy_progressivity(h, nb, &iso, &prog);
  ck_assert_double_eq_tol(sc.expressivity.feature_isotropy, iso,
                          1e-12 * fabs(iso));
  ck_assert_double_eq_tol(sc.expressivity.feature_progressivity, prog,
                          1e-12 * fabs(prog) + 1e-15);
  /* Each channel entropy lies in [0, log C]. */
  for (int l = 0; l < nb; l++) {
    int c = req.net.nodes[blocks[l]].shape[0];
    ck_assert(h[l] >= 0.0 && h[l] <= log((double)c) + 1e-9);
  }
  /* feature_corr_lambda_min: sample 0, and the mean over 4, as the job
   * computes them; the reference (every node solved) within float32's
   * rounding (corr_known_nodes_within_rounding). */
  double first = 0.0, mean = 0.0;
  for (int i = 0; i < 4; i++) {
    double v, v_ref;
    int nodes, nodes_ref;
    const float *xi = batch.x_net + (size_t)i * batch.dim;
    ck_assert_int_eq(ae_features_corr_lambda_min_fast(net, xi, &v, &nodes),
                     AE_OK);
    ck_assert_int_eq(ae_features_corr_lambda_min(net, xi, &v_ref, &nodes_ref),
                     AE_OK);
    ck_assert_int_eq(nodes, nodes_ref);
    ck_assert_double_eq_tol(v, v_ref, 1e-5 * nodes);
    if (i == 0) first = v;
    mean += v / 4;
    ck_assert_int_gt(nodes, 0);
  }
  ck_assert_double_eq_tol(sc.convergence.feature_corr_lambda_min, first,
                          1e-12 * fabs(first) + 1e-15);
  ck_assert_double_eq_tol(sc.convergence.feature_corr_lambda_min_mean, mean,
                          1e-12 * fabs(mean) + 1e-15);
  /* Kernel regression on the stream-0 NTK. */
  double theta[64], mse, acc, jitter;
  ae_net_init_weights(net, req.seed, 0);
  ck_assert_int_eq(ae_net_ntk(net, batch.x_net, n,
                              req.settings.ntk_parameterization, theta, NULL),
                   AE_OK);
  ck_assert_int_eq(ae_kernel_regression(theta, n, batch.labels,
                                        batch.num_classes, &mse, &acc, &jitter,
                                        NULL),
                   AE_OK);
  ck_assert_double_eq_tol(sc.generalization.kernel_regression_val_mse, mse,
                          1e-12 * mse);
  ck_assert_double_eq(sc.generalization.kernel_regression_val_acc, acc);
  free(gauss);
  free(blocks);
  ae_net_destroy(net);
  ae_batch_free(&batch);
  ae_scorecard_free(&sc);
  ae_request_free(&req);
  free(text);

  /* Random labels: no kernel regression, with a warning. */
  text = inline_request(0);
  parse_request(text, &req);
  memset(&req.selected, 0, sizeof req.selected);
  ae_metric_set_add(&req.selected, AE_M_KERNEL_REGRESSION_VAL_MSE);
  ck_assert_int_eq(ae_engine_score(e, &req, &reg, NULL, &sc, &err), 0);
  ck_assert(isnan(sc.generalization.kernel_regression_val_mse));
  ck_assert(isnan(sc.generalization.kernel_regression_val_acc));
  ck_assert(has_warning(&sc, "generalization.kernel_regression_val_mse:"));
  ck_assert(isnan(sc.expressivity.activation_patterns));
  ae_scorecard_free(&sc);
  ae_request_free(&req);
  free(text);
  ae_error_clear(&err);
  ae_engine_close(e);
}
END_TEST

START_TEST(engine_nulls_with_warnings) {
  /* An mlp_dag of tanh edges: no piecewise-linear units and no 4-D
   * nodes, so activation_patterns, pattern_kernel_logdet and
   * feature_corr_lambda_min are null with a warning; isotropy is
   * computed on its two block outputs (stem and output node, rank 1). */
  ae_engine_config cfg = {AE_BACKEND_HOST, 0, 0};
  ae_engine *e = NULL;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_engine_open(&cfg, &e, &err), 0);
  ae_request req;
  parse_request("{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":"
                "\"2_21_112\",\"width\":16,\"activation\":\"tanh\"},"
                "\"data\":{\"batch_size\":12,\"input_shape\":[6]},"
                "\"seed\":4}",
                &req);
  memset(&req.selected, 0, sizeof req.selected);
  ae_metric_set_add(&req.selected, AE_M_ACTIVATION_PATTERNS);
  ae_metric_set_add(&req.selected, AE_M_PATTERN_KERNEL_LOGDET);
  ae_metric_set_add(&req.selected, AE_M_FEATURE_ISOTROPY);
  ae_metric_set_add(&req.selected, AE_M_FEATURE_CORR_LAMBDA_MIN);
  ae_scorecard sc;
  ck_assert_int_eq(ae_engine_score(e, &req, &reg, NULL, &sc, &err), 0);
  ck_assert(isnan(sc.expressivity.activation_patterns));
  ck_assert(has_warning(&sc, "expressivity.activation_patterns:"));
  ck_assert(isnan(sc.expressivity.pattern_kernel_logdet));
  ck_assert(has_warning(&sc, "expressivity.pattern_kernel_logdet:"));
  ck_assert(isnan(sc.convergence.feature_corr_lambda_min));
  ck_assert(isnan(sc.convergence.feature_corr_lambda_min_mean));
  ck_assert(has_warning(&sc, "convergence.feature_corr_lambda_min:"));
  /* Two blocks of 16 features: entropies in [0, log 16]. */
  ck_assert(isfinite(sc.expressivity.feature_isotropy));
  ck_assert(sc.expressivity.feature_isotropy > 0.0 &&
            sc.expressivity.feature_isotropy <= 2 * log(16.0) + 1e-9);
  ck_assert(isfinite(sc.expressivity.feature_progressivity));
  ae_scorecard_free(&sc);
  ae_request_free(&req);
  ae_error_clear(&err);
  ae_engine_close(e);
}
END_TEST

int main(void) {
  ae_limits_default(&lim);
  ae_error err = AE_ERROR_INIT;
  if (ae_dataset_registry_init(&reg, 0, &err)) {
    fprintf(stderr, "registry: %s\n", err.reason);
    ae_error_clear(&err);
    return 1;
  }
  Suite *s = suite_create("rank_features");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, distinct_u16_codes);
  tcase_add_test(tc, constant_rows_shortcut_matches_reference);
  tcase_add_test(tc, correlation_lambda_min_by_hand);
  tcase_add_test(tc, correlation_f32_matches_reference);
  tcase_add_test(tc, channel_entropy_by_hand);
  tcase_add_test(tc, logdet_by_hand);
  tcase_add_test(tc, kernel_regression_by_hand);
  tcase_add_test(tc, relu_patterns_enumerable);
  tcase_add_test(tc, hard_activation_kinks);
  tcase_add_test(tc, pattern_kernel_across_words);
  tcase_add_test(tc, nb201_blocks_and_probe);
  tcase_add_test(tc, mlp_dag_and_graph_blocks);
  tcase_add_test(tc, corr_known_nodes_within_rounding);
  tcase_add_test(tc, float32_against_float64_twin);
  tcase_add_test(tc, engine_metrics_match_the_functions);
  tcase_add_test(tc, engine_nulls_with_warnings);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  ae_dataset_registry_free(&reg);
  return failed ? 1 : 0;
}
