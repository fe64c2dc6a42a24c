/* test_onnx_nb201.c: the NAS-Bench-201 matcher (api/onnx_nb201.c) and the
 * request path that scores a recognised model as the native nb201 request
 * (api/request.c).
 *
 * The models are the committed exports of tests/data/onnx/nb201 (written
 * by tests/data/onnx/make_nb201.py with torch.onnx.export in training mode,
 * the eval_* ones in eval mode, BN folded into the convs; manifest.json
 * says what each is); torch is not needed here.
 * - "exports": each NB-201 export, training or eval mode, is recognised
 *   with the cell, C, N and classes it was made with (and bn_folded for
 *   the eval ones), and the native request's lowering has PyTorch's
 *   parameter count (BN included); the near-miss exports (reductions to
 *   3C, a ReLU after the stem, stages of 1, 2 and 1 cells, a cell that
 *   differs in training and in eval mode, a graph partly folded) and a
 *   non-NB-201 model are not.
 * - "mutations": the mixed and eval_mixed exports' graphs edited here: ids
 *   renamed, the nodes in another topological order and every add's
 *   operands swapped are still recognised; a conv with another channel
 *   count, an extra node on the path, a dead node, a weight shared, a
 *   missing edge are not, nor are graphs partly folded: a training export
 *   with one conv given a bias (with or without its BN), an eval export
 *   with one conv unfolded (BN back, or only its bias gone), the stem
 *   unfolded, a BN after a folded conv, a bias on the shortcut's conv, the
 *   head's BN gone.
 * - "request": a job naming the model is parsed as the native request
 *   (same lowered network, same canonical key), with the scorecard's note
 *   (for the eval export: one saying so); "as_graph": true keeps the
 *   graph.
 * Single-threaded; each test in its own process (Check's fork mode). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/canon.h"
#include "api/onnx.h"
#include "api/onnx_nb201.h"
#include "api/request.h"
#include "api/status.h"

#define DIR AE_SRCDIR "/tests/data/onnx/nb201"

static const char *const matches[] = {"mixed", "all_skip", "nones",
                                      "pools", "convs",    "skip_last"};
static const char *const eval_matches[] = {"eval_mixed", "eval_all_skip",
                                           "eval_nones", "eval_convs"};
static const char *const misses[] = {
    "miss_wider",       "miss_stem_relu",        "miss_uneven",
    "miss_mixed_cells", "miss_eval_mixed_cells", "miss_partly_folded"};

static json_t *manifest(void) {
  json_error_t err;
  json_t *j = json_load_file(DIR "/manifest.json", 0, &err);
  ck_assert_msg(j != NULL, "manifest.json: %s", err.text);
  return j;
}

static void import(const char *path, ae_onnx_model *m) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  ck_assert_int_gt(n, 0);
  rewind(f);
  unsigned char *b = malloc((size_t)n);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_onnx_import(b, (size_t)n, NULL, m, &p);
  free(b);
  ck_assert_msg(rc == AE_OK, "%s: %s", path,
                p.n_errors ? p.errors[0].detail : "");
  ae_problem_clear(&p);
}

static void import_named(const char *name, ae_onnx_model *m) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.onnx", DIR, name);
  import(path, m);
}

static int match(const json_t *arch, const ae_onnx_model *m,
                 ae_onnx_nb201 *out) {
  return ae_onnx_nb201_match(arch, m->input_shape, m->input_rank, out);
}

/* Lowers an architecture JSON for shape and classes. */
static void lower(const json_t *arch, const int *shape, int classes, ae_arch *a,
                  ae_graph *g) {
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(ae_arch_from_json(arch, "/architecture", &lim, a, &p),
                   AE_OK);
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  memcpy(o.input_shape, shape, sizeof o.input_shape);
  o.input_rank = 3;
  o.num_classes = classes;
  ck_assert_int_eq(ae_arch_lower(a, &o, &lim, "/architecture", g, &p), AE_OK);
  ae_problem_clear(&p);
}

/* ---- exports ---- */

