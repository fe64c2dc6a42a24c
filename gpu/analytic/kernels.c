/* kernels.c: the exact infinite-width NNGP/NTK recursion (metrics.md
 * §2.5(b), GP pre-activation convention) over a cell DAG and over a dense
 * lowered graph.
 *
 * Design: in the infinite-width limit every Gaussian node is a sum of
 * independent zero-mean Gaussian "components": the network input and the
 * output of each linear layer (fresh weights make distinct linear outputs
 * independent, and their tangent kernels do not mix either).  A node is a
 * list of (component, coefficient) pairs; its kernel is
 * K = sum_k coef_k^2 K_k and its tangent kernel T = sum_k coef_k^2 T_k,
 * which is the spec's bookkeeping of cross kernels C and D in closed form.
 * A linear edge from node s with activation sigma creates a component with
 *   K = c_sigma E[sigma(u) sigma(v)](K_s),
 *   T = K + c_sigma E[sigma'(u) sigma'(v)](K_s) o T_s.
 *
 * Pure functions: all state lives in the call's own allocations, so any
 * thread may run them. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/analytic/analytic.h"
#include "gpu/analytic/analytic_internal.h"

/* ---- shared helpers ---- */

/* The api's c_sigma (api/arch.c), the same gain the engine's init uses. */
double ae_analytic_c_sigma(ae_activation a) {
  return ae_act_c_sigma(a);
}

/* ss = scale E[s s](K) and dd = scale E[s's'](K), entrywise with
 * (K_ii, K_jj, K_ij).  The job's checkpoint (ctl, NULL: none) is passed
 * before every row: 0 or its error. */
static int dual_matrices(ae_activation act, double scale, const double *K,
                         int N, double *ss, double *dd,
                         const ae_job_control *ctl) {
  for (int i = 0; i < N; i++) {
    int rc = ae_job_checkpoint(ctl);
    if (rc) return rc;
    for (int j = i; j < N; j++) {
      double qi = K[(size_t)i * N + i], qj = K[(size_t)j * N + j];
      double v, d;
      ae_dual_pair(act, qi, qj, K[(size_t)i * N + j], &v, &d);
      ss[(size_t)i * N + j] = ss[(size_t)j * N + i] = scale * v;
      dd[(size_t)i * N + j] = dd[(size_t)j * N + i] = scale * d;
    }
  }
  return 0;
}

/* A component created by an activation then a linear map with gain:
 * K_c = gain E[ss](K_in), T_c = K_c + gain E[s's'](K_in) o T_in.  0 or
 * the checkpoint's error. */
static int linear_after_act(ae_activation act, double gain, const double *K_in,
                            const double *T_in, int N, double *K_c, double *T_c,
                            const ae_job_control *ctl) {
  size_t nn = (size_t)N * N;
  int rc = dual_matrices(act, gain, K_in, N, K_c, T_c, ctl);
  if (rc) return rc;
  for (size_t e = 0; e < nn; e++)
    T_c[e] = K_c[e] + T_c[e] * T_in[e];
  return 0;
}

static int same_activation(ae_activation a, ae_activation b) {
  return a.fn == b.fn && (a.fn != AE_ACT_LEAKY_RELU || a.slope == b.slope);
}

/* ---- sparse combinations of components ---- */

typedef struct {
  int *component;
  double *coef;
  int n;
} combination;

static void combination_free(combination *c) {
  free(c->component);
  free(c->coef);
  c->component = NULL;
  c->coef = NULL;
  c->n = 0;
}

/* dst += scale * src (merging sorted component lists). */
static int combination_add(combination *dst, const combination *src,
                           double scale) {
  int cap = dst->n + src->n;
  if (cap == 0) return 0;
  int *comp = malloc(sizeof(int) * (size_t)cap);
  double *coef = malloc(sizeof(double) * (size_t)cap);
  if (!comp || !coef) {
    free(comp);
    free(coef);
    return AE_ENOMEM;
  }
  int i = 0, j = 0, n = 0;
  while (i < dst->n || j < src->n) {
    if (j >= src->n || (i < dst->n && dst->component[i] < src->component[j])) {
      comp[n] = dst->component[i];
      coef[n++] = dst->coef[i++];
    } else if (i >= dst->n || src->component[j] < dst->component[i]) {
      comp[n] = src->component[j];
      coef[n++] = scale * src->coef[j++];
    } else {
      comp[n] = dst->component[i];
      coef[n++] = dst->coef[i++] + scale * src->coef[j++];
    }
  }
  free(dst->component);
  free(dst->coef);
  dst->component = comp;
  dst->coef = coef;
  dst->n = n;
  return 0;
}

