/* test_net_expressivity.c: what the expressivity group takes from the host
 * executor: sign patterns and their exact distinct count (the metrics.md
 * §6 linear-regions toy: 4 patterns), the curvature of the §6 identity
 * circle (sum 128) and ellipse (kappa 2, 0.5059644256, 0.25) through
 * ae_net_forward_jet (float64 reference and float32 default), jets
 * against float64 finite differences of the plain reference forward (BN
 * statistics frozen) for nets of every smooth activation, and the float32
 * jets' curvature sum against the float64 one (conv + BN net, MLP); the
 * jets' fast path (dead and zero nodes skipped, ReLU fused into the
 * direct convolution) against ae_net_set_jet_reference's full run, bit for
 * bit, on NB201 networks with none edges, cut paths, skip-only and
 * all-conv cells, in float32 and float64, BN's beta 0 and not, and a sum
 * with a zero term on -0 inputs. */
#include "api/status.h"
#include "gpu/host/blas_env.h"
#include "gpu/host/graph_build.h"
#include "gpu/host/net.h"
#include "gpu/host/reference.h"
#include "gpu/philox.h"
#include <cblas.h>
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The distinct count of n rows, asserting that counting succeeded. */
static size_t distinct(const uint64_t *bits, size_t n, size_t words) {
  size_t count = SIZE_MAX;
  ck_assert_int_eq(ae_count_distinct_patterns(bits, n, words, &count), AE_OK);
  return count;
}

START_TEST(linear_regions_toy) {
  /* input[1] -> linear(3) with neurons 1[x - b_k > 0], b = (-0.5, 0, 0.5). */
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 1, 0, 0);
  int l = ae_gb_linear(&g, x, 3, 1, 1.0);
  int r = ae_gb_act(&g, l, AE_ACT_RELU, 0.0);
  ck_assert_int_eq(ae_gb_finish(&g, r), 0);
  enum { N = 1000 };
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, N, &net), 0);
  ae_net_init_weights(net, 0, 0);
  size_t count;
  float *w = ae_net_param(net, l, AE_NET_WEIGHT, &count);
  ck_assert_uint_eq(count, 3);
  float *b = ae_net_param(net, l, AE_NET_BIAS, &count);
  ck_assert_uint_eq(count, 3);
  for (int k = 0; k < 3; k++) {
    w[k] = 1.0f;
    b[k] = (float)(0.5 - 0.5 * k);
  }
  float *pts = malloc(sizeof(float) * N);
  ck_assert_ptr_nonnull(pts);
  for (int i = 0; i < N; i++)
    pts[i] = (float)(-1.0 + 2.0 * i / (N - 1));
  uint64_t *bits;
  size_t words;
  ck_assert_int_eq(ae_net_sign_patterns(net, pts, N, &bits, &words), 0);
  ck_assert_uint_eq(words, 1);
  ck_assert_uint_eq(distinct(bits, N, words), 4);
  /* x = -1: no neuron; x = 1: all three, in graph (neuron) order. */
  ck_assert_uint_eq(bits[0], 0);
  ck_assert_uint_eq(bits[N - 1], 7);
  ck_assert_uint_eq(bits[300], 1); /* x = -0.4: only x > -0.5 */
  ck_assert_uint_eq(bits[600], 3); /* x = 0.2: x > -0.5 and x > 0 */
  free(bits);
  free(pts);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

