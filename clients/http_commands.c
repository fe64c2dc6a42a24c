/* http_commands.c: the archeval CLI's server commands (submit, get, wait,
 * cancel, delete, list, info, model upload/get/delete), each a thin layer over
 * the HTTP API of api.md through http_client.c.  Answers are printed as JSON on
 * stdout; problem+json errors are printed readably on stderr and mapped to the
 * exit statuses of cli.h.  Single-threaded: everything here belongs to
 * the CLI's main thread. */
#include "api/scorecard.h"
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/sha256.h"
#include "api/status.h"
#include "clients/cli.h"
#include "clients/http_client.h"

#define DEFAULT_SERVER "http://127.0.0.1:8000"
#define LONG_POLL_MAX_MS 30000L
/* Extra time a long poll's HTTP request gets beyond its wait_ms. */
#define LONG_POLL_SLACK_MS 30000L
#define REQUEST_TIMEOUT_MS 120000L
/* Bytes of a submitted file read at most (the server limits bodies far
 * below this; larger files are refused here). */
#define AE_SUBMIT_MAX_INPUT ((size_t)1 << 30)

/* Options every server command takes. */
typedef struct {
  const char *server;
  int tries;
} common_options;

enum { OPT_SERVER = 1000, OPT_RETRIES, OPT_HELP };

/* clang-format off */
#define COMMON_LONG_OPTIONS                              \
  {"server", required_argument, NULL, OPT_SERVER},       \
  {"retries", required_argument, NULL, OPT_RETRIES},     \
  {"help", no_argument, NULL, OPT_HELP}
/* clang-format on */

static const char common_help[] =
    "  --server URL      the archevald to talk to (default $ARCHEVAL_SERVER,\n"
    "                    else " DEFAULT_SERVER ")\n"
    "  --retries N       retries of 429/503 answers (after Retry-After) and\n"
    "                    connection failures (default 4)\n";

/* Handles a common option; returns 1 when handled, -1 on a bad value. */
static int common_option(int opt, common_options *common) {
  if (opt == OPT_SERVER) {
    common->server = optarg;
    return 1;
  }
  if (opt == OPT_RETRIES) {
    char *end;
    errno = 0;
    long n = strtol(optarg, &end, 10);
    if (errno || *end || n < 0 || n > 100) {
      fprintf(stderr, "archeval: --retries wants 0..100, not '%s'\n", optarg);
      return -1;
    }
    common->tries = (int)n + 1;
    return 1;
  }
  return 0;
}

static void common_init(common_options *common) {
  common->server = NULL;
  common->tries = AE_HTTP_DEFAULT_TRIES;
  optind = 1;
  opterr = 1;
}

static const char *server_url(const common_options *common) {
  if (common->server && *common->server) return common->server;
  const char *env = getenv("ARCHEVAL_SERVER");
  if (env && *env) return env;
  return DEFAULT_SERVER;
}

