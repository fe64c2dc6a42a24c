/* net_jet.c: what the expressivity group needs from the host executor:
 * ReLU sign patterns and their exact distinct count, the forward-mode
 * second-order jets along a curve, and the curvature sum.
 *
 * The jets propagate three streams per node (value, first and second
 * derivative along the curve's parameter), laid out [stream][sample][elems]
 * so that every linear op (conv, linear, pools, add) runs once over
 * 3 * batch "virtual samples": one im2col + GEMM per chunk of columns, as
 * the forward does.  They run in float32 (sgemm on the net's own weights);
 * while ae_net_set_double is on, in float64 (the reference, dgemm on the
 * weights widened).  Their buffers are planned on first use for the batch
 * and type asked (forward liveness: a node's buffer is reused once its
 * last reader has run; identity and flatten share their input's) and
 * counted in ae_net_memory_bytes.
 *
 * Runs on the thread that owns the ae_net; ae_count_distinct_patterns and
 * ae_curvature_sum are pure. */
#include "gpu/host/net_internal.h"

#include "api/status.h"
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BN_EPS 1e-5
#define JET_CHUNK_COLUMNS 1024

static int is_pattern_act(const ae_node *nd) {
  return nd->op == AE_OP_ACT &&
         (nd->act.fn == AE_ACT_RELU || nd->act.fn == AE_ACT_LEAKY_RELU);
}

