/* lower.c: turns an ae_arch into the executable ae_graph.
 *
 * nb201 becomes NAS-Bench-201's TinyNetwork (metrics.md §5.1) or, for the
 * linear-regions probe, one C=1 cell without stem, or for ranking.md §0's
 * probe the TinyNetwork at C = 3 with one cell per stage; mlp_dag becomes
 * the MLP DAG of metrics.md §5.2 in pre-activation form; nb101 becomes
 * NAS-Bench-101's network (nasbench's model_builder.py) and darts DARTS'
 * NetworkCIFAR (quark0/darts cnn/model.py, no auxiliary head), the same
 * for every probe; a user graph is copied.  Block outputs (ranking.md §0) are
 * marked.  Then shapes are inferred, init gains set (c_sigma of an ACT feeding
 * a LINEAR/CONV directly, else 1), and the parameter limit is enforced.  Also:
 * parameter and FLOP counts, deep copy, free.  Plain data; the caller
 * owns the graph. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/arch.h"
#include "api/status.h"

void ae_graph_free(ae_graph *g) {
  if (!g) return;
  for (int i = 0; i < g->n_nodes; i++) {
    free(g->nodes[i].name);
    free(g->nodes[i].inputs);
  }
  free(g->nodes);
  memset(g, 0, sizeof *g);
}

int ae_graph_copy(const ae_graph *src, ae_graph *dst) {
  memset(dst, 0, sizeof *dst);
  *dst = *src;
  dst->nodes = NULL;
  dst->n_nodes = 0;
  if (src->n_nodes == 0) return AE_OK;
  dst->nodes = calloc((size_t)src->n_nodes, sizeof *dst->nodes);
  if (!dst->nodes) return AE_ENOMEM;
  for (int i = 0; i < src->n_nodes; i++) {
    ae_node *d = &dst->nodes[i];
    const ae_node *s = &src->nodes[i];
    *d = *s;
    d->name = NULL;
    d->inputs = NULL;
    dst->n_nodes = i + 1;
    if (s->name && !(d->name = strdup(s->name))) goto fail;
    if (s->n_inputs > 0) {
      d->inputs = malloc((size_t)s->n_inputs * sizeof *d->inputs);
      if (!d->inputs) goto fail;
      memcpy(d->inputs, s->inputs, (size_t)s->n_inputs * sizeof *d->inputs);
    }
  }
  return AE_OK;
fail:
  ae_graph_free(dst);
  return AE_ENOMEM;
}

int ae_graph_block_outputs(const ae_graph *g, int **blocks, int *n) {
  *blocks = NULL;
  *n = 0;
  int count = 0;
  for (int i = 0; i < g->n_nodes; i++)
    count += g->nodes[i].block != 0;
  if (!count) return AE_OK;
  int *b = malloc((size_t)count * sizeof *b);
  if (!b) return AE_ENOMEM;
  for (int i = 0, k = 0; i < g->n_nodes; i++)
    if (g->nodes[i].block) b[k++] = i;
  *blocks = b;
  *n = count;
  return AE_OK;
}

/* ---- counting ---- */

static double node_elems(const ae_node *n) {
  return n->rank == 3 ? (double)n->shape[0] * n->shape[1] * n->shape[2]
                      : (double)n->shape[0];
}

double ae_node_params(const ae_graph *g, const ae_node *n) {
  switch (n->op) {
  case AE_OP_LINEAR: {
    double in = node_elems(&g->nodes[n->inputs[0]]);
    return in * n->out + (n->bias ? n->out : 0);
  }
  case AE_OP_CONV: {
    double cin = g->nodes[n->inputs[0]].shape[0];
    int groups = n->groups > 0 ? n->groups : 1;
    return cin / groups * n->kernel * n->kernel * n->out +
           (n->bias ? n->out : 0);
  }
  case AE_OP_BATCH_NORM:
    return 2.0 * n->shape[0];
  default:
    return 0.0;
  }
}

/* Multiply-accumulates per sample of a node (docs/scorecard.md, "MACs"):
 * a linear node does in x out and a conv node k*k*c_in/groups per output
 * element, plus one accumulate per output element for a bias (the affine
 * map as a product with the input extended by a 1), the convention of
 * NAS-Bench-201's FLOPs count.  BatchNorm, activations, pools, adds,
 * multiplies, concat, pad and the other parameter-free ops count none
 * (BatchNorm folds into the conv before it at inference). */
double ae_node_macs(const ae_graph *g, const ae_node *n) {
  if (n->op == AE_OP_LINEAR)
    return (node_elems(&g->nodes[n->inputs[0]]) + (n->bias ? 1 : 0)) * n->out;
  if (n->op != AE_OP_CONV) return 0.0;
  double cin = g->nodes[n->inputs[0]].shape[0];
  int groups = n->groups > 0 ? n->groups : 1;
  return (cin / groups * n->kernel * n->kernel + (n->bias ? 1 : 0)) * n->out *
         n->shape[1] * n->shape[2];
}

double ae_graph_params(const ae_graph *g) {
  double total = 0;
  for (int i = 0; i < g->n_nodes; i++)
    total += ae_node_params(g, &g->nodes[i]);
  return total;
}

double ae_graph_macs(const ae_graph *g) {
  double total = 0;
  for (int i = 0; i < g->n_nodes; i++)
    total += ae_node_macs(g, &g->nodes[i]);
  return total;
}

double ae_graph_flops(const ae_graph *g) {
  return 2.0 * ae_graph_macs(g);
}

/* ---- shapes ---- */

/* The pointer naming node i: its place in the request, or the whole
 * architecture for generated nodes. */
static void node_pointer(const ae_graph *g, int i, const char *pointer,
                         char *out, size_t size) {
  if (g->nodes[i].src_index >= 0) {
    char nodes[AE_PTR_MAX];
    ae_ptr_key(nodes, sizeof nodes, pointer, "nodes");
    ae_ptr_index(out, size, nodes, (size_t)g->nodes[i].src_index);
  } else {
    snprintf(out, size, "%s", pointer);
  }
}

#define MAX_ELEMS ((double)(1 << 30))

/* Output size of a window op along one axis (PyTorch's formula; with
 * ceil_mode the last window must start inside the input or the left
 * padding). */
