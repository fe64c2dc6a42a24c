/* gradients.c: the gradient-based ranking metrics over a host net (see
 * gradients.h): AZ-NAS trainability, SynFlow, grad_norm, SNIP, NASWOT's
 * jacob_cov and ZiCo, each as its paper's code defines it (the choices
 * are those of tests/ref/torch_ranking.py's header).  Every buffer is
 * allocated by the call that needs it and freed before it returns.
 *
 * No state: runs on the thread that owns the net. */
#include "gpu/groups/gradients.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/philox.h"

/* Per-sample elements of node k's output. */
static size_t node_elems(const ae_node *nd) {
  if (nd->rank == 3)
    return (size_t)nd->shape[0] * (size_t)nd->shape[1] * (size_t)nd->shape[2];
  return (size_t)nd->shape[0];
}

/* C, H, W of node k's output (rank 1: C x 1 x 1). */
static void node_chw(const ae_node *nd, int *c, int *h, int *w) {
  *c = nd->shape[0];
  *h = nd->rank == 3 ? nd->shape[1] : 1;
  *w = nd->rank == 3 ? nd->shape[2] : 1;
}

static double trainability_score(double sigma) {
  return -sigma - 1.0 / (sigma + 1e-6) + 2.0;
}

/* sigma_max of M (rows x cols, row-major, overwritten), by LAPACKE
 * dgesvd without singular vectors.  0, AE_ENOMEM or AE_EINTERNAL. */
static int largest_singular_value(double *m, int rows, int cols,
                                  double *sigma) {
  int k = rows < cols ? rows : cols;
  double *s = malloc(2 * (size_t)k * sizeof *s);
  if (!s) return AE_ENOMEM;
  double dummy = 0.0;
  lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', rows, cols, m,
                                   cols, s, &dummy, 1, &dummy, 1, s + k);
  *sigma = s[0];
  free(s);
  return info == 0 ? AE_OK : AE_EINTERNAL;
}

/* One sample's g_in (cin x hin x win elements of `size` bytes: float64
 * or float32) pixel-unshuffled by r into buf (cin * r * r rows of h * w):
 * channel c*r*r + i*r + j at (y, x) is g_in[c][y*r + i][x*r + j],
 * PyTorch's order. */
static void unshuffle(const void *g, size_t size, int cin, int hin, int win,
                      int h, int w, int r, void *buf) {
  const unsigned char *src = g;
  unsigned char *dst = buf;
  size_t hw = (size_t)h * (size_t)w;
  for (int c = 0; c < cin; c++)
    for (int i = 0; i < r; i++)
      for (int j = 0; j < r; j++)
        for (int y = 0; y < h; y++)
          for (int x = 0; x < w; x++)
            memcpy(dst + (((size_t)(c * r * r + i * r + j)) * hw +
                          (size_t)y * w + x) *
                             size,
                   src + ((size_t)c * hin * win + (size_t)(y * r + i) * win +
                          (size_t)(x * r + j)) *
                             size,
                   size);
}

/* M (cin * r * r x cout) = sum over samples and F_l's positions of
 * unshuffle(g_in) g_out^T / (B h w), in float64.  The inputs are float64
 * (g_in, g_out: the float64 twin's; one dgemm per sample) or float32
 * (g_in_f, g_out_f: the float32 net's, read in place, or one sample at a
 * time unshuffled, by ae_cross_sums: widened in registers);
 * g_in_f NULL: zeros. */
