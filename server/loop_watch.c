/* loop_watch.c: the loop's own stall meter.  A prepare handle, which runs
 * once per turn of the loop just before it waits for events again, reads
 * the loop thread's CPU time (CLOCK_THREAD_CPUTIME_ID): the difference
 * since the previous turn is the time the loop spent in callbacks during
 * the turn (waiting in epoll costs none).  That is the longest a request
 * arriving during the turn waits because of the daemon's own work before
 * the loop can look at it; what a probe measures beyond it is time the
 * loop thread waited for a CPU (the OS scheduler) or the client's own.
 * (libuv's UV_METRICS_IDLE_TIME was tried first: in libuv 1.44 a wait
 * that ends by its timeout is not counted as idle, so it cannot tell a
 * quiet loop from a busy one.)
 *
 * Threads: all of it runs on the loop thread, which owns the
 * ae_loop_watch. */
#include "config.h"

#include "server/loop_watch.h"

#include <string.h>
#include <time.h>

#include "api/status.h"
#include "server/util.h"

#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL

/* The calling thread's CPU time in ns. */
static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)) return 0;
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void on_turn(uv_prepare_t *handle) {
  ae_loop_watch *w = handle->data;
  uint64_t now = uv_hrtime(), cpu = thread_cpu_ns();
  uint64_t busy = cpu > w->last_cpu_ns ? cpu - w->last_cpu_ns : 0;
  w->last_cpu_ns = cpu;
  w->turns++;
  w->busy_ns_total += busy;
  if (busy > w->busy_ns_max) w->busy_ns_max = busy;
  uint64_t ms = busy / NS_PER_MS;
  w->buckets[ms < AE_LOOP_WATCH_BUCKETS ? ms : AE_LOOP_WATCH_BUCKETS]++;
  if (ms < w->stall_ms) return;
  w->stalls++;
  if (w->last_warn_ns && now - w->last_warn_ns < NS_PER_S) {
    w->suppressed++;
    return;
  }
  ae_log(AE_LOG_WARN,
         "loop stalled: one turn took %.1f ms of CPU (over %u ms; %llu more "
         "since the last warning)",
         (double)busy / 1e6, w->stall_ms, w->suppressed);
  w->last_warn_ns = now;
  w->suppressed = 0;
}

int ae_loop_watch_start(ae_loop_watch *w, uv_loop_t *loop, unsigned stall_ms) {
  memset(w, 0, sizeof *w);
  w->loop = loop;
  w->stall_ms = stall_ms;
  if (uv_prepare_init(loop, &w->prepare)) return AE_EINTERNAL;
  w->prepare.data = w;
  w->last_cpu_ns = thread_cpu_ns();
  uv_prepare_start(&w->prepare, on_turn);
  uv_unref((uv_handle_t *)&w->prepare); /* never keeps the loop alive */
  w->started = 1;
  return AE_OK;
}

double ae_loop_watch_quantile_ms(const ae_loop_watch *w, double q) {
  if (!w->turns) return 0;
  unsigned long long want = (unsigned long long)((double)w->turns * q);
  unsigned long long seen = 0;
  for (unsigned i = 0; i <= AE_LOOP_WATCH_BUCKETS; i++) {
    seen += w->buckets[i];
    if (seen > want) return i + 1; /* the bucket's upper edge */
  }
  return (double)w->busy_ns_max / 1e6;
}

void ae_loop_watch_log(const ae_loop_watch *w) {
  if (!w->started) return;
  ae_log(AE_LOG_INFO,
         "loop: %llu turns, %.3f s of CPU in all; per turn p50 <= %.0f ms, "
         "p99 <= %.0f ms, max %.1f ms; %llu turns over %u ms",
         w->turns, (double)w->busy_ns_total / 1e9,
         ae_loop_watch_quantile_ms(w, 0.5), ae_loop_watch_quantile_ms(w, 0.99),
         (double)w->busy_ns_max / 1e6, w->stalls, w->stall_ms);
}

void ae_loop_watch_stop(ae_loop_watch *w) {
  if (!w->started) return;
  ae_loop_watch_log(w);
  w->started = 0;
  uv_prepare_stop(&w->prepare);
  uv_close((uv_handle_t *)&w->prepare, NULL);
}
