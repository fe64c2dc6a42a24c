/* cli_study.c: `archeval study create|add|show|list|rank|export|delete`,
 * the studies of api.md over HTTP (issue 13), with a progress bar while a
 * study runs (--watch).
 *
 * Answers are printed on stdout (JSON, a table, or the server's csv /
 * jsonl export as is); problem+json errors go to stderr, one line and one
 * line per field, with the exit statuses of cli.h.  Architectures are
 * added in batches (--batch, the server's max_batch by default 256), each
 * with its own Idempotency-Key, so a retried batch never adds twice.
 * Single-threaded: everything belongs to the CLI's main thread. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/scorecard.h"
#include "api/status.h"
#include "clients/cli.h"
#include "clients/http_client.h"

#define STUDY_DEFAULT_SERVER "http://127.0.0.1:8000"
#define STUDY_TIMEOUT_MS 300000L
#define STUDY_MAX_INPUT ((size_t)1 << 30)
#define STUDY_DEFAULT_BATCH 256
#define WATCH_INTERVAL_S 0.5
#define BAR_WIDTH 30

typedef struct {
  const char *server;
  int tries;
  int json;
  int watch;
  int quiet;
  long batch;
  const char *name, *profile, *metrics, *seed, *rank, *aggregate, *format;
  double timeout_s;
} study_options;

enum {
  OPT_SERVER = 1000,
  OPT_RETRIES,
  OPT_JSON,
  OPT_WATCH,
  OPT_BATCH,
  OPT_NAME,
  OPT_PROFILE,
  OPT_METRICS,
  OPT_SEED,
  OPT_RANK,
  OPT_AGGREGATE,
  OPT_FORMAT,
  OPT_TIMEOUT,
  OPT_QUIET,
  OPT_HELP
};

static void study_usage(FILE *f) {
  fprintf(
      f,
      "Usage: archeval study COMMAND [OPTIONS] ...\n"
      "A study is a population of architectures scored with one data,\n"
      "profile, settings and seed, and ranked together (api.md "
      "\"Studies\").\n"
      "\n"
      "Commands:\n"
      "  create [BODY.json]   create a study; BODY holds {\"name\", "
      "\"data\",\n"
      "                       \"settings\", \"seed\", \"profile\", "
      "\"metrics\",\n"
      "                       \"rank\"}, which the options below override;\n"
      "                       prints the study (its id with --quiet)\n"
      "  add ID FILE|-        add architectures: a JSON array, "
      "{\"architectures\":\n"
      "                       [...]} or one architecture per line; prints "
      "one\n"
      "                       job id per line\n"
      "  show ID              the study: counts by state and progress\n"
      "  list                 every study, newest first\n"
      "  rank ID              the ranking as a table, best first (--json: "
      "as\n"
      "                       the server gives it); * marks the Pareto "
      "front\n"
      "  export ID            every member, one row each (--format csv or\n"
      "                       jsonl)\n"
      "  delete ID            delete the study and its jobs\n"
      "\n"
      "Options:\n"
      "  --name NAME          create: the study's name\n"
      "  --profile P          create: the members' profile\n"
      "  --metrics A,B        create: the members' metric groups\n"
      "  --seed N             create: the members' seed\n"
      "  --rank SET           create: default, fast or metric,metric,...\n"
      "  --aggregate A        create: log_rank or rank_sum\n"
      "  --batch N            add: architectures per request (default %d)\n"
      "  --watch              add, show: a progress bar on stderr until "
      "every\n"
      "                       member has finished\n"
      "  --timeout S          --watch: give up after S seconds\n"
      "  --format F           export: csv (default) or jsonl\n"
      "  --json               rank, show: the server's JSON\n"
      "  --quiet              create: print the id only\n"
      "  --server URL         the archevald (default $ARCHEVAL_SERVER, else\n"
      "                       " STUDY_DEFAULT_SERVER ")\n"
      "  --retries N          retries of 429/503 and connection failures\n"
      "                       (default 4)\n"
      "\n"
      "Exit status: 0 done, 1 an I/O error (--watch: a member failed or\n"
      "was cancelled), 2 bad usage, 3 rejected (4xx), 4 unavailable, 5\n"
      "--timeout passed, 6 no such study.\n",
      STUDY_DEFAULT_BATCH);
}

/* ---- HTTP ---- */