START_TEST(distinct_patterns_exact) {
  /* Rows of 2 words; rows differing only in the high word count apart. */
  uint64_t rows[6][2] = {{1, 0}, {1, 1ull << 63}, {1, 0},
                         {0, 0}, {1, 1ull << 63}, {2, 0}};
  ck_assert_uint_eq(distinct(&rows[0][0], 6, 2), 4);
  ck_assert_uint_eq(distinct(&rows[0][0], 1, 2), 1);
  ck_assert_uint_eq(distinct(&rows[0][0], 0, 2), 0);
  /* Leaky relu counts as a pattern activation; tanh does not. */
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 2, 0, 0);
  int l = ae_gb_linear(&g, x, 70, 0, 2.0);
  int a = ae_gb_act(&g, l, AE_ACT_LEAKY_RELU, 0.2);
  int t = ae_gb_act(&g, a, AE_ACT_TANH, 0.0);
  int o = ae_gb_linear(&g, t, 3, 0, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, o), 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, 4, &net), 0);
  ae_net_init_weights(net, 3, 0);
  float xs[8] = {1, 0, -1, 0, 0.5f, 0.5f, 1, 0};
  uint64_t *bits;
  size_t words;
  ck_assert_int_eq(ae_net_sign_patterns(net, xs, 4, &bits, &words), 0);
  ck_assert_uint_eq(words, 2); /* 70 bits */
  /* Samples 0 and 3 are equal, x and -x have complementary patterns. */
  ck_assert_uint_eq(distinct(bits, 4, words), 3);
  const float *z = ae_net_activation(net, l);
  for (int k = 0; k < 70; k++) {
    int on = (int)((bits[k >> 6] >> (k & 63)) & 1);
    ck_assert_int_eq(on, z[k] > 0.0f);
    int on1 = (int)((bits[words + (k >> 6)] >> (k & 63)) & 1);
    ck_assert_int_eq(on1, z[70 + k] > 0.0f);
  }
  free(bits);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

/* A 2 -> 2 linear map without bias, weights set by hand. */
static ae_net *linear_map(ae_graph *g, const float m[4]) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 2, 0, 0);
  int l = ae_gb_linear(g, x, 2, 0, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, l), 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(g, 4, &net), 0);
  ae_net_init_weights(net, 0, 0);
  size_t count;
  float *w = ae_net_param(net, l, AE_NET_WEIGHT, &count);
  memcpy(w, m, sizeof(float) * 4);
  return net;
}

/* Unit-circle jets at angles th[0..n). */
static void circle(const double *th, int n, double *x, double *dx,
                   double *ddx) {
  for (int i = 0; i < n; i++) {
    x[2 * i] = cos(th[i]);
    x[2 * i + 1] = sin(th[i]);
    dx[2 * i] = -sin(th[i]);
    dx[2 * i + 1] = cos(th[i]);
    ddx[2 * i] = -cos(th[i]);
    ddx[2 * i + 1] = -sin(th[i]);
  }
}

START_TEST(distinct_patterns_out_of_memory) {
  /* An index of SIZE_MAX / 8 rows cannot be allocated: the count fails
   * with AE_ENOMEM instead of reporting 0 regions (the rows are never
   * read before the index exists). */
  uint64_t row[1] = {1};
  size_t count = 7;
  ck_assert_int_eq(ae_count_distinct_patterns(row, SIZE_MAX / 8, 1, &count),
                   AE_ENOMEM);
  ck_assert_uint_eq(count, 0);
}
END_TEST

