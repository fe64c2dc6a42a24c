/* jobs.c: archevald's jobs: the table, the priority queue, the worker
 * threads, the completion events, deadlines, expiry, drain and the store.
 *
 * Design.  Every ae_job belongs to the loop thread, which creates it,
 * changes its state and frees it.  A queued job sits in a binary heap
 * ordered by (priority, seq) under queue_mu; a worker pops it (so
 * in_heap = 0 under the lock means a worker has it), reads its request
 * (immutable from then on), scores it into the job's w_* fields and posts
 * the job's embedded "done" event to the event list (event_mu) and wakes
 * the loop with one uv_async_t; the loop drains the whole list on every
 * wake-up.  The loop never frees a job a worker holds: only terminal jobs
 * are deleted, and a running job becomes terminal only through its done
 * event, after which the worker no longer touches it.  A cancel is an
 * atomic flag the engine reads at its checkpoints. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/status.h"
#include "server/daemon.h"

/* After the drain deadline, how long cancelled jobs get to reach a
 * checkpoint before the process leaves without them. */
#define AE_DRAIN_GRACE_MS 5000

/* ---- tables ---- */

static size_t hash_string(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return (size_t)(h ^ (h >> 29));
}

static int table_grow(ae_job ***buckets, size_t *n_buckets, int by_idem) {
  size_t n = *n_buckets ? *n_buckets * 2 : 1024;
  ae_job **fresh = calloc(n, sizeof *fresh);
  if (!fresh) return AE_ENOMEM;
  for (size_t i = 0; i < *n_buckets; i++) {
    ae_job *j = (*buckets)[i];
    while (j) {
      ae_job *next = by_idem ? j->idem_next : j->hash_next;
      size_t b = hash_string(by_idem ? j->idem_key : j->id) & (n - 1);
      if (by_idem) {
        j->idem_next = fresh[b];
      } else {
        j->hash_next = fresh[b];
      }
      fresh[b] = j;
      j = next;
    }
  }
  free(*buckets);
  *buckets = fresh;
  *n_buckets = n;
  return AE_OK;
}

ae_job *ae_job_find(ae_server *srv, const char *id) {
  if (!srv->n_buckets) return NULL;
  for (ae_job *j = srv->buckets[hash_string(id) & (srv->n_buckets - 1)]; j;
       j = j->hash_next)
    if (!strcmp(j->id, id)) return j;
  return NULL;
}

ae_job *ae_job_find_idem(ae_server *srv, const char *key) {
  if (!srv->n_idem_buckets) return NULL;
  size_t b = hash_string(key) & (srv->n_idem_buckets - 1);
  for (ae_job *j = srv->idem_buckets[b]; j; j = j->idem_next)
    if (!strcmp(j->idem_key, key)) return j;
  return NULL;
}

/* Links a job into the id table, the idempotency table and the seq list.
 * The tables were grown beforehand (table_reserve), so this cannot fail. */
static void job_link(ae_server *srv, ae_job *job) {
  size_t b = hash_string(job->id) & (srv->n_buckets - 1);
  job->hash_next = srv->buckets[b];
  srv->buckets[b] = job;
  srv->n_jobs++;
  if (job->idem_key) {
    b = hash_string(job->idem_key) & (srv->n_idem_buckets - 1);
    job->idem_next = srv->idem_buckets[b];
    srv->idem_buckets[b] = job;
    srv->n_idem++;
  }
  /* Keep the list sorted by seq (loads come in order; new jobs last). */
  ae_job *after = srv->last;
  while (after && after->seq > job->seq)
    after = after->prev;
  job->prev = after;
  job->next = after ? after->next : srv->first;
  if (job->next)
    job->next->prev = job;
  else
    srv->last = job;
  if (after)
    after->next = job;
  else
    srv->first = job;
}

static int table_reserve(ae_server *srv, size_t more) {
  while (srv->n_jobs + more > srv->n_buckets)
    if (table_grow(&srv->buckets, &srv->n_buckets, 0)) return AE_ENOMEM;
  while (srv->n_idem + more > srv->n_idem_buckets)
    if (table_grow(&srv->idem_buckets, &srv->n_idem_buckets, 1))
      return AE_ENOMEM;
  return AE_OK;
}

static void job_unlink(ae_server *srv, ae_job *job) {
  ae_job **pp = &srv->buckets[hash_string(job->id) & (srv->n_buckets - 1)];
  while (*pp && *pp != job)
    pp = &(*pp)->hash_next;
  if (*pp) {
    *pp = job->hash_next;
    srv->n_jobs--;
  }
  if (job->idem_key) {
    pp = &srv->idem_buckets[hash_string(job->idem_key) &
                            (srv->n_idem_buckets - 1)];
    while (*pp && *pp != job)
      pp = &(*pp)->idem_next;
    if (*pp) {
      *pp = job->idem_next;
      srv->n_idem--;
    }
  }
  if (job->prev)
    job->prev->next = job->next;
  else
    srv->first = job->next;
  if (job->next)
    job->next->prev = job->prev;
  else
    srv->last = job->prev;
  job->prev = job->next = NULL;
}