int ae_net_sign_patterns(ae_net *n, const float *x, int batch, uint64_t **bits,
                         size_t *words_per_sample) {
  *bits = NULL;
  *words_per_sample = 0;
  int rc = ae_net_forward_buffers(n, x, batch);
  if (rc) return rc;
  size_t total = 0;
  for (int k = 0; k < n->g->n_nodes; k++)
    if (is_pattern_act(&n->g->nodes[k])) total += n->geom[k].elems;
  size_t words = (total + 63) / 64;
  uint64_t *out = calloc((size_t)batch * words + 1, sizeof(uint64_t));
  if (!out) return AE_ENOMEM;
  for (int b = 0; b < batch; b++) {
    uint64_t *row = out + (size_t)b * words;
    size_t bit = 0;
    for (int k = 0; k < n->g->n_nodes; k++) {
      const ae_node *nd = &n->g->nodes[k];
      if (!is_pattern_act(nd)) continue;
      size_t e = n->geom[k].elems;
      const float *z = n->act[nd->inputs[0]] + (size_t)b * e;
      for (size_t i = 0; i < e; i++, bit++)
        if (z[i] > 0.0f) row[bit >> 6] |= 1ull << (bit & 63);
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

/* Samples per im2col + GEMM chunk of the jets (as net.c's chunks). */
static int jet_chunk(const ae_plan_geom *ge, int virtual_samples) {
  size_t chunk = (JET_CHUNK_COLUMNS + ge->out_hw - 1) / ge->out_hw;
  return chunk < (size_t)virtual_samples ? (int)chunk : virtual_samples;
}

/* Plans (or re-plans for a larger batch or another type) the jet buffers:
 * unit is sizeof(float) or sizeof(double). */
static int plan_jets(ae_net *n, int batch, size_t unit) {
  if (n->jet_arena && n->jet_batch >= batch && n->jet_unit == unit)
    return AE_OK;
  free(n->jet_arena);
  n->jet_arena = NULL;
  n->jet_bytes = 0;
  n->jet_batch = 0;
  n->jet_unit = 0;
  const ae_plan *p = n->plan;
  int nn = n->g->n_nodes;
  size_t *off = malloc(sizeof(size_t) * (size_t)nn);
  if (!off) return AE_ENOMEM;
  size_t total = ae_plan_jets(p, batch, unit, off);
  if (total == SIZE_MAX) {
    free(off);
    return AE_ENOMEM;
  }
  size_t max_col = 0, max_w = 0, max_y = 0;
  for (int k = 0; k < nn; k++) {
    const ae_node *nd = &n->g->nodes[k];
    if (nd->op == AE_OP_CONV) {
      size_t chunk = (size_t)jet_chunk(&n->geom[k], 3 * batch);
      size_t c = n->geom[k].col_rows * n->geom[k].out_hw * chunk;
      size_t yv = (size_t)nd->out * n->geom[k].out_hw * chunk;
      if (c > max_col) max_col = c;
      if (yv > max_y) max_y = yv;
    }
    if (n->geom[k].n_weight > max_w) max_w = n->geom[k].n_weight;
  }
  size_t col_off = total;
  total += ae_plan_align(p, max_col * unit);
  size_t y_off = total;
  total += ae_plan_align(p, max_y * unit);
  size_t w_off = total;
  if (unit == sizeof(double)) total += ae_plan_align(p, max_w * sizeof(double));
  n->jet_arena = aligned_alloc(64, total > 0 ? total : 64);
  if (!n->jet_arena) {
    free(off);
    return AE_ENOMEM;
  }
  n->jet_bytes = total;
  for (int k = 0; k < nn; k++)
    n->jet[k] = n->jet_arena + off[k];
  n->jcol = n->jet_arena + col_off;
  n->jytmp = n->jet_arena + y_off;
  n->jw = unit == sizeof(double) ? (double *)(n->jet_arena + w_off) : NULL;
  n->jet_batch = batch;
  n->jet_unit = unit;
  free(off);
  return AE_OK;
}

/* ---- float64: the reference (ae_net_set_double on) ---- */

/* Stream s (0 value, 1 first, 2 second derivative) of node k. */
static double *stream_d(const ae_net *n, int k, int s, int batch) {
  return (double *)n->jet[k] + (size_t)s * (size_t)batch * n->geom[k].elems;
}

/* The three streams are laid out [stream][sample][elems], so a conv (no
 * bias) acts on them as on 3 * batch samples; chunks of them side by side
 * make one dgemm. */
static void jet_conv_d(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  int K = (int)ge->col_rows, HW = (int)ge->out_hw, cout = nd->out;
  int V = 3 * batch, chunk = jet_chunk(ge, V);
  double *col = n->jcol, *ytmp = n->jytmp;
  for (size_t e = 0; e < ge->n_weight; e++)
    n->jw[e] = n->weight[k][e];
  const double *x = n->jet[nd->inputs[0]];
  double *y = n->jet[k];
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int m = V - v0 < chunk ? V - v0 : chunk;
    size_t ld = (size_t)m * (size_t)HW;
    for (int j = 0; j < m; j++)
      ae_net_im2col_d(x + (size_t)(v0 + j) * ge->in_elems, ge->in_c, ge->in_h,
                      ge->in_w, nd->kernel, nd->stride, nd->padding,
                      nd->shape[1], nd->shape[2], col + (size_t)j * (size_t)HW,
                      ld);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)ld, K,
                1.0, n->jw, K, col, (int)ld, 0.0, ytmp, (int)ld);
    for (int j = 0; j < m; j++)
      for (int c = 0; c < cout; c++)
        memcpy(y + (size_t)(v0 + j) * ge->elems + (size_t)c * (size_t)HW,
               ytmp + (size_t)c * ld + (size_t)j * (size_t)HW,
               sizeof(double) * (size_t)HW);
  }
}

static void jet_linear_d(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  int in = (int)ge->in_elems, out = nd->out;
  for (size_t e = 0; e < ge->n_weight; e++)
    n->jw[e] = n->weight[k][e];
  const double *x = n->jet[nd->inputs[0]];
  double *y = n->jet[k];
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 3 * batch, out, in, 1.0,
              x, in, n->jw, in, 0.0, y, out);
  if (n->bias[k])
    for (int b = 0; b < batch; b++)
      for (int o = 0; o < out; o++)
        y[(size_t)b * (size_t)out + (size_t)o] += n->bias[k][o];
}

