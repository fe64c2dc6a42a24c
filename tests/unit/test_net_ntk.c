/* test_net_ntk.c: the host executor's empirical NTK against brute force.
 *
 * For small random nets that use every op (conv with stride and padding,
 * 1x1 conv, linear with and without bias, BN on rank 1 and 3, each
 * activation, both average pools, global pool, add, identity, flatten,
 * zero), the per-sample gradients of sum_c f_c(x_i) are taken by central
 * finite differences in float64 on the plain reference forward
 * (gpu/host/reference.c) with BN statistics held at the unperturbed
 * batch's values, J J^T is formed and ae_net_ntk must match it to 1e-4
 * relative, in both parameterisations.  Also: the float32 forward matches
 * the reference, same seed gives identical bits, another seed differs, a
 * cancelled job stops, and the float64 twin (ae_net_set_double) matches
 * the finite differences to 1e-7.  The float32 backward's direct paths
 * (dW and dX of stride-1 "same" convolutions without im2col, BN and ReLU
 * storing into a slot they alone write, two sample-parallel parts): on a
 * net where they all run, their NTK stays as close to the float64 twin as
 * the im2col + GEMM path's (AE_CONV_DIRECT=0, in a child), differs from
 * it (they did run), and is the same bits with one or two threads. */
#include "api/status.h"
#include "gpu/host/blas_env.h"
#include "gpu/host/cpu_class.h"
#include "gpu/host/graph_build.h"
#include "gpu/host/net_internal.h"
#include "gpu/host/reference.h"
#include "gpu/philox.h"
#include "tests/unit/gemm_probe.h"
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { BATCH = 5 };

/* OpenBLAS's thread control (declared by its cblas.h, not by every one). */
extern void openblas_set_num_threads(int num_threads);

/* Graph 1: convolutions, BN rank 3, relu / leaky, both pools, zero, add,
 * 1x1 conv, identity, flatten, linear with bias. */
static void build_conv_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 2, 6, 6);
  int c1 = ae_gb_conv(g, x, 3, 3, 1, 1, 1.0);
  int b1 = ae_gb_bn(g, c1);
  int r1 = ae_gb_act(g, b1, AE_ACT_RELU, 0.0);
  int c2 = ae_gb_conv(g, r1, 4, 3, 2, 1, 2.0);
  int l2 = ae_gb_act(g, c2, AE_ACT_LEAKY_RELU, 0.1);
  int p1 = ae_gb_avg_pool(g, l2, 3, 1, 1, 0);
  int p2 = ae_gb_avg_pool(g, l2, 3, 1, 1, 1);
  int z = ae_gb_unary(g, AE_OP_ZERO, l2);
  int ins[4] = {l2, p1, p2, z};
  int a = ae_gb_add(g, ins, 4);
  int c3 = ae_gb_conv(g, a, 2, 1, 1, 0, 1.5);
  int id = ae_gb_unary(g, AE_OP_IDENTITY, c3);
  int f = ae_gb_unary(g, AE_OP_FLATTEN, id);
  int out = ae_gb_linear(g, f, 3, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
}

/* Graph 2: an MLP with BN rank 1 and every smooth activation. */
static void build_mlp_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 5, 0, 0);
  int h = ae_gb_linear(g, x, 6, 1, 1.0);
  int bn = ae_gb_bn(g, h);
  int t = ae_gb_act(g, bn, AE_ACT_TANH, 0.0);
  static const ae_act_fn fns[] = {AE_ACT_SIGMOID, AE_ACT_SWISH, AE_ACT_GELU,
                                  AE_ACT_ERF, AE_ACT_IDENTITY};
  int cur = t;
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    int l = ae_gb_linear(g, cur, 6, (int)(i % 2), 1.7);
    cur = ae_gb_act(g, l, fns[i], 0.0);
  }
  int ins[2] = {cur, t};
  int a = ae_gb_add(g, ins, 2);
  int out = ae_gb_linear(g, a, 3, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
}

/* Graph 3: an unpadded conv, BN, relu, swish conv, global pool, linear;
 * the 4-channel cell feeds two branches that meet again. */
