/* store_pg.c: the durable job store (store.h) on PostgreSQL, through
 * libpq; one of the backends behind store.c (store.h).
 *
 * Design.  One connection per store handle, so one per daemon: the
 * connection count a fleet opens is its number of replicas (document this
 * in the server's max_connections).  Every writer is one statement or one
 * transaction that returns once committed (PostgreSQL's own durability,
 * synchronous_commit as the server sets it).  Statements are prepared on
 * every (re)connection.  Text columns hold the JSON exactly as the daemon
 * wrote it (text, not jsonb: bytes, key order and numbers kept).
 *
 * Schema.  archeval_schema_version holds one row, the version this store
 * migrated the database to; the migrations below are compiled in and
 * applied in one transaction at every connection, under a transaction
 * advisory lock (so that replicas starting together migrate once), and a
 * database whose version is newer than this binary knows is refused.
 *
 * One daemon per database (until the fleet's leases exist).  The session
 * holds an advisory lock (AE_PG_LOCK_CLASS, AE_PG_LOCK_OWNER) for life: a
 * second daemon pointed at the same database waits AE_PG_LOCK_WAIT_MS
 * (long enough for the backend of a SIGKILLed predecessor to go) and is
 * refused, like a second opener of the SQLite file.  At open, jobs left
 * running by the previous process go back to queued.  ISSUE 15 (leases):
 * this lock and the re-queue at open are where the fleet's per-job leases
 * (owner, expiry, heartbeat, attempts) replace whole-database ownership;
 * see pg_store_requeue_running.
 *
 * Failures.  Every libpq call is checked; errors are values (AE_EINVAL
 * for a data or constraint error, SQLSTATE classes 22 and 23; AE_EIO for
 * the rest) with the server's message and SQLSTATE in errmsg.  A lost
 * connection is noticed before a call (a non-blocking read) or by a
 * failed call; the call fails, never retried (its outcome may be
 * unknown), and the next calls reconnect with exponential back-off
 * (AE_PG_BACKOFF_MIN_MS doubling to AE_PG_BACKOFF_MAX_MS); while waiting,
 * calls fail at once with "unreachable".  A connection attempt blocks the
 * calling thread for at most connect_timeout (default
 * AE_PG_CONNECT_TIMEOUT_S, the URL may set it).
 *
 * Thread: a pg_store and its connection belong to the loop thread that
 * opened it (libpq connections are not shared between threads). */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "api/status.h"
#include "server/store.h"

/* The channel every change of a job's state is notified on ("ID STATE"),
 * by a trigger (migration 3); a replica of a fleet LISTENs to it. */
#define AE_PG_CHANNEL "archeval_jobs"
/* The schema this code writes (the last migration's number). */
#define AE_PG_SCHEMA_VERSION 6
/* Advisory lock keys: class "ae" + 0x5105 (issue 15), then the purpose. */
#define AE_PG_LOCK_CLASS 0x61655105
#define AE_PG_LOCK_OWNER 1   /* session lock: the daemon owning the store */
#define AE_PG_LOCK_MIGRATE 2 /* transaction lock: one migration at once */
#define AE_PG_LOCK_WAIT_MS 3000
#define AE_PG_STATEMENT_TIMEOUT_MS 15000
#define AE_PG_CONNECT_TIMEOUT_S "5"
#define AE_PG_BACKOFF_MIN_MS 100
#define AE_PG_BACKOFF_MAX_MS 5000
/* Rows per page of ae_store_load: bounded memory, and the connection is
 * free between pages for the writes the callback makes. */
#define AE_PG_LOAD_PAGE "500"
/* Columns of a job as inserted (PG_INSERT_COLUMNS), and jobs per INSERT
 * statement (the protocol allows 65535 parameters). */
#define PG_JOB_FIELDS 23
#define PG_INSERT_ROWS_MAX 1000

/* The fleet's shared queue (issue 15): who runs a job (owner, a
 * replica's id), until when its lease holds, and how many times it was
 * claimed; the index the claim reads (state 'queued' by priority and
 * age) and the one the re-queue of expired leases reads; idempotency keys
 * unique, so that two replicas given one key at once store one job (the
 * loser's insert fails, and it answers with the winner's).  A migration of
 * its own, to be renumbered freely when merged with others. */
#define PG_MIGRATION_LEASES                                                    \
  "ALTER TABLE archeval_jobs ADD COLUMN owner text;"                           \
  "ALTER TABLE archeval_jobs ADD COLUMN lease_expires_ms bigint;"              \
  "ALTER TABLE archeval_jobs ADD COLUMN attempts integer NOT NULL"             \
  " DEFAULT 0;"                                                                \
  "CREATE INDEX archeval_jobs_claim ON archeval_jobs"                          \
  " (priority, seq, insert_order) WHERE state = 'queued';"                     \
  "CREATE INDEX archeval_jobs_leases ON archeval_jobs (lease_expires_ms)"      \
  " WHERE state = 'running';"                                                  \
  "CREATE UNIQUE INDEX archeval_jobs_idempotency_key_unique ON archeval_jobs"  \
  " (idempotency_key) WHERE idempotency_key IS NOT NULL;"                      \
  "CREATE OR REPLACE FUNCTION archeval_jobs_notify() RETURNS trigger"          \
  " LANGUAGE plpgsql"                                                          \
  " AS $$ BEGIN PERFORM pg_notify('" AE_PG_CHANNEL "',"                        \
  "  NEW.id || ' ' || NEW.state); RETURN NULL; END $$;"                        \
  "CREATE TRIGGER archeval_jobs_notify AFTER INSERT OR UPDATE OF state"        \
  " ON archeval_jobs FOR EACH ROW EXECUTE FUNCTION archeval_jobs_notify();"

/* The sharing of identical jobs in flight across a fleet: a job's cache
 * key (NULL for jobs of older schemas, which never lead), the job it
 * waits for (waiting_on: queued, not claimable) and the time to live of
 * its end when it takes that job's result (ttl_ms, -1 or NULL: never).
 * A trigger ends the followers of a job with the job's end, in the same
 * transaction, whichever statement wrote it (an owner's end, a cancel,
 * a lease that failed, a delete): succeeded, they succeed with its result
 * (cached); otherwise the oldest follower becomes claimable (notified as
 * queued) and the others wait for it.  Idempotent (IF NOT EXISTS, OR
 * REPLACE), like the trigger of migration 3: a database whose version was
 * set back is migrated again. */
#define PG_MIGRATION_FOLLOWERS                                                 \
  "ALTER TABLE archeval_jobs ADD COLUMN IF NOT EXISTS cache_key text;"         \
  "ALTER TABLE archeval_jobs ADD COLUMN IF NOT EXISTS waiting_on text;"        \
  "ALTER TABLE archeval_jobs ADD COLUMN IF NOT EXISTS ttl_ms bigint;"          \
  "CREATE INDEX IF NOT EXISTS archeval_jobs_in_flight"                         \
  " ON archeval_jobs (cache_key)"                                              \
  " WHERE state IN ('queued', 'running') AND waiting_on IS NULL"               \
  " AND cache_key IS NOT NULL;"                                                \
  "CREATE INDEX IF NOT EXISTS archeval_jobs_waiting"                           \
  " ON archeval_jobs (waiting_on) WHERE waiting_on IS NOT NULL;"               \
  "CREATE OR REPLACE FUNCTION archeval_jobs_leader_end() RETURNS trigger"      \
  " LANGUAGE plpgsql AS $$ DECLARE nxt text; BEGIN"                            \
  " IF TG_OP = 'UPDATE' AND NEW.state = 'succeeded' THEN"                      \
  "  UPDATE archeval_jobs SET state = 'succeeded',"                            \
  "   result_json = NEW.result_json, cached = true,"                           \
  "   finished_ms = NEW.finished_ms, waiting_on = NULL,"                       \
  "   expires_ms = CASE WHEN ttl_ms >= 0 THEN NEW.finished_ms + ttl_ms END"    \
  "   WHERE waiting_on = NEW.id AND state = 'queued';"                         \
  "  RETURN NULL;"                                                             \
  " END IF;"                                                                   \
  " SELECT id INTO nxt FROM archeval_jobs"                                     \
  "  WHERE waiting_on = OLD.id AND state = 'queued'"                           \
  "  ORDER BY seq, insert_order LIMIT 1 FOR UPDATE;"                           \
  " IF nxt IS NOT NULL THEN"                                                   \
  "  UPDATE archeval_jobs SET waiting_on = CASE WHEN id = nxt THEN NULL"       \
  "   ELSE nxt END WHERE waiting_on = OLD.id AND state = 'queued';"            \
  "  PERFORM pg_notify('" AE_PG_CHANNEL "', nxt || ' queued');"                \
  " END IF;"                                                                   \
  " RETURN NULL; END $$;"                                                      \
  "DROP TRIGGER IF EXISTS archeval_jobs_leader_end ON archeval_jobs;"          \
  "CREATE TRIGGER archeval_jobs_leader_end AFTER UPDATE OF state"              \
  " ON archeval_jobs FOR EACH ROW WHEN (OLD.state IN ('queued', 'running')"    \
  " AND NEW.state IN ('succeeded', 'failed', 'cancelled'))"                    \
  " EXECUTE FUNCTION archeval_jobs_leader_end();"                              \
  "DROP TRIGGER IF EXISTS archeval_jobs_leader_gone ON archeval_jobs;"         \
  "CREATE TRIGGER archeval_jobs_leader_gone AFTER DELETE ON archeval_jobs"     \
  " FOR EACH ROW WHEN (OLD.state IN ('queued', 'running'))"                    \
  " EXECUTE FUNCTION archeval_jobs_leader_end();"

/* Migration N (index N - 1) takes the schema from version N - 1 to N.
 * Timestamps are NULL where the API says null (0 in ae_store_job);
 * insert_order breaks ties of seq in insertion order (SQLite's rowid). */
