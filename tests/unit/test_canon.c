/* test_canon.c: canonical forms and keys (api/canon.c).
 *
 * Hand cases for each architecture type (dead ops, zero inputs, swapped
 * isomorphic nodes, renamed and reordered graph nodes, sharing, fields
 * outside the cell), then the census of all 15,625 NB201 cells: the
 * library's keys must partition the cells exactly as an independent
 * brute-force canonical form written here does (every labelling of the
 * live ops tried, the smallest text kept), and the counts are printed next
 * to NAS-Bench-201's own expression-tree rule for comparison.  Random
 * relabellings of mlp_dag strings and graphs must keep the key, and
 * mlp_dags that share a key must have the same infinite-width NNGP and NTK
 * (gpu/analytic), a check of the rules against the math.
 * Single-threaded; each test owns what it allocates. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/canon.h"
#include "api/sha256.h"
#include "api/status.h"
#include "gpu/analytic/analytic.h"

/* ---- helpers ---- */

typedef struct {
  char key[65];
  char form[2048];
  int degenerate;
} canon_result;

/* Parses a JSON architecture and returns its canonical key and form. */
static canon_result canon_json(const char *text) {
  ae_limits lim;
  ae_limits_default(&lim);
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  ck_assert_msg(j != NULL, "bad test JSON: %s", err.text);
  ae_problem p = AE_PROBLEM_INIT;
  ae_arch a;
  int rc = ae_arch_from_json(j, "/architecture", &lim, &a, &p);
  ck_assert_msg(rc == AE_OK, "rejected: %s: %s", text,
                p.n_errors ? p.errors[0].detail : "?");
  json_decref(j);
  ae_problem_clear(&p);
  ae_canon c;
  ck_assert_int_eq(ae_arch_canon(&a, &c), AE_OK);
  canon_result r;
  snprintf(r.key, sizeof r.key, "%s", c.key);
  snprintf(r.form, sizeof r.form, "%s", c.form);
  r.degenerate = c.degenerate;
  ck_assert_uint_eq(strlen(c.key), 64);
  ae_canon_free(&c);
  ae_arch_free(&a);
  return r;
}

static canon_result nb201(const char *cell) {
  char text[512];
  snprintf(text, sizeof text, "{\"type\":\"nb201\",\"cell\":\"%s\"}", cell);
  return canon_json(text);
}

#define SAME(x, y)                                                             \
  do {                                                                         \
    canon_result a_ = (x), b_ = (y);                                           \
    ck_assert_msg(!strcmp(a_.key, b_.key), "expected one key:\n%s\n%s",        \
                  a_.form, b_.form);                                           \
    ck_assert_str_eq(a_.form, b_.form);                                        \
  } while (0)

#define DIFFERENT(x, y)                                                        \
  do {                                                                         \
    canon_result a_ = (x), b_ = (y);                                           \
    ck_assert_msg(strcmp(a_.key, b_.key) != 0, "expected two keys:\n%s\n%s",   \
                  a_.form, b_.form);                                           \
  } while (0)

/* ---- nb201 ---- */

START_TEST(nb201_dead_ops_share_a_key) {
  /* Node 1 feeds nothing: whatever its op, the network is the same. */
  const char *ops[] = {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                       "avg_pool_3x3"};
  canon_result first = nb201("|none~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|"
                             "none~1|nor_conv_3x3~2|");
  for (int k = 1; k < 5; k++) {
    char cell[256];
    snprintf(cell, sizeof cell,
             "|%s~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|"
             "nor_conv_3x3~2|",
             ops[k]);
    SAME(first, nb201(cell));
  }
  /* Ops on a zero input contribute nothing either. */
  SAME(nb201("|none~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|"
             "avg_pool_3x3~1|nor_conv_1x1~2|"),
       nb201("|none~0|+|skip_connect~0|none~1|+|none~0|none~1|"
             "nor_conv_1x1~2|"));
}
END_TEST

START_TEST(nb201_swapped_nodes_share_a_key) {
  /* Nodes 1 and 2 both read the input only; swapping them (and the edges
   * into node 3) is a relabelling. */
  canon_result a = nb201("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|"
                         "nor_conv_1x1~1|avg_pool_3x3~2|");
  canon_result b = nb201("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|"
                         "avg_pool_3x3~1|nor_conv_1x1~2|");
  SAME(a, b);
  /* A different op on a live edge is another network. */
  DIFFERENT(a, nb201("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|"
                     "nor_conv_1x1~1|nor_conv_3x3~2|"));
  DIFFERENT(a, nb201("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|"
                     "nor_conv_3x3~1|avg_pool_3x3~2|"));
}
END_TEST

START_TEST(nb201_sharing_and_parameter_free_ops) {
  /* c1(c3(x; W2)) + c3(x; W1) has two conv3x3 weights, c1(c3(x; W)) +
   * c3(x; W) one: one expression tree, two networks. */
  DIFFERENT(nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|"
                  "skip_connect~1|nor_conv_1x1~2|"),
            nb201("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|none~0|"
                  "skip_connect~1|skip_connect~2|"));
  /* Two avg_pools of x are one value (no parameters): reading it twice or
   * reading two copies is the same network. */
  SAME(nb201("|avg_pool_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|"
             "nor_conv_1x1~1|nor_conv_1x1~2|"),
       nb201("|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|"
             "nor_conv_1x1~1|nor_conv_1x1~2|"));
  /* The same with convs is not: two independent convs differ from one. */
  DIFFERENT(nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|"
                  "nor_conv_1x1~1|nor_conv_1x1~2|"),
            nb201("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|"
                  "nor_conv_1x1~1|nor_conv_1x1~2|"));
  /* x + x is not x. */
  DIFFERENT(nb201("|skip_connect~0|+|none~0|none~1|+|skip_connect~0|"
                  "skip_connect~1|none~2|"),
            nb201("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"));
}
END_TEST

