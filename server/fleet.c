/* fleet.c: this daemon as one replica of a fleet sharing a PostgreSQL
 * store's queue (fleet.h, --fleet).
 *
 * Design.  A job accepted here is inserted queued in the store and not
 * queued here (job_state.c); this file claims jobs from the store into the
 * local queue while a worker would otherwise be idle: when a job ends
 * here, when a job is queued anywhere (its notification), and on a
 * fallback timer.  A second connection LISTENs to every job's changes in
 * the store: besides new jobs, a job's end elsewhere wakes the long polls
 * on it here (http.c's on_job_changed; they also poll the store).  A
 * claimed job is running in the store, owned by this replica under a lease
 * of --lease-secs; the heartbeat renews the leases of every job this
 * replica owns every third of the lease and hands a cancel flag set on
 * another replica to the local state machine.  The same timer re-queues
 * the jobs of any replica whose leases expired, or fails them past
 * --max-attempts, once this replica's own heartbeats have succeeded for a
 * heartbeat period plus the store's reconnect back-off (after an outage,
 * live replicas renew their own leases before anyone re-queues them), and
 * listens again when the LISTEN connection broke.  The end of a job is written
 * by its owner only (ae_store_finish is guarded; job_state.c discards a lost
 * one).
 *
 * Thread: the loop thread owns the fleet's state and timers; the store is
 * the loop's. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/problem.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "server/fleet.h"
#include "server/job_load.h"
#include "server/job_state.h"
#include "server/util.h"
#include "server/workers.h"

/* How often an idle replica looks for queued jobs of other replicas, in
 * case a notification was lost (a new job is notified at once). */
#define FLEET_CLAIM_MS 250
/* A replica reconnects to a store that came back within its back-off
 * (at most 5 s, store_pg.c) and renews its leases at its next heartbeat:
 * the wait before re-queuing others' expired leases is one heartbeat
 * period plus this. */
#define FLEET_REQUEUE_GRACE_MS 6000
/* --max-queue under --fleet: the store's count of queued jobs is read at
 * most this often (a submission in between counts the last read plus the
 * jobs this replica accepted since). */
#define FLEET_QUEUE_READ_MS 100

struct ae_fleet {
  uv_timer_t claim_timer, beat_timer;
  int timers;
  uv_poll_t *listen_poll; /* the store's LISTEN socket, or NULL */
  long long lease_ms;
  long long beat_ms;
  /* Since when this replica's heartbeats have succeeded without a break
   * (0: the last one failed).  Other replicas' expired leases are re-queued
   * only after FLEET_REQUEUE_GRACE_MS of that: after a store outage every
   * live replica first gets the chance to renew its own. */
  long long store_ok_since_ms;
  char *died_error; /* the problem of a job whose replica died too often */
  /* --max-queue: the fleet's queued jobs at the last read of the store
   * (monotonic ms, 0: never read), and the jobs accepted here since. */
  size_t queued_read, queued_since;
  long long queued_read_ms;
};

int ae_fleet_configure(ae_server *srv) {
  const ae_options *opt = srv->opt;
  if (opt->replica_id && opt->replica_id[0]) {
    if (strlen(opt->replica_id) >= sizeof srv->replica_id) {
      ae_log(AE_LOG_ERROR, "--replica-id: at most %zu bytes",
             sizeof srv->replica_id - 1);
      return AE_EINVAL;
    }
    snprintf(srv->replica_id, sizeof srv->replica_id, "%s", opt->replica_id);
  } else {
    char host[64] = "host";
    if (gethostname(host, sizeof host)) snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    char id[16];
    ae_job_id_new(id, sizeof id); /* random */
    snprintf(srv->replica_id, sizeof srv->replica_id, "%s-%ld-%s", host,
             (long)getpid(), id + 2);
  }
  srv->fleet = opt->fleet;
  return AE_OK;
}

/* Workers that are ready and have nothing queued for them here. */
static size_t idle_slots(const ae_server *srv) {
  size_t ready = 0;
  for (size_t i = 0; i < srv->n_workers; i++)
    if (srv->workers[i].ready && !srv->workers[i].failed) ready++;
  size_t busy = srv->n_running + srv->n_queued;
  return ready > busy ? ready - busy : 0;
}

