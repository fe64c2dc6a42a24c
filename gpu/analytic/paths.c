/* paths.c: input-to-output paths of a cell DAG or a lowered graph, the
 * effective depth and width built on them (metrics.md §2.7), the paper's
 * DAG filter, and NFL's path proxy (metrics.md §1.2).
 *
 * Path counts come from dynamic programming: exact counts in double (inf
 * past 1e308) plus log-weighted means, so d-bar and m-bar stay finite on
 * graphs with astronomically many paths.  The explicit depth list is
 * enumerated only when P <= max_list.
 *
 * Pure functions, except the mlp_dag filter's extremes, computed once per
 * process under pthread_once and read-only afterwards; any thread may call
 * anything here. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"

/* ---- path dynamic programming over a generic DAG ---- */

/* Per node: exact count, exact depth sum, count of depth-0 paths, and the
 * overflow-proof log count, mean depth and depth-0 fraction. */
typedef struct {
  double count, depth_sum, zero_count;
  double log_count, mean_depth, zero_fraction;
} path_stats;

static void path_stats_source(path_stats *s) {
  s->count = 1.0;
  s->depth_sum = 0.0;
  s->zero_count = 1.0;
  s->log_count = 0.0;
  s->mean_depth = 0.0;
  s->zero_fraction = 1.0;
}

static void path_stats_empty(path_stats *s) {
  memset(s, 0, sizeof(*s));
  s->log_count = -INFINITY;
}

/* Node t's statistics from its predecessors' (pred[k], weight[k] = 1 if
 * the step into t adds depth). */
static void path_stats_merge(path_stats *t, const path_stats *const *pred,
                             const int *adds_depth, int n_pred) {
  path_stats_empty(t);
  double top = -INFINITY;
  for (int k = 0; k < n_pred; k++)
    if (pred[k]->log_count > top) top = pred[k]->log_count;
  if (top == -INFINITY) return;
  double weight_sum = 0.0, depth_acc = 0.0, zero_acc = 0.0;
  for (int k = 0; k < n_pred; k++) {
    const path_stats *p = pred[k];
    if (p->log_count == -INFINITY) continue;
    double w = exp(p->log_count - top);
    weight_sum += w;
    depth_acc += w * (p->mean_depth + adds_depth[k]);
    zero_acc += adds_depth[k] ? 0.0 : w * p->zero_fraction;
    t->count += p->count;
    t->depth_sum += p->depth_sum + (adds_depth[k] ? p->count : 0.0);
    t->zero_count += adds_depth[k] ? 0.0 : p->zero_count;
  }
  t->log_count = top + log(weight_sum);
  t->mean_depth = depth_acc / weight_sum;
  t->zero_fraction = zero_acc / weight_sum;
}

static void paths_from_stats(const path_stats *s, ae_paths *out) {
  out->n_paths = s->count;
  out->sum_depth = s->depth_sum;
  out->n_param_paths = s->count - s->zero_count;
  if (s->log_count == -INFINITY) {
    out->mean_depth = 0.0;
    out->param_fraction = 0.0;
  } else {
    out->mean_depth = s->mean_depth;
    out->param_fraction = 1.0 - s->zero_fraction;
  }
}

/* A growing list of depths. */
typedef struct {
  double *v;
  size_t n, cap;
} depth_list;

static int depth_list_push(depth_list *l, double d) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    double *v = realloc(l->v, sizeof(double) * cap);
    if (!v) return AE_ENOMEM;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = d;
  return 0;
}

/* ---- cell DAG ---- */

/* kind[s * n + t]: the edge kind s -> t, or -1 for none. */
static int *dag_adjacency(const ae_dag *d) {
  int n = d->n_nodes;
  int *kind = malloc(sizeof(int) * (size_t)n * (size_t)n);
  if (!kind) return NULL;
  for (int k = 0; k < n * n; k++)
    kind[k] = -1;
  for (int e = 0; e < d->n_edges; e++)
    kind[d->edges[e].src * n + d->edges[e].dst] = (int)d->edges[e].kind;
  return kind;
}

/* Forward depth-first enumeration: out-edges in ascending destination, so
 * the order matches metrics.md §6 ([2,1,2,0] for 2_21_112). */
static int dag_enumerate(const int *kind, const int *reaches_out, int n, int s,
                         double depth, depth_list *l) {
  if (s == n - 1) return depth_list_push(l, depth);
  for (int t = s + 1; t < n; t++) {
    int k = kind[s * n + t];
    if (k < 0 || k == AE_EDGE_ZERO || !reaches_out[t]) continue;
    int rc = dag_enumerate(kind, reaches_out, n, t,
                           depth + (k == AE_EDGE_LINEAR ? 1.0 : 0.0), l);
    if (rc) return rc;
  }
  return 0;
}

