/* engine.c: the scoring engine's lifetime and its pipeline.  An engine
 * holds one executor (gpu/executor.h: the host's, or the CUDA one chosen
 * at open) and its device.  Scoring a job draws the batch (gpu/batch.h),
 * then runs each requested metric group of the table in gpu/groups/
 * with a checkpoint between groups, and reports failures as an ae_error.
 * Warm-up and the device parity gate live in gpu/warmup.c.
 *
 * An ae_engine belongs to one worker thread for its whole life; everything
 * a job allocates lives in an ae_job_state on that thread's stack and is
 * freed before ae_engine_score returns.  The dataset registry is only
 * read. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/onnx_nb201.h"
#include "api/status.h"
#include "gpu/engine.h"
#include "gpu/executor.h"
#include "gpu/groups/group.h"
#include "gpu/host/net.h"
#include "gpu/plan.h"

/* OpenBLAS's thread control (declared by its cblas.h, not by every one). */
extern void openblas_set_num_threads(int num_threads);

/* The BLAS thread count every engine computes with: results must not
 * depend on the process (engine.h, ae_engine_open). */
#define AE_ENGINE_BLAS_THREADS 1

struct ae_engine {
  ae_engine_config cfg;
  char name[32];
  const ae_executor *exec;
  ae_exec_device *device;
};

static long long monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double seconds_since(long long t0) {
  return (double)(monotonic_ns() - t0) * 1e-9;
}

double ae_engine_default_job_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 8.0 * 1024 * 1024 * 1024;
  return 0.5 * (double)pages * (double)page;
}

int ae_engine_estimate(const ae_request *req, ae_plan_job_bytes *out) {
  return ae_plan_job(req, out);
}

/* One arithmetic path whatever the process (see engine.h): set at open
 * and again before every job, in case the program changed it.  The
 * setting is process-wide; every engine sets the same value. */
static void fix_arithmetic(void) {
  openblas_set_num_threads(AE_ENGINE_BLAS_THREADS);
}

/* ---- engine lifetime ---- */

int ae_engine_open(const ae_engine_config *cfg, ae_engine **out,
                   ae_error *err) {
  *out = NULL;
  const ae_executor *exec = &ae_host_executor;
  if (cfg->backend == AE_BACKEND_CUDA) {
    exec = ae_cuda_executor();
    if (!exec)
      return ae_error_set(err, AE_EUNSUPPORTED, NULL,
                          "the CUDA backend is not available in this build "
                          "(cuda:%d requested); use the host backend",
                          cfg->device);
  }
  ae_engine *e = calloc(1, sizeof *e);
  if (!e)
    return ae_error_set(err, AE_ENOMEM, NULL,
                        "out of memory opening the engine");
  e->cfg = *cfg;
  e->exec = exec;
  int rc = exec->device_open(cfg->device, &e->device, err);
  if (rc) {
    free(e);
    return rc;
  }
  snprintf(e->name, sizeof e->name, "%s:%d", exec->kind,
           cfg->backend == AE_BACKEND_CUDA ? cfg->device : cfg->index);
  fix_arithmetic();
  *out = e;
  return AE_OK;
}

const char *ae_engine_name(const ae_engine *e) {
  return e->name;
}

ae_backend_kind ae_engine_backend(const ae_engine *e) {
  return e->cfg.backend;
}

size_t ae_engine_memory_used(const ae_engine *e) {
  return e->exec->device_memory_used(e->device);
}

void ae_engine_idle(ae_engine *e) {
  (void)e;
  ae_net_release_spare();
  ae_rademacher_release();
}

void ae_engine_close(ae_engine *e) {
  if (!e) return;
  e->exec->device_close(e->device);
  free(e);
  /* The host nets' spare arena of this thread (gpu/host/net.c), kept from
   * job to job, and its kept Rademacher signs (net_signs.c): an engine is
   * closed on the thread that ran its jobs. */
  ae_net_release_spare();
  ae_rademacher_release();
}

/* ---- one job ---- */