START_TEST(test_export_recognised) {
  const char *name = matches[_i];
  json_t *man = manifest();
  json_t *e = json_object_get(man, name);
  ck_assert_ptr_nonnull(e);
  ae_onnx_model m;
  import_named(name, &m);
  ae_onnx_nb201 nb;
  ck_assert_int_eq(match(m.architecture, &m, &nb), 1);
  ck_assert_str_eq(nb.cell, json_string_value(json_object_get(e, "cell")));
  ck_assert_int_eq(nb.channels,
                   json_integer_value(json_object_get(e, "channels")));
  ck_assert_int_eq(nb.cells_per_stage,
                   json_integer_value(json_object_get(e, "cells_per_stage")));
  ck_assert_int_eq(nb.num_classes,
                   json_integer_value(json_object_get(e, "num_classes")));
  ck_assert_int_eq(nb.bn_folded, 0);
  /* The native network has PyTorch's parameter count (and the graph's). */
  json_t *native = ae_onnx_nb201_request_arch(&nb);
  ae_arch a, ga;
  ae_graph g, gg;
  lower(native, m.input_shape, nb.num_classes, &a, &g);
  lower(m.architecture, m.input_shape, nb.num_classes, &ga, &gg);
  double params = (double)json_integer_value(json_object_get(e, "params"));
  ck_assert_double_eq(ae_graph_params(&g), params);
  ck_assert_double_eq(ae_graph_params(&gg), params);
  ck_assert_double_eq(ae_graph_flops(&g), ae_graph_flops(&gg));
  /* The description's form: the request's architecture and "arch". */
  json_t *d = ae_onnx_nb201_json(&nb);
  ck_assert_str_eq(json_string_value(json_object_get(d, "type")), "nb201");
  ck_assert_str_eq(json_string_value(json_object_get(d, "arch")), nb.cell);
  ck_assert_str_eq(json_string_value(json_object_get(d, "cell")), nb.cell);
  ck_assert(json_equal(json_object_get(d, "input_shape"),
                       json_object_get(e, "input_shape")));
  ck_assert(json_is_false(json_object_get(d, "bn_folded")));
  json_decref(d);
  json_decref(native);
  ae_graph_free(&g);
  ae_graph_free(&gg);
  ae_arch_free(&a);
  ae_arch_free(&ga);
  ae_onnx_model_free(&m);
  json_decref(man);
}
END_TEST

/* An eval-mode export: the same network recognised, bn_folded set; the
 * native request (with BN) has PyTorch's parameter count, the imported
 * graph the folded one (a conv bias of C for each BN's 2C but the
 * head's). */
START_TEST(test_eval_export_recognised) {
  const char *name = eval_matches[_i];
  json_t *man = manifest();
  json_t *e = json_object_get(man, name);
  ck_assert_ptr_nonnull(e);
  ck_assert(json_is_true(json_object_get(e, "bn_folded")));
  ae_onnx_model m;
  import_named(name, &m);
  ae_onnx_nb201 nb;
  ck_assert_int_eq(match(m.architecture, &m, &nb), 1);
  ck_assert_str_eq(nb.cell, json_string_value(json_object_get(e, "cell")));
  ck_assert_int_eq(nb.channels,
                   json_integer_value(json_object_get(e, "channels")));
  ck_assert_int_eq(nb.cells_per_stage,
                   json_integer_value(json_object_get(e, "cells_per_stage")));
  ck_assert_int_eq(nb.num_classes,
                   json_integer_value(json_object_get(e, "num_classes")));
  ck_assert_int_eq(nb.bn_folded, 1);
  json_t *native = ae_onnx_nb201_request_arch(&nb);
  ae_arch a, ga;
  ae_graph g, gg;
  lower(native, m.input_shape, nb.num_classes, &a, &g);
  lower(m.architecture, m.input_shape, nb.num_classes, &ga, &gg);
  ck_assert_double_eq(ae_graph_params(&g),
                      (double)json_integer_value(json_object_get(e, "params")));
  ck_assert_double_eq(
      ae_graph_params(&gg),
      (double)json_integer_value(json_object_get(e, "graph_params")));
  ck_assert_double_lt(ae_graph_params(&gg), ae_graph_params(&g));
  json_t *d = ae_onnx_nb201_json(&nb);
  ck_assert_str_eq(json_string_value(json_object_get(d, "cell")), nb.cell);
  ck_assert(json_is_true(json_object_get(d, "bn_folded")));
  /* The request's architecture is the native one, whatever the mode. */
  json_t *plain = ae_onnx_nb201_request_arch(&nb);
  nb.bn_folded = 0;
  json_t *plain0 = ae_onnx_nb201_request_arch(&nb);
  ck_assert(json_equal(plain, plain0));
  json_decref(plain);
  json_decref(plain0);
  json_decref(d);
  json_decref(native);
  ae_graph_free(&g);
  ae_graph_free(&gg);
  ae_arch_free(&a);
  ae_arch_free(&ga);
  ae_onnx_model_free(&m);
  json_decref(man);
}
END_TEST

START_TEST(test_near_miss_not_recognised) {
  ae_onnx_model m;
  import_named(misses[_i], &m);
  ae_onnx_nb201 nb;
  ck_assert_msg(match(m.architecture, &m, &nb) == 0, "%s recognised as %s",
                misses[_i], nb.cell);
  ae_onnx_model_free(&m);
}
END_TEST

