/* net_ops.c: the operators of real CNNs on the host executor (see
 * net_internal.h): max_pool, concat (channels or features), mul (elementwise
 * with broadcasting of size-1 dimensions), pad (zeros around the spatial
 * dimensions) and grouped / dilated convolution, in the forward, the
 * backward (NTK and train mode) and the jets.
 *
 * A grouped conv runs as one im2col (dilated taps) and one GEMM per group
 * and sample; its weight is PyTorch's [out][in / groups][k][k].  A
 * max-pool takes the first maximum of its window in row-major order
 * (PyTorch's choice on ties); padding and the ceil_mode overhang are -inf
 * (never selected), and the gradient goes to that one element.  Compiled
 * twice like net.c (net64_ops.c is the float64 twin).
 *
 * Declared in net_internal.h; net.c, net_ntk.c, net_grad.c and net_jet.c
 * hand a node here when ae_net_ops_handles says so.  Runs on the thread
 * that owns the ae_net; no state of its own. */
#include "gpu/host/net_internal.h"

#include <cblas.h>
#include <string.h>

static int conv_groups(const ae_node *nd) {
  return nd->groups > 1 ? nd->groups : 1;
}

static int node_dilation(const ae_node *nd) {
  return nd->dilation > 1 ? nd->dilation : 1;
}

/* ---- grouped / dilated convolution ---- */

/* im2col of c channels with dilated taps: col[(ci*k + ky)*k + kx][oy*ow +
 * ox] = x[ci][oy*s - pad + ky*dil][ox*s - pad + kx*dil] (0 outside). */
static void im2col_dilated(const ae_real *x, int c, int h, int w, int k, int s,
                           int pad, int dil, int oh, int ow, ae_real *col) {
  size_t hw = (size_t)oh * (size_t)ow;
  for (int ci = 0; ci < c; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        ae_real *row =
            col + ((size_t)(ci * k + ky) * (size_t)k + (size_t)kx) * hw;
        const ae_real *plane = x + (size_t)ci * (size_t)h * (size_t)w;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * s - pad + ky * dil;
          ae_real *dst = row + (size_t)oy * (size_t)ow;
          if (iy < 0 || iy >= h) {
            memset(dst, 0, sizeof(ae_real) * (size_t)ow);
            continue;
          }
          const ae_real *src = plane + (size_t)iy * (size_t)w;
          for (int ox = 0; ox < ow; ox++) {
            int ix = ox * s - pad + kx * dil;
            dst[ox] = ix >= 0 && ix < w ? src[ix] : (ae_real)0;
          }
        }
      }
}

/* The adjoint of im2col_dilated: adds col into dx. */
static void col2im_dilated_add(const ae_real *col, int c, int h, int w, int k,
                               int s, int pad, int dil, int oh, int ow,
                               ae_real *dx) {
  size_t hw = (size_t)oh * (size_t)ow;
  for (int ci = 0; ci < c; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        const ae_real *row =
            col + ((size_t)(ci * k + ky) * (size_t)k + (size_t)kx) * hw;
        ae_real *plane = dx + (size_t)ci * (size_t)h * (size_t)w;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * s - pad + ky * dil;
          if (iy < 0 || iy >= h) continue;
          const ae_real *src = row + (size_t)oy * (size_t)ow;
          ae_real *dst = plane + (size_t)iy * (size_t)w;
          for (int ox = 0; ox < ow; ox++) {
            int ix = ox * s - pad + kx * dil;
            if (ix >= 0 && ix < w) dst[ix] += src[ox];
          }
        }
      }
}

/* im2col of group g of one sample's input x. */
static void group_im2col(const ae_node *nd, const ae_plan_geom *ge, int g,
                         const ae_real *x, ae_real *col) {
  int cin_g = ge->in_c / conv_groups(nd);
  size_t in_hw = (size_t)ge->in_h * (size_t)ge->in_w;
  im2col_dilated(x + (size_t)g * (size_t)cin_g * in_hw, cin_g, ge->in_h,
                 ge->in_w, nd->kernel, nd->stride, nd->padding,
                 node_dilation(nd), nd->shape[1], nd->shape[2], col);
}

/* y = conv(x) for `samples` samples of input x (in_elems apart) and
 * output y (elems apart). */
