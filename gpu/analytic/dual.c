/* dual.c: dual activation kernels E[s(u)s(v)] and E[s'(u)s'(v)] for
 * (u, v) ~ N(0, [[q1, c], [c, q2]]) (metrics.md §2.3).
 *
 * Closed forms for relu, leaky_relu, erf and identity.  The smooth
 * activations (tanh, sigmoid, swish, gelu) use a nested trapezoid rule:
 * E = int phi(z1) f(sqrt(q1) z1) [int phi(z2) g(a + b z2) dz2] dz1, where
 * the inner Gaussian is v conditioned on z1 (a = rho sqrt(q2) z1,
 * b = sqrt(q2 (1 - rho^2))).  Each level is a trapezoid rule in t with
 * z = centre + scale * sinh(t): the scale resolves the activation's turn
 * (width 1/sqrt(q) at large variance) and the sinh tails reach the
 * Gaussian's bulk, so the rule holds at every variance.  The reference
 * versions integrate the same two levels with adaptive Gauss-Kronrod
 * (G7/K15) to 1e-12, for tests.
 *
 * Every function here is pure (a table of sinh/cosh nodes is filled once
 * under pthread_once, read-only after); any thread may call any of them. */
#include "config.h"

#include <math.h>
#include <pthread.h>

#include "gpu/activation.h"
#include "gpu/analytic/analytic.h"
#include "gpu/analytic/analytic_internal.h"

/* ---- scalar activations and derivatives ---- */

static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

static double act_value(const ae_activation *a, double x) {
  /* relu6, hardswish, hardsigmoid: gpu/activation.h's one definition. */
  if (ae_act_is_hard(a->fn)) return ae_act_hard_value((int)a->fn, x);
  switch (a->fn) {
  case AE_ACT_RELU:
    return x > 0 ? x : 0.0;
  case AE_ACT_LEAKY_RELU:
    return x > 0 ? x : a->slope * x;
  case AE_ACT_TANH:
    return tanh(x);
  case AE_ACT_SIGMOID:
    return sigmoid(x);
  case AE_ACT_SWISH:
    return x * sigmoid(x);
  case AE_ACT_GELU:
    return x * 0.5 * erfc(-x * M_SQRT1_2);
  case AE_ACT_ERF:
    return erf(x);
  case AE_ACT_IDENTITY:
    return x;
  }
  return NAN;
}

static double act_derivative(const ae_activation *a, double x) {
  if (ae_act_is_hard(a->fn)) return ae_act_hard_d1((int)a->fn, x);
  switch (a->fn) {
  case AE_ACT_RELU:
    return x > 0 ? 1.0 : 0.0;
  case AE_ACT_LEAKY_RELU:
    return x > 0 ? 1.0 : a->slope;
  case AE_ACT_TANH: {
    double t = tanh(x);
    return 1.0 - t * t;
  }
  case AE_ACT_SIGMOID: {
    double s = sigmoid(x);
    return s * (1.0 - s);
  }
  case AE_ACT_SWISH: {
    double s = sigmoid(x);
    return s + x * s * (1.0 - s);
  }
  case AE_ACT_GELU:
    return 0.5 * erfc(-x * M_SQRT1_2) +
           x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
  case AE_ACT_ERF:
    return 2.0 / sqrt(M_PI) * exp(-x * x);
  case AE_ACT_IDENTITY:
    return 1.0;
  }
  return NAN;
}

static double act_eval(const ae_activation *a, int derivative, double x) {
  return derivative ? act_derivative(a, x) : act_value(a, x);
}

static double normal_pdf(double z) {
  return exp(-0.5 * z * z) / sqrt(2.0 * M_PI);
}

/* Clamped correlation and sqrt(1 - rho^2) computed without cancellation. */
static double correlation(double q1, double q2, double c, double *one_minus) {
  double rho = c / sqrt(q1 * q2);
  if (isnan(rho)) rho = 0.0; /* 0/0: a zero-variance side */
  if (rho > 1.0) rho = 1.0;
  if (rho < -1.0) rho = -1.0;
  *one_minus = sqrt(fmax(0.0, (1.0 - rho) * (1.0 + rho)));
  return rho;
}

/* ---- the sinh-mapped trapezoid rule ---- */

/* Gaussian mass beyond this many standard deviations is ignored
 * (phi(9.5) ~ 1e-20, far below the 1e-12 target even for growing f). */
#define Z_MAX 9.5
/* Step in t; the rule converges exponentially in 1/h. */
#define STEP_T 0.125
/* Beyond this distance from the Gaussian's centre a turning point holds no
 * mass worth resolving; the map is then centred on the Gaussian. */
