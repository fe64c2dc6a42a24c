/* http_client.c: the blocking libcurl client behind the archeval CLI's
 * server commands (see http_client.h).  One curl easy handle per client,
 * reused for keep-alive; each request resets the per-request options.
 * Retries: 429 and 503 wait their Retry-After (1 s when absent, capped at
 * AE_HTTP_MAX_RETRY_WAIT_S), connection failures back off 0.5, 1, 2, ...
 * seconds; at most max_tries attempts.  Single-threaded: the client and its
 * responses belong to the caller's thread. */
#include "config.h"

#include "clients/http_client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/status.h"

struct ae_http_client {
  char *base_url;
  int max_tries;
  int quiet;
  CURL *curl;
};

/* Process-wide libcurl initialisation, done once by the first client. */
static int curl_ready;

int ae_http_client_new(const char *base_url, int max_tries,
                       ae_http_client **out) {
  *out = NULL;
  if (!base_url || !*base_url || max_tries < 1) return AE_EINVAL;
  if (!curl_ready) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return AE_ENOMEM;
    curl_ready = 1;
  }
  ae_http_client *client = calloc(1, sizeof *client);
  if (!client) return AE_ENOMEM;
  client->base_url = strdup(base_url);
  client->curl = curl_easy_init();
  if (!client->base_url || !client->curl) {
    ae_http_client_free(client);
    return AE_ENOMEM;
  }
  size_t n = strlen(client->base_url);
  while (n > 0 && client->base_url[n - 1] == '/')
    client->base_url[--n] = 0;
  client->max_tries = max_tries;
  *out = client;
  return AE_OK;
}

void ae_http_client_free(ae_http_client *client) {
  if (!client) return;
  if (client->curl) curl_easy_cleanup(client->curl);
  free(client->base_url);
  free(client);
}

void ae_http_client_set_quiet(ae_http_client *client, int quiet) {
  client->quiet = quiet;
}

void ae_http_response_clear(ae_http_response *response) {
  free(response->body);
  free(response->location);
  free(response->content_type);
  *response = (ae_http_response)AE_HTTP_RESPONSE_INIT;
}

/* The body being received, grown by doubling. */
typedef struct {
  char *data;
  size_t len, cap;
  int failed; /* an allocation failed */
} body_buffer;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user) {
  body_buffer *buf = user;
  size_t n = size * nmemb;
  if (buf->len + n + 1 > buf->cap) {
    size_t cap = buf->cap ? buf->cap : 4096;
    while (cap < buf->len + n + 1)
      cap *= 2;
    char *grown = realloc(buf->data, cap);
    if (!grown) {
      buf->failed = 1;
      return 0; /* makes curl fail the transfer */
    }
    buf->data = grown;
    buf->cap = cap;
  }
  memcpy(buf->data + buf->len, ptr, n);
  buf->len += n;
  buf->data[buf->len] = 0;
  return n;
}

/* Copies a header's value, trimmed, when the line is "name: value". */
static int header_value(const char *line, size_t len, const char *name,
                        char **out) {
  size_t name_len = strlen(name);
  if (len <= name_len || line[name_len] != ':' ||
      strncasecmp(line, name, name_len) != 0)
    return 0;
  const char *start = line + name_len + 1;
  const char *end = line + len;
  while (start < end && isspace((unsigned char)*start))
    start++;
  while (end > start && isspace((unsigned char)end[-1]))
    end--;
  char *value = malloc((size_t)(end - start) + 1);
  if (!value) return -1;
  memcpy(value, start, (size_t)(end - start));
  value[end - start] = 0;
  free(*out);
  *out = value;
  return 1;
}

/* Header state of one attempt. */
typedef struct {
  ae_http_response *response;
  char *retry_after;
  int failed;
} header_state;

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *user) {
  header_state *state = user;
  size_t n = size * nmemb;
  /* A new status line (after a 100 Continue, a redirect) starts over. */
  if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
    free(state->response->location);
    state->response->location = NULL;
    free(state->retry_after);
    state->retry_after = NULL;
    return n;
  }
  if (header_value(ptr, n, "Location", &state->response->location) < 0 ||
      header_value(ptr, n, "Content-Type", &state->response->content_type) <
          0 ||
      header_value(ptr, n, "Retry-After", &state->retry_after) < 0)
    state->failed = 1;
  return n;
}

/* Retry-After is delta-seconds in this API; an HTTP date is not parsed
 * and counts as absent. */
static long parse_retry_after(const char *text) {
  if (!text || !*text) return -1;
  char *end;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno || *end || value < 0) return -1;
  return value;
}