static void build_gap_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 3, 5, 5);
  int c1 = ae_gb_conv(g, x, 4, 3, 1, 0, 1.0);
  int b1 = ae_gb_bn(g, c1);
  int r1 = ae_gb_act(g, b1, AE_ACT_RELU, 0.0);
  int c2 = ae_gb_conv(g, r1, 4, 3, 1, 1, 2.0);
  int s2 = ae_gb_act(g, c2, AE_ACT_SWISH, 0.0);
  int b2 = ae_gb_bn(g, s2);
  int ins[3] = {b2, r1, b1};
  int a = ae_gb_add(g, ins, 3);
  int gp = ae_gb_gap(g, a);
  int out = ae_gb_linear(g, gp, 2, 0, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
}

/* Graph 4: the direct backward paths.  Output channels 16, 32 and 64
 * (one, two and four vectors per tile), 3x3 and 1x1, a 6x6 plane (a
 * partial vector); r1 -> c2, c2 -> b2 -> r2 each read once (stored), r2
 * read by two convolutions and b1 by a ReLU and the add (added). */
static int build_direct_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 3, 6, 6);
  int c1 = ae_gb_conv(g, x, 16, 3, 1, 1, 2.0);
  int b1 = ae_gb_bn(g, c1);
  int r1 = ae_gb_act(g, b1, AE_ACT_RELU, 0.0);
  int c2 = ae_gb_conv(g, r1, 16, 3, 1, 1, 2.0);
  int b2 = ae_gb_bn(g, c2);
  int r2 = ae_gb_act(g, b2, AE_ACT_RELU, 0.0);
  int c3 = ae_gb_conv(g, r2, 32, 1, 1, 0, 2.0);
  int c4 = ae_gb_conv(g, r2, 32, 3, 1, 1, 2.0);
  int ins[2] = {c3, c4};
  int a = ae_gb_add(g, ins, 2);
  int r3 = ae_gb_act(g, a, AE_ACT_RELU, 0.0);
  int c5 = ae_gb_conv(g, r3, 64, 3, 1, 1, 2.0);
  int b5 = ae_gb_bn(g, c5);
  int ins2[2] = {b5, ae_gb_conv(g, b1, 64, 1, 1, 0, 1.0)};
  int a2 = ae_gb_add(g, ins2, 2);
  int gp = ae_gb_gap(g, a2);
  int out = ae_gb_linear(g, gp, 3, 1, 1.0);
  return ae_gb_finish(g, out);
}

static size_t input_elems(const ae_graph *g) {
  const ae_node *in = &g->nodes[0];
  return in->rank == 3 ? (size_t)in->shape[0] * (size_t)in->shape[1] *
                             (size_t)in->shape[2]
                       : (size_t)in->shape[0];
}

static void make_inputs(const ae_graph *g, float *xf, double *xd) {
  size_t n = BATCH * input_elems(g);
  for (size_t i = 0; i < n; i++) {
    xf[i] = (float)ae_philox_normal(7, AE_TID_SYNTHETIC_INPUTS, 0, i);
    xd[i] = xf[i];
  }
}

static int fan_in(const ae_graph *g, int k) {
  const ae_node *nd = &g->nodes[k], *in = &g->nodes[nd->inputs[0]];
  if (nd->op == AE_OP_CONV) return in->shape[0] * nd->kernel * nd->kernel;
  return in->rank == 3 ? in->shape[0] * in->shape[1] * in->shape[2]
                       : in->shape[0];
}

/* Sums each sample's logits. */
static void sample_sums(const ae_graph *g, ae_ref_params *p, const double *x,
                        double *sums) {
  int C = g->num_classes;
  double logits[BATCH * 16];
  ck_assert_int_le(C, 16);
  ck_assert_int_eq(ae_ref_forward(g, p, 1, x, BATCH, logits), 0);
  for (int b = 0; b < BATCH; b++) {
    sums[b] = 0.0;
    for (int c = 0; c < C; c++)
      sums[b] += logits[b * C + c];
  }
}

