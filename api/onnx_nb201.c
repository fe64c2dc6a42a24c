/* onnx_nb201.c: recognises NAS-Bench-201's network in an imported ONNX
 * graph (onnx_nb201.h).
 *
 * Design.  Every node of the graph gets a structural hash of its op, its
 * op's attributes (normalised: defaults filled in) and its inputs' hashes,
 * so two nodes hash equal when they compute the same expression of the
 * data input, whatever their ids or order; an exporter that merged common
 * subexpressions (one ReLU feeding two convs) therefore hashes like one
 * that did not.  Weighted nodes (conv, batch_norm, linear) hash by
 * structure too; the counts checked at the end (and every node reaching
 * the output) rule out a weight shared where NB-201 has two.  Two hashes
 * are kept: "ordered" (an add of a then b) and "sum" (an add is the
 * multiset of the terms of its whole tree of adds: 64-bit hashes summed),
 * the second for exporters that group or order a node's sum differently.
 *
 * The match builds the expected hashes of the skeleton from the data input
 * and looks each up among the graph's: the stem (C read off the conv the
 * input feeds), then the first cell, node by node: every op of edge 1<-0
 * whose node 1 exists in the graph, every pair for node 2, every triple
 * for node 3 (at most 5 + 25 + 125 lookups per surviving prefix, not
 * 5^6 cells); for each cell whose nodes all exist, the whole network is
 * followed: cells while the next cell's output exists, a reduction to
 * 2C, cells, a reduction, cells, the head, whose hash must be the output
 * node's.  Every stage must have the same number N >= 1 of the one cell.
 * The ordered hashes are tried first, so a cell whose edges are
 * interchangeable (a skip on edge 1<-0 makes nodes 0 and 1 the same value)
 * gets the edges in the order the sums list them.
 *
 * An export made in eval mode (torch.onnx.export of model.eval()) has each
 * BN that follows a conv folded into it: ReLU-conv-BN is ReLU-conv with a
 * bias, the stem conv+BN a conv with a bias; the shortcut's conv (no BN)
 * keeps no bias and the head's BN (after an add, nothing to fold into)
 * stays a batch_norm node.  The same search runs a second time with that
 * skeleton ("folded"); a graph is one or the other, never a mix: every
 * expected hash carries the conv's bias flag and the BN or its absence,
 * and the counts (convs with biases, BNs) are checked for the mode.
 *
 * Everything belongs to the one call; no globals, no I/O, any thread. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/onnx_nb201.h"
#include "api/status.h"

static const char *const op_names[5] = {"none", "skip_connect", "nor_conv_1x1",
                                        "nor_conv_3x3", "avg_pool_3x3"};

void ae_nb201_cell_string(const ae_nb201_op ops[6], char *buf, size_t len) {
  snprintf(buf, len, "|%s~0|+|%s~0|%s~1|+|%s~0|%s~1|%s~2|", op_names[ops[0]],
           op_names[ops[1]], op_names[ops[2]], op_names[ops[3]],
           op_names[ops[4]], op_names[ops[5]]);
}

/* ---- hashing ---- */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return mix64(h);
}

