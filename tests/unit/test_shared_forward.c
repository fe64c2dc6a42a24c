/* test_shared_forward.c: what lets a job compute less without changing a
 * number (issue 11): the host net's versions (ae_net_versions), the
 * per-thread spare arena (gpu/host/net.c) and its growth in place, the
 * lane-parallel Rademacher
 * signs (ae_rademacher_fill), and, through the engine, that metrics which
 * share one forward and one weight draw in a job (ae_job_host_forward)
 * give the very values they give each alone.
 *
 * Runs under the engine's OpenBLAS core type (blas_env.h); one thread. */
#include "api/arch.h"
#include "api/error.h"
#include "api/metric_set.h"
#include "api/problem.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "gpu/host/blas_env.h"
#include "gpu/host/graph_build.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { BATCH = 16 };

/* conv, BN, relu, avg pool, 1x1 conv, add, global pool, linear. */
static void build_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 3, 8, 8);
  int c1 = ae_gb_conv(g, x, 4, 3, 1, 1, 2.0);
  int b1 = ae_gb_bn(g, c1);
  int r1 = ae_gb_act(g, b1, AE_ACT_RELU, 0.0);
  int p1 = ae_gb_avg_pool(g, r1, 3, 1, 1, 0);
  int c2 = ae_gb_conv(g, p1, 4, 1, 1, 0, 2.0);
  int ins[2] = {r1, c2};
  int a = ae_gb_add(g, ins, 2);
  int gp = ae_gb_gap(g, a);
  int out = ae_gb_linear(g, gp, 3, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
}

static float *random_inputs(uint32_t stream) {
  size_t count = (size_t)BATCH * 3 * 8 * 8;
  float *x = malloc(count * sizeof *x);
  ck_assert_ptr_nonnull(x);
  for (size_t e = 0; e < count; e++)
    x[e] = (float)ae_philox_normal(7, 0x00abc001u, stream, e);
  return x;
}

/* Every node's activation of n after a forward, copied. */
static float **copy_activations(ae_net *n, const ae_graph *g) {
  float **out = calloc((size_t)g->n_nodes, sizeof *out);
  ck_assert_ptr_nonnull(out);
  for (int k = 0; k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    size_t e = nd->rank == 3
                   ? (size_t)nd->shape[0] * nd->shape[1] * nd->shape[2]
                   : (size_t)nd->shape[0];
    out[k] = malloc((size_t)BATCH * e * sizeof(float));
    ck_assert_ptr_nonnull(out[k]);
    memcpy(out[k], ae_net_activation(n, k), (size_t)BATCH * e * sizeof(float));
  }
  return out;
}

static void free_activations(float **a, int n) {
  for (int k = 0; k < n; k++)
    free(a[k]);
  free(a);
}

/* A net made in a reused arena (holding another forward's values) gives
 * every activation bit for bit as a net made in fresh memory. */
