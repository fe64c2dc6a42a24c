/* fuzz_onnx.c: libFuzzer harness for the ONNX importer (api/onnx.c) and
 * the parsing and lowering of what it produces.
 *
 * The bytes are an ONNX file.  A model the importer accepts is checked for
 * what onnx.h promises (an architecture object, a census, a known input
 * shape), then parsed as a request's architecture and lowered for its own
 * input shape, with and without the ops no executor runs yet; a refusal
 * must be a 4xx problem that renders.  The NAS-Bench-201 matcher
 * (api/onnx_nb201.c) runs on every accepted model, as an upload's
 * description does: a match must give a native request that parses to the
 * same cell.  The decode budget is lowered to
 * 64 MiB so that the harness stays within libFuzzer's memory limit.
 * Single-threaded; everything is freed per input. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/onnx.h"
#include "api/status.h"
#include "tests/fuzz/fuzz_nb201.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_problem(const ae_problem *p) {
  if (p->status < 400 || p->status >= 500) abort();
  json_t *pj = ae_problem_to_json(p, NULL);
  if (!pj) abort();
  json_decref(pj);
}

static void lower(const ae_onnx_model *m, int allow) {
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p = AE_PROBLEM_INIT;
  ae_arch a;
  if (ae_arch_from_json(m->architecture, "/architecture", &lim, &a, &p) !=
      AE_OK) {
    check_problem(&p);
    ae_problem_clear(&p);
    return;
  }
  if (a.type != AE_ARCH_GRAPH) abort();
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  memcpy(o.input_shape, m->input_shape, sizeof o.input_shape);
  o.input_rank = m->input_rank;
  o.allow_unexecutable = allow;
  ae_graph g;
  int rc = ae_arch_lower(&a, &o, &lim, "/architecture", &g, &p);
  if (rc == AE_OK) {
    double params = ae_graph_params(&g), flops = ae_graph_flops(&g);
    if (!(params >= 0.0) || !isfinite(params) || !(flops >= 0.0)) abort();
    if (g.nodes[g.output].rank != 1) abort();
    if (!allow && ae_graph_first_unexecutable_op(&g, NULL, 0) >= 0) abort();
    ae_graph_free(&g);
  } else {
    if (rc == AE_EUNSUPPORTED && allow) abort();
    check_problem(&p);
  }
  ae_problem_clear(&p);
  ae_arch_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ae_onnx_limits lim;
  ae_onnx_limits_default(&lim);
  lim.max_unpacked_bytes = 64u << 20;
  ae_onnx_model m;
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_onnx_import(data, size, &lim, &m, &p);
  if (rc == AE_OK) {
    if (!json_is_object(m.architecture) || !json_is_object(m.ops) ||
        !json_is_array(m.warnings) || json_array_size(m.inputs) != 1)
      abort();
    if (m.input_rank != 1 && m.input_rank != 3) abort();
    if (m.n_graph_nodes < 1 || m.n_graph_nodes > lim.max_graph_nodes) abort();
    lower(&m, 1);
    lower(&m, 0);
    fuzz_check_nb201(m.architecture, m.input_shape, m.input_rank);
    ae_onnx_model_free(&m);
  } else {
    if (rc != AE_EINVAL) abort();
    check_problem(&p);
  }
  ae_problem_clear(&p);
  return 0;
}
