/* arch.c: parses a request's "architecture" object into an ae_arch.
 *
 * Three forms (scorecard.md §1.1): nb201 (a cell string in the NB201
 * skeleton), mlp_dag (a DAG string of the CONV/NFL MLP space) and graph (a
 * general node list, topologically sorted here with Kahn's algorithm).
 * Every offending field is reported by JSON pointer; parsing collects all
 * errors it can find rather than stopping at the first.  Plain data, no
 * I/O; the caller owns the result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/arch.h"
#include "api/arch_cells.h"
#include "api/status.h"

void ae_limits_default(ae_limits *lim) {
  lim->max_nodes = 4096;
  lim->max_inputs_per_node = 64;
  lim->max_params = 1e9;
  lim->max_working_set_bytes = 0;
  lim->max_batch_size = 4096;
  lim->default_timeout_ms = 600000;
}

int ae_arch_has_dag(ae_arch_type type) {
  return type == AE_ARCH_NB201 || type == AE_ARCH_MLP_DAG;
}

void ae_arch_free(ae_arch *a) {
  if (!a) return;
  free(a->dag.edges);
  ae_graph_free(&a->graph);
  free(a->model);
  memset(a, 0, sizeof *a);
}

/* ---- activations in JSON ---- */

/* Parses an activation given as a name or {"fn": name, "slope": x}. */
static int parse_activation(const json_t *v, const char *ptr,
                            ae_activation *out, ae_problem *p) {
  out->fn = AE_ACT_RELU;
  out->slope = 0.01;
  if (json_is_string(v)) {
    if (ae_act_from_name(json_string_value(v), &out->fn) != AE_OK) {
      ae_problem_add(p, ptr,
                     "unknown activation \"%s\" (expected relu, leaky_relu, "
                     "tanh, sigmoid, swish, gelu, erf, identity, relu6, "
                     "hardswish or hardsigmoid)",
                     json_string_value(v));
      return 1;
    }
    return 0;
  }
  if (!json_is_object(v)) {
    ae_problem_add(p, ptr,
                   "must be an activation name or {\"fn\", \"slope\"}, not %s",
                   ae_json_type_name(v));
    return 1;
  }
  static const char *const keys[] = {"fn", "slope", NULL};
  int errors = ae_check_keys(v, keys, ptr, p);
  char sub[AE_PTR_MAX];
  ae_ptr_key(sub, sizeof sub, ptr, "fn");
  const json_t *fn = json_object_get(v, "fn");
  if (!fn) {
    ae_problem_add(p, sub, "required field \"fn\" is missing");
    return errors + 1;
  }
  if (!json_is_string(fn) ||
      ae_act_from_name(json_string_value(fn), &out->fn) != AE_OK) {
    ae_problem_add(
        p, sub, "unknown activation %s%s%s", json_is_string(fn) ? "\"" : "(",
        json_is_string(fn) ? json_string_value(fn) : ae_json_type_name(fn),
        json_is_string(fn) ? "\"" : ")");
    return errors + 1;
  }
  if (json_object_get(v, "slope") && out->fn != AE_ACT_LEAKY_RELU) {
    ae_ptr_key(sub, sizeof sub, ptr, "slope");
    ae_problem_add(p, sub, "\"slope\" applies to leaky_relu only");
    return errors + 1;
  }
  errors += ae_get_number(v, "slope", ptr, 0.0, 1.0, 0, &out->slope, p);
  return errors;
}

/* ---- nb201 ---- */

static const char *const nb201_op_names[] = {
    "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"};

/* Parses "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|" strictly into ops[6]. */
static int parse_nb201_cell(const char *s, const char *ptr, ae_nb201_op ops[6],
                            ae_problem *p) {
  const char *c = s;
  int edge = 0;
  for (int node = 1; node <= 3; node++) {
    if (node > 1) {
      if (*c != '+') {
        ae_problem_add(p, ptr, "expected '+' before node %d at offset %d", node,
                       (int)(c - s));
        return 1;
      }
      c++;
    }
    if (*c != '|') {
      ae_problem_add(p, ptr, "expected '|' at offset %d", (int)(c - s));
      return 1;
    }
    c++;
    for (int src = 0; src < node; src++, edge++) {
      const char *tilde = strchr(c, '~');
      const char *bar = strchr(c, '|');
      if (!tilde || !bar || tilde > bar) {
        ae_problem_add(p, ptr, "edge %d: expected \"op~%d|\" at offset %d",
                       edge, src, (int)(c - s));
        return 1;
      }
      size_t len = (size_t)(tilde - c);
      int found = -1;
      for (int k = 0; k < 5; k++)
        if (strlen(nb201_op_names[k]) == len &&
            strncmp(nb201_op_names[k], c, len) == 0)
          found = k;
      if (found < 0) {
        ae_problem_add(p, ptr,
                       "unknown op \"%.*s\" on edge %d (expected none, "
                       "skip_connect, nor_conv_1x1, nor_conv_3x3 or "
                       "avg_pool_3x3)",
                       (int)(len > 64 ? 64 : len), c, edge);
        return 1;
      }
      if (bar - tilde != 2 || tilde[1] != '0' + src) {
        ae_problem_add(p, ptr, "edge %d into node %d must come from node %d",
                       edge, node, src);
        return 1;
      }
      ops[edge] = (ae_nb201_op)found;
      c = bar + 1;
    }
  }
  if (*c != '\0') {
    ae_problem_add(p, ptr, "unexpected text after the third node at offset %d",
                   (int)(c - s));
    return 1;
  }
  return 0;
}