START_TEST(nb201_degenerate_cells_are_one_class) {
  canon_result zero = nb201("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|");
  ck_assert_int_eq(zero.degenerate, 1);
  canon_result dead = nb201("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|"
                            "+|none~0|none~1|none~2|");
  ck_assert_int_eq(dead.degenerate, 1);
  SAME(zero, dead);
  canon_result live = nb201("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|"
                            "none~2|");
  ck_assert_int_eq(live.degenerate, 0);
  DIFFERENT(zero, live);
}
END_TEST

START_TEST(nb201_skeleton_fields_are_in_the_key) {
  const char *cell = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|"
                     "nor_conv_1x1~1|avg_pool_3x3~2|";
  char a[512], b[512];
  snprintf(a, sizeof a, "{\"type\":\"nb201\",\"cell\":\"%s\"}", cell);
  snprintf(b, sizeof b,
           "{\"type\":\"nb201\",\"cell\":\"%s\",\"channels\":16,"
           "\"cells_per_stage\":5}",
           cell);
  SAME(canon_json(a), canon_json(b)); /* defaults are explicit */
  snprintf(b, sizeof b, "{\"type\":\"nb201\",\"cell\":\"%s\",\"channels\":8}",
           cell);
  DIFFERENT(canon_json(a), canon_json(b));
  snprintf(b, sizeof b,
           "{\"type\":\"nb201\",\"cell\":\"%s\",\"cells_per_stage\":3}", cell);
  DIFFERENT(canon_json(a), canon_json(b));
  snprintf(b, sizeof b,
           "{\"type\":\"nb201\",\"cell\":\"%s\",\"num_classes\":100}", cell);
  DIFFERENT(canon_json(a), canon_json(b));
}
END_TEST

/* ---- mlp_dag ---- */

START_TEST(mlp_dag_relabelling_and_fields) {
  /* n1 = W tanh(h0), n2 = W relu(h0), out = n1 + W gelu(n2); the same with
   * nodes 1 and 2 swapped. */
  canon_result a = canon_json("{\"type\":\"mlp_dag\",\"dag\":\"2_20_012\","
                              "\"activation\":[\"tanh\",\"relu\",\"gelu\"]}");
  SAME(a, canon_json("{\"type\":\"mlp_dag\",\"dag\":\"2_20_021\","
                     "\"activation\":[\"relu\",\"tanh\",\"gelu\"]}"));
  DIFFERENT(a, canon_json("{\"type\":\"mlp_dag\",\"dag\":\"2_20_021\","
                          "\"activation\":[\"tanh\",\"relu\",\"gelu\"]}"));
  DIFFERENT(a, canon_json("{\"type\":\"mlp_dag\",\"dag\":\"2_20_012\","
                          "\"activation\":[\"tanh\",\"relu\",\"gelu\"],"
                          "\"width\":128}"));
  DIFFERENT(a, canon_json("{\"type\":\"mlp_dag\",\"dag\":\"2_20_012\","
                          "\"activation\":[\"tanh\",\"relu\",\"gelu\"],"
                          "\"bias\":true}"));
  DIFFERENT(
      canon_json("{\"type\":\"mlp_dag\",\"dag\":\"2_02\","
                 "\"activation\":{\"fn\":\"leaky_relu\",\"slope\":0.1}}"),
      canon_json("{\"type\":\"mlp_dag\",\"dag\":\"2_02\","
                 "\"activation\":{\"fn\":\"leaky_relu\",\"slope\":0.2}}"));
  /* Dead nodes vanish. */
  SAME(canon_json("{\"type\":\"mlp_dag\",\"dag\":\"2_22_100\"}"),
       canon_json("{\"type\":\"mlp_dag\",\"dag\":\"0_00_100\"}"));
}
END_TEST

START_TEST(mlp_dag_zero_inputs) {
  /* Node 1 is zero; the linear edge 2<-1 sees zeros.  relu(0) = 0 without a
   * bias: nothing.  sigmoid(0) = 1/2, or a bias: a term that stays. */
  SAME(canon_json("{\"type\":\"mlp_dag\",\"dag\":\"0_12\"}"),
       canon_json("{\"type\":\"mlp_dag\",\"dag\":\"0_10\"}"));
  DIFFERENT(canon_json("{\"type\":\"mlp_dag\",\"dag\":\"0_12\","
                       "\"activation\":\"sigmoid\"}"),
            canon_json("{\"type\":\"mlp_dag\",\"dag\":\"0_10\","
                       "\"activation\":\"sigmoid\"}"));
  DIFFERENT(canon_json("{\"type\":\"mlp_dag\",\"dag\":\"0_12\","
                       "\"bias\":true}"),
            canon_json("{\"type\":\"mlp_dag\",\"dag\":\"0_10\","
                       "\"bias\":true}"));
  canon_result z = canon_json("{\"type\":\"mlp_dag\",\"dag\":\"2_00\"}");
  ck_assert_int_eq(z.degenerate, 1);
}
END_TEST

/* ---- graph ---- */

/* The ops graph_to_dag does not model (max_pool, concat, mul, pad; grouped
 * or dilated convs) are keyed by the graph's nodes as they are: what
 * follows a max_pool counts (it was once read as zero, which gave ResNet-18
 * and DenseNet-121 one key and one cached result), a depthwise conv is not
 * a dense one, and the same text gives the same key. */
#define POOLED(after)                                                          \
  "{\"type\":\"graph\",\"output\":\"fc\",\"nodes\":["                          \
  "{\"id\":\"c\",\"op\":\"conv\",\"inputs\":[\"input\"],\"out\":4,"            \
  "\"kernel\":3,\"padding\":1},"                                               \
  "{\"id\":\"m\",\"op\":\"max_pool\",\"inputs\":[\"c\"],\"kernel\":2},"        \
  "{\"id\":\"d\",\"op\":\"conv\",\"inputs\":[\"m\"],\"out\":4,"                \
  "\"kernel\":3,\"padding\":1" after "},"                                      \
  "{\"id\":\"g\",\"op\":\"global_avg_pool\",\"inputs\":[\"d\"]},"              \
  "{\"id\":\"fc\",\"op\":\"linear\",\"out\":10,\"inputs\":[\"g\"]}]}"

