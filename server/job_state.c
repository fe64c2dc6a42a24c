/* job_state.c: archevald's job state machine: submission, start, the end
 * of a job (through outcome.c), cancel, delete, the deadlines of queued
 * jobs and the expiry of finished ones.
 *
 * Design.  Every ae_job belongs to the loop thread, which creates it,
 * changes its state and frees it.  A queued job's entry sits in the queue
 * (queue.c); a worker pops it, scores the job and posts its done event,
 * which workers.c turns into ae_job_done here.  The loop never frees a job
 * a worker holds: only terminal jobs are deleted, and a running job becomes
 * terminal only through its done event, after which the worker no longer
 * touches it.  A cancel is an atomic flag the engine reads at its
 * checkpoints.  Each change is written to the store as it happens; a job
 * that becomes terminal is told to the registered listeners (http.c wakes
 * its long polls, drain.c checks whether the drain is over). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "server/job_state.h"
#include "server/outcome.h"
#include "server/util.h"

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

void ae_jobs_store_failed(ae_server *srv, const char *what, const char *id,
                          int rc) {
  ae_log(AE_LOG_ERROR, "store: %s %s: %s (%s)", what, id, ae_strerror(rc),
         srv->store ? ae_store_errmsg(srv->store) : "");
}

int ae_jobs_on_terminal(ae_server *srv, ae_terminal_fn fn) {
  if (srv->n_on_terminal == AE_MAX_TERMINAL_LISTENERS) return AE_ENOMEM;
  srv->on_terminal[srv->n_on_terminal++] = fn;
  return AE_OK;
}

static char *dumps_or_null(const json_t *j) {
  return j ? ae_json_dumps(j) : NULL;
}

void ae_job_finish(ae_server *srv, ae_job *job, ae_job_state state,
                   const char *reason, json_t *result, json_t *error) {
  if (job->state == AE_JOB_QUEUED && srv->n_queued)
    srv->n_queued--;
  else if (job->state == AE_JOB_RUNNING && srv->n_running)
    srv->n_running--;
  job->state = state;
  job->result_json = result;
  job->error_json = error;
  job->finished_ms = ae_now_ms();
  job->expires_ms = job->finished_ms + srv->opt->job_ttl_secs * 1000;
  if (job->has_req) {
    ae_request_free(&job->req);
    job->has_req = 0;
  }
  ae_job_table_finished(&srv->jobs, job);
  ae_metrics_job_finished(&srv->metrics, state, reason);
  /* A job stopped only because the daemon is draining (queued, or running
   * past the drain deadline) stays queued/running in the store: the next
   * start re-queues it, so a rolling restart loses no accepted job. */
  int keep_for_restart =
      srv->store && srv->draining && reason && !strcmp(reason, "draining");
  if (keep_for_restart)
    ae_log(AE_LOG_DEBUG, "job %s kept in the store for the next start",
           job->id);
  if (srv->store && !keep_for_restart) {
    char *rj = dumps_or_null(result), *ej = dumps_or_null(error);
    int rc = ae_store_finish(srv->store, job->id, state, rj, ej,
                             job->finished_ms, job->expires_ms);
    if (rc) ae_jobs_store_failed(srv, "finish", job->id, rc);
    free(rj);
    free(ej);
  }
  ae_log(AE_LOG_DEBUG, "job %s %s (%s)", job->id, state_names[state], reason);
  for (size_t i = 0; i < srv->n_on_terminal; i++)
    srv->on_terminal[i](srv, job);
}

void ae_job_started(ae_server *srv, ae_job *job, const char *worker_name) {
  if (srv->n_queued) srv->n_queued--;
  srv->n_running++;
  job->state = AE_JOB_RUNNING;
  job->started_ms = job->w_started_ms;
  snprintf(job->worker, sizeof job->worker, "%s", worker_name);
  ae_histogram_observe(&srv->metrics.queue_seconds,
                       (double)(job->w_start_ns - job->enqueued_ns) / 1e9);
  if (srv->store) {
    int rc = ae_store_mark_running(srv->store, job->id, job->worker,
                                   job->started_ms);
    if (rc) ae_jobs_store_failed(srv, "mark running", job->id, rc);
  }
}

void ae_job_done(ae_server *srv, ae_job *job) {
  json_t *result =
      job->w_rc == AE_OK ? ae_scorecard_to_json(&job->w_card) : NULL;
  if (result) {
    ae_job_finish(srv, job, AE_JOB_SUCCEEDED, "completed", result, NULL);
  } else {
    if (job->w_rc == AE_OK)
      ae_log(AE_LOG_ERROR, "job %s: rendering the scorecard failed", job->id);
    ae_job_outcome o =
        ae_job_outcome_of(job->w_rc, &job->w_problem, job->id, job->timeout_ms,
                          srv->draining && !job->cancel_requested);
    if (job->w_rc != AE_OK && !strcmp(o.reason, "internal"))
      ae_log(AE_LOG_ERROR, "job %s: %s%s%s", job->id, ae_strerror(job->w_rc),
             job->w_problem.detail ? ": " : "",
             job->w_problem.detail ? job->w_problem.detail : "");
    ae_job_finish(srv, job, o.state, o.reason, NULL, o.error);
  }
  ae_scorecard_free(&job->w_card);
  ae_problem_clear(&job->w_problem);
}

/* ---- submit, cancel, delete ---- */