static void jet_bn_d(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t C = (size_t)ge->channels, P = ge->plane;
  double cnt = (double)batch * (double)P;
  const double *x = stream_d(n, nd->inputs[0], 0, batch);
  for (size_t c = 0; c < C; c++) {
    double sum = 0.0, ss = 0.0;
    for (int b = 0; b < batch; b++)
      for (size_t i = 0; i < P; i++)
        sum += x[(size_t)b * ge->elems + c * P + i];
    double mean = sum / cnt;
    for (int b = 0; b < batch; b++)
      for (size_t i = 0; i < P; i++) {
        double d = x[(size_t)b * ge->elems + c * P + i] - mean;
        ss += d * d;
      }
    double scale = (double)n->gamma[k][c] / sqrt(ss / cnt + BN_EPS);
    double shift = (double)n->beta[k][c] - mean * scale;
    for (int s = 0; s < 3; s++) {
      const double *xs = stream_d(n, nd->inputs[0], s, batch);
      double *ys = stream_d(n, k, s, batch);
      for (int b = 0; b < batch; b++)
        for (size_t i = 0; i < P; i++) {
          size_t e = (size_t)b * ge->elems + c * P + i;
          ys[e] = xs[e] * scale + (s == 0 ? shift : 0.0);
        }
    }
  }
}

static void jet_act_d(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  size_t count = (size_t)batch * n->geom[k].elems;
  const double *z = stream_d(n, nd->inputs[0], 0, batch);
  const double *z1 = stream_d(n, nd->inputs[0], 1, batch);
  const double *z2 = stream_d(n, nd->inputs[0], 2, batch);
  double *y = stream_d(n, k, 0, batch), *y1 = stream_d(n, k, 1, batch),
         *y2 = stream_d(n, k, 2, batch);
  for (size_t e = 0; e < count; e++) {
    double d1 = ae_act_d1(nd->act.fn, nd->act.slope, z[e]);
    double d2 = ae_act_d2(nd->act.fn, z[e]);
    y[e] = ae_act_value(nd->act.fn, nd->act.slope, z[e]);
    y1[e] = d1 * z1[e];
    y2[e] = d2 * z1[e] * z1[e] + d1 * z2[e];
  }
}

/* The linear ops that act on the three streams alike (3 * batch virtual
 * samples). */
static void jet_linear_op_d(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t V = 3 * (size_t)batch, count = V * ge->elems;
  double *y = n->jet[k];
  const double *x = nd->n_inputs > 0 ? n->jet[nd->inputs[0]] : NULL;
  switch (nd->op) {
  case AE_OP_AVG_POOL: {
    size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
    for (size_t p = 0; p < V * (size_t)ge->in_c; p++)
      ae_net_avg_pool_plane_d(x + p * hw_in, ge->in_h, ge->in_w, nd->kernel,
                              nd->stride, nd->padding, nd->count_include_pad,
                              nd->shape[1], nd->shape[2], y + p * ge->out_hw);
    break;
  }
  case AE_OP_GLOBAL_AVG_POOL: {
    size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
    for (size_t p = 0; p < V * (size_t)ge->in_c; p++) {
      double sum = 0.0;
      for (size_t i = 0; i < hw_in; i++)
        sum += x[p * hw_in + i];
      y[p] = sum / (double)hw_in;
    }
    break;
  }
  case AE_OP_ADD:
    memcpy(y, x, sizeof(double) * count);
    for (int i = 1; i < nd->n_inputs; i++) {
      const double *xi = n->jet[nd->inputs[i]];
      for (size_t e = 0; e < count; e++)
        y[e] += xi[e];
    }
    break;
  case AE_OP_ZERO:
    memset(y, 0, sizeof(double) * count);
    break;
  default: /* identity, flatten: the input's buffer */
    break;
  }
}

