/* bounds.c: the papers' path-sum bounds on the infinite-width kernels of
 * a cell DAG: CONV Eq. 12 / NFL Eq. 6 (U_NNGP, metrics.md §2.5(a)) and NFL
 * Thm 4.6 (NTK, metrics.md §2.6).
 *
 * Each path is the sequence of activations of its linear edges; along it
 * the unit-variance normalised duals f(rho) = c_sigma E[s(u)s(v)] and
 * fdot(rho) = c_sigma E[s'(u)s'(v)] compose (for relu, the paper's h and
 * 1/2 + arcsin(rho)/pi).  Pure functions; any thread may call them. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/analytic/analytic_internal.h"

/* Beyond this many paths the bounds are not enumerated (NaN). */
#define MAX_BOUND_PATHS 100000

/* Paths as activation sequences: path k uses acts[start[k] .. start[k+1]). */
typedef struct {
  ae_activation *acts;
  size_t n_acts, cap_acts;
  size_t *start;
  size_t n_paths, cap_paths;
} path_set;

static void path_set_free(path_set *p) {
  free(p->acts);
  free(p->start);
}

static int path_set_add(path_set *p, const ae_activation *seq, size_t len) {
  if (p->n_paths + 2 > p->cap_paths) {
    size_t cap = p->cap_paths ? 2 * p->cap_paths : 16;
    size_t *start = realloc(p->start, sizeof(size_t) * cap);
    if (!start) return AE_ENOMEM;
    p->start = start;
    p->cap_paths = cap;
  }
  while (p->n_acts + len > p->cap_acts) {
    size_t cap = p->cap_acts ? 2 * p->cap_acts : 64;
    ae_activation *acts = realloc(p->acts, sizeof(ae_activation) * cap);
    if (!acts) return AE_ENOMEM;
    p->acts = acts;
    p->cap_acts = cap;
  }
  if (p->n_paths == 0) p->start[0] = 0;
  if (len) memcpy(p->acts + p->n_acts, seq, sizeof(ae_activation) * len);
  p->n_acts += len;
  p->start[++p->n_paths] = p->n_acts;
  return 0;
}

/* The DAG's non-ZERO edges sorted by (src, dst), with first[s] the first
 * edge out of s, and which nodes reach the output. */
typedef struct {
  const ae_dag_edge **edge;
  int *first;
  int *reaches_out;
} dag_walk;

static int edge_order(const void *pa, const void *pb) {
  const ae_dag_edge *a = *(const ae_dag_edge *const *)pa;
  const ae_dag_edge *b = *(const ae_dag_edge *const *)pb;
  if (a->src != b->src) return a->src < b->src ? -1 : 1;
  if (a->dst != b->dst) return a->dst < b->dst ? -1 : 1;
  return a < b ? -1 : (a > b);
}

/* Depth-first from node s with the activations so far in seq. */
static int collect(const ae_dag *d, const dag_walk *w, int s,
                   ae_activation *seq, size_t len, path_set *out) {
  if (s == d->n_nodes - 1) {
    if (out->n_paths >= MAX_BOUND_PATHS) return AE_ENOMEM;
    return path_set_add(out, seq, len);
  }
  for (int k = w->first[s]; k < w->first[s + 1]; k++) {
    const ae_dag_edge *edge = w->edge[k];
    if (!w->reaches_out[edge->dst]) continue;
    size_t next = len;
    if (edge->kind == AE_EDGE_LINEAR) seq[next++] = edge->act;
    int rc = collect(d, w, edge->dst, seq, next, out);
    if (rc) return rc;
  }
  return 0;
}

static int collect_paths(const ae_dag *d, path_set *out) {
  memset(out, 0, sizeof(*out));
  if (!d || d->n_nodes < 1) return AE_EINVAL;
  int n = d->n_nodes, n_edges = 0;
  for (int e = 0; e < d->n_edges; e++) {
    if (d->edges[e].src < 0 || d->edges[e].src >= d->edges[e].dst ||
        d->edges[e].dst >= n)
      return AE_EINVAL;
    n_edges += d->edges[e].kind != AE_EDGE_ZERO;
  }
  ae_activation *seq = calloc((size_t)n, sizeof(*seq));
  dag_walk w = {calloc((size_t)n_edges + 1, sizeof(*w.edge)),
                calloc((size_t)n + 1, sizeof(int)),
                calloc((size_t)n, sizeof(int))};
  int rc = AE_ENOMEM;
  if (!seq || !w.edge || !w.first || !w.reaches_out) goto done;
  n_edges = 0;
  for (int e = 0; e < d->n_edges; e++)
    if (d->edges[e].kind != AE_EDGE_ZERO) w.edge[n_edges++] = &d->edges[e];
  qsort(w.edge, (size_t)n_edges, sizeof(*w.edge), edge_order);
  for (int k = 0, s = 0; s <= n; s++) {
    while (k < n_edges && w.edge[k]->src < s)
      k++;
    w.first[s] = k;
  }
  w.reaches_out[n - 1] = 1;
  for (int k = n_edges - 1; k >= 0; k--) /* sources in decreasing order */
    if (w.reaches_out[w.edge[k]->dst]) w.reaches_out[w.edge[k]->src] = 1;
  rc = collect(d, &w, 0, seq, 0, out);
done:
  free(seq);
  free(w.edge);
  free(w.first);
  free(w.reaches_out);
  return rc;
}

