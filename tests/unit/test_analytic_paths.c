/* test_analytic_paths.c: paths, effective depth and width, the paper's
 * DAG filter and NFL's path proxy against metrics.md §2.7 and §6 (NB201
 * rows, the 15625-cell extremes, the NFL 729-DAG census, C(m)).
 * Single-threaded test program; it owns everything it allocates. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"

#define ck_near(x, y, tol)                                                     \
  do {                                                                         \
    double x_ = (x), y_ = (y);                                                 \
    ck_assert_msg(fabs(x_ - y_) <= (tol), "%s = %.15g, want %.15g (tol %g)",   \
                  #x, x_, y_, (double)(tol));                                  \
  } while (0)

/* NB201 ops in the order of ae_nb201_op. */
enum { NONE, SKIP, CONV1, CONV3, POOL };

/* An NB201 cell's DAG (edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2). */
static ae_arch nb201_arch(const int ops[6], ae_dag_edge edges[6]) {
  static const int src[6] = {0, 0, 1, 0, 1, 2}, dst[6] = {1, 2, 2, 3, 3, 3};
  ae_arch a;
  memset(&a, 0, sizeof(a));
  a.type = AE_ARCH_NB201;
  for (int e = 0; e < 6; e++) {
    edges[e].src = src[e];
    edges[e].dst = dst[e];
    edges[e].kind = ops[e] == NONE                         ? AE_EDGE_ZERO
                    : (ops[e] == CONV1 || ops[e] == CONV3) ? AE_EDGE_LINEAR
                                                           : AE_EDGE_SKIP;
    edges[e].act.fn = AE_ACT_RELU;
    edges[e].act.slope = 0.01;
  }
  a.dag.n_nodes = 4;
  a.dag.edges = edges;
  a.dag.n_edges = 6;
  return a;
}

START_TEST(nb201_rows) {
  struct {
    int ops[6];
    double depths[4];
    size_t n;
    double dbar, mbar;
    int keep;
  } rows[] = {
      {{CONV3, CONV3, CONV3, CONV3, CONV3, CONV3}, {3, 2, 2, 1}, 4, 2, 2, 1},
      {{CONV3, NONE, CONV3, SKIP, NONE, SKIP}, {2, 0}, 2, 1, 1, 0},
      {{CONV3, CONV3, POOL, SKIP, CONV3, SKIP}, {1, 2, 1, 0}, 4, 1, 3, 1},
      {{SKIP, SKIP, SKIP, SKIP, SKIP, SKIP}, {0, 0, 0, 0}, 4, 0, 0, 0},
  };
  for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
    ae_dag_edge edges[6];
    ae_arch a = nb201_arch(rows[k].ops, edges);
    ae_paths p;
    ck_assert_int_eq(ae_dag_paths(&a.dag, 64, &p), 0);
    ck_assert_ptr_nonnull(p.depths);
    ck_assert_uint_eq(p.n_depths, rows[k].n);
    ck_near(p.n_paths, (double)rows[k].n, 0);
    for (size_t m = 0; m < rows[k].n; m++)
      ck_near(p.depths[m], rows[k].depths[m], 0);
    double dbar = ae_effective_depth(&p), mbar = ae_effective_width(&p);
    ck_near(dbar, rows[k].dbar, 1e-15);
    ck_near(mbar, rows[k].mbar, 1e-15);
    ck_assert_int_eq(ae_dag_filter(&a, dbar, mbar), rows[k].keep);
    ae_paths_free(&p);
  }
}
END_TEST

/* All 15625 cells: the extremes over d-bar > 0 are the ones the filter
 * uses (metrics.md §2.7), the paper rule keeps 6256 and the code rule
 * rejects 7399. */
