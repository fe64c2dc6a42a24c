/* net_kernels_typed.c: im2col / col2im, average pooling and its adjoint,
 * the elementwise passes (BN's scale and shift, sums), BatchNorm's
 * statistics and its train-mode backward (the sums and the dx planes) and
 * the activations' backward, on the executor's buffer type (ae_real:
 * float32 here, float64 when included by net64_kernels.c).  Each fast
 * path gives its reference's values bit for bit (test_net_conv_direct).
 *
 * Pure functions on caller-owned memory; any thread. */
#include "gpu/host/net_internal.h"

#include <string.h>

#include "gpu/lanes4.h"
#if AE_NET_AVX512
#include "gpu/host/transpose8.h"
#include <immintrin.h>
#endif

/* One im2col row of a stride-1 conv whose output is as wide as its input
 * (ow == w): the row is the input plane shifted by dy rows and dx columns,
 * so valid rows are one contiguous copy, then the columns that fell off
 * either edge are zeroed. */
static void im2col_row_shifted(const ae_real *plane, int h, int w, int dy,
                               int dx, int oh, ae_real *row) {
  int ow = w;
  int oy0 = dy < 0 ? -dy : 0, oy1 = h - dy < oh ? h - dy : oh;
  if (oy0 > oh) oy0 = oh;
  if (oy1 < oy0) oy1 = oy0;
  if (oy0 > 0) memset(row, 0, sizeof(ae_real) * (size_t)oy0 * (size_t)ow);
  if (oy1 < oh)
    memset(row + (size_t)oy1 * (size_t)ow, 0,
           sizeof(ae_real) * (size_t)(oh - oy1) * (size_t)ow);
  if (oy1 == oy0) return;
  long shift = (long)dy * w + dx, plane_n = (long)h * w;
  long i0 = (long)oy0 * ow, i1 = (long)oy1 * ow;
  if (i0 + shift < 0) i0 = -shift;
  if (i1 + shift > plane_n) i1 = plane_n - shift;
  if (i1 > i0)
    memcpy(row + i0, plane + i0 + shift, sizeof(ae_real) * (size_t)(i1 - i0));
  for (int oy = oy0; oy < oy1; oy++) {
    ae_real *r = row + (size_t)oy * (size_t)ow;
    if (dx < 0)
      for (int ox = 0; ox < -dx && ox < ow; ox++)
        r[ox] = (ae_real)0;
    else
      for (int ox = ow - dx < 0 ? 0 : ow - dx; ox < ow; ox++)
        r[ox] = (ae_real)0;
  }
}

/* dst[i] = src[i * stride] for i < n (stride 2: two loads and a shuffle
 * per vector in the clones). */
AE_AVX2_CLONES AE_VECTOR_LOOPS static void
strided_copy(ae_real *restrict dst, const ae_real *restrict src, int stride,
             int n) {
  if (stride == 2) {
    for (int i = 0; i < n; i++)
      dst[i] = src[2 * i];
    return;
  }
  for (int i = 0; i < n; i++)
    dst[i] = src[(size_t)i * (size_t)stride];
}

void ae_net_im2col_t(const ae_real *x, int c, int h, int w, int k, int stride,
                     int pad, int oh, int ow, ae_real *col, size_t ld) {
  size_t hw = ld;
  if (stride == 1 && ow == w) {
    for (int ci = 0; ci < c; ci++)
      for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++)
          im2col_row_shifted(
              x + (size_t)ci * (size_t)h * (size_t)w, h, w, ky - pad, kx - pad,
              oh, col + ((size_t)(ci * k + ky) * (size_t)k + (size_t)kx) * hw);
    return;
  }
  for (int ci = 0; ci < c; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        ae_real *row =
            col + ((size_t)(ci * k + ky) * (size_t)k + (size_t)kx) * hw;
        const ae_real *plane = x + (size_t)ci * (size_t)h * (size_t)w;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * stride - pad + ky;
          ae_real *dst = row + (size_t)oy * (size_t)ow;
          if (iy < 0 || iy >= h) {
            memset(dst, 0, sizeof(ae_real) * (size_t)ow);
            continue;
          }
          const ae_real *src = plane + (size_t)iy * (size_t)w;
          if (stride == 1) {
            int lo = pad - kx, hi = w + pad - kx; /* ox range in bounds */
            if (lo < 0) lo = 0;
            if (lo > ow) lo = ow;
            if (hi > ow) hi = ow;
            if (hi < lo) hi = lo;
            for (int ox = 0; ox < lo; ox++)
              dst[ox] = (ae_real)0;
            if (hi > lo)
              memcpy(dst + lo, src + lo - pad + kx,
                     sizeof(ae_real) * (size_t)(hi - lo));
            for (int ox = hi; ox < ow; ox++)
              dst[ox] = (ae_real)0;
          } else {
            /* ix = ox * stride + off lies in [0, w) for ox in [lo, hi):
             * zeros outside, a strided copy without a test inside. */
            int off = kx - pad;
            int lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
            int hi = w - 1 - off < 0 ? 0 : (w - 1 - off) / stride + 1;
            if (lo > ow) lo = ow;
            if (hi > ow) hi = ow;
            if (hi < lo) hi = lo;
            for (int ox = 0; ox < lo; ox++)
              dst[ox] = (ae_real)0;
            strided_copy(dst + lo, src + (size_t)(lo * stride + off), stride,
                         hi - lo);
            for (int ox = hi; ox < ow; ox++)
              dst[ox] = (ae_real)0;
          }
        }
      }
}

#if AE_NET_AVX512
/* y = a + b in 16 lanes (below). */
AE_AVX512_FN
static void add_avx512(const float *a, const float *b, float *y, size_t count);
#endif

/* dst[i] += src[i] over n elements of two arrays that do not overlap:
 * one addition per element, in the vector lanes of the clone it is
 * inlined into (a loop whose pointers may alias is not vectorised at
 * -O2). */
static inline __attribute__((always_inline)) void
add_row(ae_real *restrict dst, const ae_real *restrict src, int n) {
  for (int i = 0; i < n; i++)
    dst[i] += src[i];
}

/* Clones for AVX2 and the baseline, as the loops of col2im and the
 * pool's adjoint vectorise (net_internal.h). */
#define AE_ROW_CLONES AE_AVX2_CLONES

AE_ROW_CLONES AE_VECTOR_LOOPS static void
col2im_add(const ae_real *col, int c, int h, int w, int k, int stride, int pad,
           int oh, int ow, ae_real *dx, size_t ld, int lanes) {
  (void)lanes;
  size_t hw = ld;
  for (int ci = 0; ci < c; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        const ae_real *row =
            col + ((size_t)(ci * k + ky) * (size_t)k + (size_t)kx) * hw;
        ae_real *plane = dx + (size_t)ci * (size_t)h * (size_t)w;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * stride - pad + ky;
          if (iy < 0 || iy >= h) continue;
          const ae_real *src = row + (size_t)oy * (size_t)ow;
          ae_real *dst = plane + (size_t)iy * (size_t)w;
          if (stride == 1) {
            int lo = pad - kx, hi = w + pad - kx;
            if (lo < 0) lo = 0;
            if (hi > ow) hi = ow;
            ae_real *d = dst - pad + kx;
#if AE_NET_AVX512
            if (lanes && hi > lo) {
              add_avx512(d + lo, src + lo, d + lo, (size_t)(hi - lo));
              continue;
            }
#endif
            if (hi > lo) add_row(d + lo, src + lo, hi - lo);
          } else {
            for (int ox = 0; ox < ow; ox++) {
              int ix = ox * stride - pad + kx;
              if (ix >= 0 && ix < w) dst[ix] += src[ox];
            }
          }
        }
      }
}

