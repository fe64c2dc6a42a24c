/* engine.c: the scoring engine: turns one parsed request into a
 * scorecard (scorecard.md §2-3) by drawing the batch, running the network
 * executor (gpu/host/net.h, or in a CUDA build gpu/cuda/cuda_net.h for
 * backend cuda) and the analytic side (gpu/analytic/analytic.h) group by
 * group, with a checkpoint between every step.  Data, kernels, eigenvalues
 * and bounds are the same host code for both backends.
 *
 * An ae_engine belongs to one worker thread for its whole life; everything
 * a job allocates lives in a job_state on that thread's stack and is freed
 * before ae_engine_score returns.  The dataset registry is only read. */
#include "config.h"

#include <math.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/engine.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"
#ifdef HAVE_CUDA
#include "gpu/cuda/cuda_net.h"
#endif

/* OpenBLAS's thread control (declared by its cblas.h, not by every one). */
extern void openblas_set_num_threads(int num_threads);

/* Longest list of path depths the topology group returns. */
#define AE_MAX_PATH_LIST 100000
/* Linear-regions samples go through the probe in batches of this size
 * (TE-NAS: BN statistics per batch of 1000). */
#define AE_LR_BATCH 1000

struct ae_engine {
  ae_engine_config cfg;
  char name[32];
  size_t memory_bytes; /* buffers held by the job running now */
#ifdef HAVE_CUDA
  ae_cuda_context *cuda; /* the device, for backend cuda */
#endif
};

/* ---- the executor: the host net or, in a CUDA build, the device net ----
 * Both run the same lowered graph with the same Philox weights; only the
 * calls below differ.  Everything else (data, eigenvalues, kernels,
 * bounds) is the same host code for both backends. */

typedef struct {
  ae_net *host;
#ifdef HAVE_CUDA
  ae_cuda_net *cuda;
#endif
} exec_net;

static int exec_create(ae_engine *e, const ae_graph *g, int max_batch,
                       exec_net *out) {
  memset(out, 0, sizeof *out);
#ifdef HAVE_CUDA
  if (e->cuda) return ae_cuda_net_create(e->cuda, g, max_batch, &out->cuda);
#else
  (void)e;
#endif
  return ae_net_create(g, max_batch, &out->host);
}

static int exec_exists(const exec_net *n) {
#ifdef HAVE_CUDA
  if (n->cuda) return 1;
#endif
  return n->host != NULL;
}

static void exec_destroy(exec_net *n) {
#ifdef HAVE_CUDA
  ae_cuda_net_destroy(n->cuda);
#endif
  ae_net_destroy(n->host);
  memset(n, 0, sizeof *n);
}

static size_t exec_memory_bytes(const exec_net *n) {
#ifdef HAVE_CUDA
  if (n->cuda) return ae_cuda_net_memory_bytes(n->cuda);
#endif
  return n->host ? ae_net_memory_bytes(n->host) : 0;
}

static int exec_init_weights(exec_net *n, uint64_t seed, uint32_t stream) {
#ifdef HAVE_CUDA
  if (n->cuda) return ae_cuda_net_init_weights(n->cuda, seed, stream);
#endif
  ae_net_init_weights(n->host, seed, stream);
  return AE_OK;
}

static int exec_ntk(exec_net *n, const float *x, int batch,
                    ae_ntk_parameterization par, double *theta,
                    const ae_job_control *ctl) {
#ifdef HAVE_CUDA
  if (n->cuda) return ae_cuda_net_ntk(n->cuda, x, batch, par, theta, ctl);
#endif
  return ae_net_ntk(n->host, x, batch, par, theta, ctl);
}

static int exec_sign_patterns(exec_net *n, const float *x, int batch,
                              uint64_t **bits, size_t *words) {
#ifdef HAVE_CUDA
  if (n->cuda) return ae_cuda_net_sign_patterns(n->cuda, x, batch, bits, words);
#endif
  return ae_net_sign_patterns(n->host, x, batch, bits, words);
}

static int exec_forward_jet(exec_net *n, const double *x, const double *dx,
                            const double *ddx, int batch, double *y, double *dy,
                            double *ddy) {
#ifdef HAVE_CUDA
  if (n->cuda)
    return ae_cuda_net_forward_jet(n->cuda, x, dx, ddx, batch, y, dy, ddy);
#endif
  return ae_net_forward_jet(n->host, x, dx, ddx, batch, y, dy, ddy);
}

/* ---- time and checkpoints ---- */

static long long monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double seconds_since(long long t0) {
  return (double)(monotonic_ns() - t0) * 1e-9;
}

double ae_engine_default_job_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 8.0 * 1024 * 1024 * 1024;
  return 0.5 * (double)pages * (double)page;
}