static uint64_t combine(uint64_t h, uint64_t in) {
  return mix64(h ^ (in + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
}

/* A value: the hashes of the expression computing it. */
typedef struct {
  uint64_t ho;  /* ordered */
  uint64_t hs;  /* with sums as multisets */
  uint64_t sum; /* an add: the sum of its terms' hs */
  int is_add;
} val;

static val v_op(uint64_t sig, const val *ins, int n) {
  val v = {sig, sig, 0, 0};
  for (int k = 0; k < n; k++) {
    v.ho = combine(v.ho, ins[k].ho);
    v.hs = combine(v.hs, ins[k].hs);
  }
  return v;
}

static val v_op1(uint64_t sig, val in) {
  return v_op(sig, &in, 1);
}

static val v_add(val a, val b) {
  static const uint64_t tag_add = 0x6a09e667f3bcc908ULL,
                        tag_sum = 0xbb67ae8584caa73bULL;
  val v;
  v.is_add = 1;
  v.ho = combine(combine(tag_add, a.ho), b.ho);
  v.sum = (a.is_add ? a.sum : a.hs) + (b.is_add ? b.sum : b.hs);
  v.hs = combine(tag_sum, v.sum);
  return v;
}

/* The signatures of the ops the skeleton uses (and the graph's nodes
 * normalised to them). */
static uint64_t sig_conv(long long out, long long k, long long s, long long p,
                         long long groups, long long dil, int bias) {
  char b[160];
  snprintf(b, sizeof b, "conv %lld %lld %lld %lld %lld %lld %d", out, k, s, p,
           groups, dil, bias);
  return hash_str(b);
}

static uint64_t sig_avg_pool(long long k, long long s, long long p,
                             int include_pad) {
  char b[128];
  /* Without padding count_include_pad changes nothing. */
  snprintf(b, sizeof b, "avg_pool %lld %lld %lld %d", k, s, p,
           p ? include_pad : 0);
  return hash_str(b);
}

static uint64_t sig_linear(long long out, int bias) {
  char b[64];
  snprintf(b, sizeof b, "linear %lld %d", out, bias);
  return hash_str(b);
}

/* ---- the graph ---- */

enum { K_OTHER, K_CONV, K_BN, K_LINEAR };

typedef struct {
  int n;
  val *vals;
  int *kind;
  long long *out; /* conv and linear: "out" */
  int *bias;      /* conv and linear: has a bias */
  int *in_start;  /* inputs of node i: in_idx[in_start[i] .. in_start[i+1]) */
  int *in_idx;    /* -1: the data input */
  int stem;       /* a conv reading the data input alone, or -1 */
  int output;     /* the output node */
  int n_conv, n_conv_bias, n_bn, n_linear;
  /* ids -> index (strings borrowed from the JSON) */
  const char **id_keys;
  int *id_vals;
  size_t id_cap;
  /* ho -> index and hs -> index */
  uint64_t *h_keys[2];
  int *h_vals[2];
  size_t h_cap;
} graph;

static void graph_free(graph *g) {
  free(g->vals);
  free(g->kind);
  free(g->out);
  free(g->bias);
  free(g->in_start);
  free(g->in_idx);
  free(g->id_keys);
  free(g->id_vals);
  for (int m = 0; m < 2; m++) {
    free(g->h_keys[m]);
    free(g->h_vals[m]);
  }
}

static size_t id_slot(const graph *g, const char *id) {
  size_t mask = g->id_cap - 1, i = (size_t)hash_str(id) & mask;
  while (g->id_keys[i] && strcmp(g->id_keys[i], id) != 0)
    i = (i + 1) & mask;
  return i;
}

static void h_put(graph *g, int m, uint64_t key, int idx) {
  size_t mask = g->h_cap - 1, i = (size_t)key & mask;
  if (key == 0) key = 1;
  while (g->h_keys[m][i] && g->h_keys[m][i] != key)
    i = (i + 1) & mask;
  if (!g->h_keys[m][i]) {
    g->h_keys[m][i] = key;
    g->h_vals[m][i] = idx;
  }
}

/* The node whose mode-m hash is key's, or -1. */
static int h_find(const graph *g, int m, uint64_t key) {
  size_t mask = g->h_cap - 1, i = (size_t)key & mask;
  if (key == 0) key = 1;
  while (g->h_keys[m][i]) {
    if (g->h_keys[m][i] == key) return g->h_vals[m][i];
    i = (i + 1) & mask;
  }
  return -1;
}

static int find(const graph *g, int m, val v) {
  return h_find(g, m, m ? v.hs : v.ho);
}

/* An integer field or its default; -1 when present and not an integer. */
static long long int_field(const json_t *node, const char *key, long long def) {
  const json_t *v = json_object_get(node, key);
  if (!v) return def;
  return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* 1 when bool field key is true (absent: def); -1 when not a boolean. */
static int bool_field(const json_t *node, const char *key, int def) {
  const json_t *v = json_object_get(node, key);
  if (!v) return def;
  return json_is_boolean(v) ? json_is_true(v) : -1;
}

/* 1 when node has no keys outside allowed (after id, op and inputs). */
static int keys_only(const json_t *node, const char *const *allowed) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)node, key, v) {
    (void)v;
    if (!strcmp(key, "id") || !strcmp(key, "op") || !strcmp(key, "inputs"))
      continue;
    int ok = 0;
    for (const char *const *a = allowed; *a; a++)
      if (!strcmp(key, *a)) ok = 1;
    if (!ok) return 0;
  }
  return 1;
}

