/* plan.c: geometry, liveness, gradient slots and buffer offsets of one
 * lowered graph, for every executor (see plan.h).
 *
 * Also the whole memory of one job on the host engine (ae_plan_job), which
 * validation compares with --max-job-memory.
 *
 * Plain data owned by the caller; no state of its own, no device code. */
#include "gpu/plan.h"

#include "api/metric_set.h"
#include "api/problem.h"
#include "api/status.h"
#include <stdlib.h>
#include <string.h>

size_t ae_plan_node_elems(const ae_node *nd) {
  if (nd->rank == 3)
    return (size_t)nd->shape[0] * (size_t)nd->shape[1] * (size_t)nd->shape[2];
  return (size_t)nd->shape[0];
}

size_t ae_plan_align(const ae_plan *p, size_t v) {
  return (v + p->opt.align - 1) & ~(p->opt.align - 1);
}

typedef struct {
  size_t bytes, offset;
} free_slot;

size_t ae_plan_slots(const size_t *bytes, const int *start, const int *end,
                     int n, size_t *offset) {
  int t_max = -1;
  for (int k = 0; k < n; k++)
    if (start[k] >= 0 && end[k] > t_max) t_max = end[k];
  free_slot *pool = malloc(sizeof(*pool) * (size_t)(n > 0 ? n : 1));
  if (!pool) return SIZE_MAX;
  int n_free = 0;
  size_t total = 0;
  for (int t = 0; t <= t_max; t++) {
    /* Release what ended before t, then place what starts at t. */
    for (int k = 0; k < n; k++)
      if (start[k] >= 0 && end[k] == t - 1) {
        pool[n_free].bytes = bytes[k];
        pool[n_free].offset = offset[k];
        n_free++;
      }
    for (int k = 0; k < n; k++) {
      if (start[k] != t) continue;
      int found = -1;
      for (int f = 0; f < n_free; f++)
        if (pool[f].bytes == bytes[k]) {
          found = f;
          break;
        }
      if (found >= 0) {
        offset[k] = pool[found].offset;
        pool[found] = pool[--n_free];
      } else {
        offset[k] = total;
        total += bytes[k];
      }
    }
  }
  free(pool);
  return total;
}

/* Copies what an executor needs of the graph: ops, inputs and shapes. */
static int copy_graph(const ae_graph *src, ae_graph *dst) {
  memset(dst, 0, sizeof(*dst));
  dst->nodes = calloc((size_t)src->n_nodes, sizeof(ae_node));
  if (!dst->nodes) return AE_ENOMEM;
  dst->n_nodes = src->n_nodes;
  dst->output = src->output;
  dst->scale_input_norm = src->scale_input_norm;
  dst->num_classes = src->num_classes;
  for (int k = 0; k < src->n_nodes; k++) {
    ae_node *d = &dst->nodes[k];
    *d = src->nodes[k];
    d->name = NULL;
    d->inputs = NULL;
    if (src->nodes[k].n_inputs > 0) {
      size_t bytes = sizeof(int) * (size_t)src->nodes[k].n_inputs;
      d->inputs = malloc(bytes);
      if (!d->inputs) return AE_ENOMEM;
      memcpy(d->inputs, src->nodes[k].inputs, bytes);
    }
  }
  return AE_OK;
}

static void free_graph_copy(ae_graph *g) {
  if (!g->nodes) return;
  for (int k = 0; k < g->n_nodes; k++)
    free(g->nodes[k].inputs);
  free(g->nodes);
  g->nodes = NULL;
}

/* Conv / pooling output extent. */
static int out_extent(int in, int k, int stride, int pad) {
  return (in + 2 * pad - k) / stride + 1;
}

/* Max-pool output extent (PyTorch's, as api/lower.c's window_out): with
 * ceil_mode the last window must start inside the input or its left
 * padding. */
static int pool_extent(int in, int k, int stride, int pad, int dil,
                       int ceil_mode) {
  long long o = (long long)in + 2LL * pad - ((long long)dil * (k - 1) + 1);
  if (o < 0) return 0;
  long long out = (ceil_mode ? (o + stride - 1) / stride : o / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= (long long)in + pad) out--;
  return (int)out;
}

/* The geometry of the ops of api/arch.h's AE_OP_MAX_POOL group
 * (max_pool, concat, mul, pad, slice): checks the node against its
 * inputs. */
static int extended_geometry(const ae_graph *g, const ae_node *nd,
                             const ae_node *in, ae_plan_geom *ge) {
  switch ((int)nd->op) {
  case AE_OP_MAX_POOL: {
    int dil = nd->dilation > 1 ? nd->dilation : 1;
    if (in->rank != 3 || nd->rank != 3 || nd->kernel <= 0 || nd->stride <= 0 ||
        nd->padding < 0 || nd->shape[0] != ge->in_c ||
        2 * nd->padding > dil * (nd->kernel - 1) + 1)
      return AE_EINVAL;
    int oh = pool_extent(ge->in_h, nd->kernel, nd->stride, nd->padding, dil,
                         nd->ceil_mode);
    int ow = pool_extent(ge->in_w, nd->kernel, nd->stride, nd->padding, dil,
                         nd->ceil_mode);
    if (oh != nd->shape[1] || ow != nd->shape[2]) return AE_EINVAL;
    ge->out_hw = (size_t)oh * (size_t)ow;
    return AE_OK;
  }
  case AE_OP_PAD:
    for (int i = 0; i < 4; i++)
      if (nd->pads[i] < 0) return AE_EINVAL;
    if (in->rank != 3 || nd->rank != 3 || nd->shape[0] != ge->in_c ||
        nd->shape[1] != ge->in_h + nd->pads[0] + nd->pads[2] ||
        nd->shape[2] != ge->in_w + nd->pads[1] + nd->pads[3])
      return AE_EINVAL;
    return AE_OK;
  case AE_OP_SLICE: {
    int c = nd->out > 0 ? nd->out : ge->in_c;
    for (int i = 0; i < 4; i++)
      if (nd->pads[i] < 0) return AE_EINVAL;
    if (in->rank != 3 || nd->rank != 3 || c > ge->in_c || nd->shape[0] != c ||
        nd->shape[1] != ge->in_h - nd->pads[0] - nd->pads[2] ||
        nd->shape[2] != ge->in_w - nd->pads[1] - nd->pads[3])
      return AE_EINVAL;
    return AE_OK;
  }
  case AE_OP_CONCAT: {
    size_t channels = 0;
    for (int i = 0; i < nd->n_inputs; i++) {
      const ae_node *a = &g->nodes[nd->inputs[i]];
      if (a->rank != nd->rank ||
          (nd->rank == 3 &&
           (a->shape[1] != nd->shape[1] || a->shape[2] != nd->shape[2])))
        return AE_EINVAL;
      channels += (size_t)a->shape[0];
    }
    return channels == (size_t)nd->shape[0] ? AE_OK : AE_EINVAL;
  }
  case AE_OP_MUL: {
    int dims = nd->rank == 3 ? 3 : 1;
    for (int d = 0; d < dims; d++) {
      int reached = nd->shape[d] == 1;
      for (int i = 0; i < nd->n_inputs; i++) {
        const ae_node *a = &g->nodes[nd->inputs[i]];
        if (a->rank != nd->rank) return AE_EINVAL;
        if (a->shape[d] != nd->shape[d] && a->shape[d] != 1) return AE_EINVAL;
        if (a->shape[d] == nd->shape[d]) reached = 1;
      }
      if (!reached) return AE_EINVAL;
    }
    return AE_OK;
  }
  }
  return AE_EINVAL;
}

