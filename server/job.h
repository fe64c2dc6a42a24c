/* job.h: one job of archevald, and the table of every job the daemon
 * knows (by id, by idempotency key, in submission order, and the finished
 * ones in expiry order), with an iterator for listing.
 *
 * Memory: a job holds its request only as text (ae_text, the normalised
 * request rendered once; never the JSON tree) plus, while queued or
 * running, the parsed request without its inline inputs: those are held
 * once, in the text, and read back as float32 by the worker that runs the
 * job, for the time of the run (ae_job_inputs_to_text).  A terminal job
 * holds its rendered parts only.  The table sums what every job holds
 * (held_bytes), for the --max-jobs-memory budget.
 *
 * Threads: the loop thread owns every ae_job and the table.  While a job is
 * running, its worker reads req (immutable by then) and writes the w_*
 * fields, which the loop reads only after the job's done event; the cancel
 * flag is an atomic the engine reads.  job_table.c holds the table; the
 * state changes are job_state.c's. */
#ifndef AE_SERVER_JOB_H
#define AE_SERVER_JOB_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#include "api/problem.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "server/event.h"
#include "server/queue.h"
#include "server/route.h"
#include "server/store.h"

/* A long poll waiting on a job: http.c's, opaque to every other file. */
struct ae_waiter;

/* An immutable text shared by a job and the listings streaming it, so that
 * a listing never copies a job's megabytes and a job may go while a
 * listing still sends its text.  Loop thread only (plain counts). */
typedef struct ae_text {
  size_t refs, len;
  char data[]; /* len bytes and a NUL */
} ae_text;

/* A new text holding a copy of s[0..len), one reference; NULL on ENOMEM. */
ae_text *ae_text_new(const char *s, size_t len);
/* A new text that takes the malloc'd string s (NULL when s is NULL); on
 * ENOMEM s is freed and NULL returned. */
ae_text *ae_text_take(char *s);
ae_text *ae_text_ref(ae_text *t);
void ae_text_unref(ae_text *t);

typedef struct ae_job {
  char id[32];
  ae_job_state state;
  int cancel_requested;
  /* Stopped by the drain and kept queued in the store for the next start:
   * state is queued, outside the queue and its counts ("draining": true). */
  int handed_over;
  atomic_int cancel; /* the loop sets, the engine reads */
  ae_request req;    /* read-only while queued or running */
  int has_req;
  /* req's inline inputs were dropped: the worker reads them back from
   * request_text (ae_request_inputs_from_text) when it runs the job. */
  int inputs_in_text;
  ae_text *request_text; /* the normalised request, rendered once */
  char *client_ref;
  int priority;
  long long timeout_ms;
  long long created_ms, started_ms, finished_ms, expires_ms;
  long long seq;
  long long enqueued_ns;
  char worker[32];
  char *idem_key;
  char body_hash[65];
  /* The rendering around request_text (job_render.c): head is up to
   * "request": (cached per state change; a queued job's is not cached,
   * its queue position moves); tail holds "result" or "error" once
   * terminal, then "}". */
  ae_text *head_text, *tail_text;
  size_t held_bytes; /* what this job holds, as counted in the table */
  /* Studies and the result cache (study.c, cache.c; issue 13). */
  char study[32];     /* the study it belongs to, or "": never expires */
  char canonical[65]; /* the architecture's canonical key, or "" */
  char cache_key[65]; /* the result cache's key, or "": not cached */
  int cached;         /* 1: the result came from the cache (no compute) */
  int deferred;       /* queued behind an identical job (the cache's
                         leader): outside the queue and its counts */
  int transient;      /* read from the store for one answer (job_fetch.c):
                         in no table, freed by ae_job_release */
  int remote;         /* --fleet: accepted here, queued in the store for
                         any replica; kept for the submission's answer
                         only (the sweep drops it; lookups read the store) */
  int study_gone;     /* --fleet: its study was deleted while it ran
                         here; its end removes its row from the store
                         (store_pg.c) and it expires at once here */
  int fleet_release;  /* --fleet: a study member whose end is stored;
                         the sweep lets this copy go (lookups read the
                         store), so a study deleted by another replica
                         leaves nothing held here */

  ae_queue_entry entry; /* the queue's, while queued */

  /* Written by the worker, read by the loop after the done event. */
  int w_rc;
  long long w_started_ms, w_start_ns, w_end_ns;
  ae_scorecard *w_card; /* malloc'd by the worker, freed at the done event
                          (a finished job does not carry its 500 bytes) */
  ae_problem w_problem;
  ae_event ev_started, ev_done;

  struct ae_waiter *waiters; /* http.c's long polls on this job */

  /* The table's links. */
  struct ae_job *hash_next, *idem_next;
  struct ae_job *prev, *next;         /* all jobs by seq */
  struct ae_job *fin_prev, *fin_next; /* finished jobs by expiry */
} ae_job;

/* The job holding a queue entry. */
#define AE_JOB_OF_ENTRY(e) ((ae_job *)((char *)(e)-offsetof(ae_job, entry)))

