/* test_cuda_parity.c: the CUDA executor held to the host executor, its
 * reference (issue 4's parity contract).
 *
 * On small graphs that use every op (conv with stride and padding, 1x1
 * conv, linear with and without bias, BN on rank 1 and 3, every
 * activation, both average pools, global pool, add, identity, flatten,
 * zero) and on lowered NB201 networks, with the same seed:
 *   - every parameter tensor is bit-identical (device Philox = host);
 *   - logits agree within 1e-4 (relative to 1 + |host|);
 *   - NTK eigenvalues (both parameterisations) agree within 1e-3 relative
 *     (below 1e-2 of the largest eigenvalue, relative to that floor: the
 *     float32 gradients of either side carry ~1e-6 of noise that the
 *     smallest eigenvalues of an ill-conditioned Gram cannot resolve),
 *     and the Gram entries within 1e-3 of
 *     the largest diagonal entry;
 *   - two device NTKs of one request are bit-identical;
 *   - distinct sign-pattern counts agree within 0.5 %;
 *   - float64 jets agree within 1e-6;
 *   - cusolver eigenvalues and the kernel quadratic form (with and without
 *     jitter) match the LAPACK versions (gpu/analytic) within 1e-9;
 *   - bad arguments fail the call without breaking the context;
 *   - the host and the CUDA engine score three requests (mlp_dag, a
 *     residual graph, an NB201 cell) to the same scorecard: every number
 *     within 1e-3 relative (linear regions 0.5 %), the same nulls, and
 *     the device's scorecard is reproducible.
 *
 * Exits 77 (skipped) when no CUDA device is present.  Runs in CK_NOFORK
 * mode: a CUDA context does not survive fork(), and the device count in
 * main has already initialised the runtime.  One context for the whole
 * program (opened in main, owned by the main thread). */
#include "api/arch.h"
#include "api/problem.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/cuda/cuda_net.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "gpu/host/graph_build.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ae_cuda_context *g_ctx;

/* ---- graphs ---- */

/* Every spatial op: convs (3x3 padded, strided, 1x1 direct), BN rank 3,
 * relu / leaky, both pools, zero, add, identity, flatten, biased linear. */
static void build_conv_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 3, 8, 8);
  int c1 = ae_gb_conv(g, x, 4, 3, 1, 1, 1.0);
  int b1 = ae_gb_bn(g, c1);
  int r1 = ae_gb_act(g, b1, AE_ACT_RELU, 0.0);
  int c2 = ae_gb_conv(g, r1, 5, 3, 2, 1, 2.0);
  int l2 = ae_gb_act(g, c2, AE_ACT_LEAKY_RELU, 0.1);
  int p1 = ae_gb_avg_pool(g, l2, 3, 1, 1, 0);
  int p2 = ae_gb_avg_pool(g, l2, 3, 1, 1, 1);
  int z = ae_gb_unary(g, AE_OP_ZERO, l2);
  int ins[4] = {l2, p1, p2, z};
  int a = ae_gb_add(g, ins, 4);
  int c3 = ae_gb_conv(g, a, 3, 1, 1, 0, 1.5);
  int id = ae_gb_unary(g, AE_OP_IDENTITY, c3);
  int p3 = ae_gb_avg_pool(g, id, 2, 2, 0, 1);
  int f = ae_gb_unary(g, AE_OP_FLATTEN, p3);
  int out = ae_gb_linear(g, f, 4, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
}

/* An MLP with BN rank 1 and every smooth activation, biases on and off. */
static void build_mlp_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 7, 0, 0);
  int h = ae_gb_linear(g, x, 9, 1, 1.0);
  int bn = ae_gb_bn(g, h);
  int cur = ae_gb_act(g, bn, AE_ACT_TANH, 0.0);
  static const ae_act_fn fns[] = {
      AE_ACT_SIGMOID,  AE_ACT_SWISH,      AE_ACT_GELU, AE_ACT_ERF,
      AE_ACT_IDENTITY, AE_ACT_LEAKY_RELU, AE_ACT_RELU};
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    int l = ae_gb_linear(g, cur, 9, (int)(i % 2), 1.7);
    cur = ae_gb_act(g, l, fns[i], 0.05);
  }
  int out = ae_gb_linear(g, cur, 3, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
}

