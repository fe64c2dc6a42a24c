/* job_load.c: loads the store's jobs at start: finished ones are served
 * until their expiry, those that were queued or running (the daemon
 * stopped or died) are queued again with what is left of their timeout, and
 * a stored request that no longer validates fails its job.
 *
 * Thread: the main thread, before the loop and the workers run. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "server/cache.h"
#include "server/job_fetch.h"
#include "server/job_load.h"
#include "server/job_state.h"
#include "server/models.h"
#include "server/outcome.h"
#include "server/util.h"

/* A job that is not terminal, made from its stored row (job), queued
 * here with what is left of its timeout; a stored request that no longer
 * validates fails the job.  0 or AE_ENOMEM. */
static int queue_again(ae_server *srv, ae_job *job, const char *request,
                       long long now_ms, int with_key) {
  job->state = AE_JOB_QUEUED;
  long long left_ms = job->created_ms + job->timeout_ms - now_ms;
  job->enqueued_ns = ae_mono_ns();
  job->entry.deadline_ns =
      job->timeout_ms > 0
          ? job->enqueued_ns + (left_ms > 0 ? left_ms : 0) * 1000000LL
          : 0;
  ae_problem p = AE_PROBLEM_INIT;
  json_error_t err;
  json_t *tree = json_loads(request, JSON_DECODE_ANY, &err);
  int rc =
      tree ? ae_request_parse_models(tree, &srv->catalog, ae_models_source(srv),
                                     &srv->limits, &job->req, &p)
           : AE_EINVAL;
  json_decref(tree);
  /* --fleet: the cache key of a claimed job, from its normalised request
   * and its canonical key as stored at its submission (a job without one
   * was not looked up either), so that its result fills the store's
   * cache. */
  char key[65];
  if (rc == AE_OK && with_key && job->canonical[0] &&
      ae_cache_key_of(&job->req, job->canonical, key) == AE_OK)
    snprintf(job->cache_key, sizeof job->cache_key, "%s", key);
  if (rc == AE_OK) { /* its text is request_text */
    json_decref(job->req.normalised);
    job->req.normalised = NULL;
  }
  if (rc == AE_ENOMEM) {
    ae_problem_clear(&p);
    ae_job_free(job);
    return AE_ENOMEM;
  }
  ae_job_table_add(&srv->jobs, job);
  srv->n_queued++;
  if (rc) {
    ae_log(AE_LOG_WARN, "job %s: its stored request no longer validates",
           job->id);
    if (!p.status)
      ae_problem_set(&p, 422, "invalid_request", NULL,
                     "The stored request no longer validates.");
    ae_job_outcome o =
        ae_job_outcome_of(AE_EINVAL, &p, job->id, job->timeout_ms, 0);
    ae_job_finish(srv, job, o.state, o.reason, NULL, o.error);
    ae_problem_clear(&p);
    return 0;
  }
  job->has_req = 1;
  ae_job_inputs_to_text(job); /* held once: in request_text */
  ae_job_table_recount(&srv->jobs, job);
  if (ae_queue_reserve(&srv->queue, 1)) {
    ae_job_finish(srv, job, AE_JOB_FAILED, "internal", NULL, NULL);
    return AE_ENOMEM;
  }
  ae_job_enqueue(srv, job);
  return 0;
}

static int load_one(void *ud, const ae_store_job *row) {
  ae_server *srv = ud;
  long long now_ms = ae_now_ms();
  int terminal = row->state == AE_JOB_SUCCEEDED ||
                 row->state == AE_JOB_FAILED || row->state == AE_JOB_CANCELLED;
  if (terminal && row->expires_ms && row->expires_ms <= now_ms)
    return 0; /* expired while we were down */
  if (ae_job_table_reserve(&srv->jobs, 1)) return AE_ENOMEM;
  ae_job *job = ae_job_from_row(row);
  if (!job) return AE_ENOMEM;
  if (row->seq >= srv->next_seq) srv->next_seq = row->seq + 1;
  const char *request = row->request_json ? row->request_json : "null";
  if (terminal) { /* its fields and texts as stored */
    ae_job_table_add(&srv->jobs, job);
    if (!job->study[0]) ae_job_table_finished(&srv->jobs, job);
    ae_jobs_trim_finished(srv); /* memory stays bounded while loading */
    return 0;
  }
  return queue_again(srv, job, request, now_ms, 0);
}

int ae_jobs_adopt(ae_server *srv, const ae_store_job *row) {
  ae_job *copy = ae_job_table_find(&srv->jobs, row->id);
  if (copy && !copy->remote) {
    ae_log(AE_LOG_ERROR, "job %s: claimed from the store while held here",
           row->id);
    return AE_EINVAL;
  }
  if (copy) ae_job_table_remove(&srv->jobs, copy);
  if (ae_job_table_reserve(&srv->jobs, 1) || ae_queue_reserve(&srv->queue, 1))
    return AE_ENOMEM;
  ae_job *job = ae_job_from_row(row);
  if (!job) return AE_ENOMEM;
  if (row->seq >= srv->next_seq) srv->next_seq = row->seq + 1;
  const char *request = row->request_json ? row->request_json : "null";
  return queue_again(srv, job, request, ae_now_ms(), srv->cache != NULL);
}

int ae_jobs_load(ae_server *srv) {
  if (!srv->store) return AE_OK;
  if (srv->fleet) {
    /* The store's queue is the fleet's: jobs run where they are claimed,
     * and every replica reads finished ones from the store. */
    ae_log(AE_LOG_INFO, "store: shared by the fleet as replica %s",
           srv->replica_id);
    return AE_OK;
  }
  int rc = ae_store_load(srv->store, load_one, srv);
  if (rc) {
    ae_log(AE_LOG_ERROR, "store: load: %s (%s)", ae_strerror(rc),
           ae_store_errmsg(srv->store));
    return rc;
  }
  rc = ae_store_expire(srv->store, ae_now_ms());
  if (rc) ae_jobs_store_failed(srv, "expire", "", rc);
  ae_log(AE_LOG_INFO,
         "store: %zu jobs loaded, %zu queued again, %llu finished ones left "
         "in the store (--max-finished-jobs)",
         srv->jobs.n_jobs, srv->n_queued, srv->jobs.n_dropped);
  return AE_OK;
}
