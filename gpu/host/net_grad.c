/* net_grad.c: reverse mode through the last forward pass with train-mode
 * BatchNorm (the gradients of ranking.md's metrics: jacobian_trainability,
 * synflow, grad_norm, snip, jacob_cov, zico).
 *
 * Unlike net_ntk.c (per-sample gradients, BN statistics frozen), this is
 * the plain batched backward of a scalar loss, as PyTorch's .train()
 * autograd computes it: BN's dx goes through the batch mean and variance,
 * so samples mix, and parameter gradients are summed over the batch.  A
 * gradient (float64 values, or float32 ones for the float32 net:
 * ae_net_backward_f32, whose node gradients can then be read in place) is
 * seeded at any node; the sweep runs from
 * that node down to node 0, or stops early: nodes with index <= stop
 * receive their gradient but pass nothing on (the block-wise backward of
 * jacobian_trainability).  Gradients live in an ae_net_grad of their own
 * (parameter gradients per tensor; node gradients in buffers that go back
 * to a pool as soon as the sweep has passed their node, so that only the
 * frontier holds memory), so the NTK's shared slots are never touched.  A
 * node's gradient buffer is not zeroed when its first writer (BN, a
 * convolution's direct adjoint, an add or identity) writes every value as
 * 0 + that value: the bits of adding it to zeros.  In
 * float32 on AVX-512, or AVX2 with FMA (k >= 3), a stride-1 "same"
 * convolution's input gradient is the
 * direct convolution of dY with the flipped weights, as in net_ntk.c (another
 * float32 order than W^T dY + col2im; test_net_grad measures both against
 * the float64 twin).  Compiled twice like net.c (net64_grad.c is the
 * float64 twin); the float32 entry points go to the twin when
 * ae_net_set_double is on.
 *
 * An ae_net_grad belongs to the thread that owns its ae_net. */
#include "gpu/host/net_internal.h"

#include "api/status.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#ifndef AE_NET_DOUBLE
#include "gpu/host/net64.h"
#endif

struct ae_net_grad {
  ae_net *n;
  int batch; /* of the last backward */
  /* Node gradients: g[k] while live[k] == 1 (0: nothing reached k yet,
   * 2: the sweep has passed k and its buffer went back to the pool).
   * Only the sweep's frontier holds memory. */
  ae_real **g;
  size_t *gcap;        /* g[k]'s capacity, elements */
  unsigned char *live; /* per node: 0, 1 or 2 as above */
  ae_real **pool;      /* free buffers (at most one per node) */
  size_t *pool_cap;
  int n_pool;
  ae_real **pw, **pb;     /* LINEAR/CONV weight, LINEAR bias gradients */
  ae_real **pgam, **pbet; /* BN gamma, beta gradients */
  ae_real *dcol;          /* a chunk's im2col gradient */
  size_t dcol_cap;        /* its elements */
  ae_real *dyc;           /* a chunk's output gradient, cout-major */
  int skip_params;        /* ae_net_grad_skip_params: inputs only */
#ifndef AE_NET_DOUBLE
  struct ae_net64_grad *dbl; /* the float64 twin's gradients */
  int last_double;           /* the last backward ran on the twin */
#endif
};

void ae_net_grad_destroy(ae_net_grad *gr) {
  if (!gr) return;
  int nn = gr->n->g->n_nodes;
  for (int k = 0; k < nn; k++) {
    if (gr->g) free(gr->g[k]);
    if (gr->pool && k < gr->n_pool) free(gr->pool[k]);
    if (gr->pw) free(gr->pw[k]);
    if (gr->pb) free(gr->pb[k]);
    if (gr->pgam) free(gr->pgam[k]);
    if (gr->pbet) free(gr->pbet[k]);
  }
  free(gr->g);
  free(gr->live);
  free(gr->gcap);
  free(gr->pool);
  free(gr->pool_cap);
  free(gr->pw);
  free(gr->pb);
  free(gr->pgam);
  free(gr->pbet);
  free(gr->dcol);
  free(gr->dyc);
#ifndef AE_NET_DOUBLE
  ae_net64_grad_destroy(gr->dbl);
#endif
  free(gr);
}

