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
 * arena's shared slots (net.c), zeroed when their first writer runs,
 * unless that writer is their only one and stores instead of adding.
 *
 * In float32 on AVX-512 (ae_net_conv_direct_usable) a stride-1 "same"
 * convolution skips im2col and the GEMMs: its row of G comes from the
 * zero-padded input planes and dY^T (16 output channels per vector), and
 * its dX is the direct convolution of dY with the flipped, transposed
 * weights.  With AVX2 and FMA both are formed the same way, 8 output
 * channels per vector (dX by the AVX2 direct convolution, with its own
 * values).  Each value of a row of G is one chain of fused multiply-adds
 * over the positions in order, ae_net_dw_direct_ref in plain C, which
 * test_net_conv_direct holds the tiles to bit for bit.  The rows sum in
 * another order than im2col + sgemm (float32 round-off, ~1e-7 of theta;
 * test_net_ntk holds it within the GEMM path's own spread from the
 * float64 twin).  The
 * float64 twin keeps the GEMMs.  With two OpenBLAS threads the
 * sample-parallel steps (those, BN, ReLU) and the Gram's row tiles
 * (net_gram.c) run in two parts on a helper thread started and joined
 * within the step (net_parts.c); the values do not depend on it.
 *
 * Runs on the thread that owns the ae_net (and its helper within a step,
 * on disjoint samples). */
#include "gpu/host/net_internal.h"

#include "api/status.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifndef AE_NET_DOUBLE
#include "gpu/host/net64.h"
#endif
#if AE_NET_AVX512
#include "gpu/host/transpose8.h"
#include <immintrin.h>
#endif

/* Columns of G widened to float64 at a time for the Gram (a block of
 * batch x GRAM_BLOCK doubles stays in cache for dsyrk). */
#define GRAM_BLOCK 256

/* Not inlined: the vectorising attribute belongs to the loop's own
 * function (a caller inlining it would compile it scalar). */
__attribute__((noinline)) AE_VECTOR_LOOPS static void
to_double_rows(const ae_real *restrict src, size_t count,
               double *restrict dst) {
  for (size_t i = 0; i < count; i++)
    dst[i] = (double)src[i];
}

/* d += t over count elements. */
__attribute__((noinline)) AE_VECTOR_LOOPS static void
add_into(ae_real *restrict d, const ae_real *restrict t, size_t count) {
  for (size_t e = 0; e < count; e++)
    d[e] += t[e];
}

#ifndef AE_NET_DOUBLE
typedef struct {
  const float *g;
  int batch;
  size_t P;
  double scale;
  double *theta;
} gram_args;

static void gram_part(void *arg, int part, int parts) {
  const gram_args *d = arg;
  ae_net_gram_f32_part(d->g, d->batch, d->P, d->scale, d->theta, part, parts);
}
#endif

/* theta (lower triangle, float64) += scale * G G^T for G = batch rows of
 * P elements, by dsyrk in float64: a float32 Gram of ~1e5 products loses
 * ~1e-4 of lambda_min on ill-conditioned NTKs, float64 keeps it at the
 * float32 forward's own noise.  With AVX-512, or AVX2 and FMA, the
 * float32 build runs net_gram.c's kernel instead (rows widened in
 * registers; twice dsyrk's rate with AVX-512, 1.2x on Zen 2's AVX2), its
 * row tiles split between the threads' parts (the same bits for 1 or 2,
 * and on both instruction sets).  g lies at the start of a buffer of
 * cap_doubles doubles.  Otherwise the float32 build widens G's rows to
 * float64 GRAM_BLOCK columns at a time into the buffer's free second half
 * (one pass that stays in cache; dsyrk sums the blocks into theta), or,
 * for a short P, all of G in place. */
static void gram_accumulate(ae_real *g, int batch, size_t P, double scale,
                            double *theta, size_t cap_doubles, int threads) {
  double *gd = (double *)(void *)g;
#ifndef AE_NET_DOUBLE
  if (ae_net_gram_f32_usable()) {
    gram_args d = {g, batch, P, scale, theta};
    ae_net_run_parts(threads, (size_t)batch * P, gram_part, &d);
    return;
  }
  size_t B = (size_t)batch;
  /* Doubles the float rows occupy, rounded up to a cache line. */
  size_t used = ((B * P + 1) / 2 + 7) & ~(size_t)7;
  if (P > 2 * GRAM_BLOCK && used + B * GRAM_BLOCK <= cap_doubles) {
    double *blk = gd + used;
    for (size_t c0 = 0; c0 < P; c0 += GRAM_BLOCK) {
      size_t w = P - c0 < GRAM_BLOCK ? P - c0 : GRAM_BLOCK;
      for (size_t b = 0; b < B; b++)
        to_double_rows(g + b * P + c0, w, blk + b * w);
      cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, (int)w, scale,
                  blk, (int)w, 1.0, theta, batch);
    }
    return;
  }
  /* From the end down: double i overwrites floats 2i and 2i+1, which
   * belong to doubles >= i, already written. */
  for (size_t i = (size_t)batch * P; i-- > 0;)
    gd[i] = (double)g[i];
#else
  (void)cap_doubles;
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

/* The backward's scratch sizes (as net.c reserves them): dcol in
 * elements, gd in doubles. */
