/* test_engine_cli.c: `archeval score` end to end: runs the built binary on
 * the example requests of tests/data/examples and on bad input, and checks
 * exit statuses, one JSON line per request in input order, the problem on
 * stderr, and that --threads 2 prints the same results as one thread.
 * Single-threaded (it runs the CLI as a child process). */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu/engine.h"

static char cli[4200], examples[4200], cifar[4200];
static char tmp_dir[] = "/tmp/ae_test_cli_XXXXXX";

/* Runs a shell command; returns its exit status, stdout in *out and stderr
 * in *err (malloc'd, NUL-terminated). */
static int run(const char *cmd, char **out, char **err) {
  char full[13000], errpath[4300];
  snprintf(errpath, sizeof errpath, "%s/stderr", tmp_dir);
  snprintf(full, sizeof full, "%s 2>'%s'", cmd, errpath);
  FILE *f = popen(full, "r");
  ck_assert_ptr_nonnull(f);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  ck_assert_ptr_nonnull(buf);
  size_t got;
  while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (n + 1 == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      ck_assert_ptr_nonnull(buf);
    }
  }
  buf[n] = '\0';
  int st = pclose(f);
  *out = buf;
  FILE *e = fopen(errpath, "r");
  ck_assert_ptr_nonnull(e);
  char *eb = calloc(1, 1 << 16);
  ck_assert_ptr_nonnull(eb);
  size_t en = fread(eb, 1, (1 << 16) - 1, e);
  eb[en] = '\0';
  fclose(e);
  *err = eb;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Splits out into lines, parses each; returns the count. */
static size_t parse_lines(char *out, json_t **lines, size_t max) {
  size_t n = 0;
  for (char *s = strtok(out, "\n"); s && n < max; s = strtok(NULL, "\n")) {
    json_error_t je;
    lines[n] = json_loads(s, 0, &je);
    ck_assert_msg(lines[n] != NULL, "not JSON: %s", s);
    n++;
  }
  return n;
}

static void drop_timings(json_t *line) {
  json_t *prov = json_object_get(json_object_get(line, "result"), "provenance");
  json_object_del(prov, "timings_s");
}

START_TEST(test_examples_score) {
  static const char *const files[] = {"mlp_dag.json", "graph_resnet.json",
                                      "nb201_cifar10.json"};
  for (size_t i = 0; i < 3; i++) {
    char cmd[13000], *out, *err;
    snprintf(cmd, sizeof cmd, "'%s' score --dataset 'cifar10=%s' '%s/%s'", cli,
             cifar, examples, files[i]);
    int st = run(cmd, &out, &err);
    ck_assert_msg(st == 0, "%s: exit %d, stderr %s", files[i], st, err);
    json_t *lines[4];
    size_t n = parse_lines(out, lines, 4);
    ck_assert_uint_eq(n, 1);
    json_t *res = json_object_get(lines[0], "result");
    ck_assert_ptr_nonnull(res);
    ck_assert_ptr_nonnull(json_object_get(res, "topology"));
    ck_assert_ptr_nonnull(json_object_get(res, "convergence"));
    ck_assert(json_number_value(json_object_get(
                  json_object_get(res, "convergence"), "ntk_lambda_max")) > 0);
    json_decref(lines[0]);
    free(out);
    free(err);
  }
}
END_TEST

START_TEST(test_batch_in_order_and_threads) {
  char cmd[13000], *out1, *err1, *out2, *err2;
  snprintf(cmd, sizeof cmd, "'%s' score '%s/batch_mlp_dags.json'", cli,
           examples);
  ck_assert_int_eq(run(cmd, &out1, &err1), 0);
  ck_assert_ptr_nonnull(strstr(err1, "scored 3/3"));
  snprintf(cmd, sizeof cmd,
           "'%s' score --threads 2 - < '%s/batch_mlp_dags.json'", cli,
           examples);
  ck_assert_int_eq(run(cmd, &out2, &err2), 0);
  json_t *a[4], *b[4];
  ck_assert_uint_eq(parse_lines(out1, a, 4), 3);
  ck_assert_uint_eq(parse_lines(out2, b, 4), 3);
  for (int i = 0; i < 3; i++) {
    drop_timings(a[i]);
    drop_timings(b[i]);
    ck_assert_msg(json_equal(a[i], b[i]), "line %d differs", i);
  }
  /* In input order: the third is the tanh DAG, without linear regions. */
  json_t *ex = json_object_get(json_object_get(a[2], "result"), "expressivity");
  ck_assert(json_is_null(json_object_get(ex, "linear_regions")));
  ex = json_object_get(json_object_get(a[0], "result"), "expressivity");
  ck_assert(json_is_number(json_object_get(ex, "linear_regions")));
  /* 2_02_002 has one path; 1_01_222 has 1 + 2 + ... more. */
  double p0 = json_number_value(json_object_get(
      json_object_get(json_object_get(a[0], "result"), "topology"), "paths"));
  ck_assert_double_eq(p0, 1);
  for (int i = 0; i < 3; i++) {
    json_decref(a[i]);
    json_decref(b[i]);
  }
  free(out1);
  free(err1);
  free(out2);
  free(err2);
}
END_TEST