static int combination_unit(combination *dst, int component) {
  combination unit = {&component, &(double){1.0}, 1};
  return combination_add(dst, &unit, 1.0);
}

/* K = sum coef^2 K_k, T likewise. */
static void combination_kernels(const combination *c, double *const *comp_K,
                                double *const *comp_T, int N, double *K,
                                double *T) {
  size_t nn = (size_t)N * N;
  memset(K, 0, sizeof(double) * nn);
  memset(T, 0, sizeof(double) * nn);
  for (int m = 0; m < c->n; m++) {
    double w = c->coef[m] * c->coef[m];
    const double *Kk = comp_K[c->component[m]], *Tk = comp_T[c->component[m]];
    for (size_t e = 0; e < nn; e++) {
      K[e] += w * Kk[e];
      T[e] += w * Tk[e];
    }
  }
}

/* ---- the cell DAG ---- */

int ae_dag_kernels(const ae_dag *d, const double *K0, int N, int trained_stem,
                   double *K_out, double *T_out, const ae_job_control *ctl) {
  if (!d || d->n_nodes < 1 || N < 1 || !K0 || !K_out || !T_out)
    return AE_EINVAL;
  int n_nodes = d->n_nodes;
  size_t nn = (size_t)N * N;
  int n_linear = 0;
  for (int e = 0; e < d->n_edges; e++) {
    const ae_dag_edge *edge = &d->edges[e];
    if (edge->src < 0 || edge->dst >= n_nodes || edge->src >= edge->dst)
      return AE_EINVAL;
    if (edge->kind == AE_EDGE_LINEAR) n_linear++;
  }
  int n_comp_max = 1 + n_linear;
  int rc = AE_ENOMEM;
  combination *node = calloc((size_t)n_nodes, sizeof(*node));
  double **node_K = calloc((size_t)n_nodes, sizeof(double *));
  double **node_T = calloc((size_t)n_nodes, sizeof(double *));
  double **comp_K = calloc((size_t)n_comp_max, sizeof(double *));
  double **comp_T = calloc((size_t)n_comp_max, sizeof(double *));
  int *comp_src = calloc((size_t)n_comp_max, sizeof(int));
  ae_activation *comp_act = calloc((size_t)n_comp_max, sizeof(*comp_act));
  char *comp_owner = calloc((size_t)n_comp_max, 1);
  int *last_linear_use = malloc(sizeof(int) * (size_t)n_nodes);
  int n_comp = 0;
  if (!node || !node_K || !node_T || !comp_K || !comp_T || !comp_src ||
      !comp_act || !comp_owner || !last_linear_use)
    goto done;
  /* Node kernels are materialised only for sources of linear edges (until
   * their last one) and for the output. */
  for (int t = 0; t < n_nodes; t++)
    last_linear_use[t] = -1;
  for (int e = 0; e < d->n_edges; e++)
    if (d->edges[e].kind == AE_EDGE_LINEAR &&
        d->edges[e].dst > last_linear_use[d->edges[e].src])
      last_linear_use[d->edges[e].src] = d->edges[e].dst;
  last_linear_use[n_nodes - 1] = n_nodes; /* the output: kept */

  /* Component 0: the cell input. */
  comp_owner[0] = 1;
  comp_K[0] = malloc(sizeof(double) * nn);
  comp_T[0] = calloc(nn, sizeof(double));
  if (!comp_K[0] || !comp_T[0]) goto done;
  memcpy(comp_K[0], K0, sizeof(double) * nn);
  if (trained_stem) memcpy(comp_T[0], K0, sizeof(double) * nn);
  comp_src[0] = -1;
  n_comp = 1;
  if (combination_unit(&node[0], 0)) goto done;

  for (int t = 0; t < n_nodes; t++) {
    if (t > 0) {
      /* Edges into t; their sources are complete (src < t). */
      for (int e = 0; e < d->n_edges; e++) {
        const ae_dag_edge *edge = &d->edges[e];
        if (edge->dst != t) continue;
        if (edge->kind == AE_EDGE_SKIP) {
          if (combination_add(&node[t], &node[edge->src], 1.0)) goto done;
        } else if (edge->kind == AE_EDGE_LINEAR) {
          /* Two linear edges with one source and activation have equal
           * kernels (independent weights): compute once, reuse. */
          int twin = -1;
          for (int k = 1; k < n_comp; k++)
            if (comp_src[k] == edge->src &&
                same_activation(comp_act[k], edge->act))
              twin = k;
          int c = n_comp++;
          comp_src[c] = edge->src;
          comp_act[c] = edge->act;
          if (twin >= 0) {
            /* A distinct component (independent weights) whose kernels
             * alias the twin's storage. */
            comp_K[c] = comp_K[twin];
            comp_T[c] = comp_T[twin];
          } else {
            comp_owner[c] = 1;
            comp_K[c] = malloc(sizeof(double) * nn);
            comp_T[c] = malloc(sizeof(double) * nn);
            if (!comp_K[c] || !comp_T[c]) goto done;
            int lrc = linear_after_act(
                edge->act, ae_analytic_c_sigma(edge->act), node_K[edge->src],
                node_T[edge->src], N, comp_K[c], comp_T[c], ctl);
            if (lrc) {
              rc = lrc;
              goto done;
            }
          }
          if (combination_unit(&node[t], c)) goto done;
          if (last_linear_use[edge->src] == t) {
            /* No later linear edge reads the source's kernels. */
            free(node_K[edge->src]);
            free(node_T[edge->src]);
            node_K[edge->src] = node_T[edge->src] = NULL;
          }
        }
      }
    }
    if (last_linear_use[t] < 0) continue;
    node_K[t] = malloc(sizeof(double) * nn);
    node_T[t] = malloc(sizeof(double) * nn);
    if (!node_K[t] || !node_T[t]) goto done;
    combination_kernels(&node[t], comp_K, comp_T, N, node_K[t], node_T[t]);
  }
  memcpy(K_out, node_K[n_nodes - 1], sizeof(double) * nn);
  memcpy(T_out, node_T[n_nodes - 1], sizeof(double) * nn);
  rc = 0;

done:
  if (node)
    for (int t = 0; t < n_nodes; t++)
      combination_free(&node[t]);
  if (node_K)
    for (int t = 0; t < n_nodes; t++)
      free(node_K[t]);
  if (node_T)
    for (int t = 0; t < n_nodes; t++)
      free(node_T[t]);
  if (comp_K && comp_T && comp_owner)
    for (int k = 0; k < n_comp_max; k++)
      if (comp_owner[k]) {
        free(comp_K[k]);
        free(comp_T[k]);
      }
  free(comp_owner);
  free(last_linear_use);
  free(node);
  free(node_K);
  free(node_T);
  free(comp_K);
  free(comp_T);
  free(comp_src);
  free(comp_act);
  return rc;
}

