/* fleet.h: archevald as one replica of a fleet on a shared PostgreSQL
 * store (--fleet, issue 15): jobs accepted by any replica wait in the
 * store's queue; a replica with an idle worker claims the next one under a
 * lease, which its heartbeat renews while it runs the job (reading the
 * job's cancel flag, set by a cancel on any replica); any replica re-queues
 * the jobs whose lease expired (their replica died), or fails those whose
 * replica died --max-attempts times.
 *
 * Thread: the loop thread. */
#ifndef AE_SERVER_FLEET_H
#define AE_SERVER_FLEET_H

#include <stddef.h>

#include "server/daemon.h"

/* Fills srv->replica_id (--replica-id, or host-pid-random) and sets
 * srv->fleet when --fleet was given.  Before the store opens. */
int ae_fleet_configure(ae_server *srv);
/* The timers (claim, heartbeat and leases) and the listeners; after the
 * store opened.  0 or an error. */
int ae_fleet_start(ae_server *srv);
/* --max-queue: 1 when n more queued jobs fit under the bound, and they
 * are counted, else 0; *queued is the count the bound was checked
 * against.  Alone: this daemon's queue.  --fleet: the jobs queued in the
 * shared store (every replica's), read at most every 100 ms, plus the
 * jobs this replica let in since that read; approximate across replicas
 * (each one sees the others' jobs of the last 100 ms only at its next
 * read).  A refusal is checked against a fresh read when this replica let
 * jobs in since the last one, which may have left the queue since. */
int ae_fleet_queue_room(ae_server *srv, size_t n, size_t *queued);
/* Closes the timers (the loop then ends). */
void ae_fleet_close(ae_server *srv);
void ae_fleet_free(ae_server *srv);

#endif