/* theta += scale * J J^T for one tensor, J by central differences. */
static void fd_tensor(const ae_graph *g, ae_ref_params *p, double *t,
                      size_t count, double scale, const double *x,
                      double *theta) {
  const double h = 1e-5;
  double plus[BATCH], minus[BATCH];
  for (size_t e = 0; e < count; e++) {
    double keep = t[e];
    t[e] = keep + h;
    sample_sums(g, p, x, plus);
    t[e] = keep - h;
    sample_sums(g, p, x, minus);
    t[e] = keep;
    double grad[BATCH];
    for (int b = 0; b < BATCH; b++)
      grad[b] = (plus[b] - minus[b]) / (2 * h);
    for (int i = 0; i < BATCH; i++)
      for (int j = 0; j < BATCH; j++)
        theta[i * BATCH + j] += scale * grad[i] * grad[j];
  }
}

static void brute_force_ntk(ae_net *net, const double *x,
                            ae_ntk_parameterization par, double *theta) {
  const ae_graph *g = ae_net_graph(net);
  ae_ref_params p;
  ck_assert_int_eq(ae_ref_params_from_net(net, &p), 0);
  double logits[BATCH * 16];
  ck_assert_int_eq(ae_ref_forward(g, &p, 0, x, BATCH, logits), 0);
  memset(theta, 0, sizeof(double) * BATCH * BATCH);
  for (int k = 0; k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    size_t count;
    if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV) {
      ae_net_param(net, k, AE_NET_WEIGHT, &count);
      double s = par == AE_NTK_NTK ? nd->init_gain / fan_in(g, k) : 1.0;
      fd_tensor(g, &p, p.weight[k], count, s, x, theta);
      if (ae_net_param(net, k, AE_NET_BIAS, &count))
        fd_tensor(g, &p, p.bias[k], count, 1.0, x, theta);
    } else if (nd->op == AE_OP_BATCH_NORM) {
      ae_net_param(net, k, AE_NET_GAMMA, &count);
      fd_tensor(g, &p, p.gamma[k], count, 1.0, x, theta);
    }
  }
  ae_ref_params_free(&p);
}

/* Random non-trivial BN affine parameters and biases, so that their
 * gradients are exercised away from the init values. */
static void perturb_params(ae_net *net) {
  const ae_graph *g = ae_net_graph(net);
  for (int k = 0; k < g->n_nodes; k++) {
    size_t count;
    float *t;
    static const ae_net_param_kind kinds[] = {AE_NET_BIAS, AE_NET_GAMMA,
                                              AE_NET_BETA};
    for (int q = 0; q < 3; q++)
      if ((t = ae_net_param(net, k, kinds[q], &count)))
        for (size_t e = 0; e < count; e++)
          t[e] += (float)(0.3 * ae_philox_normal(99, (uint32_t)k,
                                                 (uint32_t)q + 1, e));
  }
}

static void check_graph_mode(void (*build)(ae_graph *),
                             ae_ntk_parameterization par, int perturb,
                             int dbl) {
  ae_graph g;
  build(&g);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &net), 0);
  ae_net_init_weights(net, 1234, 0);
  if (perturb) perturb_params(net);
  size_t d = input_elems(&g);
  float *xf = malloc(sizeof(float) * BATCH * d);
  double *xd = malloc(sizeof(double) * BATCH * d);
  ck_assert_ptr_nonnull(xf);
  ck_assert_ptr_nonnull(xd);
  make_inputs(&g, xf, xd);
  double theta[BATCH * BATCH], ref[BATCH * BATCH];
  ck_assert_int_eq(ae_net_set_double(net, dbl), 0);
  ck_assert_int_eq(ae_net_ntk(net, xf, BATCH, par, theta, NULL), 0);
  brute_force_ntk(net, xd, par, ref);
  double scale = 0.0, err = 0.0;
  for (int i = 0; i < BATCH * BATCH; i++) {
    scale = fmax(scale, fabs(ref[i]));
    err = fmax(err, fabs(theta[i] - ref[i]));
  }
  ck_assert_double_gt(scale, 1e-3);
  /* float32 arithmetic: 1e-4; the float64 twin: 1e-7 (the FD error). */
  double tol = dbl ? 1e-7 : 1e-4;
  ck_assert_msg(err <= tol * scale, "ntk err %g scale %g (double %d)", err,
                scale, dbl);
  if (dbl) {
    /* Back to float32: close to, but not bit-equal with, the twin. */
    double t32[BATCH * BATCH];
    ck_assert_int_eq(ae_net_set_double(net, 0), 0);
    ck_assert_int_eq(ae_net_ntk(net, xf, BATCH, par, t32, NULL), 0);
    double spread = 0.0;
    for (int i = 0; i < BATCH * BATCH; i++)
      spread = fmax(spread, fabs(t32[i] - theta[i]));
    ck_assert_double_le(spread, 1e-4 * scale);
    ck_assert_double_gt(spread, 0.0);
  }
  /* Symmetric exactly. */
  for (int i = 0; i < BATCH; i++)
    for (int j = 0; j < BATCH; j++)
      ck_assert(theta[i * BATCH + j] == theta[j * BATCH + i]);
  free(xf);
  free(xd);
  ae_net_destroy(net);
  ae_gb_free(&g);
}

