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
 * checkpoints.  Each change is written to the store as it happens; a
 * failed write turns the daemon not-ready (srv->store_failing) until a
 * write, or the sweep's probe of --state-dir, succeeds.  A job that
 * becomes terminal, or that the drain hands over to the next start, is
 * told to the registered listeners (http.c wakes its long polls, drain.c
 * checks whether the drain is over). */
#include "config.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/status.h"
#include "gpu/engine.h"
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
  const char *msg = srv->store ? ae_store_errmsg(srv->store) : "";
  if (!msg) msg = "";
  ae_log(AE_LOG_ERROR, "store: %s %s: %s (%s)", what, id, ae_strerror(rc), msg);
  if (!srv->store_failing)
    ae_log(AE_LOG_WARN, "store: failing; not ready until it answers again");
  srv->store_failing = 1;
  /* The store reports AE_EIO for every storage error; SQLite's message
   * tells a full disk apart.  MERGE: a store error code for "full". */
  srv->store_full = strstr(msg, "full") != NULL;
  snprintf(srv->store_reason, sizeof srv->store_reason, "%s: %s", what,
           msg[0] ? msg : ae_strerror(rc));
}

/* A terminal state the store did not take (its server unreachable, its
 * disk failing).  The job may leave memory meanwhile (expiry, the cap on
 * finished jobs): the entry holds what the write needs.  Without it the
 * store would keep the job running (or queued), and the next start, or
 * another replica, would run it a second time. */
typedef struct ae_unsaved_finish {
  struct ae_unsaved_finish *next;
  char id[32];
  ae_job_state state;
  char *result_json, *error_json; /* owned; NULL when none */
  long long finished_ms, expires_ms;
} ae_unsaved_finish;

static void unsaved_free(ae_unsaved_finish *u) {
  free(u->result_json);
  free(u->error_json);
  free(u);
}

/* Keeps a terminal write to retry; takes rj and ej (malloc'd or NULL). */
static void unsaved_add(ae_server *srv, const ae_job *job, ae_job_state state,
                        char *rj, char *ej) {
  ae_unsaved_finish *u = calloc(1, sizeof *u);
  if (!u) {
    ae_log(AE_LOG_ERROR, "job %s: out of memory keeping its unsaved end",
           job->id);
    free(rj);
    free(ej);
    return;
  }
  snprintf(u->id, sizeof u->id, "%s", job->id);
  u->state = state;
  u->result_json = rj;
  u->error_json = ej;
  u->finished_ms = job->finished_ms;
  u->expires_ms = job->expires_ms;
  if (srv->unsaved_tail)
    srv->unsaved_tail->next = u;
  else
    srv->unsaved_head = u;
  srv->unsaved_tail = u;
  srv->n_unsaved++;
}

/* Writes the kept terminal states, oldest first, until one fails with
 * I/O (the store went again: the rest wait).  A job the store no longer
 * has, or has terminal already (AE_EINVAL: deleted, or finished by
 * another replica, whose write won), needs no retry. */
static void unsaved_flush(ae_server *srv) {
  size_t written = 0;
  while (srv->unsaved_head) {
    ae_unsaved_finish *u = srv->unsaved_head;
    int rc = ae_store_finish(srv->store, u->id, u->state, u->result_json,
                             u->error_json, u->finished_ms, u->expires_ms);
    if (rc == AE_EIO || rc == AE_ENOMEM) {
      ae_jobs_store_failed(srv, "finish (again)", u->id, rc);
      break;
    }
    if (rc)
      ae_log(AE_LOG_WARN, "store: finish (again) %s: %s (%s)", u->id,
             ae_strerror(rc), ae_store_errmsg(srv->store));
    srv->unsaved_head = u->next;
    if (!srv->unsaved_head) srv->unsaved_tail = NULL;
    srv->n_unsaved--;
    unsaved_free(u);
    written++;
  }
  if (written)
    ae_log(AE_LOG_INFO, "store: %zu terminal state(s) written again, %zu left",
           written, srv->n_unsaved);
}

