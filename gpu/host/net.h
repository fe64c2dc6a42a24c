/* net.h: the host backend's network executor (the reference the CUDA
 * backend is held to).
 *
 * An ae_net runs one lowered ae_graph: weights drawn from Philox, a float32
 * forward pass (conv by im2col + sgemm, batch norm with the batch's
 * statistics), the batched backward with frozen batch statistics that
 * yields every per-sample gradient, and the layer-by-layer NTK Gram
 * accumulated in float64.  It also exposes what the expressivity group
 * needs: activation sign patterns and forward-mode second-order jets.
 * An ae_net and its buffers belong to the one thread that created it. */
#ifndef AE_NET_H
#define AE_NET_H

#include "api/arch.h"
#include "api/request.h"
#include "gpu/job_control.h"
#include <stddef.h>
#include <stdint.h>

typedef struct ae_net ae_net;

/* Plans buffers for batches of up to max_batch samples.  The graph is
 * copied.  0, AE_ENOMEM or AE_EINVAL (an op it cannot run). */
int ae_net_create(const ae_graph *g, int max_batch, ae_net **out);
void ae_net_destroy(ae_net *n);

/* Frees the calling thread's spare arena (the forward buffers kept from
 * its last destroyed net for its next one; see net.c).  A thread's spare
 * is also freed when the thread exits. */
void ae_net_release_spare(void);

/* Draws every weight: LINEAR/CONV W ~ N(0, init_gain / fan_in) from
 * ae_philox_normal(seed, node index, stream, element); biases 0; BN gamma 1,
 * beta 0.  stream is the repeat index. */
void ae_net_init_weights(ae_net *n, uint64_t seed, uint32_t stream);

/* Forward pass, float32.  x: batch * prod(input shape) (already scaled: the
 * caller applies scale_input_norm).  logits: batch * num_classes, or NULL.
 * BN normalises with this batch's mean and biased variance, eps 1e-5. */
int ae_net_forward(ae_net *n, const float *x, int batch, float *logits);

/* After ae_net_forward: node's output, batch * prod(shape).  Borrowed. */
const float *ae_net_activation(const ae_net *n, int node);

/* Empirical NTK at the current weights: theta (batch x batch, row-major,
 * float64, overwritten) = sum over trainable tensors l of G_l G_l^T where
 * row i of G_l is d(sum_c f_c(x_i)) / d(theta_l).  Trainable: LINEAR and
 * CONV weights, LINEAR biases when present, BN gamma.  BN batch statistics
 * are constants in the backward pass, so samples decouple.  With
 * AE_NTK_NTK each tensor's Gram is scaled by its init variance
 * init_gain / fan_in (BN gamma and biases: 1).  Checks ctl between layers
 * (0, AE_ECANCELLED, AE_EDEADLINE, AE_ENOMEM). */
int ae_net_ntk(ae_net *n, const float *x, int batch,
               ae_ntk_parameterization par, double *theta,
               const ae_job_control *ctl);

/* Forward on x, then the sign pattern of every sample: per ACT node of a
 * piecewise activation (graph order), per kink of ae_act_pattern_kinks
 * (relu, leaky_relu: 0; relu6: 0, 6; hardswish, hardsigmoid: -3, 3), a
 * bit per input element, 1 iff the element is > the kink.
 * bits: batch * words_per_sample, malloc'd, caller frees. */
int ae_net_sign_patterns(ae_net *n, const float *x, int batch, uint64_t **bits,
                         size_t *words_per_sample);

/* *count = number of distinct rows among n bit rows of `words` words each
 * (exact: sorts, no hashing collisions; 0 rows: 0, 0 words: 1).  AE_OK, or
 * AE_ENOMEM when the sort's index cannot be allocated (*count is then 0:
 * never a count).  Pure function. */
int ae_count_distinct_patterns(const uint64_t *bits, size_t n, size_t words,
                               size_t *count);

/* Forward-mode jets along a curve x(t): for each sample, given x, x'(t),
 * x''(t), returns the logits y and dy/dt, d2y/dt2 (each batch *
 * num_classes; y, dy or ddy may be NULL).  Exact second-order propagation
 * through smooth activations; piecewise-linear ones use their derivative
 * at x (the pattern is frozen).  BN statistics come from x's batch and are
 * constants along the curve.  The three streams of all samples run as one
 * batch of 3 * batch columns in float32 (float64 reductions); with
 * ae_net_set_double on, in float64 (the reference).  Buffers are planned
 * for the batch asked (it may exceed max_batch). */
