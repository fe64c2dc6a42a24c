/* models.c: uploaded ONNX models (api.md "Models"): the upload, its
 * import on libuv's threadpool, the store's models table (or a bounded
 * table in memory under --no-store), GET and DELETE, and the model source
 * job requests are resolved through.
 *
 * Design.  An upload is hashed, decoded (api/onnx.c), parsed and lowered
 * for the model's own input shape on a threadpool thread, which builds two
 * texts: the description (the answer) and the "resolved" form a job needs
 * ({"architecture": graph, "input_shape", "num_classes", "warnings"}: the
 * import's warnings reach each job's result as "architecture.model: ...").  The
 * loop then stores both with the bytes (the first upload of some bytes wins:
 * 201, later ones 200) and answers.  A job naming the model reads the resolved
 * text back (a small JSON parse on the loop, like any job body): the ONNX
 * file is never decoded on the loop thread.  Models are independent of
 * jobs, except that one a queued or running job names cannot be deleted.
 *
 * Thread: the loop thread owns srv->models and calls everything here; an
 * ae_model_upload belongs to the threadpool between start and done. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/onnx.h"
#include "api/onnx_nb201.h"
#include "api/scorecard.h"
#include "api/sha256.h"
#include "api/status.h"
#include "server/job_state.h"
#include "server/models.h"
#include "server/util.h"

/* Models kept in memory when there is no store. */
#define AE_MODELS_IN_MEMORY_MAX 64

typedef struct memory_model {
  struct memory_model *next;
  char id[72];
  char *description;
  char *resolved;
} memory_model;

struct ae_models {
  ae_server *srv;
  ae_model_source source;
  memory_model *memory; /* --no-store only */
  size_t n_memory;
};

struct ae_model_upload {
  uv_work_t work;
  ae_server *srv;
  void (*done)(void *ctx);
  void *ctx;
  int abandoned; /* the client went: drop the result */
  int finished;  /* the work ended (done was called) */
  /* In: the file and the limits. */
  unsigned char *bytes;
  size_t len;
  ae_onnx_limits onnx_limits;
  ae_limits limits;
  /* Out (the threadpool's until done): the id and either both texts or
   * a problem; rc is AE_ENOMEM when memory ran out. */
  char id[72];
  char *description;
  char *resolved;
  ae_problem problem;
  int rc;
};

/* ---- the import (threadpool) ---- */

/* Lowers the imported model for its own input shape and builds the two
 * texts.  0, AE_EINVAL (p filled) or AE_ENOMEM. */
static int describe(ae_model_upload *u, const ae_onnx_model *m, ae_problem *p) {
  ae_arch arch;
  ae_graph g;
  memset(&arch, 0, sizeof arch);
  memset(&g, 0, sizeof g);
  int rc =
      ae_arch_from_json(m->architecture, "/architecture", &u->limits, &arch, p);
  if (rc == AE_OK) {
    ae_lower_opts lo;
    memset(&lo, 0, sizeof lo);
    memcpy(lo.input_shape, m->input_shape, sizeof lo.input_shape);
    lo.input_rank = m->input_rank;
    rc = ae_arch_lower(&arch, &lo, &u->limits, "/architecture", &g, p);
  }
  if (rc != AE_OK) {
    ae_arch_free(&arch);
    return rc == AE_ENOMEM ? AE_ENOMEM : AE_EINVAL;
  }
  json_t *shape = m->input_rank == 3
                      ? json_pack("[i, i, i]", m->input_shape[0],
                                  m->input_shape[1], m->input_shape[2])
                      : json_pack("[i]", m->input_shape[0]);
  json_t *resolved = json_pack(
      "{s:O, s:o, s:i, s:O}", "architecture", m->architecture, "input_shape",
      shape, "num_classes", g.num_classes, "warnings", m->warnings);
  /* A NAS-Bench-201 network: what its jobs are scored as. */
  ae_onnx_nb201 nb;
  int is_nb201 =
      ae_onnx_nb201_match(m->architecture, m->input_shape, m->input_rank, &nb);
  json_t *recognized = is_nb201 == 1 ? ae_onnx_nb201_json(&nb) : json_null();
  json_t *desc = json_pack(
      "{s:s, s:I, s:O, s:O, s:O, s:i, s:I, s:I, s:I, s:i, s:I, s:O, s:o*}",
      "id", u->id, "bytes", (json_int_t)u->len, "inputs", m->inputs, "outputs",
      m->outputs, "ops", m->ops, "nodes", g.n_nodes, "params",
      (json_int_t)llround(ae_graph_params(&g)), "flops",
      (json_int_t)llround(ae_graph_flops(&g)), "macs",
      (json_int_t)llround(ae_graph_macs(&g)), "onnx_nodes", m->n_onnx_nodes,
      "opset", (json_int_t)m->opset, "warnings", m->warnings, "recognized",
      recognized);
  ae_graph_free(&g);
  ae_arch_free(&arch);
  u->resolved = resolved ? ae_json_dumps(resolved) : NULL;
  u->description = desc ? ae_json_dumps(desc) : NULL;
  json_decref(resolved);
  json_decref(desc);
  return u->resolved && u->description && is_nb201 >= 0 && recognized
             ? AE_OK
             : AE_ENOMEM;
}