static void sleep_seconds(double seconds) {
  if (seconds <= 0) return;
  struct timespec ts;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* One attempt.  Returns AE_OK with the response filled, AE_EIO with
 * errbuf filled, or AE_ENOMEM. */
static int attempt(ae_http_client *client, const char *method, const char *url,
                   const void *body, size_t body_len,
                   struct curl_slist *headers, long timeout_ms,
                   ae_http_response *response, char *errbuf,
                   size_t errbuf_len) {
  CURL *curl = client->curl;
  body_buffer buf = {NULL, 0, 0, 0};
  header_state state = {response, NULL, 0};
  char curl_error[CURL_ERROR_SIZE] = "";
  curl_easy_reset(curl);
  curl_easy_setopt(curl, CURLOPT_URL, url);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "archeval-cli/" PACKAGE_VERSION);
  if (timeout_ms > 0) curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  if (body) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  }
  if (strcmp(method, "GET") == 0) {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "POST") == 0) {
    if (!body) {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
  } else {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
  }
  CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK && !state.failed && !buf.failed) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response->status);
    response->retry_after_s = parse_retry_after(state.retry_after);
    free(state.retry_after);
    if (!buf.data) {
      buf.data = calloc(1, 1);
      if (!buf.data) return AE_ENOMEM;
    }
    response->body = buf.data;
    response->body_len = buf.len;
    return AE_OK;
  }
  free(state.retry_after);
  free(buf.data);
  free(response->location);
  free(response->content_type);
  response->location = response->content_type = NULL;
  if (state.failed || buf.failed) return AE_ENOMEM;
  snprintf(errbuf, errbuf_len, "%s: %s", url,
           curl_error[0] ? curl_error : curl_easy_strerror(rc));
  return AE_EIO;
}

int ae_http_request(ae_http_client *client, const char *method,
                    const char *path, const char *body,
                    const char *idempotency_key, long timeout_ms,
                    ae_http_response *response, char *errbuf,
                    size_t errbuf_len) {
  return ae_http_request_bytes(
      client, method, path, body, body ? strlen(body) : 0, "application/json",
      idempotency_key, timeout_ms, response, errbuf, errbuf_len);
}

int ae_http_request_bytes(ae_http_client *client, const char *method,
                          const char *path, const void *body, size_t body_len,
                          const char *content_type, const char *idempotency_key,
                          long timeout_ms, ae_http_response *response,
                          char *errbuf, size_t errbuf_len) {
  *response = (ae_http_response)AE_HTTP_RESPONSE_INIT;
  if (errbuf_len) errbuf[0] = 0;
  size_t url_len = strlen(client->base_url) + strlen(path) + 1;
  char *url = malloc(url_len);
  if (!url) return AE_ENOMEM;
  snprintf(url, url_len, "%s%s", client->base_url, path);

  int status = AE_OK;
  struct curl_slist *headers = NULL, *grown;
  grown = curl_slist_append(headers, "Accept: application/json");
  if (grown) headers = grown;
  if (grown && body) {
    char line[300];
    snprintf(line, sizeof line, "Content-Type: %s",
             content_type ? content_type : "application/json");
    grown = curl_slist_append(headers, line);
    if (grown) headers = grown;
  }
  if (grown) {
    /* No "Expect: 100-continue" round trip for large bodies. */
    grown = curl_slist_append(headers, "Expect:");
    if (grown) headers = grown;
  }
  if (grown && idempotency_key) {
    char line[300];
    snprintf(line, sizeof line, "Idempotency-Key: %s", idempotency_key);
    grown = curl_slist_append(headers, line);
    if (grown) headers = grown;
  }
  if (!grown) status = AE_ENOMEM;

  double backoff_s = 0.5;
  for (int try = 1; status == AE_OK; try++) {
    status = attempt(client, method, url, body, body_len, headers, timeout_ms,
                     response, errbuf, errbuf_len);
    if (try >= client->max_tries || status == AE_ENOMEM) break;
    double wait_s;
    if (status == AE_EIO) {
      wait_s = backoff_s;
      backoff_s *= 2;
      if (!client->quiet)
        fprintf(stderr, "archeval: %s; retrying in %.1f s (%d/%d)\n", errbuf,
                wait_s, try, client->max_tries - 1);
    } else if (response->status == 429 || response->status == 503) {
      wait_s =
          response->retry_after_s >= 0 ? (double)response->retry_after_s : 1.0;
      if (wait_s > AE_HTTP_MAX_RETRY_WAIT_S) wait_s = AE_HTTP_MAX_RETRY_WAIT_S;
      if (!client->quiet)
        fprintf(stderr,
                "archeval: %s %s answered %ld; retrying in %.0f s "
                "(%d/%d)\n",
                method, path, response->status, wait_s, try,
                client->max_tries - 1);
      ae_http_response_clear(response);
    } else {
      break; /* a final answer */
    }
    sleep_seconds(wait_s);
    status = AE_OK;
  }
  curl_slist_free_all(headers);
  free(url);
  return status;
}

int ae_http_uuid4(char out[37]) {
  unsigned char bytes[16];
  FILE *f = fopen("/dev/urandom", "rb");
  if (!f) return AE_EIO;
  size_t got = fread(bytes, 1, sizeof bytes, f);
  fclose(f);
  if (got != sizeof bytes) return AE_EIO;
  bytes[6] = (unsigned char)((bytes[6] & 0x0f) | 0x40); /* version 4 */
  bytes[8] = (unsigned char)((bytes[8] & 0x3f) | 0x80); /* RFC 4122 */
  static const char hex[] = "0123456789abcdef";
  size_t k = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[k++] = '-';
    out[k++] = hex[bytes[i] >> 4];
    out[k++] = hex[bytes[i] & 15];
  }
  out[k] = 0;
  return AE_OK;
}
