/* graph_build.h: a small builder of lowered ae_graphs by hand, with shapes
 * filled as it goes, for the host executor's tests and benchmarks (which
 * must not depend on the request parser).
 *
 * The graph being built belongs to the caller. */
#ifndef AE_HOST_GRAPH_BUILD_H
#define AE_HOST_GRAPH_BUILD_H

#include "api/arch.h"

/* Empty graph; then add nodes, each call returning the node's index or -1
 * (out of memory, or shapes that do not fit: the graph is then poisoned
 * and ae_gb_finish fails). */
void ae_gb_begin(ae_graph *g);
/* rank 3 {c,h,w}, or rank 1 {c} when h == 0. */
int ae_gb_input(ae_graph *g, int c, int h, int w);
int ae_gb_linear(ae_graph *g, int in, int out, int bias, double gain);
int ae_gb_conv(ae_graph *g, int in, int out, int kernel, int stride,
               int padding, double gain);
int ae_gb_bn(ae_graph *g, int in);
int ae_gb_act(ae_graph *g, int in, ae_act_fn fn, double slope);
int ae_gb_avg_pool(ae_graph *g, int in, int kernel, int stride, int padding,
                   int count_include_pad);
int ae_gb_gap(ae_graph *g, int in);
int ae_gb_add(ae_graph *g, const int *inputs, int n);
/* AE_OP_IDENTITY, AE_OP_ZERO or AE_OP_FLATTEN. */
int ae_gb_unary(ae_graph *g, ae_op op, int in);
/* A conv with groups (dividing in and out channels) and dilation. */
int ae_gb_conv_ex(ae_graph *g, int in, int out, int kernel, int stride,
                  int padding, int groups, int dilation, double gain);
/* Max pooling with dilation and PyTorch's ceil_mode. */
int ae_gb_max_pool(ae_graph *g, int in, int kernel, int stride, int padding,
                   int dilation, int ceil_mode);
/* Zeros around the spatial dimensions: top, left, bottom, right. */
int ae_gb_pad(ae_graph *g, int in, const int pads[4]);
/* Along channels (rank 3) or features (rank 1). */
int ae_gb_concat(ae_graph *g, const int *inputs, int n);
/* Elementwise product; size-1 dimensions of an input broadcast. */
int ae_gb_mul(ae_graph *g, const int *inputs, int n);
/* Sets the output (its features become num_classes).  0 or AE_EINVAL. */
int ae_gb_finish(ae_graph *g, int output);
/* Frees what ae_gb_* allocated. */
void ae_gb_free(ae_graph *g);

#endif
