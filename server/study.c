/* study.c: studies (study.h; api.md "Studies", issue 13).
 *
 * Design.  A study is a stored row (the normalised study request) and the
 * list of its members' job ids in the order they were added; a member is
 * an ordinary job whose request is the study's template (data, settings,
 * seed, metrics or profile) plus one architecture, submitted through the
 * result cache (cache.c) with job->study set, so it never expires and the
 * store deletes it with the study.  Counts and progress are read from the
 * jobs on each GET (O(members)); the ranking (api/rank.h, the same code as
 * `archeval rank`) is computed on the loop thread once per study version
 * (a version is bumped when a member is added or ends) and kept, so a
 * client polling the ranking of a big finished study costs a copy.  After
 * a restart the studies are loaded from the store and the loaded jobs are
 * attached to them by job->study, in submission order.
 *
 * --fleet.  Every replica may create, extend, rank or delete any study and
 * its members run on any replica, so no replica's memory knows a study:
 * each request reads the study row and its members' rows from the shared
 * store (ae_store_study_get, ae_store_study_members) into s->rows,
 * transient jobs dropped when the request is answered; a list reloads the
 * table from the store.  The ranking is kept per study as above, its
 * version being the count of members and of ended ones (members are only
 * added, and an end is final).
 *
 * Thread: the loop thread owns every study. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/rank.h"
#include "api/request.h"
#include "api/sha256.h"
#include "api/status.h"
#include "server/cache.h"
#include "server/fleet.h"
#include "server/job_fetch.h"
#include "server/job_render.h"
#include "server/job_state.h"
#include "server/models.h"
#include "server/route.h"
#include "server/study.h"
#include "server/util.h"

#define STUDY_NAME_MAX 200
#define STUDY_PAGE_DEFAULT 50
#define STUDY_PAGE_MAX 1000
#define RANKING_PAGE_MAX 100000
/* The confidence of the selection bound. */
#define SELECTION_DELTA 0.05

typedef struct ae_study {
  char id[32];
  char *name;
  json_t *request;  /* the normalised study request (owned) */
  json_t *template; /* a member's request without architecture (owned) */
  ae_rank_spec rank;
  char *idem_key;
  char body_hash[65];
  long long created_ms, seq;
  char (*members)[32];
  size_t n_members, cap_members;
  unsigned long long version;
  json_t *ranking; /* the whole ranking of ranking_version, or NULL */
  unsigned long long ranking_version;
  /* --fleet: the members as read from the store for this request
   * (transient jobs, in members' order), NULL between requests. */
  ae_job **rows;
  size_t n_rows, cap_rows;
  struct ae_study *newer, *older;
} ae_study;

struct ae_studies {
  ae_study *newest, *oldest;
  long long next_seq;
};

/* ---- the table ---- */

static ae_study *study_find(ae_server *srv, const char *id) {
  for (ae_study *s = srv->studies->newest; s; s = s->older)
    if (!strcmp(s->id, id)) return s;
  return NULL;
}

static ae_study *study_find_idem(ae_server *srv, const char *key) {
  for (ae_study *s = srv->studies->newest; s; s = s->older)
    if (s->idem_key && !strcmp(s->idem_key, key)) return s;
  return NULL;
}

/* --fleet: forgets the members read for the last request. */
static void study_drop_rows(ae_study *s) {
  for (size_t i = 0; i < s->n_rows; i++)
    ae_job_release(s->rows[i]);
  free(s->rows);
  s->rows = NULL;
  s->n_rows = s->cap_rows = 0;
}

/* Member i: the table's job, or (--fleet) the row read from the store;
 * NULL when it is gone. */
static ae_job *member_job(ae_server *srv, ae_study *s, size_t i) {
  if (srv->fleet) return i < s->n_rows ? s->rows[i] : NULL;
  return ae_job_table_find(&srv->jobs, s->members[i]);
}

static void study_free(ae_study *s) {
  if (!s) return;
  study_drop_rows(s);
  free(s->name);
  json_decref(s->request);
  json_decref(s->template);
  ae_rank_spec_free(&s->rank);
  free(s->idem_key);
  free(s->members);
  json_decref(s->ranking);
  free(s);
}

/* Links s as the newest (or, loading in order, also the newest). */
static void study_link(ae_server *srv, ae_study *s) {
  struct ae_studies *t = srv->studies;
  s->older = t->newest;
  s->newer = NULL;
  if (t->newest) t->newest->newer = s;
  t->newest = s;
  if (!t->oldest) t->oldest = s;
  if (s->seq >= t->next_seq) t->next_seq = s->seq + 1;
}

static void study_unlink(ae_server *srv, ae_study *s) {
  struct ae_studies *t = srv->studies;
  if (s->newer)
    s->newer->older = s->older;
  else
    t->newest = s->older;
  if (s->older)
    s->older->newer = s->newer;
  else
    t->oldest = s->newer;
}

static int study_reserve(ae_study *s, size_t more) {
  if (s->n_members + more <= s->cap_members) return AE_OK;
  size_t cap = s->cap_members ? s->cap_members : 16;
  while (cap < s->n_members + more)
    cap *= 2;
  void *grown = realloc(s->members, cap * sizeof *s->members);
  if (!grown) return AE_ENOMEM;
  s->members = grown;
  s->cap_members = cap;
  return AE_OK;
}

/* The template and the rank spec from the normalised request. */
static int study_prepare(ae_study *s, ae_error *err) {
  json_t *t = json_object();
  if (!t) return AE_ENOMEM;
  static const char *const keys[] = {"data", "settings", "seed", "metrics",
                                     "profile"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    json_t *v = json_object_get(s->request, keys[i]);
    if (v && !json_is_null(v)) json_object_set(t, keys[i], v);
  }
  s->template = t;
  return ae_rank_spec_from_json(json_object_get(s->request, "rank"), &s->rank,
                                err);
}

static void on_terminal(ae_server *srv, ae_job *job) {
  if (!job->study[0] || !srv->studies) return;
  ae_study *s = study_find(srv, job->study);
  if (s) s->version++;
}

int ae_studies_init(ae_server *srv) {
  srv->studies = calloc(1, sizeof *srv->studies);
  if (!srv->studies) return AE_ENOMEM;
  srv->studies->next_seq = 1;
  return ae_jobs_on_terminal(srv, on_terminal);
}

void ae_studies_free(ae_server *srv) {
  if (!srv->studies) return;
  ae_study *s = srv->studies->newest;
  while (s) {
    ae_study *older = s->older;
    study_free(s);
    s = older;
  }
  free(srv->studies);
  srv->studies = NULL;
}

