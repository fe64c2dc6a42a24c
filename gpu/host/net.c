/* net.c: the host executor's plan, weights and forward pass (float32;
 * compiled again as net64.c in float64, see net_real.h).
 *
 * ae_net_create copies the graph, derives each node's geometry and plans
 * two arenas for max_batch samples.  The first, allocated at once, holds
 * the parameters, the BN statistics, the forward output of every node
 * (kept: the backward reads them; identity and flatten share their
 * input's) and the forward scratch (a chunk of samples' im2col side by
 * side, so that the late small planes still make one well-shaped GEMM).
 * The second, allocated by the first ae_net_ntk, holds the gradient slots
 * (shared between nodes whose gradients are never alive at once, planned
 * by ae_net_plan_slots) and the NTK scratch.  Conv runs as im2col + GEMM;
 * BN normalises with the batch's statistics, accumulated in float64 and
 * kept for the backward.  ae_net_set_double routes forward and NTK to a
 * float64 twin holding the same weights.
 *
 * An ae_net and everything it points to belong to the thread that created
 * it. */
#include "gpu/host/net_internal.h"

#include "api/status.h"
#include "gpu/philox.h"
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef AE_NET_DOUBLE
#include "gpu/host/net64.h"
#endif

#define ALIGN 64
#define BN_EPS 1e-5

static ae_real *param_tensor(ae_net *n, int node, ae_net_param_kind kind,
                             size_t *count);
/* Columns of one im2col + sgemm chunk: enough samples side by side that
 * the small late-stage planes still make a well-shaped sgemm. */
#define CHUNK_COLUMNS 1024