int ae_dag_paths(const ae_dag *d, size_t max_list, ae_paths *out) {
  if (!d || !out || d->n_nodes < 1) return AE_EINVAL;
  memset(out, 0, sizeof(*out));
  int n = d->n_nodes;
  for (int e = 0; e < d->n_edges; e++)
    if (d->edges[e].src < 0 || d->edges[e].src >= d->edges[e].dst ||
        d->edges[e].dst >= n)
      return AE_EINVAL;
  int rc = AE_ENOMEM;
  int *kind = dag_adjacency(d);
  path_stats *stats = calloc((size_t)n, sizeof(*stats));
  const path_stats **pred = calloc((size_t)n, sizeof(*pred));
  int *adds = calloc((size_t)n, sizeof(int));
  int *reaches_out = calloc((size_t)n, sizeof(int));
  depth_list list = {0};
  if (!kind || !stats || !pred || !adds || !reaches_out) goto done;

  path_stats_source(&stats[0]);
  for (int t = 1; t < n; t++) {
    int n_pred = 0;
    for (int s = 0; s < t; s++) {
      int k = kind[s * n + t];
      if (k < 0 || k == AE_EDGE_ZERO) continue;
      pred[n_pred] = &stats[s];
      adds[n_pred++] = k == AE_EDGE_LINEAR;
    }
    path_stats_merge(&stats[t], pred, adds, n_pred);
  }
  paths_from_stats(&stats[n - 1], out);

  if (out->n_paths <= (double)max_list) {
    reaches_out[n - 1] = 1;
    for (int s = n - 2; s >= 0; s--)
      for (int t = s + 1; t < n && !reaches_out[s]; t++) {
        int k = kind[s * n + t];
        if (k >= 0 && k != AE_EDGE_ZERO && reaches_out[t]) reaches_out[s] = 1;
      }
    if (out->n_paths > 0) {
      if (dag_enumerate(kind, reaches_out, n, 0, 0.0, &list)) goto done;
    }
    out->depths = list.v;
    out->n_depths = list.n;
    list.v = NULL;
    if (!out->depths) {
      out->depths = malloc(sizeof(double)); /* an empty, non-NULL list */
      if (!out->depths) goto done;
    }
  }
  rc = 0;

done:
  free(list.v);
  free(kind);
  free(stats);
  free(pred);
  free(adds);
  free(reaches_out);
  return rc;
}

/* ---- lowered graph ---- */

static int node_adds_depth(const ae_node *nd) {
  return nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV;
}

/* Backward depth-first enumeration from node t to the input. */
static int graph_enumerate(const ae_graph *g, const path_stats *stats, int t,
                           double depth, depth_list *l) {
  const ae_node *nd = &g->nodes[t];
  depth += node_adds_depth(nd) ? 1.0 : 0.0;
  if (t == 0) return depth_list_push(l, depth);
  for (int m = 0; m < nd->n_inputs; m++) {
    int in = nd->inputs[m];
    if (stats[in].count == 0.0) continue;
    int rc = graph_enumerate(g, stats, in, depth, l);
    if (rc) return rc;
  }
  return 0;
}

int ae_graph_paths(const ae_graph *g, size_t max_list, ae_paths *out) {
  if (!g || !out || g->n_nodes < 1 || g->output < 0 || g->output >= g->n_nodes)
    return AE_EINVAL;
  memset(out, 0, sizeof(*out));
  int n = g->n_nodes, max_inputs = 1;
  for (int t = 0; t < n; t++) {
    if (g->nodes[t].n_inputs > max_inputs) max_inputs = g->nodes[t].n_inputs;
    for (int m = 0; m < g->nodes[t].n_inputs; m++)
      if (g->nodes[t].inputs[m] < 0 || g->nodes[t].inputs[m] >= t)
        return AE_EINVAL;
  }
  int rc = AE_ENOMEM;
  path_stats *stats = calloc((size_t)n, sizeof(*stats));
  const path_stats **pred = calloc((size_t)max_inputs, sizeof(*pred));
  int *adds = calloc((size_t)max_inputs, sizeof(int));
  depth_list list = {0};
  if (!stats || !pred || !adds) goto done;

  /* The depth a node adds counts on the step into it. */
  path_stats_source(&stats[0]);
  for (int t = 1; t < n; t++) {
    const ae_node *nd = &g->nodes[t];
    if (nd->op == AE_OP_ZERO || nd->op == AE_OP_INPUT) {
      path_stats_empty(&stats[t]);
      continue;
    }
    for (int m = 0; m < nd->n_inputs; m++) {
      pred[m] = &stats[nd->inputs[m]];
      adds[m] = node_adds_depth(nd);
    }
    path_stats_merge(&stats[t], pred, adds, nd->n_inputs);
  }
  paths_from_stats(&stats[g->output], out);

  if (out->n_paths <= (double)max_list) {
    if (out->n_paths > 0 && graph_enumerate(g, stats, g->output, 0.0, &list))
      goto done;
    out->depths = list.v;
    out->n_depths = list.n;
    list.v = NULL;
    if (!out->depths) {
      out->depths = malloc(sizeof(double));
      if (!out->depths) goto done;
    }
  }
  rc = 0;

done:
  free(list.v);
  free(stats);
  free(pred);
  free(adds);
  return rc;
}

void ae_paths_free(ae_paths *p) {
  if (!p) return;
  free(p->depths);
  p->depths = NULL;
  p->n_depths = 0;
}