/* A study made of its stored row: AE_OK with *out set (NULL when the
 * row does not load: logged), or AE_ENOMEM. */
static int study_from_row(const ae_store_study *row, ae_study **out) {
  *out = NULL;
  ae_study *s = calloc(1, sizeof *s);
  if (!s) return AE_ENOMEM;
  json_error_t jerr;
  snprintf(s->id, sizeof s->id, "%s", row->id);
  s->name = strdup(row->name);
  s->request = json_loads(row->request_json, 0, &jerr);
  s->created_ms = row->created_ms;
  s->seq = row->seq;
  if (row->idempotency_key) s->idem_key = strdup(row->idempotency_key);
  if (row->body_hash)
    snprintf(s->body_hash, sizeof s->body_hash, "%s", row->body_hash);
  ae_error err = {0};
  int rc = !s->name || !s->request || (row->idempotency_key && !s->idem_key)
               ? AE_ENOMEM
               : study_prepare(s, &err);
  ae_error_clear(&err);
  if (rc) {
    ae_log(AE_LOG_ERROR, "study %s: its stored request does not load", row->id);
    study_free(s);
    return rc == AE_ENOMEM ? AE_ENOMEM : AE_OK;
  }
  *out = s;
  return AE_OK;
}

static int load_study(void *ud, const ae_store_study *row) {
  ae_server *srv = ud;
  ae_study *s = NULL;
  int rc = study_from_row(row, &s);
  if (s) study_link(srv, s);
  return rc;
}

/* ---- --fleet: studies read from the shared store ---- */

static int take_study(void *ud, const ae_store_study *row) {
  return study_from_row(row, (ae_study **)ud);
}

static int take_member(void *ud, const ae_store_job *row) {
  ae_study *s = ud;
  if (s->n_rows == s->cap_rows) {
    size_t cap = s->cap_rows ? 2 * s->cap_rows : 16;
    void *grown = realloc(s->rows, cap * sizeof *s->rows);
    if (!grown) return AE_ENOMEM;
    s->rows = grown;
    s->cap_rows = cap;
  }
  if (study_reserve(s, 1)) return AE_ENOMEM;
  ae_job *job = ae_job_from_row(row);
  if (!job) return AE_ENOMEM;
  job->transient = 1;
  s->rows[s->n_rows++] = job;
  snprintf(s->members[s->n_members++], 32, "%s", job->id);
  return AE_OK;
}

/* Reads the members of s from the store into s->rows (and s->members);
 * the version becomes the count of members and of ended ones. */
static int study_read_members(ae_server *srv, ae_study *s) {
  study_drop_rows(s);
  s->n_members = 0;
  int rc = ae_store_study_members(srv->store, s->id, take_member, s);
  if (rc) {
    study_drop_rows(s);
    s->n_members = 0;
    if (rc != AE_ENOMEM)
      ae_log(AE_LOG_ERROR, "store: study %s members: %s (%s)", s->id,
             ae_strerror(rc), ae_store_errmsg(srv->store));
    return rc == AE_ENOMEM ? AE_ENOMEM : AE_EIO;
  }
  unsigned long long ended = 0;
  for (size_t i = 0; i < s->n_rows; i++)
    ended += ae_job_terminal(s->rows[i]) != 0;
  s->version = ((unsigned long long)s->n_rows << 32) | ended;
  return AE_OK;
}

/* The study ID (or, id NULL, the one of the idempotency key KEY) with its
 * members: from the table, or (--fleet) as the store has it now.  NULL
 * with *rc AE_ENOTFOUND, AE_EIO (the store failed) or AE_ENOMEM. */
static ae_study *study_get(ae_server *srv, const char *id, const char *key,
                           int *rc) {
  *rc = AE_OK;
  if (!srv->fleet) {
    ae_study *s = id ? study_find(srv, id) : study_find_idem(srv, key);
    if (!s) *rc = AE_ENOTFOUND;
    return s;
  }
  ae_study *fresh = NULL;
  int status = ae_store_study_get(srv->store, id, key, take_study, &fresh);
  if (status == AE_OK && !fresh) status = AE_ENOTFOUND; /* did not load */
  ae_study *s = fresh ? study_find(srv, fresh->id)
                : id  ? study_find(srv, id)
                      : NULL;
  if (status == AE_ENOTFOUND && s) {
    /* Deleted by another replica. */
    study_unlink(srv, s);
    study_free(s);
    s = NULL;
  }
  if (status) {
    study_free(fresh);
    if (status != AE_ENOTFOUND && status != AE_ENOMEM) {
      ae_log(AE_LOG_ERROR, "store: study get: %s (%s)", ae_strerror(status),
             ae_store_errmsg(srv->store));
      status = AE_EIO;
    }
    *rc = status;
    return NULL;
  }
  if (s) { /* a study's row never changes: the one held stays */
    study_free(fresh);
  } else {
    s = fresh;
    study_link(srv, s);
  }
  if ((*rc = study_read_members(srv, s))) return NULL;
  return s;
}

/* --fleet: the table becomes the store's studies (a listing). */
static int studies_reload(ae_server *srv) {
  ae_study *s = srv->studies->newest;
  while (s) {
    ae_study *older = s->older;
    study_free(s);
    s = older;
  }
  srv->studies->newest = srv->studies->oldest = NULL;
  int rc = ae_store_study_load(srv->store, load_study, srv);
  if (rc && rc != AE_ENOMEM) {
    ae_log(AE_LOG_ERROR, "store: study load: %s (%s)", ae_strerror(rc),
           ae_store_errmsg(srv->store));
    rc = AE_EIO;
  }
  return rc;
}

int ae_studies_load(ae_server *srv) {
  if (!srv->store) return AE_OK;
  int rc = ae_store_study_load(srv->store, load_study, srv);
  if (rc) {
    ae_log(AE_LOG_ERROR, "store: study load: %s (%s)", ae_strerror(rc),
           ae_store_errmsg(srv->store));
    return rc;
  }
  /* The members, oldest first, as they were added. */
  size_t n = 0, orphans = 0;
  ae_job_iter it;
  ae_job_iter_start(&srv->jobs, NULL, &it);
  ae_study *last = NULL;
  for (ae_job *job; (job = ae_job_iter_next(&it));) {
    if (!job->study[0]) continue;
    ae_study *s = last && !strcmp(last->id, job->study)
                      ? last
                      : study_find(srv, job->study);
    if (!s) {
      orphans++;
      continue;
    }
    last = s;
    if (study_reserve(s, 1)) return AE_ENOMEM;
    snprintf(s->members[s->n_members++], 32, "%s", job->id);
    n++;
  }
  /* The iterator walks newest first: put each study's list in order. */
  for (ae_study *s = srv->studies->newest; s; s = s->older)
    for (size_t i = 0; i < s->n_members / 2; i++) {
      char tmp[32];
      memcpy(tmp, s->members[i], 32);
      memcpy(s->members[i], s->members[s->n_members - 1 - i], 32);
      memcpy(s->members[s->n_members - 1 - i], tmp, 32);
    }
  if (orphans)
    ae_log(AE_LOG_WARN, "store: %zu jobs name a study that is gone", orphans);
  ae_log(AE_LOG_INFO, "store: studies loaded, %zu members", n);
  return AE_OK;
}

