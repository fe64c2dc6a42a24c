/* net_conv_wino.c: the float32 3 x 3 convolution (stride 1, padding 1)
 * of planes of even sides by Winograd's minimal filtering F(2 x 2, 3 x 3):
 * a kernel with AVX-512 (16 tiles in the lanes of a vector), one with AVX2
 * and FMA (8 tiles), and the same arithmetic in plain C (the reference).
 *
 * Each 2 x 2 block of outputs (a tile) comes from the 4 x 4 input patch
 * around it: V = B^T d B per input channel, U = G g G^T per weight,
 * M[xi] = sum over ci of U[xi][co][ci] * V[xi][ci] for the 16 positions
 * xi, Y = A^T M A:
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 *   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * 16 multiply-adds per input channel and tile where the direct
 * convolution takes 36; the transforms are additions (and the weights'
 * halvings).  Its values are its own (not im2col + sgemm's, nor the AVX2
 * direct kernel's): where it runs it is the definition of such a
 * convolution's values (net_conv_direct.c decides where), in both CPU
 * classes alike, and its error against the exact convolution is of the
 * direct one's size (tests/unit/test_net_conv_direct.c,
 * wino_matches_reference, measures both against float64).
 *
 * The order of every operation is fixed, so that both vector kernels and
 * the reference (one tile at a time) give the same bits:
 *   the weights: t = ((g0 + g1) + g2) * 0.5 and ((g0 - g1) + g2) * 0.5,
 *   first down the kernel's columns, then along the rows;
 *   the input: c0 = d0 - d2, c1 = d1 + d2, c2 = d2 - d1, c3 = d1 - d3
 *   along each patch row, then the same down the columns (a tap off the
 *   plane is +0);
 *   M: one chain of fused multiply-adds from +0 over ci in order;
 *   the output: r0 = (m0 + m1) + m2, r1 = (m1 - m2) - m3 down the
 *   columns, then the same along the rows.
 *
 * Pure functions on caller-owned memory, any thread; the vector kernels'
 * scratch (the transformed weights and a block of the transformed input:
 * at most 4.8 MiB at AE_NET_WINO_MAX_C channels, 0.45 MiB at 64) is
 * their thread's own (a key's destructor frees it at exit), and
 * where it cannot be allocated the reference runs instead (the same
 * bits, without scratch). */
#include "gpu/host/net_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_WINO_AVX512 1
#include <immintrin.h>
#else
#define HAVE_WINO_AVX512 0
#endif

#define WINO_FN __attribute__((optimize("fp-contract=off")))

int ae_net_conv_wino_fits(int h, int wd, int cin, int cout) {
  int tw = wd / 2;
  if (h < 2 || wd < 2 || h % 2 || wd % 2) return 0;
  if (cin < 1 || cout < 1 || cin > AE_NET_WINO_MAX_C ||
      cout > AE_NET_WINO_MAX_C)
    return 0;
  /* A vector of 16 tiles holds whole tile rows, or a tile row whole
   * vectors. */
  return tw < 16 ? 16 % tw == 0 : tw % 16 == 0;
}

/* The 16 transformed weights u[4 r + c] of one 3 x 3 kernel g. */
WINO_FN static void weights_one(const float *g, float u[16]) {
  float t[4][3];
  for (int c = 0; c < 3; c++) {
    float g0 = g[c], g1 = g[3 + c], g2 = g[6 + c];
    t[0][c] = g0;
    t[1][c] = ((g0 + g1) + g2) * 0.5f;
    t[2][c] = ((g0 - g1) + g2) * 0.5f;
    t[3][c] = g2;
  }
  for (int r = 0; r < 4; r++) {
    u[r * 4 + 0] = t[r][0];
    u[r * 4 + 1] = ((t[r][0] + t[r][1]) + t[r][2]) * 0.5f;
    u[r * 4 + 2] = ((t[r][0] - t[r][1]) + t[r][2]) * 0.5f;
    u[r * 4 + 3] = t[r][2];
  }
}

/* U[xi][ci][co] (xi = 4 r + c) from w[co][ci][3][3]. */
void ae_net_conv_wino_weights(const float *w, int cout, int cin, float *U) {
  for (int co = 0; co < cout; co++)
    for (int ci = 0; ci < cin; ci++) {
      float u[16];
      weights_one(w + ((size_t)co * (size_t)cin + (size_t)ci) * 9, u);
      for (int xi = 0; xi < 16; xi++)
        U[((size_t)xi * (size_t)cin + (size_t)ci) * (size_t)cout + (size_t)co] =
            u[xi];
    }
}

/* ---- the reference: one tile at a time ---- */

WINO_FN static void tile_input_ref(const float *plane, int h, int wd, int ty,
                                   int tx, float v[16]) {
  float d[4][4], c[4][4];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) {
      int y = 2 * ty - 1 + i, x = 2 * tx - 1 + j;
      d[i][j] = y >= 0 && y < h && x >= 0 && x < wd
                    ? plane[(size_t)y * (size_t)wd + (size_t)x]
                    : 0.0f;
    }
  for (int i = 0; i < 4; i++) {
    c[i][0] = d[i][0] - d[i][2];
    c[i][1] = d[i][1] + d[i][2];
    c[i][2] = d[i][2] - d[i][1];
    c[i][3] = d[i][1] - d[i][3];
  }
  for (int j = 0; j < 4; j++) {
    v[0 * 4 + j] = c[0][j] - c[2][j];
    v[1 * 4 + j] = c[1][j] + c[2][j];
    v[2 * 4 + j] = c[2][j] - c[1][j];
    v[3 * 4 + j] = c[1][j] - c[3][j];
  }
}