static int pair_matrix(const double *g_in, const float *g_in_f, int cin,
                       int hin, int win, const double *g_out,
                       const float *g_out_f, int cout, int h, int w, int r,
                       int batch, double *m) {
  int ci = cin * r * r;
  size_t hw = (size_t)h * (size_t)w, in_elems = (size_t)cin * hin * win;
  memset(m, 0, (size_t)ci * (size_t)cout * sizeof *m);
  if (!g_in) {
    if (!g_in_f) return AE_OK; /* zeros: M = 0 */
    ae_cross_rows go = {
        .x = g_out_f, .row = hw, .sample = (size_t)cout * hw, .rows = cout};
    if (r == 1) {
      ae_cross_rows gi = {
          .x = g_in_f, .row = hw, .sample = in_elems, .rows = ci};
      int rc = ae_cross_sums(&gi, &go, batch, hw, 0, m, (size_t)cout);
      if (rc) return rc;
    } else {
      /* The batch unshuffled (as large as g_in), then one call: the
       * lanes run on through the samples. */
      float *un = malloc((size_t)batch * in_elems * sizeof *un);
      if (!un) return AE_ENOMEM;
      for (int b = 0; b < batch; b++)
        unshuffle(g_in_f + (size_t)b * in_elems, sizeof *un, cin, hin, win, h,
                  w, r, un + (size_t)b * in_elems);
      ae_cross_rows gi = {.x = un, .row = hw, .sample = in_elems, .rows = ci};
      int rc = ae_cross_sums(&gi, &go, batch, hw, 0, m, (size_t)cout);
      free(un);
      if (rc) return rc;
    }
  } else {
    double *un = r > 1 ? malloc(in_elems * sizeof *un) : NULL;
    if (r > 1 && !un) return AE_ENOMEM;
    for (int b = 0; b < batch; b++) {
      const double *gi = g_in + (size_t)b * in_elems;
      if (r > 1) {
        unshuffle(gi, sizeof *un, cin, hin, win, h, w, r, un);
        gi = un;
      }
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ci, cout, (int)hw,
                  1.0, gi, (int)hw, g_out + (size_t)b * (size_t)cout * hw,
                  (int)hw, 1.0, m, cout);
    }
    free(un);
  }
  double scale = 1.0 / ((double)batch * (double)hw);
  for (size_t e = 0; e < (size_t)ci * (size_t)cout; e++)
    m[e] *= scale;
  return AE_OK;
}

int ae_jacobian_trainability(ae_net *n, const float *x, int batch,
                             const int *blocks, int n_blocks, uint64_t seed,
                             const ae_graph *named, double *out, char *why,
                             size_t why_len) {
  *out = NAN;
  int rc = ae_net_forward64(n, x, batch, NULL);
  if (rc) return rc;
  return ae_jacobian_trainability_of_forward(n, batch, blocks, n_blocks, seed,
                                             named, out, why, why_len);
}

int ae_jacobian_trainability_of_forward(ae_net *n, int batch, const int *blocks,
                                        int n_blocks, uint64_t seed,
                                        const ae_graph *named, double *out,
                                        char *why, size_t why_len) {
  *out = NAN;
  const ae_graph *g = ae_net_graph(n);
  if (n_blocks < 2) {
    snprintf(why, why_len, "needs two block outputs (the network has %d)",
             n_blocks);
    return AE_OK;
  }
  for (int l = 1; l < n_blocks; l++)
    if (blocks[l] <= blocks[l - 1] || blocks[l] >= g->n_nodes ||
        blocks[l - 1] < 0)
      return AE_EINVAL;
  /* The pairs' buffers, at the largest pair's sizes, once. */
  size_t most_out = 0, most_in = 0, most_m = 0;
  for (int l = 1; l < n_blocks; l++) {
    const ae_node *fi = &g->nodes[blocks[l - 1]], *fo = &g->nodes[blocks[l]];
    size_t eo = node_elems(fo), ei = node_elems(fi);
    size_t mm = ei / (size_t)(fo->rank == 3 ? fo->shape[1] * fo->shape[2] : 1) *
                (size_t)fo->shape[0];
    if (eo > most_out) most_out = eo;
    if (ei > most_in) most_in = ei;
    if (mm > most_m) most_m = mm;
  }
  /* The float32 net's signs and gradients stay float32 (the twin's are
   * float64): no float64 copy of either through memory. */
  int f32 = !ae_net_double_on(n);
  ae_net_grad *gr = NULL;
  double *g_out = NULL, *g_in = NULL;
  float *g_out_f = NULL;
  if (f32) {
    g_out_f = malloc(((size_t)batch * most_out + 1) * sizeof *g_out_f);
  } else {
    g_out = malloc(((size_t)batch * most_out + 1) * sizeof *g_out);
    g_in = malloc(((size_t)batch * most_in + 1) * sizeof *g_in);
  }
  double *m = malloc((most_m + 1) * sizeof *m);
  int rc = (f32 ? !g_out_f : !g_out || !g_in) || !m ? AE_ENOMEM : AE_OK;
  if (!rc) rc = ae_net_grad_create(n, &gr);
  if (!rc) ae_net_grad_skip_params(gr, 1);
  double sum = 0.0;
  int identity_block = -1;
  for (int l = 1; l < n_blocks && !rc; l++) {
    const ae_node *fi = &g->nodes[blocks[l - 1]], *fo = &g->nodes[blocks[l]];
    int cin, hin, win, cout, h, w;
    node_chw(fi, &cin, &hin, &win);
    node_chw(fo, &cout, &h, &w);
    int r = h > 0 ? hin / h : 0;
    if (r < 1 || hin != r * h || win != r * w) {
      snprintf(why, why_len,
               "block %d (node %d) is %dx%d after %dx%d: no pixel-unshuffle "
               "matches",
               l, blocks[l], h, w, hin, win);
      goto done;
    }
    size_t n_out = (size_t)batch * node_elems(fo);
    size_t n_in = (size_t)batch * node_elems(fi);
    const float *g_in_f = NULL;
    if (f32) {
      rc = ae_rademacher_fill_kept_f32(seed, AE_TID_RADEMACHER, (uint32_t)l,
                                       n_out, g_out_f);
      if (!rc)
        rc = ae_net_backward_f32(n, gr, batch, blocks[l], g_out_f,
                                 blocks[l - 1]);
      if (!rc) rc = ae_net_grad_node_f32(gr, blocks[l - 1], &g_in_f);
    } else {
      ae_rademacher_fill_kept(seed, AE_TID_RADEMACHER, (uint32_t)l, n_out,
                              g_out);
      rc = ae_net_backward(n, gr, batch, blocks[l], g_out, blocks[l - 1]);
      if (!rc) rc = ae_net_grad_node(gr, blocks[l - 1], g_in);
    }
    if (rc) break;
    /* (Equal float32 values convert to equal float64 ones and back: the
     * two comparisons agree.  A gradient of zeros never equals signs.) */
    int identity =
        n_in == n_out &&
        (f32 ? g_in_f && memcmp(g_in_f, g_out_f, n_in * sizeof *g_in_f) == 0
             : memcmp(g_in, g_out, n_in * sizeof *g_in) == 0);
    if (identity) {
      if (identity_block < 0) identity_block = l;
      continue;
    }
    rc = pair_matrix(g_in, g_in_f, cin, hin, win, g_out, g_out_f, cout, h, w, r,
                     batch, m);
    double sigma = 0.0;
    if (!rc) rc = largest_singular_value(m, cin * r * r, cout, &sigma);
    if (!rc) sum += trainability_score(sigma);
  }
  if (!rc) {
    if (identity_block > 0) {
      int k = blocks[identity_block];
      const char *name =
          named && k < named->n_nodes ? named->nodes[k].name : NULL;
      snprintf(why, why_len,
               "block %d (node %d%s%s) is an identity of the previous one "
               "(score -inf)",
               identity_block, k, name ? ", " : "", name ? name : "");
    } else {
      *out = sum / (double)(n_blocks - 1);
    }
  }
done:
  free(g_out);
  free(g_in);
  free(g_out_f);
  free(m);
  ae_net_grad_destroy(gr);
  return rc;
}