/* One input row of a 3x3, stride-1, padding-1 col2im: dx[ix] plus, for
 * each of the nr taps' rows ky that reach it (ascending), the im2col rows
 * (ky, 0), (ky, 1), (ky, 2) at output columns ix + 1, ix, ix - 1 (those
 * inside the row): r[3 g + kx] is row (ky, kx) at its output row.  Each
 * element's terms in col2im_add's order (tap row, then tap column), one
 * chain; the interior columns in the clone's lanes. */
AE_ROW_CLONES AE_VECTOR_LOOPS static void
col2im3_row(const ae_real *const *r, int nr, int w, ae_real *restrict dx) {
  if (w == 1) {
    ae_real acc = dx[0];
    for (int g = 0; g < nr; g++)
      acc += r[3 * g + 1][0];
    dx[0] = acc;
    return;
  }
  ae_real first = dx[0], last = dx[w - 1];
  for (int g = 0; g < nr; g++) {
    first += r[3 * g][1];
    first += r[3 * g + 1][0];
    last += r[3 * g + 1][w - 1];
    last += r[3 * g + 2][w - 2];
  }
  if (nr == 3) {
    const ae_real *restrict a0 = r[0], *restrict a1 = r[1], *restrict a2 = r[2];
    const ae_real *restrict b0 = r[3], *restrict b1 = r[4], *restrict b2 = r[5];
    const ae_real *restrict c0 = r[6], *restrict c1 = r[7], *restrict c2 = r[8];
    for (int ix = 1; ix < w - 1; ix++) {
      ae_real acc = dx[ix];
      acc += a0[ix + 1];
      acc += a1[ix];
      acc += a2[ix - 1];
      acc += b0[ix + 1];
      acc += b1[ix];
      acc += b2[ix - 1];
      acc += c0[ix + 1];
      acc += c1[ix];
      acc += c2[ix - 1];
      dx[ix] = acc;
    }
  } else if (nr == 2) {
    const ae_real *restrict a0 = r[0], *restrict a1 = r[1], *restrict a2 = r[2];
    const ae_real *restrict b0 = r[3], *restrict b1 = r[4], *restrict b2 = r[5];
    for (int ix = 1; ix < w - 1; ix++) {
      ae_real acc = dx[ix];
      acc += a0[ix + 1];
      acc += a1[ix];
      acc += a2[ix - 1];
      acc += b0[ix + 1];
      acc += b1[ix];
      acc += b2[ix - 1];
      dx[ix] = acc;
    }
  } else {
    for (int ix = 1; ix < w - 1; ix++) {
      ae_real acc = dx[ix];
      for (int g = 0; g < nr; g++) {
        acc += r[3 * g][ix + 1];
        acc += r[3 * g + 1][ix];
        acc += r[3 * g + 2][ix - 1];
      }
      dx[ix] = acc;
    }
  }
  dx[0] = first;
  dx[w - 1] = last;
}

/* col2im_add for a 3x3, stride-1, padding-1 convolution whose output is
 * its input's size (NAS-Bench-201's nor_conv_3x3) input row by input row:
 * each dx element receives its (up to) nine terms in one pass, in
 * col2im_add's order, instead of nine passes of short row additions;
 * the same bits. */
static void col2im3_add(const ae_real *col, int c, int h, int w, ae_real *dx,
                        size_t ld) {
  for (int ci = 0; ci < c; ci++) {
    ae_real *plane = dx + (size_t)ci * (size_t)h * (size_t)w;
    for (int iy = 0; iy < h; iy++) {
      const ae_real *r[9];
      int nr = 0;
      for (int ky = 0; ky < 3; ky++) {
        int oy = iy + 1 - ky;
        if (oy < 0 || oy >= h) continue;
        for (int kx = 0; kx < 3; kx++)
          r[3 * nr + kx] = col + (size_t)(ci * 9 + ky * 3 + kx) * ld +
                           (size_t)oy * (size_t)w;
        nr++;
      }
      col2im3_row(r, nr, w, plane + (size_t)iy * (size_t)w);
    }
  }
}

void ae_net_col2im_add_t(const ae_real *col, int c, int h, int w, int k,
                         int stride, int pad, int oh, int ow, ae_real *dx,
                         size_t ld) {
  if (k == 3 && stride == 1 && pad == 1 && oh == h && ow == w) {
    col2im3_add(col, c, h, w, dx, ld);
    return;
  }
  col2im_add(col, c, h, w, k, stride, pad, oh, ow, dx, ld,
             AE_NET_AVX512 && ae_net_have_avx512());
}

/* The definition, element by element in col2im_add's order (channel,
 * tap, output row, output column), one addition per element. */
void ae_net_col2im_add_ref_t(const ae_real *col, int c, int h, int w, int k,
                             int stride, int pad, int oh, int ow, ae_real *dx,
                             size_t ld) {
  for (int ci = 0; ci < c; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        const ae_real *row =
            col + ((size_t)(ci * k + ky) * (size_t)k + (size_t)kx) * ld;
        ae_real *plane = dx + (size_t)ci * (size_t)h * (size_t)w;
        for (int oy = 0; oy < oh; oy++)
          for (int ox = 0; ox < ow; ox++) {
            int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w)
              plane[(size_t)iy * (size_t)w + (size_t)ix] +=
                  row[(size_t)oy * (size_t)ow + (size_t)ox];
          }
      }
}

/* One output row of a 3x3, stride-1, padding-1 pool over all w columns,
 * whose window has the nr rows r[0..nr-1] inside the plane, each with -0
 * at r[i][-1] and r[i][w]: the generic loop's very sums (from 0, rows in
 * order, columns in order; x + -0 is x for every x, signed zeros and NaN
 * included, and +0 + -0 is +0, so the taps off the plane add nothing, as
 * the window loop's skipped taps) over div[ox], its divisor, in a loop
 * that vectorises with no edge columns of its own. */
AE_ROW_CLONES AE_VECTOR_LOOPS static void
avg_pool3_row(const ae_real *const *r, int nr, int w,
              const ae_real *restrict div, ae_real *restrict y) {
  if (nr == 3) {
    const ae_real *restrict a = r[0], *restrict b = r[1], *restrict c = r[2];
    for (int ox = 0; ox < w; ox++) {
      ae_real sum = (ae_real)0;
      sum += a[ox - 1];
      sum += a[ox];
      sum += a[ox + 1];
      sum += b[ox - 1];
      sum += b[ox];
      sum += b[ox + 1];
      sum += c[ox - 1];
      sum += c[ox];
      sum += c[ox + 1];
      y[ox] = sum / div[ox];
    }
  } else {
    const ae_real *restrict a = r[0], *restrict b = r[1];
    for (int ox = 0; ox < w; ox++) {
      ae_real sum = (ae_real)0;
      sum += a[ox - 1];
      sum += a[ox];
      sum += a[ox + 1];
      sum += b[ox - 1];
      sum += b[ox];
      sum += b[ox + 1];
      y[ox] = sum / div[ox];
    }
  }
}

