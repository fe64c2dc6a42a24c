/* canon.c: canonical forms and keys of architectures (the rules are in
 * canon.h).
 *
 * Design: each architecture is first rewritten into one small IR, a "sum
 * DAG": node 0 is the input (nb201's cell input, mlp_dag's stem output, a
 * graph's data); every other node is one op applied to a sum, kept as a
 * sorted multiset of node ids (empty = identically zero).  Building it
 * applies the zero, skip, sum and merge rules as it goes (a value is a
 * multiset; a skip returns its source's multiset; an op on the empty
 * multiset that maps zero to zero returns the empty multiset; a
 * parameter-free op is looked up before it is created).  Then the nodes
 * that do not reach the output are dropped, colour refinement orders the
 * rest, and the form is written node by node in that order.
 *
 * Invariants: a node's arguments are ids of earlier nodes; parameter-free
 * nodes are unique per (label, arguments).  Plain data, no I/O; everything
 * here is owned by the one call of ae_arch_canon. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/canon.h"
#include "api/sha256.h"
#include "api/status.h"

/* ---- the sum DAG ---- */

typedef struct {
  int *ids;         /* sorted, distinct */
  uint64_t *counts; /* how many times each id is summed (>= 1) */
  int n;
} term_set;

typedef struct {
  char *label;    /* the op with every field that matters */
  int has_params; /* 1: never merged with a look-alike */
  term_set arg;   /* the sum the op is applied to */
  uint64_t hash;  /* of label and arg, for lookups */
} sum_node;

typedef struct {
  sum_node *nodes;
  int n, cap;
  int failed;       /* an allocation failed or the budget ran out; every
                       later call is a no-op */
  long long budget; /* term entries that may still be allocated */
} sum_dag;

/* Term entries one canonicalisation may hold at once, summed over every
 * value: bounds time and memory for graphs of wide, deep adds (the form
 * of a 4096-node graph of 64-input adds needs far less). */
#define CANON_MAX_TERMS (1LL << 22)