typedef struct {
  size_t dcol, gd;
  unsigned char *store; /* per node: its step stores (not adds) its dx */
  int threads;          /* parts of the sample-parallel steps, 1 or 2 */
} ntk_scratch;

/* 1 when convolution k's input gradient runs as a direct convolution of
 * dY with the flipped, transposed weights (a stride-1 "same" convolution
 * is its own adjoint's shape): float32 with ae_net_conv_direct usable,
 * the flipped weights and one sample's dX fitting in dcol. */
static int conv_dx_direct(const ae_net *n, int k, const ntk_scratch *sc) {
#ifdef AE_NET_DOUBLE
  (void)n, (void)k, (void)sc;
  return 0;
#else
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  if (nd->op != AE_OP_CONV || !ae_net_conv_direct_fits(nd, ge)) return 0;
  size_t wf = (ge->n_weight + 15) & ~(size_t)15;
  return wf + ge->in_elems <= sc->dcol && ae_net_conv_direct_usable();
#endif
}

#ifndef AE_NET_DOUBLE
typedef struct {
  ae_net *n;
  int k, batch, store;
  const ntk_scratch *sc;
  const float *wf; /* the flipped, transposed weights */
} dx_args;

/* conv_dx_by_direct's samples of one part (the tmp of part i is the i-th
 * share of dcol after the weights). */
static void dx_part(void *arg, int part, int parts) {
  const dx_args *d = arg;
  const ae_node *nd = &d->n->g->nodes[d->k];
  const ae_plan_geom *ge = &d->n->geom[d->k];
  const float *dy = d->n->grad[d->k];
  float *dx = d->n->grad[nd->inputs[0]];
  int cin = ge->in_c, cout = nd->out, kk = nd->kernel;
  size_t lo, hi;
  ae_net_part_range((size_t)d->batch, part, parts, &lo, &hi);
  if (d->store) {
    ae_net_conv_direct(d->wf, dy + lo * ge->elems, ge->elems, cout, ge->in_h,
                       ge->in_w, kk, cin, dx + lo * ge->in_elems, ge->in_elems,
                       (int)(hi - lo));
    return;
  }
  size_t off = (ge->n_weight + 15) & ~(size_t)15;
  size_t per = (d->sc->dcol - off) / ge->in_elems / (size_t)parts;
  float *tmp = d->n->dcol + off + (size_t)part * per * ge->in_elems;
  ae_net_conv_direct_add(d->wf, dy + lo * ge->elems, ge->elems, cout, ge->in_h,
                         ge->in_w, kk, cin, dx + lo * ge->in_elems,
                         ge->in_elems, (int)(hi - lo), tmp, per);
}

/* dx (+)= the adjoint of convolution k applied to dy, over batch
 * samples: with w'[ci][co][ky][kx] = w[co][ci][k-1-ky][k-1-kx] (in dcol),
 * dX = conv(dY, w') with the same padding.  Stored straight into dx when
 * this step is its only writer, else formed in dcol after w' and added. */
static void conv_dx_by_direct(ae_net *n, int k, int batch, int store,
                              const ntk_scratch *sc) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const float *w = n->weight[k];
  float *wf = n->dcol;
  int cin = ge->in_c, cout = nd->out, k2 = nd->kernel * nd->kernel;
  ae_net_conv_flip_weights(w, cout, cin, nd->kernel, wf);
  dx_args da = {n, k, batch, store, sc, wf};
  size_t off = (ge->n_weight + 15) & ~(size_t)15;
  int parts = (sc->dcol - off) / ge->in_elems >= 2 ? sc->threads : 1;
  ae_net_run_parts(parts, (size_t)batch * ge->elems * (size_t)k2 * (size_t)cin,
                   dx_part, &da);
}
#endif

#if AE_NET_AVX512
/* Per-sample weight gradients of a stride-1 "same" convolution without
 * im2col or packing: for each position p (row-major over the plane) and
 * column c = (ci, ky, kx), dW[c][co] += x_pad[ci][p + tap offset] *
 * dY^T[p][co], 16 output channels per vector, a tile of R columns x JB
 * vectors in registers, the input broadcast from a zero-padded copy of
 * the plane.  Each value is one chain of fused multiply-adds over p in
 * order.  The row comes out column-major (c, then co): the Gram only
 * needs the same order for every sample. */
typedef struct {
  const float *dyt;  /* [hw][cout] */
  const float *xpad; /* [cin][hp][wp] */
  const int *base;   /* per column: ci * hp * wp + ky * wp + kx */
  int h, w, wp, cout;
  float *out; /* [cin * k * k][cout] */
} dw_args;

__attribute__((target("avx512f"), always_inline)) static inline void
dw_tile(const dw_args *a, int c0, int j0, const int R, const int JB) {
  __m512 acc[28][4];
#pragma GCC unroll 28
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int j = 0; j < JB; j++)
      acc[r][j] = _mm512_setzero_ps();
  const float *xr[28];
