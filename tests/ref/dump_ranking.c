/* dump_ranking.c: writes, for NAS-Bench-201 cells, the dump that
 * tests/ref/torch_ranking.py reads (its format: tests/ref/README.md), with
 * expected.json holding the engine's own values of the ranking metrics
 * (ranking.md §1-4), so that the PyTorch reference can hold the engine to
 * the spec.
 *
 *   dump_ranking [options] OUT TAG=CELL [TAG=CELL ...]
 *
 * writes OUT/TAG/ per cell.  The values come from ae_engine_score on the
 * host engine (the request's batch, weights stream 0, the seed's Gaussian
 * and Rademacher draws, all drawn by the engine itself); this program only
 * writes what the engine used beside them: the lowered graph with its
 * block outputs, the weights (stream 0), the batch and its labels, zico's
 * second batch, the Gaussian inputs, the Rademacher g_out of every block
 * pair, the probe network of ranking.md §0 (the same cell, C = 3, one cell
 * per stage) with its weights of every draw, and the empirical NTK.  It
 * computes no metric itself.
 *
 * The engine computes in float32; expected.json is therefore its float32
 * value, and the comparison takes torch_ranking.py --float32 with the
 * tolerance the test measures (engine.json says which dtype and lists the
 * engine's warnings).  A metric the engine left null with a warning that
 * it is not implemented is left out of expected.json (said on stderr).
 *
 * Options: --channels C (4), --cells-per-stage N (1), --batch B (16),
 * --seed S (0), --repeats R (activation_patterns draws, 8), --samples S
 * (feature_corr_lambda_min_mean, 8), --data DIR (a folder holding
 * cifar10/; default $AE_SHARED_DATA or ../shared/data, synthetic inputs
 * when there is no CIFAR-10 sample), --synthetic.
 *
 * Single-threaded: main owns everything. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/error.h"
#include "api/metric_set.h"
#include "api/problem.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/batch.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "gpu/groups/features.h"
#include "gpu/groups/gradients.h"
#include "gpu/host/blas_env.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"

/* The metrics of ranking.md §1-4, main metrics and family members. */
static const ae_metric_id ranking_metrics[] = {
    AE_M_ACTIVATION_PATTERNS,
    AE_M_ACTIVATION_PATTERNS_UNITS,
    AE_M_ACTIVATION_PATTERNS_SATURATED,
    AE_M_PATTERN_KERNEL_LOGDET,
    AE_M_FEATURE_ISOTROPY,
    AE_M_FEATURE_PROGRESSIVITY,
    AE_M_FEATURE_CORR_LAMBDA_MIN,
    AE_M_FEATURE_CORR_LAMBDA_MIN_MEAN,
    AE_M_JACOBIAN_TRAINABILITY,
    AE_M_KERNEL_REGRESSION_VAL_MSE,
    AE_M_KERNEL_REGRESSION_VAL_ACC,
    AE_M_SYNFLOW,
    AE_M_GRAD_NORM,
    AE_M_SNIP,
    AE_M_JACOB_COV,
    AE_M_ZICO};
#define N_RANKING_METRICS (sizeof ranking_metrics / sizeof ranking_metrics[0])

typedef struct {
  int channels, cells_per_stage, batch, repeats, samples;
  unsigned long long seed;
  int synthetic;
  int float32; /* expected.json from the job's float32 values */
  const char *data_dir;
  const char *out;
} options;

typedef struct {
  ae_dataset_registry reg;
  ae_catalog cat;
  ae_limits lim;
  ae_engine *engine;
} context;

static int fail(const char *what, int rc) {
  fprintf(stderr, "dump_ranking: %s: %s\n", what, ae_strerror(rc));
  return rc;
}

static int fail_error(const char *what, ae_error *err, int rc) {
  fprintf(stderr, "dump_ranking: %s: %s (%s)\n", what,
          err->reason ? err->reason : ae_strerror(rc),
          err->pointer ? err->pointer : "");
  ae_error_clear(err);
  return rc;
}

static int fail_problem(const char *what, ae_problem *p) {
  json_t *j = ae_problem_to_json(p, NULL);
  char *s = j ? ae_json_dumps(j) : NULL;
  fprintf(stderr, "dump_ranking: %s: %s\n", what, s ? s : "invalid");
  free(s);
  json_decref(j);
  ae_problem_clear(p);
  return AE_EINVAL;
}

