/* net_ntk.c: the batched backward with frozen BN statistics and the
 * layer-by-layer empirical NTK.
 *
 * With dL/dlogits = 1 for every class and sample, one reverse sweep gives
 * every sample's activation gradient (BN statistics are constants, so the
 * samples never mix).  At each trainable tensor the per-sample gradients
 * G_l (batch x P_l) are formed and theta += scale_l * G_l G_l^T, summed
 * over tensors in float64 (lower triangle; symmetrised at the end):
 *   conv:   row i = vec(dY_i col(X_i)^T), one sgemm per sample;
 *   linear: G G^T = (dY dY^T) o (X X^T) (Hadamard), never forming G;
 *   bias:   dY dY^T;   BN gamma: row i = sum_hw dY_i * xhat_i.
 * The whole Jacobian is never materialised.  Gradient buffers are the
 * arena's shared slots (net.c), zeroed when their first writer runs.
 *
 * Runs on the thread that owns the ae_net. */
#include "gpu/host/net_internal.h"

#include "api/status.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#ifndef AE_NET_DOUBLE
#include "gpu/host/net64.h"
#endif

static void to_double_rows(const ae_real *src, size_t count, double *dst) {
  for (size_t i = 0; i < count; i++)
    dst[i] = (double)src[i];
}

/* theta (lower triangle, float64) += scale * G G^T for G = batch rows of
 * P elements, by dsyrk.  In the float32 build G's rows are widened to
 * float64 in place first (g must then have room for batch * P doubles):
 * a float32 Gram of ~1e5 products loses ~1e-4 of lambda_min on
 * ill-conditioned NTKs, float64 keeps it at the float32 forward's own
 * noise. */
static void gram_accumulate(ae_real *g, int batch, size_t P, double scale,
                            double *theta) {
  double *gd = (double *)(void *)g;
#ifndef AE_NET_DOUBLE
  /* From the end down: double i overwrites floats 2i and 2i+1, which
   * belong to doubles >= i, already written. */
  for (size_t i = (size_t)batch * P; i-- > 0;)
    gd[i] = (double)g[i];
#endif
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, (int)P, scale, gd,
              (int)P, 1.0, theta, batch);
}

/* The NTK parameterization scales each weight tensor's Gram by its init
 * variance; the standard one does not. */
static double weight_scale(const ae_net *n, int k,
                           ae_ntk_parameterization par) {
  return par == AE_NTK_NTK ? ae_plan_init_variance(n->plan, k) : 1.0;
}

static void backward_linear(ae_net *n, int k, int batch,
                            ae_ntk_parameterization par, double *theta) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  const ae_real *dy = n->grad[k];
  ae_real *dx = n->grad[nd->inputs[0]];
  int in = (int)ge->in_elems, out = nd->out;
  size_t B = (size_t)batch;
  if (dx)
    AE_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0, dy,
            out, n->weight[k], in, 1.0, dx, in);
  double *xx = n->bb, *yy = n->bb + B * B;
  to_double_rows(x, B * (size_t)in, n->gd);
  to_double_rows(dy, B * (size_t)out, n->gd2);
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, in, 1.0, n->gd,
              in, 0.0, xx, batch);
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, out, 1.0, n->gd2,
              out, 0.0, yy, batch);
  double s = weight_scale(n, k, par);
  double sb = n->bias[k] ? 1.0 : 0.0;
  for (size_t i = 0; i < B; i++)
    for (size_t j = 0; j <= i; j++)
      theta[i * B + j] += yy[i * B + j] * (s * xx[i * B + j] + sb);
}