#pragma GCC unroll 28
  for (int r = 0; r < R; r++)
    xr[r] = a->xpad + a->base[c0 + r];
  for (int oy = 0; oy < a->h; oy++) {
    const float *dyrow = a->dyt + (size_t)oy * (size_t)a->w * (size_t)a->cout;
    size_t q0 = (size_t)oy * (size_t)a->wp;
    for (int ox = 0; ox < a->w; ox++) {
      __m512 d[4];
#pragma GCC unroll 4
      for (int j = 0; j < JB; j++)
        d[j] = _mm512_loadu_ps(dyrow + (size_t)ox * (size_t)a->cout +
                               (size_t)(j0 + j) * 16);
      size_t q = q0 + (size_t)ox;
#pragma GCC unroll 28
      for (int r = 0; r < R; r++) {
        __m512 xb = _mm512_set1_ps(xr[r][q]);
#pragma GCC unroll 4
        for (int j = 0; j < JB; j++)
          acc[r][j] = _mm512_fmadd_ps(xb, d[j], acc[r][j]);
      }
    }
  }
#pragma GCC unroll 28
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int j = 0; j < JB; j++)
      _mm512_storeu_ps(a->out + (size_t)(c0 + r) * (size_t)a->cout +
                           (size_t)(j0 + j) * 16,
                       acc[r][j]);
}

#define DW_TILE(R, JB)                                                         \
  __attribute__((target("avx512f"))) static void dw_tile_##R##_##JB(           \
      const dw_args *a, int c0, int j0) {                                      \
    dw_tile(a, c0, j0, R, JB);                                                 \
  }
DW_TILE(28, 1)
DW_TILE(4, 1)
DW_TILE(1, 1)
DW_TILE(14, 2)
DW_TILE(4, 2)
DW_TILE(1, 2)
DW_TILE(7, 4)
DW_TILE(1, 4)

typedef void (*dw_tile_fn)(const dw_args *, int, int);

/* The same tile with AVX2 and FMA: 8 output channels per vector (j0 and
 * JB count vectors of 8), R x JB accumulators within 16 registers.  Each
 * value is the same chain of fused multiply-adds over p in order, from
 * +0: ae_net_dw_direct_ref's, as the AVX-512 tile's. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dw_tile8(const dw_args *a, int c0, int j0, const int R, const int JB) {
  __m256 acc[12][2];
#pragma GCC unroll 12
  for (int r = 0; r < R; r++)
#pragma GCC unroll 2
    for (int j = 0; j < JB; j++)
      acc[r][j] = _mm256_setzero_ps();
  const float *xr[12];
#pragma GCC unroll 12
  for (int r = 0; r < R; r++)
    xr[r] = a->xpad + a->base[c0 + r];
  /* (Pointers stepped per position, the bounds in locals: the loop had
   * a multiply and a load of its bound per position.) */
  const size_t cout = (size_t)a->cout;
  const int h = a->h, w = a->w;
  const float *dp = a->dyt + (size_t)j0 * 8;
  for (int oy = 0; oy < h; oy++) {
    size_t q = (size_t)oy * (size_t)a->wp;
    for (int ox = 0; ox < w; ox++, q++, dp += cout) {
      __m256 d[2];
#pragma GCC unroll 2
      for (int j = 0; j < JB; j++)
        d[j] = _mm256_loadu_ps(dp + (size_t)j * 8);
#pragma GCC unroll 12
      for (int r = 0; r < R; r++) {
        __m256 xb = _mm256_broadcast_ss(xr[r] + q);
#pragma GCC unroll 2
        for (int j = 0; j < JB; j++)
          acc[r][j] = _mm256_fmadd_ps(xb, d[j], acc[r][j]);
      }
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; r++)
#pragma GCC unroll 2
    for (int j = 0; j < JB; j++)
      _mm256_storeu_ps(a->out + (size_t)(c0 + r) * (size_t)a->cout +
                           (size_t)(j0 + j) * 8,
                       acc[r][j]);
}

#define DW_TILE8(R, JB)                                                        \
  __attribute__((target("avx2,fma"))) static void dw_tile8_##R##_##JB(         \
      const dw_args *a, int c0, int j0) {                                      \
    dw_tile8(a, c0, j0, R, JB);                                                \
  }
DW_TILE8(6, 2)
DW_TILE8(2, 2)
DW_TILE8(1, 2)
DW_TILE8(12, 1)
DW_TILE8(4, 1)
DW_TILE8(1, 1)

/* One sample's dW with the AVX2 tiles (Cout a multiple of 8). */
static void dw_sample8(const dw_args *a, int columns) {
  int J = a->cout / 8, JB = J % 2 == 0 ? 2 : 1;
  const int big = JB == 2 ? 6 : 12, mid = JB == 2 ? 2 : 4;
  dw_tile_fn tile_big = JB == 2 ? dw_tile8_6_2 : dw_tile8_12_1;
  dw_tile_fn tile_mid = JB == 2 ? dw_tile8_2_2 : dw_tile8_4_1;
  dw_tile_fn tile_one = JB == 2 ? dw_tile8_1_2 : dw_tile8_1_1;
  for (int j0 = 0; j0 < J; j0 += JB) {
    int c0 = 0;
    for (; c0 + big <= columns; c0 += big)
      tile_big(a, c0, j0);
    for (; c0 + mid <= columns; c0 += mid)
      tile_mid(a, c0, j0);
    for (; c0 < columns; c0++)
      tile_one(a, c0, j0);
  }
}

