/* job_control.c: the checkpoint a running job passes between steps (see
 * job_control.h).  Reads the job's cancel flag (atomic, written by other
 * threads) and the monotonic clock; no state of its own. */
#include "gpu/job_control.h"

#include <time.h>

#include "api/status.h"

int ae_job_checkpoint(const ae_job_control *ctl) {
  if (!ctl) return AE_OK;
  if (ctl->cancel && atomic_load(ctl->cancel)) return AE_ECANCELLED;
  if (ctl->deadline_ns > 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if (now >= ctl->deadline_ns) return AE_EDEADLINE;
  }
  return AE_OK;
}
