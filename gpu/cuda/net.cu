/* net.cu: the CUDA executor's plan, weights and float32 forward pass (the
 * device twin of gpu/host/net.c).
 *
 * ae_cuda_net_create plans the graph with gpu/plan.h (the host's planner:
 * geometry, liveness, gradient slots, offsets) and makes one device
 * allocation for max_batch samples, the plan's forward family then its
 * backward family: parameters, BN statistics, every node's forward output
 * (the backward reads them), the gradient slots, then the device scratch
 * added to the plan: the im2col scratch, the per-sample gradient rows
 * (float and float64), the Gram buffers and the sign-pattern rows.
 *
 * Convolutions are im2col + cublasSgemmStridedBatched over the samples of
 * a chunk (1x1 stride-1 unpadded ones read the input directly).  The
 * im2col scratch is capped (AE_PLAN_CUDA_COL_CAP floats): the forward chunks
 * over samples, the NTK's per-sample weight gradients over im2col rows
 * (the Gram is a sum over parameters, so any column split adds up).  BN
 * normalises with the batch's statistics in float64, as the host.
 *
 * A net belongs to the thread that owns its context. */
#include "gpu/cuda/cuda_internal.h"

#include "gpu/cuda/cuda_kernels.cuh"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AE_CUDA_ALIGN AE_PLAN_CUDA_ALIGN
/* im2col scratch cap (floats) and per-sample gradient rows cap
 * (elements): 128 MiB and 32 + 64 MiB. */

/* Chooses conv k's chunks for max_batch B (the planner's) and returns the
 * im2col floats and per-sample gradient elements it needs. */
static void conv_chunks(ae_cuda_net *n, int k, size_t B, size_t *col,
                        size_t *grows) {
  ae_plan_cuda_conv_chunks(&n->geom[k], n->g->nodes[k].out, B, &n->fwd_chunk[k],
                           &n->k_chunk[k], col, grows);
}

/* Reserves the device scratch after the plan's gradient slots, makes the
 * one device allocation (forward family, then backward family) and binds
 * every pointer to its offset. */
static int plan_arena(ae_cuda_net *n) {
  ae_plan *p = n->plan;
  const ae_graph *g = n->g;
  int nn = g->n_nodes;
  size_t B = (size_t)n->max_batch;
  for (int k = 0; k < nn; k++) {
    size_t c, r;
    if (g->nodes[k].op == AE_OP_CONV) conv_chunks(n, k, B, &c, &r);
  }
  /* The sizes are the planner's (ae_plan_job_device counts the same). */
  ae_plan_cuda_sizes s;
  ae_plan_cuda_scratch_sizes(p, ae_cuda_is_pattern_act, &s);
  n->pattern_words = s.pattern_words;
  const ae_plan_family bw = AE_PLAN_BACKWARD;
  size_t col_off = ae_plan_reserve(p, bw, s.col);
  size_t gf_off = ae_plan_reserve(p, bw, s.gf);
  size_t gd_off = ae_plan_reserve(p, bw, s.gd);
  size_t xx_off = ae_plan_reserve(p, bw, s.xx);
  size_t yy_off = ae_plan_reserve(p, bw, s.yy);
  size_t theta_off = ae_plan_reserve(p, bw, s.theta);
  size_t bits_off = ae_plan_reserve(p, bw, s.bits);
  size_t hash_off = ae_plan_reserve(p, bw, s.hashes);

  size_t total = ae_plan_total_bytes(p);
  int rc = AE_CU(n->ctx, cudaMalloc((void **)&n->arena, total));
  if (!rc)
    rc = AE_CU(n->ctx, cudaMemsetAsync(n->arena, 0, total, n->ctx->stream));
  if (rc) return rc;
  n->arena_bytes = total;
  n->ctx->net_bytes += total;
  unsigned char *a = n->arena, *b = n->arena + p->bytes[AE_PLAN_FORWARD];
  AE_PLAN_BIND_FORWARD(float, n, p, a);
  for (int k = 0; k < nn; k++)
    n->grad[k] = AE_PLAN_AT(float, b, p->grad[k]);
  n->col = (float *)(b + col_off);
  n->gf = (float *)(b + gf_off);
  n->gd = (double *)(b + gd_off);
  n->xx = (double *)(b + xx_off);
  n->yy = (double *)(b + yy_off);
  n->theta = (double *)(b + theta_off);
  n->bits = (uint64_t *)(b + bits_off);
  n->hashes = (uint64_t *)(b + hash_off);
  return AE_OK;
}