static int open_client(const common_options *common, ae_http_client **client) {
  int status = ae_http_client_new(server_url(common), common->tries, client);
  if (status != AE_OK) {
    fprintf(stderr, "archeval: cannot create an HTTP client for '%s': %s\n",
            server_url(common), ae_strerror(status));
    return status == AE_EINVAL ? AE_EXIT_USAGE : AE_EXIT_FAILURE;
  }
  return AE_EXIT_OK;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parses a non-negative number of seconds (fractions allowed). */
static int parse_seconds(const char *text, double *out) {
  char *end;
  errno = 0;
  double value = strtod(text, &end);
  if (errno || end == text || *end || !(value >= 0) || value > 1e9) {
    fprintf(stderr, "archeval: --timeout wants seconds, not '%s'\n", text);
    return -1;
  }
  *out = value;
  return 0;
}

/* Job ids are URL-safe; anything else is refused before it reaches a
 * URL. */
static int valid_job_id(const char *id) {
  if (!*id || strlen(id) > 200) return 0;
  for (const char *c = id; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.'))
      return 0;
  return 1;
}

/* Percent-encodes text for a query string into out (out_len bytes). */
static void query_escape(const char *text, char *out, size_t out_len) {
  static const char hex[] = "0123456789ABCDEF";
  size_t k = 0;
  for (const unsigned char *c = (const unsigned char *)text;
       *c && k + 4 < out_len; c++) {
    if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
        (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.' ||
        *c == '~') {
      out[k++] = (char)*c;
    } else {
      out[k++] = '%';
      out[k++] = hex[*c >> 4];
      out[k++] = hex[*c & 15];
    }
  }
  out[k] = 0;
}

/* The exit status for an HTTP status that is not a success. */
static int exit_for_http(long status) {
  if (status >= 200 && status < 300) return AE_EXIT_OK;
  if (status == 404) return AE_EXIT_NOT_FOUND;
  if (status == 429 || status >= 500) return AE_EXIT_UNAVAILABLE;
  if (status >= 400) return AE_EXIT_INVALID;
  return AE_EXIT_FAILURE;
}

/* Prints a problem object (borrowed) on stderr: one line with the status,
 * code and detail, then one line per field error. */
static void print_problem(const char *what, json_t *problem) {
  const char *code = json_string_value(json_object_get(problem, "code"));
  const char *title = json_string_value(json_object_get(problem, "title"));
  const char *detail = json_string_value(json_object_get(problem, "detail"));
  json_t *status = json_object_get(problem, "status");
  fprintf(stderr, "archeval: %s", what);
  if (json_is_integer(status))
    fprintf(stderr, ": %lld", (long long)json_integer_value(status));
  if (code) fprintf(stderr, " %s", code);
  if (detail || title) fprintf(stderr, ": %s", detail ? detail : title);
  fputc('\n', stderr);
  json_t *errors = json_object_get(problem, "errors");
  size_t i;
  json_t *item;
  json_array_foreach(errors, i, item) {
    const char *pointer = json_string_value(json_object_get(item, "pointer"));
    const char *why = json_string_value(json_object_get(item, "detail"));
    fprintf(stderr, "  %s: %s\n", pointer && *pointer ? pointer : "(body)",
            why ? why : "?");
  }
}

/* Prints an error answer on stderr. */
static void print_error_response(const char *method, const char *path,
                                 const ae_http_response *response) {
  char what[512];
  snprintf(what, sizeof what, "%s %s", method, path);
  json_t *problem = json_loadb(response->body, response->body_len, 0, NULL);
  if (json_is_object(problem)) {
    if (!json_object_get(problem, "status"))
      json_object_set_new(problem, "status", json_integer(response->status));
    print_problem(what, problem);
  } else {
    size_t n = response->body_len;
    if (n > 500) n = 500;
    fprintf(stderr, "archeval: %s: HTTP %ld%s%.*s\n", what, response->status,
            n ? ": " : "", (int)n, response->body);
  }
  json_decref(problem);
}

/* One request with the error handling every command shares.  On a 2xx
 * answer returns AE_EXIT_OK and, when out is not NULL, the parsed body (a
 * new reference, NULL for an empty body).  Otherwise prints why on stderr
 * and returns the exit status. */
static int call_api_bytes(ae_http_client *client, const char *method,
                          const char *path, const void *body, size_t body_len,
                          const char *content_type, const char *idempotency_key,
                          long timeout_ms, json_t **out) {
  if (out) *out = NULL;
  ae_http_response response = AE_HTTP_RESPONSE_INIT;
  char errbuf[512];
  int status = ae_http_request_bytes(client, method, path, body, body_len,
                                     content_type, idempotency_key, timeout_ms,
                                     &response, errbuf, sizeof errbuf);
  if (status == AE_ENOMEM) {
    fprintf(stderr, "archeval: out of memory\n");
    return AE_EXIT_FAILURE;
  }
  if (status != AE_OK) {
    fprintf(stderr, "archeval: no answer: %s\n", errbuf);
    return AE_EXIT_UNAVAILABLE;
  }
  int code = exit_for_http(response.status);
  if (code != AE_EXIT_OK) {
    print_error_response(method, path, &response);
    ae_http_response_clear(&response);
    return code;
  }
  if (out && response.body_len > 0) {
    json_error_t error;
    *out = json_loadb(response.body, response.body_len, 0, &error);
    if (!*out) {
      fprintf(stderr, "archeval: %s %s: unparsable answer: %s\n", method, path,
              error.text);
      code = AE_EXIT_FAILURE;
    }
  }
  ae_http_response_clear(&response);
  return code;
}

/* call_api_bytes with a JSON body (NUL-terminated) or none. */
static int call_api(ae_http_client *client, const char *method,
                    const char *path, const char *body,
                    const char *idempotency_key, long timeout_ms,
                    json_t **out) {
  return call_api_bytes(client, method, path, body, body ? strlen(body) : 0,
                        "application/json", idempotency_key, timeout_ms, out);
}

/* Prints a JSON value on stdout, pretty (indent 2) or on one line. */
static int print_json(json_t *value, int pretty) {
  size_t flags = JSON_PRESERVE_ORDER;
  flags |= pretty ? JSON_INDENT(2) : JSON_COMPACT;
  char *text = ae_json_dumps_flags(value, flags);
  if (!text) return AE_EXIT_FAILURE;
  fputs(text, stdout);
  free(text);
  fputc('\n', stdout);
  fflush(stdout);
  return ferror(stdout) ? AE_EXIT_FAILURE : AE_EXIT_OK;
}

static const char *job_state(json_t *job) {
  const char *state = json_string_value(json_object_get(job, "state"));
  return state ? state : "";
}

static int state_is_terminal(const char *state) {
  return !strcmp(state, "succeeded") || !strcmp(state, "failed") ||
         !strcmp(state, "cancelled");
}

/* ---- waiting ---------------------------------------------------------- */

typedef struct {
  int full;         /* print the whole job resource, not the result */
  double timeout_s; /* < 0: no limit */
  int progress;     /* add the rate and the time left to the progress line */
} wait_options;

/* --progress, or stderr is a terminal. */
static int progress_wanted(int asked) {
  return asked || isatty(STDERR_FILENO);
}

/* Prints a duration as "12 s", "3 min 20 s" or "2 h 05 min" on stderr. */
static void print_duration(double seconds) {
  long s = (long)(seconds + 0.5);
  if (s < 60)
    fprintf(stderr, "%ld s", s);
  else if (s < 3600)
    fprintf(stderr, "%ld min %02ld s", s / 60, s % 60);
  else
    fprintf(stderr, "%ld h %02ld min", s / 3600, s % 3600 / 60);
}

/* Reports one finished job.  Returns 1 when it succeeded, 0 otherwise. */
static int report_finished(json_t *job, int several, const wait_options *w) {
  const char *id = json_string_value(json_object_get(job, "id"));
  const char *state = job_state(job);
  int ok = strcmp(state, "succeeded") == 0;
  if (several || w->full) {
    print_json(job, !several);
  } else if (ok) {
    json_t *result = json_object_get(job, "result");
    print_json(result ? result : json_null(), 1);
  }
  if (!ok) {
    char what[300];
    snprintf(what, sizeof what, "job %s %s", id ? id : "?", state);
    json_t *error = json_object_get(job, "error");
    if (json_is_object(error))
      print_problem(what, error);
    else
      fprintf(stderr, "archeval: %s\n", what);
  }
  return ok;
}

/* Waits for every job in ids by long polls; prints each as it finishes and
 * a progress line on stderr when there are several. */
static int wait_for_jobs(ae_http_client *client, char **ids, size_t n,
                         const wait_options *w) {
  char *done = calloc(n ? n : 1, 1);
  if (!done) {
    fprintf(stderr, "archeval: out of memory\n");
    return AE_EXIT_FAILURE;
  }
  int several = n > 1;
  size_t finished = 0, succeeded = 0, failed = 0, cancelled = 0;
  double deadline = w->timeout_s >= 0 ? now_seconds() + w->timeout_s : -1;
  /* The first sweep looks at every job without waiting; the rate counts
   * the jobs that finish after it (those already done when the wait began
   * would inflate it). */
  size_t finished_before = 0;
  double swept_at = -1;
  int code = AE_EXIT_OK;
  while (finished < n && code == AE_EXIT_OK) {
    size_t unfinished = n - finished;
    size_t first = 0;
    while (done[first])
      first++;
    int timed_out = 0;
    /* Long-poll the first unfinished job; with several, briefly, then
     * glance at the others. */
    for (size_t i = first; i < n && code == AE_EXIT_OK; i++) {
      if (done[i]) continue;
      long wait_ms = 0;
      if (i == first && swept_at >= 0)
        wait_ms = unfinished > 1 ? 1000 : LONG_POLL_MAX_MS;
      if (deadline >= 0) {
        double left_ms = (deadline - now_seconds()) * 1000.0;
        if (left_ms <= 0) {
          timed_out = 1;
          break;
        }
        if (wait_ms > (long)left_ms) wait_ms = (long)left_ms;
      }
      char path[300];
      snprintf(path, sizeof path, "/v1/jobs/%s?wait_ms=%ld", ids[i], wait_ms);
      json_t *job;
      code = call_api(client, "GET", path, NULL, NULL,
                      wait_ms + LONG_POLL_SLACK_MS, &job);
      if (code != AE_EXIT_OK) break;
      const char *state = job_state(job);
      if (state_is_terminal(state)) {
        done[i] = 1;
        finished++;
        if (!strcmp(state, "succeeded"))
          succeeded++;
        else if (!strcmp(state, "cancelled"))
          cancelled++;
        else
          failed++;
        report_finished(job, several, w);
        if (several) {
          fprintf(stderr, "%zu/%zu finished (%zu succeeded, %zu failed",
                  finished, n, succeeded, failed);
          if (cancelled) fprintf(stderr, ", %zu cancelled", cancelled);
          fprintf(stderr, ")");
          double elapsed = now_seconds() - swept_at;
          if (w->progress && swept_at >= 0 && finished > finished_before &&
              elapsed > 0) {
            double rate = (double)(finished - finished_before) / elapsed;
            fprintf(stderr, "; %.3g jobs/s", rate);
            if (finished < n) {
              fprintf(stderr, ", about ");
              print_duration((double)(n - finished) / rate);
              fprintf(stderr, " left");
            }
          }
          fputc('\n', stderr);
        }
      }
      json_decref(job);
    }
    if (swept_at < 0) {
      swept_at = now_seconds();
      finished_before = finished;
    }
    if (timed_out || (code == AE_EXIT_OK && finished < n && deadline >= 0 &&
                      now_seconds() >= deadline)) {
      fprintf(stderr, "archeval: timed out; %zu of %zu job(s) unfinished\n",
              n - finished, n);
      code = AE_EXIT_TIMEOUT;
    }
  }
  free(done);
  if (code == AE_EXIT_OK && (failed || cancelled)) code = AE_EXIT_FAILURE;
  return code;
}

/* ---- models ----------------------------------------------------------- */

/* 1 when id is "sha256:" and 64 lowercase hex digits (api.md "Models"). */
static int valid_model_id(const char *id) {
  if (strncmp(id, "sha256:", 7) || strlen(id) != 71) return 0;
  for (const char *c = id + 7; *c; c++)
    if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return 0;
  return 1;
}

/* Uploads the ONNX file at path (POST /v1/models).  AE_EXIT_OK with *desc
 * (the model's description, a new reference), else the exit status with
 * the reason on stderr.  The import's warnings (a BN folded into the
 * convs) are printed on stderr. */
static int upload_model(ae_http_client *client, const char *path,
                        json_t **desc) {
  *desc = NULL;
  size_t len = 0;
  char *bytes = NULL;
  int read_rc = ae_cli_read_file(path, AE_SUBMIT_MAX_INPUT, &bytes, &len);
  if (read_rc) {
    fprintf(stderr, "archeval: cannot read '%s': %s\n", path,
            read_rc == AE_EIO      ? strerror(errno)
            : read_rc == AE_EINVAL ? "larger than 1 GiB"
                                   : ae_strerror(read_rc));
    return AE_EXIT_FAILURE;
  }
  char hex[65], expected[72];
  ae_sha256_hex(bytes, len, hex);
  snprintf(expected, sizeof expected, "sha256:%s", hex);
  json_t *answer = NULL;
  int code =
      call_api_bytes(client, "POST", "/v1/models", bytes, len,
                     "application/onnx", NULL, REQUEST_TIMEOUT_MS, &answer);
  free(bytes);
  if (code != AE_EXIT_OK) return code;
  const char *id = json_string_value(json_object_get(answer, "id"));
  if (!id || strcmp(id, expected)) {
    /* The id is the file's hash: anything else is not this file. */
    fprintf(stderr,
            "archeval: POST /v1/models: the answer's id %s is not the "
            "file's %s\n",
            id ? id : "(none)", expected);
    json_decref(answer);
    return AE_EXIT_FAILURE;
  }
  size_t i;
  json_t *w;
  json_array_foreach(json_object_get(answer, "warnings"), i, w) {
    if (json_is_string(w))
      fprintf(stderr, "archeval: model %s: warning: %s\n", path,
              json_string_value(w));
  }
  *desc = answer;
  return AE_EXIT_OK;
}

static void model_help(FILE *f) {
  fprintf(
      f,
      "Usage: archeval model upload [--id] FILE.onnx...\n"
      "       archeval model get ID...\n"
      "       archeval model delete ID...\n"
      "Uploaded ONNX models (POST, GET, DELETE /v1/models; the id is\n"
      "\"sha256:\" and the file's SHA-256).  upload prints the model's\n"
      "description (indented for one file, one line each for several;\n"
      "with --id only its id) and the import's warnings on stderr; get\n"
      "prints the description; delete removes the model (a model that a\n"
      "queued or running job names: 409, exit 3).  A job then names\n"
      "{\"type\": \"onnx\", \"model\": ID}; or use 'archeval submit --model\n"
      "FILE.onnx', which uploads and submits in one go.\n"
      "  --id              (upload) print only the id, one per line\n"
      "%s",
      common_help);
}

int ae_cli_models(int argc, char **argv) {
  static const struct option options[] = {
      {"id", no_argument, NULL, 'i'}, COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    model_help(stdout);
    return AE_EXIT_OK;
  }
  const char *action = argc >= 2 ? argv[1] : "";
  int upload = !strcmp(action, "upload"), get = !strcmp(action, "get"),
      del = !strcmp(action, "delete");
  if (!upload && !get && !del) {
    if (*action)
      fprintf(stderr, "archeval: unknown model command '%s'\n", action);
    model_help(stderr);
    return AE_EXIT_USAGE;
  }
  argc--;
  argv++;
  common_options common;
  common_init(&common);
  int only_id = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    int handled = common_option(opt, &common);
    if (handled < 0) return AE_EXIT_USAGE;
    if (handled) continue;
    if (opt == 'i' && upload) {
      only_id = 1;
      continue;
    }
    if (opt == OPT_HELP) {
      model_help(stdout);
      return AE_EXIT_OK;
    }
    model_help(stderr);
    return AE_EXIT_USAGE;
  }
  if (optind >= argc) {
    model_help(stderr);
    return AE_EXIT_USAGE;
  }
  for (int i = optind; !upload && i < argc; i++) {
    if (!valid_model_id(argv[i])) {
      fprintf(stderr,
              "archeval: '%s' is not a model id (\"sha256:\" and 64 "
              "lowercase hex digits)\n",
              argv[i]);
      return AE_EXIT_USAGE;
    }
  }
  ae_http_client *client;
  int code = open_client(&common, &client);
  if (code != AE_EXIT_OK) return code;
  int several = argc - optind > 1;
  for (int i = optind; i < argc; i++) {
    json_t *desc = NULL;
    int one;
    if (upload) {
      one = upload_model(client, argv[i], &desc);
    } else {
      char path[128];
      snprintf(path, sizeof path, "/v1/models/%s", argv[i]);
      one = call_api(client, get ? "GET" : "DELETE", path, NULL, NULL,
                     REQUEST_TIMEOUT_MS, get ? &desc : NULL);
    }
    if (one == AE_EXIT_OK && desc) {
      if (only_id) {
        printf("%s\n", json_string_value(json_object_get(desc, "id")));
        fflush(stdout);
        one = ferror(stdout) ? AE_EXIT_FAILURE : AE_EXIT_OK;
      } else {
        one = print_json(desc, !several);
      }
    }
    json_decref(desc);
    if (one != AE_EXIT_OK && code == AE_EXIT_OK) code = one;
  }
  ae_http_client_free(client);
  return code;
}

/* submit --model: puts {"type": "onnx", "model": id} (as_graph: with
 * "as_graph": true) into each request of parsed (one request, a JSON
 * array, or {"jobs": [...]}), which must not name an architecture.  id:
 * NULL to check only.  AE_EXIT_OK, or AE_EXIT_USAGE / AE_EXIT_FAILURE with
 * the reason on stderr. */
static int set_model_architecture(json_t *parsed, const char *file,
                                  const char *id, int as_graph) {
  json_t *jobs = json_is_array(parsed) ? parsed
                 : json_is_object(parsed) && json_object_get(parsed, "jobs")
                     ? json_object_get(parsed, "jobs")
                     : NULL;
  size_t n = jobs ? json_array_size(jobs) : 1;
  for (size_t i = 0; i < n; i++) {
    json_t *job = jobs ? json_array_get(jobs, i) : parsed;
    if (!json_is_object(job)) {
      fprintf(stderr, "archeval: '%s': request %zu is not a JSON object\n",
              file, i);
      return AE_EXIT_USAGE;
    }
    if (json_object_get(job, "architecture")) {
      fprintf(stderr,
              "archeval: '%s': request %zu has an \"architecture\"; "
              "--model gives it\n",
              file, i);
      return AE_EXIT_USAGE;
    }
    json_t *arch = !id ? NULL
                   : as_graph
                       ? json_pack("{s:s, s:s, s:b}", "type", "onnx", "model",
                                   id, "as_graph", 1)
                       : json_pack("{s:s, s:s}", "type", "onnx", "model", id);
    if (id && json_object_set_new(job, "architecture", arch)) {
      fprintf(stderr, "archeval: out of memory\n");
      return AE_EXIT_FAILURE;
    }
  }
  return AE_EXIT_OK;
}

/* ---- submit ----------------------------------------------------------- */

static void submit_help(FILE *f) {
  fprintf(
      f,
      "Usage: archeval submit [OPTIONS] FILE|-\n"
      "       archeval submit [OPTIONS] --model MODEL.onnx [FILE|-]\n"
      "Submits the job request in FILE (or stdin) and prints its id.  A\n"
      "JSON array of requests, or {\"jobs\":[...]}, is one batch (all or\n"
      "nothing); the ids are printed one per line.\n"
      "  --model MODEL.onnx  upload the ONNX file (POST /v1/models), then\n"
      "                    submit it as {\"type\": \"onnx\", \"model\": id}:\n"
      "                    FILE's request(s) must have no architecture\n"
      "                    (no FILE: the defaults)\n"
      "  --as-graph        with --model, score the imported graph even\n"
      "                    when the model is a NAS-Bench-201 network (by\n"
      "                    default scored as the native nb201 request):\n"
      "                    \"as_graph\": true\n"
      "  --wait            wait for the job(s); print the result JSON (one\n"
      "                    job) or each finished job on one line (several)\n"
      "  --timeout SECS    with --wait, give up after SECS (exit 5)\n"
      "  --full            with --wait, print the whole job resource\n"
      "  --progress        with --wait on several, jobs per second and the\n"
      "                    time left (the default on a terminal)\n"
      "  --idempotency-key K  the key (default: a random UUID, so the\n"
      "                    retries never create the job twice)\n"
      "%s",
      common_help);
}

int ae_cli_submit(int argc, char **argv) {
  static const struct option options[] = {
      {"wait", no_argument, NULL, 'w'},
      {"timeout", required_argument, NULL, 't'},
      {"full", no_argument, NULL, 'f'},
      {"progress", no_argument, NULL, 'P'},
      {"idempotency-key", required_argument, NULL, 'k'},
      {"model", required_argument, NULL, 'm'},
      {"as-graph", no_argument, NULL, 'g'},
      COMMON_LONG_OPTIONS,
      {NULL, 0, NULL, 0}};
  common_options common;
  common_init(&common);
  wait_options w = {0, -1, 0};
  int do_wait = 0;
  const char *key = NULL, *model_file = NULL;
  int as_graph = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    int handled = common_option(opt, &common);
    if (handled < 0) return AE_EXIT_USAGE;
    if (handled) continue;
    switch (opt) {
    case 'w':
      do_wait = 1;
      break;
    case 'f':
      w.full = 1;
      break;
    case 'P':
      w.progress = 1;
      break;
    case 'k':
      key = optarg;
      break;
    case 'm':
      model_file = optarg;
      break;
    case 'g':
      as_graph = 1;
      break;
    case 't':
      if (parse_seconds(optarg, &w.timeout_s) < 0) return AE_EXIT_USAGE;
      break;
    case OPT_HELP:
      submit_help(stdout);
      return AE_EXIT_OK;
    default:
      submit_help(stderr);
      return AE_EXIT_USAGE;
    }
  }
  if (optind + 1 != argc && !(model_file && optind == argc)) {
    submit_help(stderr);
    return AE_EXIT_USAGE;
  }
  if (as_graph && !model_file) {
    fprintf(stderr, "archeval: --as-graph applies to --model only (a "
                    "request file says \"as_graph\" in its "
                    "architecture)\n");
    return AE_EXIT_USAGE;
  }
  w.progress = progress_wanted(w.progress);
  const char *file = optind < argc ? argv[optind] : NULL;
  size_t len = 0;
  char *text = NULL;
  int read_rc = file ? ae_cli_read_file(file, AE_SUBMIT_MAX_INPUT, &text, &len)
                     : ((text = strdup("{}")) ? (len = 2, AE_OK) : AE_ENOMEM);
  if (read_rc) {
    fprintf(stderr, "archeval: cannot read '%s': %s\n", file,
            read_rc == AE_EIO      ? strerror(errno)
            : read_rc == AE_EINVAL ? "larger than 1 GiB"
                                   : ae_strerror(read_rc));
    return AE_EXIT_FAILURE;
  }
  char generated_key[37];
  if (!key) {
    if (ae_http_uuid4(generated_key) != AE_OK) {
      fprintf(stderr, "archeval: cannot read /dev/urandom\n");
      free(text);
      return AE_EXIT_FAILURE;
    }
    key = generated_key;
  }

  /* Decide between one job and a batch.  Unparsable text goes as one job,
   * so the server's 400 names the line and column. */
  json_error_t parse_error;
  json_t *parsed = json_loadb(text, len, 0, &parse_error);
  int batch = json_is_array(parsed) ||
              (json_is_object(parsed) && json_object_get(parsed, "jobs"));
  ae_http_client *client = NULL;
  if (model_file) {
    /* Check the requests, upload, then name the model in each. */
    int code = AE_EXIT_OK;
    if (!parsed) {
      fprintf(stderr, "archeval: '%s': line %d, column %d: %s\n", file,
              parse_error.line, parse_error.column, parse_error.text);
      code = AE_EXIT_INVALID;
    }
    if (code == AE_EXIT_OK)
      code = set_model_architecture(parsed, file ? file : "-", NULL, 0);
    if (code == AE_EXIT_OK) code = open_client(&common, &client);
    json_t *desc = NULL;
    if (code == AE_EXIT_OK) code = upload_model(client, model_file, &desc);
    if (code == AE_EXIT_OK) {
      code = set_model_architecture(
          parsed, file ? file : "-",
          json_string_value(json_object_get(desc, "id")), as_graph);
      fprintf(stderr, "uploaded %s as %s\n", model_file,
              json_string_value(json_object_get(desc, "id")));
    }
    json_decref(desc);
    char *dumped = code == AE_EXIT_OK && !json_is_array(parsed)
                       ? json_dumps(parsed, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                                JSON_REAL_PRECISION(17))
                       : NULL;
    if (code == AE_EXIT_OK && !json_is_array(parsed) && !dumped) {
      fprintf(stderr, "archeval: out of memory\n");
      code = AE_EXIT_FAILURE;
    }
    if (code != AE_EXIT_OK) {
      json_decref(parsed);
      free(text);
      ae_http_client_free(client);
      return code;
    }
    if (dumped) {
      free(text);
      text = dumped;
    }
  }
  char *body = text;
  if (json_is_array(parsed)) {
    json_t *wrapped = json_pack("{sO}", "jobs", parsed);
    body = wrapped ? json_dumps(wrapped, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                             JSON_REAL_PRECISION(17))
                   : NULL;
    json_decref(wrapped);
    if (!body) {
      fprintf(stderr, "archeval: out of memory\n");
      json_decref(parsed);
      free(text);
      return AE_EXIT_FAILURE;
    }
  }
  json_decref(parsed);

  int code = client ? AE_EXIT_OK : open_client(&common, &client);
  if (code != AE_EXIT_OK) {
    if (body != text) free(body);
    free(text);
    return code;
  }
  json_t *answer = NULL;
  code = call_api(client, "POST", batch ? "/v1/jobs:batch" : "/v1/jobs", body,
                  key, REQUEST_TIMEOUT_MS, &answer);
  if (body != text) free(body);
  free(text);

  /* Collect the ids. */
  size_t n = 0;
  char **ids = NULL;
  if (code == AE_EXIT_OK) {
    json_t *jobs = batch ? json_object_get(answer, "jobs") : NULL;
    n = batch ? json_array_size(jobs) : 1;
    ids = calloc(n ? n : 1, sizeof *ids);
    if (!ids) code = AE_EXIT_FAILURE;
    for (size_t i = 0; code == AE_EXIT_OK && i < n; i++) {
      json_t *job = batch ? json_array_get(jobs, i) : answer;
      const char *id = json_string_value(json_object_get(job, "id"));
      if (!id || !valid_job_id(id)) {
        fprintf(stderr, "archeval: the answer has no usable job id\n");
        code = AE_EXIT_FAILURE;
        break;
      }
      ids[i] = (char *)id; /* borrowed from answer */
      if (!do_wait) printf("%s\n", id);
    }
    if (code == AE_EXIT_OK && do_wait) {
      if (n > 1) {
        /* The ids go to stderr, so stdout stays one JSON per line. */
        for (size_t i = 0; i < n; i++)
          fprintf(stderr, "submitted %s\n", ids[i]);
      }
      code = wait_for_jobs(client, ids, n, &w);
    }
  }
  fflush(stdout);
  free(ids);
  json_decref(answer);
  ae_http_client_free(client);
  return code;
}