WINO_FN static void tile_output_ref(const float m[16], float o[4]) {
  float r0[4], r1[4];
  for (int j = 0; j < 4; j++) {
    r0[j] = (m[0 * 4 + j] + m[1 * 4 + j]) + m[2 * 4 + j];
    r1[j] = (m[1 * 4 + j] - m[2 * 4 + j]) - m[3 * 4 + j];
  }
  o[0] = (r0[0] + r0[1]) + r0[2];
  o[1] = (r0[1] - r0[2]) - r0[3];
  o[2] = (r1[0] + r1[1]) + r1[2];
  o[3] = (r1[1] - r1[2]) - r1[3];
}

/* One tile and output channel at a time, the weights and the patch
 * transformed again for each: slow, and without any scratch. */
void ae_net_conv_wino_ref(const float *w, const float *x, size_t x_stride,
                          int cin, int h, int wd, int cout, float *y,
                          size_t y_stride, int samples) {
  size_t hw = (size_t)h * (size_t)wd;
  for (int s = 0; s < samples; s++) {
    const float *xs = x + (size_t)s * x_stride;
    float *ys = y + (size_t)s * y_stride;
    for (int co = 0; co < cout; co++)
      for (int ty = 0; ty < h / 2; ty++)
        for (int tx = 0; tx < wd / 2; tx++) {
          float m[16] = {0.0f}, o[4];
          for (int ci = 0; ci < cin; ci++) {
            float u[16], v[16];
            weights_one(w + ((size_t)co * (size_t)cin + (size_t)ci) * 9, u);
            tile_input_ref(xs + (size_t)ci * hw, h, wd, ty, tx, v);
            for (int xi = 0; xi < 16; xi++)
              m[xi] = fmaf(u[xi], v[xi], m[xi]);
          }
          tile_output_ref(m, o);
          float *p = ys + (size_t)co * hw + (size_t)(2 * ty) * (size_t)wd +
                     (size_t)(2 * tx);
          p[0] = o[0];
          p[1] = o[1];
          p[wd] = o[2];
          p[wd + 1] = o[3];
        }
  }
}

#if HAVE_WINO_AVX512

#define LANES 16
#define BLOCK_VECTORS 3 /* vectors of 16 tiles transformed at a time */
#define TILE_CO 8

/* The calling thread's scratch (U, then V), grown as needed. */
typedef struct {
  float *p;
  size_t floats;
} wino_scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_destroy(void *v) {
  wino_scratch *s = v;
  free(s->p);
  free(s);
}

static void scratch_key_init(void) {
  scratch_key_ok = pthread_key_create(&scratch_key, scratch_destroy) == 0;
}

static float *thread_scratch(size_t floats) {
  pthread_once(&scratch_once, scratch_key_init);
  if (!scratch_key_ok) return NULL;
  wino_scratch *s = pthread_getspecific(scratch_key);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (pthread_setspecific(scratch_key, s) != 0) {
      free(s);
      return NULL;
    }
  }
  if (s->floats < floats) {
    float *p = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    if (!p) return NULL;
    free(s->p);
    s->p = p;
    s->floats = floats;
  }
  return s->p;
}

/* Where a plane's tiles lie in vectors of 16: tw tiles per tile row;
 * rows = 16 / tw tile rows per vector when tw < 16 (else 1, and a tile
 * row takes tw / 16 vectors). */
typedef struct {
  int h, wd, th, tw, rows, vectors;
  int idx[4][16];      /* lane -> element of the 32 loaded (per column j) */
  __mmask16 inside[4]; /* lanes whose tap j lies on the plane */
} wino_geom;

static void wino_geom_init(wino_geom *g, int h, int wd) {
  g->h = h, g->wd = wd, g->th = h / 2, g->tw = wd / 2;
  g->rows = g->tw < LANES ? LANES / g->tw : 1;
  int tiles = g->th * g->tw;
  g->vectors = (tiles + LANES - 1) / LANES;
  /* Loaded: rows tile rows of wd floats each (tw < 16), or the 32 floats
   * from the vector's first tile's column 2 tx0 on (tw >= 16; lanes 0 and
   * 15's outer taps come from the neighbours, below). */
  int span = g->tw < LANES ? wd : 2 * LANES;
  for (int j = 0; j < 4; j++) {
    int *idx = g->idx[j];
    unsigned inside = 0;
    for (int l = 0; l < LANES; l++) {
      int r = g->tw < LANES ? l / g->tw : 0, t = g->tw < LANES ? l % g->tw : l;
      int e = 2 * t - 1 + j;
      idx[l] = e >= 0 && e < span ? r * span + e : 0;
      if (e >= 0 && e < span) inside |= 1u << l;
    }
    g->inside[j] = (__mmask16)inside;
  }
}

/* The 32 floats a vector's patch row i reads (see wino_geom_init) as two
 * vectors, +0 where off the plane. */
