/* net64_ops.c: net_ops.c compiled in float64 (see net_real.h and
 * net_internal.h).  Ownership as in net_ops.c. */
#define AE_NET_DOUBLE 1
#include "gpu/host/net_ops.c"
