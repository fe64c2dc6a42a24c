/* test_net_conv_direct.c: the direct float32 convolution
 * (gpu/host/net_conv_direct.c).  Against the float64 definition for every
 * kernel size it takes (1..7), planes with and without a partial vector,
 * output channels in tiles of 8, 4 and 1 and several samples at once;
 * bit for bit against im2col + cblas_sgemm wherever
 * ae_net_conv_direct_replaces says it may stand in for that sgemm, and
 * the shapes and GEMMs it must refuse; Winograd's 3 x 3 convolution
 * (net_conv_wino.c) against its reference and float64.  On a machine where the
 * direct path is off (no AVX-512, another BLAS) the value tests have nothing to
 * compare and say so.  Also the other bit-identical fast paths of the forward
 * and the jets: the 3x3 average pool's rows and the BN statistics four channels
 * at a time; and of the backward: the ReLU backward in 16 lanes and BN's
 * backward sums four channels at a time, each against its reference; and the
 * channel sums of the features' entropy (gpu/groups/features.c) and
 * col2im's stride-1 rows and the average pool's adjoint; and the Philox
 * words of a run of elements (the Rademacher g_out and the weight
 * init) and the float32 normals drawn from them with the vector cosine;
 * and the float32 NTK's Gram kernel; and the convolutions of all-zero
 * inputs answered with +0 without computing them, in the forward and in
 * the NTK's weight gradients. */
#include "api/status.h"
#include "gpu/groups/features.h"
#include "gpu/host/blas_env.h"
#include "gpu/host/graph_build.h"
#include "gpu/host/net_internal.h"
#include "gpu/philox.h"
#include <cblas.h>
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Random float32 in [-1, 1), exact zeros one time in eight. */
static float random_value(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  if ((*s >> 29) == 0) return 0.0f;
  return (float)((*s >> 8) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

typedef struct {
  int cin, h, w, k, cout, samples;
  float *wt, *x, *y;
} conv_case;

static void case_make(conv_case *c, int cin, int h, int w, int k, int cout,
                      int samples, uint32_t seed) {
  c->cin = cin, c->h = h, c->w = w, c->k = k, c->cout = cout;
  c->samples = samples;
  size_t nw = (size_t)cout * cin * k * k, nx = (size_t)samples * cin * h * w;
  size_t ny = (size_t)samples * cout * h * w;
  c->wt = malloc(sizeof(float) * nw);
  c->x = malloc(sizeof(float) * nx);
  c->y = malloc(sizeof(float) * ny);
  ck_assert(c->wt && c->x && c->y);
  for (size_t i = 0; i < nw; i++)
    c->wt[i] = random_value(&seed);
  for (size_t i = 0; i < nx; i++)
    c->x[i] = random_value(&seed);
  /* NaN everywhere: an output the kernel forgets to write shows. */
  for (size_t i = 0; i < ny; i++)
    c->y[i] = NAN;
  size_t hw = (size_t)h * w;
  ae_net_conv_direct(c->wt, c->x, (size_t)cin * hw, cin, h, w, k, cout, c->y,
                     (size_t)cout * hw, samples);
}

static void case_free(conv_case *c) {
  free(c->wt);
  free(c->x);
  free(c->y);
}

/* Every output against the float64 sum of its definition, within
 * float32 round-off of the sum of |terms|. */
static void check_definition(const conv_case *c) {
  int pad = (c->k - 1) / 2, hw = c->h * c->w;
  for (int s = 0; s < c->samples; s++)
    for (int co = 0; co < c->cout; co++)
      for (int oy = 0; oy < c->h; oy++)
        for (int ox = 0; ox < c->w; ox++) {
          double sum = 0.0, mag = 0.0;
          for (int ci = 0; ci < c->cin; ci++)
            for (int ky = 0; ky < c->k; ky++)
              for (int kx = 0; kx < c->k; kx++) {
                int iy = oy + ky - pad, ix = ox + kx - pad;
                if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) continue;
                double t =
                    (double)
                        c->wt[((size_t)(co * c->cin + ci) * c->k + ky) * c->k +
                              kx] *
                    c->x[((size_t)s * c->cin + ci) * hw + iy * c->w + ix];
                sum += t;
                mag += fabs(t);
              }
          float got = c->y[((size_t)s * c->cout + co) * hw + oy * c->w + ox];
          ck_assert_msg(fabs(got - sum) <= 1e-6 * (mag + 1e-30) * c->cin * 9,
                        "cin %d %dx%d k %d cout %d: sample %d (%d,%d,%d) "
                        "%.9g vs %.9g",
                        c->cin, c->h, c->w, c->k, c->cout, s, co, oy, ox, got,
                        sum);
        }
}

/* 1 when the direct path is on here (the one-time check passed). */
static int direct_on(void) {
  int on = ae_net_conv_direct_replaces(64, 4096, 576);
  if (!on)
    fprintf(stderr, "test_net_conv_direct: the direct convolution is off "
                    "here (no AVX-512 or another BLAS): nothing to compare\n");
  return on;
}

START_TEST(matches_definition) {
  if (!direct_on()) return;
  static const int shapes[][6] = {
      /* cin, h, w, k, cout, samples */
      {3, 32, 32, 3, 16, 2}, {16, 8, 8, 3, 13, 3}, {5, 7, 9, 1, 12, 2},
      {2, 3, 3, 3, 5, 4},    {4, 11, 6, 5, 9, 1},  {1, 13, 17, 7, 8, 2},
      {1, 1, 1, 3, 4, 3},    {9, 1, 20, 3, 3, 1},  {7, 20, 1, 5, 6, 2}};
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    conv_case c;
    case_make(&c, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3],
              shapes[i][4], shapes[i][5], (uint32_t)(i + 1));
    check_definition(&c);
    case_free(&c);
  }
}
END_TEST

/* Where the direct path may replace im2col + sgemm, its values are the
 * sgemm's bit for bit (the NB201 shapes, K split by OpenBLAS, tails). */
START_TEST(bitwise_sgemm_where_replaced) {
  if (!direct_on()) return;
  if (ae_net_conv_direct_kind() != AE_NET_DIRECT_SGEMM) {
    fprintf(stderr, "test_net_conv_direct: the direct convolution here has "
                    "its own values (AVX2), not sgemm's\n");
    return;
  }
  static const int shapes[][5] = {
      {16, 32, 32, 3, 16}, {32, 16, 16, 3, 32}, {64, 8, 8, 3, 64},
      {128, 6, 6, 3, 40},  {3, 32, 32, 3, 16},  {16, 32, 32, 1, 64},
      {2, 30, 30, 7, 13},  {64, 16, 16, 1, 64}, {100, 9, 9, 3, 17},
      {16, 32, 32, 1, 16}, {32, 16, 16, 1, 32}, {64, 8, 8, 1, 64},
      {1, 4, 4, 3, 16},    {8, 8, 8, 3, 8}};
  int compared = 0;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    int cin = shapes[i][0], h = shapes[i][1], w = shapes[i][2];
    int k = shapes[i][3], cout = shapes[i][4], hw = h * w, kk = cin * k * k;
    /* Winograd's 3 x 3 shapes have values of their own (below). */
    if (ae_net_conv_direct_defines(h, w, k, cin, cout) ||
        !ae_net_conv_direct_replaces(cout, (size_t)hw, (size_t)kk))
      continue;
    conv_case c;
    case_make(&c, cin, h, w, k, cout, 1, (uint32_t)(100 + i));
    float *col = malloc(sizeof(float) * (size_t)kk * hw);
    float *ref = malloc(sizeof(float) * (size_t)cout * hw);
    ck_assert(col && ref);
    ae_net_im2col_t(c.x, cin, h, w, k, 1, (k - 1) / 2, h, w, col, (size_t)hw);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, hw, kk, 1.0f,
                c.wt, kk, col, hw, 0.0f, ref, hw);
    ck_assert_msg(memcmp(ref, c.y, sizeof(float) * (size_t)cout * hw) == 0,
                  "shape %zu differs from im2col + sgemm", i);
    compared++;
    free(col);
    free(ref);
    case_free(&c);
  }
  /* The 1 x 1 and 7 x 7 shapes and the odd planes at least. */
  ck_assert_int_ge(compared, 4);
}
END_TEST

/* 1 when ae_net_conv_direct runs Winograd's kernel for this shape. */
static int wino_runs(int h, int w, int k, int cin, int cout) {
  const char *env = getenv("AE_CONV_WINOGRAD");
  return k == 3 && ae_net_conv_wino_fits(h, w, cin, cout) &&
         ae_net_conv_direct_kind() != AE_NET_DIRECT_OFF &&
         !(env && strcmp(env, "0") == 0);
}

/* Winograd's F(2 x 2, 3 x 3) (net_conv_wino.c): the vector kernels (16
 * and 8 lanes, each where the CPU has it) and their plain-C reference bit
 * for bit (planes of one tile row per vector
 * and of several, partial vectors, channel tiles of 8, 4 and 1, several
 * samples), ae_net_conv_direct giving its values wherever _defines says
 * so, every output within the definition's float32 bound, and its error
 * against float64 of the size of the direct chain's (ae_net_conv8_ref). */