/* ---- the dense lowered graph ----
 *
 * A graph node is a Gaussian part (a combination of components, as for
 * the DAG) plus a sum of activation outputs sigma_a(h_a), each h_a itself
 * a combination.  Activation outputs are not Gaussian, but a LINEAR of
 * them has a kernel built from second moments only:
 *   E[s_a(h_a(x_i)) s_b(h_b(x_j))]: the dual kernel at the cross
 *     covariance of h_a and h_b (a product of means when they share no
 *     component: independent weights, as in post-activation nets);
 *   E[s_a(h_a(x_i)) g(x_j)] = Cov(h_a(x_i), g(x_j)) E[s_a'(h_a(x_i))]
 *     for a Gaussian g (Stein's lemma);
 * and the tangent kernel likewise with s' and the cross tangent kernels.
 * An ACT accepts only a Gaussian node without the raw input. */

typedef struct {
  int live;         /* computed and not yet released */
  combination comb; /* Gaussian part */
  combination acts; /* activation terms: (ACT node index, coefficient) */
  int raw_input;    /* the input itself, through identity/flatten */
  int last_use;     /* index of the last node reading this one */
  /* ACT nodes: data kept while any acts list refers to the node */
  int act_refs;
  combination h; /* the Gaussian input */
  ae_activation act;
  double *K, *T;        /* E[ss](K_h), E[s's'](K_h) o T_h */
  double *q;            /* diag K_h */
  double *mean, *dmean; /* E[s(h(x_i))], E[s'(h(x_i))] */
} graph_node_state;

typedef struct {
  double **K, **T; /* per component */
  int *refs;       /* live references from combinations */
  int n, cap;
} component_table;

static void component_release(component_table *ct, const combination *c) {
  for (int m = 0; m < c->n; m++) {
    int k = c->component[m];
    if (--ct->refs[k] == 0) {
      free(ct->K[k]);
      free(ct->T[k]);
      ct->K[k] = ct->T[k] = NULL;
    }
  }
}