static ae_real *zeros(size_t count) {
  return calloc(count > 0 ? count : 1, sizeof(ae_real));
}

int ae_net_grad_create(ae_net *n, ae_net_grad **out) {
  *out = NULL;
  ae_net_grad *gr = calloc(1, sizeof(*gr));
  if (!gr) return AE_ENOMEM;
  gr->n = n;
  size_t nn = (size_t)n->g->n_nodes;
  gr->g = calloc(nn, sizeof(ae_real *));
  gr->live = calloc(nn, 1);
  gr->gcap = calloc(nn, sizeof(size_t));
  gr->pool = calloc(nn, sizeof(ae_real *));
  gr->pool_cap = calloc(nn, sizeof(size_t));
  gr->pw = calloc(nn, sizeof(ae_real *));
  gr->pb = calloc(nn, sizeof(ae_real *));
  gr->pgam = calloc(nn, sizeof(ae_real *));
  gr->pbet = calloc(nn, sizeof(ae_real *));
  if (!gr->g || !gr->live || !gr->gcap || !gr->pool || !gr->pool_cap ||
      !gr->pw || !gr->pb || !gr->pgam || !gr->pbet)
    goto fail;
  size_t max_col = 0, max_y = 0;
  for (size_t k = 0; k < nn; k++) {
    const ae_node *nd = &n->g->nodes[k];
    const ae_plan_geom *ge = &n->geom[k];
    if (n->weight[k] && !(gr->pw[k] = zeros(ge->n_weight))) goto fail;
    if (n->bias[k] && !(gr->pb[k] = zeros((size_t)nd->out))) goto fail;
    if (n->gamma[k] && !(gr->pgam[k] = zeros((size_t)ge->channels))) goto fail;
    if (n->beta[k] && !(gr->pbet[k] = zeros((size_t)ge->channels))) goto fail;
    if (nd->op == AE_OP_CONV) {
      size_t cols = ge->out_hw * (size_t)n->chunk[k];
      if (ge->col_rows * cols > max_col) max_col = ge->col_rows * cols;
      if ((size_t)nd->out * cols > max_y) max_y = (size_t)nd->out * cols;
    }
  }
  if (max_col > 0) {
    gr->dcol = malloc(sizeof(ae_real) * max_col);
    gr->dcol_cap = max_col;
    gr->dyc = malloc(sizeof(ae_real) * max_y);
    if (!gr->dcol || !gr->dyc) goto fail;
  }
  *out = gr;
  return AE_OK;
fail:
  ae_net_grad_destroy(gr);
  return AE_ENOMEM;
}

/* Node k's buffer back to the pool (the sweep has passed it). */
static void release(ae_net_grad *gr, int k) {
  if (gr->live[k] != 1) return;
  gr->pool[gr->n_pool] = gr->g[k];
  gr->pool_cap[gr->n_pool++] = gr->gcap[k];
  gr->g[k] = NULL;
  gr->gcap[k] = 0;
  gr->live[k] = 2;
}

/* Node k's gradient buffer for this backward: the smallest pooled buffer
 * that fits, else a new one.  On first touch it is zeroed, unless fresh
 * is given: then *fresh says whether this is the first touch, and the
 * caller writes every element of a fresh buffer as 0 + its value (what
 * the zeroed buffer's first addition gives, -0 included).  NULL when it
 * cannot be allocated. */
static ae_real *grad_of_maybe_fresh(ae_net_grad *gr, int k, int *fresh) {
  if (fresh) *fresh = 0;
  if (gr->live[k] == 1) return gr->g[k];
  size_t count = (size_t)gr->batch * gr->n->geom[k].elems;
  int best = -1;
  for (int i = 0; i < gr->n_pool; i++)
    if (gr->pool_cap[i] >= count &&
        (best < 0 || gr->pool_cap[i] < gr->pool_cap[best]))
      best = i;
  if (best >= 0) {
    gr->g[k] = gr->pool[best];
    gr->gcap[k] = gr->pool_cap[best];
    gr->n_pool--;
    gr->pool[best] = gr->pool[gr->n_pool];
    gr->pool_cap[best] = gr->pool_cap[gr->n_pool];
  } else {
    size_t cap = (size_t)gr->n->max_batch * gr->n->geom[k].elems;
    gr->g[k] = malloc(sizeof(ae_real) * (cap > 0 ? cap : 1));
    if (!gr->g[k]) return NULL;
    gr->gcap[k] = cap;
  }
  if (fresh)
    *fresh = 1;
  else
    memset(gr->g[k], 0, sizeof(ae_real) * count);
  gr->live[k] = 1;
  return gr->g[k];
}

