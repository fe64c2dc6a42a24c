/* error.c: errors as values (see error.h) and the one mapping from error
 * codes to HTTP problems.  Nothing here is shared between threads. */
#include "api/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ae_error_set(ae_error *err, int code, const char *pointer, const char *fmt,
                 ...) {
  if (!err) return code;
  ae_error_clear(err);
  err->code = code;
  if (pointer) err->pointer = strdup(pointer);
  if (fmt) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n >= 0 && (err->reason = malloc((size_t)n + 1)))
      vsnprintf(err->reason, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  return code;
}

int ae_error_code(const ae_error *err) {
  return err ? err->code : AE_OK;
}

void ae_error_clear(ae_error *err) {
  if (!err) return;
  free(err->pointer);
  free(err->reason);
  err->code = AE_OK;
  err->pointer = NULL;
  err->reason = NULL;
}

void ae_problem_from_error(const ae_error *err, ae_problem *p) {
  static const struct {
    int code, status;
    const char *problem, *generic;
  } map[] = {
      {AE_EINVAL, 422, "invalid_request",
       "The engine cannot run this request."},
      {AE_ENOMEM, 507, "out_of_memory",
       "The job needs more memory than this worker has."},
      {AE_ECANCELLED, 409, "cancelled", "The job was cancelled."},
      {AE_EDEADLINE, 504, "deadline_exceeded",
       "The job ran past its deadline."},
      {AE_EDEVICE, 503, "device_error",
       "The worker's device failed; resubmit the job."},
      {AE_EUNSUPPORTED, 422, "unsupported",
       "This request is not supported by this build."},
      {AE_ENOTFOUND, 404, "not_found", "Not found."},
  };
  ae_problem_clear(p);
  int code = err ? err->code : AE_EINTERNAL;
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (map[i].code != code) continue;
    const char *detail = err->reason ? err->reason : map[i].generic;
    ae_problem_set(p, map[i].status, map[i].problem, NULL, "%s", detail);
    if (err->pointer) ae_problem_add(p, err->pointer, "%s", detail);
    return;
  }
  ae_problem_set(p, 500, "internal", NULL,
                 "The evaluation failed; the server logged why.");
}
