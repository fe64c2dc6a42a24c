/* net_real.h: the element type of the host executor's buffers, and the
 * host's one precision mechanism.
 *
 * net.c, net_ntk.c, net_jet.c, net_grad.c and net_kernels_typed.c are
 * written once in ae_real and compiled twice: as they are (float32, the
 * ae_net of net.h) and through net64*.c with AE_NET_DOUBLE defined
 * (float64, the ae_net64 of net64.h, behind ae_net_set_double).  Under
 * AE_NET_DOUBLE every typed symbol is renamed ae_net64_* (the list below;
 * a typed function that is not static must be added to it).  Nothing else
 * in the host executor is written per type.  Include this before any
 * other gpu/host header.  No data, no threads. */
#ifndef AE_NET_REAL_H
#define AE_NET_REAL_H

#include <cblas.h>

#include <stdint.h>

#ifdef AE_NET_DOUBLE
typedef double ae_real;
typedef uint64_t ae_real_bits; /* an unsigned integer of ae_real's width */
#define AE_GEMM cblas_dgemm
#define ae_net ae_net64
#define ae_net_create ae_net64_create
#define ae_net_destroy ae_net64_destroy
#define ae_net_release_spare ae_net64_release_spare
#define ae_net_init_weights ae_net64_init_weights
#define ae_net_forward ae_net64_forward
#define ae_net_ntk ae_net64_ntk
#define ae_net_param_count ae_net64_param_count
#define ae_net_memory_bytes ae_net64_memory_bytes
#define ae_net_bn_stats ae_net64_bn_stats
#define ae_net_graph ae_net64_graph
#define ae_net_set_profiling ae_net64_set_profiling
#define ae_net_profile ae_net64_profile
#define ae_net_clock ae_net64_clock
#define ae_net_tick ae_net64_tick
#define ae_net_backward_buffers ae_net64_backward_buffers
#define ae_net_load_params ae_net64_load_params
#define ae_net_forward_buffers ae_net64_forward_buffers
#define ae_net_im2col_t ae_net64_im2col_t
#define ae_net_col2im_add_t ae_net64_col2im_add_t
#define ae_net_col2im_add_ref_t ae_net64_col2im_add_ref_t
#define ae_net_avg_pool_plane_t ae_net64_avg_pool_plane_t
#define ae_net_avg_pool_plane_adj_t ae_net64_avg_pool_plane_adj_t
#define ae_net_avg_pool_plane_adj_ref_t ae_net64_avg_pool_plane_adj_ref_t
#define ae_net_avg_pool_t ae_net64_avg_pool_t
#define ae_net_global_avg_pool_t ae_net64_global_avg_pool_t
#define ae_net_add_t ae_net64_add_t
#define ae_net_act_backward_add_t ae_net64_act_backward_add_t
#define ae_net_act_backward_add_ref_t ae_net64_act_backward_add_ref_t
#define ae_net_bn_channel_backward_sums_t ae_net64_bn_channel_backward_sums_t
#define ae_net_bn_backward_sums_t ae_net64_bn_backward_sums_t
#define ae_net_bn_dx_plane_ref_t ae_net64_bn_dx_plane_ref_t
#define ae_net_bn_dx_plane_t ae_net64_bn_dx_plane_t
#define ae_net_scale_shift_t ae_net64_scale_shift_t
#define ae_net_bn_channel_stats_t ae_net64_bn_channel_stats_t
#define ae_net_forward_jet ae_net64_forward_jet
#define ae_net_set_jet_reference ae_net64_set_jet_reference
#define ae_net_grad ae_net64_grad
#define ae_net_grad_create ae_net64_grad_create
#define ae_net_grad_destroy ae_net64_grad_destroy
#define ae_net_backward ae_net64_backward
#define ae_net_grad_node ae_net64_grad_node
#define ae_net_grad_param ae_net64_grad_param
#define ae_net_grad_skip_params ae_net64_grad_skip_params
#define ae_net_forward64 ae_net64_forward64
#define ae_net_activation64 ae_net64_activation64
#else
typedef float ae_real;
typedef uint32_t ae_real_bits;
#define AE_GEMM cblas_sgemm
#endif

#endif
