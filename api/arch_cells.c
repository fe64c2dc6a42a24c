/* arch_cells.c: parses the benchmark-cell architecture forms, nb101 and
 * darts, into an ae_arch.
 *
 * nb101 is NAS-Bench-101's cell: an upper-triangular adjacency matrix of 2
 * to 7 vertices and one op per vertex.  It is pruned as nasbench's
 * ModelSpec prunes (vertices not on an input-output path go) and then
 * checked as nasbench's api checks a spec (at most 9 edges, a path from
 * input to output).  darts is a DARTS genotype (normal and reduce cells of
 * 4 nodes x 2 inputs from DARTS' 8 ops), given as an object
 * {"normal", "normal_concat", "reduce", "reduce_concat"}, as NAS-Bench-301's
 * compact form [[[input, op]...], [...]], or as the genotype string DARTS'
 * genotypes.py prints.  Every offending field is named by JSON pointer.
 * Plain data, no I/O; the caller owns the result. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/arch.h"
#include "api/arch_cells.h"
#include "api/status.h"

/* ---- nb101 ---- */

static const char *const nb101_op_names[] = {
    [AE_NB101_INPUT] = "input",
    [AE_NB101_CONV1X1] = "conv1x1-bn-relu",
    [AE_NB101_CONV3X3] = "conv3x3-bn-relu",
    [AE_NB101_MAXPOOL] = "maxpool3x3",
    [AE_NB101_OUTPUT] = "output"};

const char *ae_nb101_op_name(ae_nb101_op op) {
  if ((int)op < 0 || op > AE_NB101_OUTPUT) return "?";
  return nb101_op_names[op];
}

/* Removes the vertices that are not on a path from input (0) to output
 * (n-1), as nasbench's ModelSpec._prune does.  Returns 0, or 1 when the
 * output is not reachable from the input. */
static int nb101_prune(int *n_io, unsigned char m[7][7], ae_nb101_op ops[7]) {
  int n = *n_io;
  int from_in[7] = {0}, to_out[7] = {0};
  from_in[0] = 1;
  for (int j = 1; j < n; j++)
    for (int i = 0; i < j; i++)
      if (m[i][j] && from_in[i]) from_in[j] = 1;
  to_out[n - 1] = 1;
  for (int i = n - 2; i >= 0; i--)
    for (int j = i + 1; j < n; j++)
      if (m[i][j] && to_out[j]) to_out[i] = 1;
  if (!from_in[n - 1]) return 1;
  int keep[7], k = 0;
  for (int v = 0; v < n; v++)
    if (from_in[v] && to_out[v]) keep[k++] = v;
  unsigned char pruned[7][7];
  memset(pruned, 0, sizeof pruned);
  ae_nb101_op pops[7];
  for (int a = 0; a < k; a++) {
    pops[a] = ops[keep[a]];
    for (int b = 0; b < k; b++)
      pruned[a][b] = m[keep[a]][keep[b]];
  }
  memset(m, 0, 49);
  for (int a = 0; a < k; a++) {
    ops[a] = pops[a];
    for (int b = 0; b < k; b++)
      m[a][b] = pruned[a][b];
  }
  *n_io = k;
  return 0;
}

/* Parses "matrix" (n x n of 0/1, upper triangular) into m; returns the
 * error count, *n the vertices. */
static int parse_nb101_matrix(const json_t *matrix, const char *ptr, int *n,
                              unsigned char m[7][7], ae_problem *p) {
  if (!matrix) {
    ae_problem_add(p, ptr, "required field \"matrix\" is missing");
    return 1;
  }
  size_t rows = json_is_array(matrix) ? json_array_size(matrix) : 0;
  if (rows < 2 || rows > AE_NB101_MAX_VERTICES) {
    ae_problem_add(p, ptr,
                   "must be a square array of 2 to %d rows of 0/1 (the "
                   "cell's adjacency matrix), not %s",
                   AE_NB101_MAX_VERTICES,
                   json_is_array(matrix) ? "that many rows"
                                         : ae_json_type_name(matrix));
    return 1;
  }
  int errors = 0;
  for (size_t i = 0; i < rows; i++) {
    const json_t *row = json_array_get(matrix, i);
    char rp[AE_PTR_MAX];
    ae_ptr_index(rp, sizeof rp, ptr, i);
    if (!json_is_array(row) || json_array_size(row) != rows) {
      ae_problem_add(p, rp,
                     "must be an array of %zu entries (the matrix is "
                     "square)",
                     rows);
      errors++;
      continue;
    }
    for (size_t j = 0; j < rows; j++) {
      const json_t *e = json_array_get(row, j);
      char ep[AE_PTR_MAX];
      ae_ptr_index(ep, sizeof ep, rp, j);
      long long v = json_is_integer(e) ? json_integer_value(e) : -1;
      if (json_is_boolean(e)) v = json_is_true(e);
      if (v != 0 && v != 1) {
        ae_problem_add(p, ep, "must be 0 or 1");
        errors++;
      } else if (v && j <= i) {
        ae_problem_add(p, ep,
                       "the matrix must be strictly upper triangular (edges "
                       "go from a vertex to a later one)");
        errors++;
      } else {
        m[i][j] = (unsigned char)v;
      }
    }
  }
  *n = (int)rows;
  return errors;
}