/* Checks one node against its inputs and fills its geometry. */
static int node_geometry(const ae_graph *g, int k, ae_plan_geom *ge) {
  const ae_node *nd = &g->nodes[k];
  memset(ge, 0, sizeof(*ge));
  if (nd->rank != 1 && nd->rank != 3) return AE_EINVAL;
  for (int i = 0; i < (nd->rank == 3 ? 3 : 1); i++)
    if (nd->shape[i] <= 0) return AE_EINVAL;
  ge->elems = ae_plan_node_elems(nd);
  for (int i = 0; i < nd->n_inputs; i++)
    if (nd->inputs[i] < 0 || nd->inputs[i] >= k) return AE_EINVAL;
  if (nd->op == AE_OP_INPUT)
    return nd->n_inputs == 0 && k == 0 ? AE_OK : AE_EINVAL;
  if (nd->n_inputs < 1) return AE_EINVAL;
  const ae_node *in = &g->nodes[nd->inputs[0]];
  ge->in_elems = ae_plan_node_elems(in);
  ge->in_c = in->shape[0];
  ge->in_h = in->rank == 3 ? in->shape[1] : 1;
  ge->in_w = in->rank == 3 ? in->shape[2] : 1;
  if ((int)nd->op > AE_OP_FLATTEN) return extended_geometry(g, nd, in, ge);
  switch (nd->op) {
  case AE_OP_LINEAR:
    if (nd->rank != 1 || nd->shape[0] != nd->out || nd->out <= 0)
      return AE_EINVAL;
    ge->fan_in = (int)ge->in_elems;
    ge->n_weight = (size_t)nd->out * ge->in_elems;
    return AE_OK;
  case AE_OP_CONV:
  case AE_OP_AVG_POOL: {
    int kk = nd->kernel, s = nd->stride;
    /* A conv's groups and dilation (1 when unset); pools have neither. */
    int groups = nd->op == AE_OP_CONV && nd->groups > 1 ? nd->groups : 1;
    int dil = nd->op == AE_OP_CONV && nd->dilation > 1 ? nd->dilation : 1;
    if (in->rank != 3 || nd->rank != 3 || kk <= 0 || s <= 0 || nd->padding < 0)
      return AE_EINVAL;
    if (nd->op == AE_OP_CONV ? nd->out != nd->shape[0]
                             : nd->shape[0] != ge->in_c)
      return AE_EINVAL;
    if (ge->in_c % groups != 0 || nd->shape[0] % groups != 0) return AE_EINVAL;
    int oh = out_extent(ge->in_h, dil * (kk - 1) + 1, s, nd->padding);
    int ow = out_extent(ge->in_w, dil * (kk - 1) + 1, s, nd->padding);
    if (oh != nd->shape[1] || ow != nd->shape[2]) return AE_EINVAL;
    ge->out_hw = (size_t)oh * (size_t)ow;
    if (nd->op == AE_OP_CONV) {
      /* PyTorch's fan-in: the input channels of one group. */
      ge->fan_in = ge->in_c / groups * kk * kk;
      ge->col_rows = (size_t)ge->fan_in;
      ge->n_weight = (size_t)nd->out * ge->col_rows;
      ge->direct = kk == 1 && s == 1 && nd->padding == 0 && groups == 1;
    }
    return AE_OK;
  }
  case AE_OP_GLOBAL_AVG_POOL:
    if (in->rank != 3 || nd->rank != 1 || nd->shape[0] != ge->in_c)
      return AE_EINVAL;
    return AE_OK;
  case AE_OP_BATCH_NORM:
    if (ge->in_elems != ge->elems || in->rank != nd->rank) return AE_EINVAL;
    ge->channels = nd->shape[0];
    ge->plane = ge->elems / (size_t)ge->channels;
    return AE_OK;
  case AE_OP_ACT:
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN:
    return ge->in_elems == ge->elems ? AE_OK : AE_EINVAL;
  case AE_OP_ADD:
    for (int i = 0; i < nd->n_inputs; i++)
      if (ae_plan_node_elems(&g->nodes[nd->inputs[i]]) != ge->elems)
        return AE_EINVAL;
    return AE_OK;
  case AE_OP_ZERO:
    return AE_OK;
  case AE_OP_INPUT:
    break;
  }
  return AE_EINVAL;
}

static int is_view(const ae_node *nd) {
  return nd->op == AE_OP_IDENTITY || nd->op == AE_OP_FLATTEN;
}

