/* net_conv_direct.c: float32 convolution of one sample straight from its
 * input planes (stride 1, "same" padding, odd kernels), with AVX-512 or
 * with AVX2 and FMA (the latter below, from conv8_args on: its own
 * values, not sgemm's).
 *
 * im2col + sgemm writes a Cin*k*k x H*W matrix, has OpenBLAS pack it
 * again (the GEMM's M is only Cout = 16..64, so packing costs about as
 * much as the multiply) and, for chunks of samples, copies the outputs
 * back into the sample-major layout.  Here a tile of 8 output channels x
 * 48 output positions lives in 24 vector registers; for each column
 * (ci, ky, kx) of the would-be im2col matrix the 48 inputs are loaded from
 * the input plane shifted by (ky - pad, kx - pad), the taps that fall off
 * the plane masked to zero, and multiplied into the tile.
 *
 * The values are those of im2col + OpenBLAS's sgemm bit for bit: OpenBLAS
 * (0.3.21, SkylakeX kernels) forms every output element as one chain of
 * fused multiply-adds over its K block, in order, and splits K into
 * blocks of at most GEMM_Q = 448 (a remainder between Q and 2Q halves,
 * rounded up to 16; the threaded driver halves it without rounding, so
 * only K where both agree are replaced), adding the blocks' sums into C
 * in order.  The
 * same chain is formed here, and a masked tap adds w * 0, as the zero of
 * the im2col matrix does.  OpenBLAS's small-matrix kernel (M * N * K <=
 * 100^3) forms one chain over all of K, which is ours while K <= Q, but
 * sums a last partial group of 16 columns otherwise: such GEMMs are not
 * replaced.  Because all this is a property of the BLAS found at run
 * time, a comparison of both on random data (several shapes, K beyond
 * 2Q) runs once per process and any difference turns the direct path
 * off; the callers then keep im2col + sgemm.
 *
 * Pure functions on caller-owned memory, any thread; the one-time check's
 * result is process-wide (pthread_once). */
#include "gpu/host/net_internal.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_DIRECT_CONV 1
#include <immintrin.h>
#else
#define HAVE_DIRECT_CONV 0
#endif

/* OpenBLAS's K blocking (driver/level3/level3.c) for SkylakeX sgemm. */
#define BLAS_GEMM_Q 448
#define BLAS_UNROLL 16
/* At most this M * N * K, OpenBLAS uses its small-matrix kernel. */
#define SMALL_GEMM_MNK 1e6

/* Length of the K block that starts with `rest` columns left, as
 * OpenBLAS's single-threaded driver cuts it (level3.c). */
static int k_block(int rest) {
  if (rest >= 2 * BLAS_GEMM_Q) return BLAS_GEMM_Q;
  if (rest > BLAS_GEMM_Q)
    return ((rest / 2 + BLAS_UNROLL - 1) / BLAS_UNROLL) * BLAS_UNROLL;
  return rest;
}

/* 1 when the threaded driver (level3_thread.c, which halves a remainder
 * between Q and 2Q without rounding) cuts kk into the same blocks, so
 * that the values do not depend on the BLAS thread count. */
static int k_blocks_agree(size_t kk) {
  size_t rest = kk;
  while (rest > 0) {
    size_t one = rest >= 2 * BLAS_GEMM_Q ? BLAS_GEMM_Q
                 : rest > BLAS_GEMM_Q
                     ? (rest / 2 + BLAS_UNROLL - 1) / BLAS_UNROLL * BLAS_UNROLL
                     : rest;
    size_t threaded = rest >= 2 * BLAS_GEMM_Q ? BLAS_GEMM_Q
                      : rest > BLAS_GEMM_Q    ? (rest + 1) / 2
                                              : rest;
    if (one != threaded) return 0;
    rest -= one;
  }
  return 1;
}

/* Columns (ci, ky, kx) per block of sums: each output's chain runs over
 * the columns of conv8_block(k) input channels, and the blocks' sums are
 * added into y in order (a chain over all of K = cin k^2 would carry
 * about twice the round-off of OpenBLAS's blocked sgemm). */
#define CONV8_BLOCK_COLUMNS 144

static int conv8_block(int k) {
  int b = CONV8_BLOCK_COLUMNS / (k * k);
  return b > 0 ? b : 1;
}

static int conv_direct_kind(void);
static int runs_wino(int h, int wd, int k, int cin, int cout);

