/* features.h: the forward-feature metrics of ranking.md §1-3, as pure
 * computations over a host ae_net (gpu/host/net.h) and its inputs:
 * activation patterns (SWAP), the pattern kernel's log det (NASWOT), the
 * block outputs' channel entropies (AZ-NAS isotropy and progressivity),
 * the channel-correlation lambda_min (MeCo) and the kernel regression's
 * validation error on a given NTK.
 *
 * The net-driven functions run forward passes on the net's current
 * weights (the caller draws them) and read the outputs in float32, or in
 * float64 when the caller has turned ae_net_set_double on (the twin the
 * PyTorch reference is held to, tests/ref/README.md).  The choices where
 * the spec leaves room follow tests/ref/torch_ranking.py's header.
 * Reductions are float64 (eigenvalues by LAPACKE dsyevd, Cholesky by
 * dpotrf).  No state of their own; the net belongs to the caller's
 * thread. */
#ifndef AE_FEATURES_H
#define AE_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "api/arch.h"
#include "gpu/groups/group.h"
#include "gpu/host/net.h"

/* Most samples in an activation pattern (one uint16 per unit). */
#define AE_PATTERN_MAX_SAMPLES 16

/* A unit-bearing activation of ranking.md §1: an ACT node whose function
 * is piecewise linear (relu, leaky_relu, relu6, hardswish, hardsigmoid). */
int ae_features_is_pattern_act(const ae_node *nd);

/* The kinks of node nd as they enter sign patterns (gpu/activation.h's
 * ae_act_pattern_kinks, as linear_regions): one binary code per kink per
 * unit, set iff the activation's input is > the kink.  Returns the number
 * of kinks; 0 when nd is not a pattern activation. */
int ae_features_pattern_kinks(const ae_node *nd, double kinks[2]);

/* A 4-D node of ranking.md §0 as the reference counts it: per-sample rank
 * 3, not the input, a zero or an identity (an alias of its input). */
int ae_features_is_4d_node(const ae_node *nd);

/* ---- pure pieces (tested by hand) ---- */

/* Number of distinct values among n 16-bit codes, with a 65536-bit
 * bitmap (1024 words, cleared here). */
size_t ae_count_distinct_u16(const uint16_t *codes, size_t n, uint64_t *bitmap);

/* Smallest eigenvalue of the c x c Pearson correlation between the rows
 * of x (c rows of hw values): rows centred by their means; a row of zero
 * variance gives a zero row and column (diagonal included); the sums of
 * products in float64 lanes (ae_cross_sums, gpu/host/net_cross.c); the
 * eigenvalue by ae_sym_eigval_min; every row constant: the zero matrix,
 * whose eigenvalue +0 is returned without solving (work untouched).
 * work: c * c + 2 * c doubles.  0, AE_ENOMEM, or an error of
 * ae_sym_eigval_min. */
int ae_corr_lambda_min(const double *x, int c, size_t hw, double *work,
                       double *out);
/* The same of float32 rows, bit for bit (every value widens exactly; what
 * feature_corr_lambda_min runs on the activations in place); work as
 * above, holding the very same values afterwards. */
int ae_corr_lambda_min_f32(const float *x, int c, size_t hw, double *work,
                           double *out);

/* Entropy H = -sum p log(p + 1e-8) of the eigenvalues s (clipped at 0,
 * p = s / sum s) of the c x c covariance of a feature map f (batch x c x
 * hw, channels centred over the batch and positions, divided by batch *
 * hw).  f is overwritten (centred).  *h is NaN when the covariance has
 * trace 0.  work: c * c + c doubles.  0 or an error. */
/* The sum of channel ch of f (batch x c x hw) over samples and positions,
 * one float64 chain in that order (the reference of ae_channel_sums). */
double ae_channel_sum_ref(const double *f, int batch, int c, size_t hw, int ch);
/* out[j] = ae_channel_sum_ref(..., ch + j) for the channels ch .. ch + 3
 * that exist: the very same values, four chains interleaved. */
void ae_channel_sums(const double *f, int batch, int c, size_t hw, int ch,
                     double out[4]);

int ae_channel_entropy(double *f, int batch, int c, size_t hw, double *work,
                       double *h);