size_t ae_plan_reserve(ae_plan *p, ae_plan_family family, size_t bytes) {
  size_t off = p->bytes[family];
  p->bytes[family] = ae_plan_align(p, off + bytes);
  return off;
}

size_t ae_plan_total_bytes(const ae_plan *p) {
  return p->bytes[AE_PLAN_FORWARD] + p->bytes[AE_PLAN_BACKWARD];
}

/* Parameters and BN statistics, then the forward outputs. */
static void plan_forward(ae_plan *p) {
  const ae_graph *g = &p->g;
  size_t B = (size_t)p->max_batch, u = p->opt.unit;
  for (int k = 0; k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    const ae_plan_geom *ge = &p->geom[k];
    if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV) {
      p->weight[k] = ae_plan_reserve(p, AE_PLAN_FORWARD, u * ge->n_weight);
      if (nd->op == AE_OP_LINEAR && nd->bias)
        p->bias[k] = ae_plan_reserve(p, AE_PLAN_FORWARD, u * (size_t)nd->out);
    }
    if (nd->op == AE_OP_BATCH_NORM) {
      size_t c = (size_t)ge->channels;
      p->gamma[k] = ae_plan_reserve(p, AE_PLAN_FORWARD, u * c);
      p->beta[k] = ae_plan_reserve(p, AE_PLAN_FORWARD, u * c);
      p->bn_mean[k] = ae_plan_reserve(p, AE_PLAN_FORWARD, sizeof(double) * c);
      p->bn_invstd[k] = ae_plan_reserve(p, AE_PLAN_FORWARD, sizeof(double) * c);
    }
  }
  p->param_bytes = p->bytes[AE_PLAN_FORWARD];
  for (int k = 0; k < g->n_nodes; k++) {
    if (p->opt.share_views && is_view(&g->nodes[k])) {
      /* Same values, same layout: the input's buffer. */
      p->act[k] = p->act[g->nodes[k].inputs[0]];
      continue;
    }
    p->act[k] = ae_plan_reserve(p, AE_PLAN_FORWARD, u * B * p->geom[k].elems);
  }
}

/* Which nodes carry a gradient, from which step, in which slot.  The
 * backward time of node k is n-1-k; a gradient lives from its first
 * writer's step to its own. */
static int plan_backward(ae_plan *p) {
  const ae_graph *g = &p->g;
  int nn = g->n_nodes;
  size_t B = (size_t)p->max_batch;
  size_t *gbytes = calloc((size_t)nn, sizeof(size_t));
  size_t *goff = calloc((size_t)nn, sizeof(size_t));
  int *gstart = malloc(sizeof(int) * (size_t)nn);
  int *gend = malloc(sizeof(int) * (size_t)nn);
  int *live = calloc((size_t)nn, sizeof(int));
  int rc = AE_ENOMEM;
  if (!gbytes || !goff || !gstart || !gend || !live) goto out;
  /* Live: reached backwards from the output through nodes that need a
   * gradient, never through ZERO. */
  live[g->output] = 1;
  for (int k = nn - 1; k >= 0; k--) {
    gstart[k] = gend[k] = -1;
    p->grad_first[k] = -1;
    p->grad_alias[k] = -1;
    if (!live[k] || !p->needs_grad[k] || g->nodes[k].op == AE_OP_ZERO) continue;
    for (int i = 0; i < g->nodes[k].n_inputs; i++)
      live[g->nodes[k].inputs[i]] = 1;
  }
  for (int k = 0; k < nn; k++) {
    if (!live[k] || !p->needs_grad[k]) continue;
    int last = k == g->output ? k : -1;
    for (int c = k + 1; c < nn; c++) {
      const ae_node *cn = &g->nodes[c];
      if (!live[c] || !p->needs_grad[c] || cn->op == AE_OP_ZERO) continue;
      for (int i = 0; i < cn->n_inputs; i++)
        if (cn->inputs[i] == k && c > last) last = c;
    }
    if (last < 0) continue;
    p->grad_first[k] = last;
    gstart[k] = nn - 1 - last;
    gend[k] = nn - 1 - k;
    gbytes[k] = ae_plan_align(p, p->opt.unit * B * p->geom[k].elems);
  }
  /* A node read once, by an add / identity / flatten, has exactly that
   * node's gradient: it shares the reader's slot (no zeroing, no copy),
   * whose life then extends to this node's step. */
  for (int k = nn - 1; k >= 0 && p->opt.share_views; k--) {
    if (gstart[k] < 0 || k == g->output) continue;
    int uses = 0, consumer = -1;
    for (int c = k + 1; c < nn; c++)
      for (int i = 0; i < g->nodes[c].n_inputs; i++)
        if (g->nodes[c].inputs[i] == k) {
          uses++;
          consumer = c;
        }
    if (uses != 1 || (gstart[consumer] < 0 && p->grad_alias[consumer] < 0))
      continue;
    ae_op op = g->nodes[consumer].op;
    if (op != AE_OP_ADD && !is_view(&g->nodes[consumer])) continue;
    int root = consumer;
    while (p->grad_alias[root] >= 0)
      root = p->grad_alias[root];
    p->grad_alias[k] = root;
    if (gend[root] < gend[k]) gend[root] = gend[k];
    gstart[k] = -1;
  }
  size_t total = ae_plan_slots(gbytes, gstart, gend, nn, goff);
  if (total == SIZE_MAX) goto out;
  for (int k = 0; k < nn; k++)
    p->grad[k] = gstart[k] >= 0 ? goff[k] : AE_PLAN_NONE;
  for (int k = 0; k < nn; k++)
    if (p->grad_alias[k] >= 0) p->grad[k] = p->grad[p->grad_alias[k]];
  p->bytes[AE_PLAN_BACKWARD] = total;
  rc = AE_OK;
out:
  free(gbytes);
  free(goff);
  free(gstart);
  free(gend);
  free(live);
  return rc;
}

/* p->jet_bn_add (plan.h): a BN (not the output) of a conv that only it
 * reads, read once itself, by an ADD of two or more inputs, each of the
 * ADD's per-sample size, the BN of the ADD's rank and channels. */
