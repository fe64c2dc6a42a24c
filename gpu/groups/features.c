/* features.c: the forward-feature metrics of ranking.md §1-3 (see
 * features.h): sign patterns of the piecewise-linear units (one binary
 * code per kink per unit, read from the activation's input), block output
 * entropies, channel correlations, kernel regression.  Each net-driven
 * function runs one forward pass on the caller's weights and reads the
 * outputs it needs as float64 (ae_net_activation64: the twin's own values
 * when ae_net_set_double is on), or, for the sign patterns and the
 * correlations, the float32 values in place where that gives the same
 * numbers, with its scratch allocated once per call.
 *
 * Pure functions; the ae_net passed in belongs to the calling thread. */
#include "gpu/groups/features.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/activation.h"
#include "gpu/analytic/analytic.h"
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

int ae_features_pattern_kinks(const ae_node *nd, double kinks[2]) {
  return nd->op == AE_OP_ACT ? ae_act_pattern_kinks(nd->act.fn, kinks) : 0;
}

int ae_features_is_pattern_act(const ae_node *nd) {
  double kinks[2];
  return ae_features_pattern_kinks(nd, kinks) > 0;
}

int ae_features_is_4d_node(const ae_node *nd) {
  return nd->rank == 3 && nd->op != AE_OP_INPUT && nd->op != AE_OP_ZERO &&
         nd->op != AE_OP_IDENTITY;
}

/* Per-sample elements of a node's output. */
static size_t node_elems(const ae_node *nd) {
  return nd->rank == 3 ? (size_t)nd->shape[0] * nd->shape[1] * nd->shape[2]
                       : (size_t)nd->shape[0];
}

/* The largest per-sample output among the nodes that pass keep. */
static size_t largest_output(const ae_graph *g, int (*keep)(const ae_node *)) {
  size_t most = 0;
  for (int k = 0; k < g->n_nodes; k++)
    if (keep(&g->nodes[k]) && node_elems(&g->nodes[k]) > most)
      most = node_elems(&g->nodes[k]);
  return most;
}

/* ---- pure pieces ---- */

/* The bits set in a 65536-bit bitmap (1024 words). */
static size_t bitmap_count(const uint64_t *bitmap) {
  size_t count = 0;
  for (int w = 0; w < 1024; w++)
    count += (size_t)__builtin_popcountll(bitmap[w]);
  return count;
}

size_t ae_count_distinct_u16(const uint16_t *codes, size_t n,
                             uint64_t *bitmap) {
  memset(bitmap, 0, 1024 * sizeof *bitmap);
  for (size_t i = 0; i < n; i++)
    bitmap[codes[i] >> 6] |= 1ull << (codes[i] & 63);
  return bitmap_count(bitmap);
}

/* The smallest eigenvalue of the Pearson correlation of the rows of one
 * sample (rows->rows rows of hw values, float32 or float64): each row's
 * mean (ae_cross_means), the centred sums of products C (ae_cross_sums:
 * widened and centred in registers, float64 lanes), corr[i][j] = C[i][j]
 * s[i] s[j] with s[i] = 1 / sqrt(C[i][i]), or 0 for a row of zero
 * variance (a zero row and column, as MeCo's nan_to_num: a constant
 * row's mean is exact, so its centred values and C[i][i] are exactly 0);
 * then the eigenvalue by bisection (dsterf's QL sweeps for all c were 9 %
 * of the `fast` profile's time).  work: c * c + 2 * c doubles (corr,
 * the means, s); ctl: the job's checkpoint inside the eigensolve (NULL:
 * none). */
__attribute__((optimize("fp-contract=off"))) static int
corr_lambda_min_rows(const ae_cross_rows *rows, size_t hw, double *work,
                     double *out, const ae_job_control *ctl) {
  int c = rows->rows;
  double *corr = work, *mean = work + (size_t)c * c, *s = mean + c;
  ae_cross_rows centred = *rows;
  ae_cross_means(rows, 1, hw, mean);
  centred.mean = mean;
  memset(corr, 0, (size_t)c * (size_t)c * sizeof *corr);
  int rc = ae_cross_sums(&centred, &centred, 1, hw, 1, corr, (size_t)c);
  if (rc) return rc;
  for (int i = 0; i < c; i++) {
    double ss = corr[(size_t)i * c + i];
    s[i] = ss > 0.0 ? 1.0 / sqrt(ss) : 0.0;
  }
  for (int i = 0; i < c; i++)
    for (int j = 0; j <= i; j++) {
      double v = corr[(size_t)i * c + j] * s[i] * s[j];
      corr[(size_t)i * c + j] = corr[(size_t)j * c + i] = v;
    }
  return ae_sym_eigval_min(corr, c, out, ctl);
}

/* Whether each of the c rows of x (hw values) is constant: for most
 * activations the first two values of row 0 already differ. */
static int rows_constant_f(const float *x, int c, size_t hw) {
  for (int i = 0; i < c; i++) {
    const float *row = x + (size_t)i * hw;
    for (size_t k = 1; k < hw; k++)
      if (row[k] != row[0]) return 0;
  }
  return 1;
}

static int rows_constant_d(const double *x, int c, size_t hw) {
  for (int i = 0; i < c; i++) {
    const double *row = x + (size_t)i * hw;
    for (size_t k = 1; k < hw; k++)
      if (row[k] != row[0]) return 0;
  }
  return 1;
}

/* ae_corr_lambda_min of float32 rows, bit for bit the same (each value
 * widens exactly), read in place. */