typedef struct {
  ae_job **buckets; /* by id */
  size_t n_buckets, n_jobs;
  ae_job **idem_buckets; /* by idempotency key */
  size_t n_idem_buckets, n_idem;
  ae_job *first, *last;         /* by seq */
  ae_job *fin_first, *fin_last; /* finished, by expiry */
  size_t held_bytes;            /* sum of the jobs' held_bytes */
  size_t n_finished;            /* jobs on the expiry list */
  size_t max_finished;          /* --max-finished-jobs (SIZE_MAX: none) */
  unsigned long long n_dropped; /* finished jobs dropped past the cap: the
                                   store has them (job_fetch.c) */
  size_t n_remote;              /* jobs with remote set (--fleet) */
  size_t budget_bytes;          /* --max-jobs-memory */
  size_t reserved_bytes;        /* the submission bodies being parsed: their
                                   parse's cost, within the budget beside
                                   held_bytes (job_state.c) */
  double job_limit_bytes; /* --max-job-memory, against ae_engine_estimate */
} ae_job_table;

int ae_job_table_init(ae_job_table *t);
/* Frees every job and the table. */
void ae_job_table_free(ae_job_table *t);
/* Makes room so that `more` ae_job_table_add calls cannot fail. */
int ae_job_table_reserve(ae_job_table *t, size_t more);
/* Adds a job (room reserved), in seq order. */
void ae_job_table_add(ae_job_table *t, ae_job *job);
/* Puts a terminal job on the expiry list. */
void ae_job_table_finished(ae_job_table *t, ae_job *job);
/* The finished job dropped first when past the cap (the oldest on the
 * expiry list) or NULL while at most max_finished are kept. */
ae_job *ae_job_table_over_cap(const ae_job_table *t);
/* Counts again what a job holds (after its texts or request changed); a
 * transient job is in no table and counts nowhere. */
void ae_job_table_recount(ae_job_table *t, ae_job *job);
/* What a job holds in memory: the job, its texts and its parsed request,
 * each block counted as malloc_usable_size says (what malloc gave it),
 * an uploaded model's warnings, and while it runs the float32 inputs its
 * worker read back from the text. */
size_t ae_job_held_bytes(const ae_job *job);
/* What a parsed request holds (its normalised JSON tree aside, which a
 * job drops): the architecture, the lowered network (nodes, names, input
 * lists), the inline inputs (float32) and labels, its strings. */
size_t ae_request_held_bytes(const ae_request *r);
/* Drops the float32 copy of a job's inline inputs (its request text
 * holds them; the worker reads them back, ae_job_run_request), so that a
 * queued job holds them once.  Before ae_job_table_add, or recount
 * after. */
void ae_job_inputs_to_text(ae_job *job);
/* The request a worker runs: *run is the job's req with its inline inputs
 * read back from the request text when they were dropped (*inputs the
 * buffer, to free after the run; NULL when none was made).  AE_OK,
 * AE_EINTERNAL (the text does not hold them), AE_ENOMEM.  The worker
 * thread, while it holds the job (its text does not change then). */
int ae_job_run_request(const ae_job *job, ae_request *run, float **inputs);
/* Removes a job from everything and frees it. */
void ae_job_table_remove(ae_job_table *t, ae_job *job);
ae_job *ae_job_table_find(const ae_job_table *t, const char *id);
ae_job *ae_job_table_find_idem(const ae_job_table *t, const char *key);
/* The finished job that expires first, or NULL. */
ae_job *ae_job_table_next_expiry(const ae_job_table *t);

/* Walks jobs newest first: descending seq, then descending id (byte
 * order) among jobs of one seq (the replicas of a fleet may share one). */
typedef struct {
  ae_job *next;
} ae_job_iter;

/* Starts at the newest job after key in the listing order
 * (ae_page_key_after); at the newest of all when key is NULL or
 * key->seq < 0. */
void ae_job_iter_start(const ae_job_table *t, const ae_page_key *key,
                       ae_job_iter *it);
/* The next job, or NULL at the end. The current job may be removed. */
ae_job *ae_job_iter_next(ae_job_iter *it);

/* The job's state or fields changed: its cached rendered head goes. */
void ae_job_render_changed(ae_job *job);
/* Sets the rendered tail to ,"KEY":VALUE} (VALUE a JSON text), or to }
 * when VALUE is NULL.  AE_OK or AE_ENOMEM (the old tail then stays). */
int ae_job_set_tail(ae_job *job, const char *key, const char *value);
/* A succeeded job's result and any job's normalised request, parsed from
 * their rendered texts (new references; NULL when there is none or out
 * of memory).  The job keeps texts, not trees (bounded memory). */
json_t *ae_job_result_json(const ae_job *job);
json_t *ae_job_request_json(const ae_job *job);

/* A new job, zeroed (cancel flag clear), or NULL. */
ae_job *ae_job_new(void);
/* Frees what the worker wrote (w_card, w_problem) once the loop read it. */
void ae_job_free_outcome(ae_job *job);
/* Frees a job that is in no table. */
void ae_job_free(ae_job *job);

#endif
