/* table.c: the metric groups in the order a job runs them, and which of
 * their metrics a job asks for (group.h).  The table is constant data;
 * the selection writes only the job's own state. */
#include "gpu/groups/group.h"

const ae_metric_group *const ae_metric_groups[] = {
    &ae_group_topology, &ae_group_expressivity, &ae_group_convergence,
    &ae_group_generalization};

const size_t ae_n_metric_groups =
    sizeof ae_metric_groups / sizeof ae_metric_groups[0];

void ae_job_select_metrics(ae_job_state *job) {
  unsigned want = job->req->metrics ? job->req->metrics : AE_GROUP_ALL;
  job->n_requested = 0;
  for (size_t g = 0; g < ae_n_metric_groups && g < AE_MAX_GROUPS; g++) {
    const ae_metric_group *grp = ae_metric_groups[g];
    if (!(want & grp->bit)) continue;
    uint64_t bits = 0;
    for (size_t k = 0; grp->metrics[k] && k < AE_MAX_GROUP_METRICS; k++)
      bits |= (uint64_t)1 << k;
    job->requested[job->n_requested].group = grp;
    job->requested[job->n_requested].metrics = bits;
    job->n_requested++;
  }
}
