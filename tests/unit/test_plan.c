/* test_plan.c: the device-agnostic planner (gpu/plan.h) on a small graph
 * whose geometry, liveness, gradient slots and offsets are worked out by
 * hand in the comments, and the invariant every plan must keep: buffers
 * alive at the same time never overlap.  A job's whole memory
 * (ae_plan_job) follows its metric selection and its batch.
 *
 * Single-threaded; every plan and graph is freed. */
#include "api/request.h"
#include "api/status.h"
#include "gpu/host/graph_build.h"
#include "gpu/host/net.h"
#include "gpu/host/net_internal.h"
#include "gpu/plan.h"
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* 0 input {2,4,4} -> 1 conv 3x3 pad 1 to 3 channels -> 2 bn -> 3 relu ->
 * 4 identity -> 5 add(4, 2) -> 6 global pool -> 7 linear 2 with bias. */
static void small_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 2, 4, 4);
  int c = ae_gb_conv(g, x, 3, 3, 1, 1, 2.0);
  int b = ae_gb_bn(g, c);
  int a = ae_gb_act(g, b, AE_ACT_RELU, 0.0);
  int i = ae_gb_unary(g, AE_OP_IDENTITY, a);
  int in[2] = {i, b};
  int s = ae_gb_add(g, in, 2);
  int p = ae_gb_gap(g, s);
  int o = ae_gb_linear(g, p, 2, 1, 1.0);
  ck_assert_int_eq(o, 7);
  ck_assert_int_eq(ae_gb_finish(g, o), AE_OK);
}

static int ranges_overlap(size_t a, size_t na, size_t b, size_t nb) {
  return a < b + nb && b < a + na;
}

/* Backward: a gradient lives from its first writer's step to its own
 * (node t's step is at time n-1-t); a shared slot lives as long as the
 * longest of its sharers. */
static void check_no_live_overlap(const ae_plan *p) {
  int nn = p->g.n_nodes;
  size_t B = (size_t)p->max_batch;
  /* Forward outputs are all kept (the backward reads them): distinct
   * buffers never overlap, and stay inside the forward family. */
  for (int i = 0; i < nn; i++) {
    size_t ni = p->opt.unit * B * p->geom[i].elems;
    ck_assert(p->act[i] >= p->param_bytes);
    ck_assert(p->act[i] + ni <= p->bytes[AE_PLAN_FORWARD]);
    for (int j = 0; j < i; j++) {
      if (p->act[i] == p->act[j]) continue; /* a view of its input */
      size_t nj = p->opt.unit * B * p->geom[j].elems;
      ck_assert_msg(!ranges_overlap(p->act[i], ni, p->act[j], nj),
                    "outputs %d and %d overlap", i, j);
    }
  }
  int *lo = malloc(sizeof(int) * (size_t)nn), *hi = malloc(sizeof(int) * nn);
  ck_assert(lo && hi);
  for (int k = 0; k < nn; k++) {
    lo[k] = p->grad_first[k] >= 0 ? nn - 1 - p->grad_first[k] : -1;
    hi[k] = nn - 1 - k;
  }
  for (int k = 0; k < nn; k++) {
    int r = p->grad_alias[k];
    if (r < 0) continue;
    if (lo[r] > lo[k]) lo[r] = lo[k];
    if (hi[r] < hi[k]) hi[r] = hi[k];
  }
  for (int i = 0; i < nn; i++) {
    if (p->grad[i] == AE_PLAN_NONE || p->grad_alias[i] >= 0) continue;
    size_t ni = p->opt.unit * B * p->geom[i].elems;
    ck_assert(p->grad[i] + ni <= p->bytes[AE_PLAN_BACKWARD]);
    for (int j = 0; j < i; j++) {
      if (p->grad[j] == AE_PLAN_NONE || p->grad_alias[j] >= 0) continue;
      if (lo[i] > hi[j] || lo[j] > hi[i]) continue; /* never alive at once */
      size_t nj = p->opt.unit * B * p->geom[j].elems;
      ck_assert_msg(!ranges_overlap(p->grad[i], ni, p->grad[j], nj),
                    "gradients %d and %d overlap", i, j);
    }
  }
  free(lo);
  free(hi);
}

