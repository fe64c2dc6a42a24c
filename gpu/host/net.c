/* net.c: the host executor's plan, weights and forward pass (float32;
 * compiled again as net64.c in float64, see net_real.h).
 *
 * ae_net_create plans the graph for max_batch samples with gpu/plan.h
 * (geometry, liveness, gradient slots and offsets) and adds its scratch
 * to the plan's two families.  The forward family, allocated at once,
 * holds the parameters, the BN statistics, the forward output of every
 * node (kept: the backward reads them; identity and flatten share their
 * input's) and the forward scratch (a chunk of samples' im2col side by
 * side, so that the late small planes still make one well-shaped GEMM).
 * The backward family, allocated by the first ae_net_ntk, holds the
 * gradient slots and the NTK scratch.  Conv runs as im2col + GEMM, or,
 * in float32 where it gives the very same values, as the direct
 * convolution (net_conv_direct.c), whose samples go to two parts
 * (net_parts.c) when OpenBLAS has two threads; BN normalises with the
 * batch's statistics, accumulated in float64 and kept for the backward.
 * ae_net_set_double routes forward and NTK to a float64 twin holding the same
 * weights.
 *
 * The forward arena of the last (largest) net a thread destroyed is kept
 * for that thread's next net of about its size: a worker runs job after
 * job, and each job's arena (hundreds of MiB for a batch of 64 at 32x32)
 * would otherwise be mapped and page-faulted afresh every time.  The
 * jets' arena (net_jet.c, as large for the curvature's 128 points) is
 * kept the same way, as a second spare, and the backward family of the
 * NTK (ae_net_backward_buffers: tens to hundreds of MiB) as a third.  Arenas of
 * 32 MiB or more are anonymous mappings: a net larger than such a spare grows
 * it in place (mremap), so its resident pages move with it and only the new
 * tail faults in; a sweep of cells of growing size pays the faults of its
 * largest arena once, and the spare is never larger than the largest
 * arena a net of the thread needed (the job estimate's count).  Smaller
 * ones come from malloc, whose heap keeps their pages.  They are freed
 * when the thread exits, by ae_net_release_spare, or before an allocation
 * that fails without them.
 *
 * An ae_net and everything it points to belong to the thread that created
 * it (and, within one step, to the helper thread of a step in two parts,
 * on disjoint samples); the spare arena belongs to its thread. */
#include "config.h" /* mremap (AC_USE_SYSTEM_EXTENSIONS) */

#include "gpu/host/net_internal.h"

#include "api/status.h"
#include "gpu/philox.h"
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#ifndef AE_NET_DOUBLE
#include "gpu/host/net64.h"
#endif

#define ALIGN 64
#define BN_EPS 1e-5

static ae_real *param_tensor(ae_net *n, int node, ae_net_param_kind kind,
                             size_t *count);

