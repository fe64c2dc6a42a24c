/* bench_ntk.c: the host backend's NTK benchmark, the number users compare
 * with PyTorch (tests/bench/torch_ntk.py).
 *
 * NB201 TinyNetwork (C=16, N=5, 10 classes) on 64 real CIFAR-10 training
 * images, normalised per channel: the all-nor_conv_3x3 cell and the ResNet
 * cell.  Prints the median of 3 of the forward and of ae_net_ntk, the
 * phase profile of one more NTK, the NTK's extreme eigenvalues and the
 * peak RSS.  With AE_BENCH_DUMP=DIR it also writes, per cell, the lowered
 * graph (graph.json), the weights in node order (weights.bin, float32),
 * the inputs (x.bin) and the NTK (theta.bin, float64 row-major), which
 * torch_ntk.py reads to rebuild the very same net and compare.
 * AE_BENCH_DOUBLE=1 also runs the float64 twin of the same weights
 * (ae_net_set_double) and prints the float32 spread (and dumps
 * theta64.bin).  AE_BENCH_THREADS (2) sets the OpenBLAS threads,
 * AE_BENCH_CELL=all_conv3x3 or resnet runs one cell only.  Then, unless
 * AE_BENCH_NO_JETS=1, the weight init and the curvature jets (128 points,
 * float32 and float64) on the same net.  Single-threaded
 * otherwise: main owns everything. */
#include "api/arch.h"
#include "api/problem.h"
#include "api/status.h"
#include "gpu/host/blas_env.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { BATCH = 64, IMAGE = 3 * 32 * 32, REPEATS = 3 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median3(double *t) {
  qsort(t, REPEATS, sizeof(double), cmp_double);
  return t[REPEATS / 2];
}

/* First BATCH training images, normalised per channel. */
static int load_images(float *x) {
  const char *dir = getenv("AE_SHARED_DATA");
  char path[4096];
  int w =
      snprintf(path, sizeof(path), "%s/cifar10/cifar10_train_4660_u8_nchw.bin",
               dir ? dir : "/work/shared/data");
  if (w < 0 || (size_t)w >= sizeof(path)) return AE_EIO;
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "bench_ntk: %s: %s\n", path, strerror(errno));
    return AE_EIO;
  }
  unsigned char *raw = malloc(BATCH * IMAGE);
  if (!raw) {
    fclose(f);
    return AE_ENOMEM;
  }
  size_t got = fread(raw, 1, BATCH * IMAGE, f);
  fclose(f);
  if (got != BATCH * IMAGE) {
    free(raw);
    return AE_EIO;
  }
  static const double mean[3] = {0.4914, 0.4822, 0.4465};
  static const double sd[3] = {0.2470, 0.2435, 0.2616};
  for (size_t i = 0; i < BATCH * IMAGE; i++) {
    int c = (int)((i / 1024) % 3);
    x[i] = (float)((raw[i] / 255.0 - mean[c]) / sd[c]);
  }
  free(raw);
  return AE_OK;
}

static int lower_cell(const char *cell, ae_graph *g) {
  json_t *j = json_pack("{s:s, s:s}", "type", "nb201", "cell", cell);
  if (!j) return AE_ENOMEM;
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p;
  memset(&p, 0, sizeof(p));
  ae_arch a;
  int rc = ae_arch_from_json(j, "/architecture", &lim, &a, &p);
  json_decref(j);
  if (rc) {
    ae_problem_clear(&p);
    return rc;
  }
  ae_lower_opts o;
  memset(&o, 0, sizeof(o));
  o.input_shape[0] = 3;
  o.input_shape[1] = 32;
  o.input_shape[2] = 32;
  o.input_rank = 3;
  o.num_classes = 10;
  rc = ae_arch_lower(&a, &o, &lim, "/architecture", g, &p);
  ae_arch_free(&a);
  ae_problem_clear(&p);
  return rc;
}

static int write_file(const char *dir, const char *name, const void *data,
                      size_t bytes) {
  char path[4096];
  int w = snprintf(path, sizeof(path), "%s/%s", dir, name);
  if (w < 0 || (size_t)w >= sizeof(path)) return AE_EINVAL;
  FILE *f = fopen(path, "wb");
  if (!f) return AE_EIO;
  size_t put = fwrite(data, 1, bytes, f);
  return fclose(f) == 0 && put == bytes ? AE_OK : AE_EIO;
}

