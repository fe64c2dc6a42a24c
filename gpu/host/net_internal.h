/* net_internal.h: the layout of an ae_net, shared by the host executor's
 * files (net.c: weights, forward; net_ntk.c: backward and NTK;
 * net_ops.c: max_pool, concat, mul, pad, grouped and dilated conv;
 * net_kernels*.c: building blocks; net_jet.c: jets; net_patterns.c: sign
 * patterns, distinct counts, curvature; net64*.c: the typed files again
 * in float64).  The plan itself is gpu/plan.h's.
 *
 * Everything here belongs to the one thread that owns the ae_net. */
#ifndef AE_NET_INTERNAL_H
#define AE_NET_INTERNAL_H

/* First: under AE_NET_DOUBLE it renames what net.h declares. */
#include "gpu/host/net_real.h"

#include "gpu/activation.h"
#include "gpu/host/net.h"
#include "gpu/plan.h"
#include <math.h>
#include <stddef.h>
#include <stdint.h>

struct ae_net {
  ae_plan *plan;            /* geometry, liveness, slots and offsets */
  const ae_graph *g;        /* the plan's copy of the graph */
  const ae_plan_geom *geom; /* the plan's per-node geometry */
  int max_batch;
  int *chunk; /* CONV: samples per im2col + GEMM chunk */
  /* parameters, pointers into the arena (NULL when absent) */
  ae_real **weight, **bias, **gamma, **beta;
  double **bn_mean, **bn_invstd; /* from the last forward's batch */
  ae_real **act;        /* forward output per node, max_batch * elems */
  ae_real **grad;       /* backward: slot pointer per node (shared) */
  ae_real *col;         /* a chunk's im2col, max col_rows*out_hw*chunk */
  ae_real *dcol;        /* same size, backward */
  ae_real *ytmp;        /* a chunk's conv output / gradient, cout-major */
  double *gd;           /* max_batch * max tensor size, float64 rows */
  double *gd2;          /* max_batch * max features, float64 */
  double *bb;           /* 2 * max_batch^2 float64: per-layer Grams */
  unsigned char *arena; /* the plan's forward family */
  size_t arena_bytes;
  size_t arena_cap; /* its allocation (a reused spare may be larger) */
  /* the plan's backward family, allocated by the first NTK */
  unsigned char *bwd_arena;
  size_t bwd_bytes;
  size_t bwd_cap; /* its allocation (a reused spare may be larger) */
  size_t bwd_dcol, bwd_gd, bwd_gd2, bwd_bb; /* its scratch offsets */
  /* Jets (net_jet.c), planned on first use for a batch. */
  ae_real **jet; /* per node: 3 * batch * elems (value, d1, d2), or NULL */
  unsigned char *jet_arena;
  size_t jet_bytes;
  size_t jet_cap;    /* jet_arena's allocation (a reused spare may be larger) */
  int jet_batch;     /* batch the jet buffers were planned for */
  ae_real *jcol;     /* im2col scratch of a chunk (in jet_arena) */
  ae_real *jytmp;    /* a chunk of the jets' conv outputs (in jet_arena) */
  size_t jcol_bytes; /* jcol's size */
  /* ae_net_set_jet_reference: 1 runs every node of the jets as planned
   * (no dead, zero or fused nodes skipped), the reference of the fast
   * path's bits. */
  int jet_reference;
  /* 1 computes every convolution of the forward, even one whose input is
   * all zeros (the reference of net.c's conv_output_zero); the count of
   * convolutions it answered with +0 instead. */
  int conv_zero_reference;
  unsigned long conv_zero_skipped;
  int profiling;
  double prof[AE_NET_PROF_COUNT];
  /* ae_net_set_double: the float64 twin and whether calls go to it */
  struct ae_net64 *dbl;
  int use_double;
  /* ae_net_versions: bumped by every write of the weights (and of
   * use_double), and of the forward's buffers. */
  unsigned long weights_version, acts_version;
};

