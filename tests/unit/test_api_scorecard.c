/* test_api_scorecard.c: rendering of the result object (api/scorecard.c):
 * group selection, key names of scorecard.md §2, NaN -> null with a
 * warning, and exact round-trip of doubles through ae_json_dumps.
 * Single-threaded. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/scorecard.h"

static int count_warnings_with(const json_t *res, const char *prefix) {
  int n = 0;
  size_t i;
  json_t *w;
  json_array_foreach(json_object_get(res, "warnings"), i, w) {
    if (strncmp(json_string_value(w), prefix, strlen(prefix)) == 0) n++;
  }
  return n;
}

START_TEST(init_is_empty) {
  ae_scorecard s;
  ae_scorecard_init(&s);
  ck_assert_uint_eq(s.groups, 0);
  ck_assert(isnan(s.topology.params));
  ck_assert(isnan(s.convergence.steps_to_1e_3));
  ck_assert(isnan(s.provenance.t_total));
  ck_assert_int_eq(s.topology.dag_filter, -1);
  ck_assert_int_eq(s.provenance.analytic_exact, -1);
  ck_assert_int_eq(s.n_warnings, 0);
  json_t *j = ae_scorecard_to_json(&s);
  ck_assert_ptr_nonnull(j);
  /* No groups: only provenance and warnings. */
  ck_assert_ptr_null(json_object_get(j, "topology"));
  ck_assert_ptr_null(json_object_get(j, "convergence"));
  ck_assert_ptr_nonnull(json_object_get(j, "provenance"));
  ck_assert(json_is_array(json_object_get(j, "warnings")));
  json_decref(j);
  ae_scorecard_free(&s);
}
END_TEST

START_TEST(full_card) {
  ae_scorecard s;
  ae_scorecard_init(&s);
  s.groups = AE_GROUP_ALL;
  s.topology.params = 399872;
  s.topology.flops = 799744;
  s.topology.macs = 399872;
  s.topology.paths = 4;
  s.topology.path_depths = malloc(4 * sizeof(double));
  ck_assert_ptr_nonnull(s.topology.path_depths);
  s.topology.n_path_depths = 4;
  double d[4] = {2, 1, 2, 0};
  memcpy(s.topology.path_depths, d, sizeof d);
  s.topology.effective_depth = 1.25;
  s.topology.effective_width = 2;
  s.topology.dag_filter = 1;
  s.expressivity.linear_regions = 2871.0 / 3.0;
  s.expressivity.linear_regions_samples = 3000;
  s.expressivity.linear_regions_saturated = 0;
  s.expressivity.curvature = 4012.5;
  s.expressivity.path_proxy = 0.2517;
  s.expressivity.activation_patterns = 1234.5;
  s.expressivity.activation_patterns_units = 4096;
  s.expressivity.activation_patterns_saturated = 0;
  s.expressivity.pattern_kernel_logdet = 250.5;
  s.expressivity.feature_isotropy = 40.25;
  s.expressivity.feature_progressivity = -0.5;
  s.convergence.feature_corr_lambda_min = 0.75;
  s.convergence.feature_corr_lambda_min_mean = 0.5;
  s.convergence.jacobian_trainability = -1.5;
  s.generalization.kernel_regression_val_mse = 0.09;
  s.generalization.kernel_regression_val_acc = 0.25;
  s.convergence.ntk_lambda_min = 0.1;
  s.convergence.ntk_lambda_max = 12.0;
  s.convergence.ntk_condition = NAN; /* left for the generic warning */
  s.convergence.nngp_lambda_min = 1.255585;
  s.convergence.nngp_lambda_min_bound = 1.2555848606;
  s.convergence.ntk_analytic_lambda_min = 3.11252;
  s.convergence.rate = INFINITY;
  s.convergence.steps_to_1e_3 = 1234;
  s.generalization.kernel_complexity = 0.5668184;
  s.generalization.gap_bound = 2.8340919;
  s.generalization.arora_bound = 0.8;
  s.generalization.labels_random = 1;
  strcpy(s.provenance.backend, "host");
  s.provenance.seed = 7;
  strcpy(s.provenance.dataset, "synthetic");
  s.provenance.batch_size = 64;
  s.provenance.analytic_exact = 1;
  s.provenance.t_topology = 0.001;
  s.provenance.t_convergence = 0.5;
  s.provenance.t_total = 0.75;
  ae_scorecard_warn(&s, "convergence.rate: lambda_min <= 0 (%s)",
                    "rank deficient");
  json_t *j = ae_scorecard_to_json(&s);
  ck_assert_ptr_nonnull(j);
  json_t *t = json_object_get(j, "topology");
  ck_assert_double_eq(json_number_value(json_object_get(t, "params")), 399872);
  ck_assert_int_eq(json_array_size(json_object_get(t, "path_depths")), 4);
  ck_assert_str_eq(json_string_value(json_object_get(t, "dag_filter")), "keep");
  json_t *e = json_object_get(j, "expressivity");
  ck_assert_int_eq(
      json_integer_value(json_object_get(e, "linear_regions_samples")), 3000);
  ck_assert(json_is_false(json_object_get(e, "linear_regions_saturated")));
  json_t *c = json_object_get(j, "convergence");
  ck_assert(json_is_null(json_object_get(c, "ntk_condition")));
  ck_assert(json_is_null(json_object_get(c, "rate")));
  ck_assert_double_eq(json_number_value(json_object_get(c, "steps_to_1e-3")),
                      1234);
  /* The engine's warning covers rate; ntk_condition gets a generic one. */
  ck_assert_int_eq(count_warnings_with(j, "convergence.rate"), 1);
  ck_assert_int_eq(count_warnings_with(j, "convergence.ntk_condition: not a "
                                          "finite number"),
                   1);
  ck_assert_int_eq(json_array_size(json_object_get(j, "warnings")), 2);
  /* The struct itself is unchanged. */
  ck_assert_int_eq(s.n_warnings, 1);
  json_t *g = json_object_get(j, "generalization");
  ck_assert_str_eq(json_string_value(json_object_get(g, "labels")), "random");
  json_t *p = json_object_get(j, "provenance");
  ck_assert_str_eq(json_string_value(json_object_get(p, "backend")), "host");
  ck_assert_str_eq(json_string_value(json_object_get(p, "engine_version")),
                   AE_ENGINE_VERSION);
  ck_assert_int_eq(json_integer_value(json_object_get(p, "seed")), 7);
  ck_assert_str_eq(json_string_value(json_object_get(p, "analytic_mode")),
                   "exact");
  ck_assert_str_eq(json_string_value(json_object_get(p, "bn")),
                   "frozen_batch_stats");
  json_t *ts = json_object_get(p, "timings_s");
  ck_assert_double_eq(json_number_value(json_object_get(ts, "total")), 0.75);
  ck_assert_double_eq(json_number_value(json_object_get(ts, "convergence")),
                      0.5);
  /* Serialised and read back, every double is bit-identical. */
  char *text = ae_json_dumps(j);
  ck_assert_ptr_nonnull(text);
  json_t *back = json_loads(text, 0, NULL);
  ck_assert_ptr_nonnull(back);
  ck_assert_double_eq(
      json_number_value(json_object_get(json_object_get(back, "expressivity"),
                                        "linear_regions")),
      2871.0 / 3.0);
  ck_assert(json_equal(j, back));
  free(text);
  json_decref(back);
  json_decref(j);
  ae_scorecard_free(&s);
}
END_TEST

