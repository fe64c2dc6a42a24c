/* store_sqlite.c: the durable job store (store.h) on SQLite, one of the
 * backends behind store.c's operations table (store.h).
 *
 * Design.  One file, DIR/jobs.sqlite3, in WAL mode.  Every writer is one
 * transaction that returns only once committed: with AE_STORE_SYNC_FULL
 * the WAL is fsynced on every commit (an acknowledged job survives a power
 * loss); with AE_STORE_SYNC_NORMAL it survives a crash of the process but
 * the last commits may be lost on power loss.  The connection takes the
 * database in EXCLUSIVE locking mode, so a second daemon pointed at the
 * same state dir fails to open instead of running the same jobs twice; the
 * lock is a POSIX lock that the kernel drops when the process dies, even
 * by SIGKILL.  Statements are prepared once at open and kept for life.
 *
 * Invariants.  A job's state only moves forward: queued -> running ->
 * terminal, or queued -> terminal; a terminal job is never finished
 * again, so a result is written exactly once.  At open, jobs that were
 * running when the previous process died go back to queued (worker and
 * started time cleared): the daemon re-queues every job that loads as
 * queued.  Schema versions live in PRAGMA user_version.
 *
 * Thread: an ae_store and its statements belong to the loop thread that
 * opened it (the connection is opened without SQLite's own mutexes). */
#include "server/store.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "api/status.h"

/* The schema this code writes; older files are migrated at open. */
#define STORE_SCHEMA_VERSION 3
#define STORE_FILE_NAME "jobs.sqlite3"
#define STORE_BUSY_TIMEOUT_MS 2000

enum {
  STMT_BEGIN,
  STMT_COMMIT,
  STMT_ROLLBACK,
  STMT_INSERT,
  STMT_MARK_RUNNING,
  STMT_MARK_CANCEL,
  STMT_FINISH,
  STMT_DELETE,
  STMT_EXPIRE,
  STMT_LOAD,
  STMT_EXISTS,
  STMT_MARK_CACHED,
  STMT_STUDY_INSERT,
  STMT_STUDY_DELETE_JOBS,
  STMT_STUDY_RELEASE_JOBS,
  STMT_STUDY_DELETE,
  STMT_STUDY_LOAD,
  STMT_CACHE_PUT,
  STMT_CACHE_GET,
  STMT_GET,
  STMT_GET_IDEM,
  STMT_LIST,
  STMT_MODEL_PUT,
  STMT_MODEL_GET,
  STMT_MODEL_DELETE,
  STMT_COUNT
};

static const char *const store_statement_sql[STMT_COUNT] = {
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_INSERT] =
        "INSERT INTO jobs (id, state, cancel_requested, request_json,"
        " result_json, error_json, worker, idempotency_key, body_hash,"
        " client_ref, priority, timeout_ms, created_ms, started_ms,"
        " finished_ms, expires_ms, seq, study, canonical, cached)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
        " ?15, ?16, ?17, ?18, ?19, ?20)",
    [STMT_MARK_RUNNING] =
        "UPDATE jobs SET state = 'running', worker = ?2, started_ms = ?3"
        " WHERE id = ?1 AND state IN ('queued', 'running')",
    [STMT_MARK_CANCEL] = "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1",
    [STMT_FINISH] =
        "UPDATE jobs SET state = ?2, result_json = ?3, error_json = ?4,"
        " finished_ms = ?5, expires_ms = ?6"
        " WHERE id = ?1 AND state IN ('queued', 'running')",
    [STMT_DELETE] = "DELETE FROM jobs WHERE id = ?1",
    [STMT_EXPIRE] =
        "DELETE FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')"
        " AND expires_ms IS NOT NULL AND expires_ms <= ?1",
    [STMT_LOAD] =
        "SELECT id, state, cancel_requested, request_json, result_json,"
        " error_json, worker, idempotency_key, body_hash, client_ref, priority,"
        " timeout_ms, created_ms, started_ms, finished_ms, expires_ms, seq,"
        " study, canonical, cached FROM jobs ORDER BY seq, rowid",
    [STMT_MARK_CACHED] = "UPDATE jobs SET cached = 1 WHERE id = ?1",
    [STMT_EXISTS] = "SELECT 1 FROM jobs WHERE id = ?1",
    [STMT_STUDY_INSERT] =
        "INSERT INTO studies (id, name, request_json, idempotency_key,"
        " body_hash, client_ref, created_ms, seq)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [STMT_STUDY_DELETE_JOBS] =
        "DELETE FROM jobs WHERE study = ?1"
        " AND state IN ('succeeded', 'failed', 'cancelled')",
    [STMT_STUDY_RELEASE_JOBS] = "UPDATE jobs SET study = NULL WHERE study = ?1",
    [STMT_STUDY_DELETE] = "DELETE FROM studies WHERE id = ?1",
    [STMT_STUDY_LOAD] =
        "SELECT id, name, request_json, idempotency_key, body_hash,"
        " client_ref, created_ms, seq FROM studies ORDER BY seq, id",
    [STMT_CACHE_PUT] =
        "INSERT INTO result_cache (key, canonical, result_json, created_ms)"
        " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key) DO NOTHING",
    [STMT_CACHE_GET] = "SELECT result_json FROM result_cache WHERE key = ?1",
    [STMT_GET] =
        "SELECT id, state, cancel_requested, request_json, result_json,"
        " error_json, worker, idempotency_key, body_hash, client_ref, priority,"
        " timeout_ms, created_ms, started_ms, finished_ms, expires_ms, seq,"
        " study, canonical, cached FROM jobs WHERE id = ?1",
    [STMT_GET_IDEM] =
        "SELECT id, state, cancel_requested, request_json, result_json,"
        " error_json, worker, idempotency_key, body_hash, client_ref, priority,"
        " timeout_ms, created_ms, started_ms, finished_ms, expires_ms, seq,"
        " study, canonical, cached FROM jobs WHERE idempotency_key = ?1"
        " ORDER BY seq, rowid LIMIT 1",
    /* ?1 before (< 0: none), ?2 state (NULL: any), ?3 client_ref (NULL:
     * any), ?4 the page's size, ?5 before_id (NULL: none); ids compare
     * byte by byte (BINARY), as the server's strcmp. */
    [STMT_LIST] =
        "SELECT id, state, cancel_requested, request_json, result_json,"
        " error_json, worker, idempotency_key, body_hash, client_ref, priority,"
        " timeout_ms, created_ms, started_ms, finished_ms, expires_ms, seq,"
        " study, canonical, cached FROM jobs"
        " WHERE (?1 < 0 OR seq < ?1 OR (seq = ?1 AND id < ?5))"
        " AND (?2 IS NULL OR state = ?2)"
        " AND (?3 IS NULL OR client_ref = ?3)"
        " ORDER BY seq DESC, id DESC LIMIT ?4",
    [STMT_MODEL_PUT] =
        "INSERT INTO models (id, bytes, size, description_json,"
        " architecture_json, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        " ON CONFLICT (id) DO NOTHING",
    [STMT_MODEL_GET] = "SELECT size, description_json, architecture_json,"
                       " created_ms FROM models WHERE id = ?1",
    [STMT_MODEL_DELETE] = "DELETE FROM models WHERE id = ?1",
};

