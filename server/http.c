/* http.c: archevald's HTTP layer: libmicrohttpd in external-epoll mode on
 * the libuv loop, one handler per route of route.c, long polls.
 *
 * Design.  MHD runs without threads of its own: a uv_poll_t watches MHD's
 * epoll fd and a uv_timer_t is re-armed from MHD_get_timeout() after every
 * MHD_run(), so every callback below runs on the loop thread and touches
 * the jobs without locks; a uv_prepare_t runs MHD again before the loop
 * sleeps whenever a connection was resumed.  One request = one ae_http_req
 * (MHD's con_cls), freed in the completion callback, which also writes the
 * log line and the metrics.  A GET with ?wait_ms= on an unfinished job
 * suspends its connection and hangs an ae_waiter (with its own timer) on
 * the job; the job's end (told by the state machine through the listener
 * this file registers) or the timer resumes it, and MHD calls the handler
 * again, which answers with the job as it is then.  Listings are streamed
 * (MHD pulls them block by block, one job rendered at a time), and MHD
 * runs at most once per turn of the loop while it has answers to stream
 * (an idle handle, not a 0 ms timer), so no request holds the loop for
 * long.  A large POST body is parsed, validated and rendered on libuv's
 * thread pool while its connection is suspended (parse_off_loop); the
 * jobs are touched only on the loop.  Connections over
 * --max-connections-per-ip are counted here and answered 429.  Errors
 * become problem+json in one place (respond_problem); a store write that
 * failed becomes 503/507 (fail_store).  All of it is the loop thread's. */
#include "config.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "api/status.h"
#include "server/cache.h"
#include "server/daemon.h"
#include "server/fleet.h"
#include "server/http.h"
#include "server/job_fetch.h"
#include "server/job_render.h"
#include "server/job_state.h"
#include "server/models.h"
#include "server/route.h"
#include "server/study.h"
#include "server/ui_assets.h"
#include "server/util.h"
#include "server/workers.h"

#define MAX_WAIT_MS 30000
/* How often connections are checked for slow requests. */
#define SLOW_CHECK_MS 200

typedef struct ae_waiter ae_waiter;
typedef struct ae_http_conn ae_http_conn;
typedef struct ae_body_parse ae_body_parse;

/* The HTTP layer's state (srv->http), the loop's. */
struct ae_http {
  struct MHD_Daemon *mhd;
  uv_poll_t mhd_poll;
  uv_timer_t mhd_timer;
  uv_prepare_t prepare; /* runs MHD after connections were resumed */
  uv_idle_t mhd_idle;   /* runs MHD next turn: it has work at once */
  uv_timer_t slow_timer;
  int need_mhd_run;
  ae_waiter *all_waiters;      /* every suspended long poll */
  struct ae_http_req *uploads; /* every model upload being imported */
  ae_http_conn *conns;         /* every open TCP connection */
  long long n_slow_dropped;    /* connections dropped as too slow */
  int open_handles;            /* libuv handles not yet closed */
  long long n_parsed_off_loop; /* bodies parsed on the thread pool */
};

typedef struct ae_http_req ae_http_req;

struct ae_waiter {
  uv_timer_t timer;
  ae_server *srv;
  ae_http_req *req;
  ae_job *job;
  /* A long poll on a job another replica runs (--fleet): no job here to
   * wait on, so the timer polls the store until the job ends or the
   * deadline passes. */
  char remote_id[32];
  long long deadline_ns;
  ae_waiter *next, *prev;         /* the job's waiters */
  ae_waiter *all_next, *all_prev; /* every waiter */
};

struct ae_http_req {
  ae_server *srv;
  struct MHD_Connection *conn;
  char request_id[132];
  long long start_ns;
  char method[16];
  char *path;
  int route;         /* AE_ROUTE_* for the metrics */
  char id[32];       /* the {id} of the path */
  char model[80];    /* the {model} of the path */
  const char *allow; /* a 405's Allow header (static) */
  char *body;
  size_t len, cap;
  long long max_body; /* the route's body limit */
  int too_large;      /* the body went over the limit: dropped, 413 at end */
  size_t discarded;   /* bytes dropped since */
  int status;         /* the status sent, 0 until then */
  int responded;
  int resumed;
  char job_id[32]; /* for the log line */
  ae_waiter *waiter;
  ae_model_upload *upload; /* POST /v1/models while its import runs */
  int upload_done;         /* ... and once it finished */
  int upload_stopped;      /* ... or the server stopped waiting for it */
  ae_http_req *upload_next, *upload_prev; /* http->uploads, while running */
  /* A large POST body is parsed on libuv's thread pool while the
   * connection is suspended: parse is in flight (or NULL), parsed holds
   * its outcome once the handler runs again. */
  ae_body_parse *parse;
  ae_body_parse *parsed;
  int parse_tried; /* the pool was asked once: never again */
  /* A submission's parse, reserved in --max-jobs-memory before it starts
   * (ae_jobs_reserve_parse) and given back once it parsed, before the
   * jobs themselves are admitted, or when the request ends. */
  size_t parse_reserved;
};

/* The pure part of a large POST (JSON, its hash and, for one job, the
 * request's validation), done on libuv's thread pool: everything in it
 * belongs to the pool thread until after_parse runs on the loop.  The
 * inputs are a copy of what it needs (the body stays the request's: the
 * suspended connection keeps it); catalog and limits are read-only once
 * the daemon runs.  req is NULL once on_completed let go of the request
 * (the daemon stopped first). */
struct ae_body_parse {
  uv_work_t work;
  ae_http_req *req;
  const char *body;
  size_t len;
  int validate; /* one job: ae_request_parse too */
  const ae_catalog *catalog;
  const ae_limits *limits;
  /* Outcome. */
  json_t *json;       /* NULL when the body is not JSON (problem set) */
  ae_problem problem; /* the body's problem (400), or the request's (422) */
  char hash[65];      /* SHA-256 of the body */
  int request_rc;     /* ae_request_parse's, when validate */
  ae_request request; /* owned until taken */
  int has_request;
  ae_cache_prepared prepared; /* the request's text and keys */
  /* A batch of at most max_batch items: each item validated and
   * rendered (n_items 0 when the body is not such a batch). */
  long long max_batch;
  size_t n_items;
  ae_request *items; /* owned until taken (then zeroed) */
  int *item_rc;
  ae_problem *item_problem;
  ae_cache_prepared *item_prepared; /* NULL when one failed */
  int has_prepared;
  char *owned_body; /* the body, once the request let go of it */
};

typedef enum MHD_Result (*route_handler)(ae_http_req *r);

static void http_run(ae_server *srv);

/* ---- responses ---- */

static enum MHD_Result respond(ae_http_req *r, int status, char *body,
                               size_t len, const char *content_type,
                               int job_resource, int retry_after,
                               const char *allow, const char *location,
                               int close_connection) {
  struct MHD_Response *resp;
  if (body) {
    resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  } else {
    resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  }
  if (!resp) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "X-Request-Id", r->request_id);
  if (content_type)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (job_resource)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (retry_after > 0) {
    char value[16];
    snprintf(value, sizeof value, "%d", retry_after);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, value);
  }
  if (allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
  if (location)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
  if (close_connection)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  if (ok == MHD_YES) {
    r->status = status;
    r->responded = 1;
  }
  return ok;
}

static enum MHD_Result respond_json(ae_http_req *r, int status, json_t *j,
                                    int job_resource, int retry_after,
                                    const char *location);

static enum MHD_Result respond_problem_full(ae_http_req *r, ae_problem *p,
                                            int retry_after, const char *allow,
                                            int close) {
  if (p->status == 500)
    ae_log(AE_LOG_ERROR, "request_id=%s %s %s: %s", r->request_id, r->method,
           r->path, p->detail ? p->detail : "");
  json_t *j = ae_problem_to_json(p, r->path);
  char *text = j ? ae_json_dumps(j) : NULL;
  json_decref(j);
  int status = p->status ? p->status : 500;
  ae_problem_clear(p);
  if (!text) return MHD_NO;
  return respond(r, status, text, strlen(text), "application/problem+json", 0,
                 retry_after, allow, NULL, close);
}

static enum MHD_Result respond_problem(ae_http_req *r, ae_problem *p) {
  return respond_problem_full(r, p, 0, NULL, 0);
}

static enum MHD_Result fail(ae_http_req *r, int status, const char *code,
                            const char *title, int retry_after, const char *fmt,
                            ...) __attribute__((format(printf, 6, 7)));

static enum MHD_Result fail(ae_http_req *r, int status, const char *code,
                            const char *title, int retry_after, const char *fmt,
                            ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  ae_problem p = AE_PROBLEM_INIT;
  ae_problem_set(&p, status, code, title, "%s", detail);
  return respond_problem_full(r, &p, retry_after, NULL, 0);
}

/* 500 for a failure of ours (memory, the store); logged, not leaked. */
static enum MHD_Result fail_internal(ae_http_req *r, int rc) {
  ae_log(AE_LOG_ERROR, "request_id=%s %s %s: internal error: %s", r->request_id,
         r->method, r->path, ae_strerror(rc));
  return fail(r, 500, "internal", "Internal error", 0,
              "The server failed to handle the request; it logged why "
              "under request id %s.",
              r->request_id);
}

/* The store failed to write what this request needed: 507 when the disk
 * is full, else 503; nothing was acknowledged. */
static enum MHD_Result fail_store(ae_http_req *r, const char *what) {
  ae_server *srv = r->srv;
  if (srv->store_full)
    return fail(r, 507, "insufficient_storage", "Insufficient storage", 5,
                "The job store is full; the %s was not done. Delete "
                "finished jobs or free disk space.",
                what);
  return fail(r, 503, "store_unavailable", "Store unavailable", 5,
              "The job store failed to write; the %s was not done.", what);
}

/* The store failed to read what this request asks for (a job this daemon
 * does not hold in memory): 503, nothing changed. */
static enum MHD_Result fail_store_read(ae_http_req *r, const char *what) {
  return fail(r, 503, "store_unavailable", "Store unavailable", 5,
              "The job store failed to read; the %s was not done.", what);
}

static enum MHD_Result respond_json(ae_http_req *r, int status, json_t *j,
                                    int job_resource, int retry_after,
                                    const char *location) {
  char *text = j ? ae_json_dumps(j) : NULL;
  json_decref(j);
  if (!text) return fail_internal(r, AE_ENOMEM);
  return respond(r, status, text, strlen(text), "application/json",
                 job_resource, retry_after, NULL, location, 0);
}

/* The job resource, from its cache when terminal. */
static enum MHD_Result respond_job(ae_http_req *r, int status, ae_job *job,
                                   int with_location) {
  size_t len = 0;
  char *text = ae_job_render(r->srv, job, &len);
  if (!text) return fail_internal(r, AE_ENOMEM);
  snprintf(r->job_id, sizeof r->job_id, "%s", job->id);
  char location[64];
  snprintf(location, sizeof location, "/v1/jobs/%s", job->id);
  return respond(r, status, text, len, "application/json", 1,
                 ae_job_terminal(job) ? 0 : 1, NULL,
                 with_location ? location : NULL, 0);
}

