/* test_metrics.c: unit tests of the job store's series in /metrics
 * (server/metrics.c, issue 15): the per-call latency histograms are
 * cumulative in "le" and end in +Inf with the call count, errors are
 * counted per kind of call, the lease series appear only when the store
 * has leases, the replica id is a label, and a daemon without a store
 * shows none of it; the jobs' memory gauges (issue 14) show the table's
 * counts.
 *
 * Single-threaded; each test owns what it allocates. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics.h"

static const double bounds[AE_STORE_LATENCY_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,   0.025,   0.05,   0.1,   1,      10};

/* Renders with one worker and the given store and replica; the text is
 * the caller's. */
static char *render(const ae_metrics_store *store, const char *replica) {
  ae_metrics m;
  ck_assert_int_eq(ae_metrics_init(&m, 1), 0);
  ae_metrics_worker worker = {"host", 0, 1, 0};
  ae_metrics_gauges g = {
      .workers = &worker, .store = store, .replica = replica};
  size_t len = 0;
  char *text = ae_metrics_render(&m, &g, &len);
  ae_metrics_free(&m);
  ck_assert_ptr_nonnull(text);
  ck_assert_uint_eq(strlen(text), len);
  return text;
}

/* The value of the series whose name and labels are exactly SERIES; fails
 * the test when it is absent. */
static double value_of(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *line = text; line && *line;) {
    if (!strncmp(line, series, n) && line[n] == ' ')
      return strtod(line + n + 1, NULL);
    line = strchr(line, '\n');
    if (line) line++;
  }
  ck_abort_msg("no series %s", series);
  return 0;
}

START_TEST(store_latency_is_cumulative_per_op) {
  ae_metrics_store st;
  memset(&st, 0, sizeof st);
  st.backend = "postgresql";
  st.reachable = 1;
  st.latency_bounds = bounds;
  /* insert: 2 calls at most 0.1 ms, 3 in (0.5 ms, 1 ms], 1 slower than
   * every bound; one of them failed. */
  st.latency[AE_STORE_OP_INSERT].count[0] = 2;
  st.latency[AE_STORE_OP_INSERT].count[3] = 3;
  st.latency[AE_STORE_OP_INSERT].count[AE_STORE_LATENCY_BUCKETS] = 1;
  st.latency[AE_STORE_OP_INSERT].calls = 6;
  st.latency[AE_STORE_OP_INSERT].errors = 1;
  st.latency[AE_STORE_OP_INSERT].sum_s = 12.5;
  st.latency[AE_STORE_OP_CACHE].count[5] = 4;
  st.latency[AE_STORE_OP_CACHE].calls = 4;
  char *text = render(&st, "r1");
  const char *h = "archeval_store_call_duration_seconds";
  char series[160];
  struct {
    const char *le;
    double want;
  } insert[] = {{"0.0001", 2}, {"0.00025", 2}, {"0.0005", 2},
                {"0.001", 5},  {"10", 5},      {"+Inf", 6}};
  for (size_t i = 0; i < sizeof insert / sizeof insert[0]; i++) {
    snprintf(series, sizeof series, "%s_bucket{op=\"insert\",le=\"%s\"}", h,
             insert[i].le);
    ck_assert_double_eq(value_of(text, series), insert[i].want);
  }
  snprintf(series, sizeof series, "%s_count{op=\"insert\"}", h);
  ck_assert_double_eq(value_of(text, series), 6);
  snprintf(series, sizeof series, "%s_sum{op=\"insert\"}", h);
  ck_assert_double_eq(value_of(text, series), 12.5);
  snprintf(series, sizeof series, "%s_bucket{op=\"cache\",le=\"0.0025\"}", h);
  ck_assert_double_eq(value_of(text, series), 0);
  snprintf(series, sizeof series, "%s_bucket{op=\"cache\",le=\"0.005\"}", h);
  ck_assert_double_eq(value_of(text, series), 4);
  /* Every kind of call has its series, also those never made. */
  snprintf(series, sizeof series, "%s_count{op=\"expire\"}", h);
  ck_assert_double_eq(value_of(text, series), 0);
  ck_assert_double_eq(
      value_of(text, "archeval_store_call_errors_total{op=\"insert\"}"), 1);
  ck_assert_double_eq(
      value_of(text, "archeval_store_call_errors_total{op=\"update\"}"), 0);
  ck_assert_double_eq(
      value_of(text, "archeval_store_up{backend=\"postgresql\"}"), 1);
  ck_assert_double_eq(value_of(text, "archeval_replica_info{replica=\"r1\"}"),
                      1);
  /* No leases: none shown (not zeros). */
  ck_assert_ptr_null(strstr(text, "archeval_store_leases"));
  free(text);
}
END_TEST

