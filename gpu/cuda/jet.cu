/* jet.cu: what the expressivity group needs from the CUDA executor (the
 * device twin of gpu/host/net_jet.c and net_patterns.c): ReLU sign
 * patterns built on the device (one bit per pattern unit, rows copied to
 * the host for the exact distinct count), a device hash per row, and the
 * float64 forward-mode second-order jets along a curve.
 *
 * The jets carry three streams per node (value, first and second
 * derivative along the curve), stored as one block of 3 * batch samples,
 * so conv and linear layers run them as one float64 GEMM.  Their buffers
 * are planned on first use for the batch asked, reusing a node's buffer
 * once its last reader has run (ae_plan_jets), in one device allocation
 * counted by ae_cuda_net_memory_bytes.
 *
 * Runs on the thread that owns the net's context. */
#include "gpu/cuda/cuda_internal.h"

#include "gpu/cuda/cuda_kernels.cuh"
#include <stdlib.h>
#include <string.h>

/* ---- sign patterns ---- */

extern "C" int ae_cuda_net_sign_patterns(ae_cuda_net *n, const float *x,
                                         int batch, uint64_t **bits,
                                         size_t *words_per_sample) {
  *bits = NULL;
  *words_per_sample = 0;
  if (!n || !x || batch < 1 || batch > n->max_batch) return AE_EINVAL;
  ae_cuda_context *ctx = n->ctx;
  cudaStream_t st = ctx->stream;
  AE_TRY(ae_cuda_alive(ctx));
  size_t B = (size_t)batch, words = n->pattern_words;
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(n->act[0], x,
                                    sizeof(float) * B * n->geom[0].elems,
                                    cudaMemcpyHostToDevice, st)));
  AE_TRY(ae_cuda_net_forward_device(n, batch));
  AE_TRY(AE_CU(ctx, cudaMemsetAsync(n->bits, 0,
                                    sizeof(uint64_t) * (B * words + 1), st)));
  size_t bit0 = 0;
  for (int k = 0; k < n->g->n_nodes; k++) {
    const ae_node *nd = &n->g->nodes[k];
    if (!ae_cuda_is_pattern_act(nd)) continue;
    size_t e = n->geom[k].elems;
    ae_k_sign_bits<<<ae_cuda_blocks(B * e), AE_CUDA_THREADS, 0, st>>>(
        n->act[nd->inputs[0]], batch, e, bit0, words,
        (unsigned long long *)n->bits);
    AE_TRY(AE_LAUNCHED(ctx));
    bit0 += e;
  }
  uint64_t *out = (uint64_t *)calloc(B * words + 1, sizeof(uint64_t));
  if (!out) return AE_ENOMEM;
  int rc = AE_OK;
  if (words > 0)
    rc = AE_CU(ctx, cudaMemcpyAsync(out, n->bits, sizeof(uint64_t) * B * words,
                                    cudaMemcpyDeviceToHost, st));
  if (!rc) rc = AE_CU(ctx, cudaStreamSynchronize(st));
  if (rc) {
    free(out);
    return rc;
  }
  *bits = out;
  *words_per_sample = words;
  return AE_OK;
}

extern "C" int ae_cuda_net_pattern_hashes(ae_cuda_net *n, int batch,
                                          uint64_t *hashes) {
  if (!n || !hashes || batch < 1 || batch > n->max_batch) return AE_EINVAL;
  ae_cuda_context *ctx = n->ctx;
  AE_TRY(ae_cuda_alive(ctx));
  ae_k_row_hash<<<ae_cuda_blocks((size_t)batch), AE_CUDA_THREADS, 0,
                  ctx->stream>>>((const unsigned long long *)n->bits, batch,
                                 n->pattern_words,
                                 (unsigned long long *)n->hashes);
  AE_TRY(AE_LAUNCHED(ctx));
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(hashes, n->hashes,
                                    sizeof(uint64_t) * (size_t)batch,
                                    cudaMemcpyDeviceToHost, ctx->stream)));
  return AE_CU(ctx, cudaStreamSynchronize(ctx->stream));
}

/* ---- jets ---- */

/* Samples per im2col chunk of a conv for `rows` samples (3 * batch): the
 * planner's, capped at AE_PLAN_CUDA_JET_COL_CAP doubles. */
static size_t jet_chunk(const ae_plan_geom *ge, size_t rows) {
  return ae_plan_cuda_jet_chunk(ge, rows);
}

