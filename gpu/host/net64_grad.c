/* net64_grad.c: net_grad.c compiled in float64 (see net_real.h and
 * net64.h).  Ownership as in net_grad.c. */
#define AE_NET_DOUBLE 1
#include "gpu/host/net_grad.c"