/* f(rho) = c_sigma E[s(u)s(v)] and fdot(rho) = c_sigma E[s'(u)s'(v)] at
 * unit variance; c_sigma is looked up once per path step's activation. */
static double unit_f(ae_activation a, double c_sigma, double rho) {
  return c_sigma * ae_dual_ss(a, 1.0, 1.0, rho);
}

static double unit_fdot(ae_activation a, double c_sigma, double rho) {
  return c_sigma * ae_dual_dd(a, 1.0, 1.0, rho);
}

/* P - sum_p f^{d_p}(rho), plus (ntk) the NFL Thm 4.6 tangent terms
 * sum_p d_p - sum_p sum_{e<=d_p} f^e(rho) prod_{k<=e} fdot_k(rho). */
static double pair_bound(const path_set *ps, const double *c_sigma, double rho,
                         int ntk) {
  double total = 0.0;
  for (size_t p = 0; p < ps->n_paths; p++) {
    double f = rho, product = 1.0, tangent = 0.0;
    size_t depth = ps->start[p + 1] - ps->start[p];
    for (size_t k = 0; k < depth; k++) {
      size_t at = ps->start[p] + k;
      ae_activation a = ps->acts[at];
      if (ntk) product *= unit_fdot(a, c_sigma[at], f); /* Fdot(f^{k-1}) */
      f = unit_f(a, c_sigma[at], f);                    /* f^k */
      tangent += f * product;
    }
    total += 1.0 - f;
    if (ntk) total += (double)depth - tangent;
  }
  return total;
}

/* The minimum over pairs i != j without evaluating every pair.  At unit
 * variance f and fdot are power series in rho with nonnegative
 * coefficients (Hermite expansions), so on [0, 1] they are increasing
 * and |f(rho)| <= f(|rho|); by induction every subtracted term at rho is
 * at most its value at |rho|.  Hence the bound decreases on [0, 1] and
 * bound(rho) >= bound(|rho|): over the pairs, only the largest rho and
 * the negative rho of larger magnitude can attain the minimum. */
static double min_over_pairs(const ae_dag *d, const double *rho, int N,
                             int ntk) {
  if (!d || !rho || N < 2) return NAN;
  path_set ps;
  if (collect_paths(d, &ps) != 0) {
    path_set_free(&ps);
    return NAN;
  }
  double *c_sigma = malloc(sizeof(double) * (ps.n_acts ? ps.n_acts : 1));
  if (!c_sigma) {
    path_set_free(&ps);
    return NAN;
  }
  for (size_t k = 0; k < ps.n_acts; k++)
    c_sigma[k] = ae_analytic_c_sigma(ps.acts[k]);
  double top = -INFINITY;
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++)
      top = fmax(top, fmin(1.0, rho[(size_t)i * N + j]));
  double best = INFINITY;
  if (isfinite(top)) best = pair_bound(&ps, c_sigma, top, ntk);
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++) {
      double r = fmax(-1.0, rho[(size_t)i * N + j]);
      if (!(r < 0 && -r > top)) continue;
      double v = pair_bound(&ps, c_sigma, r, ntk);
      if (v < best) best = v;
    }
  for (int i = 0; i < N * N; i++)
    if (isnan(rho[i])) best = NAN;
  free(c_sigma);
  path_set_free(&ps);
  return best;
}

double ae_u_nngp(const ae_dag *d, const double *rho, int N) {
  return min_over_pairs(d, rho, N, 0);
}

double ae_nfl_ntk_bound(const ae_dag *d, const double *rho, int N) {
  return min_over_pairs(d, rho, N, 1);
}
