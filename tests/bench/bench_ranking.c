/* bench_ranking.c: what the ranking metrics (ranking.md §1-4) and the
 * profiles (§6) cost on the host engine, per architecture.
 *
 *   bench_ranking [--cells N] [--cell-seed S] [--seed S] [--channels C]
 *                 [--cells-per-stage N] [--batch B] [--full-cells K]
 *                 [--first-cell F] [--no-metrics] [--jobs NAME,...]
 *                 [--repeat R]
 *
 * Draws N NAS-Bench-201 cells (10 by default; 50 for RESULTS.md), each of
 * the six edges uniform over the five operations, from Philox with the
 * fixed --cell-seed (1), lists them, and for each one scores, on the
 * CIFAR-10 sample (synthetic inputs when it is missing, said on the first
 * line), NB201 C = 16, N = 5, batch 64, request seed 0, with one BLAS
 * thread (the engine's own setting):
 * - one job per profile (fast, rank, full, all; full and all only on the
 *   first K cells, --full-cells K (3; a few minutes in all for make
 *   bench), they cost the most);
 * (--first-cell F runs draws F .. F + N - 1, to split a run in parts;
 * --jobs fast,rank,jacobian_trainability runs only those columns, on
 * every cell; --repeat R runs each job R times and keeps its least CPU
 * time, the steadier number on a shared machine.)
 * - unless --no-metrics, one job per metric family of ranking.md §1-4
 *   with only that family selected (so each includes the job's fixed
 *   cost: the batch and the network's buffers), and one job with only
 *   topology.params (the fixed cost alone: the "base" column).
 * Prints the CPU seconds of every job (this process's CPU time around
 * ae_engine_score: the engine runs on one thread, so on a shared machine
 * this is the job's cost, where wall time depends on the load) per cell,
 * then per job the mean, median, p90, min and max over the cells, the
 * mean wall seconds (the engine's provenance.t_total), the number of
 * cells where the metric came back null, the hours all 15,625 NB201 cells
 * would take at that mean on one core, and the peak RSS.  When the `rank`
 * job ran: the arithmetic of what that profile computes per architecture
 * (rank_flops: from the lowered graphs' multiply-adds and ranking.md's
 * protocols), its rate over the job's CPU time, and this core's
 * single-thread SGEMM rate (1024^3, best of 5) to compare with.
 *
 * Single-threaded: main owns everything. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "api/error.h"
#include "api/metric_set.h"
#include "api/problem.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "gpu/groups/features.h"
#include "gpu/host/blas_env.h"
#include "gpu/philox.h"
#include "tests/bench/bench_rate.h"

/* The Philox tensor of the cell draw (a benchmark's own stream, outside
 * the engine's AE_TID_* range). */
#define CELL_DRAW_TENSOR 0x0be0c001u

static const char *const nb201_ops[] = {"none", "skip_connect", "nor_conv_1x1",
                                        "nor_conv_3x3", "avg_pool_3x3"};

typedef struct {
  const char *name;
  int profile;     /* 1: a profile name, 0: a metric family */
  ae_metric_id id; /* for a family: its main metric */
} column;

static const column columns[] = {
    {"fast", 1, AE_M_COUNT},
    {"rank", 1, AE_M_COUNT},
    {"full", 1, AE_M_COUNT},
    {"all", 1, AE_M_COUNT},
    {"base", 0, AE_M_PARAMS},
    {"activation_patterns", 0, AE_M_ACTIVATION_PATTERNS},
    {"pattern_kernel_logdet", 0, AE_M_PATTERN_KERNEL_LOGDET},
    {"feature_isotropy", 0, AE_M_FEATURE_ISOTROPY},
    {"feature_corr_lambda_min", 0, AE_M_FEATURE_CORR_LAMBDA_MIN},
    {"jacobian_trainability", 0, AE_M_JACOBIAN_TRAINABILITY},
    {"kernel_regression_val_mse", 0, AE_M_KERNEL_REGRESSION_VAL_MSE},
    {"synflow", 0, AE_M_SYNFLOW},
    {"grad_norm", 0, AE_M_GRAD_NORM},
    {"snip", 0, AE_M_SNIP},
    {"jacob_cov", 0, AE_M_JACOB_COV},
    {"zico", 0, AE_M_ZICO}};