START_TEST(nb201_census) {
  double dmin = INFINITY, dmax = -INFINITY, mmin = INFINITY, mmax = -INFINITY;
  int kept = 0, code_rejects = 0;
  int ops[6];
  for (int code = 0; code < 15625; code++) {
    for (int e = 0, c = code; e < 6; e++, c /= 5)
      ops[e] = c % 5;
    ae_dag_edge edges[6];
    ae_arch a = nb201_arch(ops, edges);
    ae_paths p;
    ck_assert_int_eq(ae_dag_paths(&a.dag, 0, &p), 0);
    double dbar = ae_effective_depth(&p), mbar = ae_effective_width(&p);
    if (dbar > 0) {
      dmin = fmin(dmin, dbar);
      dmax = fmax(dmax, dbar);
      mmin = fmin(mmin, mbar);
      mmax = fmax(mmax, mbar);
    }
    kept += ae_dag_filter(&a, dbar, mbar) == 1;
    code_rejects += dbar < 0.99 || dbar > 2.51 || mbar < 0.99 || mbar > 3.01;
    ae_paths_free(&p);
  }
  ck_near(dmin, 0.25, 1e-15);
  ck_near(dmax, 3.0, 1e-15);
  ck_near(mmin, 1.0 / 3.0, 1e-15);
  ck_near(mmax, 4.0, 1e-15);
  ck_assert_int_eq(kept, 6256);
  ck_assert_int_eq(code_rejects, 7399);
}
END_TEST

/* An H = 3 mlp DAG from its 6 digits (0 zero, 1 skip, 2 linear). */
static ae_arch mlp_arch(const int digits[6], ae_dag_edge edges[6]) {
  static const int src[6] = {0, 0, 1, 0, 1, 2}, dst[6] = {1, 2, 2, 3, 3, 3};
  ae_arch a;
  memset(&a, 0, sizeof(a));
  a.type = AE_ARCH_MLP_DAG;
  for (int e = 0; e < 6; e++) {
    edges[e].src = src[e];
    edges[e].dst = dst[e];
    edges[e].kind = digits[e] == 0   ? AE_EDGE_ZERO
                    : digits[e] == 1 ? AE_EDGE_SKIP
                                     : AE_EDGE_LINEAR;
    edges[e].act.fn = AE_ACT_RELU;
    edges[e].act.slope = 0.01;
  }
  a.dag.n_nodes = 4;
  a.dag.edges = edges;
  a.dag.n_edges = 6;
  return a;
}

/* metrics.md §6: the NFL census of (P, d-bar) over the 729 H = 3 DAGs,
 * 541 valid; and the mlp_dag filter against extremes recomputed here from
 * the explicit depth lists. */