__attribute__((target("avx512f"), always_inline)) static inline void
load_rows(const wino_geom *g, const float *plane, int v, int i, __m512 *a,
          __m512 *b) {
  __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
  if (g->tw >= LANES) {
    int t0 = v * LANES, ty = t0 / g->tw, tx0 = t0 % g->tw;
    int y = 2 * ty - 1 + i;
    if (y >= 0 && y < g->h) {
      const float *row = plane + (size_t)y * (size_t)g->wd + 2 * tx0;
      lo = _mm512_loadu_ps(row);
      hi = _mm512_loadu_ps(row + LANES);
    }
  } else {
    int ty0 = v * g->rows, wd = g->wd;
    for (int r = 0; r < g->rows; r++) {
      int ty = ty0 + r, y = 2 * ty - 1 + i;
      if (ty >= g->th || y < 0 || y >= g->h) continue;
      const float *row = plane + (size_t)y * (size_t)wd;
      int at = r * wd; /* of the 32 */
      __m512 *dst = at < LANES ? &lo : &hi;
      int lane = at % LANES;
      if (wd == 16) {
        *dst = _mm512_loadu_ps(row);
      } else if (wd == 8) {
        /* As 4 doubles: AVX-512F's insert (the float one is AVX512DQ's,
         * which ae_net_have_avx512 does not ask for). */
        __m256d q = _mm256_castps_pd(_mm256_loadu_ps(row));
        __m512d d = _mm512_castps_pd(*dst);
        *dst = _mm512_castpd_ps(lane ? _mm512_insertf64x4(d, q, 1)
                                     : _mm512_insertf64x4(d, q, 0));
      } else {
        /* wd 4 or 2: a partial 128-bit lane group. */
        __m128 q = wd == 4 ? _mm_loadu_ps(row)
                           : _mm_castpd_ps(_mm_load_sd((const double *)row));
        __m128 old;
        switch (lane / 4) {
        case 0:
          old = _mm512_extractf32x4_ps(*dst, 0);
          break;
        case 1:
          old = _mm512_extractf32x4_ps(*dst, 1);
          break;
        case 2:
          old = _mm512_extractf32x4_ps(*dst, 2);
          break;
        default:
          old = _mm512_extractf32x4_ps(*dst, 3);
          break;
        }
        if (wd == 2 && lane % 4 == 2)
          q = _mm_movelh_ps(old, q);
        else if (wd == 2)
          q = _mm_shuffle_ps(q, old, _MM_SHUFFLE(3, 2, 1, 0));
        switch (lane / 4) {
        case 0:
          *dst = _mm512_insertf32x4(*dst, q, 0);
          break;
        case 1:
          *dst = _mm512_insertf32x4(*dst, q, 1);
          break;
        case 2:
          *dst = _mm512_insertf32x4(*dst, q, 2);
          break;
        default:
          *dst = _mm512_insertf32x4(*dst, q, 3);
          break;
        }
      }
    }
  }
  *a = lo;
  *b = hi;
}

/* Patch row i of vector v's 16 tiles: d[j] = tap column j. */
__attribute__((target("avx512f"), always_inline)) static inline void
patch_row(const wino_geom *g, const __m512i idx[4], const float *plane, int v,
          int i, __m512 d[4]) {
  __m512 a, b;
  load_rows(g, plane, v, i, &a, &b);
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++)
    d[j] = _mm512_maskz_permutex2var_ps(g->inside[j], a, idx[j], b);
  if (g->tw >= LANES) {
    /* Lane 0's left tap and lane 15's right tap, from the neighbouring
     * columns of the same row when they lie on the plane. */
    int t0 = v * LANES, ty = t0 / g->tw, tx0 = t0 % g->tw;
    int y = 2 * ty - 1 + i;
    if (y >= 0 && y < g->h) {
      const float *row = plane + (size_t)y * (size_t)g->wd;
      if (tx0 > 0)
        d[0] = _mm512_mask_mov_ps(d[0], 1, _mm512_set1_ps(row[2 * tx0 - 1]));
      if (tx0 + LANES < g->tw)
        d[3] = _mm512_mask_mov_ps(d[3], (__mmask16)0x8000,
                                  _mm512_set1_ps(row[2 * tx0 + 2 * LANES]));
    }
  }
}

/* V[xi][ci][b] for vectors v0 .. v0 + nv - 1 of one sample. */
__attribute__((target("avx512f"), optimize("fp-contract=off"))) static void
input_transform(const wino_geom *g, const float *x, int cin, int v0, int nv,
                float *V) {
  size_t hw = (size_t)g->h * (size_t)g->wd;
  __m512i idx[4];
  for (int j = 0; j < 4; j++)
    idx[j] = _mm512_loadu_si512(g->idx[j]);
  for (int ci = 0; ci < cin; ci++) {
    const float *plane = x + (size_t)ci * hw;
    for (int b = 0; b < nv; b++) {
      __m512 c[4][4];
#pragma GCC unroll 4
      for (int i = 0; i < 4; i++) {
        __m512 d[4];
        patch_row(g, idx, plane, v0 + b, i, d);
        c[i][0] = _mm512_sub_ps(d[0], d[2]);
        c[i][1] = _mm512_add_ps(d[1], d[2]);
        c[i][2] = _mm512_sub_ps(d[2], d[1]);
        c[i][3] = _mm512_sub_ps(d[1], d[3]);
      }
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) {
        __m512 r[4] = {
            _mm512_sub_ps(c[0][j], c[2][j]), _mm512_add_ps(c[1][j], c[2][j]),
            _mm512_sub_ps(c[2][j], c[1][j]), _mm512_sub_ps(c[1][j], c[3][j])};
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++)
          _mm512_store_ps(
              V + (((size_t)(q * 4 + j) * (size_t)cin + (size_t)ci) *
                       (size_t)nv +
                   (size_t)b) *
                      LANES,
              r[q]);
      }
    }
  }
}

/* M[xi][c][b] = sum over ci of U[xi][ci][co0 + c] V[xi][ci][b] for all
 * 16 xi, CO channels, PB vectors. */
