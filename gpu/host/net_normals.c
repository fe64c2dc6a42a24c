/* net_normals.c: the Philox normals of a run of elements (the weight
 * init).  In float64 for the float64 twin, with libm's log and cos; in
 * float32 for the float32 net, bit for bit those of the scalar expression
 * (float)(sd * ae_philox_normal(...)), with Box-Muller's logarithm and
 * cosine as vector polynomials instead of libm's scalar calls.
 *
 * Why the bits hold.  The scalar value is fl32(sd * (r * cos(x))) with
 * r = sqrt(-2 log u) and libm's log and cos.  The polynomials give
 * log u within AE_NET_LOG_LANES_ERROR |log u| and c within
 * AE_NET_COS_LANES_ERROR of libm's values (test_net_conv_direct measures
 * both over their whole ranges; the brackets below are 2^10 times wider),
 * so libm's lie in [log u (1 +- bracket)] and [c - bracket, c + bracket].
 * Every later step is monotone: r falls as log u rises (-2 L exact, sqrt
 * correctly rounded), and r * c rises with r when c >= 0 and falls when
 * c <= 0, rises with c (r > 0); times sd > 0 and each rounding are
 * non-decreasing.  So the corners of that box that give the least and
 * the largest value bound the scalar expression's, and if both give the
 * same float32 the scalar expression gives it too.  Where they differ
 * (about two elements in 10^4: the value lies near a float32 rounding
 * boundary, or c near 0) the lane takes libm's log and cos, as the scalar
 * path does.
 *
 * Pure functions on caller-owned memory, any thread. */
#include "gpu/host/net_internal.h"

#include "gpu/philox.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Half the width of the bracket around the polynomial's cosine: 2^-40,
 * against the polynomial's measured distance of at most 2^-50 from libm's
 * cos (AE_NET_COS_LANES_ERROR, which libm's own error of under one ulp is
 * within). */
#define COS_BRACKET 0x1p-40
/* The same for the logarithm, relative: 2^-40 |log u| against the
 * polynomial's measured 2^-50 (AE_NET_LOG_LANES_ERROR). */
#define LOG_BRACKET 0x1p-40

/* cos(x[l]) for x in [0, 2*pi], within AE_NET_COS_LANES_ERROR of libm's:
 * Cody-Waite reduction by pi/2 to |t| <= pi/4 (plus round-off) and the
 * Taylor series of sin to t^15 and of cos to t^16 (truncation below 1e-16
 * there).  A vector loop: each lane computes both series and selects. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void ae_net_cos_lanes(const double *restrict x, double *restrict c) {
  const double two_over_pi = 0.63661977236758134308;
  const double pio2_hi = 1.57079632679489655800e+00;
  const double pio2_lo = 6.12323399573676603587e-17;
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    /* k = nearest integer to x / (pi/2), 0..4, without a library call:
     * adding 1.5 * 2^52 rounds it to an integer, which then sits in the
     * sum's low mantissa bits (quadrant). */
    double shifted = x[l] * two_over_pi + 0x1.8p52;
    double k = shifted - 0x1.8p52;
    uint64_t quadrant;
    memcpy(&quadrant, &shifted, sizeof quadrant);
    double t = (x[l] - k * pio2_hi) - k * pio2_lo;
    double t2 = t * t;
    double s =
        t +
        t * t2 *
            (-1.0 / 6 +
             t2 * (1.0 / 120 +
                   t2 * (-1.0 / 5040 +
                         t2 * (1.0 / 362880 +
                               t2 * (-1.0 / 39916800 +
                                     t2 * (1.0 / 6227020800.0 +
                                           t2 * (-1.0 / 1307674368000.0)))))));
    double co =
        1.0 +
        t2 * (-1.0 / 2 +
              t2 * (1.0 / 24 +
                    t2 * (-1.0 / 720 +
                          t2 * (1.0 / 40320 +
                                t2 * (-1.0 / 3628800 +
                                      t2 * (1.0 / 479001600.0 +
                                            t2 * (-1.0 / 87178291200.0 +
                                                  t2 / 20922789888000.0)))))));
    /* cos(t + k pi/2): cos t, -sin t, -cos t, sin t, cos t for k = 0..4,
     * selected with integer masks on the bits (a floating-point compare
     * would keep GCC from if-converting, hence vectorising, the loop): sin
     * where k is odd, the sign flipped where k & 3 is 1 or 2. */
    uint64_t s_bits, co_bits;
    memcpy(&s_bits, &s, sizeof s_bits);
    memcpy(&co_bits, &co, sizeof co_bits);
    uint64_t odd = 0 - (quadrant & 1);
    uint64_t bits = (s_bits & odd) | (co_bits & ~odd);
    bits ^= ((quadrant + 1) & 2) << 62;
    memcpy(&c[l], &bits, sizeof bits);
  }
}