static int corr_lambda_min_f(const float *x, int c, size_t hw, double *work,
                             double *out, const ae_job_control *ctl) {
  if (rows_constant_f(x, c, hw)) {
    /* Every channel constant (all zeros after a `none` edge): every row
     * is zeroed, the correlation is the zero matrix and its eigenvalues
     * are +0 (what ae_sym_eigval_min gives for it: test_rank_features).
     * work is left as it was. */
    *out = 0.0;
    return AE_OK;
  }
  ae_cross_rows rows = {.x = x, .row = hw, .rows = c};
  return corr_lambda_min_rows(&rows, hw, work, out, ctl);
}

int ae_corr_lambda_min_f32(const float *x, int c, size_t hw, double *work,
                           double *out) {
  return corr_lambda_min_f(x, c, hw, work, out, NULL);
}

int ae_corr_lambda_min(const double *x, int c, size_t hw, double *work,
                       double *out) {
  if (rows_constant_d(x, c, hw)) {
    /* As corr_lambda_min_f: the zero matrix, whose eigenvalues are +0. */
    *out = 0.0;
    return AE_OK;
  }
  ae_cross_rows rows = {.xd = x, .row = hw, .rows = c};
  return corr_lambda_min_rows(&rows, hw, work, out, NULL);
}

/* The sum over the batch and positions of channel ch of f (batch x c x
 * hw): one float64 chain, sample by sample, position by position. */
double ae_channel_sum_ref(const double *f, int batch, int c, size_t hw,
                          int ch) {
  double sum = 0.0;
  for (int b = 0; b < batch; b++) {
    const double *p = f + ((size_t)b * c + ch) * hw;
    for (size_t k = 0; k < hw; k++)
      sum += p[k];
  }
  return sum;
}

void ae_channel_sums(const double *f, int batch, int c, size_t hw, int ch,
                     double out[4]) {
  if (ch + 4 > c) {
    for (int j = 0; j < 4 && ch + j < c; j++)
      out[j] = ae_channel_sum_ref(f, batch, c, hw, ch + j);
    return;
  }
  /* Four channels' chains interleaved: each the reference's very order. */
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  for (int b = 0; b < batch; b++) {
    const double *p = f + ((size_t)b * c + ch) * hw;
    for (size_t k = 0; k < hw; k++) {
      s0 += p[k];
      s1 += p[hw + k];
      s2 += p[2 * hw + k];
      s3 += p[3 * hw + k];
    }
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

/* The entropy of the normalised eigenvalues of cov (c x c, both
 * triangles; s: c doubles of work); NaN when its trace is not positive.
 * ctl: the job's checkpoint (NULL: none) inside the eigensolve. */
static int entropy_of_covariance(double *cov, int c, double *s, double *h,
                                 const ae_job_control *ctl) {
  double trace = 0.0;
  for (int i = 0; i < c; i++)
    trace += cov[(size_t)i * c + i];
  if (!(trace > 0.0)) {
    *h = NAN;
    return AE_OK;
  }
  int rc = ae_sym_eigvals(cov, c, s, ctl);
  if (rc) return rc;
  double sum = 0.0;
  for (int i = 0; i < c; i++) {
    if (s[i] < 0.0) s[i] = 0.0;
    sum += s[i];
  }
  double entropy = 0.0;
  for (int i = 0; i < c; i++) {
    double p = s[i] / sum;
    entropy -= p * log(p + 1e-8);
  }
  *h = entropy;
  return AE_OK;
}

/* ae_channel_entropy with the job's checkpoint (ctl, NULL: none) inside
 * the eigensolve. */
static int channel_entropy(double *f, int batch, int c, size_t hw, double *work,
                           double *h, const ae_job_control *ctl) {
  double *cov = work, *s = work + (size_t)c * c;
  double sums[4];
  double count = (double)batch * (double)hw;
  for (int ch = 0; ch < c; ch++) {
    if (ch % 4 == 0) ae_channel_sums(f, batch, c, hw, ch, sums);
    double mean = sums[ch % 4];
    mean /= count;
    for (int b = 0; b < batch; b++) {
      double *p = f + ((size_t)b * c + ch) * hw;
      for (size_t k = 0; k < hw; k++)
        p[k] -= mean;
    }
  }
  for (int b = 0; b < batch; b++)
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, c, (int)hw,
                1.0 / count, f + (size_t)b * c * hw, (int)hw, b ? 1.0 : 0.0,
                cov, c);
  for (int i = 0; i < c; i++) /* the lower triangle, for the finite check */
    for (int j = 0; j < i; j++)
      cov[(size_t)i * c + j] = cov[(size_t)j * c + i];
  return entropy_of_covariance(cov, c, s, h, ctl);
}

/* channel_entropy of the float32 net's own block output x (batch x c x
 * hw), read in place: the channel means and the centred sums of products
 * in float64 (ae_cross_means, ae_cross_sums: the rows widened
 * and centred in registers, no float64 copy of the batch).  work: c * c +
 * 2 * c doubles. */
static int channel_entropy_f32(const float *x, int batch, int c, size_t hw,
                               double *work, double *h,
                               const ae_job_control *ctl) {
  double *cov = work, *s = work + (size_t)c * c, *mean = s + c;
  ae_cross_rows rows = {.x = x, .row = hw, .sample = (size_t)c * hw, .rows = c};
  ae_cross_means(&rows, batch, hw, mean);
  rows.mean = mean;
  memset(cov, 0, (size_t)c * (size_t)c * sizeof *cov);
  int rc = ae_cross_sums(&rows, &rows, batch, hw, 1, cov, (size_t)c);
  if (rc) return rc;
  double scale = 1.0 / ((double)batch * (double)hw);
  for (int i = 0; i < c; i++)
    for (int j = 0; j <= i; j++) {
      cov[(size_t)i * c + j] *= scale;
      cov[(size_t)j * c + i] = cov[(size_t)i * c + j];
    }
  return entropy_of_covariance(cov, c, s, h, ctl);
}

int ae_channel_entropy(double *f, int batch, int c, size_t hw, double *work,
                       double *h) {
  return channel_entropy(f, batch, c, hw, work, h, NULL);
}

void ae_isotropy_progressivity(const double *h, int n, double *isotropy,
                               double *progressivity) {
  double sum = 0.0, least = INFINITY;
  for (int l = 0; l < n; l++) {
    sum += h[l];
    if (l > 0 && h[l] - h[l - 1] < least) least = h[l] - h[l - 1];
  }
  *isotropy = n > 0 ? sum : NAN;
  *progressivity = n > 1 ? least : NAN;
}

int ae_logdet_cholesky(const double *K, int n, double *logdet,
                       const ae_job_control *ctl) {
  size_t nn = (size_t)n * (size_t)n;
  for (size_t e = 0; e < nn; e++)
    if (!isfinite(K[e])) return AE_EINVAL;
  double *L = malloc(nn * sizeof *L);
  if (!L) return AE_ENOMEM;
  memcpy(L, K, nn * sizeof *L);
  int info = 0;
  int rc = ae_cholesky_lower(L, n, &info, ctl);
  if (!rc && info > 0) rc = AE_EINVAL;
  if (!rc) {
    double sum = 0.0;
    for (int i = 0; i < n; i++)
      sum += log(L[(size_t)i * n + i]);
    *logdet = 2.0 * sum;
  }
  free(L);
  return rc;
}

int ae_kernel_regression(const double *theta, int n, const int *labels,
                         int classes, double *mse, double *acc, double *jitter,
                         const ae_job_control *ctl) {
  *mse = *acc = NAN;
  *jitter = 0.0;
  int nt = 3 * n / 4, nv = n - nt;
  if (nt < 1 || nv < 1 || classes < 1) return AE_EINVAL;
  double *tt = malloc((size_t)nt * nt * sizeof *tt);
  double *y = malloc((size_t)n * classes * sizeof *y);
  double *alpha = malloc((size_t)nt * classes * sizeof *alpha);
  double *pred = malloc((size_t)nv * classes * sizeof *pred);
  int rc = AE_ENOMEM;
  if (!tt || !y || !alpha || !pred) goto done;
  for (int i = 0; i < nt; i++)
    memcpy(tt + (size_t)i * nt, theta + (size_t)i * n, nt * sizeof *tt);
  for (int i = 0; i < n; i++)
    for (int c = 0; c < classes; c++)
      y[(size_t)i * classes + c] = (labels[i] == c ? 1.0 : 0.0) - 1.0 / classes;
  rc = ae_kernel_solve(tt, nt, y, classes, alpha, jitter, ctl);
  if (rc) goto done;
  /* P = Theta_VT alpha. */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nv, classes, nt, 1.0,
              theta + (size_t)nt * n, n, alpha, classes, 0.0, pred, classes);
  double se = 0.0;
  int hits = 0;
  for (int v = 0; v < nv; v++) {
    const double *p = pred + (size_t)v * classes;
    const double *t = y + (size_t)(nt + v) * classes;
    int best = 0;
    for (int c = 0; c < classes; c++) {
      se += (p[c] - t[c]) * (p[c] - t[c]);
      if (p[c] > p[best]) best = c;
    }
    hits += best == labels[nt + v];
  }
  *mse = se / ((double)nv * classes);
  *acc = (double)hits / nv;
done:
  free(tt);
  free(y);
  free(alpha);
  free(pred);
  return rc;
}