static size_t align_up(size_t v) {
  return (v + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

/* ---- the per-thread spare arenas ---- */

typedef struct {
  unsigned char *p;
  size_t bytes; /* the mapping's length (whole pages) */
} spare_arena;

static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static int spare_ok;

/* bytes rounded up to whole pages (SIZE_MAX when that overflows). */
static size_t page_round(size_t bytes) {
  long pg = sysconf(_SC_PAGESIZE);
  size_t page = pg > 0 ? (size_t)pg : 4096;
  if (bytes > SIZE_MAX - page) return SIZE_MAX;
  return (bytes + page - 1) / page * page;
}

/* Arenas of at least this size are anonymous mappings of their own (they
 * can grow in place); smaller ones come from malloc, whose heap reuses
 * their pages from job to job (glibc maps chunks of up to 32 MiB from its
 * heap once its threshold has risen). */
#define ARENA_MAP_MIN ((size_t)32 << 20)

/* A fresh arena of bytes (whole pages), or NULL. */
static unsigned char *arena_map(size_t bytes) {
  if (bytes == SIZE_MAX) return NULL;
  if (bytes < ARENA_MAP_MIN) return aligned_alloc(ALIGN, bytes);
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void arena_unmap(unsigned char *p, size_t bytes) {
  if (!p) return;
  if (bytes < ARENA_MAP_MIN)
    free(p);
  else
    munmap(p, bytes);
}

/* A thread's spares: [AE_NET_SPARE_FORWARD], [AE_NET_SPARE_JETS],
 * [AE_NET_SPARE_BACKWARD]. */
static void spare_destroy(void *v) {
  spare_arena *s = v;
  for (int i = 0; i < AE_NET_SPARES; i++)
    arena_unmap(s[i].p, s[i].bytes);
  free(s);
}

static void spare_init(void) {
  spare_ok = pthread_key_create(&spare_key, spare_destroy) == 0;
}

static spare_arena *spare_of_thread(void) {
  pthread_once(&spare_once, spare_init);
  return spare_ok ? pthread_getspecific(spare_key) : NULL;
}

static void spare_drop(spare_arena *s) {
  arena_unmap(s->p, s->bytes);
  s->p = NULL;
  s->bytes = 0;
}

/* An arena of at least bytes: this thread's spare of the kind `which`
 * when it fits and is at most 8 times that (its pages are resident
 * anyway; a far smaller net, a probe or a one-sample net, leaves it to the
 * job's big net); a spare too small grown to bytes in place (mremap: its
 * resident pages come along, only the tail is new); else a new arena
 * (larger spares are freed first when memory is short).  64-byte
 * aligned; *have: its length, for ae_net_arena_give. */
unsigned char *ae_net_arena_take(int which, size_t bytes, size_t *have) {
  spare_arena *all = spare_of_thread(), *s = all ? &all[which] : NULL;
  bytes = page_round(bytes > 0 ? bytes : 1);
  if (bytes == SIZE_MAX) return NULL;
  if (s && s->p && s->bytes >= bytes && s->bytes / 8 <= bytes) {
    unsigned char *p = s->p;
    *have = s->bytes;
    s->p = NULL;
    s->bytes = 0;
    return p;
  }
  if (s && s->p && s->bytes < bytes && s->bytes >= ARENA_MAP_MIN) {
#ifdef MREMAP_MAYMOVE
    void *q = mremap(s->p, s->bytes, bytes, MREMAP_MAYMOVE);
#else /* no mremap (not Linux): a new arena, as for a small spare */
    void *q = MAP_FAILED;
#endif
    if (q != MAP_FAILED) {
      s->p = NULL;
      s->bytes = 0;
      *have = bytes;
      return q;
    }
    spare_drop(s);
  }
  if (s && s->p && s->bytes < bytes) spare_drop(s);
  *have = bytes;
  unsigned char *p = arena_map(bytes);
  if (!p && all) {
    for (int i = 0; i < AE_NET_SPARES; i++)
      spare_drop(&all[i]);
    p = arena_map(bytes);
  }
  return p;
}

/* Back from a destroyed net (or jets planned again): p and bytes as
 * ae_net_arena_take gave them; kept as the spare of its kind when larger
 * than it, else freed. */
void ae_net_arena_give(int which, unsigned char *p, size_t bytes) {
  if (!p) return;
  spare_arena *s = spare_of_thread();
  if (spare_ok && !s) {
    s = calloc(AE_NET_SPARES, sizeof *s);
    if (s && pthread_setspecific(spare_key, s)) {
      free(s);
      s = NULL;
    }
  }
  if (s) s = &s[which];
  if (!s || (s->p && s->bytes >= bytes)) {
    arena_unmap(p, bytes);
    return;
  }
  arena_unmap(s->p, s->bytes);
  s->p = p;
  s->bytes = bytes;
}

void ae_net_release_spare(void) {
#ifndef AE_NET_DOUBLE
  ae_net64_release_spare();
#endif
  spare_arena *s = spare_of_thread();
  if (!s) return;
  for (int i = 0; i < AE_NET_SPARES; i++)
    spare_drop(&s[i]);
}

/* Reserves the executor's scratch in the plan's two families, allocates
 * the forward family and binds every pointer to its offset.  A chunk puts
 * enough samples side by side (AE_PLAN_HOST_CHUNK_COLUMNS columns) that
 * the small late-stage planes still make a well-shaped sgemm. */
static int plan_arena(ae_net *n) {
  ae_plan *p = n->plan;
  for (int k = 0; k < n->g->n_nodes; k++)
    if (n->g->nodes[k].op == AE_OP_CONV)
      n->chunk[k] = ae_plan_host_chunk(&n->geom[k], n->max_batch);
  /* The scratch sizes are the planner's (the estimate counts the same). */
  ae_plan_host_sizes s;
  ae_plan_host_scratch_sizes(p, n->max_batch, 0, &s);
  /* The forward scratch: a chunk's im2col and its conv outputs. */
  size_t col_off = ae_plan_reserve(p, AE_PLAN_FORWARD, s.col);
  size_t ytmp_off = ae_plan_reserve(p, AE_PLAN_FORWARD, s.y);
  /* The backward's scratch, after the gradient slots.  That family is
   * allocated by the first ae_net_ntk (a net used only forward, e.g. for
   * sign patterns over thousands of samples, never pays for it). */
  n->bwd_dcol = ae_plan_reserve(p, AE_PLAN_BACKWARD, s.bwd_col);
  n->bwd_gd = ae_plan_reserve(p, AE_PLAN_BACKWARD, s.bwd_gd);
  n->bwd_gd2 = ae_plan_reserve(p, AE_PLAN_BACKWARD, s.bwd_gd2);
  n->bwd_bb = ae_plan_reserve(p, AE_PLAN_BACKWARD, s.bwd_bb);

  size_t total = p->bytes[AE_PLAN_FORWARD];
  n->arena = ae_net_arena_take(
      AE_NET_SPARE_FORWARD, align_up(total > 0 ? total : ALIGN), &n->arena_cap);
  if (!n->arena) return AE_ENOMEM;
  n->arena_bytes = total;
  /* Parameters and BN statistics come first: only they are zeroed at
   * create (activations are written before they are read, and untouched
   * pages of a batch never run cost no memory). */
  memset(n->arena, 0, p->param_bytes);
  unsigned char *a = n->arena;
  AE_PLAN_BIND_FORWARD(ae_real, n, p, a);
  n->col = (ae_real *)(a + col_off);
  n->ytmp = (ae_real *)(a + ytmp_off);
  return AE_OK;
}

int ae_net_backward_buffers(ae_net *n) {
  if (n->bwd_arena) return AE_OK;
  size_t plan_bytes = n->plan->bytes[AE_PLAN_BACKWARD];
  size_t bytes = plan_bytes > 0 ? plan_bytes : ALIGN;
  n->bwd_arena =
      ae_net_arena_take(AE_NET_SPARE_BACKWARD, align_up(bytes), &n->bwd_cap);
  if (!n->bwd_arena) return AE_ENOMEM;
  n->bwd_bytes = bytes;
  unsigned char *a = n->bwd_arena;
  for (int k = 0; k < n->g->n_nodes; k++)
    n->grad[k] = AE_PLAN_AT(ae_real, a, n->plan->grad[k]);
  n->dcol = (ae_real *)(a + n->bwd_dcol);
  n->gd = (double *)(a + n->bwd_gd);
  n->gd2 = (double *)(a + n->bwd_gd2);
  n->bb = (double *)(a + n->bwd_bb);
  return AE_OK;
}

int ae_net_create(const ae_graph *g, int max_batch, ae_net **out) {
  *out = NULL;
  ae_net *n = calloc(1, sizeof(*n));
  if (!n) return AE_ENOMEM;
  const ae_plan_options opt = {ALIGN, sizeof(ae_real), 1};
  int rc = ae_plan_create(g, max_batch, &opt, &n->plan);
  if (rc) goto fail;
  n->g = &n->plan->g;
  n->geom = n->plan->geom;
  n->max_batch = max_batch;
  size_t nn = (size_t)g->n_nodes;
  rc = AE_ENOMEM;
  n->chunk = calloc(nn, sizeof(int));
  n->weight = calloc(nn, sizeof(ae_real *));
  n->bias = calloc(nn, sizeof(ae_real *));
  n->gamma = calloc(nn, sizeof(ae_real *));
  n->beta = calloc(nn, sizeof(ae_real *));
  n->bn_mean = calloc(nn, sizeof(double *));
  n->bn_invstd = calloc(nn, sizeof(double *));
  n->act = calloc(nn, sizeof(ae_real *));
  n->grad = calloc(nn, sizeof(ae_real *));
  n->jet = calloc(nn, sizeof(ae_real *));
  if (!n->chunk || !n->weight || !n->bias || !n->gamma || !n->beta ||
      !n->bn_mean || !n->bn_invstd || !n->act || !n->grad || !n->jet)
    goto fail;
  rc = plan_arena(n);
  if (rc) goto fail;
  *out = n;
  return AE_OK;
fail:
  ae_net_destroy(n);
  return rc;
}

void ae_net_destroy(ae_net *n) {
  if (!n) return;
  ae_plan_destroy(n->plan);
  free(n->chunk);
  free(n->weight);
  free(n->bias);
  free(n->gamma);
  free(n->beta);
  free(n->bn_mean);
  free(n->bn_invstd);
  free(n->act);
  free(n->grad);
  free(n->jet);
#ifndef AE_NET_DOUBLE
  ae_net64_destroy(n->dbl);
#endif
  ae_net_arena_give(AE_NET_SPARE_FORWARD, n->arena, n->arena_cap);
  ae_net_arena_give(AE_NET_SPARE_BACKWARD, n->bwd_arena, n->bwd_cap);
  ae_net_arena_give(AE_NET_SPARE_JETS, n->jet_arena, n->jet_cap);
  free(n);
}

/* The weights (may) change: so do what a forward computed from them. */
static void weights_written(ae_net *n) {
  n->weights_version++;
  n->acts_version++;
}

#ifndef AE_NET_DOUBLE
void ae_net_versions(const ae_net *n, unsigned long *weights,
                     unsigned long *acts) {
  if (weights) *weights = n->weights_version;
  if (acts) *acts = n->acts_version;
}
#endif

void ae_net_init_weights(ae_net *n, uint64_t seed, uint32_t stream) {
  weights_written(n);
  for (int k = 0; k < n->g->n_nodes; k++) {
    const ae_node *nd = &n->g->nodes[k];
    const ae_plan_geom *ge = &n->geom[k];
    if (nd->op == AE_OP_LINEAR || nd->op == AE_OP_CONV) {
      double sd = sqrt(ae_plan_init_variance(n->plan, k));
      ae_real *w = n->weight[k];
      size_t e = 0;
#ifdef AE_NET_DOUBLE
      double z[AE_NET_NORMAL_LANES];
      for (; e + AE_NET_NORMAL_LANES <= ge->n_weight;
           e += AE_NET_NORMAL_LANES) {
        ae_net_philox_normals(seed, (uint32_t)k, stream, e, z);
        for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
          w[e + (size_t)l] = (ae_real)(sd * z[l]);
      }
#else
      /* The same float32 bits, the cosine vectorised (net_normals.c). */
      for (; e + AE_NET_NORMAL_LANES <= ge->n_weight; e += AE_NET_NORMAL_LANES)
        ae_net_philox_normals_f32(seed, (uint32_t)k, stream, e, sd, w + e);
#endif
      for (; e < ge->n_weight; e++)
        w[e] = (ae_real)(sd * ae_philox_normal(seed, (uint32_t)k, stream, e));
      if (n->bias[k]) memset(n->bias[k], 0, sizeof(ae_real) * (size_t)nd->out);
    } else if (nd->op == AE_OP_BATCH_NORM) {
      for (int c = 0; c < ge->channels; c++) {
        n->gamma[k][c] = 1.0;
        n->beta[k][c] = 0.0;
      }
    }
  }
}

/* Channel c of BN node k as forward_bn applies it once its statistics
 * are in (bn_invstd holding 1/std): y = scale * x + shift, both rounded
 * to the buffer type.  The shift is formed in float64.  (Centring in
 * float32 first, as (x - float(mean)) * scale, moved the ResNet cell's
 * lambda_min 1.5e-4 away from the float64 twin; this form keeps it
 * within 1e-6.) */
static void bn_scale_shift(const ae_net *n, int k, size_t c, ae_real *scale,
                           ae_real *shift) {
  double mean = n->bn_mean[k][c], inv = n->bn_invstd[k][c];
  *scale = (ae_real)(inv * n->gamma[k][c]);
  *shift = (ae_real)(n->beta[k][c] - mean * inv * n->gamma[k][c]);
}

static void forward_bn(ae_net *n, int k, int batch) {
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[n->g->nodes[k].inputs[0]];
  ae_real *y = n->act[k];
  size_t C = (size_t)ge->channels, P = ge->plane;
  /* The variances go through bn_invstd, which then takes 1/std. */
  ae_net_bn_stats_t(x, batch, ge->elems, P, 0, C, n->bn_mean[k],
                    n->bn_invstd[k]);
  for (size_t c = 0; c < C; c++) {
    n->bn_invstd[k][c] = 1.0 / sqrt(n->bn_invstd[k][c] + BN_EPS);
    /* One multiply-add per element. */
    ae_real scale, shift;
    bn_scale_shift(n, k, c, &scale, &shift);
    for (int b = 0; b < batch; b++)
      ae_net_scale_shift_t(x + (size_t)b * ge->elems + c * P,
                           y + (size_t)b * ge->elems + c * P, P, scale, shift);
  }
}

/* y = act(x); vectorised (the ReLU ran one element at a time: 3 % of the
 * `fast` profile), the same values per element. */
AE_AVX2_CLONES AE_VECTOR_LOOPS static void
forward_act(const ae_node *nd, const ae_real *restrict x, ae_real *restrict y,
            size_t count) {
  switch (nd->act.fn) {
  case AE_ACT_RELU:
    for (size_t i = 0; i < count; i++)
      y[i] = x[i] > 0.0 ? x[i] : 0.0;
    return;
  case AE_ACT_LEAKY_RELU: {
    ae_real s = (ae_real)nd->act.slope;
    for (size_t i = 0; i < count; i++)
      y[i] = x[i] > 0.0 ? x[i] : s * x[i];
    return;
  }
  case AE_ACT_IDENTITY:
    memcpy(y, x, sizeof(ae_real) * count);
    return;
  default:
    for (size_t i = 0; i < count; i++)
      y[i] = (ae_real)ae_act_value(nd->act.fn, nd->act.slope, (double)x[i]);
    return;
  }
}

#ifndef AE_NET_DOUBLE
/* 1 when node k's GEMM over `columns` columns runs as the direct
 * convolution (net_conv_direct.c). */
static int conv_direct_replaces(const ae_net *n, int k, size_t columns) {
  return ae_net_conv_direct_takes(&n->g->nodes[k], &n->geom[k], columns);
}

/* Node k's direct convolution of samples b0 .. b0 + m - 1. */
static void conv_direct_run(ae_net *n, int k, int b0, int m) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]] + (size_t)b0 * ge->in_elems;
  ae_net_conv_direct(n->weight[k], x, ge->in_elems, ge->in_c, ge->in_h,
                     ge->in_w, nd->kernel, nd->out,
                     n->act[k] + (size_t)b0 * ge->elems, ge->elems, m);
}