START_TEST(geometry_and_liveness) {
  ae_graph g;
  small_graph(&g);
  const ae_plan_options opt = {64, sizeof(float), 1};
  ae_plan *p;
  ck_assert_int_eq(ae_plan_create(&g, 2, &opt, &p), AE_OK);
  const ae_plan_geom *c = &p->geom[1];
  ck_assert_uint_eq(c->elems, 48);
  ck_assert_uint_eq(c->in_elems, 32);
  ck_assert_int_eq(c->fan_in, 18);
  ck_assert_uint_eq(c->n_weight, 54);
  ck_assert_uint_eq(c->col_rows, 18);
  ck_assert_uint_eq(c->out_hw, 16);
  ck_assert_int_eq(c->direct, 0);
  ck_assert_int_eq(p->geom[2].channels, 3);
  ck_assert_uint_eq(p->geom[2].plane, 16);
  ck_assert_int_eq(p->geom[7].fan_in, 3);
  ck_assert_uint_eq(ae_plan_param_count(p), 54 + 6 + 6 + 2);
  static const int needs_grad[8] = {0, 1, 1, 1, 1, 1, 1, 1};
  static const int last_use[8] = {1, 2, 5, 4, 5, 6, 7, 8};
  /* The step whose backward first writes each gradient: bn's by the add
   * (5) before relu (3); the input has none. */
  static const int first[8] = {-1, 2, 5, 4, 5, 6, 7, 7};
  /* relu's gradient is identity's, which is the add's. */
  static const int alias[8] = {-1, -1, -1, 5, 5, -1, -1, -1};
  for (int k = 0; k < 8; k++) {
    ck_assert_int_eq(p->needs_grad[k], needs_grad[k]);
    ck_assert_int_eq(p->last_use[k], last_use[k]);
    ck_assert_int_eq(p->grad_first[k], first[k]);
    ck_assert_int_eq(p->grad_alias[k], alias[k]);
  }
  ae_plan_destroy(p);
  ae_gb_free(&g);
}
END_TEST

START_TEST(offsets_by_hand) {
  ae_graph g;
  small_graph(&g);
  const ae_plan_options opt = {64, sizeof(float), 1};
  ae_plan *p;
  ck_assert_int_eq(ae_plan_create(&g, 2, &opt, &p), AE_OK);
  /* Parameters, each rounded up to 64 bytes: conv W 216 B; bn gamma,
   * beta 12 B, mean, invstd 24 B; linear W 24 B, bias 8 B. */
  ck_assert_uint_eq(p->weight[1], 0);
  ck_assert_uint_eq(p->gamma[2], 256);
  ck_assert_uint_eq(p->beta[2], 320);
  ck_assert_uint_eq(p->bn_mean[2], 384);
  ck_assert_uint_eq(p->bn_invstd[2], 448);
  ck_assert_uint_eq(p->weight[7], 512);
  ck_assert_uint_eq(p->bias[7], 576);
  ck_assert_uint_eq(p->param_bytes, 640);
  ck_assert(p->weight[2] == AE_PLAN_NONE && p->gamma[1] == AE_PLAN_NONE);
  ck_assert(p->bias[1] == AE_PLAN_NONE);
  /* Outputs of 2 samples: input 256 B, the 48-element maps 384 B, pool
   * 24 -> 64, logits 16 -> 64; identity shares relu's. */
  static const size_t act[8] = {640, 896, 1280, 1664, 1664, 2048, 2432, 2496};
  for (int k = 0; k < 8; k++)
    ck_assert_uint_eq(p->act[k], act[k]);
  ck_assert_uint_eq(p->bytes[AE_PLAN_FORWARD], 2560);
  /* Gradient lives (time = 7 - node): logits [0,0] 64 B, pool [0,1] 64 B,
   * add (with identity and relu) [1,4], bn [2,5], conv [5,6], 384 B
   * each, placed in node order at each time: conv reuses the add's
   * slot. */
  static const size_t grad[8] = {AE_PLAN_NONE, 128, 512, 128, 128, 128, 0, 64};
  for (int k = 0; k < 8; k++)
    ck_assert_uint_eq(p->grad[k], grad[k]);
  ck_assert_uint_eq(p->bytes[AE_PLAN_BACKWARD], 896);
  /* The executor's scratch goes after, aligned. */
  ck_assert_uint_eq(ae_plan_reserve(p, AE_PLAN_BACKWARD, 10), 896);
  ck_assert_uint_eq(ae_plan_reserve(p, AE_PLAN_BACKWARD, 0), 960);
  ck_assert_uint_eq(ae_plan_total_bytes(p), 2560 + 960);
  check_no_live_overlap(p);
  /* Jets of one sample: 3 streams; node k lives from k to its last
   * reader (identity keeps relu's alive to 5).  relu reuses the conv's
   * 576 B once bn has read it; the add cannot reuse anything. */
  size_t off[8];
  ck_assert_uint_eq(ae_plan_jets(p, 1, sizeof(float), 1, off), 2240);
  static const size_t jet[8] = {0, 384, 960, 384, 384, 1536, 2112, 2176};
  for (int k = 0; k < 8; k++)
    ck_assert_uint_eq(off[k], jet[k]);
  ae_plan_destroy(p);
  ae_gb_free(&g);
}
END_TEST

