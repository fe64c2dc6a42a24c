/* convergence.c: the convergence group (scorecard.md §2.3): eigenvalues of
 * the empirical NTK over the repeats (condition number, rate and steps of
 * gradient descent), of the analytic NNGP and NTK kernels, and the NNGP
 * lower bound of cell DAGs.  Runs on the job's worker thread; writes only
 * job->sc->convergence (and provenance.analytic_exact, warnings). */
#include "gpu/groups/group.h"

#include "gpu/groups/features.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"

static double mean_diagonal(const double *a, int n) {
  double s = 0.0;
  for (int i = 0; i < n; i++)
    s += a[(size_t)i * n + i];
  return s / n;
}

/* The empirical NTK's spectrum, averaged over the weight draws; w is
 * scratch for n eigenvalues. */
static int convergence_empirical(ae_job_state *job, double *w, ae_error *err) {
  ae_scorecard *sc = job->sc;
  const ae_request *r = job->req;
  int n = job->batch.n, repeats = r->settings.ntk_repeats;
  double *theta = malloc((size_t)n * n * sizeof *theta);
  if (!theta) return AE_ENOMEM;
  double sum_min = 0, sum_max = 0, sum_cond = 0, sum_nmin = 0, sum_nmax = 0;
  int rank_deficient = 0, rc = AE_OK;
  for (int rep = 0; rep < repeats; rep++) {
    const double *t;
    if (rep == 0) {
      rc = ae_job_theta(job, err);
      t = job->theta;
    } else {
      rc = ae_job_empirical_ntk(job, (uint32_t)rep, theta, err);
      t = theta;
    }
    if (rc) goto done;
    rc = ae_sym_eigvals(t, n, w, job->ctl);
    if (rc) goto done;
    double lmin = w[0], lmax = w[n - 1], md = mean_diagonal(t, n);
    sum_min += lmin;
    sum_max += lmax;
    if (lmin <= 0.0)
      rank_deficient = 1;
    else
      sum_cond += lmax / lmin;
    sum_nmin += md > 0 ? lmin / md : NAN;
    sum_nmax += md > 0 ? lmax / md : NAN;
    rc = ae_job_checkpoint(job->ctl);
    if (rc) goto done;
  }
  sc->convergence.ntk_lambda_min = sum_min / repeats;
  sc->convergence.ntk_lambda_max = sum_max / repeats;
  if (rank_deficient) {
    ae_scorecard_warn(sc, "convergence.ntk_condition: lambda_min <= 0 (rank "
                          "deficient)");
    ae_scorecard_warn(sc, "convergence.rate: lambda_min <= 0 (rank "
                          "deficient), no convergence guarantee");
    ae_scorecard_warn(sc, "convergence.steps_to_1e-3: lambda_min <= 0 (rank "
                          "deficient)");
    goto done;
  }
  sc->convergence.ntk_condition = sum_cond / repeats;
  double nmin = sum_nmin / repeats, nmax = sum_nmax / repeats;
  double eta = isfinite(r->settings.eta) ? r->settings.eta : 1.0 / nmax;
  double rate = 1.0 - eta * nmin / 2.0;
  if (!isfinite(rate)) {
    ae_scorecard_warn(sc, "convergence.rate: the NTK has a zero diagonal");
    ae_scorecard_warn(sc, "convergence.steps_to_1e-3: no rate");
    goto done;
  }
  sc->convergence.rate = rate;
  if (rate > 0.0 && rate < 1.0)
    sc->convergence.steps_to_1e_3 = ceil(log(1e-3) / log(rate));
  else
    ae_scorecard_warn(sc,
                      "convergence.steps_to_1e-3: rate %g is outside "
                      "(0, 1) (eta too large)",
                      rate);
done:
  free(theta);
  return rc;
}

/* The analytic kernels' smallest eigenvalues and the NNGP bound. */
static int convergence_analytic(ae_job_state *job, double *w, ae_error *err) {
  ae_scorecard *sc = job->sc;
  const ae_request *r = job->req;
  int n = job->batch.n;
  size_t nn = (size_t)n * n;
  double *t = NULL;
  int rc = ae_job_input_kernel(job, err); /* for the bound, below */
  if (rc) return rc;
  rc = ae_job_analytic_kernels(job, err);
  if (!ae_arch_has_dag(r->arch.type)) {
    if (rc == AE_EUNSUPPORTED) {
      rc = AE_OK;
      ae_scorecard_warn(sc, "convergence.nngp_lambda_min: the analytic "
                            "kernels need a dense graph (linear, act, add, "
                            "identity, zero, flatten)");
      ae_scorecard_warn(sc, "convergence.ntk_analytic_lambda_min: the "
                            "analytic kernels need a dense graph");
      goto done;
    }
    if (!rc) sc->provenance.analytic_exact = 1;
  } else {
    sc->provenance.analytic_exact = r->arch.type == AE_ARCH_MLP_DAG ? 1 : 0;
  }
  if (rc) goto done;
  t = malloc(nn * sizeof *t);
  if (!t) {
    rc = AE_ENOMEM;
    goto done;
  }
  rc = ae_sym_eigvals(job->nngp, n, w, job->ctl);
  if (rc) goto done;
  sc->convergence.nngp_lambda_min = w[0];
  /* The full NTK: the analytic kernel plus the NNGP term. */
  for (size_t i = 0; i < nn; i++)
    t[i] = job->ntk_an[i] + job->nngp[i];
  rc = ae_sym_eigvals(t, n, w, job->ctl);
  if (rc) goto done;
  sc->convergence.ntk_analytic_lambda_min = w[0];
done:
  if (rc == AE_EDEADLINE || rc == AE_ECANCELLED) {
    free(t); /* stopped: no bound either */
    return rc;
  }
  if (!ae_arch_has_dag(r->arch.type)) {
    ae_scorecard_warn(sc, "convergence.nngp_lambda_min_bound: defined for "
                          "cell DAGs (nb201, mlp_dag) only");
  } else {
    sc->convergence.nngp_lambda_min_bound =
        ae_u_nngp(&r->arch.dag, job->batch.k0, n);
    if (!isfinite(sc->convergence.nngp_lambda_min_bound))
      ae_scorecard_warn(sc, "convergence.nngp_lambda_min_bound: needs at "
                            "least two samples");
  }
  free(t);
  return rc;
}

/* The empirical NTK and the analytic kernels each only when selected. */
static int convergence_run(ae_job_state *job, ae_error *err) {
  double *w = malloc((size_t)job->batch.n * sizeof *w);
  if (!w) return AE_ENOMEM;
  int rc = ae_job_wants(job, AE_M_NTK_LAMBDA_MIN)
               ? convergence_empirical(job, w, err)
               : AE_OK;
  if (!rc) rc = ae_job_checkpoint(job->ctl);
  if (!rc && ae_job_wants(job, AE_M_NNGP_LAMBDA_MIN))
    rc = convergence_analytic(job, w, err);
  free(w);
  if (!rc) rc = ae_job_checkpoint(job->ctl);
  if (!rc) rc = ae_features_convergence(job, err);
  if (!rc) rc = ae_job_jacobian_trainability(job, err);
  if (rc) return rc;
  return ae_job_checkpoint(job->ctl);
}

const ae_metric_group ae_group_convergence = {
    .name = "convergence",
    .bit = AE_GROUP_CONVERGENCE,
    .timing_offset = offsetof(ae_scorecard, provenance.t_convergence),
    .run = convergence_run,
};