/* A global-pooled CNN (the NB201 head shape) with a residual add. */
static void build_gap_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 3, 10, 10);
  int c1 = ae_gb_conv(g, x, 6, 3, 1, 1, 1.0);
  int b1 = ae_gb_bn(g, c1);
  int r1 = ae_gb_act(g, b1, AE_ACT_RELU, 0.0);
  int c2 = ae_gb_conv(g, r1, 6, 3, 1, 1, 2.0);
  int ins[2] = {c2, b1};
  int a = ae_gb_add(g, ins, 2);
  int r2 = ae_gb_act(g, a, AE_ACT_RELU, 0.0);
  int gp = ae_gb_gap(g, r2);
  int out = ae_gb_linear(g, gp, 5, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
}

/* NB201 lowered by the request parser (C channels, N cells per stage). */
static void lower_nb201(const char *cell, int channels, int cells,
                        ae_graph *g) {
  json_t *j = json_pack("{s:s, s:s, s:i, s:i}", "type", "nb201", "cell", cell,
                        "channels", channels, "cells_per_stage", cells);
  ck_assert_ptr_nonnull(j);
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p;
  memset(&p, 0, sizeof(p));
  ae_arch a;
  int rc = ae_arch_from_json(j, "/architecture", &lim, &a, &p);
  json_decref(j);
  ck_assert_int_eq(rc, 0);
  ae_lower_opts o;
  memset(&o, 0, sizeof(o));
  o.input_shape[0] = 3;
  o.input_shape[1] = 32;
  o.input_shape[2] = 32;
  o.input_rank = 3;
  o.num_classes = 10;
  rc = ae_arch_lower(&a, &o, &lim, "/architecture", g, &p);
  ae_arch_free(&a);
  ae_problem_clear(&p);
  ck_assert_int_eq(rc, 0);
}

/* ---- helpers ---- */

static float *random_inputs(size_t count, uint64_t seed) {
  float *x = malloc(sizeof(float) * count);
  ck_assert_ptr_nonnull(x);
  for (size_t i = 0; i < count; i++)
    x[i] = (float)ae_philox_normal(seed, AE_TID_SYNTHETIC_INPUTS, 0, i);
  return x;
}

static size_t input_elems(const ae_graph *g) {
  const ae_node *in = &g->nodes[0];
  return in->rank == 3 ? (size_t)in->shape[0] * in->shape[1] * in->shape[2]
                       : (size_t)in->shape[0];
}

/* Both executors on one graph, same seed. */
typedef struct {
  ae_net *host;
  ae_cuda_net *dev;
} net_pair;

static void pair_open(const ae_graph *g, int max_batch, uint64_t seed,
                      net_pair *p) {
  ck_assert_int_eq(ae_net_create(g, max_batch, &p->host), 0);
  ck_assert_int_eq(ae_cuda_net_create(g_ctx, g, max_batch, &p->dev), 0);
  ae_net_init_weights(p->host, seed, 1);
  ck_assert_int_eq(ae_cuda_net_init_weights(p->dev, seed, 1), 0);
}

static void pair_close(net_pair *p) {
  ae_net_destroy(p->host);
  ae_cuda_net_destroy(p->dev);
}

/* Every parameter tensor bit for bit. */
static void check_weights(net_pair *p) {
  const ae_graph *g = ae_net_graph(p->host);
  static const ae_net_param_kind kinds[] = {AE_NET_WEIGHT, AE_NET_BIAS,
                                            AE_NET_GAMMA, AE_NET_BETA};
  int tensors = 0;
  for (int k = 0; k < g->n_nodes; k++)
    for (int q = 0; q < 4; q++) {
      size_t hc = 0, dc = 0;
      const float *h = ae_net_param(p->host, k, kinds[q], &hc);
      if (!h) continue;
      float *d = malloc(sizeof(float) * hc);
      ck_assert_ptr_nonnull(d);
      ck_assert_int_eq(
          ae_cuda_net_get_param(p->dev, k, (int)kinds[q], d, hc, &dc), 0);
      ck_assert_uint_eq(dc, hc);
      ck_assert_msg(memcmp(h, d, sizeof(float) * hc) == 0,
                    "node %d tensor %d differs from the host", k, q);
      free(d);
      tensors++;
    }
  ck_assert_int_gt(tensors, 0);
}