/* 0 input {2,4,4} -> 1 conv -> 2 bn, 3 conv (of the input) -> 4 bn,
 * 5 add(2, 4) -> 6 global pool -> 7 linear: both BNs are read once, by
 * the add, and each conv by its BN alone, so the host jets may apply
 * them inside the add (jet_bn_add); small_graph's BN has two readers. */
START_TEST(jets_fold_bn_into_add) {
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 2, 4, 4);
  int c1 = ae_gb_conv(&g, x, 3, 3, 1, 1, 2.0);
  int b1 = ae_gb_bn(&g, c1);
  int c2 = ae_gb_conv(&g, x, 3, 3, 1, 1, 2.0);
  int b2 = ae_gb_bn(&g, c2);
  int in[2] = {b1, b2};
  int s = ae_gb_add(&g, in, 2);
  int o = ae_gb_linear(&g, ae_gb_gap(&g, s), 2, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, o), AE_OK);
  const ae_plan_options opt = {64, sizeof(float), 1};
  ae_plan *p;
  ck_assert_int_eq(ae_plan_create(&g, 2, &opt, &p), AE_OK);
  for (int k = 0; k < 8; k++)
    ck_assert_int_eq(p->jet_bn_add[k], k == b1 || k == b2 ? s : -1);
  size_t off[8];
  /* Folded: each BN has its conv's buffer (576 B: 3 streams x 48
   * floats), both convs live until the add, which takes a new one (the
   * input's 384 B do not fit it): input 0, conv1 384, conv2 960, add
   * 1536, pool 2112, logits 2176. */
  ck_assert_uint_eq(ae_plan_jets(p, 1, sizeof(float), 1, off), 2240);
  ck_assert_uint_eq(off[b1], off[c1]);
  ck_assert_uint_eq(off[b2], off[c2]);
  ck_assert_uint_ne(off[c1], off[c2]);
  ck_assert_uint_ne(off[s], off[c1]);
  ck_assert_uint_ne(off[s], off[c2]);
  /* Not folded (the CUDA jets): every BN its own buffer; conv2 and then
   * the add reuse conv1's once bn1 has read it. */
  ck_assert_uint_eq(ae_plan_jets(p, 1, sizeof(float), 0, off), 2240);
  ck_assert_uint_eq(off[c2], off[c1]);
  ck_assert_uint_eq(off[s], off[c1]);
  ck_assert_uint_ne(off[b1], off[c1]);
  ck_assert_uint_ne(off[b2], off[c2]);
  ae_plan_destroy(p);
  ae_gb_free(&g);
  small_graph(&g);
  ck_assert_int_eq(ae_plan_create(&g, 2, &opt, &p), AE_OK);
  for (int k = 0; k < 8; k++)
    ck_assert_int_eq(p->jet_bn_add[k], -1);
  ae_plan_destroy(p);
  ae_gb_free(&g);
}
END_TEST

START_TEST(without_shared_views) {
  ae_graph g;
  small_graph(&g);
  const ae_plan_options opt = {256, sizeof(float), 0};
  ae_plan *p;
  ck_assert_int_eq(ae_plan_create(&g, 3, &opt, &p), AE_OK);
  ck_assert(p->act[4] != p->act[3]);
  for (int k = 0; k < 8; k++) {
    ck_assert_int_eq(p->grad_alias[k], -1);
    ck_assert((p->grad[k] == AE_PLAN_NONE) == (p->grad_first[k] < 0));
    if (p->act[k] != AE_PLAN_NONE) ck_assert_uint_eq(p->act[k] % 256, 0);
  }
  check_no_live_overlap(p);
  ae_plan_destroy(p);
  ae_gb_free(&g);
}
END_TEST

START_TEST(larger_batches_no_overlap) {
  ae_graph g;
  small_graph(&g);
  for (int share = 0; share < 2; share++)
    for (int batch = 1; batch <= 17; batch += 4) {
      const ae_plan_options opt = {64, sizeof(double), share};
      ae_plan *p;
      ck_assert_int_eq(ae_plan_create(&g, batch, &opt, &p), AE_OK);
      check_no_live_overlap(p);
      ae_plan_destroy(p);
    }
  ae_gb_free(&g);
}
END_TEST

