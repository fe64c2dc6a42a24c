/* drain.h: the graceful stop of archevald: on the first SIGTERM/SIGINT no
 * new job is accepted, queued jobs are cancelled (or kept in the store for
 * the next start), running ones get --drain-timeout-secs, then the owner's
 * on_drained callback stops the process.
 *
 * Thread: the loop thread. */
#ifndef AE_SERVER_DRAIN_H
#define AE_SERVER_DRAIN_H

#include "server/daemon.h"

/* Sets up the drain's timer and its terminal-job listener; srv->on_drained
 * must be set. */
int ae_drain_init(ae_server *srv);
/* Starts the drain (the first signal); a second call does nothing. */
void ae_drain_start(ae_server *srv);
/* Closes the drain's timer. */
void ae_drain_close(ae_server *srv);

#endif