static void check_graph(void (*build)(ae_graph *), ae_ntk_parameterization par,
                        int perturb) {
  check_graph_mode(build, par, perturb, 0);
}

START_TEST(ntk_float64_twin) {
  check_graph_mode(build_conv_graph, AE_NTK_STANDARD, 1, 1);
  check_graph_mode(build_mlp_graph, AE_NTK_NTK, 1, 1);
  check_graph_mode(build_gap_graph, AE_NTK_STANDARD, 1, 1);
}
END_TEST

START_TEST(ntk_conv_graph) {
  check_graph(build_conv_graph, AE_NTK_STANDARD, 0);
  check_graph(build_conv_graph, AE_NTK_NTK, 1);
}
END_TEST

START_TEST(ntk_mlp_graph) {
  check_graph(build_mlp_graph, AE_NTK_STANDARD, 1);
  check_graph(build_mlp_graph, AE_NTK_NTK, 0);
}
END_TEST

START_TEST(ntk_gap_graph) {
  check_graph(build_gap_graph, AE_NTK_STANDARD, 1);
  check_graph(build_gap_graph, AE_NTK_NTK, 1);
}
END_TEST

/* The NTK of graph 4 (seed 1234, perturbed, make_inputs), float32 or the
 * float64 twin.  0 or an error (no Check asserts: the re-executed probe
 * runs it outside a test). */
static int direct_graph_ntk(int dbl, double *theta) {
  ae_graph g;
  ae_net *net = NULL;
  int rc = build_direct_graph(&g);
  if (!rc) rc = ae_net_create(&g, BATCH, &net);
  if (rc) {
    ae_gb_free(&g);
    return rc;
  }
  ae_net_init_weights(net, 1234, 0);
  perturb_params(net);
  size_t d = input_elems(&g);
  float *xf = malloc(sizeof(float) * BATCH * d);
  double *xd = malloc(sizeof(double) * BATCH * d);
  rc = xf && xd ? AE_OK : AE_ENOMEM;
  if (!rc) {
    make_inputs(&g, xf, xd);
    rc = ae_net_set_double(net, dbl);
  }
  if (!rc) rc = ae_net_ntk(net, xf, BATCH, AE_NTK_STANDARD, theta, NULL);
  free(xf);
  free(xd);
  ae_net_destroy(net);
  ae_gb_free(&g);
  return rc;
}

#define GEMM_PROBE_ARG "--ntk-gemm-probe"

/* Graph 4's float32 NTK by the im2col + GEMM path: this program again
 * with AE_CONV_DIRECT=0 (read once per process), its values read back
 * exactly (%a). */
static void gemm_path_ntk(double *theta) {
  gemm_probe_read("test_net_ntk", GEMM_PROBE_ARG, theta, BATCH * BATCH);
}

/* max |a - b| / max |ref| over the batch x batch entries. */
static double rel_spread(const double *a, const double *b, const double *ref) {
  double top = 0.0, err = 0.0;
  for (int i = 0; i < BATCH * BATCH; i++) {
    top = fmax(top, fabs(ref[i]));
    err = fmax(err, fabs(a[i] - b[i]));
  }
  return err / top;
}