int ae_net_conv_direct_fits(const ae_node *nd, const ae_plan_geom *ge) {
  int k = nd->kernel;
  /* A 1 x 1 convolution with AVX2 stays a GEMM on the input itself (no
   * im2col): faster than the tiles here, which win at 3 x 3 and up. */
  if (k == 1 && conv_direct_kind() == AE_NET_DIRECT_OWN) return 0;
  return nd->op == AE_OP_CONV && nd->stride == 1 && k % 2 == 1 &&
         k <= AE_NET_DIRECT_MAX_K && nd->padding == (k - 1) / 2 &&
         nd->shape[1] == ge->in_h && nd->shape[2] == ge->in_w &&
         ge->out_hw <= AE_NET_DIRECT_MAX_HW;
}

#if HAVE_DIRECT_CONV

#define LANES 16
#define TILE_CO 8
#define TILE_PB 3 /* vectors of LANES positions per tile */

/* The geometry a tile needs; taps[v * k * k + ky * k + kx] keeps the
 * lanes of vector v (positions 16 v .. 16 v + 15) whose tap (ky, kx)
 * lies inside the plane (and drops lanes at or beyond hw). */
typedef struct {
  const float *w, *x;
  float *y;
  const __mmask16 *taps;
  const ptrdiff_t *shift; /* [ky * k + kx]: (ky - pad) * wd + kx - pad */
  int cin, h, wd, k, pad, hw, kk; /* kk = cin * k * k */
} conv_args;

static void tap_masks(int h, int wd, int k, int vectors, __mmask16 *taps) {
  int pad = (k - 1) / 2, hw = h * wd, k2 = k * k;
  memset(taps, 0, sizeof(*taps) * (size_t)vectors * (size_t)k2);
  for (int p = 0, oy = 0, ox = 0; p < hw; p++) {
    __mmask16 bit = (__mmask16)(1u << (p % LANES));
    __mmask16 *t = taps + (size_t)(p / LANES) * (size_t)k2;
    for (int ky = 0; ky < k; ky++) {
      int iy = oy + ky - pad;
      if (iy < 0 || iy >= h) continue;
      for (int kx = 0; kx < k; kx++) {
        int ix = ox + kx - pad;
        if (ix >= 0 && ix < wd) t[ky * k + kx] |= bit;
      }
    }
    if (++ox == wd) {
      ox = 0;
      oy++;
    }
  }
}

/* One tile: output channels co0 .. co0 + CO - 1, PB vectors of positions
 * from vector v0.  CO and PB are constants at every call, so the
 * accumulators stay in registers. */
__attribute__((target("avx512f"), always_inline)) static inline void
conv_tile(const conv_args *a, int co0, int v0, const int CO, const int PB) {
  const int k2 = a->k * a->k, p0 = v0 * LANES;
  for (int kb0 = 0; kb0 < a->kk;) {
    int kb1 = kb0 + k_block(a->kk - kb0);
    __m512 acc[TILE_CO][TILE_PB];
#pragma GCC unroll 8
    for (int c = 0; c < CO; c++)
#pragma GCC unroll 8
      for (int j = 0; j < PB; j++)
        acc[c][j] = _mm512_setzero_ps();
    int ci = kb0 / k2, tap = kb0 % k2;
    ptrdiff_t plane = (ptrdiff_t)ci * a->hw + p0;
    const float *wrow = a->w + (size_t)co0 * a->kk;
    for (int col = kb0; col < kb1; col++) {
      /* The shifted tap as an offset: a pointer is formed only for lanes
       * the mask keeps. */
      ptrdiff_t at = plane + a->shift[tap];
      __m512 v[TILE_PB];
#pragma GCC unroll 8
      for (int j = 0; j < PB; j++)
        v[j] = _mm512_maskz_loadu_ps(
            a->taps[(size_t)(v0 + j) * k2 + tap],
            (const char *)a->x + (at + j * LANES) * (ptrdiff_t)sizeof(float));
#pragma GCC unroll 8
      for (int c = 0; c < CO; c++) {
        __m512 wv = _mm512_set1_ps(wrow[(size_t)c * a->kk + col]);
#pragma GCC unroll 8
        for (int j = 0; j < PB; j++)
          acc[c][j] = _mm512_fmadd_ps(wv, v[j], acc[c][j]);
      }
      if (++tap == k2) {
        tap = 0;
        plane += a->hw;
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < PB; j++) {
      int left = a->hw - (p0 + j * LANES);
      __mmask16 keep =
          left >= LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
#pragma GCC unroll 8
      for (int c = 0; c < CO; c++) {
        float *dst = a->y + (size_t)(co0 + c) * a->hw + p0 + j * LANES;
        __m512 sum = acc[c][j];
        if (kb0 > 0) sum = _mm512_add_ps(_mm512_maskz_loadu_ps(keep, dst), sum);
        _mm512_mask_storeu_ps(dst, keep, sum);
      }
    }
    kb0 = kb1;
  }
}

#define TILE_CASE(CO, PB)                                                      \
  __attribute__((target("avx512f"))) static void conv_tile_##CO##_##PB(        \
      const conv_args *a, int co0, int v0) {                                   \
    conv_tile(a, co0, v0, CO, PB);                                             \
  }