/* ---- wait, get, cancel, delete ---------------------------------------- */

static void wait_help(FILE *f) {
  fprintf(f,
          "Usage: archeval wait [OPTIONS] ID...\n"
          "Waits for the jobs to finish (long polls).  One job: prints its\n"
          "result JSON; several: prints each job on one line as it finishes,\n"
          "with a progress line on stderr.  Exit 0 when all succeeded, 1 when\n"
          "one failed or was cancelled, 5 on timeout.\n"
          "  --timeout SECS    give up after SECS (default: no limit)\n"
          "  --full            print the whole job resource, not the result\n"
          "  --progress        add jobs per second and the time left to the\n"
          "                    progress line (the default on a terminal)\n"
          "%s",
          common_help);
}

int ae_cli_wait(int argc, char **argv) {
  static const struct option options[] = {
      {"timeout", required_argument, NULL, 't'},
      {"full", no_argument, NULL, 'f'},
      {"progress", no_argument, NULL, 'P'},
      COMMON_LONG_OPTIONS,
      {NULL, 0, NULL, 0}};
  common_options common;
  common_init(&common);
  wait_options w = {0, -1, 0};
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    int handled = common_option(opt, &common);
    if (handled < 0) return AE_EXIT_USAGE;
    if (handled) continue;
    switch (opt) {
    case 'f':
      w.full = 1;
      break;
    case 'P':
      w.progress = 1;
      break;
    case 't':
      if (parse_seconds(optarg, &w.timeout_s) < 0) return AE_EXIT_USAGE;
      break;
    case OPT_HELP:
      wait_help(stdout);
      return AE_EXIT_OK;
    default:
      wait_help(stderr);
      return AE_EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    wait_help(stderr);
    return AE_EXIT_USAGE;
  }
  for (int i = optind; i < argc; i++) {
    if (!valid_job_id(argv[i])) {
      fprintf(stderr, "archeval: '%s' is not a job id\n", argv[i]);
      return AE_EXIT_USAGE;
    }
  }
  w.progress = progress_wanted(w.progress);
  ae_http_client *client;
  int code = open_client(&common, &client);
  if (code != AE_EXIT_OK) return code;
  code = wait_for_jobs(client, argv + optind, (size_t)(argc - optind), &w);
  ae_http_client_free(client);
  return code;
}

