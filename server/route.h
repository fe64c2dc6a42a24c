/* route.h: archevald's router: the route table (with its explicit 405 rows
 * and the 404 fallback), path matching, page tokens, and the small parsers
 * of request values (X-Request-Id, Content-Type, counts).
 *
 * Pure functions over strings: no I/O, no state, no other file of server/,
 * so the router fuzz harness links route.c alone. */
#ifndef AE_SERVER_ROUTE_H
#define AE_SERVER_ROUTE_H

#include <stddef.h>

/* Routes, for the metrics labels (ae_route_labels). */
enum {
  AE_ROUTE_LIVE,
  AE_ROUTE_READY,
  AE_ROUTE_ROOT,
  AE_ROUTE_METRICS,
  AE_ROUTE_DATASETS,
  AE_ROUTE_JOBS,
  AE_ROUTE_BATCH,
  AE_ROUTE_JOB,
  AE_ROUTE_CANCEL,
  AE_ROUTE_STUDIES,
  AE_ROUTE_STUDY,
  AE_ROUTE_STUDY_ARCHITECTURES,
  AE_ROUTE_STUDY_RANKING,
  AE_ROUTE_UI,
  AE_ROUTE_MODELS,
  AE_ROUTE_MODEL,
  AE_ROUTE_OTHER,
  AE_ROUTE_COUNT
};
extern const char *const ae_route_labels[AE_ROUTE_COUNT];

/* What a request does; http.c has one handler per value. */
typedef enum {
  AE_HANDLER_LIVE,
  AE_HANDLER_READY,
  AE_HANDLER_ROOT,
  AE_HANDLER_METRICS,
  AE_HANDLER_DATASETS,
  AE_HANDLER_SUBMIT,
  AE_HANDLER_LIST,
  AE_HANDLER_BATCH,
  AE_HANDLER_GET,
  AE_HANDLER_DELETE,
  AE_HANDLER_CANCEL,
  AE_HANDLER_STUDY_CREATE,
  AE_HANDLER_STUDY_LIST,
  AE_HANDLER_STUDY_GET,
  AE_HANDLER_STUDY_DELETE,
  AE_HANDLER_STUDY_ADD,
  AE_HANDLER_STUDY_RANKING,
  AE_HANDLER_UI, /* a static file of /ui/ */
  AE_HANDLER_MODEL_UPLOAD,
  AE_HANDLER_MODEL_GET,
  AE_HANDLER_MODEL_DELETE,
  AE_HANDLER_NOT_ALLOWED, /* 405 with match.allow */
  AE_HANDLER_NOT_FOUND,   /* 404: no row matched */
  AE_HANDLER_COUNT
} ae_handler;

typedef struct {
  ae_handler handler;
  int route;         /* AE_ROUTE_* */
  const char *allow; /* for a 405: the Allow header; else NULL */
  char id[32];       /* the {id} of the path, or "" */
  char model[80];    /* the {model} of the path ("sha256:..."), or "" */
} ae_route_match;

/* Finds the row for method and path (HEAD is served as GET).  Always
 * fills m: the handler of the first row that matches, else a 404. */
void ae_route_find(const char *method, const char *path, ae_route_match *m);

/* Page tokens: where the last page stopped, opaque to clients.  Listings
 * run newest first in (seq, id) order, id compared byte by byte: seq alone
 * is not unique (the replicas of a fleet number from one clock, and two
 * may take the same microsecond), so the token holds the id of the last
 * item shown too, and the next page starts strictly after that pair.  A
 * token fits in AE_PAGE_TOKEN_MAX bytes. */
#define AE_PAGE_TOKEN_MAX 96
#define AE_PAGE_ID_MAX 40
typedef struct {
  long long seq;           /* < 0: no token, the listing starts at the newest */
  char id[AE_PAGE_ID_MAX]; /* "": every item of this seq is after the token
                              (a token of a version that kept no id) */
} ae_page_key;

/* The token that resumes after seq and id (an id of at most
 * AE_PAGE_ID_MAX - 1 bytes of [0-9A-Za-z_-]). */
void ae_page_token_encode(long long seq, const char *id, char *out, size_t len);
/* 0, or AE_EINVAL for anything this server did not give. */
int ae_page_token_decode(const char *s, ae_page_key *key);
/* Whether (seq, id) comes after key in a listing (is older), so that the
 * next page may show it; always when key->seq < 0. */
int ae_page_key_after(const ae_page_key *key, long long seq, const char *id);

/* A non-negative decimal integer; values over max saturate to max + 1
 * (callers decide).  0 or AE_EINVAL. */
int ae_parse_count(const char *s, long long max, long long *out);
/* 1 when an X-Request-Id can be echoed: 1-128 of [A-Za-z0-9._-]. */
int ae_request_id_ok(const char *s);
/* 1 for application/onnx or application/octet-stream (parameters
 * ignored): the bodies POST /v1/models takes. */
int ae_content_type_is_onnx(const char *ct);
/* 1 for application/json or application/...+json (or no Content-Type). */
int ae_content_type_is_json(const char *ct);
/* 1 when a client_ref query value can be matched: 1-256 bytes, no control
 * characters. */
int ae_client_ref_ok(const char *s);

#endif
