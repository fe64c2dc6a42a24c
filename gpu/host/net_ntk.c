/* net_ntk.c: the batched backward with frozen BN statistics and the
 * layer-by-layer empirical NTK.
 *
 * With dL/dlogits = 1 for every class and sample, one reverse sweep gives
 * every sample's activation gradient (BN statistics are constants, so the
 * samples never mix).  At each trainable tensor the per-sample gradients
 * G_l (batch x P_l) are formed and theta += scale_l * G_l G_l^T in float64
 * (dsyrk, lower triangle; symmetrised at the end):
 *   conv:   row i = vec(dY_i col(X_i)^T), one sgemm per sample;
 *   linear: G G^T = (dY dY^T) o (X X^T) (Hadamard), never forming G;
 *   bias:   dY dY^T;   BN gamma: row i = sum_hw dY_i * xhat_i.
 * The whole Jacobian is never materialised.  Gradient buffers are the
 * arena's shared slots (net.c), zeroed when their first writer runs.
 *
 * Runs on the thread that owns the ae_net. */
#include "gpu/host/net_internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include "api/status.h"

/* Index of the last consumer whose backward writes node k's gradient (the
 * step at which the slot is zeroed), k itself for the output. */
static int grad_first_writer(const ae_net *n, int k) {
  if (k == n->g.output) return k;
  int last = -1;
  for (int c = k + 1; c < n->g.n_nodes; c++) {
    const ae_node *cn = &n->g.nodes[c];
    if (!n->grad[c] || cn->op == AE_OP_ZERO) continue;
    for (int i = 0; i < cn->n_inputs; i++)
      if (cn->inputs[i] == k) last = c;
  }
  return last;
}

static void to_double_rows(const float *src, size_t count, double *dst) {
  for (size_t i = 0; i < count; i++) dst[i] = (double)src[i];
}

static double weight_scale(const ae_node *nd, const ae_net_geom *ge,
                           ae_ntk_parameterization par) {
  if (par != AE_NTK_NTK) return 1.0;
  double gain = nd->init_gain > 0.0 ? nd->init_gain : 1.0;
  return gain / (double)ge->fan_in;
}

static void backward_linear(ae_net *n, int k, int batch,
                            ae_ntk_parameterization par, double *theta) {
  const ae_node *nd = &n->g.nodes[k];
  const ae_net_geom *ge = &n->geom[k];
  const float *x = n->act[nd->inputs[0]];
  const float *dy = n->grad[k];
  float *dx = n->grad[nd->inputs[0]];
  int in = (int)ge->in_elems, out = nd->out;
  size_t B = (size_t)batch;
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out,
                1.0f, dy, out, n->weight[k], in, 1.0f, dx, in);
  double *xx = n->bb, *yy = n->bb + B * B;
  to_double_rows(x, B * (size_t)in, n->gd);
  to_double_rows(dy, B * (size_t)out, n->gd2);
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, in, 1.0, n->gd,
              in, 0.0, xx, batch);
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, out, 1.0,
              n->gd2, out, 0.0, yy, batch);
  double s = weight_scale(nd, ge, par);
  double sb = n->bias[k] ? 1.0 : 0.0;
  for (size_t i = 0; i < B; i++)
    for (size_t j = 0; j <= i; j++)
      theta[i * B + j] += yy[i * B + j] * (s * xx[i * B + j] + sb);
}

static void backward_conv(ae_net *n, int k, int batch,
                          ae_ntk_parameterization par, double *theta) {
  const ae_node *nd = &n->g.nodes[k];
  const ae_net_geom *ge = &n->geom[k];
  const float *x = n->act[nd->inputs[0]];
  float *dx = n->grad[nd->inputs[0]];
  int direct = nd->kernel == 1 && nd->stride == 1 && nd->padding == 0;
  int K = (int)ge->col_rows, HW = (int)ge->out_hw, cout = nd->out;
  size_t P = ge->n_weight;
  double t0 = ae_net_clock(n);
  for (int b = 0; b < batch; b++) {
    const float *xb = x + (size_t)b * ge->in_elems;
    const float *dyb = n->grad[k] + (size_t)b * ge->elems;
    const float *col = xb;
    if (!direct) {
      ae_net_im2col_f(xb, ge->in_c, ge->in_h, ge->in_w, nd->kernel,
                      nd->stride, nd->padding, nd->shape[1], nd->shape[2],
                      n->col);
      col = n->col;
      ae_net_tick(n, AE_NET_PROF_BWD_IM2COL, &t0);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, K, HW, 1.0f,
                dyb, HW, col, HW, 0.0f, n->dw, K);
    ae_net_tick(n, AE_NET_PROF_BWD_DW, &t0);
    to_double_rows(n->dw, P, n->gd + (size_t)b * P);
    ae_net_tick(n, AE_NET_PROF_GRAM, &t0);
    if (!dx) continue;
    float *dxb = dx + (size_t)b * ge->in_elems;
    if (direct) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HW, cout, 1.0f,
                  n->weight[k], K, dyb, HW, 1.0f, dxb, HW);
    } else {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HW, cout, 1.0f,
                  n->weight[k], K, dyb, HW, 0.0f, n->dcol, HW);
      ae_net_col2im_add_f(n->dcol, ge->in_c, ge->in_h, ge->in_w, nd->kernel,
                          nd->stride, nd->padding, nd->shape[1], nd->shape[2],
                          dxb);
    }
    ae_net_tick(n, AE_NET_PROF_BWD_DX, &t0);
  }
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, (int)P,
              weight_scale(nd, ge, par), n->gd, (int)P, 1.0, theta, batch);
  ae_net_tick(n, AE_NET_PROF_GRAM, &t0);
}

