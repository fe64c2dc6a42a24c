/* plan.h: the device-agnostic memory plan of one lowered ae_graph, shared
 * by the host executor (gpu/host/) and the CUDA executor (gpu/cuda/, which
 * calls it from host code).
 *
 * ae_plan_create checks the graph and computes, once: every node's
 * geometry (shapes, fan-in, im2col sizes), the forward liveness (the last
 * reader of each output), which nodes carry a gradient in the NTK's
 * backward sweep and from which step, the gradient slots (shared between
 * nodes whose gradients are never alive at once) and the byte offset of
 * every buffer.  Buffers come in two families, each one allocation carved
 * by offsets:
 *   forward:  parameters and BN statistics first (param_bytes, the part
 *             to zero), then every node's forward output;
 *   backward: the gradient slots.
 * An executor appends its own scratch (im2col, Gram rows) to a family with
 * ae_plan_reserve, then allocates each family once and binds pointers to
 * the offsets.  ae_plan_total_bytes is then exactly what the executor
 * holds for the net (without the jets, planned per batch by
 * ae_plan_jets).
 *
 * A plan is plain data owned by the executor that made it (one thread). */
#ifndef AE_PLAN_H
#define AE_PLAN_H

#include "api/arch.h"
#include "api/request.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An offset for a buffer a node does not have. */
#define AE_PLAN_NONE SIZE_MAX

/* One node's per-sample geometry. */
typedef struct {
  size_t elems;         /* per-sample output elements */
  int in_c, in_h, in_w; /* first input's shape as C,H,W (rank 1: F,1,1) */
  size_t in_elems;      /* first input's per-sample elements */
  int fan_in;           /* LINEAR/CONV */
  size_t n_weight;      /* LINEAR/CONV weight elements */
  size_t col_rows;      /* CONV: Cin*k*k */
  size_t out_hw;        /* CONV/pools: per-channel output plane */
  int channels;         /* BN: channels (rank 3) or features (rank 1) */
  size_t plane;         /* BN: elements per channel per sample */
  int direct;           /* CONV 1x1, stride 1, no padding: no im2col */
} ae_plan_geom;

/* What differs between executors. */
typedef struct {
  size_t align; /* every offset and size is a multiple (a power of 2) */
  size_t unit;  /* bytes per element of parameters, outputs, gradients */
  /* 1: identity and flatten share their input's output buffer, and a
   * gradient read by exactly one add / identity / flatten shares that
   * reader's slot (the executor then skips those copies). */
  int share_views;
} ae_plan_options;

typedef enum {
  AE_PLAN_FORWARD,
  AE_PLAN_BACKWARD,
  AE_PLAN_FAMILIES
} ae_plan_family;

typedef struct {
  ae_graph g; /* own copy: ops, inputs and shapes (no names) */
  int max_batch;
  ae_plan_options opt;
  ae_plan_geom *geom;
  int *needs_grad; /* a trainable tensor at or upstream of the node */
  int *last_use;   /* forward: last node reading the output (output: n) */
  /* The jets: for a BN of a conv that only it reads, whose one reader is
   * an ADD of two or more inputs of its own shape (not the output), that
   * ADD, else -1.  The host jets may apply such a BN inside the sum
   * (net_jet.c), so ae_plan_jets gives the BN its input's buffer (it runs
   * in place when it runs) and keeps that alive until the ADD. */
  int *jet_bn_add;
  /* Backward sweep (node t's step runs at t = n-1 .. 0): the step whose
   * backward first writes the node's gradient, i.e. zeroes its slot
   * (the output: itself), or -1 when the node has no gradient. */
  int *grad_first;
  int *grad_alias; /* the node whose slot this gradient shares, or -1 */
  /* Offsets in the forward family (AE_PLAN_NONE when absent). */
  size_t *weight, *bias, *gamma, *beta, *bn_mean, *bn_invstd, *act;
  size_t param_bytes; /* the forward family's leading parameter bytes */
  size_t *grad;       /* offsets in the backward family, or AE_PLAN_NONE */
  size_t bytes[AE_PLAN_FAMILIES];
} ae_plan;

/* Binds an executor's per-node pointer tables to the forward family at
 * base: ex->weight, bias, gamma, beta (T *), bn_mean, bn_invstd
 * (double *) and act (T *), each base + the plan's offset, or NULL where
 * the node has no such buffer.  A macro so that each executor keeps its
 * own element type T. */
#define AE_PLAN_AT(T, base, off)                                               \
  ((off) != AE_PLAN_NONE ? (T *)((base) + (off)) : (T *)NULL)