static const char *const pg_migrations[AE_PG_SCHEMA_VERSION] = {
    "CREATE TABLE archeval_jobs ("
    " id text PRIMARY KEY,"
    " state text NOT NULL CHECK (state IN ('queued', 'running',"
    "  'succeeded', 'failed', 'cancelled')),"
    " cancel_requested boolean NOT NULL DEFAULT false,"
    " request_json text NOT NULL,"
    " result_json text,"
    " error_json text,"
    " worker text,"
    " idempotency_key text,"
    " body_hash text,"
    " client_ref text,"
    " priority integer NOT NULL DEFAULT 0,"
    " timeout_ms bigint NOT NULL DEFAULT 0,"
    " created_ms bigint,"
    " started_ms bigint,"
    " finished_ms bigint,"
    " expires_ms bigint,"
    " seq bigint NOT NULL,"
    " insert_order bigint GENERATED ALWAYS AS IDENTITY);"
    "CREATE INDEX archeval_jobs_idempotency_key ON archeval_jobs"
    " (idempotency_key) WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX archeval_jobs_seq ON archeval_jobs (seq, insert_order);"
    "CREATE INDEX archeval_jobs_expires ON archeval_jobs (expires_ms)"
    " WHERE expires_ms IS NOT NULL;",
    /* 2 (issue 13): studies, the jobs' study, the result cache. */
    "ALTER TABLE archeval_jobs ADD COLUMN study text;"
    "ALTER TABLE archeval_jobs ADD COLUMN canonical text;"
    "ALTER TABLE archeval_jobs ADD COLUMN cached boolean NOT NULL"
    " DEFAULT false;"
    "CREATE INDEX archeval_jobs_study ON archeval_jobs (study)"
    " WHERE study IS NOT NULL;"
    "CREATE TABLE archeval_studies ("
    " id text PRIMARY KEY,"
    " name text NOT NULL,"
    " request_json text NOT NULL,"
    " idempotency_key text,"
    " body_hash text,"
    " client_ref text,"
    " created_ms bigint,"
    " seq bigint NOT NULL,"
    " insert_order bigint GENERATED ALWAYS AS IDENTITY);"
    "CREATE TABLE archeval_result_cache ("
    " key text PRIMARY KEY,"
    " canonical text NOT NULL,"
    " result_json text NOT NULL,"
    " created_ms bigint);",
    /* 3 (issue 15): leases. */
    PG_MIGRATION_LEASES,
    /* 4 (issue 12): uploaded ONNX models, content-addressed. */
    "CREATE TABLE archeval_models ("
    " id text PRIMARY KEY,"
    " bytes bytea NOT NULL,"
    " size bigint NOT NULL,"
    " description_json text NOT NULL,"
    " architecture_json text NOT NULL,"
    " created_ms bigint);",
    /* 5 (issue 15): a study's idempotency key is unique, so that two
     * replicas given one key at once store one study (the loser's insert
     * fails, and it answers with the winner's).  A database written by
     * version 4 may hold duplicates (that race): the oldest study of a key
     * (seq, then insertion order: the one a replay already read) keeps
     * it, the others keep their rows and members but lose the key and
     * its body hash (they were never the answer to that key). */
    "UPDATE archeval_studies t SET idempotency_key = NULL, body_hash = NULL"
    " WHERE idempotency_key IS NOT NULL AND EXISTS (SELECT 1"
    "  FROM archeval_studies o WHERE o.idempotency_key = t.idempotency_key"
    "  AND (o.seq, o.insert_order) < (t.seq, t.insert_order));"
    "CREATE UNIQUE INDEX archeval_studies_idempotency_key_unique"
    " ON archeval_studies (idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;",
    /* 6 (issue 15): identical jobs in flight shared across a fleet. */
    PG_MIGRATION_FOLLOWERS,
};

#define PG_JOB_COLUMNS                                                         \
  "id, state, cancel_requested, request_json, result_json, error_json,"        \
  " worker, idempotency_key, body_hash, client_ref, priority, timeout_ms,"     \
  " created_ms, started_ms, finished_ms, expires_ms, seq, study, canonical,"   \
  " cached"
/* The columns an insert writes: a job's, and the fleet's sharing of
 * identical jobs in flight (migration 6). */
#define PG_INSERT_COLUMNS PG_JOB_COLUMNS ", cache_key, waiting_on, ttl_ms"

enum {
  PG_INSERT,
  PG_MARK_RUNNING,
  PG_MARK_CANCEL,
  PG_FINISH,
  PG_DELETE,
  PG_EXPIRE,
  PG_LOAD_FIRST,
  PG_LOAD_NEXT,
  PG_EXISTS,
  PG_MARK_CACHED,
  PG_STUDY_INSERT,
  PG_STUDY_DELETE_JOBS,
  PG_STUDY_RELEASE_JOBS,
  PG_STUDY_DELETE,
  PG_STUDY_LOAD,
  PG_CACHE_PUT,
  PG_CACHE_GET,
  PG_GET,
  PG_GET_IDEM,
  PG_LIST,
  PG_CLAIM,
  PG_HEARTBEAT,
  PG_LEASES_FAIL,
  PG_LEASES_REQUEUE,
  PG_RELEASE,
  PG_MODEL_PUT,
  PG_MODEL_GET,
  PG_MODEL_DELETE,
  PG_STUDY_GET,
  PG_STUDY_GET_IDEM,
  PG_STUDY_MEMBERS,
  PG_STUDY_DELETE_IDLE,
  PG_FINISH_STUDY,
  PG_FINISH_GONE,
  PG_LEASES_ORPHANS,
  PG_COUNT_QUEUED,
  PG_IN_FLIGHT,
  PG_STMT_COUNT
};

