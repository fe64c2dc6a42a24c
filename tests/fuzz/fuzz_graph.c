/* fuzz_graph.c: libFuzzer harness for the "graph" architecture parser and
 * its lowering.
 *
 * The bytes are parsed as JSON (ae_json_parse_body); an object becomes the
 * "architecture" (its "type" forced to "graph" when absent, so mutations
 * need not rediscover it), goes through ae_arch_from_json with the default
 * limits, then through ae_arch_lower for an image and a vector input, with
 * and without the probe.  Accepted graphs are checked for what arch.h
 * promises: inputs point backwards, the output is a rank-1 node (with the
 * requested classes unless the type is graph), the parameter count is
 * finite and a deep copy frees cleanly.  The same object also goes through
 * the NAS-Bench-201 matcher (api/onnx_nb201.c): a graph it recognises must
 * give a cell, C and N the nb201 parser accepts as they are.
 * Single-threaded; everything is freed per input. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/onnx_nb201.h"
#include "api/request.h"
#include "api/status.h"
#include "tests/fuzz/fuzz_nb201.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts unless g keeps the topological-order and output promises. */
static void check_graph(const ae_graph *g, int lowered, int classes) {
  if (g->n_nodes < 1 || g->nodes[0].op != AE_OP_INPUT) abort();
  if (g->output < 0 || g->output >= g->n_nodes) abort();
  for (int i = 0; i < g->n_nodes; i++) {
    const ae_node *n = &g->nodes[i];
    if (n->n_inputs < 0 || (n->n_inputs > 0 && !n->inputs)) abort();
    for (int k = 0; k < n->n_inputs; k++)
      if (n->inputs[k] < 0 || n->inputs[k] >= i) abort();
  }
  if (!lowered) return;
  const ae_node *out = &g->nodes[g->output];
  if (out->rank != 1 || out->shape[0] < 1) abort();
  if (g->num_classes != out->shape[0]) abort();
  /* nb201 and mlp_dag get a head of the requested classes; a graph keeps
   * its own output width. */
  if (classes > 0 && g->num_classes != classes) abort();
  double params = ae_graph_params(g), flops = ae_graph_flops(g);
  if (!(params >= 0.0) || !isfinite(params)) abort();
  if (!(flops >= 0.0)) abort();
  ae_graph copy;
  if (ae_graph_copy(g, &copy) != AE_OK) abort();
  if (copy.n_nodes != g->n_nodes || copy.output != g->output) abort();
  ae_graph_free(&copy);
}

static void lower_one(const ae_arch *a, const int shape[3], int rank,
                      int probe) {
  ae_limits lim;
  ae_limits_default(&lim);
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  memcpy(o.input_shape, shape, sizeof o.input_shape);
  o.input_rank = rank;
  o.num_classes = a->num_classes ? a->num_classes : 10;
  o.probe = probe;
  ae_problem p = AE_PROBLEM_INIT;
  ae_graph g;
  memset(&g, 0, sizeof g);
  if (ae_arch_lower(a, &o, &lim, "/architecture", &g, &p) == AE_OK) {
    check_graph(&g, 1, a->type == AE_ARCH_GRAPH ? 0 : o.num_classes);
    ae_graph_free(&g);
  } else {
    if (p.status < 400) abort();
    json_t *pj = ae_problem_to_json(&p, NULL);
    if (!pj) abort();
    json_decref(pj);
  }
  ae_problem_clear(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16) return 0;
  ae_problem p = AE_PROBLEM_INIT;
  json_t *j = NULL;
  if (ae_json_parse_body((const char *)data, size, &j, &p) != AE_OK) {
    ae_problem_clear(&p);
    return 0;
  }
  if (json_is_object(j) && !json_object_get(j, "type"))
    json_object_set_new(j, "type", json_string("graph"));
  ae_limits lim;
  ae_limits_default(&lim);
  ae_arch a;
  memset(&a, 0, sizeof a);
  if (ae_arch_from_json(j, "/architecture", &lim, &a, &p) == AE_OK) {
    if (a.type == AE_ARCH_GRAPH) check_graph(&a.graph, 0, 0);
    static const int image[3] = {3, 8, 8}, vector[3] = {12, 1, 1};
    lower_one(&a, image, 3, 0);
    lower_one(&a, vector, 1, 0);
    lower_one(&a, image, 3, 1);
    ae_arch_free(&a);
  } else {
    if (p.status < 400) abort();
    json_t *pj = ae_problem_to_json(&p, "/v1/jobs");
    if (!pj) abort();
    json_decref(pj);
  }
  ae_problem_clear(&p);
  static const int nb201_shape[3] = {3, 8, 8};
  fuzz_check_nb201(j, nb201_shape, 3);
  json_decref(j);
  return 0;
}