START_TEST(test_other_models_not_recognised) {
  ae_onnx_model m;
  import(AE_SRCDIR "/tests/data/onnx/tiny_train.onnx", &m);
  ae_onnx_nb201 nb;
  ck_assert_int_eq(match(m.architecture, &m, &nb), 0);
  ae_onnx_model_free(&m);
  /* Not a graph, or data of rank 1. */
  import_named("mixed", &m);
  json_t *j = json_pack("{s:s}", "type", "nb201");
  ck_assert_int_eq(match(j, &m, &nb), 0);
  json_decref(j);
  int flat[3] = {3072, 1, 1};
  ck_assert_int_eq(ae_onnx_nb201_match(m.architecture, flat, 1, &nb), 0);
  ae_onnx_model_free(&m);
}
END_TEST

/* The fuzz seeds (tests/fuzz/corpus/fuzz_graph/nb201_skip_last.json: the
 * skip_last export's graph, ids shortened; nb201_eval_skip_last.json: the
 * same with each BN after a conv folded into it, as an eval-mode export
 * has it) are recognised, so the fuzzer starts from graphs that reach
 * every part of the matcher, in both modes. */
static const char *const seeds[] = {"nb201_skip_last", "nb201_eval_skip_last"};

START_TEST(test_fuzz_seed_recognised) {
  char path[512];
  snprintf(path, sizeof path, "%s/tests/fuzz/corpus/fuzz_graph/%s.json",
           AE_SRCDIR, seeds[_i]);
  json_error_t err;
  json_t *j = json_load_file(path, 0, &err);
  ck_assert_msg(j != NULL, "%s", err.text);
  static const int shape[3] = {3, 8, 8};
  ae_onnx_nb201 nb;
  ck_assert_int_eq(ae_onnx_nb201_match(j, shape, 3, &nb), 1);
  ck_assert_str_eq(nb.cell, "|nor_conv_3x3~0|+|none~0|none~1|"
                            "+|none~0|none~1|skip_connect~2|");
  ck_assert_int_eq(nb.bn_folded, _i);
  json_decref(j);
}
END_TEST

/* ---- mutations of the mixed export's graph ---- */

static json_t *nodes_of(json_t *arch) {
  return json_object_get(arch, "nodes");
}

static json_t *node_by_id(json_t *arch, const char *id) {
  size_t i;
  json_t *n;
  json_array_foreach(nodes_of(arch), i, n) {
    if (!strcmp(json_string_value(json_object_get(n, "id")), id)) return n;
  }
  return NULL;
}

/* Replaces every input id "from" by "to", except in node "skip". */
static void rewire(json_t *arch, const char *from, const char *to,
                   const char *skip) {
  size_t i, k;
  json_t *n, *in;
  json_array_foreach(nodes_of(arch), i, n) {
    if (skip && !strcmp(json_string_value(json_object_get(n, "id")), skip))
      continue;
    json_array_foreach(json_object_get(n, "inputs"), k, in) {
      if (!strcmp(json_string_value(in), from))
        json_array_set_new(json_object_get(n, "inputs"), k, json_string(to));
    }
  }
}

/* The i-th node (in order) whose op is op; NULL when fewer. */
static json_t *nth_op(json_t *arch, const char *op, int nth) {
  size_t i;
  json_t *n;
  json_array_foreach(nodes_of(arch), i, n) {
    if (!strcmp(json_string_value(json_object_get(n, "op")), op) && nth-- == 0)
      return n;
  }
  return NULL;
}

/* The index of node id in the node list; -1 when none. */
static int index_of(json_t *arch, const char *id) {
  size_t i;
  json_t *n;
  json_array_foreach(nodes_of(arch), i, n) {
    if (!strcmp(json_string_value(json_object_get(n, "id")), id)) return (int)i;
  }
  return -1;
}

/* Puts a batch_norm after node n (its readers now read the BN). */
static void insert_bn_after(json_t *arch, json_t *n) {
  char *id = strdup(json_string_value(json_object_get(n, "id")));
  char bn_id[256];
  snprintf(bn_id, sizeof bn_id, "%s.bn", id);
  rewire(arch, id, bn_id, NULL);
  if (!strcmp(json_string_value(json_object_get(arch, "output")), id))
    json_object_set_new(arch, "output", json_string(bn_id));
  int at = index_of(arch, id);
  ck_assert_int_ge(at, 0);
  json_array_insert_new(nodes_of(arch), (size_t)at + 1,
                        json_pack("{s:s, s:s, s:[s]}", "id", bn_id, "op",
                                  "batch_norm", "inputs", id));
  free(id);
}

/* Removes the one-input node n, its readers reading its input instead. */
static void bypass(json_t *arch, json_t *n) {
  char *id = strdup(json_string_value(json_object_get(n, "id")));
  char *in = strdup(
      json_string_value(json_array_get(json_object_get(n, "inputs"), 0)));
  int at = index_of(arch, id);
  ck_assert_int_ge(at, 0);
  ck_assert_int_eq(json_array_remove(nodes_of(arch), (size_t)at), 0);
  rewire(arch, id, in, NULL);
  free(id);
  free(in);
}