/* Rows per padded copy in avg_pool3 (and the stride-1 adjoint's rows). */
#define POOL_MAX_ROW 512

/* NB201's avg_pool_3x3 (3x3, stride 1, padding 1, h >= 2, 3 <= w <=
 * POOL_MAX_ROW) row by row: each input row copied once into a ring of
 * three rows with -0 on both sides, each output row from the ring in one
 * pass (avg_pool3_row), over the divisors of ae_net_pool_count (9, or the
 * in-plane taps: 3 per row inside, 2 at the edge columns). */
static void avg_pool3(const ae_real *x, int h, int w, int include_pad,
                      ae_real *y) {
  ae_real ring[3][POOL_MAX_ROW + 2];
  ae_real div[2][POOL_MAX_ROW]; /* [nr - 2][ox] */
  for (int ox = 0; ox < w; ox++) {
    int cols = ox == 0 || ox == w - 1 ? 2 : 3;
    div[0][ox] = (ae_real)(include_pad ? 9 : 2 * cols);
    div[1][ox] = (ae_real)(include_pad ? 9 : 3 * cols);
  }
  for (int s = 0; s < 3; s++)
    ring[s][0] = ring[s][w + 1] = (ae_real)-0.0;
  for (int iy = 0; iy < 2; iy++)
    memcpy(ring[iy] + 1, x + (size_t)iy * (size_t)w,
           sizeof(ae_real) * (size_t)w);
  for (int oy = 0; oy < h; oy++) {
    /* Input row oy + 1 takes the slot of row oy - 2, read for the last
     * time by output row oy - 1. */
    if (oy + 1 >= 2 && oy + 1 < h)
      memcpy(ring[(oy + 1) % 3] + 1, x + (size_t)(oy + 1) * (size_t)w,
             sizeof(ae_real) * (size_t)w);
    const ae_real *r[3];
    int nr = 0;
    for (int iy = oy - 1; iy <= oy + 1; iy++)
      if (iy >= 0 && iy < h) r[nr++] = ring[iy % 3] + 1;
    avg_pool3_row(r, nr, w, div[nr - 2], y + (size_t)oy * (size_t)w);
  }
}

static ae_real avg_pool_at(const ae_real *x, int h, int w, int k, int stride,
                           int pad, int include_pad, int oy, int ox) {
  int y0 = oy * stride - pad, x0 = ox * stride - pad;
  ae_real sum = (ae_real)0;
  for (int ky = 0; ky < k; ky++) {
    int iy = y0 + ky;
    if (iy < 0 || iy >= h) continue;
    for (int kx = 0; kx < k; kx++) {
      int ix = x0 + kx;
      if (ix >= 0 && ix < w) sum += x[(size_t)iy * (size_t)w + (size_t)ix];
    }
  }
  return sum / (ae_real)ae_net_pool_count(y0, x0, h, w, k, include_pad);
}

/* A 2 x 2 pool of stride 2 without padding whose windows all lie inside
 * the plane (NB201's reduction shortcut): avg_pool_at's very operations
 * per output, (((0 + a) + b) + c) + d over the window in row-major order,
 * divided by its 4 taps, without its bounds tests per tap. */
AE_AVX2_CLONES AE_VECTOR_LOOPS static void
avg_pool2s2(const ae_real *restrict x, int w, int oh, int ow,
            ae_real *restrict y) {
  for (int oy = 0; oy < oh; oy++) {
    const ae_real *r0 = x + (size_t)(2 * oy) * (size_t)w, *r1 = r0 + w;
    ae_real *out = y + (size_t)oy * (size_t)ow;
    for (int ox = 0; ox < ow; ox++) {
      ae_real sum = (ae_real)0 + r0[2 * ox];
      sum += r0[2 * ox + 1];
      sum += r1[2 * ox];
      sum += r1[2 * ox + 1];
      out[ox] = sum / (ae_real)4;
    }
  }
}

void ae_net_avg_pool_plane_t(const ae_real *x, int h, int w, int k, int stride,
                             int pad, int include_pad, int oh, int ow,
                             ae_real *y) {
  if (k == 3 && stride == 1 && pad == 1 && oh == h && ow == w && h >= 2 &&
      w >= 3 && w <= POOL_MAX_ROW) {
    avg_pool3(x, h, w, include_pad, y);
    return;
  }
  if (k == 2 && stride == 2 && pad == 0 && 2 * oh <= h && 2 * ow <= w) {
    avg_pool2s2(x, w, oh, ow, y);
    return;
  }
  for (int oy = 0; oy < oh; oy++)
    for (int ox = 0; ox < ow; ox++)
      y[(size_t)oy * (size_t)ow + (size_t)ox] =
          avg_pool_at(x, h, w, k, stride, pad, include_pad, oy, ox);
}

/* The adjoint of a stride-1 pool by rows: each output row's gradients
 * divided by their windows' counts once, then, for each tap (kx from the
 * last to the first), added into the input row it reaches as one
 * vectorisable run.  Every dx element receives the very same terms in the
 * same order as from the window loop below (outputs in row-major order:
 * for a fixed input and output row, kx descending is ox ascending), so the
 * sums are bit for bit the same. */
AE_ROW_CLONES AE_VECTOR_LOOPS static void
avg_pool_adj_rows(const ae_real *dy, int h, int w, int k, int pad,
                  int include_pad, int oh, int ow, ae_real *dx, int lanes) {
  (void)lanes;
  ae_real g[POOL_MAX_ROW];
  int cols[POOL_MAX_ROW];
  for (int ox = 0; ox < ow; ox++) {
    int x0 = ox - pad;
    int xlo = x0 < 0 ? 0 : x0, xhi = x0 + k > w ? w : x0 + k;
    cols[ox] = xhi - xlo;
  }
  for (int oy = 0; oy < oh; oy++) {
    int y0 = oy - pad;
    int ylo = y0 < 0 ? 0 : y0, yhi = y0 + k > h ? h : y0 + k;
    const ae_real *d = dy + (size_t)oy * (size_t)ow;
    for (int ox = 0; ox < ow; ox++) {
      /* ae_net_pool_count's divisor. */
      int n = include_pad ? k * k : (yhi - ylo) * cols[ox];
      g[ox] = d[ox] / (ae_real)(n > 0 ? n : 1);
    }
    for (int ky = 0; ky < k; ky++) {
      int iy = y0 + ky;
      if (iy < 0 || iy >= h) continue;
      ae_real *row = dx + (size_t)iy * (size_t)w;
      for (int kx = k - 1; kx >= 0; kx--) {
        int shift = kx - pad; /* ix = ox + shift */
        int lo = shift < 0 ? -shift : 0;
        int hi = w - shift < ow ? w - shift : ow;
        ae_real *r = row + shift;
#if AE_NET_AVX512
        /* 16 lanes (the compiler's loop runs 4): r + g, each element's
         * one addition, in the same operand order. */
        if (lanes && hi > lo) {
          add_avx512(r + lo, g + lo, r + lo, (size_t)(hi - lo));
          continue;
        }
#endif
        if (hi > lo) add_row(r + lo, g + lo, hi - lo);
      }
    }
  }
}

