/* queue.c: the in-memory queue of jobs waiting for a worker: a binary heap
 * ordered by (priority, seq).
 *
 * Every field of an ae_queue, and the pos/queued fields of its entries,
 * are read and written only under q->mu.  `queued == 0` under the lock
 * means a worker took the entry (or it was never queued), which is how the
 * loop tells a queued job from one a worker holds.  Workers wait on q->cv. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "api/status.h"
#include "server/queue.h"

static int entry_less(const ae_queue_entry *a, const ae_queue_entry *b) {
  if (a->priority != b->priority) return a->priority < b->priority;
  return a->seq < b->seq;
}

static void heap_set(ae_queue *q, size_t i, ae_queue_entry *e) {
  q->heap[i] = e;
  e->pos = i;
}

static void heap_up(ae_queue *q, size_t i) {
  ae_queue_entry *e = q->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!entry_less(e, q->heap[parent])) break;
    heap_set(q, i, q->heap[parent]);
    i = parent;
  }
  heap_set(q, i, e);
}

static void heap_down(ae_queue *q, size_t i) {
  ae_queue_entry *e = q->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= q->n) break;
    if (child + 1 < q->n && entry_less(q->heap[child + 1], q->heap[child]))
      child++;
    if (!entry_less(q->heap[child], e)) break;
    heap_set(q, i, q->heap[child]);
    i = child;
  }
  heap_set(q, i, e);
}

/* Adds delta to the count of priority (caller holds mu). */
static void count_priority(ae_queue *q, int priority, long delta) {
  for (size_t i = 0; i < q->n_counts; i++)
    if (q->counts[i].priority == priority) {
      q->counts[i].count += delta;
      return;
    }
  if (q->n_counts == q->cap_counts) {
    size_t cap = q->cap_counts ? q->cap_counts * 2 : 8;
    void *fresh = realloc(q->counts, cap * sizeof *q->counts);
    if (!fresh) {
      q->counts_broken = 1;
      return;
    }
    q->counts = fresh;
    q->cap_counts = cap;
  }
  q->counts[q->n_counts].priority = priority;
  q->counts[q->n_counts].count = delta;
  q->n_counts++;
}

/* Caller holds mu, room reserved. */
static void push_locked(ae_queue *q, ae_queue_entry *e) {
  count_priority(q, e->priority, 1);
  if (e->seq > q->max_seq) q->max_seq = e->seq;
  q->n++;
  heap_set(q, q->n - 1, e);
  heap_up(q, q->n - 1);
  e->queued = 1;
}

/* Caller holds mu; e is queued. */
static void remove_locked(ae_queue *q, ae_queue_entry *e) {
  size_t i = e->pos;
  count_priority(q, e->priority, -1);
  e->queued = 0;
  q->n--;
  if (i == q->n) return;
  ae_queue_entry *moved = q->heap[q->n];
  heap_set(q, i, moved);
  heap_down(q, i);
  heap_up(q, moved->pos);
}

int ae_queue_init(ae_queue *q) {
  int err = pthread_mutex_init(&q->mu, NULL);
  if (err) return AE_EINTERNAL;
  /* Timed waits (ae_queue_pop_wait_until) count on the monotonic clock. */
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr)) {
    pthread_mutex_destroy(&q->mu);
    return AE_EINTERNAL;
  }
  int bad = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) ||
            pthread_cond_init(&q->cv, &attr);
  pthread_condattr_destroy(&attr);
  if (bad) {
    pthread_mutex_destroy(&q->mu);
    return AE_EINTERNAL;
  }
  q->heap = NULL;
  q->n = q->cap = 0;
  q->stopped = 0;
  q->counts = NULL;
  q->n_counts = q->cap_counts = 0;
  q->counts_broken = 0;
  q->max_seq = 0;
  return AE_OK;
}

void ae_queue_free(ae_queue *q) {
  free(q->heap);
  free(q->counts);
  q->heap = NULL;
  q->counts = NULL;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
}