START_TEST(wino_matches_reference) {
  static const int shapes[][5] = {
      /* cin, h, w, cout, samples */
      {16, 32, 32, 16, 2}, {32, 16, 16, 32, 2}, {64, 8, 8, 64, 2},
      {3, 4, 4, 5, 3},     {7, 2, 2, 9, 2},     {5, 6, 8, 13, 2},
      {16, 10, 4, 8, 1},   {9, 2, 64, 17, 2},   {4, 64, 32, 4, 1},
      {16, 12, 16, 16, 2}, {20, 8, 2, 20, 3},   {1, 2, 32, 1, 1},
      {3, 32, 32, 16, 2}};
  double err_wino = 0.0, err_direct = 0.0;
  int kernels_compared = 0;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    int cin = shapes[i][0], h = shapes[i][1], w = shapes[i][2];
    int cout = shapes[i][3], samples = shapes[i][4];
    ck_assert_msg(ae_net_conv_wino_fits(h, w, cin, cout), "shape %zu", i);
    conv_case c;
    case_make(&c, cin, h, w, 3, cout, samples, (uint32_t)(300 + i));
    size_t hw = (size_t)h * w, ny = (size_t)samples * cout * hw;
    float *fast = malloc(sizeof(float) * ny), *ref = malloc(sizeof(float) * ny);
    float *chain = malloc(sizeof(float) * ny);
    ck_assert(fast && ref && chain);
    for (size_t e = 0; e < ny; e++)
      fast[e] = ref[e] = NAN;
    ae_net_conv_wino(c.wt, c.x, (size_t)cin * hw, cin, h, w, cout, fast,
                     (size_t)cout * hw, samples);
    ae_net_conv_wino_ref(c.wt, c.x, (size_t)cin * hw, cin, h, w, cout, ref,
                         (size_t)cout * hw, samples);
    ck_assert_msg(memcmp(fast, ref, sizeof(float) * ny) == 0,
                  "shape %zu: the kernel differs from its reference", i);
    /* Both vector kernels this CPU has, whatever class it runs as. */
    for (int lanes = 8; lanes <= 16; lanes += 8) {
      for (size_t e = 0; e < ny; e++)
        fast[e] = NAN;
      if (ae_net_conv_wino_lanes(lanes, c.wt, c.x, (size_t)cin * hw, cin, h, w,
                                 cout, fast, (size_t)cout * hw, samples) != 0)
        continue;
      ck_assert_msg(memcmp(fast, ref, sizeof(float) * ny) == 0,
                    "shape %zu: the %d-lane kernel differs from the "
                    "reference",
                    i, lanes);
      kernels_compared++;
    }
    if (wino_runs(h, w, 3, cin, cout))
      ck_assert_msg(memcmp(ref, c.y, sizeof(float) * ny) == 0,
                    "shape %zu: ae_net_conv_direct is not Winograd's", i);
    /* The error against float64, Winograd's and the direct chain's. */
    ae_net_conv8_ref(c.wt, c.x, (size_t)cin * hw, cin, h, w, 3, cout, chain,
                     (size_t)cout * hw, samples);
    for (int s = 0; s < samples; s++)
      for (int co = 0; co < cout; co++)
        for (int oy = 0; oy < h; oy++)
          for (int ox = 0; ox < w; ox++) {
            double sum = 0.0;
            for (int ci = 0; ci < cin; ci++)
              for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                  int iy = oy + ky - 1, ix = ox + kx - 1;
                  if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                  sum += (double)
                             c.wt[((size_t)(co * cin + ci) * 3 + ky) * 3 + kx] *
                         c.x[((size_t)s * cin + ci) * hw + iy * w + ix];
                }
            size_t e = ((size_t)s * cout + co) * hw + (size_t)(oy * w + ox);
            err_wino += fabs(ref[e] - sum);
            err_direct += fabs(chain[e] - sum);
          }
    conv_case d = c;
    d.y = ref;
    d.samples = samples;
    check_definition(&d);
    free(fast);
    free(ref);
    free(chain);
    case_free(&c);
  }
  fprintf(stderr,
          "test_net_conv_direct: total |error| against float64: Winograd "
          "%.3g, the direct chain %.3g\n",
          err_wino, err_direct);
  ck_assert(err_wino > 0.0);
  ck_assert(err_wino <= 2.0 * err_direct);
  if (kernels_compared == 0)
    fprintf(stderr, "test_net_conv_direct: no Winograd vector kernel here: "
                    "its reference alone checked\n");
  /* What it refuses: odd sides, tile rows that neither fill nor split
   * vectors, too many channels. */
  ck_assert_int_eq(ae_net_conv_wino_fits(7, 8, 4, 4), 0);
  ck_assert_int_eq(ae_net_conv_wino_fits(8, 6, 4, 4), 0);
  ck_assert_int_eq(ae_net_conv_wino_fits(8, 48, 4, 4), 0);
  ck_assert_int_eq(ae_net_conv_wino_fits(8, 8, AE_NET_WINO_MAX_C + 1, 4), 0);
  ck_assert_int_eq(ae_net_conv_wino_fits(8, 8, 4, AE_NET_WINO_MAX_C + 1), 0);
}
END_TEST

START_TEST(refuses_what_it_cannot_match) {
  /* OpenBLAS's small-matrix kernel (M N K <= 100^3) sums a partial group
   * of 16 columns otherwise and never splits K; a K remainder that the
   * threaded driver halves otherwise (468 = 240 + 228 one thread,
   * 234 + 234 threaded).  With AVX2 the direct values are the
   * definition: it takes them all. */
  int own = ae_net_conv_direct_kind() == AE_NET_DIRECT_OWN;
  ck_assert_int_eq(ae_net_conv_direct_replaces(16, 1026, 27), own);
  ck_assert_int_eq(ae_net_conv_direct_replaces(8, 64, 576), own);
  ck_assert_int_eq(ae_net_conv_direct_replaces(64, 4096, 468), own);
  /* Shapes: stride 2, even kernels, padding other than (k - 1) / 2. */
  ae_node nd;
  ae_plan_geom ge;
  memset(&nd, 0, sizeof nd);
  memset(&ge, 0, sizeof ge);
  nd.op = AE_OP_CONV, nd.kernel = 3, nd.stride = 1, nd.padding = 1;
  nd.shape[0] = 16, nd.shape[1] = 8, nd.shape[2] = 8;
  ge.in_c = 16, ge.in_h = 8, ge.in_w = 8, ge.out_hw = 64;
  ck_assert_int_eq(ae_net_conv_direct_fits(&nd, &ge), 1);
  nd.stride = 2, nd.shape[1] = 4, nd.shape[2] = 4, ge.out_hw = 16;
  ck_assert_int_eq(ae_net_conv_direct_fits(&nd, &ge), 0);
  nd.stride = 1, nd.kernel = 2, nd.padding = 0;
  ck_assert_int_eq(ae_net_conv_direct_fits(&nd, &ge), 0);
  nd.kernel = 3, nd.padding = 0, nd.shape[1] = 6, nd.shape[2] = 6;
  ck_assert_int_eq(ae_net_conv_direct_fits(&nd, &ge), 0);
  /* A 1 x 1 convolution: direct with AVX-512, a GEMM with AVX2. */
  nd.kernel = 1, nd.padding = 0, nd.shape[1] = 8, nd.shape[2] = 8;
  ck_assert_int_eq(ae_net_conv_direct_fits(&nd, &ge), !own);
  nd.op = AE_OP_LINEAR;
  ck_assert_int_eq(ae_net_conv_direct_fits(&nd, &ge), 0);
}
END_TEST

/* With AVX2 (AE_NET_DIRECT_OWN) the kernel against ae_net_conv8_ref bit
 * for bit: rows that are and are not a multiple of 8 positions (a
 * partial vector reading the next row), 1 .. 7 wide kernels, tiles of
 * 4 channels x 3 vectors and (small planes) 3 x 4, and their remainders,
 * one and several blocks of input channels, several samples with
 * strides larger than a sample; and ae_net_conv_direct_run on a geometry
 * the same (Winograd's reference where its kernel runs instead).
 * Elsewhere the reference alone against the definition. */
START_TEST(avx2_matches_reference) {
  static const int shapes[][6] = {
      /* cin, h, w, k, cout, samples */
      {16, 32, 32, 3, 16, 2}, {64, 8, 8, 3, 64, 1}, {3, 32, 32, 3, 16, 1},
      {40, 6, 9, 3, 7, 2},    {5, 7, 13, 5, 9, 2},  {2, 11, 17, 7, 5, 1},
      {1, 1, 1, 3, 4, 3},     {9, 1, 20, 3, 3, 1},  {33, 5, 3, 3, 6, 2},
      {17, 16, 16, 3, 32, 1}, {7, 20, 1, 5, 6, 2},  {5, 4, 16, 3, 8, 2}};
  int own = ae_net_conv_direct_kind() == AE_NET_DIRECT_OWN;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    int cin = shapes[i][0], h = shapes[i][1], w = shapes[i][2];
    int k = shapes[i][3], cout = shapes[i][4], samples = shapes[i][5];
    size_t hw = (size_t)h * w, xs = (size_t)cin * hw + 5,
           ys = (size_t)cout * hw + 3;
    size_t nw = (size_t)cout * cin * k * k;
    float *wt = malloc(sizeof(float) * nw);
    float *x = malloc(sizeof(float) * xs * samples);
    float *y = malloc(sizeof(float) * ys * samples);
    float *ref = malloc(sizeof(float) * ys * samples);
    ck_assert(wt && x && y && ref);
    uint32_t seed = (uint32_t)(300 + i);
    for (size_t e = 0; e < nw; e++)
      wt[e] = random_value(&seed);
    for (size_t e = 0; e < xs * samples; e++)
      x[e] = random_value(&seed) * 4.0f;
    for (size_t e = 0; e < ys * samples; e++)
      y[e] = ref[e] = -7.0f; /* the gaps between samples stay as they are */
    /* Winograd's shapes run Winograd's arithmetic (tested above). */
    if (own && wino_runs(h, w, k, cin, cout))
      ae_net_conv_wino_ref(wt, x, xs, cin, h, w, cout, ref, ys, samples);
    else
      ae_net_conv8_ref(wt, x, xs, cin, h, w, k, cout, ref, ys, samples);
    if (own) {
      ae_net_conv_direct(wt, x, xs, cin, h, w, k, cout, y, ys, samples);
      ck_assert_msg(memcmp(y, ref, sizeof(float) * ys * samples) == 0,
                    "shape %zu: the AVX2 kernel differs from its reference", i);
      ae_net_direct_geom *g = malloc(sizeof *g);
      ck_assert_ptr_nonnull(g);
      ae_net_conv_direct_geom(h, w, k, g);
      for (size_t e = 0; e < ys * samples; e++)
        y[e] = -7.0f;
      ae_net_conv_direct_run(g, wt, x, xs, cin, cout, y, ys, samples);
      ck_assert_msg(memcmp(y, ref, sizeof(float) * ys * samples) == 0,
                    "shape %zu: ae_net_conv_direct_run differs", i);
      free(g);
    }
    /* The reference itself against the float64 definition. */
    conv_case c = {cin, h, w, k, cout, 1, wt, x, ref};
    check_definition(&c);
    free(wt), free(x), free(y), free(ref);
  }
  if (!own)
    fprintf(stderr, "test_net_conv_direct: no AVX2 direct convolution here: "
                    "its reference alone checked\n");
}
END_TEST

