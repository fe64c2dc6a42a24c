/* ntk.cu: the CUDA executor's batched backward with frozen BN statistics
 * and the layer-by-layer empirical NTK (the device twin of
 * gpu/host/net_ntk.c).
 *
 * With dL/dlogits = 1 for every class and sample, one reverse sweep gives
 * every sample's activation gradient.  At each trainable tensor l the
 * per-sample gradients G_l (batch x P_l) are formed and theta += scale_l
 * G_l G_l^T in float64 (cublasDsyrk into the lower triangle of a
 * column-major batch x batch matrix, symmetrised on the host at the end):
 *   conv:   row b = vec(dY_b col(X_b)^T), all samples in one
 *           cublasSgemmStridedBatched per chunk of im2col rows, widened
 *           to float64, then dsyrk (chunks add up: the Gram sums over
 *           parameters);
 *   linear: G G^T = (dY dY^T) o (X X^T) (two dsyrk and a Hadamard
 *           kernel), never forming G; bias: + dY dY^T;
 *   BN gamma: row b = sum_hw dY_b * xhat_b (a warp per sample and
 *           channel), then dsyrk.
 * Gradients live in slots shared between nodes whose gradients are never
 * alive at once (net.cu); a slot is zeroed when its first writer's step
 * comes, then consumers add into it.
 *
 * Runs on the thread that owns the net's context. */
#include "gpu/cuda/cuda_internal.h"

#include "gpu/cuda/cuda_kernels.cuh"
#include <stdlib.h>
#include <string.h>

/* As the host's: the init variance under the NTK parameterization. */
static double weight_scale(const ae_cuda_net *n, int k, int par_ntk) {
  return par_ntk ? ae_plan_init_variance(n->plan, k) : 1.0;
}

/* theta += alpha * rows rows^T for `batch` float64 rows of `width`. */
static int gram_add(ae_cuda_net *n, const double *rows, int batch, int width,
                    double alpha, double beta, double *c) {
  return AE_CUBLAS(n->ctx, cublasDsyrk(n->ctx->blas, CUBLAS_FILL_MODE_LOWER,
                                       CUBLAS_OP_T, batch, width, &alpha, rows,
                                       width, &beta, c, batch));
}

static int widen(ae_cuda_net *n, const float *src, size_t count, double *dst) {
  ae_k_to_double<float>
      <<<ae_cuda_blocks(count), AE_CUDA_THREADS, 0, n->ctx->stream>>>(
          src, count, dst);
  return AE_LAUNCHED(n->ctx);
}

static int backward_linear(ae_cuda_net *n, int k, int batch, int par_ntk) {
  ae_cuda_context *ctx = n->ctx;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const float *x = n->act[nd->inputs[0]];
  const float *dy = n->grad[k];
  float *dx = n->grad[nd->inputs[0]];
  int in = (int)ge->in_elems, out = nd->out;
  size_t B = (size_t)batch;
  if (dx) {
    /* dx (batch x in) += dy W; column-major dx^T += W^T dy^T. */
    const float one = 1.0f;
    AE_TRY(AE_CUBLAS(ctx, cublasSgemm(ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, in,
                                      batch, out, &one, n->weight[k], in, dy,
                                      out, &one, dx, in)));
  }
  AE_TRY(widen(n, x, B * (size_t)in, n->gd));
  AE_TRY(gram_add(n, n->gd, batch, in, 1.0, 0.0, n->xx));
  AE_TRY(widen(n, dy, B * (size_t)out, n->gd));
  AE_TRY(gram_add(n, n->gd, batch, out, 1.0, 0.0, n->yy));
  double s = weight_scale(n, k, par_ntk);
  double sb = n->bias[k] ? 1.0 : 0.0;
  ae_k_hadamard_lower<<<ae_cuda_blocks(B * B), AE_CUDA_THREADS, 0,
                        ctx->stream>>>(n->theta, n->xx, n->yy, batch, s, sb);
  return AE_LAUNCHED(ctx);
}