/* Version 1: the jobs table.  Timestamps are NULL where the API says
 * null (0 in ae_store_job). */
static const char store_schema_v1[] =
    "CREATE TABLE jobs ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded',"
    "  'failed', 'cancelled')),"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " request_json TEXT NOT NULL,"
    " result_json TEXT,"
    " error_json TEXT,"
    " worker TEXT,"
    " idempotency_key TEXT,"
    " body_hash TEXT,"
    " client_ref TEXT,"
    " priority INTEGER NOT NULL DEFAULT 0,"
    " timeout_ms INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER,"
    " started_ms INTEGER,"
    " finished_ms INTEGER,"
    " expires_ms INTEGER,"
    " seq INTEGER NOT NULL);"
    "CREATE INDEX jobs_idempotency_key ON jobs (idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX jobs_seq ON jobs (seq);"
    "CREATE INDEX jobs_expires ON jobs (expires_ms)"
    " WHERE expires_ms IS NOT NULL;";

/* Version 2 (issue 13): studies, the jobs' study, the result cache. */
static const char store_schema_v2[] =
    "ALTER TABLE jobs ADD COLUMN study TEXT;"
    "ALTER TABLE jobs ADD COLUMN canonical TEXT;"
    "ALTER TABLE jobs ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX jobs_study ON jobs (study) WHERE study IS NOT NULL;"
    "CREATE TABLE studies ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " name TEXT NOT NULL,"
    " request_json TEXT NOT NULL,"
    " idempotency_key TEXT,"
    " body_hash TEXT,"
    " client_ref TEXT,"
    " created_ms INTEGER,"
    " seq INTEGER NOT NULL);"
    "CREATE TABLE result_cache ("
    " key TEXT PRIMARY KEY NOT NULL,"
    " canonical TEXT NOT NULL,"
    " result_json TEXT NOT NULL,"
    " created_ms INTEGER);";

/* Version 3 (issue 12): uploaded ONNX models, content-addressed. */
static const char store_schema_v3[] = "CREATE TABLE models ("
                                      " id TEXT PRIMARY KEY NOT NULL,"
                                      " bytes BLOB NOT NULL,"
                                      " size INTEGER NOT NULL,"
                                      " description_json TEXT NOT NULL,"
                                      " architecture_json TEXT NOT NULL,"
                                      " created_ms INTEGER);";

typedef struct {
  sqlite3 *db;
  sqlite3_stmt *stmt[STMT_COUNT];
  char errmsg[512];
} sqlite_store;