/* The 3x3 stride-1 pool's row fast path (padded rows, -0 off the plane)
 * against the generic window loop (sum from 0, rows then columns in
 * order, over the in-bounds taps; the divisor 9 or the count of those
 * taps), bit for bit. */
START_TEST(avg_pool3_matches_window_loop) {
  static const int shapes[][2] = {{32, 32}, {8, 8}, {2, 3}, {5, 17}, {3, 4}};
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
    for (int include_pad = 0; include_pad < 2; include_pad++) {
      int h = shapes[i][0], w = shapes[i][1];
      float *x = malloc(sizeof(float) * (size_t)h * w);
      float *y = malloc(sizeof(float) * (size_t)h * w);
      ck_assert(x && y);
      uint32_t seed = (uint32_t)(7 + i);
      for (int e = 0; e < h * w; e++)
        x[e] = random_value(&seed) * 3.0f;
      /* Signed zeros, whose sums tell +0 + -0 from -0 + -0, at the
       * edges and inside; in the 8 x 8 plane a row of them. */
      for (int e = 0; e < h * w; e += 5)
        x[e] = -0.0f;
      if (h == 8)
        for (int e = 0; e < w; e++)
          x[3 * w + e] = -0.0f;
      ae_net_avg_pool_plane_t(x, h, w, 3, 1, 1, include_pad, h, w, y);
      for (int oy = 0; oy < h; oy++)
        for (int ox = 0; ox < w; ox++) {
          float sum = 0.0f;
          int taps = 0;
          for (int iy = oy - 1; iy <= oy + 1; iy++)
            for (int ix = ox - 1; ix <= ox + 1; ix++)
              if (iy >= 0 && iy < h && ix >= 0 && ix < w) {
                sum += x[iy * w + ix];
                taps++;
              }
          float want = sum / (float)(include_pad ? 9 : taps);
          ck_assert_msg(memcmp(&want, &y[oy * w + ox], sizeof want) == 0,
                        "%dx%d pad %d at (%d,%d): %.9g vs %.9g", h, w,
                        include_pad, oy, ox, y[oy * w + ox], want);
        }
      free(x);
      free(y);
    }
}
END_TEST

/* im2col with strides 2 and 3 (the reduction blocks' convolutions)
 * against the element-by-element definition (x at (oy * s - pad + ky,
 * ox * s - pad + kx), +0 off the plane), bit for bit: kernels 1 and 3,
 * pads 0 and 1, even and odd planes, a row stride larger than a plane. */
START_TEST(im2col_strided_matches_definition) {
  static const int cases[][5] = {/* c, h, w, k, pad */
                                 {2, 32, 32, 3, 1},
                                 {3, 7, 9, 3, 1},
                                 {1, 8, 8, 1, 0},
                                 {2, 5, 6, 3, 0},
                                 {1, 4, 3, 3, 1}};
  for (size_t t = 0; t < sizeof cases / sizeof *cases; t++)
    for (int stride = 2; stride <= 3; stride++) {
      int c = cases[t][0], h = cases[t][1], w = cases[t][2], k = cases[t][3];
      int pad = cases[t][4];
      int oh = (h + 2 * pad - k) / stride + 1,
          ow = (w + 2 * pad - k) / stride + 1;
      size_t ld = (size_t)oh * ow + 3, rows = (size_t)c * k * k;
      float *x = malloc(sizeof(float) * (size_t)c * h * w);
      float *a = malloc(sizeof(float) * rows * ld);
      float *b = malloc(sizeof(float) * rows * ld);
      ck_assert(x && a && b);
      uint32_t seed = (uint32_t)(41 + t);
      for (int e = 0; e < c * h * w; e++)
        x[e] = e % 4 == 1 ? -0.0f : random_value(&seed);
      for (size_t e = 0; e < rows * ld; e++)
        a[e] = b[e] = 9.0f;
      ae_net_im2col_t(x, c, h, w, k, stride, pad, oh, ow, a, ld);
      for (int ci = 0; ci < c; ci++)
        for (int ky = 0; ky < k; ky++)
          for (int kx = 0; kx < k; kx++)
            for (int oy = 0; oy < oh; oy++)
              for (int ox = 0; ox < ow; ox++) {
                int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                b[((size_t)(ci * k + ky) * k + kx) * ld + (size_t)oy * ow +
                  ox] = iy >= 0 && iy < h && ix >= 0 && ix < w
                            ? x[((size_t)ci * h + iy) * w + ix]
                            : 0.0f;
              }
      ck_assert_msg(memcmp(a, b, sizeof(float) * rows * ld) == 0,
                    "case %zu stride %d", t, stride);
      free(x);
      free(a);
      free(b);
    }
}
END_TEST

/* ae_f32_to_f64 against the plain conversion, bit for bit, over runs
 * with and without a partial vector: signed zeros, infinities, a NaN,
 * subnormals and the float32 extremes. */
START_TEST(f32_to_f64_matches_conversion) {
  static const size_t counts[] = {0, 1, 7, 33, 1000};
  float src[1000];
  double got[1001], want[1000];
  uint32_t seed = 3;
  for (size_t i = 0; i < 1000; i++)
    src[i] = random_value(&seed) * 1e3f;
  src[1] = -0.0f;
  src[2] = INFINITY;
  src[3] = -INFINITY;
  src[4] = NAN;
  src[5] = 1e-45f;
  src[6] = -3.4028235e38f;
  for (size_t q = 0; q < sizeof counts / sizeof *counts; q++) {
    size_t n = counts[q];
    got[n] = 7.0;
    ae_f32_to_f64(src, n, got);
    for (size_t i = 0; i < n; i++)
      want[i] = (double)src[i];
    ck_assert(memcmp(got, want, n * sizeof *got) == 0);
    ck_assert(got[n] == 7.0); /* nothing written past n */
  }
}
END_TEST

/* The 2x2 stride-2 pool's fast path (NB201's reduction shortcut) against
 * the window loop (sum from 0 over the taps in row-major order, divided
 * by 4), bit for bit: even and odd planes (an odd row or column left
 * out), signed zeros. */
START_TEST(avg_pool2_stride2_matches_window_loop) {
  static const int shapes[][2] = {{32, 32}, {8, 8}, {5, 7}, {2, 2}};
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    int h = shapes[i][0], w = shapes[i][1], oh = h / 2, ow = w / 2;
    float *x = malloc(sizeof(float) * (size_t)h * w);
    float *y = malloc(sizeof(float) * (size_t)oh * ow);
    ck_assert(x && y);
    uint32_t seed = (uint32_t)(17 + i);
    for (int e = 0; e < h * w; e++)
      x[e] = e % 3 == 0 ? -0.0f : random_value(&seed) * 3.0f;
    ae_net_avg_pool_plane_t(x, h, w, 2, 2, 0, 0, oh, ow, y);
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++) {
        float sum = 0.0f;
        for (int ky = 0; ky < 2; ky++)
          for (int kx = 0; kx < 2; kx++)
            sum += x[(2 * oy + ky) * w + 2 * ox + kx];
        float want = sum / 4.0f;
        ck_assert_msg(memcmp(&want, &y[oy * ow + ox], sizeof want) == 0,
                      "%dx%d at (%d,%d): %a vs %a", h, w, oy, ox,
                      (double)y[oy * ow + ox], (double)want);
      }
    free(x);
    free(y);
  }
}
END_TEST

/* BN statistics several channels at a time: the per-channel function's
 * very values (22 channels from an offset c0: where AVX-512 runs, two
 * groups of eight in its lanes, then a group of four and two alone; else
 * five groups of four and two alone; planes of 13, a tail after 8). */
START_TEST(bn_stats_match_per_channel) {
  /* channels, plane, channels taken (from channel 1), batch: groups of
   * four and a partial group, planes with and without a partial vector,
   * one position. */
  static const int cases[][4] = {
      {23, 13, 22, 5}, {4, 1, 3, 2}, {7, 64, 6, 3}, {13, 16, 12, 1}};
  for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
    int C = cases[t][0], P = cases[t][1], N = cases[t][2], B = cases[t][3];
    float *x = malloc(sizeof(float) * (size_t)(B * C * P));
    double *mean = malloc(sizeof(double) * (size_t)N);
    double *var = malloc(sizeof(double) * (size_t)N);
    ck_assert(x && mean && var);
    uint32_t seed = 3 + (uint32_t)t;
    for (int e = 0; e < B * C * P; e++)
      x[e] = 10.0f + random_value(&seed);
    ae_net_bn_stats_t(x, B, (size_t)C * P, P, 1, N, mean, var);
    for (int c = 0; c < N; c++) {
      double m, v;
      ae_net_bn_channel_stats_t(x, B, (size_t)C * P, P, (size_t)c + 1, &m, &v);
      ck_assert_msg(memcmp(&m, &mean[c], sizeof m) == 0,
                    "case %zu mean %d: %a vs %a", t, c, mean[c], m);
      ck_assert_msg(memcmp(&v, &var[c], sizeof v) == 0,
                    "case %zu var %d: %a vs %a", t, c, var[c], v);
      ck_assert(v > 0.0 || B * P == 1);
    }
    free(x);
    free(mean);
    free(var);
  }
}
END_TEST