/* One input row of the 3x3, stride-1, padding-1 pool's adjoint: dx[ix]
 * plus, for each of the nr output rows r[0..nr-1] whose window covers it
 * (in ascending order), r[ix - 1], r[ix], r[ix + 1] (ascending).  Each
 * r points one before its row's first gradient and has -0 on both sides:
 * x + -0 is x for every x (signed zeros and NaN included), so the taps
 * that fall off the plane add nothing, as the window loop's skipped taps,
 * and every element is one straight chain the clone vectorises. */
AE_ROW_CLONES AE_VECTOR_LOOPS static void
avg_pool3_adj_row(const ae_real *const *r, int nr, int w,
                  ae_real *restrict dx) {
  if (nr == 3) {
    const ae_real *restrict a = r[0], *restrict b = r[1], *restrict c = r[2];
    for (int ix = 0; ix < w; ix++) {
      ae_real acc = dx[ix];
      acc += a[ix];
      acc += a[ix + 1];
      acc += a[ix + 2];
      acc += b[ix];
      acc += b[ix + 1];
      acc += b[ix + 2];
      acc += c[ix];
      acc += c[ix + 1];
      acc += c[ix + 2];
      dx[ix] = acc;
    }
  } else if (nr == 2) {
    const ae_real *restrict a = r[0], *restrict b = r[1];
    for (int ix = 0; ix < w; ix++) {
      ae_real acc = dx[ix];
      acc += a[ix];
      acc += a[ix + 1];
      acc += a[ix + 2];
      acc += b[ix];
      acc += b[ix + 1];
      acc += b[ix + 2];
      dx[ix] = acc;
    }
  } else {
    for (int i = 0; i < nr; i++)
      for (int ix = 0; ix < w; ix++) {
        ae_real acc = dx[ix];
        acc += r[i][ix];
        acc += r[i][ix + 1];
        acc += r[i][ix + 2];
        dx[ix] = acc;
      }
  }
}

/* How many of i - 1, i, i + 1 lie in 0 .. n - 1. */
static int pool3_span(int i, int n) {
  return 3 - (i == 0) - (i + 1 >= n);
}

/* out[i] = in[i] / count over n elements, in the clone's lanes. */
AE_ROW_CLONES AE_VECTOR_LOOPS static void divide_row(const ae_real *restrict in,
                                                     int n, ae_real count,
                                                     ae_real *restrict out) {
  for (int i = 0; i < n; i++)
    out[i] = in[i] / count;
}

/* Output row oy's gradients over their windows' counts
 * (ae_net_pool_count's divisor), at g + 1, with -0 at g[0] and g[w + 1]. */
static void avg_pool3_adj_grads(const ae_real *dy, int h, int w,
                                int include_pad, int oy, ae_real *g) {
  int rows = pool3_span(oy, h);
  const ae_real *d = dy + (size_t)oy * (size_t)w;
  g[0] = g[w + 1] = (ae_real)-0.0;
  if (w == 1) {
    g[1] = d[0] / (ae_real)(include_pad ? 9 : rows);
    return;
  }
  ae_real edge = (ae_real)(include_pad ? 9 : rows * 2);
  g[1] = d[0] / edge;
  g[w] = d[w - 1] / edge;
  divide_row(d + 1, w - 2, (ae_real)(include_pad ? 9 : rows * 3), g + 2);
}

/* The 3x3, stride-1, padding-1 pool's adjoint (NAS-Bench-201's
 * avg_pool_3x3) input row by input row: each output row's gradients over
 * their windows' counts once, into a ring of three rows with -0 at both
 * ends, then each dx row in one pass (avg_pool3_adj_row).  Every dx
 * element receives the very terms of the window loop in its order
 * (output rows ascending, then columns ascending), so the sums are bit
 * for bit the same as avg_pool_adj_rows' and the reference's. */
static void avg_pool3_adj(const ae_real *dy, int h, int w, int include_pad,
                          ae_real *dx) {
  ae_real ring[3][POOL_MAX_ROW + 2];
  for (int oy = 0; oy < h && oy < 2; oy++)
    avg_pool3_adj_grads(dy, h, w, include_pad, oy, ring[oy]);
  for (int iy = 0; iy < h; iy++) {
    /* Output row iy + 1 takes the ring slot of row iy - 2, read for the
     * last time by the previous input row. */
    if (iy + 1 >= 2 && iy + 1 < h)
      avg_pool3_adj_grads(dy, h, w, include_pad, iy + 1, ring[(iy + 1) % 3]);
    const ae_real *r[3];
    int nr = 0;
    for (int o = iy - 1; o <= iy + 1; o++)
      if (o >= 0 && o < h) r[nr++] = ring[o % 3];
    avg_pool3_adj_row(r, nr, w, dx + (size_t)iy * (size_t)w);
  }
}

void ae_net_avg_pool_plane_adj_t(const ae_real *dy, int h, int w, int k,
                                 int stride, int pad, int include_pad, int oh,
                                 int ow, ae_real *dx) {
  if (k == 3 && stride == 1 && pad == 1 && oh == h && ow == w &&
      w <= POOL_MAX_ROW) {
    avg_pool3_adj(dy, h, w, include_pad, dx);
    return;
  }
  if (stride == 1 && ow <= POOL_MAX_ROW) {
    avg_pool_adj_rows(dy, h, w, k, pad, include_pad, oh, ow, dx,
                      AE_NET_AVX512 && ae_net_have_avx512());
    return;
  }
  ae_net_avg_pool_plane_adj_ref_t(dy, h, w, k, stride, pad, include_pad, oh, ow,
                                  dx);
}

void ae_net_avg_pool_plane_adj_ref_t(const ae_real *dy, int h, int w, int k,
                                     int stride, int pad, int include_pad,
                                     int oh, int ow, ae_real *dx) {
  for (int oy = 0; oy < oh; oy++)
    for (int ox = 0; ox < ow; ox++) {
      int y0 = oy * stride - pad, x0 = ox * stride - pad;
      ae_real g = dy[(size_t)oy * (size_t)ow + (size_t)ox] /
                  (ae_real)ae_net_pool_count(y0, x0, h, w, k, include_pad);
      for (int ky = 0; ky < k; ky++) {
        int iy = y0 + ky;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < k; kx++) {
          int ix = x0 + kx;
          if (ix >= 0 && ix < w) dx[(size_t)iy * (size_t)w + (size_t)ix] += g;
        }
      }
    }
}

void ae_net_avg_pool_t(const ae_real *x, size_t planes, const ae_node *nd,
                       const ae_plan_geom *ge, ae_real *y) {
  size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
  for (size_t p = 0; p < planes; p++)
    ae_net_avg_pool_plane_t(x + p * hw_in, ge->in_h, ge->in_w, nd->kernel,
                            nd->stride, nd->padding, nd->count_include_pad,
                            nd->shape[1], nd->shape[2], y + p * ge->out_hw);
}

