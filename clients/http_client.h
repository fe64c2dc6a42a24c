/* http_client.h: a small blocking HTTP client for the archeval API, built
 * on libcurl.  One ae_http_client holds the server's base URL, one reusable
 * curl handle (keep-alive) and the retry policy: 429 and 503 answers are
 * retried after their Retry-After, and connection failures after a short
 * back-off, at most max_tries attempts in all.  Used by the CLI's one
 * thread; a client must not be shared between threads. */
#ifndef AE_HTTP_CLIENT_H
#define AE_HTTP_CLIENT_H

#include <stddef.h>

typedef struct ae_http_client ae_http_client;

/* One answer.  Everything is owned by the response; release it with
 * ae_http_response_clear. */
typedef struct {
  long status; /* the HTTP status */
  char *body;  /* NUL-terminated, never NULL after a success */
  size_t body_len;
  long retry_after_s; /* Retry-After in seconds, -1 when absent */
  char *location;     /* Location header, NULL when absent */
  char *content_type; /* Content-Type header, NULL when absent */
} ae_http_response;

#define AE_HTTP_RESPONSE_INIT                                                  \
  { 0, NULL, 0, -1, NULL, NULL }

/* The retry policy's defaults. */
enum { AE_HTTP_DEFAULT_TRIES = 5, AE_HTTP_MAX_RETRY_WAIT_S = 60 };

/* Creates a client for base_url (e.g. "http://127.0.0.1:8000", a trailing
 * slash is dropped).  max_tries >= 1 bounds the attempts per request.
 * Returns AE_OK, AE_EINVAL or AE_ENOMEM. */
int ae_http_client_new(const char *base_url, int max_tries,
                       ae_http_client **out);
void ae_http_client_free(ae_http_client *client);

/* When quiet is zero (the default), each retry prints one line on
 * stderr saying why and for how long it waits. */
void ae_http_client_set_quiet(ae_http_client *client, int quiet);

/* Sends method path (path starts with '/', may carry a query) with an
 * optional JSON body and Idempotency-Key, waiting at most timeout_ms for
 * each attempt (0: no limit).  Retries 429/503 and connection failures as
 * described above; the last answer is returned even when it is a 429/503.
 * Returns AE_OK with *response filled (any HTTP status), AE_EIO when no
 * answer came (errbuf says why), or AE_ENOMEM. */
int ae_http_request(ae_http_client *client, const char *method,
                    const char *path, const char *body,
                    const char *idempotency_key, long timeout_ms,
                    ae_http_response *response, char *errbuf,
                    size_t errbuf_len);

/* ae_http_request with a body of body_len bytes (binary allowed: an ONNX
 * file) sent as content_type (NULL: application/json). */
int ae_http_request_bytes(ae_http_client *client, const char *method,
                          const char *path, const void *body, size_t body_len,
                          const char *content_type, const char *idempotency_key,
                          long timeout_ms, ae_http_response *response,
                          char *errbuf, size_t errbuf_len);

void ae_http_response_clear(ae_http_response *response);

/* Writes a random RFC 4122 version 4 UUID (36 characters and a NUL) into
 * out, for Idempotency-Key.  Returns AE_OK or AE_EIO. */
int ae_http_uuid4(char out[37]);

#endif