START_TEST(store_down_and_leases) {
  ae_metrics_store st;
  memset(&st, 0, sizeof st);
  st.backend = "postgresql";
  st.reachable = 0;
  st.latency_bounds = bounds;
  st.has_leases = 1;
  st.leases_held = 3;
  st.leases_requeued = 7;
  st.leases_exhausted = 2;
  st.unsaved_finishes = 5;
  char *text = render(&st, NULL);
  ck_assert_double_eq(
      value_of(text, "archeval_store_up{backend=\"postgresql\"}"), 0);
  ck_assert_double_eq(value_of(text, "archeval_store_unsaved_finishes"), 5);
  ck_assert_double_eq(value_of(text, "archeval_store_leases_held"), 3);
  ck_assert_double_eq(value_of(text, "archeval_store_leases_requeued_total"),
                      7);
  ck_assert_double_eq(value_of(text, "archeval_store_leases_exhausted_total"),
                      2);
  ck_assert_ptr_nonnull(
      strstr(text, "# TYPE archeval_store_leases_requeued_total counter\n"));
  ck_assert_ptr_null(strstr(text, "archeval_replica_info{"));
  free(text);
}
END_TEST

START_TEST(no_store_no_store_series) {
  char *text = render(NULL, "");
  ck_assert_ptr_null(strstr(text, "archeval_store_"));
  ck_assert_ptr_null(strstr(text, "archeval_replica_info{"));
  /* The rest is still there. */
  ck_assert_double_eq(value_of(text, "archeval_jobs_submitted_total"), 0);
  free(text);
}
END_TEST

/* The jobs' memory gauges show what the caller read from the table. */
START_TEST(jobs_memory_gauges) {
  ae_metrics m;
  ck_assert_int_eq(ae_metrics_init(&m, 1), 0);
  ae_metrics_worker worker = {"host", 0, 1, 0};
  ae_metrics_gauges g = {.workers = &worker,
                         .replica = "",
                         .jobs_held = 12,
                         .jobs_memory_bytes = 123456789,
                         .jobs_memory_budget_bytes = (size_t)64 << 20,
                         .jobs_memory_reserved_bytes = 4321,
                         .finished_held = 7};
  size_t len = 0;
  char *text = ae_metrics_render(&m, &g, &len);
  ae_metrics_free(&m);
  ck_assert_ptr_nonnull(text);
  ck_assert_double_eq(value_of(text, "archeval_jobs_held"), 12);
  ck_assert_double_eq(value_of(text, "archeval_jobs_memory_bytes"), 123456789);
  ck_assert_double_eq(value_of(text, "archeval_jobs_memory_reserved_bytes"),
                      4321);
  ck_assert_double_eq(value_of(text, "archeval_jobs_memory_budget_bytes"),
                      64 << 20);
  ck_assert_double_eq(value_of(text, "archeval_jobs_finished_held"), 7);
  ck_assert_ptr_nonnull(
      strstr(text, "# TYPE archeval_jobs_memory_bytes gauge\n"));
  free(text);
}
END_TEST

int main(void) {
  Suite *s = suite_create("server_metrics");
  TCase *tc = tcase_create("store");
  tcase_add_test(tc, store_latency_is_cumulative_per_op);
  tcase_add_test(tc, store_down_and_leases);
  tcase_add_test(tc, no_store_no_store_series);
  tcase_add_test(tc, jobs_memory_gauges);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failures = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