static const char *op_name(ae_op op) {
  static const char *names[] = {
      "input",    "linear",          "conv", "batch_norm", "act",
      "avg_pool", "global_avg_pool", "add",  "identity",   "zero",
      "flatten"};
  return names[op];
}

/* graph.json, weights.bin, x.bin and theta.bin under dir/tag. */
static int dump(const char *root, const char *tag, ae_net *net, const float *x,
                const double *theta) {
  char dir[2048];
  int w = snprintf(dir, sizeof(dir), "%s/%s", root, tag);
  if (w < 0 || (size_t)w >= sizeof(dir)) return AE_EINVAL;
  mkdir(root, 0755);
  mkdir(dir, 0755);
  const ae_graph *g = ae_net_graph(net);
  FILE *wf;
  char path[4096];
  w = snprintf(path, sizeof(path), "%s/weights.bin", dir);
  if (w < 0 || (size_t)w >= sizeof(path)) return AE_EINVAL;
  json_t *nodes = json_array();
  if (!nodes || !(wf = fopen(path, "wb"))) {
    json_decref(nodes);
    return AE_EIO;
  }
  for (int k = 0; k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    json_t *ins = json_array();
    for (int i = 0; i < nd->n_inputs; i++)
      json_array_append_new(ins, json_integer(nd->inputs[i]));
    json_t *shape = json_array();
    for (int i = 0; i < (nd->rank == 3 ? 3 : 1); i++)
      json_array_append_new(shape, json_integer(nd->shape[i]));
    json_array_append_new(
        nodes,
        json_pack("{s:s, s:o, s:o, s:i, s:i, s:i, s:i, s:i, s:b, s:s, s:f, "
                  "s:f}",
                  "op", op_name(nd->op), "inputs", ins, "shape", shape, "out",
                  nd->out, "kernel", nd->kernel, "stride", nd->stride,
                  "padding", nd->padding, "count_include_pad",
                  nd->count_include_pad, "bias", nd->bias, "act",
                  nd->op == AE_OP_ACT ? ae_act_name(nd->act.fn) : "", "slope",
                  nd->act.slope, "init_gain", nd->init_gain));
    static const ae_net_param_kind kinds[] = {AE_NET_WEIGHT, AE_NET_BIAS,
                                              AE_NET_GAMMA, AE_NET_BETA};
    for (int q = 0; q < 4; q++) {
      size_t count;
      float *t = ae_net_param(net, k, kinds[q], &count);
      if (t && fwrite(t, sizeof(float), count, wf) != count) {
        fclose(wf);
        json_decref(nodes);
        return AE_EIO;
      }
    }
  }
  int rc = fclose(wf) == 0 ? AE_OK : AE_EIO;
  json_t *root_json = json_pack("{s:o, s:i, s:i}", "nodes", nodes, "output",
                                g->output, "batch", BATCH);
  w = snprintf(path, sizeof(path), "%s/graph.json", dir);
  if (w < 0 || (size_t)w >= sizeof(path)) rc = AE_EINVAL;
  if (!root_json || json_dump_file(root_json, path, JSON_COMPACT) != 0)
    rc = AE_EIO;
  json_decref(root_json);
  if (!rc) rc = write_file(dir, "x.bin", x, sizeof(float) * BATCH * IMAGE);
  if (!rc)
    rc = write_file(dir, "theta.bin", theta, sizeof(double) * BATCH * BATCH);
  return rc;
}

/* Against float64 jets (dy, ddy): the worst point's relative error of
 * v = dy and a = ddy, and how many of the points are off by more than
 * 1e-3. */
static void jet_errors(const char *what, const double *dyt, const double *ddyt,
                       const double *dy, const double *ddy, int points,
                       int classes) {
  double ev = 0, ea = 0;
  int off = 0;
  for (int p = 0; p < points; p++) {
    double vv = 0, aa = 0, dv = 0, da = 0;
    for (int c = 0; c < classes; c++) {
      size_t at = (size_t)p * (size_t)classes + (size_t)c;
      vv += dy[at] * dy[at];
      aa += ddy[at] * ddy[at];
      dv += (dyt[at] - dy[at]) * (dyt[at] - dy[at]);
      da += (ddyt[at] - ddy[at]) * (ddyt[at] - ddy[at]);
    }
    double rv = sqrt(dv / vv), ra = sqrt(da / aa);
    ev = fmax(ev, rv);
    ea = fmax(ea, ra);
    if (rv > 1e-3 || ra > 1e-3) off++;
  }
  printf("  jets, %s vs float64: worst point's relative error of dy %.2e, "
         "of ddy %.2e; %d of %d points off by > 1e-3\n",
         what, ev, ea, off, points);
}