/* The NTK's per-sample weight gradients without im2col: where the
 * vector tiles run (AVX-512, or AVX2 + FMA), every value is the plain-C
 * reference's one chain bit for bit; the reference is the float64 sum
 * within float32 round-off.  Several samples at once (the padded copy
 * reused), planes with and without a partial vector, a 5 x 5 kernel, a
 * channel count past the tiles' 6 and 12 columns. */
START_TEST(dw_direct_matches_reference) {
  /* cin, h, w, k, cout, samples */
  static const int cases[][6] = {{16, 32, 32, 3, 16, 2}, {3, 8, 8, 3, 32, 3},
                                 {5, 7, 9, 3, 16, 2},    {2, 6, 5, 5, 48, 2},
                                 {7, 16, 16, 1, 16, 1},  {64, 8, 8, 3, 64, 1}};
  uint32_t seed = 19;
  for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
    int cin = cases[t][0], h = cases[t][1], w = cases[t][2], k = cases[t][3];
    int cout = cases[t][4], S = cases[t][5];
    size_t xs = (size_t)cin * (size_t)h * (size_t)w;
    size_t ys = (size_t)cout * (size_t)h * (size_t)w;
    size_t P = (size_t)cout * (size_t)cin * (size_t)(k * k);
    float *x = malloc(sizeof(float) * xs * (size_t)S);
    float *dy = malloc(sizeof(float) * ys * (size_t)S);
    float *got = malloc(sizeof(float) * P * (size_t)S);
    float *ref = malloc(sizeof(float) * P);
    float *scratch =
        malloc(sizeof(float) * ae_net_dw_direct_scratch(cin, h, w, k, cout));
    ck_assert(x && dy && got && ref && scratch);
    for (size_t e = 0; e < xs * (size_t)S; e++)
      x[e] = random_value(&seed);
    for (size_t e = 0; e < ys * (size_t)S; e++)
      dy[e] = random_value(&seed);
    ae_net_dw_direct(x, xs, dy, ys, S, cin, h, w, k, cout, got, P, scratch);
    int pad = (k - 1) / 2;
    for (int b = 0; b < S; b++) {
      const float *xb = x + (size_t)b * xs, *db = dy + (size_t)b * ys;
      ae_net_dw_direct_ref(xb, db, cin, h, w, k, cout, ref);
      ck_assert_msg(memcmp(got + (size_t)b * P, ref, sizeof(float) * P) == 0,
                    "case %zu sample %d: the tiles differ from the reference "
                    "(usable %d)",
                    t, b, ae_net_dw_direct_usable(cout));
      for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < k; ky++)
          for (int kx = 0; kx < k; kx++)
            for (int co = 0; co < cout; co++) {
              double want = 0.0, mag = 0.0;
              for (int oy = 0; oy < h; oy++)
                for (int ox = 0; ox < w; ox++) {
                  int iy = oy + ky - pad, ix = ox + kx - pad;
                  if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                  double term =
                      (double)
                          xb[((size_t)ci * (size_t)h + (size_t)iy) * (size_t)w +
                             (size_t)ix] *
                      (double)
                          db[((size_t)co * (size_t)h + (size_t)oy) * (size_t)w +
                             (size_t)ox];
                  want += term;
                  mag += fabs(term);
                }
              size_t c = ((size_t)ci * (size_t)k + (size_t)ky) * (size_t)k +
                         (size_t)kx;
              float v = ref[c * (size_t)cout + (size_t)co];
              ck_assert_msg(fabs((double)v - want) <= 1e-6 * mag + 1e-30,
                            "case %zu (%d, %d, %d, %d): %g vs %g", t, ci, ky,
                            kx, co, (double)v, want);
            }
    }
    free(x);
    free(dy);
    free(got);
    free(ref);
    free(scratch);
  }
}
END_TEST

/* The ReLU backward's fast path (16 lanes where AVX-512 runs): the
 * reference loop's very values, with zeros of both signs, NaN z, a dx
 * of -0 (where +0 is added it becomes +0) and a partial last vector. */
START_TEST(relu_backward_matches_reference) {
  enum { N = 16 * 5 + 7 };
  float z[N], dy[N], fast[N], ref[N];
  uint32_t seed = 11;
  for (int i = 0; i < N; i++) {
    z[i] = random_value(&seed);
    dy[i] = random_value(&seed) * 3.0f;
    fast[i] = ref[i] = random_value(&seed);
  }
  z[3] = -0.0f;
  z[4] = 0.0f;
  z[5] = NAN;
  z[6] = 1e-38f;
  fast[7] = ref[7] = -0.0f;
  z[7] = -1.0f;
  fast[8] = ref[8] = -0.0f;
  z[8] = 1.0f;
  dy[8] = -0.0f;
  ae_activation relu;
  memset(&relu, 0, sizeof relu);
  relu.fn = AE_ACT_RELU;
  for (size_t count = N; count >= N - 9; count -= 3) {
    ae_net_act_backward_add_t(&relu, z, dy, count, fast);
    ae_net_act_backward_add_ref_t(&relu, z, dy, count, ref);
    ck_assert(memcmp(fast, ref, sizeof fast) == 0);
  }
  ck_assert(signbit(ref[7]) == 0); /* -0 + +0 */
  ck_assert(signbit(ref[8]) != 0); /* -0 + -0 */
  /* The reference against the definition, element by element, for the
   * ReLU and the leaky ReLU (its vector selects read dy everywhere). */
  for (int leaky = 0; leaky < 2; leaky++) {
    ae_activation act;
    memset(&act, 0, sizeof act);
    act.fn = leaky ? AE_ACT_LEAKY_RELU : AE_ACT_RELU;
    act.slope = 0.1;
    float want[N];
    for (int i = 0; i < N; i++) {
      ref[i] = random_value(&seed);
      float g = z[i] > 0.0f ? dy[i] : leaky ? 0.1f * dy[i] : 0.0f;
      want[i] = ref[i] + g;
    }
    ae_net_act_backward_add_ref_t(&act, z, dy, N, ref);
    for (int i = 0; i < N; i++)
      ck_assert_msg(memcmp(&want[i], &ref[i], sizeof want[i]) == 0,
                    "leaky %d at %d: %a vs %a", leaky, i, ref[i], want[i]);
  }
}
END_TEST

/* BN's dx plane in AVX-512's lanes (where it runs) against the scalar
 * reference, bit for bit: planes with and without a partial vector, into
 * a fresh dx (0 + v: a -0 becomes +0) and into one that accumulates. */
START_TEST(bn_dx_plane_matches_reference) {
  static const size_t planes[] = {1, 7, 8, 13, 64, 1024};
  for (size_t t = 0; t < sizeof planes / sizeof *planes; t++)
    for (int fresh = 0; fresh < 2; fresh++) {
      size_t P = planes[t];
      float *x = malloc(P * sizeof *x), *dy = malloc(P * sizeof *dy);
      float *a = malloc(P * sizeof *a), *b = malloc(P * sizeof *b);
      ck_assert(x && dy && a && b);
      uint32_t seed = 31 + (uint32_t)t;
      for (size_t i = 0; i < P; i++) {
        x[i] = 2.0f + random_value(&seed);
        dy[i] = random_value(&seed) / 3.0f;
        a[i] = b[i] = i % 5 == 0 ? -0.0f : random_value(&seed);
      }
      /* mdy and mdyx that cancel the first element's value exactly: a
       * signed zero to keep or drop. */
      double mean = 2.0, inv = 1.7, s = 0.9, mdyx = 0.0;
      double mdy = (double)dy[0];
      ae_net_bn_dx_plane_t(x, dy, P, mean, inv, s, mdy, mdyx, fresh, a);
      ae_net_bn_dx_plane_ref_t(x, dy, P, mean, inv, s, mdy, mdyx, fresh, b);
      ck_assert_msg(memcmp(a, b, P * sizeof *a) == 0, "P %zu fresh %d", P,
                    fresh);
      mdyx = -0.37;
      ae_net_bn_dx_plane_t(x, dy, P, mean, inv, s, mdy, mdyx, fresh, a);
      ae_net_bn_dx_plane_ref_t(x, dy, P, mean, inv, s, mdy, mdyx, fresh, b);
      ck_assert_msg(memcmp(a, b, P * sizeof *a) == 0, "P %zu fresh %d", P,
                    fresh);
      free(x);
      free(dy);
      free(a);
      free(b);
    }
}
END_TEST

/* BN's backward sums several channels at a time: the per-channel
 * reference's very values, for groups of eight in AVX-512's lanes (where
 * it runs), groups of four and a partial group, planes with and without a
 * partial vector (of four and of eight), and one position. */