static void conv_general_forward(const ae_net *n, int k, const ae_real *x,
                                 ae_real *y, size_t samples, ae_real *col) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  int G = conv_groups(nd), cout_g = nd->out / G;
  int K = (int)ge->col_rows, HW = (int)ge->out_hw;
  for (size_t b = 0; b < samples; b++)
    for (int g = 0; g < G; g++) {
      group_im2col(nd, ge, g, x + b * ge->in_elems, col);
      AE_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout_g, HW, K, 1.0,
              n->weight[k] + (size_t)g * (size_t)cout_g * (size_t)K, K, col, HW,
              0.0, y + b * ge->elems + (size_t)g * (size_t)cout_g * (size_t)HW,
              HW);
    }
}

static void conv_general_backward(const ae_net *n, int k, int batch,
                                  const ae_real *dy, ae_real *dx, ae_real *rows,
                                  ae_real *dw_sum, ae_real *col,
                                  ae_real *dcol) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  int G = conv_groups(nd), cout_g = nd->out / G, cin_g = ge->in_c / G;
  int K = (int)ge->col_rows, HW = (int)ge->out_hw;
  size_t in_hw = (size_t)ge->in_h * (size_t)ge->in_w;
  size_t wg = (size_t)cout_g * (size_t)K; /* one group's weights */
  for (int b = 0; b < batch; b++) {
    const ae_real *dyb = dy + (size_t)b * ge->elems;
    for (int g = 0; g < G; g++) {
      const ae_real *dyg = dyb + (size_t)g * (size_t)cout_g * (size_t)HW;
      if (rows || dw_sum) {
        group_im2col(nd, ge, g, x + (size_t)b * ge->in_elems, col);
        /* dW_g (cout_g x K) = dY_g (cout_g x HW) col^T (HW x K) */
        if (rows)
          AE_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, cout_g, K, HW, 1.0,
                  dyg, HW, col, HW, 0.0,
                  rows + (size_t)b * ge->n_weight + (size_t)g * wg, K);
        if (dw_sum)
          AE_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, cout_g, K, HW, 1.0,
                  dyg, HW, col, HW, 1.0, dw_sum + (size_t)g * wg, K);
      }
      if (!dx) continue;
      /* dcol (K x HW) = W_g^T dY_g, then col2im into the group's
       * channels. */
      AE_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, K, HW, cout_g, 1.0,
              n->weight[k] + (size_t)g * wg, K, dyg, HW, 0.0, dcol, HW);
      col2im_dilated_add(
          dcol, cin_g, ge->in_h, ge->in_w, nd->kernel, nd->stride, nd->padding,
          node_dilation(nd), nd->shape[1], nd->shape[2],
          dx + (size_t)b * ge->in_elems + (size_t)g * (size_t)cin_g * in_hw);
    }
  }
}

/* ---- max pool ---- */

/* The input offset (in its plane) of output o's window maximum of plane
 * x: the first maximum in row-major window order. */
static size_t max_pool_argmax(const ae_node *nd, const ae_plan_geom *ge,
                              const ae_real *x, int oy, int ox) {
  int dil = node_dilation(nd);
  size_t best = 0;
  int found = 0;
  ae_real bv = 0;
  for (int ky = 0; ky < nd->kernel; ky++) {
    int iy = oy * nd->stride - nd->padding + ky * dil;
    if (iy < 0 || iy >= ge->in_h) continue;
    for (int kx = 0; kx < nd->kernel; kx++) {
      int ix = ox * nd->stride - nd->padding + kx * dil;
      if (ix < 0 || ix >= ge->in_w) continue;
      size_t at = (size_t)iy * (size_t)ge->in_w + (size_t)ix;
      if (!found || x[at] > bv) {
        bv = x[at];
        best = at;
        found = 1;
      }
    }
  }
  return best;
}

/* y = maxpool over `planes` planes; sel: the planes whose argmax selects
 * (sel == x for the plain forward); sel_planes: sel's plane count (the
 * value stream's), plane p selects by plane p % sel_planes. */