START_TEST(graph_ops_beyond_the_sum_form_are_keyed_as_written) {
  canon_result a = canon_json(POOLED(""));
  canon_result a2 = canon_json(POOLED(""));
  canon_result b = canon_json(POOLED(",\"groups\":4"));
  canon_result c = canon_json(POOLED(",\"dilation\":2,\"padding\":2"));
  SAME(a, a2);
  DIFFERENT(a, b);
  DIFFERENT(a, c);
  DIFFERENT(b, c);
}
END_TEST

START_TEST(graph_renamed_and_reordered_nodes_share_a_key) {
  /* Two branches summed, then a head; the second text renames every id,
   * lists the nodes in another order and the add's inputs swapped. */
  canon_result a = canon_json(
      "{\"type\":\"graph\",\"output\":\"fc\",\"nodes\":["
      "{\"id\":\"c1\",\"op\":\"conv\",\"inputs\":[\"input\"],\"out\":8,"
      "\"kernel\":3,\"padding\":1},"
      "{\"id\":\"p\",\"op\":\"avg_pool\",\"inputs\":[\"input\"],"
      "\"kernel\":3,\"stride\":1,\"padding\":1},"
      "{\"id\":\"c2\",\"op\":\"conv\",\"inputs\":[\"p\"],\"out\":8,"
      "\"kernel\":1},"
      "{\"id\":\"s\",\"op\":\"add\",\"inputs\":[\"c1\",\"c2\"]},"
      "{\"id\":\"r\",\"op\":\"act\",\"fn\":\"relu\",\"inputs\":[\"s\"]},"
      "{\"id\":\"g\",\"op\":\"global_avg_pool\",\"inputs\":[\"r\"]},"
      "{\"id\":\"fc\",\"op\":\"linear\",\"out\":10,\"inputs\":[\"g\"]}]}");
  canon_result b = canon_json(
      "{\"type\":\"graph\",\"output\":\"head\",\"nodes\":["
      "{\"id\":\"pool\",\"op\":\"avg_pool\",\"inputs\":[\"input\"],"
      "\"kernel\":3,\"stride\":1,\"padding\":1},"
      "{\"id\":\"right\",\"op\":\"conv\",\"inputs\":[\"pool\"],\"out\":8,"
      "\"kernel\":1},"
      "{\"id\":\"sum\",\"op\":\"add\",\"inputs\":[\"right\",\"left\"]},"
      "{\"id\":\"left\",\"op\":\"conv\",\"inputs\":[\"input\"],\"out\":8,"
      "\"kernel\":3,\"padding\":1},"
      "{\"id\":\"gap\",\"op\":\"global_avg_pool\",\"inputs\":[\"relu\"]},"
      "{\"id\":\"relu\",\"op\":\"act\",\"fn\":\"relu\",\"inputs\":[\"sum\"]},"
      "{\"id\":\"head\",\"op\":\"linear\",\"out\":10,\"inputs\":[\"flat\"]},"
      "{\"id\":\"flat\",\"op\":\"flatten\",\"inputs\":[\"id\"]},"
      "{\"id\":\"id\",\"op\":\"identity\",\"inputs\":[\"gap\"]},"
      "{\"id\":\"unused\",\"op\":\"conv\",\"inputs\":[\"input\"],\"out\":4,"
      "\"kernel\":1}]}");
  SAME(a, b);
  /* A different kernel on one branch is another network. */
  DIFFERENT(
      a, canon_json("{\"type\":\"graph\",\"output\":\"fc\",\"nodes\":["
                    "{\"id\":\"c1\",\"op\":\"conv\",\"inputs\":[\"input\"],"
                    "\"out\":8,\"kernel\":1},"
                    "{\"id\":\"p\",\"op\":\"avg_pool\",\"inputs\":[\"input\"],"
                    "\"kernel\":3,\"stride\":1,\"padding\":1},"
                    "{\"id\":\"c2\",\"op\":\"conv\",\"inputs\":[\"p\"],"
                    "\"out\":8,\"kernel\":1},"
                    "{\"id\":\"s\",\"op\":\"add\",\"inputs\":[\"c1\",\"c2\"]},"
                    "{\"id\":\"r\",\"op\":\"act\",\"fn\":\"relu\","
                    "\"inputs\":[\"s\"]},"
                    "{\"id\":\"g\",\"op\":\"global_avg_pool\","
                    "\"inputs\":[\"r\"]},"
                    "{\"id\":\"fc\",\"op\":\"linear\",\"out\":10,"
                    "\"inputs\":[\"g\"]}]}"));
}
END_TEST