void ae_net_global_avg_pool_t(const ae_real *x, size_t planes,
                              const ae_plan_geom *ge, ae_real *y) {
  size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
  for (size_t p = 0; p < planes; p++) {
    double sum = 0.0;
    for (size_t i = 0; i < hw_in; i++)
      sum += x[p * hw_in + i];
    y[p] = (ae_real)(sum / (double)hw_in);
  }
}

#if AE_NET_AVX512
/* The float32 passes below in 16 lanes: a multiply and an add rounded
 * apart, as the portable loops (contraction is off). */
AE_AVX512_FN
static void scale_shift_avx512(const float *x, float *y, size_t count,
                               float scale, float shift) {
  __m512 s = _mm512_set1_ps(scale), t = _mm512_set1_ps(shift);
  size_t i = 0;
  for (; i + 16 <= count; i += 16)
    _mm512_storeu_ps(
        y + i, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), s), t));
  if (i < count) {
    __mmask16 m = (__mmask16)((1u << (count - i)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_mul_ps(v, s), t));
  }
}

/* y = a + b (y may be b). */
AE_AVX512_FN
static void add_avx512(const float *a, const float *b, float *y, size_t count) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16)
    _mm512_storeu_ps(
        y + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  if (i < count) {
    __mmask16 m = (__mmask16)((1u << (count - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m,
                          _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i),
                                        _mm512_maskz_loadu_ps(m, b + i)));
  }
}
#endif

/* The portable loops of the three below, in AVX2 clones (the same
 * values: a multiply and an add rounded apart). */
AE_ROW_CLONES AE_VECTOR_LOOPS static void
scale_shift_lanes(const ae_real *restrict x, ae_real *restrict y, size_t count,
                  ae_real scale, ae_real shift) {
  for (size_t i = 0; i < count; i++)
    y[i] = x[i] * scale + shift;
}

AE_ROW_CLONES AE_VECTOR_LOOPS static void add2_lanes(const ae_real *restrict x0,
                                                     const ae_real *restrict x1,
                                                     ae_real *restrict y,
                                                     size_t count) {
  for (size_t e = 0; e < count; e++)
    y[e] = x0[e] + x1[e];
}

AE_ROW_CLONES AE_VECTOR_LOOPS static void
add_into_lanes(const ae_real *restrict x, ae_real *restrict y, size_t count) {
  for (size_t e = 0; e < count; e++)
    y[e] += x[e];
}

/* y = x * scale + shift over count elements. */
void ae_net_scale_shift_t(const ae_real *restrict x, ae_real *restrict y,
                          size_t count, ae_real scale, ae_real shift) {
#if AE_NET_AVX512
  if (ae_net_have_avx512()) {
    scale_shift_avx512(x, y, count, scale, shift);
    return;
  }
#endif
  scale_shift_lanes(x, y, count, scale, shift);
}

/* y = x0 + x1 over count elements. */
static void add2(const ae_real *restrict x0, const ae_real *restrict x1,
                 ae_real *restrict y, size_t count) {
#if AE_NET_AVX512
  if (ae_net_have_avx512()) {
    add_avx512(x0, x1, y, count);
    return;
  }
#endif
  add2_lanes(x0, x1, y, count);
}

/* y += x over count elements. */
static void add_into(const ae_real *restrict x, ae_real *restrict y,
                     size_t count) {
#if AE_NET_AVX512
  if (ae_net_have_avx512()) {
    add_avx512(y, x, y, count);
    return;
  }
#endif
  add_into_lanes(x, y, count);
}

void ae_net_add_t(ae_real *const *buf, const ae_node *nd, size_t count,
                  ae_real *y) {
  const ae_real *x = buf[nd->inputs[0]];
  if (nd->n_inputs == 1) {
    memcpy(y, x, sizeof(ae_real) * count);
    return;
  }
  /* Left to right: ((x0 + x1) + x2) + ... */
  add2(x, buf[nd->inputs[1]], y, count);
  for (int i = 2; i < nd->n_inputs; i++)
    add_into(buf[nd->inputs[i]], y, count);
}

/* mean and var of one channel from its shift and float64 sums: the end of
 * ae_net_bn_channel_stats_t. */
static void bn_stats_end(double cnt, double sh, double sum, double ss,
                         double *mean, double *var) {
  double dmean = sum / cnt;
  *mean = sh + dmean;
  *var = ss / cnt - dmean * dmean;
  if (*var < 0.0) *var = 0.0;
}

/* Four channels' statistics at once: ae_net_bn_channel_stats_t's very
 * operations per channel, the four channels' dependent float64 sums
 * interleaved (eight chains instead of two keep the adders busy). */
static void bn_stats4(const ae_real *x, int batch, size_t elems, size_t plane,
                      size_t c, double *mean, double *var) {
  double cnt = (double)batch * (double)plane;
  double sh[4], sum[4] = {0.0, 0.0, 0.0, 0.0}, ss[4] = {0.0, 0.0, 0.0, 0.0};
  for (int j = 0; j < 4; j++)
    sh[j] = x[(c + (size_t)j) * plane];
  for (int b = 0; b < batch; b++) {
    const ae_real *p0 = x + (size_t)b * elems + c * plane;
    const ae_real *p1 = p0 + plane, *p2 = p1 + plane, *p3 = p2 + plane;
    for (size_t i = 0; i < plane; i++) {
      double d0 = (double)p0[i] - sh[0], d1 = (double)p1[i] - sh[1];
      double d2 = (double)p2[i] - sh[2], d3 = (double)p3[i] - sh[3];
      sum[0] += d0;
      ss[0] += d0 * d0;
      sum[1] += d1;
      ss[1] += d1 * d1;
      sum[2] += d2;
      ss[2] += d2 * d2;
      sum[3] += d3;
      ss[3] += d3 * d3;
    }
  }
  for (int j = 0; j < 4; j++)
    bn_stats_end(cnt, sh[j], sum[j], ss[j], mean + j, var + j);
}

#if !defined(AE_NET_DOUBLE) && AE_LANES4
#define AE_BN_STATS_LANES 1

/* m <= 4 channels' statistics in the lanes of one vector: each lane runs
 * ae_net_bn_channel_stats_t's operations in its order (samples, then the
 * plane), four positions of the four planes loaded and transposed at a
 * time (gpu/lanes4.h); lanes past m repeat channel c (their results
 * unused).  avx2: no
 * FMA, so each product is rounded before its sum, as in the scalar
 * loop. */
__attribute__((target_clones("avx2", "default"))) static void
bn_stats_lanes(const float *x, int batch, size_t elems, size_t plane, size_t c,
               int m, double *mean, double *var) {
  double cnt = (double)batch * (double)plane;
  size_t ch[4];
  double sh[4];
  for (int j = 0; j < 4; j++) {
    ch[j] = c + (size_t)(j < m ? j : 0);
    sh[j] = x[ch[j] * plane];
  }
  ae_v4d vsh = {sh[0], sh[1], sh[2], sh[3]};
  ae_v4d s = {0.0, 0.0, 0.0, 0.0}, q = s;
  for (int b = 0; b < batch; b++) {
    const float *p[4];
    for (int j = 0; j < 4; j++)
      p[j] = x + (size_t)b * elems + ch[j] * plane;
    size_t i = 0;
    for (; i + 4 <= plane; i += 4) {
      ae_v4f a[4], col[4];
      ae_v4f_load_rows(p, i, a);
      ae_v4f_transpose(a, col);
      for (int t = 0; t < 4; t++) {
        ae_v4d d = __builtin_convertvector(col[t], ae_v4d) - vsh;
        s += d;
        q += d * d;
      }
    }
    for (; i < plane; i++) {
      ae_v4f v = {p[0][i], p[1][i], p[2][i], p[3][i]};
      ae_v4d d = __builtin_convertvector(v, ae_v4d) - vsh;
      s += d;
      q += d * d;
    }
  }
  for (int j = 0; j < m; j++)
    bn_stats_end(cnt, sh[j], s[j], q[j], mean + j, var + j);
}
#else
#define AE_BN_STATS_LANES 0
#endif