#define AE_PLAN_BIND_FORWARD(T, ex, p, base)                                   \
  for (int ae_k_ = 0; ae_k_ < (p)->g.n_nodes; ae_k_++) {                       \
    (ex)->weight[ae_k_] = AE_PLAN_AT(T, base, (p)->weight[ae_k_]);             \
    (ex)->bias[ae_k_] = AE_PLAN_AT(T, base, (p)->bias[ae_k_]);                 \
    (ex)->gamma[ae_k_] = AE_PLAN_AT(T, base, (p)->gamma[ae_k_]);               \
    (ex)->beta[ae_k_] = AE_PLAN_AT(T, base, (p)->beta[ae_k_]);                 \
    (ex)->bn_mean[ae_k_] = AE_PLAN_AT(double, base, (p)->bn_mean[ae_k_]);      \
    (ex)->bn_invstd[ae_k_] = AE_PLAN_AT(double, base, (p)->bn_invstd[ae_k_]);  \
    (ex)->act[ae_k_] = AE_PLAN_AT(T, base, (p)->act[ae_k_]);                   \
  }

/* Checks g (ops, shapes, inputs before their readers, node 0 the only
 * INPUT, the output rank 1 with num_classes features) and plans it for
 * batches of up to max_batch samples; the graph is copied.  0, AE_EINVAL
 * or AE_ENOMEM. */
int ae_plan_create(const ae_graph *g, int max_batch, const ae_plan_options *opt,
                   ae_plan **out);
void ae_plan_destroy(ae_plan *p);

/* Appends `bytes` to a family; returns the buffer's offset. */
size_t ae_plan_reserve(ae_plan *p, ae_plan_family family, size_t bytes);

/* Bytes of both families: what the executor allocates for the net. */
size_t ae_plan_total_bytes(const ae_plan *p);

/* The jets' buffers: 3 * batch * elems elements of `unit` bytes per node,
 * reused once the node's last reader has run (views share their input's
 * when share_views).  With fold_bn (the host jets) a BN with a
 * jet_bn_add shares its conv's buffer, kept until that ADD.  Fills
 * offset[n_nodes] and returns the bytes, or SIZE_MAX when out of
 * memory. */
size_t ae_plan_jets(const ae_plan *p, int batch, size_t unit, int fold_bn,
                    size_t *offset);

/* The init variance of a LINEAR/CONV node's weights, init_gain / fan_in
 * (a gain <= 0 counts as 1): the weights' N(0, .) and the NTK
 * parameterization's per-tensor scale. */
double ae_plan_init_variance(const ae_plan *p, int node);

/* The first node that only the host executor runs (an op of api/arch.h's
 * AE_OP_MAX_POOL group, a relu6 / hardswish / hardsigmoid activation, a
 * grouped or dilated conv: the CUDA executor has no kernels for them and
 * runs such a graph on a host net), or -1. */
int ae_plan_first_host_only_node(const ae_graph *g);

/* Parameters (trainable and not) of the graph. */
size_t ae_plan_param_count(const ae_plan *p);

/* Per-sample elements of a node's output. */
size_t ae_plan_node_elems(const ae_node *nd);

/* v rounded up to the plan's alignment. */
size_t ae_plan_align(const ae_plan *p, size_t v);

/* The slot planner under both: buffer k of bytes[k] lives from step
 * start[k] to end[k] (inclusive; start -1: not needed); a buffer whose
 * life has ended is reused by a later one of the same size.  Fills
 * offset[k] and returns the total, or SIZE_MAX when out of memory. */
size_t ae_plan_slots(const size_t *bytes, const int *start, const int *end,
                     int n, size_t *offset);

/* ---- a job's whole memory: the estimate that validation checks ----
 * Every buffer the host engine allocates for one job, by part, following
 * the job's metric selection (a job that selects no convergence or
 * generalization metric pays for no NTK).  Bytes. */
typedef struct {
  size_t batch;          /* inputs as drawn and as fed, labels, K(0) */
  size_t net;            /* the forward family and its scratch */
  size_t net_backward;   /* gradient slots and the backward scratch */
  size_t ntk;            /* the N x N empirical NTKs, eigensolver work */
  size_t kernels;        /* the analytic NNGP / NTK (N x N per live node) */
  size_t generalization; /* the kernel quadratic's matrices */
  size_t linear_regions; /* the probe network, inputs and sign patterns */
  size_t curvature;      /* the jets at the curve's points */
  size_t paths;          /* the path-depth list */
  size_t ranking;        /* the ranking metrics (ae_plan_ranking_bytes) */
  size_t total;
  /* Device memory on a CUDA worker (ae_plan_job_device), not in total:
   * it is the GPU's, not the host's. */
  size_t device;
} ae_plan_job_bytes;