START_TEST(graph_gain_zero_and_density) {
  /* relu -> linear draws W with gain 2; relu -> identity -> linear with
   * gain 1 (lower.c): different networks at initialisation. */
  canon_result direct = canon_json(
      "{\"type\":\"graph\",\"output\":\"o\",\"nodes\":["
      "{\"id\":\"h\",\"op\":\"linear\",\"out\":16,\"inputs\":[\"input\"]},"
      "{\"id\":\"r\",\"op\":\"act\",\"fn\":\"relu\",\"inputs\":[\"h\"]},"
      "{\"id\":\"o\",\"op\":\"linear\",\"out\":10,\"inputs\":[\"r\"]}]}");
  DIFFERENT(direct,
            canon_json("{\"type\":\"graph\",\"output\":\"o\",\"nodes\":["
                       "{\"id\":\"h\",\"op\":\"linear\",\"out\":16,"
                       "\"inputs\":[\"input\"]},"
                       "{\"id\":\"r\",\"op\":\"act\",\"fn\":\"relu\","
                       "\"inputs\":[\"h\"]},"
                       "{\"id\":\"i\",\"op\":\"identity\",\"inputs\":[\"r\"]},"
                       "{\"id\":\"o\",\"op\":\"linear\",\"out\":10,"
                       "\"inputs\":[\"i\"]}]}"));
  /* A branch fed by zero adds nothing... */
  SAME(direct,
       canon_json("{\"type\":\"graph\",\"output\":\"o\",\"nodes\":["
                  "{\"id\":\"h\",\"op\":\"linear\",\"out\":16,"
                  "\"inputs\":[\"input\"]},"
                  "{\"id\":\"z\",\"op\":\"zero\",\"inputs\":[\"h\"]},"
                  "{\"id\":\"l\",\"op\":\"linear\",\"out\":16,"
                  "\"inputs\":[\"z\"]},"
                  "{\"id\":\"s\",\"op\":\"add\",\"inputs\":[\"h\",\"l\"]},"
                  "{\"id\":\"r\",\"op\":\"act\",\"fn\":\"relu\","
                  "\"inputs\":[\"s\"]},"
                  "{\"id\":\"o\",\"op\":\"linear\",\"out\":10,"
                  "\"inputs\":[\"r\"]}]}"));
  /* ...unless it has a bias, or it is a batch norm that makes the graph
   * non-dense (inputs are then not norm-scaled). */
  DIFFERENT(direct,
            canon_json("{\"type\":\"graph\",\"output\":\"o\",\"nodes\":["
                       "{\"id\":\"h\",\"op\":\"linear\",\"out\":16,"
                       "\"inputs\":[\"input\"]},"
                       "{\"id\":\"z\",\"op\":\"zero\",\"inputs\":[\"h\"]},"
                       "{\"id\":\"l\",\"op\":\"linear\",\"out\":16,"
                       "\"bias\":true,\"inputs\":[\"z\"]},"
                       "{\"id\":\"s\",\"op\":\"add\",\"inputs\":[\"h\","
                       "\"l\"]},"
                       "{\"id\":\"r\",\"op\":\"act\",\"fn\":\"relu\","
                       "\"inputs\":[\"s\"]},"
                       "{\"id\":\"o\",\"op\":\"linear\",\"out\":10,"
                       "\"inputs\":[\"r\"]}]}"));
  DIFFERENT(direct,
            canon_json("{\"type\":\"graph\",\"output\":\"o\",\"nodes\":["
                       "{\"id\":\"h\",\"op\":\"linear\",\"out\":16,"
                       "\"inputs\":[\"input\"]},"
                       "{\"id\":\"z\",\"op\":\"zero\",\"inputs\":[\"h\"]},"
                       "{\"id\":\"l\",\"op\":\"batch_norm\","
                       "\"inputs\":[\"z\"]},"
                       "{\"id\":\"s\",\"op\":\"add\",\"inputs\":[\"h\","
                       "\"l\"]},"
                       "{\"id\":\"r\",\"op\":\"act\",\"fn\":\"relu\","
                       "\"inputs\":[\"s\"]},"
                       "{\"id\":\"o\",\"op\":\"linear\",\"out\":10,"
                       "\"inputs\":[\"r\"]}]}"));
  /* Types never share keys, even for one network. */
  DIFFERENT(canon_json("{\"type\":\"mlp_dag\",\"dag\":\"1\"}"),
            canon_json("{\"type\":\"nb201\",\"cell\":\"|skip_connect~0|+|"
                       "none~0|skip_connect~1|+|none~0|none~1|"
                       "skip_connect~2|\"}"));
}
END_TEST

START_TEST(graph_twins_and_deep_sums) {
  /* k identical convs of x summed: every order is one key (automorphic
   * twins), and 2 such convs differ from 3. */
  char a[8192], b[8192];
  const int k = 12;
  for (int pass = 0; pass < 2; pass++) {
    char *t = pass ? b : a;
    size_t len = 0, cap = sizeof a;
    len += (size_t)snprintf(t + len, cap - len,
                            "{\"type\":\"graph\",\"output\":\"s\","
                            "\"nodes\":[");
    for (int i = 0; i < k; i++) {
      int id = pass ? k - 1 - i : i;
      len += (size_t)snprintf(t + len, cap - len,
                              "{\"id\":\"c%d\",\"op\":\"conv\",\"out\":4,"
                              "\"kernel\":%d,\"inputs\":[\"input\"]},",
                              id, 1 + 2 * (id % 2));
    }
    len += (size_t)snprintf(t + len, cap - len,
                            "{\"id\":\"s\",\"op\":\"add\",\"inputs\":[");
    for (int i = 0; i < k; i++)
      len += (size_t)snprintf(t + len, cap - len, "%s\"c%d\"", i ? "," : "",
                              pass ? (i * 5) % k : i);
    snprintf(t + len, cap - len, "]}]}");
  }
  SAME(canon_json(a), canon_json(b));
  /* A deep chain of self-sums (x_{i+1} = x_i + x_i) counts 2^40 copies
   * of x without storing them. */
  char *deep = malloc(1 << 16);
  ck_assert_ptr_nonnull(deep);
  size_t len = (size_t)snprintf(deep, 1 << 16,
                                "{\"type\":\"graph\",\"output\":\"x40\","
                                "\"nodes\":[{\"id\":\"x0\",\"op\":\"identity\","
                                "\"inputs\":[\"input\"]}");
  for (int i = 1; i <= 40; i++)
    len += (size_t)snprintf(deep + len, (1 << 16) - len,
                            ",{\"id\":\"x%d\",\"op\":\"add\",\"inputs\":"
                            "[\"x%d\",\"x%d\"]}",
                            i, i - 1, i - 1);
  snprintf(deep + len, (1 << 16) - len, "]}");
  canon_result r = canon_json(deep);
  free(deep);
  ck_assert_msg(strstr(r.form, "out=1099511627776*n0") != NULL, "%s", r.form);
}
END_TEST

START_TEST(form_is_the_documented_text) {
  /* c1(c3(x)) + c3(x), with the c3 shared: nodes by depth, inputs by
   * canonical index, the key is the SHA-256 of the text. */
  canon_result r = nb201("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|none~0|"
                         "skip_connect~1|skip_connect~2|");
  ck_assert_str_eq(r.form, "canon/1 nb201 channels=16 cells_per_stage=5 "
                           "num_classes=0; cell: n1=nor_conv_3x3(n0); "
                           "n2=nor_conv_1x1(n1); out=n1+n2");
  char hex[65];
  ae_sha256_hex(r.form, strlen(r.form), hex);
  ck_assert_str_eq(r.key, hex);
  r = nb201("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|"
            "avg_pool_3x3~0|none~1|skip_connect~2|");
  ck_assert_str_eq(r.form, "canon/1 nb201 channels=16 cells_per_stage=5 "
                           "num_classes=0; cell: n1=avg_pool_3x3(n0); "
                           "out=2*n0+n1");
}
END_TEST

