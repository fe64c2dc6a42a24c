/* cuda_glue.c: the C side of the CUDA backend's API (cuda_net.h): the
 * calls that take engine types, which the CUDA sources cannot see, passed
 * on to their cuda_core.h forms.
 *
 * No state; runs on the worker thread that owns the net. */
#include "gpu/cuda/cuda_net.h"

#include "gpu/host/net.h"
#include <stdlib.h>

static int job_check(const void *ctl) {
  return ae_job_checkpoint((const ae_job_control *)ctl);
}

int ae_cuda_net_ntk(ae_cuda_net *n, const float *x, int batch,
                    ae_ntk_parameterization par, double *theta,
                    const ae_job_control *ctl) {
  return ae_cuda_net_ntk_checked(n, x, batch, par == AE_NTK_NTK, theta,
                                 ctl ? job_check : NULL, ctl);
}

int ae_cuda_net_count_patterns(ae_cuda_net *n, const float *x, int batch,
                               size_t *distinct) {
  uint64_t *bits = NULL;
  size_t words = 0;
  *distinct = 0;
  int rc = ae_cuda_net_sign_patterns(n, x, batch, &bits, &words);
  if (rc) return rc;
  rc = ae_count_distinct_patterns(bits, (size_t)batch, words, distinct);
  free(bits);
  return rc;
}