static int adopt_claimed(void *ud, const ae_store_job *row, int attempts) {
  ae_server *srv = ud;
  ae_log(AE_LOG_INFO, "job %s claimed by replica %s (attempt %d)", row->id,
         srv->replica_id, attempts);
  return ae_jobs_adopt(srv, row);
}

/* Claims as many queued jobs as there are idle workers. */
static void claim(ae_server *srv) {
  if (!srv->fleet || !srv->fleet_state || srv->draining || !srv->store) return;
  for (size_t slots = idle_slots(srv); slots > 0; slots--) {
    int rc = ae_store_claim(srv->store, srv->replica_id, ae_now_ms(),
                            srv->fleet_state->lease_ms, adopt_claimed, srv);
    if (rc == AE_ENOTFOUND) return;
    if (rc) {
      ae_log(AE_LOG_ERROR, "fleet: claim: %s (%s)", ae_strerror(rc),
             ae_store_errmsg(srv->store));
      return;
    }
  }
}

static void on_claim_timer(uv_timer_t *timer) {
  claim(timer->data);
}

/* Claims on the loop's next turn, never inside the caller: a claim may
 * replace this replica's copy of a job just accepted (ae_jobs_adopt), which
 * the submission is still answering with, and the state machine is in the
 * middle of a change when it tells its listeners. */
static void claim_soon(ae_server *srv) {
  struct ae_fleet *f = srv->fleet_state;
  if (f && f->timers && !uv_is_closing((uv_handle_t *)&f->claim_timer))
    uv_timer_start(&f->claim_timer, on_claim_timer, 0, FLEET_CLAIM_MS);
}

static void on_submitted(ae_server *srv) {
  claim_soon(srv);
}

static void on_terminal(ae_server *srv, ae_job *job) {
  (void)job;
  claim_soon(srv);
}

/* ---- notifications: LISTEN on a second connection ---- */

static void poll_closed(uv_handle_t *handle) {
  free(handle);
}

static void stop_listening(struct ae_fleet *f) {
  if (!f->listen_poll) return;
  uv_close((uv_handle_t *)f->listen_poll, poll_closed);
  f->listen_poll = NULL;
}

/* "ID STATE": a job was queued (claim it if a worker is idle) or changed
 * state (long polls on it wake). */
static int on_note(void *ud, const char *payload) {
  ae_server *srv = ud;
  const char *space = strchr(payload, ' ');
  if (!space || space == payload || (size_t)(space - payload) >= 32) return 0;
  char id[32];
  memcpy(id, payload, (size_t)(space - payload));
  id[space - payload] = '\0';
  if (!strcmp(space + 1, "queued"))
    claim_soon(srv);
  else if (srv->on_job_changed)
    srv->on_job_changed(srv, id);
  return 0;
}

static void on_listen_readable(uv_poll_t *poll, int status, int events) {
  ae_server *srv = poll->data;
  (void)events;
  int rc =
      status < 0 ? AE_EIO : ae_store_notifications(srv->store, on_note, srv);
  if (rc) {
    ae_log(AE_LOG_WARN,
           "fleet: notifications lost (%s); polling until they come back",
           ae_store_errmsg(srv->store));
    stop_listening(srv->fleet_state);
  }
}

/* Opens the LISTEN connection and watches it; on failure the timers'
 * polling carries on and the heartbeat tries again. */
static void start_listening(ae_server *srv) {
  struct ae_fleet *f = srv->fleet_state;
  if (f->listen_poll || srv->draining) return;
  int fd = -1;
  if (ae_store_listen(srv->store, &fd)) {
    ae_log(AE_LOG_WARN, "fleet: LISTEN: %s", ae_store_errmsg(srv->store));
    return;
  }
  uv_poll_t *poll = calloc(1, sizeof *poll);
  if (!poll || uv_poll_init(srv->loop, poll, fd)) {
    free(poll);
    ae_log(AE_LOG_WARN, "fleet: cannot watch the LISTEN socket");
    return;
  }
  poll->data = srv;
  f->listen_poll = poll;
  uv_poll_start(poll, UV_READABLE, on_listen_readable);
  claim_soon(srv); /* what was queued while not listening */
}

