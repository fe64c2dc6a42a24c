/* arch.h: the architecture IR, what every request's "architecture" becomes.
 *
 * Three request forms (scorecard.md §1.1) parse into one ae_arch.  Before
 * anything runs, an ae_arch is lowered into an ae_graph: a topologically
 * ordered list of primitive ops with per-sample shapes, which is the only
 * thing the engine executes.  nb201 and mlp_dag also keep their small cell
 * DAG (ae_dag), the "topological" view that topology metrics and the
 * analytic kernels use.
 *
 * All of it is plain data with no I/O: parsers are fuzzable, and a request
 * (which owns its ae_arch and lowered ae_graph) moves between threads as a
 * whole; whoever holds the request owns them. */
#ifndef AE_ARCH_H
#define AE_ARCH_H

#include "api/problem.h"
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { AE_ARCH_NB201, AE_ARCH_MLP_DAG, AE_ARCH_GRAPH } ae_arch_type;

typedef enum {
  AE_ACT_RELU,
  AE_ACT_LEAKY_RELU,
  AE_ACT_TANH,
  AE_ACT_SIGMOID,
  AE_ACT_SWISH,
  AE_ACT_GELU,
  AE_ACT_ERF,
  AE_ACT_IDENTITY
} ae_act_fn;

typedef struct {
  ae_act_fn fn;
  double slope; /* leaky_relu only (default 0.01) */
} ae_activation;

/* Activations the IR parses and counts but no executor runs yet.  They
 * extend ae_act_fn's numbering rather than joining the enum, so that the
 * executors' switches (which have no default) still compile with -Wswitch;
 * they move into ae_act_fn when the executors learn them.  Until then
 * ae_graph_first_unexecutable_op names them and ae_arch_lower refuses them
 * (422 unsupported).  relu6 = min(max(x, 0), 6); hardswish = x relu6(x+3)/6;
 * hardsigmoid = relu6(x+3)/6 (PyTorch's definitions). */
enum {
  AE_ACT_RELU6 = AE_ACT_IDENTITY + 1,
  AE_ACT_HARDSWISH,
  AE_ACT_HARDSIGMOID,
  AE_ACT_COUNT
};

/* True for relu, leaky_relu, identity, relu6, hardsigmoid: nets of these are
 * piecewise linear. */
int ae_act_is_piecewise_linear(ae_act_fn fn);
/* "relu", "leaky_relu", ...; NULL for an unknown fn. */
const char *ae_act_name(ae_act_fn fn);
/* Parses a name; returns 0 or AE_EINVAL. */
int ae_act_from_name(const char *name, ae_act_fn *fn);
/* E_{z~N(0,1)}[sigma(z)^2] (closed form where one exists, else a 1-D
 * quadrature accurate to 1e-12) and c_sigma = 1 / that (2 for relu): the
 * init gain of a layer fed by this activation (scorecard.md §3). */
double ae_act_second_moment(ae_activation a);
double ae_act_c_sigma(ae_activation a);

/* ---- the cell DAG (nb201 and mlp_dag) ---- */

typedef enum { AE_EDGE_ZERO, AE_EDGE_SKIP, AE_EDGE_LINEAR } ae_edge_kind;

typedef struct {
  int src, dst; /* src < dst; node 0 is the cell input */
  ae_edge_kind
      kind; /* nb201: conv -> LINEAR, skip/pool -> SKIP, none -> ZERO */
  ae_activation act; /* LINEAR edges: the activation applied before W */
} ae_dag_edge;

typedef struct {
  int n_nodes;        /* node 0 = input, node n_nodes-1 = output */
  ae_dag_edge *edges; /* every (src,dst) pair with src < dst, in the
                         string's order, ZERO edges included */
  int n_edges;
} ae_dag;

/* ---- the lowered graph ---- */

typedef enum {
  AE_OP_INPUT,
  AE_OP_LINEAR,
  AE_OP_CONV,
  AE_OP_BATCH_NORM,
  AE_OP_ACT,
  AE_OP_AVG_POOL,
  AE_OP_GLOBAL_AVG_POOL,
  AE_OP_ADD,
  AE_OP_IDENTITY,
  AE_OP_ZERO,
  AE_OP_FLATTEN
} ae_op;

