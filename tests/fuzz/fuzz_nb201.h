/* fuzz_nb201.h: the NAS-Bench-201 matcher's promise, checked by the
 * harnesses that feed it graphs (fuzz_graph, fuzz_onnx).
 *
 * Header-only (each harness is one program built from its own .c and the
 * api sources); single-threaded, everything freed per call. */
#ifndef AE_FUZZ_NB201_H
#define AE_FUZZ_NB201_H

#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/onnx_nb201.h"
#include "api/status.h"

/* Aborts unless a graph the matcher recognises (for a per-sample input of
 * input_shape, input_rank) is one the nb201 form accepts, with the
 * matched cell, channels and cells per stage. */
static void fuzz_check_nb201(const json_t *architecture, const int *input_shape,
                             int input_rank) {
  ae_onnx_nb201 nb;
  int rc = ae_onnx_nb201_match(architecture, input_shape, input_rank, &nb);
  if (rc == 0 || rc == AE_ENOMEM) return;
  if (rc != 1 || input_rank != 3) abort();
  if (nb.channels < 1 || nb.cells_per_stage < 1 || nb.num_classes < 1) abort();
  json_t *native = ae_onnx_nb201_request_arch(&nb);
  if (!native) return;
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p = AE_PROBLEM_INIT;
  ae_arch a;
  if (ae_arch_from_json(native, "/architecture", &lim, &a, &p) != AE_OK)
    abort();
  if (a.type != AE_ARCH_NB201 || a.channels != nb.channels ||
      a.cells_per_stage != nb.cells_per_stage ||
      memcmp(a.nb201_ops, nb.ops, sizeof nb.ops) != 0)
    abort();
  ae_arch_free(&a);
  ae_problem_clear(&p);
  json_decref(native);
}

#endif
