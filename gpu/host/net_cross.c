/* net_cross.c: sums of products of float32 (or float64) rows in float64,
 * for the feature metrics' C x C covariances (feature_isotropy: each
 * channel's row centred by its mean), correlations (feature_corr) and the
 * trainability's C_in x C_out pair matrices (gradients, not centred):
 * m[i][j] += sum over the columns k of (a_i[k] - ma_i) (b_j[k] - mb_j).
 *
 * Both were cblas_dsyrk / cblas_dgemm calls on rows widened to float64
 * first: a pass writing every value of the batch as a double (8 MiB per
 * block output at 64 x 16 x 32 x 32), a pass centring it in place, and
 * BLAS packing it again, for products of 16 x 16 pairs that BLAS's
 * small-matrix paths ran at a fraction of its rate.  Here each sample's
 * rows are widened and centred CHUNK columns at a time (or several
 * samples' rows side by side) into an L2-sized buffer, and tiles of pairs
 * sweep it: with AVX-512F 4 x 4 pairs whose 16 vectors of 8 lanes stay in
 * registers (8 loads, 16 fused multiply-adds a step); with AVX2 and FMA
 * 3 x 3 pairs, lanes 0-3 then 4-7; else one pair at a time in plain C.
 * Each tile's lanes wait in memory between chunks.
 *
 * The order of every float64 operation is fixed, whatever the kernel:
 * column k of a sample goes into lane k mod 8 of its pair by one fused
 * multiply-add of the two centred values (each row padded with zeros to
 * a multiple of 8 columns), samples in order, and each pair's 8 lanes are
 * summed as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) and added to
 * m once per call.  ae_cross_sums_ref is that in plain C (fma from
 * libm); tests/unit/test_net_conv_direct holds every kernel to it bit for
 * bit.  The means (ae_cross_means) are summed in 8 lanes the same way.
 *
 * Pure functions on caller-owned memory; any thread. */
#include "api/status.h"
#include "gpu/host/net.h"
#include "gpu/host/net_internal.h"
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#if AE_NET_AVX512
#include <immintrin.h>
#endif

#define LANES 8
/* The largest tile side of the kernels. */
#define TILE_MAX 4

/* The lanes' sum in the kernels' order. */
static double lanes_sum(const double l[LANES]) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* Whether pair (i, j) is computed: every pair, or j <= i for `lower`. */
static int wanted(int lower, int i, int j) {
  return !lower || j <= i;
}

/* Element k of row i of sample `sample` of a row set, as a double. */
static double value_at(const ae_cross_rows *x, int sample, int i, size_t k) {
  size_t at = (size_t)sample * x->sample + (size_t)i * x->row + k;
  return x->x ? (double)x->x[at] : x->xd[at];
}

static double mean_of(const ae_cross_rows *x, int i) {
  return x->mean ? x->mean[i] : 0.0;
}

__attribute__((optimize("fp-contract=off"))) void
ae_cross_sums_ref(const ae_cross_rows *a, const ae_cross_rows *b, int samples,
                  size_t w, int lower, double *m, size_t ldm) {
  size_t padded = (w + LANES - 1) / LANES * LANES;
  for (int i = 0; i < a->rows; i++)
    for (int j = 0; j < b->rows; j++) {
      if (!wanted(lower, i, j)) continue;
      double mi = mean_of(a, i), mj = mean_of(b, j);
      double l[LANES] = {0};
      for (int s = 0; s < samples; s++)
        for (size_t k = 0; k < padded; k++) {
          double x = k < w ? value_at(a, s, i, k) - mi : 0.0;
          double y = k < w ? value_at(b, s, j, k) - mj : 0.0;
          l[k % LANES] = fma(x, y, l[k % LANES]);
        }
      m[(size_t)i * ldm + (size_t)j] += lanes_sum(l);
    }
}

/* The sum of one row over the samples in 8 lanes (column k of each
 * sample into lane k mod 8, samples in order): float32 rows p (sample
 * apart), or float64 rows pd. */