/* ---- replies ---- */

static void reply_json(ae_study_reply *out, int status, json_t *j) {
  char *text = j ? ae_json_dumps(j) : NULL;
  json_decref(j);
  if (!text) {
    ae_problem_set(&out->problem, 500, "internal", "Internal error",
                   "Out of memory.");
    return;
  }
  out->status = status;
  out->body = text;
  out->len = strlen(text);
  out->content_type = "application/json";
}

static void reply_text(ae_study_reply *out, char *text, size_t len,
                       const char *type) {
  out->status = 200;
  out->body = text;
  out->len = len;
  out->content_type = type;
}

static void reply_oom(ae_study_reply *out) {
  ae_problem_set(&out->problem, 500, "internal", "Internal error",
                 "Out of memory.");
}

static void reply_store(ae_server *srv, ae_study_reply *out, const char *what) {
  out->retry_after = 5;
  if (srv->store_full)
    ae_problem_set(&out->problem, 507, "insufficient_storage",
                   "Insufficient storage",
                   "The job store is full; the %s was not done.", what);
  else
    ae_problem_set(&out->problem, 503, "store_unavailable", "Store unavailable",
                   "The job store failed to write; the %s was not done.", what);
}

static void reply_not_found(ae_study_reply *out, const char *id) {
  ae_problem_set(&out->problem, 404, "not_found", "Not found",
                 "No study %s (never created, or deleted).", id);
}

/* The answer to a study_get that found none (rc from it). */
static void reply_get_failed(ae_server *srv, ae_study_reply *out,
                             const char *id, int rc) {
  if (rc == AE_ENOTFOUND) return reply_not_found(out, id);
  if (rc == AE_ENOMEM) return reply_oom(out);
  out->retry_after = 5;
  (void)srv;
  ae_problem_set(&out->problem, 503, "store_unavailable", "Store unavailable",
                 "The job store could not be read; try again.");
}

static json_t *time_or_null(long long ms) {
  if (!ms) return json_null();
  char buf[40];
  ae_format_rfc3339(ms, buf, sizeof buf);
  return json_string(buf);
}

/* The study resource with its counts by state and progress. */
static json_t *study_json(ae_server *srv, ae_study *s) {
  size_t counts[5] = {0}, cached = 0, n = 0;
  for (size_t i = 0; i < s->n_members; i++) {
    ae_job *job = member_job(srv, s, i);
    if (!job) continue;
    n++;
    counts[job->state]++;
    cached += job->cached;
  }
  size_t done = counts[AE_JOB_SUCCEEDED] + counts[AE_JOB_FAILED] +
                counts[AE_JOB_CANCELLED];
  json_t *c = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "queued",
                        (json_int_t)counts[AE_JOB_QUEUED], "running",
                        (json_int_t)counts[AE_JOB_RUNNING], "succeeded",
                        (json_int_t)counts[AE_JOB_SUCCEEDED], "failed",
                        (json_int_t)counts[AE_JOB_FAILED], "cancelled",
                        (json_int_t)counts[AE_JOB_CANCELLED], "cached",
                        (json_int_t)cached);
  return json_pack("{s:s, s:s, s:o, s:O, s:I, s:o, s:f}", "id", s->id, "name",
                   s->name, "created_at", time_or_null(s->created_ms),
                   "request", s->request, "members", (json_int_t)n, "counts", c,
                   "progress", n ? (double)done / (double)n : 0.0);
}

/* ---- create ---- */

/* Validates the study body; fills *req (the normalised request, new
 * reference) or p. */
