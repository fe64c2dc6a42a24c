/* metrics.c: archevald's Prometheus metrics (text format 0.0.4).
 *
 * Counters and histograms are plain numbers owned by the loop thread,
 * which updates them as jobs and requests finish and renders them for
 * GET /metrics.  The gauges (queued jobs, each worker's state and memory)
 * are read by the caller and passed in as plain values, so this file knows
 * nothing of jobs, workers or threads.  The store's latency histograms are
 * kept by store.c (ae_store_latency_read) and copied in by the caller, as
 * are its health and, in a fleet, its lease counts. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "server/metrics.h"

static const int http_codes[AE_HTTP_CODES] = {
    200, 202, 204, 400, 404, 405, 409, 413, 415, 422, 429, 500, 503, 0, 0, 0};

static const char *const finish_reasons[AE_FINISH_REASONS] = {
    "completed",    "cancelled",    "draining", "deadline_exceeded",
    "engine_error", "device_error", "internal", "other"};

static const double job_seconds_bounds[] = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900};
static const double http_seconds_bounds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,  0.05,    0.1,    0.5,   1,      5,     30};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The "op" label of each kind of store call (store.h); a kind added
 * there without a name here is shown as "op_N", never dropped. */
static const char *const store_op_names[AE_STORE_OP_COUNT] = {
    [AE_STORE_OP_INSERT] = "insert", [AE_STORE_OP_UPDATE] = "update",
    [AE_STORE_OP_EXPIRE] = "expire", [AE_STORE_OP_LOAD] = "load",
    [AE_STORE_OP_STUDY] = "study",   [AE_STORE_OP_CACHE] = "cache",
};

void ae_histogram_init(ae_histogram *h, const double *bounds, size_t n) {
  memset(h, 0, sizeof *h);
  h->bounds = bounds;
  h->n_bounds = n < AE_HIST_MAX_BUCKETS ? n : AE_HIST_MAX_BUCKETS;
}

void ae_histogram_observe(ae_histogram *h, double value) {
  size_t i = 0;
  while (i < h->n_bounds && value > h->bounds[i])
    i++;
  h->counts[i]++;
  h->sum += value;
  h->total++;
}

int ae_metrics_init(ae_metrics *m, size_t n_workers) {
  memset(m, 0, sizeof *m);
  ae_histogram_init(&m->queue_seconds, job_seconds_bounds,
                    N_OF(job_seconds_bounds));
  m->compute_seconds =
      calloc(n_workers ? n_workers : 1, sizeof *m->compute_seconds);
  if (!m->compute_seconds) return AE_ENOMEM;
  m->n_workers = n_workers;
  for (size_t i = 0; i < n_workers; i++)
    ae_histogram_init(&m->compute_seconds[i], job_seconds_bounds,
                      N_OF(job_seconds_bounds));
  for (int r = 0; r < AE_ROUTE_COUNT; r++)
    ae_histogram_init(&m->http_seconds[r], http_seconds_bounds,
                      N_OF(http_seconds_bounds));
  return AE_OK;
}

void ae_metrics_free(ae_metrics *m) {
  free(m->compute_seconds);
  m->compute_seconds = NULL;
}

void ae_metrics_job_finished(ae_metrics *m, ae_job_state state,
                             const char *reason) {
  int s = state == AE_JOB_SUCCEEDED ? 0 : state == AE_JOB_FAILED ? 1 : 2;
  int r = AE_FINISH_REASONS - 1;
  for (int i = 0; i < AE_FINISH_REASONS; i++)
    if (reason && !strcmp(reason, finish_reasons[i])) r = i;
  m->finished[s][r]++;
}

void ae_metrics_http(ae_metrics *m, int route, int status, double seconds) {
  if (route < 0 || route >= AE_ROUTE_COUNT) route = AE_ROUTE_OTHER;
  int code = -1;
  for (int i = 0; i < AE_HTTP_CODES; i++)
    if (http_codes[i] == status) code = i;
  if (code < 0)
    code = AE_HTTP_CODES - 1; /* "other": shown with its own label */
  m->http[route][code]++;
  ae_histogram_observe(&m->http_seconds[route], seconds);
}