typedef struct {
  ae_net *n;
  int k, batch;
} conv_part_args;

static void conv_direct_part(void *arg, int part, int parts) {
  const conv_part_args *d = arg;
  size_t lo, hi;
  ae_net_part_range((size_t)d->batch, part, parts, &lo, &hi);
  if (hi > lo) conv_direct_run(d->n, d->k, (int)lo, (int)(hi - lo));
}

/* When the direct convolution stands in for every GEMM of node k's
 * forward (one sample's columns each for a plain 1x1 convolution, else
 * chunks of n->chunk[k] samples and the last, shorter one; `chunked`
 * says which), runs it over the whole batch, in
 * two parts of the samples when OpenBLAS has two threads (each output
 * is one sample's own arithmetic, so the same bits): 1, else 0 (nothing
 * done). */
static int conv_direct_batch(ae_net *n, int k, int batch, int chunked) {
  size_t hw = n->geom[k].out_hw;
  int chunk = chunked ? n->chunk[k] : 1;
  int full = batch < chunk ? batch : chunk, last = batch % chunk;
  if (!conv_direct_replaces(n, k, (size_t)full * hw) ||
      (last && !conv_direct_replaces(n, k, (size_t)last * hw)))
    return 0;
  conv_part_args d = {n, k, batch};
  ae_net_run_parts(ae_net_parts_threads(),
                   (size_t)batch * n->geom[k].elems * n->geom[k].col_rows,
                   conv_direct_part, &d);
  return 1;
}
#endif