static int study_validate(ae_server *srv, json_t *body, json_t **req,
                          ae_problem *p) {
  *req = NULL;
  if (!json_is_object(body)) {
    ae_problem_add(p, "", "The body must be an object.");
    return AE_EINVAL;
  }
  static const char *const keys[] = {"name",     "data",      "profile",
                                     "settings", "seed",      "metrics",
                                     "rank",     "client_ref"};
  const char *key;
  json_t *value;
  json_object_foreach(body, key, value) {
    size_t k = 0;
    while (k < sizeof keys / sizeof keys[0] && strcmp(keys[k], key))
      k++;
    if (k == sizeof keys / sizeof keys[0]) {
      char pointer[300];
      snprintf(pointer, sizeof pointer, "/%s", key);
      ae_problem_add(p, pointer, "Unknown key.");
    }
  }
  const json_t *name = json_object_get(body, "name");
  if (!json_is_string(name) || json_string_length(name) == 0 ||
      json_string_length(name) > STUDY_NAME_MAX)
    ae_problem_add(p, "/name", "Required: a string of 1 to %d bytes.",
                   STUDY_NAME_MAX);
  const json_t *ref = json_object_get(body, "client_ref");
  if (ref && !json_is_null(ref) &&
      (!json_is_string(ref) || !ae_client_ref_ok(json_string_value(ref))))
    ae_problem_add(p, "/client_ref",
                   "A string of 1 to 256 bytes without control characters.");
  ae_rank_spec spec;
  memset(&spec, 0, sizeof spec);
  ae_error err = {0};
  if (ae_rank_spec_from_json(json_object_get(body, "rank"), &spec, &err)) {
    char pointer[300];
    snprintf(pointer, sizeof pointer, "/rank%s",
             err.pointer ? err.pointer : "");
    ae_problem_add(p, pointer, "%s", err.reason ? err.reason : "Invalid.");
  }
  ae_error_clear(&err);
  ae_rank_spec_free(&spec);
  /* The member template, checked as a job with a small architecture:
   * errors about that architecture are not the caller's. */
  json_t *probe = json_object();
  if (!probe) return AE_ENOMEM;
  static const char *const member_keys[] = {"data", "settings", "seed",
                                            "metrics", "profile"};
  for (size_t i = 0; i < sizeof member_keys / sizeof member_keys[0]; i++) {
    json_t *v = json_object_get(body, member_keys[i]);
    if (v) json_object_set(probe, member_keys[i], v);
  }
  /* A study's members default to the profile "rank" (api.md), unless
   * the study names its metrics. */
  if (!json_object_get(body, "profile") && !json_object_get(body, "metrics"))
    json_object_set_new(probe, "profile", json_string("rank"));
  json_object_set_new(probe, "architecture",
                      json_pack("{s:s, s:s}", "type", "mlp_dag", "dag", "1"));
  ae_request r;
  memset(&r, 0, sizeof r);
  ae_problem rp = AE_PROBLEM_INIT;
  int rc = ae_request_parse_models(probe, &srv->catalog, ae_models_source(srv),
                                   &srv->limits, &r, &rp);
  json_decref(probe);
  if (rc && !rp.status) {
    ae_problem_clear(&rp);
    return rc;
  }
  for (size_t i = 0; rc && i < rp.n_errors; i++)
    if (strncmp(rp.errors[i].pointer, "/architecture", 13))
      ae_problem_add(p, rp.errors[i].pointer, "%s", rp.errors[i].detail);
  ae_problem_clear(&rp);
  if (p->status) {
    if (!rc) ae_request_free(&r);
    return AE_EINVAL;
  }
  json_t *n = json_object();
  if (!n) {
    if (!rc) ae_request_free(&r);
    return AE_ENOMEM;
  }
  json_object_set(n, "name", json_object_get(body, "name"));
  if (!rc) {
    json_object_set(n, "data", json_object_get(r.normalised, "data"));
    json_object_set(n, "seed", json_object_get(r.normalised, "seed"));
    json_object_set(n, "settings", json_object_get(r.normalised, "settings"));
    if (json_object_get(body, "metrics"))
      json_object_set(n, "metrics", json_object_get(r.normalised, "metrics"));
    ae_request_free(&r);
  }
  /* Only what was given: the data's inline samples are not repeated. */
  json_t *data = json_object_get(body, "data");
  if (data) json_object_set(n, "data", data);
  const json_t *profile = json_object_get(body, "profile");
  if (profile)
    json_object_set(n, "profile", (json_t *)profile);
  else if (!json_object_get(body, "metrics"))
    json_object_set_new(n, "profile", json_string("rank"));
  const json_t *rank = json_object_get(body, "rank");
  json_object_set_new(n, "rank",
                      rank ? json_deep_copy(rank) : json_string("default"));
  json_object_set_new(n, "client_ref",
                      ref && json_is_string(ref) ? json_deep_copy(ref)
                                                 : json_null());
  *req = n;
  return AE_OK;
}

/* The answer to a creation with an idempotency key whose study exists:
 * that study (201), or 422 when it was created with another body (HASH is
 * this body's). */
static void reply_existing(ae_server *srv, ae_study *s,
                           const ae_study_call *call, const char *hash,
                           ae_study_reply *out) {
  if (strcmp(s->body_hash, hash)) {
    ae_problem_set(&out->problem, 422, "idempotency_key_mismatch",
                   "Idempotency key mismatch",
                   "Idempotency-Key %s was used with another body.",
                   call->idem_key);
    return;
  }
  snprintf(out->location, sizeof out->location, "/v1/studies/%s", s->id);
  reply_json(out, 201, study_json(srv, s));
}

/* --fleet: this replica's insert of a study lost to another replica's with
 * the same idempotency key (the store's unique index refused it). */
static void create_lost_race(ae_server *srv, const ae_study_call *call,
                             const char *hash, ae_study_reply *out) {
  int grc;
  ae_study *s = study_get(srv, NULL, call->idem_key, &grc);
  if (s) return reply_existing(srv, s, call, hash, out);
  if (grc != AE_ENOTFOUND)
    return reply_get_failed(srv, out, call->idem_key, grc);
  /* Stored by another request and gone again (deleted) meanwhile. */
  out->retry_after = 1;
  ae_problem_set(
      &out->problem, 409, "idempotency_conflict", "Idempotency conflict",
      "Idempotency-Key %s is being used by another request.", call->idem_key);
}

static void h_create(ae_server *srv, const ae_study_call *call,
                     ae_study_reply *out) {
  char hash[65] = "";
  if (call->idem_key) {
    ae_sha256_hex(call->body ? call->body : "", call->len, hash);
    int grc;
    ae_study *s = study_get(srv, NULL, call->idem_key, &grc);
    if (grc && grc != AE_ENOTFOUND)
      return reply_get_failed(srv, out, call->idem_key, grc);
    if (s) return reply_existing(srv, s, call, hash, out);
  }
  json_t *body = NULL;
  if (ae_json_parse_body(call->body, call->len, &body, &out->problem)) return;
  json_t *req = NULL;
  int rc = study_validate(srv, body, &req, &out->problem);
  json_decref(body);
  if (rc) {
    if (!out->problem.status) reply_oom(out);
    return;
  }
  ae_study *s = calloc(1, sizeof *s);
  if (!s) {
    json_decref(req);
    reply_oom(out);
    return;
  }
  ae_job_id_new(s->id, sizeof s->id);
  s->id[0] = 's';
  s->request = req;
  s->name = strdup(json_string_value(json_object_get(req, "name")));
  s->created_ms = ae_now_ms();
  s->seq = srv->studies->next_seq;
  /* --fleet: replicas number studies from one clock (microseconds), as
   * jobs, so that a listing's order is the order of creation. */
  if (srv->fleet && s->created_ms * 1000 > s->seq)
    s->seq = s->created_ms * 1000;
  if (call->idem_key) {
    s->idem_key = strdup(call->idem_key);
    snprintf(s->body_hash, sizeof s->body_hash, "%s", hash);
  }
  ae_error err = {0};
  rc = !s->name || (call->idem_key && !s->idem_key) ? AE_ENOMEM
                                                    : study_prepare(s, &err);
  ae_error_clear(&err);
  char *text = rc ? NULL : ae_json_dumps(req);
  if (!text) {
    study_free(s);
    reply_oom(out);
    return;
  }
  if (srv->store) {
    const json_t *ref = json_object_get(req, "client_ref");
    ae_store_study row = {.id = s->id,
                          .name = s->name,
                          .request_json = text,
                          .idempotency_key = s->idem_key,
                          .body_hash = s->idem_key ? s->body_hash : NULL,
                          .client_ref = json_string_value(ref),
                          .created_ms = s->created_ms,
                          .seq = s->seq};
    rc = ae_store_study_insert(srv->store, &row);
    if (rc == AE_EINVAL && srv->fleet && call->idem_key) {
      /* Another replica stored the key first (the key is unique in the
       * store): its study is the answer, as for a replay. */
      free(text);
      study_free(s);
      return create_lost_race(srv, call, hash, out);
    }
    if (rc) {
      free(text);
      study_free(s);
      ae_jobs_store_failed(srv, "study insert", row.id, rc);
      reply_store(srv, out, "study creation");
      return;
    }
  }
  free(text);
  study_link(srv, s);
  snprintf(out->location, sizeof out->location, "/v1/studies/%s", s->id);
  reply_json(out, 201, study_json(srv, s));
}