static int window_out(int in, int k, int s, int pad, int dilation,
                      int ceil_mode) {
  long long span = (long long)dilation * (k - 1) + 1;
  long long o = ((long long)in + 2LL * pad - span);
  if (o < 0) return 0;
  long long out = (ceil_mode ? (o + s - 1) / s : o / s) + 1;
  if (ceil_mode && (out - 1) * s >= (long long)in + pad) out--;
  return (int)out;
}

/* "CxHxW" or "F" of a node, for messages. */
static const char *shape_text(const ae_node *n, char *buf, size_t size) {
  if (n->rank == 3)
    snprintf(buf, size, "%dx%dx%d", n->shape[0], n->shape[1], n->shape[2]);
  else
    snprintf(buf, size, "%d", n->shape[0]);
  return buf;
}

int ae_graph_infer_shapes(ae_graph *g, const int *input_shape, int input_rank,
                          const char *pointer, ae_problem *p) {
  char ptr[AE_PTR_MAX];
  if (g->n_nodes == 0 || g->nodes[0].op != AE_OP_INPUT) {
    ae_problem_add(p, pointer, "graph has no input node");
    return AE_EINVAL;
  }
  ae_node *in = &g->nodes[0];
  in->rank = input_rank;
  in->shape[0] = input_shape[0];
  in->shape[1] = input_rank == 3 ? input_shape[1] : 1;
  in->shape[2] = input_rank == 3 ? input_shape[2] : 1;
  for (int i = 1; i < g->n_nodes; i++) {
    ae_node *n = &g->nodes[i];
    const char *name = n->name ? n->name : "?";
    if (n->n_inputs < 1) {
      node_pointer(g, i, pointer, ptr, sizeof ptr);
      ae_problem_add(p, ptr, "node \"%s\" has no inputs", name);
      return AE_EINVAL;
    }
    const ae_node *a = &g->nodes[n->inputs[0]];
    n->rank = a->rank;
    memcpy(n->shape, a->shape, sizeof n->shape);
    const char *why = NULL;
    const char *field = NULL; /* the offending field of the node, if one */
    char buf[256];
    switch ((int)n->op) {
    case AE_OP_INPUT:
      why = "a second input node";
      break;
    case AE_OP_LINEAR:
      if (a->rank != 1) {
        why = "linear needs a rank-1 input (add a flatten or "
              "global_avg_pool before it)";
        break;
      }
      n->shape[0] = n->out;
      n->shape[1] = n->shape[2] = 1;
      break;
    case AE_OP_CONV:
    case AE_OP_AVG_POOL:
    case AE_OP_MAX_POOL: {
      if (a->rank != 3) {
        why = "needs a rank-3 (channels, height, width) input";
        break;
      }
      int dil = n->dilation > 0 ? n->dilation : 1;
      n->shape[1] = window_out(a->shape[1], n->kernel, n->stride, n->padding,
                               dil, n->ceil_mode);
      n->shape[2] = window_out(a->shape[2], n->kernel, n->stride, n->padding,
                               dil, n->ceil_mode);
      if (n->op == AE_OP_CONV) {
        n->shape[0] = n->out;
        int groups = n->groups > 0 ? n->groups : 1;
        if (a->shape[0] % groups != 0 || n->out % groups != 0) {
          snprintf(buf, sizeof buf,
                   "groups %d must divide the input's %d channels and out "
                   "(%d)",
                   groups, a->shape[0], n->out);
          why = buf;
          field = "groups";
          break;
        }
      }
      if (n->shape[1] < 1 || n->shape[2] < 1) {
        snprintf(buf, sizeof buf,
                 "kernel %d (dilation %d) with padding %d does not fit the "
                 "%dx%d input",
                 n->kernel, dil, n->padding, a->shape[1], a->shape[2]);
        why = buf; /* kernel, padding and input together: the node */
      }
      break;
    }
    case AE_OP_PAD:
      if (a->rank != 3) {
        why = "pad needs a rank-3 (channels, height, width) input";
        break;
      }
      n->shape[1] = a->shape[1] + n->pads[0] + n->pads[2];
      n->shape[2] = a->shape[2] + n->pads[1] + n->pads[3];
      break;
    case AE_OP_CONCAT: {
      double channels = a->shape[0];
      for (int k = 1; k < n->n_inputs && !why; k++) {
        const ae_node *b = &g->nodes[n->inputs[k]];
        char sa[64], sb[64];
        if (b->rank != a->rank ||
            (a->rank == 3 &&
             (b->shape[1] != a->shape[1] || b->shape[2] != a->shape[2]))) {
          snprintf(buf, sizeof buf,
                   "concat: input %d (\"%s\") has shape %s, input 0 "
                   "(\"%s\") has %s; they may differ in channels only",
                   k, b->name ? b->name : "?", shape_text(b, sb, sizeof sb),
                   a->name ? a->name : "?", shape_text(a, sa, sizeof sa));
          why = buf;
          field = "inputs";
        }
        channels += b->shape[0];
      }
      if (!why && channels > MAX_ELEMS) {
        why = "concat: more than 2^30 channels";
        break;
      }
      n->shape[0] = (int)channels;
      break;
    }
    case AE_OP_MUL:
      /* Broadcasting: every dimension equal, or 1 in one of the inputs. */
      for (int k = 1; k < n->n_inputs && !why; k++) {
        const ae_node *b = &g->nodes[n->inputs[k]];
        int bad = b->rank != n->rank;
        for (int d = 0; d < 3 && !bad; d++) {
          if (b->shape[d] == n->shape[d] || b->shape[d] == 1) continue;
          if (n->shape[d] == 1)
            n->shape[d] = b->shape[d];
          else
            bad = 1;
        }
        if (bad) {
          char sa[64], sb[64];
          snprintf(buf, sizeof buf,
                   "mul: input %d (\"%s\") has shape %s, which does not "
                   "broadcast with %s (each dimension equal, or 1 in one)",
                   k, b->name ? b->name : "?", shape_text(b, sb, sizeof sb),
                   shape_text(n, sa, sizeof sa));
          why = buf;
          field = "inputs";
        }
      }
      break;
    case AE_OP_GLOBAL_AVG_POOL:
      if (a->rank != 3) {
        why = "global_avg_pool needs a rank-3 input";
        break;
      }
      n->rank = 1;
      n->shape[1] = n->shape[2] = 1;
      break;
    case AE_OP_FLATTEN:
      if (a->rank == 3) {
        n->rank = 1;
        n->shape[0] = (int)(node_elems(a) > MAX_ELEMS ? 0 : node_elems(a));
        n->shape[1] = n->shape[2] = 1;
      }
      break;
    case AE_OP_ADD:
      for (int k = 1; k < n->n_inputs; k++) {
        const ae_node *b = &g->nodes[n->inputs[k]];
        if (b->rank != a->rank ||
            memcmp(b->shape, a->shape, (size_t)a->rank * sizeof(int))) {
          snprintf(buf, sizeof buf,
                   "add: input %d (\"%s\") has shape %dx%dx%d, input 0 "
                   "(\"%s\") has %dx%dx%d",
                   k, b->name ? b->name : "?", b->shape[0],
                   b->rank == 3 ? b->shape[1] : 1,
                   b->rank == 3 ? b->shape[2] : 1, a->name ? a->name : "?",
                   a->shape[0], a->rank == 3 ? a->shape[1] : 1,
                   a->rank == 3 ? a->shape[2] : 1);
          why = buf;
          break;
        }
      }
      break;
    case AE_OP_SLICE:
      if (a->rank != 3) {
        why = "slice needs a rank-3 (channels, height, width) input";
        break;
      }
      if (n->out > a->shape[0]) {
        snprintf(buf, sizeof buf, "slice: keeps %d channels of %d", n->out,
                 a->shape[0]);
        why = buf;
        break;
      }
      if (n->out > 0) n->shape[0] = n->out;
      n->shape[1] = a->shape[1] - n->pads[0] - n->pads[2];
      n->shape[2] = a->shape[2] - n->pads[1] - n->pads[3];
      if (n->shape[1] < 1 || n->shape[2] < 1) why = "slice: nothing left";
      break;
    case AE_OP_BATCH_NORM:
    case AE_OP_ACT:
    case AE_OP_IDENTITY:
    case AE_OP_ZERO:
      break;
    }
    if (!why && (node_elems(n) > MAX_ELEMS || node_elems(n) < 1))
      why = "output has more than 2^30 values per sample";
    if (why) {
      node_pointer(g, i, pointer, ptr, sizeof ptr);
      if (field && n->src_index >= 0) {
        char sub[AE_PTR_MAX];
        ae_ptr_key(sub, sizeof sub, ptr, field);
        ae_problem_add(p, sub, "node \"%s\": %s", name, why);
      } else {
        ae_problem_add(p, ptr, "node \"%s\": %s", name, why);
      }
      return AE_EINVAL;
    }
  }
  return AE_OK;
}