static void upload_work(uv_work_t *work) {
  ae_model_upload *u = work->data;
  char hex[65];
  ae_sha256_hex(u->bytes, u->len, hex);
  snprintf(u->id, sizeof u->id, "sha256:%s", hex);
  ae_onnx_model m;
  int rc = ae_onnx_import(u->bytes, u->len, &u->onnx_limits, &m, &u->problem);
  if (rc == AE_OK) {
    rc = describe(u, &m, &u->problem);
    ae_onnx_model_free(&m);
  }
  u->rc = rc;
}

static void upload_free(ae_model_upload *u) {
  free(u->bytes);
  free(u->description);
  free(u->resolved);
  ae_problem_clear(&u->problem);
  free(u);
}

static void upload_after(uv_work_t *work, int status) {
  ae_model_upload *u = work->data;
  if (status && !u->rc) u->rc = AE_EINTERNAL; /* cancelled */
  u->finished = 1;
  if (u->abandoned) {
    upload_free(u);
    return;
  }
  u->done(u->ctx);
}

int ae_models_upload_start(ae_server *srv, char *body, size_t len,
                           void (*done)(void *ctx), void *ctx,
                           ae_model_upload **out) {
  *out = NULL;
  ae_model_upload *u = calloc(1, sizeof *u);
  if (!u) {
    free(body);
    return AE_ENOMEM;
  }
  u->srv = srv;
  u->done = done;
  u->ctx = ctx;
  u->bytes = (unsigned char *)body;
  u->len = len;
  u->problem = (ae_problem)AE_PROBLEM_INIT;
  ae_onnx_limits_default(&u->onnx_limits);
  u->onnx_limits.max_bytes = (size_t)srv->opt->max_model_bytes;
  u->onnx_limits.max_unpacked_bytes =
      4 * (size_t)srv->opt->max_model_bytes + (16u << 20);
  u->limits = srv->limits;
  u->work.data = u;
  if (uv_queue_work(srv->loop, &u->work, upload_work, upload_after)) {
    upload_free(u);
    return AE_EINTERNAL;
  }
  *out = u;
  return AE_OK;
}

void ae_models_upload_abandon(ae_model_upload *u) {
  if (!u) return;
  if (u->finished)
    upload_free(u);
  else
    u->abandoned = 1;
}

/* ---- the table: the store, or memory ---- */

static memory_model *memory_find(struct ae_models *t, const char *id) {
  for (memory_model *m = t->memory; m; m = m->next)
    if (!strcmp(m->id, id)) return m;
  return NULL;
}

/* Puts a model: *created 1 when new.  0, AE_EIO (the store; or memory is
 * full) or AE_ENOMEM. */
static int table_put(ae_server *srv, const ae_model_upload *u, int *created) {
  struct ae_models *t = srv->models;
  *created = 0;
  if (srv->store) {
    ae_store_model row = {.id = u->id,
                          .bytes = u->bytes,
                          .len = u->len,
                          .description_json = u->description,
                          .architecture_json = u->resolved,
                          .created_ms = ae_now_ms()};
    return ae_store_model_put(srv->store, &row, created);
  }
  if (memory_find(t, u->id)) return AE_OK;
  if (t->n_memory >= AE_MODELS_IN_MEMORY_MAX) return AE_EIO;
  memory_model *m = calloc(1, sizeof *m);
  if (!m) return AE_ENOMEM;
  snprintf(m->id, sizeof m->id, "%s", u->id);
  m->description = strdup(u->description);
  m->resolved = strdup(u->resolved);
  if (!m->description || !m->resolved) {
    free(m->description);
    free(m->resolved);
    free(m);
    return AE_ENOMEM;
  }
  m->next = t->memory;
  t->memory = m;
  t->n_memory++;
  *created = 1;
  return AE_OK;
}

