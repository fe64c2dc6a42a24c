/* study.h: studies (api.md "Studies", issue 13): a population of
 * architectures scored with one data, profile, settings and seed, ranked
 * together (api/rank.h), its members kept until the study is deleted.
 *
 * http.c hands each study route to ae_study_handle with the raw request
 * and sends back the reply it fills; the rest of the daemon sees studies
 * only through job->study.
 *
 * Thread: the loop thread owns every study (srv->studies). */
#ifndef AE_SERVER_STUDY_H
#define AE_SERVER_STUDY_H

#include <stddef.h>

#include "api/problem.h"
#include "server/daemon.h"

typedef enum {
  AE_STUDY_CREATE,  /* POST /v1/studies */
  AE_STUDY_LIST,    /* GET /v1/studies */
  AE_STUDY_GET,     /* GET /v1/studies/{id} */
  AE_STUDY_ADD,     /* POST /v1/studies/{id}/architectures */
  AE_STUDY_RANKING, /* GET /v1/studies/{id}/ranking */
  AE_STUDY_DELETE   /* DELETE /v1/studies/{id} */
} ae_study_op;

/* One request, as http.c read it (every pointer borrowed). */
typedef struct {
  ae_study_op op;
  const char *id;   /* the {id} of the path, or "" */
  const char *path; /* for problem instances */
  const char *body; /* may be NULL */
  size_t len;
  const char *idem_key; /* Idempotency-Key, or NULL */
  const char *(*query)(void *ctx, const char *name);
  void *ctx;
} ae_study_call;

/* The answer: a problem (problem.status set) or a body. */
typedef struct {
  int status;
  char *body; /* malloc'd, the caller frees */
  size_t len;
  const char *content_type; /* static */
  char location[96];        /* "" when none */
  int retry_after;          /* seconds, 0 when none */
  ae_problem problem;
} ae_study_reply;

/* The table, and the listener that bumps a study's version when a member
 * ends.  Call after ae_jobs_init. */
int ae_studies_init(ae_server *srv);
/* Loads the stored studies and attaches the loaded jobs to them: after
 * ae_jobs_load. */
int ae_studies_load(ae_server *srv);
void ae_studies_free(ae_server *srv);

/* Serves one study request; the reply is always filled. */
void ae_study_handle(ae_server *srv, const ae_study_call *call,
                     ae_study_reply *out);

/* The selection bound (ranking.md, metrics.md §3.4): for choosing the best
 * of n_candidates on n_validation samples with a loss in [0, 1], with
 * probability 1 - delta the validation and test risks of every candidate
 * differ by at most the returned gap.  NaN when n_validation or
 * n_candidates is 0. */
double ae_study_selection_gap(size_t n_candidates, size_t n_validation,
                              double delta);

#endif