static int nb201_edge_kind(ae_nb201_op op) {
  switch (op) {
  case AE_NB201_NONE:
    return AE_EDGE_ZERO;
  case AE_NB201_SKIP:
  case AE_NB201_POOL3X3:
    return AE_EDGE_SKIP;
  case AE_NB201_CONV1X1:
  case AE_NB201_CONV3X3:
    return AE_EDGE_LINEAR;
  }
  return AE_EDGE_ZERO;
}

static int parse_nb201(const json_t *j, const char *pointer, ae_arch *a,
                       ae_problem *p) {
  static const char *const keys[] = {
      "type", "cell", "channels", "cells_per_stage", "num_classes", NULL};
  int errors = ae_check_keys(j, keys, pointer, p);
  char ptr[AE_PTR_MAX];
  ae_ptr_key(ptr, sizeof ptr, pointer, "cell");
  const json_t *cell = json_object_get(j, "cell");
  if (!cell) {
    ae_problem_add(p, ptr, "required field \"cell\" is missing");
    errors++;
  } else if (!json_is_string(cell)) {
    ae_problem_add(p, ptr, "must be a string, not %s", ae_json_type_name(cell));
    errors++;
  } else {
    errors += parse_nb201_cell(json_string_value(cell), ptr, a->nb201_ops, p);
  }
  long long channels = 16, cells = 5, classes = 0;
  errors += ae_get_int(j, "channels", pointer, 1, 65536, &channels, p);
  errors += ae_get_int(j, "cells_per_stage", pointer, 1, 64, &cells, p);
  errors += ae_get_int(j, "num_classes", pointer, 2, 100000, &classes, p);
  a->channels = (int)channels;
  a->cells_per_stage = (int)cells;
  a->num_classes = (int)classes;
  if (errors) return errors;
  a->dag.edges = calloc(6, sizeof *a->dag.edges);
  if (!a->dag.edges) return -1;
  a->dag.n_nodes = 4;
  a->dag.n_edges = 6;
  static const int srcs[6] = {0, 0, 1, 0, 1, 2}, dsts[6] = {1, 2, 2, 3, 3, 3};
  for (int e = 0; e < 6; e++) {
    a->dag.edges[e].src = srcs[e];
    a->dag.edges[e].dst = dsts[e];
    a->dag.edges[e].kind = (ae_edge_kind)nb201_edge_kind(a->nb201_ops[e]);
    a->dag.edges[e].act.fn = AE_ACT_RELU;
    a->dag.edges[e].act.slope = 0.01;
  }
  return 0;
}

/* ---- mlp_dag ---- */