#define N_COLUMNS (sizeof columns / sizeof columns[0])
#define N_PROFILES 4

typedef struct {
  int cells, channels, cells_per_stage, batch, metrics;
  int full_cells; /* the "full" and "all" jobs on the first full_cells */
  int first_cell; /* draws first_cell .. first_cell + cells - 1 */
  int repeat;     /* each job this many times; its least CPU time counts */
  unsigned only;  /* --jobs: a bit per column to run (0: all) */
  unsigned long long cell_seed, seed;
} options;

/* The NB201 cell string of draw k. */
static void draw_cell(unsigned long long cell_seed, int k, char *out,
                      size_t size) {
  int op[6];
  for (int e = 0; e < 6; e++) {
    double u = ae_philox_uniform(cell_seed, CELL_DRAW_TENSOR, (uint32_t)k,
                                 (uint64_t)e);
    op[e] = (int)(u * 5.0);
    if (op[e] > 4) op[e] = 4;
  }
  snprintf(out, size, "|%s~0|+|%s~0|%s~1|+|%s~0|%s~1|%s~2|", nb201_ops[op[0]],
           nb201_ops[op[1]], nb201_ops[op[2]], nb201_ops[op[3]],
           nb201_ops[op[4]], nb201_ops[op[5]]);
}

static void print_problem(const char *what, ae_problem *p) {
  json_t *j = ae_problem_to_json(p, NULL);
  char *s = j ? ae_json_dumps(j) : NULL;
  fprintf(stderr, "bench_ranking: %s: %s\n", what, s ? s : "invalid");
  free(s);
  json_decref(j);
  ae_problem_clear(p);
}

static int build_request(const options *o, const ae_catalog *cat,
                         const ae_limits *lim, int synthetic, const char *cell,
                         const column *col, ae_request *req) {
  char data[256];
  if (synthetic)
    snprintf(data, sizeof data,
             "{\"dataset\":\"synthetic\",\"batch_size\":%d,"
             "\"input_shape\":[3,32,32],\"num_classes\":10}",
             o->batch);
  else
    snprintf(data, sizeof data, "{\"dataset\":\"cifar10\",\"batch_size\":%d}",
             o->batch);
  json_t *body =
      json_pack("{s:{s:s, s:s, s:i, s:i}, s:o, s:I}", "architecture", "type",
                "nb201", "cell", cell, "channels", o->channels,
                "cells_per_stage", o->cells_per_stage, "data",
                json_loads(data, 0, NULL), "seed", (json_int_t)o->seed);
  if (!body) return AE_ENOMEM;
  /* A profile goes in the body, so its settings' defaults are a user's. */
  if (col->profile &&
      json_object_set_new(body, "profile", json_string(col->name))) {
    json_decref(body);
    return AE_ENOMEM;
  }
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_request_parse(body, cat, lim, req, &p);
  json_decref(body);
  if (rc) {
    print_problem(cell, &p);
    return rc;
  }
  ae_problem_clear(&p);
  /* A metric family alone: the selection is set here. */
  if (!col->profile) {
    req->selected.bits = 0;
    ae_metric_set_add(&req->selected, col->id);
  }
  return AE_OK;
}

/* CPU seconds of this process (the engine computes on one thread, so on a
 * shared machine this is what a job costs; wall time depends on the
 * load). */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* 1 when the family of main metric id came back null in sc. */
