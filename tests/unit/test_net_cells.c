/* test_net_cells.c: the host executor on lowered nb101 and darts networks,
 * whose `slice` nodes (nb101's channel truncation, DARTS'
 * FactorizedReduce shift) run in gpu/host/net_ops.c.
 *
 * Two small networks, lowered by api/lower.c: an nb101 cell whose output
 * fan-in of 3 splits 5 channels 2, 2, 1 (vertex 1 truncated into vertex
 * 3), and DARTS-V2 at C = 2 in 3 layers (FactorizedReduce after each
 * reduction, depthwise and dilated convs, max-pools).  Against the plain
 * float64 reference forward (gpu/host/reference.c): the float64 twin's
 * logits (1e-12) and float32's (1e-5); the train-mode backward of every
 * parameter and of the input against central finite differences of the
 * reference (1e-6).  Single-threaded. */
#include "api/arch.h"
#include "api/status.h"
#include "gpu/host/net.h"
#include "gpu/host/reference.h"
#include "gpu/philox.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 3, CLASSES = 4, MAX_PARAMS = 8192 };

static const char *const NB101 =
    "{\"type\":\"nb101\",\"stem_channels\":5,\"stacks\":2,"
    "\"cells_per_stack\":1,\"matrix\":[[0,1,1,0,0],[0,0,0,1,1],[0,0,0,0,1],"
    "[0,0,0,0,1],[0,0,0,0,0]],\"ops\":[\"input\",\"conv3x3-bn-relu\","
    "\"maxpool3x3\",\"conv1x1-bn-relu\",\"output\"]}";

static const char *const DARTS =
    "{\"type\":\"darts\",\"channels\":2,\"layers\":3,\"genotype\":{"
    "\"normal\":[[\"sep_conv_3x3\",0],[\"sep_conv_3x3\",1],"
    "[\"sep_conv_3x3\",0],[\"sep_conv_3x3\",1],[\"sep_conv_3x3\",1],"
    "[\"skip_connect\",0],[\"skip_connect\",0],[\"dil_conv_3x3\",2]],"
    "\"reduce\":[[\"max_pool_3x3\",0],[\"skip_connect\",1],"
    "[\"skip_connect\",2],[\"max_pool_3x3\",1],[\"max_pool_3x3\",0],"
    "[\"skip_connect\",2],[\"skip_connect\",2],[\"avg_pool_3x3\",1]]}}";

static int count_slices(const ae_graph *g) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++)
    n += (int)g->nodes[i].op == AE_OP_SLICE;
  return n;
}

static void lower(const char *text, ae_graph *g) {
  ae_limits lim;
  ae_limits_default(&lim);
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  ck_assert_ptr_nonnull(j);
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(ae_arch_from_json(j, "", &lim, &a, &p), AE_OK);
  json_decref(j);
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.input_shape[0] = 3;
  o.input_shape[1] = o.input_shape[2] = 8;
  o.input_rank = 3;
  o.num_classes = CLASSES;
  ck_assert_int_eq(ae_arch_lower(&a, &o, &lim, "", g, &p), AE_OK);
  ae_arch_free(&a);
  ae_problem_clear(&p);
  ck_assert_int_gt(count_slices(g), 0);
}

static size_t elems(const ae_node *nd) {
  return nd->rank == 3 ? (size_t)nd->shape[0] * (size_t)nd->shape[1] *
                             (size_t)nd->shape[2]
                       : (size_t)nd->shape[0];
}