/* What get, cancel and delete do to one job. */
typedef enum { JOB_GET, JOB_CANCEL, JOB_DELETE } job_action;

static void job_help(FILE *f, job_action action) {
  static const char *const usage[] = {
      "Usage: archeval get [OPTIONS] ID...\n"
      "Prints the job resource (indented for one job, one line each for\n"
      "several).\n",
      "Usage: archeval cancel [OPTIONS] ID...\n"
      "Cancels the jobs: a queued job is cancelled at once, a running one\n"
      "stops at its next checkpoint (cancel_requested).  Prints the job.\n"
      "A finished job cannot be cancelled (409, exit 3).\n",
      "Usage: archeval delete [OPTIONS] ID...\n"
      "Deletes finished jobs (a job still queued or running: 409, exit 3).\n"};
  fprintf(f, "%s%s", usage[action], common_help);
}

static int job_command(int argc, char **argv, job_action action) {
  static const struct option options[] = {COMMON_LONG_OPTIONS,
                                          {NULL, 0, NULL, 0}};
  common_options common;
  common_init(&common);
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    int handled = common_option(opt, &common);
    if (handled < 0) return AE_EXIT_USAGE;
    if (handled) continue;
    if (opt == OPT_HELP) {
      job_help(stdout, action);
      return AE_EXIT_OK;
    }
    job_help(stderr, action);
    return AE_EXIT_USAGE;
  }
  if (optind >= argc) {
    job_help(stderr, action);
    return AE_EXIT_USAGE;
  }
  for (int i = optind; i < argc; i++) {
    if (!valid_job_id(argv[i])) {
      fprintf(stderr, "archeval: '%s' is not a job id\n", argv[i]);
      return AE_EXIT_USAGE;
    }
  }
  ae_http_client *client;
  int code = open_client(&common, &client);
  if (code != AE_EXIT_OK) return code;
  int several = argc - optind > 1;
  for (int i = optind; i < argc; i++) {
    char path[300];
    const char *method = "GET";
    if (action == JOB_GET) {
      snprintf(path, sizeof path, "/v1/jobs/%s", argv[i]);
    } else if (action == JOB_CANCEL) {
      method = "POST";
      snprintf(path, sizeof path, "/v1/jobs/%s:cancel", argv[i]);
    } else {
      method = "DELETE";
      snprintf(path, sizeof path, "/v1/jobs/%s", argv[i]);
    }
    json_t *job = NULL;
    int one = call_api(client, method, path, NULL, NULL, REQUEST_TIMEOUT_MS,
                       action == JOB_DELETE ? NULL : &job);
    if (one == AE_EXIT_OK && job) one = print_json(job, !several);
    json_decref(job);
    if (one != AE_EXIT_OK && code == AE_EXIT_OK) code = one;
  }
  ae_http_client_free(client);
  return code;
}