/* ---- what the executors run ---- */

int ae_graph_first_unexecutable_op(const ae_graph *g, char *why,
                                   size_t why_size) {
  /* The host executor runs every op and activation the IR has (max_pool,
   * concat, mul, pad, grouped and dilated conv, relu6, hardswish and
   * hardsigmoid included: gpu/host/net_ops.c); the CUDA executor hands a
   * graph with them to a host net of its own.  Only a code outside the
   * IR's numbering is refused. */
  char local[8];
  if (!why) {
    why = local;
    why_size = sizeof local;
  }
  for (int i = 0; i < g->n_nodes; i++) {
    const ae_node *n = &g->nodes[i];
    const char *name = n->name ? n->name : "?";
    int op = (int)n->op;
    if (op < 0 || op >= AE_OP_COUNT) {
      snprintf(why, why_size, "node \"%s\": op %d is not supported", name, op);
      return i;
    }

    if (op == AE_OP_ACT &&
        ((int)n->act.fn < 0 || (int)n->act.fn >= AE_ACT_COUNT)) {
      snprintf(why, why_size, "node \"%s\": activation %d is not supported",
               name, (int)n->act.fn);
      return i;
    }
  }
  return -1;
}

/* ---- building ---- */

typedef struct {
  ae_graph g;
  int cap;
  int failed;
} builder;

/* Appends a node with inputs (n_inputs ints follow) and a printf name;
 * returns its index or -1 (b->failed set). */
