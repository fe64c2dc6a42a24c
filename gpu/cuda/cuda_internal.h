/* cuda_internal.h: what the CUDA backend's sources share (C++ only): the
 * context and net layouts and the error-checking macros.
 *
 * Error model.  Every runtime, cuBLAS and cuSOLVER call goes through
 * AE_CU / AE_CUBLAS / AE_CUSOLVER, and every kernel launch is followed by
 * AE_LAUNCHED.  They evaluate to 0 or an AE_E* code, record
 * "file:line: call: reason" in the context and classify the failure:
 * allocation -> AE_ENOMEM; a sticky error (the CUDA context is corrupted:
 * illegal address, launch failure, ECC, ...) -> AE_EDEVICE and the context
 * is marked broken so every later call fails fast; anything else ->
 * AE_EINTERNAL.  AE_TRY(expr) returns the code from the enclosing
 * function; functions that own temporaries use `if ((rc = ...)) goto out`.
 *
 * Everything here belongs to the worker thread that owns the context. */
#ifndef AE_CUDA_INTERNAL_H
#define AE_CUDA_INTERNAL_H

#include "gpu/cuda/cuda_core.h"
#include "gpu/plan.h"
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stddef.h>
#include <stdint.h>

struct ae_cuda_context {
  int device;
  cudaStream_t stream;
  cublasHandle_t blas;
  cusolverDnHandle_t solver;
  void *workspace; /* growable scratch (solvers), device */
  size_t workspace_bytes;
  size_t net_bytes;     /* device bytes held by this context's nets */
  cudaEvent_t timer[2]; /* ae_cuda_timer_start / _stop */
  int broken;           /* a sticky error was seen */
  char name[256];
  char last_error[512];
};

/* Classifies and records a failure; 0 when status is success. */
int ae_cuda_status_rt(ae_cuda_context *ctx, cudaError_t status,
                      const char *call, const char *file, int line);
int ae_cuda_status_blas(ae_cuda_context *ctx, cublasStatus_t status,
                        const char *call, const char *file, int line);
int ae_cuda_status_solver(ae_cuda_context *ctx, cusolverStatus_t status,
                          const char *call, const char *file, int line);

#define AE_CU(ctx, call)                                                       \
  ae_cuda_status_rt((ctx), (call), #call, __FILE__, __LINE__)
#define AE_CUBLAS(ctx, call)                                                   \
  ae_cuda_status_blas((ctx), (call), #call, __FILE__, __LINE__)
#define AE_CUSOLVER(ctx, call)                                                 \
  ae_cuda_status_solver((ctx), (call), #call, __FILE__, __LINE__)
/* After a <<<...>>> launch: launch-configuration and sticky errors. */
#define AE_LAUNCHED(ctx)                                                       \
  ae_cuda_status_rt((ctx), cudaGetLastError(), "kernel launch", __FILE__,      \
                    __LINE__)
#define AE_TRY(expr)                                                           \
  do {                                                                         \
    int ae_try_rc_ = (expr);                                                   \
    if (ae_try_rc_) return ae_try_rc_;                                         \
  } while (0)

/* AE_EDEVICE when the context is already broken, else 0. */
int ae_cuda_alive(ae_cuda_context *ctx);

/* The context's scratch of at least `bytes` (grown, never shrunk); the
 * previous contents are lost when it grows. */
int ae_cuda_workspace(ae_cuda_context *ctx, size_t bytes, void **out);

struct ae_cuda_net {
  ae_cuda_context *ctx;
  ae_plan *plan;            /* geometry, liveness, slots and offsets */
  const ae_graph *g;        /* the plan's copy of the graph */
  const ae_plan_geom *geom; /* the plan's per-node geometry */
  int max_batch;
  int batch;      /* batch of the last forward */
  int *fwd_chunk; /* CONV: samples per im2col chunk (forward, dX) */
  int *k_chunk;   /* CONV: im2col rows per dW chunk (NTK) */
  /* device pointers into arena (NULL when absent) */
  float **weight, **bias, **gamma, **beta;
  double **bn_mean, **bn_invstd;
  float **act;      /* max_batch * elems per node */
  float **grad;     /* backward: shared slots (the plan's), or NULL */
  float *col;       /* im2col scratch */
  float *gf;        /* per-sample gradient rows, float */
  double *gd;       /* the same in float64 */
  double *xx, *yy;  /* max_batch^2 each: a linear layer's Grams */
  double *theta;    /* max_batch^2, lower triangle (column-major) */
  uint64_t *bits;   /* max_batch * pattern_words sign patterns */
  uint64_t *hashes; /* max_batch pattern hashes */
  size_t pattern_words;
  unsigned char *arena; /* the plan's two families, back to back */
  size_t arena_bytes;
  /* float64 jets, planned on first use for a batch */
  double **jet;   /* per node: 3 * jet_batch * elems */
  double *jcol;   /* float64 im2col scratch */
  double *jw;     /* one tensor's weights in float64 */
  double *jstats; /* a BN node's jet mean and invstd */
  unsigned char *jet_arena;
  size_t jet_bytes;
  int jet_batch;
};

/* Threads per block and a grid covering n elements (capped; kernels use
 * grid-stride loops). */
#define AE_CUDA_THREADS 256
static inline unsigned ae_cuda_blocks(size_t n) {
  size_t b = (n + AE_CUDA_THREADS - 1) / AE_CUDA_THREADS;
  if (b < 1) b = 1;
  if (b > 65535u * 8u) b = 65535u * 8u;
  return (unsigned)b;
}

/* Is node an ACT whose input's sign is part of the pattern. */
static inline int ae_cuda_is_pattern_act(const ae_node *nd) {
  return nd->op == AE_OP_ACT &&
         (nd->act.fn == AE_ACT_RELU || nd->act.fn == AE_ACT_LEAKY_RELU);
}

/* Runs the forward pass on x already on the device (node 0's buffer
 * filled).  Used by forward, NTK and sign patterns. */
int ae_cuda_net_forward_device(ae_cuda_net *n, int batch);

#endif
