/* test_queue.c: unit tests of the job queue (server/queue.c): the order
 * (priority, then seq), removal of a queued entry, the 1-based positions
 * (the fast count for the newest entry agrees with a scan), the deadline
 * sweep, a stop that wakes a blocked worker, and the timed wait of an idle
 * worker (ae_queue_pop_wait_until).
 *
 * Each test owns its queue; two tests start a thread that blocks in
 * ae_queue_pop_wait or pushes while the test's thread waits. */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "api/status.h"
#include "server/queue.h"

static ae_queue_entry entry(int priority, long long seq, long long deadline) {
  return (ae_queue_entry){
      .priority = priority, .seq = seq, .deadline_ns = deadline};
}

START_TEST(pops_by_priority_then_seq) {
  ae_queue q;
  ck_assert_int_eq(ae_queue_init(&q), AE_OK);
  ae_queue_entry e[6] = {entry(5, 1, 0),  entry(0, 2, 0), entry(5, 3, 0),
                         entry(-3, 4, 0), entry(0, 5, 0), entry(9, 6, 0)};
  ae_queue_entry *all[6];
  for (int i = 0; i < 6; i++)
    all[i] = &e[i];
  ck_assert_int_eq(ae_queue_reserve(&q, 6), AE_OK);
  ae_queue_push(&q, all, 6);
  const long long order[6] = {4, 2, 5, 1, 3, 6};
  for (int i = 0; i < 6; i++) {
    ae_queue_entry *top = ae_queue_pop(&q);
    ck_assert_ptr_nonnull(top);
    ck_assert_int_eq(top->seq, order[i]);
    ck_assert_int_eq(top->queued, 0);
  }
  ck_assert_ptr_null(ae_queue_pop(&q));
  ae_queue_free(&q);
}
END_TEST

START_TEST(remove_and_positions) {
  ae_queue q;
  ck_assert_int_eq(ae_queue_init(&q), AE_OK);
  enum { N = 40 };
  ae_queue_entry e[N];
  ck_assert_int_eq(ae_queue_reserve(&q, N), AE_OK);
  for (int i = 0; i < N; i++) {
    e[i] = entry(i % 3, i + 1, 0);
    ae_queue_entry *one = &e[i];
    ae_queue_push(&q, &one, 1);
    /* The newest entry takes the fast count: every entry of its priority
     * or lower is ahead of it. */
    long long ahead = 0;
    for (int k = 0; k <= i; k++)
      ahead += e[k].priority <= e[i].priority;
    ck_assert_int_eq(ae_queue_position(&q, &e[i]), ahead);
  }
  /* Remove every fourth; the rest keep their scanned positions. */
  for (int i = 0; i < N; i += 4) {
    ck_assert_int_eq(ae_queue_remove(&q, &e[i]), 1);
    ck_assert_int_eq(ae_queue_remove(&q, &e[i]), 0);
    ck_assert_int_eq(ae_queue_position(&q, &e[i]), 0);
  }
  long long position[N];
  for (int i = 0; i < N; i++) {
    if (i % 4 == 0) continue;
    long long ahead = 1;
    for (int k = 0; k < N; k++)
      if (k % 4 && (e[k].priority < e[i].priority ||
                    (e[k].priority == e[i].priority && e[k].seq < e[i].seq)))
        ahead++;
    position[i] = ae_queue_position(&q, &e[i]);
    ck_assert_int_eq(position[i], ahead);
  }
  /* Popping follows the order the positions promised. */
  long long popped = 0;
  for (ae_queue_entry *top; (top = ae_queue_pop(&q));) {
    popped++;
    ck_assert_int_eq(position[top - e], popped);
  }
  ck_assert_int_eq(popped, N - N / 4);
  ae_queue_free(&q);
}
END_TEST

