/* group.h: a job's shared state and the table of metric groups.
 *
 * The engine (gpu/engine.c) runs one job as a pipeline: it draws the batch
 * (gpu/batch.h), then runs each requested metric group of the table below
 * in order.  A group is one file of gpu/groups/ with one entry point,
 * `run`, that reads the job's shared state and fills its part of the
 * scorecard.  What several groups need (the lowered network on the
 * executor, the empirical NTK, the analytic kernels, the path statistics)
 * is computed once per job, lazily, by whichever group asks first
 * (gpu/groups/job.c), and freed with the job.
 *
 * To add a group: write gpu/groups/NAME.c with an ae_metric_group, list it
 * in ae_metric_groups (gpu/groups/table.c), give it a scorecard part and
 * its metrics in the catalog (api/metric_set.c); engine.c does not
 * change.  A job carries the set of metrics asked for (the request's
 * profile and "metrics"); a group computes a metric family only when
 * ae_job_wants says it is asked for.
 *
 * Everything here is owned by the worker thread running the job. */
#ifndef AE_GROUP_H
#define AE_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "api/error.h"
#include "api/metric_set.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "gpu/analytic/analytic.h"
#include "gpu/batch.h"
#include "gpu/dataset.h"
#include "gpu/executor.h"
#include "gpu/job_control.h"

/* Most metric groups the table may hold. */
#define AE_MAX_GROUPS 16
/* Longest list of path depths kept (topology.path_depths). */
#define AE_MAX_PATH_LIST 100000

typedef struct {
  /* What the job is (borrowed, read-only). */
  const ae_request *req;
  const ae_dataset *ds; /* the named dataset; NULL for synthetic, inline */
  const ae_job_control *ctl;
  const ae_executor *exec;
  ae_exec_device *device;

  /* The result being filled. */
  ae_scorecard *sc;

  /* The metrics asked for (api/metric_set.h) and the groups that have
   * one, in table order (filled by ae_job_select_metrics before any group
   * runs). */
  ae_metric_set selected;
  const struct ae_metric_group *requested[AE_MAX_GROUPS];
  size_t n_requested;

  /* The batch, drawn before any group runs; its K(0) on first use. */
  ae_batch batch;

  /* Shared intermediates, computed on first use (job.c). */
  ae_paths paths;
  int have_paths;
  ae_exec_net *net;        /* the full network, for batches of N (or more) */
  double *theta;           /* N x N empirical NTK of weights stream 0 */
  int kernels_state;       /* 0 not yet, 1 computed, AE_EUNSUPPORTED none */
  double *nngp;            /* N x N analytic NNGP kernel */
  double *ntk_an;          /* N x N analytic NTK (without the NNGP term) */
  struct ae_net *host_net; /* ae_job_host_net: borrowed from net, or owned */
  int host_net_owned;
  float *gauss; /* N Gaussian inputs (ae_job_gauss_inputs) */
  /* What ae_job_host_weights / ae_job_host_forward last left in the host
   * net, as the net's versions then (ae_net_versions): valid while they
   * are still the net's. */
  int host_drawn;                     /* 1: weights stream 0 were drawn */
  unsigned long host_weights_version; /* ... and the net's version then */
  int host_fwd_input;                 /* ae_job_input of that forward, 0 */
  unsigned long host_acts_version;    /* the net's acts version after it */
} ae_job_state;

typedef struct ae_metric_group {
  const char *name; /* "topology": also the scorecard key */
  unsigned bit;     /* its AE_GROUP_* bit; its metrics are the catalog's
                       entries with that bit (api/metric_set.h) */
  /* Where its wall time goes: offsetof(ae_scorecard, provenance.t_...). */
  size_t timing_offset;
  /* Fills the group's part of job->sc.  0, or a code with err saying why
   * where there is something to say (the engine supplies a generic
   * reason otherwise).  A metric it cannot compute is left NaN with a
   * scorecard warning, never an error. */
  int (*run)(ae_job_state *job, ae_error *err);
} ae_metric_group;

/* The groups, in the order they run. */
extern const ae_metric_group *const ae_metric_groups[];
extern const size_t ae_n_metric_groups;