typedef struct {
  char *description;
  char *resolved;
} model_texts;

static int copy_texts(void *ud, const ae_store_model *m) {
  model_texts *out = ud;
  out->description = strdup(m->description_json);
  out->resolved = strdup(m->architecture_json);
  return out->description && out->resolved ? AE_OK : AE_ENOMEM;
}

/* The stored texts of a model (malloc'd): 0, AE_ENOTFOUND, AE_EIO,
 * AE_ENOMEM. */
static int table_get(ae_server *srv, const char *id, model_texts *out) {
  memset(out, 0, sizeof *out);
  int rc;
  if (srv->store) {
    rc = ae_store_model_get(srv->store, id, copy_texts, out);
  } else {
    memory_model *m = memory_find(srv->models, id);
    if (!m) return AE_ENOTFOUND;
    ae_store_model row = {.id = m->id,
                          .description_json = m->description,
                          .architecture_json = m->resolved};
    rc = copy_texts(out, &row);
  }
  if (rc) {
    free(out->description);
    free(out->resolved);
    memset(out, 0, sizeof *out);
  }
  return rc;
}

static int table_delete(ae_server *srv, const char *id) {
  if (srv->store) return ae_store_model_delete(srv->store, id);
  struct ae_models *t = srv->models;
  for (memory_model **at = &t->memory; *at; at = &(*at)->next) {
    if (strcmp((*at)->id, id)) continue;
    memory_model *m = *at;
    *at = m->next;
    free(m->description);
    free(m->resolved);
    free(m);
    t->n_memory--;
    return AE_OK;
  }
  return AE_ENOTFOUND;
}

/* ---- the model source (job requests) ---- */

static int resolve_model(void *ctx, const char *id, ae_model_info *out) {
  ae_server *srv = ctx;
  memset(out, 0, sizeof *out);
  model_texts texts;
  int rc = table_get(srv, id, &texts);
  if (rc) {
    if (rc == AE_EIO)
      ae_log(AE_LOG_ERROR, "store: model get %s: %s", id,
             ae_store_errmsg(srv->store));
    return rc;
  }
  free(texts.description);
  json_error_t err;
  json_t *root = json_loads(texts.resolved, 0, &err);
  free(texts.resolved);
  json_t *arch = json_object_get(root, "architecture");
  json_t *shape = json_object_get(root, "input_shape");
  size_t rank = json_array_size(shape);
  if (!json_is_object(arch) || (rank != 1 && rank != 3)) {
    json_decref(root);
    ae_log(AE_LOG_ERROR, "model %s: its stored form is unreadable", id);
    return AE_EIO;
  }
  for (size_t k = 0; k < rank; k++)
    out->input_shape[k] = (int)json_integer_value(json_array_get(shape, k));
  out->input_rank = (int)rank;
  out->num_classes =
      (int)json_integer_value(json_object_get(root, "num_classes"));
  out->architecture = json_incref(arch);
  /* The import's warnings (absent from models stored before they were
   * kept here: those jobs report none). */
  json_t *warnings = json_object_get(root, "warnings");
  if (json_array_size(warnings) > 0) out->warnings = json_incref(warnings);
  json_decref(root);
  return AE_OK;
}

int ae_models_init(ae_server *srv) {
  struct ae_models *t = calloc(1, sizeof *t);
  if (!t) return AE_ENOMEM;
  t->srv = srv;
  t->source.resolve = resolve_model;
  t->source.ctx = srv;
  srv->models = t;
  return AE_OK;
}

void ae_models_free(ae_server *srv) {
  struct ae_models *t = srv->models;
  if (!t) return;
  while (t->memory) {
    memory_model *m = t->memory;
    t->memory = m->next;
    free(m->description);
    free(m->resolved);
    free(m);
  }
  free(t);
  srv->models = NULL;
}