static void backward_conv(ae_net *n, int k, int batch,
                          ae_ntk_parameterization par, double *theta) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  const ae_real *dy = n->grad[k];
  ae_real *dx = n->grad[nd->inputs[0]];
  int direct = nd->kernel == 1 && nd->stride == 1 && nd->padding == 0;
  int K = (int)ge->col_rows, HW = (int)ge->out_hw, cout = nd->out;
  size_t P = ge->n_weight;
  int chunk = direct ? 1 : n->chunk[k];
  ae_real *grows = (ae_real *)n->gd; /* batch x P, fits in gd */
  double t0 = ae_net_clock(n);
  for (int b0 = 0; b0 < batch; b0 += chunk) {
    int m = batch - b0 < chunk ? batch - b0 : chunk;
    size_t ld = (size_t)m * (size_t)HW;
    const ae_real *col = x + (size_t)b0 * ge->in_elems;
    if (!direct) {
      for (int j = 0; j < m; j++)
        ae_net_im2col_t(x + (size_t)(b0 + j) * ge->in_elems, ge->in_c, ge->in_h,
                        ge->in_w, nd->kernel, nd->stride, nd->padding,
                        nd->shape[1], nd->shape[2],
                        n->col + (size_t)j * (size_t)HW, ld);
      col = n->col;
      ae_net_tick(n, AE_NET_PROF_BWD_IM2COL, &t0);
    }
    /* Per-sample weight gradients dW_b = dY_b col_b^T, written straight
     * into row b of G (row-major Cout x K is vec(dW_b)). */
    for (int j = 0; j < m; j++)
      AE_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, cout, K, HW, 1.0,
              dy + (size_t)(b0 + j) * ge->elems, HW,
              col + (size_t)j * (size_t)HW, (int)ld, 0.0,
              grows + (size_t)(b0 + j) * P, K);
    ae_net_tick(n, AE_NET_PROF_BWD_DW, &t0);
    if (!dx) continue;
    if (direct) {
      AE_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, K, HW, cout, 1.0,
              n->weight[k], K, dy + (size_t)b0 * ge->elems, HW, 1.0,
              dx + (size_t)b0 * ge->in_elems, HW);
    } else {
      /* dcol = W^T dY over the chunk (dY gathered cout-major), then
       * col2im per sample. */
      const ae_real *dyc = dy + (size_t)b0 * ge->elems;
      if (m > 1) {
        for (int j = 0; j < m; j++)
          for (int c = 0; c < cout; c++)
            memcpy(n->ytmp + (size_t)c * ld + (size_t)j * (size_t)HW,
                   dy + (size_t)(b0 + j) * ge->elems + (size_t)c * (size_t)HW,
                   sizeof(ae_real) * (size_t)HW);
        dyc = n->ytmp;
      }
      AE_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)ld, cout, 1.0,
              n->weight[k], K, dyc, (int)ld, 0.0, n->dcol, (int)ld);
      for (int j = 0; j < m; j++)
        ae_net_col2im_add_t(n->dcol + (size_t)j * (size_t)HW, ge->in_c,
                            ge->in_h, ge->in_w, nd->kernel, nd->stride,
                            nd->padding, nd->shape[1], nd->shape[2],
                            dx + (size_t)(b0 + j) * ge->in_elems, ld);
    }
    ae_net_tick(n, AE_NET_PROF_BWD_DX, &t0);
  }
  gram_accumulate(grows, batch, P, weight_scale(n, k, par), theta);
  ae_net_tick(n, AE_NET_PROF_GRAM, &t0);
}

static void backward_bn(ae_net *n, int k, int batch, double *theta) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  const ae_real *dy = n->grad[k];
  ae_real *dx = n->grad[nd->inputs[0]];
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
        ae_real s = (ae_real)(inv * n->gamma[k][c]);
        for (size_t i = 0; i < P; i++)
          dx[off + i] += dy[off + i] * s;
      }
    }
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, (int)C, 1.0,
              n->gd, (int)C, 1.0, theta, batch);
}

static void backward_act(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  ae_real *dx = n->grad[nd->inputs[0]];
  if (!dx) return;
  const ae_real *z = n->act[nd->inputs[0]];
  const ae_real *dy = n->grad[k];
  size_t count = (size_t)batch * n->geom[k].elems;
  ae_net_act_backward_add_t(&nd->act, z, dy, count, dx);
}

