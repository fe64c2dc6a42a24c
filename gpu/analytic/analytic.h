/* analytic.h: the closed-form and infinite-width side of the scorecard:
 * dual activation kernels, the exact DAG NNGP/NTK recursion, the papers'
 * bounds, path statistics, and the float64 linear algebra they need.
 *
 * Every function is pure (inputs in, outputs out, no globals), so any
 * worker thread may call any of them at any time. */
#ifndef AE_ANALYTIC_H
#define AE_ANALYTIC_H

#include "api/arch.h"
#include "gpu/job_control.h"
#include <stddef.h>

/* ---- dual activation kernels (metrics.md §2.3) ----
 * For (u, v) ~ N(0, [[q1, c], [c, q2]]), without c_sigma:
 *   ae_dual_ss = E[sigma(u) sigma(v)],  ae_dual_dd = E[sigma'(u) sigma'(v)].
 * Closed forms for relu, leaky_relu, erf, identity; for tanh, sigmoid,
 * swish, gelu a quadrature that holds at every variance the recursion
 * meets (q up to 256 and beyond, rho up to 1 - 1e-6), to 1e-9. */
double ae_dual_ss(ae_activation a, double q1, double q2, double c);
double ae_dual_dd(ae_activation a, double q1, double q2, double c);
/* c_sigma itself is ae_act_c_sigma in api/arch.h. */
/* Slow nested adaptive quadrature of the same expectations, for tests
 * (reliable for variances up to about 1e3: beyond, an activation's turn
 * narrower than its first panels can escape the error estimate). */
double ae_dual_ss_reference(ae_activation a, double q1, double q2, double c);
double ae_dual_dd_reference(ae_activation a, double q1, double q2, double c);

/* ---- exact infinite-width recursion (metrics.md §2.5(b), GP
 * pre-activation edges, c_sigma folded into each linear edge) ----
 * K0: N x N input kernel (row-major).  trained_stem: T(0) = K0, else 0.
 * Outputs K(H) and T(H), N x N each (caller-allocated); the NTK with a
 * trained linear readout is K + T.  0 or AE_ENOMEM.  ctl: the running
 * job's checkpoint (NULL: none), passed before every row of every dual
 * kernel matrix; its AE_EDEADLINE / AE_ECANCELLED is returned. */
int ae_dag_kernels(const ae_dag *d, const double *K0, int N, int trained_stem,
                   double *K_out, double *T_out, const ae_job_control *ctl);

/* The same recursion over a dense lowered graph (LINEAR, ACT, ADD,
 * IDENTITY, ZERO, FLATTEN, the INPUT; the final readout LINEAR included).
 * K_out is the output node's NNGP and K_out + T_out its NTK, as above (for
 * a readout LINEAR of gain 1 on node h: K_out = K(h), T_out = T(h), plus 1
 * if the readout has a bias).  LINEAR: K' = gain K, T' = gain (K + T)
 * (+1 with bias); ACT: K' = E[ss](K), T' = E[s's'](K) o T; the INPUT has
 * T = 0, and trained_stem = 0 drops the weight (and bias) term of every
 * LINEAR fed by the raw input (through IDENTITY/FLATTEN), matching
 * ae_dag_kernels' T(0) = 0.  Sums of activation outputs (the
 * post-activation convention of the CONV/NFL code) are exact too: their
 * cross terms are products of means for independent inputs, Stein's lemma
 * against Gaussians, mixed dual kernels otherwise.  AE_EUNSUPPORTED for
 * any other op, an ACT whose input is not Gaussian in the limit (the raw
 * input, or one holding activation outputs), or a relu-like and a smooth
 * activation of correlated inputs summed (the caller then omits the value
 * with a warning).  Unsupported nodes read by nothing are ignored.  ctl
 * as for ae_dag_kernels. */
int ae_graph_kernels(const ae_graph *g, const double *K0, int N,
                     int trained_stem, double *K_out, double *T_out,
                     const ae_job_control *ctl);

/* ---- paths and topology (metrics.md §2.7) ---- */
typedef struct {
  double n_paths;       /* P: input-to-output paths avoiding ZERO */
  double n_param_paths; /* paths with d_p > 0 */
  double sum_depth;     /* sum_p d_p */
  double *depths;       /* d_p for each path, or NULL when P > max_list */
  size_t n_depths;
  /* sum_depth / n_paths and n_param_paths / n_paths, computed with
   * normalised weights so they stay finite when P overflows a double. */
  double mean_depth;
  double param_fraction;
} ae_paths;

/* Cell DAG paths (d_p = LINEAR edges on the path; ZERO edges break
 * paths).  The depth list is in depth-first order from node 0 taking
 * out-edges by ascending destination, as metrics.md §6 lists them
 * ([2,1,2,0] for 2_21_112).  When P = 0 the list is empty but non-NULL.
 * 0, AE_EINVAL or AE_ENOMEM; free with ae_paths_free. */
int ae_dag_paths(const ae_dag *d, size_t max_list, ae_paths *out);
/* Graph paths from INPUT to output (d_p = LINEAR and CONV nodes, the
 * readout included; ZERO nodes break paths; an input listed twice counts
 * twice).  The depth list is in backward depth-first order. */
int ae_graph_paths(const ae_graph *g, size_t max_list, ae_paths *out);
void ae_paths_free(ae_paths *p);

/* d-bar = sum d_p / P; m-bar = n_param_paths / d-bar (0 when d-bar = 0;
 * +inf when P overflows a double, while d-bar stays finite). */