static void store_set_error(sqlite_store *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void store_set_error(sqlite_store *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
  va_end(ap);
}

/* Records SQLite's message for a failed call and maps the code: a
 * constraint (a duplicate id) is the caller's error, the rest is I/O. */
static int store_fail(sqlite_store *s, int rc, const char *what) {
  store_set_error(s, "%s: %s (%s)", what, sqlite3_errmsg(s->db),
                  sqlite3_errstr(rc));
  if ((rc & 0xff) == SQLITE_CONSTRAINT) return AE_EINVAL;
  return AE_EIO;
}

static const char *sqlite_store_errmsg(const void *impl) {
  const sqlite_store *s = impl;
  if (!s) return "no store";
  return s->errmsg[0] ? s->errmsg : "no error";
}

/* mkdir -p with mode 0700 for every component it creates. */
static int store_mkdir_p(const char *dir, char *err, size_t errlen) {
  char path[PATH_MAX];
  size_t len = strlen(dir);
  if (len == 0 || len >= sizeof path) {
    snprintf(err, errlen, "state dir: bad path '%s'", dir);
    return AE_EIO;
  }
  memcpy(path, dir, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    char saved = path[i];
    path[i] = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "state dir: cannot create '%s': %s", path,
               strerror(errno));
      return AE_EIO;
    }
    path[i] = saved;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "state dir: '%s' is not a directory", dir);
    return AE_EIO;
  }
  return 0;
}

/* Runs one statement that returns at most a single text value, which it
 * copies into out (when out is not NULL). */
static int store_exec_text(sqlite_store *s, const char *sql, char *out,
                           size_t outlen) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return store_fail(s, rc, sql);
  if (out && outlen) out[0] = '\0';
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char *text = sqlite3_column_text(st, 0);
    if (out && outlen && text && out[0] == '\0')
      snprintf(out, outlen, "%s", (const char *)text);
  }
  if (rc != SQLITE_DONE) {
    int status = store_fail(s, rc, sql);
    sqlite3_finalize(st);
    return status;
  }
  sqlite3_finalize(st);
  return 0;
}

static int store_exec(sqlite_store *s, const char *sql) {
  char *message = NULL;
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &message);
  if (rc != SQLITE_OK) {
    store_set_error(s, "%s: %s", sql, message ? message : sqlite3_errstr(rc));
    sqlite3_free(message);
    return (rc & 0xff) == SQLITE_CONSTRAINT ? AE_EINVAL : AE_EIO;
  }
  return 0;
}

/* Creates or migrates the schema in one transaction. */
static int store_migrate(sqlite_store *s) {
  char text[64];
  int status = store_exec_text(s, "PRAGMA user_version", text, sizeof text);
  if (status) return status;
  long version = strtol(text, NULL, 10);
  if (version == STORE_SCHEMA_VERSION) return 0;
  if (version > STORE_SCHEMA_VERSION || version < 0) {
    store_set_error(s, "schema version %ld is newer than this archevald (%d)",
                    version, STORE_SCHEMA_VERSION);
    return AE_EIO;
  }
  if ((status = store_exec(s, "BEGIN IMMEDIATE"))) return status;
  if (version < 1) status = store_exec(s, store_schema_v1);
  if (!status && version < 2) status = store_exec(s, store_schema_v2);
  if (!status && version < 3) status = store_exec(s, store_schema_v3);
  if (!status) {
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
    status = store_exec(s, sql);
  }
  if (!status) status = store_exec(s, "COMMIT");
  if (status) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return status;
}

/* Jobs that were running when the previous process died go back to the
 * queue: the daemon starts them again from the beginning. */
static int store_requeue_running(sqlite_store *s) {
  return store_exec(s, "UPDATE jobs SET state = 'queued', worker = NULL,"
                       " started_ms = NULL WHERE state = 'running'");
}

static int store_configure(sqlite_store *s, ae_store_sync sync) {
  char text[64];
  int rc = sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
  if (rc != SQLITE_OK) return store_fail(s, rc, "busy timeout");
  int status = store_exec_text(s, "PRAGMA locking_mode = EXCLUSIVE", NULL, 0);
  if (status) return status;
  status = store_exec_text(s, "PRAGMA journal_mode = WAL", text, sizeof text);
  if (status) return status;
  if (strcmp(text, "wal") != 0) {
    store_set_error(s, "cannot switch to WAL mode (journal_mode is '%s')",
                    text);
    return AE_EIO;
  }
  status =
      store_exec(s, sync == AE_STORE_SYNC_NORMAL ? "PRAGMA synchronous = NORMAL"
                                                 : "PRAGMA synchronous = FULL");
  if (status) return status;
  status = store_exec(s, "PRAGMA foreign_keys = ON");
  if (status) return status;
  /* A damaged file is refused rather than half loaded. */
  status = store_exec_text(s, "PRAGMA quick_check", text, sizeof text);
  if (status) return status;
  if (strcmp(text, "ok") != 0) {
    store_set_error(s, "integrity check failed: %s", text);
    return AE_EIO;
  }
  return 0;
}

