/* cli_rank.c: `archeval rank [FILE|-]`: ranks a population of scorecards
 * with the combined rank of ranking.md §5-6 (api/rank.h) and prints a
 * table, or with --json the ranking object, or with --csv one row per
 * architecture.
 *
 * The input is what the other commands print: `archeval score` lines
 * ({"result": ...} or {"error": ...}), job resources (`get`, `list
 * --json`, `submit --wait`), {"jobs": [...]}, bare scorecards, as JSON
 * lines, a JSON array, or several JSON texts one after the other.  Items
 * without a scorecard (a failed or unfinished job) are left out with a
 * note on standard error.  Single-threaded; everything here is owned by
 * ae_cli_rank's frame. */
#include "config.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/rank.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "clients/cli.h"

#define RANK_MAX_INPUT (256u << 20) /* bytes of JSON read at most */

static void rank_usage(FILE *f) {
  fprintf(f,
          "Usage: archeval rank [OPTIONS] [FILE|-]\n"
          "Ranks a population of scorecards with the combined rank (the sum\n"
          "of log(rank / n) over the components) and prints a table, best\n"
          "first.\n"
          "FILE (default '-', standard input) holds what `archeval score`,\n"
          "`get`, `list --json` or `submit --wait` print: JSON lines, a JSON\n"
          "array, or JSON texts one after another; each item a job (its\n"
          "\"result\" is ranked), a score line, or a bare scorecard.\n"
          "\n"
          "Options:\n"
          "  --components SET      \"default\" (the default; falls back to\n"
          "                        \"fast\" when some scorecard lacks its\n"
          "                        metrics), \"fast\", or a comma-separated\n"
          "                        list of metrics (group.field); a metric\n"
          "                        the ranking does not know needs its\n"
          "                        direction: name:higher or name:lower\n"
          "  --aggregate A         log_rank (default) or rank_sum\n"
          "  --json                print the ranking as one JSON object\n"
          "  --csv                 print one CSV row per architecture\n"
          "  --list-metrics        print the known metrics and exit\n"
          "  -h, --help            show this help\n"
          "\n"
          "Table: rank and the aspect ranks E C G X (expressivity,\n"
          "convergence, generalization, complexity) count from 1 = best;\n"
          "each component shows its value and its rank, 1 = worst .. n =\n"
          "best (ties share the average, null ranks worst); * marks the\n"
          "Pareto front over the aspects.\n"
          "\n"
          "Exit status: 0 ranked, 1 the input could not be read, 2 bad\n"
          "usage, 3 the input is not JSON, holds no scorecard, or has no\n"
          "value for any component.\n");
}

/* The population being read: scorecards (borrowed from roots), with an id
 * and an architecture label each. */
typedef struct {
  json_t **roots; /* every parsed JSON text, owned */
  size_t n_roots, cap_roots;
  json_t **cards; /* borrowed */
  char **ids;     /* malloc'd */
  char **labels;  /* malloc'd or NULL */
  size_t n, cap;
  size_t items; /* items seen, ranked or not */
  size_t left_out;
} population;

static void population_free(population *p) {
  for (size_t i = 0; i < p->n_roots; i++)
    json_decref(p->roots[i]);
  for (size_t i = 0; i < p->n; i++) {
    free(p->ids[i]);
    free(p->labels[i]);
  }
  free(p->roots);
  free(p->cards);
  free(p->ids);
  free(p->labels);
}

/* A short name of the architecture a job's request describes, or NULL. */
static char *architecture_label(json_t *item) {
  json_t *arch =
      json_object_get(json_object_get(item, "request"), "architecture");
  if (!json_is_object(arch)) return NULL;
  static const char *const keys[] = {"cell", "dag", "model", "genotype"};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
    json_t *v = json_object_get(arch, keys[k]);
    if (json_is_string(v)) return strdup(json_string_value(v));
  }
  json_t *type = json_object_get(arch, "type");
  return json_is_string(type) ? strdup(json_string_value(type)) : NULL;
}

static int is_bare_scorecard(json_t *item) {
  static const char *const groups[] = {
      "topology", "expressivity", "convergence", "generalization", "proxies"};
  for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
    if (json_is_object(json_object_get(item, groups[g]))) return 1;
  return 0;
}