#define CENTRE_MAX 8.5
/* Largest map step (step times distance) at the Gaussian's centre. */
#define FAR_STEP 0.35

typedef struct {
  double centre, scale, step;
  long k_lo, k_hi;
} sinh_rule;

/* Nodes z = centre + scale sinh(k step) for the k that cover
 * |z| <= Z_MAX around a unit Gaussian at 0.  The step shrinks when the
 * centre is far from the Gaussian, where the map's local step grows. */
static void sinh_rule_init(sinh_rule *r, double centre, double scale) {
  double distance = fabs(centre);
  r->centre = centre;
  r->scale = scale;
  r->step = STEP_T;
  if (distance * STEP_T > FAR_STEP) r->step = FAR_STEP / distance;
  double t_lo = asinh((-Z_MAX - centre) / scale);
  double t_hi = asinh((Z_MAX - centre) / scale);
  r->k_lo = (long)floor(t_lo / r->step);
  r->k_hi = (long)ceil(t_hi / r->step);
}

/* sinh and cosh of k * STEP_T for |k| <= TABLE_HALF, computed once per
 * process (pthread_once) and read-only afterwards: the common step's
 * nodes then cost no transcendental. */
#define TABLE_HALF 160
static double sinh_table[2 * TABLE_HALF + 1], cosh_table[2 * TABLE_HALF + 1];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void) {
  for (int k = -TABLE_HALF; k <= TABLE_HALF; k++) {
    sinh_table[k + TABLE_HALF] = sinh((double)k * STEP_T);
    cosh_table[k + TABLE_HALF] = cosh((double)k * STEP_T);
  }
}

static void sinh_rule_node(const sinh_rule *r, long k, double *z, double *w) {
  double sh, ch;
  if (r->step == STEP_T && k >= -TABLE_HALF && k <= TABLE_HALF) {
    sh = sinh_table[k + TABLE_HALF];
    ch = cosh_table[k + TABLE_HALF];
  } else {
    double t = (double)k * r->step;
    sh = sinh(t);
    ch = cosh(t);
  }
  *z = r->centre + r->scale * sh;
  *w = r->step * r->scale * ch;
}

/* sigma(x) and sigma'(x) together, sharing the expensive part. */
static void act_both(const ae_activation *a, double x, double *value,
                     double *derivative) {
  switch (a->fn) {
  case AE_ACT_TANH: {
    double t = tanh(x);
    *value = t;
    *derivative = 1.0 - t * t;
    return;
  }
  case AE_ACT_SIGMOID: {
    double s = sigmoid(x);
    *value = s;
    *derivative = s * (1.0 - s);
    return;
  }
  case AE_ACT_SWISH: {
    double s = sigmoid(x);
    *value = x * s;
    *derivative = s + x * s * (1.0 - s);
    return;
  }
  case AE_ACT_GELU: {
    double cdf = 0.5 * erfc(-x * M_SQRT1_2);
    *value = x * cdf;
    *derivative = cdf + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
    return;
  }
  default:
    *value = act_value(a, x);
    *derivative = act_derivative(a, x);
  }
}

/* int phi(z) g(a + b z) dz for g = sigma and g = sigma'. */
static void inner_expectations(const ae_activation *act, double a, double b,
                               double *value, double *derivative) {
  if (b == 0.0) {
    act_both(act, a, value, derivative);
    return;
  }
  double centre = 0.0, scale = 1.0;
  if (b > 1.0) {
    scale = 1.0 / b;
    double turn = -a / b;
    if (fabs(turn) <= CENTRE_MAX) centre = turn;
  }
  sinh_rule r;
  sinh_rule_init(&r, centre, scale);
  double sum_v = 0.0, sum_d = 0.0;
  for (long k = r.k_lo; k <= r.k_hi; k++) {
    double z, w, v, d;
    sinh_rule_node(&r, k, &z, &w);
    act_both(act, a + b * z, &v, &d);
    double weight = w * normal_pdf(z);
    sum_v += weight * v;
    sum_d += weight * d;
  }
  *value = sum_v;
  *derivative = sum_d;
}