/* A small deterministic generator for the random cases (xorshift64*). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static unsigned rnd(unsigned n) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (unsigned)((rng_state * 0x2545f4914f6cdd1dULL) >> 33) % n;
}

START_TEST(mlp_dag_random_relabellings_keep_the_key) {
  /* H = 5 nodes after the stem; the 4 intermediate nodes are relabelled
   * by every permutation that keeps edges going forward. */
  enum { H = 5 };
  static const char *const acts[] = {"relu", "tanh", "gelu", "sigmoid"};
  int moved = 0;
  for (int trial = 0; trial < 200; trial++) {
    int kind[H + 1][H + 1], act[H + 1][H + 1];
    memset(kind, 0, sizeof kind);
    memset(act, 0, sizeof act);
    for (int t = 1; t <= H; t++)
      for (int s2 = 0; s2 < t; s2++) {
        kind[s2][t] = (int)rnd(3);
        act[s2][t] = (int)rnd(4);
      }
    char first_key[65] = "";
    /* All 24 orders of nodes 1..4: perm = the new label of each old node
     * (the stem 0 and the output 5 stay). */
    for (int code = 0; code < 256; code++) {
      int perm[H + 1] = {
          0, 1 + code % 4, 1 + code / 4 % 4, 1 + code / 16 % 4, 1 + code / 64,
          H};
      int used = 0;
      for (int v = 1; v < H; v++)
        used |= 1 << perm[v];
      if (used != 0x1e) continue; /* not a permutation */
      int forward = 1;
      for (int t = 1; t <= H; t++)
        for (int s2 = 0; s2 < t; s2++)
          if (kind[s2][t] && perm[s2] >= perm[t]) forward = 0;
      if (!forward) continue;
      int old[H + 1];
      for (int v = 0; v <= H; v++)
        old[perm[v]] = v;
      char dag[64], acts_json[512];
      size_t dl = 0, al = 0;
      acts_json[0] = '\0';
      for (int t = 1; t <= H; t++) {
        if (t > 1) dag[dl++] = '_';
        for (int s2 = 0; s2 < t; s2++) {
          int os = old[s2], ot = old[t];
          int k = os < ot ? kind[os][ot] : 0; /* edges only go forward */
          dag[dl++] = (char)('0' + k);
          if (k == AE_EDGE_LINEAR)
            al +=
                (size_t)snprintf(acts_json + al, sizeof acts_json - al,
                                 "%s\"%s\"", al ? "," : "", acts[act[os][ot]]);
        }
      }
      dag[dl] = '\0';
      char text[1024];
      snprintf(text, sizeof text, "{\"type\":\"mlp_dag\",\"dag\":\"%s\"%s%s%s}",
               dag, al ? ",\"activation\":[" : "", acts_json, al ? "]" : "");
      canon_result r = canon_json(text);
      if (!first_key[0])
        memcpy(first_key, r.key, sizeof first_key);
      else
        ck_assert_msg(!strcmp(first_key, r.key), "relabelled %s: %s", text,
                      r.form);
      moved += code != 0 + 1 * 4 + 2 * 16 + 3 * 64; /* not the identity */
    }
  }
  printf("mlp_dag relabellings checked: %d\n", moved);
  ck_assert_int_gt(moved, 100);
}
END_TEST

START_TEST(graph_random_shuffles_keep_the_key) {
  /* Random DAGs of conv, pool, act, batch_norm and add, written with ids
   * renamed and the nodes listed in a random order. */
  enum { N = 14 };
  for (int trial = 0; trial < 100; trial++) {
    int op[N], in[N][3], n_in[N], kernel[N];
    for (int v = 0; v < N; v++) {
      op[v] = (int)rnd(5);
      kernel[v] = 1 + 2 * (int)rnd(2);
      n_in[v] = op[v] == 4 ? 2 + (int)rnd(2) : 1;
      for (int k = 0; k < n_in[v]; k++)
        in[v][k] = (int)rnd((unsigned)v + 1) - 1; /* -1 = input */
    }
    char first_key[65] = "";
    for (int pass = 0; pass < 4; pass++) {
      int order[N], name[N];
      for (int v = 0; v < N; v++)
        order[v] = name[v] = v;
      if (pass > 0)
        for (int v = N - 1; v > 0; v--) {
          int j = (int)rnd((unsigned)v + 1), t = order[v];
          order[v] = order[j];
          order[j] = t;
          j = (int)rnd((unsigned)v + 1);
          t = name[v];
          name[v] = name[j];
          name[j] = t;
        }
      char text[8192];
      size_t len = (size_t)snprintf(text, sizeof text,
                                    "{\"type\":\"graph\",\"output\":\"v%d\","
                                    "\"nodes\":[",
                                    name[N - 1] * 7 + pass);
      for (int k = 0; k < N; k++) {
        int v = order[k];
        static const char *const ops[] = {"conv", "avg_pool", "act",
                                          "batch_norm", "add"};
        len += (size_t)snprintf(text + len, sizeof text - len,
                                "%s{\"id\":\"v%d\",\"op\":\"%s\"", k ? "," : "",
                                name[v] * 7 + pass, ops[op[v]]);
        if (op[v] == 0)
          len += (size_t)snprintf(text + len, sizeof text - len,
                                  ",\"out\":3,\"kernel\":%d,\"padding\":%d",
                                  kernel[v], kernel[v] / 2);
        if (op[v] == 1)
          len += (size_t)snprintf(text + len, sizeof text - len,
                                  ",\"kernel\":%d,\"stride\":1,\"padding\":%d",
                                  kernel[v], kernel[v] / 2);
        if (op[v] == 2)
          len +=
              (size_t)snprintf(text + len, sizeof text - len, ",\"fn\":\"%s\"",
                               kernel[v] > 1 ? "relu" : "tanh");
        len += (size_t)snprintf(text + len, sizeof text - len, ",\"inputs\":[");
        /* An add's inputs in a rotated order on later passes. */
        for (int k2 = 0; k2 < n_in[v]; k2++) {
          int src = in[v][(k2 + pass) % n_in[v]];
          if (src < 0)
            len += (size_t)snprintf(text + len, sizeof text - len,
                                    "%s\"input\"", k2 ? "," : "");
          else
            len += (size_t)snprintf(text + len, sizeof text - len, "%s\"v%d\"",
                                    k2 ? "," : "", name[src] * 7 + pass);
        }
        len += (size_t)snprintf(text + len, sizeof text - len, "]}");
      }
      snprintf(text + len, sizeof text - len, "]}");
      ck_assert_uint_lt(len + 3, sizeof text);
      canon_result r = canon_json(text);
      if (!first_key[0])
        memcpy(first_key, r.key, sizeof first_key);
      else
        ck_assert_msg(!strcmp(first_key, r.key), "shuffled: %s", r.form);
    }
  }
}
END_TEST