START_TEST(nfl_census_and_mlp_filter) {
  /* count[P][12 d-bar] */
  int count[5][37];
  memset(count, 0, sizeof(count));
  double dbars[729], mbars[729];
  int valid = 0;
  double dmin = INFINITY, dmax = -INFINITY, mmin = INFINITY, mmax = -INFINITY;
  int digits[6];
  for (int code = 0; code < 729; code++) {
    for (int e = 0, c = code; e < 6; e++, c /= 3)
      digits[e] = c % 3;
    ae_dag_edge edges[6];
    ae_arch a = mlp_arch(digits, edges);
    ae_paths p;
    ck_assert_int_eq(ae_dag_paths(&a.dag, 16, &p), 0);
    ck_assert_ptr_nonnull(p.depths);
    ck_assert_uint_eq(p.n_depths, (size_t)p.n_paths);
    /* d-bar and m-bar from the list, independently of the DP. */
    double sum = 0, param = 0;
    for (size_t k = 0; k < p.n_depths; k++) {
      sum += p.depths[k];
      param += p.depths[k] > 0;
    }
    double dbar = p.n_depths ? sum / p.n_depths : 0;
    double mbar = dbar > 0 ? param / dbar : 0;
    ck_near(ae_effective_depth(&p), dbar, 1e-15);
    ck_near(ae_effective_width(&p), mbar, 1e-15);
    dbars[code] = dbar;
    mbars[code] = mbar;
    if (p.n_paths > 0 && dbar > 0) {
      valid++;
      count[(int)p.n_paths][(int)lround(12 * dbar)]++;
      dmin = fmin(dmin, dbar);
      dmax = fmax(dmax, dbar);
      mmin = fmin(mmin, mbar);
      mmax = fmax(mmax, mbar);
    }
    ae_paths_free(&p);
  }
  ck_assert_int_eq(valid, 541);
  struct {
    int P, twelve_dbar, n;
  } census[] = {{1, 12, 114}, {1, 24, 25}, {1, 36, 1},  {2, 6, 80},
                {2, 12, 86},  {2, 18, 38}, {2, 24, 8},  {2, 30, 2},
                {3, 4, 16},   {3, 8, 29},  {3, 12, 33}, {3, 16, 26},
                {3, 20, 14},  {3, 24, 5},  {3, 28, 1},  {4, 3, 4},
                {4, 6, 8},    {4, 9, 12},  {4, 12, 14}, {4, 15, 12},
                {4, 18, 8},   {4, 21, 4},  {4, 24, 1}};
  int listed = 0;
  for (size_t k = 0; k < sizeof(census) / sizeof(census[0]); k++) {
    ck_assert_int_eq(count[census[k].P][census[k].twelve_dbar], census[k].n);
    listed += census[k].n;
  }
  ck_assert_int_eq(listed, 541);

  /* The filter for a 4-node mlp_dag uses these extremes. */
  double dc = 0.5 * (dmax + dmin), mc = 0.5 * (mmax + mmin);
  double dr = 0.5 * (dmax - dmin), mr = 0.5 * (mmax - mmin);
  for (int code = 0; code < 729; code++) {
    for (int e = 0, c = code; e < 6; e++, c /= 3)
      digits[e] = c % 3;
    ae_dag_edge edges[6];
    ae_arch a = mlp_arch(digits, edges);
    int want = dbars[code] > 0 && fabs(dbars[code] - dc) <= dr / 2 + 1e-12 &&
               fabs(mbars[code] - mc) <= mr / 2 + 1e-12;
    ck_assert_int_eq(ae_dag_filter(&a, dbars[code], mbars[code]), want);
  }
  /* No space known: too many nodes to enumerate, or a graph. */
  ae_arch big;
  memset(&big, 0, sizeof(big));
  big.type = AE_ARCH_MLP_DAG;
  big.dag.n_nodes = 6;
  ck_assert_int_eq(ae_dag_filter(&big, 1.5, 2.0), -1);
  big.type = AE_ARCH_GRAPH;
  ck_assert_int_eq(ae_dag_filter(&big, 1.5, 2.0), -1);
}
END_TEST

START_TEST(nfl_constants) {
  ck_near(ae_nfl_c_of_m(64), 0.9961015277, 1e-10);
  ck_near(ae_nfl_c_of_m(256), 0.9990239167, 1e-10);
  ck_near(ae_nfl_c_of_m(1024), 0.9997558892, 1e-10);
  ae_paths p;
  memset(&p, 0, sizeof(p));
  double depths[1] = {3};
  p.n_paths = 1;
  p.depths = depths;
  p.n_depths = 1;
  ck_near(ae_path_proxy(&p, 256), 1.0 / (0.9990239167 * 0.9927025380), 1e-9);
  double two[2] = {3, 0};
  p.depths = two;
  p.n_depths = 2;
  ck_near(ae_path_proxy(&p, 256), 1.0 / (0.9990239167 * (0.9927025380 + 1.0)),
          1e-9);
  p.depths = NULL;
  ck_assert(isnan(ae_path_proxy(&p, 256)));
}
END_TEST

/* ---- lowered graphs ---- */

typedef struct {
  ae_graph g;
  ae_node *nodes;
  int (*inputs)[2];
} graph_builder;