int ae_net_forward_jet(ae_net *n, const double *x, const double *dx,
                       const double *ddx, int batch, double *y, double *dy,
                       double *ddy);

/* on = 1: ae_net_forward_jet runs every node as the graph has it (the
 * reference path); on = 0 (the default): it skips the nodes whose output
 * never reaches the logits, and those whose three streams are
 * identically +0 (a `none` edge, a cell whose paths are cut: their
 * readers treat them as zeros), and runs a ReLU whose only reader is a
 * direct convolution inside that convolution, sample by sample.  Both
 * give the same bits (a unit test holds them to it).  The float64 twin
 * follows the same setting. */
void ae_net_set_jet_reference(ae_net *n, int on);

/* Sum over the curve's points of the extrinsic curvature of the logits,
 * kappa = sqrt(|v|^2 |a|^2 - (v.a)^2) / |v|^3 with v = dy, a = ddy
 * (metrics.md §1.2), given the jets of `points` samples.  A point where
 * |v| = 0 contributes nothing and increments *degenerate. */
double ae_curvature_sum(const double *dy, const double *ddy, int points,
                        int classes, int *degenerate);

/* Parameters (trainable and not) and forward FLOPs per sample. */
size_t ae_net_param_count(const ae_net *n);
/* Bytes of buffers this net holds. */
size_t ae_net_memory_bytes(const ae_net *n);

/* ---- additions for tests, the engine and the CUDA parity checks ---- */

typedef enum {
  AE_NET_WEIGHT, /* LINEAR W[out][in], CONV W[cout][cin][kh][kw] */
  AE_NET_BIAS,   /* LINEAR bias[out] (when the node has one) */
  AE_NET_GAMMA,  /* BN gamma[channels] */
  AE_NET_BETA    /* BN beta[channels] */
} ae_net_param_kind;

/* A node's parameter tensor (float32, writable: tests set weights by hand)
 * and its element count; NULL and 0 when the node has no such tensor. */
float *ae_net_param(ae_net *n, int node, ae_net_param_kind kind, size_t *count);

/* After a forward: a BN node's batch mean and 1/sqrt(var + eps) per
 * channel (float64, borrowed).  0, or AE_EINVAL for a node that is not
 * BN. */
int ae_net_bn_stats(const ae_net *n, int node, const double **mean,
                    const double **invstd, int *channels);

/* After a forward of the float32 net: 1 when BN node `node` maps each
 * channel of its input by y = s x + t with s finite and not zero and t
 * finite (every gamma non-zero), so that its output's Pearson
 * correlations between channels are its input's; else (or not a BN) 0. */
int ae_net_bn_rescales_channels(const ae_net *n, int node);

/* out[i] = (float)ae_philox_normal(seed, tensor, stream, index0 + i) for
 * i < count, bit for bit (sd = 1 in ae_net_philox_normals_f32's lanes:
 * Box-Muller's log and cos as vector polynomials, libm's where they could
 * round otherwise; net_normals.c).  About 5x the scalar loop's rate.  Any
 * thread. */
void ae_net_philox_normals_fill_f32(uint64_t seed, uint32_t tensor,
                                    uint32_t stream, uint64_t index0,
                                    size_t count, float *out);

/* dst[i] = (double)src[i] for i < n (exact), vectorised.  Any thread. */
void ae_f32_to_f64(const float *restrict src, size_t n, double *restrict dst);

/* Rows of float32 values (x), or of float64 values (xd, when x is NULL):
 * row i (< rows) of sample s at x + s * sample + i * row; mean[i]
 * subtracted from row i's values (NULL: none). */
typedef struct {
  const float *x;
  size_t row, sample;
  int rows;
  const double *mean;
  const double *xd;
} ae_cross_rows;

/* m[i * ldm + j] += the sum over samples s < samples and columns k < w of
 * (a_i[k] - ma_i) (b_j[k] - mb_j) in float64, for i < a->rows, j <
 * b->rows; lower: only the pairs j <= i (a and b the same rows).  Column
 * k of every sample goes into lane k mod 8 of its pair by a fused
 * multiply-add, samples in order, and the 8 lanes are summed in a fixed
 * order (net_cross.c): the same bits on every CPU and kernel.  _ref is
 * that in plain C.  0, or AE_ENOMEM (m unchanged).  Any thread. */
