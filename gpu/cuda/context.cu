/* context.cu: the CUDA backend's per-worker context (device, stream,
 * cuBLAS and cuSOLVER handles, workspace arena), its error model and the
 * float64 dense linear algebra on the device: symmetric eigenvalues
 * (cusolverDnDsyevd) and the kernel quadratic form (cusolverDnDpotrf with
 * the jitter rule, then a triangular solve).
 *
 * A context belongs to the worker thread that opened it: every call must
 * come from that thread (the device is made current at open). */
#include "gpu/cuda/cuda_internal.h"

#include "gpu/cuda/cuda_kernels.cuh"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- error model ---- */

static void record(ae_cuda_context *ctx, const char *call, const char *file,
                   int line, const char *reason) {
  if (!ctx) return;
  snprintf(ctx->last_error, sizeof(ctx->last_error), "%s:%d: %s: %s", file,
           line, call, reason);
}

/* Errors after which the CUDA context cannot be trusted. */
static int is_sticky(cudaError_t e) {
  switch (e) {
  case cudaErrorIllegalAddress:
  case cudaErrorLaunchFailure:
  case cudaErrorLaunchTimeout:
  case cudaErrorHardwareStackError:
  case cudaErrorIllegalInstruction:
  case cudaErrorMisalignedAddress:
  case cudaErrorInvalidAddressSpace:
  case cudaErrorInvalidPc:
  case cudaErrorECCUncorrectable:
  case cudaErrorAssert:
  case cudaErrorContextIsDestroyed:
  case cudaErrorDevicesUnavailable:
  case cudaErrorUnknown:
    return 1;
  default:
    return 0;
  }
}

int ae_cuda_status_rt(ae_cuda_context *ctx, cudaError_t status,
                      const char *call, const char *file, int line) {
  if (status == cudaSuccess) return AE_OK;
  record(ctx, call, file, line, cudaGetErrorString(status));
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError(); /* not sticky: clear it */
    return AE_ENOMEM;
  }
  if (is_sticky(status)) {
    if (ctx) ctx->broken = 1;
    return AE_EDEVICE;
  }
  (void)cudaGetLastError();
  return AE_EINTERNAL;
}

/* A library failure may hide a sticky device error: look at the runtime's
 * pending error before calling it internal. */
static int library_failure(ae_cuda_context *ctx, int alloc, int exec,
                           const char *call, const char *file, int line,
                           const char *reason) {
  record(ctx, call, file, line, reason);
  if (alloc) return AE_ENOMEM;
  if (exec) {
    cudaError_t e = cudaPeekAtLastError();
    if (is_sticky(e)) {
      if (ctx) ctx->broken = 1;
      return AE_EDEVICE;
    }
  }
  return AE_EINTERNAL;
}

int ae_cuda_status_blas(ae_cuda_context *ctx, cublasStatus_t status,
                        const char *call, const char *file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return AE_OK;
  return library_failure(ctx, status == CUBLAS_STATUS_ALLOC_FAILED,
                         status == CUBLAS_STATUS_EXECUTION_FAILED, call, file,
                         line, cublasGetStatusString(status));
}

int ae_cuda_status_solver(ae_cuda_context *ctx, cusolverStatus_t status,
                          const char *call, const char *file, int line) {
  if (status == CUSOLVER_STATUS_SUCCESS) return AE_OK;
  char reason[64];
  snprintf(reason, sizeof(reason), "cusolver status %d", (int)status);
  return library_failure(ctx, status == CUSOLVER_STATUS_ALLOC_FAILED,
                         status == CUSOLVER_STATUS_EXECUTION_FAILED, call, file,
                         line, reason);
}

extern "C" int ae_cuda_classify_status(ae_cuda_context *ctx,
                                       ae_cuda_library lib, int status,
                                       const char *call) {
  switch (lib) {
  case AE_CUDA_LIB_RUNTIME:
    return ae_cuda_status_rt(ctx, (cudaError_t)status, call, __FILE__,
                             __LINE__);
  case AE_CUDA_LIB_CUBLAS:
    return ae_cuda_status_blas(ctx, (cublasStatus_t)status, call, __FILE__,
                               __LINE__);
  case AE_CUDA_LIB_CUSOLVER:
    return ae_cuda_status_solver(ctx, (cusolverStatus_t)status, call, __FILE__,
                                 __LINE__);
  }
  return AE_EINVAL;
}

int ae_cuda_alive(ae_cuda_context *ctx) {
  if (ctx->broken) return AE_EDEVICE;
  /* The device is current on the thread that opened the context; making
   * it current again costs nothing and keeps a context usable from a
   * thread it was handed to. */
  if (ctx->device < 0) return AE_OK;
  return AE_CU(ctx, cudaSetDevice(ctx->device));
}