static void component_retain(component_table *ct, const combination *c) {
  for (int m = 0; m < c->n; m++)
    ct->refs[c->component[m]]++;
}

static void act_data_release(graph_node_state *a, component_table *ct) {
  if (--a->act_refs > 0) return;
  component_release(ct, &a->h);
  combination_free(&a->h);
  free(a->K);
  free(a->T);
  free(a->q);
  free(a->mean);
  free(a->dmean);
  a->K = a->T = a->q = a->mean = a->dmean = NULL;
}

static void node_state_release(graph_node_state *st, int t,
                               component_table *ct) {
  graph_node_state *s = &st[t];
  if (s->live) {
    component_release(ct, &s->comb);
    for (int m = 0; m < s->acts.n; m++)
      act_data_release(&st[s->acts.component[m]], ct);
  }
  s->live = 0;
  combination_free(&s->comb);
  combination_free(&s->acts);
}

/* out = sum over shared components of coef_a coef_b M_k; the number of
 * shared components (0: out untouched). */
static int cross_kernel(const combination *a, const combination *b,
                        double *const *M, int N, double *out) {
  size_t nn = (size_t)N * N;
  int shared = 0, i = 0, j = 0;
  while (i < a->n && j < b->n) {
    if (a->component[i] < b->component[j]) {
      i++;
    } else if (b->component[j] < a->component[i]) {
      j++;
    } else {
      if (shared++ == 0) memset(out, 0, sizeof(double) * nn);
      double w = a->coef[i] * b->coef[j];
      const double *Mk = M[a->component[i]];
      for (size_t e = 0; e < nn; e++)
        out[e] += w * Mk[e];
      i++;
      j++;
    }
  }
  return shared;
}

/* The per-coordinate K and T of node s (what a LINEAR reading it sees).
 * C, D: N*N scratch each. */
static int node_kernels(const graph_node_state *st, int t,
                        const component_table *ct, int N, double *K, double *T,
                        double *C, double *D, const ae_job_control *ctl) {
  const graph_node_state *s = &st[t];
  if (!s->live) return AE_EUNSUPPORTED;
  combination_kernels(&s->comb, ct->K, ct->T, N, K, T);
  for (int m = 0; m < s->acts.n; m++) {
    const graph_node_state *a = &st[s->acts.component[m]];
    double beta = s->acts.coef[m];
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) {
        size_t e = (size_t)i * N + j;
        K[e] += beta * beta * a->K[e];
        T[e] += beta * beta * a->T[e];
      }
    /* With the Gaussian part (Stein). */
    if (cross_kernel(&a->h, &s->comb, ct->K, N, C)) {
      cross_kernel(&a->h, &s->comb, ct->T, N, D);
      for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
          size_t e = (size_t)i * N + j;
          double slope = a->dmean[i] + a->dmean[j];
          K[e] += beta * C[e] * slope;
          T[e] += beta * D[e] * slope;
        }
    }
    /* With the other activation terms. */
    for (int m2 = m + 1; m2 < s->acts.n; m2++) {
      const graph_node_state *b = &st[s->acts.component[m2]];
      double w = beta * s->acts.coef[m2];
      if (!cross_kernel(&a->h, &b->h, ct->K, N, C)) {
        for (int i = 0; i < N; i++)
          for (int j = 0; j < N; j++)
            K[(size_t)i * N + j] +=
                w * (a->mean[i] * b->mean[j] + b->mean[i] * a->mean[j]);
        continue; /* independent: no tangent cross term */
      }
      cross_kernel(&a->h, &b->h, ct->T, N, D);
      for (int i = 0; i < N; i++) {
        int rc = ae_job_checkpoint(ctl);
        if (rc) return rc;
        for (int j = 0; j < N; j++) {
          size_t e = (size_t)i * N + j;
          double ss_ij, dd_ij, ss_ji, dd_ji;
          if (ae_dual_mixed_pair(a->act, b->act, a->q[i], b->q[j], C[e], &ss_ij,
                                 &dd_ij) ||
              ae_dual_mixed_pair(a->act, b->act, a->q[j], b->q[i], C[e], &ss_ji,
                                 &dd_ji))
            return AE_EUNSUPPORTED;
          K[e] += w * (ss_ij + ss_ji);
          T[e] += w * (dd_ij + dd_ji) * D[e];
        }
      }
    }
  }
  return 0;
}

typedef struct {
  double *K, *T, *C, *D; /* N*N scratch each */
} graph_scratch;