/* Node k's gradient buffer, zeroed on first touch. */
static ae_real *grad_of(ae_net_grad *gr, int k) {
  return grad_of_maybe_fresh(gr, k, NULL);
}

static void backward_linear(ae_net_grad *gr, int k, ae_real *dx) {
  ae_net *n = gr->n;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  const ae_real *dy = gr->g[k];
  int in = (int)ge->in_elems, out = nd->out, batch = gr->batch;
  /* dW (out x in) += dY^T X */
  if (!gr->skip_params)
    AE_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, batch, 1.0, dy,
            out, x, in, 1.0, gr->pw[k], in);
  if (gr->pb[k] && !gr->skip_params)
    for (int b = 0; b < batch; b++)
      for (int o = 0; o < out; o++)
        gr->pb[k][o] += dy[(size_t)b * (size_t)out + (size_t)o];
  if (dx)
    AE_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0, dy,
            out, n->weight[k], in, 1.0, dx, in);
}

#ifndef AE_NET_DOUBLE
/* x = 0 + x: what adding x to a zeroed buffer gives (-0 becomes +0),
 * in place. */
AE_VECTOR_LOOPS static void plus_zero(ae_real *x, size_t count) {
  for (size_t e = 0; e < count; e++)
    x[e] = (ae_real)0 + x[e];
}

/* dx += the adjoint of convolution k applied to its output gradient, as
 * the direct convolution of dY with the flipped, transposed weights (a
 * stride-1 "same" convolution; net_conv_direct.c), formed in dcol after
 * the weights and added: no W^T dY GEMM, no col2im.  Another float32
 * summation order than the GEMM path (test_net_grad holds both within
 * the float64 twin's spread).  fresh: dx not yet written (not zeroed
 * either): the convolution goes straight into it, then 0 + each value,
 * the bits of adding it to zeros.  1 when done, 0 when it does not apply
 * (not that shape, no direct convolution here, dcol too small for a
 * sample). */
static int conv_dx_direct(ae_net_grad *gr, int k, ae_real *dx, int fresh) {
  ae_net *n = gr->n;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t off = (ge->n_weight + 15) & ~(size_t)15;
  if (!ae_net_conv_direct_fits(nd, ge) || !ae_net_conv_direct_usable() ||
      off + ge->in_elems > gr->dcol_cap)
    return 0;
  ae_net_conv_flip_weights(n->weight[k], nd->out, ge->in_c, nd->kernel,
                           gr->dcol);
  if (fresh) {
    ae_net_conv_direct(gr->dcol, gr->g[k], ge->elems, nd->out, ge->in_h,
                       ge->in_w, nd->kernel, ge->in_c, dx, ge->in_elems,
                       gr->batch);
    plus_zero(dx, (size_t)gr->batch * ge->in_elems);
    return 1;
  }
  ae_net_conv_direct_add(gr->dcol, gr->g[k], ge->elems, nd->out, ge->in_h,
                         ge->in_w, nd->kernel, ge->in_c, dx, ge->in_elems,
                         gr->batch, gr->dcol + off,
                         (gr->dcol_cap - off) / ge->in_elems);
  return 1;
}
#endif

/* fresh: dx not yet written (grad_of_maybe_fresh): zeroed here unless the
 * direct path writes it whole. */
