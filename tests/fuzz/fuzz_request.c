/* fuzz_request.c: libFuzzer harness for the job request parser.
 *
 * Every input takes three paths: (1) the bytes as a POST /v1/jobs body,
 * through ae_json_parse_body and ae_request_parse with a small catalog and
 * the default limits; (2) the bytes as the nb201 "cell" string and (3) as
 * the mlp_dag "dag" string of an otherwise valid request, so that those two
 * grammars get byte-level fuzzing.  Accepted requests are checked for the
 * promises of request.h (a normalised request, a lowered net whose output
 * has the resolved number of classes); rejected ones must render as a
 * problem+json.  Single-threaded; everything is freed per input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ae_dataset_info fuzz_sets[] = {
    {"fashion-mnist", {1, 28, 28}, 3, 10, 60000},
    {"cifar10-sample", {3, 32, 32}, 3, 10, 1000},
    {"vectors", {20, 1, 1}, 1, 3, 500},
};
static const ae_catalog fuzz_catalog = {fuzz_sets, 3};

/* Checks what an accepted request promises; aborts on a broken promise so
 * that libFuzzer reports it. */
static void check_accepted(const ae_request *r) {
  if (!r->normalised || !json_is_object(r->normalised)) abort();
  char *text = json_dumps(r->normalised, JSON_COMPACT);
  if (!text) abort();
  free(text);
  if (r->net.n_nodes < 1 || r->net.output < 0 ||
      r->net.output >= r->net.n_nodes)
    abort();
  if (r->net.nodes[0].op != AE_OP_INPUT) abort();
  if (r->data.num_classes < 2 || r->net.num_classes < 1) abort();
  /* nb201 and mlp_dag get a head of the data's classes; a graph's output
   * keeps the width its user gave it. */
  if (r->arch.type != AE_ARCH_GRAPH &&
      r->net.num_classes != r->data.num_classes)
    abort();
  const ae_node *out = &r->net.nodes[r->net.output];
  if (out->rank != 1 || out->shape[0] != r->net.num_classes) abort();
  if (r->data.batch_size < 1) abort();
  for (int i = 0; i < r->net.n_nodes; i++)
    for (int k = 0; k < r->net.nodes[i].n_inputs; k++)
      if (r->net.nodes[i].inputs[k] < 0 || r->net.nodes[i].inputs[k] >= i)
        abort();
}

/* Validates one parsed body; the problem is cleared before returning. */
static void parse_request(const json_t *body) {
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p = AE_PROBLEM_INIT;
  ae_request r;
  if (ae_request_parse(body, &fuzz_catalog, &lim, &r, &p) == AE_OK) {
    check_accepted(&r);
    ae_request_free(&r);
  } else {
    if (p.status < 400 || p.status > 599) abort();
    json_t *pj = ae_problem_to_json(&p, "/v1/jobs");
    if (!pj) abort();
    json_decref(pj);
  }
  ae_problem_clear(&p);
}

/* Path 1: the bytes as a request body. */
static void fuzz_body(const uint8_t *data, size_t size) {
  ae_problem p = AE_PROBLEM_INIT;
  json_t *body = NULL;
  if (ae_json_parse_body((const char *)data, size, &body, &p) == AE_OK) {
    if (!body) abort();
    parse_request(body);
    json_decref(body);
  } else {
    if (p.status != 400 || body) abort();
  }
  ae_problem_clear(&p);
}

/* Paths 2 and 3: the bytes as one string field of a valid request.  Bytes
 * that are not UTF-8 cannot reach the parser through JSON, so they are
 * skipped. */
static void fuzz_string_field(const uint8_t *data, size_t size,
                              const char *type, const char *key) {
  json_t *s = json_stringn((const char *)data, size);
  if (!s) return;
  json_t *arch = json_pack("{s:s, s:o}", "type", type, key, s);
  if (!arch) abort();
  if (!strcmp(type, "nb201")) {
    /* The smallest net, so each input stays fast. */
    json_object_set_new(arch, "channels", json_integer(1));
    json_object_set_new(arch, "cells_per_stage", json_integer(1));
  } else {
    json_object_set_new(arch, "width", json_integer(4));
  }
  json_t *body = json_pack("{s:o, s:{s:i}, s:[s]}", "architecture", arch,
                           "data", "batch_size", 8, "metrics", "topology");
  if (!body) abort();
  parse_request(body);
  json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16) return 0;
  fuzz_body(data, size);
  if (size <= 4096) { /* 64 mlp_dag groups take 2144 bytes */
    fuzz_string_field(data, size, "nb201", "cell");
    fuzz_string_field(data, size, "mlp_dag", "dag");
  }
  return 0;
}
