/* net_kernels.c: the host executor's untyped building blocks: the
 * pooling divisor, the phase names, the Philox words of a run of elements
 * (the normals drawn from them are in net_normals.c), the Philox
 * Rademacher signs of a run (jacobian_trainability's g_out), float32 to
 * float64 runs, and whether the CPU has AVX-512 (as gpu/host/cpu_class.h
 * decides) or AVX2.  The typed buffer kernels are in net_kernels_typed.c, the
 * activations in gpu/activation.h.
 *
 * Pure functions on caller-owned memory, any thread; the one state is the
 * CPU check's answer, set once (pthread_once). */
#include "gpu/host/net_internal.h"

#include "gpu/host/cpu_class.h"
#include "gpu/philox.h"
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Divisor of one pooling window: k*k with padding counted, else the
 * number of in-bounds taps. */
int ae_net_pool_count(int y0, int x0, int h, int w, int k, int include_pad) {
  if (include_pad) return k * k;
  int ylo = y0 < 0 ? 0 : y0, yhi = y0 + k > h ? h : y0 + k;
  int xlo = x0 < 0 ? 0 : x0, xhi = x0 + k > w ? w : x0 + k;
  int n = (yhi - ylo) * (xhi - xlo);
  return n > 0 ? n : 1;
}

#if defined(__GNUC__) && defined(__x86_64__)
/* AVX-512F, unless AE_CPU_CLASS=avx2 runs this process as the avx2 class
 * (gpu/host/cpu_class.h, which checks once). */
int ae_net_have_avx512(void) {
  return ae_cpu_class_get() == AE_CPU_CLASS_AVX512;
}

static int have_avx2;

static void check_avx2_once(void) {
  __builtin_cpu_init();
  have_avx2 = __builtin_cpu_supports("avx2") != 0;
}

int ae_net_have_avx2(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, check_avx2_once);
  return have_avx2;
}

static int have_avx2_fma;

static void check_avx2_fma_once(void) {
  __builtin_cpu_init();
  have_avx2_fma =
      __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
}

int ae_net_have_avx2_fma(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, check_avx2_fma_once);
  return have_avx2_fma;
}
#else
int ae_net_have_avx2(void) {
  return 0;
}

int ae_net_have_avx2_fma(void) {
  return 0;
}

int ae_net_have_avx512(void) {
  return 0;
}
#endif

const char *ae_net_profile_name(int phase) {
  static const char *names[AE_NET_PROF_COUNT] = {
      "forward conv", "forward other", "ntk im2col", "ntk dW sgemm",
      "ntk dX",       "ntk gram",      "ntk other"};
  return phase >= 0 && phase < AE_NET_PROF_COUNT ? names[phase] : NULL;
}

/* Philox4x32-10 of AE_NET_NORMAL_LANES consecutive counters, lane by lane
 * so that the compiler vectorises the rounds: the very words of
 * ae_philox_words (integer arithmetic: every clone gives the same bits).
 * The portable reference of ae_net_philox_lanes. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void ae_net_philox_lanes_ref(uint64_t seed, uint32_t tensor, uint32_t stream,
                             uint64_t index0,
                             uint32_t w[4][AE_NET_NORMAL_LANES]) {
  uint32_t c0[AE_NET_NORMAL_LANES], c1[AE_NET_NORMAL_LANES],
      c2[AE_NET_NORMAL_LANES], c3[AE_NET_NORMAL_LANES];
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    uint64_t i = index0 + (uint64_t)l;
    c0[l] = (uint32_t)i;
    c1[l] = (uint32_t)(i >> 32);
    c2[l] = tensor;
    c3[l] = stream;
  }
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; round++) {
    for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
      uint64_t p0 = (uint64_t)0xD2511F53u * c0[l];
      uint64_t p1 = (uint64_t)0xCD9E8D57u * c2[l];
      uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0;
      uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
      c0[l] = n0;
      c1[l] = (uint32_t)p1;
      c2[l] = n2;
      c3[l] = (uint32_t)p0;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  memcpy(w[0], c0, sizeof(c0));
  memcpy(w[1], c1, sizeof(c1));
  memcpy(w[2], c2, sizeof(c2));
  memcpy(w[3], c3, sizeof(c3));
}

#if defined(__GNUC__) && defined(__x86_64__)
/* 16 lanes' 32 x 32 -> 64-bit products c * m: the high and low words, in
 * the lanes' order (vpmuludq on the even lanes, then on the odd ones
 * shifted down; the compiler's vectorisation of the reference widens,
 * multiplies and packs back, twice the instructions). */
__attribute__((target("avx512f"))) static inline void
mul_hi_lo(__m512i c, __m512i m, __m512i *hi, __m512i *lo) {
  __m512i even = _mm512_mul_epu32(c, m);
  __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

/* ae_net_philox_lanes_ref with AVX-512 intrinsics, 16 lanes at a time. */
__attribute__((target("avx512f"))) static void
philox_lanes_avx512(uint64_t seed, uint32_t tensor, uint32_t stream,
                    uint64_t index0, uint32_t w[4][AE_NET_NORMAL_LANES]) {
  const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u);
  const __m512i m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
  const __m512i lane =
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int g = 0; g < AE_NET_NORMAL_LANES; g += 16) {
    uint64_t i0 = index0 + (uint64_t)g;
    __m512i lo0 = _mm512_set1_epi32((int)(uint32_t)i0);
    __m512i c0 = _mm512_add_epi32(lo0, lane);
    /* The high word, plus one in the lanes whose low word wrapped. */
    __mmask16 wrapped = _mm512_cmplt_epu32_mask(c0, lo0);
    __m512i hi = _mm512_set1_epi32((int)(uint32_t)(i0 >> 32));
    __m512i c1 = _mm512_mask_add_epi32(hi, wrapped, hi, _mm512_set1_epi32(1));
    __m512i c2 = _mm512_set1_epi32((int)tensor);
    __m512i c3 = _mm512_set1_epi32((int)stream);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
      __m512i hi0, lo0r, hi1, lo1;
      mul_hi_lo(c0, m0, &hi0, &lo0r);
      mul_hi_lo(c2, m1, &hi1, &lo1);
      /* 0x96: a ^ b ^ c. */
      c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32((int)k0), 0x96);
      c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32((int)k1), 0x96);
      c1 = lo1;
      c3 = lo0r;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    _mm512_storeu_si512((void *)&w[0][g], c0);
    _mm512_storeu_si512((void *)&w[1][g], c1);
    _mm512_storeu_si512((void *)&w[2][g], c2);
    _mm512_storeu_si512((void *)&w[3][g], c3);
  }
}
#endif

