/* drain.c: the graceful stop: no new jobs, queued ones cancelled (or, with
 * a store, handed over to the next start: they stay queued, and are shown
 * as queued with "draining": true), running ones given
 * --drain-timeout-secs, then cancelled, and after a grace period the
 * process leaves without them.
 *
 * The drain is over when no job is queued or running: it checks that when
 * it starts and whenever a job becomes terminal (a listener registered
 * with the state machine), and then calls the owner's srv->on_drained on
 * the next loop iteration, after the event that ended the last job was
 * fully handled.
 *
 * Thread: the loop thread. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "api/status.h"
#include "server/drain.h"
#include "server/job_state.h"
#include "server/util.h"

/* After the drain deadline, how long cancelled jobs get to reach a
 * checkpoint before the process leaves without them. */
#define AE_DRAIN_GRACE_MS 5000

static void on_drained(uv_timer_t *timer) {
  ae_server *srv = timer->data;
  srv->on_drained(srv);
}

static void maybe_finish_drain(ae_server *srv) {
  if (!srv->draining || srv->stopping) return;
  /* Jobs a worker took but whose start event is still on its way count as
   * queued here; wait for them too. */
  if (srv->n_running > 0 || srv->n_queued > 0) return;
  srv->stopping = 1;
  uv_timer_start(&srv->drain_timer, on_drained, 0, 0);
}

static void on_terminal(ae_server *srv, ae_job *job) {
  (void)job;
  maybe_finish_drain(srv);
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
  ae_job_iter it;
  ae_job_iter_start(&srv->jobs, NULL, &it);
  for (ae_job *job; (job = ae_job_iter_next(&it));) {
    /* Only a cancel the client asked for is recorded; the rest stay
     * running in the store and are re-queued by the next start, and their
     * long polls are told so (queued, draining) before the exit. */
    if (ae_job_terminal(job) || !srv->store || job->handed_over) continue;
    if (!job->cancel_requested) {
      ae_job_hand_over(srv, job);
      continue;
    }
    long long now = ae_now_ms();
    int rc = ae_store_finish(srv->store, job->id, AE_JOB_CANCELLED, NULL, NULL,
                             now, now + srv->opt->job_ttl_secs * 1000);
    if (rc) ae_jobs_store_failed(srv, "finish", job->id, rc);
  }
  if (srv->before_exit) srv->before_exit(srv);
  if (srv->store) ae_store_close(srv->store);
  srv->store = NULL;
  fflush(stderr);
  _exit(0);
}

static void on_drain_deadline(uv_timer_t *timer) {
  ae_server *srv = timer->data;
  ae_log(AE_LOG_WARN, "drain deadline passed: cancelling %zu running jobs",
         srv->n_running);
  ae_job_iter it;
  ae_job_iter_start(&srv->jobs, NULL, &it);
  for (ae_job *job; (job = ae_job_iter_next(&it));)
    if (!ae_job_terminal(job)) atomic_store(&job->cancel, 1);
  uv_timer_start(&srv->drain_timer, on_drain_force, AE_DRAIN_GRACE_MS, 0);
  maybe_finish_drain(srv);
}

void ae_drain_start(ae_server *srv) {
  if (srv->draining) return;
  srv->draining = 1;
  ae_log(AE_LOG_INFO, "draining: %zu queued jobs %s, %zu running get %d s",
         srv->n_queued,
         srv->store ? "stay in the store for the next start" : "cancelled",
         srv->n_running, srv->opt->drain_timeout_secs);
  ae_queue_entry *e;
  while ((e = ae_queue_pop(&srv->queue)))
    ae_job_finish(srv, AE_JOB_OF_ENTRY(e), AE_JOB_CANCELLED, "draining", NULL,
                  NULL);
  /* Finishing the last queued job may have ended the drain already. */
  if (srv->stopping) return;
  uv_timer_start(&srv->drain_timer, on_drain_deadline,
                 (uint64_t)srv->opt->drain_timeout_secs * 1000, 0);
  maybe_finish_drain(srv);
}

int ae_drain_init(ae_server *srv) {
  if (uv_timer_init(srv->loop, &srv->drain_timer)) return AE_EINTERNAL;
  srv->drain_timer.data = srv;
  return ae_jobs_on_terminal(srv, on_terminal);
}

void ae_drain_close(ae_server *srv) {
  uv_handle_t *h = (uv_handle_t *)&srv->drain_timer;
  if (h->loop && !uv_is_closing(h)) uv_close(h, NULL);
}