/* Elementwise loops over the buffers: GCC's -O2 only vectorises loops
 * that need no epilogue; these are memory passes worth a vector epilogue
 * (the results do not change: no reassociation). */
#if defined(__GNUC__) && !defined(__clang__)
#define AE_VECTOR_LOOPS                                                        \
  __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define AE_VECTOR_LOOPS
#endif

/* Clones of a loop for AVX2 (8 float32 lanes) and the baseline, picked
 * at load time: for elementwise loops whose values do not depend on the
 * vector width ("avx2" brings no FMA, so nothing is contracted). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define AE_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define AE_AVX2_CLONES
#endif

/* The calling thread's spare arenas (net.c), one per kind: an arena of at
 * least bytes (*have: its real size), the spare when it fits, and one
 * handed back (kept as the spare when larger than it, else freed). */
enum {
  AE_NET_SPARE_FORWARD,
  AE_NET_SPARE_JETS,
  AE_NET_SPARE_BACKWARD,
  AE_NET_SPARES
};
#ifdef AE_NET_DOUBLE
#define ae_net_arena_take ae_net64_arena_take
#define ae_net_arena_give ae_net64_arena_give
#endif
unsigned char *ae_net_arena_take(int which, size_t bytes, size_t *have);
void ae_net_arena_give(int which, unsigned char *p, size_t bytes);

/* Monotonic seconds when n->profiling, else 0 (no clock calls). */
double ae_net_clock(const ae_net *n);
/* Adds the time since *t0 to phase and moves *t0 to now. */
void ae_net_tick(ae_net *n, int phase, double *t0);

/* The forward pass into the net's own buffers (no float64 dispatch):
 * what ae_net_forward, the NTK and the sign patterns run. */
int ae_net_forward_buffers(ae_net *n, const float *x, int batch);

/* With ae_net_set_double on: the float64 twin, its weights synced from n;
 * else *twin = NULL.  0 or an error.  (float32 build only.) */
struct ae_net64;
int ae_net_double_twin(ae_net *n, struct ae_net64 **twin);

/* Allocates the backward arena on first use.  0 or AE_ENOMEM. */
int ae_net_backward_buffers(ae_net *n);

/* im2col of one sample: col[(c*k*k + ky*k + kx) * ld + oy*ow + ox];
 * ld >= oh*ow lets samples sit side by side. */
void ae_net_im2col_t(const ae_real *x, int c, int h, int w, int k, int stride,
                     int pad, int oh, int ow, ae_real *col, size_t ld);
/* col2im adding into dx (col laid out as above). */
void ae_net_col2im_add_t(const ae_real *col, int c, int h, int w, int k,
                         int stride, int pad, int oh, int ow, ae_real *dx,
                         size_t ld);
/* ae_net_col2im_add_t's portable loops (its reference: the stride-1 rows
 * run 16 lanes at a time where AVX-512 runs, with the very additions). */
void ae_net_col2im_add_ref_t(const ae_real *col, int c, int h, int w, int k,
                             int stride, int pad, int oh, int ow, ae_real *dx,
                             size_t ld);

/* Average pooling of one channel plane, and its adjoint adding into
 * dx. */
void ae_net_avg_pool_plane_t(const ae_real *x, int h, int w, int k, int stride,
                             int pad, int include_pad, int oh, int ow,
                             ae_real *y);
void ae_net_avg_pool_plane_adj_t(const ae_real *dy, int h, int w, int k,
                                 int stride, int pad, int include_pad, int oh,
                                 int ow, ae_real *dx);
/* The adjoint's window loop, output by output: the reference that
 * ae_net_avg_pool_plane_adj_t's stride-1 rows (AVX-512 runs where the CPU
 * has it) match bit for bit. */
void ae_net_avg_pool_plane_adj_ref_t(const ae_real *dy, int h, int w, int k,
                                     int stride, int pad, int include_pad,
                                     int oh, int ow, ae_real *dx);