static int parse_mlp_dag(const json_t *j, const char *pointer,
                         const ae_limits *lim, ae_arch *a, ae_problem *p) {
  static const char *const keys[] = {
      "type", "dag", "width", "activation", "bias", "num_classes", NULL};
  int errors = ae_check_keys(j, keys, pointer, p);
  char ptr[AE_PTR_MAX];
  long long width = 256, classes = 0;
  int bias = 0;
  errors += ae_get_int(j, "width", pointer, 1, 1 << 20, &width, p);
  errors += ae_get_int(j, "num_classes", pointer, 2, 100000, &classes, p);
  errors += ae_get_bool(j, "bias", pointer, &bias, p);
  a->width = (int)width;
  a->num_classes = (int)classes;
  a->bias = bias;

  ae_ptr_key(ptr, sizeof ptr, pointer, "dag");
  const json_t *dag = json_object_get(j, "dag");
  int dag_ok = 0;
  if (!dag) {
    ae_problem_add(p, ptr, "required field \"dag\" is missing");
    errors++;
  } else if (!json_is_string(dag)) {
    ae_problem_add(p, ptr, "must be a string, not %s", ae_json_type_name(dag));
    errors++;
  } else {
    /* Check the string's shape: group k has k digits in 0..2. */
    const char *s = json_string_value(dag);
    int groups = 0, len = 0, bad = 0;
    long long max_groups = lim->max_inputs_per_node;
    if (max_groups > lim->max_nodes - 1) max_groups = lim->max_nodes - 1;
    for (const char *c = s;; c++) {
      if (*c == '_' || *c == '\0') {
        groups++;
        if (len != groups) {
          ae_problem_add(p, ptr,
                         "group %d must have %d digit%s (inputs of node %d "
                         "from nodes 0..%d), not %d",
                         groups, groups, groups == 1 ? "" : "s", groups,
                         groups - 1, len);
          bad = 1;
          break;
        }
        if (groups > max_groups) {
          ae_problem_add(p, ptr, "more than %lld nodes after the stem",
                         max_groups);
          bad = 1;
          break;
        }
        len = 0;
        if (*c == '\0') break;
      } else if (*c >= '0' && *c <= '2') {
        len++;
      } else {
        ae_problem_add(p, ptr,
                       "invalid character '%c' at offset %d (digits 0 zero, "
                       "1 skip, 2 linear, groups separated by '_')",
                       *c, (int)(c - s));
        bad = 1;
        break;
      }
    }
    if (bad) {
      errors++;
    } else {
      int n_edges = groups * (groups + 1) / 2;
      a->dag.edges = calloc((size_t)n_edges, sizeof *a->dag.edges);
      if (!a->dag.edges) return -1;
      a->dag.n_nodes = groups + 1;
      a->dag.n_edges = n_edges;
      int e = 0, dst = 1, src = 0;
      for (const char *c = s; *c; c++) {
        if (*c == '_') {
          dst++;
          src = 0;
          continue;
        }
        a->dag.edges[e].src = src++;
        a->dag.edges[e].dst = dst;
        a->dag.edges[e].kind = (ae_edge_kind)(*c - '0');
        a->dag.edges[e].act.fn = AE_ACT_RELU;
        a->dag.edges[e].act.slope = 0.01;
        e++;
      }
      dag_ok = 1;
    }
  }

  ae_ptr_key(ptr, sizeof ptr, pointer, "activation");
  const json_t *act = json_object_get(j, "activation");
  if (act && json_is_array(act)) {
    int n_linear = 0;
    for (int e = 0; e < a->dag.n_edges; e++)
      n_linear += a->dag.edges[e].kind == AE_EDGE_LINEAR;
    if (dag_ok && (int)json_array_size(act) != n_linear) {
      ae_problem_add(p, ptr,
                     "has %zu entries but the dag has %d linear edges (one "
                     "activation per linear edge, in string order)",
                     json_array_size(act), n_linear);
      errors++;
    }
    size_t i;
    const json_t *v;
    int k = 0;
    json_array_foreach(act, i, v) {
      char sub[AE_PTR_MAX];
      ae_ptr_index(sub, sizeof sub, ptr, i);
      ae_activation one;
      int err = parse_activation(v, sub, &one, p);
      errors += err;
      if (err || !dag_ok || (int)json_array_size(act) != n_linear) continue;
      while (k < a->dag.n_edges && a->dag.edges[k].kind != AE_EDGE_LINEAR)
        k++;
      if (k < a->dag.n_edges) a->dag.edges[k++].act = one;
    }
  } else if (act) {
    ae_activation one;
    int err = parse_activation(act, ptr, &one, p);
    errors += err;
    if (!err)
      for (int e = 0; e < a->dag.n_edges; e++)
        a->dag.edges[e].act = one;
  }
  return errors;
}

/* ---- graph ---- */

static const struct {
  const char *name;
  int op; /* ae_op or one of the AE_OP_MAX_POOL group */
} graph_ops[] = {
    {"linear", AE_OP_LINEAR},
    {"conv", AE_OP_CONV},
    {"batch_norm", AE_OP_BATCH_NORM},
    {"act", AE_OP_ACT},
    {"avg_pool", AE_OP_AVG_POOL},
    {"global_avg_pool", AE_OP_GLOBAL_AVG_POOL},
    {"add", AE_OP_ADD},
    {"identity", AE_OP_IDENTITY},
    {"zero", AE_OP_ZERO},
    {"flatten", AE_OP_FLATTEN},
    {"max_pool", AE_OP_MAX_POOL},
    {"concat", AE_OP_CONCAT},
    {"mul", AE_OP_MUL},
    {"pad", AE_OP_PAD},
};

#define N_GRAPH_OPS ((int)(sizeof graph_ops / sizeof graph_ops[0]))

const char *ae_op_name(int op) {
  if (op == AE_OP_INPUT) return "input";
  if (op == AE_OP_SLICE) return "slice";
  for (int k = 0; k < N_GRAPH_OPS; k++)
    if (graph_ops[k].op == op) return graph_ops[k].name;
  return "?";
}

