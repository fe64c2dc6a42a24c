/* rank.c: the combined rank of ranking.md §5-6 (see rank.h for every
 * convention): the table of known metrics with their directions and
 * aspects, parsing a component set, and ranking a population of
 * scorecards.  Pure: no I/O, no mutable globals; the caller owns every
 * struct and calls from one thread. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/rank.h"

#define TIE_RELATIVE 1e-12

/* The one table of directions ("better") and aspects.  Sources:
 * ranking.md §1-4 and §6, scorecard.md and metrics.md (TE-NAS: lower
 * condition number; Eigen-NAS: larger NTK lambda_min; NFL: larger curvature
 * and path proxy are more expressive, lower complexity and gap bounds).
 * topology.params/macs/flops: higher, "capacity within the space" (§6). */
static const ae_rank_known_metric known_metrics[] = {
    {"topology.params", +1, AE_ASPECT_NONE},
    {"topology.flops", +1, AE_ASPECT_COMPLEXITY},
    {"topology.macs", +1, AE_ASPECT_NONE},
    {"expressivity.feature_isotropy", +1, AE_ASPECT_EXPRESSIVITY},
    {"expressivity.feature_progressivity", +1, AE_ASPECT_EXPRESSIVITY},
    {"expressivity.activation_patterns", +1, AE_ASPECT_EXPRESSIVITY},
    {"expressivity.linear_regions", +1, AE_ASPECT_EXPRESSIVITY},
    {"expressivity.pattern_kernel_logdet", +1, AE_ASPECT_NONE},
    {"expressivity.curvature", +1, AE_ASPECT_NONE},
    {"expressivity.path_proxy", +1, AE_ASPECT_NONE},
    {"convergence.jacobian_trainability", +1, AE_ASPECT_CONVERGENCE},
    {"convergence.feature_corr_lambda_min", +1, AE_ASPECT_CONVERGENCE},
    {"convergence.feature_corr_lambda_min_mean", +1, AE_ASPECT_NONE},
    {"convergence.ntk_lambda_min", +1, AE_ASPECT_CONVERGENCE},
    {"convergence.nngp_lambda_min", +1, AE_ASPECT_CONVERGENCE},
    {"convergence.ntk_analytic_lambda_min", +1, AE_ASPECT_NONE},
    {"convergence.ntk_condition", -1, AE_ASPECT_NONE},
    {"convergence.rate", -1, AE_ASPECT_NONE},
    {"convergence.steps_to_1e-3", -1, AE_ASPECT_NONE},
    {"generalization.kernel_complexity", -1, AE_ASPECT_GENERALIZATION},
    {"generalization.kernel_regression_val_mse", -1, AE_ASPECT_GENERALIZATION},
    {"generalization.kernel_regression_val_acc", +1, AE_ASPECT_NONE},
    {"generalization.gap_bound", -1, AE_ASPECT_NONE},
    {"generalization.arora_bound", -1, AE_ASPECT_NONE},
    {"proxies.synflow", +1, AE_ASPECT_CONVERGENCE},
    {"proxies.grad_norm", +1, AE_ASPECT_NONE},
    {"proxies.snip", +1, AE_ASPECT_NONE},
    {"proxies.jacob_cov", +1, AE_ASPECT_NONE},
    {"proxies.zico", +1, AE_ASPECT_NONE},
};
#define N_KNOWN (sizeof known_metrics / sizeof known_metrics[0])

/* The named combinations of §6. */
static const char *const default_components[] = {
    "expressivity.feature_isotropy",
    "expressivity.feature_progressivity",
    "expressivity.activation_patterns",
    "convergence.jacobian_trainability",
    "convergence.feature_corr_lambda_min",
    "proxies.synflow",
    "topology.flops"};
static const char *const fast_components[] = {
    "expressivity.activation_patterns", "convergence.feature_corr_lambda_min"};

static const char *const aspect_names[AE_ASPECT_COUNT] = {
    "expressivity", "convergence", "generalization", "complexity"};

const ae_rank_known_metric *ae_rank_known_lookup(const char *name) {
  for (size_t i = 0; i < N_KNOWN; i++)
    if (!strcmp(known_metrics[i].name, name)) return &known_metrics[i];
  return NULL;
}

