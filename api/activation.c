/* activation.c: activation names and their Gaussian second moments.
 *
 * E_{z~N(0,1)}[sigma(z)^2] is closed-form for relu, leaky_relu, identity and
 * erf; for tanh, sigmoid, swish, gelu, relu6, hardswish and hardsigmoid it is
 * a composite Gauss-Legendre quadrature of sigma(z)^2 phi(z) over |z| <= 16
 * (the tail beyond is below 1e-50), accurate to about 1e-15 (the kinks of
 * relu6, hardswish and hardsigmoid, at -3, 0, 3 and 6, are panel ends).
 * Pure functions; any thread. */
#include <math.h>
#include <string.h>

#include "api/arch.h"
#include "api/status.h"

static const char *const act_names[] = {
    [AE_ACT_RELU] = "relu",
    [AE_ACT_LEAKY_RELU] = "leaky_relu",
    [AE_ACT_TANH] = "tanh",
    [AE_ACT_SIGMOID] = "sigmoid",
    [AE_ACT_SWISH] = "swish",
    [AE_ACT_GELU] = "gelu",
    [AE_ACT_ERF] = "erf",
    [AE_ACT_IDENTITY] = "identity",
    [AE_ACT_RELU6] = "relu6",
    [AE_ACT_HARDSWISH] = "hardswish",
    [AE_ACT_HARDSIGMOID] = "hardsigmoid",
};

#define N_ACTS ((int)(sizeof act_names / sizeof act_names[0]))

int ae_act_is_piecewise_linear(ae_act_fn fn) {
  int f = (int)fn;
  return f == AE_ACT_RELU || f == AE_ACT_LEAKY_RELU || f == AE_ACT_IDENTITY ||
         f == AE_ACT_RELU6 || f == AE_ACT_HARDSIGMOID;
}

const char *ae_act_name(ae_act_fn fn) {
  if ((int)fn < 0 || (int)fn >= N_ACTS) return NULL;
  return act_names[fn];
}

int ae_act_from_name(const char *name, ae_act_fn *fn) {
  if (!name) return AE_EINVAL;
  for (int i = 0; i < N_ACTS; i++) {
    if (strcmp(name, act_names[i]) == 0) {
      *fn = (ae_act_fn)i;
      return AE_OK;
    }
  }
  return AE_EINVAL;
}

static double relu6(double z) {
  return z < 0 ? 0 : z > 6 ? 6 : z;
}

/* sigma(z) for the activations without a closed-form second moment. */
static double act_eval(ae_act_fn fn, double z) {
  switch ((int)fn) {
  case AE_ACT_RELU6:
    return relu6(z);
  case AE_ACT_HARDSWISH:
    return z * relu6(z + 3.0) / 6.0;
  case AE_ACT_HARDSIGMOID:
    return relu6(z + 3.0) / 6.0;
  case AE_ACT_TANH:
    return tanh(z);
  case AE_ACT_SIGMOID:
    return 1.0 / (1.0 + exp(-z));
  case AE_ACT_SWISH:
    return z / (1.0 + exp(-z));
  case AE_ACT_GELU:
    return 0.5 * z * erfc(-z / sqrt(2.0));
  case AE_ACT_ERF:
    return erf(z);
  case AE_ACT_IDENTITY:
    return z;
  case AE_ACT_RELU:
    return z > 0 ? z : 0;
  case AE_ACT_LEAKY_RELU:
    return z > 0 ? z : 0.01 * z;
  }
  return NAN;
}

#define GL_ORDER 16

/* Gauss-Legendre nodes and weights on [-1, 1] by Newton's method on the
 * Legendre polynomial (three-term recurrence). */
static void gauss_legendre(double *x, double *w) {
  const int n = GL_ORDER;
  for (int i = 0; i < (n + 1) / 2; i++) {
    double z = cos(M_PI * (i + 0.75) / (n + 0.5)), dp = 0;
    for (int iter = 0; iter < 100; iter++) {
      double p0 = 1.0, p1 = 0.0;
      for (int k = 1; k <= n; k++) {
        double p2 = p1;
        p1 = p0;
        p0 = ((2.0 * k - 1.0) * z * p1 - (k - 1.0) * p2) / k;
      }
      dp = n * (z * p0 - p1) / (z * z - 1.0);
      double dz = p0 / dp;
      z -= dz;
      if (fabs(dz) < 1e-16) break;
    }
    {
      double p0 = 1.0, p1 = 0.0;
      for (int k = 1; k <= n; k++) {
        double p2 = p1;
        p1 = p0;
        p0 = ((2.0 * k - 1.0) * z * p1 - (k - 1.0) * p2) / k;
      }
      dp = n * (z * p0 - p1) / (z * z - 1.0);
    }
    x[i] = -z;
    x[n - 1 - i] = z;
    w[i] = w[n - 1 - i] = 2.0 / ((1.0 - z * z) * dp * dp);
  }
}

/* E[sigma(z)^2] by composite Gauss-Legendre on [-16, 16], 128 panels. */
static double second_moment_quadrature(ae_act_fn fn) {
  double x[GL_ORDER], w[GL_ORDER];
  gauss_legendre(x, w);
  const double lo = -16.0, hi = 16.0;
  const int panels = 128;
  const double h = (hi - lo) / panels;
  const double norm = 1.0 / sqrt(2.0 * M_PI);
  double sum = 0.0;
  for (int k = 0; k < panels; k++) {
    double mid = lo + (k + 0.5) * h, part = 0.0;
    for (int i = 0; i < GL_ORDER; i++) {
      double z = mid + 0.5 * h * x[i];
      double s = act_eval(fn, z);
      part += w[i] * s * s * exp(-0.5 * z * z);
    }
    sum += part * 0.5 * h;
  }
  return sum * norm;
}

double ae_act_second_moment(ae_activation a) {
  switch ((int)a.fn) {
  case AE_ACT_RELU:
    return 0.5;
  case AE_ACT_LEAKY_RELU:
    return 0.5 * (1.0 + a.slope * a.slope);
  case AE_ACT_IDENTITY:
    return 1.0;
  case AE_ACT_ERF:
    return (2.0 / M_PI) * asin(2.0 / 3.0);
  case AE_ACT_TANH:
  case AE_ACT_SIGMOID:
  case AE_ACT_SWISH:
  case AE_ACT_GELU:
  case AE_ACT_RELU6:
  case AE_ACT_HARDSWISH:
  case AE_ACT_HARDSIGMOID:
    return second_moment_quadrature(a.fn);
  }
  return NAN;
}

double ae_act_c_sigma(ae_activation a) {
  return 1.0 / ae_act_second_moment(a);
}