/* Ops that take several inputs; the others take exactly one. */
static int op_takes_many_inputs(int op) {
  return op == AE_OP_ADD || op == AE_OP_CONCAT || op == AE_OP_MUL;
}

/* Checks that a pool's or conv's padding is at most half its (dilated)
 * kernel, as PyTorch requires; names the padding field. */
static int check_half_kernel_padding(const ae_node *n, const char *ptr,
                                     ae_problem *p) {
  int span = n->dilation * (n->kernel - 1) + 1;
  if (n->kernel > 0 && 2 * n->padding > span) {
    char sub[AE_PTR_MAX];
    ae_ptr_key(sub, sizeof sub, ptr, "padding");
    ae_problem_add(p, sub, "must be at most half the kernel size");
    return 1;
  }
  return 0;
}

/* One user node while parsing: its fields and resolved inputs (user node
 * indices; -1 = the data). */
typedef struct {
  ae_node node;
  const char *id; /* borrowed from the JSON */
  int ok;         /* fields parsed without error */
} user_node;

typedef struct {
  const char *id;
  int index;
} id_entry;

static int id_cmp(const void *x, const void *y) {
  const id_entry *a = x, *b = y;
  int c = strcmp(a->id, b->id);
  return c ? c : (a->index > b->index) - (a->index < b->index);
}