/* E[f(u) g(v)] and E[f'(u) g'(v)]: f on the outer level, g inner. */
static void quadrature_mixed(const ae_activation *f, const ae_activation *g,
                             double q1, double q2, double c, double *ss,
                             double *dd) {
  if (!(q1 >= 0) || !(q2 >= 0)) {
    *ss = *dd = NAN;
    return;
  }
  pthread_once(&table_once, table_init);
  if (q1 == 0.0) {
    /* u is the constant 0; v is free. */
    double fv, fd, gv, gd;
    act_both(f, 0.0, &fv, &fd);
    inner_expectations(g, 0.0, sqrt(q2), &gv, &gd);
    *ss = fv * gv;
    *dd = fd * gd;
    return;
  }
  if (q2 == 0.0) {
    double fv, fd, gv, gd;
    act_both(g, 0.0, &gv, &gd);
    inner_expectations(f, 0.0, sqrt(q1), &fv, &fd);
    *ss = fv * gv;
    *dd = fd * gd;
    return;
  }
  double one_minus;
  double rho = correlation(q1, q2, c, &one_minus);
  double s1 = sqrt(q1), s2 = sqrt(q2);
  double b = s2 * one_minus;
  double scale = fmin(1.0, 1.0 / fmax(s1, s2));
  sinh_rule r;
  sinh_rule_init(&r, 0.0, scale);
  double sum_v = 0.0, sum_d = 0.0;
  for (long k = r.k_lo; k <= r.k_hi; k++) {
    double z, w, fv, fd, gv, gd;
    sinh_rule_node(&r, k, &z, &w);
    act_both(f, s1 * z, &fv, &fd);
    if (fv == 0.0 && fd == 0.0) continue;
    inner_expectations(g, rho * s2 * z, b, &gv, &gd);
    double weight = w * normal_pdf(z);
    sum_v += weight * fv * gv;
    sum_d += weight * fd * gd;
  }
  *ss = sum_v;
  *dd = sum_d;
}

void ae_dual_quadrature_pair(ae_activation act, double q1, double q2, double c,
                             double *ss, double *dd) {
  quadrature_mixed(&act, &act, q1, q2, c, ss, dd);
}

double ae_dual_quadrature(ae_activation act, int derivative, double q1,
                          double q2, double c) {
  double ss, dd;
  ae_dual_quadrature_pair(act, q1, q2, c, &ss, &dd);
  return derivative ? dd : ss;
}

/* ---- closed forms ---- */

static double relu_like_ss(double q1, double q2, double c, double slope) {
  double one_minus;
  double rho = correlation(q1, q2, c, &one_minus);
  double root = sqrt(q1 * q2);
  if (root == 0.0) return 0.0;
  double even = (1.0 + slope) * (1.0 + slope) / 4.0;
  double odd = (1.0 - slope) * (1.0 - slope) / 4.0;
  return even * rho * root +
         odd * (2.0 * root / M_PI) * (one_minus + rho * asin(rho));
}

static double relu_like_dd(double q1, double q2, double c, double slope) {
  double one_minus;
  double rho = correlation(q1, q2, c, &one_minus);
  if (q1 * q2 == 0.0) rho = 0.0;
  return slope * slope + slope * (1.0 - slope) +
         (1.0 - slope) * (1.0 - slope) * (0.25 + asin(rho) / (2.0 * M_PI));
}

double ae_dual_ss(ae_activation a, double q1, double q2, double c) {
  switch (a.fn) {
  case AE_ACT_RELU:
    return relu_like_ss(q1, q2, c, 0.0);
  case AE_ACT_LEAKY_RELU:
    return relu_like_ss(q1, q2, c, a.slope);
  case AE_ACT_ERF: {
    double x = 2.0 * c / sqrt((1.0 + 2.0 * q1) * (1.0 + 2.0 * q2));
    return 2.0 / M_PI * asin(fmax(-1.0, fmin(1.0, x)));
  }
  case AE_ACT_IDENTITY:
    return c;
  default:
    return ae_dual_quadrature(a, 0, q1, q2, c);
  }
}

double ae_dual_dd(ae_activation a, double q1, double q2, double c) {
  switch (a.fn) {
  case AE_ACT_RELU:
    return relu_like_dd(q1, q2, c, 0.0);
  case AE_ACT_LEAKY_RELU:
    return relu_like_dd(q1, q2, c, a.slope);
  case AE_ACT_ERF: {
    double det = (1.0 + 2.0 * q1) * (1.0 + 2.0 * q2) - 4.0 * c * c;
    return 4.0 / M_PI / sqrt(fmax(det, 1e-300));
  }
  case AE_ACT_IDENTITY:
    return 1.0;
  default:
    return ae_dual_quadrature(a, 1, q1, q2, c);
  }
}

void ae_dual_pair(ae_activation a, double q1, double q2, double c, double *ss,
                  double *dd) {
  switch (a.fn) {
  case AE_ACT_TANH:
  case AE_ACT_SIGMOID:
  case AE_ACT_SWISH:
  case AE_ACT_GELU:
    ae_dual_quadrature_pair(a, q1, q2, c, ss, dd);
    return;
  default:
    *ss = ae_dual_ss(a, q1, q2, c);
    *dd = ae_dual_dd(a, q1, q2, c);
  }
}

