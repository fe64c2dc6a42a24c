/* net64_jet.c: net_jet.c compiled in float64 (see net_real.h and net64.h).
 * Ownership as in net_jet.c. */
#define AE_NET_DOUBLE 1
#include "gpu/host/net_jet.c"