/* Whether conv node k's output is +0 everywhere without computing it: its
 * input is all zeros (the node after a `none` edge of a cell, about a third
 * of an NB201 network's convolutions) and its weights finite.  Every
 * convolution here (im2col or 1x1 + GEMM, the direct kernels) starts its
 * sums at +0 and adds products of +-0, so it writes +0 too
 * (test_net_conv_direct compares the two).  Cheap when it is not: an
 * activation's first values are rarely all zero. */
static int conv_output_zero(const ae_net *n, int k, int batch) {
  const ae_plan_geom *ge = &n->geom[k];
  return ae_net_all_zero(n->act[n->g->nodes[k].inputs[0]],
                         (size_t)batch * ge->in_elems) &&
         ae_net_all_finite(n->weight[k], ge->n_weight);
}

static void forward_conv(ae_net *n, int k, int batch) {
  const ae_node *nd = &n->g->nodes[k];
  const ae_plan_geom *ge = &n->geom[k];
  const ae_real *x = n->act[nd->inputs[0]];
  ae_real *y = n->act[k];
  int direct = nd->kernel == 1 && nd->stride == 1 && nd->padding == 0;
  int K = (int)ge->col_rows, HW = (int)ge->out_hw, cout = nd->out;
#ifndef AE_NET_DOUBLE
  if (conv_direct_batch(n, k, batch, !direct)) return;
#endif
  if (direct) {
    for (int b = 0; b < batch; b++) {
      AE_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, HW, K, 1.0,
              n->weight[k], K, x + (size_t)b * ge->in_elems, HW, 0.0,
              y + (size_t)b * ge->elems, HW);
    }
    return;
  }
  for (int b0 = 0; b0 < batch; b0 += n->chunk[k]) {
    int m = batch - b0 < n->chunk[k] ? batch - b0 : n->chunk[k];
    size_t ld = (size_t)m * (size_t)HW;
    for (int j = 0; j < m; j++)
      ae_net_im2col_t(x + (size_t)(b0 + j) * ge->in_elems, ge->in_c, ge->in_h,
                      ge->in_w, nd->kernel, nd->stride, nd->padding,
                      nd->shape[1], nd->shape[2],
                      n->col + (size_t)j * (size_t)HW, ld);
    ae_real *out = m == 1 ? y + (size_t)b0 * ge->elems : n->ytmp;
    AE_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)ld, K, 1.0,
            n->weight[k], K, n->col, (int)ld, 0.0, out, (int)ld);
    if (m == 1) continue;
    for (int j = 0; j < m; j++)
      for (int c = 0; c < cout; c++)
        memcpy(y + (size_t)(b0 + j) * ge->elems + (size_t)c * (size_t)HW,
               out + (size_t)c * ld + (size_t)j * (size_t)HW,
               sizeof(ae_real) * (size_t)HW);
  }
}