static size_t align_up(size_t v) {
  return (v + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

static size_t max_sz(size_t a, size_t b) {
  return a > b ? a : b;
}

/* Copies what the executor needs of the graph: ops, inputs and shapes. */
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
      d->inputs = malloc(sizeof(int) * (size_t)src->nodes[k].n_inputs);
      if (!d->inputs) return AE_ENOMEM;
      memcpy(d->inputs, src->nodes[k].inputs,
             sizeof(int) * (size_t)src->nodes[k].n_inputs);
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

/* Checks one node against its inputs and fills its geometry. */
static int node_geometry(const ae_graph *g, int k, ae_net_geom *ge) {
  const ae_node *nd = &g->nodes[k];
  memset(ge, 0, sizeof(*ge));
  if (nd->rank != 1 && nd->rank != 3) return AE_EINVAL;
  for (int i = 0; i < (nd->rank == 3 ? 3 : 1); i++)
    if (nd->shape[i] <= 0) return AE_EINVAL;
  ge->elems = ae_net_node_elems(nd);
  for (int i = 0; i < nd->n_inputs; i++)
    if (nd->inputs[i] < 0 || nd->inputs[i] >= k) return AE_EINVAL;
  if (nd->op == AE_OP_INPUT) return nd->n_inputs == 0 ? AE_OK : AE_EINVAL;
  if (nd->n_inputs < 1) return AE_EINVAL;
  const ae_node *in = &g->nodes[nd->inputs[0]];
  ge->in_elems = ae_net_node_elems(in);
  ge->in_c = in->shape[0];
  ge->in_h = in->rank == 3 ? in->shape[1] : 1;
  ge->in_w = in->rank == 3 ? in->shape[2] : 1;
  switch (nd->op) {
  case AE_OP_LINEAR:
    if (nd->rank != 1 || nd->shape[0] != nd->out || nd->out <= 0)
      return AE_EINVAL;
    ge->fan_in = (int)ge->in_elems;
    ge->n_weight = (size_t)nd->out * ge->in_elems;
    return AE_OK;
  case AE_OP_CONV: {
    int k2 = nd->kernel, s = nd->stride;
    if (in->rank != 3 || nd->rank != 3 || k2 <= 0 || s <= 0 ||
        nd->padding < 0 || nd->out != nd->shape[0])
      return AE_EINVAL;
    int oh = (ge->in_h + 2 * nd->padding - k2) / s + 1;
    int ow = (ge->in_w + 2 * nd->padding - k2) / s + 1;
    if (oh != nd->shape[1] || ow != nd->shape[2]) return AE_EINVAL;
    ge->fan_in = ge->in_c * k2 * k2;
    ge->col_rows = (size_t)ge->fan_in;
    ge->out_hw = (size_t)oh * (size_t)ow;
    ge->n_weight = (size_t)nd->out * ge->col_rows;
    return AE_OK;
  }
  case AE_OP_AVG_POOL: {
    int k2 = nd->kernel, s = nd->stride;
    if (in->rank != 3 || nd->rank != 3 || k2 <= 0 || s <= 0 ||
        nd->padding < 0 || nd->shape[0] != ge->in_c)
      return AE_EINVAL;
    int oh = (ge->in_h + 2 * nd->padding - k2) / s + 1;
    int ow = (ge->in_w + 2 * nd->padding - k2) / s + 1;
    if (oh != nd->shape[1] || ow != nd->shape[2]) return AE_EINVAL;
    ge->out_hw = (size_t)oh * (size_t)ow;
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
      if (ae_net_node_elems(&g->nodes[nd->inputs[i]]) != ge->elems)
        return AE_EINVAL;
    return AE_OK;
  case AE_OP_ZERO:
    return AE_OK;
  case AE_OP_INPUT:
    break;
  }
  return AE_EINVAL;
}

/* Offsets of every buffer in the arena, then one allocation. */
static int plan_arena(ae_net *n) {
  const ae_graph *g = &n->g;
  int nn = g->n_nodes;
  size_t B = (size_t)n->max_batch;
  size_t *w_off = calloc((size_t)nn * 7, sizeof(size_t));
  size_t *gbytes = calloc((size_t)nn, sizeof(size_t));
  size_t *goff = calloc((size_t)nn, sizeof(size_t));
  int *gstart = malloc(sizeof(int) * (size_t)nn);
  int *gend = malloc(sizeof(int) * (size_t)nn);
  int *live = calloc((size_t)nn, sizeof(int));
  int rc = AE_ENOMEM;
  if (!w_off || !gbytes || !goff || !gstart || !gend || !live) goto out;
  size_t *b_off = w_off + nn, *ga_off = w_off + 2 * (size_t)nn,
         *be_off = w_off + 3 * (size_t)nn, *mean_off = w_off + 4 * (size_t)nn,
         *inv_off = w_off + 5 * (size_t)nn, *act_off = w_off + 6 * (size_t)nn;
  size_t total = 0, max_col = 0, max_gd = 0, max_gd2 = 0;
  size_t max_y = 0;
  for (int k = 0; k < nn; k++) {
    const ae_node *nd = &g->nodes[k];
    ae_net_geom *ge = &n->geom[k];
    if (nd->op == AE_OP_CONV) {
      size_t chunk = (CHUNK_COLUMNS + ge->out_hw - 1) / ge->out_hw;
      ge->chunk = (int)(chunk < B ? chunk : B);
      max_y = max_sz(max_y, (size_t)nd->out * ge->out_hw * (size_t)ge->chunk);
    }
    if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV) {
      w_off[k] = total;
      total = align_up(total + sizeof(ae_real) * ge->n_weight);
      if (nd->op == AE_OP_LINEAR && nd->bias) {
        b_off[k] = total;
        total = align_up(total + sizeof(ae_real) * (size_t)nd->out);
      }
      if (nd->op == AE_OP_CONV) {
        max_col =
            max_sz(max_col, ge->col_rows * ge->out_hw * (size_t)ge->chunk);
        max_gd = max_sz(max_gd, ge->n_weight);
      } else {
        max_gd = max_sz(max_gd, ge->in_elems);
        max_gd2 = max_sz(max_gd2, (size_t)nd->out);
      }
    }
    if (nd->op == AE_OP_BATCH_NORM) {
      size_t c = (size_t)ge->channels;
      ga_off[k] = total;
      total = align_up(total + sizeof(ae_real) * c);
      be_off[k] = total;
      total = align_up(total + sizeof(ae_real) * c);
      mean_off[k] = total;
      total = align_up(total + sizeof(double) * c);
      inv_off[k] = total;
      total = align_up(total + sizeof(double) * c);
      max_gd = max_sz(max_gd, c);
    }
  }
  /* Parameters and BN statistics come first: only they are zeroed at
   * create (activations are written before they are read, and untouched
   * pages of a batch never run cost no memory). */
  size_t param_bytes = total;
  for (int k = 0; k < nn; k++) {
    ae_op op = g->nodes[k].op;
    if (op == AE_OP_IDENTITY || op == AE_OP_FLATTEN) {
      /* Same values, same layout: share the input's buffer. */
      act_off[k] = act_off[g->nodes[k].inputs[0]];
      continue;
    }
    act_off[k] = total;
    total = align_up(total + sizeof(ae_real) * B * n->geom[k].elems);
  }
  size_t col_off = total;
  total = align_up(total + sizeof(ae_real) * max_col);
  size_t ytmp_off = total;
  total = align_up(total + sizeof(ae_real) * max_y);

  /* The backward's buffers live in a second arena, allocated by the first
   * ae_net_ntk (a net used only forward, e.g. for sign patterns over
   * thousands of samples, never pays for them). */
  size_t bt = 0;
  n->bwd_dcol = bt;
  bt = align_up(bt + sizeof(ae_real) * max_col);
  n->bwd_gd = bt;
  bt = align_up(bt + sizeof(double) * B * max_gd);
  n->bwd_gd2 = bt;
  bt = align_up(bt + sizeof(double) * B * max_gd2);
  n->bwd_bb = bt;
  bt = align_up(bt + sizeof(double) * 2 * B * B);

  /* Gradient slots: backward time of node k is nn-1-k.  A node's gradient
   * lives from its last (live) consumer's step to its own step. */
  if (g->output >= 0 && g->output < nn) live[g->output] = 1;
  for (int k = nn - 1; k >= 0; k--) {
    gstart[k] = -1;
    gend[k] = -1;
    if (!live[k] || !n->needs_grad[k]) continue;
    if (g->nodes[k].op == AE_OP_ZERO) continue;
    for (int i = 0; i < g->nodes[k].n_inputs; i++)
      live[g->nodes[k].inputs[i]] = 1;
  }
  for (int k = 0; k < nn; k++) {
    if (!live[k] || !n->needs_grad[k]) continue;
    int last = k == g->output ? k : -1;
    for (int c = k + 1; c < nn; c++) {
      const ae_node *cn = &g->nodes[c];
      if (!live[c] || !n->needs_grad[c] || cn->op == AE_OP_ZERO) continue;
      for (int i = 0; i < cn->n_inputs; i++)
        if (cn->inputs[i] == k && c > last) last = c;
    }
    if (last < 0) continue;
    gstart[k] = nn - 1 - last;
    gend[k] = nn - 1 - k;
    gbytes[k] = align_up(sizeof(ae_real) * B * n->geom[k].elems);
  }
  /* A node read once, by an add / identity / flatten, has exactly that
   * node's gradient: it shares the consumer's slot (no zeroing, no copy),
   * whose life then extends to this node's step. */
  for (int k = 0; k < nn; k++)
    n->grad_alias[k] = -1;
  for (int k = nn - 1; k >= 0; k--) {
    if (gstart[k] < 0 || k == g->output) continue;
    int uses = 0, consumer = -1;
    for (int c = k + 1; c < nn; c++)
      for (int i = 0; i < g->nodes[c].n_inputs; i++)
        if (g->nodes[c].inputs[i] == k) {
          uses++;
          consumer = c;
        }
    if (uses != 1 || (gstart[consumer] < 0 && n->grad_alias[consumer] < 0))
      continue;
    ae_op op = g->nodes[consumer].op;
    if (op != AE_OP_ADD && op != AE_OP_IDENTITY && op != AE_OP_FLATTEN)
      continue;
    int root = consumer;
    while (n->grad_alias[root] >= 0)
      root = n->grad_alias[root];
    n->grad_alias[k] = root;
    if (gend[root] < gend[k]) gend[root] = gend[k];
    gstart[k] = -1;
  }
  size_t grad_total = ae_net_plan_slots(gbytes, gstart, gend, nn, goff);
  if (grad_total == (size_t)-1) goto out;
  for (int k = 0; k < nn; k++)
    n->grad_off[k] = gstart[k] >= 0 ? bt + goff[k] : SIZE_MAX;
  for (int k = 0; k < nn; k++)
    if (n->grad_alias[k] >= 0) n->grad_off[k] = n->grad_off[n->grad_alias[k]];
  n->bwd_plan_bytes = bt + grad_total;

  n->arena = aligned_alloc(ALIGN, align_up(total > 0 ? total : ALIGN));
  if (!n->arena) goto out;
  n->arena_bytes = total;
  memset(n->arena, 0, param_bytes);
  unsigned char *a = n->arena;
  for (int k = 0; k < nn; k++) {
    const ae_node *nd = &g->nodes[k];
    if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV) {
      n->weight[k] = (ae_real *)(a + w_off[k]);
      if (nd->op == AE_OP_LINEAR && nd->bias)
        n->bias[k] = (ae_real *)(a + b_off[k]);
    }
    if (nd->op == AE_OP_BATCH_NORM) {
      n->gamma[k] = (ae_real *)(a + ga_off[k]);
      n->beta[k] = (ae_real *)(a + be_off[k]);
      n->bn_mean[k] = (double *)(a + mean_off[k]);
      n->bn_invstd[k] = (double *)(a + inv_off[k]);
    }
    n->act[k] = (ae_real *)(a + act_off[k]);
  }
  n->col = (ae_real *)(a + col_off);
  n->ytmp = (ae_real *)(a + ytmp_off);
  rc = AE_OK;
out:
  free(w_off);
  free(gbytes);
  free(goff);
  free(gstart);
  free(gend);
  free(live);
  return rc;
}

int ae_net_backward_buffers(ae_net *n) {
  if (n->bwd_arena) return AE_OK;
  size_t bytes = n->bwd_plan_bytes > 0 ? n->bwd_plan_bytes : ALIGN;
  n->bwd_arena = aligned_alloc(ALIGN, align_up(bytes));
  if (!n->bwd_arena) return AE_ENOMEM;
  n->bwd_bytes = bytes;
  unsigned char *a = n->bwd_arena;
  for (int k = 0; k < n->g.n_nodes; k++)
    n->grad[k] =
        n->grad_off[k] != SIZE_MAX ? (ae_real *)(a + n->grad_off[k]) : NULL;
  n->dcol = (ae_real *)(a + n->bwd_dcol);
  n->gd = (double *)(a + n->bwd_gd);
  n->gd2 = (double *)(a + n->bwd_gd2);
  n->bb = (double *)(a + n->bwd_bb);
  return AE_OK;
}

int ae_net_create(const ae_graph *g, int max_batch, ae_net **out) {
  *out = NULL;
  if (!g || g->n_nodes < 1 || max_batch < 1 || g->output < 0 ||
      g->output >= g->n_nodes || g->nodes[0].op != AE_OP_INPUT)
    return AE_EINVAL;
  ae_net *n = calloc(1, sizeof(*n));
  if (!n) return AE_ENOMEM;
  int rc = copy_graph(g, &n->g);
  if (rc) goto fail;
  n->max_batch = max_batch;
  int nn = g->n_nodes;
  rc = AE_ENOMEM;
  n->geom = calloc((size_t)nn, sizeof(ae_net_geom));
  n->needs_grad = calloc((size_t)nn, sizeof(int));
  n->last_use = calloc((size_t)nn, sizeof(int));
  n->weight = calloc((size_t)nn, sizeof(ae_real *));
  n->bias = calloc((size_t)nn, sizeof(ae_real *));
  n->gamma = calloc((size_t)nn, sizeof(ae_real *));
  n->beta = calloc((size_t)nn, sizeof(ae_real *));
  n->bn_mean = calloc((size_t)nn, sizeof(double *));
  n->bn_invstd = calloc((size_t)nn, sizeof(double *));
  n->act = calloc((size_t)nn, sizeof(ae_real *));
  n->grad = calloc((size_t)nn, sizeof(ae_real *));
  n->jet = calloc((size_t)nn, sizeof(void *));
  n->grad_off = calloc((size_t)nn, sizeof(size_t));
  n->grad_alias = calloc((size_t)nn, sizeof(int));
  if (!n->geom || !n->needs_grad || !n->last_use || !n->weight || !n->bias ||
      !n->gamma || !n->beta || !n->bn_mean || !n->bn_invstd || !n->act ||
      !n->grad || !n->jet || !n->grad_off || !n->grad_alias)
    goto fail;
  for (int k = 0; k < nn; k++) {
    rc = node_geometry(&n->g, k, &n->geom[k]);
    if (rc) goto fail;
    if (k > 0 && n->g.nodes[k].op == AE_OP_INPUT) {
      rc = AE_EINVAL;
      goto fail;
    }
  }
  const ae_net_geom *og = &n->geom[n->g.output];
  if (n->g.nodes[n->g.output].rank != 1 ||
      (n->g.num_classes > 0 && og->elems != (size_t)n->g.num_classes)) {
    rc = AE_EINVAL;
    goto fail;
  }
  for (int k = 0; k < nn; k++) {
    const ae_node *nd = &n->g.nodes[k];
    int trainable = nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV ||
                    nd->op == AE_OP_BATCH_NORM;
    n->needs_grad[k] = trainable;
    n->last_use[k] = k == n->g.output ? nn : k;
    for (int i = 0; i < nd->n_inputs; i++) {
      if (nd->op != AE_OP_ZERO && n->needs_grad[nd->inputs[i]])
        n->needs_grad[k] = 1;
      if (n->last_use[nd->inputs[i]] < k) n->last_use[nd->inputs[i]] = k;
    }
  }
  rc = plan_arena(n);
  if (rc) goto fail;
  *out = n;
  return AE_OK;
fail:
  ae_net_destroy(n);
  return rc;
}

void ae_net_destroy(ae_net *n) {
  if (!n) return;
  free_graph_copy(&n->g);
  free(n->geom);
  free(n->needs_grad);
  free(n->last_use);
  free(n->weight);
  free(n->bias);
  free(n->gamma);
  free(n->beta);
  free(n->bn_mean);
  free(n->bn_invstd);
  free(n->act);
  free(n->grad);
  free(n->jet);
  free(n->grad_off);
  free(n->grad_alias);
#ifndef AE_NET_DOUBLE
  ae_net64_destroy(n->dbl);
#endif
  free(n->arena);
  free(n->bwd_arena);
  free(n->jet_arena);
  free(n);
}

void ae_net_init_weights(ae_net *n, uint64_t seed, uint32_t stream) {
  for (int k = 0; k < n->g.n_nodes; k++) {
    const ae_node *nd = &n->g.nodes[k];
    const ae_net_geom *ge = &n->geom[k];
    if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV) {
      double gain = nd->init_gain > 0.0 ? nd->init_gain : 1.0;
      double sd = sqrt(gain / (double)ge->fan_in);
      ae_real *w = n->weight[k];
      size_t e = 0;
      double z[AE_NET_NORMAL_LANES];
      for (; e + AE_NET_NORMAL_LANES <= ge->n_weight;
           e += AE_NET_NORMAL_LANES) {
        ae_net_philox_normals(seed, (uint32_t)k, stream, e, z);
        for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
          w[e + (size_t)l] = (ae_real)(sd * z[l]);
      }
      for (; e < ge->n_weight; e++)
        w[e] = (ae_real)(sd * ae_philox_normal(seed, (uint32_t)k, stream, e));
      if (n->bias[k]) memset(n->bias[k], 0, sizeof(ae_real) * (size_t)nd->out);
    } else if (nd->op == AE_OP_BATCH_NORM) {
      for (int c = 0; c < ge->channels; c++) {
        n->gamma[k][c] = 1.0;
        n->beta[k][c] = 0.0;
      }
    }
  }
}

