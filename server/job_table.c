/* job_table.c: the table of every job archevald knows: hash tables by id
 * and by idempotency key, a list in submission (seq) order for listing,
 * and the finished jobs in expiry order; the sum of what the jobs hold in
 * memory; the shared texts (ae_text) the jobs' renderings are made of.
 *
 * Thread: the loop thread owns the table and its links; nothing here
 * locks.  Only this file follows the links: others find jobs by id or key,
 * or walk them with an ae_job_iter. */
#include "config.h"

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "server/job.h"

static size_t hash_string(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return (size_t)(h ^ (h >> 29));
}

static int buckets_grow(ae_job ***buckets, size_t *n_buckets, int by_idem) {
  size_t n = *n_buckets ? *n_buckets * 2 : 1024;
  ae_job **fresh = calloc(n, sizeof *fresh);
  if (!fresh) return AE_ENOMEM;
  for (size_t i = 0; i < *n_buckets; i++) {
    ae_job *j = (*buckets)[i];
    while (j) {
      ae_job *next = by_idem ? j->idem_next : j->hash_next;
      size_t b = hash_string(by_idem ? j->idem_key : j->id) & (n - 1);
      if (by_idem) {
        j->idem_next = fresh[b];
      } else {
        j->hash_next = fresh[b];
      }
      fresh[b] = j;
      j = next;
    }
  }
  free(*buckets);
  *buckets = fresh;
  *n_buckets = n;
  return AE_OK;
}

int ae_job_table_init(ae_job_table *t) {
  memset(t, 0, sizeof *t);
  t->budget_bytes = SIZE_MAX;
  t->max_finished = SIZE_MAX;
  return ae_job_table_reserve(t, 1);
}

void ae_job_table_free(ae_job_table *t) {
  ae_job *job = t->first;
  while (job) {
    ae_job *next = job->next;
    ae_job_free(job);
    job = next;
  }
  free(t->buckets);
  free(t->idem_buckets);
  memset(t, 0, sizeof *t);
}

int ae_job_table_reserve(ae_job_table *t, size_t more) {
  while (t->n_jobs + more > t->n_buckets)
    if (buckets_grow(&t->buckets, &t->n_buckets, 0)) return AE_ENOMEM;
  while (t->n_idem + more > t->n_idem_buckets)
    if (buckets_grow(&t->idem_buckets, &t->n_idem_buckets, 1)) return AE_ENOMEM;
  return AE_OK;
}

/* ---- shared texts ---- */

ae_text *ae_text_new(const char *s, size_t len) {
  ae_text *t = malloc(sizeof *t + len + 1);
  if (!t) return NULL;
  t->refs = 1;
  t->len = len;
  memcpy(t->data, s, len);
  t->data[len] = '\0';
  return t;
}

ae_text *ae_text_take(char *s) {
  if (!s) return NULL;
  ae_text *t = ae_text_new(s, strlen(s));
  free(s);
  return t;
}

ae_text *ae_text_ref(ae_text *t) {
  if (t) t->refs++;
  return t;
}

void ae_text_unref(ae_text *t) {
  if (t && --t->refs == 0) free(t);
}

/* ---- a job's rendered parts (job_render.c renders them) ---- */

int ae_job_set_tail(ae_job *job, const char *key, const char *value) {
  static const char close[] = "}";
  size_t len = value ? strlen(key) + strlen(value) + 5 : 1;
  char *text = malloc(len + 1);
  if (!text) return AE_ENOMEM;
  if (value)
    snprintf(text, len + 1, ",\"%s\":%s}", key, value);
  else
    memcpy(text, close, sizeof close);
  ae_text *t = ae_text_take(text);
  if (!t) return AE_ENOMEM;
  ae_text_unref(job->tail_text);
  job->tail_text = t;
  return AE_OK;
}

json_t *ae_job_result_json(const ae_job *job) {
  static const char key[] = ",\"result\":";
  const ae_text *t = job->tail_text;
  if (job->state != AE_JOB_SUCCEEDED || !t || t->len < sizeof key ||
      strncmp(t->data, key, sizeof key - 1))
    return NULL;
  /* ,"result":VALUE} : VALUE without the closing brace. */
  return json_loadb(t->data + sizeof key - 1, t->len - sizeof key, 0, NULL);
}

json_t *ae_job_request_json(const ae_job *job) {
  const ae_text *t = job->request_text;
  return t ? json_loadb(t->data, t->len, 0, NULL) : NULL;
}

void ae_job_render_changed(ae_job *job) {
  ae_text_unref(job->head_text);
  job->head_text = NULL;
}

/* ---- what a job holds ---- */

/* Every block is charged what malloc really gave it (malloc_usable_size:
 * the requested size rounded up to the allocator's chunk, whole pages for
 * the mapped blocks of large texts and inputs), so that the sum is what
 * the jobs hold, not what they asked for.  The allocator's own header of
 * each chunk (a size_t) is charged too. */
