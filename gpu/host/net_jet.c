/* net_jet.c: the forward-mode second-order jets along a curve, in the
 * executor's buffer type (ae_real: float32 here, float64 when included by
 * net64_jet.c, see net_real.h).
 *
 * The jets propagate three streams per node (value, first and second
 * derivative along the curve's parameter), laid out [stream][sample][elems]
 * so that every linear op (conv, linear, pools, add) runs once over
 * 3 * batch "virtual samples": one im2col + GEMM per chunk of columns, as
 * the forward does, on the net's own weights.  While ae_net_set_double is
 * on, the float32 net hands the call to its float64 twin (the reference),
 * as the forward and the NTK do.  The buffers are planned on first use for
 * the batch asked (ae_plan_jets: a node's buffer is reused once its last
 * reader has run; identity and flatten share their input's) and counted
 * in ae_net_memory_bytes.
 *
 * What runs is decided per call (jet_plan), with the same bits as running
 * every node (ae_net_set_jet_reference, the reference kept beside it):
 * nodes whose output never reaches the logits are skipped; nodes whose
 * three streams are identically +0 (a ZERO, and what only such nodes feed
 * through ops that map +0 to +0: conv, relu, pools, BN with a +0 shift,
 * sums of zeros) are not computed, and written as zeros only where a
 * reader that does not know reads them; a sum adds a zero term as + 0
 * (what turns a -0 into +0, as the full sum would); a ReLU whose only
 * reader is the next node, a direct convolution, runs inside it sample
 * by sample into an L2-sized scratch (no pass of its three streams
 * through memory); a BN whose one reader is a sum with no zero term
 * (plan->jet_bn_add) forms only its scale and shift, and the sum applies
 * them to the BN's input on the way (its three streams neither written
 * nor read back).  The second stream is propagated everywhere: x'' = -x
 * on the circle holds through the stem convolution only, since every BN
 * shifts the value stream by its batch mean and beta but not the
 * tangents (y'' = s x'' = -s x, while y = s x + beta - s mean).
 *
 * Runs on the thread that owns the ae_net. */
#include "gpu/host/net_internal.h"

#include "api/status.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifndef AE_NET_DOUBLE
#include "gpu/host/net64.h"
#endif
#if AE_NET_AVX512
#include <immintrin.h>
#endif

#define BN_EPS 1e-5
/* Samples per im2col + GEMM chunk of the jets (the planner's). */
static int jet_chunk(const ae_plan_geom *ge, int virtual_samples) {
  return ae_plan_host_chunk(ge, virtual_samples);
}

/* Plans (or re-plans for a larger batch) the jet buffers. */
static int plan_jets(ae_net *n, int batch) {
  if (n->jet_arena && n->jet_batch >= batch) return AE_OK;
  ae_net_arena_give(AE_NET_SPARE_JETS, n->jet_arena, n->jet_cap);
  n->jet_arena = NULL;
  n->jet_bytes = 0;
  n->jet_cap = 0;
  n->jet_batch = 0;
  const ae_plan *p = n->plan;
  int nn = n->g->n_nodes;
  size_t *off = malloc(sizeof(size_t) * (size_t)nn);
  if (!off) return AE_ENOMEM;
  const size_t unit = sizeof(ae_real);
  size_t total = ae_plan_jets(p, batch, unit, 1, off);
  if (total == SIZE_MAX) {
    free(off);
    return AE_ENOMEM;
  }
  /* The scratch sizes are the planner's (the estimate counts the same). */
  ae_plan_host_sizes s;
  ae_plan_host_scratch_sizes(p, batch, 1, &s);
  size_t col_off = total;
  total += s.col;
  size_t y_off = total;
  total += s.y;
  /* The thread's spare jets arena when it fits (net.c): no fresh pages to
   * fault in for every job's curvature. */
  n->jet_arena = ae_net_arena_take(AE_NET_SPARE_JETS,
                                   total > 0 ? (total + 63) & ~(size_t)63 : 64,
                                   &n->jet_cap);
  if (!n->jet_arena) {
    free(off);
    return AE_ENOMEM;
  }
  n->jet_bytes = total;
  for (int k = 0; k < nn; k++)
    n->jet[k] = (ae_real *)(n->jet_arena + off[k]);
  n->jcol = (ae_real *)(n->jet_arena + col_off);
  n->jcol_bytes = s.col;
  n->jytmp = (ae_real *)(n->jet_arena + y_off);
  n->jet_batch = batch;
  free(off);
  return AE_OK;
}

static ae_real *stream(const ae_net *n, int k, int s, int batch) {
  return n->jet[k] + (size_t)s * (size_t)batch * n->geom[k].elems;
}