static void plan_jet_bn_adds(ae_plan *p) {
  int nn = p->g.n_nodes;
  for (int k = 0; k < nn; k++)
    p->jet_bn_add[k] = -1;
  for (int k = 0; k < nn; k++) {
    const ae_node *bn = &p->g.nodes[k];
    int r = p->last_use[k];
    if (bn->op != AE_OP_BATCH_NORM || k == p->g.output || r <= k || r >= nn)
      continue;
    const ae_node *add = &p->g.nodes[r];
    if (add->op != AE_OP_ADD || add->n_inputs < 2) continue;
    /* Its input a conv read by the BN alone (the BN may run in place). */
    int in = bn->inputs[0];
    if (p->g.nodes[in].op != AE_OP_CONV || p->last_use[in] != k) continue;
    int reads = 0, in_reads = 0, same = 1;
    for (int j = in + 1; j <= r; j++)
      for (int i = 0; i < p->g.nodes[j].n_inputs; i++) {
        reads += p->g.nodes[j].inputs[i] == k;
        in_reads += p->g.nodes[j].inputs[i] == in;
      }
    same &= in_reads == 1;
    for (int i = 0; i < add->n_inputs; i++)
      same &= p->geom[add->inputs[i]].elems == p->geom[r].elems;
    /* Its channels are the ADD's (the sum runs plane by plane). */
    same &= bn->rank == add->rank && bn->shape[0] == add->shape[0];
    if (reads == 1 && same) p->jet_bn_add[k] = r;
  }
}

int ae_plan_create(const ae_graph *g, int max_batch, const ae_plan_options *opt,
                   ae_plan **out) {
  *out = NULL;
  if (!g || !opt || g->n_nodes < 1 || max_batch < 1 || g->output < 0 ||
      g->output >= g->n_nodes || g->nodes[0].op != AE_OP_INPUT ||
      opt->align == 0 || (opt->align & (opt->align - 1)) || opt->unit == 0)
    return AE_EINVAL;
  ae_plan *p = calloc(1, sizeof(*p));
  if (!p) return AE_ENOMEM;
  int rc = copy_graph(g, &p->g);
  if (rc) goto fail;
  p->max_batch = max_batch;
  p->opt = *opt;
  size_t nn = (size_t)g->n_nodes;
  rc = AE_ENOMEM;
  p->geom = calloc(nn, sizeof(ae_plan_geom));
  p->needs_grad = calloc(nn, sizeof(int));
  p->last_use = calloc(nn, sizeof(int));
  p->jet_bn_add = calloc(nn, sizeof(int));
  p->grad_first = calloc(nn, sizeof(int));
  p->grad_alias = calloc(nn, sizeof(int));
  size_t *offsets = malloc(sizeof(size_t) * nn * 8);
  if (!p->geom || !p->needs_grad || !p->last_use || !p->jet_bn_add ||
      !p->grad_first || !p->grad_alias || !offsets) {
    free(offsets);
    goto fail;
  }
  for (size_t i = 0; i < nn * 8; i++)
    offsets[i] = AE_PLAN_NONE;
  /* One allocation for the eight offset arrays; weight owns it. */
  p->weight = offsets;
  p->bias = offsets + nn;
  p->gamma = offsets + 2 * nn;
  p->beta = offsets + 3 * nn;
  p->bn_mean = offsets + 4 * nn;
  p->bn_invstd = offsets + 5 * nn;
  p->act = offsets + 6 * nn;
  p->grad = offsets + 7 * nn;
  for (int k = 0; k < p->g.n_nodes; k++) {
    rc = node_geometry(&p->g, k, &p->geom[k]);
    if (rc) goto fail;
  }
  const ae_node *o = &p->g.nodes[p->g.output];
  if (o->rank != 1 || (p->g.num_classes > 0 && p->geom[p->g.output].elems !=
                                                   (size_t)p->g.num_classes)) {
    rc = AE_EINVAL;
    goto fail;
  }
  for (int k = 0; k < p->g.n_nodes; k++) {
    const ae_node *nd = &p->g.nodes[k];
    p->needs_grad[k] = nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV ||
                       nd->op == AE_OP_BATCH_NORM;
    p->last_use[k] = k == p->g.output ? p->g.n_nodes : k;
    for (int i = 0; i < nd->n_inputs; i++) {
      if (nd->op != AE_OP_ZERO && p->needs_grad[nd->inputs[i]])
        p->needs_grad[k] = 1;
      if (p->last_use[nd->inputs[i]] < k) p->last_use[nd->inputs[i]] = k;
    }
  }
  plan_jet_bn_adds(p);
  plan_forward(p);
  rc = plan_backward(p);
  if (rc) goto fail;
  *out = p;
  return AE_OK;
fail:
  ae_plan_destroy(p);
  return rc;
}

void ae_plan_destroy(ae_plan *p) {
  if (!p) return;
  free_graph_copy(&p->g);
  free(p->geom);
  free(p->needs_grad);
  free(p->last_use);
  free(p->jet_bn_add);
  free(p->grad_first);
  free(p->grad_alias);
  free(p->weight);
  free(p);
}

