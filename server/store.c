/* store.c: the public job store (store.h) over its backends.
 *
 * Design.  An ae_store is a backend's handle and operations table
 * (store.h, the section for backends) plus what every backend shares: the
 * latency histograms and the choice of backend from the --store target.  Each
 * public call is forwarded to the backend and timed with the monotonic
 * clock; a load's time excludes the time spent in the caller's callback.
 * This file also finds where the store URL comes from (flag, file, env)
 * and hides passwords for logs.  It holds no SQL and no I/O of its own
 * besides reading the --store-file.
 *
 * Thread: an ae_store (histograms included) belongs to the loop thread
 * that opened it; nothing here is shared between threads. */
#include "config.h"

#include "server/store.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/status.h"

struct ae_store {
  const ae_store_ops *ops;
  void *impl;
  ae_store_latency latency[AE_STORE_OP_COUNT];
};

const double ae_store_latency_bounds[AE_STORE_LATENCY_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,   0.025,   0.05,   0.1,   0.5,    2.5};

/* ---- choosing a backend ---- */

ae_store_backend_kind ae_store_backend_of(const char *target) {
  if (!target) return AE_STORE_BACKEND_SQLITE;
  if (strncmp(target, "postgresql://", 13) == 0 ||
      strncmp(target, "postgres://", 11) == 0)
    return AE_STORE_BACKEND_POSTGRESQL;
  /* A conninfo string: blanks, a keyword, blanks, '='. */
  const char *p = target;
  while (*p == ' ' || *p == '\t')
    p++;
  const char *word = p;
  while (isalpha((unsigned char)*p) || *p == '_')
    p++;
  if (p == word) return AE_STORE_BACKEND_SQLITE;
  while (*p == ' ' || *p == '\t')
    p++;
  return *p == '=' ? AE_STORE_BACKEND_POSTGRESQL : AE_STORE_BACKEND_SQLITE;
}

static int store_wrap(const ae_store_ops *ops, void *impl, ae_store **out,
                      char *err, size_t errlen) {
  ae_store *s = calloc(1, sizeof *s);
  if (!s) {
    ops->close(impl);
    snprintf(err, errlen, "store: out of memory");
    return AE_EIO;
  }
  s->ops = ops;
  s->impl = impl;
  *out = s;
  return 0;
}