/* Finished jobs in expiry order (a FIFO, since the TTL is one constant;
 * loaded ones are placed by their stored expiry). */
static void fin_insert(ae_server *srv, ae_job *job) {
  ae_job *after = srv->fin_last;
  while (after && after->expires_ms > job->expires_ms)
    after = after->fin_prev;
  job->fin_prev = after;
  job->fin_next = after ? after->fin_next : srv->fin_first;
  if (job->fin_next)
    job->fin_next->fin_prev = job;
  else
    srv->fin_last = job;
  if (after)
    after->fin_next = job;
  else
    srv->fin_first = job;
}

static void fin_remove(ae_server *srv, ae_job *job) {
  if (job->fin_prev)
    job->fin_prev->fin_next = job->fin_next;
  else if (srv->fin_first == job)
    srv->fin_first = job->fin_next;
  else
    return; /* not in the list */
  if (job->fin_next)
    job->fin_next->fin_prev = job->fin_prev;
  else
    srv->fin_last = job->fin_prev;
  job->fin_prev = job->fin_next = NULL;
}

static void job_free(ae_job *job) {
  if (!job) return;
  if (job->has_req) ae_request_free(&job->req);
  json_decref(job->request_json);
  json_decref(job->result_json);
  json_decref(job->error_json);
  free(job->client_ref);
  free(job->idem_key);
  free(job->cached_body);
  free(job);
}

/* ---- the priority queue (caller holds queue_mu) ---- */

static int heap_less(const ae_job *a, const ae_job *b) {
  if (a->priority != b->priority) return a->priority < b->priority;
  return a->seq < b->seq;
}

static void heap_set(ae_server *srv, size_t i, ae_job *job) {
  srv->heap[i] = job;
  job->heap_pos = i;
}

static void heap_up(ae_server *srv, size_t i) {
  ae_job *job = srv->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_less(job, srv->heap[parent])) break;
    heap_set(srv, i, srv->heap[parent]);
    i = parent;
  }
  heap_set(srv, i, job);
}

static void heap_down(ae_server *srv, size_t i) {
  ae_job *job = srv->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= srv->heap_n) break;
    if (child + 1 < srv->heap_n &&
        heap_less(srv->heap[child + 1], srv->heap[child]))
      child++;
    if (!heap_less(srv->heap[child], job)) break;
    heap_set(srv, i, srv->heap[child]);
    i = child;
  }
  heap_set(srv, i, job);
}

static int heap_reserve(ae_server *srv, size_t more) {
  if (srv->heap_n + more <= srv->heap_cap) return AE_OK;
  size_t cap = srv->heap_cap ? srv->heap_cap : 256;
  while (cap < srv->heap_n + more)
    cap *= 2;
  ae_job **fresh = realloc(srv->heap, cap * sizeof *fresh);
  if (!fresh) return AE_ENOMEM;
  srv->heap = fresh;
  srv->heap_cap = cap;
  return AE_OK;
}

/* Queued jobs per priority (under queue_mu): a short array, since a
 * deployment uses few distinct priorities.  Lets queue_position answer for
 * the newest job without scanning the heap.  Best effort: when it cannot
 * grow, prio_valid drops to 0 and positions are counted by scanning. */
static void prio_count(ae_server *srv, int priority, long delta) {
  for (size_t i = 0; i < srv->n_prios; i++)
    if (srv->prios[i].priority == priority) {
      srv->prios[i].count += delta;
      return;
    }
  if (srv->n_prios == srv->cap_prios) {
    size_t cap = srv->cap_prios ? srv->cap_prios * 2 : 8;
    void *fresh = realloc(srv->prios, cap * sizeof *srv->prios);
    if (!fresh) {
      srv->prio_broken = 1;
      return;
    }
    srv->prios = fresh;
    srv->cap_prios = cap;
  }
  srv->prios[srv->n_prios].priority = priority;
  srv->prios[srv->n_prios].count = delta;
  srv->n_prios++;
}

static void heap_push(ae_server *srv, ae_job *job) {
  prio_count(srv, job->priority, 1);
  if (job->seq > srv->heap_max_seq) srv->heap_max_seq = job->seq;
  srv->heap_n++;
  heap_set(srv, srv->heap_n - 1, job);
  heap_up(srv, srv->heap_n - 1);
  job->in_heap = 1;
}

static void heap_remove(ae_server *srv, ae_job *job) {
  size_t i = job->heap_pos;
  prio_count(srv, job->priority, -1);
  job->in_heap = 0;
  srv->heap_n--;
  if (i == srv->heap_n) return;
  ae_job *moved = srv->heap[srv->heap_n];
  heap_set(srv, i, moved);
  heap_down(srv, i);
  heap_up(srv, moved->heap_pos);
}

static ae_job *heap_pop(ae_server *srv) {
  ae_job *top = srv->heap[0];
  heap_remove(srv, top);
  return top;
}