/* ---- list ---- */

static int page_size_of(const ae_study_call *call, long long def, long long max,
                        long long *out, ae_problem *p) {
  const char *text = call->query(call->ctx, "page_size");
  *out = def;
  if (!text) return AE_OK;
  if (ae_parse_count(text, max, out) || *out < 1 || *out > max) {
    ae_problem_add(p, "page_size", "An integer from 1 to %lld.", max);
    return AE_EINVAL;
  }
  return AE_OK;
}

static void h_list(ae_server *srv, const ae_study_call *call,
                   ae_study_reply *out) {
  long long size;
  ae_page_key before = {.seq = -1};
  if (page_size_of(call, STUDY_PAGE_DEFAULT, STUDY_PAGE_MAX, &size,
                   &out->problem))
    return;
  const char *token = call->query(call->ctx, "page_token");
  if (token && ae_page_token_decode(token, &before)) {
    ae_problem_add(&out->problem, "page_token",
                   "Not a page token this server gave.");
    return;
  }
  int rc = srv->fleet ? studies_reload(srv) : AE_OK;
  if (rc) return reply_get_failed(srv, out, "", rc);
  json_t *list = json_array();
  ae_study *s = srv->studies->newest;
  /* The list runs newest first in (seq, id) order (loads come in it). */
  while (s && !ae_page_key_after(&before, s->seq, s->id))
    s = s->older;
  long long shown = 0;
  ae_study *last = NULL;
  for (; list && s && shown < size; s = s->older, shown++) {
    if (srv->fleet && (rc = study_read_members(srv, s))) {
      json_decref(list);
      return reply_get_failed(srv, out, "", rc);
    }
    json_array_append_new(list, study_json(srv, s));
    last = s;
  }
  char next[AE_PAGE_TOKEN_MAX];
  if (s && last) ae_page_token_encode(last->seq, last->id, next, sizeof next);
  reply_json(out, 200,
             json_pack("{s:o, s:o}", "studies", list ? list : json_array(),
                       "next_page_token",
                       s && last ? json_string(next) : json_null()));
}

/* ---- get, delete ---- */

static void h_get(ae_server *srv, const ae_study_call *call,
                  ae_study_reply *out) {
  int rc;
  ae_study *s = study_get(srv, call->id, NULL, &rc);
  if (!s) return reply_get_failed(srv, out, call->id, rc);
  reply_json(out, 200, study_json(srv, s));
}

static void h_delete(ae_server *srv, const ae_study_call *call,
                     ae_study_reply *out) {
  int rc;
  ae_study *s = study_get(srv, call->id, NULL, &rc);
  if (!s) return reply_get_failed(srv, out, call->id, rc);
  /* Members are cancelled first; a worker may still hold a running one,
   * so such jobs stay, without a study, and expire like plain jobs (one
   * daemon), or stay until their end removes them (--fleet: on any
   * replica, the store's delete leaves them for that).
   * --fleet: those this replica holds are cancelled here, the others in
   * the store (a running one's owner sees the flag at its heartbeat). */
  for (size_t i = 0; i < s->n_members; i++) {
    ae_job *job = ae_job_table_find(&srv->jobs, s->members[i]);
    if (job && !job->remote) {
      ae_job_cancel(srv, job);
    } else if (srv->fleet && s->rows[i] && !ae_job_terminal(s->rows[i])) {
      int crc = ae_job_cancel_elsewhere(srv, s->rows[i]);
      if (crc && crc != AE_ENOTFOUND && crc != AE_EINVAL)
        ae_log(AE_LOG_WARN, "study %s: member %s not cancelled: %s", s->id,
               s->members[i], ae_strerror(crc));
    }
  }
  if (srv->store) {
    rc = ae_store_study_delete(srv->store, s->id);
    if (rc && rc != AE_ENOTFOUND) {
      ae_jobs_store_failed(srv, "study delete", s->id, rc);
      return reply_store(srv, out, "study deletion");
    }
  }
  study_unlink(srv, s);
  for (size_t i = 0; i < s->n_members; i++) {
    ae_job *job = ae_job_table_find(&srv->jobs, s->members[i]);
    if (!job) continue;
    if (ae_job_terminal(job)) {
      ae_job_table_remove(&srv->jobs, job);
    } else {
      /* Running: it ends as a plain job and expires like one.  --fleet:
       * its row keeps the study's id, so its end removes it from the
       * store (store_pg.c finds the study gone), and it expires here at
       * its end (other replicas already answer 404). */
      job->study[0] = '\0';
      job->study_gone = srv->fleet;
    }
  }
  study_free(s);
  out->status = 204;
}

/* ---- add architectures ---- */

/* The idempotent replay of an add: 1 when answered. */
static int add_replay(ae_server *srv, ae_study *s, const char *key,
                      const char *hash, size_t n, ae_study_reply *out) {
  char k[400];
  snprintf(k, sizeof k, "%s:%s\n0", s->id, key);
  ae_job *first = ae_job_table_find_idem(&srv->jobs, k);
  if (srv->fleet) { /* the key may be another replica's */
    int rc;
    first = ae_job_lookup_idem(srv, k, &rc);
    if (rc == AE_EIO || rc == AE_ENOMEM) {
      reply_get_failed(srv, out, key, rc);
      return 1;
    }
  }
  if (!first) return 0;
  int mismatch = strcmp(first->body_hash, hash) != 0;
  ae_job_release(first);
  if (mismatch) {
    ae_problem_set(&out->problem, 422, "idempotency_key_mismatch",
                   "Idempotency key mismatch",
                   "Idempotency-Key %s was used with another body.", key);
    return 1;
  }
  json_t *jobs = json_array();
  for (size_t i = 0; jobs && i < n; i++) {
    snprintf(k, sizeof k, "%s:%s\n%zu", s->id, key, i);
    int rc = AE_OK;
    ae_job *job = srv->fleet ? ae_job_lookup_idem(srv, k, &rc)
                             : ae_job_table_find_idem(&srv->jobs, k);
    if (!job && (rc == AE_EIO || rc == AE_ENOMEM)) {
      json_decref(jobs);
      reply_get_failed(srv, out, key, rc);
      return 1;
    }
    if (!job) {
      json_decref(jobs);
      ae_problem_set(&out->problem, 410, "idempotent_jobs_gone", "Jobs gone",
                     "Idempotency-Key %s: job %zu of the batch is gone.", key,
                     i);
      return 1;
    }
    json_array_append_new(jobs, ae_job_to_json(srv, job));
    ae_job_release(job);
  }
  out->retry_after = 1;
  reply_json(out, 202, json_pack("{s:o}", "jobs", jobs));
  return 1;
}