int ae_store_open(const char *dir, ae_store_sync sync, ae_store **out,
                  char *err, size_t errlen) {
  char scratch[8];
  if (!err || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  if (!out) {
    snprintf(err, errlen, "store: no handle");
    return AE_EIO;
  }
  *out = NULL;
  void *impl = NULL;
  int status = ae_store_sqlite_open(dir, sync, &impl, err, errlen);
  if (status) return status;
  return store_wrap(&ae_store_sqlite_ops, impl, out, err, errlen);
}

int ae_store_open_url(const char *target, ae_store_sync sync, ae_store **out,
                      char *err, size_t errlen) {
  char scratch[8];
  if (!err || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  if (ae_store_backend_of(target) == AE_STORE_BACKEND_SQLITE)
    return ae_store_open(target, sync, out, err, errlen);
  if (!out) {
    snprintf(err, errlen, "store: no handle");
    return AE_EIO;
  }
  *out = NULL;
#ifdef HAVE_LIBPQ
  void *impl = NULL;
  int status = ae_store_pg_open(target, NULL, &impl, err, errlen);
  if (status) return status;
  return store_wrap(&ae_store_pg_ops, impl, out, err, errlen);
#else
  (void)sync;
  snprintf(err, errlen,
           "store: a PostgreSQL store was asked for, but this archevald was "
           "built without PostgreSQL (configure did not find libpq: install "
           "libpq-dev and build again)");
  return AE_EUNSUPPORTED;
#endif
}

int ae_store_open_shared(const char *target, const char *owner, ae_store **out,
                         char *err, size_t errlen) {
  char scratch[8];
  if (!err || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  if (!out || !target || !owner) {
    snprintf(err, errlen, "store: no handle, target or replica id");
    return AE_EINVAL;
  }
  *out = NULL;
  if (ae_store_backend_of(target) != AE_STORE_BACKEND_POSTGRESQL) {
    snprintf(err, errlen,
             "store: only a PostgreSQL store is shared by a "
             "fleet of daemons");
    return AE_EUNSUPPORTED;
  }
#ifdef HAVE_LIBPQ
  void *impl = NULL;
  int status = ae_store_pg_open(target, owner, &impl, err, errlen);
  if (status) return status;
  return store_wrap(&ae_store_pg_ops, impl, out, err, errlen);
#else
  snprintf(err, errlen,
           "store: a PostgreSQL store was asked for, but this archevald was "
           "built without PostgreSQL (configure did not find libpq)");
  return AE_EUNSUPPORTED;
#endif
}

/* ---- timing ---- */

static double store_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void store_record(ae_store *s, ae_store_op op, double seconds,
                         int status) {
  ae_store_latency *h = &s->latency[op];
  if (seconds < 0) seconds = 0;
  size_t bucket = 0;
  while (bucket < AE_STORE_LATENCY_BUCKETS &&
         seconds > ae_store_latency_bounds[bucket])
    bucket++;
  h->count[bucket]++;
  h->calls++;
  if (status) h->errors++;
  h->sum_s += seconds;
}

int ae_store_latency_read(const ae_store *s, ae_store_op op,
                          ae_store_latency *out) {
  if (!s || !out || (int)op < 0 || op >= AE_STORE_OP_COUNT) return AE_EINVAL;
  *out = s->latency[op];
  return 0;
}

/* ---- forwarding ---- */

int ae_store_insert(ae_store *s, const ae_store_job *jobs, size_t n) {
  if (!s) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->insert(s->impl, jobs, n);
  store_record(s, AE_STORE_OP_INSERT, store_now_s() - start, status);
  return status;
}

int ae_store_mark_running(ae_store *s, const char *id, const char *worker,
                          long long started_ms) {
  if (!s) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->mark_running(s->impl, id, worker, started_ms);
  store_record(s, AE_STORE_OP_UPDATE, store_now_s() - start, status);
  return status;
}

int ae_store_mark_cancel_requested(ae_store *s, const char *id) {
  if (!s) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->mark_cancel_requested(s->impl, id);
  store_record(s, AE_STORE_OP_UPDATE, store_now_s() - start, status);
  return status;
}

int ae_store_finish(ae_store *s, const char *id, ae_job_state state,
                    const char *result_json, const char *error_json,
                    long long finished_ms, long long expires_ms) {
  if (!s) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->finish(s->impl, id, state, result_json, error_json,
                              finished_ms, expires_ms);
  store_record(s, AE_STORE_OP_UPDATE, store_now_s() - start, status);
  return status;
}

int ae_store_delete(ae_store *s, const char *id) {
  if (!s) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->remove(s->impl, id);
  store_record(s, AE_STORE_OP_UPDATE, store_now_s() - start, status);
  return status;
}

int ae_store_expire(ae_store *s, long long now_ms) {
  if (!s) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->expire(s->impl, now_ms);
  store_record(s, AE_STORE_OP_EXPIRE, store_now_s() - start, status);
  return status;
}

/* The caller's callback, timed so that a load's latency is the store's
 * own time only. */
typedef struct {
  int (*fn)(void *ud, const ae_store_job *j);
  void *ud;
  double callback_s;
} store_load_call;

static int store_load_trampoline(void *ud, const ae_store_job *j) {
  store_load_call *call = ud;
  double start = store_now_s();
  int status = call->fn(call->ud, j);
  call->callback_s += store_now_s() - start;
  return status;
}

int ae_store_load(ae_store *s, int (*fn)(void *ud, const ae_store_job *j),
                  void *ud) {
  if (!s || !fn) return AE_EINVAL;
  store_load_call call = {.fn = fn, .ud = ud, .callback_s = 0};
  double start = store_now_s();
  int status = s->ops->load(s->impl, store_load_trampoline, &call);
  store_record(s, AE_STORE_OP_LOAD, store_now_s() - start - call.callback_s,
               status);
  return status;
}

int ae_store_get(ae_store *s, const char *id,
                 int (*fn)(void *ud, const ae_store_job *j), void *ud) {
  if (!s || !id || !fn) return AE_EINVAL;
  store_load_call call = {.fn = fn, .ud = ud, .callback_s = 0};
  double start = store_now_s();
  int status = s->ops->get(s->impl, id, store_load_trampoline, &call);
  store_record(s, AE_STORE_OP_READ, store_now_s() - start - call.callback_s,
               status && status != AE_ENOTFOUND);
  return status;
}

int ae_store_get_idem(ae_store *s, const char *key,
                      int (*fn)(void *ud, const ae_store_job *j), void *ud) {
  if (!s || !key || !fn) return AE_EINVAL;
  store_load_call call = {.fn = fn, .ud = ud, .callback_s = 0};
  double start = store_now_s();
  int status = s->ops->get_idem(s->impl, key, store_load_trampoline, &call);
  store_record(s, AE_STORE_OP_READ, store_now_s() - start - call.callback_s,
               status && status != AE_ENOTFOUND);
  return status;
}

int ae_store_list(ae_store *s, const ae_store_page *page,
                  int (*fn)(void *ud, const ae_store_job *j), void *ud) {
  if (!s || !page || !fn) return AE_EINVAL;
  store_load_call call = {.fn = fn, .ud = ud, .callback_s = 0};
  double start = store_now_s();
  int status = s->ops->list(s->impl, page, store_load_trampoline, &call);
  store_record(s, AE_STORE_OP_READ, store_now_s() - start - call.callback_s,
               status);
  return status;
}

/* ---- the shared queue ---- */

typedef struct {
  int (*fn)(void *ud, const ae_store_job *j, int attempts);
  void *ud;
  double callback_s;
} store_claim_call;

static int store_claim_trampoline(void *ud, const ae_store_job *j,
                                  int attempts) {
  store_claim_call *call = ud;
  double start = store_now_s();
  int status = call->fn(call->ud, j, attempts);
  call->callback_s += store_now_s() - start;
  return status;
}

int ae_store_claim(ae_store *s, const char *worker, long long now_ms,
                   long long lease_ms,
                   int (*fn)(void *ud, const ae_store_job *j, int attempts),
                   void *ud) {
  if (!s || !fn) return AE_EINVAL;
  if (!s->ops->claim) return AE_EUNSUPPORTED;
  store_claim_call call = {.fn = fn, .ud = ud, .callback_s = 0};
  double start = store_now_s();
  int status = s->ops->claim(s->impl, worker, now_ms, lease_ms,
                             store_claim_trampoline, &call);
  store_record(s, AE_STORE_OP_LEASE, store_now_s() - start - call.callback_s,
               status && status != AE_ENOTFOUND);
  return status;
}

int ae_store_heartbeat(ae_store *s, long long now_ms, long long lease_ms,
                       int (*fn)(void *ud, const char *id,
                                 int cancel_requested),
                       void *ud) {
  if (!s) return AE_EINVAL;
  if (!s->ops->heartbeat) return AE_EUNSUPPORTED;
  double start = store_now_s();
  int status = s->ops->heartbeat(s->impl, now_ms, lease_ms, fn, ud);
  store_record(s, AE_STORE_OP_LEASE, store_now_s() - start, status);
  return status;
}

int ae_store_release(ae_store *s, const char *id) {
  if (!s || !id) return AE_EINVAL;
  if (!s->ops->release) return AE_EUNSUPPORTED;
  double start = store_now_s();
  int status = s->ops->release(s->impl, id);
  store_record(s, AE_STORE_OP_LEASE, store_now_s() - start, status);
  return status;
}

int ae_store_count_queued(ae_store *s, size_t *out) {
  if (!s || !out) return AE_EINVAL;
  if (!s->ops->count_queued) return AE_EUNSUPPORTED;
  double start = store_now_s();
  int status = s->ops->count_queued(s->impl, out);
  store_record(s, AE_STORE_OP_READ, store_now_s() - start, status);
  return status;
}

int ae_store_listen(ae_store *s, int *fd) {
  if (!s || !fd) return AE_EINVAL;
  if (!s->ops->listen) return AE_EUNSUPPORTED;
  return s->ops->listen(s->impl, fd);
}

int ae_store_notifications(ae_store *s,
                           int (*fn)(void *ud, const char *payload), void *ud) {
  if (!s || !fn) return AE_EINVAL;
  if (!s->ops->notifications) return AE_EUNSUPPORTED;
  return s->ops->notifications(s->impl, fn, ud);
}

int ae_store_requeue_expired(ae_store *s, long long now_ms, int max_attempts,
                             const char *error_json,
                             long long failed_expires_ms, size_t *requeued,
                             size_t *failed) {
  if (!s) return AE_EINVAL;
  if (!s->ops->requeue_expired) return AE_EUNSUPPORTED;
  double start = store_now_s();
  int status =
      s->ops->requeue_expired(s->impl, now_ms, max_attempts, error_json,
                              failed_expires_ms, requeued, failed);
  store_record(s, AE_STORE_OP_LEASE, store_now_s() - start, status);
  return status;
}

int ae_store_mark_cached(ae_store *s, const char *id) {
  if (!s || !id) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->mark_cached(s->impl, id);
  store_record(s, AE_STORE_OP_UPDATE, store_now_s() - start, status);
  return status;
}

int ae_store_study_insert(ae_store *s, const ae_store_study *study) {
  if (!s || !study) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->study_insert(s->impl, study);
  store_record(s, AE_STORE_OP_STUDY, store_now_s() - start, status);
  return status;
}

int ae_store_study_delete(ae_store *s, const char *id) {
  if (!s || !id) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->study_delete(s->impl, id);
  store_record(s, AE_STORE_OP_STUDY, store_now_s() - start, status);
  return status;
}

int ae_store_study_load(ae_store *s,
                        int (*fn)(void *ud, const ae_store_study *st),
                        void *ud) {
  if (!s || !fn) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->study_load(s->impl, fn, ud);
  store_record(s, AE_STORE_OP_STUDY, store_now_s() - start, status);
  return status;
}

int ae_store_study_get(ae_store *s, const char *id, const char *idem_key,
                       int (*fn)(void *ud, const ae_store_study *st),
                       void *ud) {
  if (!s || !fn || (!id && !idem_key)) return AE_EINVAL;
  if (!s->ops->study_get) return AE_EUNSUPPORTED;
  double start = store_now_s();
  int status = s->ops->study_get(s->impl, id, idem_key, fn, ud);
  store_record(s, AE_STORE_OP_STUDY, store_now_s() - start, status);
  return status;
}

int ae_store_study_members(ae_store *s, const char *id,
                           int (*fn)(void *ud, const ae_store_job *j),
                           void *ud) {
  if (!s || !id || !fn) return AE_EINVAL;
  if (!s->ops->study_members) return AE_EUNSUPPORTED;
  double start = store_now_s();
  int status = s->ops->study_members(s->impl, id, fn, ud);
  store_record(s, AE_STORE_OP_STUDY, store_now_s() - start, status);
  return status;
}

int ae_store_cache_put(ae_store *s, const char *key, const char *canonical,
                       const char *result_json, long long created_ms) {
  if (!s || !key || !canonical || !result_json) return AE_EINVAL;
  double start = store_now_s();
  int status =
      s->ops->cache_put(s->impl, key, canonical, result_json, created_ms);
  store_record(s, AE_STORE_OP_CACHE, store_now_s() - start, status);
  return status;
}

int ae_store_cache_get(ae_store *s, const char *key,
                       int (*fn)(void *ud, const char *result_json), void *ud) {
  if (!s || !key || !fn) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->cache_get(s->impl, key, fn, ud);
  store_record(s, AE_STORE_OP_CACHE, store_now_s() - start,
               status == AE_ENOTFOUND ? 0 : status);
  return status;
}

int ae_store_model_put(ae_store *s, const ae_store_model *m, int *created) {
  if (!s || !m || !m->id || !m->bytes || !m->description_json ||
      !m->architecture_json || !created)
    return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->model_put(s->impl, m, created);
  store_record(s, AE_STORE_OP_MODEL, store_now_s() - start, status);
  return status;
}

int ae_store_model_get(ae_store *s, const char *id,
                       int (*fn)(void *ud, const ae_store_model *m), void *ud) {
  if (!s || !id || !fn) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->model_get(s->impl, id, fn, ud);
  store_record(s, AE_STORE_OP_MODEL, store_now_s() - start,
               status == AE_ENOTFOUND ? 0 : status);
  return status;
}

int ae_store_model_delete(ae_store *s, const char *id) {
  if (!s || !id) return AE_EINVAL;
  double start = store_now_s();
  int status = s->ops->model_delete(s->impl, id);
  store_record(s, AE_STORE_OP_MODEL, store_now_s() - start,
               status == AE_ENOTFOUND ? 0 : status);
  return status;
}

int ae_store_ping(ae_store *s) {
  if (!s) return AE_EINVAL;
  return s->ops->ping(s->impl);
}

void ae_store_close(ae_store *s) {
  if (!s) return;
  s->ops->close(s->impl);
  free(s);
}

const char *ae_store_errmsg(const ae_store *s) {
  if (!s) return "no store";
  return s->ops->errmsg(s->impl);
}

const char *ae_store_backend_name(const ae_store *s) {
  return s ? s->ops->name : "none";
}

/* ---- where the URL comes from ---- */

/* Reads the first line of PATH into out, without trailing blanks. */
static int store_read_url_file(const char *path, char *out, size_t outlen,
                               char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "--store-file %s: %s", path, strerror(errno));
    return AE_EIO;
  }
  out[0] = '\0';
  int status = 0;
  if (!fgets(out, (int)outlen, f)) {
    if (ferror(f)) {
      snprintf(err, errlen, "--store-file %s: cannot read it", path);
      status = AE_EIO;
    }
    out[0] = '\0';
  } else if (!strchr(out, '\n') && !feof(f)) {
    /* A line longer than the buffer could be a truncated password. */
    int next = fgetc(f);
    if (next != EOF) {
      snprintf(err, errlen,
               "--store-file %s: the URL is longer than %zu "
               "bytes",
               path, outlen - 1);
      status = AE_EINVAL;
    }
  }
  fclose(f);
  if (status) {
    out[0] = '\0';
    return status;
  }
  size_t len = strlen(out);
  while (len > 0 && isspace((unsigned char)out[len - 1]))
    out[--len] = '\0';
  if (len == 0) {
    snprintf(err, errlen, "--store-file %s: the file is empty", path);
    return AE_EINVAL;
  }
  return 0;
}

int ae_store_resolve_url(const char *flag, const char *env, const char *file,
                         char *out, size_t outlen, char *err, size_t errlen) {
  char scratch[8];
  if (!err || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  if (!out || outlen < 2) {
    snprintf(err, errlen, "store URL: no room for it");
    return AE_EINVAL;
  }
  out[0] = '\0';
  int has_flag = flag && flag[0], has_file = file && file[0];
  if (has_flag && has_file) {
    snprintf(err, errlen, "--store and --store-file both given: use one");
    return AE_EINVAL;
  }
  if (has_file) return store_read_url_file(file, out, outlen, err, errlen);
  const char *value = has_flag ? flag : (env && env[0]) ? env : NULL;
  if (!value) return 0;
  if (strlen(value) >= outlen) {
    snprintf(err, errlen, "%s: the URL is longer than %zu bytes",
             has_flag ? "--store" : "ARCHEVAL_STORE_URL", outlen - 1);
    return AE_EINVAL;
  }
  memcpy(out, value, strlen(value) + 1);
  return 0;
}

/* ---- redaction ---- */

/* Appends text[0..len) to out at *used, truncating. */
static void store_append(char *out, size_t outlen, size_t *used,
                         const char *text, size_t len) {
  if (*used + 1 >= outlen) return;
  size_t room = outlen - 1 - *used;
  if (len > room) len = room;
  memcpy(out + *used, text, len);
  *used += len;
  out[*used] = '\0';
}

/* Copies TEXT, replacing the value of every "password=" parameter (at the
 * start or after SEP) by "***"; values end at END_CHARS.  A conninfo
 * value in quotes ends at its closing quote. */
static void store_redact_params(const char *text, const char *seps,
                                const char *end_chars, char *out, size_t outlen,
                                size_t *used) {
  const char *p = text;
  while (*p) {
    int at_start = (p == text) || strchr(seps, p[-1]) != NULL;
    if (at_start && strncmp(p, "password", 8) == 0) {
      const char *q = p + 8;
      while (*q == ' ' || *q == '\t')
        q++;
      if (*q == '=') {
        q++;
        while (*q == ' ' || *q == '\t')
          q++;
        store_append(out, outlen, used, "password=***", 12);
        if (*q == '\'') {
          q++;
          while (*q && *q != '\'')
            q += (*q == '\\' && q[1]) ? 2 : 1;
          if (*q) q++;
        } else {
          while (*q && !strchr(end_chars, *q))
            q++;
        }
        p = q;
        continue;
      }
    }
    store_append(out, outlen, used, p, 1);
    p++;
  }
}

void ae_store_redact_url(const char *target, char *out, size_t outlen) {
  if (!out || outlen == 0) return;
  out[0] = '\0';
  if (!target) return;
  size_t used = 0;
  if (ae_store_backend_of(target) == AE_STORE_BACKEND_SQLITE) {
    store_append(out, outlen, &used, target, strlen(target));
    return;
  }
  const char *scheme_end = strstr(target, "://");
  if (strncmp(target, "postgresql://", 13) != 0 &&
      strncmp(target, "postgres://", 11) != 0) {
    /* A conninfo string: keyword = value pairs. */
    store_redact_params(target, " \t", " \t", out, outlen, &used);
    return;
  }
  const char *authority = scheme_end + 3;
  size_t authority_len = strcspn(authority, "/?");
  const char *at = NULL;
  for (size_t i = 0; i < authority_len; i++)
    if (authority[i] == '@') at = authority + i;
  store_append(out, outlen, &used, target, (size_t)(authority - target));
  const char *rest = authority;
  if (at) {
    const char *colon = memchr(authority, ':', (size_t)(at - authority));
    if (colon) {
      store_append(out, outlen, &used, authority, (size_t)(colon - authority));
      store_append(out, outlen, &used, ":***", 4);
      rest = at;
    }
  }
  const char *query = strchr(rest, '?');
  if (!query) {
    store_append(out, outlen, &used, rest, strlen(rest));
    return;
  }
  store_append(out, outlen, &used, rest, (size_t)(query - rest) + 1);
  store_redact_params(query + 1, "&", "&", out, outlen, &used);
}