int ae_job_checkpoint(const ae_job_control *ctl) {
  if (!ctl) return AE_OK;
  if (ctl->cancel && atomic_load(ctl->cancel)) return AE_ECANCELLED;
  if (ctl->deadline_ns > 0 && monotonic_ns() >= ctl->deadline_ns)
    return AE_EDEADLINE;
  return AE_OK;
}

#ifndef HAVE_CUDA
int ae_cuda_device_count(void) {
  return 0;
}
#endif

/* ---- engine lifetime ---- */

int ae_engine_open(const ae_engine_config *cfg, ae_engine **out,
                   ae_problem *p) {
  *out = NULL;
#ifndef HAVE_CUDA
  if (cfg->backend == AE_BACKEND_CUDA) {
    ae_problem_set(p, 503, "backend_unavailable", "Backend unavailable",
                   "the CUDA backend is not available in this build "
                   "(cuda:%d requested); use the host backend",
                   cfg->device);
    return AE_EUNSUPPORTED;
  }
#endif
  ae_engine *e = calloc(1, sizeof *e);
  if (!e) {
    ae_problem_set(p, 500, "internal", "Internal error",
                   "out of memory opening the engine");
    return AE_ENOMEM;
  }
  e->cfg = *cfg;
  if (e->cfg.blas_threads < 1) e->cfg.blas_threads = 1;
  snprintf(e->name, sizeof e->name, "host:%d", cfg->index);
#ifdef HAVE_CUDA
  if (cfg->backend == AE_BACKEND_CUDA) {
    char err[256] = "";
    int rc = ae_cuda_context_open(cfg->device, &e->cuda, err, sizeof err);
    if (rc) {
      ae_problem_set(p, 503, "backend_unavailable", "Backend unavailable",
                     "cannot open cuda:%d: %s", cfg->device,
                     err[0] ? err : ae_strerror(rc));
      free(e);
      return rc == AE_ENOMEM ? AE_ENOMEM : AE_EUNSUPPORTED;
    }
    snprintf(e->name, sizeof e->name, "cuda:%d", cfg->device);
  }
#endif
  openblas_set_num_threads(e->cfg.blas_threads);
  *out = e;
  return AE_OK;
}

const char *ae_engine_name(const ae_engine *e) {
  return e->name;
}

size_t ae_engine_memory_used(const ae_engine *e) {
#ifdef HAVE_CUDA
  if (e->cuda) return ae_cuda_context_memory_used(e->cuda);
#endif
  return e->memory_bytes;
}

void ae_engine_close(ae_engine *e) {
  if (!e) return;
#ifdef HAVE_CUDA
  ae_cuda_context_close(e->cuda);
#endif
  free(e);
}

/* ---- one job ---- */

typedef struct {
  ae_engine *e;
  const ae_request *req;
  const ae_dataset *ds; /* NULL for synthetic and inline data */
  const ae_job_control *ctl;
  ae_scorecard *sc;
  ae_problem *p;
  int n;             /* batch size N */
  int dim;           /* flattened input size d */
  float *x;          /* n * dim: the batch as drawn */
  float *x_net;      /* n * dim: as fed to the net (scaled) */
  const int *labels; /* n class labels, or NULL */
  int *labels_owned;
  int num_classes;
  double *k0; /* n * n cosine similarities */
  ae_paths paths;
  int have_paths;
  exec_net net;  /* the full network */
  double *theta; /* n * n empirical NTK of weights stream 0 */
} job_state;

static void job_free(job_state *j) {
  free(j->x);
  free(j->x_net);
  free(j->labels_owned);
  free(j->k0);
  if (j->have_paths) ae_paths_free(&j->paths);
  exec_destroy(&j->net);
  free(j->theta);
}

/* Scales each of n samples of dim floats to norm sqrt(dim) in place; an
 * all-zero sample stays zero. */
static void scale_to_sqrt_dim(float *x, int n, int dim) {
  for (int i = 0; i < n; i++) {
    float *v = x + (size_t)i * dim;
    double s = 0.0;
    for (int k = 0; k < dim; k++)
      s += (double)v[k] * v[k];
    if (s <= 0.0) continue;
    double f = sqrt((double)dim / s);
    for (int k = 0; k < dim; k++)
      v[k] = (float)(v[k] * f);
  }
}

/* Draws the batch (synthetic, dataset samples without replacement, or
 * inline), its net-ready copy, and K0. */