__attribute__((target("avx512f"), always_inline)) static inline void
gemm_tiles(const float *U, const float *V, float *M, int cin, int cout, int nv,
           int co0, const int CO, const int PB) {
  for (int xi = 0; xi < 16; xi++) {
    const float *u = U + (size_t)xi * (size_t)cin * (size_t)cout + co0;
    const float *vx = V + (size_t)xi * (size_t)cin * (size_t)nv * LANES;
    __m512 acc[TILE_CO][BLOCK_VECTORS];
#pragma GCC unroll 8
    for (int c = 0; c < CO; c++)
#pragma GCC unroll 4
      for (int j = 0; j < PB; j++)
        acc[c][j] = _mm512_setzero_ps();
    for (int ci = 0; ci < cin; ci++) {
      __m512 v[BLOCK_VECTORS];
#pragma GCC unroll 4
      for (int j = 0; j < PB; j++)
        v[j] =
            _mm512_load_ps(vx + ((size_t)ci * (size_t)nv + (size_t)j) * LANES);
#pragma GCC unroll 8
      for (int c = 0; c < CO; c++) {
        __m512 uv = _mm512_set1_ps(u[(size_t)ci * (size_t)cout + (size_t)c]);
#pragma GCC unroll 4
        for (int j = 0; j < PB; j++)
          acc[c][j] = _mm512_fmadd_ps(uv, v[j], acc[c][j]);
      }
    }
#pragma GCC unroll 8
    for (int c = 0; c < CO; c++)
#pragma GCC unroll 4
      for (int j = 0; j < PB; j++)
        _mm512_store_ps(M + ((size_t)(xi * TILE_CO + c) * BLOCK_VECTORS + j) *
                                LANES,
                        acc[c][j]);
  }
}

#define GEMM_CASE(CO, PB)                                                      \
  __attribute__((target("avx512f"))) static void gemm_##CO##_##PB(             \
      const float *U, const float *V, float *M, int cin, int cout, int nv,     \
      int co0) {                                                               \
    gemm_tiles(U, V, M, cin, cout, nv, co0, CO, PB);                           \
  }
GEMM_CASE(8, 3)
GEMM_CASE(8, 2)
GEMM_CASE(8, 1)
GEMM_CASE(4, 3)
GEMM_CASE(4, 2)
GEMM_CASE(4, 1)
GEMM_CASE(1, 3)
GEMM_CASE(1, 2)
GEMM_CASE(1, 1)

typedef void (*gemm_fn)(const float *, const float *, float *, int, int, int,
                        int);

static gemm_fn gemm_for(int co, int pb) {
  static const gemm_fn table[3][3] = {{gemm_1_1, gemm_1_2, gemm_1_3},
                                      {gemm_4_1, gemm_4_2, gemm_4_3},
                                      {gemm_8_1, gemm_8_2, gemm_8_3}};
  return table[co == 8 ? 2 : co == 4 ? 1 : 0][pb - 1];
}

/* Output rows 2 ty and 2 ty + 1 of the tiles in a (o00, o01 interleaved:
 * 32 floats) and b (o10, o11) into plane. */
__attribute__((target("avx512f"))) static inline void
store_rows(const wino_geom *g, float *plane, int v, __m512 a0, __m512 a1,
           __m512 b0, __m512 b1) {
  size_t wd = (size_t)g->wd;
  if (g->tw >= LANES) {
    int t0 = v * LANES, ty = t0 / g->tw, tx0 = t0 % g->tw;
    float *r = plane + (size_t)(2 * ty) * wd + 2 * (size_t)tx0;
    _mm512_storeu_ps(r, a0);
    _mm512_storeu_ps(r + LANES, a1);
    _mm512_storeu_ps(r + wd, b0);
    _mm512_storeu_ps(r + wd + LANES, b1);
    return;
  }
  float top[2 * LANES], bottom[2 * LANES];
  _mm512_storeu_ps(top, a0);
  _mm512_storeu_ps(top + LANES, a1);
  _mm512_storeu_ps(bottom, b0);
  _mm512_storeu_ps(bottom + LANES, b1);
  int ty0 = v * g->rows;
  for (int r = 0; r < g->rows && ty0 + r < g->th; r++) {
    float *row = plane + (size_t)(2 * (ty0 + r)) * wd;
    memcpy(row, top + (size_t)r * wd, sizeof(float) * wd);
    memcpy(row + wd, bottom + (size_t)r * wd, sizeof(float) * wd);
  }
}

/* Y = A^T M A for CO channels from co0 and nv vectors from v0. */
__attribute__((target("avx512f"), optimize("fp-contract=off"))) static void
output_transform(const wino_geom *g, const float *M, int co0, int CO, int v0,
                 int nv, float *y) {
  const __m512i lo =
      _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13,
                                       29, 14, 30, 15, 31);
  size_t hw = (size_t)g->h * (size_t)g->wd;
  const size_t xi_stride = (size_t)TILE_CO * BLOCK_VECTORS * LANES;
  for (int c = 0; c < CO; c++)
    for (int b = 0; b < nv; b++) {
      const float *m = M + ((size_t)c * BLOCK_VECTORS + (size_t)b) * LANES;
      __m512 r0[4], r1[4];
      for (int j = 0; j < 4; j++) {
        __m512 m0 = _mm512_load_ps(m + (size_t)(0 * 4 + j) * xi_stride);
        __m512 m1 = _mm512_load_ps(m + (size_t)(1 * 4 + j) * xi_stride);
        __m512 m2 = _mm512_load_ps(m + (size_t)(2 * 4 + j) * xi_stride);
        __m512 m3 = _mm512_load_ps(m + (size_t)(3 * 4 + j) * xi_stride);
        r0[j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
        r1[j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
      }
      __m512 o00 = _mm512_add_ps(_mm512_add_ps(r0[0], r0[1]), r0[2]);
      __m512 o01 = _mm512_sub_ps(_mm512_sub_ps(r0[1], r0[2]), r0[3]);
      __m512 o10 = _mm512_add_ps(_mm512_add_ps(r1[0], r1[1]), r1[2]);
      __m512 o11 = _mm512_sub_ps(_mm512_sub_ps(r1[1], r1[2]), r1[3]);
      store_rows(g, y + (size_t)(co0 + c) * hw, v0 + b,
                 _mm512_permutex2var_ps(o00, lo, o01),
                 _mm512_permutex2var_ps(o00, hi, o01),
                 _mm512_permutex2var_ps(o10, lo, o11),
                 _mm512_permutex2var_ps(o10, hi, o11));
    }
}

/* ae_net_conv_wino_weights with 16 output channels in the lanes (the
 * same operations per value as weights_one). */
__attribute__((target("avx512f"), optimize("fp-contract=off"))) static void
weights_avx512(const float *w, int cout, int cin, float *U) {
  const __m512 half = _mm512_set1_ps(0.5f);
  for (int co0 = 0; co0 < cout; co0 += LANES) {
    int n = cout - co0 < LANES ? cout - co0 : LANES;
    __mmask16 keep = (__mmask16)((1u << n) - 1u);
    int off[LANES];
    for (int l = 0; l < LANES; l++)
      off[l] = (l < n ? co0 + l : co0) * cin * 9;
    __m512i base = _mm512_loadu_si512(off);
    for (int ci = 0; ci < cin; ci++) {
      const float *gc = w + (size_t)ci * 9;
      __m512 g[9];
#pragma GCC unroll 9
      for (int t = 0; t < 9; t++)
        g[t] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), keep, base, gc + t,
                                        4);
      __m512 t4[4][3];
#pragma GCC unroll 3
      for (int c = 0; c < 3; c++) {
        __m512 g0 = g[c], g1 = g[3 + c], g2 = g[6 + c];
        t4[0][c] = g0;
        t4[1][c] =
            _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(g0, g1), g2), half);
        t4[2][c] =
            _mm512_mul_ps(_mm512_add_ps(_mm512_sub_ps(g0, g1), g2), half);
        t4[3][c] = g2;
      }
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++) {
        __m512 u[4] = {
            t4[r][0],
            _mm512_mul_ps(
                _mm512_add_ps(_mm512_add_ps(t4[r][0], t4[r][1]), t4[r][2]),
                half),
            _mm512_mul_ps(
                _mm512_add_ps(_mm512_sub_ps(t4[r][0], t4[r][1]), t4[r][2]),
                half),
            t4[r][2]};
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
          _mm512_mask_storeu_ps(
              U +
                  ((size_t)(r * 4 + c) * (size_t)cin + (size_t)ci) *
                      (size_t)cout +
                  (size_t)co0,
              keep, u[c]);
      }
    }
  }
}

