/* workers.c: archevald's worker threads and the events they send the loop.
 *
 * Design.  One thread per engine: it opens and warms up its engine, then
 * pops jobs from the queue (queue.c), scores each into the job's w_*
 * fields and posts the job's embedded done event.  Events go to a list
 * under event_mu and wake the loop through one uv_async_t; the loop takes
 * the whole list on every wake-up and hands job events to the state
 * machine (job_state.c), keeping the workers' own bookkeeping (ready,
 * failed, busy, compute time) here.  A device error takes the worker out
 * of service.
 *
 * Threads: a worker thread writes only its w_* fields, its atomics and the
 * job it holds; everything else of an ae_worker is the loop's. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/status.h"
#include "server/daemon.h"
#include "server/job_state.h"
#include "server/util.h"
#include "server/workers.h"

/* ---- on the worker threads ---- */

static void post_event(ae_server *srv, ae_event *ev) {
  pthread_mutex_lock(&srv->event_mu);
  ev->next = NULL;
  if (srv->ev_tail)
    srv->ev_tail->next = ev;
  else
    srv->ev_head = ev;
  srv->ev_tail = ev;
  pthread_mutex_unlock(&srv->event_mu);
  uv_async_send(&srv->async);
}

static void worker_fail(ae_worker *w, const char *what, int rc,
                        const ae_problem *p) {
  snprintf(w->w_error, sizeof w->w_error, "%s: %s%s%s", what, ae_strerror(rc),
           p && p->detail ? ": " : "", p && p->detail ? p->detail : "");
  w->ev_failed.kind = AE_EV_FAILED;
  w->ev_failed.worker = w->index;
  post_event(w->srv, &w->ev_failed);
}

/* Opens and warms up the worker's engine, falling back from CUDA to the
 * host where --backend auto allows; posts EV_OPENED (and EV_FAILED).
 * The engine, or NULL when the worker cannot serve. */
static ae_engine *engine_start(ae_worker *w) {
  ae_server *srv = w->srv;
  ae_engine *engine = NULL;
  ae_problem p = AE_PROBLEM_INIT;
  ae_error err = AE_ERROR_INIT;
  int rc = ae_engine_open(&w->cfg, &engine, &err);
  if (rc != AE_OK && w->allow_fallback) {
    ae_log(AE_LOG_WARN, "worker %d: cuda:%d did not open (%s), using host",
           w->index, w->cfg.device, err.reason ? err.reason : ae_strerror(rc));
    ae_error_clear(&err);
    w->cfg.backend = AE_BACKEND_HOST;
    rc = ae_engine_open(&w->cfg, &engine, &err);
  }
  if (rc != AE_OK) {
    ae_problem_from_error(&err, &p);
    ae_error_clear(&err);
    worker_fail(w, "engine open", rc, &p);
    ae_problem_clear(&p);
    return NULL;
  }
  rc = ae_engine_warmup(engine, &srv->registry, &err);
  if (rc != AE_OK && w->allow_fallback && w->cfg.backend == AE_BACKEND_CUDA) {
    /* With --backend auto a device that fails its warm-up (including the
     * parity check against the host reference) is replaced by the host. */
    ae_log(AE_LOG_WARN,
           "worker %d: cuda:%d failed its warm-up (%s), using "
           "host",
           w->index, w->cfg.device, err.reason ? err.reason : ae_strerror(rc));
    ae_error_clear(&err);
    ae_engine_close(engine);
    engine = NULL;
    w->cfg.backend = AE_BACKEND_HOST;
    rc = ae_engine_open(&w->cfg, &engine, &err);
    if (rc != AE_OK) {
      ae_problem_from_error(&err, &p);
      ae_error_clear(&err);
      worker_fail(w, "engine open", rc, &p);
      ae_problem_clear(&p);
      return NULL;
    }
    rc = ae_engine_warmup(engine, &srv->registry, &err);
  }
  if (rc != AE_OK)
    ae_log(AE_LOG_ERROR, "worker %d: warm-up: %s", w->index,
           err.reason ? err.reason : ae_strerror(rc));
  ae_error_clear(&err);
  /* The engine in service is settled now: tell the loop its name (it is
   * not written again, so the loop may read it without a lock). */
  snprintf(w->w_name, sizeof w->w_name, "%s", ae_engine_name(engine));
  atomic_store(&w->memory_used, ae_engine_memory_used(engine));
  w->ev_opened.kind = AE_EV_OPENED;
  w->ev_opened.worker = w->index;
  post_event(srv, &w->ev_opened);
  if (rc != AE_OK) {
    worker_fail(w, "warm-up", rc, NULL);
    ae_engine_close(engine);
    return NULL;
  }
  return engine;
}

