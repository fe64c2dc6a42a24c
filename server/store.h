/* store.h: the durable job store behind archevald (issue 6).
 *
 * Every accepted job is written here before its 202 is sent; state
 * changes and results are written as they happen; at start the daemon
 * loads every job back, re-queues those that were queued or running, and
 * serves finished ones until they expire.  The implementation is SQLite in
 * WAL mode (store_sqlite.c); the interface is small so that a shared,
 * server-backed store can be added later for several daemons.
 *
 * Thread: an ae_store is used only by the loop thread that opened it. */
#ifndef AE_STORE_H
#define AE_STORE_H

#include <stddef.h>

typedef enum {
  AE_JOB_QUEUED, AE_JOB_RUNNING, AE_JOB_SUCCEEDED, AE_JOB_FAILED,
  AE_JOB_CANCELLED
} ae_job_state;

/* One job as stored.  Strings are borrowed by the store's writers and
 * owned by the store (valid during the callback) in ae_store_load. */
typedef struct {
  const char *id;              /* "j_..." */
  ae_job_state state;
  int cancel_requested;
  const char *request_json;    /* the normalised request */
  const char *result_json;     /* NULL unless succeeded */
  const char *error_json;      /* NULL unless failed */
  const char *worker;          /* NULL until started */
  const char *idempotency_key; /* NULL when none */
  const char *body_hash;       /* hex digest of the body, with the key */
  const char *client_ref;      /* NULL when none */
  int priority;
  long long timeout_ms;
  long long created_ms, started_ms, finished_ms, expires_ms; /* 0 = null;
                                  Unix epoch milliseconds */
  long long seq;               /* submission order, for stable listing */
} ae_store_job;

typedef enum {
  AE_STORE_SYNC_FULL,   /* fsync every commit (default): nothing acked is lost
                           even on power loss */
  AE_STORE_SYNC_NORMAL  /* WAL synchronous=NORMAL: survives process crashes,
                           may lose the last commits on power loss */
} ae_store_sync;

typedef struct ae_store ae_store;

/* Opens (creating) DIR/jobs.sqlite3, creating DIR (mode 0700) as needed.
 * 0 or AE_EIO with err filled.  The file is held in exclusive mode: a
 * second process (another daemon on the same dir) fails to open it.  Jobs
 * that were running when the previous process died are put back to queued
 * (worker and started_ms cleared) before ae_store_load sees them. */
int ae_store_open(const char *dir, ae_store_sync sync, ae_store **out,
                  char *err, size_t errlen);

/* Inserts jobs in one transaction (a single job, or a whole batch: all or
 * nothing).  Returns once committed.  AE_EINVAL when an id already exists
 * (nothing inserted), AE_EIO on a storage error. */
int ae_store_insert(ae_store *s, const ae_store_job *jobs, size_t n);

/* queued -> running (running -> running is allowed, for a job started
 * again).  The writers below return AE_ENOTFOUND for an unknown id and
 * AE_EINVAL when the job's state forbids the change (finishing a job that
 * is already terminal: a result is written exactly once). */
int ae_store_mark_running(ae_store *s, const char *id, const char *worker,
                          long long started_ms);
/* cancel_requested = 1. */
int ae_store_mark_cancel_requested(ae_store *s, const char *id);
/* -> succeeded / failed / cancelled with the result or error. */
int ae_store_finish(ae_store *s, const char *id, ae_job_state state,
                    const char *result_json, const char *error_json,
                    long long finished_ms, long long expires_ms);
/* Removes one job (DELETE, or expiry). */
int ae_store_delete(ae_store *s, const char *id);
/* Removes every finished job with expires_ms <= now_ms. */
int ae_store_expire(ae_store *s, long long now_ms);

/* Calls fn for every stored job in submission order; fn returns 0 to go
 * on.  Used once at start. */
int ae_store_load(ae_store *s, int (*fn)(void *ud, const ae_store_job *j),
                  void *ud);

void ae_store_close(ae_store *s);

/* The message of the last failed call on s, for the log; static storage
 * in s, valid until the next call. */
const char *ae_store_errmsg(const ae_store *s);

#endif
