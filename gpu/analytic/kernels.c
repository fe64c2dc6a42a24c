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
 * (K_ii, K_jj, K_ij). */
static void dual_matrices(ae_activation act, double scale, const double *K,
                          int N, double *ss, double *dd) {
  for (int i = 0; i < N; i++) {
    for (int j = i; j < N; j++) {
      double qi = K[(size_t)i * N + i], qj = K[(size_t)j * N + j];
      double v, d;
      ae_dual_pair(act, qi, qj, K[(size_t)i * N + j], &v, &d);
      ss[(size_t)i * N + j] = ss[(size_t)j * N + i] = scale * v;
      dd[(size_t)i * N + j] = dd[(size_t)j * N + i] = scale * d;
    }
  }
}

/* A component created by an activation then a linear map with gain:
 * K_c = gain E[ss](K_in), T_c = K_c + gain E[s's'](K_in) o T_in. */
static void linear_after_act(ae_activation act, double gain, const double *K_in,
                             const double *T_in, int N, double *K_c,
                             double *T_c) {
  size_t nn = (size_t)N * N;
  dual_matrices(act, gain, K_in, N, K_c, T_c);
  for (size_t e = 0; e < nn; e++) T_c[e] = K_c[e] + T_c[e] * T_in[e];
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
    if (j >= src->n ||
        (i < dst->n && dst->component[i] < src->component[j])) {
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
                   double *K_out, double *T_out) {
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
  int status = AE_ENOMEM;
  combination *node = calloc((size_t)n_nodes, sizeof(*node));
  double **node_K = calloc((size_t)n_nodes, sizeof(double *));
  double **node_T = calloc((size_t)n_nodes, sizeof(double *));
  double **comp_K = calloc((size_t)n_comp_max, sizeof(double *));
  double **comp_T = calloc((size_t)n_comp_max, sizeof(double *));
  int *comp_src = calloc((size_t)n_comp_max, sizeof(int));
  ae_activation *comp_act = calloc((size_t)n_comp_max, sizeof(*comp_act));
  int n_comp = 0;
  if (!node || !node_K || !node_T || !comp_K || !comp_T || !comp_src ||
      !comp_act)
    goto done;

  /* Component 0: the cell input. */
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
          comp_K[c] = malloc(sizeof(double) * nn);
          comp_T[c] = malloc(sizeof(double) * nn);
          if (!comp_K[c] || !comp_T[c]) goto done;
          if (twin >= 0) {
            memcpy(comp_K[c], comp_K[twin], sizeof(double) * nn);
            memcpy(comp_T[c], comp_T[twin], sizeof(double) * nn);
          } else {
            linear_after_act(edge->act, ae_analytic_c_sigma(edge->act),
                             node_K[edge->src], node_T[edge->src], N,
                             comp_K[c], comp_T[c]);
          }
          if (combination_unit(&node[t], c)) goto done;
        }
      }
    }
    node_K[t] = malloc(sizeof(double) * nn);
    node_T[t] = malloc(sizeof(double) * nn);
    if (!node_K[t] || !node_T[t]) goto done;
    combination_kernels(&node[t], comp_K, comp_T, N, node_K[t], node_T[t]);
  }
  memcpy(K_out, node_K[n_nodes - 1], sizeof(double) * nn);
  memcpy(T_out, node_T[n_nodes - 1], sizeof(double) * nn);
  status = 0;

done:
  if (node)
    for (int t = 0; t < n_nodes; t++) combination_free(&node[t]);
  if (node_K)
    for (int t = 0; t < n_nodes; t++) free(node_K[t]);
  if (node_T)
    for (int t = 0; t < n_nodes; t++) free(node_T[t]);
  if (comp_K)
    for (int k = 0; k < n_comp_max; k++) free(comp_K[k]);
  if (comp_T)
    for (int k = 0; k < n_comp_max; k++) free(comp_T[k]);
  free(node);
  free(node_K);
  free(node_T);
  free(comp_K);
  free(comp_T);
  free(comp_src);
  free(comp_act);
  return status;
}

/* ---- the dense lowered graph ---- */