static int join(char *buf, size_t size, const char *dir, const char *name) {
  int w = snprintf(buf, size, "%s/%s", dir, name);
  return w < 0 || (size_t)w >= size ? AE_EINVAL : AE_OK;
}

static int make_dir(const char *path) {
  if (mkdir(path, 0755) == 0 || errno == EEXIST) return AE_OK;
  fprintf(stderr, "dump_ranking: %s: %s\n", path, strerror(errno));
  return AE_EIO;
}

static int write_file(const char *dir, const char *name, const void *data,
                      size_t bytes) {
  char path[4096];
  if (join(path, sizeof path, dir, name)) return AE_EINVAL;
  FILE *f = fopen(path, "wb");
  if (!f) {
    fprintf(stderr, "dump_ranking: %s: %s\n", path, strerror(errno));
    return AE_EIO;
  }
  size_t put = bytes ? fwrite(data, 1, bytes, f) : 0;
  return fclose(f) == 0 && put == bytes ? AE_OK : AE_EIO;
}

static int write_json(const char *dir, const char *name, json_t *j) {
  char path[4096];
  if (!j) return AE_ENOMEM;
  if (join(path, sizeof path, dir, name)) return AE_EINVAL;
  int rc = json_dump_file(j, path, JSON_COMPACT | JSON_REAL_PRECISION(17))
               ? AE_EIO
               : AE_OK;
  return rc;
}

/* The request of one cell, its metrics set to those of ranking.md §1-4
 * whatever the request parser selects by default. */
static int build_request(const context *cx, const options *o, const char *cell,
                         int channels, int cells_per_stage, ae_request *req) {
  char data[256];
  if (o->synthetic)
    snprintf(data, sizeof data,
             "{\"dataset\":\"synthetic\",\"batch_size\":%d,"
             "\"input_shape\":[3,32,32],\"num_classes\":10}",
             o->batch);
  else
    snprintf(data, sizeof data, "{\"dataset\":\"cifar10\",\"batch_size\":%d}",
             o->batch);
  /* A cell starting with '{' is a whole architecture object (a graph:
   * its probe is the network itself, ranking.md §0). */
  json_t *arch =
      cell[0] == '{'
          ? json_loads(cell, 0, NULL)
          : json_pack("{s:s, s:s, s:i, s:i}", "type", "nb201", "cell", cell,
                      "channels", channels, "cells_per_stage", cells_per_stage);
  json_t *body =
      arch ? json_pack("{s:o, s:o, s:I}", "architecture", arch, "data",
                       json_loads(data, 0, NULL), "seed", (json_int_t)o->seed)
           : NULL;
  if (!body) return fail("request", AE_ENOMEM);
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_request_parse(body, &cx->cat, &cx->lim, req, &p);
  json_decref(body);
  if (rc) return fail_problem(cell, &p);
  ae_problem_clear(&p);
  req->selected.bits = 0;
  for (size_t k = 0; k < N_RANKING_METRICS; k++)
    ae_metric_set_add(&req->selected, ranking_metrics[k]);
  req->settings.ap_repeats = o->repeats;
  req->settings.fc_samples = o->samples;
  return AE_OK;
}

/* graph.json and the weights of `net` (drawn for each stream in
 * [0, streams)) under dir: weights.bin when streams is 0 (stream 0), else
 * weights.R.bin per draw R. */
