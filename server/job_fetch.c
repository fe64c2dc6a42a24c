/* job_fetch.c: jobs read from the store for one answer (job_fetch.h):
 * a finished job dropped from memory past --max-finished-jobs, or a job
 * this daemon never held.  Each stored row becomes a transient ae_job
 * with the same fields a loaded job gets (job_load.c uses
 * ae_job_from_row too), so that its rendering is the same bytes as when
 * it was in memory.
 *
 * Thread: the loop thread; the store is the loop's. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "server/job_fetch.h"
#include "server/job_state.h"
#include "server/util.h"

ae_job *ae_job_from_row(const ae_store_job *row) {
  ae_job *job = ae_job_new();
  if (!job) return NULL;
  snprintf(job->id, sizeof job->id, "%s", row->id);
  job->state = row->state;
  job->priority = row->priority;
  job->timeout_ms = row->timeout_ms;
  job->created_ms = row->created_ms;
  job->seq = row->seq;
  if (row->study) snprintf(job->study, sizeof job->study, "%s", row->study);
  if (row->canonical)
    snprintf(job->canonical, sizeof job->canonical, "%s", row->canonical);
  job->cached = row->cached;
  const char *request = row->request_json ? row->request_json : "null";
  if (!(job->request_text = ae_text_new(request, strlen(request))) ||
      (row->client_ref && !(job->client_ref = strdup(row->client_ref))) ||
      (row->idempotency_key &&
       !(job->idem_key = strdup(row->idempotency_key)))) {
    ae_job_free(job);
    return NULL;
  }
  if (row->body_hash)
    snprintf(job->body_hash, sizeof job->body_hash, "%s", row->body_hash);
  if (!ae_job_terminal(job)) return job;
  job->started_ms = row->started_ms;
  job->finished_ms = row->finished_ms;
  job->expires_ms = row->expires_ms;
  job->cancel_requested = row->cancel_requested;
  if (row->worker) snprintf(job->worker, sizeof job->worker, "%s", row->worker);
  int rc;
  if (row->state == AE_JOB_SUCCEEDED && row->result_json)
    rc = ae_job_set_tail(job, "result", row->result_json);
  else if (row->state == AE_JOB_FAILED && row->error_json)
    rc = ae_job_set_tail(job, "error", row->error_json);
  else
    rc = ae_job_set_tail(job, "", NULL);
  if (rc) {
    ae_job_free(job);
    return NULL;
  }
  return job;
}

/* A stored job another process runs (a replica of a shared store): the
 * fields a running or queued job shows. */
static void from_row_live(ae_job *job, const ae_store_job *row) {
  job->started_ms = row->started_ms;
  job->cancel_requested = row->cancel_requested;
  if (row->worker) snprintf(job->worker, sizeof job->worker, "%s", row->worker);
}

/* A finished job past its expiry is gone, even while the store still has
 * it (the sweep deletes it soon). */
static int row_expired(const ae_store_job *row, long long now_ms) {
  int terminal = row->state == AE_JOB_SUCCEEDED ||
                 row->state == AE_JOB_FAILED || row->state == AE_JOB_CANCELLED;
  return terminal && row->expires_ms && row->expires_ms <= now_ms;
}

typedef struct {
  ae_job *job;
  int rc;
} fetch_one;

static int take_row(void *ud, const ae_store_job *row) {
  fetch_one *f = ud;
  if (row_expired(row, ae_now_ms())) {
    f->rc = AE_ENOTFOUND;
    return 0;
  }
  ae_job *job = ae_job_from_row(row);
  if (!job) {
    f->rc = AE_ENOMEM;
    return AE_ENOMEM;
  }
  if (!ae_job_terminal(job)) from_row_live(job, row);
  job->transient = 1;
  f->job = job;
  f->rc = AE_OK;
  return 0;
}

static ae_job *fetch_done(ae_server *srv, int status, fetch_one *f,
                          const char *what, const char *value, int *rc) {
  if (status == AE_OK && f->rc == AE_OK) {
    *rc = AE_OK;
    return f->job;
  }
  ae_job_release(f->job);
  if (status == AE_OK) status = f->rc;
  if (status != AE_ENOTFOUND && status != AE_ENOMEM) {
    ae_log(AE_LOG_ERROR, "store: %s %s: %s (%s)", what, value,
           ae_strerror(status), ae_store_errmsg(srv->store));
    status = AE_EIO;
  }
  *rc = status;
  return NULL;
}

/* --fleet: a finished study member held here is read from the store, whose
 * study another replica may have deleted (with its finished members). */
static int held_copy_may_be_stale(const ae_server *srv, const ae_job *job) {
  return srv->fleet && job->study[0] && ae_job_terminal(job);
}