void ae_job_enqueue(ae_server *srv, ae_job *job) {
  ae_queue_entry *e = &job->entry;
  e->priority = job->priority;
  e->seq = job->seq;
  ae_queue_push(&srv->queue, &e, 1);
}

int ae_jobs_submit(ae_server *srv, ae_request *reqs, size_t n,
                   const char *idem_key, const char *body_hash, int batch,
                   ae_job **out) {
  int rc;
  ae_store_job *rows = NULL;
  char **request_texts = NULL;
  ae_queue_entry **entries = NULL;
  if (ae_job_table_reserve(&srv->jobs, n)) return AE_ENOMEM;
  rc = ae_queue_reserve(&srv->queue, n);
  if (rc) return rc;
  rc = AE_ENOMEM;
  for (size_t i = 0; i < n; i++)
    out[i] = NULL;
  if (!(entries = calloc(n, sizeof *entries))) return AE_ENOMEM;
  long long now_ms = ae_now_ms(), now_ns = ae_mono_ns();
  for (size_t i = 0; i < n; i++) {
    ae_job *job = ae_job_new();
    if (!job) goto fail;
    out[i] = job;
    ae_job_id_new(job->id, sizeof job->id);
    job->state = AE_JOB_QUEUED;
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
    job->seq = srv->next_seq + (long long)i;
    job->entry = (ae_queue_entry){
        .priority = job->priority,
        .seq = job->seq,
        .deadline_ns =
            job->timeout_ms > 0 ? now_ns + job->timeout_ms * 1000000LL : 0};
    entries[i] = &job->entry;
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
      ae_jobs_store_failed(srv, "insert", out[0]->id, rc);
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
    ae_job_table_add(&srv->jobs, out[i]);
  }
  ae_queue_push(&srv->queue, entries, n);
  free(entries);
  srv->n_queued += n;
  srv->metrics.jobs_submitted += n;
  return AE_OK;

fail:
  if (request_texts)
    for (size_t i = 0; i < n; i++)
      free(request_texts[i]);
  free(request_texts);
  free(rows);
  free(entries);
  for (size_t i = 0; i < n; i++) {
    ae_job_free(out[i]);
    out[i] = NULL;
  }
  return rc;
}

void ae_job_cancel(ae_server *srv, ae_job *job) {
  if (ae_job_terminal(job)) return;
  if (ae_queue_remove(&srv->queue, &job->entry)) {
    ae_job_finish(srv, job, AE_JOB_CANCELLED,
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
      if (rc) ae_jobs_store_failed(srv, "mark cancel", job->id, rc);
    }
  }
}

void ae_job_delete(ae_server *srv, ae_job *job) {
  if (!ae_job_terminal(job)) return;
  if (srv->store) {
    int rc = ae_store_delete(srv->store, job->id);
    if (rc) ae_jobs_store_failed(srv, "delete", job->id, rc);
  }
  ae_job_table_remove(&srv->jobs, job);
}

/* ---- the sweep: deadlines of queued jobs, expiry ---- */

static void sweep(uv_timer_t *timer) {
  ae_server *srv = timer->data;
  long long now_ns = ae_mono_ns();
  /* Queued jobs past their deadline fail without running. */
  ae_queue_entry *late[64];
  size_t n_late;
  do {
    n_late = ae_queue_take_late(&srv->queue, now_ns, late, 64);
    for (size_t i = 0; i < n_late; i++) {
      ae_job *job = AE_JOB_OF_ENTRY(late[i]);
      ae_job_outcome o =
          ae_job_outcome_of(AE_EDEADLINE, NULL, job->id, job->timeout_ms, 0);
      ae_job_finish(srv, job, o.state, o.reason, NULL, o.error);
    }
  } while (n_late == 64);
  /* Finished jobs past their TTL go. */
  long long now_ms = ae_now_ms();
  int expired = 0;
  ae_job *job;
  while ((job = ae_job_table_next_expiry(&srv->jobs)) &&
         job->expires_ms <= now_ms) {
    ae_log(AE_LOG_DEBUG, "job %s expired", job->id);
    ae_job_table_remove(&srv->jobs, job);
    expired = 1;
  }
  if (expired && srv->store) {
    int rc = ae_store_expire(srv->store, now_ms);
    if (rc) ae_jobs_store_failed(srv, "expire", "", rc);
  }
}

/* ---- set-up and tear-down ---- */

int ae_jobs_init(ae_server *srv) {
  srv->next_seq = 1;
  if (ae_job_table_init(&srv->jobs)) return AE_ENOMEM;
  if (ae_queue_init(&srv->queue)) {
    ae_job_table_free(&srv->jobs);
    return AE_EINTERNAL;
  }
  if (uv_timer_init(srv->loop, &srv->sweep_timer)) {
    ae_queue_free(&srv->queue);
    ae_job_table_free(&srv->jobs);
    return AE_EINTERNAL;
  }
  srv->sweep_timer.data = srv;
  uv_timer_start(&srv->sweep_timer, sweep, 200, 200);
  return AE_OK;
}

void ae_jobs_close(ae_server *srv) {
  uv_handle_t *h = (uv_handle_t *)&srv->sweep_timer;
  if (h->loop && !uv_is_closing(h)) uv_close(h, NULL);
}

void ae_jobs_free(ae_server *srv) {
  ae_job_table_free(&srv->jobs);
  ae_queue_free(&srv->queue);
}
