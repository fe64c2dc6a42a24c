/* test_api_request.c: request validation, defaults and the normalised
 * request (api/request.c), body parsing (api/json_util.c) and problem
 * rendering (api/problem.c).  Uses the valid examples in
 * tests/data/requests/.  Single-threaded. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"

static const ae_dataset_info fake_sets[] = {
    {"fashion-mnist", {1, 28, 28}, 3, 10, 60000},
    {"tiny", {5, 1, 1}, 1, 3, 40},
};
static const ae_catalog catalog = {fake_sets, 2};
static ae_limits lim;

static void setup(void) {
  ae_limits_default(&lim);
}

static json_t *load_text(const char *text) {
  json_t *j = NULL;
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_json_parse_body(text, strlen(text), &j, &p);
  ck_assert_msg(rc == AE_OK, "bad test JSON: %s", p.detail);
  ae_problem_clear(&p);
  return j;
}

static json_t *load_file(const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/data/requests/%s", AE_SRCDIR, name);
  json_error_t err;
  json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
  ck_assert_msg(j != NULL, "%s: %s", path, err.text);
  return j;
}

static int has_pointer(const ae_problem *p, const char *ptr) {
  for (size_t i = 0; i < p->n_errors; i++)
    if (strcmp(p->errors[i].pointer, ptr) == 0) return 1;
  return 0;
}

/* Parses body into r; asserts success. */
static void parse_ok(const json_t *body, ae_request *r) {
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_request_parse(body, &catalog, &lim, r, &p);
  ck_assert_msg(rc == AE_OK, "parse failed: %s %s",
                p.n_errors ? p.errors[0].pointer : "",
                p.n_errors ? p.errors[0].detail : "");
  ck_assert_int_eq(p.n_errors, 0);
  ae_problem_clear(&p);
}

static json_t *npath(const ae_request *r, const char *a, const char *b) {
  json_t *x = json_object_get(r->normalised, a);
  return b ? json_object_get(x, b) : x;
}

START_TEST(defaults_filled_in) {
  json_t *body = load_file("nb201_all_conv3x3.json");
  ae_request r;
  parse_ok(body, &r);
  ck_assert_int_eq(r.arch.type, AE_ARCH_NB201);
  ck_assert_int_eq(r.seed, 1);
  ck_assert_uint_eq(ae_metric_set_groups(r.selected), AE_GROUP_ALL);
  ck_assert_int_eq(r.priority, 0);
  ck_assert_int_eq(r.timeout_ms, 600000);
  ck_assert_ptr_null(r.client_ref);
  ck_assert_str_eq(r.data.dataset, "synthetic");
  ck_assert_int_eq(r.data.input_rank, 3);
  ck_assert_int_eq(r.data.input_shape[0], 3);
  ck_assert_int_eq(r.data.input_shape[1], 32);
  ck_assert_int_eq(r.data.num_classes, 10);
  ck_assert_int_eq(r.data.batch_size, 64);
  ck_assert_ptr_null(r.data.inputs);
  ck_assert_int_eq(r.settings.lr_samples, 3000);
  ck_assert_int_eq(r.settings.lr_repeats, 3);
  ck_assert_int_eq(r.settings.curv_points, 128);
  ck_assert_int_eq(r.settings.curv_repeats, 3);
  ck_assert_int_eq(r.settings.ntk_repeats, 1);
  ck_assert_int_eq(r.settings.ntk_parameterization, AE_NTK_STANDARD);
  ck_assert(isnan(r.settings.eta));
  ck_assert_double_eq(ae_graph_params(&r.net), 1531546.0);
  /* The normalised request shows every default. */
  ck_assert_int_eq(json_integer_value(npath(&r, "architecture", "channels")),
                   16);
  ck_assert_int_eq(
      json_integer_value(npath(&r, "architecture", "cells_per_stage")), 5);
  ck_assert_int_eq(json_integer_value(npath(&r, "architecture", "num_classes")),
                   10);
  ck_assert_str_eq(json_string_value(npath(&r, "data", "dataset")),
                   "synthetic");
  ck_assert_int_eq(json_array_size(npath(&r, "data", "input_shape")), 3);
  ck_assert_int_eq(json_integer_value(npath(&r, "data", "batch_size")), 64);
  ck_assert_int_eq(json_integer_value(npath(&r, "data", "num_classes")), 10);
  ck_assert_int_eq(json_integer_value(npath(&r, "seed", NULL)), 1);
  /* Neither profile nor metrics: the profile "full", every metric of the
   * four aspect groups, listed by name in catalog order. */
  ck_assert_str_eq(json_string_value(npath(&r, "profile", NULL)), "full");
  ae_metric_set full;
  ck_assert_int_eq(ae_metric_profile("full", &full), 0);
  ck_assert_uint_eq(r.selected.bits, full.bits);
  json_t *ml = npath(&r, "metrics", NULL);
  ck_assert_int_eq(json_array_size(ml), __builtin_popcountll(full.bits));
  ck_assert_str_eq(json_string_value(json_array_get(ml, 0)), "topology.params");
  ck_assert_str_eq(json_string_value(json_array_get(ml, 2)), "topology.macs");
  for (size_t i = 0; i < json_array_size(ml); i++)
    ck_assert_msg(
        strncmp(json_string_value(json_array_get(ml, i)), "proxies.", 8) != 0,
        "full selects %s", json_string_value(json_array_get(ml, i)));
  json_t *s = npath(&r, "settings", NULL);
  ck_assert_int_eq(json_integer_value(json_object_get(
                       json_object_get(s, "linear_regions"), "samples")),
                   3000);
  ck_assert_int_eq(json_integer_value(json_object_get(
                       json_object_get(s, "curvature"), "points")),
                   128);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(s, "ntk"),
                                                     "parameterization")),
                   "standard");
  ck_assert(json_is_null(json_object_get(s, "eta")));
  ck_assert_str_eq(json_string_value(json_object_get(s, "init")),
                   "kaiming_normal");
  ck_assert_int_eq(json_integer_value(json_object_get(
                       json_object_get(s, "activation_patterns"), "repeats")),
                   8);
  ck_assert_int_eq(
      json_integer_value(json_object_get(
          json_object_get(s, "feature_corr_lambda_min"), "samples")),
      8);
  ck_assert_int_eq(json_integer_value(npath(&r, "priority", NULL)), 0);
  ck_assert_int_eq(json_integer_value(npath(&r, "timeout_ms", NULL)), 600000);
  ck_assert(json_is_null(npath(&r, "client_ref", NULL)));
  /* Parsing the normalised request again gives the same normalised form. */
  ae_request r2;
  parse_ok(r.normalised, &r2);
  ck_assert(json_equal(r.normalised, r2.normalised));
  ae_request_free(&r2);
  ae_request_free(&r);
  json_decref(body);
}
END_TEST

