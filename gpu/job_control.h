/* job_control.h: what a running job checks at its checkpoints.
 *
 * The engine and every executor below it (host, CUDA) stop a job between
 * steps when it is cancelled or past its deadline.  This small header is
 * all they include for that, so executors never depend on engine.h.  An
 * ae_job_control is owned by the worker thread running the job; the cancel
 * flag is written by other threads, hence atomic. */
#ifndef AE_JOB_CONTROL_H
#define AE_JOB_CONTROL_H

#include <stdatomic.h>

typedef struct {
  const atomic_int *cancel; /* non-zero: stop with AE_ECANCELLED; may be NULL */
  long long deadline_ns;    /* CLOCK_MONOTONIC ns; 0 = none */
} ae_job_control;

/* 0, AE_ECANCELLED or AE_EDEADLINE: what a checkpoint does. */
int ae_job_checkpoint(const ae_job_control *ctl);

#endif