const ae_model_source *ae_models_source(ae_server *srv) {
  return srv->models ? &srv->models->source : NULL;
}

/* ---- the answers ---- */

static void reply_store_failed(ae_server *srv, const char *what,
                               ae_model_reply *out) {
  if (!srv->store) {
    ae_problem_set(&out->problem, 507, "insufficient_storage",
                   "Insufficient storage",
                   "This server keeps at most %d models in memory "
                   "(--no-store); delete one first.",
                   AE_MODELS_IN_MEMORY_MAX);
    return;
  }
  ae_log(AE_LOG_ERROR, "store: model %s: %s", what,
         ae_store_errmsg(srv->store));
  ae_problem_set(&out->problem, 503, "store_unavailable", "Store unavailable",
                 "The job store failed; the model %s was not done.", what);
}

static void reply_internal(ae_model_reply *out, int rc) {
  ae_problem_set(&out->problem, 500, "internal", "Internal error",
                 "The model could not be handled: %s.", ae_strerror(rc));
}

void ae_models_upload_finish(ae_model_upload *u, ae_model_reply *out) {
  memset(out, 0, sizeof *out);
  out->problem = (ae_problem)AE_PROBLEM_INIT;
  ae_server *srv = u->srv;
  if (u->rc == AE_EINVAL && u->problem.status) {
    out->problem = u->problem;
    u->problem = (ae_problem)AE_PROBLEM_INIT;
  } else if (u->rc) {
    reply_internal(out, u->rc);
  } else {
    int created = 0;
    int rc = table_put(srv, u, &created);
    if (rc == AE_ENOMEM) {
      reply_internal(out, rc);
    } else if (rc) {
      reply_store_failed(srv, "upload", out);
    } else {
      out->status = created ? 201 : 200;
      out->body = u->description;
      out->len = strlen(u->description);
      u->description = NULL;
      snprintf(out->location, sizeof out->location, "/v1/models/%s", u->id);
      ae_log(AE_LOG_INFO, "model %s: %s (%zu bytes)", u->id,
             created ? "stored" : "already stored", u->len);
    }
  }
  upload_free(u);
}

static void reply_not_found(const char *id, ae_model_reply *out) {
  ae_problem_set(&out->problem, 404, "not_found", "Not found",
                 "No model %s (unknown or deleted).", id);
}

void ae_models_get(ae_server *srv, const char *id, ae_model_reply *out) {
  memset(out, 0, sizeof *out);
  out->problem = (ae_problem)AE_PROBLEM_INIT;
  model_texts texts;
  int rc = table_get(srv, id, &texts);
  if (rc == AE_ENOTFOUND) return reply_not_found(id, out);
  if (rc == AE_EIO) return reply_store_failed(srv, "read", out);
  if (rc) return reply_internal(out, rc);
  free(texts.resolved);
  out->status = 200;
  out->body = texts.description;
  out->len = strlen(texts.description);
}

/* A queued or running job that names the model, or NULL. */
static ae_job *job_using(ae_server *srv, const char *id) {
  ae_job_iter it;
  ae_job_iter_start(&srv->jobs, NULL, &it);
  for (ae_job *job; (job = ae_job_iter_next(&it));) {
    if (ae_job_terminal(job) || !job->has_req) continue;
    if (job->req.arch.model && !strcmp(job->req.arch.model, id)) return job;
  }
  return NULL;
}

void ae_models_delete(ae_server *srv, const char *id, ae_model_reply *out) {
  memset(out, 0, sizeof *out);
  out->problem = (ae_problem)AE_PROBLEM_INIT;
  ae_job *job = job_using(srv, id);
  if (job) {
    ae_problem_set(&out->problem, 409, "model_in_use", "Model in use",
                   "Job %s (%s) uses model %s; cancel it or let it finish "
                   "first.",
                   job->id, ae_job_state_name(job->state), id);
    return;
  }
  int rc = table_delete(srv, id);
  if (rc == AE_ENOTFOUND) return reply_not_found(id, out);
  if (rc == AE_EIO) return reply_store_failed(srv, "delete", out);
  if (rc) return reply_internal(out, rc);
  out->status = 204;
  ae_log(AE_LOG_INFO, "model %s: deleted", id);
}