/* ---- request helpers ---- */

static const char *header(ae_http_req *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static const char *query(ae_http_req *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* 415 / 400 checks shared by POST handlers; parses the body into *out. */
static int read_json_body(ae_http_req *r, json_t **out,
                          enum MHD_Result *answer) {
  *out = NULL;
  const char *ct = header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (r->len > 0 && !ae_content_type_is_json(ct)) {
    *answer = fail(r, 415, "unsupported_media_type", "Unsupported media type",
                   0, "The body must be application/json, not %s.", ct);
    return AE_EINVAL;
  }
  ae_body_parse *done = r->parsed;
  if (done) { /* parsed on the pool (parse_off_loop) */
    if (!done->json) {
      *answer = respond_problem(r, &done->problem);
      return AE_EINVAL;
    }
    *out = done->json;
    done->json = NULL;
    return AE_OK;
  }
  ae_problem p = AE_PROBLEM_INIT;
  if (ae_json_parse_body(r->body, r->len, out, &p)) {
    *answer = respond_problem(r, &p);
    return AE_EINVAL;
  }
  return AE_OK;
}

/* The body's SHA-256 (for Idempotency-Key), from the pool when it ran. */
static void body_hash(ae_http_req *r, char hash[65]) {
  if (r->parsed)
    memcpy(hash, r->parsed->hash, 65);
  else
    ae_sha256_hex(r->body ? r->body : "", r->len, hash);
}

/* Validates one job request: the pool's outcome when it ran, else here. */
static int parse_request(ae_http_req *r, const json_t *body, ae_request *req,
                         ae_problem *p) {
  ae_body_parse *done = r->parsed;
  if (done && done->validate) {
    int rc = done->request_rc;
    if (done->has_request) {
      *req = done->request;
      done->has_request = 0;
    }
    *p = done->problem;
    done->problem = (ae_problem)AE_PROBLEM_INIT;
    return rc;
  }
  return ae_request_parse_models(body, &r->srv->catalog,
                                 ae_models_source(r->srv), &r->srv->limits, req,
                                 p);
}

/* ---- handlers ---- */

static enum MHD_Result h_live(ae_http_req *r) {
  return respond(r, 200, NULL, 0, NULL, 0, 0, NULL, NULL, 0);
}

static enum MHD_Result h_ready(ae_http_req *r) {
  ae_server *srv = r->srv;
  if (!srv->draining && !srv->store_failing && ae_workers_all_ready(srv))
    return respond(r, 200, NULL, 0, NULL, 0, 0, NULL, NULL, 0);
  if (srv->draining)
    return fail(r, 503, "draining", "Draining", 5,
                "The server is shutting down.");
  if (srv->store_failing)
    return fail(r, 503, "store_unavailable", "Store unavailable", 1,
                "The job store fails (%s); ready again once it answers "
                "(a PostgreSQL store is pinged every half second).",
                srv->store_reason);
  size_t warming = 0, failed = 0;
  for (size_t i = 0; i < srv->n_workers; i++) {
    warming += !srv->workers[i].ready;
    failed += srv->workers[i].failed;
  }
  return fail(r, 503, "not_ready", "Not ready", 1,
              "%zu of %zu workers are still warming up, %zu left service.",
              warming, srv->n_workers, failed);
}

/* One entry per backend ("host", "cuda:N"), ready when every worker of it
 * is; workers of a fallen-back cuda device count as "host". */
static json_t *backends_json(ae_server *srv) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < srv->n_workers; i++) {
    ae_worker *w = &srv->workers[i];
    char name[32];
    snprintf(name, sizeof name, "%s", w->name);
    if (!strncmp(name, "host", 4)) name[4] = '\0';
    int ready = w->ready && !w->failed;
    json_t *found = NULL;
    size_t k;
    json_t *entry;
    json_array_foreach(a, k, entry) {
      if (!strcmp(json_string_value(json_object_get(entry, "name")), name))
        found = entry;
    }
    if (found) {
      if (!ready) json_object_set_new(found, "ready", json_false());
      continue;
    }
    json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "name", name,
                                       "device", w->device, "ready", ready));
  }
  return a;
}

/* "synthetic" (any shape; 10 classes unless the request says otherwise)
 * and the registry. */
static json_t *datasets_json(ae_server *srv) {
  json_t *a = json_array();
  if (!a) return NULL;
  json_array_append_new(a, json_pack("{s:s, s:s, s:n, s:i, s:n}", "name",
                                     "synthetic", "format", "synthetic",
                                     "shape", "num_classes", 10, "size"));
  for (size_t i = 0; i < srv->registry.n; i++) {
    const ae_dataset_info *d = &srv->registry.infos[i];
    json_t *shape = json_array();
    for (int k = 0; shape && k < d->rank; k++)
      json_array_append_new(shape, json_integer(d->shape[k]));
    const ae_dataset *set = &srv->registry.sets[i];
    json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:o, s:i, s:I}", "name",
                                       d->name, "format", set->format, "split",
                                       set->split, "shape", shape,
                                       "num_classes", d->num_classes, "size",
                                       (json_int_t)d->size));
  }
  return a;
}

static enum MHD_Result h_root(ae_http_req *r) {
  ae_server *srv = r->srv;
  const ae_options *o = srv->opt;
  json_t *limits = json_pack(
      "{s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:f, s:i, s:I}",
      "max_queue", (json_int_t)o->max_queue, "max_batch",
      (json_int_t)o->max_batch, "max_body_bytes", (json_int_t)o->max_body_bytes,
      "max_model_bytes", (json_int_t)o->max_model_bytes, "default_timeout_ms",
      (json_int_t)o->default_timeout_ms, "job_ttl_secs",
      (json_int_t)o->job_ttl_secs, "max_wait_ms", MAX_WAIT_MS, "max_nodes",
      srv->limits.max_nodes, "max_inputs_per_node",
      srv->limits.max_inputs_per_node, "max_params", srv->limits.max_params,
      "max_batch_size", srv->limits.max_batch_size, "max_job_memory_bytes",
      (json_int_t)srv->jobs.job_limit_bytes);
  json_t *j =
      json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "name", "archeval", "version",
                PACKAGE_VERSION, "api", "v1", "backends", backends_json(srv),
                "datasets", datasets_json(srv), "limits", limits);
  return respond_json(r, 200, j, 0, 0, NULL);
}

static enum MHD_Result h_metrics(ae_http_req *r) {
  size_t len = 0;
  ae_server *srv = r->srv;
  ae_metrics_worker *workers =
      calloc(srv->n_workers ? srv->n_workers : 1, sizeof *workers);
  if (!workers) return fail_internal(r, AE_ENOMEM);
  ae_workers_gauges(srv, workers);
  ae_metrics_gauges gauges = {
      .n_queued = srv->n_queued,
      .n_slow_dropped = srv->http->n_slow_dropped,
      .workers = workers,
      .replica = srv->replica_id,
      .jobs_held = srv->jobs.n_jobs,
      .jobs_memory_bytes = srv->jobs.held_bytes,
      .jobs_memory_budget_bytes = srv->jobs.budget_bytes,
      .jobs_memory_reserved_bytes = srv->jobs.reserved_bytes,
      .finished_held = srv->jobs.n_finished};
  ae_metrics_store store;
  if (srv->store) {
    memset(&store, 0, sizeof store);
    store.backend = ae_store_backend_name(srv->store);
    store.reachable = !srv->store_failing;
    store.latency_bounds = ae_store_latency_bounds;
    store.unsaved_finishes = srv->n_unsaved;
    store.has_leases = srv->fleet; /* every running job holds a lease */
    store.leases_held = srv->n_running;
    store.leases_requeued = srv->leases_requeued;
    store.leases_exhausted = srv->leases_exhausted;
    for (int op = 0; op < AE_STORE_OP_COUNT; op++)
      if (ae_store_latency_read(srv->store, (ae_store_op)op,
                                &store.latency[op]))
        memset(&store.latency[op], 0, sizeof store.latency[op]);
    gauges.store = &store;
  }
  char *text = ae_metrics_render(&srv->metrics, &gauges, &len);
  free(workers);
  if (!text) return fail_internal(r, AE_ENOMEM);
  return respond(r, 200, text, len, "text/plain; version=0.0.4", 0, 0, NULL,
                 NULL, 0);
}

static enum MHD_Result h_datasets(ae_http_req *r) {
  json_t *j = json_pack("{s:o}", "datasets", datasets_json(r->srv));
  return respond_json(r, 200, j, 0, 0, NULL);
}

/* Idempotency: returns 1 when the answer was given from an earlier job
 * (or a mismatch), 0 to go on.  Batch jobs carry "KEY\nINDEX"; a replay
 * has the body of the first POST (same hash), so its "jobs" array says
 * how many there were: when some of them were deleted or expired since,
 * the answer is 410 naming them, never a shorter list.  A key none of
 * whose jobs is left is forgotten. */
/* One read of a key's jobs (n of them, a batch's "KEY\nINDEX" when
 * batch): the first one found to *job (the caller releases it), how many
 * are missing and the first 16 missing indices.  0, or the lookup's
 * error. */
static int idempotent_read(ae_server *srv, const char *key, int batch, size_t n,
                           ae_job **job, size_t *missing, char *missing_list,
                           size_t list_len) {
  *job = NULL;
  *missing = 0;
  missing_list[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    char k[400];
    snprintf(k, sizeof k, batch ? "%s\n%zu" : "%s", key, i);
    int rc;
    ae_job *each = ae_job_lookup_idem(srv, k, &rc);
    if (rc != AE_OK && rc != AE_ENOTFOUND) {
      ae_job_release(*job);
      *job = NULL;
      return rc;
    }
    if (each && !*job)
      *job = each;
    else
      ae_job_release(each);
    if (!each) {
      size_t used = strlen(missing_list);
      if (*missing < 16)
        snprintf(missing_list + used, list_len - used, "%s%zu",
                 *missing ? ", " : "", i);
      (*missing)++;
    }
  }
  return AE_OK;
}

