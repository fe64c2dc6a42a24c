/* cuda_kernels.cuh: the CUDA backend's own kernels, each the device twin
 * of a host function in gpu/host/ (named in its comment), which is its
 * reference.  Templates on the element type serve the float32 pass and
 * the float64 jets alike.
 *
 * Every reduction runs in a fixed order (per-thread strided sums, then a
 * fixed tree), and no kernel adds with atomics, so a request run twice
 * gives bit-identical results.  The gathers (col2im, pool adjoint) read
 * what the host scatters.
 *
 * Kernels are static: each .cu that includes this gets its own copies of
 * those it uses.  No state. */
#ifndef AE_CUDA_KERNELS_CUH
#define AE_CUDA_KERNELS_CUH

#include "api/arch.h"
#include "gpu/activation.h"
#include "gpu/philox.h"
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#define AE_BN_EPS 1e-5

#define AE_GRID_STRIDE(i, n)                                                   \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);      \
       i += (size_t)gridDim.x * blockDim.x)

/* ---- weights (host: ae_net_init_weights) ---- */

/* w[e] = (float)(sd * N(seed, tensor, stream, e)); sd computed on the
 * host in double so the product is the host's. */
static __global__ void ae_k_init_normal(float *w, size_t n, double sd,
                                        uint64_t seed, uint32_t tensor,
                                        uint32_t stream) {
  AE_GRID_STRIDE(e, n) {
    double z = ae_philox_normal(seed, tensor, stream, (uint64_t)e);
    w[e] = (float)__dmul_rn(sd, z);
  }
}

static __global__ void ae_k_fill(float *p, size_t n, float v) {
  AE_GRID_STRIDE(i, n) p[i] = v;
}

template <typename T>
static __global__ void ae_k_to_double(const T *src, size_t n, double *dst) {
  AE_GRID_STRIDE(i, n) dst[i] = (double)src[i];
}

/* y += x. */
template <typename T>
static __global__ void ae_k_add(T *y, const T *x, size_t n) {
  AE_GRID_STRIDE(i, n) y[i] += x[i];
}

/* ---- convolution (host: ae_net_im2col_f / _col2im_add_f) ---- */

/* Rows [row0, row0 + rows) of im2col for `batch` samples:
 * col[b][r][oy*ow+ox] = x_b[ci][oy*s-pad+ky][ox*s-pad+kx] (0 outside),
 * global row = row0 + r = ci*k*k + ky*k + kx; x_b = x + b * x_stride. */
template <typename T>
static __global__ void ae_k_im2col(const T *x, int batch, size_t x_stride,
                                   int h, int w, int k, int stride, int pad,
                                   int oh, int ow, int row0, int rows, T *col) {
  size_t hw = (size_t)oh * (size_t)ow;
  size_t n = (size_t)batch * (size_t)rows * hw;
  AE_GRID_STRIDE(i, n) {
    size_t p = i % hw;
    size_t r = (i / hw) % (size_t)rows;
    size_t b = i / (hw * (size_t)rows);
    int gr = row0 + (int)r;
    int ci = gr / (k * k), ky = (gr / k) % k, kx = gr % k;
    int oy = (int)(p / (size_t)ow), ox = (int)(p % (size_t)ow);
    int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
    T v = 0;
    if (iy >= 0 && iy < h && ix >= 0 && ix < w)
      v = x[b * x_stride + ((size_t)ci * h + iy) * (size_t)w + ix];
    col[i] = v;
  }
}

/* dx_b += col2im(dcol_b): each input element gathers the column entries
 * that read it (the host scatters; same terms). */
static __global__ void ae_k_col2im_add(const float *dcol, int batch, int c,
                                       int h, int w, int k, int stride, int pad,
                                       int oh, int ow, float *dx,
                                       size_t dx_stride) {
  size_t in_plane = (size_t)h * (size_t)w, hw = (size_t)oh * (size_t)ow;
  size_t rows = (size_t)c * k * k;
  size_t n = (size_t)batch * (size_t)c * in_plane;
  AE_GRID_STRIDE(i, n) {
    size_t b = i / ((size_t)c * in_plane);
    size_t rem = i % ((size_t)c * in_plane);
    int ci = (int)(rem / in_plane);
    int iy = (int)((rem % in_plane) / (size_t)w);
    int ix = (int)(rem % (size_t)w);
    const float *cb = dcol + b * rows * hw;
    float sum = 0.0f;
    for (int ky = 0; ky < k; ky++) {
      int ty = iy + pad - ky;
      if (ty < 0 || ty % stride) continue;
      int oy = ty / stride;
      if (oy >= oh) continue;
      for (int kx = 0; kx < k; kx++) {
        int tx = ix + pad - kx;
        if (tx < 0 || tx % stride) continue;
        int ox = tx / stride;
        if (ox >= ow) continue;
        size_t row = ((size_t)ci * k + ky) * k + kx;
        sum += cb[row * hw + (size_t)oy * ow + ox];
      }
    }
    dx[b * dx_stride + rem] += sum;
  }
}

