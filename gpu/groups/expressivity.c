/* expressivity.c: the expressivity group (scorecard.md §2.2): linear
 * regions on a probe network (TE-NAS), NFL curvature of the logits along a
 * circle (forward jets on the full network), and NFL's path proxy.  Runs
 * on the job's worker thread; writes only job->sc->expressivity (and
 * warnings). */
#include "gpu/groups/group.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"

/* Linear-regions samples go through the probe in batches of this size
 * (TE-NAS: BN statistics per batch of 1000). */
#define AE_LR_BATCH 1000

/* The first smooth activation of g, or -1 when g is piecewise linear. */
static int first_smooth_activation(const ae_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == AE_OP_ACT &&
        !ae_act_is_piecewise_linear(g->nodes[i].act.fn))
      return (int)g->nodes[i].act.fn;
  return -1;
}

/* Fills the S probe inputs (S * probe_dim floats). */
static void lr_inputs(const ae_job_state *job, const ae_graph *probe, float *in,
                      int s_count, int probe_dim) {
  const ae_request *r = job->req;
  const ae_dataset *ds = job->ds;
  int pool = ds ? (int)(ds->size > 0x7fffffff ? 0x7fffffff : ds->size)
             : r->data.inputs ? job->batch.n
                              : 0;
  const float *images = ds ? ds->x : r->data.inputs;
  if (r->arch.type == AE_ARCH_NB201) {
    /* 3x3 crops of one random channel of random images (TE-NAS). */
    int ch = r->data.input_shape[0], h = r->data.input_shape[1],
        w = r->data.input_shape[2];
    for (int s = 0; s < s_count; s++) {
      float *o = in + (size_t)s * 9;
      if (!pool) {
        for (int k = 0; k < 9; k++)
          o[k] = (float)ae_philox_normal(r->seed, AE_TID_LR_CROPS, 1,
                                         (uint64_t)s * 9 + k);
        continue;
      }
      uint64_t b = (uint64_t)s * 4;
      int img = (int)(ae_philox_uniform(r->seed, AE_TID_LR_CROPS, 0, b) * pool);
      int c = (int)(ae_philox_uniform(r->seed, AE_TID_LR_CROPS, 0, b + 1) * ch);
      int y0 = (int)(ae_philox_uniform(r->seed, AE_TID_LR_CROPS, 0, b + 2) *
                     (h - 2));
      int x0 = (int)(ae_philox_uniform(r->seed, AE_TID_LR_CROPS, 0, b + 3) *
                     (w - 2));
      const float *plane = images + ((size_t)img * ch + c) * h * w;
      for (int dy = 0; dy < 3; dy++)
        for (int dx = 0; dx < 3; dx++)
          o[dy * 3 + dx] = plane[(size_t)(y0 + dy) * w + x0 + dx];
    }
  } else {
    /* Whole samples: dataset or inline samples with replacement, or
     * synthetic normals. */
    for (int s = 0; s < s_count; s++) {
      float *o = in + (size_t)s * probe_dim;
      if (!pool) {
        for (int k = 0; k < probe_dim; k++)
          o[k] = (float)ae_philox_normal(r->seed, AE_TID_LR_CROPS, 1,
                                         (uint64_t)s * probe_dim + k);
      } else {
        int img =
            (int)(ae_philox_uniform(r->seed, AE_TID_LR_CROPS, 0, (uint64_t)s) *
                  pool);
        memcpy(o, images + (size_t)img * probe_dim,
               (size_t)probe_dim * sizeof *o);
      }
    }
    if (probe->scale_input_norm) ae_scale_to_sqrt_dim(in, s_count, probe_dim);
  }
}

/* Lowers the probe network of the linear-regions count; a refusal becomes
 * err (the problem's first field and detail). */
static int lower_probe(const ae_request *r, ae_graph *probe, int *probe_dim,
                       ae_error *err) {
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.probe = 1;
  o.num_classes = r->net.num_classes;
  if (r->arch.type == AE_ARCH_NB201) {
    o.input_shape[0] = 1, o.input_shape[1] = 3, o.input_shape[2] = 3;
    o.input_rank = 3;
  } else {
    memcpy(o.input_shape, r->data.input_shape, sizeof o.input_shape);
    o.input_rank = r->data.input_rank;
  }
  ae_limits lim;
  ae_limits_default(&lim);
  lim.max_working_set_bytes = 0;
  memset(probe, 0, sizeof *probe);
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_arch_lower(&r->arch, &o, &lim, "/architecture", probe, &p);
  if (rc) {
    const ae_field_error *fe = p.n_errors ? &p.errors[0] : NULL;
    const char *why = fe && fe->detail ? fe->detail : p.detail;
    ae_error_set(err, rc, fe ? fe->pointer : NULL, "%s",
                 why ? why : ae_strerror(rc));
    ae_problem_clear(&p);
    return rc;
  }
  ae_problem_clear(&p);
  *probe_dim = 1;
  for (int k = 0; k < o.input_rank; k++)
    *probe_dim *= o.input_shape[k];
  return AE_OK;
}