/* The curvature group's jets on this net: 128 points of a unit circle in
 * the plane of two Philox directions (as the engine draws it), float32
 * (the default) and float64 (ae_net_set_double), CPU seconds of one pass
 * each, their curvature sums and the jet buffers; and the weight init. */
static int bench_jets(ae_net *net) {
  enum { P = 128, CLASSES = 10 };
  size_t in_n = (size_t)P * IMAGE;
  double *u = malloc(sizeof(double) * 2 * IMAGE);
  double *x = malloc(sizeof(double) * in_n),
         *dx = malloc(sizeof(double) * in_n);
  double *ddx = malloc(sizeof(double) * in_n);
  double *dy = malloc(sizeof(double) * P * CLASSES);
  double *ddy = malloc(sizeof(double) * P * CLASSES);
  double *dy32 = malloc(sizeof(double) * 2 * P * CLASSES);
  int rc = AE_ENOMEM;
  if (!u || !x || !dx || !ddx || !dy || !ddy || !dy32) goto out;
  for (int k = 0; k < 2 * IMAGE; k++)
    u[k] = ae_philox_normal(0, AE_TID_CURVE_DIRS, 0, (uint64_t)k);
  double n0 = 0, n1 = 0;
  for (int k = 0; k < IMAGE; k++) {
    n0 += u[k] * u[k];
    n1 += u[IMAGE + k] * u[IMAGE + k];
  }
  for (int i = 0; i < P; i++) {
    double t = 2.0 * 3.141592653589793 * i / (P - 1);
    for (int k = 0; k < IMAGE; k++) {
      size_t at = (size_t)i * IMAGE + (size_t)k;
      double a = u[k] / sqrt(n0), b = u[IMAGE + k] / sqrt(n1);
      x[at] = a * cos(t) + b * sin(t);
      dx[at] = -a * sin(t) + b * cos(t);
      ddx[at] = -x[at];
    }
  }
  double c0 = cpu_s();
  for (uint32_t r = 0; r < 3; r++)
    ae_net_init_weights(net, 0, r);
  double init_cpu = (cpu_s() - c0) / 3;
  printf("  init weights: %.4f s CPU per init, %.1f ns per parameter\n",
         init_cpu, init_cpu * 1e9 / (double)ae_net_param_count(net));
  double sum[3], cpu[2];
  size_t mem0 = ae_net_memory_bytes(net), mem[2];
  for (int dbl = 0; dbl < 2; dbl++) {
    if ((rc = ae_net_set_double(net, dbl))) goto out;
    /* The float64 twin (made by ae_net_set_double) is not the jets'. */
    size_t before = ae_net_memory_bytes(net) - (dbl ? mem[0] : 0);
    c0 = cpu_s();
    rc = ae_net_forward_jet(net, x, dx, ddx, P, NULL, dy, ddy);
    cpu[dbl] = cpu_s() - c0;
    if (rc) goto out;
    mem[dbl] = ae_net_memory_bytes(net) - (dbl ? before : mem0);
    sum[dbl] = ae_curvature_sum(dy, ddy, P, CLASSES, NULL);
    if (!dbl) {
      memcpy(dy32, dy, sizeof(double) * P * CLASSES);
      memcpy(dy32 + P * CLASSES, ddy, sizeof(double) * P * CLASSES);
    }
  }
  jet_errors("float32", dy32, dy32 + P * CLASSES, dy, ddy, P, CLASSES);
  /* From here dy32 holds the float64 reference. */
  memcpy(dy32, dy, sizeof(double) * P * CLASSES);
  memcpy(dy32 + P * CLASSES, ddy, sizeof(double) * P * CLASSES);
  /* The metric's own sensitivity: float64 jets of the curve rounded to
   * float32 (a 6e-8 relative perturbation of the input). */
  for (size_t i = 0; i < in_n; i++) {
    x[i] = (float)x[i];
    dx[i] = (float)dx[i];
    ddx[i] = (float)ddx[i];
  }
  rc = ae_net_forward_jet(net, x, dx, ddx, P, NULL, dy, ddy);
  if (rc) goto out;
  jet_errors("float64 of the float32-rounded curve", dy, ddy, dy32,
             dy32 + P * CLASSES, P, CLASSES);
  sum[2] = ae_curvature_sum(dy, ddy, P, CLASSES, NULL);
  ae_net_set_double(net, 0);
  printf("  jets, %d points: float32 %.3f s CPU, float64 %.3f s CPU; "
         "curvature sum %.9g vs %.9g (relative %.2e; float64 of the "
         "float32-rounded curve: %.2e); jet buffers float32 %.1f MiB, "
         "float64 %.1f MiB\n",
         P, cpu[0], cpu[1], sum[0], sum[1], sum[0] / sum[1] - 1,
         sum[2] / sum[1] - 1, (double)mem[0] / 1048576.0,
         (double)mem[1] / 1048576.0);
  rc = AE_OK;
out:
  free(u);
  free(x);
  free(dx);
  free(ddx);
  free(dy);
  free(ddy);
  free(dy32);
  return rc;
}