/* log(u[l]) for u in [2^-60, 1): u = m 2^e with m in [sqrt(1/2), sqrt 2),
 * log m = 2 atanh(s) = 2 (s + s^3/3 + ... + s^19/19) with s = (m - 1) /
 * (m + 1), |s| <= 0.1716 (the next term is below 2^-57 of log m), and e
 * log 2 in two parts (e ln2_hi is exact).  Integer masks, no branches: a
 * vector loop. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void ae_net_log_lanes(const double *restrict u, double *restrict out) {
  const double ln2_hi = 6.93147180369123816490e-01; /* 0x3fe62e42fee00000 */
  const double ln2_lo = 1.90821492927058770002e-10; /* 0x3dea39ef35793c76 */
  const uint64_t sqrt2_bits = 0x3ff6a09e667f3bcdull;
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    uint64_t bits;
    memcpy(&bits, &u[l], sizeof bits);
    uint64_t m_bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    /* m in [1, 2); above sqrt 2 it is halved (exponent 1022) and e + 1. */
    uint64_t big = m_bits > sqrt2_bits;
    m_bits -= big << 52;
    int32_t e = (int32_t)(bits >> 52) - 1023 + (int32_t)big;
    double m;
    memcpy(&m, &m_bits, sizeof m);
    double f = m - 1.0; /* exact */
    double s = f / (m + 1.0);
    double z = s * s;
    double t =
        1.0 / 3 +
        z * (1.0 / 5 +
             z * (1.0 / 7 +
                  z * (1.0 / 9 +
                       z * (1.0 / 11 +
                            z * (1.0 / 13 +
                                 z * (1.0 / 15 + z * (1.0 / 17 + z / 19)))))));
    double s2 = s + s;
    double log_m = s2 + s2 * z * t;
    double de = (double)e;
    out[l] = de * ln2_hi + (log_m + de * ln2_lo);
  }
}

/* Box-Muller's uniform u1 in (0, 1) (its radius is sqrt(-2 log u1)) and
 * angle x = 2 pi u2 of the AE_NET_NORMAL_LANES elements from index0:
 * ae_philox_normal's expression, operation for operation, up to its
 * logarithm. */
static void box_muller_uniforms(uint64_t seed, uint32_t tensor, uint32_t stream,
                                uint64_t index0, double *u, double *x) {
  uint32_t w[4][AE_NET_NORMAL_LANES];
  ae_net_philox_lanes(seed, tensor, stream, index0, w);
  const uint64_t mask = (1ull << 53) - 1;
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    /* 53-bit values: exact as signed, which converts faster. */
    int64_t a = (int64_t)((((uint64_t)w[0][l] << 21) ^ (w[1][l] >> 11)) & mask);
    int64_t b = (int64_t)((((uint64_t)w[2][l] << 21) ^ (w[3][l] >> 11)) & mask);
    u[l] = ((double)a + 0.5) * (1.0 / 9007199254740992.0);
    x[l] = 6.283185307179586 * (((double)b + 0.5) * (1.0 / 9007199254740992.0));
  }
}

void ae_net_philox_normals(uint64_t seed, uint32_t tensor, uint32_t stream,
                           uint64_t index0, double *out) {
  double u[AE_NET_NORMAL_LANES], x[AE_NET_NORMAL_LANES];
  box_muller_uniforms(seed, tensor, stream, index0, u, x);
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
    out[l] = sqrt(-2.0 * log(u[l])) * cos(x[l]);
}