/* The node that reads node n (the first in order); NULL when none. */
static json_t *reader_of(json_t *arch, json_t *n) {
  const char *id = json_string_value(json_object_get(n, "id"));
  size_t i, k;
  json_t *nd, *in;
  json_array_foreach(nodes_of(arch), i, nd) {
    json_array_foreach(json_object_get(nd, "inputs"), k, in) {
      if (!strcmp(json_string_value(in), id)) return nd;
    }
  }
  return NULL;
}

/* The first conv reading an avg_pool: a reduction's shortcut. */
static json_t *shortcut_conv(json_t *arch) {
  size_t i;
  json_t *nd;
  json_array_foreach(nodes_of(arch), i, nd) {
    if (strcmp(json_string_value(json_object_get(nd, "op")), "conv")) continue;
    const char *src =
        json_string_value(json_array_get(json_object_get(nd, "inputs"), 0));
    int at = index_of(arch, src);
    if (at >= 0 &&
        !strcmp(json_string_value(json_object_get(
                    json_array_get(nodes_of(arch), (size_t)at), "op")),
                "avg_pool"))
      return nd;
  }
  return NULL;
}

static int mixed_match(json_t *arch, const ae_onnx_model *m,
                       ae_onnx_nb201 *nb) {
  return match(arch, m, nb);
}

static const char *const reordered[] = {"mixed", "eval_mixed"};

START_TEST(test_renamed_and_reordered) {
  ae_onnx_model m;
  import_named(reordered[_i], &m);
  json_t *arch = json_deep_copy(m.architecture);
  json_t *nodes = nodes_of(arch);
  size_t n = json_array_size(nodes);
  /* Rename every id. */
  for (size_t i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "v%zu", n - i);
    const char *old =
        json_string_value(json_object_get(json_array_get(nodes, i), "id"));
    char *copy = strdup(old);
    rewire(arch, copy, id, NULL);
    if (!strcmp(json_string_value(json_object_get(arch, "output")), copy))
      json_object_set_new(arch, "output", json_string(id));
    json_object_set_new(json_array_get(nodes, i), "id", json_string(id));
    free(copy);
  }
  /* Another topological order: Kahn's, taking the latest ready node. */
  json_t *order = json_array();
  char *done = calloc(n, 1);
  for (size_t placed = 0; placed < n; placed++) {
    for (size_t i = n; i-- > 0;) {
      if (done[i]) continue;
      json_t *nd = json_array_get(nodes, i);
      int ready = 1;
      size_t k;
      json_t *in;
      json_array_foreach(json_object_get(nd, "inputs"), k, in) {
        const char *s = json_string_value(in);
        if (!strcmp(s, "input")) continue;
        for (size_t j = 0; j < n; j++)
          if (!done[j] && !strcmp(json_string_value(json_object_get(
                                      json_array_get(nodes, j), "id")),
                                  s))
            ready = 0;
      }
      if (ready) {
        done[i] = 1;
        json_array_append(order, nd);
        break;
      }
    }
  }
  free(done);
  ck_assert_uint_eq(json_array_size(order), n);
  ck_assert(!json_equal(order, nodes)); /* the order did change */
  json_object_set_new(arch, "nodes", order);
  ae_onnx_nb201 nb;
  ck_assert_int_eq(mixed_match(arch, &m, &nb), 1);
  ck_assert_str_eq(nb.cell, "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|"
                            "+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|");
  ck_assert_int_eq(nb.channels, 4);
  ck_assert_int_eq(nb.cells_per_stage, 2);
  ck_assert_int_eq(nb.bn_folded, _i);
  /* Every add's operands swapped: the sums match as multisets. */
  size_t i;
  json_t *nd;
  json_array_foreach(nodes_of(arch), i, nd) {
    if (strcmp(json_string_value(json_object_get(nd, "op")), "add")) continue;
    json_t *ins = json_object_get(nd, "inputs");
    json_t *a = json_incref(json_array_get(ins, 0));
    json_array_remove(ins, 0);
    json_array_append_new(ins, a);
  }
  ck_assert_int_eq(mixed_match(arch, &m, &nb), 1);
  ck_assert_str_eq(nb.cell, "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|"
                            "+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|");
  json_decref(arch);
  ae_onnx_model_free(&m);
}
END_TEST

