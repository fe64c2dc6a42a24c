/* reference.c: plain float64 forward of a lowered graph, the reference the
 * fast host executor is tested against (see reference.h).
 *
 * Written independently of net_kernels.c: direct loops for convolution
 * and pooling, math.h activations.  Everything it allocates is freed
 * before it returns; the ae_ref_params belongs to the caller. */
#include "gpu/host/reference.h"

#include "api/status.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t elems_of(const ae_node *nd) {
  return nd->rank == 3 ? (size_t)nd->shape[0] * (size_t)nd->shape[1] *
                             (size_t)nd->shape[2]
                       : (size_t)nd->shape[0];
}

static double *dup_tensor(const float *src, size_t count, int *fail) {
  if (!src || count == 0) return NULL;
  double *d = malloc(sizeof(double) * count);
  if (!d) {
    *fail = 1;
    return NULL;
  }
  for (size_t i = 0; i < count; i++)
    d[i] = src[i];
  return d;
}

int ae_ref_params_from_net(ae_net *n, ae_ref_params *p) {
  const ae_graph *g = ae_net_graph(n);
  memset(p, 0, sizeof(*p));
  p->n_nodes = g->n_nodes;
  size_t nn = (size_t)g->n_nodes;
  p->weight = calloc(nn, sizeof(double *));
  p->bias = calloc(nn, sizeof(double *));
  p->gamma = calloc(nn, sizeof(double *));
  p->beta = calloc(nn, sizeof(double *));
  p->bn_mean = calloc(nn, sizeof(double *));
  p->bn_invstd = calloc(nn, sizeof(double *));
  int fail = !p->weight || !p->bias || !p->gamma || !p->beta || !p->bn_mean ||
             !p->bn_invstd;
  for (int k = 0; k < g->n_nodes && !fail; k++) {
    size_t c;
    float *t = ae_net_param(n, k, AE_NET_WEIGHT, &c);
    p->weight[k] = dup_tensor(t, c, &fail);
    t = ae_net_param(n, k, AE_NET_BIAS, &c);
    p->bias[k] = dup_tensor(t, c, &fail);
    t = ae_net_param(n, k, AE_NET_GAMMA, &c);
    p->gamma[k] = dup_tensor(t, c, &fail);
    t = ae_net_param(n, k, AE_NET_BETA, &c);
    p->beta[k] = dup_tensor(t, c, &fail);
    if (g->nodes[k].op == AE_OP_BATCH_NORM) {
      p->bn_mean[k] = calloc(c, sizeof(double));
      p->bn_invstd[k] = calloc(c, sizeof(double));
      if (!p->bn_mean[k] || !p->bn_invstd[k]) fail = 1;
    }
  }
  if (fail) {
    ae_ref_params_free(p);
    return AE_ENOMEM;
  }
  return AE_OK;
}

void ae_ref_params_free(ae_ref_params *p) {
  double **lists[] = {p->weight, p->bias,    p->gamma,
                      p->beta,   p->bn_mean, p->bn_invstd};
  for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
    if (!lists[l]) continue;
    for (int k = 0; k < p->n_nodes; k++)
      free(lists[l][k]);
    free(lists[l]);
  }
  memset(p, 0, sizeof(*p));
}

static double ref_act(ae_activation a, double z) {
  switch ((int)a.fn) {
  case AE_ACT_RELU6:
    return fmin(fmax(z, 0.0), 6.0);
  case AE_ACT_HARDSWISH:
    return z * fmin(fmax(z + 3.0, 0.0), 6.0) / 6.0;
  case AE_ACT_HARDSIGMOID:
    return fmin(fmax(z + 3.0, 0.0), 6.0) / 6.0;
  case AE_ACT_RELU:
    return fmax(z, 0.0);
  case AE_ACT_LEAKY_RELU:
    return z >= 0.0 ? z : a.slope * z;
  case AE_ACT_TANH:
    return tanh(z);
  case AE_ACT_SIGMOID:
    return 1.0 / (1.0 + exp(-z));
  case AE_ACT_SWISH:
    return z / (1.0 + exp(-z));
  case AE_ACT_GELU:
    return z * 0.5 * erfc(-z / sqrt(2.0));
  case AE_ACT_ERF:
    return erf(z);
  case AE_ACT_IDENTITY:
    return z;
  }
  return NAN;
}

/* A size-1 dimension of an input broadcasts (mul). */
static int bcast(int extent, int i) {
  return extent == 1 ? 0 : i;
}

