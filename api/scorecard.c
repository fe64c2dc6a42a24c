/* scorecard.c: the result of one evaluation rendered as JSON
 * (scorecard.md §2).
 *
 * Non-finite numbers become null; each null carries a warning, and where
 * the engine gave none for "<group>.<field>" a generic one is appended to
 * the JSON (not to the struct).  The struct belongs to the worker that
 * fills it; rendering only reads it. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/scorecard.h"

void ae_scorecard_init(ae_scorecard *s) {
  memset(s, 0, sizeof *s);
  s->topology.params = s->topology.flops = s->topology.paths = NAN;
  s->topology.macs = NAN;
  s->topology.effective_depth = s->topology.effective_width = NAN;
  s->topology.dag_filter = -1;
  s->expressivity.linear_regions = NAN;
  s->expressivity.linear_regions_saturated = -1;
  s->expressivity.curvature = s->expressivity.path_proxy = NAN;
  s->expressivity.activation_patterns = NAN;
  s->expressivity.activation_patterns_units = NAN;
  s->expressivity.activation_patterns_saturated = -1;
  s->expressivity.pattern_kernel_logdet = NAN;
  s->expressivity.feature_isotropy = s->expressivity.feature_progressivity =
      NAN;
  s->convergence.ntk_lambda_min = s->convergence.ntk_lambda_max = NAN;
  s->convergence.ntk_condition = s->convergence.nngp_lambda_min = NAN;
  s->convergence.nngp_lambda_min_bound = NAN;
  s->convergence.ntk_analytic_lambda_min = NAN;
  s->convergence.rate = s->convergence.steps_to_1e_3 = NAN;
  s->convergence.feature_corr_lambda_min = NAN;
  s->convergence.feature_corr_lambda_min_mean = NAN;
  s->convergence.jacobian_trainability = NAN;
  s->generalization.kernel_complexity = NAN;
  s->generalization.gap_bound = s->generalization.arora_bound = NAN;
  s->generalization.kernel_regression_val_mse = NAN;
  s->generalization.kernel_regression_val_acc = NAN;
  s->proxies.synflow = s->proxies.grad_norm = s->proxies.snip = NAN;
  s->proxies.jacob_cov = s->proxies.zico = NAN;
  s->provenance.analytic_exact = -1;
  s->provenance.t_topology = s->provenance.t_expressivity = NAN;
  s->provenance.t_convergence = s->provenance.t_generalization = NAN;
  s->provenance.t_proxies = NAN;
  s->provenance.t_total = NAN;
}

void ae_scorecard_warn(ae_scorecard *s, const char *fmt, ...) {
  if (s->n_warnings == s->cap_warnings) {
    size_t cap = s->cap_warnings ? 2 * s->cap_warnings : 8;
    char **w = realloc(s->warnings, cap * sizeof *w);
    if (!w) return;
    s->warnings = w;
    s->cap_warnings = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  char *msg = malloc((size_t)n + 1);
  if (!msg) return;
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  va_end(ap);
  s->warnings[s->n_warnings++] = msg;
}

void ae_scorecard_free(ae_scorecard *s) {
  free(s->topology.path_depths);
  for (size_t i = 0; i < s->n_warnings; i++)
    free(s->warnings[i]);
  free(s->warnings);
  memset(s, 0, sizeof *s);
}

/* Rendering state: the output warnings array and the struct's warnings,
 * to know whether a null already has one. */
typedef struct {
  const ae_scorecard *s;
  json_t *warnings;
  int failed;
} renderer;

static int has_warning(const renderer *r, const char *key) {
  size_t len = strlen(key);
  for (size_t i = 0; i < r->s->n_warnings; i++)
    if (strncmp(r->s->warnings[i], key, len) == 0) return 1;
  size_t i;
  json_t *w;
  json_array_foreach(r->warnings, i, w) {
    if (strncmp(json_string_value(w), key, len) == 0) return 1;
  }
  return 0;
}

static void set(renderer *r, json_t *obj, const char *key, json_t *v) {
  if (!v || json_object_set_new(obj, key, v) != 0) r->failed = 1;
}