/* Each mutation of the mixed export that must not be recognised. */
enum {
  MUT_CHANNELS,     /* a cell conv with 5 channels */
  MUT_STEM_KERNEL,  /* the stem's kernel 5 */
  MUT_EXTRA_ACT,    /* a ReLU between the head's GAP and the linear */
  MUT_DEAD_NODE,    /* a node that reaches no output */
  MUT_SHARED_CONV,  /* one conv read where the cell has two */
  MUT_MISSING_EDGE, /* a cell's add replaced by one of its terms */
  MUT_POOL_PAD,     /* count_include_pad true in a cell's pool */
  MUT_NO_BIAS,      /* the classifier without bias */
  MUT_CONV_BIAS,    /* a cell conv with a bias, its BN kept */
  MUT_FOLD_ONE,     /* a cell conv with a bias, its BN gone: one folded */
  MUT_COUNT
};

START_TEST(test_mutation_not_recognised) {
  ae_onnx_model m;
  import_named("mixed", &m);
  json_t *arch = json_deep_copy(m.architecture);
  ae_onnx_nb201 nb;
  ck_assert_int_eq(mixed_match(arch, &m, &nb), 1); /* before */
  switch (_i) {
  case MUT_CHANNELS: {
    /* The second conv is the first cell's conv 3x3 on edge 1<-0. */
    json_t *c = nth_op(arch, "conv", 1);
    ck_assert_int_eq(json_integer_value(json_object_get(c, "out")), 4);
    json_object_set_new(c, "out", json_integer(5));
    break;
  }
  case MUT_STEM_KERNEL:
    json_object_set_new(nth_op(arch, "conv", 0), "kernel", json_integer(5));
    json_object_set_new(nth_op(arch, "conv", 0), "padding", json_integer(2));
    break;
  case MUT_EXTRA_ACT: {
    json_t *gap = nth_op(arch, "global_avg_pool", 0);
    const char *gid = json_string_value(json_object_get(gap, "id"));
    json_t *act = json_pack("{s:s, s:s, s:[s], s:s}", "id", "extra", "op",
                            "act", "inputs", gid, "fn", "relu");
    rewire(arch, gid, "extra", NULL);
    size_t n = json_array_size(nodes_of(arch));
    json_array_insert_new(nodes_of(arch), n - 1, act);
    break;
  }
  case MUT_DEAD_NODE: {
    json_t *act = json_pack("{s:s, s:s, s:[s], s:s}", "id", "dead", "op", "act",
                            "inputs", "input", "fn", "relu");
    json_array_insert_new(nodes_of(arch), 0, act);
    break;
  }
  case MUT_SHARED_CONV: {
    /* Stage 3's two cells: the second's convs read like the first's, so
     * make the last cell's edge 2<-0 (conv 1x1) read the first 1x1 conv
     * of the same stage instead of its own: a weight shared. */
    int n1 = 0;
    json_t *first = NULL, *last = NULL;
    size_t i;
    json_t *nd;
    json_array_foreach(nodes_of(arch), i, nd) {
      if (strcmp(json_string_value(json_object_get(nd, "op")), "conv") ||
          json_integer_value(json_object_get(nd, "kernel")) != 1 ||
          json_integer_value(json_object_get(nd, "out")) != 16)
        continue;
      if (json_object_get(nd, "stride") &&
          json_integer_value(json_object_get(nd, "stride")) != 1)
        continue;
      /* skip the shortcut conv (reads an avg_pool) */
      const char *src =
          json_string_value(json_array_get(json_object_get(nd, "inputs"), 0));
      json_t *srcn = node_by_id(arch, src);
      if (strcmp(json_string_value(json_object_get(srcn, "op")), "act"))
        continue;
      if (n1++ == 0)
        first = nd;
      else
        last = nd;
    }
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(last);
    /* Both read a ReLU of their cell input; the last now reads the
     * first's ReLU: its own ReLU is dead and the hashes of the two cells
     * differ. */
    json_object_set(last, "inputs", json_object_get(first, "inputs"));
    break;
  }
  case MUT_MISSING_EDGE: {
    /* The last add of the first cell keeps its left operand only. */
    json_t *a = nth_op(arch, "add", 2);
    const char *aid = json_string_value(json_object_get(a, "id"));
    const char *left =
        json_string_value(json_array_get(json_object_get(a, "inputs"), 0));
    rewire(arch, aid, left, NULL);
    break;
  }
  case MUT_POOL_PAD:
    json_object_set_new(nth_op(arch, "avg_pool", 0), "count_include_pad",
                        json_true());
    break;
  case MUT_NO_BIAS:
    json_object_del(nth_op(arch, "linear", 0), "bias");
    break;
  case MUT_CONV_BIAS:
    json_object_set_new(nth_op(arch, "conv", 1), "bias", json_true());
    break;
  case MUT_FOLD_ONE: {
    json_t *c = nth_op(arch, "conv", 1);
    json_object_set_new(c, "bias", json_true());
    json_t *bn = reader_of(arch, c);
    ck_assert_str_eq(json_string_value(json_object_get(bn, "op")),
                     "batch_norm");
    bypass(arch, bn);
    break;
  }
  }
  ck_assert_msg(mixed_match(arch, &m, &nb) == 0, "mutation %d recognised as %s",
                _i, nb.cell);
  json_decref(arch);
  ae_onnx_model_free(&m);
}
END_TEST