/* Parses one node's op-specific fields into u->node. */
static int parse_graph_node_fields(const json_t *v, const char *ptr,
                                   user_node *u, ae_problem *p) {
  ae_node *n = &u->node;
  int errors = 0;
  long long x;
  n->init_gain = 1.0;
  n->count_include_pad = 1;
  n->stride = 1;
  n->groups = 1;
  n->dilation = 1;
  /* "block": true marks a block output of ranking.md §0 (any op). */
  errors += ae_get_bool(v, "block", ptr, &n->block, p);
  switch ((int)n->op) {
  case AE_OP_LINEAR: {
    static const char *const keys[] = {"id",  "op",   "inputs", "block",
                                       "out", "bias", NULL};
    errors += ae_check_keys(v, keys, ptr, p);
    x = 0;
    errors += ae_get_int_req(v, "out", ptr, 1, 1 << 24, &x, p);
    n->out = (int)x;
    errors += ae_get_bool(v, "bias", ptr, &n->bias, p);
    break;
  }
  case AE_OP_CONV: {
    static const char *const keys[] = {
        "id",     "op",      "inputs", "block",    "out",  "kernel",
        "stride", "padding", "groups", "dilation", "bias", NULL};
    errors += ae_check_keys(v, keys, ptr, p);
    x = 0;
    errors += ae_get_int_req(v, "out", ptr, 1, 1 << 20, &x, p);
    n->out = (int)x;
    x = 0;
    errors += ae_get_int_req(v, "kernel", ptr, 1, 64, &x, p);
    n->kernel = (int)x;
    x = 1;
    errors += ae_get_int(v, "stride", ptr, 1, 64, &x, p);
    n->stride = (int)x;
    x = 0;
    errors += ae_get_int(v, "padding", ptr, 0, 64, &x, p);
    n->padding = (int)x;
    x = 1;
    errors += ae_get_int(v, "groups", ptr, 1, 1 << 20, &x, p);
    n->groups = (int)x;
    x = 1;
    errors += ae_get_int(v, "dilation", ptr, 1, 64, &x, p);
    n->dilation = (int)x;
    errors += ae_get_bool(v, "bias", ptr, &n->bias, p);
    if (!errors && n->out % n->groups != 0) {
      char sub[AE_PTR_MAX];
      ae_ptr_key(sub, sizeof sub, ptr, "groups");
      ae_problem_add(p, sub, "%d does not divide out (%d)", n->groups, n->out);
      errors++;
    }
    break;
  }
  case AE_OP_MAX_POOL: {
    static const char *const keys[] = {
        "id",     "op",      "inputs",   "block",     "kernel",
        "stride", "padding", "dilation", "ceil_mode", NULL};
    errors += ae_check_keys(v, keys, ptr, p);
    x = 0;
    errors += ae_get_int_req(v, "kernel", ptr, 1, 64, &x, p);
    n->kernel = (int)x;
    x = n->kernel;
    errors += ae_get_int(v, "stride", ptr, 1, 64, &x, p);
    n->stride = (int)x;
    x = 0;
    errors += ae_get_int(v, "padding", ptr, 0, 64, &x, p);
    n->padding = (int)x;
    x = 1;
    errors += ae_get_int(v, "dilation", ptr, 1, 64, &x, p);
    n->dilation = (int)x;
    errors += ae_get_bool(v, "ceil_mode", ptr, &n->ceil_mode, p);
    if (!errors) errors += check_half_kernel_padding(n, ptr, p);
    break;
  }
  case AE_OP_PAD: {
    static const char *const keys[] = {"id",    "op",   "inputs",
                                       "block", "pads", NULL};
    errors += ae_check_keys(v, keys, ptr, p);
    char sub[AE_PTR_MAX];
    ae_ptr_key(sub, sizeof sub, ptr, "pads");
    const json_t *pads = json_object_get(v, "pads");
    if (!pads) {
      ae_problem_add(p, sub, "required field \"pads\" is missing");
      errors++;
    } else if (!json_is_array(pads) || json_array_size(pads) != 4) {
      ae_problem_add(p, sub,
                     "must be an array of 4 integers [top, left, bottom, "
                     "right]");
      errors++;
    } else {
      for (int k = 0; k < 4; k++) {
        const json_t *e = json_array_get(pads, (size_t)k);
        char ep[AE_PTR_MAX];
        ae_ptr_index(ep, sizeof ep, sub, (size_t)k);
        if (!json_is_integer(e) || json_integer_value(e) < 0 ||
            json_integer_value(e) > 64) {
          ae_problem_add(p, ep, "must be an integer from 0 to 64");
          errors++;
        } else {
          n->pads[k] = (int)json_integer_value(e);
        }
      }
    }
    break;
  }
  case AE_OP_AVG_POOL: {
    static const char *const keys[] = {
        "id",     "op",     "inputs",  "block",
        "kernel", "stride", "padding", "count_include_pad",
        NULL};
    errors += ae_check_keys(v, keys, ptr, p);
    x = 0;
    errors += ae_get_int_req(v, "kernel", ptr, 1, 64, &x, p);
    n->kernel = (int)x;
    x = n->kernel;
    errors += ae_get_int(v, "stride", ptr, 1, 64, &x, p);
    n->stride = (int)x;
    x = 0;
    errors += ae_get_int(v, "padding", ptr, 0, 64, &x, p);
    n->padding = (int)x;
    errors +=
        ae_get_bool(v, "count_include_pad", ptr, &n->count_include_pad, p);
    if (!errors) errors += check_half_kernel_padding(n, ptr, p);
    break;
  }
  case AE_OP_ACT: {
    static const char *const keys[] = {"id", "op",    "inputs", "block",
                                       "fn", "slope", NULL};
    errors += ae_check_keys(v, keys, ptr, p);
    char sub[AE_PTR_MAX];
    ae_ptr_key(sub, sizeof sub, ptr, "fn");
    const json_t *fn = json_object_get(v, "fn");
    n->act.fn = AE_ACT_RELU;
    n->act.slope = 0.01;
    if (!fn) {
      ae_problem_add(p, sub, "required field \"fn\" is missing");
      errors++;
    } else if (!json_is_string(fn) ||
               ae_act_from_name(json_string_value(fn), &n->act.fn) != AE_OK) {
      ae_problem_add(p, sub,
                     "must be one of relu, leaky_relu, tanh, sigmoid, swish, "
                     "gelu, erf, identity, relu6, hardswish, hardsigmoid");
      errors++;
    } else if (json_object_get(v, "slope") && n->act.fn != AE_ACT_LEAKY_RELU) {
      ae_ptr_key(sub, sizeof sub, ptr, "slope");
      ae_problem_add(p, sub, "\"slope\" applies to leaky_relu only");
      errors++;
    } else {
      errors += ae_get_number(v, "slope", ptr, 0.0, 1.0, 0, &n->act.slope, p);
    }
    break;
  }
  default: {
    static const char *const keys[] = {"id", "op", "inputs", "block", NULL};
    errors += ae_check_keys(v, keys, ptr, p);
    break;
  }
  }
  return errors;
}