static void forward_bn(ae_net *n, int k, int batch) {
  const ae_net_geom *ge = &n->geom[k];
  const ae_real *x = n->act[n->g.nodes[k].inputs[0]];
  ae_real *y = n->act[k];
  size_t C = (size_t)ge->channels, P = ge->plane;
  double cnt = (double)batch * (double)P;
  for (size_t c = 0; c < C; c++) {
    /* One pass in float64, shifted by the channel's first value so that
     * a large mean does not cancel the variance. */
    double shift0 = x[c * P], sum = 0.0, ss = 0.0;
    for (int b = 0; b < batch; b++) {
      const ae_real *p = x + (size_t)b * ge->elems + c * P;
      for (size_t i = 0; i < P; i++) {
        double d = (double)p[i] - shift0;
        sum += d;
        ss += d * d;
      }
    }
    double dmean = sum / cnt, mean = shift0 + dmean;
    double var = ss / cnt - dmean * dmean;
    if (var < 0.0) var = 0.0;
    double inv = 1.0 / sqrt(var + BN_EPS);
    n->bn_mean[k][c] = mean;
    n->bn_invstd[k][c] = inv;
    /* One multiply-add per element; the shift is formed in float64.
     * (Centring in float32 first, as (x - float(mean)) * scale, moved the
     * ResNet cell's lambda_min 1.5e-4 away from the float64 twin; this
     * form keeps it within 1e-6.) */
    ae_real scale = (ae_real)(inv * n->gamma[k][c]);
    ae_real shift = (ae_real)(n->beta[k][c] - mean * inv * n->gamma[k][c]);
    for (int b = 0; b < batch; b++) {
      const ae_real *p = x + (size_t)b * ge->elems + c * P;
      ae_real *q = y + (size_t)b * ge->elems + c * P;
      for (size_t i = 0; i < P; i++)
        q[i] = p[i] * scale + shift;
    }
  }
}