static void forward_jet_d(ae_net *n, const double *x, const double *dx,
                          const double *ddx, int batch) {
  for (int k = 0; k < n->g->n_nodes; k++) {
    const ae_node *nd = &n->g->nodes[k];
    switch (nd->op) {
    case AE_OP_INPUT: {
      size_t count = (size_t)batch * n->geom[k].elems;
      memcpy(stream_d(n, k, 0, batch), x, sizeof(double) * count);
      memcpy(stream_d(n, k, 1, batch), dx, sizeof(double) * count);
      memcpy(stream_d(n, k, 2, batch), ddx, sizeof(double) * count);
      break;
    }
    case AE_OP_CONV:
      jet_conv_d(n, k, batch);
      break;
    case AE_OP_LINEAR:
      jet_linear_d(n, k, batch);
      break;
    case AE_OP_BATCH_NORM:
      jet_bn_d(n, k, batch);
      break;
    case AE_OP_ACT:
      jet_act_d(n, k, batch);
      break;
    default:
      jet_linear_op_d(n, k, batch);
      break;
    }
  }
}

/* ---- float32: the default ---- */

static float *stream_f(const ae_net *n, int k, int s, int batch) {
  return (float *)n->jet[k] + (size_t)s * (size_t)batch * n->geom[k].elems;
}

static void jet_conv_f(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  int K = (int)ge->col_rows, HW = (int)ge->out_hw, cout = nd->out;
  int V = 3 * batch, chunk = jet_chunk(ge, V);
  float *col = n->jcol, *ytmp = n->jytmp;
  const float *x = n->jet[nd->inputs[0]];
  float *y = n->jet[k];
  int direct = nd->kernel == 1 && nd->stride == 1 && nd->padding == 0;
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int m = V - v0 < chunk ? V - v0 : chunk;
    size_t ld = (size_t)m * (size_t)HW;
    const float *b = col;
    int ldb = (int)ld;
    if (direct && m == 1) {
      b = x + (size_t)v0 * ge->in_elems;
    } else {
      for (int j = 0; j < m; j++)
        ae_net_im2col_t(x + (size_t)(v0 + j) * ge->in_elems, ge->in_c, ge->in_h,
                        ge->in_w, nd->kernel, nd->stride, nd->padding,
                        nd->shape[1], nd->shape[2],
                        col + (size_t)j * (size_t)HW, ld);
    }
    float *out = m == 1 ? y + (size_t)v0 * ge->elems : ytmp;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)ld, K,
                1.0f, n->weight[k], K, b, ldb, 0.0f, out, (int)ld);
    if (m == 1) continue;
    for (int j = 0; j < m; j++)
      for (int c = 0; c < cout; c++)
        memcpy(y + (size_t)(v0 + j) * ge->elems + (size_t)c * (size_t)HW,
               ytmp + (size_t)c * ld + (size_t)j * (size_t)HW,
               sizeof(float) * (size_t)HW);
  }
}

static void jet_linear_f(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  int in = (int)ge->in_elems, out = nd->out;
  const float *x = n->jet[nd->inputs[0]];
  float *y = n->jet[k];
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 3 * batch, out, in, 1.0f,
              x, in, n->weight[k], in, 0.0f, y, out);
  if (n->bias[k]) /* the value stream only */
    for (int b = 0; b < batch; b++)
      for (int o = 0; o < out; o++)
        y[(size_t)b * (size_t)out + (size_t)o] += n->bias[k][o];
}

AE_VECTOR_LOOPS
static void scale_shift(const float *restrict x, float *restrict y,
                        size_t count, float scale, float shift) {
  for (size_t i = 0; i < count; i++)
    y[i] = x[i] * scale + shift;
}

/* y = x0 + x1 over count elements. */
AE_VECTOR_LOOPS
static void add2(const float *restrict x0, const float *restrict x1,
                 float *restrict y, size_t count) {
  for (size_t e = 0; e < count; e++)
    y[e] = x0[e] + x1[e];
}

/* y += x over count elements. */
AE_VECTOR_LOOPS
static void add_into(const float *restrict x, float *restrict y, size_t count) {
  for (size_t e = 0; e < count; e++)
    y[e] += x[e];
}

/* BN with the value stream's batch statistics (float64 accumulation, as
 * the forward); the tangent streams get the same scale, no shift. */
