/* archeval.c: the archeval command-line tool's entry point: reads the
 * global options, then dispatches to one subcommand (cli.h): `score`
 * runs the engine in this process, the others talk to an archevald over
 * HTTP.  Single-threaded. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli.h"
#include "gpu/host/blas_env.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "Usage: archeval [--server URL] COMMAND [ARGS]\n"
      "Scores neural-network architectures without training them.\n"
      "\n"
      "Commands:\n"
      "  score [FILE|-]        score job requests offline, in this process\n"
      "  rank [FILE|-]         rank scorecards or jobs (combined rank, aspect\n"
      "                        ranks, Pareto front); --json, --csv\n"
      "  study COMMAND         studies: create, add, show, list, rank,\n"
      "                        export, delete (--watch: a progress bar)\n"
      "  submit FILE|-         submit a job (or a batch: a JSON array or\n"
      "                        {\"jobs\":[...]}); prints the id(s);\n"
      "                        --wait prints the result; --model M.onnx\n"
      "                        uploads M and submits it\n"
      "  model upload FILE.onnx  upload an ONNX model (prints its id and\n"
      "                        description); model get ID, model delete ID\n"
      "  get ID...             print a job\n"
      "  wait ID...            wait for jobs (long polls); --timeout SECS,\n"
      "                        --progress (rate and time left)\n"
      "  cancel ID...          cancel jobs\n"
      "  delete ID...          delete finished jobs\n"
      "  list                  list jobs; --state S, --client-ref R,\n"
      "                        --page-size N, --json\n"
      "  info                  print the server's description (GET /v1)\n"
      "  canon [FILE|-]        print each architecture's canonical key\n"
      "  onnx-lower MODEL.onnx print an ONNX model's census and graph\n"
      "\n"
      "Global options:\n"
      "  --server URL          the archevald to talk to (default\n"
      "                        $ARCHEVAL_SERVER, else http://127.0.0.1:8000)\n"
      "  --help, --version\n"
      "\n"
      "Exit status:\n"
      "  0  success (for wait: every job succeeded)\n"
      "  1  a job failed or was cancelled, or an I/O error\n"
      "  2  bad command line\n"
      "  3  the request was rejected (400, 409, 413, 415, 422)\n"
      "  4  server unreachable, 5xx, or 429/503 still after the retries\n"
      "  5  wait --timeout elapsed\n"
      "  6  unknown job (404)\n"
      "\n"
      "Run 'archeval COMMAND --help' for a command's options.\n");
}

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"score", ae_cli_score},   {"submit", ae_cli_submit},
    {"get", ae_cli_get},       {"wait", ae_cli_wait},
    {"cancel", ae_cli_cancel}, {"delete", ae_cli_delete},
    {"list", ae_cli_list},     {"info", ae_cli_info},
    {"rank", ae_cli_rank},     {"canon", ae_cli_canon},
    {"study", ae_cli_study},   {"onnx-lower", ae_cli_onnx_lower},
    {"model", ae_cli_models},
};

int main(int argc, char **argv) {
  /* OpenBLAS picks its kernels at load: name this CPU's core first. */
  ae_blas_tune_and_reexec(argc, argv);
  int first = 1;
  /* Global options before the command; --server is passed on through the
   * environment, which every server command reads. */
  while (first < argc && argv[first][0] == '-') {
    const char *arg = argv[first];
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      usage(stdout);
      return AE_EXIT_OK;
    }
    if (!strcmp(arg, "--version")) {
      printf("archeval %s\n", PACKAGE_VERSION);
      return AE_EXIT_OK;
    }
    const char *url = NULL;
    if (!strcmp(arg, "--server") && first + 1 < argc) {
      url = argv[++first];
    } else if (!strncmp(arg, "--server=", 9)) {
      url = arg + 9;
    } else {
      fprintf(stderr, "archeval: unknown option '%s'\n", arg);
      usage(stderr);
      return AE_EXIT_USAGE;
    }
    if (setenv("ARCHEVAL_SERVER", url, 1) != 0) {
      perror("archeval: setenv");
      return AE_EXIT_FAILURE;
    }
    first++;
  }
  if (first >= argc) {
    usage(stderr);
    return AE_EXIT_USAGE;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[first], commands[i].name))
      return commands[i].run(argc - first, argv + first);
  fprintf(stderr, "archeval: unknown command '%s'\n", argv[first]);
  usage(stderr);
  return AE_EXIT_USAGE;
}
