/* job_render.h: the job resource of api.md, as JSON.
 *
 * Thread: the loop thread. */
#ifndef AE_SERVER_JOB_RENDER_H
#define AE_SERVER_JOB_RENDER_H

#include <jansson.h>
#include <stddef.h>

#include "server/daemon.h"

/* The job resource, new reference (NULL when out of memory). */
json_t *ae_job_to_json(ae_server *srv, ae_job *job);
/* The job's rendered JSON, cached once terminal; a malloc'd copy or NULL. */
char *ae_job_render(ae_server *srv, ae_job *job, size_t *len);

#endif