size_t ae_plan_jets(const ae_plan *p, int batch, size_t unit, int fold_bn,
                    size_t *offset) {
  int nn = p->g.n_nodes;
  size_t *bytes = calloc((size_t)nn, sizeof(size_t));
  int *start = calloc((size_t)nn, sizeof(int));
  int *end = calloc((size_t)nn, sizeof(int));
  int *root = calloc((size_t)nn, sizeof(int));
  size_t total = SIZE_MAX;
  if (!bytes || !start || !end || !root) goto out;
  for (int k = 0; k < nn; k++) {
    const ae_node *nd = &p->g.nodes[k];
    bytes[k] = ae_plan_align(p, 3 * (size_t)batch * p->geom[k].elems * unit);
    start[k] = k;
    end[k] = p->last_use[k];
    root[k] = k;
    if (p->opt.share_views && is_view(nd)) {
      /* The input's buffer, kept alive for this node's readers too. */
      int r = root[nd->inputs[0]];
      root[k] = r;
      start[k] = -1;
      if (end[r] < end[k]) end[r] = end[k];
    }
  }
  /* A BN that its ADD may apply: its input's buffer, which lives until
   * the ADD (the BN runs in place when it runs; its input has no other
   * reader). */
  for (int k = 0; fold_bn && k < nn; k++) {
    int add = p->jet_bn_add[k];
    if (add < 0) continue;
    int in = p->g.nodes[k].inputs[0];
    root[k] = in;
    start[k] = -1;
    if (end[in] < add) end[in] = add;
  }
  total = ae_plan_slots(bytes, start, end, nn, offset);
  if (total == SIZE_MAX) goto out;
  for (int k = 0; k < nn; k++)
    offset[k] = offset[root[k]];
out:
  free(bytes);
  free(start);
  free(end);
  free(root);
  return total;
}

int ae_plan_first_host_only_node(const ae_graph *g) {
  for (int k = 0; k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    if ((int)nd->op > AE_OP_FLATTEN ||
        (nd->op == AE_OP_ACT && (int)nd->act.fn > AE_ACT_IDENTITY) ||
        (nd->op == AE_OP_CONV &&
         (nd->groups > 1 || (nd->dilation > 1 && nd->kernel > 1))))
      return k;
  }
  return -1;
}

size_t ae_plan_param_count(const ae_plan *p) {
  size_t total = 0;
  for (int k = 0; k < p->g.n_nodes; k++) {
    const ae_node *nd = &p->g.nodes[k];
    if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV)
      total += p->geom[k].n_weight +
               (nd->op == AE_OP_LINEAR && nd->bias ? (size_t)nd->out : 0);
    else if (nd->op == AE_OP_BATCH_NORM)
      total += 2 * (size_t)p->geom[k].channels;
  }
  return total;
}

double ae_plan_init_variance(const ae_plan *p, int node) {
  double gain = p->g.nodes[node].init_gain;
  return (gain > 0.0 ? gain : 1.0) / (double)p->geom[node].fan_in;
}

/* ---- a job's whole memory ----
 * What the host engine allocates for one job, part by part, from the same
 * plans the executor makes (ae_plan_create, ae_plan_jets), the same
 * scratch sizes (ae_plan_host_scratch_sizes, which gpu/host/ allocates
 * from) and the sizes the groups allocate (gpu/groups/). */
#define HOST_ALIGN 64
#define LR_BATCH 1000 /* expressivity.c's AE_LR_BATCH */

static size_t min_sz(size_t a, size_t b) {
  return a < b ? a : b;
}

static size_t max_sz(size_t a, size_t b) {
  return a > b ? a : b;
}

int ae_plan_host_chunk(const ae_plan_geom *ge, int samples) {
  size_t hw = ge->out_hw ? ge->out_hw : 1;
  size_t chunk = (AE_PLAN_HOST_CHUNK_COLUMNS + hw - 1) / hw;
  return (int)min_sz(chunk, samples > 0 ? (size_t)samples : 1);
}

void ae_plan_host_scratch_sizes(const ae_plan *p, int batch, int jets,
                                ae_plan_host_sizes *out) {
  size_t B = (size_t)batch, unit = p->opt.unit;
  size_t max_col = 0, max_y = 0, max_gd = 0, max_gd2 = 0;
  for (int k = 0; k < p->g.n_nodes; k++) {
    const ae_node *nd = &p->g.nodes[k];
    const ae_plan_geom *ge = &p->geom[k];
    if (nd->op == AE_OP_CONV) {
      size_t hw = ge->out_hw;
      size_t chunk = (size_t)ae_plan_host_chunk(ge, jets ? 3 * batch : batch);
      max_col = max_sz(max_col, ge->col_rows * hw * chunk);
      max_y = max_sz(max_y, (size_t)nd->out * hw * chunk);
      max_gd = max_sz(max_gd, ge->n_weight);
    } else if (nd->op == AE_OP_LINEAR) {
      max_gd = max_sz(max_gd, ge->in_elems);
      max_gd2 = max_sz(max_gd2, (size_t)nd->out);
    } else if (nd->op == AE_OP_BATCH_NORM) {
      max_gd = max_sz(max_gd, (size_t)ge->channels);
    }
  }
  out->col = ae_plan_align(p, unit * max_col);
  out->y = ae_plan_align(p, unit * max_y);
  out->bwd_col = ae_plan_align(p, unit * max_col);
  out->bwd_gd = ae_plan_align(p, sizeof(double) * B * max_gd);
  out->bwd_gd2 = ae_plan_align(p, sizeof(double) * B * max_gd2);
  out->bwd_bb = ae_plan_align(p, sizeof(double) * 2 * B * B);
}

size_t ae_plan_host_scratch(const ae_plan *p, int batch, int jets,
                            size_t *backward) {
  ae_plan_host_sizes s;
  ae_plan_host_scratch_sizes(p, batch, jets, &s);
  if (backward) *backward = s.bwd_col + s.bwd_gd + s.bwd_gd2 + s.bwd_bb;
  return s.col + s.y;
}

void ae_plan_cuda_conv_chunks(const ae_plan_geom *ge, int cout, size_t B,
                              int *fwd_chunk, int *k_chunk, size_t *col,
                              size_t *grows) {
  size_t K = ge->col_rows, HW = ge->out_hw ? ge->out_hw : 1;
  size_t C = (size_t)(cout > 0 ? cout : 1);
  size_t fwd = ge->direct ? B : AE_PLAN_CUDA_COL_CAP / (K * HW);
  fwd = fwd < 1 ? 1 : (fwd > B ? B : fwd);
  size_t kc = ge->direct ? K : AE_PLAN_CUDA_COL_CAP / (B * HW);
  size_t g_limit = AE_PLAN_CUDA_G_CAP / (B * C);
  if (kc > g_limit) kc = g_limit;
  kc = kc < 1 ? 1 : (kc > K ? K : kc);
  *fwd_chunk = (int)fwd;
  *k_chunk = (int)kc;
  *col = ge->direct ? 0 : max_sz(fwd * K * HW, B * kc * HW);
  *grows = B * C * kc;
}

