/* activation.h: the one definition of every activation's value, first and
 * second derivative, in float64, for every executor: the host kernels and
 * jets (gpu/host/) and the CUDA kernels (gpu/cuda/), where nvcc compiles
 * the same functions as __host__ __device__ (AE_HD).
 *
 * The buffer kernels keep their own loops for the piecewise-linear ones
 * (relu, leaky_relu, identity), which are exact in any type; every other
 * activation goes through these functions in float64 and is rounded once
 * to the buffer's type.  The wire names live in api/activation.c; the
 * deliberately independent implementation the executors are checked
 * against is gpu/host/reference.c.
 *
 * Pure functions; any thread. */
#ifndef AE_ACTIVATION_H
#define AE_ACTIVATION_H

#include "api/arch.h"
#include <math.h>

/* As gpu/philox.h defines it (token for token, so either may come
 * first): inline host functions in C, __host__ __device__ under nvcc. */
#ifndef AE_HD
#ifdef __CUDACC__
#define AE_HD __host__ __device__ __forceinline__
#else
#define AE_HD static inline
#endif
#endif

#define AE_ACT_INV_SQRT2 0.70710678118654752440
#define AE_ACT_INV_SQRT2PI 0.39894228040143267794
#define AE_ACT_2_SQRTPI 1.12837916709551257390

AE_HD double ae_act_sigmoid(double z) {
  return 1.0 / (1.0 + exp(-z));
}

/* The hard activations (api/arch.h's AE_ACT_RELU6 group, PyTorch's
 * definitions): relu6 = min(max(z, 0), 6), hardswish = z relu6(z + 3) / 6,
 * hardsigmoid = relu6(z + 3) / 6.  They extend ae_act_fn's numbering, so
 * the switches below hand them here first.  At a kink the derivatives
 * are those of the piece PyTorch's backward selects: relu6 and
 * hardsigmoid the outer (flat) pieces (0 at z = 0, 6, resp. -3, 3),
 * hardswish the middle piece at both ends (z / 3 + 1/2 on [-3, 3]). */
AE_HD int ae_act_is_hard(ae_act_fn fn) {
  return (int)fn >= AE_ACT_RELU6 && (int)fn <= AE_ACT_HARDSIGMOID;
}

AE_HD double ae_act_hard_value(int fn, double z) {
  double r6 = z + 3.0 > 0.0 ? (z + 3.0 < 6.0 ? z + 3.0 : 6.0) : 0.0;
  switch (fn) {
  case AE_ACT_RELU6:
    return z > 0.0 ? (z < 6.0 ? z : 6.0) : 0.0;
  case AE_ACT_HARDSWISH:
    return z * r6 / 6.0;
  case AE_ACT_HARDSIGMOID:
    return r6 / 6.0;
  }
  return z;
}

AE_HD double ae_act_hard_d1(int fn, double z) {
  switch (fn) {
  case AE_ACT_RELU6:
    return z > 0.0 && z < 6.0 ? 1.0 : 0.0;
  case AE_ACT_HARDSWISH:
    return z < -3.0 ? 0.0 : z <= 3.0 ? z / 3.0 + 0.5 : 1.0;
  case AE_ACT_HARDSIGMOID:
    return z > -3.0 && z < 3.0 ? 1.0 / 6.0 : 0.0;
  }
  return 1.0;
}

AE_HD double ae_act_hard_d2(int fn, double z) {
  if (fn == AE_ACT_HARDSWISH && z >= -3.0 && z <= 3.0) return 1.0 / 3.0;
  return 0.0;
}

/* The kinks of a piecewise activation as they enter sign patterns (the
 * linear-regions count, docs/scorecard.md "Operators"): a unit's pattern
 * holds one bit per kink, set iff its input is > the kink.  relu and
 * leaky_relu: 0; relu6: 0 and 6; hardswish and hardsigmoid: -3 and 3.
 * Returns the number of kinks (0 for a smooth activation or identity). */