static void jet_conv(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  int K = (int)ge->col_rows, HW = (int)ge->out_hw, cout = nd->out;
  int V = 3 * batch, chunk = jet_chunk(ge, V);
  ae_real *col = n->jcol, *ytmp = n->jytmp;
  const ae_real *x = n->jet[nd->inputs[0]];
  ae_real *y = n->jet[k];
  int direct = nd->kernel == 1 && nd->stride == 1 && nd->padding == 0;
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int m = V - v0 < chunk ? V - v0 : chunk;
    size_t ld = (size_t)m * (size_t)HW;
#ifndef AE_NET_DOUBLE
    /* The direct convolution where it gives the sgemm's very values, or
     * its values are the definition (net_conv_direct.c). */
    if (ae_net_conv_direct_takes(nd, ge, ld)) {
      ae_net_conv_direct(n->weight[k], x + (size_t)v0 * ge->in_elems,
                         ge->in_elems, ge->in_c, ge->in_h, ge->in_w, nd->kernel,
                         cout, y + (size_t)v0 * ge->elems, ge->elems, m);
      continue;
    }
#endif
    const ae_real *b = col;
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
    ae_real *out = m == 1 ? y + (size_t)v0 * ge->elems : ytmp;
    AE_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)ld, K, 1.0,
            n->weight[k], K, b, ldb, 0.0, out, (int)ld);
    if (m == 1) continue;
    for (int j = 0; j < m; j++)
      for (int c = 0; c < cout; c++)
        memcpy(y + (size_t)(v0 + j) * ge->elems + (size_t)c * (size_t)HW,
               ytmp + (size_t)c * ld + (size_t)j * (size_t)HW,
               sizeof(ae_real) * (size_t)HW);
  }
}

static void jet_linear(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  int in = (int)ge->in_elems, out = nd->out;
  const ae_real *x = n->jet[nd->inputs[0]];
  ae_real *y = n->jet[k];
  AE_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, 3 * batch, out, in, 1.0, x,
          in, n->weight[k], in, 0.0, y, out);
  if (n->bias[k]) /* the value stream only */
    for (int b = 0; b < batch; b++)
      for (int o = 0; o < out; o++)
        y[(size_t)b * (size_t)out + (size_t)o] += n->bias[k][o];
}

enum { BN_STATS_GROUP = 64 };

/* Channels c0 .. c0 + m - 1 (m <= BN_STATS_GROUP) of BN node k as
 * y = x * scale[j] + shift[j], from the value stream's batch mean and
 * variance (float64 accumulation, as the forward). */
static void bn_folds_group(const ae_net *n, int k, int batch, size_t c0,
                           size_t m, ae_real *scale, ae_real *shift) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  double means[BN_STATS_GROUP], vars[BN_STATS_GROUP];
  ae_net_bn_stats_t(stream(n, nd->inputs[0], 0, batch), batch, ge->elems,
                    ge->plane, c0, m, means, vars);
  for (size_t j = 0; j < m; j++) {
    double sc = (double)n->gamma[k][c0 + j] / sqrt(vars[j] + BN_EPS);
    scale[j] = (ae_real)sc;
    shift[j] = (ae_real)((double)n->beta[k][c0 + j] - means[j] * sc);
  }
}

/* y = y * scale + shift: ae_net_scale_shift_t's values, in place. */
AE_AVX2_CLONES AE_VECTOR_LOOPS static void
scale_shift_in_place(ae_real *y, size_t count, ae_real scale, ae_real shift) {
  for (size_t i = 0; i < count; i++)
    y[i] = y[i] * scale + shift;
}

/* BN with the value stream's batch statistics; the tangent streams get
 * the same scale, no shift. */
static void jet_bn(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t C = (size_t)ge->channels, P = ge->plane;
  ae_real scale[BN_STATS_GROUP], shift[BN_STATS_GROUP];
  for (size_t c0 = 0; c0 < C; c0 += BN_STATS_GROUP) {
    size_t m = C - c0 < BN_STATS_GROUP ? C - c0 : BN_STATS_GROUP;
    bn_folds_group(n, k, batch, c0, m, scale, shift);
    for (size_t c = c0; c < c0 + m; c++)
      for (int s = 0; s < 3; s++) {
        const ae_real *xs = stream(n, nd->inputs[0], s, batch);
        ae_real *ys = stream(n, k, s, batch);
        ae_real sh = s == 0 ? shift[c - c0] : (ae_real)0;
        for (int b = 0; b < batch; b++) {
          size_t at = (size_t)b * ge->elems + c * P;
          if (xs == ys) /* a BN its sum may apply: in place (ae_plan_jets) */
            scale_shift_in_place(ys + at, P, scale[c - c0], sh);
          else
            ae_net_scale_shift_t(xs + at, ys + at, P, scale[c - c0], sh);
        }
      }
  }
}

