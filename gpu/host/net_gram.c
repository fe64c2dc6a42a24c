/* net_gram.c: the float32 NTK's Gram of per-sample gradients in float64,
 * theta += scale * G G^T over the lower triangle, G = batch rows of P
 * float32 values (a weight tensor's row of G per sample, net_ntk.c).
 *
 * Every product of two float32 values is exact in float64; the sums are
 * float64.  cblas_dsyrk needs G widened to float64 first (a pass over all
 * of G) and runs a 64 x 64 output at about half the machine's DGEMM rate.
 * Here the rows are widened in registers: a tile of 4 x 4 rows keeps 16
 * vectors of 8 float64 partial sums, one per (row i, row j) pair, and
 * each step loads 8 columns of its 8 rows (float32 -> float64) and does
 * 16 fused multiply-adds.  Columns go in blocks of AE_NET_GRAM_BLOCK (the
 * block's rows stay in L2 while every tile reads them); per block, each
 * pair's 8 lanes are summed as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) +
 * (l3 + l7)) and theta[i][j] += scale * that sum.
 *
 * The order of every float64 operation is fixed by the tile, the block
 * and the lanes, never by the thread count: tiles are dealt to parts
 * (tile t to part t mod parts) and each tile writes only its own entries
 * of theta, so one part or two give the same bits.
 * ae_net_gram_f32_ref is the same arithmetic in plain C (a product of
 * two widened float32 values is exact, so the fused multiply-add's one
 * rounding is that of the separate add): tests/unit/test_net_conv_direct
 * holds the kernel to it bit for bit, and both to dsyrk's values within
 * float64 round-off.
 *
 * With AVX2 and FMA (no AVX-512) the same sums run in 4-double vectors,
 * 3 x 3 pairs per tile (below): the same bits.
 *
 * Pure functions on caller-owned memory, any thread; two parts of one
 * call may run at once on different threads (disjoint theta entries). */
#include "gpu/host/net_internal.h"
#include <stddef.h>
#include <string.h>
#if AE_NET_AVX512
#include <immintrin.h>
#endif

/* Rows per tile side (AVX2_SIDE with AVX2, below). */
#define TILE 4
#define AVX2_SIDE 3
/* The fused multiply-add chains of one pair: one per lane. */
#define LANES 8

/* Row r of a tile starting at row t0, or row 0 (computed, then dropped)
 * past the batch. */
static const float *tile_row(const float *g, int batch, size_t P, int t0, int r,
                             size_t c0) {
  int i = t0 + r;
  return g + (size_t)(i < batch ? i : 0) * P + c0;
}

/* theta[i][j] += scale * sums[r][s] for the tile's pairs in the lower
 * triangle and the batch. */
__attribute__((optimize("fp-contract=off"))) static void
tile_store(double *theta, int batch, int i0, int j0,
           const double sums[TILE][TILE], double scale) {
  for (int r = 0; r < TILE; r++)
    for (int s = 0; s < TILE; s++) {
      int i = i0 + r, j = j0 + s;
      if (i < batch && j <= i)
        theta[(size_t)i * (size_t)batch + (size_t)j] += scale * sums[r][s];
    }
}

/* The lanes' sum in the kernel's order. */
static double lanes_sum(const double l[LANES]) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

__attribute__((optimize("fp-contract=off"))) void
ae_net_gram_f32_ref(const float *g, int batch, size_t P, double scale,
                    double *theta) {
  int tiles_side = (batch + TILE - 1) / TILE;
  for (size_t c0 = 0; c0 < P; c0 += AE_NET_GRAM_BLOCK) {
    size_t w = P - c0 < AE_NET_GRAM_BLOCK ? P - c0 : AE_NET_GRAM_BLOCK;
    /* The kernel's last step reads zeros past w. */
    size_t padded = (w + LANES - 1) / LANES * LANES;
    for (int ti = 0; ti < tiles_side; ti++)
      for (int tj = 0; tj <= ti; tj++) {
        double sums[TILE][TILE];
        for (int r = 0; r < TILE; r++)
          for (int s = 0; s < TILE; s++) {
            const float *a = tile_row(g, batch, P, ti * TILE, r, c0);
            const float *b = tile_row(g, batch, P, tj * TILE, s, c0);
            double l[LANES] = {0};
            for (size_t k = 0; k < padded; k++) {
              double x = k < w ? (double)a[k] : 0.0;
              double y = k < w ? (double)b[k] : 0.0;
              l[k % LANES] += x * y;
            }
            sums[r][s] = lanes_sum(l);
          }
        tile_store(theta, batch, ti * TILE, tj * TILE, sums, scale);
      }
  }
}