START_TEST(bn_backward_sums_match_per_channel) {
  /* channels, plane, channels taken (from channel 1), batch */
  static const int cases[][4] = {{7, 13, 6, 5},  {23, 16, 22, 3},
                                 {4, 1, 3, 2},   {9, 64, 5, 1},
                                 {10, 13, 9, 2}, {17, 3, 16, 2}};
  for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
    int C = cases[t][0], P = cases[t][1], N = cases[t][2], B = cases[t][3];
    size_t n = (size_t)B * (size_t)C * (size_t)P;
    float *x = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n);
    double *mean = malloc(sizeof(double) * (size_t)N),
           *inv = malloc(sizeof(double) * (size_t)N),
           *sdy = malloc(sizeof(double) * (size_t)N),
           *sdyx = malloc(sizeof(double) * (size_t)N);
    ck_assert(x && dy && mean && inv && sdy && sdyx);
    uint32_t seed = 5 + (uint32_t)t;
    for (size_t e = 0; e < n; e++) {
      x[e] = 2.0f + random_value(&seed);
      dy[e] = random_value(&seed) / 3.0f;
    }
    for (int c = 0; c < N; c++) {
      mean[c] = 2.0 + 0.01 * c;
      inv[c] = 1.7 - 0.05 * c;
    }
    ae_net_bn_backward_sums_t(x, dy, B, (size_t)C * P, P, 1, (size_t)N, mean,
                              inv, sdy, sdyx);
    for (int c = 0; c < N; c++) {
      double a, b;
      ae_net_bn_channel_backward_sums_t(x, dy, B, (size_t)C * P, P,
                                        (size_t)c + 1, mean[c], inv[c], &a, &b);
      ck_assert_msg(memcmp(&a, &sdy[c], sizeof a) == 0,
                    "case %zu dy %d: %a vs %a", t, c, sdy[c], a);
      ck_assert_msg(memcmp(&b, &sdyx[c], sizeof b) == 0,
                    "case %zu dyx %d: %a vs %a", t, c, sdyx[c], b);
      ck_assert(b != 0.0);
    }
    free(x);
    free(dy);
    free(mean);
    free(inv);
    free(sdy);
    free(sdyx);
  }
}
END_TEST

/* The channel sums of feature_isotropy's entropy four channels at a
 * time: the reference chain's very values (c = 7: a group of four, then
 * three alone). */
START_TEST(channel_sums_match_reference) {
  enum { BATCH = 3, C = 7, HW = 11 };
  double f[BATCH * C * HW];
  uint32_t seed = 9;
  for (int e = 0; e < BATCH * C * HW; e++)
    f[e] = (double)random_value(&seed) * 1e3 + 1e-3 * random_value(&seed);
  for (int ch = 0; ch < C; ch += 4) {
    double got[4];
    ae_channel_sums(f, BATCH, C, HW, ch, got);
    for (int j = 0; j < 4 && ch + j < C; j++) {
      double want = ae_channel_sum_ref(f, BATCH, C, HW, ch + j);
      ck_assert(memcmp(&want, &got[j], sizeof want) == 0);
    }
  }
}
END_TEST

/* col2im's stride-1 rows in 16 lanes, and the 3x3 "same" case one pass
 * per input row: the reference loops' very sums, for kernels 1, 3 and 5
 * with their paddings, widths with a partial last vector, planes of one
 * and two rows, and a stride-2 case (the scalar path of both). */
START_TEST(col2im_matches_reference) {
  static const int shapes[][5] = {
      /* c, h=w, k, stride, pad */
      {3, 8, 3, 1, 1},  {2, 19, 3, 1, 1}, {2, 32, 1, 1, 0},
      {2, 21, 5, 1, 2}, {2, 16, 3, 2, 1}, {1, 5, 3, 1, 0},
      {2, 1, 3, 1, 1},  {2, 2, 3, 1, 1},  {3, 32, 3, 1, 1}};
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
    int c = shapes[t][0], h = shapes[t][1], k = shapes[t][2];
    int st = shapes[t][3], pad = shapes[t][4];
    int oh = (h + 2 * pad - k) / st + 1, ow = oh;
    size_t ld = (size_t)oh * (size_t)ow + 3;
    size_t ncol = (size_t)c * (size_t)k * (size_t)k * ld;
    size_t nx = (size_t)c * (size_t)h * (size_t)h;
    float *col = malloc(sizeof(float) * ncol);
    float *a = malloc(sizeof(float) * nx), *b = malloc(sizeof(float) * nx);
    ck_assert(col && a && b);
    uint32_t seed = 21 + (uint32_t)t;
    for (size_t e = 0; e < ncol; e++)
      col[e] = random_value(&seed);
    for (size_t e = 0; e < nx; e++)
      a[e] = b[e] = random_value(&seed) * 0.5f;
    ae_net_col2im_add_t(col, c, h, h, k, st, pad, oh, ow, a, ld);
    ae_net_col2im_add_ref_t(col, c, h, h, k, st, pad, oh, ow, b, ld);
    ck_assert_msg(memcmp(a, b, sizeof(float) * nx) == 0, "shape %zu", t);
    free(col);
    free(a);
    free(b);
  }
}
END_TEST

/* The stride-1 average pool's adjoint by rows (the 3x3 window's one pass
 * per input row, 16-lane runs where the CPU has AVX-512) adds into dx bit
 * for bit what the window loop adds: odd and even planes, planes of one
 * or two rows or columns, rows narrower than a vector, windows of 3 and
 * 5, the padding counted or not, dx holding values already (signed zeros,
 * a NaN among the gradients). */
START_TEST(avg_pool_adjoint_matches_reference) {
  static const int shapes[][2] = {{32, 32}, {16, 16}, {8, 8},   {5, 7},
                                  {1, 1},   {3, 40},  {17, 33}, {2, 2},
                                  {1, 9},   {9, 1},   {2, 31}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int k = 3; k <= 5; k += 2)
      for (int include_pad = 0; include_pad < 2; include_pad++) {
        int h = shapes[s][0], w = shapes[s][1], pad = (k - 1) / 2;
        size_t n = (size_t)h * w;
        float *dy = malloc(n * sizeof *dy), *a = malloc(n * sizeof *a),
              *b = malloc(n * sizeof *b);
        ck_assert(dy && a && b);
        for (size_t e = 0; e < n; e++) {
          dy[e] = (float)ae_philox_normal(5, 0x00abc004u, (uint32_t)s, e);
          a[e] = b[e] = e % 5 == 0 ? -0.0f
                                   : (float)ae_philox_normal(
                                         5, 0x00abc004u, 100 + (uint32_t)s, e);
        }
        dy[0] = -0.0f;
        if (n > 9) dy[9] = NAN;
        ae_net_avg_pool_plane_adj_t(dy, h, w, k, 1, pad, include_pad, h, w, a);
        ae_net_avg_pool_plane_adj_ref_t(dy, h, w, k, 1, pad, include_pad, h, w,
                                        b);
        ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0,
                      "%dx%d, k %d, include_pad %d: differs", h, w, k,
                      include_pad);
        free(dy);
        free(a);
        free(b);
      }
}
END_TEST

/* ae_net_philox_lanes (AVX-512 where the CPU has it, else AVX2) and the
 * AVX2 path alone give every word of ae_philox_words and of the portable
 * reference, including runs whose counter's low word wraps into the high
 * one. */
START_TEST(philox_lanes_match_reference) {
  static const uint64_t starts[] = {0,
                                    64 * 1000 + 7,
                                    0xffffffffull - 37,
                                    0xffffffffull - 63,
                                    0x1234567890ull,
                                    0xffffffffffffffffull - 40};
  static const uint64_t seeds[] = {0, 1, 0x9e3779b97f4a7c15ull};
  uint32_t w[4][AE_NET_NORMAL_LANES], r[4][AE_NET_NORMAL_LANES];
  uint32_t v[4][AE_NET_NORMAL_LANES];
  for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++)
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
      uint32_t tensor = 0x00f00006u + (uint32_t)i, stream = (uint32_t)(3 * s);
      ae_net_philox_lanes(seeds[s], tensor, stream, starts[i], w);
      ae_net_philox_lanes_ref(seeds[s], tensor, stream, starts[i], r);
      if (!ae_net_philox_lanes_avx2(seeds[s], tensor, stream, starts[i], v))
        memcpy(v, r, sizeof v);
      for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
        ae_philox_out o =
            ae_philox_words(seeds[s], tensor, stream, starts[i] + (uint64_t)l);
        for (int j = 0; j < 4; j++) {
          ck_assert_msg(w[j][l] == o.v[j] && r[j][l] == o.v[j] &&
                            v[j][l] == o.v[j],
                        "seed %zu start %zu lane %d word %d: %08x, AVX2 %08x, "
                        "reference %08x, scalar %08x",
                        s, i, l, j, w[j][l], v[j][l], r[j][l], o.v[j]);
        }
      }
    }
}
END_TEST

/* net_normals.c's cosine polynomial within AE_NET_COS_LANES_ERROR of
 * libm's cos over its whole range [0, 2 pi]: a dense grid, the ends and
 * both sides of every quadrant boundary (where the reduction switches
 * between the series).  The normals' bracket (2^-40) relies on it. */
START_TEST(cos_lanes_within_bound) {
  double x[AE_NET_NORMAL_LANES], c[AE_NET_NORMAL_LANES], worst = 0.0;
  const double two_pi = 6.283185307179586;
  const int blocks = 40000;
  for (int b = 0; b <= blocks; b++) {
    for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
      double u = ((double)b * AE_NET_NORMAL_LANES + l) /
                 ((double)blocks * AE_NET_NORMAL_LANES);
      x[l] = u <= 1.0 ? two_pi * u : two_pi;
    }
    if (b == blocks) /* quadrant and octant boundaries, each side */
      for (int l = 0; l < 36; l++) {
        double edge = (double)(l / 4) * (two_pi / 8);
        int side = l % 4;
        x[l] = side == 0   ? edge
               : side == 1 ? nextafter(edge, 0.0)
               : side == 2 ? nextafter(edge, 8.0)
                           : edge + 1e-9;
        if (x[l] > two_pi) x[l] = two_pi;
      }
    ae_net_cos_lanes(x, c);
    for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
      double d = fabs(c[l] - cos(x[l]));
      if (d > worst) worst = d;
      ck_assert_msg(d <= AE_NET_COS_LANES_ERROR, "x %.17g: %.17g vs libm %.17g",
                    x[l], c[l], cos(x[l]));
    }
  }
  printf("cos lanes: largest distance from libm %.3g (bound %.3g)\n", worst,
         AE_NET_COS_LANES_ERROR);
}
END_TEST