static void wino_avx512(const float *U, const float *x, size_t x_stride,
                        int cin, int h, int wd, int cout, float *y,
                        size_t y_stride, int samples, float *V) {
  wino_geom g;
  wino_geom_init(&g, h, wd);
  _Alignas(64) float M[16 * TILE_CO * BLOCK_VECTORS * LANES];
  for (int s = 0; s < samples; s++) {
    const float *xs = x + (size_t)s * x_stride;
    float *ys = y + (size_t)s * y_stride;
    for (int v0 = 0; v0 < g.vectors; v0 += BLOCK_VECTORS) {
      int nv = g.vectors - v0 < BLOCK_VECTORS ? g.vectors - v0 : BLOCK_VECTORS;
      input_transform(&g, xs, cin, v0, nv, V);
      for (int co0 = 0; co0 < cout;) {
        int co = cout - co0 >= 8 ? 8 : cout - co0 >= 4 ? 4 : 1;
        gemm_for(co, nv)(U, V, M, cin, cout, nv, co0);
        output_transform(&g, M, co0, co, v0, nv, ys);
        co0 += co;
      }
    }
  }
}

/* ---- AVX2 and FMA: the same arithmetic in 8 lanes ----
 * 8 tiles per vector (one tile row of a plane of 16 or wider, or 2, 4, 8
 * tile rows of planes of 8, 4, 2); sums of 4 output channels x 3 vectors
 * in registers (16 of them).  Every lane computes what the AVX-512
 * kernel's lanes and the reference compute, operation for operation, so
 * all three give the same bits. */
#define LANES8 8
#define TILE_CO8 4

typedef struct {
  int h, wd, th, tw, rows, vectors;
  int idx[4][LANES8];    /* lane -> element of the 16 loaded (column j) */
  int inside[4][LANES8]; /* -1 where tap j lies on the plane, else 0 */
} wino8_geom;

static void wino8_geom_init(wino8_geom *g, int h, int wd) {
  g->h = h, g->wd = wd, g->th = h / 2, g->tw = wd / 2;
  g->rows = g->tw < LANES8 ? LANES8 / g->tw : 1;
  g->vectors = (g->th * g->tw + LANES8 - 1) / LANES8;
  int span = g->tw < LANES8 ? wd : 2 * LANES8;
  for (int j = 0; j < 4; j++)
    for (int l = 0; l < LANES8; l++) {
      int r = g->tw < LANES8 ? l / g->tw : 0;
      int t = g->tw < LANES8 ? l % g->tw : l;
      int e = 2 * t - 1 + j, in = e >= 0 && e < span;
      g->idx[j][l] = in ? r * span + e : 0;
      g->inside[j][l] = in ? -1 : 0;
    }
}

/* The 16 floats a vector's patch row i reads, as two vectors (+0 off the
 * plane). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
load_rows8(const wino8_geom *g, const float *plane, int v, int i, __m256 *a,
           __m256 *b) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  if (g->tw >= LANES8) {
    int t0 = v * LANES8, ty = t0 / g->tw, tx0 = t0 % g->tw;
    int y = 2 * ty - 1 + i;
    if (y >= 0 && y < g->h) {
      const float *row = plane + (size_t)y * (size_t)g->wd + 2 * tx0;
      lo = _mm256_loadu_ps(row);
      hi = _mm256_loadu_ps(row + LANES8);
    }
  } else if (g->wd == LANES8) {
    /* Rows of 8 floats, two per 16. */
    int ty0 = v * g->rows;
    for (int r = 0; r < 2; r++) {
      int ty = ty0 + r, y = 2 * ty - 1 + i;
      if (ty >= g->th || y < 0 || y >= g->h) continue;
      __m256 row = _mm256_loadu_ps(plane + (size_t)y * LANES8);
      if (r == 0)
        lo = row;
      else
        hi = row;
    }
  } else {
    /* Rows of wd = 4 or 2 floats: four or eight per 16. */
    float buf[2 * LANES8] = {0.0f};
    int ty0 = v * g->rows, wd = g->wd;
    for (int r = 0; r < g->rows; r++) {
      int ty = ty0 + r, y = 2 * ty - 1 + i;
      if (ty >= g->th || y < 0 || y >= g->h) continue;
      memcpy(buf + r * wd, plane + (size_t)y * (size_t)wd,
             sizeof(float) * (size_t)wd);
    }
    lo = _mm256_loadu_ps(buf);
    hi = _mm256_loadu_ps(buf + LANES8);
  }
  *a = lo;
  *b = hi;
}

