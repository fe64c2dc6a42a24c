/* store.h: the durable job store behind archevald (issues 6 and 15).
 *
 * Every accepted job is written here before its 202 is sent; state
 * changes and results are written as they happen; at start the daemon
 * loads every job back, re-queues those that were queued or running, and
 * serves finished ones until they expire.
 *
 * Backends.  An ae_store is a handle with an operations table (the last
 * section of this file) that the functions below dispatch through:
 *   - SQLite in WAL mode (store_sqlite.c), the default for one machine:
 *     ae_store_open(DIR, ...) or ae_store_open_url(DIR, ...);
 *   - PostgreSQL (store_pg.c, built when configure finds libpq), for a
 *     store outside the daemon: ae_store_open_url("postgresql://...") or
 *     a libpq "key=value" conninfo string.
 * Both keep the same semantics (the same unit tests run on both); every
 * call is timed into a latency histogram (ae_store_latency_read).  A
 * PostgreSQL store that lost its server fails calls with AE_EIO and
 * reconnects on a later call (back-off from 100 ms doubling to 5 s;
 * ae_store_ping for readiness); a call is never retried, so a write whose
 * connection broke mid-way may or may not be stored (its message says
 * so).
 *
 * Thread: an ae_store is used only by the loop thread that opened it. */
#ifndef AE_STORE_H
#define AE_STORE_H

#include <stddef.h>
#include <string.h>

typedef enum {
  AE_JOB_QUEUED,
  AE_JOB_RUNNING,
  AE_JOB_SUCCEEDED,
  AE_JOB_FAILED,
  AE_JOB_CANCELLED
} ae_job_state;

/* One job as stored.  Strings are borrowed by the store's writers and
 * owned by the store (valid during the callback) in ae_store_load. */
typedef struct {
  const char *id; /* "j_..." */
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
  long long seq;         /* submission order, for stable listing */
  const char *study;     /* the study it belongs to ("s_..."), NULL when none */
  const char *canonical; /* the architecture's canonical key, or NULL */
  int cached;            /* 1: the result came from the result cache */
  /* The dedup of identical jobs in flight across a fleet (PostgreSQL,
   * written by ae_store_insert only; the other readers leave them 0).
   * cache_key: the job's cache key (cache.h), or NULL.  follow, for a
   * queued job with a cache_key: 0 it is claimable; 1 it waits for an
   * identical earlier job of the same insert; 2 also for the oldest job
   * with its key queued or running in the store (whoever accepted it).
   * A job that waits is queued but not claimable and not counted
   * (ae_store_count_queued) until its leader ends: succeeded, it ends
   * succeeded with the leader's result, cached, expiring ttl_ms after
   * (0: at once, as --job-ttl-secs=0 says; -1: never, a study's member);
   * failed, cancelled or removed, the first job waiting for it becomes
   * claimable and the others wait for that one. */
  const char *cache_key;
  int follow;
  long long ttl_ms;
} ae_store_job;

/* One study (api.md "Studies") as stored; strings as for ae_store_job.
 * Its members are the jobs whose study is its id. */
typedef struct {
  const char *id; /* "s_..." */
  const char *name;
  const char *request_json; /* the normalised study request */
  const char *idempotency_key;
  const char *body_hash;
  const char *client_ref;
  long long created_ms;
  long long seq;
} ae_store_study;

typedef enum {
  AE_STORE_SYNC_FULL,  /* fsync every commit (default): nothing acked is lost
                          even on power loss */
  AE_STORE_SYNC_NORMAL /* WAL synchronous=NORMAL: survives process crashes,
                          may lose the last commits on power loss */
} ae_store_sync;

typedef struct ae_store ae_store;

/* Opens (creating) DIR/jobs.sqlite3, creating DIR (mode 0700) as needed.
 * 0 or AE_EIO with err filled.  The file is held in exclusive mode: a
 * second process (another daemon on the same dir) fails to open it.  Jobs
 * that were running when the previous process died are put back to queued
 * (worker and started_ms cleared) before ae_store_load sees them.  Always
 * SQLite, whatever DIR looks like (the behaviour before issue 15). */