int ae_jobs_end_unsaved(const ae_server *srv, const char *id) {
  for (const ae_unsaved_finish *u = srv->unsaved_head; u; u = u->next)
    if (!strcmp(u->id, id)) return 1;
  return 0;
}

static void store_wrote(ae_server *srv);

void ae_jobs_retry_unsaved(ae_server *srv) {
  if (!srv->unsaved_head) return;
  /* Turns ready again first when failing; a write that fails turns it
   * back. */
  if (srv->store_failing)
    store_wrote(srv);
  else
    unsaved_flush(srv);
}

/* A store write that changed rows succeeded: the store works again. */
static void store_wrote(ae_server *srv) {
  if (!srv->store_failing) return;
  srv->store_failing = 0;
  srv->store_full = 0;
  ae_log(AE_LOG_INFO, "store: answers again; ready");
  unsaved_flush(srv);
}

/* Logs a failed write and turns not-ready, or notes a success. */
static int store_note(ae_server *srv, const char *what, const char *id,
                      int rc) {
  if (rc)
    ae_jobs_store_failed(srv, what, id, rc);
  else
    store_wrote(srv);
  return rc;
}

/* How often a store is probed.  SQLite, when failing: a small file
 * written, synced and removed in --state-dir, the file system the store
 * writes to.  A server-backed store (PostgreSQL), always: ae_store_ping
 * (reconnecting under the store's back-off), since its server can go
 * away while nothing is written, and readiness must say so. */
#define STORE_PROBE_MS 500

static int store_probe(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/.archevald-write-probe", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return AE_EIO;
  char block[4096];
  memset(block, 0, sizeof block);
  int rc =
      write(fd, block, sizeof block) == (ssize_t)sizeof block && fsync(fd) == 0
          ? AE_OK
          : AE_EIO;
  if (close(fd)) rc = AE_EIO;
  unlink(path);
  return rc;
}

/* Pings a server-backed store: a failure turns the daemon not-ready
 * (logged once, the reason kept fresh), an answer ready again. */
static void store_ping(ae_server *srv) {
  int rc = ae_store_ping(srv->store);
  if (!rc) {
    store_wrote(srv);
  } else if (!srv->store_failing) {
    ae_jobs_store_failed(srv, "ping", "", rc);
  } else {
    const char *msg = ae_store_errmsg(srv->store);
    snprintf(srv->store_reason, sizeof srv->store_reason, "ping: %s",
             msg && msg[0] ? msg : ae_strerror(rc));
  }
}

int ae_jobs_on_terminal(ae_server *srv, ae_terminal_fn fn) {
  if (srv->n_on_terminal == AE_MAX_TERMINAL_LISTENERS) return AE_ENOMEM;
  srv->on_terminal[srv->n_on_terminal++] = fn;
  return AE_OK;
}

static char *dumps_or_null(const json_t *j) {
  return j ? ae_json_dumps(j) : NULL;
}

static void tell_listeners(ae_server *srv, ae_job *job) {
  for (size_t i = 0; i < srv->n_on_terminal; i++)
    srv->on_terminal[i](srv, job);
}

/* A job the drain stopped (queued, or running past the drain deadline)
 * while a store keeps it: it stays queued in the store and the next start
 * runs it, so it is reported as queued with "draining": true, never as
 * cancelled (a client that resubmits on cancelled would do the work
 * twice).  It leaves the queue and the counts the drain waits on; its
 * long polls answer now. */
