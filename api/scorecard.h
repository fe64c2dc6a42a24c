/* scorecard.h: the result of one evaluation (scorecard.md §2) as a struct.
 *
 * The engine fills an ae_scorecard; ae_scorecard_to_json renders it as the
 * job's "result".  Every number is a double: NaN or +-Inf means "no value"
 * and is rendered as JSON null, and then the engine must have added a
 * warning that says why (the renderer adds a generic one if it did not).
 * A group whose bit is clear in `groups` is omitted from the JSON.  The
 * worker thread that fills it owns it until it hands the job back. */
#ifndef AE_SCORECARD_H
#define AE_SCORECARD_H

#include <jansson.h>
#include <stddef.h>

#include "api/metric_set.h"

typedef struct {
  unsigned groups; /* AE_GROUP_* bits computed */
  /* The metrics rendered (api/metric_set.h); no bits: every metric of
   * the groups computed. */
  ae_metric_set selected;

  struct {
    double params, flops, macs, paths; /* flops = 2 x macs */
    double *path_depths; /* malloc'd; NULL with n 0 when too many paths */
    size_t n_path_depths;
    double effective_depth, effective_width;
    int dag_filter; /* 1 keep, 0 reject, -1 null (with a warning) */
  } topology;

  struct {
    double linear_regions;
    int linear_regions_samples;
    int linear_regions_saturated; /* 1, 0, or -1 null */
    double curvature;
    double path_proxy;
    /* ranking.md §1 */
    double activation_patterns;
    double activation_patterns_units;
    int activation_patterns_saturated; /* 1, 0, or -1 null */
    double pattern_kernel_logdet;
    double feature_isotropy, feature_progressivity;
  } expressivity;

  struct {
    double ntk_lambda_min, ntk_lambda_max, ntk_condition;
    double nngp_lambda_min, nngp_lambda_min_bound, ntk_analytic_lambda_min;
    double rate, steps_to_1e_3;
    /* ranking.md §2 */
    double feature_corr_lambda_min, feature_corr_lambda_min_mean;
    double jacobian_trainability;
  } convergence;

  struct {
    double kernel_complexity, gap_bound, arora_bound;
    int labels_random; /* 1: random +-1 labels ("random"), 0: "dataset" */
    /* ranking.md §3 */
    double kernel_regression_val_mse, kernel_regression_val_acc;
  } generalization;

  struct { /* ranking.md §4 */
    double synflow, grad_norm, snip, jacob_cov, zico;
  } proxies;

  struct {
    char backend[32]; /* "host" or "cuda:N" */
    unsigned long long seed;
    char dataset[64];
    int batch_size;
    int analytic_exact; /* 1 "exact", 0 "topological", -1 not computed */
    double t_topology, t_expressivity, t_convergence, t_generalization;
    double t_proxies;
    double t_total; /* seconds */
  } provenance;

  char **warnings; /* malloc'd strings */
  size_t n_warnings, cap_warnings;
} ae_scorecard;

/* Every value NaN, groups 0, no warnings. */
void ae_scorecard_init(ae_scorecard *s);

/* Appends a printf-style warning ("convergence.ntk_condition: ..."). */
void ae_scorecard_warn(ae_scorecard *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* New reference: the "result" object.  Non-finite numbers become null. */
json_t *ae_scorecard_to_json(const ae_scorecard *s);

void ae_scorecard_free(ae_scorecard *s);

/* The engine's version string, also in provenance. */
#define AE_ENGINE_VERSION "0.1.0"

/* Serialises JSON the way every archeval output does (compact, keys in
 * insertion order, each real as the shortest decimal that reads back as
 * the same double, so results round-trip exactly).  Returns a malloc'd
 * string or NULL. */
char *ae_json_dumps(const json_t *j);
/* The same with other jansson flags (e.g. JSON_INDENT(2)). */
char *ae_json_dumps_flags(const json_t *j, size_t flags);

#endif
