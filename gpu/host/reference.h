/* reference.h: the simple float64 reference beside the fast host kernels.
 *
 * A plain-loop forward pass of a lowered ae_graph (direct convolution and
 * pooling, no im2col, no BLAS) with float64 parameters, optionally with BN
 * statistics held fixed.  Tests hold the fast executor (net.c, net_ntk.c,
 * net_jet.c) to it; it is slow and meant for small nets.
 *
 * An ae_ref_params belongs to whoever made it. */
#ifndef AE_HOST_REFERENCE_H
#define AE_HOST_REFERENCE_H

#include "api/arch.h"
#include "gpu/host/net.h"

typedef struct {
  int n_nodes;
  /* Per node, NULL where the node has no such tensor. */
  double **weight, **bias, **gamma, **beta;
  /* Per BN node: the batch mean and 1/sqrt(var + 1e-5) per channel. */
  double **bn_mean, **bn_invstd;
} ae_ref_params;

/* Copies the net's float32 parameters into float64 (BN statistics
 * allocated, zero).  0 or AE_ENOMEM. */
int ae_ref_params_from_net(ae_net *n, ae_ref_params *p);
void ae_ref_params_free(ae_ref_params *p);

/* Forward of batch samples x (batch * prod(input shape)) into logits
 * (batch * output features).  freeze_bn = 0: BN uses the batch's mean and
 * biased variance and stores them into p's statistics; 1: BN uses p's
 * statistics as they are.  0, AE_EINVAL or AE_ENOMEM. */
int ae_ref_forward(const ae_graph *g, ae_ref_params *p, int freeze_bn,
                   const double *x, int batch, double *logits);

#endif