static void store_free(sqlite_store *s) {
  if (!s) return;
  for (int i = 0; i < STMT_COUNT; i++)
    sqlite3_finalize(s->stmt[i]);
  /* Closing runs the last checkpoint and removes the WAL file. */
  sqlite3_close(s->db);
  free(s);
}

/* Refuses a store file that cannot be a whole SQLite database: empty
 * (truncated to 0 bytes), too short or without SQLite's magic, or shorter
 * than the pages its header declares.  A missing file is fine (a new
 * store); so is any file whose WAL holds data (SQLite recovers from it).
 * 0, or AE_EIO with err saying what is wrong and what to do. */
static int store_check_file(const char *path, char *err, size_t errlen) {
  struct stat st, wal_st;
  if (stat(path, &st) != 0) return 0; /* missing: a new store */
  char wal[PATH_MAX + 8];
  snprintf(wal, sizeof wal, "%s-wal", path);
  int wal_has_data = stat(wal, &wal_st) == 0 && wal_st.st_size > 0;
  if (st.st_size == 0) {
    if (wal_has_data) return 0;
    snprintf(err, errlen,
             "%s: empty file (truncated?); move it away to start with an "
             "empty store",
             path);
    return AE_EIO;
  }
  unsigned char head[100];
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    return AE_EIO;
  }
  size_t got = fread(head, 1, sizeof head, f);
  fclose(f);
  if (st.st_size < 512 || got < sizeof head ||
      memcmp(head, "SQLite format 3", 16) != 0) {
    snprintf(err, errlen, "%s: not an SQLite database (%lld bytes)", path,
             (long long)st.st_size);
    return AE_EIO;
  }
  if (wal_has_data) return 0;
  long long page = ((long long)head[16] << 8) | head[17];
  if (page == 1) page = 65536;
  unsigned long long pages = ((unsigned long long)head[28] << 24) |
                             ((unsigned long long)head[29] << 16) |
                             ((unsigned long long)head[30] << 8) | head[31];
  /* The page count is valid only when the change counter (offset 24)
   * equals the version-valid-for number (offset 92). */
  int count_valid = memcmp(head + 24, head + 92, 4) == 0 && pages > 0;
  if (page < 512 || st.st_size % page != 0 ||
      (count_valid &&
       pages * (unsigned long long)page > (unsigned long long)st.st_size)) {
    snprintf(err, errlen,
             "%s: truncated: %lld bytes, the header says %llu pages of "
             "%lld bytes",
             path, (long long)st.st_size, count_valid ? pages : 0ULL, page);
    return AE_EIO;
  }
  return 0;
}

int ae_store_sqlite_open(const char *dir, ae_store_sync sync, void **out,
                         char *err, size_t errlen) {
  char scratch[8];
  if (!err || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  if (!out || !dir) {
    snprintf(err, errlen, "store: no state dir");
    return AE_EIO;
  }
  *out = NULL;
  int status = store_mkdir_p(dir, err, errlen);
  if (status) return status;

  sqlite_store *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "store: out of memory");
    return AE_EIO;
  }
  char path[PATH_MAX];
  int n = snprintf(path, sizeof path, "%s/%s", dir, STORE_FILE_NAME);
  if (n < 0 || (size_t)n >= sizeof path) {
    snprintf(err, errlen, "state dir: path too long");
    free(s);
    return AE_EIO;
  }
  status = store_check_file(path, err, errlen);
  if (status) {
    free(s);
    return status;
  }
  int rc = sqlite3_open_v2(
      path, &s->db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", path,
             s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    store_free(s);
    return AE_EIO;
  }
  sqlite3_extended_result_codes(s->db, 1);

  status = store_configure(s, sync);
  if (!status) status = store_migrate(s);
  if (!status) status = store_requeue_running(s);
  for (int i = 0; !status && i < STMT_COUNT; i++) {
    rc = sqlite3_prepare_v3(s->db, store_statement_sql[i], -1,
                            SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL);
    if (rc != SQLITE_OK) status = store_fail(s, rc, "prepare");
  }
  if (status) {
    if ((sqlite3_errcode(s->db) & 0xff) == SQLITE_BUSY)
      snprintf(err, errlen,
               "%s: in use by another process (one daemon per state dir)",
               path);
    else
      snprintf(err, errlen, "%s: %s", path, s->errmsg);
    store_free(s);
    return AE_EIO;
  }
  *out = s;
  return 0;
}

static void sqlite_store_close(void *impl) {
  store_free(impl);
}

/* Binds NULL for a NULL string, else the text (copied by SQLite). */
static int store_bind_text(sqlite3_stmt *st, int index, const char *text) {
  if (!text) return sqlite3_bind_null(st, index);
  return sqlite3_bind_text(st, index, text, -1, SQLITE_TRANSIENT);
}

/* Binds NULL for 0 (the API's null time), else the value. */
static int store_bind_time(sqlite3_stmt *st, int index, long long ms) {
  if (ms == 0) return sqlite3_bind_null(st, index);
  return sqlite3_bind_int64(st, index, ms);
}

