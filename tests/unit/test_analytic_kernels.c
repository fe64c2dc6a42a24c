/* test_analytic_kernels.c: the exact infinite-width DAG recursion and the
 * path-sum bounds against metrics.md §6 (inputs x1 = (1, 0),
 * x2 = (0.6, 0.8), K0 = [[1, .6], [.6, 1]]), and the lowered-graph
 * recursion against the DAG one.  Single-threaded test program; it owns
 * everything it allocates. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/problem.h"
#include "api/status.h"
#include "gpu/analytic/analytic.h"

#define ck_near(x, y, tol)                                                     \
  do {                                                                         \
    double x_ = (x), y_ = (y);                                                 \
    ck_assert_msg(fabs(x_ - y_) <= (tol), "%s = %.15g, want %.15g (tol %g)",   \
                  #x, x_, y_, (double)(tol));                                  \
  } while (0)

static const double K0[4] = {1.0, 0.6, 0.6, 1.0};

/* An mlp_dag string ("2_21_112": digits 0 zero, 1 skip, 2 linear) into a
 * DAG with one activation on every linear edge.  edges: room for 64. */
static ae_dag make_dag(const char *s, ae_activation a, ae_dag_edge *edges) {
  ae_dag d = {1, edges, 0};
  int dst = 1, src = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '_') {
      dst++;
      src = 0;
      continue;
    }
    ae_dag_edge *e = &edges[d.n_edges++];
    e->src = src++;
    e->dst = dst;
    e->kind = *p == '0'   ? AE_EDGE_ZERO
              : *p == '1' ? AE_EDGE_SKIP
                          : AE_EDGE_LINEAR;
    e->act = a;
  }
  d.n_nodes = dst + 1;
  return d;
}

static const ae_activation relu = {AE_ACT_RELU, 0.01};

/* lambda_min of a symmetric 2 x 2. */
static double min_eig2(const double *A) {
  double w[2];
  ck_assert_int_eq(ae_sym_eigvals(A, 2, w, NULL), 0);
  return w[0];
}

/* metrics.md §6, GP pre-activation (K_ii, K_ij, lambda_min). */
START_TEST(gp_preactivation_rows) {
  struct {
    const char *dag;
    double kii, kij, lmin;
  } rows[] = {
      {"2_02_002", 1, 0.77531, 0.224688}, {"1_01_222", 3, 2.03264, 0.967357},
      {"2_21_112", 4, 2.74442, 1.255585}, {"2_12_112", 4, 2.72850, 1.271498},
      {"2_22_222", 4, 2.91938, 1.080623},
  };
  ae_dag_edge edges[64];
  for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
    ae_dag d = make_dag(rows[k].dag, relu, edges);
    double K[4], T[4];
    ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 0, K, T, NULL), 0);
    ck_near(K[0], rows[k].kii, 1e-9);
    ck_near(K[3], rows[k].kii, 1e-9);
    ck_near(K[1], rows[k].kij, 1e-5);
    ck_near(K[2], K[1], 0);
    ck_near(min_eig2(K), rows[k].lmin, 1e-5);
  }
  /* All skips: K = 16 K0 (correlated paths), lambda_min 6.4. */
  ae_dag d = make_dag("1_11_111", relu, edges);
  double K[4], T[4];
  ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 0, K, T, NULL), 0);
  for (int e = 0; e < 4; e++)
    ck_near(K[e], 16 * K0[e], 1e-12);
  ck_near(min_eig2(K), 6.4, 1e-12);
  for (int e = 0; e < 4; e++)
    ck_near(T[e], 0.0, 0);
  /* A trained stem: T(0) = K0, carried by the skips. */
  ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 1, K, T, NULL), 0);
  for (int e = 0; e < 4; e++)
    ck_near(T[e], 16 * K0[e], 1e-12);
}
END_TEST