static int add_card(population *p, json_t *card, json_t *item) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 64;
    json_t **cards = realloc(p->cards, cap * sizeof *cards);
    if (cards) p->cards = cards;
    char **ids = realloc(p->ids, cap * sizeof *ids);
    if (ids) p->ids = ids;
    char **labels = realloc(p->labels, cap * sizeof *labels);
    if (labels) p->labels = labels;
    if (!cards || !ids || !labels) return AE_ENOMEM;
    p->cap = cap;
  }
  const char *id = json_string_value(json_object_get(item, "id"));
  if (!id) id = json_string_value(json_object_get(item, "client_ref"));
  char *copy = NULL;
  if (id) {
    copy = strdup(id);
  } else if (asprintf(&copy, "#%zu", p->items) < 0) {
    copy = NULL;
  }
  if (!copy) return AE_ENOMEM;
  p->cards[p->n] = card;
  p->ids[p->n] = copy;
  p->labels[p->n] = architecture_label(item);
  p->n++;
  return AE_OK;
}

/* Takes one item (an object); 1-based item numbers count every item. */
static int take_item(population *p, json_t *item, int depth) {
  if (!json_is_object(item)) {
    fprintf(stderr,
            "archeval rank: item %zu is not a JSON object (a job or a "
            "scorecard)\n",
            p->items + 1);
    return AE_EINVAL;
  }
  json_t *jobs = json_object_get(item, "jobs");
  if (depth == 0 && json_is_array(jobs) && !json_object_get(item, "result")) {
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job) {
      int rc = take_item(p, job, 1);
      if (rc) return rc;
    }
    return AE_OK;
  }
  p->items++;
  json_t *result = json_object_get(item, "result");
  const char *state = json_string_value(json_object_get(item, "state"));
  if (json_is_object(result) && (!state || !strcmp(state, "succeeded")))
    return add_card(p, result, item);
  if (result || json_object_get(item, "error") || state) {
    const char *id = json_string_value(json_object_get(item, "id"));
    fprintf(stderr,
            "archeval rank: item %zu%s%s%s has no scorecard (%s); "
            "left out\n",
            p->items, id ? " (" : "", id ? id : "", id ? ")" : "",
            state ? state : "error");
    p->left_out++;
    return AE_OK;
  }
  if (is_bare_scorecard(item)) return add_card(p, item, item);
  fprintf(stderr, "archeval rank: item %zu is neither a job nor a scorecard\n",
          p->items);
  return AE_EINVAL;
}

static size_t line_of(const char *buf, size_t offset) {
  size_t line = 1;
  for (size_t i = 0; i < offset; i++)
    line += buf[i] == '\n';
  return line;
}

/* Parses every JSON text in buf and takes its items. */
static int read_population(const char *buf, size_t len, population *p) {
  size_t off = 0;
  for (;;) {
    while (off < len && (buf[off] == ' ' || buf[off] == '\t' ||
                         buf[off] == '\n' || buf[off] == '\r'))
      off++;
    if (off >= len) break;
    json_error_t e;
    memset(&e, 0, sizeof e);
    json_t *root =
        json_loadb(buf + off, len - off,
                   JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &e);
    if (!root) {
      size_t line = line_of(buf, off) + (e.line > 0 ? (size_t)e.line - 1 : 0);
      fprintf(stderr, "archeval rank: not JSON: line %zu, column %d: %s\n",
              line, e.column < 0 ? 0 : e.column, e.text);
      return AE_EINVAL;
    }
    if (p->n_roots == p->cap_roots) {
      size_t cap = p->cap_roots ? p->cap_roots * 2 : 16;
      json_t **roots = realloc(p->roots, cap * sizeof *roots);
      if (!roots) {
        json_decref(root);
        return AE_ENOMEM;
      }
      p->roots = roots;
      p->cap_roots = cap;
    }
    p->roots[p->n_roots++] = root;
    if (e.position <= 0) return AE_EINTERNAL;
    off += (size_t)e.position;
    int rc = AE_OK;
    if (json_is_array(root)) {
      size_t i;
      json_t *item;
      json_array_foreach(root, i, item) {
        rc = take_item(p, item, 0);
        if (rc) break;
      }
    } else {
      rc = take_item(p, root, 0);
    }
    if (rc) return rc;
  }
  return AE_OK;
}

/* ---- output ------------------------------------------------------------- */