/* One sample's dW (cin * k * k columns) into out. */
static void dw_sample(const dw_args *a, int columns) {
  if (!ae_net_have_avx512()) {
    dw_sample8(a, columns);
    return;
  }
  int J = a->cout / 16, JB = J % 4 == 0 ? 4 : J % 2 == 0 ? 2 : 1;
  static const int big[5] = {0, 28, 14, 0, 7};
  static const dw_tile_fn tile_big[5] = {0, dw_tile_28_1, dw_tile_14_2, 0,
                                         dw_tile_7_4};
  static const dw_tile_fn tile_four[5] = {0, dw_tile_4_1, dw_tile_4_2, 0, 0};
  static const dw_tile_fn tile_one[5] = {0, dw_tile_1_1, dw_tile_1_2, 0,
                                         dw_tile_1_4};
  for (int j0 = 0; j0 < J; j0 += JB) {
    int c0 = 0;
    for (; c0 + big[JB] <= columns; c0 += big[JB])
      tile_big[JB](a, c0, j0);
    for (; tile_four[JB] && c0 + 4 <= columns; c0 += 4)
      tile_four[JB](a, c0, j0);
    for (; c0 < columns; c0++)
      tile_one[JB](a, c0, j0);
  }
}

/* 1 when conv k's per-sample dW runs through dw_sample: float32, a
 * stride-1 "same" convolution, the padded input, dY^T and the column
 * offsets fitting in col, the direct convolution usable here, and Cout a
 * multiple of 16 with AVX-512 (8 with AVX2). */
static int conv_dw_direct(const ae_net *n, int k, size_t col_cap) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  /* (The direct convolution's kind decides: AVX-512 or AVX2 + FMA, and
   * AE_CONV_DIRECT; fits leaves 1 x 1 out with AVX2.) */
  if (!ae_net_conv_direct_fits(nd, ge) || !ae_net_dw_direct_usable(nd->out))
    return 0;
  return ae_net_dw_direct_scratch(ge->in_c, ge->in_h, ge->in_w, nd->kernel,
                                  nd->out) <= col_cap;
}

/* dyt[p][co] = dy[co][p] for cout planes of hw: the reference. */
static void transpose_planes_ref(const float *dy, int cout, size_t hw,
                                 size_t p0, float *dyt) {
  for (size_t p = p0; p < hw; p++)
    for (int co = 0; co < cout; co++)
      dyt[p * (size_t)cout + (size_t)co] = dy[(size_t)co * hw + p];
}

/* The same copy in blocks of 8 planes x 8 positions transposed in
 * registers when cout is a multiple of 8 (the scalar loop's strided
 * reads were 3-4 % of the NTK), the reference for the last hw % 8
 * positions. */
__attribute__((target("avx2"))) static void
transpose_planes8(const float *dy, int cout, size_t hw, float *dyt) {
  size_t p = 0;
  for (; p + 8 <= hw; p += 8)
    for (int c0 = 0; c0 < cout; c0 += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(dy + (size_t)(c0 + i) * hw + p);
      /* Rows (c0 + i) of 8 positions -> rows (p + i) of 8 channels. */
      ae_transpose8(r);
#pragma GCC unroll 8
      for (int i = 0; i < 8; i++)
        _mm256_storeu_ps(dyt + (p + (size_t)i) * (size_t)cout + (size_t)c0,
                         r[i]);
    }
  transpose_planes_ref(dy, cout, hw, p, dyt);
}

/* dyt = dy^T (cout planes of hw positions -> hw rows of cout). */
static void transpose_planes(const float *dy, int cout, size_t hw, float *dyt) {
  if (cout % 8 == 0 && ae_net_have_avx2_fma())
    transpose_planes8(dy, cout, hw, dyt);
  else
    transpose_planes_ref(dy, cout, hw, 0, dyt);
}

/* The padded planes, dY^T and the column offsets in scratch, in that
 * order. */
static void dw_layout(float *scratch, int cin, int h, int w, int k, int cout,
                      float **xpad, float **dyt, int **base) {
  size_t plane = (size_t)(h + k - 1) * (size_t)(w + k - 1);
  *xpad = scratch;
  *dyt = scratch + (((size_t)cin * plane + 15) & ~(size_t)15);
  *base = (int *)(void *)(*dyt + (size_t)cout * (size_t)h * (size_t)w);
}

void ae_net_dw_direct(const float *x, size_t x_stride, const float *dy,
                      size_t dy_stride, int samples, int cin, int h, int w,
                      int k, int cout, float *out, size_t out_stride,
                      float *scratch) {
  if (!ae_net_dw_direct_usable(cout)) {
    for (int b = 0; b < samples; b++)
      ae_net_dw_direct_ref(x + (size_t)b * x_stride, dy + (size_t)b * dy_stride,
                           cin, h, w, k, cout, out + (size_t)b * out_stride);
    return;
  }
  int pad = (k - 1) / 2, wp = w + k - 1, columns = cin * k * k;
  size_t hw = (size_t)h * (size_t)w, plane = (size_t)(h + k - 1) * (size_t)wp;
  float *xpad, *dyt;
  int *base;
  dw_layout(scratch, cin, h, w, k, cout, &xpad, &dyt, &base);
  for (int c = 0; c < columns; c++) {
    int ci = c / (k * k), t = c % (k * k);
    base[c] = ci * (int)plane + (t / k) * wp + t % k;
  }
  if (pad > 0) memset(xpad, 0, sizeof(float) * (size_t)cin * plane);
  dw_args a = {dyt, xpad, base, h, w, wp, cout, NULL};
  for (int b = 0; b < samples; b++) {
    ae_net_pad_planes(x + (size_t)b * x_stride, cin, h, w, k, xpad);
    transpose_planes(dy + (size_t)b * dy_stride, cout, hw, dyt);
    a.out = out + (size_t)b * out_stride;
    dw_sample(&a, columns);
  }
}