int ae_store_open(const char *dir, ae_store_sync sync, ae_store **out,
                  char *err, size_t errlen);

typedef enum {
  AE_STORE_BACKEND_SQLITE,
  AE_STORE_BACKEND_POSTGRESQL
} ae_store_backend_kind;

/* Opens the PostgreSQL database TARGET as one replica of a fleet (issue
 * 15): OWNER (1 to 127 bytes) names this process in the shared queue
 * (leases, the guarded end of a job).  Unlike ae_store_open_url, several
 * processes share the database (no lock) and only the jobs left running
 * under OWNER are re-queued at open (this replica's previous process, when
 * the id is kept across restarts): another dead replica's jobs go back to
 * the queue when their leases expire (ae_store_requeue_expired).
 * AE_EUNSUPPORTED for a target that is not PostgreSQL or a build without libpq;
 * AE_EINVAL for a bad OWNER; AE_EIO. */
int ae_store_open_shared(const char *target, const char *owner, ae_store **out,
                         char *err, size_t errlen);

/* Which backend ae_store_open_url would choose for TARGET: PostgreSQL for
 * a "postgresql://" or "postgres://" URL or a libpq conninfo string (it
 * begins with "keyword=", e.g. "host=/run/pg dbname=archeval"), SQLite for
 * anything else, a directory.  A directory whose name begins like
 * "word=" must be written "./word=...". */
ae_store_backend_kind ae_store_backend_of(const char *target);

/* Opens the store TARGET names (see ae_store_backend_of): a directory
 * exactly as ae_store_open (SYNC applies to SQLite only), or a PostgreSQL
 * database.  For PostgreSQL the store connects once (one connection per
 * handle: a daemon holds exactly one), creates or migrates its schema,
 * takes the database for this process (a second daemon on the same
 * database is refused, as with SQLite, until the fleet's leases exist)
 * and re-queues jobs left running.  0, AE_EIO with err filled (the
 * server's message, never the password), or AE_EUNSUPPORTED when TARGET
 * is PostgreSQL and this build has no libpq ("built without
 * PostgreSQL"). */
int ae_store_open_url(const char *target, ae_store_sync sync, ae_store **out,
                      char *err, size_t errlen);

/* Where the store's URL comes from, in this order: FLAG (--store URL),
 * the first line of the file FILE (--store-file PATH, e.g. a Kubernetes
 * Secret mounted as a file; trailing blanks and newline removed), then
 * ENV (the value of ARCHEVAL_STORE_URL, passed by the caller).  NULL or ""
 * means not given.  Both FLAG and FILE given is an error (which one is
 * meant?).  Writes the URL to out (empty when none was given: the caller
 * falls back to its state dir) and returns 0, or returns AE_EINVAL /
 * AE_EIO with err filled (an unreadable or empty file, a URL longer than
 * outlen).  The URL may hold a password: log it through
 * ae_store_redact_url only. */
int ae_store_resolve_url(const char *flag, const char *env, const char *file,
                         char *out, size_t outlen, char *err, size_t errlen);

/* Copies TARGET to out with any password replaced by "***" (the userinfo
 * password of a URL, a password= parameter of a URL or a conninfo), for
 * logs.  Always NUL-terminates (truncating when outlen is short). */
void ae_store_redact_url(const char *target, char *out, size_t outlen);

/* Inserts jobs in one transaction (a single job, or a whole batch: all or
 * nothing).  Returns once committed.  AE_EINVAL when an id already exists
 * or a text cannot be stored (PostgreSQL: not UTF-8), nothing inserted;
 * AE_EIO on a storage error. */
int ae_store_insert(ae_store *s, const ae_store_job *jobs, size_t n);

/* queued -> running (running -> running is allowed, for a job started
 * again).  The writers below return AE_ENOTFOUND for an unknown id and
 * AE_EINVAL when the job's state forbids the change (finishing a job that
 * is already terminal: a result is written exactly once). */
int ae_store_mark_running(ae_store *s, const char *id, const char *worker,
                          long long started_ms);
/* cancel_requested = 1. */
int ae_store_mark_cancel_requested(ae_store *s, const char *id);
/* -> succeeded / failed / cancelled with the result or error.  A shared
 * store (ae_store_open_shared): a job whose study was deleted while it ran
 * (ae_store_study_delete left it) is removed instead (0), in one
 * transaction ordered against that delete by the study's row lock. */
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