int ae_cross_sums(const ae_cross_rows *a, const ae_cross_rows *b, int samples,
                  size_t w, int lower, double *m, size_t ldm);
void ae_cross_sums_ref(const ae_cross_rows *a, const ae_cross_rows *b,
                       int samples, size_t w, int lower, double *m, size_t ldm);

/* mean[i] (i < x->rows) = the mean of row i over samples s < samples and
 * columns k < w (x->mean ignored), in float64: column k of each sample
 * into lane k mod 8, samples in order, the lanes summed in
 * ae_cross_sums's order, divided by samples * w.  Any thread. */
void ae_cross_means(const ae_cross_rows *x, int samples, size_t w,
                    double *mean);

/* The net's own copy of the graph (borrowed). */
const ae_graph *ae_net_graph(const ae_net *n);

/* Two counters that only grow: *weights changes whenever the weights may
 * have been written (ae_net_init_weights*, ae_net_param, use_double
 * switched), *acts whenever the forward's buffers (activations, BN
 * statistics) may have (every forward, and every weight write).  Equal
 * values mean the same state: what lets a job reuse a forward (either
 * may be NULL). */
void ae_net_versions(const ae_net *n, unsigned long *weights,
                     unsigned long *acts);

/* on = 1: later ae_net_forward and ae_net_ntk run in float64 (a twin net
 * made on first use, holding the same weights, which are copied from this
 * net at every call), and ae_net_forward_jet runs in float64 on the
 * same weights; on = 0: back to float32.  Sign patterns and
 * ae_net_activation / ae_net_bn_stats always use the float32 net.  The
 * reference for the float32 spread of scorecard.md §4.  0 or AE_ENOMEM. */
int ae_net_set_double(ae_net *n, int on);
/* 1 while ae_net_set_double is on: the forward's values are then the
 * twin's (ae_net_activation64), not ae_net_activation's. */
int ae_net_double_on(const ae_net *n);

/* Phase timers (for the benchmark's "where the time goes"). */
enum {
  AE_NET_PROF_FWD_CONV,   /* forward: im2col + sgemm */
  AE_NET_PROF_FWD_OTHER,  /* forward: everything else */
  AE_NET_PROF_BWD_IM2COL, /* NTK: im2col recomputed per sample */
  AE_NET_PROF_BWD_DW,     /* NTK: per-sample weight gradients (sgemm) */
  AE_NET_PROF_BWD_DX,     /* NTK: input gradients (sgemm + col2im) */
  AE_NET_PROF_GRAM,       /* NTK: float64 conversion + dsyrk */
  AE_NET_PROF_BWD_OTHER,  /* NTK: BN, activations, pools, adds */
  AE_NET_PROF_COUNT
};
/* on = 1 zeroes the timers and starts timing; 0 stops. */
void ae_net_set_profiling(ae_net *n, int on);
/* Seconds per phase since profiling was turned on (AE_NET_PROF_COUNT). */
const double *ae_net_profile(const ae_net *n);
const char *ae_net_profile_name(int phase);

/* ---- reverse mode with train-mode BatchNorm (net_grad.c) ----
 * The gradients of a scalar loss through the last ae_net_forward, as
 * PyTorch's autograd in .train(): BN differentiates through the batch
 * mean and variance, parameter gradients are summed over the batch.
 * With ae_net_set_double on (for the forward and the backward), both run
 * on the float64 twin. */
typedef struct ae_net_grad ae_net_grad;

/* Gradient buffers for n (node buffers are made on first use).  0 or
 * AE_ENOMEM.  Destroy before n. */
int ae_net_grad_create(ae_net *n, ae_net_grad **out);
void ae_net_grad_destroy(ae_net_grad *gr);

/* After ae_net_forward(n, x, batch, ...): seeds node from's output
 * gradient with seed (batch * prod(shape of from), float64) and propagates
 * it to every earlier node.  stop: -1 for the whole net, else nodes with
 * index <= stop receive their gradient but pass nothing on.  Every
 * gradient of gr is reset first.  0, AE_EINVAL or AE_ENOMEM. */
int ae_net_backward(ae_net *n, ae_net_grad *gr, int batch, int from,
                    const double *seed, int stop);

/* After ae_net_backward: the gradient of node's output, batch *
 * prod(shape) float64 values (zeros where nothing reached it), for the
 * nodes the sweep did not pass through: node 0 (the input) and every node
 * <= stop (the buffers of the others are reused as the sweep goes).  0, or
 * AE_EINVAL for a node the sweep passed. */