int ae_parse_nb101(const json_t *j, const char *pointer, ae_arch *a,
                   ae_problem *p) {
  static const char *const keys[] = {
      "type",   "matrix",          "ops",         "stem_channels",
      "stacks", "cells_per_stack", "num_classes", NULL};
  int errors = ae_check_keys(j, keys, pointer, p);
  char ptr[AE_PTR_MAX];
  long long stem = 128, stacks = 3, cells = 3, classes = 0;
  errors += ae_get_int(j, "stem_channels", pointer, 1, 4096, &stem, p);
  errors += ae_get_int(j, "stacks", pointer, 1, 8, &stacks, p);
  errors += ae_get_int(j, "cells_per_stack", pointer, 1, 32, &cells, p);
  errors += ae_get_int(j, "num_classes", pointer, 2, 100000, &classes, p);
  a->stem_channels = (int)stem;
  a->stacks = (int)stacks;
  a->cells_per_stack = (int)cells;
  a->num_classes = (int)classes;

  int n = 0;
  unsigned char m[7][7];
  memset(m, 0, sizeof m);
  ae_ptr_key(ptr, sizeof ptr, pointer, "matrix");
  int matrix_errors =
      parse_nb101_matrix(json_object_get(j, "matrix"), ptr, &n, m, p);
  errors += matrix_errors;

  ae_nb101_op ops[7];
  ae_ptr_key(ptr, sizeof ptr, pointer, "ops");
  const json_t *jops = json_object_get(j, "ops");
  int ops_errors = 0;
  if (!jops) {
    ae_problem_add(p, ptr, "required field \"ops\" is missing");
    ops_errors++;
  } else if (!json_is_array(jops) ||
             (!matrix_errors && json_array_size(jops) != (size_t)n) ||
             json_array_size(jops) < 2 ||
             json_array_size(jops) > AE_NB101_MAX_VERTICES) {
    ae_problem_add(p, ptr,
                   "must be an array of op names, one per matrix row "
                   "(\"input\", then conv3x3-bn-relu, conv1x1-bn-relu or "
                   "maxpool3x3, then \"output\")");
    ops_errors++;
  } else {
    size_t k;
    const json_t *v;
    size_t last = json_array_size(jops) - 1;
    json_array_foreach(jops, k, v) {
      char op_ptr[AE_PTR_MAX];
      ae_ptr_index(op_ptr, sizeof op_ptr, ptr, k);
      const char *s = json_is_string(v) ? json_string_value(v) : "";
      int found = -1;
      for (int o = 0; o <= AE_NB101_OUTPUT; o++)
        if (strcmp(s, nb101_op_names[o]) == 0) found = o;
      int want_io = k == 0 ? AE_NB101_INPUT : k == last ? AE_NB101_OUTPUT : -1;
      if (want_io >= 0 && found != want_io) {
        ae_problem_add(p, op_ptr, "must be \"%s\"", nb101_op_names[want_io]);
        ops_errors++;
      } else if (want_io < 0 && (found < 0 || found == AE_NB101_INPUT ||
                                 found == AE_NB101_OUTPUT)) {
        ae_problem_add(p, op_ptr,
                       "unknown op (expected conv3x3-bn-relu, "
                       "conv1x1-bn-relu or maxpool3x3)");
        ops_errors++;
      } else {
        ops[k] = (ae_nb101_op)found;
      }
    }
  }
  errors += ops_errors;
  if (errors) return errors;

  ae_ptr_key(ptr, sizeof ptr, pointer, "matrix");
  if (nb101_prune(&n, m, ops)) {
    ae_problem_add(p, ptr,
                   "the cell is disconnected: no path from the input "
                   "vertex to the output vertex");
    return 1;
  }
  int edges = 0;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < n; k++)
      edges += m[i][k];
  if (edges > AE_NB101_MAX_EDGES) {
    ae_problem_add(p, ptr,
                   "has %d edges on input-output paths, more than "
                   "NAS-Bench-101's %d",
                   edges, AE_NB101_MAX_EDGES);
    return 1;
  }
  int fan_in = 0;
  for (int v = 1; v < n - 1; v++)
    fan_in += m[v][n - 1];
  if (a->stem_channels < fan_in) {
    ae_ptr_key(ptr, sizeof ptr, pointer, "stem_channels");
    ae_problem_add(p, ptr,
                   "must be at least %d: the %d vertices feeding the output "
                   "split the cell's channels",
                   fan_in, fan_in);
    return 1;
  }
  a->nb101_vertices = n;
  memcpy(a->nb101_matrix, m, sizeof m);
  memcpy(a->nb101_ops, ops, sizeof ops);
  return 0;
}