static void jet_bn_f(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t C = (size_t)ge->channels, P = ge->plane;
  double cnt = (double)batch * (double)P;
  const float *x = stream_f(n, nd->inputs[0], 0, batch);
  for (size_t c = 0; c < C; c++) {
    double shift0 = x[c * P], sum = 0.0, ss = 0.0;
    for (int b = 0; b < batch; b++) {
      const float *p = x + (size_t)b * ge->elems + c * P;
      for (size_t i = 0; i < P; i++) {
        double d = (double)p[i] - shift0;
        sum += d;
        ss += d * d;
      }
    }
    double dmean = sum / cnt, mean = shift0 + dmean;
    double var = ss / cnt - dmean * dmean;
    if (var < 0.0) var = 0.0;
    double scale = (double)n->gamma[k][c] / sqrt(var + BN_EPS);
    float fscale = (float)scale;
    float fshift = (float)((double)n->beta[k][c] - mean * scale);
    for (int s = 0; s < 3; s++) {
      const float *xs = stream_f(n, nd->inputs[0], s, batch);
      float *ys = stream_f(n, k, s, batch);
      float sh = s == 0 ? fshift : 0.0f;
      for (int b = 0; b < batch; b++)
        scale_shift(xs + (size_t)b * ge->elems + c * P,
                    ys + (size_t)b * ge->elems + c * P, P, fscale, sh);
    }
  }
}

/* ReLU's jets: the three streams where z > 0, else +0 (the derivative at
 * x, no second-order term).  Selected by a bit mask, which vectorises,
 * with the very values of z > 0 ? v : 0. */
AE_VECTOR_LOOPS
static void relu_jets(size_t count, const float *restrict z,
                      const float *restrict z1, const float *restrict z2,
                      float *restrict y, float *restrict y1,
                      float *restrict y2) {
  for (size_t e = 0; e < count; e++) {
    uint32_t keep = (uint32_t) - (int32_t)(z[e] > 0.0f), a, b, c;
    memcpy(&a, &z[e], sizeof(a));
    memcpy(&b, &z1[e], sizeof(b));
    memcpy(&c, &z2[e], sizeof(c));
    a &= keep;
    b &= keep;
    c &= keep;
    memcpy(&y[e], &a, sizeof(a));
    memcpy(&y1[e], &b, sizeof(b));
    memcpy(&y2[e], &c, sizeof(c));
  }
}

/* y = s(z), y' = s'(z) z', y'' = s''(z) z'^2 + s'(z) z''. */
AE_VECTOR_LOOPS
static void jet_act_f(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  size_t count = (size_t)batch * n->geom[k].elems;
  const float *restrict z = stream_f(n, nd->inputs[0], 0, batch);
  const float *restrict z1 = stream_f(n, nd->inputs[0], 1, batch);
  const float *restrict z2 = stream_f(n, nd->inputs[0], 2, batch);
  float *restrict y = stream_f(n, k, 0, batch);
  float *restrict y1 = stream_f(n, k, 1, batch);
  float *restrict y2 = stream_f(n, k, 2, batch);
  switch (nd->act.fn) {
  case AE_ACT_RELU:
    relu_jets(count, z, z1, z2, y, y1, y2);
    return;
  case AE_ACT_LEAKY_RELU: {
    float s = (float)nd->act.slope;
    for (size_t e = 0; e < count; e++) {
      float d = z[e] > 0.0f ? 1.0f : s;
      y[e] = d * z[e];
      y1[e] = d * z1[e];
      y2[e] = d * z2[e];
    }
    return;
  }
  case AE_ACT_IDENTITY:
    memcpy(y, z, sizeof(float) * count);
    memcpy(y1, z1, sizeof(float) * count);
    memcpy(y2, z2, sizeof(float) * count);
    return;
  default:
    for (size_t e = 0; e < count; e++) {
      double d1 = ae_act_d1(nd->act.fn, nd->act.slope, z[e]);
      double d2 = ae_act_d2(nd->act.fn, z[e]);
      double t1 = z1[e];
      y[e] = (float)ae_act_value(nd->act.fn, nd->act.slope, z[e]);
      y1[e] = (float)(d1 * t1);
      y2[e] = (float)(d2 * t1 * t1 + d1 * (double)z2[e]);
    }
    return;
  }
}