int ae_net_grad_node(const ae_net_grad *gr, int node, double *out);

/* ae_net_backward with a float32 seed, copied as it is (what the float64
 * seed's float32 conversion gives when each of its values is a float32,
 * as Rademacher signs are), on the float32 net (AE_EINVAL while
 * ae_net_set_double is on). */
int ae_net_backward_f32(ae_net *n, ae_net_grad *gr, int batch, int from,
                        const float *seed, int stop);

/* After ae_net_backward_f32 (or ae_net_backward on the float32 net): the
 * gradient of node's output in place (*out: batch * prod(shape) float32
 * values, the ones ae_net_grad_node converts, valid until gr's next
 * backward; NULL where no gradient reached the node: zeros).  0, or
 * AE_EINVAL where ae_net_grad_node fails or the float64 twin ran. */
int ae_net_grad_node_f32(const ae_net_grad *gr, int node, const float **out);

/* skip = 1: later backwards compute node (and input) gradients only, no
 * parameter gradients (no im2col, no weight GEMMs: what
 * jacobian_trainability and jacob_cov need); 0: both (the default). */
void ae_net_grad_skip_params(ae_net_grad *gr, int skip);

/* After ae_net_backward: the gradient of a parameter tensor (summed over
 * the batch), count float64 values (count as ae_net_param says).  0, or
 * AE_EINVAL when the node has no such tensor, count differs or parameter
 * gradients are skipped. */
int ae_net_grad_param(const ae_net_grad *gr, int node, ae_net_param_kind kind,
                      double *out, size_t count);

/* ae_net_forward, then the logits as float64 (batch * num_classes; NULL
 * for none): the float64 twin's own values when ae_net_set_double is on.
 * 0 or an error. */
int ae_net_forward64(ae_net *n, const float *x, int batch, double *logits);

/* After a forward of batch samples: node's output as float64 (batch *
 * prod(shape)), from the twin when ae_net_set_double is on.  0 or
 * AE_EINVAL. */
int ae_net_activation64(ae_net *n, int node, int batch, double *out);

/* out[e] = ae_philox_uniform(seed, tensor, stream, e) < 0.5 ? -1 : +1 for
 * e < count, bit for bit, with the Philox rounds lane-parallel (the
 * Rademacher tensors of ranking.md §2).  Pure function. */
void ae_rademacher_fill(uint64_t seed, uint32_t tensor, uint32_t stream,
                        size_t count, double *out);

/* ae_rademacher_fill's very values, kept per thread as bits from call to
 * call (net_signs.c): a sweep's jobs share the seed and the block shapes,
 * so each worker draws its signs once.  Bounded (4 MiB of bits, 64
 * tensors); a new seed drops the old one's. */
void ae_rademacher_fill_kept(uint64_t seed, uint32_t tensor, uint32_t stream,
                             size_t count, double *out);

/* The same signs as float32, from the same kept bits.  0, or AE_ENOMEM
 * when a draw's float64 scratch cannot be allocated (out untouched). */
int ae_rademacher_fill_kept_f32(uint64_t seed, uint32_t tensor, uint32_t stream,
                                size_t count, float *out);

/* Frees the calling thread's kept signs (also freed when it exits). */
void ae_rademacher_release(void);

/* ---- weight schemes (net_init.c; ranking.md §0, settings.init) ---- */

/* Draws every weight with scheme (stream: the repeat index):
 * AE_INIT_KAIMING_NORMAL is ae_net_init_weights exactly (same bits);
 * AE_INIT_TORCH_DEFAULT: LINEAR/CONV weights and LINEAR biases
 * U(-1/sqrt(fan_in), +1/sqrt(fan_in)), fan_in = in features (linear) or
 * in channels * k * k (conv), as 2u - 1 times the bound with
 * u = ae_philox_uniform(seed, node index, stream, counter), counters
 * 0 .. n_weight-1 for the weights, then n_weight + o for bias o;
 * AE_INIT_GAUSSIAN: weights N(0, 1) =
 * ae_philox_normal(seed, node index, stream, element), biases 0.  BN
 * gamma 1, beta 0 in every scheme. */
void ae_net_init_weights_scheme(ae_net *n, uint64_t seed, uint32_t stream,
                                ae_init_scheme scheme);

#endif