static void *worker_main(void *arg) {
  ae_worker *w = arg;
  ae_server *srv = w->srv;
  /* Scoring yields the CPU to the loop thread and the HTTP work
   * (--worker-nice, --worker-sched; util.h). */
  if (ae_thread_set_nice(srv->opt->worker_nice))
    ae_log(AE_LOG_DEBUG, "worker %d: setpriority: %s", w->index,
           strerror(errno));
  if (srv->opt->worker_sched != AE_WORKER_SCHED_OTHER &&
      ae_thread_set_background(srv->opt->worker_sched == AE_WORKER_SCHED_BATCH))
    ae_log(AE_LOG_WARN, "worker %d: sched_setscheduler: %s", w->index,
           strerror(errno));
  ae_engine *engine = engine_start(w);
  if (!engine) return NULL;
  w->ev_ready.kind = AE_EV_READY;
  w->ev_ready.worker = w->index;
  post_event(srv, &w->ev_ready);

  /* Buffers are kept from job to job (the jobs' memory budget does not
   * count them): while jobs wait, and for --worker-keep-ms after the last
   * one, so that a controller that submits its next architecture once the
   * last is scored finds them (arenas of hundreds of MiB otherwise mapped
   * and faulted in again, the Rademacher signs drawn again).  A worker
   * idle for longer gives them back. */
  long long keep_ns = srv->opt->worker_keep_ms * 1000000LL;
  int holding = 1; /* buffers kept since the last job (or the warm-up) */
  for (;;) {
    ae_queue_entry *entry;
    if (holding && keep_ns > 0) {
      int timed_out = 0;
      entry = ae_queue_pop_wait_until(&srv->queue, ae_mono_ns() + keep_ns,
                                      &timed_out);
      if (timed_out) {
        ae_engine_idle(engine);
        holding = 0;
        continue;
      }
    } else {
      if (holding && ae_queue_empty(&srv->queue)) {
        ae_engine_idle(engine);
        holding = 0;
      }
      entry = ae_queue_pop_wait(&srv->queue);
    }
    if (!entry) break;
    holding = 1;
    ae_job *job = AE_JOB_OF_ENTRY(entry);
    job->w_started_ms = ae_now_ms();
    job->w_start_ns = ae_mono_ns();
    job->ev_started.kind = AE_EV_STARTED;
    job->ev_started.worker = w->index;
    job->ev_started.job = job;
    post_event(srv, &job->ev_started);

    ae_job_control ctl = {&job->cancel, entry->deadline_ns};
    ae_error err = AE_ERROR_INIT;
    /* A queued job holds its inline inputs once, as its request's text:
     * they are read back as float32 for the time of the run. */
    ae_request run;
    float *inputs = NULL;
    int rc = ae_job_run_request(job, &run, &inputs);
    if (rc != AE_OK)
      ae_error_set(&err, rc, "/data/inputs",
                   "the inline inputs could not be read back from the "
                   "job's request text");
    else if (!(job->w_card = malloc(sizeof *job->w_card)))
      rc = AE_ENOMEM;
    else {
      ae_scorecard_init(job->w_card);
      rc = ae_engine_score(engine, &run, &srv->registry, &ctl, job->w_card,
                           &err);
    }
    free(inputs);
    if (rc != AE_OK) {
      /* The problem keeps no reason for these: log it here. */
      if (rc == AE_EINTERNAL || rc == AE_EIO)
        ae_log(AE_LOG_ERROR, "job %s: %s", job->id,
               err.reason ? err.reason : ae_strerror(rc));
      ae_problem_from_error(&err, &job->w_problem);
    }
    ae_error_clear(&err);
    job->w_rc = rc;
    job->w_end_ns = ae_mono_ns();
    atomic_store(&w->memory_used, ae_engine_memory_used(engine));
    job->ev_done.kind = AE_EV_DONE;
    job->ev_done.worker = w->index;
    job->ev_done.job = job;
    post_event(srv, &job->ev_done); /* the job is the loop's again */
    if (rc == AE_EDEVICE) {
      worker_fail(w, "device", rc, NULL);
      break;
    }
  }
  ae_engine_close(engine);
  return NULL;
}