/* ---- the context ---- */

extern "C" int ae_cuda_context_open(int device, ae_cuda_context **out,
                                    char *err, size_t errlen) {
  *out = NULL;
  if (err && errlen) err[0] = '\0';
  int count = ae_cuda_device_count();
  if (device < 0 || device >= count) {
    if (err)
      snprintf(err, errlen, "no CUDA device %d (%d found)", device, count);
    return AE_EUNSUPPORTED;
  }
  ae_cuda_context *ctx = (ae_cuda_context *)calloc(1, sizeof(ae_cuda_context));
  if (!ctx) return AE_ENOMEM;
  ctx->device = device;
  int rc = AE_CU(ctx, cudaSetDevice(device));
  cudaDeviceProp prop;
  if (!rc) rc = AE_CU(ctx, cudaGetDeviceProperties(&prop, device));
  if (!rc) snprintf(ctx->name, sizeof(ctx->name), "%s", prop.name);
  if (!rc)
    rc = AE_CU(ctx,
               cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
  if (!rc) rc = AE_CUBLAS(ctx, cublasCreate(&ctx->blas));
  if (!rc) rc = AE_CUBLAS(ctx, cublasSetStream(ctx->blas, ctx->stream));
  /* Plain float32 GEMMs (no TF32): parity with the host within 1e-4. */
  if (!rc)
    rc = AE_CUBLAS(ctx, cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH));
  if (!rc) rc = AE_CU(ctx, cudaEventCreate(&ctx->timer[0]));
  if (!rc) rc = AE_CU(ctx, cudaEventCreate(&ctx->timer[1]));
  if (!rc) rc = AE_CUSOLVER(ctx, cusolverDnCreate(&ctx->solver));
  if (!rc) rc = AE_CUSOLVER(ctx, cusolverDnSetStream(ctx->solver, ctx->stream));
  if (rc) {
    if (err) snprintf(err, errlen, "%s", ctx->last_error);
    ae_cuda_context_close(ctx);
    return rc;
  }
  *out = ctx;
  return AE_OK;
}

extern "C" int ae_cuda_context_detached(ae_cuda_context **out) {
  *out = (ae_cuda_context *)calloc(1, sizeof(ae_cuda_context));
  if (!*out) return AE_ENOMEM;
  (*out)->device = -1;
  snprintf((*out)->name, sizeof((*out)->name), "detached");
  return AE_OK;
}

extern "C" void ae_cuda_context_close(ae_cuda_context *ctx) {
  if (!ctx) return;
  /* Best effort: a broken context may fail these; nothing to report. */
  if (ctx->device >= 0) (void)cudaSetDevice(ctx->device);
  if (ctx->stream) (void)cudaStreamSynchronize(ctx->stream);
  if (ctx->workspace) (void)cudaFree(ctx->workspace);
  if (ctx->solver) (void)cusolverDnDestroy(ctx->solver);
  if (ctx->blas) (void)cublasDestroy(ctx->blas);
  for (int i = 0; i < 2; i++)
    if (ctx->timer[i]) (void)cudaEventDestroy(ctx->timer[i]);
  if (ctx->stream) (void)cudaStreamDestroy(ctx->stream);
  free(ctx);
}

extern "C" int ae_cuda_context_broken(const ae_cuda_context *ctx) {
  return ctx->broken;
}

extern "C" const char *ae_cuda_context_last_error(const ae_cuda_context *ctx) {
  return ctx->last_error;
}

extern "C" const char *ae_cuda_context_device_name(const ae_cuda_context *ctx) {
  return ctx->name;
}

extern "C" size_t ae_cuda_context_memory_used(const ae_cuda_context *ctx) {
  return ctx->workspace_bytes + ctx->net_bytes;
}

extern "C" int ae_cuda_context_sync(ae_cuda_context *ctx) {
  AE_TRY(ae_cuda_alive(ctx));
  return AE_CU(ctx, cudaStreamSynchronize(ctx->stream));
}

extern "C" int ae_cuda_timer_start(ae_cuda_context *ctx) {
  AE_TRY(ae_cuda_alive(ctx));
  return AE_CU(ctx, cudaEventRecord(ctx->timer[0], ctx->stream));
}

extern "C" int ae_cuda_timer_stop(ae_cuda_context *ctx, float *ms) {
  *ms = 0.0f;
  AE_TRY(ae_cuda_alive(ctx));
  AE_TRY(AE_CU(ctx, cudaEventRecord(ctx->timer[1], ctx->stream)));
  AE_TRY(AE_CU(ctx, cudaEventSynchronize(ctx->timer[1])));
  return AE_CU(ctx, cudaEventElapsedTime(ms, ctx->timer[0], ctx->timer[1]));
}