extern "C" int ae_cuda_net_create(ae_cuda_context *ctx, const ae_graph *g,
                                  int max_batch, ae_cuda_net **out) {
  *out = NULL;
  if (!ctx || !g || g->n_nodes < 1 || max_batch < 1 || g->output < 0 ||
      g->output >= g->n_nodes || g->nodes[0].op != AE_OP_INPUT)
    return AE_EINVAL;
  /* No kernels for max_pool, concat, mul, pad, grouped / dilated conv or
   * the hard activations: the executor runs such graphs on a host net. */
  if (ae_plan_first_host_only_node(g) >= 0) return AE_EINVAL;
  AE_TRY(ae_cuda_alive(ctx));
  ae_cuda_net *n = (ae_cuda_net *)calloc(1, sizeof(*n));
  if (!n) return AE_ENOMEM;
  n->ctx = ctx;
  /* The device's alignment; every output and gradient its own buffer. */
  const ae_plan_options opt = {AE_CUDA_ALIGN, sizeof(float), 0};
  int rc = ae_plan_create(g, max_batch, &opt, &n->plan);
  if (rc) goto fail;
  n->g = &n->plan->g;
  n->geom = n->plan->geom;
  n->max_batch = max_batch;
  {
    size_t nn = (size_t)g->n_nodes;
    rc = AE_ENOMEM;
    n->fwd_chunk = (int *)calloc(nn, sizeof(int));
    n->k_chunk = (int *)calloc(nn, sizeof(int));
    n->weight = (float **)calloc(nn, sizeof(float *));
    n->bias = (float **)calloc(nn, sizeof(float *));
    n->gamma = (float **)calloc(nn, sizeof(float *));
    n->beta = (float **)calloc(nn, sizeof(float *));
    n->bn_mean = (double **)calloc(nn, sizeof(double *));
    n->bn_invstd = (double **)calloc(nn, sizeof(double *));
    n->act = (float **)calloc(nn, sizeof(float *));
    n->grad = (float **)calloc(nn, sizeof(float *));
    n->jet = (double **)calloc(nn, sizeof(double *));
    if (!n->fwd_chunk || !n->k_chunk || !n->weight || !n->bias || !n->gamma ||
        !n->beta || !n->bn_mean || !n->bn_invstd || !n->act || !n->grad ||
        !n->jet)
      goto fail;
  }
  rc = plan_arena(n);
  if (rc) goto fail;
  *out = n;
  return AE_OK;
fail:
  ae_cuda_net_destroy(n);
  return rc;
}

extern "C" void ae_cuda_net_destroy(ae_cuda_net *n) {
  if (!n) return;
  if ((n->arena || n->jet_arena) && n->ctx->device >= 0) {
    (void)cudaSetDevice(n->ctx->device);
    (void)cudaStreamSynchronize(n->ctx->stream); /* queued work may read */
  }
  if (n->arena) {
    (void)cudaFree(n->arena);
    n->ctx->net_bytes -= n->arena_bytes;
  }
  if (n->jet_arena) {
    (void)cudaFree(n->jet_arena);
    n->ctx->net_bytes -= n->jet_bytes;
  }
  ae_plan_destroy(n->plan);
  free(n->fwd_chunk);
  free(n->k_chunk);
  free(n->weight);
  free(n->bias);
  free(n->gamma);
  free(n->beta);
  free(n->bn_mean);
  free(n->bn_invstd);
  free(n->act);
  free(n->grad);
  free(n->jet);
  free(n);
}

/* ---- weights ---- */

