/* test_api_cells.c: the benchmark-cell architectures nb101 and darts
 * (api/arch_cells.c, their lowerings in api/lower.c, their canonical forms
 * in api/canon.c).
 *
 * Parameter counts are held to the counts the benchmarks and their users
 * published (tests/data/cells/published.json names each source; the
 * PyTorch references tests/ref/nb101_torch.py and darts_torch.py agree
 * with the same file in tests/ref/test_cells_torch.py).  The rest checks
 * structure that would break if the lowering were wrong (channel split and
 * truncation, reductions, FactorizedReduce), every validation error's
 * pointer, the three darts forms against each other and the canonical
 * keys.  Single-threaded. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/canon.h"
#include "api/status.h"

static ae_limits lim;

static void setup(void) {
  ae_limits_default(&lim);
}

static int parse_json(const json_t *j, ae_arch *a, ae_problem *p) {
  return ae_arch_from_json(j, "/architecture", &lim, a, p);
}

static int parse(const char *text, ae_arch *a, ae_problem *p) {
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  ck_assert_msg(j != NULL, "bad test JSON: %s", err.text);
  int rc = parse_json(j, a, p);
  json_decref(j);
  return rc;
}

static int has_pointer(const ae_problem *p, const char *ptr) {
  for (size_t i = 0; i < p->n_errors; i++)
    if (strcmp(p->errors[i].pointer, ptr) == 0) return 1;
  return 0;
}

/* Lowers for CIFAR-shaped data (3x32x32, 10 classes) with the ops no
 * executor runs yet allowed. */
static int lower(const ae_arch *a, ae_graph *g, ae_problem *p) {
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.input_shape[0] = 3;
  o.input_shape[1] = o.input_shape[2] = 32;
  o.input_rank = 3;
  o.num_classes = 10;
  o.allow_unexecutable = 1;
  return ae_arch_lower(a, &o, &lim, "/architecture", g, p);
}

static double params_of(const char *text) {
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(parse(text, &a, &p), AE_OK);
  ae_graph g;
  ck_assert_int_eq(lower(&a, &g, &p), AE_OK);
  double n = ae_graph_params(&g);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
  return n;
}

static const ae_node *find_node(const ae_graph *g, const char *name) {
  for (int i = 0; i < g->n_nodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

static int count_op(const ae_graph *g, int op) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++)
    n += (int)g->nodes[i].op == op;
  return n;
}

static json_t *load_published(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/data/cells/published.json", AE_SRCDIR);
  json_error_t err;
  json_t *j = json_load_file(path, 0, &err);
  ck_assert_msg(j != NULL, "%s: %s", path, err.text);
  return j;
}

/* Whether count matches published at the stated precision. */
static int matches(double count, double published, const char *precision) {
  if (strcmp(precision, "exact") == 0) return count == published;
  if (strcmp(precision, "truncated_0.01M") == 0)
    return floor(count / 1e4) * 1e4 == published;
  if (strcmp(precision, "rounded_0.1M") == 0)
    return round(count / 1e5) * 1e5 == published;
  ck_abort_msg("unknown precision %s", precision);
  return 0;
}

/* ---- published parameter counts ---- */

START_TEST(nb101_published_counts) {
  json_t *doc = load_published();
  size_t i;
  json_t *cell;
  json_array_foreach(json_object_get(doc, "nb101"), i, cell) {
    json_t *arch = json_pack("{s:s, s:O, s:O}", "type", "nb101", "matrix",
                             json_object_get(cell, "matrix"), "ops",
                             json_object_get(cell, "ops"));
    char *text = json_dumps(arch, 0);
    double n = params_of(text);
    double published = json_number_value(json_object_get(cell, "published"));
    ck_assert_msg(
        matches(n, published,
                json_string_value(json_object_get(cell, "precision"))),
        "%s: %.0f parameters, published %.0f (%s)",
        json_string_value(json_object_get(cell, "name")), n, published,
        json_string_value(json_object_get(cell, "source")));
    free(text);
    json_decref(arch);
  }
  /* 43 cells: three quoted by the benchmark's users, 39 more of the
   * dataset's own records (nasbench-vis; 6 of them 6-vertex cells), the
   * Inception-like cell in the dataset's vertex order. */
  ck_assert_int_ge(i, 43);
  json_decref(doc);
}
END_TEST