/* ---- events ---- */

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

/* ---- workers ---- */

static void worker_fail(ae_worker *w, const char *what, int rc,
                        const ae_problem *p) {
  snprintf(w->w_error, sizeof w->w_error, "%s: %s%s%s", what, ae_strerror(rc),
           p && p->detail ? ": " : "", p && p->detail ? p->detail : "");
  w->ev_failed.kind = AE_EV_FAILED;
  w->ev_failed.worker = w->index;
  post_event(w->srv, &w->ev_failed);
}

static void *worker_main(void *arg) {
  ae_worker *w = arg;
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
    ae_log(AE_LOG_WARN, "worker %d: cuda:%d failed its warm-up (%s), using "
           "host", w->index, w->cfg.device,
           err.reason ? err.reason : ae_strerror(rc));
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
  w->ev_ready.kind = AE_EV_READY;
  w->ev_ready.worker = w->index;
  post_event(srv, &w->ev_ready);

  for (;;) {
    pthread_mutex_lock(&srv->queue_mu);
    while (!srv->queue_stop && srv->heap_n == 0)
      pthread_cond_wait(&srv->queue_cv, &srv->queue_mu);
    if (srv->queue_stop) {
      pthread_mutex_unlock(&srv->queue_mu);
      break;
    }
    ae_job *job = heap_pop(srv);
    pthread_mutex_unlock(&srv->queue_mu);

    job->w_worker = w->index;
    job->w_started_ms = ae_now_ms();
    job->w_start_ns = ae_mono_ns();
    job->ev_started.kind = AE_EV_STARTED;
    job->ev_started.worker = w->index;
    job->ev_started.job = job;
    post_event(srv, &job->ev_started);

    ae_job_control ctl = {&job->cancel, job->deadline_ns};
    ae_scorecard_init(&job->w_card);
    rc = ae_engine_score(engine, &job->req, &srv->registry, &ctl, &job->w_card,
                         &err);
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
  pthread_mutex_lock(&srv->queue_mu);
  srv->queue_stop = 1;
  pthread_cond_broadcast(&srv->queue_cv);
  pthread_mutex_unlock(&srv->queue_mu);
  for (size_t i = 0; i < srv->n_workers; i++) {
    if (srv->workers[i].thread_started) {
      pthread_join(srv->workers[i].thread, NULL);
      srv->workers[i].thread_started = 0;
    }
  }
}

/* ---- states ---- */

static const char *const state_names[] = {"queued", "running", "succeeded",
                                          "failed", "cancelled"};

const char *ae_job_state_name(ae_job_state s) {
  return state_names[s];
}

int ae_job_state_parse(const char *s, ae_job_state *out) {
  for (int i = 0; i < 5; i++)
    if (!strcmp(s, state_names[i])) {
      *out = (ae_job_state)i;
      return AE_OK;
    }
  return AE_EINVAL;
}

int ae_job_terminal(const ae_job *job) {
  return job->state == AE_JOB_SUCCEEDED || job->state == AE_JOB_FAILED ||
         job->state == AE_JOB_CANCELLED;
}

int ae_server_ready(const ae_server *srv) {
  if (srv->draining || srv->n_workers == 0) return 0;
  for (size_t i = 0; i < srv->n_workers; i++)
    if (!srv->workers[i].ready || srv->workers[i].failed) return 0;
  return 1;
}

static char *dumps_or_null(const json_t *j) {
  return j ? ae_json_dumps(j) : NULL;
}

static void store_failed(ae_server *srv, const char *what, const char *id,
                         int rc) {
  ae_log(AE_LOG_ERROR, "store: %s %s: %s (%s)", what, id, ae_strerror(rc),
         srv->store ? ae_store_errmsg(srv->store) : "");
}

/* Moves a job to a terminal state; steals result and error. */
static void job_finish(ae_server *srv, ae_job *job, ae_job_state state,
                       const char *reason, json_t *result, json_t *error) {
  if (job->state == AE_JOB_QUEUED && srv->n_queued)
    srv->n_queued--;
  else if (job->state == AE_JOB_RUNNING && srv->n_running)
    srv->n_running--;
  job->state = state;
  job->finish_reason = reason;
  job->result_json = result;
  job->error_json = error;
  job->finished_ms = ae_now_ms();
  job->expires_ms = job->finished_ms + srv->opt->job_ttl_secs * 1000;
  if (job->has_req) {
    ae_request_free(&job->req);
    job->has_req = 0;
  }
  fin_insert(srv, job);
  ae_metrics_job_finished(srv, job);
  /* A job stopped only because the daemon is draining (queued, or running
   * past the drain deadline) stays queued/running in the store: the next
   * start re-queues it, so a rolling restart loses no accepted job. */
  int keep_for_restart = srv->store && srv->draining && reason &&
                         !strcmp(reason, "draining");
  if (keep_for_restart)
    ae_log(AE_LOG_DEBUG, "job %s kept in the store for the next start",
           job->id);
  if (srv->store && !keep_for_restart) {
    char *rj = dumps_or_null(result), *ej = dumps_or_null(error);
    int rc = ae_store_finish(srv->store, job->id, state, rj, ej,
                             job->finished_ms, job->expires_ms);
    if (rc) store_failed(srv, "finish", job->id, rc);
    free(rj);
    free(ej);
  }
  ae_log(AE_LOG_DEBUG, "job %s %s (%s)", job->id, state_names[state], reason);
  ae_http_wake_waiters(srv, job);
}

static json_t *problem_json(ae_job *job, int status, const char *code,
                            const char *title, const char *detail) {
  ae_problem p = AE_PROBLEM_INIT;
  ae_problem_set(&p, status, code, title, "%s", detail);
  char instance[64];
  snprintf(instance, sizeof instance, "/v1/jobs/%s", job->id);
  json_t *j = ae_problem_to_json(&p, instance);
  ae_problem_clear(&p);
  return j;
}

static json_t *deadline_problem(ae_job *job) {
  char detail[128];
  snprintf(detail, sizeof detail, "The job's timeout_ms of %lld ran out.",
           job->timeout_ms);
  return problem_json(job, 504, "deadline_exceeded", "Deadline exceeded",
                      detail);
}

static void job_done(ae_server *srv, ae_job *job, ae_worker *w) {
  w->current = NULL;
  double seconds = (double)(job->w_end_ns - job->w_start_ns) / 1e9;
  ae_histogram_observe(&srv->metrics.compute_seconds[w->index], seconds);
  char instance[64];
  snprintf(instance, sizeof instance, "/v1/jobs/%s", job->id);
  json_t *result = NULL;
  switch (job->w_rc) {
  case AE_OK:
    result = ae_scorecard_to_json(&job->w_card);
    if (result) {
      job_finish(srv, job, AE_JOB_SUCCEEDED, "completed", result, NULL);
    } else {
      ae_log(AE_LOG_ERROR, "job %s: rendering the scorecard failed", job->id);
      job_finish(srv, job, AE_JOB_FAILED, "internal", NULL,
                 problem_json(job, 500, "internal", "Internal error",
                              "The result could not be rendered."));
    }
    break;
  case AE_ECANCELLED:
    job_finish(srv, job, AE_JOB_CANCELLED,
               srv->draining && !job->cancel_requested ? "draining"
                                                       : "cancelled",
               NULL, NULL);
    break;
  case AE_EDEADLINE:
    job_finish(srv, job, AE_JOB_FAILED, "deadline_exceeded", NULL,
               deadline_problem(job));
    break;
  case AE_EINVAL:
  case AE_ENOMEM:
    if (!job->w_problem.status)
      ae_problem_set(&job->w_problem, 422, "invalid_request", NULL, "%s",
                     ae_strerror(job->w_rc));
    job_finish(srv, job, AE_JOB_FAILED, "engine_error", NULL,
               ae_problem_to_json(&job->w_problem, instance));
    break;
  case AE_EDEVICE:
    ae_log(AE_LOG_ERROR, "job %s: device error on %s: %s", job->id, w->name,
           job->w_problem.detail ? job->w_problem.detail : "");
    job_finish(srv, job, AE_JOB_FAILED, "device_error", NULL,
               problem_json(job, 503, "device_error", "Device error",
                            "The worker's device failed; resubmit the job."));
    break;
  default:
    ae_log(AE_LOG_ERROR, "job %s: %s%s%s", job->id, ae_strerror(job->w_rc),
           job->w_problem.detail ? ": " : "",
           job->w_problem.detail ? job->w_problem.detail : "");
    job_finish(srv, job, AE_JOB_FAILED, "internal", NULL,
               problem_json(job, 500, "internal", "Internal error",
                            "The evaluation failed; the server logged why."));
    break;
  }
  ae_scorecard_free(&job->w_card);
  ae_problem_clear(&job->w_problem);
}

static void job_started(ae_server *srv, ae_job *job, ae_worker *w) {
  if (srv->n_queued) srv->n_queued--;
  srv->n_running++;
  job->state = AE_JOB_RUNNING;
  job->started_ms = job->w_started_ms;
  snprintf(job->worker, sizeof job->worker, "%s", w->name);
  w->current = job;
  ae_histogram_observe(&srv->metrics.queue_seconds,
                       (double)(job->w_start_ns - job->enqueued_ns) / 1e9);
  if (srv->store) {
    int rc = ae_store_mark_running(srv->store, job->id, job->worker,
                                   job->started_ms);
    if (rc) store_failed(srv, "mark running", job->id, rc);
  }
}

static void maybe_finish_drain(ae_server *srv);

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
      job_started(srv, ev->job, w);
      break;
    case AE_EV_DONE:
      job_done(srv, ev->job, w);
      break;
    }
    ev = next;
  }
  maybe_finish_drain(srv);
  ae_http_run(srv);
}