/* Each mutation of the eval_mixed export (BN folded) that must not be
 * recognised: each leaves a graph partly folded or not NB-201's. */
enum {
  EMUT_UNFOLD_CELL_CONV,  /* a cell conv without bias and with its BN */
  EMUT_CELL_CONV_NO_BIAS, /* a cell conv without bias, no BN */
  EMUT_UNFOLD_STEM,       /* the stem conv without bias and with its BN */
  EMUT_STEM_NO_BIAS,      /* the stem conv without bias, no BN */
  EMUT_BN_AFTER_FOLDED,   /* a BN after a cell conv that has its bias */
  EMUT_UNFOLD_REDUCTION,  /* a reduction's first conv with its BN back */
  EMUT_SHORTCUT_BIAS,     /* the shortcut's conv with a bias */
  EMUT_NO_HEAD_BN,        /* the head's BN gone */
  EMUT_COUNT
};

START_TEST(test_eval_mutation_not_recognised) {
  ae_onnx_model m;
  import_named("eval_mixed", &m);
  json_t *arch = json_deep_copy(m.architecture);
  ae_onnx_nb201 nb;
  ck_assert_int_eq(mixed_match(arch, &m, &nb), 1); /* before */
  ck_assert_int_eq(nb.bn_folded, 1);
  /* conv 0: the stem; conv 1: the first cell's conv 3x3 on edge 1<-0. */
  json_t *stem = nth_op(arch, "conv", 0), *c1 = nth_op(arch, "conv", 1);
  ck_assert(json_is_true(json_object_get(stem, "bias")));
  ck_assert(json_is_true(json_object_get(c1, "bias")));
  switch (_i) {
  case EMUT_UNFOLD_CELL_CONV:
    json_object_del(c1, "bias");
    insert_bn_after(arch, c1);
    break;
  case EMUT_CELL_CONV_NO_BIAS:
    json_object_del(c1, "bias");
    break;
  case EMUT_UNFOLD_STEM:
    json_object_del(stem, "bias");
    insert_bn_after(arch, stem);
    break;
  case EMUT_STEM_NO_BIAS:
    json_object_del(stem, "bias");
    break;
  case EMUT_BN_AFTER_FOLDED:
    insert_bn_after(arch, c1);
    break;
  case EMUT_UNFOLD_REDUCTION: {
    /* The first stride-2 conv. */
    size_t i;
    json_t *nd, *r = NULL;
    json_array_foreach(nodes_of(arch), i, nd) {
      if (!r && !strcmp(json_string_value(json_object_get(nd, "op")), "conv") &&
          json_integer_value(json_object_get(nd, "stride")) == 2)
        r = nd;
    }
    ck_assert_ptr_nonnull(r);
    json_object_del(r, "bias");
    insert_bn_after(arch, r);
    break;
  }
  case EMUT_SHORTCUT_BIAS: {
    json_t *sc = shortcut_conv(arch);
    ck_assert_ptr_nonnull(sc);
    ck_assert_ptr_null(json_object_get(sc, "bias"));
    json_object_set_new(sc, "bias", json_true());
    break;
  }
  case EMUT_NO_HEAD_BN:
    bypass(arch, nth_op(arch, "batch_norm", 0));
    ck_assert_ptr_null(nth_op(arch, "batch_norm", 0));
    break;
  }
  ck_assert_msg(mixed_match(arch, &m, &nb) == 0,
                "eval mutation %d recognised as %s", _i, nb.cell);
  json_decref(arch);
  ae_onnx_model_free(&m);
}
END_TEST

/* ---- the request ---- */

typedef struct {
  ae_onnx_model *m;
  int calls;
} source_ctx;

static int resolve(void *ctx, const char *id, ae_model_info *out) {
  source_ctx *s = ctx;
  (void)id;
  s->calls++;
  memset(out, 0, sizeof *out);
  out->architecture = json_incref(s->m->architecture);
  memcpy(out->input_shape, s->m->input_shape, sizeof out->input_shape);
  out->input_rank = s->m->input_rank;
  out->num_classes = 10;
  return AE_OK;
}

#define MODEL_ID                                                               \
  "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void parse(const char *text, const ae_model_source *src, ae_request *r) {
  json_error_t err;
  json_t *body = json_loads(text, 0, &err);
  ck_assert_msg(body != NULL, "%s", err.text);
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_request_parse_models(body, NULL, src, &lim, r, &p);
  ck_assert_msg(rc == AE_OK, "%s %s", p.n_errors ? p.errors[0].pointer : "",
                p.n_errors ? p.errors[0].detail
                : p.detail ? p.detail
                           : "");
  ae_problem_clear(&p);
  json_decref(body);
}

