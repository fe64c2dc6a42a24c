/* metric_set.c: the metric catalog, metric sets and the profiles
 * (metric_set.h).  Constant data and pure functions. */
#include "api/metric_set.h"

#include <stddef.h>
#include <string.h>

#include "api/request.h"

#define T AE_GROUP_TOPOLOGY
#define E AE_GROUP_EXPRESSIVITY
#define C AE_GROUP_CONVERGENCE
#define G AE_GROUP_GENERALIZATION
#define P AE_GROUP_PROXIES

static const ae_metric_info catalog[AE_M_COUNT] = {
    [AE_M_PARAMS] = {"topology", "params", AE_M_PARAMS, T},
    [AE_M_FLOPS] = {"topology", "flops", AE_M_FLOPS, T},
    [AE_M_MACS] = {"topology", "macs", AE_M_FLOPS, T},
    [AE_M_PATHS] = {"topology", "paths", AE_M_PATHS, T},
    [AE_M_PATH_DEPTHS] = {"topology", "path_depths", AE_M_PATHS, T},
    [AE_M_EFFECTIVE_DEPTH] = {"topology", "effective_depth", AE_M_PATHS, T},
    [AE_M_EFFECTIVE_WIDTH] = {"topology", "effective_width", AE_M_PATHS, T},
    [AE_M_DAG_FILTER] = {"topology", "dag_filter", AE_M_PATHS, T},
    [AE_M_LINEAR_REGIONS] = {"expressivity", "linear_regions",
                             AE_M_LINEAR_REGIONS, E},
    [AE_M_LINEAR_REGIONS_SAMPLES] = {"expressivity", "linear_regions_samples",
                                     AE_M_LINEAR_REGIONS, E},
    [AE_M_LINEAR_REGIONS_SATURATED] = {"expressivity",
                                       "linear_regions_saturated",
                                       AE_M_LINEAR_REGIONS, E},
    [AE_M_CURVATURE] = {"expressivity", "curvature", AE_M_CURVATURE, E},
    [AE_M_PATH_PROXY] = {"expressivity", "path_proxy", AE_M_PATH_PROXY, E},
    [AE_M_ACTIVATION_PATTERNS] = {"expressivity", "activation_patterns",
                                  AE_M_ACTIVATION_PATTERNS, E},
    [AE_M_ACTIVATION_PATTERNS_UNITS] = {"expressivity",
                                        "activation_patterns_units",
                                        AE_M_ACTIVATION_PATTERNS, E},
    [AE_M_ACTIVATION_PATTERNS_SATURATED] = {"expressivity",
                                            "activation_patterns_saturated",
                                            AE_M_ACTIVATION_PATTERNS, E},
    [AE_M_PATTERN_KERNEL_LOGDET] = {"expressivity", "pattern_kernel_logdet",
                                    AE_M_PATTERN_KERNEL_LOGDET, E},
    [AE_M_FEATURE_ISOTROPY] = {"expressivity", "feature_isotropy",
                               AE_M_FEATURE_ISOTROPY, E},
    [AE_M_FEATURE_PROGRESSIVITY] = {"expressivity", "feature_progressivity",
                                    AE_M_FEATURE_ISOTROPY, E},
    [AE_M_NTK_LAMBDA_MIN] = {"convergence", "ntk_lambda_min",
                             AE_M_NTK_LAMBDA_MIN, C},
    [AE_M_NTK_LAMBDA_MAX] = {"convergence", "ntk_lambda_max",
                             AE_M_NTK_LAMBDA_MIN, C},
    [AE_M_NTK_CONDITION] = {"convergence", "ntk_condition", AE_M_NTK_LAMBDA_MIN,
                            C},
    [AE_M_NNGP_LAMBDA_MIN] = {"convergence", "nngp_lambda_min",
                              AE_M_NNGP_LAMBDA_MIN, C},
    [AE_M_NNGP_LAMBDA_MIN_BOUND] = {"convergence", "nngp_lambda_min_bound",
                                    AE_M_NNGP_LAMBDA_MIN, C},
    [AE_M_NTK_ANALYTIC_LAMBDA_MIN] = {"convergence", "ntk_analytic_lambda_min",
                                      AE_M_NNGP_LAMBDA_MIN, C},
    [AE_M_RATE] = {"convergence", "rate", AE_M_NTK_LAMBDA_MIN, C},
    [AE_M_STEPS_TO_1E_3] = {"convergence", "steps_to_1e-3", AE_M_NTK_LAMBDA_MIN,
                            C},
    [AE_M_FEATURE_CORR_LAMBDA_MIN] = {"convergence", "feature_corr_lambda_min",
                                      AE_M_FEATURE_CORR_LAMBDA_MIN, C},
    [AE_M_FEATURE_CORR_LAMBDA_MIN_MEAN] = {"convergence",
                                           "feature_corr_lambda_min_mean",
                                           AE_M_FEATURE_CORR_LAMBDA_MIN, C},
    [AE_M_JACOBIAN_TRAINABILITY] = {"convergence", "jacobian_trainability",
                                    AE_M_JACOBIAN_TRAINABILITY, C},
    [AE_M_KERNEL_COMPLEXITY] = {"generalization", "kernel_complexity",
                                AE_M_KERNEL_COMPLEXITY, G},
    [AE_M_GAP_BOUND] = {"generalization", "gap_bound", AE_M_KERNEL_COMPLEXITY,
                        G},
    [AE_M_ARORA_BOUND] = {"generalization", "arora_bound",
                          AE_M_KERNEL_COMPLEXITY, G},
    [AE_M_LABELS] = {"generalization", "labels", AE_M_KERNEL_COMPLEXITY, G},
    [AE_M_KERNEL_REGRESSION_VAL_MSE] = {"generalization",
                                        "kernel_regression_val_mse",
                                        AE_M_KERNEL_REGRESSION_VAL_MSE, G},
    [AE_M_KERNEL_REGRESSION_VAL_ACC] = {"generalization",
                                        "kernel_regression_val_acc",
                                        AE_M_KERNEL_REGRESSION_VAL_MSE, G},
    [AE_M_SYNFLOW] = {"proxies", "synflow", AE_M_SYNFLOW, P},
    [AE_M_GRAD_NORM] = {"proxies", "grad_norm", AE_M_GRAD_NORM, P},
    [AE_M_SNIP] = {"proxies", "snip", AE_M_SNIP, P},
    [AE_M_JACOB_COV] = {"proxies", "jacob_cov", AE_M_JACOB_COV, P},
    [AE_M_ZICO] = {"proxies", "zico", AE_M_ZICO, P},
};