START_TEST(ntk_direct_paths) {
  double t64[BATCH * BATCH], t1[BATCH * BATCH], t2[BATCH * BATCH];
  openblas_set_num_threads(1);
  ck_assert_int_eq(direct_graph_ntk(1, t64), 0);
  ck_assert_int_eq(direct_graph_ntk(0, t1), 0);
  openblas_set_num_threads(2);
  ck_assert_int_eq(direct_graph_ntk(0, t2), 0);
  openblas_set_num_threads(1);
  /* Two parts: the same bits where the direct convolutions and the Gram
   * kernel run (AVX-512).  Without them (AVX2: im2col + sgemm, dsyrk)
   * OpenBLAS's threaded drivers split K otherwise, and two threads round
   * otherwise (as the golden corpus's header says): within float32's
   * spread. */
  if (ae_net_conv_direct_usable() && ae_net_gram_f32_usable())
    ck_assert(memcmp(t1, t2, sizeof(t1)) == 0);
  else
    ck_assert_double_le(rel_spread(t1, t2, t64), 1e-5);
  double spread_direct = rel_spread(t1, t64, t64);
  ck_assert_double_gt(spread_direct, 0.0);
  ck_assert_double_le(spread_direct, 1e-5);
  const char *pre = getenv("LD_PRELOAD");
  if (!ae_net_conv_direct_usable() || (pre && strstr(pre, "vgpreload")))
    return; /* no direct paths here, or valgrind (no self exec) */
  double tg[BATCH * BATCH];
  gemm_path_ntk(tg);
  double spread_gemm = rel_spread(tg, t64, t64);
  fprintf(stderr,
          "ntk_direct_paths: float32 vs float64: direct %.3e, im2col + GEMM "
          "%.3e (max |dtheta| / max theta)\n",
          spread_direct, spread_gemm);
  /* The direct paths ran (other round-off than the GEMM path) and stay
   * within the float32 spread the GEMM path itself has (x2: two
   * independent round-offs of one size). */
  ck_assert(memcmp(t1, tg, sizeof(t1)) != 0);
  ck_assert_double_le(spread_direct, 2.0 * spread_gemm + 1e-7);
}
END_TEST

/* The float32 forward against the plain float64 reference. */
static void check_forward_batch(void (*build)(ae_graph *), int batch) {
  ae_graph g;
  build(&g);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &net), 0);
  ae_net_init_weights(net, 42, 3);
  perturb_params(net);
  size_t d = input_elems(&g);
  float *xf = malloc(sizeof(float) * BATCH * d);
  double *xd = malloc(sizeof(double) * BATCH * d);
  ck_assert_ptr_nonnull(xf);
  ck_assert_ptr_nonnull(xd);
  make_inputs(&g, xf, xd);
  float logits[BATCH * 16];
  double ref[BATCH * 16];
  ck_assert_int_eq(ae_net_forward(net, xf, batch, logits), 0);
  ae_ref_params p;
  ck_assert_int_eq(ae_ref_params_from_net(net, &p), 0);
  ck_assert_int_eq(ae_ref_forward(&g, &p, 0, xd, batch, ref), 0);
  for (int i = 0; i < batch * g.num_classes; i++)
    ck_assert_msg(fabs(logits[i] - ref[i]) <= 1e-4 * (1.0 + fabs(ref[i])),
                  "logit %d: %g vs %g", i, logits[i], ref[i]);
  /* Every node's output exists and is finite. */
  for (int k = 0; k < g.n_nodes; k++)
    ck_assert_ptr_nonnull(ae_net_activation(net, k));
  ae_ref_params_free(&p);
  free(xf);
  free(xd);
  ae_net_destroy(net);
  ae_gb_free(&g);
}

static void check_forward(void (*build)(ae_graph *)) {
  check_forward_batch(build, BATCH);
}

START_TEST(forward_matches_reference) {
  check_forward(build_conv_graph);
  check_forward(build_mlp_graph);
  check_forward(build_gap_graph);
  /* Partial conv chunks: one sample, and fewer than max_batch. */
  check_forward_batch(build_conv_graph, 1);
  check_forward_batch(build_gap_graph, 3);
}
END_TEST