/* ---- on the loop ---- */

static void on_job_done(ae_server *srv, ae_worker *w, ae_job *job) {
  w->busy = 0;
  double seconds = (double)(job->w_end_ns - job->w_start_ns) / 1e9;
  ae_histogram_observe(&srv->metrics.compute_seconds[w->index], seconds);
  if (job->w_rc == AE_EDEVICE)
    ae_log(AE_LOG_ERROR, "job %s: device error on %s: %s", job->id, w->name,
           job->w_problem.detail ? job->w_problem.detail : "");
  ae_job_done(srv, job);
}

static void on_async(uv_async_t *handle) {
  ae_server *srv = handle->data;
  pthread_mutex_lock(&srv->event_mu);
  ae_event *ev = srv->ev_head;
  srv->ev_head = srv->ev_tail = NULL;
  pthread_mutex_unlock(&srv->event_mu);
  while (ev) {
    ae_event *next = ev->next;
    ae_worker *w = &srv->workers[ev->worker];
    switch (ev->kind) {
    case AE_EV_OPENED:
      snprintf(w->name, sizeof w->name, "%s", w->w_name);
      if (w->cfg.backend == AE_BACKEND_HOST && strncmp(w->device, "cpu", 3))
        snprintf(w->device, sizeof w->device, "cpu (fallback)");
      ae_log(AE_LOG_INFO, "worker %s opened and warmed up", w->name);
      break;
    case AE_EV_READY:
      w->ready = 1;
      ae_log(AE_LOG_INFO, "worker %s ready", w->name);
      break;
    case AE_EV_FAILED:
      w->failed = 1;
      ae_log(AE_LOG_ERROR, "worker %s left service: %s", w->name, w->w_error);
      break;
    case AE_EV_STARTED:
      w->busy = 1;
      ae_job_started(srv, ev->job, w->name);
      break;
    case AE_EV_DONE:
      on_job_done(srv, w, ev->job);
      break;
    }
    ev = next;
  }
}

/* ---- planning, start and stop ---- */

/* The CUDA devices --gpus names, into devices; their count, or -1. */
static int plan_devices(const ae_options *o, int n_gpu, int devices[256]) {
  int n_devices = 0;
  if (!strcmp(o->gpus, "all")) {
    for (int d = 0; d < n_gpu && d < 256; d++)
      devices[n_devices++] = d;
    return n_devices;
  }
  const char *s = o->gpus;
  while (*s && n_devices < 256) {
    char *end;
    long d = strtol(s, &end, 10);
    if (end == s || d < 0 || d >= n_gpu) {
      ae_log(AE_LOG_ERROR, "--gpus %s: devices are 0 to %d", o->gpus,
             n_gpu - 1);
      return -1;
    }
    devices[n_devices++] = (int)d;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') {
      ae_log(AE_LOG_ERROR, "--gpus %s: a comma-separated list", o->gpus);
      return -1;
    }
  }
  return n_devices;
}