static int idempotent_replay(ae_http_req *r, const char *key, const char *hash,
                             const json_t *batch_items,
                             enum MHD_Result *answer) {
  ae_server *srv = r->srv;
  int batch = batch_items != NULL;
  size_t n = batch ? json_array_size(batch_items) : 1;
  ae_job *job = NULL;
  size_t missing = 0;
  char missing_list[256] = "";
  int rc = idempotent_read(srv, key, batch, n, &job, &missing, missing_list,
                           sizeof missing_list);
  if (!rc && job && missing) {
    /* Part of a batch: another replica may have committed it between two
     * of the reads (a batch is committed at once, so the first read saw
     * none of it up to some index).  A second read tells that apart from
     * jobs deleted or expired since. */
    ae_job_release(job);
    rc = idempotent_read(srv, key, batch, n, &job, &missing, missing_list,
                         sizeof missing_list);
  }
  if (rc) {
    *answer = rc == AE_EIO ? fail_store_read(r, "idempotency check")
                           : fail_internal(r, rc);
    return 1;
  }
  if (!job) return 0;
  if (strcmp(job->body_hash, hash)) {
    ae_job_release(job);
    *answer =
        fail(r, 422, "idempotency_key_mismatch", "Idempotency key mismatch", 0,
             "Idempotency-Key %s was used with another body.", key);
    return 1;
  }
  if (!batch) {
    *answer = respond_job(r, 202, job, 1);
    ae_job_release(job);
    return 1;
  }
  ae_job_release(job);
  if (missing) {
    *answer = fail(r, 410, "idempotent_jobs_gone", "Jobs gone", 0,
                   "Idempotency-Key %s: %zu of the batch's %zu jobs were "
                   "deleted or expired (index %s%s); the others are still "
                   "kept.",
                   key, missing, n, missing_list, missing > 16 ? ", ..." : "");
    return 1;
  }
  json_t *jobs = json_array();
  for (size_t i = 0; jobs && i < n; i++) {
    char k[400];
    snprintf(k, sizeof k, "%s\n%zu", key, i);
    ae_job *each = ae_job_lookup_idem(srv, k, &rc);
    if (!each) { /* went (or the store failed) since the first pass */
      json_decref(jobs);
      *answer = rc == AE_ENOTFOUND
                    ? fail(r, 410, "idempotent_jobs_gone", "Jobs gone", 0,
                           "Idempotency-Key %s: job %zu of the "
                           "batch was deleted or expired.",
                           key, i)
                : rc == AE_EIO ? fail_store_read(r, "idempotency check")
                               : fail_internal(r, rc);
      return 1;
    }
    json_array_append_new(jobs, ae_job_to_json(srv, each));
    ae_job_release(each);
  }
  *answer = respond_json(r, 202, json_pack("{s:o}", "jobs", jobs), 1, 1, NULL);
  return 1;
}

static int idempotency_key(ae_http_req *r, const char **key,
                           enum MHD_Result *answer) {
  *key = header(r, "Idempotency-Key");
  if (*key && (strlen(*key) == 0 || strlen(*key) > 255)) {
    *answer = fail(r, 422, "invalid_request", "Invalid request", 0,
                   "Idempotency-Key must be 1 to 255 characters.");
    return AE_EINVAL;
  }
  return AE_OK;
}

static enum MHD_Result h_submit(ae_http_req *r) {
  ae_server *srv = r->srv;
  enum MHD_Result answer = MHD_NO;
  json_t *body = NULL;
  const char *key;
  if (idempotency_key(r, &key, &answer) || read_json_body(r, &body, &answer))
    return answer;
  char hash[65] = "";
  if (key) {
    body_hash(r, hash);
    if (idempotent_replay(r, key, hash, NULL, &answer)) {
      json_decref(body);
      return answer;
    }
  }
  if (srv->draining) {
    json_decref(body);
    return fail(r, 503, "draining", "Draining", 5,
                "The server is shutting down and accepts no new jobs.");
  }
  ae_request req;
  memset(&req, 0, sizeof req);
  ae_problem p = AE_PROBLEM_INIT;
  int rc = parse_request(r, body, &req, &p);
  json_decref(body);
  /* Parsed: the jobs' own count replaces the reservation (admit). */
  ae_jobs_release_parse(srv, &r->parse_reserved);
  if (rc) {
    if (!p.status) return fail_internal(r, rc);
    return respond_problem(r, &p);
  }
  size_t queued;
  if (!ae_fleet_queue_room(srv, 1, &queued)) {
    ae_request_free(&req);
    return fail(r, 429, "queue_full", "Queue full", 1,
                "%zu jobs are queued%s, the limit is %lld (--max-queue).",
                queued, srv->fleet ? " in the fleet" : "", srv->opt->max_queue);
  }
  int retry_after = 0;
  if ((rc = ae_jobs_admit(srv, &req, 1, 0, r->len, &p, &retry_after))) {
    ae_request_free(&req);
    if (!p.status) return fail_internal(r, rc);
    return respond_problem_full(r, &p, retry_after, NULL, 0);
  }
  ae_job *job = NULL;
  ae_cache_prepared *prepared =
      r->parsed && r->parsed->has_prepared ? &r->parsed->prepared : NULL;
  rc = ae_cache_submit_prepared(srv, &req, 1, key, hash, 0, NULL, prepared,
                                &job);
  if (rc == AE_EINVAL && key && srv->fleet) {
    /* Another replica stored the key first: its job is the answer. */
    ae_request_free(&req);
    if (idempotent_replay(r, key, hash, NULL, &answer)) return answer;
    return fail(r, 409, "idempotency_conflict", "Idempotency conflict", 1,
                "Idempotency-Key %s is being used by another request.", key);
  }
  if (rc) {
    ae_request_free(&req);
    return rc == AE_EIO ? fail_store(r, "job creation") : fail_internal(r, rc);
  }
  return respond_job(r, 202, job, 1);
}

/* Validates item i of a batch: the pool's outcome when it ran, else here. */
static int parse_batch_item(ae_http_req *r, const json_t *items, size_t i,
                            ae_request *req, ae_problem *p) {
  ae_body_parse *done = r->parsed;
  if (done && done->n_items == json_array_size(items)) {
    *req = done->items[i];
    memset(&done->items[i], 0, sizeof done->items[i]);
    *p = done->item_problem[i];
    done->item_problem[i] = (ae_problem)AE_PROBLEM_INIT;
    return done->item_rc[i];
  }
  return ae_request_parse_models(json_array_get(items, i), &r->srv->catalog,
                                 ae_models_source(r->srv), &r->srv->limits, req,
                                 p);
}

static enum MHD_Result h_batch(ae_http_req *r) {
  ae_server *srv = r->srv;
  enum MHD_Result answer = MHD_NO;
  json_t *body = NULL;
  const char *key;
  if (idempotency_key(r, &key, &answer) || read_json_body(r, &body, &answer))
    return answer;
  char hash[65] = "";
  if (key) {
    body_hash(r, hash);
    json_t *items = json_is_object(body) ? json_object_get(body, "jobs") : NULL;
    if (json_is_array(items) &&
        idempotent_replay(r, key, hash, items, &answer)) {
      json_decref(body);
      return answer;
    }
  }
  ae_problem p = AE_PROBLEM_INIT;
  json_t *items = json_is_object(body) ? json_object_get(body, "jobs") : NULL;
  if (!json_is_object(body)) {
    ae_problem_add(&p, "", "The body must be an object {\"jobs\": [...]}.");
  } else {
    const char *name;
    json_t *value;
    json_object_foreach(body, name, value) {
      if (strcmp(name, "jobs")) {
        char pointer[300];
        snprintf(pointer, sizeof pointer, "/%s", name);
        ae_problem_add(&p, pointer, "Unknown key.");
      }
    }
    if (!json_is_array(items))
      ae_problem_add(&p, "/jobs", "Required: an array of job requests.");
    else if (json_array_size(items) == 0)
      ae_problem_add(&p, "/jobs", "At least one job is required.");
    else if (json_array_size(items) > (size_t)srv->opt->max_batch)
      ae_problem_add(&p, "/jobs", "%zu jobs, the limit is %lld.",
                     json_array_size(items), srv->opt->max_batch);
  }
  if (p.status) {
    json_decref(body);
    return respond_problem(r, &p);
  }
  if (srv->draining) {
    json_decref(body);
    return fail(r, 503, "draining", "Draining", 5,
                "The server is shutting down and accepts no new jobs.");
  }
  size_t n = json_array_size(items);
  ae_request *reqs = calloc(n, sizeof *reqs);
  ae_job **jobs = calloc(n, sizeof *jobs);
  if (!reqs || !jobs) {
    free(reqs);
    free(jobs);
    json_decref(body);
    return fail_internal(r, AE_ENOMEM);
  }
  int rc = AE_OK;
  for (size_t i = 0; i < n; i++) {
    ae_problem item = AE_PROBLEM_INIT;
    int irc = parse_batch_item(r, items, i, &reqs[i], &item);
    if (irc && !item.status) {
      rc = irc;
      ae_problem_clear(&item);
      break;
    }
    if (irc) {
      char prefix[32];
      snprintf(prefix, sizeof prefix, "/jobs/%zu", i);
      ae_problem_prefix(&item, prefix);
      if (item.n_errors == 0)
        ae_problem_add(&p, prefix, "%s", item.detail ? item.detail : "");
      for (size_t k = 0; k < item.n_errors; k++)
        ae_problem_add(&p, item.errors[k].pointer, "%s", item.errors[k].detail);
      ae_problem_clear(&item);
      memset(&reqs[i], 0, sizeof reqs[i]);
    }
  }
  json_decref(body);
  /* Parsed: the jobs' own count replaces the reservation (admit). */
  ae_jobs_release_parse(srv, &r->parse_reserved);
  enum MHD_Result result;
  int retry_after = 0;
  size_t queued = 0;
  if (rc) {
    result = fail_internal(r, rc);
  } else if (!p.status &&
             (rc = ae_jobs_admit(srv, reqs, n, 1, r->len, &p, &retry_after))) {
    result = p.status ? respond_problem_full(r, &p, retry_after, NULL, 0)
                      : fail_internal(r, rc);
  } else if (p.status) {
    result = respond_problem(r, &p);
  } else if (!ae_fleet_queue_room(srv, n, &queued)) {
    result =
        fail(r, 429, "queue_full", "Queue full", 1,
             "%zu jobs are queued%s, %zu more would pass the limit of "
             "%lld (--max-queue).",
             queued, srv->fleet ? " in the fleet" : "", n, srv->opt->max_queue);
  } else {
    /* One store transaction for the batch; job i keeps "KEY\nI". */
    ae_cache_prepared *prepared =
        r->parsed && r->parsed->n_items == n ? r->parsed->item_prepared : NULL;
    rc = ae_cache_submit_prepared(srv, reqs, n, key, hash, 1, NULL, prepared,
                                  jobs);
    if (rc == AE_EINVAL && key && srv->fleet) {
      /* Another replica stored the key's batch first (all or nothing):
       * replaying the request returns that batch. */
      result = fail(r, 409, "idempotency_conflict", "Idempotency conflict", 1,
                    "Idempotency-Key %s was used at the same time on another "
                    "replica; retry to get its jobs.",
                    key);
    } else if (rc) {
      result =
          rc == AE_EIO ? fail_store(r, "batch creation") : fail_internal(r, rc);
    } else {
      json_t *out = json_array();
      for (size_t i = 0; out && i < n; i++)
        json_array_append_new(out, ae_job_to_json(srv, jobs[i]));
      result =
          respond_json(r, 202, json_pack("{s:o}", "jobs", out), 1, 1, NULL);
    }
  }
  for (size_t i = 0; i < n; i++)
    ae_request_free(&reqs[i]);
  ae_problem_clear(&p);
  free(reqs);
  free(jobs);
  return result;
}

/* ---- long polls ---- */

static void waiter_closed(uv_handle_t *handle) {
  free(handle->data);
}

