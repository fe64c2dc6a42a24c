/* test_rank_gradients.c: the gradient metrics of ranking.md (gpu/groups/
 * gradients.c), zico's second batch and the CE labels (gpu/batch.c), and
 * the proxies group end to end.
 *
 * Hand cases with closed-form values: jacobian_trainability of 1x1 convs
 * (M = W^T, sigma = |W|) and of an average pool that halves the
 * resolution (pixel-unshuffle: sigma = 1/2), an identity block (null,
 * named); synflow of a linear net with biases and a BN (removed); grad_norm
 * and snip of softmax regression; zico of given gradients; jacob_cov of a
 * linear net (every row of J equal).  Then the PyTorch check: a small
 * conv net with train-mode BN, residual adds and a stride-2 block is
 * dumped (graph, weights, inputs, labels, the Gaussian and Rademacher
 * tensors) with the engine's float64 values, and tests/ref/torch_ranking.py
 * must agree within 1e-8 relative (skipped, said on stderr, when torch is
 * missing).  Last, the proxies group and jacobian_trainability through
 * ae_engine_score, selected by hand (the request's selection of these
 * metrics is another branch's): finite, deterministic, rendered, and a
 * null with a warning where a metric cannot be computed. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/batch.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "gpu/groups/gradients.h"
#include "gpu/host/graph_build.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"

static void set_param(ae_net *n, int node, ae_net_param_kind kind,
                      const float *v, size_t count) {
  size_t c;
  float *t = ae_net_param(n, node, kind, &c);
  ck_assert_ptr_nonnull(t);
  ck_assert_uint_eq(c, count);
  memcpy(t, v, count * sizeof *t);
}

static void fill_normal(float *x, size_t n, uint32_t tid) {
  for (size_t i = 0; i < n; i++)
    x[i] = (float)ae_philox_normal(9, tid, 0, i);
}

/* x (2x4x4) -> 1x1 conv to 2 [block] -> 1x1 conv to 1 [block] -> avg
 * pool 2x2/2 [block] -> flatten -> linear.  Pair 1: g_in = W^T g_out per
 * position with g_out = +-1 scalars, so M = W^T (2x1), sigma = |W| = 2.
 * Pair 2: g_in = g_out/4 on each 2x2 window; unshuffled, M = (1/4)(1,1,1,1)^T
 * times mean(g_out^2) = 1, sigma = 1/2. */
START_TEST(trainability_closed_form) {
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 2, 4, 4);
  int c0 = ae_gb_conv(&g, x, 2, 1, 1, 0, 1.0);
  int c1 = ae_gb_conv(&g, c0, 1, 1, 1, 0, 1.0);
  int p = ae_gb_avg_pool(&g, c1, 2, 2, 0, 1);
  int f = ae_gb_unary(&g, AE_OP_FLATTEN, p);
  int out = ae_gb_linear(&g, f, 3, 0, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, out), 0);
  enum { B = 3 };
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, B, &net), 0);
  ae_net_init_weights(net, 1, 0);
  const float w1[2] = {1.2f, 1.6f};
  set_param(net, c1, AE_NET_WEIGHT, w1, 2);
  float xs[B * 32];
  fill_normal(xs, B * 32, 501);
  int blocks[3] = {c0, c1, p};
  double v;
  char why[AE_GRAD_WHY] = "";
  for (int dbl = 0; dbl < 2; dbl++) {
    ck_assert_int_eq(ae_net_set_double(net, dbl), 0);
    ck_assert_int_eq(ae_jacobian_trainability(net, xs, B, blocks, 2, 77, &g, &v,
                                              why, sizeof why),
                     0);
    double s1 = -2.0 - 1.0 / (2.0 + 1e-6) + 2.0;
    ck_assert_double_eq_tol(v, s1, 1e-6);
    ck_assert_int_eq(ae_jacobian_trainability(net, xs, B, blocks + 1, 2, 77, &g,
                                              &v, why, sizeof why),
                     0);
    double s2 = -0.5 - 1.0 / (0.5 + 1e-6) + 2.0;
    ck_assert_double_eq_tol(v, s2, 1e-6);
    ck_assert_int_eq(ae_jacobian_trainability(net, xs, B, blocks, 3, 77, &g, &v,
                                              why, sizeof why),
                     0);
    ck_assert_double_eq_tol(v, (s1 + s2) / 2, 1e-6);
  }
  /* One block: null with a reason. */
  ck_assert_int_eq(ae_jacobian_trainability(net, xs, B, blocks, 1, 77, &g, &v,
                                            why, sizeof why),
                   0);
  ck_assert(isnan(v));
  ck_assert_ptr_nonnull(strstr(why, "two block outputs"));
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

/* A block that is its predecessor through an identity scores -inf: the
 * metric is null and the reason names the block. */