static void max_pool_planes(const ae_node *nd, const ae_plan_geom *ge,
                            const ae_real *x, const ae_real *sel,
                            size_t sel_planes, size_t planes, ae_real *y) {
  size_t in_hw = (size_t)ge->in_h * (size_t)ge->in_w;
  int oh = nd->shape[1], ow = nd->shape[2];
  for (size_t p = 0; p < planes; p++) {
    const ae_real *xp = x + p * in_hw;
    const ae_real *sp = sel + (p % sel_planes) * in_hw;
    ae_real *yp = y + p * ge->out_hw;
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++)
        yp[(size_t)oy * (size_t)ow + (size_t)ox] =
            xp[max_pool_argmax(nd, ge, sp, oy, ox)];
  }
}

static void max_pool_backward(const ae_node *nd, const ae_plan_geom *ge,
                              const ae_real *x, const ae_real *dy,
                              size_t planes, ae_real *dx) {
  size_t in_hw = (size_t)ge->in_h * (size_t)ge->in_w;
  int oh = nd->shape[1], ow = nd->shape[2];
  for (size_t p = 0; p < planes; p++) {
    const ae_real *xp = x + p * in_hw;
    const ae_real *dyp = dy + p * ge->out_hw;
    ae_real *dxp = dx + p * in_hw;
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++)
        dxp[max_pool_argmax(nd, ge, xp, oy, ox)] +=
            dyp[(size_t)oy * (size_t)ow + (size_t)ox];
  }
}

/* ---- pad and concat (linear, per sample) ---- */

static void pad_forward(const ae_node *nd, const ae_plan_geom *ge,
                        const ae_real *x, size_t samples, ae_real *y) {
  int h = ge->in_h, w = ge->in_w, ow = nd->shape[2];
  size_t in_hw = (size_t)h * (size_t)w, out_hw = (size_t)nd->shape[1] * ow;
  memset(y, 0, sizeof(ae_real) * samples * ge->elems);
  for (size_t p = 0; p < samples * (size_t)ge->in_c; p++)
    for (int iy = 0; iy < h; iy++)
      memcpy(y + p * out_hw + (size_t)(iy + nd->pads[0]) * (size_t)ow +
                 (size_t)nd->pads[1],
             x + p * in_hw + (size_t)iy * (size_t)w,
             sizeof(ae_real) * (size_t)w);
}

static void pad_backward(const ae_node *nd, const ae_plan_geom *ge,
                         const ae_real *dy, size_t samples, ae_real *dx) {
  int h = ge->in_h, w = ge->in_w, ow = nd->shape[2];
  size_t in_hw = (size_t)h * (size_t)w, out_hw = (size_t)nd->shape[1] * ow;
  for (size_t p = 0; p < samples * (size_t)ge->in_c; p++)
    for (int iy = 0; iy < h; iy++) {
      const ae_real *src = dy + p * out_hw +
                           (size_t)(iy + nd->pads[0]) * (size_t)ow +
                           (size_t)nd->pads[1];
      ae_real *dst = dx + p * in_hw + (size_t)iy * (size_t)w;
      for (int ix = 0; ix < w; ix++)
        dst[ix] += src[ix];
    }
}

static size_t input_elems(const ae_net *n, const ae_node *nd, int i) {
  return n->geom[nd->inputs[i]].elems;
}

/* y = the inputs side by side per sample (channels, or features). */
static void concat_forward(const ae_net *n, const ae_node *nd,
                           ae_real *const *buf, size_t samples, ae_real *y) {
  size_t elems = ae_plan_node_elems(nd);
  for (size_t b = 0; b < samples; b++) {
    size_t off = 0;
    for (int i = 0; i < nd->n_inputs; i++) {
      size_t e = input_elems(n, nd, i);
      memcpy(y + b * elems + off, buf[nd->inputs[i]] + b * e,
             sizeof(ae_real) * e);
      off += e;
    }
  }
}

/* ---- mul (broadcasting) ---- */

/* Element (c, y, x) of an output of shape out in an input of shape in
 * whose size-1 dimensions broadcast. */
static size_t broadcast_index(const int *in, int c, int yy, int xx) {
  size_t ci = in[0] == 1 ? 0 : (size_t)c;
  size_t yi = in[1] == 1 ? 0 : (size_t)yy;
  size_t xi = in[2] == 1 ? 0 : (size_t)xx;
  return (ci * (size_t)in[1] + yi) * (size_t)in[2] + xi;
}