static void canon_key(const ae_arch *a, char key[65]) {
  ae_canon c;
  ck_assert_int_eq(ae_arch_canon(a, &c), AE_OK);
  memcpy(key, c.key, 65);
  ae_canon_free(&c);
}

/* The model `name` (imported into *m) as three requests: onnx (as
 * uploaded), native (the nb201 request of its cell) and graph (as_graph). */
static void parse_three(const char *name, ae_onnx_model *m, ae_request *onnx,
                        ae_request *native, ae_request *graph) {
  import_named(name, m);
  source_ctx ctx = {m, 0};
  ae_model_source src = {resolve, &ctx};
  parse("{\"architecture\":{\"type\":\"onnx\",\"model\":\"" MODEL_ID "\"},"
        "\"data\":{\"batch_size\":8},\"seed\":5,\"profile\":\"fast\"}",
        &src, onnx);
  parse("{\"architecture\":{\"type\":\"nb201\",\"cell\":"
        "\"|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|"
        "+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|\",\"channels\":4,"
        "\"cells_per_stage\":2},"
        "\"data\":{\"batch_size\":8},\"seed\":5,\"profile\":\"fast\"}",
        NULL, native);
  parse("{\"architecture\":{\"type\":\"onnx\",\"model\":\"" MODEL_ID "\","
        "\"as_graph\":true},"
        "\"data\":{\"batch_size\":8},\"seed\":5,\"profile\":\"fast\"}",
        &src, graph);
  ck_assert_int_eq(onnx->arch.type, AE_ARCH_NB201);
  ck_assert_str_eq(onnx->arch.model, MODEL_ID);
  ck_assert_int_eq(graph->arch.type, AE_ARCH_GRAPH);
}

/* The same lowered network, node for node, the same data and the same
 * canonical key as the native request (the engine sees the native
 * request); the as_graph request keyed apart.  Returns the BN count. */
static int assert_native_network(const ae_request *onnx,
                                 const ae_request *native,
                                 const ae_request *graph) {
  ck_assert_int_eq(onnx->net.n_nodes, native->net.n_nodes);
  int n_bn = 0;
  for (int i = 0; i < onnx->net.n_nodes; i++) {
    ck_assert_int_eq(onnx->net.nodes[i].op, native->net.nodes[i].op);
    n_bn += onnx->net.nodes[i].op == AE_OP_BATCH_NORM;
    ck_assert(memcmp(onnx->net.nodes[i].shape, native->net.nodes[i].shape,
                     sizeof onnx->net.nodes[i].shape) == 0);
    ck_assert_int_eq(onnx->net.nodes[i].n_inputs,
                     native->net.nodes[i].n_inputs);
    for (int k = 0; k < onnx->net.nodes[i].n_inputs; k++)
      ck_assert_int_eq(onnx->net.nodes[i].inputs[k],
                       native->net.nodes[i].inputs[k]);
  }
  ck_assert_int_eq(onnx->net.num_classes, native->net.num_classes);
  ck_assert(memcmp(&onnx->data.input_shape, &native->data.input_shape,
                   sizeof onnx->data.input_shape) == 0);
  ck_assert_int_eq(onnx->data.num_classes, native->data.num_classes);
  char k1[65], k2[65], k3[65];
  canon_key(&onnx->arch, k1);
  canon_key(&native->arch, k2);
  canon_key(&graph->arch, k3);
  ck_assert_str_eq(k1, k2);
  ck_assert_str_ne(k1, k3);
  return n_bn;
}

static void free_three(ae_request *onnx, ae_request *native, ae_request *graph,
                       ae_onnx_model *m) {
  ae_request_free(onnx);
  ae_request_free(native);
  ae_request_free(graph);
  ae_onnx_model_free(m);
}

START_TEST(test_request_scored_as_native) {
  ae_onnx_model m;
  ae_request onnx, native, graph;
  parse_three("mixed", &m, &onnx, &native, &graph);
  assert_native_network(&onnx, &native, &graph);
  /* The normalised request names the model (and as_graph when given). */
  json_t *a1 = json_object_get(onnx.normalised, "architecture");
  json_t *a3 = json_object_get(graph.normalised, "architecture");
  ck_assert_str_eq(json_string_value(json_object_get(a1, "type")), "onnx");
  ck_assert_ptr_null(json_object_get(a1, "as_graph"));
  ck_assert(json_is_true(json_object_get(a3, "as_graph")));
  /* The scorecard's note: only for the recognised model. */
  char note[512];
  ck_assert_int_eq(ae_onnx_nb201_note(&onnx.arch, note, sizeof note), 1);
  ck_assert(strstr(note, "architecture: model " MODEL_ID) == note);
  ck_assert(strstr(note, "|nor_conv_3x3~0|+|nor_conv_1x1~0|") != NULL);
  ck_assert(strstr(note, "as_graph") != NULL);
  ck_assert_int_eq(ae_onnx_nb201_note(&native.arch, note, sizeof note), 0);
  ck_assert_int_eq(ae_onnx_nb201_note(&graph.arch, note, sizeof note), 0);
  free_three(&onnx, &native, &graph, &m);
}
END_TEST