/* Marks group.field null, with a generic warning (why) if none names
 * it. */
static void set_null_why(renderer *r, json_t *obj, const char *group,
                         const char *field, const char *why) {
  char key[128];
  snprintf(key, sizeof key, "%s.%s", group, field);
  if (!has_warning(r, key)) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", key, why);
    if (json_array_append_new(r->warnings, json_string(msg)) != 0)
      r->failed = 1;
  }
  set(r, obj, field, json_null());
}

static void set_null(renderer *r, json_t *obj, const char *group,
                     const char *field) {
  set_null_why(r, obj, group, field, "not a finite number");
}

/* 1 when metric id is to be rendered: selected, or no selection made. */
static int wanted(const renderer *r, ae_metric_id id) {
  return !r->s->selected.bits || ae_metric_set_has(r->s->selected, id);
}

static void set_num(renderer *r, json_t *obj, const char *group,
                    const char *field, double x) {
  if (isfinite(x))
    set(r, obj, field, json_real(x));
  else
    set_null(r, obj, group, field);
}

/* A tri-state int (-1 null) rendered through a mapping. */
static void set_tri(renderer *r, json_t *obj, const char *group,
                    const char *field, int v, json_t *if1, json_t *if0) {
  if (v == 1) {
    set(r, obj, field, if1);
    json_decref(if0);
  } else if (v == 0) {
    set(r, obj, field, if0);
    json_decref(if1);
  } else {
    json_decref(if1);
    json_decref(if0);
    set_null_why(r, obj, group, field, "not computed");
  }
}

/* group.field rendered as a number when metric id is wanted. */
static void metric_num(renderer *r, json_t *obj, ae_metric_id id, double x) {
  if (!wanted(r, id)) return;
  const ae_metric_info *m = ae_metric_info_of(id);
  set_num(r, obj, m->group, m->field, x);
}

/* The same for a tri-state flag rendered as a boolean. */
static void metric_bool(renderer *r, json_t *obj, ae_metric_id id, int v) {
  if (!wanted(r, id)) return;
  const ae_metric_info *m = ae_metric_info_of(id);
  set_tri(r, obj, m->group, m->field, v, json_true(), json_false());
}

static json_t *render_topology(renderer *r) {
  const ae_scorecard *s = r->s;
  const char *g = "topology";
  json_t *o = json_object();
  if (!o) return NULL;
  metric_num(r, o, AE_M_PARAMS, s->topology.params);
  metric_num(r, o, AE_M_FLOPS, s->topology.flops);
  metric_num(r, o, AE_M_MACS, s->topology.macs);
  metric_num(r, o, AE_M_PATHS, s->topology.paths);
  if (!wanted(r, AE_M_PATH_DEPTHS)) {
  } else if (s->topology.path_depths) {
    json_t *a = json_array();
    int bad = 0;
    for (size_t i = 0; a && i < s->topology.n_path_depths; i++) {
      double d = s->topology.path_depths[i];
      bad |= !isfinite(d);
      if (json_array_append_new(a, isfinite(d) ? json_real(d) : json_null()))
        r->failed = 1;
    }
    set(r, o, "path_depths", a);
    if (bad && !has_warning(r, "topology.path_depths"))
      json_array_append_new(
          r->warnings,
          json_string("topology.path_depths: not a finite number"));
  } else {
    set_null_why(r, o, g, "path_depths", "not computed");
  }
  metric_num(r, o, AE_M_EFFECTIVE_DEPTH, s->topology.effective_depth);
  metric_num(r, o, AE_M_EFFECTIVE_WIDTH, s->topology.effective_width);
  if (wanted(r, AE_M_DAG_FILTER))
    set_tri(r, o, g, "dag_filter", s->topology.dag_filter, json_string("keep"),
            json_string("reject"));
  return o;
}

