/* bench_cells.c: where the time of a full default scorecard goes, over a
 * fixed list of NAS-Bench-201 cells (C=16, N=5, batch 64, CIFAR-10
 * sample, seed 0), on the host engine with one BLAS thread.
 *
 * Per cell: the process CPU seconds of ae_engine_score (the whole card),
 * and of its three heavy parts run alone on the same lowered network
 * through the host net API: the linear-regions probe (3 repeats of 3000
 * crops, batches of 1000), the curvature jets (3 repeats of 128 points)
 * and one empirical NTK at batch 64 (weight init included in each).
 * Then per column: mean, p50 and p90 over the cells, and the time of all
 * 15,625 cells at the mean on one core.  Then the curvature's and the
 * NTK's unavoidable arithmetic (full_net_floor), the rate reached on it
 * and this core's single-thread SGEMM and DGEMM rates (bench_rate.h):
 * what those parts would take at the GEMM rate.  CPU time, not wall time:
 * the machine this runs on is shared.
 *
 * Usage: bench_cells [COUNT] (default 50; AE_BENCH_CELLS as well).  The
 * list: cell j of COUNT is NB201 index (7919 j + 13) mod 15625, edges in
 * base 5 over (none, skip_connect, nor_conv_1x1, nor_conv_3x3,
 * avg_pool_3x3).  Single thread; owns everything it creates. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/arch.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "gpu/host/blas_env.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"
#include "tests/bench/bench_rate.h"

#define NB201_CELLS 15625
#define LR_SAMPLES 3000
#define LR_BATCH 1000
#define REPEATS 3
#define CURVE_POINTS 128
#define NTK_BATCH 64

enum { COL_TOTAL, COL_LR, COL_CURV, COL_NTK, COL_COUNT };
static const char *col_names[COL_COUNT] = {"full card", "linear regions",
                                           "curvature", "ntk"};

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void cell_text(int index, char *out, size_t size) {
  static const char *ops[5] = {"none", "skip_connect", "nor_conv_1x1",
                               "nor_conv_3x3", "avg_pool_3x3"};
  int e[6];
  for (int k = 0; k < 6; k++, index /= 5)
    e[k] = index % 5;
  snprintf(out, size, "|%s~0|+|%s~0|%s~1|+|%s~0|%s~1|%s~2|", ops[e[0]],
           ops[e[1]], ops[e[2]], ops[e[3]], ops[e[4]], ops[e[5]]);
}

static void print_problem(const ae_problem *p) {
  json_t *j = ae_problem_to_json(p, NULL);
  char *s = j ? ae_json_dumps(j) : NULL;
  fprintf(stderr, "%s\n", s ? s : "error");
  free(s);
  json_decref(j);
}

/* The probe network of the linear-regions count (as the expressivity
 * group lowers it): the cell on 1x3x3 crops. */
static int lower_probe(const ae_request *r, ae_graph *probe) {
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.probe = 1;
  o.num_classes = r->net.num_classes;
  o.input_shape[0] = 1, o.input_shape[1] = 3, o.input_shape[2] = 3;
  o.input_rank = 3;
  ae_limits lim;
  ae_limits_default(&lim);
  lim.max_working_set_bytes = 0;
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_arch_lower(&r->arch, &o, &lim, "/architecture", probe, &p);
  if (rc) print_problem(&p);
  ae_problem_clear(&p);
  return rc;
}

/* Linear regions alone: 3 repeats x 3000 crops (Philox normals: the
 * cost does not depend on the pixels). */
static int time_linear_regions(const ae_request *r, double *cpu) {
  ae_graph probe;
  memset(&probe, 0, sizeof probe);
  if (lower_probe(r, &probe)) return 1;
  float *in = malloc(sizeof(float) * LR_SAMPLES * 9);
  ae_net *net = NULL;
  int rc = in ? ae_net_create(&probe, LR_BATCH, &net) : AE_ENOMEM;
  if (!rc) {
    for (int i = 0; i < LR_SAMPLES * 9; i++)
      in[i] = (float)ae_philox_normal(r->seed, 77, 0, (uint64_t)i);
    double t0 = cpu_now();
    for (int rep = 0; rep < REPEATS && !rc; rep++) {
      ae_net_init_weights(net, r->seed, (uint32_t)rep);
      for (int s0 = 0; s0 < LR_SAMPLES && !rc; s0 += LR_BATCH) {
        uint64_t *bits = NULL;
        size_t words = 0, count = 0;
        rc = ae_net_sign_patterns(net, in + (size_t)s0 * 9, LR_BATCH, &bits,
                                  &words);
        if (!rc) rc = ae_count_distinct_patterns(bits, LR_BATCH, words, &count);
        free(bits);
      }
    }
    *cpu = cpu_now() - t0;
  }
  ae_net_destroy(net);
  free(in);
  ae_graph_free(&probe);
  return rc;
}

