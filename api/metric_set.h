/* metric_set.h: the catalog of every metric a scorecard can hold, the
 * sets of them a request selects, and the profiles of ranking.md §6.
 *
 * A metric is named "group.field" as the scorecard renders it
 * ("convergence.ntk_condition").  Fields computed together form a family
 * with one main metric (linear_regions_samples and _saturated come with
 * linear_regions; ntk_lambda_max, ntk_condition, rate and steps_to_1e-3
 * with ntk_lambda_min): selecting any member of a family selects all of
 * it, so a set is always closed over families and a group computes a
 * family when its main metric is in the set.
 *
 * Constant data and pure functions; an ae_metric_set is a value. */
#ifndef AE_METRIC_SET_H
#define AE_METRIC_SET_H

#include <stdint.h>

/* In catalog order: group by group, in the order the scorecard renders
 * them.  Keep ae_metric_catalog (metric_set.c) in the same order. */
typedef enum {
  /* topology */
  AE_M_PARAMS,
  AE_M_FLOPS,
  AE_M_MACS, /* family of flops */
  AE_M_PATHS,
  AE_M_PATH_DEPTHS,     /* family of paths */
  AE_M_EFFECTIVE_DEPTH, /* family of paths */
  AE_M_EFFECTIVE_WIDTH, /* family of paths */
  AE_M_DAG_FILTER,      /* family of paths */
  /* expressivity */
  AE_M_LINEAR_REGIONS,
  AE_M_LINEAR_REGIONS_SAMPLES,   /* family of linear_regions */
  AE_M_LINEAR_REGIONS_SATURATED, /* family of linear_regions */
  AE_M_CURVATURE,
  AE_M_PATH_PROXY,
  AE_M_ACTIVATION_PATTERNS,
  AE_M_ACTIVATION_PATTERNS_UNITS,     /* family of activation_patterns */
  AE_M_ACTIVATION_PATTERNS_SATURATED, /* family of activation_patterns */
  AE_M_PATTERN_KERNEL_LOGDET,
  AE_M_FEATURE_ISOTROPY,
  AE_M_FEATURE_PROGRESSIVITY, /* family of feature_isotropy */
  /* convergence */
  AE_M_NTK_LAMBDA_MIN,
  AE_M_NTK_LAMBDA_MAX,          /* family of ntk_lambda_min */
  AE_M_NTK_CONDITION,           /* family of ntk_lambda_min */
  AE_M_NNGP_LAMBDA_MIN,         /* the analytic kernels */
  AE_M_NNGP_LAMBDA_MIN_BOUND,   /* family of nngp_lambda_min */
  AE_M_NTK_ANALYTIC_LAMBDA_MIN, /* family of nngp_lambda_min */
  AE_M_RATE,                    /* family of ntk_lambda_min */
  AE_M_STEPS_TO_1E_3,           /* family of ntk_lambda_min */
  AE_M_FEATURE_CORR_LAMBDA_MIN,
  AE_M_FEATURE_CORR_LAMBDA_MIN_MEAN, /* family of feature_corr_lambda_min */
  AE_M_JACOBIAN_TRAINABILITY,
  /* generalization */
  AE_M_KERNEL_COMPLEXITY,
  AE_M_GAP_BOUND,   /* family of kernel_complexity */
  AE_M_ARORA_BOUND, /* family of kernel_complexity */
  AE_M_LABELS,      /* family of kernel_complexity */
  AE_M_KERNEL_REGRESSION_VAL_MSE,
  AE_M_KERNEL_REGRESSION_VAL_ACC, /* family of kernel_regression_val_mse */
  /* proxies */
  AE_M_SYNFLOW,
  AE_M_GRAD_NORM,
  AE_M_SNIP,
  AE_M_JACOB_COV,
  AE_M_ZICO,
  AE_M_COUNT
} ae_metric_id;

/* A set of metrics, one bit per ae_metric_id. */
typedef struct {
  uint64_t bits;
} ae_metric_set;

typedef struct {
  const char *group;  /* "topology", ..., "proxies" */
  const char *field;  /* "ntk_condition" (the scorecard key) */
  ae_metric_id main;  /* the family's main metric (itself for a main) */
  unsigned group_bit; /* its AE_GROUP_* bit (api/request.h) */
} ae_metric_info;

/* The catalog entry of id (id < AE_M_COUNT). */
const ae_metric_info *ae_metric_info_of(ae_metric_id id);

/* Parses "group.field" (any member of a family) into *id: 0, or -1 for an
 * unknown name. */
int ae_metric_from_name(const char *name, ae_metric_id *id);

/* The group names in order ("topology", "expressivity", "convergence",
 * "generalization", "proxies"), NULL-terminated, and the AE_GROUP_* bit
 * of one (0 for an unknown name). */
extern const char *const ae_metric_group_names[];
unsigned ae_metric_group_bit(const char *group);

static inline int ae_metric_set_has(ae_metric_set s, ae_metric_id id) {
  return (int)((s.bits >> id) & 1u);
}

/* Adds id and every other member of its family. */
void ae_metric_set_add(ae_metric_set *s, ae_metric_id id);
/* Adds every metric of the groups in group_bits (AE_GROUP_* bits). */
void ae_metric_set_add_groups(ae_metric_set *s, unsigned group_bits);
/* The AE_GROUP_* bits of the groups that have a metric in s. */
unsigned ae_metric_set_groups(ae_metric_set s);

/* The profiles of ranking.md §6: "fast", "rank", "full", "all".  0 and
 * *out filled, or -1 for an unknown name. */
int ae_metric_profile(const char *name, ae_metric_set *out);

#endif