TILE_CASE(8, 3)
TILE_CASE(8, 2)
TILE_CASE(8, 1)
TILE_CASE(4, 3)
TILE_CASE(4, 2)
TILE_CASE(4, 1)
TILE_CASE(1, 3)
TILE_CASE(1, 2)
TILE_CASE(1, 1)

typedef void (*tile_fn)(const conv_args *, int, int);

static tile_fn tile_for(int co, int pb) {
  static const tile_fn table[3][3] = {
      {conv_tile_1_1, conv_tile_1_2, conv_tile_1_3},
      {conv_tile_4_1, conv_tile_4_2, conv_tile_4_3},
      {conv_tile_8_1, conv_tile_8_2, conv_tile_8_3}};
  return table[co == 8 ? 2 : co == 4 ? 1 : 0][pb - 1];
}

/* The AVX2 convolution (AVX2 and FMA, no AVX-512): vectors of 8 output
 * positions within one output row (a row of wd positions takes
 * ceil(wd / 8) of them, the last one partial), read from a zero-padded
 * copy of the sample's input planes, so that each tap of a vector is one
 * unaligned load (a partial vector's extra lanes read the next row or
 * the tail, and are not stored).  A tile of CO x PB vectors keeps its sums
 * in registers; the call packs the weights once so that a tile's CO
 * weights of a column lie side by side (conv8_pack), and works out where
 * a tile's vectors start once for all its channel groups (the tile's
 * loop then spends its instructions on loads and multiply-adds: 13-18 %
 * more GFLOP/s on Zen 2 than with the weights read in place, the same
 * values).  Each output element is one chain of fused multiply-adds
 * over the columns (ci, ky, kx) in order from +0, the taps off the plane
 * adding w * 0; ae_net_conv8_ref is that chain in plain C.  These are not
 * OpenBLAS's values (its Haswell sgemm splits K into chains that depend
 * on the tile a row falls in), so on AVX2 the direct convolution is the
 * definition of a stride-1 "same" convolution's values. */
#define LANES8 8
#define TILE_PB8 4 /* vectors per tile at most (4 x 3 or 3 x 4) */
/* Floats past the last padded plane that a partial vector may read. */
#define PAD_TAIL8 LANES8
/* Vectors per plane up to which 3 x 4 tiles run (where they measured
 * faster than 4 x 3 on Zen 2). */
#define SMALL_PLANE_VECTORS 16

typedef struct {
  const float *w, *xp; /* xp: cin planes of hp x wp, zero borders */
  float *y;
  const ptrdiff_t *tap; /* [ky * k + kx]: ky * wp + kx */
  int cin, k2, kk, wd, wp;
  int block;                      /* input channels per block of sums */
  size_t plane, hw;               /* padded input plane, output plane */
  int oy[TILE_PB8], ox[TILE_PB8]; /* where the tile's vectors start */
} conv8_args;

/* One column of a tile: acc[c][j] += w[c] * x[j][at], the wider side's
 * operands loaded one at a time (16 registers: the sums, the narrow
 * side's operands, one more). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
conv8_column(__m256 *acc, const float *const *x, ptrdiff_t at, const float *w,
             const int CO, const int PB) {
  if (CO >= PB) {
    __m256 v[TILE_PB8];
#pragma GCC unroll 4
    for (int j = 0; j < PB; j++) {
      v[j] = _mm256_loadu_ps(x[j] + at);
      /* Held in a register: GCC otherwise folds the load into each of
       * the CO multiply-adds, CO loads instead of one. */
      __asm__("" : "+x"(v[j]));
    }
#pragma GCC unroll 4
    for (int c = 0; c < CO; c++) {
      __m256 wv = _mm256_broadcast_ss(w + c);
#pragma GCC unroll 4
      for (int j = 0; j < PB; j++)
        acc[c * PB + j] = _mm256_fmadd_ps(wv, v[j], acc[c * PB + j]);
    }
  } else {
    __m256 wv[TILE_PB8];
#pragma GCC unroll 4
    for (int c = 0; c < CO; c++)
      wv[c] = _mm256_broadcast_ss(w + c);
#pragma GCC unroll 4
    for (int j = 0; j < PB; j++) {
      __m256 v = _mm256_loadu_ps(x[j] + at);
#pragma GCC unroll 4
      for (int c = 0; c < CO; c++)
        acc[c * PB + j] = _mm256_fmadd_ps(wv[c], v, acc[c * PB + j]);
    }
  }
}