/* ---- over a net ---- */

/* GCC's -O2 vectorises only loops that need no epilogue; this one is a
 * memory pass worth one (exact comparisons: the same codes). */
#if defined(__GNUC__) && !defined(__clang__)
#define AE_FEATURES_VECTOR_LOOPS                                               \
  __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define AE_FEATURES_VECTOR_LOOPS
#endif

/* codes[u] = sum over samples b of (in[b][u] > kink) << b, for the e
 * units of batch rows. */
AE_FEATURES_VECTOR_LOOPS static void pattern_codes(const double *restrict in,
                                                   int batch, size_t e,
                                                   double kink,
                                                   uint32_t *restrict codes) {
  for (size_t u = 0; u < e; u++)
    codes[u] = 0;
  for (int b = 0; b < batch; b++) {
    const double *row = in + (size_t)b * e;
    for (size_t u = 0; u < e; u++)
      codes[u] |= (uint32_t)(row[u] > kink) << b;
  }
}

/* pattern_codes on the float32 net's own values, for a kink a float32
 * holds (0, 6, +-3): x > kink in float32 is (double)x > kink. */
AE_FEATURES_VECTOR_LOOPS static void pattern_codes_f(const float *restrict in,
                                                     int batch, size_t e,
                                                     float kink,
                                                     uint32_t *restrict codes) {
  for (size_t u = 0; u < e; u++)
    codes[u] = 0;
  for (int b = 0; b < batch; b++) {
    const float *row = in + (size_t)b * e;
    for (size_t u = 0; u < e; u++)
      codes[u] |= (uint32_t)(row[u] > kink) << b;
  }
}

/* The input of activation nd as the float32 net's own values where they
 * serve: the float64 twin off and every kink a float32 value (x > kink in
 * float32 is then (double)x > kink).  NULL: read them widened
 * (ae_net_activation64: the twin's values, or an odd kink). */