const ae_rank_known_metric *ae_rank_known_table(size_t *n) {
  *n = N_KNOWN;
  return known_metrics;
}

const char *ae_rank_aspect_name(ae_rank_aspect a) {
  return a >= 0 && a < AE_ASPECT_COUNT ? aspect_names[a] : "none";
}

int ae_rank_aggregate_parse(const char *text) {
  if (!strcmp(text, "log_rank")) return AE_RANK_LOG_RANK;
  if (!strcmp(text, "rank_sum")) return AE_RANK_RANK_SUM;
  return -1;
}

const char *ae_rank_aggregate_name(ae_rank_aggregate a) {
  return a == AE_RANK_RANK_SUM ? "rank_sum" : "log_rank";
}

/* ---- component sets ---------------------------------------------------- */

void ae_rank_spec_free(ae_rank_spec *spec) {
  for (size_t i = 0; i < spec->n_components; i++)
    free(spec->components[i].name);
  free(spec->components);
  free(spec->combination);
  memset(spec, 0, sizeof *spec);
}

/* A metric name: "group.field", both non-empty, printable, no spaces. */
static int valid_metric_name(const char *s, size_t len) {
  const char *dot = memchr(s, '.', len);
  if (!dot || dot == s || dot == s + len - 1) return 0;
  for (size_t i = 0; i < len; i++)
    if (s[i] <= ' ' || s[i] > '~' || s[i] == ',' || s[i] == ':') return 0;
  return 1;
}

/* Appends one component, given as text of length len ("name" or
 * "name:higher|lower").  pointer names it for errors. */
static int spec_add(ae_rank_spec *spec, const char *text, size_t len,
                    const char *pointer, ae_error *err) {
  const char *colon = memchr(text, ':', len);
  size_t name_len = colon ? (size_t)(colon - text) : len;
  int given = 0;
  if (colon) {
    const char *dir = colon + 1;
    size_t dir_len = len - name_len - 1;
    if (dir_len == 6 && !memcmp(dir, "higher", 6)) {
      given = +1;
    } else if (dir_len == 5 && !memcmp(dir, "lower", 5)) {
      given = -1;
    } else {
      return ae_error_set(err, AE_EINVAL, pointer,
                          "component '%.*s': the direction after ':' must "
                          "be 'higher' or 'lower'",
                          (int)len, text);
    }
  }
  if (!valid_metric_name(text, name_len))
    return ae_error_set(err, AE_EINVAL, pointer,
                        "component '%.*s' is not a metric name "
                        "(group.field)",
                        (int)len, text);
  char *name = strndup(text, name_len);
  if (!name) return ae_error_set(err, AE_ENOMEM, pointer, "out of memory");
  for (size_t i = 0; i < spec->n_components; i++) {
    if (!strcmp(spec->components[i].name, name)) {
      int rc = ae_error_set(err, AE_EINVAL, pointer,
                            "component '%s' is given twice", name);
      free(name);
      return rc;
    }
  }
  const ae_rank_known_metric *known = ae_rank_known_lookup(name);
  int better;
  ae_rank_aspect aspect = AE_ASPECT_NONE;
  if (known) {
    if (given && given != known->better) {
      int rc = ae_error_set(err, AE_EINVAL, pointer,
                            "component '%s': %s is better for this metric; "
                            "the direction of a known metric cannot be "
                            "changed",
                            name, known->better > 0 ? "higher" : "lower");
      free(name);
      return rc;
    }
    better = known->better;
    aspect = known->aspect;
  } else if (given) {
    better = given;
  } else {
    int rc = ae_error_set(err, AE_EINVAL, pointer,
                          "unknown metric '%s': give its direction as "
                          "'%s:higher' or '%s:lower'",
                          name, name, name);
    free(name);
    return rc;
  }
  ae_rank_metric *grown =
      realloc(spec->components, (spec->n_components + 1) * sizeof *grown);
  if (!grown) {
    free(name);
    return ae_error_set(err, AE_ENOMEM, pointer, "out of memory");
  }
  spec->components = grown;
  grown[spec->n_components++] = (ae_rank_metric){name, better, aspect};
  return AE_OK;
}