/* 0 input {8,4,4} -> 1 conv 3x3 to 6 -> 2 relu -> 3 conv 1x1 (direct)
 * -> 4 gap -> 5 linear 3: a chunk of 64 samples per im2col. */
static void conv_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 8, 4, 4);
  int c = ae_gb_conv(g, x, 6, 3, 1, 1, 2.0);
  int a = ae_gb_act(g, c, AE_ACT_RELU, 0.0);
  int d = ae_gb_conv(g, a, 5, 1, 1, 0, 2.0);
  int p = ae_gb_gap(g, d);
  int o = ae_gb_linear(g, p, 3, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, o), AE_OK);
}

/* The host executor allocates exactly what the estimate counts for its
 * net: the plan's families plus ae_plan_host_scratch, forward at create,
 * backward at the first NTK (one size function for both). */
START_TEST(host_net_allocates_the_estimate) {
  for (int which = 0; which < 2; which++) {
    ae_graph g;
    if (which)
      conv_graph(&g);
    else
      small_graph(&g);
    const int batches[] = {1, 5, 64, 65, 200};
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
      int B = batches[b];
      const ae_plan_options opt = {64, sizeof(float), 1};
      ae_plan *p;
      ck_assert_int_eq(ae_plan_create(&g, B, &opt, &p), AE_OK);
      size_t bwd_scratch = 0;
      size_t fwd = p->bytes[AE_PLAN_FORWARD] +
                   ae_plan_host_scratch(p, B, 0, &bwd_scratch);
      size_t bwd = p->bytes[AE_PLAN_BACKWARD] + bwd_scratch;
      ae_net *n;
      ck_assert_int_eq(ae_net_create(&g, B, &n), AE_OK);
      ck_assert_uint_eq(ae_net_memory_bytes(n), fwd);
      ck_assert_int_eq(ae_net_backward_buffers(n), AE_OK);
      ck_assert_uint_eq(ae_net_memory_bytes(n), fwd + bwd);
      for (int k = 0; k < g.n_nodes; k++)
        if (g.nodes[k].op == AE_OP_CONV)
          ck_assert_int_eq(n->chunk[k], ae_plan_host_chunk(&p->geom[k], B));
      ae_net_destroy(n);
      ae_plan_destroy(p);
    }
    ae_gb_free(&g);
  }
}
END_TEST

START_TEST(rejects_bad_graphs) {
  ae_graph g;
  small_graph(&g);
  const ae_plan_options opt = {64, sizeof(float), 1};
  ae_plan *p = (ae_plan *)1;
  ck_assert_int_eq(ae_plan_create(&g, 0, &opt, &p), AE_EINVAL);
  ck_assert_ptr_null(p);
  const ae_plan_options odd = {48, sizeof(float), 1};
  ck_assert_int_eq(ae_plan_create(&g, 2, &odd, &p), AE_EINVAL);
  g.nodes[1].shape[1] = 5; /* the conv's output does not fit its input */
  ck_assert_int_eq(ae_plan_create(&g, 2, &opt, &p), AE_EINVAL);
  g.nodes[1].shape[1] = 4;
  g.num_classes = 3; /* the output has 2 features */
  ck_assert_int_eq(ae_plan_create(&g, 2, &opt, &p), AE_EINVAL);
  g.num_classes = 2;
  g.nodes[6].inputs[0] = 7; /* reads a later node */
  ck_assert_int_eq(ae_plan_create(&g, 2, &opt, &p), AE_EINVAL);
  g.nodes[6].inputs[0] = 5;
  ck_assert_int_eq(ae_plan_create(&g, 2, &opt, &p), AE_OK);
  ae_plan_destroy(p);
  ae_gb_free(&g);
}
END_TEST

/* A parsed mlp_dag request at batch n with the given metric groups. */
static void mlp_request(int n, const char *metrics, ae_request *r) {
  static const ae_dataset_info none[] = {{0}};
  const ae_catalog catalog = {none, 0};
  ae_limits lim;
  ae_limits_default(&lim);
  char text[512];
  snprintf(text, sizeof text,
           "{\"architecture\": {\"type\": \"mlp_dag\", \"dag\": "
           "\"2_21_112\", \"width\": 64}, \"data\": {\"batch_size\": %d}, "
           "\"metrics\": %s}",
           n, metrics);
  json_error_t err;
  json_t *body = json_loads(text, 0, &err);
  ck_assert_ptr_nonnull(body);
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_request_parse(body, &catalog, &lim, r, &p);
  ck_assert_msg(rc == AE_OK, "%s", p.detail ? p.detail : "parse failed");
  json_decref(body);
}

