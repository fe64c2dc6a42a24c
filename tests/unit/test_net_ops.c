/* test_net_ops.c: the operators of real CNNs on the host executor
 * (gpu/host/net_ops.c and the hard activations of gpu/activation.h):
 * max_pool (padding, dilation, ceil_mode), concat (channels and
 * features), mul (broadcast (C,1,1) squeeze-and-excitation scale, and a
 * node times itself), pad, grouped (strided and padded too), depthwise
 * and dilated conv, relu6,
 * hardswish, hardsigmoid.
 *
 * Against the plain float64 reference forward (gpu/host/reference.c,
 * written independently with direct loops), by central finite
 * differences in float64:
 *   - the forward of the float64 twin (1e-12) and of float32 (1e-5);
 *   - the train-mode backward (every parameter and the input gradient;
 *     BN statistics recomputed per perturbed batch, as PyTorch .train());
 *   - the empirical NTK, entry by entry, from the reference's Jacobian
 *     of sum_c f_c(x_i) in every parameter (a net without BN: samples
 *     independent), both parameterizations;
 *   - the jets: dy and ddy along a curve x + t dx + t^2/2 ddx against
 *     central first and second differences;
 *   - float32 against the float64 twin (NTK and jets, measured spread);
 *   - the sign patterns: relu6, hardswish and hardsigmoid give two bits
 *     per unit (kinks 0, 6 and -3, 3), each set iff the input exceeds its
 *     kink.
 * The planner's geometry is checked too (grouped conv fan-in and weight
 * count, the dilated and ceil_mode extents; a wrong shape refused). */
#include "api/arch.h"
#include "api/status.h"
#include "gpu/activation.h"
#include "gpu/host/blas_env.h"
#include "gpu/host/graph_build.h"
#include "gpu/host/net.h"
#include "gpu/host/reference.h"
#include "gpu/philox.h"
#include "gpu/plan.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 4, MAX_CLASSES = 8 };

/* Every new op; with_bn adds BatchNorm after the first conv (the train-
 * mode backward's mixing), without it the samples are independent (the
 * NTK and the jets against the frozen reference). */
static void build_ops_graph(ae_graph *g, int with_bn) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 4, 6, 6);
  int c1 = ae_gb_conv(g, x, 8, 3, 1, 1, 1.0);
  int b1 = with_bn ? ae_gb_bn(g, c1) : c1;
  int h1 = ae_gb_act(g, b1, (ae_act_fn)AE_ACT_HARDSWISH, 0.0);
  /* depthwise, dilated 2, then relu6 and a dilated max-pool */
  int dw = ae_gb_conv_ex(g, h1, 8, 3, 1, 2, 8, 2, 2.0);
  int r6 = ae_gb_act(g, dw, (ae_act_fn)AE_ACT_RELU6, 0.0);
  int mp = ae_gb_max_pool(g, r6, 3, 1, 2, 2, 0);
  /* pad then a grouped conv (2 groups) back to 6x6 */
  int pads[4] = {1, 0, 0, 1};
  int pd = ae_gb_pad(g, h1, pads);
  int gc = ae_gb_conv_ex(g, pd, 4, 2, 1, 0, 2, 1, 2.0);
  int cat_in[2] = {mp, gc};
  int cat = ae_gb_concat(g, cat_in, 2); /* 12 x 6 x 6 */
  /* squeeze-and-excitation: (12,1,1) scale */
  int sq = ae_gb_avg_pool(g, cat, 6, 6, 0, 1);
  int ex = ae_gb_conv(g, sq, 12, 1, 1, 0, 1.0);
  int hs = ae_gb_act(g, ex, (ae_act_fn)AE_ACT_HARDSIGMOID, 0.0);
  int se_in[2] = {cat, hs};
  int se = ae_gb_mul(g, se_in, 2);
  /* ceil_mode max-pool: 6 -> 3 (floor would give 2) */
  int mp2 = ae_gb_max_pool(g, se, 3, 2, 0, 1, 1);
  /* grouped (4 groups of 3 channels), stride 2, padded: 3x3 -> 2x2 */
  int gs = ae_gb_conv_ex(g, mp2, 12, 3, 2, 1, 4, 1, 1.0);
  int gp = ae_gb_gap(g, gs); /* 12 */
  int l1 = ae_gb_linear(g, gp, 5, 1, 1.0);
  int f_in[2] = {gp, l1};
  int fc = ae_gb_concat(g, f_in, 2); /* 17 features */
  int sq_in[2] = {fc, fc};
  int sqr = ae_gb_mul(g, sq_in, 2); /* a node times itself */
  int out = ae_gb_linear(g, sqr, 3, 0, 1.0);
  ck_assert_int_ge(out, 0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
}