typedef enum {
  REP_NONE,     /* not computed (unsupported or dead) */
  REP_GAUSS,    /* a combination of components (Gaussian in the limit
                   unless it holds the raw input) */
  REP_ACT       /* an activation output: its own K and T */
} node_rep;

typedef struct {
  node_rep rep;
  combination comb;     /* REP_GAUSS */
  double *K, *T;        /* REP_ACT */
  int raw_input;        /* the input itself, through identity/flatten */
  int last_use;         /* index of the last node reading this one */
} graph_node_state;

typedef struct {
  double **K, **T;      /* per component */
  int *refs;            /* live references from node combinations */
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
  for (int m = 0; m < c->n; m++) ct->refs[c->component[m]]++;
}

static void node_state_release(graph_node_state *s, component_table *ct) {
  if (s->rep == REP_GAUSS) component_release(ct, &s->comb);
  combination_free(&s->comb);
  free(s->K);
  free(s->T);
  s->K = s->T = NULL;
  s->rep = REP_NONE;
}

/* The per-coordinate K and T a LINEAR node sees at its input. */
static int input_kernels(const graph_node_state *s, const component_table *ct,
                         int N, double *K, double *T) {
  size_t nn = (size_t)N * N;
  if (s->rep == REP_ACT) {
    memcpy(K, s->K, sizeof(double) * nn);
    memcpy(T, s->T, sizeof(double) * nn);
    return 0;
  }
  if (s->rep != REP_GAUSS) return AE_EUNSUPPORTED;
  combination_kernels(&s->comb, ct->K, ct->T, N, K, T);
  return 0;
}

/* One node of the graph; 0, AE_ENOMEM or AE_EUNSUPPORTED. */
static int graph_node_step(const ae_graph *g, int t, int N, int trained_stem,
                           graph_node_state *st, component_table *ct,
                           double *K_tmp, double *T_tmp) {
  const ae_node *nd = &g->nodes[t];
  graph_node_state *s = &st[t];
  size_t nn = (size_t)N * N;
  switch (nd->op) {
  case AE_OP_INPUT:
    return AE_EINVAL; /* only node 0, handled by the caller */
  case AE_OP_ZERO:
    s->rep = REP_GAUSS; /* the empty combination */
    return 0;
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN:
  case AE_OP_ADD: {
    int n_act = 0, act_from = -1, n_gauss_terms = 0;
    for (int m = 0; m < nd->n_inputs; m++) {
      const graph_node_state *in = &st[nd->inputs[m]];
      if (in->rep == REP_ACT) {
        n_act++;
        act_from = nd->inputs[m];
      } else if (in->rep == REP_GAUSS) {
        if (in->comb.n > 0) n_gauss_terms++;
      } else {
        return AE_EUNSUPPORTED;
      }
    }
    if (n_act > 0) {
      /* An activation output passes through unchanged; a sum of them
       * (or with Gaussians) is not tracked. */
      if (n_act > 1 || n_gauss_terms > 0) return AE_EUNSUPPORTED;
      s->rep = REP_ACT;
      s->K = malloc(sizeof(double) * nn);
      s->T = malloc(sizeof(double) * nn);
      if (!s->K || !s->T) return AE_ENOMEM;
      memcpy(s->K, st[act_from].K, sizeof(double) * nn);
      memcpy(s->T, st[act_from].T, sizeof(double) * nn);
      return 0;
    }
    s->raw_input = nd->n_inputs == 1 && st[nd->inputs[0]].raw_input;
    for (int m = 0; m < nd->n_inputs; m++)
      if (combination_add(&s->comb, &st[nd->inputs[m]].comb, 1.0))
        return AE_ENOMEM;
    component_retain(ct, &s->comb);
    s->rep = REP_GAUSS;
    return 0;
  }
  case AE_OP_ACT: {
    if (nd->n_inputs != 1) return AE_EINVAL;
    const graph_node_state *in = &st[nd->inputs[0]];
    /* Only a zero-mean Gaussian input: a combination of linear outputs,
     * never the raw data. */
    if (in->rep != REP_GAUSS) return AE_EUNSUPPORTED;
    for (int m = 0; m < in->comb.n; m++)
      if (in->comb.component[m] == 0) return AE_EUNSUPPORTED;
    int rc = input_kernels(in, ct, N, K_tmp, T_tmp);
    if (rc) return rc;
    s->rep = REP_ACT;
    s->K = malloc(sizeof(double) * nn);
    s->T = malloc(sizeof(double) * nn);
    if (!s->K || !s->T) return AE_ENOMEM;
    dual_matrices(nd->act, 1.0, K_tmp, N, s->K, s->T);
    for (size_t e = 0; e < nn; e++) s->T[e] *= T_tmp[e];
    return 0;
  }
  case AE_OP_LINEAR: {
    if (nd->n_inputs != 1) return AE_EINVAL;
    const graph_node_state *in = &st[nd->inputs[0]];
    int rc = input_kernels(in, ct, N, K_tmp, T_tmp);
    if (rc) return rc;
    int trained = trained_stem || !in->raw_input;
    double gain = nd->init_gain > 0 ? nd->init_gain : 1.0;
    int c = ct->n++;
    ct->K[c] = malloc(sizeof(double) * nn);
    ct->T[c] = malloc(sizeof(double) * nn);
    if (!ct->K[c] || !ct->T[c]) return AE_ENOMEM;
    for (size_t e = 0; e < nn; e++) {
      ct->K[c][e] = gain * K_tmp[e];
      ct->T[c][e] = gain * ((trained ? K_tmp[e] : 0.0) + T_tmp[e]) +
                    (trained && nd->bias ? 1.0 : 0.0);
    }
    if (combination_unit(&s->comb, c)) return AE_ENOMEM;
    component_retain(ct, &s->comb);
    s->rep = REP_GAUSS;
    return 0;
  }
  default:
    return AE_EUNSUPPORTED; /* conv, batch norm, pools */
  }
}

