/* onnx.h: the ONNX importer: the bytes of an ONNX model in, the "graph"
 * architecture the API accepts out (or a problem naming what is wrong).
 *
 * No I/O: the caller reads the file (or the upload) and owns both the bytes
 * and the result.  The model's weights are ignored (scores are taken at
 * initialisation) but their shapes are checked against the graph.  The
 * operator set, the limits and the warnings are described at ae_onnx_import.
 * Plain data; whoever holds an ae_onnx_model owns it. */
#ifndef AE_ONNX_H
#define AE_ONNX_H

#include <jansson.h>
#include <stddef.h>

#include "api/problem.h"

/* Every count an ONNX file carries is bounded; the defaults are in
 * parentheses (ae_onnx_limits_default). */
typedef struct {
  size_t max_bytes;          /* the file (64 MiB, --max-model-bytes) */
  size_t max_unpacked_bytes; /* memory the decoded protobuf may use
                                (4 x max_bytes + 16 MiB) */
  int max_nodes;             /* ONNX nodes in the graph (20000) */
  int max_initializers;      /* initializers (20000) */
  int max_graph_io;          /* graph inputs, outputs, value_infos (20000) */
  int max_node_io;           /* inputs or outputs of one node (64) */
  int max_attributes;        /* attributes of one node (64) */
  int max_attribute_ints;    /* ints of one attribute (64) */
  int max_dims;              /* dims of one tensor (8) */
  int max_graph_nodes;       /* nodes of the lowered graph (4096, the
                                graph form's limit) */
} ae_onnx_limits;

void ae_onnx_limits_default(ae_onnx_limits *lim);

typedef struct {
  /* {"type":"graph","nodes":[...],"output":"..."}: the architecture a
   * request may carry (new reference). */
  json_t *architecture;
  /* [{"name","shape"}] of the data input and of the outputs, shapes with
   * the batch dimension (a symbolic one as its name). */
  json_t *inputs, *outputs;
  json_t *ops;                    /* {"Conv": 20, ...}: the ONNX op census */
  json_t *warnings;               /* ["...", ...] */
  int input_shape[3], input_rank; /* per-sample: {C,H,W} or {F} */
  int n_onnx_nodes;
  int n_graph_nodes; /* nodes of "architecture" */
  long long opset;   /* the default domain's opset version */
} ae_onnx_model;

/* Imports an ONNX model.  Maps Conv, BatchNormalization, Relu, LeakyRelu,
 * Clip (min 0 and max 6: relu6; min 0 and no max: relu), HardSwish,
 * HardSigmoid (PyTorch's alpha 1/6, beta 1/2), Sigmoid, Tanh, Add, Mul,
 * Concat (channels), MaxPool, AveragePool, GlobalAveragePool, Gemm, MatMul,
 * Mul by a constant 0 (NAS-Bench-201's "none": the zero op),
 * Flatten, Reshape (to 2-D), Identity, Pad (constant zeros), Dropout (as
 * identity) to graph nodes, and folds the shape arithmetic torch exports
 * (Constant, Shape, Gather, Unsqueeze, Concat of constants).  Anything else
 * is a 422 whose field pointer is /nodes/<index> and whose detail names the
 * node and its op type.  Returns AE_OK, AE_EINVAL (p filled: 422
 * invalid_request or unsupported; 413 model_too_large over max_bytes) or
 * AE_ENOMEM; out is then empty. */
int ae_onnx_import(const void *bytes, size_t len, const ae_onnx_limits *lim,
                   ae_onnx_model *out, ae_problem *p);

void ae_onnx_model_free(ae_onnx_model *m);

#endif
