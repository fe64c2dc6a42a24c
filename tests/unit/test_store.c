/* test_store.c: unit tests of the job store (server/store.h), on both
 * backends.
 *
 * "test_store" (or "test_store sqlite") runs every test on SQLite, each in
 * its own temporary state dir, plus the backend-neutral ones (choice of
 * backend, URL resolution, redaction).  "test_store postgresql" runs the
 * same store tests on PostgreSQL, each in a database of its own created
 * in the server that AE_TEST_PG_DSN names (tests/pg_cluster.sh starts a
 * throwaway one: see tests/unit/test_store_pg.sh), plus the schema
 * checks and a server stopped and started again mid-test (the commands
 * AE_TEST_PG_STOP / AE_TEST_PG_START); it exits 77 (skip) without a DSN
 * or in a build without libpq.  The crash test forks a writer, kills it
 * with SIGKILL in the middle of a loop of inserts and checks that every
 * insert it acknowledged (through a pipe, after ae_store_insert returned
 * 0) is there when the store is reopened.
 * Thread: single-threaded (Check forks each test). */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#ifdef HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#include "api/status.h"
#include "server/store.h"

/* A copy of one loaded job, with owned strings. */
typedef struct {
  char *id, *request_json, *result_json, *error_json, *worker;
  char *idempotency_key, *body_hash, *client_ref;
  ae_store_job job; /* the scalars; string fields point at the copies */
} loaded_job;

typedef struct {
  loaded_job *jobs;
  size_t count, capacity;
} loaded_set;

static char *dup_or_null(const char *text) {
  if (!text) return NULL;
  char *copy = strdup(text);
  ck_assert_ptr_nonnull(copy);
  return copy;
}

static int collect_job(void *ud, const ae_store_job *j) {
  loaded_set *set = ud;
  if (set->count == set->capacity) {
    size_t capacity = set->capacity ? set->capacity * 2 : 16;
    loaded_job *grown = realloc(set->jobs, capacity * sizeof *grown);
    ck_assert_ptr_nonnull(grown);
    set->jobs = grown;
    set->capacity = capacity;
  }
  loaded_job *l = &set->jobs[set->count++];
  l->job = *j;
  l->job.id = l->id = dup_or_null(j->id);
  l->job.request_json = l->request_json = dup_or_null(j->request_json);
  l->job.result_json = l->result_json = dup_or_null(j->result_json);
  l->job.error_json = l->error_json = dup_or_null(j->error_json);
  l->job.worker = l->worker = dup_or_null(j->worker);
  l->job.idempotency_key = l->idempotency_key = dup_or_null(j->idempotency_key);
  l->job.body_hash = l->body_hash = dup_or_null(j->body_hash);
  l->job.client_ref = l->client_ref = dup_or_null(j->client_ref);
  return 0;
}

static void loaded_set_free(loaded_set *set) {
  for (size_t i = 0; i < set->count; i++) {
    loaded_job *l = &set->jobs[i];
    free(l->id);
    free(l->request_json);
    free(l->result_json);
    free(l->error_json);
    free(l->worker);
    free(l->idempotency_key);
    free(l->body_hash);
    free(l->client_ref);
  }
  free(set->jobs);
  memset(set, 0, sizeof *set);
}

static void load_all(ae_store *s, loaded_set *set) {
  memset(set, 0, sizeof *set);
  ck_assert_int_eq(ae_store_load(s, collect_job, set), 0);
}

static const ae_store_job *find_job(const loaded_set *set, const char *id) {
  for (size_t i = 0; i < set->count; i++)
    if (strcmp(set->jobs[i].id, id) == 0) return &set->jobs[i].job;
  return NULL;
}

static void assert_same_string(const char *got, const char *want) {
  if (!want)
    ck_assert_ptr_null(got);
  else
    ck_assert_str_eq(got, want);
}

static void assert_same_job(const ae_store_job *got, const ae_store_job *want) {
  ck_assert_ptr_nonnull(got);
  ck_assert_str_eq(got->id, want->id);
  ck_assert_int_eq(got->state, want->state);
  ck_assert_int_eq(got->cancel_requested, want->cancel_requested);
  assert_same_string(got->request_json, want->request_json);
  assert_same_string(got->result_json, want->result_json);
  assert_same_string(got->error_json, want->error_json);
  assert_same_string(got->worker, want->worker);
  assert_same_string(got->idempotency_key, want->idempotency_key);
  assert_same_string(got->body_hash, want->body_hash);
  assert_same_string(got->client_ref, want->client_ref);
  ck_assert_int_eq(got->priority, want->priority);
  ck_assert_int_eq(got->timeout_ms, want->timeout_ms);
  ck_assert_int_eq(got->created_ms, want->created_ms);
  ck_assert_int_eq(got->started_ms, want->started_ms);
  ck_assert_int_eq(got->finished_ms, want->finished_ms);
  ck_assert_int_eq(got->expires_ms, want->expires_ms);
  ck_assert_int_eq(got->seq, want->seq);
}

/* A fresh state dir under TMPDIR; its path lives in state_dir. */
static char state_dir[256];

static void make_state_dir(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(state_dir, sizeof state_dir, "%s/ae_store_XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(state_dir));
}

/* Removes a dir whose entries are plain files (one level down at most). */
static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[512];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
      remove_tree(path);
    else
      unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

/* The backend of this run, set by main before the tests fork. */
static ae_store_backend_kind test_backend = AE_STORE_BACKEND_SQLITE;

#ifdef HAVE_LIBPQ
static void ignore_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

/* Runs SQL on the server AE_TEST_PG_DSN names, as the test's own client
 * (not through the store). */
static void pg_admin(const char *dbname, const char *sql) {
  const char *dsn = getenv("AE_TEST_PG_DSN");
  ck_assert_ptr_nonnull(dsn);
  char conninfo[1024];
  snprintf(conninfo, sizeof conninfo, "%s dbname=%s", dsn, dbname);
  PGconn *conn = PQconnectdb(conninfo);
  ck_assert_ptr_nonnull(conn);
  ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "connect: %s",
                PQerrorMessage(conn));
  PQsetNoticeProcessor(conn, ignore_notice, NULL);
  PGresult *res = PQexec(conn, sql);
  ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK ||
                    PQresultStatus(res) == PGRES_TUPLES_OK,
                "%s: %s", sql, PQerrorMessage(conn));
  PQclear(res);
  PQfinish(conn);
}
#endif

/* A fresh, empty store location for the backend of this run, named by
 * NAME: a dir under state_dir, or a new database.  Writes the target
 * (what ae_store_open_url takes) to out. */
static void make_target_named(const char *name, char *out, size_t outlen) {
  if (test_backend == AE_STORE_BACKEND_SQLITE) {
    if (!state_dir[0]) make_state_dir();
    snprintf(out, outlen, "%s/%s", state_dir, name);
    return;
  }
#ifdef HAVE_LIBPQ
  char sql[256];
  snprintf(sql, sizeof sql, "CREATE DATABASE ae_t_%ld_%s", (long)getpid(),
           name);
  pg_admin("archeval", sql);
  snprintf(out, outlen, "%s dbname=ae_t_%ld_%s", getenv("AE_TEST_PG_DSN"),
           (long)getpid(), name);
#else
  ck_abort_msg("built without libpq");
#endif
}

static void drop_target_named(const char *name) {
#ifdef HAVE_LIBPQ
  if (test_backend == AE_STORE_BACKEND_SQLITE) return;
  char sql[256];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS ae_t_%ld_%s WITH (FORCE)",
           (long)getpid(), name);
  pg_admin("archeval", sql);
#else
  (void)name;
#endif
}

/* The test's main store location. */
static char target[1024];

static void make_target(void) {
  make_target_named("main", target, sizeof target);
}

/* Removes every location the test made. */
static void remove_targets(void) {
  drop_target_named("main");
  for (int round = 0; round < 3; round++) {
    char name[16];
    snprintf(name, sizeof name, "r%d", round);
    drop_target_named(name);
  }
  if (state_dir[0]) remove_tree(state_dir);
  state_dir[0] = '\0';
}

static ae_store *open_store(const char *where, ae_store_sync sync) {
  ae_store *s = NULL;
  char err[512] = "";
  int status = ae_store_open_url(where, sync, &s, err, sizeof err);
  ck_assert_msg(status == 0, "open %s: %d %s", where, status, err);
  ck_assert_ptr_nonnull(s);
  ck_assert_str_eq(ae_store_backend_name(s),
                   test_backend == AE_STORE_BACKEND_SQLITE ? "sqlite"
                                                           : "postgresql");
  return s;
}

/* A job with every field set. */
static ae_store_job full_job(const char *id, long long seq) {
  ae_store_job j;
  memset(&j, 0, sizeof j);
  j.id = id;
  j.state = AE_JOB_SUCCEEDED;
  j.cancel_requested = 1;
  j.request_json = "{\"seed\":7,\"metrics\":[\"topology\"]}";
  j.result_json = "{\"topology\":{\"paths\":12}}";
  j.error_json = "{\"code\":\"none\"}";
  j.worker = "host:1";
  j.idempotency_key = "key-\xc3\xa9-1";
  j.body_hash = "9f86d081884c7d659a2feaa0c55ad015";
  j.client_ref = "ctrl-42/gen7";
  j.priority = -3;
  j.timeout_ms = 600000;
  j.created_ms = 1790000000123LL;
  j.started_ms = 1790000000456LL;
  j.finished_ms = 1790000000789LL;
  j.expires_ms = 1790003600789LL;
  j.seq = seq;
  return j;
}

/* A just-submitted job: NULLs and null times. */
static ae_store_job queued_job(const char *id, long long seq) {
  ae_store_job j;
  memset(&j, 0, sizeof j);
  j.id = id;
  j.state = AE_JOB_QUEUED;
  j.request_json = "{}";
  j.timeout_ms = 1000;
  j.created_ms = 1790000000000LL + seq;
  j.seq = seq;
  return j;
}