static void forward_act(const ae_node *nd, const ae_real *x, ae_real *y,
                        size_t count) {
  switch (nd->act.fn) {
  case AE_ACT_RELU:
    for (size_t i = 0; i < count; i++)
      y[i] = x[i] > 0.0 ? x[i] : 0.0;
    return;
  case AE_ACT_LEAKY_RELU: {
    ae_real s = (ae_real)nd->act.slope;
    for (size_t i = 0; i < count; i++)
      y[i] = x[i] > 0.0 ? x[i] : s * x[i];
    return;
  }
  case AE_ACT_IDENTITY:
    memcpy(y, x, sizeof(ae_real) * count);
    return;
  default:
    for (size_t i = 0; i < count; i++)
      y[i] = (ae_real)ae_act_value(nd->act.fn, nd->act.slope, (double)x[i]);
    return;
  }
}

static void forward_conv(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g.nodes[k];
  const ae_net_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  ae_real *y = n->act[k];
  int direct = nd->kernel == 1 && nd->stride == 1 && nd->padding == 0;
  int K = (int)ge->col_rows, HW = (int)ge->out_hw, cout = nd->out;
  if (direct) {
    for (int b = 0; b < batch; b++)
      AE_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, HW, K, 1.0,
              n->weight[k], K, x + (size_t)b * ge->in_elems, HW, 0.0,
              y + (size_t)b * ge->elems, HW);
    return;
  }
  for (int b0 = 0; b0 < batch; b0 += ge->chunk) {
    int m = batch - b0 < ge->chunk ? batch - b0 : ge->chunk;
    size_t ld = (size_t)m * (size_t)HW;
    for (int j = 0; j < m; j++)
      ae_net_im2col_t(x + (size_t)(b0 + j) * ge->in_elems, ge->in_c, ge->in_h,
                      ge->in_w, nd->kernel, nd->stride, nd->padding,
                      nd->shape[1], nd->shape[2],
                      n->col + (size_t)j * (size_t)HW, ld);
    ae_real *out = m == 1 ? y + (size_t)b0 * ge->elems : n->ytmp;
    AE_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)ld, K, 1.0,
            n->weight[k], K, n->col, (int)ld, 0.0, out, (int)ld);
    if (m == 1) continue;
    for (int j = 0; j < m; j++)
      for (int c = 0; c < cout; c++)
        memcpy(y + (size_t)(b0 + j) * ge->elems + (size_t)c * (size_t)HW,
               out + (size_t)c * ld + (size_t)j * (size_t)HW,
               sizeof(ae_real) * (size_t)HW);
  }
}