START_TEST(mlp_dag_equal_keys_have_equal_kernels) {
  /* Every H = 3 DAG (729) with relu, then with sigmoid (whose zero inputs
   * do not vanish): DAGs that share a key must share the infinite-width
   * NNGP and NTK on three inputs. */
  enum { N = 3, DAGS = 729 };
  static const double K0[N * N] = {1.0, 0.3,  -0.2, 0.3, 1.5,
                                   0.4, -0.2, 0.4,  0.8};
  static const char *const acts[] = {"relu", "sigmoid"};
  typedef struct {
    char key[65];
    double K[N * N], T[N * N];
  } row;
  row *rows = calloc(DAGS, sizeof *rows);
  ck_assert_ptr_nonnull(rows);
  for (int pass = 0; pass < 2; pass++) {
    int pairs = 0;
    for (int i = 0; i < DAGS; i++) {
      char dag[16];
      int x = i, k = 0;
      for (int g = 1; g <= 3; g++) {
        if (g > 1) dag[k++] = '_';
        for (int d = 0; d < g; d++, x /= 3)
          dag[k++] = (char)('0' + x % 3);
      }
      dag[k] = '\0';
      char text[256];
      snprintf(text, sizeof text,
               "{\"type\":\"mlp_dag\",\"dag\":\"%s\",\"activation\":\"%s\"}",
               dag, acts[pass]);
      ae_limits lim;
      ae_limits_default(&lim);
      json_t *j = json_loads(text, 0, NULL);
      ck_assert_ptr_nonnull(j);
      ae_problem p = AE_PROBLEM_INIT;
      ae_arch a;
      ck_assert_int_eq(ae_arch_from_json(j, "", &lim, &a, &p), AE_OK);
      json_decref(j);
      ae_canon c;
      ck_assert_int_eq(ae_arch_canon(&a, &c), AE_OK);
      memcpy(rows[i].key, c.key, sizeof rows[i].key);
      ae_canon_free(&c);
      ck_assert_int_eq(
          ae_dag_kernels(&a.dag, K0, N, 1, rows[i].K, rows[i].T, NULL), AE_OK);
      ae_arch_free(&a);
      for (int m = 0; m < i; m++) {
        if (strcmp(rows[m].key, rows[i].key)) continue;
        for (int e = 0; e < N * N; e++) {
          ck_assert_double_eq_tol(rows[m].K[e], rows[i].K[e],
                                  1e-12 * (1 + fabs(rows[i].K[e])));
          ck_assert_double_eq_tol(rows[m].T[e], rows[i].T[e],
                                  1e-12 * (1 + fabs(rows[i].T[e])));
        }
        pairs++;
        break;
      }
    }
    ck_assert_int_gt(pairs, 100); /* the check compared something */
  }
  free(rows);
}
END_TEST

/* ---- the NB201 census, against an independent enumeration ---- */

/* The independent form.  Each cell is expanded into "units" (an edge with
 * a conv or pool whose input is not zero), a value being a vector of
 * counts over the input (slot 0) and the units (slots 1..6, one per edge);
 * two pools of one value are one unit.  The canonical text is the
 * smallest, over all orders of the live units, of the list "op(input
 * vector)" plus the output vector, written in that order's labels. */
enum { SLOTS = 7 };

typedef struct {
  int op;        /* ae_nb201_op of the unit */
  int in[SLOTS]; /* its input value */
  int live;
} unit;

static const char *const op_letter = "nsABP"; /* none skip 1x1 3x3 pool */

static int all_zero(const int *v) {
  for (int s = 0; s < SLOTS; s++)
    if (v[s]) return 0;
  return 1;
}

/* Writes the text of one labelling (perm[i] = the unit at position i). */
static void brute_text(const unit *u, const int *out, const int *perm,
                       int n_live, char *buf, size_t size) {
  int label[SLOTS] = {0};
  for (int i = 0; i < n_live; i++)
    label[perm[i]] = i + 1;
  size_t len = 0;
  for (int i = 0; i < n_live; i++) {
    const unit *x = &u[perm[i]];
    int by_label[SLOTS] = {0};
    by_label[0] = x->in[0];
    for (int s = 1; s < SLOTS; s++)
      if (x->in[s]) by_label[label[s]] = x->in[s];
    len += (size_t)snprintf(buf + len, size - len, "%c(", op_letter[x->op]);
    for (int s = 0; s < SLOTS; s++)
      len += (size_t)snprintf(buf + len, size - len, "%d,", by_label[s]);
    len += (size_t)snprintf(buf + len, size - len, ")");
  }
  int by_label[SLOTS] = {0};
  by_label[0] = out[0];
  for (int s = 1; s < SLOTS; s++)
    if (out[s]) by_label[label[s]] = out[s];
  len += (size_t)snprintf(buf + len, size - len, "=");
  for (int s = 0; s < SLOTS; s++)
    len += (size_t)snprintf(buf + len, size - len, "%d,", by_label[s]);
}

/* best = text when text is smaller (or best is empty). */
static void keep_smaller(char *best, const char *text, size_t size) {
  size_t len = strlen(text);
  ck_assert_uint_lt(len, size);
  if (!best[0] || strcmp(text, best) < 0) memcpy(best, text, len + 1);
}

