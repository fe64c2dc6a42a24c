/* http.h: archevald's HTTP layer: libmicrohttpd on the libuv loop, one
 * handler per route of route.c, long polls.
 *
 * Thread: the loop thread. */
#ifndef AE_SERVER_HTTP_H
#define AE_SERVER_HTTP_H

#include "server/daemon.h"

/* Listens, and registers the long polls' listener for terminal jobs. */
int ae_http_start(ae_server *srv);
/* Answers every long poll and runs MHD until no request is in flight (at
 * most 2 s): before the stop, or before a forced exit. */
void ae_http_flush(ae_server *srv);
/* Answers every long poll, stops MHD and closes the layer's handles. */
/* How many request bodies were parsed on the thread pool so far. */
long long ae_http_bodies_parsed(const ae_server *srv);
void ae_http_stop(ae_server *srv);

#endif
