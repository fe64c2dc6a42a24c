/* cache.c: the result cache and the dedup of identical jobs (cache.h).
 *
 * Design.  The cache itself is a table of the store (key -> result), so it
 * survives restarts and is shared by daemons sharing a store.  This file
 * adds the in-flight map: cache key -> the job computing it (the leader)
 * and the ids of the jobs waiting for it (followers, "deferred": queued,
 * outside the queue).  When a leader ends, the listener registered here
 * stores its result and finishes every follower with a copy ("cached"),
 * or, when the leader failed or was cancelled, queues the first follower
 * as the new leader.  Followers are held by id, so a follower cancelled
 * and deleted meanwhile is simply skipped.  After a restart the map is
 * empty: jobs that were deferred are queued like any other and find the
 * cache filled by then or compute.
 *
 * A fleet (--fleet): a job runs on whichever replica claims it, so there
 * is no in-flight map here: the store is the fleet's (store.h, follow),
 * a job that may wait (a study's member, or a batch's duplicate) is
 * inserted waiting for its leader found in the store, and the leader's
 * end ends or releases its followers there; a submission looks its key up
 * in the store's cache, which every replica fills: the replica that claimed a
 * job computes its key again from the stored request (job_load.c) and stores
 * its result before its end (job_state.c), so that a client that saw the
 * end finds the result cached on any replica.
 *
 * Thread: the loop thread owns the map and every job it names. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/canon.h"
#include "api/sha256.h"
#include "api/status.h"
#include "server/cache.h"
#include "server/job_state.h"
#include "server/util.h"

#define CACHE_BUCKETS 4096

typedef struct cache_entry {
  char key[65];
  char leader[32];
  char (*followers)[32];
  size_t n_followers, cap;
  size_t batch_index; /* while fresh: the leader's index in its batch */
  int fresh;          /* made by the submission in progress */
  struct cache_entry *next;
} cache_entry;

struct ae_cache {
  cache_entry *buckets[CACHE_BUCKETS];
};

static size_t bucket_of(const char *key) {
  /* The key is hex SHA-256: its first digits are uniform. */
  return (size_t)strtoul((char[9]){key[0], key[1], key[2], key[3], key[4],
                                   key[5], key[6], key[7], 0},
                         NULL, 16) %
         CACHE_BUCKETS;
}

static cache_entry *entry_find(struct ae_cache *c, const char *key) {
  for (cache_entry *e = c->buckets[bucket_of(key)]; e; e = e->next)
    if (!strcmp(e->key, key)) return e;
  return NULL;
}

static void entry_unlink(struct ae_cache *c, cache_entry *e) {
  cache_entry **at = &c->buckets[bucket_of(e->key)];
  while (*at && *at != e)
    at = &(*at)->next;
  if (*at) *at = e->next;
}

static void entry_free(cache_entry *e) {
  if (!e) return;
  free(e->followers);
  free(e);
}

static int entry_follow(cache_entry *e, const char *id) {
  if (e->n_followers == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 4;
    void *grown = realloc(e->followers, cap * sizeof *e->followers);
    if (!grown) return AE_ENOMEM;
    e->followers = grown;
    e->cap = cap;
  }
  snprintf(e->followers[e->n_followers++], 32, "%s", id);
  return AE_OK;
}

/* json_dump_callback's sink: the text's pieces into the hash. */
static int hash_piece(const char *buf, size_t len, void *data) {
  ae_sha256_update(data, buf, len);
  return 0;
}

/* The cache key of a parsed request and its architecture's canonical
 * key.  AE_OK, or an error when the architecture has no canonical form
 * (the job is then computed without the cache). */
int ae_cache_keys(const ae_request *req, char canonical[65], char key[65]) {
  /* An architecture that states the data's own class count is the one
   * that leaves it to the data (0): one key for both spellings. */
  ae_arch arch = req->arch;
  if (arch.num_classes == req->data.num_classes) arch.num_classes = 0;
  ae_canon c;
  if (ae_arch_canon(&arch, &c)) return AE_ENOMEM;
  snprintf(canonical, 65, "%s", c.key);
  ae_canon_free(&c);
  return ae_cache_key_of(req, canonical, key);
}