static size_t elems(const ae_node *nd) {
  return nd->rank == 3 ? (size_t)nd->shape[0] * (size_t)nd->shape[1] *
                             (size_t)nd->shape[2]
                       : (size_t)nd->shape[0];
}

/* Weights of the seed; BN gamma/beta and biases moved away from 1, 0 and
 * 0. */
static void draw_params(ae_net *net) {
  ae_net_init_weights(net, 11, 0);
  const ae_graph *g = ae_net_graph(net);
  uint64_t i = 0;
  for (int k = 0; k < g->n_nodes; k++) {
    static const ae_net_param_kind kinds[] = {AE_NET_BIAS, AE_NET_GAMMA,
                                              AE_NET_BETA};
    for (int q = 0; q < 3; q++) {
      size_t c;
      float *t = ae_net_param(net, k, kinds[q], &c);
      for (size_t e = 0; t && e < c; e++)
        t[e] = (float)((q == 1 ? 1.0 : 0.0) +
                       0.5 * ae_philox_normal(5, 99, 0, i++));
    }
  }
}

/* Inputs of scale 2: the hard activations' kinks (+-3, 6) are reached. */
static void make_inputs(const ae_graph *g, int batch, float *xf, double *xd) {
  size_t n = (size_t)batch * elems(&g->nodes[0]);
  for (size_t i = 0; i < n; i++) {
    xf[i] = (float)(2.0 * ae_philox_normal(7, AE_TID_SYNTHETIC_INPUTS, 0, i));
    xd[i] = xf[i];
  }
}

START_TEST(plan_geometry) {
  ae_graph g;
  build_ops_graph(&g, 1);
  ae_plan *p;
  const ae_plan_options opt = {64, sizeof(float), 1};
  ck_assert_int_eq(ae_plan_create(&g, BATCH, &opt, &p), 0);
  for (int k = 0; k < g.n_nodes; k++) {
    const ae_node *nd = &g.nodes[k];
    if (nd->op == AE_OP_CONV && nd->groups == 8) {
      /* depthwise 3x3: fan-in 9 (PyTorch's), 8 x 1 x 3 x 3 weights */
      ck_assert_int_eq(p->geom[k].fan_in, 9);
      ck_assert_uint_eq(p->geom[k].n_weight, 72);
      ck_assert_int_eq(nd->shape[1], 6);
    }
    if (nd->op == AE_OP_CONV && nd->groups == 2) {
      ck_assert_int_eq(p->geom[k].fan_in, 4 * 2 * 2);
      ck_assert_uint_eq(p->geom[k].n_weight, 4 * 4 * 2 * 2);
    }
    if ((int)nd->op == AE_OP_MAX_POOL && nd->ceil_mode)
      ck_assert_int_eq(nd->shape[1], 3);
  }
  ck_assert_int_lt(ae_plan_first_host_only_node(&g), g.n_nodes);
  ck_assert_int_ge(ae_plan_first_host_only_node(&g), 0);
  /* params: the graph's own count equals the plan's */
  ck_assert_double_eq((double)ae_plan_param_count(p), ae_graph_params(&g));
  ae_plan_destroy(p);
  /* A max-pool whose shape does not follow from its window is refused. */
  for (int k = 0; k < g.n_nodes; k++)
    if ((int)g.nodes[k].op == AE_OP_MAX_POOL && g.nodes[k].ceil_mode) {
      g.nodes[k].ceil_mode = 0;
      ck_assert_int_eq(ae_plan_create(&g, BATCH, &opt, &p), AE_EINVAL);
      g.nodes[k].ceil_mode = 1;
    }
  ae_gb_free(&g);
}
END_TEST

