/* job_load.h: the jobs of the store, loaded back at start.
 *
 * Thread: the main thread, before the loop runs. */
#ifndef AE_SERVER_JOB_LOAD_H
#define AE_SERVER_JOB_LOAD_H

#include "server/daemon.h"

/* Loads every stored job: finished ones are kept until they expire, those
 * that were queued or running are queued again.  0 or an error. */
int ae_jobs_load(ae_server *srv);

/* --fleet: a job this replica claimed from the store's shared queue (row,
 * now running in the store, owned here) is queued here to run, in place
 * of the copy this replica kept of it when it accepted it.  0, AE_EINVAL
 * (held here already), AE_ENOMEM.  Thread: the loop. */
int ae_jobs_adopt(ae_server *srv, const ae_store_job *row);

#endif
