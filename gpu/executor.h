/* executor.h: the one interface between the engine and a network executor.
 *
 * An executor runs lowered networks (ae_graph) on one kind of device: the
 * host backend (gpu/host/host_executor.c, always built) or the CUDA backend
 * (gpu/cuda/cuda_executor.c, linked only in CUDA builds).  The engine holds
 * a pointer to one operations table, chosen when it opens, and calls
 * nothing backend-specific: adding a backend is adding a table.
 *
 * Both executors draw the same Philox weights for the same seed and stream
 * and run the same lowered graph; they differ only in where and how they
 * compute.  A device and its nets belong to the one thread that opened the
 * device (a worker); nothing here is shared between threads. */
#ifndef AE_EXECUTOR_H
#define AE_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>

#include "api/arch.h"
#include "api/error.h"
#include "api/request.h"
#include "gpu/job_control.h"

/* One opened device (the host, or one GPU with its streams and library
 * handles) and one network planned on it.  Opaque; each executor defines
 * its own. */
typedef struct ae_exec_device ae_exec_device;
typedef struct ae_exec_net ae_exec_net;
struct ae_net; /* gpu/host/net.h */

typedef struct {
  const char *kind; /* "host" or "cuda": the first part of a worker name */
  /* 1 when forward_jet's batch must fit the net's max_batch (the device
   * plans its jet buffers at creation); 0 when the executor plans them
   * for the batch asked. */
  int jets_within_max_batch;

  /* Opens device `ordinal` (ignored by the host).  0, or AE_EUNSUPPORTED /
   * AE_ENOMEM with err saying why. */
  int (*device_open)(int ordinal, ae_exec_device **out, ae_error *err);
  void (*device_close)(ae_exec_device *d);
  /* Bytes of buffers the device holds now (the host: its live nets). */
  size_t (*device_memory_used)(const ae_exec_device *d);

  /* Plans a net for batches of up to max_batch samples (the graph is
   * copied).  0, AE_ENOMEM, AE_EINVAL (an op it cannot run) or a device
   * error. */
  int (*net_create)(ae_exec_device *d, const ae_graph *g, int max_batch,
                    ae_exec_net **out);
  void (*net_destroy)(ae_exec_net *n); /* NULL is fine */

  /* Draws every weight from Philox (seed, node, stream, element); stream
   * is the repeat index.  0 or an error. */
  int (*init_weights)(ae_exec_net *n, uint64_t seed, uint32_t stream);

  /* Empirical NTK at the current weights into theta (batch x batch,
   * row-major, float64), checking ctl between layers (gpu/host/net.h,
   * ae_net_ntk, has the definition). */
  int (*ntk)(ae_exec_net *n, const float *x, int batch,
             ae_ntk_parameterization par, double *theta,
             const ae_job_control *ctl);

  /* Forward on x, then each sample's relu/leaky_relu sign pattern:
   * *bits is batch * *words malloc'd words (the caller frees). */
  int (*sign_patterns)(ae_exec_net *n, const float *x, int batch,
                       uint64_t **bits, size_t *words);

  /* Second-order forward jets of the logits along a curve (y, dy, ddy:
   * batch * num_classes each). */
  int (*forward_jet)(ae_exec_net *n, const double *x, const double *dx,
                     const double *ddx, int batch, double *y, double *dy,
                     double *ddy);

  /* The host network behind n (gpu/host/net.h), or NULL for a device
   * executor (then the metrics the host computes for every backend,
   * ranking.md's, run on a host net of their own).  NULL entry: none. */
  struct ae_net *(*host_net)(ae_exec_net *n);
} ae_executor;

/* The host executor (the reference). */
extern const ae_executor ae_host_executor;

/* The CUDA executor, or NULL in a build without CUDA (the build links
 * gpu/cuda/cuda_executor.c or gpu/cuda_absent.c). */
const ae_executor *ae_cuda_executor(void);

/* Number of CUDA devices usable by this build (0 without CUDA). */
int ae_cuda_device_count(void);

#endif
