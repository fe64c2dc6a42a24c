/* cuda_net.h: the CUDA backend's executor as the engine sees it, mirroring
 * gpu/host/net.h with an ae_cuda_ prefix.  Everything but the calls below
 * lives in gpu/cuda/cuda_core.h (shared with the CUDA sources, which
 * cannot include the engine's C11 atomics); these take engine types and
 * are thin C wrappers (gpu/cuda/cuda_glue.c).
 *
 * Same ownership as cuda_core.h: a context and its nets belong to the
 * worker thread that opened them. */
#ifndef AE_CUDA_NET_H
#define AE_CUDA_NET_H

#include "api/request.h"
#include "gpu/cuda/cuda_core.h"
#include "gpu/job_control.h"
#include <stddef.h>
#include <stdint.h>

/* Empirical NTK as ae_net_ntk: forward, backward with frozen BN
 * statistics, per-sample weight gradients (cublasSgemmStridedBatched),
 * theta = sum_l scale_l G_l G_l^T accumulated in float64 on the device
 * (cublasDsyrk), copied to the host (batch x batch row-major) at the end.
 * Checks ctl between layers: 0, AE_ECANCELLED, AE_EDEADLINE, AE_EINVAL,
 * AE_ENOMEM, AE_EDEVICE or AE_EINTERNAL. */
int ae_cuda_net_ntk(ae_cuda_net *n, const float *x, int batch,
                    ae_ntk_parameterization par, double *theta,
                    const ae_job_control *ctl);

/* Forward, device sign patterns, then their exact number of distinct rows
 * (ae_count_distinct_patterns on the host).  0 or an error. */
int ae_cuda_net_count_patterns(ae_cuda_net *n, const float *x, int batch,
                               size_t *distinct);

#endif