static void h_add(ae_server *srv, const ae_study_call *call,
                  ae_study_reply *out) {
  int grc;
  ae_study *s = study_get(srv, call->id, NULL, &grc);
  if (!s) return reply_get_failed(srv, out, call->id, grc);
  json_t *body = NULL;
  if (ae_json_parse_body(call->body, call->len, &body, &out->problem)) return;
  ae_problem *p = &out->problem;
  json_t *archs =
      json_is_object(body) ? json_object_get(body, "architectures") : NULL;
  json_t *refs =
      json_is_object(body) ? json_object_get(body, "client_refs") : NULL;
  if (!json_is_object(body)) {
    ae_problem_add(p, "",
                   "The body must be an object {\"architectures\": "
                   "[...]}.");
  } else {
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value) {
      if (strcmp(key, "architectures") && strcmp(key, "client_refs")) {
        char pointer[300];
        snprintf(pointer, sizeof pointer, "/%s", key);
        ae_problem_add(p, pointer, "Unknown key.");
      }
    }
    if (!json_is_array(archs) || json_array_size(archs) == 0)
      ae_problem_add(p, "/architectures",
                     "Required: a non-empty array of architectures.");
    else if (json_array_size(archs) > (size_t)srv->opt->max_batch)
      ae_problem_add(p, "/architectures",
                     "%zu architectures, the limit is "
                     "%lld per request.",
                     json_array_size(archs), srv->opt->max_batch);
    if (refs && !json_is_null(refs) &&
        (!json_is_array(refs) ||
         json_array_size(refs) != json_array_size(archs)))
      ae_problem_add(p, "/client_refs",
                     "An array with one entry per architecture.");
  }
  if (p->status) {
    json_decref(body);
    return;
  }
  size_t n = json_array_size(archs);
  char hash[65] = "";
  if (call->idem_key) {
    ae_sha256_hex(call->body ? call->body : "", call->len, hash);
    if (add_replay(srv, s, call->idem_key, hash, n, out)) {
      json_decref(body);
      return;
    }
  }
  if (srv->draining) {
    json_decref(body);
    out->retry_after = 5;
    ae_problem_set(p, 503, "draining", "Draining",
                   "The server is shutting down and accepts no new jobs.");
    return;
  }
  ae_request *reqs = calloc(n, sizeof *reqs);
  ae_job **jobs = calloc(n, sizeof *jobs);
  int rc = reqs && jobs ? AE_OK : AE_ENOMEM;
  for (size_t i = 0; !rc && i < n; i++) {
    json_t *one = json_deep_copy(s->template);
    if (!one) {
      rc = AE_ENOMEM;
      break;
    }
    json_object_set(one, "architecture", json_array_get(archs, i));
    json_t *ref = json_is_array(refs) ? json_array_get(refs, i) : NULL;
    if (ref && !json_is_null(ref)) json_object_set(one, "client_ref", ref);
    ae_problem item = AE_PROBLEM_INIT;
    int irc = ae_request_parse_models(one, &srv->catalog, ae_models_source(srv),
                                      &srv->limits, &reqs[i], &item);
    json_decref(one);
    if (irc && !item.status) {
      rc = irc;
      ae_problem_clear(&item);
      break;
    }
    if (irc) {
      char prefix[48];
      for (size_t k = 0; k < item.n_errors; k++) {
        const char *ptr = item.errors[k].pointer;
        if (!strncmp(ptr, "/architecture", 13))
          snprintf(prefix, sizeof prefix, "/architectures/%zu", i);
        else if (!strcmp(ptr, "/client_ref"))
          snprintf(prefix, sizeof prefix, "/client_refs/%zu", i);
        else
          prefix[0] = '\0';
        const char *rest = !strncmp(ptr, "/architecture", 13) ? ptr + 13
                           : !strcmp(ptr, "/client_ref")      ? ""
                                                              : ptr;
        char pointer[512];
        snprintf(pointer, sizeof pointer, "%s%s", prefix, rest);
        ae_problem_add(p, pointer, "%s", item.errors[k].detail);
      }
      if (item.n_errors == 0) {
        char pointer[48];
        snprintf(pointer, sizeof pointer, "/architectures/%zu", i);
        ae_problem_add(p, pointer, "%s", item.detail ? item.detail : "");
      }
      ae_problem_clear(&item);
      memset(&reqs[i], 0, sizeof reqs[i]);
    }
  }
  json_decref(body);
  size_t queued = 0;
  if (!rc && !p->status && !ae_fleet_queue_room(srv, n, &queued)) {
    out->retry_after = 1;
    ae_problem_set(p, 429, "queue_full", "Queue full",
                   "%zu jobs are queued%s, %zu more would pass the limit of "
                   "%lld (--max-queue).",
                   queued, srv->fleet ? " in the fleet" : "", n,
                   srv->opt->max_queue);
  }
  if (!rc && !p->status) rc = study_reserve(s, n);
  if (!rc && !p->status) {
    char *key = NULL;
    if (call->idem_key) {
      size_t klen = strlen(s->id) + strlen(call->idem_key) + 2;
      key = malloc(klen);
      if (key) snprintf(key, klen, "%s:%s", s->id, call->idem_key);
    }
    if (call->idem_key && !key)
      rc = AE_ENOMEM;
    else
      rc = ae_cache_submit(srv, reqs, n, key, hash, 1, s->id, jobs);
    free(key);
    if (rc == AE_EIO) {
      reply_store(srv, out, "addition");
      rc = AE_OK;
    } else if (!rc) {
      json_t *list = json_array();
      for (size_t i = 0; i < n; i++) {
        snprintf(s->members[s->n_members++], 32, "%s", jobs[i]->id);
        if (list) json_array_append_new(list, ae_job_to_json(srv, jobs[i]));
      }
      s->version++;
      out->retry_after = 1;
      reply_json(out, 202, json_pack("{s:o}", "jobs", list));
    }
  }
  if (rc) reply_oom(out);
  for (size_t i = 0; reqs && i < n; i++)
    ae_request_free(&reqs[i]);
  free(reqs);
  free(jobs);
}