START_TEST(trainability_identity_block) {
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 2, 4, 4);
  int c0 = ae_gb_conv(&g, x, 2, 3, 1, 1, 2.0);
  int r = ae_gb_act(&g, c0, AE_ACT_RELU, 0.0);
  int id = ae_gb_unary(&g, AE_OP_IDENTITY, r);
  int c1 = ae_gb_conv(&g, id, 2, 3, 1, 1, 2.0);
  int gp = ae_gb_gap(&g, c1);
  int out = ae_gb_linear(&g, gp, 3, 0, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, out), 0);
  g.nodes[id].name = strdup("stage0/cell1/out");
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, 4, &net), 0);
  ae_net_init_weights(net, 3, 0);
  float xs[4 * 32];
  fill_normal(xs, 4 * 32, 502);
  int blocks[3] = {r, id, c1};
  double v;
  char why[AE_GRAD_WHY] = "";
  ck_assert_int_eq(ae_jacobian_trainability(net, xs, 4, blocks, 3, 5, &g, &v,
                                            why, sizeof why),
                   0);
  ck_assert(isnan(v));
  ck_assert_ptr_nonnull(strstr(why, "block 1"));
  ck_assert_ptr_nonnull(strstr(why, "stage0/cell1/out"));
  ck_assert_ptr_nonnull(strstr(why, "identity"));
  /* Without the identity pair the value is finite. */
  int two[2] = {id, c1};
  ck_assert_int_eq(
      ae_jacobian_trainability(net, xs, 4, two, 2, 5, &g, &v, why, sizeof why),
      0);
  ck_assert(isfinite(v));
  ae_net_destroy(net);
  free(g.nodes[id].name);
  g.nodes[id].name = NULL;
  ae_gb_free(&g);
}
END_TEST

/* x (3) -> linear W1 (4x3, bias b1) -> BN -> relu -> linear W2 (2x4, bias
 * b2).  Without BN, with |params|, on x = 1 (relu passes positives):
 * h = |W1| 1 + |b1|; R = 1^T |W2| h + sum |b2|; dR/dW2[c][j] = h_j,
 * dR/dW1[j][i] = (1^T |W2|)_j; synflow = sum |W2| h + sum_ji |W1_ji|
 * (1^T|W2|)_j. */
START_TEST(synflow_closed_form) {
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 3, 0, 0);
  int l1 = ae_gb_linear(&g, x, 4, 1, 1.0);
  int bn = ae_gb_bn(&g, l1);
  int r = ae_gb_act(&g, bn, AE_ACT_RELU, 0.0);
  int l2 = ae_gb_linear(&g, r, 2, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, l2), 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, 2, &net), 0);
  ae_net_init_weights_scheme(net, 8, 0, AE_INIT_TORCH_DEFAULT);
  const float gamma[4] = {-3, 5, 0.5f, 2}; /* ignored: BN is removed */
  set_param(net, bn, AE_NET_GAMMA, gamma, 4);
  size_t c;
  const float *w1 = ae_net_param(net, l1, AE_NET_WEIGHT, &c);
  const float *b1 = ae_net_param(net, l1, AE_NET_BIAS, &c);
  const float *w2 = ae_net_param(net, l2, AE_NET_WEIGHT, &c);
  double h[4], col[4] = {0, 0, 0, 0}, want = 0.0;
  for (int j = 0; j < 4; j++) {
    h[j] = fabs(b1[j]);
    for (int i = 0; i < 3; i++)
      h[j] += fabs(w1[j * 3 + i]);
    for (int k = 0; k < 2; k++)
      col[j] += fabs(w2[k * 4 + j]);
  }
  for (int k = 0; k < 2; k++)
    for (int j = 0; j < 4; j++)
      want += fabs(w2[k * 4 + j]) * h[j];
  for (int j = 0; j < 4; j++)
    for (int i = 0; i < 3; i++)
      want += fabs(w1[j * 3 + i]) * col[j];
  double v;
  ck_assert_int_eq(ae_synflow(net, &v), 0);
  ck_assert_double_eq_tol(v, want, 1e-12 * want);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

/* Softmax regression, logits = W x: dCE/dW = (1/B) sum_b (p_b - e_y) x_b^T;
 * grad_norm = |dW|_F, snip = sum |W o dW|; both paths. */