static int spec_named(const char *which, ae_rank_spec *spec, ae_error *err) {
  const char *const *list = default_components;
  size_t n = sizeof default_components / sizeof default_components[0];
  if (!strcmp(which, "fast")) {
    list = fast_components;
    n = sizeof fast_components / sizeof fast_components[0];
  }
  spec->combination = strdup(which);
  if (!spec->combination)
    return ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    int rc = spec_add(spec, list[i], strlen(list[i]), NULL, err);
    if (rc) return rc;
  }
  return AE_OK;
}

int ae_rank_spec_parse(const char *components, ae_rank_aggregate aggregate,
                       ae_rank_spec *spec, ae_error *err) {
  memset(spec, 0, sizeof *spec);
  spec->aggregate = aggregate;
  int rc = AE_OK;
  if (!components || !strcmp(components, "default") ||
      !strcmp(components, "fast")) {
    rc = spec_named(components ? components : "default", spec, err);
  } else {
    const char *p = components;
    for (size_t k = 0; rc == AE_OK; k++) {
      const char *end = strchr(p, ',');
      size_t len = end ? (size_t)(end - p) : strlen(p);
      char pointer[40];
      snprintf(pointer, sizeof pointer, "/components/%zu", k);
      if (len == 0)
        rc = ae_error_set(err, AE_EINVAL, pointer,
                          "empty component in the list");
      else
        rc = spec_add(spec, p, len, pointer, err);
      if (!end) break;
      p = end + 1;
    }
  }
  if (rc) ae_rank_spec_free(spec);
  return rc;
}

int ae_rank_spec_from_json(const json_t *rank, ae_rank_spec *spec,
                           ae_error *err) {
  memset(spec, 0, sizeof *spec);
  if (!rank || json_is_null(rank))
    return ae_rank_spec_parse(NULL, AE_RANK_LOG_RANK, spec, err);
  if (json_is_string(rank)) {
    const char *s = json_string_value(rank);
    if (strcmp(s, "default") && strcmp(s, "fast"))
      return ae_error_set(err, AE_EINVAL, "",
                          "rank must be \"default\", \"fast\" or an object");
    return ae_rank_spec_parse(s, AE_RANK_LOG_RANK, spec, err);
  }
  if (!json_is_object(rank))
    return ae_error_set(err, AE_EINVAL, "",
                        "rank must be \"default\", \"fast\" or an object");
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)rank, key, value) {
    if (strcmp(key, "components") && strcmp(key, "aggregate")) {
      char pointer[80];
      snprintf(pointer, sizeof pointer, "/%.60s", key);
      return ae_error_set(err, AE_EINVAL, pointer, "unknown field '%s'", key);
    }
  }
  ae_rank_aggregate aggregate = AE_RANK_LOG_RANK;
  json_t *agg = json_object_get(rank, "aggregate");
  if (agg) {
    int a = json_is_string(agg)
                ? ae_rank_aggregate_parse(json_string_value(agg))
                : -1;
    if (a < 0)
      return ae_error_set(err, AE_EINVAL, "/aggregate",
                          "aggregate must be \"log_rank\" or \"rank_sum\"");
    aggregate = (ae_rank_aggregate)a;
  }
  json_t *comps = json_object_get(rank, "components");
  if (!comps) return ae_rank_spec_parse(NULL, aggregate, spec, err);
  if (json_is_string(comps)) {
    const char *s = json_string_value(comps);
    if (strcmp(s, "default") && strcmp(s, "fast"))
      return ae_error_set(err, AE_EINVAL, "/components",
                          "components must be \"default\", \"fast\" or an "
                          "array of metric names");
    return ae_rank_spec_parse(s, aggregate, spec, err);
  }
  if (!json_is_array(comps) || json_array_size(comps) == 0)
    return ae_error_set(err, AE_EINVAL, "/components",
                        "components must be \"default\", \"fast\" or a "
                        "non-empty array of metric names");
  spec->aggregate = aggregate;
  size_t k;
  json_t *c;
  json_array_foreach(comps, k, c) {
    char pointer[40];
    snprintf(pointer, sizeof pointer, "/components/%zu", k);
    int rc = json_is_string(c) ? spec_add(spec, json_string_value(c),
                                          json_string_length(c), pointer, err)
                               : ae_error_set(err, AE_EINVAL, pointer,
                                              "a component must be a string");
    if (rc) {
      ae_rank_spec_free(spec);
      return rc;
    }
  }
  return AE_OK;
}

