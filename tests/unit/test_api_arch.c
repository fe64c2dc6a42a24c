/* test_api_arch.c: the architecture parsers and lowering (api/arch.c,
 * api/lower.c, api/activation.c).  Expected parameter counts are worked
 * out by hand from the NB201 skeleton (metrics.md §5.1) and the MLP DAG
 * space (§5.2); second moments from closed forms and an independent
 * Simpson rule.  Single-threaded. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/status.h"

static ae_limits lim;

static void setup(void) {
  ae_limits_default(&lim);
}

/* Parses a JSON architecture; returns the status, fills a and p. */
static int parse(const char *text, ae_arch *a, ae_problem *p) {
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  ck_assert_msg(j != NULL, "bad test JSON: %s", err.text);
  int rc = ae_arch_from_json(j, "/architecture", &lim, a, p);
  json_decref(j);
  return rc;
}

/* True when some error in p has exactly this pointer. */
static int has_pointer(const ae_problem *p, const char *ptr) {
  for (size_t i = 0; i < p->n_errors; i++)
    if (strcmp(p->errors[i].pointer, ptr) == 0) return 1;
  return 0;
}

static int count_op(const ae_graph *g, ae_op op) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++)
    n += g->nodes[i].op == op;
  return n;
}

static const ae_node *find_node(const ae_graph *g, const char *name) {
  for (int i = 0; i < g->n_nodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

static int lower(const ae_arch *a, const int *shape, int rank, int classes,
                 int probe, ae_graph *g, ae_problem *p) {
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  memcpy(o.input_shape, shape, (size_t)rank * sizeof(int));
  o.input_rank = rank;
  o.num_classes = classes;
  o.probe = probe;
  return ae_arch_lower(a, &o, &lim, "/architecture", g, p);
}

#define ALL_CONV3                                                              \
  "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"          \
  "nor_conv_3x3~1|nor_conv_3x3~2|"
#define RESNET_CELL                                                            \
  "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|"           \
  "skip_connect~2|"

START_TEST(nb201_all_conv3x3_params) {
  ae_arch a;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(
      parse("{\"type\":\"nb201\",\"cell\":\"" ALL_CONV3 "\"}", &a, &p), AE_OK);
  ck_assert_int_eq(a.channels, 16);
  ck_assert_int_eq(a.cells_per_stage, 5);
  ck_assert_int_eq(a.dag.n_nodes, 4);
  ck_assert_int_eq(a.dag.n_edges, 6);
  for (int e = 0; e < 6; e++)
    ck_assert_int_eq(a.dag.edges[e].kind, AE_EDGE_LINEAR);
  ae_graph g;
  int shape[3] = {3, 32, 32};
  ck_assert_int_eq(lower(&a, shape, 3, 10, 0, &g, &p), AE_OK);
  /* By hand: stem 3*9*16 + 32 = 464; a C-cell has 6 edges of C*C*9 + 2C;
   * stage cells 5*6*(2304+32) = 70080, 5*6*(9216+64) = 278400,
   * 5*6*(36864+128) = 1109760; resblocks (16*9*32+64) + (32*9*32+64) +
   * 16*32 = 14464 and (32*9*64+128) + (64*9*64+128) + 32*64 = 57600;
   * head BN 128 + linear 64*10+10 = 778.  Sum 1531546 (NB201's 1.53 MB). */
  ck_assert_double_eq(ae_graph_params(&g), 1531546.0);
  /* 90 cell convs + stem + 2 * 3 resblock convs. */
  ck_assert_int_eq(count_op(&g, AE_OP_CONV), 90 + 1 + 6);
  ck_assert_int_eq(g.nodes[0].op, AE_OP_INPUT);
  ck_assert_int_eq(g.nodes[g.output].op, AE_OP_LINEAR);
  ck_assert_int_eq(g.nodes[g.output].rank, 1);
  ck_assert_int_eq(g.nodes[g.output].shape[0], 10);
  ck_assert_int_eq(g.num_classes, 10);
  ck_assert_int_eq(g.scale_input_norm, 0);
  const ae_node *gap = find_node(&g, "head/gap");
  ck_assert_ptr_nonnull(gap);
  ck_assert_int_eq(gap->shape[0], 64);
  const ae_node *c = find_node(&g, "stage1/cell3/edge2/conv");
  ck_assert_ptr_nonnull(c);
  ck_assert_int_eq(c->shape[0], 32);
  ck_assert_int_eq(c->shape[1], 16);
  ck_assert_int_eq(c->shape[2], 16);
  ck_assert_double_eq(c->init_gain, 2.0); /* fed by ReLU */
  const ae_node *stem = find_node(&g, "stem/conv");
  ck_assert_ptr_nonnull(stem);
  ck_assert_double_eq(stem->init_gain, 1.0);
  const ae_node *sc = find_node(&g, "resblock2/shortcut/conv");
  ck_assert_ptr_nonnull(sc);
  ck_assert_int_eq(sc->shape[1], 8);
  ck_assert_double_eq(sc->init_gain, 1.0); /* fed by the pool */
  /* Forward FLOPs: every conv's 2 * Cin*k*k*Cout*H*W plus the head's
   * 64 x 10 weights and 10 bias adds (flops = 2 x macs). */
  double flops = 2.0 * (3 * 9 * 16 * 1024.0 + 30 * 16 * 9 * 16 * 1024.0 +
                        16 * 9 * 32 * 256.0 + 32 * 9 * 32 * 256.0 +
                        16 * 32 * 256.0 + 30 * 32 * 9 * 32 * 256.0 +
                        32 * 9 * 64 * 64.0 + 64 * 9 * 64 * 64.0 +
                        32 * 64 * 64.0 + 30 * 64 * 9 * 64 * 64.0 + 640 + 10);
  ck_assert_double_eq_tol(ae_graph_flops(&g), flops, 0.5);
  /* Copy is deep and equal. */
  ae_graph g2;
  ck_assert_int_eq(ae_graph_copy(&g, &g2), AE_OK);
  ck_assert_int_eq(g2.n_nodes, g.n_nodes);
  ck_assert_ptr_ne(g2.nodes, g.nodes);
  ck_assert_double_eq(ae_graph_params(&g2), 1531546.0);
  ae_graph_free(&g2);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

START_TEST(nb201_resnet_cell) {
  ae_arch a;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(
      parse("{\"type\":\"nb201\",\"cell\":\"" RESNET_CELL
            "\",\"channels\":8,\"cells_per_stage\":1,\"num_classes\":5}",
            &a, &p),
      AE_OK);
  ck_assert_int_eq(a.num_classes, 5);
  ck_assert_int_eq(a.dag.edges[1].kind, AE_EDGE_ZERO);
  ck_assert_int_eq(a.dag.edges[3].kind, AE_EDGE_SKIP);
  ae_graph g;
  int shape[3] = {3, 16, 16};
  ck_assert_int_eq(lower(&a, shape, 3, 10, 0, &g, &p), AE_OK);
  ck_assert_int_eq(g.num_classes, 5); /* the arch's own count wins */
  /* Two convs per cell, 3 cells; stem 3*9*8+16; cells (64*9+16)*2 at 8,
   * (256*9+32)*2 at 16, (1024*9+64)*2 at 32; resblocks (8*9*16+32) +
   * (16*9*16+32) + 8*16 and (16*9*32+64) + (32*9*32+64) + 16*32; head
   * 64 + 32*5+5. */
  double expect = 232 + 1184 + 4672 + 18560 + (1184 + 2336 + 128) +
                  (4672 + 9280 + 512) + 64 + 165;
  ck_assert_double_eq(ae_graph_params(&g), expect);
  ck_assert_int_eq(count_op(&g, AE_OP_CONV), 6 + 1 + 6);
  ae_graph_free(&g);
  /* The probe: one C=1 cell on 1x3x3 crops, no stem. */
  int probe_shape[3] = {1, 3, 3};
  ck_assert_int_eq(lower(&a, probe_shape, 3, 10, 1, &g, &p), AE_OK);
  ck_assert_ptr_null(find_node(&g, "stem/conv"));
  ck_assert_int_eq(count_op(&g, AE_OP_CONV), 2);
  /* convs 9 + 9, their BNs 2 + 2, head BN 2, linear 1*5+5. */
  ck_assert_double_eq(ae_graph_params(&g), 18 + 4 + 2 + 10);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

START_TEST(nb201_none_node_is_zero) {
  ae_arch a;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(
      parse("{\"type\":\"nb201\",\"cell\":\"|none~0|+|none~0|none~1|+|"
            "avg_pool_3x3~0|none~1|skip_connect~2|\",\"cells_per_stage\":1}",
            &a, &p),
      AE_OK);
  ae_graph g;
  int shape[3] = {3, 8, 8};
  ck_assert_int_eq(lower(&a, shape, 3, 10, 0, &g, &p), AE_OK);
  ck_assert_int_eq(count_op(&g, AE_OP_ZERO), 2 * 3);
  const ae_node *pool = find_node(&g, "stage0/cell0/edge3/avg_pool");
  ck_assert_ptr_nonnull(pool);
  ck_assert_int_eq(pool->count_include_pad, 0);
  ck_assert_int_eq(pool->kernel, 3);
  ck_assert_int_eq(pool->padding, 1);
  ck_assert_int_eq(pool->shape[1], 8);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

START_TEST(nb201_bad_cells) {
  static const char *bad[] = {
      "|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|",
      "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
      "|none~0|+|none~0|none~1|+|none~0|none~1|",
      "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|",
      "none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
      "|none~0||+|none~0|none~1|+|none~0|none~1|none~2|",
      "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ae_arch a;
    ae_problem p = AE_PROBLEM_INIT;
    char text[512];
    snprintf(text, sizeof text, "{\"type\":\"nb201\",\"cell\":\"%s\"}", bad[i]);
    ck_assert_int_eq(parse(text, &a, &p), AE_EINVAL);
    ck_assert_msg(has_pointer(&p, "/architecture/cell"), "cell %zu", i);
    ck_assert_int_eq(p.status, 422);
    if (i == 0) ck_assert_ptr_nonnull(strstr(p.errors[0].detail, "5x5"));
    ae_problem_clear(&p);
  }
}
END_TEST

START_TEST(mlp_dag_2_21_112) {
  ae_arch a;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(parse("{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\"}", &a, &p),
                   AE_OK);
  ck_assert_int_eq(a.width, 256);
  ck_assert_int_eq(a.bias, 0);
  ck_assert_int_eq(a.dag.n_nodes, 4);
  ck_assert_int_eq(a.dag.n_edges, 6);
  static const int kinds[6] = {2, 2, 1, 1, 1, 2};
  static const int srcs[6] = {0, 0, 1, 0, 1, 2}, dsts[6] = {1, 2, 2, 3, 3, 3};
  for (int e = 0; e < 6; e++) {
    ck_assert_int_eq(a.dag.edges[e].kind, kinds[e]);
    ck_assert_int_eq(a.dag.edges[e].src, srcs[e]);
    ck_assert_int_eq(a.dag.edges[e].dst, dsts[e]);
  }
  ae_graph g;
  int shape[1] = {784};
  ck_assert_int_eq(lower(&a, shape, 1, 10, 0, &g, &p), AE_OK);
  /* stem 784*256 + 3 linear edges 256*256 + readout 256*10. */
  ck_assert_double_eq(ae_graph_params(&g), 200704.0 + 3 * 65536 + 2560);
  ck_assert_double_eq(ae_graph_flops(&g), 2.0 * (200704 + 3 * 65536 + 2560));
  ck_assert_int_eq(count_op(&g, AE_OP_LINEAR), 5);
  ck_assert_int_eq(count_op(&g, AE_OP_ACT), 3);
  ck_assert_int_eq(count_op(&g, AE_OP_IDENTITY), 3);
  ck_assert_int_eq(g.scale_input_norm, 1);
  ck_assert_int_eq(g.num_classes, 10);
  for (int i = 0; i < g.n_nodes; i++) {
    const ae_node *n = &g.nodes[i];
    if (n->op != AE_OP_LINEAR) continue;
    int fed_by_act = g.nodes[n->inputs[0]].op == AE_OP_ACT;
    ck_assert_double_eq(n->init_gain, fed_by_act ? 2.0 : 1.0);
  }
  ae_graph_free(&g);
  /* Image data is flattened first; the probe has width 16. */
  int img[3] = {1, 3, 3};
  ck_assert_int_eq(lower(&a, img, 3, 10, 1, &g, &p), AE_OK);
  ck_assert_int_eq(g.nodes[1].op, AE_OP_FLATTEN);
  ck_assert_double_eq(ae_graph_params(&g), 9 * 16 + 3 * 256 + 160);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

START_TEST(mlp_dag_activations_and_errors) {
  ae_arch a;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(
      parse("{\"type\":\"mlp_dag\",\"dag\":\"2_02\",\"bias\":true,\"width\":"
            "8,\"activation\":[\"tanh\",{\"fn\":\"leaky_relu\",\"slope\":0.2}"
            "]}",
            &a, &p),
      AE_OK);
  ck_assert_int_eq(a.dag.edges[0].act.fn, AE_ACT_TANH);
  ck_assert_int_eq(a.dag.edges[2].act.fn, AE_ACT_LEAKY_RELU);
  ck_assert_double_eq(a.dag.edges[2].act.slope, 0.2);
  ae_graph g;
  int shape[1] = {4};
  ck_assert_int_eq(lower(&a, shape, 1, 3, 0, &g, &p), AE_OK);
  /* stem 4*8+8, two edges 8*8+8, readout 8*3+3 */
  ck_assert_double_eq(ae_graph_params(&g), 40 + 2 * 72 + 27);
  const ae_node *lin = find_node(&g, "node2/edge1/linear");
  ck_assert_ptr_nonnull(lin);
  ck_assert_double_eq_tol(lin->init_gain, 2.0 / 1.04, 1e-12);
  ae_graph_free(&g);
  ae_arch_free(&a);

  ck_assert_int_eq(parse("{\"type\":\"mlp_dag\",\"dag\":\"2_21_12\"}", &a, &p),
                   AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/dag"));
  ae_problem_clear(&p);
  ck_assert_int_eq(parse("{\"type\":\"mlp_dag\",\"dag\":\"2_02\","
                         "\"activation\":[\"relu\"]}",
                         &a, &p),
                   AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/activation"));
  ae_problem_clear(&p);
  ck_assert_int_eq(parse("{\"type\":\"mlp_dag\",\"dag\":\"2\","
                         "\"activation\":\"softplus\",\"widht\":3}",
                         &a, &p),
                   AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/activation"));
  ck_assert(has_pointer(&p, "/architecture/widht"));
  ae_problem_clear(&p);
}
END_TEST

#define CNN_GRAPH                                                              \
  "{\"type\":\"graph\",\"output\":\"fc\",\"nodes\":["                          \
  "{\"id\":\"fc\",\"op\":\"linear\",\"inputs\":[\"gap\"],\"out\":10},"         \
  "{\"id\":\"c1\",\"op\":\"conv\",\"inputs\":[\"input\"],\"out\":8,"           \
  "\"kernel\":3,\"padding\":1},"                                               \
  "{\"id\":\"bn\",\"op\":\"batch_norm\",\"inputs\":[\"c1\"]},"                 \
  "{\"id\":\"r\",\"op\":\"act\",\"inputs\":[\"bn\"],\"fn\":\"relu\"},"         \
  "{\"id\":\"c2\",\"op\":\"conv\",\"inputs\":[\"r\"],\"out\":8,"               \
  "\"kernel\":3,\"padding\":1},"                                               \
  "{\"id\":\"sum\",\"op\":\"add\",\"inputs\":[\"c2\",\"c1\"]},"                \
  "{\"id\":\"pool\",\"op\":\"avg_pool\",\"inputs\":[\"sum\"],\"kernel\":2},"   \
  "{\"id\":\"gap\",\"op\":\"global_avg_pool\",\"inputs\":[\"pool\"]},"         \
  "{\"id\":\"dead\",\"op\":\"linear\",\"inputs\":[\"gap\"],\"out\":99}"        \
  "]}"

START_TEST(graph_cnn) {
  ae_arch a;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(parse(CNN_GRAPH, &a, &p), AE_OK);
  /* input + 8 reachable nodes, topologically sorted; "dead" dropped. */
  ck_assert_int_eq(a.graph.n_nodes, 9);
  for (int i = 1; i < a.graph.n_nodes; i++)
    for (int k = 0; k < a.graph.nodes[i].n_inputs; k++)
      ck_assert_int_lt(a.graph.nodes[i].inputs[k], i);
  ck_assert_str_eq(a.graph.nodes[a.graph.output].name, "fc");
  ck_assert_int_eq(a.graph.nodes[a.graph.output].src_index, 0);
  ae_graph g;
  int shape[3] = {3, 8, 8};
  ck_assert_int_eq(lower(&a, shape, 3, 10, 0, &g, &p), AE_OK);
  /* c1 3*9*8, bn 16, c2 8*9*8, fc 8*10 */
  ck_assert_double_eq(ae_graph_params(&g), 216 + 16 + 576 + 80);
  ck_assert_int_eq(g.scale_input_norm, 0);
  const ae_node *pool = find_node(&g, "pool");
  ck_assert_int_eq(pool->stride, 2);
  ck_assert_int_eq(pool->shape[1], 4);
  ck_assert_double_eq(find_node(&g, "c2")->init_gain, 2.0);
  ck_assert_double_eq(find_node(&g, "c1")->init_gain, 1.0);
  ae_graph_free(&g);
  /* A 7x7 image still works (pool floors). */
  int odd[3] = {3, 7, 7};
  ck_assert_int_eq(lower(&a, odd, 3, 10, 0, &g, &p), AE_OK);
  ae_graph_free(&g);
  /* Rank-1 data cannot feed a conv: the error names the node. */
  int flat[1] = {12};
  ck_assert_int_eq(lower(&a, flat, 1, 10, 0, &g, &p), AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/nodes/1"));
  ae_problem_clear(&p);
  ae_arch_free(&a);
}
END_TEST

START_TEST(graph_errors) {
  struct {
    const char *json, *pointer;
  } cases[] = {
      {"{\"type\":\"graph\",\"output\":\"a\",\"nodes\":[{\"id\":\"a\","
       "\"op\":\"identity\",\"inputs\":[\"b\"]},{\"id\":\"b\",\"op\":"
       "\"identity\",\"inputs\":[\"a\"]}]}",
       "/architecture/nodes/0"},
      {"{\"type\":\"graph\",\"output\":\"a\",\"nodes\":[{\"id\":\"a\","
       "\"op\":\"identity\",\"inputs\":[\"input\"]},{\"id\":\"a\",\"op\":"
       "\"identity\",\"inputs\":[\"input\"]}]}",
       "/architecture/nodes/1/id"},
      {"{\"type\":\"graph\",\"output\":\"d\",\"nodes\":[{\"id\":\"a\","
       "\"op\":\"identity\",\"inputs\":[\"input\"]},{\"id\":\"b\",\"op\":"
       "\"flatten\",\"inputs\":[\"a\"]},{\"id\":\"c\",\"op\":\"linear\","
       "\"out\":3,\"inputs\":[\"b\"]},{\"id\":\"d\",\"op\":\"add\","
       "\"inputs\":[\"c\",\"nope\"]}]}",
       "/architecture/nodes/3/inputs/1"},
      {"{\"type\":\"graph\",\"output\":\"a\",\"nodes\":[{\"id\":\"a\","
       "\"op\":\"linear\",\"out\":3,\"inputs\":[\"input\"],\"kernel\":3}]}",
       "/architecture/nodes/0/kernel"},
      {"{\"type\":\"graph\",\"output\":\"a\",\"nodes\":[{\"id\":\"input\","
       "\"op\":\"identity\",\"inputs\":[\"input\"]}]}",
       "/architecture/nodes/0/id"},
      {"{\"type\":\"graph\",\"output\":\"zz\",\"nodes\":[{\"id\":\"a\","
       "\"op\":\"identity\",\"inputs\":[\"input\"]}]}",
       "/architecture/output"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ae_arch a;
    ae_problem p = AE_PROBLEM_INIT;
    ck_assert_int_eq(parse(cases[i].json, &a, &p), AE_EINVAL);
    ck_assert_msg(has_pointer(&p, cases[i].pointer), "case %zu: %s", i,
                  p.n_errors ? p.errors[0].pointer : "(none)");
    ae_problem_clear(&p);
  }
  /* Shape mismatch in an add names the add node. */
  ae_arch a;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(
      parse("{\"type\":\"graph\",\"output\":\"s\",\"nodes\":[{\"id\":\"l\","
            "\"op\":\"linear\",\"out\":3,\"inputs\":[\"input\"]},{\"id\":"
            "\"s\",\"op\":\"add\",\"inputs\":[\"l\",\"input\"]}]}",
            &a, &p),
      AE_OK);
  ae_graph g;
  int shape[1] = {4};
  ck_assert_int_eq(lower(&a, shape, 1, 10, 0, &g, &p), AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/nodes/1"));
  ae_problem_clear(&p);
  ae_arch_free(&a);
  /* Too many parameters names the biggest node. */
  lim.max_params = 100;
  ck_assert_int_eq(
      parse("{\"type\":\"graph\",\"output\":\"b\",\"nodes\":[{\"id\":\"a\","
            "\"op\":\"linear\",\"out\":3,\"inputs\":[\"input\"]},{\"id\":"
            "\"b\",\"op\":\"linear\",\"out\":300,\"inputs\":[\"a\"]}]}",
            &a, &p),
      AE_OK);
  ck_assert_int_eq(lower(&a, shape, 1, 10, 0, &g, &p), AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/nodes/1"));
  ae_problem_clear(&p);
  ae_arch_free(&a);
}
END_TEST

/* Simpson's rule for E[sigma(z)^2], independent of the library's
 * Gauss-Legendre rule. */
static double simpson_moment(double (*f)(double)) {
  const int n = 200000;
  const double lo = -20, hi = 20, h = (hi - lo) / n;
  double sum = 0;
  for (int i = 0; i <= n; i++) {
    double z = lo + i * h, s = f(z);
    double w = (i == 0 || i == n) ? 1 : (i % 2 ? 4 : 2);
    sum += w * s * s * exp(-0.5 * z * z);
  }
  return sum * h / 3 / sqrt(2 * M_PI);
}

static double f_tanh(double z) {
  return tanh(z);
}
static double f_sigmoid(double z) {
  return 1 / (1 + exp(-z));
}
static double f_swish(double z) {
  return z / (1 + exp(-z));
}
static double f_gelu(double z) {
  return 0.5 * z * erfc(-z / sqrt(2.0));
}
static double f_erf(double z) {
  return erf(z);
}

START_TEST(activation_moments) {
  ae_activation relu = {AE_ACT_RELU, 0.01};
  ck_assert_double_eq(ae_act_second_moment(relu), 0.5);
  ck_assert_double_eq(ae_act_c_sigma(relu), 2.0);
  ae_activation leaky = {AE_ACT_LEAKY_RELU, 0.2};
  ck_assert_double_eq_tol(ae_act_second_moment(leaky), 0.52, 1e-15);
  ae_activation id = {AE_ACT_IDENTITY, 0};
  ck_assert_double_eq(ae_act_c_sigma(id), 1.0);
  struct {
    ae_act_fn fn;
    double (*f)(double);
  } smooth[] = {{AE_ACT_TANH, f_tanh},
                {AE_ACT_SIGMOID, f_sigmoid},
                {AE_ACT_SWISH, f_swish},
                {AE_ACT_GELU, f_gelu},
                {AE_ACT_ERF, f_erf}};
  for (size_t i = 0; i < 5; i++) {
    ae_activation a = {smooth[i].fn, 0.01};
    double ref = simpson_moment(smooth[i].f);
    ck_assert_msg(fabs(ae_act_second_moment(a) - ref) < 1e-12,
                  "%s: %.16g vs %.16g", ae_act_name(a.fn),
                  ae_act_second_moment(a), ref);
  }
  /* erf's closed form (2/pi) asin(2/3); tanh's known value. */
  ae_activation erfa = {AE_ACT_ERF, 0};
  ck_assert_double_eq_tol(ae_act_second_moment(erfa), 0.4645590543, 1e-9);
  ae_act_fn fn;
  ck_assert_int_eq(ae_act_from_name("gelu", &fn), AE_OK);
  ck_assert_int_eq(fn, AE_ACT_GELU);
  ck_assert_int_eq(ae_act_from_name("softplus", &fn), AE_EINVAL);
  ck_assert_str_eq(ae_act_name(AE_ACT_LEAKY_RELU), "leaky_relu");
  ck_assert(ae_act_is_piecewise_linear(AE_ACT_LEAKY_RELU));
  ck_assert(!ae_act_is_piecewise_linear(AE_ACT_TANH));
}
END_TEST

static Suite *arch_suite(void) {
  Suite *s = suite_create("api_arch");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_add_test(tc, nb201_all_conv3x3_params);
  tcase_add_test(tc, nb201_resnet_cell);
  tcase_add_test(tc, nb201_none_node_is_zero);
  tcase_add_test(tc, nb201_bad_cells);
  tcase_add_test(tc, mlp_dag_2_21_112);
  tcase_add_test(tc, mlp_dag_activations_and_errors);
  tcase_add_test(tc, graph_cnn);
  tcase_add_test(tc, graph_errors);
  tcase_add_test(tc, activation_moments);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(arch_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