START_TEST(grad_norm_snip_closed_form) {
  enum { B = 5, D = 4, C = 3 };
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, D, 0, 0);
  int l = ae_gb_linear(&g, x, C, 0, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, l), 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, B, &net), 0);
  ae_net_init_weights(net, 4, 0);
  size_t c;
  const float *w = ae_net_param(net, l, AE_NET_WEIGHT, &c);
  float xs[B * D];
  fill_normal(xs, B * D, 503);
  int y[B] = {0, 2, 1, 1, 0};
  double dw[C * D] = {0};
  for (int b = 0; b < B; b++) {
    double z[C], mx = -1e300, s = 0.0;
    for (int k = 0; k < C; k++) {
      z[k] = 0.0;
      for (int i = 0; i < D; i++)
        z[k] += (double)w[k * D + i] * xs[b * D + i];
      if (z[k] > mx) mx = z[k];
    }
    for (int k = 0; k < C; k++)
      s += exp(z[k] - mx);
    for (int k = 0; k < C; k++) {
      double pk = exp(z[k] - mx) / s - (k == y[b]);
      for (int i = 0; i < D; i++)
        dw[k * D + i] += pk * xs[b * D + i] / B;
    }
  }
  double norm = 0.0, snip = 0.0;
  for (int e = 0; e < C * D; e++) {
    norm += dw[e] * dw[e];
    snip += fabs(w[e] * dw[e]);
  }
  norm = sqrt(norm);
  for (int dbl = 0; dbl < 2; dbl++) {
    ck_assert_int_eq(ae_net_set_double(net, dbl), 0);
    ae_weight_grads wg;
    ck_assert_int_eq(ae_ce_weight_grads(net, xs, y, B, &wg), 0);
    ck_assert_int_eq(wg.n_layers, 1);
    double tol = dbl ? 1e-12 : 1e-5;
    ck_assert_double_eq_tol(ae_grad_norm(&wg), norm, tol * norm);
    ck_assert_double_eq_tol(ae_snip(&wg), snip, tol * snip);
    /* The same gradients twice: zero deviation everywhere, zico 0. */
    ck_assert_double_eq(ae_zico(&wg, &wg), 0.0);
    ae_weight_grads_free(&wg);
  }
  int bad[B] = {0, 3, 1, 1, 0};
  ae_weight_grads wg;
  ck_assert_int_eq(ae_ce_weight_grads(net, xs, bad, B, &wg), AE_EINVAL);
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

/* Layer 1: g1 = (1, 3, 2), g2 = (3, 1, 2): deviations (1, 1, 0), mean
 * |g| 2: s = 4.  Layer 2: g1 = (-2, 0), g2 = (2, 0): deviations (2, 0),
 * mean |g| (2, 0): s = 1, log 1 = 0.  zico = log 4. */
START_TEST(zico_closed_form) {
  double a1[3] = {1, 3, 2}, a2[3] = {3, 1, 2}, b1[2] = {-2, 0}, b2[2] = {2, 0};
  double w[3] = {1, 1, 1};
  int node[2] = {1, 2};
  size_t count[2] = {3, 2};
  double *w12[2] = {w, w}, *g1[2] = {a1, b1}, *g2[2] = {a2, b2};
  ae_weight_grads x = {2, node, count, w12, g1};
  ae_weight_grads y = {2, node, count, w12, g2};
  ck_assert_double_eq_tol(ae_zico(&x, &y), log(4.0), 1e-15);
  ae_weight_grads one = {1, node, count, w12, g1};
  ck_assert(isnan(ae_zico(&x, &one)));
}
END_TEST

/* A linear net: J = d(sum logits)/dx = 1^T W for every sample, so the
 * correlation is all ones, eigenvalues (B, 0, ..., 0). */
START_TEST(jacob_cov_closed_form) {
  enum { B = 6, D = 5 };
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, D, 0, 0);
  int l1 = ae_gb_linear(&g, x, 4, 0, 1.0);
  int l2 = ae_gb_linear(&g, l1, 3, 0, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, l2), 0);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(&g, B, &net), 0);
  ae_net_init_weights(net, 6, 0);
  float xs[B * D];
  fill_normal(xs, B * D, 504);
  double v, k = 1e-5;
  char why[AE_GRAD_WHY] = "";
  ck_assert_int_eq(ae_jacob_cov(net, xs, B, &v, why, sizeof why, NULL), 0);
  double want = -(log(B + k) + 1.0 / (B + k)) - (B - 1) * (log(k) + 1.0 / k);
  ck_assert_double_eq_tol(v, want, 1e-6 * fabs(want));
  /* Zero weights: constant rows, null with a reason. */
  size_t c;
  float *w = ae_net_param(net, l2, AE_NET_WEIGHT, &c);
  memset(w, 0, c * sizeof *w);
  ck_assert_int_eq(ae_jacob_cov(net, xs, B, &v, why, sizeof why, NULL), 0);
  ck_assert(isnan(v));
  ck_assert_ptr_nonnull(strstr(why, "constant"));
  ae_net_destroy(net);
  ae_gb_free(&g);
}
END_TEST

/* zico's second batch: synthetic = the next draws of the stream; a
 * dataset = the next picks without replacement (disjoint from the first,
 * the first unchanged); inline data has none. */
