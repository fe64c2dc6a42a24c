/* archeval.c: the archeval command-line tool's entry point: dispatches to
 * one subcommand.  Single-threaded. */
#include <stdio.h>
#include <string.h>
#include "clients/cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "Usage: archeval COMMAND [ARGS]\n"
          "  score [FILE|-]   score job requests offline, in this process\n"
          "Run 'archeval COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) { usage(stderr); return AE_EXIT_USAGE; }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return AE_EXIT_OK;
  }
  if (!strcmp(argv[1], "score")) return ae_cli_score(argc - 1, argv + 1);
  fprintf(stderr, "archeval: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return AE_EXIT_USAGE;
}