/* BN node k's scale (fold[0 .. C)) and shift (fold[C .. 2C)) per
 * channel, jet_bn's very values, without applying them (its one reader,
 * an ADD, does: jet_add_folded). */
static void jet_bn_folds(const ae_net *n, int k, int batch, ae_real *fold) {
  size_t C = (size_t)n->geom[k].channels;
  for (size_t c0 = 0; c0 < C; c0 += BN_STATS_GROUP)
    bn_folds_group(n, k, batch, c0,
                   C - c0 < BN_STATS_GROUP ? C - c0 : BN_STATS_GROUP, fold + c0,
                   fold + C + c0);
}

/* ReLU's jets: the three streams where z > 0, else +0 (the derivative at
 * x, no second-order term).  Selected by a bit mask of the element's
 * width, which vectorises, with the very values of z > 0 ? v : 0. */
AE_AVX2_CLONES AE_VECTOR_LOOPS static void
relu_jets(size_t count, const ae_real *restrict z, const ae_real *restrict z1,
          const ae_real *restrict z2, ae_real *restrict y, ae_real *restrict y1,
          ae_real *restrict y2) {
  for (size_t e = 0; e < count; e++) {
    ae_real_bits keep = (ae_real_bits)0 - (ae_real_bits)(z[e] > (ae_real)0);
    ae_real_bits a, b, c;
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

#if AE_NET_AVX512
/* relu_jets in 16 lanes: each stream kept where z > 0, else +0. */
AE_AVX512_FN
static void relu_jets_avx512(size_t count, const float *z, const float *z1,
                             const float *z2, float *y, float *y1, float *y2) {
  __m512 zero = _mm512_setzero_ps();
  for (size_t e = 0; e < count; e += 16) {
    __mmask16 m = count - e >= 16 ? (__mmask16)0xFFFF
                                  : (__mmask16)((1u << (count - e)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, z + e);
    __mmask16 keep = _mm512_mask_cmp_ps_mask(m, v, zero, _CMP_GT_OQ);
    _mm512_mask_storeu_ps(y + e, m, _mm512_maskz_mov_ps(keep, v));
    _mm512_mask_storeu_ps(y1 + e, m, _mm512_maskz_loadu_ps(keep, z1 + e));
    _mm512_mask_storeu_ps(y2 + e, m, _mm512_maskz_loadu_ps(keep, z2 + e));
  }
}
#endif

/* y = s(z), y' = s'(z) z', y'' = s''(z) z'^2 + s'(z) z''. */
AE_VECTOR_LOOPS
static void jet_act(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  size_t count = (size_t)batch * n->geom[k].elems;
  const ae_real *restrict z = stream(n, nd->inputs[0], 0, batch);
  const ae_real *restrict z1 = stream(n, nd->inputs[0], 1, batch);
  const ae_real *restrict z2 = stream(n, nd->inputs[0], 2, batch);
  ae_real *restrict y = stream(n, k, 0, batch);
  ae_real *restrict y1 = stream(n, k, 1, batch);
  ae_real *restrict y2 = stream(n, k, 2, batch);
  switch (nd->act.fn) {
  case AE_ACT_RELU:
#if AE_NET_AVX512
    if (ae_net_have_avx512()) {
      relu_jets_avx512(count, z, z1, z2, y, y1, y2);
      return;
    }
#endif
    relu_jets(count, z, z1, z2, y, y1, y2);
    return;
  case AE_ACT_LEAKY_RELU: {
    ae_real s = (ae_real)nd->act.slope;
    for (size_t e = 0; e < count; e++) {
      ae_real d = z[e] > (ae_real)0 ? (ae_real)1 : s;
      y[e] = d * z[e];
      y1[e] = d * z1[e];
      y2[e] = d * z2[e];
    }
    return;
  }
  case AE_ACT_IDENTITY:
    memcpy(y, z, sizeof(ae_real) * count);
    memcpy(y1, z1, sizeof(ae_real) * count);
    memcpy(y2, z2, sizeof(ae_real) * count);
    return;
  default:
    for (size_t e = 0; e < count; e++) {
      double d1 = ae_act_d1(nd->act.fn, nd->act.slope, z[e]);
      double d2 = ae_act_d2(nd->act.fn, z[e]);
      double t1 = z1[e];
      y[e] = (ae_real)ae_act_value(nd->act.fn, nd->act.slope, z[e]);
      y1[e] = (ae_real)(d1 * t1);
      y2[e] = (ae_real)(d2 * t1 * t1 + d1 * (double)z2[e]);
    }
    return;
  }
}

static void jet_linear_op(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t V = 3 * (size_t)batch, count = V * ge->elems;
  ae_real *y = n->jet[k];
  const ae_real *x = nd->n_inputs > 0 ? n->jet[nd->inputs[0]] : NULL;
  switch (nd->op) {
  case AE_OP_AVG_POOL:
    ae_net_avg_pool_t(x, V * (size_t)ge->in_c, nd, ge, y);
    break;
  case AE_OP_GLOBAL_AVG_POOL:
    ae_net_global_avg_pool_t(x, V * (size_t)ge->in_c, ge, y);
    break;
  case AE_OP_ADD:
    ae_net_add_t(n->jet, nd, count, y);
    break;
  case AE_OP_ZERO:
    memset(y, 0, sizeof(ae_real) * count);
    break;
  default: /* identity, flatten: the input's buffer */
    break;
  }
}

/* What the jets do at a node (jet_plan). */
enum {
  JET_RUN,        /* computed (a zero input of a sum is added as + 0) */
  JET_DEAD,       /* never read on the way to the logits: skipped */
  JET_ZERO,       /* identically +0, not written (its readers know) */
  JET_ZERO_WRITE, /* identically +0, written: a reader reads the buffer */
  JET_RELU_FUSED, /* run by its one reader, the next node's direct conv */
  JET_BN_FOLDED   /* a BN applied inside its one reader, an ADD
                   * (plan->jet_bn_add): only its scale and shift formed */
};

static int jet_is_zero(unsigned char w) {
  return w == JET_ZERO || w == JET_ZERO_WRITE;
}

/* 1 when every one of beta's channels is +0 (a BN of an all-zero input
 * then gives +0 in all three streams: 0 * scale + 0). */
static int beta_is_plus_zero(const ae_net *n, int k) {
  if (!n->beta[k]) return 0;
  for (int c = 0; c < n->geom[k].channels; c++) {
    ae_real_bits b;
    memcpy(&b, &n->beta[k][c], sizeof b);
    if (b != 0) return 0;
  }
  return 1;
}

/* 1 when every one of count values is finite (w * 0 is then +-0, never
 * NaN). */
static int all_finite(const ae_real *w, size_t count) {
  if (!w) return 0;
  for (size_t i = 0; i < count; i++)
    if (!isfinite(w[i])) return 0;
  return 1;
}

/* 1 when node k's output is identically +0 in all three streams, given
 * what its inputs are (the ops that map +0 inputs to +0 outputs; anything
 * else is computed). */
static int jet_node_zero(const ae_net *n, int k, const unsigned char *what) {
  const ae_node *nd = &n->g->nodes[k];
  if (nd->op == AE_OP_ZERO) return 1;
  if (ae_net_ops_handles(nd) || nd->n_inputs < 1) return 0;
  for (int i = 0; i < nd->n_inputs; i++)
    if (!jet_is_zero(what[nd->inputs[i]])) return 0;
  switch (nd->op) {
  case AE_OP_CONV: /* the jets' conv adds no bias */
    return all_finite(n->weight[k], n->geom[k].n_weight);
  case AE_OP_AVG_POOL:
  case AE_OP_GLOBAL_AVG_POOL:
  case AE_OP_ADD:
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN:
    return 1;
  case AE_OP_LINEAR:
    return n->bias[k] == NULL && all_finite(n->weight[k], n->geom[k].n_weight);
  case AE_OP_BATCH_NORM: /* 0 * gamma / sqrt(0 + eps) + beta */
    return beta_is_plus_zero(n, k) &&
           all_finite(n->gamma[k], (size_t)n->geom[k].channels);
  case AE_OP_ACT: {
    ae_real slope = (ae_real)nd->act.slope;
    return nd->act.fn == AE_ACT_RELU || nd->act.fn == AE_ACT_IDENTITY ||
           (nd->act.fn == AE_ACT_LEAKY_RELU && slope >= 0 && isfinite(slope));
  }
  default:
    return 0;
  }
}

#ifndef AE_NET_DOUBLE
/* 1 when every chunk of conv node k's jets runs the direct convolution
 * (jet_conv's own test), so that its samples may run in any order. */
static int conv_all_direct(const ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  if (ae_net_ops_handles(nd)) return 0;
  int V = 3 * batch, chunk = jet_chunk(ge, V);
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int m = V - v0 < chunk ? V - v0 : chunk;
    if (!ae_net_conv_direct_takes(nd, ge, (size_t)m * ge->out_hw)) return 0;
  }
  return 1;
}

/* 1 when relu node k can run inside its reader r = k + 1: r a conv that
 * runs direct throughout, the scratch holds one sample's three input
 * streams, and r's output either lies apart from the relu's input z or
 * is z itself, same size (the planner may give r the slot z leaves at
 * k; the fused conv consumes each sample of z before it writes that
 * sample's outputs). */
static int relu_fusable(const ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  int r = k + 1;
  if (r >= n->g->n_nodes || n->g->nodes[r].op != AE_OP_CONV ||
      n->g->nodes[r].inputs[0] != k || !conv_all_direct(n, r, batch))
    return 0;
  const ae_plan_geom *ge = &n->geom[r];
  if (3 * ge->in_elems * sizeof(ae_real) > n->jcol_bytes) return 0;
  const ae_real *z = n->jet[nd->inputs[0]], *y = n->jet[r];
  size_t zn = 3 * (size_t)batch * ge->in_elems,
         yn = 3 * (size_t)batch * ge->elems;
  if (z == y) return zn == yn;
  return (uintptr_t)(y + yn) <= (uintptr_t)z ||
         (uintptr_t)(z + zn) <= (uintptr_t)y;
}
#endif

/* Fills what[n_nodes] for a pass of batch samples (the buffers planned). */
static int jet_plan(const ae_net *n, int batch, unsigned char *what) {
  const ae_graph *g = n->g;
  int nn = g->n_nodes, out = g->output;
  if (n->jet_reference) {
    memset(what, JET_RUN, (size_t)nn);
    return AE_OK;
  }
  int *readers = calloc((size_t)nn, sizeof(int));
  if (!readers) return AE_ENOMEM;
  /* Needed: the output, and every input of a needed node (a ZERO needs
   * none: its input gives the shape only). */
  memset(what, JET_DEAD, (size_t)nn);
  what[out] = JET_RUN;
  for (int k = nn - 1; k >= 0; k--) {
    const ae_node *nd = &g->nodes[k];
    if (what[k] == JET_DEAD || nd->op == AE_OP_ZERO) continue;
    for (int i = 0; i < nd->n_inputs; i++) {
      what[nd->inputs[i]] = JET_RUN;
      readers[nd->inputs[i]]++;
    }
  }
  for (int k = 0; k < nn; k++)
    if (what[k] != JET_DEAD && jet_node_zero(n, k, what)) what[k] = JET_ZERO;
  /* A zero is written where it is the output or a computed node other
   * than a sum reads it. */
  if (what[out] == JET_ZERO) what[out] = JET_ZERO_WRITE;
  for (int r = 0; r < nn; r++) {
    const ae_node *nd = &g->nodes[r];
    if (what[r] != JET_RUN || nd->op == AE_OP_ZERO ||
        (nd->op == AE_OP_ADD && !ae_net_ops_handles(nd)))
      continue;
    for (int i = 0; i < nd->n_inputs; i++)
      if (what[nd->inputs[i]] == JET_ZERO) what[nd->inputs[i]] = JET_ZERO_WRITE;
  }
  /* A BN whose ADD runs with no zero term is applied inside it; its
   * input lives until the ADD (ae_plan_jets). */
  for (int k = 0; k < nn; k++) {
    int r = n->plan->jet_bn_add[k];
    if (r < 0 || what[k] != JET_RUN || what[r] != JET_RUN) continue;
    int zero_term = 0;
    for (int i = 0; i < g->nodes[r].n_inputs; i++)
      zero_term |= jet_is_zero(what[g->nodes[r].inputs[i]]);
    if (!zero_term) what[k] = JET_BN_FOLDED;
  }
#ifndef AE_NET_DOUBLE
  for (int k = 0; k + 1 < nn; k++) {
    const ae_node *nd = &g->nodes[k];
    if (what[k] == JET_RUN && what[k + 1] == JET_RUN && k != out &&
        readers[k] == 1 && nd->op == AE_OP_ACT && nd->act.fn == AE_ACT_RELU &&
        relu_fusable(n, k, batch))
      what[k] = JET_RELU_FUSED;
  }
#endif
  free(readers);
  return AE_OK;
}

/* y = a + b, or a + 0 where b is NULL (a may be y). */
AE_AVX2_CLONES AE_VECTOR_LOOPS static void
jet_add2(const ae_real *a, const ae_real *b, ae_real *y, size_t count) {
  if (b) {
    for (size_t e = 0; e < count; e++)
      y[e] = a[e] + b[e];
  } else {
    for (size_t e = 0; e < count; e++)
      y[e] = a[e] + (ae_real)0;
  }
}

/* The sum of BN-folded terms, one sample's C planes of P values at a time.
 * A term is x, or x * s[c] + h[c] where a BN is folded in (s not NULL): a
 * multiply and an add rounded apart, as ae_net_scale_shift_t, so each
 * term and each partial sum has the bits the BN node and the sum give.
 * fold_add2: y = T(a) + T(b); fold_add_into: y = y + T(x).  The plan
 * never gives y the slot of a term. */
AE_AVX2_CLONES AE_VECTOR_LOOPS static void
fold_add2_lanes(const ae_real *a, const ae_real *sa, const ae_real *ha,
                const ae_real *b, const ae_real *sb, const ae_real *hb,
                ae_real *y, size_t C, size_t P) {
  for (size_t c = 0; c < C; c++) {
    const ae_real *pa = a + c * P, *pb = b + c * P;
    ae_real *py = y + c * P;
    if (sa && sb) {
      ae_real s0 = sa[c], h0 = ha[c], s1 = sb[c], h1 = hb[c];
      for (size_t e = 0; e < P; e++)
        py[e] = (pa[e] * s0 + h0) + (pb[e] * s1 + h1);
    } else if (sa) {
      ae_real s0 = sa[c], h0 = ha[c];
      for (size_t e = 0; e < P; e++)
        py[e] = (pa[e] * s0 + h0) + pb[e];
    } else if (sb) {
      ae_real s1 = sb[c], h1 = hb[c];
      for (size_t e = 0; e < P; e++)
        py[e] = pa[e] + (pb[e] * s1 + h1);
    } else {
      for (size_t e = 0; e < P; e++)
        py[e] = pa[e] + pb[e];
    }
  }
}

AE_AVX2_CLONES AE_VECTOR_LOOPS static void
fold_add_into_lanes(const ae_real *x, const ae_real *sx, const ae_real *hx,
                    ae_real *y, size_t C, size_t P) {
  for (size_t c = 0; c < C; c++) {
    const ae_real *px = x + c * P;
    ae_real *py = y + c * P;
    if (sx) {
      ae_real s0 = sx[c], h0 = hx[c];
      for (size_t e = 0; e < P; e++)
        py[e] = py[e] + (px[e] * s0 + h0);
    } else {
      for (size_t e = 0; e < P; e++)
        py[e] = py[e] + px[e];
    }
  }
}

#if AE_NET_AVX512
/* T(x) of 16 lanes (m: the lanes in the plane). */
AE_AVX512_FN
static inline __m512 fold_term16(const float *x, __mmask16 m, const float *s,
                                 const float *h, size_t c) {
  __m512 v = _mm512_maskz_loadu_ps(m, x);
  if (!s) return v;
  return _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(s[c])),
                       _mm512_set1_ps(h[c]));
}

