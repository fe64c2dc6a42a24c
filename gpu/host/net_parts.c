/* net_parts.c: the float32 network's sample-parallel steps in parts (the
 * NTK's backward and Gram, the forward's direct convolutions).
 *
 * A step runs in as many parts as OpenBLAS has threads, at most 2, on a
 * CPU with AVX-512 or AVX2 + FMA (ae_net_parts_threads says why not
 * elsewhere): part 0
 * on the calling thread, part 1 on a helper thread started for the step
 * and joined before it returns, each on its own samples (or tiles) and
 * scratch.  Every value is the same whatever the split: the callers'
 * parts never share an output element, and no element's arithmetic
 * depends on which part computes it.  Engines fix OpenBLAS to one thread
 * (gpu/engine.h), so the daemon's and the CLI's jobs run in one part; a
 * program that sets two BLAS threads itself (bench_ntk with
 * AE_BENCH_THREADS=2) gets two.
 *
 * Stateless; the helper thread lives within one ae_net_run_parts call and
 * touches only what the step's function gives it. */
#include "gpu/host/net_internal.h"
#include <pthread.h>

/* OpenBLAS's thread control (declared by its cblas.h, not by every
 * one). */
extern int openblas_get_num_threads(void);

/* Two parts only where the NTK's heavy sample-parallel steps are
 * archeval's own kernels: the per-sample dW and the Gram (AVX-512, or
 * AVX2 with FMA), and with AVX-512 the direct convolutions too.  Without
 * them they were OpenBLAS's GEMMs, threaded by OpenBLAS, whose idle
 * worker spins on the other core between calls; a part thread started
 * for the elementwise steps (ReLU, BN) then competed with it: on a 2-core
 * Zen 2, bench_ntk at 2 threads took 3.01 s (all-conv) and 1.21 s
 * (ResNet) with parts, 2.09 s and 0.78 s with one (tests/bench/RESULTS.md).
 * With the AVX2 dW and Gram kernels in parts it takes 1.43-1.60 s and
 * 0.51-0.55 s, against 1.76 s and 0.64 s in one part. */
int ae_net_parts_threads(void) {
  return openblas_get_num_threads() >= 2 &&
                 (ae_net_have_avx512() || ae_net_have_avx2_fma())
             ? 2
             : 1;
}

typedef struct {
  ae_net_part_fn fn;
  void *arg;
} part_task;

static void *run_part_one(void *p) {
  part_task *t = p;
  t->fn(t->arg, 1, 2);
  return NULL;
}

void ae_net_run_parts(int threads, size_t work, ae_net_part_fn fn, void *arg) {
  pthread_t th;
  part_task t = {fn, arg};
  if (threads < 2 || work < 4096 ||
      pthread_create(&th, NULL, run_part_one, &t) != 0) {
    fn(arg, 0, 1);
    return;
  }
  fn(arg, 0, 2);
  pthread_join(th, NULL);
}

void ae_net_part_range(size_t count, int part, int parts, size_t *lo,
                       size_t *hi) {
  *lo = count * (size_t)part / (size_t)parts;
  *hi = count * (size_t)(part + 1) / (size_t)parts;
}
