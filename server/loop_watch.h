/* loop_watch.h: measures how much CPU each turn of the libuv loop takes
 * (its callbacks; waiting costs none), to show that the loop only routes:
 * a turn that works longer than a probe may wait is a stall.
 *
 * Threads: the loop thread's (the handle runs on it); the summary may be
 * read by the loop thread only.  A lower file: knows nothing of the
 * daemon. */
#ifndef AE_SERVER_LOOP_WATCH_H
#define AE_SERVER_LOOP_WATCH_H

#include <stdint.h>
#include <uv.h>

/* Busy time per turn in 1 ms buckets up to this many, one more for the
 * rest. */
#define AE_LOOP_WATCH_BUCKETS 1000

typedef struct {
  uv_loop_t *loop;
  uv_prepare_t prepare;
  int started;
  uint64_t last_cpu_ns;
  /* A turn over stall_ms is logged (warning), at most once a second. */
  unsigned stall_ms;
  uint64_t last_warn_ns;
  unsigned long long suppressed;
  unsigned long long turns, stalls, busy_ns_total, busy_ns_max;
  unsigned long long buckets[AE_LOOP_WATCH_BUCKETS + 1];
} ae_loop_watch;

/* Starts watching (before uv_run).  AE_OK or AE_EINTERNAL. */
int ae_loop_watch_start(ae_loop_watch *w, uv_loop_t *loop, unsigned stall_ms);
/* The busy time of the turn (ms) at or under which fraction q of the
 * turns so far lie. */
double ae_loop_watch_quantile_ms(const ae_loop_watch *w, double q);
/* Logs the summary (turns, p50/p99/max CPU per turn, turns over
 * stall_ms). */
void ae_loop_watch_log(const ae_loop_watch *w);
/* Logs the summary and closes the handle. */
void ae_loop_watch_stop(ae_loop_watch *w);

#endif