AE_AVX512_FN
static void fold_add2_avx512(const float *a, const float *sa, const float *ha,
                             const float *b, const float *sb, const float *hb,
                             float *y, size_t C, size_t P) {
  for (size_t c = 0; c < C; c++)
    for (size_t e = 0; e < P; e += 16) {
      __mmask16 m =
          P - e >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (P - e)) - 1u);
      size_t at = c * P + e;
      _mm512_mask_storeu_ps(y + at, m,
                            _mm512_add_ps(fold_term16(a + at, m, sa, ha, c),
                                          fold_term16(b + at, m, sb, hb, c)));
    }
}

AE_AVX512_FN
static void fold_add_into_avx512(const float *x, const float *sx,
                                 const float *hx, float *y, size_t C,
                                 size_t P) {
  for (size_t c = 0; c < C; c++)
    for (size_t e = 0; e < P; e += 16) {
      __mmask16 m =
          P - e >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (P - e)) - 1u);
      size_t at = c * P + e;
      _mm512_mask_storeu_ps(y + at, m,
                            _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + at),
                                          fold_term16(x + at, m, sx, hx, c)));
    }
}
#endif

static void fold_add2(const ae_real *a, const ae_real *sa, const ae_real *ha,
                      const ae_real *b, const ae_real *sb, const ae_real *hb,
                      ae_real *y, size_t C, size_t P) {
#if AE_NET_AVX512
  if (ae_net_have_avx512()) {
    fold_add2_avx512(a, sa, ha, b, sb, hb, y, C, P);
    return;
  }
#endif
  fold_add2_lanes(a, sa, ha, b, sb, hb, y, C, P);
}

