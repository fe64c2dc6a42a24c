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
/* Closes the timers (the loop then ends). */
void ae_fleet_close(ae_server *srv);
void ae_fleet_free(ae_server *srv);

#endif