__attribute__((target("avx2,fma"), always_inline)) static inline void
conv8_tile(const conv8_args *a, int co0, const int CO, const int PB,
           __m256 *acc /* CO x PB, the caller's, of that very size */) {
  const float *xb[TILE_PB8];
  float *yb[TILE_PB8];
  int left[TILE_PB8];
#pragma GCC unroll 4
  for (int j = 0; j < PB; j++) {
    int oy = a->oy[j], ox = a->ox[j];
    xb[j] = a->xp + (size_t)oy * (size_t)a->wp + (size_t)ox;
    yb[j] = a->y + (size_t)oy * (size_t)a->wd + (size_t)ox;
    left[j] = a->wd - ox;
  }
  __m256i keep[TILE_PB8];
#pragma GCC unroll 4
  for (int j = 0; j < PB; j++)
    keep[j] = _mm256_cmpgt_epi32(_mm256_set1_epi32(left[j]),
                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  /* The tile's weights, packed column by column (conv8_pack). */
  const float *wt = a->w + (size_t)co0 * (size_t)a->kk;
  for (int cb = 0; cb < a->cin; cb += a->block) {
    int ce = cb + a->block < a->cin ? cb + a->block : a->cin;
#pragma GCC unroll 4
    for (int c = 0; c < CO; c++)
#pragma GCC unroll 4
      for (int j = 0; j < PB; j++)
        acc[c * PB + j] = _mm256_setzero_ps();
    const float *wc = wt + (size_t)cb * (size_t)a->k2 * CO;
    for (int ci = cb; ci < ce; ci++) {
      const size_t plane = (size_t)ci * a->plane;
      for (int t = 0; t < a->k2; t++, wc += CO)
        conv8_column(acc, xb, (ptrdiff_t)plane + a->tap[t], wc, CO, PB);
    }
#pragma GCC unroll 4
    for (int j = 0; j < PB; j++)
#pragma GCC unroll 4
      for (int c = 0; c < CO; c++) {
        /* The block's sums into y: stored by the first, added by the
         * rest. */
        float *dst = yb[j] + (size_t)(co0 + c) * a->hw;
        __m256 sum = acc[c * PB + j];
        if (left[j] >= LANES8) {
          if (cb > 0) sum = _mm256_add_ps(_mm256_loadu_ps(dst), sum);
          _mm256_storeu_ps(dst, sum);
        } else {
          if (cb > 0)
            sum = _mm256_add_ps(_mm256_maskload_ps(dst, keep[j]), sum);
          _mm256_maskstore_ps(dst, keep[j], sum);
        }
      }
  }
}

/* (The accumulators are declared here, CO x PB exactly: an array sized
 * for the largest tile is kept in memory, not in registers.) */
#define TILE8_CASE(CO, PB)                                                     \
  __attribute__((target("avx2,fma"))) static void conv8_tile_##CO##_##PB(      \
      const conv8_args *a, int co0) {                                          \
    __m256 acc[(CO) * (PB)];                                                   \
    conv8_tile(a, co0, CO, PB, acc);                                           \
  }
TILE8_CASE(4, 3)
TILE8_CASE(4, 2)
TILE8_CASE(4, 1)
TILE8_CASE(3, 4)
TILE8_CASE(3, 3)
TILE8_CASE(3, 2)
TILE8_CASE(3, 1)
TILE8_CASE(2, 4)
TILE8_CASE(2, 3)
TILE8_CASE(2, 2)
TILE8_CASE(2, 1)
TILE8_CASE(1, 4)
TILE8_CASE(1, 3)
TILE8_CASE(1, 2)
TILE8_CASE(1, 1)

typedef void (*tile8_fn)(const conv8_args *, int);

/* The tile of co output channels x pb vectors (co x pb <= 12). */
static tile8_fn tile8_for(int co, int pb) {
  static const tile8_fn table[4][4] = {
      {conv8_tile_1_1, conv8_tile_1_2, conv8_tile_1_3, conv8_tile_1_4},
      {conv8_tile_2_1, conv8_tile_2_2, conv8_tile_2_3, conv8_tile_2_4},
      {conv8_tile_3_1, conv8_tile_3_2, conv8_tile_3_3, conv8_tile_3_4},
      {conv8_tile_4_1, conv8_tile_4_2, conv8_tile_4_3, NULL}};
  return table[co - 1][pb - 1];
}