static void check_forward(net_pair *p, const float *x, int batch) {
  const ae_graph *g = ae_net_graph(p->host);
  size_t count = (size_t)batch * (size_t)g->num_classes;
  float *h = malloc(sizeof(float) * count), *d = malloc(sizeof(float) * count);
  ck_assert_ptr_nonnull(h);
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(ae_net_forward(p->host, x, batch, h), 0);
  ck_assert_int_eq(ae_cuda_net_forward(p->dev, x, batch, d), 0);
  for (size_t i = 0; i < count; i++)
    ck_assert_msg(fabs((double)h[i] - d[i]) <= 1e-4 * (1.0 + fabs(h[i])),
                  "logit %zu: host %.8g device %.8g", i, h[i], d[i]);
  free(h);
  free(d);
}

static void check_ntk(net_pair *p, const float *x, int batch,
                      ae_ntk_parameterization par) {
  size_t bb = (size_t)batch * (size_t)batch;
  double *th = malloc(sizeof(double) * bb), *td = malloc(sizeof(double) * bb);
  double *td2 = malloc(sizeof(double) * bb);
  double *wh = malloc(sizeof(double) * (size_t)batch);
  double *wd = malloc(sizeof(double) * (size_t)batch);
  ck_assert(th && td && td2 && wh && wd);
  ck_assert_int_eq(ae_net_ntk(p->host, x, batch, par, th, NULL), 0);
  ck_assert_int_eq(ae_cuda_net_ntk(p->dev, x, batch, par, td, NULL), 0);
  ck_assert_int_eq(ae_cuda_net_ntk(p->dev, x, batch, par, td2, NULL), 0);
  ck_assert_msg(memcmp(td, td2, sizeof(double) * bb) == 0,
                "device NTK not reproducible");
  double dmax = 0.0;
  for (int i = 0; i < batch; i++)
    dmax = fmax(dmax, th[(size_t)i * batch + i]);
  ck_assert(dmax > 0.0);
  for (size_t e = 0; e < bb; e++)
    ck_assert_msg(fabs(th[e] - td[e]) <= 1e-3 * dmax,
                  "theta[%zu]: host %.10g device %.10g", e, th[e], td[e]);
  ck_assert_int_eq(ae_sym_eigvals(th, batch, wh, NULL), 0);
  ck_assert_int_eq(ae_sym_eigvals(td, batch, wd, NULL), 0);
  double lmax = fabs(wh[batch - 1]);
  for (int i = 0; i < batch; i++)
    ck_assert_msg(fabs(wh[i] - wd[i]) <= 1e-3 * fmax(fabs(wh[i]), 1e-2 * lmax),
                  "eigenvalue %d: host %.10g device %.10g", i, wh[i], wd[i]);
  free(th);
  free(td);
  free(td2);
  free(wh);
  free(wd);
}

static void check_jets(net_pair *p, int batch, uint64_t seed) {
  const ae_graph *g = ae_net_graph(p->host);
  size_t n_in = (size_t)batch * input_elems(g);
  size_t n_out = (size_t)batch * (size_t)g->num_classes;
  double *in = malloc(sizeof(double) * 3 * n_in);
  double *outh = malloc(sizeof(double) * 3 * n_out);
  double *outd = malloc(sizeof(double) * 3 * n_out);
  ck_assert(in && outh && outd);
  for (size_t i = 0; i < 3 * n_in; i++)
    in[i] = ae_philox_normal(seed, AE_TID_CURVE_DIRS, 7, i);
  /* The device jets are float64: compare with the host's float64 path. */
  ae_net_set_double(p->host, 1);
  ck_assert_int_eq(ae_net_forward_jet(p->host, in, in + n_in, in + 2 * n_in,
                                      batch, outh, outh + n_out,
                                      outh + 2 * n_out),
                   0);
  ae_net_set_double(p->host, 0);
  ck_assert_int_eq(ae_cuda_net_forward_jet(p->dev, in, in + n_in, in + 2 * n_in,
                                           batch, outd, outd + n_out,
                                           outd + 2 * n_out),
                   0);
  for (size_t i = 0; i < 3 * n_out; i++)
    ck_assert_msg(fabs(outh[i] - outd[i]) <= 1e-6 * (1.0 + fabs(outh[i])),
                  "jet %zu: host %.12g device %.12g", i, outh[i], outd[i]);
  free(in);
  free(outh);
  free(outd);
}