/* y[b][o] += bias[o] (value stream only). */
template <typename T>
static __global__ void ae_k_bias_add(T *y, const float *bias, int batch,
                                     int out) {
  size_t n = (size_t)batch * (size_t)out;
  AE_GRID_STRIDE(i, n) y[i] += (T)bias[i % (size_t)out];
}

/* ---- batch norm (host: forward_bn, backward_bn, jet_bn) ---- */

#define AE_BN_THREADS 256

/* Block c: mean and 1/sqrt(biased var + eps) of channel c over the batch
 * (two passes, float64, fixed-order tree). */
template <typename T>
static __global__ void ae_k_bn_stats(const T *x, int batch, size_t elems,
                                     size_t plane, double *mean,
                                     double *invstd) {
  __shared__ double part[AE_BN_THREADS];
  int c = blockIdx.x;
  size_t n = (size_t)batch * plane;
  double s = 0.0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
    size_t b = i / plane, p = i % plane;
    s += (double)x[b * elems + (size_t)c * plane + p];
  }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h /= 2) {
    if ((int)threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
    __syncthreads();
  }
  double mu = part[0] / (double)n;
  __syncthreads();
  double ss = 0.0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
    size_t b = i / plane, p = i % plane;
    double d = (double)x[b * elems + (size_t)c * plane + p] - mu;
    ss += d * d;
  }
  part[threadIdx.x] = ss;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h /= 2) {
    if ((int)threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    mean[c] = mu;
    invstd[c] = 1.0 / sqrt(part[0] / (double)n + AE_BN_EPS);
  }
}

/* float32 normalisation as the host: scale and shift rounded to float,
 * then y = x * scale + shift with separate roundings (no FMA). */
static __global__ void ae_k_bn_apply(const float *x, float *y, int batch,
                                     size_t elems, size_t plane,
                                     const double *mean, const double *invstd,
                                     const float *gamma, const float *beta) {
  size_t n = (size_t)batch * elems;
  AE_GRID_STRIDE(i, n) {
    int c = (int)((i % elems) / plane);
    double inv = invstd[c], g = (double)gamma[c];
    float scale = (float)__dmul_rn(inv, g);
    double centre = __dmul_rn(__dmul_rn(mean[c], inv), g);
    float shift = (float)__dsub_rn((double)beta[c], centre);
    y[i] = __fadd_rn(__fmul_rn(x[i], scale), shift);
  }
}

/* float64 jets: the three streams (value, d1, d2; each batch * elems)
 * through y = x * scale + shift, shift on the value stream only. */
static __global__ void
ae_k_bn_apply_jet(const double *x, double *y, int batch, size_t elems,
                  size_t plane, const double *mean, const double *invstd,
                  const float *gamma, const float *beta) {
  size_t per = (size_t)batch * elems, n = 3 * per;
  AE_GRID_STRIDE(i, n) {
    size_t e = i % per;
    int c = (int)((e % elems) / plane);
    double scale = (double)gamma[c] * invstd[c];
    double shift = (double)beta[c] - mean[c] * scale;
    y[i] = x[i] * scale + (i < per ? shift : 0.0);
  }
}

/* One warp per (sample, channel): gd[b][c] = sum_p dy * (x - mean) * inv
 * (the gamma gradient row), and dx += dy * (float)(inv * gamma). */