/* Average pooling of `planes` channel planes of node nd (geometry ge). */
void ae_net_avg_pool_t(const ae_real *x, size_t planes, const ae_node *nd,
                       const ae_plan_geom *ge, ae_real *y);
/* Global average pooling of `planes` planes, the sums in float64. */
void ae_net_global_avg_pool_t(const ae_real *x, size_t planes,
                              const ae_plan_geom *ge, ae_real *y);
/* y = the sum of node nd's inputs, buf[input] each (count elements),
 * added left to right. */
void ae_net_add_t(ae_real *const *buf, const ae_node *nd, size_t count,
                  ae_real *y);
/* y = x * scale + shift over count elements (x and y apart). */
void ae_net_scale_shift_t(const ae_real *restrict x, ae_real *restrict y,
                          size_t count, ae_real scale, ae_real shift);
/* Batch mean and biased variance (>= 0) of channel c of x (batch
 * samples of elems, the channel's plane at c * plane), in float64. */
void ae_net_bn_channel_stats_t(const ae_real *x, int batch, size_t elems,
                               size_t plane, size_t c, double *mean,
                               double *var);
/* ae_net_bn_channel_stats_t of channels c0 .. c0 + channels - 1 into
 * mean[0 ..] and var[0 ..]: the very same values, faster. */
#ifdef AE_NET_DOUBLE
#define ae_net_bn_stats_t ae_net64_bn_stats_t
#endif
void ae_net_bn_stats_t(const ae_real *x, int batch, size_t elems, size_t plane,
                       size_t c0, size_t channels, double *mean, double *var);
/* Train-mode BN's backward sums of channel c: sdy = sum of dy and sdyx =
 * sum of dy * (x - mean) * inv over the batch's planes, in float64, one
 * chain each (sample by sample, element by element). */
void ae_net_bn_channel_backward_sums_t(const ae_real *x, const ae_real *dy,
                                       int batch, size_t elems, size_t plane,
                                       size_t c, double mean, double inv,
                                       double *sdy, double *sdyx);
/* The same for channels c0 .. c0 + channels - 1 (mean[0 ..], inv[0 ..]
 * theirs; into sdy[0 ..], sdyx[0 ..]): the very same values, faster
 * (eight channels in the lanes of a vector with AVX-512: 2.2-2.5x the
 * four scalar chains' rate on NB201's 32- and 64-channel planes, the same
 * on its first stage's, where memory bounds both). */
void ae_net_bn_backward_sums_t(const ae_real *x, const ae_real *dy, int batch,
                               size_t elems, size_t plane, size_t c0,
                               size_t channels, const double *mean,
                               const double *inv, double *sdy, double *sdyx);
/* One plane (P values) of train-mode BN's dx in float64, element by
 * element: v = (ae_real)(s * ((double)dy - mdy - xhat * mdyx)) with xhat =
 * ((double)x - mean) * inv, each product and difference rounded apart;
 * dx += v, or dx = 0 + v when fresh (dx never written).  _ref_t the scalar
 * loop; _t the same values, eight lanes at a time with AVX-512. */
void ae_net_bn_dx_plane_ref_t(const ae_real *x, const ae_real *dy, size_t P,
                              double mean, double inv, double s, double mdy,
                              double mdyx, int fresh, ae_real *dx);
void ae_net_bn_dx_plane_t(const ae_real *x, const ae_real *dy, size_t P,
                          double mean, double inv, double s, double mdy,
                          double mdyx, int fresh, ae_real *dx);
/* dx += dy * sigma'(z) over count elements, z the activation's input (the
 * backward of an ACT node; relu/leaky_relu by the sign of z, exactly). */
void ae_net_act_backward_add_t(const ae_activation *a, const ae_real *z,
                               const ae_real *dy, size_t count, ae_real *dx);
/* The portable loops of ae_net_act_backward_add_t (its reference: the
 * fast path gives these very values, tests/unit/test_net_conv_direct). */
void ae_net_act_backward_add_ref_t(const ae_activation *a, const ae_real *z,
                                   const ae_real *dy, size_t count,
                                   ae_real *dx);