/* The normalised signature of a graph node (and its kind); 0 for an op or
 * attribute the skeleton never has (the node then hashes uniquely). */
static uint64_t node_sig(const json_t *node, const char *op, int *kind,
                         long long *out, int *bias) {
  *kind = K_OTHER;
  if (!strcmp(op, "conv")) {
    static const char *const keys[] = {"out",     "kernel", "stride",
                                       "padding", "groups", "dilation",
                                       "bias",    NULL};
    long long o = int_field(node, "out", -1), k = int_field(node, "kernel", -1);
    int b = bool_field(node, "bias", 0);
    if (!keys_only(node, keys) || o < 1 || k < 1 || b < 0) return 0;
    *kind = K_CONV;
    *out = o;
    *bias = b;
    return sig_conv(o, k, int_field(node, "stride", 1),
                    int_field(node, "padding", 0), int_field(node, "groups", 1),
                    int_field(node, "dilation", 1), b);
  }
  if (!strcmp(op, "batch_norm")) {
    static const char *const keys[] = {NULL};
    if (!keys_only(node, keys)) return 0;
    *kind = K_BN;
    return hash_str("batch_norm");
  }
  if (!strcmp(op, "linear")) {
    static const char *const keys[] = {"out", "bias", NULL};
    long long o = int_field(node, "out", -1);
    int b = bool_field(node, "bias", 0);
    if (!keys_only(node, keys) || o < 1 || b < 0) return 0;
    *kind = K_LINEAR;
    *out = o;
    *bias = b;
    return sig_linear(o, b);
  }
  if (!strcmp(op, "act")) {
    static const char *const keys[] = {"fn", NULL};
    const json_t *fn = json_object_get(node, "fn");
    if (!keys_only(node, keys) || !json_is_string(fn) ||
        strcmp(json_string_value(fn), "relu") != 0)
      return 0;
    return hash_str("act relu");
  }
  if (!strcmp(op, "avg_pool")) {
    static const char *const keys[] = {"kernel", "stride", "padding",
                                       "count_include_pad", NULL};
    long long k = int_field(node, "kernel", -1);
    int inc = bool_field(node, "count_include_pad", 1);
    if (!keys_only(node, keys) || k < 1 || inc < 0) return 0;
    return sig_avg_pool(k, int_field(node, "stride", k),
                        int_field(node, "padding", 0), inc);
  }
  if (!strcmp(op, "zero") || !strcmp(op, "global_avg_pool")) {
    static const char *const keys[] = {NULL};
    return keys_only(node, keys) ? hash_str(op) : 0;
  }
  return 0;
}

/* Reads the graph and hashes every node.  1 when it is a graph the
 * skeleton could be (a DAG in order, ids unique, an output), 0 when not,
 * AE_ENOMEM. */
