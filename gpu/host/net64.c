/* net64.c: net.c compiled in float64 (see net_real.h and net64.h).
 * Ownership as in net.c. */
#define AE_NET_DOUBLE 1
#include "gpu/host/net.c"