#if AE_NET_AVX512
AE_AVX512_FN
static inline double reduce_lanes(__m512d v) {
  __m256d quad =
      _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
  __m128d pair =
      _mm_add_pd(_mm256_castpd256_pd128(quad), _mm256_extractf128_pd(quad, 1));
  return _mm_cvtsd_f64(pair) + _mm_cvtsd_f64(_mm_unpackhi_pd(pair, pair));
}

/* acc[r][s] += a[r] b[s] for 8 columns at each row pointer (+ k), the
 * first `count` of them read and the rest zero (count >= 8: all). */
#define TILE_STEP(acc, a, b, k, load)                                          \
  do {                                                                         \
    __m512d av_[TILE], bv_[TILE];                                              \
    _Pragma("GCC unroll 4") for (int r_ = 0; r_ < TILE; r_++) av_[r_] =        \
        _mm512_cvtps_pd(load((a)[r_] + (k)));                                  \
    _Pragma("GCC unroll 4") for (int s_ = 0; s_ < TILE; s_++) bv_[s_] =        \
        _mm512_cvtps_pd(load((b)[s_] + (k)));                                  \
    _Pragma("GCC unroll 4") for (int r_ = 0; r_ < TILE; r_++) _Pragma(         \
        "GCC unroll 4") for (int s_ = 0; s_ < TILE; s_++)(acc)[r_][s_] =       \
        _mm512_fmadd_pd(av_[r_], bv_[s_], (acc)[r_][s_]);                      \
  } while (0)

/* The 16 pairs' sums of rows a[0..3] x b[0..3] over w columns. */
AE_AVX512_FN static void tile_sums(const float *const a[TILE],
                                   const float *const b[TILE], size_t w,
                                   double sums[TILE][TILE]) {
  __m512d acc[TILE][TILE];
  for (int r = 0; r < TILE; r++)
    for (int s = 0; s < TILE; s++)
      acc[r][s] = _mm512_setzero_pd();
  size_t k = 0;
  for (; k + LANES <= w; k += LANES)
    TILE_STEP(acc, a, b, k, _mm256_loadu_ps);
  if (k < w) {
    __mmask16 m = (__mmask16)((1u << (w - k)) - 1u);
#define LOAD_PART(p) _mm512_castps512_ps256(_mm512_maskz_loadu_ps(m, (p)))
    TILE_STEP(acc, a, b, k, LOAD_PART);
#undef LOAD_PART
  }
  for (int r = 0; r < TILE; r++)
    for (int s = 0; s < TILE; s++)
      sums[r][s] = reduce_lanes(acc[r][s]);
}

/* A kernel's tile: theta += scale * the sums of rows a[0..side-1] x
 * b[0..side-1] over w columns, for the pairs (i0 + r, j0 + s) in the lower
 * triangle and the batch. */
typedef void (*gram_tile_fn)(const float *const *a, const float *const *b,
                             size_t w, double *theta, int batch, int i0, int j0,
                             double scale);

/* The tiles of side x side rows in the lower triangle, in row-major
 * order, tile t to part t mod parts: the dealing both kernels share (the
 * values do not depend on it), read one tile at a time. */
typedef struct {
  int tiles_side, part, parts;
  int ti, tj, t; /* the next tile of the triangle, and its number */
} tile_deal;

static tile_deal deal_start(int batch, int side, int part, int parts) {
  return (tile_deal){(batch + side - 1) / side, part, parts, 0, 0, 0};
}

/* The part's next tile (its tile row ti and column tj); 0 after the last. */
static int deal_next(tile_deal *d, int *ti, int *tj) {
  while (d->ti < d->tiles_side) {
    int mine = d->t % d->parts == d->part;
    *ti = d->ti, *tj = d->tj;
    d->t++;
    if (++d->tj > d->ti) d->ti++, d->tj = 0;
    if (mine) return 1;
  }
  return 0;
}

/* Every column block, the part's tiles of the block one by one. */
static void deal_tiles(const float *g, int batch, size_t P, double scale,
                       double *theta, int part, int parts, int side,
                       gram_tile_fn tile) {
  for (size_t c0 = 0; c0 < P; c0 += AE_NET_GRAM_BLOCK) {
    size_t w = P - c0 < AE_NET_GRAM_BLOCK ? P - c0 : AE_NET_GRAM_BLOCK;
    tile_deal d = deal_start(batch, side, part, parts);
    int ti, tj;
    while (deal_next(&d, &ti, &tj)) {
      const float *a[TILE], *b[TILE];
      for (int r = 0; r < side; r++) {
        a[r] = tile_row(g, batch, P, ti * side, r, c0);
        b[r] = tile_row(g, batch, P, tj * side, r, c0);
      }
      tile(a, b, w, theta, batch, ti * side, tj * side, scale);
    }
  }
}