START_TEST(second_batch) {
  enum { N = 4, DIM = 3 };
  ae_request req;
  memset(&req, 0, sizeof req);
  req.seed = 21;
  req.data.batch_size = N;
  req.data.input_rank = 1;
  req.data.input_shape[0] = DIM;
  req.data.num_classes = 5;
  ae_batch a, b;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_batch_draw(&req, NULL, &a, &err), 0);
  ck_assert_int_eq(ae_batch_draw_next(&req, NULL, &a, &b, &err), 0);
  for (int i = 0; i < N * DIM; i++)
    ck_assert_float_eq(b.x[i],
                       (float)ae_philox_normal(21, AE_TID_SYNTHETIC_INPUTS, 0,
                                               (uint64_t)(N * DIM + i)));
  int y1[N], y2[N];
  ae_batch_class_labels(&req, &a, 0, y1);
  ae_batch_class_labels(&req, &b, N, y2);
  for (int i = 0; i < N; i++) {
    ck_assert(y1[i] >= 0 && y1[i] < 5 && y2[i] >= 0 && y2[i] < 5);
    ck_assert_int_eq(y2[i], (int)(ae_philox_uniform(21, AE_TID_RANDOM_LABELS, 2,
                                                    (uint64_t)(N + i)) *
                                  5));
  }
  ae_batch_free(&a);
  ae_batch_free(&b);

  /* A dataset of 10 samples whose values are their index. */
  enum { S = 10 };
  float xs[S * DIM];
  uint8_t ys[S];
  for (int s = 0; s < S; s++) {
    ys[s] = (uint8_t)(s % 5);
    for (int d = 0; d < DIM; d++)
      xs[s * DIM + d] = (float)s;
  }
  ae_dataset ds;
  memset(&ds, 0, sizeof ds);
  ds.name = "ten";
  ds.rank = 1;
  ds.shape[0] = DIM;
  ds.num_classes = 5;
  ds.size = S;
  ds.x = xs;
  ds.y = ys;
  ck_assert_int_eq(ae_batch_draw(&req, &ds, &a, &err), 0);
  ae_batch first;
  ck_assert_int_eq(ae_batch_draw(&req, &ds, &first, &err), 0);
  ck_assert_int_eq(ae_batch_draw_next(&req, &ds, &a, &b, &err), 0);
  ck_assert_mem_eq(a.x, first.x, sizeof(float) * N * DIM);
  int seen[S] = {0};
  for (int i = 0; i < N; i++) {
    seen[(int)a.x[i * DIM]]++;
    seen[(int)b.x[i * DIM]]++;
    ck_assert_int_eq(b.labels[i], (int)b.x[i * DIM] % 5);
  }
  for (int s = 0; s < S; s++)
    ck_assert_int_le(seen[s], 1);
  ae_batch_class_labels(&req, &b, N, y2);
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(y2[i], b.labels[i]);
  ae_batch_free(&b);
  /* Too few samples for two batches. */
  req.data.batch_size = 6;
  ae_batch_free(&a);
  ck_assert_int_eq(ae_batch_draw(&req, &ds, &a, &err), 0);
  ck_assert_int_eq(ae_batch_draw_next(&req, &ds, &a, &b, &err), AE_ENOTFOUND);
  ck_assert_ptr_nonnull(err.reason);
  ae_error_clear(&err);
  ae_batch_free(&b);
  ae_batch_free(&a);
  ae_batch_free(&first);
  /* Inline data: exactly its samples, no second batch. */
  req.data.batch_size = N;
  req.data.inputs = xs;
  ck_assert_int_eq(ae_batch_draw(&req, NULL, &a, &err), 0);
  ck_assert_int_eq(ae_batch_draw_next(&req, NULL, &a, &b, &err), AE_ENOTFOUND);
  ck_assert_ptr_nonnull(strstr(err.reason, "inline"));
  ae_error_clear(&err);
  ae_batch_free(&b);
  ae_batch_free(&a);
}
END_TEST

/* ---- the PyTorch check ---- */

static const char *op_name(ae_op op) {
  static const char *names[] = {
      "input",    "linear",          "conv", "batch_norm", "act",
      "avg_pool", "global_avg_pool", "add",  "identity",   "zero",
      "flatten"};
  return names[op];
}

static void write_bin(const char *dir, const char *name, const void *data,
                      size_t bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, bytes, f), bytes);
  ck_assert_int_eq(fclose(f), 0);
}