/* net_normals.c's logarithm within AE_NET_LOG_LANES_ERROR * |log u| of
 * libm's over the uniforms it is given, [2^-54, 1): a dense grid of each
 * binade's mantissas from 2^-60 up, both sides of sqrt 2 and of every
 * power of two, and the values nearest 1 (where log u is tiny).  The
 * normals' bracket (2^-40 relative) relies on it. */
START_TEST(log_lanes_within_bound) {
  double u[AE_NET_NORMAL_LANES], lg[AE_NET_NORMAL_LANES], worst = 0.0;
  long checked = 0;
  for (int e = -60; e < 0; e++)
    for (int b = 0; b <= 400; b++) {
      for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
        double m = 1.0 + ((double)b * AE_NET_NORMAL_LANES + l) /
                             (401.0 * AE_NET_NORMAL_LANES);
        u[l] = ldexp(m, e);
      }
      if (b == 400) { /* the edges of this binade */
        const double p = ldexp(1.0, e), r2 = ldexp(sqrt(2.0), e);
        const double edges[] = {p,
                                nextafter(p, 0.0),
                                nextafter(p, 1.0),
                                r2,
                                nextafter(r2, 0.0),
                                nextafter(r2, 1.0),
                                nextafter(1.0, 0.0),
                                1.0 - 0x1p-52,
                                1.0 - 0x1p-30,
                                0.5 + 0x1p-53};
        for (size_t i = 0; i < sizeof edges / sizeof *edges; i++)
          u[i] = edges[i] < 1.0 ? edges[i] : 0.75;
      }
      ae_net_log_lanes(u, lg);
      for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
        double want = log(u[l]);
        double d = fabs(lg[l] - want) / fabs(want);
        if (d > worst) worst = d;
        checked++;
        ck_assert_msg(d <= AE_NET_LOG_LANES_ERROR,
                      "u %.17g: %.17g vs libm %.17g", u[l], lg[l], want);
      }
    }
  printf("log lanes: largest relative distance from libm %.3g over %ld "
         "values (bound %.3g)\n",
         worst, checked, AE_NET_LOG_LANES_ERROR);
}
END_TEST

/* The bracket decides only what it may: lanes built so that sd * r * c
 * lies at the midpoint of two float32 values (r from a logarithm, c away
 * from 0, either sign) are left undecided by the logarithm's bracket
 * alone (the cosine's 0) and by the cosine's alone, while with no
 * bracket at all they would be decided (so they do sit where libm's last
 * bit matters); lanes far from a boundary are decided, to the float32 of
 * the scalar expression; and a cosine whose bracket holds 0 is left to
 * libm. */
START_TEST(bracket_catches_rounding_boundaries) {
  double lg[AE_NET_NORMAL_LANES], c[AE_NET_NORMAL_LANES];
  float out[AE_NET_NORMAL_LANES];
  uint32_t differ[AE_NET_NORMAL_LANES];
  const double sd = 0.75;
  uint32_t seed = 3;
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    float f = 0.25f + 2.0f * (random_value(&seed) + 1.0f);
    double mid = ((double)f + (double)nextafterf(f, INFINITY)) / 2;
    c[l] = (l % 2 ? -1.0 : 1.0) * (0.3 + 0.01 * l);
    if (l % 2) mid = -mid; /* sd * r * c negative where c is */
    double r = mid / (sd * c[l]);
    lg[l] = -0.5 * r * r;
  }
  const double brackets[3][2] = {{0x1p-40, 0.0}, {0.0, 0x1p-40}, {0.0, 0.0}};
  for (int k = 0; k < 3; k++) {
    ae_net_bracketed_weights(lg, c, sd, brackets[k][0], brackets[k][1], out,
                             differ);
    for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
      ck_assert_msg(k == 2 ? differ[l] == 0 : differ[l] != 0,
                    "brackets %g %g, lane %d: differ %u", brackets[k][0],
                    brackets[k][1], l, differ[l]);
  }
  /* Far from a boundary: decided, and the scalar expression's float. */
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    lg[l] = -0.5 - 0.0137 * l;
    c[l] = (l % 2 ? -1.0 : 1.0) * (0.2 + 0.0123 * l);
  }
  ae_net_bracketed_weights(lg, c, sd, 0x1p-40, 0x1p-40, out, differ);
  int decided = 0;
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    if (differ[l]) continue;
    decided++;
    float want = (float)(sd * (sqrt(-2.0 * lg[l]) * c[l]));
    ck_assert_msg(memcmp(&want, &out[l], sizeof want) == 0,
                  "lane %d: %.9g vs %.9g", l, out[l], want);
  }
  ck_assert_int_ge(decided, AE_NET_NORMAL_LANES - 2);
  /* A cosine bracket around 0 (c = +-2^-42): undecided. */
  c[0] = 0x1p-42;
  c[1] = -0x1p-42;
  ae_net_bracketed_weights(lg, c, sd, 0x1p-40, 0x1p-40, out, differ);
  ck_assert(differ[0] != 0 && differ[1] != 0);
}
END_TEST

/* ae_net_philox_normals_f32 bit for bit against the scalar expression
 * (float)(sd * ae_philox_normal(...)) over 2^20 elements per sd, for a
 * kaiming-sized sd, 1 (the Gaussian inputs), a large one and 0 (signed
 * zeros: every lane takes libm's log and cos).  The brackets must send
 * some lanes to libm (brackets of zero would send none and then miss, in
 * a larger run, the values near a float32 rounding boundary:
 * bracket_catches_rounding_boundaries shows each bracket alone catching
 * them) and only a few: at most one in 10^3. */
START_TEST(philox_normals_f32_match_scalar) {
  static const double sds[] = {0.0589255650988789, 1.0, 37.5, 0.0};
  const int blocks = 16384;
  float out[AE_NET_NORMAL_LANES];
  for (size_t si = 0; si < sizeof sds / sizeof *sds; si++) {
    uint64_t seed = 0x9e3779b97f4a7c15ull + si;
    uint32_t tensor = (uint32_t)(3 + si), stream = (uint32_t)si;
    long slow = 0;
    for (int b = 0; b < blocks; b++) {
      uint64_t e0 = (uint64_t)b * AE_NET_NORMAL_LANES;
      slow += ae_net_philox_normals_f32(seed, tensor, stream, e0, sds[si], out);
      for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
        float want = (float)(sds[si] * ae_philox_normal(seed, tensor, stream,
                                                        e0 + (uint64_t)l));
        uint32_t got_bits, want_bits;
        memcpy(&got_bits, &out[l], sizeof got_bits);
        memcpy(&want_bits, &want, sizeof want_bits);
        ck_assert_msg(got_bits == want_bits,
                      "sd %g element %llu: %a vs scalar %a", sds[si],
                      (unsigned long long)(e0 + (uint64_t)l), (double)out[l],
                      (double)want);
      }
    }
    long total = (long)blocks * AE_NET_NORMAL_LANES;
    printf("normals f32, sd %g: %ld of %ld lanes took libm's log and cos\n",
           sds[si], slow, total);
    if (sds[si] > 0.0)
      ck_assert_msg(slow > 0 && slow <= total / 1000,
                    "sd %g: %ld of %ld lanes took libm's log and cos", sds[si],
                    slow, total);
    else
      ck_assert_int_eq(slow, total);
  }
}
END_TEST

/* ae_net_philox_normals_fill_f32 (the jobs' Gaussian inputs) bit for bit
 * against the scalar loop it stands for, from an offset that is not a
 * multiple of the lanes, with a tail, none and an empty run. */
START_TEST(philox_normals_fill_matches_scalar) {
  static const size_t counts[] = {0, 1, 63, 64, 65, 1000};
  float out[1000];
  for (size_t q = 0; q < sizeof counts / sizeof *counts; q++) {
    size_t n = counts[q];
    uint64_t index0 = 5 + 1000 * q;
    for (size_t i = 0; i < sizeof out / sizeof *out; i++)
      out[i] = -7.0f;
    ae_net_philox_normals_fill_f32(11, 0x00f00006u, 2, index0, n, out);
    for (size_t i = 0; i < n; i++) {
      float want = (float)ae_philox_normal(11, 0x00f00006u, 2, index0 + i);
      ck_assert_msg(memcmp(&out[i], &want, sizeof want) == 0,
                    "count %zu element %zu: %a vs %a", n, i, (double)out[i],
                    (double)want);
    }
    for (size_t i = n; i < sizeof out / sizeof *out; i++)
      ck_assert(out[i] == -7.0f); /* nothing past count written */
  }
}
END_TEST

/* The float32 NTK's Gram (net_gram.c): the AVX-512 or AVX2 kernel bit for bit
 * against ae_net_gram_f32_ref, with one part and with two (the tiles
 * dealt otherwise, the same bits), adding into a theta that already holds
 * values and leaving its upper triangle alone; and both within float64
 * round-off of dsyrk on the widened rows (the order differs, the exact
 * products do not).  Batches that are and are not a multiple of the 4-row
 * tile, P below a vector, with a partial vector, and over a column block. */
/* A net whose convolutions read all-zero inputs (a ZERO node, a BN and
 * ReLU of it, as after NB201's `none` edges) beside ones that do not:
 * 3x3 and 1x1, 16 and 64 output channels, so that im2col + sgemm, the
 * 1x1 GEMM and (with AVX-512) the direct kernels all run. */