/* metrics.md §6, NTK with linear readout and fixed input: K + T. */
START_TEST(ntk_rows) {
  struct {
    const char *dag;
    double tii, tij, lmin;
  } rows[] = {
      {"2_02_002", 4, 2.49009, 1.50991},
      {"1_01_222", 6, 4.06529, 1.93471},
      {"2_21_112", 9, 5.88748, 3.11252},
      {"2_22_222", 12, 7.76942, 4.23058},
  };
  ae_dag_edge edges[64];
  for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
    ae_dag d = make_dag(rows[k].dag, relu, edges);
    double K[4], T[4], NTK[4];
    ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 0, K, T, NULL), 0);
    for (int e = 0; e < 4; e++)
      NTK[e] = K[e] + T[e];
    ck_near(NTK[0], rows[k].tii, 1e-9);
    ck_near(NTK[3], rows[k].tii, 1e-9);
    ck_near(NTK[1], rows[k].tij, 1e-5);
    ck_near(min_eig2(NTK), rows[k].lmin, 1e-5);
  }
}
END_TEST

/* metrics.md §6, FC ReLU (Arora): a chain of L linear edges on a trained
 * stem; T is Arora's Theta^(L) and K the last hidden NNGP. */
START_TEST(arora_fc_rows) {
  const double nngp_off[3] = {0.6775475678, 0.7334337858, 0.7753124348};
  const double ntk_off[3] = {1.1004472266, 1.5444163007, 1.9522866852};
  const double lmin[3] = {0.8995527734, 1.4555837, 2.0477133};
  const double lmin_tol[3] = {1e-9, 1e-7, 1e-7};
  const double kappa[3] = {3.4466540688, 3.1220577029, 2.9067968851};
  for (int L = 1; L <= 3; L++) {
    ae_dag_edge edges[3];
    for (int e = 0; e < L; e++) {
      edges[e].src = e;
      edges[e].dst = e + 1;
      edges[e].kind = AE_EDGE_LINEAR;
      edges[e].act = relu;
    }
    ae_dag d = {L + 1, edges, L};
    double K[4], T[4], w[2];
    ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 1, K, T, NULL), 0);
    ck_near(K[0], 1.0, 1e-12);
    ck_near(K[1], nngp_off[L - 1], 1e-9);
    ck_near(T[0], L + 1.0, 1e-12);
    ck_near(T[1], ntk_off[L - 1], 1e-9);
    ck_assert_int_eq(ae_sym_eigvals(T, 2, w, NULL), 0);
    ck_near(w[0], lmin[L - 1], lmin_tol[L - 1]);
    ck_near(w[1] / w[0], kappa[L - 1], 1e-9);
    if (L == 1) {
      ck_near(w[1], 3.1004472266, 1e-9);
      const double y[2] = {1.0, -1.0};
      double q, jitter;
      ck_assert_int_eq(ae_kernel_quadratic(T, 2, y, 1, &q, &jitter, NULL), 0);
      ck_near(jitter, 0.0, 0);
      ck_near(sqrt(q / 2), 1.0543545500, 1e-9);
    }
  }
}
END_TEST

/* metrics.md §6: NFL Eq. 7 leading term (sum d_p) sqrt(y^T G^-1 y / N)
 * with the fixed-input pre-activation NTKs.  The spec derived these from
 * its 5-digit NTK rows (DAG#2: 1/sqrt(1.93471)), hence 1e-5. */
START_TEST(nfl_leading_term) {
  struct {
    const char *dag;
    double value;
  } rows[] = {{"2_02_002", 2.4414381},
              {"1_01_222", 2.1568171},
              {"2_21_112", 2.8340919}};
  ae_dag_edge edges[64];
  for (size_t k = 0; k < 3; k++) {
    ae_dag d = make_dag(rows[k].dag, relu, edges);
    double K[4], T[4], G[4], q, jitter;
    ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 0, K, T, NULL), 0);
    for (int e = 0; e < 4; e++)
      G[e] = K[e] + T[e];
    ae_paths p;
    ck_assert_int_eq(ae_dag_paths(&d, 100, &p), 0);
    const double y[2] = {1.0, -1.0};
    ck_assert_int_eq(ae_kernel_quadratic(G, 2, y, 1, &q, &jitter, NULL), 0);
    ck_near(p.sum_depth * sqrt(q / 2), rows[k].value, 1e-5);
    ae_paths_free(&p);
  }
}
END_TEST

