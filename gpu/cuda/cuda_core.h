/* cuda_core.h: the CUDA backend's executor, the part of its C API that C
 * and CUDA C++ share (no <stdatomic.h>, so nvcc can include it).  The
 * engine includes gpu/cuda/cuda_net.h, which adds the calls that take
 * engine types (the NTK with its job control, the distinct count).
 *
 * An ae_cuda_context is one GPU as one worker thread sees it: the device,
 * one stream, a cuBLAS and a cuSOLVER handle and a growable workspace
 * arena, all kept for the worker's life.  An ae_cuda_net is one lowered
 * ae_graph planned on that context: one device allocation holding every
 * parameter, activation, gradient and scratch buffer (carved by offsets,
 * so its memory use is one number).  Both belong to the one thread that
 * opened them; the context must outlive its nets.
 *
 * Semantics are those of the host executor (gpu/host/net.h), the
 * reference these calls are held to: same layouts (LINEAR W[out][in],
 * CONV W[cout][cin][kh][kw], NCHW activations), same Philox weights, BN
 * with the batch's statistics (frozen in the backward), NTK Gram in
 * float64.  Inputs and outputs of every call are host memory.
 *
 * Errors: every CUDA, cuBLAS and cuSOLVER call is checked; a failure
 * returns AE_ENOMEM (allocation), AE_EDEVICE (a sticky error such as an
 * illegal address or a failed launch: the context is dead, every later
 * call returns AE_EDEVICE and the worker must leave service) or
 * AE_EINTERNAL (anything else; the job fails, the context lives).  The
 * message, with file:line, is kept in the context.  Nothing here exits. */
#ifndef AE_CUDA_CORE_H
#define AE_CUDA_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "api/arch.h"
#include "api/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ae_cuda_context ae_cuda_context;
typedef struct ae_cuda_net ae_cuda_net;

/* Number of usable CUDA devices; 0 when none or the driver is missing. */
int ae_cuda_device_count(void);

/* Opens device `device`: sets it current on this thread, creates the
 * stream, the cuBLAS and cuSOLVER handles (bound to the stream).  err gets
 * a readable reason on failure.  0, AE_EUNSUPPORTED (no such device),
 * AE_ENOMEM, AE_EDEVICE or AE_EINTERNAL. */
int ae_cuda_context_open(int device, ae_cuda_context **out, char *err,
                         size_t errlen);
void ae_cuda_context_close(ae_cuda_context *ctx);

/* 1 once a sticky error was seen: the worker must leave service. */
int ae_cuda_context_broken(const ae_cuda_context *ctx);
/* The last error's message ("file:line: call: reason"), "" if none.
 * Borrowed, valid until the next call on the context. */
const char *ae_cuda_context_last_error(const ae_cuda_context *ctx);
/* Device name and bytes of device memory this context's arena and nets
 * hold now. */
const char *ae_cuda_context_device_name(const ae_cuda_context *ctx);
size_t ae_cuda_context_memory_used(const ae_cuda_context *ctx);
/* Waits for the stream; 0 or the error of what ran on it. */
int ae_cuda_context_sync(ae_cuda_context *ctx);

/* ---- the error model, exposed for tests ---- */

typedef enum {
  AE_CUDA_LIB_RUNTIME, /* a cudaError_t */
  AE_CUDA_LIB_CUBLAS,  /* a cublasStatus_t */
  AE_CUDA_LIB_CUSOLVER /* a cusolverStatus_t */
} ae_cuda_library;

/* What a failing call with this raw status does: returns 0 (success) or
 * its AE_E* code, records "file:line: call: reason" in ctx and marks ctx
 * broken when the error is sticky. */
int ae_cuda_classify_status(ae_cuda_context *ctx, ae_cuda_library lib,
                            int status, const char *call);

/* A context with no device, stream or handles behind it, for tests of
 * the error model on machines without a GPU: anything that reaches the
 * device fails (cleanly).  Close it with ae_cuda_context_close. */
int ae_cuda_context_detached(ae_cuda_context **out);

/* Stream-ordered timing with CUDA events (for benchmarks): start records
 * an event on the context's stream; stop records another, waits for it
 * and gives the milliseconds between the two. */
int ae_cuda_timer_start(ae_cuda_context *ctx);
int ae_cuda_timer_stop(ae_cuda_context *ctx, float *ms);

/* Plans and allocates a net for batches of up to max_batch samples (the
 * graph is copied).  0, AE_EINVAL (an op or shape it cannot run),
 * AE_ENOMEM, or a device error. */