static const float *pattern_input_f32(ae_net *net, const ae_node *nd,
                                      const double *kinks, int nk) {
  if (ae_net_double_on(net)) return NULL;
  for (int q = 0; q < nk; q++)
    if ((double)(float)kinks[q] != kinks[q]) return NULL;
  return ae_net_activation(net, nd->inputs[0]);
}

int ae_features_pattern_count(ae_net *net, const float *x, int batch,
                              size_t *distinct, size_t *units) {
  *distinct = *units = 0;
  if (batch < 1 || batch > AE_PATTERN_MAX_SAMPLES) return AE_EINVAL;
  int rc = ae_net_forward(net, x, batch, NULL);
  if (rc) return rc;
  const ae_graph *g = ae_net_graph(net);
  size_t most = largest_output(g, ae_features_is_pattern_act);
  uint64_t *bitmap = calloc(1024, sizeof *bitmap);
  double *in = malloc(((size_t)batch * most + 1) * sizeof *in);
  uint32_t *codes = malloc((most + 1) * sizeof *codes);
  if (!bitmap || !in || !codes) {
    free(bitmap);
    free(in);
    free(codes);
    return AE_ENOMEM;
  }
  size_t total = 0;
  double kinks[2];
  for (int k = 0; k < g->n_nodes && !rc; k++) {
    const ae_node *nd = &g->nodes[k];
    int nk = ae_features_pattern_kinks(nd, kinks);
    if (nk == 0) continue;
    size_t e = node_elems(nd);
    const float *own = pattern_input_f32(net, nd, kinks, nk);
    if (!own) rc = ae_net_activation64(net, nd->inputs[0], batch, in);
    for (int q = 0; q < nk && !rc; q++) {
      /* Unit u's code: bit b set when sample b is past the kink (sample
       * by sample over contiguous rows). */
      if (own)
        pattern_codes_f(own, batch, e, (float)kinks[q], codes);
      else
        pattern_codes(in, batch, e, kinks[q], codes);
      for (size_t u = 0; u < e; u++)
        bitmap[codes[u] >> 6] |= 1ull << (codes[u] & 63);
    }
    total += (size_t)nk * e;
  }
  size_t count = bitmap_count(bitmap);
  free(bitmap);
  free(in);
  free(codes);
  if (rc) return rc;
  *distinct = total ? count : 0;
  *units = total;
  return AE_OK;
}

/* row |= m << p as a bitset (bit p of row is bit p & 63 of word p >> 6):
 * the n <= 64 low bits of m, which may straddle two words. */
static inline void or_bits_at(uint64_t *row, size_t p, uint64_t m, unsigned n) {
  unsigned s = (unsigned)(p & 63);
  row[p >> 6] |= m << s;
  if (s + n > 64) row[(p >> 6) + 1] |= m >> (64 - s);
}

/* Bit at + u of row set for each of the e values with z[u] > kink (NaN
 * sets none), 64 comparisons to a word: a mask per vector of the
 * comparisons (SSE2, which every x86-64 has) or one bit at a time; no
 * branch on the values, whose signs are a coin toss. */
static void set_bits_above_f(const float *z, size_t e, float kink, size_t at,
                             uint64_t *row) {
  size_t u = 0;
  for (; u + 64 <= e; u += 64) {
    uint64_t m = 0;
#if defined(__x86_64__)
    __m128 k4 = _mm_set1_ps(kink);
    for (unsigned v = 0; v < 16; v++)
      m |= (uint64_t)_mm_movemask_ps(
               _mm_cmpgt_ps(_mm_loadu_ps(z + u + 4 * v), k4))
           << (4 * v);
#else
    for (unsigned i = 0; i < 64; i++)
      m |= (uint64_t)(z[u + i] > kink) << i;
#endif
    or_bits_at(row, at + u, m, 64);
  }
  if (u < e) {
    uint64_t m = 0;
    for (unsigned i = 0; u + i < e; i++)
      m |= (uint64_t)(z[u + i] > kink) << i;
    or_bits_at(row, at + u, m, (unsigned)(e - u));
  }
}

/* The same over float64 values (the twin's, or a kink float32 lacks). */
static void set_bits_above(const double *z, size_t e, double kink, size_t at,
                           uint64_t *row) {
  for (size_t u = 0; u < e; u += 64) {
    size_t n = e - u < 64 ? e - u : 64;
    uint64_t m = 0;
    for (unsigned i = 0; i < n; i++)
      m |= (uint64_t)(z[u + i] > kink) << i;
    or_bits_at(row, at + u, m, (unsigned)n);
  }
}

/* differ[t] = the Hamming distance between the bitsets a and rows + t *
 * words, for t < n <= 4: four rows at once read each word of a once. */
static void hamming_rows(const uint64_t *a, const uint64_t *rows, size_t words,
                         int n, size_t differ[4]) {
  if (n == 4) {
    const uint64_t *c0 = rows, *c1 = rows + words, *c2 = c1 + words,
                   *c3 = c2 + words;
    size_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    for (size_t w = 0; w < words; w++) {
      uint64_t x = a[w];
      d0 += (size_t)__builtin_popcountll(x ^ c0[w]);
      d1 += (size_t)__builtin_popcountll(x ^ c1[w]);
      d2 += (size_t)__builtin_popcountll(x ^ c2[w]);
      d3 += (size_t)__builtin_popcountll(x ^ c3[w]);
    }
    differ[0] = d0, differ[1] = d1, differ[2] = d2, differ[3] = d3;
    return;
  }
  for (int t = 0; t < n; t++) {
    const uint64_t *c = rows + (size_t)t * words;
    size_t d = 0;
    for (size_t w = 0; w < words; w++)
      d += (size_t)__builtin_popcountll(a[w] ^ c[w]);
    differ[t] = d;
  }
}

