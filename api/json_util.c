/* json_util.c: parsing request bodies and serialising every JSON output.
 *
 * ae_json_parse_body turns raw bytes into a jansson value, rejecting
 * duplicate keys, and reports malformed input as a 400 invalid_json problem
 * with line and column.  ae_json_dumps is the one serialiser (compact,
 * insertion order, each real in the shortest form that reads back as the
 * same double).  Pure functions; any thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"

int ae_json_parse_body(const char *buf, size_t len, json_t **out,
                       ae_problem *p) {
  *out = NULL;
  json_error_t err;
  memset(&err, 0, sizeof err);
  json_t *j = json_loadb(buf ? buf : "", buf ? len : 0,
                         JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
  if (!j) {
    ae_problem_set(p, 400, "invalid_json", NULL, "line %d, column %d: %s",
                   err.line < 0 ? 0 : err.line, err.column < 0 ? 0 : err.column,
                   err.text);
    return AE_EINVAL;
  }
  *out = j;
  return AE_OK;
}

/* Copies the number token [s, s + len) to out, rewritten as the shortest
 * decimal (15, 16 or 17 significant digits) that strtod reads back as the
 * same double; integers (no '.', 'e' or 'E') are copied as they are.
 * Returns the bytes written (at most 32). */
static size_t shortest_real(const char *s, size_t len, char *out) {
  char tok[64];
  int is_real = 0;
  if (len >= sizeof tok) len = sizeof tok - 1;
  memcpy(tok, s, len);
  tok[len] = 0;
  for (size_t i = 0; i < len; i++)
    if (tok[i] == '.' || tok[i] == 'e' || tok[i] == 'E') is_real = 1;
  if (!is_real) {
    memcpy(out, tok, len);
    return len;
  }
  double v = strtod(tok, NULL);
  char buf[40];
  for (int digits = 15; digits <= 17; digits++) {
    snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (strtod(buf, NULL) == v) break;
  }
  /* Exponents as jansson writes them ("e-6", "e21": no '+', no leading
   * zeros), so the text is never longer than jansson's own. */
  char *e = strchr(buf, 'e');
  if (e) {
    char *src = e + 1, *dst = e + 1;
    if (*src == '+') src++;
    else if (*src == '-') *dst++ = *src++;
    while (*src == '0' && src[1]) src++;
    memmove(dst, src, strlen(src) + 1);
  }
  /* Keep it a JSON real: "1" -> "1.0" (jansson reads it back as real). */
  if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
  size_t n = strlen(buf);
  memcpy(out, buf, n);
  return n;
}

char *ae_json_dumps_flags(const json_t *j, size_t flags) {
  if (!j) return NULL;
  char *text = json_dumps(j, flags | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY);
  if (!text) return NULL;
  /* Rewrite every number outside strings; a shortened real is never
   * longer than jansson's 17-digit one, so this works in place. */
  size_t r = 0, w = 0;
  int in_string = 0;
  while (text[r]) {
    char c = text[r];
    if (in_string) {
      text[w++] = text[r++];
      if (c == '\\' && text[r]) text[w++] = text[r++];
      else if (c == '"') in_string = 0;
      continue;
    }
    if (c == '"') {
      in_string = 1;
      text[w++] = text[r++];
      continue;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = r;
      while (text[r] && strchr("+-0123456789.eE", text[r])) r++;
      char out[40];
      size_t n = shortest_real(text + start, r - start, out);
      if (n > r - start) n = r - start; /* cannot happen; stay in bounds */
      memcpy(text + w, out, n);
      w += n;
      continue;
    }
    text[w++] = text[r++];
  }
  text[w] = 0;
  return text;
}

char *ae_json_dumps(const json_t *j) {
  return ae_json_dumps_flags(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}