/* The float64 twin's and float32's logits against the reference. */
START_TEST(forward_matches_reference) {
  for (int bn = 0; bn < 2; bn++) {
    ae_graph g;
    build_ops_graph(&g, bn);
    ae_net *net;
    ck_assert_int_eq(ae_net_create(&g, BATCH, &net), 0);
    draw_params(net);
    size_t nin = BATCH * elems(&g.nodes[0]);
    float *xf = malloc(nin * sizeof *xf);
    double *xd = malloc(nin * sizeof *xd);
    make_inputs(&g, BATCH, xf, xd);
    double ref[BATCH * MAX_CLASSES], y64[BATCH * MAX_CLASSES];
    float y32[BATCH * MAX_CLASSES];
    ae_ref_params p;
    ck_assert_int_eq(ae_ref_params_from_net(net, &p), 0);
    ck_assert_int_eq(ae_ref_forward(&g, &p, 0, xd, BATCH, ref), 0);
    ck_assert_int_eq(ae_net_set_double(net, 1), 0);
    ck_assert_int_eq(ae_net_forward64(net, xf, BATCH, y64), 0);
    ck_assert_int_eq(ae_net_set_double(net, 0), 0);
    ck_assert_int_eq(ae_net_forward(net, xf, BATCH, y32), 0);
    double scale = 0.0, d64 = 0.0, d32 = 0.0;
    for (int i = 0; i < BATCH * g.num_classes; i++) {
      scale = fmax(scale, fabs(ref[i]));
      d64 = fmax(d64, fabs(y64[i] - ref[i]));
      d32 = fmax(d32, fabs((double)y32[i] - ref[i]));
    }
    if (getenv("AE_TEST_VERBOSE"))
      fprintf(stderr, "forward bn=%d scale %g f64 %g f32 %g\n", bn, scale, d64,
              d32);
    ck_assert_double_gt(scale, 1e-3);
    ck_assert_double_lt(d64, 1e-12 * (1.0 + scale));
    ck_assert_double_lt(d32, 1e-5 * (1.0 + scale));
    ae_ref_params_free(&p);
    ae_net_destroy(net);
    free(xf);
    free(xd);
    ae_gb_free(&g);
  }
}
END_TEST

/* L = sum(s * logits), reference forward with train-mode BN. */
static double loss(const ae_graph *g, ae_ref_params *p, const double *x,
                   const double *s) {
  double logits[BATCH * MAX_CLASSES];
  ck_assert_int_eq(ae_ref_forward(g, p, 0, x, BATCH, logits), 0);
  double l = 0.0;
  for (int i = 0; i < BATCH * g->num_classes; i++)
    l += s[i] * logits[i];
  return l;
}

static double fd_check(const ae_graph *g, ae_ref_params *p, double *t,
                       size_t count, const double *x, const double *s,
                       const double *an) {
  const double h = 1e-6;
  double worst = 0.0;
  for (size_t e = 0; e < count; e++) {
    double keep = t[e];
    t[e] = keep + h;
    double lp = loss(g, p, x, s);
    t[e] = keep - h;
    double lm = loss(g, p, x, s);
    t[e] = keep;
    double err = fabs((lp - lm) / (2 * h) - an[e]) / (1.0 + fabs(an[e]));
    if (err > worst) worst = err;
  }
  return worst;
}