static int family_null(const ae_scorecard *sc, ae_metric_id id) {
  json_t *r = ae_scorecard_to_json(sc);
  const ae_metric_info *mi = ae_metric_info_of(id);
  json_t *v = json_object_get(json_object_get(r, mi->group), mi->field);
  int null = !v || json_is_null(v);
  json_decref(r);
  return null;
}

/* Multiply-adds of the rank profile's arithmetic for one architecture,
 * by part (ranking.md §1, §2, §4; FLOPs are twice these). */
typedef struct {
  double forward;  /* the batch's Gaussian forward (isotropy, trainability) */
  double backward; /* trainability's input-only backward through the blocks */
  double pairs;    /* trainability's M = g_in' g_out, every block pair */
  double cov;      /* isotropy's channel covariances of the block outputs */
  double corr;     /* feature_corr's one-sample forwards and correlations */
  double patterns; /* activation_patterns: the probe's forwards */
  double synflow;  /* synflow: one sample, forward, dX and dW (float64) */
} rank_macs;

static double rank_macs_total(const rank_macs *m) {
  return m->forward + m->backward + m->pairs + m->cov + m->corr + m->patterns +
         m->synflow;
}

static int lower(const ae_request *r, ae_probe probe, ae_graph *g) {
  ae_lower_opts lo;
  memset(&lo, 0, sizeof lo);
  lo.probe = probe;
  lo.num_classes = r->net.num_classes;
  memcpy(lo.input_shape, r->data.input_shape, sizeof lo.input_shape);
  lo.input_rank = r->data.input_rank;
  ae_limits lim;
  ae_limits_default(&lim);
  lim.max_working_set_bytes = 0;
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_arch_lower(&r->arch, &lo, &lim, "/architecture", g, &p);
  if (rc) print_problem("lowering", &p);
  ae_problem_clear(&p);
  return rc;
}

/* What the rank profile computes for r's network, batch B, in multiply-
 * adds: the forward of B samples; the backward of every block pair (dX
 * of each conv between the first and the last block output: as many
 * multiply-adds as its forward); M per pair (B h w C_in' C_out, C_in'
 * after pixel-unshuffle); the covariances (B H W C (C + 1) / 2 per block
 * output); fc_samples one-sample forwards with the correlation of every
 * rank-3 node (H W C (C + 1) / 2); ap_repeats forwards of the probe on
 * min(16, B) samples; synflow's three passes of one sample.  Elementwise
 * work (BN, ReLU, pools, adds), eigenvalues and the Philox draws are not
 * counted: the number is the GEMM-shaped arithmetic a perfect engine
 * could not avoid. */
static int rank_flops(const ae_request *r, rank_macs *m) {
  memset(m, 0, sizeof *m);
  ae_graph g, probe;
  if (lower(r, AE_PROBE_NONE, &g)) return -1;
  if (lower(r, AE_PROBE_RANKING, &probe)) {
    ae_graph_free(&g);
    return -1;
  }
  int *blocks = NULL, nb = 0;
  if (ae_graph_block_outputs(&g, &blocks, &nb) || nb < 1) {
    ae_graph_free(&g);
    ae_graph_free(&probe);
    return -1;
  }
  double B = r->data.batch_size, fwd = ae_graph_macs(&g), blk = 0, corr = 0;
  for (int k = 1; k < g.n_nodes; k++) {
    const ae_node *n = &g.nodes[k];
    if (k > blocks[0] && k <= blocks[nb - 1]) blk += ae_node_macs(&g, n);
    if (n->rank == 3 && n->op != AE_OP_ZERO)
      corr += (double)n->shape[1] * n->shape[2] * n->shape[0] *
              (n->shape[0] + 1) / 2;
  }
  for (int l = 0; l < nb; l++) {
    const ae_node *f = &g.nodes[blocks[l]];
    double hw = (double)f->shape[1] * f->shape[2], c = f->shape[0];
    m->cov += B * hw * c * (c + 1) / 2;
    if (l) {
      const ae_node *e = &g.nodes[blocks[l - 1]];
      double cin = (double)e->shape[0] * (e->shape[1] / f->shape[1]) *
                   (e->shape[2] / f->shape[2]);
      m->pairs += B * hw * cin * c;
    }
  }
  int ap = r->data.batch_size < AE_PATTERN_MAX_SAMPLES ? (int)r->data.batch_size
                                                       : AE_PATTERN_MAX_SAMPLES;
  m->forward = B * fwd;
  m->backward = B * blk;
  m->corr = r->settings.fc_samples * (fwd + corr);
  m->patterns = (double)r->settings.ap_repeats * ap * ae_graph_macs(&probe);
  m->synflow = 3 * fwd;
  free(blocks);
  ae_graph_free(&g);
  ae_graph_free(&probe);
  return 0;
}