static void format_number(char *out, size_t size, double v, const char *fmt) {
  if (isfinite(v))
    snprintf(out, size, fmt, v);
  else
    snprintf(out, size, "null");
}

static const char aspect_letters[AE_ASPECT_COUNT] = {'E', 'C', 'G', 'X'};

/* The table: a header, then one row per member, best first. */
static int print_table(const ae_rank_result *r, const population *p) {
  size_t nc = r->n_components, nm = r->n_metrics;
  int any_label = 0;
  for (size_t i = 0; i < p->n; i++)
    any_label |= p->labels[i] != NULL;
  size_t ncols = 4 + AE_ASPECT_COUNT + nc + (size_t)any_label;
  size_t rows = r->n + 1;
  char **cell = calloc(rows * ncols, sizeof *cell);
  size_t *width = calloc(ncols, sizeof *width);
  if (!cell || !width) {
    free(cell);
    free(width);
    return AE_ENOMEM;
  }
  int rc = AE_OK;
  char buf[128];
#define SET(row, col, text)                                                    \
  do {                                                                         \
    if (rc == AE_OK && !(cell[(row)*ncols + (col)] = strdup(text)))            \
      rc = AE_ENOMEM;                                                          \
  } while (0)
  SET(0, 0, "rank");
  SET(0, 1, "id");
  SET(0, 2, "score");
  SET(0, 3, "front");
  for (int a = 0; a < AE_ASPECT_COUNT; a++) {
    char h[2] = {aspect_letters[a], 0};
    SET(0, 4 + (size_t)a, h);
  }
  for (size_t c = 0; c < nc; c++)
    SET(0, 4 + AE_ASPECT_COUNT + c, r->metrics[c].name);
  if (any_label) SET(0, ncols - 1, "architecture");
  for (size_t k = 0; k < r->n; k++) {
    size_t i = r->order[k], row = k + 1;
    format_number(buf, sizeof buf, r->rank[i], "%g");
    SET(row, 0, buf);
    SET(row, 1, p->ids[i]);
    format_number(buf, sizeof buf, r->score[i], "%.4f");
    SET(row, 2, buf);
    SET(row, 3, r->pareto[i] ? "*" : "");
    for (int a = 0; a < AE_ASPECT_COUNT; a++) {
      double v = r->aspect_rank[i * AE_ASPECT_COUNT + a];
      if (isfinite(v))
        snprintf(buf, sizeof buf, "%g", v);
      else
        snprintf(buf, sizeof buf, "-");
      SET(row, 4 + (size_t)a, buf);
    }
    for (size_t c = 0; c < nc; c++) {
      char value[64];
      format_number(value, sizeof value, r->values[i * nm + c], "%.6g");
      snprintf(buf, sizeof buf, "%s (%g)", value, r->ranks[i * nm + c]);
      SET(row, 4 + AE_ASPECT_COUNT + c, buf);
    }
    if (any_label) SET(row, ncols - 1, p->labels[i] ? p->labels[i] : "-");
  }
#undef SET
  if (rc == AE_OK) {
    for (size_t x = 0; x < rows * ncols; x++) {
      size_t len = strlen(cell[x]);
      if (len > width[x % ncols]) width[x % ncols] = len;
    }
    for (size_t row = 0; row < rows; row++) {
      for (size_t col = 0; col < ncols; col++) {
        const char *text = cell[row * ncols + col];
        int last = col + 1 == ncols;
        /* Numbers right-aligned, names left-aligned. */
        int left = col == 1 || (any_label && last);
        if (left && last)
          printf("%s", text);
        else if (left)
          printf("%-*s  ", (int)width[col], text);
        else
          printf("%*s%s", (int)width[col], text, last ? "" : "  ");
      }
      putchar('\n');
    }
  }
  for (size_t x = 0; x < rows * ncols; x++)
    free(cell[x]);
  free(cell);
  free(width);
  return rc;
}