/* The offset, within its sample, of input i's element that output
 * element (c, yy, xx) of node nd reads. */
static size_t mul_at(const ae_net *n, const ae_node *nd, int i, int c, int yy,
                     int xx) {
  const ae_node *a = &n->g->nodes[nd->inputs[i]];
  int s[3] = {a->shape[0], a->rank == 3 ? a->shape[1] : 1,
              a->rank == 3 ? a->shape[2] : 1};
  return broadcast_index(s, c, yy, xx);
}

/* The output's extent as C, H, W (rank 1: F, 1, 1). */
static void out_dims(const ae_node *nd, int *c, int *h, int *w) {
  *c = nd->shape[0];
  *h = nd->rank == 3 ? nd->shape[1] : 1;
  *w = nd->rank == 3 ? nd->shape[2] : 1;
}

/* Input i's element under output element (c, yy, xx) of sample b in
 * buffer table buf. */
#define MUL_IN(buf, b, i, c, yy, xx)                                           \
  ((buf)[nd->inputs[i]]                                                        \
        [(size_t)(b)*input_elems(n, nd, i) + mul_at(n, nd, i, c, yy, xx)])

static void mul_forward(const ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  int C, H, W;
  out_dims(nd, &C, &H, &W);
  ae_real *y = n->act[k];
  for (int b = 0; b < batch; b++)
    for (int c = 0; c < C; c++)
      for (int yy = 0; yy < H; yy++)
        for (int xx = 0; xx < W; xx++) {
          ae_real v = MUL_IN(n->act, b, 0, c, yy, xx);
          for (int i = 1; i < nd->n_inputs; i++)
            v *= MUL_IN(n->act, b, i, c, yy, xx);
          *y++ = v;
        }
}

/* grads[input] += dy * the product of the other inputs. */
static void mul_backward(const ae_net *n, int k, int batch, const ae_real *dy,
                         ae_real *const *grads) {
  const ae_node *nd = &n->g->nodes[k];
  int C, H, W;
  out_dims(nd, &C, &H, &W);
  for (int b = 0; b < batch; b++)
    for (int c = 0; c < C; c++)
      for (int yy = 0; yy < H; yy++)
        for (int xx = 0; xx < W; xx++) {
          ae_real d = *dy++;
          for (int i = 0; i < nd->n_inputs; i++) {
            if (!grads[nd->inputs[i]]) continue;
            ae_real v = d;
            for (int j = 0; j < nd->n_inputs; j++)
              if (j != i) v *= MUL_IN(n->act, b, j, c, yy, xx);
            MUL_IN(grads, b, i, c, yy, xx) += v;
          }
        }
}

/* The jets of a product: (p, p', p'') * (x, x', x''), in float64. */
static void mul_jet(const ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  int C, H, W;
  out_dims(nd, &C, &H, &W);
  size_t elems = n->geom[k].elems, B = (size_t)batch;
  for (size_t b = 0; b < B; b++) {
    size_t o = 0;
    for (int c = 0; c < C; c++)
      for (int yy = 0; yy < H; yy++)
        for (int xx = 0; xx < W; xx++, o++) {
          double p0 = 1.0, p1 = 0.0, p2 = 0.0;
          for (int i = 0; i < nd->n_inputs; i++) {
            double x0 = (double)MUL_IN(n->jet, b, i, c, yy, xx);
            double x1 = (double)MUL_IN(n->jet, B + b, i, c, yy, xx);
            double x2 = (double)MUL_IN(n->jet, 2 * B + b, i, c, yy, xx);
            double q2 = p2 * x0 + 2.0 * p1 * x1 + p0 * x2;
            double q1 = p1 * x0 + p0 * x1;
            p0 *= x0;
            p1 = q1;
            p2 = q2;
          }
          n->jet[k][b * elems + o] = (ae_real)p0;
          n->jet[k][(B + b) * elems + o] = (ae_real)p1;
          n->jet[k][(2 * B + b) * elems + o] = (ae_real)p2;
        }
  }
}

/* ---- entry points ---- */