AE_HD int ae_act_pattern_kinks(ae_act_fn fn, double kinks[2]) {
  switch ((int)fn) {
  case AE_ACT_RELU:
  case AE_ACT_LEAKY_RELU:
    kinks[0] = 0.0;
    return 1;
  case AE_ACT_RELU6:
    kinks[0] = 0.0;
    kinks[1] = 6.0;
    return 2;
  case AE_ACT_HARDSWISH:
  case AE_ACT_HARDSIGMOID:
    kinks[0] = -3.0;
    kinks[1] = 3.0;
    return 2;
  }
  return 0;
}

/* sigma(z); slope is leaky_relu's. */
AE_HD double ae_act_value(ae_act_fn fn, double slope, double z) {
  if (ae_act_is_hard(fn)) return ae_act_hard_value((int)fn, z);
  switch (fn) {
  case AE_ACT_RELU:
    return z > 0.0 ? z : 0.0;
  case AE_ACT_LEAKY_RELU:
    return z > 0.0 ? z : slope * z;
  case AE_ACT_TANH:
    return tanh(z);
  case AE_ACT_SIGMOID:
    return ae_act_sigmoid(z);
  case AE_ACT_SWISH:
    return z * ae_act_sigmoid(z);
  case AE_ACT_GELU:
    return 0.5 * z * (1.0 + erf(z * AE_ACT_INV_SQRT2));
  case AE_ACT_ERF:
    return erf(z);
  case AE_ACT_IDENTITY:
    return z;
  }
  return z;
}

/* sigma'(z); the piecewise-linear ones take their right derivative at 0
 * from the left (z > 0 selects the slope 1). */
AE_HD double ae_act_d1(ae_act_fn fn, double slope, double z) {
  if (ae_act_is_hard(fn)) return ae_act_hard_d1((int)fn, z);
  switch (fn) {
  case AE_ACT_RELU:
    return z > 0.0 ? 1.0 : 0.0;
  case AE_ACT_LEAKY_RELU:
    return z > 0.0 ? 1.0 : slope;
  case AE_ACT_TANH: {
    double t = tanh(z);
    return 1.0 - t * t;
  }
  case AE_ACT_SIGMOID: {
    double s = ae_act_sigmoid(z);
    return s * (1.0 - s);
  }
  case AE_ACT_SWISH: {
    double s = ae_act_sigmoid(z);
    return s + z * s * (1.0 - s);
  }
  case AE_ACT_GELU:
    return 0.5 * (1.0 + erf(z * AE_ACT_INV_SQRT2)) +
           z * AE_ACT_INV_SQRT2PI * exp(-0.5 * z * z);
  case AE_ACT_ERF:
    return AE_ACT_2_SQRTPI * exp(-z * z);
  case AE_ACT_IDENTITY:
    return 1.0;
  }
  return 1.0;
}

/* sigma''(z); 0 for the piecewise-linear ones (hardswish: 1/3 on its
 * middle piece). */
AE_HD double ae_act_d2(ae_act_fn fn, double z) {
  if (ae_act_is_hard(fn)) return ae_act_hard_d2((int)fn, z);
  switch (fn) {
  case AE_ACT_RELU:
  case AE_ACT_LEAKY_RELU:
  case AE_ACT_IDENTITY:
    return 0.0;
  case AE_ACT_TANH: {
    double t = tanh(z);
    return -2.0 * t * (1.0 - t * t);
  }
  case AE_ACT_SIGMOID: {
    double s = ae_act_sigmoid(z);
    return s * (1.0 - s) * (1.0 - 2.0 * s);
  }
  case AE_ACT_SWISH: {
    double s = ae_act_sigmoid(z), ds = s * (1.0 - s);
    return 2.0 * ds + z * ds * (1.0 - 2.0 * s);
  }
  case AE_ACT_GELU: {
    double phi = AE_ACT_INV_SQRT2PI * exp(-0.5 * z * z);
    return 2.0 * phi - z * z * phi;
  }
  case AE_ACT_ERF:
    return -2.0 * z * AE_ACT_2_SQRTPI * exp(-z * z);
  }
  return 0.0;
}

#endif