static void avx512_tile(const float *const *a, const float *const *b, size_t w,
                        double *theta, int batch, int i0, int j0,
                        double scale) {
  double sums[TILE][TILE];
  tile_sums(a, b, w, sums);
  tile_store(theta, batch, i0, j0, sums, scale);
}

static void avx2_part(const float *g, int batch, size_t P, double scale,
                      double *theta, int part, int parts);
static int gram_kernel(void);

void ae_net_gram_f32_part(const float *g, int batch, size_t P, double scale,
                          double *theta, int part, int parts) {
  if (gram_kernel() == 1)
    avx2_part(g, batch, P, scale, theta, part, parts);
  else
    deal_tiles(g, batch, P, scale, theta, part, parts, TILE, avx512_tile);
}

/* The same sums with AVX2 and FMA: 8 lanes are two vectors of 4
 * doubles, too many accumulators for 16 registers at 4 x 4 pairs, so a
 * tile here is AVX2_SIDE x AVX2_SIDE pairs and takes its columns twice:
 * lanes 0..3 (columns 8 q .. 8 q + 3), then lanes 4..7.  A block's
 * columns go AVX2_SUB at a time, every tile of the part through one
 * sub-block before the next (the block's 64 rows of 4096 floats, 1 MiB,
 * overflowed a Zen 2 core's 512 KiB L2 while a tile swept it), each
 * pair's 8 lanes waiting in memory between sub-blocks.  Every lane is the same
 * chain as in the reference, the lanes summed in the order of lanes_sum: the
 * bits of the AVX-512 kernel. */
#define AVX2_FN __attribute__((target("avx2,fma"), optimize("fp-contract=off")))
/* Columns per sub-block: 64 rows of it (128 KiB) stay in L2, a tile's
 * 6 rows in L1.  A multiple of LANES. */
#define AVX2_SUB 512
/* Doubles of lanes per tile: AVX2_SIDE^2 pairs x LANES. */
#define AVX2_TILE_LANES (AVX2_SIDE * AVX2_SIDE * LANES)
/* Tiles whose lanes wait on the stack at once (36 KiB): a 64-row
 * triangle's 253 tiles in 4 groups, each a pass over the block. */
#define AVX2_GROUP 64

/* acc[r][s] (+)= the products of half `half` of each 8 columns of rows
 * a[r] and b[s] over w columns (zeros past w). */
AVX2_FN __attribute__((always_inline)) static inline void
avx2_half(const float *const a[AVX2_SIDE], const float *const b[AVX2_SIDE],
          size_t w, int half, __m256d acc[AVX2_SIDE][AVX2_SIDE]) {
  size_t k = 0, h = (size_t)half * 4;
  for (; k + LANES <= w; k += LANES) {
    __m256d av[AVX2_SIDE], bv[AVX2_SIDE];
#pragma GCC unroll 4
    for (int r = 0; r < AVX2_SIDE; r++)
      av[r] = _mm256_cvtps_pd(_mm_loadu_ps(a[r] + k + h));
#pragma GCC unroll 4
    for (int s = 0; s < AVX2_SIDE; s++)
      bv[s] = _mm256_cvtps_pd(_mm_loadu_ps(b[s] + k + h));
#pragma GCC unroll 4
    for (int r = 0; r < AVX2_SIDE; r++)
#pragma GCC unroll 4
      for (int s = 0; s < AVX2_SIDE; s++)
        acc[r][s] = _mm256_fmadd_pd(av[r], bv[s], acc[r][s]);
  }
  if (k == w) return;
  /* The last partial 8 columns from zero-padded copies. */
  float ta[AVX2_SIDE][LANES] = {{0}}, tb[AVX2_SIDE][LANES] = {{0}};
  for (int r = 0; r < AVX2_SIDE; r++)
    for (size_t c = 0; c < w - k; c++) {
      ta[r][c] = a[r][k + c];
      tb[r][c] = b[r][k + c];
    }
  for (int r = 0; r < AVX2_SIDE; r++)
    for (int s = 0; s < AVX2_SIDE; s++)
      acc[r][s] =
          _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(ta[r] + h)),
                          _mm256_cvtps_pd(_mm_loadu_ps(tb[s] + h)), acc[r][s]);
}

/* lanes[(r * AVX2_SIDE + s) * LANES + l] += lane l's products of rows
 * a[r] and b[s] over w columns: each half's sums loaded, carried through
 * the columns in registers, stored back. */