/* Steps a statement that returns no rows, then resets and unbinds it. */
static int store_step_done(sqlite_store *s, sqlite3_stmt *st,
                           const char *what) {
  int rc = sqlite3_step(st);
  int status = 0;
  if (rc != SQLITE_DONE) status = store_fail(s, rc, what);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return status;
}

static int store_bind_job(sqlite3_stmt *st, const ae_store_job *j) {
  const char *state = ae_store_state_name(j->state);
  if (!state || !j->id || !j->request_json) return SQLITE_MISUSE;
  int rc = SQLITE_OK;
  if (rc == SQLITE_OK) rc = store_bind_text(st, 1, j->id);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 2, state);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 3, j->cancel_requested != 0);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 4, j->request_json);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 5, j->result_json);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 6, j->error_json);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 7, j->worker);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 8, j->idempotency_key);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 9, j->body_hash);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 10, j->client_ref);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 11, j->priority);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 12, j->timeout_ms);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 13, j->created_ms);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 14, j->started_ms);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 15, j->finished_ms);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 16, j->expires_ms);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 17, j->seq);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 18, j->study);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 19, j->canonical);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 20, j->cached != 0);
  return rc;
}

static int sqlite_store_insert(void *impl, const ae_store_job *jobs, size_t n) {
  sqlite_store *s = impl;
  if (!s || (!jobs && n > 0)) return AE_EINVAL;
  if (n == 0) return 0;
  int status = store_step_done(s, s->stmt[STMT_BEGIN], "begin");
  if (status) return status;
  sqlite3_stmt *st = s->stmt[STMT_INSERT];
  for (size_t i = 0; i < n && !status; i++) {
    int rc = store_bind_job(st, &jobs[i]);
    if (rc == SQLITE_MISUSE) {
      store_set_error(s,
                      "insert: job %zu lacks an id, a request or a "
                      "valid state",
                      i);
      status = AE_EINVAL;
    } else if (rc != SQLITE_OK) {
      status = store_fail(s, rc, "insert: bind");
    }
    if (!status) {
      status = store_step_done(s, st, "insert");
      if (status == AE_EINVAL)
        store_set_error(s,
                        "insert: job '%s' already exists or is "
                        "invalid: %s",
                        jobs[i].id, sqlite3_errmsg(s->db));
    } else {
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
    }
  }
  if (!status) status = store_step_done(s, s->stmt[STMT_COMMIT], "commit");
  if (status && !sqlite3_get_autocommit(s->db)) {
    char saved[sizeof s->errmsg];
    memcpy(saved, s->errmsg, sizeof saved);
    if (store_step_done(s, s->stmt[STMT_ROLLBACK], "rollback") == 0)
      memcpy(s->errmsg, saved, sizeof saved);
  }
  return status;
}

/* After an UPDATE or DELETE that changed no row: AE_ENOTFOUND when the id
 * is unknown, AE_EINVAL when the job is in a state that forbids it. */
static int store_no_change(sqlite_store *s, const char *id, const char *what) {
  sqlite3_stmt *st = s->stmt[STMT_EXISTS];
  int rc = store_bind_text(st, 1, id);
  if (rc != SQLITE_OK) return store_fail(s, rc, what);
  rc = sqlite3_step(st);
  int status;
  if (rc == SQLITE_ROW) {
    store_set_error(s, "%s: job '%s' is in a state that forbids it", what, id);
    status = AE_EINVAL;
  } else if (rc == SQLITE_DONE) {
    store_set_error(s, "%s: no job '%s'", what, id);
    status = AE_ENOTFOUND;
  } else {
    status = store_fail(s, rc, what);
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return status;
}

static int sqlite_store_mark_running(void *impl, const char *id,
                                     const char *worker, long long started_ms) {
  sqlite_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_MARK_RUNNING];
  int rc = store_bind_text(st, 1, id);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 2, worker);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 3, started_ms);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "mark running: bind");
  }
  int status = store_step_done(s, st, "mark running");
  if (status) return status;
  if (sqlite3_changes(s->db) == 0)
    return store_no_change(s, id, "mark running");
  return 0;
}

static int sqlite_store_mark_cancel_requested(void *impl, const char *id) {
  sqlite_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_MARK_CANCEL];
  int rc = store_bind_text(st, 1, id);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "mark cancel: bind");
  }
  int status = store_step_done(s, st, "mark cancel");
  if (status) return status;
  if (sqlite3_changes(s->db) == 0) return store_no_change(s, id, "mark cancel");
  return 0;
}