/* Floats of the padded copy of cin planes of an h x wd input. */
static size_t conv8_scratch(int cin, int h, int wd, int k) {
  return (size_t)cin * (size_t)(h + k - 1) * (size_t)(wd + k - 1) + PAD_TAIL8;
}

/* w (cout x kk, row-major) packed for tiles of co_main channels: the
 * group that starts at channel co0 (co of them, co_main or the last
 * rest) holds its kk columns at wpk + co0 * kk, column by column, the
 * group's co weights of a column side by side. */
static void conv8_pack(const float *w, int cout, size_t kk, int co_main,
                       float *wpk) {
  for (int co0 = 0; co0 < cout; co0 += co_main) {
    int co = cout - co0 < co_main ? cout - co0 : co_main;
    float *g = wpk + (size_t)co0 * kk;
    for (size_t col = 0; col < kk; col++)
      for (int c = 0; c < co; c++)
        g[col * (size_t)co + (size_t)c] = w[(size_t)(co0 + c) * kk + col];
  }
}

/* Tiles of 4 channels x 3 vectors, or of 3 x 4 on a small plane whose
 * vectors come in fours (8 x 8: two tiles, not 3 + 3 + 2). */
static void conv8_tiling(int h, int wd, int *co_main, int *pb_main) {
  int vectors = h * ((wd + LANES8 - 1) / LANES8);
  int small = vectors <= SMALL_PLANE_VECTORS && vectors % 4 == 0;
  *co_main = small ? 3 : 4, *pb_main = small ? 4 : 3;
}

/* The samples' convolutions with the padded copy in xp (conv8_scratch
 * floats, zeroed here once: the copies write the interiors only) and
 * the packed weights in wpk (cout * cin * k * k floats). */
static void conv8_run(const float *w, const float *x, size_t x_stride, int cin,
                      int h, int wd, int k, int cout, float *y, size_t y_stride,
                      int samples, float *xp, float *wpk) {
  int hp = h + k - 1, wp = wd + k - 1;
  int co_main, pb_main;
  conv8_tiling(h, wd, &co_main, &pb_main);
  conv8_pack(w, cout, (size_t)cin * (size_t)(k * k), co_main, wpk);
  ptrdiff_t tap[AE_NET_DIRECT_MAX_K * AE_NET_DIRECT_MAX_K];
  for (int ky = 0; ky < k; ky++)
    for (int kx = 0; kx < k; kx++)
      tap[ky * k + kx] = (ptrdiff_t)ky * wp + kx;
  int vpr = (wd + LANES8 - 1) / LANES8, vectors = h * vpr;
  conv8_args a = {.w = wpk,
                  .xp = xp,
                  .y = y,
                  .tap = tap,
                  .cin = cin,
                  .k2 = k * k,
                  .kk = cin * k * k,
                  .wd = wd,
                  .wp = wp,
                  .block = conv8_block(k),
                  .plane = (size_t)hp * (size_t)wp,
                  .hw = (size_t)h * (size_t)wd};
  memset(xp, 0, sizeof(float) * conv8_scratch(cin, h, wd, k));
  for (int s = 0; s < samples; s++) {
    ae_net_pad_planes(x + (size_t)s * x_stride, cin, h, wd, k, xp);
    a.y = y + (size_t)s * y_stride;
    for (int v0 = 0; v0 < vectors;) {
      int rest = vectors - v0;
      int pb = rest >= pb_main ? pb_main : rest;
      for (int j = 0; j < pb; j++) {
        a.oy[j] = (v0 + j) / vpr;
        a.ox[j] = (v0 + j) % vpr * LANES8;
      }
      for (int co0 = 0; co0 < cout;) {
        int co = cout - co0 >= co_main ? co_main : cout - co0;
        tile8_for(co, pb)(&a, co0);
        co0 += co;
      }
      v0 += pb;
    }
  }
}

/* conv8_run with its scratch (the padded planes, then the packed
 * weights), or the reference (the same values) when the scratch cannot
 * be had. */
static void conv8(const float *w, const float *x, size_t x_stride, int cin,
                  int h, int wd, int k, int cout, float *y, size_t y_stride,
                  int samples) {
  size_t padded = conv8_scratch(cin, h, wd, k);
  float *xp = malloc(sizeof(float) *
                     (padded + (size_t)cout * (size_t)cin * (size_t)(k * k)));
  if (!xp) {
    ae_net_conv8_ref(w, x, x_stride, cin, h, wd, k, cout, y, y_stride, samples);
    return;
  }
  conv8_run(w, x, x_stride, cin, h, wd, k, cout, y, y_stride, samples, xp,
            xp + padded);
  free(xp);
}

static int conv_direct_kind(void);