int ae_cache_key_of(const ae_request *req, const char *canonical,
                    char key[65]) {
  /* The request without the fields that do not change the result: a new
   * object sharing the values (megabytes of inline inputs are not
   * copied), its text streamed into the hash (never held whole). */
  if (!json_is_object(req->normalised)) return AE_EINVAL;
  json_t *rest = json_object();
  if (!rest) return AE_ENOMEM;
  static const char *const skip[] = {"architecture", "client_ref", "priority",
                                     "timeout_ms"};
  const char *name;
  json_t *value;
  json_object_foreach(req->normalised, name, value) {
    size_t k = 0;
    while (k < sizeof skip / sizeof skip[0] && strcmp(name, skip[k]))
      k++;
    if (k == sizeof skip / sizeof skip[0] &&
        json_object_set(rest, name, value)) {
      json_decref(rest);
      return AE_ENOMEM;
    }
  }
  /* An uploaded model's import warnings are part of its result: a model
   * whose graph equals another's but whose BN was folded must not share
   * the other's result.  Absent (the key as before) when there are none. */
  if (json_array_size(req->model_warnings) > 0 &&
      json_object_set(rest, "model_warnings", req->model_warnings)) {
    json_decref(rest);
    return AE_ENOMEM;
  }
  /* An uploaded model scored as its recognised nb201 network carries a
   * warning the native request's scorecard has not, which names the model
   * and says whether its export was in eval mode: a key of its own per
   * model (and one apart from the same model's "as_graph", whose
   * canonical is its graph's). */
  char form[160] = "";
  if (req->arch.model && req->arch.type == AE_ARCH_NB201)
    snprintf(form, sizeof form, " onnx=nb201%s model=%.100s",
             req->arch.model_bn_folded ? "-bn-folded" : "", req->arch.model);
  char head[384];
  snprintf(head, sizeof head, "archeval-cache/1 engine=%s canon=%d%s\n%s\n",
           PACKAGE_VERSION, AE_CANON_VERSION, form, canonical);
  ae_sha256_ctx hash;
  ae_sha256_init(&hash);
  ae_sha256_update(&hash, head, strlen(head));
  int rc = json_dump_callback(rest, hash_piece, &hash,
                              JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(rest);
  if (rc) return AE_ENOMEM;
  ae_sha256_final_hex(&hash, key);
  return AE_OK;
}

static int take_result(void *ud, const char *text) {
  json_error_t err;
  json_t **out = ud;
  *out = json_loads(text, 0, &err);
  return *out ? AE_OK : AE_EIO;
}

/* Looks KEY up in the store's cache: 1 with *out the stored result (a
 * new reference), or 0 (absent, or the lookup failed: logged, the job is
 * computed). */
static int lookup(ae_server *srv, const char *key, json_t **out) {
  *out = NULL;
  if (!srv->store) return 0;
  int got = ae_store_cache_get(srv->store, key, take_result, out);
  if (got == AE_OK && *out) return 1;
  json_decref(*out);
  *out = NULL;
  if (got != AE_ENOTFOUND)
    ae_log(AE_LOG_WARN, "cache: lookup failed (%s); computing",
           ae_store_errmsg(srv->store));
  return 0;
}

/* Drops the entries the failed submission made. */
static void drop_fresh(struct ae_cache *c, cache_entry **fresh, size_t n) {
  for (size_t i = 0; i < n; i++) {
    entry_unlink(c, fresh[i]);
    entry_free(fresh[i]);
  }
}

int ae_cache_prepare(const ae_request *req, ae_cache_prepared *out) {
  memset(out, 0, sizeof *out);
  if (!(out->request_text = ae_json_dumps(req->normalised))) return AE_ENOMEM;
  out->have_keys = ae_cache_keys(req, out->canonical, out->key) == AE_OK;
  return AE_OK;
}

void ae_cache_prepared_free(ae_cache_prepared *p) {
  free(p->request_text);
  p->request_text = NULL;
}

int ae_cache_submit(ae_server *srv, ae_request *reqs, size_t n,
                    const char *idem_key, const char *body_hash, int batch,
                    const char *study, ae_job **out) {
  return ae_cache_submit_prepared(srv, reqs, n, idem_key, body_hash, batch,
                                  study, NULL, out);
}

int ae_cache_submit_prepared(ae_server *srv, ae_request *reqs, size_t n,
                             const char *idem_key, const char *body_hash,
                             int batch, const char *study,
                             ae_cache_prepared *prepared, ae_job **out) {
  struct ae_cache *c = srv->cache;
  ae_job_extra *extra = calloc(n, sizeof *extra);
  char(*keys)[2][65] = calloc(n, sizeof *keys);
  cache_entry **fresh = calloc(n, sizeof *fresh);
  cache_entry **leader_of = calloc(n, sizeof *leader_of);
  size_t n_fresh = 0;
  int rc = AE_OK;
  if (!extra || !keys || !fresh || !leader_of) {
    rc = AE_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    extra[i].study = study;
    if (prepared) {
      extra[i].request_text = prepared[i].request_text;
      prepared[i].request_text = NULL;
    }
    if (!c) continue;
    if (prepared && prepared[i].have_keys) {
      memcpy(keys[i][0], prepared[i].canonical, 65);
      memcpy(keys[i][1], prepared[i].key, 65);
    } else if (prepared || ae_cache_keys(&reqs[i], keys[i][0], keys[i][1])) {
      continue;
    }
    extra[i].canonical = keys[i][0];
    extra[i].cache_key = keys[i][1];
    if (srv->fleet) { /* the store's cache, and its jobs in flight */
      if (!lookup(srv, keys[i][1], &extra[i].result))
        extra[i].follow = study ? 2 : 1;
      continue;
    }
    cache_entry *e = entry_find(c, keys[i][1]);
    if (e && (e->fresh || study)) { /* earlier in this batch, or a study
                                       member of a network computing now */
      extra[i].deferred = 1;
      leader_of[i] = e;
      continue;
    }
    if (e) continue; /* a plain job computes on its own (no cache hit yet) */
    if (lookup(srv, keys[i][1], &extra[i].result)) continue;
    if (!(e = calloc(1, sizeof *e))) {
      rc = AE_ENOMEM;
      goto done;
    }
    snprintf(e->key, sizeof e->key, "%s", keys[i][1]);
    e->fresh = 1;
    e->batch_index = i;
    size_t b = bucket_of(e->key);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    fresh[n_fresh++] = e;
  }
  rc = ae_jobs_submit_ex(srv, reqs, n, idem_key, body_hash, batch, extra, out);
  if (rc) goto done;
  for (size_t i = 0; i < n_fresh; i++) {
    snprintf(fresh[i]->leader, sizeof fresh[i]->leader, "%s",
             out[fresh[i]->batch_index]->id);
    fresh[i]->fresh = 0;
  }
  n_fresh = 0;
  for (size_t i = 0; i < n; i++) {
    if (!leader_of[i]) continue;
    if (entry_follow(leader_of[i], out[i]->id)) {
      /* No room to wait: compute it instead. */
      out[i]->deferred = 0;
      if (!ae_queue_reserve(&srv->queue, 1)) {
        ae_job_enqueue(srv, out[i]);
        srv->n_queued++;
      } else {
        ae_job_finish(srv, out[i], AE_JOB_FAILED, "internal", NULL, NULL);
      }
    }
  }
done:
  if (c) drop_fresh(c, fresh, n_fresh);
  for (size_t i = 0; extra && i < n; i++) {
    json_decref(extra[i].result);
    free(extra[i].request_text); /* NULL once a job took it */
  }
  free(extra);
  free(keys);
  free(fresh);
  free(leader_of);
  return rc;
}

/* A follower takes the leader's result. */
static void finish_follower(ae_server *srv, ae_job *f, const json_t *result) {
  json_t *copy = json_deep_copy(result);
  f->cached = 1;
  if (srv->store) {
    int rc = ae_store_mark_cached(srv->store, f->id);
    if (rc) ae_jobs_store_failed(srv, "mark cached", f->id, rc);
  }
  if (copy)
    ae_job_finish(srv, f, AE_JOB_SUCCEEDED, "cached", copy, NULL);
  else
    ae_job_finish(srv, f, AE_JOB_FAILED, "internal", NULL, NULL);
}

static void on_terminal(ae_server *srv, ae_job *job) {
  struct ae_cache *c = srv->cache;
  if (!c || !job->cache_key[0] || !ae_job_terminal(job)) return;
  cache_entry *e = entry_find(c, job->cache_key);
  if (!e || strcmp(e->leader, job->id)) return;
  entry_unlink(c, e);
  json_t *result = ae_job_result_json(job);
  if (result) {
    if (srv->store) {
      char *text = ae_json_dumps(result);
      int rc = text ? ae_store_cache_put(srv->store, e->key, job->canonical,
                                         text, ae_now_ms())
                    : AE_ENOMEM;
      free(text);
      if (rc) ae_jobs_store_failed(srv, "cache put", job->id, rc);
    }
    for (size_t i = 0; i < e->n_followers; i++) {
      ae_job *f = ae_job_table_find(&srv->jobs, e->followers[i]);
      if (f && f->deferred && !ae_job_terminal(f))
        finish_follower(srv, f, result);
    }
    json_decref(result);
    entry_free(e);
    return;
  }
  if (srv->draining) { /* stopping: the followers stop as the queue does */
    for (size_t i = 0; i < e->n_followers; i++) {
      ae_job *f = ae_job_table_find(&srv->jobs, e->followers[i]);
      if (f && f->deferred && !ae_job_terminal(f))
        ae_job_finish(srv, f, AE_JOB_CANCELLED, "draining", NULL, NULL);
    }
    entry_free(e);
    return;
  }
  /* Not computed: the first follower still waiting computes it. */
  size_t i = 0;
  ae_job *next = NULL;
  for (; i < e->n_followers && !next; i++) {
    ae_job *f = ae_job_table_find(&srv->jobs, e->followers[i]);
    if (f && f->deferred && !ae_job_terminal(f)) next = f;
  }
  if (!next || ae_queue_reserve(&srv->queue, 1)) {
    if (next) ae_job_finish(srv, next, AE_JOB_FAILED, "internal", NULL, NULL);
    entry_free(e);
    return;
  }
  snprintf(e->leader, sizeof e->leader, "%s", next->id);
  memmove(e->followers, e->followers + i,
          (e->n_followers - i) * sizeof *e->followers);
  e->n_followers -= i;
  size_t b = bucket_of(e->key);
  e->next = c->buckets[b];
  c->buckets[b] = e;
  next->deferred = 0;
  next->enqueued_ns = ae_mono_ns();
  ae_job_enqueue(srv, next);
  srv->n_queued++;
}

int ae_cache_init(ae_server *srv) {
  srv->cache = calloc(1, sizeof *srv->cache);
  if (!srv->cache) return AE_ENOMEM;
  return ae_jobs_on_terminal(srv, on_terminal);
}

void ae_cache_free(ae_server *srv) {
  struct ae_cache *c = srv->cache;
  if (!c) return;
  for (size_t b = 0; b < CACHE_BUCKETS; b++) {
    cache_entry *e = c->buckets[b];
    while (e) {
      cache_entry *next = e->next;
      entry_free(e);
      e = next;
    }
  }
  free(c);
  srv->cache = NULL;
}