/* Heap's algorithm over perm[0..n), keeping the smallest text in best. */
static void brute_min(const unit *u, const int *out, int *perm, int n,
                      char *best, char *buf, size_t size) {
  int c[SLOTS] = {0};
  brute_text(u, out, perm, n, buf, size);
  keep_smaller(best, buf, size);
  for (int i = 1; i < n;) {
    if (c[i] < i) {
      int j = i % 2 ? c[i] : 0, tmp = perm[j];
      perm[j] = perm[i];
      perm[i] = tmp;
      brute_text(u, out, perm, n, buf, size);
      keep_smaller(best, buf, size);
      c[i]++;
      i = 1;
    } else {
      c[i++] = 0;
    }
  }
}

static void brute_form(const int ops[6], char *best, size_t size) {
  static const int srcs[6] = {0, 0, 1, 0, 1, 2}, dsts[6] = {1, 2, 2, 3, 3, 3};
  int value[4][SLOTS];
  unit u[SLOTS];
  memset(value, 0, sizeof value);
  memset(u, 0, sizeof u);
  value[0][0] = 1;
  for (int e = 0; e < 6; e++) {
    const int *src = value[srcs[e]];
    int *dst = value[dsts[e]];
    if (ops[e] == AE_NB201_NONE || all_zero(src)) continue;
    if (ops[e] == AE_NB201_SKIP) {
      for (int s = 0; s < SLOTS; s++)
        dst[s] += src[s];
      continue;
    }
    int slot = e + 1;
    if (ops[e] == AE_NB201_POOL3X3)
      for (int s = 1; s < slot; s++)
        if (u[s].op == AE_NB201_POOL3X3 &&
            !memcmp(u[s].in, src, sizeof u[s].in))
          slot = s;
    if (slot == e + 1) {
      u[slot].op = ops[e];
      memcpy(u[slot].in, src, sizeof u[slot].in);
    }
    dst[slot] += 1;
  }
  /* Live units: reached backwards from the output. */
  for (int s = 1; s < SLOTS; s++)
    u[s].live = value[3][s] != 0;
  for (int s = SLOTS - 1; s >= 1; s--)
    if (u[s].live)
      for (int t = 1; t < s; t++)
        if (u[s].in[t]) u[t].live = 1;
  int perm[SLOTS], n = 0;
  for (int s = 1; s < SLOTS; s++)
    if (u[s].live) perm[n++] = s;
  char buf[512];
  best[0] = '\0';
  brute_min(u, value[3], perm, n, best, buf,
            size < sizeof buf ? size : sizeof buf);
}

/* NAS-Bench-201's CellStructure.to_unique_str(consider_zero=True), for
 * comparison: the expression tree of node 3, terms sorted as strings. */
static const char *const nb201_names[] = {
    "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"};

