/* net64_ntk.c: net_ntk.c compiled in float64 (see net_real.h and net64.h).
 * Ownership as in net_ntk.c. */
#define AE_NET_DOUBLE 1
#include "gpu/host/net_ntk.c"