/* ---- ranking ---- */

double ae_study_selection_gap(size_t n_candidates, size_t n_validation,
                              double delta) {
  if (!n_candidates || !n_validation || !(delta > 0 && delta < 1)) return NAN;
  return sqrt((log((double)n_candidates) + log(2.0 / delta)) /
              (2.0 * (double)n_validation));
}

/* ranking.md §3 splits the batch into n_T = floor(3B/4) and n_V. */
static json_t *selection_bound_json(const ae_study *s, size_t n) {
  json_int_t batch = json_integer_value(
      json_object_get(json_object_get(s->request, "data"), "batch_size"));
  if (batch <= 0) batch = 64;
  size_t n_v = (size_t)(batch - (3 * batch) / 4);
  double gap = ae_study_selection_gap(n, n_v, SELECTION_DELTA);
  json_t *assumptions = json_pack(
      "[s, s, s, s]",
      "the loss is bounded in [0, 1] (e.g. the 0-1 error of val_acc)",
      "the n_validation samples are drawn i.i.d. from the test distribution "
      "and are independent of how the candidates were chosen",
      "the candidates form a finite set of n_candidates fixed before the "
      "validation risks are measured (a union bound over them; the "
      "continuous form of Oymak et al. 2021 replaces log n_candidates by "
      "h log(c Gamma L R n_V))",
      "order of magnitude: metrics.md §3.4 recalls the bound from the "
      "abstract of arXiv 2104.14132; constants are Hoeffding's");
  return json_pack("{s:I, s:I, s:f, s:o, s:o, s:s, s:s, s:o}", "n_candidates",
                   (json_int_t)n, "n_validation", (json_int_t)n_v, "delta",
                   SELECTION_DELTA, "gap",
                   isfinite(gap) ? json_real(gap) : json_null(), "excess_risk",
                   isfinite(gap) ? json_real(2 * gap) : json_null(), "formula",
                   "gap = sqrt((ln n_candidates + ln(2/delta)) / "
                   "(2 n_validation)); the selected member's test risk is "
                   "at most the best member's plus 2 gap",
                   "source",
                   "Oymak, Li, Soltanolkotabi 2021 (train-validation "
                   "split), finite-candidate form",
                   "assumptions", assumptions);
}

static int job_id_cmp(const void *a, const void *b) {
  return strcmp((*(ae_job *const *)a)->id, (*(ae_job *const *)b)->id);
}

/* --fleet: the ranked job ID among jobs[0..n), sorted by id. */
static ae_job *ranked_job(ae_job **jobs, size_t n, const char *id) {
  ae_job key;
  snprintf(key.id, sizeof key.id, "%s", id);
  ae_job *pk = &key;
  ae_job **hit = bsearch(&pk, jobs, n, sizeof *jobs, job_id_cmp);
  return hit ? *hit : NULL;
}

/* The whole ranking of the study's succeeded members (new reference). */
static json_t *ranking_compute(ae_server *srv, ae_study *s, ae_problem *p) {
  json_t **cards = calloc(s->n_members ? s->n_members : 1, sizeof *cards);
  const char **ids = calloc(s->n_members ? s->n_members : 1, sizeof *ids);
  ae_job **jobs = calloc(s->n_members ? s->n_members : 1, sizeof *jobs);
  json_t *root = NULL;
  size_t n = 0; /* cards[0..n) are owned: parsed from the jobs' texts */
  if (!cards || !ids || !jobs) goto done;
  for (size_t i = 0; i < s->n_members; i++) {
    ae_job *job = member_job(srv, s, i);
    if (!job || job->state != AE_JOB_SUCCEEDED) continue;
    if (!(cards[n] = ae_job_result_json(job))) continue;
    ids[n] = job->id;
    jobs[n++] = job;
  }
  if (n == 0) {
    root = json_pack(
        "{s:i, s:o, s:[], s:[], s:[]}", "n", 0, "rank",
        json_pack("{s:O}", "requested", json_object_get(s->request, "rank")),
        "members", "pareto_front", "warnings");
    goto bound;
  }
  ae_rank_result r;
  ae_error err = {0};
  if (ae_rank_compute(cards, n, &s->rank, &r, &err)) {
    if (err.code == AE_ENOMEM || !err.reason) {
      ae_error_clear(&err);
      goto done;
    }
    ae_problem_set(p, 409, "not_rankable", "Not rankable",
                   "The members cannot be ranked: %s", err.reason);
    ae_error_clear(&err);
    goto done;
  }
  root = ae_rank_result_to_json(&r, ids);
  ae_rank_result_free(&r);
  if (!root) goto done;
  if (srv->fleet) qsort(jobs, n, sizeof *jobs, job_id_cmp);
  /* Each member names its job, architecture and canonical key. */
  json_t *members = json_object_get(root, "members");
  size_t k;
  json_t *m;
  json_array_foreach(members, k, m) {
    const char *id = json_string_value(json_object_get(m, "id"));
    ae_job *job = !id          ? NULL
                  : srv->fleet ? ranked_job(jobs, n, id)
                               : ae_job_table_find(&srv->jobs, id);
    if (!job) continue;
    json_object_set_new(m, "job", json_string(job->id));
    json_t *request = ae_job_request_json(job);
    json_object_set(m, "architecture",
                    json_object_get(request, "architecture"));
    json_decref(request);
    json_object_set_new(m, "canonical",
                        job->canonical[0] ? json_string(job->canonical)
                                          : json_null());
    json_object_set_new(m, "cached", json_boolean(job->cached));
    json_object_set_new(m, "client_ref",
                        job->client_ref ? json_string(job->client_ref)
                                        : json_null());
  }
bound:
  if (root) {
    json_object_set_new(root, "study", json_string(s->id));
    json_object_set_new(root, "selection_bound", selection_bound_json(s, n));
  }
done:
  for (size_t i = 0; cards && i < n; i++)
    json_decref(cards[i]);
  free(cards);
  free(ids);
  free(jobs);
  return root;
}

static const char *const aspect_keys[] = {"expressivity", "convergence",
                                          "generalization", "complexity"};