static const char *server_of(const study_options *o) {
  if (o->server && *o->server) return o->server;
  const char *env = getenv("ARCHEVAL_SERVER");
  return env && *env ? env : STUDY_DEFAULT_SERVER;
}

static int exit_for(long status) {
  if (status >= 200 && status < 300) return AE_EXIT_OK;
  if (status == 404) return AE_EXIT_NOT_FOUND;
  if (status == 429 || status >= 500) return AE_EXIT_UNAVAILABLE;
  if (status >= 400) return AE_EXIT_INVALID;
  return AE_EXIT_FAILURE;
}

/* The problem of an error answer, on stderr. */
static void print_error(const char *method, const char *path,
                        const ae_http_response *r) {
  json_t *p = json_loadb(r->body, r->body_len, 0, NULL);
  const char *code = json_string_value(json_object_get(p, "code"));
  const char *detail = json_string_value(json_object_get(p, "detail"));
  fprintf(stderr, "archeval: %s %s: %ld%s%s%s%s\n", method, path, r->status,
          code ? " " : "", code ? code : "", detail ? ": " : "",
          detail ? detail : "");
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(p, "errors"), i, e) {
    const char *ptr = json_string_value(json_object_get(e, "pointer"));
    const char *why = json_string_value(json_object_get(e, "detail"));
    fprintf(stderr, "  %s: %s\n", ptr && *ptr ? ptr : "(body)",
            why ? why : "?");
  }
  if (!p)
    fprintf(stderr, "  %.*s\n", (int)(r->body_len > 300 ? 300 : r->body_len),
            r->body ? r->body : "");
  json_decref(p);
}

/* One call; on 2xx AE_EXIT_OK with the raw answer kept in *raw (when not
 * NULL) or parsed into *out (when not NULL). */
static int call(ae_http_client *c, const char *method, const char *path,
                const char *body, const char *key, json_t **out,
                ae_http_response *raw) {
  if (out) *out = NULL;
  ae_http_response r = AE_HTTP_RESPONSE_INIT;
  char err[512];
  int rc = ae_http_request(c, method, path, body, key, STUDY_TIMEOUT_MS, &r,
                           err, sizeof err);
  if (rc == AE_ENOMEM) {
    fprintf(stderr, "archeval: out of memory\n");
    return AE_EXIT_FAILURE;
  }
  if (rc) {
    fprintf(stderr, "archeval: no answer: %s\n", err);
    return AE_EXIT_UNAVAILABLE;
  }
  int code = exit_for(r.status);
  if (code) {
    print_error(method, path, &r);
  } else if (out && r.body_len) {
    json_error_t jerr;
    if (!(*out = json_loadb(r.body, r.body_len, 0, &jerr))) {
      fprintf(stderr, "archeval: %s %s: unparsable answer: %s\n", method, path,
              jerr.text);
      code = AE_EXIT_FAILURE;
    }
  }
  if (!code && raw) {
    *raw = r;
    return code;
  }
  ae_http_response_clear(&r);
  return code;
}