static const struct {
  const char *name;
  const char *sql;
  int nparams;
} pg_statements[PG_STMT_COUNT] = {
    [PG_INSERT] = {"ae_insert",
                   "INSERT INTO archeval_jobs (" PG_INSERT_COLUMNS ")"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
                   " $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,"
                   " $23)",
                   23},
    /* A job started again by its owner keeps its lease; one started by
     * a daemon alone on the database ($4 NULL) has none. */
    [PG_MARK_RUNNING] = {"ae_mark_running",
                         "UPDATE archeval_jobs SET state = 'running',"
                         " worker = $2, started_ms = $3, owner = $4"
                         " WHERE id = $1 AND (state = 'queued'"
                         " OR (state = 'running'"
                         "  AND owner IS NOT DISTINCT FROM $4))",
                         4},
    [PG_MARK_CANCEL] = {"ae_mark_cancel",
                        "UPDATE archeval_jobs SET cancel_requested = true"
                        " WHERE id = $1",
                        1},
    /* Written once: a queued job by anyone (a cancel), a running one by
     * its owner only ($7: a replica whose lease expired and was taken over
     * loses). */
    [PG_FINISH] = {"ae_finish",
                   "UPDATE archeval_jobs SET state = $2, result_json = $3,"
                   " error_json = $4, finished_ms = $5, expires_ms = $6,"
                   " lease_expires_ms = NULL"
                   " WHERE id = $1 AND (state = 'queued'"
                   " OR (state = 'running' AND owner IS NOT DISTINCT FROM $7))",
                   7},
    [PG_DELETE] = {"ae_delete", "DELETE FROM archeval_jobs WHERE id = $1", 1},
    [PG_EXPIRE] = {"ae_expire",
                   "DELETE FROM archeval_jobs WHERE state IN ('succeeded',"
                   " 'failed', 'cancelled') AND expires_ms IS NOT NULL"
                   " AND expires_ms <= $1",
                   1},
    [PG_LOAD_FIRST] = {"ae_load_first",
                       "SELECT " PG_JOB_COLUMNS ", insert_order"
                       " FROM archeval_jobs ORDER BY seq, insert_order"
                       " LIMIT " AE_PG_LOAD_PAGE,
                       0},
    [PG_LOAD_NEXT] = {"ae_load_next",
                      "SELECT " PG_JOB_COLUMNS ", insert_order"
                      " FROM archeval_jobs"
                      " WHERE (seq, insert_order) > ($1, $2)"
                      " ORDER BY seq, insert_order LIMIT " AE_PG_LOAD_PAGE,
                      2},
    [PG_EXISTS] = {"ae_exists", "SELECT 1 FROM archeval_jobs WHERE id = $1", 1},
    [PG_MARK_CACHED] = {"ae_mark_cached",
                        "UPDATE archeval_jobs SET cached = true"
                        " WHERE id = $1",
                        1},
    [PG_STUDY_INSERT] = {"ae_study_insert",
                         "INSERT INTO archeval_studies (id, name,"
                         " request_json, idempotency_key, body_hash,"
                         " client_ref, created_ms, seq)"
                         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                         8},
    [PG_STUDY_DELETE_JOBS] = {"ae_study_delete_jobs",
                              "DELETE FROM archeval_jobs WHERE study = $1"
                              " AND state IN ('succeeded', 'failed',"
                              " 'cancelled')",
                              1},
    [PG_STUDY_RELEASE_JOBS] = {"ae_study_release_jobs",
                               "UPDATE archeval_jobs SET study = NULL"
                               " WHERE study = $1",
                               1},
    [PG_STUDY_DELETE] = {"ae_study_delete",
                         "DELETE FROM archeval_studies WHERE id = $1", 1},
    [PG_STUDY_LOAD] = {"ae_study_load",
                       "SELECT id, name, request_json, idempotency_key,"
                       " body_hash, client_ref, created_ms, seq"
                       " FROM archeval_studies"
                       " ORDER BY seq, id COLLATE \"C\"",
                       0},
    [PG_CACHE_PUT] = {"ae_cache_put",
                      "INSERT INTO archeval_result_cache (key, canonical,"
                      " result_json, created_ms) VALUES ($1, $2, $3, $4)"
                      " ON CONFLICT (key) DO NOTHING",
                      4},
    [PG_CACHE_GET] = {"ae_cache_get",
                      "SELECT result_json FROM archeval_result_cache"
                      " WHERE key = $1",
                      1},
    [PG_GET] = {"ae_get",
                "SELECT " PG_JOB_COLUMNS " FROM archeval_jobs WHERE id = $1",
                1},
    [PG_GET_IDEM] = {"ae_get_idem",
                     "SELECT " PG_JOB_COLUMNS " FROM archeval_jobs"
                     " WHERE idempotency_key = $1"
                     " ORDER BY seq, insert_order LIMIT 1",
                     1},
    /* $1 before (< 0: none), $2 state (NULL: any), $3 client_ref (NULL:
     * any), $4 the page's size, $5 before_id (NULL: none).  Ids compare
     * byte by byte (COLLATE "C"), as the server's strcmp: the replicas
     * of a fleet may give two jobs one seq, and a page token resumes
     * after the pair. */
    [PG_LIST] = {"ae_list",
                 "SELECT " PG_JOB_COLUMNS " FROM archeval_jobs"
                 " WHERE ($1::bigint < 0 OR seq < $1::bigint"
                 "  OR (seq = $1::bigint AND id COLLATE \"C\" < $5::text))"
                 " AND ($2::text IS NULL OR state = $2::text)"
                 " AND ($3::text IS NULL OR client_ref = $3::text)"
                 " ORDER BY seq DESC, id COLLATE \"C\" DESC LIMIT $4::bigint",
                 5},
    /* $1 owner, $2 worker, $3 now, $4 lease expiry: the next queued job by
     * priority and age, skipping rows another replica is claiming. */
    [PG_CLAIM] = {"ae_claim",
                  "UPDATE archeval_jobs SET state = 'running', owner = $1,"
                  " worker = $2, started_ms = $3::bigint,"
                  " lease_expires_ms = $4::bigint, attempts = attempts + 1"
                  " WHERE id = (SELECT id FROM archeval_jobs"
                  "  WHERE state = 'queued' AND waiting_on IS NULL"
                  "  ORDER BY priority, seq, insert_order"
                  "  FOR UPDATE SKIP LOCKED LIMIT 1)"
                  " RETURNING " PG_JOB_COLUMNS ", attempts",
                  4},
    /* $1 owner, $2 lease expiry. */
    [PG_HEARTBEAT] = {"ae_heartbeat",
                      "UPDATE archeval_jobs SET lease_expires_ms = $2::bigint"
                      " WHERE owner = $1 AND state = 'running'"
                      " RETURNING id, cancel_requested",
                      2},
    /* $1 now, $2 max attempts, $3 error, $4 expiry of the failed job. */
    [PG_LEASES_FAIL] = {"ae_leases_fail",
                        "UPDATE archeval_jobs SET state = 'failed',"
                        " error_json = replace(replace($3::text,"
                        "  '%ATTEMPTS%', attempts::text), '%ID%', id),"
                        " finished_ms = $1::bigint, expires_ms = CASE WHEN"
                        "  study IS NULL THEN $4::bigint END,"
                        " lease_expires_ms = NULL"
                        " WHERE state = 'running'"
                        " AND lease_expires_ms < $1::bigint"
                        " AND attempts >= $2::integer",
                        4},
    /* $1 id, $2 owner. */
    [PG_RELEASE] = {"ae_release",
                    "UPDATE archeval_jobs SET state = 'queued', owner = NULL,"
                    " worker = NULL, started_ms = NULL,"
                    " lease_expires_ms = NULL,"
                    " attempts = greatest(attempts - 1, 0)"
                    " WHERE id = $1 AND state = 'running' AND owner = $2",
                    2},
    [PG_LEASES_REQUEUE] = {"ae_leases_requeue",
                           "UPDATE archeval_jobs SET state = 'queued',"
                           " owner = NULL, worker = NULL, started_ms = NULL,"
                           " lease_expires_ms = NULL"
                           " WHERE state = 'running'"
                           " AND lease_expires_ms < $1::bigint",
                           1},
    [PG_MODEL_PUT] = {"ae_model_put",
                      "INSERT INTO archeval_models (id, bytes, size,"
                      " description_json, architecture_json, created_ms)"
                      " VALUES ($1, $2, $3, $4, $5, $6)"
                      " ON CONFLICT (id) DO NOTHING",
                      6},
    [PG_MODEL_GET] = {"ae_model_get",
                      "SELECT size, description_json, architecture_json,"
                      " created_ms FROM archeval_models WHERE id = $1",
                      1},
    [PG_MODEL_DELETE] = {"ae_model_delete",
                         "DELETE FROM archeval_models WHERE id = $1", 1},
    /* --fleet: one study, and its members, read by any replica. */
    [PG_STUDY_GET] = {"ae_study_get",
                      "SELECT id, name, request_json, idempotency_key,"
                      " body_hash, client_ref, created_ms, seq"
                      " FROM archeval_studies WHERE id = $1",
                      1},
    [PG_STUDY_GET_IDEM] = {"ae_study_get_idem",
                           "SELECT id, name, request_json, idempotency_key,"
                           " body_hash, client_ref, created_ms, seq"
                           " FROM archeval_studies WHERE idempotency_key = $1"
                           " ORDER BY seq, insert_order LIMIT 1",
                           1},
    [PG_STUDY_MEMBERS] = {"ae_study_members",
                          "SELECT " PG_JOB_COLUMNS " FROM archeval_jobs"
                          " WHERE study = $1 ORDER BY seq, insert_order",
                          1},
    /* --fleet, a study's delete: its members but the running ones, which
     * keep the study's id and go at their end (PG_FINISH_GONE). */
    [PG_STUDY_DELETE_IDLE] = {"ae_study_delete_idle",
                              "DELETE FROM archeval_jobs WHERE study = $1"
                              " AND state <> 'running'",
                              1},
    /* --fleet, a job's end: its study (NULL when none), and whether that
     * study still exists, its row locked (FOR KEY SHARE) until the end is
     * committed, so that a delete of the study waits for it or is seen. */
    [PG_FINISH_STUDY] = {"ae_finish_study",
                         "SELECT j.study, (SELECT t.id FROM archeval_studies t"
                         "  WHERE t.id = j.study FOR KEY SHARE)"
                         " FROM archeval_jobs j WHERE j.id = $1",
                         1},
    /* $1 id, $2 owner: the end of a member whose study was deleted is its
     * removal, guarded as PG_FINISH. */
    [PG_FINISH_GONE] = {"ae_finish_gone",
                        "DELETE FROM archeval_jobs WHERE id = $1"
                        " AND (state = 'queued' OR (state = 'running'"
                        "  AND owner IS NOT DISTINCT FROM $2))",
                        2},
    /* $1 now: the members of deleted studies whose replica died with them
     * running go, rather than back to the queue. */
    [PG_LEASES_ORPHANS] = {"ae_leases_orphans",
                           "DELETE FROM archeval_jobs j"
                           " WHERE state = 'running'"
                           " AND lease_expires_ms < $1::bigint"
                           " AND study IS NOT NULL AND NOT EXISTS (SELECT 1"
                           "  FROM archeval_studies t WHERE t.id = j.study)",
                           1},
    /* The queued jobs of the fleet (--max-queue), those waiting for an
     * identical job left out: the claim's partial index holds those rows. */
    [PG_COUNT_QUEUED] = {"ae_count_queued",
                         "SELECT count(*) FROM archeval_jobs"
                         " WHERE state = 'queued' AND waiting_on IS NULL",
                         0},
    /* $1 an array of cache keys: the jobs in flight (queued or running,
     * not waiting) with one of them, oldest first, their rows locked
     * (FOR SHARE) until the insert of their followers commits, so that
     * an end written meanwhile waits for it and its trigger sees them. */
    [PG_IN_FLIGHT] = {"ae_in_flight",
                      "SELECT cache_key, id FROM archeval_jobs"
                      " WHERE cache_key = ANY ($1::text[])"
                      " AND state IN ('queued', 'running')"
                      " AND waiting_on IS NULL AND cache_key IS NOT NULL"
                      " ORDER BY seq, insert_order FOR SHARE",
                      1},
};

typedef struct {
  PGconn *conn;        /* NULL or bad while disconnected */
  char *conninfo;      /* owned: the target, for reconnects */
  char owner[128];     /* this replica's id (ae_store_open_shared), or "" */
  PGconn *listen_conn; /* LISTENs on AE_PG_CHANNEL (ae_store_listen) */
  long long backoff_ms;
  long long next_connect_ms; /* monotonic; no attempt before */
  char errmsg[512];
  char sqlstate[6];        /* the last failed command's SQLSTATE, "" if none */
  char connect_error[512]; /* why the last reconnect failed */
} pg_store;

static long long pg_monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pg_set_error(pg_store *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void pg_set_error(pg_store *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
  va_end(ap);
  /* libpq's messages span lines ("...\n\tIs the server running...")
   * and end with a newline: one line for the log. */
  size_t out = 0;
  for (size_t in = 0; s->errmsg[in]; in++) {
    char c = s->errmsg[in];
    if (isspace((unsigned char)c)) {
      if (out == 0 || s->errmsg[out - 1] == ' ') continue;
      c = ' ';
    }
    s->errmsg[out++] = c;
  }
  while (out > 0 && s->errmsg[out - 1] == ' ')
    out--;
  s->errmsg[out] = '\0';
}

static const char *pg_conn_message(const pg_store *s) {
  const char *message = s->conn ? PQerrorMessage(s->conn) : NULL;
  return message && message[0] ? message : "no connection";
}

/* Records a failed command (res may be NULL: out of memory or no
 * connection) and maps it: SQLSTATE class 22 (bad data) or 23 (a
 * constraint: a duplicate id) is the caller's error, the rest is I/O. */
static int pg_fail(pg_store *s, const PGresult *res, const char *what) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *message = res ? PQresultErrorMessage(res) : NULL;
  if ((!message || !message[0]) && res &&
      PQresultStatus(res) != PGRES_FATAL_ERROR)
    message = PQresStatus(PQresultStatus(res)); /* not the expected kind */
  if (!message || !message[0]) message = pg_conn_message(s);
  if (state)
    pg_set_error(s, "%s: %s (SQLSTATE %s)", what, message, state);
  else
    pg_set_error(s, "%s: %s", what, message);
  snprintf(s->sqlstate, sizeof s->sqlstate, "%s", state ? state : "");
  if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0))
    return AE_EINVAL;
  return AE_EIO;
}

/* Runs SQL (no parameters) and expects WANT; 0 or the mapped error. */
static int pg_exec(pg_store *s, const char *sql, ExecStatusType want,
                   const char *what) {
  PGresult *res = PQexec(s->conn, sql);
  int status = 0;
  if (!res || PQresultStatus(res) != want) status = pg_fail(s, res, what);
  PQclear(res);
  return status;
}

/* Runs a prepared statement; returns its result (the caller clears it) or
 * NULL with *status set. */