static void csv_field(FILE *f, const json_t *v) {
  if (!v || json_is_null(v)) return;
  if (json_is_string(v)) {
    const char *t = json_string_value(v);
    fputc('"', f);
    for (; *t; t++) {
      if (*t == '"') fputc('"', f);
      fputc(*t, f);
    }
    fputc('"', f);
  } else if (json_is_number(v)) {
    fprintf(f, "%.17g", json_number_value(v));
  } else if (json_is_boolean(v)) {
    fputs(json_is_true(v) ? "true" : "false", f);
  } else {
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_t *s = text ? json_string(text) : NULL;
    csv_field(f, s);
    json_decref(s);
    free(text);
  }
}

/* One row per member: rank, job, score, pareto, aspect ranks, every
 * metric's value, canonical, client_ref, architecture (JSON). */
static char *ranking_csv(const json_t *ranking, size_t from, size_t to,
                         size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (!f) return NULL;
  const json_t *members = json_object_get(ranking, "members");
  /* The metric columns: every metric the ranking used. */
  json_t *names = json_array();
  const json_t *first = json_array_get(members, 0);
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)json_object_get(first, "metrics"), key, value) {
    json_array_append_new(names, json_string(key));
  }
  fputs("rank,job,score,pareto", f);
  for (size_t a = 0; a < 4; a++)
    fprintf(f, ",%s_rank", aspect_keys[a]);
  size_t i;
  json_array_foreach(names, i, value)
      fprintf(f, ",%s", json_string_value(value));
  fputs(",canonical,cached,client_ref,architecture\n", f);
  for (size_t k = from; k < to; k++) {
    const json_t *m = json_array_get(members, k);
    csv_field(f, json_object_get(m, "rank"));
    fputc(',', f);
    csv_field(f, json_object_get(m, "job"));
    fputc(',', f);
    csv_field(f, json_object_get(m, "score"));
    fputc(',', f);
    csv_field(f, json_object_get(m, "pareto"));
    const json_t *ar = json_object_get(m, "aspect_ranks");
    for (size_t a = 0; a < 4; a++) {
      fputc(',', f);
      csv_field(f, json_object_get(ar, aspect_keys[a]));
    }
    const json_t *metrics = json_object_get(m, "metrics");
    json_array_foreach(names, i, value) {
      fputc(',', f);
      csv_field(f, json_object_get(metrics, json_string_value(value)));
    }
    static const char *const tail[] = {"canonical", "cached", "client_ref",
                                       "architecture"};
    for (size_t t = 0; t < 4; t++) {
      fputc(',', f);
      csv_field(f, json_object_get(m, tail[t]));
    }
    fputc('\n', f);
  }
  json_decref(names);
  if (fclose(f)) {
    free(buf);
    return NULL;
  }
  return buf;
}

static char *ranking_jsonl(const json_t *ranking, size_t from, size_t to,
                           size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (!f) return NULL;
  const json_t *members = json_object_get(ranking, "members");
  for (size_t k = from; k < to; k++) {
    char *line = ae_json_dumps(json_array_get(members, k));
    if (line) fprintf(f, "%s\n", line);
    free(line);
  }
  if (fclose(f)) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void h_ranking(ae_server *srv, const ae_study_call *call,
                      ae_study_reply *out) {
  int grc;
  ae_study *s = study_get(srv, call->id, NULL, &grc);
  if (!s) return reply_get_failed(srv, out, call->id, grc);
  const char *format = call->query(call->ctx, "format");
  if (format && strcmp(format, "json") && strcmp(format, "csv") &&
      strcmp(format, "jsonl")) {
    ae_problem_add(&out->problem, "format", "One of json, csv, jsonl.");
    return;
  }
  long long size;
  ae_page_key offset = {.seq = 0}; /* a ranking's token: the next rank */
  if (page_size_of(call, RANKING_PAGE_MAX, RANKING_PAGE_MAX, &size,
                   &out->problem))
    return;
  const char *token = call->query(call->ctx, "page_token");
  if (token && (ae_page_token_decode(token, &offset) || offset.id[0])) {
    ae_problem_add(&out->problem, "page_token",
                   "Not a page token this server gave.");
    return;
  }
  if (!s->ranking || s->ranking_version != s->version) {
    json_t *fresh = ranking_compute(srv, s, &out->problem);
    if (!fresh) {
      if (!out->problem.status) reply_oom(out);
      return;
    }
    json_decref(s->ranking);
    s->ranking = fresh;
    s->ranking_version = s->version;
  }
  const json_t *members = json_object_get(s->ranking, "members");
  size_t total = json_array_size(members);
  size_t from = offset.seq < 0 ? 0 : (size_t)offset.seq;
  if (from > total) from = total;
  size_t to = from + (size_t)size < total ? from + (size_t)size : total;
  if (format && strcmp(format, "json")) {
    size_t len = 0;
    char *text = !strcmp(format, "csv")
                     ? ranking_csv(s->ranking, from, to, &len)
                     : ranking_jsonl(s->ranking, from, to, &len);
    if (!text) return reply_oom(out);
    reply_text(out, text, len,
               !strcmp(format, "csv") ? "text/csv; charset=utf-8"
                                      : "application/x-ndjson");
    return;
  }
  json_t *page = json_copy(s->ranking); /* shallow: the members replaced */
  json_t *slice = json_array();
  if (!page || !slice) {
    json_decref(page);
    json_decref(slice);
    return reply_oom(out);
  }
  for (size_t k = from; k < to; k++)
    json_array_append(slice, json_array_get(members, k));
  json_object_set_new(page, "members", slice);
  char next[AE_PAGE_TOKEN_MAX];
  if (to < total) ae_page_token_encode((long long)to, NULL, next, sizeof next);
  json_object_set_new(page, "next_page_token",
                      to < total ? json_string(next) : json_null());
  reply_json(out, 200, page);
}

void ae_study_handle(ae_server *srv, const ae_study_call *call,
                     ae_study_reply *out) {
  memset(out, 0, sizeof *out);
  out->problem = (ae_problem)AE_PROBLEM_INIT;
  switch (call->op) {
  case AE_STUDY_CREATE:
    h_create(srv, call, out);
    break;
  case AE_STUDY_LIST:
    h_list(srv, call, out);
    break;
  case AE_STUDY_GET:
    h_get(srv, call, out);
    break;
  case AE_STUDY_ADD:
    h_add(srv, call, out);
    break;
  case AE_STUDY_RANKING:
    h_ranking(srv, call, out);
    break;
  case AE_STUDY_DELETE:
    h_delete(srv, call, out);
    break;
  }
  /* --fleet: the rows read for this request are not kept. */
  if (srv->fleet && srv->studies)
    for (ae_study *s = srv->studies->newest; s; s = s->older)
      study_drop_rows(s);
}