START_TEST(curvature_identity_circle) {
  ae_graph g;
  static const float eye[4] = {1, 0, 0, 1};
  ae_net *net = linear_map(&g, eye);
  enum { P = 128 };
  double th[P], x[2 * P], dx[2 * P], ddx[2 * P], y[2 * P], dy[2 * P],
      ddy[2 * P];
  for (int i = 0; i < P; i++)
    th[i] = 2.0 * M_PI * i / (P - 1);
  circle(th, P, x, dx, ddx);
  /* float64 (the reference) to 1e-9, float32 to float32 rounding. */
  for (int dbl = 1; dbl >= 0; dbl--) {
    ck_assert_int_eq(ae_net_set_double(net, dbl), 0);
    /* The batch is larger than max_batch: jets plan their own buffers. */
    ck_assert_int_eq(ae_net_forward_jet(net, x, dx, ddx, P, y, dy, ddy), 0);
    int degenerate = 0;
    double sum = ae_curvature_sum(dy, ddy, P, 2, &degenerate);
    ck_assert_int_eq(degenerate, 0);
    ck_assert_double_eq_tol(sum, 128.0, dbl ? 1e-9 : 128.0 * 1e-5);
  }
  /* A zero velocity counts as degenerate and adds nothing. */
  int degenerate = 0;
  double zero_v[2] = {0, 0}, acc[2] = {1, 0};
  ck_assert_double_eq(ae_curvature_sum(zero_v, acc, 1, 2, &degenerate), 0.0);
  ck_assert_int_eq(degenerate, 1);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

START_TEST(curvature_ellipse) {
  ae_graph g;
  static const float m[4] = {2, 0, 0, 1}; /* u0 -> 2 e1, u1 -> e2 */
  ae_net *net = linear_map(&g, m);
  double th[3] = {0.0, M_PI / 4, M_PI / 2};
  double want[3] = {2.0, 0.5059644256, 0.25};
  double x[6], dx[6], ddx[6], y[6], dy[6], ddy[6];
  circle(th, 3, x, dx, ddx);
  for (int dbl = 1; dbl >= 0; dbl--) {
    ck_assert_int_eq(ae_net_set_double(net, dbl), 0);
    ck_assert_int_eq(ae_net_forward_jet(net, x, dx, ddx, 3, y, dy, ddy), 0);
    for (int i = 0; i < 3; i++) {
      double k = ae_curvature_sum(dy + 2 * i, ddy + 2 * i, 1, 2, NULL);
      ck_assert_double_eq_tol(k, want[i], dbl ? 1e-9 : 1e-5 * want[i]);
      ck_assert_double_eq_tol(y[2 * i], 2 * cos(th[i]), dbl ? 1e-12 : 1e-6);
    }
  }
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

enum { JB = 4 };

/* Conv, BN (rank 3 and 1), each smooth activation, pools, add, linear. */
static void build_smooth_graph(ae_graph *g, ae_act_fn f1, ae_act_fn f2) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 2, 5, 5);
  int c1 = ae_gb_conv(g, x, 3, 3, 2, 1, 1.0);
  int b1 = ae_gb_bn(g, c1);
  int a1 = ae_gb_act(g, b1, f1, 0.0);
  int p1 = ae_gb_avg_pool(g, a1, 3, 1, 1, 0);
  int ins[2] = {p1, a1};
  int s = ae_gb_add(g, ins, 2);
  int gp = ae_gb_gap(g, s);
  int l1 = ae_gb_linear(g, gp, 5, 1, 2.0);
  int b2 = ae_gb_bn(g, l1);
  int a2 = ae_gb_act(g, b2, f2, 0.1);
  int f = ae_gb_unary(g, AE_OP_FLATTEN, a2);
  int o = ae_gb_linear(g, f, 3, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, o), 0);
}