/* metrics.md §6: U_NNGP and the NFL NTK bound at rho = 0.6. */
START_TEST(path_bounds) {
  struct {
    const char *dag;
    double u, ntk, tol;
  } rows[] = {
      {"2_02_002", 0.2246875652, 2.0592535327, 1e-9},
      {"1_01_222", 0.9673572967, 2.5346841205, 1e-9},
      {"2_21_112", 1.2555848606, 4.0609743354, 1e-9},
      {"2_12_112", 1.269592, NAN, 1e-6},
      {"2_22_222", 1.080272, NAN, 1e-6},
      {"1_11_111", 1.6, NAN, 1e-12},
  };
  ae_dag_edge edges[64];
  for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
    ae_dag d = make_dag(rows[k].dag, relu, edges);
    ck_near(ae_u_nngp(&d, K0, 2), rows[k].u, rows[k].tol);
    if (!isnan(rows[k].ntk))
      ck_near(ae_nfl_ntk_bound(&d, K0, 2), rows[k].ntk, rows[k].tol);
  }
  /* The minimum runs over pairs: a third, nearly parallel input wins. */
  const double rho3[9] = {1, 0.6, 0.2, 0.6, 1, 0.95, 0.2, 0.95, 1};
  ae_dag d = make_dag("2_02_002", relu, edges);
  double h = 0.95;
  for (int k = 0; k < 3; k++)
    h = (sqrt(1 - h * h) + (M_PI - acos(h)) * h) / M_PI;
  ck_near(ae_u_nngp(&d, rho3, 3), 1 - h, 1e-12);
  ck_assert(isnan(ae_u_nngp(&d, K0, 1)));

  /* The N x N minimum equals the minimum over every 2 x 2 pair, also with
   * strongly negative correlations and activations with an even part. */
  const double rho4[16] = {1,     0.3,  -0.97, 0.1, 0.3, 1,    -0.5, 0.45,
                           -0.97, -0.5, 1,     0.2, 0.1, 0.45, 0.2,  1};
  ae_activation acts[] = {
      relu, {AE_ACT_GELU, 0}, {AE_ACT_SIGMOID, 0}, {AE_ACT_TANH, 0}};
  for (int k = 0; k < 4; k++) {
    d = make_dag(k % 2 ? "2_21_112" : "1_22_122", acts[k], edges);
    double u_min = INFINITY, ntk_min = INFINITY;
    for (int i = 0; i < 4; i++)
      for (int j = i + 1; j < 4; j++) {
        double pair[4] = {1, rho4[i * 4 + j], rho4[i * 4 + j], 1};
        u_min = fmin(u_min, ae_u_nngp(&d, pair, 2));
        ntk_min = fmin(ntk_min, ae_nfl_ntk_bound(&d, pair, 2));
      }
    ck_near(ae_u_nngp(&d, rho4, 4), u_min, 1e-12);
    ck_near(ae_nfl_ntk_bound(&d, rho4, 4), ntk_min, 1e-12);
  }
}
END_TEST

/* ---- lowered graphs ---- */

typedef struct {
  ae_graph g;
  ae_node nodes[64];
  int inputs[64][4];
} graph_builder;

static int add_node(graph_builder *b, ae_op op, int in0, int in1, int in2,
                    double gain, ae_activation a) {
  int t = b->g.n_nodes++;
  ae_node *nd = &b->nodes[t];
  memset(nd, 0, sizeof(*nd));
  nd->op = op;
  nd->src_index = -1;
  nd->inputs = b->inputs[t];
  int ins[3] = {in0, in1, in2};
  for (int k = 0; k < 3; k++)
    if (ins[k] >= 0) nd->inputs[nd->n_inputs++] = ins[k];
  nd->init_gain = gain;
  nd->act = a;
  nd->out = 16;
  b->g.output = t;
  return t;
}

/* The lowering of an mlp_dag: input -> stem linear (node 0 of the cell);
 * a linear edge s -> t is act(h_s) -> linear(gain c_sigma); a node is the
 * add of its edges; the readout is a linear of gain 1. */
