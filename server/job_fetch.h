/* job_fetch.h: jobs this daemon does not hold in memory, read from the
 * store for one answer: finished jobs dropped past --max-finished-jobs
 * (issue 14) and, on a shared store, the jobs of other replicas (issue
 * 15).  A job read so is transient: it is in no table, it holds its
 * texts only (never a parsed request), and its holder frees it with
 * ae_job_release once the answer is rendered (the rendered parts are
 * shared texts that outlive it).
 *
 * Thread: the loop thread. */
#ifndef AE_SERVER_JOB_FETCH_H
#define AE_SERVER_JOB_FETCH_H

#include <stddef.h>

#include "server/daemon.h"

/* A detached job made of a stored row's fields and texts (terminal ones
 * with their result or error as the tail); NULL when out of memory. */
ae_job *ae_job_from_row(const ae_store_job *row);

/* The job ID: the table's when this daemon holds it, else a transient
 * copy read from the store.  NULL with *rc AE_ENOTFOUND when there is no
 * such job (or it expired), AE_EIO when the store failed (its message is
 * logged), AE_ENOMEM. */
ae_job *ae_job_lookup(ae_server *srv, const char *id, int *rc);
/* The same by idempotency key (a batch's job i holds "KEY\nI"). */
ae_job *ae_job_lookup_idem(ae_server *srv, const char *key, int *rc);
/* Frees a transient job; nothing for a job of the table (or NULL). */
void ae_job_release(ae_job *job);

/* Whether the store holds jobs this daemon's memory does not (finished
 * ones were dropped past the cap): only then do a miss in the table, and a
 * listing, read the store (a daemon that dropped nothing answers from
 * memory, as before, even while its store fails). */
int ae_jobs_store_has_more(const ae_server *srv);

/* A cancel of a transient job that is not terminal (--fleet: another
 * replica's, or waiting in the shared queue): a queued one is cancelled in
 * the store at once; a running one (or one claimed meanwhile) gets its
 * stored cancel_requested set, which its owner's heartbeat reads.  AE_OK
 * (job shows the change), AE_ENOTFOUND (it went), AE_EIO, AE_ENOMEM. */
int ae_job_cancel_elsewhere(ae_server *srv, ae_job *job);

/* A listing's page read from the store (see ae_store_page: newest first,
 * before (page->before, page->before_id)), as transient jobs, finished
 * ones past their expiry left out: at most page->limit written to out
 * (*got of them).  *rows is the number of rows the store returned (fewer
 * than page->limit: the end); *last_seq and last_id (last_id_len bytes)
 * the last row's seq and id (the next page's before and before_id), left
 * as they were when no row came.  AE_OK, AE_EIO or AE_ENOMEM (out then
 * empty). */
int ae_jobs_store_page(ae_server *srv, const ae_store_page *page, ae_job **out,
                       size_t *got, size_t *rows, long long *last_seq,
                       char *last_id, size_t last_id_len);

#endif