static PGresult *pg_run(pg_store *s, int stmt, const char *const *values,
                        ExecStatusType want, const char *what, int *status) {
  PGresult *res =
      PQexecPrepared(s->conn, pg_statements[stmt].name,
                     pg_statements[stmt].nparams, values, NULL, NULL, 0);
  if (!res || PQresultStatus(res) != want) {
    *status = pg_fail(s, res, what);
    PQclear(res);
    return NULL;
  }
  *status = 0;
  return res;
}

/* Applies the migrations the database lacks, in one transaction. */
static int pg_migrate(pg_store *s) {
  int status = pg_exec(s, "BEGIN", PGRES_COMMAND_OK, "migrate: begin");
  if (status) return status;
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%d, %d)",
           AE_PG_LOCK_CLASS, AE_PG_LOCK_MIGRATE);
  status = pg_exec(s, sql, PGRES_TUPLES_OK, "migrate: lock");
  if (!status)
    status = pg_exec(s,
                     "CREATE TABLE IF NOT EXISTS archeval_schema_version ("
                     " singleton boolean PRIMARY KEY DEFAULT true"
                     "  CHECK (singleton),"
                     " version integer NOT NULL)",
                     PGRES_COMMAND_OK, "migrate: version table");
  if (!status)
    status = pg_exec(s,
                     "INSERT INTO archeval_schema_version (version)"
                     " VALUES (0) ON CONFLICT DO NOTHING",
                     PGRES_COMMAND_OK, "migrate: version row");
  long version = -1;
  if (!status) {
    PGresult *res =
        PQexec(s->conn, "SELECT version FROM archeval_schema_version");
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQgetisnull(res, 0, 0))
      status = pg_fail(s, res, "migrate: read version");
    else
      version = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
  }
  if (!status && (version > AE_PG_SCHEMA_VERSION || version < 0)) {
    pg_set_error(s, "schema version %ld is newer than this archevald (%d)",
                 version, AE_PG_SCHEMA_VERSION);
    status = AE_EIO;
  }
  for (long v = version + 1; !status && v <= AE_PG_SCHEMA_VERSION; v++) {
    char what[64];
    snprintf(what, sizeof what, "migrate: to version %ld", v);
    status = pg_exec(s, pg_migrations[v - 1], PGRES_COMMAND_OK, what);
  }
  if (!status && version != AE_PG_SCHEMA_VERSION) {
    snprintf(sql, sizeof sql, "UPDATE archeval_schema_version SET version = %d",
             AE_PG_SCHEMA_VERSION);
    status = pg_exec(s, sql, PGRES_COMMAND_OK, "migrate: set version");
  }
  if (!status) return pg_exec(s, "COMMIT", PGRES_COMMAND_OK, "migrate");
  if (PQstatus(s->conn) == CONNECTION_OK &&
      PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
    PGresult *res = PQexec(s->conn, "ROLLBACK");
    PQclear(res);
  }
  return status;
}

/* Jobs that were running when the previous process died go back to the
 * queue.  ISSUE 15 (leases): with a fleet, only jobs whose lease expired
 * go back (attempt counted), by any replica, at any time, not at open. */
static int pg_store_requeue_running(pg_store *s) {
  return pg_exec(s,
                 "UPDATE archeval_jobs SET state = 'queued', worker = NULL,"
                 " started_ms = NULL, owner = NULL, lease_expires_ms = NULL"
                 " WHERE state = 'running'",
                 PGRES_COMMAND_OK, "re-queue running jobs");
}

/* Jobs left running under this replica's id by its previous process go
 * back to the queue (the claim stays counted: that process died). */
static int pg_requeue_own(pg_store *s) {
  const char *values[1] = {s->owner};
  PGresult *res =
      PQexecParams(s->conn,
                   "UPDATE archeval_jobs SET state = 'queued', owner = NULL,"
                   " worker = NULL, started_ms = NULL, lease_expires_ms = NULL"
                   " WHERE state = 'running' AND owner = $1",
                   1, NULL, values, NULL, NULL, 0);
  int status = 0;
  if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
    status = pg_fail(s, res, "re-queue this replica's jobs");
  PQclear(res);
  return status;
}

/* Takes the database for this process (see the header comment). */
static int pg_take_ownership(pg_store *s) {
  char sql[160];
  snprintf(sql, sizeof sql, "SET lock_timeout = %d", AE_PG_LOCK_WAIT_MS);
  int status = pg_exec(s, sql, PGRES_COMMAND_OK, "lock timeout");
  if (status) return status;
  snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%d, %d)", AE_PG_LOCK_CLASS,
           AE_PG_LOCK_OWNER);
  PGresult *res = PQexec(s->conn, sql);
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "55P03") == 0) {
      pg_set_error(s, "the database is in use by another process (one "
                      "daemon per database until the fleet's leases exist)");
      status = AE_EIO;
    } else {
      status = pg_fail(s, res, "lock the store");
    }
  }
  PQclear(res);
  if (status) return status;
  return pg_exec(s, "SET lock_timeout = 0", PGRES_COMMAND_OK, "lock timeout");
}

static void pg_ignore_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

/* Opens a connection and makes it ready: session settings, ownership,
 * schema, prepared statements; FIRST also re-queues running jobs (a
 * reconnect must not: this process still runs them). */
/* A new connection to the store's target (NULL when out of memory). */
static PGconn *pg_open_conn(const pg_store *s) {
  /* Later entries override earlier ones: defaults first, then what the
   * target says, then what this code relies on.  Over TCP, keepalives
   * and tcp_user_timeout bound how long a call can hang on a server or
   * network that stopped answering (about 30 s instead of forever). */
  const char *keywords[] = {"connect_timeout",
                            "fallback_application_name",
                            "keepalives_idle",
                            "keepalives_interval",
                            "keepalives_count",
                            "tcp_user_timeout",
                            "dbname",
                            "client_encoding",
                            NULL};
  const char *values[] = {AE_PG_CONNECT_TIMEOUT_S,
                          "archevald",
                          "10",
                          "5",
                          "3",
                          "30000",
                          s->conninfo,
                          "UTF8",
                          NULL};
  return PQconnectdbParams(keywords, values, 1);
}

static int pg_connect(pg_store *s, int first) {
  if (s->conn) PQfinish(s->conn);
  s->conn = pg_open_conn(s);
  if (!s->conn) {
    pg_set_error(s, "connect: out of memory");
    return AE_ENOMEM;
  }
  if (PQstatus(s->conn) != CONNECTION_OK) {
    pg_set_error(s, "connect: %s", pg_conn_message(s));
    return AE_EIO;
  }
  /* The server's notices (a table that already exists, the FATAL of a
   * shutdown) would go to stderr: errors reach the log as values. */
  PQsetNoticeProcessor(s->conn, pg_ignore_notice, NULL);
  /* The server's own keepalives end the session of a client that
   * vanished (a partition) in about 30 s rather than the OS's 2 hours:
   * that session holds the store's lock, which a reconnect needs. */
  char sql[256];
  snprintf(sql, sizeof sql,
           "SET statement_timeout = %d; SET client_min_messages = warning;"
           " SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5;"
           " SET tcp_keepalives_count = 3",
           AE_PG_STATEMENT_TIMEOUT_MS);
  int status = pg_exec(s, sql, PGRES_COMMAND_OK, "session settings");
  /* A replica of a fleet (owner set) shares the database: no lock, and
   * the jobs left running are re-queued when their leases expire. */
  if (!status && !s->owner[0]) status = pg_take_ownership(s);
  if (!status) status = pg_migrate(s);
  if (!status && first && !s->owner[0]) status = pg_store_requeue_running(s);
  /* A replica that starts again under the same id (a StatefulSet) runs
   * nothing yet: what the store says it runs, it ran before it died. */
  if (!status && first && s->owner[0]) status = pg_requeue_own(s);
  for (int i = 0; !status && i < PG_STMT_COUNT; i++) {
    PGresult *res =
        PQprepare(s->conn, pg_statements[i].name, pg_statements[i].sql,
                  pg_statements[i].nparams, NULL);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
      status = pg_fail(s, res, "prepare");
    PQclear(res);
  }
  return status;
}

/* Makes sure the connection is usable before a call: notices a connection
 * the server closed (a non-blocking read), and reconnects when the
 * back-off allows.  0, or AE_EIO with errmsg set. */
static int pg_ready(pg_store *s) {
  if (s->conn && PQstatus(s->conn) == CONNECTION_OK) {
    /* The first read may return the server's last message (FATAL:
     * terminating connection) and only the second one its EOF. */
    if (PQconsumeInput(s->conn) && PQconsumeInput(s->conn) &&
        PQstatus(s->conn) == CONNECTION_OK) {
      PGnotify *note;
      while ((note = PQnotifies(s->conn)) != NULL)
        PQfreemem(note);
      return 0;
    }
  }
  long long now = pg_monotonic_ms();
  if (now < s->next_connect_ms) {
    pg_set_error(s, "store unreachable, next try in %lld ms (last: %s)",
                 s->next_connect_ms - now, s->connect_error);
    return AE_EIO;
  }
  int status = pg_connect(s, 0);
  if (status) {
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : AE_PG_BACKOFF_MIN_MS;
    if (s->backoff_ms > AE_PG_BACKOFF_MAX_MS)
      s->backoff_ms = AE_PG_BACKOFF_MAX_MS;
    s->next_connect_ms = pg_monotonic_ms() + s->backoff_ms;
    /* The connection's own message, kept apart: the messages of the
     * calls failed during the back-off quote it, never each other. */
    memcpy(s->connect_error, s->errmsg, sizeof s->connect_error);
    pg_set_error(s, "store unreachable: %s", s->connect_error);
    if (s->conn) PQfinish(s->conn);
    s->conn = NULL;
    return AE_EIO;
  }
  s->backoff_ms = 0;
  s->next_connect_ms = 0;
  return 0;
}

static void pg_store_free(pg_store *s) {
  if (!s) return;
  if (s->conn) PQfinish(s->conn);
  if (s->listen_conn) PQfinish(s->listen_conn);
  free(s->conninfo);
  free(s);
}

static void pg_store_close(void *impl) {
  pg_store_free(impl);
}

static const char *pg_store_errmsg(const void *impl) {
  const pg_store *s = impl;
  if (!s) return "no store";
  return s->errmsg[0] ? s->errmsg : "no error";
}