/* ---- submit, cancel, delete ---- */

int ae_jobs_submit(ae_server *srv, ae_request *reqs, size_t n,
                   const char *idem_key, const char *body_hash, int batch,
                   ae_job **out) {
  int rc = AE_ENOMEM;
  ae_store_job *rows = NULL;
  char **request_texts = NULL;
  if (table_reserve(srv, n)) return AE_ENOMEM;
  pthread_mutex_lock(&srv->queue_mu);
  rc = heap_reserve(srv, n);
  pthread_mutex_unlock(&srv->queue_mu);
  if (rc) return rc;
  rc = AE_ENOMEM;
  for (size_t i = 0; i < n; i++)
    out[i] = NULL;
  long long now_ms = ae_now_ms(), now_ns = ae_mono_ns();
  for (size_t i = 0; i < n; i++) {
    ae_job *job = calloc(1, sizeof *job);
    if (!job) goto fail;
    out[i] = job;
    ae_job_id_new(job->id, sizeof job->id);
    job->state = AE_JOB_QUEUED;
    atomic_init(&job->cancel, 0);
    job->request_json = json_incref(reqs[i].normalised);
    job->priority = reqs[i].priority;
    job->timeout_ms = reqs[i].timeout_ms;
    if (reqs[i].client_ref && !(job->client_ref = strdup(reqs[i].client_ref)))
      goto fail;
    if (idem_key) {
      size_t klen = strlen(idem_key) + 24;
      if (!(job->idem_key = malloc(klen))) goto fail;
      if (batch)
        snprintf(job->idem_key, klen, "%s\n%zu", idem_key, i);
      else
        snprintf(job->idem_key, klen, "%s", idem_key);
      snprintf(job->body_hash, sizeof job->body_hash, "%s", body_hash);
    }
    job->created_ms = now_ms;
    job->enqueued_ns = now_ns;
    job->deadline_ns =
        job->timeout_ms > 0 ? now_ns + job->timeout_ms * 1000000LL : 0;
    job->seq = srv->next_seq + (long long)i;
  }
  if (srv->store) {
    rows = calloc(n, sizeof *rows);
    request_texts = calloc(n, sizeof *request_texts);
    if (!rows || !request_texts) goto fail;
    for (size_t i = 0; i < n; i++) {
      ae_job *job = out[i];
      if (!(request_texts[i] = ae_json_dumps(job->request_json))) goto fail;
      rows[i] =
          (ae_store_job){.id = job->id,
                         .state = AE_JOB_QUEUED,
                         .request_json = request_texts[i],
                         .idempotency_key = job->idem_key,
                         .body_hash = job->idem_key ? job->body_hash : NULL,
                         .client_ref = job->client_ref,
                         .priority = job->priority,
                         .timeout_ms = job->timeout_ms,
                         .created_ms = job->created_ms,
                         .seq = job->seq};
    }
    rc = ae_store_insert(srv->store, rows, n);
    if (rc) {
      store_failed(srv, "insert", out[0]->id, rc);
      rc = AE_EIO;
      goto fail;
    }
    for (size_t i = 0; i < n; i++)
      free(request_texts[i]);
    free(request_texts);
    free(rows);
    request_texts = NULL;
    rows = NULL;
  }
  /* Nothing can fail from here on: take the requests and queue. */
  srv->next_seq += (long long)n;
  for (size_t i = 0; i < n; i++) {
    out[i]->req = reqs[i];
    out[i]->has_req = 1;
    memset(&reqs[i], 0, sizeof reqs[i]);
    job_link(srv, out[i]);
  }
  pthread_mutex_lock(&srv->queue_mu);
  for (size_t i = 0; i < n; i++)
    heap_push(srv, out[i]);
  if (n > 1)
    pthread_cond_broadcast(&srv->queue_cv);
  else
    pthread_cond_signal(&srv->queue_cv);
  pthread_mutex_unlock(&srv->queue_mu);
  srv->n_queued += n;
  srv->metrics.jobs_submitted += n;
  return AE_OK;

fail:
  if (request_texts)
    for (size_t i = 0; i < n; i++)
      free(request_texts[i]);
  free(request_texts);
  free(rows);
  for (size_t i = 0; i < n; i++) {
    job_free(out[i]);
    out[i] = NULL;
  }
  return rc;
}