void ae_plan_cuda_scratch_sizes(const ae_plan *p,
                                int (*pattern_act)(const ae_node *nd),
                                ae_plan_cuda_sizes *out) {
  size_t B = (size_t)p->max_batch;
  size_t col = 0, gf = 0, gd = 0, bits = 0;
  for (int k = 0; k < p->g.n_nodes; k++) {
    const ae_node *nd = &p->g.nodes[k];
    const ae_plan_geom *ge = &p->geom[k];
    if (nd->op == AE_OP_CONV) {
      int fwd, kc;
      size_t c = 0, r = 0;
      ae_plan_cuda_conv_chunks(ge, nd->out, B, &fwd, &kc, &c, &r);
      col = max_sz(col, c);
      gf = max_sz(gf, r);
      gd = max_sz(gd, r);
    } else if (nd->op == AE_OP_LINEAR) {
      gd = max_sz(gd, B * max_sz(ge->in_elems, (size_t)nd->out));
    } else if (nd->op == AE_OP_BATCH_NORM) {
      gd = max_sz(gd, B * (size_t)ge->channels);
    }
    if (pattern_act(nd)) bits += ge->elems;
  }
  out->pattern_words = (bits + 63) / 64;
  out->col = sizeof(float) * col;
  out->gf = sizeof(float) * gf;
  out->gd = sizeof(double) * gd;
  out->xx = out->yy = out->theta = sizeof(double) * B * B;
  out->bits = sizeof(uint64_t) * (B * out->pattern_words + 1);
  out->hashes = sizeof(uint64_t) * B;
}

size_t ae_plan_cuda_jet_chunk(const ae_plan_geom *ge, size_t rows) {
  size_t per = ge->col_rows * (ge->out_hw ? ge->out_hw : 1);
  size_t c = AE_PLAN_CUDA_JET_COL_CAP / (per ? per : 1);
  return c < 1 ? 1 : (c > rows ? rows : c);
}

void ae_plan_cuda_jet_scratch(const ae_plan *p, int batch, size_t *col,
                              size_t *weights, size_t *stats) {
  size_t rows = 3 * (size_t)batch, max_col = 0, max_w = 0, max_c = 0;
  for (int k = 0; k < p->g.n_nodes; k++) {
    const ae_plan_geom *ge = &p->geom[k];
    if (p->g.nodes[k].op == AE_OP_CONV && !ge->direct) {
      size_t per = ge->col_rows * (ge->out_hw ? ge->out_hw : 1);
      max_col = max_sz(max_col, ae_plan_cuda_jet_chunk(ge, rows) * per);
    }
    max_w = max_sz(max_w, ge->n_weight);
    max_c = max_sz(max_c, (size_t)ge->channels);
  }
  *col = max_col * sizeof(double);
  *weights = max_w * sizeof(double);
  *stats = 2 * max_c * sizeof(double);
}

/* The sign-pattern activations the CUDA executor records (as
 * gpu/cuda/cuda_internal.h's ae_cuda_is_pattern_act). */
static int cuda_pattern_act(const ae_node *nd) {
  return nd->op == AE_OP_ACT &&
         (nd->act.fn == AE_ACT_RELU || nd->act.fn == AE_ACT_LEAKY_RELU);
}

int ae_plan_job_device(const ae_request *r, size_t *bytes) {
  *bytes = 0;
  unsigned groups = ae_metric_set_groups(r->selected);
  if (!(groups & (AE_GROUP_EXPRESSIVITY | AE_GROUP_CONVERGENCE |
                  AE_GROUP_GENERALIZATION | AE_GROUP_PROXIES)))
    return AE_OK; /* topology alone makes no net */
  int N = r->data.batch_size > 0 ? r->data.batch_size : 1;
  const ae_plan_options opt = {AE_PLAN_CUDA_ALIGN, sizeof(float), 0};
  ae_plan *p = NULL;
  int rc = ae_plan_create(&r->net, N, &opt, &p);
  if (rc) return rc;
  ae_plan_cuda_sizes s;
  ae_plan_cuda_scratch_sizes(p, cuda_pattern_act, &s);
  /* One allocation: both families, then each scratch buffer reserved
   * after the gradient slots, each aligned (ae_plan_reserve). */
  size_t total = ae_plan_total_bytes(p) + ae_plan_align(p, s.col) +
                 ae_plan_align(p, s.gf) + ae_plan_align(p, s.gd) +
                 ae_plan_align(p, s.xx) + ae_plan_align(p, s.yy) +
                 ae_plan_align(p, s.theta) + ae_plan_align(p, s.bits) +
                 ae_plan_align(p, s.hashes);
  if (groups & AE_GROUP_EXPRESSIVITY) {
    int pts = r->settings.curv_points > 0 ? r->settings.curv_points : 1;
    size_t *off = malloc(sizeof(size_t) * (size_t)p->g.n_nodes);
    size_t jets = off ? ae_plan_jets(p, pts, sizeof(double), 0, off) : SIZE_MAX;
    free(off);
    if (jets == SIZE_MAX) {
      ae_plan_destroy(p);
      return AE_ENOMEM;
    }
    size_t col, w, st;
    ae_plan_cuda_jet_scratch(p, pts, &col, &w, &st);
    total += jets + ae_plan_align(p, col) + ae_plan_align(p, w) +
             ae_plan_align(p, st);
  }
  ae_plan_destroy(p);
  *bytes = total;
  return AE_OK;
}

/* The most outputs alive at once in a forward sweep (for the analytic
 * kernels, one N x N pair per live node). */
static int peak_live(const ae_plan *p) {
  int peak = 0;
  for (int t = 0; t < p->g.n_nodes; t++) {
    int live = 0;
    for (int k = 0; k <= t; k++)
      if (p->last_use[k] >= t) live++;
    if (live > peak) peak = live;
  }
  return peak;
}