static void waiter_release(ae_waiter *w) {
  ae_server *srv = w->srv;
  if (w->prev)
    w->prev->next = w->next;
  else if (w->job)
    w->job->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  if (w->all_prev)
    w->all_prev->all_next = w->all_next;
  else
    srv->http->all_waiters = w->all_next;
  if (w->all_next) w->all_next->all_prev = w->all_prev;
  uv_timer_stop(&w->timer);
  uv_close((uv_handle_t *)&w->timer, waiter_closed);
  if (w->req) {
    w->req->waiter = NULL;
    w->req->resumed = 1;
    MHD_resume_connection(w->req->conn);
    srv->http->need_mhd_run = 1;
  }
}

static void on_wait_timeout(uv_timer_t *timer) {
  ae_waiter *w = timer->data;
  ae_server *srv = w->srv;
  waiter_release(w);
  http_run(srv);
}

/* The state machine's listener: the job is terminal, its long polls
 * answer now. */
static void on_terminal(ae_server *srv, ae_job *job) {
  (void)srv;
  while (job->waiters)
    waiter_release(job->waiters);
}

static void wake_all(ae_server *srv) {
  while (srv->http->all_waiters)
    waiter_release(srv->http->all_waiters);
}

/* How often a long poll on another replica's job reads the store, in case
 * a notification was lost (its end's notification wakes it at once). */
#define REMOTE_POLL_MS 250

static void on_remote_poll(uv_timer_t *timer) {
  ae_waiter *w = timer->data;
  ae_server *srv = w->srv;
  int rc;
  ae_job *job = ae_job_lookup(srv, w->remote_id, &rc);
  int done = !job || ae_job_terminal(job) || ae_mono_ns() >= w->deadline_ns;
  ae_job_release(job);
  if (!done) return;
  waiter_release(w);
  http_run(srv);
}

/* A job changed state somewhere in the fleet (fleet.c's notifications):
 * the long polls on it read the store now. */
static void on_job_changed(ae_server *srv, const char *id) {
  if (!srv->http) return;
  int waiting = 0;
  for (ae_waiter *w = srv->http->all_waiters; w && !waiting; w = w->all_next)
    waiting = w->remote_id[0] && !strcmp(w->remote_id, id);
  if (!waiting) return;
  int rc;
  ae_job *job = ae_job_lookup(srv, id, &rc);
  int done = !job || ae_job_terminal(job);
  ae_job_release(job);
  if (!done) return; /* started, say: the polls go on */
  ae_waiter *w = srv->http->all_waiters;
  while (w) {
    ae_waiter *next = w->all_next;
    if (w->remote_id[0] && !strcmp(w->remote_id, id)) waiter_release(w);
    w = next;
  }
  http_run(srv);
}

static int suspend_remote(ae_http_req *r, const ae_job *job,
                          long long wait_ms) {
  ae_server *srv = r->srv;
  ae_waiter *w = calloc(1, sizeof *w);
  if (!w) return AE_ENOMEM;
  if (uv_timer_init(srv->loop, &w->timer)) {
    free(w);
    return AE_EINTERNAL;
  }
  w->timer.data = w;
  w->srv = srv;
  w->req = r;
  snprintf(w->remote_id, sizeof w->remote_id, "%s", job->id);
  w->deadline_ns = ae_mono_ns() + wait_ms * 1000000LL;
  w->all_next = srv->http->all_waiters;
  if (w->all_next) w->all_next->all_prev = w;
  srv->http->all_waiters = w;
  r->waiter = w;
  uint64_t every =
      wait_ms < REMOTE_POLL_MS ? (uint64_t)wait_ms : REMOTE_POLL_MS;
  uv_timer_start(&w->timer, on_remote_poll, every, every);
  MHD_suspend_connection(r->conn);
  return AE_OK;
}

static int suspend_for(ae_http_req *r, ae_job *job, long long wait_ms) {
  ae_server *srv = r->srv;
  ae_waiter *w = calloc(1, sizeof *w);
  if (!w) return AE_ENOMEM;
  if (uv_timer_init(srv->loop, &w->timer)) {
    free(w);
    return AE_EINTERNAL;
  }
  w->timer.data = w;
  w->srv = srv;
  w->req = r;
  w->job = job;
  w->next = job->waiters;
  if (w->next) w->next->prev = w;
  job->waiters = w;
  w->all_next = srv->http->all_waiters;
  if (w->all_next) w->all_next->all_prev = w;
  srv->http->all_waiters = w;
  r->waiter = w;
  uv_timer_start(&w->timer, on_wait_timeout, (uint64_t)wait_ms, 0);
  MHD_suspend_connection(r->conn);
  return AE_OK;
}

/* The job of the request's path: the table's, or read from the store
 * (transient: the caller releases it).  NULL with the answer given. */
static ae_job *path_job(ae_http_req *r, enum MHD_Result *answer) {
  int rc;
  ae_job *job = ae_job_lookup(r->srv, r->id, &rc);
  if (job) return job;
  if (rc == AE_ENOTFOUND)
    *answer = fail(r, 404, "not_found", "Not found", 0,
                   "No job %s (unknown or expired).", r->id);
  else if (rc == AE_EIO)
    *answer = fail_store_read(r, "read of the job");
  else
    *answer = fail_internal(r, rc);
  return NULL;
}

static enum MHD_Result h_get_job(ae_http_req *r, ae_job *job);

static enum MHD_Result h_get(ae_http_req *r) {
  enum MHD_Result answer = MHD_NO;
  ae_job *job = path_job(r, &answer);
  if (!job) return answer;
  answer = h_get_job(r, job);
  ae_job_release(job);
  return answer;
}

static enum MHD_Result h_get_job(ae_http_req *r, ae_job *job) {
  const char *wait = query(r, "wait_ms");
  if (wait && !r->resumed) {
    long long wait_ms;
    if (ae_parse_count(wait, MAX_WAIT_MS, &wait_ms))
      return fail(r, 422, "invalid_request", "Invalid request", 0,
                  "wait_ms must be an integer from 0 to %d.", MAX_WAIT_MS);
    if (wait_ms > MAX_WAIT_MS) wait_ms = MAX_WAIT_MS;
    if (wait_ms > 0 && !ae_job_terminal(job) && !r->srv->draining) {
      int rc = job->transient ? suspend_remote(r, job, wait_ms)
                              : suspend_for(r, job, wait_ms);
      if (rc) return fail_internal(r, rc);
      snprintf(r->job_id, sizeof r->job_id, "%s", job->id);
      return MHD_YES;
    }
  }
  return respond_job(r, 200, job, 0);
}

/* ---- listings, streamed ----
 * A page of jobs is written as MHD asks for it, at most LISTING_BLOCK
 * bytes per call and one job rendered at a time, so that a listing of
 * large jobs never holds the loop for long (the live probe answers in
 * between) nor holds the page in memory.  The reader runs on the loop
 * thread (inside MHD_run).  Between calls jobs may go: the listing keeps
 * the id of the last job written and finds its place again by id, or, if
 * that job went, by its seq. */
#define LISTING_BLOCK (64 * 1024)
/* Jobs read from the store at once for a listing. */
#define LISTING_FETCH 16

typedef struct {
  ae_server *srv;
  int filter;
  ae_job_state state;
  char *client_ref;
  long long page_size, shown;
  ae_page_key before; /* the request's page token (seq < 0: none) */
  char last_id[32];   /* the last job written ("": none yet) */
  long long last_seq;
  /* The listing key of the job listing_next* returned: the store row's
   * (the order the store pages in) when it came from the store. */
  char next_id[32];
  long long next_seq;
  int phase;   /* 0 head, 1 jobs, 2 tail written, 3 done */
  char *chunk; /* the page's head, a comma, the tail */
  size_t chunk_len, chunk_at;
  /* The job being written: its rendered parts, shared with the job (never
   * copied whole), sent after chunk. */
  ae_job_parts parts;
  int part;
  size_t part_at;
  /* Read from the store when it holds jobs memory does not
   * (ae_jobs_store_has_more): the next few as transient copies; one held
   * here in memory too is shown as memory has it. */
  int from_store, store_done;
  long long store_before; /* the next read's (before, before_id) */
  char store_before_id[AE_PAGE_ID_MAX];
  ae_job *fetched[LISTING_FETCH];
  size_t n_fetched, fetched_at;
} ae_listing;

static void listing_release_fetched(ae_listing *l) {
  for (size_t i = 0; i < l->n_fetched; i++)
    ae_job_release(l->fetched[i]);
  l->n_fetched = l->fetched_at = 0;
}

static void listing_free(void *cls) {
  ae_listing *l = cls;
  listing_release_fetched(l);
  ae_job_parts_release(&l->parts);
  free(l->chunk);
  free(l->client_ref);
  free(l);
}

static int listing_match(const ae_listing *l, const ae_job *job) {
  if (l->filter && job->state != l->state) return 0;
  if (l->client_ref &&
      (!job->client_ref || strcmp(job->client_ref, l->client_ref)))
    return 0;
  return 1;
}

/* The next matching job of the store (older than the last one), or NULL
 * at the end (*rc AE_OK) or on a failure (*rc set). */
static ae_job *listing_next_stored(ae_listing *l, int *rc) {
  *rc = AE_OK;
  for (;;) {
    while (l->fetched_at < l->n_fetched) {
      ae_job *copy = l->fetched[l->fetched_at++];
      ae_job *held = ae_job_table_find(&l->srv->jobs, copy->id);
      ae_job *job = held && !held->remote ? held : copy;
      if (listing_match(l, job)) {
        l->next_seq = copy->seq;
        snprintf(l->next_id, sizeof l->next_id, "%s", copy->id);
        return job;
      }
    }
    if (l->store_done) return NULL;
    listing_release_fetched(l);
    /* The next read resumes after this one's last row: the key is read
     * from a copy, since the read overwrites the fields it came from. */
    char before_id[AE_PAGE_ID_MAX];
    snprintf(before_id, sizeof before_id, "%s", l->store_before_id);
    ae_store_page page = {.before = l->store_before,
                          .before_id = before_id,
                          .has_state = l->filter,
                          .state = l->state,
                          .client_ref = l->client_ref,
                          .limit = LISTING_FETCH};
    size_t rows = 0;
    *rc = ae_jobs_store_page(l->srv, &page, l->fetched, &l->n_fetched, &rows,
                             &l->store_before, l->store_before_id,
                             sizeof l->store_before_id);
    if (*rc) return NULL;
    if (rows < LISTING_FETCH) l->store_done = 1;
  }
}

/* The next matching job after the last one written (older), or NULL. */
static ae_job *listing_next(ae_listing *l) {
  ae_job_iter it;
  ae_job *last =
      l->last_id[0] ? ae_job_table_find(&l->srv->jobs, l->last_id) : NULL;
  if (last) {
    it.next = last->prev;
  } else if (l->last_id[0]) {
    ae_page_key written = {.seq = l->last_seq};
    snprintf(written.id, sizeof written.id, "%s", l->last_id);
    ae_job_iter_start(&l->srv->jobs, &written, &it);
  } else {
    ae_job_iter_start(&l->srv->jobs, &l->before, &it);
  }
  for (ae_job *job; (job = ae_job_iter_next(&it));)
    if (listing_match(l, job)) {
      l->next_seq = job->seq;
      snprintf(l->next_id, sizeof l->next_id, "%s", job->id);
      return job;
    }
  return NULL;
}