START_TEST(train_backward_finite_differences) {
  ae_graph g;
  build_ops_graph(&g, 1);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &net), 0);
  draw_params(net);
  size_t nin = BATCH * elems(&g.nodes[0]);
  float *xf = malloc(nin * sizeof *xf);
  double *xd = malloc(nin * sizeof *xd);
  double *an = malloc(4096 * sizeof *an);
  make_inputs(&g, BATCH, xf, xd);
  double s[BATCH * MAX_CLASSES];
  for (int i = 0; i < BATCH * g.num_classes; i++)
    s[i] = ae_philox_normal(3, 77, 0, (uint64_t)i);
  ck_assert_int_eq(ae_net_set_double(net, 1), 0);
  ae_net_grad *gr;
  ck_assert_int_eq(ae_net_grad_create(net, &gr), 0);
  ck_assert_int_eq(ae_net_forward64(net, xf, BATCH, NULL), 0);
  ck_assert_int_eq(ae_net_backward(net, gr, BATCH, g.output, s, -1), 0);
  ae_ref_params p;
  ck_assert_int_eq(ae_ref_params_from_net(net, &p), 0);
  double worst = 0.0;
  int grouped = 0;
  for (int k = 0; k < g.n_nodes; k++) {
    double *ref[4] = {p.weight[k], p.bias[k], p.gamma[k], p.beta[k]};
    static const ae_net_param_kind kinds[] = {AE_NET_WEIGHT, AE_NET_BIAS,
                                              AE_NET_GAMMA, AE_NET_BETA};
    for (int q = 0; q < 4; q++) {
      size_t c;
      if (!ae_net_param(net, k, kinds[q], &c) || !ref[q]) continue;
      ck_assert_uint_le(c, 4096);
      ck_assert_int_eq(ae_net_grad_param(gr, k, kinds[q], an, c), 0);
      double e = fd_check(&g, &p, ref[q], c, xd, s, an);
      if (g.nodes[k].groups > 1) grouped++;
      if (e > worst) worst = e;
    }
  }
  ck_assert_int_eq(grouped, 3);
  ck_assert_int_eq(ae_net_grad_node(gr, 0, an), 0);
  double e = fd_check(&g, &p, xd, nin, xd, s, an);
  if (getenv("AE_TEST_VERBOSE"))
    fprintf(stderr, "train backward: params %g input %g\n", worst, e);
  ck_assert_double_lt(worst, 1e-6);
  ck_assert_double_lt(e, 1e-6);
  /* float32's backward against the twin's */
  double *a64 = malloc(nin * sizeof *a64);
  memcpy(a64, an, nin * sizeof *a64);
  ck_assert_int_eq(ae_net_set_double(net, 0), 0);
  ck_assert_int_eq(ae_net_forward64(net, xf, BATCH, NULL), 0);
  ck_assert_int_eq(ae_net_backward(net, gr, BATCH, g.output, s, -1), 0);
  ck_assert_int_eq(ae_net_grad_node(gr, 0, an), 0);
  double mx = 0.0, d = 0.0;
  for (size_t i = 0; i < nin; i++) {
    mx = fmax(mx, fabs(a64[i]));
    d = fmax(d, fabs(an[i] - a64[i]));
  }
  ck_assert_double_gt(mx, 0.0);
  ck_assert_double_lt(d / mx, 1e-4);
  free(a64);
  ae_ref_params_free(&p);
  ae_net_grad_destroy(gr);
  ae_net_destroy(net);
  free(xf);
  free(xd);
  free(an);
  ae_gb_free(&g);
}
END_TEST

/* F_i = sum_c f_c(x_i) of the reference, per sample. */
static void sample_sums(const ae_graph *g, ae_ref_params *p, const double *x,
                        double *f) {
  double logits[BATCH * MAX_CLASSES];
  ck_assert_int_eq(ae_ref_forward(g, p, 1, x, BATCH, logits), 0);
  for (int i = 0; i < BATCH; i++) {
    f[i] = 0.0;
    for (int c = 0; c < g->num_classes; c++)
      f[i] += logits[i * g->num_classes + c];
  }
}