START_TEST(take_late_by_deadline) {
  ae_queue q;
  ck_assert_int_eq(ae_queue_init(&q), AE_OK);
  ae_queue_entry e[5] = {entry(0, 1, 100), entry(0, 2, 0), entry(0, 3, 300),
                         entry(1, 4, 50), entry(0, 5, 1000)};
  ae_queue_entry *all[5];
  for (int i = 0; i < 5; i++)
    all[i] = &e[i];
  ck_assert_int_eq(ae_queue_reserve(&q, 5), AE_OK);
  ae_queue_push(&q, all, 5);
  ae_queue_entry *late[5];
  size_t n = ae_queue_take_late(&q, 300, late, 5);
  ck_assert_int_eq(n, 3); /* deadlines 100, 300, 50; 0 means none */
  long long seqs = 0;
  for (size_t i = 0; i < n; i++) {
    ck_assert_int_eq(late[i]->queued, 0);
    seqs += late[i]->seq;
  }
  ck_assert_int_eq(seqs, 1 + 3 + 4);
  /* At most max at a time. */
  ck_assert_int_eq(ae_queue_take_late(&q, 5000, late, 1), 1);
  ck_assert_int_eq(late[0]->seq, 5);
  ck_assert_int_eq(ae_queue_pop(&q)->seq, 2);
  ck_assert_ptr_null(ae_queue_pop(&q));
  ae_queue_free(&q);
}
END_TEST

static void *blocked_worker(void *arg) {
  return ae_queue_pop_wait(arg);
}

START_TEST(stop_wakes_a_blocked_worker) {
  ae_queue q;
  ck_assert_int_eq(ae_queue_init(&q), AE_OK);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, blocked_worker, &q), 0);
  usleep(50000);
  ae_queue_stop(&q);
  void *got = (void *)1;
  ck_assert_int_eq(pthread_join(t, &got), 0);
  ck_assert_ptr_null(got);
  /* A stopped queue hands out nothing, even when not empty. */
  ae_queue_entry e = entry(0, 1, 0), *one = &e;
  ck_assert_int_eq(ae_queue_reserve(&q, 1), AE_OK);
  ae_queue_push(&q, &one, 1);
  ck_assert_ptr_null(ae_queue_pop_wait(&q));
  ae_queue_free(&q);
}
END_TEST

static long long mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static ae_queue_entry late_push_entry;

/* Pushes late_push_entry 30 ms after it starts. */
static void *late_pusher(void *arg) {
  usleep(30000);
  ae_queue_entry *one = &late_push_entry;
  ae_queue_push(arg, &one, 1);
  return NULL;
}

START_TEST(timed_wait_ends_at_the_deadline_or_with_an_entry) {
  ae_queue q;
  ck_assert_int_eq(ae_queue_init(&q), AE_OK);
  ck_assert_int_eq(ae_queue_reserve(&q, 2), AE_OK);
  /* Nothing comes: NULL, timed out, not before the deadline. */
  int timed_out = 0;
  long long t0 = mono_ns();
  ck_assert_ptr_null(ae_queue_pop_wait_until(&q, t0 + 50000000LL, &timed_out));
  ck_assert_int_eq(timed_out, 1);
  ck_assert_int_ge(mono_ns() - t0, 50000000LL);
  /* An entry pushed while it waits: that entry, not timed out. */
  late_push_entry = entry(3, 7, 0);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, late_pusher, &q), 0);
  timed_out = 1;
  ae_queue_entry *got =
      ae_queue_pop_wait_until(&q, mono_ns() + 60000000000LL, &timed_out);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_ptr_eq(got, &late_push_entry);
  ck_assert_int_eq(timed_out, 0);
  /* An entry already queued is taken even past the deadline. */
  ae_queue_entry e = entry(0, 1, 0), *one = &e;
  ae_queue_push(&q, &one, 1);
  timed_out = 1;
  ck_assert_ptr_eq(ae_queue_pop_wait_until(&q, 1, &timed_out), &e);
  ck_assert_int_eq(timed_out, 0);
  /* Stopped: NULL, and not a time-out (the worker must leave). */
  ae_queue_stop(&q);
  timed_out = 1;
  ck_assert_ptr_null(
      ae_queue_pop_wait_until(&q, mono_ns() + 50000000LL, &timed_out));
  ck_assert_int_eq(timed_out, 0);
  ae_queue_free(&q);
}
END_TEST

int main(void) {
  Suite *s = suite_create("server_queue");
  TCase *tc = tcase_create("queue");
  tcase_add_test(tc, pops_by_priority_then_seq);
  tcase_add_test(tc, remove_and_positions);
  tcase_add_test(tc, take_late_by_deadline);
  tcase_add_test(tc, stop_wakes_a_blocked_worker);
  tcase_add_test(tc, timed_wait_ends_at_the_deadline_or_with_an_entry);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