START_TEST(every_example_parses) {
  static const char *files[] = {
      "nb201_all_conv3x3.json", "nb201_resnet.json", "mlp_dag_2_21_112.json",
      "graph_small_cnn.json",   "mlp_inline.json",   "mlp_fashion_mnist.json"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    json_t *body = load_file(files[i]);
    ae_request r;
    parse_ok(body, &r);
    ck_assert_ptr_nonnull(r.normalised);
    ck_assert_int_gt(r.net.n_nodes, 1);
    ck_assert_int_eq(r.net.nodes[r.net.output].rank, 1);
    ae_request r2;
    parse_ok(r.normalised, &r2);
    ck_assert_msg(json_equal(r.normalised, r2.normalised), "%s", files[i]);
    ae_request_free(&r2);
    ae_request_free(&r);
    json_decref(body);
  }
}
END_TEST

START_TEST(explicit_values_kept) {
  json_t *body = load_file("nb201_resnet.json");
  ae_request r;
  parse_ok(body, &r);
  ck_assert_uint_eq(ae_metric_set_groups(r.selected),
                    AE_GROUP_CONVERGENCE | AE_GROUP_EXPRESSIVITY);
  ck_assert_int_eq(r.data.batch_size, 72);
  ck_assert_int_eq(r.settings.ntk_repeats, 3);
  ck_assert_int_eq(r.priority, -5);
  ck_assert_str_eq(r.client_ref, "example/resnet-cell");
  /* Metrics are listed by name in catalog order, without a profile. */
  json_t *m = npath(&r, "metrics", NULL);
  ck_assert(json_is_null(npath(&r, "profile", NULL)));
  ck_assert_str_eq(json_string_value(json_array_get(m, 0)),
                   "expressivity.linear_regions");
  ck_assert_str_eq(json_string_value(json_array_get(m, json_array_size(m) - 1)),
                   "convergence.jacobian_trainability");
  ae_request_free(&r);
  json_decref(body);

  body = load_file("mlp_dag_2_21_112.json");
  parse_ok(body, &r);
  ck_assert_int_eq(r.settings.ntk_parameterization, AE_NTK_NTK);
  ck_assert_double_eq(r.settings.eta, 0.01);
  ck_assert_int_eq(r.timeout_ms, 120000);
  ck_assert_int_eq(r.data.input_shape[0], 784);
  ck_assert_int_eq(r.data.input_rank, 1);
  ck_assert_double_eq(ae_graph_params(&r.net), 200704.0 + 3 * 65536 + 2560);
  ae_request_free(&r);
  json_decref(body);
}
END_TEST

START_TEST(inline_data) {
  json_t *body = load_file("mlp_inline.json");
  ae_request r;
  parse_ok(body, &r);
  ck_assert_str_eq(r.data.dataset, "inline");
  ck_assert_int_eq(r.data.batch_size, 4);
  ck_assert_int_eq(r.data.input_rank, 1);
  ck_assert_int_eq(r.data.input_shape[0], 2);
  ck_assert_int_eq(r.data.num_classes, 2);
  ck_assert_ptr_nonnull(r.data.inputs);
  ck_assert_float_eq(r.data.inputs[2], 0.6f);
  ck_assert_float_eq(r.data.inputs[7], 0.8f);
  ck_assert_int_eq(r.data.labels[1], 1);
  ck_assert_int_eq(r.data.labels[3], 0);
  ck_assert_int_eq(r.net.num_classes, 2);
  ae_request_free(&r);
  json_decref(body);
  /* Nested samples give a rank-3 shape. */
  body = load_text(
      "{\"architecture\":{\"type\":\"graph\",\"output\":\"g\",\"nodes\":["
      "{\"id\":\"g\",\"op\":\"global_avg_pool\",\"inputs\":[\"input\"]}]},"
      "\"data\":{\"inputs\":[[[[1,2],[3,4]]],[[[5,6],[7,8]]]]}}");
  parse_ok(body, &r);
  ck_assert_int_eq(r.data.input_rank, 3);
  ck_assert_int_eq(r.data.input_shape[0], 1);
  ck_assert_int_eq(r.data.input_shape[1], 2);
  ck_assert_int_eq(r.data.input_shape[2], 2);
  ck_assert_float_eq(r.data.inputs[6], 7.0f);
  ck_assert_ptr_null(r.data.labels);
  ck_assert_int_eq(r.net.num_classes, 1);
  ae_request_free(&r);
  json_decref(body);
}
END_TEST

/* The inline inputs read back from the normalised request's text (what a
 * queued job holds) are the floats the parse made, bit for bit: flat and
 * nested samples, integers, exponents, negatives, values with 17
 * significant digits; a client_ref that looks like data does not fool
 * it; a count that differs, or a text without inputs, is AE_EINVAL. */
static void inputs_round_trip(const char *text) {
  json_t *body = load_text(text);
  ae_request r;
  parse_ok(body, &r);
  size_t n = (size_t)r.data.batch_size;
  for (int i = 0; i < r.data.input_rank; i++)
    n *= (size_t)r.data.input_shape[i];
  char *norm = ae_json_dumps(r.normalised);
  ck_assert_ptr_nonnull(norm);
  float *back = NULL;
  ck_assert_int_eq(ae_request_inputs_from_text(norm, strlen(norm), n, &back),
                   AE_OK);
  ck_assert_int_eq(memcmp(back, r.data.inputs, n * sizeof *back), 0);
  free(back);
  back = (float *)1;
  ck_assert_int_eq(
      ae_request_inputs_from_text(norm, strlen(norm), n + 1, &back), AE_EINVAL);
  ck_assert_ptr_null(back);
  ck_assert_int_eq(
      ae_request_inputs_from_text(norm, strlen(norm), n - 1, &back), AE_EINVAL);
  free(norm);
  ae_request_free(&r);
  json_decref(body);
}