static int add_node(builder *b, ae_op op, int n_inputs, const int *inputs,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int add_node(builder *b, ae_op op, int n_inputs, const int *inputs,
                    const char *fmt, ...) {
  if (b->failed) return -1;
  if (b->g.n_nodes == b->cap) {
    int cap = b->cap ? 2 * b->cap : 64;
    ae_node *nodes = realloc(b->g.nodes, (size_t)cap * sizeof *nodes);
    if (!nodes) {
      b->failed = 1;
      return -1;
    }
    b->g.nodes = nodes;
    b->cap = cap;
  }
  ae_node *n = &b->g.nodes[b->g.n_nodes];
  memset(n, 0, sizeof *n);
  n->op = op;
  n->src_index = -1;
  n->init_gain = 1.0;
  n->stride = 1;
  n->count_include_pad = 1;
  n->act.fn = AE_ACT_RELU;
  n->act.slope = 0.01;
  char name[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  n->name = strdup(name);
  if (n_inputs > 0) {
    n->inputs = malloc((size_t)n_inputs * sizeof *n->inputs);
    if (n->inputs) memcpy(n->inputs, inputs, (size_t)n_inputs * sizeof(int));
  }
  n->n_inputs = n_inputs;
  if (!n->name || (n_inputs > 0 && !n->inputs)) {
    free(n->name);
    free(n->inputs);
    b->failed = 1;
    return -1;
  }
  return b->g.n_nodes++;
}

static int add1(builder *b, ae_op op, int input, const char *prefix,
                const char *what) {
  return add_node(b, op, 1, &input, "%s%s", prefix, what);
}

static int add_conv(builder *b, int input, int out, int k, int s, int pad,
                    const char *prefix) {
  int i = add1(b, AE_OP_CONV, input, prefix, "conv");
  if (i < 0) return -1;
  b->g.nodes[i].out = out;
  b->g.nodes[i].kernel = k;
  b->g.nodes[i].stride = s;
  b->g.nodes[i].padding = pad;
  return i;
}

/* ReLU -> Conv(k, stride, pad) -> BN, names under prefix. */
static int relu_conv_bn(builder *b, int input, int out, int k, int s, int pad,
                        const char *prefix) {
  int r = add1(b, AE_OP_ACT, input, prefix, "relu");
  int c = add_conv(b, r, out, k, s, pad, prefix);
  return add1(b, AE_OP_BATCH_NORM, c, prefix, "bn");
}

/* Marks node i (when it was built) a block output of ranking.md §0. */
static void mark_block(builder *b, int i) {
  if (i >= 0 && !b->failed) b->g.nodes[i].block = 1;
}

/* Sums contributions into one node: the contribution itself when there is
 * one, an ADD otherwise, a ZERO shaped like shape_src when none. */
static int sum_node(builder *b, const int *terms, int n_terms, int shape_src,
                    const char *prefix) {
  if (n_terms == 0) return add1(b, AE_OP_ZERO, shape_src, prefix, "zero");
  if (n_terms == 1) return terms[0];
  return add_node(b, AE_OP_ADD, n_terms, terms, "%sadd", prefix);
}

/* One NB201 cell on input x at C channels. */
static int nb201_cell(builder *b, const ae_arch *a, int x, int channels,
                      const char *prefix) {
  int node[4] = {x, -1, -1, -1};
  int e = 0;
  char pre[192];
  for (int dst = 1; dst <= 3; dst++) {
    int terms[3], n_terms = 0;
    for (int src = 0; src < dst; src++, e++) {
      snprintf(pre, sizeof pre, "%sedge%d/", prefix, e);
      int in = node[src], t = -1;
      switch (a->nb201_ops[e]) {
      case AE_NB201_NONE:
        continue;
      case AE_NB201_SKIP:
        t = add1(b, AE_OP_IDENTITY, in, pre, "skip");
        break;
      case AE_NB201_CONV1X1:
        t = relu_conv_bn(b, in, channels, 1, 1, 0, pre);
        break;
      case AE_NB201_CONV3X3:
        t = relu_conv_bn(b, in, channels, 3, 1, 1, pre);
        break;
      case AE_NB201_POOL3X3:
        t = add1(b, AE_OP_AVG_POOL, in, pre, "avg_pool");
        if (t >= 0) {
          b->g.nodes[t].kernel = 3;
          b->g.nodes[t].stride = 1;
          b->g.nodes[t].padding = 1;
          b->g.nodes[t].count_include_pad = 0;
        }
        break;
      }
      if (t < 0) return -1;
      terms[n_terms++] = t;
    }
    snprintf(pre, sizeof pre, "%snode%d/", prefix, dst);
    node[dst] = sum_node(b, terms, n_terms, x, pre);
    if (node[dst] < 0) return -1;
  }
  return node[3];
}

/* BN -> ReLU -> GAP -> linear(classes) head. */
static int nb201_head(builder *b, int x, int classes) {
  int bn = add1(b, AE_OP_BATCH_NORM, x, "head/", "bn");
  int r = add1(b, AE_OP_ACT, bn, "head/", "relu");
  int gap = add1(b, AE_OP_GLOBAL_AVG_POOL, r, "head/", "gap");
  int lin = add1(b, AE_OP_LINEAR, gap, "head/", "linear");
  if (lin < 0) return -1;
  b->g.nodes[lin].out = classes;
  b->g.nodes[lin].bias = 1;
  return lin;
}

static int lower_nb201(builder *b, const ae_arch *a, const ae_lower_opts *o,
                       int classes) {
  int x = 0;
  char pre[128];
  if (o->probe == AE_PROBE_LINEAR_REGIONS) {
    int channels = o->input_shape[0];
    x = nb201_cell(b, a, x, channels, "cell0/");
    return nb201_head(b, x, classes);
  }
  int ranking_probe = o->probe == AE_PROBE_RANKING;
  int c = ranking_probe ? 3 : a->channels;
  int cells_per_stage = ranking_probe ? 1 : a->cells_per_stage;
  x = add_conv(b, x, c, 3, 1, 1, "stem/");
  x = add1(b, AE_OP_BATCH_NORM, x, "stem/", "bn");
  mark_block(b, x);
  for (int stage = 0; stage < 3; stage++) {
    if (stage > 0) {
      int cin = c;
      c *= 2;
      (void)cin;
      snprintf(pre, sizeof pre, "resblock%d/a/", stage);
      int ya = relu_conv_bn(b, x, c, 3, 2, 1, pre);
      snprintf(pre, sizeof pre, "resblock%d/b/", stage);
      int yb = relu_conv_bn(b, ya, c, 3, 1, 1, pre);
      snprintf(pre, sizeof pre, "resblock%d/shortcut/", stage);
      int pool = add1(b, AE_OP_AVG_POOL, x, pre, "avg_pool");
      if (pool < 0) return -1;
      b->g.nodes[pool].kernel = 2;
      b->g.nodes[pool].stride = 2;
      b->g.nodes[pool].padding = 0;
      int sc = add_conv(b, pool, c, 1, 1, 0, pre);
      int terms[2] = {yb, sc};
      x = add_node(b, AE_OP_ADD, 2, terms, "resblock%d/add", stage);
      mark_block(b, x);
    }
    for (int k = 0; k < cells_per_stage; k++) {
      snprintf(pre, sizeof pre, "stage%d/cell%d/", stage, k);
      x = nb201_cell(b, a, x, c, pre);
      mark_block(b, x);
    }
  }
  return nb201_head(b, x, classes);
}

static int lower_mlp_dag(builder *b, const ae_arch *a, const ae_lower_opts *o,
                         int classes) {
  int width = o->probe == AE_PROBE_LINEAR_REGIONS ? 16 : a->width;
  int x = 0;
  if (o->input_rank == 3) x = add1(b, AE_OP_FLATTEN, x, "", "flatten");
  int n_nodes = a->dag.n_nodes;
  int *node = malloc((size_t)n_nodes * sizeof *node);
  int *terms = malloc((size_t)n_nodes * sizeof *terms);
  if (!node || !terms) {
    free(node);
    free(terms);
    b->failed = 1;
    return -1;
  }
  node[0] = add1(b, AE_OP_LINEAR, x, "stem/", "linear");
  if (node[0] >= 0) {
    b->g.nodes[node[0]].out = width;
    b->g.nodes[node[0]].bias = a->bias;
  }
  int e = 0;
  char pre[128];
  for (int t = 1; t < n_nodes; t++) {
    int n_terms = 0;
    for (; e < a->dag.n_edges && a->dag.edges[e].dst == t; e++) {
      const ae_dag_edge *ed = &a->dag.edges[e];
      snprintf(pre, sizeof pre, "node%d/edge%d/", t, ed->src);
      int term = -1;
      if (ed->kind == AE_EDGE_ZERO) continue;
      if (ed->kind == AE_EDGE_SKIP) {
        term = add1(b, AE_OP_IDENTITY, node[ed->src], pre, "skip");
      } else {
        int act = add1(b, AE_OP_ACT, node[ed->src], pre, "act");
        if (act >= 0) b->g.nodes[act].act = ed->act;
        term = add1(b, AE_OP_LINEAR, act, pre, "linear");
        if (term >= 0) {
          b->g.nodes[term].out = width;
          b->g.nodes[term].bias = a->bias;
        }
      }
      if (term < 0) break;
      terms[n_terms++] = term;
    }
    snprintf(pre, sizeof pre, "node%d/", t);
    node[t] = sum_node(b, terms, n_terms, node[0], pre);
    if (node[t] < 0) break;
  }
  int out = -1;
  if (!b->failed) {
    /* Block outputs (ranking.md §0 names none for mlp_dag): the stem and
     * the DAG's output node, the two ends of the cell. */
    mark_block(b, node[0]);
    mark_block(b, node[n_nodes - 1]);
    out = add1(b, AE_OP_LINEAR, node[n_nodes - 1], "readout/", "linear");
    if (out >= 0) {
      b->g.nodes[out].out = classes;
      b->g.nodes[out].bias = a->bias;
    }
  }
  free(node);
  free(terms);
  return out;
}

/* ---- nb101 (google-research/nasbench, nasbench/lib/model_builder.py) ---- */

/* Conv(k, stride 1, "same") -> BN -> ReLU: base_ops.conv_bn_relu. */
static int conv_bn_relu(builder *b, int input, int out, int k,
                        const char *prefix) {
  int c = add_conv(b, input, out, k, 1, k / 2, prefix);
  int bn = add1(b, AE_OP_BATCH_NORM, c, prefix, "bn");
  return add1(b, AE_OP_ACT, bn, prefix, "relu");
}

/* model_builder.compute_vertex_channels: the output channels of each
 * vertex of a cell from in_channels to out_channels.  The vertices feeding
 * the output split out_channels (the first ones get the remainder); every
 * other vertex gets the most of its successors. */
static void nb101_vertex_channels(const ae_arch *a, int in_channels,
                                  int out_channels, int vc[7]) {
  int n = a->nb101_vertices;
  memset(vc, 0, 7 * sizeof *vc);
  vc[0] = in_channels;
  vc[n - 1] = out_channels;
  if (n == 2) return;
  int fan_in = 0;
  for (int v = 1; v < n - 1; v++)
    fan_in += a->nb101_matrix[v][n - 1];
  int interior = out_channels / fan_in, correction = out_channels % fan_in;
  for (int v = 1; v < n - 1; v++)
    if (a->nb101_matrix[v][n - 1]) {
      vc[v] = interior;
      if (correction) {
        vc[v]++;
        correction--;
      }
    }
  for (int v = n - 3; v > 0; v--)
    if (!a->nb101_matrix[v][n - 1])
      for (int dst = v + 1; dst < n - 1; dst++)
        if (a->nb101_matrix[v][dst] && vc[dst] > vc[v]) vc[v] = vc[dst];
}

/* model_builder.build_module: one cell on x (in_channels) to channels. */
static int nb101_cell(builder *b, const ae_arch *a, int x, int in_channels,
                      int channels, const char *prefix) {
  int n = a->nb101_vertices, vc[7], tensor[7], concat[7], n_concat = 0;
  char pre[224];
  nb101_vertex_channels(a, in_channels, channels, vc);
  tensor[0] = x;
  for (int t = 1; t < n - 1; t++) {
    int terms[7], n_terms = 0;
    for (int src = 1; src < t; src++) {
      if (!a->nb101_matrix[src][t]) continue;
      int in = tensor[src];
      if (vc[src] > vc[t]) { /* model_builder.truncate */
        snprintf(pre, sizeof pre, "%svertex%d/truncate%d/", prefix, t, src);
        in = add1(b, (ae_op)AE_OP_SLICE, in, pre, "slice");
        if (in < 0) return -1;
        b->g.nodes[in].out = vc[t];
      }
      terms[n_terms++] = in;
    }
    if (a->nb101_matrix[0][t]) {
      snprintf(pre, sizeof pre, "%svertex%d/projection/", prefix, t);
      terms[n_terms++] = conv_bn_relu(b, x, vc[t], 1, pre);
    }
    snprintf(pre, sizeof pre, "%svertex%d/", prefix, t);
    int in = n_terms == 1
                 ? terms[0]
                 : add_node(b, AE_OP_ADD, n_terms, terms, "%sadd", pre);
    if (in < 0) return -1;
    switch (a->nb101_ops[t]) {
    case AE_NB101_CONV1X1:
      tensor[t] = conv_bn_relu(b, in, vc[t], 1, pre);
      break;
    case AE_NB101_CONV3X3:
      tensor[t] = conv_bn_relu(b, in, vc[t], 3, pre);
      break;
    default: /* AE_NB101_MAXPOOL; parsing admits nothing else here */
      tensor[t] = add1(b, (ae_op)AE_OP_MAX_POOL, in, pre, "max_pool");
      if (tensor[t] < 0) return -1;
      b->g.nodes[tensor[t]].kernel = 3;
      b->g.nodes[tensor[t]].padding = 1;
      b->g.nodes[tensor[t]].dilation = 1;
      break;
    }
    if (tensor[t] < 0) return -1;
    if (a->nb101_matrix[t][n - 1]) concat[n_concat++] = tensor[t];
  }
  snprintf(pre, sizeof pre, "%soutput/", prefix);
  if (n_concat == 0) return conv_bn_relu(b, x, channels, 1, pre);
  int out = n_concat == 1 ? concat[0]
                          : add_node(b, (ae_op)AE_OP_CONCAT, n_concat, concat,
                                     "%sconcat", pre);
  if (out >= 0 && a->nb101_matrix[0][n - 1]) {
    snprintf(pre, sizeof pre, "%soutput/projection/", prefix);
    int terms[2] = {out, conv_bn_relu(b, x, channels, 1, pre)};
    out = terms[1] < 0
              ? -1
              : add_node(b, AE_OP_ADD, 2, terms, "%soutput/add", prefix);
  }
  return out;
}

/* model_builder.build_model_fn: stem conv3x3-bn-relu, `stacks` stacks of
 * `cells_per_stack` cells, a 2x2 max-pool ("same") and doubled channels
 * before each stack but the first, global average pool, dense. */
static int lower_nb101(builder *b, const ae_arch *a, const ae_lower_opts *o,
                       int classes) {
  char pre[128];
  int channels = a->stem_channels;
  int h = o->input_shape[1], w = o->input_shape[2];
  int x = conv_bn_relu(b, 0, channels, 3, "stem/");
  mark_block(b, x);
  int in_channels = channels;
  for (int stack = 0; stack < a->stacks; stack++) {
    if (stack > 0) {
      snprintf(pre, sizeof pre, "downsample%d/", stack);
      x = add1(b, (ae_op)AE_OP_MAX_POOL, x, pre, "max_pool");
      if (x < 0) return -1;
      ae_node *mp = &b->g.nodes[x];
      mp->kernel = 2;
      mp->stride = 2;
      mp->dilation = 1;
      /* TensorFlow's "same" pads an odd size at the end: PyTorch's
       * ceil_mode, which is only needed then. */
      mp->ceil_mode = h % 2 || w % 2;
      h = (h + 1) / 2;
      w = (w + 1) / 2;
      channels *= 2;
    }
    for (int cell = 0; cell < a->cells_per_stack; cell++) {
      snprintf(pre, sizeof pre, "stack%d/cell%d/", stack, cell);
      x = nb101_cell(b, a, x, in_channels, channels, pre);
      if (x < 0) return -1;
      in_channels = channels;
      mark_block(b, x);
    }
  }
  int gap = add1(b, AE_OP_GLOBAL_AVG_POOL, x, "head/", "gap");
  int lin = add1(b, AE_OP_LINEAR, gap, "head/", "linear");
  if (lin < 0) return -1;
  b->g.nodes[lin].out = classes;
  b->g.nodes[lin].bias = 1;
  return lin;
}

/* ---- darts (quark0/darts, cnn/model.py NetworkCIFAR, operations.py) ---- */

static int add_conv_grouped(builder *b, int input, int out, int k, int s,
                            int pad, int groups, int dilation,
                            const char *prefix, const char *what) {
  int i = add1(b, AE_OP_CONV, input, prefix, what);
  if (i < 0) return -1;
  ae_node *n = &b->g.nodes[i];
  n->out = out;
  n->kernel = k;
  n->stride = s;
  n->padding = pad;
  n->groups = groups;
  n->dilation = dilation;
  return i;
}

/* FactorizedReduce: ReLU, then two 1x1 stride-2 convs to out/2 channels,
 * the second on the input shifted by one pixel (x[:, :, 1:, 1:]),
 * concatenated, BN. */
static int factorized_reduce(builder *b, int x, int out, const char *prefix) {
  int r = add1(b, AE_OP_ACT, x, prefix, "relu");
  int c1 = add_conv_grouped(b, r, out / 2, 1, 2, 0, 1, 1, prefix, "conv1");
  int sl = add1(b, (ae_op)AE_OP_SLICE, r, prefix, "shift");
  if (sl < 0) return -1;
  b->g.nodes[sl].pads[0] = b->g.nodes[sl].pads[1] = 1;
  int c2 = add_conv_grouped(b, sl, out / 2, 1, 2, 0, 1, 1, prefix, "conv2");
  int parts[2] = {c1, c2};
  if (c1 < 0 || c2 < 0) return -1;
  int cat = add_node(b, (ae_op)AE_OP_CONCAT, 2, parts, "%sconcat", prefix);
  return add1(b, AE_OP_BATCH_NORM, cat, prefix, "bn");
}

/* DARTS' SepConv (twice ReLU, depthwise k x k, pointwise, BN; the first
 * depthwise conv has the stride) and DilConv (ReLU, depthwise dilated
 * k x k, pointwise, BN), at c channels. */
static int darts_conv(builder *b, int x, int c, ae_darts_op op, int stride,
                      const char *prefix) {
  char pre[256];
  int sep = op == AE_DARTS_SEP_CONV_3X3 || op == AE_DARTS_SEP_CONV_5X5;
  int k = op == AE_DARTS_SEP_CONV_3X3 || op == AE_DARTS_DIL_CONV_3X3 ? 3 : 5;
  int dil = sep ? 1 : 2, pad = sep ? k / 2 : k - 1;
  for (int half = 0; half < (sep ? 2 : 1); half++) {
    snprintf(pre, sizeof pre, "%s%s", prefix, half ? "b/" : sep ? "a/" : "");
    int r = add1(b, AE_OP_ACT, x, pre, "relu");
    int dw = add_conv_grouped(b, r, c, k, half ? 1 : stride, pad, c, dil, pre,
                              "depthwise");
    int pw = add_conv_grouped(b, dw, c, 1, 1, 0, 1, 1, pre, "pointwise");
    x = add1(b, AE_OP_BATCH_NORM, pw, pre, "bn");
  }
  return x;
}

/* One op of a cell on state x (c channels). */
static int darts_op(builder *b, int x, int c, ae_darts_op op, int stride,
                    const char *prefix) {
  int t;
  switch (op) {
  case AE_DARTS_MAX_POOL_3X3:
  case AE_DARTS_AVG_POOL_3X3:
    t = add1(
        b, op == AE_DARTS_MAX_POOL_3X3 ? (ae_op)AE_OP_MAX_POOL : AE_OP_AVG_POOL,
        x, prefix, op == AE_DARTS_MAX_POOL_3X3 ? "max_pool" : "avg_pool");
    if (t < 0) return -1;
    b->g.nodes[t].kernel = 3;
    b->g.nodes[t].stride = stride;
    b->g.nodes[t].padding = 1;
    b->g.nodes[t].dilation = 1;
    b->g.nodes[t].count_include_pad = 0;
    return t;
  case AE_DARTS_SKIP_CONNECT:
    if (stride == 1) return add1(b, AE_OP_IDENTITY, x, prefix, "skip");
    return factorized_reduce(b, x, c, prefix);
  default: /* the four convs; NONE never gets here */
    return darts_conv(b, x, c, op, stride, prefix);
  }
}

/* model.Cell: preprocess both inputs to c channels, four nodes, concat. */
static int darts_cell(builder *b, const ae_darts_cell *cell, int s0, int s1,
                      int c, int reduction, int reduction_prev,
                      const char *prefix) {
  char pre[240];
  int state[6];
  snprintf(pre, sizeof pre, "%spreprocess0/", prefix);
  state[0] = reduction_prev ? factorized_reduce(b, s0, c, pre)
                            : relu_conv_bn(b, s0, c, 1, 1, 0, pre);
  snprintf(pre, sizeof pre, "%spreprocess1/", prefix);
  state[1] = relu_conv_bn(b, s1, c, 1, 1, 0, pre);
  if (state[0] < 0 || state[1] < 0) return -1;
  for (int node = 0; node < 4; node++) {
    int terms[2], n_terms = 0;
    for (int k = 2 * node; k < 2 * node + 2; k++) {
      if (cell->op[k] == AE_DARTS_NONE) continue;
      int stride = reduction && cell->input[k] < 2 ? 2 : 1;
      snprintf(pre, sizeof pre, "%snode%d/op%d/", prefix, node, k - 2 * node);
      terms[n_terms] =
          darts_op(b, state[cell->input[k]], c, cell->op[k], stride, pre);
      if (terms[n_terms++] < 0) return -1;
    }
    snprintf(pre, sizeof pre, "%snode%d/", prefix, node);
    int shape_src = state[1];
    if (n_terms == 0 && reduction) {
      /* Zero(stride 2) is x[:, :, ::2, ::2] * 0: shaped by a 1x1 pool. */
      shape_src = add1(b, AE_OP_AVG_POOL, state[1], pre, "zero_shape");
      if (shape_src < 0) return -1;
      b->g.nodes[shape_src].kernel = 1;
      b->g.nodes[shape_src].stride = 2;
    }
    state[2 + node] = sum_node(b, terms, n_terms, shape_src, pre);
    if (state[2 + node] < 0) return -1;
  }
  int parts[4], n_parts = 0;
  for (int s = 2; s < 6; s++)
    if (cell->concat & (1u << s)) parts[n_parts++] = state[s];
  if (n_parts == 1) return parts[0];
  return add_node(b, (ae_op)AE_OP_CONCAT, n_parts, parts, "%sconcat", prefix);
}

/* model.NetworkCIFAR without the auxiliary head: stem conv3x3 to 3C + BN,
 * `layers` cells with reductions (channels doubled) at layers/3 and
 * 2*layers/3, global average pool, linear. */
static int lower_darts(builder *b, const ae_arch *a, int classes) {
  char pre[64];
  int c = a->darts_channels, layers = a->darts_layers;
  int stem = add_conv(b, 0, 3 * c, 3, 1, 1, "stem/");
  stem = add1(b, AE_OP_BATCH_NORM, stem, "stem/", "bn");
  mark_block(b, stem);
  int s0 = stem, s1 = stem, reduction_prev = 0;
  for (int i = 0; i < layers; i++) {
    int reduction = i == layers / 3 || i == 2 * layers / 3;
    if (reduction) c *= 2;
    const ae_darts_cell *cell = reduction ? &a->darts_reduce : &a->darts_normal;
    snprintf(pre, sizeof pre, "cell%d/", i);
    int out = darts_cell(b, cell, s0, s1, c, reduction, reduction_prev, pre);
    if (out < 0) return -1;
    mark_block(b, out);
    reduction_prev = reduction;
    s0 = s1;
    s1 = out;
  }
  int gap = add1(b, AE_OP_GLOBAL_AVG_POOL, s1, "head/", "gap");
  int lin = add1(b, AE_OP_LINEAR, gap, "head/", "linear");
  if (lin < 0) return -1;
  b->g.nodes[lin].out = classes;
  b->g.nodes[lin].bias = 1;
  return lin;
}

/* Is the graph dense (no conv, pools or batch norm)? */
static int graph_is_dense(const ae_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    ae_op op = g->nodes[i].op;
    if (op == AE_OP_CONV || op == AE_OP_AVG_POOL ||
        op == AE_OP_GLOBAL_AVG_POOL || op == AE_OP_BATCH_NORM ||
        (int)op == AE_OP_MAX_POOL || (int)op == AE_OP_PAD)
      return 0;
  }
  return 1;
}

/* ranking.md §0's 4-D node: a per-sample C x H x W output that is a
 * tensor of its own (not the input, a zero, or an identity, which aliases
 * its input). */
static int is_4d_node(const ae_node *n) {
  return n->rank == 3 && n->op != AE_OP_INPUT && n->op != AE_OP_ZERO &&
         n->op != AE_OP_IDENTITY;
}

/* The block outputs of a user graph (ranking.md §0): the nodes the user
 * marked "block": true when any is; else every rank-3 add or concat with
 * two or more live (non-zero) inputs, plus the first and last 4-D node. */
static void mark_graph_blocks(ae_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].block) return;
  int first = -1, last = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    ae_node *n = &g->nodes[i];
    if (!is_4d_node(n)) continue;
    if (first < 0) first = i;
    last = i;
    if (n->op != AE_OP_ADD && (int)n->op != AE_OP_CONCAT) continue;
    int live = 0;
    for (int k = 0; k < n->n_inputs; k++)
      live += g->nodes[n->inputs[k]].op != AE_OP_ZERO;
    if (live >= 2) n->block = 1;
  }
  if (first >= 0) g->nodes[first].block = 1;
  if (last >= 0) g->nodes[last].block = 1;
}

