/* philox.h: the one random generator of archeval, Philox4x32-10 (Salmon et
 * al., SC'11), shared by the host and the CUDA backend so both draw the
 * same weights.
 *
 * Every draw is a pure function of (seed, tensor id, stream, element index):
 * key = seed, counter = (index low, index high, tensor id, stream).  No
 * state, so any thread or GPU thread can draw any element; nothing here is
 * owned by anyone. */
#ifndef AE_PHILOX_H
#define AE_PHILOX_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define AE_HD __host__ __device__ __forceinline__
#else
#define AE_HD static inline
#endif

/* Tensor ids below 2^20 are graph nodes (the node index); the data draws
 * use these reserved ids.  The stream is the repeat index (weights) or 0. */
enum {
  AE_TID_SYNTHETIC_INPUTS = 0x00f00001u, /* synthetic samples */
  AE_TID_RANDOM_LABELS = 0x00f00002u,    /* +-1 labels, synthetic classes */
  AE_TID_SAMPLE_CHOICE = 0x00f00003u,    /* which dataset samples a job uses */
  AE_TID_LR_CROPS = 0x00f00004u,         /* linear-regions crops */
  AE_TID_CURVE_DIRS = 0x00f00005u,       /* the curvature circle's plane */
  /* ranking.md: the Gaussian inputs of feature_isotropy and
   * jacobian_trainability, and the Rademacher g_out of the latter (stream:
   * the block pair's index) */
  AE_TID_GAUSS_INPUTS = 0x00f00006u,
  AE_TID_RADEMACHER = 0x00f00007u,
  AE_TID_SAMPLE_CHOICE_2 = 0x00f00008u /* zico's second batch, if drawn */
};

typedef struct {
  uint32_t v[4];
} ae_philox_out;

AE_HD ae_philox_out ae_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2,
                                     uint32_t c3, uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)M0 * c0, p1 = (uint64_t)M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  ae_philox_out o = {{c0, c1, c2, c3}};
  return o;
}

/* The four raw words for one element. */
AE_HD ae_philox_out ae_philox_words(uint64_t seed, uint32_t tensor,
                                    uint32_t stream, uint64_t index) {
  return ae_philox4x32_10((uint32_t)index, (uint32_t)(index >> 32), tensor,
                          stream, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* Uniform in (0, 1), 53 bits from two words, never 0. */
AE_HD double ae_philox_uniform(uint64_t seed, uint32_t tensor, uint32_t stream,
                               uint64_t index) {
  ae_philox_out o = ae_philox_words(seed, tensor, stream, index);
  uint64_t bits = ((uint64_t)o.v[0] << 21) ^ (uint64_t)(o.v[1] >> 11);
  bits &= (1ull << 53) - 1;
  return ((double)bits + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal by Box-Muller in double, from words 0-1 and 2-3. */
AE_HD double ae_philox_normal(uint64_t seed, uint32_t tensor, uint32_t stream,
                              uint64_t index) {
  ae_philox_out o = ae_philox_words(seed, tensor, stream, index);
  uint64_t a = (((uint64_t)o.v[0] << 21) ^ (o.v[1] >> 11)) & ((1ull << 53) - 1);
  uint64_t b = (((uint64_t)o.v[2] << 21) ^ (o.v[3] >> 11)) & ((1ull << 53) - 1);
  double u1 = ((double)a + 0.5) * (1.0 / 9007199254740992.0);
  double u2 = ((double)b + 0.5) * (1.0 / 9007199254740992.0);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