START_TEST(inputs_from_text) {
  inputs_round_trip(
      "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_02\"},"
      "\"client_ref\":\"{\\\"data\\\":{\\\"inputs\\\":[[9,9]]}}\","
      "\"data\":{\"inputs\":[[1,-0.1],[0.6000000000000001,1e-7],"
      "[123456789.123,-3.4e38],[0.30000000000000004,2.5E-3]],"
      "\"labels\":[0,1,1,0],\"num_classes\":2}}");
  inputs_round_trip(
      "{\"architecture\":{\"type\":\"graph\",\"output\":\"g\",\"nodes\":["
      "{\"id\":\"g\",\"op\":\"global_avg_pool\",\"inputs\":[\"input\"]}]},"
      "\"data\":{\"inputs\":[[[[1,2.5],[3,4]]],[[[5,6],[7,-8e-3]]]]}}");
  float *v = (float *)1;
  static const char none[] = "{\"data\":{\"dataset\":\"synthetic\"}}";
  ck_assert_int_eq(ae_request_inputs_from_text(none, strlen(none), 2, &v),
                   AE_EINVAL);
  ck_assert_ptr_null(v);
  static const char bad[] = "{\"data\":{\"inputs\":[[1,true],[2,3]]}}";
  ck_assert_int_eq(ae_request_inputs_from_text(bad, strlen(bad), 4, &v),
                   AE_EINVAL);
  static const char ok[] = "{\"a\":[{\"b\":\"]\"}],\"data\":{\"x\":{},"
                           "\"inputs\":[[1,2],[3,4]]}}";
  ck_assert_int_eq(ae_request_inputs_from_text(ok, strlen(ok), 4, &v), AE_OK);
  ck_assert_float_eq(v[3], 4.0f);
  free(v);
}
END_TEST

START_TEST(catalog_dataset) {
  json_t *body = load_file("mlp_fashion_mnist.json");
  ae_request r;
  parse_ok(body, &r);
  ck_assert_str_eq(r.data.dataset, "fashion-mnist");
  ck_assert_int_eq(r.data.input_rank, 3);
  ck_assert_int_eq(r.data.input_shape[1], 28);
  ck_assert_int_eq(r.net.nodes[1].op, AE_OP_FLATTEN);
  /* stem 784*128, three linear edges 128*128, readout 128*10 */
  ck_assert_double_eq(ae_graph_params(&r.net),
                      784.0 * 128 + 3 * 128 * 128 + 1280);
  ae_request_free(&r);
  json_decref(body);
  /* A batch larger than the dataset is refused. */
  body = load_text("{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2\"},"
                   "\"data\":{\"dataset\":\"tiny\",\"batch_size\":41}}");
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(ae_request_parse(body, &catalog, &lim, &r, &p), AE_EINVAL);
  ck_assert(has_pointer(&p, "/data/batch_size"));
  ae_problem_clear(&p);
  json_decref(body);
  /* The unknown-dataset error lists the known ones. */
  body = load_text("{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2\"},"
                   "\"data\":{\"dataset\":\"cifar-100\"}}");
  ck_assert_int_eq(ae_request_parse(body, &catalog, &lim, &r, &p), AE_EINVAL);
  ck_assert(has_pointer(&p, "/data/dataset"));
  ck_assert_ptr_nonnull(strstr(p.errors[0].detail, "fashion-mnist"));
  ck_assert_ptr_nonnull(strstr(p.errors[0].detail, "synthetic"));
  ae_problem_clear(&p);
  json_decref(body);
}
END_TEST

START_TEST(all_errors_collected) {
  json_t *body = load_text(
      "{\"architecture\":{\"type\":\"nb201\",\"cell\":\"bad\",\"x\":1},"
      "\"seed\":-3,\"metrics\":[\"nope\"],\"priority\":2000,"
      "\"settings\":{\"curvature\":{\"points\":1}},\"typo\":true}");
  ae_request r;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(ae_request_parse(body, &catalog, &lim, &r, &p), AE_EINVAL);
  ck_assert_int_eq(p.status, 422);
  ck_assert_str_eq(p.code, "invalid_request");
  const char *expect[] = {"/architecture/cell",
                          "/architecture/x",
                          "/seed",
                          "/metrics/0",
                          "/priority",
                          "/settings/curvature/points",
                          "/typo"};
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
    ck_assert_msg(has_pointer(&p, expect[i]), "missing %s", expect[i]);
  ck_assert_ptr_null(r.normalised);
  json_t *pj = ae_problem_to_json(&p, "/v1/jobs");
  ck_assert_ptr_nonnull(pj);
  ck_assert_int_eq(json_integer_value(json_object_get(pj, "status")), 422);
  ck_assert_str_eq(json_string_value(json_object_get(pj, "code")),
                   "invalid_request");
  ck_assert_str_eq(json_string_value(json_object_get(pj, "instance")),
                   "/v1/jobs");
  ck_assert_str_eq(json_string_value(json_object_get(pj, "type")),
                   "https://archeval.dev/problems/invalid_request");
  ck_assert_ptr_nonnull(json_object_get(pj, "title"));
  ck_assert_ptr_nonnull(json_object_get(pj, "detail"));
  ck_assert_int_eq(json_array_size(json_object_get(pj, "errors")), p.n_errors);
  json_decref(pj);
  /* Batch prefixing. */
  ae_problem_prefix(&p, "/jobs/3");
  ck_assert(has_pointer(&p, "/jobs/3/seed"));
  ae_problem_clear(&p);
  json_decref(body);
}
END_TEST