static int write_net(const char *dir, const ae_graph *g, ae_net *net,
                     const ae_request *req, int batch, int streams) {
  int classes = g->num_classes;
  json_t *nodes = json_array(), *blocks = json_array();
  int rc = nodes && blocks ? AE_OK : AE_ENOMEM;
  for (int k = 0; !rc && k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    json_t *ins = json_array(), *shape = json_array();
    for (int i = 0; ins && i < nd->n_inputs; i++)
      json_array_append_new(ins, json_integer(nd->inputs[i]));
    for (int i = 0; shape && i < (nd->rank == 3 ? 3 : 1); i++)
      json_array_append_new(shape, json_integer(nd->shape[i]));
    json_t *node = json_pack(
        "{s:s, s:s, s:o, s:o, s:i, s:i, s:i, s:i, s:i, s:b, s:s, s:f, s:f, "
        "s:i, s:i, s:b, s:[i,i,i,i]}",
        "op", ae_op_name((int)nd->op), "name", nd->name ? nd->name : "",
        "inputs", ins, "shape", shape, "out", nd->out, "kernel", nd->kernel,
        "stride", nd->stride, "padding", nd->padding, "count_include_pad",
        nd->count_include_pad, "bias", nd->bias, "act",
        nd->op == AE_OP_ACT ? ae_act_name(nd->act.fn) : "", "slope",
        nd->act.slope, "init_gain", nd->init_gain, "groups",
        nd->groups > 1 ? nd->groups : 1, "dilation",
        nd->dilation > 1 ? nd->dilation : 1, "ceil_mode", nd->ceil_mode, "pads",
        nd->pads[0], nd->pads[1], nd->pads[2], nd->pads[3]);
    if (!node || json_array_append_new(nodes, node)) rc = AE_ENOMEM;
    if (!rc && nd->block && json_array_append_new(blocks, json_integer(k)))
      rc = AE_ENOMEM;
  }
  json_t *root = NULL;
  if (!rc) {
    root = json_pack("{s:o, s:i, s:i, s:s, s:i}", "nodes", nodes, "output",
                     g->output, "batch", batch, "type",
                     req->arch.type == AE_ARCH_GRAPH ? "graph" : "nb201",
                     "classes", classes);
    nodes = NULL;
    /* No block flags (a lowering without them): the reference's
     * fallback, which says so. */
    if (root && json_array_size(blocks) &&
        json_object_set_new(root, "blocks", blocks) == 0)
      blocks = NULL;
    rc = root ? write_json(dir, "graph.json", root) : AE_ENOMEM;
    json_decref(root);
  }
  json_decref(nodes);
  json_decref(blocks);
  static const ae_net_param_kind kinds[] = {AE_NET_WEIGHT, AE_NET_BIAS,
                                            AE_NET_GAMMA, AE_NET_BETA};
  for (int r = 0; !rc && r < (streams ? streams : 1); r++) {
    char name[64], path[4096];
    if (streams)
      snprintf(name, sizeof name, "weights.%d.bin", r);
    else
      snprintf(name, sizeof name, "weights.bin");
    ae_net_init_weights_scheme(net, req->seed, (uint32_t)r, req->settings.init);
    if ((rc = join(path, sizeof path, dir, name))) break;
    FILE *f = fopen(path, "wb");
    if (!f) return fail(path, AE_EIO);
    for (int k = 0; !rc && k < g->n_nodes; k++)
      for (int q = 0; !rc && q < 4; q++) {
        size_t count;
        float *t = ae_net_param(net, k, kinds[q], &count);
        if (t && fwrite(t, sizeof *t, count, f) != count) rc = AE_EIO;
      }
    if (fclose(f) != 0 && !rc) rc = AE_EIO;
  }
  return rc;
}

/* rademacher.bin: the g_out of every block pair l = 1..L-1, shaped like
 * block output l, concatenated in that order. */
static int write_rademacher(const char *dir, const ae_graph *g,
                            unsigned long long seed, int batch) {
  int *blocks = NULL, n_blocks = 0;
  int rc = ae_graph_block_outputs(g, &blocks, &n_blocks);
  if (rc) return rc;
  size_t total = 0;
  for (int l = 1; l < n_blocks; l++) {
    const ae_node *nd = &g->nodes[blocks[l]];
    total += (size_t)batch * nd->shape[0] * nd->shape[1] * nd->shape[2];
  }
  float *v = malloc((total ? total : 1) * sizeof *v);
  if (!v) {
    free(blocks);
    return AE_ENOMEM;
  }
  size_t at = 0;
  for (int l = 1; l < n_blocks; l++) {
    const ae_node *nd = &g->nodes[blocks[l]];
    size_t count = (size_t)batch * nd->shape[0] * nd->shape[1] * nd->shape[2];
    for (size_t i = 0; i < count; i++)
      v[at++] = ae_philox_uniform(seed, AE_TID_RADEMACHER, (uint32_t)l,
                                  (uint64_t)i) < 0.5
                    ? -1.0f
                    : 1.0f;
  }
  if (n_blocks < 2)
    fprintf(stderr,
            "dump_ranking: %s: the lowering marks %d block "
            "outputs: no rademacher.bin\n",
            dir, n_blocks);
  else
    rc = write_file(dir, "rademacher.bin", v, total * sizeof *v);
  free(v);
  free(blocks);
  return rc;
}

