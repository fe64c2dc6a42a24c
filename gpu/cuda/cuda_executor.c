/* cuda_executor.c: the CUDA backend behind the executor interface
 * (gpu/executor.h): adapters over gpu/cuda/cuda_net.h.  Linked only in
 * CUDA builds (a build without CUDA links gpu/cuda_absent.c instead).
 *
 * A device is one ae_cuda_context (a GPU, its streams, library handles and
 * workspace); its nets live in its memory.  Both belong to the worker
 * thread that opened the device. */
#include "gpu/executor.h"

#include <stdlib.h>

#include "api/status.h"
#include "gpu/cuda/cuda_net.h"
#include "gpu/host/net.h"
#include "gpu/plan.h"

/* A device is the backend's own context. */
struct ae_exec_device {
  ae_cuda_context *ctx;
};

static int cuda_device_open(int ordinal, ae_exec_device **out, ae_error *err) {
  *out = NULL;
  ae_exec_device *d = calloc(1, sizeof *d);
  if (!d)
    return ae_error_set(err, AE_ENOMEM, NULL, "out of memory opening cuda:%d",
                        ordinal);
  char why[256] = "";
  int rc = ae_cuda_context_open(ordinal, &d->ctx, why, sizeof why);
  if (rc) {
    free(d);
    return ae_error_set(err, rc == AE_ENOMEM ? AE_ENOMEM : AE_EUNSUPPORTED,
                        NULL, "cannot open cuda:%d: %s", ordinal,
                        why[0] ? why : ae_strerror(rc));
  }
  *out = d;
  return AE_OK;
}

static void cuda_device_close(ae_exec_device *d) {
  if (!d) return;
  ae_cuda_context_close(d->ctx);
  free(d);
}

static size_t cuda_device_memory_used(const ae_exec_device *d) {
  return ae_cuda_context_memory_used(d->ctx);
}

/* A net: on the device, or, for a graph with ops the CUDA kernels do not
 * cover (ae_plan_first_host_only_node), a host net (gpu/host/net.h) that
 * runs every call on the worker's CPU; the engine's scorecard says so
 * (gpu/engine.c). */
struct ae_exec_net {
  ae_cuda_net *cuda;
  ae_net *host;
};

static int cuda_net_create(ae_exec_device *d, const ae_graph *g, int max_batch,
                           ae_exec_net **out) {
  *out = NULL;
  ae_exec_net *n = calloc(1, sizeof *n);
  if (!n) return AE_ENOMEM;
  int rc = ae_plan_first_host_only_node(g) >= 0
               ? ae_net_create(g, max_batch, &n->host)
               : ae_cuda_net_create(d->ctx, g, max_batch, &n->cuda);
  if (rc) {
    free(n);
    return rc;
  }
  *out = n;
  return AE_OK;
}

static void cuda_net_destroy(ae_exec_net *n) {
  if (!n) return;
  ae_cuda_net_destroy(n->cuda);
  ae_net_destroy(n->host);
  free(n);
}

static int cuda_init_weights(ae_exec_net *n, uint64_t seed, uint32_t stream) {
  if (n->host) {
    ae_net_init_weights(n->host, seed, stream);
    return AE_OK;
  }
  return ae_cuda_net_init_weights(n->cuda, seed, stream);
}

static int cuda_ntk(ae_exec_net *n, const float *x, int batch,
                    ae_ntk_parameterization par, double *theta,
                    const ae_job_control *ctl) {
  if (n->host) return ae_net_ntk(n->host, x, batch, par, theta, ctl);
  return ae_cuda_net_ntk(n->cuda, x, batch, par, theta, ctl);
}

static int cuda_sign_patterns(ae_exec_net *n, const float *x, int batch,
                              uint64_t **bits, size_t *words) {
  if (n->host) return ae_net_sign_patterns(n->host, x, batch, bits, words);
  return ae_cuda_net_sign_patterns(n->cuda, x, batch, bits, words);
}

static int cuda_forward_jet(ae_exec_net *n, const double *x, const double *dx,
                            const double *ddx, int batch, double *y, double *dy,
                            double *ddy) {
  if (n->host)
    return ae_net_forward_jet(n->host, x, dx, ddx, batch, y, dy, ddy);
  return ae_cuda_net_forward_jet(n->cuda, x, dx, ddx, batch, y, dy, ddy);
}

/* The host net behind a host-run graph (NULL for a device net). */
static struct ae_net *cuda_host_net(ae_exec_net *n) {
  return n->host;
}

static const ae_executor cuda_executor = {
    .kind = "cuda",
    .jets_within_max_batch = 1,
    .device_open = cuda_device_open,
    .device_close = cuda_device_close,
    .device_memory_used = cuda_device_memory_used,
    .net_create = cuda_net_create,
    .net_destroy = cuda_net_destroy,
    .init_weights = cuda_init_weights,
    .ntk = cuda_ntk,
    .sign_patterns = cuda_sign_patterns,
    .forward_jet = cuda_forward_jet,
    .host_net = cuda_host_net,
};

const ae_executor *ae_cuda_executor(void) {
  return &cuda_executor;
}