static void backward_conv(ae_net_grad *gr, int k, ae_real *dx, int fresh) {
  ae_net *n = gr->n;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  const ae_real *dy = gr->g[k];
  int direct = nd->kernel == 1 && nd->stride == 1 && nd->padding == 0;
  int K = (int)ge->col_rows, HW = (int)ge->out_hw, cout = nd->out;
  int batch = gr->batch;
#ifndef AE_NET_DOUBLE
  if (dx && conv_dx_direct(gr, k, dx, fresh)) dx = NULL; /* dW below */
#endif
  if (dx && fresh)
    memset(dx, 0, sizeof(ae_real) * (size_t)gr->batch * ge->in_elems);
  if (!dx && gr->skip_params) return;
  if (direct) {
    for (int b = 0; b < batch; b++) {
      const ae_real *dyb = dy + (size_t)b * ge->elems;
      const ae_real *xb = x + (size_t)b * ge->in_elems;
      if (!gr->skip_params)
        AE_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, cout, K, HW, 1.0, dyb,
                HW, xb, HW, 1.0, gr->pw[k], K);
      if (dx)
        AE_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, K, HW, cout, 1.0,
                n->weight[k], K, dyb, HW, 1.0, dx + (size_t)b * ge->in_elems,
                HW);
    }
    return;
  }
  for (int b0 = 0; b0 < batch; b0 += n->chunk[k]) {
    int m = batch - b0 < n->chunk[k] ? batch - b0 : n->chunk[k];
    size_t ld = (size_t)m * (size_t)HW;
    for (int j = 0; j < m; j++) {
      if (!gr->skip_params)
        ae_net_im2col_t(x + (size_t)(b0 + j) * ge->in_elems, ge->in_c, ge->in_h,
                        ge->in_w, nd->kernel, nd->stride, nd->padding,
                        nd->shape[1], nd->shape[2],
                        n->col + (size_t)j * (size_t)HW, ld);
      for (int c = 0; c < cout; c++)
        memcpy(gr->dyc + (size_t)c * ld + (size_t)j * (size_t)HW,
               dy + (size_t)(b0 + j) * ge->elems + (size_t)c * (size_t)HW,
               sizeof(ae_real) * (size_t)HW);
    }
    /* dW (cout x K) += dYc (cout x ld) col^T (ld x K) */
    if (!gr->skip_params)
      AE_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, cout, K, (int)ld, 1.0,
              gr->dyc, (int)ld, n->col, (int)ld, 1.0, gr->pw[k], K);
    if (!dx) continue;
    AE_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)ld, cout, 1.0,
            n->weight[k], K, gr->dyc, (int)ld, 0.0, gr->dcol, (int)ld);
    for (int j = 0; j < m; j++)
      ae_net_col2im_add_t(gr->dcol + (size_t)j * (size_t)HW, ge->in_c, ge->in_h,
                          ge->in_w, nd->kernel, nd->stride, nd->padding,
                          nd->shape[1], nd->shape[2],
                          dx + (size_t)(b0 + j) * ge->in_elems, ld);
  }
}

/* Train-mode BN: y = gamma * xhat + beta with xhat = (x - mean) * invstd
 * over the batch's B * plane values of each channel, so
 * dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)). */
static void backward_bn(ae_net_grad *gr, int k, ae_real *dx, int fresh) {
  ae_net *n = gr->n;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  const ae_real *dy = gr->g[k];
  size_t C = (size_t)ge->channels, P = ge->plane;
  int batch = gr->batch;
  double cnt = (double)batch * (double)P;
  /* The sums of eight channels at a time (ae_net_bn_backward_sums_t: each
   * channel's very chains), then each channel as before. */
  for (size_t c4 = 0; c4 < C; c4 += 8) {
    size_t nc = C - c4 < 8 ? C - c4 : 8;
    double sums_dy[8], sums_dyx[8];
    ae_net_bn_backward_sums_t(x, dy, batch, ge->elems, P, c4, nc,
                              n->bn_mean[k] + c4, n->bn_invstd[k] + c4, sums_dy,
                              sums_dyx);
    for (size_t c = c4; c < c4 + nc; c++) {
      double mean = n->bn_mean[k][c], inv = n->bn_invstd[k][c];
      double sdy = sums_dy[c - c4], sdyx = sums_dyx[c - c4];
      if (!gr->skip_params) {
        gr->pgam[k][c] += (ae_real)sdyx;
        gr->pbet[k][c] += (ae_real)sdy;
      }
      if (!dx) continue;
      double s = inv * (double)n->gamma[k][c];
      double mdy = sdy / cnt, mdyx = sdyx / cnt;
      for (int b = 0; b < batch; b++) {
        size_t off = (size_t)b * ge->elems + c * P;
        ae_net_bn_dx_plane_t(x + off, dy + off, P, mean, inv, s, mdy, mdyx,
                             fresh, dx + off);
      }
    }
  }
}

