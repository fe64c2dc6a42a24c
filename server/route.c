/* route.c: archevald's router: the route table, path matching, page
 * tokens and the small parsers of request values.
 *
 * The table lists, per path, a row for each method served and then an
 * explicit 405 row (any other method) that carries the Allow header; a
 * request no row matches is a 404.  Everything here is a pure function of
 * its arguments: no state, no I/O, no thread of its own.  The libFuzzer
 * harness tests/fuzz/fuzz_router.c links this file alone. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/status.h"
#include "server/route.h"

const char *const ae_route_labels[AE_ROUTE_COUNT] = {"/v1/health/live",
                                                     "/v1/health/ready",
                                                     "/v1",
                                                     "/metrics",
                                                     "/v1/datasets",
                                                     "/v1/jobs",
                                                     "/v1/jobs:batch",
                                                     "/v1/jobs/{id}",
                                                     "/v1/jobs/{id}:cancel",
                                                     "/v1/studies",
                                                     "/v1/studies/{id}",
                                                     "/v1/studies/{id}/"
                                                     "architectures",
                                                     "/v1/studies/{id}/ranking",
                                                     "/ui/",
                                                     "/v1/models",
                                                     "/v1/models/{model}",
                                                     "other"};

typedef struct {
  const char *pattern;
  const char *method; /* NULL: any method (a 405 row) */
  int route;
  ae_handler handler;
  const char *allow; /* a 405 row's Allow header */
} route_row;