START_TEST(spare_arena_reuse_is_bit_identical) {
  ae_graph g;
  build_graph(&g);
  float *x1 = random_inputs(1), *x2 = random_inputs(2);
  ae_net_release_spare();
  ae_net *a = NULL;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &a), 0);
  ae_net_init_weights(a, 3, 0);
  ck_assert_int_eq(ae_net_forward(a, x1, BATCH, NULL), 0);
  float **fresh = copy_activations(a, &g);
  ae_net_destroy(a);
  ae_net_release_spare();
  /* c leaves x2's forward in the arena it gives back. */
  ae_net *c = NULL;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &c), 0);
  ae_net_init_weights(c, 3, 1);
  ck_assert_int_eq(ae_net_forward(c, x2, BATCH, NULL), 0);
  uintptr_t c_input = (uintptr_t)ae_net_activation(c, 0);
  ae_net_destroy(c);
  ae_net *d = NULL;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &d), 0);
  /* The spare was taken (else this test shows nothing). */
  ck_assert(c_input == (uintptr_t)ae_net_activation(d, 0));
  ae_net_init_weights(d, 3, 0);
  ck_assert_int_eq(ae_net_forward(d, x1, BATCH, NULL), 0);
  float **reused = copy_activations(d, &g);
  for (int k = 0; k < g.n_nodes; k++) {
    const ae_node *nd = &g.nodes[k];
    size_t e = nd->rank == 3
                   ? (size_t)nd->shape[0] * nd->shape[1] * nd->shape[2]
                   : (size_t)nd->shape[0];
    ck_assert_msg(memcmp(fresh[k], reused[k], (size_t)BATCH * e * 4) == 0,
                  "node %d differs in a reused arena", k);
  }
  /* A net far smaller (1/BATCH of the activations, and the graph's
   * parameters) does not take the large spare.  */
  ae_net *small = NULL;
  ck_assert_int_eq(ae_net_create(&g, 1, &small), 0);
  ae_net_destroy(d);
  ae_net *e2 = NULL;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &e2), 0);
  ck_assert(c_input == (uintptr_t)ae_net_activation(e2, 0));
  ae_net_destroy(e2);
  ae_net_destroy(small);
  ae_net_release_spare();
  free_activations(fresh, g.n_nodes);
  free_activations(reused, g.n_nodes);
  free(x1);
  free(x2);
  ae_graph_free(&g);
}
END_TEST

/* The graph above at 32x32 with 16 channels: arenas of megabytes. */
static void build_big_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 3, 32, 32);
  int c1 = ae_gb_conv(g, x, 16, 3, 1, 1, 2.0);
  int b1 = ae_gb_bn(g, c1);
  int r1 = ae_gb_act(g, b1, AE_ACT_RELU, 0.0);
  int p1 = ae_gb_avg_pool(g, r1, 3, 1, 1, 0);
  int c2 = ae_gb_conv(g, p1, 16, 1, 1, 0, 2.0);
  int ins[2] = {r1, c2};
  int a = ae_gb_add(g, ins, 2);
  int gp = ae_gb_gap(g, a);
  int out = ae_gb_linear(g, gp, 3, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(g, out), 0);
}

static long minor_faults(void) {
  struct rusage ru;
  ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
  return ru.ru_minflt;
}

/* Creates a net of g for batch samples, draws its weights and runs the
 * forward of x; *faults: the page faults that took. */
static ae_net *net_forward(const ae_graph *g, int batch, const float *x,
                           long *faults) {
  ae_net *n = NULL;
  long f0 = minor_faults();
  ck_assert_int_eq(ae_net_create(g, batch, &n), 0);
  ae_net_init_weights(n, 5, 0);
  ck_assert_int_eq(ae_net_forward(n, x, batch, NULL), 0);
  *faults = minor_faults() - f0;
  return n;
}

/* The NTK's backward family comes from the thread's third spare, which
 * holds whatever the last net's NTK left there: the NTK of c, made right
 * after b gave its arena back, gives theta bit for bit as in fresh
 * memory.  (That c took b's arena follows from ae_net_arena_take's rule,
 * which spare_arena_reuse_is_bit_identical shows for the forward's; no
 * accessor shows the backward's address.) */
START_TEST(spare_backward_arena_reuse_is_bit_identical) {
  ae_graph g;
  build_graph(&g);
  float *x1 = random_inputs(1), *x2 = random_inputs(2);
  double fresh[BATCH * BATCH], reused[BATCH * BATCH];
  ae_net_release_spare();
  ae_net *a = NULL;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &a), 0);
  ae_net_init_weights(a, 3, 0);
  ck_assert_int_eq(ae_net_ntk(a, x1, BATCH, AE_NTK_STANDARD, fresh, NULL), 0);
  ae_net_destroy(a);
  ae_net_release_spare();
  /* b leaves other weights' and inputs' gradients in what it gives back. */
  ae_net *b = NULL;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &b), 0);
  ae_net_init_weights(b, 5, 1);
  ck_assert_int_eq(ae_net_ntk(b, x2, BATCH, AE_NTK_STANDARD, reused, NULL), 0);
  ck_assert(memcmp(fresh, reused, sizeof fresh) != 0);
  ae_net_destroy(b);
  ae_net *c = NULL;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &c), 0);
  ae_net_init_weights(c, 3, 0);
  ck_assert_int_eq(ae_net_ntk(c, x1, BATCH, AE_NTK_STANDARD, reused, NULL), 0);
  ck_assert(memcmp(fresh, reused, sizeof fresh) == 0);
  ae_net_destroy(c);
  ae_net_release_spare();
  free(x1);
  free(x2);
  ae_graph_free(&g);
}
END_TEST