int ae_cli_get(int argc, char **argv) {
  return job_command(argc, argv, JOB_GET);
}

int ae_cli_cancel(int argc, char **argv) {
  return job_command(argc, argv, JOB_CANCEL);
}

int ae_cli_delete(int argc, char **argv) {
  return job_command(argc, argv, JOB_DELETE);
}

/* ---- list ------------------------------------------------------------- */

static void list_help(FILE *f) {
  fprintf(f,
          "Usage: archeval list [OPTIONS]\n"
          "Lists the jobs, newest first, following every page: a table of\n"
          "id, state, created_at, worker and client_ref, or with --json one\n"
          "job resource per line.\n"
          "  --state S         only jobs in state S (queued, running,\n"
          "                    succeeded, failed, cancelled)\n"
          "  --client-ref R    only jobs submitted with client_ref R\n"
          "  --page-size N     jobs per request (server default 100)\n"
          "  --json            print JSON lines instead of a table\n"
          "%s",
          common_help);
}

static const char *field_or_dash(json_t *job, const char *key) {
  const char *value = json_string_value(json_object_get(job, key));
  return value && *value ? value : "-";
}

int ae_cli_list(int argc, char **argv) {
  static const struct option options[] = {
      {"state", required_argument, NULL, 's'},
      {"client-ref", required_argument, NULL, 'c'},
      {"page-size", required_argument, NULL, 'p'},
      {"json", no_argument, NULL, 'j'},
      COMMON_LONG_OPTIONS,
      {NULL, 0, NULL, 0}};
  common_options common;
  common_init(&common);
  const char *state = NULL, *client_ref = NULL;
  long page_size = 0;
  int as_json = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    int handled = common_option(opt, &common);
    if (handled < 0) return AE_EXIT_USAGE;
    if (handled) continue;
    switch (opt) {
    case 's':
      state = optarg;
      break;
    case 'c':
      if (strlen(optarg) > 256) {
        fprintf(stderr, "archeval: --client-ref is at most 256 bytes\n");
        return AE_EXIT_USAGE;
      }
      client_ref = optarg;
      break;
    case 'j':
      as_json = 1;
      break;
    case 'p': {
      char *end;
      errno = 0;
      page_size = strtol(optarg, &end, 10);
      if (errno || *end || page_size < 1 || page_size > INT_MAX) {
        fprintf(stderr, "archeval: --page-size wants a positive count\n");
        return AE_EXIT_USAGE;
      }
      break;
    }
    case OPT_HELP:
      list_help(stdout);
      return AE_EXIT_OK;
    default:
      list_help(stderr);
      return AE_EXIT_USAGE;
    }
  }
  if (optind != argc) {
    list_help(stderr);
    return AE_EXIT_USAGE;
  }
  ae_http_client *client;
  int code = open_client(&common, &client);
  if (code != AE_EXIT_OK) return code;
  char *token = NULL;
  int pages = 0;
  if (!as_json)
    printf("%-28s %-10s %-25s %-8s %s\n", "ID", "STATE", "CREATED", "WORKER",
           "CLIENT_REF");
  do {
    char path[2400], escaped[1100];
    size_t k = (size_t)snprintf(path, sizeof path, "/v1/jobs?");
    if (state) {
      query_escape(state, escaped, 200);
      k += (size_t)snprintf(path + k, sizeof path - k, "state=%s&", escaped);
    }
    if (client_ref) {
      query_escape(client_ref, escaped, sizeof escaped);
      k += (size_t)snprintf(path + k, sizeof path - k, "client_ref=%s&",
                            escaped);
    }
    if (page_size)
      k += (size_t)snprintf(path + k, sizeof path - k, "page_size=%ld&",
                            page_size);
    if (token) {
      query_escape(token, escaped, sizeof escaped);
      snprintf(path + k, sizeof path - k, "page_token=%s", escaped);
    } else {
      path[k - 1] = 0; /* drops the trailing '?' or '&' */
    }
    free(token);
    token = NULL;
    json_t *page;
    code = call_api(client, "GET", path, NULL, NULL, REQUEST_TIMEOUT_MS, &page);
    if (code != AE_EXIT_OK) break;
    size_t i;
    json_t *job;
    json_array_foreach(json_object_get(page, "jobs"), i, job) {
      if (as_json) {
        print_json(job, 0);
      } else {
        printf("%-28s %-10s %-25s %-8s %s\n", field_or_dash(job, "id"),
               field_or_dash(job, "state"), field_or_dash(job, "created_at"),
               field_or_dash(job, "worker"), field_or_dash(job, "client_ref"));
      }
    }
    const char *next =
        json_string_value(json_object_get(page, "next_page_token"));
    if (next && *next) {
      token = strdup(next);
      if (!token) code = AE_EXIT_FAILURE;
    }
    json_decref(page);
    if (++pages > 1000000) break; /* a server that never stops paging */
  } while (token && code == AE_EXIT_OK);
  free(token);
  fflush(stdout);
  ae_http_client_free(client);
  return code;
}