static void backward_act(ae_net_grad *gr, int k, ae_real *dx) {
  ae_net *n = gr->n;
  const ae_node *nd = &n->g->nodes[k];
  const ae_real *z = n->act[nd->inputs[0]];
  const ae_real *dy = gr->g[k];
  size_t count = (size_t)gr->batch * n->geom[k].elems;
  ae_net_act_backward_add_t(&nd->act, z, dy, count, dx);
}

/* dx += dy, vectorised. */
AE_VECTOR_LOOPS static void add_into(ae_real *dx, const ae_real *dy,
                                     size_t count) {
  for (size_t e = 0; e < count; e++)
    dx[e] += dy[e];
}

/* dx = 0 + dy: add_into on a zeroed dx, without reading it (a -0 of dy
 * becomes +0, as there). */
AE_VECTOR_LOOPS static void
store_into(ae_real *restrict dx, const ae_real *restrict dy, size_t count) {
  for (size_t e = 0; e < count; e++)
    dx[e] = (ae_real)0 + dy[e];
}

/* Pools, add, identity, flatten: linear maps without parameters. */
static int backward_pass_through(ae_net_grad *gr, int k) {
  ae_net *n = gr->n;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *dy = gr->g[k];
  size_t B = (size_t)gr->batch;
  if (nd->op == AE_OP_ZERO || nd->n_inputs < 1) return AE_OK;
  if (nd->op == AE_OP_AVG_POOL || nd->op == AE_OP_GLOBAL_AVG_POOL) {
    ae_real *dx = grad_of(gr, nd->inputs[0]);
    if (!dx) return AE_ENOMEM;
    size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
    for (size_t p = 0; p < B * (size_t)ge->in_c; p++) {
      if (nd->op == AE_OP_AVG_POOL) {
        ae_net_avg_pool_plane_adj_t(dy + p * ge->out_hw, ge->in_h, ge->in_w,
                                    nd->kernel, nd->stride, nd->padding,
                                    nd->count_include_pad, nd->shape[1],
                                    nd->shape[2], dx + p * hw_in);
      } else {
        ae_real g = dy[p] / (ae_real)hw_in;
        for (size_t i = 0; i < hw_in; i++)
          dx[p * hw_in + i] += g;
      }
    }
    return AE_OK;
  }
  /* ADD, IDENTITY, FLATTEN: every input receives dy. */
  size_t count = B * ge->elems;
  for (int i = 0; i < nd->n_inputs; i++) {
    int fresh;
    ae_real *dx = grad_of_maybe_fresh(gr, nd->inputs[i], &fresh);
    if (!dx) return AE_ENOMEM;
    if (fresh)
      store_into(dx, dy, count);
    else
      add_into(dx, dy, count);
  }
  return AE_OK;
}

/* The operators of net_ops.c: every input's gradient buffer, then the
 * adjoint (and a general conv's summed weight gradient). */
static int ops_backward(ae_net_grad *gr, int k) {
  ae_net *n = gr->n;
  const ae_node *nd = &n->g->nodes[k];
  for (int i = 0; i < nd->n_inputs; i++)
    if (!grad_of(gr, nd->inputs[i])) return AE_ENOMEM;
  ae_net_ops_backward(n, k, gr->batch, gr->g[k], gr->g, NULL,
                      gr->skip_params ? NULL : gr->pw[k], n->col, gr->dcol);
  return AE_OK;
}