/* The ops of api/arch.h's AE_OP_MAX_POOL group for one sample. */
static void ref_extended_node(const ae_graph *g, const ae_node *nd, double **in,
                              double *y) {
  const ae_node *i0 = &g->nodes[nd->inputs[0]];
  int C = nd->shape[0], H = nd->rank == 3 ? nd->shape[1] : 1,
      W = nd->rank == 3 ? nd->shape[2] : 1;
  switch ((int)nd->op) {
  case AE_OP_MAX_POOL: {
    int h = i0->shape[1], w = i0->shape[2], kk = nd->kernel;
    int dil = nd->dilation > 1 ? nd->dilation : 1;
    for (int c = 0; c < C; c++)
      for (int oy = 0; oy < H; oy++)
        for (int ox = 0; ox < W; ox++) {
          double m = -INFINITY;
          for (int ky = 0; ky < kk; ky++)
            for (int kx = 0; kx < kk; kx++) {
              int iy = oy * nd->stride + ky * dil - nd->padding;
              int ix = ox * nd->stride + kx * dil - nd->padding;
              if (iy < 0 || ix < 0 || iy >= h || ix >= w) continue;
              m = fmax(m, in[0][(c * h + iy) * w + ix]);
            }
          y[(c * H + oy) * W + ox] = m;
        }
    return;
  }
  case AE_OP_PAD: {
    int h = i0->shape[1], w = i0->shape[2];
    for (int c = 0; c < C; c++)
      for (int oy = 0; oy < H; oy++)
        for (int ox = 0; ox < W; ox++) {
          int iy = oy - nd->pads[0], ix = ox - nd->pads[1];
          y[(c * H + oy) * W + ox] = iy < 0 || ix < 0 || iy >= h || ix >= w
                                         ? 0.0
                                         : in[0][(c * h + iy) * w + ix];
        }
    return;
  }
  case AE_OP_CONCAT: {
    size_t at = 0;
    for (int i = 0; i < nd->n_inputs; i++) {
      size_t e = elems_of(&g->nodes[nd->inputs[i]]);
      for (size_t j = 0; j < e; j++)
        y[at + j] = in[i][j];
      at += e;
    }
    return;
  }
  case AE_OP_MUL:
    for (int c = 0; c < C; c++)
      for (int oy = 0; oy < H; oy++)
        for (int ox = 0; ox < W; ox++) {
          double v = 1.0;
          for (int i = 0; i < nd->n_inputs; i++) {
            const ae_node *a = &g->nodes[nd->inputs[i]];
            int ah = a->rank == 3 ? a->shape[1] : 1;
            int aw = a->rank == 3 ? a->shape[2] : 1;
            v *= in[i][(bcast(a->shape[0], c) * ah + bcast(ah, oy)) * aw +
                       bcast(aw, ox)];
          }
          y[(c * H + oy) * W + ox] = v;
        }
    return;
  }
}

/* One node of one sample; x[i] is input i's sample, y the output. */
static void ref_node(const ae_graph *g, const ae_ref_params *p, int k,
                     double **in, double *y) {
  const ae_node *nd = &g->nodes[k];
  const ae_node *i0 = nd->n_inputs > 0 ? &g->nodes[nd->inputs[0]] : NULL;
  size_t count = elems_of(nd);
  if ((int)nd->op > AE_OP_FLATTEN) {
    ref_extended_node(g, nd, in, y);
    return;
  }
  switch (nd->op) {
  case AE_OP_INPUT:
    break;
  case AE_OP_LINEAR: {
    size_t fin = elems_of(i0);
    for (int o = 0; o < nd->out; o++) {
      double s = p->bias[k] ? p->bias[k][o] : 0.0;
      for (size_t i = 0; i < fin; i++)
        s += p->weight[k][(size_t)o * fin + i] * in[0][i];
      y[o] = s;
    }
    break;
  }
  case AE_OP_CONV: {
    /* Groups: output channel co reads input channels of its group only;
     * the weight is [out][in / groups][k][k]. */
    int h = i0->shape[1], w = i0->shape[2], kk = nd->kernel;
    int groups = nd->groups > 1 ? nd->groups : 1;
    int dil = nd->dilation > 1 ? nd->dilation : 1;
    int ci = i0->shape[0] / groups, co_per = nd->out / groups;
    for (int co = 0; co < nd->out; co++)
      for (int oy = 0; oy < nd->shape[1]; oy++)
        for (int ox = 0; ox < nd->shape[2]; ox++) {
          double s = 0.0;
          int c0 = co / co_per * ci;
          for (int c = 0; c < ci; c++)
            for (int ky = 0; ky < kk; ky++)
              for (int kx = 0; kx < kk; kx++) {
                int iy = oy * nd->stride + ky * dil - nd->padding;
                int ix = ox * nd->stride + kx * dil - nd->padding;
                if (iy < 0 || ix < 0 || iy >= h || ix >= w) continue;
                s += p->weight[k][((co * ci + c) * kk + ky) * kk + kx] *
                     in[0][((c0 + c) * h + iy) * w + ix];
              }
          y[(co * nd->shape[1] + oy) * nd->shape[2] + ox] = s;
        }
    break;
  }
  case AE_OP_BATCH_NORM: {
    size_t per = count / (size_t)nd->shape[0];
    for (size_t e = 0; e < count; e++) {
      size_t c = e / per;
      y[e] =
          (in[0][e] - p->bn_mean[k][c]) * p->bn_invstd[k][c] * p->gamma[k][c] +
          p->beta[k][c];
    }
    break;
  }
  case AE_OP_ACT:
    for (size_t e = 0; e < count; e++)
      y[e] = ref_act(nd->act, in[0][e]);
    break;
  case AE_OP_AVG_POOL: {
    int h = i0->shape[1], w = i0->shape[2], kk = nd->kernel;
    for (int c = 0; c < nd->shape[0]; c++)
      for (int oy = 0; oy < nd->shape[1]; oy++)
        for (int ox = 0; ox < nd->shape[2]; ox++) {
          double s = 0.0;
          int taps = 0;
          for (int ky = 0; ky < kk; ky++)
            for (int kx = 0; kx < kk; kx++) {
              int iy = oy * nd->stride + ky - nd->padding;
              int ix = ox * nd->stride + kx - nd->padding;
              if (iy < 0 || ix < 0 || iy >= h || ix >= w) continue;
              s += in[0][(c * h + iy) * w + ix];
              taps++;
            }
          double div = nd->count_include_pad ? (double)(kk * kk) : (double)taps;
          y[(c * nd->shape[1] + oy) * nd->shape[2] + ox] = s / div;
        }
    break;
  }
  case AE_OP_GLOBAL_AVG_POOL: {
    int hw = i0->shape[1] * i0->shape[2];
    for (int c = 0; c < nd->shape[0]; c++) {
      double s = 0.0;
      for (int i = 0; i < hw; i++)
        s += in[0][c * hw + i];
      y[c] = s / hw;
    }
    break;
  }
  case AE_OP_ADD:
    for (size_t e = 0; e < count; e++) {
      double s = 0.0;
      for (int i = 0; i < nd->n_inputs; i++)
        s += in[i][e];
      y[e] = s;
    }
    break;
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN:
    for (size_t e = 0; e < count; e++)
      y[e] = in[0][e];
    break;
  case AE_OP_ZERO:
    for (size_t e = 0; e < count; e++)
      y[e] = 0.0;
    break;
  }
}

