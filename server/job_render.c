/* job_render.c: the job resource of api.md as JSON, and the caches that
 * keep a GET from re-rendering what did not change: the normalised
 * request's text is rendered once per job (it never changes, and may hold
 * megabytes of inline inputs) and spliced into each rendering, and a
 * terminal job's whole text is kept (a finished job never changes).
 *
 * Thread: the loop thread (the queue position takes the queue's lock). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "server/job_render.h"
#include "server/job_state.h"
#include "server/util.h"

static json_t *time_or_null(long long ms) {
  if (!ms) return json_null();
  char buf[40];
  ae_format_rfc3339(ms, buf, sizeof buf);
  return json_string(buf);
}

/* The resource; with request_placeholder, "request" is null (for the
 * splice of the cached text). */
static json_t *job_json(ae_server *srv, ae_job *job, int request_placeholder) {
  json_t *o = json_object();
  if (!o) return NULL;
  int bad = 0;
  bad |= json_object_set_new(o, "id", json_string(job->id));
  bad |= json_object_set_new(o, "state",
                             json_string(ae_job_state_name(job->state)));
  bad |= json_object_set_new(o, "cancel_requested",
                             json_boolean(job->cancel_requested));
  bad |= json_object_set_new(o, "created_at", time_or_null(job->created_ms));
  bad |= json_object_set_new(o, "started_at", time_or_null(job->started_ms));
  bad |= json_object_set_new(o, "finished_at", time_or_null(job->finished_ms));
  bad |= json_object_set_new(o, "expires_at", time_or_null(job->expires_ms));
  bad |= json_object_set_new(o, "priority", json_integer(job->priority));
  bad |= json_object_set_new(o, "timeout_ms", json_integer(job->timeout_ms));
  bad |= json_object_set_new(o, "client_ref",
                             job->client_ref ? json_string(job->client_ref)
                                             : json_null());
  if (job->handed_over || job->deferred)
    bad |= json_object_set_new(o, "queue_position", json_null());
  else if (job->state == AE_JOB_QUEUED)
    bad |= json_object_set_new(
        o, "queue_position",
        json_integer(ae_queue_position(&srv->queue, &job->entry)));
  if (job->handed_over) bad |= json_object_set_new(o, "draining", json_true());
  if (job->study[0])
    bad |= json_object_set_new(o, "study", json_string(job->study));
  if (job->canonical[0])
    bad |= json_object_set_new(o, "canonical", json_string(job->canonical));
  bad |= json_object_set_new(o, "cached", json_boolean(job->cached));
  bad |= json_object_set_new(
      o, "worker", job->worker[0] ? json_string(job->worker) : json_null());
  bad |= json_object_set(o, "request",
                         job->request_json && !request_placeholder
                             ? job->request_json
                             : json_null());
  if (job->state == AE_JOB_SUCCEEDED && job->result_json)
    bad |= json_object_set(o, "result", job->result_json);
  if (job->state == AE_JOB_FAILED && job->error_json)
    bad |= json_object_set(o, "error", job->error_json);
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

json_t *ae_job_to_json(ae_server *srv, ae_job *job) {
  return job_json(srv, job, 0);
}

/* The request's text, rendered on first use; NULL when out of memory. */
static const char *request_text(ae_job *job) {
  if (!job->request_text && job->request_json) {
    job->request_text = ae_json_dumps(job->request_json);
    if (job->request_text) job->request_len = strlen(job->request_text);
  }
  return job->request_text;
}

/* Renders the job with "request":null, then splices the cached request
 * text in its place.  The first `,"request":null` is the top-level key:
 * every key before it holds a scalar, and a '"' inside a string value is
 * always escaped. */
static char *render_spliced(ae_server *srv, ae_job *job, size_t *len) {
  static const char placeholder[] = ",\"request\":null";
  const char *request = request_text(job);
  if (!request) {
    json_t *j = job_json(srv, job, 0);
    char *text = ae_json_dumps(j);
    json_decref(j);
    if (text) *len = strlen(text);
    return text;
  }
  json_t *j = job_json(srv, job, 1);
  char *small = ae_json_dumps(j);
  json_decref(j);
  if (!small) return NULL;
  char *at = strstr(small, placeholder);
  if (!at) { /* cannot happen: the key is always there */
    free(small);
    return NULL;
  }
  size_t head = (size_t)(at - small) + sizeof placeholder - 1 - 4;
  size_t tail = strlen(at + sizeof placeholder - 1);
  size_t total = head + job->request_len + tail;
  char *text = malloc(total + 1);
  if (text) {
    memcpy(text, small, head);
    memcpy(text + head, request, job->request_len);
    memcpy(text + head + job->request_len, at + sizeof placeholder - 1,
           tail + 1);
    *len = total;
  }
  free(small);
  return text;
}

char *ae_job_render(ae_server *srv, ae_job *job, size_t *len) {
  if (job->cached_body) {
    char *copy = malloc(job->cached_len + 1);
    if (copy) {
      memcpy(copy, job->cached_body, job->cached_len + 1);
      *len = job->cached_len;
    }
    return copy;
  }
  char *text = render_spliced(srv, job, len);
  if (!text) return NULL;
  if (ae_job_terminal(job)) {
    job->cached_body = malloc(*len + 1);
    if (job->cached_body) {
      memcpy(job->cached_body, text, *len + 1);
      job->cached_len = *len;
    }
    /* The whole text is kept now: the request's alone is not needed. */
    free(job->request_text);
    job->request_text = NULL;
    job->request_len = 0;
  }
  return text;
}