START_TEST(limits_enforced) {
  json_t *body = load_text(
      "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\"}}");
  ae_request r;
  ae_problem p = AE_PROBLEM_INIT;
  lim.max_params = 1000;
  ck_assert_int_eq(ae_request_parse(body, &catalog, &lim, &r, &p), AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/width"));
  ae_problem_clear(&p);
  ae_limits_default(&lim);
  ae_limits_default(&lim);
  lim.max_batch_size = 32;
  parse_ok(body, &r); /* the default batch shrinks to the limit */
  ck_assert_int_eq(r.data.batch_size, 32);
  ae_request_free(&r);
  json_decref(body);
  body = load_text(
      "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2\"},\"data\":"
      "{\"batch_size\":64}}");
  ck_assert_int_eq(ae_request_parse(body, &catalog, &lim, &r, &p), AE_EINVAL);
  ck_assert(has_pointer(&p, "/data/batch_size"));
  ae_problem_clear(&p);
  lim.default_timeout_ms = 1234;
  json_decref(body);
  body = load_text(
      "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2\"},\"data\":"
      "{\"batch_size\":32}}");
  parse_ok(body, &r);
  ck_assert_int_eq(r.timeout_ms, 1234);
  ae_request_free(&r);
  json_decref(body);
}
END_TEST

START_TEST(parse_body_errors) {
  json_t *j = NULL;
  ae_problem p = AE_PROBLEM_INIT;
  /* A syntax error on line 3: the bare word starts at column 8. */
  const char *text = "{\n  \"seed\": 1,\n  \"x\": nope\n}";
  ck_assert_int_eq(ae_json_parse_body(text, strlen(text), &j, &p), AE_EINVAL);
  ck_assert_ptr_null(j);
  ck_assert_int_eq(p.status, 400);
  ck_assert_str_eq(p.code, "invalid_json");
  ck_assert_msg(strncmp(p.detail, "line 3, column ", 15) == 0, "%s", p.detail);
  int col = atoi(p.detail + 15);
  ck_assert_msg(col >= 8 && col <= 11, "%s", p.detail);
  ae_problem_clear(&p);
  /* Duplicate keys are rejected, on the line of the second one. */
  text = "{\"a\": 1,\n \"b\": {\"c\": 1, \"c\": 2}}";
  ck_assert_int_eq(ae_json_parse_body(text, strlen(text), &j, &p), AE_EINVAL);
  ck_assert_int_eq(p.status, 400);
  ck_assert_msg(strncmp(p.detail, "line 2, ", 8) == 0, "%s", p.detail);
  ck_assert_ptr_nonnull(strstr(p.detail, "duplicate"));
  ae_problem_clear(&p);
  /* Empty body. */
  ck_assert_int_eq(ae_json_parse_body("", 0, &j, &p), AE_EINVAL);
  ck_assert_int_eq(p.status, 400);
  ae_problem_clear(&p);
  /* Valid JSON that is not an object parses; the request parser then
   * refuses it with 422 at the root. */
  ck_assert_int_eq(ae_json_parse_body("[1]", 3, &j, &p), AE_OK);
  ae_request r;
  ck_assert_int_eq(ae_request_parse(j, &catalog, &lim, &r, &p), AE_EINVAL);
  ck_assert_int_eq(p.status, 422);
  ck_assert(has_pointer(&p, ""));
  ae_problem_clear(&p);
  json_decref(j);
  /* Length is honoured: only the first 8 bytes are read. */
  ck_assert_int_eq(ae_json_parse_body("{\"a\": 1}garbage", 8, &j, &p), AE_OK);
  ck_assert_int_eq(json_integer_value(json_object_get(j, "a")), 1);
  json_decref(j);
}
END_TEST

/* Parses text, which must fail with 400 invalid_json; returns the problem
 * (the caller clears it). */
static ae_problem parse_fails_400(const char *text) {
  json_t *j = NULL;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(ae_json_parse_body(text, strlen(text), &j, &p), AE_EINVAL);
  ck_assert_ptr_null(j);
  ck_assert_int_eq(p.status, 400);
  ck_assert_str_eq(p.code, "invalid_json");
  ck_assert_msg(strncmp(p.detail, "line ", 5) == 0, "%s", p.detail);
  return p;
}

START_TEST(non_finite_literals_named) {
  /* Python's json.dumps writes NaN, Infinity and -Infinity: each is named
   * by the pointer of the field it stands in, and the problem says JSON
   * has none of them. */
  ae_problem p = parse_fails_400(
      "{\"seed\": 1, \"settings\": {\"eta\": NaN}, \"x\": [1, 2]}");
  ck_assert_uint_eq(p.n_errors, 1);
  ck_assert_str_eq(p.errors[0].pointer, "/settings/eta");
  ck_assert_ptr_nonnull(strstr(p.errors[0].detail, "NaN"));
  ck_assert_ptr_nonnull(strstr(p.detail, "JSON has no NaN or Infinity"));
  ck_assert_ptr_nonnull(strstr(p.detail, "/settings/eta"));
  ae_problem_clear(&p);
  /* In arrays, after a sign, several at once, keys that need escaping. */
  p = parse_fails_400("{\"data\": {\"inputs\": [[0.5, -Infinity], "
                      "[Infinity, 1]]},\n \"a/b~c\": NaN}");
  ck_assert_uint_eq(p.n_errors, 3);
  ck_assert_str_eq(p.errors[0].pointer, "/data/inputs/0/1");
  ck_assert_ptr_nonnull(strstr(p.errors[0].detail, "-Infinity"));
  ck_assert_str_eq(p.errors[1].pointer, "/data/inputs/1/0");
  ck_assert_str_eq(p.errors[2].pointer, "/a~1b~0c");
  ck_assert_ptr_nonnull(strstr(p.detail, "line 1, column "));
  ae_problem_clear(&p);
  /* The whole body. */
  p = parse_fails_400("Infinity");
  ck_assert_uint_eq(p.n_errors, 1);
  ck_assert_str_eq(p.errors[0].pointer, "");
  ae_problem_clear(&p);
  /* A NaN inside a string is a string; a later syntax error is reported
   * as before. */
  p = parse_fails_400("{\"client_ref\": \"NaN\", \"seed\": nope}");
  ck_assert_uint_eq(p.n_errors, 0);
  ck_assert_ptr_null(strstr(p.detail, "NaN or Infinity"));
  ae_problem_clear(&p);
  /* A non-finite literal followed by another kind of error: the pointer
   * cannot be known; the plain syntax error stands. */
  p = parse_fails_400("{\"seed\": NaN, \"x\": [1,]}");
  ck_assert_uint_eq(p.n_errors, 0);
  ae_problem_clear(&p);
  /* Words that only look alike are ordinary syntax errors. */
  p = parse_fails_400("{\"seed\": Nonsense}");
  ck_assert_uint_eq(p.n_errors, 0);
  ae_problem_clear(&p);
}
END_TEST

/* A graph of out classes on the given data (JSON text of "data"). */
static json_t *graph_body(int out, const char *data) {
  char text[1024];
  snprintf(text, sizeof text,
           "{\"architecture\":{\"type\":\"graph\",\"output\":\"l\","
           "\"nodes\":[{\"id\":\"f\",\"op\":\"flatten\",\"inputs\":"
           "[\"input\"]},{\"id\":\"l\",\"op\":\"linear\",\"inputs\":"
           "[\"f\"],\"out\":%d}]},\"data\":%s}",
           out, data);
  return load_text(text);
}

START_TEST(graph_output_width) {
  /* Synthetic data without num_classes follows the output's width, and
   * the normalised request says so. */
  json_t *body = graph_body(5, "{\"input_shape\":[4]}");
  ae_request r;
  parse_ok(body, &r);
  ck_assert_int_eq(r.net.num_classes, 5);
  ck_assert_int_eq(r.data.num_classes, 5);
  ck_assert_int_eq(json_integer_value(json_object_get(
                       json_object_get(r.normalised, "data"), "num_classes")),
                   5);
  ae_request_free(&r);
  json_decref(body);
  /* Stated and equal; inline labels that fit the output. */
  body = graph_body(5, "{\"input_shape\":[4],\"num_classes\":5}");
  parse_ok(body, &r);
  ck_assert_int_eq(r.data.num_classes, 5);
  ae_request_free(&r);
  json_decref(body);
  body = graph_body(5, "{\"inputs\":[[1,2],[3,4],[5,6]],\"labels\":[0,4,2]}");
  parse_ok(body, &r);
  ck_assert_int_eq(r.data.num_classes, 5);
  ae_request_free(&r);
  json_decref(body);
  /* Contradicted: 422 at /architecture/output, with both numbers. */
  static const char *const contradicted[] = {
      "{\"input_shape\":[4],\"num_classes\":10}",
      "{\"dataset\":\"fashion-mnist\"}",
      "{\"inputs\":[[1,2],[3,4]],\"labels\":[0,9]}",
  };
  for (size_t i = 0; i < 3; i++) {
    body = graph_body(5, contradicted[i]);
    ae_problem p = AE_PROBLEM_INIT;
    ck_assert_int_eq(ae_request_parse(body, &catalog, &lim, &r, &p), AE_EINVAL);
    ck_assert_int_eq(p.status, 422);
    ck_assert_msg(has_pointer(&p, "/architecture/output"), "case %zu", i);
    ck_assert_ptr_nonnull(strstr(p.errors[0].detail, "5 units"));
    ck_assert_ptr_nonnull(strstr(p.errors[0].detail, "\"l\""));
    ae_problem_clear(&p);
    json_decref(body);
  }
  /* One output unit: no classifier; unlabelled data keeps its default,
   * labels are a contradiction. */
  body = graph_body(1, "{\"input_shape\":[4]}");
  parse_ok(body, &r);
  ck_assert_int_eq(r.net.num_classes, 1);
  ae_request_free(&r);
  json_decref(body);
  body = graph_body(1, "{\"inputs\":[[1,2],[3,4]],\"labels\":[0,1]}");
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(ae_request_parse(body, &catalog, &lim, &r, &p), AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/output"));
  ae_problem_clear(&p);
  json_decref(body);
}
END_TEST

/* Parses text, expecting a 422 naming ptr (whose detail contains want
 * when not NULL). */
static void expect_invalid(const char *text, const char *ptr,
                           const char *want) {
  json_t *body = load_text(text);
  ae_request r;
  ae_problem p = AE_PROBLEM_INIT;
  ck_assert_int_eq(ae_request_parse(body, &catalog, &lim, &r, &p), AE_EINVAL);
  ck_assert_int_eq(p.status, 422);
  int found = 0;
  for (size_t i = 0; i < p.n_errors; i++)
    if (strcmp(p.errors[i].pointer, ptr) == 0 &&
        (!want || strstr(p.errors[i].detail, want)))
      found = 1;
  ck_assert_msg(found, "%s: no error at %s with \"%s\" (first: %s %s)", text,
                ptr, want ? want : "", p.n_errors ? p.errors[0].pointer : "",
                p.n_errors ? p.errors[0].detail : "");
  ck_assert_ptr_null(r.normalised);
  ae_problem_clear(&p);
  json_decref(body);
}

#define MLP                                                                    \
  "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_02_002\","              \
  "\"width\":16},\"data\":{\"batch_size\":6,\"input_shape\":[8]}"

/* Parses MLP + rest; the request (free it). */
static void parse_mlp(const char *rest, ae_request *r) {
  char text[1024];
  snprintf(text, sizeof text, "%s%s}", MLP, rest);
  json_t *body = load_text(text);
  parse_ok(body, r);
  /* The normalised request selects the same again. */
  ae_request r2;
  parse_ok(r->normalised, &r2);
  ck_assert_uint_eq(r2.selected.bits, r->selected.bits);
  ck_assert(json_equal(r->normalised, r2.normalised));
  ae_request_free(&r2);
  json_decref(body);
}

static int selected_count(const ae_request *r) {
  return __builtin_popcountll(r->selected.bits);
}

START_TEST(profiles_and_metrics) {
  ae_request r;
  static const char *const names[] = {"fast", "rank", "full", "all"};
  for (size_t i = 0; i < 4; i++) {
    char rest[64];
    snprintf(rest, sizeof rest, ",\"profile\":\"%s\"", names[i]);
    parse_mlp(rest, &r);
    ae_metric_set want;
    ck_assert_int_eq(ae_metric_profile(names[i], &want), 0);
    ck_assert_uint_eq(r.selected.bits, want.bits);
    ck_assert_str_eq(json_string_value(npath(&r, "profile", NULL)), names[i]);
    ck_assert_uint_eq(ae_metric_set_groups(r.selected),
                      ae_metric_set_groups(want));
    ae_request_free(&r);
  }
  /* fast: topology and the two fast components, no NTK, no curvature. */
  parse_mlp(",\"profile\":\"fast\"", &r);
  ck_assert(ae_metric_set_has(r.selected, AE_M_FLOPS));
  ck_assert(ae_metric_set_has(r.selected, AE_M_ACTIVATION_PATTERNS));
  ck_assert(ae_metric_set_has(r.selected, AE_M_FEATURE_CORR_LAMBDA_MIN_MEAN));
  ck_assert(!ae_metric_set_has(r.selected, AE_M_NTK_LAMBDA_MIN));
  ck_assert(!ae_metric_set_has(r.selected, AE_M_CURVATURE));
  ck_assert(!ae_metric_set_has(r.selected, AE_M_NNGP_LAMBDA_MIN));
  ck_assert(!ae_metric_set_has(r.selected, AE_M_KERNEL_COMPLEXITY));
  ck_assert_uint_eq(ae_metric_set_groups(r.selected),
                    AE_GROUP_TOPOLOGY | AE_GROUP_EXPRESSIVITY |
                        AE_GROUP_CONVERGENCE);
  /* fast: feature_corr_lambda_min_mean over the first sample alone... */
  ck_assert_int_eq(r.settings.fc_samples, 1);
  ae_request_free(&r);
  /* ...unless the request sets its samples. */
  parse_mlp(",\"profile\":\"fast\",\"settings\":"
            "{\"feature_corr_lambda_min\":{\"samples\":3}}",
            &r);
  ck_assert_int_eq(r.settings.fc_samples, 3);
  ae_request_free(&r);
  /* rank: the default combination, synflow included; no curvature. */
  parse_mlp(",\"profile\":\"rank\"", &r);
  ck_assert_int_gt(r.settings.fc_samples, 1); /* 8, at most the batch */
  ck_assert(ae_metric_set_has(r.selected, AE_M_SYNFLOW));
  ck_assert(!ae_metric_set_has(r.selected, AE_M_GRAD_NORM));
  ck_assert(ae_metric_set_has(r.selected, AE_M_JACOBIAN_TRAINABILITY));
  ck_assert(ae_metric_set_has(r.selected, AE_M_FEATURE_PROGRESSIVITY));
  ck_assert(!ae_metric_set_has(r.selected, AE_M_CURVATURE));
  ck_assert(!ae_metric_set_has(r.selected, AE_M_LINEAR_REGIONS));
  ck_assert(ae_metric_set_groups(r.selected) & AE_GROUP_PROXIES);
  ae_request_free(&r);
  /* One metric alone brings its family, and nothing else. */
  parse_mlp(",\"metrics\":[\"convergence.ntk_condition\"]", &r);
  ck_assert_int_eq(selected_count(&r), 5);
  ck_assert(ae_metric_set_has(r.selected, AE_M_NTK_LAMBDA_MIN));
  ck_assert(ae_metric_set_has(r.selected, AE_M_STEPS_TO_1E_3));
  ck_assert_uint_eq(ae_metric_set_groups(r.selected), AE_GROUP_CONVERGENCE);
  ck_assert(json_is_null(npath(&r, "profile", NULL)));
  ck_assert_int_eq(json_array_size(npath(&r, "metrics", NULL)), 5);
  ae_request_free(&r);
  /* Curvature without linear regions, and the reverse. */
  parse_mlp(",\"metrics\":[\"expressivity.curvature\"]", &r);
  ck_assert_int_eq(selected_count(&r), 1);
  ck_assert(!ae_metric_set_has(r.selected, AE_M_LINEAR_REGIONS));
  ae_request_free(&r);
  parse_mlp(",\"metrics\":[\"expressivity.linear_regions_saturated\"]", &r);
  ck_assert_int_eq(selected_count(&r), 3);
  ck_assert(!ae_metric_set_has(r.selected, AE_M_CURVATURE));
  ae_request_free(&r);
  /* A group name, "proxies" included, and a union with the profile. */
  parse_mlp(",\"metrics\":[\"proxies\"]", &r);
  ck_assert_int_eq(selected_count(&r), 5);
  ck_assert_uint_eq(ae_metric_set_groups(r.selected), AE_GROUP_PROXIES);
  ae_request_free(&r);
  parse_mlp(",\"profile\":\"fast\",\"metrics\":[\"expressivity.curvature\","
            "\"generalization\"]",
            &r);
  ae_metric_set fast;
  ck_assert_int_eq(ae_metric_profile("fast", &fast), 0);
  ck_assert_uint_eq(r.selected.bits & fast.bits, fast.bits);
  ck_assert(ae_metric_set_has(r.selected, AE_M_CURVATURE));
  ck_assert(ae_metric_set_has(r.selected, AE_M_KERNEL_REGRESSION_VAL_ACC));
  ck_assert(!ae_metric_set_has(r.selected, AE_M_LINEAR_REGIONS));
  ck_assert_str_eq(json_string_value(npath(&r, "profile", NULL)), "fast");
  ae_request_free(&r);
  /* "profile": null is the same as no profile. */
  parse_mlp(",\"profile\":null,\"metrics\":[\"topology\"]", &r);
  ck_assert_uint_eq(ae_metric_set_groups(r.selected), AE_GROUP_TOPOLOGY);
  ae_request_free(&r);
}
END_TEST

START_TEST(profile_and_metric_errors) {
  expect_invalid(MLP ",\"profile\":\"quick\"}", "/profile",
                 "fast, rank, full, all");
  expect_invalid(MLP ",\"profile\":3}", "/profile", "fast, rank, full, all");
  expect_invalid(MLP ",\"metrics\":[\"topology\",\"topology.flops\","
                     "\"convergence\",\"convergence.nope\"]}",
                 "/metrics/3", "convergence.nope");
  expect_invalid(MLP ",\"metrics\":[\"convergence.nope\"]}", "/metrics/0",
                 "the group has: ntk_lambda_min, ntk_lambda_max, "
                 "ntk_condition, nngp_lambda_min");
  expect_invalid(MLP ",\"metrics\":[\"proxies.nope\"]}", "/metrics/0",
                 "synflow, grad_norm, snip, jacob_cov, zico");
  expect_invalid(MLP ",\"metrics\":[\"nope\"]}", "/metrics/0",
                 "topology, expressivity, convergence, generalization, "
                 "proxies");
  expect_invalid(MLP ",\"metrics\":[\"topology.\"]}", "/metrics/0", NULL);
  expect_invalid(MLP ",\"metrics\":[\".flops\"]}", "/metrics/0", NULL);
  expect_invalid(MLP ",\"metrics\":[7]}", "/metrics/0", NULL);
  expect_invalid(MLP ",\"metrics\":[\"topology.flops\",\"topology.flops\"]}",
                 "/metrics/1", "twice");
  expect_invalid(MLP ",\"metrics\":[]}", "/metrics", NULL);
  /* More names than exist: refused as a whole. */
  char big[4096];
  int n = snprintf(big, sizeof big, "%s,\"metrics\":[", MLP);
  for (int k = 0; k < 60; k++)
    n += snprintf(big + n, sizeof big - (size_t)n, "%s\"topology\"",
                  k ? "," : "");
  snprintf(big + n, sizeof big - (size_t)n, "]}");
  expect_invalid(big, "/metrics", "each allowed once");
  expect_invalid(MLP ",\"metrics\":\"topology\"}", "/metrics", NULL);
}
END_TEST

START_TEST(ranking_settings) {
  ae_request r;
  parse_mlp(",\"settings\":{\"init\":\"torch_default\","
            "\"activation_patterns\":{\"repeats\":64},"
            "\"feature_corr_lambda_min\":{\"samples\":6}}",
            &r);
  ck_assert_int_eq(r.settings.init, AE_INIT_TORCH_DEFAULT);
  ck_assert_int_eq(r.settings.ap_repeats, 64);
  ck_assert_int_eq(r.settings.fc_samples, 6);
  json_t *s = npath(&r, "settings", NULL);
  ck_assert_str_eq(json_string_value(json_object_get(s, "init")),
                   "torch_default");
  ae_request_free(&r);
  parse_mlp(",\"settings\":{\"init\":\"gaussian\"}", &r);
  ck_assert_int_eq(r.settings.init, AE_INIT_GAUSSIAN);
  /* The default samples (8) shrink to the batch of 6. */
  ck_assert_int_eq(r.settings.fc_samples, 6);
  ck_assert_int_eq(r.settings.ap_repeats, 8);
  ae_request_free(&r);
  expect_invalid(MLP ",\"settings\":{\"init\":\"xavier\"}}", "/settings/init",
                 "kaiming_normal, torch_default, gaussian");
  expect_invalid(MLP ",\"settings\":{\"activation_patterns\":{\"repeats\":0}}}",
                 "/settings/activation_patterns/repeats", NULL);
  expect_invalid(MLP
                 ",\"settings\":{\"activation_patterns\":{\"repeats\":65}}}",
                 "/settings/activation_patterns/repeats", NULL);
  expect_invalid(MLP ",\"settings\":{\"activation_patterns\":{\"x\":1}}}",
                 "/settings/activation_patterns/x", NULL);
  expect_invalid(MLP ",\"settings\":{\"activation_patterns\":3}}",
                 "/settings/activation_patterns", NULL);
  expect_invalid(MLP
                 ",\"settings\":{\"feature_corr_lambda_min\":{\"samples\":0}}}",
                 "/settings/feature_corr_lambda_min/samples", NULL);
  expect_invalid(MLP
                 ",\"settings\":{\"feature_corr_lambda_min\":{\"samples\":7}}}",
                 "/settings/feature_corr_lambda_min/samples", "batch size (6)");
}
END_TEST

/* NAS-Bench-201's FLOPs convention (its get_model_infos counter sums,
 * per image, k*k*c_in*c_out*H*W over Conv2d and in*out + out over the
 * classifier; pools and BatchNorm count nothing) written out for the
 * CIFAR network, C = 16, N = 5: stem 3->16 3x3 at 32x32; per cell and
 * stage, 9 C^2 H^2 per nor_conv_3x3 edge and C^2 H^2 per nor_conv_1x1;
 * two ResNet reduction blocks (3x3 stride 2, 3x3, 1x1 shortcut after an
 * average pool); the 64 -> 10 classifier with its bias. */
static double nb201_macs_convention(int conv3, int conv1) {
  double macs = 3.0 * 9 * 16 * 32 * 32;
  static const int channels[3] = {16, 32, 64}, side[3] = {32, 16, 8};
  for (int st = 0; st < 3; st++) {
    double c = channels[st], hw = (double)side[st] * side[st];
    macs += 5 * (9.0 * conv3 + conv1) * c * c * hw;
    if (st > 0) {
      double cin = channels[st - 1];
      macs += (9 * cin * c + 9 * c * c + cin * c) * hw;
    }
  }
  return macs + 64 * 10 + 10;
}

START_TEST(nb201_macs_follow_its_convention) {
  static const struct {
    const char *cell;
    int conv3, conv1;
  } cells[] = {
      {"|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
       "nor_conv_3x3~1|nor_conv_3x3~2|",
       6, 0},
      {"|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|"
       "none~2|",
       2, 0},
      {"|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
       "nor_conv_1x1~1|avg_pool_3x3~2|",
       1, 2},
      {"|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", 0, 0},
  };
  for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++) {
    char text[512];
    snprintf(text, sizeof text,
             "{\"architecture\":{\"type\":\"nb201\",\"cell\":\"%s\"},"
             "\"data\":{\"batch_size\":2}}",
             cells[i].cell);
    json_t *body = load_text(text);
    ae_request r;
    parse_ok(body, &r);
    double macs = ae_graph_macs(&r.net);
    ck_assert_msg(macs == nb201_macs_convention(cells[i].conv3, cells[i].conv1),
                  "%s: %.0f MACs, the convention gives %.0f", cells[i].cell,
                  macs, nb201_macs_convention(cells[i].conv3, cells[i].conv1));
    ck_assert_double_eq(ae_graph_flops(&r.net), 2 * macs);
    ae_request_free(&r);
    json_decref(body);
  }
  /* The all-conv cell: NAS-Bench-201 lists 220.11969 MFLOPs and 1.531546 M
   * parameters for it on CIFAR-10. */
  ck_assert_double_eq(nb201_macs_convention(6, 0), 220119690.0);
}
END_TEST

START_TEST(dumps_round_trips) {
  json_t *o = json_pack("{s:f, s:f, s:i, s:s}", "third", 1.0 / 3.0, "big",
                        6.02214076e23, "n", 3, "z", "a");
  char *s = ae_json_dumps(o);
  ck_assert_ptr_nonnull(s);
  ck_assert_ptr_null(strchr(s, ' ')); /* compact */
  /* The shortest text that reads back as the same double. */
  ck_assert_ptr_nonnull(strstr(s, "\"third\":0.3333333333333333,"));
  ck_assert_ptr_nonnull(strstr(s, "\"big\":6.02214076e23,"));
  ck_assert(strstr(s, "\"third\"") < strstr(s, "\"z\"")); /* order kept */
  json_t *back = json_loads(s, 0, NULL);
  ck_assert_double_eq(json_real_value(json_object_get(back, "third")),
                      1.0 / 3.0);
  ck_assert_double_eq(json_real_value(json_object_get(back, "big")),
                      6.02214076e23);
  json_decref(back);
  free(s);
  json_decref(o);
  ck_assert_ptr_null(ae_json_dumps(NULL));
}
END_TEST

/* {"type": "onnx"}: resolved through the model source; the model's graph
 * is parsed and lowered as a graph, the data default to its shape and
 * classes, the normalised request names the model and keeps its import
 * warnings (released on every failure: ASan); an unknown id is a 422
 * at /architecture/model, a failing store a 503. */
static int fake_resolve(void *ctx, const char *id, ae_model_info *out) {
  const char *known = ctx;
  memset(out, 0, sizeof *out);
  if (strncmp(id, "sha256:ee", 9) == 0) return AE_EIO;
  if (strcmp(id, known)) return AE_ENOTFOUND;
  out->architecture = json_pack(
      "{s:s, s:[{s:s, s:s, s:[s]}, {s:s, s:s, s:[s], s:i}], s:s}", "type",
      "graph", "nodes", "id", "flat", "op", "flatten", "inputs", "input", "id",
      "fc", "op", "linear", "inputs", "flat", "out", 7, "output", "fc");
  out->input_shape[0] = 5;
  out->input_shape[1] = out->input_shape[2] = 1;
  out->input_rank = 1;
  out->num_classes = 7;
  out->warnings = json_pack("[s]", "BN folded");
  return AE_OK;
}

START_TEST(onnx_model_resolved) {
  char id[80];
  snprintf(id, sizeof id, "sha256:%064d", 0);
  ae_model_source models = {fake_resolve, id};
  char text[400];
  snprintf(text, sizeof text,
           "{\"architecture\":{\"type\":\"onnx\",\"model\":\"%s\"},"
           "\"seed\":4}",
           id);
  json_t *body = load_text(text);
  ae_request r;
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_request_parse_models(body, &catalog, &models, &lim, &r, &p);
  ck_assert_msg(rc == AE_OK, "%s %s", p.n_errors ? p.errors[0].pointer : "",
                p.n_errors ? p.errors[0].detail : p.detail);
  ck_assert_int_eq(r.arch.type, AE_ARCH_GRAPH);
  ck_assert_str_eq(r.arch.model, id);
  ck_assert_int_eq(r.data.input_rank, 1);
  ck_assert_int_eq(r.data.input_shape[0], 5);
  ck_assert_int_eq(r.data.num_classes, 7);
  ck_assert_int_eq(r.net.num_classes, 7);
  ck_assert_str_eq(json_string_value(npath(&r, "architecture", "type")),
                   "onnx");
  ck_assert_str_eq(json_string_value(npath(&r, "architecture", "model")), id);
  /* The import's warnings travel with the request (to the result). */
  ck_assert_int_eq(json_array_size(r.model_warnings), 1);
  ck_assert_str_eq(json_string_value(json_array_get(r.model_warnings, 0)),
                   "BN folded");
  ae_request_free(&r);
  /* The plain parser knows no models. */
  ck_assert_int_eq(ae_request_parse(body, &catalog, &lim, &r, &p), AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/model"));
  ae_problem_clear(&p);
  json_decref(body);
  /* Unknown, malformed, extra keys, a failing store. */
  const char *bad[] = {
      "{\"architecture\":{\"type\":\"onnx\",\"model\":\"sha256:"
      "1111111111111111111111111111111111111111111111111111111111111111\"}}",
      "{\"architecture\":{\"type\":\"onnx\",\"model\":\"sha256:ABC\"}}",
      "{\"architecture\":{\"type\":\"onnx\"}}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    body = load_text(bad[i]);
    ck_assert_int_eq(
        ae_request_parse_models(body, &catalog, &models, &lim, &r, &p),
        AE_EINVAL);
    ck_assert_int_eq(p.status, 422);
    ck_assert_msg(has_pointer(&p, "/architecture/model"), "%s", bad[i]);
    ae_problem_clear(&p);
    json_decref(body);
  }
  snprintf(text, sizeof text,
           "{\"architecture\":{\"type\":\"onnx\",\"model\":\"%s\","
           "\"cell\":1}}",
           id);
  body = load_text(text);
  ck_assert_int_eq(
      ae_request_parse_models(body, &catalog, &models, &lim, &r, &p),
      AE_EINVAL);
  ck_assert(has_pointer(&p, "/architecture/cell"));
  ae_problem_clear(&p);
  json_decref(body);
  body = load_text(
      "{\"architecture\":{\"type\":\"onnx\",\"model\":\"sha256:"
      "ee11111111111111111111111111111111111111111111111111111111111111\"}}");
  ck_assert_int_eq(
      ae_request_parse_models(body, &catalog, &models, &lim, &r, &p),
      AE_EINVAL);
  ck_assert_int_eq(p.status, 503);
  ck_assert_str_eq(p.code, "store_unavailable");
  ae_problem_clear(&p);
  json_decref(body);
}
END_TEST

static Suite *request_suite(void) {
  Suite *s = suite_create("api_request");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_add_test(tc, defaults_filled_in);
  tcase_add_test(tc, every_example_parses);
  tcase_add_test(tc, explicit_values_kept);
  tcase_add_test(tc, inline_data);
  tcase_add_test(tc, inputs_from_text);
  tcase_add_test(tc, catalog_dataset);
  tcase_add_test(tc, all_errors_collected);
  tcase_add_test(tc, limits_enforced);
  tcase_add_test(tc, parse_body_errors);
  tcase_add_test(tc, non_finite_literals_named);
  tcase_add_test(tc, graph_output_width);
  tcase_add_test(tc, dumps_round_trips);
  tcase_add_test(tc, profiles_and_metrics);
  tcase_add_test(tc, profile_and_metric_errors);
  tcase_add_test(tc, ranking_settings);
  tcase_add_test(tc, nb201_macs_follow_its_convention);
  tcase_add_test(tc, onnx_model_resolved);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(request_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
