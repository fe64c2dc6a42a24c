/* gradients.h: the gradient-based ranking metrics (ranking.md §2
 * jacobian_trainability, §4 synflow, grad_norm, snip, jacob_cov, zico) as
 * pure computations over a host net (gpu/host/net.h) whose weights the
 * caller has drawn.  A value that cannot be computed is NaN with `why`
 * filled (the caller turns it into a scorecard warning); errors (memory,
 * bad arguments) are return codes.  They run the net's forward and
 * backward: float32, or float64 when ae_net_set_double is on; synflow is
 * float64 always.
 *
 * No state of their own: the net belongs to the calling thread. */
#ifndef AE_GRADIENTS_H
#define AE_GRADIENTS_H

#include <stddef.h>
#include <stdint.h>

#include "gpu/host/net.h"

/* Room for a reason. */
#define AE_GRAD_WHY 200

/* AZ-NAS trainability on x (batch inputs, train-mode BN): for each pair
 * of consecutive block outputs (blocks, n_blocks node indices), g_out =
 * the Rademacher tensor of philox.h's convention (stream = pair index
 * l = 1..n_blocks-1), g_in = its vector-Jacobian product back to the
 * previous block, pixel-unshuffled when the resolution shrinks, M = g_in^T
 * g_out / (B h w), sigma = its largest singular value (LAPACKE dgesvd,
 * float64); score -sigma - 1/(sigma + 1e-6) + 2; *out = mean over pairs.
 * NaN with why when a block is an identity (g_in == g_out exactly; why
 * names the block, with its node's name in `named`, the lowered graph,
 * when given), when there are fewer than two blocks, or the shapes do not
 * match. */
int ae_jacobian_trainability(ae_net *n, const float *x, int batch,
                             const int *blocks, int n_blocks, uint64_t seed,
                             const ae_graph *named, double *out, char *why,
                             size_t why_len);

/* The same after the caller's own forward of the batch (ae_net_forward64,
 * or ae_net_forward with ae_net_set_double off): the backward reads that
 * forward's activations and batch statistics. */
int ae_jacobian_trainability_of_forward(ae_net *n, int batch, const int *blocks,
                                        int n_blocks, uint64_t seed,
                                        const ae_graph *named, double *out,
                                        char *why, size_t why_len);

/* SynFlow: a copy of n's graph with every BN an identity, |parameters|
 * of n (weights, linear biases), float64, one all-ones input sample;
 * R = sum of logits; *out = sum over conv/linear weights of |w dR/dw|. */
int ae_synflow(ae_net *n, double *out);

/* The weight gradients of the mean cross-entropy of the logits against
 * labels (train-mode BN), per conv/linear node, float64. */
typedef struct {
  int n_layers;
  int *node;     /* the layer's node index */
  size_t *count; /* its weight count */
  double **w;    /* its weights */
  double **g;    /* dCE/dw */
} ae_weight_grads;

/* Forward x (batch samples), backward of the mean CE against labels
 * (each in [0, num_classes)).  0, AE_EINVAL or AE_ENOMEM. */
int ae_ce_weight_grads(ae_net *n, const float *x, const int *labels, int batch,
                       ae_weight_grads *out);
void ae_weight_grads_free(ae_weight_grads *wg);

/* Sum over layers of ||dCE/dW||_F. */
double ae_grad_norm(const ae_weight_grads *g);
/* Sum over weights of |w dCE/dw|. */
double ae_snip(const ae_weight_grads *g);
/* ZiCo from the gradients of two batches: per layer, s = sum over weights
 * with non-zero deviation of mean|g| / std(g) (population, over the two
 * batches); sum over layers with s != 0 of log s.  NaN when the layers
 * differ. */
double ae_zico(const ae_weight_grads *g1, const ae_weight_grads *g2);

/* NASWOT v1: J = d(sum of the batch's logits)/dx, one row per sample; the
 * batch x batch correlation of the rows; *out = -sum over its
 * eigenvalues v of log(v + 1e-5) + 1/(v + 1e-5).  NaN with why when a row
 * is constant.  ctl (NULL: none): the job's checkpoint, passed inside the
 * batch x batch eigensolve; its error is returned. */
int ae_jacob_cov(ae_net *n, const float *x, int batch, double *out, char *why,
                 size_t why_len, const ae_job_control *ctl);

#endif