static int print_json(json_t *v) {
  char *text = ae_json_dumps_flags(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (!text) return AE_EXIT_FAILURE;
  puts(text);
  free(text);
  return fflush(stdout) || ferror(stdout) ? AE_EXIT_FAILURE : AE_EXIT_OK;
}

/* Study ids are URL-safe; anything else is refused before a URL. */
static int valid_id(const char *id) {
  if (!*id || strlen(id) > 31) return 0;
  for (const char *c = id; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
      return 0;
  return 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- create ---- */

/* Splits "a,b" into a JSON array of strings. */
static json_t *split_list(const char *text) {
  json_t *a = json_array();
  const char *p = text;
  while (a && *p) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (n) json_array_append_new(a, json_stringn(p, n));
    p += n + (comma != NULL);
  }
  return a;
}

static int cmd_create(ae_http_client *c, const study_options *o, int argc,
                      char **argv) {
  json_t *body = NULL;
  if (argc > 1) {
    fprintf(stderr, "archeval study create: one BODY file at most\n");
    return AE_EXIT_USAGE;
  }
  if (argc == 1) {
    char *text = NULL;
    size_t len = 0;
    if (ae_cli_read_file(argv[0], STUDY_MAX_INPUT, &text, &len)) {
      fprintf(stderr, "archeval: cannot read %s: %s\n", argv[0],
              strerror(errno));
      return AE_EXIT_FAILURE;
    }
    json_error_t jerr;
    body = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!json_is_object(body)) {
      fprintf(stderr, "archeval: %s: not a JSON object (%s)\n", argv[0],
              body ? "another value" : jerr.text);
      json_decref(body);
      return AE_EXIT_INVALID;
    }
  } else if (!(body = json_object())) {
    return AE_EXIT_FAILURE;
  }
  if (o->name) json_object_set_new(body, "name", json_string(o->name));
  if (o->profile) json_object_set_new(body, "profile", json_string(o->profile));
  if (o->metrics) json_object_set_new(body, "metrics", split_list(o->metrics));
  if (o->seed) {
    char *end;
    errno = 0;
    long long seed = strtoll(o->seed, &end, 10);
    if (errno || *end || end == o->seed) {
      fprintf(stderr, "archeval: --seed wants an integer, not '%s'\n", o->seed);
      json_decref(body);
      return AE_EXIT_USAGE;
    }
    json_object_set_new(body, "seed", json_integer(seed));
  }
  if (o->rank || o->aggregate) {
    json_t *rank = json_object();
    const char *set = o->rank ? o->rank : "default";
    json_object_set_new(rank, "components",
                        strchr(set, ',') || strchr(set, '.')
                            ? split_list(set)
                            : json_string(set));
    if (o->aggregate)
      json_object_set_new(rank, "aggregate", json_string(o->aggregate));
    json_object_set_new(body, "rank", rank);
  }
  char *text = ae_json_dumps(body);
  json_decref(body);
  char key[37];
  if (!text || ae_http_uuid4(key)) {
    free(text);
    return AE_EXIT_FAILURE;
  }
  json_t *study = NULL;
  int code = call(c, "POST", "/v1/studies", text, key, &study, NULL);
  free(text);
  if (!code) {
    if (o->quiet)
      printf("%s\n", json_string_value(json_object_get(study, "id")));
    else
      code = print_json(study);
  }
  json_decref(study);
  return code;
}

/* ---- watch ---- */

/* Draws the progress bar of a study resource on stderr. */
static void draw_bar(json_t *study, double started) {
  json_t *counts = json_object_get(study, "counts");
  double progress = json_number_value(json_object_get(study, "progress"));
  long long n = json_integer_value(json_object_get(study, "members"));
  long long q = json_integer_value(json_object_get(counts, "queued"));
  long long r = json_integer_value(json_object_get(counts, "running"));
  long long s = json_integer_value(json_object_get(counts, "succeeded"));
  long long f = json_integer_value(json_object_get(counts, "failed"));
  long long x = json_integer_value(json_object_get(counts, "cancelled"));
  long long cached = json_integer_value(json_object_get(counts, "cached"));
  int filled = (int)(progress * BAR_WIDTH + 0.5);
  char bar[BAR_WIDTH + 1];
  for (int i = 0; i < BAR_WIDTH; i++)
    bar[i] = i < filled ? '#' : '.';
  bar[BAR_WIDTH] = '\0';
  fprintf(stderr,
          "\r[%s] %3.0f%% %lld/%lld done (%lld cached, %lld failed, %lld "
          "cancelled; %lld running, %lld queued) %.0f s ",
          bar, progress * 100, s + f + x, n, cached, f, x, r, q,
          now_s() - started);
  fflush(stderr);
}

/* Polls the study until every member has finished; the last resource in
 * *last (new reference).  AE_EXIT_OK, 1 when a member failed. */
static int watch(ae_http_client *c, const char *id, double timeout_s,
                 json_t **last) {
  char path[96];
  snprintf(path, sizeof path, "/v1/studies/%s", id);
  double started = now_s();
  *last = NULL;
  for (;;) {
    json_t *study = NULL;
    int code = call(c, "GET", path, NULL, NULL, &study, NULL);
    if (code) return code;
    draw_bar(study, started);
    json_decref(*last);
    *last = study;
    if (json_number_value(json_object_get(study, "progress")) >= 1.0) break;
    if (timeout_s >= 0 && now_s() - started > timeout_s) {
      fprintf(stderr, "\narcheval: --timeout passed\n");
      return AE_EXIT_TIMEOUT;
    }
    struct timespec ts = {0, (long)(WATCH_INTERVAL_S * 1e9)};
    nanosleep(&ts, NULL);
  }
  fputc('\n', stderr);
  json_t *counts = json_object_get(*last, "counts");
  return json_integer_value(json_object_get(counts, "failed")) ||
                 json_integer_value(json_object_get(counts, "cancelled"))
             ? AE_EXIT_FAILURE
             : AE_EXIT_OK;
}

/* ---- add ---- */

/* The architectures of a file: an array, {"architectures": [...]}, or
 * one JSON value per line (new reference, or NULL with stderr told). */
static json_t *read_architectures(const char *path) {
  char *text = NULL;
  size_t len = 0;
  if (ae_cli_read_file(path, STUDY_MAX_INPUT, &text, &len)) {
    fprintf(stderr, "archeval: cannot read %s: %s\n", path, strerror(errno));
    return NULL;
  }
  json_error_t jerr;
  json_t *all = json_loadb(text, len, 0, &jerr);
  if (json_is_object(all) &&
      json_is_array(json_object_get(all, "architectures"))) {
    json_t *a = json_incref(json_object_get(all, "architectures"));
    json_decref(all);
    all = a;
  }
  if (!all) { /* one per line */
    all = json_array();
    char *line = text;
    size_t lineno = 0;
    while (all && line && *line) {
      char *end = strchr(line, '\n');
      if (end) *end = '\0';
      lineno++;
      if (strspn(line, " \t\r") != strlen(line)) {
        json_t *one = json_loads(line, 0, &jerr);
        if (!one) {
          fprintf(stderr, "archeval: %s:%zu: not JSON: %s\n", path, lineno,
                  jerr.text);
          json_decref(all);
          all = NULL;
          break;
        }
        json_array_append_new(all, one);
      }
      line = end ? end + 1 : NULL;
    }
  }
  free(text);
  if (all && (!json_is_array(all) || json_array_size(all) == 0)) {
    fprintf(stderr, "archeval: %s holds no architectures\n", path);
    json_decref(all);
    return NULL;
  }
  return all;
}

static int cmd_add(ae_http_client *c, const study_options *o, int argc,
                   char **argv) {
  if (argc != 2 || !valid_id(argv[0])) {
    fprintf(stderr, "archeval study add: wants ID FILE|-\n");
    return AE_EXIT_USAGE;
  }
  json_t *archs = read_architectures(argv[1]);
  if (!archs) return AE_EXIT_INVALID;
  char path[96];
  snprintf(path, sizeof path, "/v1/studies/%s/architectures", argv[0]);
  size_t n = json_array_size(archs);
  int code = AE_EXIT_OK;
  for (size_t start = 0; start < n && !code; start += (size_t)o->batch) {
    json_t *slice = json_array();
    for (size_t i = start; slice && i < n && i < start + (size_t)o->batch; i++)
      json_array_append(slice, json_array_get(archs, i));
    json_t *request = json_pack("{s:o}", "architectures", slice);
    char *body = request ? ae_json_dumps(request) : NULL;
    json_decref(request);
    char key[37];
    if (!body || ae_http_uuid4(key)) {
      free(body);
      code = AE_EXIT_FAILURE;
      break;
    }
    json_t *answer = NULL;
    code = call(c, "POST", path, body, key, &answer, NULL);
    free(body);
    size_t k;
    json_t *job;
    json_array_foreach(json_object_get(answer, "jobs"), k, job) {
      printf("%s\n", json_string_value(json_object_get(job, "id")));
    }
    json_decref(answer);
    if (!code && start + (size_t)o->batch < n)
      fprintf(stderr, "archeval: added %zu of %zu\n", start + (size_t)o->batch,
              n);
  }
  json_decref(archs);
  fflush(stdout);
  if (code || !o->watch) return code;
  json_t *last = NULL;
  code = watch(c, argv[0], o->timeout_s, &last);
  json_decref(last);
  return code;
}

/* ---- show, list, delete ---- */

static int cmd_show(ae_http_client *c, const study_options *o, int argc,
                    char **argv) {
  if (argc != 1 || !valid_id(argv[0])) {
    fprintf(stderr, "archeval study show: wants ID\n");
    return AE_EXIT_USAGE;
  }
  json_t *study = NULL;
  int code;
  if (o->watch) {
    code = watch(c, argv[0], o->timeout_s, &study);
    if (study && (code == AE_EXIT_OK || code == AE_EXIT_FAILURE ||
                  code == AE_EXIT_TIMEOUT)) {
      int printed = print_json(study);
      if (printed) code = printed;
    }
  } else {
    char path[96];
    snprintf(path, sizeof path, "/v1/studies/%s", argv[0]);
    code = call(c, "GET", path, NULL, NULL, &study, NULL);
    if (!code) code = print_json(study);
  }
  json_decref(study);
  return code;
}

static int cmd_list(ae_http_client *c, int argc) {
  if (argc != 0) {
    fprintf(stderr, "archeval study list: no arguments\n");
    return AE_EXIT_USAGE;
  }
  char path[160] = "/v1/studies?page_size=1000";
  json_t *all = json_array();
  int code = AE_EXIT_OK;
  while (all && !code) {
    json_t *page = NULL;
    code = call(c, "GET", path, NULL, NULL, &page, NULL);
    if (code) break;
    json_array_extend(all, json_object_get(page, "studies"));
    const char *next =
        json_string_value(json_object_get(page, "next_page_token"));
    if (next)
      snprintf(path, sizeof path, "/v1/studies?page_size=1000&page_token=%s",
               next);
    json_decref(page);
    if (!next) break;
  }
  if (!code) {
    json_t *out = json_pack("{s:O}", "studies", all);
    code = print_json(out);
    json_decref(out);
  }
  json_decref(all);
  return code;
}

static int cmd_delete(ae_http_client *c, int argc, char **argv) {
  if (argc != 1 || !valid_id(argv[0])) {
    fprintf(stderr, "archeval study delete: wants ID\n");
    return AE_EXIT_USAGE;
  }
  char path[96];
  snprintf(path, sizeof path, "/v1/studies/%s", argv[0]);
  return call(c, "DELETE", path, NULL, NULL, NULL, NULL);
}

/* ---- rank, export ---- */

static void print_rank_cell(const json_t *v) {
  if (json_is_number(v))
    printf(" %5.1f", json_number_value(v));
  else
    printf(" %5s", "-");
}

static int cmd_rank(ae_http_client *c, const study_options *o, int argc,
                    char **argv) {
  if (argc != 1 || !valid_id(argv[0])) {
    fprintf(stderr, "archeval study rank: wants ID\n");
    return AE_EXIT_USAGE;
  }
  char path[96];
  snprintf(path, sizeof path, "/v1/studies/%s/ranking", argv[0]);
  json_t *ranking = NULL;
  int code = call(c, "GET", path, NULL, NULL, &ranking, NULL);
  if (code) return code;
  if (o->json) {
    code = print_json(ranking);
    json_decref(ranking);
    return code;
  }
  json_t *rank = json_object_get(ranking, "rank");
  printf("%lld members ranked by %s (%s)\n",
         (long long)json_integer_value(json_object_get(ranking, "n")),
         json_string_value(json_object_get(rank, "combination"))
             ? json_string_value(json_object_get(rank, "combination"))
             : "-",
         json_string_value(json_object_get(rank, "aggregate"))
             ? json_string_value(json_object_get(rank, "aggregate"))
             : "-");
  printf("%6s %10s %5s %5s %5s %5s  %-24s %s\n", "rank", "score", "E", "C", "G",
         "X", "job", "architecture");
  static const char *const aspects[] = {"expressivity", "convergence",
                                        "generalization", "complexity"};
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(ranking, "members"), i, m) {
    printf("%5.1f%s %10.4f", json_number_value(json_object_get(m, "rank")),
           json_is_true(json_object_get(m, "pareto")) ? "*" : " ",
           json_number_value(json_object_get(m, "score")));
    json_t *ar = json_object_get(m, "aspect_ranks");
    for (size_t a = 0; a < 4; a++)
      print_rank_cell(json_object_get(ar, aspects[a]));
    json_t *arch = json_object_get(m, "architecture");
    const char *cell = json_string_value(json_object_get(arch, "cell"));
    const char *dag = json_string_value(json_object_get(arch, "dag"));
    printf("  %-24s %s %s\n", json_string_value(json_object_get(m, "job")),
           json_string_value(json_object_get(arch, "type"))
               ? json_string_value(json_object_get(arch, "type"))
               : "?",
           cell  ? cell
           : dag ? dag
                 : "");
  }
  json_t *bound = json_object_get(ranking, "selection_bound");
  if (json_is_number(json_object_get(bound, "gap")))
    printf(
        "selection bound: validation and test risks within %.4f of each "
        "other (delta %.2f, %lld validation samples)\n",
        json_number_value(json_object_get(bound, "gap")),
        json_number_value(json_object_get(bound, "delta")),
        (long long)json_integer_value(json_object_get(bound, "n_validation")));
  json_decref(ranking);
  return fflush(stdout) ? AE_EXIT_FAILURE : AE_EXIT_OK;
}