/* The even and the odd elements of 16 floats from p, in order. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
deinterleave8(const float *p, __m256 *even, __m256 *odd) {
  __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + LANES8);
  *even = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

/* patch_row8 for a vector of 8 tiles of one tile row (tw >= 8): columns
 * 2 tx and 2 tx + 1 are the even and odd elements of the 16 floats from
 * 2 tx0; column 2 tx - 1 is the odd one shifted a lane up, and 2 tx + 2
 * the even one shifted a lane down, the lanes that leave the 16 taking
 * the row's neighbouring element (+0 off the plane). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
patch_row8_wide(const wino8_geom *g, const float *plane, int v, int i,
                __m256 d[4]) {
  int t0 = v * LANES8, ty = t0 / g->tw, tx0 = t0 % g->tw;
  int y = 2 * ty - 1 + i;
  if (y < 0 || y >= g->h) {
    d[0] = d[1] = d[2] = d[3] = _mm256_setzero_ps();
    return;
  }
  const float *row = plane + (size_t)y * (size_t)g->wd + 2 * tx0;
  deinterleave8(row, &d[1], &d[2]);
  float left = tx0 > 0 ? row[-1] : 0.0f;
  float right = tx0 + LANES8 < g->tw ? row[2 * LANES8] : 0.0f;
  const __m256i up = _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6);
  const __m256i down = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
  d[0] = _mm256_blend_ps(_mm256_permutevar8x32_ps(d[2], up),
                         _mm256_set1_ps(left), 0x01);
  d[3] = _mm256_blend_ps(_mm256_permutevar8x32_ps(d[1], down),
                         _mm256_set1_ps(right), 0x80);
}

__attribute__((target("avx2,fma"), always_inline)) static inline void
patch_row8(const wino8_geom *g, const __m256i idx[4], const __m256 inside[4],
           const float *plane, int v, int i, __m256 d[4]) {
  if (g->tw >= LANES8) {
    patch_row8_wide(g, plane, v, i, d);
    return;
  }
  __m256 a, b;
  load_rows8(g, plane, v, i, &a, &b);
  const __m256i seven = _mm256_set1_epi32(7);
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) {
    __m256i low = _mm256_and_si256(idx[j], seven);
    __m256 from_a = _mm256_permutevar8x32_ps(a, low);
    __m256 from_b = _mm256_permutevar8x32_ps(b, low);
    /* Lanes whose element lies in b (index 8..15) take from_b. */
    __m256 in_b = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx[j], seven));
    d[j] = _mm256_and_ps(_mm256_blendv_ps(from_a, from_b, in_b), inside[j]);
  }
}

__attribute__((target("avx2,fma"), optimize("fp-contract=off"))) static void
input_transform8(const wino8_geom *g, const float *x, int cin, int v0, int nv,
                 float *V) {
  size_t hw = (size_t)g->h * (size_t)g->wd;
  __m256i idx[4];
  __m256 inside[4];
  for (int j = 0; j < 4; j++) {
    idx[j] = _mm256_loadu_si256((const __m256i *)g->idx[j]);
    inside[j] =
        _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)g->inside[j]));
  }
  for (int ci = 0; ci < cin; ci++) {
    const float *plane = x + (size_t)ci * hw;
    for (int b = 0; b < nv; b++) {
      __m256 c[4][4];
#pragma GCC unroll 4
      for (int i = 0; i < 4; i++) {
        __m256 d[4];
        patch_row8(g, idx, inside, plane, v0 + b, i, d);
        c[i][0] = _mm256_sub_ps(d[0], d[2]);
        c[i][1] = _mm256_add_ps(d[1], d[2]);
        c[i][2] = _mm256_sub_ps(d[2], d[1]);
        c[i][3] = _mm256_sub_ps(d[1], d[3]);
      }
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) {
        __m256 r[4] = {
            _mm256_sub_ps(c[0][j], c[2][j]), _mm256_add_ps(c[1][j], c[2][j]),
            _mm256_sub_ps(c[2][j], c[1][j]), _mm256_sub_ps(c[1][j], c[3][j])};
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++)
          _mm256_store_ps(
              V + (((size_t)(q * 4 + j) * (size_t)cin + (size_t)ci) *
                       (size_t)nv +
                   (size_t)b) *
                      LANES8,
              r[q]);
      }
    }
  }
}