/* The batches of one cell as the engine draws them: the request's batch
 * and its cross-entropy labels, zico's second batch and its labels (n2 0
 * when the data has no second batch). */
typedef struct {
  ae_batch first, second;
  int *y, *y2;
  int has_second;
} batches;

static void batches_free(batches *b) {
  ae_batch_free(&b->first);
  ae_batch_free(&b->second);
  free(b->y);
  free(b->y2);
}

static int write_labels(const char *dir, const char *name, const int *y,
                        int n) {
  int32_t *v = malloc((size_t)n * sizeof *v);
  if (!v) return AE_ENOMEM;
  for (int i = 0; i < n; i++)
    v[i] = (int32_t)y[i];
  int rc = write_file(dir, name, v, (size_t)n * sizeof *v);
  free(v);
  return rc;
}

/* x.bin, y.bin, x2.bin and y2.bin from the engine's own draws
 * (ae_batch_draw, ae_batch_draw_next, ae_batch_class_labels). */
static int write_batches(const context *cx, const char *dir,
                         const ae_request *req, batches *b) {
  const ae_dataset *ds = ae_dataset_find(&cx->reg, req->data.dataset);
  ae_error err = AE_ERROR_INIT;
  int rc = ae_batch_draw(req, ds, &b->first, &err);
  if (rc) return fail_error("batch", &err, rc);
  int n = b->first.n;
  size_t bytes = (size_t)n * (size_t)b->first.dim * sizeof(float);
  b->y = malloc((size_t)n * sizeof *b->y);
  b->y2 = malloc((size_t)n * sizeof *b->y2);
  if (!b->y || !b->y2) return AE_ENOMEM;
  ae_batch_class_labels(req, &b->first, 0, b->y);
  rc = write_file(dir, "x.bin", b->first.x_net, bytes);
  if (!rc) rc = write_labels(dir, "y.bin", b->y, n);
  if (rc) return rc;
  rc = ae_batch_draw_next(req, ds, &b->first, &b->second, &err);
  if (rc == AE_ENOTFOUND) {
    fprintf(stderr, "dump_ranking: %s: no second batch (%s): no x2.bin\n", dir,
            err.reason ? err.reason : "");
    ae_error_clear(&err);
    return AE_OK;
  }
  if (rc) return fail_error("second batch", &err, rc);
  b->has_second = 1;
  ae_batch_class_labels(req, &b->second, n, b->y2);
  rc = write_file(dir, "x2.bin", b->second.x_net, bytes);
  if (!rc) rc = write_labels(dir, "y2.bin", b->y2, n);
  return rc;
}

/* 1 when a warning of the rendered result says that `name` is not
 * implemented (for this architecture or at all). */
static int not_implemented(const json_t *result, const char *name) {
  size_t len = strlen(name), i;
  const json_t *w;
  json_array_foreach(json_object_get(result, "warnings"), i, w) {
    const char *s = json_string_value(w);
    if (s && !strncmp(s, name, len) && strstr(s, "not implemented")) return 1;
  }
  return 0;
}

static const char *metric_name(ae_metric_id id, char *buf, size_t size) {
  const ae_metric_info *mi = ae_metric_info_of(id);
  snprintf(buf, size, "%s.%s", mi->group, mi->field);
  return buf;
}

/* The job's values (ae_engine_score's scorecard) of the ranking metrics:
 * null where it reports null; left out where it says it does not
 * implement one, or (kernel regression) where the batch has random
 * labels, which the reference cannot know. */