/* graph.json (with the blocks) and weights.bin of net. */
static void dump_net(const char *dir, ae_net *net, const int *blocks,
                     int n_blocks, int batch) {
  const ae_graph *g = ae_net_graph(net);
  char path[4096];
  snprintf(path, sizeof path, "%s/weights.bin", dir);
  FILE *wf = fopen(path, "wb");
  ck_assert_ptr_nonnull(wf);
  json_t *nodes = json_array();
  for (int k = 0; k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    json_t *ins = json_array(), *shape = json_array();
    for (int i = 0; i < nd->n_inputs; i++)
      json_array_append_new(ins, json_integer(nd->inputs[i]));
    for (int i = 0; i < (nd->rank == 3 ? 3 : 1); i++)
      json_array_append_new(shape, json_integer(nd->shape[i]));
    json_array_append_new(
        nodes,
        json_pack("{s:s, s:o, s:o, s:i, s:i, s:i, s:i, s:i, s:b, s:s, s:f, "
                  "s:f}",
                  "op", op_name(nd->op), "inputs", ins, "shape", shape, "out",
                  nd->out, "kernel", nd->kernel, "stride", nd->stride,
                  "padding", nd->padding, "count_include_pad",
                  nd->count_include_pad, "bias", nd->bias, "act",
                  nd->op == AE_OP_ACT ? ae_act_name(nd->act.fn) : "", "slope",
                  nd->act.slope, "init_gain", nd->init_gain));
    static const ae_net_param_kind kinds[] = {AE_NET_WEIGHT, AE_NET_BIAS,
                                              AE_NET_GAMMA, AE_NET_BETA};
    for (int q = 0; q < 4; q++) {
      size_t count;
      float *t = ae_net_param(net, k, kinds[q], &count);
      if (t) ck_assert_uint_eq(fwrite(t, sizeof(float), count, wf), count);
    }
  }
  ck_assert_int_eq(fclose(wf), 0);
  json_t *bl = json_array();
  for (int i = 0; i < n_blocks; i++)
    json_array_append_new(bl, json_integer(blocks[i]));
  json_t *root = json_pack("{s:o, s:i, s:i, s:o, s:s, s:i}", "nodes", nodes,
                           "output", g->output, "batch", batch, "blocks", bl,
                           "type", "graph", "classes", g->num_classes);
  snprintf(path, sizeof path, "%s/graph.json", dir);
  ck_assert_int_eq(json_dump_file(root, path, JSON_COMPACT), 0);
  json_decref(root);
}

/* A small conv net: stem conv-BN-relu [block], a residual cell with a
 * leaky relu and BN [block], a stride-2 reduction with an avg-pool + 1x1
 * skip [block], a gelu cell [block], global pool, linear with bias. */
static void build_torch_net(ae_graph *g, int *blocks) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 3, 8, 8);
  int c = ae_gb_conv(g, x, 4, 3, 1, 1, 2.0);
  int b = ae_gb_bn(g, c);
  int r0 = ae_gb_act(g, b, AE_ACT_RELU, 0.0);
  int c1 = ae_gb_conv(g, r0, 4, 3, 1, 1, 2.0);
  int b1 = ae_gb_bn(g, c1);
  int l1 = ae_gb_act(g, b1, AE_ACT_LEAKY_RELU, 0.2);
  int in1[2] = {r0, l1};
  int a1 = ae_gb_add(g, in1, 2);
  int c2 = ae_gb_conv(g, a1, 6, 3, 2, 1, 2.0);
  int b2 = ae_gb_bn(g, c2);
  int p2 = ae_gb_avg_pool(g, a1, 2, 2, 0, 1);
  int s2 = ae_gb_conv(g, p2, 6, 1, 1, 0, 1.0);
  int in2[2] = {b2, s2};
  int a2 = ae_gb_add(g, in2, 2);
  int c3 = ae_gb_conv(g, a2, 6, 3, 1, 1, 1.0);
  int b3 = ae_gb_bn(g, c3);
  int g3 = ae_gb_act(g, b3, AE_ACT_GELU, 0.0);
  int in3[2] = {a2, g3};
  int a3 = ae_gb_add(g, in3, 2);
  int gp = ae_gb_gap(g, a3);
  int out = ae_gb_linear(g, gp, 5, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
  blocks[0] = r0;
  blocks[1] = a1;
  blocks[2] = a2;
  blocks[3] = a3;
}

static size_t elems_of(const ae_node *nd) {
  return nd->rank == 3 ? (size_t)nd->shape[0] * (size_t)nd->shape[1] *
                             (size_t)nd->shape[2]
                       : (size_t)nd->shape[0];
}

static double num(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  ck_assert_ptr_nonnull(v);
  return json_number_value(v);
}

/* Computes the six metrics on g with the float64 twin (weights of
 * scheme), dumps g with its inputs and the engine's values, and holds
 * them to tests/ref/torch_ranking.py. */