/* The eval-mode export: scored as the native request (with BN), the note
 * saying the export was in eval mode; as_graph keeps its folded graph. */
START_TEST(test_request_eval_scored_as_native) {
  ae_onnx_model m;
  ae_request onnx, native, graph;
  parse_three("eval_mixed", &m, &onnx, &native, &graph);
  ck_assert_int_eq(onnx.arch.model_bn_folded, 1);
  ck_assert_int_eq(native.arch.model_bn_folded, 0);
  ck_assert_int_eq(graph.arch.model_bn_folded, 0);
  /* The native network, BN included. */
  ck_assert_int_gt(assert_native_network(&onnx, &native, &graph), 1);
  char note[768];
  ck_assert_int_eq(ae_onnx_nb201_note(&onnx.arch, note, sizeof note), 1);
  ck_assert(strstr(note, "architecture: model " MODEL_ID) == note);
  ck_assert(strstr(note,
                   "exported in eval mode (BatchNorm folded into the "
                   "convs) and was scored as the native nb201 "
                   "request, the NAS-Bench-201 cell with BatchNorm") != NULL);
  ck_assert(strstr(note, "|nor_conv_3x3~0|+|nor_conv_1x1~0|") != NULL);
  ck_assert(strstr(note, "as_graph") != NULL);
  ck_assert_uint_lt(strlen(note), sizeof note - 1); /* not cut short */
  ck_assert_int_eq(ae_onnx_nb201_note(&graph.arch, note, sizeof note), 0);
  /* The training export's note does not say eval mode. */
  onnx.arch.model_bn_folded = 0;
  ck_assert_int_eq(ae_onnx_nb201_note(&onnx.arch, note, sizeof note), 1);
  ck_assert_ptr_null(strstr(note, "eval mode"));
  free_three(&onnx, &native, &graph, &m);
}
END_TEST

START_TEST(test_request_as_graph_must_be_boolean) {
  ae_onnx_model m;
  import_named("mixed", &m);
  source_ctx ctx = {&m, 0};
  ae_model_source src = {resolve, &ctx};
  json_t *body = json_pack("{s:{s:s, s:s, s:i}}", "architecture", "type",
                           "onnx", "model", MODEL_ID, "as_graph", 1);
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p = AE_PROBLEM_INIT;
  ae_request r;
  ck_assert_int_eq(ae_request_parse_models(body, NULL, &src, &lim, &r, &p),
                   AE_EINVAL);
  int found = 0;
  for (size_t i = 0; i < p.n_errors; i++)
    found |= !strcmp(p.errors[i].pointer, "/architecture/as_graph");
  ck_assert(found);
  ae_problem_clear(&p);
  json_decref(body);
  ae_onnx_model_free(&m);
}
END_TEST

static Suite *nb201_suite(void) {
  Suite *s = suite_create("onnx_nb201");
  TCase *t = tcase_create("exports");
  tcase_set_timeout(t, 60);
  tcase_add_loop_test(t, test_export_recognised, 0,
                      (int)(sizeof matches / sizeof *matches));
  tcase_add_loop_test(t, test_eval_export_recognised, 0,
                      (int)(sizeof eval_matches / sizeof *eval_matches));
  tcase_add_loop_test(t, test_near_miss_not_recognised, 0,
                      (int)(sizeof misses / sizeof *misses));
  tcase_add_test(t, test_other_models_not_recognised);
  tcase_add_loop_test(t, test_fuzz_seed_recognised, 0,
                      (int)(sizeof seeds / sizeof *seeds));
  suite_add_tcase(s, t);
  t = tcase_create("mutations");
  tcase_set_timeout(t, 60);
  tcase_add_loop_test(t, test_renamed_and_reordered, 0,
                      (int)(sizeof reordered / sizeof *reordered));
  tcase_add_loop_test(t, test_mutation_not_recognised, 0, MUT_COUNT);
  tcase_add_loop_test(t, test_eval_mutation_not_recognised, 0, EMUT_COUNT);
  suite_add_tcase(s, t);
  t = tcase_create("request");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, test_request_scored_as_native);
  tcase_add_test(t, test_request_eval_scored_as_native);
  tcase_add_test(t, test_request_as_graph_must_be_boolean);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(nb201_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
