/* analytic_internal.h: helpers shared by the files of gpu/analytic/ and
 * their unit tests, not part of the engine's interface.  Pure functions. */
#ifndef AE_ANALYTIC_INTERNAL_H
#define AE_ANALYTIC_INTERNAL_H

#include "api/arch.h"

/* The generic quadrature path of the dual kernels for any activation:
 * E[g(u) g(v)] with g = sigma (derivative 0) or sigma' (derivative 1).
 * ae_dual_ss/dd use it for tanh, sigmoid, swish and gelu; tests call it
 * for erf to check it against the closed form. */
double ae_dual_quadrature(ae_activation act, int derivative, double q1,
                          double q2, double c);
/* Both expectations of the quadrature path in one pass (shared nodes). */
void ae_dual_quadrature_pair(ae_activation act, double q1, double q2,
                             double c, double *ss, double *dd);
/* ae_dual_ss and ae_dual_dd together: what the kernel recursion calls. */
void ae_dual_pair(ae_activation a, double q1, double q2, double c,
                  double *ss, double *dd);

/* c_sigma = 1 / E_{z~N(0,1)}[sigma(z)^2] from the dual kernel at unit
 * variance and rho = 1. */
double ae_dual_c_sigma(ae_activation a);

/* The c_sigma the analytic kernels fold into each linear edge. */
double ae_analytic_c_sigma(ae_activation a);

#endif