int ae_net_forward_buffers(ae_net *n, const float *x, int batch) {
  if (!x || batch < 1 || batch > n->max_batch) return AE_EINVAL;
  n->acts_version++;
  size_t B = (size_t)batch;
  double t0 = ae_net_clock(n);
  for (int k = 0; k < n->g->n_nodes; k++) {
    const ae_node *nd = &n->g->nodes[k];
    const ae_plan_geom *ge = &n->geom[k];
    ae_real *y = n->act[k];
    size_t count = B * ge->elems;
    const ae_real *in0 = nd->n_inputs > 0 ? n->act[nd->inputs[0]] : NULL;
    if (ae_net_ops_handles(nd)) { /* net_ops.c */
      ae_net_ops_forward(n, k, batch);
      ae_net_tick(n, AE_NET_PROF_FWD_OTHER, &t0);
      continue;
    }
    switch (nd->op) {
    case AE_OP_INPUT:
      for (size_t e = 0; e < count; e++)
        y[e] = (ae_real)x[e];
      break;
    case AE_OP_LINEAR: {
      int in = (int)ge->in_elems;
      AE_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, batch, nd->out, in, 1.0,
              in0, in, n->weight[k], in, 0.0, y, nd->out);
      if (n->bias[k])
        for (size_t b = 0; b < B; b++)
          for (int o = 0; o < nd->out; o++)
            y[b * (size_t)nd->out + (size_t)o] += n->bias[k][o];
      break;
    }
    case AE_OP_CONV:
      if (!n->conv_zero_reference && conv_output_zero(n, k, batch)) {
        memset(y, 0, sizeof(ae_real) * count);
        n->conv_zero_skipped++;
      } else
        forward_conv(n, k, batch);
      break;
    case AE_OP_BATCH_NORM:
      forward_bn(n, k, batch);
      break;
    case AE_OP_ACT:
      forward_act(nd, in0, y, count);
      break;
    case AE_OP_AVG_POOL:
      ae_net_avg_pool_t(in0, B * (size_t)ge->in_c, nd, ge, y);
      break;
    case AE_OP_GLOBAL_AVG_POOL:
      ae_net_global_avg_pool_t(in0, B * (size_t)ge->in_c, ge, y);
      break;
    case AE_OP_ADD:
      ae_net_add_t(n->act, nd, count, y);
      break;
    case AE_OP_IDENTITY:
    case AE_OP_FLATTEN:
      if (y != in0) memcpy(y, in0, sizeof(ae_real) * count);
      break;
    case AE_OP_ZERO:
      memset(y, 0, sizeof(ae_real) * count);
      break;
    }
    ae_net_tick(
        n, nd->op == AE_OP_CONV ? AE_NET_PROF_FWD_CONV : AE_NET_PROF_FWD_OTHER,
        &t0);
  }
  return AE_OK;
}