/* ---- reads of single jobs and pages (issue 14: finished jobs past
 * --max-finished-jobs are served from here; issue 15: a replica serves the
 * jobs another one runs) ---- */

/* Reads the job ID: fn is called once with its row (strings valid during
 * the call) and its return value returned.  AE_ENOTFOUND when there is no
 * such job; AE_EIO. */
int ae_store_get(ae_store *s, const char *id,
                 int (*fn)(void *ud, const ae_store_job *j), void *ud);

/* Reads the job holding the idempotency key KEY (a batch's job i holds
 * "KEY\nI"), as ae_store_get. */
int ae_store_get_idem(ae_store *s, const char *key,
                      int (*fn)(void *ud, const ae_store_job *j), void *ud);

/* A page of a listing: the jobs before (before, before_id) in the order
 * (seq, id), id compared byte by byte: seq < before, or seq == before and
 * id < before_id when before_id is neither NULL nor "" (every job when
 * before < 0); newest first (descending seq, then descending id), at most
 * limit of them, only those in state when has_state is set and only those
 * whose client_ref is client_ref when it is not NULL. */
typedef struct {
  long long before;
  const char *before_id;
  int has_state;
  ae_job_state state;
  const char *client_ref;
  size_t limit;
} ae_store_page;

/* Calls fn for each job of the page, in order; fn returns 0 to go on
 * (anything else stops and is returned).  0 (an empty page included) or
 * AE_EIO. */
int ae_store_list(ae_store *s, const ae_store_page *page,
                  int (*fn)(void *ud, const ae_store_job *j), void *ud);

/* ---- the shared queue of a fleet (issue 15): PostgreSQL opened with
 * ae_store_open_shared only; otherwise these answer AE_EUNSUPPORTED ----
 *
 * A job's life in the fleet: inserted queued by the replica that accepted
 * it; claimed by one replica (state running, owner, a lease until
 * now + lease_ms, attempts + 1); its owner renews the lease of every job
 * it runs (heartbeat) and reads their cancel flags; its owner writes its
 * end (ae_store_finish: a running job's end is written only by its owner,
 * AE_EINVAL for anyone else, so a result is written exactly once).  A
 * replica that dies stops renewing; any replica then re-queues the jobs
 * whose lease expired, or fails those claimed max_attempts times. */

/* Claims the next queued job by priority (lower first) and age (seq),
 * skipping the rows other replicas are claiming at the same moment: fn
 * gets the job as stored (now running, owned here) and how many times it
 * was claimed, attempts (1 the first time).  AE_ENOTFOUND when no job is
 * queued; fn's non-zero return; AE_EIO. */
int ae_store_claim(ae_store *s, const char *worker, long long now_ms,
                   long long lease_ms,
                   int (*fn)(void *ud, const ae_store_job *j, int attempts),
                   void *ud);
/* Renews until now_ms + lease_ms the lease of every job this replica runs
 * and calls fn (when not NULL) with each one's id and cancel flag (a
 * cancel asked on another replica).  0, fn's non-zero return, AE_EIO. */
int ae_store_heartbeat(ae_store *s, long long now_ms, long long lease_ms,
                       int (*fn)(void *ud, const char *id,
                                 int cancel_requested),
                       void *ud);
/* Gives a job this replica claimed back to the queue (a drain: it was
 * not run to its end here), without counting the claim as an attempt.
 * AE_EINVAL when the job is not running under this replica's lease. */
int ae_store_release(ae_store *s, const char *id);
/* Every running job whose lease expired before now_ms goes back to the
 * queue (owner, worker and start cleared), or is removed when it belongs
 * to a study deleted meanwhile (not counted), or, when it was claimed
 * max_attempts times already, fails with error_json (every "%ATTEMPTS%"
 * replaced by the count of claims, every "%ID%" by the job's id) and
 * expires at failed_expires_ms (0: never,
 * a study's member always keeps no expiry).  One transaction; the counts
 * to *requeued and *failed (either may be NULL).  0 or AE_EIO. */