static int plan_jets(ae_cuda_net *n, int batch) {
  if (n->jet_arena && n->jet_batch >= batch) return AE_OK;
  ae_cuda_context *ctx = n->ctx;
  if (n->jet_arena) {
    AE_TRY(AE_CU(ctx, cudaStreamSynchronize(ctx->stream)));
    AE_TRY(AE_CU(ctx, cudaFree(n->jet_arena)));
    ctx->net_bytes -= n->jet_bytes;
    n->jet_arena = NULL;
    n->jet_bytes = 0;
    n->jet_batch = 0;
  }
  const ae_plan *p = n->plan;
  int nn = n->g->n_nodes;
  size_t *off = (size_t *)malloc(sizeof(size_t) * (size_t)nn);
  if (!off) return AE_ENOMEM;
  size_t total = ae_plan_jets(p, batch, sizeof(double), 0, off);
  if (total == SIZE_MAX) {
    free(off);
    return AE_ENOMEM;
  }
  /* The scratch sizes are the planner's (ae_plan_job_device counts the
   * same). */
  size_t col_bytes, w_bytes, stats_bytes;
  ae_plan_cuda_jet_scratch(p, batch, &col_bytes, &w_bytes, &stats_bytes);
  size_t col_off = total;
  total += ae_plan_align(p, col_bytes);
  size_t w_off = total;
  total += ae_plan_align(p, w_bytes);
  size_t stats_off = total;
  total += ae_plan_align(p, stats_bytes);
  int rc = AE_CU(ctx, cudaMalloc((void **)&n->jet_arena, total));
  if (!rc) {
    n->jet_bytes = total;
    ctx->net_bytes += total;
    for (int k = 0; k < nn; k++)
      n->jet[k] = (double *)(n->jet_arena + off[k]);
    n->jcol = (double *)(n->jet_arena + col_off);
    n->jw = (double *)(n->jet_arena + w_off);
    n->jstats = (double *)(n->jet_arena + stats_off);
    n->jet_batch = batch;
  }
  free(off);
  return rc;
}

static int jet_conv(ae_cuda_net *n, int k, int batch) {
  ae_cuda_context *ctx = n->ctx;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  int K = ge->col_rows, HW = ge->out_hw, cout = nd->out;
  int rows = 3 * batch;
  const double *x = n->jet[nd->inputs[0]];
  double *y = n->jet[k];
  const double one = 1.0, zero = 0.0;
  ae_k_to_double<float>
      <<<ae_cuda_blocks(ge->n_weight), AE_CUDA_THREADS, 0, ctx->stream>>>(
          n->weight[k], ge->n_weight, n->jw);
  AE_TRY(AE_LAUNCHED(ctx));
  if (ge->direct)
    return AE_CUBLAS(ctx, cublasDgemmStridedBatched(
                              ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, HW, cout, K,
                              &one, x, HW, (long long)ge->in_elems, n->jw, K, 0,
                              &zero, y, HW, (long long)ge->elems, rows));
  int chunk = (int)jet_chunk(ge, (size_t)rows);
  for (int b0 = 0; b0 < rows; b0 += chunk) {
    int bc = rows - b0 < chunk ? rows - b0 : chunk;
    size_t work = (size_t)bc * (size_t)K * (size_t)HW;
    ae_k_im2col<double>
        <<<ae_cuda_blocks(work), AE_CUDA_THREADS, 0, ctx->stream>>>(
            x + (size_t)b0 * ge->in_elems, bc, ge->in_elems, ge->in_h, ge->in_w,
            nd->kernel, nd->stride, nd->padding, nd->shape[1], nd->shape[2], 0,
            K, n->jcol);
    AE_TRY(AE_LAUNCHED(ctx));
    AE_TRY(AE_CUBLAS(ctx, cublasDgemmStridedBatched(
                              ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, HW, cout, K,
                              &one, n->jcol, HW, (long long)K * HW, n->jw, K, 0,
                              &zero, y + (size_t)b0 * ge->elems, HW,
                              (long long)ge->elems, bc)));
  }
  return AE_OK;
}