/* ---- darts ---- */

static const char *const darts_op_names[] = {
    [AE_DARTS_NONE] = "none",
    [AE_DARTS_MAX_POOL_3X3] = "max_pool_3x3",
    [AE_DARTS_AVG_POOL_3X3] = "avg_pool_3x3",
    [AE_DARTS_SKIP_CONNECT] = "skip_connect",
    [AE_DARTS_SEP_CONV_3X3] = "sep_conv_3x3",
    [AE_DARTS_SEP_CONV_5X5] = "sep_conv_5x5",
    [AE_DARTS_DIL_CONV_3X3] = "dil_conv_3x3",
    [AE_DARTS_DIL_CONV_5X5] = "dil_conv_5x5"};

const char *ae_darts_op_name(ae_darts_op op) {
  if ((int)op < 0 || op >= AE_DARTS_N_OPS) return "?";
  return darts_op_names[op];
}

static int darts_op_from_name(const char *s, size_t len) {
  for (int o = 0; o < AE_DARTS_N_OPS; o++)
    if (strlen(darts_op_names[o]) == len &&
        strncmp(darts_op_names[o], s, len) == 0)
      return o;
  return -1;
}

#define DARTS_OPS_TEXT                                                         \
  "none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, "             \
  "sep_conv_5x5, dil_conv_3x3 or dil_conv_5x5"

/* Checks one (op, input) pair of slot k: input in 0..k/2+1. */
static int check_darts_pair(int op, long long input, int k, const char *ptr,
                            ae_problem *p) {
  if (op < 0) {
    ae_problem_add(p, ptr, "unknown op (expected " DARTS_OPS_TEXT ")");
    return 1;
  }
  if (input < 0 || input > k / 2 + 1) {
    ae_problem_add(p, ptr,
                   "node %d takes inputs from states 0 to %d, not %lld (0, "
                   "1: the cell's two inputs; 2..: earlier nodes)",
                   k / 2, k / 2 + 1, input);
    return 1;
  }
  return 0;
}

/* A cell as an array of 8 [op, input] pairs (DARTS' order). */
static int parse_darts_pairs(const json_t *v, const char *ptr, ae_darts_cell *c,
                             ae_problem *p) {
  if (!v) {
    ae_problem_add(p, ptr, "required field is missing");
    return 1;
  }
  if (!json_is_array(v) || json_array_size(v) != 8) {
    ae_problem_add(p, ptr,
                   "must be an array of 8 [op, input] pairs (4 nodes x 2 "
                   "inputs)");
    return 1;
  }
  int errors = 0;
  for (int k = 0; k < 8; k++) {
    const json_t *pair = json_array_get(v, (size_t)k);
    char pp[AE_PTR_MAX];
    ae_ptr_index(pp, sizeof pp, ptr, (size_t)k);
    const json_t *op = json_array_get(pair, 0), *in = json_array_get(pair, 1);
    if (!json_is_array(pair) || json_array_size(pair) != 2 ||
        !json_is_string(op) || !json_is_integer(in)) {
      ae_problem_add(p, pp, "must be a pair [op name, input state]");
      errors++;
      continue;
    }
    int o = darts_op_from_name(json_string_value(op), json_string_length(op));
    long long input = json_integer_value(in);
    if (check_darts_pair(o, input, k, pp, p)) {
      errors++;
      continue;
    }
    c->op[k] = (ae_darts_op)o;
    c->input[k] = (int)input;
  }
  return errors;
}