/* ---- info ------------------------------------------------------------- */

int ae_cli_info(int argc, char **argv) {
  static const struct option options[] = {COMMON_LONG_OPTIONS,
                                          {NULL, 0, NULL, 0}};
  common_options common;
  common_init(&common);
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    int handled = common_option(opt, &common);
    if (handled < 0) return AE_EXIT_USAGE;
    if (handled) continue;
    FILE *f = opt == OPT_HELP ? stdout : stderr;
    fprintf(f,
            "Usage: archeval info [OPTIONS]\n"
            "Prints the server's description (GET /v1): version,\n"
            "backends, datasets, limits.\n%s",
            common_help);
    return opt == OPT_HELP ? AE_EXIT_OK : AE_EXIT_USAGE;
  }
  if (optind != argc) {
    fprintf(stderr, "archeval: info takes no arguments\n");
    return AE_EXIT_USAGE;
  }
  ae_http_client *client;
  int code = open_client(&common, &client);
  if (code != AE_EXIT_OK) return code;
  json_t *info;
  code = call_api(client, "GET", "/v1", NULL, NULL, REQUEST_TIMEOUT_MS, &info);
  if (code == AE_EXIT_OK && info) code = print_json(info, 1);
  json_decref(info);
  ae_http_client_free(client);
  return code;
}