START_TEST(test_round_trip_every_field) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job jobs[2] = {full_job("j_full", 1), queued_job("j_nulls", 2)};
  ck_assert_int_eq(ae_store_insert(s, &jobs[0], 1), 0);
  ck_assert_int_eq(ae_store_insert(s, &jobs[1], 1), 0);
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 2);
  /* Submission order is seq order. */
  ck_assert_str_eq(set.jobs[0].id, "j_full");
  ck_assert_str_eq(set.jobs[1].id, "j_nulls");
  assert_same_job(&set.jobs[0].job, &jobs[0]);
  assert_same_job(&set.jobs[1].job, &jobs[1]);
  ck_assert_ptr_null(set.jobs[1].job.worker);
  ck_assert_int_eq(set.jobs[1].job.started_ms, 0);
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_load_follows_seq_not_insert_order) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_NORMAL);
  ae_store_job late = queued_job("j_b", 20);
  ae_store_job early = queued_job("j_a", 10);
  ck_assert_int_eq(ae_store_insert(s, &late, 1), 0);
  ck_assert_int_eq(ae_store_insert(s, &early, 1), 0);
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 2);
  ck_assert_str_eq(set.jobs[0].id, "j_a");
  ck_assert_str_eq(set.jobs[1].id, "j_b");
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_batch_is_all_or_nothing) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job batch[4] = {queued_job("j_1", 1), queued_job("j_2", 2),
                           queued_job("j_3", 3), queued_job("j_2", 4)};
  ck_assert_int_eq(ae_store_insert(s, batch, 4), AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(ae_store_errmsg(s), "j_2"));
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 0);
  loaded_set_free(&set);

  /* The same batch without the duplicate goes in whole. */
  ck_assert_int_eq(ae_store_insert(s, batch, 3), 0);
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 3);
  loaded_set_free(&set);

  /* A batch that collides with a stored job leaves the store as it was. */
  ae_store_job second[2] = {queued_job("j_4", 5), queued_job("j_1", 6)};
  ck_assert_int_eq(ae_store_insert(s, second, 2), AE_EINVAL);
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 3);
  ck_assert_ptr_null(find_job(&set, "j_4"));
  loaded_set_free(&set);

  /* A job without a request is refused, and the store still works. */
  ae_store_job bad = queued_job("j_5", 7);
  bad.request_json = NULL;
  ck_assert_int_eq(ae_store_insert(s, &bad, 1), AE_EINVAL);
  ck_assert_int_eq(ae_store_insert(s, NULL, 0), 0);
  ae_store_job good = queued_job("j_5", 7);
  ck_assert_int_eq(ae_store_insert(s, &good, 1), 0);
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 4);
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_transitions) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job jobs[3] = {queued_job("j_run", 1), queued_job("j_fail", 2),
                          queued_job("j_cancel", 3)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 3), 0);

  ck_assert_int_eq(ae_store_mark_running(s, "j_run", "host:0", 111), 0);
  ck_assert_int_eq(ae_store_mark_cancel_requested(s, "j_run"), 0);
  ck_assert_int_eq(ae_store_finish(s, "j_run", AE_JOB_SUCCEEDED, "{\"ok\":1}",
                                   NULL, 222, 3822),
                   0);
  /* A terminal job is finished once only, and never runs again. */
  ck_assert_int_eq(ae_store_finish(s, "j_run", AE_JOB_FAILED, NULL,
                                   "{\"code\":\"x\"}", 333, 3933),
                   AE_EINVAL);
  ck_assert_int_eq(ae_store_mark_running(s, "j_run", "host:1", 444), AE_EINVAL);
  /* Not a terminal state. */
  ck_assert_int_eq(
      ae_store_finish(s, "j_fail", AE_JOB_RUNNING, NULL, NULL, 1, 2),
      AE_EINVAL);
  ck_assert_int_eq(ae_store_finish(s, "j_fail", AE_JOB_FAILED, NULL,
                                   "{\"code\":\"deadline_exceeded\"}", 500,
                                   4100),
                   0);
  ck_assert_int_eq(
      ae_store_finish(s, "j_cancel", AE_JOB_CANCELLED, NULL, NULL, 600, 4200),
      0);
  /* Unknown ids. */
  ck_assert_int_eq(ae_store_mark_running(s, "j_none", "host:0", 1),
                   AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_mark_cancel_requested(s, "j_none"), AE_ENOTFOUND);
  ck_assert_int_eq(
      ae_store_finish(s, "j_none", AE_JOB_SUCCEEDED, "{}", NULL, 1, 2),
      AE_ENOTFOUND);

  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 3);
  const ae_store_job *run = find_job(&set, "j_run");
  ck_assert_ptr_nonnull(run);
  ck_assert_int_eq(run->state, AE_JOB_SUCCEEDED);
  ck_assert_int_eq(run->cancel_requested, 1);
  ck_assert_str_eq(run->worker, "host:0");
  ck_assert_int_eq(run->started_ms, 111);
  ck_assert_str_eq(run->result_json, "{\"ok\":1}");
  ck_assert_ptr_null(run->error_json);
  ck_assert_int_eq(run->finished_ms, 222);
  ck_assert_int_eq(run->expires_ms, 3822);
  const ae_store_job *failed = find_job(&set, "j_fail");
  ck_assert_ptr_nonnull(failed);
  ck_assert_int_eq(failed->state, AE_JOB_FAILED);
  ck_assert_ptr_null(failed->result_json);
  ck_assert_str_eq(failed->error_json, "{\"code\":\"deadline_exceeded\"}");
  ck_assert_ptr_null(failed->worker);
  ck_assert_int_eq(failed->started_ms, 0);
  const ae_store_job *cancelled = find_job(&set, "j_cancel");
  ck_assert_ptr_nonnull(cancelled);
  ck_assert_int_eq(cancelled->state, AE_JOB_CANCELLED);
  ck_assert_int_eq(cancelled->finished_ms, 600);
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_expire) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job jobs[4] = {queued_job("j_old", 1), queued_job("j_new", 2),
                          queued_job("j_queued", 3),
                          queued_job("j_running", 4)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 4), 0);
  ck_assert_int_eq(
      ae_store_finish(s, "j_old", AE_JOB_SUCCEEDED, "{}", NULL, 10, 100), 0);
  ck_assert_int_eq(
      ae_store_finish(s, "j_new", AE_JOB_FAILED, NULL, "{}", 10, 200), 0);
  ck_assert_int_eq(ae_store_mark_running(s, "j_running", "host:0", 5), 0);

  ck_assert_int_eq(ae_store_expire(s, 99), 0);
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 4);
  loaded_set_free(&set);

  /* The bound is inclusive; unfinished jobs never expire. */
  ck_assert_int_eq(ae_store_expire(s, 100), 0);
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 3);
  ck_assert_ptr_null(find_job(&set, "j_old"));
  loaded_set_free(&set);

  ck_assert_int_eq(ae_store_expire(s, 1LL << 50), 0);
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 2);
  ck_assert_ptr_nonnull(find_job(&set, "j_queued"));
  ck_assert_ptr_nonnull(find_job(&set, "j_running"));
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_delete) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job jobs[2] = {queued_job("j_a", 1), queued_job("j_b", 2)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 2), 0);
  ck_assert_int_eq(ae_store_delete(s, "j_a"), 0);
  ck_assert_int_eq(ae_store_delete(s, "j_a"), AE_ENOTFOUND);
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 1);
  ck_assert_str_eq(set.jobs[0].id, "j_b");
  loaded_set_free(&set);
  /* The id is free again. */
  ck_assert_int_eq(ae_store_insert(s, &jobs[0], 1), 0);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* ---- reads of one job and of a page (issues 14 and 15) ---- */

static int stop_after_first_any(void *ud, const ae_store_job *j) {
  (void)ud;
  (void)j;
  return 42;
}

START_TEST(test_get_one) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job jobs[2] = {full_job("j_full", 1), queued_job("j_nulls", 2)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 2), 0);
  loaded_set set = {0};
  ck_assert_int_eq(ae_store_get(s, "j_nulls", collect_job, &set), 0);
  ck_assert_int_eq(ae_store_get(s, "j_full", collect_job, &set), 0);
  ck_assert_uint_eq(set.count, 2);
  assert_same_job(&set.jobs[0].job, &jobs[1]);
  assert_same_job(&set.jobs[1].job, &jobs[0]);
  ck_assert_int_eq(ae_store_get(s, "j_none", collect_job, &set), AE_ENOTFOUND);
  ck_assert_uint_eq(set.count, 2);
  /* By idempotency key. */
  ck_assert_int_eq(
      ae_store_get_idem(s, jobs[0].idempotency_key, collect_job, &set), 0);
  ck_assert_uint_eq(set.count, 3);
  assert_same_job(&set.jobs[2].job, &jobs[0]);
  ck_assert_int_eq(ae_store_get_idem(s, "key-none", collect_job, &set),
                   AE_ENOTFOUND);
  set.count--; /* the next read lands at index 2 again */
  free(set.jobs[2].id);
  free(set.jobs[2].request_json);
  free(set.jobs[2].result_json);
  free(set.jobs[2].error_json);
  free(set.jobs[2].worker);
  free(set.jobs[2].idempotency_key);
  free(set.jobs[2].body_hash);
  free(set.jobs[2].client_ref);
  /* A change is seen by the next read. */
  ck_assert_int_eq(ae_store_finish(s, "j_nulls", AE_JOB_FAILED, NULL,
                                   "{\"code\":\"x\"}", 5, 6),
                   0);
  ck_assert_int_eq(ae_store_get(s, "j_nulls", collect_job, &set), 0);
  ck_assert_int_eq(set.jobs[2].job.state, AE_JOB_FAILED);
  ck_assert_str_eq(set.jobs[2].job.error_json, "{\"code\":\"x\"}");
  ck_assert_int_eq(set.jobs[2].job.expires_ms, 6);
  /* fn's answer is the call's. */
  ck_assert_int_eq(ae_store_get(s, "j_full", stop_after_first_any, NULL), 42);
  ck_assert_int_eq(ae_store_delete(s, "j_full"), 0);
  ck_assert_int_eq(ae_store_get(s, "j_full", collect_job, &set), AE_ENOTFOUND);
  ae_store_latency h;
  ck_assert_int_eq(ae_store_latency_read(s, AE_STORE_OP_READ, &h), 0);
  ck_assert_uint_eq(h.calls, 8);
  /* Not found is an answer, not a failure; fn stopping the call is one. */
  ck_assert_uint_eq(h.errors, 1);
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* The ids of a page, comma-separated, into out. */
static void page_ids(ae_store *s, const ae_store_page *page, char *out,
                     size_t outlen) {
  loaded_set set = {0};
  ck_assert_int_eq(ae_store_list(s, page, collect_job, &set), 0);
  out[0] = '\0';
  for (size_t i = 0; i < set.count; i++) {
    size_t used = strlen(out);
    snprintf(out + used, outlen - used, "%s%s", i ? "," : "", set.jobs[i].id);
  }
  loaded_set_free(&set);
}

START_TEST(test_list_pages) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_NORMAL);
  /* Inserted out of seq order: a page follows seq. */
  ae_store_job jobs[6] = {queued_job("j_3", 3), queued_job("j_1", 1),
                          queued_job("j_2", 2), queued_job("j_5", 5),
                          queued_job("j_4", 4), queued_job("j_6", 6)};
  jobs[1].client_ref = "a";
  jobs[3].client_ref = "a";
  jobs[4].client_ref = "b";
  ck_assert_int_eq(ae_store_insert(s, jobs, 6), 0);
  ck_assert_int_eq(
      ae_store_finish(s, "j_2", AE_JOB_SUCCEEDED, "{}", NULL, 10, 20), 0);
  ck_assert_int_eq(
      ae_store_finish(s, "j_5", AE_JOB_SUCCEEDED, "{}", NULL, 10, 20), 0);
  char ids[256];
  ae_store_page page = {.before = -1, .limit = 100};
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_6,j_5,j_4,j_3,j_2,j_1");
  page.limit = 2;
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_6,j_5");
  page.before = 5;
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_4,j_3");
  page.before = 1;
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "");
  page = (ae_store_page){
      .before = -1, .has_state = 1, .state = AE_JOB_SUCCEEDED, .limit = 10};
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_5,j_2");
  page.client_ref = "a";
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_5");
  page.has_state = 0;
  page.before = 5;
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_1");
  page = (ae_store_page){.before = -1, .client_ref = "none", .limit = 10};
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "");
  /* Every field comes back as stored. */
  loaded_set set = {0};
  page = (ae_store_page){.before = 5, .limit = 1};
  ck_assert_int_eq(ae_store_list(s, &page, collect_job, &set), 0);
  ck_assert_uint_eq(set.count, 1);
  assert_same_job(&set.jobs[0].job, &jobs[4]);
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* ---- studies and the result cache (issue 13) ---- */

/* What a load saw of the study columns: "id study canonical cached;". */
static int collect_study_columns(void *ud, const ae_store_job *j) {
  char *out = ud;
  size_t used = strlen(out);
  snprintf(out + used, 1024 - used, "%s %s %s %d;", j->id,
           j->study ? j->study : "-", j->canonical ? j->canonical : "-",
           j->cached);
  return 0;
}

static int collect_study(void *ud, const ae_store_study *t) {
  char *out = ud;
  size_t used = strlen(out);
  snprintf(out + used, 1024 - used, "%s %s %s %s %lld %lld;", t->id, t->name,
           t->request_json, t->idempotency_key ? t->idempotency_key : "-",
           t->created_ms, t->seq);
  return 0;
}

static int copy_result(void *ud, const char *result_json) {
  snprintf(ud, 256, "%s", result_json);
  return 0;
}

/* Uploaded models (schema 3 on SQLite, 4 on PostgreSQL): the first put of an id
 * wins, get leaves the bytes out, delete; all kept over a reopen. */
typedef struct {
  char text[512];
  size_t len;
  long long created_ms;
} model_seen;

static int copy_model(void *ud, const ae_store_model *m) {
  model_seen *out = ud;
  ck_assert_ptr_null(m->bytes);
  snprintf(out->text, sizeof out->text, "%s|%s|%s", m->id, m->description_json,
           m->architecture_json);
  out->len = m->len;
  out->created_ms = m->created_ms;
  return 0;
}

START_TEST(test_models) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  /* Bytes with a NUL and high bytes: stored as a blob, not text. */
  static const unsigned char bytes[] = {0x08, 0x07, 0x00, 0xff, 0x12, 0x80};
  ae_store_model m = {.id = "sha256:ab",
                      .bytes = bytes,
                      .len = sizeof bytes,
                      .description_json = "{\"id\":\"sha256:ab\"}",
                      .architecture_json = "{\"architecture\":{}}",
                      .created_ms = 1790000000000LL};
  model_seen seen;
  memset(&seen, 0, sizeof seen);
  ck_assert_int_eq(ae_store_model_get(s, "sha256:ab", copy_model, &seen),
                   AE_ENOTFOUND);
  int created = -1;
  ck_assert_int_eq(ae_store_model_put(s, &m, &created), 0);
  ck_assert_int_eq(created, 1);
  ae_store_model again = m;
  again.description_json = "{\"other\":1}";
  ck_assert_int_eq(ae_store_model_put(s, &again, &created), 0);
  ck_assert_int_eq(created, 0);
  ae_store_close(s);
  s = open_store(target, AE_STORE_SYNC_FULL);
  ck_assert_int_eq(ae_store_model_get(s, "sha256:ab", copy_model, &seen), 0);
  ck_assert_str_eq(seen.text,
                   "sha256:ab|{\"id\":\"sha256:ab\"}|{\"architecture\":{}}");
  ck_assert_uint_eq(seen.len, sizeof bytes);
  ck_assert_int_eq(seen.created_ms, 1790000000000LL);
  ck_assert_int_eq(ae_store_model_delete(s, "sha256:ab"), 0);
  ck_assert_int_eq(ae_store_model_delete(s, "sha256:ab"), AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_model_get(s, "sha256:ab", copy_model, &seen),
                   AE_ENOTFOUND);
  ae_store_latency lat;
  ck_assert_int_eq(ae_store_latency_read(s, AE_STORE_OP_MODEL, &lat), 0);
  ck_assert_uint_eq(lat.calls, 4);
  ck_assert_uint_eq(lat.errors, 0);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* Two replicas of a fleet may give two jobs (or studies) one seq: a
 * listing runs in (seq, id) order, and a page that ends inside a run of
 * one seq resumes after the last id shown, skipping none of the run.  On
 * a query by seq alone (the bug: "seq < before") the second page below
 * would be "j_0" and j_b, j_a never listed. */