static int graph_load(const json_t *arch, graph *g) {
  memset(g, 0, sizeof *g);
  g->stem = g->output = -1;
  const json_t *nodes = json_object_get(arch, "nodes");
  const json_t *output = json_object_get(arch, "output");
  size_t n = json_array_size(nodes);
  if (n < 1 || n > (1u << 20) || !json_is_string(output)) return 0;
  g->n = (int)n;
  size_t n_in = 0;
  for (size_t i = 0; i < n; i++)
    n_in +=
        json_array_size(json_object_get(json_array_get(nodes, i), "inputs"));
  for (g->id_cap = 16; g->id_cap < 2 * n; g->id_cap *= 2) {
  }
  g->h_cap = g->id_cap;
  g->vals = calloc(n, sizeof *g->vals);
  g->kind = calloc(n, sizeof *g->kind);
  g->out = calloc(n, sizeof *g->out);
  g->bias = calloc(n, sizeof *g->bias);
  g->in_start = calloc(n + 1, sizeof *g->in_start);
  g->in_idx = calloc(n_in + 1, sizeof *g->in_idx);
  g->id_keys = calloc(g->id_cap, sizeof *g->id_keys);
  g->id_vals = calloc(g->id_cap, sizeof *g->id_vals);
  int nomem = !g->vals || !g->kind || !g->out || !g->bias || !g->in_start ||
              !g->in_idx || !g->id_keys || !g->id_vals;
  for (int m = 0; m < 2; m++) {
    g->h_keys[m] = calloc(g->h_cap, sizeof *g->h_keys[m]);
    g->h_vals[m] = calloc(g->h_cap, sizeof *g->h_vals[m]);
    nomem |= !g->h_keys[m] || !g->h_vals[m];
  }
  if (nomem) return AE_ENOMEM;
  const val input = {hash_str("input"), hash_str("input"), 0, 0};
  int at = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t *node = json_array_get(nodes, i);
    const json_t *id = json_object_get(node, "id");
    const json_t *op = json_object_get(node, "op");
    const json_t *inputs = json_object_get(node, "inputs");
    if (!json_is_string(id) || !json_is_string(op) || !json_is_array(inputs))
      return 0;
    const char *ids = json_string_value(id), *ops = json_string_value(op);
    g->in_start[i] = at;
    size_t k;
    const json_t *in;
    json_array_foreach(inputs, k, in) {
      if (!json_is_string(in)) return 0;
      const char *s = json_string_value(in);
      if (!strcmp(s, "input")) {
        g->in_idx[at++] = -1;
        continue;
      }
      size_t slot = id_slot(g, s);
      if (!g->id_keys[slot]) return 0; /* not an earlier node */
      g->in_idx[at++] = g->id_vals[slot];
    }
    int n_ins = at - g->in_start[i];
    /* The inputs' values (the skeleton's nodes have at most 2). */
    val ins[2];
    int few = n_ins <= 2;
    for (int e = 0; few && e < n_ins; e++) {
      int src = g->in_idx[g->in_start[i] + e];
      ins[e] = src < 0 ? input : g->vals[src];
    }
    val v;
    if (!strcmp(ops, "add") && n_ins == 2 &&
        json_object_size(node) == 3) { /* id, op, inputs */
      v = v_add(ins[0], ins[1]);
    } else {
      uint64_t sig =
          few ? node_sig(node, ops, &g->kind[i], &g->out[i], &g->bias[i]) : 0;
      if (!sig) /* unique: no expected value ever equals it */
        sig = combine(hash_str("foreign"), (uint64_t)i);
      v = v_op(sig, ins, few ? n_ins : 0);
    }
    g->vals[i] = v;
    if (g->kind[i] == K_CONV) {
      g->n_conv++;
      g->n_conv_bias += g->bias[i];
      if (g->stem < 0 && n_ins == 1 && g->in_idx[g->in_start[i]] == -1)
        g->stem = (int)i;
    }
    g->n_bn += g->kind[i] == K_BN;
    g->n_linear += g->kind[i] == K_LINEAR;
    size_t slot = id_slot(g, ids);
    if (g->id_keys[slot] || !strcmp(ids, "input")) return 0; /* duplicate */
    g->id_keys[slot] = ids;
    g->id_vals[slot] = (int)i;
    h_put(g, 0, v.ho, (int)i);
    h_put(g, 1, v.hs, (int)i);
  }
  g->in_start[n] = at;
  size_t slot = id_slot(g, json_string_value(output));
  if (!g->id_keys[slot]) return 0;
  g->output = g->id_vals[slot];
  return 1;
}