/* Makes the next piece of the page; AE_ENOMEM, AE_EIO (the store failed
 * to read), or AE_OK with l->chunk or
 * l->parts set (neither once everything was written). */
static int listing_piece(ae_listing *l) {
  free(l->chunk);
  l->chunk = NULL;
  l->chunk_len = l->chunk_at = 0;
  ae_job_parts_release(&l->parts);
  l->part = 0;
  l->part_at = 0;
  if (l->phase == 0) {
    l->phase = 1;
    l->chunk = strdup("{\"jobs\":[");
    if (!l->chunk) return AE_ENOMEM;
    l->chunk_len = strlen(l->chunk);
    return AE_OK;
  }
  if (l->phase == 1) {
    int rc = AE_OK;
    ae_job *job = l->from_store ? listing_next_stored(l, &rc) : listing_next(l);
    if (rc) return rc;
    if (job && l->shown < l->page_size) {
      if (ae_job_parts_get(l->srv, job, &l->parts)) return AE_ENOMEM;
      if (l->shown) {
        if (!(l->chunk = strdup(","))) return AE_ENOMEM;
        l->chunk_len = 1;
      }
      l->shown++;
      snprintf(l->last_id, sizeof l->last_id, "%s", l->next_id);
      l->last_seq = l->next_seq;
      return AE_OK;
    }
    char tail[AE_PAGE_TOKEN_MAX + 64];
    if (job) { /* one more matches: the page is full */
      char token[AE_PAGE_TOKEN_MAX];
      ae_page_token_encode(l->last_seq, l->last_id, token, sizeof token);
      snprintf(tail, sizeof tail, "],\"next_page_token\":\"%s\"}", token);
    } else {
      snprintf(tail, sizeof tail, "],\"next_page_token\":null}");
    }
    l->phase = 2;
    l->chunk = strdup(tail);
    if (!l->chunk) return AE_ENOMEM;
    l->chunk_len = strlen(tail);
    return AE_OK;
  }
  l->phase = 3;
  return AE_OK;
}

/* Copies what is left of the current piece (chunk, then the job's parts)
 * into buf; 0 when the piece is all written. */
static size_t listing_copy(ae_listing *l, char *buf, size_t max) {
  size_t n = l->chunk_len - l->chunk_at;
  if (n) {
    if (n > max) n = max;
    memcpy(buf, l->chunk + l->chunk_at, n);
    l->chunk_at += n;
    return n;
  }
  while (l->part < AE_JOB_PARTS && l->parts.part[l->part]) {
    const ae_text *t = l->parts.part[l->part];
    n = t->len - l->part_at;
    if (n) {
      if (n > max) n = max;
      memcpy(buf, t->data + l->part_at, n);
      l->part_at += n;
      return n;
    }
    l->part++;
    l->part_at = 0;
  }
  return 0;
}

/* Fills buf from as many pieces as fit (one send's worth: fewer bytes per
 * call would mean more writes), copying at most max bytes. */
static ssize_t listing_read(void *cls, uint64_t pos, char *buf, size_t max) {
  ae_listing *l = cls;
  (void)pos;
  size_t n = 0;
  while (n < max) {
    size_t got = listing_copy(l, buf + n, max - n);
    if (got) {
      n += got;
      continue;
    }
    if (listing_piece(l)) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (!l->chunk && !l->parts.part[0]) break; /* all written */
  }
  if (!n) return MHD_CONTENT_READER_END_OF_STREAM;
  return (ssize_t)n;
}

static enum MHD_Result h_list(ae_http_req *r) {
  ae_server *srv = r->srv;
  const char *state_s = query(r, "state");
  const char *size_s = query(r, "page_size");
  const char *token_s = query(r, "page_token");
  const char *client_ref = query(r, "client_ref");
  ae_job_state state = AE_JOB_QUEUED;
  int filter = 0;
  if (state_s && *state_s) {
    if (ae_job_state_parse(state_s, &state))
      return fail(r, 422, "invalid_request", "Invalid request", 0,
                  "state must be queued, running, succeeded, failed or "
                  "cancelled.");
    filter = 1;
  }
  long long page_size = 100;
  if (size_s && (ae_parse_count(size_s, 1000, &page_size) || page_size < 1 ||
                 page_size > 1000))
    return fail(r, 422, "invalid_request", "Invalid request", 0,
                "page_size must be an integer from 1 to 1000.");
  ae_page_key before = {.seq = -1};
  if (token_s && *token_s && ae_page_token_decode(token_s, &before))
    return fail(r, 422, "invalid_request", "Invalid request", 0,
                "page_token is not a token this server gave.");
  if (client_ref && !*client_ref) client_ref = NULL; /* no filter */
  if (client_ref && !ae_client_ref_ok(client_ref))
    return fail(r, 422, "invalid_request", "Invalid request", 0,
                "client_ref must be 1 to 256 bytes without control "
                "characters.");
  ae_listing *l = calloc(1, sizeof *l);
  if (!l || (client_ref && !(l->client_ref = strdup(client_ref)))) {
    free(l);
    return fail_internal(r, AE_ENOMEM);
  }
  l->srv = srv;
  l->filter = filter;
  l->state = state;
  l->page_size = page_size;
  l->before = before;
  l->from_store = ae_jobs_store_has_more(srv);
  l->store_before = before.seq;
  snprintf(l->store_before_id, sizeof l->store_before_id, "%s", before.id);
  struct MHD_Response *resp = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, LISTING_BLOCK, listing_read, l, listing_free);
  if (!resp) {
    listing_free(l);
    return fail_internal(r, AE_ENOMEM);
  }
  MHD_add_response_header(resp, "X-Request-Id", r->request_id);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "application/json");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ok = MHD_queue_response(r->conn, 200, resp);
  MHD_destroy_response(resp);
  if (ok == MHD_YES) {
    r->status = 200;
    r->responded = 1;
  }
  return ok;
}

static enum MHD_Result cancel_job(ae_http_req *r, ae_job *job) {
  snprintf(r->job_id, sizeof r->job_id, "%s", job->id);
  if (job->state == AE_JOB_SUCCEEDED || job->state == AE_JOB_FAILED)
    return fail(r, 409, "job_terminal", "Job finished", 0, "Job %s already %s.",
                job->id, ae_job_state_name(job->state));
  if (job->transient && !ae_job_terminal(job)) {
    /* Run by another process on this store: it sees the flag. */
    int rc = ae_job_cancel_elsewhere(r->srv, job);
    if (rc == AE_ENOTFOUND)
      return fail(r, 404, "not_found", "Not found", 0,
                  "No job %s (unknown or expired).", job->id);
    if (rc) return fail_store(r, "cancel");
    return respond_job(r, 200, job, 0);
  }
  ae_job_cancel(r->srv, job);
  return respond_job(r, 200, job, 0);
}

static enum MHD_Result h_cancel(ae_http_req *r) {
  enum MHD_Result answer = MHD_NO;
  ae_job *job = path_job(r, &answer);
  if (!job) return answer;
  answer = cancel_job(r, job);
  ae_job_release(job);
  return answer;
}

static enum MHD_Result delete_job(ae_http_req *r, ae_job *job) {
  snprintf(r->job_id, sizeof r->job_id, "%s", job->id);
  if (!ae_job_terminal(job))
    return fail(r, 409, "job_not_terminal", "Job not finished", 0,
                "Job %s is %s; cancel it first.", job->id,
                ae_job_state_name(job->state));
  if (ae_job_delete(r->srv, job)) return fail_store(r, "delete");
  return respond(r, 204, NULL, 0, NULL, 1, 0, NULL, NULL, 0);
}

static enum MHD_Result h_delete(ae_http_req *r) {
  enum MHD_Result answer = MHD_NO;
  ae_job *job = path_job(r, &answer);
  if (!job) return answer;
  /* A job of the table is freed by its delete; a transient one is ours. */
  int transient = job->transient;
  answer = delete_job(r, job);
  if (transient) ae_job_release(job);
  return answer;
}

/* ---- studies (study.c answers; this sends) ---- */

static const char *study_query(void *ctx, const char *name) {
  return query(ctx, name);
}

static enum MHD_Result h_study(ae_http_req *r, ae_study_op op) {
  enum MHD_Result answer = MHD_NO;
  const char *key = NULL;
  if (op == AE_STUDY_CREATE || op == AE_STUDY_ADD) {
    const char *ct = header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (r->len > 0 && !ae_content_type_is_json(ct))
      return fail(r, 415, "unsupported_media_type", "Unsupported media type", 0,
                  "The body must be application/json, not %s.", ct);
    if (idempotency_key(r, &key, &answer)) return answer;
  }
  ae_study_call call = {.op = op,
                        .id = r->id,
                        .path = r->path,
                        .body = r->body,
                        .len = r->len,
                        .idem_key = key,
                        .query = study_query,
                        .ctx = r};
  ae_study_reply out;
  ae_study_handle(r->srv, &call, &out);
  if (out.problem.status)
    return respond_problem_full(r, &out.problem, out.retry_after, NULL, 0);
  ae_problem_clear(&out.problem);
  return respond(r, out.status, out.body, out.len, out.content_type, 1,
                 out.retry_after, NULL, out.location[0] ? out.location : NULL,
                 0);
}

static enum MHD_Result h_study_create(ae_http_req *r) {
  return h_study(r, AE_STUDY_CREATE);
}
static enum MHD_Result h_study_list(ae_http_req *r) {
  return h_study(r, AE_STUDY_LIST);
}
static enum MHD_Result h_study_get(ae_http_req *r) {
  return h_study(r, AE_STUDY_GET);
}
static enum MHD_Result h_study_delete(ae_http_req *r) {
  return h_study(r, AE_STUDY_DELETE);
}
static enum MHD_Result h_study_add(ae_http_req *r) {
  return h_study(r, AE_STUDY_ADD);
}
static enum MHD_Result h_study_ranking(ae_http_req *r) {
  return h_study(r, AE_STUDY_RANKING);
}

/* ---- models (models.c answers; this sends) ---- */

static enum MHD_Result respond_model(ae_http_req *r, ae_model_reply *out) {
  if (out->problem.status) return respond_problem(r, &out->problem);
  ae_problem_clear(&out->problem);
  return respond(r, out->status, out->body, out->len,
                 out->body ? "application/json" : NULL, 0, 0, NULL,
                 out->location[0] ? out->location : NULL, 0);
}

static void upload_unlink(ae_http_req *r) {
  struct ae_http *h = r->srv->http;
  if (r->upload_prev)
    r->upload_prev->upload_next = r->upload_next;
  else if (h->uploads == r)
    h->uploads = r->upload_next;
  if (r->upload_next) r->upload_next->upload_prev = r->upload_prev;
  r->upload_next = r->upload_prev = NULL;
}

/* The stop: imports still running are dropped and their uploads answer
 * 503 (MHD cannot stop with a suspended connection). */