/* Finds the user node index of id among sorted entries; -1 if none. */
static int find_id(const id_entry *ids, int n, const char *id) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    int c = strcmp(ids[mid].id, id);
    if (c == 0) {
      while (mid > 0 && strcmp(ids[mid - 1].id, id) == 0)
        mid--;
      return ids[mid].index;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

/* Sorts the parsed nodes topologically (Kahn, FIFO in request order), keeps
 * the ancestors of the output, and builds a->graph.  Returns 0, an error
 * count (a cycle), or -1 (no memory). */
static int build_graph(user_node *un, int n, int output, const char *ptr_nodes,
                       ae_arch *a, ae_problem *p) {
  int rc = -1;
  int *indeg = calloc((size_t)n, sizeof *indeg);
  int *order = malloc((size_t)n * sizeof *order);
  int *first = calloc((size_t)n + 1, sizeof *first);
  int *newidx = malloc((size_t)n * sizeof *newidx);
  int *keep = calloc((size_t)n, sizeof *keep);
  int *adj = NULL;
  int n_edges = 0;
  if (!indeg || !order || !first || !newidx || !keep) goto done;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < un[i].node.n_inputs; k++)
      if (un[i].node.inputs[k] >= 0) {
        first[un[i].node.inputs[k] + 1]++;
        indeg[i]++;
        n_edges++;
      }
  for (int i = 0; i < n; i++)
    first[i + 1] += first[i];
  adj = malloc(((size_t)n_edges + 1) * sizeof *adj);
  if (!adj) goto done;
  {
    int *fill = newidx; /* scratch */
    for (int i = 0; i < n; i++)
      fill[i] = first[i];
    for (int i = 0; i < n; i++)
      for (int k = 0; k < un[i].node.n_inputs; k++)
        if (un[i].node.inputs[k] >= 0) adj[fill[un[i].node.inputs[k]]++] = i;
  }
  int head = 0, tail = 0;
  for (int i = 0; i < n; i++)
    if (indeg[i] == 0) order[tail++] = i;
  while (head < tail) {
    int v = order[head++];
    for (int e = first[v]; e < first[v + 1]; e++)
      if (--indeg[adj[e]] == 0) order[tail++] = adj[e];
  }
  if (tail < n) {
    /* Walk back along unfinished inputs until a node repeats: it is on a
     * cycle. */
    int v = -1;
    for (int i = 0; i < n && v < 0; i++)
      if (indeg[i] > 0) v = i;
    for (int i = 0; i < n; i++)
      keep[i] = 0;
    while (!keep[v]) {
      keep[v] = 1;
      int next = -1;
      for (int k = 0; k < un[v].node.n_inputs && next < 0; k++) {
        int u = un[v].node.inputs[k];
        if (u >= 0 && indeg[u] > 0) next = u;
      }
      if (next < 0) break; /* cannot happen */
      v = next;
    }
    char ptr[AE_PTR_MAX];
    ae_ptr_index(ptr, sizeof ptr, ptr_nodes, (size_t)v);
    ae_problem_add(p, ptr, "node \"%s\" is on a cycle", un[v].id);
    rc = 1;
    goto done;
  }
  /* Keep the output's ancestors only. */
  keep[output] = 1;
  for (int t = n - 1; t >= 0; t--) {
    int v = order[t];
    if (!keep[v]) continue;
    for (int k = 0; k < un[v].node.n_inputs; k++)
      if (un[v].node.inputs[k] >= 0) keep[un[v].node.inputs[k]] = 1;
  }
  int n_kept = 0;
  for (int i = 0; i < n; i++)
    n_kept += keep[i];
  ae_graph *g = &a->graph;
  g->nodes = calloc((size_t)n_kept + 1, sizeof *g->nodes);
  if (!g->nodes) goto done;
  g->nodes[0].op = AE_OP_INPUT;
  g->nodes[0].src_index = -1;
  g->nodes[0].init_gain = 1.0;
  g->nodes[0].name = strdup("input");
  g->n_nodes = 1;
  if (!g->nodes[0].name) goto done;
  for (int t = 0; t < n; t++) {
    int v = order[t];
    if (!keep[v]) continue;
    ae_node *dst = &g->nodes[g->n_nodes];
    *dst = un[v].node;
    dst->name = strdup(un[v].id);
    dst->inputs = malloc((size_t)dst->n_inputs * sizeof *dst->inputs);
    if (!dst->name || !dst->inputs) {
      free(dst->name);
      free(dst->inputs);
      dst->name = NULL;
      dst->inputs = NULL;
      goto done;
    }
    for (int k = 0; k < dst->n_inputs; k++) {
      int u = un[v].node.inputs[k];
      dst->inputs[k] = u < 0 ? 0 : newidx[u];
    }
    newidx[v] = g->n_nodes++;
  }
  g->output = newidx[output];
  rc = 0;
done:
  free(indeg);
  free(order);
  free(first);
  free(newidx);
  free(keep);
  free(adj);
  return rc;
}