static int job_data(job_state *j) {
  const ae_request *r = j->req;
  const ae_data_spec *ds = &r->data;
  int n = ds->batch_size, dim = 1;
  for (int k = 0; k < ds->input_rank; k++)
    dim *= ds->input_shape[k];
  j->n = n;
  j->dim = dim;
  j->num_classes = ds->num_classes > 0 ? ds->num_classes : r->net.num_classes;
  size_t total = (size_t)n * dim;
  j->x = malloc(total * sizeof *j->x);
  j->x_net = malloc(total * sizeof *j->x_net);
  j->k0 = malloc((size_t)n * n * sizeof *j->k0);
  if (!j->x || !j->x_net || !j->k0) return AE_ENOMEM;
  if (ds->inputs) {
    memcpy(j->x, ds->inputs, total * sizeof *j->x);
    j->labels = ds->labels;
  } else if (!strcmp(ds->dataset, "synthetic")) {
    for (size_t i = 0; i < total; i++)
      j->x[i] = (float)ae_philox_normal(r->seed, AE_TID_SYNTHETIC_INPUTS, 0, i);
  } else {
    const ae_dataset *set = j->ds;
    long long per = (long long)set->shape[0] * set->shape[1] * set->shape[2];
    if (set->rank == 1) per = set->shape[0];
    if (per != dim || set->size < n) {
      ae_problem_set(j->p, 422, "invalid_request", "Invalid request",
                     "dataset '%s' has %lld samples of %lld values; the "
                     "request needs %d of %d",
                     set->name, set->size, per, n, dim);
      return AE_EINVAL;
    }
    /* Partial Fisher-Yates over the sample indices. */
    int *order = malloc((size_t)set->size * sizeof *order);
    j->labels_owned = malloc((size_t)n * sizeof *j->labels_owned);
    if (!order || !j->labels_owned) {
      free(order);
      return AE_ENOMEM;
    }
    for (long long i = 0; i < set->size; i++)
      order[i] = (int)i;
    for (int k = 0; k < n; k++) {
      double u =
          ae_philox_uniform(r->seed, AE_TID_SAMPLE_CHOICE, 0, (uint64_t)k);
      long long pick = k + (long long)(u * (double)(set->size - k));
      if (pick >= set->size) pick = set->size - 1;
      int t = order[k];
      order[k] = order[pick];
      order[pick] = t;
      memcpy(j->x + (size_t)k * dim, set->x + (size_t)order[k] * dim,
             (size_t)dim * sizeof *j->x);
      j->labels_owned[k] = set->y[order[k]];
    }
    free(order);
    j->labels = j->labels_owned;
    if (set->num_classes > j->num_classes) j->num_classes = set->num_classes;
  }
  memcpy(j->x_net, j->x, total * sizeof *j->x);
  if (r->net.scale_input_norm) scale_to_sqrt_dim(j->x_net, n, dim);
  /* K0: cosine similarity of the flattened batch. */
  double *norm = malloc((size_t)n * sizeof *norm);
  if (!norm) return AE_ENOMEM;
  for (int i = 0; i < n; i++) {
    const float *a = j->x + (size_t)i * dim;
    double s = 0.0;
    for (int k = 0; k < dim; k++)
      s += (double)a[k] * a[k];
    norm[i] = sqrt(s);
  }
  for (int i = 0; i < n; i++) {
    const float *a = j->x + (size_t)i * dim;
    j->k0[(size_t)i * n + i] = 1.0;
    for (int l = i + 1; l < n; l++) {
      const float *b = j->x + (size_t)l * dim;
      double s = 0.0;
      for (int k = 0; k < dim; k++)
        s += (double)a[k] * b[k];
      double c = norm[i] > 0 && norm[l] > 0 ? s / (norm[i] * norm[l]) : 0.0;
      if (c > 1.0) c = 1.0;
      if (c < -1.0) c = -1.0;
      j->k0[(size_t)i * n + l] = j->k0[(size_t)l * n + i] = c;
    }
  }
  free(norm);
  return AE_OK;
}

/* Paths of the cell DAG (nb201, mlp_dag) or of the graph, once. */
static int job_paths(job_state *j) {
  if (j->have_paths) return AE_OK;
  const ae_request *r = j->req;
  int rc = r->arch.type == AE_ARCH_GRAPH
               ? ae_graph_paths(&r->net, AE_MAX_PATH_LIST, &j->paths)
               : ae_dag_paths(&r->arch.dag, AE_MAX_PATH_LIST, &j->paths);
  if (rc) return rc;
  j->have_paths = 1;
  return AE_OK;
}

/* The full network, built once per job for batches of N (the host's jets
 * plan their own buffers; the device's jets need max(N, points)). */
