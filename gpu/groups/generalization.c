/* generalization.c: the generalization group (scorecard.md §2.4): the
 * kernel complexity of the labels under the normalised empirical NTK, the
 * path-weighted gap bound and Arora et al.'s bound.  Runs on the job's
 * worker thread; writes only job->sc->generalization (and warnings). */
#include "gpu/groups/group.h"

#include "gpu/groups/features.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "api/status.h"
#include "gpu/philox.h"

static void warn_no_complexity(ae_scorecard *sc, const char *why) {
  ae_scorecard_warn(sc, "generalization.kernel_complexity: %s", why);
  ae_scorecard_warn(sc, "generalization.gap_bound: no kernel complexity");
  ae_scorecard_warn(sc, "generalization.arora_bound: no kernel complexity");
}

/* The targets y (n x cols): centred one-hot dataset labels, or random
 * +-1 labels drawn from the seed when the batch has none. */
static void targets(const ae_job_state *job, int cols, double *y) {
  const ae_batch *b = &job->batch;
  ae_scorecard *sc = job->sc;
  if (b->labels) {
    sc->generalization.labels_random = 0;
    for (int i = 0; i < b->n; i++)
      for (int c = 0; c < cols; c++)
        y[(size_t)i * cols + c] = (b->labels[i] == c ? 1.0 : 0.0) - 1.0 / cols;
  } else {
    sc->generalization.labels_random = 1;
    for (int i = 0; i < b->n; i++)
      y[i] = ae_philox_uniform(job->req->seed, AE_TID_RANDOM_LABELS, 1,
                               (uint64_t)i) < 0.5
                 ? -1.0
                 : 1.0;
  }
}

/* The kernel complexity family, only when selected. */
static int generalization_run(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  if (!ae_job_wants(job, AE_M_KERNEL_COMPLEXITY)) {
    int rc = ae_job_checkpoint(job->ctl);
    if (!rc) rc = ae_features_generalization(job, err);
    return rc ? rc : ae_job_checkpoint(job->ctl);
  }
  int n = job->batch.n, rc = ae_job_theta(job, err);
  if (rc) return rc;
  rc = ae_job_paths(job, err);
  if (rc) return rc;
  size_t nn = (size_t)n * n;
  int cols = job->batch.labels ? job->batch.num_classes : 1;
  double *g = malloc(nn * sizeof *g);
  double *y = malloc((size_t)n * cols * sizeof *y);
  if (!g || !y) {
    rc = AE_ENOMEM;
    goto done;
  }
  double md = 0.0;
  for (int i = 0; i < n; i++)
    md += job->theta[(size_t)i * n + i];
  md /= n;
  if (!(md > 0.0)) {
    warn_no_complexity(sc, "the NTK has a zero diagonal");
    goto done;
  }
  for (size_t i = 0; i < nn; i++)
    g[i] = job->theta[i] / md;
  targets(job, cols, y);
  double q = NAN, jitter = 0.0;
  rc = ae_kernel_quadratic(g, n, y, cols, &q, &jitter, job->ctl);
  if (rc == AE_EINVAL) {
    rc = AE_OK;
    warn_no_complexity(sc, "the normalised NTK stays indefinite with the "
                           "largest jitter");
    goto done;
  }
  if (rc) goto done;
  if (jitter != 0.0)
    ae_scorecard_warn(sc,
                      "generalization: jitter %.3g added to the "
                      "normalised NTK's diagonal for the Cholesky",
                      jitter);
  double kc = sqrt(q / n);
  sc->generalization.kernel_complexity = kc;
  sc->generalization.gap_bound = job->paths.sum_depth * kc;
  sc->generalization.arora_bound = sqrt(2.0 * q / n);
done:
  free(g);
  free(y);
  if (!rc) rc = ae_job_checkpoint(job->ctl);
  if (!rc) rc = ae_features_generalization(job, err);
  if (rc) return rc;
  return ae_job_checkpoint(job->ctl);
}

const ae_metric_group ae_group_generalization = {
    .name = "generalization",
    .bit = AE_GROUP_GENERALIZATION,
    .timing_offset = offsetof(ae_scorecard, provenance.t_generalization),
    .run = generalization_run,
};