START_TEST(test_list_pages_seq_ties) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_NORMAL);
  /* Inserted neither in id nor in seq order. */
  ae_store_job jobs[5] = {queued_job("j_b", 7), queued_job("j_d", 8),
                          queued_job("j_a", 7), queued_job("j_0", 6),
                          queued_job("j_c", 7)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 5), 0);
  char ids[256];
  ae_store_page page = {.before = -1, .limit = 100};
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_d,j_c,j_b,j_a,j_0");
  page.limit = 2;
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_d,j_c");
  page.before = 7;
  page.before_id = "j_c";
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_b,j_a");
  page.before_id = "j_a";
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_0");
  /* A key past every id of its seq, and one without an id (a token of a
   * version that kept none): the whole seq is after it. */
  page.before_id = "j_z";
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_c,j_b");
  page.before_id = NULL;
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_0");
  page.before_id = "";
  page_ids(s, &page, ids, sizeof ids);
  ck_assert_str_eq(ids, "j_0");
  /* Studies of one seq load in id order, whatever the insertion order. */
  ae_store_study t2 = {
      .id = "s_2", .name = "two", .request_json = "{}", .seq = 5};
  ae_store_study t1 = {
      .id = "s_1", .name = "one", .request_json = "{}", .seq = 5};
  ae_store_study t0 = {
      .id = "s_9", .name = "nine", .request_json = "{}", .seq = 4};
  ck_assert_int_eq(ae_store_study_insert(s, &t2), 0);
  ck_assert_int_eq(ae_store_study_insert(s, &t1), 0);
  ck_assert_int_eq(ae_store_study_insert(s, &t0), 0);
  char seen[1024] = "";
  ck_assert_int_eq(ae_store_study_load(s, collect_study, seen), 0);
  ck_assert_str_eq(seen, "s_9 nine {} - 0 4;s_1 one {} - 0 5;"
                         "s_2 two {} - 0 5;");
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_studies_and_cache) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_study a = {.id = "s_a",
                      .name = "first",
                      .request_json = "{\"name\":\"first\"}",
                      .idempotency_key = "k1",
                      .body_hash = "h1",
                      .created_ms = 1790000000000LL,
                      .seq = 1};
  ae_store_study b = {
      .id = "s_b", .name = "second", .request_json = "{}", .seq = 2};
  ck_assert_int_eq(ae_store_study_insert(s, &a), 0);
  ck_assert_int_eq(ae_store_study_insert(s, &b), 0);
  ck_assert_int_eq(ae_store_study_insert(s, &a), AE_EINVAL);
  ae_store_job jobs[4] = {queued_job("j_1", 1), queued_job("j_2", 2),
                          queued_job("j_3", 3), queued_job("j_4", 4)};
  jobs[0].study = jobs[1].study = "s_a";
  jobs[2].study = "s_b";
  jobs[0].canonical = "c0ffee";
  jobs[1].state = AE_JOB_SUCCEEDED;
  jobs[1].result_json = "{}";
  jobs[1].cached = 1;
  ck_assert_int_eq(ae_store_insert(s, jobs, 4), 0);
  ck_assert_int_eq(ae_store_mark_cached(s, "j_3"), 0);
  ck_assert_int_eq(ae_store_mark_cached(s, "j_none"), AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_mark_running(s, "j_1", "host:0", 5), 0);

  /* The cache: the first result stored under a key stays. */
  char result[256] = "";
  ck_assert_int_eq(ae_store_cache_get(s, "k", copy_result, result),
                   AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_cache_put(s, "k", "c0ffee", "{\"a\":1}", 9), 0);
  ck_assert_int_eq(ae_store_cache_put(s, "k", "c0ffee", "{\"a\":2}", 10), 0);
  ck_assert_int_eq(ae_store_cache_get(s, "k", copy_result, result), 0);
  ck_assert_str_eq(result, "{\"a\":1}");

  /* Everything is still there after a reopen. */
  ae_store_close(s);
  s = open_store(target, AE_STORE_SYNC_FULL);
  char seen[1024] = "";
  ck_assert_int_eq(ae_store_load(s, collect_study_columns, seen), 0);
  ck_assert_str_eq(seen, "j_1 s_a c0ffee 0;j_2 s_a - 1;j_3 s_b - 1;"
                         "j_4 - - 0;");
  seen[0] = '\0';
  ck_assert_int_eq(ae_store_study_load(s, collect_study, seen), 0);
  ck_assert_str_eq(seen, "s_a first {\"name\":\"first\"} k1 1790000000000 1;"
                         "s_b second {} - 0 2;");
  result[0] = '\0';
  ck_assert_int_eq(ae_store_cache_get(s, "k", copy_result, result), 0);
  ck_assert_str_eq(result, "{\"a\":1}");

  /* Deleting a study removes it and its finished jobs; j_1 (running,
   * after a reopen queued again) stays without a study. */
  ck_assert_int_eq(ae_store_study_delete(s, "s_a"), 0);
  ck_assert_int_eq(ae_store_study_delete(s, "s_a"), AE_ENOTFOUND);
  seen[0] = '\0';
  ck_assert_int_eq(ae_store_load(s, collect_study_columns, seen), 0);
  ck_assert_str_eq(seen, "j_1 - c0ffee 0;j_3 s_b - 1;j_4 - - 0;");
  seen[0] = '\0';
  ck_assert_int_eq(ae_store_study_load(s, collect_study, seen), 0);
  ck_assert_str_eq(seen, "s_b second {} - 0 2;");
  /* The cache outlives the study. */
  ck_assert_int_eq(ae_store_cache_get(s, "k", copy_result, result), 0);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* A version 1 file (before studies) is migrated and keeps its jobs. */
START_TEST(test_sqlite_migrates_v1) {
  make_target();
  ck_assert_int_eq(mkdir(target, 0700), 0);
  char path[1200];
  snprintf(path, sizeof path, "%s/jobs.sqlite3", target);
  sqlite3 *db = NULL;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(
      sqlite3_exec(db,
                   "CREATE TABLE jobs (id TEXT PRIMARY KEY NOT NULL,"
                   " state TEXT NOT NULL, cancel_requested INTEGER NOT NULL"
                   " DEFAULT 0, request_json TEXT NOT NULL, result_json TEXT,"
                   " error_json TEXT, worker TEXT, idempotency_key TEXT,"
                   " body_hash TEXT, client_ref TEXT, priority INTEGER NOT"
                   " NULL DEFAULT 0, timeout_ms INTEGER NOT NULL DEFAULT 0,"
                   " created_ms INTEGER, started_ms INTEGER, finished_ms"
                   " INTEGER, expires_ms INTEGER, seq INTEGER NOT NULL);"
                   "INSERT INTO jobs (id, state, request_json, seq) VALUES"
                   " ('j_old', 'queued', '{}', 1);"
                   "PRAGMA user_version = 1;",
                   NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  char seen[1024] = "";
  ck_assert_int_eq(ae_store_load(s, collect_study_columns, seen), 0);
  ck_assert_str_eq(seen, "j_old - - 0;");
  ae_store_study t = {.id = "s_x", .name = "x", .request_json = "{}"};
  ck_assert_int_eq(ae_store_study_insert(s, &t), 0);
  ae_store_close(s);
  remove_targets();
}
END_TEST

static int stop_after_first(void *ud, const ae_store_job *j) {
  (void)j;
  int *calls = ud;
  (*calls)++;
  return 42;
}

START_TEST(test_load_stops_when_asked) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job jobs[3] = {queued_job("j_a", 1), queued_job("j_b", 2),
                          queued_job("j_c", 3)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 3), 0);
  int calls = 0;
  ck_assert_int_eq(ae_store_load(s, stop_after_first, &calls), 42);
  ck_assert_int_eq(calls, 1);
  /* The statement was reset: a second load sees everything. */
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 3);
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* The daemon fails a job whose stored request no longer validates from
 * inside the load callback: a write while the load's read is open. */
static int finish_while_loading(void *ud, const ae_store_job *j) {
  ae_store *s = ud;
  if (j->state != AE_JOB_QUEUED) return 0;
  return ae_store_finish(s, j->id, AE_JOB_FAILED, NULL,
                         "{\"code\":\"invalid_request\"}", 5, 6);
}