void ae_job_hand_over(ae_server *srv, ae_job *job) {
  if (job->state == AE_JOB_QUEUED && !job->handed_over && !job->deferred &&
      srv->n_queued)
    srv->n_queued--;
  else if (job->state == AE_JOB_RUNNING && srv->n_running)
    srv->n_running--;
  /* --fleet: claimed here, it goes back to the shared queue for another
   * replica (a late end of its worker here is then refused). */
  if (srv->fleet && srv->store && !job->remote) {
    int rc = ae_store_release(srv->store, job->id);
    if (rc)
      ae_log(AE_LOG_WARN,
             "job %s: not given back to the fleet (%s); its "
             "lease expires instead",
             job->id, ae_store_errmsg(srv->store));
  }
  /* A worker that ignored its cancel may still read req: keep it then. */
  int held = job->state == AE_JOB_RUNNING;
  job->state = AE_JOB_QUEUED;
  job->handed_over = 1;
  job->started_ms = 0;
  job->worker[0] = '\0';
  if (job->has_req && !held) {
    ae_request_free(&job->req);
    job->has_req = 0;
  }
  ae_job_render_changed(job);
  ae_job_table_recount(&srv->jobs, job);
  ae_log(AE_LOG_DEBUG, "job %s kept in the store for the next start", job->id);
  tell_listeners(srv, job);
}

/* --fleet: a result computed here (a claimed job: job_load.c gave it its
 * cache key) enters the store's result cache before the job's end is
 * written, so that whoever sees the end finds it cached on any replica.
 * Without --fleet cache.c's listener stores it (the in-flight map's
 * leaders). */
static void fleet_cache_put(ae_server *srv, const ae_job *job,
                            const char *result_text) {
  if (!srv->fleet || !result_text || !job->cache_key[0] || job->cached ||
      job->remote)
    return;
  int rc = ae_store_cache_put(srv->store, job->cache_key,
                              job->canonical[0] ? job->canonical : NULL,
                              result_text, job->finished_ms);
  if (rc) ae_jobs_store_failed(srv, "cache put", job->id, rc);
}

void ae_job_finish(ae_server *srv, ae_job *job, ae_job_state state,
                   const char *reason, json_t *result, json_t *error) {
  if (srv->store && srv->draining && reason && !strcmp(reason, "draining")) {
    json_decref(result);
    json_decref(error);
    ae_job_hand_over(srv, job);
    return;
  }
  if (job->handed_over || job->deferred)
    ; /* already out of the counts */
  else if (job->state == AE_JOB_QUEUED && srv->n_queued)
    srv->n_queued--;
  else if (job->state == AE_JOB_RUNNING && srv->n_running)
    srv->n_running--;
  job->handed_over = 0;
  job->deferred = 0;
  job->state = state;
  job->finished_ms = ae_now_ms();
  /* A study's members are kept until the study is deleted; a member of a
   * study deleted across the fleet while it ran goes at once. */
  job->expires_ms = job->study[0] ? 0
                    : job->study_gone
                        ? job->finished_ms
                        : job->finished_ms + srv->opt->job_ttl_secs * 1000;
  if (job->has_req) {
    ae_request_free(&job->req);
    job->has_req = 0;
  }
  /* The result and the error are rendered once, for the store and the
   * job's rendering; the trees go. */
  char *rj = state == AE_JOB_SUCCEEDED ? dumps_or_null(result) : NULL;
  char *ej = state == AE_JOB_FAILED ? dumps_or_null(error) : NULL;
  json_decref(result);
  json_decref(error);
  if (ae_job_set_tail(job, rj ? "result" : "error", rj ? rj : ej))
    ae_log(AE_LOG_ERROR, "job %s: out of memory rendering its end", job->id);
  ae_job_render_changed(job);
  ae_job_table_recount(&srv->jobs, job);
  if (!job->study[0]) ae_job_table_finished(&srv->jobs, job);
  ae_metrics_job_finished(&srv->metrics, state, reason);
  int unsaved = 0;
  if (srv->store) {
    fleet_cache_put(srv, job, rj);
    int rc = ae_store_finish(srv->store, job->id, state, rj, ej,
                             job->finished_ms, job->expires_ms);
    if (rc == AE_EINVAL && srv->fleet)
      /* Its lease expired and another replica took it over (or ended
       * it): that one's end is the job's; this one is discarded. */
      ae_log(AE_LOG_WARN,
             "job %s: its end here (%s) is discarded: another replica "
             "owns it now (%s)",
             job->id, state_names[state], ae_store_errmsg(srv->store));
    else
      store_note(srv, "finish", job->id, rc);
    unsaved = rc == AE_EIO || rc == AE_ENOMEM;
  }
  /* --fleet: a study member's truth is the store's once its end is
   * there (lookups read it, job_fetch.c): the sweep lets this copy go. */
  if (srv->fleet && job->study[0] && !unsaved && !job->transient &&
      !job->fleet_release) {
    job->fleet_release = 1;
    srv->n_fleet_release++;
  }
  if (unsaved) {
    unsaved_add(srv, job, state, rj, ej);
  } else {
    free(rj);
    free(ej);
  }
  ae_log(AE_LOG_DEBUG, "job %s %s (%s)", job->id, state_names[state], reason);
  tell_listeners(srv, job);
}