extern "C" int ae_cuda_net_init_weights(ae_cuda_net *n, uint64_t seed,
                                        uint32_t stream) {
  ae_cuda_context *ctx = n->ctx;
  AE_TRY(ae_cuda_alive(ctx));
  for (int k = 0; k < n->g->n_nodes; k++) {
    const ae_node *nd = &n->g->nodes[k];
    const ae_plan_geom *ge = &n->geom[k];
    if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV) {
      double sd = sqrt(ae_plan_init_variance(n->plan, k));
      ae_k_init_normal<<<ae_cuda_blocks(ge->n_weight), AE_CUDA_THREADS, 0,
                         ctx->stream>>>(n->weight[k], ge->n_weight, sd, seed,
                                        (uint32_t)k, stream);
      AE_TRY(AE_LAUNCHED(ctx));
      if (n->bias[k])
        AE_TRY(AE_CU(ctx, cudaMemsetAsync(n->bias[k], 0,
                                          sizeof(float) * (size_t)nd->out,
                                          ctx->stream)));
    } else if (nd->op == AE_OP_BATCH_NORM) {
      size_t c = (size_t)ge->channels;
      ae_k_fill<<<ae_cuda_blocks(c), AE_CUDA_THREADS, 0, ctx->stream>>>(
          n->gamma[k], c, 1.0f);
      AE_TRY(AE_LAUNCHED(ctx));
      AE_TRY(AE_CU(
          ctx, cudaMemsetAsync(n->beta[k], 0, sizeof(float) * c, ctx->stream)));
    }
  }
  return AE_OK;
}

/* ---- forward ---- */

static int forward_conv(ae_cuda_net *n, int k, int batch) {
  ae_cuda_context *ctx = n->ctx;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const float *x = n->act[nd->inputs[0]];
  float *y = n->act[k];
  int K = ge->col_rows, HW = ge->out_hw, cout = nd->out;
  const float one = 1.0f, zero = 0.0f;
  /* Y_b (cout x HW, row-major) = W (cout x K) col_b (K x HW); column-major
   * that is Y_b^T = col_b^T W^T: m = HW, n = cout, k = K. */
  if (ge->direct)
    return AE_CUBLAS(ctx,
                     cublasSgemmStridedBatched(
                         ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, HW, cout, K, &one,
                         x, HW, (long long)ge->in_elems, n->weight[k], K, 0,
                         &zero, y, HW, (long long)ge->elems, batch));
  for (int b0 = 0; b0 < batch; b0 += n->fwd_chunk[k]) {
    int bc = batch - b0 < n->fwd_chunk[k] ? batch - b0 : n->fwd_chunk[k];
    size_t work = (size_t)bc * (size_t)K * (size_t)HW;
    ae_k_im2col<float>
        <<<ae_cuda_blocks(work), AE_CUDA_THREADS, 0, ctx->stream>>>(
            x + (size_t)b0 * ge->in_elems, bc, ge->in_elems, ge->in_h, ge->in_w,
            nd->kernel, nd->stride, nd->padding, nd->shape[1], nd->shape[2], 0,
            K, n->col);
    AE_TRY(AE_LAUNCHED(ctx));
    AE_TRY(AE_CUBLAS(ctx, cublasSgemmStridedBatched(
                              ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, HW, cout, K,
                              &one, n->col, HW, (long long)K * HW, n->weight[k],
                              K, 0, &zero, y + (size_t)b0 * ge->elems, HW,
                              (long long)ge->elems, bc)));
  }
  return AE_OK;
}