_Static_assert(AE_M_COUNT <= 64, "ae_metric_set holds 64 metrics");

const char *const ae_metric_group_names[] = {"topology",    "expressivity",
                                             "convergence", "generalization",
                                             "proxies",     NULL};

const ae_metric_info *ae_metric_info_of(ae_metric_id id) {
  return (unsigned)id < AE_M_COUNT ? &catalog[id] : NULL;
}

int ae_metric_from_name(const char *name, ae_metric_id *id) {
  const char *dot = strchr(name, '.');
  if (!dot) return -1;
  size_t glen = (size_t)(dot - name);
  for (int k = 0; k < AE_M_COUNT; k++) {
    const ae_metric_info *m = &catalog[k];
    if (strlen(m->group) == glen && !strncmp(m->group, name, glen) &&
        !strcmp(m->field, dot + 1)) {
      *id = (ae_metric_id)k;
      return 0;
    }
  }
  return -1;
}

unsigned ae_metric_group_bit(const char *group) {
  for (int k = 0; ae_metric_group_names[k]; k++)
    if (!strcmp(ae_metric_group_names[k], group)) return 1u << k;
  return 0;
}

void ae_metric_set_add(ae_metric_set *s, ae_metric_id id) {
  ae_metric_id main = catalog[id].main;
  for (int k = 0; k < AE_M_COUNT; k++)
    if (catalog[k].main == main) s->bits |= (uint64_t)1 << k;
}

void ae_metric_set_add_groups(ae_metric_set *s, unsigned group_bits) {
  for (int k = 0; k < AE_M_COUNT; k++)
    if (catalog[k].group_bit & group_bits) s->bits |= (uint64_t)1 << k;
}

unsigned ae_metric_set_groups(ae_metric_set s) {
  unsigned g = 0;
  for (int k = 0; k < AE_M_COUNT; k++)
    if (ae_metric_set_has(s, (ae_metric_id)k)) g |= catalog[k].group_bit;
  return g;
}

int ae_metric_profile(const char *name, ae_metric_set *out) {
  ae_metric_set s = {0};
  if (!strcmp(name, "fast") || !strcmp(name, "rank")) {
    /* Topology, and the components of ranking.md §6's combination. */
    ae_metric_set_add_groups(&s, AE_GROUP_TOPOLOGY);
    ae_metric_set_add(&s, AE_M_ACTIVATION_PATTERNS);
    ae_metric_set_add(&s, AE_M_FEATURE_CORR_LAMBDA_MIN);
    if (!strcmp(name, "rank")) {
      ae_metric_set_add(&s, AE_M_FEATURE_ISOTROPY);
      ae_metric_set_add(&s, AE_M_JACOBIAN_TRAINABILITY);
      ae_metric_set_add(&s, AE_M_SYNFLOW);
    }
  } else if (!strcmp(name, "full")) {
    ae_metric_set_add_groups(&s, AE_GROUP_ALL);
  } else if (!strcmp(name, "all")) {
    ae_metric_set_add_groups(&s, AE_GROUP_EVERY);
  } else {
    return -1;
  }
  *out = s;
  return 0;
}