START_TEST(deterministic_by_seed) {
  ae_graph g;
  build_conv_graph(&g);
  ae_net *a, *b;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &a), 0);
  ck_assert_int_eq(ae_net_create(&g, BATCH, &b), 0);
  ae_net_init_weights(a, 5, 1);
  ae_net_init_weights(b, 5, 1);
  size_t ca, cb;
  float *wa = ae_net_param(a, 1, AE_NET_WEIGHT, &ca);
  float *wb = ae_net_param(b, 1, AE_NET_WEIGHT, &cb);
  ck_assert_uint_eq(ca, 54);
  ck_assert_int_eq(memcmp(wa, wb, ca * sizeof(float)), 0);
  /* Element e of node k is sqrt(gain/fan_in) * philox_normal(seed,k,s,e). */
  ck_assert(wa[7] == (float)(sqrt(1.0 / 18.0) * ae_philox_normal(5, 1, 1, 7)));
  float xf[BATCH * 72];
  double xd[BATCH * 72];
  make_inputs(&g, xf, xd);
  double ta[BATCH * BATCH], tb[BATCH * BATCH];
  ck_assert_int_eq(ae_net_ntk(a, xf, BATCH, AE_NTK_STANDARD, ta, NULL), 0);
  ck_assert_int_eq(ae_net_ntk(b, xf, BATCH, AE_NTK_STANDARD, tb, NULL), 0);
  ck_assert_int_eq(memcmp(ta, tb, sizeof(ta)), 0);
  /* Running again on the same net gives the same bits. */
  ck_assert_int_eq(ae_net_ntk(a, xf, BATCH, AE_NTK_STANDARD, tb, NULL), 0);
  ck_assert_int_eq(memcmp(ta, tb, sizeof(ta)), 0);
  ae_net_init_weights(b, 6, 1);
  ck_assert_int_ne(memcmp(wa, wb, ca * sizeof(float)), 0);
  ck_assert_int_eq(ae_net_ntk(b, xf, BATCH, AE_NTK_STANDARD, tb, NULL), 0);
  ck_assert_int_ne(memcmp(ta, tb, sizeof(ta)), 0);
  ae_net_init_weights(b, 5, 2); /* another stream */
  ck_assert_int_ne(memcmp(wa, wb, ca * sizeof(float)), 0);
  ae_net_destroy(a);
  ae_net_destroy(b);
  ae_gb_free(&g);
}
END_TEST

START_TEST(init_matches_philox_formula) {
  /* Every element, through the lane-parallel runs and the tail: a conv of
   * 20 x 7 x 3 x 3 = 1260 weights (19 runs of 64 and 44 more), a linear
   * of 3 x 5 with bias, gains 2 and 1. */
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 7, 4, 4);
  int c = ae_gb_conv(&g, x, 20, 3, 1, 1, 2.0);
  int gp = ae_gb_gap(&g, c);
  int l = ae_gb_linear(&g, gp, 3, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, l), 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, 2, &net), 0);
  ae_net_init_weights(net, 0x123456789abcull, 4);
  size_t count;
  float *w = ae_net_param(net, c, AE_NET_WEIGHT, &count);
  ck_assert_uint_eq(count, 1260);
  double sd = sqrt(2.0 / 63.0);
  for (size_t e = 0; e < count; e++)
    ck_assert(w[e] == (float)(sd * ae_philox_normal(0x123456789abcull,
                                                    (uint32_t)c, 4, e)));
  w = ae_net_param(net, l, AE_NET_WEIGHT, &count);
  ck_assert_uint_eq(count, 60);
  sd = sqrt(1.0 / 20.0);
  for (size_t e = 0; e < count; e++)
    ck_assert(w[e] == (float)(sd * ae_philox_normal(0x123456789abcull,
                                                    (uint32_t)l, 4, e)));
  float *b = ae_net_param(net, l, AE_NET_BIAS, &count);
  for (size_t e = 0; e < count; e++)
    ck_assert(b[e] == 0.0f);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