static void check_patterns(net_pair *p, const float *x, int batch) {
  uint64_t *bh = NULL, *bd = NULL;
  size_t wh = 0, wd = 0, distinct_dev = 0;
  ck_assert_int_eq(ae_net_sign_patterns(p->host, x, batch, &bh, &wh), 0);
  ck_assert_int_eq(ae_cuda_net_sign_patterns(p->dev, x, batch, &bd, &wd), 0);
  ck_assert_uint_eq(wh, wd);
  size_t ch = 0, cd = 0;
  ck_assert_int_eq(ae_count_distinct_patterns(bh, (size_t)batch, wh, &ch), 0);
  ck_assert_int_eq(ae_count_distinct_patterns(bd, (size_t)batch, wd, &cd), 0);
  ck_assert_int_eq(ae_cuda_net_count_patterns(p->dev, x, batch, &distinct_dev),
                   0);
  ck_assert_uint_eq(distinct_dev, cd);
  ck_assert_msg(fabs((double)ch - (double)cd) <= 0.005 * (double)ch,
                "distinct patterns: host %zu device %zu", ch, cd);
  /* Equal rows hash equally. */
  uint64_t *hash = malloc(sizeof(uint64_t) * (size_t)batch);
  ck_assert_ptr_nonnull(hash);
  ck_assert_int_eq(ae_cuda_net_pattern_hashes(p->dev, batch, hash), 0);
  for (int i = 1; i < batch; i++)
    if (wd > 0 && memcmp(bd + (size_t)i * wd, bd, sizeof(uint64_t) * wd) == 0)
      ck_assert(hash[i] == hash[0]);
  free(hash);
  free(bh);
  free(bd);
}

/* Everything on one graph. */
static void parity_suite(const ae_graph *g, int batch, uint64_t seed) {
  net_pair p;
  pair_open(g, batch, seed, &p);
  check_weights(&p);
  float *x = random_inputs((size_t)batch * input_elems(g), seed + 11);
  check_forward(&p, x, batch);
  check_ntk(&p, x, batch, AE_NTK_STANDARD);
  check_ntk(&p, x, batch, AE_NTK_NTK);
  check_patterns(&p, x, batch);
  check_jets(&p, batch, seed);
  ck_assert(!ae_cuda_context_broken(g_ctx));
  free(x);
  pair_close(&p);
}

/* ---- the engine end to end ---- */

/* Requests scored by the host and the CUDA engine (synthetic data only, so
 * the GPU machine needs no dataset files): an mlp_dag, the example
 * residual graph and a shallow NB201 ResNet cell, all float32-stable
 * (scorecard.md §4: deep all-conv cells are judged against the host's own
 * float32 spread instead, see bench_cuda). */
static const char *const engine_requests[] = {
    "{\"architecture\": {\"type\": \"mlp_dag\", \"dag\": \"2_21_112\", "
    "\"width\": 64}, \"data\": {\"dataset\": \"synthetic\", \"input_shape\": "
    "[32], \"batch_size\": 16}, \"seed\": 1, \"settings\": "
    "{\"linear_regions\": {\"samples\": 400, \"repeats\": 1}, \"curvature\": "
    "{\"points\": 32, \"repeats\": 1}}}",
    "{\"architecture\": {\"type\": \"graph\", \"nodes\": ["
    "{\"id\": \"stem\", \"op\": \"conv\", \"inputs\": [\"input\"], \"out\": 8, "
    "\"kernel\": 3, \"stride\": 1, \"padding\": 1},"
    "{\"id\": \"bn0\", \"op\": \"batch_norm\", \"inputs\": [\"stem\"]},"
    "{\"id\": \"a1\", \"op\": \"act\", \"fn\": \"relu\", \"inputs\": "
    "[\"bn0\"]},"
    "{\"id\": \"c1\", \"op\": \"conv\", \"inputs\": [\"a1\"], \"out\": 8, "
    "\"kernel\": 3, \"stride\": 1, \"padding\": 1},"
    "{\"id\": \"bn1\", \"op\": \"batch_norm\", \"inputs\": [\"c1\"]},"
    "{\"id\": \"sum\", \"op\": \"add\", \"inputs\": [\"bn1\", \"bn0\"]},"
    "{\"id\": \"a2\", \"op\": \"act\", \"fn\": \"relu\", \"inputs\": "
    "[\"sum\"]},"
    "{\"id\": \"gap\", \"op\": \"global_avg_pool\", \"inputs\": [\"a2\"]},"
    "{\"id\": \"flat\", \"op\": \"flatten\", \"inputs\": [\"gap\"]},"
    "{\"id\": \"fc\", \"op\": \"linear\", \"inputs\": [\"flat\"], \"out\": "
    "10}],"
    " \"output\": \"fc\"}, \"data\": {\"dataset\": \"synthetic\", "
    "\"input_shape\": [3, 16, 16], \"batch_size\": 16}, \"seed\": 2, "
    "\"settings\": {\"linear_regions\": {\"samples\": 400, \"repeats\": 1}, "
    "\"curvature\": {\"points\": 32, \"repeats\": 1}}}",
    "{\"architecture\": {\"type\": \"nb201\", \"cell\": "
    "\"|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
    "nor_conv_3x3~1|nor_conv_3x3~2|\", \"channels\": 8, "
    "\"cells_per_stage\": 1}, \"data\": {\"dataset\": \"synthetic\", "
    "\"input_shape\": [3, 32, 32], \"batch_size\": 16}, \"seed\": 3, "
    "\"settings\": {\"linear_regions\": {\"samples\": 400, \"repeats\": 1}, "
    "\"curvature\": {\"points\": 32, \"repeats\": 1}}}"};