static void fold_add_into(const ae_real *x, const ae_real *sx,
                          const ae_real *hx, ae_real *y, size_t C, size_t P) {
#if AE_NET_AVX512
  if (ae_net_have_avx512()) {
    fold_add_into_avx512(x, sx, hx, y, C, P);
    return;
  }
#endif
  fold_add_into_lanes(x, sx, hx, y, C, P);
}

/* The BN folds of one jets pass: fold[k] (2 C values: scale, shift) for
 * each JET_BN_FOLDED node k, and C_max zeros (the tangent streams'
 * shift). */
typedef struct {
  ae_real **fold;
  const ae_real *zeros;
  ae_real *buf;
} jet_folds;

/* ADD node k, one or more of whose inputs are JET_BN_FOLDED: the sum of
 * its terms with each such BN applied on the way, ((t0 + t1) + t2) ...
 * as ae_net_add_t adds them, plane by plane of the first folded BN's
 * layout (every input has the ADD's size: plan->jet_bn_add). */
static void jet_add_folded(ae_net *n, int k, int batch,
                           const unsigned char *what, const jet_folds *folds) {
  const ae_node *nd = &n->g->nodes[k];
  size_t elems = n->geom[k].elems, C = 0, P = 0;
  for (int i = 0; i < nd->n_inputs && !C; i++)
    if (what[nd->inputs[i]] == JET_BN_FOLDED) {
      C = (size_t)n->geom[nd->inputs[i]].channels;
      P = n->geom[nd->inputs[i]].plane;
    }
  for (int s = 0; s < 3; s++)
    for (size_t b = 0; b < (size_t)batch; b++) {
      size_t off = ((size_t)s * (size_t)batch + b) * elems;
      const ae_real *x[2], *sc[2], *sh[2];
      for (int i = 0; i < nd->n_inputs; i++) {
        int in = nd->inputs[i];
        int folded = what[in] == JET_BN_FOLDED;
        const ae_real *xi =
            n->jet[folded ? n->g->nodes[in].inputs[0] : in] + off;
        const ae_real *si = folded ? folds->fold[in] : NULL;
        const ae_real *hi = !folded  ? NULL
                            : s == 0 ? folds->fold[in] + C
                                     : folds->zeros;
        if (i < 2) {
          x[i] = xi;
          sc[i] = si;
          sh[i] = hi;
          if (i == 1)
            fold_add2(x[0], sc[0], sh[0], x[1], sc[1], sh[1], n->jet[k] + off,
                      C, P);
        } else {
          fold_add_into(xi, si, hi, n->jet[k] + off, C, P);
        }
      }
    }
}