static void check_jets(ae_act_fn f1, ae_act_fn f2) {
  ae_graph g;
  build_smooth_graph(&g, f1, f2);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, JB, &net), 0);
  ae_net_init_weights(net, 11, 0);
  enum { D = 50, C = 3 };
  double x[JB * D], dx[JB * D], ddx[JB * D], xt[JB * D];
  for (int i = 0; i < JB * D; i++) {
    x[i] = ae_philox_normal(1, AE_TID_CURVE_DIRS, 0, (uint64_t)i);
    dx[i] = ae_philox_normal(1, AE_TID_CURVE_DIRS, 1, (uint64_t)i);
    ddx[i] = ae_philox_normal(1, AE_TID_CURVE_DIRS, 2, (uint64_t)i);
  }
  double y[JB * C], dy[JB * C], ddy[JB * C];
  /* The float64 jets against finite differences. */
  ck_assert_int_eq(ae_net_set_double(net, 1), 0);
  ck_assert_int_eq(ae_net_forward_jet(net, x, dx, ddx, JB, y, dy, ddy), 0);
  /* Reference along x(t) = x + t dx + t^2/2 ddx, statistics of t = 0. */
  ae_ref_params p;
  ck_assert_int_eq(ae_ref_params_from_net(net, &p), 0);
  double y0[JB * C], yp[JB * C], ym[JB * C];
  ck_assert_int_eq(ae_ref_forward(&g, &p, 0, x, JB, y0), 0);
  const double h = 1e-4;
  for (int i = 0; i < JB * D; i++)
    xt[i] = x[i] + h * dx[i] + 0.5 * h * h * ddx[i];
  ck_assert_int_eq(ae_ref_forward(&g, &p, 1, xt, JB, yp), 0);
  for (int i = 0; i < JB * D; i++)
    xt[i] = x[i] - h * dx[i] + 0.5 * h * h * ddx[i];
  ck_assert_int_eq(ae_ref_forward(&g, &p, 1, xt, JB, ym), 0);
  double scale1 = 0, scale2 = 0;
  for (int i = 0; i < JB * C; i++) {
    scale1 = fmax(scale1, fabs(dy[i]));
    scale2 = fmax(scale2, fabs(ddy[i]));
  }
  ck_assert_double_gt(scale1, 1e-3);
  ck_assert_double_gt(scale2, 1e-3);
  for (int i = 0; i < JB * C; i++) {
    ck_assert_double_eq_tol(y[i], y0[i], 1e-10 * (1 + fabs(y0[i])));
    double d1 = (yp[i] - ym[i]) / (2 * h);
    double d2 = (yp[i] - 2 * y0[i] + ym[i]) / (h * h);
    ck_assert_msg(fabs(d1 - dy[i]) <= 1e-6 * scale1, "dy %d: %g vs fd %g", i,
                  dy[i], d1);
    ck_assert_msg(fabs(d2 - ddy[i]) <= 1e-4 * scale2, "ddy %d: %g vs fd %g", i,
                  ddy[i], d2);
  }
  /* The float32 jets (the default) against the float64 ones. */
  double yf[JB * C], dyf[JB * C], ddyf[JB * C];
  ck_assert_int_eq(ae_net_set_double(net, 0), 0);
  ck_assert_int_eq(ae_net_forward_jet(net, x, dx, ddx, JB, yf, dyf, ddyf), 0);
  for (int i = 0; i < JB * C; i++) {
    ck_assert_double_eq_tol(yf[i], y[i], 1e-4 * (1 + fabs(y[i])));
    ck_assert_msg(fabs(dyf[i] - dy[i]) <= 1e-4 * scale1, "dy32 %d: %g vs %g", i,
                  dyf[i], dy[i]);
    ck_assert_msg(fabs(ddyf[i] - ddy[i]) <= 1e-4 * scale2, "ddy32 %d: %g vs %g",
                  i, ddyf[i], ddy[i]);
  }
  ae_ref_params_free(&p);
  ae_net_destroy(net);
  ae_gb_free(&g);
}

START_TEST(jets_match_finite_differences) {
  check_jets(AE_ACT_TANH, AE_ACT_GELU);
  check_jets(AE_ACT_SIGMOID, AE_ACT_SWISH);
  check_jets(AE_ACT_ERF, AE_ACT_TANH);
  check_jets(AE_ACT_SWISH, AE_ACT_IDENTITY);
  check_jets(AE_ACT_GELU, AE_ACT_SIGMOID);
  /* Piecewise linear: exact JVPs with the pattern frozen. */
  check_jets(AE_ACT_RELU, AE_ACT_LEAKY_RELU);
}
END_TEST

/* Curvature sum over a P-point circle in the plane of two Philox
 * directions, float32 jets against float64 ones on the same weights. */