typedef struct {
  ae_net *n;
  int k, batch;
  float *grows;
} dw_part_args;

/* Rows b of G for one part's samples (ae_net_dw_direct); part 0's
 * scratch is col, part 1's dcol (free until dX). */
static void dw_part(void *arg, int part, int parts) {
  const dw_part_args *d = arg;
  ae_net *n = d->n;
  const ae_node *nd = &n->g->nodes[d->k];
  const ae_plan_geom *ge = &n->geom[d->k];
  size_t lo, hi;
  ae_net_part_range((size_t)d->batch, part, parts, &lo, &hi);
  if (hi <= lo) return;
  ae_net_dw_direct(n->act[nd->inputs[0]] + lo * ge->in_elems, ge->in_elems,
                   n->grad[d->k] + lo * ge->elems, ge->elems, (int)(hi - lo),
                   ge->in_c, ge->in_h, ge->in_w, nd->kernel, nd->out,
                   d->grows + lo * ge->n_weight, ge->n_weight,
                   part == 0 ? n->col : n->dcol);
}

static void conv_dw_by_direct(ae_net *n, int k, int batch, float *grows,
                              int threads) {
  dw_part_args d = {n, k, batch, grows};
  ae_net_run_parts(threads,
                   (size_t)batch * n->geom[k].n_weight * n->geom[k].out_hw,
                   dw_part, &d);
}
#endif

#ifndef AE_NET_DOUBLE
int ae_net_dw_direct_usable(int cout) {
#if AE_NET_AVX512
  return ae_net_conv_direct_usable() &&
         cout % (ae_net_have_avx512() ? 16 : 8) == 0;
#else
  (void)cout;
  return 0;
#endif
}

size_t ae_net_dw_direct_scratch(int cin, int h, int w, int k, int cout) {
  size_t plane = (size_t)(h + k - 1) * (size_t)(w + k - 1);
  return (((size_t)cin * plane + 15) & ~(size_t)15) +
         (size_t)cout * (size_t)h * (size_t)w + (size_t)cin * (size_t)(k * k) +
         32;
}

void ae_net_dw_direct_ref(const float *x, const float *dy, int cin, int h,
                          int w, int k, int cout, float *out) {
  int pad = (k - 1) / 2;
  size_t hw = (size_t)h * (size_t)w;
  for (int ci = 0; ci < cin; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        size_t c =
            ((size_t)ci * (size_t)k + (size_t)ky) * (size_t)k + (size_t)kx;
        for (int co = 0; co < cout; co++) {
          float acc = 0.0f;
          for (int oy = 0; oy < h; oy++)
            for (int ox = 0; ox < w; ox++) {
              int iy = oy + ky - pad, ix = ox + kx - pad;
              float xv =
                  iy >= 0 && iy < h && ix >= 0 && ix < w
                      ? x[(size_t)ci * hw + (size_t)iy * (size_t)w + (size_t)ix]
                      : 0.0f;
              acc = fmaf(
                  xv, dy[(size_t)co * hw + (size_t)oy * (size_t)w + (size_t)ox],
                  acc);
            }
          out[c * (size_t)cout + (size_t)co] = acc;
        }
      }
}
#endif
#if !AE_NET_AVX512 && !defined(AE_NET_DOUBLE)
void ae_net_dw_direct(const float *x, size_t x_stride, const float *dy,
                      size_t dy_stride, int samples, int cin, int h, int w,
                      int k, int cout, float *out, size_t out_stride,
                      float *scratch) {
  (void)scratch;
  for (int b = 0; b < samples; b++)
    ae_net_dw_direct_ref(x + (size_t)b * x_stride, dy + (size_t)b * dy_stride,
                         cin, h, w, k, cout, out + (size_t)b * out_stride);
}
#endif

/* Whether conv node k's per-sample weight gradients dW_b = dY_b col_b^T
 * are all +0 without forming them: its input is all zeros over the batch
 * (a convolution after NB201's `none` edges) and dY finite (Inf * 0 is
 * NaN).  Every dW path starts its sums at +0, so it would write +0, and
 * the Gram of zero rows adds +0 to theta, which leaves it as it is (theta
 * holds no -0: its sums start at +0).  test_net_conv_direct compares the
 * NTK with conv_zero_reference. */
static int conv_dw_zero(const ae_net *n, int k, int batch) {
  const ae_plan_geom *ge = &n->geom[k];
  return !n->conv_zero_reference &&
         ae_net_all_zero(n->act[n->g->nodes[k].inputs[0]],
                         (size_t)batch * ge->in_elems) &&
         ae_net_all_finite(n->grad[k], (size_t)batch * ge->elems);
}