/* A sum with zero terms: ((x0 + x1) + x2) ... with +0 for each zero term,
 * the very values of the full sum. */
static void jet_add(ae_net *n, int k, int batch, const unsigned char *what) {
  const ae_node *nd = &n->g->nodes[k];
  size_t count = 3 * (size_t)batch * n->geom[k].elems;
  int any_zero = 0;
  for (int i = 0; i < nd->n_inputs; i++)
    any_zero |= jet_is_zero(what[nd->inputs[i]]);
  if (!any_zero) {
    ae_net_add_t(n->jet, nd, count, n->jet[k]);
    return;
  }
  ae_real *y = n->jet[k];
  const ae_real *cur =
      jet_is_zero(what[nd->inputs[0]]) ? NULL : n->jet[nd->inputs[0]];
  for (int i = 1; i < nd->n_inputs; i++) {
    const ae_real *t =
        jet_is_zero(what[nd->inputs[i]]) ? NULL : n->jet[nd->inputs[i]];
    if (!cur && !t) continue;
    jet_add2(cur ? cur : t, cur ? t : NULL, y, count);
    cur = y;
  }
}

#ifndef AE_NET_DOUBLE
/* Conv node k whose input is a fused relu: per sample, the relu's jets of
 * its three streams into the scratch, then the direct convolution of the
 * three (the very values of relu then jet_conv). */