START_TEST(darts_published_counts) {
  json_t *doc = load_published();
  size_t i;
  json_t *cell;
  json_array_foreach(json_object_get(doc, "darts"), i, cell) {
    json_t *arch = json_pack("{s:s, s:O}", "type", "darts", "genotype",
                             json_object_get(cell, "genotype"));
    char *text = json_dumps(arch, 0);
    double n = params_of(text);
    double published = json_number_value(json_object_get(cell, "published"));
    ck_assert_msg(
        matches(n, published,
                json_string_value(json_object_get(cell, "precision"))),
        "%s: %.0f parameters, published %.0f (%s)",
        json_string_value(json_object_get(cell, "name")), n, published,
        json_string_value(json_object_get(cell, "source")));
    free(text);
    json_decref(arch);
  }
  ck_assert_int_ge(i, 5);
  json_decref(doc);
}
END_TEST

/* ---- nb101 structure ---- */

#define INCEPTION_MATRIX                                                       \
  "[[0,1,1,1,0,1,0],[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],[0,0,0,0,1,0,0],"          \
  "[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],[0,0,0,0,0,0,0]]"
#define INCEPTION_OPS                                                          \
  "[\"input\",\"conv1x1-bn-relu\",\"conv3x3-bn-relu\",\"conv3x3-bn-relu\","    \
  "\"conv3x3-bn-relu\",\"maxpool3x3\",\"output\"]"

/* The Inception-like cell: 4 vertices feed the output, so 128 channels
 * split 32 each, vertex 3 (feeding vertex 4 only) gets 32 too; no
 * truncation; the input feeds 4 vertices through 1x1 projections. */
