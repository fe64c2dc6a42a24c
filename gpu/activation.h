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

/* sigma(z); slope is leaky_relu's. */
AE_HD double ae_act_value(ae_act_fn fn, double slope, double z) {
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

/* sigma''(z); 0 for the piecewise-linear ones. */
AE_HD double ae_act_d2(ae_act_fn fn, double z) {
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