static void jet_relu_conv(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_node *relu = &n->g->nodes[nd->inputs[0]];
  const ae_real *z = n->jet[relu->inputs[0]];
  ae_real *y = n->jet[k], *t = n->jcol;
  size_t ie = ge->in_elems, oe = ge->elems, B = (size_t)batch;
  ae_net_direct_geom dg;
  ae_net_conv_direct_geom(ge->in_h, ge->in_w, nd->kernel, &dg);
  for (size_t b = 0; b < B; b++) {
    const ae_real *z0 = z + b * ie, *z1 = z + (B + b) * ie,
                  *z2 = z + (2 * B + b) * ie;
#if AE_NET_AVX512
    if (ae_net_have_avx512())
      relu_jets_avx512(ie, z0, z1, z2, t, t + ie, t + 2 * ie);
    else
#endif
      relu_jets(ie, z0, z1, z2, t, t + ie, t + 2 * ie);
    ae_net_conv_direct_run(&dg, n->weight[k], t, ie, ge->in_c, nd->out,
                           y + b * oe, B * oe, 3);
  }
}
#endif

static void forward_jet(ae_net *n, const double *x, const double *dx,
                        const double *ddx, int batch, const unsigned char *what,
                        const jet_folds *folds) {
  for (int k = 0; k < n->g->n_nodes; k++) {
    const ae_node *nd = &n->g->nodes[k];
    switch (what[k]) {
    case JET_DEAD:
    case JET_ZERO:
    case JET_RELU_FUSED:
      continue;
    case JET_BN_FOLDED:
      jet_bn_folds(n, k, batch, folds->fold[k]);
      continue;
    case JET_ZERO_WRITE:
      memset(n->jet[k], 0,
             sizeof(ae_real) * 3 * (size_t)batch * n->geom[k].elems);
      continue;
    default:
      break;
    }
    if (ae_net_ops_handles(nd)) {
      ae_net_ops_jet(n, k, batch);
      continue;
    }
    switch (nd->op) {
    case AE_OP_INPUT: {
      size_t count = (size_t)batch * n->geom[k].elems;
      ae_real *s0 = stream(n, k, 0, batch), *s1 = stream(n, k, 1, batch),
              *s2 = stream(n, k, 2, batch);
      for (size_t e = 0; e < count; e++) {
        s0[e] = (ae_real)x[e];
        s1[e] = (ae_real)dx[e];
        s2[e] = (ae_real)ddx[e];
      }
      break;
    }
    case AE_OP_CONV:
#ifndef AE_NET_DOUBLE
      if (what[nd->inputs[0]] == JET_RELU_FUSED) {
        jet_relu_conv(n, k, batch);
        break;
      }
#endif
      jet_conv(n, k, batch);
      break;
    case AE_OP_LINEAR:
      jet_linear(n, k, batch);
      break;
    case AE_OP_BATCH_NORM:
      jet_bn(n, k, batch);
      break;
    case AE_OP_ACT:
      jet_act(n, k, batch);
      break;
    case AE_OP_ADD: {
      int folded = 0;
      for (int i = 0; i < nd->n_inputs; i++)
        folded |= what[nd->inputs[i]] == JET_BN_FOLDED;
      if (folded)
        jet_add_folded(n, k, batch, what, folds);
      else
        jet_add(n, k, batch, what);
      break;
    }
    default:
      jet_linear_op(n, k, batch);
      break;
    }
  }
}