static void stop_uploads(ae_server *srv) {
  while (srv->http->uploads) {
    ae_http_req *r = srv->http->uploads;
    upload_unlink(r);
    ae_models_upload_abandon(r->upload);
    r->upload = NULL;
    r->upload_stopped = 1;
    r->resumed = 1;
    MHD_resume_connection(r->conn);
    srv->http->need_mhd_run = 1;
  }
}

/* The import finished (on the loop): MHD calls h_model_upload again. */
static void on_model_imported(void *ctx) {
  ae_http_req *r = ctx;
  upload_unlink(r);
  r->upload_done = 1;
  r->resumed = 1;
  MHD_resume_connection(r->conn);
  r->srv->http->need_mhd_run = 1;
  http_run(r->srv);
}

/* POST /v1/models: the body goes to the threadpool (models.c) while the
 * connection waits, suspended. */
static enum MHD_Result h_model_upload(ae_http_req *r) {
  if (r->upload_stopped)
    return fail(r, 503, "draining", "Draining", 5,
                "The server stopped while the model was imported; it was "
                "not stored.");
  if (r->upload_done) {
    ae_model_upload *u = r->upload;
    r->upload = NULL;
    ae_model_reply out;
    ae_models_upload_finish(u, &out);
    return respond_model(r, &out);
  }
  const char *ct = header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (!ae_content_type_is_onnx(ct))
    return fail(r, 415, "unsupported_media_type", "Unsupported media type", 0,
                "The body must be an ONNX file sent as application/onnx or "
                "application/octet-stream, not %s.",
                ct ? ct : "no Content-Type");
  if (r->len == 0)
    return fail(r, 422, "invalid_request", "Invalid request", 0,
                "The body is empty; send the ONNX file.");
  if (r->srv->draining)
    return fail(r, 503, "draining", "Draining", 5,
                "The server is shutting down and accepts no new models.");
  char *body = r->body;
  size_t len = r->len;
  r->body = NULL;
  r->len = r->cap = 0;
  int rc = ae_models_upload_start(r->srv, body, len, on_model_imported, r,
                                  &r->upload);
  if (rc) return fail_internal(r, rc);
  r->upload_next = r->srv->http->uploads;
  if (r->upload_next) r->upload_next->upload_prev = r;
  r->srv->http->uploads = r;
  MHD_suspend_connection(r->conn);
  return MHD_YES;
}

static enum MHD_Result h_model_get(ae_http_req *r) {
  ae_model_reply out;
  ae_models_get(r->srv, r->model, &out);
  return respond_model(r, &out);
}

static enum MHD_Result h_model_delete(ae_http_req *r) {
  ae_model_reply out;
  ae_models_delete(r->srv, r->model, &out);
  return respond_model(r, &out);
}

/* The static files of /ui/ (ui_assets.c), from the binary. */
static enum MHD_Result h_ui(ae_http_req *r) {
  for (const ae_ui_asset *a = ae_ui_assets; a->path; a++) {
    if (strcmp(a->path, r->path)) continue;
    char *copy = malloc(a->len ? a->len : 1);
    if (!copy) return fail_internal(r, AE_ENOMEM);
    memcpy(copy, a->data, a->len);
    return respond(r, 200, copy, a->len, a->content_type, 0, 0, NULL, NULL, 0);
  }
  return fail(r, 404, "not_found", "Not found", 0, "No file %s.", r->path);
}

/* ---- routing: route.c finds the row, this table its handler ---- */

static enum MHD_Result h_not_allowed(ae_http_req *r) {
  ae_problem p = AE_PROBLEM_INIT;
  ae_problem_set(&p, 405, "method_not_allowed", "Method not allowed",
                 "%s is not allowed on %s; allowed: %s.", r->method, r->path,
                 r->allow);
  return respond_problem_full(r, &p, 0, r->allow, 0);
}

static enum MHD_Result h_not_found(ae_http_req *r) {
  return fail(r, 404, "not_found", "Not found", 0, "No route %s %s.", r->method,
              r->path);
}

static const route_handler handlers[AE_HANDLER_COUNT] = {
    [AE_HANDLER_LIVE] = h_live,
    [AE_HANDLER_READY] = h_ready,
    [AE_HANDLER_ROOT] = h_root,
    [AE_HANDLER_METRICS] = h_metrics,
    [AE_HANDLER_DATASETS] = h_datasets,
    [AE_HANDLER_SUBMIT] = h_submit,
    [AE_HANDLER_LIST] = h_list,
    [AE_HANDLER_BATCH] = h_batch,
    [AE_HANDLER_GET] = h_get,
    [AE_HANDLER_DELETE] = h_delete,
    [AE_HANDLER_CANCEL] = h_cancel,
    [AE_HANDLER_STUDY_CREATE] = h_study_create,
    [AE_HANDLER_STUDY_LIST] = h_study_list,
    [AE_HANDLER_STUDY_GET] = h_study_get,
    [AE_HANDLER_STUDY_DELETE] = h_study_delete,
    [AE_HANDLER_STUDY_ADD] = h_study_add,
    [AE_HANDLER_STUDY_RANKING] = h_study_ranking,
    [AE_HANDLER_UI] = h_ui,
    [AE_HANDLER_MODEL_UPLOAD] = h_model_upload,
    [AE_HANDLER_MODEL_GET] = h_model_get,
    [AE_HANDLER_MODEL_DELETE] = h_model_delete,
    [AE_HANDLER_NOT_ALLOWED] = h_not_allowed,
    [AE_HANDLER_NOT_FOUND] = h_not_found,
};

/* Routes the request: its handler, with r->route and r->id filled. */
static ae_handler route(ae_http_req *r) {
  ae_route_match m;
  ae_route_find(r->method, r->path, &m);
  r->route = m.route;
  r->allow = m.allow;
  snprintf(r->id, sizeof r->id, "%s", m.id);
  snprintf(r->model, sizeof r->model, "%s", m.model);
  return m.handler;
}

/* ---- large bodies parsed off the loop ----
 * Parsing megabytes of JSON and validating the request (8 MB of inline
 * inputs: most of a second) would hold every other request up, so a POST
 * of a job or a batch whose body is at least PARSE_OFF_LOOP_BYTES is
 * suspended while a thread of libuv's pool does that part; the handler
 * runs again on the loop, with the outcome in r->parsed, for everything
 * that touches the jobs. */
#define PARSE_OFF_LOOP_BYTES (64 * 1024)

static void body_parse_free(ae_body_parse *bp) {
  json_decref(bp->json);
  ae_problem_clear(&bp->problem);
  if (bp->has_request) ae_request_free(&bp->request);
  ae_cache_prepared_free(&bp->prepared);
  for (size_t i = 0; i < bp->n_items; i++) {
    ae_request_free(&bp->items[i]);
    ae_problem_clear(&bp->item_problem[i]);
    if (bp->item_prepared) ae_cache_prepared_free(&bp->item_prepared[i]);
  }
  free(bp->items);
  free(bp->item_rc);
  free(bp->item_problem);
  free(bp->item_prepared);
  free(bp->owned_body);
  free(bp);
}

/* 1 when a job body names an uploaded model ("type": "onnx"): it is
 * validated on the loop, whose store holds the models. */
static int names_model(const json_t *job) {
  const json_t *arch =
      json_is_object(job) ? json_object_get(job, "architecture") : NULL;
  const char *type = json_string_value(
      json_is_object(arch) ? json_object_get(arch, "type") : NULL);
  return type && strcmp(type, "onnx") == 0;
}

/* On a pool thread: a batch's items, each validated and rendered as
 * h_batch would on the loop (it takes them from here); none when one
 * names an uploaded model. */
static void parse_batch_items(ae_body_parse *bp) {
  const json_t *items =
      json_is_object(bp->json) ? json_object_get(bp->json, "jobs") : NULL;
  size_t n = json_array_size(items);
  if (!json_is_array(items) || n == 0 || n > (size_t)bp->max_batch) return;
  for (size_t i = 0; i < n; i++)
    if (names_model(json_array_get(items, i))) return;
  bp->items = calloc(n, sizeof *bp->items);
  bp->item_rc = calloc(n, sizeof *bp->item_rc);
  bp->item_problem = calloc(n, sizeof *bp->item_problem);
  bp->item_prepared = calloc(n, sizeof *bp->item_prepared);
  if (!bp->items || !bp->item_rc || !bp->item_problem || !bp->item_prepared)
    return; /* freed with bp; n_items 0: the loop parses */
  bp->n_items = n;
  for (size_t i = 0; i < n; i++) {
    bp->item_problem[i] = (ae_problem)AE_PROBLEM_INIT;
    bp->item_rc[i] =
        ae_request_parse(json_array_get(items, i), bp->catalog, bp->limits,
                         &bp->items[i], &bp->item_problem[i]);
  }
  for (size_t i = 0; i < n; i++) {
    if (bp->item_rc[i] == AE_OK &&
        ae_cache_prepare(&bp->items[i], &bp->item_prepared[i]) == AE_OK)
      continue;
    for (size_t k = 0; k < n; k++)
      ae_cache_prepared_free(&bp->item_prepared[k]);
    free(bp->item_prepared);
    bp->item_prepared = NULL; /* rendered on the loop, as without it */
    break;
  }
}

/* On a pool thread. */
static void parse_work(uv_work_t *work) {
  ae_body_parse *bp = work->data;
  /* The pool's threads come from the loop thread: give back its boost. */
  ae_thread_set_nice(0);
  ae_sha256_hex(bp->body ? bp->body : "", bp->len, bp->hash);
  if (ae_json_parse_body(bp->body, bp->len, &bp->json, &bp->problem)) return;
  if (!bp->validate) {
    parse_batch_items(bp);
    return;
  }
  if (names_model(bp->json)) {
    bp->validate = 0; /* the loop validates it (parse_request) */
    return;
  }
  bp->request_rc = ae_request_parse(bp->json, bp->catalog, bp->limits,
                                    &bp->request, &bp->problem);
  bp->has_request = bp->request_rc == AE_OK;
  /* What the submission would render on the loop (megabytes of text). */
  if (bp->has_request)
    bp->has_prepared = ae_cache_prepare(&bp->request, &bp->prepared) == AE_OK;
}

/* On the loop: hand the outcome to the request and run its handler. */
static void after_parse(uv_work_t *work, int status) {
  ae_body_parse *bp = work->data;
  ae_http_req *r = bp->req;
  if (!r) { /* the connection went (the daemon stopped) */
    body_parse_free(bp);
    return;
  }
  r->parse = NULL;
  if (status == 0) {
    r->parsed = bp;
    r->srv->http->n_parsed_off_loop++;
  } else {
    body_parse_free(bp); /* not run: the handler parses here */
  }
  MHD_resume_connection(r->conn);
  http_run(r->srv);
}

/* Starts the pool's part for a large POST: AE_OK with the connection
 * suspended, or an error (the handler then parses on the loop). */