int ae_store_requeue_expired(ae_store *s, long long now_ms, int max_attempts,
                             const char *error_json,
                             long long failed_expires_ms, size_t *requeued,
                             size_t *failed);

/* How many jobs wait queued in the shared store (every replica's), to
 * *out, those waiting for an identical job left out (ae_store_job's
 * follow): one count over the claim's index.  0, AE_EIO. */
int ae_store_count_queued(ae_store *s, size_t *out);

/* Notifications: a second connection LISTENs to the changes of every
 * job's state in the store, whoever made them (a trigger notifies "ID
 * STATE", e.g. "j_... succeeded").  ae_store_listen opens (or opens again)
 * that connection and gives its socket, to watch for reading;
 * ae_store_notifications then calls fn with each payload that arrived (0,
 * fn's non-zero return, or AE_EIO when the connection broke: listen
 * again, the socket changed).  AE_EUNSUPPORTED without a shared store. */
int ae_store_listen(ae_store *s, int *fd);
int ae_store_notifications(ae_store *s,
                           int (*fn)(void *ud, const char *payload), void *ud);

/* ---- studies and the result cache (issue 13) ---- */

/* Marks a job's result as taken from the cache (before its finish). */
int ae_store_mark_cached(ae_store *s, const char *id);
/* Inserts a study.  AE_EINVAL when its id or its idempotency key is
 * already stored (a unique violation, nothing else); AE_EIO. */
int ae_store_study_insert(ae_store *s, const ae_store_study *study);
/* Removes a study and every finished job of it, in one transaction; its
 * jobs still queued or running stay, without a study (the caller cancelled
 * them first).  A shared store (a fleet): every job of it but the running
 * ones goes, and the running ones keep the study's id; their end
 * (ae_store_finish), or the expiry of their lease, removes them.
 * AE_ENOTFOUND when no such study. */
int ae_store_study_delete(ae_store *s, const char *id);
/* Calls fn for every study in creation order, (seq, id) (before the jobs
 * load). */
int ae_store_study_load(ae_store *s,
                        int (*fn)(void *ud, const ae_store_study *st),
                        void *ud);
/* Reads one study (--fleet: any replica may have created it) by its id,
 * or, when id is NULL, by its idempotency key: fn is called once with the
 * row (valid during the call) and its return value returned.
 * AE_ENOTFOUND when absent; AE_EIO; AE_EUNSUPPORTED without a backend
 * that reads single studies (SQLite: a daemon alone holds them all). */
int ae_store_study_get(ae_store *s, const char *id, const char *idem_key,
                       int (*fn)(void *ud, const ae_store_study *st), void *ud);
/* Calls fn for every job of the study ID in the order they were added
 * (seq), whichever replica accepted or ran them; fn returns 0 to go on.
 * 0 (none included), fn's non-zero return, AE_EIO, AE_EUNSUPPORTED as
 * above. */
int ae_store_study_members(ae_store *s, const char *id,
                           int (*fn)(void *ud, const ae_store_job *j),
                           void *ud);
/* Stores a result under a cache key (the first one stored wins: a key
 * names one computation, so a second result is the same).  0 or AE_EIO. */
int ae_store_cache_put(ae_store *s, const char *key, const char *canonical,
                       const char *result_json, long long created_ms);
/* Looks a key up: 0 with fn called once with the stored result (valid
 * during the call), AE_ENOTFOUND when absent, AE_EIO. */
int ae_store_cache_get(ae_store *s, const char *key,
                       int (*fn)(void *ud, const char *result_json), void *ud);

/* ---- uploaded ONNX models (api.md "Models") ---- */

/* One model as stored; strings and bytes as for ae_store_job. */
typedef struct {
  const char *id;                /* "sha256:<64 hex>" of the bytes */
  const unsigned char *bytes;    /* the ONNX file; NULL in model_get */
  size_t len;                    /* its size (model_get too) */
  const char *description_json;  /* the answer of POST /v1/models */
  const char *architecture_json; /* the "graph" architecture it imports to */
  long long created_ms;
} ae_store_model;

/* Stores a model unless its id is stored already (the same bytes: the
 * first one wins).  *created is 1 when this call inserted it.  0, or
 * AE_EIO. */