START_TEST(groups_and_nulls) {
  ae_scorecard s;
  ae_scorecard_init(&s);
  s.groups = AE_GROUP_TOPOLOGY;
  s.topology.params = 10;
  s.topology.flops = 20;
  s.topology.paths = 1;
  s.topology.effective_depth = 1;
  s.topology.effective_width = 1;
  ae_scorecard_warn(&s, "topology.path_depths: more than 1e6 paths");
  s.provenance.t_total = 0.1;
  json_t *j = ae_scorecard_to_json(&s);
  ck_assert_ptr_nonnull(j);
  ck_assert_ptr_null(json_object_get(j, "expressivity"));
  ck_assert_ptr_null(json_object_get(j, "generalization"));
  json_t *t = json_object_get(j, "topology");
  ck_assert(json_is_null(json_object_get(t, "path_depths")));
  ck_assert(json_is_null(json_object_get(t, "dag_filter")));
  ck_assert_int_eq(count_warnings_with(j, "topology.path_depths"), 1);
  ck_assert_int_eq(count_warnings_with(j, "topology.dag_filter"), 1);
  /* Not computed: no analytic_mode; only total among timings. */
  json_t *p = json_object_get(j, "provenance");
  ck_assert_ptr_null(json_object_get(p, "analytic_mode"));
  ck_assert_int_eq(json_object_size(json_object_get(p, "timings_s")), 1);
  json_decref(j);
  ae_scorecard_free(&s);
}
END_TEST

/* ae_json_dumps writes each real as the shortest decimal that reads back as
 * the same double, leaves integers and strings alone, and keeps reals
 * reals. */
START_TEST(dumps_shortest_round_trip) {
  const double values[] = {
      0.1,    1e-300,  7.944e-6, -0.0, 1.0, 0.1 + 0.2, 1.7976931348623157e308,
      5e-324, -2.5e-7, 1e21};
  const size_t n = sizeof values / sizeof *values;
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, json_real(values[i]));
  json_array_append_new(arr, json_integer(3));
  json_array_append_new(arr, json_string("x1.25\"0.10000000000000001"));
  char *text = ae_json_dumps(arr);
  ck_assert_ptr_nonnull(text);
  ck_assert_ptr_nonnull(
      strstr(text, "[0.1,1e-300,7.944e-6,-0.0,1.0,0.30000000000000004,"));
  ck_assert_ptr_nonnull(strstr(text, ",3,\"x1.25\\\"0.10000000000000001\"]"));
  json_error_t err;
  json_t *back = json_loads(text, 0, &err);
  ck_assert_ptr_nonnull(back);
  for (size_t i = 0; i < n; i++) {
    json_t *v = json_array_get(back, i);
    ck_assert(json_is_real(v));
    ck_assert(json_real_value(v) == values[i]);
    ck_assert_int_eq(signbit(json_real_value(v)), signbit(values[i]));
  }
  ck_assert(json_is_integer(json_array_get(back, n)));
  ck_assert_str_eq(json_string_value(json_array_get(back, n + 1)),
                   "x1.25\"0.10000000000000001");
  json_decref(back);
  free(text);
  json_decref(arr);
}
END_TEST

int main(void) {
  Suite *su = suite_create("api_scorecard");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, init_is_empty);
  tcase_add_test(tc, full_card);
  tcase_add_test(tc, groups_and_nulls);
  tcase_add_test(tc, dumps_shortest_round_trip);
  suite_add_tcase(su, tc);
  SRunner *sr = srunner_create(su);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