void ae_job_cancel(ae_server *srv, ae_job *job) {
  if (ae_job_terminal(job)) return;
  pthread_mutex_lock(&srv->queue_mu);
  int was_queued = job->in_heap;
  if (was_queued) heap_remove(srv, job);
  pthread_mutex_unlock(&srv->queue_mu);
  if (was_queued) {
    job_finish(srv, job, AE_JOB_CANCELLED,
               srv->draining ? "draining" : "cancelled", NULL, NULL);
    return;
  }
  /* A worker holds it: ask the engine to stop at its next checkpoint. */
  atomic_store(&job->cancel, 1);
  if (!job->cancel_requested) {
    job->cancel_requested = 1;
    free(job->cached_body);
    job->cached_body = NULL;
    if (srv->store) {
      int rc = ae_store_mark_cancel_requested(srv->store, job->id);
      if (rc) store_failed(srv, "mark cancel", job->id, rc);
    }
  }
}

static void job_remove(ae_server *srv, ae_job *job) {
  fin_remove(srv, job);
  job_unlink(srv, job);
  job_free(job);
}

void ae_job_delete(ae_server *srv, ae_job *job) {
  if (!ae_job_terminal(job)) return;
  if (srv->store) {
    int rc = ae_store_delete(srv->store, job->id);
    if (rc) store_failed(srv, "delete", job->id, rc);
  }
  job_remove(srv, job);
}