static int forward_node(ae_cuda_net *n, int k, int batch) {
  ae_cuda_context *ctx = n->ctx;
  cudaStream_t st = ctx->stream;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  float *y = n->act[k];
  size_t count = (size_t)batch * ge->elems;
  const float *in0 = nd->n_inputs > 0 ? n->act[nd->inputs[0]] : NULL;
  unsigned grid = ae_cuda_blocks(count);
  switch (nd->op) {
  case AE_OP_INPUT:
    return AE_OK; /* filled by the caller */
  case AE_OP_LINEAR: {
    int in = (int)ge->in_elems;
    const float one = 1.0f, zero = 0.0f;
    /* y (batch x out) = x W^T; column-major y^T = W x^T. */
    AE_TRY(AE_CUBLAS(ctx, cublasSgemm(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N,
                                      nd->out, batch, in, &one, n->weight[k],
                                      in, in0, in, &zero, y, nd->out)));
    if (n->bias[k]) {
      ae_k_bias_add<float>
          <<<grid, AE_CUDA_THREADS, 0, st>>>(y, n->bias[k], batch, nd->out);
      AE_TRY(AE_LAUNCHED(ctx));
    }
    return AE_OK;
  }
  case AE_OP_CONV:
    return forward_conv(n, k, batch);
  case AE_OP_BATCH_NORM:
    ae_k_bn_stats<float><<<ge->channels, AE_BN_THREADS, 0, st>>>(
        in0, batch, ge->elems, ge->plane, n->bn_mean[k], n->bn_invstd[k]);
    AE_TRY(AE_LAUNCHED(ctx));
    ae_k_bn_apply<<<grid, AE_CUDA_THREADS, 0, st>>>(
        in0, y, batch, ge->elems, ge->plane, n->bn_mean[k], n->bn_invstd[k],
        n->gamma[k], n->beta[k]);
    return AE_LAUNCHED(ctx);
  case AE_OP_ACT:
    ae_k_act_forward<<<grid, AE_CUDA_THREADS, 0, st>>>(
        nd->act.fn, nd->act.slope, in0, y, count);
    return AE_LAUNCHED(ctx);
  case AE_OP_AVG_POOL:
    ae_k_avg_pool<float><<<grid, AE_CUDA_THREADS, 0, st>>>(
        in0, (size_t)batch * (size_t)ge->in_c, ge->in_h, ge->in_w, nd->kernel,
        nd->stride, nd->padding, nd->count_include_pad, nd->shape[1],
        nd->shape[2], y);
    return AE_LAUNCHED(ctx);
  case AE_OP_GLOBAL_AVG_POOL:
    ae_k_global_avg_pool<float><<<grid, AE_CUDA_THREADS, 0, st>>>(
        in0, count, (size_t)ge->in_h * (size_t)ge->in_w, y);
    return AE_LAUNCHED(ctx);
  case AE_OP_ADD:
    AE_TRY(AE_CU(ctx, cudaMemcpyAsync(y, in0, sizeof(float) * count,
                                      cudaMemcpyDeviceToDevice, st)));
    for (int i = 1; i < nd->n_inputs; i++) {
      ae_k_add<float>
          <<<grid, AE_CUDA_THREADS, 0, st>>>(y, n->act[nd->inputs[i]], count);
      AE_TRY(AE_LAUNCHED(ctx));
    }
    return AE_OK;
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN:
    return AE_CU(ctx, cudaMemcpyAsync(y, in0, sizeof(float) * count,
                                      cudaMemcpyDeviceToDevice, st));
  case AE_OP_ZERO:
    return AE_CU(ctx, cudaMemsetAsync(y, 0, sizeof(float) * count, st));
  }
  return AE_EINVAL;
}

int ae_cuda_net_forward_device(ae_cuda_net *n, int batch) {
  n->batch = batch;
  for (int k = 0; k < n->g->n_nodes; k++)
    AE_TRY(forward_node(n, k, batch));
  return AE_OK;
}

extern "C" int ae_cuda_net_forward(ae_cuda_net *n, const float *x, int batch,
                                   float *logits) {
  if (!n || !x || batch < 1 || batch > n->max_batch) return AE_EINVAL;
  ae_cuda_context *ctx = n->ctx;
  AE_TRY(ae_cuda_alive(ctx));
  size_t in_count = (size_t)batch * n->geom[0].elems;
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(n->act[0], x, sizeof(float) * in_count,
                                    cudaMemcpyHostToDevice, ctx->stream)));
  AE_TRY(ae_cuda_net_forward_device(n, batch));
  if (logits) {
    int o = n->g->output;
    size_t count = (size_t)batch * n->geom[o].elems;
    AE_TRY(AE_CU(ctx, cudaMemcpyAsync(logits, n->act[o], sizeof(float) * count,
                                      cudaMemcpyDeviceToHost, ctx->stream)));
  }
  return AE_CU(ctx, cudaStreamSynchronize(ctx->stream));
}