/* Compares two results: same keys, same nulls, strings and booleans
 * equal, numbers within rel (linear_regions within 0.5 %).  path names
 * the place for messages. */
static void compare_json(const json_t *h, const json_t *d, const char *path,
                         double rel) {
  char sub[512];
  if (json_is_object(h)) {
    ck_assert_msg(json_is_object(d), "%s: not an object on the device", path);
    const char *key;
    json_t *hv;
    json_object_foreach((json_t *)h, key, hv) {
      if (strcmp(key, "warnings") == 0 || strcmp(key, "provenance") == 0)
        continue; /* backend names, timings, jitter values in words */
      snprintf(sub, sizeof sub, "%s/%s", path, key);
      json_t *dv = json_object_get(d, key);
      ck_assert_msg(dv != NULL, "%s: missing on the device", sub);
      compare_json(hv, dv, sub,
                   strcmp(key, "linear_regions") == 0 ? 5e-3 : rel);
    }
    ck_assert_uint_eq(
        json_object_size(h) - (json_object_get(h, "warnings") ? 1 : 0),
        json_object_size(d) - (json_object_get(d, "warnings") ? 1 : 0));
  } else if (json_is_array(h)) {
    ck_assert_msg(json_is_array(d) && json_array_size(h) == json_array_size(d),
                  "%s: array differs", path);
    for (size_t i = 0; i < json_array_size(h); i++) {
      snprintf(sub, sizeof sub, "%s/%zu", path, i);
      compare_json(json_array_get(h, i), json_array_get(d, i), sub, rel);
    }
  } else if (json_is_number(h)) {
    ck_assert_msg(json_is_number(d),
                  "%s: null or not a number on the "
                  "device",
                  path);
    double a = json_number_value(h), b = json_number_value(d);
    ck_assert_msg(fabs(a - b) <= rel * fmax(fabs(a), 1e-12),
                  "%s: host %.10g device %.10g", path, a, b);
  } else {
    ck_assert_msg(json_equal((json_t *)h, (json_t *)d), "%s: differs", path);
  }
}

static json_t *engine_result(ae_engine *e, const ae_dataset_registry *reg,
                             const char *text) {
  ae_problem p = AE_PROBLEM_INIT;
  ae_catalog cat = ae_dataset_registry_catalog(reg);
  ae_limits lim;
  ae_limits_default(&lim);
  json_t *body = NULL;
  ae_request req;
  int rc = ae_json_parse_body(text, strlen(text), &body, &p);
  if (!rc) rc = ae_request_parse(body, &cat, &lim, &req, &p);
  json_decref(body);
  ck_assert_msg(rc == 0, "request rejected: %s", p.detail ? p.detail : "");
  ae_scorecard sc;
  ae_error err = AE_ERROR_INIT;
  rc = ae_engine_score(e, &req, reg, NULL, &sc, &err);
  ck_assert_msg(rc == 0, "%s failed: %s", ae_engine_name(e),
                err.reason ? err.reason : ae_strerror(rc));
  ae_error_clear(&err);
  json_t *j = ae_scorecard_to_json(&sc);
  ck_assert_ptr_nonnull(j);
  ae_scorecard_free(&sc);
  ae_request_free(&req);
  ae_problem_clear(&p);
  return j;
}

/* ---- tests ---- */