#if AE_NET_AVX512
/* One step of a lane group's sums: d = x - shift, sum += d, ss += d * d
 * (a multiply and an add rounded apart). */
AE_AVX512_FN
static inline void bn_lanes_step(__m256 v, __m512d sh, __m512d *sum,
                                 __m512d *ss) {
  __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(v), sh);
  *sum = _mm512_add_pd(*sum, d);
  *ss = _mm512_add_pd(*ss, _mm512_mul_pd(d, d));
}

/* Eight channels at once, one per lane of a zmm of doubles: per lane
 * ae_net_bn_channel_stats_t's very operations in its order (samples, then
 * the plane).  Eight values of each plane are loaded and transposed, so
 * that each vector holds one position of the eight planes. */
#define BN_LANES 8
AE_AVX512_FN
static void bn_stats8_avx512(const float *x, int batch, size_t elems,
                             size_t plane, size_t c, double *mean,
                             double *var) {
  double cnt = (double)batch * (double)plane;
  double sh[BN_LANES], sum[BN_LANES], ss[BN_LANES];
  for (int j = 0; j < BN_LANES; j++)
    sh[j] = x[(c + (size_t)j) * plane];
  __m512d vsh = _mm512_loadu_pd(sh);
  __m512d s = _mm512_setzero_pd(), q = s;
  for (int b = 0; b < batch; b++) {
    const float *p = x + (size_t)b * elems + c * plane;
    size_t i = 0;
    for (; i + 8 <= plane; i += 8) {
      __m256 r[8];
      for (int j = 0; j < 8; j++)
        r[j] = _mm256_loadu_ps(p + (size_t)j * plane + i);
      ae_transpose8(r);
      for (int t = 0; t < 8; t++)
        bn_lanes_step(r[t], vsh, &s, &q);
    }
    for (; i < plane; i++) {
      __m256 v =
          _mm256_setr_ps(p[i], p[plane + i], p[2 * plane + i], p[3 * plane + i],
                         p[4 * plane + i], p[5 * plane + i], p[6 * plane + i],
                         p[7 * plane + i]);
      bn_lanes_step(v, vsh, &s, &q);
    }
  }
  _mm512_storeu_pd(sum, s);
  _mm512_storeu_pd(ss, q);
  for (int j = 0; j < BN_LANES; j++)
    bn_stats_end(cnt, sh[j], sum[j], ss[j], mean + j, var + j);
}

/* One step of the AVX2 lanes' sums: channels 0..3 of v in lo, 4..7 in
 * hi; d = x - shift, sum += d, ss += d * d (rounded apart: no FMA). */
__attribute__((target("avx2"), always_inline)) static inline void
bn_lanes_step8(__m256 v, __m256d sh_lo, __m256d sh_hi, __m256d *sum,
               __m256d *ss) {
  __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), sh_lo);
  __m256d hi =
      _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), sh_hi);
  sum[0] = _mm256_add_pd(sum[0], lo);
  sum[1] = _mm256_add_pd(sum[1], hi);
  ss[0] = _mm256_add_pd(ss[0], _mm256_mul_pd(lo, lo));
  ss[1] = _mm256_add_pd(ss[1], _mm256_mul_pd(hi, hi));
}

/* The same eight channels at once with AVX2: two vectors of 4 doubles
 * per sum, so four dependent chains of adds run side by side where
 * bn_stats_lanes' four channels ran two (each channel's sums still
 * ae_net_bn_channel_stats_t's operations in its order: the same values,
 * twice the rate on Zen 2, where an add's latency bound the loop). */
__attribute__((target("avx2"), optimize("fp-contract=off"))) static void
bn_stats8_avx2(const float *x, int batch, size_t elems, size_t plane, size_t c,
               double *mean, double *var) {
  double cnt = (double)batch * (double)plane;
  double sh[BN_LANES], sum[BN_LANES], ss[BN_LANES];
  for (int j = 0; j < BN_LANES; j++)
    sh[j] = x[(c + (size_t)j) * plane];
  __m256d sh_lo = _mm256_loadu_pd(sh), sh_hi = _mm256_loadu_pd(sh + 4);
  __m256d s[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
  __m256d q[2] = {s[0], s[0]};
  for (int b = 0; b < batch; b++) {
    const float *p = x + (size_t)b * elems + c * plane;
    size_t i = 0;
    for (; i + 8 <= plane; i += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++)
        r[j] = _mm256_loadu_ps(p + (size_t)j * plane + i);
      ae_transpose8(r);
#pragma GCC unroll 8
      for (int t = 0; t < 8; t++)
        bn_lanes_step8(r[t], sh_lo, sh_hi, s, q);
    }
    for (; i < plane; i++) {
      __m256 v =
          _mm256_setr_ps(p[i], p[plane + i], p[2 * plane + i], p[3 * plane + i],
                         p[4 * plane + i], p[5 * plane + i], p[6 * plane + i],
                         p[7 * plane + i]);
      bn_lanes_step8(v, sh_lo, sh_hi, s, q);
    }
  }
  _mm256_storeu_pd(sum, s[0]);
  _mm256_storeu_pd(sum + 4, s[1]);
  _mm256_storeu_pd(ss, q[0]);
  _mm256_storeu_pd(ss + 4, q[1]);
  for (int j = 0; j < BN_LANES; j++)
    bn_stats_end(cnt, sh[j], sum[j], ss[j], mean + j, var + j);
}
#endif

void ae_net_bn_stats_t(const ae_real *x, int batch, size_t elems, size_t plane,
                       size_t c0, size_t channels, double *mean, double *var) {
  size_t c = 0;
#if AE_NET_AVX512
  if (ae_net_have_avx512())
    for (; c + BN_LANES <= channels; c += BN_LANES)
      bn_stats8_avx512(x, batch, elems, plane, c0 + c, mean + c, var + c);
  else if (ae_net_have_avx2())
    for (; c + BN_LANES <= channels; c += BN_LANES)
      bn_stats8_avx2(x, batch, elems, plane, c0 + c, mean + c, var + c);
#endif
#if AE_BN_STATS_LANES
  for (; c < channels; c += 4) {
    int m = channels - c < 4 ? (int)(channels - c) : 4;
    bn_stats_lanes(x, batch, elems, plane, c0 + c, m, mean + c, var + c);
  }
#endif
  for (; c + 4 <= channels; c += 4)
    bn_stats4(x, batch, elems, plane, c0 + c, mean + c, var + c);
  for (; c < channels; c++)
    ae_net_bn_channel_stats_t(x, batch, elems, plane, c0 + c, mean + c,
                              var + c);
}