static int parse_darts_concat(const json_t *v, const char *ptr, unsigned *mask,
                              ae_problem *p) {
  *mask = 0x3c; /* states 2..5, DARTS' range(2, 6) */
  if (!v) return 0;
  if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 4) {
    ae_problem_add(p, ptr, "must be an array of 1 to 4 distinct states 2..5");
    return 1;
  }
  *mask = 0;
  size_t k;
  const json_t *e;
  json_array_foreach(v, k, e) {
    long long s = json_is_integer(e) ? json_integer_value(e) : -1;
    if (s < 2 || s > 5 || (*mask & (1u << s))) {
      char ep[AE_PTR_MAX];
      ae_ptr_index(ep, sizeof ep, ptr, k);
      ae_problem_add(p, ep, "must be a node state 2..5, each once");
      return 1;
    }
    *mask |= 1u << s;
  }
  return 0;
}

/* NAS-Bench-301's compact form: [normal, reduce], each 8 [input, op]
 * pairs, op an index into NB301's list without "none" (max_pool_3x3 = 0 ..
 * dil_conv_5x5 = 6) or an op name; concat is states 2..5. */
static int parse_darts_compact(const json_t *v, const char *ptr, ae_arch *a,
                               ae_problem *p) {
  if (!json_is_array(v) || json_array_size(v) != 2) {
    ae_problem_add(p, ptr,
                   "must be [normal, reduce], each 8 [input, op] pairs "
                   "(NAS-Bench-301's compact form)");
    return 1;
  }
  int errors = 0;
  for (int cell = 0; cell < 2; cell++) {
    ae_darts_cell *c = cell ? &a->darts_reduce : &a->darts_normal;
    const json_t *pairs = json_array_get(v, (size_t)cell);
    char cp[AE_PTR_MAX];
    ae_ptr_index(cp, sizeof cp, ptr, (size_t)cell);
    c->concat = 0x3c;
    if (!json_is_array(pairs) || json_array_size(pairs) != 8) {
      ae_problem_add(p, cp, "must be an array of 8 [input, op] pairs");
      errors++;
      continue;
    }
    for (int k = 0; k < 8; k++) {
      const json_t *pair = json_array_get(pairs, (size_t)k);
      char pp[AE_PTR_MAX];
      ae_ptr_index(pp, sizeof pp, cp, (size_t)k);
      const json_t *in = json_array_get(pair, 0), *op = json_array_get(pair, 1);
      int o = -1;
      if (json_is_integer(op) && json_integer_value(op) >= 0 &&
          json_integer_value(op) < AE_DARTS_N_OPS - 1)
        o = (int)json_integer_value(op) + 1; /* NB301 has no "none" */
      else if (json_is_string(op))
        o = darts_op_from_name(json_string_value(op), json_string_length(op));
      if (!json_is_array(pair) || json_array_size(pair) != 2 ||
          !json_is_integer(in) ||
          (!json_is_integer(op) && !json_is_string(op))) {
        ae_problem_add(p, pp,
                       "must be a pair [input state, op] (op 0..6: "
                       "max_pool_3x3, avg_pool_3x3, skip_connect, "
                       "sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, "
                       "dil_conv_5x5, or a name)");
        errors++;
        continue;
      }
      long long input = json_integer_value(in);
      if (check_darts_pair(o, input, k, pp, p)) {
        errors++;
        continue;
      }
      c->op[k] = (ae_darts_op)o;
      c->input[k] = (int)input;
    }
  }
  return errors;
}

/* ---- the genotype string: Genotype(normal=[('op', i), ...],
 * normal_concat=range(2, 6) | [2, 3, ...], reduce=..., reduce_concat=...) */

typedef struct {
  const char *s, *c;
} scan;

static void skip_ws(scan *t) {
  while (*t->c && isspace((unsigned char)*t->c))
    t->c++;
}