/* ---- ranking ------------------------------------------------------------ */

void ae_rank_result_free(ae_rank_result *r) {
  for (size_t i = 0; i < r->n_metrics; i++)
    free(r->metrics[i].name);
  free(r->metrics);
  free(r->is_component);
  for (size_t i = 0; i < r->n_skipped; i++)
    free(r->skipped[i]);
  free(r->skipped);
  free(r->values);
  free(r->present);
  free(r->ranks);
  free(r->score);
  free(r->rank);
  free(r->aspect_score);
  free(r->aspect_rank);
  free(r->pareto);
  free(r->order);
  for (size_t i = 0; i < r->n_warnings; i++)
    free(r->warnings[i]);
  free(r->warnings);
  memset(r, 0, sizeof *r);
}

static int add_warning(ae_rank_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int add_warning(ae_rank_result *r, const char *fmt, ...) {
  char *w = NULL;
  va_list ap;
  va_start(ap, fmt);
  int len = vasprintf(&w, fmt, ap);
  va_end(ap);
  if (len < 0) return AE_ENOMEM;
  char **grown = realloc(r->warnings, (r->n_warnings + 1) * sizeof *grown);
  if (!grown) {
    free(w);
    return AE_ENOMEM;
  }
  r->warnings = grown;
  grown[r->n_warnings++] = w;
  return AE_OK;
}

/* The value of metric name in scorecard sc: 1 and *v (NaN for null or
 * non-finite) when the key is there, 0 when absent, AE_EINVAL when it is
 * neither a number nor null. */
static int metric_value(const json_t *sc, const char *name, double *v) {
  const char *dot = strchr(name, '.');
  char group[128];
  size_t glen = (size_t)(dot - name);
  if (glen >= sizeof group) return 0;
  memcpy(group, name, glen);
  group[glen] = '\0';
  json_t *g = json_object_get(sc, group);
  if (!json_is_object(g)) return 0;
  json_t *x = json_object_get(g, dot + 1);
  if (!x) return 0;
  if (json_is_null(x)) {
    *v = NAN;
    return 1;
  }
  if (!json_is_number(x)) return AE_EINVAL;
  double d = json_number_value(x);
  *v = isfinite(d) ? d : NAN;
  return 1;
}

/* How many of the n scorecards have the metric (-1: a bad value). */
static long count_present(json_t *const *sc, size_t n, const char *name,
                          size_t *bad) {
  long count = 0;
  for (size_t i = 0; i < n; i++) {
    double v;
    int p = metric_value(sc[i], name, &v);
    if (p < 0) {
      *bad = i;
      return -1;
    }
    count += p;
  }
  return count;
}

typedef struct {
  double key;
  size_t index;
} keyed;

static int keyed_ascending(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  if (x->key < y->key) return -1;
  if (x->key > y->key) return 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

/* Ranks one column (values with stride, NaN = null) per §5.1 into ranks
 * (same stride): 1 = worst .. n = best.  work holds n entries. */
static void rank_column(const double *values, size_t stride, size_t n,
                        int better, double *ranks, keyed *work) {
  size_t k = 0, m = 0;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(values[i * stride])) k++;
  for (size_t i = 0; i < n; i++) {
    double v = values[i * stride];
    if (!isfinite(v))
      ranks[i * stride] = (k + 1) / 2.0;
    else
      work[m++] = (keyed){better > 0 ? v : -v, i};
  }
  qsort(work, m, sizeof *work, keyed_ascending);
  for (size_t a = 0; a < m;) {
    size_t b = a + 1;
    while (b < m && work[b].key == work[a].key)
      b++;
    /* Positions k+a+1 .. k+b share their average. */
    double r = k + (a + 1 + b) / 2.0;
    for (size_t j = a; j < b; j++)
      ranks[work[j].index * stride] = r;
    a = b;
  }
}

int ae_rank_values(const double *values, size_t n, int better, double *ranks) {
  keyed *work = calloc(n ? n : 1, sizeof *work);
  if (!work) return AE_ENOMEM;
  rank_column(values, 1, n, better, ranks, work);
  free(work);
  return AE_OK;
}

/* -1, 0 or 1: a below, tied with, or above b (tolerance of rank.h). */
static int score_cmp(double a, double b) {
  double scale = fmax(1.0, fmax(fabs(a), fabs(b)));
  if (fabs(a - b) <= TIE_RELATIVE * scale) return 0;
  return a < b ? -1 : 1;
}

static int double_ascending(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The aggregate of the ranks of member i over the metric columns listed
 * in cols (m of them); terms summed in ascending order.  terms: m slots. */
static double aggregate(const ae_rank_result *r, size_t i, const size_t *cols,
                        size_t m, double *terms) {
  for (size_t j = 0; j < m; j++) {
    double rank = r->ranks[i * r->n_metrics + cols[j]];
    terms[j] =
        r->aggregate == AE_RANK_LOG_RANK ? log(rank / (double)r->n) : rank;
  }
  qsort(terms, m, sizeof *terms, double_ascending);
  double s = 0;
  for (size_t j = 0; j < m; j++)
    s += terms[j];
  return s;
}

/* Positions (1 = best, ties averaged) of the n scores (stride apart) into
 * pos (same stride); order (optional) gets the members best first. */
static void positions(const double *score, size_t stride, size_t n, double *pos,
                      keyed *work, size_t *order) {
  for (size_t i = 0; i < n; i++)
    work[i] = (keyed){-score[i * stride], i};
  qsort(work, n, sizeof *work, keyed_ascending);
  for (size_t a = 0; a < n;) {
    size_t b = a + 1;
    while (b < n && score_cmp(work[b].key, work[a].key) == 0)
      b++;
    double p = (a + 1 + b) / 2.0;
    for (size_t j = a; j < b; j++) {
      pos[work[j].index * stride] = p;
      if (order) order[j] = work[j].index;
    }
    a = b;
  }
}

/* Chooses "default" or "fast" for a named combination (rank.h) and copies
 * the components to use into chosen, which the caller frees. */
static int choose_combination(json_t *const *sc, size_t n,
                              const ae_rank_spec *spec, ae_rank_spec *chosen,
                              ae_rank_result *r, ae_error *err) {
  memset(chosen, 0, sizeof *chosen);
  const ae_rank_spec *use = spec;
  ae_rank_spec fast;
  memset(&fast, 0, sizeof fast);
  r->requested = NULL;
  r->combination = "custom";
  if (spec->combination && !strcmp(spec->combination, "fast")) {
    r->requested = r->combination = "fast";
  } else if (spec->combination) {
    r->requested = r->combination = "default";
    const char *missing = NULL;
    for (size_t c = 0; c < spec->n_components && !missing; c++) {
      size_t bad;
      if (count_present(sc, n, spec->components[c].name, &bad) != (long)n)
        missing = spec->components[c].name;
    }
    if (missing) {
      int rc = ae_rank_spec_parse("fast", spec->aggregate, &fast, err);
      if (rc) return rc;
      int fast_ok = 1;
      for (size_t c = 0; c < fast.n_components && fast_ok; c++) {
        size_t bad;
        if (count_present(sc, n, fast.components[c].name, &bad) != (long)n)
          fast_ok = 0;
      }
      if (fast_ok) {
        r->combination = "fast";
        r->fallback = 1;
        use = &fast;
        if (add_warning(r,
                        "%s is not in every scorecard: ranked with the "
                        "\"fast\" combination",
                        missing)) {
          ae_rank_spec_free(&fast);
          return ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
        }
      }
    }
  }
  /* Copy what is used. */
  chosen->aggregate = spec->aggregate;
  chosen->components = calloc(use->n_components ? use->n_components : 1,
                              sizeof *chosen->components);
  int rc = chosen->components ? AE_OK : AE_ENOMEM;
  for (size_t c = 0; rc == AE_OK && c < use->n_components; c++) {
    chosen->components[c] = use->components[c];
    chosen->components[c].name = strdup(use->components[c].name);
    if (!chosen->components[c].name)
      rc = AE_ENOMEM;
    else
      chosen->n_components++;
  }
  ae_rank_spec_free(&fast);
  if (rc) {
    ae_rank_spec_free(chosen);
    return ae_error_set(err, rc, NULL, "out of memory");
  }
  return AE_OK;
}

/* Appends a metric column to r (name copied). */
static int add_column(ae_rank_result *r, const ae_rank_metric *m,
                      int component) {
  char *name = strdup(m->name);
  if (!name) return AE_ENOMEM;
  r->metrics[r->n_metrics] = (ae_rank_metric){name, m->better, m->aspect};
  r->is_component[r->n_metrics] = component;
  r->n_metrics++;
  return AE_OK;
}

static int has_column(const ae_rank_result *r, const char *name) {
  for (size_t i = 0; i < r->n_metrics; i++)
    if (!strcmp(r->metrics[i].name, name)) return 1;
  return 0;
}

/* Picks the columns: the components present somewhere (the others go to
 * skipped), then the aspect metrics present somewhere. */
static int choose_columns(json_t *const *sc, size_t n, const ae_rank_spec *use,
                          ae_rank_result *r, ae_error *err) {
  size_t cap = use->n_components + N_KNOWN;
  r->metrics = calloc(cap, sizeof *r->metrics);
  r->is_component = calloc(cap, sizeof *r->is_component);
  r->skipped = calloc(use->n_components + 1, sizeof *r->skipped);
  if (!r->metrics || !r->is_component || !r->skipped)
    return ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
  for (int pass = 0; pass < 2; pass++) {
    size_t count = pass == 0 ? use->n_components : N_KNOWN;
    for (size_t c = 0; c < count; c++) {
      ae_rank_metric m;
      if (pass == 0) {
        m = use->components[c];
      } else {
        if (known_metrics[c].aspect == AE_ASPECT_NONE) continue;
        m = (ae_rank_metric){(char *)known_metrics[c].name,
                             known_metrics[c].better, known_metrics[c].aspect};
        if (has_column(r, m.name)) continue;
      }
      size_t bad = 0;
      long present = count_present(sc, n, m.name, &bad);
      if (present < 0) {
        char pointer[300];
        const char *dot = strchr(m.name, '.');
        snprintf(pointer, sizeof pointer, "/%zu/%.*s/%.200s", bad,
                 (int)(dot - m.name), m.name, dot + 1);
        return ae_error_set(err, AE_EINVAL, pointer,
                            "scorecard %zu: %s is neither a number nor null",
                            bad, m.name);
      }
      if (present == 0) {
        if (pass == 0) {
          r->skipped[r->n_skipped] = strdup(m.name);
          if (!r->skipped[r->n_skipped])
            return ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
          r->n_skipped++;
        }
        continue;
      }
      if (add_column(r, &m, pass == 0))
        return ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
      if (pass == 0) r->n_components++;
      if ((size_t)present < n &&
          add_warning(r,
                      "%s is absent from %zu of %zu scorecards: ranked "
                      "there as null (worst)",
                      m.name, n - (size_t)present, n))
        return ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
    }
  }
  return AE_OK;
}

int ae_rank_compute(json_t *const *scorecards, size_t n,
                    const ae_rank_spec *spec, ae_rank_result *out,
                    ae_error *err) {
  memset(out, 0, sizeof *out);
  if (n == 0) return ae_error_set(err, AE_EINVAL, "", "no scorecards to rank");
  for (size_t i = 0; i < n; i++) {
    if (!json_is_object(scorecards[i])) {
      char pointer[32];
      snprintf(pointer, sizeof pointer, "/%zu", i);
      return ae_error_set(err, AE_EINVAL, pointer,
                          "scorecard %zu is not a JSON object", i);
    }
  }
  ae_rank_result *r = out;
  r->n = n;
  r->aggregate = spec->aggregate;
  ae_rank_spec use;
  int rc = choose_combination(scorecards, n, spec, &use, r, err);
  if (rc) {
    ae_rank_result_free(r);
    return rc;
  }
  rc = choose_columns(scorecards, n, &use, r, err);
  ae_rank_spec_free(&use);
  if (rc) goto fail;
  if (r->n_components == 0) {
    rc = ae_error_set(err, AE_EINVAL, "/components",
                      "none of the components is in any scorecard");
    goto fail;
  }

  size_t nm = r->n_metrics;
  r->values = calloc(n * nm, sizeof *r->values);
  r->present = calloc(n * nm, sizeof *r->present);
  r->ranks = calloc(n * nm, sizeof *r->ranks);
  r->score = calloc(n, sizeof *r->score);
  r->rank = calloc(n, sizeof *r->rank);
  r->aspect_score = calloc(n * AE_ASPECT_COUNT, sizeof *r->aspect_score);
  r->aspect_rank = calloc(n * AE_ASPECT_COUNT, sizeof *r->aspect_rank);
  r->pareto = calloc(n, sizeof *r->pareto);
  r->order = calloc(n, sizeof *r->order);
  keyed *work = calloc(n, sizeof *work);
  double *terms = calloc(nm, sizeof *terms);
  size_t *cols = calloc(nm, sizeof *cols);
  if (!r->values || !r->present || !r->ranks || !r->score || !r->rank ||
      !r->aspect_score || !r->aspect_rank || !r->pareto || !r->order || !work ||
      !terms || !cols) {
    free(work);
    free(terms);
    free(cols);
    rc = ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < n; i++) {
    for (size_t c = 0; c < nm; c++) {
      double v = NAN;
      int p = metric_value(scorecards[i], r->metrics[c].name, &v);
      r->present[i * nm + c] = p == 1;
      r->values[i * nm + c] = p == 1 ? v : NAN;
    }
  }
  for (size_t c = 0; c < nm; c++)
    rank_column(r->values + c, nm, n, r->metrics[c].better, r->ranks + c, work);

  /* The combined score and rank. */
  for (size_t c = 0; c < r->n_components; c++)
    cols[c] = c;
  for (size_t i = 0; i < n; i++)
    r->score[i] = aggregate(r, i, cols, r->n_components, terms);
  positions(r->score, 1, n, r->rank, work, r->order);

  /* Aspects. */
  for (int a = 0; a < AE_ASPECT_COUNT; a++) {
    size_t m = 0;
    for (size_t c = 0; c < nm; c++)
      if ((int)r->metrics[c].aspect == a) cols[m++] = c;
    r->aspect_scored[a] = m > 0;
    for (size_t i = 0; i < n; i++) {
      double *s = &r->aspect_score[i * AE_ASPECT_COUNT + a];
      *s = m ? aggregate(r, i, cols, m, terms) : NAN;
      r->aspect_rank[i * AE_ASPECT_COUNT + a] = NAN;
    }
    if (m)
      positions(r->aspect_score + a, AE_ASPECT_COUNT, n, r->aspect_rank + a,
                work, NULL);
  }

  /* The Pareto front over the scored aspects. */
  for (size_t i = 0; i < n; i++) {
    int dominated = 0;
    for (size_t j = 0; j < n && !dominated; j++) {
      if (j == i) continue;
      int all_ge = 1, some_gt = 0;
      for (int a = 0; a < AE_ASPECT_COUNT; a++) {
        if (!r->aspect_scored[a]) continue;
        int c = score_cmp(r->aspect_score[j * AE_ASPECT_COUNT + a],
                          r->aspect_score[i * AE_ASPECT_COUNT + a]);
        if (c < 0) all_ge = 0;
        if (c > 0) some_gt = 1;
      }
      dominated = all_ge && some_gt;
    }
    r->pareto[i] = !dominated;
  }
  free(work);
  free(terms);
  free(cols);
  return AE_OK;

fail:
  ae_rank_result_free(r);
  return rc;
}

/* ---- JSON ---------------------------------------------------------------- */

static json_t *number_or_null(double v) {
  return isfinite(v) ? json_real(v) : json_null();
}

/* Sets key to value (stolen) in o; 1 on failure. */
static int put(json_t *o, const char *key, json_t *value) {
  return !value || json_object_set_new(o, key, value) != 0;
}

static int push(json_t *a, json_t *value) {
  return !value || json_array_append_new(a, value) != 0;
}

static json_t *member_id(const char *const *ids, size_t i) {
  return ids && ids[i] ? json_string(ids[i]) : json_integer((json_int_t)i);
}

static json_t *member_json(const ae_rank_result *r, const char *const *ids,
                           size_t i) {
  json_t *m = json_object(), *metrics = json_object(), *ranks = json_object();
  json_t *ascore = json_object(), *arank = json_object();
  int bad = !m || !metrics || !ranks || !ascore || !arank;
  size_t nm = r->n_metrics;
  for (size_t c = 0; !bad && c < nm; c++) {
    bad |=
        put(metrics, r->metrics[c].name, number_or_null(r->values[i * nm + c]));
    bad |= put(ranks, r->metrics[c].name, json_real(r->ranks[i * nm + c]));
  }
  for (int a = 0; !bad && a < AE_ASPECT_COUNT; a++) {
    bad |= put(ascore, aspect_names[a],
               number_or_null(r->aspect_score[i * AE_ASPECT_COUNT + a]));
    bad |= put(arank, aspect_names[a],
               number_or_null(r->aspect_rank[i * AE_ASPECT_COUNT + a]));
  }
  if (!bad) {
    bad |= put(m, "id", member_id(ids, i));
    bad |= put(m, "index", json_integer((json_int_t)i));
    bad |= put(m, "rank", json_real(r->rank[i]));
    bad |= put(m, "score", json_real(r->score[i]));
    bad |= put(m, "pareto", json_boolean(r->pareto[i]));
    bad |= put(m, "metrics", metrics);
    bad |= put(m, "ranks", ranks);
    bad |= put(m, "aspect_scores", ascore);
    bad |= put(m, "aspect_ranks", arank);
    metrics = ranks = ascore = arank = NULL;
  }
  json_decref(metrics);
  json_decref(ranks);
  json_decref(ascore);
  json_decref(arank);
  if (bad) {
    json_decref(m);
    return NULL;
  }
  return m;
}

json_t *ae_rank_result_to_json(const ae_rank_result *r,
                               const char *const *ids) {
  json_t *root = json_object(), *rank = json_object();
  json_t *comps = json_array(), *skipped = json_array();
  json_t *aspects = json_object(), *members = json_array();
  json_t *front = json_array(), *warnings = json_array();
  int bad = !root || !rank || !comps || !skipped || !aspects || !members ||
            !front || !warnings;
  for (size_t c = 0; !bad && c < r->n_metrics; c++) {
    if (!r->is_component[c]) continue;
    json_t *o = json_object();
    bad |= !o;
    if (o) {
      bad |= put(o, "metric", json_string(r->metrics[c].name));
      bad |= put(o, "better",
                 json_string(r->metrics[c].better > 0 ? "higher" : "lower"));
      bad |= put(o, "aspect",
                 r->metrics[c].aspect == AE_ASPECT_NONE
                     ? json_null()
                     : json_string(aspect_names[r->metrics[c].aspect]));
      bad |= push(comps, o);
    }
  }
  for (size_t s = 0; !bad && s < r->n_skipped; s++)
    bad |= push(skipped, json_string(r->skipped[s]));
  for (int a = 0; !bad && a < AE_ASPECT_COUNT; a++) {
    json_t *list = json_array();
    bad |= !list;
    for (size_t c = 0; list && !bad && c < r->n_metrics; c++)
      if ((int)r->metrics[c].aspect == a)
        bad |= push(list, json_string(r->metrics[c].name));
    if (list) bad |= put(aspects, aspect_names[a], list);
  }
  for (size_t k = 0; !bad && k < r->n; k++) {
    size_t i = r->order[k];
    bad |= push(members, member_json(r, ids, i));
    if (r->pareto[i]) bad |= push(front, member_id(ids, i));
  }
  for (size_t w = 0; !bad && w < r->n_warnings; w++)
    bad |= push(warnings, json_string(r->warnings[w]));
  if (!bad) {
    bad |= put(rank, "requested",
               r->requested ? json_string(r->requested) : json_null());
    bad |= put(rank, "combination", json_string(r->combination));
    bad |= put(rank, "fallback", json_boolean(r->fallback));
    bad |= put(rank, "aggregate",
               json_string(ae_rank_aggregate_name(r->aggregate)));
    bad |= put(rank, "components", comps);
    bad |= put(rank, "skipped", skipped);
    comps = skipped = NULL;
    bad |= put(root, "n", json_integer((json_int_t)r->n));
    bad |= put(root, "rank", rank);
    bad |= put(root, "aspects", aspects);
    bad |= put(root, "members", members);
    bad |= put(root, "pareto_front", front);
    bad |= put(root, "warnings", warnings);
    rank = aspects = members = front = warnings = NULL;
  }
  json_decref(rank);
  json_decref(comps);
  json_decref(skipped);
  json_decref(aspects);
  json_decref(members);
  json_decref(front);
  json_decref(warnings);
  if (bad) {
    json_decref(root);
    return NULL;
  }
  return root;
}
