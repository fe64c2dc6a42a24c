/* http.h: archevald's HTTP layer: libmicrohttpd on the libuv loop, one
 * handler per route of route.c, long polls.
 *
 * Thread: the loop thread. */
#ifndef AE_SERVER_HTTP_H
#define AE_SERVER_HTTP_H

#include "server/daemon.h"

/* Listens, and registers the long polls' listener for terminal jobs. */
int ae_http_start(ae_server *srv);
/* Answers every long poll, stops MHD and closes the layer's handles. */
void ae_http_stop(ae_server *srv);

#endif
