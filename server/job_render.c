/* job_render.c: the job resource of api.md as JSON, made of three shared
 * texts so that nothing large is rendered or copied twice:
 *   head:    '{' and every scalar field, up to and including "request":
 *   request: the normalised request, rendered once at submission (or load)
 *   tail:    ,"result":... or ,"error":... when terminal, then '}'
 * A job's head is rendered once per state change (ae_job_render_changed
 * in job_table.c drops it), except while queued: a queued job's position moves,
 * so its head (a few hundred bytes) is rendered per use.  The tail is set once,
 * when the job becomes terminal (job_state.c, ae_job_set_tail).  Listings
 * stream the parts by reference (ae_job_parts); a single GET copies them into
 * one buffer.
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

/* Every field before "request", which is null (the head's end). */
static json_t *head_json(ae_server *srv, ae_job *job) {
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
  /* Not in this daemon's queue: handed over, deferred, or (--fleet)
   * waiting in the store's shared queue. */
  if (job->handed_over || job->deferred ||
      (job->state == AE_JOB_QUEUED && (job->remote || job->transient)))
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
  bad |= json_object_set_new(o, "request", json_null());
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* The head as text: the object's text without its closing "null}", so
 * that it ends with "request":.  Every key before it holds a scalar and
 * jansson keeps the insertion order, so "request":null} is the end. */
static ae_text *head_text(ae_server *srv, ae_job *job) {
  static const char end[] = "null}";
  json_t *j = head_json(srv, job);
  char *text = j ? ae_json_dumps(j) : NULL;
  json_decref(j);
  if (!text) return NULL;
  size_t len = strlen(text);
  if (len < sizeof end - 1 || strcmp(text + len - (sizeof end - 1), end)) {
    free(text); /* cannot happen: "request" is the last key */
    return NULL;
  }
  ae_text *t = ae_text_new(text, len - (sizeof end - 1));
  free(text);
  return t;
}

static ae_text *null_text(void) {
  static const char null[] = "null";
  return ae_text_new(null, sizeof null - 1);
}

int ae_job_parts_get(ae_server *srv, ae_job *job, ae_job_parts *out) {
  memset(out, 0, sizeof *out);
  int cacheable = job->state != AE_JOB_QUEUED || job->handed_over;
  ae_text *head = cacheable ? ae_text_ref(job->head_text) : NULL;
  if (!head) {
    if (!(head = head_text(srv, job))) return AE_ENOMEM;
    if (cacheable) {
      job->head_text = ae_text_ref(head);
      ae_job_table_recount(&srv->jobs, job);
    }
  }
  out->part[0] = head;
  out->part[1] =
      job->request_text ? ae_text_ref(job->request_text) : null_text();
  if (!job->tail_text && ae_job_set_tail(job, "", NULL)) {
    ae_job_parts_release(out);
    return AE_ENOMEM;
  }
  out->part[2] = ae_text_ref(job->tail_text);
  if (!out->part[1]) {
    ae_job_parts_release(out);
    return AE_ENOMEM;
  }
  return AE_OK;
}

void ae_job_parts_release(ae_job_parts *parts) {
  for (int i = 0; i < AE_JOB_PARTS; i++) {
    ae_text_unref(parts->part[i]);
    parts->part[i] = NULL;
  }
}

char *ae_job_render(ae_server *srv, ae_job *job, size_t *len) {
  ae_job_parts parts;
  if (ae_job_parts_get(srv, job, &parts)) return NULL;
  size_t total = 0;
  for (int i = 0; i < AE_JOB_PARTS; i++)
    total += parts.part[i]->len;
  char *text = malloc(total + 1);
  if (text) {
    size_t at = 0;
    for (int i = 0; i < AE_JOB_PARTS; i++) {
      memcpy(text + at, parts.part[i]->data, parts.part[i]->len);
      at += parts.part[i]->len;
    }
    text[total] = '\0';
    *len = total;
  }
  ae_job_parts_release(&parts);
  return text;
}

json_t *ae_job_to_json(ae_server *srv, ae_job *job) {
  size_t len = 0;
  char *text = ae_job_render(srv, job, &len);
  if (!text) return NULL;
  json_error_t err;
  json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &err);
  free(text);
  return j;
}
