/* net_internal.h: the layout of an ae_net, shared by the host executor's
 * files (net.c: plan, weights, float32 forward; net_ntk.c: backward and
 * NTK; net_jet.c: float64 jets, sign patterns, curvature).
 *
 * Everything here belongs to the one thread that owns the ae_net. */
#ifndef AE_NET_INTERNAL_H
#define AE_NET_INTERNAL_H

#include <stddef.h>
#include "gpu/host/net.h"

/* One node's per-sample geometry, derived from the graph at create. */
typedef struct {
  size_t elems;          /* per-sample output elements */
  int in_c, in_h, in_w;  /* first input's shape as C,H,W (rank 1: F,1,1) */
  size_t in_elems;       /* first input's per-sample elements */
  int fan_in;            /* LINEAR/CONV */
  size_t n_weight;       /* LINEAR/CONV weight elements */
  size_t col_rows;       /* CONV: Cin*k*k */
  size_t out_hw;         /* CONV/pools: per-channel output plane */
  int channels;          /* BN: channels (rank 3) or features (rank 1) */
  size_t plane;          /* BN: elements per channel per sample */
} ae_net_geom;

struct ae_net {
  ae_graph g;            /* own copy: inputs arrays, no names */
  int max_batch;
  int batch;             /* batch of the last forward */
  ae_net_geom *geom;
  int *needs_grad;       /* node has a trainable tensor at or upstream */
  int *last_use;         /* forward: last node reading this node's output */
  /* parameters, float32, pointers into the arena (NULL when absent) */
  float **weight, **bias, **gamma, **beta;
  double **bn_mean, **bn_invstd; /* from the last forward's batch */
  float **act;           /* forward output per node, max_batch * elems */
  float **grad;          /* backward: slot pointer per node (shared) */
  float *col;            /* one sample's im2col, max col_rows*out_hw */
  float *dcol;           /* same size, backward */
  float *dw;             /* one sample's weight gradient, max n_weight */
  double *gd;            /* max_batch * max tensor size, float64 rows */
  double *gd2;           /* max_batch * max features, float64 */
  double *bb;            /* 2 * max_batch^2 float64: per-layer Grams */
  unsigned char *arena;
  size_t arena_bytes;
  /* float64 jets, allocated on first use */
  double **jet;          /* per node: 3 * batch * elems (value, d1, d2) */
  unsigned char *jet_arena;
  size_t jet_bytes;
  int jet_batch;         /* batch the jet buffers were planned for */
  double *jcol;          /* float64 im2col scratch (in jet_arena) */
  double *jw;            /* one tensor's weights in float64 (in jet_arena) */
  int profiling;
  double prof[AE_NET_PROF_COUNT];
};

/* Monotonic seconds when n->profiling, else 0 (no clock calls). */
double ae_net_clock(const ae_net *n);
/* Adds the time since *t0 to phase and moves *t0 to now. */
void ae_net_tick(ae_net *n, int phase, double *t0);

/* Per-sample elements of a node's output. */
size_t ae_net_node_elems(const ae_node *nd);

/* The planner: nodes get buffers of elems[k] * unit bytes alive from
 * start[k] to end[k] (inclusive, in a time order where a larger value is
 * later; -1 start = not needed).  Buffers of equal size are reused once
 * free.  Fills offset[k] (bytes from 0) and returns the total bytes, or
 * (size_t)-1 when out of memory. */
size_t ae_net_plan_slots(const size_t *bytes, const int *start,
                         const int *end, int n, size_t *offset);

/* A checkpoint: 0, AE_ECANCELLED or AE_EDEADLINE (ctl may be NULL). */
int ae_net_checkpoint(const ae_job_control *ctl);

/* im2col of one sample (float32): col[(c*k*k + ky*k + kx)][oy*ow + ox]. */
void ae_net_im2col_f(const float *x, int c, int h, int w, int k, int stride,
                     int pad, int oh, int ow, float *col);
/* col2im adding into dx. */
void ae_net_col2im_add_f(const float *col, int c, int h, int w, int k,
                         int stride, int pad, int oh, int ow, float *dx);
/* float64 im2col. */
void ae_net_im2col_d(const double *x, int c, int h, int w, int k, int stride,
                     int pad, int oh, int ow, double *col);

/* Average pooling of one channel plane (float and double), and its
 * adjoint adding into dx. */
void ae_net_avg_pool_plane_f(const float *x, int h, int w, int k, int stride,
                             int pad, int include_pad, int oh, int ow,
                             float *y);
void ae_net_avg_pool_plane_d(const double *x, int h, int w, int k,
                             int stride, int pad, int include_pad, int oh,
                             int ow, double *y);
void ae_net_avg_pool_plane_adj_f(const float *dy, int h, int w, int k,
                                 int stride, int pad, int include_pad,
                                 int oh, int ow, float *dx);

/* Activation value, first and second derivative in float64. */
double ae_net_act_value(ae_activation a, double z);
double ae_net_act_d1(ae_activation a, double z);
double ae_net_act_d2(ae_activation a, double z);

#endif
