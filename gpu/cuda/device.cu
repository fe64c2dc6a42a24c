/* device.cu: what the CUDA runtime says about this machine's GPUs.  Called
 * from the main thread at start-up; holds no state. */
#include <cuda_runtime.h>

extern "C" int ae_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}