static void backward_conv(ae_net *n, int k, int batch,
                          ae_ntk_parameterization par, double *theta,
                          const ntk_scratch *sc) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  const ae_real *dy = n->grad[k];
  ae_real *dx = n->grad[nd->inputs[0]];
  int plain = nd->kernel == 1 && nd->stride == 1 && nd->padding == 0;
  int dx_direct = dx && conv_dx_direct(n, k, sc);
  int K = (int)ge->col_rows, HW = (int)ge->out_hw, cout = nd->out;
  size_t P = ge->n_weight;
  int chunk = plain ? 1 : n->chunk[k];
  ae_real *grows = (ae_real *)n->gd; /* batch x P, fits in gd */
  double t0 = ae_net_clock(n);
  int dw_zero = conv_dw_zero(n, k, batch);
  if (dw_zero) n->conv_zero_skipped++;
  int dw_direct = 0;
#if AE_NET_AVX512
  dw_direct = !dw_zero && conv_dw_direct(n, k, sc->dcol);
  if (dw_direct) {
    conv_dw_by_direct(n, k, batch, grows, sc->threads);
    ae_net_tick(n, AE_NET_PROF_BWD_DW, &t0);
  }
#endif
  /* Otherwise im2col + a GEMM per sample, and dX unless it runs direct. */
  int dw_done = dw_direct || dw_zero;
  for (int b0 = 0; b0 < batch && !(dw_done && (!dx || dx_direct));
       b0 += chunk) {
    int m = batch - b0 < chunk ? batch - b0 : chunk;
    size_t ld = (size_t)m * (size_t)HW;
    const ae_real *col = x + (size_t)b0 * ge->in_elems;
    if (!plain && !dw_done) {
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
    for (int j = 0; j < m && !dw_done; j++)
      AE_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, cout, K, HW, 1.0,
              dy + (size_t)(b0 + j) * ge->elems, HW,
              col + (size_t)j * (size_t)HW, (int)ld, 0.0,
              grows + (size_t)(b0 + j) * P, K);
    if (!dw_done) ae_net_tick(n, AE_NET_PROF_BWD_DW, &t0);
    if (!dx || dx_direct) continue;
    if (plain) {
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
#ifndef AE_NET_DOUBLE
  if (dx_direct) {
    conv_dx_by_direct(n, k, batch, sc->store[k], sc);
    ae_net_tick(n, AE_NET_PROF_BWD_DX, &t0);
  }
#endif
  if (dw_zero) return;
  gram_accumulate(grows, batch, P, weight_scale(n, k, par), theta, sc->gd,
                  sc->threads);
  ae_net_tick(n, AE_NET_PROF_GRAM, &t0);
}

#if AE_NET_AVX512
/* Lanes 8..15 (AVX-512F only, no DQ). */
AE_AVX512_FN
static inline __m256 high_half(__m512 v) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* One (sample, channel) plane of frozen-statistics BN backward in 16
 * lanes: returns sum dy * ((x - mean) * inv) in float64 (two chains of 8
 * lanes, fused multiply-adds) and sets dx = dy * s or adds it. */
AE_AVX512_FN
static double bn_plane_avx512(const float *x, const float *dy, float *dx,
                              size_t P, double mean, double inv, float s,
                              int store) {
  __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
  __m512d vm = _mm512_set1_pd(mean), vi = _mm512_set1_pd(inv);
  __m512 vs = _mm512_set1_ps(s);
  for (size_t i = 0; i < P; i += 16) {
    __mmask16 m =
        P - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (P - i)) - 1u);
    __m512 d = _mm512_maskz_loadu_ps(m, dy + i);
    __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
    __m512d d1 = _mm512_cvtps_pd(high_half(d));
    __m512d x0 = _mm512_cvtps_pd(_mm512_castps512_ps256(xv));
    __m512d x1 = _mm512_cvtps_pd(high_half(xv));
    acc0 = _mm512_fmadd_pd(d0, _mm512_mul_pd(_mm512_sub_pd(x0, vm), vi), acc0);
    acc1 = _mm512_fmadd_pd(d1, _mm512_mul_pd(_mm512_sub_pd(x1, vm), vi), acc1);
    if (!dx) continue;
    __m512 g = _mm512_mul_ps(d, vs);
    if (!store) g = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), g);
    _mm512_mask_storeu_ps(dx + i, m, g);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
}
#endif

typedef struct {
  ae_net *n;
  int k, batch, store;
} bn_args;

/* gamma's gradient of one (sample, channel) plane: sum dy * ((x - mean) *
 * inv), one float64 chain in order. */
__attribute__((optimize("fp-contract=off"))) static double
bn_gamma_sum(const ae_real *x, const ae_real *dy, size_t P, double mean,
             double inv) {
  double g = 0.0;
  for (size_t i = 0; i < P; i++)
    g += (double)dy[i] * (((double)x[i] - mean) * inv);
  return g;
}

/* bn_gamma_sum of four planes P apart (channels c .. c + 3 of a sample),
 * each plane's very chain, the four interleaved: one chain waits on its
 * adds' latency, four keep the adders busy. */