/* ---- synflow ---- */

/* The BN-free copy of n with |parameters|, in float64. */
static int synflow_net(ae_net *n, ae_graph *copy, ae_net **out) {
  *out = NULL;
  int rc = ae_graph_copy(ae_net_graph(n), copy);
  if (rc) return rc;
  for (int k = 0; k < copy->n_nodes; k++)
    if (copy->nodes[k].op == AE_OP_BATCH_NORM)
      copy->nodes[k].op = AE_OP_IDENTITY;
  ae_net *s = NULL;
  rc = ae_net_create(copy, 1, &s);
  if (rc) return rc;
  static const ae_net_param_kind kinds[] = {AE_NET_WEIGHT, AE_NET_BIAS};
  for (int k = 0; k < copy->n_nodes; k++)
    for (int q = 0; q < 2; q++) {
      size_t cs, cn;
      const float *src = ae_net_param(n, k, kinds[q], &cs);
      float *dst = ae_net_param(s, k, kinds[q], &cn);
      if (!src || !dst) continue;
      if (cs != cn) {
        ae_net_destroy(s);
        return AE_EINTERNAL;
      }
      for (size_t e = 0; e < cs; e++)
        dst[e] = fabsf(src[e]);
    }
  rc = ae_net_set_double(s, 1);
  if (rc) {
    ae_net_destroy(s);
    return rc;
  }
  *out = s;
  return AE_OK;
}

