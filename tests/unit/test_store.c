/* test_store.c: unit tests of the SQLite job store (server/store.h).
 *
 * Each test works in its own temporary state dir, removed at the end.  The
 * crash test forks a writer, kills it with SIGKILL in the middle of a loop
 * of inserts and checks that every insert it acknowledged (through a pipe,
 * after ae_store_insert returned 0) is there when the store is reopened.
 * Thread: single-threaded (Check forks each test). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

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
  l->job.idempotency_key = l->idempotency_key =
      dup_or_null(j->idempotency_key);
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

static void assert_same_job(const ae_store_job *got,
                            const ae_store_job *want) {
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
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
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

static ae_store *open_store(const char *dir, ae_store_sync sync) {
  ae_store *s = NULL;
  char err[256] = "";
  int status = ae_store_open(dir, sync, &s, err, sizeof err);
  ck_assert_msg(status == 0, "open %s: %d %s", dir, status, err);
  ck_assert_ptr_nonnull(s);
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
  make_state_dir();
  ae_store *s = open_store(state_dir, AE_STORE_SYNC_FULL);
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
  remove_tree(state_dir);
}
END_TEST

START_TEST(test_load_follows_seq_not_insert_order) {
  make_state_dir();
  ae_store *s = open_store(state_dir, AE_STORE_SYNC_NORMAL);
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
  remove_tree(state_dir);
}
END_TEST

START_TEST(test_batch_is_all_or_nothing) {
  make_state_dir();
  ae_store *s = open_store(state_dir, AE_STORE_SYNC_FULL);
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
  remove_tree(state_dir);
}
END_TEST

START_TEST(test_transitions) {
  make_state_dir();
  ae_store *s = open_store(state_dir, AE_STORE_SYNC_FULL);
  ae_store_job jobs[3] = {queued_job("j_run", 1), queued_job("j_fail", 2),
                          queued_job("j_cancel", 3)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 3), 0);

  ck_assert_int_eq(ae_store_mark_running(s, "j_run", "host:0", 111), 0);
  ck_assert_int_eq(ae_store_mark_cancel_requested(s, "j_run"), 0);
  ck_assert_int_eq(ae_store_finish(s, "j_run", AE_JOB_SUCCEEDED,
                                   "{\"ok\":1}", NULL, 222, 3822),
                   0);
  /* A terminal job is finished once only, and never runs again. */
  ck_assert_int_eq(ae_store_finish(s, "j_run", AE_JOB_FAILED, NULL,
                                   "{\"code\":\"x\"}", 333, 3933),
                   AE_EINVAL);
  ck_assert_int_eq(ae_store_mark_running(s, "j_run", "host:1", 444),
                   AE_EINVAL);
  /* Not a terminal state. */
  ck_assert_int_eq(
      ae_store_finish(s, "j_fail", AE_JOB_RUNNING, NULL, NULL, 1, 2),
      AE_EINVAL);
  ck_assert_int_eq(ae_store_finish(s, "j_fail", AE_JOB_FAILED, NULL,
                                   "{\"code\":\"deadline_exceeded\"}", 500,
                                   4100),
                   0);
  ck_assert_int_eq(ae_store_finish(s, "j_cancel", AE_JOB_CANCELLED, NULL,
                                   NULL, 600, 4200),
                   0);
  /* Unknown ids. */
  ck_assert_int_eq(ae_store_mark_running(s, "j_none", "host:0", 1),
                   AE_ENOTFOUND);
  ck_assert_int_eq(ae_store_mark_cancel_requested(s, "j_none"),
                   AE_ENOTFOUND);
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
  remove_tree(state_dir);
}
END_TEST

START_TEST(test_expire) {
  make_state_dir();
  ae_store *s = open_store(state_dir, AE_STORE_SYNC_FULL);
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
  remove_tree(state_dir);
}
END_TEST

START_TEST(test_delete) {
  make_state_dir();
  ae_store *s = open_store(state_dir, AE_STORE_SYNC_FULL);
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
  remove_tree(state_dir);
}
END_TEST

static int stop_after_first(void *ud, const ae_store_job *j) {
  (void)j;
  int *calls = ud;
  (*calls)++;
  return 42;
}

