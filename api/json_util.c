/* json_util.c: parsing request bodies and serialising every JSON output.
 *
 * ae_json_parse_body turns raw bytes into a jansson value, rejecting
 * duplicate keys, and reports malformed input as a 400 invalid_json problem
 * with line and column.  ae_json_dumps is the one serialiser (compact,
 * insertion order, 17 significant digits).  Pure functions; any thread. */
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

char *ae_json_dumps(const json_t *j) {
  if (!j) return NULL;
  return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER |
                           JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY);
}
