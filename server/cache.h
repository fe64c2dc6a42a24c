/* cache.h: the result cache and the dedup of identical jobs (issue 13,
 * api.md "Canonical form").
 *
 * A job's cache key is the SHA-256 of its architecture's canonical key
 * (api/canon.h) and of everything else that changes its numbers: the
 * normalised request without architecture, client_ref, priority and
 * timeout (data, seed, metrics or profile, settings), an uploaded
 * model's import warnings when it has any (they are in its result), the
 * canonical form's version and the engine's version.  A submission whose key is
 * in the store's cache finishes at once, succeeded, "cached": true, with the
 * stored result; one whose key matches an earlier job of the same batch,
 * or (for a study's member) any job still queued or running, waits for it
 * ("deferred") and takes its result when it succeeds, or runs when it
 * does not.  A result enters
 * the cache when a job that computed it succeeds.
 *
 * Thread: the loop thread owns the in-flight map (srv->cache). */
#ifndef AE_SERVER_CACHE_H
#define AE_SERVER_CACHE_H

#include "server/daemon.h"

/* The in-flight map and the listener for finished jobs. */
int ae_cache_init(ae_server *srv);
void ae_cache_free(ae_server *srv);

/* ae_jobs_submit with the cache: each job gets its canonical key, a
 * cached result or a leader to wait for; study (or NULL) is the study
 * each job belongs to.  A job waits for an identical one of the same
 * submission, and a study's member also for one submitted earlier and
 * still queued or running; a plain job identical to one still running is
 * computed on its own (jobs stay independent unless a result exists).
 * Errors as ae_jobs_submit (nothing created). */
int ae_cache_submit(ae_server *srv, ae_request *reqs, size_t n,
                    const char *idem_key, const char *body_hash, int batch,
                    const char *study, ae_job **out);

/* A request's canonical key and cache key (pure: any thread).  AE_OK or
 * AE_ENOMEM. */
int ae_cache_keys(const ae_request *req, char canonical[65], char key[65]);
/* The cache key of a request whose architecture's canonical key is
 * CANONICAL (a claimed job's, as stored at its submission: the key of
 * the stored, normalised request's architecture can differ, e.g. an
 * mlp_dag's num_classes written out).  AE_OK, AE_EINVAL, AE_ENOMEM. */
int ae_cache_key_of(const ae_request *req, const char *canonical, char key[65]);

/* What ae_cache_submit would render of a request, rendered beforehand
 * (off the loop: it is megabytes for large inline inputs): the request's
 * text and, when have_keys, its keys. */
typedef struct {
  char *request_text; /* owned; NULL once a job took it */
  char canonical[65], key[65];
  int have_keys;
} ae_cache_prepared;

/* Fills out for req (pure: any thread).  AE_OK or AE_ENOMEM. */
int ae_cache_prepare(const ae_request *req, ae_cache_prepared *out);
void ae_cache_prepared_free(ae_cache_prepared *p);
/* ae_cache_submit with prepared[i] for reqs[i] (or NULL: rendered here).
 * Takes every prepared[i].request_text (NULL after, whatever the outcome). */
int ae_cache_submit_prepared(ae_server *srv, ae_request *reqs, size_t n,
                             const char *idem_key, const char *body_hash,
                             int batch, const char *study,
                             ae_cache_prepared *prepared, ae_job **out);

#endif