#ifndef AE_NET_DOUBLE
/* Copies every parameter into the float64 twin. */
static int sync_double(ae_net *n) {
  static const ae_net_param_kind kinds[] = {AE_NET_WEIGHT, AE_NET_BIAS,
                                            AE_NET_GAMMA, AE_NET_BETA};
  for (int k = 0; k < n->g->n_nodes; k++)
    for (int q = 0; q < 4; q++) {
      size_t count;
      const float *t = param_tensor(n, k, kinds[q], &count);
      if (!t) continue;
      int rc = ae_net64_load_params(n->dbl, k, kinds[q], t, count);
      if (rc) return rc;
    }
  return AE_OK;
}

int ae_net_set_double(ae_net *n, int on) {
  if (on && !n->dbl) {
    int rc = ae_net64_create(n->g, n->max_batch, &n->dbl);
    if (rc) return rc;
  }
  if (n->use_double != on) weights_written(n);
  n->use_double = on;
  return AE_OK;
}

int ae_net_double_on(const ae_net *n) {
  return n->use_double;
}

int ae_net_double_twin(ae_net *n, ae_net64 **twin) {
  *twin = NULL;
  if (!n->use_double) return AE_OK;
  int rc = sync_double(n);
  if (rc) return rc;
  *twin = n->dbl;
  return AE_OK;
}
#endif