START_TEST(job_follows_selection) {
  ae_request r;
  ae_plan_job_bytes top, expr, conv, gen;
  mlp_request(128, "[\"topology\"]", &r);
  ck_assert_int_eq(ae_plan_job(&r, &top), AE_OK);
  ae_request_free(&r);
  mlp_request(128, "[\"expressivity\"]", &r);
  ck_assert_int_eq(ae_plan_job(&r, &expr), AE_OK);
  ae_request_free(&r);
  mlp_request(128, "[\"convergence\"]", &r);
  ck_assert_int_eq(ae_plan_job(&r, &conv), AE_OK);
  ae_request_free(&r);
  mlp_request(128, "[\"generalization\"]", &r);
  ck_assert_int_eq(ae_plan_job(&r, &gen), AE_OK);
  ae_request_free(&r);
  size_t nn8 = (size_t)128 * 128 * sizeof(double);
  /* Topology: the batch and the path list, no network, no NTK. */
  ck_assert_uint_eq(top.net + top.net_backward + top.ntk + top.kernels, 0);
  ck_assert_uint_eq(top.linear_regions + top.curvature, 0);
  ck_assert_uint_ge(top.batch, nn8 + 2 * (size_t)128 * 784 * sizeof(float));
  /* Expressivity: forward only, the probe and the jets. */
  ck_assert_uint_gt(expr.net, 0);
  ck_assert_uint_eq(expr.net_backward + expr.ntk + expr.kernels, 0);
  ck_assert_uint_gt(expr.linear_regions, 3000 * 784 * sizeof(float));
  ck_assert_uint_gt(expr.curvature, 0);
  /* Convergence: the backward, two thetas, dsyevd's 2 N^2 doubles, the
   * analytic kernels. */
  ck_assert_uint_gt(conv.net_backward, 0);
  ck_assert_uint_ge(conv.ntk, 5 * nn8);
  ck_assert_uint_ge(conv.kernels, 2 * nn8);
  ck_assert_uint_eq(conv.linear_regions + conv.curvature, 0);
  /* Generalization: one theta and the quadratic's matrices. */
  ck_assert_uint_eq(gen.ntk, nn8);
  ck_assert_uint_ge(gen.generalization, 2 * nn8);
  ck_assert_uint_eq(gen.kernels, 0);
  /* The device (a CUDA worker): no net for topology; the net's one
   * allocation holds three B x B theta buffers and both families (bigger
   * than the host's forward family); the jets come with expressivity. */
  ck_assert_uint_eq(top.device, 0);
  ck_assert_uint_ge(conv.device, 3 * nn8 + conv.net);
  ck_assert_uint_eq(gen.device, conv.device);
  ck_assert_uint_gt(expr.device, conv.device);
  /* The parts add up (the device's are not the host's). */
  ck_assert_uint_eq(conv.total, conv.batch + conv.net + conv.net_backward +
                                    conv.ntk + conv.kernels +
                                    conv.generalization + conv.paths +
                                    conv.ranking);
}
END_TEST

START_TEST(job_grows_with_batch) {
  ae_request r;
  ae_plan_job_bytes small, large;
  mlp_request(64, "[\"convergence\"]", &r);
  ck_assert_int_eq(ae_plan_job(&r, &small), AE_OK);
  ae_request_free(&r);
  mlp_request(1024, "[\"convergence\"]", &r);
  ck_assert_int_eq(ae_plan_job(&r, &large), AE_OK);
  ae_request_free(&r);
  /* The N x N parts grow 256-fold, the activations 16-fold (the
   * parameters and the chunked scratch do not grow). */
  ck_assert_uint_eq(large.ntk > 200 * small.ntk, 1);
  ck_assert_uint_eq(large.net > 8 * small.net, 1);
  ck_assert_uint_eq(large.total > 16 * small.total, 1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("plan");
  TCase *tc = tcase_create("plan");
  tcase_add_test(tc, geometry_and_liveness);
  tcase_add_test(tc, offsets_by_hand);
  tcase_add_test(tc, jets_fold_bn_into_add);
  tcase_add_test(tc, without_shared_views);
  tcase_add_test(tc, larger_batches_no_overlap);
  tcase_add_test(tc, rejects_bad_graphs);
  tcase_add_test(tc, host_net_allocates_the_estimate);
  tcase_add_test(tc, job_follows_selection);
  tcase_add_test(tc, job_grows_with_batch);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