ae_job *ae_job_lookup(ae_server *srv, const char *id, int *rc) {
  ae_job *job = ae_job_table_find(&srv->jobs, id);
  *rc = AE_OK;
  if (job && !job->remote && !held_copy_may_be_stale(srv, job)) return job;
  *rc = AE_ENOTFOUND;
  if (!ae_jobs_store_has_more(srv)) return NULL;
  fetch_one f = {.job = NULL, .rc = AE_ENOTFOUND};
  int status = ae_store_get(srv->store, id, take_row, &f);
  return fetch_done(srv, status, &f, "get", id, rc);
}

ae_job *ae_job_lookup_idem(ae_server *srv, const char *key, int *rc) {
  ae_job *job = ae_job_table_find_idem(&srv->jobs, key);
  *rc = AE_OK;
  if (job && !job->remote) return job;
  *rc = AE_ENOTFOUND;
  if (!ae_jobs_store_has_more(srv)) return NULL;
  fetch_one f = {.job = NULL, .rc = AE_ENOTFOUND};
  int status = ae_store_get_idem(srv->store, key, take_row, &f);
  return fetch_done(srv, status, &f, "get by idempotency key", "", rc);
}

void ae_job_release(ae_job *job) {
  if (job && job->transient) ae_job_free(job);
}

int ae_job_cancel_elsewhere(ae_server *srv, ae_job *job) {
  if (!job->transient || ae_job_terminal(job)) return AE_EINVAL;
  if (job->state == AE_JOB_QUEUED) {
    /* Waiting in the shared queue: cancelled here and now, unless a
     * replica claims it first (the store then refuses: AE_EINVAL). */
    long long now_ms = ae_now_ms();
    long long expires_ms =
        job->study[0] ? 0 : now_ms + srv->opt->job_ttl_secs * 1000;
    int rc = ae_store_finish(srv->store, job->id, AE_JOB_CANCELLED, NULL, NULL,
                             now_ms, expires_ms);
    if (rc == AE_OK) {
      job->state = AE_JOB_CANCELLED;
      job->finished_ms = now_ms;
      job->expires_ms = expires_ms;
      ae_job_render_changed(job);
      return ae_job_set_tail(job, "", NULL);
    }
    if (rc != AE_EINVAL) {
      ae_log(AE_LOG_ERROR, "store: cancel %s: %s (%s)", job->id,
             ae_strerror(rc), ae_store_errmsg(srv->store));
      return rc == AE_ENOTFOUND ? rc : AE_EIO;
    }
  }
  /* Running on another replica: its heartbeat reads the flag. */
  int rc = ae_store_mark_cancel_requested(srv->store, job->id);
  if (rc) {
    ae_log(AE_LOG_ERROR, "store: mark cancel %s: %s (%s)", job->id,
           ae_strerror(rc), ae_store_errmsg(srv->store));
    return rc == AE_ENOTFOUND ? rc : AE_EIO;
  }
  job->cancel_requested = 1;
  return AE_OK;
}

int ae_jobs_store_has_more(const ae_server *srv) {
  return srv->store && (srv->fleet || srv->jobs.n_dropped > 0);
}

typedef struct {
  ae_job **out;
  size_t max, got, rows;
  long long now_ms, last_seq;
  char *last_id;
  size_t last_id_len;
} fetch_page;

static int take_page_row(void *ud, const ae_store_job *row) {
  fetch_page *p = ud;
  p->rows++;
  p->last_seq = row->seq;
  snprintf(p->last_id, p->last_id_len, "%s", row->id);
  if (p->got == p->max || row_expired(row, p->now_ms)) return 0;
  ae_job *job = ae_job_from_row(row);
  if (!job) return AE_ENOMEM;
  if (!ae_job_terminal(job)) from_row_live(job, row);
  job->transient = 1;
  p->out[p->got++] = job;
  return 0;
}

int ae_jobs_store_page(ae_server *srv, const ae_store_page *page, ae_job **out,
                       size_t *got, size_t *rows, long long *last_seq,
                       char *last_id, size_t last_id_len) {
  fetch_page p = {.out = out,
                  .max = page->limit,
                  .now_ms = ae_now_ms(),
                  .last_seq = *last_seq,
                  .last_id = last_id,
                  .last_id_len = last_id_len};
  int status = ae_store_list(srv->store, page, take_page_row, &p);
  if (status) {
    for (size_t i = 0; i < p.got; i++)
      ae_job_release(out[i]);
    *got = *rows = 0;
    if (status == AE_ENOMEM) return status;
    ae_log(AE_LOG_ERROR, "store: list: %s (%s)", ae_strerror(status),
           ae_store_errmsg(srv->store));
    return AE_EIO;
  }
  *got = p.got;
  *rows = p.rows;
  *last_seq = p.last_seq;
  return AE_OK;
}