static int parse_off_loop(ae_http_req *r, ae_handler handler) {
  ae_server *srv = r->srv;
  if (r->parse_tried || r->len < PARSE_OFF_LOOP_BYTES || srv->draining ||
      (handler != AE_HANDLER_SUBMIT && handler != AE_HANDLER_BATCH) ||
      !ae_content_type_is_json(header(r, MHD_HTTP_HEADER_CONTENT_TYPE)))
    return AE_EINVAL;
  ae_body_parse *bp = calloc(1, sizeof *bp);
  if (!bp) return AE_ENOMEM;
  bp->work.data = bp;
  bp->req = r;
  bp->body = r->body;
  bp->len = r->len;
  bp->validate = handler == AE_HANDLER_SUBMIT;
  bp->max_batch = srv->opt->max_batch;
  bp->catalog = &srv->catalog;
  bp->limits = &srv->limits;
  bp->problem = (ae_problem)AE_PROBLEM_INIT;
  if (uv_queue_work(srv->loop, &bp->work, parse_work, after_parse)) {
    free(bp);
    return AE_EINTERNAL;
  }
  r->parse = bp;
  r->parse_tried = 1;
  MHD_suspend_connection(r->conn);
  return AE_OK;
}

/* Whether a request's Idempotency-Key is one this daemon holds in memory
 * (a batch's as "KEY\n0"): its replay needs no room. */
static int held_replay(ae_http_req *r, ae_handler handler, const char *key) {
  if (handler == AE_HANDLER_SUBMIT)
    return ae_job_table_find_idem(&r->srv->jobs, key) != NULL;
  size_t len = strlen(key) + 3;
  char *first = malloc(len);
  if (!first) return 1; /* the handler answers for it */
  snprintf(first, len, "%s\n0", key);
  int found = ae_job_table_find_idem(&r->srv->jobs, first) != NULL;
  free(first);
  return found;
}

/* Whether a key only the store holds (a job memory let go, or another
 * replica's) is a replay: one store read, made only when the body does
 * not fit, so that keys cannot be used to skip the reservation. */
static int stored_replay(ae_http_req *r, ae_handler handler, const char *key) {
  if (!ae_jobs_store_has_more(r->srv)) return 0;
  size_t len = strlen(key) + 3;
  char *first = malloc(len);
  if (!first) return 0;
  snprintf(first, len, handler == AE_HANDLER_SUBMIT ? "%s" : "%s\n0", key);
  int rc = AE_OK;
  ae_job *job = ae_job_lookup_idem(r->srv, first, &rc);
  free(first);
  ae_job_release(job);
  return job != NULL;
}

/* A job submission's parse (about AE_PARSE_BYTES_PER_BODY_BYTE times its
 * body, seconds of CPU for megabytes of numbers) is reserved in
 * --max-jobs-memory before it starts, so that concurrent large POSTs past
 * the budget get 429 (507 when the parse alone would pass it) before they
 * parse.  Not for the replay of an Idempotency-Key (it needs no room) nor
 * while draining (503 first).  1 with *answer set when refused. */
static int refuse_before_parse(ae_http_req *r, ae_handler handler,
                               enum MHD_Result *answer) {
  if ((handler != AE_HANDLER_SUBMIT && handler != AE_HANDLER_BATCH) ||
      r->parse_tried || r->parse_reserved || r->srv->draining)
    return 0;
  const char *key = header(r, "Idempotency-Key");
  if (key && held_replay(r, handler, key)) return 0;
  ae_problem p = AE_PROBLEM_INIT;
  int retry_after = 0;
  if (ae_jobs_reserve_parse(r->srv, r->len, &r->parse_reserved, &p,
                            &retry_after) == AE_OK)
    return 0;
  if (key && stored_replay(r, handler, key)) {
    ae_problem_clear(&p);
    return 0;
  }
  *answer = respond_problem_full(r, &p, retry_after, NULL, 0);
  return 1;
}

static enum MHD_Result dispatch(ae_http_req *r) {
  ae_handler handler = route(r);
  enum MHD_Result answer;
  if (refuse_before_parse(r, handler, &answer)) return answer;
  if (parse_off_loop(r, handler) == AE_OK) return MHD_YES;
  return handlers[handler](r);
}

/* ---- connections: a deadline for slow clients ----
 * One ae_http_conn per TCP connection (MHD's socket context), on the loop
 * thread.  since_ns is when the connection opened or its last request
 * completed: a request must arrive in full within
 * --connection-timeout-secs of that.  While its headers arrive, the sweep
 * (ae_http_drop_slow) enforces it; while its body arrives, on_request
 * does.  A request the handler holds (dispatched, or a suspended long
 * poll) is exempt. */
typedef struct ae_http_conn {
  struct ae_http_conn *prev, *next;
  struct MHD_Connection *conn;
  long long since_ns;
  int in_request;
  int dropped;
  /* The client's address (port left out), and whether this connection
   * was one over --max-connections-per-ip when it opened: its requests
   * get a 429 and the connection closes.  MHD's own per-address limit
   * can only refuse the accept (a reset); counting here can answer. */
  struct sockaddr_storage addr;
  int over_limit;
} ae_http_conn;

/* The address of sa without its port, for comparing clients. */
static void client_address(const struct sockaddr *sa,
                           struct sockaddr_storage *out) {
  memset(out, 0, sizeof *out);
  if (!sa) return;
  out->ss_family = sa->sa_family;
  if (sa->sa_family == AF_INET)
    ((struct sockaddr_in *)out)->sin_addr =
        ((const struct sockaddr_in *)sa)->sin_addr;
  else if (sa->sa_family == AF_INET6)
    ((struct sockaddr_in6 *)out)->sin6_addr =
        ((const struct sockaddr_in6 *)sa)->sin6_addr;
}

/* Open connections from the same address as c (c left out). */
static size_t connections_from(const ae_http_conn *first,
                               const ae_http_conn *c) {
  size_t n = 0;
  for (const ae_http_conn *o = first; o; o = o->next)
    n += o != c && !memcmp(&o->addr, &c->addr, sizeof c->addr);
  return n;
}

static ae_http_conn *conn_of(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return info ? info->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  ae_server *srv = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    ae_http_conn *c = calloc(1, sizeof *c);
    if (!c) return; /* untracked: MHD's idle timeout still applies */
    c->conn = conn;
    c->since_ns = ae_mono_ns();
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    client_address(info ? info->client_addr : NULL, &c->addr);
    int limit = srv->opt->max_connections_per_ip;
    if (limit > 0 && c->addr.ss_family != AF_UNSPEC &&
        connections_from(srv->http->conns, c) >= (size_t)limit)
      c->over_limit = 1;
    c->next = srv->http->conns;
    if (c->next) c->next->prev = c;
    srv->http->conns = c;
    *socket_context = c;
    return;
  }
  ae_http_conn *c = *socket_context;
  if (!c) return;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->http->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c);
  *socket_context = NULL;
}

static long long request_deadline_ns(const ae_server *srv) {
  return (long long)srv->opt->connection_timeout_secs * 1000000000LL;
}

/* Shuts down connections that have held a request (its headers still
 * arriving) longer than --connection-timeout-secs: MHD's own timeout only
 * counts idle time, which a client trickling bytes resets. */
static void drop_slow(ae_server *srv) {
  long long now = ae_mono_ns(), limit = request_deadline_ns(srv);
  for (ae_http_conn *c = srv->http->conns; c; c = c->next) {
    if (c->in_request || c->dropped || now - c->since_ns <= limit) continue;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info) continue;
    /* MHD sees the end of the stream and closes the connection itself. */
    shutdown(info->connect_fd, SHUT_RDWR);
    c->dropped = 1;
    srv->http->n_slow_dropped++;
    ae_log(AE_LOG_DEBUG,
           "dropped a connection with no complete request "
           "after %d s",
           srv->opt->connection_timeout_secs);
  }
}

/* A request line and headers past this get a problem+json from the
 * handler: 414 when the URL (with its query) alone passes it, else 431.
 * MHD's pool per connection is MHD_POOL_BYTES, so that such requests
 * reach the handler (with MHD's default pool of 32 KiB, MHD answered its
 * own HTML 414 or 431 at about this size, before the handler saw the
 * request); a request that does not fit even in the pool (about 60 KiB
 * of headers) still gets MHD's page.  MHD zeroes the whole pool between
 * requests: each open connection holds it (64 KiB of RSS, 32 KiB
 * before). */
#define MAX_HEADER_BYTES (32 * 1024)
#define MHD_POOL_BYTES (64 * 1024)

static enum MHD_Result add_header_bytes(void *cls, enum MHD_ValueKind kind,
                                        const char *key, const char *value) {
  size_t *sum = cls;
  (void)kind;
  *sum += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": ", CRLF */
  return MHD_YES;
}