int ae_synflow(ae_net *n, double *out) {
  *out = NAN;
  ae_graph copy;
  memset(&copy, 0, sizeof copy);
  ae_net *s = NULL;
  ae_net_grad *gr = NULL;
  float *x = NULL;
  double *seed = NULL, *dw = NULL;
  int rc = synflow_net(n, &copy, &s);
  if (rc) goto done;
  const ae_graph *g = ae_net_graph(s);
  size_t dim = node_elems(&g->nodes[0]);
  size_t classes = node_elems(&g->nodes[g->output]);
  x = malloc(dim * sizeof *x);
  seed = malloc(classes * sizeof *seed);
  if (!x || !seed) {
    rc = AE_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < dim; i++)
    x[i] = 1.0f;
  for (size_t i = 0; i < classes; i++)
    seed[i] = 1.0;
  rc = ae_net_grad_create(s, &gr);
  if (!rc) rc = ae_net_forward64(s, x, 1, NULL);
  if (!rc) rc = ae_net_backward(s, gr, 1, g->output, seed, -1);
  double total = 0.0;
  for (int k = 0; k < g->n_nodes && !rc; k++) {
    if (g->nodes[k].op != AE_OP_LINEAR && g->nodes[k].op != AE_OP_CONV)
      continue;
    size_t cw;
    const float *w = ae_net_param(s, k, AE_NET_WEIGHT, &cw);
    free(dw);
    dw = malloc((cw > 0 ? cw : 1) * sizeof *dw);
    if (!dw) {
      rc = AE_ENOMEM;
      break;
    }
    rc = ae_net_grad_param(gr, k, AE_NET_WEIGHT, dw, cw);
    for (size_t e = 0; e < cw && !rc; e++)
      total += fabs((double)w[e] * dw[e]);
  }
  if (!rc) *out = total;
done:
  free(x);
  free(seed);
  free(dw);
  ae_net_grad_destroy(gr);
  ae_net_destroy(s);
  ae_graph_free(&copy);
  return rc;
}

/* ---- cross-entropy gradients: grad_norm, snip, zico ---- */

void ae_weight_grads_free(ae_weight_grads *wg) {
  for (int i = 0; i < wg->n_layers; i++) {
    if (wg->w) free(wg->w[i]);
    if (wg->g) free(wg->g[i]);
  }
  free(wg->node);
  free(wg->count);
  free(wg->w);
  free(wg->g);
  memset(wg, 0, sizeof *wg);
}

/* dCE/dlogits of the mean CE: (softmax - onehot) / batch, row by row
 * (max-shifted). */
static int ce_seed(const double *logits, const int *labels, int batch,
                   int classes, double *seed) {
  for (int b = 0; b < batch; b++) {
    const double *z = logits + (size_t)b * classes;
    double *s = seed + (size_t)b * classes;
    if (labels[b] < 0 || labels[b] >= classes) return AE_EINVAL;
    double mx = z[0], sum = 0.0;
    for (int c = 1; c < classes; c++)
      if (z[c] > mx) mx = z[c];
    for (int c = 0; c < classes; c++) {
      s[c] = exp(z[c] - mx);
      sum += s[c];
    }
    for (int c = 0; c < classes; c++)
      s[c] = (s[c] / sum - (c == labels[b] ? 1.0 : 0.0)) / batch;
  }
  return AE_OK;
}

int ae_ce_weight_grads(ae_net *n, const float *x, const int *labels, int batch,
                       ae_weight_grads *out) {
  memset(out, 0, sizeof *out);
  const ae_graph *g = ae_net_graph(n);
  int classes = (int)node_elems(&g->nodes[g->output]);
  double *logits = malloc((size_t)batch * classes * sizeof *logits);
  double *seed = malloc((size_t)batch * classes * sizeof *seed);
  ae_net_grad *gr = NULL;
  int rc = !logits || !seed ? AE_ENOMEM : AE_OK;
  if (!rc) rc = ae_net_forward64(n, x, batch, logits);
  if (!rc) rc = ce_seed(logits, labels, batch, classes, seed);
  if (!rc) rc = ae_net_grad_create(n, &gr);
  if (!rc) rc = ae_net_backward(n, gr, batch, g->output, seed, -1);
  int layers = 0;
  for (int k = 0; k < g->n_nodes; k++)
    layers += g->nodes[k].op == AE_OP_LINEAR || g->nodes[k].op == AE_OP_CONV;
  if (!rc) {
    out->node = calloc((size_t)layers + 1, sizeof *out->node);
    out->count = calloc((size_t)layers + 1, sizeof *out->count);
    out->w = calloc((size_t)layers + 1, sizeof *out->w);
    out->g = calloc((size_t)layers + 1, sizeof *out->g);
    if (!out->node || !out->count || !out->w || !out->g) rc = AE_ENOMEM;
  }
  for (int k = 0; k < g->n_nodes && !rc; k++) {
    if (g->nodes[k].op != AE_OP_LINEAR && g->nodes[k].op != AE_OP_CONV)
      continue;
    int i = out->n_layers++;
    size_t cw;
    const float *w = ae_net_param(n, k, AE_NET_WEIGHT, &cw);
    out->node[i] = k;
    out->count[i] = cw;
    out->w[i] = malloc((cw > 0 ? cw : 1) * sizeof(double));
    out->g[i] = malloc((cw > 0 ? cw : 1) * sizeof(double));
    if (!out->w[i] || !out->g[i]) {
      rc = AE_ENOMEM;
      break;
    }
    for (size_t e = 0; e < cw; e++)
      out->w[i][e] = (double)w[e];
    rc = ae_net_grad_param(gr, k, AE_NET_WEIGHT, out->g[i], cw);
  }
  free(logits);
  free(seed);
  ae_net_grad_destroy(gr);
  if (rc) ae_weight_grads_free(out);
  return rc;
}