#if defined(__GNUC__) && defined(__x86_64__)
/* mul_hi_lo on 8 lanes (AVX2: the blend takes an immediate). */
__attribute__((target("avx2"))) static inline void
mul_hi_lo8(__m256i c, __m256i m, __m256i *hi, __m256i *lo) {
  __m256i even = _mm256_mul_epu32(c, m);
  __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

/* ae_net_philox_lanes_ref with AVX2 intrinsics, 8 lanes at a time (the
 * CPUs without AVX-512: most laptops, AMD before Zen 4). */
__attribute__((target("avx2"))) static void
philox_lanes_avx2(uint64_t seed, uint32_t tensor, uint32_t stream,
                  uint64_t index0, uint32_t w[4][AE_NET_NORMAL_LANES]) {
  const __m256i m0 = _mm256_set1_epi32((int)0xD2511F53u);
  const __m256i m1 = _mm256_set1_epi32((int)0xCD9E8D57u);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
  for (int g = 0; g < AE_NET_NORMAL_LANES; g += 8) {
    uint64_t i0 = index0 + (uint64_t)g;
    __m256i lo0 = _mm256_set1_epi32((int)(uint32_t)i0);
    __m256i c0 = _mm256_add_epi32(lo0, lane);
    /* The high word, plus one in the lanes whose low word wrapped
     * (c0 < lo0 unsigned: a signed compare with both signs flipped gives
     * all ones there, and subtracting -1 adds one). */
    __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(lo0, sign),
                                         _mm256_xor_si256(c0, sign));
    __m256i c1 =
        _mm256_sub_epi32(_mm256_set1_epi32((int)(uint32_t)(i0 >> 32)), wrapped);
    __m256i c2 = _mm256_set1_epi32((int)tensor);
    __m256i c3 = _mm256_set1_epi32((int)stream);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
      __m256i hi0, lo0r, hi1, lo1;
      mul_hi_lo8(c0, m0, &hi0, &lo0r);
      mul_hi_lo8(c2, m1, &hi1, &lo1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1),
                            _mm256_set1_epi32((int)k0));
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3),
                            _mm256_set1_epi32((int)k1));
      c1 = lo1;
      c3 = lo0r;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    _mm256_storeu_si256((__m256i *)(void *)&w[0][g], c0);
    _mm256_storeu_si256((__m256i *)(void *)&w[1][g], c1);
    _mm256_storeu_si256((__m256i *)(void *)&w[2][g], c2);
    _mm256_storeu_si256((__m256i *)(void *)&w[3][g], c3);
  }
}
#endif

int ae_net_philox_lanes_avx2(uint64_t seed, uint32_t tensor, uint32_t stream,
                             uint64_t index0,
                             uint32_t w[4][AE_NET_NORMAL_LANES]) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (ae_net_have_avx2()) {
    philox_lanes_avx2(seed, tensor, stream, index0, w);
    return 1;
  }
#endif
  (void)seed, (void)tensor, (void)stream, (void)index0, (void)w;
  return 0;
}

void ae_net_philox_lanes(uint64_t seed, uint32_t tensor, uint32_t stream,
                         uint64_t index0, uint32_t w[4][AE_NET_NORMAL_LANES]) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (ae_net_have_avx512()) {
    philox_lanes_avx512(seed, tensor, stream, index0, w);
    return;
  }
  if (ae_net_philox_lanes_avx2(seed, tensor, stream, index0, w)) return;
#endif
  ae_net_philox_lanes_ref(seed, tensor, stream, index0, w);
}

void ae_rademacher_fill(uint64_t seed, uint32_t tensor, uint32_t stream,
                        size_t count, double *out) {
  uint32_t w[4][AE_NET_NORMAL_LANES];
  size_t e = 0;
  /* ae_philox_uniform < 0.5 exactly when bit 52 of its 53-bit value is 0,
   * and that bit is bit 31 of word 0. */
  for (; e + AE_NET_NORMAL_LANES <= count; e += AE_NET_NORMAL_LANES) {
    ae_net_philox_lanes(seed, tensor, stream, (uint64_t)e, w);
    for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
      out[e + (size_t)l] = w[0][l] >> 31 ? 1.0 : -1.0;
  }
  for (; e < count; e++)
    out[e] =
        ae_philox_uniform(seed, tensor, stream, (uint64_t)e) < 0.5 ? -1.0 : 1.0;
}

/* (Exact: every float32 is a float64.  The clones convert four or eight
 * values per instruction where the baseline loop, at -O2's cheap cost
 * model, converted one.) */
AE_AVX2_CLONES AE_VECTOR_LOOPS void
ae_f32_to_f64(const float *restrict src, size_t n, double *restrict dst) {
  for (size_t i = 0; i < n; i++)
    dst[i] = (double)src[i];
}