int ae_net_forward_buffers(ae_net *n, const float *x, int batch) {
  if (!x || batch < 1 || batch > n->max_batch) return AE_EINVAL;
  n->batch = batch;
  size_t B = (size_t)batch;
  double t0 = ae_net_clock(n);
  for (int k = 0; k < n->g.n_nodes; k++) {
    const ae_node *nd = &n->g.nodes[k];
    const ae_net_geom *ge = &n->geom[k];
    ae_real *y = n->act[k];
    size_t count = B * ge->elems;
    const ae_real *in0 = nd->n_inputs > 0 ? n->act[nd->inputs[0]] : NULL;
    switch (nd->op) {
    case AE_OP_INPUT:
      for (size_t e = 0; e < count; e++)
        y[e] = (ae_real)x[e];
      break;
    case AE_OP_LINEAR: {
      int in = (int)ge->in_elems;
      AE_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, batch, nd->out, in, 1.0,
              in0, in, n->weight[k], in, 0.0, y, nd->out);
      if (n->bias[k])
        for (size_t b = 0; b < B; b++)
          for (int o = 0; o < nd->out; o++)
            y[b * (size_t)nd->out + (size_t)o] += n->bias[k][o];
      break;
    }
    case AE_OP_CONV:
      forward_conv(n, k, batch);
      break;
    case AE_OP_BATCH_NORM:
      forward_bn(n, k, batch);
      break;
    case AE_OP_ACT:
      forward_act(nd, in0, y, count);
      break;
    case AE_OP_AVG_POOL: {
      size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
      for (size_t p = 0; p < B * (size_t)ge->in_c; p++)
        ae_net_avg_pool_plane_t(in0 + p * hw_in, ge->in_h, ge->in_w, nd->kernel,
                                nd->stride, nd->padding, nd->count_include_pad,
                                nd->shape[1], nd->shape[2], y + p * ge->out_hw);
      break;
    }
    case AE_OP_GLOBAL_AVG_POOL: {
      size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
      for (size_t p = 0; p < B * (size_t)ge->in_c; p++) {
        double s = 0.0;
        for (size_t i = 0; i < hw_in; i++)
          s += in0[p * hw_in + i];
        y[p] = (ae_real)(s / (double)hw_in);
      }
      break;
    }
    case AE_OP_ADD:
      memcpy(y, in0, sizeof(ae_real) * count);
      for (int i = 1; i < nd->n_inputs; i++) {
        const ae_real *xi = n->act[nd->inputs[i]];
        for (size_t e = 0; e < count; e++)
          y[e] += xi[e];
      }
      break;
    case AE_OP_IDENTITY:
    case AE_OP_FLATTEN:
      if (y != in0) memcpy(y, in0, sizeof(ae_real) * count);
      break;
    case AE_OP_ZERO:
      memset(y, 0, sizeof(ae_real) * count);
      break;
    }
    ae_net_tick(
        n, nd->op == AE_OP_CONV ? AE_NET_PROF_FWD_CONV : AE_NET_PROF_FWD_OTHER,
        &t0);
  }
  return AE_OK;
}