static int bench_cell(const char *tag, const char *cell, const float *x) {
  ae_graph g;
  int rc = lower_cell(cell, &g);
  if (rc) {
    fprintf(stderr, "bench_ntk: cannot lower %s: %s\n", cell, ae_strerror(rc));
    return rc;
  }
  ae_net *net;
  rc = ae_net_create(&g, BATCH, &net);
  if (rc) {
    ae_graph_free(&g);
    return rc;
  }
  ae_net_init_weights(net, 0, 0);
  double *theta = malloc(sizeof(double) * BATCH * BATCH);
  double *eig = malloc(sizeof(double) * BATCH);
  float *logits = malloc(sizeof(float) * BATCH * 10);
  if (!theta || !eig || !logits) {
    rc = AE_ENOMEM;
    goto out;
  }
  double tf[REPEATS], tn[REPEATS], cf[REPEATS], cn[REPEATS];
  for (int r = 0; r < REPEATS; r++) {
    double t0 = now_s(), c0 = cpu_s();
    rc = ae_net_forward(net, x, BATCH, logits);
    tf[r] = now_s() - t0;
    cf[r] = cpu_s() - c0;
    if (rc) goto out;
  }
  for (int r = 0; r < REPEATS; r++) {
    double t0 = now_s(), c0 = cpu_s();
    rc = ae_net_ntk(net, x, BATCH, AE_NTK_STANDARD, theta, NULL);
    tn[r] = now_s() - t0;
    cn[r] = cpu_s() - c0;
    if (rc) goto out;
  }
  ae_net_set_profiling(net, 1);
  rc = ae_net_ntk(net, x, BATCH, AE_NTK_STANDARD, theta, NULL);
  ae_net_set_profiling(net, 0);
  if (rc) goto out;
  const char *dump_dir = getenv("AE_BENCH_DUMP");
  if (dump_dir && (rc = dump(dump_dir, tag, net, x, theta))) goto out;
  double *a = malloc(sizeof(double) * BATCH * BATCH);
  if (!a) {
    rc = AE_ENOMEM;
    goto out;
  }
  memcpy(a, theta, sizeof(double) * BATCH * BATCH);
  lapack_int info =
      LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', BATCH, a, BATCH, eig);
  free(a);
  printf("%s  cell %s\n", tag, cell);
  printf("  params %zu, nodes %d, net memory %.1f MiB\n",
         ae_net_param_count(net), g.n_nodes,
         (double)ae_net_memory_bytes(net) / 1048576.0);
  printf("  forward  median %.3f s  (%.3f %.3f %.3f), CPU %.3f s\n",
         median3(tf), tf[0], tf[1], tf[2], median3(cf));
  printf("  ntk      median %.3f s  (%.3f %.3f %.3f), CPU %.3f s\n",
         median3(tn), tn[0], tn[1], tn[2], median3(cn));
  const double *prof = ae_net_profile(net);
  printf("  profile of one ntk:");
  for (int p = 0; p < AE_NET_PROF_COUNT; p++)
    printf(" %s %.3f;", ae_net_profile_name(p), prof[p]);
  printf("\n");
  double trace = 0.0;
  for (int i = 0; i < BATCH; i++)
    trace += theta[i * BATCH + i];
  if (info == 0)
    printf("  ntk eigenvalues: min %.6e max %.6e cond %.4f, trace %.6e\n",
           eig[0], eig[BATCH - 1], eig[BATCH - 1] / eig[0], trace);
  if (getenv("AE_BENCH_DOUBLE") && info == 0) {
    /* The float32 spread: the same weights in float64. */
    double *t64 = malloc(sizeof(double) * BATCH * BATCH);
    double *e64 = malloc(sizeof(double) * BATCH);
    if (!t64 || !e64 || (rc = ae_net_set_double(net, 1))) {
      free(t64);
      free(e64);
      rc = rc ? rc : AE_ENOMEM;
      goto out;
    }
    double t0 = now_s(), c0 = cpu_s();
    rc = ae_net_ntk(net, x, BATCH, AE_NTK_STANDARD, t64, NULL);
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    ae_net_set_double(net, 0);
    double diff = 0.0, top = 0.0;
    for (int i = 0; !rc && i < BATCH * BATCH; i++) {
      double d = theta[i] - t64[i];
      diff = d < 0 ? (diff > -d ? diff : -d) : (diff > d ? diff : d);
      top = t64[i] > top ? t64[i] : top;
    }
    if (!rc && dump_dir) {
      char dir[2048];
      int w = snprintf(dir, sizeof(dir), "%s/%s", dump_dir, tag);
      if (w > 0 && (size_t)w < sizeof(dir))
        rc =
            write_file(dir, "theta64.bin", t64, sizeof(double) * BATCH * BATCH);
    }
    if (!rc &&
        LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', BATCH, t64, BATCH, e64) == 0)
      printf("  float64 twin: ntk %.3f s (CPU %.3f s), eigenvalues min %.6e "
             "max %.6e; float32 vs float64: max |dtheta|/max theta %.3e, "
             "lambda_min %.3e, lambda_max %.3e relative\n",
             wall, cpu, e64[0], e64[BATCH - 1], diff / top, eig[0] / e64[0] - 1,
             eig[BATCH - 1] / e64[BATCH - 1] - 1);
    free(t64);
    free(e64);
  }
  if (!getenv("AE_BENCH_NO_JETS")) rc = bench_jets(net);
out:
  free(theta);
  free(eig);
  free(logits);
  ae_net_destroy(net);
  ae_graph_free(&g);
  return rc;
}

int main(int argc, char **argv) {
  /* OpenBLAS may not recognise this CPU: name its core and start again
   * (AE_BENCH_NO_CORETYPE=1 or AE_NO_CORETYPE=1 keep its own choice). */
  if (!getenv("AE_BENCH_NO_CORETYPE")) ae_blas_tune_and_reexec(argc, argv);
  const char *threads = getenv("AE_BENCH_THREADS");
  openblas_set_num_threads(threads ? atoi(threads) : 2);
  float *x = malloc(sizeof(float) * BATCH * IMAGE);
  if (!x) return 1;
  int rc = load_images(x);
  if (rc) {
    free(x);
    /* No data: nothing to measure; make bench goes on. */
    if (rc == AE_EIO) printf("bench_ntk: skipped (no CIFAR-10 sample)\n");
    return rc == AE_EIO ? 0 : 1;
  }
  static const char *cells[][2] = {
      {"all_conv3x3",
       "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
       "nor_conv_3x3~1|nor_conv_3x3~2|"},
      {"resnet",
       "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|"
       "skip_connect~2|"}};
  const char *only = getenv("AE_BENCH_CELL");
  for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]) && !rc; i++)
    if (!only || strcmp(only, cells[i][0]) == 0)
      rc = bench_cell(cells[i][0], cells[i][1], x);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const char *core = getenv("OPENBLAS_CORETYPE");
  printf("peak RSS %.1f MiB, OpenBLAS threads %s, OPENBLAS_CORETYPE %s, "
         "process CPU %.2f s\n",
         ru.ru_maxrss / 1024.0, threads ? threads : "2",
         core ? core : "(OpenBLAS's choice)",
         (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
             (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec);
  free(x);
  return rc ? 1 : 0;
}