__attribute__((optimize("fp-contract=off"))) static void
bn_gamma_sums4(const ae_real *x, const ae_real *dy, size_t P,
               const double *mean, const double *inv, double *g) {
  double g0 = 0.0, g1 = 0.0, g2 = 0.0, g3 = 0.0;
  const double m0 = mean[0], m1 = mean[1], m2 = mean[2], m3 = mean[3];
  const double v0 = inv[0], v1 = inv[1], v2 = inv[2], v3 = inv[3];
  for (size_t i = 0; i < P; i++) {
    g0 += (double)dy[i] * (((double)x[i] - m0) * v0);
    g1 += (double)dy[P + i] * (((double)x[P + i] - m1) * v1);
    g2 += (double)dy[2 * P + i] * (((double)x[2 * P + i] - m2) * v2);
    g3 += (double)dy[3 * P + i] * (((double)x[3 * P + i] - m3) * v3);
  }
  g[0] = g0, g[1] = g1, g[2] = g2, g[3] = g3;
}

/* BN backward of one part's samples: gamma's per-sample gradients into
 * gd, dx (+)= dy * gamma * invstd. */
static void bn_part(void *arg, int part, int parts) {
  const bn_args *d = arg;
  ae_net *n = d->n;
  int k = d->k, store = d->store;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  const ae_real *dy = n->grad[k];
  ae_real *dx = n->grad[nd->inputs[0]];
  size_t C = (size_t)ge->channels, P = ge->plane, lo, hi;
  ae_net_part_range((size_t)d->batch, part, parts, &lo, &hi);
  for (size_t b = lo; b < hi; b++)
    for (size_t c = 0; c < C; c++) {
      size_t off = b * ge->elems + c * P;
      double mean = n->bn_mean[k][c], inv = n->bn_invstd[k][c];
      ae_real s = (ae_real)(inv * n->gamma[k][c]);
#if AE_NET_AVX512
      if (ae_net_have_avx512()) {
        n->gd[b * C + c] = bn_plane_avx512(
            x + off, dy + off, dx ? dx + off : NULL, P, mean, inv, s, store);
        continue;
      }
#endif
      /* gamma's gradients: four planes at a time from a multiple of 4. */
      if (c % 4 == 0 && c + 4 <= C)
        bn_gamma_sums4(x + off, dy + off, P, n->bn_mean[k] + c,
                       n->bn_invstd[k] + c, n->gd + b * C + c);
      else if (c / 4 * 4 + 4 > C)
        n->gd[b * C + c] = bn_gamma_sum(x + off, dy + off, P, mean, inv);
      if (!dx) continue;
      if (store)
        for (size_t i = 0; i < P; i++)
          dx[off + i] = dy[off + i] * s;
      else
        for (size_t i = 0; i < P; i++)
          dx[off + i] += dy[off + i] * s;
    }
}

static void backward_bn(ae_net *n, int k, int batch, double *theta, int store,
                        int threads) {
  bn_args d = {n, k, batch, store};
  ae_net_run_parts(threads, (size_t)batch * n->geom[k].elems, bn_part, &d);
  int C = n->geom[k].channels;
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, C, 1.0, n->gd, C,
              1.0, theta, batch);
}

#if AE_NET_AVX512
/* ReLU's backward in 16 lanes: dx (+)= z > 0 ? dy : 0, the same values as
 * the portable loop. */
AE_AVX512_FN
static void relu_backward_avx512(const float *z, const float *dy, float *dx,
                                 size_t count, int store) {
  __m512 zero = _mm512_setzero_ps();
  for (size_t i = 0; i < count; i += 16) {
    __mmask16 m = count - i >= 16 ? (__mmask16)0xFFFF
                                  : (__mmask16)((1u << (count - i)) - 1u);
    __mmask16 pos = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, z + i),
                                            zero, _CMP_GT_OQ);
    __m512 g = _mm512_maskz_loadu_ps(pos, dy + i);
    if (!store) g = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), g);
    _mm512_mask_storeu_ps(dx + i, m, g);
  }
}
#endif

/* 1 when node k's gradient may be stored by step t of the backward
 * rather than added: ReLU, BN and a conv whose dX runs direct. */
static int step_can_store(const ae_net *n, int t, const ntk_scratch *sc) {
  const ae_node *nd = &n->g->nodes[t];
  switch (nd->op) {
  case AE_OP_BATCH_NORM:
    return 1;
  case AE_OP_ACT:
    return nd->act.fn == AE_ACT_RELU;
  case AE_OP_CONV:
    return conv_dx_direct(n, t, sc);
  default:
    return 0;
  }
}

typedef struct {
  const ae_real *z, *dy;
  ae_real *dx;
  size_t count;
  int store;
} relu_args;

/* The ReLU's backward, stored or added: dy where z > 0 (ordered: a NaN z
 * gives 0), else 0.  dy is read whatever z's sign, so that the select
 * vectorises (a load under a condition kept the loop scalar, with a
 * branch per element). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
AE_VECTOR_LOOPS static void
relu_backward_lanes(const ae_real *z, const ae_real *dy, ae_real *dx,
                    size_t count, int store) {
  if (store)
    for (size_t i = 0; i < count; i++) {
      ae_real g = dy[i];
      dx[i] = z[i] > (ae_real)0 ? g : (ae_real)0;
    }
  else
    for (size_t i = 0; i < count; i++) {
      ae_real g = dy[i];
      dx[i] += z[i] > (ae_real)0 ? g : (ae_real)0;
    }
}

/* ReLU's backward over one part's share of the elements. */
static void relu_part(void *arg, int part, int parts) {
  const relu_args *d = arg;
  size_t lo, hi;
  ae_net_part_range(d->count / 16, part, parts, &lo, &hi);
  lo *= 16;
  hi = part == parts - 1 ? d->count : hi * 16;
  const ae_real *z = d->z + lo, *dy = d->dy + lo;
  ae_real *dx = d->dx + lo;
  size_t count = hi - lo;
#if AE_NET_AVX512
  if (ae_net_have_avx512()) {
    relu_backward_avx512(z, dy, dx, count, d->store);
    return;
  }
#endif
  relu_backward_lanes(z, dy, dx, count, d->store);
}

