/* workers.h: archevald's workers: one thread per engine (a CUDA device or
 * a share of the host's cores), which take jobs from the queue, score them
 * and tell the loop through events.
 *
 * Threads: each worker thread touches only its own w_* fields and atomics,
 * the queue (under its lock), the event list (under its lock) and the job
 * it runs (see job.h); the loop owns the rest of an ae_worker. */
#ifndef AE_SERVER_WORKERS_H
#define AE_SERVER_WORKERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "gpu/engine.h"
#include "server/event.h"
#include "server/metrics.h"

typedef struct ae_server ae_server;

typedef struct ae_worker {
  ae_server *srv;
  int index;
  pthread_t thread;
  int thread_started;
  ae_engine_config cfg;
  int allow_fallback; /* --backend auto: cuda may fall back */
  char w_name[32];    /* the worker thread writes it before EV_OPENED */
  char w_error[256];
  ae_event ev_opened, ev_ready, ev_failed;
  atomic_ullong memory_used;
  /* Loop-only. */
  char name[32];
  char device[64];
  int ready, failed;
  int busy; /* a job of its own is running */
} ae_worker;

/* Decides the workers from the options (devices, host cores) into
 * srv->workers.  Before the loop. */
int ae_workers_plan(ae_server *srv);
/* Sets up the event wake-up on the loop. */
int ae_workers_init(ae_server *srv);
int ae_workers_start(ae_server *srv);
/* Stops the queue, joins the threads and closes the wake-up handle. */
void ae_workers_stop(ae_server *srv);
void ae_workers_free(ae_server *srv);
/* 1 when every worker finished its warm-up and none left service. */
int ae_workers_all_ready(const ae_server *srv);
/* The gauges of each worker, into out (srv->n_workers entries). */
void ae_workers_gauges(const ae_server *srv, ae_metrics_worker *out);

#endif
