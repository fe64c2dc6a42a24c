/* fuzz_router.c: libFuzzer harness for the daemon's router and the small
 * parsers of request values (server/route.c, linked alone: the router has
 * no other dependency in the daemon).
 *
 * Input: byte 0 picks the method (GET, POST, DELETE, HEAD, PUT, or the
 * next bytes up to a NUL); the rest, up to its first NUL, is the path.  The
 * same string also goes through ae_request_id_ok (X-Request-Id),
 * ae_content_type_is_json (Content-Type), ae_client_ref_ok (?client_ref=),
 * ae_parse_count (wait_ms, page_size, Content-Length) and
 * ae_page_token_decode (page_token).  Checked promises: a match is the
 * route's own path (its label, with a valid {id} of 1-31 characters of
 * [A-Za-z0-9_-] put in); every routed path has an explicit 405 row for the
 * other methods, with an Allow header; a miss is a 404 labelled "other";
 * an accepted client_ref is 1-256 bytes without control characters; page
 * tokens round-trip.  Single-threaded; no state kept between inputs. */
#include "config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "server/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_methods[] = {"GET", "POST", "DELETE", "HEAD",
                                           "PUT"};

/* Aborts unless id is 1-31 characters of [A-Za-z0-9_-]. */
static void check_id(const char *id) {
  size_t n = strlen(id);
  if (n < 1 || n > 31) abort();
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)id[i]) && id[i] != '_' && id[i] != '-') abort();
}

/* The path the route's label stands for, with id put in for "{id}" (or
 * the model's id for "{model}"). */
static void expected_path(int route, const char *id, const char *model,
                          char *out, size_t len) {
  const char *label = ae_route_labels[route];
  const char *hole = strstr(label, "{id}");
  const char *model_hole = strstr(label, "{model}");
  if (model_hole) {
    snprintf(out, len, "%.*s%s%s", (int)(model_hole - label), label, model,
             model_hole + 7);
    return;
  }
  if (!hole) {
    snprintf(out, len, "%s", label);
    return;
  }
  snprintf(out, len, "%.*s%s%s", (int)(hole - label), label, id, hole + 4);
}

static void fuzz_route(const char *method, const char *path) {
  ae_route_match m;
  ae_route_find(method, path, &m);
  if ((int)m.handler < 0 || m.handler >= AE_HANDLER_COUNT) abort();
  if (m.route < 0 || m.route >= AE_ROUTE_COUNT) abort();
  if (m.handler == AE_HANDLER_NOT_FOUND) {
    if (m.route != AE_ROUTE_OTHER || m.allow) abort();
    return;
  }
  if (m.route == AE_ROUTE_OTHER) abort();
  if (strstr(ae_route_labels[m.route], "{id}"))
    check_id(m.id);
  else if (m.id[0])
    abort();
  if (!strstr(ae_route_labels[m.route], "{model}") && m.model[0]) abort();
  char expected[160];
  expected_path(m.route, m.id, m.model, expected, sizeof expected);
  if (strcmp(expected, path)) abort();
  if (m.handler == AE_HANDLER_NOT_ALLOWED) {
    if (!m.allow || !m.allow[0]) abort();
    if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
      if (strstr(m.allow, "GET")) abort(); /* GET is served there */
    return;
  }
  if (m.allow) abort();
  /* Every routed path answers another method with its explicit 405. */
  ae_route_match other;
  ae_route_find("PATCH", path, &other);
  if (other.handler != AE_HANDLER_NOT_ALLOWED || other.route != m.route ||
      !other.allow)
    abort();
}

static void fuzz_values(const char *s) {
  (void)ae_request_id_ok(s);
  (void)ae_content_type_is_json(s);
  if (ae_client_ref_ok(s)) {
    size_t n = strlen(s);
    if (n < 1 || n > 256) abort();
    for (size_t i = 0; i < n; i++)
      if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) abort();
  }
  static const long long maxima[] = {30000, 1000, 1 << 20, 1LL << 58};
  for (size_t i = 0; i < sizeof maxima / sizeof maxima[0]; i++) {
    long long v = -1;
    if (ae_parse_count(s, maxima[i], &v) == AE_OK &&
        (v < 0 || v > maxima[i] + 1))
      abort();
  }
  ae_page_key key;
  if (ae_page_token_decode(s, &key) == AE_OK) {
    /* Whatever decodes must re-encode to a token that decodes the same,
     * and a key comes after no item of its own seq and id. */
    char tok[AE_PAGE_TOKEN_MAX];
    ae_page_key again = {.seq = -1};
    if (key.seq < 0 || strlen(key.id) >= AE_PAGE_ID_MAX) abort();
    ae_page_token_encode(key.seq, key.id, tok, sizeof tok);
    if (strlen(tok) + 1 >= sizeof tok) abort();
    if (ae_page_token_decode(tok, &again) != AE_OK || again.seq != key.seq ||
        strcmp(again.id, key.id))
      abort();
    if (ae_page_key_after(&key, key.seq, key.id)) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  char *buf = malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  const char *method;
  char *path;
  if ((unsigned char)buf[0] < 5) {
    method = fuzz_methods[(unsigned char)buf[0]];
    path = buf + 1;
  } else {
    /* A method of its own: the bytes up to the first NUL, then the path. */
    method = buf;
    size_t n = strlen(buf);
    path = n < size ? buf + n + 1 : buf + size;
  }
  fuzz_route(method, path);
  fuzz_values(path);
  free(buf);
  return 0;
}
