/* graph_build.c: builds small lowered graphs by hand (see graph_build.h).
 *
 * Plain data owned by the caller; no state of its own. */
#include "gpu/host/graph_build.h"

#include "api/status.h"
#include <stdlib.h>
#include <string.h>

void ae_gb_begin(ae_graph *g) {
  memset(g, 0, sizeof(*g));
  g->output = -1;
}

/* Appends a node with the given inputs; -1 when poisoned or out of
 * memory. */
static int push(ae_graph *g, ae_op op, const int *inputs, int n) {
  if (g->n_nodes < 0) return -1;
  for (int i = 0; i < n; i++)
    if (inputs[i] < 0 || inputs[i] >= g->n_nodes) goto poison;
  ae_node *nodes =
      realloc(g->nodes, sizeof(ae_node) * (size_t)(g->n_nodes + 1));
  if (!nodes) goto poison;
  g->nodes = nodes;
  ae_node *nd = &nodes[g->n_nodes];
  memset(nd, 0, sizeof(*nd));
  nd->op = op;
  nd->src_index = -1;
  nd->init_gain = 1.0;
  if (n > 0) {
    nd->inputs = malloc(sizeof(int) * (size_t)n);
    if (!nd->inputs) goto poison;
    memcpy(nd->inputs, inputs, sizeof(int) * (size_t)n);
    nd->n_inputs = n;
    nd->rank = nodes[inputs[0]].rank;
    memcpy(nd->shape, nodes[inputs[0]].shape, sizeof(nd->shape));
  }
  return g->n_nodes++;
poison:
  ae_gb_free(g);
  g->n_nodes = -1;
  return -1;
}

static int fail(ae_graph *g) {
  ae_gb_free(g);
  g->n_nodes = -1;
  return -1;
}

int ae_gb_input(ae_graph *g, int c, int h, int w) {
  int k = push(g, AE_OP_INPUT, NULL, 0);
  if (k < 0) return k;
  ae_node *nd = &g->nodes[k];
  nd->rank = h > 0 ? 3 : 1;
  nd->shape[0] = c;
  nd->shape[1] = h > 0 ? h : 0;
  nd->shape[2] = h > 0 ? w : 0;
  return k;
}

static size_t elems(const ae_node *nd) {
  return nd->rank == 3 ? (size_t)nd->shape[0] * (size_t)nd->shape[1] *
                             (size_t)nd->shape[2]
                       : (size_t)nd->shape[0];
}

int ae_gb_linear(ae_graph *g, int in, int out, int bias, double gain) {
  int k = push(g, AE_OP_LINEAR, &in, 1);
  if (k < 0) return k;
  ae_node *nd = &g->nodes[k];
  nd->rank = 1;
  nd->shape[0] = out;
  nd->shape[1] = nd->shape[2] = 0;
  nd->out = out;
  nd->bias = bias;
  nd->init_gain = gain;
  return k;
}

static int window(ae_graph *g, int k, int kernel, int stride, int padding) {
  ae_node *nd = &g->nodes[k];
  if (nd->rank != 3) return fail(g);
  nd->kernel = kernel;
  nd->stride = stride;
  nd->padding = padding;
  nd->shape[1] = (nd->shape[1] + 2 * padding - kernel) / stride + 1;
  nd->shape[2] = (nd->shape[2] + 2 * padding - kernel) / stride + 1;
  if (nd->shape[1] < 1 || nd->shape[2] < 1) return fail(g);
  return k;
}

int ae_gb_conv(ae_graph *g, int in, int out, int kernel, int stride,
               int padding, double gain) {
  int k = push(g, AE_OP_CONV, &in, 1);
  if (k < 0) return k;
  g->nodes[k].out = out;
  g->nodes[k].shape[0] = out;
  g->nodes[k].init_gain = gain;
  return window(g, k, kernel, stride, padding);
}

int ae_gb_bn(ae_graph *g, int in) {
  return push(g, AE_OP_BATCH_NORM, &in, 1);
}

int ae_gb_act(ae_graph *g, int in, ae_act_fn fn, double slope) {
  int k = push(g, AE_OP_ACT, &in, 1);
  if (k < 0) return k;
  g->nodes[k].act.fn = fn;
  g->nodes[k].act.slope = slope;
  return k;
}

int ae_gb_avg_pool(ae_graph *g, int in, int kernel, int stride, int padding,
                   int count_include_pad) {
  int k = push(g, AE_OP_AVG_POOL, &in, 1);
  if (k < 0) return k;
  g->nodes[k].count_include_pad = count_include_pad;
  return window(g, k, kernel, stride, padding);
}

int ae_gb_gap(ae_graph *g, int in) {
  int k = push(g, AE_OP_GLOBAL_AVG_POOL, &in, 1);
  if (k < 0) return k;
  if (g->nodes[k].rank != 3) return fail(g);
  g->nodes[k].rank = 1;
  g->nodes[k].shape[1] = g->nodes[k].shape[2] = 0;
  return k;
}

int ae_gb_add(ae_graph *g, const int *inputs, int n) {
  if (n < 1) return fail(g);
  int k = push(g, AE_OP_ADD, inputs, n);
  if (k < 0) return k;
  for (int i = 1; i < n; i++)
    if (elems(&g->nodes[inputs[i]]) != elems(&g->nodes[k])) return fail(g);
  return k;
}