static json_t *job_values(const char *tag, const ae_scorecard *sc,
                          int has_labels, json_t **warnings) {
  json_t *result = ae_scorecard_to_json(sc);
  json_t *exp = json_object();
  if (!result || !exp) {
    json_decref(result);
    json_decref(exp);
    return NULL;
  }
  for (size_t k = 0; k < N_RANKING_METRICS; k++) {
    const ae_metric_info *mi = ae_metric_info_of(ranking_metrics[k]);
    char name[128];
    metric_name(ranking_metrics[k], name, sizeof name);
    json_t *v = json_object_get(json_object_get(result, mi->group), mi->field);
    if (!v) {
      fprintf(stderr, "dump_ranking: %s: %s: not in the scorecard\n", tag,
              name);
      continue;
    }
    if (json_is_null(v) && not_implemented(result, name)) {
      fprintf(stderr, "dump_ranking: %s: %s: not implemented in the engine\n",
              tag, name);
      continue;
    }
    if (!has_labels && mi->main == AE_M_KERNEL_REGRESSION_VAL_MSE) continue;
    json_object_set(exp, name, v);
  }
  json_t *w = json_object_get(result, "warnings");
  *warnings = w ? json_incref(w) : json_array();
  json_decref(result);
  return exp;
}

/* Sets name to v in obj (null when not finite). */
static void put(json_t *obj, ae_metric_id id, double v) {
  char name[128];
  metric_name(id, name, sizeof name);
  json_object_set_new(obj, name, isfinite(v) ? json_real(v) : json_null());
}

/* The engine's float64 values: the functions of gpu/groups/features.h and
 * gradients.h on the full network (and the probe) with ae_net_set_double
 * on, the weights and inputs the job uses.  What this adds to them is the
 * jobs' glue: the mean over draws and samples, the saturation flag, the
 * log det of the pattern kernel.  theta64: the float64 twin's NTK (out). */