static json_t *render_expressivity(renderer *r) {
  const ae_scorecard *s = r->s;
  const char *g = "expressivity";
  json_t *o = json_object();
  if (!o) return NULL;
  metric_num(r, o, AE_M_LINEAR_REGIONS, s->expressivity.linear_regions);
  if (!wanted(r, AE_M_LINEAR_REGIONS_SAMPLES)) {
  } else if (s->expressivity.linear_regions_samples > 0) {
    set(r, o, "linear_regions_samples",
        json_integer(s->expressivity.linear_regions_samples));
  } else {
    set_null_why(r, o, g, "linear_regions_samples", "not computed");
  }
  metric_bool(r, o, AE_M_LINEAR_REGIONS_SATURATED,
              s->expressivity.linear_regions_saturated);
  metric_num(r, o, AE_M_CURVATURE, s->expressivity.curvature);
  metric_num(r, o, AE_M_PATH_PROXY, s->expressivity.path_proxy);
  metric_num(r, o, AE_M_ACTIVATION_PATTERNS,
             s->expressivity.activation_patterns);
  metric_num(r, o, AE_M_ACTIVATION_PATTERNS_UNITS,
             s->expressivity.activation_patterns_units);
  metric_bool(r, o, AE_M_ACTIVATION_PATTERNS_SATURATED,
              s->expressivity.activation_patterns_saturated);
  metric_num(r, o, AE_M_PATTERN_KERNEL_LOGDET,
             s->expressivity.pattern_kernel_logdet);
  metric_num(r, o, AE_M_FEATURE_ISOTROPY, s->expressivity.feature_isotropy);
  metric_num(r, o, AE_M_FEATURE_PROGRESSIVITY,
             s->expressivity.feature_progressivity);
  return o;
}

static json_t *render_convergence(renderer *r) {
  const ae_scorecard *s = r->s;
  const char *g = "convergence";
  json_t *o = json_object();
  if (!o) return NULL;
  metric_num(r, o, AE_M_NTK_LAMBDA_MIN, s->convergence.ntk_lambda_min);
  metric_num(r, o, AE_M_NTK_LAMBDA_MAX, s->convergence.ntk_lambda_max);
  metric_num(r, o, AE_M_NTK_CONDITION, s->convergence.ntk_condition);
  metric_num(r, o, AE_M_NNGP_LAMBDA_MIN, s->convergence.nngp_lambda_min);
  metric_num(r, o, AE_M_NNGP_LAMBDA_MIN_BOUND,
             s->convergence.nngp_lambda_min_bound);
  metric_num(r, o, AE_M_NTK_ANALYTIC_LAMBDA_MIN,
             s->convergence.ntk_analytic_lambda_min);
  metric_num(r, o, AE_M_RATE, s->convergence.rate);
  metric_num(r, o, AE_M_STEPS_TO_1E_3, s->convergence.steps_to_1e_3);
  metric_num(r, o, AE_M_FEATURE_CORR_LAMBDA_MIN,
             s->convergence.feature_corr_lambda_min);
  metric_num(r, o, AE_M_FEATURE_CORR_LAMBDA_MIN_MEAN,
             s->convergence.feature_corr_lambda_min_mean);
  metric_num(r, o, AE_M_JACOBIAN_TRAINABILITY,
             s->convergence.jacobian_trainability);
  (void)g;
  return o;
}

static json_t *render_generalization(renderer *r) {
  const ae_scorecard *s = r->s;
  const char *g = "generalization";
  json_t *o = json_object();
  if (!o) return NULL;
  metric_num(r, o, AE_M_KERNEL_COMPLEXITY, s->generalization.kernel_complexity);
  metric_num(r, o, AE_M_GAP_BOUND, s->generalization.gap_bound);
  metric_num(r, o, AE_M_ARORA_BOUND, s->generalization.arora_bound);
  if (wanted(r, AE_M_LABELS))
    set(r, o, "labels",
        json_string(s->generalization.labels_random ? "random" : "dataset"));
  metric_num(r, o, AE_M_KERNEL_REGRESSION_VAL_MSE,
             s->generalization.kernel_regression_val_mse);
  metric_num(r, o, AE_M_KERNEL_REGRESSION_VAL_ACC,
             s->generalization.kernel_regression_val_acc);
  (void)g;
  return o;
}