int ae_store_pg_open(const char *conninfo, const char *owner, void **out,
                     char *err, size_t errlen) {
  *out = NULL;
  if (owner && (!owner[0] || strlen(owner) >= sizeof((pg_store *)0)->owner)) {
    snprintf(err, errlen, "postgresql store: a replica id of 1 to %zu bytes",
             sizeof((pg_store *)0)->owner - 1);
    return AE_EINVAL;
  }
  pg_store *s = calloc(1, sizeof *s);
  if (s) s->conninfo = strdup(conninfo);
  if (!s || !s->conninfo) {
    free(s);
    snprintf(err, errlen, "postgresql store: out of memory");
    return AE_EIO;
  }
  if (owner) snprintf(s->owner, sizeof s->owner, "%s", owner);
  int status = pg_connect(s, 1);
  if (status) {
    snprintf(err, errlen, "postgresql store: %s", s->errmsg);
    pg_store_free(s);
    return AE_EIO;
  }
  *out = s;
  return 0;
}

/* ---- writers ---- */

/* Decimal text of v in buf, or NULL for 0 when zero_is_null. */
static const char *pg_int_text(char *buf, size_t len, long long v,
                               int zero_is_null) {
  if (zero_is_null && v == 0) return NULL;
  snprintf(buf, len, "%lld", v);
  return buf;
}

/* The number of rows a command changed. */
static long pg_changed(const PGresult *res) {
  return strtol(PQcmdTuples((PGresult *)res), NULL, 10);
}

/* Keeps errmsg across a ROLLBACK after a failed statement. */
static void pg_rollback_quietly(pg_store *s) {
  if (!s->conn || PQstatus(s->conn) != CONNECTION_OK ||
      PQtransactionStatus(s->conn) == PQTRANS_IDLE)
    return;
  PGresult *res = PQexec(s->conn, "ROLLBACK");
  PQclear(res);
}

/* The PG_JOB_FIELDS parameters of one job, in PG_INSERT_COLUMNS order,
 * waiting for the job WAIT (or NULL); its numbers are written to
 * numbers[0..8). */
static void pg_job_values(const ae_store_job *j, const char *wait,
                          const char **values, char (*numbers)[24]) {
  values[0] = j->id;
  values[1] = ae_store_state_name(j->state);
  values[2] = j->cancel_requested ? "true" : "false";
  values[3] = j->request_json;
  values[4] = j->result_json;
  values[5] = j->error_json;
  values[6] = j->worker;
  values[7] = j->idempotency_key;
  values[8] = j->body_hash;
  values[9] = j->client_ref;
  values[10] = pg_int_text(numbers[0], sizeof numbers[0], j->priority, 0);
  values[11] = pg_int_text(numbers[1], sizeof numbers[1], j->timeout_ms, 0);
  values[12] = pg_int_text(numbers[2], sizeof numbers[2], j->created_ms, 1);
  values[13] = pg_int_text(numbers[3], sizeof numbers[3], j->started_ms, 1);
  values[14] = pg_int_text(numbers[4], sizeof numbers[4], j->finished_ms, 1);
  values[15] = pg_int_text(numbers[5], sizeof numbers[5], j->expires_ms, 1);
  values[16] = pg_int_text(numbers[6], sizeof numbers[6], j->seq, 0);
  values[17] = j->study;
  values[18] = j->canonical;
  values[19] = j->cached ? "true" : "false";
  values[20] = j->cache_key;
  values[21] = wait;
  values[22] = pg_int_text(numbers[7], sizeof numbers[7], j->ttl_ms, 0);
}

/* One cache key of an insert's followers: its rows are order[first ..
 * first + count) (sorted by key, then index), led by leader. */
typedef struct {
  const char *key;
  size_t first, count;
  int any;         /* follow 2: the store's jobs in flight may lead */
  char leader[64]; /* the store's job in flight, or "" */
} pg_follow_group;

/* A follower of an insert: its key and its index. */
typedef struct {
  const char *key;
  size_t index;
} pg_follower;

static int pg_cmp_follow(const void *a, const void *b) {
  const pg_follower *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : (x->index > y->index) - (x->index < y->index);
}

static int pg_cmp_group(const void *key, const void *g) {
  return strcmp(key, ((const pg_follow_group *)g)->key);
}

/* A key that is safe in an array literal unquoted (hex, as cache.h
 * makes them). */
static int pg_plain_key(const char *key) {
  if (!key || !key[0] || strlen(key) > 128) return 0;
  for (const char *c = key; *c; c++)
    if (!isxdigit((unsigned char)*c)) return 0;
  return 1;
}

/* Inside the insert's transaction: waits[i] (NULL for none) is the job
 * that jobs[i] waits for, by its follow (ae_store_job): the oldest job in
 * flight in the store with its key (follow 2, locked until the commit),
 * else the first job of the insert with its key.  Pointers into groups
 * (*groups_out, freed by the caller) or jobs. */