static int parse_graph(const json_t *j, const char *pointer,
                       const ae_limits *lim, ae_arch *a, ae_problem *p) {
  static const char *const keys[] = {"type", "nodes", "output", NULL};
  int errors = ae_check_keys(j, keys, pointer, p);
  char ptr_nodes[AE_PTR_MAX], ptr[AE_PTR_MAX];
  ae_ptr_key(ptr_nodes, sizeof ptr_nodes, pointer, "nodes");
  const json_t *nodes = json_object_get(j, "nodes");
  const json_t *output = json_object_get(j, "output");
  ae_ptr_key(ptr, sizeof ptr, pointer, "output");
  if (!output) {
    ae_problem_add(p, ptr, "required field \"output\" is missing");
    errors++;
  } else if (!json_is_string(output)) {
    ae_problem_add(p, ptr, "must be a node id string, not %s",
                   ae_json_type_name(output));
    errors++;
  }
  if (!nodes) {
    ae_problem_add(p, ptr_nodes, "required field \"nodes\" is missing");
    return errors + 1;
  }
  if (!json_is_array(nodes)) {
    ae_problem_add(p, ptr_nodes, "must be an array, not %s",
                   ae_json_type_name(nodes));
    return errors + 1;
  }
  size_t n = json_array_size(nodes);
  if (n == 0) {
    ae_problem_add(p, ptr_nodes, "must have at least one node");
    return errors + 1;
  }
  if (n > (size_t)lim->max_nodes) {
    ae_problem_add(p, ptr_nodes, "has %zu nodes, more than the limit of %d", n,
                   lim->max_nodes);
    return errors + 1;
  }
  user_node *un = calloc(n, sizeof *un);
  id_entry *ids = calloc(n, sizeof *ids);
  int n_ids = 0, rc = -1;
  if (!un || !ids) goto done;
  /* Pass 1: ids, ops, fields. */
  for (size_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(nodes, i);
    char np[AE_PTR_MAX], fp[AE_PTR_MAX];
    ae_ptr_index(np, sizeof np, ptr_nodes, i);
    un[i].node.src_index = (int)i;
    if (!json_is_object(v)) {
      ae_problem_add(p, np, "must be an object, not %s", ae_json_type_name(v));
      errors++;
      continue;
    }
    int node_errors = 0;
    const json_t *id = json_object_get(v, "id");
    ae_ptr_key(fp, sizeof fp, np, "id");
    if (!id) {
      ae_problem_add(p, fp, "required field \"id\" is missing");
      node_errors++;
    } else if (!json_is_string(id) || json_string_length(id) == 0 ||
               json_string_length(id) > 128) {
      ae_problem_add(p, fp, "must be a non-empty string of at most 128 bytes");
      node_errors++;
    } else if (strcmp(json_string_value(id), "input") == 0) {
      ae_problem_add(p, fp, "\"input\" is reserved for the data");
      node_errors++;
    } else {
      un[i].id = json_string_value(id);
      ids[n_ids].id = un[i].id;
      ids[n_ids].index = (int)i;
      n_ids++;
    }
    const json_t *op = json_object_get(v, "op");
    ae_ptr_key(fp, sizeof fp, np, "op");
    int op_ok = 0;
    if (!op) {
      ae_problem_add(p, fp, "required field \"op\" is missing");
      node_errors++;
    } else if (!json_is_string(op)) {
      ae_problem_add(p, fp, "must be a string, not %s", ae_json_type_name(op));
      node_errors++;
    } else {
      for (int k = 0; k < N_GRAPH_OPS; k++)
        if (strcmp(graph_ops[k].name, json_string_value(op)) == 0) {
          un[i].node.op = (ae_op)graph_ops[k].op;
          op_ok = 1;
        }
      if (!op_ok) {
        ae_problem_add(p, fp,
                       "unknown op \"%s\" (expected linear, conv, batch_norm, "
                       "act, avg_pool, max_pool, global_avg_pool, add, mul, "
                       "concat, pad, identity, zero or flatten)",
                       json_string_value(op));
        node_errors++;
      }
    }
    if (op_ok) node_errors += parse_graph_node_fields(v, np, &un[i], p);
    const json_t *inputs = json_object_get(v, "inputs");
    ae_ptr_key(fp, sizeof fp, np, "inputs");
    if (!inputs) {
      ae_problem_add(p, fp, "required field \"inputs\" is missing");
      node_errors++;
    } else if (!json_is_array(inputs)) {
      ae_problem_add(p, fp, "must be an array of node ids, not %s",
                     ae_json_type_name(inputs));
      node_errors++;
    } else {
      size_t ni = json_array_size(inputs);
      int many = op_ok && op_takes_many_inputs((int)un[i].node.op);
      if (ni == 0 || ni > (size_t)lim->max_inputs_per_node) {
        ae_problem_add(p, fp, "must have 1 to %d inputs, not %zu",
                       lim->max_inputs_per_node, ni);
        node_errors++;
      } else if (op_ok && !many && ni != 1) {
        ae_problem_add(p, fp, "op \"%s\" takes exactly one input, not %zu",
                       json_string_value(op), ni);
        node_errors++;
      } else {
        for (size_t k = 0; k < ni; k++) {
          const json_t *in = json_array_get(inputs, k);
          if (!json_is_string(in)) {
            char ip[AE_PTR_MAX];
            ae_ptr_index(ip, sizeof ip, fp, k);
            ae_problem_add(p, ip, "must be a node id string, not %s",
                           ae_json_type_name(in));
            node_errors++;
          }
        }
      }
    }
    errors += node_errors;
    un[i].ok = node_errors == 0;
  }
  /* Duplicate ids. */
  qsort(ids, (size_t)n_ids, sizeof *ids, id_cmp);
  for (int k = 1; k < n_ids; k++)
    if (strcmp(ids[k].id, ids[k - 1].id) == 0) {
      char fp[AE_PTR_MAX], np[AE_PTR_MAX];
      ae_ptr_index(np, sizeof np, ptr_nodes, (size_t)ids[k].index);
      ae_ptr_key(fp, sizeof fp, np, "id");
      ae_problem_add(p, fp, "duplicate id \"%s\" (first at node %d)", ids[k].id,
                     ids[k - 1].index);
      errors++;
    }
  /* Pass 2: resolve inputs. */
  for (size_t i = 0; i < n; i++) {
    if (!un[i].ok) continue;
    const json_t *inputs = json_object_get(json_array_get(nodes, i), "inputs");
    size_t ni = json_array_size(inputs);
    un[i].node.inputs = malloc(ni * sizeof *un[i].node.inputs);
    if (!un[i].node.inputs) goto done;
    un[i].node.n_inputs = (int)ni;
    for (size_t k = 0; k < ni; k++) {
      const char *id = json_string_value(json_array_get(inputs, k));
      int idx = strcmp(id, "input") == 0 ? -1 : find_id(ids, n_ids, id);
      if (idx == -1 && strcmp(id, "input") != 0) {
        char ip[AE_PTR_MAX], np[AE_PTR_MAX], fp[AE_PTR_MAX];
        ae_ptr_index(np, sizeof np, ptr_nodes, i);
        ae_ptr_key(fp, sizeof fp, np, "inputs");
        ae_ptr_index(ip, sizeof ip, fp, k);
        ae_problem_add(p, ip, "no node has id \"%s\"", id);
        errors++;
      }
      un[i].node.inputs[k] = idx;
    }
  }
  int out_index = -1;
  if (output && json_is_string(output) && n_ids > 0) {
    out_index = find_id(ids, n_ids, json_string_value(output));
    if (out_index < 0) {
      ae_problem_add(p, ptr, "no node has id \"%s\"",
                     json_string_value(output));
      errors++;
    }
  }
  if (errors) {
    rc = errors;
    goto done;
  }
  rc = build_graph(un, (int)n, out_index, ptr_nodes, a, p);
done:
  if (un)
    for (size_t i = 0; i < n; i++)
      free(un[i].node.inputs);
  free(un);
  free(ids);
  return rc;
}