static int eat(scan *t, char ch) {
  skip_ws(t);
  if (*t->c != ch) return 0;
  t->c++;
  return 1;
}

static int scan_int(scan *t, long long *v) {
  skip_ws(t);
  if (!isdigit((unsigned char)*t->c)) return 0;
  long long x = 0;
  while (isdigit((unsigned char)*t->c) && x < 1000000)
    x = 10 * x + (*t->c++ - '0');
  *v = x;
  return 1;
}

/* An identifier into buf (truncated); 0 when none. */
static int scan_ident(scan *t, char *buf, size_t size) {
  skip_ws(t);
  size_t n = 0;
  while (isalnum((unsigned char)*t->c) || *t->c == '_') {
    if (n + 1 < size) buf[n++] = *t->c;
    t->c++;
  }
  buf[n] = '\0';
  return n > 0;
}

static int scan_pairs(scan *t, ae_darts_cell *c, const char *ptr,
                      ae_problem *p) {
  if (!eat(t, '[')) return -1;
  for (int k = 0; k < 8; k++) {
    if (k > 0 && !eat(t, ',')) return -1;
    skip_ws(t);
    if (!eat(t, '(')) return -1;
    skip_ws(t);
    char q = *t->c;
    if (q != '\'' && q != '"') return -1;
    const char *start = ++t->c;
    while (*t->c && *t->c != q)
      t->c++;
    if (*t->c != q) return -1;
    size_t len = (size_t)(t->c - start);
    t->c++;
    long long input;
    if (!eat(t, ',') || !scan_int(t, &input) || !eat(t, ')')) return -1;
    int o = darts_op_from_name(start, len);
    if (o < 0) {
      ae_problem_add(p, ptr,
                     "unknown op \"%.*s\" (expected " DARTS_OPS_TEXT ")",
                     (int)(len > 64 ? 64 : len), start);
      return 1;
    }
    if (input > k / 2 + 1) {
      ae_problem_add(p, ptr,
                     "op %d (\"%s\"): node %d takes inputs from states 0 to "
                     "%d, not %lld",
                     k, darts_op_names[o], k / 2, k / 2 + 1, input);
      return 1;
    }
    c->op[k] = (ae_darts_op)o;
    c->input[k] = (int)input;
  }
  eat(t, ',');
  return eat(t, ']') ? 0 : -1;
}

static int scan_concat(scan *t, unsigned *mask, const char *ptr,
                       ae_problem *p) {
  char id[16];
  long long lo, hi;
  *mask = 0;
  const char *save = t->c;
  if (scan_ident(t, id, sizeof id)) {
    if (strcmp(id, "range") != 0 || !eat(t, '(') || !scan_int(t, &lo) ||
        !eat(t, ',') || !scan_int(t, &hi) || !eat(t, ')'))
      return -1;
    if (lo < 2 || hi > 6 || lo >= hi) {
      ae_problem_add(p, ptr, "concat range(%lld, %lld) must lie in 2..5", lo,
                     hi);
      return 1;
    }
    for (long long s = lo; s < hi; s++)
      *mask |= 1u << s;
    return 0;
  }
  t->c = save;
  if (!eat(t, '[')) return -1;
  do {
    long long s;
    if (!scan_int(t, &s)) return -1;
    if (s < 2 || s > 5 || (*mask & (1u << s))) {
      ae_problem_add(p, ptr, "concat state %lld: must be 2..5, each once", s);
      return 1;
    }
    *mask |= 1u << s;
  } while (eat(t, ','));
  return eat(t, ']') ? 0 : -1;
}