/* 1 when every node reaches the output. */
static int all_reach_output(const graph *g) {
  char *seen = calloc((size_t)g->n, 1);
  if (!seen) return AE_ENOMEM;
  seen[g->output] = 1;
  int all = 1;
  for (int i = g->n - 1; i >= 0; i--) {
    if (!seen[i]) {
      all = 0;
      break;
    }
    for (int k = g->in_start[i]; k < g->in_start[i + 1]; k++)
      if (g->in_idx[k] >= 0) seen[g->in_idx[k]] = 1;
  }
  free(seen);
  return all;
}

/* ---- the skeleton's expected values ---- */

/* The signatures a cell at c channels uses, computed once per c; folded:
 * the eval-mode skeleton (a BN after a conv folded into the conv's
 * bias). */
typedef struct {
  uint64_t relu, bn, zero, pool3, conv1, conv3;
  int folded;
} kit;

static kit kit_for(int c, int folded) {
  kit k = {hash_str("act relu"),
           hash_str("batch_norm"),
           hash_str("zero"),
           sig_avg_pool(3, 1, 1, 0),
           sig_conv(c, 1, 1, 0, 1, 1, folded),
           sig_conv(c, 3, 1, 1, 1, 1, folded),
           folded};
  return k;
}

/* ReLU, conv (its signature, the bias flag k's), BN (folded: none). */
static val relu_conv_bn(const kit *k, val x, uint64_t conv) {
  val y = v_op1(conv, v_op1(k->relu, x));
  return k->folded ? y : v_op1(k->bn, y);
}

static val edge(const kit *k, ae_nb201_op op, val x) {
  switch (op) {
  case AE_NB201_NONE:
    return v_op1(k->zero, x);
  case AE_NB201_SKIP:
    return x;
  case AE_NB201_CONV1X1:
    return relu_conv_bn(k, x, k->conv1);
  case AE_NB201_CONV3X3:
    return relu_conv_bn(k, x, k->conv3);
  case AE_NB201_POOL3X3:
    return v_op1(k->pool3, x);
  }
  return x;
}

/* Node j of a cell: the sum, left to right, of its edges (ops, one per
 * earlier node) from nodes[0 .. j-1]. */
static val cell_node(const kit *k, const val *nodes, int j,
                     const ae_nb201_op *ops) {
  val acc = edge(k, ops[0], nodes[0]);
  for (int s = 1; s < j; s++)
    acc = v_add(acc, edge(k, ops[s], nodes[s]));
  return acc;
}

/* The cell's output on x. */
static val cell(const kit *k, val x, const ae_nb201_op ops[6]) {
  val nodes[4];
  nodes[0] = x;
  nodes[1] = cell_node(k, nodes, 1, ops);
  nodes[2] = cell_node(k, nodes, 2, ops + 1);
  nodes[3] = cell_node(k, nodes, 3, ops + 3);
  return nodes[3];
}

/* The reduction from x to c channels: the node it ends at, or -1. */
static int find_reduction(const graph *g, int m, val x, int c, int folded) {
  kit k = kit_for(c, folded);
  val a = relu_conv_bn(&k, x, sig_conv(c, 3, 2, 1, 1, 1, folded));
  val b = relu_conv_bn(&k, a, k.conv3);
  val pool = v_op1(sig_avg_pool(2, 2, 0, 0), x);
  /* The shortcut's conv has no BN: no bias in either mode. */
  val sc = v_op1(sig_conv(c, 1, 1, 0, 1, 1, 0), pool);
  int at = find(g, m, v_add(b, sc));
  return at >= 0 ? at : find(g, m, v_add(sc, b));
}