static void check_f32_curvature(const ae_graph *g, int dim, int classes) {
  enum { P = 128 };
  ae_net *net;
  ck_assert_int_eq(ae_net_create(g, 8, &net), 0);
  double *u = malloc(sizeof(double) * 2 * (size_t)dim);
  double *x = malloc(sizeof(double) * P * (size_t)dim);
  double *dx = malloc(sizeof(double) * P * (size_t)dim);
  double *ddx = malloc(sizeof(double) * P * (size_t)dim);
  double *dy = malloc(sizeof(double) * P * (size_t)classes);
  double *ddy = malloc(sizeof(double) * P * (size_t)classes);
  ck_assert(u && x && dx && ddx && dy && ddy);
  for (int i = 0; i < 2 * dim; i++)
    u[i] = ae_philox_normal(4, AE_TID_CURVE_DIRS, 0, (uint64_t)i);
  for (int i = 0; i < P; i++) {
    double t = 2.0 * M_PI * i / (P - 1);
    for (int k = 0; k < dim; k++) {
      size_t at = (size_t)i * (size_t)dim + (size_t)k;
      x[at] = u[k] * cos(t) + u[dim + k] * sin(t);
      dx[at] = -u[k] * sin(t) + u[dim + k] * cos(t);
      ddx[at] = -x[at];
    }
  }
  for (uint32_t rep = 0; rep < 2; rep++) {
    ae_net_init_weights(net, 21, rep);
    double sum[2];
    for (int dbl = 0; dbl < 2; dbl++) {
      ck_assert_int_eq(ae_net_set_double(net, dbl), 0);
      ck_assert_int_eq(ae_net_forward_jet(net, x, dx, ddx, P, NULL, dy, ddy),
                       0);
      int degenerate = 0;
      sum[dbl] = ae_curvature_sum(dy, ddy, P, classes, &degenerate);
      ck_assert_int_eq(degenerate, 0);
    }
    ck_assert_double_gt(sum[1], 1.0);
    ck_assert_msg(fabs(sum[0] - sum[1]) <= 1e-4 * sum[1],
                  "float32 %.10g vs float64 %.10g", sum[0], sum[1]);
  }
  free(u);
  free(x);
  free(dx);
  free(ddx);
  free(dy);
  free(ddy);
  ae_net_destroy(net);
}

START_TEST(float32_curvature_matches_float64) {
  /* Conv + BN + relu net with an avg pool, a residual add, a 1x1 conv. */
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 3, 8, 8);
  int c1 = ae_gb_conv(&g, x, 8, 3, 1, 1, 2.0);
  int b1 = ae_gb_bn(&g, c1);
  int a1 = ae_gb_act(&g, b1, AE_ACT_RELU, 0.0);
  int c2 = ae_gb_conv(&g, a1, 8, 3, 1, 1, 2.0);
  int b2 = ae_gb_bn(&g, c2);
  int a2 = ae_gb_act(&g, b2, AE_ACT_RELU, 0.0);
  int p2 = ae_gb_avg_pool(&g, a2, 3, 1, 1, 0);
  int c3 = ae_gb_conv(&g, a1, 8, 1, 1, 0, 2.0);
  int ins[3] = {p2, c3, a1};
  int s = ae_gb_add(&g, ins, 3);
  int i1 = ae_gb_unary(&g, AE_OP_IDENTITY, s);
  int c4 = ae_gb_conv(&g, i1, 16, 3, 2, 1, 2.0);
  int b4 = ae_gb_bn(&g, c4);
  int a4 = ae_gb_act(&g, b4, AE_ACT_RELU, 0.0);
  int gp = ae_gb_gap(&g, a4);
  int o = ae_gb_linear(&g, gp, 10, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, o), 0);
  check_f32_curvature(&g, 3 * 8 * 8, 10);
  ae_gb_free(&g);
  /* MLP: 20 -> 64 -> 64 -> 5, relu and tanh. */
  ae_gb_begin(&g);
  x = ae_gb_input(&g, 20, 0, 0);
  int l1 = ae_gb_linear(&g, x, 64, 1, 2.0);
  int r1 = ae_gb_act(&g, l1, AE_ACT_RELU, 0.0);
  int l2 = ae_gb_linear(&g, r1, 64, 1, 2.0);
  int r2 = ae_gb_act(&g, l2, AE_ACT_TANH, 0.0);
  o = ae_gb_linear(&g, r2, 5, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, o), 0);
  check_f32_curvature(&g, 20, 5);
  ae_gb_free(&g);
}
END_TEST