START_TEST(nb101_channel_split) {
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(parse("{\"type\":\"nb101\",\"matrix\":" INCEPTION_MATRIX
                         ",\"ops\":" INCEPTION_OPS "}",
                         &a, &p),
                   AE_OK);
  ck_assert_int_eq(a.nb101_vertices, 7);
  ae_graph g;
  ck_assert_int_eq(lower(&a, &g, &p), AE_OK);
  const ae_node *v1 = find_node(&g, "stack0/cell0/vertex1/conv");
  ck_assert_ptr_nonnull(v1);
  ck_assert_int_eq(v1->out, 32);
  ck_assert_int_eq(v1->kernel, 1);
  const ae_node *cat = find_node(&g, "stack0/cell0/output/concat");
  ck_assert_ptr_nonnull(cat);
  ck_assert_int_eq(cat->n_inputs, 4);
  ck_assert_int_eq(cat->shape[0], 128);
  ck_assert_int_eq(count_op(&g, AE_OP_SLICE), 0);
  /* Stack 2's cells are at 512 channels on 8x8; the dense has 512x10+10. */
  const ae_node *last = find_node(&g, "stack2/cell2/output/concat");
  ck_assert_ptr_nonnull(last);
  ck_assert_int_eq(last->shape[0], 512);
  ck_assert_int_eq(last->shape[1], 8);
  ck_assert_int_eq(count_op(&g, AE_OP_MAX_POOL), 9 + 2);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

/* Three vertices feed the output: 128 = 43 + 43 + 42; vertex 1 (43)
 * feeding vertex 3 (42) is truncated by one channel, as
 * model_builder.truncate does. */
START_TEST(nb101_truncation) {
  const char *text =
      "{\"type\":\"nb101\",\"matrix\":[[0,1,1,0,0],[0,0,0,1,1],[0,0,0,0,1],"
      "[0,0,0,0,1],[0,0,0,0,0]],\"ops\":[\"input\",\"conv3x3-bn-relu\","
      "\"conv3x3-bn-relu\",\"conv1x1-bn-relu\",\"output\"]}";
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(parse(text, &a, &p), AE_OK);
  ae_graph g;
  ck_assert_int_eq(lower(&a, &g, &p), AE_OK);
  ck_assert_int_eq(find_node(&g, "stack0/cell0/vertex1/conv")->out, 43);
  ck_assert_int_eq(find_node(&g, "stack0/cell0/vertex2/conv")->out, 43);
  ck_assert_int_eq(find_node(&g, "stack0/cell0/vertex3/conv")->out, 42);
  const ae_node *s = find_node(&g, "stack0/cell0/vertex3/truncate1/slice");
  ck_assert_ptr_nonnull(s);
  ck_assert_int_eq(s->shape[0], 42);
  ck_assert_int_eq(s->shape[1], 32);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

/* Vertices off every input-output path are pruned (nasbench's
 * ModelSpec): the same network as the cell without them. */
START_TEST(nb101_pruning) {
  double pruned = params_of(
      "{\"type\":\"nb101\",\"matrix\":[[0,1,1,0],[0,0,0,1],[0,0,0,0],"
      "[0,0,0,0]],\"ops\":[\"input\",\"conv3x3-bn-relu\",\"maxpool3x3\","
      "\"output\"]}");
  double direct =
      params_of("{\"type\":\"nb101\",\"matrix\":[[0,1,0],[0,0,1],[0,0,0]],"
                "\"ops\":[\"input\",\"conv3x3-bn-relu\",\"output\"]}");
  ck_assert_double_eq(pruned, direct);
  /* Input straight to output: a 1x1 projection per cell. */
  double skip = params_of("{\"type\":\"nb101\",\"matrix\":[[0,1],[0,0]],"
                          "\"ops\":[\"input\",\"output\"],\"stacks\":1,"
                          "\"cells_per_stack\":1,\"stem_channels\":4}");
  /* stem 3*3*3*4 + 8; projection 4*4 + 8; dense 4*10 + 10 */
  ck_assert_double_eq(skip, 108 + 8 + 16 + 8 + 40 + 10);
}
END_TEST

START_TEST(nb101_validation) {
  static const struct {
    const char *text, *pointer;
  } bad[] = {
      {"{\"type\":\"nb101\",\"matrix\":[[0,1],[0,0],[0,0]],\"ops\":[\"input\","
       "\"output\"]}",
       "/architecture/matrix/0"},
      {"{\"type\":\"nb101\",\"matrix\":[[0,1],[1,0]],\"ops\":[\"input\","
       "\"output\"]}",
       "/architecture/matrix/1/0"},
      {"{\"type\":\"nb101\",\"matrix\":[[0,2],[0,0]],\"ops\":[\"input\","
       "\"output\"]}",
       "/architecture/matrix/0/1"},
      {"{\"type\":\"nb101\",\"matrix\":[[0,1,0],[0,0,1],[0,0,0]],\"ops\":["
       "\"input\",\"conv5x5\",\"output\"]}",
       "/architecture/ops/1"},
      {"{\"type\":\"nb101\",\"matrix\":[[0,1,0],[0,0,1],[0,0,0]],\"ops\":["
       "\"input\",\"output\"]}",
       "/architecture/ops"},
      {"{\"type\":\"nb101\",\"matrix\":[[0,1,0],[0,0,0],[0,0,0]],\"ops\":["
       "\"input\",\"maxpool3x3\",\"output\"]}",
       "/architecture/matrix"},
      {"{\"type\":\"nb101\",\"matrix\":[[0,1,1,1,1,1,1],[0,0,1,1,1,1,1],"
       "[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],"
       "[0,0,0,0,0,0,0]],\"ops\":[\"input\",\"maxpool3x3\",\"maxpool3x3\","
       "\"maxpool3x3\",\"maxpool3x3\",\"maxpool3x3\",\"output\"]}",
       "/architecture/matrix"},
      {"{\"type\":\"nb101\",\"matrix\":[[0,1],[0,0]],\"ops\":[\"input\","
       "\"output\"],\"stacks\":0}",
       "/architecture/stacks"},
      {"{\"type\":\"nb101\",\"ops\":[\"input\",\"output\"]}",
       "/architecture/matrix"},
      {"{\"type\":\"nb101\",\"matrix\":[[0,1],[0,0]],\"ops\":[\"input\","
       "\"output\"],\"cells\":3}",
       "/architecture/cells"},
      {"{\"type\":\"nb101\",\"matrix\":" INCEPTION_MATRIX
       ",\"ops\":" INCEPTION_OPS ",\"stem_channels\":3}",
       "/architecture/stem_channels"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    ae_arch a;
    ae_problem p;
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(parse(bad[k].text, &a, &p), AE_EINVAL);
    ck_assert_msg(has_pointer(&p, bad[k].pointer), "case %zu: no error at %s",
                  k, bad[k].pointer);
    ae_problem_clear(&p);
  }
}
END_TEST

/* ---- darts ---- */

#define DARTS_V2_NORMAL                                                        \
  "[[\"sep_conv_3x3\",0],[\"sep_conv_3x3\",1],[\"sep_conv_3x3\",0],"           \
  "[\"sep_conv_3x3\",1],[\"sep_conv_3x3\",1],[\"skip_connect\",0],"            \
  "[\"skip_connect\",0],[\"dil_conv_3x3\",2]]"
#define DARTS_V2_REDUCE                                                        \
  "[[\"max_pool_3x3\",0],[\"max_pool_3x3\",1],[\"skip_connect\",2],"           \
  "[\"max_pool_3x3\",1],[\"max_pool_3x3\",0],[\"skip_connect\",2],"            \
  "[\"skip_connect\",2],[\"max_pool_3x3\",1]]"
#define DARTS_V2                                                               \
  "{\"type\":\"darts\",\"genotype\":{\"normal\":" DARTS_V2_NORMAL              \
  ",\"normal_concat\":[2,3,4,5],\"reduce\":" DARTS_V2_REDUCE                   \
  ",\"reduce_concat\":[2,3,4,5]}"

static void canon_key(const char *text, char key[65]) {
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(parse(text, &a, &p), AE_OK);
  ae_canon c;
  ck_assert_int_eq(ae_arch_canon(&a, &c), AE_OK);
  memcpy(key, c.key, 65);
  ae_canon_free(&c);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}

/* The genotype string DARTS prints and NAS-Bench-301's compact form parse
 * to the same network as the object form. */
START_TEST(darts_forms_agree) {
  const char *object = DARTS_V2 "}";
  const char *string =
      "{\"type\":\"darts\",\"genotype\":\"Genotype(normal=[('sep_conv_3x3', "
      "0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
      "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
      "('dil_conv_3x3', 2)], normal_concat=range(2, 6), "
      "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', "
      "2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), "
      "('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, "
      "5])\"}";
  /* NB301 op indices: max_pool 0, avg_pool 1, skip 2, sep3 3, sep5 4,
   * dil3 5, dil5 6; pairs are (input, op). */
  const char *compact =
      "{\"type\":\"darts\",\"compact\":[[[0,3],[1,3],[0,3],[1,3],[1,3],[0,2],"
      "[0,2],[2,5]],[[0,0],[1,0],[2,2],[1,0],[0,0],[2,2],[2,2],[1,0]]]}";
  double n = params_of(object);
  ck_assert_double_eq(n, 3349342);
  ck_assert_double_eq(params_of(string), n);
  ck_assert_double_eq(params_of(compact), n);
  char k1[65], k2[65], k3[65];
  canon_key(object, k1);
  canon_key(string, k2);
  canon_key(compact, k3);
  ck_assert_str_eq(k1, k2);
  ck_assert_str_eq(k1, k3);
}
END_TEST

/* The skeleton at C = 36, 20 layers: reductions at cells 6 and 13 with
 * FactorizedReduce preprocessing the cell after each; depthwise and
 * dilated convs as DARTS builds them. */
START_TEST(darts_structure) {
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(parse(DARTS_V2 "}", &a, &p), AE_OK);
  ae_graph g;
  ck_assert_int_eq(lower(&a, &g, &p), AE_OK);
  const ae_node *stem = find_node(&g, "stem/conv");
  ck_assert_int_eq(stem->out, 108);
  /* Cell 6 is a reduction cell: 16x16 at 72 channels per node. */
  const ae_node *c6 = find_node(&g, "cell6/concat");
  ck_assert_int_eq(c6->shape[0], 288);
  ck_assert_int_eq(c6->shape[1], 16);
  ck_assert_ptr_nonnull(find_node(&g, "cell7/preprocess0/shift"));
  ck_assert_ptr_null(find_node(&g, "cell8/preprocess0/shift"));
  const ae_node *c19 = find_node(&g, "cell19/concat");
  ck_assert_int_eq(c19->shape[0], 576);
  ck_assert_int_eq(c19->shape[1], 8);
  const ae_node *dw = find_node(&g, "cell0/node0/op0/a/depthwise");
  ck_assert_int_eq(dw->groups, 36);
  ck_assert_int_eq(dw->kernel, 3);
  const ae_node *dil = find_node(&g, "cell0/node3/op1/depthwise");
  ck_assert_int_eq(dil->dilation, 2);
  ck_assert_int_eq(dil->padding, 2);
  ck_assert_int_eq(dil->shape[1], 32);
  /* Block outputs: the stem and the 20 cells. */
  int *blocks, n_blocks;
  ck_assert_int_eq(ae_graph_block_outputs(&g, &blocks, &n_blocks), AE_OK);
  ck_assert_int_eq(n_blocks, 21);
  free(blocks);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

/* DARTS' reductions need even sizes: 2 reductions, 4 | H and W. */
START_TEST(darts_image_size) {
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(parse(DARTS_V2 ",\"layers\":3}", &a, &p), AE_OK);
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.input_shape[0] = 3;
  o.input_shape[1] = o.input_shape[2] = 30;
  o.input_rank = 3;
  o.num_classes = 10;
  o.allow_unexecutable = 1;
  ae_graph g;
  ck_assert_int_eq(ae_arch_lower(&a, &o, &lim, "/architecture", &g, &p),
                   AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture"));
  ae_problem_clear(&p);
  o.input_shape[1] = o.input_shape[2] = 28;
  ck_assert_int_eq(ae_arch_lower(&a, &o, &lim, "/architecture", &g, &p), AE_OK);
  ck_assert_int_eq(g.nodes[g.output].shape[0], 10);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

/* A node of two `none` ops is zero, shaped like the cell's reduced
 * output in a reduction cell. */
START_TEST(darts_none_nodes) {
  const char *text =
      "{\"type\":\"darts\",\"channels\":4,\"layers\":3,\"genotype\":{"
      "\"normal\":[[\"none\",0],[\"none\",1],[\"sep_conv_3x3\",0],"
      "[\"skip_connect\",2],[\"avg_pool_3x3\",1],[\"none\",3],"
      "[\"dil_conv_5x5\",4],[\"max_pool_3x3\",0]],"
      "\"reduce\":[[\"none\",0],[\"none\",1],[\"skip_connect\",0],"
      "[\"skip_connect\",2],[\"avg_pool_3x3\",1],[\"none\",3],"
      "[\"dil_conv_5x5\",4],[\"max_pool_3x3\",0]],\"reduce_concat\":[3,5]}}";
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(parse(text, &a, &p), AE_OK);
  ae_graph g;
  ck_assert_int_eq(lower(&a, &g, &p), AE_OK);
  const ae_node *z = find_node(&g, "cell1/node0/zero");
  ck_assert_ptr_nonnull(z);
  ck_assert_int_eq(z->shape[1], 16);
  /* reduce_concat [3, 5]: two nodes of 2C = 8 channels. */
  ck_assert_int_eq(find_node(&g, "cell1/concat")->shape[0], 16);
  ae_graph_free(&g);
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

START_TEST(darts_validation) {
  static const struct {
    const char *text, *pointer;
  } bad[] = {
      {"{\"type\":\"darts\"}", "/architecture/genotype"},
      {"{\"type\":\"darts\",\"genotype\":{\"normal\":" DARTS_V2_NORMAL "}}",
       "/architecture/genotype/reduce"},
      {"{\"type\":\"darts\",\"genotype\":{\"normal\":[[\"sep_conv_7x7\",0],"
       "[\"none\",1],[\"none\",0],[\"none\",1],[\"none\",0],[\"none\",1],"
       "[\"none\",0],[\"none\",1]],\"reduce\":" DARTS_V2_REDUCE "}}",
       "/architecture/genotype/normal/0"},
      {"{\"type\":\"darts\",\"genotype\":{\"normal\":[[\"none\",0],"
       "[\"none\",2],[\"none\",0],[\"none\",1],[\"none\",0],[\"none\",1],"
       "[\"none\",0],[\"none\",1]],\"reduce\":" DARTS_V2_REDUCE "}}",
       "/architecture/genotype/normal/1"},
      {"{\"type\":\"darts\",\"genotype\":{\"normal\":" DARTS_V2_NORMAL
       ",\"normal_concat\":[1],\"reduce\":" DARTS_V2_REDUCE "}}",
       "/architecture/genotype/normal_concat/0"},
      {"{\"type\":\"darts\",\"genotype\":{\"normal\":" DARTS_V2_NORMAL
       ",\"reduce\":" DARTS_V2_REDUCE ",\"reduce_concat\":[2,2]}}",
       "/architecture/genotype/reduce_concat/1"},
      {"{\"type\":\"darts\",\"genotype\":\"Genotype(normal=[('sep_conv_3x3', "
       "0)])\"}",
       "/architecture/genotype"},
      {"{\"type\":\"darts\",\"compact\":[[[0,9]]]}", "/architecture/compact"},
      {"{\"type\":\"darts\",\"compact\":[[[0,3],[1,3],[0,3],[1,3],[1,3],[0,2],"
       "[0,2],[2,7]],[[0,0],[1,0],[2,2],[1,0],[0,0],[2,2],[2,2],[1,0]]]}",
       "/architecture/compact/0/7"},
      {DARTS_V2 ",\"channels\":1}", "/architecture/channels"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    ae_arch a;
    ae_problem p;
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(parse(bad[k].text, &a, &p), AE_EINVAL);
    ck_assert_msg(has_pointer(&p, bad[k].pointer),
                  "case %zu: no error at %s (first: %s)", k, bad[k].pointer,
                  p.n_errors ? p.errors[0].pointer : "none");
    ae_problem_clear(&p);
  }
}
END_TEST

/* ---- canonical keys ---- */

/* Swapping two interior vertices of an nb101 cell (and its node order in
 * a darts cell) keeps the key; another op changes it. */
START_TEST(cells_canonical_keys) {
  char k1[65], k2[65], k3[65];
  canon_key("{\"type\":\"nb101\",\"matrix\":[[0,1,1,0],[0,0,0,1],[0,0,0,1],"
            "[0,0,0,0]],\"ops\":[\"input\",\"conv3x3-bn-relu\","
            "\"maxpool3x3\",\"output\"]}",
            k1);
  canon_key("{\"type\":\"nb101\",\"matrix\":[[0,1,1,0],[0,0,0,1],[0,0,0,1],"
            "[0,0,0,0]],\"ops\":[\"input\",\"maxpool3x3\","
            "\"conv3x3-bn-relu\",\"output\"]}",
            k2);
  canon_key("{\"type\":\"nb101\",\"matrix\":[[0,1,1,0],[0,0,0,1],[0,0,0,1],"
            "[0,0,0,0]],\"ops\":[\"input\",\"conv1x1-bn-relu\","
            "\"maxpool3x3\",\"output\"]}",
            k3);
  ck_assert_str_eq(k1, k2);
  ck_assert_str_ne(k1, k3);
  /* DARTS: nodes 0 and 1 both read the cell inputs only; swapped (with
   * their uses) they are the same cell. */
  canon_key("{\"type\":\"darts\",\"genotype\":{\"normal\":[[\"sep_conv_3x3\","
            "0],[\"sep_conv_5x5\",1],[\"max_pool_3x3\",0],[\"skip_connect\","
            "1],[\"sep_conv_3x3\",2],[\"dil_conv_3x3\",3],[\"none\",4],"
            "[\"skip_connect\",2]],\"reduce\":" DARTS_V2_REDUCE "}}",
            k1);
  canon_key("{\"type\":\"darts\",\"genotype\":{\"normal\":[[\"skip_connect\","
            "1],[\"max_pool_3x3\",0],[\"sep_conv_5x5\",1],[\"sep_conv_3x3\","
            "0],[\"dil_conv_3x3\",2],[\"sep_conv_3x3\",3],[\"skip_connect\","
            "3],[\"none\",4]],\"reduce\":" DARTS_V2_REDUCE "}}",
            k2);
  ck_assert_str_eq(k1, k2);
  char k4[65];
  canon_key(DARTS_V2 "}", k4);
  ck_assert_str_ne(k1, k4);
  canon_key(DARTS_V2 ",\"channels\":16}", k3);
  ck_assert_str_ne(k3, k4);
}
END_TEST

/* Without allow_unexecutable the lowering accepts what the executors run
 * (every op these networks use), or refuses with a 422 unsupported. */
START_TEST(cells_unexecutable_refused) {
  ae_arch a;
  ae_problem p;
  memset(&p, 0, sizeof p);
  ck_assert_int_eq(parse(DARTS_V2 "}", &a, &p), AE_OK);
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.input_shape[0] = 3;
  o.input_shape[1] = o.input_shape[2] = 32;
  o.input_rank = 3;
  o.num_classes = 10;
  ae_graph g;
  int rc = ae_arch_lower(&a, &o, &lim, "/architecture", &g, &p);
  char why[256];
  if (rc == AE_OK) { /* the executors learnt every op this network uses */
    ck_assert_int_eq(ae_graph_first_unexecutable_op(&g, why, sizeof why), -1);
    ae_graph_free(&g);
  } else {
    ck_assert_int_eq(rc, AE_EUNSUPPORTED);
    ck_assert_int_eq(p.status, 422);
  }
  ae_arch_free(&a);
  ae_problem_clear(&p);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("api_cells");
  TCase *tc = tcase_create("cells");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, nb101_published_counts);
  tcase_add_test(tc, darts_published_counts);
  tcase_add_test(tc, nb101_channel_split);
  tcase_add_test(tc, nb101_truncation);
  tcase_add_test(tc, nb101_pruning);
  tcase_add_test(tc, nb101_validation);
  tcase_add_test(tc, darts_forms_agree);
  tcase_add_test(tc, darts_structure);
  tcase_add_test(tc, darts_none_nodes);
  tcase_add_test(tc, darts_image_size);
  tcase_add_test(tc, darts_validation);
  tcase_add_test(tc, cells_canonical_keys);
  tcase_add_test(tc, cells_unexecutable_refused);
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
