/* table.c: the metric groups in the order a job runs them, and which of
 * their metrics a job asks for (group.h).  The table is constant data;
 * the selection writes only the job's own state. */
#include "gpu/groups/group.h"

const ae_metric_group *const ae_metric_groups[] = {
    &ae_group_topology, &ae_group_expressivity, &ae_group_convergence,
    &ae_group_generalization, &ae_group_proxies};

const size_t ae_n_metric_groups =
    sizeof ae_metric_groups / sizeof ae_metric_groups[0];

void ae_job_select_metrics(ae_job_state *job) {
  ae_metric_set s = job->req->selected;
  if (!s.bits) ae_metric_set_add_groups(&s, AE_GROUP_ALL);
  job->selected = s;
  unsigned groups = ae_metric_set_groups(s);
  job->n_requested = 0;
  for (size_t g = 0; g < ae_n_metric_groups && g < AE_MAX_GROUPS; g++)
    if (groups & ae_metric_groups[g]->bit)
      job->requested[job->n_requested++] = ae_metric_groups[g];
}