static void builder_init(graph_builder *b, int cap) {
  memset(b, 0, sizeof(*b));
  b->nodes = calloc((size_t)cap, sizeof(ae_node));
  b->inputs = calloc((size_t)cap, sizeof(*b->inputs));
  ck_assert(b->nodes && b->inputs);
  b->g.nodes = b->nodes;
}

static void builder_free(graph_builder *b) {
  free(b->nodes);
  free(b->inputs);
}

static int add_node(graph_builder *b, ae_op op, int in0, int in1) {
  int t = b->g.n_nodes++;
  ae_node *nd = &b->nodes[t];
  nd->op = op;
  nd->inputs = b->inputs[t];
  if (in0 >= 0) nd->inputs[nd->n_inputs++] = in0;
  if (in1 >= 0) nd->inputs[nd->n_inputs++] = in1;
  nd->init_gain = 1.0;
  b->g.output = t;
  return t;
}

START_TEST(graph_paths_small) {
  graph_builder b;
  builder_init(&b, 16);
  int in = add_node(&b, AE_OP_INPUT, -1, -1);
  int l1 = add_node(&b, AE_OP_LINEAR, in, -1);
  int a1 = add_node(&b, AE_OP_ACT, l1, -1);
  int l2 = add_node(&b, AE_OP_CONV, a1, -1);
  int s = add_node(&b, AE_OP_ADD, l1, l2);
  int z = add_node(&b, AE_OP_ZERO, s, -1);
  int s2 = add_node(&b, AE_OP_ADD, s, z);
  add_node(&b, AE_OP_LINEAR, s2, -1);
  ae_paths p;
  ck_assert_int_eq(ae_graph_paths(&b.g, 16, &p), 0);
  ck_near(p.n_paths, 2, 0);
  ck_near(p.sum_depth, 5, 0);
  ck_near(p.n_param_paths, 2, 0);
  ck_assert_uint_eq(p.n_depths, 2);
  ck_near(p.depths[0] + p.depths[1], 5, 0);
  ck_near(fabs(p.depths[0] - p.depths[1]), 1, 0);
  ck_near(ae_effective_depth(&p), 2.5, 0);
  ck_near(ae_effective_width(&p), 0.8, 1e-15);
  ae_paths_free(&p);
  /* max_list below P: no list, counts still exact. */
  ck_assert_int_eq(ae_graph_paths(&b.g, 1, &p), 0);
  ck_assert_ptr_null(p.depths);
  ck_near(p.n_paths, 2, 0);
  ae_paths_free(&p);
  builder_free(&b);
}
END_TEST

/* 1100 residual blocks x + W x: 2^1100 paths overflow a double, d-bar
 * (550 + the readout) does not. */
START_TEST(graph_paths_overflow) {
  graph_builder b;
  builder_init(&b, 2300);
  int x = add_node(&b, AE_OP_INPUT, -1, -1);
  for (int k = 0; k < 1100; k++) {
    int l = add_node(&b, AE_OP_LINEAR, x, -1);
    x = add_node(&b, AE_OP_ADD, x, l);
  }
  add_node(&b, AE_OP_LINEAR, x, -1);
  ae_paths p;
  ck_assert_int_eq(ae_graph_paths(&b.g, 1000, &p), 0);
  ck_assert(isinf(p.n_paths));
  ck_assert_ptr_null(p.depths);
  ck_near(ae_effective_depth(&p), 551.0, 1e-9);
  ae_paths_free(&p);
  builder_free(&b);
}
END_TEST

static Suite *paths_suite(void) {
  Suite *s = suite_create("analytic_paths");
  TCase *tc = tcase_create("paths");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, nb201_rows);
  tcase_add_test(tc, nb201_census);
  tcase_add_test(tc, nfl_census_and_mlp_filter);
  tcase_add_test(tc, nfl_constants);
  tcase_add_test(tc, graph_paths_small);
  tcase_add_test(tc, graph_paths_overflow);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(paths_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