static int sqlite_store_finish(void *impl, const char *id, ae_job_state state,
                               const char *result_json, const char *error_json,
                               long long finished_ms, long long expires_ms) {
  sqlite_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  if (state != AE_JOB_SUCCEEDED && state != AE_JOB_FAILED &&
      state != AE_JOB_CANCELLED) {
    store_set_error(s, "finish: job '%s': state %d is not terminal", id,
                    (int)state);
    return AE_EINVAL;
  }
  sqlite3_stmt *st = s->stmt[STMT_FINISH];
  int rc = store_bind_text(st, 1, id);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 2, ae_store_state_name(state));
  if (rc == SQLITE_OK) rc = store_bind_text(st, 3, result_json);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 4, error_json);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 5, finished_ms);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 6, expires_ms);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "finish: bind");
  }
  int status = store_step_done(s, st, "finish");
  if (status) return status;
  if (sqlite3_changes(s->db) == 0) return store_no_change(s, id, "finish");
  return 0;
}

static int sqlite_store_remove(void *impl, const char *id) {
  sqlite_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_DELETE];
  int rc = store_bind_text(st, 1, id);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "delete: bind");
  }
  int status = store_step_done(s, st, "delete");
  if (status) return status;
  if (sqlite3_changes(s->db) == 0) {
    store_set_error(s, "delete: no job '%s'", id);
    return AE_ENOTFOUND;
  }
  return 0;
}

static int sqlite_store_expire(void *impl, long long now_ms) {
  sqlite_store *s = impl;
  if (!s) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_EXPIRE];
  int rc = sqlite3_bind_int64(st, 1, now_ms);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "expire: bind");
  }
  return store_step_done(s, st, "expire");
}

static const char *store_column_text(sqlite3_stmt *st, int column) {
  return (const char *)sqlite3_column_text(st, column);
}

static long long store_column_time(sqlite3_stmt *st, int column) {
  if (sqlite3_column_type(st, column) == SQLITE_NULL) return 0;
  return sqlite3_column_int64(st, column);
}

/* Reads the current row of a job SELECT (the columns of STMT_LOAD) into
 * job; its texts stay valid until the next step.  0, or AE_EIO with
 * errmsg set for a row the store cannot have written. */
static int store_row_job(sqlite_store *s, sqlite3_stmt *st, ae_store_job *job,
                         const char *what) {
  memset(job, 0, sizeof *job);
  if (ae_store_state_parse(store_column_text(st, 1), &job->state)) {
    store_set_error(s, "%s: job '%s' has an unknown state", what,
                    store_column_text(st, 0));
    return AE_EIO;
  }
  /* Integer columns first, then each text column once: the text
   * pointers stay valid until the next step, so during fn. */
  job->cancel_requested = sqlite3_column_int(st, 2);
  job->priority = sqlite3_column_int(st, 10);
  job->timeout_ms = sqlite3_column_int64(st, 11);
  job->created_ms = store_column_time(st, 12);
  job->started_ms = store_column_time(st, 13);
  job->finished_ms = store_column_time(st, 14);
  job->expires_ms = store_column_time(st, 15);
  job->seq = sqlite3_column_int64(st, 16);
  job->id = store_column_text(st, 0);
  job->request_json = store_column_text(st, 3);
  job->result_json = store_column_text(st, 4);
  job->error_json = store_column_text(st, 5);
  job->worker = store_column_text(st, 6);
  job->idempotency_key = store_column_text(st, 7);
  job->body_hash = store_column_text(st, 8);
  job->client_ref = store_column_text(st, 9);
  job->cached = sqlite3_column_int(st, 19);
  job->study = store_column_text(st, 17);
  job->canonical = store_column_text(st, 18);
  if (!job->id || !job->request_json) {
    store_set_error(s, "%s: a row lacks its id or request", what);
    return AE_EIO;
  }
  return 0;
}

/* Steps st (bound) and calls fn for each row; resets st.  0, fn's
 * non-zero return, or AE_EIO. */
static int store_each_row(sqlite_store *s, sqlite3_stmt *st,
                          int (*fn)(void *ud, const ae_store_job *j), void *ud,
                          const char *what, size_t *rows) {
  int status = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    ae_store_job job;
    if ((status = store_row_job(s, st, &job, what)) != 0) break;
    if (rows) (*rows)++;
    if ((status = fn(ud, &job)) != 0) break;
  }
  if (!status && rc != SQLITE_DONE && rc != SQLITE_ROW)
    status = store_fail(s, rc, what);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return status;
}

static int sqlite_store_load(void *impl,
                             int (*fn)(void *ud, const ae_store_job *j),
                             void *ud) {
  sqlite_store *s = impl;
  if (!s || !fn) return AE_EINVAL;
  return store_each_row(s, s->stmt[STMT_LOAD], fn, ud, "load", NULL);
}

/* One job by its id (STMT_GET) or its idempotency key (STMT_GET_IDEM). */
static int store_get_one(sqlite_store *s, int stmt, const char *what,
                         const char *value,
                         int (*fn)(void *ud, const ae_store_job *j), void *ud) {
  if (!s || !value || !fn) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[stmt];
  if (store_bind_text(st, 1, value) != SQLITE_OK) {
    int rc = sqlite3_errcode(s->db);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, what);
  }
  size_t rows = 0;
  int status = store_each_row(s, st, fn, ud, what, &rows);
  if (!status && !rows) {
    store_set_error(s, "%s: no job '%s'", what, value);
    return AE_ENOTFOUND;
  }
  return status;
}