__attribute__((target("avx2,fma"), always_inline)) static inline void
gemm_tiles8(const float *U, const float *V, float *M, int cin, int cout, int nv,
            int co0, const int CO, const int PB) {
  for (int xi = 0; xi < 16; xi++) {
    const float *u = U + (size_t)xi * (size_t)cin * (size_t)cout + co0;
    const float *vx = V + (size_t)xi * (size_t)cin * (size_t)nv * LANES8;
    __m256 acc[TILE_CO8][BLOCK_VECTORS];
#pragma GCC unroll 4
    for (int c = 0; c < CO; c++)
#pragma GCC unroll 4
      for (int j = 0; j < PB; j++)
        acc[c][j] = _mm256_setzero_ps();
    for (int ci = 0; ci < cin; ci++) {
      __m256 v[BLOCK_VECTORS];
#pragma GCC unroll 4
      for (int j = 0; j < PB; j++)
        v[j] =
            _mm256_load_ps(vx + ((size_t)ci * (size_t)nv + (size_t)j) * LANES8);
#pragma GCC unroll 4
      for (int c = 0; c < CO; c++) {
        __m256 uv =
            _mm256_broadcast_ss(u + (size_t)ci * (size_t)cout + (size_t)c);
#pragma GCC unroll 4
        for (int j = 0; j < PB; j++)
          acc[c][j] = _mm256_fmadd_ps(uv, v[j], acc[c][j]);
      }
    }
#pragma GCC unroll 4
    for (int c = 0; c < CO; c++)
#pragma GCC unroll 4
      for (int j = 0; j < PB; j++)
        _mm256_store_ps(M + ((size_t)(xi * TILE_CO8 + c) * BLOCK_VECTORS + j) *
                                LANES8,
                        acc[c][j]);
  }
}

#define GEMM8_CASE(CO, PB)                                                     \
  __attribute__((target("avx2,fma"))) static void gemm8_##CO##_##PB(           \
      const float *U, const float *V, float *M, int cin, int cout, int nv,     \
      int co0) {                                                               \
    gemm_tiles8(U, V, M, cin, cout, nv, co0, CO, PB);                          \
  }
GEMM8_CASE(4, 3)
GEMM8_CASE(4, 2)
GEMM8_CASE(4, 1)
GEMM8_CASE(1, 3)
GEMM8_CASE(1, 2)
GEMM8_CASE(1, 1)

static gemm_fn gemm8_for(int co, int pb) {
  static const gemm_fn table[2][3] = {{gemm8_1_1, gemm8_1_2, gemm8_1_3},
                                      {gemm8_4_1, gemm8_4_2, gemm8_4_3}};
  return table[co == 4 ? 1 : 0][pb - 1];
}

__attribute__((target("avx2,fma"), optimize("fp-contract=off"))) static void
output_transform8(const wino8_geom *g, const float *M, int co0, int CO, int v0,
                  int nv, float *y) {
  size_t hw = (size_t)g->h * (size_t)g->wd, wd = (size_t)g->wd;
  const size_t xi_stride = (size_t)TILE_CO8 * BLOCK_VECTORS * LANES8;
  for (int c = 0; c < CO; c++)
    for (int b = 0; b < nv; b++) {
      const float *m = M + ((size_t)c * BLOCK_VECTORS + (size_t)b) * LANES8;
      __m256 r0[4], r1[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) {
        __m256 m0 = _mm256_load_ps(m + (size_t)(0 * 4 + j) * xi_stride);
        __m256 m1 = _mm256_load_ps(m + (size_t)(1 * 4 + j) * xi_stride);
        __m256 m2 = _mm256_load_ps(m + (size_t)(2 * 4 + j) * xi_stride);
        __m256 m3 = _mm256_load_ps(m + (size_t)(3 * 4 + j) * xi_stride);
        r0[j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
        r1[j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
      }
      __m256 o00 = _mm256_add_ps(_mm256_add_ps(r0[0], r0[1]), r0[2]);
      __m256 o01 = _mm256_sub_ps(_mm256_sub_ps(r0[1], r0[2]), r0[3]);
      __m256 o10 = _mm256_add_ps(_mm256_add_ps(r1[0], r1[1]), r1[2]);
      __m256 o11 = _mm256_sub_ps(_mm256_sub_ps(r1[1], r1[2]), r1[3]);
      /* Interleaved: (o00[0], o01[0], o00[1], ...) over 16 floats. */
      __m256 tl = _mm256_unpacklo_ps(o00, o01),
             th = _mm256_unpackhi_ps(o00, o01);
      __m256 bl = _mm256_unpacklo_ps(o10, o11),
             bh = _mm256_unpackhi_ps(o10, o11);
      __m256 t0 = _mm256_permute2f128_ps(tl, th, 0x20);
      __m256 t1 = _mm256_permute2f128_ps(tl, th, 0x31);
      __m256 b0 = _mm256_permute2f128_ps(bl, bh, 0x20);
      __m256 b1 = _mm256_permute2f128_ps(bl, bh, 0x31);
      float *plane = y + (size_t)(co0 + c) * hw;
      int v = v0 + b;
      if (g->tw >= LANES8) {
        int tt = v * LANES8, ty = tt / g->tw, tx0 = tt % g->tw;
        float *r = plane + (size_t)(2 * ty) * wd + 2 * (size_t)tx0;
        _mm256_storeu_ps(r, t0);
        _mm256_storeu_ps(r + LANES8, t1);
        _mm256_storeu_ps(r + wd, b0);
        _mm256_storeu_ps(r + wd + LANES8, b1);
        continue;
      }
      float top[2 * LANES8], bottom[2 * LANES8];
      _mm256_storeu_ps(top, t0);
      _mm256_storeu_ps(top + LANES8, t1);
      _mm256_storeu_ps(bottom, b0);
      _mm256_storeu_ps(bottom + LANES8, b1);
      int ty0 = v * g->rows;
      for (int r = 0; r < g->rows && ty0 + r < g->th; r++) {
        float *row = plane + (size_t)(2 * (ty0 + r)) * wd;
        memcpy(row, top + (size_t)r * wd, sizeof(float) * wd);
        memcpy(row + wd, bottom + (size_t)r * wd, sizeof(float) * wd);
      }
    }
}

/* ae_net_conv_wino_weights with 8 output channels in the lanes. */
__attribute__((target("avx2,fma"), optimize("fp-contract=off"))) static void
weights_avx2(const float *w, int cout, int cin, float *U) {
  const __m256 half = _mm256_set1_ps(0.5f);
  for (int co0 = 0; co0 < cout; co0 += LANES8) {
    int n = cout - co0 < LANES8 ? cout - co0 : LANES8;
    int off[LANES8], keep[LANES8];
    for (int l = 0; l < LANES8; l++) {
      off[l] = (l < n ? co0 + l : co0) * cin * 9;
      keep[l] = l < n ? -1 : 0;
    }
    __m256i base = _mm256_loadu_si256((const __m256i *)off);
    __m256i mask = _mm256_loadu_si256((const __m256i *)keep);
    for (int ci = 0; ci < cin; ci++) {
      const float *gc = w + (size_t)ci * 9;
      __m256 g[9];
#pragma GCC unroll 9
      for (int t = 0; t < 9; t++)
        g[t] = _mm256_i32gather_ps(gc + t, base, 4);
      __m256 t4[4][3];
#pragma GCC unroll 3
      for (int c = 0; c < 3; c++) {
        __m256 g0 = g[c], g1 = g[3 + c], g2 = g[6 + c];
        t4[0][c] = g0;
        t4[1][c] =
            _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(g0, g1), g2), half);
        t4[2][c] =
            _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(g0, g1), g2), half);
        t4[3][c] = g2;
      }
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++) {
        __m256 u[4] = {
            t4[r][0],
            _mm256_mul_ps(
                _mm256_add_ps(_mm256_add_ps(t4[r][0], t4[r][1]), t4[r][2]),
                half),
            _mm256_mul_ps(
                _mm256_add_ps(_mm256_sub_ps(t4[r][0], t4[r][1]), t4[r][2]),
                half),
            t4[r][2]};
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
          _mm256_maskstore_ps(
              U +
                  ((size_t)(r * 4 + c) * (size_t)cin + (size_t)ci) *
                      (size_t)cout +
                  (size_t)co0,
              mask, u[c]);
      }
    }
  }
}