int ae_net_forward(ae_net *n, const float *x, int batch, float *logits) {
#ifndef AE_NET_DOUBLE
  ae_net64 *twin;
  int trc = ae_net_double_twin(n, &twin);
  if (trc) return trc;
  if (twin) return ae_net64_forward(twin, x, batch, logits);
#endif
  int rc = ae_net_forward_buffers(n, x, batch);
  if (rc) return rc;
  if (logits) {
    const ae_real *o = n->act[n->g->output];
    size_t count = (size_t)batch * n->geom[n->g->output].elems;
    for (size_t e = 0; e < count; e++)
      logits[e] = (float)o[e];
  }
  return AE_OK;
}

#ifndef AE_NET_DOUBLE
const float *ae_net_activation(const ae_net *n, int node) {
  if (node < 0 || node >= n->g->n_nodes) return NULL;
  return n->act[node];
}
#endif

size_t ae_net_param_count(const ae_net *n) {
  return ae_plan_param_count(n->plan);
}

size_t ae_net_memory_bytes(const ae_net *n) {
  size_t bytes = n->arena_bytes + n->bwd_bytes + n->jet_bytes;
#ifndef AE_NET_DOUBLE
  if (n->dbl) bytes += ae_net64_memory_bytes(n->dbl);
#endif
  return bytes;
}