static uint64_t mix64(uint64_t h, uint64_t x) {
  /* splitmix64's finaliser over h ^ x: a good spread, not cryptographic
   * (these hashes only group nodes; the form itself is compared). */
  h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

static uint64_t hash_str(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h;
}

static void terms_free(term_set *t) {
  free(t->ids);
  free(t->counts);
  t->ids = NULL;
  t->counts = NULL;
  t->n = 0;
}

static int terms_alloc(sum_dag *d, int n, term_set *dst) {
  dst->n = 0;
  dst->ids = NULL;
  dst->counts = NULL;
  if (d->budget < n) return AE_ENOMEM;
  d->budget -= n;
  dst->ids = malloc(((size_t)n + 1) * sizeof *dst->ids);
  dst->counts = malloc(((size_t)n + 1) * sizeof *dst->counts);
  if (!dst->ids || !dst->counts) {
    terms_free(dst);
    return AE_ENOMEM;
  }
  return AE_OK;
}

/* dst = the sum of the sets src[0..count): ids merged, counts added. */
static int terms_union(sum_dag *d, const term_set *src, int count,
                       term_set *dst) {
  int n = 0;
  for (int i = 0; i < count; i++)
    n += src[i].n;
  if (terms_alloc(d, n, dst) != AE_OK) return AE_ENOMEM;
  int *pos = calloc((size_t)count + 1, sizeof *pos);
  if (!pos) {
    terms_free(dst);
    return AE_ENOMEM;
  }
  for (;;) {
    int best = -1;
    for (int i = 0; i < count; i++)
      if (pos[i] < src[i].n &&
          (best < 0 || src[i].ids[pos[i]] < src[best].ids[pos[best]]))
        best = i;
    if (best < 0) break;
    int id = src[best].ids[pos[best]];
    uint64_t c = src[best].counts[pos[best]++];
    if (dst->n > 0 && dst->ids[dst->n - 1] == id) {
      if (dst->counts[dst->n - 1] > UINT64_MAX - c) {
        free(pos);
        terms_free(dst);
        return AE_ENOMEM; /* 2^64 copies of one term: give up */
      }
      dst->counts[dst->n - 1] += c;
    } else {
      dst->ids[dst->n] = id;
      dst->counts[dst->n++] = c;
    }
  }
  free(pos);
  return AE_OK;
}

static int terms_single(sum_dag *d, int id, term_set *dst) {
  if (terms_alloc(d, 1, dst) != AE_OK) return AE_ENOMEM;
  dst->ids[0] = id;
  dst->counts[0] = 1;
  dst->n = 1;
  return AE_OK;
}

static int terms_copy(sum_dag *d, const term_set *src, term_set *dst) {
  return terms_union(d, src, 1, dst);
}

static int terms_equal(const term_set *a, const term_set *b) {
  return a->n == b->n &&
         !memcmp(a->ids, b->ids, (size_t)a->n * sizeof *a->ids) &&
         !memcmp(a->counts, b->counts, (size_t)a->n * sizeof *a->counts);
}

static void dag_free(sum_dag *d) {
  for (int i = 0; i < d->n; i++) {
    free(d->nodes[i].label);
    terms_free(&d->nodes[i].arg);
  }
  free(d->nodes);
  memset(d, 0, sizeof *d);
}

/* Appends a node (label and arg are taken over); returns its id or -1. */
static int dag_push(sum_dag *d, char *label, int has_params, term_set *arg,
                    uint64_t hash) {
  if (d->n == d->cap) {
    int cap = d->cap ? 2 * d->cap : 16;
    sum_node *nodes = realloc(d->nodes, (size_t)cap * sizeof *nodes);
    if (!nodes) return -1;
    d->nodes = nodes;
    d->cap = cap;
  }
  sum_node *n = &d->nodes[d->n];
  n->label = label;
  n->has_params = has_params;
  n->arg = *arg;
  n->hash = hash;
  arg->ids = NULL;
  arg->n = 0;
  return d->n++;
}

static int dag_init(sum_dag *d) {
  memset(d, 0, sizeof *d);
  d->budget = CANON_MAX_TERMS;
  char *label = strdup("input");
  term_set none = {NULL, NULL, 0};
  if (!label || dag_push(d, label, 0, &none, hash_str("input")) != 0) {
    free(label);
    return AE_ENOMEM;
  }
  return AE_OK;
}

/* The value of applying op `label` to the sum arg, into out: empty when
 * arg is zero and the op maps zero to zero, else a single node (an earlier
 * equal one for an op without parameters).  arg is borrowed. */
static void dag_apply(sum_dag *d, const char *label, int has_params,
                      int zero_to_zero, const term_set *arg, term_set *out) {
  out->ids = NULL;
  out->n = 0;
  if (d->failed) return;
  if (arg->n == 0 && zero_to_zero) {
    if (terms_copy(d, arg, out) != AE_OK) d->failed = 1;
    return;
  }
  uint64_t h = hash_str(label);
  for (int i = 0; i < arg->n; i++)
    h = mix64(mix64(h, (uint64_t)arg->ids[i]), arg->counts[i]);
  if (!has_params)
    for (int i = 1; i < d->n; i++) {
      const sum_node *n = &d->nodes[i];
      if (n->hash == h && !n->has_params && !strcmp(n->label, label) &&
          terms_equal(&n->arg, arg)) {
        if (terms_single(d, i, out) != AE_OK) d->failed = 1;
        return;
      }
    }
  term_set copy;
  char *name = strdup(label);
  if (!name || terms_copy(d, arg, &copy) != AE_OK) {
    free(name);
    d->failed = 1;
    return;
  }
  int id = dag_push(d, name, has_params, &copy, h);
  if (id < 0) {
    free(name);
    terms_free(&copy);
    d->failed = 1;
    return;
  }
  if (terms_single(d, id, out) != AE_OK) d->failed = 1;
}

/* ---- text ---- */

typedef struct {
  char *s;
  size_t len, cap;
  int failed;
} text;

static void text_add(text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void text_add(text *t, const char *fmt, ...) {
  if (t->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->cap - t->len;
    int n = t->s ? vsnprintf(t->s + t->len, room, fmt, ap) : -2;
    va_end(ap);
    if (n == -1) {
      t->failed = 1;
      return;
    }
    if (n >= 0 && (size_t)n < room) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = t->cap ? 2 * t->cap : 256;
    while (n >= 0 && cap < t->len + (size_t)n + 1)
      cap *= 2;
    char *s = realloc(t->s, cap);
    if (!s) {
      t->failed = 1;
      return;
    }
    t->s = s;
    t->cap = cap;
  }
}

/* ---- activations ---- */

/* Whether fn(0) = 0: every activation but sigmoid (swish, gelu, erf and
 * tanh all pass through the origin). */
static int act_zero_to_zero(ae_act_fn fn) {
  return fn != AE_ACT_SIGMOID;
}

/* "relu" or "leaky_relu:0.01" into buf. */
static void act_text(ae_activation a, char *buf, size_t size) {
  const char *name = ae_act_name(a.fn);
  if (a.fn == AE_ACT_LEAKY_RELU)
    snprintf(buf, size, "%s:%.17g", name ? name : "?", a.slope);
  else
    snprintf(buf, size, "%s", name ? name : "?");
}

/* ---- architecture -> sum DAG ---- */

static const char *const nb201_unit[] = {[AE_NB201_CONV1X1] = "nor_conv_1x1",
                                         [AE_NB201_CONV3X3] = "nor_conv_3x3",
                                         [AE_NB201_POOL3X3] = "avg_pool_3x3"};

/* The value of each cell node from the DAG edges; out = the last node's.
 * For nb201 the edge ops come from nb201_ops, for mlp_dag from the edge
 * kinds and activations. */
static int cell_to_dag(const ae_arch *a, sum_dag *d, term_set *out) {
  int n_nodes = a->dag.n_nodes;
  term_set *val = calloc((size_t)n_nodes, sizeof *val);
  term_set *terms = calloc((size_t)n_nodes, sizeof *terms);
  if (!val || !terms) {
    free(val);
    free(terms);
    return AE_ENOMEM;
  }
  if (terms_single(d, 0, &val[0]) != AE_OK) d->failed = 1;
  int e = 0;
  for (int t = 1; t < n_nodes && !d->failed; t++) {
    int n_terms = 0;
    for (; e < a->dag.n_edges && a->dag.edges[e].dst == t; e++) {
      const ae_dag_edge *ed = &a->dag.edges[e];
      const term_set *src = &val[ed->src];
      term_set *term = &terms[n_terms];
      if (a->type == AE_ARCH_NB201) {
        ae_nb201_op op = a->nb201_ops[e];
        if (op == AE_NB201_NONE) continue;
        if (op == AE_NB201_SKIP) {
          if (terms_copy(d, src, term) != AE_OK) d->failed = 1;
        } else {
          dag_apply(d, nb201_unit[op], op != AE_NB201_POOL3X3, 1, src, term);
        }
      } else {
        if (ed->kind == AE_EDGE_ZERO) continue;
        if (ed->kind == AE_EDGE_SKIP) {
          if (terms_copy(d, src, term) != AE_OK) d->failed = 1;
        } else {
          char act[64], label[96];
          act_text(ed->act, act, sizeof act);
          snprintf(label, sizeof label, "linear[%s]", act);
          dag_apply(d, label, 1, act_zero_to_zero(ed->act.fn) && !a->bias, src,
                    term);
        }
      }
      n_terms++;
    }
    if (!d->failed && terms_union(d, terms, n_terms, &val[t]) != AE_OK)
      d->failed = 1;
    for (int k = 0; k < n_terms; k++)
      terms_free(&terms[k]);
  }
  if (!d->failed && terms_copy(d, &val[n_nodes - 1], out) != AE_OK)
    d->failed = 1;
  for (int t = 0; t < n_nodes; t++)
    terms_free(&val[t]);
  free(val);
  free(terms);
  return d->failed ? AE_ENOMEM : AE_OK;
}

/* Whether the lowering scales inputs (a graph without conv, pools or
 * batch norm: lower.c's graph_is_dense). */
static int graph_dense(const ae_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    ae_op op = g->nodes[i].op;
    if (op == AE_OP_CONV || op == AE_OP_AVG_POOL ||
        op == AE_OP_GLOBAL_AVG_POOL || op == AE_OP_BATCH_NORM)
      return 0;
  }
  return 1;
}

/* A linear or conv node's init gain, as ae_arch_lower sets it. */
static double graph_gain(const ae_graph *g, const ae_node *n) {
  const ae_node *in = &g->nodes[n->inputs[0]];
  return in->op == AE_OP_ACT ? ae_act_c_sigma(in->act) : 1.0;
}

static int graph_to_dag(const ae_graph *g, sum_dag *d, term_set *out) {
  int nn = g->n_nodes;
  term_set *val = calloc((size_t)nn + 1, sizeof *val);
  int *rank1 = calloc((size_t)nn + 1, sizeof *rank1);
  if (!val || !rank1) {
    free(val);
    free(rank1);
    return AE_ENOMEM;
  }
  for (int i = 0; i < nn && !d->failed; i++) {
    const ae_node *n = &g->nodes[i];
    const term_set *in = n->n_inputs > 0 ? &val[n->inputs[0]] : NULL;
    int in_rank1 = n->n_inputs > 0 ? rank1[n->inputs[0]] : 0;
    char label[256], act[64];
    int rc = AE_OK;
    rank1[i] = in_rank1;
    switch (n->op) {
    case AE_OP_INPUT:
      rc = terms_single(d, 0, &val[i]);
      rank1[i] = 0; /* the data's rank is not known here */
      break;
    case AE_OP_ZERO:
      rc = terms_union(d, NULL, 0, &val[i]);
      break;
    case AE_OP_IDENTITY:
      rc = terms_copy(d, in, &val[i]);
      break;
    case AE_OP_ADD: {
      term_set *parts = calloc((size_t)n->n_inputs, sizeof *parts);
      if (!parts) {
        rc = AE_ENOMEM;
        break;
      }
      for (int k = 0; k < n->n_inputs; k++)
        parts[k] = val[n->inputs[k]]; /* borrowed */
      rc = terms_union(d, parts, n->n_inputs, &val[i]);
      free(parts);
      break;
    }
    case AE_OP_ACT:
      if (n->act.fn == AE_ACT_IDENTITY) {
        rc = terms_copy(d, in, &val[i]);
        break;
      }
      act_text(n->act, act, sizeof act);
      snprintf(label, sizeof label, "act[%s]", act);
      dag_apply(d, label, 0, act_zero_to_zero(n->act.fn), in, &val[i]);
      break;
    case AE_OP_FLATTEN:
      rank1[i] = 1;
      if (in_rank1) {
        rc = terms_copy(d, in, &val[i]);
        break;
      }
      dag_apply(d, "flatten", 0, 1, in, &val[i]);
      break;
    case AE_OP_GLOBAL_AVG_POOL:
      rank1[i] = 1;
      dag_apply(d, "global_avg_pool", 0, 1, in, &val[i]);
      break;
    case AE_OP_AVG_POOL:
      rank1[i] = 0;
      snprintf(label, sizeof label, "avg_pool[k=%d,s=%d,p=%d,cip=%d]",
               n->kernel, n->stride, n->padding, n->count_include_pad);
      dag_apply(d, label, 0, 1, in, &val[i]);
      break;
    case AE_OP_BATCH_NORM:
      dag_apply(d, "batch_norm", 1, 1, in, &val[i]);
      break;
    case AE_OP_LINEAR:
      rank1[i] = 1;
      snprintf(label, sizeof label, "linear[out=%d,bias=%d,gain=%.17g]", n->out,
               n->bias, graph_gain(g, n));
      dag_apply(d, label, 1, !n->bias, in, &val[i]);
      break;
    case AE_OP_CONV:
      rank1[i] = 0;
      snprintf(label, sizeof label, "conv[out=%d,k=%d,s=%d,p=%d,gain=%.17g]",
               n->out, n->kernel, n->stride, n->padding, graph_gain(g, n));
      dag_apply(d, label, 1, 1, in, &val[i]);
      break;
    }
    if (rc != AE_OK) d->failed = 1;
  }
  /* Flattens and skips at the output change nothing: the lowering
   * flattens a rank-3 output, and a flatten of rank 1 is the identity. */
  int o = g->output;
  while (
      o > 0 &&
      (g->nodes[o].op == AE_OP_FLATTEN || g->nodes[o].op == AE_OP_IDENTITY ||
       (g->nodes[o].op == AE_OP_ACT && g->nodes[o].act.fn == AE_ACT_IDENTITY)))
    o = g->nodes[o].inputs[0];
  if (!d->failed && terms_copy(d, &val[o], out) != AE_OK) d->failed = 1;
  for (int i = 0; i < nn; i++)
    terms_free(&val[i]);
  free(val);
  free(rank1);
  return d->failed ? AE_ENOMEM : AE_OK;
}

/* ---- canonical order ---- */

typedef struct {
  uint64_t colour;
  int id;
} coloured;

static int coloured_cmp(const void *x, const void *y) {
  const coloured *a = x, *b = y;
  if (a->colour != b->colour) return a->colour < b->colour ? -1 : 1;
  return (a->id > b->id) - (a->id < b->id);
}

static int coloured_by_id(const void *x, const void *y) {
  const coloured *a = x, *b = y;
  return (a->id > b->id) - (a->id < b->id);
}

static int u64_cmp(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return (a > b) - (a < b);
}

/* Sorts a[0..m): insertion sort for the short lists most nodes have,
 * qsort beyond. */
static void sort_u64(uint64_t *a, int m) {
  if (m > 16) {
    qsort(a, (size_t)m, sizeof *a, u64_cmp);
    return;
  }
  for (int i = 1; i < m; i++) {
    uint64_t x = a[i];
    int j = i;
    for (; j > 0 && a[j - 1] > x; j--)
      a[j] = a[j - 1];
    a[j] = x;
  }
}

static int count_colours(const uint64_t *colour, const int *live, int n,
                         uint64_t *scratch) {
  int m = 0;
  for (int i = 0; i < n; i++)
    if (live[i]) scratch[m++] = colour[i];
  qsort(scratch, (size_t)m, sizeof *scratch, u64_cmp);
  int distinct = 0;
  for (int i = 0; i < m; i++)
    distinct += i == 0 || scratch[i] != scratch[i - 1];
  return distinct;
}

/* Refines colour (of live nodes) until the number of classes stops
 * growing: a node's new colour hashes its colour, its arguments' colours
 * and its consumers' colours (each as a sorted multiset) and how often the
 * output uses it. */
static int refine(const sum_dag *d, const term_set *out, const int *live,
                  uint64_t *colour, int *classes) {
  int n = d->n;
  int n_uses = out->n;
  for (int i = 0; i < n; i++)
    if (live[i]) n_uses += d->nodes[i].arg.n;
  uint64_t *next = calloc((size_t)n, sizeof *next);
  uint64_t *scratch = calloc((size_t)n + (size_t)n_uses + 1, sizeof *scratch);
  /* users[first[v]..first[v+1]) = the nodes whose arg holds v (repeats
   * kept); -1 = the output. */
  int *first = calloc((size_t)n + 1, sizeof *first);
  int *users = calloc((size_t)n_uses + 1, sizeof *users);
  uint64_t *times = calloc((size_t)n_uses + 1, sizeof *times);
  int *fill = calloc((size_t)n + 1, sizeof *fill);
  if (!next || !scratch || !first || !users || !times || !fill) {
    free(next);
    free(scratch);
    free(first);
    free(users);
    free(times);
    free(fill);
    return AE_ENOMEM;
  }
  for (int i = 0; i < n; i++)
    if (live[i])
      for (int k = 0; k < d->nodes[i].arg.n; k++)
        first[d->nodes[i].arg.ids[k] + 1]++;
  for (int k = 0; k < out->n; k++)
    first[out->ids[k] + 1]++;
  for (int v = 0; v < n; v++)
    first[v + 1] += first[v];
  memcpy(fill, first, (size_t)n * sizeof *fill);
  for (int i = 0; i < n; i++)
    if (live[i])
      for (int k = 0; k < d->nodes[i].arg.n; k++) {
        int u = fill[d->nodes[i].arg.ids[k]]++;
        users[u] = i;
        times[u] = d->nodes[i].arg.counts[k];
      }
  for (int k = 0; k < out->n; k++) {
    int u = fill[out->ids[k]]++;
    users[u] = -1;
    times[u] = out->counts[k];
  }

  *classes = count_colours(colour, live, n, scratch);
  for (int round = 0; round <= n; round++) {
    for (int v = 0; v < n; v++) {
      if (!live[v]) continue;
      uint64_t h = mix64(colour[v], 0x61726773); /* "args" */
      const term_set *arg = &d->nodes[v].arg;
      int m = 0;
      for (int k = 0; k < arg->n; k++)
        scratch[m++] = mix64(colour[arg->ids[k]], arg->counts[k]);
      sort_u64(scratch, m);
      for (int k = 0; k < m; k++)
        h = mix64(h, scratch[k]);
      h = mix64(h, 0x75736573); /* "uses" */
      m = 0;
      for (int u = first[v]; u < first[v + 1]; u++)
        scratch[m++] = mix64(users[u] < 0 ? 0x6f7574 /* "out" */
                                          : colour[users[u]],
                             times[u]);
      sort_u64(scratch, m);
      for (int k = 0; k < m; k++)
        h = mix64(h, scratch[k]);
      next[v] = h;
    }
    int now = count_colours(next, live, n, scratch);
    memcpy(colour, next, (size_t)n * sizeof *colour);
    if (now <= *classes) break;
    *classes = now;
  }
  free(next);
  free(scratch);
  free(first);
  free(users);
  free(times);
  free(fill);
  return AE_OK;
}

/* Orders the live nodes canonically into order[0..n_live): node 0 first,
 * then by depth (longest path from node 0), then by refined colour; ties
 * are broken by individualising one node at a time. */
static int canonical_order(const sum_dag *d, const term_set *out,
                           const int *live, int *order, int *n_order) {
  int n = d->n, rc = AE_ENOMEM;
  uint64_t *colour = calloc((size_t)n, sizeof *colour);
  int *depth = calloc((size_t)n, sizeof *depth);
  coloured *sorted = calloc((size_t)n, sizeof *sorted);
  if (!colour || !depth || !sorted) goto done;
  for (int v = 0; v < n; v++) {
    if (!live[v]) continue;
    for (int k = 0; k < d->nodes[v].arg.n; k++) {
      int a = d->nodes[v].arg.ids[k];
      if (depth[a] + 1 > depth[v]) depth[v] = depth[a] + 1;
    }
    if (v > 0 && depth[v] == 0) depth[v] = 1;
    colour[v] = mix64(
        mix64(hash_str(d->nodes[v].label), (uint64_t)d->nodes[v].has_params),
        (uint64_t)depth[v]);
  }
  int n_live = 0;
  for (int v = 0; v < n; v++)
    n_live += live[v];
  for (int step = 0;; step++) {
    int classes;
    if (refine(d, out, live, colour, &classes) != AE_OK) goto done;
    /* Sort by (depth, colour); the first tied pair, if any, is split. */
    int m = 0;
    for (int v = 0; v < n; v++)
      if (live[v]) {
        sorted[m].colour = colour[v];
        sorted[m].id = v;
        m++;
      }
    qsort(sorted, (size_t)m, sizeof *sorted, coloured_cmp);
    /* Each split adds a class; the bound only guards against a hash
     * collision undoing one (the order is then still deterministic). */
    if (classes == n_live || step > n_live) break;
    for (int k = 1; k < m; k++)
      if (sorted[k].colour == sorted[k - 1].colour) {
        colour[sorted[k - 1].id] =
            mix64(colour[sorted[k - 1].id], 0x696e646976ULL); /* "indiv" */
        break;
      }
  }
  /* Depth first (so arguments come before their ops), colour within. */
  int m = 0;
  for (int dep = 0; m < n_live; dep++)
    for (int k = 0; k < n_live; k++) {
      int v = sorted[k].id;
      if (depth[v] == dep) order[m++] = v;
    }
  *n_order = m;
  rc = AE_OK;
done:
  free(colour);
  free(depth);
  free(sorted);
  return rc;
}

/* ---- the form ---- */

/* Writes a sum as "n1+2*n3" (terms by canonical index), "0" if empty;
 * scratch holds s->n entries. */
static void write_terms(text *t, const term_set *s, const int *index,
                        coloured *scratch) {
  if (s->n == 0) {
    text_add(t, "0");
    return;
  }
  for (int k = 0; k < s->n; k++) {
    scratch[k].id = index[s->ids[k]];
    scratch[k].colour = s->counts[k];
  }
  qsort(scratch, (size_t)s->n, sizeof *scratch, coloured_by_id);
  for (int k = 0; k < s->n; k++) {
    text_add(t, "%s", k ? "+" : "");
    if (scratch[k].colour > 1)
      text_add(t, "%llu*", (unsigned long long)scratch[k].colour);
    text_add(t, "n%d", scratch[k].id);
  }
}

/* Prunes d to what reaches out, orders it and writes the nodes and the
 * output into t. */
static int write_dag(const sum_dag *d, const term_set *out, text *t,
                     int *n_ops) {
  int n = d->n, rc = AE_ENOMEM;
  int *live = calloc((size_t)n, sizeof *live);
  int *order = calloc((size_t)n, sizeof *order);
  int *index = calloc((size_t)n, sizeof *index);
  coloured *scratch = NULL;
  int max_arg = out->n;
  if (!live || !order || !index) goto done;
  live[0] = 1;
  for (int k = 0; k < out->n; k++)
    live[out->ids[k]] = 1;
  for (int v = n - 1; v > 0; v--)
    if (live[v])
      for (int k = 0; k < d->nodes[v].arg.n; k++)
        live[d->nodes[v].arg.ids[k]] = 1;
  for (int v = 0; v < n; v++)
    if (live[v] && d->nodes[v].arg.n > max_arg) max_arg = d->nodes[v].arg.n;
  scratch = calloc((size_t)max_arg + 1, sizeof *scratch);
  if (!scratch) goto done;
  int m;
  if (canonical_order(d, out, live, order, &m) != AE_OK) goto done;
  for (int k = 0; k < m; k++)
    index[order[k]] = k;
  for (int k = 1; k < m; k++) {
    const sum_node *v = &d->nodes[order[k]];
    text_add(t, " n%d=%s(", k, v->label);
    write_terms(t, &v->arg, index, scratch);
    text_add(t, ");");
  }
  text_add(t, " out=");
  write_terms(t, out, index, scratch);
  *n_ops = m - 1;
  rc = t->failed ? AE_ENOMEM : AE_OK;
done:
  free(live);
  free(order);
  free(index);
  free(scratch);
  return rc;
}

/* ---- nb101 and darts: the cell's form, minimal over relabellings ---- */

/* Calls visit(perm) for every permutation of 0..n-1 (n <= 5), Heap's
 * algorithm without recursion. */
static void for_each_permutation(int n, void (*visit)(const int *, void *),
                                 void *ctx) {
  int perm[5] = {0}, c[5] = {0};
  for (int i = 0; i < n; i++)
    perm[i] = i;
  visit(perm, ctx);
  for (int i = 1; i < n;) {
    if (c[i] < i) {
      int j = i % 2 ? c[i] : 0, t = perm[j];
      perm[j] = perm[i];
      perm[i] = t;
      visit(perm, ctx);
      c[i]++;
      i = 1;
    } else {
      c[i++] = 0;
    }
  }
}

typedef struct {
  const ae_arch *a;
  const ae_darts_cell *cell;
  char best[256];
} cell_min;

/* nb101: interior vertex v moves to 1 + perm[v - 1]; kept when every edge
 * still goes forward.  Form: the ops, then the matrix's rows as bits. */
static void nb101_visit(const int *perm, void *ctx) {
  cell_min *m = ctx;
  const ae_arch *a = m->a;
  int n = a->nb101_vertices, to[7];
  to[0] = 0;
  to[n - 1] = n - 1;
  for (int v = 1; v < n - 1; v++)
    to[v] = 1 + perm[v - 1];
  unsigned char mat[7][7];
  char ops[8], buf[256];
  memset(mat, 0, sizeof mat);
  for (int i = 0; i < n; i++)
    for (int k = 0; k < n; k++)
      if (a->nb101_matrix[i][k]) {
        if (to[i] >= to[k]) return;
        mat[to[i]][to[k]] = 1;
      }
  for (int v = 0; v < n; v++)
    ops[to[v]] = (char)('0' + a->nb101_ops[v]);
  ops[n] = '\0';
  int len = snprintf(buf, sizeof buf, "ops=%s matrix=", ops);
  for (int i = 0; i < n && len < (int)sizeof buf - 2; i++) {
    for (int k = 0; k < n; k++)
      buf[len++] = (char)('0' + mat[i][k]);
    buf[len++] = i + 1 < n ? '/' : '\0';
  }
  if (!m->best[0] || strcmp(buf, m->best) < 0) memcpy(m->best, buf, 256);
}

/* darts: node i moves to state 2 + perm[i]; kept when every input is an
 * earlier state.  Form: per node its two "op@input" sorted, then the
 * concat states. */
static void darts_visit(const int *perm, void *ctx) {
  cell_min *m = ctx;
  const ae_darts_cell *c = m->cell;
  int to[6] = {0, 1, 2 + perm[0], 2 + perm[1], 2 + perm[2], 2 + perm[3]};
  char pair[4][2][32], buf[256];
  for (int node = 0; node < 4; node++)
    for (int h = 0; h < 2; h++) {
      int k = 2 * node + h, in = to[c->input[k]];
      if (in >= to[2 + node]) return;
      snprintf(pair[to[2 + node] - 2][h], 32, "%s@%d",
               ae_darts_op_name(c->op[k]), in);
    }
  int len = 0;
  for (int j = 0; j < 4; j++) {
    int lo = strcmp(pair[j][0], pair[j][1]) > 0;
    len += snprintf(buf + len, sizeof buf - (size_t)len, "s%d=%s+%s ", 2 + j,
                    pair[j][lo], pair[j][!lo]);
  }
  unsigned concat = 0;
  for (int s = 2; s < 6; s++)
    if (c->concat & (1u << s)) concat |= 1u << to[s];
  len += snprintf(buf + len, sizeof buf - (size_t)len, "concat=");
  for (int s = 2; s < 6; s++)
    if (concat & (1u << s))
      len += snprintf(buf + len, sizeof buf - (size_t)len, "%d", s);
  if (!m->best[0] || strcmp(buf, m->best) < 0) memcpy(m->best, buf, 256);
}

/* The form of an nb101 or darts architecture (after the header). */
static void cell_arch_form(const ae_arch *a, text *t, int *n_ops) {
  cell_min m;
  memset(&m, 0, sizeof m);
  m.a = a;
  if (a->type == AE_ARCH_NB101) {
    text_add(t,
             "nb101 stem_channels=%d stacks=%d cells_per_stack=%d "
             "num_classes=%d; cell: ",
             a->stem_channels, a->stacks, a->cells_per_stack, a->num_classes);
    int interior = a->nb101_vertices - 2;
    if (interior > 0)
      for_each_permutation(interior, nb101_visit, &m);
    else
      nb101_visit(NULL, &m);
    text_add(t, "%s", m.best);
    *n_ops = interior;
    return;
  }
  text_add(t, "darts channels=%d layers=%d num_classes=%d; normal: ",
           a->darts_channels, a->darts_layers, a->num_classes);
  m.cell = &a->darts_normal;
  for_each_permutation(4, darts_visit, &m);
  text_add(t, "%s; reduce: ", m.best);
  memset(m.best, 0, sizeof m.best);
  m.cell = &a->darts_reduce;
  for_each_permutation(4, darts_visit, &m);
  text_add(t, "%s", m.best);
  *n_ops = 0;
  for (int k = 0; k < 8; k++)
    *n_ops += (a->darts_normal.op[k] != AE_DARTS_NONE) +
              (a->darts_reduce.op[k] != AE_DARTS_NONE);
}

/* 1 when the graph uses what graph_to_dag does not model: the ops after
 * AE_OP_FLATTEN (max_pool, concat, mul, pad) or a grouped or dilated conv.
 * Such a graph is keyed by its nodes as they are (graph_raw_form): no two
 * different graphs share a key, at the price of not merging equivalent
 * ones. */
static int graph_needs_raw_form(const ae_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    const ae_node *n = &g->nodes[i];
    if ((int)n->op > (int)AE_OP_FLATTEN) return 1;
    if (n->op == AE_OP_CONV && (n->groups > 1 || n->dilation > 1)) return 1;
  }
  return 0;
}