/* NB201 cells for the fast path: none edges (zero nodes feeding convs
 * and sums), paths cut (the cell's output a ZERO, the rest of the net
 * zeros, dead nodes), skip-only, all-conv, pools. */
static const char *const JET_CELLS[] = {
    "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|"
    "avg_pool_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|none~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|"
    "skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
    "nor_conv_3x3~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|"
    "nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|nor_conv_1x1~1|none~2|",
};

static void lower_nb201_cell(const char *cell, ae_graph *g) {
  char text[512];
  snprintf(text, sizeof text,
           "{\"type\":\"nb201\",\"cell\":\"%s\",\"channels\":4,"
           "\"cells_per_stage\":1}",
           cell);
  ae_limits lim;
  ae_limits_default(&lim);
  json_error_t jerr;
  json_t *j = json_loads(text, 0, &jerr);
  ck_assert_ptr_nonnull(j);
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(ae_arch_from_json(j, "", &lim, &a, &p), AE_OK);
  json_decref(j);
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.input_shape[0] = 3;
  o.input_shape[1] = o.input_shape[2] = 16;
  o.input_rank = 3;
  o.num_classes = 5;
  memset(g, 0, sizeof *g);
  ck_assert_int_eq(ae_arch_lower(&a, &o, &lim, "", g, &p), AE_OK);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}

/* Moves every BN's beta (and gamma) away from 0 (and 1). */
static void move_bn_params(ae_net *net) {
  const ae_graph *g = ae_net_graph(net);
  uint64_t i = 0;
  for (int k = 0; k < g->n_nodes; k++) {
    static const ae_net_param_kind kinds[] = {AE_NET_GAMMA, AE_NET_BETA};
    for (int q = 0; q < 2; q++) {
      size_t c;
      float *t = ae_net_param(net, k, kinds[q], &c);
      for (size_t e = 0; t && e < c; e++)
        t[e] = (float)((q == 0 ? 1.0 : 0.0) +
                       0.3 * ae_philox_normal(5, 98, 0, i++));
    }
  }
}

START_TEST(jets_fast_path_matches_reference) {
  enum { P = 24, DIM = 3 * 16 * 16, C = 5 };
  static double x[P * DIM], dx[P * DIM], ddx[P * DIM];
  for (int i = 0; i < P; i++) {
    double t = 2.0 * M_PI * i / (P - 1);
    for (int k = 0; k < DIM; k++) {
      double u0 = ae_philox_normal(1, 78, 0, (uint64_t)k) / sqrt(DIM);
      double u1 = ae_philox_normal(1, 78, 1, (uint64_t)k) / sqrt(DIM);
      size_t at = (size_t)i * DIM + k;
      x[at] = u0 * cos(t) + u1 * sin(t);
      dx[at] = -u0 * sin(t) + u1 * cos(t);
      ddx[at] = -x[at];
    }
  }
  for (size_t c = 0; c < sizeof JET_CELLS / sizeof *JET_CELLS; c++) {
    ae_graph g;
    lower_nb201_cell(JET_CELLS[c], &g);
    ae_net *net = NULL;
    ck_assert_int_eq(ae_net_create(&g, 8, &net), 0);
    for (int variant = 0; variant < 4; variant++) {
      int dbl = variant & 1, moved = variant >> 1;
      ae_net_init_weights(net, 7, (uint32_t)c);
      if (moved) move_bn_params(net);
      ck_assert_int_eq(ae_net_set_double(net, dbl), 0);
      /* out[0]: the fast path, out[1]: the reference.  A reference run on
       * other inputs first leaves wrong values in every jet buffer: a
       * skipped node read by mistake shows. */
      double out[2][3][P * C];
      ae_net_set_jet_reference(net, 1);
      ck_assert_int_eq(
          ae_net_forward_jet(net, dx, x, x, P, out[1][0], out[1][1], out[1][2]),
          0);
      for (int ref = 0; ref < 2; ref++) {
        ae_net_set_jet_reference(net, ref);
        ck_assert_int_eq(ae_net_forward_jet(net, x, dx, ddx, P, out[ref][0],
                                            out[ref][1], out[ref][2]),
                         0);
      }
      for (int q = 0; q < 3; q++)
        for (int e = 0; e < P * C; e++)
          ck_assert_msg(memcmp(&out[0][q][e], &out[1][q][e], sizeof(double)) ==
                            0,
                        "cell %zu variant %d stream %d [%d]: %a vs %a", c,
                        variant, q, e, out[0][q][e], out[1][q][e]);
      double sum = 0.0;
      for (int e = 0; e < P * C; e++)
        sum += fabs(out[0][1][e]);
      /* The cut cell's logits do not move along the circle; the others'
         do. */
      if (c == 1)
        ck_assert_double_eq(sum, 0.0);
      else
        ck_assert_double_gt(sum, 0.0);
    }
    ae_net_destroy(net);
    ae_graph_free(&g);
  }
}
END_TEST

