/* outcome.c: how a job that did not succeed ends: the mapping from a
 * status code to a terminal state, a metrics reason and a problem+json.
 * Every failed or cancelled job's problem is made here (a worker's result,
 * a queued job past its deadline, a stored request that no longer
 * validates).
 *
 * MERGE: engine ae_error.  Once the engine reports an ae_error, the
 * problem below comes from ae_problem_from_error (api/error.c), the one
 * code-to-problem mapping; only the state and reason stay here.
 *
 * Pure: no state; any thread. */
#include "config.h"

#include <stdio.h>

#include "api/status.h"
#include "server/outcome.h"

static json_t *fixed_problem(const char *job_id, int status, const char *code,
                             const char *title, const char *detail) {
  ae_problem p = AE_PROBLEM_INIT;
  ae_problem_set(&p, status, code, title, "%s", detail);
  char instance[64];
  snprintf(instance, sizeof instance, "/v1/jobs/%s", job_id);
  json_t *j = ae_problem_to_json(&p, instance);
  ae_problem_clear(&p);
  return j;
}

/* MERGE: engine ae_error */
ae_job_outcome ae_job_outcome_of(int rc, const ae_problem *p,
                                 const char *job_id, long long timeout_ms,
                                 int by_drain) {
  ae_job_outcome o = {AE_JOB_FAILED, "internal", NULL};
  char detail[128];
  switch (rc) {
  case AE_ECANCELLED:
    o.state = AE_JOB_CANCELLED;
    o.reason = by_drain ? "draining" : "cancelled";
    break;
  case AE_EDEADLINE:
    o.reason = "deadline_exceeded";
    snprintf(detail, sizeof detail, "The job's timeout_ms of %lld ran out.",
             timeout_ms);
    o.error = fixed_problem(job_id, 504, "deadline_exceeded",
                            "Deadline exceeded", detail);
    break;
  case AE_EINVAL:
  case AE_ENOMEM:
    o.reason = "engine_error";
    if (p && p->status) {
      char instance[64];
      snprintf(instance, sizeof instance, "/v1/jobs/%s", job_id);
      o.error = ae_problem_to_json(p, instance);
    } else {
      o.error =
          fixed_problem(job_id, 422, "invalid_request", NULL, ae_strerror(rc));
    }
    break;
  case AE_EDEVICE:
    o.reason = "device_error";
    o.error = fixed_problem(job_id, 503, "device_error", "Device error",
                            "The worker's device failed; resubmit the job.");
    break;
  case AE_OK:
    o.error = fixed_problem(job_id, 500, "internal", "Internal error",
                            "The result could not be rendered.");
    break;
  default:
    o.error = fixed_problem(job_id, 500, "internal", "Internal error",
                            "The evaluation failed; the server logged why.");
    break;
  }
  return o;
}