/* One node of the graph; 0, AE_ENOMEM, AE_EUNSUPPORTED or the error of
 * the job's checkpoint (ctl, NULL: none). */
static int graph_node_step(const ae_graph *g, int t, int N, int trained_stem,
                           graph_node_state *st, component_table *ct,
                           graph_scratch *w, const ae_job_control *ctl) {
  const ae_node *nd = &g->nodes[t];
  graph_node_state *s = &st[t];
  size_t nn = (size_t)N * N;
  int rc;
  for (int m = 0; m < nd->n_inputs; m++)
    if (!st[nd->inputs[m]].live) return AE_EUNSUPPORTED;
  switch (nd->op) {
  case AE_OP_INPUT:
    return AE_EINVAL; /* only node 0, handled by the caller */
  case AE_OP_ZERO:
    s->live = 1; /* the empty sum */
    return 0;
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN:
  case AE_OP_ADD:
    s->raw_input = nd->n_inputs == 1 && st[nd->inputs[0]].raw_input;
    for (int m = 0; m < nd->n_inputs; m++) {
      if (combination_add(&s->comb, &st[nd->inputs[m]].comb, 1.0) ||
          combination_add(&s->acts, &st[nd->inputs[m]].acts, 1.0))
        return AE_ENOMEM;
    }
    component_retain(ct, &s->comb);
    for (int m = 0; m < s->acts.n; m++)
      st[s->acts.component[m]].act_refs++;
    s->live = 1;
    return 0;
  case AE_OP_ACT: {
    if (nd->n_inputs != 1) return AE_EINVAL;
    /* relu6, hardswish, hardsigmoid: no closed-form dual, and their kinks
     * away from 0 are outside what dual.c's quadrature is verified for:
     * the analytic kernels are absent (the group warns). */
    if ((int)nd->act.fn > AE_ACT_IDENTITY) return AE_EUNSUPPORTED;
    const graph_node_state *in = &st[nd->inputs[0]];
    /* Only a zero-mean Gaussian input: a combination of linear outputs,
     * never the raw data nor an activation output. */
    if (in->acts.n > 0) return AE_EUNSUPPORTED;
    for (int m = 0; m < in->comb.n; m++)
      if (in->comb.component[m] == 0) return AE_EUNSUPPORTED;
    rc = node_kernels(st, nd->inputs[0], ct, N, w->K, w->T, w->C, w->D, ctl);
    if (rc) return rc;
    s->K = malloc(sizeof(double) * nn);
    s->T = malloc(sizeof(double) * nn);
    s->q = malloc(sizeof(double) * (size_t)N);
    s->mean = malloc(sizeof(double) * (size_t)N);
    s->dmean = malloc(sizeof(double) * (size_t)N);
    s->act = nd->act;
    s->act_refs = 1; /* the ACT node's own reference, below */
    if (!s->K || !s->T || !s->q || !s->mean || !s->dmean ||
        combination_add(&s->h, &in->comb, 1.0) || combination_unit(&s->acts, t))
      return AE_ENOMEM;
    component_retain(ct, &s->h);
    rc = dual_matrices(nd->act, 1.0, w->K, N, s->K, s->T, ctl);
    if (rc) return rc;
    for (size_t e = 0; e < nn; e++)
      s->T[e] *= w->T[e];
    for (int i = 0; i < N; i++) {
      s->q[i] = w->K[(size_t)i * N + i];
      ae_dual_mean(nd->act, s->q[i], &s->mean[i], &s->dmean[i]);
    }
    s->live = 1;
    return 0;
  }
  case AE_OP_LINEAR: {
    if (nd->n_inputs != 1) return AE_EINVAL;
    const graph_node_state *in = &st[nd->inputs[0]];
    rc = node_kernels(st, nd->inputs[0], ct, N, w->K, w->T, w->C, w->D, ctl);
    if (rc) return rc;
    int trained = trained_stem || !in->raw_input;
    double gain = nd->init_gain > 0 ? nd->init_gain : 1.0;
    int c = ct->n++;
    ct->K[c] = malloc(sizeof(double) * nn);
    ct->T[c] = malloc(sizeof(double) * nn);
    if (!ct->K[c] || !ct->T[c]) return AE_ENOMEM;
    for (size_t e = 0; e < nn; e++) {
      ct->K[c][e] = gain * w->K[e];
      ct->T[c][e] = gain * ((trained ? w->K[e] : 0.0) + w->T[e]) +
                    (trained && nd->bias ? 1.0 : 0.0);
    }
    if (combination_unit(&s->comb, c)) return AE_ENOMEM;
    component_retain(ct, &s->comb);
    s->live = 1;
    return 0;
  }
  default:
    return AE_EUNSUPPORTED; /* conv, batch norm, pools */
  }
}