/* ae_features_pattern_kernel after the caller's forward of the batch;
 * the job's checkpoint (ctl, NULL: none) passed before every row of K. */
static int pattern_kernel_of_forward(ae_net *net, int batch, double *K,
                                     size_t *units, const ae_job_control *ctl) {
  *units = 0;
  int rc = AE_OK;
  const ae_graph *g = ae_net_graph(net);
  size_t total = 0;
  double kinks[2];
  for (int k = 0; k < g->n_nodes; k++)
    total += (size_t)ae_features_pattern_kinks(&g->nodes[k], kinks) *
             node_elems(&g->nodes[k]);
  size_t words = (total + 63) / 64;
  size_t most = largest_output(g, ae_features_is_pattern_act);
  uint64_t *bits = calloc((size_t)batch * words + 1, sizeof *bits);
  double *in = malloc(((size_t)batch * most + 1) * sizeof *in);
  if (!bits || !in) {
    free(bits);
    free(in);
    return AE_ENOMEM;
  }
  size_t bit = 0;
  for (int k = 0; k < g->n_nodes && !rc; k++) {
    const ae_node *nd = &g->nodes[k];
    int nk = ae_features_pattern_kinks(nd, kinks);
    if (nk == 0) continue;
    size_t e = node_elems(nd);
    const float *own = pattern_input_f32(net, nd, kinks, nk);
    if (!own) rc = ae_net_activation64(net, nd->inputs[0], batch, in);
    for (int q = 0; q < nk && !rc; q++, bit += e)
      for (int b = 0; b < batch; b++) {
        uint64_t *row = bits + (size_t)b * words;
        if (own)
          set_bits_above_f(own + (size_t)b * e, e, (float)kinks[q], bit, row);
        else
          set_bits_above(in + (size_t)b * e, e, kinks[q], bit, row);
      }
  }
  /* Agreements = units - Hamming distance (padding bits are 0 in both). */
  for (int i = 0; i < batch && !rc; i++) {
    rc = ae_job_checkpoint(ctl);
    if (rc) break;
    K[(size_t)i * batch + i] = (double)total;
    const uint64_t *a = bits + (size_t)i * words;
    for (int j = 0; j < i; j += 4) {
      int n = i - j < 4 ? i - j : 4;
      size_t differ[4];
      hamming_rows(a, bits + (size_t)j * words, words, n, differ);
      for (int t = 0; t < n; t++)
        K[(size_t)i * batch + j + t] = K[(size_t)(j + t) * batch + i] =
            (double)(total - differ[t]);
    }
  }
  free(bits);
  free(in);
  if (rc) return rc;
  *units = total;
  return AE_OK;
}

int ae_features_pattern_kernel(ae_net *net, const float *x, int batch,
                               double *K, size_t *units) {
  *units = 0;
  int rc = ae_net_forward(net, x, batch, NULL);
  if (rc) return rc;
  return pattern_kernel_of_forward(net, batch, K, units, NULL);
}

/* ae_features_block_entropies after the caller's forward of the batch;
 * ctl: the job's checkpoint (NULL: none), passed in each eigensolve. */
static int block_entropies_of_forward(ae_net *net, int batch, const int *blocks,
                                      int n_blocks, double *h,
                                      const ae_job_control *ctl) {
  int rc;
  const ae_graph *g = ae_net_graph(net);
  size_t most = 0, most_c = 0;
  for (int l = 0; l < n_blocks; l++) {
    if (blocks[l] < 0 || blocks[l] >= g->n_nodes) return AE_EINVAL;
    const ae_node *nd = &g->nodes[blocks[l]];
    size_t e = node_elems(nd);
    if (e > most) most = e;
    if ((size_t)nd->shape[0] > most_c) most_c = (size_t)nd->shape[0];
  }
  /* The float32 net's outputs are read in place; the float64 twin's are
   * copied out. */
  int own = !ae_net_double_on(net);
  double *f = own ? NULL : malloc(((size_t)batch * most + 1) * sizeof *f);
  double *work = malloc((most_c * most_c + 2 * most_c + 1) * sizeof *work);
  rc = (own || f) && work ? AE_OK : AE_ENOMEM;
  for (int l = 0; l < n_blocks && !rc; l++) {
    const ae_node *nd = &g->nodes[blocks[l]];
    size_t hw = node_elems(nd) / (size_t)nd->shape[0];
    int c = nd->shape[0];
    if (own) {
      rc = channel_entropy_f32(ae_net_activation(net, blocks[l]), batch, c, hw,
                               work, &h[l], ctl);
      continue;
    }
    rc = ae_net_activation64(net, blocks[l], batch, f);
    if (!rc) rc = channel_entropy(f, batch, c, hw, work, &h[l], ctl);
  }
  free(f);
  free(work);
  return rc;
}

int ae_features_block_entropies(ae_net *net, const float *x, int batch,
                                const int *blocks, int n_blocks, double *h) {
  int rc = ae_net_forward(net, x, batch, NULL);
  if (rc) return rc;
  return block_entropies_of_forward(net, batch, blocks, n_blocks, h, NULL);
}

/* A node's activation already seen: the first node with those bits. */
typedef struct {
  uint64_t signature;
  int node;
  double lambda_min;
} corr_seen;

/* A cheap signature of an activation: its length and 16 sampled values.
 * Equal bits give equal signatures; a match is confirmed with memcmp. */
static uint64_t activation_signature(const float *a, size_t e) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ e;
  for (size_t q = 0; q < 16; q++) {
    uint32_t bits;
    memcpy(&bits, &a[q * e / 16], sizeof bits);
    h = (h ^ bits) * 0x100000001b3ull;
  }
  return h;
}