START_TEST(im2col_matches_definition) {
  /* Every small geometry, the shifted-plane path (stride 1, ow == w)
   * included: col[(c k k + ky k + kx) ld + oy ow + ox] = x[c][iy][ix] with
   * iy = oy s - p + ky, ix = ox s - p + kx, 0 outside. */
  enum { C = 2, MAXHW = 6, LD_PAD = 3 };
  float x[C * MAXHW * MAXHW];
  for (int i = 0; i < C * MAXHW * MAXHW; i++)
    x[i] = (float)(i + 1);
  for (int h = 1; h <= MAXHW; h++)
    for (int w = 1; w <= MAXHW; w++)
      for (int k = 1; k <= 4; k++)
        for (int pad = 0; pad <= k; pad++)
          for (int s = 1; s <= 2; s++) {
            int oh = (h + 2 * pad - k) / s + 1, ow = (w + 2 * pad - k) / s + 1;
            if (h + 2 * pad < k || w + 2 * pad < k) continue;
            size_t ld = (size_t)(oh * ow + LD_PAD);
            size_t rows = (size_t)(C * k * k);
            float *col = malloc(sizeof(float) * rows * ld);
            ck_assert_ptr_nonnull(col);
            for (size_t i = 0; i < rows * ld; i++)
              col[i] = -1.0f;
            ae_net_im2col_t(x, C, h, w, k, s, pad, oh, ow, col, ld);
            for (int c = 0; c < C; c++)
              for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                  for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++) {
                      int iy = oy * s - pad + ky, ix = ox * s - pad + kx;
                      float want = iy >= 0 && iy < h && ix >= 0 && ix < w
                                       ? x[(c * h + iy) * w + ix]
                                       : 0.0f;
                      size_t at = (size_t)((c * k + ky) * k + kx) * ld +
                                  (size_t)(oy * ow + ox);
                      ck_assert_msg(col[at] == want,
                                    "h%d w%d k%d p%d s%d: %g vs %g", h, w, k,
                                    pad, s, col[at], want);
                    }
            /* The padding between rows is left alone. */
            for (size_t r = 0; r < rows; r++)
              ck_assert(col[r * ld + (size_t)(oh * ow)] == -1.0f);
            free(col);
          }
}
END_TEST

START_TEST(cancel_and_limits) {
  ae_graph g;
  build_gap_graph(&g);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &net), 0);
  ae_net_init_weights(net, 1, 0);
  float xf[BATCH * 75];
  double xd[BATCH * 75];
  make_inputs(&g, xf, xd);
  double theta[BATCH * BATCH];
  atomic_int cancel = 1;
  ae_job_control ctl = {&cancel, 0};
  ck_assert_int_eq(ae_net_ntk(net, xf, BATCH, AE_NTK_STANDARD, theta, &ctl),
                   AE_ECANCELLED);
  ae_job_control past = {NULL, 1};
  ck_assert_int_eq(ae_net_ntk(net, xf, BATCH, AE_NTK_STANDARD, theta, &past),
                   AE_EDEADLINE);
  ck_assert_int_eq(ae_net_forward(net, xf, BATCH + 1, NULL), AE_EINVAL);
  ck_assert_uint_gt(ae_net_memory_bytes(net), 0);
  /* conv 3*9*4 + BN 2*4 + conv 4*9*4 + BN 2*4 + linear 4*2 */
  ck_assert_uint_eq(ae_net_param_count(net), 108 + 8 + 144 + 8 + 8);
  ae_net_destroy(net);
  /* A shape that does not match its op is refused. */
  g.nodes[1].shape[1] = 4;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &net), AE_EINVAL);
  ck_assert_ptr_null(net);
  ae_gb_free(&g);
}
END_TEST

/* What the re-executed probe prints (see main). */
#define PROBE_ARG "--blas-env-probe"

/* In a child: the environment as given, then ae_blas_tune_and_reexec with
 * argv = {self, PROBE_ARG}.  Returns what the child printed: the probe's
 * "CORETYPE TIMEOUT GUARD" line after a re-exec, or "noexec". */