static int pg_find_leaders(pg_store *s, const ae_store_job *jobs, size_t n,
                           const char **waits, pg_follow_group **groups_out) {
  *groups_out = NULL;
  size_t m = 0;
  pg_follower *order = malloc((n ? n : 1) * sizeof *order);
  pg_follow_group *groups = calloc(n ? n : 1, sizeof *groups);
  if (!order || !groups) {
    free(order);
    free(groups);
    pg_set_error(s, "insert: out of memory");
    return AE_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    if (jobs[i].follow && jobs[i].state == AE_JOB_QUEUED &&
        pg_plain_key(jobs[i].cache_key))
      order[m++] = (pg_follower){jobs[i].cache_key, i};
  qsort(order, m, sizeof *order, pg_cmp_follow);
  size_t n_groups = 0, any_bytes = 0;
  for (size_t k = 0; k < m; k++) {
    const ae_store_job *j = &jobs[order[k].index];
    if (!n_groups || strcmp(groups[n_groups - 1].key, j->cache_key))
      groups[n_groups++] = (pg_follow_group){.key = j->cache_key, .first = k};
    pg_follow_group *g = &groups[n_groups - 1];
    g->count++;
    if (j->follow == 2 && !g->any) {
      g->any = 1;
      any_bytes += strlen(j->cache_key) + 1;
    }
  }
  int status = 0;
  if (any_bytes) {
    char *array = malloc(any_bytes + 2);
    if (!array) {
      status = AE_ENOMEM;
      pg_set_error(s, "insert: out of memory");
    } else {
      size_t used = 0;
      array[used++] = '{';
      for (size_t g = 0; g < n_groups; g++) {
        if (!groups[g].any) continue;
        if (used > 1) array[used++] = ',';
        size_t len = strlen(groups[g].key);
        memcpy(array + used, groups[g].key, len);
        used += len;
      }
      array[used++] = '}';
      array[used] = '\0';
      const char *values[1] = {array};
      PGresult *res = pg_run(s, PG_IN_FLIGHT, values, PGRES_TUPLES_OK,
                             "insert: jobs in flight", &status);
      free(array);
      for (int r = 0; res && r < PQntuples(res); r++) {
        pg_follow_group *g = bsearch(PQgetvalue(res, r, 0), groups, n_groups,
                                     sizeof *groups, pg_cmp_group);
        if (g && g->any && !g->leader[0])
          snprintf(g->leader, sizeof g->leader, "%s", PQgetvalue(res, r, 1));
      }
      PQclear(res);
    }
  }
  for (size_t g = 0; g < n_groups && !status; g++) {
    const char *lead = groups[g].leader[0] ? groups[g].leader : NULL;
    for (size_t k = 0; k < groups[g].count; k++) {
      size_t i = order[groups[g].first + k].index;
      if (!lead && k == 0)
        lead = jobs[i].id; /* the insert's first leads */
      else if (jobs[i].follow == 2 || !groups[g].leader[0])
        waits[i] = lead;
    }
  }
  free(order);
  *groups_out = groups;
  return status;
}

/* One INSERT statement for jobs[0..n), n <= PG_INSERT_ROWS_MAX: the
 * prepared statement for one job, a multi-row statement built here for
 * more (one round trip; a statement is atomic by itself). */
static int pg_insert_rows(pg_store *s, const ae_store_job *jobs,
                          const char *const *waits, size_t n) {
  static const char head[] =
      "INSERT INTO archeval_jobs (" PG_INSERT_COLUMNS ") VALUES ";
  const char **values = malloc(n * PG_JOB_FIELDS * sizeof *values);
  char(*numbers)[24] = malloc(n * 8 * sizeof *numbers);
  /* "$NNNNN, " is at most 8 bytes; "(", ")" and ", " per row. */
  size_t cap = sizeof head + n * (PG_JOB_FIELDS * 8 + 4);
  char *sql = n > 1 ? malloc(cap) : NULL;
  if (!values || !numbers || (n > 1 && !sql)) {
    free(values);
    free(numbers);
    free(sql);
    pg_set_error(s, "insert: out of memory");
    return AE_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    pg_job_values(&jobs[i], waits[i], values + i * PG_JOB_FIELDS,
                  numbers + i * 8);
  PGresult *res;
  if (n == 1) {
    res = PQexecPrepared(s->conn, pg_statements[PG_INSERT].name, PG_JOB_FIELDS,
                         values, NULL, NULL, 0);
  } else {
    size_t used = (size_t)snprintf(sql, cap, "%s", head);
    int param = 1;
    for (size_t i = 0; i < n; i++) {
      used += (size_t)snprintf(sql + used, cap - used, "%s(", i ? ", " : "");
      for (int f = 0; f < PG_JOB_FIELDS; f++)
        used += (size_t)snprintf(sql + used, cap - used, "%s$%d", f ? ", " : "",
                                 param++);
      used += (size_t)snprintf(sql + used, cap - used, ")");
    }
    res = PQexecParams(s->conn, sql, (int)(n * PG_JOB_FIELDS), NULL, values,
                       NULL, NULL, 0);
  }
  int status = 0;
  if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
    status = pg_fail(s, res, "insert");
  PQclear(res);
  free(values);
  free(numbers);
  free(sql);
  return status;
}

static int pg_store_insert(void *impl, const ae_store_job *jobs, size_t n) {
  pg_store *s = impl;
  if (!s || (!jobs && n > 0)) return AE_EINVAL;
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    if (!jobs[i].id || !jobs[i].request_json ||
        !ae_store_state_name(jobs[i].state)) {
      pg_set_error(s,
                   "insert: job %zu lacks an id, a request or a valid "
                   "state",
                   i);
      return AE_EINVAL;
    }
  }
  int status = pg_ready(s);
  if (status) return status;
  const char **waits = calloc(n, sizeof *waits);
  if (!waits) {
    pg_set_error(s, "insert: out of memory");
    return AE_ENOMEM;
  }
  int follows = 0;
  for (size_t i = 0; i < n; i++)
    follows |= jobs[i].follow && jobs[i].cache_key;
  /* Up to PG_INSERT_ROWS_MAX jobs are one statement; more are several in
   * one transaction.  Either way all or nothing.  Jobs that may wait for
   * an identical one: the leaders' lookup and the insert are one
   * transaction too. */
  int tx = n > PG_INSERT_ROWS_MAX || follows;
  pg_follow_group *groups = NULL;
  if (tx) status = pg_exec(s, "BEGIN", PGRES_COMMAND_OK, "insert: begin");
  if (follows && !status) status = pg_find_leaders(s, jobs, n, waits, &groups);
  for (size_t done = 0; done < n && !status;) {
    size_t rows = n - done < PG_INSERT_ROWS_MAX ? n - done : PG_INSERT_ROWS_MAX;
    status = pg_insert_rows(s, jobs + done, waits + done, rows);
    done += rows;
  }
  if (tx && !status)
    status = pg_exec(s, "COMMIT", PGRES_COMMAND_OK, "insert: commit");
  free(waits);
  free(groups);
  if (!status) return 0;
  char server[sizeof s->errmsg];
  memcpy(server, s->errmsg, sizeof server);
  if (status == AE_EINVAL && n == 1)
    pg_set_error(s, "insert: job '%s' already exists or is invalid: %s",
                 jobs[0].id, server);
  else if (status == AE_EINVAL)
    pg_set_error(s,
                 "insert: a job of the batch already exists or is "
                 "invalid (nothing inserted): %s",
                 server);
  else if (PQstatus(s->conn) != CONNECTION_OK)
    pg_set_error(s,
                 "%s (the connection was lost: the jobs may or may not "
                 "be stored)",
                 server);
  pg_rollback_quietly(s);
  return status;
}

/* After an UPDATE or DELETE that changed no row: AE_ENOTFOUND when the id
 * is unknown, AE_EINVAL when the job is in a state that forbids it. */
static int pg_no_change(pg_store *s, const char *id, const char *what) {
  const char *values[1] = {id};
  int status;
  PGresult *res = pg_run(s, PG_EXISTS, values, PGRES_TUPLES_OK, what, &status);
  if (!res) return status;
  if (PQntuples(res) > 0) {
    pg_set_error(s, "%s: job '%s' is in a state that forbids it", what, id);
    status = AE_EINVAL;
  } else {
    pg_set_error(s, "%s: no job '%s'", what, id);
    status = AE_ENOTFOUND;
  }
  PQclear(res);
  return status;
}

/* Runs one single-statement writer of one job: 0 when it changed a row,
 * else pg_no_change's answer (or AE_ENOTFOUND for a DELETE). */
static int pg_write_one(pg_store *s, int stmt, const char *const *values,
                        const char *id, const char *what) {
  int status = pg_ready(s);
  if (status) return status;
  PGresult *res = pg_run(s, stmt, values, PGRES_COMMAND_OK, what, &status);
  if (!res) return status;
  long changed = pg_changed(res);
  PQclear(res);
  if (changed > 0) return 0;
  if (stmt == PG_DELETE) {
    pg_set_error(s, "%s: no job '%s'", what, id);
    return AE_ENOTFOUND;
  }
  return pg_no_change(s, id, what);
}

static int pg_store_mark_running(void *impl, const char *id, const char *worker,
                                 long long started_ms) {
  pg_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  char started[24];
  const char *values[4] = {id, worker,
                           pg_int_text(started, sizeof started, started_ms, 1),
                           s->owner[0] ? s->owner : NULL};
  return pg_write_one(s, PG_MARK_RUNNING, values, id, "mark running");
}

static int pg_store_mark_cancel_requested(void *impl, const char *id) {
  pg_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  const char *values[1] = {id};
  return pg_write_one(s, PG_MARK_CANCEL, values, id, "mark cancel");
}

/* A fleet's end of a job (values as PG_FINISH's): one transaction that
 * first locks the job's study row, then writes the end, or, when the job
 * belonged to a study deleted meanwhile (by any replica: it left its
 * running members, PG_STUDY_DELETE_IDLE), removes the job, so that no row
 * (and no lease) of a deleted study outlives its last member's end.  A
 * delete of the study waits for this transaction, or this one for it:
 * either way the delete's own statements or this end see the other. */
static int pg_finish_shared(pg_store *s, const char *id,
                            const char *const *values) {
  int status = pg_ready(s);
  if (status) return status;
  status = pg_exec(s, "BEGIN", PGRES_COMMAND_OK, "finish: begin");
  if (status) return status;
  const char *key[1] = {id};
  PGresult *res =
      pg_run(s, PG_FINISH_STUDY, key, PGRES_TUPLES_OK, "finish", &status);
  int gone = 0, found = 0;
  if (res) {
    found = PQntuples(res) > 0;
    gone = found && !PQgetisnull(res, 0, 0) && PQgetisnull(res, 0, 1);
    PQclear(res);
  }
  long changed = 0;
  if (!status && found) {
    const char *gone_values[2] = {id, values[6]};
    res = pg_run(s, gone ? PG_FINISH_GONE : PG_FINISH,
                 gone ? gone_values : values, PGRES_COMMAND_OK, "finish",
                 &status);
    if (res) changed = pg_changed(res);
    PQclear(res);
  }
  if (!status && changed > 0)
    status = pg_exec(s, "COMMIT", PGRES_COMMAND_OK, "finish: commit");
  else
    pg_rollback_quietly(s);
  if (status) {
    pg_rollback_quietly(s);
    return status;
  }
  if (changed > 0) return 0;
  if (!found) {
    pg_set_error(s, "finish: no job '%s'", id);
    return AE_ENOTFOUND;
  }
  return pg_no_change(s, id, "finish");
}

static int pg_store_finish(void *impl, const char *id, ae_job_state state,
                           const char *result_json, const char *error_json,
                           long long finished_ms, long long expires_ms) {
  pg_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  if (state != AE_JOB_SUCCEEDED && state != AE_JOB_FAILED &&
      state != AE_JOB_CANCELLED) {
    pg_set_error(s, "finish: job '%s': state %d is not terminal", id,
                 (int)state);
    return AE_EINVAL;
  }
  char finished[24], expires[24];
  const char *values[7] = {
      id,
      ae_store_state_name(state),
      result_json,
      error_json,
      pg_int_text(finished, sizeof finished, finished_ms, 1),
      pg_int_text(expires, sizeof expires, expires_ms, 1),
      s->owner[0] ? s->owner : NULL};
  if (!s->owner[0]) return pg_write_one(s, PG_FINISH, values, id, "finish");
  return pg_finish_shared(s, id, values);
}

static int pg_store_remove(void *impl, const char *id) {
  pg_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  const char *values[1] = {id};
  return pg_write_one(s, PG_DELETE, values, id, "delete");
}

static int pg_store_expire(void *impl, long long now_ms) {
  pg_store *s = impl;
  if (!s) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  char now[24];
  const char *values[1] = {pg_int_text(now, sizeof now, now_ms, 0)};
  PGresult *res =
      pg_run(s, PG_EXPIRE, values, PGRES_COMMAND_OK, "expire", &status);
  PQclear(res);
  return status;
}

/* ---- load ---- */

static const char *pg_text(const PGresult *res, int row, int column) {
  if (PQgetisnull(res, row, column)) return NULL;
  return PQgetvalue(res, row, column);
}

static long long pg_number(const PGresult *res, int row, int column) {
  if (PQgetisnull(res, row, column)) return 0;
  return strtoll(PQgetvalue(res, row, column), NULL, 10);
}

/* Reads row r of a job SELECT (PG_JOB_COLUMNS) into job; its texts stay
 * valid until PQclear.  0, or AE_EIO with errmsg set. */
static int pg_row_job(pg_store *s, const PGresult *res, int r,
                      ae_store_job *job, const char *what) {
  memset(job, 0, sizeof *job);
  job->id = pg_text(res, r, 0);
  if (ae_store_state_parse(pg_text(res, r, 1), &job->state)) {
    pg_set_error(s, "%s: job '%s' has an unknown state", what,
                 job->id ? job->id : "?");
    return AE_EIO;
  }
  const char *cancel = pg_text(res, r, 2);
  job->cancel_requested = cancel && cancel[0] == 't';
  job->request_json = pg_text(res, r, 3);
  job->result_json = pg_text(res, r, 4);
  job->error_json = pg_text(res, r, 5);
  job->worker = pg_text(res, r, 6);
  job->idempotency_key = pg_text(res, r, 7);
  job->body_hash = pg_text(res, r, 8);
  job->client_ref = pg_text(res, r, 9);
  job->priority = (int)pg_number(res, r, 10);
  job->timeout_ms = pg_number(res, r, 11);
  job->created_ms = pg_number(res, r, 12);
  job->started_ms = pg_number(res, r, 13);
  job->finished_ms = pg_number(res, r, 14);
  job->expires_ms = pg_number(res, r, 15);
  job->seq = pg_number(res, r, 16);
  job->study = pg_text(res, r, 17);
  job->canonical = pg_text(res, r, 18);
  const char *cached = pg_text(res, r, 19);
  job->cached = cached && cached[0] == 't';
  if (!job->id || !job->request_json) {
    pg_set_error(s, "%s: a row lacks its id or request", what);
    return AE_EIO;
  }
  return 0;
}

/* Calls fn for each row of res; 0, fn's non-zero return, or AE_EIO. */
static int pg_each_row(pg_store *s, const PGresult *res,
                       int (*fn)(void *ud, const ae_store_job *j), void *ud,
                       const char *what) {
  int status = 0;
  int rows = PQntuples(res);
  for (int r = 0; r < rows && !status; r++) {
    ae_store_job job;
    status = pg_row_job(s, res, r, &job, what);
    /* The row's text stays valid until PQclear, so during fn; fn may
     * write through this store (the rows are already read). */
    if (!status) status = fn(ud, &job);
  }
  return status;
}

static int pg_store_load(void *impl, int (*fn)(void *ud, const ae_store_job *j),
                         void *ud) {
  pg_store *s = impl;
  if (!s || !fn) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  char last_seq[24] = "", last_order[24] = "";
  for (;;) {
    const char *values[2] = {last_seq, last_order};
    PGresult *res = pg_run(s, last_seq[0] ? PG_LOAD_NEXT : PG_LOAD_FIRST,
                           values, PGRES_TUPLES_OK, "load", &status);
    if (!res) return status;
    int rows = PQntuples(res);
    status = pg_each_row(s, res, fn, ud, "load");
    if (!status && rows > 0) {
      snprintf(last_seq, sizeof last_seq, "%s", PQgetvalue(res, rows - 1, 16));
      snprintf(last_order, sizeof last_order, "%s",
               PQgetvalue(res, rows - 1, 20));
    }
    PQclear(res);
    if (status || rows < atoi(AE_PG_LOAD_PAGE)) return status;
  }
}

/* One job by its id (PG_GET) or its idempotency key (PG_GET_IDEM). */
static int pg_get_one(pg_store *s, int stmt, const char *what,
                      const char *value,
                      int (*fn)(void *ud, const ae_store_job *j), void *ud) {
  if (!s || !value || !fn) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  const char *values[1] = {value};
  PGresult *res = pg_run(s, stmt, values, PGRES_TUPLES_OK, what, &status);
  if (!res) return status;
  if (PQntuples(res) == 0) {
    pg_set_error(s, "%s: no job '%s'", what, value);
    status = AE_ENOTFOUND;
  } else {
    status = pg_each_row(s, res, fn, ud, what);
  }
  PQclear(res);
  return status;
}

static int pg_store_get(void *impl, const char *id,
                        int (*fn)(void *ud, const ae_store_job *j), void *ud) {
  return pg_get_one(impl, PG_GET, "get", id, fn, ud);
}

static int pg_store_get_idem(void *impl, const char *key,
                             int (*fn)(void *ud, const ae_store_job *j),
                             void *ud) {
  return pg_get_one(impl, PG_GET_IDEM, "get by idempotency key", key, fn, ud);
}

static int pg_store_list(void *impl, const ae_store_page *page,
                         int (*fn)(void *ud, const ae_store_job *j), void *ud) {
  pg_store *s = impl;
  if (!s || !page || !fn) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  char before[24], limit[24];
  const char *values[5] = {
      pg_int_text(before, sizeof before, page->before < 0 ? -1 : page->before,
                  0),
      page->has_state ? ae_store_state_name(page->state) : NULL,
      page->client_ref,
      pg_int_text(limit, sizeof limit, (long long)page->limit, 0),
      page->before_id && *page->before_id ? page->before_id : NULL};
  PGresult *res = pg_run(s, PG_LIST, values, PGRES_TUPLES_OK, "list", &status);
  if (!res) return status;
  status = pg_each_row(s, res, fn, ud, "list");
  PQclear(res);
  return status;
}

/* ---- studies and the result cache ---- */

static int pg_store_mark_cached(void *impl, const char *id) {
  pg_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  const char *values[1] = {id};
  return pg_write_one(s, PG_MARK_CACHED, values, id, "mark cached");
}

static int pg_store_study_insert(void *impl, const ae_store_study *t) {
  pg_store *s = impl;
  if (!s || !t || !t->id || !t->name || !t->request_json) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  char created[24], seq[24];
  const char *values[8] = {
      t->id,
      t->name,
      t->request_json,
      t->idempotency_key,
      t->body_hash,
      t->client_ref,
      pg_int_text(created, sizeof created, t->created_ms, 1),
      pg_int_text(seq, sizeof seq, t->seq, 0)};
  PGresult *res = pg_run(s, PG_STUDY_INSERT, values, PGRES_COMMAND_OK,
                         "study insert", &status);
  PQclear(res);
  /* Only a unique violation (the id, or under --fleet the idempotency
   * key another replica stored first) is the caller's AE_EINVAL: any
   * other refusal of the data is the store's failure to hold it. */
  if (status == AE_EINVAL && strcmp(s->sqlstate, "23505") != 0) status = AE_EIO;
  return status;
}

static int pg_store_study_delete(void *impl, const char *id) {
  pg_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  status = pg_exec(s, "BEGIN", PGRES_COMMAND_OK, "study delete: begin");
  const char *values[1] = {id};
  long changed = 0;
  /* Alone on the database: its finished members go, the others stay
   * without a study (the daemon ends them as plain jobs).  A fleet: the
   * study's row goes first (its lock orders this against the ends of its
   * members, pg_finish_shared), then every member but the running ones,
   * which keep the study's id and are removed at their end. */
  static const int alone[3] = {PG_STUDY_DELETE_JOBS, PG_STUDY_RELEASE_JOBS,
                               PG_STUDY_DELETE};
  static const int shared[2] = {PG_STUDY_DELETE, PG_STUDY_DELETE_IDLE};
  const int *steps = s->owner[0] ? shared : alone;
  int n_steps = s->owner[0] ? 2 : 3;
  for (int k = 0; k < n_steps && !status; k++) {
    PGresult *res =
        pg_run(s, steps[k], values, PGRES_COMMAND_OK, "study delete", &status);
    if (res && steps[k] == PG_STUDY_DELETE) changed = pg_changed(res);
    PQclear(res);
  }
  if (!status && !changed) {
    pg_set_error(s, "study delete: no study '%s'", id);
    status = AE_ENOTFOUND;
  }
  if (!status)
    status = pg_exec(s, "COMMIT", PGRES_COMMAND_OK, "study delete: commit");
  if (status) pg_rollback_quietly(s);
  return status;
}

static int pg_store_study_load(void *impl,
                               int (*fn)(void *ud, const ae_store_study *t),
                               void *ud) {
  pg_store *s = impl;
  if (!s || !fn) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  PGresult *res =
      pg_run(s, PG_STUDY_LOAD, NULL, PGRES_TUPLES_OK, "study load", &status);
  if (!res) return status;
  int rows = PQntuples(res);
  for (int r = 0; r < rows && !status; r++) {
    ae_store_study t = {.id = pg_text(res, r, 0),
                        .name = pg_text(res, r, 1),
                        .request_json = pg_text(res, r, 2),
                        .idempotency_key = pg_text(res, r, 3),
                        .body_hash = pg_text(res, r, 4),
                        .client_ref = pg_text(res, r, 5),
                        .created_ms = pg_number(res, r, 6),
                        .seq = pg_number(res, r, 7)};
    if (!t.id || !t.name || !t.request_json) {
      pg_set_error(s, "study load: a row lacks its id, name or request");
      status = AE_EIO;
      break;
    }
    status = fn(ud, &t);
  }
  PQclear(res);
  return status;
}

/* --fleet: one study by id or idempotency key (PG_STUDY_GET*). */
static int pg_store_study_get(void *impl, const char *id, const char *idem_key,
                              int (*fn)(void *ud, const ae_store_study *t),
                              void *ud) {
  pg_store *s = impl;
  if (!s || !fn || (!id && !idem_key)) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  const char *values[1] = {id ? id : idem_key};
  PGresult *res = pg_run(s, id ? PG_STUDY_GET : PG_STUDY_GET_IDEM, values,
                         PGRES_TUPLES_OK, "study get", &status);
  if (!res) return status;
  if (PQntuples(res) == 0) {
    pg_set_error(s, "study get: no study '%s'", values[0]);
    status = AE_ENOTFOUND;
  } else {
    ae_store_study t = {.id = pg_text(res, 0, 0),
                        .name = pg_text(res, 0, 1),
                        .request_json = pg_text(res, 0, 2),
                        .idempotency_key = pg_text(res, 0, 3),
                        .body_hash = pg_text(res, 0, 4),
                        .client_ref = pg_text(res, 0, 5),
                        .created_ms = pg_number(res, 0, 6),
                        .seq = pg_number(res, 0, 7)};
    if (!t.id || !t.name || !t.request_json) {
      pg_set_error(s, "study get: a row lacks its id, name or request");
      status = AE_EIO;
    } else {
      status = fn(ud, &t);
    }
  }
  PQclear(res);
  return status;
}

/* --fleet: the jobs of one study, in the order they were added. */
static int pg_store_study_members(void *impl, const char *id,
                                  int (*fn)(void *ud, const ae_store_job *j),
                                  void *ud) {
  pg_store *s = impl;
  if (!s || !id || !fn) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  const char *values[1] = {id};
  PGresult *res = pg_run(s, PG_STUDY_MEMBERS, values, PGRES_TUPLES_OK,
                         "study members", &status);
  if (!res) return status;
  status = pg_each_row(s, res, fn, ud, "study members");
  PQclear(res);
  return status;
}

static int pg_store_cache_put(void *impl, const char *key,
                              const char *canonical, const char *result_json,
                              long long created_ms) {
  pg_store *s = impl;
  if (!s || !key || !canonical || !result_json) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  char created[24];
  const char *values[4] = {key, canonical, result_json,
                           pg_int_text(created, sizeof created, created_ms, 1)};
  PGresult *res =
      pg_run(s, PG_CACHE_PUT, values, PGRES_COMMAND_OK, "cache put", &status);
  PQclear(res);
  return status;
}

static int pg_store_cache_get(void *impl, const char *key,
                              int (*fn)(void *ud, const char *result_json),
                              void *ud) {
  pg_store *s = impl;
  if (!s || !key || !fn) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  const char *values[1] = {key};
  PGresult *res =
      pg_run(s, PG_CACHE_GET, values, PGRES_TUPLES_OK, "cache get", &status);
  if (!res) return status;
  if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0))
    status = AE_ENOTFOUND;
  else
    status = fn(ud, PQgetvalue(res, 0, 0));
  PQclear(res);
  return status;
}