static void torch_check(ae_graph *g, const int *blocks, int n_blocks,
                        ae_init_scheme scheme) {
  enum { B = 8, DIM = 3 * 8 * 8 };
  ck_assert_uint_eq(elems_of(&g->nodes[0]), DIM);
  ae_net *net;
  ck_assert_int_eq(ae_net_create(g, B, &net), 0);
  ae_net_init_weights_scheme(net, 13, 0, scheme);
  static float x[B * DIM], x2[B * DIM], gauss[B * DIM];
  fill_normal(x, B * DIM, 601);
  fill_normal(x2, B * DIM, 602);
  for (size_t i = 0; i < B * DIM; i++)
    gauss[i] = (float)ae_philox_normal(13, AE_TID_GAUSS_INPUTS, 0, i);
  int y[B], y2[B];
  for (int i = 0; i < B; i++) {
    y[i] = (i * 3) % g->num_classes;
    y2[i] = (i * 7 + 1) % g->num_classes;
  }
  ck_assert_int_eq(ae_net_set_double(net, 1), 0);
  double jt, sf, jc, gn, sn, zc;
  char why[AE_GRAD_WHY] = "";
  ck_assert_int_eq(ae_jacobian_trainability(net, gauss, B, blocks, n_blocks, 13,
                                            g, &jt, why, sizeof why),
                   0);
  ck_assert_msg(isfinite(jt), "%s", why);
  ck_assert_int_eq(ae_synflow(net, &sf), 0);
  ck_assert_int_eq(ae_jacob_cov(net, x, B, &jc, why, sizeof why, NULL), 0);
  ae_weight_grads w1, w2;
  ck_assert_int_eq(ae_ce_weight_grads(net, x, y, B, &w1), 0);
  ck_assert_int_eq(ae_ce_weight_grads(net, x2, y2, B, &w2), 0);
  gn = ae_grad_norm(&w1);
  sn = ae_snip(&w1);
  zc = ae_zico(&w1, &w2);
  ae_weight_grads_free(&w1);
  ae_weight_grads_free(&w2);
  /* The float32 path against its twin: relative spreads measured here
   * (AE_TEST_VERBOSE prints them) were at most 7e-8 for trainability,
   * jacob_cov, grad_norm and snip, 2e-5 for zico (it weighs
   * 1/deviation); the bars leave 100x room for other BLAS builds. */
  ck_assert_int_eq(ae_net_set_double(net, 0), 0);
  double jt32, jc32;
  ck_assert_int_eq(ae_jacobian_trainability(net, gauss, B, blocks, n_blocks, 13,
                                            g, &jt32, why, sizeof why),
                   0);
  ck_assert_int_eq(ae_jacob_cov(net, x, B, &jc32, why, sizeof why, NULL), 0);
  ck_assert_int_eq(ae_ce_weight_grads(net, x, y, B, &w1), 0);
  ck_assert_int_eq(ae_ce_weight_grads(net, x2, y2, B, &w2), 0);
  double f32[5] = {jt32, jc32, ae_grad_norm(&w1), ae_snip(&w1),
                   ae_zico(&w1, &w2)};
  double want[5] = {jt, jc, gn, sn, zc};
  double bar[5] = {1e-5, 1e-5, 1e-5, 1e-5, 1e-3};
  ae_weight_grads_free(&w1);
  ae_weight_grads_free(&w2);
  for (int i = 0; i < 5; i++) {
    double rel = fabs(f32[i] - want[i]) / fabs(want[i]);
    if (getenv("AE_TEST_VERBOSE"))
      fprintf(stderr, "float32 vs twin, metric %d: %.3g relative\n", i, rel);
    ck_assert_double_lt(rel, bar[i]);
  }

  /* The dump, with the Rademacher tensors of philox.h's convention. */
  char dir[] = "/tmp/test_rank_gradients.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  dump_net(dir, net, blocks, n_blocks, B);
  write_bin(dir, "x.bin", x, sizeof x);
  write_bin(dir, "x2.bin", x2, sizeof x2);
  write_bin(dir, "gauss.bin", gauss, sizeof gauss);
  write_bin(dir, "y.bin", y, sizeof y);
  write_bin(dir, "y2.bin", y2, sizeof y2);
  size_t total = 0;
  for (int l = 1; l < n_blocks; l++) {
    const ae_node *nd = &ae_net_graph(net)->nodes[blocks[l]];
    total += (size_t)B * nd->shape[0] * nd->shape[1] * nd->shape[2];
  }
  float *rad = malloc(total * sizeof *rad);
  size_t at = 0;
  for (int l = 1; l < n_blocks; l++) {
    const ae_node *nd = &ae_net_graph(net)->nodes[blocks[l]];
    size_t n = (size_t)B * nd->shape[0] * nd->shape[1] * nd->shape[2];
    for (size_t i = 0; i < n; i++)
      rad[at++] = ae_philox_uniform(13, AE_TID_RADEMACHER, (uint32_t)l, i) < 0.5
                      ? -1.0f
                      : 1.0f;
  }
  write_bin(dir, "rademacher.bin", rad, total * sizeof *rad);
  free(rad);
  json_t *exp = json_pack(
      "{s:f, s:f, s:f, s:f, s:f, s:f}", "convergence.jacobian_trainability", jt,
      "proxies.synflow", sf, "proxies.jacob_cov", jc, "proxies.grad_norm", gn,
      "proxies.snip", sn, "proxies.zico", zc);
  char path[4096];
  snprintf(path, sizeof path, "%s/expected.json", dir);
  ck_assert_int_eq(json_dump_file(exp, path, JSON_COMPACT), 0);
  json_decref(exp);

  const char *src = getenv("AE_SRCDIR");
  char cmd[8192];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 %s/tests/ref/torch_ranking.py %s --rtol 1e-8 "
           "--threads 1 > %s/out.txt 2> %s/err.txt",
           src && src[0] ? src : AE_SRCDIR, dir, dir, dir);
  int st = system(cmd);
  ck_assert(WIFEXITED(st));
  int code = WEXITSTATUS(st);
  snprintf(path, sizeof path, "%s/out.txt", dir);
  FILE *f = fopen(path, "r");
  char line[65536] = "";
  if (f) {
    size_t got = fread(line, 1, sizeof line - 1, f);
    line[got] = 0;
    fclose(f);
  }
  if (getenv("AE_TEST_VERBOSE")) fprintf(stderr, "torch: %s\n", line);
  if (code == 77) {
    fprintf(stderr, "torch_reference: skipped (no torch): %s\n", line);
  } else {
    ck_assert_msg(code == 0, "torch_ranking.py exit %d: %s", code, line);
    /* The reference's own values agree, metric by metric. */
    json_error_t je;
    json_t *res = json_loads(line, JSON_DISABLE_EOF_CHECK, &je);
    ck_assert_ptr_nonnull(res);
    json_t *m = json_object_get(res, "metrics");
    ck_assert_double_eq_tol(num(m, "proxies.synflow"), sf, 1e-6 * fabs(sf));
    ck_assert_double_eq_tol(num(m, "proxies.zico"), zc, 1e-6 * fabs(zc));
    ck_assert_int_eq(json_array_size(json_object_get(res, "mismatch")), 0);
    json_decref(res);
  }
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
  ae_net_destroy(net);
}

