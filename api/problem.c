/* problem.c: RFC 9457 problem details (see problem.h).
 *
 * A problem collects one status, a code, a title and any number of field
 * errors named by JSON pointer, and renders them once as JSON.  It belongs
 * to the thread that declared it; nothing here is shared.  Allocation
 * failures while recording an error are not fatal: the problem keeps what
 * it could store, and a missing detail becomes a generic one. */
#include "api/problem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AE_PROBLEM_TYPE_BASE "https://archeval.dev/problems/"

/* A stable title for each known code; NULL for an unknown one. */
static const char *title_for_code(const char *code) {
  static const struct {
    const char *code, *title;
  } titles[] = {
      {"invalid_json", "Malformed JSON body"},
      {"body_too_large", "Request body too large"},
      {"unsupported_media_type", "Unsupported media type"},
      {"invalid_request", "Invalid request"},
      {"idempotency_key_mismatch", "Idempotency key reused with another body"},
      {"not_found", "Not found"},
      {"method_not_allowed", "Method not allowed"},
      {"job_terminal", "Job already finished"},
      {"job_not_terminal", "Job not finished"},
      {"queue_full", "Queue full"},
      {"draining", "Server draining"},
      {"not_ready", "Server not ready"},
      {"internal", "Internal server error"},
      {"deadline_exceeded", "Deadline exceeded"},
      {"cancelled", "Cancelled"},
      {"out_of_memory", "Out of memory"},
      {"device_error", "Device error"},
      {"unsupported", "Not supported"},
  };
  if (!code) return NULL;
  for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
    if (strcmp(titles[i].code, code) == 0) return titles[i].title;
  return NULL;
}

/* vasprintf that returns NULL on failure. */
static char *format_va(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return NULL;
  char *s = malloc((size_t)n + 1);
  if (!s) return NULL;
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

void ae_problem_set(ae_problem *p, int status, const char *code,
                    const char *title, const char *fmt, ...) {
  p->status = status;
  p->code = code;
  free(p->title);
  p->title = NULL;
  const char *t = title ? title : title_for_code(code);
  if (t) p->title = strdup(t);
  free(p->detail);
  p->detail = NULL;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    p->detail = format_va(fmt, ap);
    va_end(ap);
  }
}

void ae_problem_add(ae_problem *p, const char *pointer, const char *fmt, ...) {
  if (p->status == 0) {
    p->status = 422;
    p->code = "invalid_request";
    free(p->title);
    p->title = strdup(title_for_code("invalid_request"));
  }
  if (!p->detail && p->code && strcmp(p->code, "invalid_request") == 0)
    p->detail = strdup("The request has invalid fields; see errors.");
  if (p->n_errors == p->cap_errors) {
    size_t cap = p->cap_errors ? p->cap_errors * 2 : 4;
    ae_field_error *e = realloc(p->errors, cap * sizeof *e);
    if (!e) return;
    p->errors = e;
    p->cap_errors = cap;
  }
  ae_field_error *fe = &p->errors[p->n_errors];
  fe->pointer = strdup(pointer ? pointer : "");
  va_list ap;
  va_start(ap, fmt);
  fe->detail = format_va(fmt, ap);
  va_end(ap);
  if (!fe->pointer || !fe->detail) {
    free(fe->pointer);
    free(fe->detail);
    return;
  }
  p->n_errors++;
}

void ae_problem_prefix(ae_problem *p, const char *prefix) {
  size_t lp = strlen(prefix);
  for (size_t i = 0; i < p->n_errors; i++) {
    size_t lo = strlen(p->errors[i].pointer);
    char *s = malloc(lp + lo + 1);
    if (!s) continue;
    memcpy(s, prefix, lp);
    memcpy(s + lp, p->errors[i].pointer, lo + 1);
    free(p->errors[i].pointer);
    p->errors[i].pointer = s;
  }
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static size_t utf8_sequence(const unsigned char *s) {
  if (s[0] < 0x80) return 1;
  size_t n;
  unsigned cp;
  if ((s[0] & 0xe0) == 0xc0) {
    n = 2;
    cp = s[0] & 0x1f;
  } else if ((s[0] & 0xf0) == 0xe0) {
    n = 3;
    cp = s[0] & 0x0f;
  } else if ((s[0] & 0xf8) == 0xf0) {
    n = 4;
    cp = s[0] & 0x07;
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

/* A JSON string of s with every byte that is not valid UTF-8 replaced by
 * '?' (details may quote raw input or cut a character short). */
static json_t *safe_string(const char *s) {
  size_t len = strlen(s);
  char *copy = malloc(len + 1);
  if (!copy) return NULL;
  size_t i = 0;
  while (i < len) {
    size_t n = utf8_sequence((const unsigned char *)s + i);
    if (n == 0 || n > len - i) {
      copy[i++] = '?';
    } else {
      memcpy(copy + i, s + i, n);
      i += n;
    }
  }
  copy[len] = '\0';
  json_t *j = json_string(copy);
  free(copy);
  return j;
}

json_t *ae_problem_to_json(const ae_problem *p, const char *instance) {
  const char *code = p->code ? p->code : "internal";
  int status = p->status ? p->status : 500;
  const char *title = p->title ? p->title : title_for_code(code);
  char type[256];
  snprintf(type, sizeof type, "%s%s", AE_PROBLEM_TYPE_BASE, code);
  json_t *o = json_object();
  json_t *errs = json_array();
  if (!o || !errs) {
    json_decref(o);
    json_decref(errs);
    return NULL;
  }
  int bad = 0;
  bad |= json_object_set_new(o, "type", json_string(type));
  bad |= json_object_set_new(o, "title", safe_string(title ? title : code));
  bad |= json_object_set_new(o, "status", json_integer(status));
  bad |= json_object_set_new(
      o, "detail", safe_string(p->detail ? p->detail : (title ? title : code)));
  bad |= json_object_set_new(o, "instance",
                             instance ? safe_string(instance) : json_null());
  bad |= json_object_set_new(o, "code", json_string(code));
  for (size_t i = 0; i < p->n_errors; i++) {
    json_t *e =
        json_pack("{s:o, s:o}", "pointer", safe_string(p->errors[i].pointer),
                  "detail", safe_string(p->errors[i].detail));
    if (!e || json_array_append_new(errs, e) != 0) bad = 1;
  }
  bad |= json_object_set_new(o, "errors", errs);
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

void ae_problem_clear(ae_problem *p) {
  for (size_t i = 0; i < p->n_errors; i++) {
    free(p->errors[i].pointer);
    free(p->errors[i].detail);
  }
  free(p->errors);
  free(p->title);
  free(p->detail);
  ae_problem empty = AE_PROBLEM_INIT;
  *p = empty;
}