double ae_grad_norm(const ae_weight_grads *g) {
  double total = 0.0;
  for (int i = 0; i < g->n_layers; i++) {
    double ss = 0.0;
    for (size_t e = 0; e < g->count[i]; e++)
      ss += g->g[i][e] * g->g[i][e];
    total += sqrt(ss);
  }
  return total;
}

double ae_snip(const ae_weight_grads *g) {
  double total = 0.0;
  for (int i = 0; i < g->n_layers; i++)
    for (size_t e = 0; e < g->count[i]; e++)
      total += fabs(g->w[i][e] * g->g[i][e]);
  return total;
}

double ae_zico(const ae_weight_grads *g1, const ae_weight_grads *g2) {
  if (g1->n_layers != g2->n_layers) return NAN;
  double total = 0.0;
  for (int i = 0; i < g1->n_layers; i++) {
    if (g1->count[i] != g2->count[i]) return NAN;
    double s = 0.0;
    for (size_t e = 0; e < g1->count[i]; e++) {
      double a = g1->g[i][e], b = g2->g[i][e];
      double mean = 0.5 * (a + b);
      double da = a - mean, db = b - mean;
      double sd = sqrt(0.5 * (da * da + db * db));
      if (sd != 0.0) s += 0.5 * (fabs(a) + fabs(b)) / sd;
    }
    if (s != 0.0) total += log(s);
  }
  return total;
}

/* ---- jacob_cov ---- */

int ae_jacob_cov(ae_net *n, const float *x, int batch, double *out, char *why,
                 size_t why_len, const ae_job_control *ctl) {
  *out = NAN;
  const ae_graph *g = ae_net_graph(n);
  size_t dim = node_elems(&g->nodes[0]);
  size_t classes = node_elems(&g->nodes[g->output]);
  size_t B = (size_t)batch;
  double *seed = malloc(B * classes * sizeof *seed);
  double *j = malloc(B * dim * sizeof *j);
  double *corr = malloc(B * B * sizeof *corr);
  double *v = malloc(B * sizeof *v);
  ae_net_grad *gr = NULL;
  int rc = !seed || !j || !corr || !v ? AE_ENOMEM : AE_OK;
  for (size_t i = 0; !rc && i < B * classes; i++)
    seed[i] = 1.0;
  if (!rc) rc = ae_net_grad_create(n, &gr);
  if (!rc) ae_net_grad_skip_params(gr, 1);
  if (!rc) rc = ae_net_forward64(n, x, batch, NULL);
  if (!rc) rc = ae_net_backward(n, gr, batch, g->output, seed, -1);
  if (!rc) rc = ae_net_grad_node(gr, 0, j);
  if (rc) goto done;
  /* Centre each row; a row of zero variance makes the correlation NaN. */
  for (size_t b = 0; b < B; b++) {
    double *r = j + b * dim, mean = 0.0, ss = 0.0;
    for (size_t e = 0; e < dim; e++)
      mean += r[e];
    mean /= (double)dim;
    for (size_t e = 0; e < dim; e++) {
      r[e] -= mean;
      ss += r[e] * r[e];
    }
    if (ss == 0.0) {
      snprintf(why, why_len,
               "the input gradient of sample %zu is constant (correlation "
               "undefined)",
               b);
      goto done;
    }
    double inv = 1.0 / sqrt(ss);
    for (size_t e = 0; e < dim; e++)
      r[e] *= inv;
  }
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, batch, (int)dim, 1.0, j,
              (int)dim, 0.0, corr, batch);
  for (size_t a = 0; a < B; a++)
    for (size_t b = a + 1; b < B; b++)
      corr[a * B + b] = corr[b * B + a];
  rc = ae_sym_eigvals(corr, batch, v, ctl);
  if (rc) goto done;
  double score = 0.0;
  for (size_t i = 0; i < B; i++)
    score -= log(v[i] + 1e-5) + 1.0 / (v[i] + 1e-5);
  *out = score;
done:
  free(seed);
  free(j);
  free(corr);
  free(v);
  ae_net_grad_destroy(gr);
  return rc;
}