static __global__ void
ae_k_bn_backward(const float *x, const float *dy, float *dx, int batch,
                 int channels, size_t elems, size_t plane, const double *mean,
                 const double *invstd, const float *gamma, double *gd) {
  size_t warps = (size_t)batch * (size_t)channels;
  size_t first = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  size_t step = ((size_t)gridDim.x * blockDim.x) / 32;
  int lane = threadIdx.x % 32;
  /* The loop bound is the same for the 32 lanes of a warp, so the
   * shuffles below always see the whole warp. */
  for (size_t warp = first; warp < warps; warp += step) {
    int b = (int)(warp / (size_t)channels);
    int c = (int)(warp % (size_t)channels);
    size_t off = (size_t)b * elems + (size_t)c * plane;
    double mu = mean[c], inv = invstd[c];
    float s = (float)(inv * (double)gamma[c]);
    double g = 0.0;
    for (size_t p = lane; p < plane; p += 32) {
      g += (double)dy[off + p] * (((double)x[off + p] - mu) * inv);
      if (dx) dx[off + p] = __fadd_rn(dx[off + p], __fmul_rn(dy[off + p], s));
    }
    for (int o = 16; o > 0; o /= 2)
      g += __shfl_down_sync(0xffffffffu, g, o);
    if (lane == 0) gd[(size_t)b * channels + c] = g;
  }
}

/* ---- activations ---- */

/* float32 forward as the host's forward_act. */
static __global__ void ae_k_act_forward(ae_act_fn fn, double slope,
                                        const float *x, float *y, size_t n) {
  float fs = (float)slope;
  AE_GRID_STRIDE(i, n) {
    float v = x[i];
    if (fn == AE_ACT_RELU)
      y[i] = v > 0.0f ? v : 0.0f;
    else if (fn == AE_ACT_LEAKY_RELU)
      y[i] = v > 0.0f ? v : fs * v;
    else if (fn == AE_ACT_IDENTITY)
      y[i] = v;
    else
      y[i] = (float)ae_act_value(fn, slope, (double)v);
  }
}

/* dx += dy * sigma'(z), as the host's backward_act. */
static __global__ void ae_k_act_backward(ae_act_fn fn, double slope,
                                         const float *z, const float *dy,
                                         float *dx, size_t n) {
  float fs = (float)slope;
  AE_GRID_STRIDE(i, n) {
    float v = z[i];
    if (fn == AE_ACT_RELU) {
      if (v > 0.0f) dx[i] += dy[i];
    } else if (fn == AE_ACT_LEAKY_RELU) {
      dx[i] += v > 0.0f ? dy[i] : fs * dy[i];
    } else if (fn == AE_ACT_IDENTITY) {
      dx[i] += dy[i];
    } else {
      dx[i] += dy[i] * (float)ae_act_d1(fn, slope, (double)v);
    }
  }
}

/* Jets through an activation: y = s(z), y' = s'(z) z', y'' = s''(z) z'^2
 * + s'(z) z''.  Streams are consecutive blocks of per = batch*elems. */
static __global__ void ae_k_act_jet(ae_act_fn fn, double slope, const double *x,
                                    double *y, size_t per) {
  AE_GRID_STRIDE(i, per) {
    double z = x[i], z1 = x[per + i], z2 = x[2 * per + i];
    double d1 = ae_act_d1(fn, slope, z), d2 = ae_act_d2(fn, z);
    y[i] = ae_act_value(fn, slope, z);
    y[per + i] = d1 * z1;
    y[2 * per + i] = d2 * z1 * z1 + d1 * z2;
  }
}

/* ---- pooling (host: ae_net_avg_pool_plane_* and global pooling) ---- */

__device__ __forceinline__ int ae_dev_pool_count(int y0, int x0, int h, int w,
                                                 int k, int include_pad) {
  if (include_pad) return k * k;
  int ylo = y0 < 0 ? 0 : y0, yhi = y0 + k > h ? h : y0 + k;
  int xlo = x0 < 0 ? 0 : x0, xhi = x0 + k > w ? w : x0 + k;
  int n = (yhi - ylo) * (xhi - xlo);
  return n > 0 ? n : 1;
}

/* planes = batch * channels (times 3 for jets): one output per thread,
 * summed in T in the host's order. */
template <typename T>
static __global__ void ae_k_avg_pool(const T *x, size_t planes, int h, int w,
                                     int k, int stride, int pad,
                                     int include_pad, int oh, int ow, T *y) {
  size_t ohw = (size_t)oh * (size_t)ow, n = planes * ohw;
  AE_GRID_STRIDE(i, n) {
    size_t p = i / ohw;
    int oy = (int)((i % ohw) / (size_t)ow), ox = (int)(i % (size_t)ow);
    int y0 = oy * stride - pad, x0 = ox * stride - pad;
    const T *xp = x + p * (size_t)h * (size_t)w;
    T sum = 0;
    for (int ky = 0; ky < k; ky++) {
      int iy = y0 + ky;
      if (iy < 0 || iy >= h) continue;
      for (int kx = 0; kx < k; kx++) {
        int ix = x0 + kx;
        if (ix >= 0 && ix < w) sum += xp[(size_t)iy * w + ix];
      }
    }
    y[i] = sum / (T)ae_dev_pool_count(y0, x0, h, w, k, include_pad);
  }
}

