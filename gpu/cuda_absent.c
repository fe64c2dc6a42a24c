/* cuda_absent.c: what a build without CUDA links in place of
 * gpu/cuda/cuda_executor.c and gpu/cuda/device.cu: no CUDA executor and
 * no devices, so that no file needs a HAVE_CUDA branch.  No state. */
#include "gpu/executor.h"

#include <stddef.h>

const ae_executor *ae_cuda_executor(void) {
  return NULL;
}

int ae_cuda_device_count(void) {
  return 0;
}
