/* cli_canon.c: `archeval canon [FILE|-]`: prints the canonical key and form
 * (api/canon.h) of each request's architecture, one JSON line per request
 * in input order: {"key","canonical","degenerate","ops"} or {"error":
 * problem}.  The input is one job request (the body of POST /v1/jobs), a
 * JSON array of them or a batch body {"jobs": [...]}, or bare
 * architecture objects.  No server, no engine.
 * Single-threaded. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/canon.h"
#include "api/problem.h"
#include "api/status.h"
#include "clients/cli.h"

static void canon_usage(FILE *f) {
  fprintf(f,
          "Usage: archeval canon [FILE|-]\n"
          "Prints the canonical key and form of each request's architecture,\n"
          "one JSON line per request, in order: {\"key\", \"canonical\",\n"
          "\"degenerate\", \"ops\"} or {\"error\": problem}.  Requests with\n"
          "one key compute the same network (see api/canon.h).\n"
          "FILE (default '-', standard input) holds one request, a JSON\n"
          "array of them or {\"jobs\": [...]}, or architecture objects.\n"
          "\n"
          "Exit status: 0 every architecture was valid, 1 an I/O error,\n"
          "2 bad usage, 3 an architecture was rejected.\n");
}

/* Prints one line for item (borrowed); returns 0 or 1 when rejected. */
static int canon_one(const json_t *item, const char *prefix,
                     const ae_limits *lim) {
  const json_t *arch = json_object_get(item, "architecture");
  char pointer[64];
  snprintf(pointer, sizeof pointer, "%s%s", prefix,
           arch ? "/architecture" : "");
  if (!arch) arch = item;
  ae_problem p = AE_PROBLEM_INIT;
  ae_arch a;
  ae_canon c;
  json_t *line = NULL;
  int rejected = 0;
  int rc = ae_arch_from_json(arch, pointer, lim, &a, &p);
  if (rc == AE_OK) {
    rc = ae_arch_canon(&a, &c);
    ae_arch_free(&a);
    if (rc == AE_OK) {
      line = json_pack("{s:s, s:s, s:b, s:i}", "key", c.key, "canonical",
                       c.form, "degenerate", c.degenerate, "ops", c.n_ops);
      ae_canon_free(&c);
    } else {
      ae_problem_set(&p, 500, "internal", "Internal error",
                     "canonical form: %s", ae_strerror(rc));
    }
  }
  if (!line) {
    rejected = 1;
    line = json_pack("{s:o}", "error", ae_problem_to_json(&p, NULL));
  }
  ae_problem_clear(&p);
  char *s = line ? json_dumps(line, JSON_COMPACT) : NULL;
  puts(s ? s : "{\"error\":{\"title\":\"out of memory\"}}");
  free(s);
  json_decref(line);
  return rejected;
}

int ae_cli_canon(int argc, char **argv) {
  const char *path = "-";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      canon_usage(stdout);
      return AE_EXIT_OK;
    }
    if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "archeval canon: unknown option '%s'\n", argv[i]);
      canon_usage(stderr);
      return AE_EXIT_USAGE;
    }
    if (i != argc - 1) {
      canon_usage(stderr);
      return AE_EXIT_USAGE;
    }
    path = argv[i];
  }
  json_error_t err;
  json_t *doc = strcmp(path, "-")
                    ? json_load_file(path, JSON_REJECT_DUPLICATES, &err)
                    : json_loadf(stdin, JSON_REJECT_DUPLICATES, &err);
  if (!doc) {
    fprintf(stderr, "archeval canon: %s: line %d column %d: %s\n",
            strcmp(path, "-") ? path : "<stdin>", err.line, err.column,
            err.text);
    return err.line < 0 ? AE_EXIT_FAILURE : AE_EXIT_INVALID;
  }
  ae_limits lim;
  ae_limits_default(&lim);
  int rejected = 0;
  /* A batch body {"jobs": [...]} reads like a bare array. */
  json_t *list = json_is_array(json_object_get(doc, "jobs"))
                     ? json_object_get(doc, "jobs")
                     : doc;
  if (json_is_array(list)) {
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
      char prefix[32];
      snprintf(prefix, sizeof prefix, "%s/%zu", list == doc ? "" : "/jobs", i);
      rejected += canon_one(item, prefix, &lim);
    }
  } else {
    rejected = canon_one(doc, "", &lim);
  }
  json_decref(doc);
  if (fflush(stdout) != 0) {
    perror("archeval canon: stdout");
    return AE_EXIT_FAILURE;
  }
  return rejected ? AE_EXIT_INVALID : AE_EXIT_OK;
}
