/* topology.c: the topology group (scorecard.md §2.1): parameters, FLOPs
 * and MACs, and, when the paths family is selected, input-to-output paths
 * and their depths, effective depth and width, and the search-space
 * filter.  Runs on the job's worker thread; writes only
 * job->sc->topology. */
#include "gpu/groups/group.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"

static int topology_run(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  const ae_request *r = job->req;
  sc->topology.params = ae_graph_params(&r->net);
  sc->topology.flops = ae_graph_flops(&r->net);
  sc->topology.macs = ae_graph_macs(&r->net);
  if (!ae_job_wants(job, AE_M_PATHS)) return ae_job_checkpoint(job->ctl);
  int rc = ae_job_paths(job, err);
  if (rc) return rc;
  const ae_paths *paths = &job->paths;
  sc->topology.paths = paths->n_paths;
  if (paths->depths) {
    size_t n = paths->n_depths;
    sc->topology.path_depths = malloc((n ? n : 1) * sizeof(double));
    if (!sc->topology.path_depths) return AE_ENOMEM;
    memcpy(sc->topology.path_depths, paths->depths, n * sizeof(double));
    sc->topology.n_path_depths = n;
  } else {
    ae_scorecard_warn(sc,
                      "topology.path_depths: more than %d paths, the "
                      "list is omitted",
                      AE_MAX_PATH_LIST);
  }
  double dbar = ae_effective_depth(paths);
  double mbar = ae_effective_width(paths);
  sc->topology.effective_depth = dbar;
  sc->topology.effective_width = mbar;
  if (!isfinite(dbar))
    ae_scorecard_warn(sc, "topology.effective_depth: no input-to-output "
                          "path");
  else if (dbar == 0.0 && paths->n_paths > 0)
    ae_scorecard_warn(sc, "topology.paths: every input-to-output path is "
                          "parameter-free (skips and pools only): the cell "
                          "passes its input through");
  if (!isfinite(mbar))
    ae_scorecard_warn(sc, "topology.effective_width: undefined (no path or "
                          "no parameterised path)");
  sc->topology.dag_filter = ae_dag_filter(&r->arch, dbar, mbar);
  if (sc->topology.dag_filter < 0)
    ae_scorecard_warn(sc, "topology.dag_filter: no search space known for "
                          "this architecture");
  return ae_job_checkpoint(job->ctl);
}

const ae_metric_group ae_group_topology = {
    .name = "topology",
    .bit = AE_GROUP_TOPOLOGY,
    .timing_offset = offsetof(ae_scorecard, provenance.t_topology),
    .run = topology_run,
};