static void zero_param_grads(ae_net_grad *gr) {
  ae_net *n = gr->n;
  for (int k = 0; k < n->g->n_nodes; k++) {
    const ae_plan_geom *ge = &n->geom[k];
    if (gr->pw[k]) memset(gr->pw[k], 0, sizeof(ae_real) * ge->n_weight);
    if (gr->pb[k])
      memset(gr->pb[k], 0, sizeof(ae_real) * (size_t)n->g->nodes[k].out);
    if (gr->pgam[k])
      memset(gr->pgam[k], 0, sizeof(ae_real) * (size_t)ge->channels);
    if (gr->pbet[k])
      memset(gr->pbet[k], 0, sizeof(ae_real) * (size_t)ge->channels);
  }
}

/* The sweep of ae_net_backward once node from's gradient is seeded. */
static int backward_sweep(ae_net_grad *gr, int from, int stop);

/* Resets gr for a backward of batch samples from node `from`: every
 * gradient released, the parameter gradients zeroed; *g0: from's
 * gradient buffer, for the caller to seed. */
static int backward_begin(ae_net_grad *gr, int batch, int from, ae_real **g0) {
  ae_net *n = gr->n;
  gr->batch = batch;
  for (int k = 0; k < n->g->n_nodes; k++) {
    release(gr, k);
    gr->live[k] = 0;
  }
  if (!gr->skip_params) zero_param_grads(gr);
  *g0 = grad_of(gr, from);
  return *g0 ? AE_OK : AE_ENOMEM;
}

int ae_net_backward(ae_net *n, ae_net_grad *gr, int batch, int from,
                    const double *seed, int stop) {
  if (!gr || gr->n != n || !seed || batch < 1 || batch > n->max_batch ||
      from < 0 || from >= n->g->n_nodes || stop >= from)
    return AE_EINVAL;
#ifndef AE_NET_DOUBLE
  gr->last_double = 0;
  if (n->use_double) {
    if (!n->dbl) return AE_EINVAL;
    if (!gr->dbl) {
      int rc = ae_net64_grad_create(n->dbl, &gr->dbl);
      if (rc) return rc;
    }
    ae_net64_grad_skip_params(gr->dbl, gr->skip_params);
    gr->last_double = 1;
    return ae_net64_backward(n->dbl, gr->dbl, batch, from, seed, stop);
  }
#endif
  ae_real *g0;
  int rc = backward_begin(gr, batch, from, &g0);
  if (rc) return rc;
  size_t count = (size_t)batch * n->geom[from].elems;
  for (size_t e = 0; e < count; e++)
    g0[e] = (ae_real)seed[e];
  return backward_sweep(gr, from, stop);
}

#ifndef AE_NET_DOUBLE
int ae_net_backward_f32(ae_net *n, ae_net_grad *gr, int batch, int from,
                        const float *seed, int stop) {
  if (!gr || gr->n != n || !seed || batch < 1 || batch > n->max_batch ||
      from < 0 || from >= n->g->n_nodes || stop >= from || n->use_double)
    return AE_EINVAL;
  gr->last_double = 0;
  ae_real *g0;
  int rc = backward_begin(gr, batch, from, &g0);
  if (rc) return rc;
  memcpy(g0, seed, sizeof(float) * (size_t)batch * n->geom[from].elems);
  return backward_sweep(gr, from, stop);
}

int ae_net_grad_node_f32(const ae_net_grad *gr, int node, const float **out) {
  const ae_net *n = gr->n;
  *out = NULL;
  if (gr->last_double || node < 0 || node >= n->g->n_nodes || gr->batch < 1 ||
      gr->live[node] == 2)
    return AE_EINVAL;
  if (gr->live[node]) *out = gr->g[node];
  return AE_OK;
}
#endif