START_TEST(test_conv_graph) {
  ae_graph g;
  build_conv_graph(&g);
  parity_suite(&g, 6, 101);
  ae_gb_free(&g);
}
END_TEST

START_TEST(test_mlp_graph) {
  ae_graph g;
  build_mlp_graph(&g);
  parity_suite(&g, 12, 202);
  ae_gb_free(&g);
}
END_TEST

START_TEST(test_gap_graph) {
  ae_graph g;
  build_gap_graph(&g);
  parity_suite(&g, 8, 303);
  ae_gb_free(&g);
}
END_TEST

START_TEST(test_nb201_cells) {
  static const char *cells[] = {
      "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
      "nor_conv_3x3~1|nor_conv_3x3~2|",
      "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|"
      "none~1|avg_pool_3x3~2|",
      "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"};
  for (size_t c = 0; c < sizeof(cells) / sizeof(cells[0]); c++) {
    ae_graph g;
    lower_nb201(cells[c], 8, 1, &g);
    parity_suite(&g, 8, 404 + c);
    ae_graph_free(&g);
  }
}
END_TEST

/* Many samples: the linear-regions count (0.5 % contract). */
START_TEST(test_pattern_counts_large) {
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 2, 0, 0);
  int l1 = ae_gb_linear(&g, x, 24, 1, 2.0);
  int r1 = ae_gb_act(&g, l1, AE_ACT_RELU, 0.0);
  int l2 = ae_gb_linear(&g, r1, 24, 1, 2.0);
  int r2 = ae_gb_act(&g, l2, AE_ACT_RELU, 0.0);
  int o = ae_gb_linear(&g, r2, 2, 0, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, o), 0);
  net_pair p;
  pair_open(&g, 4096, 505, &p);
  float *xs = random_inputs(2 * 4096, 506);
  check_patterns(&p, xs, 4096);
  free(xs);
  pair_close(&p);
  ae_gb_free(&g);
}
END_TEST

START_TEST(test_linear_algebra) {
  enum { N = 24, C = 3 };
  double *a = malloc(sizeof(double) * N * N),
         *y = malloc(sizeof(double) * N * C);
  double wh[N], wd[N];
  ck_assert(a && y);
  /* A = B B^T / N + diag: symmetric positive definite. */
  for (int i = 0; i < N; i++)
    for (int j = 0; j <= i; j++) {
      double s = 0.0;
      for (int k = 0; k < N; k++)
        s += ae_philox_normal(9, 1, 0, (uint64_t)(i * N + k)) *
             ae_philox_normal(9, 1, 0, (uint64_t)(j * N + k));
      a[i * N + j] = a[j * N + i] = s / N + (i == j ? 0.1 : 0.0);
    }
  for (int e = 0; e < N * C; e++)
    y[e] = ae_philox_normal(9, 2, 0, (uint64_t)e);
  ck_assert_int_eq(ae_sym_eigvals(a, N, wh, NULL), 0);
  ck_assert_int_eq(ae_cuda_sym_eigvals(g_ctx, a, N, wd), 0);
  for (int i = 0; i < N; i++)
    ck_assert(fabs(wh[i] - wd[i]) <= 1e-9 * fabs(wh[N - 1]));
  double qh, qd, jh, jd;
  ck_assert_int_eq(ae_kernel_quadratic(a, N, y, C, &qh, &jh, NULL), 0);
  ck_assert_int_eq(ae_cuda_kernel_quadratic(g_ctx, a, N, y, C, &qd, &jd), 0);
  ck_assert(fabs(qh - qd) <= 1e-9 * fabs(qh));
  ck_assert(jh == 0.0 && jd == 0.0);
  /* Rank one: needs jitter; the same jitter as the host. */
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++)
      a[i * N + j] = 1.0;
  int rh = ae_kernel_quadratic(a, N, y, C, &qh, &jh, NULL);
  int rd = ae_cuda_kernel_quadratic(g_ctx, a, N, y, C, &qd, &jd);
  ck_assert_int_eq(rh, rd);
  if (rh == 0) {
    ck_assert(jh > 0.0 && jh == jd);
    /* Condition ~1e11: both sides carry ~1e-5 relative error. */
    ck_assert(fabs(qh - qd) <= 1e-3 * fabs(qh));
  }
  /* Not finite: refused. */
  a[5] = NAN;
  ck_assert_int_eq(ae_cuda_kernel_quadratic(g_ctx, a, N, y, C, &qd, &jd),
                   AE_EINVAL);
  free(a);
  free(y);
  ck_assert(!ae_cuda_context_broken(g_ctx));
}
END_TEST