/* The adjoint as a gather: dx[iy][ix] += sum of dy / count over the
 * windows that contain (iy, ix). */
static __global__ void ae_k_avg_pool_adj(const float *dy, size_t planes, int h,
                                         int w, int k, int stride, int pad,
                                         int include_pad, int oh, int ow,
                                         float *dx) {
  size_t hw = (size_t)h * (size_t)w, n = planes * hw;
  AE_GRID_STRIDE(i, n) {
    size_t p = i / hw;
    int iy = (int)((i % hw) / (size_t)w), ix = (int)(i % (size_t)w);
    const float *dp = dy + p * (size_t)oh * (size_t)ow;
    float sum = 0.0f;
    for (int ky = 0; ky < k; ky++) {
      int ty = iy + pad - ky;
      if (ty < 0 || ty % stride) continue;
      int oy = ty / stride;
      if (oy >= oh) continue;
      for (int kx = 0; kx < k; kx++) {
        int tx = ix + pad - kx;
        if (tx < 0 || tx % stride) continue;
        int ox = tx / stride;
        if (ox >= ow) continue;
        int y0 = oy * stride - pad, x0 = ox * stride - pad;
        sum += dp[(size_t)oy * ow + ox] /
               (float)ae_dev_pool_count(y0, x0, h, w, k, include_pad);
      }
    }
    dx[i] += sum;
  }
}

/* One thread per plane: the mean in float64 (sequential, host order). */
template <typename T>
static __global__ void ae_k_global_avg_pool(const T *x, size_t planes,
                                            size_t hw, T *y) {
  AE_GRID_STRIDE(p, planes) {
    double s = 0.0;
    for (size_t i = 0; i < hw; i++)
      s += (double)x[p * hw + i];
    y[p] = (T)(s / (double)hw);
  }
}

static __global__ void ae_k_global_avg_pool_adj(const float *dy, size_t planes,
                                                size_t hw, float *dx) {
  size_t n = planes * hw;
  AE_GRID_STRIDE(i, n) dx[i] += dy[i / hw] / (float)hw;
}

/* ---- the Gram ---- */

/* theta += yy o (s * xx + sb) on the lower triangle (column-major, i >= j)
 * where dsyrk wrote xx and yy: a linear layer's weight and bias Grams. */
static __global__ void ae_k_hadamard_lower(double *theta, const double *xx,
                                           const double *yy, int batch,
                                           double s, double sb) {
  size_t n = (size_t)batch * (size_t)batch;
  AE_GRID_STRIDE(idx, n) {
    int i = (int)(idx % (size_t)batch), j = (int)(idx / (size_t)batch);
    if (i >= j) theta[idx] += yy[idx] * (s * xx[idx] + sb);
  }
}

static __global__ void ae_k_add_diagonal(double *a, int n, double v) {
  AE_GRID_STRIDE(i, (size_t)n) a[i * (size_t)n + i] += v;
}

/* ---- sign patterns (host: ae_net_sign_patterns) ---- */

/* Bit bit0 + e of row b is set iff z[b][e] > 0.  OR is commutative, so
 * the atomics leave the same bits whatever the order. */
static __global__ void ae_k_sign_bits(const float *z, int batch, size_t elems,
                                      size_t bit0, size_t words,
                                      unsigned long long *bits) {
  size_t n = (size_t)batch * elems;
  AE_GRID_STRIDE(i, n) {
    if (!(z[i] > 0.0f)) continue;
    size_t b = i / elems, bit = bit0 + i % elems;
    atomicOr(&bits[b * words + (bit >> 6)], 1ull << (bit & 63));
  }
}

/* A 64-bit hash per row (splitmix64 finaliser over the words). */
static __global__ void ae_k_row_hash(const unsigned long long *bits, int batch,
                                     size_t words, unsigned long long *hashes) {
  AE_GRID_STRIDE(b, (size_t)batch) {
    unsigned long long h = 0x9e3779b97f4a7c15ull ^ (unsigned long long)words;
    for (size_t wi = 0; wi < words; wi++) {
      unsigned long long z = h ^ bits[b * words + wi];
      z += 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      h = z ^ (z >> 31);
    }
    hashes[b] = h;
  }
}

#endif
