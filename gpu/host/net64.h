/* net64.h: the host executor compiled in float64 (net64*.c include the
 * float32 sources with AE_NET_DOUBLE), behind ae_net_set_double.  Same
 * graph, same plan, every buffer and GEMM in float64; weights are loaded
 * from the float32 net, so both runs use the very same weights and the
 * difference between them is the float32 arithmetic alone (scorecard.md
 * §4's "host float32 vs a float64 run of the same weights").
 *
 * An ae_net64 belongs to the ae_net (and thread) that made it. */
#ifndef AE_NET64_H
#define AE_NET64_H

#include "api/arch.h"
#include "api/request.h"
#include "gpu/host/net.h"
#include "gpu/job_control.h"
#include <stddef.h>

typedef struct ae_net64 ae_net64;

int ae_net64_create(const ae_graph *g, int max_batch, ae_net64 **out);
void ae_net64_destroy(ae_net64 *n);
/* ae_net_release_spare of the float64 twins' arenas. */
void ae_net64_release_spare(void);
int ae_net64_forward(ae_net64 *n, const float *x, int batch, float *logits);
int ae_net64_ntk(ae_net64 *n, const float *x, int batch,
                 ae_ntk_parameterization par, double *theta,
                 const ae_job_control *ctl);
int ae_net64_forward_jet(ae_net64 *n, const double *x, const double *dx,
                         const double *ddx, int batch, double *y, double *dy,
                         double *ddy);
void ae_net64_set_jet_reference(ae_net64 *n, int on);
int ae_net64_load_params(ae_net64 *n, int node, ae_net_param_kind kind,
                         const float *src, size_t count);
size_t ae_net64_memory_bytes(const ae_net64 *n);
/* net_grad.c in float64 (net64_grad.c). */
typedef struct ae_net64_grad ae_net64_grad;
int ae_net64_grad_create(ae_net64 *n, ae_net64_grad **out);
void ae_net64_grad_destroy(ae_net64_grad *gr);
int ae_net64_backward(ae_net64 *n, ae_net64_grad *gr, int batch, int from,
                      const double *seed, int stop);
int ae_net64_grad_node(const ae_net64_grad *gr, int node, double *out);
int ae_net64_grad_param(const ae_net64_grad *gr, int node,
                        ae_net_param_kind kind, double *out, size_t count);
void ae_net64_grad_skip_params(ae_net64_grad *gr, int skip);
int ae_net64_forward64(ae_net64 *n, const float *x, int batch, double *logits);
int ae_net64_activation64(ae_net64 *n, int node, int batch, double *out);

#endif