int ae_workers_plan(ae_server *srv) {
  const ae_options *o = srv->opt;
  int n_gpu = 0;
  int use_cuda = 0;
  if (o->backend != AE_BACKEND_ONLY_HOST) {
    n_gpu = ae_cuda_device_count();
    use_cuda = n_gpu > 0;
    if (!use_cuda && o->backend == AE_BACKEND_ONLY_CUDA) {
      ae_log(AE_LOG_ERROR, "--backend cuda: no usable CUDA device in this "
                           "build or machine");
      return AE_EUNSUPPORTED;
    }
  }
  int devices[256];
  int n_devices = 0;
  if (use_cuda) {
    n_devices = plan_devices(o, n_gpu, devices);
    if (n_devices < 0) return AE_EINVAL;
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  int host = o->host_workers >= 0 ? o->host_workers
             : n_devices > 0      ? 1
                                  : (int)cores;
  size_t n = (size_t)n_devices * (size_t)o->workers_per_gpu + (size_t)host;
  srv->workers = calloc(n ? n : 1, sizeof *srv->workers);
  if (!srv->workers) return AE_ENOMEM;
  srv->n_workers = n;
  size_t k = 0;
  for (int d = 0; d < n_devices; d++)
    for (int i = 0; i < o->workers_per_gpu; i++, k++) {
      ae_worker *w = &srv->workers[k];
      w->cfg = (ae_engine_config){AE_BACKEND_CUDA, devices[d], (int)k};
      w->allow_fallback = o->backend == AE_BACKEND_AUTO;
      snprintf(w->name, sizeof w->name, "cuda:%d", devices[d]);
      snprintf(w->device, sizeof w->device, "cuda device %d", devices[d]);
    }
  for (int i = 0; i < host; i++, k++) {
    ae_worker *w = &srv->workers[k];
    w->cfg = (ae_engine_config){AE_BACKEND_HOST, 0, i};
    snprintf(w->name, sizeof w->name, "host:%d", i);
    snprintf(w->device, sizeof w->device, "cpu (%ld cores)", cores);
  }
  for (size_t i = 0; i < n; i++) {
    srv->workers[i].srv = srv;
    srv->workers[i].index = (int)i;
    atomic_init(&srv->workers[i].memory_used, 0);
  }
  if (n == 0) ae_log(AE_LOG_WARN, "no workers: jobs will wait in the queue");
  ae_log(AE_LOG_INFO,
         "%d cuda device(s), %zu workers (%d host, one BLAS thread "
         "each)",
         n_devices, n, host);
  return AE_OK;
}

int ae_workers_init(ae_server *srv) {
  if (pthread_mutex_init(&srv->event_mu, NULL)) return AE_EINTERNAL;
  if (uv_async_init(srv->loop, &srv->async, on_async)) {
    pthread_mutex_destroy(&srv->event_mu);
    return AE_EINTERNAL;
  }
  srv->async.data = srv;
  srv->events_open = 1;
  return AE_OK;
}

int ae_workers_start(ae_server *srv) {
  for (size_t i = 0; i < srv->n_workers; i++) {
    ae_worker *w = &srv->workers[i];
    int err = pthread_create(&w->thread, NULL, worker_main, w);
    if (err) {
      ae_log(AE_LOG_ERROR, "worker %zu: pthread_create: %s", i, strerror(err));
      return AE_EINTERNAL;
    }
    w->thread_started = 1;
  }
  return AE_OK;
}

void ae_workers_stop(ae_server *srv) {
  if (!srv->events_open) return; /* a start that failed before */
  ae_queue_stop(&srv->queue);
  for (size_t i = 0; i < srv->n_workers; i++) {
    if (srv->workers[i].thread_started) {
      pthread_join(srv->workers[i].thread, NULL);
      srv->workers[i].thread_started = 0;
    }
  }
  uv_handle_t *h = (uv_handle_t *)&srv->async;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void ae_workers_free(ae_server *srv) {
  free(srv->workers);
  srv->workers = NULL;
  srv->n_workers = 0;
  if (srv->events_open) pthread_mutex_destroy(&srv->event_mu);
  srv->events_open = 0;
}

int ae_workers_all_ready(const ae_server *srv) {
  if (srv->n_workers == 0) return 0;
  for (size_t i = 0; i < srv->n_workers; i++)
    if (!srv->workers[i].ready || srv->workers[i].failed) return 0;
  return 1;
}

void ae_workers_gauges(const ae_server *srv, ae_metrics_worker *out) {
  for (size_t i = 0; i < srv->n_workers; i++) {
    const ae_worker *w = &srv->workers[i];
    out[i] =
        (ae_metrics_worker){w->name, w->busy, w->ready && !w->failed,
                            (unsigned long long)atomic_load(&w->memory_used)};
  }
}