static void lower_dag(const ae_dag *d, graph_builder *b, double c_sigma) {
  memset(b, 0, sizeof(*b));
  b->g.nodes = b->nodes;
  ae_activation none = {AE_ACT_IDENTITY, 0};
  int input = add_node(b, AE_OP_INPUT, -1, -1, -1, 0, none);
  int cell[16];
  cell[0] = add_node(b, AE_OP_LINEAR, input, -1, -1, 1.0, none);
  for (int t = 1; t < d->n_nodes; t++) {
    int terms[16], n_terms = 0;
    for (int e = 0; e < d->n_edges; e++) {
      const ae_dag_edge *edge = &d->edges[e];
      if (edge->dst != t || edge->kind == AE_EDGE_ZERO) continue;
      if (edge->kind == AE_EDGE_SKIP) {
        terms[n_terms++] = cell[edge->src];
      } else {
        int a = add_node(b, AE_OP_ACT, cell[edge->src], -1, -1, 0, edge->act);
        terms[n_terms++] = add_node(b, AE_OP_LINEAR, a, -1, -1, c_sigma, none);
      }
    }
    ck_assert_int_le(n_terms, 3);
    cell[t] = add_node(
        b, n_terms ? AE_OP_ADD : AE_OP_ZERO, n_terms > 0 ? terms[0] : cell[0],
        n_terms > 1 ? terms[1] : -1, n_terms > 2 ? terms[2] : -1, 0, none);
  }
  add_node(b, AE_OP_LINEAR, cell[d->n_nodes - 1], -1, -1, 1.0, none);
}

/* The graph recursion on a hand-lowered DAG equals the DAG recursion: the
 * graph's output is the readout (gain 1), so NNGP K and NTK K + T agree. */
START_TEST(graph_matches_dag) {
  const char *dags[] = {"2_21_112", "2_22_222", "1_01_222"};
  ae_activation acts[] = {relu, {AE_ACT_TANH, 0}, {AE_ACT_GELU, 0}};
  const double X3[9] = {1, 0.6, -0.1, 0.6, 1, 0.3, -0.1, 0.3, 1};
  for (int k = 0; k < 3; k++)
    for (int stem = 0; stem < 2; stem++) {
      ae_dag_edge edges[64];
      ae_dag d = make_dag(dags[k], acts[k], edges);
      graph_builder b;
      lower_dag(&d, &b, ae_act_c_sigma(acts[k]));
      double K[9], T[9], Kg[9], Tg[9];
      ck_assert_int_eq(ae_dag_kernels(&d, X3, 3, stem, K, T, NULL), 0);
      ck_assert_int_eq(ae_graph_kernels(&b.g, X3, 3, stem, Kg, Tg, NULL), 0);
      for (int e = 0; e < 9; e++) {
        ck_near(Kg[e], K[e], 1e-12 * fabs(K[e]) + 1e-13);
        ck_near(Tg[e], T[e], 1e-12 * fabs(K[e] + T[e]) + 1e-13);
      }
    }
}
END_TEST

/* A readout bias adds 1 to the tangent kernel; identity and flatten pass
 * through; a conv or an activation on the raw input is unsupported. */