void ae_net_ops_forward(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t B = (size_t)batch;
  const ae_real *x = n->act[nd->inputs[0]];
  ae_real *y = n->act[k];
  if (nd->op == AE_OP_CONV) {
    conv_general_forward(n, k, x, y, B, n->col);
    return;
  }
  switch ((int)nd->op) {
  case AE_OP_MAX_POOL:
    max_pool_planes(nd, ge, x, x, B * (size_t)ge->in_c, B * (size_t)ge->in_c,
                    y);
    return;
  case AE_OP_PAD:
    pad_forward(nd, ge, x, B, y);
    return;
  case AE_OP_CONCAT:
    concat_forward(n, nd, n->act, B, y);
    return;
  case AE_OP_MUL:
    mul_forward(n, k, batch);
    return;
  }
}

void ae_net_ops_jet(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t B = (size_t)batch, V = 3 * B;
  const ae_real *x = n->jet[nd->inputs[0]];
  ae_real *y = n->jet[k];
  if (nd->op == AE_OP_CONV) {
    conv_general_forward(n, k, x, y, V, n->jcol);
    return;
  }
  switch ((int)nd->op) {
  case AE_OP_MAX_POOL:
    max_pool_planes(nd, ge, x, x, B * (size_t)ge->in_c, V * (size_t)ge->in_c,
                    y);
    return;
  case AE_OP_PAD:
    pad_forward(nd, ge, x, V, y);
    return;
  case AE_OP_CONCAT:
    concat_forward(n, nd, n->jet, V, y);
    return;
  case AE_OP_MUL:
    mul_jet(n, k, batch);
    return;
  }
}

void ae_net_ops_backward(ae_net *n, int k, int batch, const ae_real *dy,
                         ae_real *const *grads, ae_real *rows, ae_real *dw_sum,
                         ae_real *col, ae_real *dcol) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t B = (size_t)batch;
  ae_real *dx0 = grads[nd->inputs[0]];
  if (nd->op == AE_OP_CONV) {
    conv_general_backward(n, k, batch, dy, dx0, rows, dw_sum, col, dcol);
    return;
  }
  switch ((int)nd->op) {
  case AE_OP_MAX_POOL:
    if (dx0)
      max_pool_backward(nd, ge, n->act[nd->inputs[0]], dy, B * (size_t)ge->in_c,
                        dx0);
    return;
  case AE_OP_PAD:
    if (dx0) pad_backward(nd, ge, dy, B, dx0);
    return;
  case AE_OP_CONCAT: {
    size_t elems = ge->elems;
    for (size_t b = 0; b < B; b++) {
      size_t off = 0;
      for (int i = 0; i < nd->n_inputs; i++) {
        size_t e = input_elems(n, nd, i);
        ae_real *dx = grads[nd->inputs[i]];
        if (dx) {
          const ae_real *src = dy + b * elems + off;
          ae_real *dst = dx + b * e;
          for (size_t j = 0; j < e; j++)
            dst[j] += src[j];
        }
        off += e;
      }
    }
    return;
  }
  case AE_OP_MUL:
    mul_backward(n, k, batch, dy, grads);
    return;
  }
}

void ae_net_ops_ntk_step(ae_net *n, int k, int batch,
                         ae_ntk_parameterization par, double *theta) {
  const ae_node *nd = &n->g->nodes[k];
  if (nd->op != AE_OP_CONV) {
    ae_net_ops_backward(n, k, batch, n->grad[k], n->grad, NULL, NULL, NULL,
                        NULL);
    return;
  }
  /* Per-sample weight gradients as rows of G in n->gd, widened in place
   * to float64 (from the end down, as net_ntk.c's gram_accumulate), then
   * theta += scale G G^T. */
  const ae_plan_geom *ge = &n->geom[k];
  ae_real *rows = (ae_real *)(void *)n->gd;
  ae_net_ops_backward(n, k, batch, n->grad[k], n->grad, rows, NULL, n->col,
                      n->dcol);
  size_t P = ge->n_weight;
  double *gd = n->gd;
#ifndef AE_NET_DOUBLE
  for (size_t i = (size_t)batch * P; i-- > 0;)
    gd[i] = (double)rows[i];
#endif
  double scale = par == AE_NTK_NTK ? ae_plan_init_variance(n->plan, k) : 1.0;
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, (int)P, scale, gd,
              (int)P, 1.0, theta, batch);
}