static const route_row routes[] = {
    {"/v1/health/live", "GET", AE_ROUTE_LIVE, AE_HANDLER_LIVE, NULL},
    {"/v1/health/live", NULL, AE_ROUTE_LIVE, AE_HANDLER_NOT_ALLOWED,
     "GET, HEAD"},
    {"/v1/health/ready", "GET", AE_ROUTE_READY, AE_HANDLER_READY, NULL},
    {"/v1/health/ready", NULL, AE_ROUTE_READY, AE_HANDLER_NOT_ALLOWED,
     "GET, HEAD"},
    {"/v1", "GET", AE_ROUTE_ROOT, AE_HANDLER_ROOT, NULL},
    {"/v1", NULL, AE_ROUTE_ROOT, AE_HANDLER_NOT_ALLOWED, "GET, HEAD"},
    {"/metrics", "GET", AE_ROUTE_METRICS, AE_HANDLER_METRICS, NULL},
    {"/metrics", NULL, AE_ROUTE_METRICS, AE_HANDLER_NOT_ALLOWED, "GET, HEAD"},
    {"/v1/datasets", "GET", AE_ROUTE_DATASETS, AE_HANDLER_DATASETS, NULL},
    {"/v1/datasets", NULL, AE_ROUTE_DATASETS, AE_HANDLER_NOT_ALLOWED,
     "GET, HEAD"},
    {"/v1/jobs", "POST", AE_ROUTE_JOBS, AE_HANDLER_SUBMIT, NULL},
    {"/v1/jobs", "GET", AE_ROUTE_JOBS, AE_HANDLER_LIST, NULL},
    {"/v1/jobs", NULL, AE_ROUTE_JOBS, AE_HANDLER_NOT_ALLOWED,
     "POST, GET, HEAD"},
    {"/v1/jobs:batch", "POST", AE_ROUTE_BATCH, AE_HANDLER_BATCH, NULL},
    {"/v1/jobs:batch", NULL, AE_ROUTE_BATCH, AE_HANDLER_NOT_ALLOWED, "POST"},
    {"/v1/jobs/{id}", "GET", AE_ROUTE_JOB, AE_HANDLER_GET, NULL},
    {"/v1/jobs/{id}", "DELETE", AE_ROUTE_JOB, AE_HANDLER_DELETE, NULL},
    {"/v1/jobs/{id}", NULL, AE_ROUTE_JOB, AE_HANDLER_NOT_ALLOWED,
     "GET, HEAD, DELETE"},
    {"/v1/jobs/{id}:cancel", "POST", AE_ROUTE_CANCEL, AE_HANDLER_CANCEL, NULL},
    {"/v1/jobs/{id}:cancel", NULL, AE_ROUTE_CANCEL, AE_HANDLER_NOT_ALLOWED,
     "POST"},
    {"/v1/studies", "POST", AE_ROUTE_STUDIES, AE_HANDLER_STUDY_CREATE, NULL},
    {"/v1/studies", "GET", AE_ROUTE_STUDIES, AE_HANDLER_STUDY_LIST, NULL},
    {"/v1/studies", NULL, AE_ROUTE_STUDIES, AE_HANDLER_NOT_ALLOWED,
     "POST, GET, HEAD"},
    {"/v1/studies/{id}", "GET", AE_ROUTE_STUDY, AE_HANDLER_STUDY_GET, NULL},
    {"/v1/studies/{id}", "DELETE", AE_ROUTE_STUDY, AE_HANDLER_STUDY_DELETE,
     NULL},
    {"/v1/studies/{id}", NULL, AE_ROUTE_STUDY, AE_HANDLER_NOT_ALLOWED,
     "GET, HEAD, DELETE"},
    {"/v1/studies/{id}/architectures", "POST", AE_ROUTE_STUDY_ARCHITECTURES,
     AE_HANDLER_STUDY_ADD, NULL},
    {"/v1/studies/{id}/architectures", NULL, AE_ROUTE_STUDY_ARCHITECTURES,
     AE_HANDLER_NOT_ALLOWED, "POST"},
    {"/v1/studies/{id}/ranking", "GET", AE_ROUTE_STUDY_RANKING,
     AE_HANDLER_STUDY_RANKING, NULL},
    {"/v1/studies/{id}/ranking", NULL, AE_ROUTE_STUDY_RANKING,
     AE_HANDLER_NOT_ALLOWED, "GET, HEAD"},
    {"/v1/models", "POST", AE_ROUTE_MODELS, AE_HANDLER_MODEL_UPLOAD, NULL},
    {"/v1/models", NULL, AE_ROUTE_MODELS, AE_HANDLER_NOT_ALLOWED, "POST"},
    {"/v1/models/{model}", "GET", AE_ROUTE_MODEL, AE_HANDLER_MODEL_GET, NULL},
    {"/v1/models/{model}", "DELETE", AE_ROUTE_MODEL, AE_HANDLER_MODEL_DELETE,
     NULL},
    {"/v1/models/{model}", NULL, AE_ROUTE_MODEL, AE_HANDLER_NOT_ALLOWED,
     "GET, HEAD, DELETE"},
    {"/ui/", "GET", AE_ROUTE_UI, AE_HANDLER_UI, NULL},
    {"/ui/", NULL, AE_ROUTE_UI, AE_HANDLER_NOT_ALLOWED, "GET, HEAD"},
    {"/ui/app.js", "GET", AE_ROUTE_UI, AE_HANDLER_UI, NULL},
    {"/ui/app.js", NULL, AE_ROUTE_UI, AE_HANDLER_NOT_ALLOWED, "GET, HEAD"},
    {"/ui/style.css", "GET", AE_ROUTE_UI, AE_HANDLER_UI, NULL},
    {"/ui/style.css", NULL, AE_ROUTE_UI, AE_HANDLER_NOT_ALLOWED, "GET, HEAD"},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

/* Matches path against a pattern whose "{id}" takes 1-31 characters of
 * [A-Za-z0-9_-] and whose "{model}" 1-79 of [A-Za-z0-9:_-] (models.c
 * checks the id's form).  1 on a match (id or model filled), else 0. */
static int path_match(const char *pattern, const char *path, char id[32],
                      char model[80]) {
  while (*pattern) {
    if (!strncmp(pattern, "{model}", 7)) {
      size_t n = 0;
      while (isalnum((unsigned char)path[n]) || path[n] == '_' ||
             path[n] == '-' || path[n] == ':')
        n++;
      if (n == 0 || n > 79) return 0;
      memcpy(model, path, n);
      model[n] = '\0';
      path += n;
      pattern += 7;
      continue;
    }
    if (!strncmp(pattern, "{id}", 4)) {
      size_t n = 0;
      while (isalnum((unsigned char)path[n]) || path[n] == '_' ||
             path[n] == '-')
        n++;
      if (n == 0 || n > 31) return 0;
      memcpy(id, path, n);
      id[n] = '\0';
      path += n;
      pattern += 4;
      continue;
    }
    if (*pattern++ != *path++) return 0;
  }
  return *path == '\0';
}

static int method_matches(const char *row, const char *method) {
  if (!row) return 1;
  return !strcmp(row, method) ||
         (!strcmp(method, "HEAD") && !strcmp(row, "GET"));
}

void ae_route_find(const char *method, const char *path, ae_route_match *m) {
  memset(m, 0, sizeof *m);
  for (size_t i = 0; i < N_ROUTES; i++) {
    char id[32] = "", model[80] = "";
    if (!path_match(routes[i].pattern, path, id, model)) continue;
    if (!method_matches(routes[i].method, method)) continue;
    m->handler = routes[i].handler;
    m->route = routes[i].route;
    m->allow = routes[i].allow;
    snprintf(m->id, sizeof m->id, "%s", id);
    snprintf(m->model, sizeof m->model, "%s", model);
    return;
  }
  m->handler = AE_HANDLER_NOT_FOUND;
  m->route = AE_ROUTE_OTHER;
}

/* ---- page tokens: the seq and id, base16 with a check ---- */

/* The check digit of a token: seq's bits and the id's bytes, mod 31. */
static unsigned page_token_check(unsigned long long v, const char *id) {
  unsigned long long h = v % 31;
  for (const unsigned char *c = (const unsigned char *)id; *c; c++)
    h = (h * 131 + *c) % 31;
  return (unsigned)h;
}

static int page_id_char_ok(int c) {
  return isalnum((unsigned char)c) || c == '_' || c == '-';
}

void ae_page_token_encode(long long seq, const char *id, char *out,
                          size_t len) {
  unsigned long long v = (unsigned long long)seq ^ 0x5a5a5a5a5aULL;
  if (!id) id = "";
  snprintf(out, len, "%llx-%x%s%s", v, page_token_check(v, id), *id ? "." : "",
           id);
}

int ae_page_token_decode(const char *s, ae_page_key *key) {
  char *end;
  errno = 0;
  if (!isxdigit((unsigned char)*s)) return AE_EINVAL;
  unsigned long long v = strtoull(s, &end, 16);
  if (errno || end == s || *end != '-') return AE_EINVAL;
  const char *digits = end + 1;
  if (!isxdigit((unsigned char)*digits)) return AE_EINVAL;
  char *end2;
  unsigned long check = strtoul(digits, &end2, 16);
  const char *id = "";
  if (*end2 == '.') {
    id = end2 + 1;
    size_t n = strlen(id);
    if (!n || n >= AE_PAGE_ID_MAX) return AE_EINVAL;
    for (size_t i = 0; i < n; i++)
      if (!page_id_char_ok(id[i])) return AE_EINVAL;
  } else if (*end2) {
    return AE_EINVAL;
  }
  if (check != page_token_check(v, id)) return AE_EINVAL;
  key->seq = (long long)(v ^ 0x5a5a5a5a5aULL);
  if (key->seq < 0) return AE_EINVAL;
  snprintf(key->id, sizeof key->id, "%s", id);
  return AE_OK;
}

int ae_page_key_after(const ae_page_key *key, long long seq, const char *id) {
  if (key->seq < 0 || seq < key->seq) return 1;
  return seq == key->seq && key->id[0] && strcmp(id, key->id) < 0;
}

/* ---- request values ---- */

int ae_parse_count(const char *s, long long max, long long *out) {
  if (!s || !*s) return AE_EINVAL;
  long long v = 0;
  for (const char *c = s; *c; c++) {
    if (!isdigit((unsigned char)*c)) return AE_EINVAL;
    v = v * 10 + (*c - '0');
    if (v > max) v = max + 1; /* saturate, callers decide */
  }
  *out = v;
  return AE_OK;
}

int ae_request_id_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 128) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' &&
        s[i] != '-')
      return 0;
  return 1;
}

int ae_content_type_is_json(const char *ct) {
  if (!ct) return 1; /* no declaration: take it as JSON */
  while (*ct == ' ')
    ct++;
  size_t n = strcspn(ct, ";");
  while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
    n--;
  if (n == 16 && !strncasecmp(ct, "application/json", 16)) return 1;
  if (n > 17 && !strncasecmp(ct, "application/", 12) &&
      !strncasecmp(ct + n - 5, "+json", 5))
    return 1;
  return 0;
}

int ae_content_type_is_onnx(const char *ct) {
  if (!ct) return 0;
  while (*ct == ' ')
    ct++;
  size_t n = strcspn(ct, ";");
  while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
    n--;
  return (n == 16 && !strncasecmp(ct, "application/onnx", 16)) ||
         (n == 24 && !strncasecmp(ct, "application/octet-stream", 24));
}

int ae_client_ref_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 256) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
  return 1;
}