static void jet_linear_op_f(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t V = 3 * (size_t)batch, count = V * ge->elems;
  float *y = n->jet[k];
  const float *x = nd->n_inputs > 0 ? n->jet[nd->inputs[0]] : NULL;
  switch (nd->op) {
  case AE_OP_AVG_POOL: {
    size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
    for (size_t p = 0; p < V * (size_t)ge->in_c; p++)
      ae_net_avg_pool_plane_t(x + p * hw_in, ge->in_h, ge->in_w, nd->kernel,
                              nd->stride, nd->padding, nd->count_include_pad,
                              nd->shape[1], nd->shape[2], y + p * ge->out_hw);
    break;
  }
  case AE_OP_GLOBAL_AVG_POOL: {
    size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
    for (size_t p = 0; p < V * (size_t)ge->in_c; p++) {
      double sum = 0.0;
      for (size_t i = 0; i < hw_in; i++)
        sum += x[p * hw_in + i];
      y[p] = (float)(sum / (double)hw_in);
    }
    break;
  }
  case AE_OP_ADD:
    if (nd->n_inputs == 1) {
      memcpy(y, x, sizeof(float) * count);
      break;
    }
    /* Left to right, as the float64 path and the forward. */
    add2(x, n->jet[nd->inputs[1]], y, count);
    for (int i = 2; i < nd->n_inputs; i++)
      add_into(n->jet[nd->inputs[i]], y, count);
    break;
  case AE_OP_ZERO:
    memset(y, 0, sizeof(float) * count);
    break;
  default: /* identity, flatten: the input's buffer */
    break;
  }
}

static void forward_jet_f(ae_net *n, const double *x, const double *dx,
                          const double *ddx, int batch) {
  for (int k = 0; k < n->g->n_nodes; k++) {
    const ae_node *nd = &n->g->nodes[k];
    switch (nd->op) {
    case AE_OP_INPUT: {
      size_t count = (size_t)batch * n->geom[k].elems;
      float *s0 = stream_f(n, k, 0, batch), *s1 = stream_f(n, k, 1, batch),
            *s2 = stream_f(n, k, 2, batch);
      for (size_t e = 0; e < count; e++) {
        s0[e] = (float)x[e];
        s1[e] = (float)dx[e];
        s2[e] = (float)ddx[e];
      }
      break;
    }
    case AE_OP_CONV:
      jet_conv_f(n, k, batch);
      break;
    case AE_OP_LINEAR:
      jet_linear_f(n, k, batch);
      break;
    case AE_OP_BATCH_NORM:
      jet_bn_f(n, k, batch);
      break;
    case AE_OP_ACT:
      jet_act_f(n, k, batch);
      break;
    default:
      jet_linear_op_f(n, k, batch);
      break;
    }
  }
}

int ae_net_forward_jet(ae_net *n, const double *x, const double *dx,
                       const double *ddx, int batch, double *y, double *dy,
                       double *ddy) {
  if (!x || !dx || !ddx || batch < 1) return AE_EINVAL;
  int dbl = n->use_double;
  int rc = plan_jets(n, batch, dbl ? sizeof(double) : sizeof(float));
  if (rc) return rc;
  int o = n->g->output;
  size_t count = (size_t)batch * n->geom[o].elems;
  double *outs[3] = {y, dy, ddy};
  if (dbl) {
    forward_jet_d(n, x, dx, ddx, batch);
    for (int s = 0; s < 3; s++)
      if (outs[s])
        memcpy(outs[s], stream_d(n, o, s, batch), sizeof(double) * count);
    return AE_OK;
  }
  forward_jet_f(n, x, dx, ddx, batch);
  for (int s = 0; s < 3; s++) {
    if (!outs[s]) continue;
    const float *src = stream_f(n, o, s, batch);
    for (size_t e = 0; e < count; e++)
      outs[s][e] = (double)src[e];
  }
  return AE_OK;
}