/* Number of taps a pooling window divides by. */
int ae_net_pool_count(int y0, int x0, int h, int w, int k, int include_pad);

/* Copies count float32 values into a node's parameter tensor. */
int ae_net_load_params(ae_net *n, int node, ae_net_param_kind kind,
                       const float *src, size_t count);

/* ae_philox_normal(seed, tensor, stream, index0 + l) for the
 * AE_NET_NORMAL_LANES values of l, bit for bit, faster (the Philox rounds
 * run lane-parallel). */
#define AE_NET_NORMAL_LANES 64
void ae_net_philox_normals(uint64_t seed, uint32_t tensor, uint32_t stream,
                           uint64_t index0, double *out);
/* (float)(sd * ae_philox_normal(seed, tensor, stream, index0 + l)) for the
 * AE_NET_NORMAL_LANES values of l, bit for bit, with the logarithm and the
 * cosine vector polynomials bracketed against libm's (net_normals.c).
 * Returns how many lanes took libm's log and cos (a value near a float32
 * rounding boundary, or sd not positive and finite: then all). */
int ae_net_philox_normals_f32(uint64_t seed, uint32_t tensor, uint32_t stream,
                              uint64_t index0, double sd, float *out);
/* cos(x[l]) for AE_NET_NORMAL_LANES values of x in [0, 2 pi], within
 * AE_NET_COS_LANES_ERROR of libm's cos (test_net_conv_direct measures it). */
#define AE_NET_COS_LANES_ERROR 0x1p-50
void ae_net_cos_lanes(const double *restrict x, double *restrict c);
/* log(u[l]) for AE_NET_NORMAL_LANES values of u in [2^-60, 1) (normal,
 * positive), within AE_NET_LOG_LANES_ERROR * |log u| of libm's log
 * (test_net_conv_direct measures it). */
#define AE_NET_LOG_LANES_ERROR 0x1p-50
void ae_net_log_lanes(const double *restrict u, double *restrict out);
/* For AE_NET_NORMAL_LANES lanes of logarithms lg (< 0) and cosines c:
 * out[l] = fl32(sd * (sqrt(-2 L) * C)) at the least corner of the box
 * L in lg (1 +- log_bracket), C in c +- cos_bracket, and differ[l] != 0
 * where the largest corner gives another float32 or the box holds C = 0
 * (the lane is not decided); sd > 0. */
void ae_net_bracketed_weights(const double *restrict lg,
                              const double *restrict c, double sd,
                              double log_bracket, double cos_bracket,
                              float *restrict out, uint32_t *restrict differ);
/* The Philox words of those AE_NET_NORMAL_LANES elements:
 * w[j][l] = ae_philox_words(seed, tensor, stream, index0 + l).v[j]
 * (AVX-512 intrinsics where the CPU has them, else AVX2's), the AVX2 path
 * alone (0 and nothing written without AVX2) and the portable loops both
 * are held to. */
void ae_net_philox_lanes(uint64_t seed, uint32_t tensor, uint32_t stream,
                         uint64_t index0, uint32_t w[4][AE_NET_NORMAL_LANES]);
int ae_net_philox_lanes_avx2(uint64_t seed, uint32_t tensor, uint32_t stream,
                             uint64_t index0,
                             uint32_t w[4][AE_NET_NORMAL_LANES]);
void ae_net_philox_lanes_ref(uint64_t seed, uint32_t tensor, uint32_t stream,
                             uint64_t index0,
                             uint32_t w[4][AE_NET_NORMAL_LANES]);