/* The AVX-512 kernel's geometry and run, without asking which kernel
 * runs here (check_direct_once calls them while deciding). */
static void geom512(int h, int wd, int k, ae_net_direct_geom *g) {
  int hw = h * wd, vectors = (hw + LANES - 1) / LANES;
  g->h = h, g->wd = wd, g->k = k;
  tap_masks(h, wd, k, vectors, g->taps);
  for (int ky = 0; ky < k; ky++)
    for (int kx = 0; kx < k; kx++)
      g->shift[ky * k + kx] =
          (ptrdiff_t)(ky - (k - 1) / 2) * wd + kx - (k - 1) / 2;
}

static void run512(const ae_net_direct_geom *g, const float *w, const float *x,
                   size_t x_stride, int cin, int cout, float *y,
                   size_t y_stride, int samples) {
  int h = g->h, wd = g->wd, k = g->k;
  int hw = h * wd, vectors = (hw + LANES - 1) / LANES;
  conv_args a = {w, x,  y, g->taps,     g->shift, cin,
                 h, wd, k, (k - 1) / 2, hw,       cin * k * k};
  for (int s = 0; s < samples; s++) {
    a.x = x + (size_t)s * x_stride;
    a.y = y + (size_t)s * y_stride;
    for (int v0 = 0; v0 < vectors;) {
      /* Tiles of 3 vectors; a last 4 goes as 2 + 2, not 3 + 1. */
      int left = vectors - v0;
      int pb = left == 4 ? 2 : left >= TILE_PB ? TILE_PB : left;
      for (int co0 = 0; co0 < cout;) {
        int co = cout - co0 >= 8 ? 8 : cout - co0 >= 4 ? 4 : 1;
        tile_for(co, pb)(&a, co0, v0);
        co0 += co;
      }
      v0 += pb;
    }
  }
}

void ae_net_conv_direct_geom(int h, int wd, int k, ae_net_direct_geom *g) {
  if (conv_direct_kind() == AE_NET_DIRECT_OWN) {
    g->h = h, g->wd = wd, g->k = k;
    return;
  }
  geom512(h, wd, k, g);
}

void ae_net_conv_direct_run(const ae_net_direct_geom *g, const float *w,
                            const float *x, size_t x_stride, int cin, int cout,
                            float *y, size_t y_stride, int samples) {
  if (runs_wino(g->h, g->wd, g->k, cin, cout)) {
    ae_net_conv_wino(w, x, x_stride, cin, g->h, g->wd, cout, y, y_stride,
                     samples);
    return;
  }
  if (conv_direct_kind() == AE_NET_DIRECT_OWN) {
    conv8(w, x, x_stride, cin, g->h, g->wd, g->k, cout, y, y_stride, samples);
    return;
  }
  run512(g, w, x, x_stride, cin, cout, y, y_stride, samples);
}

void ae_net_conv_direct(const float *w, const float *x, size_t x_stride,
                        int cin, int h, int wd, int k, int cout, float *y,
                        size_t y_stride, int samples) {
  if (runs_wino(h, wd, k, cin, cout)) {
    ae_net_conv_wino(w, x, x_stride, cin, h, wd, cout, y, y_stride, samples);
    return;
  }
  if (conv_direct_kind() == AE_NET_DIRECT_OWN) {
    conv8(w, x, x_stride, cin, h, wd, k, cout, y, y_stride, samples);
    return;
  }
  ae_net_direct_geom g;
  geom512(h, wd, k, &g);
  run512(&g, w, x, x_stride, cin, cout, y, y_stride, samples);
}

/* Random float32 in [-1, 1) with exact zeros sprinkled in (a ReLU's
 * output has many). */