/* Whether all e values of a are finite. */
static int all_finite_f(const float *a, size_t e) {
  for (size_t i = 0; i < e; i++)
    if (!isfinite(a[i])) return 0;
  return 1;
}

/* ae_features_corr_lambda_min on a float32 net (ae_net_set_double off)
 * after its forward of one sample: the activations read in place.  Three
 * nodes' lambda_min are known without an eigensolve, each an identity of
 * the exact arithmetic (the reference, ae_features_corr_lambda_min,
 * computes every node; the two agree within float32's rounding of the
 * activations, test_rank_features):
 * - a node with no more positions than channels (h * w <= c: NB201's
 *   last stage, 64 channels over 8 x 8): its centred rows lie in the
 *   (h w - 1)-dimensional space orthogonal to the ones, so the
 *   correlation is singular and lambda_min is 0 (what an eigensolver
 *   returns there is round-off, up to about 1e-15); taken only when
 *   every value is finite, else the computation says why not;
 * - a BN node that maps each channel by y = s x + t with s != 0
 *   (ae_net_bn_rescales_channels): the Pearson correlations of y are
 *   those of x up to the signs of s, a similarity D R D with D = diag(+-1),
 *   so it has its input's lambda_min when that was computed here;
 * - a node whose activation has the bits of an earlier node's of the same
 *   shape (the ReLUs of one input on several edges, the zeros after `none`
 *   edges: about a third of the nodes of an NB201 network) has that
 *   node's lambda_min.
 * ctl: the job's checkpoint (NULL: none), passed in each eigensolve. */
static int corr_lambda_min_sum_f(ae_net *net, double *sum, int *nodes,
                                 const ae_job_control *ctl) {
  const ae_graph *g = ae_net_graph(net);
  size_t most = 0;
  for (int k = 0; k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    if (!ae_features_is_4d_node(nd)) continue;
    size_t c = (size_t)nd->shape[0], need = node_elems(nd) + c * c + c;
    if (need > most) most = need;
  }
  double *work = malloc((most + 1) * sizeof *work);
  corr_seen *seen = malloc(((size_t)g->n_nodes + 1) * sizeof *seen);
  double *known = malloc(((size_t)g->n_nodes + 1) * sizeof *known);
  if (!work || !seen || !known) {
    free(work);
    free(seen);
    free(known);
    return AE_ENOMEM;
  }
  size_t n_seen = 0;
  double total = 0.0;
  int counted = 0, rc = AE_OK;
  for (int k = 0; k < g->n_nodes && !rc; k++) {
    const ae_node *nd = &g->nodes[k];
    known[k] = NAN; /* this node's lambda_min, once this call has it */
    if (!ae_features_is_4d_node(nd)) continue;
    size_t e = node_elems(nd), hw = e / (size_t)nd->shape[0];
    int c = nd->shape[0];
    const float *a = ae_net_activation(net, k);
    double v = 0.0;
    int from = nd->op == AE_OP_BATCH_NORM ? nd->inputs[0] : -1;
    if (from >= 0 && from < k && !isnan(known[from]) &&
        ae_net_bn_rescales_channels(net, k)) {
      v = known[from];
    } else if (hw <= (size_t)c && all_finite_f(a, e)) {
      v = 0.0;
    } else {
      uint64_t signature = activation_signature(a, e);
      const corr_seen *same = NULL;
      for (size_t i = 0; i < n_seen && !same; i++) {
        const ae_node *other = &g->nodes[seen[i].node];
        if (seen[i].signature == signature && other->shape[0] == c &&
            node_elems(other) == e &&
            !memcmp(ae_net_activation(net, seen[i].node), a, e * sizeof *a))
          same = &seen[i];
      }
      if (same) {
        v = same->lambda_min;
      } else {
        rc = corr_lambda_min_f(a, c, hw, work, &v, ctl);
        seen[n_seen++] = (corr_seen){signature, k, v};
      }
    }
    if (!rc) known[k] = v;
    total += v;
    counted++;
  }
  free(work);
  free(seen);
  free(known);
  if (rc) return rc;
  *sum = total;
  *nodes = counted;
  return AE_OK;
}

int ae_features_corr_lambda_min_fast(ae_net *net, const float *x, double *sum,
                                     int *nodes) {
  *sum = 0.0;
  *nodes = 0;
  int rc = ae_net_forward(net, x, 1, NULL);
  if (rc) return rc;
  return corr_lambda_min_sum_f(net, sum, nodes, NULL);
}

int ae_features_corr_lambda_min(ae_net *net, const float *x, double *sum,
                                int *nodes) {
  *sum = 0.0;
  *nodes = 0;
  int rc = ae_net_forward(net, x, 1, NULL);
  if (rc) return rc;
  const ae_graph *g = ae_net_graph(net);
  size_t most = 0;
  for (int k = 0; k < g->n_nodes; k++) {
    const ae_node *nd = &g->nodes[k];
    if (!ae_features_is_4d_node(nd)) continue;
    size_t c = (size_t)nd->shape[0], need = 2 * node_elems(nd) + c * c + c;
    if (need > most) most = need;
  }
  double *work = malloc((most + 1) * sizeof *work);
  if (!work) return AE_ENOMEM;
  double total = 0.0;
  int counted = 0;
  for (int k = 0; k < g->n_nodes && !rc; k++) {
    const ae_node *nd = &g->nodes[k];
    if (!ae_features_is_4d_node(nd)) continue;
    size_t e = node_elems(nd);
    int c = nd->shape[0];
    double v = 0.0;
    rc = ae_net_activation64(net, k, 1, work);
    if (!rc) rc = ae_corr_lambda_min(work, c, e / (size_t)c, work + e, &v);
    total += v;
    counted++;
  }
  free(work);
  if (rc) return rc;
  *sum = total;
  *nodes = counted;
  return AE_OK;
}