static int job_net(job_state *j) {
  if (exec_exists(&j->net)) return AE_OK;
  int batch = j->n;
#ifdef HAVE_CUDA
  if (j->e->cuda && (j->req->metrics & AE_GROUP_EXPRESSIVITY) &&
      j->req->settings.curv_points > batch)
    batch = j->req->settings.curv_points;
#endif
  int rc = exec_create(j->e, &j->req->net, batch, &j->net);
  if (rc) return rc;
  j->e->memory_bytes += exec_memory_bytes(&j->net);
  return AE_OK;
}

/* ---- topology ---- */

static int group_topology(job_state *j) {
  ae_scorecard *sc = j->sc;
  const ae_request *r = j->req;
  sc->topology.params = ae_graph_params(&r->net);
  sc->topology.flops = ae_graph_flops(&r->net);
  int rc = job_paths(j);
  if (rc) return rc;
  sc->topology.paths = j->paths.n_paths;
  if (j->paths.depths) {
    size_t n = j->paths.n_depths;
    sc->topology.path_depths = malloc((n ? n : 1) * sizeof(double));
    if (!sc->topology.path_depths) return AE_ENOMEM;
    memcpy(sc->topology.path_depths, j->paths.depths, n * sizeof(double));
    sc->topology.n_path_depths = n;
  } else {
    ae_scorecard_warn(sc,
                      "topology.path_depths: more than %d paths, the "
                      "list is omitted",
                      AE_MAX_PATH_LIST);
  }
  double dbar = ae_effective_depth(&j->paths);
  double mbar = ae_effective_width(&j->paths);
  sc->topology.effective_depth = dbar;
  sc->topology.effective_width = mbar;
  if (!isfinite(dbar))
    ae_scorecard_warn(sc, "topology.effective_depth: no input-to-output "
                          "path");
  if (!isfinite(mbar))
    ae_scorecard_warn(sc, "topology.effective_width: undefined (no path or "
                          "no parameterised path)");
  sc->topology.dag_filter = ae_dag_filter(&r->arch, dbar, mbar);
  if (sc->topology.dag_filter < 0)
    ae_scorecard_warn(sc, "topology.dag_filter: no search space known for "
                          "this architecture");
  return ae_job_checkpoint(j->ctl);
}

/* ---- expressivity ---- */

/* The first smooth activation of g, or -1 when g is piecewise linear. */
static int first_smooth_activation(const ae_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == AE_OP_ACT &&
        !ae_act_is_piecewise_linear(g->nodes[i].act.fn))
      return (int)g->nodes[i].act.fn;
  return -1;
}

/* Fills the S probe inputs (S * probe_dim floats). */
static void lr_inputs(const job_state *j, const ae_graph *probe, float *in,
                      int s_count, int probe_dim) {
  const ae_request *r = j->req;
  int pool = j->ds ? (int)(j->ds->size > 0x7fffffff ? 0x7fffffff : j->ds->size)
             : r->data.inputs ? j->n
                              : 0;
  const float *images = j->ds ? j->ds->x : r->data.inputs;
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
    if (probe->scale_input_norm) scale_to_sqrt_dim(in, s_count, probe_dim);
  }
}

static int linear_regions(job_state *j) {
  ae_scorecard *sc = j->sc;
  const ae_request *r = j->req;
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
  ae_graph probe;
  memset(&probe, 0, sizeof probe);
  int rc = ae_arch_lower(&r->arch, &o, &lim, "/architecture", &probe, j->p);
  if (rc) return rc;
  int probe_dim = 1;
  for (int k = 0; k < o.input_rank; k++)
    probe_dim *= o.input_shape[k];
  int batch = s_count < AE_LR_BATCH ? s_count : AE_LR_BATCH;
  float *in = malloc((size_t)s_count * probe_dim * sizeof *in);
  exec_net net;
  memset(&net, 0, sizeof net);
  uint64_t *all = NULL;
  double sum = 0.0;
  int saturated_all = 1;
  if (!in) {
    rc = AE_ENOMEM;
    goto done;
  }
  lr_inputs(j, &probe, in, s_count, probe_dim);
  rc = exec_create(j->e, &probe, batch, &net);
  if (rc) goto done;
  j->e->memory_bytes += exec_memory_bytes(&net);
  for (int rep = 0; rep < repeats; rep++) {
    rc = exec_init_weights(&net, r->seed, (uint32_t)rep);
    if (rc) goto done;
    size_t words = 0;
    for (int s0 = 0; s0 < s_count; s0 += batch) {
      int b = s_count - s0 < batch ? s_count - s0 : batch;
      uint64_t *bits = NULL;
      size_t w = 0;
      rc = exec_sign_patterns(&net, in + (size_t)s0 * probe_dim, b, &bits, &w);
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
        rc = AE_EINTERNAL;
        goto done;
      }
      memcpy(all + (size_t)s0 * words, bits, (size_t)b * words * sizeof *all);
      free(bits);
      rc = ae_job_checkpoint(j->ctl);
      if (rc) goto done;
    }
    size_t count = 1;
    if (words &&
        (rc = ae_count_distinct_patterns(all, (size_t)s_count, words, &count)))
      goto done;
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
  j->e->memory_bytes -= exec_memory_bytes(&net);
  exec_destroy(&net);
  free(all);
  free(in);
  ae_graph_free(&probe);
  return rc;
}