/* Every node in order with every field that changes what it computes. */
static void graph_raw_form(const ae_graph *g, text *t) {
  text_add(t, "graph raw; output=%d; nodes:", g->output);
  for (int i = 0; i < g->n_nodes; i++) {
    const ae_node *n = &g->nodes[i];
    char act[64];
    act_text(n->act, act, sizeof act);
    text_add(t,
             " %d:%s[out=%d,k=%d,s=%d,p=%d,g=%d,d=%d,ceil=%d,"
             "pads=%d/%d/%d/%d,cip=%d,bias=%d,block=%d,gain=%.17g",
             i, ae_op_name(n->op), n->out, n->kernel, n->stride, n->padding,
             n->groups, n->dilation, n->ceil_mode, n->pads[0], n->pads[1],
             n->pads[2], n->pads[3], n->count_include_pad, n->bias, n->block,
             n->op == AE_OP_CONV || n->op == AE_OP_LINEAR ? graph_gain(g, n)
                                                          : 0.0);
    if (n->op == AE_OP_ACT) text_add(t, ",act=%s", act);
    text_add(t, "](");
    for (int k = 0; k < n->n_inputs; k++)
      text_add(t, "%s%d", k ? "," : "", n->inputs[k]);
    text_add(t, ")");
  }
}