START_TEST(ntk_finite_differences) {
  ae_graph g;
  build_ops_graph(&g, 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &net), 0);
  draw_params(net);
  size_t nin = BATCH * elems(&g.nodes[0]);
  float *xf = malloc(nin * sizeof *xf);
  double *xd = malloc(nin * sizeof *xd);
  make_inputs(&g, BATCH, xf, xd);
  ae_ref_params p;
  ck_assert_int_eq(ae_ref_params_from_net(net, &p), 0);
  ae_plan *plan;
  const ae_plan_options opt = {64, sizeof(double), 1};
  ck_assert_int_eq(ae_plan_create(&g, BATCH, &opt, &plan), 0);
  /* theta_std and theta_ntk from finite differences of F in every
   * parameter; the NTK parameterization scales each weight tensor's
   * Gram by its init variance. */
  double fd_std[BATCH * BATCH] = {0}, fd_ntk[BATCH * BATCH] = {0};
  const double h = 1e-6;
  for (int k = 0; k < g.n_nodes; k++) {
    double *tensors[2] = {p.weight[k], p.bias[k]};
    size_t counts[2] = {0, 0};
    ae_net_param(net, k, AE_NET_WEIGHT, &counts[0]);
    ae_net_param(net, k, AE_NET_BIAS, &counts[1]);
    for (int q = 0; q < 2; q++) {
      if (!tensors[q]) continue;
      double sc = q == 0 ? ae_plan_init_variance(plan, k) : 1.0;
      for (size_t e = 0; e < counts[q]; e++) {
        double keep = tensors[q][e], fp[BATCH], fm[BATCH], jac[BATCH];
        tensors[q][e] = keep + h;
        sample_sums(&g, &p, xd, fp);
        tensors[q][e] = keep - h;
        sample_sums(&g, &p, xd, fm);
        tensors[q][e] = keep;
        for (int i = 0; i < BATCH; i++)
          jac[i] = (fp[i] - fm[i]) / (2 * h);
        for (int i = 0; i < BATCH; i++)
          for (int j = 0; j < BATCH; j++) {
            fd_std[i * BATCH + j] += jac[i] * jac[j];
            fd_ntk[i * BATCH + j] += sc * jac[i] * jac[j];
          }
      }
    }
  }
  ae_plan_destroy(plan);
  double theta[BATCH * BATCH], t32[BATCH * BATCH];
  for (int par = 0; par < 2; par++) {
    const double *want = par == 0 ? fd_std : fd_ntk;
    ae_ntk_parameterization pz = par == 0 ? AE_NTK_STANDARD : AE_NTK_NTK;
    ck_assert_int_eq(ae_net_set_double(net, 1), 0);
    ck_assert_int_eq(ae_net_ntk(net, xf, BATCH, pz, theta, NULL), 0);
    ck_assert_int_eq(ae_net_set_double(net, 0), 0);
    ck_assert_int_eq(ae_net_ntk(net, xf, BATCH, pz, t32, NULL), 0);
    double mx = 0.0, d = 0.0, d32 = 0.0;
    for (int i = 0; i < BATCH * BATCH; i++) {
      mx = fmax(mx, fabs(want[i]));
      d = fmax(d, fabs(theta[i] - want[i]));
      d32 = fmax(d32, fabs(t32[i] - theta[i]));
    }
    if (getenv("AE_TEST_VERBOSE"))
      fprintf(stderr, "ntk par %d: max %g fd %g f32 %g\n", par, mx, d / mx,
              d32 / mx);
    ck_assert_double_gt(mx, 0.0);
    ck_assert_double_lt(d / mx, 1e-6);
    ck_assert_double_lt(d32 / mx, 1e-4);
  }
  ae_ref_params_free(&p);
  ae_net_destroy(net);
  free(xf);
  free(xd);
  ae_gb_free(&g);
}
END_TEST

/* Reference logits at x + t dx + t^2/2 ddx. */
static void curve_logits(const ae_graph *g, ae_ref_params *p, const double *x,
                         const double *dx, const double *ddx, size_t n,
                         double t, double *out) {
  double *xt = malloc(n * sizeof *xt);
  for (size_t i = 0; i < n; i++)
    xt[i] = x[i] + t * dx[i] + 0.5 * t * t * ddx[i];
  ck_assert_int_eq(ae_ref_forward(g, p, 1, xt, BATCH, out), 0);
  free(xt);
}