#ifndef AE_NET_DOUBLE
/* Copies every parameter into the float64 twin. */
static int sync_double(ae_net *n) {
  static const ae_net_param_kind kinds[] = {AE_NET_WEIGHT, AE_NET_BIAS,
                                            AE_NET_GAMMA, AE_NET_BETA};
  for (int k = 0; k < n->g.n_nodes; k++)
    for (int q = 0; q < 4; q++) {
      size_t count;
      const float *t = param_tensor(n, k, kinds[q], &count);
      if (!t) continue;
      int rc = ae_net64_load_params(n->dbl, k, kinds[q], t, count);
      if (rc) return rc;
    }
  return AE_OK;
}

int ae_net_set_double(ae_net *n, int on) {
  if (on && !n->dbl) {
    int rc = ae_net64_create(&n->g, n->max_batch, &n->dbl);
    if (rc) return rc;
  }
  n->use_double = on;
  return AE_OK;
}

int ae_net_double_twin(ae_net *n, ae_net64 **twin) {
  *twin = NULL;
  if (!n->use_double) return AE_OK;
  int rc = sync_double(n);
  if (rc) return rc;
  *twin = n->dbl;
  return AE_OK;
}
#endif

int ae_net_forward(ae_net *n, const float *x, int batch, float *logits) {
#ifndef AE_NET_DOUBLE
  ae_net64 *twin;
  int trc = ae_net_double_twin(n, &twin);
  if (trc) return trc;
  if (twin) return ae_net64_forward(twin, x, batch, logits);
#endif
  int rc = ae_net_forward_buffers(n, x, batch);
  if (rc) return rc;
  if (logits) {
    const ae_real *o = n->act[n->g.output];
    size_t count = (size_t)batch * n->geom[n->g.output].elems;
    for (size_t e = 0; e < count; e++)
      logits[e] = (float)o[e];
  }
  return AE_OK;
}