static void backward_pass_through(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *dy = n->grad[k];
  size_t B = (size_t)batch;
  switch (nd->op) {
  case AE_OP_AVG_POOL: {
    ae_real *dx = n->grad[nd->inputs[0]];
    if (!dx) return;
    size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
    for (size_t p = 0; p < B * (size_t)ge->in_c; p++)
      ae_net_avg_pool_plane_adj_t(dy + p * ge->out_hw, ge->in_h, ge->in_w,
                                  nd->kernel, nd->stride, nd->padding,
                                  nd->count_include_pad, nd->shape[1],
                                  nd->shape[2], dx + p * hw_in);
    return;
  }
  case AE_OP_GLOBAL_AVG_POOL: {
    ae_real *dx = n->grad[nd->inputs[0]];
    if (!dx) return;
    size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
    for (size_t p = 0; p < B * (size_t)ge->in_c; p++) {
      ae_real g = dy[p] / (ae_real)hw_in;
      for (size_t i = 0; i < hw_in; i++)
        dx[p * hw_in + i] += g;
    }
    return;
  }
  case AE_OP_ADD:
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN: {
    size_t count = B * ge->elems;
    for (int i = 0; i < nd->n_inputs; i++) {
      ae_real *dx = n->grad[nd->inputs[i]];
      if (!dx || dx == dy) continue; /* none, or the shared slot */
      for (size_t e = 0; e < count; e++)
        dx[e] += dy[e];
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
#ifndef AE_NET_DOUBLE
  ae_net64 *twin;
  int trc = ae_net_double_twin(n, &twin);
  if (trc) return trc;
  if (twin) return ae_net64_ntk(twin, x, batch, par, theta, ctl);
#endif
  int rc = ae_net_backward_buffers(n);
  if (rc) return rc;
  rc = ae_net_forward_buffers(n, x, batch);
  if (rc) return rc;
  size_t B = (size_t)batch;
  memset(theta, 0, sizeof(double) * B * B);
  int nn = n->g->n_nodes;
  const ae_plan *p = n->plan;
  for (int t = nn - 1; t >= 0 && rc == AE_OK; t--) {
    /* Zero the slots whose first writer is step t (a gradient sharing
     * its reader's slot has nothing to zero). */
    for (int k = 0; k < nn; k++) {
      if (p->grad_first[k] != t || p->grad_alias[k] >= 0) continue;
      size_t count = B * n->geom[k].elems;
      if (k == n->g->output)
        for (size_t e = 0; e < count; e++)
          n->grad[k][e] = 1.0;
      else
        memset(n->grad[k], 0, sizeof(ae_real) * count);
    }
    if (!n->grad[t]) continue;
    const ae_node *nd = &n->g->nodes[t];
    double t0 = ae_net_clock(n);
    if (ae_net_ops_handles(nd)) { /* net_ops.c */
      ae_net_ops_ntk_step(n, t, batch, par, theta);
      rc = ae_job_checkpoint(ctl);
      ae_net_tick(n, AE_NET_PROF_BWD_OTHER, &t0);
      continue;
    }
    switch (nd->op) {
    case AE_OP_LINEAR:
      backward_linear(n, t, batch, par, theta);
      rc = ae_job_checkpoint(ctl);
      break;
    case AE_OP_CONV:
      backward_conv(n, t, batch, par, theta);
      rc = ae_job_checkpoint(ctl);
      break;
    case AE_OP_BATCH_NORM:
      backward_bn(n, t, batch, theta);
      rc = ae_job_checkpoint(ctl);
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
  if (rc) return rc;
  for (size_t i = 0; i < B; i++)
    for (size_t j = i + 1; j < B; j++)
      theta[i * B + j] = theta[j * B + i];
  return AE_OK;
}