/* Weights of a seed; BN gamma and beta moved away from 1 and 0. */
static void draw_params(ae_net *net) {
  ae_net_init_weights(net, 3, 0);
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

static void make_inputs(const ae_graph *g, float *xf, double *xd) {
  size_t n = BATCH * elems(&g->nodes[0]);
  for (size_t i = 0; i < n; i++) {
    xf[i] = (float)ae_philox_normal(9, AE_TID_SYNTHETIC_INPUTS, 0, i);
    xd[i] = xf[i];
  }
}

static void check_forward(const char *arch) {
  ae_graph g;
  lower(arch, &g);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &net), 0);
  draw_params(net);
  size_t nin = BATCH * elems(&g.nodes[0]);
  float *xf = malloc(nin * sizeof *xf);
  double *xd = malloc(nin * sizeof *xd);
  make_inputs(&g, xf, xd);
  double ref[BATCH * CLASSES], y64[BATCH * CLASSES];
  float y32[BATCH * CLASSES];
  ae_ref_params p;
  ck_assert_int_eq(ae_ref_params_from_net(net, &p), 0);
  ck_assert_int_eq(ae_ref_forward(&g, &p, 0, xd, BATCH, ref), 0);
  ck_assert_int_eq(ae_net_set_double(net, 1), 0);
  ck_assert_int_eq(ae_net_forward64(net, xf, BATCH, y64), 0);
  ck_assert_int_eq(ae_net_set_double(net, 0), 0);
  ck_assert_int_eq(ae_net_forward(net, xf, BATCH, y32), 0);
  double scale = 0.0, d64 = 0.0, d32 = 0.0;
  for (int i = 0; i < BATCH * CLASSES; i++) {
    scale = fmax(scale, fabs(ref[i]));
    d64 = fmax(d64, fabs(y64[i] - ref[i]));
    d32 = fmax(d32, fabs((double)y32[i] - ref[i]));
  }
  ck_assert_double_gt(scale, 1e-3);
  ck_assert_double_lt(d64, 1e-12 * (1.0 + scale));
  ck_assert_double_lt(d32, 1e-5 * (1.0 + scale));
  ae_ref_params_free(&p);
  ae_net_destroy(net);
  free(xf);
  free(xd);
  ae_graph_free(&g);
}

START_TEST(nb101_forward) {
  check_forward(NB101);
}
END_TEST

START_TEST(darts_forward) {
  check_forward(DARTS);
}
END_TEST

static double loss(const ae_graph *g, ae_ref_params *p, const double *x,
                   const double *s) {
  double logits[BATCH * CLASSES];
  ck_assert_int_eq(ae_ref_forward(g, p, 0, x, BATCH, logits), 0);
  double l = 0.0;
  for (int i = 0; i < BATCH * CLASSES; i++)
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

/* The train-mode backward of the nb101 network (the truncating slice's
 * adjoint on the way) against the reference's finite differences. */
START_TEST(nb101_backward) {
  ae_graph g;
  lower(NB101, &g);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &net), 0);
  draw_params(net);
  size_t nin = BATCH * elems(&g.nodes[0]);
  float *xf = malloc(nin * sizeof *xf);
  double *xd = malloc(nin * sizeof *xd);
  double *an = malloc(MAX_PARAMS * sizeof *an);
  make_inputs(&g, xf, xd);
  double s[BATCH * CLASSES];
  for (int i = 0; i < BATCH * CLASSES; i++)
    s[i] = ae_philox_normal(3, 76, 0, (uint64_t)i);
  ck_assert_int_eq(ae_net_set_double(net, 1), 0);
  ae_net_grad *gr;
  ck_assert_int_eq(ae_net_grad_create(net, &gr), 0);
  ck_assert_int_eq(ae_net_forward64(net, xf, BATCH, NULL), 0);
  ck_assert_int_eq(ae_net_backward(net, gr, BATCH, g.output, s, -1), 0);
  ae_ref_params p;
  ck_assert_int_eq(ae_ref_params_from_net(net, &p), 0);
  double worst = 0.0;
  for (int k = 0; k < g.n_nodes; k++) {
    double *ref[4] = {p.weight[k], p.bias[k], p.gamma[k], p.beta[k]};
    static const ae_net_param_kind kinds[] = {AE_NET_WEIGHT, AE_NET_BIAS,
                                              AE_NET_GAMMA, AE_NET_BETA};
    for (int q = 0; q < 4; q++) {
      size_t c;
      if (!ae_net_param(net, k, kinds[q], &c) || !ref[q]) continue;
      ck_assert_uint_le(c, MAX_PARAMS);
      ck_assert_int_eq(ae_net_grad_param(gr, k, kinds[q], an, c), 0);
      double e = fd_check(&g, &p, ref[q], c, xd, s, an);
      if (e > worst) worst = e;
    }
  }
  ck_assert_int_eq(ae_net_grad_node(gr, 0, an), 0);
  double e = fd_check(&g, &p, xd, nin, xd, s, an);
  ck_assert_double_lt(worst, 1e-6);
  ck_assert_double_lt(e, 1e-6);
  ae_ref_params_free(&p);
  ae_net_grad_destroy(gr);
  ae_net_destroy(net);
  free(xf);
  free(xd);
  free(an);
  ae_graph_free(&g);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("net_cells");
  TCase *tc = tcase_create("cells");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, nb101_forward);
  tcase_add_test(tc, darts_forward);
  tcase_add_test(tc, nb101_backward);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