#define CHUNK_HEADER sizeof(size_t)

static size_t block_bytes(const void *p) {
  return p ? malloc_usable_size((void *)p) + CHUNK_HEADER : 0;
}

static size_t graph_bytes(const ae_graph *g) {
  size_t bytes = block_bytes(g->nodes);
  for (int i = 0; i < g->n_nodes; i++)
    bytes += block_bytes(g->nodes[i].name) + block_bytes(g->nodes[i].inputs);
  return bytes;
}

/* Jansson's blocks are not ours to measure: an array of strings (an
 * uploaded model's warnings) is charged its array (header and slots) and,
 * per string, its json_t and its text, each a chunk. */
static size_t string_array_bytes(const json_t *array) {
  if (!json_is_array(array)) return 0;
  size_t n = json_array_size(array);
  size_t bytes = 48 + CHUNK_HEADER + n * sizeof(json_t *) + CHUNK_HEADER;
  for (size_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(array, i);
    bytes += 32 + CHUNK_HEADER;
    if (json_is_string(v)) bytes += json_string_length(v) + 1 + CHUNK_HEADER;
  }
  return bytes;
}

size_t ae_request_held_bytes(const ae_request *r) {
  const ae_arch *a = &r->arch;
  return block_bytes(a->dag.edges) + graph_bytes(&a->graph) +
         block_bytes(a->model) + graph_bytes(&r->net) +
         block_bytes(r->data.dataset) + block_bytes(r->data.inputs) +
         block_bytes(r->data.labels) + block_bytes(r->client_ref) +
         string_array_bytes(r->model_warnings);
}

/* How many float32 values a job's inline inputs are (batch x shape). */
static size_t inline_input_count(const ae_data_spec *d) {
  size_t n = d->batch_size > 0 ? (size_t)d->batch_size : 0;
  for (int i = 0; i < d->input_rank; i++)
    n *= d->input_shape[i] > 0 ? (size_t)d->input_shape[i] : 0;
  return n;
}

/* The float32 inputs a worker reads back from the request text for the
 * time of a run (ae_job_run_request). */
static size_t run_inputs_bytes(const ae_job *job) {
  if (job->state != AE_JOB_RUNNING || !job->has_req || !job->inputs_in_text)
    return 0;
  size_t n = inline_input_count(&job->req.data);
  return n ? n * sizeof(float) + CHUNK_HEADER : 0;
}

size_t ae_job_held_bytes(const ae_job *job) {
  size_t bytes = block_bytes(job) + block_bytes(job->request_text) +
                 block_bytes(job->head_text) + block_bytes(job->tail_text) +
                 block_bytes(job->client_ref) + block_bytes(job->idem_key);
  if (job->has_req)
    bytes += ae_request_held_bytes(&job->req) + run_inputs_bytes(job);
  return bytes;
}

void ae_job_inputs_to_text(ae_job *job) {
  if (!job->has_req || !job->req.data.inputs || !job->request_text) return;
  free(job->req.data.inputs);
  job->req.data.inputs = NULL;
  job->inputs_in_text = 1;
}

int ae_job_run_request(const ae_job *job, ae_request *run, float **inputs) {
  *run = job->req;
  *inputs = NULL;
  if (!job->inputs_in_text) return AE_OK;
  size_t n = inline_input_count(&job->req.data);
  const ae_text *t = job->request_text;
  int rc =
      t ? ae_request_inputs_from_text(t->data, t->len, n, inputs) : AE_EINVAL;
  if (rc == AE_EINVAL) rc = AE_EINTERNAL;
  if (rc == AE_OK) run->data.inputs = *inputs;
  return rc;
}

void ae_job_table_recount(ae_job_table *t, ae_job *job) {
  if (job->transient) return;
  size_t now = ae_job_held_bytes(job);
  t->held_bytes = t->held_bytes - job->held_bytes + now;
  job->held_bytes = now;
}

/* ---- the table ---- */

void ae_job_table_add(ae_job_table *t, ae_job *job) {
  job->held_bytes = ae_job_held_bytes(job);
  t->held_bytes += job->held_bytes;
  size_t b = hash_string(job->id) & (t->n_buckets - 1);
  job->hash_next = t->buckets[b];
  t->buckets[b] = job;
  t->n_jobs++;
  if (job->idem_key) {
    b = hash_string(job->idem_key) & (t->n_idem_buckets - 1);
    job->idem_next = t->idem_buckets[b];
    t->idem_buckets[b] = job;
    t->n_idem++;
  }
  /* Keep the list in the listing order, (seq, id) (ae_page_key_after;
   * loads come in seq order, new jobs last: the walk is short). */
  ae_page_key key = {.seq = job->seq};
  snprintf(key.id, sizeof key.id, "%s", job->id);
  ae_job *after = t->last;
  while (after && !ae_page_key_after(&key, after->seq, after->id))
    after = after->prev;
  job->prev = after;
  job->next = after ? after->next : t->first;
  if (job->next)
    job->next->prev = job;
  else
    t->last = job;
  if (after)
    after->next = job;
  else
    t->first = job;
}

