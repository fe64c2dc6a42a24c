/* analytic_internal.h: helpers shared by the files of gpu/analytic/ and
 * their unit tests, not part of the engine's interface.  Pure functions. */
#ifndef AE_ANALYTIC_INTERNAL_H
#define AE_ANALYTIC_INTERNAL_H

#include "api/arch.h"
#include "gpu/job_control.h"

/* The generic quadrature path of the dual kernels for any activation:
 * E[g(u) g(v)] with g = sigma (derivative 0) or sigma' (derivative 1).
 * ae_dual_ss/dd use it for tanh, sigmoid, swish and gelu; tests call it
 * for erf to check it against the closed form. */
double ae_dual_quadrature(ae_activation act, int derivative, double q1,
                          double q2, double c);
/* Both expectations of the quadrature path in one pass (shared nodes). */
void ae_dual_quadrature_pair(ae_activation act, double q1, double q2, double c,
                             double *ss, double *dd);
/* ae_dual_ss and ae_dual_dd together: what the kernel recursion calls. */
void ae_dual_pair(ae_activation a, double q1, double q2, double c, double *ss,
                  double *dd);

/* c_sigma = 1 / E_{z~N(0,1)}[sigma(z)^2] from the dual kernel at unit
 * variance and rho = 1. */
double ae_dual_c_sigma(ae_activation a);

/* The c_sigma the analytic kernels fold into each linear edge. */
double ae_analytic_c_sigma(ae_activation a);

/* E[f(u) g(v)] and E[f'(u) g'(v)] for two activations: closed forms
 * for relu/leaky_relu pairs and identity (Stein), quadrature for two
 * smooth ones.  -1 (NaN outputs) for a piecewise-linear activation
 * against a smooth one, else 0. */
int ae_dual_mixed_pair(ae_activation f, ae_activation g, double q1, double q2,
                       double c, double *ss, double *dd);
/* E[sigma(u)] and E[sigma'(u)] for u ~ N(0, q). */
void ae_dual_mean(ae_activation a, double q, double *mean, double *dmean);

/* Adaptive references (tests): the mixed expectation (derivative 0:
 * E[f(u) g(v)], 1: E[f'(u) g'(v)]) and E[sigma(u)] / E[sigma'(u)]. */
double ae_dual_mixed_reference(ae_activation f, ae_activation g, int derivative,
                               double q1, double q2, double c);
double ae_dual_mean_reference(ae_activation a, int derivative, double q);

/* ae_sym_eigvals' interruptible path at any n >= 2 (it takes it from
 * AE_EIG_BLOCKED_MIN up): dsyevd's scaling, dsytrd's reduction driven
 * column by column, dsterf.  No finiteness check.  Tests compare it bit
 * for bit with LAPACKE_dsyevd. */
int ae_sym_eigvals_blocked(const double *A, int n, double *w,
                           const ae_job_control *ctl);

#endif