/* NFL curvature: sum over a radius-1 circle of kappa, mean over repeats. */
static int curvature(job_state *j) {
  ae_scorecard *sc = j->sc;
  const ae_request *r = j->req;
  int pts = r->settings.curv_points, repeats = r->settings.curv_repeats;
  int dim = j->dim, classes = r->net.num_classes;
  int rc = job_net(j);
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
  /* Two orthonormal directions by Gram-Schmidt on Philox normals. */
  double *u0 = u, *u1 = u + dim;
  for (int k = 0; k < 2 * dim; k++)
    u[k] = ae_philox_normal(r->seed, AE_TID_CURVE_DIRS, 0, (uint64_t)k);
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
  if (!(n1 > 0.0) || dim < 2) {
    ae_scorecard_warn(sc, "expressivity.curvature: the input has fewer than "
                          "two dimensions");
    goto done;
  }
  for (int k = 0; k < dim; k++)
    u1[k] /= n1;
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
    rc = exec_init_weights(&j->net, r->seed, (uint32_t)rep);
    if (rc) goto done;
    rc = exec_forward_jet(&j->net, x, dx, ddx, pts, y, dy, ddy);
    if (rc) goto done;
    int degenerate = 0;
    sum += ae_curvature_sum(dy, ddy, pts, classes, &degenerate);
    degenerate_total += degenerate;
    rc = ae_job_checkpoint(j->ctl);
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

static int group_expressivity(job_state *j) {
  int rc = linear_regions(j);
  if (rc) return rc;
  rc = ae_job_checkpoint(j->ctl);
  if (rc) return rc;
  rc = curvature(j);
  if (rc) return rc;
  rc = job_paths(j);
  if (rc) return rc;
  double m = proxy_width(j->req);
  j->sc->expressivity.path_proxy = m > 0 ? ae_path_proxy(&j->paths, m) : NAN;
  if (!isfinite(j->sc->expressivity.path_proxy))
    ae_scorecard_warn(j->sc, "expressivity.path_proxy: %s",
                      j->paths.depths ? "undefined for this network"
                                      : "too many paths to list");
  return ae_job_checkpoint(j->ctl);
}

/* ---- convergence ---- */

/* Empirical NTK of weights stream `stream` into theta (n * n). */
static int empirical_ntk(job_state *j, uint32_t stream, double *theta) {
  int rc = job_net(j);
  if (rc) return rc;
  rc = exec_init_weights(&j->net, j->req->seed, stream);
  if (rc) return rc;
  return exec_ntk(&j->net, j->x_net, j->n,
                  j->req->settings.ntk_parameterization, theta, j->ctl);
}

/* The repeat-0 NTK, kept for the generalization group. */
static int job_theta(job_state *j) {
  if (j->theta) return AE_OK;
  j->theta = malloc((size_t)j->n * j->n * sizeof *j->theta);
  if (!j->theta) return AE_ENOMEM;
  int rc = empirical_ntk(j, 0, j->theta);
  if (rc) {
    free(j->theta);
    j->theta = NULL;
  }
  return rc;
}

static double mean_diagonal(const double *a, int n) {
  double s = 0.0;
  for (int i = 0; i < n; i++)
    s += a[(size_t)i * n + i];
  return s / n;
}

static int convergence_empirical(job_state *j, double *w) {
  ae_scorecard *sc = j->sc;
  const ae_request *r = j->req;
  int n = j->n, repeats = r->settings.ntk_repeats;
  double *theta = malloc((size_t)n * n * sizeof *theta);
  if (!theta) return AE_ENOMEM;
  double sum_min = 0, sum_max = 0, sum_cond = 0, sum_nmin = 0, sum_nmax = 0;
  int rank_deficient = 0, rc = AE_OK;
  for (int rep = 0; rep < repeats; rep++) {
    const double *t;
    if (rep == 0) {
      rc = job_theta(j);
      t = j->theta;
    } else {
      rc = empirical_ntk(j, (uint32_t)rep, theta);
      t = theta;
    }
    if (rc) goto done;
    rc = ae_sym_eigvals(t, n, w);
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
    rc = ae_job_checkpoint(j->ctl);
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

static int convergence_analytic(job_state *j, double *w) {
  ae_scorecard *sc = j->sc;
  const ae_request *r = j->req;
  int n = j->n;
  size_t nn = (size_t)n * n;
  double *k = malloc(nn * sizeof *k), *t = malloc(nn * sizeof *t);
  int rc = AE_OK;
  if (!k || !t) {
    rc = AE_ENOMEM;
    goto done;
  }
  if (r->arch.type == AE_ARCH_GRAPH) {
    rc = ae_graph_kernels(&r->net, j->k0, n, 1, k, t);
    if (rc == AE_EUNSUPPORTED) {
      rc = AE_OK;
      ae_scorecard_warn(sc, "convergence.nngp_lambda_min: the analytic "
                            "kernels need a dense graph (linear, act, add, "
                            "identity, zero, flatten)");
      ae_scorecard_warn(sc, "convergence.ntk_analytic_lambda_min: the "
                            "analytic kernels need a dense graph");
      goto done;
    }
    sc->provenance.analytic_exact = 1;
  } else {
    rc = ae_dag_kernels(&r->arch.dag, j->k0, n, 1, k, t);
    sc->provenance.analytic_exact = r->arch.type == AE_ARCH_MLP_DAG ? 1 : 0;
  }
  if (rc) goto done;
  rc = ae_sym_eigvals(k, n, w);
  if (rc) goto done;
  sc->convergence.nngp_lambda_min = w[0];
  for (size_t i = 0; i < nn; i++)
    t[i] += k[i];
  rc = ae_sym_eigvals(t, n, w);
  if (rc) goto done;
  sc->convergence.ntk_analytic_lambda_min = w[0];
done:
  if (r->arch.type == AE_ARCH_GRAPH) {
    ae_scorecard_warn(sc, "convergence.nngp_lambda_min_bound: defined for "
                          "cell DAGs (nb201, mlp_dag) only");
  } else {
    sc->convergence.nngp_lambda_min_bound = ae_u_nngp(&r->arch.dag, j->k0, n);
    if (!isfinite(sc->convergence.nngp_lambda_min_bound))
      ae_scorecard_warn(sc, "convergence.nngp_lambda_min_bound: needs at "
                            "least two samples");
  }
  free(k);
  free(t);
  return rc;
}

static int group_convergence(job_state *j) {
  double *w = malloc((size_t)j->n * sizeof *w);
  if (!w) return AE_ENOMEM;
  int rc = convergence_empirical(j, w);
  if (!rc) rc = ae_job_checkpoint(j->ctl);
  if (!rc) rc = convergence_analytic(j, w);
  free(w);
  if (rc) return rc;
  return ae_job_checkpoint(j->ctl);
}

/* ---- generalization ---- */

static int group_generalization(job_state *j) {
  ae_scorecard *sc = j->sc;
  const ae_request *r = j->req;
  int n = j->n, rc = job_theta(j);
  if (rc) return rc;
  rc = job_paths(j);
  if (rc) return rc;
  size_t nn = (size_t)n * n;
  int cols = j->labels ? j->num_classes : 1;
  double *g = malloc(nn * sizeof *g);
  double *y = malloc((size_t)n * cols * sizeof *y);
  if (!g || !y) {
    rc = AE_ENOMEM;
    goto done;
  }
  double md = mean_diagonal(j->theta, n);
  if (!(md > 0.0)) {
    ae_scorecard_warn(sc, "generalization.kernel_complexity: the NTK has a "
                          "zero diagonal");
    ae_scorecard_warn(sc, "generalization.gap_bound: no kernel complexity");
    ae_scorecard_warn(sc, "generalization.arora_bound: no kernel complexity");
    goto done;
  }
  for (size_t i = 0; i < nn; i++)
    g[i] = j->theta[i] / md;
  if (j->labels) {
    sc->generalization.labels_random = 0;
    for (int i = 0; i < n; i++)
      for (int c = 0; c < cols; c++)
        y[(size_t)i * cols + c] = (j->labels[i] == c ? 1.0 : 0.0) - 1.0 / cols;
  } else {
    sc->generalization.labels_random = 1;
    for (int i = 0; i < n; i++)
      y[i] =
          ae_philox_uniform(r->seed, AE_TID_RANDOM_LABELS, 1, (uint64_t)i) < 0.5
              ? -1.0
              : 1.0;
  }
  double q = NAN, jitter = 0.0;
  rc = ae_kernel_quadratic(g, n, y, cols, &q, &jitter);
  if (rc == AE_EINVAL) {
    rc = AE_OK;
    ae_scorecard_warn(sc, "generalization.kernel_complexity: the normalised "
                          "NTK stays indefinite with the largest jitter");
    ae_scorecard_warn(sc, "generalization.gap_bound: no kernel complexity");
    ae_scorecard_warn(sc, "generalization.arora_bound: no kernel complexity");
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
  sc->generalization.gap_bound = j->paths.sum_depth * kc;
  sc->generalization.arora_bound = sqrt(2.0 * q / n);
done:
  free(g);
  free(y);
  if (rc) return rc;
  return ae_job_checkpoint(j->ctl);
}

/* ---- ae_engine_score ---- */

static int problem_for(int rc, ae_problem *p) {
  if (p->status) return rc;
  switch (rc) {
  case AE_ECANCELLED:
    ae_problem_set(p, 409, "cancelled", "Job cancelled",
                   "the job was cancelled while running");
    break;
  case AE_EDEADLINE:
    ae_problem_set(p, 504, "deadline_exceeded", "Deadline exceeded",
                   "the job ran past its timeout_ms");
    break;
  case AE_ENOMEM:
    ae_problem_set(p, 507, "out_of_memory", "Out of memory",
                   "the job needs more memory than this worker has");
    break;
  case AE_EINVAL:
    ae_problem_set(p, 422, "invalid_request", "Invalid request",
                   "the engine cannot run this request");
    break;
  case AE_EDEVICE:
    ae_problem_set(p, 500, "internal", "Internal error",
                   "the device failed; the worker leaves service");
    break;
  default:
    ae_problem_set(p, 500, "internal", "Internal error",
                   "the engine failed (%s)", ae_strerror(rc));
    break;
  }
  return rc;
}

int ae_engine_score(ae_engine *e, const ae_request *req,
                    const ae_dataset_registry *reg, const ae_job_control *ctl,
                    ae_scorecard *out, ae_problem *p) {
  long long t_start = monotonic_ns();
  ae_scorecard_init(out);
  job_state j;
  memset(&j, 0, sizeof j);
  j.e = e;
  j.req = req;
  j.ctl = ctl;
  j.sc = out;
  j.p = p;
  e->memory_bytes = 0;
  ae_scorecard *sc = out;
  snprintf(sc->provenance.backend, sizeof sc->provenance.backend, "%s",
           e->cfg.backend == AE_BACKEND_CUDA ? e->name : "host");
  sc->provenance.seed = req->seed;
  snprintf(sc->provenance.dataset, sizeof sc->provenance.dataset, "%s",
           req->data.dataset ? req->data.dataset : "synthetic");
  sc->provenance.batch_size = req->data.batch_size;
  sc->provenance.analytic_exact = -1;
  int rc = AE_OK;
  const char *dsname = req->data.dataset ? req->data.dataset : "synthetic";
  if (!req->data.inputs && strcmp(dsname, "synthetic")) {
    j.ds = ae_dataset_find(reg, dsname);
    if (!j.ds) {
      ae_problem_set(p, 422, "invalid_request", "Invalid request",
                     "unknown dataset '%s'", dsname);
      ae_problem_add(p, "/data/dataset", "unknown dataset '%s'", dsname);
      rc = AE_EINVAL;
      goto done;
    }
  }
  if (req->data.batch_size < 1) {
    ae_problem_set(p, 422, "invalid_request", "Invalid request",
                   "the batch is empty");
    rc = AE_EINVAL;
    goto done;
  }
  rc = ae_job_checkpoint(ctl);
  if (!rc) rc = job_data(&j);
  if (rc) goto done;
  unsigned want = req->metrics ? req->metrics : AE_GROUP_ALL;
  static const struct {
    unsigned bit;
    int (*run)(job_state *);
  } groups[] = {{AE_GROUP_TOPOLOGY, group_topology},
                {AE_GROUP_EXPRESSIVITY, group_expressivity},
                {AE_GROUP_CONVERGENCE, group_convergence},
                {AE_GROUP_GENERALIZATION, group_generalization}};
  for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
    if (!(want & groups[g].bit)) continue;
    rc = ae_job_checkpoint(ctl);
    if (rc) goto done;
    long long t0 = monotonic_ns();
    sc->groups |= groups[g].bit;
    rc = groups[g].run(&j);
    if (rc) goto done;
    double dt = seconds_since(t0);
    switch (groups[g].bit) {
    case AE_GROUP_TOPOLOGY:
      sc->provenance.t_topology = dt;
      break;
    case AE_GROUP_EXPRESSIVITY:
      sc->provenance.t_expressivity = dt;
      break;
    case AE_GROUP_CONVERGENCE:
      sc->provenance.t_convergence = dt;
      break;
    default:
      sc->provenance.t_generalization = dt;
      break;
    }
  }
  sc->provenance.t_total = seconds_since(t_start);
done:
  job_free(&j);
  e->memory_bytes = 0;
  if (rc) {
    ae_scorecard_free(out);
    ae_scorecard_init(out);
    return problem_for(rc, p);
  }
  return AE_OK;
}

/* ---- warm-up ---- */

/* Two tiny requests that pass through every group and code path: an nb201
 * cell with every op kind, and an mlp_dag with skips and a smooth edge. */
static const char *const warmup_requests[] = {
    "{\"architecture\":{\"type\":\"nb201\",\"cell\":\"|nor_conv_3x3~0|+"
    "|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    "\",\"channels\":2,\"cells_per_stage\":1},\"data\":{\"batch_size\":4},"
    "\"settings\":{\"linear_regions\":{\"samples\":16,\"repeats\":1},"
    "\"curvature\":{\"points\":8,\"repeats\":1}}}",
    "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\","
    "\"width\":8},\"data\":{\"batch_size\":4,\"input_shape\":[16]},"
    "\"settings\":{\"linear_regions\":{\"samples\":16,\"repeats\":1},"
    "\"curvature\":{\"points\":8,\"repeats\":1}}}"};

#ifdef HAVE_CUDA
/* |a - b| within rel of the larger magnitude (or both non-finite). */
static int values_agree(double a, double b, double rel) {
  if (!isfinite(a) || !isfinite(b)) return !isfinite(a) && !isfinite(b);
  double scale = fmax(fabs(a), fabs(b));
  return fabs(a - b) <= rel * scale + 1e-12;
}

/* The CUDA backend's gate into service: its warm-up scorecard must match
 * the host reference's on the same request (scorecard.md §4: eigenvalues
 * and bounds within 1e-3, linear-region counts within 0.5 %).  A device
 * that disagrees leaves service rather than serve wrong numbers. */
static int cuda_matches_host(const ae_scorecard *dev,
                             const ae_scorecard *ref) {
  const double pairs[][2] = {
      {dev->convergence.ntk_lambda_min, ref->convergence.ntk_lambda_min},
      {dev->convergence.ntk_lambda_max, ref->convergence.ntk_lambda_max},
      {dev->convergence.nngp_lambda_min, ref->convergence.nngp_lambda_min},
      {dev->generalization.kernel_complexity,
       ref->generalization.kernel_complexity},
      {dev->expressivity.curvature, ref->expressivity.curvature}};
  for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++)
    if (!values_agree(pairs[i][0], pairs[i][1], 1e-3)) return 0;
  return values_agree(dev->expressivity.linear_regions,
                      ref->expressivity.linear_regions, 5e-3);
}

/* Scores req on a host engine too and compares.  0 or AE_EDEVICE. */
static int cuda_parity_gate(const ae_engine *e, const ae_request *req,
                            const ae_dataset_registry *reg,
                            const ae_scorecard *dev) {
  ae_engine_config hc = {AE_BACKEND_HOST, 0, e->cfg.index, 1};
  ae_engine *host = NULL;
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_engine_open(&hc, &host, &p);
  if (!rc) {
    ae_scorecard ref;
    rc = ae_engine_score(host, req, reg, NULL, &ref, &p);
    if (!rc && !cuda_matches_host(dev, &ref)) rc = AE_EDEVICE;
    ae_scorecard_free(&ref);
    ae_engine_close(host);
  }
  ae_problem_clear(&p);
  return rc;
}
#endif

int ae_engine_warmup(ae_engine *e, const ae_dataset_registry *reg) {
  ae_catalog cat = ae_dataset_registry_catalog(reg);
  ae_limits lim;
  ae_limits_default(&lim);
  int rc = AE_OK;
  for (size_t i = 0;
       rc == AE_OK && i < sizeof warmup_requests / sizeof *warmup_requests;
       i++) {
    ae_problem p = AE_PROBLEM_INIT;
    json_t *body = NULL;
    ae_request req;
    const char *text = warmup_requests[i];
    rc = ae_json_parse_body(text, strlen(text), &body, &p);
    if (!rc) {
      rc = ae_request_parse(body, &cat, &lim, &req, &p);
      if (!rc) {
        ae_scorecard sc;
        rc = ae_engine_score(e, &req, reg, NULL, &sc, &p);
#ifdef HAVE_CUDA
        if (!rc && e->cuda) rc = cuda_parity_gate(e, &req, reg, &sc);
#endif
        ae_scorecard_free(&sc);
        ae_request_free(&req);
      }
      json_decref(body);
    }
    if (rc == AE_EINVAL) rc = AE_EINTERNAL; /* our own request is bad */
    ae_problem_clear(&p);
  }
  return rc;
}