/* Direct float32 convolution, stride 1, output as large as
 * the input (odd kernel k <= AE_NET_DIRECT_MAX_K, padding (k - 1) / 2):
 * y[co][p] = sum over (ci, ky, kx) of w[co][ci][ky][kx] * x[ci][p + shift]
 * without an im2col matrix, written straight into each sample's output.
 * With AVX-512 every output element is the very value of im2col + the
 * BLAS sgemm (the same fused multiply-adds in the same order, K split
 * into the same blocks); with AVX2 its values are its own (see
 * ae_net_conv_direct_kind below).  The former holds for OpenBLAS's
 * blocked sgemm only, so
 * ae_net_conv_direct_replaces(cout, columns, kk) says whether the sgemm
 * that im2col would feed (cout x columns, inner size kk) may be replaced:
 * 0 where OpenBLAS's small-matrix kernel or its threaded driver would
 * order the sums otherwise (columns not a multiple of 16, K blocks), 0 on a
 * machine where a once-per-process comparison of both on random data
 * finds any difference (another BLAS) or with AE_CONV_DIRECT=0 in the
 * environment; with AVX2 (no AVX-512) 1 for every GEMM whose
 * convolution fits, the direct values being the definition there. */
#define AE_NET_DIRECT_MAX_K 7
#define AE_NET_DIRECT_MAX_HW 4096 /* output positions per plane */
int ae_net_conv_direct_replaces(int cout, size_t columns, size_t kk);
/* 1 when ae_net_conv_direct's values are the definition of this
 * convolution's, whatever GEMM im2col would feed: with AVX2 (_OWN) for
 * every convolution it fits, with AVX-512 for the 3 x 3 ones that
 * Winograd's F(2 x 2, 3 x 3) runs (ae_net_conv_wino_fits; with AVX2 these
 * run it too; not with AE_CONV_WINOGRAD=0).  Callers then take the direct
 * path whatever _replaces says. */
int ae_net_conv_direct_defines(int h, int wd, int k, int cin, int cout);
/* ae_net_conv_direct in two steps, for callers that run one plane shape
 * many times: the tap masks and shifts of an h x wd plane and a k x k
 * kernel once (ae_net_conv_direct_geom), then any number of runs on it
 * (ae_net_conv_direct_run, the very values of ae_net_conv_direct). */
typedef struct {
  int h, wd, k;
  uint16_t taps[AE_NET_DIRECT_MAX_HW / 16 * AE_NET_DIRECT_MAX_K *
                AE_NET_DIRECT_MAX_K];
  ptrdiff_t shift[AE_NET_DIRECT_MAX_K * AE_NET_DIRECT_MAX_K];
} ae_net_direct_geom;
void ae_net_conv_direct_geom(int h, int wd, int k, ae_net_direct_geom *g);
void ae_net_conv_direct_run(const ae_net_direct_geom *g, const float *w,
                            const float *x, size_t x_stride, int cin, int cout,
                            float *y, size_t y_stride, int samples);
/* Which direct convolution runs here (decided once per process):
 * _SGEMM, AVX-512 and the very values of im2col + OpenBLAS's sgemm (the
 * once-per-process comparison passed); _OWN, AVX2 and FMA without
 * AVX-512: one chain of fused multiply-adds per output over (ci, ky, kx)
 * in order from +0 (ae_net_conv8_ref), which is then the definition of a
 * stride-1 "same" convolution's values for k >= 3 (a 1 x 1 stays a
 * GEMM), _replaces saying yes to any GEMM it fits; _OFF: none
 * (AE_CONV_DIRECT=0, no AVX2, or the comparison failed). */
enum { AE_NET_DIRECT_OFF, AE_NET_DIRECT_SGEMM, AE_NET_DIRECT_OWN };
int ae_net_conv_direct_kind(void);
/* The AVX2 convolution's values in plain C (fmaf), as
 * ae_net_conv_direct's arguments: the reference its kernel is held to
 * bit for bit, and its stand-in when its scratch cannot be allocated. */
void ae_net_conv8_ref(const float *w, const float *x, size_t x_stride, int cin,
                      int h, int wd, int k, int cout, float *y, size_t y_stride,
                      int samples);
/* 1 when ae_net_conv_direct runs here at all (AVX-512 with the once-per-
 * process check passed, or AVX2 and FMA; AE_CONV_DIRECT not 0), whatever
 * GEMM it would stand in for: for callers that need its values, not
 * sgemm's bits. */