static int float64_values(const options *o, const ae_request *req,
                          const ae_request *preq, const batches *b,
                          const float *gauss, double *theta64, json_t *exp) {
  int n = b->first.n, dim = b->first.dim;
  const float *x = b->first.x_net;
  ae_net *net = NULL, *probe = NULL;
  int *blocks = NULL, n_blocks = 0;
  double *K = malloc((size_t)n * n * sizeof *K);
  double *h = NULL;
  char why[AE_GRAD_WHY];
  ae_weight_grads g1, g2;
  memset(&g1, 0, sizeof g1);
  memset(&g2, 0, sizeof g2);
  int pb = n < AE_PATTERN_MAX_SAMPLES ? n : AE_PATTERN_MAX_SAMPLES;
  int rc =
      K ? ae_graph_block_outputs(&req->net, &blocks, &n_blocks) : AE_ENOMEM;
  if (!rc)
    rc = (h = malloc(((size_t)n_blocks + 1) * sizeof *h)) ? 0 : AE_ENOMEM;
  if (!rc) rc = ae_net_create(&preq->net, pb, &probe);
  if (!rc) rc = ae_net_set_double(probe, 1);
  /* §1 activation_patterns on the probe, one forward per draw. */
  double sum = 0.0;
  size_t units = 0;
  for (int r = 0; !rc && r < o->repeats; r++) {
    size_t distinct = 0;
    ae_net_init_weights_scheme(probe, req->seed, (uint32_t)r,
                               req->settings.init);
    rc = ae_features_pattern_count(probe, x, pb, &distinct, &units);
    sum += (double)distinct;
  }
  if (!rc) {
    double mean = units ? sum / o->repeats : NAN;
    double cap = (double)(1u << pb);
    if ((double)units < cap) cap = (double)units;
    put(exp, AE_M_ACTIVATION_PATTERNS, mean);
    put(exp, AE_M_ACTIVATION_PATTERNS_UNITS, units ? (double)units : NAN);
    char name[128];
    metric_name(AE_M_ACTIVATION_PATTERNS_SATURATED, name, sizeof name);
    json_object_set_new(exp, name,
                        units ? json_boolean(mean > 0.9 * cap) : json_null());
  }
  /* The full network, weights stream 0, float64 twin. */
  if (!rc) rc = ae_net_create(&req->net, n, &net);
  if (!rc) {
    ae_net_init_weights_scheme(net, req->seed, 0, req->settings.init);
    rc = ae_net_set_double(net, 1);
  }
  if (!rc) rc = ae_features_pattern_kernel(net, x, n, K, &units);
  if (!rc) {
    double ld = NAN;
    int lrc = units ? ae_logdet_cholesky(K, n, &ld, NULL) : AE_EINVAL;
    if (lrc && lrc != AE_EINVAL) rc = lrc;
    put(exp, AE_M_PATTERN_KERNEL_LOGDET, lrc ? NAN : ld);
  }
  if (!rc && n_blocks > 0)
    rc = ae_features_block_entropies(net, gauss, n, blocks, n_blocks, h);
  if (!rc) {
    double iso = NAN, prog = NAN;
    int finite = n_blocks > 0;
    for (int l = 0; l < n_blocks; l++)
      finite &= isfinite(h[l]) != 0;
    if (finite) ae_isotropy_progressivity(h, n_blocks, &iso, &prog);
    put(exp, AE_M_FEATURE_ISOTROPY, iso);
    put(exp, AE_M_FEATURE_PROGRESSIVITY, prog);
  }
  /* §2 */
  int samples = o->samples < n ? o->samples : n;
  double first = NAN, total = 0.0;
  int nodes = 0;
  for (int i = 0; !rc && i < samples; i++) {
    double v = 0.0;
    rc = ae_features_corr_lambda_min(net, x + (size_t)i * dim, &v, &nodes);
    if (i == 0) first = v;
    total += v;
  }
  if (!rc) {
    put(exp, AE_M_FEATURE_CORR_LAMBDA_MIN, nodes ? first : NAN);
    put(exp, AE_M_FEATURE_CORR_LAMBDA_MIN_MEAN, nodes ? total / samples : NAN);
  }
  double v = NAN;
  if (!rc)
    rc = ae_jacobian_trainability(net, gauss, n, blocks, n_blocks, req->seed,
                                  &req->net, &v, why, sizeof why);
  if (!rc) put(exp, AE_M_JACOBIAN_TRAINABILITY, v);
  /* §3 on the twin's NTK */
  if (!rc)
    rc = ae_net_ntk(net, x, n, req->settings.ntk_parameterization, theta64,
                    NULL);
  if (!rc && b->first.labels) {
    double mse = NAN, acc = NAN, jitter;
    int krc =
        ae_kernel_regression(theta64, n, b->first.labels, b->first.num_classes,
                             &mse, &acc, &jitter, NULL);
    if (krc && krc != AE_EINVAL) rc = krc;
    put(exp, AE_M_KERNEL_REGRESSION_VAL_MSE, krc ? NAN : mse);
    put(exp, AE_M_KERNEL_REGRESSION_VAL_ACC, krc ? NAN : acc);
  }
  /* §4 */
  if (!rc) rc = ae_synflow(net, &v);
  if (!rc) put(exp, AE_M_SYNFLOW, v);
  if (!rc) rc = ae_ce_weight_grads(net, x, b->y, n, &g1);
  if (!rc) {
    put(exp, AE_M_GRAD_NORM, ae_grad_norm(&g1));
    put(exp, AE_M_SNIP, ae_snip(&g1));
  }
  if (!rc && b->has_second) {
    rc = ae_ce_weight_grads(net, b->second.x_net, b->y2, n, &g2);
    if (!rc) put(exp, AE_M_ZICO, ae_zico(&g1, &g2));
  }
  if (!rc) rc = ae_jacob_cov(net, x, n, &v, why, sizeof why, NULL);
  if (!rc) put(exp, AE_M_JACOB_COV, v);
  ae_weight_grads_free(&g1);
  ae_weight_grads_free(&g2);
  ae_net_destroy(net);
  ae_net_destroy(probe);
  free(blocks);
  free(h);
  free(K);
  return rc;
}

/* probe/graph.json and probe/weights.R.bin: the same cell at C = 3, one
 * cell per stage (ranking.md §0), lowered as every nb201 request is. */