/* Ops the IR parses, shapes and counts but no executor runs yet: they
 * extend ae_op's numbering (see AE_ACT_RELU6 for why they are not in the
 * enum itself).  MAX_POOL: kernel, stride, padding, dilation, ceil_mode;
 * CONCAT: along channels (rank 3) or features (rank 1); MUL: elementwise
 * product with broadcasting of size-1 dimensions (squeeze-and-excitation's
 * (C,1,1) scale); PAD: zeros around the spatial dimensions. */
enum {
  AE_OP_MAX_POOL = AE_OP_FLATTEN + 1,
  AE_OP_CONCAT,
  AE_OP_MUL,
  AE_OP_PAD,
  AE_OP_COUNT
};

typedef struct {
  ae_op op;
  char *name;    /* graph: the user's id; lowered nets: a path like
                    "stage0/cell2/node3/edge1/conv" */
  int src_index; /* graph: index in the request's "nodes" array (for
                    error pointers); -1 for generated nodes */
  int *inputs;   /* indices of earlier nodes (inputs[k] < own index) */
  int n_inputs;
  int out;                     /* LINEAR: out features; CONV: out channels */
  int kernel, stride, padding; /* CONV, AVG_POOL, MAX_POOL */
  int groups;                  /* CONV: 1 (default) .. in channels; in and out
                                  channels both divisible by it */
  int dilation;                /* CONV, MAX_POOL: 1 (default) */
  int ceil_mode;               /* MAX_POOL: output size rounded up (PyTorch's
                                  ceil_mode; the last window starts inside the
                                  input or its left padding) */
  int pads[4];           /* PAD: top, left, bottom, right (ONNX's order) */
  int count_include_pad; /* AVG_POOL: 1 = padding counts in the divisor;
                            NB201's avg_pool_3x3 uses 0 */
  int bias;              /* LINEAR, CONV: has a bias (zero at init,
                            trained; counted in params, so a zero-bias
                            executor runs it exactly) */
  ae_activation act;     /* ACT */
  double init_gain;      /* LINEAR/CONV: W ~ N(0, init_gain / fan_in); the
                            c_sigma of the activation feeding it, else 1 */
  int shape[3], rank;    /* per-sample output: rank 1 {F,_,_}, rank 3 {C,H,W};
                            filled by ae_graph_infer_shapes */
  int block;             /* 1: a block output of ranking.md §0 (set by the
                            lowering: nb201's stem, cells and reduction
                            blocks; a graph node's "block": true or the
                            graph rule) */
} ae_node;

typedef struct {
  ae_node *nodes; /* nodes[0] is AE_OP_INPUT; topological order */
  int n_nodes;
  int output;           /* index of the logits node (rank 1 after flatten) */
  int scale_input_norm; /* 1: each flattened input sample is scaled to norm
                           sqrt(d) before node 0 (mlp_dag, dense graphs) */
  int num_classes;      /* features of the output node */
} ae_graph;

/* ---- the parsed architecture ---- */

typedef enum {
  AE_NB201_NONE,
  AE_NB201_SKIP,
  AE_NB201_CONV1X1,
  AE_NB201_CONV3X3,
  AE_NB201_POOL3X3
} ae_nb201_op;

typedef struct {
  ae_arch_type type;
  int num_classes; /* 0 = from the data */
  /* nb201 */
  ae_nb201_op nb201_ops[6]; /* edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2 */
  int channels;             /* 16 */
  int cells_per_stage;      /* 5 */
  /* nb201 and mlp_dag: the cell DAG */
  ae_dag dag;
  /* mlp_dag */
  int width; /* 256 */
  int bias;  /* 0 */
  /* graph: the user's graph, topologically sorted, shapes not yet known */
  ae_graph graph;
  /* An uploaded ONNX model ({"type": "onnx", "model": id}): its id
   * ("sha256:..."), owned; the model itself is parsed as its "graph"
   * (type AE_ARCH_GRAPH).  NULL for every other form. */
  char *model;
} ae_arch;