START_TEST(test_load_stops_when_asked) {
  make_state_dir();
  ae_store *s = open_store(state_dir, AE_STORE_SYNC_FULL);
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
  remove_tree(state_dir);
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
  make_state_dir();
  ae_store *s = open_store(state_dir, AE_STORE_SYNC_FULL);
  ae_store_job jobs[3] = {queued_job("j_a", 1), queued_job("j_b", 2),
                          queued_job("j_c", 3)};
  ck_assert_int_eq(ae_store_insert(s, jobs, 3), 0);
  ck_assert_int_eq(
      ae_store_finish(s, "j_b", AE_JOB_SUCCEEDED, "{}", NULL, 1, 2), 0);
  ck_assert_int_eq(ae_store_load(s, finish_while_loading, s), 0);
  ae_store_close(s);

  s = open_store(state_dir, AE_STORE_SYNC_FULL);
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
  remove_tree(state_dir);
}
END_TEST

START_TEST(test_reopen_keeps_everything) {
  make_state_dir();
  char nested[512];
  snprintf(nested, sizeof nested, "%s/a/b/state", state_dir);
  ae_store *s = open_store(nested, AE_STORE_SYNC_FULL);
  struct stat st;
  ck_assert_int_eq(stat(nested, &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0700);

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
  remove_tree(state_dir);
}
END_TEST

START_TEST(test_open_errors) {
  make_state_dir();
  char path[512];
  snprintf(path, sizeof path, "%s/plainfile", state_dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fclose(f);
  ae_store *s = (ae_store *)&path; /* must be reset to NULL */
  char err[256] = "";
  ck_assert_int_eq(
      ae_store_open(path, AE_STORE_SYNC_FULL, &s, err, sizeof err), AE_EIO);
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
  for (int i = 0; i < 1000; i++) fputs("not a database ", f);
  fclose(f);
  ck_assert_int_eq(ae_store_open(dir, AE_STORE_SYNC_FULL, &s, err, sizeof err),
                   AE_EIO);
  ck_assert_ptr_null(s);
  ck_assert(strlen(err) > 0);
  remove_tree(state_dir);
}
END_TEST

START_TEST(test_second_opener_refused) {
  make_state_dir();
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
    int status = ae_store_open(state_dir, AE_STORE_SYNC_FULL, &held, err,
                               sizeof err);
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
  ck_assert_int_eq(ae_store_open(state_dir, AE_STORE_SYNC_FULL, &s, err,
                                 sizeof err),
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
  s = open_store(state_dir, AE_STORE_SYNC_FULL);
  loaded_set set;
  load_all(s, &set);
  ck_assert_uint_eq(set.count, 1);
  loaded_set_free(&set);
  ae_store_close(s);
  remove_tree(state_dir);
}
END_TEST

/* The child inserts jobs (one, then a batch of three, and so on) until
 * it is killed, and writes the number of jobs acknowledged so far to the
 * pipe after each insert returned 0. */
static void crash_writer(const char *dir, int ack_fd) {
  ae_store *s = NULL;
  char err[256];
  if (ae_store_open(dir, AE_STORE_SYNC_FULL, &s, err, sizeof err) != 0)
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
  make_state_dir();
  for (int round = 0; round < 3; round++) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/r%d", state_dir, round);
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
    unsigned target = 20 + (unsigned)(round * 37 % 50);
    while (seen < target) {
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
  remove_tree(state_dir);
}
END_TEST

static Suite *store_suite(void) {
  Suite *suite = suite_create("store");
  TCase *tc = tcase_create("sqlite");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_round_trip_every_field);
  tcase_add_test(tc, test_load_follows_seq_not_insert_order);
  tcase_add_test(tc, test_batch_is_all_or_nothing);
  tcase_add_test(tc, test_transitions);
  tcase_add_test(tc, test_expire);
  tcase_add_test(tc, test_delete);
  tcase_add_test(tc, test_load_stops_when_asked);
  tcase_add_test(tc, test_write_during_load);
  tcase_add_test(tc, test_reopen_keeps_everything);
  tcase_add_test(tc, test_open_errors);
  tcase_add_test(tc, test_second_opener_refused);
  tcase_add_test(tc, test_sigkill_mid_write_keeps_acknowledged);
  suite_add_tcase(suite, tc);
  return suite;
}

int main(void) {
  SRunner *runner = srunner_create(store_suite());
  srunner_run_all(runner, CK_NORMAL);
  int failures = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failures != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