static int write_probe(const context *cx, const options *o, const char *dir,
                       const char *cell) {
  char pdir[4096];
  int rc = join(pdir, sizeof pdir, dir, "probe");
  if (rc || (rc = make_dir(pdir))) return rc;
  ae_request preq;
  if ((rc = build_request(cx, o, cell, 3, 1, &preq))) return rc;
  int probe_batch = o->batch < 16 ? o->batch : 16;
  ae_net *net = NULL;
  rc = ae_net_create(&preq.net, probe_batch, &net);
  if (!rc) rc = write_net(pdir, &preq.net, net, &preq, probe_batch, o->repeats);
  ae_net_destroy(net);
  ae_request_free(&preq);
  return rc;
}

static int dump_cell(const context *cx, const options *o, const char *tag,
                     const char *cell) {
  char dir[4096];
  int rc = join(dir, sizeof dir, o->out, tag);
  if (rc || (rc = make_dir(dir))) return rc;
  ae_request req, preq;
  if ((rc = build_request(cx, o, cell, o->channels, o->cells_per_stage, &req)))
    return rc;
  if ((rc = build_request(cx, o, cell, 3, 1, &preq))) {
    ae_request_free(&req);
    return rc;
  }
  /* The job's values, float32, through ae_engine_score. */
  ae_scorecard sc;
  ae_error err = AE_ERROR_INIT;
  rc = ae_engine_score(cx->engine, &req, &cx->reg, NULL, &sc, &err);
  if (rc) {
    ae_request_free(&req);
    ae_request_free(&preq);
    return fail_error(cell, &err, rc);
  }
  double job_seconds = sc.provenance.t_total;
  batches b;
  memset(&b, 0, sizeof b);
  ae_net *net = NULL;
  json_t *job = NULL, *v64 = NULL, *job_warnings = NULL;
  size_t nn = (size_t)o->batch * (size_t)o->batch;
  double *theta = malloc(nn * sizeof *theta);
  double *theta64 = malloc(nn * sizeof *theta64);
  float *gauss = NULL;
  rc = theta && theta64 ? AE_OK : AE_ENOMEM;
  if (!rc) rc = write_batches(cx, dir, &req, &b);
  if (!rc)
    rc = (job = job_values(tag, &sc, b.first.labels != NULL, &job_warnings))
             ? AE_OK
             : AE_ENOMEM;
  ae_scorecard_free(&sc);
  if (!rc) rc = ae_net_create(&req.net, o->batch, &net);
  if (!rc) rc = write_net(dir, &req.net, net, &req, o->batch, 0);
  /* The job's NTK (float32 net, the kernel of its regression). */
  if (!rc)
    rc = ae_net_ntk(net, b.first.x_net, b.first.n,
                    req.settings.ntk_parameterization, theta, NULL);
  size_t in_count = (size_t)b.first.n * (size_t)b.first.dim;
  if (!rc) rc = (gauss = malloc(in_count * sizeof *gauss)) ? 0 : AE_ENOMEM;
  for (size_t i = 0; !rc && i < in_count; i++)
    gauss[i] =
        (float)ae_philox_normal(req.seed, AE_TID_GAUSS_INPUTS, 0, (uint64_t)i);
  if (!rc) rc = write_file(dir, "gauss.bin", gauss, in_count * sizeof *gauss);
  if (!rc) rc = write_rademacher(dir, &req.net, req.seed, o->batch);
  if (!rc) rc = write_probe(cx, o, dir, cell);
  if (!rc && !o->float32) {
    rc = (v64 = json_object()) ? AE_OK : AE_ENOMEM;
    if (!rc) rc = float64_values(o, &req, &preq, &b, gauss, theta64, v64);
    if (!rc && !b.first.labels) {
      json_object_del(v64, "generalization.kernel_regression_val_mse");
      json_object_del(v64, "generalization.kernel_regression_val_acc");
    }
  }
  /* expected.json: float64 (theta.bin the twin's NTK), or with --float32
   * the job's values (theta.bin the job's NTK); expected32.json and
   * theta32.bin: the job's, beside float64 ones. */
  if (!rc && o->float32) {
    rc = write_json(dir, "expected.json", job);
    if (!rc) rc = write_file(dir, "theta.bin", theta, nn * sizeof *theta);
  } else if (!rc) {
    rc = write_json(dir, "expected.json", v64);
    if (!rc) rc = write_json(dir, "expected32.json", job);
    if (!rc) rc = write_file(dir, "theta.bin", theta64, nn * sizeof *theta64);
    if (!rc) rc = write_file(dir, "theta32.bin", theta, nn * sizeof *theta);
  }
  if (!rc) {
    json_t *eng =
        json_pack("{s:s, s:s, s:O, s:f}", "dtype",
                  o->float32 ? "float32" : "float64", "job_dtype", "float32",
                  "job_warnings", job_warnings, "job_seconds", job_seconds);
    rc = write_json(dir, "engine.json", eng);
    json_decref(eng);
  }
  json_decref(job);
  json_decref(v64);
  json_decref(job_warnings);
  free(gauss);
  free(theta);
  free(theta64);
  ae_net_destroy(net);
  batches_free(&b);
  ae_request_free(&req);
  ae_request_free(&preq);
  if (rc) fail(tag, rc);
  return rc;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: dump_ranking [--channels C] [--cells-per-stage N] "
                  "[--batch B] [--seed S] [--repeats R] [--samples S] "
                  "[--data DIR | --synthetic] [--float32] OUT TAG=CELL...\n");
  return 2;
}