int ae_net_conv_direct_usable(void);
/* 1 when the CPU runs AVX-512F (checked once; x86-64 with GCC only): the
 * float32 elementwise passes then take 16 lanes, with the very same
 * operations per element (no contraction into fused multiply-adds). */
int ae_net_have_avx512(void);
/* 1 when the CPU runs AVX2 (checked once; x86-64 with GCC only). */
int ae_net_have_avx2(void);
/* 1 when the CPU runs AVX2 and FMA (checked once; x86-64 with GCC only):
 * the Gram kernel (net_gram.c) and the NTK's per-sample dW (net_ntk.c)
 * then have 8-lane versions with the AVX-512 ones' arithmetic. */
int ae_net_have_avx2_fma(void);
#if !defined(AE_NET_DOUBLE) && defined(__GNUC__) && defined(__x86_64__)
#define AE_NET_AVX512 1
#define AE_AVX512_FN                                                           \
  __attribute__((target("avx512f"), optimize("fp-contract=off")))
#else
#define AE_NET_AVX512 0
#endif
/* The adjoint of a stride-1 "same" convolution (w: cout x cin x k x k)
 * is the direct convolution of dY with w'[ci][co][ky][kx] =
 * w[co][ci][k-1-ky][k-1-kx] (net_conv_direct.c).  _flip_weights forms
 * w' (cin x cout x k x k) in wf; _direct_add adds that convolution of
 * `samples` samples of dy (cout planes of h x wd each, dy_stride apart)
 * into dx (cin planes, dx_stride apart, dx_stride = cin * h * wd),
 * formed tmp_samples samples at a time in tmp (tmp_samples * dx_stride
 * floats). */
void ae_net_conv_flip_weights(const float *w, int cout, int cin, int k,
                              float *wf);
void ae_net_conv_direct_add(const float *wf, const float *dy, size_t dy_stride,
                            int cout, int h, int wd, int k, int cin, float *dx,
                            size_t dx_stride, int samples, float *tmp,
                            size_t tmp_samples);
/* The interiors of cin zero-bordered planes of (h + k - 1) x (wd + k - 1)
 * in xp (the borders left as they are: the callers zero them once) from
 * x's cin planes of h x wd: the padded copy the direct kernels read. */
void ae_net_pad_planes(const float *x, int cin, int h, int wd, int k,
                       float *xp);
/* The float32 NTK's per-sample weight gradients of a stride-1 "same"
 * k x k convolution without im2col (net_ntk.c): for `samples` samples
 * (x: cin planes of h x w, dy: cout planes), row b of out (out_stride
 * apart) gets out[c * cout + co] = sum over the positions p, in order,
 * of x_c[p] * dy[co][p], c = (ci, ky, kx) and x_c the input plane ci
 * shifted by the tap, zero off the plane: one chain of fused
 * multiply-adds from +0 per value, ae_net_dw_direct_ref in plain C (a
 * single sample).  _usable: 1 when the vector tiles run here for cout
 * output channels (AVX-512 with cout % 16 == 0, or AVX2 + FMA with
 * cout % 8 == 0, and the direct convolution usable); otherwise
 * ae_net_dw_direct runs the reference.  scratch: _scratch floats. */
int ae_net_dw_direct_usable(int cout);
size_t ae_net_dw_direct_scratch(int cin, int h, int w, int k, int cout);
void ae_net_dw_direct(const float *x, size_t x_stride, const float *dy,
                      size_t dy_stride, int samples, int cin, int h, int w,
                      int k, int cout, float *out, size_t out_stride,
                      float *scratch);
void ae_net_dw_direct_ref(const float *x, const float *dy, int cin, int h,
                          int w, int k, int cout, float *out);
/* Sample-parallel steps in parts (net_parts.c): fn(arg, part, parts) for
 * part 0 here and, when threads >= 2 and work >= 4096 items, part 1 of 2
 * on a helper thread started and joined within the call (one part when
 * none can be started).  _threads: the parts a step takes, 2 when
 * OpenBLAS has two threads or more and the CPU has AVX-512 or AVX2 + FMA,
 * else 1.  _range:
 * [*lo, *hi) of count items for part of parts. */
