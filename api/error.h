/* error.h: an error as a value: a status code, the field it concerns and a
 * reason.  This is what the engine (gpu/) reports; it knows nothing of HTTP.
 *
 * The one mapping from a code to an HTTP problem+json is
 * ae_problem_from_error (api/error.c), used by the daemon and the offline
 * CLI alike.  An ae_error is owned by whoever declared it (a worker thread
 * for a job's error); it is not shared between threads. */
#ifndef AE_ERROR_H
#define AE_ERROR_H

#include "api/problem.h"
#include "api/status.h"

typedef struct {
  int code;      /* AE_E* of status.h; AE_OK when nothing went wrong */
  char *pointer; /* JSON pointer of the offending request field, or NULL */
  char *reason;  /* one sentence for the client, or NULL */
} ae_error;

#define AE_ERROR_INIT                                                          \
  { AE_OK, NULL, NULL }

/* Records code, an optional pointer (copied) and a printf-style reason,
 * replacing what was there.  Returns code, so that a failing function can
 * end with `return ae_error_set(err, AE_EINVAL, "/data", "...")`.  err may
 * be NULL (the code is still returned).  An allocation failure while
 * recording keeps the code and drops the text. */
int ae_error_set(ae_error *err, int code, const char *pointer, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

/* The code, after filling a generic reason if none was recorded. */
int ae_error_code(const ae_error *err);

/* Frees the strings and resets to AE_ERROR_INIT. */
void ae_error_clear(ae_error *err);

/* The one place that turns an error code into an HTTP problem: status,
 * problem code and title, the reason as detail (AE_EINTERNAL and unknown
 * codes get a generic detail: the reason is for the log, not the client),
 * and the pointer as a field error.  Clears p first.
 *   AE_EINVAL        422 invalid_request
 *   AE_ENOMEM        507 out_of_memory
 *   AE_ECANCELLED    409 cancelled
 *   AE_EDEADLINE     504 deadline_exceeded
 *   AE_EDEVICE       503 device_error
 *   AE_EUNSUPPORTED  422 unsupported
 *   AE_ENOTFOUND     404 not_found
 *   AE_EIO           500 internal
 *   AE_EINTERNAL     500 internal */
void ae_problem_from_error(const ae_error *err, ae_problem *p);

#endif