/* Isotropy = sum of h[0..n-1]; progressivity = the least h[l] - h[l-1]
 * (NaN when n < 2). */
void ae_isotropy_progressivity(const double *h, int n, double *isotropy,
                               double *progressivity);

/* log det of the symmetric positive definite n x n K by Cholesky
 * (ae_cholesky_lower, which passes ctl's checkpoint; ctl may be NULL).
 * 0, or AE_EINVAL when K is not positive definite (or not finite),
 * AE_ENOMEM, or the checkpoint's error. */
int ae_logdet_cholesky(const double *K, int n, double *logdet,
                       const ae_job_control *ctl);

/* The kernel regression of ranking.md §3 on the n x n theta and labels
 * (0 .. classes-1): targets one-hot minus 1/classes; the first
 * floor(3n/4) samples train (Cholesky with metrics.md §3.2's jitter), the
 * others validate.  *mse over the n_V x classes entries, *acc the share
 * of argmax hits (ties to the lowest class), *jitter the jitter used.
 * 0; AE_EINVAL when n < 2 or Theta_TT stays indefinite; AE_ENOMEM; or
 * the error of ctl's checkpoint (NULL: none), passed around the solve. */
int ae_kernel_regression(const double *theta, int n, const int *labels,
                         int classes, double *mse, double *acc, double *jitter,
                         const ae_job_control *ctl);

/* ---- over a net ---- */

/* One forward of x (batch <= AE_PATTERN_MAX_SAMPLES samples) and the
 * number of distinct sign patterns (input > kink) over every kink of every
 * unit of every pattern activation; *units the kink-bits counted (a relu
 * unit is one, a relu6 or hard unit two).  0 or an error. */
int ae_features_pattern_count(ae_net *net, const float *x, int batch,
                              size_t *distinct, size_t *units);

/* One forward of x (batch samples) and K (batch x batch, float64): K_ij =
 * the number of kink-bits on which samples i and j agree (c c^T +
 * (1-c)(1-c)^T summed over every kink of every unit), by popcount.
 * *units the kink-bits counted.  0 or an error. */
int ae_features_pattern_kernel(ae_net *net, const float *x, int batch,
                               double *K, size_t *units);

/* One forward of x (batch samples) and h[l] = ae_channel_entropy of block
 * output blocks[l] (rank 3: C x H x W; rank 1: F features as channels).
 * 0 or an error; an h[l] is NaN when that block's covariance is 0. */
int ae_features_block_entropies(ae_net *net, const float *x, int batch,
                                const int *blocks, int n_blocks, double *h);

/* Forward of the one sample x alone (BN over its positions) and the sum
 * over the 4-D nodes of ae_corr_lambda_min.  *nodes the nodes counted.
 * 0 or an error. */
int ae_features_corr_lambda_min(ae_net *net, const float *x, double *sum,
                                int *nodes);

/* The same sum as the job computes it (what ae_features_convergence runs
 * per sample): the float32 activations read in place, and the nodes whose
 * lambda_min is known without an eigensolve (no more positions than
 * channels: 0; a BN that rescales each channel: its input's; the bits of
 * an earlier node: that node's) not solved again.  Within float32's
 * rounding of the activations of ae_features_corr_lambda_min.  net: a
 * float32 net (ae_net_set_double off).  0 or an error. */
int ae_features_corr_lambda_min_fast(ae_net *net, const float *x, double *sum,
                                     int *nodes);

/* ---- the metric groups' entry points (the job's glue) ----
 * Each computes the metrics of its group that the job wants (and only
 * those) on the host net (ae_job_host_net), with the weights of
 * settings.init, and fills the scorecard; a metric it cannot compute is
 * left null with a warning.  0 or an error (cancellation, memory). */

/* activation_patterns (+ _units, _saturated), pattern_kernel_logdet,
 * feature_isotropy and feature_progressivity. */
int ae_features_expressivity(ae_job_state *job, ae_error *err);
/* feature_corr_lambda_min (+ _mean). */
int ae_features_convergence(ae_job_state *job, ae_error *err);
/* kernel_regression_val_mse and _val_acc. */
int ae_features_generalization(ae_job_state *job, ae_error *err);

#endif