/* A net larger than the spare grows the spare in place: the pages the
 * smaller net faulted in come along (only the new tail faults), and every
 * activation is bit for bit a fresh arena's, though the grown arena holds
 * another forward's values. */
START_TEST(spare_arena_grows_in_place) {
  /* Arenas of about 41 and 52 MiB: above net.c's 32 MiB, from which on
   * they grow in place. */
  enum { SMALL = 96, LARGE = 120 };
  ae_graph g;
  build_big_graph(&g);
  size_t in = (size_t)3 * 32 * 32, count = (size_t)LARGE * in;
  float *x = malloc(count * sizeof *x), *y = malloc(count * sizeof *y);
  ck_assert_ptr_nonnull(x);
  ck_assert_ptr_nonnull(y);
  for (size_t e = 0; e < count; e++) {
    x[e] = (float)ae_philox_normal(7, 0x00abc002u, 0, e);
    y[e] = (float)ae_philox_normal(7, 0x00abc002u, 1, e);
  }
  /* Fresh: no spare. */
  ae_net_release_spare();
  long fresh_faults, small_faults, grown_faults;
  ae_net *a = net_forward(&g, LARGE, x, &fresh_faults);
  size_t *bytes = calloc((size_t)g.n_nodes, sizeof *bytes);
  float **fresh = calloc((size_t)g.n_nodes, sizeof *fresh);
  ck_assert_ptr_nonnull(bytes);
  ck_assert_ptr_nonnull(fresh);
  for (int k = 0; k < g.n_nodes; k++) {
    const ae_node *nd = &g.nodes[k];
    size_t e = nd->rank == 3
                   ? (size_t)nd->shape[0] * nd->shape[1] * nd->shape[2]
                   : (size_t)nd->shape[0];
    bytes[k] = (size_t)LARGE * e * sizeof(float);
    fresh[k] = malloc(bytes[k]);
    ck_assert_ptr_nonnull(fresh[k]);
    memcpy(fresh[k], ae_net_activation(a, k), bytes[k]);
  }
  ae_net_destroy(a);
  ae_net_release_spare();
  /* The smaller net leaves y's forward in its arena, the spare... */
  ae_net *b = net_forward(&g, SMALL, y, &small_faults);
  ae_net_destroy(b);
  /* ...which the larger net grows. */
  ae_net *c = net_forward(&g, LARGE, x, &grown_faults);
  for (int k = 0; k < g.n_nodes; k++)
    ck_assert_msg(memcmp(fresh[k], ae_net_activation(c, k), bytes[k]) == 0,
                  "node %d differs in a grown arena", k);
  ae_net_destroy(c);
  ae_net_release_spare();
  /* A fresh arena faults in about LARGE / (LARGE - SMALL) = 5 times the
   * grown tail's pages (transparent huge pages, where the system maps
   * them unasked, fault too few pages to tell). */
#ifdef __linux__ /* mremap */
  if (fresh_faults > 1000)
    ck_assert_msg(2 * grown_faults < fresh_faults,
                  "%ld page faults in a grown arena, %ld in a fresh one "
                  "(%ld for the smaller net)",
                  grown_faults, fresh_faults, small_faults);
#endif
  for (int k = 0; k < g.n_nodes; k++)
    free(fresh[k]);
  free(fresh);
  free(bytes);
  free(x);
  free(y);
  ae_graph_free(&g);
}
END_TEST

