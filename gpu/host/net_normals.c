/* net_normals.c: the Philox normals of a run of elements (the weight
 * init).  In float64 for the float64 twin, with libm's cos; in float32
 * for the float32 net, bit for bit those of the scalar expression
 * (float)(sd * ae_philox_normal(...)), with the Box-Muller cosine as a
 * vector polynomial instead of libm's scalar cos.
 *
 * Why the bits hold.  The scalar value is fl32(sd * (r * cos(x))) with
 * libm's cos.  The polynomial gives c within AE_NET_COS_LANES_ERROR of
 * libm's value (test_net_conv_direct measures the distance over the whole
 * range; the bracket below is 2^10 times wider), so libm's value lies in
 * [c - bracket, c + bracket].  Every step after the cosine is monotone
 * (r > 0, sd > 0, each rounding non-decreasing), so if both ends of the
 * bracket give the same float32 the scalar expression gives it too.  Where
 * they differ (about two elements in 10^4: the value lies near a float32
 * rounding boundary) the lane takes libm's cos, as the scalar path does.
 *
 * Pure functions on caller-owned memory, any thread. */
#include "gpu/host/net_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Half the width of the bracket around the polynomial's cosine: 2^-40,
 * against the polynomial's measured distance of at most 2^-50 from libm's
 * cos (AE_NET_COS_LANES_ERROR, which libm's own error of under one ulp is
 * within). */
#define COS_BRACKET 0x1p-40

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

/* Box-Muller's radius r = sqrt(-2 log u1) and angle x = 2 pi u2 of the
 * AE_NET_NORMAL_LANES elements from index0: ae_philox_normal's expression,
 * operation for operation, up to its cosine. */
static void box_muller_lanes(uint64_t seed, uint32_t tensor, uint32_t stream,
                             uint64_t index0, double *r, double *x) {
  uint32_t w[4][AE_NET_NORMAL_LANES];
  ae_net_philox_lanes(seed, tensor, stream, index0, w);
  const uint64_t mask = (1ull << 53) - 1;
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    /* 53-bit values: exact as signed, which converts faster. */
    int64_t a = (int64_t)((((uint64_t)w[0][l] << 21) ^ (w[1][l] >> 11)) & mask);
    int64_t b = (int64_t)((((uint64_t)w[2][l] << 21) ^ (w[3][l] >> 11)) & mask);
    r[l] = ((double)a + 0.5) * (1.0 / 9007199254740992.0);
    x[l] = 6.283185307179586 * (((double)b + 0.5) * (1.0 / 9007199254740992.0));
  }
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
    r[l] = sqrt(-2.0 * log(r[l]));
}

void ae_net_philox_normals(uint64_t seed, uint32_t tensor, uint32_t stream,
                           uint64_t index0, double *out) {
  double r[AE_NET_NORMAL_LANES], x[AE_NET_NORMAL_LANES];
  box_muller_lanes(seed, tensor, stream, index0, r, x);
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
    out[l] = r[l] * cos(x[l]);
}

int ae_net_philox_normals_f32(uint64_t seed, uint32_t tensor, uint32_t stream,
                              uint64_t index0, double sd, float *out) {
  double r[AE_NET_NORMAL_LANES], x[AE_NET_NORMAL_LANES];
  double c[AE_NET_NORMAL_LANES];
  box_muller_lanes(seed, tensor, stream, index0, r, x);
  /* The monotonicity argument needs sd > 0 (sd = 0 gives signed zeros
   * that follow the cosine's sign): anything else takes libm's cos. */
  if (!(sd > 0.0 && sd < INFINITY)) {
    for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
      out[l] = (float)(sd * (r[l] * cos(x[l])));
    return AE_NET_NORMAL_LANES;
  }
  ae_net_cos_lanes(x, c);
  uint32_t differ[AE_NET_NORMAL_LANES];
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++) {
    float lo = (float)(sd * (r[l] * (c[l] - COS_BRACKET)));
    float hi = (float)(sd * (r[l] * (c[l] + COS_BRACKET)));
    uint32_t lo_bits, hi_bits;
    memcpy(&lo_bits, &lo, sizeof lo_bits);
    memcpy(&hi_bits, &hi, sizeof hi_bits);
    out[l] = lo;
    differ[l] = lo_bits ^ hi_bits;
  }
  int slow = 0;
  for (int l = 0; l < AE_NET_NORMAL_LANES; l++)
    if (differ[l]) {
      out[l] = (float)(sd * (r[l] * cos(x[l])));
      slow++;
    }
  return slow;
}