int ae_cuda_net_create(ae_cuda_context *ctx, const ae_graph *g, int max_batch,
                       ae_cuda_net **out);
void ae_cuda_net_destroy(ae_cuda_net *n);

/* Draws every weight on the device with the host's formula:
 * (float)(sqrt(gain / fan_in) * ae_philox_normal(seed, node, stream, e)),
 * biases 0, BN gamma 1 and beta 0. */
int ae_cuda_net_init_weights(ae_cuda_net *n, uint64_t seed, uint32_t stream);

/* Forward pass, float32, as ae_net_forward.  x: batch * prod(input shape)
 * on the host; logits (host, batch * num_classes) may be NULL. */
int ae_cuda_net_forward(ae_cuda_net *n, const float *x, int batch,
                        float *logits);

/* After a forward: copies node's output (batch * elems floats) to out. */
int ae_cuda_net_activation(ae_cuda_net *n, int node, float *out);

/* The NTK without engine types: par_ntk = 1 for the NTK
 * parameterization; check(ctl) is called between layers and a non-zero
 * return stops the job with that code (check may be NULL).  theta: host,
 * batch x batch row-major float64.  The engine calls ae_cuda_net_ntk
 * (cuda_net.h) instead. */
int ae_cuda_net_ntk_checked(ae_cuda_net *n, const float *x, int batch,
                            int par_ntk, double *theta,
                            int (*check)(const void *ctl), const void *ctl);

/* Forward on x, then every sample's sign pattern as ae_net_sign_patterns
 * (bit k = k-th input of a relu/leaky_relu ACT node is > 0, nodes in graph
 * order), built on the device.  *bits: malloc'd host rows, caller frees. */
int ae_cuda_net_sign_patterns(ae_cuda_net *n, const float *x, int batch,
                              uint64_t **bits, size_t *words_per_sample);

/* A 64-bit hash of every sample's pattern row, computed on the device
 * (for counting distinct patterns of large probes without moving the
 * rows; collisions are possible, so the exact count stays the host's
 * sort of the rows).  Call after ae_cuda_net_sign_patterns; hashes:
 * batch values on the host. */
int ae_cuda_net_pattern_hashes(ae_cuda_net *n, int batch, uint64_t *hashes);

/* Forward-mode float64 jets as ae_net_forward_jet (host arrays). */
int ae_cuda_net_forward_jet(ae_cuda_net *n, const double *x, const double *dx,
                            const double *ddx, int batch, double *y, double *dy,
                            double *ddy);

/* Parameter tensors, as ae_net_param: kind 0 weight, 1 bias, 2 BN gamma,
 * 3 BN beta (the values of ae_net_param_kind).  get copies up to cap
 * floats to out and sets *count to the tensor's size (0 when absent);
 * set uploads count floats.  0, AE_EINVAL or a device error. */
int ae_cuda_net_get_param(ae_cuda_net *n, int node, int kind, float *out,
                          size_t cap, size_t *count);
int ae_cuda_net_set_param(ae_cuda_net *n, int node, int kind,
                          const float *values, size_t count);

/* After a forward: a BN node's batch mean and 1/sqrt(var + eps) per
 * channel, copied to host arrays of `channels` doubles. */
int ae_cuda_net_bn_stats(ae_cuda_net *n, int node, double *mean, double *invstd,
                         int channels);

size_t ae_cuda_net_param_count(const ae_cuda_net *n);
/* Device bytes this net holds (its arena plus its jet buffers). */
size_t ae_cuda_net_memory_bytes(const ae_cuda_net *n);
const ae_graph *ae_cuda_net_graph(const ae_cuda_net *n);

/* Eigenvalues of a symmetric n x n float64 matrix (host, row-major; only
 * one triangle is read), ascending, by cusolverDnDsyevd.  w: n doubles. */
int ae_cuda_sym_eigvals(ae_cuda_context *ctx, const double *A, int n,
                        double *w);

/* q = tr(Y^T G^-1 Y) as ae_kernel_quadratic (analytic.h): Cholesky by
 * cusolverDnDpotrf with the jitter rule of metrics.md §3.2 (none, then
 * eps * tr(G)/n with eps from 1e-10 doubling to 1e-4), then L^-1 Y by a
 * triangular solve.  G: n x n, Y: n x C row-major, host.  *jitter gets the
 * jitter added.  AE_EINVAL when G is not finite or stays indefinite. */
int ae_cuda_kernel_quadratic(ae_cuda_context *ctx, const double *G, int n,
                             const double *Y, int C, double *q, double *jitter);

#ifdef __cplusplus
}
#endif

#endif