START_TEST(torch_small_net) {
  ae_graph g;
  int blocks[4];
  build_torch_net(&g, blocks);
  torch_check(&g, blocks, 4, AE_INIT_TORCH_DEFAULT);
  ae_gb_free(&g);
}
END_TEST

/* An NB201 cell with every op (3x3 and 1x1 conv, skip, avg pool, none),
 * C = 4, one cell per stage, 8x8 inputs, lowered as a request's, its
 * block outputs as the lowering marks them. */
START_TEST(torch_nb201_cell) {
  json_t *j = json_pack("{s:s, s:s, s:i, s:i}", "type", "nb201", "cell",
                        "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|"
                        "nor_conv_1x1~0|none~1|skip_connect~2|",
                        "channels", 4, "cells_per_stage", 1);
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p = AE_PROBLEM_INIT;
  ae_arch a;
  ck_assert_int_eq(ae_arch_from_json(j, "/architecture", &lim, &a, &p), 0);
  json_decref(j);
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.input_shape[0] = 3;
  o.input_shape[1] = 8;
  o.input_shape[2] = 8;
  o.input_rank = 3;
  o.num_classes = 10;
  ae_graph g;
  ck_assert_int_eq(ae_arch_lower(&a, &o, &lim, "/architecture", &g, &p), 0);
  int *blocks, n_blocks;
  ck_assert_int_eq(ae_graph_block_outputs(&g, &blocks, &n_blocks), 0);
  ck_assert_int_eq(n_blocks, 6); /* stem, 3 cells, 2 reductions */
  torch_check(&g, blocks, n_blocks, AE_INIT_KAIMING_NORMAL);
  free(blocks);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

/* Scores an mlp_dag request on synthetic data with the proxies and
 * jacobian_trainability selected by hand; inline: the same on inline
 * data (no second batch). */
static void score_selected(int inline_data, ae_scorecard *sc) {
  const char *synthetic =
      "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\","
      "\"width\":16},\"data\":{\"batch_size\":8,\"input_shape\":[6]},"
      "\"seed\":5,\"metrics\":[\"topology\"]}";
  const char *inl =
      "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\","
      "\"width\":16},\"data\":{\"inputs\":[[1,2,0,-1],[3,5,0,-3],"
      "[0,1,1,1],[2,-1,0,1]],\"labels\":[0,1,1,0],\"num_classes\":2},"
      "\"seed\":5,\"metrics\":[\"topology\"]}";
  const char *text = inline_data ? inl : synthetic;
  ae_dataset_registry reg;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_dataset_registry_init(&reg, 0, &err), 0);
  ae_catalog cat = ae_dataset_registry_catalog(&reg);
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p = AE_PROBLEM_INIT;
  json_t *body = NULL;
  ae_request req;
  ck_assert_int_eq(ae_json_parse_body(text, strlen(text), &body, &p), 0);
  int rc = ae_request_parse(body, &cat, &lim, &req, &p);
  ck_assert_msg(rc == 0, "%s", p.detail ? p.detail : "?");
  json_decref(body);
  ae_problem_clear(&p);
  memset(&req.selected, 0, sizeof req.selected);
  static const ae_metric_id ids[] = {AE_M_SYNFLOW, AE_M_GRAD_NORM,
                                     AE_M_SNIP,    AE_M_JACOB_COV,
                                     AE_M_ZICO,    AE_M_JACOBIAN_TRAINABILITY};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
    ae_metric_set_add(&req.selected, ids[i]);
  ae_engine_config cfg = {AE_BACKEND_HOST, 0, 0};
  ae_engine *e = NULL;
  ck_assert_int_eq(ae_engine_open(&cfg, &e, &err), 0);
  ck_assert_int_eq(ae_engine_score(e, &req, &reg, NULL, sc, &err), 0);
  ae_engine_close(e);
  ae_request_free(&req);
  ae_error_clear(&err);
  ae_dataset_registry_free(&reg);
}