#ifndef AE_NET_DOUBLE
const float *ae_net_activation(const ae_net *n, int node) {
  if (node < 0 || node >= n->g.n_nodes) return NULL;
  return n->act[node];
}
#endif

size_t ae_net_param_count(const ae_net *n) {
  size_t total = 0;
  for (int k = 0; k < n->g.n_nodes; k++) {
    const ae_node *nd = &n->g.nodes[k];
    if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV)
      total += n->geom[k].n_weight +
               (nd->op == AE_OP_LINEAR && nd->bias ? (size_t)nd->out : 0);
    else if (nd->op == AE_OP_BATCH_NORM)
      total += 2 * (size_t)n->geom[k].channels;
  }
  return total;
}

size_t ae_net_memory_bytes(const ae_net *n) {
  size_t bytes = n->arena_bytes + n->bwd_bytes + n->jet_bytes;
#ifndef AE_NET_DOUBLE
  if (n->dbl) bytes += ae_net64_memory_bytes(n->dbl);
#endif
  return bytes;
}

/* A node's parameter tensor in the buffer type, and its length. */
static ae_real *param_tensor(ae_net *n, int node, ae_net_param_kind kind,
                             size_t *count) {
  if (count) *count = 0;
  if (node < 0 || node >= n->g.n_nodes) return NULL;
  const ae_node *nd = &n->g.nodes[node];
  const ae_net_geom *ge = &n->geom[node];
  ae_real *p = NULL;
  size_t c = 0;
  switch (kind) {
  case AE_NET_WEIGHT:
    p = n->weight[node];
    c = ge->n_weight;
    break;
  case AE_NET_BIAS:
    p = n->bias[node];
    c = p ? (size_t)nd->out : 0;
    break;
  case AE_NET_GAMMA:
    p = n->gamma[node];
    c = p ? (size_t)ge->channels : 0;
    break;
  case AE_NET_BETA:
    p = n->beta[node];
    c = p ? (size_t)ge->channels : 0;
    break;
  }
  if (!p) c = 0;
  if (count) *count = c;
  return p;
}