int ae_graph_kernels(const ae_graph *g, const double *K0, int N,
                     int trained_stem, double *K_out, double *T_out) {
  if (!g || g->n_nodes < 1 || N < 1 || !K0 || !K_out || !T_out ||
      g->output < 0 || g->output >= g->n_nodes ||
      g->nodes[0].op != AE_OP_INPUT)
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
  int status = AE_ENOMEM;
  graph_node_state *st = calloc((size_t)n, sizeof(*st));
  component_table ct = {0};
  ct.cap = 1 + n_linear;
  ct.K = calloc((size_t)ct.cap, sizeof(double *));
  ct.T = calloc((size_t)ct.cap, sizeof(double *));
  ct.refs = calloc((size_t)ct.cap, sizeof(int));
  double *K_tmp = malloc(sizeof(double) * nn);
  double *T_tmp = malloc(sizeof(double) * nn);
  if (!st || !ct.K || !ct.T || !ct.refs || !K_tmp || !T_tmp) goto done;

  /* Free each node's state after its last reader. */
  for (int t = 0; t < n; t++) st[t].last_use = t;
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
  st[0].rep = REP_GAUSS;
  ct.refs[0]++; /* held until the end */

  for (int t = 1; t <= g->output; t++) {
    status = graph_node_step(g, t, N, trained_stem, st, &ct, K_tmp, T_tmp);
    if (status == AE_EUNSUPPORTED && st[t].last_use == t) {
      status = 0; /* a dead branch does not matter */
      node_state_release(&st[t], &ct);
    }
    if (status) goto done;
    for (int m = 0; m < g->nodes[t].n_inputs; m++) {
      int in = g->nodes[t].inputs[m];
      if (st[in].last_use == t && in != 0) node_state_release(&st[in], &ct);
    }
  }
  /* The output's own tangent kernel is the NTK; report T = NTK - K so that
   * NTK = K + T here as for ae_dag_kernels. */
  status = input_kernels(&st[g->output], &ct, N, K_out, T_out);
  if (status == 0)
    for (size_t e = 0; e < nn; e++) T_out[e] -= K_out[e];

done:
  if (st) {
    for (int t = 0; t < n; t++) node_state_release(&st[t], &ct);
  }
  if (ct.K)
    for (int k = 0; k < ct.cap; k++) free(ct.K[k]);
  if (ct.T)
    for (int k = 0; k < ct.cap; k++) free(ct.T[k]);
  free(ct.K);
  free(ct.T);
  free(ct.refs);
  free(st);
  free(K_tmp);
  free(T_tmp);
  return status;
}