/* Batch statistics of BN node k from its input's batch. */
static void ref_bn_stats(const ae_graph *g, ae_ref_params *p, int k,
                         double **act, int batch) {
  const ae_node *nd = &g->nodes[k];
  size_t count = elems_of(nd), per = count / (size_t)nd->shape[0];
  const double *x = act[nd->inputs[0]];
  for (int c = 0; c < nd->shape[0]; c++) {
    double s = 0.0, ss = 0.0;
    for (int b = 0; b < batch; b++)
      for (size_t i = 0; i < per; i++)
        s += x[(size_t)b * count + c * per + i];
    double mean = s / ((double)batch * (double)per);
    for (int b = 0; b < batch; b++)
      for (size_t i = 0; i < per; i++) {
        double d = x[(size_t)b * count + c * per + i] - mean;
        ss += d * d;
      }
    p->bn_mean[k][c] = mean;
    p->bn_invstd[k][c] = 1.0 / sqrt(ss / ((double)batch * (double)per) + 1e-5);
  }
}

int ae_ref_forward(const ae_graph *g, ae_ref_params *p, int freeze_bn,
                   const double *x, int batch, double *logits) {
  if (batch < 1 || g->n_nodes < 1) return AE_EINVAL;
  double **act = calloc((size_t)g->n_nodes, sizeof(double *));
  double **in = calloc(64, sizeof(double *));
  int rc = AE_ENOMEM;
  if (!act || !in) goto out;
  for (int k = 0; k < g->n_nodes; k++) {
    act[k] = malloc(sizeof(double) * (size_t)batch * elems_of(&g->nodes[k]));
    if (!act[k]) goto out;
  }
  memcpy(act[0], x, sizeof(double) * (size_t)batch * elems_of(&g->nodes[0]));
  for (int k = 1; k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    if (nd->n_inputs > 64) {
      rc = AE_EINVAL;
      goto out;
    }
    if (nd->op == AE_OP_BATCH_NORM && !freeze_bn)
      ref_bn_stats(g, p, k, act, batch);
    for (int b = 0; b < batch; b++) {
      for (int i = 0; i < nd->n_inputs; i++)
        in[i] =
            act[nd->inputs[i]] + (size_t)b * elems_of(&g->nodes[nd->inputs[i]]);
      ref_node(g, p, k, in, act[k] + (size_t)b * elems_of(nd));
    }
  }
  memcpy(logits, act[g->output],
         sizeof(double) * (size_t)batch * elems_of(&g->nodes[g->output]));
  rc = AE_OK;
out:
  if (act)
    for (int k = 0; k < g->n_nodes; k++)
      free(act[k]);
  free(act);
  free(in);
  return rc;
}