typedef struct {
  int input_shape[3], input_rank; /* per-sample shape of the data */
  int num_classes;
  int allow_unexecutable; /* 1: lower graphs with ops no executor runs
                             yet (the offline `archeval onnx-lower`); 0:
                             refuse them, AE_EUNSUPPORTED */
  int probe; /* an ae_probe: AE_PROBE_NONE (0), the network itself */
} ae_lower_opts;

/* The small networks some metrics run instead of the full one
 * (ae_lower_opts.probe). */
typedef enum {
  AE_PROBE_NONE = 0,
  /* The linear-regions probe: nb201: C = 1, one cell, no stem, BN+ReLU,
   * GAP, linear; mlp_dag: width 16; graph: unchanged. */
  AE_PROBE_LINEAR_REGIONS = 1,
  /* The probe network of ranking.md §0 (activation_patterns): nb201 with
   * the same cell and skeleton, stem width C = 3 and one cell per stage;
   * mlp_dag and graph: unchanged.  Block outputs marked as for the full
   * network. */
  AE_PROBE_RANKING = 2
} ae_probe;

/* Server limits and defaults that parsing enforces (scorecard.md §1.1). */
typedef struct {
  int max_nodes;                /* 4096 */
  int max_inputs_per_node;      /* 64 */
  double max_params;            /* 1e9 */
  double max_working_set_bytes; /* --max-job-memory: the daemon checks it
                                   against gpu/plan.c's ae_plan_job (not
                                   the parser); 0 = no limit */
  int max_batch_size;           /* 4096 */
  long long default_timeout_ms; /* 600000 */
} ae_limits;

/* The defaults above. */
void ae_limits_default(ae_limits *lim);

/* Parses the "architecture" object.  pointer is its JSON pointer
 * ("/architecture") used to name offending fields in p.  Returns 0 or
 * AE_EINVAL (p filled); out is then freed already. */
int ae_arch_from_json(const json_t *j, const char *pointer,
                      const ae_limits *lim, ae_arch *out, ae_problem *p);

/* Builds the executable graph (shapes inferred, init gains set).  Errors
 * (shape mismatch, too many parameters) name fields under pointer.
 * Conventions: nb201's classifier has a bias (PyTorch's nn.Linear; NB201's
 * parameter counts include it), its convs and the shortcut conv none;
 * mlp_dag's `bias` applies to the stem, every linear edge and the readout;
 * a cell or DAG node with one incoming term is that term itself (no ADD),
 * with none a ZERO node; a rank-3 output gets a FLATTEN appended. */
int ae_arch_lower(const ae_arch *a, const ae_lower_opts *o,
                  const ae_limits *lim, const char *pointer, ae_graph *out,
                  ae_problem *p);

/* The first node no executor can run yet (an op or activation of the
 * AE_OP_MAX_POOL / AE_ACT_RELU6 groups, a grouped or dilated conv) or -1;
 * why (when not NULL) gets a sentence naming the op.  ae_arch_lower calls
 * it unless allow_unexecutable; an engine that lowers by itself should too.
 */
int ae_graph_first_unexecutable_op(const ae_graph *g, char *why,
                                   size_t why_size);

/* The op's wire name ("conv", "max_pool", ...); "?" for an unknown op. */
const char *ae_op_name(int op);

/* Fills every node's shape from the input shape; checks each op's inputs
 * agree.  Used by ae_arch_lower. */
int ae_graph_infer_shapes(ae_graph *g, const int *input_shape, int input_rank,
                          const char *pointer, ae_problem *p);

/* Parameter count (weights, BN gammas and betas, biases) and forward FLOPs
 * per sample (2 per multiply-add). */
double ae_graph_params(const ae_graph *g);
/* The block outputs (nodes with .block set) in topological order:
 * *blocks malloc'd (NULL when *n is 0).  0 or AE_ENOMEM. */
int ae_graph_block_outputs(const ae_graph *g, int **blocks, int *n);
double ae_graph_flops(const ae_graph *g);
/* Forward multiply-accumulates per sample (flops = 2 x macs); see
 * node_macs in lower.c for what each op counts. */
double ae_graph_macs(const ae_graph *g);

/* Deep copy; returns 0 or AE_ENOMEM. */
int ae_graph_copy(const ae_graph *src, ae_graph *dst);

void ae_graph_free(ae_graph *g);
void ae_arch_free(ae_arch *a);

#endif