START_TEST(test_write_during_load) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job jobs[3] = {queued_job("j_a", 1), queued_job("j_b", 2),
                          queued_job("j_c", 3)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 3), 0);
  ck_assert_int_eq(
      ae_store_finish(s, "j_b", AE_JOB_SUCCEEDED, "{}", NULL, 1, 2), 0);
  ck_assert_int_eq(ae_store_load(s, finish_while_loading, s), 0);
  ae_store_close(s);

  s = open_store(target, AE_STORE_SYNC_FULL);
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 3);
  for (size_t i = 0; i < set.count; i++) {
    const ae_store_job *j = &set.jobs[i].job;
    if (strcmp(j->id, "j_b") == 0) {
      ck_assert_int_eq(j->state, AE_JOB_SUCCEEDED);
    } else {
      ck_assert_int_eq(j->state, AE_JOB_FAILED);
      ck_assert_str_eq(j->error_json, "{\"code\":\"invalid_request\"}");
      ck_assert_int_eq(j->expires_ms, 6);
    }
  }
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_reopen_keeps_everything) {
  char nested[1024];
  if (test_backend == AE_STORE_BACKEND_SQLITE) {
    /* The state dir and its parents are created, private. */
    make_target_named("a/b/state", nested, sizeof nested);
  } else {
    make_target();
    snprintf(nested, sizeof nested, "%s", target);
  }
  ae_store *s = open_store(nested, AE_STORE_SYNC_FULL);
  if (test_backend == AE_STORE_BACKEND_SQLITE) {
    struct stat st;
    ck_assert_int_eq(stat(nested, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0700);
  }

  ae_store_job full = full_job("j_full", 1);
  ae_store_job queued = queued_job("j_queued", 2);
  ae_store_job running = queued_job("j_running", 3);
  ck_assert_int_eq(ae_store_insert(s, &full, 1), 0);
  ck_assert_int_eq(ae_store_insert(s, &queued, 1), 0);
  ck_assert_int_eq(ae_store_insert(s, &running, 1), 0);
  ck_assert_int_eq(ae_store_mark_running(s, "j_running", "host:2", 77), 0);
  ae_store_close(s);

  s = open_store(nested, AE_STORE_SYNC_NORMAL);
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 3);
  assert_same_job(find_job(&set, "j_full"), &full);
  assert_same_job(find_job(&set, "j_queued"), &queued);
  /* A job that was running is queued again, as never started. */
  assert_same_job(find_job(&set, "j_running"), &running);
  loaded_set_free(&set);
  /* And it can start again. */
  ck_assert_int_eq(ae_store_mark_running(s, "j_running", "host:0", 88), 0);
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_sqlite_open_errors) {
  make_state_dir();
  char path[512];
  snprintf(path, sizeof path, "%s/plainfile", state_dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fclose(f);
  ae_store *s = (ae_store *)&path; /* must be reset to NULL */
  char err[256] = "";
  ck_assert_int_eq(ae_store_open(path, AE_STORE_SYNC_FULL, &s, err, sizeof err),
                   AE_EIO);
  ck_assert_ptr_null(s);
  ck_assert_ptr_nonnull(strstr(err, "not a directory"));

  /* A file written by a newer schema is refused with a clear message. */
  char dir[512], db_path[600];
  snprintf(dir, sizeof dir, "%s/newer", state_dir);
  ck_assert_int_eq(mkdir(dir, 0700), 0);
  snprintf(db_path, sizeof db_path, "%s/jobs.sqlite3", dir);
  sqlite3 *db = NULL;
  ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
  ck_assert_int_eq(
      sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  err[0] = '\0';
  ck_assert_int_eq(ae_store_open(dir, AE_STORE_SYNC_FULL, &s, err, sizeof err),
                   AE_EIO);
  ck_assert_ptr_nonnull(strstr(err, "newer"));

  /* Garbage in place of the database is refused too. */
  snprintf(dir, sizeof dir, "%s/garbage", state_dir);
  ck_assert_int_eq(mkdir(dir, 0700), 0);
  snprintf(db_path, sizeof db_path, "%s/jobs.sqlite3", dir);
  f = fopen(db_path, "w");
  ck_assert_ptr_nonnull(f);
  for (int i = 0; i < 1000; i++)
    fputs("not a database ", f);
  fclose(f);
  ck_assert_int_eq(ae_store_open(dir, AE_STORE_SYNC_FULL, &s, err, sizeof err),
                   AE_EIO);
  ck_assert_ptr_null(s);
  ck_assert(strlen(err) > 0);

  /* A store file truncated to 0 bytes is an error, not an empty start. */
  snprintf(dir, sizeof dir, "%s/empty", state_dir);
  ck_assert_int_eq(mkdir(dir, 0700), 0);
  snprintf(db_path, sizeof db_path, "%s/jobs.sqlite3", dir);
  f = fopen(db_path, "w");
  ck_assert_ptr_nonnull(f);
  fclose(f);
  err[0] = '\0';
  ck_assert_int_eq(ae_store_open(dir, AE_STORE_SYNC_FULL, &s, err, sizeof err),
                   AE_EIO);
  ck_assert_ptr_null(s);
  ck_assert_msg(strstr(err, "empty file") != NULL, "%s", err);

  /* Nor is a store cut short of the pages its header declares. */
  snprintf(dir, sizeof dir, "%s/truncated", state_dir);
  ck_assert_int_eq(ae_store_open(dir, AE_STORE_SYNC_FULL, &s, err, sizeof err),
                   0);
  for (int i = 0; i < 40; i++) {
    char id[32];
    snprintf(id, sizeof id, "j_t%d", i);
    ae_store_job job = full_job(id, i + 1);
    ck_assert_int_eq(ae_store_insert(s, &job, 1), 0);
  }
  ae_store_close(s);
  snprintf(db_path, sizeof db_path, "%s/jobs.sqlite3", dir);
  struct stat st;
  ck_assert_int_eq(stat(db_path, &st), 0);
  ck_assert(st.st_size >= 3 * 4096);
  ck_assert_int_eq(truncate(db_path, st.st_size - 4096), 0);
  err[0] = '\0';
  ck_assert_int_eq(ae_store_open(dir, AE_STORE_SYNC_FULL, &s, err, sizeof err),
                   AE_EIO);
  ck_assert_ptr_null(s);
  ck_assert_msg(strstr(err, "truncated") != NULL, "%s", err);
  remove_tree(state_dir);
}
END_TEST

START_TEST(test_second_opener_refused) {
  make_target();
  /* The child holds the store; the parent, a second process on the same
   * state dir, must not get it (it would run the same jobs again). */
  int ready[2], done[2];
  ck_assert_int_eq(pipe(ready), 0);
  ck_assert_int_eq(pipe(done), 0);
  pid_t pid = fork();
  ck_assert_int_ne(pid, -1);
  if (pid == 0) {
    close(ready[0]);
    close(done[1]);
    ae_store *held = NULL;
    char err[256];
    int status =
        ae_store_open_url(target, AE_STORE_SYNC_FULL, &held, err, sizeof err);
    ae_store_job job = queued_job("j_a", 1);
    if (!status) status = ae_store_insert(held, &job, 1);
    char byte = status ? 'x' : 'y';
    if (write(ready[1], &byte, 1) != 1) status = 1;
    if (read(done[0], &byte, 1) != 1) status = 1;
    ae_store_close(held);
    _exit(status ? 1 : 0);
  }
  close(ready[1]);
  close(done[0]);
  char byte = 0;
  ck_assert_int_eq(read(ready[0], &byte, 1), 1);
  ck_assert_int_eq(byte, 'y');

  ae_store *s = NULL;
  char err[256] = "";
  ck_assert_int_eq(
      ae_store_open_url(target, AE_STORE_SYNC_FULL, &s, err, sizeof err),
      AE_EIO);
  ck_assert_ptr_null(s);
  ck_assert_msg(strstr(err, "another process") != NULL, "%s", err);

  /* Once the holder closed it, the next process opens it. */
  ck_assert_int_eq(write(done[1], "x", 1), 1);
  int wstatus = 0;
  ck_assert_int_eq(waitpid(pid, &wstatus, 0), pid);
  ck_assert(WIFEXITED(wstatus));
  ck_assert_int_eq(WEXITSTATUS(wstatus), 0);
  close(ready[0]);
  close(done[1]);
  s = open_store(target, AE_STORE_SYNC_FULL);
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 1);
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* The child inserts jobs (one, then a batch of three, and so on) until
 * it is killed, and writes the number of jobs acknowledged so far to the
 * pipe after each insert returned 0. */
static void crash_writer(const char *dir, int ack_fd) {
  ae_store *s = NULL;
  char err[256];
  if (ae_store_open_url(dir, AE_STORE_SYNC_FULL, &s, err, sizeof err) != 0)
    _exit(2);
  char ids[3][32];
  char requests[3][64];
  for (unsigned n = 0;;) {
    size_t count = (n % 4 == 0) ? 1 : 3;
    ae_store_job jobs[3];
    for (size_t k = 0; k < count; k++) {
      unsigned index = n + (unsigned)k;
      snprintf(ids[k], sizeof ids[k], "j_%08u", index);
      snprintf(requests[k], sizeof requests[k], "{\"seed\":%u}", index);
      jobs[k] = queued_job(ids[k], index);
      jobs[k].request_json = requests[k];
    }
    if (ae_store_insert(s, jobs, count) != 0) _exit(3);
    n += (unsigned)count;
    if (write(ack_fd, &n, sizeof n) != (ssize_t)sizeof n) _exit(4);
  }
}

START_TEST(test_sigkill_mid_write_keeps_acknowledged) {
  for (int round = 0; round < 3; round++) {
    char dir[1024], name[16];
    snprintf(name, sizeof name, "r%d", round);
    make_target_named(name, dir, sizeof dir);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
      close(fds[0]);
      crash_writer(dir, fds[1]);
    }
    close(fds[1]);
    /* Let it commit a varying number of times, then kill it mid-loop. */
    unsigned acked = 0, seen = 0;
    unsigned wanted = 20 + (unsigned)(round * 37 % 50);
    while (seen < wanted) {
      ssize_t got = read(fds[0], &acked, sizeof acked);
      if (got != (ssize_t)sizeof acked) break;
      seen++;
    }
    struct timespec pause = {0, 300000L * (round + 1)};
    nanosleep(&pause, NULL);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    ck_assert_int_eq(waitpid(pid, &wstatus, 0), pid);
    ck_assert_msg(WIFSIGNALED(wstatus), "writer exited by itself: %d",
                  WEXITSTATUS(wstatus));
    /* Drain the acks written before the kill. */
    unsigned value;
    while (read(fds[0], &value, sizeof value) == (ssize_t)sizeof value)
      acked = value;
    close(fds[0]);
    ck_assert_uint_gt(acked, 0);

    ae_store *s = open_store(dir, AE_STORE_SYNC_FULL);
    loaded_set set;
    load_all(s, &set);
    /* Every acknowledged job is there, in order and whole; at most the
     * one transaction in flight at the kill went in unacknowledged. */
    ck_assert_uint_ge(set.count, acked);
    ck_assert_uint_le(set.count, acked + 3);
    for (size_t i = 0; i < set.count; i++) {
      char id[32], request[64];
      snprintf(id, sizeof id, "j_%08zu", i);
      snprintf(request, sizeof request, "{\"seed\":%zu}", i);
      ck_assert_str_eq(set.jobs[i].id, id);
      ck_assert_str_eq(set.jobs[i].job.request_json, request);
      ck_assert_int_eq(set.jobs[i].job.seq, (long long)i);
      ck_assert_int_eq(set.jobs[i].job.state, AE_JOB_QUEUED);
    }
    /* Batches are whole: one job then three, so 4k or 4k + 1 jobs. */
    ck_assert_msg(set.count % 4 == 0 || set.count % 4 == 1,
                  "%zu jobs: a batch went in partly", set.count);
    fprintf(stderr, "round %d: %u acked %zu stored\n", round, acked, set.count);
    loaded_set_free(&set);
    ae_store_close(s);
  }
  remove_targets();
}
END_TEST

/* More jobs than one page of a PostgreSQL load (500), with ties of seq:
 * every job comes back once, by seq, ties in insertion order. */
START_TEST(test_load_many_in_order) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_NORMAL);
  enum { N = 1203 };
  static char ids[N][16];
  static ae_store_job jobs[N];
  for (int i = 0; i < N; i++) {
    /* Pairs share a seq; within a pair the ids sort against insertion
     * order (j_00001 is inserted before j_00000), so a tie broken by id
     * instead of insertion order fails. */
    snprintf(ids[i], sizeof ids[i], "j_%05d", (i % 2) ? i - 1 : i + 1);
    jobs[i] = queued_job(ids[i], i / 2);
  }
  /* A batch larger than one PostgreSQL statement (1000 rows) with a
   * duplicate near its end leaves nothing behind. */
  jobs[1150].id = ids[3];
  ck_assert_int_eq(ae_store_insert(s, jobs, 1151), AE_EINVAL);
  jobs[1150].id = ids[1150];
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 0);
  loaded_set_free(&set);
  ck_assert_int_eq(ae_store_insert(s, jobs, 1150), 0);
  ck_assert_int_eq(ae_store_insert(s, jobs + 1150, N - 1150), 0);
  load_all(s, &set);
  ck_assert_uint_eq(set.count, N);
  for (int i = 0; i < N; i++) {
    ck_assert_str_eq(set.jobs[i].id, ids[i]);
    ck_assert_int_eq(set.jobs[i].job.seq, i / 2);
  }
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* Not a check: prints the store's mean latency for single-job writes,
 * the way a daemon writes (one insert, running, finished per job). */
START_TEST(test_latency_report) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  enum { N = 200 };
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof id, "j_%04d", i);
    ae_store_job job = queued_job(id, i);
    ck_assert_int_eq(ae_store_insert(s, &job, 1), 0);
    ck_assert_int_eq(ae_store_mark_running(s, id, "host:0", 1), 0);
    ck_assert_int_eq(ae_store_finish(s, id, AE_JOB_SUCCEEDED, "{}", NULL, 2, 3),
                     0);
  }
  ae_store_latency insert, update;
  ck_assert_int_eq(ae_store_latency_read(s, AE_STORE_OP_INSERT, &insert), 0);
  ck_assert_int_eq(ae_store_latency_read(s, AE_STORE_OP_UPDATE, &update), 0);
  ck_assert_uint_eq(insert.calls, N);
  ck_assert_uint_eq(update.calls, 2 * N);
  fprintf(stderr,
          "%s, sync full: insert mean %.3f ms, update mean %.3f ms "
          "(%d jobs)\n",
          ae_store_backend_name(s), 1e3 * insert.sum_s / (double)N,
          1e3 * update.sum_s / (double)(2 * N), N);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* ---- latency ---- */

static int slow_collect(void *ud, const ae_store_job *j) {
  struct timespec pause = {0, 50000000L};
  nanosleep(&pause, NULL);
  return collect_job(ud, j);
}

START_TEST(test_latency_counts) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_NORMAL);
  ae_store_latency h;
  for (int op = 0; op < AE_STORE_OP_COUNT; op++) {
    ck_assert_int_eq(ae_store_latency_read(s, (ae_store_op)op, &h), 0);
    ck_assert_uint_eq(h.calls, 0);
  }
  ck_assert_int_eq(ae_store_latency_read(s, AE_STORE_OP_COUNT, &h), AE_EINVAL);
  for (int i = 1; i < AE_STORE_LATENCY_BUCKETS; i++)
    ck_assert(ae_store_latency_bounds[i] > ae_store_latency_bounds[i - 1]);

  ae_store_job jobs[2] = {queued_job("j_a", 1), queued_job("j_b", 2)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 2), 0);
  ck_assert_int_eq(ae_store_insert(s, jobs, 1), AE_EINVAL);
  ck_assert_int_eq(ae_store_mark_running(s, "j_a", "host:0", 5), 0);
  ck_assert_int_eq(ae_store_finish(s, "j_a", AE_JOB_FAILED, NULL, "{}", 6, 7),
                   0);
  ck_assert_int_eq(ae_store_delete(s, "j_none"), AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_expire(s, 1), 0);
  loaded_set set;
  memset(&set, 0, sizeof set);
  ck_assert_int_eq(ae_store_load(s, slow_collect, &set), 0);
  ck_assert_uint_eq(set.count, 2);
  loaded_set_free(&set);

  const struct {
    ae_store_op op;
    unsigned calls, errors;
  } want[] = {{AE_STORE_OP_INSERT, 2, 1},
              {AE_STORE_OP_UPDATE, 3, 1},
              {AE_STORE_OP_EXPIRE, 1, 0},
              {AE_STORE_OP_LOAD, 1, 0}};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
    ck_assert_int_eq(ae_store_latency_read(s, want[k].op, &h), 0);
    ck_assert_uint_eq(h.calls, want[k].calls);
    ck_assert_uint_eq(h.errors, want[k].errors);
    unsigned long long total = 0;
    for (int i = 0; i <= AE_STORE_LATENCY_BUCKETS; i++)
      total += h.count[i];
    ck_assert_uint_eq(total, want[k].calls);
    ck_assert(h.sum_s > 0);
  }
  /* The load's two callbacks slept 100 ms: not the store's time. */
  ck_assert_int_eq(ae_store_latency_read(s, AE_STORE_OP_LOAD, &h), 0);
  ck_assert_msg(h.sum_s < 0.09, "load took %.3f s", h.sum_s);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* ---- backend-neutral: the choice of backend, the URL ---- */