/* The versions move exactly when weights or buffers may have changed. */
START_TEST(net_versions) {
  ae_graph g;
  build_graph(&g);
  float *x = random_inputs(1);
  ae_net *n = NULL;
  ck_assert_int_eq(ae_net_create(&g, BATCH, &n), 0);
  unsigned long w0, a0, w1, a1;
  ae_net_versions(n, &w0, &a0);
  ae_net_init_weights(n, 1, 0);
  ae_net_versions(n, &w1, &a1);
  ck_assert(w1 != w0 && a1 != a0);
  ck_assert_int_eq(ae_net_forward(n, x, BATCH, NULL), 0);
  ae_net_versions(n, &w0, &a0);
  ck_assert(w0 == w1 && a0 != a1);
  /* Reading results changes nothing. */
  (void)ae_net_activation(n, 1);
  double logits[BATCH * 3];
  ck_assert_int_eq(ae_net_activation64(n, g.output, BATCH, logits), 0);
  ck_assert_int_eq(ae_net_set_double(n, 0), 0); /* already off */
  ae_net_versions(n, &w1, &a1);
  ck_assert(w1 == w0 && a1 == a0);
  /* A writable parameter pointer, or precision switched: both move. */
  size_t count;
  (void)ae_net_param(n, 1, AE_NET_WEIGHT, &count);
  ae_net_versions(n, &w0, &a0);
  ck_assert(w0 != w1 && a0 != a1);
  ck_assert_int_eq(ae_net_set_double(n, 1), 0);
  ae_net_versions(n, &w1, &a1);
  ck_assert(w1 != w0 && a1 != a0);
  ae_net_destroy(n);
  ae_net_release_spare();
  free(x);
  ae_graph_free(&g);
}
END_TEST

/* ae_rademacher_fill is ae_philox_uniform's rule element for element,
 * lanes and tail. */
START_TEST(rademacher_bit_for_bit) {
  size_t count = 64 * 5 + 37;
  double *v = malloc(count * sizeof *v);
  ck_assert_ptr_nonnull(v);
  ae_rademacher_fill(11, AE_TID_RADEMACHER, 3, count, v);
  size_t plus = 0;
  for (size_t e = 0; e < count; e++) {
    double want =
        ae_philox_uniform(11, AE_TID_RADEMACHER, 3, e) < 0.5 ? -1.0 : 1.0;
    ck_assert_msg(v[e] == want, "element %zu", e);
    plus += v[e] > 0;
  }
  ck_assert(plus > count / 4 && plus < 3 * count / 4);
  free(v);
}
END_TEST

/* The kept signs (net_signs.c) are ae_rademacher_fill's, whether drawn
 * or expanded from the thread's bits: first and second calls, counts
 * within and across 64-bit words, the same stream at two counts, a new
 * seed, more tensors than the cache keeps (eviction), and after a
 * release. */
START_TEST(rademacher_kept_bit_for_bit) {
  static const size_t counts[] = {1, 63, 64, 65, 64 * 7 + 5, 4096};
  size_t most = 4096;
  double *got = malloc(most * sizeof *got), *want = malloc(most * sizeof *want);
  float *got_f = malloc(most * sizeof *got_f);
  ck_assert(got && want && got_f);
  /* 20 tensors (kept, then expanded), 70 (more than the cache keeps: the
   * oldest are dropped and drawn again), each seed twice. */
  static const uint64_t seeds[] = {11, 11, 12, 12};
  static const uint32_t streams[] = {20, 20, 70, 70};
  for (size_t s = 0; s < 4; s++)
    for (int pass = 0; pass < 2; pass++)
      for (uint32_t stream = 0; stream < streams[s]; stream++) {
        size_t count = counts[(stream + s) % 6];
        /* Odd streams through the float32 variant first: its draws and
         * its expansions are the same signs. */
        if (stream % 2) {
          ck_assert_int_eq(ae_rademacher_fill_kept_f32(seeds[s],
                                                       AE_TID_RADEMACHER,
                                                       stream, count, got_f),
                           AE_OK);
          for (size_t e = 0; e < count; e++)
            got[e] = (double)got_f[e];
        } else {
          ae_rademacher_fill_kept(seeds[s], AE_TID_RADEMACHER, stream, count,
                                  got);
        }
        ae_rademacher_fill(seeds[s], AE_TID_RADEMACHER, stream, count, want);
        ck_assert_msg(memcmp(got, want, count * sizeof *got) == 0,
                      "seed %llu stream %u count %zu pass %d",
                      (unsigned long long)seeds[s], stream, count, pass);
      }
  ae_rademacher_release();
  ae_rademacher_fill_kept(11, AE_TID_RADEMACHER, 3, 100, got);
  ae_rademacher_fill(11, AE_TID_RADEMACHER, 3, 100, want);
  ck_assert(memcmp(got, want, 100 * sizeof *got) == 0);
  ae_rademacher_release();
  free(got_f);
  free(got);
  free(want);
}
END_TEST

