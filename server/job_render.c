/* job_render.c: the job resource of api.md as JSON, and the cache of a
 * terminal job's rendered text (a finished job never changes, and is read
 * far more often than it is written).
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

json_t *ae_job_to_json(ae_server *srv, ae_job *job) {
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
  if (job->state == AE_JOB_QUEUED)
    bad |= json_object_set_new(
        o, "queue_position",
        json_integer(ae_queue_position(&srv->queue, &job->entry)));
  bad |= json_object_set_new(
      o, "worker", job->worker[0] ? json_string(job->worker) : json_null());
  bad |= json_object_set(o, "request",
                         job->request_json ? job->request_json : json_null());
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

char *ae_job_render(ae_server *srv, ae_job *job, size_t *len) {
  if (job->cached_body) {
    char *copy = malloc(job->cached_len + 1);
    if (copy) {
      memcpy(copy, job->cached_body, job->cached_len + 1);
      *len = job->cached_len;
    }
    return copy;
  }
  json_t *j = ae_job_to_json(srv, job);
  char *text = ae_json_dumps(j);
  json_decref(j);
  if (!text) return NULL;
  *len = strlen(text);
  if (ae_job_terminal(job)) {
    job->cached_body = malloc(*len + 1);
    if (job->cached_body) {
      memcpy(job->cached_body, text, *len + 1);
      job->cached_len = *len;
    }
  }
  return text;
}