static int has_warning(json_t *res, const char *prefix) {
  json_t *w = json_object_get(res, "warnings");
  for (size_t i = 0; i < json_array_size(w); i++)
    if (strncmp(json_string_value(json_array_get(w, i)), prefix,
                strlen(prefix)) == 0)
      return 1;
  return 0;
}

START_TEST(engine_proxies_group) {
  ae_scorecard a, b;
  score_selected(0, &a);
  score_selected(0, &b);
  ck_assert(a.groups & AE_GROUP_PROXIES);
  double *va[5] = {&a.proxies.synflow, &a.proxies.grad_norm, &a.proxies.snip,
                   &a.proxies.jacob_cov, &a.proxies.zico};
  double *vb[5] = {&b.proxies.synflow, &b.proxies.grad_norm, &b.proxies.snip,
                   &b.proxies.jacob_cov, &b.proxies.zico};
  for (int i = 0; i < 5; i++) {
    ck_assert_msg(isfinite(*va[i]), "proxy %d not finite", i);
    ck_assert_double_eq(*va[i], *vb[i]); /* same request, same numbers */
  }
  ck_assert_double_gt(a.proxies.synflow, 0.0);
  ck_assert_double_gt(a.proxies.grad_norm, 0.0);
  json_t *j = ae_scorecard_to_json(&a);
  json_t *px = json_object_get(j, "proxies");
  ck_assert_ptr_nonnull(px);
  ck_assert_double_eq(json_number_value(json_object_get(px, "synflow")),
                      a.proxies.synflow);
  ck_assert(isfinite(json_number_value(json_object_get(
      json_object_get(json_object_get(j, "provenance"), "timings_s"),
      "proxies"))));
  /* The lowering marks the mlp_dag's block outputs (its input and
   * output nodes): a number, the same twice. */
  ck_assert(isfinite(a.convergence.jacobian_trainability));
  ck_assert_double_eq(a.convergence.jacobian_trainability,
                      b.convergence.jacobian_trainability);
  ck_assert(!has_warning(j, "convergence.jacobian_trainability"));
  json_decref(j);
  ae_scorecard_free(&a);
  ae_scorecard_free(&b);

  /* Inline data has no second batch: zico null with a warning, the
   * others computed. */
  ae_scorecard c;
  score_selected(1, &c);
  ck_assert(isnan(c.proxies.zico));
  ck_assert(isfinite(c.proxies.synflow));
  ck_assert(isfinite(c.proxies.snip));
  j = ae_scorecard_to_json(&c);
  ck_assert(has_warning(j, "proxies.zico: inline data"));
  json_decref(j);
  ae_scorecard_free(&c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("rank_gradients");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, trainability_closed_form);
  tcase_add_test(tc, trainability_identity_block);
  tcase_add_test(tc, synflow_closed_form);
  tcase_add_test(tc, grad_norm_snip_closed_form);
  tcase_add_test(tc, zico_closed_form);
  tcase_add_test(tc, jacob_cov_closed_form);
  tcase_add_test(tc, second_batch);
  tcase_add_test(tc, torch_small_net);
  tcase_add_test(tc, torch_nb201_cell);
  tcase_add_test(tc, engine_proxies_group);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