AVX2_FN static void avx2_sub(const float *const a[AVX2_SIDE],
                             const float *const b[AVX2_SIDE], size_t w,
                             double *lanes) {
  for (int half = 0; half < 2; half++) {
    __m256d acc[AVX2_SIDE][AVX2_SIDE];
#pragma GCC unroll 3
    for (int r = 0; r < AVX2_SIDE; r++)
#pragma GCC unroll 3
      for (int s = 0; s < AVX2_SIDE; s++)
        acc[r][s] =
            _mm256_loadu_pd(lanes + (r * AVX2_SIDE + s) * LANES + half * 4);
    avx2_half(a, b, w, half, acc);
#pragma GCC unroll 3
    for (int r = 0; r < AVX2_SIDE; r++)
#pragma GCC unroll 3
      for (int s = 0; s < AVX2_SIDE; s++)
        _mm256_storeu_pd(lanes + (r * AVX2_SIDE + s) * LANES + half * 4,
                         acc[r][s]);
  }
}

/* theta[i][j] += scale * lanes_sum of each pair of the tile at rows
 * (i0, j0) in the lower triangle and the batch. */
__attribute__((optimize("fp-contract=off"))) static void
avx2_store(const double *lanes, double *theta, int batch, int i0, int j0,
           double scale) {
  for (int r = 0; r < AVX2_SIDE; r++)
    for (int s = 0; s < AVX2_SIDE; s++) {
      int i = i0 + r, j = j0 + s;
      if (i < batch && j <= i)
        theta[(size_t)i * (size_t)batch + (size_t)j] +=
            scale * lanes_sum(lanes + (r * AVX2_SIDE + s) * LANES);
    }
}

/* One tile's rows from column c0 on. */
static void avx2_rows(const float *g, int batch, size_t P, int ti, int tj,
                      size_t c0, const float *a[AVX2_SIDE],
                      const float *b[AVX2_SIDE]) {
  for (int r = 0; r < AVX2_SIDE; r++) {
    a[r] = tile_row(g, batch, P, ti * AVX2_SIDE, r, c0);
    b[r] = tile_row(g, batch, P, tj * AVX2_SIDE, r, c0);
  }
}

/* The AVX2 kernel's share of part `part`, dealt as deal_tiles deals.
 * The part's tiles go in groups of AVX2_GROUP whose lanes fit on the
 * stack; per block, every tile of a group through one sub-block, then the
 * next sub-block (a group's rows of a sub-block stay in L2), then the
 * group's sums into theta. */
static void avx2_part(const float *g, int batch, size_t P, double scale,
                      double *theta, int part, int parts) {
  double lanes[AVX2_GROUP * AVX2_TILE_LANES];
  int ti_of[AVX2_GROUP], tj_of[AVX2_GROUP];
  tile_deal d = deal_start(batch, AVX2_SIDE, part, parts);
  for (;;) {
    /* The next group: up to AVX2_GROUP of the part's tiles. */
    int count = 0;
    while (count < AVX2_GROUP && deal_next(&d, &ti_of[count], &tj_of[count]))
      count++;
    if (count == 0) break;
    const float *a[AVX2_SIDE], *b[AVX2_SIDE];
    for (size_t c0 = 0; c0 < P; c0 += AE_NET_GRAM_BLOCK) {
      size_t w = P - c0 < AE_NET_GRAM_BLOCK ? P - c0 : AE_NET_GRAM_BLOCK;
      memset(lanes, 0, sizeof(double) * (size_t)count * AVX2_TILE_LANES);
      for (size_t s0 = 0; s0 < w; s0 += AVX2_SUB) {
        size_t sw = w - s0 < AVX2_SUB ? w - s0 : AVX2_SUB;
        for (int m = 0; m < count; m++) {
          avx2_rows(g, batch, P, ti_of[m], tj_of[m], c0 + s0, a, b);
          avx2_sub(a, b, sw, lanes + (size_t)m * AVX2_TILE_LANES);
        }
      }
      for (int m = 0; m < count; m++)
        avx2_store(lanes + (size_t)m * AVX2_TILE_LANES, theta, batch,
                   ti_of[m] * AVX2_SIDE, tj_of[m] * AVX2_SIDE, scale);
    }
  }
}

/* 0 none, 1 AVX2 + FMA, 2 AVX-512F. */
static int gram_kernel(void) {
  if (ae_net_have_avx512()) return 2;
  return ae_net_have_avx2_fma() ? 1 : 0;
}

int ae_net_gram_f32_usable(void) {
  return gram_kernel() != 0;
}
#else
int ae_net_gram_f32_usable(void) {
  return 0;
}

void ae_net_gram_f32_part(const float *g, int batch, size_t P, double scale,
                          double *theta, int part, int parts) {
  (void)parts;
  if (part == 0) ae_net_gram_f32_ref(g, batch, P, scale, theta);
}
#endif