/* Longest path-depth list kept (gpu/groups/group.h's AE_MAX_PATH_LIST). */
#define AE_PLAN_PATH_LIST 100000

/* Plans the job r (parsed and lowered) on the host engine.  AE_OK,
 * AE_EINVAL (the network does not plan) or AE_ENOMEM. */
int ae_plan_job(const ae_request *r, ae_plan_job_bytes *out);
/* The ranking metrics' buffers, by metric selected (bounds). */
size_t ae_plan_ranking_bytes(const ae_request *r, const ae_plan *net_plan);
/* ---- the host executor's scratch: one size function ----
 * gpu/host/ allocates its scratch from these numbers (net.c's arena and
 * backward family, net_jet.c's jets) and the estimate above counts the
 * same ones, so the two cannot drift apart. */
/* Columns of one im2col + GEMM chunk on the host. */
#define AE_PLAN_HOST_CHUNK_COLUMNS 1024
/* Samples per im2col + GEMM chunk of a conv node with geometry ge, for
 * a pass over `samples` samples (jets: three streams per sample). */
int ae_plan_host_chunk(const ae_plan_geom *ge, int samples);
/* The host executor's scratch for batch samples (jets: 3 x batch
 * streams), in bytes, each aligned as the plan's offsets. */
typedef struct {
  size_t col;     /* forward: one chunk's im2col */
  size_t y;       /* forward: one chunk's conv outputs */
  size_t bwd_col; /* backward: the im2col gradient */
  size_t bwd_gd;  /* backward: doubles, B x widest weight/input/channels */
  size_t bwd_gd2; /* backward: doubles, B x widest linear output */
  size_t bwd_bb;  /* backward: doubles, 2 x B x B */
} ae_plan_host_sizes;
void ae_plan_host_scratch_sizes(const ae_plan *p, int batch, int jets,
                                ae_plan_host_sizes *out);
/* Their sums: returns the forward scratch (im2col chunk and its
 * outputs), and the backward scratch in *backward when not NULL. */
size_t ae_plan_host_scratch(const ae_plan *p, int batch, int jets,
                            size_t *backward);

/* ---- the CUDA executor's device buffers: one size function ----
 * gpu/cuda/ allocates from these (net.cu's one device allocation, jet.cu's
 * jets) and ae_plan_job_device counts the same.  Compile-checked here; no
 * GPU has run them. */
#define AE_PLAN_CUDA_ALIGN 256
#define AE_PLAN_CUDA_COL_CAP ((size_t)1 << 25)     /* floats per im2col */
#define AE_PLAN_CUDA_G_CAP ((size_t)1 << 23)       /* per-sample dW rows */
#define AE_PLAN_CUDA_JET_COL_CAP ((size_t)1 << 24) /* doubles: 128 MiB */
/* Conv chunking on the device for max batch B: samples per im2col chunk
 * (forward, dX), im2col rows per dW chunk (NTK), and the im2col floats
 * and per-sample gradient elements the node needs. */
void ae_plan_cuda_conv_chunks(const ae_plan_geom *ge, int cout, size_t B,
                              int *fwd_chunk, int *k_chunk, size_t *col,
                              size_t *grows);
/* The device scratch after the gradient slots, in bytes before
 * alignment, in the order they are reserved. */
typedef struct {
  size_t col, gf, gd;   /* im2col, per-sample dW (float), the doubles */
  size_t xx, yy, theta; /* B x B doubles each */
  size_t bits, hashes;  /* sign patterns, their hashes */
  size_t pattern_words; /* 64-bit words of one sample's pattern */
} ae_plan_cuda_sizes;
/* pattern_act(nd): whether node nd's sign pattern is recorded. */
void ae_plan_cuda_scratch_sizes(const ae_plan *p,
                                int (*pattern_act)(const ae_node *nd),
                                ae_plan_cuda_sizes *out);
/* Samples per im2col chunk of a conv's jets over `rows` streams. */
size_t ae_plan_cuda_jet_chunk(const ae_plan_geom *ge, size_t rows);
/* The jets' device scratch for batch (three streams per sample): im2col,
 * weights, BN statistics, in bytes before alignment. */
void ae_plan_cuda_jet_scratch(const ae_plan *p, int batch, size_t *col,
                              size_t *weights, size_t *stats);
/* The device bytes the CUDA executor allocates for job r: the net's one
 * allocation (both families and the scratch) when the job makes a net,
 * and the jets when it selects expressivity; cuSOLVER's workspace, sized
 * by the library at run time, is not in it.  AE_OK, AE_EINVAL or
 * AE_ENOMEM. */
int ae_plan_job_device(const ae_request *r, size_t *bytes);

#ifdef __cplusplus
}
#endif

#endif