static void wino_avx2(const float *U, const float *x, size_t x_stride, int cin,
                      int h, int wd, int cout, float *y, size_t y_stride,
                      int samples, float *V) {
  wino8_geom g;
  wino8_geom_init(&g, h, wd);
  _Alignas(64) float M[16 * TILE_CO8 * BLOCK_VECTORS * LANES8];
  for (int s = 0; s < samples; s++) {
    const float *xs = x + (size_t)s * x_stride;
    float *ys = y + (size_t)s * y_stride;
    for (int v0 = 0; v0 < g.vectors; v0 += BLOCK_VECTORS) {
      int nv = g.vectors - v0 < BLOCK_VECTORS ? g.vectors - v0 : BLOCK_VECTORS;
      input_transform8(&g, xs, cin, v0, nv, V);
      for (int co0 = 0; co0 < cout;) {
        int co = cout - co0 >= TILE_CO8 ? TILE_CO8 : 1;
        gemm8_for(co, nv)(U, V, M, cin, cout, nv, co0);
        output_transform8(&g, M, co0, co, v0, nv, ys);
        co0 += co;
      }
    }
  }
}

#endif

int ae_net_conv_wino_lanes(int lanes, const float *w, const float *x,
                           size_t x_stride, int cin, int h, int wd, int cout,
                           float *y, size_t y_stride, int samples) {
#if HAVE_WINO_AVX512
  size_t u_floats = 16 * (size_t)cin * (size_t)cout;
  size_t v_floats = 16 * (size_t)cin * BLOCK_VECTORS * LANES;
  /* The CPU's own features, whatever class the process runs as. */
  __builtin_cpu_init();
  int can = lanes == LANES    ? __builtin_cpu_supports("avx512f")
            : lanes == LANES8 ? __builtin_cpu_supports("avx2") &&
                                    __builtin_cpu_supports("fma")
                              : 0;
  float *scratch = can ? thread_scratch(u_floats + v_floats) : NULL;
  if (!scratch) return -1;
  if (lanes == LANES) {
    weights_avx512(w, cout, cin, scratch);
    wino_avx512(scratch, x, x_stride, cin, h, wd, cout, y, y_stride, samples,
                scratch + u_floats);
  } else {
    weights_avx2(w, cout, cin, scratch);
    wino_avx2(scratch, x, x_stride, cin, h, wd, cout, y, y_stride, samples,
              scratch + u_floats);
  }
  return 0;
#else
  (void)lanes, (void)w, (void)x, (void)x_stride, (void)cin, (void)h, (void)wd;
  (void)cout, (void)y, (void)y_stride, (void)samples;
  return -1;
#endif
}

void ae_net_conv_wino(const float *w, const float *x, size_t x_stride, int cin,
                      int h, int wd, int cout, float *y, size_t y_stride,
                      int samples) {
#if HAVE_WINO_AVX512
  size_t u_floats = 16 * (size_t)cin * (size_t)cout;
  size_t v_floats = 16 * (size_t)cin * BLOCK_VECTORS * LANES;
  int avx512 = ae_net_have_avx512(), avx2 = !avx512 && ae_net_have_avx2_fma();
  float *scratch = avx512 || avx2 ? thread_scratch(u_floats + v_floats) : NULL;
  if (scratch && avx512) {
    weights_avx512(w, cout, cin, scratch);
    wino_avx512(scratch, x, x_stride, cin, h, wd, cout, y, y_stride, samples,
                scratch + u_floats);
    return;
  }
  if (scratch) {
    weights_avx2(w, cout, cin, scratch);
    wino_avx2(scratch, x, x_stride, cin, h, wd, cout, y, y_stride, samples,
              scratch + u_floats);
    return;
  }
#endif
  ae_net_conv_wino_ref(w, x, x_stride, cin, h, wd, cout, y, y_stride, samples);
}
