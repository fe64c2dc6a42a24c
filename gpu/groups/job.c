/* job.c: a job's shared intermediates, each computed once, on first use,
 * by whichever metric group needs it (see group.h), and the set of
 * requested metrics.
 *
 * Everything belongs to the worker thread running the job and is freed by
 * ae_job_state_free before ae_engine_score returns. */
#include "gpu/groups/group.h"

#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"

int ae_job_wants(const ae_job_state *job, ae_metric_id id) {
  return ae_metric_set_has(job->selected, id);
}

int ae_job_input_kernel(ae_job_state *job, ae_error *err) {
  (void)err;
  return ae_batch_input_kernel(&job->batch, job->ctl);
}

int ae_job_paths(ae_job_state *job, ae_error *err) {
  (void)err;
  if (job->have_paths) return AE_OK;
  const ae_request *r = job->req;
  int rc = !ae_arch_has_dag(r->arch.type)
               ? ae_graph_paths(&r->net, AE_MAX_PATH_LIST, &job->paths)
               : ae_dag_paths(&r->arch.dag, AE_MAX_PATH_LIST, &job->paths);
  if (rc) return rc;
  job->have_paths = 1;
  return AE_OK;
}

int ae_job_net(ae_job_state *job, ae_error *err) {
  (void)err;
  if (job->net) return AE_OK;
  int batch = job->batch.n;
  /* An executor that plans its jet buffers at creation needs room for
   * the curvature's points too. */
  if (job->exec->jets_within_max_batch && ae_job_wants(job, AE_M_CURVATURE) &&
      job->req->settings.curv_points > batch)
    batch = job->req->settings.curv_points;
  return job->exec->net_create(job->device, &job->req->net, batch, &job->net);
}

int ae_job_empirical_ntk(ae_job_state *job, uint32_t stream, double *theta,
                         ae_error *err) {
  int rc = ae_job_net(job, err);
  if (rc) return rc;
  rc = job->exec->init_weights(job->net, job->req->seed, stream);
  if (rc) return rc;
  return job->exec->ntk(job->net, job->batch.x_net, job->batch.n,
                        job->req->settings.ntk_parameterization, theta,
                        job->ctl);
}

int ae_job_theta(ae_job_state *job, ae_error *err) {
  if (job->theta) return AE_OK;
  size_t nn = (size_t)job->batch.n * job->batch.n;
  job->theta = malloc(nn * sizeof *job->theta);
  if (!job->theta) return AE_ENOMEM;
  int rc = ae_job_empirical_ntk(job, 0, job->theta, err);
  if (rc) {
    free(job->theta);
    job->theta = NULL;
  }
  return rc;
}

int ae_job_analytic_kernels(ae_job_state *job, ae_error *err) {
  (void)err;
  if (job->kernels_state == 1) return AE_OK;
  if (job->kernels_state) return job->kernels_state;
  const ae_request *r = job->req;
  int n = job->batch.n;
  size_t nn = (size_t)n * n;
  int rc = ae_job_input_kernel(job, err);
  if (rc) return rc;
  double *k = malloc(nn * sizeof *k), *t = malloc(nn * sizeof *t);
  if (!k || !t) {
    free(k);
    free(t);
    return AE_ENOMEM;
  }
  rc = !ae_arch_has_dag(r->arch.type)
           ? ae_graph_kernels(&r->net, job->batch.k0, n, 1, k, t, job->ctl)
           : ae_dag_kernels(&r->arch.dag, job->batch.k0, n, 1, k, t, job->ctl);
  if (rc) {
    free(k);
    free(t);
    if (rc == AE_EUNSUPPORTED) job->kernels_state = rc;
    return rc;
  }
  job->nngp = k;
  job->ntk_an = t;
  job->kernels_state = 1;
  return AE_OK;
}

int ae_job_host_net(ae_job_state *job, struct ae_net **out, ae_error *err) {
  if (!job->host_net) {
    int rc = ae_job_net(job, err);
    if (rc) return rc;
    if (job->exec->host_net) job->host_net = job->exec->host_net(job->net);
    if (!job->host_net) {
      rc = ae_net_create(&job->req->net, job->batch.n, &job->host_net);
      if (rc) return rc;
      job->host_net_owned = 1;
    }
  }
  *out = job->host_net;
  return AE_OK;
}

int ae_job_gauss_inputs(ae_job_state *job, const float **out, ae_error *err) {
  (void)err;
  if (!job->gauss) {
    size_t count = (size_t)job->batch.n * (size_t)job->batch.dim;
    float *g = malloc(count * sizeof *g);
    if (!g) return AE_ENOMEM;
    ae_net_philox_normals_fill_f32(job->req->seed, AE_TID_GAUSS_INPUTS, 0, 0,
                                   count, g);
    job->gauss = g;
  }
  *out = job->gauss;
  return AE_OK;
}

int ae_job_host_weights(ae_job_state *job, ae_net **out, ae_error *err) {
  ae_net *net;
  int rc = ae_job_host_net(job, &net, err);
  if (!rc) rc = ae_net_set_double(net, 0);
  if (rc) return rc;
  unsigned long wv;
  ae_net_versions(net, &wv, NULL);
  if (!job->host_drawn || wv != job->host_weights_version) {
    ae_net_init_weights_scheme(net, job->req->seed, 0, job->req->settings.init);
    ae_net_versions(net, &job->host_weights_version, NULL);
    job->host_drawn = 1;
  }
  *out = net;
  return AE_OK;
}

int ae_job_host_forward(ae_job_state *job, ae_job_input input, ae_net **out,
                        ae_error *err) {
  ae_net *net;
  const float *x = job->batch.x_net;
  int rc = ae_job_host_weights(job, &net, err);
  if (!rc && input == AE_JOB_INPUT_GAUSS)
    rc = ae_job_gauss_inputs(job, &x, err);
  if (rc) return rc;
  unsigned long av;
  ae_net_versions(net, NULL, &av);
  if (job->host_fwd_input != (int)input || av != job->host_acts_version) {
    job->host_fwd_input = 0;
    rc = ae_net_forward(net, x, job->batch.n, NULL);
    if (rc) return rc;
    job->host_fwd_input = (int)input;
    ae_net_versions(net, NULL, &job->host_acts_version);
  }
  *out = net;
  return AE_OK;
}

void ae_job_state_free(ae_job_state *job) {
  ae_batch_free(&job->batch);
  if (job->have_paths) ae_paths_free(&job->paths);
  job->have_paths = 0;
  if (job->host_net_owned) ae_net_destroy(job->host_net);
  job->host_net = NULL;
  job->host_net_owned = 0;
  job->host_drawn = job->host_fwd_input = 0;
  free(job->gauss);
  job->gauss = NULL;
  if (job->net) job->exec->net_destroy(job->net);
  job->net = NULL;
  free(job->theta);
  free(job->nngp);
  free(job->ntk_an);
  job->theta = job->nngp = job->ntk_an = NULL;
  job->kernels_state = 0;
}