START_TEST(test_backend_of) {
  const struct {
    const char *where;
    ae_store_backend_kind kind;
  } cases[] = {
      {"/var/lib/archeval", AE_STORE_BACKEND_SQLITE},
      {"state", AE_STORE_BACKEND_SQLITE},
      {"./a=b", AE_STORE_BACKEND_SQLITE},
      {"a b=c", AE_STORE_BACKEND_SQLITE},
      {"", AE_STORE_BACKEND_SQLITE},
      {NULL, AE_STORE_BACKEND_SQLITE},
      {"postgresql:/x", AE_STORE_BACKEND_SQLITE},
      {"postgresql://u:p@db:5432/archeval", AE_STORE_BACKEND_POSTGRESQL},
      {"postgres://db/archeval", AE_STORE_BACKEND_POSTGRESQL},
      {"postgresql:///archeval?host=/run/pg", AE_STORE_BACKEND_POSTGRESQL},
      {"host=/run/pg dbname=archeval", AE_STORE_BACKEND_POSTGRESQL},
      {"  dbname = archeval", AE_STORE_BACKEND_POSTGRESQL},
      {"service=archeval", AE_STORE_BACKEND_POSTGRESQL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    ck_assert_msg(ae_store_backend_of(cases[i].where) == cases[i].kind, "'%s'",
                  cases[i].where ? cases[i].where : "(null)");
}
END_TEST

START_TEST(test_open_url_chooses_backend) {
  make_state_dir();
  char dir[512];
  snprintf(dir, sizeof dir, "%s/by_url", state_dir);
  ae_store *s = NULL;
  char err[512] = "";
  ck_assert_int_eq(
      ae_store_open_url(dir, AE_STORE_SYNC_FULL, &s, err, sizeof err), 0);
  ck_assert_str_eq(ae_store_backend_name(s), "sqlite");
  ck_assert_int_eq(ae_store_ping(s), 0);
  ae_store_close(s);
  struct stat st;
  snprintf(dir, sizeof dir, "%s/by_url/jobs.sqlite3", state_dir);
  ck_assert_int_eq(stat(dir, &st), 0);

  s = (ae_store *)&st; /* must be reset to NULL */
#ifdef HAVE_LIBPQ
  /* A server that is not there: an error naming the store, no handle. */
  ck_assert_int_eq(ae_store_open_url("host=/nonexistent/ae_pg port=5432",
                                     AE_STORE_SYNC_FULL, &s, err, sizeof err),
                   AE_EIO);
  ck_assert_msg(strstr(err, "postgresql store") != NULL, "%s", err);
#else
  ck_assert_int_eq(ae_store_open_url("postgresql://db/archeval",
                                     AE_STORE_SYNC_FULL, &s, err, sizeof err),
                   AE_EUNSUPPORTED);
  ck_assert_msg(strstr(err, "built without PostgreSQL") != NULL, "%s", err);
#endif
  ck_assert_ptr_null(s);
  remove_targets();
}
END_TEST

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_ge(fputs(text, f), 0);
  ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_resolve_url) {
  make_state_dir();
  char url[128], err[256], file[512];
  const char *flag = "postgresql://flag/db";
  const char *env = "postgresql://env/db";
  /* The flag, then the file, then the environment. */
  ck_assert_int_eq(
      ae_store_resolve_url(flag, env, NULL, url, sizeof url, err, sizeof err),
      0);
  ck_assert_str_eq(url, flag);
  ck_assert_int_eq(
      ae_store_resolve_url(NULL, env, NULL, url, sizeof url, err, sizeof err),
      0);
  ck_assert_str_eq(url, env);
  ck_assert_int_eq(
      ae_store_resolve_url("", "", "", url, sizeof url, err, sizeof err), 0);
  ck_assert_str_eq(url, "");

  /* A Secret mounted as a file ends with a newline. */
  snprintf(file, sizeof file, "%s/secret", state_dir);
  write_file(file, "postgresql://u:s3cret@file/db \n");
  ck_assert_int_eq(
      ae_store_resolve_url(NULL, env, file, url, sizeof url, err, sizeof err),
      0);
  ck_assert_str_eq(url, "postgresql://u:s3cret@file/db");
  ck_assert_int_eq(
      ae_store_resolve_url(flag, env, file, url, sizeof url, err, sizeof err),
      AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "both"));

  write_file(file, "\n");
  ck_assert_int_eq(
      ae_store_resolve_url(NULL, env, file, url, sizeof url, err, sizeof err),
      AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "empty"));
  ck_assert_str_eq(url, "");

  char missing[600];
  snprintf(missing, sizeof missing, "%s/none", state_dir);
  ck_assert_int_eq(ae_store_resolve_url(NULL, NULL, missing, url, sizeof url,
                                        err, sizeof err),
                   AE_EIO);
  ck_assert_ptr_nonnull(strstr(err, "No such file"));

  /* Longer than the buffer: refused, not cut (it may be a password). */
  char small[16];
  ck_assert_int_eq(ae_store_resolve_url(flag, NULL, NULL, small, sizeof small,
                                        err, sizeof err),
                   AE_EINVAL);
  write_file(file, "postgresql://a-very-long-host-name/db\n");
  ck_assert_int_eq(ae_store_resolve_url(NULL, NULL, file, small, sizeof small,
                                        err, sizeof err),
                   AE_EINVAL);
  ck_assert_str_eq(small, "");
  remove_targets();
}
END_TEST

START_TEST(test_redact_url) {
  const struct {
    const char *in, *out;
  } cases[] = {
      {"/var/lib/archeval", "/var/lib/archeval"},
      {"postgresql://ae:s3cret@db:5432/archeval",
       "postgresql://ae:***@db:5432/archeval"},
      {"postgres://ae@db/archeval", "postgres://ae@db/archeval"},
      {"postgresql://db/archeval?user=ae&password=s3cret&sslmode=require",
       "postgresql://db/archeval?user=ae&password=***&sslmode=require"},
      {"host=db password=s3cret dbname=archeval",
       "host=db password=*** dbname=archeval"},
      {"host=db password = 's3 \\'cret' dbname=archeval",
       "host=db password=*** dbname=archeval"},
  };
  char out[256];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ae_store_redact_url(cases[i].in, out, sizeof out);
    ck_assert_str_eq(out, cases[i].out);
    ck_assert_ptr_null(strstr(out, "s3"));
  }
  char tiny[8];
  ae_store_redact_url("postgresql://ae:s3cret@db/x", tiny, sizeof tiny);
  ck_assert_str_eq(tiny, "postgre");
}
END_TEST

#ifdef HAVE_LIBPQ
/* ---- PostgreSQL only ---- */

/* The first value of a query run by the test's own client. */
static void pg_admin_value(const char *dbname, const char *sql, char *out,
                           size_t outlen) {
  char conninfo[1024];
  snprintf(conninfo, sizeof conninfo, "%s dbname=%s", getenv("AE_TEST_PG_DSN"),
           dbname);
  PGconn *conn = PQconnectdb(conninfo);
  ck_assert_msg(conn && PQstatus(conn) == CONNECTION_OK, "connect: %s",
                conn ? PQerrorMessage(conn) : "no memory");
  PGresult *res = PQexec(conn, sql);
  ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0,
                "%s: %s", sql, PQerrorMessage(conn));
  snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
  PQclear(res);
  PQfinish(conn);
}

START_TEST(test_pg_schema_versions) {
  make_target();
  char dbname[64], value[64];
  snprintf(dbname, sizeof dbname, "ae_t_%ld_main", (long)getpid());
  /* Created once; opening again changes nothing. */
  for (int i = 0; i < 2; i++) {
    ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
    ae_store_close(s);
    pg_admin_value(dbname,
                   "SELECT count(*) || ' ' || max(version)"
                   " FROM archeval_schema_version",
                   value, sizeof value);
    ck_assert_str_eq(value, "1 6");
  }
  /* A database migrated by a newer archevald is refused. */
  pg_admin(dbname, "UPDATE archeval_schema_version SET version = 99");
  ae_store *s = NULL;
  char err[512] = "";
  ck_assert_int_eq(
      ae_store_open_url(target, AE_STORE_SYNC_FULL, &s, err, sizeof err),
      AE_EIO);
  ck_assert_ptr_null(s);
  ck_assert_msg(strstr(err, "newer") != NULL, "%s", err);
  /* A database of version 0 (the table, nothing else) is migrated. */
  pg_admin(dbname, "DROP TABLE archeval_jobs, archeval_studies,"
                   " archeval_result_cache, archeval_models");
  pg_admin(dbname, "UPDATE archeval_schema_version SET version = 0");
  s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job job = full_job("j_full", 1);
  ck_assert_int_eq(ae_store_insert(s, &job, 1), 0);
  ae_store_close(s);
  pg_admin_value(dbname, "SELECT version FROM archeval_schema_version", value,
                 sizeof value);
  ck_assert_str_eq(value, "6");
  remove_targets();
}
END_TEST

/* Version 5: a study's idempotency key is unique.  A database of version
 * 4 that holds duplicates (two replicas raced) is migrated: the oldest
 * study of the key keeps it, the others keep their rows without it. */
START_TEST(test_pg_study_key_unique) {
  make_target();
  char dbname[64], value[256];
  snprintf(dbname, sizeof dbname, "ae_t_%ld_main", (long)getpid());
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_study st = {.id = "s_1",
                       .name = "one",
                       .request_json = "{}",
                       .idempotency_key = "k",
                       .body_hash = "h",
                       .created_ms = 1,
                       .seq = 10};
  ck_assert_int_eq(ae_store_study_insert(s, &st), 0);
  /* The same key again: refused (AE_EINVAL, as a duplicate id). */
  st.id = "s_2";
  ck_assert_int_eq(ae_store_study_insert(s, &st), AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(ae_store_errmsg(s), "23505"));
  st.idempotency_key = NULL;
  ck_assert_int_eq(ae_store_study_insert(s, &st), 0); /* no key: fine */
  /* Data the store refuses (class 22: not UTF-8) is not a duplicate: the
   * daemon must not answer it as a race lost to another replica. */
  st.id = "s_9";
  st.idempotency_key = "k9";
  st.name = "bad \xff name";
  ck_assert_int_eq(ae_store_study_insert(s, &st), AE_EIO);
  ck_assert_ptr_nonnull(strstr(ae_store_errmsg(s), "SQLSTATE 22"));
  st.name = "one";
  ae_store_close(s);
  /* Back to version 4, with duplicates (newer first: seq decides). */
  pg_admin(dbname, "DROP INDEX archeval_studies_idempotency_key_unique;"
                   "UPDATE archeval_schema_version SET version = 4;"
                   "INSERT INTO archeval_studies (id, name, request_json,"
                   " idempotency_key, body_hash, seq) VALUES"
                   " ('s_3', 'three', '{}', 'k', 'h3', 30),"
                   " ('s_0', 'zero', '{}', 'k', 'h0', 5),"
                   " ('s_4', 'four', '{}', 'k2', 'h4', 40),"
                   " ('s_5', 'five', '{}', 'k2', 'h5', 40)");
  s = open_store(target, AE_STORE_SYNC_FULL);
  pg_admin_value(dbname,
                 "SELECT (SELECT version FROM archeval_schema_version)"
                 " || ' ' || string_agg(id || '=' || coalesce("
                 "  idempotency_key, '-') || '/' || coalesce(body_hash, '-'),"
                 "  ',' ORDER BY id) FROM archeval_studies",
                 value, sizeof value);
  ck_assert_str_eq(value, "6 s_0=k/h0,s_1=-/-,s_2=-/h,s_3=-/-,s_4=k2/h4,"
                          "s_5=-/-");
  char seen[1024] = "";
  ck_assert_int_eq(ae_store_study_get(s, NULL, "k", collect_study, seen), 0);
  ck_assert_ptr_nonnull(strstr(seen, "s_0 zero"));
  st.id = "s_6";
  st.idempotency_key = "k2";
  ck_assert_int_eq(ae_store_study_insert(s, &st), AE_EINVAL);
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_pg_open_errors) {
  ae_store *s = (ae_store *)&s;
  char err[512] = "", target_text[1024];
  snprintf(target_text, sizeof target_text, "%s dbname=ae_no_such_db",
           getenv("AE_TEST_PG_DSN"));
  ck_assert_int_eq(
      ae_store_open_url(target_text, AE_STORE_SYNC_FULL, &s, err, sizeof err),
      AE_EIO);
  ck_assert_ptr_null(s);
  ck_assert_msg(strstr(err, "ae_no_such_db") != NULL, "%s", err);
  /* The URL form reaches the same server. */
  const char *url = getenv("AE_TEST_PG_URL");
  if (url && *url) {
    s = open_store(url, AE_STORE_SYNC_FULL);
    char id[64];
    snprintf(id, sizeof id, "j_url_%ld", (long)getpid());
    ae_store_job job = queued_job(id, 1);
    ck_assert_int_eq(ae_store_insert(s, &job, 1), 0);
    ck_assert_int_eq(ae_store_delete(s, id), 0);
    ae_store_close(s);
  }
}
END_TEST

/* Text the database cannot hold (not UTF-8) is the caller's error, and
 * the store goes on working. */
START_TEST(test_pg_bad_text) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job jobs[2] = {queued_job("j_ok", 1), queued_job("j_bad", 2)};
  jobs[1].idempotency_key = "key-\xff\xfe";
  ck_assert_int_eq(ae_store_insert(s, jobs, 2), AE_EINVAL);
  ck_assert_msg(strstr(ae_store_errmsg(s), "SQLSTATE 22") != NULL, "%s",
                ae_store_errmsg(s));
  ck_assert_int_eq(ae_store_insert(s, jobs, 1), 0);
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 1);
  loaded_set_free(&set);
  ae_store_close(s);
  remove_targets();
}
END_TEST

