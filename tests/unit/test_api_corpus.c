/* test_api_corpus.c: runs every malformed request of
 * tests/data/bad_requests/ through ae_json_parse_body and ae_request_parse
 * and checks the status and the JSON pointers listed in expected.tsv; then
 * checks that every example in tests/data/requests/ is accepted.  Built
 * with AddressSanitizer and UBSan, with the api sources compiled in, so
 * the parsers run instrumented.  Single-threaded. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/status.h"

static const ae_dataset_info fake_sets[] = {
    {"fashion-mnist", {1, 28, 28}, 3, 10, 60000},
};
static const ae_catalog catalog = {fake_sets, 1};

/* Reads a whole file; returns a malloc'd buffer and its length. */
static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? 2 * cap : 4096;
      buf = realloc(buf, cap);
      ck_assert_ptr_nonnull(buf);
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  fclose(f);
  *len = n;
  return buf;
}

static int has_pointer(const ae_problem *p, const char *ptr) {
  for (size_t i = 0; i < p->n_errors; i++)
    if (strcmp(p->errors[i].pointer, ptr) == 0) return 1;
  return 0;
}

/* Parses one body; returns the problem's status (0 when accepted). */
static int run_one(const char *buf, size_t len, ae_problem *p) {
  ae_limits lim;
  ae_limits_default(&lim);
  json_t *body = NULL;
  if (ae_json_parse_body(buf, len, &body, p) != AE_OK) return p->status;
  ae_request r;
  int rc = ae_request_parse(body, &catalog, &lim, &r, p);
  json_decref(body);
  if (rc == AE_OK) {
    ck_assert_ptr_nonnull(r.normalised);
    ae_request_free(&r);
    return 0;
  }
  ck_assert_ptr_null(r.normalised);
  json_t *pj = ae_problem_to_json(p, "/v1/jobs");
  ck_assert_ptr_nonnull(pj);
  json_decref(pj);
  return p->status;
}

START_TEST(bad_requests_rejected) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/data/bad_requests/expected.tsv",
           AE_SRCDIR);
  size_t len;
  char *tsv = read_file(path, &len);
  tsv = realloc(tsv, len + 1);
  ck_assert_ptr_nonnull(tsv);
  tsv[len] = '\0';
  int cases = 0;
  char *save = NULL;
  for (char *line = strtok_r(tsv, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == '#' || line[0] == '\0') continue;
    char *file = line, *status_s = strchr(file, '\t');
    ck_assert_ptr_nonnull(status_s);
    *status_s++ = '\0';
    char *pointers = strchr(status_s, '\t');
    ck_assert_ptr_nonnull(pointers);
    *pointers++ = '\0';
    int want = atoi(status_s);
    snprintf(path, sizeof path, "%s/tests/data/bad_requests/%s", AE_SRCDIR,
             file);
    size_t blen;
    char *body = read_file(path, &blen);
    ae_problem p = AE_PROBLEM_INIT;
    int got = run_one(body, blen, &p);
    ck_assert_msg(
        got == want, "%s: status %d, expected %d (%s)", file, got, want,
        p.n_errors ? p.errors[0].pointer : (p.detail ? p.detail : ""));
    if (want == 400) {
      ck_assert_str_eq(p.code, "invalid_json");
      ck_assert_msg(strncmp(p.detail, "line ", 5) == 0, "%s: %s", file,
                    p.detail);
    }
    /* A 400 names a field too where it can (a NaN or Infinity literal). */
    if (strcmp(pointers, "-") != 0) {
      char *psave = NULL;
      for (char *ptr = strtok_r(pointers, ",", &psave); ptr;
           ptr = strtok_r(NULL, ",", &psave)) {
        const char *want_ptr = strcmp(ptr, "(root)") == 0 ? "" : ptr;
        ck_assert_msg(has_pointer(&p, want_ptr),
                      "%s: no error at \"%s\"; first is \"%s\": %s", file,
                      want_ptr, p.n_errors ? p.errors[0].pointer : "-",
                      p.n_errors ? p.errors[0].detail : "-");
      }
    }
    ae_problem_clear(&p);
    free(body);
    cases++;
  }
  free(tsv);
  ck_assert_int_ge(cases, 50);
}
END_TEST

START_TEST(valid_requests_accepted) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/tests/data/requests", AE_SRCDIR);
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0) continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t len;
    char *body = read_file(path, &len);
    ae_problem p = AE_PROBLEM_INIT;
    int got = run_one(body, len, &p);
    ck_assert_msg(got == 0, "%s: status %d at %s: %s", e->d_name, got,
                  p.n_errors ? p.errors[0].pointer : "-",
                  p.n_errors ? p.errors[0].detail : (p.detail ? p.detail : ""));
    ae_problem_clear(&p);
    free(body);
    n++;
  }
  closedir(d);
  ck_assert_int_ge(n, 5);
}
END_TEST

int main(void) {
  Suite *s = suite_create("api_corpus");
  TCase *tc = tcase_create("corpus");
  tcase_add_test(tc, bad_requests_rejected);
  tcase_add_test(tc, valid_requests_accepted);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
