/* host_executor.c: the host backend behind the executor interface
 * (gpu/executor.h): thin adapters over gpu/host/net.h.
 *
 * The host "device" only counts the bytes of the nets alive on it, as
 * each net reported them when it was planned.  A device and its nets
 * belong to the worker thread that opened the device. */
#include "gpu/executor.h"

#include <stdlib.h>

#include "api/status.h"
#include "gpu/host/net.h"

struct ae_exec_device {
  size_t net_bytes; /* sum over live nets of their bytes at creation */
};

struct ae_exec_net {
  ae_net *net;
  ae_exec_device *device;
  size_t bytes; /* counted into device->net_bytes */
};

static int host_device_open(int ordinal, ae_exec_device **out, ae_error *err) {
  (void)ordinal;
  *out = calloc(1, sizeof **out);
  if (!*out)
    return ae_error_set(err, AE_ENOMEM, NULL,
                        "out of memory opening the host backend");
  return AE_OK;
}

static void host_device_close(ae_exec_device *d) {
  free(d);
}

static size_t host_device_memory_used(const ae_exec_device *d) {
  return d->net_bytes;
}

static int host_net_create(ae_exec_device *d, const ae_graph *g, int max_batch,
                           ae_exec_net **out) {
  ae_exec_net *n = calloc(1, sizeof *n);
  if (!n) return AE_ENOMEM;
  int rc = ae_net_create(g, max_batch, &n->net);
  if (rc) {
    free(n);
    return rc;
  }
  n->device = d;
  n->bytes = ae_net_memory_bytes(n->net);
  d->net_bytes += n->bytes;
  *out = n;
  return AE_OK;
}

static void host_net_destroy(ae_exec_net *n) {
  if (!n) return;
  n->device->net_bytes -= n->bytes;
  ae_net_destroy(n->net);
  free(n);
}

static int host_init_weights(ae_exec_net *n, uint64_t seed, uint32_t stream) {
  ae_net_init_weights(n->net, seed, stream);
  return AE_OK;
}

static int host_ntk(ae_exec_net *n, const float *x, int batch,
                    ae_ntk_parameterization par, double *theta,
                    const ae_job_control *ctl) {
  return ae_net_ntk(n->net, x, batch, par, theta, ctl);
}

static int host_sign_patterns(ae_exec_net *n, const float *x, int batch,
                              uint64_t **bits, size_t *words) {
  return ae_net_sign_patterns(n->net, x, batch, bits, words);
}

static int host_forward_jet(ae_exec_net *n, const double *x, const double *dx,
                            const double *ddx, int batch, double *y, double *dy,
                            double *ddy) {
  return ae_net_forward_jet(n->net, x, dx, ddx, batch, y, dy, ddy);
}

static struct ae_net *host_host_net(ae_exec_net *n) {
  return n->net;
}

const ae_executor ae_host_executor = {
    .kind = "host",
    .jets_within_max_batch = 0,
    .device_open = host_device_open,
    .device_close = host_device_close,
    .device_memory_used = host_device_memory_used,
    .net_create = host_net_create,
    .net_destroy = host_net_destroy,
    .init_weights = host_init_weights,
    .ntk = host_ntk,
    .sign_patterns = host_sign_patterns,
    .forward_jet = host_forward_jet,
    .host_net = host_host_net,
};
