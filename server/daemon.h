/* daemon.h: the state of one archevald process (ae_server), which the
 * upper files of server/ share: job_state.c, job_load.c, job_render.c,
 * workers.c, drain.c, http.c and main.c.
 *
 * This header declares no function: each file declares its own in its own
 * header, and a file includes the headers of exactly the files it calls, so
 * the includes show the calls (tests/check_layers.sh checks that they have
 * no circle).  The lower files whose types are embedded here (util,
 * options, queue, job_table, metrics, store, route) never include it.
 *
 * Threads: the libuv loop thread owns the ae_server, every ae_job, the HTTP
 * layer and the metrics, without locks.  Worker threads touch only the
 * queue and the event list (each under its own mutex), the job they run and
 * their own ae_worker (see workers.h and job.h). */
#ifndef AE_DAEMON_H
#define AE_DAEMON_H

#include <pthread.h>
#include <stddef.h>
#include <uv.h>

#include "api/request.h"
#include "gpu/dataset.h"
#include "server/event.h"
#include "server/job.h"
#include "server/metrics.h"
#include "server/options.h"
#include "server/queue.h"
#include "server/store.h"

typedef struct ae_server ae_server;
typedef struct ae_worker ae_worker;
struct ae_http;

/* Told when a job becomes terminal (succeeded, failed, cancelled). */
typedef void (*ae_terminal_fn)(ae_server *srv, ae_job *job);
#define AE_MAX_TERMINAL_LISTENERS 8

struct ae_server {
  const ae_options *opt;
  uv_loop_t *loop;
  ae_dataset_registry registry;
  ae_catalog catalog;
  ae_limits limits;
  ae_store *store;
  ae_metrics metrics;
  /* The store's health, as its callers see it (job_state.c; the loop): set
   * by a failed write, cleared by a write that succeeds (or the probe of
   * the sweep).  While set, /v1/health/ready answers 503. */
  int store_failing;
  int store_full; /* the last failure said the disk is full */
  char store_reason[256];
  long long store_probe_ms;
  /* Terminal states the store failed to take, written again once it
   * answers (job_state.c; the loop), oldest first. */
  struct ae_unsaved_finish *unsaved_head, *unsaved_tail;
  size_t n_unsaved;
  size_t n_fleet_release; /* jobs with fleet_release set (job.h) */
  /* A fleet's leases (issue 15), for /metrics: the counts of
   * ae_store_requeue_expired run by this replica (fleet.c). */
  unsigned long long leases_requeued, leases_exhausted;

  /* Jobs (job_state.c; the loop). */
  ae_job_table jobs;
  long long next_seq;
  size_t n_queued, n_running;
  ae_terminal_fn on_terminal[AE_MAX_TERMINAL_LISTENERS];
  size_t n_on_terminal;
  uv_timer_t sweep_timer;

  /* The fleet (fleet.c; the loop): with --fleet, jobs are claimed from
   * the store's shared queue; on_submitted (fleet.c's, registered) is told
   * of jobs accepted here, which wait in the store, not in the queue. */
  int fleet;
  char replica_id[128];
  void (*on_submitted)(ae_server *srv);
  /* Told of a change of a job's state made anywhere in the fleet (the
   * store's notifications; http.c's, registered: long polls wake). */
  void (*on_job_changed)(ae_server *srv, const char *id);
  struct ae_fleet *fleet_state;

  /* The result cache's in-flight map (cache.c) and the studies
   * (study.c); the loop's. */
  struct ae_cache *cache;
  struct ae_studies *studies;
  struct ae_models *models; /* uploaded ONNX models (models.c) */

  /* The queue (queue.c; any thread, under its lock). */
  ae_queue queue;

  /* Workers (workers.c): the events they post, under event_mu, and the
   * handle that wakes the loop for them. */
  ae_worker *workers;
  size_t n_workers;
  pthread_mutex_t event_mu;
  int events_open; /* event_mu and async initialised */
  ae_event *ev_head, *ev_tail;
  uv_async_t async;

  /* HTTP (http.c; the loop): opaque to the other files. */
  struct ae_http *http;

  /* The drain (drain.c; the loop).  on_drained is the owner's (main.c)
   * way to stop everything once no job runs. */
  uv_timer_t drain_timer;
  int draining;
  int stopping;
  void (*on_drained)(ae_server *srv);
  /* The owner's last word before a forced exit (main.c: let the answers
   * in flight go out). */
  void (*before_exit)(ae_server *srv);

  /* Signals (main.c). */
  uv_signal_t sig_term, sig_int, sig_hup;
  int signals;
};

#endif