int ae_cuda_workspace(ae_cuda_context *ctx, size_t bytes, void **out) {
  *out = NULL;
  AE_TRY(ae_cuda_alive(ctx));
  if (bytes > ctx->workspace_bytes) {
    if (ctx->workspace) {
      /* The old buffer may still be read by queued work. */
      AE_TRY(AE_CU(ctx, cudaStreamSynchronize(ctx->stream)));
      AE_TRY(AE_CU(ctx, cudaFree(ctx->workspace)));
      ctx->workspace = NULL;
      ctx->workspace_bytes = 0;
    }
    size_t want = (bytes + 255) & ~(size_t)255;
    AE_TRY(AE_CU(ctx, cudaMalloc(&ctx->workspace, want)));
    ctx->workspace_bytes = want;
  }
  *out = ctx->workspace;
  return AE_OK;
}

/* ---- float64 linear algebra ---- */

static size_t align256(size_t v) {
  return (v + 255) & ~(size_t)255;
}

extern "C" int ae_cuda_sym_eigvals(ae_cuda_context *ctx, const double *A, int n,
                                   double *w) {
  if (!A || !w || n < 1) return AE_EINVAL;
  AE_TRY(ae_cuda_alive(ctx));
  size_t nn = (size_t)n * (size_t)n;
  /* A row-major symmetric = its column-major self; the lower triangle of
   * one is the upper of the other, and syevd reads one triangle only. */
  /* The size query gets real (if not yet filled) buffers: A and w first,
   * then the workspace grows to hold the solver's scratch too. */
  size_t a_off = 0, w_off = align256(a_off + sizeof(double) * nn);
  void *ws = NULL;
  AE_TRY(ae_cuda_workspace(ctx, w_off + sizeof(double) * (size_t)n, &ws));
  int lwork = 0;
  AE_TRY(AE_CUSOLVER(
      ctx, cusolverDnDsyevd_bufferSize(
               ctx->solver, CUSOLVER_EIG_MODE_NOVECTOR, CUBLAS_FILL_MODE_LOWER,
               n, (double *)((unsigned char *)ws + a_off), n,
               (double *)((unsigned char *)ws + w_off), &lwork)));
  size_t work_off = align256(w_off + sizeof(double) * (size_t)n);
  size_t info_off = align256(work_off + sizeof(double) * (size_t)lwork);
  size_t total = info_off + sizeof(int);
  AE_TRY(ae_cuda_workspace(ctx, total, &ws));
  unsigned char *base = (unsigned char *)ws;
  double *dA = (double *)(base + a_off), *dw = (double *)(base + w_off);
  double *work = (double *)(base + work_off);
  int *info = (int *)(base + info_off);
  int h_info = 0;
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(dA, A, sizeof(double) * nn,
                                    cudaMemcpyHostToDevice, ctx->stream)));
  AE_TRY(
      AE_CUSOLVER(ctx, cusolverDnDsyevd(ctx->solver, CUSOLVER_EIG_MODE_NOVECTOR,
                                        CUBLAS_FILL_MODE_LOWER, n, dA, n, dw,
                                        work, lwork, info)));
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(w, dw, sizeof(double) * (size_t)n,
                                    cudaMemcpyDeviceToHost, ctx->stream)));
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(&h_info, info, sizeof(int),
                                    cudaMemcpyDeviceToHost, ctx->stream)));
  AE_TRY(AE_CU(ctx, cudaStreamSynchronize(ctx->stream)));
  if (h_info != 0) {
    snprintf(ctx->last_error, sizeof(ctx->last_error),
             "cusolverDnDsyevd: info %d", h_info);
    return AE_EINTERNAL;
  }
  return AE_OK;
}

/* Cholesky of G + jitter I into L (device), info to the host. */
static int cholesky_try(ae_cuda_context *ctx, const double *dG, int n,
                        double jitter, double *dL, double *work, int lwork,
                        int *dinfo, int *info) {
  size_t nn = (size_t)n * (size_t)n;
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(dL, dG, sizeof(double) * nn,
                                    cudaMemcpyDeviceToDevice, ctx->stream)));
  if (jitter != 0.0) {
    ae_k_add_diagonal<<<ae_cuda_blocks((size_t)n), AE_CUDA_THREADS, 0,
                        ctx->stream>>>(dL, n, jitter);
    AE_TRY(AE_LAUNCHED(ctx));
  }
  AE_TRY(AE_CUSOLVER(ctx, cusolverDnDpotrf(ctx->solver, CUBLAS_FILL_MODE_LOWER,
                                           n, dL, n, work, lwork, dinfo)));
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(info, dinfo, sizeof(int),
                                    cudaMemcpyDeviceToHost, ctx->stream)));
  return AE_CU(ctx, cudaStreamSynchronize(ctx->stream));
}

