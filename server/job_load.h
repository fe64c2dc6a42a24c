/* job_load.h: the jobs of the store, loaded back at start.
 *
 * Thread: the main thread, before the loop runs. */
#ifndef AE_SERVER_JOB_LOAD_H
#define AE_SERVER_JOB_LOAD_H

#include "server/daemon.h"

/* Loads every stored job: finished ones are kept until they expire, those
 * that were queued or running are queued again.  0 or an error. */
int ae_jobs_load(ae_server *srv);

#endif