int ae_arch_from_json(const json_t *j, const char *pointer,
                      const ae_limits *lim, ae_arch *out, ae_problem *p) {
  memset(out, 0, sizeof *out);
  if (!json_is_object(j)) {
    ae_problem_add(p, pointer, "must be an object, not %s",
                   j ? ae_json_type_name(j) : "missing");
    return AE_EINVAL;
  }
  char ptr[AE_PTR_MAX];
  ae_ptr_key(ptr, sizeof ptr, pointer, "type");
  const json_t *type = json_object_get(j, "type");
  int rc;
  if (!type) {
    ae_problem_add(p, ptr,
                   "required field \"type\" is missing (nb201, "
                   "mlp_dag, graph, nb101 or darts)");
    return AE_EINVAL;
  }
  const char *t = json_is_string(type) ? json_string_value(type) : "";
  if (strcmp(t, "nb201") == 0) {
    out->type = AE_ARCH_NB201;
    rc = parse_nb201(j, pointer, out, p);
  } else if (strcmp(t, "mlp_dag") == 0) {
    out->type = AE_ARCH_MLP_DAG;
    rc = parse_mlp_dag(j, pointer, lim, out, p);
  } else if (strcmp(t, "graph") == 0) {
    out->type = AE_ARCH_GRAPH;
    rc = parse_graph(j, pointer, lim, out, p);
  } else if (strcmp(t, "nb101") == 0) {
    out->type = AE_ARCH_NB101;
    rc = ae_parse_nb101(j, pointer, out, p);
  } else if (strcmp(t, "darts") == 0) {
    out->type = AE_ARCH_DARTS;
    rc = ae_parse_darts(j, pointer, out, p);
  } else {
    ae_problem_add(p, ptr,
                   "must be \"nb201\", \"mlp_dag\", \"graph\", \"nb101\" or "
                   "\"darts\"");
    return AE_EINVAL;
  }
  if (rc == 0) return AE_OK;
  ae_arch_free(out);
  if (rc < 0) {
    ae_problem_set(p, 500, "internal", NULL, "out of memory while parsing");
    return AE_ENOMEM;
  }
  return AE_EINVAL;
}