int ae_store_model_put(ae_store *s, const ae_store_model *m, int *created);
/* Looks a model up: 0 with fn called once with the row, bytes left out
 * (valid during the call), AE_ENOTFOUND when absent, AE_EIO. */
int ae_store_model_get(ae_store *s, const char *id,
                       int (*fn)(void *ud, const ae_store_model *m), void *ud);
/* Removes a model.  AE_ENOTFOUND when absent, AE_EIO. */
int ae_store_model_delete(ae_store *s, const char *id);

void ae_store_close(ae_store *s);

/* The message of the last failed call on s, for the log; static storage
 * in s, valid until the next call. */
const char *ae_store_errmsg(const ae_store *s);

/* 0 when the store can be written now, else AE_EIO with errmsg set: for
 * readiness.  A PostgreSQL store that lost its server tries to reconnect
 * here (subject to its back-off) and runs a trivial query; SQLite always
 * answers 0. */
int ae_store_ping(ae_store *s);

/* "sqlite" or "postgresql". */
const char *ae_store_backend_name(const ae_store *s);

/* ---- latency, for /metrics ---- */

/* The kinds of store calls, each with its own histogram. */
typedef enum {
  AE_STORE_OP_INSERT, /* ae_store_insert (one transaction) */
  AE_STORE_OP_UPDATE, /* mark running / cancel requested, finish, delete */
  AE_STORE_OP_EXPIRE, /* ae_store_expire */
  AE_STORE_OP_LOAD,   /* ae_store_load, without the time spent in fn */
  AE_STORE_OP_STUDY,  /* study insert / delete / load */
  AE_STORE_OP_CACHE,  /* cache put / get */
  AE_STORE_OP_READ,   /* ae_store_get, ae_store_list (without fn's time) */
  AE_STORE_OP_LEASE,  /* claim, heartbeat, re-queue of expired leases */
  AE_STORE_OP_MODEL,  /* model put / get / delete */
  AE_STORE_OP_COUNT
} ae_store_op;

/* Upper bounds of the histogram's buckets, in seconds (Prometheus "le"
 * values); the last bucket, +Inf, has no bound here. */
#define AE_STORE_LATENCY_BUCKETS 12
extern const double ae_store_latency_bounds[AE_STORE_LATENCY_BUCKETS];

/* One histogram, cumulative since open.  count[i] is the number of calls
 * that took at most ae_store_latency_bounds[i] seconds and more than the
 * bound before it (not cumulative: sum them for a Prometheus "le"
 * series); count[AE_STORE_LATENCY_BUCKETS] holds the slower ones. */
typedef struct {
  unsigned long long count[AE_STORE_LATENCY_BUCKETS + 1];
  unsigned long long calls;  /* every call, failed ones included */
  unsigned long long errors; /* calls that returned an error */
  double sum_s;              /* total time, seconds */
} ae_store_latency;

/* Copies the histogram of OP to out.  0, or AE_EINVAL for a bad op.  Call
 * from the thread that owns s (the loop thread renders /metrics). */
int ae_store_latency_read(const ae_store *s, ae_store_op op,
                          ae_store_latency *out);

/* ---- for the backends (store.c calls them; the daemon does not) ----
 *
 * A backend is a table of operations over its own handle (void *impl) and
 * an open function.  store.c owns the public ae_store: it chooses the
 * backend, times every call and forwards it; each operation has the
 * semantics documented above for the public function of the same name
 * (remove is ae_store_delete).  Backends never call store.c (helpers they
 * share are inline here), so that no two files call each other. */
