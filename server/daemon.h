/* daemon.h: archevald's internal interfaces, shared by the files of
 * server/ (main.c, jobs.c, http.c, metrics.c, util.c).
 *
 * Threads: one libuv loop thread owns the ae_server, every ae_job, the HTTP
 * layer and the metrics, without locks.  Worker threads (one per engine)
 * touch only: the priority queue and the event list (each under its own
 * mutex), the request of the job they run (read-only), the w_* fields of
 * that job (written before the job's "done" event is posted, read by the
 * loop only after it received that event), the job's atomic cancel flag,
 * and their own ae_worker's w_* fields and atomics. */
#ifndef AE_DAEMON_H
#define AE_DAEMON_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "api/problem.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "server/store.h"

/* ---- options (main.c) ---- */

typedef enum {
  AE_LOG_DEBUG,
  AE_LOG_INFO,
  AE_LOG_WARN,
  AE_LOG_ERROR
} ae_log_level;

typedef struct {
  char *http_address;           /* "127.0.0.1" */
  int http_port;                /* 8000 */
  char *backend;                /* "auto" | "host" | "cuda" */
  char *gpus;                   /* "all" or "0,2" */
  int workers_per_gpu;          /* 1 */
  int host_workers;             /* -1: default (1 with a GPU, else cores) */
  long max_queue;               /* 1024 */
  long max_batch;               /* 256 */
  long long max_body_bytes;     /* 8 MiB */
  long long max_job_memory;     /* 0: half the physical memory */
  long long default_timeout_ms; /* 600000 */
  long long job_ttl_secs;       /* 3600 */
  int drain_timeout_secs;       /* 25 */
  int connection_timeout_secs;  /* 30 */
  int max_connections;          /* 1024 */
  int max_connections_per_ip;   /* 64 */
  char **datasets;              /* NAME=PATH specs */
  size_t n_datasets;
  const char *datasets_dir;     /* --datasets-dir, or NULL */
  int log_json;           /* --log-format json */
  ae_log_level log_level; /* info */
  char *state_dir;        /* NULL or "": no store */
  int store_sync_normal;  /* --store-sync normal */
} ae_options;

/* ---- logging (util.c) ---- */