static int linear_regions(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  const ae_request *r = job->req;
  const ae_executor *ex = job->exec;
  int s_count = r->settings.lr_samples, repeats = r->settings.lr_repeats;
  sc->expressivity.linear_regions_samples = s_count;
  int smooth = first_smooth_activation(&r->net);
  if (smooth >= 0) {
    ae_scorecard_warn(sc,
                      "expressivity.linear_regions: defined for "
                      "piecewise-linear activations only (this network "
                      "uses %s)",
                      ae_act_name((ae_act_fn)smooth));
    ae_scorecard_warn(sc, "expressivity.linear_regions_saturated: no "
                          "linear regions for smooth activations");
    return AE_OK;
  }
  if (r->arch.type == AE_ARCH_NB201 &&
      (r->data.input_rank != 3 || r->data.input_shape[1] < 3 ||
       r->data.input_shape[2] < 3)) {
    ae_scorecard_warn(sc, "expressivity.linear_regions: needs images of at "
                          "least 3x3 for the crops");
    ae_scorecard_warn(sc, "expressivity.linear_regions_saturated: no "
                          "linear regions");
    return AE_OK;
  }
  ae_graph probe;
  int probe_dim = 0;
  int rc = lower_probe(r, &probe, &probe_dim, err);
  if (rc) return rc;
  int batch = s_count < AE_LR_BATCH ? s_count : AE_LR_BATCH;
  float *in = malloc((size_t)s_count * probe_dim * sizeof *in);
  ae_exec_net *net = NULL;
  uint64_t *all = NULL;
  double sum = 0.0;
  int saturated_all = 1;
  if (!in) {
    rc = AE_ENOMEM;
    goto done;
  }
  lr_inputs(job, &probe, in, s_count, probe_dim);
  rc = ex->net_create(job->device, &probe, batch, &net);
  if (rc) goto done;
  for (int rep = 0; rep < repeats; rep++) {
    rc = ex->init_weights(net, r->seed, (uint32_t)rep);
    if (rc) goto done;
    size_t words = 0;
    for (int s0 = 0; s0 < s_count; s0 += batch) {
      int b = s_count - s0 < batch ? s_count - s0 : batch;
      uint64_t *bits = NULL;
      size_t w = 0;
      rc = ex->sign_patterns(net, in + (size_t)s0 * probe_dim, b, &bits, &w);
      if (rc) goto done;
      if (!all) {
        words = w;
        all = malloc(((size_t)s_count * words + 1) * sizeof *all);
        if (!all) {
          free(bits);
          rc = AE_ENOMEM;
          goto done;
        }
      }
      if (w != words) {
        free(bits);
        rc = ae_error_set(err, AE_EINTERNAL, NULL,
                          "sign patterns of %zu and %zu words in one count", w,
                          words);
        goto done;
      }
      memcpy(all + (size_t)s0 * words, bits, (size_t)b * words * sizeof *all);
      free(bits);
      rc = ae_job_checkpoint(job->ctl);
      if (rc) goto done;
    }
    size_t count = 1;
    if (words) {
      rc = ae_count_distinct_patterns(all, (size_t)s_count, words, &count);
      if (rc) goto done;
    }
    sum += (double)count;
    if (count != (size_t)s_count) saturated_all = 0;
    free(all);
    all = NULL;
  }
  sc->expressivity.linear_regions = sum / repeats;
  sc->expressivity.linear_regions_saturated = saturated_all;
  if (saturated_all)
    ae_scorecard_warn(sc,
                      "expressivity.linear_regions: saturated (every one "
                      "of the %d samples in its own region); raise "
                      "linear_regions.samples",
                      s_count);
done:
  ex->net_destroy(net);
  free(all);
  free(in);
  ae_graph_free(&probe);
  return rc;
}

/* Two orthonormal directions u0, u1 (dim each, in u) by Gram-Schmidt on
 * Philox normals.  0, or 1 when the input has fewer than two dimensions. */
static int circle_directions(uint64_t seed, int dim, double *u) {
  double *u0 = u, *u1 = u + dim;
  for (int k = 0; k < 2 * dim; k++)
    u[k] = ae_philox_normal(seed, AE_TID_CURVE_DIRS, 0, (uint64_t)k);
  double n0 = 0.0, dot = 0.0, n1 = 0.0;
  for (int k = 0; k < dim; k++)
    n0 += u0[k] * u0[k];
  n0 = sqrt(n0);
  for (int k = 0; k < dim; k++)
    u0[k] /= n0;
  for (int k = 0; k < dim; k++)
    dot += u0[k] * u1[k];
  for (int k = 0; k < dim; k++)
    u1[k] -= dot * u0[k];
  for (int k = 0; k < dim; k++)
    n1 += u1[k] * u1[k];
  n1 = sqrt(n1);
  if (!(n1 > 0.0) || dim < 2) return 1;
  for (int k = 0; k < dim; k++)
    u1[k] /= n1;
  return 0;
}