/* Curvature jets and one NTK on the full network. */
static int time_full_net(const ae_request *r, double *curv_cpu,
                         double *ntk_cpu) {
  int dim = 3 * 32 * 32, classes = r->net.num_classes;
  size_t in_n = (size_t)CURVE_POINTS * dim,
         out_n = (size_t)CURVE_POINTS * classes;
  double *x = malloc(sizeof(double) * in_n),
         *dx = malloc(sizeof(double) * in_n);
  double *ddx = malloc(sizeof(double) * in_n);
  double *dy = malloc(sizeof(double) * out_n),
         *ddy = malloc(sizeof(double) * out_n);
  float *img = malloc(sizeof(float) * (size_t)NTK_BATCH * dim);
  double *theta = malloc(sizeof(double) * NTK_BATCH * NTK_BATCH);
  ae_net *net = NULL;
  int rc = x && dx && ddx && dy && ddy && img && theta
               ? ae_net_create(&r->net, CURVE_POINTS, &net)
               : AE_ENOMEM;
  if (!rc) {
    /* A circle in the plane of two Philox directions (not orthonormalised:
     * the cost is the same). */
    for (int i = 0; i < CURVE_POINTS; i++) {
      double t = 2.0 * M_PI * i / (CURVE_POINTS - 1);
      for (int k = 0; k < dim; k++) {
        double u0 = ae_philox_normal(1, 78, 0, (uint64_t)k) / sqrt(dim);
        double u1 = ae_philox_normal(1, 78, 1, (uint64_t)k) / sqrt(dim);
        size_t at = (size_t)i * dim + k;
        x[at] = u0 * cos(t) + u1 * sin(t);
        dx[at] = -u0 * sin(t) + u1 * cos(t);
        ddx[at] = -x[at];
      }
    }
    for (size_t i = 0; i < (size_t)NTK_BATCH * dim; i++)
      img[i] = (float)ae_philox_normal(1, 79, 0, (uint64_t)i);
    double t0 = cpu_now();
    for (int rep = 0; rep < REPEATS && !rc; rep++) {
      ae_net_init_weights(net, r->seed, (uint32_t)rep);
      rc = ae_net_forward_jet(net, x, dx, ddx, CURVE_POINTS, NULL, dy, ddy);
    }
    double t1 = cpu_now();
    ae_net_init_weights(net, r->seed, 0);
    if (!rc) rc = ae_net_ntk(net, img, NTK_BATCH, AE_NTK_STANDARD, theta, NULL);
    *curv_cpu = t1 - t0;
    *ntk_cpu = cpu_now() - t1;
  }
  ae_net_destroy(net);
  free(x);
  free(dx);
  free(ddx);
  free(dy);
  free(ddy);
  free(img);
  free(theta);
  return rc;
}

/* The GEMM-shaped arithmetic of time_full_net's two parts that no engine
 * could skip, in multiply-adds (2 FLOP each), from the lowered graph:
 * the convolutions and linear maps of the nodes that reach the logits
 * (the output, and every input of such a node but a ZERO's) and are not
 * identically zero (a ZERO, or a node all of whose inputs are: at init
 * every shift is 0, so this holds for each op of the NB201 skeleton).
 * - jets: REPEATS x 3 streams x CURVE_POINTS points through those nodes;
 * - ntk: NTK_BATCH samples through those nodes three times (forward,
 *   per-sample dW, dX), less the dX of the layers that read the input
 *   (not needed: 0.2 % of the largest NB201 forward, 6 % of the least);
 * - gram (float64): the NTK_BATCH x NTK_BATCH Gram's lower triangle over
 *   the parameters of those nodes, NTK_BATCH (NTK_BATCH + 1) / 2 dot
 *   products.
 * Elementwise work (BN, ReLU, pools, sums), im2col and packing are not
 * counted.  0 or AE_ENOMEM. */