START_TEST(test_bad_arguments) {
  ae_graph g;
  build_mlp_graph(&g);
  ae_cuda_net *n = NULL;
  ck_assert_int_eq(ae_cuda_net_create(g_ctx, &g, 0, &n), AE_EINVAL);
  ck_assert_ptr_null(n);
  ck_assert_int_eq(ae_cuda_net_create(g_ctx, &g, 4, &n), 0);
  float x[7 * 5] = {0};
  ck_assert_int_eq(ae_cuda_net_forward(n, x, 5, NULL), AE_EINVAL);
  ck_assert_int_eq(ae_cuda_net_forward(n, x, 4, NULL), 0);
  float w[4];
  ck_assert_int_eq(ae_cuda_net_set_param(n, 1, 0, w, 4), AE_EINVAL);
  ck_assert_int_eq(ae_cuda_net_get_param(n, 0, 0, w, 4, NULL), AE_EINVAL);
  ck_assert(!ae_cuda_context_broken(g_ctx));
  ck_assert_int_gt((long long)ae_cuda_context_memory_used(g_ctx), 0);
  ae_cuda_net_destroy(n);
  ae_gb_free(&g);
  ae_cuda_context *none = NULL;
  char err[128];
  ck_assert_int_eq(
      ae_cuda_context_open(ae_cuda_device_count(), &none, err, sizeof(err)),
      AE_EUNSUPPORTED);
  ck_assert_ptr_null(none);
  ck_assert(err[0] != '\0');
}
END_TEST

START_TEST(test_engine_scorecards) {
  ae_dataset_registry reg;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(ae_dataset_registry_init(&reg, 0, NULL), 0);
  ae_engine_config host_cfg = {AE_BACKEND_HOST, 0, 0};
  ae_engine_config cuda_cfg = {AE_BACKEND_CUDA, 0, 1};
  ae_engine *host = NULL, *dev = NULL;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_engine_open(&host_cfg, &host, &err), 0);
  ck_assert_msg(ae_engine_open(&cuda_cfg, &dev, &err) == 0, "cuda engine: %s",
                err.reason ? err.reason : "");
  ae_error_clear(&err);
  for (size_t i = 0; i < sizeof(engine_requests) / sizeof(engine_requests[0]);
       i++) {
    json_t *h = engine_result(host, &reg, engine_requests[i]);
    json_t *d = engine_result(dev, &reg, engine_requests[i]);
    char where[32];
    snprintf(where, sizeof where, "request %zu", i);
    compare_json(h, d, where, 1e-3);
    /* The device run is reproducible bit for bit (timings aside). */
    json_t *d2 = engine_result(dev, &reg, engine_requests[i]);
    json_object_del(json_object_get(d, "provenance"), "timings_s");
    json_object_del(json_object_get(d2, "provenance"), "timings_s");
    ck_assert_msg(json_equal(d, d2), "%s: device run not reproducible", where);
    json_decref(h);
    json_decref(d);
    json_decref(d2);
  }
  ae_engine_close(host);
  ae_engine_close(dev);
  ae_dataset_registry_free(&reg);
  ae_problem_clear(&p);
}
END_TEST

static Suite *cuda_parity_suite(void) {
  Suite *s = suite_create("cuda_parity");
  TCase *tc = tcase_create("parity");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_conv_graph);
  tcase_add_test(tc, test_mlp_graph);
  tcase_add_test(tc, test_gap_graph);
  tcase_add_test(tc, test_nb201_cells);
  tcase_add_test(tc, test_pattern_counts_large);
  tcase_add_test(tc, test_linear_algebra);
  tcase_add_test(tc, test_bad_arguments);
  tcase_add_test(tc, test_engine_scorecards);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  if (ae_cuda_device_count() == 0) {
    printf("test_cuda_parity: no CUDA device, skipped\n");
    return 77;
  }
  char err[256];
  int rc = ae_cuda_context_open(0, &g_ctx, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "test_cuda_parity: cannot open device 0: %s (%s)\n", err,
            ae_strerror(rc));
    return 1;
  }
  printf("test_cuda_parity: %s\n", ae_cuda_context_device_name(g_ctx));
  SRunner *sr = srunner_create(cuda_parity_suite());
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  ae_cuda_context_close(g_ctx);
  return failed != 0;
}