static int is_smooth(ae_act_fn fn) {
  return fn == AE_ACT_TANH || fn == AE_ACT_SIGMOID || fn == AE_ACT_SWISH ||
         fn == AE_ACT_GELU || fn == AE_ACT_ERF;
}

/* The slope of a relu-like activation: relu 0, leaky_relu a; -1 else. */
static double relu_like_slope(ae_activation a) {
  if (a.fn == AE_ACT_RELU) return 0.0;
  if (a.fn == AE_ACT_LEAKY_RELU) return a.slope;
  return -1.0;
}

int ae_dual_mixed_pair(ae_activation f, ae_activation g, double q1, double q2,
                       double c, double *ss, double *dd) {
  if (f.fn == g.fn && (f.fn != AE_ACT_LEAKY_RELU || f.slope == g.slope)) {
    ae_dual_pair(f, q1, q2, c, ss, dd);
    return 0;
  }
  double f_mean, f_dmean, g_mean, g_dmean;
  if (g.fn == AE_ACT_IDENTITY) {
    /* Stein: E[f(u) v] = c E[f'(u)]. */
    ae_dual_mean(f, q1, &f_mean, &f_dmean);
    *ss = c * f_dmean;
    *dd = f_dmean;
    return 0;
  }
  if (f.fn == AE_ACT_IDENTITY) {
    ae_dual_mean(g, q2, &g_mean, &g_dmean);
    *ss = c * g_dmean;
    *dd = g_dmean;
    return 0;
  }
  double a = relu_like_slope(f), b = relu_like_slope(g);
  if (a >= 0 && b >= 0) {
    /* s_a(x) = a x + (1 - a) relu(x), and E[x relu(y)] = c / 2. */
    double rr, rd;
    ae_activation relu = {AE_ACT_RELU, 0.0};
    ae_dual_pair(relu, q1, q2, c, &rr, &rd);
    *ss = a * b * c + (a * (1 - b) + (1 - a) * b) * c * 0.5 +
          (1 - a) * (1 - b) * rr;
    *dd = a * b + (a * (1 - b) + (1 - a) * b) * 0.5 + (1 - a) * (1 - b) * rd;
    return 0;
  }
  if (is_smooth(f.fn) && is_smooth(g.fn)) {
    quadrature_mixed(&f, &g, q1, q2, c, ss, dd);
    return 0;
  }
  *ss = *dd = NAN; /* a kink against a smooth turn: not provided */
  return -1;
}

void ae_dual_mean(ae_activation a, double q, double *mean, double *dmean) {
  double root = sqrt(fmax(q, 0.0));
  switch (a.fn) {
  case AE_ACT_RELU:
    *mean = root / sqrt(2.0 * M_PI);
    *dmean = 0.5;
    return;
  case AE_ACT_LEAKY_RELU:
    *mean = (1.0 - a.slope) * root / sqrt(2.0 * M_PI);
    *dmean = 0.5 * (1.0 + a.slope);
    return;
  case AE_ACT_IDENTITY:
    *mean = 0.0;
    *dmean = 1.0;
    return;
  case AE_ACT_ERF:
    *mean = 0.0;
    *dmean = 2.0 / sqrt(M_PI) / sqrt(1.0 + 2.0 * q);
    return;
  default:
    pthread_once(&table_once, table_init);
    inner_expectations(&a, 0.0, root, mean, dmean);
  }
}

double ae_dual_c_sigma(ae_activation a) {
  return 1.0 / ae_dual_ss(a, 1.0, 1.0, 1.0);
}

/* ---- reference: nested adaptive Gauss-Kronrod ---- */

static const double kronrod_x[8] = {
    0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
    0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
    0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
    0.207784955007898467600689403773245, 0.0};
static const double kronrod_w[8] = {
    0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
    0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
    0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
    0.204432940075298892414161999234649, 0.209482141084727828012999174891714};
static const double gauss_w[4] = {
    0.129484966168869693270611432679082, 0.279705391489276667901467771423780,
    0.381830050505118944950369775488975, 0.417959183673469387755102040816327};

typedef double (*integrand_fn)(double z, const void *ctx);

