/* onnx.c: the ONNX importer (onnx.h): protobuf bytes in, a "graph"
 * architecture out.
 *
 * Design.  The bytes are decoded by protobuf-c (the code protoc-c generates
 * from Debian's onnx.proto at build time) through an allocator that counts
 * and caps what it hands out, so a small file cannot expand into a large
 * decode.  Every repeated count is then checked against the limits before
 * anything walks it.  The graph is walked once, in its (required)
 * topological order: each ONNX value name maps to one entry of a hash table
 * that says what the value is: the data (or a node output computed from it,
 * with its per-sample shape and the id of the graph node producing it), a
 * constant (an initializer, a Constant node, or shape arithmetic folded
 * here), or nothing yet.  Ops that compute on the data become graph nodes
 * (JSON objects, in order); Identity, Dropout and a Flatten of a rank-1
 * value become aliases; shape ops on constants are folded.  Weights are
 * never read, only their dims, which are checked against the shapes.  The
 * resulting architecture is validated again by the request parser
 * (ae_arch_from_json) like any user's graph.
 *
 * Everything here belongs to the one call of ae_onnx_import; no globals, no
 * I/O, any thread. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/onnx.h"
#include "api/onnx.pb-c.h"
#include "api/status.h"

void ae_onnx_limits_default(ae_onnx_limits *lim) {
  lim->max_bytes = 64u << 20;
  lim->max_unpacked_bytes = 4 * lim->max_bytes + (16u << 20);
  lim->max_nodes = 20000;
  lim->max_initializers = 20000;
  lim->max_graph_io = 20000;
  lim->max_node_io = 64;
  lim->max_attributes = 64;
  lim->max_attribute_ints = 64;
  lim->max_dims = 8;
  lim->max_graph_nodes = 4096;
}

void ae_onnx_model_free(ae_onnx_model *m) {
  if (!m) return;
  json_decref(m->architecture);
  json_decref(m->inputs);
  json_decref(m->outputs);
  json_decref(m->ops);
  json_decref(m->warnings);
  memset(m, 0, sizeof *m);
}

/* ---- a counting allocator for the decode ---- */

typedef struct {
  size_t used, cap;
  int exceeded;
} budget;

typedef union {
  size_t size;
  max_align_t align;
} block_header;

static void *budget_alloc(void *data, size_t size) {
  budget *b = data;
  if (size > b->cap || b->used > b->cap - size) {
    b->exceeded = 1;
    return NULL;
  }
  block_header *h = malloc(sizeof *h + size);
  if (!h) return NULL;
  h->size = size;
  b->used += size;
  return h + 1;
}

static void budget_free(void *data, void *ptr) {
  budget *b = data;
  if (!ptr) return;
  block_header *h = (block_header *)ptr - 1;
  b->used -= h->size;
  free(h);
}

/* ---- values ---- */

typedef enum { V_NONE, V_DATA, V_CONST } value_kind;

typedef struct {
  const char *name; /* borrowed from the decoded model; NULL = empty slot */
  value_kind kind;
  /* V_DATA: the graph node producing it ("input" for the data) */
  const char *id; /* borrowed from the architecture's JSON */
  int rank;       /* 1 or 3 (per sample) */
  int shape[3];
  int squeezed;      /* a GlobalAveragePool output kept at rank 1 (ONNX: 4) */
  int needs_spatial; /* some consumer is not a Flatten or Reshape */
  /* V_CONST: a tensor (borrowed) or folded int64 values (owned) */
  const Onnx__TensorProto *tensor;
  int64_t *ints;
  int owns_ints; /* 0 for an alias of another value's ints */
  int n_ints;    /* elements of ints */
  int n_dims;    /* 0 (scalar) or 1 for folded values */
} value;

typedef struct {
  const ae_onnx_limits *lim;
  ae_problem *p;
  long long opset;
  value *values;
  size_t cap;       /* a power of two */
  json_t *nodes;    /* borrowed from out->architecture */
  json_t *warnings; /* borrowed */
  int batch;        /* the input's batch dimension, -1 when symbolic */
  int node_index;   /* the ONNX node being mapped */
  const Onnx__NodeProto *node;
  int failed_nomem;
} importer;

static const char *str_or_empty(const char *s) {
  return s ? s : "";
}

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h;
}

/* The entry for name, created (V_NONE) when missing; NULL without memory
 * (the table is sized up front, so only a full table fails). */
static value *value_get(importer *im, const char *name) {
  size_t mask = im->cap - 1;
  for (size_t i = hash_name(name) & mask, n = 0; n < im->cap;
       i = (i + 1) & mask, n++) {
    value *v = &im->values[i];
    if (!v->name) {
      v->name = name;
      return v;
    }
    if (strcmp(v->name, name) == 0) return v;
  }
  return NULL;
}

/* Is name an ONNX value other than self (a generated id must not be)? */
static int name_taken(const importer *im, const char *name, const value *self) {
  size_t mask = im->cap - 1;
  for (size_t i = hash_name(name) & mask, n = 0; n < im->cap;
       i = (i + 1) & mask, n++) {
    const value *v = &im->values[i];
    if (!v->name) return 0;
    if (strcmp(v->name, name) == 0) return v != self;
  }
  return 0;
}

/* ---- problems ---- */

/* ae_problem_add with every non-ASCII byte made '?': names from the file
 * are cut at a fixed length, which may split a UTF-8 sequence, and the
 * problem must render as JSON. */