double ae_effective_depth(const ae_paths *p);
double ae_effective_width(const ae_paths *p);

/* The paper's filter (centre +- half radius of the space of this type):
 * with (min, max) of d-bar and m-bar over the space's cells with d-bar > 0,
 * centre = (max + min)/2 and radius r = (max - min)/2, keep iff
 * |d-bar - centre_d| <= r_d/2 and |m-bar - centre_m| <= r_m/2 (NB201:
 * d in [0.25, 3], m in [1/3, 4], i.e. 1.625 +- 0.6875 and 13/6 +- 11/12;
 * 6256 of the 15625 cells kept).  d-bar = 0 is rejected.
 * 1 keep, 0 reject, -1 no space known (graph, or mlp_dag too large to
 * enumerate: more than 5 nodes); for mlp_dag the space is every DAG with
 * the same node count (computed once per process, thread-safe). */
int ae_dag_filter(const ae_arch *a, double dbar, double mbar);

/* NFL's path proxy E-hat = 1 / [C(m) sum_p exp(-5 d_p / (8 m))]; NaN when
 * the depth list is absent or empty (no path). */
double ae_path_proxy(const ae_paths *p, double m);
/* C(m) = Gamma((m+1)/2) / (Gamma(m/2) (m/2)^(1/2)). */
double ae_nfl_c_of_m(double m);

/* ---- bounds (metrics.md §2.5(a), §2.6) ---- */
/* U_NNGP = min_{i != j} [P - sum_p f^{d_p}(rho_ij)] with f the normalised
 * dual kernel of each linear edge's activation, composed along the path.
 * rho: N x N cosine similarities.  NaN if N < 2, rho holds a NaN, or the
 * DAG has more than 1e5 paths.  Evaluates only the pairs that can attain
 * the minimum (see bounds.c), so it costs O(paths), not O(N^2 paths). */
double ae_u_nngp(const ae_dag *d, const double *rho, int N);
/* NFL Thm 4.6 NTK bound, same arguments.  The paper's relu form; other
 * activations use their own normalised f and fdot = c_sigma E[s's']. */
double ae_nfl_ntk_bound(const ae_dag *d, const double *rho, int N);

/* ---- float64 linear algebra ----
 * ctl: the running job's checkpoint (NULL: none).  The functions below
 * pass it between their steps and stop with its AE_EDEADLINE or
 * AE_ECANCELLED (outputs then unspecified, nothing leaked). */
/* Eigenvalues of a symmetric n x n matrix (upper triangle read),
 * ascending: the values LAPACKE dsyevd gives on a copy, bit for bit.  From
 * n = AE_EIG_BLOCKED_MIN up, the reduction to tridiagonal form passes a
 * checkpoint after every column.  0, AE_EINVAL (non-finite entry),
 * AE_ENOMEM / AE_EINTERNAL, or the checkpoint's error. */
#define AE_EIG_BLOCKED_MIN 256
int ae_sym_eigvals(const double *A, int n, double *w,
                   const ae_job_control *ctl);
/* The smallest eigenvalue of the same: dsyevd's scaling and reduction to
 * tridiagonal form (with the checkpoint after every column at any n), then
 * LAPACK's bisection (dstebz) for that eigenvalue alone, to an absolute
 * accuracy of ulp * |T|_1 as dsterf's: it agrees with ae_sym_eigvals' w[0]
 * to a few ulp of |A| (test_analytic), not bit for bit, at a fraction of
 * dsterf's work (all n eigenvalues).  Same errors as ae_sym_eigvals. */
int ae_sym_eigval_min(const double *A, int n, double *lambda_min,
                      const ae_job_control *ctl);
/* Cholesky factorisation A = L L^T in place: row-major, the lower
 * triangle read and overwritten with L, the upper one untouched.  Below
 * AE_CHOL_BLOCKED_MIN one LAPACKE dpotrf; from it up a blocked
 * factorisation (linalg.c) that passes the checkpoint after every strip of
 * its trailing update, so a deadline stops it within about 50 ms on one
 * core at n = 4096.  0 with *info as dpotrf's (0, or k > 0 when the
 * leading minor of order k is not positive definite); AE_EINVAL (bad
 * arguments), AE_ENOMEM, AE_EINTERNAL, or the checkpoint's error (A then
 * partly factored). */
#define AE_CHOL_BLOCKED_MIN 1024
int ae_cholesky_lower(double *A, int n, int *info, const ae_job_control *ctl);
/* q = tr(Y^T G^-1 Y) by Cholesky with the jitter rule of metrics.md §3.2
 * (eps * tr(G)/N, eps from 1e-10 doubling to 1e-4).  Y: n x C row-major.
 * *jitter gets the jitter added (0 if none).  AE_EINVAL if G stays
 * indefinite.  The checkpoint is passed before and after each Cholesky
 * attempt, and inside it from AE_CHOL_BLOCKED_MIN up. */
int ae_kernel_quadratic(const double *G, int n, const double *Y, int C,
                        double *q, double *jitter, const ae_job_control *ctl);
/* X = G^-1 Y (n x C row-major) by Cholesky with the same jitter rule;
 * *jitter as above.  AE_EINVAL if G stays indefinite (X untouched). */
int ae_kernel_solve(const double *G, int n, const double *Y, int C, double *X,
                    double *jitter, const ae_job_control *ctl);

#endif