/* folds->fold[k] for every JET_BN_FOLDED node k and the zeros, in one
 * buffer (both NULL when there is none). */
static int jet_folds_make(const ae_net *n, const unsigned char *what,
                          jet_folds *folds) {
  size_t total = 0, c_max = 0;
  int nn = n->g->n_nodes;
  for (int k = 0; k < nn; k++)
    if (what[k] == JET_BN_FOLDED) {
      size_t C = (size_t)n->geom[k].channels;
      total += 2 * C;
      if (C > c_max) c_max = C;
    }
  if (!total) return AE_OK;
  folds->fold = calloc((size_t)nn, sizeof *folds->fold);
  folds->buf = calloc(total + c_max, sizeof *folds->buf);
  if (!folds->fold || !folds->buf) {
    free(folds->fold);
    free(folds->buf);
    folds->fold = NULL;
    folds->buf = NULL;
    return AE_ENOMEM;
  }
  ae_real *at = folds->buf;
  for (int k = 0; k < nn; k++)
    if (what[k] == JET_BN_FOLDED) {
      folds->fold[k] = at;
      at += 2 * (size_t)n->geom[k].channels;
    }
  folds->zeros = at; /* calloc's +0 */
  return AE_OK;
}

void ae_net_set_jet_reference(ae_net *n, int on) {
  n->jet_reference = on != 0;
}

int ae_net_forward_jet(ae_net *n, const double *x, const double *dx,
                       const double *ddx, int batch, double *y, double *dy,
                       double *ddy) {
  if (!x || !dx || !ddx || batch < 1) return AE_EINVAL;
#ifndef AE_NET_DOUBLE
  ae_net64 *twin;
  int trc = ae_net_double_twin(n, &twin);
  if (trc) return trc;
  if (twin) {
    ae_net64_set_jet_reference(twin, n->jet_reference);
    return ae_net64_forward_jet(twin, x, dx, ddx, batch, y, dy, ddy);
  }
#endif
  int rc = plan_jets(n, batch);
  if (rc) return rc;
  unsigned char *what = malloc((size_t)n->g->n_nodes);
  if (!what) return AE_ENOMEM;
  rc = jet_plan(n, batch, what);
  jet_folds folds = {NULL, NULL, NULL};
  if (!rc) rc = jet_folds_make(n, what, &folds);
  if (rc) {
    free(what);
    return rc;
  }
  forward_jet(n, x, dx, ddx, batch, what, &folds);
  free(what);
  free(folds.fold);
  free(folds.buf);
  int o = n->g->output;
  size_t count = (size_t)batch * n->geom[o].elems;
  double *outs[3] = {y, dy, ddy};
  for (int s = 0; s < 3; s++) {
    if (!outs[s]) continue;
    const ae_real *src = stream(n, o, s, batch);
    for (size_t e = 0; e < count; e++)
      outs[s][e] = (double)src[e];
  }
  return AE_OK;
}