static int backward_conv(ae_cuda_net *n, int k, int batch, int par_ntk) {
  ae_cuda_context *ctx = n->ctx;
  cudaStream_t st = ctx->stream;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const float *x = n->act[nd->inputs[0]];
  const float *dy = n->grad[k];
  float *dx = n->grad[nd->inputs[0]];
  int K = ge->col_rows, HW = ge->out_hw, cout = nd->out;
  const float one = 1.0f, zero = 0.0f;
  double scale = weight_scale(n, k, par_ntk);
  /* Per-sample dW_b[:, k0:k0+kc] (cout x kc, row-major) = dY_b col_b^T
   * restricted to im2col rows k0..; column-major: (kc x cout) =
   * col_b^T(kc x HW) dY_b^T(HW x cout). */
  for (int k0 = 0; k0 < K; k0 += n->k_chunk[k]) {
    int kc = K - k0 < n->k_chunk[k] ? K - k0 : n->k_chunk[k];
    const float *a = x + (size_t)k0 * (size_t)HW;
    long long a_stride = (long long)ge->in_elems;
    if (!ge->direct) {
      size_t work = (size_t)batch * (size_t)kc * (size_t)HW;
      ae_k_im2col<float><<<ae_cuda_blocks(work), AE_CUDA_THREADS, 0, st>>>(
          x, batch, ge->in_elems, ge->in_h, ge->in_w, nd->kernel, nd->stride,
          nd->padding, nd->shape[1], nd->shape[2], k0, kc, n->col);
      AE_TRY(AE_LAUNCHED(ctx));
      a = n->col;
      a_stride = (long long)kc * HW;
    }
    size_t width = (size_t)cout * (size_t)kc;
    AE_TRY(AE_CUBLAS(
        ctx, cublasSgemmStridedBatched(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, kc,
                                       cout, HW, &one, a, HW, a_stride, dy, HW,
                                       (long long)ge->elems, &zero, n->gf, kc,
                                       (long long)width, batch)));
    AE_TRY(widen(n, n->gf, (size_t)batch * width, n->gd));
    AE_TRY(gram_add(n, n->gd, batch, (int)width, scale, 1.0, n->theta));
  }
  if (!dx) return AE_OK;
  /* dX_b (K x HW) = W^T dY_b; column-major (HW x K) = dY_b^T W. */
  if (ge->direct)
    return AE_CUBLAS(ctx,
                     cublasSgemmStridedBatched(
                         ctx->blas, CUBLAS_OP_N, CUBLAS_OP_T, HW, K, cout, &one,
                         dy, HW, (long long)ge->elems, n->weight[k], K, 0, &one,
                         dx, HW, (long long)ge->in_elems, batch));
  for (int b0 = 0; b0 < batch; b0 += n->fwd_chunk[k]) {
    int bc = batch - b0 < n->fwd_chunk[k] ? batch - b0 : n->fwd_chunk[k];
    AE_TRY(AE_CUBLAS(ctx, cublasSgemmStridedBatched(
                              ctx->blas, CUBLAS_OP_N, CUBLAS_OP_T, HW, K, cout,
                              &one, dy + (size_t)b0 * ge->elems, HW,
                              (long long)ge->elems, n->weight[k], K, 0, &zero,
                              n->col, HW, (long long)K * HW, bc)));
    size_t work = (size_t)bc * ge->in_elems;
    ae_k_col2im_add<<<ae_cuda_blocks(work), AE_CUDA_THREADS, 0, st>>>(
        n->col, bc, ge->in_c, ge->in_h, ge->in_w, nd->kernel, nd->stride,
        nd->padding, nd->shape[1], nd->shape[2], dx + (size_t)b0 * ge->in_elems,
        ge->in_elems);
    AE_TRY(AE_LAUNCHED(ctx));
  }
  return AE_OK;
}

static int backward_bn(ae_cuda_net *n, int k, int batch) {
  ae_cuda_context *ctx = n->ctx;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  size_t warps = (size_t)batch * (size_t)ge->channels;
  ae_k_bn_backward<<<ae_cuda_blocks(warps * 32), AE_CUDA_THREADS, 0,
                     ctx->stream>>>(n->act[nd->inputs[0]], n->grad[k],
                                    n->grad[nd->inputs[0]], batch, ge->channels,
                                    ge->elems, ge->plane, n->bn_mean[k],
                                    n->bn_invstd[k], n->gamma[k], n->gd);
  AE_TRY(AE_LAUNCHED(ctx));
  return gram_add(n, n->gd, batch, ge->channels, 1.0, 1.0, n->theta);
}