START_TEST(test_bad_input) {
  char cmd[13000], *out, *err;
  /* Not JSON: exit 3, a problem on stderr. */
  snprintf(cmd, sizeof cmd, "echo '{\"architecture\":' | '%s' score -", cli);
  ck_assert_int_eq(run(cmd, &out, &err), 3);
  ck_assert_ptr_nonnull(strstr(err, "invalid_json"));
  ck_assert_str_eq(out, "");
  free(out);
  free(err);
  /* Valid JSON, invalid request: exit 3 naming the field. */
  snprintf(cmd, sizeof cmd,
           "echo '{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_9\"}}' "
           "| '%s' score",
           cli);
  ck_assert_int_eq(run(cmd, &out, &err), 3);
  ck_assert_ptr_nonnull(strstr(err, "/architecture/dag"));
  free(out);
  free(err);
  /* An array with one bad item: the good one is scored, both in order. */
  snprintf(cmd, sizeof cmd,
           "echo '[{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2\","
           "\"width\":8},\"data\":{\"input_shape\":[4],\"batch_size\":4},"
           "\"metrics\":[\"topology\"]},{\"bogus\":1}]' | '%s' score",
           cli);
  ck_assert_int_eq(run(cmd, &out, &err), 3);
  json_t *lines[3];
  ck_assert_uint_eq(parse_lines(out, lines, 3), 2);
  ck_assert_ptr_nonnull(json_object_get(lines[0], "result"));
  ck_assert_ptr_nonnull(json_object_get(lines[1], "error"));
  json_decref(lines[0]);
  json_decref(lines[1]);
  free(out);
  free(err);
  /* Usage errors and help. */
  snprintf(cmd, sizeof cmd, "'%s' score --threads 0 x", cli);
  ck_assert_int_eq(run(cmd, &out, &err), 2);
  free(out);
  free(err);
  snprintf(cmd, sizeof cmd, "'%s' score --backend tpu x", cli);
  ck_assert_int_eq(run(cmd, &out, &err), 2);
  free(out);
  free(err);
  snprintf(cmd, sizeof cmd, "'%s' score --help", cli);
  ck_assert_int_eq(run(cmd, &out, &err), 0);
  ck_assert_ptr_nonnull(strstr(out, "--threads"));
  free(out);
  free(err);
  /* A dataset spec that cannot load. */
  snprintf(cmd, sizeof cmd,
           "'%s' score --dataset x=/nonexistent '%s/mlp_dag.json'", cli,
           examples);
  ck_assert_int_eq(run(cmd, &out, &err), 2);
  ck_assert_ptr_nonnull(strstr(err, "nonexistent"));
  free(out);
  free(err);
  /* Without a device the CUDA backend is refused with exit 4. */
  if (ae_cuda_device_count() == 0) {
    snprintf(cmd, sizeof cmd, "'%s' score --backend cuda '%s/mlp_dag.json'",
             cli, examples);
    ck_assert_int_eq(run(cmd, &out, &err), 4);
    ck_assert(strstr(err, "CUDA") || strstr(err, "cuda"));
    free(out);
    free(err);
  }
}
END_TEST

static Suite *cli_suite(void) {
  Suite *s = suite_create("engine_cli");
  TCase *tc = tcase_create("score");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_examples_score);
  tcase_add_test(tc, test_batch_in_order_and_threads);
  tcase_add_test(tc, test_bad_input);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  const char *b = getenv("AE_BUILDDIR");
  const char *src = getenv("AE_SRCDIR");
  const char *shared = getenv("AE_SHARED_DATA");
  snprintf(cli, sizeof cli, "%s/clients/archeval", b && b[0] ? b : AE_BUILDDIR);
  snprintf(examples, sizeof examples, "%s/tests/data/examples",
           src && src[0] ? src : AE_SRCDIR);
  snprintf(cifar, sizeof cifar, "%s/cifar10",
           shared && shared[0] ? shared : AE_SRCDIR "/../shared/data");
  if (access(cli, X_OK) != 0) {
    fprintf(stderr, "no %s: skipped\n", cli);
    return 77;
  }
  if (!mkdtemp(tmp_dir)) return 1;
  SRunner *sr = srunner_create(cli_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  if (system(cmd) != 0) failed++;
  return failed != 0;
}
