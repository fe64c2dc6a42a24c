/* outcome.h: the one place that turns how a job ended (a status code from
 * the engine or the daemon) into its terminal state, the reason the metrics
 * count and the problem+json a client reads.
 *
 * Pure: no state, no I/O; any thread. */
#ifndef AE_SERVER_OUTCOME_H
#define AE_SERVER_OUTCOME_H

#include <jansson.h>

#include "api/problem.h"
#include "server/store.h"

typedef struct {
  ae_job_state state;
  const char *reason; /* static: "cancelled", "deadline_exceeded", ... */
  json_t *error;      /* new reference, or NULL (cancelled) */
} ae_job_outcome;

/* How a job that did not succeed ends.  rc is the engine's (or the
 * daemon's) status code; AE_OK means the engine succeeded but its result
 * could not be rendered.  p is the engine's problem, if any (read, not
 * cleared).  by_drain: a cancel the drain asked for, not the client.
 * timeout_ms: the job's, for the deadline's detail. */
ae_job_outcome ae_job_outcome_of(int rc, const ae_problem *p,
                                 const char *job_id, long long timeout_ms,
                                 int by_drain);

#endif