static float check_value(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  if ((*s >> 28) == 0) return 0.0f;
  return (float)((*s >> 8) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

/* One shape: the direct values against im2col + sgemm, bit for bit. */
static int check_shape(int cin, int h, int wd, int k, int cout) {
  int hw = h * wd, kk = cin * k * k;
  size_t nw = (size_t)cout * kk, nx = (size_t)cin * hw, ny = (size_t)cout * hw;
  float *w = malloc(sizeof(float) * nw), *x = malloc(sizeof(float) * nx);
  float *col = malloc(sizeof(float) * (size_t)kk * hw);
  float *y0 = malloc(sizeof(float) * ny), *y1 = malloc(sizeof(float) * ny);
  int same = 0;
  if (w && x && col && y0 && y1) {
    uint32_t s = (uint32_t)(cin * 7919 + hw * 31 + k);
    for (size_t i = 0; i < nw; i++)
      w[i] = check_value(&s);
    for (size_t i = 0; i < nx; i++)
      x[i] = check_value(&s);
    ae_net_im2col_t(x, cin, h, wd, k, 1, (k - 1) / 2, h, wd, col, (size_t)hw);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, hw, kk, 1.0f,
                w, kk, col, hw, 0.0f, y0, hw);
    ae_net_direct_geom g;
    geom512(h, wd, k, &g);
    run512(&g, w, x, 0, cin, cout, y1, 0, 1);
    same = memcmp(y0, y1, sizeof(float) * ny) == 0;
  }
  free(w);
  free(x);
  free(col);
  free(y0);
  free(y1);
  return same;
}

static int direct_kind; /* AE_NET_DIRECT_OFF, _SGEMM or _OWN */

static void check_direct_once(void) {
  const char *env = getenv("AE_CONV_DIRECT");
  if (env && strcmp(env, "0") == 0) return;
  if (!ae_net_have_avx512()) {
    if (ae_net_have_avx2_fma()) direct_kind = AE_NET_DIRECT_OWN;
    return;
  }
  /* K of 98 .. 1152 (one block, a remainder split in halves, Q blocks
   * plus a split remainder), 1x1 and 3x3 .. 7x7 kernels, planes with a
   * tail vector, output channels in tiles of 8, 4 and 1; GEMMs that
   * ae_net_conv_direct_replaces lets it stand in for, blocked and small. */
  static const int shapes[][5] = {
      {16, 32, 32, 3, 16}, {64, 8, 8, 3, 64},  {128, 6, 6, 3, 40},
      {48, 10, 10, 3, 24}, {7, 20, 22, 5, 16}, {2, 30, 30, 7, 13},
      {64, 16, 16, 1, 64}, /* and in the small-matrix kernel: */
      {16, 32, 32, 1, 16}, {64, 8, 8, 1, 64},  {3, 32, 32, 3, 16},
      {32, 16, 16, 1, 32}, {1, 4, 4, 3, 16}};
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
    if (!check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3],
                     shapes[i][4]))
      return;
  direct_kind = AE_NET_DIRECT_SGEMM;
}

static int conv_direct_kind(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, check_direct_once);
  return direct_kind;
}

#else

static int conv_direct_kind(void) {
  return AE_NET_DIRECT_OFF;
}

void ae_net_conv_direct(const float *w, const float *x, size_t x_stride,
                        int cin, int h, int wd, int k, int cout, float *y,
                        size_t y_stride, int samples) {
  (void)w, (void)x, (void)x_stride, (void)cin, (void)h, (void)wd, (void)k;
  (void)cout, (void)y, (void)y_stride, (void)samples;
}

void ae_net_conv_direct_geom(int h, int wd, int k, ae_net_direct_geom *g) {
  g->h = h, g->wd = wd, g->k = k;
}

void ae_net_conv_direct_run(const ae_net_direct_geom *g, const float *w,
                            const float *x, size_t x_stride, int cin, int cout,
                            float *y, size_t y_stride, int samples) {
  (void)g, (void)w, (void)x, (void)x_stride, (void)cin, (void)cout, (void)y;
  (void)y_stride, (void)samples;
}

#endif

/* 1 when Winograd's F(2 x 2, 3 x 3) (net_conv_wino.c) is this
 * convolution's definition: a direct kind on (AVX-512, or AVX2 and FMA:
 * the same bits), a 3 x 3 kernel on planes it fits, unless
 * AE_CONV_WINOGRAD=0. */
static int wino_enabled;

static void check_wino_once(void) {
  const char *env = getenv("AE_CONV_WINOGRAD");
  wino_enabled = conv_direct_kind() != AE_NET_DIRECT_OFF &&
                 !(env && strcmp(env, "0") == 0);
}

static int runs_wino(int h, int wd, int k, int cin, int cout) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  if (k != 3) return 0;
  pthread_once(&once, check_wino_once);
  return wino_enabled && ae_net_conv_wino_fits(h, wd, cin, cout);
}

void ae_net_pad_planes(const float *x, int cin, int h, int wd, int k,
                       float *xp) {
  int pad = (k - 1) / 2, wp = wd + k - 1;
  size_t plane = (size_t)(h + k - 1) * (size_t)wp;
  for (int ci = 0; ci < cin; ci++) {
    const float *src = x + (size_t)ci * (size_t)h * (size_t)wd;
    float *dst =
        xp + (size_t)ci * plane + (size_t)pad * (size_t)wp + (size_t)pad;
    for (int y = 0; y < h; y++)
      memcpy(dst + (size_t)y * (size_t)wp, src + (size_t)y * (size_t)wd,
             sizeof(float) * (size_t)wd);
  }
}