static double kronrod15(integrand_fn f, const void *ctx, double lo, double hi,
                        double *error) {
  double mid = 0.5 * (lo + hi), half = 0.5 * (hi - lo);
  double fc = f(mid, ctx);
  double kronrod = kronrod_w[7] * fc, gauss = gauss_w[3] * fc;
  for (int k = 0; k < 7; k++) {
    double dx = half * kronrod_x[k];
    double sum = f(mid - dx, ctx) + f(mid + dx, ctx);
    kronrod += kronrod_w[k] * sum;
    if (k % 2 == 1) gauss += gauss_w[k / 2] * sum;
  }
  *error = fabs((kronrod - gauss) * half);
  return kronrod * half;
}

static double adaptive(integrand_fn f, const void *ctx, double lo, double hi,
                       double tol, int depth) {
  double error;
  double value = kronrod15(f, ctx, lo, hi, &error);
  /* Absolute tolerance, or relative where the values are large. */
  if (error <= tol || error <= 1e-14 * fabs(value) || depth >= 30) return value;
  double mid = 0.5 * (lo + hi);
  return adaptive(f, ctx, lo, mid, 0.5 * tol, depth + 1) +
         adaptive(f, ctx, mid, hi, 0.5 * tol, depth + 1);
}

/* Adaptive integration of f over [lo, hi] with a breakpoint. */
static double adaptive_split(integrand_fn f, const void *ctx, double lo,
                             double hi, double breakpoint, double tol) {
  if (breakpoint > lo && breakpoint < hi)
    return adaptive(f, ctx, lo, breakpoint, 0.5 * tol, 0) +
           adaptive(f, ctx, breakpoint, hi, 0.5 * tol, 0);
  return adaptive(f, ctx, lo, hi, tol, 0);
}

typedef struct {
  const ae_activation *act;       /* inner level (and the only one) */
  const ae_activation *outer_act; /* outer level of the 2-D integral */
  int derivative;
  double a, b; /* inner: g(a + b z) */
  double s1, rho_s2, one_minus_b;
} reference_ctx;

static double reference_inner_integrand(double z, const void *p) {
  const reference_ctx *r = p;
  return normal_pdf(z) * act_eval(r->act, r->derivative, r->a + r->b * z);
}

#define REFERENCE_Z 11.0

static double reference_inner(const ae_activation *act, int derivative,
                              double a, double b) {
  if (b == 0.0) return act_eval(act, derivative, a);
  reference_ctx r = {.act = act, .derivative = derivative, .a = a, .b = b};
  return adaptive_split(reference_inner_integrand, &r, -REFERENCE_Z,
                        REFERENCE_Z, -a / b, 1e-14);
}

static double reference_outer_integrand(double z, const void *p) {
  const reference_ctx *r = p;
  double outer = act_eval(r->outer_act, r->derivative, r->s1 * z);
  if (outer == 0.0) return 0.0;
  return normal_pdf(z) * outer *
         reference_inner(r->act, r->derivative, r->rho_s2 * z, r->one_minus_b);
}

/* E[f(u) g(v)] (derivative 0) or E[f'(u) g'(v)], f outer, g inner. */
static double dual_reference(const ae_activation *f, const ae_activation *g,
                             int derivative, double q1, double q2, double c) {
  if (!(q1 >= 0) || !(q2 >= 0)) return NAN;
  if (q1 == 0.0)
    return act_eval(f, derivative, 0.0) *
           reference_inner(g, derivative, 0.0, sqrt(q2));
  if (q2 == 0.0)
    return act_eval(g, derivative, 0.0) *
           reference_inner(f, derivative, 0.0, sqrt(q1));
  double one_minus;
  double rho = correlation(q1, q2, c, &one_minus);
  reference_ctx r = {.act = g,
                     .outer_act = f,
                     .derivative = derivative,
                     .s1 = sqrt(q1),
                     .rho_s2 = rho * sqrt(q2),
                     .one_minus_b = sqrt(q2) * one_minus};
  return adaptive_split(reference_outer_integrand, &r, -REFERENCE_Z,
                        REFERENCE_Z, 0.0, 1e-12);
}

double ae_dual_ss_reference(ae_activation a, double q1, double q2, double c) {
  return dual_reference(&a, &a, 0, q1, q2, c);
}

double ae_dual_dd_reference(ae_activation a, double q1, double q2, double c) {
  return dual_reference(&a, &a, 1, q1, q2, c);
}

double ae_dual_mixed_reference(ae_activation f, ae_activation g, int derivative,
                               double q1, double q2, double c) {
  return dual_reference(&f, &g, derivative, q1, q2, c);
}

double ae_dual_mean_reference(ae_activation a, int derivative, double q) {
  return reference_inner(&a, derivative, 0.0, sqrt(fmax(q, 0.0)));
}
