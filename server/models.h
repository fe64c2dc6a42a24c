/* models.h: uploaded ONNX models (api.md "Models", issue 12): POST
 * /v1/models, GET and DELETE /v1/models/{id}, and the model source through
 * which job requests naming {"type": "onnx", "model": id} are resolved.
 *
 * A model is content-addressed (its id is "sha256:" and the hex SHA-256 of
 * its bytes) and kept in the job store (the models table), or in memory
 * under --no-store.  The import (protobuf decoding, the graph, its
 * lowering) runs on libuv's threadpool, never on the loop thread; http.c
 * suspends the upload's connection meanwhile.
 *
 * Thread: the loop thread owns the table (srv->models) and every call
 * here; the threadpool touches only its own ae_model_upload. */
#ifndef AE_SERVER_MODELS_H
#define AE_SERVER_MODELS_H

#include <stddef.h>

#include "api/problem.h"
#include "api/request.h"
#include "server/daemon.h"

/* An answer: a problem (problem.status set) or a JSON body. */
typedef struct {
  int status;
  char *body; /* malloc'd JSON, the caller frees */
  size_t len;
  char location[96]; /* "" when none */
  ae_problem problem;
} ae_model_reply;

typedef struct ae_model_upload ae_model_upload;

/* The in-memory table (--no-store) and the model source.  Call after the
 * store is open. */
int ae_models_init(ae_server *srv);
void ae_models_free(ae_server *srv);

/* The source ae_request_parse_models resolves models through (the store,
 * or memory).  Valid until ae_models_free. */
const ae_model_source *ae_models_source(ae_server *srv);

/* POST /v1/models: takes body (malloc'd, len bytes; freed here whatever
 * happens) and starts importing it on the threadpool; done(ctx) is called
 * on the loop once the answer is ready (ae_models_upload_finish).  AE_OK
 * with *out set, or AE_ENOMEM / AE_EINTERNAL (body freed, done never
 * called). */
int ae_models_upload_start(ae_server *srv, char *body, size_t len,
                           void (*done)(void *ctx), void *ctx,
                           ae_model_upload **out);
/* After done: stores the model (201, or 200 when it was stored already)
 * or gives the import's problem; frees u. */
void ae_models_upload_finish(ae_model_upload *u, ae_model_reply *out);
/* The client went before ae_models_upload_finish: the result is dropped
 * now or, while the work runs, when it ends (done is then not called). */
void ae_models_upload_abandon(ae_model_upload *u);

/* GET /v1/models/{id}: 200 with the description, or 404. */
void ae_models_get(ae_server *srv, const char *id, ae_model_reply *out);
/* DELETE /v1/models/{id}: 204, 404, or 409 while a queued or running job
 * uses it. */
void ae_models_delete(ae_server *srv, const char *id, ae_model_reply *out);

#endif