/* The host plan of g at batch, or an error. */
static int host_plan(const ae_graph *g, int batch, ae_plan **out) {
  const ae_plan_options opt = {HOST_ALIGN, sizeof(float), 1};
  return ae_plan_create(g, batch, &opt, out);
}

/* Linear regions: the probe network at min(S, LR_BATCH) (forward only),
 * the S probe inputs, the sign patterns of a batch and of all S samples,
 * and the sort's rows. */
static int plan_linear_regions(const ae_request *r, size_t *bytes) {
  *bytes = 0;
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.probe = 1;
  o.num_classes = r->net.num_classes;
  if (r->arch.type == AE_ARCH_NB201) {
    o.input_shape[0] = 1, o.input_shape[1] = 3, o.input_shape[2] = 3;
    o.input_rank = 3;
  } else {
    memcpy(o.input_shape, r->data.input_shape, sizeof o.input_shape);
    o.input_rank = r->data.input_rank;
  }
  ae_limits lim;
  ae_limits_default(&lim);
  lim.max_working_set_bytes = 0;
  ae_graph probe;
  memset(&probe, 0, sizeof probe);
  ae_problem prob = AE_PROBLEM_INIT;
  int rc = ae_arch_lower(&r->arch, &o, &lim, "/architecture", &probe, &prob);
  ae_problem_clear(&prob);
  if (rc) return rc == AE_ENOMEM ? rc : AE_OK; /* the group will refuse */
  size_t S = (size_t)(r->settings.lr_samples > 0 ? r->settings.lr_samples : 0);
  int batch = (int)min_sz(S ? S : 1, LR_BATCH);
  ae_plan *p = NULL;
  rc = host_plan(&probe, batch, &p);
  if (rc) {
    ae_graph_free(&probe);
    return rc == AE_ENOMEM ? rc : AE_OK;
  }
  size_t dim = 1, units = 0;
  for (int k = 0; k < o.input_rank; k++)
    dim *= (size_t)o.input_shape[k];
  for (int k = 0; k < p->g.n_nodes; k++)
    if (p->g.nodes[k].op == AE_OP_ACT) /* two bits per unit at most */
      units += 2 * p->geom[k].elems;
  size_t words = (units + 63) / 64;
  *bytes = p->bytes[AE_PLAN_FORWARD] + ae_plan_host_scratch(p, batch, 0, NULL) +
           S * dim * sizeof(float) +
           ((size_t)batch * words + 1) * sizeof(uint64_t) +
           (S * words + 1) * sizeof(uint64_t) + S * 2 * sizeof(void *);
  ae_plan_destroy(p);
  ae_graph_free(&probe);
  return AE_OK;
}

int ae_plan_job(const ae_request *r, ae_plan_job_bytes *out) {
  memset(out, 0, sizeof *out);
  size_t N = (size_t)(r->data.batch_size > 0 ? r->data.batch_size : 1);
  size_t NN = N * N, dim = 1;
  for (int k = 0; k < r->data.input_rank; k++)
    dim *= (size_t)r->data.input_shape[k];
  unsigned groups = ae_metric_set_groups(r->selected);
  int expressivity = !!(groups & AE_GROUP_EXPRESSIVITY);
  int convergence = !!(groups & AE_GROUP_CONVERGENCE);
  int generalization = !!(groups & AE_GROUP_GENERALIZATION);
  int ntk = convergence || generalization;
  /* The batch: as drawn and as fed (float), its labels, K(0) and norms. */
  out->batch = 2 * N * dim * sizeof(float) + N * sizeof(int) +
               NN * sizeof(double) + N * sizeof(double);
  ae_plan *p = NULL;
  int rc = host_plan(&r->net, (int)N, &p);
  if (rc) return rc;
  size_t bwd_scratch = 0;
  size_t fwd_scratch = ae_plan_host_scratch(p, (int)N, 0, &bwd_scratch);
  /* The network: every group but topology creates it. */
  if (expressivity || ntk || (groups & AE_GROUP_PROXIES))
    out->net = p->bytes[AE_PLAN_FORWARD] + fwd_scratch;
  if (ntk) {
    /* The backward family (gradient slots and scratch), theta, a second
     * theta for the repeats, the eigenvalues and dsyevd's copy and work
     * (1 + 6N + 2N^2 doubles, 3 + 5N ints). */
    out->net_backward = p->bytes[AE_PLAN_BACKWARD] + bwd_scratch;
    out->ntk = NN * sizeof(double);
    if (convergence)
      out->ntk += 2 * NN * sizeof(double) + N * sizeof(double) +
                  (1 + 6 * N + 2 * NN) * sizeof(double) +
                  (3 + 5 * N) * sizeof(int);
  }
  if (convergence) {
    /* The analytic NNGP and NTK: a pair per live node, the pair kept, a
     * copy for the eigensolver, and four scratch matrices. */
    out->kernels =
        ((size_t)2 * (size_t)peak_live(p) + 2 + 1 + 4) * NN * sizeof(double);
  }
  if (generalization) {
    size_t cols = (size_t)(r->net.num_classes > 0 ? r->net.num_classes : 1);
    /* G, Y, the Cholesky factor L and the solve Z. */
    out->generalization =
        2 * NN * sizeof(double) + 2 * N * cols * sizeof(double);
  }
  if (expressivity) {
    rc = plan_linear_regions(r, &out->linear_regions);
    if (rc) {
      ae_plan_destroy(p);
      return rc;
    }
    /* The jets at the curve's points (three streams per node), their
     * im2col scratch, and the curve's six vectors in double. */
    int pts = r->settings.curv_points > 0 ? r->settings.curv_points : 1;
    size_t *off = malloc(sizeof(size_t) * (size_t)p->g.n_nodes);
    size_t jets = off ? ae_plan_jets(p, pts, sizeof(float), 1, off) : SIZE_MAX;
    free(off);
    if (jets == SIZE_MAX) {
      ae_plan_destroy(p);
      return AE_ENOMEM;
    }
    size_t classes = (size_t)(r->net.num_classes > 0 ? r->net.num_classes : 1);
    out->curvature = jets + ae_plan_host_scratch(p, pts, 1, NULL) +
                     3 * (size_t)pts * (dim + classes) * sizeof(double) +
                     2 * dim * sizeof(double);
  }
  if (groups &
      (AE_GROUP_TOPOLOGY | AE_GROUP_EXPRESSIVITY | AE_GROUP_GENERALIZATION))
    out->paths = (size_t)AE_PLAN_PATH_LIST * sizeof(double);
  out->ranking = ae_plan_ranking_bytes(r, p);
  ae_plan_destroy(p);
  out->total = out->batch + out->net + out->net_backward + out->ntk +
               out->kernels + out->generalization + out->linear_regions +
               out->curvature + out->paths + out->ranking;
  return ae_plan_job_device(r, &out->device);
}