static int jet_node(ae_cuda_net *n, int k, int batch) {
  ae_cuda_context *ctx = n->ctx;
  cudaStream_t st = ctx->stream;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t per = (size_t)batch * ge->elems, all = 3 * per;
  double *y = n->jet[k];
  const double *x = nd->n_inputs > 0 ? n->jet[nd->inputs[0]] : NULL;
  unsigned grid = ae_cuda_blocks(all);
  switch (nd->op) {
  case AE_OP_INPUT:
    return AE_OK;
  case AE_OP_CONV:
    return jet_conv(n, k, batch);
  case AE_OP_LINEAR: {
    int in = (int)ge->in_elems;
    const double one = 1.0, zero = 0.0;
    ae_k_to_double<float>
        <<<ae_cuda_blocks(ge->n_weight), AE_CUDA_THREADS, 0, st>>>(
            n->weight[k], ge->n_weight, n->jw);
    AE_TRY(AE_LAUNCHED(ctx));
    AE_TRY(AE_CUBLAS(ctx, cublasDgemm(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N,
                                      nd->out, 3 * batch, in, &one, n->jw, in,
                                      x, in, &zero, y, nd->out)));
    if (!n->bias[k]) return AE_OK;
    ae_k_bias_add<double><<<ae_cuda_blocks(per), AE_CUDA_THREADS, 0, st>>>(
        y, n->bias[k], batch, nd->out);
    return AE_LAUNCHED(ctx);
  }
  case AE_OP_BATCH_NORM: {
    double *mean = n->jstats, *invstd = n->jstats + ge->channels;
    ae_k_bn_stats<double><<<ge->channels, AE_BN_THREADS, 0, st>>>(
        x, batch, ge->elems, ge->plane, mean, invstd);
    AE_TRY(AE_LAUNCHED(ctx));
    ae_k_bn_apply_jet<<<grid, AE_CUDA_THREADS, 0, st>>>(
        x, y, batch, ge->elems, ge->plane, mean, invstd, n->gamma[k],
        n->beta[k]);
    return AE_LAUNCHED(ctx);
  }
  case AE_OP_ACT:
    ae_k_act_jet<<<ae_cuda_blocks(per), AE_CUDA_THREADS, 0, st>>>(
        nd->act.fn, nd->act.slope, x, y, per);
    return AE_LAUNCHED(ctx);
  case AE_OP_AVG_POOL:
    ae_k_avg_pool<double><<<grid, AE_CUDA_THREADS, 0, st>>>(
        x, 3 * (size_t)batch * (size_t)ge->in_c, ge->in_h, ge->in_w, nd->kernel,
        nd->stride, nd->padding, nd->count_include_pad, nd->shape[1],
        nd->shape[2], y);
    return AE_LAUNCHED(ctx);
  case AE_OP_GLOBAL_AVG_POOL:
    ae_k_global_avg_pool<double><<<grid, AE_CUDA_THREADS, 0, st>>>(
        x, all, (size_t)ge->in_h * (size_t)ge->in_w, y);
    return AE_LAUNCHED(ctx);
  case AE_OP_ADD:
    AE_TRY(AE_CU(ctx, cudaMemcpyAsync(y, x, sizeof(double) * all,
                                      cudaMemcpyDeviceToDevice, st)));
    for (int i = 1; i < nd->n_inputs; i++) {
      ae_k_add<double>
          <<<grid, AE_CUDA_THREADS, 0, st>>>(y, n->jet[nd->inputs[i]], all);
      AE_TRY(AE_LAUNCHED(ctx));
    }
    return AE_OK;
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN:
    return AE_CU(ctx, cudaMemcpyAsync(y, x, sizeof(double) * all,
                                      cudaMemcpyDeviceToDevice, st));
  case AE_OP_ZERO:
    return AE_CU(ctx, cudaMemsetAsync(y, 0, sizeof(double) * all, st));
  }
  return AE_EINVAL;
}

extern "C" int ae_cuda_net_forward_jet(ae_cuda_net *n, const double *x,
                                       const double *dx, const double *ddx,
                                       int batch, double *y, double *dy,
                                       double *ddy) {
  if (!n || !x || !dx || !ddx || batch < 1) return AE_EINVAL;
  ae_cuda_context *ctx = n->ctx;
  cudaStream_t st = ctx->stream;
  AE_TRY(ae_cuda_alive(ctx));
  AE_TRY(plan_jets(n, batch));
  size_t per_in = (size_t)batch * n->geom[0].elems;
  double *in = n->jet[0];
  const double *src[3] = {x, dx, ddx};
  for (int s = 0; s < 3; s++)
    AE_TRY(AE_CU(ctx, cudaMemcpyAsync(in + (size_t)s * per_in, src[s],
                                      sizeof(double) * per_in,
                                      cudaMemcpyHostToDevice, st)));
  for (int k = 0; k < n->g->n_nodes; k++)
    AE_TRY(jet_node(n, k, batch));
  int o = n->g->output;
  size_t per = (size_t)batch * n->geom[o].elems;
  double *dst[3] = {y, dy, ddy};
  for (int s = 0; s < 3; s++) {
    if (!dst[s]) continue;
    AE_TRY(AE_CU(ctx, cudaMemcpyAsync(dst[s], n->jet[o] + (size_t)s * per,
                                      sizeof(double) * per,
                                      cudaMemcpyDeviceToHost, st)));
  }
  return AE_CU(ctx, cudaStreamSynchronize(st));
}