/* A growing text buffer. */
typedef struct {
  char *buf;
  size_t len, cap;
  int failed;
} text_buf;

static void emit(text_buf *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void emit(text_buf *t, const char *fmt, ...) {
  if (t->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      t->failed = 1;
      return;
    }
    if ((size_t)n < t->cap - t->len) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = t->cap * 2 + (size_t)n + 1;
    char *fresh = realloc(t->buf, cap);
    if (!fresh) {
      t->failed = 1;
      return;
    }
    t->buf = fresh;
    t->cap = cap;
  }
}

static void emit_header(text_buf *t, const char *name, const char *type,
                        const char *help) {
  emit(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void emit_histogram(text_buf *t, const char *name, const char *labels,
                           const ae_histogram *h) {
  unsigned long long cumulative = 0;
  const char *sep = labels[0] ? "," : "";
  for (size_t i = 0; i < h->n_bounds; i++) {
    cumulative += h->counts[i];
    emit(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[i],
         cumulative);
  }
  cumulative += h->counts[h->n_bounds];
  emit(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cumulative);
  if (labels[0]) {
    emit(t, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, h->sum, name,
         labels, h->total);
  } else {
    emit(t, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name, h->total);
  }
}

/* A store call histogram (store.h's non-cumulative counts) as a
 * Prometheus histogram with an "op" label. */
static void emit_store_latency(text_buf *t, const char *op,
                               const double *bounds,
                               const ae_store_latency *h) {
  const char *name = "archeval_store_call_duration_seconds";
  unsigned long long cumulative = 0;
  for (size_t i = 0; i < AE_STORE_LATENCY_BUCKETS; i++) {
    cumulative += h->count[i];
    emit(t, "%s_bucket{op=\"%s\",le=\"%g\"} %llu\n", name, op, bounds[i],
         cumulative);
  }
  cumulative += h->count[AE_STORE_LATENCY_BUCKETS];
  emit(t, "%s_bucket{op=\"%s\",le=\"+Inf\"} %llu\n", name, op, cumulative);
  emit(t, "%s_sum{op=\"%s\"} %.9g\n%s_count{op=\"%s\"} %llu\n", name, op,
       h->sum_s, name, op, h->calls);
}

/* The job store's series: backend and health, call latency and errors
 * by kind of call, and the fleet's leases when the store has them. */
static void emit_store(text_buf *t, const ae_metrics_store *st) {
  char other[16];
  emit_header(t, "archeval_store_up", "gauge",
              "1 while the job store answers (readiness), 0 while it fails; "
              "the backend as a label.");
  emit(t, "archeval_store_up{backend=\"%s\"} %d\n", st->backend,
       st->reachable ? 1 : 0);

  emit_header(t, "archeval_store_call_duration_seconds", "histogram",
              "Time of each job store call, by kind of call (failed calls "
              "included).");
  for (int op = 0; op < AE_STORE_OP_COUNT; op++) {
    const char *name = store_op_names[op];
    if (!name) {
      snprintf(other, sizeof other, "op_%d", op);
      name = other;
    }
    emit_store_latency(t, name, st->latency_bounds, &st->latency[op]);
  }

  emit_header(t, "archeval_store_call_errors_total", "counter",
              "Job store calls that failed, by kind of call.");
  for (int op = 0; op < AE_STORE_OP_COUNT; op++) {
    const char *name = store_op_names[op];
    if (!name) {
      snprintf(other, sizeof other, "op_%d", op);
      name = other;
    }
    emit(t, "archeval_store_call_errors_total{op=\"%s\"} %llu\n", name,
         st->latency[op].errors);
  }

  emit_header(t, "archeval_store_unsaved_finishes", "gauge",
              "Terminal states the store failed to take, written again "
              "once it answers.");
  emit(t, "archeval_store_unsaved_finishes %zu\n", st->unsaved_finishes);

  if (!st->has_leases) return;
  emit_header(t, "archeval_store_leases_held", "gauge",
              "Jobs whose lease this replica holds (running here).");
  emit(t, "archeval_store_leases_held %llu\n", st->leases_held);
  emit_header(t, "archeval_store_leases_requeued_total", "counter",
              "Expired leases (a replica that stopped renewing) this replica "
              "put back in the queue.");
  emit(t, "archeval_store_leases_requeued_total %llu\n", st->leases_requeued);
  emit_header(t, "archeval_store_leases_exhausted_total", "counter",
              "Jobs this replica failed because their lease expired on every "
              "attempt.");
  emit(t, "archeval_store_leases_exhausted_total %llu\n", st->leases_exhausted);
}

/* A worker's label: its name, made unique with "/INDEX" when several
 * workers share it (--workers-per-gpu > 1). */
static const char *worker_label(const ae_metrics *m, const ae_metrics_gauges *g,
                                size_t i, char *buf, size_t len) {
  const char *name = g->workers[i].name;
  for (size_t k = 0; k < m->n_workers; k++)
    if (k != i && !strcmp(g->workers[k].name, name)) {
      snprintf(buf, len, "%s/%zu", name, i);
      return buf;
    }
  return name;
}

char *ae_metrics_render(const ae_metrics *m, const ae_metrics_gauges *g,
                        size_t *len) {
  text_buf t = {malloc(16384), 0, 16384, 0};
  if (!t.buf) return NULL;
  static const char *const states[3] = {"succeeded", "failed", "cancelled"};
  char labels[128], wl[48];

  emit_header(&t, "archeval_jobs_submitted_total", "counter",
              "Jobs accepted (202).");
  emit(&t, "archeval_jobs_submitted_total %llu\n", m->jobs_submitted);

  emit_header(&t, "archeval_jobs_finished_total", "counter",
              "Jobs that reached a terminal state, by state and reason.");
  for (int s = 0; s < 3; s++)
    for (int r = 0; r < AE_FINISH_REASONS; r++)
      if (m->finished[s][r] || (r == 0 && s == 0))
        emit(&t,
             "archeval_jobs_finished_total{state=\"%s\",reason=\"%s\"} %llu\n",
             states[s], finish_reasons[r], m->finished[s][r]);

  emit_header(&t, "archeval_jobs_queued", "gauge", "Jobs waiting to run.");
  emit(&t, "archeval_jobs_queued %zu\n", g->n_queued);

  emit_header(&t, "archeval_jobs_held", "gauge",
              "Jobs held in memory (queued, running and finished).");
  emit(&t, "archeval_jobs_held %zu\n", g->jobs_held);

  emit_header(&t, "archeval_jobs_memory_bytes", "gauge",
              "Bytes the jobs in memory hold (requests, inline inputs, "
              "lowered networks, rendered texts), as --max-jobs-memory "
              "counts them.");
  emit(&t, "archeval_jobs_memory_bytes %zu\n", g->jobs_memory_bytes);

  emit_header(&t, "archeval_jobs_memory_reserved_bytes", "gauge",
              "Bytes reserved in --max-jobs-memory for the submissions "
              "being parsed (15 times each body).");
  emit(&t, "archeval_jobs_memory_reserved_bytes %zu\n",
       g->jobs_memory_reserved_bytes);

  emit_header(&t, "archeval_jobs_memory_budget_bytes", "gauge",
              "--max-jobs-memory: past it, POST answers 429 or 507.");
  emit(&t, "archeval_jobs_memory_budget_bytes %zu\n",
       g->jobs_memory_budget_bytes);

  emit_header(&t, "archeval_jobs_finished_held", "gauge",
              "Finished jobs held in memory until they expire (or, with a "
              "store, past --max-finished-jobs).");
  emit(&t, "archeval_jobs_finished_held %zu\n", g->finished_held);

  emit_header(&t, "archeval_jobs_running", "gauge", "Jobs running, by worker.");
  for (size_t i = 0; i < m->n_workers; i++)
    emit(&t, "archeval_jobs_running{worker=\"%s\"} %d\n",
         worker_label(m, g, i, wl, sizeof wl), g->workers[i].running);

  emit_header(&t, "archeval_job_queue_seconds", "histogram",
              "Time from submission to the start of the evaluation.");
  emit_histogram(&t, "archeval_job_queue_seconds", "", &m->queue_seconds);

  emit_header(&t, "archeval_job_compute_seconds", "histogram",
              "Evaluation time, by worker.");
  for (size_t i = 0; i < m->n_workers; i++) {
    snprintf(labels, sizeof labels, "worker=\"%s\"",
             worker_label(m, g, i, wl, sizeof wl));
    emit_histogram(&t, "archeval_job_compute_seconds", labels,
                   &m->compute_seconds[i]);
  }

  emit_header(&t, "archeval_http_requests_total", "counter",
              "HTTP requests answered, by route and status code.");
  for (int r = 0; r < AE_ROUTE_COUNT; r++)
    for (int c = 0; c < AE_HTTP_CODES; c++)
      if (m->http[r][c]) {
        char code[16];
        if (http_codes[c])
          snprintf(code, sizeof code, "%d", http_codes[c]);
        else
          snprintf(code, sizeof code, "other");
        emit(&t,
             "archeval_http_requests_total{route=\"%s\",code=\"%s\"} "
             "%llu\n",
             ae_route_labels[r], code, m->http[r][c]);
      }

  emit_header(&t, "archeval_http_request_duration_seconds", "histogram",
              "HTTP request duration, by route.");
  for (int r = 0; r < AE_ROUTE_COUNT; r++) {
    if (!m->http_seconds[r].total) continue;
    snprintf(labels, sizeof labels, "route=\"%s\"", ae_route_labels[r]);
    emit_histogram(&t, "archeval_http_request_duration_seconds", labels,
                   &m->http_seconds[r]);
  }

  emit_header(&t, "archeval_worker_ready", "gauge",
              "1 when the worker finished its warm-up and is in service.");
  for (size_t i = 0; i < m->n_workers; i++)
    emit(&t, "archeval_worker_ready{worker=\"%s\"} %d\n",
         worker_label(m, g, i, wl, sizeof wl), g->workers[i].ready);

  emit_header(&t, "archeval_gpu_memory_used_bytes", "gauge",
              "Device (or host buffer) memory the worker's engine holds.");
  for (size_t i = 0; i < m->n_workers; i++)
    emit(&t, "archeval_gpu_memory_used_bytes{worker=\"%s\"} %llu\n",
         worker_label(m, g, i, wl, sizeof wl), g->workers[i].memory_used);

  emit_header(&t, "archeval_http_slow_connections_dropped_total", "counter",
              "Connections dropped because a request took longer than "
              "--connection-timeout-secs to arrive.");
  emit(&t, "archeval_http_slow_connections_dropped_total %lld\n",
       g->n_slow_dropped);

  if (g->store) emit_store(&t, g->store);

  if (g->replica && g->replica[0]) {
    emit_header(&t, "archeval_replica_info", "gauge",
                "This daemon's replica id (--replica-id): its name in the "
                "store's leases and logs.");
    emit(&t, "archeval_replica_info{replica=\"%s\"} 1\n", g->replica);
  }

  emit_header(&t, "archeval_build_info", "gauge",
              "The build: version and whether CUDA was compiled in.");
#ifdef HAVE_CUDA
  const char *cuda = "yes";
#else
  const char *cuda = "no";
#endif
  emit(&t, "archeval_build_info{version=\"%s\",cuda=\"%s\"} 1\n",
       PACKAGE_VERSION, cuda);

  if (t.failed) {
    free(t.buf);
    return NULL;
  }
  *len = t.len;
  return t.buf;
}