/* The URL's bytes (path and query) to *url_bytes; the headers' added. */
static size_t header_bytes(struct MHD_Connection *conn, const char *url,
                           size_t *url_bytes) {
  size_t sum = strlen(url);
  MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_header_bytes,
                            &sum);
  *url_bytes = sum;
  MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_bytes, &sum);
  return sum;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  ae_server *srv = cls;
  ae_http_req *r = *con_cls;
  ae_http_conn *tcp = conn_of(conn);
  if (!r) {
    if (tcp) tcp->in_request = 1;
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    *con_cls = r;
    r->srv = srv;
    r->conn = conn;
    r->start_ns = ae_mono_ns();
    r->route = AE_ROUTE_OTHER;
    snprintf(r->method, sizeof r->method, "%s", method);
    r->path = strdup(url);
    if (!r->path) return MHD_NO;
    const char *rid = header(r, "X-Request-Id");
    if (rid && ae_request_id_ok(rid))
      snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    else
      snprintf(r->request_id, sizeof r->request_id, "%016llx",
               (unsigned long long)ae_random_u64());
    if (tcp && tcp->over_limit) {
      route(r); /* for the metrics' route label */
      ae_problem p = AE_PROBLEM_INIT;
      ae_problem_set(&p, 429, "too_many_connections", "Too many connections",
                     "This address has %d connections open, the limit; "
                     "reuse one (keep-alive) or wait.",
                     srv->opt->max_connections_per_ip);
      return respond_problem_full(r, &p, 1, NULL, 1);
    }
    size_t ubytes, hbytes = header_bytes(conn, url, &ubytes);
    if (hbytes > MAX_HEADER_BYTES) {
      route(r);
      ae_problem p = AE_PROBLEM_INIT;
      if (ubytes > MAX_HEADER_BYTES)
        ae_problem_set(&p, 414, "uri_too_long", "URI too long",
                       "The URL takes %zu bytes, over the limit of %d.", ubytes,
                       MAX_HEADER_BYTES);
      else
        ae_problem_set(&p, 431, "headers_too_large",
                       "Request header fields too large",
                       "The URL and headers take %zu bytes, over the limit "
                       "of %d.",
                       hbytes, MAX_HEADER_BYTES);
      /* The problem's instance (and the log) echo the path: cut. */
      if (strlen(r->path) > 256) r->path[256] = '\0';
      return respond_problem_full(r, &p, 0, NULL, 1);
    }
    /* A body MHD cannot frame (Transfer-Encoding other than chunked)
     * would wait for the timeout; a coded body would be parsed as JSON. */
    const char *te = header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strcasecmp(te, "chunked")) {
      route(r);
      ae_problem p = AE_PROBLEM_INIT;
      ae_problem_set(&p, 400, "unsupported_transfer_encoding",
                     "Unsupported transfer encoding",
                     "Transfer-Encoding: only chunked is supported.");
      return respond_problem_full(r, &p, 0, NULL, 1);
    }
    const char *ce = header(r, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (ce && *ce && strcasecmp(ce, "identity")) {
      route(r);
      ae_problem p = AE_PROBLEM_INIT;
      ae_problem_set(&p, 415, "unsupported_media_type",
                     "Unsupported media type",
                     "Content-Encoding: the body must not be encoded.");
      return respond_problem_full(r, &p, 0, NULL, 1);
    }
    /* The body limit, before reading any of it. */
    r->max_body = route(r) == AE_HANDLER_MODEL_UPLOAD
                      ? srv->opt->max_model_bytes
                      : srv->opt->max_body_bytes;
    const char *cl = header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long length;
    if (cl && !ae_parse_count(cl, r->max_body, &length) &&
        length > r->max_body) {
      ae_problem p = AE_PROBLEM_INIT;
      ae_problem_set(&p, 413, "body_too_large", "Body too large",
                     "The body is over the limit of %lld bytes.", r->max_body);
      return respond_problem_full(r, &p, 0, NULL, 1);
    }
    return MHD_YES;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (r->responded) return MHD_YES;
    if (tcp && ae_mono_ns() - tcp->since_ns > request_deadline_ns(srv)) {
      /* The body trickles in: drop the connection (MHD cannot answer in
       * the middle of an upload). */
      srv->http->n_slow_dropped++;
      ae_log(AE_LOG_WARN,
             "request %s: body not complete after %d s; "
             "connection dropped",
             r->request_id, srv->opt->connection_timeout_secs);
      return MHD_NO;
    }
    if (r->too_large || r->len + n > (size_t)r->max_body) {
      /* A chunked or understated body went over.  MHD 0.9.75 refuses a
       * response queued in the middle of an upload (MHD_queue_response
       * answers MHD_NO until the request is complete), so the rest is
       * read and dropped, and the 413 goes once it is in; a body that
       * goes on past the limit again is cut off (the connection reset). */
      free(r->body);
      r->body = NULL;
      r->len = r->cap = 0;
      r->too_large = 1;
      r->discarded += n;
      if (r->discarded > (size_t)r->max_body + (64u << 20)) return MHD_NO;
      return MHD_YES;
    }
    if (r->len + n + 1 > r->cap) {
      size_t cap = r->cap ? r->cap * 2 : 4096;
      while (cap < r->len + n + 1)
        cap *= 2;
      char *fresh = realloc(r->body, cap);
      if (!fresh) return MHD_NO;
      r->body = fresh;
      r->cap = cap;
    }
    memcpy(r->body + r->len, upload_data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return MHD_YES;
  }
  if (r->responded) return MHD_YES;
  (void)version;
  if (r->too_large) {
    route(r); /* for the metrics' route label */
    ae_problem p = AE_PROBLEM_INIT;
    ae_problem_set(&p, 413, "body_too_large", "Body too large",
                   "The body is over the limit of %lld bytes.", r->max_body);
    return respond_problem_full(r, &p, 0, NULL, 1);
  }
  return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  ae_server *srv = cls;
  ae_http_req *r = *con_cls;
  ae_http_conn *tcp = conn_of(conn);
  (void)toe;
  if (tcp) {
    tcp->in_request = 0;
    tcp->since_ns = ae_mono_ns();
  }
  if (!r) return;
  *con_cls = NULL;
  if (r->waiter) { /* only at shutdown */
    r->waiter->req = NULL;
    r->waiter = NULL;
  }
  if (r->upload) { /* the client went during the import */
    if (!r->upload_done) upload_unlink(r);
    ae_models_upload_abandon(r->upload);
    r->upload = NULL;
  }
  if (r->parse) { /* only at shutdown: the pool still reads the body */
    r->parse->req = NULL;
    r->parse->owned_body = r->body;
    r->body = NULL;
  }
  if (r->parsed) body_parse_free(r->parsed);
  ae_jobs_release_parse(srv, &r->parse_reserved);
  double seconds = (double)(ae_mono_ns() - r->start_ns) / 1e9;
  if (r->status) {
    ae_metrics_http(&srv->metrics, r->route, r->status, seconds);
    ae_log_request(r->request_id, r->method, r->path ? r->path : "", r->status,
                   seconds * 1e3, r->job_id);
  }
  free(r->path);
  free(r->body);
  free(r);
}

/* ---- MHD on the loop ---- */

static void on_mhd_timer(uv_timer_t *timer) {
  http_run(timer->data);
}

static void on_mhd_idle(uv_idle_t *idle) {
  http_run(idle->data);
}

static void on_mhd_poll(uv_poll_t *poll, int status, int events) {
  (void)status;
  (void)events;
  http_run(poll->data);
}

/* Before the loop sleeps: connections resumed since MHD last ran (a long
 * poll answered) need MHD to run once more. */
static void on_prepare(uv_prepare_t *prepare) {
  ae_server *srv = prepare->data;
  if (srv->http->need_mhd_run) http_run(srv);
}

static void on_slow_timer(uv_timer_t *timer) {
  ae_server *srv = timer->data;
  drop_slow(srv);
  http_run(srv);
}

/* Runs MHD once and re-arms its timer. */
static void http_run(ae_server *srv) {
  struct ae_http *h = srv->http;
  if (!h || !h->mhd) return;
  h->need_mhd_run = 0;
  MHD_run(h->mhd);
  MHD_UNSIGNED_LONG_LONG timeout;
  int have_timeout = MHD_get_timeout(h->mhd, &timeout) == MHD_YES;
  if (have_timeout && timeout == 0) {
    /* More to do now (a connection can take more of its answer): once
     * per turn, from the idle handle.  A timer of 0 ms re-armed from its
     * own callback would run again within the same turn (libuv 1.44 runs
     * every due timer in one pass), and MHD would keep the loop to itself
     * for as long as any answer streams. */
    uv_timer_stop(&h->mhd_timer);
    uv_idle_start(&h->mhd_idle, on_mhd_idle);
    return;
  }
  uv_idle_stop(&h->mhd_idle);
  if (have_timeout)
    uv_timer_start(&h->mhd_timer, on_mhd_timer, (uint64_t)timeout, 0);
  else
    uv_timer_stop(&h->mhd_timer);
}

static void http_closed(uv_handle_t *handle) {
  ae_server *srv = handle->data;
  /* The last of the five handles frees the state. */
  if (--srv->http->open_handles == 0) {
    free(srv->http);
    srv->http = NULL;
  }
}

int ae_http_start(ae_server *srv) {
  const ae_options *o = srv->opt;
  if (ae_jobs_on_terminal(srv, on_terminal)) return AE_EINTERNAL;
  srv->on_job_changed = on_job_changed;
  struct ae_http *h = calloc(1, sizeof *h);
  if (!h) return AE_ENOMEM;
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  char port[16];
  snprintf(port, sizeof port, "%d", o->http_port);
  int gai = getaddrinfo(o->http_address, port, &hints, &ai);
  if (gai) {
    ae_log(AE_LOG_ERROR, "--http-address %s: %s", o->http_address,
           gai_strerror(gai));
    free(h);
    return AE_EINVAL;
  }
  unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ERROR_LOG | MHD_USE_TURBO;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  h->mhd = MHD_start_daemon(
      flags, (uint16_t)o->http_port, NULL, NULL, on_request, srv,
      MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)MHD_POOL_BYTES, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)o->connection_timeout_secs, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
      MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!h->mhd) {
    ae_log(AE_LOG_ERROR, "cannot listen on %s:%d", o->http_address,
           o->http_port);
    free(h);
    return AE_EIO;
  }
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  if (!info || uv_poll_init(srv->loop, &h->mhd_poll, info->epoll_fd) ||
      uv_timer_init(srv->loop, &h->mhd_timer) ||
      uv_prepare_init(srv->loop, &h->prepare) ||
      uv_idle_init(srv->loop, &h->mhd_idle) ||
      uv_timer_init(srv->loop, &h->slow_timer)) {
    /* uv_*_init cannot fail for these handles on Linux once the loop is
     * up; were one to, the loop still holds the others: leave them to the
     * process exit rather than free memory they point into. */
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    srv->http = h;
    return AE_EINTERNAL;
  }
  srv->http = h;
  h->open_handles = 5;
  h->mhd_poll.data = h->mhd_timer.data = srv;
  h->prepare.data = h->slow_timer.data = h->mhd_idle.data = srv;
  uv_poll_start(&h->mhd_poll, UV_READABLE, on_mhd_poll);
  uv_prepare_start(&h->prepare, on_prepare);
  uv_timer_start(&h->slow_timer, on_slow_timer, SLOW_CHECK_MS, SLOW_CHECK_MS);
  ae_log(AE_LOG_INFO, "listening on %s:%d", o->http_address, o->http_port);
  http_run(srv);
  return AE_OK;
}

/* True while a request is in flight (its answer not yet sent). */
static int requests_in_flight(const struct ae_http *h) {
  for (const ae_http_conn *c = h->conns; c; c = c->next)
    if (c->in_request && !c->dropped) return 1;
  return 0;
}

/* How long the stop lets answers in flight (long polls just woken) go out
 * before MHD closes their connections. */
#define STOP_FLUSH_MS 2000

void ae_http_flush(ae_server *srv) {
  struct ae_http *h = srv->http;
  if (!h || !h->mhd) return;
  wake_all(srv);
  stop_uploads(srv);
  /* Let resumed connections answer: run MHD until no request is in
   * flight, waiting on its epoll fd, for at most STOP_FLUSH_MS. */
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  long long until = ae_mono_ns() + STOP_FLUSH_MS * 1000000LL;
  MHD_run(h->mhd);
  while (info && requests_in_flight(h) && ae_mono_ns() < until) {
    struct pollfd pfd = {.fd = info->epoll_fd, .events = POLLIN};
    if (poll(&pfd, 1, 10) < 0 && errno != EINTR) break;
    MHD_run(h->mhd);
  }
}

long long ae_http_bodies_parsed(const ae_server *srv) {
  return srv->http ? srv->http->n_parsed_off_loop : 0;
}

void ae_http_stop(ae_server *srv) {
  struct ae_http *h = srv->http;
  if (!h || !h->mhd) return;
  ae_http_flush(srv);
  ae_log(AE_LOG_INFO,
         "http: %lld request bodies were parsed on the thread pool",
         h->n_parsed_off_loop);
  uv_poll_stop(&h->mhd_poll);
  uv_close((uv_handle_t *)&h->mhd_poll, http_closed);
  uv_timer_stop(&h->mhd_timer);
  uv_close((uv_handle_t *)&h->mhd_timer, http_closed);
  uv_close((uv_handle_t *)&h->prepare, http_closed);
  uv_idle_stop(&h->mhd_idle);
  uv_close((uv_handle_t *)&h->mhd_idle, http_closed);
  uv_close((uv_handle_t *)&h->slow_timer, http_closed);
  MHD_stop_daemon(h->mhd);
  h->mhd = NULL;
}