static int build_zero_input_graph(ae_graph *g) {
  ae_gb_begin(g);
  int x = ae_gb_input(g, 16, 8, 8);
  int z = ae_gb_unary(g, AE_OP_ZERO, x);
  int c1 = ae_gb_conv(g, z, 16, 3, 1, 1, 2.0); /* zero input */
  int b1 = ae_gb_bn(g, c1);
  int r1 = ae_gb_act(g, b1, AE_ACT_RELU, 0.0);
  int c2 = ae_gb_conv(g, r1, 64, 1, 1, 0, 2.0); /* zero input */
  int c3 = ae_gb_conv(g, x, 64, 3, 1, 1, 2.0);  /* computed */
  int c4 = ae_gb_conv(g, r1, 64, 3, 2, 1, 2.0); /* zero input, strided */
  int ins[2] = {c2, c3};
  int a = ae_gb_add(g, ins, 2);
  int r2 = ae_gb_act(g, a, AE_ACT_RELU, 0.0);
  int c5 = ae_gb_conv(g, r2, 64, 3, 2, 1, 2.0); /* computed */
  int ins2[2] = {c4, c5};
  int a2 = ae_gb_add(g, ins2, 2);
  int gp = ae_gb_gap(g, a2);
  int out = ae_gb_linear(g, gp, 3, 1, 1.0);
  return ae_gb_finish(g, out);
}

/* Two nets of that graph for batch samples with the weights of seed, the
 * second computing every convolution (conv_zero_reference), and batch
 * random inputs (malloc'd into *x). */
static void zero_input_pair(const ae_graph *g, int batch, uint64_t seed,
                            ae_net **fast, ae_net **ref, float **x) {
  ck_assert_int_eq(ae_net_create(g, batch, fast), 0);
  ck_assert_int_eq(ae_net_create(g, batch, ref), 0);
  (*ref)->conv_zero_reference = 1;
  ae_net_init_weights(*fast, seed, 0);
  ae_net_init_weights(*ref, seed, 0);
  size_t nx = (size_t)batch * 16 * 8 * 8;
  *x = malloc(nx * sizeof **x);
  ck_assert_ptr_nonnull(*x);
  uint32_t state = (uint32_t)seed;
  for (size_t e = 0; e < nx; e++)
    (*x)[e] = random_value(&state);
}

/* Every activation of the forward, bit for bit, with the zero-input
 * convolutions answered with +0 and computed (conv_zero_reference), at one
 * sample and at several (im2col chunks); and a non-finite weight keeps a
 * convolution computed (0 * Inf is NaN, not 0). */
START_TEST(zero_input_convs_match_computed) {
  ae_graph g;
  ck_assert_int_eq(build_zero_input_graph(&g), 0);
  static const int batches[] = {1, 5};
  for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++) {
    int batch = batches[i];
    ae_net *fast = NULL, *ref = NULL;
    float *x = NULL;
    zero_input_pair(&g, batch, 11, &fast, &ref, &x);
    for (int pass = 0; pass < 2; pass++) {
      if (pass == 1) {
        /* An Inf weight in the first zero-input convolution. */
        size_t count;
        fast->weight[2][0] = INFINITY;
        ref->weight[2][0] = INFINITY;
        (void)ae_net_param(fast, 2, AE_NET_WEIGHT, &count);
        (void)ae_net_param(ref, 2, AE_NET_WEIGHT, &count);
      }
      unsigned long skipped = fast->conv_zero_skipped;
      ck_assert_int_eq(ae_net_forward(fast, x, batch, NULL), 0);
      ck_assert_int_eq(ae_net_forward(ref, x, batch, NULL), 0);
      /* Three zero-input convolutions; with the Inf weight the first is
       * computed (NaN), and the ReLU after its BN gives zeros again for
       * the other two. */
      ck_assert_uint_eq(fast->conv_zero_skipped - skipped, (pass ? 2 : 3));
      ck_assert_uint_eq(ref->conv_zero_skipped, 0);
      for (int k = 0; k < g.n_nodes; k++) {
        size_t elems = (size_t)batch * fast->geom[k].elems;
        ck_assert_msg(memcmp(ae_net_activation(fast, k),
                             ae_net_activation(ref, k),
                             elems * sizeof(float)) == 0,
                      "batch %d pass %d: node %d differs", batch, pass, k);
      }
      ck_assert(isnan(ae_net_activation(fast, 2)[0]) == pass);
    }
    free(x);
    ae_net_destroy(fast);
    ae_net_destroy(ref);
  }
  ae_gb_free(&g);
}
END_TEST

/* The NTK of that net, bit for bit, with the zero-input convolutions'
 * weight gradients and Gram left out and formed (conv_zero_reference),
 * in both parameterisations, at one sample and several. */
START_TEST(zero_input_convs_ntk_match_computed) {
  ae_graph g;
  ck_assert_int_eq(build_zero_input_graph(&g), 0);
  static const int batches[] = {1, 6};
  for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++)
    for (int par = 0; par < 2; par++) {
      int batch = batches[i];
      ae_net *fast = NULL, *ref = NULL;
      float *x = NULL;
      zero_input_pair(&g, batch, 12, &fast, &ref, &x);
      double *t1 = malloc((size_t)batch * batch * sizeof *t1);
      double *t2 = malloc((size_t)batch * batch * sizeof *t2);
      ck_assert(t1 && t2);
      ae_ntk_parameterization p = par ? AE_NTK_NTK : AE_NTK_STANDARD;
      ck_assert_int_eq(ae_net_ntk(fast, x, batch, p, t1, NULL), 0);
      ck_assert_int_eq(ae_net_ntk(ref, x, batch, p, t2, NULL), 0);
      /* Three convolutions skipped in the forward, three dW in the
       * backward. */
      ck_assert_uint_eq(fast->conv_zero_skipped, 6);
      ck_assert_uint_eq(ref->conv_zero_skipped, 0);
      ck_assert_msg(memcmp(t1, t2, (size_t)batch * batch * sizeof *t1) == 0,
                    "batch %d par %d: theta differs", batch, par);
      ck_assert(t1[0] > 0.0);
      free(x);
      free(t1);
      free(t2);
      ae_net_destroy(fast);
      ae_net_destroy(ref);
    }
  ae_gb_free(&g);
}
END_TEST

START_TEST(gram_matches_reference) {
  static const int batches[] = {64, 13, 5, 1};
  static const size_t widths[] = {
      1, 7, 8, 29, 2304, AE_NET_GRAM_BLOCK + 13, 2 * AE_NET_GRAM_BLOCK};
  uint32_t seed = 77;
  for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++)
    for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++) {
      int B = batches[bi];
      size_t P = widths[wi], n = (size_t)B * (size_t)B;
      float *g = malloc(sizeof(float) * (size_t)B * P);
      double *gd = malloc(sizeof(double) * (size_t)B * P);
      double *start = malloc(sizeof(double) * n);
      double *ref = malloc(sizeof(double) * n);
      double *one = malloc(sizeof(double) * n);
      double *two = malloc(sizeof(double) * n);
      double *blas = malloc(sizeof(double) * n);
      ck_assert(g && gd && start && ref && one && two && blas);
      for (size_t e = 0; e < (size_t)B * P; e++) {
        g[e] = random_value(&seed) * (e % 5 == 0 ? 1e3f : 1.0f);
        gd[e] = (double)g[e];
      }
      for (size_t e = 0; e < n; e++)
        start[e] = (double)random_value(&seed);
      double scale = 0.37;
      memcpy(ref, start, sizeof(double) * n);
      memcpy(one, start, sizeof(double) * n);
      memcpy(two, start, sizeof(double) * n);
      memcpy(blas, start, sizeof(double) * n);
      ae_net_gram_f32_ref(g, B, P, scale, ref);
      cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, B, (int)P, scale, gd,
                  (int)P, 1.0, blas, B);
      for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
          size_t e = (size_t)i * (size_t)B + (size_t)j;
          if (j > i) {
            ck_assert(ref[e] == start[e]);
            continue;
          }
          double mag = fabs(start[e]);
          for (size_t k = 0; k < P; k++)
            mag += scale * fabs(gd[(size_t)i * P + k] * gd[(size_t)j * P + k]);
          ck_assert_msg(fabs(ref[e] - blas[e]) <= 1e-12 * mag,
                        "B %d P %zu (%d, %d): %.17g vs dsyrk %.17g", B, P, i, j,
                        ref[e], blas[e]);
        }
      if (ae_net_gram_f32_usable()) {
        ae_net_gram_f32_part(g, B, P, scale, one, 0, 1);
        ae_net_gram_f32_part(g, B, P, scale, two, 1, 2);
        ae_net_gram_f32_part(g, B, P, scale, two, 0, 2);
        ck_assert_msg(memcmp(one, ref, sizeof(double) * n) == 0,
                      "B %d P %zu: one part differs from the reference", B, P);
        ck_assert_msg(memcmp(two, ref, sizeof(double) * n) == 0,
                      "B %d P %zu: two parts differ from the reference", B, P);
      }
      free(g), free(gd), free(start), free(ref), free(one), free(two);
      free(blas);
    }
  if (!ae_net_gram_f32_usable())
    printf("no AVX-512 here: the Gram kernel was not compared\n");
}
END_TEST