/* ---- the shared queue (issue 15) ---- */

static int pg_store_claim(
    void *impl, const char *worker, long long now_ms, long long lease_ms,
    int (*fn)(void *ud, const ae_store_job *j, int attempts), void *ud) {
  pg_store *s = impl;
  if (!s || !fn || !s->owner[0]) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  char now[24], until[24];
  const char *values[4] = {
      s->owner, worker, pg_int_text(now, sizeof now, now_ms, 0),
      pg_int_text(until, sizeof until, now_ms + lease_ms, 0)};
  PGresult *res =
      pg_run(s, PG_CLAIM, values, PGRES_TUPLES_OK, "claim", &status);
  if (!res) return status;
  if (PQntuples(res) == 0) {
    status = AE_ENOTFOUND;
  } else {
    ae_store_job job;
    status = pg_row_job(s, res, 0, &job, "claim");
    if (!status) status = fn(ud, &job, (int)pg_number(res, 0, 20));
  }
  PQclear(res);
  return status;
}

static int pg_store_heartbeat(void *impl, long long now_ms, long long lease_ms,
                              int (*fn)(void *ud, const char *id,
                                        int cancel_requested),
                              void *ud) {
  pg_store *s = impl;
  if (!s || !s->owner[0]) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  char until[24];
  const char *values[2] = {
      s->owner, pg_int_text(until, sizeof until, now_ms + lease_ms, 0)};
  PGresult *res =
      pg_run(s, PG_HEARTBEAT, values, PGRES_TUPLES_OK, "heartbeat", &status);
  if (!res) return status;
  int rows = PQntuples(res);
  for (int r = 0; r < rows && !status; r++) {
    const char *cancel = pg_text(res, r, 1);
    if (fn) status = fn(ud, PQgetvalue(res, r, 0), cancel && cancel[0] == 't');
  }
  PQclear(res);
  return status;
}

