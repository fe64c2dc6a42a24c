/* net_patterns.c: what the expressivity group needs from the host
 * executor besides the jets: the sign patterns of the float32 forward
 * (one bit per kink of every piecewise activation: relu, leaky_relu,
 * relu6, hardswish, hardsigmoid; see ae_act_pattern_kinks),
 * their exact distinct count, and the curvature sum of the jets.
 *
 * Runs on the thread that owns the ae_net; ae_count_distinct_patterns and
 * ae_curvature_sum are pure. */
#include "gpu/host/net_internal.h"

#include "api/status.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The kinks of node nd when it is a pattern activation (one bit per
 * kink per unit), else 0. */
static int pattern_kinks(const ae_node *nd, double kinks[2]) {
  return nd->op == AE_OP_ACT ? ae_act_pattern_kinks(nd->act.fn, kinks) : 0;
}

int ae_net_sign_patterns(ae_net *n, const float *x, int batch, uint64_t **bits,
                         size_t *words_per_sample) {
  *bits = NULL;
  *words_per_sample = 0;
  int rc = ae_net_forward_buffers(n, x, batch);
  if (rc) return rc;
  size_t total = 0;
  double kinks[2];
  for (int k = 0; k < n->g->n_nodes; k++)
    total += (size_t)pattern_kinks(&n->g->nodes[k], kinks) * n->geom[k].elems;
  size_t words = (total + 63) / 64;
  uint64_t *out = calloc((size_t)batch * words + 1, sizeof(uint64_t));
  if (!out) return AE_ENOMEM;
  for (int b = 0; b < batch; b++) {
    uint64_t *row = out + (size_t)b * words;
    size_t bit = 0;
    for (int k = 0; k < n->g->n_nodes; k++) {
      const ae_node *nd = &n->g->nodes[k];
      int nk = pattern_kinks(nd, kinks);
      if (nk == 0) continue;
      size_t e = n->geom[k].elems;
      const float *z = n->act[nd->inputs[0]] + (size_t)b * e;
      for (int q = 0; q < nk; q++) {
        float kink = (float)kinks[q];
        for (size_t i = 0; i < e; i++, bit++)
          if (z[i] > kink) row[bit >> 6] |= 1ull << (bit & 63);
      }
    }
  }
  *bits = out;
  *words_per_sample = words;
  return AE_OK;
}

typedef struct {
  const uint64_t *row;
  size_t words;
} pattern_row;

static int compare_rows(const void *a, const void *b) {
  const pattern_row *ra = a, *rb = b;
  for (size_t w = 0; w < ra->words; w++) {
    if (ra->row[w] != rb->row[w]) return ra->row[w] < rb->row[w] ? -1 : 1;
  }
  return 0;
}

int ae_count_distinct_patterns(const uint64_t *bits, size_t n, size_t words,
                               size_t *count) {
  *count = 0;
  if (n == 0) return AE_OK;
  if (words == 0) {
    *count = 1;
    return AE_OK;
  }
  pattern_row *rows =
      n <= SIZE_MAX / sizeof(*rows) ? malloc(sizeof(*rows) * n) : NULL;
  if (!rows) return AE_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    rows[i].row = bits + i * words;
    rows[i].words = words;
  }
  qsort(rows, n, sizeof(*rows), compare_rows);
  size_t distinct = 1;
  for (size_t i = 1; i < n; i++)
    if (compare_rows(&rows[i - 1], &rows[i]) != 0) distinct++;
  free(rows);
  *count = distinct;
  return AE_OK;
}

double ae_curvature_sum(const double *dy, const double *ddy, int points,
                        int classes, int *degenerate) {
  double sum = 0.0;
  for (int p = 0; p < points; p++) {
    const double *v = dy + (size_t)p * (size_t)classes;
    const double *a = ddy + (size_t)p * (size_t)classes;
    double vv = 0.0, aa = 0.0, va = 0.0;
    for (int c = 0; c < classes; c++) {
      vv += v[c] * v[c];
      aa += a[c] * a[c];
      va += v[c] * a[c];
    }
    if (!(vv > 0.0)) {
      if (degenerate) (*degenerate)++;
      continue;
    }
    double num = vv * aa - va * va;
    if (num < 0.0) num = 0.0;
    sum += sqrt(num) / (vv * sqrt(vv));
  }
  return sum;
}
