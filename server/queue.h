/* queue.h: the queue of jobs waiting for a worker: a priority queue
 * ordered by (priority, seq), everything in it under one mutex.
 *
 * Entries are embedded in the caller's jobs (container_of style) so that
 * pushing cannot fail once space was reserved; the queue knows nothing else
 * of a job.  The interface is small so that a store-backed queue (several
 * daemons sharing one, with leases) can replace this in-memory one.
 *
 * Threads: every function may be called from any thread; the loop pushes,
 * removes and sweeps, workers block in ae_queue_pop_wait. */
#ifndef AE_SERVER_QUEUE_H
#define AE_SERVER_QUEUE_H

#include <pthread.h>
#include <stddef.h>

typedef struct {
  int priority;          /* lower runs sooner */
  long long seq;         /* then older first */
  long long deadline_ns; /* monotonic; 0 = none */
  /* Under the queue's mutex. */
  size_t pos;
  int queued;
} ae_queue_entry;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ae_queue_entry **heap;
  size_t n, cap;
  int stopped;
  /* Queued entries per priority: lets ae_queue_position answer for the
   * newest entry without scanning.  Best effort: counts_broken when it
   * could not grow, and positions are then counted by scanning. */
  struct {
    int priority;
    long count;
  } * counts;
  size_t n_counts, cap_counts;
  int counts_broken;
  long long max_seq; /* the newest entry ever queued */
} ae_queue;

int ae_queue_init(ae_queue *q);
/* After every thread that used q stopped. */
void ae_queue_free(ae_queue *q);
/* Makes room for more entries, so that ae_queue_push cannot fail. */
int ae_queue_reserve(ae_queue *q, size_t more);
/* Queues n entries (room reserved) and wakes workers. */
void ae_queue_push(ae_queue *q, ae_queue_entry *const *entries, size_t n);
/* Takes e out if it is still queued: 1, or 0 when a worker has it. */
int ae_queue_remove(ae_queue *q, ae_queue_entry *e);
/* The first entry, or NULL when empty (does not block). */
ae_queue_entry *ae_queue_pop(ae_queue *q);
/* 1 when nothing is queued now (a worker about to wait idle). */
int ae_queue_empty(ae_queue *q);
/* Blocks for the first entry; NULL once ae_queue_stop was called. */
ae_queue_entry *ae_queue_pop_wait(ae_queue *q);
/* The same, but returns NULL with *timed_out = 1 once the monotonic clock
 * reaches deadline_ns (ae_mono_ns's scale; 0 waits for ever) with nothing
 * queued.  *timed_out is 0 when an entry came or the queue was stopped;
 * timed_out may be NULL. */
ae_queue_entry *ae_queue_pop_wait_until(ae_queue *q, long long deadline_ns,
                                        int *timed_out);
/* Takes up to max entries whose deadline passed at now_ns into out;
 * returns how many. */
size_t ae_queue_take_late(ae_queue *q, long long now_ns, ae_queue_entry **out,
                          size_t max);
/* 1-based position of e among the queued entries, or 0 when not queued. */
long long ae_queue_position(ae_queue *q, const ae_queue_entry *e);
/* Wakes every ae_queue_pop_wait with NULL, now and from now on. */
void ae_queue_stop(ae_queue *q);

#endif
