/* cli_onnx.c: `archeval onnx-lower MODEL.onnx`: imports an ONNX model
 * offline (api/onnx.h), lowers it for the model's own input shape, and
 * prints one JSON document: the census ({"inputs","outputs","ops",
 * "onnx_nodes","opset"}), the warnings, the "architecture" a job request
 * may carry, the lowered graph's size ({"nodes","params","flops"} and
 * "unsupported": why the executors cannot run it yet, or null), and
 * "recognized": the native nb201 architecture a NAS-Bench-201 network is
 * scored as (api/onnx_nb201.h), or null.  Ops no
 * executor runs yet are lowered anyway, so users see exactly what their
 * model becomes.  A rejected model prints its problem+json on stderr and
 * exits 3.  Single-threaded. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/onnx.h"
#include "api/onnx_nb201.h"
#include "api/status.h"
#include "clients/cli.h"

static void usage(FILE *f) {
  fprintf(f, "Usage: archeval onnx-lower [--compact] MODEL.onnx\n"
             "Imports an ONNX model and prints its census and the \"graph\"\n"
             "architecture it becomes (JSON), with its parameter and FLOP\n"
             "counts for the model's input shape.\n"
             "  --compact   one line instead of indented JSON\n");
}

static void print_problem(const ae_problem *p) {
  json_t *j = ae_problem_to_json(p, NULL);
  char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
  fprintf(stderr, "%s\n", s ? s : "{\"title\":\"error\"}");
  free(s);
  json_decref(j);
}

int ae_cli_onnx_lower(int argc, char **argv) {
  static const struct option opts[] = {{"compact", no_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int compact = 0, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 'c') {
      compact = 1;
    } else if (c == 'h') {
      usage(stdout);
      return AE_EXIT_OK;
    } else {
      usage(stderr);
      return AE_EXIT_USAGE;
    }
  }
  if (optind != argc - 1) {
    usage(stderr);
    return AE_EXIT_USAGE;
  }
  ae_onnx_limits olim;
  ae_onnx_limits_default(&olim);
  size_t len = 0;
  char *text = NULL;
  int read_rc = ae_cli_read_file(argv[optind], olim.max_bytes, &text, &len);
  if (read_rc) {
    fprintf(stderr, "archeval onnx-lower: cannot read %s: %s\n", argv[optind],
            read_rc == AE_EIO      ? strerror(errno)
            : read_rc == AE_EINVAL ? "larger than the model size limit"
                                   : ae_strerror(read_rc));
    return AE_EXIT_FAILURE;
  }
  unsigned char *bytes = (unsigned char *)text;
  ae_problem p = AE_PROBLEM_INIT;
  ae_onnx_model m;
  ae_arch arch;
  ae_graph g;
  memset(&arch, 0, sizeof arch);
  memset(&g, 0, sizeof g);
  int status = AE_EXIT_INVALID;
  int rc = ae_onnx_import(bytes, len, &olim, &m, &p);
  free(bytes);
  if (rc != AE_OK) {
    print_problem(&p);
    ae_problem_clear(&p);
    return rc == AE_ENOMEM ? AE_EXIT_FAILURE : AE_EXIT_INVALID;
  }
  ae_limits lim;
  ae_limits_default(&lim);
  rc = ae_arch_from_json(m.architecture, "/architecture", &lim, &arch, &p);
  if (rc == AE_OK) {
    ae_lower_opts lo;
    memset(&lo, 0, sizeof lo);
    memcpy(lo.input_shape, m.input_shape, sizeof lo.input_shape);
    lo.input_rank = m.input_rank;
    lo.allow_unexecutable = 1;
    rc = ae_arch_lower(&arch, &lo, &lim, "/architecture", &g, &p);
  }
  if (rc != AE_OK) {
    print_problem(&p);
    status = rc == AE_ENOMEM ? AE_EXIT_FAILURE : AE_EXIT_INVALID;
    goto done;
  }
  char why[256];
  int bad = ae_graph_first_unexecutable_op(&g, why, sizeof why);
  ae_onnx_nb201 nb;
  int is_nb201 =
      ae_onnx_nb201_match(m.architecture, m.input_shape, m.input_rank, &nb);
  json_t *doc = json_pack(
      "{s:{s:O, s:O, s:O, s:i, s:I}, s:O, s:O, s:{s:i, s:f, s:f, s:o}, s:o}",
      "model", "inputs", m.inputs, "outputs", m.outputs, "ops", m.ops,
      "onnx_nodes", m.n_onnx_nodes, "opset", (json_int_t)m.opset, "warnings",
      m.warnings, "architecture", m.architecture, "lowered", "nodes", g.n_nodes,
      "params", ae_graph_params(&g), "flops", ae_graph_flops(&g), "unsupported",
      bad >= 0 ? json_string(why) : json_null(), "recognized",
      is_nb201 == 1 ? ae_onnx_nb201_json(&nb) : json_null());
  char *s =
      doc ? json_dumps(doc, compact ? JSON_COMPACT : JSON_INDENT(2)) : NULL;
  if (s) {
    printf("%s\n", s);
    status = fflush(stdout) == 0 ? AE_EXIT_OK : AE_EXIT_FAILURE;
  } else {
    fprintf(stderr, "archeval onnx-lower: out of memory\n");
    status = AE_EXIT_FAILURE;
  }
  free(s);
  json_decref(doc);
done:
  ae_graph_free(&g);
  ae_arch_free(&arch);
  ae_onnx_model_free(&m);
  ae_problem_clear(&p);
  return status;
}
