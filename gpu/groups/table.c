/* table.c: the metric groups in the order a job runs them (group.h).
 * Constant data; no state. */
#include "gpu/groups/group.h"

const ae_metric_group *const ae_metric_groups[] = {
    &ae_group_topology, &ae_group_expressivity, &ae_group_convergence,
    &ae_group_generalization};

const size_t ae_n_metric_groups =
    sizeof ae_metric_groups / sizeof ae_metric_groups[0];