/* Follows the network from the stem's output u with the cell ops: 1 and
 * *cells_per_stage when it is NAS-Bench-201's network, else 0. */
static int follow(const graph *g, int m, int folded, val u, int channels,
                  int classes, const ae_nb201_op ops[6], int *cells_per_stage) {
  val cur = u;
  int c = channels, n_first = -1;
  for (int stage = 0; stage < 3; stage++) {
    if (stage) {
      if (c > (1 << 20)) return 0;
      c *= 2;
      int at = find_reduction(g, m, cur, c, folded);
      if (at < 0) return 0;
      cur = g->vals[at];
    }
    kit k = kit_for(c, folded);
    int n = 0;
    for (;;) {
      int at = find(g, m, cell(&k, cur, ops));
      if (at < 0) break;
      cur = g->vals[at];
      if (++n > 64) return 0;
    }
    if (n == 0 || (n_first >= 0 && n != n_first)) return 0;
    n_first = n;
  }
  val bn = v_op1(hash_str("batch_norm"), cur);
  val act = v_op1(hash_str("act relu"), bn);
  val gap = v_op1(hash_str("global_avg_pool"), act);
  val head = v_op1(sig_linear(classes, 1), gap);
  if (find(g, m, head) != g->output) return 0;
  /* The weighted nodes: stem, cells, two reductions, head. */
  long long convs = 0;
  for (int e = 0; e < 6; e++)
    convs += ops[e] == AE_NB201_CONV1X1 || ops[e] == AE_NB201_CONV3X3;
  long long in_cells = 3LL * n_first * convs;
  /* Folded: the head's BN alone, and every conv but the two shortcuts'
   * with a bias; else a BN after every conv but those and none with a
   * bias. */
  long long bns = folded ? 1 : 1 + in_cells + 4 + 1;
  long long biased = folded ? 1 + in_cells + 4 : 0;
  if (g->n_conv != 1 + in_cells + 6 || g->n_bn != bns ||
      g->n_conv_bias != biased || g->n_linear != 1)
    return 0;
  *cells_per_stage = n_first;
  return 1;
}

/* Tries the cells in order (edge 1<-0's op most significant), each node of
 * the first cell looked up as it is built, so that only cells whose nodes
 * all exist are followed through the network.  1 with out filled, or 0. */
static int search(const graph *g, int m, int folded, val u, int channels,
                  int classes, ae_onnx_nb201 *out) {
  kit k = kit_for(channels, folded);
  ae_nb201_op ops[6];
  val nodes[4];
  nodes[0] = u;
  for (int a = 0; a < 5; a++) {
    ops[0] = (ae_nb201_op)a;
    nodes[1] = cell_node(&k, nodes, 1, ops);
    if (find(g, m, nodes[1]) < 0) continue;
    for (int b = 0; b < 25; b++) {
      ops[1] = (ae_nb201_op)(b / 5);
      ops[2] = (ae_nb201_op)(b % 5);
      nodes[2] = cell_node(&k, nodes, 2, ops + 1);
      if (find(g, m, nodes[2]) < 0) continue;
      for (int c = 0; c < 125; c++) {
        ops[3] = (ae_nb201_op)(c / 25);
        ops[4] = (ae_nb201_op)(c / 5 % 5);
        ops[5] = (ae_nb201_op)(c % 5);
        if (find(g, m, cell_node(&k, nodes, 3, ops + 3)) < 0) continue;
        int n;
        if (!follow(g, m, folded, u, channels, classes, ops, &n)) continue;
        memcpy(out->ops, ops, sizeof ops);
        ae_nb201_cell_string(ops, out->cell, sizeof out->cell);
        out->channels = channels;
        out->cells_per_stage = n;
        out->num_classes = classes;
        out->bn_folded = folded;
        return 1;
      }
    }
  }
  return 0;
}