typedef struct {
  double jets, ntk, gram;
} full_net_macs;

static int full_net_floor(const ae_graph *g, full_net_macs *m) {
  int nn = g->n_nodes;
  unsigned char *live = calloc((size_t)nn, 1), *zero = calloc((size_t)nn, 1);
  if (!live || !zero) {
    free(live);
    free(zero);
    return AE_ENOMEM;
  }
  live[g->output] = 1;
  for (int k = nn - 1; k >= 0; k--)
    if (live[k] && g->nodes[k].op != AE_OP_ZERO)
      for (int i = 0; i < g->nodes[k].n_inputs; i++)
        live[g->nodes[k].inputs[i]] = 1;
  double macs = 0, first = 0, params = 0;
  for (int k = 0; k < nn; k++) {
    const ae_node *nd = &g->nodes[k];
    int all_zero = nd->n_inputs > 0;
    for (int i = 0; i < nd->n_inputs; i++)
      all_zero &= zero[nd->inputs[i]];
    zero[k] = nd->op == AE_OP_ZERO || (nd->op != AE_OP_INPUT && all_zero);
    if (!live[k] || zero[k]) continue;
    macs += ae_node_macs(g, nd);
    if (nd->n_inputs > 0 && g->nodes[nd->inputs[0]].op == AE_OP_INPUT)
      first += ae_node_macs(g, nd);
    params += ae_node_params(g, nd);
  }
  m->jets = (double)REPEATS * 3.0 * CURVE_POINTS * macs;
  m->ntk = NTK_BATCH * (3.0 * macs - first);
  m->gram = NTK_BATCH * (NTK_BATCH + 1) / 2.0 * params;
  free(live);
  free(zero);
  return AE_OK;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile of n sorted values (nearest rank). */
static double quantile(const double *sorted, int n, double q) {
  int i = (int)ceil(q * n) - 1;
  return sorted[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* The curvature's and the NTK's arithmetic (full_net_floor), their rate
 * over the measured CPU time, and the time that arithmetic alone takes at
 * this core's GEMM rates: the least either part could cost here. */
static void print_rates(const double *cols, const full_net_macs *m, int count) {
  double jets = 0, ntk = 0, gram = 0, curv_s = 0, ntk_s = 0;
  for (int j = 0; j < count; j++) {
    jets += 2e-9 * m[j].jets / count;
    ntk += 2e-9 * m[j].ntk / count;
    gram += 2e-9 * m[j].gram / count;
    curv_s += cols[(size_t)j * COL_COUNT + COL_CURV] / count;
    ntk_s += cols[(size_t)j * COL_COUNT + COL_NTK] / count;
  }
  double sgemm = ae_bench_sgemm_gflops(1024),
         dgemm = ae_bench_dgemm_gflops(1024);
  if (!(sgemm > 0) || !(dgemm > 0)) return;
  printf(
      "\nsingle-thread GEMM 1024^3: SGEMM %.1f GFLOP/s, DGEMM %.1f GFLOP/s\n",
      sgemm, dgemm);
  printf("curvature: %.2f GFLOP per architecture (mean of %d), %.1f GFLOP/s "
         "over %.3f s: %.1f %% of SGEMM; at SGEMM's rate %.3f s\n",
         jets, count, jets / curv_s, curv_s, 100.0 * jets / curv_s / sgemm,
         jets / sgemm);
  printf("ntk: %.2f GFLOP float32 + %.2f GFLOP float64 (the Gram) per "
         "architecture; over %.3f s: %.1f %% of the GEMM rates' time; at those "
         "rates %.3f s\n",
         ntk, gram, ntk_s, 100.0 * (ntk / sgemm + gram / dgemm) / ntk_s,
         ntk / sgemm + gram / dgemm);
}

int main(int argc, char **argv) {
  ae_blas_tune_and_reexec(argc, argv);
  const char *env = getenv("AE_BENCH_CELLS");
  int count = argc > 1 ? atoi(argv[1]) : env ? atoi(env) : 50;
  if (count < 1 || count > NB201_CELLS) count = 50;
  const char *shared = getenv("AE_SHARED_DATA");
  char spec[4200];
  snprintf(spec, sizeof spec, "cifar10=%s/cifar10",
           shared && shared[0] ? shared : AE_SRCDIR "/../shared/data");
  ae_dataset_registry reg;
  ae_error err = AE_ERROR_INIT;
  if (ae_dataset_registry_init(&reg, 0, &err) ||
      ae_dataset_registry_add(&reg, spec, &err)) {
    fprintf(stderr, "%s\n", err.reason ? err.reason : "no dataset");
    ae_error_clear(&err);
    return 1;
  }
  ae_engine_config cfg = {AE_BACKEND_HOST, 0, 0};
  ae_engine *e = NULL;
  ae_problem p = AE_PROBLEM_INIT;
  if (ae_engine_open(&cfg, &e, &err)) {
    ae_problem_from_error(&err, &p);
    print_problem(&p);
    return 1;
  }
  ae_catalog cat = ae_dataset_registry_catalog(&reg);
  ae_limits lim;
  ae_limits_default(&lim);
  double *cols = calloc((size_t)COL_COUNT * count, sizeof(double));
  full_net_macs *floor_macs = calloc((size_t)count, sizeof *floor_macs);
  if (!cols || !floor_macs) {
    free(cols);
    free(floor_macs);
    return 1;
  }
  printf("nb201 C=16 N=5, batch 64, CIFAR-10 sample, default settings, "
         "one BLAS thread, process CPU seconds\n");
  printf("%5s %-72s %8s %8s %8s %8s\n", "index", "cell", "card", "lr", "curv",
         "ntk");
  int status = 0;
  for (int j = 0; j < count && !status; j++) {
    int index = (int)((7919L * j + 13) % NB201_CELLS);
    char cell[160], text[1024];
    cell_text(index, cell, sizeof cell);
    snprintf(text, sizeof text,
             "{\"architecture\":{\"type\":\"nb201\",\"cell\":\"%s\","
             "\"channels\":16,\"cells_per_stage\":5},\"data\":{\"dataset\":"
             "\"cifar10\",\"batch_size\":64},\"seed\":0}",
             cell);
    json_t *body = NULL;
    ae_request req;
    ae_scorecard sc;
    if (ae_json_parse_body(text, strlen(text), &body, &p) ||
        ae_request_parse(body, &cat, &lim, &req, &p)) {
      print_problem(&p);
      json_decref(body);
      status = 1;
      break;
    }
    json_decref(body);
    double *c = cols + (size_t)j * COL_COUNT;
    double t0 = cpu_now();
    if (ae_engine_score(e, &req, &reg, NULL, &sc, &err)) {
      ae_problem_from_error(&err, &p);
      print_problem(&p);
      status = 1;
    } else {
      c[COL_TOTAL] = cpu_now() - t0;
      ae_scorecard_free(&sc);
      if (time_linear_regions(&req, &c[COL_LR]) ||
          time_full_net(&req, &c[COL_CURV], &c[COL_NTK]) ||
          full_net_floor(&req.net, &floor_macs[j])) {
        fprintf(stderr, "cell %d: a part failed\n", index);
        status = 1;
      }
      printf("%5d %-72s %8.3f %8.3f %8.3f %8.3f\n", index, cell, c[COL_TOTAL],
             c[COL_LR], c[COL_CURV], c[COL_NTK]);
      fflush(stdout);
    }
    ae_request_free(&req);
  }
  if (!status) {
    double *v = malloc(sizeof(double) * count);
    if (!v) return 1;
    printf("\n%-16s %8s %8s %8s %14s\n", "seconds/arch", "mean", "p50", "p90",
           "15625 cells, h");
    for (int k = 0; k < COL_COUNT; k++) {
      double sum = 0.0;
      for (int j = 0; j < count; j++)
        sum += v[j] = cols[(size_t)j * COL_COUNT + k];
      qsort(v, (size_t)count, sizeof *v, compare_double);
      double mean = sum / count;
      printf("%-16s %8.3f %8.3f %8.3f %14.2f\n", col_names[k], mean,
             quantile(v, count, 0.5), quantile(v, count, 0.9),
             mean * NB201_CELLS / 3600.0);
    }
    free(v);
    print_rates(cols, floor_macs, count);
  }
  free(cols);
  free(floor_macs);
  ae_engine_close(e);
  ae_dataset_registry_free(&reg);
  ae_problem_clear(&p);
  ae_error_clear(&err);
  return status;
}
