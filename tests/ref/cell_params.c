/* cell_params.c: tests/ref/cell_params, prints the parameter count and
 * MACs archeval's lowering gives each architecture, for
 * tests/ref/test_cells_torch.py to hold to the PyTorch references.
 *
 * Reads one JSON architecture object per line on stdin; writes one line
 * per input: "PARAMS MACS", or "error POINTER: DETAIL" for an architecture
 * that does not parse or lower.  Lowers for 3x32x32 images and 10 classes
 * (the benchmarks' CIFAR-10 setting) with ops no executor runs yet
 * allowed.  Single-threaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/arch.h"
#include "api/status.h"

static void report(const ae_problem *p) {
  if (p->n_errors)
    printf("error %s: %s\n", p->errors[0].pointer, p->errors[0].detail);
  else
    printf("error : %s\n", p->detail ? p->detail : "?");
}

int main(void) {
  ae_limits lim;
  ae_limits_default(&lim);
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, stdin) > 0) {
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (!j) {
      printf("error : bad JSON: %s\n", err.text);
      continue;
    }
    ae_arch a;
    ae_problem p;
    memset(&p, 0, sizeof p);
    ae_graph g;
    int rc = ae_arch_from_json(j, "/architecture", &lim, &a, &p);
    json_decref(j);
    if (rc != AE_OK) {
      report(&p);
      ae_problem_clear(&p);
      continue;
    }
    ae_lower_opts o;
    memset(&o, 0, sizeof o);
    o.input_shape[0] = 3;
    o.input_shape[1] = o.input_shape[2] = 32;
    o.input_rank = 3;
    o.num_classes = 10;
    o.allow_unexecutable = 1;
    rc = ae_arch_lower(&a, &o, &lim, "/architecture", &g, &p);
    if (rc == AE_OK) {
      printf("%.0f %.0f\n", ae_graph_params(&g), ae_graph_macs(&g));
      ae_graph_free(&g);
    } else {
      report(&p);
    }
    ae_arch_free(&a);
    ae_problem_clear(&p);
    fflush(stdout);
  }
  free(line);
  return 0;
}