AE_AVX2_CLONES AE_VECTOR_LOOPS static double row_sum(const float *p,
                                                     const double *pd,
                                                     size_t sample, int samples,
                                                     size_t w) {
  double l[LANES] = {0};
  size_t whole = w / LANES * LANES;
  for (int s = 0; s < samples; s++) {
    size_t at = (size_t)s * sample;
    if (p) {
      for (size_t k = 0; k < whole; k += LANES)
        for (int q = 0; q < LANES; q++)
          l[q] += (double)p[at + k + (size_t)q];
      for (size_t k = whole; k < w; k++)
        l[k - whole] += (double)p[at + k];
    } else {
      for (size_t k = 0; k < whole; k += LANES)
        for (int q = 0; q < LANES; q++)
          l[q] += pd[at + k + (size_t)q];
      for (size_t k = whole; k < w; k++)
        l[k - whole] += pd[at + k];
    }
  }
  return lanes_sum(l);
}

void ae_cross_means(const ae_cross_rows *x, int samples, size_t w,
                    double *mean) {
  double count = (double)samples * (double)w;
  for (int i = 0; i < x->rows; i++) {
    size_t at = (size_t)i * x->row;
    mean[i] = row_sum(x->x ? x->x + at : NULL, x->x ? NULL : x->xd + at,
                      x->sample, samples, w) /
              count;
  }
}

/* Columns per chunk: a chunk's widened rows (up to 64 x 256 doubles, 128
 * KiB) stay in L2 while every tile reads them (256 measured faster than
 * 128, 512 and 1024 on a Zen 4 for the covariances and pair matrices of
 * NB201's three stages; the values do not depend on it).  A multiple of
 * LANES. */
#define CHUNK 256

/* The most lanes a call keeps at once (8 MiB: 128 x 128 pairs, 362 x 362
 * in one block); larger row sets go in blocks of a's rows, each a pass
 * over the samples, so that a 2048 x 4096 pair matrix (a ResNet-50's
 * unshuffled block) needs 8 MiB of lanes beside it, not 512. */
#define LANES_BYTES_MAX ((size_t)8 << 20)

/* Rows i0 .. i0 + side - 1 of a chunk's widened rows (ld apart; a row
 * past `rows`: row 0, computed and dropped). */
static void tile_rows(const double *wide, size_t ld, int rows, int i0, int side,
                      const double **row) {
  for (int r = 0; r < side; r++)
    row[r] = wide + (size_t)(i0 + r < rows ? i0 + r : 0) * ld;
}

/* A kernel's tile: lanes[((i0 + r) * ld + j0 + s) * 8 ..] += the products
 * of `cols` columns of rows a[r] and b[s], for every r, s < its side (the
 * lanes padded to whole tiles; pairs not wanted are computed and
 * dropped). */
typedef void (*tile_fn)(const double *const *a, const double *const *b,
                        size_t cols, double *lanes, size_t ld, int i0, int j0);

#if AE_NET_AVX512
#define TILE 4

