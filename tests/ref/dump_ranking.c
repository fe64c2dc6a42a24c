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

static const char *op_name(ae_op op) {
  static const char *const names[] = {
      "input",    "linear",          "conv", "batch_norm", "act",
      "avg_pool", "global_avg_pool", "add",  "identity",   "zero",
      "flatten"};
  return (size_t)op < sizeof names / sizeof names[0] ? names[op] : "unknown";
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
  json_t *body = json_pack(
      "{s:{s:s, s:s, s:i, s:i}, s:o, s:I}", "architecture", "type", "nb201",
      "cell", cell, "channels", channels, "cells_per_stage", cells_per_stage,
      "data", json_loads(data, 0, NULL), "seed", (json_int_t)o->seed);
  if (!body) return fail("request", AE_ENOMEM);
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_request_parse(body, &cx->cat, &cx->lim, req, &p);
  json_decref(body);
  if (rc) return fail_problem(cell, &p);
  ae_problem_clear(&p);
  req->selected.bits = 0;
  for (size_t k = 0; k < N_RANKING_METRICS; k++)
    ae_metric_set_add(&req->selected, ranking_metrics[k]);
  req->metrics = ae_metric_set_groups(req->selected);
  req->settings.ap_repeats = o->repeats;
  req->settings.fc_samples = o->samples;
  return AE_OK;
}

/* graph.json and the weights of `net` (drawn for each stream in
 * [0, streams)) under dir: weights.bin when streams is 0 (stream 0), else
 * weights.R.bin per draw R. */