int main(int argc, char **argv) {
  ae_blas_tune_and_reexec(argc, argv);
  options o = {4, 1, 16, 8, 8, 0, 0, 0, NULL, NULL};
  int a = 1;
  for (; a < argc && !strncmp(argv[a], "--", 2); a++) {
    const char *k = argv[a];
    int *slot = !strcmp(k, "--channels")          ? &o.channels
                : !strcmp(k, "--cells-per-stage") ? &o.cells_per_stage
                : !strcmp(k, "--batch")           ? &o.batch
                : !strcmp(k, "--repeats")         ? &o.repeats
                : !strcmp(k, "--samples")         ? &o.samples
                                                  : NULL;
    if (!strcmp(k, "--synthetic")) {
      o.synthetic = 1;
    } else if (!strcmp(k, "--float32")) {
      o.float32 = 1;
    } else if (a + 1 >= argc) {
      return usage();
    } else if (slot) {
      if (parse_int(argv[++a], 1, 4096, slot)) return usage();
    } else if (!strcmp(k, "--seed")) {
      o.seed = strtoull(argv[++a], NULL, 10);
    } else if (!strcmp(k, "--data")) {
      o.data_dir = argv[++a];
    } else {
      return usage();
    }
  }
  if (argc - a < 2) return usage();
  o.out = argv[a++];
  if (!o.data_dir) {
    const char *env = getenv("AE_SHARED_DATA");
    o.data_dir = env && env[0] ? env : AE_SRCDIR "/../shared/data";
  }
  context cx;
  memset(&cx, 0, sizeof cx);
  ae_error err = AE_ERROR_INIT;
  int rc = ae_dataset_registry_init(&cx.reg, 0, &err);
  if (rc) {
    fail_error("datasets", &err, rc);
    return 1;
  }
  if (!o.synthetic) {
    char spec[4200];
    snprintf(spec, sizeof spec, "cifar10=%s/cifar10", o.data_dir);
    if (ae_dataset_registry_add(&cx.reg, spec, &err)) {
      fprintf(stderr, "dump_ranking: no CIFAR-10 sample (%s): synthetic\n",
              err.reason ? err.reason : spec);
      ae_error_clear(&err);
      o.synthetic = 1;
    }
  }
  cx.cat = ae_dataset_registry_catalog(&cx.reg);
  ae_limits_default(&cx.lim);
  ae_engine_config cfg = {AE_BACKEND_HOST, 0, 0};
  rc = ae_engine_open(&cfg, &cx.engine, &err);
  if (rc) {
    fail_error("engine", &err, rc);
    ae_dataset_registry_free(&cx.reg);
    return 1;
  }
  rc = make_dir(o.out);
  for (; !rc && a < argc; a++) {
    char *eq = strchr(argv[a], '=');
    if (!eq || eq == argv[a]) {
      rc = usage();
      break;
    }
    *eq = '\0';
    rc = dump_cell(&cx, &o, argv[a], eq + 1);
  }
  ae_engine_close(cx.engine);
  ae_dataset_registry_free(&cx.reg);
  return rc ? 1 : 0;
}