extern "C" int ae_cuda_kernel_quadratic(ae_cuda_context *ctx, const double *G,
                                        int n, const double *Y, int C,
                                        double *q, double *jitter) {
  if (!G || !Y || !q || n < 1 || C < 1) return AE_EINVAL;
  if (jitter) *jitter = 0.0;
  *q = NAN;
  AE_TRY(ae_cuda_alive(ctx));
  size_t nn = (size_t)n * (size_t)n, nc = (size_t)n * (size_t)C;
  double trace = 0.0;
  for (size_t e = 0; e < nn; e++)
    if (!isfinite(G[e])) return AE_EINVAL;
  for (int i = 0; i < n; i++)
    trace += G[(size_t)i * n + i];
  if (!(trace > 0)) return AE_EINVAL;
  /* Y row-major n x C is column-major C x n; the solve wants Z = Y as a
   * column-major n x C, so transpose on the host. */
  double *Zh = (double *)malloc(sizeof(double) * nc);
  if (!Zh) return AE_ENOMEM;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < C; c++)
      Zh[(size_t)c * n + i] = Y[(size_t)i * C + c];
  void *ws = NULL;
  size_t g_off = 0, l_off = align256(sizeof(double) * nn);
  size_t z_off = align256(l_off + sizeof(double) * nn);
  int lwork = 0;
  int rc = ae_cuda_workspace(ctx, z_off + sizeof(double) * nc, &ws);
  if (!rc)
    rc = AE_CUSOLVER(ctx,
                     cusolverDnDpotrf_bufferSize(
                         ctx->solver, CUBLAS_FILL_MODE_LOWER, n,
                         (double *)((unsigned char *)ws + l_off), n, &lwork));
  size_t work_off = align256(z_off + sizeof(double) * nc);
  size_t info_off = align256(work_off + sizeof(double) * (size_t)lwork);
  if (!rc) rc = ae_cuda_workspace(ctx, info_off + sizeof(int), &ws);
  if (rc) {
    free(Zh);
    return rc;
  }
  unsigned char *base = (unsigned char *)ws;
  double *dG = (double *)(base + g_off), *dL = (double *)(base + l_off);
  double *dZ = (double *)(base + z_off), *work = (double *)(base + work_off);
  int *dinfo = (int *)(base + info_off);
  int info = 0;
  double used = 0.0, sum = 0.0;
  rc = AE_CU(ctx, cudaMemcpyAsync(dG, G, sizeof(double) * nn,
                                  cudaMemcpyHostToDevice, ctx->stream));
  if (!rc)
    rc = AE_CU(ctx, cudaMemcpyAsync(dZ, Zh, sizeof(double) * nc,
                                    cudaMemcpyHostToDevice, ctx->stream));
  if (!rc) rc = cholesky_try(ctx, dG, n, 0.0, dL, work, lwork, dinfo, &info);
  /* The host's rule (ae_kernel_quadratic): eps = 1e-10 doubling, capped at
   * and last tried at 1e-4. */
  for (double eps = 1e-10; !rc && info > 0; eps = fmin(2.0 * eps, 1e-4)) {
    used = eps * trace / n;
    rc = cholesky_try(ctx, dG, n, used, dL, work, lwork, dinfo, &info);
    if (eps == 1e-4) break;
  }
  if (!rc && info > 0) rc = AE_EINVAL; /* still indefinite */
  if (!rc && info < 0) {
    snprintf(ctx->last_error, sizeof(ctx->last_error),
             "cusolverDnDpotrf: info %d", info);
    rc = AE_EINTERNAL;
  }
  if (!rc) {
    /* Z = L^-1 Y; q = ||Z||_F^2 = tr(Y^T G^-1 Y). */
    const double one = 1.0;
    rc = AE_CUBLAS(ctx,
                   cublasDtrsm(ctx->blas, CUBLAS_SIDE_LEFT,
                               CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                               CUBLAS_DIAG_NON_UNIT, n, C, &one, dL, n, dZ, n));
  }
  if (!rc)
    rc = AE_CU(ctx, cudaMemcpyAsync(Zh, dZ, sizeof(double) * nc,
                                    cudaMemcpyDeviceToHost, ctx->stream));
  if (!rc) rc = AE_CU(ctx, cudaStreamSynchronize(ctx->stream));
  if (!rc) {
    /* The host's summation order over row-major Z. */
    for (int i = 0; i < n; i++)
      for (int c = 0; c < C; c++) {
        double z = Zh[(size_t)c * n + i];
        sum += z * z;
      }
    *q = sum;
    if (jitter) *jitter = used;
  }
  free(Zh);
  return rc;
}
