/* test_engine_tie.c: the tie between the two halves of the engine
 * (scorecard.md §4): for mlp_dag at width 4096 and N = 16, the empirical
 * NNGP (last DAG node's features F, F F^T / width) and the empirical NTK in
 * NTK parameterisation agree with the exact infinite-width recursion
 * (ae_dag_kernels with a trained stem: NNGP = K(H), NTK = K(H) + T(H)).
 *
 * Agreement is measured as the relative Frobenius error
 * ||emp - analytic||_F / ||analytic||_F of the mean over 8 weight draws,
 * and must be under 5 % for both kernels, as scorecard.md §4 asks.  One
 * draw at width 4096 carries 4-8 % of finite-width noise on these
 * three-linear-edge DAGs (relu features have E[s^4]/E[s^2]^2 = 6, so each
 * layer adds sqrt(5/4096) = 3.5 %); the mean of 8 lands at 1.3-4 %
 * (measured: NNGP 1.8-4.0 %, NTK 1.3-2.1 %), so the 5 % bound holds with
 * margin yet still fails on a wrong gain, a missing trained stem (-20 % on
 * the NTK) or a wrong readout.  Under the sanitizer build (AE_SANITIZERS=1,
 * a memory check, 10x slower) one draw is taken and the bound is 20 %.
 * TIE_REPS and TIE_TOL override both.  The logits
 * sum over C classes, so the empirical NTK of sum_c f_c is C times the
 * one-output NTK (the readout rows are independent); it is divided by C.
 * Single-threaded. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/engine.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"

enum { N = 16, DIM = 64, WIDTH = 4096, CLASSES = 2 };

static double rel_frobenius(const double *a, const double *ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n * n; i++) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return sqrt(num / den);
}

/* The node whose features the readout sees: the readout's input, through
 * any identity or flatten. */
static int readout_input(const ae_graph *g) {
  int k = g->nodes[g->output].inputs[0];
  while (g->nodes[k].op == AE_OP_IDENTITY || g->nodes[k].op == AE_OP_FLATTEN)
    k = g->nodes[k].inputs[0];
  return k;
}

/* Draws averaged and the tolerances (see the top of the file). */
static int reps = 8;
static double tol_nngp = 0.05, tol_ntk = 0.05;

static void check_tie(const char *dag, const char *act) {
  char text[512];
  snprintf(text, sizeof text,
           "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"%s\",\"width\":"
           "%d,\"activation\":\"%s\"},\"data\":{\"batch_size\":%d,"
           "\"input_shape\":[%d],\"num_classes\":%d}}",
           dag, WIDTH, act, N, DIM, CLASSES);
  ae_problem p = AE_PROBLEM_INIT;
  json_t *body = NULL;
  ae_request req;
  ae_limits lim;
  ae_limits_default(&lim);
  ae_catalog cat = {NULL, 0};
  ck_assert_int_eq(ae_json_parse_body(text, strlen(text), &body, &p), 0);
  ck_assert_int_eq(ae_request_parse(body, &cat, &lim, &req, &p), 0);
  json_decref(body);
  ck_assert(req.net.scale_input_norm);

  /* Inputs: Philox normals, each scaled to norm sqrt(DIM); K0 = cosines. */
  static float x[N * DIM];
  double k0[N * N], norm[N];
  for (int i = 0; i < N * DIM; i++)
    x[i] = (float)ae_philox_normal(99, 7, 0, (uint64_t)i);
  for (int i = 0; i < N; i++) {
    double s = 0;
    for (int k = 0; k < DIM; k++)
      s += (double)x[i * DIM + k] * x[i * DIM + k];
    norm[i] = sqrt(s);
    for (int k = 0; k < DIM; k++)
      x[i * DIM + k] = (float)(x[i * DIM + k] * sqrt((double)DIM) / norm[i]);
  }
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < DIM; k++)
        s += (double)x[i * DIM + k] * x[j * DIM + k];
      k0[i * N + j] = s / DIM;
    }

  double kh[N * N], th[N * N], ntk_an[N * N];
  ck_assert_int_eq(ae_dag_kernels(&req.arch.dag, k0, N, 1, kh, th, NULL), 0);
  for (int i = 0; i < N * N; i++)
    ntk_an[i] = kh[i] + th[i];

  ae_net *net = NULL;
  ck_assert_int_eq(ae_net_create(&req.net, N, &net), 0);
  double nngp[N * N], ntk[N * N], tmp[N * N];
  memset(nngp, 0, sizeof nngp);
  memset(ntk, 0, sizeof ntk);
  for (int r = 0; r < reps; r++) {
    ae_net_init_weights(net, 12345, (uint32_t)r);
    ck_assert_int_eq(ae_net_forward(net, x, N, NULL), 0);
    const float *f = ae_net_activation(net, readout_input(&req.net));
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) {
        double s = 0;
        for (int k = 0; k < WIDTH; k++)
          s += (double)f[(size_t)i * WIDTH + k] * f[(size_t)j * WIDTH + k];
        nngp[i * N + j] += s / WIDTH / reps;
      }
    ck_assert_int_eq(ae_net_ntk(net, x, N, AE_NTK_NTK, tmp, NULL), 0);
    for (int i = 0; i < N * N; i++)
      ntk[i] += tmp[i] / CLASSES / reps;
  }
  double e_nngp = rel_frobenius(nngp, kh, N);
  double e_ntk = rel_frobenius(ntk, ntk_an, N);
  printf("tie %s %-4s, %d draw(s): NNGP rel. Frobenius %.4f, NTK %.4f "
         "(analytic K00 %.4f, NTK00 %.4f)\n",
         dag, act, reps, e_nngp, e_ntk, kh[0], ntk_an[0]);
  ck_assert_double_lt(e_nngp, tol_nngp);
  ck_assert_double_lt(e_ntk, tol_ntk);
  ae_net_destroy(net);
  ae_request_free(&req);
  ae_problem_clear(&p);
}

static const char *const dags[] = {"2_02_002", "1_01_222", "2_21_112"};

START_TEST(test_tie_relu) {
  check_tie(dags[_i], "relu");
}
END_TEST

START_TEST(test_tie_tanh) {
  check_tie(dags[_i], "tanh");
}
END_TEST

static Suite *tie_suite(void) {
  Suite *s = suite_create("engine_tie");
  TCase *tc = tcase_create("width4096");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, test_tie_relu, 0, 3);
  tcase_add_loop_test(tc, test_tie_tanh, 0, 3);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  const char *san = getenv("AE_SANITIZERS");
  if (san && !strcmp(san, "1")) {
    reps = 1;
    tol_nngp = tol_ntk = 0.20;
  }
  const char *r = getenv("TIE_REPS"), *t = getenv("TIE_TOL");
  if (r && atoi(r) > 0) reps = atoi(r);
  if (t && atof(t) > 0) tol_nngp = tol_ntk = atof(t);
  SRunner *sr = srunner_create(tie_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