/* The node with the most parameters, for the params-limit pointer. */
static int largest_node(const ae_graph *g) {
  int best = 0;
  double most = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    double n = ae_node_params(g, &g->nodes[i]);
    if (n > most) {
      most = n;
      best = i;
    }
  }
  return best;
}

int ae_arch_lower(const ae_arch *a, const ae_lower_opts *o,
                  const ae_limits *lim, const char *pointer, ae_graph *out,
                  ae_problem *p) {
  memset(out, 0, sizeof *out);
  builder b;
  memset(&b, 0, sizeof b);
  int classes = a->num_classes > 0 ? a->num_classes : o->num_classes;
  char ptr[AE_PTR_MAX];
  int rc;
  if (a->type == AE_ARCH_GRAPH) {
    rc = ae_graph_copy(&a->graph, &b.g);
    if (rc != AE_OK) return rc;
    b.cap = b.g.n_nodes;
  } else {
    if (classes < 1) {
      ae_problem_add(p, pointer, "the number of classes is unknown");
      return AE_EINVAL;
    }
    if (a->type != AE_ARCH_MLP_DAG && o->input_rank != 3) {
      ae_problem_add(p, pointer,
                     "%s needs image data (channels, height, width)",
                     a->type == AE_ARCH_NB201   ? "nb201"
                     : a->type == AE_ARCH_NB101 ? "nb101"
                                                : "darts");
      return AE_EINVAL;
    }
    if (a->type == AE_ARCH_DARTS) {
      /* Each reduction halves the image; FactorizedReduce (a 1x1 stride-2
       * conv beside one on the image shifted by a pixel) needs it even. */
      int layers = a->darts_layers;
      int step = layers / 3 == 2 * layers / 3 ? 2 : 4;
      if (o->input_shape[1] % step || o->input_shape[2] % step) {
        ae_problem_add(p, pointer,
                       "darts with %d layers needs images whose height and "
                       "width are multiples of %d (its reductions halve "
                       "them), not %dx%d",
                       layers, step, o->input_shape[1], o->input_shape[2]);
        return AE_EINVAL;
      }
    }
    add_node(&b, AE_OP_INPUT, 0, NULL, "input");
    int last;
    switch (a->type) {
    case AE_ARCH_NB201:
      last = lower_nb201(&b, a, o, classes);
      break;
    case AE_ARCH_NB101:
      last = lower_nb101(&b, a, o, classes);
      break;
    case AE_ARCH_DARTS:
      last = lower_darts(&b, a, classes);
      break;
    default:
      last = lower_mlp_dag(&b, a, o, classes);
      break;
    }
    if (b.failed || last < 0) {
      ae_graph_free(&b.g);
      return AE_ENOMEM;
    }
    b.g.output = last;
  }
  rc = ae_graph_infer_shapes(&b.g, o->input_shape, o->input_rank, pointer, p);
  if (rc != AE_OK) goto fail;
  if (b.g.nodes[b.g.output].rank == 3) {
    int f = add1(&b, AE_OP_FLATTEN, b.g.output, "", "output/flatten");
    if (f < 0) {
      rc = AE_ENOMEM;
      goto fail;
    }
    b.g.output = f;
    rc = ae_graph_infer_shapes(&b.g, o->input_shape, o->input_rank, pointer, p);
    if (rc != AE_OK) goto fail;
  }
  if (!o->allow_unexecutable) {
    char why[256];
    int bad = ae_graph_first_unexecutable_op(&b.g, why, sizeof why);
    if (bad >= 0) {
      node_pointer(&b.g, bad, pointer, ptr, sizeof ptr);
      ae_problem_set(p, 422, "unsupported", NULL, "%s", why);
      ae_problem_add(p, ptr, "%s", why);
      rc = AE_EUNSUPPORTED;
      goto fail;
    }
  }
  if (a->type == AE_ARCH_GRAPH) mark_graph_blocks(&b.g);
  b.g.num_classes = b.g.nodes[b.g.output].shape[0];
  b.g.scale_input_norm = a->type == AE_ARCH_MLP_DAG ||
                         (a->type == AE_ARCH_GRAPH && graph_is_dense(&b.g));
  for (int i = 0; i < b.g.n_nodes; i++) {
    ae_node *n = &b.g.nodes[i];
    if (n->op != AE_OP_LINEAR && n->op != AE_OP_CONV) continue;
    const ae_node *in = &b.g.nodes[n->inputs[0]];
    n->init_gain = in->op == AE_OP_ACT ? ae_act_c_sigma(in->act) : 1.0;
  }
  double params = ae_graph_params(&b.g);
  if (lim && params > lim->max_params) {
    if (a->type == AE_ARCH_NB201)
      ae_ptr_key(ptr, sizeof ptr, pointer, "channels");
    else if (a->type == AE_ARCH_MLP_DAG)
      ae_ptr_key(ptr, sizeof ptr, pointer, "width");
    else if (a->type == AE_ARCH_NB101)
      ae_ptr_key(ptr, sizeof ptr, pointer, "stem_channels");
    else if (a->type == AE_ARCH_DARTS)
      ae_ptr_key(ptr, sizeof ptr, pointer, "channels");
    else
      node_pointer(&b.g, largest_node(&b.g), pointer, ptr, sizeof ptr);
    ae_problem_add(p, ptr,
                   "the network has %.0f parameters, more than the limit of "
                   "%.0f",
                   params, lim->max_params);
    rc = AE_EINVAL;
    goto fail;
  }
  /* The builder doubled its array as it went: the graph is kept for the
   * job's life (queued jobs hold it), so it holds its nodes only. */
  if (b.cap > b.g.n_nodes) {
    ae_node *nodes = realloc(b.g.nodes, (size_t)b.g.n_nodes * sizeof *nodes);
    if (nodes) b.g.nodes = nodes; /* else the larger array stays: it works */
  }
  *out = b.g;
  return AE_OK;
fail:
  ae_graph_free(&b.g);
  return rc;
}