extern "C" int ae_cuda_net_activation(ae_cuda_net *n, int node, float *out) {
  if (node < 0 || node >= n->g->n_nodes || !out || n->batch < 1)
    return AE_EINVAL;
  ae_cuda_context *ctx = n->ctx;
  AE_TRY(ae_cuda_alive(ctx));
  size_t count = (size_t)n->batch * n->geom[node].elems;
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(out, n->act[node], sizeof(float) * count,
                                    cudaMemcpyDeviceToHost, ctx->stream)));
  return AE_CU(ctx, cudaStreamSynchronize(ctx->stream));
}

/* ---- parameters and bookkeeping ---- */

static float *param_tensor(ae_cuda_net *n, int node, int kind, size_t *count) {
  *count = 0;
  if (node < 0 || node >= n->g->n_nodes) return NULL;
  const ae_node *nd = &n->g->nodes[node];
  const ae_plan_geom *ge = &n->geom[node];
  float *p = NULL;
  size_t c = 0;
  switch (kind) {
  case 0:
    p = n->weight[node];
    c = ge->n_weight;
    break;
  case 1:
    p = n->bias[node];
    c = (size_t)nd->out;
    break;
  case 2:
    p = n->gamma[node];
    c = (size_t)ge->channels;
    break;
  case 3:
    p = n->beta[node];
    c = (size_t)ge->channels;
    break;
  default:
    break;
  }
  *count = p ? c : 0;
  return p;
}

extern "C" int ae_cuda_net_get_param(ae_cuda_net *n, int node, int kind,
                                     float *out, size_t cap, size_t *count) {
  size_t c = 0;
  float *p = param_tensor(n, node, kind, &c);
  if (count) *count = c;
  if (!p) return AE_EINVAL;
  ae_cuda_context *ctx = n->ctx;
  AE_TRY(ae_cuda_alive(ctx));
  size_t take = c < cap ? c : cap;
  if (!out || take == 0) return AE_OK;
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(out, p, sizeof(float) * take,
                                    cudaMemcpyDeviceToHost, ctx->stream)));
  return AE_CU(ctx, cudaStreamSynchronize(ctx->stream));
}

extern "C" int ae_cuda_net_set_param(ae_cuda_net *n, int node, int kind,
                                     const float *values, size_t count) {
  size_t c = 0;
  float *p = param_tensor(n, node, kind, &c);
  if (!p || !values || count != c) return AE_EINVAL;
  ae_cuda_context *ctx = n->ctx;
  AE_TRY(ae_cuda_alive(ctx));
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(p, values, sizeof(float) * c,
                                    cudaMemcpyHostToDevice, ctx->stream)));
  return AE_CU(ctx, cudaStreamSynchronize(ctx->stream));
}

extern "C" int ae_cuda_net_bn_stats(ae_cuda_net *n, int node, double *mean,
                                    double *invstd, int channels) {
  if (node < 0 || node >= n->g->n_nodes ||
      n->g->nodes[node].op != AE_OP_BATCH_NORM ||
      channels != n->geom[node].channels || !mean || !invstd)
    return AE_EINVAL;
  ae_cuda_context *ctx = n->ctx;
  AE_TRY(ae_cuda_alive(ctx));
  size_t bytes = sizeof(double) * (size_t)channels;
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(mean, n->bn_mean[node], bytes,
                                    cudaMemcpyDeviceToHost, ctx->stream)));
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(invstd, n->bn_invstd[node], bytes,
                                    cudaMemcpyDeviceToHost, ctx->stream)));
  return AE_CU(ctx, cudaStreamSynchronize(ctx->stream));
}

extern "C" size_t ae_cuda_net_param_count(const ae_cuda_net *n) {
  return ae_plan_param_count(n->plan);
}

extern "C" size_t ae_cuda_net_memory_bytes(const ae_cuda_net *n) {
  return n->arena_bytes + n->jet_bytes;
}

extern "C" const ae_graph *ae_cuda_net_graph(const ae_cuda_net *n) {
  return n->g;
}