START_TEST(jets_finite_differences) {
  ae_graph g;
  build_ops_graph(&g, 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &net), 0);
  draw_params(net);
  size_t nin = BATCH * elems(&g.nodes[0]);
  float *xf = malloc(nin * sizeof *xf);
  double *x = malloc(nin * sizeof *x), *dx = malloc(nin * sizeof *dx),
         *ddx = malloc(nin * sizeof *ddx);
  make_inputs(&g, BATCH, xf, x);
  for (size_t i = 0; i < nin; i++) {
    dx[i] = ae_philox_normal(8, 1, 0, i);
    ddx[i] = ae_philox_normal(8, 2, 0, i);
  }
  ae_ref_params p;
  ck_assert_int_eq(ae_ref_params_from_net(net, &p), 0);
  int nc = BATCH * g.num_classes;
  double y[BATCH * MAX_CLASSES], dy[BATCH * MAX_CLASSES],
      ddy[BATCH * MAX_CLASSES], y32[BATCH * MAX_CLASSES],
      dy32[BATCH * MAX_CLASSES], ddy32[BATCH * MAX_CLASSES];
  ck_assert_int_eq(ae_net_set_double(net, 1), 0);
  ck_assert_int_eq(ae_net_forward_jet(net, x, dx, ddx, BATCH, y, dy, ddy), 0);
  ck_assert_int_eq(ae_net_set_double(net, 0), 0);
  ck_assert_int_eq(ae_net_forward_jet(net, x, dx, ddx, BATCH, y32, dy32, ddy32),
                   0);
  const double h = 1e-4;
  double fp[BATCH * MAX_CLASSES], f0[BATCH * MAX_CLASSES],
      fm[BATCH * MAX_CLASSES];
  curve_logits(&g, &p, x, dx, ddx, nin, h, fp);
  curve_logits(&g, &p, x, dx, ddx, nin, 0.0, f0);
  curve_logits(&g, &p, x, dx, ddx, nin, -h, fm);
  double m1 = 0, m2 = 0, e0 = 0, e1 = 0, e2 = 0, s1 = 0, s2 = 0;
  for (int i = 0; i < nc; i++) {
    double d1 = (fp[i] - fm[i]) / (2 * h);
    double d2 = (fp[i] - 2 * f0[i] + fm[i]) / (h * h);
    m1 = fmax(m1, fabs(d1));
    m2 = fmax(m2, fabs(d2));
    e0 = fmax(e0, fabs(y[i] - f0[i]));
    e1 = fmax(e1, fabs(dy[i] - d1));
    e2 = fmax(e2, fabs(ddy[i] - d2));
    s1 = fmax(s1, fabs(dy32[i] - dy[i]));
    s2 = fmax(s2, fabs(ddy32[i] - ddy[i]));
  }
  if (getenv("AE_TEST_VERBOSE"))
    fprintf(stderr, "jets: |dy| %g |ddy| %g errors %g %g %g f32 spread %g %g\n",
            m1, m2, e0, e1 / m1, e2 / m2, s1 / m1, s2 / m2);
  ck_assert_double_gt(m1, 0.0);
  ck_assert_double_gt(m2, 0.0);
  ck_assert_double_lt(e0, 1e-12);
  ck_assert_double_lt(e1 / m1, 1e-6);
  ck_assert_double_lt(e2 / m2, 1e-4);
  ck_assert_double_lt(s1 / m1, 1e-4);
  ck_assert_double_lt(s2 / m2, 1e-3);
  ae_ref_params_free(&p);
  ae_net_destroy(net);
  free(xf);
  free(x);
  free(dx);
  free(ddx);
  ae_gb_free(&g);
}
END_TEST