static void add_problem(ae_problem *p, const char *ptr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_problem(ae_problem *p, const char *ptr, const char *fmt, ...) {
  char buf[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  for (char *c = buf; *c; c++)
    if ((unsigned char)*c >= 0x80) *c = '?';
  ae_problem_add(p, ptr, "%s", buf);
}

/* A problem about the current node: pointer /nodes/<index>, the node's
 * name and op type in the detail.  unsupported: 422 unsupported (an op or
 * attribute the importer does not map) rather than invalid_request. */
static int node_problem(importer *im, int unsupported, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int node_problem(importer *im, int unsupported, const char *fmt, ...) {
  char why[512], ptr[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  const Onnx__NodeProto *n = im->node;
  const char *name = n && n->name && n->name[0] ? n->name : NULL;
  snprintf(ptr, sizeof ptr, "/nodes/%d", im->node_index);
  if (unsupported && im->p->status == 0)
    ae_problem_set(im->p, 422, "unsupported", NULL,
                   "the model uses what the importer does not support");
  add_problem(im->p, ptr, "node %d%s%.100s%s (%.64s): %s", im->node_index,
              name ? " \"" : "", name ? name : "", name ? "\"" : "",
              n ? str_or_empty(n->op_type) : "?", why);
  return AE_EINVAL;
}

/* ---- attributes and constants ---- */

static const Onnx__AttributeProto *attr_find(const Onnx__NodeProto *n,
                                             const char *name) {
  for (size_t k = 0; k < n->n_attribute; k++)
    if (n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0)
      return n->attribute[k];
  return NULL;
}

static long long attr_int(const Onnx__NodeProto *n, const char *name,
                          long long dflt) {
  const Onnx__AttributeProto *a = attr_find(n, name);
  return a && a->has_i ? (long long)a->i : dflt;
}

static double attr_float(const Onnx__NodeProto *n, const char *name,
                         double dflt) {
  const Onnx__AttributeProto *a = attr_find(n, name);
  return a && a->has_f ? (double)a->f : dflt;
}

/* Copies an ints attribute of exactly want entries (0: any up to max) into
 * out; returns its length, 0 when absent, -1 when of another length. */
static int attr_ints(const Onnx__NodeProto *n, const char *name, int want,
                     long long *out, int max) {
  const Onnx__AttributeProto *a = attr_find(n, name);
  if (!a || a->n_ints == 0) return 0;
  if ((want && (int)a->n_ints != want) || (int)a->n_ints > max) return -1;
  for (size_t k = 0; k < a->n_ints; k++)
    out[k] = (long long)a->ints[k];
  return (int)a->n_ints;
}

static long long tensor_numel(const Onnx__TensorProto *t) {
  long long n = 1;
  for (size_t k = 0; k < t->n_dims; k++) {
    if (t->dims[k] < 0 || t->dims[k] > (1LL << 40)) return -1;
    n *= t->dims[k];
    if (n > (1LL << 40)) return -1;
  }
  return n;
}

/* Element k of a constant as a double; 0 or AE_EINVAL (unknown type,
 * missing data). */
static int const_get(const value *v, long long k, double *out) {
  if (v->ints) {
    if (k < 0 || k >= v->n_ints) return AE_EINVAL;
    *out = (double)v->ints[k];
    return AE_OK;
  }
  const Onnx__TensorProto *t = v->tensor;
  if (!t || k < 0) return AE_EINVAL;
  int type = t->has_data_type ? t->data_type : 0;
  size_t width = type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT    ? 4
                 : type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32  ? 4
                 : type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64  ? 8
                 : type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE ? 8
                                                                 : 0;
  if (!width) return AE_EINVAL;
  if (t->has_raw_data && t->raw_data.len > 0) {
    if ((unsigned long long)k >= t->raw_data.len / width) return AE_EINVAL;
    const uint8_t *b = t->raw_data.data + (size_t)k * width;
    uint64_t bits = 0;
    for (size_t i = 0; i < width; i++)
      bits |= (uint64_t)b[i] << (8 * i); /* little-endian, ONNX's order */
    if (type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
      uint32_t u = (uint32_t)bits;
      float f;
      memcpy(&f, &u, sizeof f);
      *out = f;
    } else if (type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) {
      double d;
      memcpy(&d, &bits, sizeof d);
      *out = d;
    } else if (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
      *out = (double)(int32_t)(uint32_t)bits;
    } else {
      *out = (double)(int64_t)bits;
    }
    return AE_OK;
  }
  switch (type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    if ((size_t)k >= t->n_float_data) return AE_EINVAL;
    *out = t->float_data[k];
    return AE_OK;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
    if ((size_t)k >= t->n_int32_data) return AE_EINVAL;
    *out = t->int32_data[k];
    return AE_OK;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    if ((size_t)k >= t->n_int64_data) return AE_EINVAL;
    *out = (double)t->int64_data[k];
    return AE_OK;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
    if ((size_t)k >= t->n_double_data) return AE_EINVAL;
    *out = t->double_data[k];
    return AE_OK;
  }
  return AE_EINVAL;
}

/* Element k of a constant as an integer: 0 or AE_EINVAL (also for a value
 * that is not finite or beyond 2^53, whose conversion would be undefined). */
static int const_get_int(const value *v, long long k, long long *out) {
  double d;
  if (const_get(v, k, &d) || !(fabs(d) <= 9007199254740992.0)) return AE_EINVAL;
  *out = (long long)d;
  return AE_OK;
}

static long long const_numel(const value *v) {
  return v->ints ? v->n_ints : tensor_numel(v->tensor);
}

static int const_rank(const value *v) {
  return v->ints ? v->n_dims : (int)v->tensor->n_dims;
}

/* The dims of a constant (a weight's shape). */
static int const_dims(const value *v, long long *dims, int max) {
  if (v->ints) {
    if (v->n_dims == 1) dims[0] = v->n_ints;
    return v->n_dims;
  }
  int n = (int)v->tensor->n_dims;
  for (int k = 0; k < n && k < max; k++)
    dims[k] = (long long)v->tensor->dims[k];
  return n;
}

/* Makes v a folded int64 constant of n values (copied), rank n_dims. */
static int set_folded(importer *im, value *v, const int64_t *vals, int n,
                      int n_dims) {
  v->kind = V_CONST;
  v->tensor = NULL;
  v->ints = malloc(((size_t)n + 1) * sizeof *v->ints);
  if (!v->ints) {
    im->failed_nomem = 1;
    return AE_ENOMEM;
  }
  if (n > 0) memcpy(v->ints, vals, (size_t)n * sizeof *vals);
  v->owns_ints = 1;
  v->n_ints = n;
  v->n_dims = n_dims;
  return AE_OK;
}

/* ---- the node's inputs and outputs ---- */

/* Input k of the current node (NULL: absent or empty name). */
static value *input_value(importer *im, int k) {
  const Onnx__NodeProto *n = im->node;
  if (k >= (int)n->n_input || !n->input[k] || !n->input[k][0]) return NULL;
  return value_get(im, n->input[k]);
}

/* Input k, which must be the data (or computed from it). */
static int data_input(importer *im, int k, value **out) {
  value *v = input_value(im, k);
  if (!v) return node_problem(im, 0, "input %d is missing", k);
  if (v->kind == V_NONE)
    return node_problem(im, 0,
                        "input %d \"%.100s\" is used before it is "
                        "defined (or is an output the importer does "
                        "not compute)",
                        k, v->name);
  if (v->kind != V_DATA)
    return node_problem(im, 1,
                        "input %d \"%.100s\" is a constant; only a "
                        "constant weight, bias or shape is supported "
                        "here",
                        k, v->name);
  *out = v;
  return AE_OK;
}

/* Input k, which must be a constant (required: present). */
static int const_input(importer *im, int k, int required, value **out) {
  value *v = input_value(im, k);
  *out = NULL;
  if (!v) return required ? node_problem(im, 0, "input %d is missing", k) : 0;
  if (v->kind != V_CONST)
    return node_problem(im, 1,
                        "input %d \"%.100s\" must be a constant (an "
                        "initializer or a Constant)",
                        k, v->name);
  *out = v;
  return AE_OK;
}

/* The output value the node defines (output 0). */
static value *output_value(importer *im) {
  const Onnx__NodeProto *n = im->node;
  if (n->n_output < 1 || !n->output[0] || !n->output[0][0]) return NULL;
  return value_get(im, n->output[0]);
}

/* Appends a graph node {"id","op","inputs":[ids]} reading the ids of
 * inputs; its id is the output's ONNX name when usable.  Returns the JSON
 * node (borrowed) and makes out a V_DATA value with the given shape. */
static json_t *emit(importer *im, value *out, const char *op, value **ins,
                    int n_ins, int rank, const int *shape) {
  const char *name = out->name;
  char buf[160];
  size_t len = strlen(name);
  const char *id = name;
  if (len == 0 || len > 120 || strcmp(name, "input") == 0 ||
      name_taken(im, name, out)) {
    snprintf(buf, sizeof buf, "node%d:%s", im->node_index, op);
    for (int k = 2; name_taken(im, buf, out) && k < 100; k++)
      snprintf(buf, sizeof buf, "node%d:%s~%d", im->node_index, op, k);
    id = buf;
  }
  json_t *inputs = json_array();
  json_t *node = json_object();
  if (!inputs || !node) goto nomem;
  for (int k = 0; k < n_ins; k++)
    if (json_array_append_new(inputs, json_string(ins[k]->id))) goto nomem;
  if (json_object_set_new(node, "id", json_string(id)) ||
      json_object_set_new(node, "op", json_string(op)) ||
      json_object_set(node, "inputs", inputs) ||
      json_array_append(im->nodes, node))
    goto nomem;
  json_decref(inputs);
  json_decref(node);
  out->kind = V_DATA;
  out->id = json_string_value(json_object_get(node, "id"));
  out->rank = rank;
  memcpy(out->shape, shape, sizeof out->shape);
  out->squeezed = 0;
  return node;
nomem:
  json_decref(inputs);
  json_decref(node);
  im->failed_nomem = 1;
  return NULL;
}

static int set_int(importer *im, json_t *node, const char *key, long long v) {
  if (json_object_set_new(node, key, json_integer(v))) {
    im->failed_nomem = 1;
    return AE_ENOMEM;
  }
  return AE_OK;
}

/* Makes out an alias of in (Identity, Dropout, a Flatten of a vector). */
static void alias(value *out, const value *in) {
  const char *name = out->name;
  int needs = out->needs_spatial;
  *out = *in;
  out->name = name;
  out->needs_spatial = needs;
  out->owns_ints = 0;
}

/* ---- window ops (Conv, MaxPool, AveragePool) ---- */

typedef struct {
  long long kernel[2], stride[2], pads[4], dilation[2];
} window;

/* Reads kernel_shape (or the weight's dims), strides, pads, dilations and
 * auto_pad; rejects what the IR cannot express (non-square kernels,
 * unequal strides or dilations, SAME padding). */
static int read_window(importer *im, const long long *weight_kernel,
                       window *w) {
  const Onnx__NodeProto *n = im->node;
  w->stride[0] = w->stride[1] = 1;
  w->dilation[0] = w->dilation[1] = 1;
  memset(w->pads, 0, sizeof w->pads);
  int nk = attr_ints(n, "kernel_shape", 2, w->kernel, 2);
  if (nk < 0) return node_problem(im, 1, "only 2-D kernels are supported");
  if (nk == 0) {
    if (!weight_kernel)
      return node_problem(im, 0, "attribute kernel_shape is missing");
    w->kernel[0] = weight_kernel[0];
    w->kernel[1] = weight_kernel[1];
  }
  if (attr_ints(n, "strides", 2, w->stride, 2) < 0 ||
      attr_ints(n, "dilations", 2, w->dilation, 2) < 0 ||
      attr_ints(n, "pads", 4, w->pads, 4) < 0)
    return node_problem(im, 0,
                        "strides, dilations and pads must have 2, 2 "
                        "and 4 entries");
  const Onnx__AttributeProto *ap = attr_find(n, "auto_pad");
  if (ap && ap->has_s && ap->s.len > 0 &&
      !(ap->s.len == 6 && memcmp(ap->s.data, "NOTSET", 6) == 0) &&
      !(ap->s.len == 5 && memcmp(ap->s.data, "VALID", 5) == 0))
    return node_problem(im, 1,
                        "auto_pad \"%.*s\" is not supported (export "
                        "with explicit pads)",
                        (int)(ap->s.len > 16 ? 16 : ap->s.len),
                        (const char *)ap->s.data);
  if (w->kernel[0] != w->kernel[1])
    return node_problem(im, 1,
                        "kernel %lldx%lld: only square kernels are "
                        "supported",
                        w->kernel[0], w->kernel[1]);
  if (w->stride[0] != w->stride[1] || w->dilation[0] != w->dilation[1])
    return node_problem(im, 1,
                        "strides and dilations must be equal along "
                        "both axes");
  if (w->kernel[0] < 1 || w->kernel[0] > 64 || w->stride[0] < 1 ||
      w->stride[0] > 64 || w->dilation[0] < 1 || w->dilation[0] > 64)
    return node_problem(im, 0, "kernel, stride and dilation must be 1 to 64");
  for (int k = 0; k < 4; k++)
    if (w->pads[k] < 0 || w->pads[k] > 64)
      return node_problem(im, 0, "pads must be 0 to 64");
  return AE_OK;
}

static int pads_symmetric(const window *w) {
  return w->pads[0] == w->pads[1] && w->pads[1] == w->pads[2] &&
         w->pads[2] == w->pads[3];
}

static int window_size(int in, const window *w, int ceil_mode) {
  long long span = w->dilation[0] * (w->kernel[0] - 1) + 1;
  long long o = in + 2 * w->pads[0] - span;
  if (o < 0) return 0;
  long long s = w->stride[0];
  long long out = (ceil_mode ? (o + s - 1) / s : o / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + w->pads[0]) out--;
  return (int)out;
}

/* ---- the ops ---- */

static int map_conv(importer *im, value *out) {
  value *x, *wv, *bv;
  int rc;
  if ((rc = data_input(im, 0, &x)) || (rc = const_input(im, 1, 1, &wv)) ||
      (rc = const_input(im, 2, 0, &bv)))
    return rc;
  if (x->rank != 3)
    return node_problem(im, 0, "needs a 4-D (N, C, H, W) input");
  long long wd[4];
  if (const_rank(wv) != 4)
    return node_problem(im, 1, "the weight must be 4-D (2-D convolution)");
  const_dims(wv, wd, 4);
  window w;
  if ((rc = read_window(im, wd + 2, &w))) return rc;
  long long groups = attr_int(im->node, "group", 1);
  if (groups < 1 || groups > x->shape[0] || x->shape[0] % groups != 0)
    return node_problem(im, 0,
                        "group %lld does not divide the %d input "
                        "channels",
                        groups, x->shape[0]);
  if (wd[1] < 1 || wd[1] > x->shape[0] || wd[1] * groups != x->shape[0] ||
      wd[0] < 1 || wd[0] % groups != 0 || wd[2] != w.kernel[0] ||
      wd[3] != w.kernel[1] || wd[0] > (1 << 20))
    return node_problem(im, 0,
                        "the weight's dims [%lld, %lld, %lld, %lld] "
                        "do not fit %d input channels, group %lld "
                        "and kernel %lld",
                        wd[0], wd[1], wd[2], wd[3], x->shape[0], groups,
                        w.kernel[0]);
  if (bv && (const_rank(bv) != 1 || const_numel(bv) != wd[0]))
    return node_problem(im, 0, "the bias must have %lld values", wd[0]);
  value *in = x;
  value padded;
  if (!pads_symmetric(&w)) {
    /* A zero pad and an unpadded conv compute the same thing. */
    memset(&padded, 0, sizeof padded);
    char name[200];
    snprintf(name, sizeof name, "%.150s/pad", out->name);
    padded.name = name; /* read by emit only; the id lives in the JSON */
    int shape[3] = {x->shape[0], x->shape[1] + (int)(w.pads[0] + w.pads[2]),
                    x->shape[2] + (int)(w.pads[1] + w.pads[3])};
    json_t *pn = emit(im, &padded, "pad", &x, 1, 3, shape);
    if (!pn) return AE_ENOMEM;
    json_t *pads =
        json_pack("[IIII]", w.pads[0], w.pads[1], w.pads[2], w.pads[3]);
    if (!pads || json_object_set_new(pn, "pads", pads)) {
      im->failed_nomem = 1;
      return AE_ENOMEM;
    }
    /* padded.id points into pn, which the nodes array keeps alive. */
    memset(w.pads, 0, sizeof w.pads);
    in = &padded;
  }
  int shape[3] = {(int)wd[0], window_size(in->shape[1], &w, 0),
                  window_size(in->shape[2], &w, 0)};
  if (shape[1] < 1 || shape[2] < 1)
    return node_problem(im, 0, "the kernel does not fit the %dx%d input",
                        in->shape[1], in->shape[2]);
  json_t *c = emit(im, out, "conv", &in, 1, 3, shape);
  if (!c || set_int(im, c, "out", wd[0]) ||
      set_int(im, c, "kernel", w.kernel[0]) ||
      set_int(im, c, "stride", w.stride[0]) ||
      set_int(im, c, "padding", w.pads[0]))
    return AE_ENOMEM;
  if (groups != 1 && set_int(im, c, "groups", groups)) return AE_ENOMEM;
  if (w.dilation[0] != 1 && set_int(im, c, "dilation", w.dilation[0]))
    return AE_ENOMEM;
  if (bv && json_object_set_new(c, "bias", json_true())) {
    im->failed_nomem = 1;
    return AE_ENOMEM;
  }
  return AE_OK;
}

static int map_pool(importer *im, value *out, int is_max) {
  value *x;
  int rc;
  if ((rc = data_input(im, 0, &x))) return rc;
  if (x->rank != 3)
    return node_problem(im, 0, "needs a 4-D (N, C, H, W) input");
  window w;
  if ((rc = read_window(im, NULL, &w))) return rc;
  if (!pads_symmetric(&w))
    return node_problem(im, 1,
                        "asymmetric pads [%lld, %lld, %lld, %lld] "
                        "are not supported for pooling",
                        w.pads[0], w.pads[1], w.pads[2], w.pads[3]);
  if (2 * w.pads[0] > w.dilation[0] * (w.kernel[0] - 1) + 1)
    return node_problem(im, 1,
                        "pads %lld: pads of more than half the "
                        "kernel are not supported",
                        w.pads[0]);
  long long ceil_mode = attr_int(im->node, "ceil_mode", 0);
  if (!is_max && ceil_mode)
    return node_problem(im, 1, "ceil_mode is supported for MaxPool only");
  if (!is_max && w.dilation[0] != 1)
    return node_problem(im, 1, "dilations are supported for MaxPool only");
  if (is_max && attr_int(im->node, "storage_order", 0) != 0)
    return node_problem(im, 1, "storage_order 1 is not supported");
  int shape[3] = {x->shape[0], window_size(x->shape[1], &w, (int)ceil_mode),
                  window_size(x->shape[2], &w, (int)ceil_mode)};
  if (shape[1] < 1 || shape[2] < 1)
    return node_problem(im, 0, "the kernel does not fit the %dx%d input",
                        x->shape[1], x->shape[2]);
  json_t *n = emit(im, out, is_max ? "max_pool" : "avg_pool", &x, 1, 3, shape);
  if (!n || set_int(im, n, "kernel", w.kernel[0]) ||
      set_int(im, n, "stride", w.stride[0]) ||
      set_int(im, n, "padding", w.pads[0]))
    return AE_ENOMEM;
  if (is_max) {
    if (w.dilation[0] != 1 && set_int(im, n, "dilation", w.dilation[0]))
      return AE_ENOMEM;
    if (ceil_mode && json_object_set_new(n, "ceil_mode", json_true())) {
      im->failed_nomem = 1;
      return AE_ENOMEM;
    }
  } else {
    int include = attr_int(im->node, "count_include_pad", 0) != 0;
    if (json_object_set_new(n, "count_include_pad", json_boolean(include))) {
      im->failed_nomem = 1;
      return AE_ENOMEM;
    }
  }
  return AE_OK;
}

static int map_global_avg_pool(importer *im, value *out) {
  value *x;
  int rc;
  if ((rc = data_input(im, 0, &x))) return rc;
  if (x->rank != 3)
    return node_problem(im, 0, "needs a 4-D (N, C, H, W) input");
  int shape[3] = {x->shape[0], 1, 1};
  if (!out->needs_spatial) {
    /* Only Flatten/Reshape read it: the IR's rank-1 global_avg_pool. */
    if (!emit(im, out, "global_avg_pool", &x, 1, 1, shape)) return AE_ENOMEM;
    out->squeezed = 1;
    return AE_OK;
  }
  /* Squeeze-and-excitation: a (C,1,1) map for convs and a Mul. */
  if (x->shape[1] != x->shape[2] || x->shape[1] > 64)
    return node_problem(im, 1,
                        "a GlobalAveragePool whose output feeds a "
                        "spatial op needs a square input of at most "
                        "64x64, not %dx%d",
                        x->shape[1], x->shape[2]);
  json_t *n = emit(im, out, "avg_pool", &x, 1, 3, shape);
  if (!n || set_int(im, n, "kernel", x->shape[1]) ||
      set_int(im, n, "stride", x->shape[1]))
    return AE_ENOMEM;
  return AE_OK;
}

static int map_act(importer *im, value *out, const char *fn, double slope) {
  value *x;
  int rc;
  if ((rc = data_input(im, 0, &x))) return rc;
  json_t *n = emit(im, out, "act", &x, 1, x->rank, x->shape);
  if (!n || json_object_set_new(n, "fn", json_string(fn)) ||
      (slope >= 0 && json_object_set_new(n, "slope", json_real(slope)))) {
    im->failed_nomem = 1;
    return AE_ENOMEM;
  }
  out->squeezed = x->squeezed;
  return AE_OK;
}

/* Clip: relu6 for [0, 6], relu for [0, inf). */
static int map_clip(importer *im, value *out) {
  double lo = -INFINITY, hi = INFINITY;
  if (im->opset < 11) {
    lo = attr_float(im->node, "min", -INFINITY);
    hi = attr_float(im->node, "max", INFINITY);
  } else {
    value *vlo, *vhi;
    int rc;
    if ((rc = const_input(im, 1, 0, &vlo)) ||
        (rc = const_input(im, 2, 0, &vhi)))
      return rc;
    if ((vlo && (const_numel(vlo) != 1 || const_get(vlo, 0, &lo))) ||
        (vhi && (const_numel(vhi) != 1 || const_get(vhi, 0, &hi))))
      return node_problem(im, 0, "min and max must be scalars");
  }
  if (lo == 0 && hi == 6) return map_act(im, out, "relu6", -1);
  if (lo == 0 && isinf(hi) && hi > 0) return map_act(im, out, "relu", -1);
  return node_problem(im, 1,
                      "Clip to [%g, %g]: only [0, 6] (ReLU6) and "
                      "[0, inf) (ReLU) are supported",
                      lo, hi);
}

static int map_binary(importer *im, value *out, const char *op) {
  const Onnx__NodeProto *n = im->node;
  if (n->n_input != 2)
    return node_problem(im, 0, "needs 2 inputs, not %zu", n->n_input);
  value *a, *b;
  int rc;
  if (strcmp(op, "mul") == 0) {
    /* x * 0 (NAS-Bench-201's "none" edge): the IR's zero op. */
    for (int k = 0; k < 2; k++) {
      value *c = input_value(im, k), *x = input_value(im, 1 - k);
      double z;
      if (c && c->kind == V_CONST && x && x->kind == V_DATA &&
          const_numel(c) == 1 && const_get(c, 0, &z) == 0 && z == 0.0) {
        if (!emit(im, out, "zero", &x, 1, x->rank, x->shape)) return AE_ENOMEM;
        out->squeezed = x->squeezed;
        return AE_OK;
      }
    }
  }
  if ((rc = data_input(im, 0, &a)) || (rc = data_input(im, 1, &b))) return rc;
  value *ins[2] = {a, b};
  if (a->rank != b->rank)
    return node_problem(im, 1,
                        "inputs of different ranks (%d and %d per "
                        "sample) are not supported",
                        a->rank, b->rank);
  int shape[3];
  for (int d = 0; d < 3; d++) {
    int x = a->shape[d], y = b->shape[d];
    if (x != y && x != 1 && y != 1)
      return node_problem(im, 0, "input shapes do not broadcast");
    if (x != y && strcmp(op, "add") == 0)
      return node_problem(im, 1, "Add with broadcasting is not supported");
    shape[d] = x > y ? x : y;
  }
  if (!emit(im, out, op, ins, 2, a->rank, shape)) return AE_ENOMEM;
  out->squeezed = a->squeezed && b->squeezed;
  return AE_OK;
}

/* Concat: of the data along channels, or of constants (shape arithmetic). */
static int map_concat(importer *im, value *out) {
  const Onnx__NodeProto *n = im->node;
  if (n->n_input < 1) return node_problem(im, 0, "has no inputs");
  int n_const = 0;
  for (size_t k = 0; k < n->n_input; k++) {
    value *v = input_value(im, (int)k);
    if (v && v->kind == V_CONST) n_const++;
  }
  if (n_const == (int)n->n_input) {
    int64_t vals[64];
    int m = 0;
    for (size_t k = 0; k < n->n_input; k++) {
      value *v = input_value(im, (int)k);
      long long numel = const_numel(v);
      if (const_rank(v) > 1 || numel < 0 || m + numel > 64)
        return node_problem(im, 1,
                            "only a concatenation of short 1-D "
                            "constants (shapes) is folded");
      for (long long e = 0; e < numel; e++) {
        long long d;
        if (const_get_int(v, e, &d))
          return node_problem(im, 1,
                              "constant input %zu has no readable "
                              "integer values",
                              k);
        vals[m++] = (int64_t)d;
      }
    }
    return set_folded(im, out, vals, m, 1);
  }
  long long axis = attr_int(n, "axis", 1);
  value *ins[64];
  long long channels = 0;
  if (n->n_input > 64) return node_problem(im, 0, "more than 64 inputs");
  for (size_t k = 0; k < n->n_input; k++) {
    int rc = data_input(im, (int)k, &ins[k]);
    if (rc) return rc;
    int onnx_rank = ins[k]->rank + 1;
    long long ax = axis < 0 ? axis + onnx_rank : axis;
    if (ax != 1)
      return node_problem(im, 1,
                          "axis %lld: only the channel axis (1) is "
                          "supported",
                          axis);
    if (ins[k]->squeezed)
      return node_problem(im, 1,
                          "a concatenation of pooled maps is not "
                          "supported");
    if (k > 0 &&
        (ins[k]->rank != ins[0]->rank || ins[k]->shape[1] != ins[0]->shape[1] ||
         ins[k]->shape[2] != ins[0]->shape[2]))
      return node_problem(im, 0, "inputs differ in more than channels");
    channels += ins[k]->shape[0];
  }
  if (channels > (1 << 24))
    return node_problem(im, 0, "more than 2^24 channels");
  int shape[3] = {(int)channels, ins[0]->shape[1], ins[0]->shape[2]};
  if (!emit(im, out, "concat", ins, (int)n->n_input, ins[0]->rank, shape))
    return AE_ENOMEM;
  return AE_OK;
}

static int map_flatten_to(importer *im, value *out, value *x) {
  if (x->rank == 1) {
    alias(out, x);
    out->squeezed = 0;
    return AE_OK;
  }
  long long features = (long long)x->shape[0] * x->shape[1] * x->shape[2];
  if (features > (1 << 30))
    return node_problem(im, 0, "more than 2^30 values per sample");
  int shape[3] = {(int)features, 1, 1};
  return emit(im, out, "flatten", &x, 1, 1, shape) ? AE_OK : AE_ENOMEM;
}

static int map_flatten(importer *im, value *out) {
  value *x;
  int rc;
  if ((rc = data_input(im, 0, &x))) return rc;
  long long axis = attr_int(im->node, "axis", 1);
  int onnx_rank = x->squeezed ? 4 : x->rank + 1;
  if (axis < 0) axis += onnx_rank;
  if (axis != 1)
    return node_problem(im, 1,
                        "axis %lld: only a flatten to (batch, "
                        "features), axis 1, is supported",
                        axis);
  return map_flatten_to(im, out, x);
}

static int map_reshape(importer *im, value *out) {
  value *x, *s;
  int rc;
  if ((rc = data_input(im, 0, &x)) || (rc = const_input(im, 1, 1, &s)))
    return rc;
  long long features = (long long)x->shape[0] * x->shape[1] * x->shape[2];
  long long numel = const_numel(s);
  double t[2];
  if (numel != 2 || const_get(s, 0, &t[0]) || const_get(s, 1, &t[1]))
    return node_problem(im, 1,
                        "only a reshape to 2-D (batch, features) is "
                        "supported (the target has %lld dims)",
                        numel);
  int batch_ok =
      t[0] == -1 || t[0] == 0 || (im->batch > 0 && t[0] == im->batch);
  int feat_ok = t[1] == -1 || t[1] == (double)features;
  if (!batch_ok || !feat_ok || (t[0] == -1 && t[1] == -1))
    return node_problem(im, 1,
                        "reshape to [%g, %g]: only (batch, %lld) is "
                        "supported",
                        t[0], t[1], features);
  return map_flatten_to(im, out, x);
}

static int map_gemm(importer *im, value *out, int is_matmul) {
  value *a, *b, *c = NULL;
  int rc;
  if ((rc = data_input(im, 0, &a)) || (rc = const_input(im, 1, 1, &b)) ||
      (!is_matmul && (rc = const_input(im, 2, 0, &c))))
    return rc;
  if (a->rank != 1 || a->squeezed)
    return node_problem(im, 1,
                        "needs a 2-D (batch, features) input; flatten "
                        "first");
  long long trans_b = is_matmul ? 0 : attr_int(im->node, "transB", 0);
  if (!is_matmul && (attr_int(im->node, "transA", 0) != 0 ||
                     attr_float(im->node, "alpha", 1.0) != 1.0 ||
                     (c && attr_float(im->node, "beta", 1.0) != 1.0)))
    return node_problem(im, 1,
                        "only transA 0, alpha 1 and beta 1 are "
                        "supported");
  long long bd[2];
  if (const_rank(b) != 2) return node_problem(im, 0, "the weight must be 2-D");
  const_dims(b, bd, 2);
  long long in = trans_b ? bd[1] : bd[0], o = trans_b ? bd[0] : bd[1];
  if (in != a->shape[0] || o < 1 || o > (1 << 24))
    return node_problem(im, 0,
                        "the weight's dims [%lld, %lld] do not fit %d "
                        "input features",
                        bd[0], bd[1], a->shape[0]);
  if (c && const_numel(c) != o)
    return node_problem(im, 1, "the bias must have %lld values", o);
  int shape[3] = {(int)o, 1, 1};
  json_t *n = emit(im, out, "linear", &a, 1, 1, shape);
  if (!n || set_int(im, n, "out", o)) return AE_ENOMEM;
  if (c && json_object_set_new(n, "bias", json_true())) {
    im->failed_nomem = 1;
    return AE_ENOMEM;
  }
  return AE_OK;
}

static int map_pad(importer *im, value *out) {
  value *x;
  int rc;
  if ((rc = data_input(im, 0, &x))) return rc;
  if (x->rank != 3)
    return node_problem(im, 0, "needs a 4-D (N, C, H, W) input");
  const Onnx__AttributeProto *mode = attr_find(im->node, "mode");
  if (mode && mode->has_s &&
      !(mode->s.len == 8 && memcmp(mode->s.data, "constant", 8) == 0))
    return node_problem(im, 1, "only mode \"constant\" is supported");
  long long pads[8];
  double fill = 0;
  if (im->opset < 11) {
    if (attr_ints(im->node, "pads", 8, pads, 8) != 8)
      return node_problem(im, 0, "pads must have 8 entries");
    fill = attr_float(im->node, "value", 0.0);
  } else {
    value *vp, *vv;
    if ((rc = const_input(im, 1, 1, &vp)) || (rc = const_input(im, 2, 0, &vv)))
      return rc;
    if (input_value(im, 3))
      return node_problem(im, 1, "the axes input is not supported");
    if (const_numel(vp) != 8)
      return node_problem(im, 0, "pads must have 8 entries");
    for (int k = 0; k < 8; k++)
      if (const_get_int(vp, k, &pads[k]))
        return node_problem(im, 0, "pads has no readable integer values");
    if (vv && (const_numel(vv) != 1 || const_get(vv, 0, &fill)))
      return node_problem(im, 0, "constant_value must be a scalar");
  }
  if (fill != 0)
    return node_problem(im, 1,
                        "constant_value %g: only zero padding is "
                        "supported",
                        fill);
  if (pads[0] || pads[1] || pads[4] || pads[5])
    return node_problem(im, 1, "only the spatial axes may be padded");
  for (int k = 0; k < 8; k++)
    if (pads[k] < 0 || pads[k] > 64)
      return node_problem(im, 1, "pads must be 0 to 64");
  if (!pads[2] && !pads[3] && !pads[6] && !pads[7]) {
    alias(out, x); /* torch pads an AvgPool2d with zeros of width 0 */
    return AE_OK;
  }
  int shape[3] = {x->shape[0], x->shape[1] + (int)(pads[2] + pads[6]),
                  x->shape[2] + (int)(pads[3] + pads[7])};
  json_t *n = emit(im, out, "pad", &x, 1, 3, shape);
  json_t *arr =
      n ? json_pack("[IIII]", pads[2], pads[3], pads[6], pads[7]) : NULL;
  if (!arr || json_object_set_new(n, "pads", arr)) {
    im->failed_nomem = 1;
    return AE_ENOMEM;
  }
  return AE_OK;
}

static int map_batch_norm(importer *im, value *out) {
  value *x, *scale;
  int rc;
  if ((rc = data_input(im, 0, &x)) || (rc = const_input(im, 1, 1, &scale)))
    return rc;
  if (const_numel(scale) != x->shape[0])
    return node_problem(im, 0, "scale has %lld values for %d channels",
                        const_numel(scale), x->shape[0]);
  if (!emit(im, out, "batch_norm", &x, 1, x->rank, x->shape)) return AE_ENOMEM;
  out->squeezed = x->squeezed;
  return AE_OK;
}

/* Constant: its "value" tensor (or value_int / value_ints). */
static int map_constant(importer *im, value *out) {
  const Onnx__AttributeProto *a = attr_find(im->node, "value");
  if (a && a->t) {
    if (a->t->n_dims > (size_t)im->lim->max_dims || tensor_numel(a->t) < 0)
      return node_problem(im, 0, "the tensor has too many dims");
    out->kind = V_CONST;
    out->tensor = a->t;
    return AE_OK;
  }
  a = attr_find(im->node, "value_ints");
  if (a && a->n_ints > 0) {
    if (a->n_ints > (size_t)im->lim->max_attribute_ints)
      return node_problem(im, 0, "too many ints");
    return set_folded(im, out, a->ints, (int)a->n_ints, 1);
  }
  a = attr_find(im->node, "value_int");
  if (a && a->has_i) return set_folded(im, out, &a->i, 1, 0);
  return node_problem(im, 1,
                      "only value, value_int and value_ints "
                      "constants are supported");
}

/* Shape of the data: [batch, C, H, W] or [batch, F]. */
static int map_shape(importer *im, value *out) {
  value *x;
  int rc;
  if (attr_find(im->node, "start") || attr_find(im->node, "end"))
    return node_problem(im, 1, "start and end are not supported");
  value *c = input_value(im, 0);
  if (c && c->kind == V_CONST) { /* the shape of a constant */
    long long dims[8];
    int64_t vals[8];
    int n = const_dims(c, dims, 8);
    if (n > 8) return node_problem(im, 0, "more than 8 dims");
    for (int k = 0; k < n; k++)
      vals[k] = (int64_t)dims[k];
    return set_folded(im, out, vals, n, 1);
  }
  if ((rc = data_input(im, 0, &x))) return rc;
  int64_t dims[4] = {im->batch, x->shape[0], x->shape[1], x->shape[2]};
  int rank = x->squeezed ? 4 : x->rank + 1;
  if (x->squeezed) dims[2] = dims[3] = 1;
  return set_folded(im, out, dims, rank, 1);
}

static int map_gather(importer *im, value *out) {
  value *d, *idx;
  int rc;
  if ((rc = const_input(im, 0, 1, &d)) || (rc = const_input(im, 1, 1, &idx)))
    return rc;
  long long n = const_numel(d), m = const_numel(idx);
  if (attr_int(im->node, "axis", 0) != 0 || const_rank(d) != 1 || m < 0 ||
      m > 64 || const_rank(idx) > 1)
    return node_problem(im, 1,
                        "only Gather of a 1-D shape along axis 0 is "
                        "folded");
  int64_t vals[64];
  for (long long k = 0; k < m; k++) {
    long long i, ii, v;
    if (const_get_int(idx, k, &i)) return node_problem(im, 0, "bad indices");
    ii = i < 0 ? i + n : i;
    if (ii < 0 || ii >= n || const_get_int(d, ii, &v))
      return node_problem(im, 0, "index %lld out of range", i);
    vals[k] = (int64_t)v;
  }
  return set_folded(im, out, vals, (int)m, const_rank(idx));
}

static int map_unsqueeze(importer *im, value *out) {
  value *d, *axes = NULL;
  int rc;
  if ((rc = const_input(im, 0, 1, &d))) return rc;
  long long ax[8] = {1};
  int n_axes;
  if (im->opset >= 13) {
    if ((rc = const_input(im, 1, 1, &axes))) return rc;
    n_axes = const_numel(axes) == 1 ? 1 : -1;
    if (n_axes == 1 && const_get_int(axes, 0, &ax[0])) ax[0] = 1;
  } else {
    n_axes = attr_ints(im->node, "axes", 0, ax, 8);
  }
  if (const_rank(d) != 0 || n_axes != 1 || ax[0] != 0)
    return node_problem(im, 1,
                        "only an Unsqueeze of a scalar on axis 0 is "
                        "folded");
  long long v;
  if (const_get_int(d, 0, &v))
    return node_problem(im, 0, "unreadable integer scalar");
  int64_t iv = (int64_t)v;
  return set_folded(im, out, &iv, 1, 1);
}

static int map_cast(importer *im, value *out) {
  value *d;
  int rc;
  if ((rc = const_input(im, 0, 1, &d))) return rc;
  long long n = const_numel(d);
  if (const_rank(d) > 1 || n < 0 || n > 64)
    return node_problem(im, 1,
                        "only a Cast of a short 1-D constant is "
                        "folded");
  int64_t vals[64];
  for (long long k = 0; k < n; k++) {
    long long v;
    if (const_get_int(d, k, &v))
      return node_problem(im, 1, "only integer values are folded");
    vals[k] = (int64_t)v;
  }
  return set_folded(im, out, vals, (int)n, const_rank(d));
}

/* Identity and Dropout: the output is the input.  Only output 0 of any
 * node is defined: Dropout's mask, MaxPool's indices and BatchNormalization's
 * running statistics stay undefined, so a node reading one is refused. */
static int map_identity(importer *im, value *out) {
  value *x = input_value(im, 0);
  if (!x || x->kind == V_NONE)
    return node_problem(im, 0, "input 0 is missing or not defined yet");
  alias(out, x);
  return AE_OK;
}

/* Maps the current node; returns AE_OK, AE_EINVAL (problem added) or
 * AE_ENOMEM. */
static int map_node(importer *im) {
  const Onnx__NodeProto *n = im->node;
  const char *op = str_or_empty(n->op_type);
  const char *domain = str_or_empty(n->domain);
  if (domain[0] && strcmp(domain, "ai.onnx") != 0)
    return node_problem(im, 1, "domain \"%.64s\" is not supported", domain);
  value *out = output_value(im);
  if (!out) return node_problem(im, 0, "has no output");
  if (out->kind != V_NONE)
    return node_problem(im, 0, "output \"%.100s\" is defined twice", out->name);
  if (strcmp(op, "Conv") == 0) return map_conv(im, out);
  if (strcmp(op, "BatchNormalization") == 0) return map_batch_norm(im, out);
  if (strcmp(op, "Relu") == 0) return map_act(im, out, "relu", -1);
  if (strcmp(op, "LeakyRelu") == 0) {
    double alpha = attr_float(n, "alpha", 0.01);
    if (!(alpha >= 0 && alpha <= 1))
      return node_problem(im, 1, "alpha %g: only 0 to 1 is supported", alpha);
    return map_act(im, out, "leaky_relu", alpha);
  }
  if (strcmp(op, "Sigmoid") == 0) return map_act(im, out, "sigmoid", -1);
  if (strcmp(op, "Tanh") == 0) return map_act(im, out, "tanh", -1);
  if (strcmp(op, "HardSwish") == 0) return map_act(im, out, "hardswish", -1);
  if (strcmp(op, "HardSigmoid") == 0) {
    double alpha = attr_float(n, "alpha", 0.2),
           beta = attr_float(n, "beta", 0.5);
    if (fabs(alpha - 1.0 / 6.0) > 1e-6 || fabs(beta - 0.5) > 1e-6)
      return node_problem(im, 1,
                          "alpha %g, beta %g: only PyTorch's "
                          "hardsigmoid (alpha 1/6, beta 0.5) is "
                          "supported",
                          alpha, beta);
    return map_act(im, out, "hardsigmoid", -1);
  }
  if (strcmp(op, "Clip") == 0) return map_clip(im, out);
  if (strcmp(op, "Add") == 0) return map_binary(im, out, "add");
  if (strcmp(op, "Mul") == 0) return map_binary(im, out, "mul");
  if (strcmp(op, "Concat") == 0) return map_concat(im, out);
  if (strcmp(op, "MaxPool") == 0) return map_pool(im, out, 1);
  if (strcmp(op, "AveragePool") == 0) return map_pool(im, out, 0);
  if (strcmp(op, "GlobalAveragePool") == 0) return map_global_avg_pool(im, out);
  if (strcmp(op, "Gemm") == 0) return map_gemm(im, out, 0);
  if (strcmp(op, "MatMul") == 0) return map_gemm(im, out, 1);
  if (strcmp(op, "Flatten") == 0) return map_flatten(im, out);
  if (strcmp(op, "Reshape") == 0) return map_reshape(im, out);
  if (strcmp(op, "Identity") == 0 || strcmp(op, "Dropout") == 0)
    return map_identity(im, out);
  if (strcmp(op, "Pad") == 0) return map_pad(im, out);
  if (strcmp(op, "Constant") == 0) return map_constant(im, out);
  if (strcmp(op, "Shape") == 0) return map_shape(im, out);
  if (strcmp(op, "Gather") == 0) return map_gather(im, out);
  if (strcmp(op, "Unsqueeze") == 0) return map_unsqueeze(im, out);
  if (strcmp(op, "Cast") == 0) return map_cast(im, out);
  return node_problem(im, 1, "op type \"%.64s\" is not supported", op);
}

/* ---- the model ---- */

/* Is s (NULL: yes) valid UTF-8 with no NUL, as JSON strings must be? */
static int valid_utf8(const char *s) {
  const unsigned char *c = (const unsigned char *)s;
  if (!c) return 1;
  while (*c) {
    int n = *c < 0x80             ? 0
            : (*c & 0xe0) == 0xc0 ? 1
            : (*c & 0xf0) == 0xe0 ? 2
            : (*c & 0xf8) == 0xf0 ? 3
                                  : -1;
    if (n < 0 || (n == 1 && *c < 0xc2)) return 0;
    unsigned cp = n == 0 ? *c : *c & (0x3f >> n);
    c++;
    for (int k = 0; k < n; k++, c++) {
      if ((*c & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (*c & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
  }
  return 1;
}

static int names_valid(char *const *names, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (!valid_utf8(names[k])) return 0;
  return 1;
}

static int value_infos_valid(Onnx__ValueInfoProto *const *v, size_t n) {
  for (size_t k = 0; k < n; k++) {
    if (!valid_utf8(v[k]->name)) return 0;
    const Onnx__TypeProto *t = v[k]->type;
    if (t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
        t->tensor_type && t->tensor_type->shape) {
      const Onnx__TensorShapeProto *sh = t->tensor_type->shape;
      for (size_t d = 0; d < sh->n_dim; d++)
        if (sh->dim[d]->value_case ==
                ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
            !valid_utf8(sh->dim[d]->dim_param))
          return 0;
    }
  }
  return 1;
}

/* Checks every repeated count of the decoded graph against the limits, and
 * that every name the census or the graph will carry is UTF-8. */
static int check_counts(importer *im, const Onnx__GraphProto *g) {
  const ae_onnx_limits *lim = im->lim;
  ae_problem *p = im->p;
  if (g->n_node > (size_t)lim->max_nodes) {
    add_problem(p, "/nodes",
                "the graph has %zu nodes, more than the "
                "limit of %d",
                g->n_node, lim->max_nodes);
    return AE_EINVAL;
  }
  if (g->n_initializer > (size_t)lim->max_initializers) {
    add_problem(p, "/initializers",
                "the graph has %zu initializers, more "
                "than the limit of %d",
                g->n_initializer, lim->max_initializers);
    return AE_EINVAL;
  }
  if (g->n_input > (size_t)lim->max_graph_io ||
      g->n_output > (size_t)lim->max_graph_io ||
      g->n_value_info > (size_t)lim->max_graph_io) {
    add_problem(p, "/inputs",
                "the graph has more than %d inputs, outputs "
                "or value infos",
                lim->max_graph_io);
    return AE_EINVAL;
  }
  if (!value_infos_valid(g->input, g->n_input) ||
      !value_infos_valid(g->output, g->n_output)) {
    add_problem(p, "/inputs", "an input or output name is not UTF-8");
    return AE_EINVAL;
  }
  for (size_t i = 0; i < g->n_initializer; i++)
    if (!valid_utf8(g->initializer[i]->name)) {
      add_problem(p, "/initializers",
                  "initializer %zu: the name is not "
                  "UTF-8",
                  i);
      return AE_EINVAL;
    }
  for (size_t i = 0; i < g->n_initializer; i++)
    if (g->initializer[i]->n_dims > (size_t)lim->max_dims) {
      add_problem(p, "/initializers",
                  "initializer %zu has %zu dims, "
                  "more than %d",
                  i, g->initializer[i]->n_dims, lim->max_dims);
      return AE_EINVAL;
    }
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    im->node_index = (int)i;
    im->node = n;
    if (n->n_input > (size_t)lim->max_node_io ||
        n->n_output > (size_t)lim->max_node_io)
      return node_problem(im, 0, "more than %d inputs or outputs",
                          lim->max_node_io);
    if (!valid_utf8(n->op_type) || !valid_utf8(n->domain) ||
        !valid_utf8(n->name) || !names_valid(n->input, n->n_input) ||
        !names_valid(n->output, n->n_output)) {
      im->node = NULL; /* its name cannot go into the message */
      return node_problem(im, 0, "a name or the op type is not UTF-8");
    }
    if (n->n_attribute > (size_t)lim->max_attributes)
      return node_problem(im, 0, "more than %d attributes",
                          lim->max_attributes);
    for (size_t k = 0; k < n->n_attribute; k++) {
      const Onnx__AttributeProto *a = n->attribute[k];
      if (a->n_ints > (size_t)lim->max_attribute_ints ||
          a->n_floats > (size_t)lim->max_attribute_ints)
        return node_problem(im, 0, "attribute %zu has more than %d values", k,
                            lim->max_attribute_ints);
      if (a->g || a->n_graphs)
        return node_problem(im, 1,
                            "subgraphs (If, Loop, Scan) are not "
                            "supported");
      if (a->t && (a->t->n_dims > (size_t)lim->max_dims))
        return node_problem(im, 0, "a tensor attribute has more than %d dims",
                            lim->max_dims);
    }
  }
  im->node = NULL;
  return AE_OK;
}

/* {"name","shape"} of a value info, the batch as given. */
static json_t *describe_io(const Onnx__ValueInfoProto *vi) {
  json_t *shape = json_array();
  json_t *o = json_pack("{s:s}", "name", str_or_empty(vi->name));
  if (!shape || !o) {
    json_decref(shape);
    json_decref(o);
    return NULL;
  }
  const Onnx__TypeProto *t = vi->type;
  if (t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
      t->tensor_type && t->tensor_type->shape) {
    const Onnx__TensorShapeProto *s = t->tensor_type->shape;
    for (size_t k = 0; k < s->n_dim && k < 8; k++) {
      const Onnx__TensorShapeProto__Dimension *d = s->dim[k];
      json_t *e =
          d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
              ? json_integer(d->dim_value)
          : d->value_case ==
                  ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
              ? json_string(str_or_empty(d->dim_param))
              : json_null();
      json_array_append_new(shape, e);
    }
  }
  json_object_set_new(o, "shape", shape);
  return o;
}

/* Finds the data input (the one graph input that is not an initializer)
 * and defines it. */
static int define_input(importer *im, const Onnx__GraphProto *g,
                        ae_onnx_model *out) {
  const Onnx__ValueInfoProto *data = NULL;
  int n_data = 0;
  for (size_t i = 0; i < g->n_input; i++) {
    const char *name = g->input[i]->name;
    if (!name || !name[0]) {
      add_problem(im->p, "/inputs", "input %zu has no name", i);
      return AE_EINVAL;
    }
    value *v = value_get(im, name);
    if (!v) return AE_ENOMEM;
    if (v->kind == V_CONST) continue; /* an initializer listed as input */
    data = g->input[i];
    n_data++;
  }
  if (n_data != 1) {
    add_problem(im->p, "/inputs",
                "the model has %d data inputs; archeval scores a model "
                "with exactly one",
                n_data);
    return AE_EINVAL;
  }
  json_t *d = describe_io(data);
  if (!d || json_array_append_new(out->inputs, d)) return AE_ENOMEM;
  const Onnx__TypeProto *t = data->type;
  const Onnx__TensorShapeProto *s =
      t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
              t->tensor_type
          ? t->tensor_type->shape
          : NULL;
  if (!s || (s->n_dim != 4 && s->n_dim != 2)) {
    add_problem(im->p, "/inputs/0",
                "input \"%.100s\" must be a tensor of shape (N, C, H, W) "
                "or (N, F)",
                data->name);
    return AE_EINVAL;
  }
  int dims[4];
  for (size_t k = 0; k < s->n_dim; k++) {
    const Onnx__TensorShapeProto__Dimension *dm = s->dim[k];
    int known =
        dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    if (k == 0) {
      dims[0] = known && dm->dim_value > 0 && dm->dim_value < (1 << 30)
                    ? (int)dm->dim_value
                    : -1;
      continue;
    }
    if (!known || dm->dim_value < 1 || dm->dim_value > 65536) {
      add_problem(im->p, "/inputs/0",
                  "input \"%.100s\": dimension %zu must be a number from 1 "
                  "to 65536 (export with a fixed input size)",
                  data->name, k);
      return AE_EINVAL;
    }
    dims[k] = (int)dm->dim_value;
  }
  im->batch = dims[0];
  value *v = value_get(im, data->name);
  v->kind = V_DATA;
  v->id = "input";
  v->rank = s->n_dim == 4 ? 3 : 1;
  v->shape[0] = dims[1];
  v->shape[1] = s->n_dim == 4 ? dims[2] : 1;
  v->shape[2] = s->n_dim == 4 ? dims[3] : 1;
  memcpy(out->input_shape, v->shape, sizeof v->shape);
  out->input_rank = v->rank;
  return AE_OK;
}

/* Marks each value read by an op other than Flatten/Reshape/Shape: a
 * GlobalAveragePool output so read must stay spatial. */
static int mark_consumers(importer *im, const Onnx__GraphProto *g) {
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    const char *op = str_or_empty(n->op_type);
    int flat = strcmp(op, "Flatten") == 0 || strcmp(op, "Reshape") == 0 ||
               strcmp(op, "Shape") == 0;
    for (size_t k = 0; k < n->n_input; k++) {
      if (!n->input[k] || !n->input[k][0]) continue;
      value *v = value_get(im, n->input[k]);
      if (!v) return AE_ENOMEM;
      if (!(flat && k == 0)) v->needs_spatial = 1;
    }
  }
  return AE_OK;
}

static int import_graph(importer *im, const Onnx__ModelProto *m,
                        ae_onnx_model *out) {
  const Onnx__GraphProto *g = m->graph;
  int rc;
  if ((rc = check_counts(im, g))) return rc;
  /* A table at most half full: every name is an input, an output or an
   * initializer. */
  size_t names = g->n_input + g->n_initializer + g->n_output + 8;
  for (size_t i = 0; i < g->n_node; i++)
    names += g->node[i]->n_input + g->node[i]->n_output;
  im->cap = 64;
  while (im->cap < 2 * names)
    im->cap *= 2;
  im->values = calloc(im->cap, sizeof *im->values);
  if (!im->values) return AE_ENOMEM;
  for (size_t i = 0; i < g->n_initializer; i++) {
    const Onnx__TensorProto *t = g->initializer[i];
    if (!t->name || !t->name[0] || tensor_numel(t) < 0) {
      add_problem(im->p, "/initializers",
                  "initializer %zu has no name or "
                  "impossible dims",
                  i);
      return AE_EINVAL;
    }
    value *v = value_get(im, t->name);
    if (!v) return AE_ENOMEM;
    v->kind = V_CONST;
    v->tensor = t;
  }
  if ((rc = define_input(im, g, out))) return rc;
  if ((rc = mark_consumers(im, g))) return rc;
  int n_bn = 0, n_conv_bias = 0;
  for (size_t i = 0; i < g->n_node; i++) {
    im->node_index = (int)i;
    im->node = g->node[i];
    const char *op = str_or_empty(im->node->op_type);
    json_t *count = json_object_get(out->ops, op);
    if (json_object_set_new(
            out->ops, op,
            json_integer(count ? json_integer_value(count) + 1 : 1)))
      return AE_ENOMEM;
    n_bn += strcmp(op, "BatchNormalization") == 0;
    n_conv_bias += strcmp(op, "Conv") == 0 && im->node->n_input > 2 &&
                   im->node->input[2] && im->node->input[2][0];
    rc = map_node(im);
    if (im->failed_nomem) return AE_ENOMEM;
    if (rc) return rc;
    if (json_array_size(im->nodes) > (size_t)im->lim->max_graph_nodes) {
      node_problem(im, 0, "the lowered graph would have more than %d nodes",
                   im->lim->max_graph_nodes);
      return AE_EINVAL;
    }
  }
  im->node = NULL;
  /* The output. */
  if (g->n_output != 1) {
    add_problem(im->p, "/outputs",
                "the model has %zu outputs; archeval scores a model with "
                "exactly one",
                g->n_output);
    return AE_EINVAL;
  }
  json_t *d = describe_io(g->output[0]);
  if (!d || json_array_append_new(out->outputs, d)) return AE_ENOMEM;
  value *o = g->output[0]->name ? value_get(im, g->output[0]->name) : NULL;
  if (!o || o->kind != V_DATA || strcmp(o->id, "input") == 0) {
    add_problem(im->p, "/outputs/0",
                "output \"%.100s\" is not computed from the input by a "
                "supported op",
                g->output[0]->name ? g->output[0]->name : "");
    return AE_EINVAL;
  }
  if (json_object_set_new(out->architecture, "output", json_string(o->id)))
    return AE_ENOMEM;
  if (n_bn == 0 && n_conv_bias > 0) {
    char w[320];
    snprintf(w, sizeof w,
             "the model has no BatchNormalization and %d convs with biases: "
             "if it was exported in eval mode, batch norm was folded into "
             "the convs and is scored as conv biases (export in training "
             "mode to keep it)",
             n_conv_bias);
    if (json_array_append_new(out->warnings, json_string(w))) return AE_ENOMEM;
  }
  return AE_OK;
}

int ae_onnx_import(const void *bytes, size_t len, const ae_onnx_limits *lim,
                   ae_onnx_model *out, ae_problem *p) {
  memset(out, 0, sizeof *out);
  ae_onnx_limits dflt;
  if (!lim) {
    ae_onnx_limits_default(&dflt);
    lim = &dflt;
  }
  if (len > lim->max_bytes) {
    ae_problem_set(p, 413, "model_too_large", "Model too large",
                   "the model has %zu bytes, more than the limit of %zu", len,
                   lim->max_bytes);
    return AE_EINVAL;
  }
  budget b = {0, lim->max_unpacked_bytes, 0};
  ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
  Onnx__ModelProto *m =
      onnx__model_proto__unpack(&alloc, len, (const uint8_t *)bytes);
  if (!m) {
    if (b.exceeded)
      add_problem(p, "",
                  "decoding the model needs more than %zu bytes of "
                  "memory",
                  lim->max_unpacked_bytes);
    else
      add_problem(p, "",
                  "the body is not an ONNX model (protobuf "
                  "decoding failed)");
    return AE_EINVAL;
  }
  importer im;
  memset(&im, 0, sizeof im);
  im.lim = lim;
  im.p = p;
  im.opset = -1;
  int rc = AE_ENOMEM;
  for (size_t k = 0; k < m->n_opset_import; k++) {
    const char *dom = str_or_empty(m->opset_import[k]->domain);
    if ((!dom[0] || strcmp(dom, "ai.onnx") == 0) &&
        m->opset_import[k]->has_version)
      im.opset = (long long)m->opset_import[k]->version;
  }
  out->architecture = json_pack("{s:s, s:[]}", "type", "graph", "nodes");
  out->inputs = json_array();
  out->outputs = json_array();
  out->ops = json_object();
  out->warnings = json_array();
  if (!out->architecture || !out->inputs || !out->outputs || !out->ops ||
      !out->warnings)
    goto done;
  im.nodes = json_object_get(out->architecture, "nodes");
  im.warnings = out->warnings;
  if (!m->graph) {
    add_problem(p, "", "the model has no graph");
    rc = AE_EINVAL;
    goto done;
  }
  if (im.opset < 1 || im.opset > 1000) {
    add_problem(p, "/opset_import",
                "the model imports no default-domain "
                "(ai.onnx) opset");
    rc = AE_EINVAL;
    goto done;
  }
  out->opset = im.opset;
  rc = import_graph(&im, m, out);
  if (rc == AE_OK) {
    out->n_onnx_nodes = (int)m->graph->n_node;
    out->n_graph_nodes = (int)json_array_size(im.nodes);
  }
done:
  if (im.values)
    for (size_t i = 0; i < im.cap; i++)
      if (im.values[i].owns_ints) free(im.values[i].ints);
  free(im.values);
  onnx__model_proto__free_unpacked(m, &alloc);
  if (rc != AE_OK) {
    ae_onnx_model_free(out);
    if (rc == AE_ENOMEM)
      ae_problem_set(p, 500, "internal", NULL,
                     "out of memory while importing the model");
  }
  return rc;
}