START_TEST(graph_ops_and_unsupported) {
  ae_activation none = {AE_ACT_IDENTITY, 0};
  graph_builder b;
  memset(&b, 0, sizeof(b));
  b.g.nodes = b.nodes;
  int in = add_node(&b, AE_OP_INPUT, -1, -1, -1, 0, none);
  int fl = add_node(&b, AE_OP_FLATTEN, in, -1, -1, 0, none);
  int l1 = add_node(&b, AE_OP_LINEAR, fl, -1, -1, 1.0, none);
  int a1 = add_node(&b, AE_OP_ACT, l1, -1, -1, 0, relu);
  int id = add_node(&b, AE_OP_IDENTITY, a1, -1, -1, 0, none);
  int l2 = add_node(&b, AE_OP_LINEAR, id, -1, -1, 2.0, none);
  b.nodes[l2].bias = 1;
  double K[4], T[4];
  ck_assert_int_eq(ae_graph_kernels(&b.g, K0, 2, 1, K, T, NULL), 0);
  /* One hidden relu layer, trained stem: Arora's L = 1 NTK plus the
   * bias's 1. */
  ck_near(K[1], 0.6775475678, 1e-9);
  ck_near(K[0] + T[0], 3.0, 1e-12);
  ck_near(K[1] + T[1], 2.1004472266, 1e-9);
  /* Fixed stem: the stem's weight term is gone, the readout's stays. */
  ck_assert_int_eq(ae_graph_kernels(&b.g, K0, 2, 0, K, T, NULL), 0);
  ck_near(K[0] + T[0], 2.0, 1e-12);
  ck_near(K[1] + T[1], 1.0 + 0.6775475678, 1e-9);

  /* An activation of the raw input is not Gaussian in the limit. */
  graph_builder c;
  memset(&c, 0, sizeof(c));
  c.g.nodes = c.nodes;
  in = add_node(&c, AE_OP_INPUT, -1, -1, -1, 0, none);
  a1 = add_node(&c, AE_OP_ACT, in, -1, -1, 0, relu);
  add_node(&c, AE_OP_LINEAR, a1, -1, -1, 2.0, none);
  ck_assert_int_eq(ae_graph_kernels(&c.g, K0, 2, 1, K, T, NULL),
                   AE_EUNSUPPORTED);

  /* Nor is a sum of activation outputs fed to an activation. */
  memset(&c, 0, sizeof(c));
  c.g.nodes = c.nodes;
  in = add_node(&c, AE_OP_INPUT, -1, -1, -1, 0, none);
  l1 = add_node(&c, AE_OP_LINEAR, in, -1, -1, 1.0, none);
  a1 = add_node(&c, AE_OP_ACT, l1, -1, -1, 0, relu);
  int a2 = add_node(&c, AE_OP_ACT, l1, -1, -1, 0, relu);
  int s = add_node(&c, AE_OP_ADD, a1, a2, -1, 0, none);
  int a3 = add_node(&c, AE_OP_ACT, s, -1, -1, 0, relu);
  add_node(&c, AE_OP_LINEAR, a3, -1, -1, 2.0, none);
  ck_assert_int_eq(ae_graph_kernels(&c.g, K0, 2, 1, K, T, NULL),
                   AE_EUNSUPPORTED);

  /* Conv and batch norm are not dense. */
  memset(&c, 0, sizeof(c));
  c.g.nodes = c.nodes;
  in = add_node(&c, AE_OP_INPUT, -1, -1, -1, 0, none);
  add_node(&c, AE_OP_CONV, in, -1, -1, 1.0, none);
  ck_assert_int_eq(ae_graph_kernels(&c.g, K0, 2, 1, K, T, NULL),
                   AE_EUNSUPPORTED);
}
END_TEST

/* The api's own lowering of an mlp_dag (ae_arch_lower) gives the same
 * kernels through ae_graph_kernels as the cell DAG through ae_dag_kernels
 * (no bias); with bias every trained linear adds 1 to the NTK. */
START_TEST(lowered_mlp_dag_matches_dag) {
  const char *texts[] = {
      "{\"type\": \"mlp_dag\", \"dag\": \"2_21_112\", \"width\": 64}",
      "{\"type\": \"mlp_dag\", \"dag\": \"2_21_112\", \"width\": 64, "
      "\"activation\": \"tanh\"}",
      "{\"type\": \"mlp_dag\", \"dag\": \"2_12_102\", \"width\": 64, "
      "\"activation\": [\"gelu\", \"relu\", \"sigmoid\"]}",
  };
  const double X3[9] = {1, 0.6, -0.1, 0.6, 1, 0.3, -0.1, 0.3, 1};
  ae_limits lim;
  ae_limits_default(&lim);
  for (int k = 0; k < 3; k++) {
    json_error_t err;
    json_t *j = json_loads(texts[k], 0, &err);
    ck_assert_ptr_nonnull(j);
    ae_arch a;
    ae_problem p;
    memset(&a, 0, sizeof(a));
    memset(&p, 0, sizeof(p));
    int rc = ae_arch_from_json(j, "/architecture", &lim, &a, &p);
    json_decref(j);
    ck_assert_int_eq(rc, 0);
    ae_lower_opts o;
    memset(&o, 0, sizeof(o));
    o.input_shape[0] = 5;
    o.input_rank = 1;
    o.num_classes = 3;
    ae_graph g;
    memset(&g, 0, sizeof(g));
    ck_assert_int_eq(ae_arch_lower(&a, &o, &lim, "/architecture", &g, &p), 0);
    for (int stem = 0; stem < 2; stem++) {
      double K[9], T[9], Kg[9], Tg[9];
      ck_assert_int_eq(ae_dag_kernels(&a.dag, X3, 3, stem, K, T, NULL), 0);
      ck_assert_int_eq(ae_graph_kernels(&g, X3, 3, stem, Kg, Tg, NULL), 0);
      for (int e = 0; e < 9; e++) {
        ck_near(Kg[e], K[e], 1e-12 * fabs(K[e]) + 1e-13);
        ck_near(Tg[e], T[e], 1e-12 * fabs(K[e] + T[e]) + 1e-13);
      }
    }
    ae_graph_free(&g);
    ae_arch_free(&a);
    ae_problem_clear(&p);
  }
}
END_TEST

