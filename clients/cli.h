/* cli.h: the subcommands of the archeval CLI, one function each.  Each
 * takes the arguments after the subcommand name (argv[0] is the
 * subcommand) and returns the process exit status.  Single-threaded. */
#ifndef AE_CLI_H
#define AE_CLI_H

#include <stddef.h>

#include "api/request.h"

/* Exit statuses scripts can rely on. */
enum {
  AE_EXIT_OK = 0,
  AE_EXIT_FAILURE = 1,     /* a job failed / was cancelled, or an I/O error */
  AE_EXIT_USAGE = 2,       /* bad command line */
  AE_EXIT_INVALID = 3,     /* the request was rejected (4xx) */
  AE_EXIT_UNAVAILABLE = 4, /* server unreachable, 5xx, 429/503 after retries */
  AE_EXIT_TIMEOUT = 5,     /* wait --timeout elapsed */
  AE_EXIT_NOT_FOUND = 6    /* unknown job */
};

/* Reads a whole file, or standard input for "-", into a malloc'd,
 * NUL-terminated buffer of *len bytes (cli_io.c).  AE_OK, AE_EIO (errno
 * says why), AE_ENOMEM, or AE_EINVAL when it holds more than max bytes. */
int ae_cli_read_file(const char *path, size_t max, char **out, size_t *len);

int ae_cli_score(int argc, char **argv);

/* An ONNX file as a model source (cli_model.c), for `archeval score
 * MODEL.onnx`: requests naming {"type": "onnx", "model": id} resolve to
 * it.  The source points into the struct: keep it in place. */
typedef struct {
  char id[72]; /* "sha256:<hex>" of the file */
  json_t *architecture;
  json_t *warnings; /* the import's warnings (strings) */
  int input_shape[3], input_rank, num_classes;
  ae_model_source source;
} ae_cli_model;
/* Imports and lowers the file's bytes: 0, AE_EINVAL (p filled) or
 * AE_ENOMEM.  Warnings (a folded BN) go to stderr. */
int ae_cli_model_load(const void *bytes, size_t len, ae_cli_model *m,
                      ae_problem *p);
void ae_cli_model_free(ae_cli_model *m);
/* Canonical keys and forms of architectures, offline (cli_canon.c). */
int ae_cli_canon(int argc, char **argv);

/* `rank`: the combined rank of a population of scorecards (cli_rank.c). */
int ae_cli_rank(int argc, char **argv);
int ae_cli_onnx_lower(int argc, char **argv); /* cli_onnx.c */
/* `study create|add|show|list|rank|export|delete` (cli_study.c). */
int ae_cli_study(int argc, char **argv);

/* The server commands (http_commands.c), over the HTTP API of api.md.
 * Each accepts --server URL (default $ARCHEVAL_SERVER, else
 * http://127.0.0.1:8000) and --retries N. */
int ae_cli_submit(int argc, char **argv);
int ae_cli_get(int argc, char **argv);
int ae_cli_wait(int argc, char **argv);
int ae_cli_cancel(int argc, char **argv);
int ae_cli_delete(int argc, char **argv);
int ae_cli_list(int argc, char **argv);
int ae_cli_info(int argc, char **argv);
/* `model upload|get|delete`: uploaded ONNX models. */
int ae_cli_models(int argc, char **argv);

#endif