/* A cancel asked on another replica reaches the job running here; a job
 * the store says this replica runs but which it does not hold (its
 * adoption failed) goes back to the queue.  A job that ended here while
 * the store was away keeps its lease (the heartbeat renewed it) until its
 * kept end is written (on_beat_timer): given back, another replica would
 * run it a second time. */
static int on_beat(void *ud, const char *id, int cancel_requested) {
  ae_server *srv = ud;
  if (ae_jobs_end_unsaved(srv, id)) return 0;
  ae_job *job = ae_job_table_find(&srv->jobs, id);
  if (!job || job->remote || ae_job_terminal(job)) {
    ae_log(AE_LOG_WARN, "job %s: leased here but not held; given back", id);
    if (ae_store_release(srv->store, id))
      ae_log(AE_LOG_ERROR, "fleet: give back %s: %s", id,
             ae_store_errmsg(srv->store));
    return 0;
  }
  if (!cancel_requested) return 0;
  if (!job->cancel_requested) {
    ae_log(AE_LOG_INFO, "job %s: cancel asked on another replica", id);
    ae_job_cancel(srv, job);
  }
  return 0;
}

static void on_beat_timer(uv_timer_t *timer) {
  ae_server *srv = timer->data;
  struct ae_fleet *f = srv->fleet_state;
  long long now_ms = ae_now_ms();
  int rc = ae_store_heartbeat(srv->store, now_ms, f->lease_ms, on_beat, srv);
  if (rc) {
    ae_log(AE_LOG_ERROR, "fleet: heartbeat: %s (%s)", ae_strerror(rc),
           ae_store_errmsg(srv->store));
    f->store_ok_since_ms = 0;
  } else {
    if (!f->store_ok_since_ms) f->store_ok_since_ms = now_ms;
    /* The ends kept while the store was away, now that it answers (their
     * leases were just renewed). */
    ae_jobs_retry_unsaved(srv);
  }
  size_t requeued = 0, failed = 0;
  if (!f->store_ok_since_ms ||
      now_ms - f->store_ok_since_ms < f->beat_ms + FLEET_REQUEUE_GRACE_MS) {
    start_listening(srv);
    claim_soon(srv);
    return;
  }
  rc = ae_store_requeue_expired(
      srv->store, now_ms, srv->opt->max_attempts, f->died_error,
      now_ms + srv->opt->job_ttl_secs * 1000, &requeued, &failed);
  if (rc)
    ae_log(AE_LOG_ERROR, "fleet: expired leases: %s (%s)", ae_strerror(rc),
           ae_store_errmsg(srv->store));
  srv->leases_requeued += requeued; /* for /metrics */
  srv->leases_exhausted += failed;
  if (requeued || failed)
    ae_log(AE_LOG_WARN,
           "fleet: %zu jobs of a replica that stopped renewing its leases "
           "queued again, %zu failed (--max-attempts %d)",
           requeued, failed, srv->opt->max_attempts);
  start_listening(srv);
  claim_soon(srv);
}

/* The problem+json of a job whose replica died --max-attempts times, with
 * the store's placeholders for the count and the id. */
static char *died_error(const ae_server *srv) {
  ae_problem p = AE_PROBLEM_INIT;
  ae_problem_set(&p, 500, "worker_died", "Worker died",
                 "the job's worker died %%ATTEMPTS%% times (--max-attempts "
                 "%d): the replica running it stopped renewing its lease; "
                 "it is not run again",
                 srv->opt->max_attempts);
  json_t *j = ae_problem_to_json(&p, "/v1/jobs/%ID%");
  ae_problem_clear(&p);
  char *text = j ? ae_json_dumps(j) : NULL;
  json_decref(j);
  return text;
}