/* The IP post-activation convention of the CONV/NFL code as a graph:
 * node 0 = the stem linear (K0); a linear edge is linear (gain 2) then
 * relu, so sqrt(2) relu(W x); a node sums its edges; linear readout.
 * metrics.md §6 (K_ii, K_ij, lambda_min), IP column. */
START_TEST(graph_ip_postactivation_rows) {
  struct {
    const char *dag;
    double kii, kij, lmin;
  } rows[] = {
      {"2_02_002", 1, 0.77531, 0.224688},
      {"1_01_222", 4.90986, 3.94250, 0.967357},
      {"2_21_112", 5.67034, 4.39992, 1.270420},
      {"2_12_112", 4.90032, 3.62882, 1.271498},
      {"2_22_222", 7.34068, 6.24716, 1.093519},
  };
  ae_activation none = {AE_ACT_IDENTITY, 0};
  for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
    ae_dag_edge edges[64];
    ae_dag d = make_dag(rows[k].dag, relu, edges);
    graph_builder b;
    memset(&b, 0, sizeof(b));
    b.g.nodes = b.nodes;
    int input = add_node(&b, AE_OP_INPUT, -1, -1, -1, 0, none);
    int cell[8];
    cell[0] = add_node(&b, AE_OP_LINEAR, input, -1, -1, 1.0, none);
    for (int t = 1; t < d.n_nodes; t++) {
      int terms[3], n_terms = 0;
      for (int e = 0; e < d.n_edges; e++) {
        if (d.edges[e].dst != t || d.edges[e].kind == AE_EDGE_ZERO) continue;
        int src = cell[d.edges[e].src];
        if (d.edges[e].kind == AE_EDGE_LINEAR) {
          int l = add_node(&b, AE_OP_LINEAR, src, -1, -1, 2.0, none);
          src = add_node(&b, AE_OP_ACT, l, -1, -1, 0, relu);
        }
        terms[n_terms++] = src;
      }
      cell[t] = add_node(&b, AE_OP_ADD, terms[0], n_terms > 1 ? terms[1] : -1,
                         n_terms > 2 ? terms[2] : -1, 0, none);
    }
    add_node(&b, AE_OP_LINEAR, cell[d.n_nodes - 1], -1, -1, 1.0, none);
    double K[4], T[4];
    ck_assert_int_eq(ae_graph_kernels(&b.g, K0, 2, 1, K, T, NULL), 0);
    ck_near(K[0], rows[k].kii, 1e-5);
    ck_near(K[3], rows[k].kii, 1e-5);
    ck_near(K[1], rows[k].kij, 1e-5);
    ck_near(min_eig2(K), rows[k].lmin, 1e-5);
  }
}
END_TEST

/* Sums that share a Gaussian: h + identity(h) = 2h (Stein's cross term)
 * and relu(h) + relu(h) from two ACT nodes = 2 relu(h). */
