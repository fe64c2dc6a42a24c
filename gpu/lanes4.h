/* lanes4.h: four float64 chains in the lanes of one GCC vector, for the
 * per-channel sums that must keep the scalar loop's order (BN statistics
 * in gpu/host/net_kernels_typed.c, the feature correlation's moments in
 * gpu/groups/features.c): four rows are loaded four positions at a time
 * and transposed in registers, so that each vector holds one position of
 * the four rows and each lane's additions run in the row's order.
 *
 * Header-only (GCC vector extensions, x86-64 GCC); no state. */
#ifndef AE_GPU_LANES4_H
#define AE_GPU_LANES4_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define AE_LANES4 1
typedef float ae_v4f __attribute__((vector_size(16)));
typedef double ae_v4d __attribute__((vector_size(32)));
typedef int32_t ae_v4i __attribute__((vector_size(16)));
typedef int64_t ae_v4l __attribute__((vector_size(32)));

/* col[t] = (row 0's value t, ..., row 3's value t) of rows[j][0..3]. */
static inline __attribute__((always_inline)) void
ae_v4f_transpose(const ae_v4f rows[4], ae_v4f col[4]) {
  ae_v4f lo01 = __builtin_shuffle(rows[0], rows[1], (ae_v4i){0, 4, 1, 5});
  ae_v4f hi01 = __builtin_shuffle(rows[0], rows[1], (ae_v4i){2, 6, 3, 7});
  ae_v4f lo23 = __builtin_shuffle(rows[2], rows[3], (ae_v4i){0, 4, 1, 5});
  ae_v4f hi23 = __builtin_shuffle(rows[2], rows[3], (ae_v4i){2, 6, 3, 7});
  col[0] = __builtin_shuffle(lo01, lo23, (ae_v4i){0, 1, 4, 5});
  col[1] = __builtin_shuffle(lo01, lo23, (ae_v4i){2, 3, 6, 7});
  col[2] = __builtin_shuffle(hi01, hi23, (ae_v4i){0, 1, 4, 5});
  col[3] = __builtin_shuffle(hi01, hi23, (ae_v4i){2, 3, 6, 7});
}

/* The same for four rows of four float64 values. */
static inline __attribute__((always_inline)) void
ae_v4d_transpose(const ae_v4d rows[4], ae_v4d col[4]) {
  ae_v4d t0 = __builtin_shuffle(rows[0], rows[1], (ae_v4l){0, 4, 2, 6});
  ae_v4d t1 = __builtin_shuffle(rows[0], rows[1], (ae_v4l){1, 5, 3, 7});
  ae_v4d t2 = __builtin_shuffle(rows[2], rows[3], (ae_v4l){0, 4, 2, 6});
  ae_v4d t3 = __builtin_shuffle(rows[2], rows[3], (ae_v4l){1, 5, 3, 7});
  col[0] = __builtin_shuffle(t0, t2, (ae_v4l){0, 1, 4, 5});
  col[1] = __builtin_shuffle(t1, t3, (ae_v4l){0, 1, 4, 5});
  col[2] = __builtin_shuffle(t0, t2, (ae_v4l){2, 3, 6, 7});
  col[3] = __builtin_shuffle(t1, t3, (ae_v4l){2, 3, 6, 7});
}

/* Rows j of r at offset k, four floats each, as vectors. */
static inline __attribute__((always_inline)) void
ae_v4f_load_rows(const float *const r[4], size_t k, ae_v4f rows[4]) {
  for (int j = 0; j < 4; j++)
    memcpy(&rows[j], r[j] + k, sizeof rows[j]);
}
#else
#define AE_LANES4 0
#endif

#endif