/* The groups (gpu/groups/<name>.c). */
extern const ae_metric_group ae_group_topology;
extern const ae_metric_group ae_group_expressivity;
extern const ae_metric_group ae_group_convergence;
extern const ae_metric_group ae_group_generalization;
extern const ae_metric_group ae_group_proxies;

/* Fills job->selected from the request (req->selected; a request built
 * without one selects every metric of its groups) and job->requested. */
void ae_job_select_metrics(ae_job_state *job);

/* 1 when the job asks for metric id (or another of its family). */
int ae_job_wants(const ae_job_state *job, ae_metric_id id);

/* ---- shared intermediates (gpu/groups/job.c) ----
 * Each computes its value on the first call and returns the cached one
 * after; 0 or an error code (err filled where there is a reason). */

/* K(0) of the batch (job->batch.k0). */
int ae_job_input_kernel(ae_job_state *job, ae_error *err);

/* Path statistics of the cell DAG (nb201, mlp_dag) or of the graph. */
int ae_job_paths(ae_job_state *job, ae_error *err);

/* The full network on the job's executor (job->net), planned for batches
 * of N (and of the curvature points when the executor's jets need it). */
int ae_job_net(ae_job_state *job, ae_error *err);

/* Empirical NTK of weights stream `stream` into theta (N x N). */
int ae_job_empirical_ntk(ae_job_state *job, uint32_t stream, double *theta,
                         ae_error *err);

/* The repeat-0 empirical NTK, kept in job->theta. */
int ae_job_theta(ae_job_state *job, ae_error *err);

/* The analytic NNGP and NTK kernels of the batch (job->nngp, job->ntk_an).
 * AE_EUNSUPPORTED (remembered) when the architecture has none: a graph
 * with ops outside the dense set. */
int ae_job_analytic_kernels(ae_job_state *job, ae_error *err);

/* The full network as a host net (gpu/host/net.h), planned for batches of
 * N, for the metrics the host computes whatever the backend (ranking.md
 * §1-4): the executor's own net when it is the host, else one made for
 * the job.  Its weights are whatever the last user drew: draw them
 * (ae_net_init_weights) before use.  0 or an error. */
int ae_job_host_net(ae_job_state *job, struct ae_net **out, ae_error *err);

/* The host net (ae_job_host_net) in float32 with the weights of stream 0
 * of settings.init (ranking.md §0), drawn only when the net's weights
 * are not already those (ae_net_versions: nothing wrote them since this
 * job drew them).  0 or an error. */
int ae_job_host_weights(ae_job_state *job, struct ae_net **out, ae_error *err);

/* The inputs of a shared forward: the batch's samples, or the Gaussian
 * inputs of ae_job_gauss_inputs. */
typedef enum { AE_JOB_INPUT_BATCH = 1, AE_JOB_INPUT_GAUSS = 2 } ae_job_input;

/* ae_job_host_weights, then the float32 train-mode forward of the N
 * samples of `input` into the net's buffers, run only when they do not
 * already hold exactly that (ranking.md's metrics on the same network,
 * inputs and BN mode share one forward: feature_isotropy and
 * jacobian_trainability).  Read the activations before anything else
 * runs the net.  0 or an error. */
int ae_job_host_forward(ae_job_state *job, ae_job_input input,
                        struct ae_net **out, ae_error *err);

/* N Gaussian inputs of the input shape (ranking.md §1, feature_isotropy
 * and jacobian_trainability): N(0,1) from (seed, AE_TID_GAUSS_INPUTS, 0,
 * element), fed to the net as they are.  Kept in job->gauss.  0 or
 * AE_ENOMEM. */
int ae_job_gauss_inputs(ae_job_state *job, const float **out, ae_error *err);

/* convergence.jacobian_trainability (ranking.md §2) into job->sc, when
 * the job asks for it (trainability.c); NaN with a warning when it
 * cannot be computed.  0 or an error. */
int ae_job_jacobian_trainability(ae_job_state *job, ae_error *err);

/* Frees every intermediate and the batch. */
void ae_job_state_free(ae_job_state *job);

#endif
