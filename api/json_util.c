/* json_util.c: parsing request bodies and serialising every JSON output.
 *
 * ae_json_parse_body turns raw bytes into a jansson value, rejecting
 * duplicate keys, and reports malformed input as a 400 invalid_json problem
 * with line and column.  A non-finite literal (NaN, Infinity, -Infinity, as
 * Python's json.dumps writes them) is also named by the JSON pointer of the
 * field it stands in: the token jansson stopped at is replaced, in a copy,
 * by a marker string, the copy is parsed again and the marker's path is the
 * pointer.  ae_json_dumps is the one serialiser (compact, insertion order,
 * each real in the shortest form that reads back as the same double).
 * Pure functions; any thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"

#define PARSE_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)
/* At most this many non-finite literals are located in one body. */
#define MAX_NON_FINITE 8

/* The marker string that stands in for the k-th non-finite literal; the
 * control characters keep it from meeting a real value. */
static int marker_text(char *out, size_t size, int k, int quoted) {
  return snprintf(out, size,
                  quoted ? "\"\\u0001ae-non-finite-%d\\u0001\""
                         : "\001ae-non-finite-%d\001",
                  k);
}

static int is_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Finds a non-finite literal that ends at or just before offset pos of
 * text[0, len): its start and length, and its spelling in *word.  Returns
 * 1 when there is one. */
static int non_finite_at(const char *text, size_t len, size_t pos,
                         size_t *start, size_t *length, char *word,
                         size_t word_size) {
  if (pos > len) pos = len;
  size_t k = pos;
  while (k > 0 && is_letter(text[k - 1]))
    k--;
  if (k > 0 && (text[k - 1] == '-' || text[k - 1] == '+')) k--;
  size_t end = k;
  if (end < len && (text[end] == '-' || text[end] == '+')) end++;
  size_t letters = end;
  while (end < len && is_letter(text[end]))
    end++;
  size_t n = end - letters;
  if (n == 0 || n >= 16 || end - k >= word_size) return 0;
  char lower[16];
  for (size_t i = 0; i < n; i++)
    lower[i] = (char)(text[letters + i] | 0x20);
  lower[n] = '\0';
  if (strcmp(lower, "nan") != 0 && strcmp(lower, "inf") != 0 &&
      strcmp(lower, "infinity") != 0)
    return 0;
  memcpy(word, text + k, end - k);
  word[end - k] = '\0';
  *start = k;
  *length = end - k;
  return 1;
}

/* Writes into out the pointer of the string value equal to marker inside
 * j (pointer is j's own).  Returns 1 when found. */
static int find_marker(const json_t *j, const char *marker, const char *pointer,
                       char *out, size_t size) {
  char child[AE_PTR_MAX];
  if (json_is_string(j)) {
    if (strcmp(json_string_value(j), marker) != 0) return 0;
    snprintf(out, size, "%s", pointer);
    return 1;
  }
  if (json_is_array(j)) {
    size_t i;
    const json_t *v;
    json_array_foreach(j, i, v) {
      ae_ptr_index(child, sizeof child, pointer, i);
      if (find_marker(v, marker, child, out, size)) return 1;
    }
  } else if (json_is_object(j)) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)j, key, v) {
      ae_ptr_key(child, sizeof child, pointer, key);
      if (find_marker(v, marker, child, out, size)) return 1;
    }
  }
  return 0;
}

/* The syntax error err of text[0, len) is a non-finite literal: adds one
 * field error per such literal (up to MAX_NON_FINITE) to p, naming its
 * field, and copies the first one's spelling to first_word.  Returns the
 * number added; 0 when the error is something else, when memory runs out
 * or when the rest of the text has other errors. */
static int locate_non_finite(const char *text, size_t len,
                             const json_error_t *err, ae_problem *p,
                             char first_word[16]) {
  size_t start, length;
  char word[16];
  if (err->position < 0 || !non_finite_at(text, len, (size_t)err->position,
                                          &start, &length, word, sizeof word))
    return 0;
  char words[MAX_NON_FINITE][16];
  int found = 0;
  char *copy = malloc(len + 1);
  if (!copy) return 0;
  memcpy(copy, text, len);
  size_t copy_len = len;
  json_t *parsed = NULL;
  for (;;) {
    char marker[48];
    int m = marker_text(marker, sizeof marker, found, 1);
    char *grown = realloc(copy, copy_len - length + (size_t)m + 1);
    if (!grown) break;
    copy = grown;
    memmove(copy + start + (size_t)m, copy + start + length,
            copy_len - start - length);
    memcpy(copy + start, marker, (size_t)m);
    copy_len = copy_len - length + (size_t)m;
    snprintf(words[found], sizeof words[found], "%s", word);
    found++;
    json_error_t again;
    parsed = json_loadb(copy, copy_len, PARSE_FLAGS, &again);
    if (parsed || found == MAX_NON_FINITE || again.position < 0 ||
        !non_finite_at(copy, copy_len, (size_t)again.position, &start, &length,
                       word, sizeof word))
      break;
  }
  free(copy);
  if (!parsed) return 0;
  int added = 0;
  for (int k = 0; k < found; k++) {
    char marker[48], pointer[AE_PTR_MAX];
    marker_text(marker, sizeof marker, k, 0);
    if (!find_marker(parsed, marker, "", pointer, sizeof pointer)) continue;
    ae_problem_add(p, pointer,
                   "%s is not JSON: JSON has no NaN or Infinity; send a "
                   "finite number (or null where the field allows it)",
                   words[k]);
    if (!added) memcpy(first_word, words[k], 16);
    added++;
  }
  json_decref(parsed);
  return added;
}

int ae_json_parse_body(const char *buf, size_t len, json_t **out,
                       ae_problem *p) {
  *out = NULL;
  json_error_t err;
  memset(&err, 0, sizeof err);
  if (!buf) {
    buf = "";
    len = 0;
  }
  json_t *j = json_loadb(buf, len, PARSE_FLAGS, &err);
  if (!j) {
    int line = err.line < 0 ? 0 : err.line;
    int column = err.column < 0 ? 0 : err.column;
    ae_problem_set(p, 400, "invalid_json", NULL, "line %d, column %d: %s", line,
                   column, err.text);
    char word[16];
    size_t first = p->n_errors;
    if (locate_non_finite(buf, len, &err, p, word) > 0)
      ae_problem_set(p, 400, "invalid_json", NULL,
                     "line %d, column %d: %s at %s is not JSON (JSON has no "
                     "NaN or Infinity); send a finite number, or null where "
                     "the field allows it",
                     line, column, word,
                     p->errors[first].pointer[0] ? p->errors[first].pointer
                                                 : "the root");
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
    if (*src == '+')
      src++;
    else if (*src == '-')
      *dst++ = *src++;
    while (*src == '0' && src[1])
      src++;
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
      if (c == '\\' && text[r])
        text[w++] = text[r++];
      else if (c == '"')
        in_string = 0;
      continue;
    }
    if (c == '"') {
      in_string = 1;
      text[w++] = text[r++];
      continue;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = r;
      while (text[r] && strchr("+-0123456789.eE", text[r]))
        r++;
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
  /* The 17-digit text was up to twice as long: keep what is used (a
   * request's megabytes of inputs are held as this text). */
  if (w < r) {
    char *fit = realloc(text, w + 1);
    if (fit) text = fit;
  }
  return text;
}

char *ae_json_dumps(const json_t *j) {
  return ae_json_dumps_flags(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}
