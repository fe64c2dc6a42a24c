/* metrics.h: archevald's Prometheus counters and histograms.
 *
 * Thread: the loop thread owns an ae_metrics; the gauges it renders are
 * read by the caller (http.c) and passed in, so this unit knows nothing of
 * jobs or workers. */
#ifndef AE_SERVER_METRICS_H
#define AE_SERVER_METRICS_H

#include <stddef.h>

#include "server/route.h"
#include "server/store.h"

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

#define AE_HTTP_CODES 16
#define AE_FINISH_REASONS 8

typedef struct {
  unsigned long long jobs_submitted;
  /* finished[state][reason]: states succeeded/failed/cancelled. */
  unsigned long long finished[3][AE_FINISH_REASONS];
  ae_histogram queue_seconds;
  ae_histogram *compute_seconds; /* per worker */
  size_t n_workers;
  unsigned long long http[AE_ROUTE_COUNT][AE_HTTP_CODES];
  ae_histogram http_seconds[AE_ROUTE_COUNT];
} ae_metrics;

/* One worker as the gauges show it. */
typedef struct {
  const char *name;
  int running;
  int ready;
  unsigned long long memory_used;
} ae_metrics_worker;

/* The job store as one rendering shows it, read by the caller (the loop
 * thread owns the store): its backend, its health, the latency of each
 * kind of call (ae_store_latency_read) and, in a fleet, this replica's
 * leases.  Lease counts are shown only when has_leases is set (a store
 * without leases has none to count, not zero). */
typedef struct {
  const char *backend; /* "sqlite", "postgresql" */
  int reachable;       /* 0 while the daemon is not ready for the store */
  ae_store_latency latency[AE_STORE_OP_COUNT];
  const double *latency_bounds; /* AE_STORE_LATENCY_BUCKETS upper bounds,
                                   seconds (ae_store_latency_bounds) */
  size_t unsaved_finishes;      /* terminal states waiting for the store */
  int has_leases;
  unsigned long long leases_held;      /* gauge: jobs this replica runs */
  unsigned long long leases_requeued;  /* counter: expired, re-queued */
  unsigned long long leases_exhausted; /* counter: failed, attempts used */
} ae_metrics_store;

/* The gauges of one rendering, read by the caller. */
typedef struct {
  size_t n_queued;
  long long n_slow_dropped;
  const ae_metrics_worker *workers; /* n_workers of ae_metrics_init */
  const ae_metrics_store *store;    /* NULL: the daemon runs without one */
  const char *replica;              /* this process in a fleet (--replica-id) */
  /* The jobs in memory (job.h's table): how many, what they hold as the
   * --max-jobs-memory budget counts it, that budget, and the finished
   * ones kept (against --max-finished-jobs). */
  size_t jobs_held;
  size_t jobs_memory_bytes;
  size_t jobs_memory_budget_bytes;
  size_t jobs_memory_reserved_bytes; /* submissions being parsed */
  size_t finished_held;
} ae_metrics_gauges;

int ae_metrics_init(ae_metrics *m, size_t n_workers);
void ae_metrics_free(ae_metrics *m);
/* A job reached state (terminal) for reason ("completed", "draining"...). */
void ae_metrics_job_finished(ae_metrics *m, ae_job_state state,
                             const char *reason);
void ae_metrics_http(ae_metrics *m, int route, int status, double seconds);
/* The Prometheus text, malloc'd; NULL when out of memory. */
char *ae_metrics_render(const ae_metrics *m, const ae_metrics_gauges *g,
                        size_t *len);

#endif