/* A sum with a zero term adds it as + 0: a -0 in the other term becomes
 * +0, as the full sum gives.  The sum is the output here, so the sign
 * reaches the caller (behind a linear map it would vanish in the GEMM). */
START_TEST(jets_zero_term_turns_minus_zero_to_plus) {
  for (int first = 0; first < 2; first++) {
    ae_graph g;
    ae_gb_begin(&g);
    int x = ae_gb_input(&g, 4, 0, 0);
    int id = ae_gb_unary(&g, AE_OP_IDENTITY, x);
    int z = ae_gb_unary(&g, AE_OP_ZERO, x);
    int ins[2] = {first ? z : id, first ? id : z};
    int sum = ae_gb_add(&g, ins, 2);
    ck_assert_int_eq(ae_gb_finish(&g, sum), 0);
    ae_net *net = NULL;
    ck_assert_int_eq(ae_net_create(&g, 2, &net), 0);
    double in[8] = {1.0, -0.0, 0.0, -2.0, -0.0, -0.0, 3.0, 0.0};
    double out[2][3][8];
    for (int ref = 0; ref < 2; ref++) {
      ae_net_set_jet_reference(net, ref);
      ck_assert_int_eq(ae_net_forward_jet(net, in, in, in, 2, out[ref][0],
                                          out[ref][1], out[ref][2]),
                       0);
    }
    ck_assert_int_eq(memcmp(out[0], out[1], sizeof out[0]), 0);
    ck_assert(!signbit(out[0][1][1]) && out[0][1][1] == 0.0);
    ae_net_destroy(net);
    ae_gb_free(&g);
  }
}
END_TEST

int main(int argc, char **argv) {
  /* OpenBLAS's SkylakeX kernels where the CPU has AVX-512: what the
   * direct convolution (and so the fused ReLU of the jets) needs. */
  ae_blas_tune_and_reexec(argc, argv);
  openblas_set_num_threads(1);
  Suite *s = suite_create("net_expressivity");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, linear_regions_toy);
  tcase_add_test(tc, distinct_patterns_exact);
  tcase_add_test(tc, distinct_patterns_out_of_memory);
  tcase_add_test(tc, curvature_identity_circle);
  tcase_add_test(tc, curvature_ellipse);
  tcase_add_test(tc, jets_match_finite_differences);
  tcase_add_test(tc, float32_curvature_matches_float64);
  tcase_add_test(tc, jets_fast_path_matches_reference);
  tcase_add_test(tc, jets_zero_term_turns_minus_zero_to_plus);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