int ae_gb_unary(ae_graph *g, ae_op op, int in) {
  if (op != AE_OP_IDENTITY && op != AE_OP_ZERO && op != AE_OP_FLATTEN)
    return fail(g);
  int k = push(g, op, &in, 1);
  if (k < 0) return k;
  if (op == AE_OP_FLATTEN) {
    ae_node *nd = &g->nodes[k];
    nd->shape[0] = (int)elems(nd);
    nd->shape[1] = nd->shape[2] = 0;
    nd->rank = 1;
  }
  return k;
}

/* Output extent of a dilated window (PyTorch's; ceil_mode: the last
 * window starts inside the input or its left padding). */
static int dilated_extent(int in, int kernel, int stride, int padding,
                          int dilation, int ceil_mode) {
  int o = in + 2 * padding - (dilation * (kernel - 1) + 1);
  if (o < 0) return 0;
  int out = (ceil_mode ? (o + stride - 1) / stride : o / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + padding) out--;
  return out;
}

static int dilated_window(ae_graph *g, int k, int kernel, int stride,
                          int padding, int dilation, int ceil_mode) {
  ae_node *nd = &g->nodes[k];
  if (nd->rank != 3) return fail(g);
  nd->kernel = kernel;
  nd->stride = stride;
  nd->padding = padding;
  nd->dilation = dilation;
  nd->ceil_mode = ceil_mode;
  nd->shape[1] = dilated_extent(nd->shape[1], kernel, stride, padding, dilation,
                                ceil_mode);
  nd->shape[2] = dilated_extent(nd->shape[2], kernel, stride, padding, dilation,
                                ceil_mode);
  if (nd->shape[1] < 1 || nd->shape[2] < 1) return fail(g);
  return k;
}

int ae_gb_conv_ex(ae_graph *g, int in, int out, int kernel, int stride,
                  int padding, int groups, int dilation, double gain) {
  int k = push(g, AE_OP_CONV, &in, 1);
  if (k < 0) return k;
  ae_node *nd = &g->nodes[k];
  if (groups < 1 || nd->shape[0] % groups || out % groups) return fail(g);
  nd->out = out;
  nd->shape[0] = out;
  nd->groups = groups;
  nd->init_gain = gain;
  return dilated_window(g, k, kernel, stride, padding, dilation, 0);
}

int ae_gb_max_pool(ae_graph *g, int in, int kernel, int stride, int padding,
                   int dilation, int ceil_mode) {
  int k = push(g, (ae_op)AE_OP_MAX_POOL, &in, 1);
  if (k < 0) return k;
  return dilated_window(g, k, kernel, stride, padding, dilation, ceil_mode);
}

int ae_gb_pad(ae_graph *g, int in, const int pads[4]) {
  int k = push(g, (ae_op)AE_OP_PAD, &in, 1);
  if (k < 0) return k;
  ae_node *nd = &g->nodes[k];
  if (nd->rank != 3) return fail(g);
  memcpy(nd->pads, pads, sizeof nd->pads);
  nd->shape[1] += pads[0] + pads[2];
  nd->shape[2] += pads[1] + pads[3];
  return k;
}

int ae_gb_concat(ae_graph *g, const int *inputs, int n) {
  if (n < 1) return fail(g);
  int k = push(g, (ae_op)AE_OP_CONCAT, inputs, n);
  if (k < 0) return k;
  ae_node *nd = &g->nodes[k];
  for (int i = 1; i < n; i++) {
    const ae_node *a = &g->nodes[inputs[i]];
    if (a->rank != nd->rank || (a->rank == 3 && (a->shape[1] != nd->shape[1] ||
                                                 a->shape[2] != nd->shape[2])))
      return fail(g);
    nd->shape[0] += a->shape[0];
  }
  return k;
}

int ae_gb_mul(ae_graph *g, const int *inputs, int n) {
  if (n < 1) return fail(g);
  int k = push(g, (ae_op)AE_OP_MUL, inputs, n);
  if (k < 0) return k;
  ae_node *nd = &g->nodes[k];
  int dims = nd->rank == 3 ? 3 : 1;
  for (int i = 1; i < n; i++) {
    const ae_node *a = &g->nodes[inputs[i]];
    if (a->rank != nd->rank) return fail(g);
    for (int d = 0; d < dims; d++) {
      if (a->shape[d] == nd->shape[d] || a->shape[d] == 1) continue;
      if (nd->shape[d] != 1) return fail(g);
      nd->shape[d] = a->shape[d];
    }
  }
  return k;
}

int ae_gb_finish(ae_graph *g, int output) {
  if (g->n_nodes < 1 || output < 0 || output >= g->n_nodes ||
      g->nodes[output].rank != 1)
    return AE_EINVAL;
  g->output = output;
  g->num_classes = g->nodes[output].shape[0];
  return AE_OK;
}

void ae_gb_free(ae_graph *g) {
  if (g->nodes && g->n_nodes > 0)
    for (int k = 0; k < g->n_nodes; k++)
      free(g->nodes[k].inputs);
  free(g->nodes);
  g->nodes = NULL;
  g->n_nodes = 0;
}