typedef void (*ae_net_part_fn)(void *arg, int part, int parts);
int ae_net_parts_threads(void);
void ae_net_run_parts(int threads, size_t work, ae_net_part_fn fn, void *arg);
void ae_net_part_range(size_t count, int part, int parts, size_t *lo,
                       size_t *hi);
/* ae_cross_sums (net_cross.c) by a kernel named: AE_CROSS_PLAIN
 * (plain C, any CPU), AE_CROSS_AVX2 (AVX2 and FMA) or AE_CROSS_AVX512
 * (AVX-512F), the CPU having it; ae_cross_kernel: the one it picks (the
 * process's CPU class).  The same bits from each (tests). */
enum { AE_CROSS_PLAIN, AE_CROSS_AVX2, AE_CROSS_AVX512 };
int ae_cross_kernel(void);
int ae_cross_sums_with(int kernel, const ae_cross_rows *a,
                       const ae_cross_rows *b, int samples, size_t w, int lower,
                       double *m, size_t ldm);

/* The float32 NTK's Gram (net_gram.c): theta (batch x batch, row-major,
 * lower triangle) += scale * G G^T in float64 for G = batch rows of P
 * float32 values, columns AE_NET_GRAM_BLOCK at a time; part `part` of
 * `parts` does its share of the 4 x 4 row tiles (the same bits for any
 * parts).  _usable: 1 when the AVX-512 kernel or its AVX2 twin (the same
 * bits) runs here (else _part runs the reference as part 0).  _ref: the same
 * arithmetic in plain C. */
#define AE_NET_GRAM_BLOCK 4096
int ae_net_gram_f32_usable(void);
void ae_net_gram_f32_part(const float *g, int batch, size_t P, double scale,
                          double *theta, int part, int parts);
void ae_net_gram_f32_ref(const float *g, int batch, size_t P, double scale,
                         double *theta);
/* The 3 x 3 convolution (stride 1, padding 1) by Winograd's F(2 x 2,
 * 3 x 3) (net_conv_wino.c): with AVX-512, and with AVX2 and FMA (the
 * same bits), ae_net_conv_direct runs it where
 * _fits (h and wd even, a vector of 16 tiles holding whole tile rows or
 * a tile row whole vectors, at most AE_NET_WINO_MAX_C channels in and
 * out), and its values are then the definition of that convolution's.
 * _weights: U[xi][ci][co] (16 x cin x cout) from w[co][ci][3][3]; _ref:
 * the same arithmetic in plain C, one tile at a time, without scratch. */
#define AE_NET_WINO_MAX_C 256
int ae_net_conv_wino_fits(int h, int wd, int cin, int cout);
void ae_net_conv_wino_weights(const float *w, int cout, int cin, float *U);
void ae_net_conv_wino(const float *w, const float *x, size_t x_stride, int cin,
                      int h, int wd, int cout, float *y, size_t y_stride,
                      int samples);
void ae_net_conv_wino_ref(const float *w, const float *x, size_t x_stride,
                          int cin, int h, int wd, int cout, float *y,
                          size_t y_stride, int samples);
/* ae_net_conv_wino with the kernel of `lanes` lanes named: 16 (AVX-512)
 * or 8 (AVX2 and FMA), whichever class the process runs as, so that a
 * test compares both with the reference on one machine (every lane does
 * the reference's operations: the same bits).  -1 when the CPU lacks
 * that kernel or its scratch cannot be had (nothing written), else 0. */
int ae_net_conv_wino_lanes(int lanes, const float *w, const float *x,
                           size_t x_stride, int cin, int h, int wd, int cout,
                           float *y, size_t y_stride, int samples);
