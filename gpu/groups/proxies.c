/* proxies.c: the proxies group (ranking.md §4): the published zero-cost
 * proxies synflow, grad_norm, snip, jacob_cov and zico, each only when the
 * job asks for it, on the job's host net (every backend: a CUDA job
 * computes them on its host side) with the weights of settings.init,
 * stream 0.  The computations are gradients.c's; this file draws the
 * weights, the labels and zico's second batch, and turns what cannot be
 * computed into warnings.  The passes run in float32 (synflow in float64).
 *
 * Runs on the job's worker thread; writes only job->sc->proxies and
 * warnings. */
#include "gpu/groups/group.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "api/status.h"
#include "gpu/groups/gradients.h"
#include "gpu/host/net.h"

/* Stores v into *slot, or a warning naming the metric when it is not
 * finite. */
static void put(ae_scorecard *sc, double *slot, double v, const char *name,
                const char *why) {
  if (isfinite(v)) {
    *slot = v;
    return;
  }
  *slot = NAN;
  ae_scorecard_warn(sc, "proxies.%s: %s", name,
                    why && why[0] ? why : "not finite");
}

/* The CE labels of a batch, checked against the net's classes; NULL
 * (with *bad set) when one is out of range, or on no memory. */
static int *ce_labels(const ae_job_state *job, const ae_batch *b, int offset,
                      int classes, int *bad) {
  int *y = malloc((size_t)b->n * sizeof *y);
  *bad = 0;
  if (!y) return NULL;
  ae_batch_class_labels(job->req, b, offset, y);
  for (int i = 0; i < b->n; i++)
    if (y[i] < 0 || y[i] >= classes) {
      *bad = 1;
      free(y);
      return NULL;
    }
  return y;
}

/* zico: the job's batch (grads g1) and the next batch. */
static int proxies_zico(ae_job_state *job, ae_net *net,
                        const ae_weight_grads *g1, int classes) {
  ae_scorecard *sc = job->sc;
  ae_batch next;
  ae_error e2 = AE_ERROR_INIT;
  int rc = ae_batch_draw_next(job->req, job->ds, &job->batch, &next, &e2);
  if (rc == AE_ENOTFOUND || rc == AE_EINVAL) {
    put(sc, &sc->proxies.zico, NAN, "zico",
        e2.reason ? e2.reason : "no second batch");
    ae_error_clear(&e2);
    ae_batch_free(&next);
    return AE_OK;
  }
  ae_error_clear(&e2);
  if (rc) {
    ae_batch_free(&next);
    return rc;
  }
  int bad;
  int *y2 = ce_labels(job, &next, job->batch.n, classes, &bad);
  if (!y2) {
    ae_batch_free(&next);
    if (!bad) return AE_ENOMEM;
    put(sc, &sc->proxies.zico, NAN, "zico",
        "a label of the second batch is outside the network's classes");
    return AE_OK;
  }
  ae_weight_grads g2;
  rc = ae_ce_weight_grads(net, next.x_net, y2, next.n, &g2);
  if (!rc) {
    put(sc, &sc->proxies.zico, ae_zico(g1, &g2), "zico", NULL);
    ae_weight_grads_free(&g2);
  }
  free(y2);
  ae_batch_free(&next);
  return rc;
}

/* grad_norm, snip and zico: the CE gradients of the batch. */
static int proxies_ce(ae_job_state *job, ae_net *net) {
  ae_scorecard *sc = job->sc;
  const ae_graph *g = ae_net_graph(net);
  int classes = g->nodes[g->output].shape[0];
  int bad;
  int *y = ce_labels(job, &job->batch, 0, classes, &bad);
  if (!y) {
    if (!bad) return AE_ENOMEM;
    const char *why = "a label is outside the network's classes";
    if (ae_job_wants(job, AE_M_GRAD_NORM))
      put(sc, &sc->proxies.grad_norm, NAN, "grad_norm", why);
    if (ae_job_wants(job, AE_M_SNIP))
      put(sc, &sc->proxies.snip, NAN, "snip", why);
    if (ae_job_wants(job, AE_M_ZICO))
      put(sc, &sc->proxies.zico, NAN, "zico", why);
    return AE_OK;
  }
  ae_weight_grads g1;
  int rc = ae_ce_weight_grads(net, job->batch.x_net, y, job->batch.n, &g1);
  free(y);
  if (rc) return rc;
  if (ae_job_wants(job, AE_M_GRAD_NORM))
    put(sc, &sc->proxies.grad_norm, ae_grad_norm(&g1), "grad_norm", NULL);
  if (ae_job_wants(job, AE_M_SNIP))
    put(sc, &sc->proxies.snip, ae_snip(&g1), "snip", NULL);
  rc = ae_job_checkpoint(job->ctl);
  if (!rc && ae_job_wants(job, AE_M_ZICO))
    rc = proxies_zico(job, net, &g1, classes);
  ae_weight_grads_free(&g1);
  return rc;
}

static int proxies_run(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  ae_net *net;
  int rc = ae_job_host_weights(job, &net, err);
  if (rc) return rc;
  if (ae_job_wants(job, AE_M_SYNFLOW)) {
    double v;
    rc = ae_synflow(net, &v);
    if (rc) return rc;
    put(sc, &sc->proxies.synflow, v, "synflow", NULL);
    rc = ae_job_checkpoint(job->ctl);
    if (rc) return rc;
  }
  if (ae_job_wants(job, AE_M_GRAD_NORM) || ae_job_wants(job, AE_M_SNIP) ||
      ae_job_wants(job, AE_M_ZICO)) {
    rc = proxies_ce(job, net);
    if (rc) return rc;
    rc = ae_job_checkpoint(job->ctl);
    if (rc) return rc;
  }
  if (ae_job_wants(job, AE_M_JACOB_COV)) {
    double v;
    char why[AE_GRAD_WHY] = "";
    rc = ae_jacob_cov(net, job->batch.x_net, job->batch.n, &v, why, sizeof why,
                      job->ctl);
    if (rc) return rc;
    put(sc, &sc->proxies.jacob_cov, v, "jacob_cov", why);
  }
  return ae_job_checkpoint(job->ctl);
}

const ae_metric_group ae_group_proxies = {
    .name = "proxies",
    .bit = AE_GROUP_PROXIES,
    .timing_offset = offsetof(ae_scorecard, provenance.t_proxies),
    .run = proxies_run,
};