/* ae_cross_sums's scratch (gpu/host/net_cross.c) for the channel pairs of
 * feature_isotropy, feature_corr_lambda_min and jacobian_trainability,
 * whose nodes have at most c channels (an unshuffled block 4 c): at most
 * 8 MiB of lanes, the widened rows of a chunk (256 columns) of both row
 * sets, and the callers' float64 matrix of up to 4 c x c pairs. */
static size_t cross_sums_bytes(size_t c) {
  size_t lanes = 4 * c * c * 8 * sizeof(double);
  if (lanes > ((size_t)8 << 20)) lanes = (size_t)8 << 20;
  return lanes + 5 * c * 256 * sizeof(double) + 4 * c * c * sizeof(double);
}

/* The ranking metrics (ranking.md §1-4): the buffers their code allocates
 * beyond the net and the NTK counted above (gpu/host/net_grad.c,
 * gpu/groups/gradients.c, gpu/groups/features.c), by metric selected.
 * Bounds, not exact counts: the backward keeps only its sweep's frontier
 * (bounded here by 16 of the largest node outputs), and the extra nets
 * (the probe, synflow's BN-free float64 copy at batch 1, the one-sample
 * forwards of feature_corr_lambda_min) are bounded by the full net's
 * per-sample forward family. */
size_t ae_plan_ranking_bytes(const ae_request *r, const ae_plan *net_plan) {
  const ae_plan *p = net_plan;
  ae_metric_set s = r->selected;
  size_t N = (size_t)(r->data.batch_size > 0 ? r->data.batch_size : 1);
  size_t NN = N * N, dim = 1, largest = 0, units = 0, channels = 0;
  for (int k = 0; k < r->data.input_rank; k++)
    dim *= (size_t)r->data.input_shape[k];
  for (int k = 0; k < p->g.n_nodes; k++) {
    if (p->geom[k].elems > largest) largest = p->geom[k].elems;
    if (p->g.nodes[k].op == AE_OP_ACT) units += p->geom[k].elems;
    if (p->g.nodes[k].rank == 3 && (size_t)p->g.nodes[k].shape[0] > channels)
      channels = (size_t)p->g.nodes[k].shape[0];
  }
  size_t classes = (size_t)(r->net.num_classes > 0 ? r->net.num_classes : 1);
  size_t params = ae_plan_param_count(p);
  size_t per_sample = p->bytes[AE_PLAN_FORWARD] / N + 1;
  size_t fwd_scratch = ae_plan_host_scratch(p, (int)N, 0, NULL);
  size_t bytes = 0;
  int backward =
      ae_metric_set_has(s, AE_M_JACOBIAN_TRAINABILITY) ||
      ae_metric_set_has(s, AE_M_SYNFLOW) ||
      ae_metric_set_has(s, AE_M_GRAD_NORM) || ae_metric_set_has(s, AE_M_SNIP) ||
      ae_metric_set_has(s, AE_M_JACOB_COV) || ae_metric_set_has(s, AE_M_ZICO);
  if (backward) /* frontier, parameter gradients (float and double), scratch */
    bytes += 16 * N * largest * sizeof(float) + params * 24 + fwd_scratch +
             2 * N * classes * sizeof(double);
  if (ae_metric_set_has(s, AE_M_JACOBIAN_TRAINABILITY))
    bytes += N * dim * sizeof(float) + 3 * N * largest * sizeof(double);
  if (ae_metric_set_has(s, AE_M_FEATURE_ISOTROPY))
    bytes += N * dim * sizeof(float) + N * largest * sizeof(double);
  if (ae_metric_set_has(s, AE_M_SYNFLOW)) bytes += 3 * per_sample + params * 24;
  if (ae_metric_set_has(s, AE_M_JACOB_COV))
    bytes += N * dim * sizeof(double) + 3 * NN * sizeof(double);
  if (ae_metric_set_has(s, AE_M_ZICO))
    bytes += 2 * N * dim * sizeof(float) + params * 32;
  if (ae_metric_set_has(s, AE_M_PATTERN_KERNEL_LOGDET))
    bytes += N * ((units + 63) / 64) * sizeof(uint64_t) +
             N * largest * sizeof(double) + 2 * NN * sizeof(double);
  if (ae_metric_set_has(s, AE_M_ACTIVATION_PATTERNS))
    bytes += 16 * per_sample + 16 * units * sizeof(uint64_t) + 8192;
  if (ae_metric_set_has(s, AE_M_FEATURE_CORR_LAMBDA_MIN))
    bytes += 2 * per_sample + 4 * largest * sizeof(double);
  if (ae_metric_set_has(s, AE_M_KERNEL_REGRESSION_VAL_MSE))
    bytes += 2 * NN * sizeof(double) + 3 * N * classes * sizeof(double);
  if (ae_metric_set_has(s, AE_M_FEATURE_ISOTROPY) ||
      ae_metric_set_has(s, AE_M_FEATURE_CORR_LAMBDA_MIN) ||
      ae_metric_set_has(s, AE_M_JACOBIAN_TRAINABILITY))
    bytes += cross_sums_bytes(channels);
  return bytes;
}