static json_t *render_proxies(renderer *r) {
  const ae_scorecard *s = r->s;
  json_t *o = json_object();
  if (!o) return NULL;
  metric_num(r, o, AE_M_SYNFLOW, s->proxies.synflow);
  metric_num(r, o, AE_M_GRAD_NORM, s->proxies.grad_norm);
  metric_num(r, o, AE_M_SNIP, s->proxies.snip);
  metric_num(r, o, AE_M_JACOB_COV, s->proxies.jacob_cov);
  metric_num(r, o, AE_M_ZICO, s->proxies.zico);
  return o;
}

static json_t *render_provenance(renderer *r) {
  const ae_scorecard *s = r->s;
  const char *g = "provenance";
  json_t *o = json_object();
  if (!o) return NULL;
  set(r, o, "backend", json_string(s->provenance.backend));
  set(r, o, "engine_version", json_string(AE_ENGINE_VERSION));
  set(r, o, "seed", json_integer((json_int_t)s->provenance.seed));
  set(r, o, "dataset", json_string(s->provenance.dataset));
  set(r, o, "batch_size", json_integer(s->provenance.batch_size));
  if (s->provenance.analytic_exact >= 0)
    set(r, o, "analytic_mode",
        json_string(s->provenance.analytic_exact ? "exact" : "topological"));
  set(r, o, "bn", json_string("frozen_batch_stats"));
  json_t *t = json_object();
  if (!t) {
    r->failed = 1;
    return o;
  }
  static const struct {
    unsigned bit;
    const char *name;
  } groups[] = {{AE_GROUP_TOPOLOGY, "topology"},
                {AE_GROUP_EXPRESSIVITY, "expressivity"},
                {AE_GROUP_CONVERGENCE, "convergence"},
                {AE_GROUP_GENERALIZATION, "generalization"},
                {AE_GROUP_PROXIES, "proxies"}};
  const double times[] = {
      s->provenance.t_topology, s->provenance.t_expressivity,
      s->provenance.t_convergence, s->provenance.t_generalization,
      s->provenance.t_proxies};
  for (int k = 0; k < 5; k++)
    if ((s->groups & groups[k].bit) && isfinite(times[k]))
      set(r, t, groups[k].name, json_real(times[k]));
  if (isfinite(s->provenance.t_total))
    set(r, t, "total", json_real(s->provenance.t_total));
  else
    set_null(r, t, "provenance.timings_s", "total");
  (void)g;
  set(r, o, "timings_s", t);
  return o;
}

json_t *ae_scorecard_to_json(const ae_scorecard *s) {
  renderer r = {s, json_array(), 0};
  json_t *out = json_object();
  if (!out || !r.warnings) {
    json_decref(out);
    json_decref(r.warnings);
    return NULL;
  }
  if (s->groups & AE_GROUP_TOPOLOGY)
    set(&r, out, "topology", render_topology(&r));
  if (s->groups & AE_GROUP_EXPRESSIVITY)
    set(&r, out, "expressivity", render_expressivity(&r));
  if (s->groups & AE_GROUP_CONVERGENCE)
    set(&r, out, "convergence", render_convergence(&r));
  if (s->groups & AE_GROUP_GENERALIZATION)
    set(&r, out, "generalization", render_generalization(&r));
  if (s->groups & AE_GROUP_PROXIES) set(&r, out, "proxies", render_proxies(&r));
  set(&r, out, "provenance", render_provenance(&r));
  /* The engine's warnings first, then the generic ones added above. */
  json_t *all = json_array();
  if (!all) r.failed = 1;
  for (size_t i = 0; all && i < s->n_warnings; i++)
    if (json_array_append_new(all, json_string(s->warnings[i])) != 0)
      r.failed = 1;
  if (all && json_array_extend(all, r.warnings) != 0) r.failed = 1;
  json_decref(r.warnings);
  set(&r, out, "warnings", all);
  if (r.failed) {
    json_decref(out);
    return NULL;
  }
  return out;
}