/* A node's parameter tensor in the buffer type, and its length. */
static ae_real *param_tensor(ae_net *n, int node, ae_net_param_kind kind,
                             size_t *count) {
  if (count) *count = 0;
  if (node < 0 || node >= n->g->n_nodes) return NULL;
  const ae_node *nd = &n->g->nodes[node];
  const ae_plan_geom *ge = &n->geom[node];
  ae_real *p = NULL;
  size_t c = 0;
  switch (kind) {
  case AE_NET_WEIGHT:
    p = n->weight[node];
    c = ge->n_weight;
    break;
  case AE_NET_BIAS:
    p = n->bias[node];
    c = p ? (size_t)nd->out : 0;
    break;
  case AE_NET_GAMMA:
    p = n->gamma[node];
    c = p ? (size_t)ge->channels : 0;
    break;
  case AE_NET_BETA:
    p = n->beta[node];
    c = p ? (size_t)ge->channels : 0;
    break;
  }
  if (!p) c = 0;
  if (count) *count = c;
  return p;
}

int ae_net_load_params(ae_net *n, int node, ae_net_param_kind kind,
                       const float *src, size_t count) {
  size_t have;
  ae_real *t = param_tensor(n, node, kind, &have);
  if (have != count || (count > 0 && !t)) return AE_EINVAL;
  weights_written(n);
  for (size_t e = 0; e < count; e++)
    t[e] = (ae_real)src[e];
  return AE_OK;
}

#ifndef AE_NET_DOUBLE
float *ae_net_param(ae_net *n, int node, ae_net_param_kind kind,
                    size_t *count) {
  weights_written(n); /* the caller may write through the pointer */
  return param_tensor(n, node, kind, count);
}

int ae_net_bn_rescales_channels(const ae_net *n, int node) {
  if (node < 0 || node >= n->g->n_nodes ||
      n->g->nodes[node].op != AE_OP_BATCH_NORM)
    return 0;
  for (int c = 0; c < n->geom[node].channels; c++) {
    ae_real scale, shift; /* what forward_bn applied */
    bn_scale_shift(n, node, (size_t)c, &scale, &shift);
    if (!(scale != 0.0) || !isfinite(scale) || !isfinite(shift)) return 0;
  }
  return 1;
}
#endif

int ae_net_bn_stats(const ae_net *n, int node, const double **mean,
                    const double **invstd, int *channels) {
  if (node < 0 || node >= n->g->n_nodes ||
      n->g->nodes[node].op != AE_OP_BATCH_NORM)
    return AE_EINVAL;
  if (mean) *mean = n->bn_mean[node];
  if (invstd) *invstd = n->bn_invstd[node];
  if (channels) *channels = n->geom[node].channels;
  return AE_OK;
}

const ae_graph *ae_net_graph(const ae_net *n) {
  return n->g;
}

double ae_net_clock(const ae_net *n) {
  if (!n->profiling) return 0.0;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ae_net_tick(ae_net *n, int phase, double *t0) {
  if (!n->profiling) return;
  double now = ae_net_clock(n);
  n->prof[phase] += now - *t0;
  *t0 = now;
}

void ae_net_set_profiling(ae_net *n, int on) {
  n->profiling = on;
  if (on) memset(n->prof, 0, sizeof(n->prof));
}

const double *ae_net_profile(const ae_net *n) {
  return n->prof;
}
