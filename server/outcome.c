/* outcome.c: how a job that did not succeed ends: the mapping from a
 * status code to a terminal state, a metrics reason and a problem+json.
 * Every failed or cancelled job's problem is made here (a worker's result,
 * a queued job past its deadline, a stored request that no longer
 * validates).
 *
 * The problem itself always comes from ae_problem_from_error (api/error.c),
 * the one code-to-problem mapping (a worker's problem was made by it from
 * the engine's ae_error); only the state and reason are decided here.
 *
 * Pure: no state; any thread. */
#include "config.h"

#include <stdio.h>

#include "api/error.h"
#include "api/status.h"
#include "server/outcome.h"

/* The job's problem+json: the worker's problem when it has one (mapped
 * from the engine's ae_error), else the one mapping of api/error.c applied
 * to rc with this detail. */
static json_t *job_problem(const char *job_id, int rc, const ae_problem *p,
                           const char *detail) {
  char instance[64];
  snprintf(instance, sizeof instance, "/v1/jobs/%s", job_id);
  if (p && p->status) return ae_problem_to_json(p, instance);
  ae_error err = AE_ERROR_INIT;
  if (detail)
    ae_error_set(&err, rc, NULL, "%s", detail);
  else
    err.code = rc;
  ae_problem mapped = AE_PROBLEM_INIT;
  ae_problem_from_error(&err, &mapped);
  json_t *j = ae_problem_to_json(&mapped, instance);
  ae_problem_clear(&mapped);
  ae_error_clear(&err);
  return j;
}

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
    o.error = job_problem(job_id, rc, NULL, detail);
    break;
  case AE_EINVAL:
  case AE_ENOMEM:
  case AE_EUNSUPPORTED:
    o.reason = "engine_error";
    o.error = job_problem(job_id, rc, p, ae_strerror(rc));
    break;
  case AE_EDEVICE:
    o.reason = "device_error";
    o.error = job_problem(job_id, rc, NULL,
                          "The worker's device failed; resubmit the job.");
    break;
  case AE_OK: /* the result could not be rendered */
    o.error = job_problem(job_id, AE_EINTERNAL, NULL, NULL);
    break;
  default:
    o.error = job_problem(job_id, AE_EINTERNAL, NULL, NULL);
    break;
  }
  return o;
}