void ae_job_started(ae_server *srv, ae_job *job, const char *worker_name) {
  if (srv->n_queued) srv->n_queued--;
  srv->n_running++;
  job->state = AE_JOB_RUNNING;
  job->started_ms = job->w_started_ms;
  snprintf(job->worker, sizeof job->worker, "%s", worker_name);
  ae_job_render_changed(job);
  ae_job_table_recount(&srv->jobs, job);
  ae_histogram_observe(&srv->metrics.queue_seconds,
                       (double)(job->w_start_ns - job->enqueued_ns) / 1e9);
  if (srv->store) {
    store_note(srv, "mark running", job->id,
               ae_store_mark_running(srv->store, job->id, job->worker,
                                     job->started_ms));
  }
}

void ae_job_done(ae_server *srv, ae_job *job) {
  json_t *result =
      job->w_rc == AE_OK ? ae_scorecard_to_json(job->w_card) : NULL;
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
  ae_job_free_outcome(job);
}

/* ---- admission: the memory jobs may hold ---- */

size_t ae_jobs_default_memory_budget(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return (size_t)1 << 30;
  return (size_t)pages / 4 * (size_t)page;
}

/* What n new jobs will hold, before their texts exist: the body's text
 * (their requests' text is about as long), each one's parsed request as
 * the table will count it once the job holds it (ae_request_held_bytes:
 * float32 inputs, labels, the lowered network), and the job itself with a
 * margin for its head and end. */
static size_t incoming_bytes(const ae_request *reqs, size_t n,
                             size_t body_bytes) {
  size_t bytes = body_bytes;
  for (size_t i = 0; i < n; i++)
    bytes += ae_request_held_bytes(&reqs[i]) + sizeof(ae_job) + 4096;
  return bytes;
}

/* 422 for each request whose planned memory passes --max-job-memory. */
static int check_job_memory(ae_server *srv, const ae_request *reqs, size_t n,
                            int batch, ae_problem *p) {
  double limit = srv->jobs.job_limit_bytes;
  if (!(limit > 0)) return AE_OK;
  for (size_t i = 0; i < n; i++) {
    ae_plan_job_bytes need;
    int rc = ae_engine_estimate(&reqs[i], &need);
    if (rc == AE_ENOMEM) return rc;
    if (rc || (double)need.total <= limit) continue;
    char pointer[48];
    if (batch)
      snprintf(pointer, sizeof pointer, "/jobs/%zu/data/batch_size", i);
    else
      snprintf(pointer, sizeof pointer, "/data/batch_size");
    ae_problem_add(p, pointer,
                   "this job needs about %zu bytes (batch %zu, network %zu, "
                   "backward %zu, NTK %zu, analytic kernels %zu, "
                   "generalization %zu, linear regions %zu, curvature %zu, "
                   "ranking metrics %zu), over --max-job-memory (%.0f "
                   "bytes); use a smaller batch, network or fewer metrics",
                   need.total, need.batch, need.net, need.net_backward,
                   need.ntk, need.kernels, need.generalization,
                   need.linear_regions, need.curvature, need.ranking, limit);
  }
  return p->status ? AE_EINVAL : AE_OK;
}

/* AE_OK when want more bytes fit in the budget now; else AE_ENOMEM with
 * p filled: 507 when they would not fit even alone, else 429 with
 * *retry_after the seconds until the first finished job expires. */