/* ---- the job's glue ---- */

/* The weights of draw `stream` with the request's scheme. */
static void draw_weights(const ae_job_state *job, ae_net *net,
                         uint32_t stream) {
  ae_net_init_weights_scheme(net, job->req->seed, stream,
                             job->req->settings.init);
}

/* The probe network of ranking.md §0 for nb201 (a refusal becomes err). */
static int lower_ranking_probe(const ae_request *r, ae_graph *probe,
                               ae_error *err) {
  ae_lower_opts o;
  memset(&o, 0, sizeof o);
  o.probe = AE_PROBE_RANKING;
  o.num_classes = r->net.num_classes;
  memcpy(o.input_shape, r->data.input_shape, sizeof o.input_shape);
  o.input_rank = r->data.input_rank;
  ae_limits lim;
  ae_limits_default(&lim);
  lim.max_working_set_bytes = 0;
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_arch_lower(&r->arch, &o, &lim, "/architecture", probe, &p);
  if (rc) {
    const ae_field_error *fe = p.n_errors ? &p.errors[0] : NULL;
    const char *why = fe && fe->detail ? fe->detail : p.detail;
    ae_error_set(err, rc, fe ? fe->pointer : NULL, "%s",
                 why ? why : ae_strerror(rc));
  }
  ae_problem_clear(&p);
  return rc;
}

/* expressivity.activation_patterns: on the probe (nb201) or the network,
 * the first min(16, N) samples, one forward per weight draw. */
static int activation_patterns(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  const ae_request *r = job->req;
  int batch = job->batch.n < AE_PATTERN_MAX_SAMPLES ? job->batch.n
                                                    : AE_PATTERN_MAX_SAMPLES;
  int repeats = r->settings.ap_repeats;
  ae_graph probe;
  memset(&probe, 0, sizeof probe);
  ae_net *net = NULL, *own = NULL;
  int rc;
  if (r->arch.type == AE_ARCH_NB201) {
    rc = lower_ranking_probe(r, &probe, err);
    if (!rc) rc = ae_net_create(&probe, batch, &own);
    net = own;
  } else {
    rc = ae_job_host_net(job, &net, err);
  }
  double sum = 0.0;
  size_t units = 0;
  for (int rep = 0; rep < repeats && !rc; rep++) {
    draw_weights(job, net, (uint32_t)rep);
    size_t distinct = 0;
    rc = ae_features_pattern_count(net, job->batch.x_net, batch, &distinct,
                                   &units);
    sum += (double)distinct;
    if (!rc) rc = ae_job_checkpoint(job->ctl);
  }
  ae_net_destroy(own);
  ae_graph_free(&probe);
  if (rc) return rc;
  if (units == 0) {
    ae_scorecard_warn(sc, "expressivity.activation_patterns: the network has "
                          "no piecewise-linear units");
    return AE_OK;
  }
  double mean = sum / repeats;
  double cap = (double)(1u << batch);
  if ((double)units < cap) cap = (double)units;
  sc->expressivity.activation_patterns = mean;
  sc->expressivity.activation_patterns_units = (double)units;
  sc->expressivity.activation_patterns_saturated = mean > 0.9 * cap;
  if (mean > 0.9 * cap)
    ae_scorecard_warn(sc,
                      "expressivity.activation_patterns: saturated (%.1f "
                      "distinct patterns of at most %.0f)",
                      mean, cap);
  return AE_OK;
}

/* expressivity.pattern_kernel_logdet: the full network on the batch. */
static int pattern_kernel_logdet(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  int n = job->batch.n;
  ae_net *net = NULL;
  int rc;
  double *K = malloc((size_t)n * n * sizeof *K);
  if (!K) return AE_ENOMEM;
  size_t units = 0;
  rc = ae_job_host_forward(job, AE_JOB_INPUT_BATCH, &net, err);
  if (!rc) rc = pattern_kernel_of_forward(net, n, K, &units, job->ctl);
  double logdet = NAN;
  if (!rc && units == 0) {
    ae_scorecard_warn(sc, "expressivity.pattern_kernel_logdet: the network "
                          "has no piecewise-linear units");
  } else if (!rc) {
    rc = ae_logdet_cholesky(K, n, &logdet, job->ctl);
    if (!rc || rc == AE_EINVAL) {
      int crc = ae_job_checkpoint(job->ctl);
      if (crc) rc = crc;
    }
    if (rc == AE_EINVAL) {
      rc = AE_OK;
      ae_scorecard_warn(sc, "expressivity.pattern_kernel_logdet: the "
                            "pattern kernel is singular (two samples with "
                            "the same pattern)");
    } else if (!rc && !isfinite(logdet)) {
      ae_scorecard_warn(sc, "expressivity.pattern_kernel_logdet: not finite");
      logdet = NAN;
    }
  }
  free(K);
  if (!rc) sc->expressivity.pattern_kernel_logdet = logdet;
  return rc;
}

/* expressivity.feature_isotropy and _progressivity: block outputs on the
 * Gaussian inputs. */