double ae_effective_depth(const ae_paths *p) {
  if (!p || !(p->n_paths > 0)) return 0.0;
  if (isfinite(p->n_paths) && isfinite(p->sum_depth))
    return p->sum_depth / p->n_paths;
  return p->mean_depth;
}

double ae_effective_width(const ae_paths *p) {
  double dbar = ae_effective_depth(p);
  if (!(dbar > 0)) return 0.0;
  if (isfinite(p->n_paths)) return p->n_param_paths / dbar;
  return INFINITY; /* P itself overflows, and so do its paths with d > 0 */
}

/* ---- the paper's filter ---- */

typedef struct {
  double d_min, d_max, m_min, m_max;
  int valid;
} filter_extremes;

/* NB201 (metrics.md §2.7, verified by enumerating the 15625 cells in
 * tests/unit/test_analytic_paths.c): over cells with d-bar > 0. */
static const filter_extremes nb201_extremes = {0.25, 3.0, 1.0 / 3.0, 4.0, 1};

#define MLP_FILTER_MAX_NODES 5
static filter_extremes mlp_extremes[MLP_FILTER_MAX_NODES + 1];
static pthread_once_t mlp_extremes_once = PTHREAD_ONCE_INIT;

/* Every DAG on n nodes (3^(n(n-1)/2) of them), by exact path DP. */
static void mlp_extremes_for(int n, filter_extremes *x) {
  int n_edges = n * (n - 1) / 2;
  ae_dag_edge edges[MLP_FILTER_MAX_NODES * (MLP_FILTER_MAX_NODES - 1) / 2];
  int digits[MLP_FILTER_MAX_NODES * (MLP_FILTER_MAX_NODES - 1) / 2] = {0};
  int e = 0;
  for (int t = 1; t < n; t++)
    for (int s = 0; s < t; s++) {
      edges[e].src = s;
      edges[e].dst = t;
      edges[e].act.fn = AE_ACT_RELU;
      edges[e].act.slope = 0.0;
      e++;
    }
  ae_dag d = {n, edges, n_edges};
  x->valid = 0;
  for (;;) {
    for (int k = 0; k < n_edges; k++)
      edges[k].kind = (ae_edge_kind)digits[k];
    ae_paths p;
    if (ae_dag_paths(&d, 0, &p) == 0) {
      double dbar = ae_effective_depth(&p), mbar = ae_effective_width(&p);
      if (p.n_paths > 0 && dbar > 0) {
        if (!x->valid || dbar < x->d_min) x->d_min = dbar;
        if (!x->valid || dbar > x->d_max) x->d_max = dbar;
        if (!x->valid || mbar < x->m_min) x->m_min = mbar;
        if (!x->valid || mbar > x->m_max) x->m_max = mbar;
        x->valid = 1;
      }
      ae_paths_free(&p);
    }
    int k = 0;
    while (k < n_edges && ++digits[k] == 3)
      digits[k++] = 0;
    if (k == n_edges) break;
  }
}

static void mlp_extremes_init(void) {
  for (int n = 2; n <= MLP_FILTER_MAX_NODES; n++)
    mlp_extremes_for(n, &mlp_extremes[n]);
}

static int filter_keep(const filter_extremes *x, double dbar, double mbar) {
  if (!(dbar > 0)) return 0;
  double d_centre = 0.5 * (x->d_max + x->d_min);
  double m_centre = 0.5 * (x->m_max + x->m_min);
  double d_radius = 0.5 * (x->d_max - x->d_min);
  double m_radius = 0.5 * (x->m_max - x->m_min);
  /* A little slack so boundary cells do not flip on rounding. */
  const double slack = 1e-12;
  return fabs(dbar - d_centre) <= 0.5 * d_radius + slack &&
         fabs(mbar - m_centre) <= 0.5 * m_radius + slack;
}

int ae_dag_filter(const ae_arch *a, double dbar, double mbar) {
  if (!a) return -1;
  switch (a->type) {
  case AE_ARCH_NB201:
    return filter_keep(&nb201_extremes, dbar, mbar);
  case AE_ARCH_MLP_DAG: {
    int n = a->dag.n_nodes;
    if (n < 2 || n > MLP_FILTER_MAX_NODES) return -1;
    if (pthread_once(&mlp_extremes_once, mlp_extremes_init) != 0) return -1;
    if (!mlp_extremes[n].valid) return -1;
    return filter_keep(&mlp_extremes[n], dbar, mbar);
  }
  default:
    return -1;
  }
}

/* ---- NFL ---- */

double ae_nfl_c_of_m(double m) {
  if (!(m > 0)) return NAN;
  return exp(lgamma(0.5 * (m + 1.0)) - lgamma(0.5 * m) - 0.5 * log(0.5 * m));
}

double ae_path_proxy(const ae_paths *p, double m) {
  if (!p || !p->depths || p->n_depths == 0 || !(m > 0)) return NAN;
  double sum = 0.0;
  for (size_t k = 0; k < p->n_depths; k++)
    sum += exp(-5.0 * p->depths[k] / (8.0 * m));
  return 1.0 / (ae_nfl_c_of_m(m) * sum);
}