static void print_preface(const ae_rank_result *r, const population *p) {
  printf("%zu architectures ranked with the \"%s\" combination", r->n,
         r->combination);
  if (r->fallback) printf(" (\"default\" fell back)");
  printf(", aggregate %s", ae_rank_aggregate_name(r->aggregate));
  if (p->left_out)
    printf("; %zu items without a scorecard left out", p->left_out);
  printf("\n");
  if (r->n_skipped) {
    printf("skipped (in no scorecard):");
    for (size_t s = 0; s < r->n_skipped; s++)
      printf("%s %s", s ? "," : "", r->skipped[s]);
    printf("\n");
  }
  printf("aspects E C G X:");
  for (int a = 0; a < AE_ASPECT_COUNT; a++) {
    printf("%s %c =", a ? ";" : "", aspect_letters[a]);
    int any = 0;
    for (size_t c = 0; c < r->n_metrics; c++) {
      if ((int)r->metrics[c].aspect != a) continue;
      printf("%s %s", any ? "," : "", r->metrics[c].name);
      any = 1;
    }
    if (!any) printf(" (none: -)");
  }
  printf("\nrank, E C G X: 1 = best; component (rank): 1 = worst .. %zu = "
         "best; * = Pareto front\n\n",
         r->n);
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_field(const char *s) {
  if (!strpbrk(s, ",\"\r\n")) {
    fputs(s, stdout);
    return;
  }
  putchar('"');
  for (; *s; s++) {
    if (*s == '"') putchar('"');
    putchar(*s);
  }
  putchar('"');
}

static void csv_number(double v) {
  if (isfinite(v)) printf("%.17g", v);
}

static void print_csv(const ae_rank_result *r, const population *p) {
  size_t nm = r->n_metrics;
  printf("rank,id,architecture,score,pareto");
  for (int a = 0; a < AE_ASPECT_COUNT; a++)
    printf(",aspect_rank.%s", ae_rank_aspect_name((ae_rank_aspect)a));
  for (int a = 0; a < AE_ASPECT_COUNT; a++)
    printf(",aspect_score.%s", ae_rank_aspect_name((ae_rank_aspect)a));
  for (size_t c = 0; c < nm; c++) {
    putchar(',');
    csv_field(r->metrics[c].name);
    putchar(',');
    csv_field(r->metrics[c].name);
    fputs(".rank", stdout);
  }
  putchar('\n');
  for (size_t k = 0; k < r->n; k++) {
    size_t i = r->order[k];
    csv_number(r->rank[i]);
    putchar(',');
    csv_field(p->ids[i]);
    putchar(',');
    csv_field(p->labels[i] ? p->labels[i] : "");
    putchar(',');
    csv_number(r->score[i]);
    printf(",%s", r->pareto[i] ? "true" : "false");
    for (int a = 0; a < AE_ASPECT_COUNT; a++) {
      putchar(',');
      csv_number(r->aspect_rank[i * AE_ASPECT_COUNT + a]);
    }
    for (int a = 0; a < AE_ASPECT_COUNT; a++) {
      putchar(',');
      csv_number(r->aspect_score[i * AE_ASPECT_COUNT + a]);
    }
    for (size_t c = 0; c < nm; c++) {
      putchar(',');
      csv_number(r->values[i * nm + c]);
      putchar(',');
      csv_number(r->ranks[i * nm + c]);
    }
    putchar('\n');
  }
}

/* The ranking JSON with each member's architecture label added. */
static int print_json(const ae_rank_result *r, const population *p) {
  json_t *j = ae_rank_result_to_json(r, (const char *const *)p->ids);
  if (!j) return AE_ENOMEM;
  size_t k;
  json_t *m;
  json_array_foreach(json_object_get(j, "members"), k, m) {
    size_t i = (size_t)json_integer_value(json_object_get(m, "index"));
    json_t *label = p->labels[i] ? json_string(p->labels[i]) : json_null();
    if (!label || json_object_set_new(m, "architecture", label)) {
      json_decref(j);
      return AE_ENOMEM;
    }
  }
  char *text = ae_json_dumps(j);
  json_decref(j);
  if (!text) return AE_ENOMEM;
  puts(text);
  free(text);
  return AE_OK;
}

static void list_metrics(void) {
  size_t n;
  const ae_rank_known_metric *t = ae_rank_known_table(&n);
  printf("metric  better  aspect\n");
  for (size_t i = 0; i < n; i++)
    printf("%s  %s  %s\n", t[i].name, t[i].better > 0 ? "higher" : "lower",
           ae_rank_aspect_name(t[i].aspect));
}

int ae_cli_rank(int argc, char **argv) {
  enum { OPT_JSON = 256, OPT_CSV, OPT_LIST };
  static const struct option opts[] = {
      {"components", required_argument, NULL, 'c'},
      {"aggregate", required_argument, NULL, 'a'},
      {"json", no_argument, NULL, OPT_JSON},
      {"csv", no_argument, NULL, OPT_CSV},
      {"list-metrics", no_argument, NULL, OPT_LIST},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *components = NULL;
  ae_rank_aggregate aggregate = AE_RANK_LOG_RANK;
  int as_json = 0, as_csv = 0;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      components = optarg;
      break;
    case 'a': {
      int a = ae_rank_aggregate_parse(optarg);
      if (a < 0) {
        fprintf(stderr,
                "archeval rank: --aggregate must be log_rank or rank_sum\n");
        return AE_EXIT_USAGE;
      }
      aggregate = (ae_rank_aggregate)a;
      break;
    }
    case OPT_JSON:
      as_json = 1;
      break;
    case OPT_CSV:
      as_csv = 1;
      break;
    case OPT_LIST:
      list_metrics();
      return AE_EXIT_OK;
    case 'h':
      rank_usage(stdout);
      return AE_EXIT_OK;
    default:
      fprintf(stderr, "archeval rank: bad option '%s'\n", argv[optind - 1]);
      rank_usage(stderr);
      return AE_EXIT_USAGE;
    }
  }
  if (as_json && as_csv) {
    fprintf(stderr, "archeval rank: --json and --csv exclude each other\n");
    return AE_EXIT_USAGE;
  }
  if (argc - optind > 1) {
    fprintf(stderr, "archeval rank: one input file at most\n");
    rank_usage(stderr);
    return AE_EXIT_USAGE;
  }
  const char *path = optind < argc ? argv[optind] : "-";

  ae_error err = AE_ERROR_INIT;
  ae_rank_spec spec;
  if (ae_rank_spec_parse(components, aggregate, &spec, &err)) {
    fprintf(stderr, "archeval rank: --components: %s\n",
            err.reason ? err.reason : ae_strerror(err.code));
    ae_error_clear(&err);
    return AE_EXIT_USAGE;
  }

  int status = AE_EXIT_OK;
  char *buf = NULL;
  size_t len = 0;
  population pop;
  memset(&pop, 0, sizeof pop);
  ae_rank_result result;
  memset(&result, 0, sizeof result);
  int rc = ae_cli_read_file(path, RANK_MAX_INPUT, &buf, &len);
  if (rc) {
    fprintf(stderr, "archeval rank: cannot read %s: %s\n",
            strcmp(path, "-") ? path : "standard input",
            rc == AE_EINVAL ? "larger than 256 MiB" : ae_strerror(rc));
    status = AE_EXIT_FAILURE;
    goto done;
  }
  rc = read_population(buf, len, &pop);
  if (rc == AE_ENOMEM) {
    fprintf(stderr, "archeval rank: out of memory\n");
    status = AE_EXIT_FAILURE;
    goto done;
  }
  if (rc) {
    status = AE_EXIT_INVALID;
    goto done;
  }
  if (pop.n == 0) {
    fprintf(stderr, "archeval rank: no scorecard in %s\n",
            strcmp(path, "-") ? path : "standard input");
    status = AE_EXIT_INVALID;
    goto done;
  }
  rc = ae_rank_compute(pop.cards, pop.n, &spec, &result, &err);
  if (rc) {
    fprintf(stderr, "archeval rank: %s\n",
            err.reason ? err.reason : ae_strerror(rc));
    status = rc == AE_ENOMEM ? AE_EXIT_FAILURE : AE_EXIT_INVALID;
    goto done;
  }
  for (size_t w = 0; w < result.n_warnings; w++)
    fprintf(stderr, "archeval rank: %s\n", result.warnings[w]);
  if (as_json) {
    rc = print_json(&result, &pop);
  } else if (as_csv) {
    print_csv(&result, &pop);
  } else {
    print_preface(&result, &pop);
    rc = print_table(&result, &pop);
  }
  if (rc) {
    fprintf(stderr, "archeval rank: out of memory\n");
    status = AE_EXIT_FAILURE;
  }
  if (fflush(stdout) != 0) {
    perror("archeval rank: standard output");
    status = AE_EXIT_FAILURE;
  }

done:
  ae_rank_result_free(&result);
  population_free(&pop);
  free(buf);
  ae_rank_spec_free(&spec);
  ae_error_clear(&err);
  return status;
}