int ae_onnx_nb201_match(const json_t *architecture, const int *input_shape,
                        int input_rank, ae_onnx_nb201 *out) {
  memset(out, 0, sizeof *out);
  if (input_rank != 3 || !input_shape || !json_is_object(architecture))
    return 0;
  const json_t *type = json_object_get(architecture, "type");
  if (!json_is_string(type) || strcmp(json_string_value(type), "graph"))
    return 0;
  graph g;
  int rc = graph_load(architecture, &g);
  if (rc == 1) rc = all_reach_output(&g);
  if (rc != 1 || g.stem < 0 || g.kind[g.output] != K_LINEAR ||
      !g.bias[g.output] || g.out[g.output] < 2 || g.out[g.output] > 100000 ||
      g.out[g.stem] > 65536) {
    graph_free(&g);
    return rc < 0 ? rc : 0;
  }
  int channels = (int)g.out[g.stem], classes = (int)g.out[g.output];
  const val input = {hash_str("input"), hash_str("input"), 0, 0};
  /* The stem's conv has a bias exactly when the export is folded. */
  int folded = g.bias[g.stem];
  val stem = v_op1(sig_conv(channels, 3, 1, 1, 1, 1, folded), input);
  if (!folded) stem = v_op1(hash_str("batch_norm"), stem);
  int found = 0;
  for (int m = 0; m < 2 && !found; m++) {
    int at = find(&g, m, stem);
    if (at >= 0)
      found = search(&g, m, folded, g.vals[at], channels, classes, out);
  }
  if (found) memcpy(out->input_shape, input_shape, sizeof out->input_shape);
  graph_free(&g);
  return found;
}

json_t *ae_onnx_nb201_request_arch(const ae_onnx_nb201 *m) {
  return json_pack("{s:s, s:s, s:i, s:i}", "type", "nb201", "cell", m->cell,
                   "channels", m->channels, "cells_per_stage",
                   m->cells_per_stage);
}

json_t *ae_onnx_nb201_json(const ae_onnx_nb201 *m) {
  json_t *j = ae_onnx_nb201_request_arch(m);
  if (j &&
      (json_object_set_new(j, "num_classes", json_integer(m->num_classes)) ||
       json_object_set_new(j, "input_shape",
                           json_pack("[i, i, i]", m->input_shape[0],
                                     m->input_shape[1], m->input_shape[2])) ||
       json_object_set_new(j, "arch", json_string(m->cell)) ||
       json_object_set_new(j, "bn_folded", json_boolean(m->bn_folded)))) {
    json_decref(j);
    return NULL;
  }
  return j;
}

int ae_onnx_nb201_note(const ae_arch *a, char *buf, size_t len) {
  if (!a->model || a->type != AE_ARCH_NB201) return 0;
  char cell[96];
  ae_nb201_cell_string(a->nb201_ops, cell, sizeof cell);
  if (a->model_bn_folded) {
    snprintf(buf, len,
             "architecture: model %s is a NAS-Bench-201 network (cell %s, "
             "channels %d, cells_per_stage %d) exported in eval mode "
             "(BatchNorm folded into the convs) and was scored as the native "
             "nb201 request, the NAS-Bench-201 cell with BatchNorm; "
             "\"as_graph\": true scores its imported graph instead",
             a->model, cell, a->channels, a->cells_per_stage);
    return 1;
  }
  snprintf(buf, len,
           "architecture: model %s is a NAS-Bench-201 network (cell %s, "
           "channels %d, cells_per_stage %d) and was scored as the native "
           "nb201 request; \"as_graph\": true scores its imported graph "
           "instead",
           a->model, cell, a->channels, a->cells_per_stage);
  return 1;
}