void ae_net_bn_channel_stats_t(const ae_real *x, int batch, size_t elems,
                               size_t plane, size_t c, double *mean,
                               double *var) {
  /* One pass in float64, shifted by the channel's first value so that a
   * large mean does not cancel the variance. */
  double cnt = (double)batch * (double)plane;
  double shift0 = x[c * plane], sum = 0.0, ss = 0.0;
  for (int b = 0; b < batch; b++) {
    const ae_real *p = x + (size_t)b * elems + c * plane;
    for (size_t i = 0; i < plane; i++) {
      double d = (double)p[i] - shift0;
      sum += d;
      ss += d * d;
    }
  }
  double dmean = sum / cnt;
  *mean = shift0 + dmean;
  *var = ss / cnt - dmean * dmean;
  if (*var < 0.0) *var = 0.0;
}

/* The sums of train-mode BN's backward for channel c (the reference of
 * ae_net_bn_backward_sums_t): sdy = sum dy, sdyx = sum dy * xhat with
 * xhat = (x - mean) * inv, one float64 chain each in sample-major order. */
__attribute__((optimize("fp-contract=off"))) void
ae_net_bn_channel_backward_sums_t(const ae_real *x, const ae_real *dy,
                                  int batch, size_t elems, size_t plane,
                                  size_t c, double mean, double inv,
                                  double *sdy, double *sdyx) {
  double s0 = 0.0, s1 = 0.0;
  for (int b = 0; b < batch; b++) {
    size_t off = (size_t)b * elems + c * plane;
    for (size_t i = 0; i < plane; i++) {
      double d = (double)dy[off + i];
      s0 += d;
      s1 += d * (((double)x[off + i] - mean) * inv);
    }
  }
  *sdy = s0;
  *sdyx = s1;
}

/* Four channels at once: the reference's very operations per channel,
 * the four channels' chains interleaved (eight dependent float64 sums
 * instead of two keep the adders busy). */
__attribute__((optimize("fp-contract=off"))) static void
bn_backward_sums4(const ae_real *x, const ae_real *dy, int batch, size_t elems,
                  size_t plane, size_t c, const double *mean, const double *inv,
                  double *sdy, double *sdyx) {
  double s0[4] = {0.0, 0.0, 0.0, 0.0}, s1[4] = {0.0, 0.0, 0.0, 0.0};
  double m[4], v[4];
  for (int j = 0; j < 4; j++) {
    m[j] = mean[j];
    v[j] = inv[j];
  }
  for (int b = 0; b < batch; b++) {
    size_t off = (size_t)b * elems + c * plane;
    const ae_real *x0 = x + off, *g0 = dy + off;
    for (size_t i = 0; i < plane; i++) {
      double d0 = (double)g0[i], d1 = (double)g0[plane + i];
      double d2 = (double)g0[2 * plane + i], d3 = (double)g0[3 * plane + i];
      s0[0] += d0;
      s1[0] += d0 * (((double)x0[i] - m[0]) * v[0]);
      s0[1] += d1;
      s1[1] += d1 * (((double)x0[plane + i] - m[1]) * v[1]);
      s0[2] += d2;
      s1[2] += d2 * (((double)x0[2 * plane + i] - m[2]) * v[2]);
      s0[3] += d3;
      s1[3] += d3 * (((double)x0[3 * plane + i] - m[3]) * v[3]);
    }
  }
  for (int j = 0; j < 4; j++) {
    sdy[j] = s0[j];
    sdyx[j] = s1[j];
  }
}

#if AE_NET_AVX512
/* One step of bn_backward_sums8's lanes (one position of eight channels):
 * d = dy, sdy += d, sdyx += d * ((x - mean) * inv), each product and sum
 * rounded apart, as the reference's. */
AE_AVX512_FN
static inline void bn_back_lanes_step(__m256 xv, __m256 gv, __m512d m,
                                      __m512d v, __m512d *s0, __m512d *s1) {
  __m512d d = _mm512_cvtps_pd(gv);
  __m512d t = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(xv), m), v);
  *s0 = _mm512_add_pd(*s0, d);
  *s1 = _mm512_add_pd(*s1, _mm512_mul_pd(d, t));
}

/* Eight channels at once, one per lane of a zmm of doubles: per lane
 * ae_net_bn_channel_backward_sums_t's very operations in its order
 * (samples, then the plane), eight values of each plane loaded and
 * transposed (as bn_stats8_avx512). */
AE_AVX512_FN
static void bn_backward_sums8_avx512(const float *x, const float *dy, int batch,
                                     size_t elems, size_t plane, size_t c,
                                     const double *mean, const double *inv,
                                     double *sdy, double *sdyx) {
  __m512d m = _mm512_loadu_pd(mean), v = _mm512_loadu_pd(inv);
  __m512d s0 = _mm512_setzero_pd(), s1 = s0;
  for (int b = 0; b < batch; b++) {
    const float *px = x + (size_t)b * elems + c * plane;
    const float *pg = dy + (size_t)b * elems + c * plane;
    size_t i = 0;
    /* Sixteen positions (a cache line of each plane) per step, both
     * halves at once: planes 4 KiB apart (32 x 32) fall in one set of
     * the L1, and sixteen of them evicted each other between the halves
     * when a half was loaded per step. */
    for (; i + 16 <= plane; i += 16) {
      __m256 rx[8], rg[8], hx[8], hg[8];
      for (int j = 0; j < 8; j++) {
        rx[j] = _mm256_loadu_ps(px + (size_t)j * plane + i);
        hx[j] = _mm256_loadu_ps(px + (size_t)j * plane + i + 8);
        rg[j] = _mm256_loadu_ps(pg + (size_t)j * plane + i);
        hg[j] = _mm256_loadu_ps(pg + (size_t)j * plane + i + 8);
      }
      ae_transpose8(rx);
      ae_transpose8(rg);
      for (int t = 0; t < 8; t++)
        bn_back_lanes_step(rx[t], rg[t], m, v, &s0, &s1);
      ae_transpose8(hx);
      ae_transpose8(hg);
      for (int t = 0; t < 8; t++)
        bn_back_lanes_step(hx[t], hg[t], m, v, &s0, &s1);
    }
    for (; i + 8 <= plane; i += 8) {
      __m256 rx[8], rg[8];
      for (int j = 0; j < 8; j++) {
        rx[j] = _mm256_loadu_ps(px + (size_t)j * plane + i);
        rg[j] = _mm256_loadu_ps(pg + (size_t)j * plane + i);
      }
      ae_transpose8(rx);
      ae_transpose8(rg);
      for (int t = 0; t < 8; t++)
        bn_back_lanes_step(rx[t], rg[t], m, v, &s0, &s1);
    }
    for (; i < plane; i++) {
      __m256 xv = _mm256_setr_ps(px[i], px[plane + i], px[2 * plane + i],
                                 px[3 * plane + i], px[4 * plane + i],
                                 px[5 * plane + i], px[6 * plane + i],
                                 px[7 * plane + i]);
      __m256 gv = _mm256_setr_ps(pg[i], pg[plane + i], pg[2 * plane + i],
                                 pg[3 * plane + i], pg[4 * plane + i],
                                 pg[5 * plane + i], pg[6 * plane + i],
                                 pg[7 * plane + i]);
      bn_back_lanes_step(xv, gv, m, v, &s0, &s1);
    }
  }
  _mm512_storeu_pd(sdy, s0);
  _mm512_storeu_pd(sdyx, s1);
}
#endif