/* NFL curvature: sum over a radius-1 circle of kappa, mean over repeats. */
static int curvature(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  const ae_request *r = job->req;
  const ae_executor *ex = job->exec;
  int pts = r->settings.curv_points, repeats = r->settings.curv_repeats;
  int dim = job->batch.dim, classes = r->net.num_classes;
  int rc = ae_job_net(job, err);
  if (rc) return rc;
  size_t in_n = (size_t)pts * dim, out_n = (size_t)pts * classes;
  double *u = malloc(2 * (size_t)dim * sizeof *u);
  double *x = malloc(in_n * sizeof *x), *dx = malloc(in_n * sizeof *dx);
  double *ddx = malloc(in_n * sizeof *ddx);
  double *y = malloc(out_n * sizeof *y), *dy = malloc(out_n * sizeof *dy);
  double *ddy = malloc(out_n * sizeof *ddy);
  if (!u || !x || !dx || !ddx || !y || !dy || !ddy) {
    rc = AE_ENOMEM;
    goto done;
  }
  if (circle_directions(r->seed, dim, u)) {
    ae_scorecard_warn(sc, "expressivity.curvature: the input has fewer than "
                          "two dimensions");
    goto done;
  }
  const double *u0 = u, *u1 = u + dim;
  /* t = linspace(0, 2 pi, points), both ends included (as the NFL code). */
  for (int i = 0; i < pts; i++) {
    double t = pts > 1 ? 2.0 * M_PI * i / (pts - 1) : 0.0;
    double c = cos(t), s = sin(t);
    for (int k = 0; k < dim; k++) {
      size_t at = (size_t)i * dim + k;
      x[at] = u0[k] * c + u1[k] * s;
      dx[at] = -u0[k] * s + u1[k] * c;
      ddx[at] = -x[at];
    }
  }
  double sum = 0.0;
  int degenerate_total = 0;
  for (int rep = 0; rep < repeats; rep++) {
    rc = ex->init_weights(job->net, r->seed, (uint32_t)rep);
    if (rc) goto done;
    rc = ex->forward_jet(job->net, x, dx, ddx, pts, y, dy, ddy);
    if (rc) goto done;
    int degenerate = 0;
    sum += ae_curvature_sum(dy, ddy, pts, classes, &degenerate);
    degenerate_total += degenerate;
    rc = ae_job_checkpoint(job->ctl);
    if (rc) goto done;
  }
  sc->expressivity.curvature = sum / repeats;
  if (degenerate_total)
    ae_scorecard_warn(sc,
                      "expressivity.curvature: %d of %d points had a zero "
                      "velocity and were left out",
                      degenerate_total, pts * repeats);
  if (!isfinite(sc->expressivity.curvature))
    ae_scorecard_warn(sc, "expressivity.curvature: not finite");
done:
  free(u);
  free(x);
  free(dx);
  free(ddx);
  free(y);
  free(dy);
  free(ddy);
  return rc;
}

/* The width m of NFL's path proxy. */
static double proxy_width(const ae_request *r) {
  if (r->arch.type == AE_ARCH_MLP_DAG) return r->arch.width;
  if (r->arch.type == AE_ARCH_NB201) return r->arch.channels;
  int m = 0;
  for (int i = 0; i < r->net.n_nodes; i++) {
    const ae_node *nd = &r->net.nodes[i];
    if ((nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV) && nd->out > m)
      m = nd->out;
  }
  return m;
}

/* Each metric only when selected (a profile computes nothing it does not
 * report). */
static int expressivity_run(ae_job_state *job, ae_error *err) {
  int rc =
      ae_job_wants(job, AE_M_LINEAR_REGIONS) ? linear_regions(job, err) : AE_OK;
  if (rc) return rc;
  rc = ae_job_checkpoint(job->ctl);
  if (rc) return rc;
  rc = ae_job_wants(job, AE_M_CURVATURE) ? curvature(job, err) : AE_OK;
  if (rc) return rc;
  if (!ae_job_wants(job, AE_M_PATH_PROXY)) return ae_job_checkpoint(job->ctl);
  rc = ae_job_paths(job, err);
  if (rc) return rc;
  ae_scorecard *sc = job->sc;
  double m = proxy_width(job->req);
  sc->expressivity.path_proxy = m > 0 ? ae_path_proxy(&job->paths, m) : NAN;
  if (!isfinite(sc->expressivity.path_proxy))
    ae_scorecard_warn(sc, "expressivity.path_proxy: %s",
                      job->paths.depths ? "undefined for this network"
                                        : "too many paths to list");
  return ae_job_checkpoint(job->ctl);
}

const ae_metric_group ae_group_expressivity = {
    .name = "expressivity",
    .bit = AE_GROUP_EXPRESSIVITY,
    .timing_offset = offsetof(ae_scorecard, provenance.t_expressivity),
    .run = expressivity_run,
};