static int feature_isotropy(ae_job_state *job, ae_error *err) {
  ae_scorecard *sc = job->sc;
  int *blocks = NULL, n_blocks = 0;
  int rc = ae_graph_block_outputs(&job->req->net, &blocks, &n_blocks);
  if (rc) return rc;
  if (n_blocks == 0) {
    ae_scorecard_warn(sc, "expressivity.feature_isotropy: the network has "
                          "no block outputs");
    ae_scorecard_warn(sc, "expressivity.feature_progressivity: no block "
                          "outputs");
    return AE_OK;
  }
  ae_net *net = NULL;
  double *h = malloc((size_t)n_blocks * sizeof *h);
  rc = h ? AE_OK : AE_ENOMEM;
  if (!rc) rc = ae_job_host_forward(job, AE_JOB_INPUT_GAUSS, &net, err);
  if (!rc)
    rc = block_entropies_of_forward(net, job->batch.n, blocks, n_blocks, h,
                                    job->ctl);
  if (!rc) {
    int zero = -1;
    for (int l = 0; l < n_blocks && zero < 0; l++)
      if (!isfinite(h[l])) zero = l;
    if (zero >= 0) {
      const ae_node *nd = &job->req->net.nodes[blocks[zero]];
      ae_scorecard_warn(sc,
                        "expressivity.feature_isotropy: block output %d "
                        "(\"%s\") has zero covariance",
                        zero, nd->name ? nd->name : "?");
      ae_scorecard_warn(sc, "expressivity.feature_progressivity: a block "
                            "output has zero covariance");
    } else {
      double iso, prog;
      ae_isotropy_progressivity(h, n_blocks, &iso, &prog);
      sc->expressivity.feature_isotropy = iso;
      sc->expressivity.feature_progressivity = prog;
      if (n_blocks < 2)
        ae_scorecard_warn(sc, "expressivity.feature_progressivity: needs two "
                              "block outputs");
    }
  }
  free(h);
  free(blocks);
  return rc;
}

int ae_features_expressivity(ae_job_state *job, ae_error *err) {
  int rc = AE_OK;
  if (ae_job_wants(job, AE_M_ACTIVATION_PATTERNS))
    rc = activation_patterns(job, err);
  if (!rc) rc = ae_job_checkpoint(job->ctl);
  if (!rc && ae_job_wants(job, AE_M_PATTERN_KERNEL_LOGDET))
    rc = pattern_kernel_logdet(job, err);
  if (!rc) rc = ae_job_checkpoint(job->ctl);
  if (!rc && ae_job_wants(job, AE_M_FEATURE_ISOTROPY))
    rc = feature_isotropy(job, err);
  return rc;
}

int ae_features_convergence(ae_job_state *job, ae_error *err) {
  if (!ae_job_wants(job, AE_M_FEATURE_CORR_LAMBDA_MIN)) return AE_OK;
  ae_scorecard *sc = job->sc;
  int samples = job->req->settings.fc_samples;
  if (samples > job->batch.n) samples = job->batch.n;
  /* One sample at a time (BN statistics of that sample alone), on a net of
   * its own planned for one sample: its buffers are 1/N of the job's, and
   * the job's net keeps its shared forward (ae_job_host_forward). */
  (void)err;
  ae_net *net = NULL;
  int rc = ae_net_create(&job->req->net, 1, &net);
  if (rc) return rc;
  draw_weights(job, net, 0);
  double first = NAN, sum = 0.0;
  int nodes = 0;
  for (int i = 0; i < samples && !rc; i++) {
    double v = 0.0;
    rc = ae_net_forward(net, job->batch.x_net + (size_t)i * job->batch.dim, 1,
                        NULL);
    if (!rc) rc = corr_lambda_min_sum_f(net, &v, &nodes, job->ctl);
    if (i == 0) first = v;
    sum += v;
    if (!rc) rc = ae_job_checkpoint(job->ctl);
  }
  ae_net_destroy(net);
  if (rc) return rc;
  if (nodes == 0) {
    ae_scorecard_warn(sc, "convergence.feature_corr_lambda_min: the network "
                          "has no 4-D (channels x height x width) nodes");
    return AE_OK;
  }
  sc->convergence.feature_corr_lambda_min = first;
  sc->convergence.feature_corr_lambda_min_mean = sum / samples;
  return AE_OK;
}

int ae_features_generalization(ae_job_state *job, ae_error *err) {
  if (!ae_job_wants(job, AE_M_KERNEL_REGRESSION_VAL_MSE)) return AE_OK;
  ae_scorecard *sc = job->sc;
  if (!job->batch.labels) {
    ae_scorecard_warn(sc, "generalization.kernel_regression_val_mse: needs "
                          "dataset labels (the batch has random labels)");
    ae_scorecard_warn(sc, "generalization.kernel_regression_val_acc: needs "
                          "dataset labels");
    return AE_OK;
  }
  int rc = ae_job_theta(job, err);
  if (rc) return rc;
  double mse, acc, jitter;
  rc = ae_kernel_regression(job->theta, job->batch.n, job->batch.labels,
                            job->batch.num_classes, &mse, &acc, &jitter,
                            job->ctl);
  if (rc == AE_EINVAL) {
    ae_scorecard_warn(sc, "generalization.kernel_regression_val_mse: %s",
                      job->batch.n < 2
                          ? "needs at least two samples"
                          : "the training block of the NTK stays indefinite "
                            "with the largest jitter");
    ae_scorecard_warn(sc, "generalization.kernel_regression_val_acc: no "
                          "kernel regression");
    return AE_OK;
  }
  if (rc) return rc;
  if (jitter != 0.0)
    ae_scorecard_warn(sc,
                      "generalization.kernel_regression_val_mse: jitter "
                      "%.3g added to the NTK's training block",
                      jitter);
  if (!isfinite(mse)) {
    ae_scorecard_warn(sc, "generalization.kernel_regression_val_mse: not "
                          "finite");
    mse = NAN;
  }
  sc->generalization.kernel_regression_val_mse = mse;
  sc->generalization.kernel_regression_val_acc = acc;
  return AE_OK;
}