void ae_net_bn_backward_sums_t(const ae_real *x, const ae_real *dy, int batch,
                               size_t elems, size_t plane, size_t c0,
                               size_t channels, const double *mean,
                               const double *inv, double *sdy, double *sdyx) {
  size_t c = 0;
#if AE_NET_AVX512
  if (ae_net_have_avx512())
    for (; c + BN_LANES <= channels; c += BN_LANES)
      bn_backward_sums8_avx512(x, dy, batch, elems, plane, c0 + c, mean + c,
                               inv + c, sdy + c, sdyx + c);
#endif
  for (; c + 4 <= channels; c += 4)
    bn_backward_sums4(x, dy, batch, elems, plane, c0 + c, mean + c, inv + c,
                      sdy + c, sdyx + c);
  for (; c < channels; c++)
    ae_net_bn_channel_backward_sums_t(x, dy, batch, elems, plane, c0 + c,
                                      mean[c], inv[c], sdy + c, sdyx + c);
}

/* One plane of train-mode BN's dx, element by element in float64 (no
 * contraction: each product and difference rounded apart).  fresh: dx was
 * never written, and gets 0 + the value. */
__attribute__((optimize("fp-contract=off"))) void
ae_net_bn_dx_plane_ref_t(const ae_real *x, const ae_real *dy, size_t P,
                         double mean, double inv, double s, double mdy,
                         double mdyx, int fresh, ae_real *dx) {
  for (size_t i = 0; i < P; i++) {
    double xh = ((double)x[i] - mean) * inv;
    ae_real v = (ae_real)(s * ((double)dy[i] - mdy - xh * mdyx));
    dx[i] = (fresh ? (ae_real)0 : dx[i]) + v;
  }
}

#if AE_NET_AVX512
/* ae_net_bn_dx_plane_ref_t in eight float64 lanes, the same operations
 * per element (the reference compiles to scalar code: a conversion, a
 * subtraction or a product at a time). */
AE_AVX512_FN
static inline __m256 bn_dx8(__m256 xv, __m256 gv, __m512d mean, __m512d inv,
                            __m512d s, __m512d mdy, __m512d mdyx) {
  __m512d xh = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(xv), mean), inv);
  __m512d d = _mm512_sub_pd(_mm512_sub_pd(_mm512_cvtps_pd(gv), mdy),
                            _mm512_mul_pd(xh, mdyx));
  return _mm512_cvtpd_ps(_mm512_mul_pd(s, d));
}

AE_AVX512_FN
static void bn_dx_plane_avx512(const float *x, const float *dy, size_t P,
                               double mean, double inv, double s, double mdy,
                               double mdyx, int fresh, float *dx) {
  __m512d vm = _mm512_set1_pd(mean), vi = _mm512_set1_pd(inv);
  __m512d vs = _mm512_set1_pd(s), vmdy = _mm512_set1_pd(mdy);
  __m512d vmdyx = _mm512_set1_pd(mdyx);
  size_t i = 0;
  for (; i + 8 <= P; i += 8) {
    __m256 v = bn_dx8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(dy + i), vm, vi,
                      vs, vmdy, vmdyx);
    __m256 base = fresh ? _mm256_setzero_ps() : _mm256_loadu_ps(dx + i);
    _mm256_storeu_ps(dx + i, _mm256_add_ps(base, v));
  }
  if (i < P)
    ae_net_bn_dx_plane_ref_t(x + i, dy + i, P - i, mean, inv, s, mdy, mdyx,
                             fresh, dx + i);
}
#endif

void ae_net_bn_dx_plane_t(const ae_real *x, const ae_real *dy, size_t P,
                          double mean, double inv, double s, double mdy,
                          double mdyx, int fresh, ae_real *dx) {
#if AE_NET_AVX512
  if (ae_net_have_avx512()) {
    bn_dx_plane_avx512(x, dy, P, mean, inv, s, mdy, mdyx, fresh, dx);
    return;
  }
#endif
  ae_net_bn_dx_plane_ref_t(x, dy, P, mean, inv, s, mdy, mdyx, fresh, dx);
}

#if AE_NET_AVX512
/* The relu case of ae_net_act_backward_add_ref_t in 16 lanes: dx + dy
 * where z > 0 (ordered: a NaN z adds 0), dx + 0 elsewhere, the very
 * float32 additions. */
AE_AVX512_FN
static void relu_backward_add_avx512(const float *z, const float *dy,
                                     size_t count, float *dx) {
  const __m512 zero = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    __mmask16 pos =
        _mm512_cmp_ps_mask(_mm512_loadu_ps(z + i), zero, _CMP_GT_OQ);
    __m512 g = _mm512_maskz_mov_ps(pos, _mm512_loadu_ps(dy + i));
    _mm512_storeu_ps(dx + i, _mm512_add_ps(_mm512_loadu_ps(dx + i), g));
  }
  if (i < count) {
    __mmask16 m = (__mmask16)((1u << (count - i)) - 1u);
    __mmask16 pos = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, z + i),
                                            zero, _CMP_GT_OQ);
    __m512 g = _mm512_maskz_loadu_ps(pos, dy + i);
    _mm512_mask_storeu_ps(dx + i, m,
                          _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), g));
  }
}
#endif

void ae_net_act_backward_add_t(const ae_activation *a, const ae_real *z,
                               const ae_real *dy, size_t count, ae_real *dx) {
#if AE_NET_AVX512
  if (a->fn == AE_ACT_RELU && ae_net_have_avx512()) {
    relu_backward_add_avx512(z, dy, count, dx);
    return;
  }
#endif
  ae_net_act_backward_add_ref_t(a, z, dy, count, dx);
}

/* (The relu case adds in ae_real: a sum of two values of that type
 * rounds the same whether formed in double or in it.)  dy is read
 * whatever z's sign, so that the selects vectorise (a load under a
 * condition kept the loops scalar, with a branch per element). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
AE_VECTOR_LOOPS void
ae_net_act_backward_add_ref_t(const ae_activation *a, const ae_real *z,
                              const ae_real *dy, size_t count, ae_real *dx) {
  switch (a->fn) {
  case AE_ACT_RELU:
    for (size_t i = 0; i < count; i++) {
      ae_real g = dy[i];
      dx[i] += z[i] > (ae_real)0 ? g : (ae_real)0;
    }
    return;
  case AE_ACT_LEAKY_RELU: {
    ae_real s = (ae_real)a->slope;
    for (size_t i = 0; i < count; i++) {
      ae_real g = dy[i], leak = s * g;
      dx[i] += z[i] > (ae_real)0 ? g : leak;
    }
    return;
  }
  case AE_ACT_IDENTITY:
    for (size_t i = 0; i < count; i++)
      dx[i] += dy[i];
    return;
  default:
    for (size_t i = 0; i < count; i++)
      dx[i] += dy[i] * (ae_real)ae_act_d1(a->fn, a->slope, (double)z[i]);
    return;
  }
}
