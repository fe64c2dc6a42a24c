/* job_render.h: the job resource of api.md, as JSON, made of three shared
 * texts (head, request, tail) that listings stream by reference.
 *
 * Thread: the loop thread. */
#ifndef AE_SERVER_JOB_RENDER_H
#define AE_SERVER_JOB_RENDER_H

#include <jansson.h>
#include <stddef.h>

#include "server/daemon.h"

#define AE_JOB_PARTS 3

/* A job's JSON as the concatenation of part[0..2], each a reference the
 * holder releases; valid after the job itself is gone. */
typedef struct {
  ae_text *part[AE_JOB_PARTS];
} ae_job_parts;

/* The job's current rendering; AE_OK or AE_ENOMEM (out cleared). */
int ae_job_parts_get(ae_server *srv, ae_job *job, ae_job_parts *out);
void ae_job_parts_release(ae_job_parts *parts);

/* The job resource, new reference (NULL when out of memory).  Parses the
 * rendering: for small answers (a batch's 202) only. */
json_t *ae_job_to_json(ae_server *srv, ae_job *job);
/* The job's rendered JSON as one malloc'd string, or NULL. */
char *ae_job_render(ae_server *srv, ae_job *job, size_t *len);

#endif