int ae_net_load_params(ae_net *n, int node, ae_net_param_kind kind,
                       const float *src, size_t count) {
  size_t have;
  ae_real *t = param_tensor(n, node, kind, &have);
  if (have != count || (count > 0 && !t)) return AE_EINVAL;
  for (size_t e = 0; e < count; e++)
    t[e] = (ae_real)src[e];
  return AE_OK;
}

#ifndef AE_NET_DOUBLE
float *ae_net_param(ae_net *n, int node, ae_net_param_kind kind,
                    size_t *count) {
  return param_tensor(n, node, kind, count);
}
#endif

int ae_net_bn_stats(const ae_net *n, int node, const double **mean,
                    const double **invstd, int *channels) {
  if (node < 0 || node >= n->g.n_nodes ||
      n->g.nodes[node].op != AE_OP_BATCH_NORM)
    return AE_EINVAL;
  if (mean) *mean = n->bn_mean[node];
  if (invstd) *invstd = n->bn_invstd[node];
  if (channels) *channels = n->geom[node].channels;
  return AE_OK;
}

const ae_graph *ae_net_graph(const ae_net *n) {
  return &n->g;
}

double ae_net_clock(const ae_net *n) {
  if (!n->profiling) return 0.0;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ae_net_tick(ae_net *n, int phase, double *t0) {
  if (!n->profiling) return;
  double now = ae_net_clock(n);
  n->prof[phase] += now - *t0;
  *t0 = now;
}

void ae_net_set_profiling(ae_net *n, int on) {
  n->profiling = on;
  if (on) memset(n->prof, 0, sizeof(n->prof));
}

const double *ae_net_profile(const ae_net *n) {
  return n->prof;
}
