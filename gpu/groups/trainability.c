/* trainability.c: convergence.jacobian_trainability (ranking.md §2) for
 * the convergence group: the job's host net with the weights of
 * settings.init (stream 0), the seed's Gaussian inputs, the graph's
 * block outputs, and gradients.c's computation (float32 passes, M and
 * its singular values in float64).  The forward is the job's shared one
 * (ae_job_host_forward): feature_isotropy's, when it ran and nothing used
 * the net since.
 *
 * Runs on the job's worker thread; writes only
 * job->sc->convergence.jacobian_trainability and warnings. */
#include "gpu/groups/group.h"

#include <math.h>
#include <stdlib.h>

#include "api/status.h"
#include "gpu/groups/gradients.h"
#include "gpu/host/net.h"

int ae_job_jacobian_trainability(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  sc->convergence.jacobian_trainability = NAN;
  if (!ae_job_wants(job, AE_M_JACOBIAN_TRAINABILITY)) return AE_OK;
  ae_net *net;
  int *blocks = NULL, n_blocks = 0;
  int rc = ae_job_host_forward(job, AE_JOB_INPUT_GAUSS, &net, err);
  if (!rc) rc = ae_graph_block_outputs(ae_net_graph(net), &blocks, &n_blocks);
  if (rc) return rc;
  double v;
  char why[AE_GRAD_WHY] = "";
  rc = ae_jacobian_trainability_of_forward(net, job->batch.n, blocks, n_blocks,
                                           job->req->seed, &job->req->net, &v,
                                           why, sizeof why);
  free(blocks);
  if (rc) return rc;
  if (isfinite(v))
    sc->convergence.jacobian_trainability = v;
  else
    ae_scorecard_warn(sc, "convergence.jacobian_trainability: %s",
                      why[0] ? why : "not finite");
  return ae_job_checkpoint(job->ctl);
}