static int sqlite_store_get(void *impl, const char *id,
                            int (*fn)(void *ud, const ae_store_job *j),
                            void *ud) {
  return store_get_one(impl, STMT_GET, "get", id, fn, ud);
}

static int sqlite_store_get_idem(void *impl, const char *key,
                                 int (*fn)(void *ud, const ae_store_job *j),
                                 void *ud) {
  return store_get_one(impl, STMT_GET_IDEM, "get by idempotency key", key, fn,
                       ud);
}

static int sqlite_store_list(void *impl, const ae_store_page *page,
                             int (*fn)(void *ud, const ae_store_job *j),
                             void *ud) {
  sqlite_store *s = impl;
  if (!s || !page || !fn) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_LIST];
  long long limit =
      page->limit > (size_t)INT_MAX ? INT_MAX : (long long)page->limit;
  if (sqlite3_bind_int64(st, 1, page->before < 0 ? -1 : page->before) !=
          SQLITE_OK ||
      store_bind_text(st, 2,
                      page->has_state ? ae_store_state_name(page->state)
                                      : NULL) != SQLITE_OK ||
      store_bind_text(st, 3, page->client_ref) != SQLITE_OK ||
      sqlite3_bind_int64(st, 4, limit) != SQLITE_OK ||
      store_bind_text(st, 5,
                      page->before_id && *page->before_id
                          ? page->before_id
                          : NULL) != SQLITE_OK) {
    int rc = sqlite3_errcode(s->db);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "list");
  }
  return store_each_row(s, st, fn, ud, "list", NULL);
}

/* Rolls back after a failure inside a transaction, keeping its message. */
static void store_rollback(sqlite_store *s) {
  if (sqlite3_get_autocommit(s->db)) return;
  char saved[sizeof s->errmsg];
  memcpy(saved, s->errmsg, sizeof saved);
  if (store_step_done(s, s->stmt[STMT_ROLLBACK], "rollback") == 0)
    memcpy(s->errmsg, saved, sizeof saved);
}

static int sqlite_store_mark_cached(void *impl, const char *id) {
  sqlite_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_MARK_CACHED];
  int rc = store_bind_text(st, 1, id);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "mark cached: bind");
  }
  int status = store_step_done(s, st, "mark cached");
  if (status) return status;
  if (sqlite3_changes(s->db) == 0) return store_no_change(s, id, "mark cached");
  return 0;
}

static int sqlite_store_study_insert(void *impl, const ae_store_study *t) {
  sqlite_store *s = impl;
  if (!s || !t || !t->id || !t->name || !t->request_json) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_STUDY_INSERT];
  int rc = store_bind_text(st, 1, t->id);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 2, t->name);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 3, t->request_json);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 4, t->idempotency_key);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 5, t->body_hash);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 6, t->client_ref);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 7, t->created_ms);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 8, t->seq);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "study insert: bind");
  }
  return store_step_done(s, st, "study insert");
}

static int sqlite_store_study_delete(void *impl, const char *id) {
  sqlite_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  int status = store_step_done(s, s->stmt[STMT_BEGIN], "begin");
  if (status) return status;
  int changed = 0;
  static const int steps[3] = {STMT_STUDY_DELETE_JOBS, STMT_STUDY_RELEASE_JOBS,
                               STMT_STUDY_DELETE};
  for (int k = 0; k < 3 && !status; k++) {
    sqlite3_stmt *st = s->stmt[steps[k]];
    int rc = store_bind_text(st, 1, id);
    if (rc != SQLITE_OK) {
      sqlite3_clear_bindings(st);
      status = store_fail(s, rc, "study delete: bind");
      break;
    }
    status = store_step_done(s, st, "study delete");
    if (!status && k == 2) changed = sqlite3_changes(s->db);
  }
  if (!status && !changed) {
    store_set_error(s, "study delete: no study '%s'", id);
    status = AE_ENOTFOUND;
  }
  if (!status) status = store_step_done(s, s->stmt[STMT_COMMIT], "commit");
  if (status) store_rollback(s);
  return status;
}

static int sqlite_store_study_load(void *impl,
                                   int (*fn)(void *ud, const ae_store_study *t),
                                   void *ud) {
  sqlite_store *s = impl;
  if (!s || !fn) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_STUDY_LOAD];
  int status = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    ae_store_study t;
    memset(&t, 0, sizeof t);
    t.created_ms = store_column_time(st, 6);
    t.seq = sqlite3_column_int64(st, 7);
    t.id = store_column_text(st, 0);
    t.name = store_column_text(st, 1);
    t.request_json = store_column_text(st, 2);
    t.idempotency_key = store_column_text(st, 3);
    t.body_hash = store_column_text(st, 4);
    t.client_ref = store_column_text(st, 5);
    if (!t.id || !t.name || !t.request_json) {
      store_set_error(s, "study load: a row lacks its id, name or request");
      status = AE_EIO;
      break;
    }
    if ((status = fn(ud, &t)) != 0) break;
  }
  if (!status && rc != SQLITE_DONE && rc != SQLITE_ROW)
    status = store_fail(s, rc, "study load");
  sqlite3_reset(st);
  return status;
}