static void run_probe(const char *coretype, const char *no_coretype,
                      const char *timeout, char *out, size_t out_size) {
  int fd[2];
  ck_assert_int_eq(pipe(fd), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(fd[0]);
    dup2(fd[1], 1);
    unsetenv("AE_BLAS_REEXECED");
    if (coretype)
      setenv("OPENBLAS_CORETYPE", coretype, 1);
    else
      unsetenv("OPENBLAS_CORETYPE");
    if (no_coretype)
      setenv("AE_NO_CORETYPE", no_coretype, 1);
    else
      unsetenv("AE_NO_CORETYPE");
    if (timeout)
      setenv("OPENBLAS_THREAD_TIMEOUT", timeout, 1);
    else
      unsetenv("OPENBLAS_THREAD_TIMEOUT");
    char self[] = "test_net_ntk", arg[] = PROBE_ARG;
    char *argv[] = {self, arg, NULL};
    ae_blas_tune_and_reexec(2, argv);
    printf("noexec\n");
    fflush(stdout);
    _exit(0);
  }
  close(fd[1]);
  size_t got = 0;
  ssize_t r;
  while (got + 1 < out_size &&
         (r = read(fd[0], out + got, out_size - 1 - got)) > 0)
    got += (size_t)r;
  out[got] = 0;
  close(fd[0]);
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

START_TEST(blas_env_reexec) {
  char out[256];
  const char *pre = getenv("LD_PRELOAD");
  int valgrind = pre && strstr(pre, "vgpreload");
  /* Both chosen already, or the core switched off and the timeout set:
   * no exec. */
  run_probe("Haswell", NULL, "20", out, sizeof(out));
  ck_assert_str_eq(out, "noexec\n");
  run_probe(NULL, "1", "20", out, sizeof(out));
  ck_assert_str_eq(out, "noexec\n");
  /* The timeout unset: set to 4, the core left as it is (once, guard
   * set); nothing under valgrind (which the exec would escape). */
  run_probe("Haswell", NULL, NULL, out, sizeof(out));
  ck_assert_str_eq(out, valgrind ? "noexec\n" : "Haswell 4 1\n");
  run_probe(NULL, "1", NULL, out, sizeof(out));
  ck_assert_str_eq(out, valgrind ? "noexec\n" : "- 4 1\n");
  /* The core unset: the one of the class the process runs as (the CPU's,
   * or avx2 under AE_CPU_CLASS=avx2), or none on a CPU without AVX2; a
   * timeout already set is kept. */
  run_probe(NULL, NULL, "20", out, sizeof(out));
  const char *want = "noexec\n";
  if (!valgrind && ae_cpu_class_get() == AE_CPU_CLASS_AVX512)
    want = "SkylakeX 20 1\n";
  else if (!valgrind && ae_cpu_class_get() == AE_CPU_CLASS_AVX2)
    want = "Haswell 20 1\n";
  ck_assert_str_eq(out, want);
}
END_TEST

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], PROBE_ARG) == 0) {
    /* Re-executed by blas_env_reexec: report and stop. */
    const char *core = getenv("OPENBLAS_CORETYPE");
    const char *timeout = getenv("OPENBLAS_THREAD_TIMEOUT");
    const char *guard = getenv("AE_BLAS_REEXECED");
    printf("%s %s %s\n", core ? core : "-", timeout ? timeout : "-",
           guard ? guard : "-");
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], GEMM_PROBE_ARG) == 0) {
    /* Re-executed by gemm_path_ntk (AE_CONV_DIRECT=0): print and stop. */
    double theta[BATCH * BATCH];
    openblas_set_num_threads(1);
    if (direct_graph_ntk(0, theta)) return 1;
    for (int i = 0; i < BATCH * BATCH; i++)
      printf("%a\n", theta[i]);
    return 0;
  }
  Suite *s = suite_create("net_ntk");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, ntk_conv_graph);
  tcase_add_test(tc, ntk_mlp_graph);
  tcase_add_test(tc, ntk_gap_graph);
  tcase_add_test(tc, ntk_float64_twin);
  tcase_add_test(tc, ntk_direct_paths);
  tcase_add_test(tc, forward_matches_reference);
  tcase_add_test(tc, deterministic_by_seed);
  tcase_add_test(tc, init_matches_philox_formula);
  tcase_add_test(tc, im2col_matches_definition);
  tcase_add_test(tc, blas_env_reexec);
  tcase_add_test(tc, cancel_and_limits);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