/* Scores a small nb201 network with the given metrics selected. */
static void score(const ae_metric_id *ids, size_t n_ids, ae_scorecard *sc) {
  const char *text =
      "{\"architecture\":{\"type\":\"nb201\",\"cell\":\"|nor_conv_3x3~0|+|"
      "skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|skip_connect~1|"
      "nor_conv_3x3~2|\",\"channels\":4,\"cells_per_stage\":1},"
      "\"data\":{\"batch_size\":8,\"input_shape\":[3,16,16],"
      "\"num_classes\":10},\"seed\":9,\"metrics\":[\"topology\"]}";
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
  for (size_t i = 0; i < n_ids; i++)
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

/* The rank profile's metrics together (one forward of the Gaussian
 * inputs, one weight draw, feature_corr_lambda_min and synflow between
 * them) give each alone's value, bit for bit. */
START_TEST(shared_forward_same_values) {
  static const ae_metric_id together[] = {AE_M_PATTERN_KERNEL_LOGDET,
                                          AE_M_FEATURE_ISOTROPY,
                                          AE_M_FEATURE_CORR_LAMBDA_MIN,
                                          AE_M_JACOBIAN_TRAINABILITY,
                                          AE_M_SYNFLOW,
                                          AE_M_GRAD_NORM};
  ae_scorecard all, one;
  score(together, sizeof together / sizeof together[0], &all);
  struct {
    ae_metric_id id;
    size_t offset;
  } checks[] = {{AE_M_PATTERN_KERNEL_LOGDET,
                 offsetof(ae_scorecard, expressivity.pattern_kernel_logdet)},
                {AE_M_FEATURE_ISOTROPY,
                 offsetof(ae_scorecard, expressivity.feature_isotropy)},
                {AE_M_FEATURE_CORR_LAMBDA_MIN,
                 offsetof(ae_scorecard, convergence.feature_corr_lambda_min)},
                {AE_M_JACOBIAN_TRAINABILITY,
                 offsetof(ae_scorecard, convergence.jacobian_trainability)},
                {AE_M_SYNFLOW, offsetof(ae_scorecard, proxies.synflow)},
                {AE_M_GRAD_NORM, offsetof(ae_scorecard, proxies.grad_norm)}};
  for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
    score(&checks[i].id, 1, &one);
    double a = *(const double *)((const char *)&all + checks[i].offset);
    double b = *(const double *)((const char *)&one + checks[i].offset);
    ck_assert_msg(isfinite(a) && a == b,
                  "metric %zu: %.17g together, %.17g "
                  "alone",
                  i, a, b);
    ae_scorecard_free(&one);
  }
  ae_scorecard_free(&all);
}
END_TEST

int main(int argc, char **argv) {
  (void)ae_blas_tune_and_reexec(argc, argv);
  Suite *s = suite_create("shared_forward");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, spare_arena_reuse_is_bit_identical);
  tcase_add_test(tc, spare_arena_grows_in_place);
  tcase_add_test(tc, spare_backward_arena_reuse_is_bit_identical);
  tcase_add_test(tc, net_versions);
  tcase_add_test(tc, rademacher_bit_for_bit);
  tcase_add_test(tc, rademacher_kept_bit_for_bit);
  tcase_add_test(tc, shared_forward_same_values);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