static int str_cmp(const void *x, const void *y) {
  return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static void nb201_unique_str(const int ops[6], char *out, size_t size) {
  static const int srcs[6] = {0, 0, 1, 0, 1, 2};
  char node[4][1024];
  snprintf(node[0], sizeof node[0], "0");
  int e = 0;
  for (int i = 1; i <= 3; i++) {
    char term[3][1024];
    const char *sorted[3];
    for (int k = 0; k < i; k++, e++) {
      const char *in = node[srcs[e]];
      if (ops[e] == AE_NB201_NONE || !strcmp(in, "#"))
        snprintf(term[k], sizeof term[k], "#");
      else if (ops[e] == AE_NB201_SKIP)
        snprintf(term[k], sizeof term[k], "%s", in);
      else
        snprintf(term[k], sizeof term[k], "(%.900s)@%s", in,
                 nb201_names[ops[e]]);
      sorted[k] = term[k];
    }
    qsort(sorted, (size_t)i, sizeof *sorted, str_cmp);
    size_t len = 0;
    node[i][0] = '\0';
    for (int k = 0; k < i; k++)
      len += (size_t)snprintf(node[i] + len, sizeof node[i] - len, "%s%.330s",
                              k ? "+" : "", sorted[k]);
  }
  snprintf(out, size, "%s", node[3]);
}

/* The expression tree with zeros dropped and sums flattened (the rule of
 * api.md's "Canonical form" text): a node is the sorted list of its
 * non-zero terms; it forgets which subexpressions are shared. */
enum { MAX_TERMS = 16 };

typedef struct {
  char term[MAX_TERMS][512];
  int n;
} term_list;

static void term_list_text(const term_list *t, char *out, size_t size) {
  const char *sorted[MAX_TERMS];
  for (int k = 0; k < t->n; k++)
    sorted[k] = t->term[k];
  qsort(sorted, (size_t)t->n, sizeof *sorted, str_cmp);
  size_t len = 0;
  out[0] = '\0';
  for (int k = 0; k < t->n; k++) {
    ck_assert_uint_lt(len + strlen(sorted[k]) + 1, size);
    len += (size_t)snprintf(out + len, size - len, "%s%s", k ? "+" : "",
                            sorted[k]);
  }
}

static void clean_tree_str(const int ops[6], char *out, size_t size) {
  static const int srcs[6] = {0, 0, 1, 0, 1, 2}, dsts[6] = {1, 2, 2, 3, 3, 3};
  static term_list node[4];
  memset(node, 0, sizeof node);
  snprintf(node[0].term[0], sizeof node[0].term[0], "x");
  node[0].n = 1;
  for (int e = 0; e < 6; e++) {
    term_list *src = &node[srcs[e]], *dst = &node[dsts[e]];
    if (ops[e] == AE_NB201_NONE || src->n == 0) continue;
    if (ops[e] == AE_NB201_SKIP) {
      for (int k = 0; k < src->n; k++) {
        ck_assert_int_lt(dst->n, MAX_TERMS);
        memcpy(dst->term[dst->n++], src->term[k], sizeof src->term[k]);
      }
      continue;
    }
    char inner[512];
    term_list_text(src, inner, sizeof inner);
    ck_assert_int_lt(dst->n, MAX_TERMS);
    ck_assert_uint_lt(strlen(inner) + 20, sizeof dst->term[0]);
    snprintf(dst->term[dst->n++], sizeof dst->term[0], "%c(%.480s)",
             op_letter[ops[e]], inner);
  }
  term_list_text(&node[3], out, size);
}

typedef struct {
  char brute[256];
  char key[65];
  char tree[1024];
  char clean[512];
} census_row;

static int by_brute(const void *x, const void *y) {
  return strcmp(((const census_row *)x)->brute, ((const census_row *)y)->brute);
}
static int by_key(const void *x, const void *y) {
  return strcmp(((const census_row *)x)->key, ((const census_row *)y)->key);
}
static int by_tree(const void *x, const void *y) {
  return strcmp(((const census_row *)x)->tree, ((const census_row *)y)->tree);
}
static int by_clean(const void *x, const void *y) {
  return strcmp(((const census_row *)x)->clean, ((const census_row *)y)->clean);
}

START_TEST(nb201_census_matches_brute_force) {
  enum { CELLS = 15625 };
  census_row *rows = calloc(CELLS, sizeof *rows);
  ck_assert_ptr_nonnull(rows);
  ae_arch a;
  memset(&a, 0, sizeof a);
  a.type = AE_ARCH_NB201;
  a.channels = 16;
  a.cells_per_stage = 5;
  int degenerate = 0;
  for (int c = 0; c < CELLS; c++) {
    int ops[6];
    char cell[256];
    for (int e = 0, x = c; e < 6; e++, x /= 5)
      ops[e] = x % 5;
    snprintf(cell, sizeof cell, "|%s~0|+|%s~0|%s~1|+|%s~0|%s~1|%s~2|",
             nb201_names[ops[0]], nb201_names[ops[1]], nb201_names[ops[2]],
             nb201_names[ops[3]], nb201_names[ops[4]], nb201_names[ops[5]]);
    /* Through the parser, as a request would come. */
    char text[512];
    snprintf(text, sizeof text, "{\"type\":\"nb201\",\"cell\":\"%s\"}", cell);
    canon_result r = canon_json(text);
    snprintf(rows[c].key, sizeof rows[c].key, "%s", r.key);
    degenerate += r.degenerate;
    brute_form(ops, rows[c].brute, sizeof rows[c].brute);
    nb201_unique_str(ops, rows[c].tree, sizeof rows[c].tree);
    clean_tree_str(ops, rows[c].clean, sizeof rows[c].clean);
  }
  /* Equal brute forms => equal keys... */
  qsort(rows, CELLS, sizeof *rows, by_brute);
  int n_brute = 0;
  for (int c = 0; c < CELLS; c++) {
    if (c == 0 || strcmp(rows[c].brute, rows[c - 1].brute)) {
      n_brute++;
    } else {
      ck_assert_msg(!strcmp(rows[c].key, rows[c - 1].key),
                    "brute force says one network, keys differ: %s",
                    rows[c].brute);
    }
  }
  /* ...and as many keys as brute forms: the same partition. */
  qsort(rows, CELLS, sizeof *rows, by_key);
  int n_keys = 0;
  for (int c = 0; c < CELLS; c++)
    n_keys += c == 0 || strcmp(rows[c].key, rows[c - 1].key);
  ck_assert_int_eq(n_keys, n_brute);
  /* Expression trees with zeros dropped forget sharing: they can only
   * merge more (equal keys => equal trees). */
  qsort(rows, CELLS, sizeof *rows, by_key);
  for (int c = 1; c < CELLS; c++)
    if (!strcmp(rows[c].key, rows[c - 1].key))
      ck_assert_str_eq(rows[c].clean, rows[c - 1].clean);
  qsort(rows, CELLS, sizeof *rows, by_clean);
  int n_clean = 0;
  for (int c = 0; c < CELLS; c++)
    n_clean += c == 0 || strcmp(rows[c].clean, rows[c - 1].clean);
  ck_assert_int_le(n_clean, n_keys);
  /* NAS-Bench-201's own rule keeps zero terms ('#') in its sums and only
   * recognises a zero node when it has a single 'none' input, so it
   * separates cells that differ in ops on zero inputs: for comparison
   * only. */
  qsort(rows, CELLS, sizeof *rows, by_tree);
  int n_tree = 0;
  for (int c = 0; c < CELLS; c++)
    n_tree += c == 0 || strcmp(rows[c].tree, rows[c - 1].tree);
  printf("nb201 census: %d cells; %d distinct canonical networks (brute "
         "force: %d); %d degenerate cells (one class); expression trees "
         "with zeros dropped: %d; NAS-Bench-201 "
         "to_unique_str(consider_zero=True): %d\n",
         CELLS, n_keys, n_brute, degenerate, n_clean, n_tree);
  free(rows);
}
END_TEST

int main(void) {
  Suite *s = suite_create("canon");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, nb201_dead_ops_share_a_key);
  tcase_add_test(tc, nb201_swapped_nodes_share_a_key);
  tcase_add_test(tc, nb201_sharing_and_parameter_free_ops);
  tcase_add_test(tc, nb201_degenerate_cells_are_one_class);
  tcase_add_test(tc, nb201_skeleton_fields_are_in_the_key);
  tcase_add_test(tc, mlp_dag_relabelling_and_fields);
  tcase_add_test(tc, mlp_dag_zero_inputs);
  tcase_add_test(tc, graph_renamed_and_reordered_nodes_share_a_key);
  tcase_add_test(tc, graph_gain_zero_and_density);
  tcase_add_test(tc, graph_twins_and_deep_sums);
  tcase_add_test(tc, form_is_the_documented_text);
  tcase_add_test(tc, mlp_dag_random_relabellings_keep_the_key);
  tcase_add_test(tc, graph_random_shuffles_keep_the_key);
  tcase_add_test(tc, mlp_dag_equal_keys_have_equal_kernels);
  tcase_add_test(tc, nb201_census_matches_brute_force);
  tcase_add_test(tc, graph_ops_beyond_the_sum_form_are_keyed_as_written);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
