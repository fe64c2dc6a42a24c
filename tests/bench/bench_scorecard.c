/* bench_scorecard.c: seconds per scorecard group and in total, and the
 * peak resident memory, for full NB201 networks (C=16, N=5, batch 64) on
 * the CIFAR-10 sample with the default settings, on the host engine.
 * Cells: all nor_conv_3x3 and the ResNet cell.  Usage: bench_scorecard.
 * Single-threaded: the engine computes with one BLAS thread (engine.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "gpu/host/blas_env.h"

static const struct {
  const char *name, *cell;
} cells[] = {
    {"all-conv3x3",
     "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
     "nor_conv_3x3~1|nor_conv_3x3~2|"},
    {"resnet",
     "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|"
     "none~2|"}};

static void print_problem(const ae_problem *p) {
  json_t *j = ae_problem_to_json(p, NULL);
  char *s = j ? ae_json_dumps(j) : NULL;
  fprintf(stderr, "%s\n", s ? s : "error");
  free(s);
  json_decref(j);
}

/* User + system CPU seconds of this process so far (wall time on a shared
 * machine says little; CPU time says what the job costs). */
static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec * 1e-6;
}

int main(int argc, char **argv) {
  /* OpenBLAS picks its kernels at load: name this CPU's core first. */
  ae_blas_tune_and_reexec(argc, argv);
  const char *shared = getenv("AE_SHARED_DATA");
  char spec[4200];
  snprintf(spec, sizeof spec, "cifar10=%s/cifar10",
           shared && shared[0] ? shared : AE_SRCDIR "/../shared/data");
  ae_problem p = AE_PROBLEM_INIT;
  ae_dataset_registry reg;
  ae_error derr = AE_ERROR_INIT;
  if (ae_dataset_registry_init(&reg, 0, &derr) ||
      ae_dataset_registry_add(&reg, spec, &derr)) {
    fprintf(stderr, "%s\n", derr.reason ? derr.reason : "no dataset");
    ae_error_clear(&derr);
    return 1;
  }
  ae_engine_config cfg = {AE_BACKEND_HOST, 0, 0};
  ae_engine *e = NULL;
  ae_error err = AE_ERROR_INIT;
  if (ae_engine_open(&cfg, &e, &err)) {
    ae_problem_from_error(&err, &p);
    print_problem(&p);
    return 1;
  }
  ae_catalog cat = ae_dataset_registry_catalog(&reg);
  ae_limits lim;
  ae_limits_default(&lim);
  printf("nb201 C=16 N=5, batch 64, CIFAR-10 sample, default settings "
         "(LR 3000x3, curvature 128x3, NTK x1), one BLAS thread\n");
  printf("%-12s %9s %9s %9s %9s %9s %9s %10s %9s\n", "cell", "topology",
         "express.", "converg.", "general.", "total_s", "cpu_s", "ntk_cond",
         "lin_reg");
  int status = 0;
  for (size_t c = 0; c < sizeof cells / sizeof *cells; c++) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"architecture\":{\"type\":\"nb201\",\"cell\":\"%s\","
             "\"channels\":16,\"cells_per_stage\":5},\"data\":{\"dataset\":"
             "\"cifar10\",\"batch_size\":64},\"seed\":0}",
             cells[c].cell);
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
    double cpu0 = cpu_seconds();
    if (ae_engine_score(e, &req, &reg, NULL, &sc, &err)) {
      ae_problem_from_error(&err, &p);
      print_problem(&p);
      ae_request_free(&req);
      status = 1;
      break;
    }
    printf("%-12s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %10.4g %9.1f\n",
           cells[c].name, sc.provenance.t_topology,
           sc.provenance.t_expressivity, sc.provenance.t_convergence,
           sc.provenance.t_generalization, sc.provenance.t_total,
           cpu_seconds() - cpu0, sc.convergence.ntk_condition,
           sc.expressivity.linear_regions);
    fflush(stdout);
    ae_scorecard_free(&sc);
    ae_request_free(&req);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("peak RSS %.1f MiB\n", ru.ru_maxrss / 1024.0);
  ae_engine_close(e);
  ae_dataset_registry_free(&reg);
  ae_problem_clear(&p);
  ae_error_clear(&err);
  return status;
}