/* Activations, pools, adds: gradients only. */
static int backward_other(ae_cuda_net *n, int k, int batch) {
  ae_cuda_context *ctx = n->ctx;
  cudaStream_t st = ctx->stream;
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const float *dy = n->grad[k];
  float *dx0 = nd->n_inputs > 0 ? n->grad[nd->inputs[0]] : NULL;
  size_t count = (size_t)batch * ge->elems;
  size_t planes = (size_t)batch * (size_t)ge->in_c;
  size_t hw_in = (size_t)ge->in_h * (size_t)ge->in_w;
  switch (nd->op) {
  case AE_OP_ACT:
    if (!dx0) return AE_OK;
    ae_k_act_backward<<<ae_cuda_blocks(count), AE_CUDA_THREADS, 0, st>>>(
        nd->act.fn, nd->act.slope, n->act[nd->inputs[0]], dy, dx0, count);
    return AE_LAUNCHED(ctx);
  case AE_OP_AVG_POOL:
    if (!dx0) return AE_OK;
    ae_k_avg_pool_adj<<<ae_cuda_blocks(planes * hw_in), AE_CUDA_THREADS, 0,
                        st>>>(dy, planes, ge->in_h, ge->in_w, nd->kernel,
                              nd->stride, nd->padding, nd->count_include_pad,
                              nd->shape[1], nd->shape[2], dx0);
    return AE_LAUNCHED(ctx);
  case AE_OP_GLOBAL_AVG_POOL:
    if (!dx0) return AE_OK;
    ae_k_global_avg_pool_adj<<<ae_cuda_blocks(planes * hw_in), AE_CUDA_THREADS,
                               0, st>>>(dy, planes, hw_in, dx0);
    return AE_LAUNCHED(ctx);
  case AE_OP_ADD:
  case AE_OP_IDENTITY:
  case AE_OP_FLATTEN:
    for (int i = 0; i < nd->n_inputs; i++) {
      float *dx = n->grad[nd->inputs[i]];
      if (!dx) continue;
      ae_k_add<float>
          <<<ae_cuda_blocks(count), AE_CUDA_THREADS, 0, st>>>(dx, dy, count);
      AE_TRY(AE_LAUNCHED(ctx));
    }
    return AE_OK;
  default:
    return AE_OK; /* INPUT, ZERO: nothing flows further */
  }
}

extern "C" int ae_cuda_net_ntk_checked(ae_cuda_net *n, const float *x,
                                       int batch, int par_ntk, double *theta,
                                       int (*check)(const void *ctl),
                                       const void *ctl) {
  if (!n || !x || !theta || batch < 1 || batch > n->max_batch) return AE_EINVAL;
  ae_cuda_context *ctx = n->ctx;
  cudaStream_t st = ctx->stream;
  AE_TRY(ae_cuda_alive(ctx));
  size_t B = (size_t)batch;
  AE_TRY(AE_CU(ctx, cudaMemcpyAsync(n->act[0], x,
                                    sizeof(float) * B * n->geom[0].elems,
                                    cudaMemcpyHostToDevice, st)));
  AE_TRY(ae_cuda_net_forward_device(n, batch));
  AE_TRY(AE_CU(ctx, cudaMemsetAsync(n->theta, 0, sizeof(double) * B * B, st)));
  int nn = n->g->n_nodes, out = n->g->output;
  if (!n->grad[out]) {
    /* Nothing trainable reaches the output: theta = 0. */
    memset(theta, 0, sizeof(double) * B * B);
    return AE_CU(ctx, cudaStreamSynchronize(st));
  }
  for (int t = nn - 1; t >= 0; t--) {
    /* Slots first written at this step start at 0 (the output's at 1:
     * dL/dlogits = 1 for every class and sample). */
    for (int k = 0; k < nn; k++) {
      if (n->plan->grad_first[k] != t) continue;
      size_t count = B * n->geom[k].elems;
      if (k == out) {
        ae_k_fill<<<ae_cuda_blocks(count), AE_CUDA_THREADS, 0, st>>>(
            n->grad[k], count, 1.0f);
        AE_TRY(AE_LAUNCHED(ctx));
      } else {
        AE_TRY(AE_CU(
            ctx, cudaMemsetAsync(n->grad[k], 0, sizeof(float) * count, st)));
      }
    }
    if (!n->grad[t]) continue;
    const ae_node *nd = &n->g->nodes[t];
    int trainable = 1;
    switch (nd->op) {
    case AE_OP_LINEAR:
      AE_TRY(backward_linear(n, t, batch, par_ntk));
      break;
    case AE_OP_CONV:
      AE_TRY(backward_conv(n, t, batch, par_ntk));
      break;
    case AE_OP_BATCH_NORM:
      AE_TRY(backward_bn(n, t, batch));
      break;
    default:
      trainable = 0;
      AE_TRY(backward_other(n, t, batch));
      break;
    }
    if (trainable && check) {
      int rc = check(ctl);
      if (rc) {
        /* Let queued work finish before the buffers are reused. */
        AE_TRY(AE_CU(ctx, cudaStreamSynchronize(st)));
        return rc;
      }
    }
  }
  double *lower = (double *)malloc(sizeof(double) * B * B);
  if (!lower) return AE_ENOMEM;
  int rc = AE_CU(ctx, cudaMemcpyAsync(lower, n->theta, sizeof(double) * B * B,
                                      cudaMemcpyDeviceToHost, st));
  if (!rc) rc = AE_CU(ctx, cudaStreamSynchronize(st));
  if (!rc) {
    /* Column-major lower triangle: element (i, j), i >= j, at i + j*B. */
    for (size_t j = 0; j < B; j++)
      for (size_t i = j; i < B; i++) {
        double v = lower[i + j * B];
        theta[i * B + j] = v;
        theta[j * B + i] = v;
      }
  }
  free(lower);
  return rc;
}