/* Finished jobs in expiry order (a FIFO, since the TTL is one constant;
 * loaded ones are placed by their stored expiry), counted for the cap on
 * finished jobs kept in memory (--max-finished-jobs): the first of the
 * list is the one dropped (job_state.c's sweep) and read back from the
 * store on demand (job_fetch.c). */
void ae_job_table_finished(ae_job_table *t, ae_job *job) {
  t->n_finished++;
  ae_job *after = t->fin_last;
  while (after && after->expires_ms > job->expires_ms)
    after = after->fin_prev;
  job->fin_prev = after;
  job->fin_next = after ? after->fin_next : t->fin_first;
  if (job->fin_next)
    job->fin_next->fin_prev = job;
  else
    t->fin_last = job;
  if (after)
    after->fin_next = job;
  else
    t->fin_first = job;
}

static void unlink_finished(ae_job_table *t, ae_job *job) {
  if (job->fin_prev)
    job->fin_prev->fin_next = job->fin_next;
  else if (t->fin_first == job)
    t->fin_first = job->fin_next;
  else
    return; /* not in the list */
  t->n_finished--;
  if (job->fin_next)
    job->fin_next->fin_prev = job->fin_prev;
  else
    t->fin_last = job->fin_prev;
  job->fin_prev = job->fin_next = NULL;
}

void ae_job_table_remove(ae_job_table *t, ae_job *job) {
  unlink_finished(t, job);
  if (job->remote) t->n_remote--;
  ae_job **pp = &t->buckets[hash_string(job->id) & (t->n_buckets - 1)];
  while (*pp && *pp != job)
    pp = &(*pp)->hash_next;
  if (*pp) {
    *pp = job->hash_next;
    t->n_jobs--;
  }
  if (job->idem_key) {
    pp = &t->idem_buckets[hash_string(job->idem_key) & (t->n_idem_buckets - 1)];
    while (*pp && *pp != job)
      pp = &(*pp)->idem_next;
    if (*pp) {
      *pp = job->idem_next;
      t->n_idem--;
    }
  }
  t->held_bytes -= job->held_bytes;
  if (job->prev)
    job->prev->next = job->next;
  else
    t->first = job->next;
  if (job->next)
    job->next->prev = job->prev;
  else
    t->last = job->prev;
  ae_job_free(job);
}

ae_job *ae_job_table_find(const ae_job_table *t, const char *id) {
  if (!t->n_buckets) return NULL;
  for (ae_job *j = t->buckets[hash_string(id) & (t->n_buckets - 1)]; j;
       j = j->hash_next)
    if (!strcmp(j->id, id)) return j;
  return NULL;
}

ae_job *ae_job_table_find_idem(const ae_job_table *t, const char *key) {
  if (!t->n_idem_buckets) return NULL;
  size_t b = hash_string(key) & (t->n_idem_buckets - 1);
  for (ae_job *j = t->idem_buckets[b]; j; j = j->idem_next)
    if (!strcmp(j->idem_key, key)) return j;
  return NULL;
}

ae_job *ae_job_table_next_expiry(const ae_job_table *t) {
  return t->fin_first;
}

ae_job *ae_job_table_over_cap(const ae_job_table *t) {
  return t->n_finished > t->max_finished ? t->fin_first : NULL;
}

void ae_job_iter_start(const ae_job_table *t, const ae_page_key *key,
                       ae_job_iter *it) {
  ae_job *job = t->last;
  if (key)
    while (job && !ae_page_key_after(key, job->seq, job->id))
      job = job->prev;
  it->next = job;
}

ae_job *ae_job_iter_next(ae_job_iter *it) {
  ae_job *job = it->next;
  if (job) it->next = job->prev;
  return job;
}

ae_job *ae_job_new(void) {
  ae_job *job = calloc(1, sizeof *job);
  if (job) atomic_init(&job->cancel, 0);
  return job;
}

void ae_job_free_outcome(ae_job *job) {
  if (job->w_card) {
    ae_scorecard_free(job->w_card);
    free(job->w_card);
    job->w_card = NULL;
  }
  ae_problem_clear(&job->w_problem);
}

void ae_job_free(ae_job *job) {
  if (!job) return;
  ae_job_free_outcome(job);
  if (job->has_req) ae_request_free(&job->req);
  ae_text_unref(job->request_text);
  ae_text_unref(job->head_text);
  ae_text_unref(job->tail_text);
  free(job->client_ref);
  free(job->idem_key);
  free(job);
}