static int write_net(const char *dir, const ae_graph *g, ae_net *net,
                     unsigned long long seed, int batch, int classes,
                     int streams) {
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
        "{s:s, s:s, s:o, s:o, s:i, s:i, s:i, s:i, s:i, s:b, s:s, s:f, s:f}",
        "op", op_name(nd->op), "name", nd->name ? nd->name : "", "inputs", ins,
        "shape", shape, "out", nd->out, "kernel", nd->kernel, "stride",
        nd->stride, "padding", nd->padding, "count_include_pad",
        nd->count_include_pad, "bias", nd->bias, "act",
        nd->op == AE_OP_ACT ? ae_act_name(nd->act.fn) : "", "slope",
        nd->act.slope, "init_gain", nd->init_gain);
    if (!node || json_array_append_new(nodes, node)) rc = AE_ENOMEM;
    if (!rc && nd->block && json_array_append_new(blocks, json_integer(k)))
      rc = AE_ENOMEM;
  }
  json_t *root = NULL;
  if (!rc) {
    root = json_pack("{s:o, s:i, s:i, s:s, s:i}", "nodes", nodes, "output",
                     g->output, "batch", batch, "type", "nb201", "classes",
                     classes);
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
    ae_net_init_weights(net, seed, (uint32_t)r);
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

/* gauss.bin: the B Gaussian inputs (gpu/groups/job.c's stream). */
static int write_gauss(const char *dir, unsigned long long seed, size_t n) {
  float *g = malloc(n * sizeof *g);
  if (!g) return AE_ENOMEM;
  for (size_t i = 0; i < n; i++)
    g[i] = (float)ae_philox_normal(seed, AE_TID_GAUSS_INPUTS, 0, (uint64_t)i);
  int rc = write_file(dir, "gauss.bin", g, n * sizeof *g);
  free(g);
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
    fprintf(stderr, "dump_ranking: %s: the lowering marks %d block "
            "outputs: no rademacher.bin\n", dir, n_blocks);
  else
    rc = write_file(dir, "rademacher.bin", v, total * sizeof *v);
  free(v);
  free(blocks);
  return rc;
}

/* x.bin and y.bin from the engine's own draw of the request's batch. */
static int write_batch(const context *cx, const char *dir,
                       const ae_request *req, ae_batch *b) {
  const ae_dataset *ds = ae_dataset_find(&cx->reg, req->data.dataset);
  ae_error err = AE_ERROR_INIT;
  int rc = ae_batch_draw(req, ds, b, &err);
  if (rc) return fail_error("batch", &err, rc);
  rc = write_file(dir, "x.bin", b->x_net,
                  (size_t)b->n * (size_t)b->dim * sizeof(float));
  if (!rc && b->labels) {
    int32_t *y = malloc((size_t)b->n * sizeof *y);
    if (!y) return AE_ENOMEM;
    for (int i = 0; i < b->n; i++)
      y[i] = (int32_t)b->labels[i];
    rc = write_file(dir, "y.bin", y, (size_t)b->n * sizeof *y);
    free(y);
  }
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

/* expected.json (the engine's values of the ranking metrics, null where it
 * reports null) and engine.json (its dtype and warnings). */
static int write_expected(const char *dir, const char *tag,
                          const ae_scorecard *sc) {
  json_t *result = ae_scorecard_to_json(sc);
  json_t *exp = json_object();
  json_t *warnings = json_array();
  int rc = result && exp && warnings ? AE_OK : AE_ENOMEM;
  for (size_t k = 0; !rc && k < N_RANKING_METRICS; k++) {
    const ae_metric_info *mi = ae_metric_info_of(ranking_metrics[k]);
    char name[128];
    snprintf(name, sizeof name, "%s.%s", mi->group, mi->field);
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
    if (json_object_set(exp, name, v)) rc = AE_ENOMEM;
  }
  json_t *rendered = json_object_get(result, "warnings");
  if (!rc && rendered && json_array_extend(warnings, rendered)) rc = AE_ENOMEM;
  if (!rc) rc = write_json(dir, "expected.json", exp);
  if (!rc) {
    json_t *eng = json_pack("{s:s, s:O, s:f}", "dtype", "float32", "warnings",
                            warnings, "seconds", sc->provenance.t_total);
    rc = write_json(dir, "engine.json", eng);
    json_decref(eng);
  }
  json_decref(result);
  json_decref(exp);
  json_decref(warnings);
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
  if (!rc)
    rc = write_net(pdir, &preq.net, net, o->seed, probe_batch,
                   preq.net.num_classes, o->repeats);
  ae_net_destroy(net);
  ae_request_free(&preq);
  return rc;
}

static int dump_cell(const context *cx, const options *o, const char *tag,
                     const char *cell) {
  char dir[4096];
  int rc = join(dir, sizeof dir, o->out, tag);
  if (rc || (rc = make_dir(dir))) return rc;
  ae_request req;
  if ((rc = build_request(cx, o, cell, o->channels, o->cells_per_stage, &req)))
    return rc;
  ae_scorecard sc;
  ae_error err = AE_ERROR_INIT;
  rc = ae_engine_score(cx->engine, &req, &cx->reg, NULL, &sc, &err);
  if (rc) {
    ae_request_free(&req);
    return fail_error(cell, &err, rc);
  }
  rc = write_expected(dir, tag, &sc);
  ae_scorecard_free(&sc);
  ae_batch batch;
  memset(&batch, 0, sizeof batch);
  ae_net *net = NULL;
  double *theta = NULL;
  if (!rc) rc = write_batch(cx, dir, &req, &batch);
  if (!rc) rc = ae_net_create(&req.net, o->batch, &net);
  if (!rc)
    rc = write_net(dir, &req.net, net, req.seed, o->batch, req.net.num_classes,
                   0);
  if (!rc) {
    size_t nn = (size_t)o->batch * (size_t)o->batch;
    theta = malloc(nn * sizeof *theta);
    rc = theta ? ae_net_ntk(net, batch.x_net, batch.n,
                            req.settings.ntk_parameterization, theta, NULL)
               : AE_ENOMEM;
    if (!rc) rc = write_file(dir, "theta.bin", theta, nn * sizeof *theta);
  }
  if (!rc) rc = write_gauss(dir, req.seed, (size_t)batch.n * batch.dim);
  if (!rc) rc = write_rademacher(dir, &req.net, req.seed, o->batch);
  if (!rc) rc = write_probe(cx, o, dir, cell);
  free(theta);
  ae_net_destroy(net);
  ae_batch_free(&batch);
  ae_request_free(&req);
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
  fprintf(stderr,
          "usage: dump_ranking [--channels C] [--cells-per-stage N] "
          "[--batch B] [--seed S] [--repeats R] [--samples S] "
          "[--data DIR | --synthetic] OUT TAG=CELL...\n");
  return 2;
}

int main(int argc, char **argv) {
  ae_blas_tune_and_reexec(argc, argv);
  options o = {4, 1, 16, 8, 8, 0, 0, NULL, NULL};
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