static void backward_act(ae_net *n, int k, int batch, int store, int threads) {
  const ae_node *nd = &n->g->nodes[k];
  ae_real *dx = n->grad[nd->inputs[0]];
  if (!dx) return;
  const ae_real *z = n->act[nd->inputs[0]];
  const ae_real *dy = n->grad[k];
  size_t count = (size_t)batch * n->geom[k].elems;
  if (nd->act.fn == AE_ACT_RELU) {
    relu_args d = {z, dy, dx, count, store};
    ae_net_run_parts(threads, count, relu_part, &d);
    return;
  }
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
      add_into(dx, dy, count);
    }
    return;
  }
  default:
    return;
  }
}

/* Fills sc: the scratch sizes, and per node whether its step stores its
 * dx (the step is the only writer of its input's gradient slot: the input
 * is read by that node alone, has a slot of its own and is not the
 * output; the slot is then not zeroed).  0 or AE_ENOMEM. */
static int plan_steps(const ae_net *n, ntk_scratch *sc) {
  int nn = n->g->n_nodes;
  size_t B = (size_t)n->max_batch;
  sc->dcol = sc->gd = 0;
  for (int k = 0; k < nn; k++) {
    const ae_node *nd = &n->g->nodes[k];
    const ae_plan_geom *ge = &n->geom[k];
    size_t gd = 0;
    if (nd->op == AE_OP_CONV) {
      size_t col = ge->col_rows * ge->out_hw * (size_t)n->chunk[k];
      if (col > sc->dcol) sc->dcol = col;
      gd = ge->n_weight;
    } else if (nd->op == AE_OP_LINEAR) {
      gd = ge->in_elems;
    } else if (nd->op == AE_OP_BATCH_NORM) {
      gd = (size_t)ge->channels;
    }
    if (B * gd > sc->gd) sc->gd = B * gd;
  }
  sc->threads = ae_net_parts_threads();
  /* (A graph's node count is never negative; said so for GCC's range
   * analysis, which otherwise warns of a huge allocation.) */
  size_t nodes = nn > 0 ? (size_t)nn : 0;
  sc->store = calloc(nodes, 1);
  int *readers = calloc(nodes, sizeof(int));
  if (!sc->store || !readers) {
    free(readers);
    free(sc->store);
    return AE_ENOMEM;
  }
  for (int t = 0; t < nn; t++)
    for (int i = 0; i < n->g->nodes[t].n_inputs; i++)
      readers[n->g->nodes[t].inputs[i]]++;
  const ae_plan *p = n->plan;
  for (int t = 0; t < nn; t++) {
    const ae_node *nd = &n->g->nodes[t];
    if (!n->grad[t] || nd->n_inputs != 1) continue;
    int k = nd->inputs[0];
    if (k == n->g->output || !n->grad[k] || readers[k] != 1 ||
        p->grad_alias[k] >= 0 || p->grad_first[k] != t)
      continue;
    sc->store[t] = (unsigned char)step_can_store(n, t, sc);
  }
  free(readers);
  return AE_OK;
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
  ntk_scratch sc;
  rc = plan_steps(n, &sc);
  if (rc) return rc;
  size_t B = (size_t)batch;
  memset(theta, 0, sizeof(double) * B * B);
  int nn = n->g->n_nodes;
  const ae_plan *p = n->plan;
  for (int t = nn - 1; t >= 0 && rc == AE_OK; t--) {
    /* Zero the slots whose first writer is step t (a gradient sharing
     * its reader's slot has nothing to zero, one that step t stores
     * neither). */
    for (int k = 0; k < nn; k++) {
      if (p->grad_first[k] != t || p->grad_alias[k] >= 0) continue;
      if (sc.store[t] && k == n->g->nodes[t].inputs[0]) continue;
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
      backward_conv(n, t, batch, par, theta, &sc);
      rc = ae_job_checkpoint(ctl);
      break;
    case AE_OP_BATCH_NORM:
      backward_bn(n, t, batch, theta, sc.store[t], sc.threads);
      rc = ae_job_checkpoint(ctl);
      break;
    case AE_OP_ACT:
      backward_act(n, t, batch, sc.store[t], sc.threads);
      break;
    default:
      backward_pass_through(n, t, batch);
      break;
    }
    if (nd->op != AE_OP_CONV) ae_net_tick(n, AE_NET_PROF_BWD_OTHER, &t0);
  }
  free(sc.store);
  if (rc) return rc;
  for (size_t i = 0; i < B; i++)
    for (size_t j = i + 1; j < B; j++)
      theta[i * B + j] = theta[j * B + i];
  return AE_OK;
}
