/* options.h: archevald's command-line options, described once.
 *
 * One table in options.c (name, type, default, bounds, help) gives the
 * defaults, the getopt_long parser and the --help text, so the three cannot
 * drift apart.  README.md's "### Flags" section is that --help text, and
 * tests/integration/test_flags.py checks that they agree.
 *
 * Threads: parsed once on the main thread before the loop starts; read-only
 * afterwards. */
#ifndef AE_SERVER_OPTIONS_H
#define AE_SERVER_OPTIONS_H

#include <stddef.h>

#include "server/util.h"

typedef enum {
  AE_BACKEND_AUTO, /* cuda when a device opens, else host */
  AE_BACKEND_ONLY_HOST,
  AE_BACKEND_ONLY_CUDA
} ae_backend_choice;

/* --worker-sched: the worker threads' Linux scheduling policy. */
typedef enum {
  AE_WORKER_SCHED_OTHER, /* SCHED_OTHER at --worker-nice */
  AE_WORKER_SCHED_BATCH, /* SCHED_BATCH: never preempts on wake-up */
  AE_WORKER_SCHED_IDLE   /* SCHED_IDLE: only what no other thread wants */
} ae_worker_sched;

typedef struct {
  const char *http_address;
  int http_port;
  int backend;      /* ae_backend_choice */
  const char *gpus; /* "all" or "0,2" */
  int workers_per_gpu;
  int host_workers;         /* -1: 1 with a GPU, else the core count */
  int worker_nice;          /* the worker threads' nice value (0 to 19) */
  int worker_sched;         /* ae_worker_sched: their scheduling policy */
  long long worker_keep_ms; /* an idle worker keeps its buffers this long */
  long long max_queue;
  long long max_batch;
  long long max_body_bytes;
  long long max_model_bytes;   /* POST /v1/models: an ONNX file */
  long long max_job_memory;    /* 0: half the physical memory */
  long long max_jobs_memory;   /* 0: a quarter of the physical memory */
  long long max_finished_jobs; /* kept in memory; the store has the rest */
  long long default_timeout_ms;
  long long job_ttl_secs;
  int drain_timeout_secs;
  int connection_timeout_secs;
  int max_connections;
  int max_connections_per_ip;
  const char **datasets; /* NAME=PATH specs, owned array of borrowed argv */
  size_t n_datasets;
  const char *datasets_dir; /* --datasets-dir, or NULL */
  int log_json;             /* --log-format json */
  int log_level;            /* ae_log_level */
  const char *state_dir;    /* NULL or "": no store */
  const char *store_url;    /* --store: a PostgreSQL URL, or NULL */
  const char *store_file;   /* --store-file: a file holding it, or NULL */
  const char *log_file;     /* --log-file, or NULL: stderr */
  int store_sync_normal;    /* --store-sync normal */
  int fleet;                /* --fleet: the store's shared queue */
  const char *replica_id;   /* --replica-id, or NULL: made at start */
  int lease_secs;           /* --lease-secs */
  int max_attempts;         /* --max-attempts */
  int healthcheck;          /* --healthcheck */
} ae_options;

typedef enum {
  AE_OPTIONS_RUN,    /* start the daemon */
  AE_OPTIONS_EXIT,   /* --help or --version was printed: exit 0 */
  AE_OPTIONS_INVALID /* a usage error was printed: exit 2 */
} ae_options_outcome;

/* Fills o with the defaults, then parses argv (strings in o are borrowed
 * from argv).  Free with ae_options_free whatever the outcome. */
ae_options_outcome ae_options_parse(int argc, char **argv, ae_options *o);

void ae_options_free(ae_options *o);

#endif