static int sqlite_store_cache_put(void *impl, const char *key,
                                  const char *canonical,
                                  const char *result_json,
                                  long long created_ms) {
  sqlite_store *s = impl;
  if (!s || !key || !canonical || !result_json) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_CACHE_PUT];
  int rc = store_bind_text(st, 1, key);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 2, canonical);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 3, result_json);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 4, created_ms);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "cache put: bind");
  }
  return store_step_done(s, st, "cache put");
}

static int sqlite_store_cache_get(void *impl, const char *key,
                                  int (*fn)(void *ud, const char *result_json),
                                  void *ud) {
  sqlite_store *s = impl;
  if (!s || !key || !fn) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_CACHE_GET];
  int rc = store_bind_text(st, 1, key);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "cache get: bind");
  }
  int status;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const char *text = store_column_text(st, 0);
    status = text ? fn(ud, text) : AE_EIO;
  } else if (rc == SQLITE_DONE) {
    status = AE_ENOTFOUND;
  } else {
    status = store_fail(s, rc, "cache get");
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return status;
}

static int sqlite_store_model_put(void *impl, const ae_store_model *m,
                                  int *created) {
  sqlite_store *s = impl;
  if (!s || !m || !m->id || !m->bytes || m->len > INT_MAX || !created)
    return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_MODEL_PUT];
  int rc = store_bind_text(st, 1, m->id);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_blob(st, 2, m->bytes, (int)m->len, SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)m->len);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 4, m->description_json);
  if (rc == SQLITE_OK) rc = store_bind_text(st, 5, m->architecture_json);
  if (rc == SQLITE_OK) rc = store_bind_time(st, 6, m->created_ms);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "model put: bind");
  }
  int status = store_step_done(s, st, "model put");
  *created = !status && sqlite3_changes(s->db) > 0;
  return status;
}

static int sqlite_store_model_get(void *impl, const char *id,
                                  int (*fn)(void *ud, const ae_store_model *m),
                                  void *ud) {
  sqlite_store *s = impl;
  if (!s || !id || !fn) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_MODEL_GET];
  int rc = store_bind_text(st, 1, id);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "model get: bind");
  }
  int status;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    ae_store_model m = {.id = id,
                        .bytes = NULL,
                        .len = (size_t)sqlite3_column_int64(st, 0),
                        .description_json = store_column_text(st, 1),
                        .architecture_json = store_column_text(st, 2),
                        .created_ms = sqlite3_column_int64(st, 3)};
    status = m.description_json && m.architecture_json ? fn(ud, &m) : AE_EIO;
  } else if (rc == SQLITE_DONE) {
    status = AE_ENOTFOUND;
  } else {
    status = store_fail(s, rc, "model get");
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return status;
}

static int sqlite_store_model_delete(void *impl, const char *id) {
  sqlite_store *s = impl;
  if (!s || !id) return AE_EINVAL;
  sqlite3_stmt *st = s->stmt[STMT_MODEL_DELETE];
  int rc = store_bind_text(st, 1, id);
  if (rc != SQLITE_OK) {
    sqlite3_clear_bindings(st);
    return store_fail(s, rc, "model delete: bind");
  }
  int status = store_step_done(s, st, "model delete");
  if (!status && sqlite3_changes(s->db) == 0) {
    store_set_error(s, "model delete: no model '%s'", id);
    status = AE_ENOTFOUND;
  }
  return status;
}

/* The file is local and held open: nothing can be unreachable. */
static int sqlite_store_ping(void *impl) {
  return impl ? 0 : AE_EINVAL;
}

const ae_store_ops ae_store_sqlite_ops = {
    .name = "sqlite",
    .insert = sqlite_store_insert,
    .mark_running = sqlite_store_mark_running,
    .mark_cancel_requested = sqlite_store_mark_cancel_requested,
    .finish = sqlite_store_finish,
    .remove = sqlite_store_remove,
    .expire = sqlite_store_expire,
    .load = sqlite_store_load,
    .get = sqlite_store_get,
    .get_idem = sqlite_store_get_idem,
    .list = sqlite_store_list,
    .ping = sqlite_store_ping,
    .mark_cached = sqlite_store_mark_cached,
    .study_insert = sqlite_store_study_insert,
    .study_delete = sqlite_store_study_delete,
    .study_load = sqlite_store_study_load,
    .cache_put = sqlite_store_cache_put,
    .cache_get = sqlite_store_cache_get,
    .model_put = sqlite_store_model_put,
    .model_get = sqlite_store_model_get,
    .model_delete = sqlite_store_model_delete,
    .errmsg = sqlite_store_errmsg,
    .close = sqlite_store_close,
};