void ae_log_setup(ae_log_level level, int json);
int ae_log_enabled(ae_log_level level);
/* One free-text line at a level (not a request line). */
void ae_log(ae_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line per HTTP request. */
void ae_log_request(const char *request_id, const char *method,
                    const char *path, int status, double duration_ms,
                    const char *job_id);

/* ---- small utilities (util.c) ---- */

long long ae_now_ms(void);  /* Unix epoch milliseconds */
long long ae_mono_ns(void); /* CLOCK_MONOTONIC nanoseconds */
/* "2026-11-23T00:25:34.123Z" into buf (>= 32 bytes). */
void ae_format_rfc3339(long long ms, char *buf, size_t len);
uint64_t ae_random_u64(void); /* loop thread only */
/* A new time-sortable id "j_" + 22 chars into buf (>= 32 bytes). */
void ae_job_id_new(char *buf, size_t len);
/* Lowercase hex SHA-256 of data into hex (65 bytes). */
void ae_sha256_hex(const void *data, size_t len, char hex[65]);

/* ---- jobs, queue, workers (jobs.c) ---- */

typedef struct ae_server ae_server;
typedef struct ae_job ae_job;
typedef struct ae_waiter ae_waiter;

typedef enum {
  AE_EV_OPENED,
  AE_EV_READY,
  AE_EV_FAILED,
  AE_EV_STARTED,
  AE_EV_DONE
} ae_event_kind;

typedef struct ae_event {
  ae_event_kind kind;
  int worker;
  ae_job *job;
  struct ae_event *next;
} ae_event;

struct ae_job {
  char id[32];
  ae_job_state state;   /* loop */
  int cancel_requested; /* loop */
  atomic_int cancel;    /* loop sets, engine reads */
  ae_request req;       /* read-only while queued/running */
  int has_req;
  json_t *request_json; /* owned: the normalised request */
  json_t *result_json;  /* owned: when succeeded */
  json_t *error_json;   /* owned: when failed */
  char *client_ref;
  int priority;
  long long timeout_ms;
  long long created_ms, started_ms, finished_ms, expires_ms;
  long long seq;
  long long deadline_ns; /* monotonic; 0 = none */
  long long enqueued_ns;
  char worker[32];
  char *idem_key;
  char body_hash[65];
  char *cached_body; /* the rendered JSON of a terminal job */
  size_t cached_len;
  const char *finish_reason; /* static: for the metrics */

  /* Under the queue mutex. */
  size_t heap_pos;
  int in_heap;

  /* Written by the worker, read by the loop after the event. */
  int w_rc;
  int w_worker;
  long long w_started_ms, w_start_ns, w_end_ns;
  ae_scorecard w_card;
  ae_problem w_problem;
  ae_event ev_started, ev_done;

  /* Loop-only links. */
  ae_job *hash_next, *idem_next;
  ae_job *prev, *next;         /* all jobs by seq */
  ae_job *fin_prev, *fin_next; /* finished jobs by expiry */
  ae_waiter *waiters;
};

typedef struct {
  ae_server *srv;
  int index;
  pthread_t thread;
  int thread_started;
  ae_engine_config cfg;
  int allow_fallback; /* --backend auto: cuda may fall back */
  char w_name[32];    /* worker thread writes before EV_OPENED */
  char w_error[256];
  ae_event ev_opened, ev_ready, ev_failed;
  atomic_ullong memory_used;
  /* Loop-only. */
  char name[32];
  char device[64];
  int ready, failed;
  ae_job *current;
} ae_worker;

/* Histogram with fixed upper bounds (seconds). */
#define AE_HIST_MAX_BUCKETS 16
typedef struct {
  const double *bounds;
  size_t n_bounds;
  unsigned long long counts[AE_HIST_MAX_BUCKETS + 1];
  double sum;
  unsigned long long total;
} ae_histogram;

void ae_histogram_init(ae_histogram *h, const double *bounds, size_t n);
void ae_histogram_observe(ae_histogram *h, double value);

/* Routes, for the metrics labels. */
enum {
  AE_ROUTE_LIVE,
  AE_ROUTE_READY,
  AE_ROUTE_ROOT,
  AE_ROUTE_METRICS,
  AE_ROUTE_DATASETS,
  AE_ROUTE_JOBS,
  AE_ROUTE_BATCH,
  AE_ROUTE_JOB,
  AE_ROUTE_CANCEL,
  AE_ROUTE_OTHER,
  AE_ROUTE_COUNT
};
#define AE_HTTP_CODES 16

typedef struct {
  unsigned long long jobs_submitted;
  /* finished[state][reason]: states succeeded/failed/cancelled. */
  unsigned long long finished[3][8];
  ae_histogram queue_seconds;
  ae_histogram *compute_seconds; /* per worker */
  unsigned long long http[AE_ROUTE_COUNT][AE_HTTP_CODES];
  ae_histogram http_seconds[AE_ROUTE_COUNT];
} ae_metrics;

extern const char *const ae_route_labels[AE_ROUTE_COUNT];
extern const int ae_http_codes[AE_HTTP_CODES];
extern const char *const ae_finish_reasons[8];

struct ae_server {
  ae_options *opt;
  uv_loop_t *loop;
  ae_dataset_registry registry;
  ae_catalog catalog;
  ae_limits limits;
  ae_store *store;

  /* Jobs (loop). */
  ae_job **buckets; /* by id */
  size_t n_buckets, n_jobs;
  ae_job **idem_buckets; /* by idempotency key */
  size_t n_idem_buckets, n_idem;
  ae_job *first, *last;         /* by seq */
  ae_job *fin_first, *fin_last; /* finished, by expiry */
  long long next_seq;
  size_t n_queued, n_running;

  /* Queue (workers and loop, under queue_mu). */
  pthread_mutex_t queue_mu;
  pthread_cond_t queue_cv;
  ae_job **heap;
  size_t heap_n, heap_cap;
  int queue_stop;
  struct {
    int priority;
    long count;
  } * prios; /* queued per priority */
  size_t n_prios, cap_prios;
  int prio_broken;
  long long heap_max_seq; /* the newest job ever queued */

  /* Events from workers (under event_mu), woken by async. */
  pthread_mutex_t event_mu;
  ae_event *ev_head, *ev_tail;
  uv_async_t async;

  ae_worker *workers;
  size_t n_workers;

  /* HTTP (loop). */
  struct MHD_Daemon *mhd;
  uv_poll_t mhd_poll;
  uv_timer_t mhd_timer;
  int need_mhd_run;
  ae_waiter *all_waiters; /* every suspended long poll */
  struct ae_http_conn *http_conns; /* every open TCP connection */
  long long n_requests;
  long long n_slow_dropped;        /* connections dropped as too slow */

  /* Timers and signals (loop). */
  uv_timer_t sweep_timer;
  uv_timer_t drain_timer;
  uv_signal_t sig_term, sig_int;
  int draining;
  int drain_deadline_passed;
  int stopping;
  int signals;
  int exit_code;

  ae_metrics metrics;
};

/* Jobs (jobs.c). */
int ae_server_jobs_init(ae_server *srv);
void ae_server_jobs_free(ae_server *srv);
int ae_workers_start(ae_server *srv);
void ae_workers_stop(ae_server *srv);
ae_job *ae_job_find(ae_server *srv, const char *id);
ae_job *ae_job_find_idem(ae_server *srv, const char *key);
/* Creates jobs from parsed requests (taking them: each is zeroed) and
 * queues them; writes the store in one transaction first.  With batch, job
 * i's idempotency key is "KEY\nI".  0, or an error and nothing created
 * (the requests are then still the caller's). */
int ae_jobs_submit(ae_server *srv, ae_request *reqs, size_t n,
                   const char *idem_key, const char *body_hash, int batch,
                   ae_job **out);
/* Cancel (queued -> cancelled, running -> cancel requested). */
void ae_job_cancel(ae_server *srv, ae_job *job);
void ae_job_delete(ae_server *srv, ae_job *job);
/* The job resource, new reference. */
json_t *ae_job_to_json(ae_server *srv, ae_job *job);
/* The job's rendered JSON, cached when terminal; malloc'd copy or NULL. */
char *ae_job_render(ae_server *srv, ae_job *job, size_t *len);
int ae_job_terminal(const ae_job *job);
const char *ae_job_state_name(ae_job_state s);
int ae_job_state_parse(const char *s, ae_job_state *out);
int ae_server_ready(const ae_server *srv);
/* Starts the drain (signal). */
void ae_server_drain(ae_server *srv);
/* Closes every handle so the loop ends (main.c), once drained. */
void ae_server_shutdown(ae_server *srv);
/* Loads the store's jobs at start. */
int ae_jobs_load(ae_server *srv);

/* HTTP (http.c). */
int ae_http_start(ae_server *srv);
/* Runs MHD once and re-arms its timer (after resuming connections). */
void ae_http_run(ae_server *srv);
/* Shuts down connections that have held a request (its headers still
 * arriving) longer than --connection-timeout-secs: MHD's own timeout only
 * counts idle time, which a client trickling bytes resets.  Called by the
 * sweep timer. */
void ae_http_drop_slow(ae_server *srv);
/* Resumes every long poll waiting on job (it became terminal). */
void ae_http_wake_waiters(ae_server *srv, ae_job *job);
void ae_http_wake_all(ae_server *srv);
void ae_http_stop(ae_server *srv);

/* Metrics (metrics.c). */
int ae_metrics_init(ae_server *srv);
void ae_metrics_free(ae_server *srv);
void ae_metrics_job_finished(ae_server *srv, ae_job *job);
void ae_metrics_http(ae_server *srv, int route, int status, double seconds);
/* The Prometheus text, malloc'd. */
char *ae_metrics_render(ae_server *srv, size_t *len);

#endif