int ae_arch_canon(const ae_arch *a, ae_canon *out) {
  memset(out, 0, sizeof *out);
  sum_dag d;
  term_set result = {NULL, NULL, 0};
  text t = {NULL, 0, 0, 0};
  int raw = 0;
  int rc = dag_init(&d);
  if (rc != AE_OK) return rc;
  text_add(&t, "canon/%d ", AE_CANON_VERSION);
  switch (a->type) {
  case AE_ARCH_NB201:
    text_add(&t, "nb201 channels=%d cells_per_stage=%d num_classes=%d; cell:",
             a->channels, a->cells_per_stage, a->num_classes);
    rc = cell_to_dag(a, &d, &result);
    break;
  case AE_ARCH_MLP_DAG:
    text_add(&t, "mlp_dag width=%d bias=%d num_classes=%d; dag:", a->width,
             a->bias, a->num_classes);
    rc = cell_to_dag(a, &d, &result);
    break;
  case AE_ARCH_GRAPH:
    if (graph_needs_raw_form(&a->graph)) {
      graph_raw_form(&a->graph, &t);
      raw = 1;
      break;
    }
    text_add(&t, "graph dense=%d; nodes:", graph_dense(&a->graph));
    rc = graph_to_dag(&a->graph, &d, &result);
    break;
  case AE_ARCH_NB101:
  case AE_ARCH_DARTS:
    cell_arch_form(a, &t, &out->n_ops);
    rc = t.failed ? AE_ENOMEM : AE_OK;
    if (rc == AE_OK) {
      out->form = t.s;
      ae_sha256_hex(out->form, strlen(out->form), out->key);
    } else {
      free(t.s);
    }
    dag_free(&d);
    return rc;
  default:
    rc = AE_EINVAL;
    break;
  }
  if (rc == AE_OK && !raw) rc = write_dag(&d, &result, &t, &out->n_ops);
  if (raw) out->n_ops = a->graph.n_nodes;
  if (rc == AE_OK && t.failed) rc = AE_ENOMEM;
  if (rc == AE_OK) {
    out->degenerate = !raw && result.n == 0;
    out->form = t.s;
    t.s = NULL;
    ae_sha256_hex(out->form, strlen(out->form), out->key);
  }
  free(t.s);
  terms_free(&result);
  dag_free(&d);
  return rc;
}

void ae_canon_free(ae_canon *c) {
  if (!c) return;
  free(c->form);
  memset(c, 0, sizeof *c);
}