int ae_graph_kernels(const ae_graph *g, const double *K0, int N,
                     int trained_stem, double *K_out, double *T_out,
                     const ae_job_control *ctl) {
  if (!g || g->n_nodes < 1 || N < 1 || !K0 || !K_out || !T_out ||
      g->output < 0 || g->output >= g->n_nodes || g->nodes[0].op != AE_OP_INPUT)
    return AE_EINVAL;
  int n = g->n_nodes;
  size_t nn = (size_t)N * N;
  int n_linear = 0;
  for (int t = 0; t < n; t++) {
    if (g->nodes[t].op == AE_OP_LINEAR) n_linear++;
    for (int m = 0; m < g->nodes[t].n_inputs; m++)
      if (g->nodes[t].inputs[m] < 0 || g->nodes[t].inputs[m] >= t)
        return AE_EINVAL;
  }
  int rc = AE_ENOMEM;
  graph_node_state *st = calloc((size_t)n, sizeof(*st));
  component_table ct = {0};
  ct.cap = 1 + n_linear;
  ct.K = calloc((size_t)ct.cap, sizeof(double *));
  ct.T = calloc((size_t)ct.cap, sizeof(double *));
  ct.refs = calloc((size_t)ct.cap, sizeof(int));
  graph_scratch w = {malloc(sizeof(double) * nn), malloc(sizeof(double) * nn),
                     malloc(sizeof(double) * nn), malloc(sizeof(double) * nn)};
  if (!st || !ct.K || !ct.T || !ct.refs || !w.K || !w.T || !w.C || !w.D)
    goto done;

  /* Free each node's state after its last reader. */
  for (int t = 0; t < n; t++)
    st[t].last_use = t;
  for (int t = 0; t < n; t++)
    for (int m = 0; m < g->nodes[t].n_inputs; m++)
      st[g->nodes[t].inputs[m]].last_use = t;
  st[g->output].last_use = n;

  /* Component 0: the input, K0 and no parameters. */
  ct.K[0] = malloc(sizeof(double) * nn);
  ct.T[0] = calloc(nn, sizeof(double));
  ct.n = 1;
  if (!ct.K[0] || !ct.T[0]) goto done;
  memcpy(ct.K[0], K0, sizeof(double) * nn);
  st[0].raw_input = 1;
  if (combination_unit(&st[0].comb, 0)) goto done;
  component_retain(&ct, &st[0].comb);
  ct.refs[0]++; /* held until the end */
  st[0].live = 1;

  for (int t = 1; t <= g->output; t++) {
    rc = graph_node_step(g, t, N, trained_stem, st, &ct, &w, ctl);
    if (rc == AE_EUNSUPPORTED && st[t].last_use == t) {
      rc = 0; /* a dead branch does not matter */
      node_state_release(st, t, &ct);
    }
    if (rc) goto done;
    for (int m = 0; m < g->nodes[t].n_inputs; m++) {
      int in = g->nodes[t].inputs[m];
      if (st[in].last_use == t && in != 0) node_state_release(st, in, &ct);
    }
  }
  /* The output's own tangent kernel is the NTK; report T = NTK - K so that
   * NTK = K + T here as for ae_dag_kernels. */
  rc = node_kernels(st, g->output, &ct, N, K_out, T_out, w.C, w.D, ctl);
  if (rc == 0)
    for (size_t e = 0; e < nn; e++)
      T_out[e] -= K_out[e];

done:
  if (st) {
    for (int t = 0; t < n; t++)
      node_state_release(st, t, &ct);
    for (int t = 0; t < n; t++) {
      /* ACT data whose references were never taken (failed steps). */
      if (st[t].K || st[t].h.n) {
        st[t].act_refs = 1;
        act_data_release(&st[t], &ct);
      }
    }
  }
  if (ct.K)
    for (int k = 0; k < ct.cap; k++)
      free(ct.K[k]);
  if (ct.T)
    for (int k = 0; k < ct.cap; k++)
      free(ct.T[k]);
  free(ct.K);
  free(ct.T);
  free(ct.refs);
  free(st);
  free(w.K);
  free(w.T);
  free(w.C);
  free(w.D);
  return rc;
}