/* ---- rendering ---- */

static json_t *time_or_null(long long ms) {
  if (!ms) return json_null();
  char buf[40];
  ae_format_rfc3339(ms, buf, sizeof buf);
  return json_string(buf);
}

static long long queue_position(ae_server *srv, ae_job *job) {
  long long ahead = 0;
  pthread_mutex_lock(&srv->queue_mu);
  int queued = job->in_heap;
  if (queued && job->seq == srv->heap_max_seq && !srv->prio_broken) {
    /* The newest job: every queued job of its priority or lower is ahead
     * (itself counted in its priority's total). */
    for (size_t i = 0; i < srv->n_prios; i++)
      if (srv->prios[i].priority <= job->priority) ahead += srv->prios[i].count;
    ahead--;
  } else if (queued) {
    for (size_t i = 0; i < srv->heap_n; i++)
      if (heap_less(srv->heap[i], job)) ahead++;
  }
  pthread_mutex_unlock(&srv->queue_mu);
  return queued ? ahead + 1 : 0;
}

json_t *ae_job_to_json(ae_server *srv, ae_job *job) {
  json_t *o = json_object();
  if (!o) return NULL;
  int bad = 0;
  bad |= json_object_set_new(o, "id", json_string(job->id));
  bad |= json_object_set_new(o, "state", json_string(state_names[job->state]));
  bad |= json_object_set_new(o, "cancel_requested",
                             json_boolean(job->cancel_requested));
  bad |= json_object_set_new(o, "created_at", time_or_null(job->created_ms));
  bad |= json_object_set_new(o, "started_at", time_or_null(job->started_ms));
  bad |= json_object_set_new(o, "finished_at", time_or_null(job->finished_ms));
  bad |= json_object_set_new(o, "expires_at", time_or_null(job->expires_ms));
  bad |= json_object_set_new(o, "priority", json_integer(job->priority));
  bad |= json_object_set_new(o, "timeout_ms", json_integer(job->timeout_ms));
  bad |= json_object_set_new(o, "client_ref",
                             job->client_ref ? json_string(job->client_ref)
                                             : json_null());
  if (job->state == AE_JOB_QUEUED)
    bad |= json_object_set_new(o, "queue_position",
                               json_integer(queue_position(srv, job)));
  bad |= json_object_set_new(
      o, "worker", job->worker[0] ? json_string(job->worker) : json_null());
  bad |= json_object_set(o, "request",
                         job->request_json ? job->request_json : json_null());
  if (job->state == AE_JOB_SUCCEEDED && job->result_json)
    bad |= json_object_set(o, "result", job->result_json);
  if (job->state == AE_JOB_FAILED && job->error_json)
    bad |= json_object_set(o, "error", job->error_json);
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

char *ae_job_render(ae_server *srv, ae_job *job, size_t *len) {
  if (job->cached_body) {
    char *copy = malloc(job->cached_len + 1);
    if (copy) {
      memcpy(copy, job->cached_body, job->cached_len + 1);
      *len = job->cached_len;
    }
    return copy;
  }
  json_t *j = ae_job_to_json(srv, job);
  char *text = ae_json_dumps(j);
  json_decref(j);
  if (!text) return NULL;
  *len = strlen(text);
  if (ae_job_terminal(job)) {
    job->cached_body = malloc(*len + 1);
    if (job->cached_body) {
      memcpy(job->cached_body, text, *len + 1);
      job->cached_len = *len;
    }
  }
  return text;
}

/* ---- timers: deadlines of queued jobs, expiry, drain ---- */

static void sweep(uv_timer_t *timer) {
  ae_server *srv = timer->data;
  long long now_ns = ae_mono_ns();
  /* Queued jobs past their deadline fail without running. */
  ae_job *late[64];
  size_t n_late;
  do {
    n_late = 0;
    pthread_mutex_lock(&srv->queue_mu);
    for (size_t i = 0; i < srv->heap_n && n_late < 64; i++) {
      ae_job *job = srv->heap[i];
      if (job->deadline_ns && job->deadline_ns <= now_ns) late[n_late++] = job;
    }
    for (size_t i = 0; i < n_late; i++)
      heap_remove(srv, late[i]);
    pthread_mutex_unlock(&srv->queue_mu);
    for (size_t i = 0; i < n_late; i++)
      job_finish(srv, late[i], AE_JOB_FAILED, "deadline_exceeded", NULL,
                 deadline_problem(late[i]));
  } while (n_late == 64);
  /* Finished jobs past their TTL go. */
  long long now_ms = ae_now_ms();
  int expired = 0;
  while (srv->fin_first && srv->fin_first->expires_ms <= now_ms) {
    ae_log(AE_LOG_DEBUG, "job %s expired", srv->fin_first->id);
    job_remove(srv, srv->fin_first);
    expired = 1;
  }
  if (expired && srv->store) {
    int rc = ae_store_expire(srv->store, now_ms);
    if (rc) store_failed(srv, "expire", "", rc);
  }
  ae_http_drop_slow(srv);
  ae_http_run(srv);
}

/* The engine did not reach a checkpoint within the grace period after the
 * drain deadline: record the client-cancelled running jobs and leave now
 * (the workers cannot be joined; the process exit ends them). */
static void on_drain_force(uv_timer_t *timer) {
  ae_server *srv = timer->data;
  ae_log(AE_LOG_ERROR,
         "%zu jobs ignored their cancel for %d s: exiting "
         "without them",
         srv->n_running, AE_DRAIN_GRACE_MS / 1000);
  for (ae_job *job = srv->first; job; job = job->next) {
    /* Only a cancel the client asked for is recorded; the rest stay
     * running in the store and are re-queued by the next start. */
    if (ae_job_terminal(job) || !srv->store || !job->cancel_requested)
      continue;
    long long now = ae_now_ms();
    int rc = ae_store_finish(srv->store, job->id, AE_JOB_CANCELLED, NULL, NULL,
                             now, now + srv->opt->job_ttl_secs * 1000);
    if (rc) store_failed(srv, "finish", job->id, rc);
  }
  if (srv->store) ae_store_close(srv->store);
  srv->store = NULL;
  fflush(stderr);
  _exit(0);
}

static void on_drain_deadline(uv_timer_t *timer) {
  ae_server *srv = timer->data;
  srv->drain_deadline_passed = 1;
  ae_log(AE_LOG_WARN, "drain deadline passed: cancelling %zu running jobs",
         srv->n_running);
  for (ae_job *job = srv->first; job; job = job->next)
    if (!ae_job_terminal(job)) atomic_store(&job->cancel, 1);
  uv_timer_start(&srv->drain_timer, on_drain_force, AE_DRAIN_GRACE_MS, 0);
  maybe_finish_drain(srv);
}

static void maybe_finish_drain(ae_server *srv) {
  if (!srv->draining || srv->stopping) return;
  /* Jobs a worker took but whose start event is still on its way count as
   * queued here; wait for them too. */
  int busy = srv->n_running > 0 || srv->n_queued > 0;
  if (busy) return;
  srv->stopping = 1;
  ae_server_shutdown(srv);
}

void ae_server_drain(ae_server *srv) {
  if (srv->draining) return;
  srv->draining = 1;
  ae_log(AE_LOG_INFO,
         "draining: %zu queued jobs %s, %zu running get %d s",
         srv->n_queued,
         srv->store ? "stay in the store for the next start" : "cancelled",
         srv->n_running, srv->opt->drain_timeout_secs);
  for (;;) {
    pthread_mutex_lock(&srv->queue_mu);
    ae_job *job = srv->heap_n ? heap_pop(srv) : NULL;
    pthread_mutex_unlock(&srv->queue_mu);
    if (!job) break;
    job_finish(srv, job, AE_JOB_CANCELLED, "draining", NULL, NULL);
  }
  uv_timer_start(&srv->drain_timer, on_drain_deadline,
                 (uint64_t)srv->opt->drain_timeout_secs * 1000, 0);
  maybe_finish_drain(srv);
  ae_http_run(srv);
}

/* ---- the store at start ---- */

static int load_one(void *ud, const ae_store_job *row) {
  ae_server *srv = ud;
  long long now_ms = ae_now_ms();
  int terminal = row->state == AE_JOB_SUCCEEDED ||
                 row->state == AE_JOB_FAILED || row->state == AE_JOB_CANCELLED;
  if (terminal && row->expires_ms && row->expires_ms <= now_ms)
    return 0; /* expired while we were down */
  if (table_reserve(srv, 1)) return AE_ENOMEM;
  ae_job *job = calloc(1, sizeof *job);
  if (!job) return AE_ENOMEM;
  snprintf(job->id, sizeof job->id, "%s", row->id);
  job->state = row->state;
  atomic_init(&job->cancel, 0);
  job->priority = row->priority;
  job->timeout_ms = row->timeout_ms;
  job->created_ms = row->created_ms;
  job->seq = row->seq;
  if (row->seq >= srv->next_seq) srv->next_seq = row->seq + 1;
  json_error_t err;
  job->request_json = json_loads(row->request_json ? row->request_json : "null",
                                 JSON_DECODE_ANY, &err);
  if ((row->client_ref && !(job->client_ref = strdup(row->client_ref))) ||
      (row->idempotency_key &&
       !(job->idem_key = strdup(row->idempotency_key)))) {
    job_free(job);
    return AE_ENOMEM;
  }
  if (row->body_hash)
    snprintf(job->body_hash, sizeof job->body_hash, "%s", row->body_hash);
  if (terminal) {
    job->started_ms = row->started_ms;
    job->finished_ms = row->finished_ms;
    job->expires_ms = row->expires_ms;
    job->cancel_requested = row->cancel_requested;
    if (row->worker)
      snprintf(job->worker, sizeof job->worker, "%s", row->worker);
    if (row->result_json)
      job->result_json = json_loads(row->result_json, JSON_DECODE_ANY, &err);
    if (row->error_json)
      job->error_json = json_loads(row->error_json, JSON_DECODE_ANY, &err);
    job_link(srv, job);
    fin_insert(srv, job);
    return 0;
  }
  /* Queued or running when we stopped: queue it again. */
  job->state = AE_JOB_QUEUED;
  long long left_ms = job->created_ms + job->timeout_ms - now_ms;
  job->enqueued_ns = ae_mono_ns();
  job->deadline_ns =
      job->timeout_ms > 0
          ? job->enqueued_ns + (left_ms > 0 ? left_ms : 0) * 1000000LL
          : 0;
  ae_problem p = AE_PROBLEM_INIT;
  int rc = job->request_json
               ? ae_request_parse(job->request_json, &srv->catalog,
                                  &srv->limits, &job->req, &p)
               : AE_EINVAL;
  if (rc == AE_ENOMEM) {
    ae_problem_clear(&p);
    job_free(job);
    return AE_ENOMEM;
  }
  job_link(srv, job);
  srv->n_queued++;
  if (rc) {
    ae_log(AE_LOG_WARN, "job %s: its stored request no longer validates",
           job->id);
    char instance[64];
    snprintf(instance, sizeof instance, "/v1/jobs/%s", job->id);
    if (!p.status)
      ae_problem_set(&p, 422, "invalid_request", NULL,
                     "The stored request no longer validates.");
    job_finish(srv, job, AE_JOB_FAILED, "engine_error", NULL,
               ae_problem_to_json(&p, instance));
    ae_problem_clear(&p);
    return 0;
  }
  job->has_req = 1;
  pthread_mutex_lock(&srv->queue_mu);
  rc = heap_reserve(srv, 1);
  if (!rc) heap_push(srv, job);
  pthread_mutex_unlock(&srv->queue_mu);
  if (rc) {
    job_finish(srv, job, AE_JOB_FAILED, "internal", NULL, NULL);
    return AE_ENOMEM;
  }
  return 0;
}

int ae_jobs_load(ae_server *srv) {
  if (!srv->store) return AE_OK;
  int rc = ae_store_load(srv->store, load_one, srv);
  if (rc) {
    ae_log(AE_LOG_ERROR, "store: load: %s (%s)", ae_strerror(rc),
           ae_store_errmsg(srv->store));
    return rc;
  }
  rc = ae_store_expire(srv->store, ae_now_ms());
  if (rc) store_failed(srv, "expire", "", rc);
  ae_log(AE_LOG_INFO, "store: %zu jobs loaded, %zu queued again", srv->n_jobs,
         srv->n_queued);
  return AE_OK;
}

/* ---- set-up and tear-down ---- */

int ae_server_jobs_init(ae_server *srv) {
  int err = pthread_mutex_init(&srv->queue_mu, NULL);
  if (!err) err = pthread_cond_init(&srv->queue_cv, NULL);
  if (!err) err = pthread_mutex_init(&srv->event_mu, NULL);
  if (err) return AE_EINTERNAL;
  srv->next_seq = 1;
  if (table_reserve(srv, 1)) return AE_ENOMEM;
  if (uv_async_init(srv->loop, &srv->async, on_async)) return AE_EINTERNAL;
  srv->async.data = srv;
  if (uv_timer_init(srv->loop, &srv->sweep_timer) ||
      uv_timer_init(srv->loop, &srv->drain_timer))
    return AE_EINTERNAL;
  srv->sweep_timer.data = srv;
  srv->drain_timer.data = srv;
  uv_timer_start(&srv->sweep_timer, sweep, 200, 200);
  return AE_OK;
}

/* After the workers were joined and the loop closed. */
void ae_server_jobs_free(ae_server *srv) {
  ae_job *job = srv->first;
  while (job) {
    ae_job *next = job->next;
    job_free(job);
    job = next;
  }
  srv->first = srv->last = NULL;
  free(srv->buckets);
  free(srv->idem_buckets);
  free(srv->heap);
  free(srv->prios);
  srv->prios = NULL;
  srv->buckets = srv->idem_buckets = NULL;
  srv->heap = NULL;
  pthread_mutex_destroy(&srv->queue_mu);
  pthread_cond_destroy(&srv->queue_cv);
  pthread_mutex_destroy(&srv->event_mu);
}