/* 1 when node nd's convolution has the shape ae_net_conv_direct runs. */
int ae_net_conv_direct_fits(const ae_node *nd, const ae_plan_geom *ge);
/* 1 when the im2col + sgemm of node nd over `columns` columns is to run
 * as ae_net_conv_direct: it _fits, and its values are the definition
 * (_defines) or the sgemm's very values (_replaces).  The one test the
 * forward and the jets ask. */
int ae_net_conv_direct_takes(const ae_node *nd, const ae_plan_geom *ge,
                             size_t columns);
/* `samples` samples, sample s at x + s * x_stride and y + s * y_stride. */
void ae_net_conv_direct(const float *w, const float *x, size_t x_stride,
                        int cin, int h, int wd, int k, int cout, float *y,
                        size_t y_stride, int samples);

/* ---- the operators of real CNNs (net_ops.c) ----
 * max_pool, concat, mul, pad (api/arch.h's AE_OP_MAX_POOL group) and
 * grouped / dilated convolutions in every mode the executor runs.
 * net.c, net_ntk.c, net_grad.c and net_jet.c hand a node there first when
 * ae_net_ops_handles says so. */
#ifdef AE_NET_DOUBLE
#define ae_net_ops_forward ae_net64_ops_forward
#define ae_net_ops_jet ae_net64_ops_jet
#define ae_net_ops_backward ae_net64_ops_backward
#define ae_net_ops_ntk_step ae_net64_ops_ntk_step
#endif

/* A conv that the plain im2col + GEMM paths do not run: groups > 1, or a
 * dilated kernel larger than 1. */
/* Whether the count values of x are all zero (either sign), and all
 * finite: the tests of the shortcuts for convolutions of all-zero inputs
 * (net.c's forward, net_ntk.c's dW).  Cheap where they fail early. */
static inline int ae_net_all_zero(const ae_real *x, size_t count) {
  for (size_t e = 0; e < count; e++)
    if (x[e] != (ae_real)0) return 0;
  return 1;
}

static inline int ae_net_all_finite(const ae_real *x, size_t count) {
  for (size_t e = 0; e < count; e++)
    if (!isfinite(x[e])) return 0;
  return 1;
}

static inline int ae_net_ops_is_general_conv(const ae_node *nd) {
  return nd->op == AE_OP_CONV &&
         (nd->groups > 1 || (nd->dilation > 1 && nd->kernel > 1));
}

/* 1 when node nd runs through net_ops.c. */
static inline int ae_net_ops_handles(const ae_node *nd) {
  return (int)nd->op > AE_OP_FLATTEN || ae_net_ops_is_general_conv(nd);
}

/* Forward of node k over batch samples into n->act[k] (its inputs'
 * outputs in n->act). */
void ae_net_ops_forward(ae_net *n, int k, int batch);

/* Jets of node k (n->jet, three streams of batch samples each): the
 * linear ops run over the 3 * batch virtual samples; a max-pool selects
 * every stream by the value stream's argmax (the pattern frozen at x);
 * mul follows the product rule to second order. */
void ae_net_ops_jet(ae_net *n, int k, int batch);

/* The adjoint of node k for batch samples: dy its output gradient,
 * grads[j] the gradient of node j (inputs' gradients are added into;
 * NULL: not wanted).  A general conv
 * also forms its weight gradient: per sample into rows (batch rows of
 * n_weight values, written) and/or summed over the batch into dw_sum
 * (added); either may be NULL.  col and dcol: im2col scratch of
 * col_rows * out_hw values each. */
void ae_net_ops_backward(ae_net *n, int k, int batch, const ae_real *dy,
                         ae_real *const *grads, ae_real *rows, ae_real *dw_sum,
                         ae_real *col, ae_real *dcol);

/* The NTK's backward step at node k (net_ntk.c's sweep): the adjoint into
 * the inputs' gradient slots and, for a general conv, theta += scale *
 * G G^T of its per-sample weight gradients (n->gd as scratch). */
void ae_net_ops_ntk_step(ae_net *n, int k, int batch,
                         ae_ntk_parameterization par, double *theta);

#endif