/* The reason to give when the code came without one. */
static void explain(int rc, ae_error *err) {
  if (err->code == rc && (err->reason || err->pointer)) return;
  switch (rc) {
  case AE_ECANCELLED:
    ae_error_set(err, rc, NULL, "the job was cancelled while running");
    break;
  case AE_EDEADLINE:
    ae_error_set(err, rc, NULL, "the job ran past its timeout_ms");
    break;
  case AE_ENOMEM:
    ae_error_set(err, rc, NULL,
                 "the job needs more memory than this worker has");
    break;
  case AE_EINVAL:
    ae_error_set(err, rc, NULL, "the engine cannot run this request");
    break;
  case AE_EDEVICE:
    ae_error_set(err, rc, NULL, "the device failed; the worker leaves service");
    break;
  default:
    ae_error_set(err, rc, NULL, "the engine failed (%s)", ae_strerror(rc));
    break;
  }
}

/* Provenance known before any group runs. */
static void provenance_start(const ae_engine *e, const ae_request *req,
                             ae_scorecard *sc) {
  snprintf(sc->provenance.backend, sizeof sc->provenance.backend, "%s",
           e->cfg.backend == AE_BACKEND_CUDA ? e->name : "host");
  /* An uploaded model's import warnings (a BN folded into the convs). */
  for (size_t i = 0; i < json_array_size(req->model_warnings); i++) {
    const char *w = json_string_value(json_array_get(req->model_warnings, i));
    if (w) ae_scorecard_warn(sc, "architecture.model: %s", w);
  }
  int host_only = ae_plan_first_host_only_node(&req->net);
  if (e->cfg.backend == AE_BACKEND_CUDA && host_only >= 0) {
    /* The CUDA executor runs such a graph on a host net of its own. */
    snprintf(sc->provenance.backend, sizeof sc->provenance.backend, "host");
    ae_scorecard_warn(sc,
                      "the CUDA executor has no kernels for op \"%s\" "
                      "(node %d): this job ran on the host executor",
                      ae_op_name((int)req->net.nodes[host_only].op), host_only);
  }
  char note[768];
  if (ae_onnx_nb201_note(&req->arch, note, sizeof note))
    ae_scorecard_warn(sc, "%s", note);
  sc->provenance.seed = req->seed;
  snprintf(sc->provenance.dataset, sizeof sc->provenance.dataset, "%s",
           req->data.dataset ? req->data.dataset : "synthetic");
  sc->provenance.batch_size = req->data.batch_size;
  sc->provenance.analytic_exact = -1;
}

/* Runs every group with a requested metric, in table order, timing each. */
static int run_groups(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  for (size_t g = 0; g < job->n_requested; g++) {
    const ae_metric_group *grp = job->requested[g];
    int rc = ae_job_checkpoint(job->ctl);
    if (rc) return rc;
    long long t0 = monotonic_ns();
    sc->groups |= grp->bit;
    rc = grp->run(job, err);
    if (rc) return rc;
    *(double *)((char *)sc + grp->timing_offset) = seconds_since(t0);
  }
  return AE_OK;
}

int ae_engine_score(ae_engine *e, const ae_request *req,
                    const ae_dataset_registry *reg, const ae_job_control *ctl,
                    ae_scorecard *out, ae_error *err) {
  long long t_start = monotonic_ns();
  ae_scorecard_init(out);
  ae_error_clear(err);
  ae_job_state job;
  memset(&job, 0, sizeof job);
  job.req = req;
  job.ctl = ctl;
  job.exec = e->exec;
  job.device = e->device;
  job.sc = out;
  fix_arithmetic();
  provenance_start(e, req, out);
  int rc = AE_OK;
  const char *dsname = req->data.dataset ? req->data.dataset : "synthetic";
  if (!req->data.inputs && strcmp(dsname, "synthetic")) {
    job.ds = ae_dataset_find(reg, dsname);
    if (!job.ds) {
      rc = ae_error_set(err, AE_EINVAL, "/data/dataset", "unknown dataset '%s'",
                        dsname);
      goto done;
    }
  }
  if (req->data.batch_size < 1) {
    rc = ae_error_set(err, AE_EINVAL, "/data/batch_size", "the batch is empty");
    goto done;
  }
  ae_job_select_metrics(&job);
  out->selected = job.selected;
  rc = ae_job_checkpoint(ctl);
  if (!rc) rc = ae_batch_draw(req, job.ds, &job.batch, err);
  if (!rc) rc = run_groups(&job, err);
  if (!rc) out->provenance.t_total = seconds_since(t_start);
done:
  ae_job_state_free(&job);
  if (rc) {
    ae_scorecard_free(out);
    ae_scorecard_init(out);
    explain(rc, err);
    return rc;
  }
  return AE_OK;
}
