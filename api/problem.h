/* problem.h: RFC 9457 problem details, the one error shape of archeval.
 *
 * An ae_problem is filled by validators (with one entry per offending field,
 * each named by its JSON pointer) and by the engine, then rendered once, by
 * ae_problem_to_json, into the body of a 4xx/5xx answer, a failed job's
 * "error", or the CLI's stderr.  A problem is owned by whoever declared it;
 * it is not shared between threads. */
#ifndef AE_PROBLEM_H
#define AE_PROBLEM_H

#include <jansson.h>
#include <stddef.h>

typedef struct {
  char *pointer; /* JSON pointer into the request, "" for the whole body */
  char *detail;  /* one sentence */
} ae_field_error;

typedef struct {
  int status;       /* HTTP status: 400, 404, 413, 422, 500, ... */
  const char *code; /* static: "invalid_request", "invalid_json", ... */
  char *title;      /* short, stable for a code */
  char *detail;     /* this occurrence */
  ae_field_error *errors;
  size_t n_errors, cap_errors;
} ae_problem;

#define AE_PROBLEM_INIT                                                        \
  { 0, NULL, NULL, NULL, NULL, 0, 0 }

/* Sets status, code, title and a printf-style detail (replacing earlier). */
void ae_problem_set(ae_problem *p, int status, const char *code,
                    const char *title, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Appends one field error; the pointer is copied.  If the problem has no
 * status yet it becomes 422 invalid_request. */
void ae_problem_add(ae_problem *p, const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes every field error's pointer with prefix (e.g. "/jobs/3"), for
 * batch requests. */
void ae_problem_prefix(ae_problem *p, const char *prefix);

/* New reference: {"type","title","status","detail","instance","code",
 * "errors":[{"pointer","detail"}]}.  instance may be NULL. */
json_t *ae_problem_to_json(const ae_problem *p, const char *instance);

/* Frees what the problem owns and resets it to AE_PROBLEM_INIT. */
void ae_problem_clear(ae_problem *p);

#endif
