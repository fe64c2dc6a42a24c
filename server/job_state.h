/* job_state.h: the job state machine: queued -> running -> succeeded,
 * failed or cancelled; submission, cancel, delete, deadlines of queued
 * jobs, expiry of finished ones.  Every change is written to the store
 * and counted in the metrics here; a job that becomes terminal is reported
 * to the listeners registered with ae_jobs_on_terminal (the long polls, the
 * drain), never by calling them by name.  The listeners are told too when
 * the drain hands a job over to the next start (it stays queued, with
 * handed_over set): no job is running or queued here any more.
 *
 * Thread: the loop thread. */
#ifndef AE_SERVER_JOB_STATE_H
#define AE_SERVER_JOB_STATE_H

#include <jansson.h>
#include <stddef.h>

#include "server/daemon.h"

/* The table, the queue and the sweep timer (deadlines, expiry). */
int ae_jobs_init(ae_server *srv);
/* Closes the sweep timer (the loop then ends). */
void ae_jobs_close(ae_server *srv);
/* Frees every job, the table and the queue; after the workers stopped. */
void ae_jobs_free(ae_server *srv);
/* Adds a listener for terminal jobs; AE_ENOMEM when the list is full. */
int ae_jobs_on_terminal(ae_server *srv, ae_terminal_fn fn);

/* Creates jobs from parsed requests (taking them: each is zeroed) and
 * queues them; writes the store in one transaction first.  With batch, job
 * i's idempotency key is "KEY\nI".  0, or an error and nothing created
 * (the requests are then still the caller's). */
int ae_jobs_submit(ae_server *srv, ae_request *reqs, size_t n,
                   const char *idem_key, const char *body_hash, int batch,
                   ae_job **out);
/* The --max-jobs-memory default: a quarter of the physical memory. */
size_t ae_jobs_default_memory_budget(void);
/* Admission of n parsed requests (a batch's when batch is set) from a body
 * of body_bytes: AE_OK; AE_EINVAL with p filled (422, naming
 * data/batch_size) when a job's planned memory (ae_engine_estimate) passes
 * --max-job-memory; AE_ENOMEM with p filled (429 jobs_memory_full) and
 * *retry_after the seconds until the first finished job expires when they
 * do not fit in the memory jobs may hold (--max-jobs-memory) now, or 507
 * jobs_memory_full (no retry) when they would not fit even alone; AE_ENOMEM
 * with p empty when out of memory. */
int ae_jobs_admit(ae_server *srv, const ae_request *reqs, size_t n, int batch,
                  size_t body_bytes, ae_problem *p, int *retry_after);
/* What parsing a submission body holds at its peak, per byte of the body:
 * the body, its JSON tree (a jansson real and its array slot, about 40
 * bytes per number), the 17-digit rendering of the normalised request
 * before it is shortened, the text kept and the float32 inputs.  Measured
 * 14.5 for a 7.5 MB body of inline inputs written with 3 to 17 decimals
 * (tests/integration/test_reliability_memory_load.py); bodies of one-digit
 * numbers cost more per byte. */
#define AE_PARSE_BYTES_PER_BODY_BYTE 15
/* Reserves, within --max-jobs-memory, the parse of a submission body of
 * body_bytes (AE_PARSE_BYTES_PER_BODY_BYTE times it) before the parse
 * starts, so that concurrent large POSTs past the budget are refused
 * before they parse: AE_OK with *reserved the bytes reserved (release them
 * with ae_jobs_release_parse once parsed, before ae_jobs_admit counts the
 * jobs themselves, or when the request ends); AE_ENOMEM with p filled:
 * 429 with *retry_after while jobs or other parses hold the room, 507
 * when the parse alone would pass the budget. */
int ae_jobs_reserve_parse(ae_server *srv, size_t body_bytes, size_t *reserved,
                          ae_problem *p, int *retry_after);
/* Gives back a reservation of ae_jobs_reserve_parse (*reserved, then 0;
 * nothing when 0). */
void ae_jobs_release_parse(ae_server *srv, size_t *reserved);
/* What a submission adds to each job (issue 13): NULL fields are
 * absent.  result (stolen) finishes the job at once as succeeded and
 * cached; deferred keeps it queued outside the queue, behind an identical
 * job (cache.c finishes or queues it when that one ends). */
typedef struct {
  const char *study;
  const char *canonical;
  const char *cache_key;
  json_t *result;
  int deferred;
  /* --fleet: the job may wait for an identical one in the store (see
   * ae_store_job's follow): 1 an earlier one of this submission, 2 also
   * any one queued or running in the fleet. */
  int follow;
  /* The request already rendered (ae_json_dumps of its normalised form,
   * done off the loop): taken, and set to NULL, when the job keeps it. */
  char *request_text;
} ae_job_extra;

/* ae_jobs_submit with extra (n entries, or NULL). */
int ae_jobs_submit_ex(ae_server *srv, ae_request *reqs, size_t n,
                      const char *idem_key, const char *body_hash, int batch,
                      ae_job_extra *extra, ae_job **out);
/* Queues a job already in the table (room in the queue reserved). */
void ae_job_enqueue(ae_server *srv, ae_job *job);
/* A worker took the job (its start event). */
void ae_job_started(ae_server *srv, ae_job *job, const char *worker_name);
/* The worker finished the job: its w_* fields hold the outcome. */
void ae_job_done(ae_server *srv, ae_job *job);
/* Moves a job to a terminal state; steals result and error.  With a store
 * while draining, reason "draining" hands the job over to the next start
 * instead (it stays queued, "draining": true). */
void ae_job_finish(ae_server *srv, ae_job *job, ae_job_state state,
                   const char *reason, json_t *result, json_t *error);
/* The drain hands a queued or running job to the next start (the store
 * keeps it): it is shown queued, "draining": true, and its long polls
 * answer.  A running job keeps its request (its worker may still read
 * it). */
void ae_job_hand_over(ae_server *srv, ae_job *job);
/* Cancel: queued -> cancelled, running -> cancel requested. */
void ae_job_cancel(ae_server *srv, ae_job *job);
/* Removes a terminal job (and its stored row).  AE_OK; AE_EINVAL for a
 * job not terminal; the store's error when the delete was not durable
 * (the job then stays).  A transient job (job_fetch.h) is deleted from
 * the store only; its holder still releases it. */
int ae_job_delete(ae_server *srv, ae_job *job);

/* Drops the oldest finished jobs from memory while more than
 * --max-finished-jobs are kept (with a store only: the store keeps them
 * and job_fetch.c reads them back).  Called by the sweep and the load,
 * never from inside a job's end (a listener may still hold that job). */
void ae_jobs_trim_finished(ae_server *srv);

int ae_job_terminal(const ae_job *job);
const char *ae_job_state_name(ae_job_state s);
int ae_job_state_parse(const char *s, ae_job_state *out);

/* Logs a failed store call and turns the daemon not-ready (store_failing)
 * until a write succeeds again. */
void ae_jobs_store_failed(ae_server *srv, const char *what, const char *id,
                          int rc);

/* 1 when job id's terminal state waits here for the store (its write
 * failed and is kept to retry), 0 otherwise. */
int ae_jobs_end_unsaved(const ae_server *srv, const char *id);

/* Writes the kept terminal states again now (the store answered another
 * call, e.g. --fleet's heartbeat renewed this replica's leases); the
 * daemon is ready again unless one of the writes fails. */
void ae_jobs_retry_unsaved(ae_server *srv);

#endif