/* The hard activations' values and derivatives, kinks included. */
START_TEST(hard_activations) {
  ae_act_fn r6 = (ae_act_fn)AE_ACT_RELU6, hs = (ae_act_fn)AE_ACT_HARDSWISH,
            hg = (ae_act_fn)AE_ACT_HARDSIGMOID;
  ck_assert_double_eq(ae_act_value(r6, 0, 7.0), 6.0);
  ck_assert_double_eq(ae_act_value(r6, 0, -1.0), 0.0);
  ck_assert_double_eq(ae_act_value(r6, 0, 2.5), 2.5);
  ck_assert_double_eq(ae_act_d1(r6, 0, 6.0), 0.0);
  ck_assert_double_eq(ae_act_d1(r6, 0, 0.0), 0.0);
  ck_assert_double_eq(ae_act_d1(r6, 0, 5.9), 1.0);
  ck_assert_double_eq_tol(ae_act_value(hs, 0, 1.0), 1.0 * 4.0 / 6.0, 1e-15);
  ck_assert_double_eq(ae_act_value(hs, 0, -4.0), 0.0);
  ck_assert_double_eq(ae_act_value(hs, 0, 4.0), 4.0);
  ck_assert_double_eq(ae_act_d1(hs, 0, -3.0), -0.5); /* PyTorch's */
  ck_assert_double_eq(ae_act_d1(hs, 0, 3.0), 1.5);
  ck_assert_double_eq(ae_act_d1(hs, 0, 3.5), 1.0);
  ck_assert_double_eq_tol(ae_act_d2(hs, 1.0), 1.0 / 3.0, 1e-15);
  ck_assert_double_eq(ae_act_d2(hs, 4.0), 0.0);
  ck_assert_double_eq_tol(ae_act_value(hg, 0, 1.5), 0.75, 1e-15);
  ck_assert_double_eq_tol(ae_act_d1(hg, 0, 1.5), 1.0 / 6.0, 1e-15);
  ck_assert_double_eq(ae_act_d1(hg, 0, 3.0), 0.0);
  /* Central differences of value -> d1 -> d2 away from the kinks. */
  ae_act_fn fns[3] = {r6, hs, hg};
  for (int f = 0; f < 3; f++)
    for (double z = -5.05; z < 8; z += 0.5) {
      double h = 1e-6;
      double d1 =
          (ae_act_value(fns[f], 0, z + h) - ae_act_value(fns[f], 0, z - h)) /
          (2 * h);
      double d2 =
          (ae_act_d1(fns[f], 0, z + h) - ae_act_d1(fns[f], 0, z - h)) / (2 * h);
      ck_assert_double_eq_tol(ae_act_d1(fns[f], 0, z), d1, 1e-8);
      ck_assert_double_eq_tol(ae_act_d2(fns[f], z), d2, 1e-8);
    }
}
END_TEST

START_TEST(sign_patterns_count_kinks) {
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 6, 0, 0);
  int a = ae_gb_act(&g, x, (ae_act_fn)AE_ACT_RELU6, 0.0);
  int b = ae_gb_act(&g, x, (ae_act_fn)AE_ACT_HARDSWISH, 0.0);
  int c = ae_gb_act(&g, x, AE_ACT_RELU, 0.0);
  int ins[3] = {a, b, c};
  int s = ae_gb_add(&g, ins, 3);
  int out = ae_gb_linear(&g, s, 2, 0, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, out), 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, 1, &net), 0);
  ae_net_init_weights(net, 1, 0);
  float in[6] = {-4.0f, -1.0f, 0.5f, 4.0f, 7.0f, 6.0f};
  uint64_t *bits;
  size_t words;
  ck_assert_int_eq(ae_net_sign_patterns(net, in, 1, &bits, &words), 0);
  ck_assert_uint_eq(words, 1); /* 6 * 2 + 6 * 2 + 6 = 30 bits */
  /* relu6: > 0 then > 6; hardswish: > -3 then > 3; relu: > 0. */
  const char *want = "001111"
                     "000010"
                     "011111"
                     "000111"
                     "001111";
  for (int i = 0; i < 30; i++)
    ck_assert_msg(((bits[0] >> i) & 1) == (uint64_t)(want[i] == '1'), "bit %d",
                  i);
  ck_assert_uint_eq(bits[0] >> 30, 0);
  free(bits);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

int main(int argc, char **argv) {
  (void)ae_blas_tune_and_reexec(argc, argv);
  Suite *s = suite_create("net_ops");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, plan_geometry);
  tcase_add_test(tc, hard_activations);
  tcase_add_test(tc, forward_matches_reference);
  tcase_add_test(tc, train_backward_finite_differences);
  tcase_add_test(tc, ntk_finite_differences);
  tcase_add_test(tc, jets_finite_differences);
  tcase_add_test(tc, sign_patterns_count_kinks);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