static int parse_genotype_string(const char *s, const char *ptr, ae_arch *a,
                                 ae_problem *p) {
  scan t = {s, s};
  char id[32];
  int seen = 0; /* bits: normal, normal_concat, reduce, reduce_concat */
  a->darts_normal.concat = a->darts_reduce.concat = 0x3c;
  if (!scan_ident(&t, id, sizeof id) || strcmp(id, "Genotype") != 0 ||
      !eat(&t, '('))
    goto syntax;
  do {
    if (!scan_ident(&t, id, sizeof id) || !eat(&t, '=')) goto syntax;
    int rc, bit;
    if (strcmp(id, "normal") == 0) {
      bit = 1;
      rc = scan_pairs(&t, &a->darts_normal, ptr, p);
    } else if (strcmp(id, "reduce") == 0) {
      bit = 4;
      rc = scan_pairs(&t, &a->darts_reduce, ptr, p);
    } else if (strcmp(id, "normal_concat") == 0) {
      bit = 2;
      rc = scan_concat(&t, &a->darts_normal.concat, ptr, p);
    } else if (strcmp(id, "reduce_concat") == 0) {
      bit = 8;
      rc = scan_concat(&t, &a->darts_reduce.concat, ptr, p);
    } else {
      ae_problem_add(p, ptr, "unknown Genotype field \"%s\"", id);
      return 1;
    }
    if (rc > 0) return rc;
    if (rc < 0) goto syntax;
    seen |= bit;
    skip_ws(&t);
  } while (eat(&t, ',') && *(skip_ws(&t), t.c) != ')');
  if (!eat(&t, ')')) goto syntax;
  skip_ws(&t);
  if (*t.c) goto syntax;
  if ((seen & 5) != 5) {
    ae_problem_add(p, ptr, "the Genotype needs both normal= and reduce=");
    return 1;
  }
  return 0;
syntax:
  ae_problem_add(
      p, ptr,
      "not a DARTS genotype string (expected Genotype(normal=[('op', "
      "input), ... 8 pairs], normal_concat=range(2, 6), "
      "reduce=[...], reduce_concat=[...])); error at offset %d",
      (int)(t.c - t.s));
  return 1;
}

int ae_parse_darts(const json_t *j, const char *pointer, ae_arch *a,
                   ae_problem *p) {
  static const char *const keys[] = {
      "type", "genotype", "compact", "channels", "layers", "num_classes", NULL};
  int errors = ae_check_keys(j, keys, pointer, p);
  char ptr[AE_PTR_MAX];
  long long channels = 36, layers = 20, classes = 0;
  errors += ae_get_int(j, "channels", pointer, 2, 4096, &channels, p);
  errors += ae_get_int(j, "layers", pointer, 1, 64, &layers, p);
  errors += ae_get_int(j, "num_classes", pointer, 2, 100000, &classes, p);
  a->darts_channels = (int)channels;
  a->darts_layers = (int)layers;
  a->num_classes = (int)classes;
  const json_t *geno = json_object_get(j, "genotype");
  const json_t *compact = json_object_get(j, "compact");
  if (!geno == !compact) {
    ae_ptr_key(ptr, sizeof ptr, pointer, geno ? "compact" : "genotype");
    ae_problem_add(p, ptr,
                   geno ? "give either \"genotype\" or \"compact\", not both"
                        : "required field \"genotype\" (or \"compact\") is "
                          "missing");
    return errors + 1;
  }
  if (compact) {
    ae_ptr_key(ptr, sizeof ptr, pointer, "compact");
    return errors + parse_darts_compact(compact, ptr, a, p);
  }
  ae_ptr_key(ptr, sizeof ptr, pointer, "genotype");
  if (json_is_string(geno))
    return errors + parse_genotype_string(json_string_value(geno), ptr, a, p);
  if (!json_is_object(geno)) {
    ae_problem_add(p, ptr,
                   "must be an object {normal, normal_concat, reduce, "
                   "reduce_concat} or a Genotype(...) string, not %s",
                   ae_json_type_name(geno));
    return errors + 1;
  }
  static const char *const gkeys[] = {"normal", "normal_concat", "reduce",
                                      "reduce_concat", NULL};
  errors += ae_check_keys(geno, gkeys, ptr, p);
  char sub[AE_PTR_MAX];
  ae_ptr_key(sub, sizeof sub, ptr, "normal");
  errors += parse_darts_pairs(json_object_get(geno, "normal"), sub,
                              &a->darts_normal, p);
  ae_ptr_key(sub, sizeof sub, ptr, "reduce");
  errors += parse_darts_pairs(json_object_get(geno, "reduce"), sub,
                              &a->darts_reduce, p);
  ae_ptr_key(sub, sizeof sub, ptr, "normal_concat");
  errors += parse_darts_concat(json_object_get(geno, "normal_concat"), sub,
                               &a->darts_normal.concat, p);
  ae_ptr_key(sub, sizeof sub, ptr, "reduce_concat");
  errors += parse_darts_concat(json_object_get(geno, "reduce_concat"), sub,
                               &a->darts_reduce.concat, p);
  return errors;
}