static int budget_check(ae_server *srv, size_t want, int parse, ae_problem *p,
                        int *retry_after) {
  const ae_job_table *t = &srv->jobs;
  size_t used = t->held_bytes + t->reserved_bytes;
  if (used <= t->budget_bytes && want <= t->budget_bytes - used) return AE_OK;
  if (want > t->budget_bytes) { /* never fits: no use retrying */
    if (parse)
      ae_problem_set(p, 507, "jobs_memory_full", "Jobs memory full",
                     "Parsing this body would hold about %zu bytes (%d "
                     "times its size), more than --max-jobs-memory (%zu "
                     "bytes) allows all jobs together.",
                     want, AE_PARSE_BYTES_PER_BODY_BYTE, t->budget_bytes);
    else
      ae_problem_set(p, 507, "jobs_memory_full", "Jobs memory full",
                     "These jobs would hold %zu bytes, more than "
                     "--max-jobs-memory (%zu bytes) allows all jobs "
                     "together.",
                     want, t->budget_bytes);
    return AE_ENOMEM;
  }
  /* Room comes back as finished jobs expire (or are deleted). */
  const ae_job *oldest = ae_job_table_next_expiry(t);
  long long wait_s = 5;
  if (oldest) {
    wait_s = (oldest->expires_ms - ae_now_ms() + 999) / 1000;
    if (wait_s < 1) wait_s = 1;
    if (wait_s > 3600) wait_s = 3600;
  }
  /* Parses in flight end within seconds: their room comes back then. */
  if (t->reserved_bytes && t->held_bytes <= t->budget_bytes &&
      want <= t->budget_bytes - t->held_bytes)
    wait_s = 1;
  *retry_after = (int)wait_s;
  ae_problem_set(p, 429, "jobs_memory_full", "Jobs memory full",
                 "The jobs in memory hold %zu bytes and the requests being "
                 "parsed %zu; %zu more%s would pass --max-jobs-memory (%zu "
                 "bytes). Retry after finished jobs expire, or delete "
                 "finished jobs.",
                 t->held_bytes, t->reserved_bytes, want,
                 parse ? " to parse this body" : "", t->budget_bytes);
  return AE_ENOMEM;
}

int ae_jobs_admit(ae_server *srv, const ae_request *reqs, size_t n, int batch,
                  size_t body_bytes, ae_problem *p, int *retry_after) {
  int rc = check_job_memory(srv, reqs, n, batch, p);
  if (rc) return rc;
  return budget_check(srv, incoming_bytes(reqs, n, body_bytes), 0, p,
                      retry_after);
}

int ae_jobs_reserve_parse(ae_server *srv, size_t body_bytes, size_t *reserved,
                          ae_problem *p, int *retry_after) {
  *reserved = 0;
  size_t cost = body_bytes > SIZE_MAX / AE_PARSE_BYTES_PER_BODY_BYTE
                    ? SIZE_MAX
                    : body_bytes * AE_PARSE_BYTES_PER_BODY_BYTE;
  int rc = budget_check(srv, cost, 1, p, retry_after);
  if (rc) return rc;
  srv->jobs.reserved_bytes += cost;
  *reserved = cost;
  return AE_OK;
}

void ae_jobs_release_parse(ae_server *srv, size_t *reserved) {
  srv->jobs.reserved_bytes -= *reserved;
  *reserved = 0;
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
  return ae_jobs_submit_ex(srv, reqs, n, idem_key, body_hash, batch, NULL, out);
}

/* The extras of job i onto it. */
static void job_take_extra(ae_job *job, const ae_job_extra *x) {
  if (!x) return;
  if (x->study) snprintf(job->study, sizeof job->study, "%s", x->study);
  if (x->canonical)
    snprintf(job->canonical, sizeof job->canonical, "%s", x->canonical);
  if (x->cache_key)
    snprintf(job->cache_key, sizeof job->cache_key, "%s", x->cache_key);
  job->cached = x->result != NULL;
  job->deferred = x->deferred && !x->result;
}