static int pg_store_release(void *impl, const char *id) {
  pg_store *s = impl;
  if (!s || !id || !s->owner[0]) return AE_EINVAL;
  const char *values[2] = {id, s->owner};
  return pg_write_one(s, PG_RELEASE, values, id, "release");
}

static int pg_store_requeue_expired(void *impl, long long now_ms,
                                    int max_attempts, const char *error_json,
                                    long long failed_expires_ms,
                                    size_t *requeued, size_t *failed) {
  pg_store *s = impl;
  if (!s || !error_json || max_attempts < 1) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  char now[24], max[24], expires[24];
  const char *values[4] = {
      pg_int_text(now, sizeof now, now_ms, 0),
      pg_int_text(max, sizeof max, max_attempts, 0), error_json,
      pg_int_text(expires, sizeof expires, failed_expires_ms, 1)};
  long counts[2] = {0, 0};
  status = pg_exec(s, "BEGIN", PGRES_COMMAND_OK, "leases: begin");
  /* Orphans first: a deleted study's member is neither failed nor run
   * again. */
  static const int steps[3] = {PG_LEASES_ORPHANS, PG_LEASES_FAIL,
                               PG_LEASES_REQUEUE};
  for (int k = 0; k < 3 && !status; k++) {
    PGresult *res = pg_run(s, steps[k], values, PGRES_COMMAND_OK,
                           "re-queue expired leases", &status);
    if (res && k > 0) counts[k - 1] = pg_changed(res);
    PQclear(res);
  }
  if (!status)
    status = pg_exec(s, "COMMIT", PGRES_COMMAND_OK, "leases: commit");
  if (status) {
    pg_rollback_quietly(s);
    counts[0] = counts[1] = 0;
  }
  if (failed) *failed = (size_t)counts[0];
  if (requeued) *requeued = (size_t)counts[1];
  return status;
}

static int pg_store_count_queued(void *impl, size_t *out) {
  pg_store *s = impl;
  if (!s || !out) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  PGresult *res = pg_run(s, PG_COUNT_QUEUED, NULL, PGRES_TUPLES_OK,
                         "count queued", &status);
  if (!res) return status;
  long long n = PQntuples(res) == 1 ? pg_number(res, 0, 0) : -1;
  PQclear(res);
  if (n < 0) {
    pg_set_error(s, "count queued: no count");
    return AE_EIO;
  }
  *out = (size_t)n;
  return 0;
}

static int pg_store_listen(void *impl, int *fd) {
  pg_store *s = impl;
  if (!s || !fd) return AE_EINVAL;
  if (s->listen_conn) PQfinish(s->listen_conn);
  s->listen_conn = pg_open_conn(s);
  if (!s->listen_conn) {
    pg_set_error(s, "listen: out of memory");
    return AE_ENOMEM;
  }
  int status = 0;
  if (PQstatus(s->listen_conn) != CONNECTION_OK) {
    pg_set_error(s, "listen: connect: %s", PQerrorMessage(s->listen_conn));
    status = AE_EIO;
  } else {
    PQsetNoticeProcessor(s->listen_conn, pg_ignore_notice, NULL);
    PGresult *res = PQexec(s->listen_conn, "LISTEN " AE_PG_CHANNEL);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
      pg_set_error(s, "listen: %s", PQerrorMessage(s->listen_conn));
      status = AE_EIO;
    }
    PQclear(res);
  }
  if (!status && (*fd = PQsocket(s->listen_conn)) < 0) {
    pg_set_error(s, "listen: no socket");
    status = AE_EIO;
  }
  if (status) {
    PQfinish(s->listen_conn);
    s->listen_conn = NULL;
  }
  return status;
}

static int pg_store_notifications(void *impl,
                                  int (*fn)(void *ud, const char *payload),
                                  void *ud) {
  pg_store *s = impl;
  if (!s || !fn) return AE_EINVAL;
  if (!s->listen_conn) {
    pg_set_error(s, "notifications: not listening");
    return AE_EIO;
  }
  if (!PQconsumeInput(s->listen_conn) ||
      PQstatus(s->listen_conn) != CONNECTION_OK) {
    /* The connection (its socket still watched by the caller) is closed
     * by the next ae_store_listen, once the caller stopped watching. */
    pg_set_error(s, "notifications: %s", PQerrorMessage(s->listen_conn));
    return AE_EIO;
  }
  int status = 0;
  PGnotify *note;
  while ((note = PQnotifies(s->listen_conn)) != NULL) {
    if (!status) status = fn(ud, note->extra ? note->extra : "");
    PQfreemem(note);
  }
  return status;
}

/* The bytes go as a binary parameter (bytea), the rest as text. */
static int pg_store_model_put(void *impl, const ae_store_model *m,
                              int *created) {
  pg_store *s = impl;
  if (!s || !m || !m->id || !m->bytes || m->len > INT_MAX || !created)
    return AE_EINVAL;
  *created = 0;
  int status = pg_ready(s);
  if (status) return status;
  char size[24], when[24];
  const char *values[6] = {m->id,
                           (const char *)m->bytes,
                           pg_int_text(size, sizeof size, (long long)m->len, 0),
                           m->description_json,
                           m->architecture_json,
                           pg_int_text(when, sizeof when, m->created_ms, 1)};
  const int lengths[6] = {0, (int)m->len, 0, 0, 0, 0};
  const int formats[6] = {0, 1, 0, 0, 0, 0};
  PGresult *res = PQexecPrepared(s->conn, pg_statements[PG_MODEL_PUT].name, 6,
                                 values, lengths, formats, 0);
  if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
    status = pg_fail(s, res, "model put");
    PQclear(res);
    return status;
  }
  *created = pg_changed(res) > 0;
  PQclear(res);
  return 0;
}

static int pg_store_model_get(void *impl, const char *id,
                              int (*fn)(void *ud, const ae_store_model *m),
                              void *ud) {
  pg_store *s = impl;
  if (!s || !id || !fn) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  const char *values[1] = {id};
  PGresult *res =
      pg_run(s, PG_MODEL_GET, values, PGRES_TUPLES_OK, "model get", &status);
  if (!res) return status;
  if (PQntuples(res) == 0) {
    status = AE_ENOTFOUND;
  } else {
    ae_store_model m = {.id = id,
                        .bytes = NULL,
                        .len = (size_t)pg_number(res, 0, 0),
                        .description_json = pg_text(res, 0, 1),
                        .architecture_json = pg_text(res, 0, 2),
                        .created_ms = pg_number(res, 0, 3)};
    if (!m.description_json || !m.architecture_json) {
      pg_set_error(s, "model get: a row lacks its description");
      status = AE_EIO;
    } else {
      status = fn(ud, &m);
    }
  }
  PQclear(res);
  return status;
}

static int pg_store_model_delete(void *impl, const char *id) {
  pg_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  const char *values[1] = {id};
  PGresult *res = pg_run(s, PG_MODEL_DELETE, values, PGRES_COMMAND_OK,
                         "model delete", &status);
  if (!res) return status;
  if (pg_changed(res) == 0) {
    pg_set_error(s, "model delete: no model '%s'", id);
    status = AE_ENOTFOUND;
  }
  PQclear(res);
  return status;
}

static int pg_store_ping(void *impl) {
  pg_store *s = impl;
  if (!s) return AE_EINVAL;
  int status = pg_ready(s);
  if (status) return status;
  return pg_exec(s, "SELECT 1", PGRES_TUPLES_OK, "ping");
}

const ae_store_ops ae_store_pg_ops = {
    .name = "postgresql",
    .insert = pg_store_insert,
    .mark_running = pg_store_mark_running,
    .mark_cancel_requested = pg_store_mark_cancel_requested,
    .finish = pg_store_finish,
    .remove = pg_store_remove,
    .expire = pg_store_expire,
    .load = pg_store_load,
    .get = pg_store_get,
    .get_idem = pg_store_get_idem,
    .claim = pg_store_claim,
    .heartbeat = pg_store_heartbeat,
    .release = pg_store_release,
    .listen = pg_store_listen,
    .notifications = pg_store_notifications,
    .requeue_expired = pg_store_requeue_expired,
    .count_queued = pg_store_count_queued,
    .list = pg_store_list,
    .ping = pg_store_ping,
    .mark_cached = pg_store_mark_cached,
    .study_insert = pg_store_study_insert,
    .study_delete = pg_store_study_delete,
    .study_load = pg_store_study_load,
    .study_get = pg_store_study_get,
    .study_members = pg_store_study_members,
    .cache_put = pg_store_cache_put,
    .cache_get = pg_store_cache_get,
    .model_put = pg_store_model_put,
    .model_get = pg_store_model_get,
    .model_delete = pg_store_model_delete,
    .errmsg = pg_store_errmsg,
    .close = pg_store_close,
};