/* Reads the store's count of queued jobs into f; 0 or the store's error. */
static int read_queued(ae_server *srv, struct ae_fleet *f, long long now_ms) {
  size_t count = 0;
  int rc = ae_store_count_queued(srv->store, &count);
  if (rc) {
    ae_log(AE_LOG_ERROR, "fleet: count queued jobs: %s (%s)", ae_strerror(rc),
           ae_store_errmsg(srv->store));
    return rc;
  }
  f->queued_read = count;
  f->queued_since = 0;
  f->queued_read_ms = now_ms;
  return AE_OK;
}

int ae_fleet_queue_room(ae_server *srv, size_t n, size_t *queued) {
  struct ae_fleet *f = srv->fleet_state;
  size_t max = (size_t)srv->opt->max_queue;
  if (!srv->fleet || !f || !srv->store) {
    *queued = srv->n_queued;
    return srv->n_queued + n <= max;
  }
  long long now_ms = (long long)(uv_hrtime() / 1000000) + 1;
  int stale =
      !f->queued_read_ms || now_ms - f->queued_read_ms >= FLEET_QUEUE_READ_MS;
  /* No count: the submission goes on, and its insert reports the store's
   * state (503 when the store is gone), not a full queue. */
  if (stale && read_queued(srv, f, now_ms)) {
    *queued = f->queued_read + f->queued_since;
    return 1;
  }
  for (;;) {
    *queued = f->queued_read + f->queued_since;
    if (*queued + n <= max) {
      f->queued_since += n;
      return 1;
    }
    /* A refusal stands on the store's count alone: the jobs this replica
     * let in since the last read may have left the queue already (a
     * client that submits and waits, job after job, within 100 ms).  A
     * read sets queued_since to 0, so this reads at most once. */
    if (f->queued_since == 0) return 0;
    if (read_queued(srv, f, now_ms)) return 1;
  }
}

int ae_fleet_start(ae_server *srv) {
  if (!srv->fleet) return AE_OK;
  struct ae_fleet *f = calloc(1, sizeof *f);
  if (!f) return AE_ENOMEM;
  srv->fleet_state = f;
  f->lease_ms = (long long)srv->opt->lease_secs * 1000;
  if (!(f->died_error = died_error(srv))) return AE_ENOMEM;
  int rc = ae_jobs_on_terminal(srv, on_terminal);
  if (rc) return rc;
  srv->on_submitted = on_submitted;
  if (uv_timer_init(srv->loop, &f->claim_timer) ||
      uv_timer_init(srv->loop, &f->beat_timer))
    return AE_EINTERNAL;
  f->timers = 1;
  f->claim_timer.data = f->beat_timer.data = srv;
  uint64_t beat_ms = (uint64_t)(f->lease_ms / 3 > 0 ? f->lease_ms / 3 : 1);
  f->beat_ms = (long long)beat_ms;
  f->store_ok_since_ms = ae_now_ms();
  uv_timer_start(&f->claim_timer, on_claim_timer, FLEET_CLAIM_MS,
                 FLEET_CLAIM_MS);
  uv_timer_start(&f->beat_timer, on_beat_timer, beat_ms, beat_ms);
  start_listening(srv);
  ae_log(AE_LOG_INFO,
         "fleet: replica %s on the shared queue (lease %lld ms, heartbeat "
         "every %llu ms, --max-attempts %d)",
         srv->replica_id, f->lease_ms, (unsigned long long)beat_ms,
         srv->opt->max_attempts);
  return AE_OK;
}

void ae_fleet_close(ae_server *srv) {
  struct ae_fleet *f = srv->fleet_state;
  if (!f) return;
  stop_listening(f);
  if (!f->timers) return;
  uv_handle_t *handles[2] = {(uv_handle_t *)&f->claim_timer,
                             (uv_handle_t *)&f->beat_timer};
  for (int i = 0; i < 2; i++)
    if (!uv_is_closing(handles[i])) uv_close(handles[i], NULL);
}

void ae_fleet_free(ae_server *srv) {
  struct ae_fleet *f = srv->fleet_state;
  if (!f) return;
  free(f->died_error);
  free(f);
  srv->fleet_state = NULL;
}