AE_AVX512_FN static void avx512_tile(const double *const *a,
                                     const double *const *b, size_t cols,
                                     double *lanes, size_t ld, int i0, int j0) {
  __m512d acc[TILE][TILE];
  double *at = lanes + ((size_t)i0 * ld + (size_t)j0) * LANES;
#pragma GCC unroll 4
  for (int r = 0; r < TILE; r++)
#pragma GCC unroll 4
    for (int s = 0; s < TILE; s++)
      acc[r][s] = _mm512_loadu_pd(at + ((size_t)r * ld + (size_t)s) * LANES);
  for (size_t k = 0; k < cols; k += LANES) {
    __m512d av[TILE];
#pragma GCC unroll 4
    for (int r = 0; r < TILE; r++)
      av[r] = _mm512_loadu_pd(a[r] + k);
#pragma GCC unroll 4
    for (int s = 0; s < TILE; s++) {
      __m512d bv = _mm512_loadu_pd(b[s] + k);
#pragma GCC unroll 4
      for (int r = 0; r < TILE; r++)
        acc[r][s] = _mm512_fmadd_pd(av[r], bv, acc[r][s]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < TILE; r++)
#pragma GCC unroll 4
    for (int s = 0; s < TILE; s++)
      _mm512_storeu_pd(at + ((size_t)r * ld + (size_t)s) * LANES, acc[r][s]);
}

/* With AVX2 and FMA: 3 x 3 pairs per tile (9 accumulators and 4 rows in
 * 16 registers), lanes 0-3 in one pass over the columns and lanes 4-7 in
 * a second, each lane the same chain as in the reference. */
#define AVX2_FN __attribute__((target("avx2,fma"), optimize("fp-contract=off")))
#define SIDE 3

AVX2_FN static void avx2_tile(const double *const *a, const double *const *b,
                              size_t cols, double *lanes, size_t ld, int i0,
                              int j0) {
  double *at = lanes + ((size_t)i0 * ld + (size_t)j0) * LANES;
  for (size_t h = 0; h < LANES; h += 4) {
    __m256d acc[SIDE][SIDE];
#pragma GCC unroll 3
    for (int r = 0; r < SIDE; r++)
#pragma GCC unroll 3
      for (int s = 0; s < SIDE; s++)
        acc[r][s] =
            _mm256_loadu_pd(at + ((size_t)r * ld + (size_t)s) * LANES + h);
    for (size_t k = h; k < cols; k += LANES) {
      __m256d av[SIDE];
#pragma GCC unroll 3
      for (int r = 0; r < SIDE; r++)
        av[r] = _mm256_loadu_pd(a[r] + k);
#pragma GCC unroll 3
      for (int s = 0; s < SIDE; s++) {
        __m256d bv = _mm256_loadu_pd(b[s] + k);
#pragma GCC unroll 3
        for (int r = 0; r < SIDE; r++)
          acc[r][s] = _mm256_fmadd_pd(av[r], bv, acc[r][s]);
      }
    }
#pragma GCC unroll 3
    for (int r = 0; r < SIDE; r++)
#pragma GCC unroll 3
      for (int s = 0; s < SIDE; s++)
        _mm256_storeu_pd(at + ((size_t)r * ld + (size_t)s) * LANES + h,
                         acc[r][s]);
  }
}
#endif

/* A tile of one pair in plain C: the reference's chain. */
__attribute__((optimize("fp-contract=off"))) static void
plain_tile(const double *const *a, const double *const *b, size_t cols,
           double *lanes, size_t ld, int i0, int j0) {
  double *l = lanes + ((size_t)i0 * ld + (size_t)j0) * LANES;
  for (size_t k = 0; k < cols; k++)
    l[k % LANES] = fma(a[0][k], b[0][k], l[k % LANES]);
}

/* Rows lo .. hi - 1 of samples q0 .. q0 + count - 1, columns c0 .. c0 +
 * cw - 1 of each, widened and centred, side by side in wide's rows (ld
 * doubles; row i at wide + (i - lo) * ld): each sample's columns padded
 * with zeros to `padded`, so that column k of a sample stays in lane k
 * mod 8. */
AE_AVX2_CLONES AE_VECTOR_LOOPS static void
widen_rows(const ae_cross_rows *x, int lo, int hi, int q0, int count, size_t c0,
           size_t cw, size_t padded, double *wide, size_t ld) {
  for (int i = lo; i < hi; i++) {
    double mean = mean_of(x, i);
    for (int q = 0; q < count; q++) {
      size_t at = (size_t)(q0 + q) * x->sample + (size_t)i * x->row + c0;
      double *dst = wide + (size_t)(i - lo) * ld + (size_t)q * padded;
      if (x->x) {
        const float *src = x->x + at;
        for (size_t k = 0; k < cw; k++)
          dst[k] = (double)src[k] - mean;
      } else {
        const double *src = x->xd + at;
        for (size_t k = 0; k < cw; k++)
          dst[k] = src[k] - mean;
      }
      for (size_t k = cw; k < padded; k++)
        dst[k] = 0.0;
    }
  }
}

static size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

int ae_cross_kernel(void) {
#if AE_NET_AVX512
  if (ae_net_have_avx512()) return AE_CROSS_AVX512;
  if (ae_net_have_avx2_fma()) return AE_CROSS_AVX2;
#endif
  return AE_CROSS_PLAIN;
}

int ae_cross_sums(const ae_cross_rows *a, const ae_cross_rows *b, int samples,
                  size_t w, int lower, double *m, size_t ldm) {
  return ae_cross_sums_with(ae_cross_kernel(), a, b, samples, w, lower, m, ldm);
}

int ae_cross_sums_with(int kernel, const ae_cross_rows *a,
                       const ae_cross_rows *b, int samples, size_t w, int lower,
                       double *m, size_t ldm) {
  int side = 1;
  tile_fn tile = plain_tile;
#if AE_NET_AVX512
  if (kernel == AE_CROSS_AVX512)
    side = TILE, tile = avx512_tile;
  else if (kernel == AE_CROSS_AVX2)
    side = SIDE, tile = avx2_tile;
#else
  (void)kernel;
#endif
  if (a->rows <= 0 || b->rows <= 0) return AE_OK; /* no pairs */
  /* A chunk: `group` whole samples side by side when a sample's padded
   * row fits CHUNK, else CHUNK columns of one sample. */
  if (samples < 0) samples = 0;
  size_t padded_w = round_up(w, LANES), chunk = CHUNK;
  int group = 1;
  if (padded_w > 0 && padded_w <= CHUNK && samples > 0) {
    group = (int)(CHUNK / padded_w);
    if (group > samples) group = samples;
    chunk = padded_w * (size_t)group;
  }
  /* The lanes of at most LANES_BYTES_MAX at once: a's rows in blocks,
   * each a sweep of the samples (a pair's chain is the same in any
   * block). */
  size_t rb = round_up((size_t)b->rows, (size_t)side);
  size_t block = LANES_BYTES_MAX / (rb * LANES * sizeof(double));
  block = block / (size_t)side * (size_t)side;
  if (block < (size_t)side) block = (size_t)side;
  if (block > round_up((size_t)a->rows, (size_t)side))
    block = round_up((size_t)a->rows, (size_t)side);
  int same = a == b;
  double *lanes = calloc(block * rb * LANES + 1, sizeof *lanes);
  double *wb = malloc(((size_t)b->rows * chunk + 1) * sizeof *wb);
  double *wa = same ? wb : malloc((block * chunk + 1) * sizeof *wa);
  if (!lanes || !wa || !wb) {
    free(lanes);
    free(wb);
    if (!same) free(wa);
    return AE_ENOMEM;
  }
  const double *ar[TILE_MAX], *br[TILE_MAX];
  for (int r0 = 0; r0 < a->rows; r0 += (int)block) {
    int r1 = a->rows - r0 < (int)block ? a->rows : r0 + (int)block;
    /* The rows of b a pair of this block can use. */
    int b_rows = lower && r1 < b->rows ? r1 : b->rows;
    memset(lanes, 0, block * rb * LANES * sizeof *lanes);
    for (int q = 0; q < samples && w > 0; q += group) {
      int count = samples - q < group ? samples - q : group;
      for (size_t c0 = 0; c0 < w; c0 += chunk) {
        size_t cw = group > 1 ? w : w - c0 < chunk ? w - c0 : chunk;
        size_t padded = round_up(cw, LANES), cols = padded * (size_t)count;
        widen_rows(b, 0, b_rows, q, count, c0, cw, padded, wb, cols);
        /* a's rows: in wb already when a is b (r1 <= b_rows then). */
        const double *wide_a = wb + (size_t)r0 * cols;
        if (!same) {
          widen_rows(a, r0, r1, q, count, c0, cw, padded, wa, cols);
          wide_a = wa;
        }
        for (int i0 = r0; i0 < r1; i0 += side)
          for (int j0 = 0; j0 < b_rows; j0 += side) {
            if (lower && j0 > i0 + side - 1) continue;
            tile_rows(wide_a, cols, r1 - r0, i0 - r0, side, ar);
            tile_rows(wb, cols, b_rows, j0, side, br);
            tile(ar, br, cols, lanes, rb, i0 - r0, j0);
          }
      }
    }
    for (int i = r0; i < r1; i++)
      for (int j = 0; j < b->rows; j++)
        if (wanted(lower, i, j))
          m[(size_t)i * ldm + (size_t)j] +=
              lanes_sum(lanes + ((size_t)(i - r0) * rb + (size_t)j) * LANES);
  }
  free(lanes);
  free(wb);
  if (!same) free(wa);
  return AE_OK;
}