static double seconds_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) +
         (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* The server is stopped (pg_ctl stop -m fast) under an open store: calls
 * fail as values, quickly; once it is back the store reconnects by
 * itself and nothing acknowledged was lost. */
START_TEST(test_pg_reconnect) {
  const char *stop = getenv("AE_TEST_PG_STOP");
  const char *start = getenv("AE_TEST_PG_START");
  if (!stop || !*stop || !start || !*start) {
    fprintf(stderr, "no AE_TEST_PG_STOP/START: reconnect test skipped\n");
    return;
  }
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_job before = queued_job("j_before", 1);
  ck_assert_int_eq(ae_store_insert(s, &before, 1), 0);
  ck_assert_int_eq(ae_store_mark_running(s, "j_before", "host:0", 10), 0);

  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(system(stop), 0);
  fprintf(stderr, "server stopped in %.2f s\n", seconds_since(&t0));
  ae_store_job down = queued_job("j_down", 2);
  ck_assert_int_eq(ae_store_insert(s, &down, 1), AE_EIO);
  fprintf(stderr, "while down: %s\n", ae_store_errmsg(s));
  ck_assert(strlen(ae_store_errmsg(s)) > 0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(ae_store_mark_cancel_requested(s, "j_before"), AE_EIO);
  ck_assert_int_eq(
      ae_store_finish(s, "j_before", AE_JOB_SUCCEEDED, "{}", NULL, 11, 12),
      AE_EIO);
  ck_assert_int_eq(ae_store_ping(s), AE_EIO);
  loaded_set set;
  memset(&set, 0, sizeof set);
  ck_assert_int_eq(ae_store_load(s, collect_job, &set), AE_EIO);
  ck_assert_uint_eq(set.count, 0);
  /* Errors, not hangs: four calls well under a second. */
  ck_assert_msg(seconds_since(&t0) < 1.0, "%.3f s", seconds_since(&t0));

  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(system(start), 0);
  fprintf(stderr, "server started in %.2f s\n", seconds_since(&t0));
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int pings = 0;
  while (ae_store_ping(s) != 0) {
    pings++;
    ck_assert_msg(seconds_since(&t0) < 15.0, "no reconnect: %s",
                  ae_store_errmsg(s));
    struct timespec pause = {0, 20000000L};
    nanosleep(&pause, NULL);
  }
  fprintf(stderr, "reconnected %.3f s after the start, %d failed pings\n",
          seconds_since(&t0), pings);
  ae_store_job after = queued_job("j_after", 3);
  ck_assert_int_eq(ae_store_insert(s, &after, 1), 0);
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 2);
  ck_assert_ptr_null(find_job(&set, "j_down"));
  /* A reconnect is not a restart: the running job stays running. */
  const ae_store_job *j = find_job(&set, "j_before");
  ck_assert_ptr_nonnull(j);
  ck_assert_int_eq(j->state, AE_JOB_RUNNING);
  ck_assert_int_eq(j->cancel_requested, 0);
  ck_assert_ptr_nonnull(find_job(&set, "j_after"));
  loaded_set_free(&set);
  ck_assert_int_eq(
      ae_store_finish(s, "j_before", AE_JOB_SUCCEEDED, "{}", NULL, 11, 12), 0);
  ae_store_latency h;
  ck_assert_int_eq(ae_store_latency_read(s, AE_STORE_OP_INSERT, &h), 0);
  ck_assert_uint_eq(h.errors, 1);

  /* A restart between two calls is not seen at all: the dead connection
   * is noticed before the next call, which reconnects. */
  ck_assert_int_eq(system(stop), 0);
  ck_assert_int_eq(system(start), 0);
  ae_store_job again = queued_job("j_again", 4);
  ck_assert_msg(ae_store_insert(s, &again, 1) == 0, "%s", ae_store_errmsg(s));
  ck_assert_int_eq(ae_store_mark_running(s, "j_again", "host:0", 13), 0);
  ae_store_close(s);
  remove_targets();
}
END_TEST
#endif

/* ---- the shared queue of a fleet (issue 15) ---- */

static ae_store *open_replica(const char *owner) {
  ae_store *s = NULL;
  char err[512] = "";
  int status = ae_store_open_shared(target, owner, &s, err, sizeof err);
  ck_assert_msg(status == 0, "open shared %s: %d %s", owner, status, err);
  return s;
}

typedef struct {
  char id[64];
  int attempts;
  ae_job_state state;
  char worker[64];
  int calls;
} claimed_job;

static int take_claim(void *ud, const ae_store_job *j, int attempts) {
  claimed_job *c = ud;
  snprintf(c->id, sizeof c->id, "%s", j->id);
  snprintf(c->worker, sizeof c->worker, "%s", j->worker ? j->worker : "");
  c->attempts = attempts;
  c->state = j->state;
  c->calls++;
  return 0;
}

/* The id claimed by s (NULL-terminated "" when none was queued). */
static claimed_job claim(ae_store *s, long long now_ms, long long lease_ms) {
  claimed_job c;
  memset(&c, 0, sizeof c);
  int status = ae_store_claim(s, "host:0", now_ms, lease_ms, take_claim, &c);
  ck_assert_msg(status == 0 || status == AE_ENOTFOUND, "claim: %d %s", status,
                ae_store_errmsg(s));
  ck_assert_int_eq(c.calls, status == 0 ? 1 : 0);
  return c;
}

static ae_job_state stored_state(ae_store *s, const char *id, loaded_set *set) {
  size_t before = set->count;
  ck_assert_int_eq(ae_store_get(s, id, collect_job, set), 0);
  ck_assert_uint_eq(set->count, before + 1);
  return set->jobs[before].job.state;
}

START_TEST(test_fleet_claim_order) {
  make_target();
  ae_store *a = open_replica("replica-a");
  ae_store *b = open_replica("replica-b");
  /* Lower priority first, then seq; two replicas take turns. */
  ae_store_job jobs[4] = {queued_job("j_1", 1), queued_job("j_2", 2),
                          queued_job("j_3", 3), queued_job("j_4", 4)};
  jobs[2].priority = -1;
  jobs[3].priority = 5;
  ck_assert_int_eq(ae_store_insert(b, jobs, 4), 0);
  const char *want[4] = {"j_3", "j_1", "j_2", "j_4"};
  for (int i = 0; i < 4; i++) {
    claimed_job c = claim(i % 2 ? b : a, 1000, 5000);
    ck_assert_str_eq(c.id, want[i]);
    ck_assert_int_eq(c.attempts, 1);
    ck_assert_int_eq(c.state, AE_JOB_RUNNING);
    ck_assert_str_eq(c.worker, "host:0");
  }
  claimed_job none = claim(a, 1000, 5000);
  ck_assert_str_eq(none.id, "");
  ae_store_close(a);
  ae_store_close(b);
  remove_targets();
}
END_TEST

START_TEST(test_fleet_guarded_finish) {
  make_target();
  ae_store *a = open_replica("replica-a");
  ae_store *b = open_replica("replica-b");
  ae_store_job jobs[2] = {queued_job("j_1", 1), queued_job("j_2", 2)};
  ck_assert_int_eq(ae_store_insert(a, jobs, 2), 0);
  ck_assert_str_eq(claim(a, 1000, 1000).id, "j_1");
  /* Not the owner: refused, nothing written. */
  ck_assert_int_eq(ae_store_finish(b, "j_1", AE_JOB_SUCCEEDED, "{\"by\":\"b\"}",
                                   NULL, 1500, 9000),
                   AE_EINVAL);
  ck_assert_int_eq(ae_store_mark_running(b, "j_1", "host:9", 1500), AE_EINVAL);
  /* The lease expires; B re-runs it (attempt 2); A's late end loses. */
  size_t requeued = 0, failed = 0;
  ck_assert_int_eq(
      ae_store_requeue_expired(b, 2500, 3, "{}", 0, &requeued, &failed), 0);
  ck_assert_uint_eq(requeued, 1);
  ck_assert_uint_eq(failed, 0);
  claimed_job c = claim(b, 2600, 1000);
  ck_assert_str_eq(c.id, "j_1");
  ck_assert_int_eq(c.attempts, 2);
  ck_assert_int_eq(ae_store_finish(a, "j_1", AE_JOB_SUCCEEDED, "{\"by\":\"a\"}",
                                   NULL, 2700, 9000),
                   AE_EINVAL);
  ck_assert_int_eq(ae_store_finish(b, "j_1", AE_JOB_SUCCEEDED, "{\"by\":\"b\"}",
                                   NULL, 2800, 9000),
                   0);
  ck_assert_int_eq(
      ae_store_finish(b, "j_1", AE_JOB_FAILED, NULL, "{}", 2900, 9000),
      AE_EINVAL); /* written once */
  loaded_set set = {0};
  ck_assert_int_eq(stored_state(a, "j_1", &set), AE_JOB_SUCCEEDED);
  ck_assert_str_eq(set.jobs[0].job.result_json, "{\"by\":\"b\"}");
  /* A drain gives a claimed job back, the claim not counted. */
  ck_assert_int_eq(ae_store_release(a, "j_2"), AE_EINVAL); /* not running */
  ck_assert_str_eq(claim(a, 2900, 1000).id, "j_2");
  ck_assert_int_eq(ae_store_release(b, "j_2"), AE_EINVAL); /* not b's */
  ck_assert_int_eq(ae_store_release(a, "j_2"), 0);
  ck_assert_int_eq(stored_state(b, "j_2", &set), AE_JOB_QUEUED);
  claimed_job again = claim(b, 2950, 1000);
  ck_assert_str_eq(again.id, "j_2");
  ck_assert_int_eq(again.attempts, 1);
  ck_assert_int_eq(ae_store_release(b, "j_2"), 0);
  /* A queued job is ended by anyone (a cancel from any replica). */
  ck_assert_int_eq(
      ae_store_finish(a, "j_2", AE_JOB_CANCELLED, NULL, NULL, 3000, 9000), 0);
  loaded_set_free(&set);
  ae_store_close(a);
  ae_store_close(b);
  remove_targets();
}
END_TEST

/* A job with key KEY (64 times the letter) that may wait (follow). */
static ae_store_job keyed_job(const char *id, long long seq, char letter,
                              int follow, long long ttl_ms) {
  static char keys[26][65];
  char *key = keys[(letter - 'a') % 26];
  memset(key, letter, 64);
  key[64] = '\0';
  ae_store_job j = queued_job(id, seq);
  j.cache_key = key;
  j.follow = follow;
  j.ttl_ms = ttl_ms;
  return j;
}

static size_t fleet_queued(ae_store *s) {
  size_t n = 99;
  ck_assert_msg(ae_store_count_queued(s, &n) == 0, "%s", ae_store_errmsg(s));
  return n;
}

/* Identical jobs in flight across a fleet (schema 6): a job that may wait
 * for any job in flight (follow 2) inserted on B waits for A's, is neither
 * claimable nor counted, and takes its result when it succeeds (cached,
 * its own expiry); a plain job (follow 1) identical to it is claimable but
 * an identical second item of its own insert waits for it; when the
 * leader is cancelled, fails or is removed, the oldest follower becomes
 * claimable and the others wait for it; a waiting job cancels alone. */
START_TEST(test_fleet_followers) {
  make_target();
  ae_store *a = open_replica("replica-a");
  ae_store *b = open_replica("replica-b");
  ae_store_job lead = keyed_job("j_lead", 1, 'a', 1, 3600000);
  ck_assert_int_eq(ae_store_insert(a, &lead, 1), 0);
  ck_assert_str_eq(claim(a, 1000, 60000).id, "j_lead");
  ae_store_job more[4] = {
      keyed_job("j_f1", 2, 'a', 2, 5000), keyed_job("j_f2", 3, 'a', 2, -1),
      keyed_job("j_other", 4, 'b', 2, 0), keyed_job("j_f3", 7, 'a', 2, 0)};
  ck_assert_msg(ae_store_insert(b, more, 4) == 0, "%s", ae_store_errmsg(b));
  ae_store_job plain[2] = {keyed_job("j_p1", 5, 'a', 1, 5000),
                           keyed_job("j_p2", 6, 'a', 1, 5000)};
  ck_assert_int_eq(ae_store_insert(b, plain, 2), 0);
  ck_assert_uint_eq(fleet_queued(a), 2); /* j_other, j_p1 */
  ck_assert_str_eq(claim(b, 1100, 60000).id, "j_other");
  ck_assert_str_eq(claim(b, 1100, 60000).id, "j_p1");
  ck_assert_str_eq(claim(b, 1100, 60000).id, "");
  ck_assert_uint_eq(fleet_queued(b), 0);
  ck_assert_int_eq(ae_store_finish(a, "j_lead", AE_JOB_SUCCEEDED, "{\"r\":1}",
                                   NULL, 2000, 3602000),
                   0);
  loaded_set set = {0};
  ck_assert_int_eq(stored_state(b, "j_f1", &set), AE_JOB_SUCCEEDED);
  ck_assert_int_eq(stored_state(b, "j_f2", &set), AE_JOB_SUCCEEDED);
  for (int i = 0; i < 2; i++) {
    ck_assert_str_eq(set.jobs[i].job.result_json, "{\"r\":1}");
    ck_assert_int_eq(set.jobs[i].job.cached, 1);
    ck_assert_int_eq(set.jobs[i].job.finished_ms, 2000);
  }
  ck_assert_int_eq(set.jobs[0].job.expires_ms, 7000);
  ck_assert_int_eq(set.jobs[1].job.expires_ms, 0); /* -1: never */
  /* A TTL of 0 (--job-ttl-secs=0) expires at once, not never. */
  ck_assert_int_eq(stored_state(b, "j_f3", &set), AE_JOB_SUCCEEDED);
  ck_assert_int_eq(set.jobs[2].job.expires_ms, 2000);
  /* j_p2 waits for j_p1 (its insert's first), not for j_lead. */
  ck_assert_int_eq(stored_state(b, "j_p2", &set), AE_JOB_QUEUED);
  ck_assert_int_eq(
      ae_store_finish(b, "j_p1", AE_JOB_FAILED, NULL, "{}", 2100, 9000), 0);
  ck_assert_uint_eq(fleet_queued(a), 1);
  ck_assert_str_eq(claim(a, 2200, 60000).id, "j_p2");

  /* The leader cancelled while queued: the oldest follower computes, the
   * next waits for it; a follower cancelled ends alone. */
  ae_store_job lead2 = keyed_job("j_lead2", 10, 'c', 2, 0);
  ck_assert_int_eq(ae_store_insert(a, &lead2, 1), 0);
  ae_store_job g[3] = {keyed_job("j_g1", 11, 'c', 2, 0),
                       keyed_job("j_g2", 12, 'c', 2, 0),
                       keyed_job("j_g3", 13, 'c', 2, 0)};
  ck_assert_int_eq(ae_store_insert(b, g, 3), 0);
  ck_assert_uint_eq(fleet_queued(b), 1);
  ck_assert_int_eq(
      ae_store_finish(a, "j_g3", AE_JOB_CANCELLED, NULL, NULL, 3000, 9000), 0);
  ck_assert_int_eq(
      ae_store_finish(b, "j_lead2", AE_JOB_CANCELLED, NULL, NULL, 3000, 9000),
      0);
  ck_assert_uint_eq(fleet_queued(a), 1);
  ck_assert_str_eq(claim(a, 3100, 60000).id, "j_g1");
  ck_assert_str_eq(claim(a, 3100, 60000).id, "");
  ck_assert_int_eq(ae_store_finish(a, "j_g1", AE_JOB_SUCCEEDED, "{\"r\":2}",
                                   NULL, 3200, 9000),
                   0);
  size_t at = set.count;
  ck_assert_int_eq(stored_state(b, "j_g2", &set), AE_JOB_SUCCEEDED);
  ck_assert_str_eq(set.jobs[at].job.result_json, "{\"r\":2}");
  ck_assert_int_eq(stored_state(b, "j_g3", &set), AE_JOB_CANCELLED);

  /* The leader removed (its study deleted) or failed by its lease: a
   * follower computes. */
  ae_store_job lead3 = keyed_job("j_lead3", 20, 'd', 2, 0);
  ae_store_job h = keyed_job("j_h", 21, 'd', 2, 0);
  ck_assert_int_eq(ae_store_insert(a, &lead3, 1), 0);
  ck_assert_int_eq(ae_store_insert(b, &h, 1), 0);
  ck_assert_int_eq(ae_store_delete(a, "j_lead3"), 0);
  ck_assert_str_eq(claim(b, 4000, 1000).id, "j_h");
  ae_store_job k = keyed_job("j_k", 22, 'd', 2, 0);
  ck_assert_int_eq(ae_store_insert(a, &k, 1), 0); /* waits for j_h */
  ck_assert_str_eq(claim(a, 4100, 1000).id, "");
  size_t requeued = 0, failed = 0;
  ck_assert_int_eq(
      ae_store_requeue_expired(a, 6000, 1, "{}", 0, &requeued, &failed), 0);
  ck_assert_uint_eq(failed, 1);
  ck_assert_str_eq(claim(a, 6100, 1000).id, "j_k");
  loaded_set_free(&set);
  ae_store_close(a);
  ae_store_close(b);
  remove_targets();
}
END_TEST

/* A study deleted on one replica while its members run on another: the
 * running ones stay (with the study's id) until their end removes them,
 * or the expiry of their lease; the others go with the study. */
START_TEST(test_fleet_study_delete_running) {
  make_target();
  ae_store *a = open_replica("replica-a");
  ae_store *b = open_replica("replica-b");
  ae_store_study st = {.id = "s_x",
                       .name = "x",
                       .request_json = "{}",
                       .created_ms = 1,
                       .seq = 1};
  ck_assert_int_eq(ae_store_study_insert(a, &st), 0);
  st.id = "s_y";
  ck_assert_int_eq(ae_store_study_insert(a, &st), 0);
  ae_store_job jobs[6] = {queued_job("j_r", 1), queued_job("j_r2", 2),
                          queued_job("j_y", 3), queued_job("j_q", 4),
                          queued_job("j_d", 5), queued_job("j_p", 6)};
  for (int i = 0; i < 5; i++)
    jobs[i].study = i == 2 ? "s_y" : "s_x";
  jobs[4].state = AE_JOB_SUCCEEDED;
  jobs[4].result_json = "{}";
  ck_assert_int_eq(ae_store_insert(a, jobs, 6), 0);
  ck_assert_str_eq(claim(b, 1000, 1000).id, "j_r");
  ck_assert_str_eq(claim(b, 1000, 1000).id, "j_r2");
  ck_assert_str_eq(claim(b, 1000, 1000).id, "j_y");
  ck_assert_int_eq(ae_store_study_delete(a, "s_x"), 0);
  loaded_set set = {0};
  /* The queued and the finished member went; the running ones stay. */
  ck_assert_int_eq(ae_store_get(a, "j_q", collect_job, &set), AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_get(a, "j_d", collect_job, &set), AE_ENOTFOUND);
  ck_assert_int_eq(stored_state(a, "j_r", &set), AE_JOB_RUNNING);
  /* Not the owner: refused, the row stays. */
  ck_assert_int_eq(
      ae_store_finish(a, "j_r", AE_JOB_CANCELLED, NULL, NULL, 1100, 0),
      AE_EINVAL);
  /* The owner's end removes it. */
  ck_assert_int_eq(
      ae_store_finish(b, "j_r", AE_JOB_CANCELLED, NULL, NULL, 1100, 0), 0);
  ck_assert_int_eq(ae_store_get(a, "j_r", collect_job, &set), AE_ENOTFOUND);
  ck_assert_int_eq(
      ae_store_finish(b, "j_r", AE_JOB_CANCELLED, NULL, NULL, 1100, 0),
      AE_ENOTFOUND);
  /* A member of a study still there ends as always. */
  ck_assert_int_eq(
      ae_store_finish(b, "j_y", AE_JOB_SUCCEEDED, "{\"y\":1}", NULL, 1100, 0),
      0);
  ck_assert_int_eq(stored_state(a, "j_y", &set), AE_JOB_SUCCEEDED);
  /* Its replica died: the expired lease removes it, not counted. */
  size_t requeued = 9, failed = 9;
  ck_assert_int_eq(
      ae_store_requeue_expired(a, 5000, 3, "{}", 0, &requeued, &failed), 0);
  ck_assert_uint_eq(requeued, 0);
  ck_assert_uint_eq(failed, 0);
  ck_assert_int_eq(ae_store_get(a, "j_r2", collect_job, &set), AE_ENOTFOUND);
  ck_assert_int_eq(stored_state(a, "j_p", &set), AE_JOB_QUEUED);
  loaded_set_free(&set);
  ae_store_close(a);
  ae_store_close(b);
  remove_targets();
}
END_TEST

typedef struct {
  char ids[8][16];
  int cancel[8];
  int n;
} beat_set;

static int take_beat(void *ud, const char *id, int cancel_requested) {
  beat_set *b = ud;
  ck_assert_int_lt(b->n, 8);
  snprintf(b->ids[b->n], sizeof b->ids[b->n], "%s", id);
  b->cancel[b->n++] = cancel_requested;
  return 0;
}

START_TEST(test_fleet_heartbeat_and_attempts) {
  make_target();
  ae_store *a = open_replica("replica-a");
  ae_store *b = open_replica("replica-b");
  ae_store_job job = queued_job("j_1", 1);
  ck_assert_int_eq(ae_store_insert(a, &job, 1), 0);
  ck_assert_str_eq(claim(a, 1000, 1000).id, "j_1"); /* lease to 2000 */
  /* A cancel asked on B reaches A through its heartbeat. */
  ck_assert_int_eq(ae_store_mark_cancel_requested(b, "j_1"), 0);
  beat_set beats = {.n = 0};
  ck_assert_int_eq(ae_store_heartbeat(a, 1500, 1000, take_beat, &beats), 0);
  ck_assert_int_eq(beats.n, 1);
  ck_assert_str_eq(beats.ids[0], "j_1");
  ck_assert_int_eq(beats.cancel[0], 1);
  beats.n = 0;
  ck_assert_int_eq(ae_store_heartbeat(b, 1500, 1000, take_beat, &beats), 0);
  ck_assert_int_eq(beats.n, 0); /* B runs nothing */
  /* Renewed to 2500: not expired at 2400, expired at 2600. */
  size_t requeued = 9, failed = 9;
  const char *error = "{\"detail\":\"the job's worker died %ATTEMPTS% times\"}";
  ck_assert_int_eq(
      ae_store_requeue_expired(b, 2400, 2, error, 0, &requeued, &failed), 0);
  ck_assert_uint_eq(requeued + failed, 0);
  ck_assert_int_eq(
      ae_store_requeue_expired(b, 2600, 2, error, 0, &requeued, &failed), 0);
  ck_assert_uint_eq(requeued, 1);
  ck_assert_uint_eq(failed, 0);
  loaded_set set = {0};
  ck_assert_int_eq(stored_state(a, "j_1", &set), AE_JOB_QUEUED);
  ck_assert_ptr_null(set.jobs[0].job.worker);
  ck_assert_int_eq(set.jobs[0].job.started_ms, 0);
  /* Claimed a second time, and that owner dies too: past 2 attempts the
   * job fails with the error, once, and is not re-queued. */
  ck_assert_int_eq(claim(b, 3000, 1000).attempts, 2);
  ck_assert_int_eq(
      ae_store_requeue_expired(a, 4001, 2, error, 99000, &requeued, &failed),
      0);
  ck_assert_uint_eq(requeued, 0);
  ck_assert_uint_eq(failed, 1);
  ck_assert_int_eq(stored_state(a, "j_1", &set), AE_JOB_FAILED);
  ck_assert_str_eq(set.jobs[1].job.error_json,
                   "{\"detail\":\"the job's worker died 2 times\"}");
  ck_assert_int_eq(set.jobs[1].job.finished_ms, 4001);
  ck_assert_int_eq(set.jobs[1].job.expires_ms, 99000);
  ck_assert_str_eq(claim(a, 5000, 1000).id, "");
  ck_assert_int_eq(
      ae_store_finish(b, "j_1", AE_JOB_SUCCEEDED, "{}", NULL, 5000, 9000),
      AE_EINVAL);
  loaded_set_free(&set);
  ae_store_close(a);
  ae_store_close(b);
  remove_targets();
}
END_TEST

START_TEST(test_fleet_same_id_restarts) {
  make_target();
  ae_store *a = open_replica("replica-a");
  ae_store *b = open_replica("replica-b");
  ae_store_job jobs[2] = {queued_job("j_1", 1), queued_job("j_2", 2)};
  ck_assert_int_eq(ae_store_insert(a, jobs, 2), 0);
  ck_assert_str_eq(claim(a, 1000, 60000).id, "j_1");
  ck_assert_str_eq(claim(b, 1000, 60000).id, "j_2");
  ae_store_close(a); /* a dies; it comes back under the same id */
  a = open_replica("replica-a");
  loaded_set set = {0};
  ck_assert_int_eq(stored_state(b, "j_1", &set), AE_JOB_QUEUED);
  ck_assert_int_eq(stored_state(b, "j_2", &set), AE_JOB_RUNNING); /* b's */
  ck_assert_int_eq(claim(a, 2000, 60000).attempts, 2);
  loaded_set_free(&set);
  ae_store_close(a);
  ae_store_close(b);
  remove_targets();
}
END_TEST

typedef struct {
  char text[512];
} notes;

static int take_note(void *ud, const char *payload) {
  notes *n = ud;
  size_t used = strlen(n->text);
  snprintf(n->text + used, sizeof n->text - used, "%s%s", used ? "," : "",
           payload);
  return 0;
}

/* Waits up to 5 s until the notes end with want. */
static void wait_notes(ae_store *s, int fd, notes *n, const char *want) {
  for (int i = 0; i < 50; i++) {
    size_t len = strlen(n->text), wlen = strlen(want);
    if (len >= wlen && !strcmp(n->text + len - wlen, want)) return;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    poll(&p, 1, 100);
    ck_assert_int_eq(ae_store_notifications(s, take_note, n), 0);
  }
  ck_abort_msg("notes '%s', wanted them to end with '%s'", n->text, want);
}

START_TEST(test_fleet_notifications) {
  make_target();
  ae_store *a = open_replica("replica-a");
  ae_store *b = open_replica("replica-b");
  int fd = -1;
  ck_assert_int_eq(ae_store_listen(a, &fd), 0);
  ck_assert_int_ge(fd, 0);
  notes n = {.text = ""};
  ae_store_job job = queued_job("j_1", 1);
  ck_assert_int_eq(ae_store_insert(b, &job, 1), 0);
  wait_notes(a, fd, &n, "j_1 queued");
  ck_assert_str_eq(claim(b, 1000, 1000).id, "j_1");
  wait_notes(a, fd, &n, "j_1 running");
  ck_assert_int_eq(
      ae_store_finish(b, "j_1", AE_JOB_SUCCEEDED, "{}", NULL, 1100, 9000), 0);
  wait_notes(a, fd, &n, "j_1 succeeded");
  ck_assert_str_eq(n.text, "j_1 queued,j_1 running,j_1 succeeded");
  /* Listening again (after a lost connection) works. */
  ck_assert_int_eq(ae_store_listen(a, &fd), 0);
  ck_assert_int_eq(ae_store_mark_cancel_requested(b, "j_1"), 0);
  ck_assert_int_eq(ae_store_delete(b, "j_1"), 0); /* no state change */
  n.text[0] = '\0';
  job = queued_job("j_2", 2);
  ck_assert_int_eq(ae_store_insert(b, &job, 1), 0);
  wait_notes(a, fd, &n, "j_2 queued");
  ck_assert_str_eq(n.text, "j_2 queued");
  ae_store_close(a);
  ae_store_close(b);
  remove_targets();
}
END_TEST

/* Replicas in separate processes claim concurrently: every job is
 * claimed exactly once (FOR UPDATE SKIP LOCKED), and the claims spread. */
#define RACE_REPLICAS 4
#define RACE_JOBS 200

static void race_replica(int index, int fd) {
  char owner[32];
  snprintf(owner, sizeof owner, "race-%d", index);
  ae_store *s = NULL;
  char err[256];
  if (ae_store_open_shared(target, owner, &s, err, sizeof err)) _exit(2);
  for (;;) {
    claimed_job c;
    memset(&c, 0, sizeof c);
    int status = ae_store_claim(s, "host:0", 1000, 60000, take_claim, &c);
    if (status == AE_ENOTFOUND) break;
    if (status) _exit(3);
    char line[80];
    int len = snprintf(line, sizeof line, "%d %s\n", index, c.id);
    if (write(fd, line, (size_t)len) != len) _exit(4);
    if (ae_store_finish(s, c.id, AE_JOB_SUCCEEDED, "{}", NULL, 2000, 9000))
      _exit(5);
  }
  ae_store_close(s);
  _exit(0);
}

START_TEST(test_fleet_claims_race) {
  make_target();
  ae_store *s = open_replica("loader");
  ae_store_job *jobs = calloc(RACE_JOBS, sizeof *jobs);
  char(*ids)[16] = calloc(RACE_JOBS, sizeof *ids);
  ck_assert_ptr_nonnull(jobs);
  ck_assert_ptr_nonnull(ids);
  for (int i = 0; i < RACE_JOBS; i++) {
    snprintf(ids[i], sizeof ids[i], "j_%d", i);
    jobs[i] = queued_job(ids[i], i + 1);
  }
  ck_assert_int_eq(ae_store_insert(s, jobs, RACE_JOBS), 0);
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  pid_t pids[RACE_REPLICAS];
  for (int r = 0; r < RACE_REPLICAS; r++) {
    pids[r] = fork();
    ck_assert_int_ge(pids[r], 0);
    if (pids[r] == 0) {
      close(fds[0]);
      race_replica(r, fds[1]);
    }
  }
  close(fds[1]);
  FILE *in = fdopen(fds[0], "r");
  ck_assert_ptr_nonnull(in);
  int claimed[RACE_JOBS] = {0}, by[RACE_REPLICAS] = {0};
  int index, total = 0;
  char id[32];
  while (fscanf(in, "%d %31s", &index, id) == 2) {
    int n = atoi(id + 2);
    ck_assert(n >= 0 && n < RACE_JOBS && index >= 0 && index < RACE_REPLICAS);
    claimed[n]++;
    by[index]++;
    total++;
  }
  fclose(in);
  for (int r = 0; r < RACE_REPLICAS; r++) {
    int wstatus;
    ck_assert_int_eq(waitpid(pids[r], &wstatus, 0), pids[r]);
    ck_assert_msg(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0,
                  "replica %d: status %d", r, wstatus);
  }
  ck_assert_int_eq(total, RACE_JOBS);
  for (int i = 0; i < RACE_JOBS; i++)
    ck_assert_msg(claimed[i] == 1, "job %d claimed %d times", i, claimed[i]);
  int busy = 0;
  for (int r = 0; r < RACE_REPLICAS; r++)
    busy += by[r] > 0;
  fprintf(stderr, "claims per replica: %d %d %d %d\n", by[0], by[1], by[2],
          by[3]);
  ck_assert_int_ge(busy, 2);
  free(jobs);
  free(ids);
  ae_store_close(s);
  remove_targets();
}
END_TEST

START_TEST(test_fleet_needs_postgresql) {
  make_target();
  ae_store *s = NULL;
  char err[256] = "";
  ck_assert_int_eq(ae_store_open_shared(target, "r", &s, err, sizeof err),
                   AE_EUNSUPPORTED);
  ck_assert_ptr_null(s);
  ck_assert_msg(strstr(err, "PostgreSQL") != NULL, "%s", err);
  s = open_store(target, AE_STORE_SYNC_NORMAL);
  claimed_job c;
  ck_assert_int_eq(ae_store_claim(s, "w", 1, 1, take_claim, &c),
                   AE_EUNSUPPORTED);
  ck_assert_int_eq(ae_store_heartbeat(s, 1, 1, NULL, NULL), AE_EUNSUPPORTED);
  ck_assert_int_eq(ae_store_requeue_expired(s, 1, 1, "{}", 0, NULL, NULL),
                   AE_EUNSUPPORTED);
  ck_assert_int_eq(ae_store_release(s, "j_1"), AE_EUNSUPPORTED);
  int fd;
  ck_assert_int_eq(ae_store_listen(s, &fd), AE_EUNSUPPORTED);
  ae_store_close(s);
  remove_targets();
}
END_TEST

/* --fleet (issue 15): one study by id or idempotency key, and its members
 * in the order they were added (seq), read by any replica; SQLite has no
 * such reads (a daemon alone holds its studies in memory). */
static int collect_member(void *ud, const ae_store_job *j) {
  char *out = ud;
  size_t used = strlen(out);
  snprintf(out + used, 1024 - used, "%s %s %s;", j->id,
           ae_store_state_name(j->state),
           j->result_json ? j->result_json : "-");
  return 0;
}

START_TEST(test_study_get_and_members) {
  make_target();
  ae_store *s = open_store(target, AE_STORE_SYNC_FULL);
  ae_store_study a = {.id = "s_a",
                      .name = "first",
                      .request_json = "{\"name\":\"first\"}",
                      .idempotency_key = "k1",
                      .body_hash = "h1",
                      .created_ms = 1790000000000LL,
                      .seq = 7};
  ck_assert_int_eq(ae_store_study_insert(s, &a), 0);
  char seen[1024] = "";
  if (test_backend == AE_STORE_BACKEND_SQLITE) {
    ck_assert_int_eq(ae_store_study_get(s, "s_a", NULL, collect_study, seen),
                     AE_EUNSUPPORTED);
    ck_assert_int_eq(ae_store_study_members(s, "s_a", collect_member, seen),
                     AE_EUNSUPPORTED);
    ae_store_close(s);
    remove_targets();
    return;
  }
  /* Members in seq order, not insert order; another study's job and a
   * plain job left out. */
  ae_store_job jobs[4] = {queued_job("j_3", 30), queued_job("j_1", 10),
                          queued_job("j_2", 20), queued_job("j_4", 40)};
  jobs[0].study = jobs[1].study = jobs[2].study = "s_a";
  jobs[1].state = AE_JOB_SUCCEEDED;
  jobs[1].result_json = "{\"r\":1}";
  ck_assert_int_eq(ae_store_insert(s, jobs, 4), 0);
  ck_assert_int_eq(ae_store_study_get(s, "s_a", NULL, collect_study, seen), 0);
  ck_assert_str_eq(seen, "s_a first {\"name\":\"first\"} k1 1790000000000 7;");
  seen[0] = '\0';
  ck_assert_int_eq(ae_store_study_get(s, NULL, "k1", collect_study, seen), 0);
  ck_assert_str_eq(seen, "s_a first {\"name\":\"first\"} k1 1790000000000 7;");
  ck_assert_int_eq(ae_store_study_get(s, "s_none", NULL, collect_study, seen),
                   AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_study_get(s, NULL, "k2", collect_study, seen),
                   AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_study_get(s, NULL, NULL, collect_study, seen),
                   AE_EINVAL);
  seen[0] = '\0';
  ck_assert_int_eq(ae_store_study_members(s, "s_a", collect_member, seen), 0);
  ck_assert_str_eq(seen, "j_1 succeeded {\"r\":1};j_2 queued -;j_3 queued -;");
  seen[0] = '\0';
  ck_assert_int_eq(ae_store_study_members(s, "s_none", collect_member, seen),
                   0);
  ck_assert_str_eq(seen, "");
  /* After a delete: no study, and its finished member is gone. */
  ck_assert_int_eq(ae_store_study_delete(s, "s_a"), 0);
  ck_assert_int_eq(ae_store_study_get(s, "s_a", NULL, collect_study, seen),
                   AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_study_members(s, "s_a", collect_member, seen), 0);
  ck_assert_str_eq(seen, "");
  ae_store_close(s);
  remove_targets();
}
END_TEST

static Suite *store_suite(void) {
  Suite *suite = suite_create("store");
  int sqlite = test_backend == AE_STORE_BACKEND_SQLITE;
  /* The store's semantics, on the backend of this run. */
  TCase *tc = tcase_create(sqlite ? "sqlite" : "postgresql");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_round_trip_every_field);
  tcase_add_test(tc, test_load_follows_seq_not_insert_order);
  tcase_add_test(tc, test_batch_is_all_or_nothing);
  tcase_add_test(tc, test_transitions);
  tcase_add_test(tc, test_expire);
  tcase_add_test(tc, test_delete);
  tcase_add_test(tc, test_get_one);
  tcase_add_test(tc, test_list_pages);
  tcase_add_test(tc, test_list_pages_seq_ties);
  tcase_add_test(tc, test_load_stops_when_asked);
  tcase_add_test(tc, test_write_during_load);
  tcase_add_test(tc, test_reopen_keeps_everything);
  tcase_add_test(tc, test_second_opener_refused);
  tcase_add_test(tc, test_sigkill_mid_write_keeps_acknowledged);
  tcase_add_test(tc, test_latency_counts);
  tcase_add_test(tc, test_load_many_in_order);
  tcase_add_test(tc, test_latency_report);
  tcase_add_test(tc, test_studies_and_cache);
  tcase_add_test(tc, test_study_get_and_members);
  tcase_add_test(tc, test_models);
  if (sqlite) {
    tcase_add_test(tc, test_sqlite_open_errors);
    tcase_add_test(tc, test_sqlite_migrates_v1);
    tcase_add_test(tc, test_fleet_needs_postgresql);
  } else {
#ifdef HAVE_LIBPQ
    tcase_add_test(tc, test_fleet_claim_order);
    tcase_add_test(tc, test_fleet_guarded_finish);
    tcase_add_test(tc, test_fleet_followers);
    tcase_add_test(tc, test_fleet_study_delete_running);
    tcase_add_test(tc, test_fleet_heartbeat_and_attempts);
    tcase_add_test(tc, test_fleet_claims_race);
    tcase_add_test(tc, test_fleet_same_id_restarts);
    tcase_add_test(tc, test_fleet_notifications);
    tcase_add_test(tc, test_pg_schema_versions);
    tcase_add_test(tc, test_pg_study_key_unique);
    tcase_add_test(tc, test_pg_open_errors);
    tcase_add_test(tc, test_pg_bad_text);
#endif
  }
  suite_add_tcase(suite, tc);
  if (sqlite) {
    TCase *neutral = tcase_create("neutral");
    tcase_add_test(neutral, test_backend_of);
    tcase_add_test(neutral, test_open_url_chooses_backend);
    tcase_add_test(neutral, test_resolve_url);
    tcase_add_test(neutral, test_redact_url);
    suite_add_tcase(suite, neutral);
  }
#ifdef HAVE_LIBPQ
  if (!sqlite) {
    /* Last: it stops and starts the shared server. */
    TCase *outage = tcase_create("reconnect");
    tcase_set_timeout(outage, 90);
    tcase_add_test(outage, test_pg_reconnect);
    suite_add_tcase(suite, outage);
  }
#endif
  return suite;
}

int main(int argc, char **argv) {
  const char *backend = argc > 1 ? argv[1] : "sqlite";
  if (strcmp(backend, "postgresql") == 0) {
#ifdef HAVE_LIBPQ
    const char *dsn = getenv("AE_TEST_PG_DSN");
    if (!dsn || !*dsn) {
      fprintf(stderr, "test_store: no AE_TEST_PG_DSN (run it through "
                      "tests/pg_cluster.sh run): skipped\n");
      return 77;
    }
    test_backend = AE_STORE_BACKEND_POSTGRESQL;
#else
    fprintf(stderr, "test_store: built without libpq: PostgreSQL tests "
                    "skipped\n");
    return 77;
#endif
  } else if (strcmp(backend, "sqlite") != 0) {
    fprintf(stderr, "usage: test_store [sqlite|postgresql]\n");
    return 2;
  }
  SRunner *runner = srunner_create(store_suite());
  srunner_run_all(runner, CK_NORMAL);
  int failures = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failures != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