/* Both ends of the box [r_lo, r_hi] x [c_lo, c_hi] around libm's radius
 * and cosine go through the scalar expression's rounding steps.  The
 * arguments of sqrt are positive, so errno is never set and the vector
 * square root gives the same bits. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"),
               optimize("no-math-errno")))
#endif
void ae_net_bracketed_weights(const double *restrict lg,
                              const double *restrict c, double sd,
                              double log_bracket, double cos_bracket,
                              float *restrict out, uint32_t *restrict differ) {
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    /* log u < 0: the larger logarithm gives the smaller radius. */
    double spread = -lg[l] * log_bracket;
    double r_lo = sqrt(-2.0 * (lg[l] + spread));
    double r_hi = sqrt(-2.0 * (lg[l] - spread));
    double c_lo = c[l] - cos_bracket, c_hi = c[l] + cos_bracket;
    /* c <= 0 (c_lo's sign bit): the low end takes the larger radius.  A
     * bracket around 0 is left to libm. */
    uint64_t lo_bits, hi_bits, rl, rh;
    memcpy(&lo_bits, &c_lo, sizeof lo_bits);
    memcpy(&hi_bits, &c_hi, sizeof hi_bits);
    memcpy(&rl, &r_lo, sizeof rl);
    memcpy(&rh, &r_hi, sizeof rh);
    uint64_t negative = 0 - (lo_bits >> 63);
    uint64_t straddle = (lo_bits >> 63) & ~(hi_bits >> 63);
    uint64_t ra_bits = (rh & negative) | (rl & ~negative);
    uint64_t rb_bits = (rl & negative) | (rh & ~negative);
    double ra, rb;
    memcpy(&ra, &ra_bits, sizeof ra);
    memcpy(&rb, &rb_bits, sizeof rb);
    float lo = (float)(sd * (ra * c_lo));
    float hi = (float)(sd * (rb * c_hi));
    uint32_t flo, fhi;
    memcpy(&flo, &lo, sizeof flo);
    memcpy(&fhi, &hi, sizeof fhi);
    out[l] = lo;
    differ[l] = (flo ^ fhi) | (uint32_t)straddle;
  }
}

int ae_net_philox_normals_f32(uint64_t seed, uint32_t tensor, uint32_t stream,
                              uint64_t index0, double sd, float *out) {
  double u[AE_NET_NORMAL_LANES], x[AE_NET_NORMAL_LANES];
  double lg[AE_NET_NORMAL_LANES], c[AE_NET_NORMAL_LANES];
  box_muller_uniforms(seed, tensor, stream, index0, u, x);
  /* The monotonicity argument needs sd > 0 (sd = 0 gives signed zeros
   * that follow the cosine's sign): anything else takes libm's. */
  if (!(sd > 0.0 && sd < INFINITY)) {
    for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
      out[l] = (float)(sd * (sqrt(-2.0 * log(u[l])) * cos(x[l])));
    return AE_NET_NORMAL_LANES;
  }
  ae_net_log_lanes(u, lg);
  ae_net_cos_lanes(x, c);
  uint32_t differ[AE_NET_NORMAL_LANES];
  ae_net_bracketed_weights(lg, c, sd, LOG_BRACKET, COS_BRACKET, out, differ);
  int slow = 0;
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
    if (differ[l]) {
      out[l] = (float)(sd * (sqrt(-2.0 * log(u[l])) * cos(x[l])));
      slow++;
    }
  return slow;
}

void ae_net_philox_normals_fill_f32(uint64_t seed, uint32_t tensor,
                                    uint32_t stream, uint64_t index0,
                                    size_t count, float *out) {
  size_t i = 0;
  for (; i + AE_NET_NORMAL_LANES <= count; i += AE_NET_NORMAL_LANES)
    ae_net_philox_normals_f32(seed, tensor, stream, index0 + i, 1.0, out + i);
  for (; i < count; i++)
    out[i] = (float)ae_philox_normal(seed, tensor, stream, index0 + i);
}