int ae_queue_reserve(ae_queue *q, size_t more) {
  int rc = AE_OK;
  pthread_mutex_lock(&q->mu);
  if (q->n + more > q->cap) {
    size_t cap = q->cap ? q->cap : 256;
    while (cap < q->n + more)
      cap *= 2;
    ae_queue_entry **fresh = realloc(q->heap, cap * sizeof *fresh);
    if (fresh) {
      q->heap = fresh;
      q->cap = cap;
    } else {
      rc = AE_ENOMEM;
    }
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

void ae_queue_push(ae_queue *q, ae_queue_entry *const *entries, size_t n) {
  pthread_mutex_lock(&q->mu);
  for (size_t i = 0; i < n; i++)
    push_locked(q, entries[i]);
  if (n > 1)
    pthread_cond_broadcast(&q->cv);
  else
    pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

int ae_queue_remove(ae_queue *q, ae_queue_entry *e) {
  pthread_mutex_lock(&q->mu);
  int was_queued = e->queued;
  if (was_queued) remove_locked(q, e);
  pthread_mutex_unlock(&q->mu);
  return was_queued;
}

ae_queue_entry *ae_queue_pop(ae_queue *q) {
  pthread_mutex_lock(&q->mu);
  ae_queue_entry *top = q->n ? q->heap[0] : NULL;
  if (top) remove_locked(q, top);
  pthread_mutex_unlock(&q->mu);
  return top;
}

int ae_queue_empty(ae_queue *q) {
  pthread_mutex_lock(&q->mu);
  int empty = q->n == 0;
  pthread_mutex_unlock(&q->mu);
  return empty;
}

ae_queue_entry *ae_queue_pop_wait(ae_queue *q) {
  return ae_queue_pop_wait_until(q, 0, NULL);
}

ae_queue_entry *ae_queue_pop_wait_until(ae_queue *q, long long deadline_ns,
                                        int *timed_out) {
  struct timespec until = {(time_t)(deadline_ns / 1000000000LL),
                           (long)(deadline_ns % 1000000000LL)};
  int late = 0;
  pthread_mutex_lock(&q->mu);
  while (!q->stopped && q->n == 0 && !late) {
    if (deadline_ns > 0)
      late = pthread_cond_timedwait(&q->cv, &q->mu, &until) == ETIMEDOUT;
    else
      pthread_cond_wait(&q->cv, &q->mu);
  }
  ae_queue_entry *top = NULL;
  int stopped = q->stopped;
  if (!stopped && q->n > 0) {
    top = q->heap[0];
    remove_locked(q, top);
  }
  pthread_mutex_unlock(&q->mu);
  if (timed_out) *timed_out = !top && !stopped;
  return top;
}

size_t ae_queue_take_late(ae_queue *q, long long now_ns, ae_queue_entry **out,
                          size_t max) {
  size_t n = 0;
  pthread_mutex_lock(&q->mu);
  for (size_t i = 0; i < q->n && n < max; i++) {
    ae_queue_entry *e = q->heap[i];
    if (e->deadline_ns && e->deadline_ns <= now_ns) out[n++] = e;
  }
  for (size_t i = 0; i < n; i++)
    remove_locked(q, out[i]);
  pthread_mutex_unlock(&q->mu);
  return n;
}

long long ae_queue_position(ae_queue *q, const ae_queue_entry *e) {
  long long ahead = 0;
  pthread_mutex_lock(&q->mu);
  int queued = e->queued;
  if (queued && e->seq == q->max_seq && !q->counts_broken) {
    /* The newest entry: every queued entry of its priority or lower is
     * ahead (itself counted in its priority's total). */
    for (size_t i = 0; i < q->n_counts; i++)
      if (q->counts[i].priority <= e->priority) ahead += q->counts[i].count;
    ahead--;
  } else if (queued) {
    for (size_t i = 0; i < q->n; i++)
      if (entry_less(q->heap[i], e)) ahead++;
  }
  pthread_mutex_unlock(&q->mu);
  return queued ? ahead + 1 : 0;
}

void ae_queue_stop(ae_queue *q) {
  pthread_mutex_lock(&q->mu);
  q->stopped = 1;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}