static int backward_sweep(ae_net_grad *gr, int from, int stop) {
  ae_net *n = gr->n;
  for (int t = from; t > stop && t > 0; t--) {
    if (gr->live[t] != 1) continue; /* no gradient reached it */
    const ae_node *nd = &n->g->nodes[t];
    if (ae_net_ops_handles(nd)) {
      int rc = ops_backward(gr, t);
      if (rc) return rc;
      release(gr, t);
      continue;
    }
    ae_real *dx = NULL;
    int fresh = 0;
    if (nd->op == AE_OP_BATCH_NORM) {
      dx = grad_of_maybe_fresh(gr, nd->inputs[0], &fresh);
      if (!dx) return AE_ENOMEM;
    } else if (nd->op == AE_OP_CONV) {
      dx = grad_of_maybe_fresh(gr, nd->inputs[0], &fresh);
      if (!dx) return AE_ENOMEM;
    } else if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_ACT) {
      dx = grad_of(gr, nd->inputs[0]);
      if (!dx) return AE_ENOMEM;
    }
    switch (nd->op) {
    case AE_OP_LINEAR:
      backward_linear(gr, t, dx);
      break;
    case AE_OP_CONV:
      backward_conv(gr, t, dx, fresh);
      break;
    case AE_OP_BATCH_NORM:
      backward_bn(gr, t, dx, fresh);
      break;
    case AE_OP_ACT:
      backward_act(gr, t, dx);
      break;
    default: {
      int rc = backward_pass_through(gr, t);
      if (rc) return rc;
      break;
    }
    }
    release(gr, t);
  }
  return AE_OK;
}

int ae_net_grad_node(const ae_net_grad *gr, int node, double *out) {
#ifndef AE_NET_DOUBLE
  if (gr->last_double) return ae_net64_grad_node(gr->dbl, node, out);
#endif
  const ae_net *n = gr->n;
  if (node < 0 || node >= n->g->n_nodes || gr->batch < 1) return AE_EINVAL;
  size_t count = (size_t)gr->batch * n->geom[node].elems;
  if (gr->live[node] == 2) return AE_EINVAL; /* the sweep passed it */
  if (!gr->live[node]) {
    memset(out, 0, sizeof(double) * count);
    return AE_OK;
  }
  for (size_t e = 0; e < count; e++)
    out[e] = (double)gr->g[node][e];
  return AE_OK;
}

void ae_net_grad_skip_params(ae_net_grad *gr, int skip) {
  gr->skip_params = skip;
}

int ae_net_grad_param(const ae_net_grad *gr, int node, ae_net_param_kind kind,
                      double *out, size_t count) {
#ifndef AE_NET_DOUBLE
  if (gr->last_double)
    return ae_net64_grad_param(gr->dbl, node, kind, out, count);
#endif
  const ae_net *n = gr->n;
  if (node < 0 || node >= n->g->n_nodes || gr->skip_params) return AE_EINVAL;
  const ae_real *p = NULL;
  size_t have = 0;
  switch (kind) {
  case AE_NET_WEIGHT:
    p = gr->pw[node];
    have = n->geom[node].n_weight;
    break;
  case AE_NET_BIAS:
    p = gr->pb[node];
    have = (size_t)n->g->nodes[node].out;
    break;
  case AE_NET_GAMMA:
    p = gr->pgam[node];
    have = (size_t)n->geom[node].channels;
    break;
  case AE_NET_BETA:
    p = gr->pbet[node];
    have = (size_t)n->geom[node].channels;
    break;
  }
  if (!p || have != count) return AE_EINVAL;
  for (size_t e = 0; e < count; e++)
    out[e] = (double)p[e];
  return AE_OK;
}

int ae_net_forward64(ae_net *n, const float *x, int batch, double *logits) {
#ifndef AE_NET_DOUBLE
  ae_net64 *twin;
  int trc = ae_net_double_twin(n, &twin);
  if (trc) return trc;
  if (twin) return ae_net64_forward64(twin, x, batch, logits);
#endif
  int rc = ae_net_forward_buffers(n, x, batch);
  if (rc || !logits) return rc;
  return ae_net_activation64(n, n->g->output, batch, logits);
}

int ae_net_activation64(ae_net *n, int node, int batch, double *out) {
#ifndef AE_NET_DOUBLE
  if (n->use_double) {
    if (!n->dbl) return AE_EINVAL;
    return ae_net64_activation64(n->dbl, node, batch, out);
  }
#endif
  if (node < 0 || node >= n->g->n_nodes || batch < 1 || batch > n->max_batch)
    return AE_EINVAL;
  size_t count = (size_t)batch * n->geom[node].elems;
#ifdef AE_NET_DOUBLE
  memcpy(out, n->act[node], count * sizeof *out);
#else
  ae_f32_to_f64(n->act[node], count, out);
#endif
  return AE_OK;
}