/* The feature metrics' cross sums (net_cross.c): every kernel this CPU
 * runs (plain C; AVX2 + FMA; AVX-512F) bit for bit against
 * ae_cross_sums_ref, adding into an m that already holds values and
 * leaving the pairs not asked for alone; the reference within float64
 * round-off of the same sums by a long double loop.  Centred (the
 * covariance: a = b, the lower triangle) and not (the pair matrices: two
 * row sets, every pair); float32 rows and float64 ones; rows that are and
 * are not a multiple of the tiles (1, 3, 4, 5, 16, 17, 64); columns below
 * a vector, with a partial vector, whole samples side by side in a chunk
 * and samples over several chunks (w > 256); one sample and many; no
 * columns, no samples (m unchanged but for +0), no rows; 400 x 400 pairs,
 * whose lanes exceed a call's cap and go in two blocks of rows; the rows
 * of a sample apart (a stride past the row) as in a batch of planes. */
START_TEST(cross_sums_match_reference) {
  static const int shapes[][4] = {
      /* rows a, rows b, columns, samples */
      {16, 16, 1024, 3}, {64, 32, 64, 5}, {5, 5, 49, 4},   {3, 17, 7, 9},
      {17, 4, 1, 2},     {1, 1, 8, 1},    {4, 5, 1300, 2}, {32, 64, 256, 1},
      {64, 64, 64, 70},  {3, 2, 0, 2},    {2, 3, 5, 0},    {400, 400, 9, 2},
      {0, 3, 8, 1}};
  uint32_t seed = 31;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
    for (int mode = 0; mode < 3; mode++) {
      /* 0: two float32 row sets; 1: one, centred; 2: one of float64. */
      int centred = mode > 0, doubles = mode == 2;
      int ra = shapes[i][0], rb = centred ? ra : shapes[i][1];
      size_t w = (size_t)shapes[i][2];
      int samples = shapes[i][3];
      size_t row = w + 3, sample_a = (size_t)ra * row + 5,
             sample_b = (size_t)rb * row + 2, n = (size_t)ra * (size_t)rb;
      float *xa = malloc(sizeof(float) * sample_a * (size_t)samples);
      float *xb = malloc(sizeof(float) * sample_b * (size_t)samples);
      double *xad = malloc(sizeof(double) * sample_a * (size_t)samples);
      double *ma = malloc(sizeof(double) * (size_t)ra);
      double *start = malloc(sizeof(double) * n),
             *ref = malloc(sizeof(double) * n);
      double *got = malloc(sizeof(double) * n);
      ck_assert(xa && xb && xad && ma && start && ref && got);
      for (size_t e = 0; e < sample_a * (size_t)samples; e++) {
        xa[e] = random_value(&seed) * (e % 7 == 0 ? 1e3f : 1.0f) + 2.5f;
        xad[e] = (double)xa[e] + 1e-9 * random_value(&seed);
      }
      for (size_t e = 0; e < sample_b * (size_t)samples; e++)
        xb[e] = random_value(&seed) < 0.0f ? -1.0f : random_value(&seed);
      for (int r = 0; r < ra; r++)
        ma[r] = 2.5 + 0.01 * r;
      for (size_t e = 0; e < n; e++)
        start[e] = (double)random_value(&seed);
      ae_cross_rows a = {.x = doubles ? NULL : xa,
                         .xd = doubles ? xad : NULL,
                         .row = row,
                         .sample = sample_a,
                         .rows = ra,
                         .mean = centred ? ma : NULL};
      ae_cross_rows b = {.x = xb, .row = row, .sample = sample_b, .rows = rb};
      const ae_cross_rows *pb = centred ? &a : &b;
      memcpy(ref, start, sizeof(double) * n);
      ae_cross_sums_ref(&a, pb, samples, w, centred, ref, (size_t)rb);
      for (int p = 0; p < ra; p++)
        for (int q = 0; q < rb; q++) {
          size_t e = (size_t)p * (size_t)rb + (size_t)q;
          if (centred && q > p) {
            ck_assert(ref[e] == start[e]);
            continue;
          }
          long double sum = 0.0L, mag = fabsl((long double)start[e]);
          for (int t = 0; t < samples; t++)
            for (size_t k = 0; k < w; k++) {
              size_t ep = (size_t)t * sample_a + (size_t)p * row + k;
              size_t eq = centred ? (size_t)t * sample_a + (size_t)q * row + k
                                  : (size_t)t * sample_b + (size_t)q * row + k;
              long double xp = doubles ? xad[ep] : xa[ep];
              long double xq = doubles ? xad[eq] : centred ? xa[eq] : xb[eq];
              long double u = xp - (centred ? ma[p] : 0.0);
              long double v = xq - (centred ? ma[q] : 0.0);
              sum += u * v;
              mag += fabsl(u * v);
            }
          ck_assert_msg(fabsl((long double)ref[e] - (long double)start[e] -
                              sum) <= 1e-13L * mag,
                        "shape %zu mode %d (%d, %d): %.17g vs %.17Lg", i, mode,
                        p, q, ref[e] - start[e], sum);
        }
      int top = ae_cross_kernel();
      for (int kernel = AE_CROSS_PLAIN; kernel <= top; kernel++) {
        if (kernel == AE_CROSS_AVX2 && !ae_net_have_avx2_fma()) continue;
        memcpy(got, start, sizeof(double) * n);
        ck_assert_int_eq(ae_cross_sums_with(kernel, &a, pb, samples, w, centred,
                                            got, (size_t)rb),
                         AE_OK);
        ck_assert_msg(memcmp(got, ref, sizeof(double) * n) == 0,
                      "shape %zu mode %d: kernel %d differs from the "
                      "reference",
                      i, mode, kernel);
      }
      free(xa), free(xb), free(xad), free(ma), free(start), free(ref);
      free(got);
    }
}
END_TEST

/* ae_cross_means: lanes as ae_cross_sums's, so the value of a plain
 * 8-lane loop bit for bit (the compiler's vector clones change nothing)
 * and the definition's long double mean within float64 round-off; float32
 * and float64 rows, a batch's channels (rows a plane apart, samples a
 * batch row apart), columns not a multiple of 8. */
START_TEST(cross_means_match_lanes) {
  static const int shapes[][3] = {{64, 16, 1024}, {3, 5, 49}, {2, 3, 1}};
  uint32_t seed = 5;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
    for (int wide = 0; wide < 2; wide++) {
      int batch = shapes[i][0], c = shapes[i][1];
      size_t hw = (size_t)shapes[i][2], n = (size_t)batch * c * hw;
      float *x = malloc(sizeof(float) * n);
      double *xd = malloc(sizeof(double) * n);
      double *mean = malloc(sizeof(double) * (size_t)c);
      ck_assert(x && xd && mean);
      for (size_t e = 0; e < n; e++) {
        x[e] = random_value(&seed) * 3.0f + 1.0f;
        xd[e] = (double)x[e] + (wide ? 1e-9 * random_value(&seed) : 0.0);
      }
      ae_cross_rows rows = {.row = hw, .sample = (size_t)c * hw, .rows = c};
      if (wide)
        rows.xd = xd;
      else
        rows.x = x;
      ae_cross_means(&rows, batch, hw, mean);
      for (int ch = 0; ch < c; ch++) {
        double l[8] = {0};
        long double exact = 0.0L;
        for (int b = 0; b < batch; b++)
          for (size_t k = 0; k < hw; k++) {
            size_t e = ((size_t)b * c + ch) * hw + k;
            double v = wide ? xd[e] : (double)x[e];
            l[k % 8] += v;
            exact += v;
          }
        double want = (((l[0] + l[4]) + (l[2] + l[6])) +
                       ((l[1] + l[5]) + (l[3] + l[7]))) /
                      ((double)batch * (double)hw);
        ck_assert(memcmp(&want, &mean[ch], sizeof want) == 0);
        exact /= (long double)batch * (long double)hw;
        ck_assert(fabsl((long double)mean[ch] - exact) <=
                  1e-14L * fabsl(exact));
      }
      free(x), free(xd), free(mean);
    }
}
END_TEST

int main(int argc, char **argv) {
  /* The comparison is with the BLAS as the engine runs it. */
  ae_blas_tune_and_reexec(argc, argv);
  openblas_set_num_threads(1);
  Suite *s = suite_create("net_conv_direct");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, matches_definition);
  tcase_add_test(tc, bitwise_sgemm_where_replaced);
  tcase_add_test(tc, refuses_what_it_cannot_match);
  tcase_add_test(tc, wino_matches_reference);
  tcase_add_test(tc, avg_pool3_matches_window_loop);
  tcase_add_test(tc, avg_pool2_stride2_matches_window_loop);
  tcase_add_test(tc, im2col_strided_matches_definition);
  tcase_add_test(tc, f32_to_f64_matches_conversion);
  tcase_add_test(tc, bn_stats_match_per_channel);
  tcase_add_test(tc, relu_backward_matches_reference);
  tcase_add_test(tc, dw_direct_matches_reference);
  tcase_add_test(tc, bn_backward_sums_match_per_channel);
  tcase_add_test(tc, bn_dx_plane_matches_reference);
  tcase_add_test(tc, channel_sums_match_reference);
  tcase_add_test(tc, col2im_matches_reference);
  tcase_add_test(tc, philox_lanes_match_reference);
  tcase_add_test(tc, cos_lanes_within_bound);
  tcase_add_test(tc, log_lanes_within_bound);
  tcase_add_test(tc, bracket_catches_rounding_boundaries);
  tcase_add_test(tc, philox_normals_f32_match_scalar);
  tcase_add_test(tc, philox_normals_fill_matches_scalar);
  tcase_add_test(tc, avg_pool_adjoint_matches_reference);
  tcase_add_test(tc, gram_matches_reference);
  tcase_add_test(tc, cross_sums_match_reference);
  tcase_add_test(tc, cross_means_match_lanes);
  tcase_add_test(tc, avx2_matches_reference);
  tcase_add_test(tc, zero_input_convs_match_computed);
  tcase_add_test(tc, zero_input_convs_ntk_match_computed);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