int ae_jobs_submit_ex(ae_server *srv, ae_request *reqs, size_t n,
                      const char *idem_key, const char *body_hash, int batch,
                      ae_job_extra *extra, ae_job **out) {
  int rc;
  char **result_texts = NULL;
  ae_store_job *rows = NULL;
  ae_queue_entry **entries = NULL;
  if (ae_job_table_reserve(&srv->jobs, n)) return AE_ENOMEM;
  rc = ae_queue_reserve(&srv->queue, n);
  if (rc) return rc;
  rc = AE_ENOMEM;
  for (size_t i = 0; i < n; i++)
    out[i] = NULL;
  if (!(entries = calloc(n, sizeof *entries))) return AE_ENOMEM;
  long long now_ms = ae_now_ms(), now_ns = ae_mono_ns();
  /* --fleet: replicas number jobs from one clock (microseconds), so that a
   * listing of the shared store is in submission order across them. */
  if (srv->fleet && now_ms * 1000 > srv->next_seq)
    srv->next_seq = now_ms * 1000 + (ae_mono_ns() / 1000) % 1000;
  for (size_t i = 0; i < n; i++) {
    ae_job *job = ae_job_new();
    if (!job) goto fail;
    out[i] = job;
    ae_job_id_new(job->id, sizeof job->id);
    job->state = AE_JOB_QUEUED;
    /* The request is kept as text, never as a JSON tree. */
    char *text = extra && extra[i].request_text
                     ? extra[i].request_text
                     : ae_json_dumps(reqs[i].normalised);
    if (extra) extra[i].request_text = NULL;
    if (!(job->request_text = ae_text_take(text))) goto fail;
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
    job_take_extra(job, extra ? &extra[i] : NULL);
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
  /* Cache hits' results, rendered once for the store and the job. */
  if (!(result_texts = calloc(n, sizeof *result_texts))) goto fail;
  for (size_t i = 0; i < n; i++) {
    json_t *result = extra ? extra[i].result : NULL;
    if (result && !(result_texts[i] = ae_json_dumps(result))) goto fail;
  }
  if (srv->store) {
    rows = calloc(n, sizeof *rows);
    if (!rows) goto fail;
    for (size_t i = 0; i < n; i++) {
      ae_job *job = out[i];
      json_t *result = extra ? extra[i].result : NULL;
      rows[i] = (ae_store_job){
          .id = job->id,
          .state = AE_JOB_QUEUED,
          .request_json = job->request_text->data,
          .idempotency_key = job->idem_key,
          .body_hash = job->idem_key ? job->body_hash : NULL,
          .client_ref = job->client_ref,
          .priority = job->priority,
          .timeout_ms = job->timeout_ms,
          .created_ms = job->created_ms,
          .seq = job->seq,
          .study = job->study[0] ? job->study : NULL,
          .canonical = job->canonical[0] ? job->canonical : NULL,
          .cached = job->cached,
          .cache_key = job->cache_key[0] ? job->cache_key : NULL,
          .follow = extra && !result ? extra[i].follow : 0,
          .ttl_ms = job->study[0] ? -1 : srv->opt->job_ttl_secs * 1000};
      if (result) { /* a cache hit: stored finished, with its result */
        rows[i].state = AE_JOB_SUCCEEDED;
        rows[i].result_json = result_texts[i];
        rows[i].finished_ms = now_ms;
        rows[i].expires_ms =
            job->study[0] ? 0 : now_ms + srv->opt->job_ttl_secs * 1000;
      }
    }
    rc = ae_store_insert(srv->store, rows, n);
    if (rc == AE_EINVAL && srv->fleet && idem_key) {
      /* --fleet: the key is unique in the store; another replica's
       * request with it won (the caller answers with its jobs). */
      ae_log(AE_LOG_INFO, "Idempotency-Key taken by another replica (%s)",
             ae_store_errmsg(srv->store));
      goto fail;
    }
    rc = store_note(srv, "insert", out[0]->id, rc);
    if (rc) {
      rc = AE_EIO;
      goto fail;
    }
    free(rows);
    rows = NULL;
  }
  /* Nothing can fail from here on: take the requests and queue (cache
   * hits finish at once, deferred jobs wait for their leader). */
  srv->next_seq += (long long)n;
  size_t queued = 0;
  for (size_t i = 0; i < n; i++) {
    ae_job *job = out[i];
    json_t *result = extra ? extra[i].result : NULL;
    job->req = reqs[i];
    job->has_req = 1;
    json_decref(job->req.normalised); /* its text is request_text */
    job->req.normalised = NULL;
    ae_job_inputs_to_text(job); /* held once: in request_text */
    memset(&reqs[i], 0, sizeof reqs[i]);
    if (result) { /* a cache hit: finished at once, with its result */
      json_decref(result);
      extra[i].result = NULL;
      ae_request_free(&job->req);
      job->has_req = 0;
      job->state = AE_JOB_SUCCEEDED;
      job->finished_ms = now_ms;
      job->expires_ms =
          job->study[0] ? 0 : now_ms + srv->opt->job_ttl_secs * 1000;
      if (ae_job_set_tail(job, "result", result_texts[i]))
        ae_log(AE_LOG_ERROR, "job %s: out of memory rendering its end",
               job->id);
      ae_job_table_add(&srv->jobs, job);
      if (!job->study[0]) ae_job_table_finished(&srv->jobs, job);
      ae_metrics_job_finished(&srv->metrics, AE_JOB_SUCCEEDED, "cached");
      continue;
    }
    ae_job_table_add(&srv->jobs, job);
    memset(&reqs[i], 0, sizeof reqs[i]);
    if (srv->fleet && !job->deferred) {
      /* It waits in the store's shared queue for any replica
       * (fleet.c claims it); this copy answers the submission only. */
      ae_request_free(&job->req);
      job->has_req = 0;
      job->remote = 1;
      srv->jobs.n_remote++;
      ae_job_table_recount(&srv->jobs, job);
      continue;
    }
    if (!job->deferred) entries[queued++] = &job->entry;
  }
  ae_queue_push(&srv->queue, entries, queued);
  free(entries);
  srv->n_queued += queued;
  srv->metrics.jobs_submitted += n;
  if (srv->fleet && srv->on_submitted) srv->on_submitted(srv);
  for (size_t i = 0; i < n; i++)
    free(result_texts[i]);
  free(result_texts);
  return AE_OK;

fail:
  if (result_texts)
    for (size_t i = 0; i < n; i++)
      free(result_texts[i]);
  free(result_texts);
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
  if (job->handed_over || job->deferred ||
      ae_queue_remove(&srv->queue, &job->entry)) {
    /* The client asked: cancelled for good, even while draining (reason
     * "draining" would hand the job over to the next start). */
    ae_job_finish(srv, job, AE_JOB_CANCELLED, "cancelled", NULL, NULL);
    return;
  }
  /* A worker holds it: ask the engine to stop at its next checkpoint. */
  atomic_store(&job->cancel, 1);
  if (!job->cancel_requested) {
    job->cancel_requested = 1;
    ae_job_render_changed(job);
    ae_job_table_recount(&srv->jobs, job);
    if (srv->store) {
      store_note(srv, "mark cancel", job->id,
                 ae_store_mark_cancel_requested(srv->store, job->id));
    }
  }
}

int ae_job_delete(ae_server *srv, ae_job *job) {
  if (!ae_job_terminal(job)) return AE_EINVAL;
  if (srv->store) {
    /* Not durable, not deleted: the job stays, and comes back after a
     * restart either way. */
    int rc = store_note(srv, "delete", job->id,
                        ae_store_delete(srv->store, job->id));
    if (rc) return rc;
  }
  if (!job->transient) ae_job_table_remove(&srv->jobs, job);
  return AE_OK;
}

/* ---- the cap on finished jobs in memory, and the sweep ---- */

void ae_jobs_trim_finished(ae_server *srv) {
  if (!srv->store) return; /* nowhere to read them back from */
  ae_job *job;
  while ((job = ae_job_table_over_cap(&srv->jobs))) {
    ae_log(AE_LOG_DEBUG, "job %s: dropped from memory, kept in the store",
           job->id);
    ae_job_table_remove(&srv->jobs, job);
    srv->jobs.n_dropped++;
  }
}

/* --fleet: the copies of jobs accepted here and queued in the store have
 * answered their submission; the store answers for them from now on. */
static void drop_remote_copies(ae_server *srv) {
  ae_job_iter it;
  ae_job_iter_start(&srv->jobs, NULL, &it);
  for (ae_job *job; srv->jobs.n_remote && (job = ae_job_iter_next(&it));)
    if (job->remote) ae_job_table_remove(&srv->jobs, job);
}

/* --fleet: the study members whose end is stored (fleet_release). */
static void release_fleet_members(ae_server *srv) {
  if (!srv->n_fleet_release) return;
  ae_job_iter it;
  ae_job_iter_start(&srv->jobs, NULL, &it);
  for (ae_job *job; (job = ae_job_iter_next(&it));)
    if (job->fleet_release) ae_job_table_remove(&srv->jobs, job);
  srv->n_fleet_release = 0;
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
  ae_jobs_trim_finished(srv);
  drop_remote_copies(srv);
  release_fleet_members(srv);
  int store_is_sqlite =
      srv->store && !strcmp(ae_store_backend_name(srv->store), "sqlite");
  if (srv->store && !store_is_sqlite &&
      now_ms - srv->store_probe_ms >= STORE_PROBE_MS) {
    srv->store_probe_ms = now_ms;
    store_ping(srv);
  } else if (srv->store_failing && store_is_sqlite && srv->opt->state_dir &&
             now_ms - srv->store_probe_ms >= STORE_PROBE_MS) {
    srv->store_probe_ms = now_ms;
    if (!store_probe(srv->opt->state_dir)) store_wrote(srv);
  }
  if (expired && srv->store) {
    int rc = ae_store_expire(srv->store, now_ms);
    if (rc) ae_jobs_store_failed(srv, "expire", "", rc);
  }
}

/* ---- set-up and tear-down ---- */

/* Large buffers (a job's request text, its inputs, a body being parsed)
 * are mapped and unmapped by malloc, never left in its heap once free:
 * glibc's default threshold rises to the size of the largest block freed
 * (up to 32 MiB), after which megabyte texts come from the heap and
 * fragment it, and RSS stays above what the jobs hold.  Process-wide;
 * set once here, before any job exists. */
#define JOBS_MMAP_THRESHOLD (256 * 1024)

int ae_jobs_init(ae_server *srv) {
  srv->next_seq = 1;
#ifdef M_MMAP_THRESHOLD
  if (!mallopt(M_MMAP_THRESHOLD, JOBS_MMAP_THRESHOLD))
    ae_log(AE_LOG_WARN, "mallopt(M_MMAP_THRESHOLD) failed");
#endif
  if (ae_job_table_init(&srv->jobs)) return AE_ENOMEM;
  srv->jobs.budget_bytes = srv->opt->max_jobs_memory > 0
                               ? (size_t)srv->opt->max_jobs_memory
                               : ae_jobs_default_memory_budget();
  /* --max-job-memory is checked against the engine's plan of the whole
   * job (ae_jobs_admit), not the parser's sum of activations (which
   * ignores the metric selection and the kernels). */
  srv->jobs.max_finished = (size_t)srv->opt->max_finished_jobs;
  srv->jobs.job_limit_bytes = srv->limits.max_working_set_bytes;
  srv->limits.max_working_set_bytes = 0;
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
  if (srv->n_unsaved)
    ae_log(AE_LOG_WARN,
           "store: %zu terminal state(s) never written (the store did not "
           "answer again): those jobs run again at the next start",
           srv->n_unsaved);
  while (srv->unsaved_head) {
    ae_unsaved_finish *u = srv->unsaved_head;
    srv->unsaved_head = u->next;
    unsaved_free(u);
  }
  srv->unsaved_tail = NULL;
  srv->n_unsaved = 0;
  ae_job_table_free(&srv->jobs);
  ae_queue_free(&srv->queue);
}