typedef struct {
  const char *name; /* "sqlite", "postgresql" */
  int (*insert)(void *impl, const ae_store_job *jobs, size_t n);
  int (*mark_running)(void *impl, const char *id, const char *worker,
                      long long started_ms);
  int (*mark_cancel_requested)(void *impl, const char *id);
  int (*finish)(void *impl, const char *id, ae_job_state state,
                const char *result_json, const char *error_json,
                long long finished_ms, long long expires_ms);
  int (*remove)(void *impl, const char *id);
  int (*expire)(void *impl, long long now_ms);
  int (*load)(void *impl, int (*fn)(void *ud, const ae_store_job *j), void *ud);
  int (*get)(void *impl, const char *id,
             int (*fn)(void *ud, const ae_store_job *j), void *ud);
  int (*get_idem)(void *impl, const char *key,
                  int (*fn)(void *ud, const ae_store_job *j), void *ud);
  int (*list)(void *impl, const ae_store_page *page,
              int (*fn)(void *ud, const ae_store_job *j), void *ud);
  /* The shared queue: NULL in a backend without it. */
  int (*claim)(void *impl, const char *worker, long long now_ms,
               long long lease_ms,
               int (*fn)(void *ud, const ae_store_job *j, int attempts),
               void *ud);
  int (*heartbeat)(void *impl, long long now_ms, long long lease_ms,
                   int (*fn)(void *ud, const char *id, int cancel_requested),
                   void *ud);
  int (*release)(void *impl, const char *id);
  int (*listen)(void *impl, int *fd);
  int (*notifications)(void *impl, int (*fn)(void *ud, const char *payload),
                       void *ud);
  int (*requeue_expired)(void *impl, long long now_ms, int max_attempts,
                         const char *error_json, long long failed_expires_ms,
                         size_t *requeued, size_t *failed);
  int (*count_queued)(void *impl, size_t *out);
  int (*ping)(void *impl);
  int (*mark_cached)(void *impl, const char *id);
  int (*study_insert)(void *impl, const ae_store_study *study);
  int (*study_delete)(void *impl, const char *id);
  int (*study_load)(void *impl, int (*fn)(void *ud, const ae_store_study *st),
                    void *ud);
  /* Single studies and their members (--fleet): NULL where absent. */
  int (*study_get)(void *impl, const char *id, const char *idem_key,
                   int (*fn)(void *ud, const ae_store_study *st), void *ud);
  int (*study_members)(void *impl, const char *id,
                       int (*fn)(void *ud, const ae_store_job *j), void *ud);
  int (*cache_put)(void *impl, const char *key, const char *canonical,
                   const char *result_json, long long created_ms);
  int (*cache_get)(void *impl, const char *key,
                   int (*fn)(void *ud, const char *result_json), void *ud);
  int (*model_put)(void *impl, const ae_store_model *m, int *created);
  int (*model_get)(void *impl, const char *id,
                   int (*fn)(void *ud, const ae_store_model *m), void *ud);
  int (*model_delete)(void *impl, const char *id);
  const char *(*errmsg)(const void *impl);
  void (*close)(void *impl);
} ae_store_ops;

/* store_sqlite.c: opens DIR/jobs.sqlite3 (ae_store_open). */
extern const ae_store_ops ae_store_sqlite_ops;
int ae_store_sqlite_open(const char *dir, ae_store_sync sync, void **impl,
                         char *err, size_t errlen);

/* store_pg.c, built when configure found libpq (HAVE_LIBPQ): connects to
 * the database CONNINFO names (a URL or a key=value string) and prepares
 * it: alone (OWNER NULL, ae_store_open_url) or as the replica OWNER of a
 * fleet (ae_store_open_shared).  0, AE_EINVAL (a bad OWNER) or AE_EIO
 * with err filled. */
extern const ae_store_ops ae_store_pg_ops;
int ae_store_pg_open(const char *conninfo, const char *owner, void **impl,
                     char *err, size_t errlen);

/* A job state's name in both schemas ("queued", ...), NULL if invalid. */
static inline const char *ae_store_state_name(ae_job_state state) {
  static const char *const names[] = {"queued", "running", "succeeded",
                                      "failed", "cancelled"};
  if ((int)state < 0 || (int)state > (int)AE_JOB_CANCELLED) return NULL;
  return names[state];
}

/* The state NAME names: 0, or -1 for an unknown name. */
static inline int ae_store_state_parse(const char *name, ae_job_state *out) {
  for (int i = 0; name && i <= (int)AE_JOB_CANCELLED; i++) {
    if (strcmp(name, ae_store_state_name((ae_job_state)i)) == 0) {
      *out = (ae_job_state)i;
      return 0;
    }
  }
  return -1;
}

#endif