START_TEST(graph_shared_gaussian_sums) {
  ae_activation none = {AE_ACT_IDENTITY, 0};
  const double X3[9] = {1, 0.6, -0.1, 0.6, 1, 0.3, -0.1, 0.3, 1};
  for (int variant = 0; variant < 2; variant++) {
    double Kp[9], Tp[9], Ks[9], Ts[9];
    for (int twice = 0; twice < 2; twice++) {
      graph_builder b;
      memset(&b, 0, sizeof(b));
      b.g.nodes = b.nodes;
      int in = add_node(&b, AE_OP_INPUT, -1, -1, -1, 0, none);
      int l1 = add_node(&b, AE_OP_LINEAR, in, -1, -1, 1.0, none);
      int a1 = add_node(&b, AE_OP_ACT, l1, -1, -1, 0, relu);
      int h = add_node(&b, AE_OP_LINEAR, a1, -1, -1, 2.0, none);
      int x;
      if (variant == 0) {
        int id = add_node(&b, AE_OP_ACT, h, -1, -1, 0, none);
        x = twice ? add_node(&b, AE_OP_ADD, h, id, -1, 0, none) : h;
      } else {
        int r1 = add_node(&b, AE_OP_ACT, h, -1, -1, 0, relu);
        int r2 = add_node(&b, AE_OP_ACT, h, -1, -1, 0, relu);
        x = twice ? add_node(&b, AE_OP_ADD, r1, r2, -1, 0, none) : r1;
      }
      add_node(&b, AE_OP_LINEAR, x, -1, -1, 1.0, none);
      ck_assert_int_eq(ae_graph_kernels(&b.g, X3, 3, 1, twice ? Ks : Kp,
                                        twice ? Ts : Tp, NULL),
                       0);
    }
    /* The readout's NTK K + T scales like K. */
    for (int e = 0; e < 9; e++) {
      ck_near(Ks[e], 4 * Kp[e], 1e-12);
      ck_near(Ks[e] + Ts[e], 4 * (Kp[e] + Tp[e]), 1e-12);
    }
  }
}
END_TEST

/* The job's checkpoint inside the recursions: a cancelled or late job
 * stops with that error (nothing leaked: the ASan build checks), and a
 * checkpoint that never fires changes no bit. */
START_TEST(recursions_stop_at_checkpoint) {
  atomic_int on = 1, off = 0;
  ae_job_control cancelled = {&on, 0}, past = {NULL, 1}, never = {&off, 0};
  ae_dag_edge edges[64];
  ae_dag d = make_dag("2_21_112", relu, edges);
  double K[4], T[4], K2[4], T2[4];
  ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 1, K, T, &past), AE_EDEADLINE);
  ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 1, K, T, &cancelled),
                   AE_ECANCELLED);
  ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 1, K, T, NULL), 0);
  ck_assert_int_eq(ae_dag_kernels(&d, K0, 2, 1, K2, T2, &never), 0);
  ck_assert(memcmp(K, K2, sizeof K) == 0 && memcmp(T, T2, sizeof T) == 0);
  graph_builder b;
  lower_dag(&d, &b, 1.0);
  ck_assert_int_eq(ae_graph_kernels(&b.g, K0, 2, 1, K, T, &past), AE_EDEADLINE);
  ck_assert_int_eq(ae_graph_kernels(&b.g, K0, 2, 1, K, T, &cancelled),
                   AE_ECANCELLED);
  ck_assert_int_eq(ae_graph_kernels(&b.g, K0, 2, 1, K, T, NULL), 0);
  ck_assert_int_eq(ae_graph_kernels(&b.g, K0, 2, 1, K2, T2, &never), 0);
  ck_assert(memcmp(K, K2, sizeof K) == 0 && memcmp(T, T2, sizeof T) == 0);
}
END_TEST

static Suite *kernels_suite(void) {
  Suite *s = suite_create("analytic_kernels");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, gp_preactivation_rows);
  tcase_add_test(tc, ntk_rows);
  tcase_add_test(tc, arora_fc_rows);
  tcase_add_test(tc, nfl_leading_term);
  tcase_add_test(tc, path_bounds);
  tcase_add_test(tc, graph_matches_dag);
  tcase_add_test(tc, graph_ops_and_unsupported);
  tcase_add_test(tc, lowered_mlp_dag_matches_dag);
  tcase_add_test(tc, graph_ip_postactivation_rows);
  tcase_add_test(tc, graph_shared_gaussian_sums);
  tcase_add_test(tc, recursions_stop_at_checkpoint);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(kernels_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