static int parse_opts(int argc, char **argv, options *o) {
  for (int a = 1; a < argc; a++) {
    const char *k = argv[a];
    if (!strcmp(k, "--no-metrics")) {
      o->metrics = 0;
      continue;
    }
    if (a + 1 >= argc) return -1;
    const char *v = argv[++a];
    if (!strcmp(k, "--jobs")) {
      char list[512];
      snprintf(list, sizeof list, "%s", v);
      for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) {
        size_t c = 0;
        while (c < N_COLUMNS && strcmp(columns[c].name, t))
          c++;
        if (c == N_COLUMNS) return -1;
        o->only |= 1u << c;
      }
      continue;
    }
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || end == v) return -1;
    if (!strcmp(k, "--cell-seed"))
      o->cell_seed = x;
    else if (!strcmp(k, "--seed"))
      o->seed = x;
    else if (!strcmp(k, "--full-cells") && x <= 4096)
      o->full_cells = (int)x;
    else if (!strcmp(k, "--first-cell") && x <= 1000000)
      o->first_cell = (int)x;
    else if (x < 1 || x > 4096)
      return -1;
    else if (!strcmp(k, "--cells"))
      o->cells = (int)x;
    else if (!strcmp(k, "--channels"))
      o->channels = (int)x;
    else if (!strcmp(k, "--cells-per-stage"))
      o->cells_per_stage = (int)x;
    else if (!strcmp(k, "--batch"))
      o->batch = (int)x;
    else if (!strcmp(k, "--repeat") && x <= 100)
      o->repeat = (int)x;
    else
      return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  ae_blas_tune_and_reexec(argc, argv);
  options o = {10, 16, 5, 64, 1, 3, 0, 1, 0, 0, 1};
  if (parse_opts(argc, argv, &o)) {
    fprintf(stderr, "usage: bench_ranking [--cells N] [--cell-seed S] "
                    "[--seed S] [--channels C] [--cells-per-stage N] "
                    "[--batch B] [--full-cells K] [--first-cell F] "
                    "[--no-metrics] [--jobs NAME,...] [--repeat R]\n");
    return 2;
  }
  const char *shared = getenv("AE_SHARED_DATA");
  char spec[4200];
  snprintf(spec, sizeof spec, "cifar10=%s/cifar10",
           shared && shared[0] ? shared : AE_SRCDIR "/../shared/data");
  ae_dataset_registry reg;
  ae_error err = AE_ERROR_INIT;
  if (ae_dataset_registry_init(&reg, 0, &err)) {
    fprintf(stderr, "bench_ranking: %s\n", err.reason ? err.reason : "init");
    ae_error_clear(&err);
    return 1;
  }
  int synthetic = 0;
  if (ae_dataset_registry_add(&reg, spec, &err)) {
    ae_error_clear(&err);
    synthetic = 1;
  }
  ae_engine_config cfg = {AE_BACKEND_HOST, 0, 0};
  ae_engine *e = NULL;
  if (ae_engine_open(&cfg, &e, &err)) {
    fprintf(stderr, "bench_ranking: %s\n", err.reason ? err.reason : "engine");
    ae_error_clear(&err);
    ae_dataset_registry_free(&reg);
    return 1;
  }
  ae_catalog cat = ae_dataset_registry_catalog(&reg);
  ae_limits lim;
  ae_limits_default(&lim);
  size_t n_cols = o.metrics || o.only ? N_COLUMNS : N_PROFILES;
  if (o.full_cells < 0 || o.full_cells > o.cells) o.full_cells = o.cells;
  double *cpu = malloc((size_t)o.cells * n_cols * sizeof *cpu);
  double *wall = malloc((size_t)o.cells * n_cols * sizeof *wall);
  double *col = malloc((size_t)o.cells * sizeof *col);
  int nulls[N_COLUMNS] = {0};
  if (!cpu || !wall || !col) return 1;
  printf("nb201 C=%d N=%d, batch %d, %s, request seed %llu, cells %d..%d "
         "drawn with cell seed %llu (\"full\" and \"all\" on the first %d), "
         "one BLAS thread; CPU seconds per job\n",
         o.channels, o.cells_per_stage, o.batch,
         synthetic ? "synthetic inputs (no CIFAR-10 sample)"
                   : "CIFAR-10 sample",
         o.seed, o.first_cell, o.first_cell + o.cells - 1, o.cell_seed,
         o.full_cells);
  printf("%-4s", "cell");
  for (size_t c = 0; c < n_cols; c++)
    printf(" %s", columns[c].name);
  printf(" nb201\n");
  int status = 0, rank_cells = 0;
  rank_macs rank_sum = {0};
  double rank_cpu = 0;
  double *rank_gflop = calloc((size_t)o.cells, sizeof *rank_gflop);
  double *rank_sec = calloc((size_t)o.cells, sizeof *rank_sec);
  if (!rank_gflop || !rank_sec) return 1;
  for (int k = 0; k < o.cells && !status; k++) {
    char cell[256];
    draw_cell(o.cell_seed, o.first_cell + k, cell, sizeof cell);
    printf("%-4d", o.first_cell + k);
    for (size_t c = 0; c < n_cols && !status; c++) {
      size_t at = (size_t)k * n_cols + c;
      cpu[at] = wall[at] = NAN;
      int heavy = columns[c].profile && (!strcmp(columns[c].name, "full") ||
                                         !strcmp(columns[c].name, "all"));
      if ((heavy && k >= o.full_cells && !o.only) ||
          (o.only && !(o.only & (1u << c)))) {
        printf(" -");
        continue;
      }
      ae_request req;
      ae_scorecard sc;
      if (build_request(&o, &cat, &lim, synthetic, cell, &columns[c], &req)) {
        status = 1;
        break;
      }
      for (int r = 0; r < o.repeat; r++) {
        if (r) ae_scorecard_free(&sc);
        double c0 = cpu_seconds();
        if (ae_engine_score(e, &req, &reg, NULL, &sc, &err)) {
          fprintf(stderr, "bench_ranking: %s: %s: %s\n", cell, columns[c].name,
                  err.reason ? err.reason : ae_strerror(err.code));
          ae_error_clear(&err);
          status = 1;
          break;
        }
        double t = cpu_seconds() - c0;
        if (!r || t < cpu[at]) cpu[at] = t;
      }
      if (status) {
        ae_request_free(&req);
        break;
      }
      wall[at] = sc.provenance.t_total;
      if (!strcmp(columns[c].name, "rank")) {
        rank_macs rm;
        if (rank_flops(&req, &rm)) {
          status = 1;
          ae_scorecard_free(&sc);
          ae_request_free(&req);
          break;
        }
        rank_sum.forward += rm.forward;
        rank_sum.backward += rm.backward;
        rank_sum.pairs += rm.pairs;
        rank_sum.cov += rm.cov;
        rank_sum.corr += rm.corr;
        rank_sum.patterns += rm.patterns;
        rank_sum.synflow += rm.synflow;
        rank_cpu += cpu[at];
        rank_cells++;
        rank_gflop[k] = 2e-9 * rank_macs_total(&rm);
        rank_sec[k] = cpu[at];
      }
      if (!columns[c].profile && family_null(&sc, columns[c].id)) nulls[c]++;
      printf(" %.3f", cpu[at]);
      fflush(stdout);
      ae_scorecard_free(&sc);
      ae_request_free(&req);
    }
    printf(" %s\n", cell);
  }
  if (!status) {
    printf("%-26s %5s %9s %9s %9s %9s %9s %11s %6s %9s\n", "job (CPU s)",
           "cells", "mean", "median", "p90", "min", "max", "wall_mean", "nulls",
           "15625_h");
    for (size_t c = 0; c < n_cols; c++) {
      double sum = 0, wsum = 0;
      int m = 0;
      for (int k = 0; k < o.cells; k++) {
        size_t at = (size_t)k * n_cols + c;
        if (isnan(cpu[at])) continue;
        col[m++] = cpu[at];
        sum += cpu[at];
        wsum += wall[at];
      }
      if (!m) continue;
      qsort(col, (size_t)m, sizeof *col, cmp_double);
      double median = m % 2 ? col[m / 2] : 0.5 * (col[m / 2 - 1] + col[m / 2]);
      /* p90: the nearest rank, ceil(0.9 m). */
      int r90 = (9 * m + 9) / 10;
      double p90 = col[(r90 < 1 ? 1 : r90) - 1];
      char nl[16] = "-";
      if (!columns[c].profile) snprintf(nl, sizeof nl, "%d", nulls[c]);
      /* All of NAS-Bench-201 at this mean, one core, hours. */
      printf("%-26s %5d %9.3f %9.3f %9.3f %9.3f %9.3f %11.3f %6s %9.2f\n",
             columns[c].name, m, sum / m, median, p90, col[0], col[m - 1],
             wsum / m, nl, sum / m * 15625.0 / 3600.0);
    }
  }
  if (!status && rank_cells) {
    /* Per architecture, GFLOP (2 per multiply-add). */
    double n = rank_cells, gf = 2e-9 / n, total = rank_macs_total(&rank_sum);
    double rate = 2e-9 * total / rank_cpu, peak = ae_bench_sgemm_gflops(1024);
    printf("rank GFLOP per architecture (mean of %d): %.3f = forward %.3f + "
           "backward %.3f + pairs %.3f + covariances %.3f + feature_corr "
           "%.3f + patterns %.3f + synflow (float64) %.3f\n",
           rank_cells, gf * total, gf * rank_sum.forward,
           gf * rank_sum.backward, gf * rank_sum.pairs, gf * rank_sum.cov,
           gf * rank_sum.corr, gf * rank_sum.patterns, gf * rank_sum.synflow);
    printf("rank rate %.1f GFLOP/s over %.3f CPU s per architecture; "
           "single-thread SGEMM 1024^3 %.1f GFLOP/s: %.1f %%; the GFLOP at "
           "that rate: %.3f s\n",
           rate, rank_cpu / n, peak, peak > 0 ? 100.0 * rate / peak : 0.0,
           peak > 0 ? gf * total / peak : 0.0);
    printf("rank per cell (GFLOP, GFLOP/s):");
    for (int k = 0; k < o.cells; k++)
      if (rank_gflop[k] > 0 && rank_sec[k] > 0)
        printf(" %d %.2f %.1f;", o.first_cell + k, rank_gflop[k],
               rank_gflop[k] / rank_sec[k]);
    printf("\n");
  }
  free(rank_gflop);
  free(rank_sec);
  free(col);
  free(cpu);
  free(wall);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("peak RSS %.1f MiB\n", ru.ru_maxrss / 1024.0);
  ae_engine_close(e);
  ae_dataset_registry_free(&reg);
  return status;
}