int ae_net_conv_direct_kind(void) {
  return conv_direct_kind();
}

int ae_net_conv_direct_usable(void) {
  return conv_direct_kind() != AE_NET_DIRECT_OFF;
}

int ae_net_conv_direct_takes(const ae_node *nd, const ae_plan_geom *ge,
                             size_t columns) {
  return ae_net_conv_direct_fits(nd, ge) &&
         (ae_net_conv_direct_defines(ge->in_h, ge->in_w, nd->kernel, ge->in_c,
                                     nd->out) ||
          ae_net_conv_direct_replaces(nd->out, columns, ge->col_rows));
}

int ae_net_conv_direct_defines(int h, int wd, int k, int cin, int cout) {
  return conv_direct_kind() == AE_NET_DIRECT_OWN ||
         runs_wino(h, wd, k, cin, cout);
}

int ae_net_conv_direct_replaces(int cout, size_t columns, size_t kk) {
  /* With AVX2 the direct convolution's values are the definition. */
  if (conv_direct_kind() == AE_NET_DIRECT_OWN) return 1;
  /* OpenBLAS sends M * N * K <= 100^3 to its small-matrix kernel
   * (kernel/x86_64/sgemm_small_kernel_permit_skylakex.c): one chain over
   * all of K (no blocks), the same as ours while K <= Q, except for a
   * last partial group of 16 columns, which it sums otherwise. */
  if ((double)cout * (double)columns * (double)kk <= SMALL_GEMM_MNK) {
    if (columns % 16 != 0 || kk > BLAS_GEMM_Q) return 0;
  } else if (!k_blocks_agree(kk)) {
    return 0;
  }
  return conv_direct_kind() == AE_NET_DIRECT_SGEMM;
}

void ae_net_conv8_ref(const float *w, const float *x, size_t x_stride, int cin,
                      int h, int wd, int k, int cout, float *y, size_t y_stride,
                      int samples) {
  int pad = (k - 1) / 2, block = conv8_block(k);
  size_t hw = (size_t)h * (size_t)wd, kk = (size_t)cin * (size_t)k * (size_t)k;
  for (int s = 0; s < samples; s++)
    for (int co = 0; co < cout; co++)
      for (int oy = 0; oy < h; oy++)
        for (int ox = 0; ox < wd; ox++) {
          const float *wr = w + (size_t)co * kk;
          float out = 0.0f;
          for (int cb = 0; cb < cin; cb += block) {
            float acc = 0.0f;
            for (int ci = cb; ci < cin && ci < cb + block; ci++)
              for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                  int iy = oy + ky - pad, ix = ox + kx - pad;
                  float xv = iy >= 0 && iy < h && ix >= 0 && ix < wd
                                 ? x[(size_t)s * x_stride + (size_t)ci * hw +
                                     (size_t)iy * (size_t)wd + (size_t)ix]
                                 : 0.0f;
                  acc = fmaf(*wr++, xv, acc);
                }
            out = cb == 0 ? acc : out + acc;
          }
          y[(size_t)s * y_stride + (size_t)co * hw + (size_t)oy * (size_t)wd +
            (size_t)ox] = out;
        }
}

void ae_net_conv_flip_weights(const float *w, int cout, int cin, int k,
                              float *wf) {
  size_t k2 = (size_t)k * (size_t)k;
  for (int co = 0; co < cout; co++)
    for (int ci = 0; ci < cin; ci++)
      for (size_t t = 0; t < k2; t++)
        wf[((size_t)ci * (size_t)cout + (size_t)co) * k2 + (k2 - 1 - t)] =
            w[((size_t)co * (size_t)cin + (size_t)ci) * k2 + t];
}

/* d += t over count elements (elementwise: any vector width, the same
 * values). */
__attribute__((noinline)) AE_VECTOR_LOOPS static void
add_into(float *restrict d, const float *restrict t, size_t count) {
  for (size_t e = 0; e < count; e++)
    d[e] += t[e];
}

void ae_net_conv_direct_add(const float *wf, const float *dy, size_t dy_stride,
                            int cout, int h, int wd, int k, int cin, float *dx,
                            size_t dx_stride, int samples, float *tmp,
                            size_t tmp_samples) {
  for (size_t b0 = 0; b0 < (size_t)samples; b0 += tmp_samples) {
    size_t m =
        (size_t)samples - b0 < tmp_samples ? (size_t)samples - b0 : tmp_samples;
    ae_net_conv_direct(wf, dy + b0 * dy_stride, dy_stride, cout, h, wd, k, cin,
                       tmp, dx_stride, (int)m);
    add_into(dx + b0 * dx_stride, tmp, m * dx_stride);
  }
}
