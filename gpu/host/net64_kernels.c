/* net64_kernels.c: net_kernels_typed.c compiled in float64 (see net_real.h and
 * net64.h). Ownership as in net_kernels_typed.c. */
#define AE_NET_DOUBLE 1
#include "gpu/host/net_kernels_typed.c"