static int cmd_export(ae_http_client *c, const study_options *o, int argc,
                      char **argv) {
  const char *format = o->format ? o->format : "csv";
  if (argc != 1 || !valid_id(argv[0]) ||
      (strcmp(format, "csv") && strcmp(format, "jsonl"))) {
    fprintf(stderr, "archeval study export: wants ID and --format csv or "
                    "jsonl\n");
    return AE_EXIT_USAGE;
  }
  char path[128];
  snprintf(path, sizeof path, "/v1/studies/%s/ranking?format=%s", argv[0],
           format);
  ae_http_response r = AE_HTTP_RESPONSE_INIT;
  int code = call(c, "GET", path, NULL, NULL, NULL, &r);
  if (code) return code;
  size_t len = r.body_len, wrote = fwrite(r.body, 1, len, stdout);
  ae_http_response_clear(&r);
  return wrote != len || fflush(stdout) ? AE_EXIT_FAILURE : AE_EXIT_OK;
}

int ae_cli_study(int argc, char **argv) {
  static const struct option longs[] = {
      {"server", required_argument, NULL, OPT_SERVER},
      {"retries", required_argument, NULL, OPT_RETRIES},
      {"json", no_argument, NULL, OPT_JSON},
      {"watch", no_argument, NULL, OPT_WATCH},
      {"batch", required_argument, NULL, OPT_BATCH},
      {"name", required_argument, NULL, OPT_NAME},
      {"profile", required_argument, NULL, OPT_PROFILE},
      {"metrics", required_argument, NULL, OPT_METRICS},
      {"seed", required_argument, NULL, OPT_SEED},
      {"rank", required_argument, NULL, OPT_RANK},
      {"aggregate", required_argument, NULL, OPT_AGGREGATE},
      {"format", required_argument, NULL, OPT_FORMAT},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"quiet", no_argument, NULL, OPT_QUIET},
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0}};
  study_options o = {.tries = AE_HTTP_DEFAULT_TRIES,
                     .batch = STUDY_DEFAULT_BATCH,
                     .timeout_s = -1};
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    study_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? AE_EXIT_USAGE : AE_EXIT_OK;
  }
  const char *command = argv[1];
  argc--;
  argv++;
  optind = 1;
  opterr = 1;
  int opt;
  while ((opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    char *end;
    switch (opt) {
    case OPT_SERVER:
      o.server = optarg;
      break;
    case OPT_RETRIES:
      errno = 0;
      o.tries = (int)strtol(optarg, &end, 10) + 1;
      if (errno || *end || o.tries < 1 || o.tries > 101) {
        fprintf(stderr, "archeval: --retries wants 0..100\n");
        return AE_EXIT_USAGE;
      }
      break;
    case OPT_JSON:
      o.json = 1;
      break;
    case OPT_WATCH:
      o.watch = 1;
      break;
    case OPT_QUIET:
      o.quiet = 1;
      break;
    case OPT_BATCH:
      errno = 0;
      o.batch = strtol(optarg, &end, 10);
      if (errno || *end || o.batch < 1 || o.batch > 1000000) {
        fprintf(stderr, "archeval: --batch wants 1..1000000\n");
        return AE_EXIT_USAGE;
      }
      break;
    case OPT_TIMEOUT:
      errno = 0;
      o.timeout_s = strtod(optarg, &end);
      if (errno || *end || !(o.timeout_s >= 0)) {
        fprintf(stderr, "archeval: --timeout wants seconds\n");
        return AE_EXIT_USAGE;
      }
      break;
    case OPT_NAME:
      o.name = optarg;
      break;
    case OPT_PROFILE:
      o.profile = optarg;
      break;
    case OPT_METRICS:
      o.metrics = optarg;
      break;
    case OPT_SEED:
      o.seed = optarg;
      break;
    case OPT_RANK:
      o.rank = optarg;
      break;
    case OPT_AGGREGATE:
      o.aggregate = optarg;
      break;
    case OPT_FORMAT:
      o.format = optarg;
      break;
    case OPT_HELP:
      study_usage(stdout);
      return AE_EXIT_OK;
    default:
      return AE_EXIT_USAGE;
    }
  }
  argc -= optind;
  argv += optind;
  ae_http_client *c = NULL;
  if (ae_http_client_new(server_of(&o), o.tries, &c)) {
    fprintf(stderr, "archeval: cannot reach '%s' (bad URL?)\n", server_of(&o));
    return AE_EXIT_USAGE;
  }
  int code;
  if (!strcmp(command, "create"))
    code = cmd_create(c, &o, argc, argv);
  else if (!strcmp(command, "add"))
    code = cmd_add(c, &o, argc, argv);
  else if (!strcmp(command, "show"))
    code = cmd_show(c, &o, argc, argv);
  else if (!strcmp(command, "list"))
    code = cmd_list(c, argc);
  else if (!strcmp(command, "rank"))
    code = cmd_rank(c, &o, argc, argv);
  else if (!strcmp(command, "export"))
    code = cmd_export(c, &o, argc, argv);
  else if (!strcmp(command, "delete"))
    code = cmd_delete(c, argc, argv);
  else {
    fprintf(stderr, "archeval study: unknown command '%s'\n", command);
    study_usage(stderr);
    code = AE_EXIT_USAGE;
  }
  ae_http_client_free(c);
  return code;
}