static void backward_bn(ae_net *n, int k, int batch, double *theta) {
  const ae_node *nd = &n->g.nodes[k];
  const ae_net_geom *ge = &n->geom[k];
  const float *x = n->act[nd->inputs[0]];
  const float *dy = n->grad[k];
  float *dx = n->grad[nd->inputs[0]];
  size_t C = (size_t)ge->channels, P = ge->plane;
  for (int b = 0; b < batch; b++)
    for (size_t c = 0; c < C; c++) {
      size_t off = (size_t)b * ge->elems + c * P;
      double mean = n->bn_mean[k][c], inv = n->bn_invstd[k][c];
      double g = 0.0;
      for (size_t i = 0; i < P; i++)
        g += (double)dy[off + i] * (((double)x[off + i] - mean) * inv);
      n->gd[(size_t)b * C + c] = g;
      if (dx) {
        float s = (float)(inv * n->gamma[k][c]);
        for (size_t i = 0; i < P; i++) dx[off + i] += dy[off + i] * s;
      }
    }
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, (int)C, 1.0,
              n->gd, (int)C, 1.0, theta, batch);
}

static void backward_act(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g.nodes[k];
  float *dx = n->grad[nd->inputs[0]];
  if (!dx) return;
  const float *z = n->act[nd->inputs[0]];
  const float *dy = n->grad[k];
  size_t count = (size_t)batch * n->geom[k].elems;
  switch (nd->act.fn) {
  case AE_ACT_RELU:
    for (size_t i = 0; i < count; i++)
      if (z[i] > 0.0f) dx[i] += dy[i];
    return;
  case AE_ACT_LEAKY_RELU: {
    float s = (float)nd->act.slope;
    for (size_t i = 0; i < count; i++) dx[i] += z[i] > 0.0f ? dy[i] : s * dy[i];
    return;
  }
  case AE_ACT_IDENTITY:
    for (size_t i = 0; i < count; i++) dx[i] += dy[i];
    return;
  default:
    for (size_t i = 0; i < count; i++)
      dx[i] += dy[i] * (float)ae_net_act_d1(nd->act, (double)z[i]);
    return;
  }
}

static void backward_pass_through(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g.nodes[k];
  const ae_net_geom *ge = &n->geom[k];
  const float *dy = n->grad[k];
  size_t B = (size_t)batch;
  switch (nd->op) {
  case AE_OP_AVG_POOL: {
    float *dx = n->grad[nd->inputs[0]];
    if (!dx) return;
    size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
    for (size_t p = 0; p < B * (size_t)ge->in_c; p++)
      ae_net_avg_pool_plane_adj_f(dy + p * ge->out_hw, ge->in_h, ge->in_w,
                                  nd->kernel, nd->stride, nd->padding,
                                  nd->count_include_pad, nd->shape[1],
                                  nd->shape[2], dx + p * hw_in);
    return;
  }
  case AE_OP_GLOBAL_AVG_POOL: {
    float *dx = n->grad[nd->inputs[0]];
    if (!dx) return;
    size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
    for (size_t p = 0; p < B * (size_t)ge->in_c; p++) {
      float g = dy[p] / (float)hw_in;
      for (size_t i = 0; i < hw_in; i++) dx[p * hw_in + i] += g;
    }
    return;
  }
  case AE_OP_ADD:
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN: {
    size_t count = B * ge->elems;
    for (int i = 0; i < nd->n_inputs; i++) {
      float *dx = n->grad[nd->inputs[i]];
      if (!dx) continue;
      for (size_t e = 0; e < count; e++) dx[e] += dy[e];
    }
    return;
  }
  default:
    return;
  }
}

int ae_net_ntk(ae_net *n, const float *x, int batch,
               ae_ntk_parameterization par, double *theta,
               const ae_job_control *ctl) {
  if (!theta) return AE_EINVAL;
  int rc = ae_net_forward(n, x, batch, NULL);
  if (rc) return rc;
  size_t B = (size_t)batch;
  memset(theta, 0, sizeof(double) * B * B);
  int nn = n->g.n_nodes;
  int *first = malloc(sizeof(int) * (size_t)nn);
  if (!first) return AE_ENOMEM;
  for (int k = 0; k < nn; k++) first[k] = n->grad[k] ? grad_first_writer(n, k) : -1;
  for (int t = nn - 1; t >= 0 && rc == AE_OK; t--) {
    for (int k = 0; k < nn; k++) {
      if (first[k] != t) continue;
      size_t count = B * n->geom[k].elems;
      if (k == n->g.output)
        for (size_t e = 0; e < count; e++) n->grad[k][e] = 1.0f;
      else
        memset(n->grad[k], 0, sizeof(float) * count);
    }
    if (!n->grad[t] || first[t] < 0) continue;
    const ae_node *nd = &n->g.nodes[t];
    double t0 = ae_net_clock(n);
    switch (nd->op) {
    case AE_OP_LINEAR:
      backward_linear(n, t, batch, par, theta);
      rc = ae_net_checkpoint(ctl);
      break;
    case AE_OP_CONV:
      backward_conv(n, t, batch, par, theta);
      rc = ae_net_checkpoint(ctl);
      break;
    case AE_OP_BATCH_NORM:
      backward_bn(n, t, batch, theta);
      rc = ae_net_checkpoint(ctl);
      break;
    case AE_OP_ACT:
      backward_act(n, t, batch);
      break;
    default:
      backward_pass_through(n, t, batch);
      break;
    }
    if (nd->op != AE_OP_CONV) ae_net_tick(n, AE_NET_PROF_BWD_OTHER, &t0);
  }
  free(first);
  if (rc) return rc;
  for (size_t i = 0; i < B; i++)
    for (size_t j = i + 1; j < B; j++) theta[i * B + j] = theta[j * B + i];
  return AE_OK;
}
