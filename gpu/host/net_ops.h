/* net_ops.h: the host executor's kernels for the operators of real CNNs
 * (api/arch.h's AE_OP_MAX_POOL group: max_pool, concat, mul, pad) and
 * for grouped (depthwise included) and dilated convolutions, in every
 * mode the executor runs: the forward, the NTK's per-sample backward, the
 * train-mode backward and the second-order jets.  net.c, net_ntk.c,
 * net_grad.c and net_jet.c hand a node here first when
 * ae_net_ops_handles says so; everything else stays on their own paths.
 *
 * Typed like net.c (ae_real; compiled again as net64_ops.c in float64,
 * the renames below).  Include after net_internal.h.  Runs on the thread
 * that owns the ae_net. */
#ifndef AE_NET_OPS_H
#define AE_NET_OPS_H

#include "gpu/host/net_internal.h"

#ifdef AE_NET_DOUBLE
#define ae_net_ops_forward ae_net64_ops_forward
#define ae_net_ops_jet ae_net64_ops_jet
#define ae_net_ops_backward ae_net64_ops_backward
#define ae_net_ops_ntk_step ae_net64_ops_ntk_step
#endif

/* A conv that the plain im2col + GEMM paths do not run: groups > 1, or a
 * dilated kernel larger than 1. */
static inline int ae_net_ops_is_general_conv(const ae_node *nd) {
  return nd->op == AE_OP_CONV &&
         (nd->groups > 1 || (nd->dilation > 1 && nd->kernel > 1));
}

/* 1 when node nd runs through this file. */
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
