/* fuzz_router.c: libFuzzer harness for the daemon's URL router and the
 * small parsers of request headers and query values in server/http.c.
 *
 * Those functions are static in server/http.c, so this file includes it
 * (and the build links the rest of the daemon, without main.c).  Input:
 * byte 0 picks the method (GET, POST, DELETE, HEAD, PUT, or the next bytes
 * up to a NUL); the rest, up to its first NUL, is the path.  The same
 * string also goes through request_id_ok (X-Request-Id),
 * content_type_is_json (Content-Type), parse_count (wait_ms, page_size,
 * Content-Length) and token_decode (page_token).  Checked promises: a match
 * yields an {id} of 1-31 characters of [A-Za-z0-9_-] and a row whose
 * pattern and method agree; a miss never leaves a route row; page tokens
 * round-trip.  Single-threaded; no state kept between inputs. */
#include "server/http.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_methods[] = {"GET", "POST", "DELETE", "HEAD",
                                           "PUT"};

/* Aborts unless id is 1-31 characters of [A-Za-z0-9_-]. */
static void check_id(const char *id) {
  size_t n = strlen(id);
  if (n < 1 || n > 31) abort();
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)id[i]) && id[i] != '_' && id[i] != '-')
      abort();
}

static void fuzz_route(const char *method, char *path) {
  ae_http_req r;
  memset(&r, 0, sizeof r);
  snprintf(r.method, sizeof r.method, "%s", method);
  r.path = path;
  r.route = AE_ROUTE_OTHER;
  char allow[128];
  int row = route_find(&r, allow, sizeof allow);
  if (row >= (int)N_ROUTES || row < -1) abort();
  if (strlen(allow) >= sizeof allow) abort();
  if (row >= 0) {
    if (!method_matches(routes[row].method, r.method)) abort();
    if (r.route != routes[row].route) abort();
    if (strstr(routes[row].pattern, "{id}")) check_id(r.id);
    char id[32];
    if (!path_match(routes[row].pattern, path, id)) abort();
  }
  if (path[0] != '/' && (row >= 0 || allow[0])) abort();
}

static void fuzz_values(const char *s) {
  (void)request_id_ok(s);
  (void)content_type_is_json(s);
  static const long long maxima[] = {MAX_WAIT_MS, 1000, 1 << 20,
                                     1LL << 58};
  for (size_t i = 0; i < sizeof maxima / sizeof maxima[0]; i++) {
    long long v = -1;
    if (parse_count(s, maxima[i], &v) == AE_OK &&
        (v < 0 || v > maxima[i] + 1))
      abort();
  }
  long long seq;
  if (token_decode(s, &seq) == AE_OK) {
    /* Whatever decodes must re-encode to a token that decodes the same. */
    char tok[64];
    long long again = -1;
    token_encode(seq, tok, sizeof tok);
    if (token_decode(tok, &again) != AE_OK || again != seq) abort();
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
